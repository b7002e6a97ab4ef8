//! One conformance suite for every [`Lease`] implementation: each case is
//! an async fn over an [`Engine`] (embedded, and PostgreSQL, Redis and NATS
//! JetStream on 127.0.0.1 with their features), under a namespace of its
//! own that is deleted afterwards. Two lease providers of one engine stand
//! for two nodes (separate connections; embedded: one process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use engines::Engine;
use gust_backends::Lease;

#[path = "conformance_support/kv_engines.rs"]
mod engines;

const LONG: Duration = Duration::from_secs(60);

/// Tries to claim `name` for `holder` until it succeeds or `within` passed.
async fn acquire_within(l: &dyn Lease, name: &str, holder: &str, within: Duration) -> bool {
    let end = Instant::now() + within;
    loop {
        if l.acquire(name, holder, LONG).await.unwrap() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ---------------------------------------------------------------------------
// Cases

async fn one_holder_at_a_time(e: Arc<Engine>) {
    let l = e.leases().await;
    assert!(l.acquire("job", "node-a", LONG).await.unwrap());
    assert!(!l.acquire("job", "node-b", LONG).await.unwrap());
    assert!(l.acquire("job", "node-a", LONG).await.unwrap(), "renewal");
    // Names are independent.
    assert!(l.acquire("other job", "node-b", LONG).await.unwrap());
    assert!(!l.acquire("other job", "node-a", LONG).await.unwrap());
    // Odd names are names.
    for name in ["timer:f@2025-01-01T00:00:00+00:00", "a b", "{x}", "ü", "."] {
        assert!(l.acquire(name, "node-a", LONG).await.unwrap(), "{name}");
        assert!(!l.acquire(name, "node-b", LONG).await.unwrap(), "{name}");
    }
}

async fn release_only_by_the_holder(e: Arc<Engine>) {
    let l = e.leases().await;
    assert!(l.acquire("job", "node-a", LONG).await.unwrap());
    l.release("job", "node-b").await.unwrap(); // not b's: no effect
    assert!(!l.acquire("job", "node-b", LONG).await.unwrap());
    l.release("job", "node-a").await.unwrap();
    assert!(l.acquire("job", "node-b", LONG).await.unwrap());
    assert!(!l.acquire("job", "node-a", LONG).await.unwrap());
    // Releasing what nobody holds, or twice, is fine.
    l.release("never claimed", "node-a").await.unwrap();
    l.release("job", "node-b").await.unwrap();
    l.release("job", "node-b").await.unwrap();
    assert!(l.acquire("job", "node-a", LONG).await.unwrap());
}

async fn an_unrenewed_claim_expires(e: Arc<Engine>) {
    let node_a = e.leases().await;
    let node_b = e.leases().await;
    assert!(
        node_a
            .acquire("job", "node-a", Duration::from_millis(300))
            .await
            .unwrap()
    );
    assert!(!node_b.acquire("job", "node-b", LONG).await.unwrap());
    // node-a dies without releasing (its connection goes away).
    drop(node_a);
    assert!(
        acquire_within(&*node_b, "job", "node-b", Duration::from_secs(10)).await,
        "the claim of a dead holder must run out"
    );
    // A zero ttl claims and lets go at once.
    assert!(
        node_b
            .acquire("zero", "node-b", Duration::ZERO)
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(node_b.acquire("zero", "node-c", LONG).await.unwrap());
}

async fn renewal_extends_the_claim(e: Arc<Engine>) {
    let l = e.leases().await;
    let ttl = Duration::from_millis(1500);
    assert!(l.acquire("job", "node-a", ttl).await.unwrap());
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(l.acquire("job", "node-a", ttl).await.unwrap(), "renewal");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    // 2 s after the first claim, 1 s after the renewal: still node-a's.
    assert!(!l.acquire("job", "node-b", LONG).await.unwrap());
}

async fn two_nodes_racing_one_wins(e: Arc<Engine>) {
    let nodes = [e.leases().await, e.leases().await];
    for round in 0..5 {
        let name = format!("slot {round}");
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let l = nodes[i % 2].clone();
                let name = name.clone();
                tokio::spawn(async move {
                    let won = l.acquire(&name, &format!("node-{i}"), LONG).await.unwrap();
                    won.then_some(i)
                })
            })
            .collect();
        let mut winners = Vec::new();
        for t in tasks {
            winners.extend(t.await.unwrap());
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        // The winner holds it, from either node.
        let winner = format!("node-{}", winners[0]);
        assert!(nodes[1].acquire(&name, &winner, LONG).await.unwrap());
        assert!(!nodes[0].acquire(&name, "node-x", LONG).await.unwrap());
    }
}

conformance!(
    one_holder_at_a_time,
    release_only_by_the_holder,
    an_unrenewed_claim_expires,
    renewal_extends_the_claim,
    two_nodes_racing_one_wins,
);
