//! Publishing CloudEvents to topics the function declared in `gust.toml`:
//!
//! ```toml
//! bindings = { events = { topic = "orders" } }
//! ```
//!
//! ```no_run
//! let id = gust_sdk::topic::publish_json(
//!     "events",
//!     "com.example.order.paid",
//!     Some("orders/42"),
//!     &serde_json::json!({ "order": 42 }),
//! )?;
//! # Ok::<(), gust_sdk::topic::Error>(())
//! ```

use std::fmt;

use serde::Serialize;

/// Why an event could not be published.
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
        write!(f, "topic publish failed: {}", self.0)
    }
}

impl std::error::Error for Error {}

/// Publishes an event of type `event_type` with `data` to the topic bound
/// as `binding`; returns the event id once every subscription stored it.
pub fn publish(
    binding: &str,
    event_type: &str,
    subject: Option<&str>,
    data: impl AsRef<[u8]>,
    content_type: Option<&str>,
) -> Result<String, Error> {
    crate::__wit::gust::function::topic::publish(
        binding,
        event_type,
        subject,
        data.as_ref(),
        content_type,
    )
    .map_err(Error)
}

/// Publishes `value` as JSON.
pub fn publish_json<T: Serialize + ?Sized>(
    binding: &str,
    event_type: &str,
    subject: Option<&str>,
    value: &T,
) -> Result<String, Error> {
    let data = serde_json::to_vec(value).map_err(|e| Error(format!("cannot encode JSON: {e}")))?;
    publish(binding, event_type, subject, data, Some("application/json"))
}
