//! The read side of the file-etl example (function `report`):
//!
//! * `GET /api/sales` — loaded sales in order-id order, with `count` and
//!   `total_cents`; `?file=jan.csv` narrows to one source file;
//! * `GET /api/files` — every file content loaded, with record counts;
//! * `GET /api/anomalies` — every rejected record, with stage and reason;
//!   `?file=...` narrows to one file.
//!
//! Errors are JSON `{"error": ...}`.

use etl_common::SCHEMA;
use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{Map, Value as Json, json};
use gust_sdk::sql::{Database, Rows, Value};

/// Serves the three reports.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let db = Database::open("db");
    if let Err(e) = db.execute_script(SCHEMA) {
        return error(500, e.to_string());
    }
    let file = req.query("file").map(str::to_owned);
    let filter = |sql: &str, column: &str, order: &str| -> (String, Vec<Value>) {
        match &file {
            Some(f) => (
                format!("{sql} WHERE {column} = ? ORDER BY {order}"),
                vec![Value::Text(f.clone())],
            ),
            None => (format!("{sql} ORDER BY {order}"), vec![]),
        }
    };
    let result = match req.path().trim_end_matches('/') {
        "/api/sales" => {
            let (sql, params) = filter("SELECT * FROM sales", "source_file", "order_id");
            db.query(&sql, &params).map(|rows| {
                let items = objects(&rows);
                let total: i64 = items
                    .iter()
                    .filter_map(|r| r["amount_cents"].as_i64())
                    .sum();
                json!({ "count": items.len(), "total_cents": total, "items": items })
            })
        }
        "/api/files" => db
            .query("SELECT * FROM files ORDER BY file, loaded_at", &[])
            .map(|rows| json!({ "items": objects(&rows) })),
        "/api/anomalies" => {
            let (sql, params) = filter(
                "SELECT file, line, stage, reason, raw, recorded_at FROM anomalies",
                "file",
                "file, line, stage",
            );
            db.query(&sql, &params).map(|rows| {
                let items = objects(&rows);
                json!({ "count": items.len(), "items": items })
            })
        }
        other => return error(404, format!("no report at `{other}`")),
    };
    match result {
        Ok(body) => Response::json(&body),
        Err(e) => error(500, e.to_string()),
    }
}

/// Rows as JSON objects keyed by column.
fn objects(rows: &Rows) -> Vec<Json> {
    rows.rows
        .iter()
        .map(|row| {
            let mut o = Map::new();
            for (column, value) in rows.columns.iter().zip(row) {
                o.insert(column.clone(), value.to_json());
            }
            Json::Object(o)
        })
        .collect()
}

/// A JSON error response: `{"error": message}`.
fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}
