//! The `embedded` backend: in-process, durable on disk under the app's
//! `.gust/data/`, nothing to install.

mod blob;
mod broadcast;
mod dedupe;
mod kv;
mod queue;
mod sql;
mod stream;
mod table;
mod topic;

pub use blob::{EmbeddedBlobs, EmbeddedContainer};
pub use broadcast::LocalBroadcast;
pub use dedupe::EmbeddedDedupe;
pub use kv::EmbeddedKv;
pub use queue::{EmbeddedQueue, EmbeddedQueues};
pub use sql::{EmbeddedDatabase, EmbeddedSql};
pub use stream::{EmbeddedStream, EmbeddedStreams};
pub use table::{EmbeddedTable, EmbeddedTables};
pub use topic::{EmbeddedTopic, EmbeddedTopics};

/// Memory one embedded database file may use for its page cache. redb's
/// default (1 GiB per file) let a long-running host's memory grow with the
/// data it wrote; an app has up to four such files.
pub const CACHE_BYTES: usize = 16 << 20;

/// Opens (creating it if missing) the redb file at `path` with a cache of
/// [`CACHE_BYTES`].
pub(crate) fn open_database(path: &std::path::Path) -> Result<redb::Database, redb::DatabaseError> {
    redb::Builder::new()
        .set_cache_size(CACHE_BYTES)
        .create(path)
}
