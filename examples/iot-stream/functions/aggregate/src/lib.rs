//! Stream processing of the IoT example (function `aggregate`): consumes
//! the `telemetry` stream one record at a time, per partition in offset
//! order, so each device's readings arrive in the order they were sent.
//!
//! For every reading it
//! 1. parses the record into a [`Reading`] (records that are not readings
//!    go to the `rejected` table, and the stream moves on);
//! 2. skips it if `(device, seq)` is already stored (the stream is
//!    at-least-once: a redelivered MQTT message or a replay after a crash);
//! 3. applies the anomaly rules — [`THRESHOLD`] on the value, and
//!    [`SUDDEN_CHANGE`] against the device's previous reading — and
//!    publishes each anomaly to the topic bound as `alerts`;
//! 4. in one transaction stores the row, upserts the device's aggregate for
//!    the reading's minute (count, min, max, sum) and moves the device's
//!    "previous reading" forward.
//!
//! Alerts are published before the transaction and carry a deterministic
//! id, so a crash in between republishes the same alert, which the alert
//! function collapses: every reading counts once, every anomaly alerts once.
//! Only step 3's sudden-change rule depends on order; the aggregates are
//! sums, minima and maxima and would come out the same in any order.

use gust_sdk::sql::{Database, Value};
use gust_sdk::{Event, EventError, log, topic};
use serde::{Deserialize, Serialize};

/// The database binding.
const DB: &str = "db";
/// The topic binding anomalies are published to.
const ALERTS: &str = "alerts";
/// CloudEvents type of a published anomaly.
const ANOMALY_EVENT: &str = "iot.anomaly.detected";
/// Threshold rule: a temperature at or above this (°C) is an anomaly.
const THRESHOLD: f64 = 80.0;
/// Sudden-change rule: a jump of at least this (°C) from the device's
/// previous reading is an anomaly.
const SUDDEN_CHANGE: f64 = 10.0;
/// Plausible sensor range (°C); anything outside is a broken reading.
const RANGE: std::ops::RangeInclusive<f64> = -80.0..=200.0;

/// The schema, created on first use.
const SCHEMA: &str = include_str!("../../schema.sql");

/// A reading as the ingest functions append it: the device's payload
/// (`seq`, `ts` in Unix milliseconds, `temperature` in °C; other fields are
/// ignored) stamped with `device` and `via`.
#[derive(Debug, Deserialize)]
struct Reading {
    device: String,
    via: String,
    seq: u64,
    ts: i64,
    temperature: f64,
}

/// The device's newest stored reading.
#[derive(Debug)]
struct Previous {
    seq: u64,
    temperature: f64,
}

/// An anomaly, as published to `anomalies` and stored by `record-alert`.
#[derive(Debug, Serialize)]
struct Anomaly {
    id: String,
    device: String,
    seq: u64,
    ts: i64,
    rule: &'static str,
    temperature: f64,
    previous: Option<f64>,
    message: String,
}

/// Handles one stream record.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let db = Database::open(DB);
    let reading = match parse(&event) {
        Ok(reading) => reading,
        Err(reason) => return reject(&db, &event, &reason),
    };
    let device = Value::from(reading.device.as_str());
    let seq = Value::Integer(reading.seq as i64);
    let stored = with_schema(&db, || {
        db.query(
            "SELECT 1 FROM readings WHERE device = ?1 AND seq = ?2",
            &[device.clone(), seq.clone()],
        )
    })?;
    if !stored.rows.is_empty() {
        log::info!("{} #{}: duplicate, skipped", reading.device, reading.seq);
        return Ok(());
    }
    let previous = db
        .query(
            "SELECT last_seq, last_temperature FROM devices WHERE device = ?1",
            std::slice::from_ref(&device),
        )
        .map_err(retry)?
        .rows
        .first()
        .and_then(|row| {
            Some(Previous {
                seq: row[0].as_i64()? as u64,
                temperature: row[1].as_f64()?,
            })
        });
    for anomaly in anomalies(&reading, previous.as_ref()) {
        topic::publish_json(ALERTS, ANOMALY_EVENT, Some(&anomaly.device), &anomaly)
            .map_err(retry)?;
        log::warn!("{}", anomaly.message);
    }
    let minute = reading.ts.div_euclid(60_000) * 60;
    let t = Value::Real(reading.temperature);
    db.transaction(&[
        (
            "INSERT INTO readings (device, seq, ts, minute, temperature, via)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            vec![
                device.clone(),
                seq.clone(),
                Value::Integer(reading.ts),
                Value::Integer(minute),
                t.clone(),
                Value::from(reading.via.as_str()),
            ],
        ),
        (
            "INSERT INTO minute_stats (device, minute, count, sum, min_temp, max_temp)
             VALUES (?1, ?2, 1, ?3, ?3, ?3)
             ON CONFLICT (device, minute) DO UPDATE SET
                 count = minute_stats.count + 1,
                 sum = minute_stats.sum + excluded.sum,
                 min_temp = CASE WHEN excluded.min_temp < minute_stats.min_temp
                                 THEN excluded.min_temp ELSE minute_stats.min_temp END,
                 max_temp = CASE WHEN excluded.max_temp > minute_stats.max_temp
                                 THEN excluded.max_temp ELSE minute_stats.max_temp END",
            vec![device.clone(), Value::Integer(minute), t.clone()],
        ),
        (
            // Only a newer reading becomes the device's "previous" one.
            "INSERT INTO devices (device, readings, last_seq, last_ts, last_temperature)
             VALUES (?1, 1, ?2, ?3, ?4)
             ON CONFLICT (device) DO UPDATE SET
                 readings = devices.readings + 1,
                 last_ts = CASE WHEN excluded.last_seq > devices.last_seq
                                THEN excluded.last_ts ELSE devices.last_ts END,
                 last_temperature = CASE WHEN excluded.last_seq > devices.last_seq
                                THEN excluded.last_temperature ELSE devices.last_temperature END,
                 last_seq = CASE WHEN excluded.last_seq > devices.last_seq
                                THEN excluded.last_seq ELSE devices.last_seq END",
            vec![device, seq, Value::Integer(reading.ts), t],
        ),
    ])
    .map_err(retry)?;
    Ok(())
}

/// The reading in a stream record, or why it is not one.
fn parse(event: &Event) -> Result<Reading, String> {
    let reading: Reading = event.json().map_err(|e| format!("not a reading: {e}"))?;
    if Some(reading.device.as_str()) != event.subject() {
        return Err(format!(
            "device `{}` appended under key `{}`",
            reading.device,
            event.subject().unwrap_or_default()
        ));
    }
    if !RANGE.contains(&reading.temperature) {
        return Err(format!(
            "temperature {} outside {RANGE:?}",
            reading.temperature
        ));
    }
    if reading.ts <= 0 || reading.seq > i64::MAX as u64 {
        return Err("`ts` and `seq` must be positive".into());
    }
    Ok(reading)
}

/// The anomalies `reading` shows, given the device's previous reading.
fn anomalies(reading: &Reading, previous: Option<&Previous>) -> Vec<Anomaly> {
    let anomaly = |rule: &'static str, previous: Option<f64>, message: String| Anomaly {
        id: format!("{}/{}/{rule}", reading.device, reading.seq),
        device: reading.device.clone(),
        seq: reading.seq,
        ts: reading.ts,
        rule,
        temperature: reading.temperature,
        previous,
        message,
    };
    let mut found = Vec::new();
    if reading.temperature >= THRESHOLD {
        found.push(anomaly(
            "threshold",
            None,
            format!(
                "{} #{}: {:.1} °C is at or above {THRESHOLD} °C",
                reading.device, reading.seq, reading.temperature
            ),
        ));
    }
    // Compared only with an older reading: a late one changes nothing.
    if let Some(prev) = previous.filter(|p| p.seq < reading.seq)
        && (reading.temperature - prev.temperature).abs() >= SUDDEN_CHANGE
    {
        found.push(anomaly(
            "sudden-change",
            Some(prev.temperature),
            format!(
                "{} #{}: {:.1} °C after {:.1} °C (#{})",
                reading.device, reading.seq, reading.temperature, prev.temperature, prev.seq
            ),
        ));
    }
    found
}

/// Records a stream record that is not a reading; the stream moves on.
fn reject(db: &Database, event: &Event, reason: &str) -> Result<(), EventError> {
    log::warn!("record {} rejected: {reason}", event.id());
    with_schema(db, || {
        db.execute(
            "INSERT INTO rejected (record, device, reason, body) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT DO NOTHING",
            &[
                event.id().into(),
                event.subject().into(),
                reason.into(),
                String::from_utf8_lossy(event.data()).into_owned().into(),
            ],
        )
    })?;
    Ok(())
}

/// Runs `op`; if the database has no tables yet, creates them and runs it
/// again.
fn with_schema<T>(
    db: &Database,
    op: impl Fn() -> Result<T, gust_sdk::sql::Error>,
) -> Result<T, EventError> {
    match op() {
        Err(e) if no_such_table(&e) => {
            db.execute_script(SCHEMA).map_err(retry)?;
            op().map_err(retry)
        }
        other => other.map_err(retry),
    }
}

/// A database or topic error: try the record again.
fn retry(e: impl std::fmt::Display) -> EventError {
    EventError::retryable(e.to_string())
}

/// Whether `e` says a table is missing (SQLite: `no such table`;
/// PostgreSQL: SQLSTATE 42P01 `relation ... does not exist`).
fn no_such_table(e: &gust_sdk::sql::Error) -> bool {
    let message = e.message();
    message.contains("no such table") || message.contains("42P01")
}
