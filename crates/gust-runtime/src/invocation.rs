//! Who one invocation is: its id (for `gust logs --invocation`) and its
//! span in a W3C trace, which the messages, events, records and outbound
//! requests it makes carry on to the next function.

use gust_events::TraceContext;

/// The ids of one invocation.
#[derive(Debug, Clone)]
pub struct InvocationIds {
    /// Unique per invocation: a retry of the same event is a new one.
    pub id: String,
    /// The invocation's own span, a child of the caller's when the request
    /// or event carried a `traceparent`.
    pub trace: TraceContext,
}

impl InvocationIds {
    /// A new invocation continuing `traceparent` (a new trace without one,
    /// or when it is not valid).
    pub fn new(traceparent: Option<&str>) -> Self {
        Self {
            id: gust_events::new_id(),
            trace: TraceContext::continue_or_start(traceparent).child(),
        }
    }

    /// The `traceparent` of a call this invocation makes: the same trace,
    /// a new span.
    pub fn outgoing_traceparent(&self) -> String {
        self.trace.child().to_string()
    }
}

impl Default for InvocationIds {
    fn default() -> Self {
        Self::new(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continues_the_callers_trace() {
        let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let ids = InvocationIds::new(Some(parent));
        assert_eq!(ids.trace.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(ids.trace.span_id, "00f067aa0ba902b7");
        let next = TraceContext::parse(&ids.outgoing_traceparent()).unwrap();
        assert_eq!(next.trace_id, ids.trace.trace_id);
        assert_ne!(next.span_id, ids.trace.span_id);
        assert_ne!(InvocationIds::new(Some(parent)).id, ids.id);
        assert_ne!(
            InvocationIds::new(Some("bad")).trace.trace_id,
            ids.trace.trace_id
        );
    }
}
