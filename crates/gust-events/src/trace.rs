//! W3C trace context (`traceparent`): what ties one invocation to the next
//! in a chain (HTTP -> function -> queue/topic/stream -> function, and
//! outbound HTTP), and what each log line of an invocation carries.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// A new trace with a new span, sampled as the process's root sampler
    /// decides (every trace unless [`set_root_sampler`] said otherwise).
    pub fn new_root() -> Self {
        let trace_id = super::random_hex(16);
        let sampled = Sampler::root().samples(&trace_id);
        Self {
            trace_id,
            span_id: super::random_hex(8),
            flags: u8::from(sampled),
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

/// Which new traces are sampled: a ratio applied to the trace id, the same
/// way on every node (OpenTelemetry's `TraceIdRatioBased`), so a trace is
/// kept or dropped as a whole. A trace continued from a `traceparent` keeps
/// the caller's decision (parent based); only roots ask the sampler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sampler {
    /// Trace ids whose low 63 bits fall below this are sampled.
    threshold: u64,
}

/// The process's root sampler, as a threshold (`u64::MAX`: every trace).
static ROOT_THRESHOLD: AtomicU64 = AtomicU64::new(u64::MAX);

impl Sampler {
    /// Samples `ratio` of new traces (clamped to 0..=1; NaN samples none).
    pub fn ratio(ratio: f64) -> Self {
        let threshold = if ratio >= 1.0 {
            u64::MAX
        } else if ratio > 0.0 {
            (ratio * (1u64 << 63) as f64) as u64
        } else {
            0
        };
        Self { threshold }
    }

    /// The sampler [`TraceContext::new_root`] uses.
    pub fn root() -> Self {
        Self {
            threshold: ROOT_THRESHOLD.load(Ordering::Relaxed),
        }
    }

    /// Whether a new trace with this id (32 hex digits) is sampled.
    pub fn samples(self, trace_id: &str) -> bool {
        if self.threshold == u64::MAX {
            return true;
        }
        // The low 8 bytes of the id, as OpenTelemetry reads them.
        let low = trace_id
            .get(16..32)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        (low >> 1) < self.threshold
    }
}

/// Sets the sampler of every new trace this process starts (default: all).
pub fn set_root_sampler(sampler: Sampler) {
    ROOT_THRESHOLD.store(sampler.threshold, Ordering::Relaxed);
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

    #[test]
    fn the_ratio_sampler_keeps_about_its_share_by_trace_id() {
        let all = Sampler::ratio(1.0);
        let none = Sampler::ratio(0.0);
        let tenth = Sampler::ratio(0.1);
        assert_eq!(Sampler::ratio(f64::NAN), none);
        assert_eq!(Sampler::ratio(7.0), all);
        // The decision reads the low 8 bytes of the id.
        let low = "0123456789abcdef0000000000000001";
        let high = "0123456789abcdefffffffffffffffff";
        assert!(all.samples(low) && all.samples(high));
        assert!(!none.samples(low) && !none.samples(high));
        assert!(tenth.samples(low) && !tenth.samples(high));
        // Deterministic per id, and about the ratio over many ids.
        let ids: Vec<String> = (0..4000).map(|_| super::super::random_hex(16)).collect();
        let kept = ids.iter().filter(|id| tenth.samples(id)).count();
        assert!((250..=550).contains(&kept), "{kept} of 4000 at 10%");
        assert!(ids.iter().all(|id| tenth.samples(id) == tenth.samples(id)));
        let half = ids
            .iter()
            .filter(|id| Sampler::ratio(0.5).samples(id))
            .count();
        assert!((1700..=2300).contains(&half), "{half} of 4000 at 50%");
    }

    #[test]
    fn children_keep_the_callers_decision() {
        let unsampled =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(!unsampled.sampled());
        assert!(!unsampled.child().sampled());
        let sampled = TraceContext::continue_or_start(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        assert!(sampled.child().sampled());
    }
}
