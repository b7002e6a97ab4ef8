//! The error every backend reports.

use thiserror::Error;

/// A backend call failed.
#[derive(Debug, Error)]
pub enum BackendError {
    /// The named store/container/... does not exist and cannot be created.
    #[error("no such resource `{0}`")]
    NoSuchResource(String),
    /// A value had the wrong shape for the operation (e.g. incrementing text).
    #[error("invalid value for key `{key}`: {reason}")]
    InvalidValue {
        /// The key involved.
        key: String,
        /// Why the value does not fit.
        reason: String,
    },
    /// A queue receipt names no live lease: the delivery was already acked,
    /// nacked or dead-lettered, or the message was delivered again since.
    #[error("receipt `{0}` is stale: that delivery was settled or the message was delivered again")]
    StaleReceipt(String),
    /// The engine itself failed (I/O, corruption, connection lost, ...).
    #[error("{backend} backend failed: {message}")]
    Engine {
        /// Which backend, e.g. `embedded kv`.
        backend: &'static str,
        /// What it said.
        message: String,
    },
}

impl BackendError {
    /// Wraps an engine error with the backend's name.
    pub fn engine(backend: &'static str, err: impl std::fmt::Display) -> Self {
        Self::Engine {
            backend,
            message: err.to_string(),
        }
    }
}
