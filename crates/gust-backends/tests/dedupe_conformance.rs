//! One conformance suite for every [`Dedupe`] implementation: each case is
//! an async fn over an [`Engine`] (embedded, and PostgreSQL, Redis and NATS
//! JetStream on 127.0.0.1 with their features), under a namespace of its
//! own that is deleted afterwards. Two dedupe providers of one engine stand
//! for two nodes (separate connections; embedded: the same memory, since
//! it serves one process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use engines::Engine;

#[path = "conformance_support/kv_engines.rs"]
mod engines;

const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Cases

async fn first_and_second_sighting(e: Arc<Engine>) {
    let d = e.dedupe(LONG).await;
    assert!(d.first_seen("source-a\nevent-1").await.unwrap());
    assert!(!d.first_seen("source-a\nevent-1").await.unwrap());
    assert!(!d.first_seen("source-a\nevent-1").await.unwrap());
    assert!(d.first_seen("source-a\nevent-2").await.unwrap());
    assert!(d.first_seen("source-b\nevent-1").await.unwrap());
    // Any text is a key, however long.
    let huge = format!("{}\nevent-1", "s".repeat(900_000));
    assert!(d.first_seen(&huge).await.unwrap());
    assert!(!d.first_seen(&huge).await.unwrap());
    for key in ["", " ", "a.b", "{x}", "ü"] {
        assert!(d.first_seen(key).await.unwrap(), "{key:?}");
        assert!(!d.first_seen(key).await.unwrap(), "{key:?}");
    }
}

async fn forgotten_after_the_window(e: Arc<Engine>) {
    let d = e.dedupe(Duration::from_millis(300)).await;
    assert!(d.first_seen("k").await.unwrap());
    assert!(!d.first_seen("k").await.unwrap());
    // Within a generous bound the key is new again.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if d.first_seen("k").await.unwrap() {
            break;
        }
        assert!(
            Instant::now() < end,
            "still remembered long after the window"
        );
    }
    // ... and remembered again from then on.
    assert!(!d.first_seen("k").await.unwrap());
}

async fn nodes_share_the_record(e: Arc<Engine>) {
    let a = e.dedupe(LONG).await;
    let b = e.dedupe(LONG).await;
    assert!(a.first_seen("k1").await.unwrap());
    assert!(!b.first_seen("k1").await.unwrap());
    assert!(b.first_seen("k2").await.unwrap());
    assert!(!a.first_seen("k2").await.unwrap());
    // Racing first sightings of one key: exactly one is first.
    let nodes = [a, b];
    for round in 0..3 {
        let key = format!("race {round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let d = nodes[i % 2].clone();
                let key = key.clone();
                tokio::spawn(async move { d.first_seen(&key).await.unwrap() })
            })
            .collect();
        let mut firsts = 0;
        for t in tasks {
            firsts += usize::from(t.await.unwrap());
        }
        assert_eq!(firsts, 1, "round {round}");
    }
}

conformance!(
    first_and_second_sighting,
    forgotten_after_the_window,
    nodes_share_the_record,
);
