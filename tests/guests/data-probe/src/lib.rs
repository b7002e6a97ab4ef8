//! An HTTP function for the host's end-to-end tests of the data bindings.
//! It expects bindings `db` (sql), `docs` (table) and `events` (topic):
//!
//! | request | does |
//! |---------|------|
//! | `POST /data/sql/execute` `{"sql": "...", "params": [...]}` | `{"changed": n}` |
//! | `POST /data/sql/query` `{"sql": "...", "params": [...]}` | `{"columns": [...], "rows": [[...]]}` |
//! | `PUT /data/docs/{key}` (body) | `{"version": n}` |
//! | `GET /data/docs/{key}` | the body, or 404 |
//! | `DELETE /data/docs/{key}` | `{"deleted": bool}` |
//! | `POST /data/publish/{type}` (body) | `{"id": "..."}` |
//! | `POST /data/append/{key}` (body) | appends to stream binding `out`: `{"partition": p, "offset": o}` |
//! | `PUT /data/blob/{name}` (body) | writes blob `name` (percent-decoded) to container binding `files` |
//! | `GET /data/blob/{name}` | reads it (404 when missing) |
//! | `POST /data/undeclared` | uses sql binding `nope`: the host refuses |
//!
//! Binding errors answer 400 with `{"error": "..."}`.

use gust_sdk::http::{Request, Response};
use gust_sdk::sql::{Database, Value};
use gust_sdk::table::Table;
use serde_json::{Value as Json, json};

fn param(v: &Json) -> Value {
    match v {
        Json::Null => Value::Null,
        Json::Bool(b) => Value::Integer(*b as i64),
        Json::Number(n) => n.as_i64().map_or_else(|| Value::Real(n.as_f64().unwrap_or(0.0)), Value::Integer),
        Json::String(s) => Value::Text(s.clone()),
        other => Value::Text(other.to_string()),
    }
}

fn error(message: impl std::fmt::Display) -> Response {
    Response::json(&json!({ "error": message.to_string() })).with_status(400)
}

#[gust_sdk::http]
fn handle(req: Request) -> Response {
    let path = req.path().trim_start_matches("/data/").to_string();
    let parts: Vec<&str> = path.splitn(2, '/').collect();
    match (req.method(), parts.as_slice()) {
        ("POST", ["sql", op]) => {
            let body: Json = match req.json() {
                Ok(b) => b,
                Err(e) => return error(e),
            };
            let sql = body["sql"].as_str().unwrap_or_default();
            let params: Vec<Value> = body["params"].as_array().map(|a| a.iter().map(param).collect()).unwrap_or_default();
            let db = Database::open("db");
            match *op {
                "execute" => match db.execute(sql, &params) {
                    Ok(n) => Response::json(&json!({ "changed": n })),
                    Err(e) => error(e),
                },
                "query" => match db.query(sql, &params) {
                    Ok(rows) => Response::json(&json!({
                        "columns": rows.columns,
                        "rows": rows.rows.iter().map(|r| r.iter().map(Value::to_json).collect::<Vec<_>>()).collect::<Vec<_>>(),
                    })),
                    Err(e) => error(e),
                },
                _ => Response::not_found(),
            }
        }
        (method, ["docs", key]) => {
            let docs = Table::open("docs");
            let result = match method {
                "PUT" => docs.put(key, req.body()).map(|v| Response::json(&json!({ "version": v }))),
                "GET" => docs.get(key).map(|d| match d {
                    Some(d) => Response::ok("").with_body(d.body),
                    None => Response::not_found(),
                }),
                "DELETE" => docs.delete(key).map(|d| Response::json(&json!({ "deleted": d }))),
                _ => return Response::status(405),
            };
            result.unwrap_or_else(error)
        }
        ("POST", ["publish", ty]) => {
            match gust_sdk::topic::publish("events", ty, Some("probe"), req.body(), Some("application/json")) {
                Ok(id) => Response::json(&json!({ "id": id })),
                Err(e) => error(e),
            }
        }
        ("POST", ["append", key]) => match gust_sdk::stream::append("out", key, req.body(), Some("text/plain")) {
            Ok(at) => Response::json(&json!({ "partition": at.partition, "offset": at.offset })),
            Err(e) => error(e),
        },
        ("PUT", ["blob", name]) => match gust_sdk::blob::Container::open("files").write(&gust_sdk::url_decode(name), req.body()) {
            Ok(()) => Response::json(&json!({ "written": name })),
            Err(e) => error(e),
        },
        ("GET", ["blob", name]) => match gust_sdk::blob::Container::open("files").read(&gust_sdk::url_decode(name)) {
            Ok(Some(data)) => Response::ok("").with_body(data),
            Ok(None) => Response::not_found(),
            Err(e) => error(e),
        },
        ("POST", ["undeclared"]) => match Database::open("nope").query("SELECT 1", &[]) {
            Ok(_) => Response::ok("unexpectedly allowed"),
            Err(e) => error(e),
        },
        _ => Response::not_found(),
    }
}
