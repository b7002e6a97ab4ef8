//! End-to-end: topics — CloudEvents ingress in structured, binary and batch
//! modes, filtered fan-out to subscriber functions, de-duplication, bad input
//! and per-subscription dead letters.

mod common;

use std::time::Duration;

use common::*;

fn app() -> TestApp {
    app_named("topics")
}

fn app_named(name: &str) -> TestApp {
    let app = TestApp::new(&format!(
        r#"
[app]
name = "{name}"
[[function]]
name = "all"
source = "probe.wasm"
trigger = {{ topic = {{ topic = "orders" }} }}
bindings = {{ seen = {{ kv = "seen-all" }} }}
retry = {{ strategy = "fixed", max_attempts = 2, min = "100ms", max = "100ms" }}
[[function]]
name = "paid"
source = "probe.wasm"
trigger = {{ topic = {{ topic = "orders", type = "order.paid", attributes = {{ tenant = "acme" }} }} }}
bindings = {{ seen = {{ kv = "seen-paid" }} }}
[[function]]
name = "eu"
source = "probe.wasm"
trigger = {{ topic = {{ topic = "orders", subject_prefix = "eu/" }} }}
bindings = {{ seen = {{ kv = "seen-eu" }} }}
"#
    ));
    app.add_component("probe.wasm", &guest("event-probe"));
    app
}

fn structured(id: &str, ty: &str, subject: &str, tenant: &str, data: &str) -> String {
    format!(
        r#"{{"specversion":"1.0","id":"{id}","source":"/shop","type":"{ty}","subject":"{subject}","tenant":"{tenant}","datacontenttype":"text/plain","data":"{data}"}}"#
    )
}

fn handled(app: &TestApp, function: &str) -> Vec<String> {
    let out = function_logs(app.path(), function);
    out.lines()
        .filter_map(|l| l.split("handled ").nth(1))
        .filter_map(|rest| rest.split(' ').next())
        .map(str::to_string)
        .collect()
}

#[test]
fn topics_filter_fan_out_and_deduplicate() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    fan_out(&app, &host);

    // A function that no longer subscribes loses its subscription: events
    // published after the reload are not kept for it.
    let manifest = std::fs::read_to_string(app.path().join("gust.toml")).unwrap();
    let without_eu = &manifest[..manifest.find("[[function]]\nname = \"eu\"").unwrap()];
    std::fs::write(app.path().join("gust.toml"), without_eu).unwrap();
    let dir = app.path().to_str().unwrap();
    let reloaded = eventually(Duration::from_secs(60), || {
        let (_, out, _) = gust(&["ls", "--app", dir], app.path());
        !out.contains(" eu ") && !out.contains("\neu")
    });
    assert!(reloaded, "the app did not reload without `eu`");
    let key = keys(app.path())["host"].as_str().unwrap().to_string();
    let r = send(
        "POST",
        &format!("{}/_gust/topics/orders", host.url),
        &[
            ("x-gust-key", key.as_str()),
            ("content-type", "application/cloudevents+json"),
        ],
        structured("9", "order.paid", "eu/9", "acme", "o9").as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["subscriptions"], 2, "{r:?}");
    let (_, peek, _) = gust(&["queue", "peek", "orders--eu", "--app", dir], app.path());
    assert!(!peek.contains("o9"), "{peek}");
}

/// Publishes in every mode and checks who handled what.
fn fan_out(app: &TestApp, host: &Running) {
    let key = keys(app.path())["host"].as_str().unwrap().to_string();
    let url = format!("{}/_gust/topics/orders", host.url);
    let auth = ("x-gust-key", key.as_str());
    let ce = ("content-type", "application/cloudevents+json");

    let r = send(
        "POST",
        &url,
        &[auth, ce],
        structured("1", "order.paid", "eu/1", "acme", "o1").as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["deliveries"], 3);

    let binary = [
        auth,
        ("ce-specversion", "1.0"),
        ("ce-id", "2"),
        ("ce-source", "/shop"),
        ("ce-type", "order.created"),
        ("ce-subject", "us/2"),
        ("content-type", "text/plain"),
    ];
    assert_eq!(send("POST", &url, &binary, b"o2").status, 202);

    let batch = format!(
        "[{},{}]",
        structured("3", "order.paid", "us/3", "other", "o3"),
        structured("4", "order.paid", "eu/4", "acme", "o4")
    );
    let r = send(
        "POST",
        &url,
        &[auth, ("content-type", "application/cloudevents-batch+json")],
        batch.as_bytes(),
    );
    assert_eq!(r.status, 202, "{r:?}");
    assert_eq!(r.json()["accepted"], 2);

    // The same source + id again is dropped.
    let r = send(
        "POST",
        &url,
        &[auth, ce],
        structured("1", "order.paid", "eu/1", "acme", "o1").as_bytes(),
    );
    assert_eq!(r.json()["duplicates"], 1);

    let (code, out, err) = gust(
        &[
            "events",
            "publish",
            "orders",
            "--type",
            "order.note",
            "--data",
            "o5",
            "--app",
            app.path().to_str().unwrap(),
        ],
        app.path(),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 accepted"), "{out}");

    let done = eventually(Duration::from_secs(30), || {
        handled(app, "all").len() >= 5 && handled(app, "eu").len() >= 2
    });
    assert!(
        done,
        "all: {:?} eu: {:?}",
        handled(app, "all"),
        handled(app, "eu")
    );
    std::thread::sleep(Duration::from_millis(500));
    let mut all = handled(app, "all");
    all.sort();
    assert_eq!(all, ["o1", "o2", "o3", "o4", "o5"]);
    assert_eq!(handled(app, "paid"), ["o1", "o4"]);
    assert_eq!(handled(app, "eu"), ["o1", "o4"]);
}

#[test]
fn bad_publishes_get_clear_errors_and_failures_dead_letter_per_subscription() {
    let app = app();
    let host = up(app.path(), &["--quiet"]);
    bad_publishes_and_dead_letters(&app, &host);
}

#[test]
fn topics_on_nats_jetstream() {
    let name = format!("topics-nats-{}", std::process::id());
    let nats = "nats://127.0.0.1:4222";
    let _cleanup = NatsApp::new(nats, &name);
    let app = app_named(&name);
    {
        let host = up(app.path(), &["--quiet", "--nats", nats]);
        fan_out(&app, &host);
        bad_publishes_and_dead_letters(&app, &host);
        // Redrive reaches the subscription (not a plain queue of that name).
        let dir = app.path().to_str().unwrap();
        let (code, out, err) = gust(
            &["queue", "dlq", "redrive", "orders--all", "--app", dir],
            app.path(),
        );
        assert_eq!(code, 0, "{out}{err}");
        let redelivered = eventually(Duration::from_secs(30), || {
            let (_, all, _) = gust(
                &["queue", "dlq", "list", "orders--all", "--app", dir],
                app.path(),
            );
            all.contains("not retryable")
                && function_logs(app.path(), "all")
                    .matches("asked to fail for good")
                    .count()
                    >= 2
        });
        assert!(redelivered, "{}", function_logs(app.path(), "all"));
    }
}

/// Bad input gets clear errors; a fatal event dead-letters per subscription.
fn bad_publishes_and_dead_letters(app: &TestApp, host: &Running) {
    let key = keys(app.path())["host"].as_str().unwrap().to_string();
    let url = format!("{}/_gust/topics/orders", host.url);
    let auth = ("x-gust-key", key.as_str());
    let ce = ("content-type", "application/cloudevents+json");

    assert_eq!(send("POST", &url, &[ce], b"{}").status, 401);
    let r = send(
        "POST",
        &url,
        &[auth, ce],
        br#"{"specversion":"1.0","source":"s","type":"t"}"#,
    );
    assert_eq!(r.status, 400);
    assert!(
        r.json()["message"].as_str().unwrap().contains("id"),
        "{r:?}"
    );
    assert_eq!(send("POST", &url, &[auth, ce], b"{not json").status, 400);
    assert_eq!(
        send("POST", &url, &[auth, ("content-type", "text/plain")], b"hi").status,
        415
    );
    let huge = structured("h", "t", "s", "x", &"x".repeat(2 << 20));
    assert_eq!(send("POST", &url, &[auth, ce], huge.as_bytes()).status, 413);

    let r = send(
        "POST",
        &url,
        &[auth, ce],
        structured("f", "order.paid", "us/f", "acme", "fatal").as_bytes(),
    );
    assert_eq!(r.status, 202);
    let dir = app.path().to_str().unwrap();
    let dead = eventually(Duration::from_secs(30), || {
        let (_, all, _) = gust(
            &["queue", "dlq", "list", "orders--all", "--app", dir],
            app.path(),
        );
        let (_, paid, _) = gust(
            &["queue", "dlq", "list", "orders--paid", "--app", dir],
            app.path(),
        );
        all.contains("not retryable") && paid.contains("not retryable")
    });
    assert!(
        dead,
        "fatal event did not reach both subscriptions' dead letters"
    );
    let (_, eu, _) = gust(
        &["queue", "dlq", "list", "orders--eu", "--app", dir],
        app.path(),
    );
    assert!(eu.contains("0 messages"), "{eu}");
}
