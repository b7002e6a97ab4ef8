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
