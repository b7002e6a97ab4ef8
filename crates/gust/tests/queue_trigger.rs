//! End-to-end: queue-triggered functions on the embedded store and on NATS
//! JetStream, driven through the CLI like a user.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn app(name: &str) -> TestApp {
    let app = TestApp::new(&format!(
        r#"
[app]
name = "{name}"
[[function]]
name = "worker"
source = "probe.wasm"
trigger = {{ queue = {{ queue = "jobs", batch_size = 8, concurrency = 4, visibility = "5s" }} }}
bindings = {{ seen = {{ kv = "seen" }} }}
retry = {{ strategy = "fixed", max_attempts = 3, min = "100ms", max = "100ms" }}
"#
    ));
    app.add_component("probe.wasm", &guest("event-probe"));
    app
}

fn cli(app: &Path, args: &[&str]) -> String {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--app", app.to_str().unwrap()]);
    let (code, out, err) = gust(&all, app);
    assert_eq!(code, 0, "gust {args:?} failed: {err}");
    out
}

fn dead_letters(app: &Path) -> Vec<String> {
    cli(app, &["queue", "dlq", "list", "jobs"])
        .lines()
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// Sends good and bad messages and checks every outcome: handled once,
/// retried then dead-lettered with reason and attempts, redriven.
fn exercise(app: &TestApp, host: &Running) {
    let dir = app.path();
    for body in ["a", "b", "fail", "fatal", "trap"] {
        let id = cli(
            dir,
            &[
                "queue",
                "send",
                "jobs",
                "--data",
                body,
                "--content-type",
                "text/plain",
            ],
        );
        assert_eq!(
            id.trim().len(),
            id.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
                .count()
        );
    }
    let settled = eventually(Duration::from_secs(60), || dead_letters(dir).len() == 3);
    assert!(
        settled,
        "dead letters: {:?}\nstderr: {}",
        dead_letters(dir),
        host.stderr()
    );
    let dead = dead_letters(dir);
    let line = |body: &str| {
        dead.iter()
            .find(|l| l.ends_with(&format!("body: {body}")))
            .cloned()
            .unwrap()
    };
    assert!(
        line("fail").contains("attempts 3") && line("fail").contains("asked to fail"),
        "{dead:?}"
    );
    assert!(
        line("fatal").contains("attempts 1") && line("fatal").contains("not retryable"),
        "{dead:?}"
    );
    assert!(
        line("trap").contains("attempts 3") && line("trap").contains("trap"),
        "{dead:?}"
    );

    let logs = function_logs(dir, "worker");
    assert!(
        logs.contains("handled a #1 attempt 1 source /gust/queue/jobs"),
        "{logs}"
    );
    assert!(logs.contains("handled b #1"), "{logs}");
    let peek = cli(dir, &["queue", "peek", "jobs"]);
    assert!(peek.contains("0 waiting"), "{peek}");

    // Redrive: the three go back, fail again, and return to the dead letters.
    let redrive = cli(dir, &["queue", "dlq", "redrive", "jobs"]);
    assert!(redrive.contains("redrove 3"), "{redrive}");
    let again = eventually(Duration::from_secs(60), || {
        let logs = function_logs(dir, "worker");
        logs.matches("asked to fail for good").count() >= 2 && dead_letters(dir).len() == 3
    });
    assert!(
        again,
        "redriven messages were not processed again: {:?}",
        dead_letters(dir)
    );
}

#[test]
fn queue_trigger_on_the_embedded_store() {
    let app = app("queue-embedded");
    let host = up(app.path(), &["--quiet"]);
    exercise(&app, &host);
}

#[test]
fn queue_trigger_with_reused_instances() {
    // Same outcomes when instances serve several events; the trap discards one.
    let app = app("queue-reuse");
    let host = up(app.path(), &["--quiet", "--reuse-instances"]);
    exercise(&app, &host);
}

#[test]
fn queue_trigger_on_nats_jetstream() {
    let name = format!("queue-nats-{}", std::process::id());
    let nats = "nats://127.0.0.1:4222";
    let _cleanup = NatsApp::new(nats, &name);
    let app = app(&name);
    let host = up(app.path(), &["--quiet", "--nats", nats]);
    exercise(&app, &host);
}

#[test]
fn functions_send_to_declared_queues_only() {
    let app = TestApp::new(
        r#"
[app]
name = "queue-output"
[[function]]
name = "api"
source = "misbehave.wasm"
trigger = { http = { route = "/api/{action}", auth = "anonymous" } }
bindings = { out = { queue = "jobs" } }
[[function]]
name = "worker"
source = "probe.wasm"
trigger = { queue = { queue = "jobs" } }
bindings = { seen = { kv = "seen" } }
"#,
    );
    app.add_component("misbehave.wasm", &guest("misbehave"));
    app.add_component("probe.wasm", &guest("event-probe"));
    let host = up(app.path(), &["--quiet"]);
    let r = send(
        "POST",
        &format!("{}/api/enqueue", host.url),
        &[],
        b"from-http",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(!r.body.is_empty());
    let handled = eventually(Duration::from_secs(30), || {
        cli(app.path(), &["logs", "worker"]).contains("handled from-http #1")
    });
    assert!(handled, "the worker never saw the message");
    assert_eq!(
        get(&format!("{}/api/enqueue-denied", host.url), &[]).body,
        "denied"
    );
}

#[test]
fn gust_invoke_runs_an_event_function_once_on_demand() {
    let app = app("invoke-event");
    let _host = up(app.path(), &["--quiet", "--no-watch"]);
    let out = cli(app.path(), &["invoke", "worker", "--data", "by-hand"]);
    assert!(out.contains("\"outcome\": \"done\""), "{out}");
    let logs = cli(app.path(), &["logs", "worker"]);
    assert!(
        logs.contains("handled by-hand #1 attempt 1 source /gust/invoke"),
        "{logs}"
    );
    let mut all = vec!["invoke", "worker", "--data", "fatal", "--app"];
    all.push(app.path().to_str().unwrap());
    let (code, out, err) = gust(&all, app.path());
    assert_ne!(code, 0);
    assert!(err.contains("HTTP 500"), "{err}");
    assert!(out.contains("asked to fail for good"), "{out}");
}

/// One trace across a chain: an HTTP request carrying a `traceparent`
/// reaches a function that sends to a queue; the queue's function logs.
/// Every line carries its invocation id and the caller's trace id, and
/// `gust logs` filters by invocation and level and prints JSON.
#[test]
fn invocations_and_traces_follow_a_chain_into_the_logs() {
    let app = TestApp::new(
        r#"
[app]
name = "traced"
[[function]]
name = "front"
source = "misbehave.wasm"
trigger = { http = { route = "/front/{action}", methods = ["POST"], auth = "anonymous" } }
bindings = { out = { queue = "jobs" } }
[[function]]
name = "worker"
source = "probe.wasm"
trigger = { queue = { queue = "jobs" } }
bindings = { seen = { kv = "seen" } }
"#,
    );
    app.add_component("misbehave.wasm", &guest("misbehave"));
    app.add_component("probe.wasm", &guest("event-probe"));
    let dir = app.path();
    let host = up(dir, &["--quiet"]);
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let r = send(
        "POST",
        &format!("{}/front/enqueue", host.url),
        &[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))],
        b"chained",
    );
    assert_eq!(r.status, 200, "{r:?}");
    let front_invocation = r.header("x-gust-invocation-id").unwrap().to_string();
    assert_eq!(r.header("x-gust-trace-id"), Some(trace));

    // The worker's line, as JSON, carries the same trace and its own id.
    let mut worker_line = serde_json::Value::Null;
    let handled = eventually(Duration::from_secs(20), || {
        let out = cli(dir, &["logs", "worker", "--json", "--tail", "50"]);
        worker_line = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| {
                l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("handled chained"))
            })
            .unwrap_or_default();
        !worker_line.is_null()
    });
    assert!(handled, "the worker never logged the message");
    assert_eq!(worker_line["trace_id"], trace, "{worker_line}");
    assert_eq!(worker_line["function"], "worker");
    let worker_invocation = worker_line["invocation"].as_str().unwrap().to_string();
    assert_ne!(worker_invocation, front_invocation);

    // Filtering by invocation (full id or its first 8 digits) and level.
    let text = cli(dir, &["logs", "--invocation", &worker_invocation[..8]]);
    assert!(text.contains("[worker] handled chained"), "{text}");
    assert!(
        text.contains(&format!("[inv {}]", &worker_invocation[..8])),
        "{text}"
    );
    assert!(!text.contains("[front]"), "{text}");
    let errors = cli(dir, &["logs", "--level", "error"]);
    assert!(!errors.contains("handled chained"), "{errors}");
    let (code, _, err) = gust(
        &["logs", "--level", "loud", "--app", dir.to_str().unwrap()],
        dir,
    );
    assert_ne!(code, 0);
    assert!(err.contains("unknown log level"), "{err}");
    drop(host);
}
