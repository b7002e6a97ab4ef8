//! Proxying: streaming both ways, WebSockets, rewrites, header rules,
//! retries, and bad input (traversal, huge headers, slow and large bodies).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;

fn config(up: &str) -> String {
    format!(
        r#"
        [gateway]
        max_header_bytes = "16KiB"

        [[gateway.route]]
        name = "files"
        path = "/files/{{*rest}}"
        target = {{ upstream = "{up}/base", rewrite = "/static/{{rest}}" }}
        request_headers = {{ set = {{ "x-env" = "test" }}, remove = ["cookie"] }}
        response_headers = {{ remove = ["server"], set = {{ "x-served-by" = "gust" }} }}

        [[gateway.route]]
        name = "upload"
        path = "/upload"
        methods = ["POST"]
        max_body = "64KiB"
        body_timeout = "300ms"
        target = {{ upstream = "{up}" }}

        [[gateway.route]]
        name = "retry"
        prefix = "/retry"
        target = {{ upstream = "{up}" }}
        retry = {{ attempts = 2, backoff = "10ms" }}
        breaker = {{ min_calls = 100 }}

        [[gateway.route]]
        name = "rest"
        prefix = "/"
        target = {{ upstream = "{up}" }}
        "#
    )
}

#[tokio::test]
async fn rewrites_paths_and_headers() {
    let up = Upstream::start().await;
    let (base, _gw) = start_gateway(&config(&up.url), echo_functions()).await;
    let (s, h, body) = get(
        &format!("{base}/files/a/b.txt?v=1"),
        &[("cookie", "secret"), ("x-request-id", "req-123")],
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["path"], "/base/static/a/b.txt");
    assert_eq!(v["version"], "HTTP/1.1");
    assert_eq!(v["query"], "v=1");
    assert_eq!(v["headers"]["x-env"], "test");
    assert_eq!(v["headers"]["x-request-id"], "req-123");
    assert_eq!(v["headers"]["x-forwarded-for"], "127.0.0.1");
    assert_eq!(v["headers"]["x-forwarded-proto"], "http");
    assert_eq!(
        v["headers"]["x-forwarded-host"],
        base.trim_start_matches("http://")
    );
    assert!(v["headers"].get("cookie").is_none());
    assert!(h.get("server").is_none());
    assert_eq!(h["x-served-by"], "gust");
    assert_eq!(h["x-request-id"], "req-123");
    // A generated id when the client sends none: 32 hex digits, forwarded
    // and returned; each request gets its own.
    let (_, h, body) = get(&format!("{base}/files/x"), &[]).await;
    let id = h["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "{id}"
    );
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["headers"]["x-request-id"], id.as_str());
    let (_, h, _) = get(&format!("{base}/files/x"), &[]).await;
    assert_ne!(h["x-request-id"], id.as_str());
    // An unusable client id (a space) is replaced.
    let (_, h, _) = get(&format!("{base}/files/x"), &[("x-request-id", "a b")]).await;
    assert_eq!(h["x-request-id"].len(), 32);

    // Hop-by-hop headers, and those the client names in `Connection`, stay
    // on this hop; the rest pass.
    let (_, _, body) = get(
        &format!("{base}/files/x"),
        &[
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-end-to-end", "2"),
        ],
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap();
    for hop in ["x-hop", "keep-alive", "te"] {
        assert!(v["headers"].get(hop).is_none(), "{hop} forwarded: {v}");
    }
    assert_eq!(v["headers"]["x-end-to-end"], "2");
}

#[tokio::test]
async fn bad_input_gets_clean_4xx_and_gateway_stays_up() {
    let up = Upstream::start().await;
    let (base, gw) = start_gateway(&config(&up.url), echo_functions()).await;
    for path in [
        "/files/../etc/passwd",
        "/files/%2e%2e/etc/passwd",
        "/files/a/..%2f..%2fetc/passwd",
        "/files/%2E%2E%5Cwindows",
        "/files/a/%00",
    ] {
        let head = raw(
            &base,
            format!("GET {path} HTTP/1.1\r\nhost: x\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 400"), "{path}: {head}");
    }
    assert_eq!(up.hits(), 0, "nothing reached the upstream");

    // Huge header block: 431 from the connection layer.
    let big = "x".repeat(64 * 1024);
    let head = raw(
        &base,
        format!("GET /files/a HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    // Just over the gateway's limit but inside hyper's buffer: 431 from the gateway.
    let mid = "y".repeat(6 * 1024);
    let head = raw(
        &base,
        format!(
            "GET /files/a HTTP/1.1\r\nhost: x\r\nx-a: {mid}\r\nx-b: {mid}\r\nx-c: {mid}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");

    // Declared body larger than max_body: 413 at once.
    let head = raw(
        &base,
        b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 1000000\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");

    // Chunked body growing past max_body: 413.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        for _ in 0..10 {
            if tx.send(Bytes::from(vec![b'a'; 16 * 1024])).await.is_err() {
                break;
            }
        }
    });
    let req = Request::post(format!("{base}/upload"))
        .body(gust_gateway::boxed(ChannelBody(rx)))
        .unwrap();
    assert_eq!(send(req).await.0, StatusCode::PAYLOAD_TOO_LARGE);

    // Slowloris body: 10 of 100 bytes, then silence -> 408 after body_timeout.
    let addr = base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let t = Instant::now();
    s.write_all(b"POST /upload HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n0123456789")
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());

    // Still serving, and the upstream was never blamed.
    assert_eq!(
        get(&format!("{base}/files/ok"), &[]).await.0,
        StatusCode::OK
    );
    let status = gw.status();
    assert_eq!(status.gateway.bad_requests, 5);
    assert_eq!(status.routes[1].body_rejected, 3);
    assert!(
        status.upstreams.iter().all(|u| u.failures == 0),
        "{:?}",
        status.upstreams
    );
}

#[tokio::test]
async fn streams_both_ways() {
    let up = Upstream::start().await;
    let (base, _gw) = start_gateway(&config(&up.url), echo_functions()).await;

    // Response: the first chunk arrives long before the last one is sent.
    let t = Instant::now();
    let resp = client()
        .request(
            Request::get(format!("{base}/stream"))
                .body(gust_gateway::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = resp.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "chunk0;");
    assert!(
        t.elapsed() < Duration::from_millis(300),
        "first chunk after {:?}",
        t.elapsed()
    );
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "chunk1;chunk2;chunk3;chunk4;");
    assert!(t.elapsed() >= Duration::from_millis(400));

    // Request: a chunked upload arrives whole.
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        for _ in 0..3 {
            tx.send(Bytes::from(vec![b'z'; 10_000])).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let req = Request::post(format!("{base}/upload"))
        .body(gust_gateway::boxed(ChannelBody(rx)))
        .unwrap();
    let (s, _, body) = send(req).await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "got 30000"));
}

#[tokio::test]
async fn websocket_upgrade_passes_through() {
    let up = Upstream::start().await;
    let (base, _gw) = start_gateway(&config(&up.url), echo_functions()).await;
    let mut s = tokio::net::TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for msg in [&b"hello"[..], b"second frame"] {
        s.write_all(msg).await.unwrap();
        let mut buf = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, msg);
    }
}

#[tokio::test]
async fn retries_idempotent_requests_only() {
    let up = Upstream::start().await;
    let (base, gw) = start_gateway(&config(&up.url), echo_functions()).await;
    up.fail_next(2);
    assert_eq!(get(&format!("{base}/retry/a"), &[]).await.0, StatusCode::OK);
    assert_eq!(up.hits(), 3);
    assert_eq!(gw.status().routes[2].retries, 2);

    up.fail_next(1);
    let req = Request::post(format!("{base}/retry/a"))
        .body(gust_gateway::full("x"))
        .unwrap();
    assert_eq!(send(req).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(up.hits(), 4);

    // Out of attempts: the upstream's last answer is returned.
    up.fail_next(5);
    assert_eq!(
        get(&format!("{base}/retry/a"), &[]).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(up.hits(), 7);
}

#[tokio::test]
async fn http2_on_both_sides() {
    let up = Upstream::start().await;
    let toml = format!(
        r#"
        [[gateway.route]]
        name = "h2"
        prefix = "/"
        target = {{ upstream = "{}", http2 = true }}
        "#,
        up.url
    );
    let (base, _gw) = start_gateway(&toml, echo_functions()).await;
    let h2 = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<gust_gateway::Body>();
    let resp = h2
        .request(
            Request::get(format!("{base}/x"))
                .body(gust_gateway::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["path"], "/x");
    assert_eq!(v["version"], "HTTP/2.0");
}
