//! The event every non-HTTP trigger delivers to a function: a CloudEvents
//! 1.0 envelope (id, source, type, subject, time, datacontenttype, data,
//! extensions) plus the delivery attempt, and the outcome a function reports.
//!
//! Triggers produce [`Event`]s, the runtime hands them to guests; neither
//! knows the other.

mod cloudevents;
mod percent;
mod time;
pub mod trace;
pub mod workflow;

pub use cloudevents::{
    CloudEventError, from_metadata, parse_batch, parse_binary, parse_structured, to_metadata,
};
pub use percent::{percent_decode, percent_decode_strict};

use std::time::SystemTime;

pub use trace::TraceContext;

/// A CloudEvents 1.0 event with its delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// CloudEvents `id` (unique per `source`).
    pub id: String,
    /// CloudEvents `source`, e.g. `/gust/queue/jobs`.
    pub source: String,
    /// CloudEvents `type`, e.g. `gust.queue.message`.
    pub ty: String,
    /// CloudEvents `subject`.
    pub subject: Option<String>,
    /// CloudEvents `time` (RFC 3339).
    pub time: Option<String>,
    /// Media type of `data`.
    pub datacontenttype: Option<String>,
    /// The payload.
    pub data: Vec<u8>,
    /// Extension attributes; always includes a W3C `traceparent`.
    pub extensions: Vec<(String, String)>,
    /// 1 on the first delivery, 2 on the first retry, ...
    pub attempt: u32,
}

impl Event {
    /// A new event with a fresh id, the current time and a new trace.
    pub fn new(source: impl Into<String>, ty: impl Into<String>, data: Vec<u8>) -> Self {
        Self {
            id: new_id(),
            source: source.into(),
            ty: ty.into(),
            time: Some(rfc3339(SystemTime::now())),
            data,
            extensions: vec![("traceparent".into(), new_traceparent())],
            attempt: 1,
            ..Self::default()
        }
    }

    /// The value of extension `name`.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets extension `name` (replacing an earlier value).
    pub fn set_extension(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.extensions.iter_mut().find(|(k, _)| k == name) {
            Some(slot) => slot.1 = value,
            None => self.extensions.push((name.to_string(), value)),
        }
    }

    /// The heap memory the event holds: its data, its text attributes and
    /// its extensions (what a window of kept events costs beyond its slots).
    pub fn heap_size(&self) -> usize {
        let text = [
            self.id.len(),
            self.source.len(),
            self.ty.len(),
            self.subject.as_ref().map_or(0, String::len),
            self.time.as_ref().map_or(0, String::len),
            self.datacontenttype.as_ref().map_or(0, String::len),
        ];
        let extensions: usize = self
            .extensions
            .iter()
            .map(|(k, v)| std::mem::size_of::<(String, String)>() + k.len() + v.len())
            .sum();
        self.data.len() + text.iter().sum::<usize>() + extensions
    }

    /// Makes sure a `traceparent` extension is present.
    pub fn ensure_traceparent(&mut self) {
        if self.extension("traceparent").is_none() {
            self.extensions
                .push(("traceparent".into(), new_traceparent()));
        }
    }
}

/// What handling an event came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Handled: settle (acknowledge) it.
    Done,
    /// Failed; trying again later may succeed.
    Retry(String),
    /// Failed for good: dead-letter it now.
    Fail(String),
}

/// A random 128-bit id, hex encoded.
pub fn new_id() -> String {
    random_hex(16)
}

/// A new W3C trace context: `00-<trace id>-<span id>-01`.
pub fn new_traceparent() -> String {
    TraceContext::new_root().to_string()
}

/// RFC 3339 text of `time` (UTC, microseconds).
pub fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // Without randomness ids would collide; a panic here is a broken OS.
    getrandom::fill(&mut buf).expect("the OS random source works");
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_events_carry_id_time_and_trace() {
        let e = Event::new("/gust/queue/q", "gust.queue.message", b"x".to_vec());
        assert_eq!(e.id.len(), 32);
        assert!(e.time.as_deref().unwrap().ends_with('Z'));
        let tp = e.extension("traceparent").unwrap();
        assert_eq!(tp.len(), 55);
        assert!(tp.starts_with("00-") && tp.ends_with("-01"));
        assert_ne!(Event::new("s", "t", vec![]).id, e.id);
    }

    #[test]
    fn extensions_replace_and_ensure() {
        let mut e = Event::default();
        e.ensure_traceparent();
        let tp = e.extension("traceparent").unwrap().to_string();
        e.ensure_traceparent();
        assert_eq!(e.extension("traceparent").unwrap(), tp);
        e.set_extension("k", "1");
        e.set_extension("k", "2");
        assert_eq!(e.extension("k"), Some("2"));
        assert_eq!(e.extensions.len(), 2);
    }
}
