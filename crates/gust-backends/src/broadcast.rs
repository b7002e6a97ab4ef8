//! Broadcast: best-effort signals to every node (server-sent events, cache
//! invalidations). Unlike a topic, nothing is stored: a subscriber sees what
//! is published on its channel while it is subscribed, on any node, and
//! nothing from before; a slow subscriber may miss messages.

use async_trait::async_trait;
use futures::stream::BoxStream;

use crate::Result;

/// Messages of one channel, as a stream of payloads.
pub type BroadcastStream = BoxStream<'static, Vec<u8>>;

/// Publishes to and subscribes on named channels.
#[async_trait]
pub trait Broadcast: Send + Sync {
    /// Sends `payload` to every current subscriber of `channel` (on every
    /// node, the publishing one included).
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<()>;

    /// Messages published on `channel` from now on. Dropping the stream
    /// unsubscribes.
    async fn subscribe(&self, channel: &str) -> Result<BroadcastStream>;
}
