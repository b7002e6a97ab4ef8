//! Sending messages to queues the function declared in `gust.toml`:
//!
//! ```toml
//! bindings = { jobs = { queue = "jobs" } }
//! ```
//!
//! ```no_run
//! let id = gust_sdk::queue::send_json("jobs", &serde_json::json!({ "id": 42 }))?;
//! # Ok::<(), gust_sdk::queue::Error>(())
//! ```

use std::fmt;

use serde::Serialize;

/// Why a message could not be sent.
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
        write!(f, "queue send failed: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// Sends `body` (with media type `content_type`) to the queue bound as
/// `binding`; returns the message id once it is stored durably.
pub fn send(
    binding: &str,
    body: impl AsRef<[u8]>,
    content_type: Option<&str>,
) -> Result<String, Error> {
    crate::__wit::gust::function::queue::send(binding, body.as_ref(), content_type).map_err(Error)
}

/// Sends `value` as JSON to the queue bound as `binding`.
pub fn send_json<T: Serialize + ?Sized>(binding: &str, value: &T) -> Result<String, Error> {
    let body = serde_json::to_vec(value).map_err(|e| Error(format!("cannot encode JSON: {e}")))?;
    send(binding, body, Some("application/json"))
}
