//! Dedupe in this process's memory: a window of key digests bounded by
//! age, count and bytes (the logic of the topic publisher's former
//! `DedupeWindow`, storing a 16-byte digest instead of the key, since 80
//! events with a 900 KB `source` raised RSS by 110 MB when keys were kept;
//! and unlike it, a duplicate no longer pushes the oldest key out).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::Result;
use crate::dedupe::{Dedupe, key_digest};

/// Bytes one remembered key costs, counted generously: the digest and the
/// time in the map and in the order queue, plus the map's own overhead.
pub const ENTRY_BYTES: usize = 2 * (16 + std::mem::size_of::<Instant>()) + 32;

/// [`Dedupe`] for one process (not shared between nodes; forgotten on
/// restart). When more keys arrive within the window than the bounds
/// allow, the oldest are forgotten early (so a duplicate of them would pass).
pub struct EmbeddedDedupe {
    window: Mutex<DedupeWindow>,
}

impl EmbeddedDedupe {
    /// Remembers keys for `window`, at most `max_keys` of them and at most
    /// `max_bytes` of memory (see [`ENTRY_BYTES`]), whichever is fewer.
    pub fn new(window: Duration, max_keys: usize, max_bytes: usize) -> Self {
        let capacity = max_keys.min(max_bytes / ENTRY_BYTES).max(1);
        Self {
            window: Mutex::new(DedupeWindow::new(window, capacity)),
        }
    }

    /// How many keys are remembered right now (expired ones are dropped on
    /// the next call of [`Dedupe::first_seen`]).
    pub fn len(&self) -> usize {
        self.lock().order.len()
    }

    /// Whether no key is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the remembered keys cost, by [`ENTRY_BYTES`].
    pub fn memory_bytes(&self) -> usize {
        self.len() * ENTRY_BYTES
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DedupeWindow> {
        // The window stays consistent at every await-free step, so a panic
        // elsewhere while holding it leaves nothing half-done.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Dedupe for EmbeddedDedupe {
    async fn first_seen(&self, key: &str) -> Result<bool> {
        let digest = key_digest(key);
        Ok(self.lock().first_time(digest, Instant::now()))
    }

    async fn forget(&self, key: &str) -> Result<()> {
        // Its place in `order` stays and is skipped when it comes up.
        self.lock().seen.remove(&key_digest(key));
        Ok(())
    }

    fn in_memory(&self) -> Option<(usize, usize)> {
        let keys = self.len();
        Some((keys, keys * ENTRY_BYTES))
    }
}

/// Digests seen within a time window, oldest first.
struct DedupeWindow {
    window: Duration,
    capacity: usize,
    seen: HashMap<[u8; 16], Instant>,
    order: VecDeque<([u8; 16], Instant)>,
}

impl DedupeWindow {
    fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            seen: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// True the first time `digest` is offered within the window. Only a
    /// new key makes room for itself by forgetting the oldest (a duplicate
    /// pushes nothing out).
    fn first_time(&mut self, digest: [u8; 16], now: Instant) -> bool {
        while let Some((_, at)) = self.order.front() {
            if now.duration_since(*at) < self.window {
                break;
            }
            self.forget_oldest();
        }
        if self.seen.contains_key(&digest) {
            return false;
        }
        while self.order.len() >= self.capacity {
            self.forget_oldest();
        }
        self.seen.insert(digest, now);
        self.order.push_back((digest, now));
        true
    }

    fn forget_oldest(&mut self) {
        if let Some((key, at)) = self.order.pop_front()
            && self.seen.get(&key) == Some(&at)
        {
            self.seen.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(key: &str) -> [u8; 16] {
        key_digest(key)
    }

    #[test]
    fn forgets_after_the_window() {
        let mut w = DedupeWindow::new(Duration::from_secs(10), 100);
        let t0 = Instant::now();
        assert!(w.first_time(d("s\n1"), t0));
        assert!(!w.first_time(d("s\n1"), t0 + Duration::from_secs(5)));
        assert!(w.first_time(d("other\n1"), t0));
        assert!(w.first_time(d("s\n1"), t0 + Duration::from_secs(11)));
    }

    #[test]
    fn oldest_forgotten_beyond_capacity() {
        let mut w = DedupeWindow::new(Duration::from_secs(60), 2);
        let t0 = Instant::now();
        assert!(w.first_time(d("a"), t0));
        assert!(w.first_time(d("b"), t0));
        assert!(w.first_time(d("c"), t0));
        assert!(!w.first_time(d("c"), t0));
        assert!(!w.first_time(d("b"), t0), "a duplicate pushes nothing out");
        assert!(w.first_time(d("a"), t0), "a was pushed out by c");
        assert!(!w.first_time(d("c"), t0));
        assert!(w.first_time(d("b"), t0), "b was pushed out by a");
    }

    #[tokio::test]
    async fn bounded_by_bytes_and_huge_keys_cost_a_digest() {
        let dedupe = EmbeddedDedupe::new(Duration::from_secs(60), 1_000_000, 10 * ENTRY_BYTES);
        let source = "x".repeat(900_000);
        for i in 0..80 {
            let key = format!("{source}\n{i}");
            assert!(dedupe.first_seen(&key).await.unwrap());
            assert!(!dedupe.first_seen(&key).await.unwrap());
        }
        assert_eq!(dedupe.len(), 10);
        assert_eq!(dedupe.memory_bytes(), 10 * ENTRY_BYTES);
    }
}
