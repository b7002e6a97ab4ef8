//! Starts a tiny upstream and a gateway in front of it, prints both URLs and
//! serves until killed. Used by `bench/gateway.sh` to measure the gateway's
//! overhead with wrk.

use std::convert::Infallible;
use std::sync::Arc;

use gust_gateway::{Gateway, GatewayConfig, NoFunctions};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let workers = std::env::var("GW_BENCH_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()?
        .block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let upstream = TcpListener::bind("127.0.0.1:0").await?;
    let upstream_url = format!("http://{}", upstream.local_addr()?);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = upstream.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(http::Response::new(gust_gateway::full(
                        "hello from upstream\n",
                    )))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    let toml = format!(
        r#"
        [[gateway.route]]
        name = "bench"
        prefix = "/"
        target = {{ upstream = "{upstream_url}" }}
        "#
    );
    let gateway = Gateway::new(GatewayConfig::from_manifest(&toml)?, Arc::new(NoFunctions))?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("UPSTREAM={upstream_url}/");
    println!("GATEWAY=http://{}/", listener.local_addr()?);
    gust_gateway::serve(listener, gateway).await?;
    Ok(())
}
