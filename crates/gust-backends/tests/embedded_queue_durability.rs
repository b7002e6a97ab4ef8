//! Durability of the embedded queue: what survives closing the file, and what
//! survives SIGKILL of the process in the middle of sending.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use gust_backends::Queue;
use gust_backends::embedded::EmbeddedQueues;

const LONG: Duration = Duration::from_secs(60);
const NOW: Duration = Duration::ZERO;

async fn send(q: &dyn Queue, body: &str) -> String {
    q.send(body.as_bytes().to_vec(), BTreeMap::new())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopen_keeps_unacked_and_releases_leases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.redb");
    let first_ids;
    {
        let queues = EmbeddedQueues::open(&path).unwrap();
        let q = queues.open_queue("work").unwrap();
        first_ids = vec![
            send(&q, "acked").await,
            send(&q, "leased").await,
            send(&q, "waiting").await,
            send(&q, "delayed").await,
            send(&q, "dead").await,
        ];
        let got = q.receive(5, LONG, NOW).await.unwrap();
        assert_eq!(got.len(), 5);
        q.ack(&got[0].receipt).await.unwrap();
        // got[1] stays leased; got[2] goes back now; got[3] goes back in 60 s.
        q.nack(&got[2].receipt, NOW).await.unwrap();
        q.nack(&got[3].receipt, Duration::from_secs(60))
            .await
            .unwrap();
        q.dead_letter(&got[4].receipt, "bad input").await.unwrap();
    }
    let queues = EmbeddedQueues::open(&path).unwrap();
    let q = queues.open_queue("work").unwrap();
    assert_eq!(q.depth().await.unwrap(), 3, "leased, waiting and delayed");
    let got = q.receive(10, LONG, NOW).await.unwrap();
    let seen: Vec<(&[u8], u32)> = got
        .iter()
        .map(|d| (d.message.body.as_slice(), d.message.attempt))
        .collect();
    assert_eq!(seen, [(&b"leased"[..], 2), (&b"waiting"[..], 2)]);
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].reason.as_str(), dead[0].attempts),
        ("bad input", 1)
    );
    // Ids keep counting from where they were.
    let new_id = send(&q, "new").await;
    assert!(!first_ids.contains(&new_id));
    // The delayed one keeps its delay.
    assert_eq!(q.peek(10).await.unwrap().len(), 2, "delayed and new");
    let more = q.receive(10, LONG, NOW).await.unwrap();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].message.id, new_id);
}

/// Env var that turns the test below into the child that gets killed.
const CHILD_ENV: &str = "GUST_QUEUE_KILL_CHILD_DB";

/// Sends messages one batch at a time and prints each id once `send_batch`
/// returned (and each acked id once `ack` returned), until killed.
async fn child(path: &Path) {
    let queues = EmbeddedQueues::open(path).unwrap();
    let q = queues.open_queue("kill").unwrap();
    for i in 0.. {
        let batch = (0..10)
            .map(|j| (format!("{i}-{j}").into_bytes(), BTreeMap::new()))
            .collect();
        for id in q.send_batch(batch).await.unwrap() {
            println!("sent {id}");
        }
        // Also settle some, so the kill can land in any kind of write.
        let got = q.receive(5, LONG, NOW).await.unwrap();
        for d in &got[..got.len().min(2)] {
            q.ack(&d.receipt).await.unwrap();
            println!("acked {}", d.message.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loses_nothing_that_send_acknowledged() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(Path::new(&path)).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("queues.redb");
    let mut proc = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_loses_nothing_that_send_acknowledged",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sent = BTreeSet::new();
    let mut acked = BTreeSet::new();
    let mut lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let mut read_line = |sent: &mut BTreeSet<String>, acked: &mut BTreeSet<String>| {
        let line = lines.next().expect("child ended early").unwrap();
        if let Some(id) = line.strip_prefix("sent ") {
            sent.insert(id.to_string());
        } else if let Some(id) = line.strip_prefix("acked ") {
            acked.insert(id.to_string());
        }
    };
    while sent.len() < 300 {
        read_line(&mut sent, &mut acked);
    }
    // Acks reach the disk within 20 ms: these must stay acked.
    let acked_early = acked.clone();
    let until = std::time::Instant::now() + Duration::from_millis(150);
    while std::time::Instant::now() < until {
        read_line(&mut sent, &mut acked);
    }
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();

    let queues = EmbeddedQueues::open(&path).unwrap();
    let q = queues.open_queue("kill").unwrap();
    let mut stored = BTreeSet::new();
    loop {
        let got = q.receive(1000, LONG, NOW).await.unwrap();
        if got.is_empty() {
            break;
        }
        stored.extend(got.into_iter().map(|d| d.message.id));
    }
    let lost: Vec<_> = sent
        .iter()
        .filter(|id| !stored.contains(*id) && !acked.contains(*id))
        .collect();
    assert!(
        lost.is_empty(),
        "lost {} of {}: {lost:?}",
        lost.len(),
        sent.len()
    );
    let back: Vec<_> = stored.intersection(&acked_early).collect();
    assert!(
        back.is_empty(),
        "acked long before the kill, yet back: {back:?}"
    );
    let duplicates = stored.intersection(&acked).count();
    println!(
        "sent {}, acked {}, acked but delivered again after the kill: {duplicates}",
        sent.len(),
        acked.len()
    );
}
