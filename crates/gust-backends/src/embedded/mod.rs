//! The `embedded` backend: in-process, durable on disk under the app's
//! `.gust/data/`, nothing to install.

mod kv;
mod queue;

pub use kv::EmbeddedKv;
pub use queue::{EmbeddedQueue, EmbeddedQueues};
