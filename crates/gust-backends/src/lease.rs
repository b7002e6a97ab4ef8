//! Leases: a named claim one holder has for a while, so that work meant to
//! happen once (a timer slot, a singleton consumer) happens on one node.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::{KeyValue, Result};

/// Named, expiring claims.
#[async_trait]
pub trait Lease: Send + Sync {
    /// Claims `name` for `holder` for `ttl`. `true` when `holder` now holds
    /// it (it was free, expired, or already `holder`'s: then it is
    /// renewed); `false` when someone else holds it.
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool>;
    /// Gives `name` up if `holder` holds it.
    async fn release(&self, name: &str, holder: &str) -> Result<()>;
}

/// Leases kept in a key-value store of one process (the embedded backend):
/// a lock makes check-and-claim atomic, the store makes claims survive a
/// restart (a restarted node does not redo what it claimed).
pub struct KvLeases {
    store: Arc<dyn KeyValue>,
    lock: Mutex<()>,
}

impl KvLeases {
    /// Leases kept in `store`.
    pub fn new(store: Arc<dyn KeyValue>) -> Self {
        Self {
            store,
            lock: Mutex::new(()),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// `(holder, expires at ms)` from a stored `holder\nexpiry` value.
fn parse(value: &[u8]) -> Option<(String, u64)> {
    let text = std::str::from_utf8(value).ok()?;
    let (holder, expiry) = text.rsplit_once('\n')?;
    Some((holder.to_string(), expiry.parse().ok()?))
}

#[async_trait]
impl Lease for KvLeases {
    async fn acquire(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool> {
        let _one_at_a_time = self.lock.lock().await;
        let now = now_ms();
        if let Some((current, expires)) = self.store.get(name).await?.as_deref().and_then(parse)
            && current != holder
            && expires > now
        {
            return Ok(false);
        }
        let expires = now + ttl.as_millis() as u64;
        self.store
            .set(name, format!("{holder}\n{expires}").into_bytes())
            .await?;
        Ok(true)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        let _one_at_a_time = self.lock.lock().await;
        if let Some((current, _)) = self.store.get(name).await?.as_deref().and_then(parse)
            && current == holder
        {
            self.store.delete(name).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KeyValueProvider;
    use crate::embedded::EmbeddedKv;

    #[tokio::test]
    async fn one_holder_at_a_time_until_expiry_or_release() {
        let dir = tempfile::tempdir().unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        let leases = KvLeases::new(kv.open("gust:leases").unwrap());
        let long = Duration::from_secs(60);
        assert!(leases.acquire("timer@1", "node-a", long).await.unwrap());
        assert!(!leases.acquire("timer@1", "node-b", long).await.unwrap());
        assert!(
            leases.acquire("timer@1", "node-a", long).await.unwrap(),
            "renewal"
        );
        assert!(leases.acquire("timer@2", "node-b", long).await.unwrap());
        leases.release("timer@1", "node-b").await.unwrap(); // not b's: no effect
        assert!(!leases.acquire("timer@1", "node-b", long).await.unwrap());
        leases.release("timer@1", "node-a").await.unwrap();
        assert!(leases.acquire("timer@1", "node-b", long).await.unwrap());
        // An expired claim is free.
        assert!(
            leases
                .acquire("short", "node-a", Duration::ZERO)
                .await
                .unwrap()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(leases.acquire("short", "node-b", long).await.unwrap());
    }
}
