//! Appending records to streams the function declared in `gust.toml`:
//!
//! ```toml
//! bindings = { readings = { stream = "telemetry" } }
//! ```
//!
//! ```no_run
//! let at = gust_sdk::stream::append_json(
//!     "readings",
//!     "device-7",
//!     &serde_json::json!({ "temp": 21.5 }),
//! )?;
//! gust_sdk::log::info!("stored at partition {} offset {}", at.partition, at.offset);
//! # Ok::<(), gust_sdk::stream::Error>(())
//! ```
//!
//! Records with the same key go to the same partition and keep their order.

use std::fmt;

use serde::Serialize;

pub use crate::__wit::gust::function::stream::Position;

/// Why a record could not be appended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    /// The host's explanation.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream append failed: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// Appends `data` under `key` to the stream bound as `binding`; returns
/// where it was stored once it is durable.
pub fn append(
    binding: &str,
    key: &str,
    data: impl AsRef<[u8]>,
    content_type: Option<&str>,
) -> Result<Position, Error> {
    crate::__wit::gust::function::stream::append(binding, key, data.as_ref(), content_type)
        .map_err(Error)
}

/// Appends `value` as JSON.
pub fn append_json<T: Serialize + ?Sized>(
    binding: &str,
    key: &str,
    value: &T,
) -> Result<Position, Error> {
    let data = serde_json::to_vec(value).map_err(|e| Error(format!("cannot encode JSON: {e}")))?;
    append(binding, key, data, Some("application/json"))
}
