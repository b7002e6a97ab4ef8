//! The admin API under `/_gust/`: what the CLI and the console use (plus
//! `metrics`, for a Prometheus server), and nothing else. Every route but
//! `health`, `openapi.json` and the console's own files
//! (`console/`, [`crate::console`]) needs the admin key (header `x-gust-key` or
//! `Authorization: Bearer <key>`); an address that keeps presenting wrong
//! keys is slowed down ([`crate::auth_throttle`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use serde_json::json;

use crate::body::{self, Body};
use crate::host::Host;
use crate::logs::{LogFilter, LogLine};
use crate::{dispatch, queues};
use gust_manifest::Trigger;
use gust_triggers::http::{RouteMatch, constant_time_eq, percent_decode};
use gust_triggers::registry;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Most log lines returned without `follow`.
const MAX_TAIL: usize = 10_000;

/// Handles a request whose path starts with `/_gust/`, from `client`.
pub async fn handle(host: Arc<Host>, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    let method = req.method().clone();
    match (&method, path.as_str()) {
        (&Method::GET, "/_gust/health") => {
            return body::json(StatusCode::OK, &json!({ "status": "ok" }));
        }
        (&Method::GET, "/_gust/openapi.json") => {
            let mut r = Response::new(body::full(OPENAPI));
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                "application/json".parse().expect("static"),
            );
            return r;
        }
        _ => {}
    }
    if (method == Method::GET || method == Method::HEAD)
        && crate::console::is_console_path(req.uri().path())
    {
        return crate::console::serve(&method, req.uri().path(), req.headers());
    }
    if let Some(topic) = path.strip_prefix("/_gust/topics/")
        && method == Method::POST
        && !topic.contains('/')
    {
        return crate::topics::ingress(&host, topic, req).await;
    }
    let throttle = host.auth_throttle();
    if let Err(wait) = throttle.check(client.ip(), Instant::now()) {
        return crate::auth_throttle::too_many_failures(wait);
    }
    if is_admin(&host, &req) {
        throttle.succeeded(client.ip());
    } else {
        throttle.failed(client.ip(), Instant::now());
        return body::error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the admin API needs the admin key (header x-gust-key; `gust keys` prints it)",
        );
    }
    let query = req.uri().query().unwrap_or("").to_string();
    let segments: Vec<&str> = path.trim_start_matches("/_gust/").split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, ["app"]) => app_info(&host),
        (&Method::GET, ["gateway"]) => crate::gateway::status(&host),
        (&Method::GET, ["functions"]) => functions(&host),
        (&Method::GET, ["stats"]) => crate::stats::stats(&host).await,
        (&Method::GET, ["invocations"]) => crate::stats::invocations(&host, &query),
        (&Method::POST, ["functions", name, "invoke"]) => invoke(&host, name, &query, req).await,
        (&Method::GET, ["logs"]) => logs(&host, &query),
        (&Method::POST, ["replay", name]) => crate::replay::handle(&host, name, req).await,
        (&Method::GET, ["metrics"]) => crate::metrics::response(std::slice::from_ref(&host)).await,
        (&Method::POST, ["keys", "rotate"]) => rotate_keys(&host, &query).await,
        (_, ["queues", name, rest @ ..]) => {
            queues::handle(&host, &method, name, rest, &query, req).await
        }
        (_, ["workflows", rest @ ..]) => {
            crate::workflows::handle(&host, &method, rest, &query, req).await
        }
        (_, ["streams", name, rest @ ..]) => {
            crate::streams::handle(&host, &method, name, rest, &query, req).await
        }
        (&Method::POST, ["reload"]) => match host.reload().await {
            Ok(()) => body::json(StatusCode::OK, &json!({ "reloaded": true })),
            Err(e) => body::error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "reload-failed",
                format!("{e:#}"),
            ),
        },
        _ => body::error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no admin route {method} {path}"),
        ),
    }
}

fn is_admin(host: &Host, req: &Request<Incoming>) -> bool {
    let keys = host.current().keys.current();
    let admin = &keys.admin;
    let header_key = req
        .headers()
        .get("x-gust-key")
        .and_then(|v| v.to_str().ok());
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    header_key
        .or(bearer)
        .is_some_and(|k| constant_time_eq(k, admin))
}

fn app_info(host: &Host) -> Response<Body> {
    let app = host.current();
    body::json(
        StatusCode::OK,
        &json!({
            "name": app.app.name,
            "dir": app.app.dir,
            "url": host.url(),
            "functions": app.app.functions.len(),
            "pooling": host.runtime().pooling(),
        }),
    )
}

fn functions(host: &Host) -> Response<Body> {
    let app = host.current();
    let list: Vec<serde_json::Value> = app
        .app
        .functions
        .iter()
        .map(|f| {
            let loaded = app.functions.get(&f.name);
            let event = app.events.functions.get(&f.name);
            let mut trigger = registry::describe(f)
                .map(|d| d.details)
                .unwrap_or_else(|e| json!({ "kind": f.trigger.kind(), "error": e.to_string() }));
            if let (Some(h), Some(map)) = (f.http(), trigger.as_object_mut()) {
                map.insert("url".into(), format!("{}{}", host.url(), h.route).into());
            }
            json!({
                "name": f.name,
                "trigger": trigger,
                "active": loaded.is_some() || event.is_some(),
                "component": loaded.map(|l| l.component.display().to_string()),
                "bindings": f.bindings.iter().map(|(name, b)| json!({
                    "name": name, "kind": b.kind.as_str(), "resource": b.resource,
                })).collect::<Vec<_>>(),
                "limits": {
                    "memory": f.limits.memory,
                    "timeout_ms": f.limits.timeout.as_millis() as u64,
                    "concurrency": f.limits.concurrency,
                    "max_body": f.limits.max_body,
                },
                "stats": match (loaded, event) {
                    (Some(l), _) => json!({
                        "invocations": l.stats.invocations.load(Ordering::Relaxed),
                        "failures": l.stats.failures.load(Ordering::Relaxed),
                        "rejected": l.stats.rejected.load(Ordering::Relaxed),
                        "running": f.limits.concurrency as usize - l.permits.available_permits(),
                    }),
                    (None, Some(e)) => json!({
                        "invocations": e.stats.invocations.load(Ordering::Relaxed),
                        "failures": e.stats.failures.load(Ordering::Relaxed),
                    }),
                    (None, None) => serde_json::Value::Null,
                },
            })
        })
        .collect();
    body::json(StatusCode::OK, &json!(list))
}

/// Runs a function as if called over HTTP, without needing its key.
/// Query: `method` (default: the route's first method, else POST with a body
/// and GET without) and `path` (default: the route, with `{params}` left in).
/// Runs event function `name` once on a `gust.invoke` CloudEvent carrying
/// the request body as data (outside its trigger: no retries, no dead
/// letter). Answers 200, or 500 with the function's error.
async fn invoke_event_function(
    app: &crate::app::LoadedApp,
    name: &str,
    kind: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let data = match http_body_util::Limited::new(req.into_body(), 16 << 20)
        .collect()
        .await
    {
        Ok(c) => c.to_bytes(),
        Err(e) => return body::error(StatusCode::BAD_REQUEST, "bad-body", e),
    };
    let mut event = gust_events::Event::new("/gust/invoke", "gust.invoke", data.to_vec());
    event.subject = Some(name.to_string());
    event.datacontenttype = content_type;
    let id = event.id.clone();
    match gust_triggers::Dispatcher::dispatch(app.events.as_ref(), name, event).await {
        gust_events::Outcome::Done => body::json(
            StatusCode::OK,
            &json!({ "function": name, "trigger": kind, "event": id, "outcome": "done" }),
        ),
        gust_events::Outcome::Retry(why) | gust_events::Outcome::Fail(why) => body::error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "function-failed",
            format!("`{name}` failed: {why}"),
        ),
    }
}

async fn invoke(host: &Host, name: &str, query: &str, req: Request<Incoming>) -> Response<Body> {
    let app = host.current();
    let Some(function) = app.app.function(name) else {
        return body::error(
            StatusCode::NOT_FOUND,
            "no-such-function",
            format!("no function named `{name}`"),
        );
    };
    let Trigger::Http(http_trigger) = &function.trigger else {
        return invoke_event_function(&app, name, function.trigger.kind(), req).await;
    };
    let params: Vec<(String, String)> = form_pairs(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let data = match req.into_body().collect().await {
        Ok(c) => c.to_bytes(),
        Err(e) => return body::error(StatusCode::BAD_REQUEST, "bad-body", e),
    };
    let method = match get("method") {
        Some(m) => match m.to_ascii_uppercase().parse::<Method>() {
            Ok(m) => m,
            Err(_) => {
                return body::error(
                    StatusCode::BAD_REQUEST,
                    "bad-method",
                    format!("`{m}` is not a method"),
                );
            }
        },
        None => http_trigger
            .methods
            .first()
            .cloned()
            .unwrap_or(if data.is_empty() {
                Method::GET
            } else {
                Method::POST
            }),
    };
    let path = get("path").unwrap_or_else(|| http_trigger.route.clone());
    let route_path = path.split('?').next().unwrap_or("/").to_string();
    let route_params = match app.router.route(&method, &route_path) {
        RouteMatch::Found { entry, params } if entry.function == name => params,
        _ => Vec::new(),
    };
    let Ok(request) = Request::builder()
        .method(method)
        .uri(&path)
        .header(header::HOST, host.authority())
        .header("x-gust-invoke", "cli")
        .body(Full::new(data))
    else {
        return body::error(
            StatusCode::BAD_REQUEST,
            "bad-path",
            format!("`{path}` is not a valid path"),
        );
    };
    dispatch::invoke(&app, name, &http_trigger.route, &route_params, request).await
}

/// `POST /_gust/keys/rotate[?only=all|admin|host|function:<name>]`: new
/// keys at once, saved in the keys file; answers them.
async fn rotate_keys(host: &Host, query: &str) -> Response<Body> {
    let params = form_pairs(query);
    let only = params
        .iter()
        .find(|(k, _)| k == "only")
        .map_or("all", |(_, v)| v.as_str());
    let scope = match crate::keys::KeyScope::parse(only) {
        Ok(scope) => scope,
        Err(e) => return body::error(StatusCode::BAD_REQUEST, "bad-scope", format!("{e:#}")),
    };
    match host.rotate_keys(&scope).await {
        Ok(keys) => body::json(StatusCode::OK, &json!(keys)),
        Err(e) => body::error(StatusCode::CONFLICT, "rotate-failed", format!("{e:#}")),
    }
}

fn logs(host: &Host, query: &str) -> Response<Body> {
    let params = form_pairs(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let min_level = match get("level").filter(|l| !l.is_empty()).map(|l| l.parse()) {
        None => None,
        Some(Ok(level)) => Some(level),
        Some(Err(e)) => return body::error(StatusCode::BAD_REQUEST, "bad-level", e),
    };
    let filter = LogFilter {
        function: get("function").filter(|f| !f.is_empty()),
        min_level,
        invocation: get("invocation").filter(|i| !i.is_empty()),
    };
    if filter.invocation.as_ref().is_some_and(|i| i.len() < 8) {
        return body::error(
            StatusCode::BAD_REQUEST,
            "bad-invocation",
            "give at least the first 8 digits of the invocation id",
        );
    }
    let json = get("format").is_some_and(|f| f == "json");
    let tail = get("tail")
        .and_then(|t| t.parse().ok())
        .unwrap_or(100)
        .min(MAX_TAIL);
    let follow = get("follow").is_some_and(|f| f == "true" || f == "1");
    let logs = host.logs();
    let backlog: String = logs
        .recent(&filter, tail)
        .iter()
        .map(|l| render(l, json))
        .collect();
    let mut response = if follow {
        let receiver = tokio_stream_of(logs.subscribe(), filter, json);
        let first = futures::stream::once(async move { Ok(Frame::data(Bytes::from(backlog))) });
        Response::new(BodyExt::boxed_unsync(StreamBody::new(
            first.chain(receiver),
        )))
    } else {
        Response::new(body::full(backlog))
    };
    let content_type = if json {
        "application/x-ndjson"
    } else {
        "text/plain; charset=utf-8"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type.parse().expect("static"));
    response
}

/// One line of `gust logs` output: text, or a JSON object.
fn render(line: &LogLine, json: bool) -> String {
    if json {
        line.to_json() + "\n"
    } else {
        line.render() + "\n"
    }
}

type FrameResult = Result<Frame<Bytes>, body::BoxError>;

fn tokio_stream_of(
    receiver: tokio::sync::broadcast::Receiver<LogLine>,
    filter: LogFilter,
    json: bool,
) -> impl futures::Stream<Item = FrameResult> + Send + 'static {
    futures::stream::unfold((receiver, filter), move |(mut rx, filter)| async move {
        loop {
            match rx.recv().await {
                Ok(line) => {
                    if filter.accepts(&line) {
                        let frame = Frame::data(Bytes::from(render(&line, json)));
                        return Some((Ok(frame), (rx, filter)));
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let note = if json {
                        format!("{}\n", json!({ "skipped": n }))
                    } else {
                        format!("... {n} lines skipped ...\n")
                    };
                    return Some((Ok(Frame::data(Bytes::from(note))), (rx, filter)));
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
}

/// Decodes `a=1&b=x%20y` (also `+` as space).
pub fn form_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    percent_decode(&s.replace('+', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_form_pairs() {
        assert_eq!(
            form_pairs("path=%2Fhello%3Fname%3DAda&method=get&x"),
            vec![
                ("path".to_string(), "/hello?name=Ada".to_string()),
                ("method".to_string(), "get".to_string()),
                ("x".to_string(), String::new()),
            ]
        );
        assert_eq!(decode("a+b%zz%4"), "a b%zz%4");
    }
}
