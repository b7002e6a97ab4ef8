//! Spans and export requests in the OTLP protobuf messages.

use std::time::UNIX_EPOCH;

use gust_runtime::FinishedInvocation;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span, status,
};

/// `flags`: the trace flags, and whether the parent is known to be remote
/// (it always is: the caller is another process or invocation).
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// What every span of one function shares.
#[derive(Debug, Clone)]
pub(super) struct FunctionSpan {
    /// `<function> <trigger>`.
    name: String,
    kind: span::SpanKind,
    /// Attributes every span of the function carries.
    attributes: Vec<KeyValue>,
}

impl FunctionSpan {
    /// The spans of function `function` with a trigger of `trigger` kind
    /// (`http`, `queue`, ...), and for a timer its cron `schedule`.
    pub(super) fn new(function: &str, trigger: &str, cron: Option<String>) -> Self {
        let kind = if trigger == "http" {
            span::SpanKind::Server
        } else {
            span::SpanKind::Consumer
        };
        let mut attributes = vec![
            text("faas.name", function),
            text("faas.trigger", faas_trigger(trigger)),
            text("gust.trigger", trigger),
        ];
        if let Some(cron) = cron {
            attributes.push(text("faas.cron", &cron));
        }
        Self {
            name: format!("{function} {trigger}"),
            kind,
            attributes,
        }
    }

    /// The span of one finished invocation; `None` when its ids are not
    /// hex (they always are: the runtime makes or checks them).
    pub(super) fn span(&self, inv: &FinishedInvocation<'_>) -> Option<Span> {
        let ids = inv.ids;
        let trace_id = hex::decode(&ids.trace.trace_id).ok()?;
        let span_id = hex::decode(&ids.trace.span_id).ok()?;
        let parent_span_id = match &ids.parent_span_id {
            Some(parent) => hex::decode(parent).ok()?,
            None => Vec::new(),
        };
        let remote = if parent_span_id.is_empty() {
            HAS_IS_REMOTE
        } else {
            HAS_IS_REMOTE | IS_REMOTE
        };
        let start = inv
            .start
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let end = start.saturating_add(inv.duration.as_nanos() as u64);
        let mut attributes = Vec::with_capacity(self.attributes.len() + 6);
        attributes.extend(self.attributes.iter().cloned());
        attributes.push(text("faas.invocation_id", &ids.id));
        attributes.push(boolean("faas.coldstart", inv.cold_start));
        if let Some(attempt) = inv.attempt {
            attributes.push(int("gust.attempt", i64::from(attempt)));
        }
        if let Some(http) = &inv.http {
            attributes.push(text("http.request.method", http.method.as_str()));
            attributes.push(int("http.response.status_code", i64::from(http.status)));
            if let Some(route) = &http.route {
                attributes.push(text("http.route", route));
            }
        }
        let status = match &inv.error {
            Some(message) => Status {
                message: message.clone(),
                code: status::StatusCode::Error as i32,
            },
            None => Status {
                message: String::new(),
                code: status::StatusCode::Unset as i32,
            },
        };
        Some(Span {
            trace_id,
            span_id,
            parent_span_id,
            flags: u32::from(ids.trace.flags) | remote,
            name: self.name.clone(),
            kind: self.kind as i32,
            start_time_unix_nano: start,
            end_time_unix_nano: end,
            attributes,
            status: Some(status),
            ..Default::default()
        })
    }
}

/// The resource (the app on this node) and the export request of `spans`.
pub(super) fn request(service: &str, node: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
    let resource = Resource {
        attributes: vec![
            text("service.name", service),
            text("service.instance.id", node),
            text("telemetry.sdk.name", "gust"),
        ],
        ..Default::default()
    };
    let scope = InstrumentationScope {
        name: "gust".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The OpenTelemetry `faas.trigger` value of a Gust trigger kind (the kind
/// itself is `gust.trigger`).
fn faas_trigger(kind: &str) -> &'static str {
    match kind {
        "http" => "http",
        "timer" => "timer",
        "queue" | "topic" | "stream" | "mqtt" => "pubsub",
        "blob" | "changefeed" => "datasource",
        _ => "other",
    }
}

fn attribute(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(key: &str, value: &str) -> KeyValue {
    attribute(key, any_value::Value::StringValue(value.to_string()))
}

fn boolean(key: &str, value: bool) -> KeyValue {
    attribute(key, any_value::Value::BoolValue(value))
}

fn int(key: &str, value: i64) -> KeyValue {
    attribute(key, any_value::Value::IntValue(value))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use gust_runtime::{HttpFacts, InvocationIds};

    use super::*;

    fn value<'a>(span: &'a Span, key: &str) -> Option<&'a any_value::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)?
            .value
            .as_ref()?
            .value
            .as_ref()
    }

    #[test]
    fn an_http_span_continues_its_caller() {
        let ids = InvocationIds::new(Some(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ));
        let f = FunctionSpan::new("front", "http", None);
        let span = f
            .span(&FinishedInvocation {
                ids: &ids,
                start: SystemTime::now(),
                duration: Duration::from_millis(3),
                cold_start: true,
                attempt: None,
                http: Some(HttpFacts {
                    method: http::Method::POST,
                    route: Some("/front/{action}".into()),
                    status: 502,
                }),
                error: Some("answered 502".into()),
            })
            .unwrap();
        assert_eq!(span.name, "front http");
        assert_eq!(span.kind, span::SpanKind::Server as i32);
        assert_eq!(hex::encode(&span.trace_id), ids.trace.trace_id);
        assert_eq!(hex::encode(&span.span_id), ids.trace.span_id);
        assert_eq!(hex::encode(&span.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(span.flags, 0x301);
        assert_eq!(
            span.end_time_unix_nano - span.start_time_unix_nano,
            3_000_000
        );
        assert_eq!(
            span.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(
            value(&span, "faas.invocation_id"),
            Some(&any_value::Value::StringValue(ids.id.clone()))
        );
        assert_eq!(
            value(&span, "faas.coldstart"),
            Some(&any_value::Value::BoolValue(true))
        );
        assert_eq!(
            value(&span, "http.response.status_code"),
            Some(&any_value::Value::IntValue(502))
        );
        assert_eq!(
            value(&span, "faas.trigger"),
            Some(&any_value::Value::StringValue("http".into()))
        );
    }

    #[test]
    fn a_timer_span_is_a_root_with_its_schedule() {
        let ids = InvocationIds::new(None);
        let f = FunctionSpan::new("tick", "timer", Some("*/5 * * * * *".into()));
        let span = f
            .span(&FinishedInvocation {
                ids: &ids,
                start: SystemTime::now(),
                duration: Duration::ZERO,
                cold_start: false,
                attempt: Some(1),
                http: None,
                error: None,
            })
            .unwrap();
        assert!(span.parent_span_id.is_empty());
        assert_eq!(span.kind, span::SpanKind::Consumer as i32);
        assert_eq!(
            value(&span, "faas.cron"),
            Some(&any_value::Value::StringValue("*/5 * * * * *".into()))
        );
        assert_eq!(
            value(&span, "gust.trigger"),
            Some(&any_value::Value::StringValue("timer".into()))
        );
        assert_eq!(
            span.status.as_ref().unwrap().code,
            status::StatusCode::Unset as i32
        );
        let request = request("app", "node-1", vec![span]);
        assert_eq!(request.resource_spans[0].scope_spans[0].spans.len(), 1);
    }
}
