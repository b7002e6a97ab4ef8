//! The HTTP listener: HTTP/1.1 and HTTP/2, graceful shutdown that lets
//! in-flight requests finish.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use crate::body::Body;
use crate::host::Host;
use crate::{admin, dispatch, gateway, sse};

/// How long shutdown waits for in-flight requests.
const DRAIN: Duration = Duration::from_secs(30);

/// Serves until `shutdown` resolves, then stops accepting and waits (up to
/// 30 s) for open requests to finish.
pub async fn serve(listener: TcpListener, host: Arc<Host>, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let builder = auto::Builder::new(TokioExecutor::new());
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let host = host.clone();
                let service = service_fn(move |req| {
                    let host = host.clone();
                    async move { Ok::<_, Infallible>(route(host, req, client).await) }
                });
                let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    let _ = connection.await;
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    // Event streams never finish by themselves: end them so the drain can.
    host.sse().close();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN) => tracing::warn!("gave up waiting for open requests"),
    }
}

/// Answers one request to `host`: its admin API, event streams, gateway,
/// static files and functions.
pub async fn route(host: Arc<Host>, req: Request<Incoming>, client: SocketAddr) -> Response<Body> {
    let path = req.uri().path();
    if path == "/_gust" || path.starts_with("/_gust/") {
        return admin::handle(host, req).await;
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
