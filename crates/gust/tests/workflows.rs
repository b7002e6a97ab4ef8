//! End-to-end: durable workflows under a real `gust up`, driven through the
//! management API (`/_gust/workflows/...`) and the CLI like a user would:
//! a chain of activities completes; a fan-out/fan-in sums its results; an
//! event wait takes a raised event, another times out; a child workflow; a
//! compensating failure; terminate; clear 4xx answers for an unknown
//! workflow, malformed input and an event on a finished instance; and a
//! code change mid-flight (non-determinism) fails the instance with an
//! error naming the step.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

fn manifest(first: &str) -> String {
    let mut m =
        format!("[app]\nname = \"wf-probe\"\n[variables]\nfirst = {{ default = \"{first}\" }}\n");
    for w in [
        "chain", "fanout", "approval", "changing", "parent", "failing", "sleeper",
    ] {
        m.push_str(&format!(
            "[[function]]\nname = \"{w}\"\nsource = \"probe.wasm\"\ntrigger = {{ workflow = {{}} }}\nretry = {{ max_attempts = 2, min = \"100ms\", max = \"100ms\" }}\n"
        ));
    }
    for a in ["double", "fail"] {
        m.push_str(&format!(
            "[[function]]\nname = \"{a}\"\nsource = \"probe.wasm\"\ntrigger = {{ activity = {{}} }}\nretry = {{ strategy = \"fixed\", max_attempts = 2, min = \"100ms\" }}\n"
        ));
    }
    m
}

struct Api {
    url: String,
    key: String,
}

impl Api {
    fn headers(&self) -> [(&str, &str); 2] {
        [
            ("x-gust-key", &self.key),
            ("content-type", "application/json"),
        ]
    }

    fn post(&self, path: &str, body: &str) -> Reply {
        send(
            "POST",
            &format!("{}/_gust/workflows/{path}", self.url),
            &self.headers(),
            body.as_bytes(),
        )
    }

    fn status(&self, workflow: &str, id: &str) -> Value {
        let r = get(
            &format!("{}/_gust/workflows/{workflow}/{id}", self.url),
            &self.headers(),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.json()
    }

    /// Starts `workflow` with `input`; returns the instance id.
    fn start(&self, workflow: &str, input: &str) -> String {
        let r = self.post(workflow, input);
        assert_eq!(r.status, 202, "{}", r.body);
        let body = r.json();
        let id = body["id"].as_str().unwrap().to_string();
        let location = r.header("location").expect("Location header");
        assert_eq!(body["status_url"], location);
        assert!(location.ends_with(&format!("/_gust/workflows/{workflow}/{id}")));
        id
    }

    /// Waits until the instance is not running; returns its status.
    fn finished(&self, workflow: &str, id: &str) -> Value {
        let mut last = Value::Null;
        let done = eventually(Duration::from_secs(30), || {
            last = self.status(workflow, id);
            last["status"] != "running"
        });
        assert!(done, "{workflow}/{id} still running: {last}");
        last
    }
}

fn start_app() -> (TestApp, Running, Api) {
    let app = TestApp::new(&manifest("double"));
    app.add_component("probe.wasm", &guest("workflow-probe"));
    let running = up(app.path(), &[]);
    let api = Api {
        url: running.url.clone(),
        key: admin_key(app.path()),
    };
    (app, running, api)
}

fn cli(dir: &Path, args: &[&str]) -> String {
    let (code, out, err) = gust(args, dir);
    assert_eq!(code, 0, "gust {args:?}: {out}{err}");
    out
}

#[test]
fn workflows_run_wait_compensate_and_refuse_bad_requests() {
    let (app, mut running, api) = start_app();

    // A chain of three activity calls.
    let id = api.start("chain", "3");
    let done = api.finished("chain", &id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"], json!(24));
    assert_eq!(done["input"], json!(3));
    assert_eq!(done["history_len"], json!(3));
    assert!(done["error"].is_null());

    // Idempotent start: the same id again is the same instance.
    let r = api.post("chain?id=fixed-1", "5");
    assert_eq!(r.status, 202, "{}", r.body);
    let r = api.post("chain?id=fixed-1", "7");
    assert_eq!(r.status, 202);
    assert_eq!(r.json()["id"], "fixed-1");
    assert_eq!(api.finished("chain", "fixed-1")["output"], json!(40));

    // Fan-out / fan-in.
    let id = api.start("fanout", "[1, 2, 3, 4, 5, 6, 7, 8]");
    let done = api.finished("fanout", &id);
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["output"]["sum"], json!(72));
    assert_eq!(
        done["output"]["doubled"],
        json!([2, 4, 6, 8, 10, 12, 14, 16])
    );
    assert_eq!(done["history_len"], json!(8));

    // A child workflow.
    let id = api.start("parent", "1");
    let done = api.finished("parent", &id);
    assert_eq!(done["output"], json!(9), "{done}");

    // An event wait takes a raised event (through the CLI) ...
    let waiting = api.start("approval", r#"{"timeout_ms": 600000}"#);
    assert!(eventually(Duration::from_secs(20), || {
        api.status("approval", &waiting)["history_len"] == json!(1)
    }));
    let out = cli(
        app.path(),
        &[
            "workflows",
            "raise",
            "approval",
            &waiting,
            "go",
            "--data",
            r#"{"by": "ann"}"#,
        ],
    );
    assert!(out.contains("raised `go`"), "{out}");
    let done = api.finished("approval", &waiting);
    assert_eq!(
        done["output"],
        json!({ "approved": { "by": "ann" } }),
        "{done}"
    );
    // ... and refuses events once finished.
    let r = api.post(&format!("approval/{waiting}/events/go"), "1");
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(r.body.contains("completed"), "{}", r.body);
    // Another times out.
    let id = api.start("approval", r#"{"timeout_ms": 300}"#);
    assert_eq!(api.finished("approval", &id)["output"], json!("timed out"));

    // A failing activity: compensation, then the workflow fails.
    let id = api.start("failing", "null");
    let done = api.finished("failing", &id);
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("compensated after") && error.contains("always fails"),
        "{error}"
    );
    assert_eq!(done["history_len"], json!(2));

    // Terminate (through the CLI), then terminate again: 409.
    let out = cli(
        app.path(),
        &[
            "workflows",
            "start",
            "approval",
            "--id",
            "to-stop",
            "--data",
            "{}",
        ],
    );
    assert!(out.contains("to-stop"), "{out}");
    let out = cli(
        app.path(),
        &["workflows", "terminate", "approval", "to-stop"],
    );
    assert!(out.contains("terminated"), "{out}");
    assert_eq!(api.status("approval", "to-stop")["status"], "terminated");
    let r = api.post("approval/to-stop/terminate", "");
    assert_eq!(r.status, 409, "{}", r.body);
    let out = cli(app.path(), &["workflows", "ls", "approval"]);
    assert!(
        out.contains("to-stop") && out.contains("terminated"),
        "{out}"
    );
    let out = cli(
        app.path(),
        &["workflows", "show", "chain", "fixed-1", "--history"],
    );
    assert!(
        out.contains("\"completed\"") && out.contains("double"),
        "{out}"
    );

    // Bad requests.
    let r = api.post("no-such-flow", "{}");
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("no workflow `no-such-flow`"), "{}", r.body);
    let r = api.post("double", "{}");
    assert_eq!(r.status, 404, "an activity is not a workflow: {}", r.body);
    let r = api.post("chain", "{not json");
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("not JSON"), "{}", r.body);
    let r = api.post("chain?id=bad%20id", "1");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = get(
        &format!("{}/_gust/workflows/chain/nope", api.url),
        &api.headers(),
    );
    assert_eq!(r.status, 404, "{}", r.body);
    let r = api.post("approval/nope/events/go", "1");
    assert_eq!(r.status, 404, "{}", r.body);
    let r = get(&format!("{}/_gust/workflows/chain/x", api.url), &[]);
    assert_eq!(r.status, 401);

    // Non-determinism: the code's first step changes while an instance waits.
    let id = api.start("changing", "null");
    assert!(eventually(Duration::from_secs(20), || {
        api.status("changing", &id)["history_len"] == json!(2)
    }));
    app.write("gust.toml", &manifest("fail"));
    let r = send(
        "POST",
        &format!("{}/_gust/reload", api.url),
        &api.headers(),
        b"",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = api.post(&format!("changing/{id}/events/go"), "true");
    assert_eq!(r.status, 202, "{}", r.body);
    let done = api.finished("changing", &id);
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["error"].as_str().unwrap();
    assert!(
        error.contains("step 0") && error.contains("`double`") && error.contains("`fail`"),
        "{error}"
    );
    // It never ran `fail`: the step stays as recorded.
    assert_eq!(done["history_len"], json!(2));

    assert!(running.alive(), "the host keeps serving");
    running.stop();
}

/// The durable sleep of the issue: 30 s, with the host SIGKILLed 10 s in
/// and started again; the timer fires once, after the full 30 s.
const SLEEP_MS: u64 = 30_000;

#[test]
fn a_durable_sleep_survives_a_sigkill_and_fires_once() {
    let (app, mut first, api) = start_app();
    let id = api.start("sleeper", &SLEEP_MS.to_string());
    assert!(eventually(Duration::from_secs(20), || {
        api.status("sleeper", &id)["history_len"] == json!(2)
    }));
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(api.status("sleeper", &id)["status"], "running");
    std::process::Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(eventually(Duration::from_secs(10), || !first.alive()));

    let mut second = up(app.path(), &[]);
    let api = Api {
        url: second.url.clone(),
        key: admin_key(app.path()),
    };
    let mut last = Value::Null;
    assert!(
        eventually(Duration::from_secs(45), || {
            last = api.status("sleeper", &id);
            last["status"] != "running"
        }),
        "{last}"
    );
    assert_eq!(last["status"], "completed", "{last}");
    let slept = last["output"]["slept_ms"].as_u64().unwrap();
    assert!(slept >= SLEEP_MS, "woke after {slept} ms");
    assert_eq!(last["output"]["n"], json!(42));
    // now, sleep, double, now: the sleep is one step that fired once.
    assert_eq!(last["history_len"], json!(4), "{last}");
    second.stop();
}
