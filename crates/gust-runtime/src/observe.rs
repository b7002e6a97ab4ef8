//! What the runtime tells an observer (the host's metrics) about the
//! instances behind invocations: facts only the runtime knows.

use std::time::{Duration, SystemTime};

use crate::error::InvokeError;

/// Receives facts about a function's invocations that only the runtime
/// sees. Called on the invocation path: implementations must be cheap
/// (relaxed atomics) and must not block.
pub trait InvocationObserver: Send + Sync {
    /// A new instance was created for an invocation (a cold start, as
    /// opposed to reusing a warm instance); creating it took `took`.
    fn instantiated(&self, took: Duration);

    /// An HTTP invocation failed after its response head was returned
    /// (while the guest was still writing the body), so its caller never
    /// saw the error.
    fn failed_late(&self, error: &InvokeError);
}

/// Receives every finished invocation whose trace is sampled, to record it
/// as a span (the host's OTLP export). Called on the invocation path once
/// the function returned: implementations must not block (queue the span,
/// drop it when the queue is full).
pub trait InvocationTracer: Send + Sync {
    /// `invocation` finished.
    fn finished(&self, invocation: FinishedInvocation<'_>);
}

/// What the runtime knows of one finished invocation.
#[derive(Debug, Clone)]
pub struct FinishedInvocation<'a> {
    /// Its id and span (the caller's span is `ids.parent_span_id`).
    pub ids: &'a crate::InvocationIds,
    /// When it started (wall clock).
    pub start: SystemTime,
    /// How long it ran: until the handler returned (for HTTP, until the
    /// guest finished writing the response body).
    pub duration: Duration,
    /// Whether a new instance was created for it (not a reused warm one).
    pub cold_start: bool,
    /// The event's delivery attempt (1 for the first), for event functions.
    pub attempt: Option<u32>,
    /// For HTTP functions: the request and response.
    pub http: Option<HttpFacts>,
    /// Why it failed, if it did (a trap, timeout, an error the function
    /// returned, or for HTTP a 5xx response).
    pub error: Option<String>,
}

/// The HTTP side of a finished invocation.
#[derive(Debug, Clone)]
pub struct HttpFacts {
    /// The request method.
    pub method: http::Method,
    /// The route template that matched (`x-gust-route`), if known.
    pub route: Option<String>,
    /// The response status (the host's answer when the function failed
    /// before answering).
    pub status: u16,
}

/// A sampled invocation under way, to be reported to its tracer when done.
pub(crate) struct SpanTimer {
    tracer: std::sync::Arc<dyn InvocationTracer>,
    start: SystemTime,
    began: std::time::Instant,
}

impl SpanTimer {
    /// Starts timing the invocation `ids` of a function with `tracer`;
    /// `None` (nothing to pay) without a tracer or when the trace is not
    /// sampled.
    pub(crate) fn start(
        tracer: Option<&std::sync::Arc<dyn InvocationTracer>>,
        ids: &crate::InvocationIds,
    ) -> Option<Self> {
        let tracer = tracer.filter(|_| ids.trace.sampled())?;
        Some(Self {
            tracer: tracer.clone(),
            start: SystemTime::now(),
            began: std::time::Instant::now(),
        })
    }

    /// Reports the finished invocation.
    pub(crate) fn finish(
        self,
        ids: &crate::InvocationIds,
        cold_start: bool,
        attempt: Option<u32>,
        http: Option<HttpFacts>,
        error: Option<String>,
    ) {
        self.tracer.finished(FinishedInvocation {
            ids,
            start: self.start,
            duration: self.began.elapsed(),
            cold_start,
            attempt,
            http,
            error,
        });
    }
}
