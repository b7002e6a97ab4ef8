//! Recent invocations, kept in memory for the console and
//! `GET /_gust/invocations`: the last [`KEEP`] of each function (so a busy
//! function does not push a quiet one's out), recorded where an invocation
//! settles — [`crate::dispatch::invoke_function`] for HTTP (also through the
//! gateway) and the host's event dispatcher ([`crate::app::EventFunctions`])
//! for every event trigger. Each entry names the invocation id its log lines
//! carry, so `GET /_gust/logs?invocation=<id>` finds them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

/// Invocations kept per function.
pub const KEEP: usize = 200;

/// One finished invocation.
#[derive(Debug, Clone, Serialize)]
pub struct Invocation {
    /// Its id (log lines carry it).
    pub id: String,
    /// The W3C trace it belongs to.
    pub trace_id: String,
    /// The function.
    pub function: String,
    /// Its trigger kind (`http`, `queue`, ...).
    pub trigger: &'static str,
    /// When it started (RFC 3339 when serialised; formatted only then, off
    /// the invocation path).
    #[serde(serialize_with = "rfc3339")]
    pub started: SystemTime,
    /// How long it took, in milliseconds (HTTP: until the response head).
    pub duration_ms: f64,
    /// `ok`, `error` (HTTP 5xx or a trap), `retry` or `failed` (an event
    /// function's retryable / final error).
    pub outcome: &'static str,
    /// HTTP: the response status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// HTTP: method and path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<String>,
    /// Events: the event id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Events: the attempt (1 = first).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// What went wrong, when something did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Invocation {
    /// An invocation of `function` (trigger `trigger`) known by `ids`,
    /// started at `started` and lasting `took`; fill in the rest.
    pub fn new(
        ids: &gust_runtime::InvocationIds,
        function: &str,
        trigger: &'static str,
        started: SystemTime,
        took: Duration,
    ) -> Self {
        Self {
            id: ids.id.clone(),
            trace_id: ids.trace.trace_id.clone(),
            function: function.to_string(),
            trigger,
            started,
            duration_ms: took.as_secs_f64() * 1e3,
            outcome: "ok",
            status: None,
            request: None,
            event: None,
            attempt: None,
            error: None,
        }
    }
}

fn rfc3339<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&gust_events::rfc3339(*time))
}

/// The recent invocations of one function (newest last).
#[derive(Debug, Default)]
pub struct Ring(Mutex<VecDeque<Invocation>>);

impl Ring {
    /// Keeps `invocation`, forgetting the oldest beyond [`KEEP`].
    pub fn push(&self, invocation: Invocation) {
        let mut ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ring.len() == KEEP {
            ring.pop_front();
        }
        ring.push_back(invocation);
    }

    fn newest(&self, n: usize) -> Vec<Invocation> {
        let ring = self.0.lock().unwrap_or_else(|e| e.into_inner());
        ring.iter().rev().take(n).cloned().collect()
    }
}

/// Every function's [`Ring`] of one host, kept across reloads. Locked when
/// an app version loads and when read, never per invocation (an invocation
/// locks only its function's ring).
#[derive(Debug, Default)]
pub struct RecentInvocations {
    rings: Mutex<HashMap<String, Arc<Ring>>>,
}

impl RecentInvocations {
    /// The ring of `function`, created on first use.
    pub fn ring(&self, function: &str) -> Arc<Ring> {
        let mut rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
        rings.entry(function.to_string()).or_default().clone()
    }

    /// The newest `limit` invocations (of `function` only, when given),
    /// newest first.
    pub fn newest(&self, function: Option<&str>, limit: usize) -> Vec<Invocation> {
        let rings: Vec<Arc<Ring>> = {
            let rings = self.rings.lock().unwrap_or_else(|e| e.into_inner());
            rings
                .iter()
                .filter(|(name, _)| function.is_none_or(|f| f == name.as_str()))
                .map(|(_, ring)| ring.clone())
                .collect()
        };
        let mut all: Vec<Invocation> = rings.iter().flat_map(|r| r.newest(limit)).collect();
        all.sort_by_key(|i| std::cmp::Reverse(i.started));
        all.truncate(limit);
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(function: &str, seconds: u64) -> Invocation {
        Invocation::new(
            &gust_runtime::InvocationIds::default(),
            function,
            "http",
            SystemTime::UNIX_EPOCH + Duration::from_secs(seconds),
            Duration::from_millis(3),
        )
    }

    #[test]
    fn keeps_the_newest_per_function_and_merges_them_newest_first() {
        let recent = RecentInvocations::default();
        let busy = recent.ring("busy");
        let quiet = recent.ring("quiet");
        quiet.push(at("quiet", 1));
        for s in 0..(KEEP as u64 + 50) {
            busy.push(at("busy", 10 + s));
        }
        assert!(Arc::ptr_eq(&busy, &recent.ring("busy")));
        let all = recent.newest(None, 10_000);
        assert_eq!(all.len(), KEEP + 1, "the quiet function's one is kept");
        assert_eq!(
            all[0].started,
            SystemTime::UNIX_EPOCH + Duration::from_secs(10 + KEEP as u64 + 49)
        );
        let json = serde_json::to_value(&all[0]).unwrap();
        assert_eq!(json["started"], "1970-01-01T00:04:19.000000Z", "{json}");
        assert_eq!(all.last().unwrap().function, "quiet");
        let quiet_only = recent.newest(Some("quiet"), 5);
        assert_eq!(quiet_only.len(), 1);
        assert_eq!(recent.newest(Some("busy"), 3).len(), 3);
        assert!((all[0].duration_ms - 3.0).abs() < 1e-9);
    }
}
