//! One conformance suite for every [`StreamProvider`]: each case is an async
//! fn over a [`Backend`], which opens a provider on the same storage as
//! often as a case asks (to test what survives a reopen). It runs against
//! the embedded backend and NATS JetStream (feature `nats`, a server at
//! 127.0.0.1:4222; each case gets its own prefix, whose streams are deleted
//! after); another engine adds a `Backend` and one line per case.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gust_backends::stream::{
    DEAD_LETTER_ATTEMPTS_KEY, DEAD_LETTER_OFFSET_KEY, DEAD_LETTER_PARTITION_KEY,
    DEAD_LETTER_REASON_KEY, PartitionOffsets, Position, Retention, StreamConfig, dead_letter_name,
    partition_for,
};
use gust_backends::{BackendError, Stream, StreamProvider, StreamRecord};

/// Opens providers over one storage location.
trait Backend: Sync {
    /// A provider; the previous one (and its streams) must have been dropped
    /// before, so it sees only what was stored.
    fn open(&self) -> Arc<dyn StreamProvider>;
}

struct Embedded(tempfile::TempDir);

impl Embedded {
    fn new() -> Self {
        Self(tempfile::tempdir().unwrap())
    }
}

impl Backend for Embedded {
    fn open(&self) -> Arc<dyn StreamProvider> {
        let path = self.0.path().join(".gust/data/streams.redb");
        Arc::new(gust_backends::embedded::EmbeddedStreams::open(&path).unwrap())
    }
}

/// NATS JetStream: every provider shares one connection but starts with no
/// state of its own, so it sees only what the server stored.
#[cfg(feature = "nats")]
struct Nats {
    client: async_nats::Client,
    prefix: String,
}

#[cfg(feature = "nats")]
impl Backend for Nats {
    fn open(&self) -> Arc<dyn StreamProvider> {
        Arc::new(
            gust_backends::nats::NatsStreams::with_client(self.client.clone(), &self.prefix)
                .unwrap(),
        )
    }
}

/// Runs `case` on a fresh prefix, then deletes its streams, also when the
/// case panicked.
#[cfg(feature = "nats")]
async fn run_nats<F>(case: F)
where
    F: for<'a> FnOnce(&'a dyn Backend) -> futures::future::BoxFuture<'a, ()>,
{
    use futures::FutureExt;
    let client = async_nats::connect(nats_support::URL)
        .await
        .expect("NATS with JetStream must run at 127.0.0.1:4222");
    let b = Nats {
        client,
        prefix: nats_support::unique_prefix(),
    };
    let result = std::panic::AssertUnwindSafe(case(&b)).catch_unwind().await;
    nats_support::delete_streams(&b.prefix).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[cfg(feature = "nats")]
#[allow(dead_code)]
mod nats_support;

fn meta(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn bodies(records: &[StreamRecord]) -> Vec<String> {
    records
        .iter()
        .map(|r| String::from_utf8(r.body.clone()).unwrap())
        .collect()
}

async fn append(s: &dyn Stream, key: &str, body: &str) -> Position {
    s.append(key, body.as_bytes().to_vec(), BTreeMap::new())
        .await
        .unwrap()
}

/// Reads all of `partition` from `from`.
async fn read_all(s: &dyn Stream, partition: u32, from: u64) -> Vec<StreamRecord> {
    let mut out: Vec<StreamRecord> = Vec::new();
    let mut next = from;
    loop {
        let got = s.read(partition, next, 7).await.unwrap();
        let Some(last) = got.last() else {
            return out;
        };
        next = last.offset + 1;
        out.extend(got);
    }
}

fn config(partitions: u32, retention: Retention) -> StreamConfig {
    StreamConfig {
        partitions,
        retention,
    }
}

// ---------------------------------------------------------------------------
// Cases

async fn append_and_read_back(b: &dyn Backend) {
    let p = b.open();
    let s = p.stream("devices").await.unwrap();
    assert_eq!(s.name(), "devices");
    assert_eq!(s.partitions(), 4, "default partition count");
    let before = SystemTime::now() - Duration::from_secs(1);
    let at = s
        .append(
            "sensor-1",
            b"21.5".to_vec(),
            meta(&[("content-type", "text/plain")]),
        )
        .await
        .unwrap();
    assert_eq!(at.partition, partition_for("sensor-1", 4));
    assert_eq!(at.partition, s.partition_for("sensor-1"));
    assert_eq!(at.offset, 0);
    let got = s.read(at.partition, 0, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(
        (r.partition, r.offset, r.key.as_str(), r.body.as_slice()),
        (at.partition, 0, "sensor-1", &b"21.5"[..])
    );
    assert_eq!(r.metadata, meta(&[("content-type", "text/plain")]));
    assert!(r.appended_at >= before && r.appended_at <= SystemTime::now() + Duration::from_secs(1));
    assert_eq!(
        s.offsets(at.partition).await.unwrap(),
        PartitionOffsets {
            earliest: 0,
            next: 1
        }
    );
    // Reading past the end is empty; nothing is consumed by reading.
    assert!(s.read(at.partition, 1, 10).await.unwrap().is_empty());
    assert_eq!(s.read(at.partition, 0, 10).await.unwrap().len(), 1);
    assert!(s.read(at.partition, 0, 0).await.unwrap().is_empty());

    // Bad input is refused with a reason.
    let reserved = s.append("k", vec![], meta(&[("gust-x", "1")])).await;
    assert!(
        matches!(reserved, Err(BackendError::InvalidValue { .. })),
        "{reserved:?}"
    );
    for bad in [
        s.read(4, 0, 1).await.map(drop),
        s.offsets(9).await.map(drop),
    ] {
        assert!(
            matches!(bad, Err(BackendError::InvalidValue { .. })),
            "{bad:?}"
        );
    }
    let zero = p.stream_with("zero", config(0, Retention::default())).await;
    assert!(
        matches!(zero, Err(BackendError::InvalidValue { .. })),
        "{:?}",
        zero.err()
    );
}

async fn ordered_per_partition_and_same_key_same_partition(b: &dyn Backend) {
    let p = b.open();
    let s = p
        .stream_with("ordered", config(3, Retention::default()))
        .await
        .unwrap();
    let keys = ["a", "b", "c", "d", "e", "f", "g"];
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let mut key_partition = BTreeMap::new();
    // Concurrent producers: order holds per key as each producer awaits
    // its appends one after another.
    let mut tasks = Vec::new();
    for key in keys {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let mut at = Vec::new();
            for i in 0..20 {
                at.push(append(&*s, key, &format!("{key}{i:02}")).await);
            }
            at
        }));
    }
    for (key, task) in keys.iter().zip(tasks) {
        let at = task.await.unwrap();
        let partitions: BTreeSet<u32> = at.iter().map(|a| a.partition).collect();
        assert_eq!(partitions.len(), 1, "one partition for key {key}");
        assert_eq!(at[0].partition, partition_for(key, 3));
        assert!(at.windows(2).all(|w| w[0].offset < w[1].offset));
        key_partition.insert(*key, at[0].partition);
    }
    for key in keys {
        expected
            .entry(key_partition[key])
            .or_default()
            .extend((0..20).map(|i| format!("{key}{i:02}")));
    }
    let mut total = 0;
    for partition in 0..3 {
        let records = read_all(&*s, partition, 0).await;
        total += records.len();
        // Offsets are 0, 1, 2, ... with no gap.
        let offsets: Vec<u64> = records.iter().map(|r| r.offset).collect();
        assert_eq!(offsets, (0..records.len() as u64).collect::<Vec<_>>());
        // Each key's records are in append order.
        for key in keys.iter().filter(|k| key_partition[**k] == partition) {
            let of_key: Vec<String> = records
                .iter()
                .filter(|r| r.key == *key)
                .map(|r| String::from_utf8(r.body.clone()).unwrap())
                .collect();
            assert_eq!(
                of_key,
                (0..20).map(|i| format!("{key}{i:02}")).collect::<Vec<_>>()
            );
        }
        let mut all = bodies(&records);
        all.sort();
        let mut want = expected.get(&partition).cloned().unwrap_or_default();
        want.sort();
        assert_eq!(all, want);
    }
    assert_eq!(total, keys.len() * 20);
}

async fn batches(b: &dyn Backend) {
    let p = b.open();
    let s = p.stream("batch").await.unwrap();
    let records: Vec<_> = (0..50)
        .map(|i| {
            (
                format!("k{}", i % 5),
                format!("m{i:02}").into_bytes(),
                meta(&[("i", &i.to_string())]),
            )
        })
        .collect();
    let at = s.append_batch(records).await.unwrap();
    assert_eq!(at.len(), 50);
    let unique: BTreeSet<Position> = at.iter().copied().collect();
    assert_eq!(unique.len(), 50);
    for (i, a) in at.iter().enumerate() {
        assert_eq!(a.partition, partition_for(&format!("k{}", i % 5), 4));
    }
    // Records of one partition got consecutive offsets in the order given.
    for partition in 0..4 {
        let ours: Vec<&Position> = at.iter().filter(|a| a.partition == partition).collect();
        let offsets: Vec<u64> = ours.iter().map(|a| a.offset).collect();
        assert_eq!(offsets, (0..ours.len() as u64).collect::<Vec<_>>());
        let read = read_all(&*s, partition, 0).await;
        let want: Vec<String> = at
            .iter()
            .enumerate()
            .filter(|(_, a)| a.partition == partition)
            .map(|(i, _)| format!("m{i:02}"))
            .collect();
        assert_eq!(bodies(&read), want);
    }
    // A batch read returns at most `max`, from where it is asked.
    let first = at[0];
    let some = s.read(first.partition, 1, 3).await.unwrap();
    assert!(some.len() <= 3 && !some.is_empty());
    assert_eq!(some[0].offset, 1);
    assert!(s.append_batch(vec![]).await.unwrap().is_empty());
}

async fn checkpoints_persist_across_reopen(b: &dyn Backend) {
    {
        let p = b.open();
        let s = p.stream("cp").await.unwrap();
        for i in 0..5 {
            append(&*s, "key", &format!("r{i}")).await;
        }
        let partition = s.partition_for("key");
        assert_eq!(s.checkpoint("fn-a", partition).await.unwrap(), None);
        s.commit("fn-a", partition, 3).await.unwrap();
        s.commit("fn-b", partition, 5).await.unwrap();
        assert_eq!(s.checkpoint("fn-a", partition).await.unwrap(), Some(3));
        s.commit("fn-a", partition, 4).await.unwrap();
        // Beyond the end is refused.
        let beyond = s.commit("fn-a", partition, 6).await;
        assert!(
            matches!(beyond, Err(BackendError::InvalidValue { .. })),
            "{beyond:?}"
        );
        // Another partition has its own checkpoint.
        let other = (partition + 1) % s.partitions();
        assert_eq!(s.checkpoint("fn-a", other).await.unwrap(), None);
    }
    let p = b.open();
    let s = p.stream("cp").await.unwrap();
    let partition = s.partition_for("key");
    assert_eq!(s.checkpoint("fn-a", partition).await.unwrap(), Some(4));
    assert_eq!(s.checkpoint("fn-b", partition).await.unwrap(), Some(5));
    assert_eq!(s.checkpoint("fn-c", partition).await.unwrap(), None);
    let rest = s.read(partition, 4, 10).await.unwrap();
    assert_eq!(bodies(&rest), ["r4"]);
}

async fn reopen_keeps_data_and_offsets(b: &dyn Backend) {
    let partition;
    {
        let p = b.open();
        let s = p
            .stream_with("keep", config(2, Retention::default()))
            .await
            .unwrap();
        partition = append(&*s, "x", "one").await.partition;
        append(&*s, "x", "two").await;
    }
    let p = b.open();
    let s = p.stream("keep").await.unwrap();
    assert_eq!(s.partitions(), 2, "the partition count is stored");
    let wrong = p.stream_with("keep", config(5, Retention::default())).await;
    assert!(
        matches!(wrong, Err(BackendError::InvalidValue { .. })),
        "{:?}",
        wrong.err()
    );
    assert_eq!(
        bodies(&s.read(partition, 0, 10).await.unwrap()),
        ["one", "two"]
    );
    // Offsets continue where they were.
    assert_eq!(append(&*s, "x", "three").await.offset, 2);
}

async fn retention_by_size(b: &dyn Backend) {
    let p = b.open();
    let limit = 2_000;
    let s = p
        .stream_with(
            "sized",
            config(
                1,
                Retention {
                    max_bytes: Some(limit),
                    max_age: None,
                },
            ),
        )
        .await
        .unwrap();
    let body = "x".repeat(100);
    for _ in 0..100 {
        append(&*s, "k", &body).await;
    }
    let o = s.offsets(0).await.unwrap();
    assert_eq!(o.next, 100);
    let kept = o.next - o.earliest;
    assert!(
        (10..=20).contains(&kept),
        "about {limit} bytes of 100-byte records are kept, not {kept}"
    );
    // A read from below the earliest offset starts at the earliest.
    let got = s.read(0, 0, 1000).await.unwrap();
    assert_eq!(got.len() as u64, kept);
    assert_eq!(got[0].offset, o.earliest);
    // Removed records stay removed after a reopen.
    drop((s, p));
    let p = b.open();
    let s = p.stream("sized").await.unwrap();
    assert_eq!(s.offsets(0).await.unwrap(), o);
    // The newest record is kept, however large.
    let s = p
        .stream_with(
            "sized",
            config(
                1,
                Retention {
                    max_bytes: Some(10),
                    max_age: None,
                },
            ),
        )
        .await
        .unwrap();
    let big = append(&*s, "k", &"y".repeat(500)).await;
    let o = s.offsets(0).await.unwrap();
    assert_eq!((o.earliest, o.next), (big.offset, big.offset + 1));
}

async fn retention_by_age(b: &dyn Backend) {
    let p = b.open();
    let age = Duration::from_millis(300);
    let s = p
        .stream_with(
            "aged",
            config(
                1,
                Retention {
                    max_bytes: None,
                    max_age: Some(age),
                },
            ),
        )
        .await
        .unwrap();
    for i in 0..5 {
        append(&*s, "k", &format!("old{i}")).await;
    }
    assert_eq!(s.apply_retention().await.unwrap(), 0, "nothing is old yet");
    tokio::time::sleep(age + Duration::from_millis(100)).await;
    append(&*s, "k", "new").await;
    // Appending trimmed the old ones already.
    let o = s.offsets(0).await.unwrap();
    assert_eq!(
        o,
        PartitionOffsets {
            earliest: 5,
            next: 6
        }
    );
    assert_eq!(bodies(&s.read(0, 0, 10).await.unwrap()), ["new"]);
    tokio::time::sleep(age + Duration::from_millis(100)).await;
    // Without appends, on demand (backends also do it in the background).
    let removed = s.apply_retention().await.unwrap();
    assert!(removed <= 1, "{removed}");
    let o = s.offsets(0).await.unwrap();
    assert_eq!(
        o,
        PartitionOffsets {
            earliest: 6,
            next: 6
        }
    );
    assert!(s.read(0, 0, 10).await.unwrap().is_empty());
    // Offsets go on after the partition emptied.
    assert_eq!(append(&*s, "k", "again").await.offset, 6);
}

async fn start_from_earliest_or_latest(b: &dyn Backend) {
    let p = b.open();
    let s = p
        .stream_with("start", config(1, Retention::default()))
        .await
        .unwrap();
    assert_eq!(
        s.offsets(0).await.unwrap(),
        PartitionOffsets {
            earliest: 0,
            next: 0
        }
    );
    for i in 0..3 {
        append(&*s, "k", &format!("before{i}")).await;
    }
    let o = s.offsets(0).await.unwrap();
    let latest = o.next;
    append(&*s, "k", "after").await;
    assert_eq!(
        bodies(&read_all(&*s, 0, o.earliest).await),
        ["before0", "before1", "before2", "after"]
    );
    assert_eq!(bodies(&read_all(&*s, 0, latest).await), ["after"]);
}

async fn wait_wakes_on_append(b: &dyn Backend) {
    let p = b.open();
    let s = p
        .stream_with("wait", config(2, Retention::default()))
        .await
        .unwrap();
    let partition = s.partition_for("k");
    // Nothing there: times out.
    let started = Instant::now();
    assert!(
        !s.wait_for_append(partition, 0, Duration::from_millis(150))
            .await
            .unwrap()
    );
    assert!(started.elapsed() >= Duration::from_millis(140));
    // Woken by an append, long before the timeout.
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let woke = s
                .wait_for_append(partition, 0, Duration::from_secs(20))
                .await
                .unwrap();
            (woke, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    append(&*s, "k", "hello").await;
    let (woke, waited) = waiter.await.unwrap();
    assert!(woke);
    assert!(waited < Duration::from_secs(5), "woke late: {waited:?}");
    // Already there: returns at once.
    assert!(
        s.wait_for_append(partition, 0, Duration::from_secs(20))
            .await
            .unwrap()
    );
    // An append to another partition does not satisfy a wait on this one.
    let other_key = (0..)
        .map(|i| format!("o{i}"))
        .find(|k| s.partition_for(k) != partition)
        .unwrap();
    let waiter = {
        let s = s.clone();
        tokio::spawn(async move {
            s.wait_for_append(partition, 1, Duration::from_millis(400))
                .await
                .unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    append(&*s, &other_key, "elsewhere").await;
    assert!(!waiter.await.unwrap());
}

async fn dead_letters_keep_reason_and_origin(b: &dyn Backend) {
    let p = b.open();
    let s = p.stream("dl").await.unwrap();
    let at = s
        .append(
            "dev-9",
            b"bad".to_vec(),
            meta(&[("content-type", "text/plain")]),
        )
        .await
        .unwrap();
    let record = s.read(at.partition, at.offset, 1).await.unwrap().remove(0);
    s.dead_letter(&record, "gave up after 3 attempts: boom", 3)
        .await
        .unwrap();
    let dead = p.stream(&dead_letter_name("dl")).await.unwrap();
    assert_eq!(dead.name(), "dl-deadletter");
    let partition = dead.partition_for("dev-9");
    let got = dead.read(partition, 0, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    let d = &got[0];
    assert_eq!((d.key.as_str(), d.body.as_slice()), ("dev-9", &b"bad"[..]));
    assert_eq!(
        d.metadata.get(DEAD_LETTER_REASON_KEY).map(String::as_str),
        Some("gave up after 3 attempts: boom")
    );
    assert_eq!(
        d.metadata.get(DEAD_LETTER_ATTEMPTS_KEY).map(String::as_str),
        Some("3")
    );
    assert_eq!(
        d.metadata.get(DEAD_LETTER_PARTITION_KEY),
        Some(&at.partition.to_string())
    );
    assert_eq!(
        d.metadata.get(DEAD_LETTER_OFFSET_KEY),
        Some(&at.offset.to_string())
    );
    assert_eq!(
        d.metadata.get("content-type").map(String::as_str),
        Some("text/plain")
    );
}

// ---------------------------------------------------------------------------
// Runs

macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::$case(&super::Embedded::new()).await;
                }
            )*
        }

        #[cfg(feature = "nats")]
        mod nats {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::run_nats(|b| Box::pin(super::$case(b))).await;
                }
            )*
        }
    };
}

cases!(
    append_and_read_back,
    ordered_per_partition_and_same_key_same_partition,
    batches,
    checkpoints_persist_across_reopen,
    reopen_keeps_data_and_offsets,
    retention_by_size,
    retention_by_age,
    start_from_earliest_or_latest,
    wait_wakes_on_append,
    dead_letters_keep_reason_and_origin,
);
