//! Replay: run an event function again, against its current version, on
//! input it already had. `POST /_gust/replay/{function}` with
//!
//! - `{"invocation": "<id>"}` re-runs one recorded invocation on the event
//!   it received (kept by [`EventInputs`] for a bounded window) and answers
//!   the recorded and the new outcome, each with its log lines;
//! - `{"stream": "S", "from": N, "to": M, "partition": P}` (`to` and
//!   `partition` optional) re-feeds a range of stream `S` to the function,
//!   record by record, without moving any consumer's checkpoint.
//!
//! A replayed event carries the `gust-replay` extension (the replayed
//! invocation's id, or `<stream>/<partition>/<offset>`) and a new trace, so
//! a function can tell a replay apart and its spans do not join the original
//! trace. Replays settle nothing: no acknowledgement, retry or dead letter;
//! the outcome is only reported. `gust replay` and the console's Replay
//! button call this route.

mod inputs;

pub use inputs::{EventInputs, KeptInput, ReplayLimits};

use gust_events::{Event, Outcome};
use gust_manifest::{BindingKind, EventTriggerKind, Function, Trigger};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::app::{LoadedApp, Run};
use crate::body::{self, Body};
use crate::host::Host;
use crate::invocations::Invocation;
use crate::logs::LogFilter;

/// The CloudEvents extension that marks a replayed event.
pub const REPLAY_EXTENSION: &str = "gust-replay";

/// Most stream records one replay re-feeds.
pub const MAX_STREAM_RECORDS: u64 = 10_000;

/// Most log lines shown per invocation.
const MAX_LOG_LINES: usize = 1_000;

/// Records read from a stream at a time.
const READ_BATCH: usize = 500;

/// A range of a stream to re-feed: `from..=to` (to the newest record
/// without `to`) of one partition, or of each.
struct StreamRange {
    stream: String,
    partition: Option<u32>,
    from: u64,
    to: Option<u64>,
}

/// The body of `POST /_gust/replay/{function}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    invocation: Option<String>,
    stream: Option<String>,
    partition: Option<u32>,
    from: Option<u64>,
    to: Option<u64>,
}

/// Handles `POST /_gust/replay/{function}`.
pub async fn handle(host: &Host, function: &str, req: Request<Incoming>) -> Response<Body> {
    let request: ReplayRequest = match read_request(req).await {
        Ok(r) => r,
        Err(response) => return response,
    };
    let app = host.current();
    if let Some(refusal) = refuse_unless_event_function(&app, function) {
        return refusal;
    }
    match request {
        ReplayRequest {
            invocation: Some(id),
            stream: None,
            partition: None,
            from: None,
            to: None,
        } => replay_invocation(host, &app, function, &id).await,
        ReplayRequest {
            invocation: None,
            stream: Some(stream),
            from: Some(from),
            partition,
            to,
        } => {
            let range = StreamRange {
                stream,
                partition,
                from,
                to,
            };
            replay_stream(host, &app, function, &range).await
        }
        _ => body::error(
            StatusCode::BAD_REQUEST,
            "bad-replay",
            "give either {\"invocation\": ID} or {\"stream\": NAME, \"from\": OFFSET} \
             (with \"to\" and \"partition\" if wanted)",
        ),
    }
}

async fn read_request(req: Request<Incoming>) -> Result<ReplayRequest, Response<Body>> {
    let bytes = http_body_util::Limited::new(req.into_body(), 64 << 10)
        .collect()
        .await
        .map_err(|e| body::error(StatusCode::BAD_REQUEST, "bad-body", e))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|e| {
        body::error(
            StatusCode::BAD_REQUEST,
            "bad-replay",
            format!("the replay request is not valid: {e}"),
        )
    })
}

/// Why `function` cannot be replayed, if it cannot: it is not an event
/// function of `app`, or it is not loaded.
fn refuse_unless_event_function(app: &LoadedApp, function: &str) -> Option<Response<Body>> {
    let Some(f) = app.app.function(function) else {
        return Some(body::error(
            StatusCode::NOT_FOUND,
            "no-such-function",
            format!("no function named `{function}`"),
        ));
    };
    if matches!(f.trigger, Trigger::Http(_)) {
        return Some(body::error(
            StatusCode::BAD_REQUEST,
            "not-an-event-function",
            format!(
                "`{function}` is an HTTP function; replay re-runs event functions \
                 (HTTP requests are not kept)"
            ),
        ));
    }
    if !app.events.functions.contains_key(function) {
        return Some(body::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-loaded",
            format!("function `{function}` is not loaded"),
        ));
    }
    None
}

async fn replay_invocation(
    host: &Host,
    app: &LoadedApp,
    function: &str,
    id: &str,
) -> Response<Body> {
    let inputs = host.event_inputs();
    let Some(kept) = inputs.get(id) else {
        let limits = inputs.limits();
        return body::error(
            StatusCode::NOT_FOUND,
            "no-such-input",
            format!(
                "no input is kept for invocation `{id}`: inputs of event invocations are kept \
                 for {} and up to {} bytes in all (--replay-max-age, --replay-max-bytes), \
                 and only on the host that ran them",
                humantime::format_duration(limits.max_age),
                limits.max_bytes
            ),
        );
    };
    if kept.function != function {
        return body::error(
            StatusCode::BAD_REQUEST,
            "other-function",
            format!(
                "invocation `{}` was of function `{}`, not `{function}`",
                kept.invocation.id, kept.function
            ),
        );
    }
    let mut event = kept.event.clone();
    mark(&mut event, &kept.invocation.id);
    let (outcome, record) = app.events.run(function, event, Run::Replay).await;
    let Some(record) = record else {
        return body::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not-loaded",
            outcome_text(&outcome),
        );
    };
    body::json(
        StatusCode::OK,
        &json!({
            "function": function,
            "replayed": kept.invocation.id,
            "recorded": with_logs(host, &kept.invocation),
            "replay": with_logs(host, &record),
        }),
    )
}

async fn replay_stream(
    host: &Host,
    app: &LoadedApp,
    function: &str,
    range: &StreamRange,
) -> Response<Body> {
    let (name, partition, from, to) =
        (range.stream.as_str(), range.partition, range.from, range.to);
    if !app.app.functions.iter().any(|f| uses_stream(f, name)) {
        return body::error(
            StatusCode::NOT_FOUND,
            "no-such-stream",
            format!("no function of this app reads or writes a stream named `{name}`"),
        );
    }
    if to.is_some_and(|to| to < from) {
        return body::error(
            StatusCode::BAD_REQUEST,
            "bad-range",
            format!("`to` ({}) is before `from` ({from})", to.unwrap_or(0)),
        );
    }
    let stream = match host.streams().stream(name).await {
        Ok(s) => s,
        Err(e) => return body::error(StatusCode::SERVICE_UNAVAILABLE, "backend", e),
    };
    let partitions: Vec<u32> = match partition {
        Some(p) if p >= stream.partitions() => {
            return body::error(
                StatusCode::BAD_REQUEST,
                "bad-partition",
                format!("stream `{name}` has {} partitions", stream.partitions()),
            );
        }
        Some(p) => vec![p],
        None => (0..stream.partitions()).collect(),
    };
    let mut results = Vec::new();
    let (mut ok, mut failed) = (0u64, 0u64);
    for p in partitions {
        let offsets = match stream.offsets(p).await {
            Ok(o) => o,
            Err(e) => return body::error(StatusCode::SERVICE_UNAVAILABLE, "backend", e),
        };
        let last = match (to, offsets.next.checked_sub(1)) {
            (_, None) => continue,
            (Some(to), Some(last)) => to.min(last),
            (None, Some(last)) => last,
        };
        let mut next = from.max(offsets.earliest);
        while next <= last {
            if ok + failed >= MAX_STREAM_RECORDS {
                return body::error(
                    StatusCode::BAD_REQUEST,
                    "range-too-large",
                    format!(
                        "the range holds more than {MAX_STREAM_RECORDS} records; replay it in parts \
                         (--to, --partition) — the first {MAX_STREAM_RECORDS} were replayed"
                    ),
                );
            }
            let want = ((last - next + 1) as usize).min(READ_BATCH);
            let records = match stream.read(p, next, want).await {
                Ok(r) => r,
                Err(e) => return body::error(StatusCode::SERVICE_UNAVAILABLE, "backend", e),
            };
            let Some(newest) = records.last().map(|r| r.offset) else {
                break;
            };
            for record in records.iter().filter(|r| r.offset <= last) {
                let mut event = gust_triggers::stream::record_event(name, record, 1, "");
                mark(&mut event, &format!("{name}/{p}/{}", record.offset));
                let (outcome, invocation) = app.events.run(function, event, Run::Replay).await;
                if matches!(outcome, Outcome::Done) {
                    ok += 1;
                } else {
                    failed += 1;
                }
                results.push(json!({
                    "partition": p,
                    "offset": record.offset,
                    "outcome": invocation.as_ref().map_or("error", |i| i.outcome),
                    "error": invocation.as_ref().and_then(|i| i.error.clone())
                        .or_else(|| (!matches!(outcome, Outcome::Done)).then(|| outcome_text(&outcome))),
                    "invocation": invocation.as_ref().map(|i| i.id.clone()),
                    "duration_ms": invocation.as_ref().map(|i| i.duration_ms),
                }));
            }
            next = newest + 1;
        }
    }
    body::json(
        StatusCode::OK,
        &json!({
            "function": function,
            "stream": name,
            "replayed": ok + failed,
            "ok": ok,
            "failed": failed,
            "records": results,
        }),
    )
}

/// Marks `event` as a replay of `what`, on a new trace.
fn mark(event: &mut Event, what: &str) {
    event.set_extension(REPLAY_EXTENSION, what);
    event.set_extension("traceparent", gust_events::new_traceparent());
}

/// Whether `f` is triggered by, or bound to, stream `name`.
fn uses_stream(f: &Function, name: &str) -> bool {
    let triggered = matches!(
        &f.trigger,
        Trigger::Event { kind: EventTriggerKind::Stream, settings }
            if settings.get("stream").and_then(|v| v.as_str()) == Some(name)
    );
    triggered
        || f.bindings
            .values()
            .any(|b| b.kind == BindingKind::Stream && b.resource == name)
}

/// `invocation` with the log lines it wrote (as far as the log hub still
/// holds them).
fn with_logs(host: &Host, invocation: &Invocation) -> Value {
    let filter = LogFilter {
        invocation: Some(invocation.id.clone()),
        ..LogFilter::default()
    };
    let logs = host.logs().recent(&filter, MAX_LOG_LINES);
    json!({ "invocation": invocation, "logs": logs })
}

fn outcome_text(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Done => "done".into(),
        Outcome::Retry(m) | Outcome::Fail(m) => m.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_is_marked_and_gets_a_new_trace() {
        let mut event = Event::new("/q", "t", b"x".to_vec());
        let before = event.extension("traceparent").unwrap().to_string();
        mark(&mut event, "0123456789");
        assert_eq!(event.extension(REPLAY_EXTENSION), Some("0123456789"));
        let after = event.extension("traceparent").unwrap();
        assert_ne!(before[3..35], after[3..35], "a new trace id");
    }
}
