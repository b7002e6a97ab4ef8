//! The query API of the IoT example, JSON over HTTP (functions `devices`,
//! `device-minutes` and `alerts`), reading the tables the stream consumer
//! and the alert handler maintain:
//!
//! * `GET /api/devices` — every device (readings, newest reading, alerts)
//!   and totals;
//! * `GET /api/devices/{id}/minutes[?from=&to=]` — the device's per-minute
//!   aggregates (count, min, max, avg), `from`/`to` in Unix seconds;
//! * `GET /api/alerts[?device=&rule=]` — the recorded alerts, oldest first.

use gust_sdk::http::{self, Request, Response};
use gust_sdk::serde_json::{Map, Value as Json, json};
use gust_sdk::sql::{Database, Rows, Value};

/// Dispatches on the function the host invoked (one per route).
#[gust_sdk::http]
fn handle(req: Request) -> http::Result {
    let db = Database::open("db");
    match req.function_name().unwrap_or_default() {
        "devices" => devices(&db),
        "device-minutes" => minutes(&db, &req),
        "alerts" => alerts(&db, &req),
        _ => Err(http::Error::not_found()),
    }
}

/// `GET /api/devices`.
fn devices(db: &Database) -> http::Result {
    let devices = query(
        db,
        "SELECT d.device, d.readings, d.last_seq, d.last_ts, d.last_temperature,
                (SELECT count(*) FROM alerts a WHERE a.device = d.device) AS alerts
         FROM devices d ORDER BY d.device",
        &[],
    )?;
    let totals = query(
        db,
        "SELECT (SELECT count(*) FROM devices) AS devices,
                (SELECT coalesce(sum(readings), 0) FROM devices) AS readings,
                (SELECT count(*) FROM alerts) AS alerts,
                (SELECT count(*) FROM rejected) AS rejected",
        &[],
    )?;
    let totals = totals
        .into_iter()
        .next()
        .unwrap_or_else(|| json!({ "devices": 0, "readings": 0, "alerts": 0, "rejected": 0 }));
    Ok(Response::json(
        &json!({ "devices": devices, "totals": totals }),
    ))
}

/// `GET /api/devices/{id}/minutes`.
fn minutes(db: &Database, req: &Request) -> http::Result {
    let device = req.param("id").unwrap_or_default();
    let bound = |name: &str, default: i64| -> Result<i64, http::Error> {
        req.query(name).map_or(Ok(default), |v| {
            v.parse()
                .map_err(|_| http::Error::bad_request(format!("`{name}` must be Unix seconds")))
        })
    };
    let (from, to) = (bound("from", i64::MIN)?, bound("to", i64::MAX)?);
    let mut minutes = query(
        db,
        "SELECT minute, count, min_temp AS min, max_temp AS max, sum / count AS avg
         FROM minute_stats WHERE device = ?1 AND minute >= ?2 AND minute <= ?3
         ORDER BY minute",
        &[device.into(), from.into(), to.into()],
    )?;
    for m in &mut minutes {
        let start = m["minute"].as_i64().map(utc);
        m["start"] = start.into();
    }
    if minutes.is_empty() && !known(db, device)? {
        return Err(http::Error::new(404, format!("no device `{device}`")));
    }
    Ok(Response::json(
        &json!({ "device": device, "minutes": minutes }),
    ))
}

/// `GET /api/alerts`.
fn alerts(db: &Database, req: &Request) -> http::Result {
    let alerts = query(
        db,
        "SELECT id, device, seq, ts, rule, temperature, previous, message FROM alerts
         WHERE (?1 IS NULL OR device = ?1) AND (?2 IS NULL OR rule = ?2)
         ORDER BY ts, device, seq, rule",
        &[req.query("device").into(), req.query("rule").into()],
    )?;
    Ok(Response::json(&json!({ "alerts": alerts })))
}

/// Whether `device` has sent anything.
fn known(db: &Database, device: &str) -> Result<bool, http::Error> {
    Ok(!query(
        db,
        "SELECT 1 FROM devices WHERE device = ?1",
        &[device.into()],
    )?
    .is_empty())
}

/// Runs `sql` and returns the rows as JSON objects; before the first
/// reading there are no tables yet, which reads as no rows.
fn query(db: &Database, sql: &str, params: &[Value]) -> Result<Vec<Json>, http::Error> {
    match db.query(sql, params) {
        Ok(rows) => Ok(objects(rows)),
        // SQLite says `no such table`, PostgreSQL SQLSTATE 42P01.
        Err(e) if e.message().contains("no such table") || e.message().contains("42P01") => {
            Ok(Vec::new())
        }
        Err(e) => Err(http::Error::internal(e.to_string())),
    }
}

/// One JSON object per row, keyed by column name.
fn objects(rows: Rows) -> Vec<Json> {
    rows.rows
        .into_iter()
        .map(|row| {
            let object: Map<String, Json> = rows
                .columns
                .iter()
                .cloned()
                .zip(row.iter().map(Value::to_json))
                .collect();
            Json::Object(object)
        })
        .collect()
}

/// Unix seconds as `YYYY-MM-DDTHH:MM:SSZ` (computed here rather than in SQL,
/// where every engine spells it differently).
fn utc(secs: i64) -> String {
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3_600,
        rest % 3_600 / 60,
        rest % 60
    )
}
