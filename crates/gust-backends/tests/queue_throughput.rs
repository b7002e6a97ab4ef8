//! A rough throughput check, not a timed assertion (ignored by default):
//!
//! ```text
//! cargo test --release -p gust-backends --test queue_throughput -- --ignored --nocapture
//! ```
//!
//! 10,000 messages through `send_batch` (100 a batch) and `receive(100)` +
//! `ack` of each delivery (concurrently within a batch), first one phase after
//! the other, then acking one delivery after another, then with producer and
//! consumers running at the same time.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gust_backends::{Queue, QueueProvider};

const MESSAGES: usize = 10_000;
const BATCH: usize = 100;
const CONSUMERS: usize = 4;
const VISIBILITY: Duration = Duration::from_secs(60);

fn batch(i: usize) -> Vec<(Vec<u8>, BTreeMap<String, String>)> {
    (0..BATCH)
        .map(|j| {
            (
                format!("{{\"n\":{}}}", i * BATCH + j).into_bytes(),
                BTreeMap::from([("content-type".to_string(), "application/json".to_string())]),
            )
        })
        .collect()
}

async fn produce(q: &dyn Queue) {
    for i in 0..MESSAGES / BATCH {
        q.send_batch(batch(i)).await.unwrap();
    }
}

/// Receives and acks until `total` deliveries were acked across consumers.
async fn consume(q: Arc<dyn Queue>, done: Arc<std::sync::atomic::AtomicUsize>, total: usize) {
    use std::sync::atomic::Ordering;
    while done.load(Ordering::Relaxed) < total {
        let got = q
            .receive(BATCH, VISIBILITY, Duration::from_millis(200))
            .await
            .unwrap();
        futures::future::try_join_all(got.iter().map(|d| q.ack(&d.receipt)))
            .await
            .unwrap();
        done.fetch_add(got.len(), Ordering::Relaxed);
    }
}

async fn run(label: &str, p: Arc<dyn QueueProvider>) {
    use std::sync::atomic::AtomicUsize;
    // Phases one after the other.
    let q = p.queue("bench-phases").await.unwrap();
    let started = Instant::now();
    produce(&*q).await;
    let sent = started.elapsed();
    let consumed_from = Instant::now();
    consume(q.clone(), Arc::new(AtomicUsize::new(0)), MESSAGES).await;
    let consumed = consumed_from.elapsed();
    let total = started.elapsed();
    println!(
        "{label} phases: send_batch {:.0} msg/s, receive+ack {:.0} msg/s, end to end {:.0} msg/s ({MESSAGES} in {total:.2?})",
        MESSAGES as f64 / sent.as_secs_f64(),
        MESSAGES as f64 / consumed.as_secs_f64(),
        MESSAGES as f64 / total.as_secs_f64(),
    );
    assert_eq!(q.depth().await.unwrap(), 0);

    // A consumer that acks one delivery after another.
    let q = p.queue("bench-sequential-acks").await.unwrap();
    produce(&*q).await;
    let started = Instant::now();
    let mut acked = 0;
    while acked < MESSAGES {
        let got = q
            .receive(BATCH, VISIBILITY, Duration::from_millis(200))
            .await
            .unwrap();
        for d in &got {
            q.ack(&d.receipt).await.unwrap();
        }
        acked += got.len();
    }
    let took = started.elapsed();
    println!(
        "{label} receive(100) + one ack after another: {:.0} msg/s",
        MESSAGES as f64 / took.as_secs_f64(),
    );

    // Producer and consumers at the same time.
    let q = p.queue("bench-concurrent").await.unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|_| tokio::spawn(consume(q.clone(), done.clone(), MESSAGES)))
        .collect();
    produce(&*q).await;
    for c in consumers {
        c.await.unwrap();
    }
    let total = started.elapsed();
    println!(
        "{label} concurrent (1 producer, {CONSUMERS} consumers): {:.0} msg/s ({MESSAGES} in {total:.2?})",
        MESSAGES as f64 / total.as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput check; run with --ignored --nocapture"]
async fn embedded_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let p = gust_backends::embedded::EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
    run("embedded", Arc::new(p)).await;
}

#[cfg(feature = "nats")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput check; run with --ignored --nocapture"]
async fn nats_throughput() {
    let prefix = format!("bench{}", std::process::id());
    let p = gust_backends::nats::NatsQueues::connect("nats://127.0.0.1:4222", &prefix)
        .await
        .unwrap();
    run("nats", Arc::new(p.clone())).await;
    p.delete_queue("bench-phases").await.unwrap();
    p.delete_queue("bench-concurrent").await.unwrap();
    p.delete_queue("bench-sequential-acks").await.unwrap();
}
