//! Backlogs read from the app's backends at scrape time: the depth and
//! dead-letter depth of each queue the app names (queue triggers and queue
//! bindings), and how far each stream-triggered function is behind in each
//! partition. A backend that errs or is slow (over [`TIMEOUT`]) leaves its
//! samples out of that scrape instead of failing it.

use std::collections::BTreeSet;
use std::time::Duration;

use gust_backends::queue::dead_letter_name;
use gust_manifest::BindingKind;

use gust_triggers::queue::QueueSettings;
use gust_triggers::settings::Settings;

use super::text::{Families, Kind};
use crate::host::Host;

/// Longest wait for one backend call during a scrape.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Runs `call` with [`TIMEOUT`]; `None` on error or timeout.
pub(crate) async fn bounded<T, E>(call: impl Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(TIMEOUT, call).await.ok()?.ok()
}

/// Adds the app's queue depths and stream lags to `families`.
pub async fn collect(host: &Host, families: &mut Families) {
    let app = host.current();
    let name = app.app.name.as_str();
    let mut queues = BTreeSet::new();
    for f in &app.app.functions {
        if let Ok(q) = QueueSettings::of(f) {
            queues.insert(q.queue);
        }
        for b in f.bindings.values() {
            if matches!(b.kind, BindingKind::Queue) {
                queues.insert(b.resource.clone());
            }
        }
    }
    for queue in &queues {
        let queue = queue.as_str();
        let labels = [("app", name), ("queue", queue)];
        for (metric, help, of) in [
            (
                "gust_queue_depth",
                "Messages waiting in the queue (not counting leased ones).",
                queue.to_string(),
            ),
            (
                "gust_queue_deadletter_depth",
                "Dead letters of the queue (`gust queue dlq list` shows them).",
                dead_letter_name(queue),
            ),
        ] {
            let Some(q) = bounded(host.queues().queue(&of)).await else {
                continue;
            };
            if let Some(depth) = bounded(q.depth()).await {
                families
                    .family(metric, help, Kind::Gauge)
                    .sample(&labels, depth);
            }
        }
    }
    for lag in super::lag::stream_lag(host, &app).await {
        for p in lag.partitions.iter().flatten() {
            let Some(records) = p.lag() else {
                continue;
            };
            let partition = p.partition.to_string();
            families
                .family(
                    "gust_stream_lag_records",
                    "Records of the partition the stream-triggered function has not checkpointed yet.",
                    Kind::Gauge,
                )
                .sample(
                    &[
                        ("app", name),
                        ("function", lag.function),
                        ("stream", lag.stream),
                        ("partition", partition.as_str()),
                    ],
                    records,
                );
        }
    }
}
