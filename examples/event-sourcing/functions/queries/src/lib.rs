//! The read side of the event-sourcing example: queries read only the read
//! models the subscribers keep, never the event log or the command state.
//!
//! * `GET /api/tasks/{id}` — the task document (table `tasks`), with its
//!   history; `ETag` is the `seq` of the newest event it reflects.
//! * `GET /api/users` and `GET /api/users/{name}` — the per-user model
//!   (table `user-tasks`, one document per user and task, grouped here into
//!   `{"user", "open": {task: ...}, "completed": {task: ...}, counts}`); with `?model=replay`, the same model rebuilt from
//!   the event log by `replay-users` (table `user-tasks-replay`).
//! * `GET /api/reports/high-priority` — completed high-priority tasks.
//!
//! Errors are JSON `{"error": ...}`: `404` for an unknown task or user,
//! `400` for an unknown `model`.

use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{Value as Json, json};
use gust_sdk::table::Table;

/// Documents read from a table per scan.
const SCAN_PAGE: u32 = 500;
/// Most documents one answer is built from.
const MAX_ITEMS: usize = 10_000;

/// Dispatches on the path.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let path = req.path().trim_end_matches('/');
    let result = if path.starts_with("/api/tasks/") {
        task(req.param("id").unwrap_or_default())
    } else if path.starts_with("/api/users") {
        users(&req)
    } else if path == "/api/reports/high-priority" {
        list(&Table::open("report"), "").map(|items| Response::json(&json!({ "items": items })))
    } else {
        Err(error(404, format!("no query at `{path}`")))
    };
    result.unwrap_or_else(|e| e)
}

/// `GET /api/tasks/{id}`.
fn task(id: &str) -> Result<Response, Response> {
    let doc: Json = Table::open("tasks")
        .get_json(id)
        .map_err(internal)?
        .ok_or_else(|| error(404, format!("no task `{id}`")))?;
    let version = doc["version"].as_u64().unwrap_or_default();
    Ok(Response::json(&doc).with_header("etag", format!("\"{version}\"")))
}

/// `GET /api/users[/{name}][?model=live|replay]`.
fn users(req: &Request) -> Result<Response, Response> {
    let table = match req.query("model").unwrap_or("live") {
        "live" => Table::open("users"),
        "replay" => Table::open("replay"),
        other => {
            return Err(error(
                400,
                format!("model must be `live` or `replay`, not `{other}`"),
            ));
        }
    };
    let prefix = match req.param("name") {
        Some(name) => format!("user/{name}/"),
        None => "user/".to_owned(),
    };
    let mut grouped: Vec<Json> = Vec::new();
    for entry in list(&table, &prefix)? {
        let user = entry["user"].as_str().unwrap_or_default();
        if grouped.last().is_none_or(|u| u["user"] != user) {
            grouped.push(json!({ "user": user, "open": {}, "completed": {} }));
        }
        let doc = grouped.last_mut().expect("just pushed");
        let mut item = json!({ "title": entry["title"], "priority": entry["priority"] });
        let list = if entry["status"] == "completed" {
            item["completed_at"] = entry["completed_at"].clone();
            "completed"
        } else {
            "open"
        };
        doc[list][entry["task"].as_str().unwrap_or_default()] = item;
    }
    for doc in &mut grouped {
        doc["open_count"] = doc["open"].as_object().map_or(0, |o| o.len()).into();
        doc["completed_count"] = doc["completed"].as_object().map_or(0, |o| o.len()).into();
    }
    match req.param("name") {
        Some(name) => match grouped.pop() {
            Some(doc) => Ok(Response::json(&doc)),
            None => Err(error(404, format!("no tasks for user `{name}`"))),
        },
        None => Ok(Response::json(&json!({ "users": grouped }))),
    }
}

/// Every document of `table` under `prefix`, in key order.
fn list(table: &Table, prefix: &str) -> Result<Vec<Json>, Response> {
    let mut items = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = table
            .scan(prefix, after.as_deref(), SCAN_PAGE)
            .map_err(internal)?;
        for doc in &page {
            items.push(doc.json().map_err(internal)?);
        }
        match page.last() {
            Some(last) if page.len() == SCAN_PAGE as usize && items.len() < MAX_ITEMS => {
                after = Some(last.key.clone());
            }
            _ => return Ok(items),
        }
    }
}

/// A JSON error response: `{"error": message}`.
fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}

/// A storage failure as a `500`.
fn internal(e: impl std::fmt::Display) -> Response {
    error(500, e.to_string())
}
