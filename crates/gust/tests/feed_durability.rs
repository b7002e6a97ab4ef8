//! End-to-end durability of the stream and change-feed triggers: SIGKILL the
//! host while 10,000 records (or table writes) are being processed, restart
//! it on the same folder, and check that every one was processed at least
//! once. The duplicate count is printed (`--nocapture` shows it).
//!
//! As in `queue_durability.rs`, the consumer (`event-probe`, counting each
//! body in kv store `seen` and logging `handled <body>`) first follows
//! another source (`parked`), the 10,000 items are written, and a reload
//! points it at them, so the kill lands mid-flight.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// Items written.
const ITEMS: usize = 10_000;
/// Processed items to wait for before the kill.
const KILL_AFTER: usize = 2_000;
/// Client threads writing.
const WRITERS: usize = 8;

/// One test at a time: each uses the whole machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The body of item `i`.
fn body(i: usize) -> String {
    format!("m{i:05}")
}

/// What a scenario varies.
struct Scenario {
    label: &'static str,
    /// The manifest with the consumer following `source`.
    manifest: fn(source: &str) -> String,
    /// Writes item `i` to the running host at `url` (admin `key`).
    write: fn(url: &str, key: &str, i: usize),
}

fn run(s: &Scenario) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    let app = TestApp::new(&(s.manifest)("parked"));
    app.add_component("probe.wasm", &guest("event-probe"));
    app.add_component("data.wasm", &guest("data-probe"));
    let dir = app.path();
    let args = ["--quiet", "--no-watch"];

    let mut first = up(dir, &args);
    let key = admin_key(dir);
    let (url, write_key, write) = (first.url.clone(), key.clone(), s.write);
    in_parallel(ITEMS, WRITERS, move |i| write(&url, &write_key, i));
    let write_time = started.elapsed();
    app.write("gust.toml", &(s.manifest)("jobs"));
    let r = send(
        "POST",
        &format!("{}/_gust/reload", first.url),
        &[("x-gust-key", &key)],
        b"",
    );
    assert_eq!(r.status, 200, "reload: {}", r.body);
    let handled = || logged_bodies(dir, "consumer");
    assert!(
        eventually(Duration::from_secs(60), || handled().1.len() >= KILL_AFTER),
        "fewer than {KILL_AFTER} handled; stderr:\n{}",
        first.stderr()
    );

    let status = std::process::Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(eventually(Duration::from_secs(10), || !first.alive()));
    let (at_kill, distinct_at_kill) = handled();
    assert!(
        distinct_at_kill.len() < ITEMS,
        "all {ITEMS} were processed before the kill came: the test proves nothing"
    );

    let restarted = Instant::now();
    let mut second = up(dir, &args);
    let all_done = eventually(Duration::from_secs(120), || handled().1.len() >= ITEMS);
    let drain_time = restarted.elapsed();
    let stderr = second.stderr();
    assert_eq!(
        second.stop(),
        Some(0),
        "second host did not stop cleanly:\n{stderr}"
    );

    let Tally {
        lost,
        duplicates,
        distinct,
    } = tally(dir, "seen", (0..ITEMS).map(body));
    println!(
        "{} durability: {ITEMS} items written in {:.2}s; {at_kill} handled when SIGKILLed; \
         restart drained the rest in {:.2}s; lost {}; duplicates {duplicates}; whole test {:.1}s",
        s.label,
        write_time.as_secs_f64(),
        drain_time.as_secs_f64(),
        lost.len(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        lost.is_empty(),
        "{} of {ITEMS} were never processed (first: {:?}); all handled: {all_done}\nstderr:\n{stderr}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(distinct, ITEMS, "unexpected keys in kv store `seen`");
    assert!(all_done);
}

#[test]
fn sigkill_mid_stream_loses_no_record() {
    run(&Scenario {
        label: "stream",
        manifest: |source| {
            format!(
                r#"
[app]
name = "stream-durability"
[[function]]
name = "consumer"
source = "probe.wasm"
trigger = {{ stream = {{ stream = "{source}", start = "earliest", batch_size = 100 }} }}
bindings = {{ seen = {{ kv = "seen" }} }}
"#
            )
        },
        write: |url, key, i| {
            let r = send(
                "POST",
                &format!("{url}/_gust/streams/jobs/records?key=k{}", i % 64),
                &[("x-gust-key", key), ("content-type", "text/plain")],
                body(i).as_bytes(),
            );
            assert_eq!(r.status, 201, "append {i}: {}", r.body);
        },
    });
}

#[test]
fn sigkill_mid_change_feed_loses_no_change() {
    run(&Scenario {
        label: "change feed",
        manifest: |source| {
            format!(
                r#"
[app]
name = "feed-durability"
[[function]]
name = "writer"
source = "data.wasm"
trigger = {{ http = {{ route = "/data/{{*rest}}", auth = "anonymous" }} }}
bindings = {{ docs = {{ table = "jobs" }} }}
[[function]]
name = "consumer"
source = "probe.wasm"
trigger = {{ changefeed = {{ table = "{source}", start = "beginning" }} }}
bindings = {{ seen = {{ kv = "seen" }} }}
"#
            )
        },
        write: |url, _key, i| {
            let r = send(
                "PUT",
                &format!("{url}/data/docs/k{i}"),
                &[],
                body(i).as_bytes(),
            );
            assert_eq!(r.status, 200, "put {i}: {}", r.body);
        },
    });
}
