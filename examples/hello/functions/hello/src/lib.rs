//! `GET /hello?name=Ada` → `hello, Ada! (call #3)`.
//!
//! Shows a query parameter, a variable (`greeting`) and a key-value binding
//! (`counter`, key `calls`) counting every call.

use gust_sdk::http::{self, Request, Response};
use gust_sdk::{kv, variables};

#[gust_sdk::http]
fn handle(req: Request) -> http::Result {
    let name = req
        .query("name")
        .filter(|n| !n.is_empty())
        .unwrap_or("world");
    let greeting = variables::get("greeting")?.unwrap_or_else(|| "hello".to_owned());
    let calls = kv::Store::open("counter")?.increment("calls", 1)?;
    Ok(Response::ok(format!("{greeting}, {name}! (call #{calls})")))
}
