//! End-to-end: an engine that goes away. `gust up --nats` on a NATS server
//! of the test's own, with a queue-triggered function; messages are sent
//! one by one while the server is killed and restarted on the same port and
//! store. The host keeps answering HTTP routes that do not need NATS during
//! the outage, and every message it acknowledged (202) is handled after.
//!
//! `--nocapture` shows the figures.

mod common;
mod engine_probe;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::*;
use engine_probe::{OwnNats, unique_app};

fn manifest(name: &str) -> String {
    format!(
        r#"
[app]
name = "{name}"
[[function]]
name = "web"
source = "misbehave.wasm"
trigger = {{ http = {{ route = "/t/{{action}}", auth = "anonymous" }} }}
[[function]]
name = "worker"
source = "probe.wasm"
trigger = {{ queue = {{ queue = "jobs", concurrency = 8, visibility = "5s" }} }}
bindings = {{ seen = {{ kv = "seen" }} }}
retry = {{ strategy = "fixed", max_attempts = 20, min = "100ms", max = "100ms" }}
"#
    )
}

#[test]
fn a_host_rides_out_a_nats_restart_without_losing_acknowledged_messages() {
    let started = Instant::now();
    let mut nats = OwnNats::start();
    let name = unique_app("engine-restart");
    let app = TestApp::new(&manifest(&name));
    app.add_component("misbehave.wasm", &guest("misbehave"));
    app.add_component("probe.wasm", &guest("event-probe"));
    let host = up(
        app.path(),
        &["--quiet", "--no-watch", "--nats", &nats.url()],
    );
    let key = admin_key(app.path());

    // Messages go one by one; only those answered 202 were acknowledged.
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let (url, key, sending) = (host.url.clone(), key.clone(), sending.clone());
        std::thread::spawn(move || {
            let (mut acked, mut refused, mut i) = (Vec::new(), 0, 0);
            while sending.load(Ordering::Relaxed) {
                let body = format!("m{i:05}");
                let r = send(
                    "POST",
                    &format!("{url}/_gust/queues/jobs/messages"),
                    &[("x-gust-key", &key), ("content-type", "text/plain")],
                    body.as_bytes(),
                );
                if r.status == 202 {
                    acked.push(body);
                } else {
                    refused += 1;
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            (acked, refused, i)
        })
    };
    // Two seconds of sends against a healthy host first.
    std::thread::sleep(Duration::from_secs(2));

    // NATS goes away for 3 s: HTTP that does not need it keeps working.
    nats.stop();
    let outage = Instant::now();
    let mut served = 0;
    while outage.elapsed() < Duration::from_secs(3) {
        let r = get(&format!("{}/t/ok", host.url), &[]);
        assert_eq!(
            r.status, 200,
            "stopped serving HTTP without NATS: {}",
            r.body
        );
        served += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    nats.restart();

    // Sends are acknowledged again once the host is back on NATS.
    let probe = |i: usize| {
        send(
            "POST",
            &format!("{}/_gust/queues/jobs/messages", host.url),
            &[("x-gust-key", &key), ("content-type", "text/plain")],
            format!("after{i}").as_bytes(),
        )
        .status
            == 202
    };
    let mut n = 0;
    let mut after = Vec::new();
    let back = eventually(Duration::from_secs(30), || {
        n += 1;
        let ok = probe(n);
        if ok {
            after.push(format!("after{n}"));
        }
        ok
    });
    assert!(back, "sends never succeeded again after NATS came back");
    std::thread::sleep(Duration::from_secs(1));
    sending.store(false, Ordering::Relaxed);
    let (mut acked, refused, sent) = sender.join().unwrap();
    let (sent, probes) = (sent + n, after.len());
    acked.extend(after);

    let url = nats.url();
    let all_seen = eventually(Duration::from_secs(30), || {
        let counts = nats_kv_counts(&url, &name, "seen");
        let seen: BTreeSet<&str> = counts.iter().map(|(k, _)| k.as_str()).collect();
        acked.iter().all(|a| seen.contains(a.as_str()))
    });
    let counts = nats_kv_counts(&url, &name, "seen");
    let Tally {
        lost, duplicates, ..
    } = tally_counts(&counts, acked.iter().cloned());
    println!(
        "nats restart: {} of {sent} sends acknowledged ({refused} refused, {probes} after the restart) \
         across a 3 s outage; {served} HTTP requests served during it; lost {}; duplicates {duplicates}; \
         {:.1?} in all",
        acked.len(),
        lost.len(),
        started.elapsed()
    );
    assert!(
        all_seen && lost.is_empty(),
        "{} acknowledged messages lost: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert!(served >= 10, "too few HTTP requests during the outage");
    assert!(
        acked.len() > 100,
        "too few sends acknowledged: {}",
        acked.len()
    );
    // The host is still healthy on NATS: a fresh message is handled.
    assert!(probe(999_999));
    assert!(eventually(Duration::from_secs(20), || {
        nats_kv_counts(&url, &name, "seen")
            .iter()
            .any(|(k, _)| k == "after999999")
    }));
}
