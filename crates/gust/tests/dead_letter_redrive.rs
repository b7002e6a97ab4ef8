//! End-to-end: dead letters of the triggers that are not queues. A stream
//! record, a change-feed change and a blob that a function gives up on
//! become dead letters of the queue `<stream|table|container>--<function>`;
//! `gust queue dlq list <name>` shows them and `gust queue dlq redrive
//! <name>` runs the function again on the same event.
//!
//! The functions (`tests/guests/event-probe`) fail for good on data that
//! contains `gated` while the kv store `gate` has no key `hits`; the test
//! opens the gate through an HTTP function between the failure and the
//! redrive.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

const MANIFEST: &str = r#"
[app]
name = "redrive"
[[function]]
name = "on-stream"
source = "probe.wasm"
trigger = { stream = { stream = "telemetry", start = "earliest" } }
bindings = { seen = { kv = "seen" }, gate = { kv = "gate" } }
retry = { strategy = "fixed", max_attempts = 2, min = "10ms", max = "10ms" }
[[function]]
name = "on-change"
source = "probe.wasm"
trigger = { changefeed = { table = "docs", start = "beginning" } }
bindings = { seen = { kv = "seen" }, gate = { kv = "gate" } }
retry = { strategy = "fixed", max_attempts = 2, min = "10ms", max = "10ms" }
[[function]]
name = "on-blob"
source = "probe.wasm"
trigger = { blob = { container = "uploads", path = "incoming/{name}.txt" } }
bindings = { seen = { kv = "seen" }, gate = { kv = "gate" } }
retry = { strategy = "fixed", max_attempts = 2, min = "10ms", max = "10ms" }
[[function]]
name = "data"
source = "data.wasm"
trigger = { http = { route = "/data/{*rest}", auth = "anonymous" } }
bindings = { docs = { table = "docs" } }
[[function]]
name = "open"
source = "misbehave.wasm"
trigger = { http = { route = "/open/{*rest}", auth = "anonymous" } }
bindings = { store = { kv = "gate" } }
"#;

/// (function, its dead-letter queue, the data of its failing event).
const KINDS: [(&str, &str, &str); 3] = [
    ("on-stream", "telemetry--on-stream", "gated-record"),
    ("on-change", "docs--on-change", "gated-change"),
    ("on-blob", "uploads--on-blob", "gated-blob"),
];

/// `gust queue dlq list <queue>`: the output, once it is `n` messages long.
fn dead_letters(dir: &Path, queue: &str, n: usize) -> String {
    let mut last = String::new();
    let listed = eventually(Duration::from_secs(20), || {
        let (code, out, err) = gust(&["queue", "dlq", "list", queue], dir);
        assert_eq!(code, 0, "{out}{err}");
        last = out;
        last.starts_with(&format!("{queue}-deadletter: {n} messages"))
    });
    assert!(listed, "expected {n} dead letters in {queue}, got:\n{last}");
    last
}

#[test]
fn stream_changefeed_and_blob_dead_letters_list_and_redrive() {
    let app = TestApp::new(MANIFEST);
    app.add_component("probe.wasm", &guest("event-probe"));
    app.add_component("data.wasm", &guest("data-probe"));
    app.add_component("misbehave.wasm", &guest("misbehave"));
    let dir = app.path();
    let host = up(dir, &["--quiet", "--no-watch"]);

    // One failing event for each kind, while the gate is closed.
    let (code, out, err) = gust(
        &[
            "stream",
            "append",
            "telemetry",
            "--key",
            "d1",
            "--data",
            "gated-record",
        ],
        dir,
    );
    assert_eq!(code, 0, "{out}{err}");
    let r = send(
        "PUT",
        &format!("{}/data/docs/k1", host.url),
        &[],
        b"gated-change",
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let incoming = dir.join(".gust/blobs/uploads/incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    std::fs::write(incoming.join("b1.txt"), "gated-blob").unwrap();

    for (function, queue, data) in KINDS {
        let listed = dead_letters(dir, queue, 1);
        assert!(listed.contains(&format!("body: {data}")), "{listed}");
        assert!(listed.contains("the gate is closed"), "{listed}");
        assert!(
            !function_logs(dir, function).contains(&format!("handled {data}")),
            "{function} handled {data} with the gate closed"
        );
    }

    // Open the gate, redrive: each function handles its event this time.
    let r = get(&format!("{}/open/kv", host.url), &[]);
    assert_eq!((r.status, r.body.as_str()), (200, "1"));
    for (function, queue, data) in KINDS {
        let (code, out, err) = gust(&["queue", "dlq", "redrive", queue], dir);
        assert_eq!(code, 0, "{out}{err}");
        assert!(out.contains("redrove 1 messages"), "{out}");
        let handled = eventually(Duration::from_secs(20), || {
            function_logs(dir, function).contains(&format!("handled {data} #1"))
        });
        assert!(
            handled,
            "{function} did not handle the redriven {data}:\n{}",
            function_logs(dir, function)
        );
        dead_letters(dir, queue, 0);
    }
}
