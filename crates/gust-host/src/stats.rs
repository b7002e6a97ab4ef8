//! `GET /_gust/stats` (admin key): everything the console shows, as one
//! JSON document read from the host's own state — per-function counters
//! and duration buckets (the metrics series, not their Prometheus text),
//! queues with depth, in-flight and dead letters, stream lag per
//! partition, timers' last and next slots, and the gateway's routes and
//! breakers. Backend reads are bounded as for a metrics scrape
//! ([`crate::metrics::backlog::TIMEOUT`]); a backend that errs or is slow
//! leaves `null` in that field instead of failing the answer.
//!
//! `GET /_gust/invocations?function=F&limit=N` (admin key): the recent
//! invocations ([`crate::invocations`]), newest first.

use std::collections::BTreeMap;
use std::time::SystemTime;

use http::{Response, StatusCode};
use serde_json::{Value, json};

use gust_manifest::{EventTriggerKind, Trigger};
use gust_triggers::registry;

use crate::admin::form_pairs;
use crate::app::LoadedApp;
use crate::body::{self, Body};
use crate::host::Host;
use crate::metrics::FunctionSnapshot;
use crate::metrics::backlog::bounded;
use crate::metrics::lag::stream_lag;

/// Most invocations one `GET /_gust/invocations` returns.
const MAX_INVOCATIONS: usize = 1_000;

/// The `GET /_gust/stats` answer.
pub async fn stats(host: &Host) -> Response<Body> {
    let app = host.current();
    let now = SystemTime::now();
    let mut functions = Vec::new();
    // queue -> (functions consuming it, their invocations in flight)
    let mut queues: BTreeMap<String, (Vec<String>, i64)> = BTreeMap::new();
    for f in &app.app.functions {
        let trigger = registry::describe(f)
            .map(|d| d.details)
            .unwrap_or_else(|e| json!({ "kind": f.trigger.kind(), "error": e.to_string() }));
        let snapshot = snapshot_of(&app, &f.name);
        let inflight = snapshot.as_ref().map_or(0, |s| s.inflight);
        if let Some(queue) = consumed_queue(&f.name, &trigger) {
            let entry = queues.entry(queue).or_default();
            entry.0.push(f.name.clone());
            entry.1 += inflight;
        }
        for b in f.bindings.values() {
            if matches!(b.kind, gust_manifest::BindingKind::Queue) {
                queues.entry(b.resource.clone()).or_default();
            }
        }
        let mut value = json!({
            "name": f.name,
            "trigger": trigger,
            "bindings": f.bindings.iter().map(|(name, b)| json!({
                "name": name, "kind": b.kind.as_str(), "resource": b.resource,
            })).collect::<Vec<_>>(),
        });
        if let (Some(s), Some(map)) = (snapshot, value.as_object_mut()) {
            map.extend(function_json(&s).as_object().cloned().unwrap_or_default());
        }
        functions.push(value);
    }

    let mut queue_list = Vec::new();
    for (name, (consumers, in_flight)) in &queues {
        let (depth, dead) = match bounded(host.open_queue(name)).await {
            Some(q) => (
                bounded(q.depth()).await,
                bounded(q.dead_letter_count()).await,
            ),
            None => (None, None),
        };
        queue_list.push(json!({
            "name": name,
            "functions": consumers,
            "depth": depth,
            "in_flight": in_flight,
            "deadletters": dead,
        }));
    }

    body::json(
        StatusCode::OK,
        &json!({
            "app": app.app.name,
            "node": host.node(),
            "url": host.url(),
            "time": gust_events::rfc3339(now),
            "uptime_seconds": now.duration_since(host.started()).map_or(0, |d| d.as_secs()),
            "functions": functions,
            "queues": queue_list,
            "streams": streams(host, &app).await,
            "timers": timers(host, &app).await,
            "gateway": gateway(&app),
        }),
    )
}

/// The metrics of function `name`, HTTP or event.
fn snapshot_of(app: &LoadedApp, name: &str) -> Option<FunctionSnapshot> {
    app.functions
        .get(name)
        .map(|l| l.metrics.snapshot())
        .or_else(|| app.events.functions.get(name).map(|e| e.metrics.snapshot()))
}

/// Counters, lifetime p50/p99/mean and the cumulative duration buckets
/// (bounds in ms; `above` counts what is over the last bound), from which
/// the console computes quantiles over its own polling window.
fn function_json(s: &FunctionSnapshot) -> Value {
    let ms = |seconds: Option<f64>| seconds.map(|v| (v * 1e6).round() / 1e3);
    let bounds: Vec<f64> = s
        .invoke
        .bounds
        .iter()
        .map(|b| b.parse::<f64>().unwrap_or(0.0) * 1e3)
        .collect();
    let counted: u64 = s.invoke.counts.iter().sum();
    json!({
        "invocations": s.invocations,
        "errors": s.errors,
        "timeouts": s.timeouts,
        "coldstarts": s.coldstarts,
        "inflight": s.inflight,
        "p50_ms": ms(s.invoke.quantile(0.5)),
        "p99_ms": ms(s.invoke.quantile(0.99)),
        "mean_ms": ms((s.invoke.count > 0).then(|| s.invoke.sum / s.invoke.count as f64)),
        "durations": {
            "bounds_ms": bounds,
            "counts": s.invoke.counts,
            "above": s.invoke.count - counted,
            "count": s.invoke.count,
            "sum_ms": s.invoke.sum * 1e3,
        },
    })
}

/// The queue a function's trigger consumes (and dead-letters into), from
/// its trigger description: a queue trigger's queue, a topic
/// subscription's queue, the retry queue of a blob, change-feed or stream
/// trigger, an MQTT trigger's durable queue.
fn consumed_queue(function: &str, trigger: &Value) -> Option<String> {
    let text = |key: &str| trigger[key].as_str().map(str::to_string);
    match trigger["kind"].as_str()? {
        "queue" | "topic" => text("queue"),
        "blob" | "changefeed" => text("deadletter_queue"),
        "stream" => Some(gust_triggers::settle::retry_queue(
            trigger["stream"].as_str()?,
            function,
        )),
        "mqtt" => Some(gust_triggers::mqtt::queue_name(function)),
        _ => None,
    }
}

/// Lag per partition of every stream-triggered function.
async fn streams(host: &Host, app: &LoadedApp) -> Value {
    let lags = stream_lag(host, app).await.into_iter().map(|lag| {
        let partitions = lag.partitions.map(|partitions| {
            partitions
                .iter()
                .map(|p| {
                    json!({
                        "partition": p.partition,
                        "next": p.next(),
                        "checkpoint": p.checkpoint.flatten(),
                        "lag": p.lag(),
                    })
                })
                .collect::<Vec<_>>()
        });
        json!({ "stream": lag.stream, "function": lag.function, "partitions": partitions })
    });
    Value::Array(lags.collect())
}

/// Every timer function's schedule and persisted status (last and next
/// slot, as the timer trigger keeps them).
async fn timers(host: &Host, app: &LoadedApp) -> Value {
    let store = host
        .services()
        .kv
        .open(gust_triggers::timer::STATUS_STORE)
        .ok();
    let mut out = Vec::new();
    for f in &app.app.functions {
        let Trigger::Event {
            kind: EventTriggerKind::Timer,
            settings,
        } = &f.trigger
        else {
            continue;
        };
        let status: Value = match &store {
            Some(store) => bounded(store.get(&f.name))
                .await
                .flatten()
                .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                .unwrap_or(Value::Null),
            None => Value::Null,
        };
        out.push(json!({
            "function": f.name,
            "schedule": settings.get("schedule").and_then(|v| v.as_str()),
            "time_zone": settings.get("time_zone").and_then(|v| v.as_str()).unwrap_or("UTC"),
            "last": status["last"],
            "next": status["next"],
        }));
    }
    Value::Array(out)
}

/// The gateway's routes, upstreams and breakers (secrets hidden).
fn gateway(app: &LoadedApp) -> Value {
    crate::gateway::status_value(app)
        .unwrap_or_else(|e| json!({ "configured": true, "error": e.to_string() }))
}

/// The `GET /_gust/invocations` answer.
pub fn invocations(host: &Host, query: &str) -> Response<Body> {
    let params = form_pairs(query);
    let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let function = get("function").filter(|f| !f.is_empty());
    let limit = get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(100usize)
        .min(MAX_INVOCATIONS);
    let inputs = host.event_inputs();
    let list: Vec<Value> = host
        .recent_invocations()
        .newest(function.as_deref(), limit)
        .into_iter()
        .map(|i| {
            let replayable = i.event.is_some() && inputs.contains(&i.id);
            let mut value = json!(i);
            value["replayable"] = replayable.into();
            value
        })
        .collect();
    body::json(StatusCode::OK, &json!({ "invocations": list }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_queue_each_trigger_consumes() {
        let cases = [
            (json!({ "kind": "queue", "queue": "jobs" }), Some("jobs")),
            (
                json!({ "kind": "topic", "topic": "t", "queue": "t--f" }),
                Some("t--f"),
            ),
            (
                json!({ "kind": "blob", "deadletter_queue": "up--f" }),
                Some("up--f"),
            ),
            (json!({ "kind": "stream", "stream": "s" }), Some("s--f")),
            (json!({ "kind": "mqtt", "topic": "a/+" }), Some("mqtt--f")),
            (json!({ "kind": "timer" }), None),
            (json!({ "kind": "http" }), None),
        ];
        for (trigger, want) in cases {
            assert_eq!(consumed_queue("f", &trigger).as_deref(), want, "{trigger}");
        }
    }

    #[test]
    fn function_json_reports_counters_and_buckets_in_ms() {
        let m = crate::metrics::FunctionMetrics::default();
        drop(m.start());
        let v = function_json(&m.snapshot());
        assert_eq!(v["invocations"], 1);
        assert_eq!(v["durations"]["count"], 1);
        assert_eq!(v["durations"]["bounds_ms"][0], 1.0);
        assert!(v["p50_ms"].as_f64().unwrap() <= 1.0, "{v}");
    }
}
