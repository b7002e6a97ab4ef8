//! Broadcast within one process: a tokio broadcast channel per channel name.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::Result;
use crate::broadcast::{Broadcast, BroadcastStream};

/// Messages a slow subscriber may fall behind before it misses some.
const CAPACITY: usize = 1024;

/// [`Broadcast`] to the subscribers of this process only.
#[derive(Default)]
pub struct LocalBroadcast {
    channels: Mutex<HashMap<String, broadcast::Sender<Vec<u8>>>>,
}

impl LocalBroadcast {
    fn sender(&self, channel: &str) -> broadcast::Sender<Vec<u8>> {
        let mut channels = self.channels.lock().expect("broadcast lock");
        // Forget channels nobody listens to any more.
        channels.retain(|_, tx| tx.receiver_count() > 0);
        channels
            .entry(channel.to_string())
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .clone()
    }
}

#[async_trait]
impl Broadcast for LocalBroadcast {
    async fn publish(&self, channel: &str, payload: Vec<u8>) -> Result<()> {
        // No subscriber is not an error: nothing is stored.
        let _ = self.sender(channel).send(payload);
        Ok(())
    }

    async fn subscribe(&self, channel: &str) -> Result<BroadcastStream> {
        let rx = self.sender(channel).subscribe();
        Ok(Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            loop {
                match rx.recv().await {
                    Ok(payload) => return Some((payload, rx)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })))
    }
}

#[cfg(test)]
mod tests {
    use futures::StreamExt;

    use super::*;

    #[tokio::test]
    async fn subscribers_of_a_channel_see_what_is_published_after_they_subscribed() {
        let b = LocalBroadcast::default();
        b.publish("a", b"before".to_vec()).await.unwrap();
        let mut one = b.subscribe("a").await.unwrap();
        let mut two = b.subscribe("a").await.unwrap();
        let mut other = b.subscribe("b").await.unwrap();
        b.publish("a", b"x".to_vec()).await.unwrap();
        b.publish("b", b"y".to_vec()).await.unwrap();
        assert_eq!(one.next().await.unwrap(), b"x");
        assert_eq!(two.next().await.unwrap(), b"x");
        assert_eq!(other.next().await.unwrap(), b"y");
    }
}
