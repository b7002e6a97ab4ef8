//! The metrics listener of `gust up --metrics-listen ADDR`: `GET /metrics`
//! without a key, for a Prometheus server to scrape; nothing else. It is
//! meant for a private address (it needs no key, and shows function names
//! and queue depths, never data).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::host::Host;
use crate::listener::ServeOptions;

/// Binds the metrics listener on `addr` (non-blocking, with the accept
/// queue of every gust listener, [`crate::listener::BACKLOG`]), with an
/// error that names the flag. Convert it with `TcpListener::from_std`
/// inside the runtime.
pub fn bind_std(addr: SocketAddr) -> anyhow::Result<std::net::TcpListener> {
    crate::listener::bind_std(addr).with_context(|| {
        format!("cannot listen on {addr} for metrics; choose another --metrics-listen address")
    })
}

/// [`bind_std`] as a tokio listener (call inside the runtime).
pub fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    Ok(TcpListener::from_std(bind_std(addr)?)?)
}

/// Serves `GET /metrics` for `hosts` on `listener` until `shutdown`, with
/// the same connection limits as every other listener
/// ([`crate::listener::serve_with`]).
pub async fn serve(
    listener: TcpListener,
    hosts: Vec<Arc<Host>>,
    shutdown: impl Future<Output = ()>,
) {
    let hosts: Arc<[Arc<Host>]> = hosts.into();
    let handler = move |req: Request<Incoming>, _client| {
        let hosts = hosts.clone();
        async move { route(&hosts, &req).await }
    };
    crate::listener::serve_with(listener, handler, ServeOptions::default(), shutdown).await;
}

/// Answers one request on the metrics listener.
async fn route(hosts: &[Arc<Host>], req: &Request<Incoming>) -> Response<Body> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => super::response(hosts).await,
        (_, "/metrics") => body::error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "the metrics listener answers GET /metrics",
        ),
        (_, path) => body::error(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("no {path} here: the metrics listener answers GET /metrics"),
        ),
    }
}
