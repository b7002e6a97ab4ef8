//! Topic ingress, `POST /_gust/topics/{topic}`: CloudEvents in structured
//! (`application/cloudevents+json`), binary (`ce-*` headers) or batch
//! (`application/cloudevents-batch+json`) mode, authorised by the app's host
//! key (or admin key) in `x-gust-key`. Answers 202 once every event is stored
//! for every matching subscription.

use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;

use crate::body::{self, Body};
use crate::host::Host;
use gust_triggers::http::constant_time_eq;

/// Largest request accepted (one event or a batch).
pub const MAX_REQUEST: usize = 1 << 20;

/// Handles a publish to `topic`.
pub async fn ingress(host: &Host, topic: &str, req: Request<Incoming>) -> Response<Body> {
    let app = host.current();
    let key = req
        .headers()
        .get("x-gust-key")
        .and_then(|v| v.to_str().ok());
    let keys = app.keys.current();
    let authorised =
        key.is_some_and(|k| constant_time_eq(k, &keys.host) || constant_time_eq(k, &keys.admin));
    if !authorised {
        return body::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "publishing needs the app's host key in header x-gust-key (`gust keys --host` prints it)",
        );
    }
    let valid_name = gust_manifest::is_resource_name(topic);
    if !valid_name {
        return body::error(
            StatusCode::BAD_REQUEST,
            "bad-topic",
            format!("`{topic}` is not a topic name"),
        );
    }
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let too_large = || {
        body::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!("a publish request is at most {MAX_REQUEST} bytes"),
        )
    };
    if declared.is_some_and(|n| n > MAX_REQUEST) {
        if declared.is_some_and(|n| n as u64 <= body::DRAIN_LIMIT) {
            body::drain(req.into_body()).await;
        }
        return too_large();
    }
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let data = match Limited::new(req.into_body(), MAX_REQUEST).collect().await {
        Ok(c) => c.to_bytes().to_vec(),
        Err(_) => return too_large(),
    };
    let parsed = if content_type.starts_with("application/cloudevents-batch+json") {
        gust_events::parse_batch(&data)
    } else if content_type.starts_with("application/cloudevents+json") {
        gust_events::parse_structured(&data).map(|e| vec![e])
    } else if headers.iter().any(|(k, _)| k == "ce-specversion") {
        gust_events::parse_binary(headers.iter().map(|(k, v)| (k.as_str(), v.as_str())), data)
            .map(|e| vec![e])
    } else {
        return body::error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not-a-cloudevent",
            "send application/cloudevents+json, application/cloudevents-batch+json, or binary mode with ce-* headers",
        );
    };
    let events = match parsed {
        Ok(events) => events,
        Err(e) => return body::error(StatusCode::BAD_REQUEST, "malformed-cloudevent", e),
    };
    let Some(publisher) = app.publisher.get() else {
        return body::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "starting",
            "the host is still starting",
        );
    };
    let for_sse = host.sse().watches(topic).then(|| events.clone());
    match publisher.publish(topic, events).await {
        Ok(report) => {
            if let Some(events) = for_sse {
                host.sse().publish(topic, &events).await;
            }
            body::json(
                StatusCode::ACCEPTED,
                &json!({
                    "topic": topic,
                    "accepted": report.accepted,
                    "duplicates": report.duplicates,
                    "deliveries": report.deliveries,
                    "subscriptions": publisher.subscriptions(topic).len(),
                }),
            )
        }
        Err(e) => body::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend",
            format!("events not stored, retry: {e}"),
        ),
    }
}
