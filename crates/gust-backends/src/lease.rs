//! Leases: a named claim one holder has for a while, so that work meant to
//! happen once (a timer slot, a singleton consumer) happens on one node.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

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

/// Leases kept in any [`KeyValue`] store, claimed with its
/// [`KeyValue::compare_and_swap`]: as safe across processes as the store's
/// compare-and-swap is atomic (embedded: within one process; NATS KV: across
/// nodes). The store keeps claims across a restart, so a restarted node
/// does not redo what it claimed.
///
/// A claim is the value `holder\nexpires-at-ms` (the claimer's clock: nodes
/// sharing a store need clocks in step to well within a lease's ttl). A
/// release overwrites the claim with an expired one rather than deleting it,
/// since compare-and-swap is the only conditional write a store offers.
pub struct KvLeases {
    store: Arc<dyn KeyValue>,
}

impl KvLeases {
    /// Leases kept in `store`.
    pub fn new(store: Arc<dyn KeyValue>) -> Self {
        Self { store }
    }
}

/// Milliseconds since the Unix epoch on this machine's clock.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The stored form of a claim by `holder` until `expires` (ms).
fn claim(holder: &str, expires: u64) -> Vec<u8> {
    format!("{holder}\n{expires}").into_bytes()
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
        // Each round either claims, sees another live holder, or lost a race
        // to a write that happened after its read (then looks again).
        loop {
            let current = self.store.get(name).await?;
            let now = now_ms();
            if let Some((other, expires)) = current.as_deref().and_then(parse)
                && other != holder
                && expires > now
            {
                return Ok(false);
            }
            let expires = now.saturating_add(ttl.as_millis() as u64);
            if self
                .store
                .compare_and_swap(name, current.as_deref(), claim(holder, expires))
                .await?
            {
                return Ok(true);
            }
        }
    }

    async fn release(&self, name: &str, holder: &str) -> Result<()> {
        loop {
            let Some(current) = self.store.get(name).await? else {
                return Ok(());
            };
            match parse(&current) {
                Some((h, expires)) if h == holder && expires > 0 => {}
                _ => return Ok(()),
            }
            if self
                .store
                .compare_and_swap(name, Some(&current), claim("", 0))
                .await?
            {
                return Ok(());
            }
        }
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_claimers_one_wins() {
        let dir = tempfile::tempdir().unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        let leases = Arc::new(KvLeases::new(kv.open("gust:leases").unwrap()));
        let claims = (0..8).map(|i| {
            let leases = leases.clone();
            tokio::spawn(async move {
                leases
                    .acquire("slot", &format!("node-{i}"), Duration::from_secs(60))
                    .await
                    .unwrap()
            })
        });
        let won = futures::future::join_all(claims).await;
        assert_eq!(won.into_iter().filter(|w| *w.as_ref().unwrap()).count(), 1);
    }
}
