//! Document tables and their change feeds.
//!
//! A [`Table`] stores documents (bytes, JSON by convention) by key. Every
//! write gets the next sequence number of the table and is recorded in the
//! table's [`ChangeFeed`]: inserts and updates as [`ChangeKind::Upsert`],
//! deletes as [`ChangeKind::Delete`]. Reading the feed in sequence order
//! therefore sees the changes of each key in the order they happened.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use crate::Result;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    /// Its key.
    pub key: String,
    /// Its body.
    pub body: Vec<u8>,
    /// Sequence number of the write that produced this version.
    pub version: u64,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// The key was inserted or replaced.
    Upsert,
    /// The key was deleted.
    Delete,
}

impl ChangeKind {
    /// `upsert` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upsert => "upsert",
            Self::Delete => "delete",
        }
    }
}

/// One entry of a change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Position in the feed (1, 2, 3, ... per table).
    pub sequence: u64,
    /// The key changed.
    pub key: String,
    /// Upsert or delete.
    pub kind: ChangeKind,
    /// The new body (`None` for a delete).
    pub body: Option<Vec<u8>>,
    /// When the write happened.
    pub at: SystemTime,
}

/// The ordered log of a table's writes.
#[async_trait]
pub trait ChangeFeed: Send + Sync {
    /// Up to `max` changes with a sequence number greater than `after`, in order.
    async fn changes(&self, after: u64, max: usize) -> Result<Vec<Change>>;
    /// The sequence number of the newest change (0 when there is none).
    async fn last_sequence(&self) -> Result<u64>;
    /// Resolves when a change after `after` exists or `timeout` passed.
    async fn wait_for_change(&self, after: u64, timeout: Duration);
}

/// A document table; its writes feed its [`ChangeFeed`].
#[async_trait]
pub trait Table: ChangeFeed {
    /// The document under `key`.
    async fn get(&self, key: &str) -> Result<Option<Document>>;
    /// Inserts or replaces `key` (durably) and returns the change's sequence.
    async fn put(&self, key: &str, body: Vec<u8>) -> Result<u64>;
    /// Deletes `key`; `false` (and no change recorded) if it did not exist.
    async fn delete(&self, key: &str) -> Result<bool>;
    /// Up to `limit` documents whose key starts with `prefix`, in key order,
    /// with keys greater than `after`.
    async fn scan(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<Vec<Document>>;
}

/// Opens tables by resource name.
pub trait TableProvider: Send + Sync {
    /// The table called `name`, created on first use.
    fn open(&self, name: &str) -> Result<Arc<dyn Table>>;
}
