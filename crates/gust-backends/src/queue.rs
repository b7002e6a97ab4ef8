//! Work queues: at-least-once delivery with leases, retries and a
//! dead-letter queue (`<name>-deadletter`).
//!
//! A consumer `receive`s deliveries, each leased for a visibility timeout;
//! it then `ack`s (done), `nack`s (retry after a delay), `extend`s the lease
//! while still working, or `dead_letter`s it with a reason. A delivery whose
//! lease runs out is delivered again. Nothing `send` acknowledged is lost.
//!
//! A receipt stays usable until its delivery is settled (`ack`, `nack`,
//! `dead_letter`) or the message is delivered again; after that the embedded
//! backend answers [`BackendError::StaleReceipt`](crate::BackendError::StaleReceipt).
//! Engines that settle by message rather than by delivery (NATS JetStream)
//! apply a stale receipt to the current delivery instead: see each backend's
//! docs for such differences.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::Result;

/// A message as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Unique id assigned by the queue on `send`.
    pub id: String,
    /// The payload.
    pub body: Vec<u8>,
    /// Producer-supplied attributes (content type, trace context, ...).
    pub metadata: BTreeMap<String, String>,
    /// When it was sent.
    pub enqueued_at: SystemTime,
    /// How many times it has been delivered, counting the current delivery
    /// (1 on the first delivery; 0 when peeked and never delivered).
    pub attempt: u32,
}

/// A leased message handed to a consumer.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Identifies this lease to `ack`/`nack`/`extend`/`dead_letter`.
    pub receipt: Receipt,
}

/// An opaque lease handle (backend-defined contents): one delivery of one
/// message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Receipt(pub String);

/// A message in the dead-letter queue, with why it got there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The message as it was last delivered.
    pub message: Message,
    /// The failure that dead-lettered it.
    pub reason: String,
    /// Deliveries made before giving up.
    pub attempts: u32,
    /// When it was dead-lettered.
    pub dead_lettered_at: SystemTime,
}

/// One named queue.
#[async_trait]
pub trait Queue: Send + Sync {
    /// The queue's name.
    fn name(&self) -> &str;

    /// Appends a message durably and returns its id.
    ///
    /// Metadata keys starting with [`RESERVED_METADATA_PREFIX`] are rejected
    /// with `InvalidValue`.
    async fn send(&self, body: Vec<u8>, metadata: BTreeMap<String, String>) -> Result<String>;

    /// Appends several messages durably (one round trip where the engine
    /// allows) and returns their ids in order.
    async fn send_batch(
        &self,
        messages: Vec<(Vec<u8>, BTreeMap<String, String>)>,
    ) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(messages.len());
        for (body, metadata) in messages {
            ids.push(self.send(body, metadata).await?);
        }
        Ok(ids)
    }

    /// Leases up to `max` available messages for `visibility`, waiting up to
    /// `wait` for the first one. Returns an empty list when none came.
    ///
    /// Returns as soon as at least one message is available (it does not
    /// wait to fill `max`). Each delivery's `attempt` is counted durably
    /// before it is handed out.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Done: removes the message for good. It is never delivered again by
    /// this process; a crash within moments of the ack may deliver it once
    /// more after a restart (the embedded backend writes acks to disk within
    /// 20 ms, without making each ack wait for its own disk flush).
    async fn ack(&self, receipt: &Receipt) -> Result<()>;

    /// Failed for now: makes the message available again after `delay`
    /// (at once for a zero delay). The receipt is settled by this.
    async fn nack(&self, receipt: &Receipt, delay: Duration) -> Result<()>;

    /// Still working: renews the lease for another `visibility`.
    async fn extend(&self, receipt: &Receipt, visibility: Duration) -> Result<()>;

    /// Gives up: moves the message to the dead-letter queue with `reason`.
    async fn dead_letter(&self, receipt: &Receipt, reason: &str) -> Result<()>;

    /// Puts a message straight into the dead letters, for triggers whose
    /// source is not this queue (stream, change feed, blob) and that gave up
    /// on an event after `attempts` tries: listed and redriven like any other
    /// dead letter, and a redrive puts it on this queue. Returns its id.
    ///
    /// Metadata is checked as for `send`.
    async fn add_dead_letter(
        &self,
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
        reason: &str,
        attempts: u32,
    ) -> Result<String>;

    /// Up to `max` waiting messages, oldest first, without leasing them.
    /// `attempt` is the number of deliveries so far.
    async fn peek(&self, max: usize) -> Result<Vec<Message>>;

    /// Messages waiting (not counting leased or dead-lettered ones).
    async fn depth(&self) -> Result<u64>;

    /// Up to `max` dead letters, oldest first. They are also messages of
    /// the queue [`dead_letter_name`]`(name)`, where received or peeked ones
    /// carry [`DEAD_LETTER_REASON_KEY`] and [`DEAD_LETTER_ATTEMPTS_KEY`] in
    /// their metadata.
    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>>;

    /// How many dead letters the queue holds: all of them, however many
    /// (where [`Queue::dead_letters`] lists at most `max`).
    async fn dead_letter_count(&self) -> Result<u64> {
        Ok(self.dead_letters(usize::MAX).await?.len() as u64)
    }

    /// Moves every dead letter back onto the queue (attempts reset) and
    /// returns how many moved.
    async fn redrive(&self) -> Result<u64>;
}

/// Opens queues by name.
#[async_trait]
pub trait QueueProvider: Send + Sync {
    /// The queue called `name`, created on first use.
    async fn queue(&self, name: &str) -> Result<Arc<dyn Queue>>;
}

/// Metadata key under which a message received or peeked from a dead-letter
/// queue carries the reason it was dead-lettered.
pub const DEAD_LETTER_REASON_KEY: &str = "gust-dead-letter-reason";

/// Metadata key under which a message received or peeked from a dead-letter
/// queue carries how many deliveries were made before it was dead-lettered.
pub const DEAD_LETTER_ATTEMPTS_KEY: &str = "gust-dead-letter-attempts";

/// Metadata keys starting with this are Gust's own; `send` rejects them.
pub const RESERVED_METADATA_PREFIX: &str = "gust-";

/// Rejects metadata that a producer may not set.
pub(crate) fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<()> {
    for key in metadata.keys() {
        if key.is_empty()
            || key
                .to_ascii_lowercase()
                .starts_with(RESERVED_METADATA_PREFIX)
        {
            return Err(crate::BackendError::InvalidValue {
                key: key.clone(),
                reason: format!(
                    "metadata keys must be non-empty and must not start with `{RESERVED_METADATA_PREFIX}`"
                ),
            });
        }
    }
    Ok(())
}

/// The dead-letter queue's name for `queue`.
pub fn dead_letter_name(queue: &str) -> String {
    format!("{queue}-deadletter")
}
