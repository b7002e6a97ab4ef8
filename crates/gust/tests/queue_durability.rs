//! End-to-end durability of the queue trigger: SIGKILL the host while 10,000
//! queued messages are being processed, restart it on the same folder, and
//! check that every message was processed at least once (none lost). The
//! number of duplicates (messages processed more than once) is printed; run
//! with `--nocapture` to see it.
//!
//! The function is `event-probe`: it counts each message body in kv store
//! `seen` (key = body). The messages go in through the admin API (several
//! client threads) while the function consumes another queue, so that all
//! 10,000 are waiting when it is pointed at them (a reload) and the kill
//! lands mid-flight: sending is slower than processing. After the second
//! host drained the queue and stopped, the test opens `.gust/data/kv.redb`
//! itself and reads every count (on NATS, where `--nats` puts kv too, the
//! store's kv bucket, with async-nats).
//!
//! Runs on the embedded queue store and on NATS JetStream
//! (nats://127.0.0.1:4222). The two tests take turns, so each has the whole
//! machine.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

/// Messages sent.
const MESSAGES: usize = 10_000;
/// Processed messages to wait for (after every send was accepted) before the kill.
const KILL_AFTER: usize = 2_000;
/// Client threads sending through the admin API.
const SENDERS: usize = 8;
/// Lease of a delivery; on NATS also how long the deliveries the killed host
/// held stay invisible after the restart.
const VISIBILITY: &str = "5s";
const NATS: &str = "nats://127.0.0.1:4222";

/// One test at a time: each measures, and the machine has two cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// The manifest: `worker` consumes `queue`.
fn manifest(name: &str, queue: &str) -> String {
    format!(
        r#"
[app]
name = "{name}"
[[function]]
name = "worker"
source = "probe.wasm"
trigger = {{ queue = {{ queue = "{queue}", batch_size = 64, concurrency = 16, visibility = "{VISIBILITY}" }} }}
bindings = {{ seen = {{ kv = "seen" }} }}
retry = {{ strategy = "fixed", max_attempts = 10, min = "100ms", max = "100ms" }}
"#
    )
}

/// The app, with `worker` at first consuming another queue (`parked`), so
/// all of `jobs` can be filled before anything processes it.
fn app(name: &str) -> TestApp {
    let app = TestApp::new(&manifest(name, "parked"));
    app.add_component("probe.wasm", &guest("event-probe"));
    app
}

/// The body of message `i`: distinct, and none of the probe's commands.
fn body(i: usize) -> String {
    format!("m{i:05}")
}

/// Sends every message through the admin API from [`SENDERS`] threads, each
/// on its own keep-alive connection. Returns when every send was accepted.
fn send_all(url: &str, key: &str) -> Duration {
    let start = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..SENDERS)
        .map(|_| {
            let (url, key, next) = (
                format!("{url}/_gust/queues/jobs/messages"),
                key.to_string(),
                next.clone(),
            );
            std::thread::spawn(move || {
                let agent: ureq::Agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .timeout_global(Some(Duration::from_secs(60)))
                    .build()
                    .into();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= MESSAGES {
                        break;
                    }
                    let r = agent
                        .post(&url)
                        .header("x-gust-key", &key)
                        .header("content-type", "text/plain")
                        .send(body(i).as_bytes())
                        .unwrap_or_else(|e| panic!("send {i}: {e}"));
                    assert_eq!(r.status().as_u16(), 202, "send {i}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("sender thread");
    }
    start.elapsed()
}

/// What `worker` logged so far: handled lines and distinct bodies.
fn handled(dir: &Path) -> (usize, HashSet<String>) {
    logged_bodies(dir, "worker")
}

/// Messages waiting in the queue (not counting leased ones).
fn depth(url: &str, key: &str) -> u64 {
    let r = get(&format!("{url}/_gust/queues/jobs"), &[("x-gust-key", key)]);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["depth"].as_u64().expect("depth")
}

/// Every count in kv store `seen` of app `name`, read after the host
/// stopped: from the file, or from NATS when `extra` has `--nats` (which
/// puts kv there too).
fn counts(dir: &Path, name: &str, extra: &[&str]) -> Vec<(String, u64)> {
    if extra.contains(&"--nats") {
        nats_kv_counts(NATS, name, "seen")
    } else {
        kv_counts(dir, "seen")
    }
}

/// The whole scenario for app `name`; `extra` are more `gust up` arguments.
fn kill_and_restart(label: &str, name: &str, extra: &[&str]) {
    let _turn = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let app = app(name);
    let dir = app.path();
    let started = Instant::now();
    let mut args = vec!["--quiet", "--no-watch"];
    args.extend(extra);

    // 1. Fill `jobs` through the admin API while nothing consumes it, then
    //    point `worker` at it (reload) and let it work.
    let mut first = up(dir, &args);
    let key = admin_key(dir);
    let send_time = send_all(&first.url, &key);
    assert_eq!(depth(&first.url, &key), MESSAGES as u64);
    app.write("gust.toml", &manifest(name, "jobs"));
    let r = send(
        "POST",
        &format!("{}/_gust/reload", first.url),
        &[("x-gust-key", &key)],
        b"",
    );
    assert_eq!(r.status, 200, "reload: {}", r.body);
    let waited = eventually(Duration::from_secs(60), || handled(dir).0 >= KILL_AFTER);
    assert!(
        waited,
        "fewer than {KILL_AFTER} handled; stderr:\n{}",
        first.stderr()
    );

    // 2. SIGKILL it mid-flight.
    let status = std::process::Command::new("kill")
        .args(["-9", &first.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(eventually(Duration::from_secs(10), || !first.alive()));
    let (at_kill, distinct_at_kill) = handled(dir);
    assert!(
        distinct_at_kill.len() < MESSAGES,
        "all {MESSAGES} were processed before the kill came: the test proves nothing"
    );

    // 3. Restart on the same folder and wait until everything was handled.
    let restarted = Instant::now();
    let mut second = up(dir, &args);
    let all_done = eventually(Duration::from_secs(90), || handled(dir).1.len() >= MESSAGES);
    let drain_time = restarted.elapsed();
    // Let the queue settle (nothing waiting), then stop gracefully.
    let settled = eventually(Duration::from_secs(30), || depth(&second.url, &key) == 0);
    let stderr = second.stderr();
    let code = second.stop();
    assert_eq!(code, Some(0), "second host did not stop cleanly:\n{stderr}");

    // 4. The verdict, from the kv file itself.
    let counts = counts(dir, name, extra);
    let seen: HashSet<&str> = counts.iter().map(|(k, _)| k.as_str()).collect();
    let lost: Vec<String> = (0..MESSAGES)
        .map(body)
        .filter(|b| !seen.contains(b.as_str()))
        .collect();
    let duplicates: u64 = counts.iter().map(|(_, n)| n.saturating_sub(1)).sum();
    let twice_or_more = counts.iter().filter(|(_, n)| *n > 1).count();
    let (log_lines, _) = handled(dir);
    println!(
        "queue durability [{label}]: {MESSAGES} messages sent in {:.2}s ({:.0} msg/s, {SENDERS} threads); \
         {at_kill} of them handled when SIGKILLed; \
         restart drained the rest in {:.2}s; lost {}; duplicates {duplicates} \
         ({twice_or_more} messages processed more than once); {log_lines} handled lines logged; \
         whole test {:.1}s",
        send_time.as_secs_f64(),
        MESSAGES as f64 / send_time.as_secs_f64(),
        drain_time.as_secs_f64(),
        lost.len(),
        started.elapsed().as_secs_f64(),
    );
    assert!(
        lost.is_empty(),
        "{} of {MESSAGES} messages were never processed (first: {:?}); all handled: {all_done}, queue settled: {settled}\nstderr:\n{stderr}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(counts.len(), MESSAGES, "unexpected keys in kv store `seen`");
    assert!(all_done && settled);
}

#[test]
fn sigkill_mid_flight_loses_no_message_on_the_embedded_store() {
    kill_and_restart("embedded", "durable-embedded", &[]);
}

#[test]
fn sigkill_mid_flight_loses_no_message_on_nats_jetstream() {
    let name = format!("durable-nats-{}", std::process::id());
    // Deletes this test's streams and buckets however the test ends.
    let _cleanup = NatsApp::new(NATS, &name);
    kill_and_restart("nats", &name, &["--nats", NATS]);
}
