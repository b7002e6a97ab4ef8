//! Test harness: a controllable upstream, a running gateway, and clients.

use std::convert::Infallible;

use std::pin::Pin;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use gust_gateway::{Body, FunctionTarget, Gateway, GatewayConfig};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the upstream behaves.
pub const OK: u8 = 0;
pub const FAIL: u8 = 1;
pub const SLOW: u8 = 2;

/// A real HTTP upstream the test can make fail, slow down and recover.
pub struct Upstream {
    pub url: String,
    mode: Arc<AtomicU8>,
    fail_next: Arc<AtomicU32>,
    pub slow: Arc<AtomicU64>,
    pub hits: Arc<AtomicU64>,
    pub jwks: Arc<Mutex<String>>,
}

impl Upstream {
    pub fn set_mode(&self, m: u8) {
        self.mode.store(m, Ordering::SeqCst);
    }

    /// The next `n` requests get 503, then it recovers.
    pub fn fail_next(&self, n: u32) {
        self.fail_next.store(n, Ordering::SeqCst);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    pub async fn start() -> Upstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Upstream {
            url: format!("http://{addr}"),
            mode: Arc::default(),
            fail_next: Arc::default(),
            slow: Arc::new(AtomicU64::new(2000)),
            hits: Arc::default(),
            jwks: Arc::new(Mutex::new(r#"{"keys":[]}"#.to_string())),
        };
        let state = (
            up.mode.clone(),
            up.fail_next.clone(),
            up.slow.clone(),
            up.hits.clone(),
            up.jwks.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc =
                        hyper::service::service_fn(move |req| upstream_handler(req, state.clone()));
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        up
    }
}

type State = (
    Arc<AtomicU8>,
    Arc<AtomicU32>,
    Arc<AtomicU64>,
    Arc<AtomicU64>,
    Arc<Mutex<String>>,
);

/// A body fed from a channel (for streaming).
pub struct ChannelBody(pub tokio::sync::mpsc::Receiver<Bytes>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

async fn upstream_handler(
    mut req: Request<Incoming>,
    s: State,
) -> Result<Response<Body>, Infallible> {
    let (mode, fail_next, slow, hits, jwks) = s;
    hits.fetch_add(1, Ordering::SeqCst);
    let path = req.uri().path().to_string();
    if path == "/jwks.json" {
        let text = jwks.lock().unwrap().clone();
        return Ok(Response::new(gust_gateway::full(text)));
    }
    if path == "/ws" {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let r = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header("upgrade", "websocket")
            .header("connection", "upgrade")
            .body(gust_gateway::empty())
            .unwrap();
        return Ok(r);
    }
    if path == "/stream" {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            for i in 0..5 {
                if tx.send(Bytes::from(format!("chunk{i};"))).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        return Ok(Response::new(gust_gateway::boxed(ChannelBody(rx))));
    }
    if path == "/upload" {
        let n = match req.into_body().collect().await {
            Ok(b) => b.to_bytes().len(),
            Err(_) => return Ok(status(StatusCode::BAD_REQUEST, "body failed")),
        };
        return Ok(Response::new(gust_gateway::full(format!("got {n}"))));
    }
    if fail_next
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
    {
        return Ok(status(StatusCode::SERVICE_UNAVAILABLE, "failing once"));
    }
    match mode.load(Ordering::SeqCst) {
        FAIL => return Ok(status(StatusCode::INTERNAL_SERVER_ERROR, "failing")),
        SLOW => tokio::time::sleep(Duration::from_millis(slow.load(Ordering::SeqCst))).await,
        _ => {}
    }
    let headers: serde_json::Map<String, serde_json::Value> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
        .collect();
    let echo = serde_json::json!({
        "method": req.method().as_str(),
        "version": format!("{:?}", req.version()),
        "path": path,
        "query": req.uri().query(),
        "headers": headers,
    });
    let mut r = Response::new(gust_gateway::full(echo.to_string()));
    r.headers_mut()
        .insert("server", "test-upstream".parse().unwrap());
    Ok(r)
}

fn status(code: StatusCode, text: &str) -> Response<Body> {
    let mut r = Response::new(gust_gateway::full(text.to_string()));
    *r.status_mut() = code;
    r
}

/// Function target: answers `function=<name> path=<path>`.
pub fn echo_functions() -> Arc<dyn FunctionTarget> {
    Arc::new(
        |name: &str, req: Request<Body>| -> gust_gateway::BoxFuture<Response<Body>> {
            let text = format!("function={name} path={}", req.uri());
            Box::pin(async move { Response::new(gust_gateway::full(text)) })
        },
    )
}

/// Builds a gateway from TOML (a whole gust.toml) and serves it on a free port.
pub async fn start_gateway(toml: &str, functions: Arc<dyn FunctionTarget>) -> (String, Gateway) {
    let config = GatewayConfig::from_manifest(toml).unwrap();
    let gateway = Gateway::new(config, functions).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(gust_gateway::serve(listener, gateway.clone()));
    (format!("http://{addr}"), gateway)
}

/// A plain HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Body> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// Sends a request and reads the whole response.
pub async fn send(req: Request<Body>) -> (StatusCode, http::HeaderMap, String) {
    let resp = tokio::time::timeout(Duration::from_secs(10), client().request(req))
        .await
        .expect("response in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// GET with headers.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, http::HeaderMap, String) {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(b.body(gust_gateway::empty()).unwrap()).await
}

/// Writes raw bytes to the gateway and reads the response head (or up to EOF).
pub async fn raw(base: &str, request: &[u8]) -> String {
    let addr = base.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    read_head(&mut s).await
}

/// Reads until the end of a response head (or EOF), within 5 seconds.
pub async fn read_head(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, s.read(&mut buf))
            .await
            .expect("response head in time")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
        if out.windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
