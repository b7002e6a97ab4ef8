//! The metrics listener of `gust up --metrics-listen ADDR`: `GET /metrics`
//! without a key, for a Prometheus server to scrape; nothing else. It is
//! meant for a private address (it needs no key, and shows function names
//! and queue depths, never data).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::host::Host;

/// Binds the metrics listener on `addr`, with an error that names the flag.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen on {addr} for metrics; choose another --metrics-listen address")
    })
}

/// Serves `GET /metrics` for `hosts` on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    hosts: Vec<Arc<Host>>,
    shutdown: impl Future<Output = ()>,
) {
    let hosts: Arc<[Arc<Host>]> = hosts.into();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let hosts = hosts.clone();
                let service = service_fn(move |req| {
                    let hosts = hosts.clone();
                    async move { Ok::<_, Infallible>(route(&hosts, &req).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
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
