//! Admin API for streams: append and inspect.
//!
//! * `POST /_gust/streams/{s}/records?key=K` — body = record (its content-type is kept)
//! * `GET  /_gust/streams/{s}` — partitions with their earliest and next offsets
//! * `GET  /_gust/streams/{s}/records?partition=P&from=O&max=N` — read records

use std::collections::BTreeMap;

use gust_backends::StreamRecord;
use gust_events::rfc3339;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::admin::form_pairs;
use crate::body::{self, Body};
use crate::host::Host;

/// Largest record accepted through the admin API.
const MAX_RECORD: usize = 1 << 20;

/// Routes `/_gust/streams/{name}/{rest..}`.
pub async fn handle(
    host: &Host,
    method: &Method,
    name: &str,
    rest: &[&str],
    query: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    if !gust_manifest::is_resource_name(name) {
        return body::error(
            StatusCode::BAD_REQUEST,
            "bad-stream-name",
            format!("`{name}` is not a stream name"),
        );
    }
    let params: BTreeMap<String, String> = form_pairs(query).into_iter().collect();
    let number = |key: &str, default: u64| -> u64 {
        params
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let stream = match host.streams().stream(name).await {
        Ok(s) => s,
        Err(e) => return body::error(StatusCode::SERVICE_UNAVAILABLE, "backend", e),
    };
    let result = match (method, rest) {
        (&Method::POST, ["records"]) => {
            let Some(key) = params.get("key").cloned() else {
                return body::error(
                    StatusCode::BAD_REQUEST,
                    "missing-key",
                    "give the record's partition key as ?key=...",
                );
            };
            let (content_type, data) = match body::read_upload(req, MAX_RECORD, "record").await {
                Ok(upload) => upload,
                Err(response) => return response,
            };
            let metadata = BTreeMap::from([("content-type".to_string(), content_type)]);
            stream.append(&key, data.to_vec(), metadata).await.map(|p| {
                (
                    StatusCode::CREATED,
                    json!({ "partition": p.partition, "offset": p.offset }),
                )
            })
        }
        (&Method::GET, []) => {
            let mut partitions = Vec::new();
            let mut failed = None;
            for p in 0..stream.partitions() {
                match stream.offsets(p).await {
                    Ok(o) => partitions
                        .push(json!({ "partition": p, "earliest": o.earliest, "next": o.next })),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            match failed {
                Some(e) => Err(e),
                None => Ok((
                    StatusCode::OK,
                    json!({ "stream": name, "partitions": partitions }),
                )),
            }
        }
        (&Method::GET, ["records"]) => {
            let partition = number("partition", 0) as u32;
            if partition >= stream.partitions() {
                return body::error(
                    StatusCode::BAD_REQUEST,
                    "bad-partition",
                    format!("stream `{name}` has {} partitions", stream.partitions()),
                );
            }
            let max = number("max", 100).min(10_000) as usize;
            stream
                .read(partition, number("from", 0), max)
                .await
                .map(|records| {
                    (
                        StatusCode::OK,
                        json!(records.iter().map(record_json).collect::<Vec<_>>()),
                    )
                })
        }
        _ => {
            return body::error(
                StatusCode::NOT_FOUND,
                "not-found",
                format!(
                    "no stream route {method} /_gust/streams/{name}/{}",
                    rest.join("/")
                ),
            );
        }
    };
    match result {
        Ok((status, value)) => body::json(status, &value),
        Err(e) => body::error(StatusCode::SERVICE_UNAVAILABLE, "backend", e),
    }
}

fn record_json(r: &StreamRecord) -> Value {
    json!({
        "partition": r.partition,
        "offset": r.offset,
        "key": r.key,
        "appended_at": rfc3339(r.appended_at),
        "metadata": r.metadata,
        "body": String::from_utf8_lossy(&r.body),
    })
}
