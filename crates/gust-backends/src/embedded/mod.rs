//! The `embedded` backend: in-process, durable on disk under the app's
//! `.gust/data/`, nothing to install.

mod kv;

pub use kv::EmbeddedKv;
