//! Streams: partitioned append-only logs with consumer checkpoints.
//!
//! A stream has a fixed number of partitions, chosen when it is created.
//! [`Stream::append`] puts a record in the partition [`partition_for`] its
//! key, at the next offset of that partition: records with the same key keep
//! their order. Offsets of a partition start at 0 and grow by one per record;
//! they are never reused.
//!
//! Readers pull records by `(partition, offset)`; nothing is removed by
//! reading. A consumer (e.g. a function's stream trigger) keeps its position
//! per partition with [`Stream::commit`] and finds it again with
//! [`Stream::checkpoint`], after a restart too.
//!
//! Retention ([`Retention`]) removes the oldest records of a partition once
//! it holds more than `max_bytes` or once they are older than `max_age`. A
//! read from an offset that retention removed starts at the earliest
//! offset still kept.
//!
//! A record that a consumer gives up on goes to the dead-letter stream
//! [`dead_letter_name`]`(name)` through [`Stream::dead_letter`], with the
//! reason and attempts in its metadata.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::Result;

pub use crate::queue::{
    DEAD_LETTER_ATTEMPTS_KEY, DEAD_LETTER_REASON_KEY, RESERVED_METADATA_PREFIX, dead_letter_name,
};

/// Partitions of a stream created without saying how many.
pub const DEFAULT_PARTITIONS: u32 = 4;

/// Most partitions a stream may have.
pub const MAX_PARTITIONS: u32 = 1024;

/// Metadata key under which a dead-lettered record carries the partition it
/// came from.
pub const DEAD_LETTER_PARTITION_KEY: &str = "gust-dead-letter-partition";

/// Metadata key under which a dead-lettered record carries the offset it had
/// in the partition it came from.
pub const DEAD_LETTER_OFFSET_KEY: &str = "gust-dead-letter-offset";

/// One record as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    /// The partition it is in.
    pub partition: u32,
    /// Its offset in that partition.
    pub offset: u64,
    /// The key it was appended with (decides the partition).
    pub key: String,
    /// The payload.
    pub body: Vec<u8>,
    /// Producer-supplied attributes (content type, trace context, ...).
    pub metadata: BTreeMap<String, String>,
    /// When it was appended (millisecond precision).
    pub appended_at: SystemTime,
}

/// Where an appended record went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Position {
    /// The partition.
    pub partition: u32,
    /// The offset in that partition.
    pub offset: u64,
}

/// The offsets a partition holds: `earliest..next`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionOffsets {
    /// The oldest offset still kept (equal to `next` when the partition is
    /// empty).
    pub earliest: u64,
    /// The offset the next append gets: "latest" for a consumer that only
    /// wants new records.
    pub next: u64,
}

/// When a stream drops its oldest records. Both limits apply to each
/// partition separately; `None` means no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Most bytes (keys, bodies and metadata as stored) one partition keeps.
    /// The newest record is always kept, however large.
    pub max_bytes: Option<u64>,
    /// Records older than this are removed.
    pub max_age: Option<Duration>,
}

/// How a stream is created, and its retention while open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Partitions (1 to [`MAX_PARTITIONS`]). Fixed once the stream exists:
    /// opening an existing stream with another count is an error, because
    /// keys would move to other partitions.
    pub partitions: u32,
    /// Retention limits.
    pub retention: Retention,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            partitions: DEFAULT_PARTITIONS,
            retention: Retention::default(),
        }
    }
}

/// One named stream.
#[async_trait]
pub trait Stream: Send + Sync {
    /// The stream's name.
    fn name(&self) -> &str;

    /// How many partitions it has (numbered `0..partitions()`).
    fn partitions(&self) -> u32;

    /// The partition records with `key` go to.
    fn partition_for(&self, key: &str) -> u32 {
        partition_for(key, self.partitions())
    }

    /// Appends a record to the partition of `key` and returns where it went.
    /// Once this returns, the record is on disk (or replicated) and survives
    /// a crash.
    ///
    /// Metadata keys starting with [`RESERVED_METADATA_PREFIX`] are rejected
    /// with `InvalidValue`.
    async fn append(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: BTreeMap<String, String>,
    ) -> Result<Position> {
        let mut at = self
            .append_batch(vec![(key.to_string(), body, metadata)])
            .await?;
        Ok(at.pop().expect("one position per record"))
    }

    /// Appends `(key, body, metadata)` records durably, in one write where
    /// the engine allows, and returns their positions in order. Records of
    /// one partition get consecutive offsets in the order given.
    async fn append_batch(
        &self,
        records: Vec<(String, Vec<u8>, BTreeMap<String, String>)>,
    ) -> Result<Vec<Position>>;

    /// Up to `max` records of `partition` from offset `from` on, in offset
    /// order. Starts at the earliest offset kept when `from` is below it;
    /// empty when nothing is at or after `from` yet. Does not wait.
    async fn read(&self, partition: u32, from: u64, max: usize) -> Result<Vec<StreamRecord>>;

    /// The offsets `partition` holds now.
    async fn offsets(&self, partition: u32) -> Result<PartitionOffsets>;

    /// Waits until `partition` holds a record at offset `from` or later, at
    /// most `timeout`. Returns whether one is there, so a consumer that read
    /// everything up to `from` sleeps until there is more instead of polling.
    async fn wait_for_append(&self, partition: u32, from: u64, timeout: Duration) -> Result<bool>;

    /// The offset `consumer` committed for `partition` (the next one it
    /// wants), or `None` if it never committed one.
    async fn checkpoint(&self, consumer: &str, partition: u32) -> Result<Option<u64>>;

    /// Remembers that `consumer` handled every record of `partition` before
    /// `next`. Survives a restart; a crash within moments of the commit may
    /// lose it (the embedded backend writes it to disk within 20 ms), so the
    /// consumer sees those records again: at least once.
    ///
    /// `next` beyond [`PartitionOffsets::next`] is rejected with
    /// `InvalidValue`.
    async fn commit(&self, consumer: &str, partition: u32, next: u64) -> Result<()>;

    /// Appends `record` to the dead-letter stream [`dead_letter_name`] of
    /// this one, under the same key, with [`DEAD_LETTER_REASON_KEY`],
    /// [`DEAD_LETTER_ATTEMPTS_KEY`], [`DEAD_LETTER_PARTITION_KEY`] and
    /// [`DEAD_LETTER_OFFSET_KEY`] added to its metadata. Durable like
    /// `append`.
    async fn dead_letter(
        &self,
        record: &StreamRecord,
        reason: &str,
        attempts: u32,
    ) -> Result<Position>;

    /// Applies the retention limits now and returns how many records were
    /// removed. Backends also apply them on append (and the embedded one
    /// about once a second for `max_age`), so calling this is only needed to
    /// see the effect at once.
    async fn apply_retention(&self) -> Result<u64>;
}

/// Opens streams by name.
#[async_trait]
pub trait StreamProvider: Send + Sync {
    /// The stream called `name`: as it is if it exists (or was opened
    /// before), otherwise created with [`StreamConfig::default`].
    async fn stream(&self, name: &str) -> Result<Arc<dyn Stream>>;

    /// The stream called `name`, created with `config` if new; its retention
    /// becomes `config.retention`. Fails with `InvalidValue` when it exists
    /// with another partition count.
    async fn stream_with(&self, name: &str, config: StreamConfig) -> Result<Arc<dyn Stream>>;
}

/// The partition of `key` among `partitions`: the 64-bit FNV-1a hash of the
/// key's UTF-8 bytes modulo `partitions` (0 when `partitions` is 0).
///
/// This function is part of the storage format: it must never change, or
/// keys would move to other partitions and lose their order.
pub fn partition_for(key: &str, partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    (fnv1a64(key.as_bytes()) % u64::from(partitions)) as u32
}

/// 64-bit FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// Rejects a partition count outside `1..=MAX_PARTITIONS`.
pub(crate) fn check_partitions(name: &str, partitions: u32) -> Result<()> {
    if partitions == 0 || partitions > MAX_PARTITIONS {
        return Err(crate::BackendError::InvalidValue {
            key: name.to_string(),
            reason: format!("a stream has 1 to {MAX_PARTITIONS} partitions, not {partitions}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn partitions_are_stable_and_in_range() {
        assert_eq!(
            partition_for("a", 4),
            (0xaf63_dc4c_8601_ec8c_u64 % 4) as u32
        );
        assert_eq!(partition_for("anything", 1), 0);
        assert_eq!(partition_for("x", 0), 0);
        for i in 0..1000 {
            assert!(partition_for(&format!("device-{i}"), 7) < 7);
        }
    }
}
