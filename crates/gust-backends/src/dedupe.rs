//! Dedupe: "has this id been seen within the window?", so that an event
//! delivered twice (a retried publish, a redelivered webhook) is handled
//! once.

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::Result;

/// Remembers ids for a window fixed when it is made.
#[async_trait]
pub trait Dedupe: Send + Sync {
    /// `true` the first time `key` is offered within the window (and records
    /// it, atomically: of two callers offering the same new key at once,
    /// exactly one gets `true`); `false` while it is remembered. A key is
    /// forgotten one window after it was first recorded: seeing it again
    /// does not extend that.
    async fn first_seen(&self, key: &str) -> Result<bool>;

    /// Forgets `key`, so that it is new again: a caller that recorded a key
    /// and then failed to do the work it stands for (a publish that did not
    /// store) lets the retry through.
    async fn forget(&self, key: &str) -> Result<()>;

    /// When the window lives in this process's memory: how many keys it
    /// remembers and the bytes they cost. `None` (the default) for an
    /// engine that keeps it elsewhere.
    fn in_memory(&self) -> Option<(usize, usize)> {
        None
    }
}

/// What engines store instead of a key: the first 16 bytes of its SHA-256,
/// so a huge key (an event `source` of a megabyte) costs 16 bytes and any
/// text becomes a safe engine key. Two keys collide with probability
/// about n²/2¹²⁹ for n remembered keys.
pub fn key_digest(key: &str) -> [u8; 16] {
    let full = Sha256::digest(key.as_bytes());
    let mut out = [0; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// [`key_digest`] as 32 lower-case hex digits.
pub fn key_digest_hex(key: &str) -> String {
    key_digest(key).iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_fixed_size_and_distinct() {
        let big = "s".repeat(900_000);
        assert_eq!(key_digest_hex(&big).len(), 32);
        assert_ne!(key_digest("a"), key_digest("b"));
        assert_eq!(key_digest("a"), key_digest("a"));
    }
}
