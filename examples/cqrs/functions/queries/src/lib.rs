//! The read side of the CQRS example (functions `list-contacts` and
//! `get-contact`): queries read only the read model `contact-views`, one
//! flat document per contact kept current by the projector. They never
//! touch the write model (their manifest entry does not even bind it).
//!
//! * `GET /api/queries/contacts/{id}` — one contact, `404` when unknown; the
//!   `ETag` is the write-model version the view reflects.
//! * `GET /api/queries/contacts?limit=20&after=<id>&city=London&q=ada` — a
//!   page of contacts in id order, filtered by city (exact, any case) and by
//!   a text in name or email; `next` is the cursor for the following page.

use gust_sdk::http::{Request, Response};
use gust_sdk::serde_json::{Value as Json, json};
use gust_sdk::table::Table;

/// Most documents read from the table per scan.
const SCAN_PAGE: u32 = 200;
/// Most documents examined by one filtered list request.
const SCAN_BUDGET: usize = 5_000;

/// Serves both queries.
#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let views = Table::open("views");
    let result = match req.param("id") {
        Some(id) => one(&views, id),
        None => list(&views, &req),
    };
    result.unwrap_or_else(|e| e)
}

/// `GET /api/queries/contacts/{id}`.
fn one(views: &Table, id: &str) -> Result<Response, Response> {
    match views.get(id).map_err(internal)? {
        Some(doc) => {
            let view: Json = doc.json().map_err(internal)?;
            // The write-model version the view reflects: `If-Match` on a command.
            let version = view["version"].as_u64().unwrap_or_default();
            Ok(Response::json(&view).with_header("etag", format!("\"{version}\"")))
        }
        None => Err(error(404, format!("no contact `{id}`"))),
    }
}

/// `GET /api/queries/contacts`.
fn list(views: &Table, req: &Request) -> Result<Response, Response> {
    let limit = match req.query("limit") {
        None => 20,
        Some(n) => n
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| error(400, "limit must be a number from 1 to 100"))?,
    };
    let city = req.query("city").map(str::to_lowercase);
    let text = req.query("q").map(str::to_lowercase);
    let mut after = req.query("after").map(str::to_owned);
    let mut items = Vec::new();
    let mut examined = 0;
    let mut next = None;
    'scan: loop {
        let page = views
            .scan("", after.as_deref(), SCAN_PAGE)
            .map_err(internal)?;
        let exhausted = page.len() < SCAN_PAGE as usize;
        for doc in page {
            examined += 1;
            after = Some(doc.key.clone());
            let view: Json = doc.json().map_err(internal)?;
            let field = |name: &str| view[name].as_str().unwrap_or_default().to_lowercase();
            let matches = city.as_ref().is_none_or(|c| field("city") == *c)
                && text
                    .as_ref()
                    .is_none_or(|t| field("name").contains(t) || field("email").contains(t));
            if matches {
                items.push(view);
                if items.len() == limit {
                    next = after.clone();
                    break 'scan;
                }
            }
            if examined >= SCAN_BUDGET {
                next = after.clone();
                break 'scan;
            }
        }
        if exhausted {
            break;
        }
    }
    Ok(Response::json(&json!({ "items": items, "next": next })))
}

/// A JSON error response: `{"error": message}`.
fn error(status: u16, message: impl Into<String>) -> Response {
    Response::json(&json!({ "error": message.into() })).with_status(status)
}

/// A storage failure as a `500`.
fn internal(e: impl std::fmt::Display) -> Response {
    error(500, e.to_string())
}
