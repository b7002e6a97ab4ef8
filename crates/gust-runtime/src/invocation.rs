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
    /// The caller's span id (from the `traceparent`), `None` for a new
    /// trace.
    pub parent_span_id: Option<String>,
}

impl InvocationIds {
    /// A new invocation continuing `traceparent` (a new trace without one,
    /// or when it is not valid).
    pub fn new(traceparent: Option<&str>) -> Self {
        let (trace, parent_span_id) = match traceparent.and_then(TraceContext::parse) {
            Some(caller) => (caller.child(), Some(caller.span_id)),
            None => (TraceContext::new_root(), None),
        };
        Self {
            id: gust_events::new_id(),
            trace,
            parent_span_id,
        }
    }

    /// The `traceparent` of a call this invocation makes (a message it
    /// sends, an event it publishes, a request): the same trace, with this
    /// invocation's span as the parent, so the next invocation's span is
    /// its child.
    pub fn outgoing_traceparent(&self) -> String {
        self.trace.to_string()
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
        assert_eq!(ids.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        // What it passes on names its own span as the parent.
        let next = InvocationIds::new(Some(&ids.outgoing_traceparent()));
        assert_eq!(next.trace.trace_id, ids.trace.trace_id);
        assert_eq!(next.parent_span_id.as_deref(), Some(&*ids.trace.span_id));
        assert_eq!(InvocationIds::new(Some("bad")).parent_span_id, None);
        assert_ne!(InvocationIds::new(Some(parent)).id, ids.id);
        assert_ne!(
            InvocationIds::new(Some("bad")).trace.trace_id,
            ids.trace.trace_id
        );
    }
}
