//! A client connection's own upstream connection (HTTP/1, `http://`): the
//! requests of one keep-alive client go over one upstream connection, the
//! upstream sees what the pooled client would send, and a connection that
//! closes, stalls or breaks costs no more than with the pool.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;

use crate::common::*;

/// An upstream that numbers its connections and answers with the
/// connection's number, `Host`, path and query, and the body's length.
/// `/close` answers with `connection: close`, `/slow` after a second,
/// `/error` drops the connection without an answer.
async fn numbered_upstream() -> (String, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicU64::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let conn = count.fetch_add(1, Ordering::SeqCst) + 1;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                let path = req.uri().path().to_string();
                let query = req.uri().query().map(str::to_string);
                let host = req
                    .headers()
                    .get("host")
                    .map(|v| v.to_str().unwrap().to_string());
                let xff = req
                    .headers()
                    .get("x-forwarded-for")
                    .map(|v| v.to_str().unwrap().to_string());
                match path.as_str() {
                    "/slow" => tokio::time::sleep(Duration::from_secs(1)).await,
                    "/error" => return Err(std::io::Error::other("dropped")),
                    _ => {}
                }
                let len = req.into_body().collect().await.unwrap().to_bytes().len();
                let text = serde_json::json!({
                    "conn": conn, "host": host, "path": path, "query": query, "len": len, "xff": xff,
                });
                let mut r = Response::new(Full::new(Bytes::from(text.to_string())));
                if path == "/close" {
                    r.headers_mut()
                        .insert("connection", "close".parse().unwrap());
                }
                Ok::<_, std::io::Error>(r)
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (url, accepted)
}

/// A keep-alive client: one connection per client, reused.
fn keep_alive_client() -> Client<HttpConnector, gust_gateway::Body> {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build(HttpConnector::new())
}

async fn call(
    client: &Client<HttpConnector, gust_gateway::Body>,
    req: Request<gust_gateway::Body>,
) -> (StatusCode, Value) {
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .expect("response in time")
        .expect("response");
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v)
}

async fn get_on(
    client: &Client<HttpConnector, gust_gateway::Body>,
    url: &str,
) -> (StatusCode, Value) {
    call(
        client,
        Request::get(url).body(gust_gateway::empty()).unwrap(),
    )
    .await
}

fn config(up: &str) -> String {
    format!(
        r#"
        [[gateway.route]]
        name = "all"
        prefix = "/"
        timeout = "300ms"
        target = {{ upstream = "{up}" }}
        breaker = {{ min_calls = 1000 }}
        "#
    )
}

/// A gateway proxying every path to `up` (no function targets).
async fn start_proxy(up: &str) -> (String, gust_gateway::Gateway) {
    let no_functions = |_: &str, _| -> gust_gateway::BoxFuture<Response<gust_gateway::Body>> {
        unreachable!("the routes have no function target")
    };
    start_gateway(&config(up), Arc::new(no_functions)).await
}

#[tokio::test]
async fn each_client_connection_keeps_its_own_upstream_connection() {
    let (up, _) = numbered_upstream().await;
    let (base, _gw) = start_proxy(&up).await;
    let (a, b) = (keep_alive_client(), keep_alive_client());
    // The first request of each takes the pool while their own connections open.
    let (_, first) = get_on(&a, &format!("{base}/x?n=0")).await;
    get_on(&b, &format!("{base}/x?n=0")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    let mut seen_a = Vec::new();
    let mut seen_b = Vec::new();
    for i in 1..=5 {
        let (s, v) = get_on(&a, &format!("{base}/x/y?n={i}")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        // What the pooled client sent: `Host` with the port, origin-form path.
        assert_eq!(v["host"], first["host"], "{v}");
        assert_eq!(v["host"], up.trim_start_matches("http://"));
        assert_eq!(
            (v["path"].as_str(), v["query"].as_str()),
            (Some("/x/y"), Some(format!("n={i}").as_str()))
        );
        assert_eq!(v["xff"], "127.0.0.1");
        seen_a.push(v["conn"].as_u64().unwrap());
        let (_, v) = get_on(&b, &format!("{base}/x?n={i}")).await;
        seen_b.push(v["conn"].as_u64().unwrap());
    }
    // Interleaved, one after the other: the pool would hand both clients
    // the same idle connection; each keeps its own instead.
    assert!(seen_a.iter().all(|c| *c == seen_a[0]), "{seen_a:?}");
    assert!(seen_b.iter().all(|c| *c == seen_b[0]), "{seen_b:?}");
    assert_ne!(seen_a[0], seen_b[0]);

    // A body goes over it too.
    let req = Request::post(format!("{base}/upload"))
        .body(gust_gateway::full(vec![b'x'; 30_000]))
        .unwrap();
    let (s, v) = call(&a, req).await;
    assert_eq!(
        (s, v["len"].as_u64()),
        (StatusCode::OK, Some(30_000)),
        "{v}"
    );
    assert_eq!(v["conn"].as_u64(), Some(seen_a[0]));
}

#[tokio::test]
async fn a_closed_stalled_or_broken_upstream_connection_is_replaced() {
    let (up, accepted) = numbered_upstream().await;
    let (base, gw) = start_proxy(&up).await;
    let client = keep_alive_client();
    get_on(&client, &format!("{base}/x")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (_, v) = get_on(&client, &format!("{base}/x")).await;
    let own = v["conn"].as_u64().unwrap();

    // The upstream closes its connection: the next requests still succeed.
    let (s, v) = get_on(&client, &format!("{base}/close")).await;
    assert_eq!((s, v["conn"].as_u64()), (StatusCode::OK, Some(own)));
    for _ in 0..3 {
        let (s, v) = get_on(&client, &format!("{base}/x")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_ne!(v["conn"].as_u64(), Some(own));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A timeout is a 504 as ever, and the next request is served.
    let (s, _) = get_on(&client, &format!("{base}/slow")).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT);
    let (s, _) = get_on(&client, &format!("{base}/x")).await;
    assert_eq!(s, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(50)).await;

    // An upstream that drops the connection without answering: 502.
    let (s, _) = get_on(&client, &format!("{base}/x")).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = get_on(&client, &format!("{base}/error")).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    let (s, _) = get_on(&client, &format!("{base}/x")).await;
    assert_eq!(s, StatusCode::OK);

    let st = &gw.status().routes[0];
    assert_eq!((st.timeouts, st.upstream_errors), (1, 1));
    assert!(accepted.load(Ordering::SeqCst) <= 8, "{accepted:?}");
}

#[tokio::test]
async fn concurrent_requests_of_an_h2c_client_share_it_with_the_pool() {
    let (up, _) = numbered_upstream().await;
    let (base, gw) = start_proxy(&up).await;
    let h2: Client<HttpConnector, gust_gateway::Body> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new());
    get_on(&h2, &format!("{base}/x")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let calls: Vec<_> = (0..20)
            .map(|i| {
                let (h2, url) = (h2.clone(), format!("{base}/x?i={i}"));
                tokio::spawn(async move { get_on(&h2, &url).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let (s, v) = call.await.unwrap();
            assert_eq!(s, StatusCode::OK, "{v}");
            assert_eq!(v["query"], format!("i={i}"));
            assert_eq!(v["host"], up.trim_start_matches("http://"));
        }
    }
    assert_eq!(gw.status().upstreams[0].failures, 0);
}
