//! The `nats` backend: queues and topics on [NATS JetStream](https://docs.nats.io/nats-concepts/jetstream)
//! (topics: see [`NatsQueues`]; streams: see [`stream`]), and blob containers on its object store
//! ([`blob::NatsBlobs`]).
//!
//! Each queue is a work-queue stream `<PREFIX>_Q_<name>` capturing the subject
//! `<prefix>.q.<name>` (the name escaped so any text is safe: letters, digits
//! and `-` stay, every other byte becomes `_` and two hex digits), with one
//! durable pull consumer `gust` that every process shares. The dead-letter
//! queue `<name>-deadletter` is a queue like any other.
//!
//! How the [`Queue`] operations map onto JetStream:
//!
//! - `send`: publish with headers `gust-id` and `gust-enqueued-at` (ms since
//!   the epoch) plus the metadata, awaiting the stream's acknowledgement;
//!   `send_batch` publishes everything before awaiting the acknowledgements.
//! - `receive`: a no-wait fetch; when it finds nothing and `wait` is not zero,
//!   a pull request for one message that expires after `wait`, then a no-wait
//!   fetch for the rest. The lease is the consumer's `ack_wait`, set from
//!   `visibility` (clamped to 100 ms ..= 12 h); a receive with a different
//!   visibility updates the consumer, which changes the lease of everything
//!   already delivered too.
//! - `ack`: `+ACK` published without waiting for the server's reply (the
//!   connection delivers it before anything sent later, and an ack lost
//!   with the connection only means one more delivery); waiting for each
//!   reply made a consumer ack-bound (see `bench/BENCHMARKS.md`).
//! - `nack(delay)` / `extend` / `dead_letter`: `-NAK` with the delay, `+WPI`
//!   (which renews the lease for the consumer's `ack_wait`, whatever
//!   `visibility` says) and `+TERM`, each sent as a request so the server
//!   has processed it when the call returns. The receipt is the delivery's
//!   ack subject.
//! - `attempt` is the consumer's delivery count for the message.
//! - `dead_letter` publishes the message to the dead-letter stream with the
//!   reason, attempts and time in headers, then terminates the delivery.
//! - `peek` reads messages the consumer has not delivered yet straight from
//!   the stream (by sequence, not consuming them); `depth` is the consumer's
//!   count of those (`num_pending`).
//! - `redrive` republishes each dead letter to the queue (a new stream
//!   message, so its delivery count starts again) and deletes it from the
//!   dead-letter stream.
//!
//! Differences from the embedded backend, all from the engine:
//!
//! - JetStream settles a delivery by stream sequence, so a receipt from an
//!   earlier delivery of a message still acks (or nacks, extends) the
//!   current delivery of it; it is never rejected as stale. A receipt names
//!   the delivery on the server, so it settles it whichever queue is asked.
//! - Messages that were delivered and are waiting to be delivered again (their
//!   lease ran out, or they were nacked) count neither in `depth` nor in
//!   `peek`.
//! - Metadata values may not contain CR or LF (they travel as headers), and a
//!   dead-letter reason has them escaped as `\r` / `\n` in its header.
//! - Durability is the server's: a file-stored stream acknowledges a publish
//!   once the server has written it, and the server syncs to disk on its own
//!   schedule (`sync_interval`), so a killed server process loses nothing but
//!   a machine crash may.
//! - If a `receive` is cancelled while its pull request waits, a message the
//!   server hands to that request stays leased until `ack_wait` runs out.

pub mod blob;
pub mod cleanup;
pub mod kv;
pub mod stream;

pub use cleanup::delete_app;
pub use stream::{NatsStream, NatsStreams};

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_nats::HeaderMap;
use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::{
    self as js_stream, RawMessageErrorKind, RetentionPolicy, StorageType,
};
use async_nats::jetstream::{self, AckKind, consumer};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::OnceCell;

use crate::queue::{
    DEAD_LETTER_ATTEMPTS_KEY, DEAD_LETTER_REASON_KEY, RESERVED_METADATA_PREFIX, check_metadata,
    dead_letter_name,
};
use crate::topic::{Topic, TopicProvider, subscription_queue};
use crate::{BackendError, DeadLetter, Delivery, Message, Queue, QueueProvider, Receipt, Result};

mod broadcast;

pub use broadcast::NatsBroadcast;

const BACKEND: &str = "nats queue";
/// The durable pull consumer every process shares.
const CONSUMER: &str = "gust";
/// Header with the id `send` assigned.
const ID_HEADER: &str = "gust-id";
/// Header with the enqueue time in ms since the epoch.
const ENQUEUED_AT_HEADER: &str = "gust-enqueued-at";
/// Header with the dead-letter time in ms since the epoch.
const DEAD_LETTERED_AT_HEADER: &str = "gust-dead-lettered-at";
/// Shortest lease the consumer is given.
const MIN_ACK_WAIT: Duration = Duration::from_millis(100);
/// Longest lease the consumer is given.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);
/// Lease of a new consumer until a receive asks for another.
const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Deliveries a consumer may have unacknowledged at once.
const MAX_ACK_PENDING: i64 = 20_000;

fn engine(e: impl std::fmt::Display) -> BackendError {
    BackendError::engine(BACKEND, e)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Escapes `name` for use in stream names and subject tokens: ASCII letters,
/// digits and `-` stay; every other byte becomes `_` and two hex digits.
pub(crate) fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// Escapes an app prefix (such as `gust_shop_api`, see
/// `services::nats_prefix`) for stream names and subjects: like [`escape`],
/// but `_` stays too, so Gust's prefixes (letters, digits and `_`) read as
/// given and stay distinct. (Other bytes are escaped as by [`escape`], so a
/// prefix with them may equal another that spells out the escape.) Names
/// that follow a prefix are always [`escape`]d and come after a separator
/// (`_Q_`, `_S_`, `.q.`, ...); an escaped name never has `_` followed by
/// anything but two hex digits, so the names of two such prefixes differ.
pub(crate) fn escape_prefix(prefix: &str) -> String {
    let mut out = String::with_capacity(prefix.len());
    for b in prefix.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// Reverses [`escape`]; `None` for text `escape` never makes.
fn unescape(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = escaped.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Queues and topics on a NATS JetStream server: a [`QueueProvider`] and a
/// [`TopicProvider`].
///
/// A topic is the stream `<PREFIX>_T_<topic>` capturing
/// `<prefix>.t.<topic>.>` with interest retention (a message stays until
/// every subscription has settled it; one published while the topic has no
/// subscription is dropped). Publishing goes to `<prefix>.t.<topic>.all`.
/// A subscription is a durable pull consumer of that stream named after it,
/// starting with messages published after it was made; `send` on it
/// publishes to `<prefix>.t.<topic>.to.<subscription>`, which every other
/// subscription skips (acks unseen), so a redrive reaches only its own.
/// A subscription's `depth` counts those skipped messages too.
///
/// Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct NatsQueues {
    client: async_nats::Client,
    js: jetstream::Context,
    /// Stream name prefix (upper case).
    stream_prefix: String,
    /// Subject prefix.
    subject_prefix: String,
    queues: Arc<Mutex<HashMap<String, Arc<Target>>>>,
}

impl std::fmt::Debug for NatsQueues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueues")
            .field("stream_prefix", &self.stream_prefix)
            .field("subject_prefix", &self.subject_prefix)
            .finish_non_exhaustive()
    }
}

impl NatsQueues {
    /// Connects to the server at `url` (e.g. `nats://127.0.0.1:4222`).
    ///
    /// `prefix` keeps apps apart on one server: streams are named
    /// `<PREFIX>_Q_<name>` and subjects `<prefix>.q.<name>`, with `prefix`
    /// escaped like queue names except that `_` stays.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        if prefix.is_empty() {
            return Err(BackendError::InvalidValue {
                key: "prefix".into(),
                reason: "must not be empty".into(),
            });
        }
        let client = async_nats::connect(url).await.map_err(|e| {
            engine(format!(
                "cannot connect to {}: {e}",
                crate::services::redact(url)
            ))
        })?;
        let js = jetstream::new(client.clone());
        let prefix = escape_prefix(prefix);
        Ok(Self {
            client,
            js,
            stream_prefix: prefix.to_uppercase(),
            subject_prefix: prefix,
            queues: Arc::default(),
        })
    }

    /// The connection (shared by clones), for other resources on the same
    /// server.
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// The stream that holds queue `name`.
    pub fn stream_name(&self, name: &str) -> String {
        format!("{}_Q_{}", self.stream_prefix, escape(name))
    }

    /// The subject that queue `name`'s messages are published on.
    pub fn subject(&self, name: &str) -> String {
        format!("{}.q.{}", self.subject_prefix, escape(name))
    }

    /// The stream that holds topic `name`.
    pub fn topic_stream_name(&self, name: &str) -> String {
        format!("{}_T_{}", self.stream_prefix, escape(name))
    }

    /// The subjects of topic `name` start with this.
    fn topic_subject(&self, name: &str) -> String {
        format!("{}.t.{}", self.subject_prefix, escape(name))
    }

    fn topic_stream_config(&self, topic: &str) -> js_stream::Config {
        js_stream::Config {
            name: self.topic_stream_name(topic),
            subjects: vec![format!("{}.>", self.topic_subject(topic))],
            retention: RetentionPolicy::Interest,
            storage: StorageType::File,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// The consumer behind subscription `subscription` of `topic`.
    fn subscription_target(&self, topic: &str, subscription: &str) -> Arc<Target> {
        let key = format!("\0{topic}\0{subscription}");
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(key)
            .or_insert_with(|| {
                let base = self.topic_subject(topic);
                Arc::new(Target {
                    stream_name: self.topic_stream_name(topic),
                    stream_subject: format!("{base}.>"),
                    retention: RetentionPolicy::Interest,
                    subject: format!("{base}.to.{}", escape(subscription)),
                    consumer_name: escape(subscription),
                    broadcast: Some(format!("{base}.all")),
                    stream: OnceCell::new(),
                    consumer: OnceCell::new(),
                    ack_wait: Mutex::new(DEFAULT_ACK_WAIT),
                })
            })
            .clone()
    }

    /// Subscription `subscription` of `topic` as a queue, its consumer
    /// created when missing.
    pub async fn open_subscription(&self, topic: &str, subscription: &str) -> Result<NatsQueue> {
        if topic.is_empty() || subscription.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        let name = subscription_queue(topic, subscription);
        let queue = NatsQueue {
            provider: self.clone(),
            main: self.subscription_target(topic, subscription),
            dead: self.target(&dead_letter_name(&name)),
            name,
        };
        queue.consumer().await?;
        Ok(queue)
    }

    /// Topic `name` (same as [`TopicProvider::topic`], without the boxing).
    pub fn open_topic(&self, name: &str) -> Result<NatsTopic> {
        if name.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        Ok(NatsTopic {
            provider: self.clone(),
            name: name.to_string(),
            stream: Arc::new(OnceCell::new()),
        })
    }

    /// Deletes topic `name`'s stream with its subscriptions. Their
    /// dead-letter queues stay. Deleting a topic that does not exist is fine.
    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        let key = format!("\0{name}\0");
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&key));
        match self.js.delete_stream(self.topic_stream_name(name)).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e.to_string()) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    /// Deletes the streams of queue `name` and of its dead-letter queue, with
    /// every message in them. Deleting a queue that does not exist is fine.
    pub async fn delete_queue(&self, name: &str) -> Result<()> {
        for queue in [name.to_string(), dead_letter_name(name)] {
            self.queues
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&queue);
            match self.js.delete_stream(self.stream_name(&queue)).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e.to_string()) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(())
    }

    /// The stream (and consumer) of queue `name`, created on first use.
    fn target(&self, name: &str) -> Arc<Target> {
        let mut queues = self.queues.lock().unwrap_or_else(|e| e.into_inner());
        queues
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Target {
                    stream_name: self.stream_name(name),
                    stream_subject: self.subject(name),
                    retention: RetentionPolicy::WorkQueue,
                    subject: self.subject(name),
                    consumer_name: CONSUMER.into(),
                    broadcast: None,
                    stream: OnceCell::new(),
                    consumer: OnceCell::new(),
                    ack_wait: Mutex::new(DEFAULT_ACK_WAIT),
                })
            })
            .clone()
    }

    /// The queue called `name` (same as [`QueueProvider::queue`], without
    /// the boxing).
    pub async fn open_queue(&self, name: &str) -> Result<NatsQueue> {
        if name.is_empty() {
            return Err(BackendError::NoSuchResource(String::new()));
        }
        let queue = NatsQueue {
            provider: self.clone(),
            name: name.to_string(),
            main: self.target(name),
            dead: self.target(&dead_letter_name(name)),
        };
        queue.consumer().await?;
        Ok(queue)
    }
}

pub(crate) fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not found") || m.contains("10059")
}

#[async_trait]
impl QueueProvider for NatsQueues {
    async fn queue(&self, name: &str) -> Result<Arc<dyn Queue>> {
        Ok(Arc::new(self.open_queue(name).await?))
    }
}

#[async_trait]
impl TopicProvider for NatsQueues {
    async fn topic(&self, name: &str) -> Result<Arc<dyn Topic>> {
        Ok(Arc::new(self.open_topic(name)?))
    }

    async fn topics(&self) -> Result<Vec<String>> {
        let start = format!("{}_T_", self.stream_prefix);
        let names: Vec<String> = self
            .js
            .stream_names()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(engine)?;
        let mut topics = Vec::new();
        for name in names {
            let Some(topic) = name.strip_prefix(&start).and_then(unescape) else {
                continue;
            };
            let has_subscriptions = self
                .open_topic(&topic)?
                .subscriptions()
                .await
                .is_ok_and(|s| !s.is_empty());
            if has_subscriptions {
                topics.push(topic);
            }
        }
        topics.sort();
        Ok(topics)
    }
}

/// One topic on a [`NatsQueues`] server.
pub struct NatsTopic {
    provider: NatsQueues,
    name: String,
    stream: Arc<OnceCell<js_stream::Stream>>,
}

impl std::fmt::Debug for NatsTopic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTopic")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl NatsTopic {
    async fn stream(&self) -> Result<&js_stream::Stream> {
        self.stream
            .get_or_try_init(|| async {
                self.provider
                    .js
                    .get_or_create_stream(self.provider.topic_stream_config(&self.name))
                    .await
                    .map_err(engine)
            })
            .await
    }
}

#[async_trait]
impl Topic for NatsTopic {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, messages: Vec<(Vec<u8>, BTreeMap<String, String>)>) -> Result<()> {
        self.stream().await?;
        let now = now_ms();
        let mut prepared = Vec::with_capacity(messages.len());
        for (body, metadata) in messages {
            check_metadata(&metadata)?;
            prepared.push((headers_for(&new_id(), now, &metadata)?, Bytes::from(body)));
        }
        let subject = format!("{}.all", self.provider.topic_subject(&self.name));
        publish_all(&self.provider.js, &subject, prepared).await
    }

    async fn subscribe(&self, name: &str) -> Result<Arc<dyn Queue>> {
        self.stream().await?;
        Ok(Arc::new(
            self.provider.open_subscription(&self.name, name).await?,
        ))
    }

    async fn unsubscribe(&self, name: &str) -> Result<()> {
        let key = format!("\0{}\0{name}", self.name);
        self.provider
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&key);
        let stream = self.stream().await?;
        match stream.delete_consumer(&escape(name)).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e.to_string()) => Ok(()),
            Err(e) => Err(engine(e)),
        }
    }

    async fn subscriptions(&self) -> Result<Vec<String>> {
        let stream = self.stream().await?;
        let names: Vec<String> = stream
            .consumer_names()
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<std::result::Result<_, _>>()
            .map_err(engine)?;
        let mut out: Vec<String> = names.iter().filter_map(|n| unescape(n)).collect();
        out.sort();
        Ok(out)
    }
}

/// One queue's stream and consumer: a work queue, or one subscription of a
/// topic (a durable consumer of the topic's stream).
struct Target {
    stream_name: String,
    /// What the stream captures.
    stream_subject: String,
    retention: RetentionPolicy,
    /// Where `send` publishes.
    subject: String,
    /// The durable pull consumer that receives.
    consumer_name: String,
    /// For a subscription: the topic's broadcast subject, taken besides
    /// `subject` (every other subject of the stream is another
    /// subscription's and is skipped).
    broadcast: Option<String>,
    stream: OnceCell<js_stream::Stream>,
    consumer: OnceCell<consumer::PullConsumer>,
    /// The consumer's current `ack_wait`.
    ack_wait: Mutex<Duration>,
}

impl Target {
    fn stream_config(&self) -> js_stream::Config {
        js_stream::Config {
            name: self.stream_name.clone(),
            subjects: vec![self.stream_subject.clone()],
            retention: self.retention,
            storage: StorageType::File,
            allow_direct: true,
            ..Default::default()
        }
    }

    /// Whether a message the consumer delivered on `subject` is this
    /// queue's (for a subscription: published to the topic, or sent to this
    /// subscription).
    fn takes(&self, subject: &str) -> bool {
        subject == self.subject || self.broadcast.as_deref().is_none_or(|b| b == subject)
    }

    fn consumer_config(&self, ack_wait: Duration) -> consumer::pull::Config {
        // A subscription starts with what is published after it is made.
        let deliver_policy = if self.broadcast.is_some() {
            consumer::DeliverPolicy::New
        } else {
            consumer::DeliverPolicy::All
        };
        consumer::pull::Config {
            durable_name: Some(self.consumer_name.clone()),
            deliver_policy,
            ack_policy: consumer::AckPolicy::Explicit,
            ack_wait,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }

    async fn stream(&self, js: &jetstream::Context) -> Result<&js_stream::Stream> {
        self.stream
            .get_or_try_init(|| async {
                js.get_or_create_stream(self.stream_config())
                    .await
                    .map_err(engine)
            })
            .await
    }

    /// The stream if it exists, without creating it.
    async fn existing_stream(&self, js: &jetstream::Context) -> Result<Option<&js_stream::Stream>> {
        if let Some(stream) = self.stream.get() {
            return Ok(Some(stream));
        }
        match js.get_stream(&self.stream_name).await {
            Ok(stream) => Ok(Some(self.stream.get_or_init(|| async { stream }).await)),
            Err(e) if is_not_found(&e.to_string()) => Ok(None),
            Err(e) => Err(engine(e)),
        }
    }
}

/// One queue on a [`NatsQueues`] server.
pub struct NatsQueue {
    provider: NatsQueues,
    name: String,
    main: Arc<Target>,
    /// This queue's dead-letter queue.
    dead: Arc<Target>,
}

impl std::fmt::Debug for NatsQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsQueue")
            .field("name", &self.name)
            .field("stream", &self.main.stream_name)
            .finish_non_exhaustive()
    }
}

/// Where a receipt points: the stream sequence and delivery count.
struct AckSubject {
    stream_sequence: u64,
    delivered: u32,
}

/// Parses a `$JS.ACK.` subject (v1 and v2 formats).
fn parse_receipt(receipt: &Receipt) -> Result<AckSubject> {
    let invalid = || BackendError::InvalidValue {
        key: receipt.0.clone(),
        reason: "not a receipt of the nats queue".into(),
    };
    let rest = receipt.0.strip_prefix("$JS.ACK.").ok_or_else(invalid)?;
    let tokens: Vec<&str> = rest.split('.').collect();
    // v1: stream.consumer.delivered.sseq.dseq.ts.pending
    // v2: domain.hash.stream.consumer.delivered.sseq.dseq.ts.pending[.token]
    let skip = match tokens.len() {
        7 => 0,
        n if n >= 9 => 2,
        _ => return Err(invalid()),
    };
    let delivered: u64 = tokens[skip + 2].parse().map_err(|_| invalid())?;
    let stream_sequence = tokens[skip + 3].parse().map_err(|_| invalid())?;
    Ok(AckSubject {
        stream_sequence,
        delivered: u32::try_from(delivered).unwrap_or(u32::MAX),
    })
}

fn header_ms(headers: Option<&HeaderMap>, name: &str) -> Option<u64> {
    headers?.get(name)?.as_str().parse().ok()
}

/// User metadata from headers: everything but `Nats-*` and Gust's own
/// headers; `keep_dead_letter` keeps the dead-letter reason and attempts.
fn metadata_from(headers: Option<&HeaderMap>, keep_dead_letter: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(headers) = headers else {
        return out;
    };
    for (name, values) in headers.iter() {
        let key: &str = name.as_ref();
        let lower = key.to_ascii_lowercase();
        let dead_letter_key = lower == DEAD_LETTER_REASON_KEY || lower == DEAD_LETTER_ATTEMPTS_KEY;
        if lower.starts_with("nats-")
            || (lower.starts_with(RESERVED_METADATA_PREFIX)
                && !(keep_dead_letter && dead_letter_key))
        {
            continue;
        }
        if let Some(value) = values.last() {
            let value = value.as_str();
            let value = if lower == DEAD_LETTER_REASON_KEY {
                unescape_reason(value)
            } else {
                value.to_string()
            };
            out.insert(key.to_string(), value);
        }
    }
    out
}

fn escape_reason(reason: &str) -> String {
    reason
        .replace('\\', "\\\\")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

fn unescape_reason(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('r') => out.push('\r'),
            Some('n') => out.push('\n'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    out
}

/// A message read from the stream (by `peek`, `dead_letters`, ...).
fn stored_message(m: &StreamMessage, attempt: u32, keep_dead_letter: bool) -> Message {
    let headers = Some(&m.headers);
    Message {
        id: headers
            .and_then(|h| h.get(ID_HEADER))
            .map_or_else(|| m.sequence.to_string(), |v| v.as_str().to_string()),
        body: m.payload.to_vec(),
        metadata: metadata_from(headers, keep_dead_letter),
        enqueued_at: header_ms(headers, ENQUEUED_AT_HEADER).map_or_else(
            || SystemTime::from(m.time),
            |ms| UNIX_EPOCH + Duration::from_millis(ms),
        ),
        attempt,
    }
}

fn headers_for(
    id: &str,
    enqueued_at_ms: u64,
    metadata: &BTreeMap<String, String>,
) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (key, value) in metadata {
        let name: async_nats::HeaderName = key.parse().map_err(|_| BackendError::InvalidValue {
            key: key.clone(),
            reason: "not a valid NATS header name".into(),
        })?;
        let value: async_nats::HeaderValue =
            value.parse().map_err(|_| BackendError::InvalidValue {
                key: key.clone(),
                reason: "metadata values may not contain CR or LF on NATS".into(),
            })?;
        headers.insert(name, value);
    }
    headers.insert(ID_HEADER, id);
    headers.insert(ENQUEUED_AT_HEADER, enqueued_at_ms.to_string().as_str());
    Ok(headers)
}

/// Message ids: a random per-process prefix and a counter.
fn new_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        if getrandom::fill(&mut bytes).is_err() {
            // No entropy source: the clock is still unlikely to repeat.
            return now_ms().wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
        u64::from_le_bytes(bytes)
    });
    format!(
        "{prefix:016x}{:08x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

impl NatsQueue {
    fn js(&self) -> &jetstream::Context {
        &self.provider.js
    }

    async fn consumer(&self) -> Result<&consumer::PullConsumer> {
        let stream = self.main.stream(self.js()).await?;
        self.main
            .consumer
            .get_or_try_init(|| async {
                let consumer = stream
                    .get_or_create_consumer(
                        &self.main.consumer_name,
                        self.main.consumer_config(DEFAULT_ACK_WAIT),
                    )
                    .await
                    .map_err(engine)?;
                *self.main.ack_wait.lock().unwrap_or_else(|e| e.into_inner()) =
                    consumer.cached_info().config.ack_wait;
                Ok(consumer)
            })
            .await
    }

    /// The consumer, with its `ack_wait` set to `visibility`.
    async fn consumer_with(&self, visibility: Duration) -> Result<&consumer::PullConsumer> {
        let consumer = self.consumer().await?;
        let wanted = visibility.clamp(MIN_ACK_WAIT, MAX_VISIBILITY);
        let current = *self.main.ack_wait.lock().unwrap_or_else(|e| e.into_inner());
        if current != wanted {
            let stream = self.main.stream(self.js()).await?;
            stream
                .create_consumer(self.main.consumer_config(wanted))
                .await
                .map_err(engine)?;
            *self.main.ack_wait.lock().unwrap_or_else(|e| e.into_inner()) = wanted;
        }
        Ok(consumer)
    }

    /// Sends `kind` for the delivery `receipt` and waits until the server
    /// has processed it.
    async fn settle(&self, receipt: &Receipt, kind: AckKind) -> Result<()> {
        parse_receipt(receipt)?;
        let payload: Bytes = kind.into();
        self.provider
            .client
            .request(receipt.0.clone(), payload)
            .await
            .map_err(engine)?;
        Ok(())
    }

    /// Sends `+ACK` for `receipt` without waiting for the server's reply:
    /// the connection carries it ahead of anything this process sends
    /// later, and a lost ack only means one more delivery.
    async fn ack_now(&self, receipt: &Receipt) -> Result<()> {
        parse_receipt(receipt)?;
        let payload: Bytes = AckKind::Ack.into();
        self.provider
            .client
            .publish(receipt.0.clone(), payload)
            .await
            .map_err(engine)
    }

    /// Everything available now, up to `max`, without waiting.
    async fn fetch_now(
        &self,
        consumer: &consumer::PullConsumer,
        max: usize,
        out: &mut Vec<jetstream::Message>,
    ) -> Result<()> {
        let mut batch = consumer
            .fetch()
            .max_messages(max)
            .messages()
            .await
            .map_err(engine)?;
        while let Some(m) = batch.next().await {
            out.push(m.map_err(engine)?);
        }
        Ok(())
    }

    /// Publishes prepared messages to `subject` and awaits every ack.
    async fn publish_all(&self, subject: &str, messages: Vec<(HeaderMap, Bytes)>) -> Result<()> {
        publish_all(self.js(), subject, messages).await
    }
}

/// Publishes prepared messages to `subject` and awaits every ack.
async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    messages: Vec<(HeaderMap, Bytes)>,
) -> Result<()> {
    let mut acks = Vec::with_capacity(messages.len());
    for (headers, payload) in messages {
        acks.push(
            js.publish_with_headers(subject.to_string(), headers, payload)
                .await
                .map_err(engine)?,
        );
    }
    for ack in acks {
        ack.await.map_err(engine)?;
    }
    Ok(())
}

fn to_delivery(m: jetstream::Message) -> Result<Delivery> {
    let info = m.info().map_err(engine)?;
    let attempt = u32::try_from(info.delivered).unwrap_or(u32::MAX);
    let published = SystemTime::from(info.published);
    let stream_sequence = info.stream_sequence;
    let headers = m.message.headers.as_ref();
    let message = Message {
        id: headers
            .and_then(|h| h.get(ID_HEADER))
            .map_or_else(|| stream_sequence.to_string(), |v| v.as_str().to_string()),
        body: m.message.payload.to_vec(),
        metadata: metadata_from(headers, true),
        enqueued_at: header_ms(headers, ENQUEUED_AT_HEADER)
            .map_or(published, |ms| UNIX_EPOCH + Duration::from_millis(ms)),
        attempt,
    };
    let reply = m
        .message
        .reply
        .as_ref()
        .ok_or_else(|| engine("delivery without an ack subject"))?;
    Ok(Delivery {
        message,
        receipt: Receipt(reply.to_string()),
    })
}

#[async_trait]
impl Queue for NatsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, body: Vec<u8>, metadata: BTreeMap<String, String>) -> Result<String> {
        let mut ids = self.send_batch(vec![(body, metadata)]).await?;
        Ok(ids.pop().expect("one id per message"))
    }

    async fn send_batch(
        &self,
        messages: Vec<(Vec<u8>, BTreeMap<String, String>)>,
    ) -> Result<Vec<String>> {
        self.main.stream(self.js()).await?;
        let now = now_ms();
        let mut ids = Vec::with_capacity(messages.len());
        let mut prepared = Vec::with_capacity(messages.len());
        for (body, metadata) in messages {
            check_metadata(&metadata)?;
            let id = new_id();
            prepared.push((headers_for(&id, now, &metadata)?, Bytes::from(body)));
            ids.push(id);
        }
        self.publish_all(&self.main.subject, prepared).await?;
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
        let consumer = self.consumer_with(visibility).await?;
        let mut got = Vec::new();
        self.fetch_now(consumer, max, &mut got).await?;
        if got.is_empty() && !wait.is_zero() {
            // One message, as soon as there is one; the request then ends,
            // so nothing is delivered to a request nobody reads.
            let mut first = consumer
                .batch()
                .max_messages(1)
                .expires(wait.clamp(Duration::from_millis(10), MAX_VISIBILITY))
                .messages()
                .await
                .map_err(engine)?;
            while let Some(m) = first.next().await {
                got.push(m.map_err(engine)?);
            }
            if !got.is_empty() && max > 1 {
                self.fetch_now(consumer, max - 1, &mut got).await?;
            }
        }
        let mut deliveries = Vec::with_capacity(got.len());
        for m in got {
            if self.main.takes(&m.message.subject) {
                deliveries.push(to_delivery(m)?);
            } else {
                // Sent to another subscription of the topic.
                m.ack().await.map_err(engine)?;
            }
        }
        Ok(deliveries)
    }

    async fn ack(&self, receipt: &Receipt) -> Result<()> {
        self.ack_now(receipt).await
    }

    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()> {
        let delay = (!delay.is_zero()).then_some(delay);
        self.settle(receipt, AckKind::Nak(delay)).await
    }

    async fn extend(&self, receipt: &Receipt, _visibility: Duration) -> Result<()> {
        self.settle(receipt, AckKind::Progress).await
    }

    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()> {
        let at = parse_receipt(receipt)?;
        let stream = self.main.stream(self.js()).await?;
        let stored = stream
            .get_raw_message(at.stream_sequence)
            .await
            .map_err(engine)?;
        let message = stored_message(&stored, at.delivered, false);
        let mut headers = headers_for(
            &message.id,
            header_ms(Some(&stored.headers), ENQUEUED_AT_HEADER).unwrap_or_else(|| {
                SystemTime::from(stored.time)
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64)
            }),
            &message.metadata,
        )?;
        headers.insert(DEAD_LETTER_REASON_KEY, escape_reason(reason).as_str());
        headers.insert(DEAD_LETTER_ATTEMPTS_KEY, at.delivered.to_string().as_str());
        headers.insert(DEAD_LETTERED_AT_HEADER, now_ms().to_string().as_str());
        self.dead.stream(self.js()).await?;
        self.publish_all(&self.dead.subject, vec![(headers, stored.payload)])
            .await?;
        self.settle(receipt, AckKind::Term).await
    }

    async fn add_dead_letter(
        &self,
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
        reason: &str,
        attempts: u32,
    ) -> Result<String> {
        check_metadata(&metadata)?;
        let id = new_id();
        let mut headers = headers_for(&id, now_ms(), &metadata)?;
        headers.insert(DEAD_LETTER_REASON_KEY, escape_reason(reason).as_str());
        headers.insert(DEAD_LETTER_ATTEMPTS_KEY, attempts.to_string().as_str());
        headers.insert(DEAD_LETTERED_AT_HEADER, now_ms().to_string().as_str());
        self.dead.stream(self.js()).await?;
        self.publish_all(&self.dead.subject, vec![(headers, Bytes::from(body))])
            .await?;
        Ok(id)
    }

    async fn peek(&self, max: usize) -> Result<Vec<Message>> {
        let consumer = self.consumer().await?;
        let info = consumer.get_info().await.map_err(engine)?;
        let stream = self.main.stream(self.js()).await?;
        let mut seq = info.delivered.stream_sequence + 1;
        let mut out = Vec::new();
        while out.len() < max {
            match next_stored(stream, &self.main.stream_subject, seq).await? {
                Some(m) => {
                    seq = m.sequence + 1;
                    if self.main.takes(&m.subject) {
                        out.push(stored_message(&m, 0, true));
                    }
                }
                None => break,
            }
        }
        Ok(out)
    }

    async fn depth(&self) -> Result<u64> {
        let consumer = self.consumer().await?;
        Ok(consumer.get_info().await.map_err(engine)?.num_pending)
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>> {
        let Some(stream) = self.dead.existing_stream(self.js()).await? else {
            return Ok(Vec::new());
        };
        let mut seq = 1;
        let mut out = Vec::new();
        while out.len() < max {
            let Some(m) = next_stored(stream, &self.dead.subject, seq).await? else {
                break;
            };
            seq = m.sequence + 1;
            let headers = Some(&m.headers);
            let attempts = headers
                .and_then(|h| h.get(DEAD_LETTER_ATTEMPTS_KEY))
                .and_then(|v| v.as_str().parse().ok())
                .unwrap_or(0);
            let reason = headers
                .and_then(|h| h.get(DEAD_LETTER_REASON_KEY))
                .map(|v| unescape_reason(v.as_str()))
                .unwrap_or_default();
            let message = stored_message(&m, attempts, false);
            let dead_lettered_at = header_ms(headers, DEAD_LETTERED_AT_HEADER)
                .map_or(message.enqueued_at, |ms| {
                    UNIX_EPOCH + Duration::from_millis(ms)
                });
            out.push(DeadLetter {
                message,
                reason,
                attempts,
                dead_lettered_at,
            });
        }
        Ok(out)
    }

    async fn dead_letter_count(&self) -> Result<u64> {
        // The dead-letter queue is a stream of its own, one subject.
        let Some(stream) = self.dead.existing_stream(self.js()).await? else {
            return Ok(0);
        };
        Ok(stream.get_info().await.map_err(engine)?.state.messages)
    }

    async fn redrive(&self) -> Result<u64> {
        let Some(dead) = self.dead.existing_stream(self.js()).await? else {
            return Ok(0);
        };
        self.main.stream(self.js()).await?;
        // Only what is dead now: a redriven message that fails again while
        // this runs is dead-lettered anew and must stay there.
        let last = dead.get_info().await.map_err(engine)?.state.last_sequence;
        let mut seq = 1;
        let mut moved = 0;
        while let Some(m) = next_stored(dead, &self.dead.subject, seq).await? {
            if m.sequence > last {
                break;
            }
            seq = m.sequence + 1;
            let message = stored_message(&m, 0, false);
            let enqueued_at_ms = message
                .enqueued_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let headers = headers_for(&message.id, enqueued_at_ms, &message.metadata)?;
            self.publish_all(&self.main.subject, vec![(headers, m.payload)])
                .await?;
            dead.delete_message(m.sequence).await.map_err(engine)?;
            moved += 1;
        }
        Ok(moved)
    }
}

/// The first message on `subject` at or after `seq`, read without consuming.
async fn next_stored(
    stream: &js_stream::Stream,
    subject: &str,
    seq: u64,
) -> Result<Option<StreamMessage>> {
    match stream
        .raw_message_builder()
        .sequence(seq)
        .next_by_subject(subject.to_string())
        .send()
        .await
    {
        Ok(m) => Ok(Some(m)),
        Err(e) if matches!(e.kind(), RawMessageErrorKind::NoMessageFound) => Ok(None),
        Err(e) => Err(engine(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_injectively() {
        assert_eq!(escape("orders-1"), "orders-1");
        assert_eq!(escape("a.b"), "a_2eb");
        assert_eq!(escape("a_b"), "a_5fb");
        assert_ne!(escape("a.b"), escape("a_2eb"));
        assert_eq!(escape("ü"), "_c3_bc");
        for name in ["orders-1", "a.b", "a_b", "ü", "x_2e"] {
            assert_eq!(unescape(&escape(name)).as_deref(), Some(name));
        }
        assert_eq!(unescape("a_zz"), None);
    }

    #[test]
    fn prefixes_keep_underscores() {
        assert_eq!(escape_prefix("gust_shop_api"), "gust_shop_api");
        assert_eq!(escape_prefix("gust_a.b"), "gust_a_2eb");
        assert_eq!(escape_prefix("_x__y_"), "_x__y_");
        assert_eq!(escape_prefix("gust-ü"), "gust-_c3_bc");
    }

    #[test]
    fn receipts_parse_in_both_formats() {
        let v1 = parse_receipt(&Receipt("$JS.ACK.S.gust.3.17.20.1700000000.4".into())).unwrap();
        assert_eq!((v1.stream_sequence, v1.delivered), (17, 3));
        let v2 = parse_receipt(&Receipt(
            "$JS.ACK.dom.hash.S.gust.2.9.11.1700000000.0.tok".into(),
        ))
        .unwrap();
        assert_eq!((v2.stream_sequence, v2.delivered), (9, 2));
        assert!(parse_receipt(&Receipt("12.1".into())).is_err());
    }

    #[test]
    fn reasons_round_trip_through_headers() {
        let reason = "line 1\r\nline 2 \\ end";
        let escaped = escape_reason(reason);
        assert!(!escaped.contains('\n') && !escaped.contains('\r'));
        assert_eq!(unescape_reason(&escaped), reason);
    }
}
