//! Streams in one [redb](https://docs.rs/redb) file per app (by convention
//! `.gust/data/streams.redb`).
//!
//! # Layout
//!
//! - `stream_records`: `(stream, partition, offset)` → the encoded record
//!   (append time, key, body, metadata);
//! - `stream_partitions`: `(stream, partition)` → `(earliest, next, bytes)`,
//!   written in the same transaction as the records it describes, so offsets
//!   continue after retention emptied a partition and after a crash;
//! - `stream_config`: `stream` → partition count, written with its first
//!   append;
//! - `stream_checkpoints`: `(stream, consumer, partition)` → next offset.
//!
//! # Writes
//!
//! One writer thread owns every write and assigns offsets. It takes every
//! write waiting at that moment and applies them in one transaction (group
//! commit): concurrent producers share one fsync. Appends (and dead letters)
//! wait for a durable commit, so an append that returned survives SIGKILL.
//! Checkpoint commits and retention wait only for their commit, which
//! reaches the disk with the next durable one or at most 20 ms later: a crash
//! in that window re-delivers a few records (at least once).
//!
//! Retention runs on the partitions an append touched, on
//! [`Stream::apply_retention`], and about once a second for partitions
//! whose oldest record is past `max_age` (or that hold more than
//! `max_bytes`, e.g. after the limit was lowered).
//!
//! Readers read committed transactions on the blocking pool, and wait for
//! appends on a [`Notify`] that the writer fires after each commit.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, oneshot};

use crate::queue::check_metadata;
use crate::stream::{
    DEAD_LETTER_ATTEMPTS_KEY, DEAD_LETTER_OFFSET_KEY, DEAD_LETTER_PARTITION_KEY,
    DEAD_LETTER_REASON_KEY, PartitionOffsets, Position, Retention, Stream, StreamConfig,
    StreamProvider, StreamRecord, check_partitions, dead_letter_name, partition_for,
};
use crate::{BackendError, Result};

const RECORDS: TableDefinition<(&str, u32, u64), &[u8]> = TableDefinition::new("stream_records");
const PARTS: TableDefinition<(&str, u32), (u64, u64, u64)> =
    TableDefinition::new("stream_partitions");
const CONFIG: TableDefinition<&str, u32> = TableDefinition::new("stream_config");
const CHECKPOINTS: TableDefinition<(&str, &str, u32), u64> =
    TableDefinition::new("stream_checkpoints");
const BACKEND: &str = "embedded stream";
/// Most writes folded into one transaction.
const MAX_GROUP: usize = 1024;
/// Longest time a checkpoint or trim stays in a commit not on disk yet.
const LAZY_FLUSH: Duration = Duration::from_millis(20);
/// How often the writer looks for records past their retention.
const SWEEP: Duration = Duration::from_secs(1);

fn engine(e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, e)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn saturating_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Records

const RECORD_VERSION: u8 = 1;

/// Encodes a record: version, append time (ms), key, body, metadata.
fn encode(at_ms: u64, key: &str, body: &[u8], metadata: &BTreeMap<String, String>) -> Vec<u8> {
    let meta_len: usize = metadata.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(21 + key.len() + body.len() + meta_len);
    out.push(RECORD_VERSION);
    out.extend_from_slice(&at_ms.to_le_bytes());
    put_bytes(&mut out, key.as_bytes());
    put_bytes(&mut out, body);
    out.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    for (k, v) in metadata {
        put_bytes(&mut out, k.as_bytes());
        put_bytes(&mut out, v.as_bytes());
    }
    out
}

/// The append time of an encoded record, without decoding the rest.
fn appended_ms(bytes: &[u8]) -> u64 {
    bytes
        .get(1..9)
        .map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
}

fn decode(partition: u32, offset: u64, bytes: &[u8]) -> Result<StreamRecord> {
    let mut r = Reader(bytes);
    let version = r.u8()?;
    if version != RECORD_VERSION {
        return Err(engine(format!(
            "unknown record version {version} at partition {partition} offset {offset}"
        )));
    }
    let at_ms = r.u64()?;
    let key = r.string()?;
    let body = r.bytes()?.to_vec();
    let count = r.u32()?;
    let mut metadata = BTreeMap::new();
    for _ in 0..count {
        let k = r.string()?;
        let v = r.string()?;
        metadata.insert(k, v);
    }
    Ok(StreamRecord {
        partition,
        offset,
        key,
        body,
        metadata,
        appended_at: UNIX_EPOCH + Duration::from_millis(at_ms),
    })
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

/// Bounds-checked reader over an encoded record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(engine("truncated stream record"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    fn bytes(&mut self) -> Result<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn string(&mut self) -> Result<String> {
        String::from_utf8(self.bytes()?.to_vec())
            .map_err(|_| engine("non-UTF-8 text in stream record"))
    }
}

// ---------------------------------------------------------------------------
// Shared state

/// What the process knows of one partition (as committed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Mark {
    earliest: u64,
    next: u64,
    /// Encoded size of the records `earliest..next`.
    bytes: u64,
    /// Append time of the record at `earliest` (0 when empty).
    earliest_at_ms: u64,
}

impl Mark {
    fn is_empty(&self) -> bool {
        self.earliest >= self.next
    }

    /// Whether retention would remove the record at `earliest`.
    fn over(&self, retention: &Retention, now_ms: u64) -> bool {
        if self.is_empty() {
            return false;
        }
        let too_big = retention.max_bytes.is_some_and(|max| self.bytes > max)
            && self.next - self.earliest > 1;
        let too_old = retention
            .max_age
            .is_some_and(|age| now_ms.saturating_sub(self.earliest_at_ms) > saturating_ms(age));
        too_big || too_old
    }
}

/// One stream's shared state: the writer updates `marks` after each commit
/// and wakes `notify`.
struct Shared {
    name: Arc<str>,
    partitions: u32,
    marks: Mutex<Vec<Mark>>,
    retention: Mutex<Retention>,
    notify: Notify,
}

impl Shared {
    fn new(name: &str, partitions: u32, retention: Retention) -> Self {
        Self {
            name: name.into(),
            partitions,
            marks: Mutex::new(vec![Mark::default(); partitions as usize]),
            retention: Mutex::new(retention),
            notify: Notify::new(),
        }
    }

    fn marks(&self) -> MutexGuard<'_, Vec<Mark>> {
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn retention(&self) -> Retention {
        *self.retention.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn mark(&self, partition: u32) -> Result<Mark> {
        self.check(partition)?;
        Ok(self.marks()[partition as usize])
    }

    fn check(&self, partition: u32) -> Result<()> {
        if partition >= self.partitions {
            return Err(BackendError::InvalidValue {
                key: format!("{}/{partition}", self.name),
                reason: format!(
                    "stream `{}` has partitions 0 to {}",
                    self.name,
                    self.partitions - 1
                ),
            });
        }
        Ok(())
    }
}

type Registry = Arc<Mutex<HashMap<String, Arc<Shared>>>>;

fn lock_registry(r: &Registry) -> MutexGuard<'_, HashMap<String, Arc<Shared>>> {
    r.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Writer thread

enum Op {
    /// Records `(partition, encoded)` to append in this order.
    Append {
        stream: Arc<Shared>,
        items: Vec<(u32, Vec<u8>)>,
    },
    /// A consumer's checkpoint.
    Commit {
        stream: Arc<Shared>,
        consumer: String,
        partition: u32,
        next: u64,
    },
    /// Retention on one stream, or on every stream that needs it.
    Retain { stream: Option<Arc<Shared>> },
}

impl Op {
    /// Whether the caller must wait for this write to reach the disk.
    fn durable(&self) -> bool {
        matches!(self, Op::Append { .. })
    }
}

enum Done {
    Positions(Vec<Position>),
    Removed(u64),
    Unit,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

struct Tables<'t> {
    records: redb::Table<'t, (&'static str, u32, u64), &'static [u8]>,
    checkpoints: redb::Table<'t, (&'static str, &'static str, u32), u64>,
    config: redb::Table<'t, &'static str, u32>,
}

/// The working copy of one stream's marks within a group.
struct Working {
    shared: Arc<Shared>,
    marks: Vec<Mark>,
    /// Partitions whose mark changed.
    touched: Vec<bool>,
}

/// Working copies of the marks of the streams a group touches: published
/// only once the group committed.
#[derive(Default)]
struct Work {
    streams: BTreeMap<Arc<str>, Working>,
}

impl Work {
    /// The working marks of `s` and which partitions changed; `true` when
    /// this is the group's first write to `s`.
    fn get(&mut self, s: &Arc<Shared>) -> (&mut Vec<Mark>, &mut Vec<bool>, bool) {
        let mut new = false;
        let w = self.streams.entry(s.name.clone()).or_insert_with(|| {
            new = true;
            Working {
                shared: s.clone(),
                marks: s.marks().clone(),
                touched: vec![false; s.partitions as usize],
            }
        });
        (&mut w.marks, &mut w.touched, new)
    }
}

/// The writer thread: takes every job waiting, applies them in one
/// transaction, commits (durably when any job needs it), publishes the new
/// marks, then answers each job. Between jobs it flushes lazy commits and
/// sweeps retention.
fn write_loop(db: &Database, jobs: &mpsc::Receiver<Job>, registry: &Registry) {
    // When the oldest commit not yet on disk was made.
    let mut unflushed: Option<Instant> = None;
    let mut next_sweep = Instant::now() + SWEEP;
    loop {
        let mut deadline = next_sweep;
        if let Some(since) = unflushed {
            deadline = deadline.min(since + LAZY_FLUSH);
        }
        let first = match jobs.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if now >= next_sweep {
                    next_sweep = now + SWEEP;
                    if needs_sweep(registry) {
                        // Answered by nobody: the reply is dropped.
                        let (reply, _) = oneshot::channel();
                        run_group(
                            db,
                            vec![Job {
                                op: Op::Retain { stream: None },
                                reply,
                            }],
                            registry,
                            &mut unflushed,
                        );
                    }
                }
                if unflushed.is_some_and(|since| since.elapsed() >= LAZY_FLUSH) {
                    flush(db);
                    unflushed = None;
                }
                continue;
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        run_group(db, group, registry, &mut unflushed);
    }
    if unflushed.is_some() {
        flush(db);
    }
}

fn needs_sweep(registry: &Registry) -> bool {
    let now = now_ms();
    let streams: Vec<Arc<Shared>> = lock_registry(registry).values().cloned().collect();
    streams.iter().any(|s| {
        let retention = s.retention();
        (retention.max_age.is_some() || retention.max_bytes.is_some())
            && s.marks().iter().any(|m| m.over(&retention, now))
    })
}

fn run_group(db: &Database, group: Vec<Job>, registry: &Registry, unflushed: &mut Option<Instant>) {
    let durable = group.iter().any(|job| job.op.durable());
    let mut work = Work::default();
    match apply_group(db, &group, registry, durable, &mut work) {
        Ok(results) => {
            if durable {
                *unflushed = None;
            } else {
                unflushed.get_or_insert_with(Instant::now);
            }
            for w in work.streams.into_values() {
                *w.shared.marks() = w.marks;
                w.shared.notify.notify_waiters();
            }
            for (job, result) in group.into_iter().zip(results) {
                let _ = job.reply.send(Ok(result));
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "embedded stream commit failed");
            for job in group {
                let _ = job.reply.send(Err(engine(&e)));
            }
        }
    }
}

/// Makes every earlier non-durable commit durable.
fn flush(db: &Database) {
    let result = db
        .begin_write()
        .map_err(engine)
        .and_then(|txn| txn.commit().map_err(engine));
    if let Err(e) = result {
        tracing::error!(error = %e, "embedded stream flush failed");
    }
}

/// Applies a group in one transaction; any failure aborts all of it (and
/// `work` is then discarded).
fn apply_group(
    db: &Database,
    group: &[Job],
    registry: &Registry,
    durable: bool,
    work: &mut Work,
) -> Result<Vec<Done>> {
    let mut txn = db.begin_write().map_err(engine)?;
    if !durable {
        txn.set_durability(Durability::None).map_err(engine)?;
    }
    let mut results = Vec::with_capacity(group.len());
    let now = now_ms();
    {
        let mut t = Tables {
            records: txn.open_table(RECORDS).map_err(engine)?,
            checkpoints: txn.open_table(CHECKPOINTS).map_err(engine)?,
            config: txn.open_table(CONFIG).map_err(engine)?,
        };
        for job in group {
            results.push(apply(&mut t, &job.op, registry, now, work)?);
        }
        let mut parts = txn.open_table(PARTS).map_err(engine)?;
        for (name, w) in &work.streams {
            for (p, m) in w.marks.iter().enumerate() {
                if w.touched[p] {
                    parts
                        .insert((&**name, p as u32), (m.earliest, m.next, m.bytes))
                        .map_err(engine)?;
                }
            }
        }
    }
    txn.commit().map_err(engine)?;
    Ok(results)
}

fn apply(
    t: &mut Tables<'_>,
    op: &Op,
    registry: &Registry,
    now: u64,
    work: &mut Work,
) -> Result<Done> {
    match op {
        Op::Append { stream, items } => {
            let name = &*stream.name;
            let retention = stream.retention();
            let (marks, touched, new) = work.get(stream);
            if new {
                t.config.insert(name, stream.partitions).map_err(engine)?;
            }
            let mut positions = Vec::with_capacity(items.len());
            for (partition, bytes) in items {
                let m = &mut marks[*partition as usize];
                let offset = m.next;
                t.records
                    .insert((name, *partition, offset), bytes.as_slice())
                    .map_err(engine)?;
                if m.is_empty() {
                    m.earliest = offset;
                    m.earliest_at_ms = appended_ms(bytes);
                }
                m.next += 1;
                m.bytes += bytes.len() as u64;
                touched[*partition as usize] = true;
                positions.push(Position {
                    partition: *partition,
                    offset,
                });
            }
            for p in 0..stream.partitions {
                if touched[p as usize] {
                    trim(t, name, p, &mut marks[p as usize], &retention, now)?;
                }
            }
            Ok(Done::Positions(positions))
        }
        Op::Commit {
            stream,
            consumer,
            partition,
            next,
        } => {
            t.checkpoints
                .insert((&*stream.name, consumer.as_str(), *partition), *next)
                .map_err(engine)?;
            Ok(Done::Unit)
        }
        Op::Retain { stream } => {
            let streams = match stream {
                Some(s) => vec![s.clone()],
                None => lock_registry(registry).values().cloned().collect(),
            };
            let mut removed = 0;
            for s in &streams {
                let retention = s.retention();
                if retention == Retention::default() {
                    continue;
                }
                let (marks, touched, _) = work.get(s);
                for p in 0..s.partitions {
                    let n = trim(t, &s.name, p, &mut marks[p as usize], &retention, now)?;
                    if n > 0 {
                        touched[p as usize] = true;
                        removed += n;
                    }
                }
            }
            Ok(Done::Removed(removed))
        }
    }
}

/// Removes the oldest records of one partition while retention says so.
fn trim(
    t: &mut Tables<'_>,
    name: &str,
    partition: u32,
    m: &mut Mark,
    retention: &Retention,
    now: u64,
) -> Result<u64> {
    let mut removed = 0;
    while m.over(retention, now) {
        let len = t
            .records
            .remove((name, partition, m.earliest))
            .map_err(engine)?
            .map_or(0, |v| v.value().len() as u64);
        m.bytes = m.bytes.saturating_sub(len);
        m.earliest += 1;
        removed += 1;
        m.earliest_at_ms = if m.is_empty() {
            m.bytes = 0;
            0
        } else {
            t.records
                .get((name, partition, m.earliest))
                .map_err(engine)?
                .map_or(0, |v| appended_ms(v.value()))
        };
    }
    Ok(removed)
}

// ---------------------------------------------------------------------------
// Provider

/// The embedded stream backend: a [`StreamProvider`] over one redb file.
///
/// Cheap to clone; clones share the file. The file stays open until the
/// provider and every stream it handed out are dropped.
#[derive(Clone)]
pub struct EmbeddedStreams {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// `Some` until drop, which closes it so the writer thread ends.
    writer: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    streams: Registry,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let the writer finish what is queued, flush, and release the file,
        // so the same path can be opened again right away.
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for EmbeddedStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStreams").finish_non_exhaustive()
    }
}

impl EmbeddedStreams {
    /// Opens (or creates) the stream database file at `path`.
    ///
    /// Open a file once per process and share the provider (it is `Clone`):
    /// a second `open` of the same file fails while the first is in use.
    /// Retention is not stored in the file: give it again with
    /// [`open_stream_with`](Self::open_stream_with) after a restart.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| engine(format!("cannot create {}: {e}", parent.display())))?;
        }
        let db = super::open_database(path)
            .map_err(|e| engine(format!("cannot open {}: {e}", path.display())))?;
        {
            let txn = db.begin_write().map_err(engine)?;
            txn.open_table(RECORDS).map_err(engine)?;
            txn.open_table(PARTS).map_err(engine)?;
            txn.open_table(CONFIG).map_err(engine)?;
            txn.open_table(CHECKPOINTS).map_err(engine)?;
            txn.commit().map_err(engine)?;
        }
        let mut streams: HashMap<String, Arc<Shared>> = HashMap::new();
        {
            let txn = db.begin_read().map_err(engine)?;
            let config = txn.open_table(CONFIG).map_err(engine)?;
            for row in config.iter().map_err(engine)? {
                let (k, v) = row.map_err(engine)?;
                let (name, partitions) = (k.value(), v.value());
                check_partitions(name, partitions)?;
                streams.insert(
                    name.to_string(),
                    Arc::new(Shared::new(name, partitions, Retention::default())),
                );
            }
            let parts = txn.open_table(PARTS).map_err(engine)?;
            let records = txn.open_table(RECORDS).map_err(engine)?;
            for row in parts.iter().map_err(engine)? {
                let (k, v) = row.map_err(engine)?;
                let ((name, partition), (earliest, next, bytes)) = (k.value(), v.value());
                let Some(shared) = streams.get(name) else {
                    return Err(engine(format!(
                        "stream `{name}` has partitions but no configuration"
                    )));
                };
                if partition >= shared.partitions {
                    return Err(engine(format!(
                        "stream `{name}` has data in partition {partition} beyond its {} partitions",
                        shared.partitions
                    )));
                }
                let earliest_at_ms = if earliest < next {
                    records
                        .get((name, partition, earliest))
                        .map_err(engine)?
                        .map_or(0, |v| appended_ms(v.value()))
                } else {
                    0
                };
                shared.marks()[partition as usize] = Mark {
                    earliest,
                    next,
                    bytes,
                    earliest_at_ms,
                };
            }
        }
        let registry: Registry = Arc::new(Mutex::new(streams));
        let (writer, jobs) = mpsc::channel();
        let (thread_db, thread_registry) = (db.clone(), registry.clone());
        let thread = std::thread::Builder::new()
            .name("gust-stream-writer".into())
            .spawn(move || write_loop(&thread_db, &jobs, &thread_registry))
            .map_err(|e| engine(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                writer: Some(writer),
                thread: Some(thread),
                streams: registry,
            }),
        })
    }

    /// The stream called `name` as it is, or new with
    /// [`StreamConfig::default`] (same as [`StreamProvider::stream`],
    /// without the boxing).
    pub fn open_stream(&self, name: &str) -> Result<EmbeddedStream> {
        self.open_named(name, None)
    }

    /// The stream called `name`, created with `config` if new; its
    /// retention becomes `config.retention` (same as
    /// [`StreamProvider::stream_with`], without the boxing).
    pub fn open_stream_with(&self, name: &str, config: StreamConfig) -> Result<EmbeddedStream> {
        self.open_named(name, Some(config))
    }

    fn open_named(&self, name: &str, config: Option<StreamConfig>) -> Result<EmbeddedStream> {
        if name.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        if let Some(c) = &config {
            check_partitions(name, c.partitions)?;
        }
        let shared = self.inner.shared(name, config)?;
        Ok(EmbeddedStream {
            inner: self.inner.clone(),
            shared,
        })
    }
}

impl Inner {
    fn shared(&self, name: &str, config: Option<StreamConfig>) -> Result<Arc<Shared>> {
        let mut streams = lock_registry(&self.streams);
        if let Some(existing) = streams.get(name) {
            if let Some(c) = config {
                if c.partitions != existing.partitions {
                    return Err(BackendError::InvalidValue {
                        key: name.to_string(),
                        reason: format!(
                            "stream `{name}` has {} partitions; it cannot be opened with {} \
                             (keys would move to other partitions)",
                            existing.partitions, c.partitions
                        ),
                    });
                }
                *existing.retention.lock().unwrap_or_else(|e| e.into_inner()) = c.retention;
            }
            return Ok(existing.clone());
        }
        let c = config.unwrap_or_default();
        let shared = Arc::new(Shared::new(name, c.partitions, c.retention));
        streams.insert(name.to_string(), shared.clone());
        Ok(shared)
    }

    /// Queues a write; await the answer after releasing any lock.
    fn enqueue(&self, op: Op) -> Result<oneshot::Receiver<Result<Done>>> {
        let (reply, done) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or_else(|| engine("writer thread stopped"))?
            .send(Job { op, reply })
            .map_err(|_| engine("writer thread stopped"))?;
        Ok(done)
    }

    async fn write(&self, op: Op) -> Result<Done> {
        self.enqueue(op)?
            .await
            .map_err(|_| engine("writer thread stopped"))?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(engine)?;
            f(&txn)
        })
        .await
        .map_err(engine)?
    }
}

#[async_trait]
impl StreamProvider for EmbeddedStreams {
    async fn stream(&self, name: &str) -> Result<Arc<dyn Stream>> {
        Ok(Arc::new(self.open_stream(name)?))
    }

    async fn stream_with(&self, name: &str, config: StreamConfig) -> Result<Arc<dyn Stream>> {
        Ok(Arc::new(self.open_stream_with(name, config)?))
    }
}

/// One named stream inside an [`EmbeddedStreams`] file.
#[derive(Clone)]
pub struct EmbeddedStream {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStream")
            .field("name", &self.shared.name)
            .field("partitions", &self.shared.partitions)
            .finish_non_exhaustive()
    }
}

impl EmbeddedStream {
    async fn append_encoded(
        &self,
        stream: Arc<Shared>,
        items: Vec<(u32, Vec<u8>)>,
    ) -> Result<Vec<Position>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        match self.inner.write(Op::Append { stream, items }).await? {
            Done::Positions(p) => Ok(p),
            _ => unreachable!("append answers with positions"),
        }
    }
}

#[async_trait]
impl Stream for EmbeddedStream {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn partitions(&self) -> u32 {
        self.shared.partitions
    }

    async fn append_batch(
        &self,
        records: Vec<(String, Vec<u8>, BTreeMap<String, String>)>,
    ) -> Result<Vec<Position>> {
        for (_, _, metadata) in &records {
            check_metadata(metadata)?;
        }
        let at_ms = now_ms();
        let partitions = self.shared.partitions;
        let items = records
            .iter()
            .map(|(key, body, metadata)| {
                (
                    partition_for(key, partitions),
                    encode(at_ms, key, body, metadata),
                )
            })
            .collect();
        self.append_encoded(self.shared.clone(), items).await
    }

    async fn read(&self, partition: u32, from: u64, max: usize) -> Result<Vec<StreamRecord>> {
        let mark = self.shared.mark(partition)?;
        let from = from.max(mark.earliest);
        if max == 0 || from >= mark.next {
            return Ok(Vec::new());
        }
        let name = self.shared.name.clone();
        self.inner
            .read(move |txn| {
                let table = txn.open_table(RECORDS).map_err(engine)?;
                let mut out = Vec::with_capacity(max.min(1024));
                for row in table
                    .range((&*name, partition, from)..=(&*name, partition, u64::MAX))
                    .map_err(engine)?
                    .take(max)
                {
                    let (k, v) = row.map_err(engine)?;
                    out.push(decode(partition, k.value().2, v.value())?);
                }
                Ok(out)
            })
            .await
    }

    async fn offsets(&self, partition: u32) -> Result<PartitionOffsets> {
        let m = self.shared.mark(partition)?;
        Ok(PartitionOffsets {
            earliest: m.earliest.min(m.next),
            next: m.next,
        })
    }

    async fn wait_for_append(&self, partition: u32, from: u64, timeout: Duration) -> Result<bool> {
        self.shared.check(partition)?;
        let end = tokio::time::Instant::now().checked_add(timeout);
        loop {
            // Register for wake-ups before looking, so none is missed.
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.shared.marks()[partition as usize].next > from {
                return Ok(true);
            }
            match end {
                Some(end) => {
                    if tokio::time::Instant::now() >= end {
                        return Ok(false);
                    }
                    tokio::select! {
                        () = &mut notified => {}
                        () = tokio::time::sleep_until(end) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn checkpoint(&self, consumer: &str, partition: u32) -> Result<Option<u64>> {
        self.shared.check(partition)?;
        let (name, consumer) = (self.shared.name.clone(), consumer.to_string());
        self.inner
            .read(move |txn| {
                let table = txn.open_table(CHECKPOINTS).map_err(engine)?;
                Ok(table
                    .get((&*name, consumer.as_str(), partition))
                    .map_err(engine)?
                    .map(|v| v.value()))
            })
            .await
    }

    async fn commit(&self, consumer: &str, partition: u32, next: u64) -> Result<()> {
        let mark = self.shared.mark(partition)?;
        if next > mark.next {
            return Err(BackendError::InvalidValue {
                key: format!("{}/{partition}", self.shared.name),
                reason: format!(
                    "cannot commit offset {next} for `{consumer}`: the partition ends at {}",
                    mark.next
                ),
            });
        }
        self.inner
            .write(Op::Commit {
                stream: self.shared.clone(),
                consumer: consumer.to_string(),
                partition,
                next,
            })
            .await
            .map(drop)
    }

    async fn dead_letter(
        &self,
        record: &StreamRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<Position> {
        // Created like this stream; an existing one keeps its own settings.
        let dead = {
            let name = dead_letter_name(&self.shared.name);
            let mut streams = lock_registry(&self.inner.streams);
            streams
                .entry(name.clone())
                .or_insert_with(|| {
                    Arc::new(Shared::new(
                        &name,
                        self.shared.partitions,
                        Retention::default(),
                    ))
                })
                .clone()
        };
        let mut metadata = record.metadata.clone();
        metadata.insert(DEAD_LETTER_REASON_KEY.into(), reason.to_string());
        metadata.insert(DEAD_LETTER_ATTEMPTS_KEY.into(), attempts.to_string());
        metadata.insert(
            DEAD_LETTER_PARTITION_KEY.into(),
            record.partition.to_string(),
        );
        metadata.insert(DEAD_LETTER_OFFSET_KEY.into(), record.offset.to_string());
        let item = (
            partition_for(&record.key, dead.partitions),
            encode(now_ms(), &record.key, &record.body, &metadata),
        );
        let mut at = self.append_encoded(dead, vec![item]).await?;
        Ok(at.pop().expect("one position per record"))
    }

    async fn apply_retention(&self) -> Result<u64> {
        match self
            .inner
            .write(Op::Retain {
                stream: Some(self.shared.clone()),
            })
            .await?
        {
            Done::Removed(n) => Ok(n),
            _ => unreachable!("retention answers with a count"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let metadata = BTreeMap::from([("k".into(), "v".into()), ("e".into(), String::new())]);
        let bytes = encode(1_700_000_000_123, "device-1", b"hello", &metadata);
        assert_eq!(appended_ms(&bytes), 1_700_000_000_123);
        let r = decode(2, 7, &bytes).unwrap();
        assert_eq!(
            r,
            StreamRecord {
                partition: 2,
                offset: 7,
                key: "device-1".into(),
                body: b"hello".to_vec(),
                metadata,
                appended_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            }
        );
        assert!(decode(0, 0, &bytes[..bytes.len() - 2]).is_err());
    }

    #[test]
    fn retention_rules() {
        let m = Mark {
            earliest: 0,
            next: 2,
            bytes: 100,
            earliest_at_ms: 1000,
        };
        let by_size = Retention {
            max_bytes: Some(50),
            max_age: None,
        };
        assert!(m.over(&by_size, 1000));
        let last = Mark { earliest: 1, ..m };
        assert!(!last.over(&by_size, 1000), "the newest record stays");
        let by_age = Retention {
            max_bytes: None,
            max_age: Some(Duration::from_millis(10)),
        };
        assert!(!m.over(&by_age, 1010));
        assert!(m.over(&by_age, 1011));
        assert!(!m.over(&Retention::default(), u64::MAX));
    }
}
