//! Work queues in one [redb](https://docs.rs/redb) file per app.
//!
//! # Layout
//!
//! Every queue of the file shares two tables keyed by `(queue, seq)`, where
//! `seq` comes from one counter for the whole file (so a receipt of one queue
//! can never match a message of another, and redriven messages go to the
//! back):
//!
//! - `queue_messages`: the immutable record (id, body, metadata, enqueue
//!   time, and for dead letters the reason, attempts and time);
//! - `queue_states`: `(attempt, visible_at_ms)`: deliveries so far, and the
//!   wall-clock time before which a nacked message stays hidden.
//!
//! Leases live in memory only: after a restart nobody holds one, so every
//! message that was leased but not acked is waiting again at once. The
//! attempt count is written (durably) before a delivery is handed out, so it
//! survives a crash even when the message is what crashed the process.
//!
//! # Concurrency
//!
//! Each queue has an in-memory index (ready set in `seq` order, deadlines of
//! leases and delays) behind a mutex that is never held across an await.
//! Writes go to one writer thread that applies every write waiting at that
//! moment in a single durable transaction (group commit), like the embedded
//! key-value store. A write is queued while the index lock is held, so the
//! order of writes for one message follows the order of its state changes.
//!
//! Sends, leases, dead-lettering and redrive wait for a durable commit.
//! Acks and nacks wait only for their commit, which reaches the disk with the
//! next durable one or at most 20 ms later: a crash in that window delivers
//! those messages once more, and a consumer that acks one delivery after
//! another does not pay an fsync per ack.
//!
//! Receipts are `<seq>.<attempt>`: every delivery increments the attempt, so a
//! receipt of an earlier delivery never matches the current one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

use crate::queue::{DEAD_LETTER_ATTEMPTS_KEY, DEAD_LETTER_REASON_KEY, check_metadata};
use crate::{
    BackendError, DeadLetter, Delivery, Message, Queue, QueueProvider, Receipt, Result,
    queue::dead_letter_name,
};

const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("queue_messages");
const STATES: TableDefinition<(&str, u64), (u32, u64)> = TableDefinition::new("queue_states");
const META: TableDefinition<&str, u64> = TableDefinition::new("queue_meta");
const NEXT_SEQ: &str = "next_seq";
const BACKEND: &str = "embedded queue";
/// Most writes folded into one transaction.
const MAX_GROUP: usize = 1024;
/// Longest time an ack or nack stays in a commit that is not on disk yet.
const LAZY_FLUSH: Duration = Duration::from_millis(20);

fn engine(e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, e)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn from_ms(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

/// `now + d`, or about a century from now when that does not fit.
fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

fn saturating_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

// ---------------------------------------------------------------------------
// Records

/// Why and when a message was dead-lettered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeadInfo {
    reason: String,
    attempts: u32,
    at_ms: u64,
}

/// A message as stored in `queue_messages`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    id: String,
    body: Vec<u8>,
    metadata: BTreeMap<String, String>,
    enqueued_at_ms: u64,
    dead: Option<DeadInfo>,
}

const RECORD_VERSION: u8 = 1;

impl Record {
    fn encode(&self) -> Vec<u8> {
        let meta_len: usize = self
            .metadata
            .iter()
            .map(|(k, v)| 8 + k.len() + v.len())
            .sum();
        let mut out = Vec::with_capacity(32 + self.id.len() + self.body.len() + meta_len);
        out.push(RECORD_VERSION);
        out.extend_from_slice(&self.enqueued_at_ms.to_le_bytes());
        put_bytes(&mut out, self.id.as_bytes());
        put_bytes(&mut out, &self.body);
        out.extend_from_slice(&(self.metadata.len() as u32).to_le_bytes());
        for (k, v) in &self.metadata {
            put_bytes(&mut out, k.as_bytes());
            put_bytes(&mut out, v.as_bytes());
        }
        match &self.dead {
            None => out.push(0),
            Some(d) => {
                out.push(1);
                out.extend_from_slice(&d.attempts.to_le_bytes());
                out.extend_from_slice(&d.at_ms.to_le_bytes());
                put_bytes(&mut out, d.reason.as_bytes());
            }
        }
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader(bytes);
        let version = r.u8()?;
        if version != RECORD_VERSION {
            return Err(engine(format!("unknown record version {version}")));
        }
        let enqueued_at_ms = r.u64()?;
        let id = r.string()?;
        let body = r.bytes()?.to_vec();
        let count = r.u32()?;
        let mut metadata = BTreeMap::new();
        for _ in 0..count {
            let k = r.string()?;
            let v = r.string()?;
            metadata.insert(k, v);
        }
        let dead = match r.u8()? {
            0 => None,
            _ => {
                let attempts = r.u32()?;
                let at_ms = r.u64()?;
                let reason = r.string()?;
                Some(DeadInfo {
                    reason,
                    attempts,
                    at_ms,
                })
            }
        };
        Ok(Self {
            id,
            body,
            metadata,
            enqueued_at_ms,
            dead,
        })
    }

    /// The message as a consumer sees it: a dead letter's reason and
    /// attempts show up in its metadata.
    fn into_message(self, attempt: u32) -> Message {
        let mut metadata = self.metadata;
        if let Some(dead) = &self.dead {
            metadata.insert(DEAD_LETTER_REASON_KEY.into(), dead.reason.clone());
            metadata.insert(DEAD_LETTER_ATTEMPTS_KEY.into(), dead.attempts.to_string());
        }
        Message {
            id: self.id,
            body: self.body,
            metadata,
            enqueued_at: from_ms(self.enqueued_at_ms),
            attempt,
        }
    }

    fn into_dead_letter(self) -> DeadLetter {
        let dead = self.dead.unwrap_or(DeadInfo {
            reason: String::new(),
            attempts: 0,
            at_ms: self.enqueued_at_ms,
        });
        DeadLetter {
            message: Message {
                id: self.id,
                body: self.body,
                metadata: self.metadata,
                enqueued_at: from_ms(self.enqueued_at_ms),
                attempt: dead.attempts,
            },
            reason: dead.reason,
            attempts: dead.attempts,
            dead_lettered_at: from_ms(dead.at_ms),
        }
    }
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
            return Err(engine("truncated message record"));
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
        String::from_utf8(self.bytes()?.to_vec()).map_err(|_| engine("non-UTF-8 text in record"))
    }
}

// ---------------------------------------------------------------------------
// Writer thread

enum Op {
    /// New messages: `(seq, encoded record)`, waiting with attempt 0.
    Insert {
        queue: Arc<str>,
        items: Vec<(u64, Vec<u8>)>,
    },
    /// Deliveries: store each new attempt and return the records.
    Lease {
        queue: Arc<str>,
        items: Vec<(u64, u32)>,
    },
    /// A nack: the attempt so far and when the message shows again.
    SetState {
        queue: Arc<str>,
        seq: u64,
        attempt: u32,
        visible_at_ms: u64,
    },
    /// Acks.
    Remove { queue: Arc<str>, seqs: Vec<u64> },
    /// Dead-letter (`dead` set) or redrive (`dead` cleared): moves
    /// `(old seq, new seq)` from one queue to another with attempt 0.
    Move {
        from: Arc<str>,
        to: Arc<str>,
        moves: Vec<(u64, u64)>,
        dead: Option<DeadInfo>,
    },
}

enum Done {
    Unit,
    Records(Vec<Option<Vec<u8>>>),
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Done>>,
}

impl Op {
    /// Whether the caller must wait for this write to reach the disk.
    ///
    /// Acks and nacks need not: losing one in a crash means a message is
    /// delivered once more (at-least-once allows that; attempts were stored
    /// when it was leased), and not waiting for an fsync each makes a
    /// consumer that settles one delivery after another fast.
    fn durable(&self) -> bool {
        !matches!(self, Op::Remove { .. } | Op::SetState { .. })
    }
}

/// The writer thread: takes every job waiting, applies them in one
/// transaction, commits (durably when any job needs it), then answers each.
/// Non-durable commits reach the disk with the next durable one, at most
/// [`LAZY_FLUSH`] later.
fn write_loop(db: &Database, jobs: &mpsc::Receiver<Job>, mut next_seq: u64) {
    // When the oldest commit not yet on disk was made.
    let mut unflushed: Option<std::time::Instant> = None;
    loop {
        let first = match unflushed {
            None => match jobs.recv() {
                Ok(job) => job,
                Err(_) => break,
            },
            Some(since) => {
                let left = LAZY_FLUSH.saturating_sub(since.elapsed());
                match jobs.recv_timeout(left) {
                    Ok(job) => job,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        flush(db);
                        unflushed = None;
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        let durable = group.iter().any(|job| job.op.durable());
        match apply_group(db, &group, &mut next_seq, durable) {
            Ok(results) => {
                if durable {
                    unflushed = None;
                } else {
                    unflushed.get_or_insert_with(std::time::Instant::now);
                }
                for (job, result) in group.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "embedded queue commit failed");
                for job in group {
                    let _ = job.reply.send(Err(engine(&e)));
                }
            }
        }
    }
    if unflushed.is_some() {
        flush(db);
    }
}

/// Makes every earlier non-durable commit durable.
fn flush(db: &Database) {
    let result = db
        .begin_write()
        .map_err(engine)
        .and_then(|txn| txn.commit().map_err(engine));
    if let Err(e) = result {
        tracing::error!(error = %e, "embedded queue flush failed");
    }
}

struct Tables<'t> {
    messages: redb::Table<'t, (&'static str, u64), &'static [u8]>,
    states: redb::Table<'t, (&'static str, u64), (u32, u64)>,
}

fn apply_group(
    db: &Database,
    group: &[Job],
    next_seq: &mut u64,
    durable: bool,
) -> Result<Vec<Result<Done>>> {
    let mut txn = db.begin_write().map_err(engine)?;
    if !durable {
        txn.set_durability(Durability::None).map_err(engine)?;
    }
    let mut results = Vec::with_capacity(group.len());
    let before = *next_seq;
    {
        let mut t = Tables {
            messages: txn.open_table(MESSAGES).map_err(engine)?,
            states: txn.open_table(STATES).map_err(engine)?,
        };
        for job in group {
            results.push(apply(&mut t, &job.op, next_seq));
        }
        if *next_seq != before {
            let mut meta = txn.open_table(META).map_err(engine)?;
            meta.insert(NEXT_SEQ, *next_seq).map_err(engine)?;
        }
    }
    txn.commit().map_err(engine)?;
    Ok(results)
}

fn apply(t: &mut Tables<'_>, op: &Op, next_seq: &mut u64) -> Result<Done> {
    match op {
        Op::Insert { queue, items } => {
            for (seq, record) in items {
                t.messages
                    .insert((&**queue, *seq), record.as_slice())
                    .map_err(engine)?;
                t.states.insert((&**queue, *seq), (0, 0)).map_err(engine)?;
                *next_seq = (*next_seq).max(seq + 1);
            }
            Ok(Done::Unit)
        }
        Op::Lease { queue, items } => {
            let mut records = Vec::with_capacity(items.len());
            for (seq, attempt) in items {
                let record = t
                    .messages
                    .get((&**queue, *seq))
                    .map_err(engine)?
                    .map(|v| v.value().to_vec());
                if record.is_some() {
                    t.states
                        .insert((&**queue, *seq), (*attempt, 0))
                        .map_err(engine)?;
                }
                records.push(record);
            }
            Ok(Done::Records(records))
        }
        Op::SetState {
            queue,
            seq,
            attempt,
            visible_at_ms,
        } => {
            let exists = t.states.get((&**queue, *seq)).map_err(engine)?.is_some();
            if exists {
                t.states
                    .insert((&**queue, *seq), (*attempt, *visible_at_ms))
                    .map_err(engine)?;
            }
            Ok(Done::Unit)
        }
        Op::Remove { queue, seqs } => {
            for seq in seqs {
                t.messages.remove((&**queue, *seq)).map_err(engine)?;
                t.states.remove((&**queue, *seq)).map_err(engine)?;
            }
            Ok(Done::Unit)
        }
        Op::Move {
            from,
            to,
            moves,
            dead,
        } => {
            for (old, new) in moves {
                let Some(bytes) = t
                    .messages
                    .remove((&**from, *old))
                    .map_err(engine)?
                    .map(|v| v.value().to_vec())
                else {
                    continue;
                };
                t.states.remove((&**from, *old)).map_err(engine)?;
                let mut record = Record::decode(&bytes)?;
                record.dead = dead.clone();
                t.messages
                    .insert((&**to, *new), record.encode().as_slice())
                    .map_err(engine)?;
                t.states.insert((&**to, *new), (0, 0)).map_err(engine)?;
                *next_seq = (*next_seq).max(new + 1);
            }
            Ok(Done::Unit)
        }
    }
}

// ---------------------------------------------------------------------------
// In-memory index

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting; `lease_expired` when its last delivery ran out of time, in
    /// which case that delivery's receipt still works until the next one.
    Ready { lease_expired: bool },
    /// Nacked with a delay: hidden until then.
    Delayed(Instant),
    /// Leased until then.
    Leased(Instant),
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    attempt: u32,
    state: State,
}

/// One queue's messages as the process sees them.
#[derive(Default)]
struct Index {
    entries: HashMap<u64, Entry>,
    /// Waiting messages in `seq` order.
    ready: BTreeSet<u64>,
    /// Delayed and leased messages by deadline.
    timed: BTreeSet<(Instant, u64)>,
    leased: usize,
}

impl Index {
    fn insert(&mut self, seq: u64, entry: Entry) {
        if let Some(old) = self.entries.insert(seq, entry) {
            self.unlink(seq, old.state);
        }
        self.link(seq, entry.state);
    }

    fn remove(&mut self, seq: u64) -> Option<Entry> {
        let entry = self.entries.remove(&seq)?;
        self.unlink(seq, entry.state);
        Some(entry)
    }

    fn set(&mut self, seq: u64, attempt: u32, state: State) {
        self.insert(seq, Entry { attempt, state });
    }

    fn link(&mut self, seq: u64, state: State) {
        match state {
            State::Ready { .. } => {
                self.ready.insert(seq);
            }
            State::Delayed(at) => {
                self.timed.insert((at, seq));
            }
            State::Leased(at) => {
                self.timed.insert((at, seq));
                self.leased += 1;
            }
        }
    }

    fn unlink(&mut self, seq: u64, state: State) {
        match state {
            State::Ready { .. } => {
                self.ready.remove(&seq);
            }
            State::Delayed(at) => {
                self.timed.remove(&(at, seq));
            }
            State::Leased(at) => {
                self.timed.remove(&(at, seq));
                self.leased -= 1;
            }
        }
    }

    /// Makes every delay and lease that ran out by `now` waiting again.
    fn promote(&mut self, now: Instant) {
        while let Some(&(at, seq)) = self.timed.first() {
            if at > now {
                break;
            }
            let entry = self.entries[&seq];
            let lease_expired = matches!(entry.state, State::Leased(_));
            self.set(seq, entry.attempt, State::Ready { lease_expired });
        }
    }

    /// The lease of receipt `(seq, attempt)`, if it is still live.
    fn live(&self, seq: u64, attempt: u32, receipt: &Receipt) -> Result<Entry> {
        match self.entries.get(&seq) {
            Some(e)
                if e.attempt == attempt
                    && matches!(
                        e.state,
                        State::Leased(_)
                            | State::Ready {
                                lease_expired: true
                            }
                    ) =>
            {
                Ok(*e)
            }
            _ => Err(BackendError::StaleReceipt(receipt.0.clone())),
        }
    }
}

/// One queue's shared state.
struct Shared {
    name: Arc<str>,
    index: Mutex<Index>,
    /// Woken by anything that may make a message available or move the
    /// earliest deadline: sends, nacks, leases, redrives.
    notify: Notify,
}

impl Shared {
    fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            index: Mutex::new(Index::default()),
            notify: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn parse_receipt(receipt: &Receipt) -> Result<(u64, u32)> {
    receipt
        .0
        .split_once('.')
        .and_then(|(s, a)| Some((s.parse().ok()?, a.parse().ok()?)))
        .ok_or_else(|| BackendError::InvalidValue {
            key: receipt.0.clone(),
            reason: "not a receipt of the embedded queue".into(),
        })
}

fn receipt(seq: u64, attempt: u32) -> Receipt {
    Receipt(format!("{seq}.{attempt}"))
}

fn message_id(seq: u64) -> String {
    format!("{seq:016x}")
}

// ---------------------------------------------------------------------------
// Provider

/// The embedded queue backend: a [`QueueProvider`] over one redb file.
///
/// Cheap to clone; clones share the file. The file stays open until the
/// provider and every queue it handed out are dropped.
#[derive(Clone)]
pub struct EmbeddedQueues {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<Database>,
    /// `Some` until drop, which closes it so the writer thread ends.
    writer: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    queues: Mutex<HashMap<String, Arc<Shared>>>,
    next_seq: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Let the writer finish what is queued and release the file, so the
        // same path can be opened again right away.
        self.writer.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl std::fmt::Debug for EmbeddedQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueues").finish_non_exhaustive()
    }
}

impl EmbeddedQueues {
    /// Opens (or creates) the queue database file at `path`.
    ///
    /// Every message that was leased when the file was last closed (or the
    /// process died) is waiting again; nacked messages keep their delay.
    /// Open a file once per process and share the provider (it is `Clone`):
    /// a second `open` of the same file fails while the first is in use.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(engine)?;
        }
        let db = super::open_database(path)
            .map_err(|e| engine(format!("cannot open {}: {e}", path.display())))?;
        let mut next_seq = 1;
        {
            let txn = db.begin_write().map_err(engine)?;
            txn.open_table(MESSAGES).map_err(engine)?;
            txn.open_table(STATES).map_err(engine)?;
            let meta = txn.open_table(META).map_err(engine)?;
            if let Some(v) = meta.get(NEXT_SEQ).map_err(engine)? {
                next_seq = v.value();
            }
            drop(meta);
            txn.commit().map_err(engine)?;
        }
        let mut queues: HashMap<String, Arc<Shared>> = HashMap::new();
        {
            let txn = db.begin_read().map_err(engine)?;
            let states = txn.open_table(STATES).map_err(engine)?;
            let (now, now_ms) = (Instant::now(), now_ms());
            for row in states.iter().map_err(engine)? {
                let (k, v) = row.map_err(engine)?;
                let ((queue, seq), (attempt, visible_at_ms)) = (k.value(), v.value());
                if !queues.contains_key(queue) {
                    queues.insert(queue.to_string(), Arc::new(Shared::new(queue)));
                }
                let state = if visible_at_ms > now_ms {
                    State::Delayed(after(now, Duration::from_millis(visible_at_ms - now_ms)))
                } else {
                    State::Ready {
                        lease_expired: false,
                    }
                };
                queues[queue].lock().set(seq, attempt, state);
                next_seq = next_seq.max(seq + 1);
            }
        }
        let (writer, jobs) = mpsc::channel();
        let thread_db = db.clone();
        let thread = std::thread::Builder::new()
            .name("gust-queue-writer".into())
            .spawn(move || write_loop(&thread_db, &jobs, next_seq))
            .map_err(engine)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                writer: Some(writer),
                thread: Some(thread),
                queues: Mutex::new(queues),
                next_seq: AtomicU64::new(next_seq),
            }),
        })
    }

    /// The database file, for tables that live beside the queues (topic
    /// subscriptions).
    pub(crate) fn database(&self) -> Arc<Database> {
        self.inner.db.clone()
    }

    /// The queue called `name` (same as [`QueueProvider::queue`], without
    /// the boxing).
    pub fn open_queue(&self, name: &str) -> Result<EmbeddedQueue> {
        if name.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        Ok(EmbeddedQueue {
            inner: self.inner.clone(),
            shared: self.inner.shared(name),
            dead: self.inner.shared(&dead_letter_name(name)),
        })
    }
}

impl Inner {
    fn shared(&self, name: &str) -> Arc<Shared> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(Shared::new(name)))
            .clone()
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

    fn seqs(&self, n: usize) -> u64 {
        self.next_seq.fetch_add(n as u64, Ordering::Relaxed)
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadOnlyTable<(&'static str, u64), &'static [u8]>) -> Result<T>
        + Send
        + 'static,
    ) -> Result<T> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(engine)?;
            let table = txn.open_table(MESSAGES).map_err(engine)?;
            f(&table)
        })
        .await
        .map_err(engine)?
    }
}

async fn wait(done: oneshot::Receiver<Result<Done>>) -> Result<Done> {
    done.await.map_err(|_| engine("writer thread stopped"))?
}

#[async_trait]
impl QueueProvider for EmbeddedQueues {
    async fn queue(&self, name: &str) -> Result<Arc<dyn Queue>> {
        Ok(Arc::new(self.open_queue(name)?))
    }
}

/// One named queue inside an [`EmbeddedQueues`] file.
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
    /// This queue's dead-letter queue.
    dead: Arc<Shared>,
}

impl std::fmt::Debug for EmbeddedQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedQueue")
            .field("name", &self.shared.name)
            .finish_non_exhaustive()
    }
}

impl EmbeddedQueue {
    /// Removes every message of the queue, leased or waiting (its dead
    /// letters stay), and returns how many went.
    pub(crate) async fn purge(&self) -> Result<u64> {
        let seqs: Vec<u64> = {
            let mut idx = self.shared.lock();
            let seqs: Vec<u64> = idx.entries.keys().copied().collect();
            for seq in &seqs {
                idx.remove(*seq);
            }
            seqs
        };
        let n = seqs.len() as u64;
        if n > 0 {
            let done = self.inner.enqueue(Op::Remove {
                queue: self.shared.name.clone(),
                seqs,
            })?;
            wait(done).await?;
        }
        Ok(n)
    }

    /// After a settle whose commit failed: the message is still stored, so
    /// make it deliverable again rather than lose track of it.
    fn make_ready_again(&self, seq: u64, attempt: u32) {
        self.shared.lock().set(
            seq,
            attempt,
            State::Ready {
                lease_expired: false,
            },
        );
    }

    /// Hands out the leased `taken` messages once their attempts are stored.
    async fn finish_lease(
        &self,
        taken: Vec<(u64, u32)>,
        done: oneshot::Receiver<Result<Done>>,
    ) -> Result<Vec<Delivery>> {
        let records = match wait(done).await {
            Ok(Done::Records(records)) => records,
            Ok(Done::Unit) => unreachable!("lease answers with records"),
            Err(e) => {
                // Nothing was handed out: put them back as they were.
                let mut idx = self.shared.lock();
                for &(seq, attempt) in &taken {
                    if idx.entries.get(&seq).is_some_and(|e| e.attempt == attempt) {
                        idx.set(
                            seq,
                            attempt - 1,
                            State::Ready {
                                lease_expired: false,
                            },
                        );
                    }
                }
                drop(idx);
                self.shared.notify.notify_waiters();
                return Err(e);
            }
        };
        let mut deliveries = Vec::with_capacity(taken.len());
        for ((seq, attempt), record) in taken.into_iter().zip(records) {
            let Some(bytes) = record else {
                tracing::warn!(queue = %self.shared.name, seq, "queue index names a missing message");
                self.shared.lock().remove(seq);
                continue;
            };
            deliveries.push(Delivery {
                message: Record::decode(&bytes)?.into_message(attempt),
                receipt: receipt(seq, attempt),
            });
        }
        Ok(deliveries)
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    fn name(&self) -> &str {
        &self.shared.name
    }

    async fn send(&self, body: Vec<u8>, metadata: BTreeMap<String, String>) -> Result<String> {
        let mut ids = self.send_batch(vec![(body, metadata)]).await?;
        Ok(ids.pop().expect("one id per message"))
    }

    async fn send_batch(
        &self,
        messages: Vec<(Vec<u8>, BTreeMap<String, String>)>,
    ) -> Result<Vec<String>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        for (_, metadata) in &messages {
            check_metadata(metadata)?;
        }
        let first = self.inner.seqs(messages.len());
        let enqueued_at_ms = now_ms();
        let mut ids = Vec::with_capacity(messages.len());
        let mut items = Vec::with_capacity(messages.len());
        for (seq, (body, metadata)) in (first..).zip(messages) {
            let record = Record {
                id: message_id(seq),
                body,
                metadata,
                enqueued_at_ms,
                dead: None,
            };
            items.push((seq, record.encode()));
            ids.push(record.id);
        }
        let n = items.len() as u64;
        let done = self.inner.enqueue(Op::Insert {
            queue: self.shared.name.clone(),
            items,
        })?;
        wait(done).await?;
        {
            let mut idx = self.shared.lock();
            for seq in first..first + n {
                idx.set(
                    seq,
                    0,
                    State::Ready {
                        lease_expired: false,
                    },
                );
            }
        }
        self.shared.notify.notify_waiters();
        Ok(ids)
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let end = after(Instant::now(), wait);
        loop {
            // Register for wake-ups before looking, so none is missed.
            let notified = self.shared.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (taken, done, next) = {
                let mut idx = self.shared.lock();
                let now = Instant::now();
                idx.promote(now);
                let until = after(now, visibility);
                let mut taken = Vec::new();
                while taken.len() < max {
                    let Some(seq) = idx.ready.first().copied() else {
                        break;
                    };
                    let attempt = idx.entries[&seq].attempt.saturating_add(1);
                    idx.set(seq, attempt, State::Leased(until));
                    taken.push((seq, attempt));
                }
                if taken.is_empty() {
                    (taken, None, idx.timed.first().map(|&(at, _)| at))
                } else {
                    let done = self.inner.enqueue(Op::Lease {
                        queue: self.shared.name.clone(),
                        items: taken.clone(),
                    });
                    (taken, Some(done), None)
                }
            };
            if let Some(done) = done {
                // Other waiters may now have an earlier deadline to wake for.
                self.shared.notify.notify_waiters();
                return self.finish_lease(taken, done?).await;
            }
            if Instant::now() >= end {
                return Ok(Vec::new());
            }
            let wake = next.map_or(end, |at| at.min(end));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let done = {
            let mut idx = self.shared.lock();
            idx.live(seq, attempt, receipt)?;
            idx.remove(seq);
            self.inner.enqueue(Op::Remove {
                queue: self.shared.name.clone(),
                seqs: vec![seq],
            })?
        };
        if let Err(e) = wait(done).await {
            self.make_ready_again(seq, attempt);
            return Err(e);
        }
        Ok(())
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let done = {
            let mut idx = self.shared.lock();
            idx.live(seq, attempt, receipt)?;
            let state = if delay.is_zero() {
                State::Ready {
                    lease_expired: false,
                }
            } else {
                State::Delayed(after(Instant::now(), delay))
            };
            idx.set(seq, attempt, state);
            self.inner.enqueue(Op::SetState {
                queue: self.shared.name.clone(),
                seq,
                attempt,
                visible_at_ms: now_ms().saturating_add(saturating_ms(delay)),
            })?
        };
        self.shared.notify.notify_waiters();
        wait(done).await.map(drop)
    }

    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let mut idx = self.shared.lock();
        idx.live(seq, attempt, receipt)?;
        idx.set(
            seq,
            attempt,
            State::Leased(after(Instant::now(), visibility)),
        );
        Ok(())
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let (seq, attempt) = parse_receipt(receipt)?;
        let new_seq = self.inner.seqs(1);
        let done = {
            let mut idx = self.shared.lock();
            idx.live(seq, attempt, receipt)?;
            idx.remove(seq);
            self.inner.enqueue(Op::Move {
                from: self.shared.name.clone(),
                to: self.dead.name.clone(),
                moves: vec![(seq, new_seq)],
                dead: Some(DeadInfo {
                    reason: reason.to_string(),
                    attempts: attempt,
                    at_ms: now_ms(),
                }),
            })?
        };
        if let Err(e) = wait(done).await {
            self.make_ready_again(seq, attempt);
            return Err(e);
        }
        self.dead.lock().set(
            new_seq,
            0,
            State::Ready {
                lease_expired: false,
            },
        );
        self.dead.notify.notify_waiters();
        Ok(())
    }

    async fn add_dead_letter(
        &self,
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
        reason: &str,
        attempts: u32,
    ) -> Result<String> {
        check_metadata(&metadata)?;
        let seq = self.inner.seqs(1);
        let at_ms = now_ms();
        let record = Record {
            id: message_id(seq),
            body,
            metadata,
            enqueued_at_ms: at_ms,
            dead: Some(DeadInfo {
                reason: reason.to_string(),
                attempts,
                at_ms,
            }),
        };
        let id = record.id.clone();
        let done = self.inner.enqueue(Op::Insert {
            queue: self.dead.name.clone(),
            items: vec![(seq, record.encode())],
        })?;
        wait(done).await?;
        self.dead.lock().set(
            seq,
            0,
            State::Ready {
                lease_expired: false,
            },
        );
        self.dead.notify.notify_waiters();
        Ok(id)
    }

    async fn peek(&self, max: usize) -> Result<Vec<Message>> {
        let waiting: Vec<(u64, u32)> = {
            let mut idx = self.shared.lock();
            idx.promote(Instant::now());
            let mut waiting: Vec<(u64, u32)> = idx
                .entries
                .iter()
                .filter(|(_, e)| !matches!(e.state, State::Leased(_)))
                .map(|(&seq, e)| (seq, e.attempt))
                .collect();
            waiting.sort_unstable();
            waiting.truncate(max);
            waiting
        };
        let queue = self.shared.name.clone();
        self.inner
            .read(move |t| {
                let mut out = Vec::with_capacity(waiting.len());
                for (seq, attempt) in waiting {
                    if let Some(v) = t.get((&*queue, seq)).map_err(engine)? {
                        out.push(Record::decode(v.value())?.into_message(attempt));
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn depth(&self) -> Result<u64> {
        let mut idx = self.shared.lock();
        idx.promote(Instant::now());
        Ok((idx.entries.len() - idx.leased) as u64)
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        let queue = self.dead.name.clone();
        self.inner
            .read(move |t| {
                let mut out = Vec::new();
                for row in t
                    .range((&*queue, 0)..=(&*queue, u64::MAX))
                    .map_err(engine)?
                    .take(max)
                {
                    let (_, v) = row.map_err(engine)?;
                    out.push(Record::decode(v.value())?.into_dead_letter());
                }
                Ok(out)
            })
            .await
    }

    async fn dead_letter_count(&self) -> Result<u64> {
        Ok(self.dead.lock().entries.len() as u64)
    }

    async fn redrive(&self) -> Result<u64> {
        let (moves, done) = {
            let mut idx = self.dead.lock();
            let mut seqs: Vec<u64> = idx.entries.keys().copied().collect();
            if seqs.is_empty() {
                return Ok(0);
            }
            seqs.sort_unstable();
            *idx = Index::default();
            let first = self.inner.seqs(seqs.len());
            let moves: Vec<(u64, u64)> = seqs.into_iter().zip(first..).collect();
            let done = self.inner.enqueue(Op::Move {
                from: self.dead.name.clone(),
                to: self.shared.name.clone(),
                moves: moves.clone(),
                dead: None,
            });
            (moves, done)
        };
        let result = match done {
            Ok(done) => wait(done).await.map(drop),
            Err(e) => Err(e),
        };
        let ready = State::Ready {
            lease_expired: false,
        };
        if let Err(e) = result {
            let mut idx = self.dead.lock();
            for &(old, _) in &moves {
                idx.set(old, 0, ready);
            }
            return Err(e);
        }
        {
            let mut idx = self.shared.lock();
            for &(_, new) in &moves {
                idx.set(new, 0, ready);
            }
        }
        self.shared.notify.notify_waiters();
        Ok(moves.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let record = Record {
            id: "0000000000000001".into(),
            body: b"hello".to_vec(),
            metadata: BTreeMap::from([("k".into(), "v".into()), ("e".into(), String::new())]),
            enqueued_at_ms: 1_700_000_000_123,
            dead: Some(DeadInfo {
                reason: "boom".into(),
                attempts: 3,
                at_ms: 1_700_000_000_999,
            }),
        };
        assert_eq!(Record::decode(&record.encode()).unwrap(), record);
        let plain = Record {
            dead: None,
            ..record
        };
        let bytes = plain.encode();
        assert_eq!(Record::decode(&bytes).unwrap(), plain);
        assert!(Record::decode(&bytes[..bytes.len() - 2]).is_err());
    }

    #[tokio::test]
    async fn huge_durations_do_not_overflow() {
        let dir = tempfile::tempdir().unwrap();
        let queues = EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
        let q = queues.open_queue("q").unwrap();
        q.send(b"x".to_vec(), BTreeMap::new()).await.unwrap();
        let d = q.receive(1, Duration::MAX, Duration::MAX).await.unwrap();
        q.extend(&d[0].receipt, Duration::MAX).await.unwrap();
        q.nack(&d[0].receipt, Duration::MAX).await.unwrap();
        assert_eq!(q.depth().await.unwrap(), 1);
        assert!(
            q.receive(1, Duration::MAX, Duration::ZERO)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn receipts_parse() {
        assert_eq!(parse_receipt(&receipt(42, 3)).unwrap(), (42, 3));
        assert!(parse_receipt(&Receipt("nope".into())).is_err());
    }
}
