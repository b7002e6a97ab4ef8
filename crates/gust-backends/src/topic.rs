//! Topics: publish/subscribe with durable subscriptions.
//!
//! A topic delivers every message published to it to each of its
//! subscriptions. A subscription is a durable cursor of its own, used through
//! the [`Queue`] trait: leases, acks, retries with delay and a dead-letter
//! queue, independent of every other subscription. A message reaches the
//! subscriptions that exist when it is published; one published while a
//! topic has no subscription is dropped (accepted, delivered to nobody).
//!
//! Filtering (CloudEvents type, subject, attributes) is the subscriber's
//! business: every subscription sees every message and skips what it does not
//! want, so that whoever consumes a subscription applies its current filter.
//!
//! A subscription `s` of topic `t` has the queue name
//! [`subscription_queue`]`(t, s)` (`<t>--<s>`); its dead letters are in the
//! queue `<t>--<s>-deadletter`. `send` on a subscription's queue delivers to
//! that subscription only (that is how a dead letter is redriven).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use crate::{Queue, Result};

/// The queue name of subscription `subscription` of `topic`.
pub fn subscription_queue(topic: &str, subscription: &str) -> String {
    format!("{topic}--{subscription}")
}

/// One named topic.
#[async_trait]
pub trait Topic: Send + Sync {
    /// The topic's name.
    fn name(&self) -> &str;

    /// Stores `messages` durably, in order, for every current subscription,
    /// and returns once all are stored. An error means some may be stored and
    /// others not: publishing again is safe for consumers that tolerate
    /// duplicates (delivery is at-least-once anyway).
    ///
    /// Metadata keys starting with
    /// [`RESERVED_METADATA_PREFIX`](crate::queue::RESERVED_METADATA_PREFIX)
    /// are rejected with `InvalidValue`.
    async fn publish(&self, messages: Vec<(Vec<u8>, BTreeMap<String, String>)>) -> Result<()>;

    /// The durable subscription `name`, created when missing: it receives
    /// every message published from its creation on, until
    /// [`unsubscribe`](Topic::unsubscribe). Subscribing again (from this or
    /// another process) returns the same cursor.
    async fn subscribe(&self, name: &str) -> Result<Arc<dyn Queue>>;

    /// Removes subscription `name` and the messages it has not consumed (its
    /// dead letters stay). Removing one that does not exist is fine.
    async fn unsubscribe(&self, name: &str) -> Result<()>;

    /// The names of the current subscriptions, sorted.
    async fn subscriptions(&self) -> Result<Vec<String>>;
}

/// Opens topics by name.
#[async_trait]
pub trait TopicProvider: Send + Sync {
    /// The topic called `name`, created on first use.
    async fn topic(&self, name: &str) -> Result<Arc<dyn Topic>>;

    /// The names of the topics that have at least one subscription, sorted.
    async fn topics(&self) -> Result<Vec<String>>;
}
