//! Broadcast on NATS core subjects `<prefix>.b.<channel>`: every node
//! subscribed to a channel gets each message published on any node while it
//! is connected (NATS core is at-most-once, which broadcast allows).

use async_trait::async_trait;
use futures::StreamExt;

use super::{engine, escape, escape_prefix};
use crate::Result;
use crate::broadcast::{Broadcast, BroadcastStream};

/// [`Broadcast`] over a NATS connection.
pub struct NatsBroadcast {
    client: async_nats::Client,
    prefix: String,
}

impl NatsBroadcast {
    /// Broadcast on `client`, keeping apps apart by `prefix` (escaped like
    /// queue names except that `_` stays).
    pub fn new(client: async_nats::Client, prefix: &str) -> Self {
        Self {
            client,
            prefix: escape_prefix(prefix),
        }
    }

    fn subject(&self, channel: &str) -> String {
        format!("{}.b.{}", self.prefix, escape(channel))
    }
}

#[async_trait]
impl Broadcast for NatsBroadcast {
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<()> {
        self.client
            .publish(self.subject(channel), payload.into())
            .await
            .map_err(engine)
    }

    async fn subscribe(&self, channel: &str) -> Result<BroadcastStream> {
        let subscriber = self
            .client
            .subscribe(self.subject(channel))
            .await
            .map_err(engine)?;
        // Make sure the server has registered the subscription before the
        // caller relies on it (e.g. another node publishes right after): the
        // server handles one connection's commands in order, so once a probe
        // published after the SUB comes back, the SUB is in place. (A flush
        // only empties the client's buffer.)
        let probe = self.client.new_inbox();
        let mut echo = self.client.subscribe(probe.clone()).await.map_err(engine)?;
        self.client
            .publish(probe, bytes::Bytes::new())
            .await
            .map_err(engine)?;
        tokio::time::timeout(std::time::Duration::from_secs(10), echo.next())
            .await
            .map_err(|_| engine("the server did not confirm the subscription within 10 s"))?;
        Ok(Box::pin(subscriber.map(|m| m.payload.to_vec())))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn two_connections_see_each_others_messages() {
        let Ok(a) = async_nats::connect("nats://127.0.0.1:4222").await else {
            panic!("NATS must run on 127.0.0.1:4222 (scripts/setup.sh --services)");
        };
        let b = async_nats::connect("nats://127.0.0.1:4222").await.unwrap();
        let prefix = format!("bcast-test-{}", std::process::id());
        let node_a = NatsBroadcast::new(a, &prefix);
        let node_b = NatsBroadcast::new(b, &prefix);
        let mut on_b = node_b.subscribe("sse/orders").await.unwrap();
        let mut on_a = node_a.subscribe("sse/orders").await.unwrap();
        node_a.publish("sse/orders", b"hi".to_vec()).await.unwrap();
        for s in [&mut on_a, &mut on_b] {
            let got = tokio::time::timeout(Duration::from_secs(5), s.next()).await;
            assert_eq!(got.unwrap().unwrap(), b"hi");
        }
    }
}
