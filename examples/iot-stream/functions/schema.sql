-- The IoT example's database `iot`, created by whichever function needs it
-- first (every statement is idempotent).

-- One row per reading, as parsed from the stream.
CREATE TABLE IF NOT EXISTS readings (
    device      TEXT    NOT NULL,
    seq         BIGINT  NOT NULL,  -- the device's own counter
    ts          BIGINT  NOT NULL,  -- measured at, Unix milliseconds
    minute      BIGINT  NOT NULL,  -- start of its minute, Unix seconds
    temperature DOUBLE PRECISION NOT NULL,  -- degrees Celsius
    via         TEXT    NOT NULL,  -- mqtt | http
    PRIMARY KEY (device, seq)
);

-- Per device per minute: count, min, max and sum (avg = sum / count).
CREATE TABLE IF NOT EXISTS minute_stats (
    device   TEXT    NOT NULL,
    minute   BIGINT  NOT NULL,
    count    BIGINT  NOT NULL,
    sum      DOUBLE PRECISION NOT NULL,
    min_temp DOUBLE PRECISION NOT NULL,
    max_temp DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (device, minute)
);

-- Per device: how many readings, and the newest one (the sudden-change
-- rule compares against it).
CREATE TABLE IF NOT EXISTS devices (
    device           TEXT PRIMARY KEY,
    readings         BIGINT  NOT NULL,
    last_seq         BIGINT  NOT NULL,
    last_ts          BIGINT  NOT NULL,
    last_temperature DOUBLE PRECISION NOT NULL
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
    seq         BIGINT  NOT NULL,
    ts          BIGINT  NOT NULL,
    rule        TEXT    NOT NULL,  -- threshold | sudden-change
    temperature DOUBLE PRECISION NOT NULL,
    previous    DOUBLE PRECISION,            -- the previous reading (sudden-change)
    message     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_device ON alerts (device, seq)
