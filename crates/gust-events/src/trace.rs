//! W3C trace context (`traceparent`): what ties one invocation to the next
//! in a chain (HTTP -> function -> queue/topic/stream -> function, and
//! outbound HTTP), and what each log line of an invocation carries.

use std::fmt;

/// A parsed `traceparent`: `00-<trace id>-<parent span id>-<flags>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lowercase hex digits, not all zero.
    pub trace_id: String,
    /// 16 lowercase hex digits, not all zero: the span this one continues.
    pub span_id: String,
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// A new trace (sampled) with a new span.
    pub fn new_root() -> Self {
        Self {
            trace_id: super::random_hex(16),
            span_id: super::random_hex(8),
            flags: 1,
        }
    }

    /// Reads a `traceparent` value; `None` unless it is valid version-00
    /// text (or a later version's first four fields), as the W3C
    /// recommendation asks.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut parts = text.split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        };
        if !hex(version, 2)
            || version == "ff"
            || !hex(trace, 32)
            || !hex(span, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if trace.bytes().all(|b| b == b'0') || span.bytes().all(|b| b == b'0') {
            return None;
        }
        Some(Self {
            trace_id: trace.to_string(),
            span_id: span.to_string(),
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// The context of `traceparent` if it is valid, else a new trace.
    pub fn continue_or_start(traceparent: Option<&str>) -> Self {
        traceparent
            .and_then(Self::parse)
            .unwrap_or_else(Self::new_root)
    }

    /// A new span of the same trace (an invocation, or a call it makes).
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id.clone(),
            span_id: super::random_hex(8),
            flags: self.flags,
        }
    }

    /// Whether the trace is sampled (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_version_00() {
        let text = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let t = TraceContext::parse(text).unwrap();
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(t.sampled());
        assert_eq!(t.to_string(), text);
        let child = t.child();
        assert_eq!(child.trace_id, t.trace_id);
        assert_ne!(child.span_id, t.span_id);
    }

    #[test]
    fn refuses_what_the_recommendation_refuses() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad}");
        }
        // A later version may add fields.
        assert!(
            TraceContext::parse("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra")
                .is_some()
        );
        let fresh = TraceContext::continue_or_start(Some("junk"));
        assert!(TraceContext::parse(&fresh.to_string()).is_some());
    }
}
