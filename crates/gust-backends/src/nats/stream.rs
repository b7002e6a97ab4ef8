//! Streams on NATS JetStream ([`NatsStreams`]).
//!
//! # Mapping
//!
//! Partition `p` of Gust stream `name` is its own JetStream stream
//! `<PREFIX>_S_<name>_P<p>` capturing the one subject
//! `<prefix>.s.<name>.<p>` (names escaped as for queues, see the `nats`
//! module). JetStream numbers messages per stream from 1 and never reuses a
//! number, and Gust never deletes a record from the middle of a partition,
//! so the offset of a record is simply its stream sequence minus one: dense
//! per partition and starting at 0, as the [`Stream`] trait wants, with no
//! lookup table. (With one JetStream stream for all partitions, sequences
//! would be shared between partitions and offsets would need a header and a
//! search.) Each stream's description says `partition <p> of <n>; max_bytes
//! <limit>; gust stream <name>`; the partition count (and the size limit)
//! is read from partition 0, which is created last, so a stream is complete
//! once partition 0 exists.
//!
//! A record travels as the message payload: a version byte, the append
//! time (ms), the key and the metadata, then the body (no headers, which
//! keeps the per-record overhead small).
//!
//! Checkpoints are the stream `<PREFIX>_S_<name>_CP` capturing
//! `<prefix>.s.<name>.cp.>` and keeping one message per subject: consumer
//! `c`'s checkpoint of partition `p` is the last message on
//! `<prefix>.s.<name>.cp.<p>.<c>` (the offset in decimal), read with a
//! direct get. Deleting a Gust stream ([`NatsStreams::delete_stream`])
//! deletes its partitions and checkpoints.
//!
//! # Operations
//!
//! - `append_batch` publishes every record, then awaits every
//!   acknowledgement; the ack's sequence gives the offset.
//! - `read` fetches (without waiting) from an ephemeral pull consumer that
//!   this handle keeps per partition, positioned where the last read ended;
//!   a read from anywhere else replaces it with one starting at that
//!   sequence. A sequential reader so costs one round trip per batch.
//! - `offsets` is the partition stream's state (`first_seq - 1 ..
//!   last_seq`).
//! - `wait_for_append` subscribes (core NATS) to the partition's subject,
//!   then looks at the offsets, and sleeps until a message is published on
//!   the subject or the timeout: no polling.
//! - Retention applies to each partition stream, so both limits are per
//!   partition like the trait says. `max_age` is JetStream's own limit
//!   (the server expires records on its timer); `apply_retention` also
//!   purges records past it at once. `max_bytes` is enforced by Gust after
//!   each append that touched the partition (and by `apply_retention`): it
//!   reads the stream's byte count and purges the oldest records until the
//!   rest fits, always keeping the newest. (JetStream's own `max_bytes`
//!   would also drop a newest record larger than the limit, which the
//!   trait forbids.) This costs an extra stream-info request per append on
//!   a stream with a size limit, and one read per record removed.
//!
//! # Differences from the embedded backend
//!
//! - `max_bytes` counts bytes as JetStream stores them: the payload (key,
//!   metadata, body and 17 bytes) plus about 30 bytes and the subject per
//!   record, so a partition keeps a few records fewer than the embedded
//!   backend with the same limit.
//! - Between an append and its trim (one round trip), and when the limit
//!   is exceeded by a process that then died, a partition holds more than
//!   `max_bytes` until the next append or `apply_retention`.
//! - `append_batch` publishes records in order, so a batch's records of one
//!   partition get increasing offsets in the order given, but another
//!   producer appending to the same partition at the same time may get
//!   offsets in between (JetStream 2.9 has no atomic batch publish).
//! - Durability is the server's (see the `nats` module).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::stream::{
    self as js_stream, DiscardPolicy, RawMessageErrorKind, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, consumer};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::Mutex as AsyncMutex;

use super::{escape, escape_prefix, is_not_found};
use crate::queue::check_metadata;
use crate::stream::{
    DEAD_LETTER_ATTEMPTS_KEY, DEAD_LETTER_OFFSET_KEY, DEAD_LETTER_PARTITION_KEY,
    DEAD_LETTER_REASON_KEY, PartitionOffsets, Position, Retention, Stream, StreamConfig,
    StreamProvider, StreamRecord, check_partitions, dead_letter_name, partition_for,
};
use crate::{BackendError, Result};

const BACKEND: &str = "nats stream";
/// Version byte of the record encoding.
const RECORD_VERSION: u8 = 1;
/// How long the server keeps a read cursor nobody uses.
const CURSOR_IDLE: Duration = Duration::from_secs(60);
/// Most records one read fetches.
const MAX_FETCH: usize = 10_000;

fn engine(what: &str, e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, format!("{what}: {e}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---------------------------------------------------------------------------
// Records

/// Encodes a record: version, append time (ms), key, metadata, body.
fn encode(at_ms: u64, key: &str, body: &[u8], metadata: &BTreeMap<String, String>) -> Bytes {
    let meta_len: usize = metadata.iter().map(|(k, v)| 8 + k.len() + v.len()).sum();
    let mut out = Vec::with_capacity(17 + key.len() + meta_len + body.len());
    out.push(RECORD_VERSION);
    out.extend_from_slice(&at_ms.to_le_bytes());
    put_bytes(&mut out, key.as_bytes());
    out.extend_from_slice(&(metadata.len() as u32).to_le_bytes());
    for (k, v) in metadata {
        put_bytes(&mut out, k.as_bytes());
        put_bytes(&mut out, v.as_bytes());
    }
    out.extend_from_slice(body);
    Bytes::from(out)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn decode(partition: u32, offset: u64, bytes: &[u8]) -> Result<StreamRecord> {
    let corrupt = || {
        BackendError::engine(
            BACKEND,
            format!("record at partition {partition} offset {offset} is not a Gust record"),
        )
    };
    let mut r = Reader(bytes);
    if r.take(1).ok_or_else(corrupt)?[0] != RECORD_VERSION {
        return Err(corrupt());
    }
    let at_ms = r.u64().ok_or_else(corrupt)?;
    let key = r.text().ok_or_else(corrupt)?;
    let count = r.u32().ok_or_else(corrupt)?;
    let mut metadata = BTreeMap::new();
    for _ in 0..count {
        let k = r.text().ok_or_else(corrupt)?;
        let v = r.text().ok_or_else(corrupt)?;
        metadata.insert(k, v);
    }
    Ok(StreamRecord {
        partition,
        offset,
        key,
        body: r.0.to_vec(),
        metadata,
        appended_at: UNIX_EPOCH + Duration::from_millis(at_ms),
    })
}

/// Bounds-checked reader over an encoded record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn text(&mut self) -> Option<String> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
}

// ---------------------------------------------------------------------------
// Provider

/// Streams on a NATS JetStream server: a [`StreamProvider`].
///
/// Cheap to clone; clones share the connection and the streams opened.
#[derive(Clone)]
pub struct NatsStreams {
    inner: Arc<Inner>,
}

struct Inner {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Stream name prefix (upper case).
    stream_prefix: String,
    /// Subject prefix.
    subject_prefix: String,
    streams: Mutex<HashMap<String, Arc<Shared>>>,
}

impl std::fmt::Debug for NatsStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStreams")
            .field("stream_prefix", &self.inner.stream_prefix)
            .finish_non_exhaustive()
    }
}

impl NatsStreams {
    /// Connects to the server at `url` (e.g. `nats://127.0.0.1:4222`).
    ///
    /// `namespace` keeps apps apart on one server: JetStream streams are
    /// named `<NAMESPACE>_S_...` and subjects `<namespace>.s....`, with the
    /// namespace escaped like names except that `_` stays (the same prefix as
    /// [`NatsQueues`](super::NatsQueues) uses for queues and topics, which
    /// take `_Q_` / `_T_` and `.q.` / `.t.`).
    pub async fn connect(url: &str, namespace: &str) -> Result<Self> {
        let client = async_nats::connect(url).await.map_err(|e| {
            engine(
                &format!("cannot connect to {}", crate::services::redact(url)),
                e,
            )
        })?;
        Self::with_client(client, namespace)
    }

    /// Like [`NatsStreams::connect`], on an existing connection.
    pub fn with_client(client: async_nats::Client, namespace: &str) -> Result<Self> {
        if namespace.is_empty() {
            return Err(BackendError::InvalidValue {
                key: "namespace".into(),
                reason: "must not be empty".into(),
            });
        }
        let prefix = escape_prefix(namespace);
        Ok(Self {
            inner: Arc::new(Inner {
                js: jetstream::new(client.clone()),
                client,
                stream_prefix: prefix.to_uppercase(),
                subject_prefix: prefix,
                streams: Mutex::default(),
            }),
        })
    }

    /// The JetStream stream holding partition `partition` of `name`.
    pub fn partition_stream_name(&self, name: &str, partition: u32) -> String {
        self.inner.partition_stream(name, partition)
    }

    /// The stream called `name` as it is, or new with
    /// [`StreamConfig::default`] (same as [`StreamProvider::stream`],
    /// without the boxing).
    pub async fn open_stream(&self, name: &str) -> Result<NatsStream> {
        self.inner.clone().open(name, None).await
    }

    /// The stream called `name`, created with `config` if new; its
    /// retention becomes `config.retention` (same as
    /// [`StreamProvider::stream_with`], without the boxing).
    pub async fn open_stream_with(&self, name: &str, config: StreamConfig) -> Result<NatsStream> {
        check_partitions(name, config.partitions)?;
        self.inner.clone().open(name, Some(config)).await
    }

    /// Deletes stream `name` (its partitions and checkpoints, not its
    /// dead-letter stream). Deleting a stream that does not exist is fine.
    pub async fn delete_stream(&self, name: &str) -> Result<()> {
        let inner = &self.inner;
        inner
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        let partitions = match inner.js.get_stream(inner.partition_stream(name, 0)).await {
            Ok(mut s) => {
                let info = s.info().await.map_err(|e| engine("stream info", e))?;
                partitions_of(info.config.description.as_deref()).unwrap_or(0)
            }
            Err(e) if is_not_found(&e.to_string()) => 0,
            Err(e) => return Err(engine("stream info", e)),
        };
        let mut names = vec![inner.checkpoint_stream(name)];
        names.extend((0..partitions.max(1)).map(|p| inner.partition_stream(name, p)));
        for stream in names {
            match inner.js.delete_stream(&stream).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e.to_string()) => {}
                Err(e) => return Err(engine(&format!("delete stream {stream}"), e)),
            }
        }
        Ok(())
    }
}

#[async_trait]
impl StreamProvider for NatsStreams {
    async fn stream(&self, name: &str) -> Result<Arc<dyn Stream>> {
        Ok(Arc::new(self.open_stream(name).await?))
    }

    async fn stream_with(&self, name: &str, config: StreamConfig) -> Result<Arc<dyn Stream>> {
        Ok(Arc::new(self.open_stream_with(name, config).await?))
    }
}

/// What a partition stream's description says: partition count and the
/// `max_bytes` limit (which Gust enforces itself, see [`Part::trim_bytes`]).
fn parse_description(description: Option<&str>) -> Option<(u32, Option<u64>)> {
    let (head, _name) = description?.split_once("; gust stream ")?;
    let mut fields = head.split("; ");
    let partitions = fields.next()?.rsplit_once(" of ")?.1.parse().ok()?;
    let max_bytes = match fields.next()?.strip_prefix("max_bytes ")? {
        "none" => None,
        n => Some(n.parse().ok()?),
    };
    Some((partitions, max_bytes))
}

fn partitions_of(description: Option<&str>) -> Option<u32> {
    parse_description(description).map(|(p, _)| p)
}

fn describe(name: &str, partition: u32, partitions: u32, max_bytes: Option<u64>) -> String {
    let max_bytes = max_bytes.map_or_else(|| "none".to_string(), |b| b.to_string());
    format!("partition {partition} of {partitions}; max_bytes {max_bytes}; gust stream {name}")
}

fn retention_of(config: &js_stream::Config) -> Retention {
    Retention {
        max_bytes: parse_description(config.description.as_deref()).and_then(|(_, b)| b),
        max_age: (!config.max_age.is_zero()).then_some(config.max_age),
    }
}

/// JetStream enforces `max_age`; `max_bytes` is enforced by Gust (JetStream
/// would drop a newest record larger than the limit too).
fn apply_limits(config: &mut js_stream::Config, retention: &Retention) {
    config.max_bytes = -1;
    config.max_age = retention.max_age.unwrap_or_default();
    config.discard = DiscardPolicy::Old;
}

impl Inner {
    fn base(&self, name: &str) -> (String, String) {
        let n = escape(name);
        (
            format!("{}_S_{n}", self.stream_prefix),
            format!("{}.s.{n}", self.subject_prefix),
        )
    }

    fn partition_stream(&self, name: &str, partition: u32) -> String {
        format!("{}_P{partition}", self.base(name).0)
    }

    fn partition_subject(&self, name: &str, partition: u32) -> String {
        format!("{}.{partition}", self.base(name).1)
    }

    fn checkpoint_stream(&self, name: &str) -> String {
        format!("{}_CP", self.base(name).0)
    }

    fn partition_config(
        &self,
        name: &str,
        partition: u32,
        partitions: u32,
        retention: &Retention,
    ) -> js_stream::Config {
        let mut config = js_stream::Config {
            name: self.partition_stream(name, partition),
            subjects: vec![self.partition_subject(name, partition)],
            description: Some(describe(name, partition, partitions, retention.max_bytes)),
            retention: RetentionPolicy::Limits,
            storage: StorageType::File,
            allow_direct: true,
            ..Default::default()
        };
        apply_limits(&mut config, retention);
        config
    }

    fn checkpoint_config(&self, name: &str) -> js_stream::Config {
        js_stream::Config {
            name: self.checkpoint_stream(name),
            subjects: vec![format!("{}.cp.>", self.base(name).1)],
            description: Some(format!("gust stream `{name}`: checkpoints")),
            max_messages_per_subject: 1,
            storage: StorageType::File,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Opens `name`: with `config`, creating it so when missing and
    /// setting its retention; without, as it is or new with the default.
    async fn open(self: Arc<Self>, name: &str, config: Option<StreamConfig>) -> Result<NatsStream> {
        let stream = self.shared(name, config, true).await?;
        Ok(NatsStream {
            inner: self,
            shared: stream,
        })
    }

    /// The shared state of `name`. `enforce` says whether `config` must
    /// match an existing stream (partitions) and sets its retention; when
    /// it is false, `config` is only used to create a missing stream.
    async fn shared(
        &self,
        name: &str,
        config: Option<StreamConfig>,
        enforce: bool,
    ) -> Result<Arc<Shared>> {
        if name.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        let cached = self
            .streams
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        let shared = match cached {
            Some(shared) => shared,
            None => {
                let shared = Arc::new(self.load_or_create(name, config).await?);
                self.streams
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(name.to_string())
                    .or_insert(shared)
                    .clone()
            }
        };
        if let (Some(c), true) = (config, enforce) {
            if c.partitions != shared.partitions {
                return Err(BackendError::InvalidValue {
                    key: name.to_string(),
                    reason: format!(
                        "stream `{name}` has {} partitions; it cannot be opened with {} \
                         (keys would move to other partitions)",
                        shared.partitions, c.partitions
                    ),
                });
            }
            self.set_retention(&shared, c.retention).await?;
        }
        Ok(shared)
    }

    /// Reads the stream's partitions from the server, creating them (last
    /// partition first, partition 0 last) when partition 0 is missing.
    async fn load_or_create(&self, name: &str, config: Option<StreamConfig>) -> Result<Shared> {
        let first = self.partition_stream(name, 0);
        let (partitions, retention) = match self.js.get_stream(&first).await {
            Ok(mut s) => {
                let info = s
                    .info()
                    .await
                    .map_err(|e| engine(&format!("stream info {first}"), e))?;
                let partitions =
                    partitions_of(info.config.description.as_deref()).ok_or_else(|| {
                        engine(
                            &format!("stream {first}"),
                            "not a Gust stream partition (no partition count in its description)",
                        )
                    })?;
                (partitions, retention_of(&info.config))
            }
            Err(e) if is_not_found(&e.to_string()) => {
                let c = config.unwrap_or_default();
                for p in (0..c.partitions).rev() {
                    let config = self.partition_config(name, p, c.partitions, &c.retention);
                    self.js.create_stream(config).await.map_err(|e| {
                        let stream = self.partition_stream(name, p);
                        if e.to_string().contains("already in use") {
                            BackendError::InvalidValue {
                                key: name.to_string(),
                                reason: format!(
                                    "stream `{name}` is being created with another partition \
                                     count or retention elsewhere ({stream}: {e})"
                                ),
                            }
                        } else {
                            engine(&format!("create stream {stream}"), e)
                        }
                    })?;
                }
                (c.partitions, c.retention)
            }
            Err(e) => return Err(engine(&format!("stream info {first}"), e)),
        };
        let checkpoints = self
            .js
            .get_or_create_stream(self.checkpoint_config(name))
            .await
            .map_err(|e| {
                engine(
                    &format!("create stream {}", self.checkpoint_stream(name)),
                    e,
                )
            })?;
        let mut parts = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let stream_name = self.partition_stream(name, p);
            let stream = self
                .js
                .get_stream(&stream_name)
                .await
                .map_err(|e| engine(&format!("open stream {stream_name}"), e))?;
            parts.push(Part {
                stream,
                subject: self.partition_subject(name, p),
                cursor: AsyncMutex::new(None),
            });
        }
        Ok(Shared {
            name: name.to_string(),
            partitions,
            parts,
            checkpoints,
            checkpoint_subject: format!("{}.cp", self.base(name).1),
            retention: Mutex::new(retention),
        })
    }

    /// Gives every partition of `shared` the retention limits `retention`.
    async fn set_retention(&self, shared: &Shared, retention: Retention) -> Result<()> {
        let current = *shared.retention.lock().unwrap_or_else(|e| e.into_inner());
        if current == retention {
            return Ok(());
        }
        for p in 0..shared.partitions {
            let config = self.partition_config(&shared.name, p, shared.partitions, &retention);
            self.js.update_stream(config).await.map_err(|e| {
                engine(
                    &format!(
                        "update stream {}",
                        shared.parts[p as usize].stream.cached_info().config.name
                    ),
                    e,
                )
            })?;
        }
        *shared.retention.lock().unwrap_or_else(|e| e.into_inner()) = retention;
        Ok(())
    }
}

/// What a process knows of one Gust stream.
struct Shared {
    name: String,
    partitions: u32,
    parts: Vec<Part>,
    checkpoints: js_stream::Stream,
    /// Checkpoint subjects start with this.
    checkpoint_subject: String,
    retention: Mutex<Retention>,
}

/// One partition: its JetStream stream and this process's read cursor.
struct Part {
    stream: js_stream::Stream,
    subject: String,
    cursor: AsyncMutex<Option<Cursor>>,
}

/// An ephemeral consumer positioned at offset `next`.
struct Cursor {
    consumer: consumer::PullConsumer,
    next: u64,
}

impl Shared {
    fn part(&self, partition: u32) -> Result<&Part> {
        self.parts
            .get(partition as usize)
            .ok_or_else(|| BackendError::InvalidValue {
                key: format!("{}/{partition}", self.name),
                reason: format!(
                    "stream `{}` has partitions 0 to {}",
                    self.name,
                    self.partitions - 1
                ),
            })
    }

    fn checkpoint_subject(&self, consumer: &str, partition: u32) -> String {
        format!(
            "{}.{partition}.{}",
            self.checkpoint_subject,
            escape(consumer)
        )
    }
}

impl Part {
    async fn offsets(&self) -> Result<PartitionOffsets> {
        let info = self.stream.get_info().await.map_err(|e| {
            engine(
                &format!("stream info {}", self.stream.cached_info().config.name),
                e,
            )
        })?;
        let state = info.state;
        let earliest = if state.messages == 0 {
            state.last_sequence
        } else {
            state.first_sequence.saturating_sub(1)
        };
        Ok(PartitionOffsets {
            earliest,
            next: state.last_sequence,
        })
    }

    /// A new ephemeral consumer delivering from `offset` on.
    async fn cursor_at(&self, offset: u64) -> Result<Cursor> {
        let consumer = self
            .stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: offset + 1,
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: CURSOR_IDLE,
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| engine(&format!("create a reader on {}", self.subject), e))?;
        Ok(Cursor {
            consumer,
            next: offset,
        })
    }

    /// Removes the oldest records while the partition holds more than
    /// `max_bytes` (as JetStream counts them), always keeping the newest;
    /// how many went.
    async fn trim_bytes(&self, max_bytes: u64) -> Result<u64> {
        let name = &self.stream.cached_info().config.name;
        let state = self
            .stream
            .get_info()
            .await
            .map_err(|e| engine(&format!("stream info {name}"), e))?
            .state;
        if state.messages <= 1 || state.bytes <= max_bytes {
            return Ok(0);
        }
        let mut excess = state.bytes - max_bytes;
        let mut cut = state.first_sequence;
        while excess > 0 && cut < state.last_sequence {
            match self.stream.get_raw_message(cut).await {
                Ok(m) => excess = excess.saturating_sub(stored_size(&m)),
                // Removed meanwhile (by another process's trim).
                Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => {}
                Err(e) => return Err(engine(&format!("read record {cut} of {name}"), e)),
            }
            cut += 1;
        }
        let purged = self
            .stream
            .purge()
            .sequence(cut)
            .await
            .map_err(|e| engine(&format!("purge {name} below {cut}"), e))?;
        Ok(purged.purged)
    }

    /// Purges the records older than `max_age`; how many went.
    async fn purge_older_than(&self, max_age: Duration) -> Result<u64> {
        let name = &self.stream.cached_info().config.name;
        let state = self
            .stream
            .get_info()
            .await
            .map_err(|e| engine(&format!("stream info {name}"), e))?
            .state;
        if state.messages == 0 {
            return Ok(0);
        }
        let cutoff = SystemTime::now() - max_age;
        let young = |t: SystemTime| t >= cutoff;
        let first = match self.stream.get_raw_message(state.first_sequence).await {
            Ok(m) => Some(m),
            Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => None,
            Err(e) => return Err(engine(&format!("read the first record of {name}"), e)),
        };
        if first.is_some_and(|m| young(SystemTime::from(m.time))) {
            return Ok(0);
        }
        // The first record young enough, found by the server.
        let by_time = self
            .stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::ByStartTime {
                    start_time: cutoff.into(),
                },
                ack_policy: consumer::AckPolicy::None,
                inactive_threshold: Duration::from_secs(5),
                memory_storage: true,
                ..Default::default()
            })
            .await
            .map_err(|e| engine(&format!("create a reader on {name}"), e))?;
        let mut got = by_time
            .fetch()
            .max_messages(1)
            .messages()
            .await
            .map_err(|e| engine(&format!("fetch from {name}"), e))?;
        let keep_from = match got.next().await {
            Some(Ok(m)) => m.info().map_err(|e| engine(name, e))?.stream_sequence,
            Some(Err(e)) => return Err(engine(&format!("fetch from {name}"), e)),
            None => state.last_sequence + 1,
        };
        drop(got);
        let _ = self
            .stream
            .delete_consumer(&by_time.cached_info().name)
            .await;
        let purged = self
            .stream
            .purge()
            .sequence(keep_from)
            .await
            .map_err(|e| engine(&format!("purge {name} below {keep_from}"), e))?;
        Ok(purged.purged)
    }
}

/// One stream on a [`NatsStreams`] server.
pub struct NatsStream {
    inner: Arc<Inner>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for NatsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsStream")
            .field("name", &self.shared.name)
            .field("partitions", &self.shared.partitions)
            .finish_non_exhaustive()
    }
}

impl NatsStream {
    /// Publishes `(partition, payload)` to `shared`'s partitions in order
    /// and awaits every acknowledgement.
    async fn publish(&self, shared: &Shared, items: Vec<(u32, Bytes)>) -> Result<Vec<Position>> {
        let mut acks = Vec::with_capacity(items.len());
        for (partition, payload) in items {
            let part = &shared.parts[partition as usize];
            let ack = self
                .inner
                .js
                .publish(part.subject.clone(), payload)
                .await
                .map_err(|e| engine(&format!("publish to {}", part.subject), e))?;
            acks.push((partition, ack));
        }
        let mut positions = Vec::with_capacity(acks.len());
        for (partition, ack) in acks {
            let ack = ack.await.map_err(|e| {
                engine(
                    &format!("publish to {}", shared.parts[partition as usize].subject),
                    e,
                )
            })?;
            positions.push(Position {
                partition,
                offset: ack.sequence.saturating_sub(1),
            });
        }
        let max_bytes = shared
            .retention
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .max_bytes;
        if let Some(max_bytes) = max_bytes {
            let mut touched: Vec<u32> = positions.iter().map(|p| p.partition).collect();
            touched.sort_unstable();
            touched.dedup();
            for p in touched {
                shared.parts[p as usize].trim_bytes(max_bytes).await?;
            }
        }
        Ok(positions)
    }
}

#[async_trait]
impl Stream for NatsStream {
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
        let at = now_ms();
        let partitions = self.shared.partitions;
        let items = records
            .iter()
            .map(|(key, body, metadata)| {
                (
                    partition_for(key, partitions),
                    encode(at, key, body, metadata),
                )
            })
            .collect();
        self.publish(&self.shared, items).await
    }

    async fn read(&self, partition: u32, from: u64, max: usize) -> Result<Vec<StreamRecord>> {
        let part = self.shared.part(partition)?;
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = max.min(MAX_FETCH);
        let mut cursor = part.cursor.lock().await;
        let mut fresh = false;
        if cursor.as_ref().is_none_or(|c| c.next != from) {
            if let Some(old) = cursor.take() {
                let name = old.consumer.cached_info().name.clone();
                let _ = part.stream.delete_consumer(&name).await;
            }
            *cursor = Some(part.cursor_at(from).await?);
            fresh = true;
        }
        loop {
            let c = cursor.as_mut().expect("a cursor is set");
            match fetch(c, partition, max).await {
                Ok(records) => {
                    if let Some(last) = records.last() {
                        c.next = last.offset + 1;
                    }
                    return Ok(records);
                }
                // The server dropped an idle cursor (or the connection was
                // lost mid-fetch): start again where we were, once.
                Err(e) if !fresh => {
                    tracing::debug!(error = %e, "nats stream reader replaced");
                    *cursor = Some(part.cursor_at(from).await?);
                    fresh = true;
                }
                Err(e) => {
                    *cursor = None;
                    return Err(e);
                }
            }
        }
    }

    async fn offsets(&self, partition: u32) -> Result<PartitionOffsets> {
        self.shared.part(partition)?.offsets().await
    }

    async fn wait_for_append(&self, partition: u32, from: u64, timeout: Duration) -> Result<bool> {
        let part = self.shared.part(partition)?;
        let end = tokio::time::Instant::now() + timeout;
        // Subscribe before looking, so an append in between wakes us.
        let mut appends = self
            .inner
            .client
            .subscribe(part.subject.clone())
            .await
            .map_err(|e| engine(&format!("subscribe to {}", part.subject), e))?;
        loop {
            if part.offsets().await?.next > from {
                return Ok(true);
            }
            match tokio::time::timeout_at(end, appends.next()).await {
                Ok(Some(_)) => {
                    // Published: give the server a moment to store it.
                    for _ in 0..20 {
                        if part.offsets().await?.next > from {
                            return Ok(true);
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                }
                Ok(None) => return Err(engine(&part.subject, "subscription closed")),
                Err(_) => return Ok(part.offsets().await?.next > from),
            }
        }
    }

    async fn checkpoint(&self, consumer: &str, partition: u32) -> Result<Option<u64>> {
        self.shared.part(partition)?;
        let subject = self.shared.checkpoint_subject(consumer, partition);
        match self
            .shared
            .checkpoints
            .raw_message_builder()
            .last_by_subject(subject.clone())
            .send()
            .await
        {
            Ok(m) => std::str::from_utf8(&m.payload)
                .ok()
                .and_then(|s| s.parse().ok())
                .map(Some)
                .ok_or_else(|| engine(&subject, "checkpoint is not a number")),
            Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
            Err(e) => Err(engine(&format!("read checkpoint {subject}"), e)),
        }
    }

    async fn commit(&self, consumer: &str, partition: u32, next: u64) -> Result<()> {
        let part = self.shared.part(partition)?;
        let end = part.offsets().await?.next;
        if next > end {
            return Err(BackendError::InvalidValue {
                key: format!("{}/{partition}", self.shared.name),
                reason: format!(
                    "cannot commit offset {next} for `{consumer}`: the partition ends at {end}"
                ),
            });
        }
        let subject = self.shared.checkpoint_subject(consumer, partition);
        self.inner
            .js
            .publish(subject.clone(), next.to_string().into())
            .await
            .map_err(|e| engine(&format!("publish checkpoint {subject}"), e))?
            .await
            .map_err(|e| engine(&format!("publish checkpoint {subject}"), e))?;
        Ok(())
    }

    async fn dead_letter(
        &self,
        record: &StreamRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<Position> {
        // Created like this stream; an existing one keeps its own settings.
        let dead = self
            .inner
            .shared(
                &dead_letter_name(&self.shared.name),
                Some(StreamConfig {
                    partitions: self.shared.partitions,
                    retention: Retention::default(),
                }),
                false,
            )
            .await?;
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
        let mut at = self.publish(&dead, vec![item]).await?;
        Ok(at.pop().expect("one position per record"))
    }

    async fn apply_retention(&self) -> Result<u64> {
        let retention = *self
            .shared
            .retention
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut removed = 0;
        for part in &self.shared.parts {
            if let Some(max_age) = retention.max_age {
                removed += part.purge_older_than(max_age).await?;
            }
            if let Some(max_bytes) = retention.max_bytes {
                removed += part.trim_bytes(max_bytes).await?;
            }
        }
        Ok(removed)
    }
}

/// The bytes JetStream's file store counts for a message: subject,
/// headers and payload plus a 30-byte record frame.
fn stored_size(m: &async_nats::jetstream::message::StreamMessage) -> u64 {
    let headers: usize = m
        .headers
        .iter()
        .map(|(k, vs)| {
            let name: &str = k.as_ref();
            vs.iter()
                .map(|v| name.len() + v.as_str().len() + 4)
                .sum::<usize>()
        })
        .sum();
    (m.subject.len() + headers + m.payload.len() + 30) as u64
}

/// Up to `max` records from the cursor, without waiting.
async fn fetch(c: &Cursor, partition: u32, max: usize) -> Result<Vec<StreamRecord>> {
    let what = || format!("read partition {partition}");
    let mut batch = c
        .consumer
        .fetch()
        .max_messages(max)
        .messages()
        .await
        .map_err(|e| engine(&what(), e))?;
    let mut out = Vec::new();
    while let Some(m) = batch.next().await {
        let m = m.map_err(|e| engine(&what(), e))?;
        let seq = m.info().map_err(|e| engine(&what(), e))?.stream_sequence;
        out.push(decode(partition, seq - 1, &m.payload)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip() {
        let meta: BTreeMap<String, String> = [("a".to_string(), "1".to_string())].into();
        let bytes = encode(1234, "key", b"body", &meta);
        let r = decode(2, 7, &bytes).unwrap();
        assert_eq!(
            (r.partition, r.offset, r.key.as_str(), r.body.as_slice()),
            (2, 7, "key", &b"body"[..])
        );
        assert_eq!(r.metadata, meta);
        assert_eq!(r.appended_at, UNIX_EPOCH + Duration::from_millis(1234));
        assert!(decode(0, 0, &bytes[..5]).is_err());
        assert!(decode(0, 0, b"").is_err());
    }

    #[test]
    fn partition_counts_are_read_back_from_descriptions() {
        assert_eq!(
            partitions_of(Some(&describe("a of b; x", 3, 8, None))),
            Some(8)
        );
        assert_eq!(
            parse_description(Some(&describe("n; gust stream m", 0, 2, Some(500)))),
            Some((2, Some(500)))
        );
        assert_eq!(partitions_of(Some("something else")), None);
        assert_eq!(partitions_of(None), None);
    }
}
