//! Measures tables + change feed on PostgreSQL and streams on NATS JetStream.
//!
//! ```text
//! cargo run --release -p gust-backends --example feeds_bench -- \
//!     [postgres://postgres@127.0.0.1:5432/test] [nats://127.0.0.1:4222]
//! ```
//!
//! - PostgreSQL: `W` writers `put` into one table while a reader follows its
//!   change feed (`changes` + `wait_for_change`); reports writes/s, put
//!   latency and feed lag (put returned → reader has the change) p50/p99.
//! - NATS: appends records to a 4-partition stream (batches of 100) and
//!   reads them all back with `read`, through `NatsStreams`; then the same
//!   work with raw async-nats (one JetStream stream per partition, pipelined
//!   publishes, a pull consumer per partition fetching batches).
//!
//! Everything it creates is deleted at the end.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use gust_backends::nats::NatsStreams;
use gust_backends::postgres::{PgTables, schema_name};
use gust_backends::stream::{Retention, StreamConfig};
use gust_backends::{StreamProvider, TableProvider};

const RECORDS: usize = 20_000;
const BATCH: usize = 100;
const PARTITIONS: u32 = 4;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn table_bench(url: &str, writers: usize, per_writer: usize) {
    let namespace = format!("feedsbench_{}_{writers}", std::process::id());
    let tables = PgTables::connect(url, &namespace).await.unwrap();
    let table = tables.open("bench").unwrap();
    let returned: Arc<Mutex<HashMap<u64, Instant>>> = Arc::default();
    let total = (writers * per_writer) as u64;
    let reader = {
        let t = tables.open("bench").unwrap();
        tokio::spawn(async move {
            let mut seen = HashMap::with_capacity(total as usize);
            let mut after = 0;
            while after < total {
                let got = t.changes(after, 500).await.unwrap();
                let now = Instant::now();
                if got.is_empty() {
                    t.wait_for_change(after, Duration::from_secs(1)).await;
                    continue;
                }
                for c in got {
                    assert_eq!(c.sequence, after + 1, "gap in the feed");
                    after = c.sequence;
                    seen.insert(c.sequence, now);
                }
            }
            seen
        })
    };
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let t = table.clone();
        let returned = returned.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_writer);
            for i in 0..per_writer {
                let body = format!(r#"{{"writer":{w},"i":{i},"payload":"0123456789abcdef"}}"#);
                let t0 = Instant::now();
                let seq = t
                    .put(&format!("w{w}/k{}", i % 100), body.into_bytes())
                    .await
                    .unwrap();
                let done = Instant::now();
                latencies.push(done - t0);
                returned.lock().unwrap().insert(seq, done);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let seen = reader.await.unwrap();
    let mut lags: Vec<Duration> = {
        let returned = returned.lock().unwrap();
        seen.iter()
            .map(|(seq, at)| at.saturating_duration_since(returned[seq]))
            .collect()
    };
    lags.sort();
    latencies.sort();
    println!(
        "postgres table, {writers} writer(s): {total} puts in {:.2} s = {:.0} puts/s; \
         put p50 {} p99 {}; feed lag p50 {} p99 {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        ms(pct(&latencies, 0.5)),
        ms(pct(&latencies, 0.99)),
        ms(pct(&lags, 0.5)),
        ms(pct(&lags, 0.99)),
    );
    let pool = gust_backends::postgres::connect(url).await.unwrap();
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        schema_name(&namespace)
    ))
    .execute(&pool)
    .await
    .unwrap();
}

fn records() -> Vec<(String, Vec<u8>, std::collections::BTreeMap<String, String>)> {
    (0..RECORDS)
        .map(|i| {
            (
                format!("device-{}", i % 64),
                vec![b'x'; 128],
                std::collections::BTreeMap::new(),
            )
        })
        .collect()
}

async fn stream_bench(url: &str, round: u32) {
    let namespace = format!("feedsbench{}r{round}", std::process::id());
    let streams = NatsStreams::connect(url, &namespace).await.unwrap();
    let s = streams
        .stream_with(
            "bench",
            StreamConfig {
                partitions: PARTITIONS,
                retention: Retention::default(),
            },
        )
        .await
        .unwrap();
    let all = records();
    let started = Instant::now();
    for chunk in all.chunks(BATCH) {
        s.append_batch(chunk.to_vec()).await.unwrap();
    }
    let append = started.elapsed();
    let started = Instant::now();
    let mut read = 0;
    for p in 0..PARTITIONS {
        let mut next = 0;
        loop {
            let got = s.read(p, next, 500).await.unwrap();
            let Some(last) = got.last() else { break };
            next = last.offset + 1;
            read += got.len();
        }
    }
    let consume = started.elapsed();
    assert_eq!(read, RECORDS);
    println!(
        "nats stream (NatsStreams): append {RECORDS} x 128 B in batches of {BATCH}: {:.0} msg/s; \
         read back: {:.0} msg/s",
        RECORDS as f64 / append.as_secs_f64(),
        RECORDS as f64 / consume.as_secs_f64(),
    );
    drop(s);
    streams.delete_stream("bench").await.unwrap();
    raw_bench(url, &namespace).await;
}

/// The same work with async-nats directly.
async fn raw_bench(url: &str, namespace: &str) {
    use async_nats::jetstream::{self, consumer, stream};
    let client = async_nats::connect(url).await.unwrap();
    let js = jetstream::new(client);
    let mut parts = Vec::new();
    for p in 0..PARTITIONS {
        let s = js
            .create_stream(stream::Config {
                name: format!("RAWBENCH_{namespace}_{p}"),
                subjects: vec![format!("rawbench.{namespace}.{p}")],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .unwrap();
        parts.push(s);
    }
    let all = records();
    let started = Instant::now();
    for chunk in all.chunks(BATCH) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (key, body, _) in chunk {
            let p = gust_backends::stream::partition_for(key, PARTITIONS);
            acks.push(
                js.publish(format!("rawbench.{namespace}.{p}"), body.clone().into())
                    .await
                    .unwrap(),
            );
        }
        for ack in acks {
            ack.await.unwrap();
        }
    }
    let append = started.elapsed();
    let started = Instant::now();
    let mut read = 0;
    for s in &parts {
        let c = s
            .create_consumer(consumer::pull::Config {
                ack_policy: consumer::AckPolicy::None,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .unwrap();
        loop {
            let mut batch = c.fetch().max_messages(500).messages().await.unwrap();
            let mut n = 0;
            while let Some(m) = batch.next().await {
                m.unwrap();
                n += 1;
            }
            if n == 0 {
                break;
            }
            read += n;
        }
    }
    let consume = started.elapsed();
    assert_eq!(read, RECORDS);
    println!(
        "nats stream (raw async-nats): append {RECORDS} x 128 B in batches of {BATCH}: {:.0} msg/s; \
         read back: {:.0} msg/s",
        RECORDS as f64 / append.as_secs_f64(),
        RECORDS as f64 / consume.as_secs_f64(),
    );
    for p in 0..PARTITIONS {
        js.delete_stream(format!("RAWBENCH_{namespace}_{p}"))
            .await
            .unwrap();
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let pg = args
        .next()
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into());
    let nats = args
        .next()
        .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
    table_bench(&pg, 1, 2_000).await;
    table_bench(&pg, 8, 500).await;
    // Twice: the first round also pays for the server's first file writes.
    for round in 0..2 {
        stream_bench(&nats, round).await;
    }
}
