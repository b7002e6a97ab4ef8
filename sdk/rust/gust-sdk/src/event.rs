//! Event functions: every non-HTTP trigger (timer, queue, topic, blob, change feed,
//! stream, MQTT) delivers a CloudEvents 1.0 [`Event`].
//!
//! ```no_run
//! use gust_sdk::event::{Event, EventError};
//!
//! #[derive(serde::Deserialize)]
//! struct Job { id: u64 }
//!
//! #[gust_sdk::event]
//! fn handle(event: Event) -> Result<(), EventError> {
//!     let job: Job = event.json().map_err(|e| EventError::fatal(format!("bad job: {e}")))?;
//!     gust_sdk::log::info!("job {} (attempt {})", job.id, event.attempt());
//!     Ok(())
//! }
//! ```
//!
//! Returning `Ok(())` settles (acknowledges) the event. [`EventError::retryable`]
//! asks for another delivery under the function's retry policy;
//! [`EventError::fatal`] sends the event straight to the dead-letter destination.
//! A panic counts as a retryable failure.

use crate::__wit::gust::function::types as wit;
use serde::de::DeserializeOwned;
use std::fmt;

/// A CloudEvents 1.0 event delivered to a function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    id: String,
    source: String,
    ty: String,
    subject: Option<String>,
    time: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
    extensions: Vec<(String, String)>,
    attempt: u32,
}

impl Event {
    /// Builds an event by hand, e.g. to unit-test a handler natively. The other
    /// attributes start empty and `attempt` at 1.
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Event {
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            subject: None,
            time: None,
            content_type: None,
            data: Vec::new(),
            extensions: Vec::new(),
            attempt: 1,
        }
    }

    /// Sets the subject.
    pub fn with_subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets the payload and its media type.
    pub fn with_data(mut self, content_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.content_type = Some(content_type.into());
        self.data = data.into();
        self
    }

    /// Adds an extension attribute.
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.extensions.push((name.into(), value.into()));
        self
    }

    /// Sets the delivery attempt (1 for the first delivery).
    pub fn with_attempt(mut self, attempt: u32) -> Self {
        self.attempt = attempt;
        self
    }

    /// Unique per [`source`](Self::source) (CloudEvents `id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Where the event comes from, e.g. `/gust/queue/orders` (CloudEvents `source`).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What happened, e.g. `gust.queue.message` (CloudEvents `type`).
    pub fn ty(&self) -> &str {
        &self.ty
    }

    /// What the event is about, e.g. a blob path (CloudEvents `subject`).
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// RFC 3339 timestamp of the occurrence (CloudEvents `time`).
    pub fn time(&self) -> Option<&str> {
        self.time.as_deref()
    }

    /// Media type of the data, e.g. `application/json` (CloudEvents `datacontenttype`).
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The payload.
    pub fn data(&self) -> &[u8] {
        &self.data
    }

    /// Takes the payload out of the event.
    pub fn into_data(self) -> Vec<u8> {
        self.data
    }

    /// The payload as UTF-8 text.
    pub fn text(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.data)
    }

    /// The payload parsed as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }

    /// The value of extension attribute `name` (e.g. `traceparent`).
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every extension attribute as `(name, value)`.
    pub fn extensions(&self) -> &[(String, String)] {
        &self.extensions
    }

    /// 1 for the first delivery, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

impl From<wit::Event> for Event {
    fn from(e: wit::Event) -> Self {
        Event {
            id: e.id,
            source: e.source,
            ty: e.type_,
            subject: e.subject,
            time: e.time,
            content_type: e.datacontenttype,
            data: e.data,
            extensions: e.extensions,
            attempt: e.attempt,
        }
    }
}

/// Why a function could not handle an event.
///
/// Any `std::error::Error` converts into a *retryable* `EventError`, so `?` works
/// in handlers; use [`EventError::fatal`] for input that will never succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventError {
    message: String,
    retryable: bool,
}

impl EventError {
    /// A failure that may succeed later: the event is delivered again under the
    /// function's retry policy (then dead-lettered when attempts run out).
    pub fn retryable(message: impl Into<String>) -> Self {
        EventError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that will never succeed: the event goes straight to the
    /// dead-letter destination.
    pub fn fatal(message: impl Into<String>) -> Self {
        EventError {
            message: message.into(),
            retryable: false,
        }
    }

    /// The message recorded in the logs and the dead-letter record.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the event should be retried.
    pub fn is_retryable(&self) -> bool {
        self.retryable
    }
}

impl fmt::Display for EventError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable { "retryable" } else { "fatal" };
        write!(f, "{kind}: {}", self.message)
    }
}

impl<E: std::error::Error> From<E> for EventError {
    fn from(e: E) -> Self {
        EventError::retryable(e.to_string())
    }
}

/// The glue between `gust:function/event-handler` and a handler function; called
/// by the code that `#[gust_sdk::event]` generates.
#[doc(hidden)]
pub mod glue {
    use super::{Event, EventError};
    pub use crate::__wit::exports::gust::function::event_handler::Guest;
    use crate::__wit::gust::function::types as wit;

    /// Converts the event, runs `handler` and converts its result.
    pub fn handle<F>(event: wit::Event, handler: F) -> Result<(), wit::Error>
    where
        F: FnOnce(Event) -> Result<(), EventError>,
    {
        handler(Event::from(event)).map_err(|e| wit::Error {
            message: e.message,
            retryable: e.retryable,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_accessors() {
        let e = Event::new("1", "/gust/queue/jobs", "gust.queue.message")
            .with_subject("job-1")
            .with_data("application/json", r#"{"n":5}"#)
            .with_extension("traceparent", "00-abc")
            .with_attempt(3);
        assert_eq!(e.id(), "1");
        assert_eq!(e.source(), "/gust/queue/jobs");
        assert_eq!(e.ty(), "gust.queue.message");
        assert_eq!(e.subject(), Some("job-1"));
        assert_eq!(e.content_type(), Some("application/json"));
        assert_eq!(e.text().unwrap(), r#"{"n":5}"#);
        assert_eq!(e.json::<serde_json::Value>().unwrap()["n"], 5);
        assert_eq!(e.extension("traceparent"), Some("00-abc"));
        assert_eq!(e.extension("nope"), None);
        assert_eq!(e.attempt(), 3);
    }

    #[test]
    fn errors_convert() {
        assert!(EventError::retryable("x").is_retryable());
        assert!(!EventError::fatal("x").is_retryable());
        let parse: EventError = "x".parse::<u32>().unwrap_err().into();
        assert!(parse.is_retryable());
        assert_eq!(EventError::fatal("bad").to_string(), "fatal: bad");
    }

    #[test]
    fn glue_maps_results() {
        let ev = wit::Event {
            id: "1".into(),
            source: "s".into(),
            type_: "t".into(),
            subject: None,
            time: None,
            datacontenttype: None,
            data: vec![],
            extensions: vec![],
            attempt: 2,
        };
        let err = glue::handle(ev, |e| {
            Err(EventError::fatal(format!("attempt {}", e.attempt())))
        })
        .unwrap_err();
        assert_eq!(err.message, "attempt 2");
        assert!(!err.retryable);
    }
}
