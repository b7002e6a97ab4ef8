//! Admin API for queues: send, peek, depth, dead letters and redrive.
//!
//! * `POST /_gust/queues/{q}/messages` — body = message (its content-type is kept)
//! * `GET  /_gust/queues/{q}` — depth and dead-letter count
//! * `GET  /_gust/queues/{q}/messages?max=N` — peek without leasing
//! * `GET  /_gust/queues/{q}/deadletter?max=N` — dead letters with reasons
//! * `POST /_gust/queues/{q}/deadletter/redrive` — move them all back

use std::collections::BTreeMap;

use gust_backends::{DeadLetter, Message};
use gust_events::rfc3339;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::admin::form_pairs;
use crate::body::{self, Body};
use crate::host::Host;

/// Largest message accepted through the admin API.
const MAX_MESSAGE: usize = 4 << 20;

/// Routes `/_gust/queues/{name}/{rest..}`.
pub async fn handle(
    host: &Host,
    method: &Method,
    name: &str,
    rest: &[&str],
    query: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let valid = gust_manifest::is_resource_name(name);
    if !valid {
        return body::error(
            StatusCode::BAD_REQUEST,
            "bad-queue-name",
            format!("`{name}` is not a queue name"),
        );
    }
    let max = form_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "max")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(100usize)
        .min(10_000);
    let queue = match host.open_queue(name).await {
        Ok(q) => q,
        Err(e) => return body::error(StatusCode::SERVICE_UNAVAILABLE, "backend", e),
    };
    let result = match (method, rest) {
        (&Method::POST, ["messages"]) => {
            let (content_type, data) = match body::read_upload(req, MAX_MESSAGE, "message").await {
                Ok(upload) => upload,
                Err(response) => return response,
            };
            let metadata = BTreeMap::from([("content-type".to_string(), content_type)]);
            queue
                .send(data.to_vec(), metadata)
                .await
                .map(|id| (StatusCode::ACCEPTED, json!({ "id": id })))
        }
        (&Method::GET, []) => match (queue.depth().await, queue.dead_letter_count().await) {
            (Ok(depth), Ok(dead)) => Ok((
                StatusCode::OK,
                json!({ "queue": name, "depth": depth, "deadletters": dead }),
            )),
            (Err(e), _) | (_, Err(e)) => Err(e),
        },
        (&Method::GET, ["messages"]) => queue.peek(max).await.map(|m| {
            (
                StatusCode::OK,
                json!(m.iter().map(message_json).collect::<Vec<_>>()),
            )
        }),
        (&Method::GET, ["deadletter"]) => queue.dead_letters(max).await.map(|d| {
            (
                StatusCode::OK,
                json!(d.iter().map(dead_letter_json).collect::<Vec<_>>()),
            )
        }),
        (&Method::POST, ["deadletter", "redrive"]) => queue
            .redrive()
            .await
            .map(|n| (StatusCode::OK, json!({ "redriven": n }))),
        _ => {
            return body::error(
                StatusCode::NOT_FOUND,
                "not-found",
                format!(
                    "no queue route {method} /_gust/queues/{name}/{}",
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

fn message_json(m: &Message) -> Value {
    json!({
        "id": m.id,
        "attempt": m.attempt,
        "enqueued_at": rfc3339(m.enqueued_at),
        "metadata": m.metadata,
        "body": String::from_utf8_lossy(&m.body),
    })
}

fn dead_letter_json(d: &DeadLetter) -> Value {
    let mut v = message_json(&d.message);
    v["reason"] = json!(d.reason);
    v["attempts"] = json!(d.attempts);
    v["dead_lettered_at"] = json!(rfc3339(d.dead_lettered_at));
    v
}
