//! Resources that functions use through bindings, behind traits.
//!
//! Triggers and the runtime see only the traits in this crate ([`KeyValue`],
//! [`KeyValueProvider`], ...). Each backend is a module: [`embedded`] keeps
//! everything on disk in the app's `.gust/` folder with no service to install;
//! `nats` (feature `nats`) puts queues, topics, streams, kv and blobs on NATS JetStream;
//! `postgres` and `mysql` put resources on those servers; `s3` (feature `s3`)
//! puts blob containers on S3 or an S3-compatible server.

pub mod blob;
pub mod broadcast;
pub mod dedupe;
pub mod embedded;
mod error;
mod kv;
pub mod lease;
pub mod mqtt;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "nats")]
pub mod nats;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "s3")]
pub mod s3;
pub mod services;
pub mod sql;
#[cfg(any(feature = "postgres", feature = "mysql"))]
#[cfg_attr(not(all(feature = "postgres", feature = "mysql")), allow(dead_code))]
mod sql_engine;
pub mod stream;
pub mod table;
pub mod topic;

pub use blob::{BlobContainer, BlobInfo, BlobProvider};
pub use broadcast::{Broadcast, BroadcastStream};
pub use dedupe::Dedupe;
pub use error::BackendError;
pub use kv::{KeyPage, KeyValue, KeyValueProvider};
pub use lease::{KvLeases, Lease};
#[cfg(feature = "mysql")]
pub use mysql::MySqlSql;
#[cfg(feature = "postgres")]
pub use postgres::sql::PgSql;
pub use queue::{DeadLetter, Delivery, Message, Queue, QueueProvider, Receipt};
pub use services::{BackendConfig, Resource, Services, ServicesError};
pub use sql::{Sql, SqlProvider, SqlRows, SqlStatement, SqlValue};
pub use stream::{Stream, StreamProvider, StreamRecord};
pub use table::{Change, ChangeFeed, ChangeKind, Document, Table, TableProvider};
pub use topic::{Topic, TopicProvider};

/// Result type of every backend call.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;
