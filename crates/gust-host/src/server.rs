//! The listener of one app's host: HTTP/1.1 and HTTP/2 (and HTTPS) with
//! the limits of [`crate::listener`], graceful shutdown that lets in-flight
//! requests finish.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::body::Body;
use crate::host::Host;
use crate::listener;
use crate::{admin, dispatch, gateway, sse};

/// Serves `host` with its listener options until `shutdown` resolves, then
/// ends its event streams, stops accepting and waits for open requests.
pub async fn serve(listener: TcpListener, host: Arc<Host>, shutdown: impl Future<Output = ()>) {
    let options = host.options().serve.clone();
    let closing = host.clone();
    let shutdown = async move {
        shutdown.await;
        // Event streams never finish by themselves: end them so the drain can.
        closing.sse().close();
    };
    let handler = move |req, client| route(host.clone(), req, client);
    listener::serve_with(listener, handler, options, shutdown).await;
}

/// Answers one request to `host`: its admin API, event streams, gateway,
/// static files and functions.
pub async fn route(host: Arc<Host>, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    if path == "/_gust" || path.starts_with("/_gust/") {
        return admin::handle(host, req, client).await;
    }
    let app = host.current();
    if let Some(response) = sse::handle(host.sse(), &app, &req) {
        return response;
    }
    match gateway::handle(&app, req, client).await {
        Ok(response) => response,
        Err(req) => dispatch::handle(app, req).await,
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
