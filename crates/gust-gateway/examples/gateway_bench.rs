//! Starts a tiny upstream and a gateway in front of it, prints both URLs and
//! serves until killed. Used by `bench/gateway.sh` to measure the gateway's
//! overhead with wrk.
//!
//! Also prints `BARE_PROXY=`: a reference proxy with no gateway logic (hyper
//! server + the same pooled hyper client, headers passed as they are), to
//! tell the cost of proxying over HTTP/1 at all from the gateway's own;
//! `RAW_RELAY=`: a TCP relay copying bytes between each client connection
//! and its own upstream connection, parsing nothing (the kernel's share of
//! any proxy: two reads and two writes per request);
//! and `GATEWAY_H2=`: the same gateway route with `http2 = true`, which
//! multiplexes every request to the upstream over one h2c connection.
//!
//! Environment:
//! - `GW_BENCH_THREADS=n`: Tokio worker threads (default 2).
//! - `GW_BENCH_ROLE=upstream`: start only the upstream, print `UPSTREAM=`.
//! - `GW_BENCH_UPSTREAM=http://127.0.0.1:PORT`: start no upstream; the
//!   gateway and the reference proxies forward to this one (printed as
//!   `UPSTREAM=` as well). With the two, `bench/gateway.sh` (`PIN=1`) runs
//!   the upstream and the gateway in two processes pinned to their own cores.

use std::convert::Infallible;
use std::sync::Arc;

use gust_gateway::{Gateway, GatewayConfig, NoFunctions};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
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
    let role = std::env::var("GW_BENCH_ROLE").unwrap_or_default();
    match role.as_str() {
        "" | "all" => {}
        "upstream" => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            println!("UPSTREAM=http://{}/", listener.local_addr()?);
            upstream(listener).await;
            return Ok(());
        }
        other => return Err(format!("GW_BENCH_ROLE={other}: use `upstream` or `all`").into()),
    }
    let upstream_url = match std::env::var("GW_BENCH_UPSTREAM") {
        Ok(url) if !url.is_empty() => url.trim_end_matches('/').to_string(),
        _ => {
            let listener = TcpListener::bind("127.0.0.1:0").await?;
            let url = format!("http://{}", listener.local_addr()?);
            tokio::spawn(upstream(listener));
            url
        }
    };

    let gateway = |http2: bool| {
        let toml = format!(
            r#"
            [[gateway.route]]
            name = "bench"
            prefix = "/"
            target = {{ upstream = "{upstream_url}", http2 = {http2} }}
            "#
        );
        Gateway::new(GatewayConfig::from_manifest(&toml)?, Arc::new(NoFunctions))
    };
    let h2 = TcpListener::bind("127.0.0.1:0").await?;
    println!("GATEWAY_H2=http://{}/", h2.local_addr()?);
    tokio::spawn(gust_gateway::serve(h2, gateway(true)?));
    let gateway = gateway(false)?;
    let bare = TcpListener::bind("127.0.0.1:0").await?;
    println!("BARE_PROXY=http://{}/", bare.local_addr()?);
    tokio::spawn(bare_proxy(bare, upstream_url.clone()));
    let relay = TcpListener::bind("127.0.0.1:0").await?;
    println!("RAW_RELAY=http://{}/", relay.local_addr()?);
    tokio::spawn(raw_relay(relay, upstream_url.clone()));

    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("UPSTREAM={upstream_url}/");
    println!("GATEWAY=http://{}/", listener.local_addr()?);
    gust_gateway::serve(listener, gateway).await?;
    Ok(())
}

/// A tiny upstream: answers every request with a short text.
async fn upstream(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
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
}

/// Forwards every request to `upstream` with hyper's pooled client and
/// returns the response as it comes: the floor under any HTTP/1 proxy.
async fn bare_proxy(listener: TcpListener, upstream: String) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build(connector);
    let upstream: Arc<str> = upstream.into();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: http::Request<Incoming>| {
                let client = client.clone();
                let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                let uri: http::Uri = format!("{upstream}{pq}")
                    .parse()
                    .expect("a path from a valid request");
                *req.uri_mut() = uri;
                req.headers_mut().remove(http::header::HOST);
                client.request(req)
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Relays each client connection byte for byte to its own new connection to
/// `upstream` (`http://host:port`): no parsing, no pooling, no headers.
async fn raw_relay(listener: TcpListener, upstream: String) {
    let address: Arc<str> = upstream.trim_start_matches("http://").into();
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let address = address.clone();
        tokio::spawn(async move {
            let Ok(mut server) = tokio::net::TcpStream::connect(&*address).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}
