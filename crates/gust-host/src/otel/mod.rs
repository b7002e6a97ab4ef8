//! Traces: one span per invocation, exported to an OpenTelemetry collector
//! with OTLP over HTTP/protobuf (`POST <endpoint>/v1/traces`).
//!
//! The runtime reports each finished invocation of a sampled trace to the
//! function's [`gust_runtime::InvocationTracer`] ([`FunctionTracer`]),
//! which turns it into a span and hands it to the app's [`TraceExporter`]
//! without waiting: a bounded queue that a background task drains in
//! batches. When the queue is full the span is dropped and counted; a
//! collector that fails or is absent costs a warning now and then, never an
//! invocation's time. Without an endpoint none of this exists.
//!
//! Span ids are the invocations' own (the ids their messages, events and
//! requests pass on as `traceparent`), so a chain HTTP -> queue -> function
//! is one trace whose spans link parent to child.

mod config;
mod encode;
mod export;

pub use config::{TraceConfig, TraceConfigError};
pub use export::{ExportStats, TraceExporter};

use std::sync::Arc;

use gust_manifest::Function;
use gust_runtime::{FinishedInvocation, InvocationTracer};

/// Turns the finished invocations of one function into spans.
pub struct FunctionTracer {
    exporter: Arc<TraceExporter>,
    span: encode::FunctionSpan,
}

impl FunctionTracer {
    /// The tracer of `function`, exporting through `exporter`.
    pub fn new(exporter: Arc<TraceExporter>, function: &Function) -> Self {
        let trigger = &function.trigger;
        let cron = (trigger.kind() == "timer")
            .then(|| trigger.settings()?.get("schedule")?.as_str())
            .flatten()
            .map(str::to_string);
        Self {
            exporter,
            span: encode::FunctionSpan::new(&function.name, function.trigger.kind(), cron),
        }
    }
}

impl InvocationTracer for FunctionTracer {
    fn finished(&self, invocation: FinishedInvocation<'_>) {
        if let Some(span) = self.span.span(&invocation) {
            self.exporter.push(span);
        }
    }
}
