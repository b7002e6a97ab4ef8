//! A ready-made accept loop serving a [`Gateway`] over HTTP/1.1 and h2c.

use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::Gateway;

/// Serves the gateway on `listener` until the returned future is dropped.
///
/// Each connection speaks HTTP/1.1 or HTTP/2 (prior knowledge), supports
/// upgrades (WebSocket pass-through), closes clients that take longer than
/// `header_timeout` to send a request head, and answers request heads
/// larger than `max_header_bytes` with 431.
pub async fn serve(listener: TcpListener, gateway: Gateway) -> std::io::Result<()> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(gateway.header_timeout())
        .max_buf_size(gateway.max_header_bytes().max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(gateway.max_header_bytes().min(u32::MAX as usize) as u32);
    let builder = Arc::new(builder);
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = gateway.service(addr);
        let builder = builder.clone();
        tokio::spawn(async move {
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(client = %addr, error = %e, "connection ended with an error");
            }
        });
    }
}
