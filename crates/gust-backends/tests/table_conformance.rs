//! One conformance suite for every [`TableProvider`]: each case is an async
//! fn over a [`Backend`], which opens providers on one storage location (to
//! test what survives a reopen, and what another provider sees). It runs
//! against the embedded backend and PostgreSQL (feature `postgres`, a
//! server at 127.0.0.1:5432; each case gets its own schema, dropped after).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gust_backends::{Change, ChangeKind, Document, Table, TableProvider};

/// Opens providers over one storage location.
#[async_trait]
trait Backend: Send + Sync {
    /// A provider; earlier ones may have been dropped, so it sees only what
    /// was stored.
    async fn open(&self) -> Arc<dyn TableProvider>;
    /// Another provider on the same storage, alive at the same time as
    /// `first` (a second connection where the engine has them; the embedded
    /// file can only be open once per process, so there it is `first`).
    async fn peer(&self, first: &Arc<dyn TableProvider>) -> Arc<dyn TableProvider>;
    /// This backend as PostgreSQL (for its own cases).
    #[cfg(feature = "postgres")]
    fn as_postgres(&self) -> &pg::Postgres {
        panic!("not PostgreSQL")
    }
}

struct Embedded(tempfile::TempDir);

#[async_trait]
impl Backend for Embedded {
    async fn open(&self) -> Arc<dyn TableProvider> {
        let path = self.0.path().join(".gust/data/tables.redb");
        Arc::new(gust_backends::embedded::EmbeddedTables::open(&path).unwrap())
    }

    async fn peer(&self, first: &Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        first.clone()
    }
}

async fn run_embedded<F>(case: F)
where
    F: for<'a> FnOnce(&'a dyn Backend) -> futures::future::BoxFuture<'a, ()>,
{
    let b = Embedded(tempfile::tempdir().unwrap());
    case(&b).await;
}

#[cfg(feature = "postgres")]
mod pg {
    use super::*;
    use futures::FutureExt;
    use gust_backends::ChangeFeed;
    use gust_backends::postgres::{PgTables, schema_name};
    use std::panic::AssertUnwindSafe;
    use std::sync::atomic::{AtomicU64, Ordering};

    pub const URL: &str = "postgres://postgres@127.0.0.1:5432/test";

    pub struct Postgres {
        pub namespace: String,
    }

    impl Postgres {
        pub fn new() -> Self {
            static COUNTER: AtomicU64 = AtomicU64::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            Self {
                namespace: format!(
                    "tabletest_{}_{}_{}",
                    std::process::id(),
                    nanos % 1_000_000_000,
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                ),
            }
        }

        pub async fn drop_schema(&self) {
            let pool = gust_backends::postgres::connect(URL).await.unwrap();
            let schema = schema_name(&self.namespace);
            sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }

    #[async_trait]
    impl Backend for Postgres {
        async fn open(&self) -> Arc<dyn TableProvider> {
            Arc::new(
                PgTables::connect(URL, &self.namespace)
                    .await
                    .expect("PostgreSQL must run at 127.0.0.1:5432"),
            )
        }

        async fn peer(&self, _first: &Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
            self.open().await
        }

        fn as_postgres(&self) -> &Postgres {
            self
        }
    }

    /// The listening connection is killed by the server: the provider
    /// connects again and is woken by the next write as before.
    pub async fn listener_reconnects(b: &dyn Backend) {
        let b = b.as_postgres();
        let reader_tables = PgTables::connect(URL, &b.namespace).await.unwrap();
        let writer = b.open().await.open("relisten").unwrap();
        let reader = reader_tables.open_table("relisten").unwrap();
        let admin = gust_backends::postgres::connect(URL).await.unwrap();
        let killed: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE query = 'LISTEN \"' || $1 || '\"'",
        )
        .bind(reader_tables.channel())
        .fetch_all(&admin)
        .await
        .unwrap();
        assert!(!killed.is_empty(), "found the listening connections");
        // Give it time to notice and connect again (no assertion on it).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let waiter = tokio::spawn(async move {
            let started = Instant::now();
            reader.wait_for_change(0, Duration::from_secs(30)).await;
            started.elapsed()
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        writer.put("k", b"v".to_vec()).await.unwrap();
        let waited = waiter.await.unwrap();
        assert!(waited < Duration::from_secs(15), "woke late: {waited:?}");
        admin.close().await;
    }

    /// Runs `case` on a fresh schema, then drops it, also when the case
    /// panicked.
    pub async fn run<F>(case: F)
    where
        F: for<'a> FnOnce(&'a dyn Backend) -> futures::future::BoxFuture<'a, ()>,
    {
        let b = Postgres::new();
        let result = AssertUnwindSafe(case(&b)).catch_unwind().await;
        b.drop_schema().await;
        if let Err(panic) = result {
            std::panic::resume_unwind(panic);
        }
    }
}

fn text(body: &[u8]) -> String {
    String::from_utf8(body.to_vec()).unwrap()
}

fn keys(docs: &[Document]) -> Vec<String> {
    docs.iter().map(|d| d.key.clone()).collect()
}

fn summary(changes: &[Change]) -> Vec<(u64, String, ChangeKind, Option<String>)> {
    changes
        .iter()
        .map(|c| {
            (
                c.sequence,
                c.key.clone(),
                c.kind,
                c.body.as_deref().map(text),
            )
        })
        .collect()
}

/// Every change after `after`, read in pages of `page`.
async fn all_changes(t: &dyn Table, after: u64, page: usize) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    let mut after = after;
    loop {
        let got = t.changes(after, page).await.unwrap();
        let Some(last) = got.last() else {
            return out;
        };
        after = last.sequence;
        out.extend(got);
    }
}

// ---------------------------------------------------------------------------
// Cases

async fn get_put_delete(b: &dyn Backend) {
    let p = b.open().await;
    let t = p.open("contacts").unwrap();
    let other = p.open("other").unwrap();
    assert_eq!(t.get("a").await.unwrap(), None);
    assert_eq!(t.last_sequence().await.unwrap(), 0);
    let s1 = t.put("a", br#"{"name":"Ada"}"#.to_vec()).await.unwrap();
    assert_eq!(s1, 1, "sequences start at 1");
    assert_eq!(other.put("a", b"x".to_vec()).await.unwrap(), 1, "per table");
    let s2 = t.put("a", br#"{"name": "Ada L."}"#.to_vec()).await.unwrap();
    assert_eq!(s2, 2);
    let doc = t.get("a").await.unwrap().unwrap();
    assert_eq!(
        (doc.key.as_str(), doc.body.as_slice(), doc.version),
        ("a", &br#"{"name": "Ada L."}"#[..], 2),
        "the body comes back byte for byte (JSON spacing kept)"
    );
    // Bodies are arbitrary bytes.
    let binary = vec![0u8, 159, 146, 150, 255, b'{'];
    t.put("bin", binary.clone()).await.unwrap();
    assert_eq!(t.get("bin").await.unwrap().unwrap().body, binary);
    t.put("empty", Vec::new()).await.unwrap();
    assert_eq!(t.get("empty").await.unwrap().unwrap().body, b"");
    assert!(t.delete("a").await.unwrap());
    assert!(!t.delete("a").await.unwrap(), "already gone");
    assert!(!t.delete("never").await.unwrap());
    assert_eq!(t.get("a").await.unwrap(), None);
    // A delete of a missing key records nothing and spends no sequence.
    assert_eq!(t.last_sequence().await.unwrap(), 5);
    assert_eq!(t.put("z", b"1".to_vec()).await.unwrap(), 6);
    assert_eq!(text(&other.get("a").await.unwrap().unwrap().body), "x");
}

async fn scan_pages_by_prefix(b: &dyn Backend) {
    let p = b.open().await;
    let t = p.open("scan").unwrap();
    let all = [
        "user/1",
        "user/10",
        "user/2",
        "user/3",
        "user0",
        "userz",
        "video/1",
        "a",
        "user/é",
        "user/\u{10FFFF}",
    ];
    for key in all {
        t.put(key, key.as_bytes().to_vec()).await.unwrap();
    }
    let mut want: Vec<String> = all
        .iter()
        .filter(|k| k.starts_with("user/"))
        .map(|k| k.to_string())
        .collect();
    want.sort(); // byte order
    assert_eq!(keys(&t.scan("user/", None, 100).await.unwrap()), want);
    // Paging with `after`.
    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = t.scan("user/", after.as_deref(), 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some(last.key.clone());
        paged.extend(keys(&page));
    }
    assert_eq!(paged, want);
    // `after` below the prefix, or past it.
    assert_eq!(
        keys(&t.scan("user/", Some("a"), 1).await.unwrap()),
        ["user/1"]
    );
    assert!(t.scan("user/", Some("user0"), 10).await.unwrap().is_empty());
    assert!(t.scan("user/", None, 0).await.unwrap().is_empty());
    // Everything, in key order, with bodies and versions.
    let every = t.scan("", None, 100).await.unwrap();
    let mut sorted: Vec<String> = all.iter().map(|k| k.to_string()).collect();
    sorted.sort();
    assert_eq!(keys(&every), sorted);
    for d in &every {
        assert_eq!(text(&d.body), d.key);
        assert!(d.version >= 1);
    }
    assert!(t.scan("nothing", None, 10).await.unwrap().is_empty());
}

async fn feed_in_order_with_deletes(b: &dyn Backend) {
    let p = b.open().await;
    let t = p.open("feed").unwrap();
    let other = p.open("feed-other").unwrap();
    t.put("a", b"1".to_vec()).await.unwrap();
    other.put("a", b"elsewhere".to_vec()).await.unwrap();
    t.put("b", b"2".to_vec()).await.unwrap();
    t.put("a", b"3".to_vec()).await.unwrap();
    assert!(t.delete("b").await.unwrap());
    assert!(!t.delete("missing").await.unwrap());
    t.put("b", b"4".to_vec()).await.unwrap();
    let changes = t.changes(0, 100).await.unwrap();
    let s = |x: &str| Some(x.to_string());
    assert_eq!(
        summary(&changes),
        vec![
            (1, "a".into(), ChangeKind::Upsert, s("1")),
            (2, "b".into(), ChangeKind::Upsert, s("2")),
            (3, "a".into(), ChangeKind::Upsert, s("3")),
            (4, "b".into(), ChangeKind::Delete, None),
            (5, "b".into(), ChangeKind::Upsert, s("4")),
        ]
    );
    let now = std::time::SystemTime::now();
    for c in &changes {
        let age = now.duration_since(c.at).unwrap_or_default();
        assert!(age < Duration::from_secs(60), "change time {:?}", c.at);
    }
    assert_eq!(t.last_sequence().await.unwrap(), 5);
    assert_eq!(summary(&t.changes(2, 1).await.unwrap())[0].0, 3);
    assert!(t.changes(5, 10).await.unwrap().is_empty());
    assert!(t.changes(0, 0).await.unwrap().is_empty());
    assert_eq!(other.changes(0, 10).await.unwrap().len(), 1);
    assert_eq!(t.get("b").await.unwrap().unwrap().version, 5);
}

async fn resume_from_a_sequence(b: &dyn Backend) {
    let seen;
    {
        let p = b.open().await;
        let t = p.open("resume").unwrap();
        for i in 0..10 {
            t.put(&format!("k{}", i % 3), format!("v{i}").into_bytes())
                .await
                .unwrap();
        }
        // A reader takes the first four, then stops.
        seen = t.changes(0, 4).await.unwrap();
        assert_eq!(seen.len(), 4);
    }
    let p = b.open().await;
    let t = p.open("resume").unwrap();
    t.put("k9", b"v10".to_vec()).await.unwrap();
    let rest = all_changes(&*t, seen.last().unwrap().sequence, 3).await;
    let mut all = seen.clone();
    all.extend(rest);
    let seqs: Vec<u64> = all.iter().map(|c| c.sequence).collect();
    assert_eq!(seqs, (1..=11).collect::<Vec<_>>());
    assert_eq!(summary(&all), summary(&t.changes(0, 100).await.unwrap()));
    assert_eq!(text(all[10].body.as_deref().unwrap()), "v10");
}

async fn wait_wakes_on_a_write_from_another_provider(b: &dyn Backend) {
    let p = b.open().await;
    let q = b.peer(&p).await;
    let reader = p.open("wake").unwrap();
    let writer = q.open("wake").unwrap();
    // Nothing there: times out.
    let started = Instant::now();
    reader.wait_for_change(0, Duration::from_millis(150)).await;
    assert!(started.elapsed() >= Duration::from_millis(140));
    // Woken by the other provider's write long before the timeout.
    let waiter = {
        let reader = reader.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            reader.wait_for_change(0, Duration::from_secs(20)).await;
            (started.elapsed(), reader.last_sequence().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    writer.put("k", b"v".to_vec()).await.unwrap();
    let (waited, last) = waiter.await.unwrap();
    assert_eq!(last, 1);
    assert!(waited < Duration::from_secs(10), "woke late: {waited:?}");
    // Already there: returns at once.
    let started = Instant::now();
    reader.wait_for_change(0, Duration::from_secs(20)).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    // A write to another table does not count.
    let elsewhere = q.open("wake-other").unwrap();
    let waiter = {
        let reader = reader.clone();
        tokio::spawn(async move {
            reader.wait_for_change(1, Duration::from_millis(400)).await;
            reader.last_sequence().await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    elsewhere.put("k", b"v".to_vec()).await.unwrap();
    assert_eq!(waiter.await.unwrap(), 1);
    // A delete wakes too.
    let waiter = {
        let reader = reader.clone();
        tokio::spawn(async move {
            reader.wait_for_change(1, Duration::from_secs(20)).await;
            reader.changes(1, 10).await.unwrap()
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(writer.delete("k").await.unwrap());
    let got = waiter.await.unwrap();
    assert_eq!(
        summary(&got),
        vec![(2, "k".into(), ChangeKind::Delete, None)]
    );
}

/// 8 writers at once while a reader follows the feed: every batch the
/// reader gets continues exactly where the previous one ended (no sequence
/// appears later below one already seen), and in the end the feed holds
/// every write once, each key's writes in the order they were made.
async fn concurrent_writers_leave_no_gap_a_reader_could_see(b: &dyn Backend) {
    const WRITERS: usize = 8;
    const WRITES: usize = 40;
    let p = b.open().await;
    let q = b.peer(&p).await;
    let t = p.open("busy").unwrap();
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let t = q.open("busy").unwrap();
        let finished = finished.clone();
        tokio::spawn(async move {
            let mut seen: Vec<Change> = Vec::new();
            let mut after = 0;
            loop {
                let last_round = finished.load(std::sync::atomic::Ordering::SeqCst);
                let got = t.changes(after, 7).await.unwrap();
                for c in &got {
                    assert_eq!(
                        c.sequence,
                        after + 1,
                        "the feed skipped from {after} to {}",
                        c.sequence
                    );
                    after = c.sequence;
                }
                let empty = got.is_empty();
                seen.extend(got);
                if empty {
                    if last_round {
                        return seen;
                    }
                    t.wait_for_change(after, Duration::from_millis(50)).await;
                }
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let t = t.clone();
        writers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            for i in 0..WRITES {
                // Own keys (order checked) and one shared key (contended).
                let key = format!("w{w}-{}", i % 3);
                if i % 5 == 4 {
                    if t.delete(&key).await.unwrap() {
                        mine.push((key, None));
                    }
                } else {
                    let body = format!("{w}:{i}");
                    let seq = t.put(&key, body.clone().into_bytes()).await.unwrap();
                    assert!(seq >= 1);
                    mine.push((key, Some(body)));
                }
                t.put("shared", format!("{w}:{i}").into_bytes())
                    .await
                    .unwrap();
            }
            mine
        }));
    }
    let mut expected: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    let mut total = 0;
    for w in writers {
        for (key, body) in w.await.unwrap() {
            expected.entry(key).or_default().push(body);
            total += 1;
        }
        total += WRITES; // the shared key
    }
    finished.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert_eq!(seen.len(), total, "every write is in the feed once");
    let seqs: Vec<u64> = seen.iter().map(|c| c.sequence).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
    assert_eq!(t.last_sequence().await.unwrap(), total as u64);
    let mut per_key: BTreeMap<String, Vec<Option<String>>> = BTreeMap::new();
    for c in &seen {
        if c.key != "shared" {
            per_key
                .entry(c.key.clone())
                .or_default()
                .push(c.body.as_deref().map(text));
        }
    }
    assert_eq!(per_key, expected, "each key's changes in write order");
    // Each writer's shared-key writes are in its own order too.
    for w in 0..WRITERS {
        let mine: Vec<usize> = seen
            .iter()
            .filter(|c| c.key == "shared")
            .filter_map(|c| {
                let body = text(c.body.as_deref().unwrap());
                let (who, i) = body.split_once(':').unwrap();
                (who == w.to_string()).then(|| i.parse().unwrap())
            })
            .collect();
        assert_eq!(mine, (0..WRITES).collect::<Vec<_>>());
    }
    // The documents are the last writes.
    let docs = t.scan("", None, 1000).await.unwrap();
    let live: BTreeSet<String> = expected
        .iter()
        .filter(|(_, writes)| writes.last().is_some_and(Option::is_some))
        .map(|(k, _)| k.clone())
        .chain(["shared".to_string()])
        .collect();
    assert_eq!(keys(&docs).into_iter().collect::<BTreeSet<_>>(), live);
}

async fn survives_reopen(b: &dyn Backend) {
    {
        let p = b.open().await;
        let t = p.open("durable").unwrap();
        t.put("a", b"1".to_vec()).await.unwrap();
        t.put("b", b"2".to_vec()).await.unwrap();
        assert!(t.delete("a").await.unwrap());
    }
    let p = b.open().await;
    let t = p.open("durable").unwrap();
    assert_eq!(t.last_sequence().await.unwrap(), 3);
    assert_eq!(t.get("a").await.unwrap(), None);
    let doc = t.get("b").await.unwrap().unwrap();
    assert_eq!((doc.body.as_slice(), doc.version), (&b"2"[..], 2));
    assert_eq!(t.changes(0, 10).await.unwrap().len(), 3);
    assert_eq!(
        t.put("c", b"3".to_vec()).await.unwrap(),
        4,
        "sequences go on"
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
                    super::run_embedded(|b| Box::pin(super::$case(b))).await;
                }
            )*
        }

        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::pg::run(|b| Box::pin(super::$case(b))).await;
                }
            )*
        }
    };
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_listener_reconnects() {
    pg::run(|b| Box::pin(pg::listener_reconnects(b))).await;
}

cases!(
    get_put_delete,
    scan_pages_by_prefix,
    feed_in_order_with_deletes,
    resume_from_a_sequence,
    wait_wakes_on_a_write_from_another_provider,
    concurrent_writers_leave_no_gap_a_reader_could_see,
    survives_reopen,
);
