//! Admin API for durable workflows (modelled on Durable Functions' status
//! API):
//!
//! * `POST /_gust/workflows/{workflow}[?id=ID]` — body = JSON input; `202`
//!   with `Location` and `{id, status_url}` (starting an existing id again
//!   changes nothing)
//! * `GET  /_gust/workflows[/{workflow}]` — instances
//! * `GET  /_gust/workflows/{workflow}/{id}` — `{id, status, input, output, error, history_len}`
//! * `POST /_gust/workflows/{workflow}/{id}/events/{name}` — body = JSON payload
//! * `POST /_gust/workflows/{workflow}/{id}/terminate` — optional `{reason}`

use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::{Value, json};

use crate::admin::form_pairs;
use crate::body::{self, Body};
use crate::host::Host;
use gust_triggers::workflow::api::{self, WorkflowError};
use gust_triggers::workflow::journal::Instance;

/// Largest input or event payload accepted.
const MAX_BODY: usize = 1 << 20;

/// Routes `/_gust/workflows/{rest..}`.
pub async fn handle(
    host: &Host,
    method: &Method,
    rest: &[&str],
    query: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let app = host.current();
    let functions = &app.app.functions;
    let services = host.services();
    let result = match (method, rest) {
        (&Method::GET, []) => list(host, None, query).await,
        (&Method::GET, [workflow]) => list(host, Some(workflow), query).await,
        (&Method::POST, [workflow]) => {
            let input = match read_json(req).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            let id = form_pairs(query)
                .into_iter()
                .find(|(k, _)| k == "id")
                .map(|(_, v)| v);
            match api::start(services, functions, workflow, id, input).await {
                Ok((instance, created)) => {
                    let status_url = format!(
                        "{}/_gust/workflows/{}/{}",
                        host.url(),
                        instance.workflow,
                        instance.id
                    );
                    let mut r = body::json(
                        StatusCode::ACCEPTED,
                        &json!({ "id": instance.id, "status_url": status_url, "created": created }),
                    );
                    if let Ok(v) = HeaderValue::from_str(&status_url) {
                        r.headers_mut().insert(header::LOCATION, v);
                    }
                    return r;
                }
                Err(e) => Err(e),
            }
        }
        (&Method::GET, [workflow, id]) => {
            api::status(services, functions, workflow, id)
                .await
                .map(|i| {
                    (
                        StatusCode::OK,
                        status_json(&i, query.contains("history=true")),
                    )
                })
        }
        (&Method::POST, [workflow, id, "events", name]) => {
            let data = match read_json(req).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            api::raise(services, functions, workflow, id, name, data)
                .await
                .map(|i| (StatusCode::ACCEPTED, status_json(&i, false)))
        }
        (&Method::POST, [workflow, id, "terminate"]) => {
            let body = match read_json(req).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            let reason = body
                .get("reason")
                .and_then(Value::as_str)
                .map(str::to_string);
            api::terminate(services, functions, workflow, id, reason)
                .await
                .map(|i| (StatusCode::OK, status_json(&i, false)))
        }
        _ => {
            return body::error(
                StatusCode::NOT_FOUND,
                "not-found",
                format!(
                    "no workflow route {method} /_gust/workflows/{}",
                    rest.join("/")
                ),
            );
        }
    };
    match result {
        Ok((status, value)) => body::json(status, &value),
        Err(e) => error(e),
    }
}

async fn list(
    host: &Host,
    workflow: Option<&str>,
    query: &str,
) -> Result<(StatusCode, Value), WorkflowError> {
    let app = host.current();
    let max = form_pairs(query)
        .into_iter()
        .find(|(k, _)| k == "max")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(1000usize)
        .min(100_000);
    let list = api::list(host.services(), &app.app.functions, workflow, max).await?;
    Ok((
        StatusCode::OK,
        Value::Array(list.iter().map(|i| status_json(i, false)).collect()),
    ))
}

/// The status document of an instance (with its steps when `history`).
pub fn status_json(i: &Instance, history: bool) -> Value {
    let mut v = json!({
        "workflow": i.workflow,
        "id": i.id,
        "status": i.status.as_str(),
        "input": i.input,
        "output": i.output,
        "error": i.error,
        "history_len": i.history.len(),
        "created": gust_events::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(i.created_ms)),
        "updated": gust_events::rfc3339(std::time::UNIX_EPOCH + std::time::Duration::from_millis(i.updated_ms)),
    });
    if history && let Some(map) = v.as_object_mut() {
        map.insert("history".into(), json!(i.history));
    }
    v
}

fn error(e: WorkflowError) -> Response<Body> {
    let (status, reason) = match &e {
        WorkflowError::UnknownWorkflow(_) => (StatusCode::NOT_FOUND, "no-such-workflow"),
        WorkflowError::UnknownInstance { .. } => (StatusCode::NOT_FOUND, "no-such-instance"),
        WorkflowError::Finished { .. } => (StatusCode::CONFLICT, "workflow-finished"),
        WorkflowError::BadInput(_) => (StatusCode::BAD_REQUEST, "bad-input"),
        WorkflowError::Journal(_) => (StatusCode::SERVICE_UNAVAILABLE, "backend"),
    };
    body::error(status, reason, e)
}

/// The request body as JSON (an empty body is `null`); malformed JSON is
/// a `400`.
async fn read_json(req: Request<Incoming>) -> Result<Value, Response<Body>> {
    let bytes = match http_body_util::Limited::new(req.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => {
            return Err(body::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "bad-body",
                format!("cannot read the body (limit {MAX_BODY} bytes): {e}"),
            ));
        }
    };
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes).map_err(|e| {
        body::error(
            StatusCode::BAD_REQUEST,
            "malformed-json",
            format!("the body is not JSON: {e}"),
        )
    })
}
