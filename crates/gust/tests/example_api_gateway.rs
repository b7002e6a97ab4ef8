//! End-to-end: `examples/api-gateway` under a real `gust up`, with its real
//! external backend (`backend/shipping.py`) started on a free port and
//! named through `GUST_VAR_SHIPPING_URL`. Everything goes over HTTP as a
//! client would: API keys per consumer plan, v1 and v2 of the catalog side
//! by side (by path and by header), kv-backed orders per consumer, a plan's
//! rate limit, the proxied shipping quotes, and the circuit breaker opening
//! when the backend dies and closing when it comes back (seen through
//! `gust gateway status --json`). A second test serves the example as one
//! app of a folder (`gust up examples`) with no backend running.

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The demo keys (the manifest's variable defaults).
const FREE: &str = "free_demo_key_0123456789";
const PARTNER: &str = "partner_demo_key_0123456789";
const ENTERPRISE: &str = "enterprise_demo_key_0123456789";

/// The example's shipping backend, a real process on 127.0.0.1.
struct Backend {
    child: Child,
    port: u16,
    url: String,
}

impl Backend {
    /// Starts `python3 backend/shipping.py --port <port>` (0: a free port)
    /// and waits for its `listening on` line.
    fn start(port: u16) -> Backend {
        let script = repo().join("examples/api-gateway/backend/shipping.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .args(["--port", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start python3 backend/shipping.py");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the shipping backend did not start");
        let url = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://"))
            .unwrap_or_else(|| panic!("unexpected backend line: {line:?}"))
            .to_string();
        let port = url.rsplit(':').next().unwrap().parse().unwrap();
        Backend { child, port, url }
    }

    /// Kills the process (SIGKILL) and waits for it.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The example's manifest with sources pointing back at the example.
fn manifest() -> String {
    let example = repo().join("examples/api-gateway");
    let text = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    text.replace("source = \"functions/", &functions)
}

fn key(k: &str) -> [(&str, &str); 1] {
    [("x-api-key", k)]
}

fn status_json(dir: &Path) -> Value {
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

fn route<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["routes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no route {name} in {status}"))
}

/// `GET /v2/products/{id}`'s available quantity.
fn available(url: &str, id: &str) -> u64 {
    let r = get(&format!("{url}/v2/products/{id}"), &key(ENTERPRISE));
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["availability"]["quantity"].as_u64().unwrap()
}

fn post_order(url: &str, k: &str, body: &str) -> Reply {
    send(
        "POST",
        &format!("{url}/v1/orders"),
        &[("x-api-key", k), ("content-type", "application/json")],
        body.as_bytes(),
    )
}

#[test]
fn one_entry_point_with_versions_keys_plans_orders_and_a_breaker() {
    let started = Instant::now();
    let mut backend = Backend::start(0);
    let app = TestApp::new(&manifest());
    let host = up_with_env(
        app.path(),
        &["--quiet", "--no-watch"],
        &[("GUST_VAR_SHIPPING_URL", &backend.url)],
    );
    let url = host.url.as_str();
    eprintln!("gust up ready after {:?}", started.elapsed());

    // ── Keys: none, unknown, and a consumer whose plan excludes orders.
    let r = get(&format!("{url}/v1/products"), &[]);
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.json()["reason"].as_str().unwrap().contains("x-api-key"));
    let r = get(
        &format!("{url}/v2/products"),
        &key("stolen_key_0123456789abc"),
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert_eq!(r.json()["reason"], "unknown API key");
    let r = get(&format!("{url}/v1/orders"), &key(FREE));
    assert_eq!(r.status, 403, "{r:?}");
    assert!(r.body.contains("hobbyist"), "{r:?}");
    // The functions' own routes need a function key: no way around the gateway.
    let r = get(&format!("{url}/internal/orders/x"), &key(PARTNER));
    assert_eq!(r.status, 401, "{r:?}");

    // ── Versions: v1 and v2 side by side, different shapes.
    let r = get(&format!("{url}/v1/products"), &key(PARTNER));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("deprecation"), Some("true"), "{r:?}");
    assert!(r.header("sunset").is_some(), "{r:?}");
    let v1 = r.json();
    assert_eq!(v1["count"], 8, "{v1}");
    let shoes = &v1["products"][0];
    assert_eq!(shoes["id"], "p-100");
    assert_eq!(shoes["name"], "Trail running shoes");
    assert_eq!(shoes["price"], 89.9);
    assert_eq!(shoes["currency"], "EUR");
    assert_eq!(shoes["in_stock"], true);
    let r = get(&format!("{url}/v1/products/p-104"), &key(PARTNER));
    assert_eq!(r.json()["in_stock"], false, "{r:?}");
    let r = get(&format!("{url}/v1/products?q=SOCKS"), &key(PARTNER));
    assert_eq!(r.json()["products"][0]["id"], "p-101", "{r:?}");

    let r = get(&format!("{url}/v2/products?limit=3"), &key(PARTNER));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("deprecation"), None, "{r:?}");
    let v2 = r.json();
    assert_eq!(v2["api_version"], 2, "{v2}");
    assert_eq!(v2["data"].as_array().unwrap().len(), 3, "{v2}");
    assert_eq!(v2["page"]["next_cursor"], "p-102", "{v2}");
    let shoes = &v2["data"][0];
    assert_eq!(shoes["title"], "Trail running shoes");
    assert_eq!(shoes["price"]["amount_cents"], 8990);
    assert_eq!(shoes["price"]["formatted"], "EUR 89.90");
    assert_eq!(shoes["availability"]["status"], "in_stock");
    assert_eq!(shoes["availability"]["quantity"], 25);
    assert!(shoes.get("name").is_none() && shoes.get("in_stock").is_none());
    let r = get(
        &format!("{url}/v2/products?cursor=p-102&limit=50"),
        &key(PARTNER),
    );
    let rest = r.json();
    assert_eq!(rest["data"].as_array().unwrap().len(), 5, "{rest}");
    assert_eq!(rest["page"]["next_cursor"], Value::Null, "{rest}");
    let r = get(
        &format!("{url}/v2/products?availability=low_stock"),
        &key(PARTNER),
    );
    let low: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(low, ["p-105"], "{r:?}");
    let r = get(&format!("{url}/v2/products?limit=500"), &key(PARTNER));
    assert_eq!(r.status, 400, "{r:?}");
    let r = get(&format!("{url}/v2/products/p-999"), &key(PARTNER));
    assert_eq!(r.status, 404, "{r:?}");
    // The gateway allows only GET on the catalog.
    let r = send("POST", &format!("{url}/v2/products"), &key(PARTNER), b"{}");
    assert_eq!(r.status, 405, "{r:?}");
    assert_eq!(r.header("allow"), Some("GET"));

    // Unversioned: v1 by default, v2 with `api-version: 2`.
    let r = get(&format!("{url}/products/p-100"), &key(PARTNER));
    assert_eq!(r.json()["price"], 89.9, "{r:?}");
    let r = get(
        &format!("{url}/products/p-100"),
        &[("x-api-key", PARTNER), ("api-version", "2")],
    );
    assert_eq!(r.json()["price"]["amount_cents"], 8990, "{r:?}");

    // CORS for the storefront's origin.
    let r = send(
        "OPTIONS",
        &format!("{url}/v2/products"),
        &[
            ("origin", "http://localhost:5173"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "x-api-key"),
        ],
        b"",
    );
    assert!(r.status == 200 || r.status == 204, "{r:?}");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("http://localhost:5173"),
        "{r:?}"
    );

    // ── Orders: per consumer, stock reserved all-or-nothing.
    let r = post_order(
        url,
        PARTNER,
        r#"{"items": [{"product_id": "p-105", "quantity": 2}, {"product_id": "p-101", "quantity": 3}], "reference": "PO-1"}"#,
    );
    assert_eq!(r.status, 201, "{r:?}");
    let order = r.json();
    let id = order["id"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("orders/{id}").as_str()));
    assert_eq!(order["consumer"], "partner-shop");
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["total_cents"], 2 * 34_900 + 3 * 1490);
    assert_eq!(order["lines"][0]["name"], "Ultralight tent 2P");
    assert_eq!(available(url, "p-105"), 1);
    assert_eq!(available(url, "p-101"), 117);

    // Not enough tents: nothing is reserved, not even the socks.
    let r = post_order(
        url,
        PARTNER,
        r#"{"items": [{"product_id": "p-101", "quantity": 5}, {"product_id": "p-105", "quantity": 2}]}"#,
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["available"], 1, "{r:?}");
    assert_eq!(available(url, "p-105"), 1);
    assert_eq!(available(url, "p-101"), 117);
    for (body, status) in [
        (
            r#"{"items": [{"product_id": "p-100", "quantity": 0}]}"#,
            422,
        ),
        (
            r#"{"items": [{"product_id": "p-nope", "quantity": 1}]}"#,
            422,
        ),
        (r#"{"items": []}"#, 422),
        (r#"{"items": "#, 400),
    ] {
        let r = post_order(url, PARTNER, body);
        assert_eq!(r.status, status, "{body}: {r:?}");
        assert!(r.json()["error"].is_string(), "{r:?}");
    }

    let r = get(&format!("{url}/v1/orders"), &key(PARTNER));
    assert_eq!(r.json()["count"], 1, "{r:?}");
    let r = get(&format!("{url}/v1/orders/{id}"), &key(PARTNER));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["reference"], "PO-1");
    // Another consumer sees none of it.
    let r = get(&format!("{url}/v1/orders/{id}"), &key(ENTERPRISE));
    assert_eq!(r.status, 404, "{r:?}");
    let r = get(&format!("{url}/v1/orders"), &key(ENTERPRISE));
    assert_eq!(r.json()["count"], 0, "{r:?}");
    // Cancelling gives the units back, once.
    let r = send(
        "DELETE",
        &format!("{url}/v1/orders/{id}"),
        &key(PARTNER),
        b"",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["status"], "cancelled");
    assert_eq!(available(url, "p-105"), 3);
    assert_eq!(available(url, "p-101"), 120);
    let r = send(
        "DELETE",
        &format!("{url}/v1/orders/{id}"),
        &key(PARTNER),
        b"",
    );
    assert_eq!(r.status, 409, "{r:?}");

    // ── The free plan: 10 calls a minute across all routes, then 429.
    let mut passed = 0;
    let refused = loop {
        let r = get(&format!("{url}/v1/products/p-100"), &key(FREE));
        if r.status != 200 {
            break r;
        }
        passed += 1;
        assert!(passed <= 11, "the free plan never ran out");
    };
    assert_eq!(refused.status, 429, "{refused:?}");
    assert!((10..=11).contains(&passed), "{passed} calls passed");
    let retry: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .unwrap();
    assert!((1..=6).contains(&retry), "{refused:?}");
    assert_eq!(refused.header("ratelimit-limit"), Some("10"), "{refused:?}");
    let r = get(
        &format!("{url}/v1/shipping/quotes?weight_kg=1&to=NL"),
        &key(FREE),
    );
    assert_eq!(r.status, 429, "the plan covers every route: {r:?}");
    let r = get(&format!("{url}/v1/products/p-100"), &key(PARTNER));
    assert_eq!(r.status, 200, "other consumers are not limited: {r:?}");

    // ── The external backend through the gateway.
    let r = get(
        &format!("{url}/v1/shipping/quotes?weight_kg=2.5&to=de"),
        &key(PARTNER),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let q = r.json();
    assert_eq!(q["zone"], "eu", "{q}");
    assert_eq!(q["quoted_for"], "partner-shop", "{q}");
    let quotes = q["quotes"].as_array().unwrap();
    assert_eq!(quotes.len(), 3, "{q}");
    assert_eq!(
        (&quotes[0]["carrier"], &quotes[0]["price_cents"]),
        (&Value::from("DPD"), &Value::from(995 + 120 * 3))
    );
    let r = get(
        &format!("{url}/v1/shipping/quotes?weight_kg=99&to=DE"),
        &key(PARTNER),
    );
    assert_eq!(r.status, 400, "the backend's own 400 passes through: {r:?}");
    assert!(r.body.contains("weight_kg"), "{r:?}");

    // ── The backend dies: errors, then the breaker opens and fails fast.
    backend.kill();
    let quote = format!("{url}/v1/shipping/quotes?weight_kg=1&to=NL");
    let mut seen = Vec::new();
    let open = loop {
        let t = Instant::now();
        let r = get(&quote, &key(ENTERPRISE));
        seen.push(r.status);
        if r.status == 503 {
            break (r, t.elapsed());
        }
        assert_eq!(r.status, 502, "{r:?}");
        assert!(seen.len() < 10, "the breaker never opened: {seen:?}");
    };
    assert!(
        seen.len() >= 2,
        "some calls failed before it opened: {seen:?}"
    );
    assert_eq!(open.0.json()["error"], "breaker_open", "{:?}", open.0);
    assert!(open.0.header("retry-after").is_some(), "{:?}", open.0);
    assert!(open.1 < Duration::from_secs(1), "not fast: {:?}", open.1);
    let status = status_json(app.path());
    let upstream = &status["upstreams"][0];
    assert!(
        upstream["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&backend.url)),
        "{status}"
    );
    assert_eq!(upstream["breaker"]["state"], "open", "{status}");
    // Half of the window's calls failed (the two good quotes above count too).
    let failures = upstream["breaker"]["window_failures"].as_u64().unwrap();
    let calls = upstream["breaker"]["window_calls"].as_u64().unwrap();
    assert!(calls >= 4 && failures * 2 >= calls, "{status}");
    assert_eq!(upstream["failures"].as_u64(), Some(failures), "{status}");
    let quotes_route = route(&status, "shipping-quotes");
    assert!(quotes_route["breaker_rejected"].as_u64().unwrap() >= 1);
    assert!(quotes_route["upstream_errors"].as_u64().unwrap() >= 1);
    let (code, out, err) = gust(
        &["gateway", "status", "--app", app.path().to_str().unwrap()],
        app.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.lines()
            .any(|l| l.contains(&backend.url) && l.contains(" open ")),
        "{out}"
    );

    // ── It comes back on the same port: after the cool-down the probes
    // pass and the breaker closes.
    let port = backend.port;
    let _backend = Backend::start(port);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = None;
    while Instant::now() < deadline {
        let r = get(&quote, &key(ENTERPRISE));
        if r.status == 200 {
            last = Some(r);
            break;
        }
        assert_eq!(r.status, 503, "still open: {r:?}");
        std::thread::sleep(Duration::from_millis(700));
    }
    let r = last.expect("the breaker never let a probe through");
    assert_eq!(r.json()["zone"], "domestic", "{r:?}");
    let r = get(&quote, &key(ENTERPRISE));
    assert_eq!(r.status, 200, "{r:?}");
    let status = status_json(app.path());
    let breaker = &status["upstreams"][0]["breaker"];
    assert_eq!(breaker["state"], "closed", "{status}");
    assert_eq!(breaker["opened_total"], 1, "{status}");
    let free = route(&status, "catalog-v1");
    assert!(free["rate_limited"].as_u64().unwrap() >= 1, "{status}");
    eprintln!("done after {:?}", started.elapsed());
}

/// `gust up examples`: the example is one app among others under
/// `/api-gateway/`, and starts even though its backend is not running.
#[test]
fn serves_under_its_prefix_in_a_folder_of_apps_without_its_backend() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("api-gateway");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gust.toml"), manifest()).unwrap();
    // A port nothing listens on.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let host = up_with_env(
        root.path(),
        &["--quiet", "--no-watch"],
        &[("GUST_VAR_SHIPPING_URL", &dead)],
    );
    let front = format!("{}/api-gateway", host.url);

    let r = get(&format!("{front}/v2/products/p-100"), &key(PARTNER));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["price"]["amount_cents"], 8990, "{r:?}");
    let r = get(&format!("{front}/v1/products/p-100"), &[]);
    assert_eq!(r.status, 401, "{r:?}");
    let r = get(
        &format!("{front}/v1/shipping/quotes?weight_kg=1&to=NL"),
        &key(PARTNER),
    );
    assert_eq!(r.status, 502, "{r:?}");
    assert_eq!(r.json()["error"], "upstream_error", "{r:?}");
    let r = get(&format!("{}/", host.url), &[]);
    assert!(r.body.contains("api-gateway"), "{r:?}");
}
