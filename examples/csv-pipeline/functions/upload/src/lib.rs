//! Upload over HTTP in the csv-pipeline example (function `upload-csv`):
//! `PUT /api/uploads/{name}` with the CSV as the body writes it into the
//! blob container bound as `files` (`uploads`), where the blob trigger of
//! `import-csv` picks it up exactly as it does a file copied in with `cp`.
//!
//! Answers `202 {"file", "bytes", "status": "accepted"}`; `400` for a name
//! that is not `<letters, digits, . _ ->.csv` or a body that is empty or
//! not UTF-8 text.

use csv_pipeline_common::is_file_name;
use gust_sdk::blob::Container;
use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::json;

/// Stores the uploaded file.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let name = req.param("name").unwrap_or_default().to_string();
    if !is_file_name(&name) {
        return error(
            400,
            format!("`{name}` is not a file name like sales-q1.csv (letters, digits, . _ - and .csv)"),
        );
    }
    let body = req.body();
    if body.is_empty() {
        return error(400, "the body is empty; send the CSV file as the request body");
    }
    if std::str::from_utf8(body).is_err() {
        return error(400, "the body is not UTF-8 text; send a CSV file");
    }
    if let Err(e) = Container::open("files").write(&name, body) {
        return error(500, format!("cannot store {name}: {e}"));
    }
    gust_sdk::log::info!("{name}: {} bytes uploaded", body.len());
    Response::json(&json!({ "file": name, "bytes": body.len(), "status": "accepted" }))
        .with_status(202)
}

/// A JSON error response: `{"error": message}`.
fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}
