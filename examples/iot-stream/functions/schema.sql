-- The IoT example's database `iot`, created by whichever function needs it
-- first (every statement is idempotent).

-- One row per reading, as parsed from the stream.
CREATE TABLE IF NOT EXISTS readings (
    device      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,  -- the device's own counter
    ts          INTEGER NOT NULL,  -- measured at, Unix milliseconds
    minute      INTEGER NOT NULL,  -- start of its minute, Unix seconds
    temperature REAL    NOT NULL,  -- degrees Celsius
    via         TEXT    NOT NULL,  -- mqtt | http
    PRIMARY KEY (device, seq)
);

-- Per device per minute: count, min, max and sum (avg = sum / count).
CREATE TABLE IF NOT EXISTS minute_stats (
    device   TEXT    NOT NULL,
    minute   INTEGER NOT NULL,
    count    INTEGER NOT NULL,
    sum      REAL    NOT NULL,
    min_temp REAL    NOT NULL,
    max_temp REAL    NOT NULL,
    PRIMARY KEY (device, minute)
);

-- Per device: how many readings, and the newest one (the sudden-change
-- rule compares against it).
CREATE TABLE IF NOT EXISTS devices (
    device           TEXT PRIMARY KEY,
    readings         INTEGER NOT NULL,
    last_seq         INTEGER NOT NULL,
    last_ts          INTEGER NOT NULL,
    last_temperature REAL    NOT NULL
);

-- Stream records that are not readings, by stream position.
CREATE TABLE IF NOT EXISTS rejected (
    record TEXT PRIMARY KEY,  -- <partition>-<offset>
    device TEXT,
    reason TEXT NOT NULL,
    body   TEXT NOT NULL
);

-- Alerts raised by the anomaly rules, one per (device, seq, rule).
CREATE TABLE IF NOT EXISTS alerts (
    id          TEXT PRIMARY KEY,  -- <device>/<seq>/<rule>
    device      TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    ts          INTEGER NOT NULL,
    rule        TEXT    NOT NULL,  -- threshold | sudden-change
    temperature REAL    NOT NULL,
    previous    REAL,              -- the previous reading (sudden-change)
    message     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_device ON alerts (device, seq)
