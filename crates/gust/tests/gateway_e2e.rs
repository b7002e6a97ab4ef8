//! End-to-end: the API gateway (`[gateway]` in gust.toml) served by the real
//! `gust up` — versioned routes to a function and to a real upstream,
//! consumer API keys, rate limits, a circuit breaker seen through
//! `gust gateway status`, fall-through to the function router, and broken
//! gateway configs refused at startup and on reload.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;

const MOBILE_KEY: &str = "k_mobile_0123456789abcdef";

/// A tiny HTTP/1.1 upstream on 127.0.0.1: answers `200 upstream: <path>`,
/// or `500` while told to fail.
struct Upstream {
    url: String,
    failing: Arc<AtomicBool>,
}

impl Upstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let failing = Arc::new(AtomicBool::new(false));
        let flag = failing.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let flag = flag.clone();
                std::thread::spawn(move || serve_one(stream, &flag));
            }
        });
        Self { url, failing }
    }

    fn fail(&self, on: bool) {
        self.failing.store(on, Ordering::SeqCst);
    }
}

fn serve_one(mut stream: TcpStream, failing: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("?").to_string();
    let (status, body) = if failing.load(Ordering::SeqCst) {
        ("500 Internal Server Error", "upstream down".to_string())
    } else {
        ("200 OK", format!("upstream: {path}"))
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
}

fn manifest(upstream: &str) -> String {
    format!(
        r#"
[app]
name = "gateway-test"

[[function]]
name = "raw"
source = "raw.wasm"
trigger = {{ http = {{ route = "/raw/{{*rest}}", auth = "anonymous" }} }}

[gateway]

[[gateway.consumer]]
name = "mobile"
key = "{MOBILE_KEY}"

[[gateway.route]]
name = "v1"
prefix = "/v1"
target = {{ function = "raw", rewrite = "/fn/{{rest}}" }}
auth = {{ keys = true, consumers = ["mobile"] }}
rate_limit = {{ per_consumer = "3/m" }}

[[gateway.route]]
name = "v2"
prefix = "/v2"
methods = ["GET"]
target = {{ upstream = "{upstream}", rewrite = "/api/{{rest}}" }}
breaker = {{ failure_ratio = 0.5, min_calls = 4, window = "10s", open_for = "30s" }}

[[gateway.route]]
name = "keyed"
path = "/keyed/{{id}}"
target = {{ function = "raw" }}
auth = {{ function_keys = true }}
"#
    )
}

fn status_json(dir: &Path) -> serde_json::Value {
    let (code, out, err) = gust(
        &[
            "gateway",
            "status",
            "--json",
            "--app",
            dir.to_str().unwrap(),
        ],
        dir,
    );
    assert_eq!(code, 0, "gust gateway status --json: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn gateway_routes_versions_keys_limits_and_breakers() {
    let upstream = Upstream::start();
    let app = TestApp::new(&manifest(&upstream.url));
    app.add_component("raw.wasm", &guest("raw-wasip2"));
    let host = up(app.path(), &["--quiet"]);
    let url = &host.url;

    // (b) consumer API keys: none, unknown, then the consumer's key.
    let r = get(&format!("{url}/v1/hello"), &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("x-request-id").is_some(), "{r:?}");
    let r = get(
        &format!("{url}/v1/hello"),
        &[("x-api-key", "k_nobody_0123456789abcdef")],
    );
    assert_eq!(r.status, 401, "{r:?}");

    // (a) /v1 goes to the function, path rewritten.
    let mobile = [("x-api-key", MOBILE_KEY)];
    let r = get(&format!("{url}/v1/hello?x=1"), &mobile);
    assert_eq!(r.status, 200, "{r:?}");
    assert!(r.body.contains("/fn/hello"), "{r:?}");

    // (a) /v2 goes to the real upstream, path rewritten.
    let r = get(&format!("{url}/v2/orders/7"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "upstream: /api/orders/7");
    let r = send("POST", &format!("{url}/v2/orders"), &[], b"{}");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("GET"));

    // Function keys through the host's key check.
    let r = get(&format!("{url}/keyed/1"), &[]);
    assert_eq!(r.status, 401, "{r:?}");
    let host_key = keys(app.path())["host"].as_str().unwrap().to_string();
    let r = get(&format!("{url}/keyed/1"), &[("x-gust-key", &host_key)]);
    assert_eq!(r.status, 200, "{r:?}");
    let r = get(&format!("{url}/keyed/1?code={host_key}"), &[]);
    assert_eq!(r.status, 200, "{r:?}");

    // Requests no gateway route matches fall through to the function
    // router; the admin API is untouched.
    let r = get(&format!("{url}/raw/direct"), &[]);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, "raw wasip2: /raw/direct");
    let r = get(&format!("{url}/nowhere"), &[]);
    assert_eq!(r.status, 404, "{r:?}");
    assert_eq!(r.json()["error"], "not-found", "host's 404: {r:?}");
    assert_eq!(get(&format!("{url}/_gust/health"), &[]).status, 200);
    let r = get(&format!("{url}/_gust/gateway"), &[]);
    assert_eq!(r.status, 401, "the status needs the admin key: {r:?}");

    // (c) rate limit: 3 per minute per consumer (one used above).
    for _ in 0..2 {
        let r = get(&format!("{url}/v1/again"), &mobile);
        assert_eq!(r.status, 200, "{r:?}");
    }
    let r = get(&format!("{url}/v1/again"), &mobile);
    assert_eq!(r.status, 429, "{r:?}");
    let retry: u64 = r
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{r:?}");
    assert_eq!(r.header("ratelimit-limit"), Some("3"), "{r:?}");

    // (d) the upstream fails: at 4 calls in the window, 3 of them failed,
    // the breaker opens and
    // the gateway fails fast without calling it.
    upstream.fail(true);
    for _ in 0..3 {
        let r = get(&format!("{url}/v2/orders/8"), &[]);
        assert_eq!(r.status, 500, "{r:?}");
    }
    let started = Instant::now();
    let r = get(&format!("{url}/v2/orders/8"), &[]);
    assert_eq!(r.status, 503, "breaker open: {r:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    upstream.fail(false);
    let r = get(&format!("{url}/v2/orders/8"), &[]);
    assert_eq!(
        r.status, 503,
        "still open while the upstream recovers: {r:?}"
    );

    let status = status_json(app.path());
    assert_eq!(status["configured"], true, "{status}");
    let up = &status["upstreams"][0];
    assert_eq!(up["breaker"]["state"], "open", "{status}");
    assert_eq!(up["calls"], 4, "{status}");
    assert_eq!(up["failures"], 3, "{status}");
    let v1 = status["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "v1")
        .unwrap();
    assert_eq!(v1["rate_limited"], 1, "{status}");
    assert_eq!(v1["auth_failures"], 2, "{status}");

    let (code, out, err) = gust(
        &["gateway", "status", "--app", app.path().to_str().unwrap()],
        app.path(),
    );
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.contains(&upstream.url))
        .unwrap_or_else(|| panic!("no upstream line in:\n{out}"));
    assert!(line.contains(" open "), "{out}");
    assert!(out.lines().any(|l| l.starts_with("v2 ")), "{out}");

    // A broken [gateway] on reload is refused; the old version keeps serving.
    app.write(
        "gust.toml",
        &manifest(&upstream.url).replace("\"3/m\"", "\"lots\""),
    );
    let admin = keys(app.path())["admin"].as_str().unwrap().to_string();
    let r = send(
        "POST",
        &format!("{url}/_gust/reload"),
        &[("x-gust-key", &admin)],
        b"",
    );
    assert_eq!(r.status, 422, "{r:?}");
    let message = r.json()["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("route `v1`") && message.contains("rate_limit.per_consumer"),
        "{message}"
    );
    let r = get(&format!("{url}/v2/orders/9"), &[]);
    assert_eq!(r.status, 503, "previous gateway still serving: {r:?}");
}

/// `gust up` with `[gateway]` problems exits non-zero naming gust.toml, the
/// route and the key.
#[test]
fn broken_gateway_config_fails_up() {
    let wasm = guest("raw-wasip2");
    let cases = [
        (
            "[[gateway.route]]\nname = \"orders\"\nprefix = \"/o\"\ntarget = { function = \"raw\" }\nrate_limit = { per_ip = \"lots\" }\n",
            &["route `orders`", "rate_limit.per_ip"][..],
        ),
        (
            "[[gateway.route]]\nname = \"ghost\"\nprefix = \"/g\"\ntarget = { function = \"nope\" }\n",
            &["route `ghost`", "`nope`", "raw"][..],
        ),
        (
            "[[gateway.route]]\nname = \"typo\"\nprefix = \"/t\"\ntarget = { function = \"raw\" }\ncolour = \"red\"\n",
            &["[gateway]", "colour"][..],
        ),
    ];
    for (gateway, wants) in cases {
        let app = TestApp::new(&format!(
            "[app]\nname = \"broken\"\n[[function]]\nname = \"raw\"\nsource = \"raw.wasm\"\n\
             trigger = {{ http = {{ route = \"/raw\" }} }}\n[gateway]\n{gateway}"
        ));
        app.add_component("raw.wasm", &wasm);
        let mut child = gust_command()
            .args(["up", "--no-watch", "--listen", "127.0.0.1:0"])
            .arg(app.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("gust up kept running with a broken [gateway]: {gateway}");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let mut err = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(!status.success(), "{gateway}");
        assert!(err.contains("gust.toml"), "{err}");
        for want in wants {
            assert!(err.contains(want), "want `{want}` in: {err}");
        }
    }
}
