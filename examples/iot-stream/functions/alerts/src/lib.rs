//! The alert handler of the IoT example (function `record-alert`): every
//! `iot.anomaly.detected` event on the topic `anomalies` becomes one row of
//! the `alerts` table. The alert id (`<device>/<seq>/<rule>`) is the key, so
//! a redelivered or republished anomaly is recorded once.
//!
//! This is where a real deployment would page someone or call a webhook;
//! the example only records and logs.

use gust_sdk::sql::{Database, Value};
use gust_sdk::{Event, EventError, log};
use serde::Deserialize;

/// The schema, created on first use.
const SCHEMA: &str = include_str!("../../schema.sql");

/// An anomaly as the `aggregate` function publishes it.
#[derive(Debug, Deserialize)]
struct Anomaly {
    id: String,
    device: String,
    seq: i64,
    ts: i64,
    rule: String,
    temperature: f64,
    previous: Option<f64>,
    message: String,
}

/// Records one anomaly event.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    if event.ty() != "iot.anomaly.detected" {
        log::warn!("ignoring event of type `{}`", event.ty());
        return Ok(());
    }
    let a: Anomaly = event
        .json()
        .map_err(|e| EventError::fatal(format!("not an anomaly: {e}")))?;
    let db = Database::open("db");
    let insert = || {
        db.execute(
            "INSERT INTO alerts
                 (id, device, seq, ts, rule, temperature, previous, message)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT DO NOTHING",
            &[
                a.id.as_str().into(),
                a.device.as_str().into(),
                a.seq.into(),
                a.ts.into(),
                a.rule.as_str().into(),
                a.temperature.into(),
                Value::from(a.previous),
                a.message.as_str().into(),
            ],
        )
    };
    let inserted = match insert() {
        // A missing table: SQLite says `no such table`, PostgreSQL
        // SQLSTATE 42P01.
        Err(e) if e.message().contains("no such table") || e.message().contains("42P01") => {
            db.execute_script(SCHEMA).and_then(|()| insert())
        }
        other => other,
    }
    .map_err(|e| EventError::retryable(e.to_string()))?;
    if inserted == 1 {
        log::info!("alert {}: {}", a.id, a.message);
    } else {
        log::info!("alert {} already recorded", a.id);
    }
    Ok(())
}
