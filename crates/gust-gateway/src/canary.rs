//! Weighted canary split with deterministic sticky assignment.

use std::sync::atomic::{AtomicU64, Ordering};

use http::HeaderName;

/// What keeps a client on one side of the split.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sticky {
    /// A request header's value.
    Header(HeaderName),
    /// A query parameter's value.
    Query(String),
    /// The authenticated consumer.
    Consumer,
    /// The client IP.
    Ip,
}

impl Sticky {
    /// Parses `header:<name>`, `query:<name>`, `consumer` or `ip`.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some(("header", name)) => HeaderName::from_bytes(name.trim().as_bytes())
                .map(Sticky::Header)
                .map_err(|_| format!("`{name}` is not a header name")),
            Some(("query", name)) if !name.trim().is_empty() => {
                Ok(Sticky::Query(name.trim().to_string()))
            }
            None if text == "consumer" => Ok(Sticky::Consumer),
            None if text == "ip" => Ok(Sticky::Ip),
            _ => Err(format!(
                "`{text}` is not a sticky key; use \"header:<name>\", \"query:<name>\", \"consumer\" or \"ip\""
            )),
        }
    }
}

/// FNV-1a followed by a SplitMix64 finaliser: stable across processes,
/// platforms and Rust versions, so a key always lands on the same side.
pub(crate) fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    mix(h)
}

pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Resolution of the split: weights are in 1/10,000ths.
const SCALE: u64 = 10_000;

/// A weighted split between a primary and a canary target.
#[derive(Debug)]
pub(crate) struct Split {
    /// Canary share in 1/10,000ths.
    canary: u64,
    pub sticky: Option<Sticky>,
    counter: AtomicU64,
    seed: u64,
}

impl Split {
    /// `weight` is a percentage (0–100).
    pub fn new(weight: f64, sticky: Option<Sticky>, seed: u64) -> Self {
        Split {
            canary: (weight * 100.0).round().clamp(0.0, SCALE as f64) as u64,
            sticky,
            counter: AtomicU64::new(0),
            seed,
        }
    }

    /// Whether this request goes to the canary. With a sticky key the
    /// answer depends only on the key; without one it is pseudo-random.
    pub fn choose_canary(&self, key: Option<&[u8]>) -> bool {
        let h = match key {
            Some(k) => stable_hash(k),
            None => mix(self.seed ^ self.counter.fetch_add(1, Ordering::Relaxed)),
        };
        h % SCALE < self.canary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_close_to_weight() {
        let s = Split::new(10.0, None, 7);
        let n = 100_000;
        let canary = (0..n).filter(|_| s.choose_canary(None)).count();
        let pct = canary as f64 * 100.0 / n as f64;
        assert!((pct - 10.0).abs() < 0.5, "{pct}");
        let keyed = (0..n)
            .filter(|i| s.choose_canary(Some(format!("user-{i}").as_bytes())))
            .count();
        let pct = keyed as f64 * 100.0 / n as f64;
        assert!((pct - 10.0).abs() < 0.5, "{pct}");
    }

    #[test]
    fn sticky_is_deterministic() {
        let a = Split::new(50.0, None, 1);
        let b = Split::new(50.0, None, 2);
        for i in 0..1000 {
            let k = format!("user-{i}");
            assert_eq!(
                a.choose_canary(Some(k.as_bytes())),
                b.choose_canary(Some(k.as_bytes()))
            );
        }
        // Pinned value: the hash must never change between releases.
        assert_eq!(stable_hash(b"alice"), 0xc5d1_556d_6677_4a5c);
        assert_eq!(stable_hash(b""), mix(0xcbf2_9ce4_8422_2325));
        assert!(!Split::new(0.0, None, 0).choose_canary(Some(b"x")));
        assert!(Split::new(100.0, None, 0).choose_canary(Some(b"x")));
    }

    #[test]
    fn sticky_parse() {
        assert_eq!(
            Sticky::parse("header:x-user").unwrap(),
            Sticky::Header(HeaderName::from_static("x-user"))
        );
        assert_eq!(Sticky::parse("query:u").unwrap(), Sticky::Query("u".into()));
        assert_eq!(Sticky::parse("consumer").unwrap(), Sticky::Consumer);
        assert!(Sticky::parse("cookie:x").is_err());
    }
}
