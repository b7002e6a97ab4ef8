//! Durability of the embedded stream: an append that returned survives
//! SIGKILL of the process, and offsets stay dense after the restart. Plus a
//! throughput measurement (`--ignored`).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gust_backends::Stream;
use gust_backends::embedded::EmbeddedStreams;

/// Env var that turns the test below into the child that gets killed.
const CHILD_ENV: &str = "GUST_STREAM_KILL_CHILD_DB";

/// Appends from several tasks (batches and single records) and prints each
/// position once its append returned, until killed.
async fn child(path: &Path) {
    let streams = EmbeddedStreams::open(path).unwrap();
    let s = Arc::new(streams.open_stream("kill").unwrap());
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0.. {
                let key = format!("dev-{}", (t * 7 + i) % 13);
                if t % 2 == 0 {
                    let batch = (0..10)
                        .map(|j| {
                            (
                                key.clone(),
                                format!("{t}-{i}-{j}").into_bytes(),
                                BTreeMap::new(),
                            )
                        })
                        .collect();
                    for (j, at) in s.append_batch(batch).await.unwrap().into_iter().enumerate() {
                        println!("appended {} {} {t}-{i}-{j}", at.partition, at.offset);
                    }
                } else {
                    let body = format!("{t}-{i}");
                    let at = s
                        .append(&key, body.clone().into_bytes(), BTreeMap::new())
                        .await
                        .unwrap();
                    println!("appended {} {} {body}", at.partition, at.offset);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_no_acknowledged_append() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(Path::new(&path)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("streams.redb");
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_loses_no_acknowledged_append",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acked: BTreeMap<(u32, u64), String> = BTreeMap::new();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let started = Instant::now();
    while acked.len() < 2000 || started.elapsed() < Duration::from_millis(300) {
        let line = lines.next().expect("child ended early").unwrap();
        let Some(rest) = line.strip_prefix("appended ") else {
            continue;
        };
        let mut parts = rest.splitn(3, ' ');
        let p: u32 = parts.next().unwrap().parse().unwrap();
        let o: u64 = parts.next().unwrap().parse().unwrap();
        acked.insert((p, o), parts.next().unwrap().to_string());
    }
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();

    let streams = EmbeddedStreams::open(&path).unwrap();
    let s = streams.open_stream("kill").unwrap();
    let mut stored = BTreeMap::new();
    for p in 0..s.partitions() {
        let offsets = s.offsets(p).await.unwrap();
        let mut next = 0;
        loop {
            let got = s.read(p, next, 1000).await.unwrap();
            let Some(last) = got.last() else { break };
            next = last.offset + 1;
            for r in got {
                stored.insert((p, r.offset), String::from_utf8(r.body).unwrap());
            }
        }
        let kept: Vec<u64> = stored
            .keys()
            .filter(|(q, _)| *q == p)
            .map(|(_, o)| *o)
            .collect();
        assert_eq!(
            kept,
            (0..offsets.next).collect::<Vec<_>>(),
            "dense offsets in partition {p}"
        );
    }
    let lost: Vec<_> = acked
        .iter()
        .filter(|(at, body)| stored.get(*at) != Some(*body))
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} of {}: {lost:?}",
        lost.len(),
        acked.len()
    );
    let unacked: BTreeSet<_> = stored
        .keys()
        .filter(|at| !acked.contains_key(*at))
        .collect();
    println!(
        "acknowledged {}, stored {} ({} appended but not yet acknowledged when killed)",
        acked.len(),
        stored.len(),
        unacked.len()
    );
}

/// `cargo test -p gust-backends --test embedded_stream_durability -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement"]
async fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let streams = EmbeddedStreams::open(&dir.path().join("streams.redb")).unwrap();
    let s = Arc::new(streams.open_stream("bench").unwrap());
    let body = vec![b'x'; 100];

    // Many producers, one record per append: group commit shares fsyncs.
    let (producers, each) = (64, 200);
    let started = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|t| {
            let (s, body) = (s.clone(), body.clone());
            tokio::spawn(async move {
                for _ in 0..each {
                    s.append(&format!("dev-{t}"), body.clone(), BTreeMap::new())
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let n = producers * each;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "append, {producers} producers: {n} in {secs:.2}s = {:.0}/s",
        n as f64 / secs
    );

    // One producer, batches of 100.
    let started = Instant::now();
    let batches = 200;
    for b in 0..batches {
        let batch = (0..100)
            .map(|i| {
                (
                    format!("dev-{}", (b + i) % 64),
                    body.clone(),
                    BTreeMap::new(),
                )
            })
            .collect();
        s.append_batch(batch).await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "append_batch of 100: {} in {secs:.2}s = {:.0}/s",
        batches * 100,
        (batches * 100) as f64 / secs
    );

    // Reading everything back, 100 at a time.
    let started = Instant::now();
    let mut read = 0;
    for p in 0..s.partitions() {
        let mut next = 0;
        loop {
            let got = s.read(p, next, 100).await.unwrap();
            let Some(last) = got.last() else { break };
            next = last.offset + 1;
            read += got.len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "read in batches of 100: {read} in {secs:.2}s = {:.0}/s",
        read as f64 / secs
    );
}
