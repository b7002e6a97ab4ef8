//! The anomaly handler of the file-etl example (function `record-anomaly`):
//! every stage sends what it rejects to the queue `anomalies`; this function
//! records each in the SQL table `anomalies`, once — its id is the file's
//! fingerprint, the line and the stage, so a redelivered or re-sent anomaly
//! is not recorded twice.

use etl_common::{Anomaly, SCHEMA};
use gust_sdk::sql::{Database, Value};
use gust_sdk::{Event, EventError, log};

/// Records one anomaly.
#[gust_sdk::event]
fn handle(event: Event) -> Result<(), EventError> {
    let a: Anomaly = event
        .json()
        .map_err(|e| EventError::fatal(format!("not an anomaly: {e}")))?;
    let db = Database::open("db");
    db.execute_script(SCHEMA)?;
    let id = format!("{}:{}:{}", a.fingerprint, a.line, a.stage);
    let added = db.execute(
        "INSERT OR IGNORE INTO anomalies (id, file, line, stage, reason, raw, recorded_at)
         VALUES (?, ?, ?, ?, ?, ?, strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))",
        &[
            Value::Text(id),
            Value::Text(a.file.clone()),
            Value::Integer(i64::from(a.line)),
            Value::Text(a.stage.clone()),
            Value::Text(a.reason.clone()),
            Value::Text(a.raw),
        ],
    )?;
    if added > 0 {
        log::warn!(
            "anomaly in {}:{} ({}): {}",
            a.file,
            a.line,
            a.stage,
            a.reason
        );
    }
    Ok(())
}
