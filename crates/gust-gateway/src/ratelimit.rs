//! Keyed token buckets for per-consumer and per-IP limits.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A bucket's rate and size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BucketParams {
    /// Tokens added per second.
    pub rate: f64,
    /// Bucket capacity (the burst).
    pub burst: f64,
}

/// One bucket: its tokens at `last`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The outcome of taking a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Decision {
    /// Whether the request may pass.
    pub allowed: bool,
    /// Bucket capacity (`RateLimit-Limit`).
    pub limit: u64,
    /// Whole tokens left after this request (`RateLimit-Remaining`).
    pub remaining: u64,
    /// Until the bucket is full again (`RateLimit-Reset`).
    pub reset: Duration,
    /// Until the next token (`Retry-After` when refused).
    pub retry_after: Duration,
}

impl Bucket {
    /// A full bucket.
    pub fn full(p: BucketParams, now: Instant) -> Self {
        Bucket {
            tokens: p.burst,
            last: now,
        }
    }

    /// Refills for the time since the last call, then takes one token if there is one.
    pub fn take(&mut self, p: BucketParams, now: Instant) -> Decision {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * p.rate).min(p.burst);
        self.last = now;
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        let secs = |tokens: f64| Duration::from_secs_f64((tokens.max(0.0) / p.rate).max(0.0));
        Decision {
            allowed,
            limit: p.burst as u64,
            remaining: self.tokens.floor() as u64,
            reset: secs(p.burst - self.tokens),
            retry_after: if allowed {
                Duration::ZERO
            } else {
                secs(1.0 - self.tokens)
            },
        }
    }

    /// Whether the bucket would be full at `now` (so it can be forgotten).
    fn is_full(&self, p: BucketParams, now: Instant) -> bool {
        self.tokens + now.saturating_duration_since(self.last).as_secs_f64() * p.rate >= p.burst
    }
}

const SHARDS: usize = 16;
const PRUNE_ABOVE: usize = 4096;

/// Token buckets keyed by a string (consumer name or client IP).
pub(crate) struct KeyedLimiter {
    params: BucketParams,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl KeyedLimiter {
    pub fn new(params: BucketParams) -> Self {
        KeyedLimiter {
            params,
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes a token from `key`'s bucket.
    pub fn check(&self, key: &str) -> Decision {
        self.check_at(key, Instant::now())
    }

    fn check_at(&self, key: &str, now: Instant) -> Decision {
        let shard = self.hasher.hash_one(key) as usize % SHARDS;
        let mut map = self.shards[shard].lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > PRUNE_ABOVE {
            let p = self.params;
            map.retain(|_, b| !b.is_full(p, now));
        }
        match map.get_mut(key) {
            Some(b) => b.take(self.params, now),
            None => {
                let mut b = Bucket::full(self.params, now);
                let d = b.take(self.params, now);
                map.insert(key.to_string(), b);
                d
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_math() {
        let p = BucketParams {
            rate: 10.0,
            burst: 5.0,
        };
        let t0 = Instant::now();
        let mut b = Bucket::full(p, t0);
        for left in (0..5).rev() {
            let d = b.take(p, t0);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
            assert_eq!(d.limit, 5);
        }
        let d = b.take(p, t0);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        // One token comes back every 100 ms; full again after 500 ms.
        assert!((d.retry_after.as_secs_f64() - 0.1).abs() < 1e-9);
        assert!((d.reset.as_secs_f64() - 0.5).abs() < 1e-9);

        let d = b.take(p, t0 + Duration::from_millis(50));
        assert!(!d.allowed);
        assert!((d.retry_after.as_secs_f64() - 0.05).abs() < 1e-9);
        assert!(b.take(p, t0 + Duration::from_millis(100)).allowed);

        // A long pause refills only up to the burst.
        let d = b.take(p, t0 + Duration::from_secs(60));
        assert!(d.allowed);
        assert_eq!(d.remaining, 4);
    }

    #[test]
    fn keys_are_independent_and_pruned() {
        let l = KeyedLimiter::new(BucketParams {
            rate: 1.0,
            burst: 2.0,
        });
        let t0 = Instant::now();
        assert!(l.check_at("a", t0).allowed);
        assert!(l.check_at("a", t0).allowed);
        assert!(!l.check_at("a", t0).allowed);
        assert!(l.check_at("b", t0).allowed);
        for i in 0..(PRUNE_ABOVE * SHARDS + 100) {
            l.check_at(&format!("k{i}"), t0);
        }
        // Later, full buckets are dropped when a shard grows large.
        let later = t0 + Duration::from_secs(10);
        for i in 0..SHARDS * 16 {
            l.check_at(&format!("z{i}"), later);
        }
        let total: usize = l.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total < PRUNE_ABOVE * SHARDS, "{total}");
    }
}
