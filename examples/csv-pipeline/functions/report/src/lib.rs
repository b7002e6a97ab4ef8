//! The query side of the csv-pipeline example (function `report`):
//!
//! * `GET /api/summary` — totals (`rows`, `units`, `revenue_cents`,
//!   `files`), `by_region` (revenue first), `by_month` (in order) and
//!   `top_products` (ten, revenue first);
//! * `GET /api/imports` — one record per file: status, records, rows,
//!   rejected and the first rejected lines with reasons.
//!
//! Errors are JSON `{"error": ...}` (`404` for an unknown report).

use csv_pipeline_common::SCHEMA;
use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{Map, Value as Json, json};
use gust_sdk::sql::{Database, Rows};

/// Serves the reports.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let db = Database::open("db");
    if let Err(e) = db.execute_script(SCHEMA) {
        return error(500, e.to_string());
    }
    let report = req.param("report").unwrap_or_default().to_string();
    let result = match report.as_str() {
        "summary" => summary(&db),
        "imports" => imports(&db),
        other => return error(404, format!("no report `{other}`; try summary or imports")),
    };
    match result {
        Ok(body) => Response::json(&body).with_header("cache-control", "no-store"),
        Err(e) => error(500, e.to_string()),
    }
}

fn summary(db: &Database) -> Result<Json, gust_sdk::sql::Error> {
    let totals = db.query(
        "SELECT COUNT(*) AS rows, COALESCE(SUM(units), 0) AS units, \
         COALESCE(SUM(revenue_cents), 0) AS revenue_cents, COUNT(DISTINCT file) AS files FROM sales",
        &[],
    )?;
    let by_region = db.query(
        "SELECT region, SUM(units) AS units, SUM(revenue_cents) AS revenue_cents, COUNT(*) AS rows \
         FROM sales GROUP BY region ORDER BY revenue_cents DESC, region",
        &[],
    )?;
    let by_month = db.query(
        "SELECT month, SUM(units) AS units, SUM(revenue_cents) AS revenue_cents \
         FROM sales GROUP BY month ORDER BY month",
        &[],
    )?;
    let top_products = db.query(
        "SELECT product, SUM(units) AS units, SUM(revenue_cents) AS revenue_cents \
         FROM sales GROUP BY product ORDER BY revenue_cents DESC, product LIMIT 10",
        &[],
    )?;
    let mut body = objects(&totals).into_iter().next().unwrap_or_else(|| json!({}));
    body["by_region"] = Json::Array(objects(&by_region));
    body["by_month"] = Json::Array(objects(&by_month));
    body["top_products"] = Json::Array(objects(&top_products));
    Ok(body)
}

fn imports(db: &Database) -> Result<Json, gust_sdk::sql::Error> {
    let rows = db.query(
        "SELECT file, status, records, rows, rejected, errors, imported_at FROM imports ORDER BY file",
        &[],
    )?;
    let items: Vec<Json> = objects(&rows)
        .into_iter()
        .map(|mut o| {
            // `errors` is stored as JSON text.
            let parsed = o["errors"]
                .as_str()
                .and_then(|t| gust_sdk::serde_json::from_str::<Json>(t).ok())
                .unwrap_or_else(|| json!([]));
            o["errors"] = parsed;
            o
        })
        .collect();
    Ok(json!({ "count": items.len(), "items": items }))
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
