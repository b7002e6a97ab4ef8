//! The node's one HTTP listener: `/_gust/health`, the cluster's admin API
//! under `/_gust/cluster/`, and every app: `/<app>/...` (prefix stripped,
//! `x-forwarded-prefix` added, the app's own `/_gust/` admin API included)
//! or, at the root, the app one of whose routes matches the path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gust_host::body::{self, Body};
use gust_host::server;
use gust_triggers::http::RouteMatch;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::node::{Node, Serving};

/// How long shutdown waits for open requests.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves `node` on `listener` until `shutdown`, then drains.
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, client)) = accepted else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let node = node.clone();
                let service = service_fn(move |req| {
                    let node = node.clone();
                    async move { Ok::<_, Infallible>(handle(node, req, client).await) }
                });
                let connection = graceful.watch(
                    builder.serve_connection(TokioIo::new(stream), service).into_owned(),
                );
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    for serving in node.apps().values() {
        serving.host.sse().close();
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("gave up waiting for open requests"),
    }
}

/// Answers one request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/_gust/health" {
        return health(&node);
    }
    if path == "/_gust/cluster" || path.starts_with("/_gust/cluster/") {
        return crate::admin::handle(node, req).await;
    }
    let apps = node.apps();
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    if let Some(serving) = apps.get(first) {
        let rest = &path[1 + first.len()..];
        let rest = if rest.is_empty() { "/" } else { rest };
        return forward(serving, req, rest, Some(first), client).await;
    }
    // At the root: the app that has the route, or the only app.
    let only = (apps.len() == 1).then(|| apps.values().next()).flatten();
    if let Some(serving) = apps.values().find(|s| serves_path(s, &req, &path)).or(only) {
        return forward(serving, req, &path, None, client).await;
    }
    let names: Vec<&String> = apps.keys().collect();
    body::error(
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "no app serves {path}; apps on this cluster: {names:?} (each under /<app>/ and at its own routes)"
        ),
    )
}

/// `GET /_gust/health`: 200 once the node applied the cluster's
/// deployments (readiness), 503 before.
fn health(node: &Node) -> Response<Body> {
    let ready = node.is_ready();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut info = node.describe();
    info["status"] = if ready { "ok" } else { "starting" }.into();
    info["node"] = node.id().into();
    info["cluster"] = node.cluster().into();
    body::json(status, &info)
}

/// Whether one of the app's function routes or static mounts (other than
/// one at `/`) serves `path` at the root.
fn serves_path(serving: &Serving, req: &Request<Incoming>, path: &str) -> bool {
    let app = serving.host.current();
    if !matches!(app.router.route(req.method(), path), RouteMatch::NotFound) {
        return true;
    }
    app.statics.mounts().any(|m| {
        m.route != "/"
            && (path == m.route
                || path
                    .strip_prefix(m.route.as_str())
                    .is_some_and(|rest| rest.starts_with('/')))
    })
}

/// Hands `req` to the app's host as a request for `path` (and the query).
async fn forward(
    serving: &Serving,
    req: Request<Incoming>,
    path: &str,
    prefix: Option<&str>,
    client: SocketAddr,
) -> Response<Body> {
    let (mut parts, incoming) = req.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    match Uri::builder().path_and_query(path_and_query).build() {
        Ok(uri) => parts.uri = uri,
        Err(e) => return body::error(StatusCode::BAD_REQUEST, "bad-request", e),
    }
    if let Some(prefix) = prefix
        && let Ok(v) = HeaderValue::from_str(&format!("/{prefix}"))
    {
        parts.headers.insert("x-forwarded-prefix", v);
    }
    server::route(
        serving.host.clone(),
        Request::from_parts(parts, incoming),
        client,
    )
    .await
}
