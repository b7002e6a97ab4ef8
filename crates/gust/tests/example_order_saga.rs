//! End-to-end: `examples/order-saga` under a real `gust up`: an order
//! ships; a declined card and an undeliverable address run the
//! compensations in reverse; a large order waits for the event `approved`
//! (given, or timing out after `approval_timeout`, shortened here to 2s);
//! then 200 orders in flight survive a SIGKILL of the host, and every
//! effect happened exactly once (counted in the example's SQL database).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// The example's manifest with sources pointing back at the example.
fn app() -> TestApp {
    let example = repo().join("examples/order-saga");
    let manifest = std::fs::read_to_string(example.join("gust.toml")).unwrap();
    let functions = format!("source = \"{}/functions/", example.display());
    TestApp::new(&manifest.replace("source = \"functions/", &functions))
}

const ENV: &[(&str, &str)] = &[("GUST_VAR_APPROVAL_TIMEOUT", "2s")];

struct Shop {
    url: String,
    key: String,
}

impl Shop {
    fn new(app: &TestApp, running: &Running) -> Self {
        Self {
            url: running.url.clone(),
            key: admin_key(app.path()),
        }
    }

    fn start(&self, id: &str, order: Value) {
        let r = send(
            "POST",
            &format!("{}/_gust/workflows/order?id={id}", self.url),
            &[("x-gust-key", &self.key)],
            order.to_string().as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.body);
    }

    fn status(&self, id: &str) -> Value {
        let r = get(
            &format!("{}/_gust/workflows/order/{id}?history=true", self.url),
            &[("x-gust-key", &self.key)],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    fn finished(&self, id: &str) -> Value {
        let mut last = Value::Null;
        let done = eventually(Duration::from_secs(30), || {
            last = self.status(id);
            last["status"] != "running"
        });
        assert!(done, "{id} still running: {last}");
        last
    }

    fn shop(&self) -> Value {
        let r = get(&format!("{}/api/shop", self.url), &[]);
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    fn stock(&self, sku: &str) -> i64 {
        self.shop()["stock"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["sku"] == sku)
            .map(|s| s["qty"].as_i64().unwrap())
            .unwrap_or(1000)
    }
}

fn order(id: &str, sku: &str, qty: i64, amount: i64, card: &str, address: &str) -> Value {
    json!({ "order": id, "items": [{ "sku": sku, "qty": qty }], "amount": amount, "card": card, "address": address })
}

#[test]
fn orders_ship_compensate_and_wait_for_approval() {
    let app = app();
    let mut running = up_with_env(app.path(), &[], ENV);
    scenario(&app, &Shop::new(&app, &running));
    running.stop();
}

/// The example under an app name of its own (engines keep apps apart by
/// name, so runs on a shared engine do not meet).
fn unique_app() -> TestApp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let name = format!("order-saga-{}-{nanos}", std::process::id());
    let example = app();
    let manifest = std::fs::read_to_string(example.path().join("gust.toml")).unwrap();
    TestApp::new(&manifest.replace("name = \"order-saga\"", &format!("name = \"{name}\"")))
}

/// The same on PostgreSQL: journal (kv), task queue and the shop's
/// database all on the engine.
#[test]
fn orders_run_on_postgres() {
    let app = unique_app();
    let pg = "postgres://postgres@127.0.0.1:5432/test";
    let mut running = up_with_env(
        app.path(),
        &["--quiet", "--no-watch", "--postgres", pg],
        ENV,
    );
    scenario(&app, &Shop::new(&app, &running));
    running.stop();
}

/// The same with the journal and the task queue on NATS JetStream (the
/// shop's SQL database stays embedded).
#[test]
fn orders_run_on_nats() {
    let app = unique_app();
    let nats = "nats://127.0.0.1:4222";
    let mut running = up_with_env(app.path(), &["--quiet", "--no-watch", "--nats", nats], ENV);
    scenario(&app, &Shop::new(&app, &running));
    running.stop();
}

/// Success, both compensations, approval given and approval timing out.
fn scenario(app: &TestApp, shop: &Shop) {
    // Success: reserve -> charge -> ship.
    shop.start("ok-1", order("ok-1", "tea", 2, 30, "4242", "1 Main St"));
    let done = shop.finished("ok-1");
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["status"], "shipped");
    assert!(
        done["output"]["tracking"]
            .as_str()
            .unwrap()
            .starts_with("TRK-")
    );
    assert_eq!(shop.stock("tea"), 998);

    // A declined card: the reservation is released.
    shop.start(
        "declined-1",
        order("declined-1", "mug", 3, 30, "declined", "1 Main St"),
    );
    let done = shop.finished("declined-1");
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("payment failed") && error.contains("declined"),
        "{error}"
    );
    assert!(error.ends_with("compensated: release-stock"), "{error}");
    assert_eq!(shop.stock("mug"), 1000);

    // Shipping fails: refund, then release, in reverse order.
    shop.start("lost-1", order("lost-1", "pot", 1, 50, "4242", "nowhere"));
    let done = shop.finished("lost-1");
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("shipping failed"), "{error}");
    assert!(
        error.ends_with("compensated: refund-payment, release-stock"),
        "{error}"
    );
    let kinds: Vec<&str> = done["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "reserve-stock",
            "charge-payment",
            "ship-order",
            "refund-payment",
            "release-stock"
        ]
    );
    assert_eq!(shop.stock("pot"), 1000);
    let payments = shop.shop()["payments"].clone();
    let lost = payments
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["order_id"] == "lost-1")
        .expect("the payment of lost-1");
    assert_eq!(lost["refunded"], json!(1), "{payments}");

    // A large order waits for approval, and gets it.
    shop.start("big-1", order("big-1", "tea", 1, 5000, "4242", "2 Main St"));
    assert!(eventually(Duration::from_secs(20), || {
        shop.status("big-1")["history_len"] == json!(2)
    }));
    assert_eq!(shop.status("big-1")["status"], "running");
    let (code, out, err) = gust(
        &[
            "workflows",
            "raise",
            "order",
            "big-1",
            "approved",
            "--data",
            r#"{"approved": true, "by": "ann"}"#,
        ],
        app.path(),
    );
    assert_eq!(code, 0, "{out}{err}");
    let done = shop.finished("big-1");
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["status"], "shipped");

    // Another waits in vain: after the (shortened) timeout it is cancelled.
    shop.start(
        "big-2",
        order("big-2", "kettle", 1, 5000, "4242", "3 Main St"),
    );
    let done = shop.finished("big-2");
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("no approval within 2s"), "{error}");
    assert!(error.ends_with("compensated: release-stock"), "{error}");
    assert_eq!(shop.stock("kettle"), 1000);

    // Every effect once.
    let effects = shop.shop()["effects"].clone();
    assert_eq!(effects["reserve"], json!(5), "{effects}");
    assert_eq!(effects["charge"], json!(3), "{effects}");
    assert_eq!(effects["ship"], json!(2), "{effects}");
    assert_eq!(effects["refund"], json!(1), "{effects}");
    assert_eq!(effects["release"], json!(3), "{effects}");
}

/// How many orders are in flight when the host is killed.
const ORDERS: usize = 200;

#[test]
fn two_hundred_orders_survive_sigkill_with_every_effect_once() {
    let app = app();
    let mut first = up_with_env(app.path(), &[], ENV);
    let shop = Shop::new(&app, &first);
    let url = first.url.clone();
    let key = shop.key.clone();
    in_parallel(ORDERS, 8, move |i| {
        let id = format!("load-{i}");
        let r = send(
            "POST",
            &format!("{url}/_gust/workflows/order?id={id}"),
            &[("x-gust-key", &key)],
            order(&id, "load", 1, 20, "4242", "4 Main St")
                .to_string()
                .as_bytes(),
        );
        assert_eq!(r.status, 202, "{}", r.body);
    });
    // Kill it while orders are between steps.
    let some_done = eventually(Duration::from_secs(30), || {
        shop.shop()["effects"]["reserve"].as_u64().unwrap_or(0) >= 20
    });
    assert!(
        some_done,
        "no progress before the kill; stderr:\n{}",
        first.stderr()
    );
    let effects_at_kill = shop.shop()["effects"].clone();
    std::process::Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || !first.alive()));
    let shipped_at_kill = effects_at_kill["ship"].as_u64().unwrap_or(0);
    assert!(
        shipped_at_kill < ORDERS as u64,
        "every order was done before the kill, nothing was in flight: {effects_at_kill}"
    );
    eprintln!("effects when SIGKILLed: {effects_at_kill}");

    // Restart: every order completes.
    let mut second = up_with_env(app.path(), &[], ENV);
    let shop = Shop::new(&app, &second);
    let all = eventually(Duration::from_secs(50), || {
        shop.shop()["effects"]["ship"].as_u64().unwrap_or(0) >= ORDERS as u64
    });
    let effects = shop.shop()["effects"].clone();
    assert!(
        all,
        "not all shipped: {effects} (at the kill: {effects_at_kill})"
    );
    for i in 0..ORDERS {
        let s = shop.status(&format!("load-{i}"));
        assert!(
            s["status"] == "completed" || s["status"] == "running",
            "load-{i}: {s}"
        );
    }
    assert!(eventually(Duration::from_secs(20), || {
        (0..ORDERS).all(|i| shop.status(&format!("load-{i}"))["status"] == "completed")
    }));
    // Each effect once: one row per key, and the stock went down by exactly
    // one unit per order.
    assert_eq!(effects["reserve"], json!(ORDERS), "{effects}");
    assert_eq!(effects["charge"], json!(ORDERS), "{effects}");
    assert_eq!(effects["ship"], json!(ORDERS), "{effects}");
    assert_eq!(shop.stock("load"), 1000 - ORDERS as i64);
    assert_eq!(shop.shop()["payments"].as_array().unwrap().len(), ORDERS);
    second.stop();
}
