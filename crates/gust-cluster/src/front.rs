//! The node's one HTTP listener: `/_gust/health`, the cluster's admin API
//! under `/_gust/cluster/`, and every app: `/<app>/...` (prefix stripped,
//! `x-forwarded-prefix` added, the app's own `/_gust/` admin API included)
//! or, at the root, the app one of whose routes matches the path.

use std::net::SocketAddr;
use std::sync::Arc;

use gust_host::body::{self, Body};
use gust_host::listener::{ServeOptions, serve_with};
use gust_host::server;
use gust_triggers::http::RouteMatch;
use http::header::HeaderValue;
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::node::{Node, Serving};

/// Serves `node` on `listener` until `shutdown`, then ends the apps' event
/// streams and drains open requests (up to `options.drain`).
pub async fn serve(
    listener: TcpListener,
    node: Arc<Node>,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let closing = node.clone();
    let shutdown = async move {
        shutdown.await;
        for serving in closing.apps().values() {
            serving.host.sse().close();
        }
    };
    let handler = move |req, client| handle(node.clone(), req, client);
    serve_with(listener, handler, options, shutdown).await;
}

/// Answers one request.
pub async fn handle(node: Arc<Node>, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let path = req.uri().path().to_string();
    if path == "/_gust/health" {
        return health(&node);
    }
    if path == "/_gust/cluster" || path.starts_with("/_gust/cluster/") {
        return crate::admin::handle(node, req, client).await;
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
