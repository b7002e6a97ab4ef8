//! The queue trigger: pulls leased messages, runs the function on each with
//! bounded concurrency, renews the lease while it runs, then settles:
//! ack on success, retry with backoff, or dead-letter with the reason.

use std::sync::Arc;
use std::time::Duration;

use gust_backends::{Delivery, Queue};
use gust_events::{Event, rfc3339};
use gust_manifest::{EventTriggerKind, Function, RetryPolicy, Trigger};
use serde::Deserialize;
use tokio::sync::Semaphore;

use crate::dispatch::{Dispatcher, Shutdown};
use crate::registry::{Description, StartContext, StartFuture, Started, TriggerError, TriggerKind};
use crate::settings::{Invalid, Settings, check_range, check_resource_name};
use crate::settle::{Settlement, settle};

/// Longest wait of one receive call (bounds shutdown latency).
const POLL: Duration = Duration::from_millis(500);

/// `trigger = { queue = { queue = "jobs", batch_size = 16, concurrency = 16, visibility = "30s" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueSettings {
    /// The queue to consume.
    #[serde(default)]
    pub queue: String,
    /// Messages fetched per receive (1 to 1000, default 16).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Messages handled at once by this function (1 to 10000, default 16).
    #[serde(default = "default_concurrency")]
    pub concurrency: u32,
    /// Lease per delivery, renewed while the function runs (default 30s).
    #[serde(
        default = "default_visibility",
        deserialize_with = "crate::settings::duration"
    )]
    pub visibility: Duration,
}

fn default_batch_size() -> u32 {
    16
}

fn default_concurrency() -> u32 {
    16
}

fn default_visibility() -> Duration {
    Duration::from_secs(30)
}

impl QueueSettings {
    /// Settings for consuming `queue` with every default.
    pub fn new(queue: impl Into<String>) -> Self {
        Self {
            queue: queue.into(),
            batch_size: default_batch_size(),
            concurrency: default_concurrency(),
            visibility: default_visibility(),
        }
    }
}

impl Settings for QueueSettings {
    const KIND: &'static str = "queue";
    const HELP: &'static str = "queue triggers take `queue = \"name\"`, `batch_size = 1..1000`, `concurrency = 1..10000`, `visibility = \"30s\"`";

    fn check(&self) -> Result<(), Invalid> {
        check_resource_name("queue", "queue", &self.queue)?;
        check_range("batch_size", self.batch_size, 1..=1000)?;
        check_range("concurrency", self.concurrency, 1..=10_000)?;
        if self.visibility < Duration::from_secs(1)
            || self.visibility > Duration::from_secs(12 * 3600)
        {
            return Err(Invalid::new("visibility", "`visibility` must be 1s to 12h"));
        }
        Ok(())
    }
}

/// One function consuming one queue.
pub struct QueueConsumer {
    /// The function to run.
    pub function: String,
    /// Trigger settings.
    pub trigger: QueueSettings,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The queue.
    pub queue: Arc<dyn Queue>,
    /// Runs the function.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// Events this function wants (a topic subscription's filter); others
    /// are acknowledged without running it. `None` takes everything.
    pub filter: Option<EventFilter>,
}

/// Decides whether a function runs on an event.
pub type EventFilter = Arc<dyn Fn(&Event) -> bool + Send + Sync>;

/// The CloudEvent a queue message becomes: the event it carries (topic
/// deliveries), or a `gust.queue.message` event around its body.
pub fn message_event(queue: &str, delivery: &Delivery) -> Event {
    let m = &delivery.message;
    if let Some(event) = gust_events::from_metadata(&m.metadata, m.body.clone(), m.attempt.max(1)) {
        return event;
    }
    let mut extensions: Vec<(String, String)> = m
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "content-type")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    extensions.sort();
    let mut event = Event {
        id: m.id.clone(),
        source: format!("/gust/queue/{queue}"),
        ty: "gust.queue.message".into(),
        subject: None,
        time: Some(rfc3339(m.enqueued_at)),
        datacontenttype: m.metadata.get("content-type").cloned(),
        data: m.body.clone(),
        extensions,
        attempt: m.attempt.max(1),
    };
    event.ensure_traceparent();
    event
}

impl QueueConsumer {
    /// Consumes until `shutdown`; then waits for running handlers to settle.
    pub async fn run(self, mut shutdown: Shutdown) {
        let this = Arc::new(self);
        let limit = this.trigger.concurrency as usize;
        let permits = Arc::new(Semaphore::new(limit));
        loop {
            if shutdown.is_requested() {
                break;
            }
            // Wait for at least one free slot before leasing anything.
            let first = tokio::select! {
                p = permits.clone().acquire_owned() => p.expect("semaphore open"),
                () = shutdown.requested() => break,
            };
            let room = (permits.available_permits() + 1).min(this.trigger.batch_size as usize);
            let received = tokio::select! {
                r = this.queue.receive(room, this.trigger.visibility, POLL) => r,
                () = shutdown.requested() => break,
            };
            let deliveries = match received {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(queue = %this.trigger.queue, error = %e, "receive failed; retrying");
                    drop(first);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut first = Some(first);
            for delivery in deliveries {
                let permit = match first.take() {
                    Some(p) => p,
                    None => permits
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("semaphore open"),
                };
                let this = this.clone();
                tokio::spawn(async move {
                    this.handle(delivery).await;
                    drop(permit);
                });
            }
        }
        // Let running handlers finish and settle.
        let _ = permits.acquire_many(limit as u32).await;
    }

    async fn handle(&self, delivery: Delivery) {
        let event = message_event(&self.trigger.queue, &delivery);
        if self.filter.as_ref().is_some_and(|wanted| !wanted(&event)) {
            if let Err(e) = self.queue.ack(&delivery.receipt).await {
                tracing::warn!(queue = %self.trigger.queue, error = %e, "could not skip a filtered-out event");
            }
            return;
        }
        let attempt = event.attempt;
        let renew = self.renew_lease(&delivery);
        let outcome = self.dispatcher.dispatch(&self.function, event).await;
        renew.abort();
        let q = &self.queue;
        let receipt = &delivery.receipt;
        let settled = match settle(&outcome, attempt, &self.retry) {
            Settlement::Ack => q.ack(receipt).await,
            Settlement::Retry(delay) => q.nack(receipt, delay).await,
            Settlement::DeadLetter(reason) => q.dead_letter(receipt, &reason).await,
        };
        if let Err(e) = settled {
            // The lease will run out and the message come back: at least once.
            tracing::warn!(queue = %self.trigger.queue, error = %e, "could not settle a message");
        }
    }

    /// Extends the lease at half the visibility until aborted.
    fn renew_lease(&self, delivery: &Delivery) -> tokio::task::JoinHandle<()> {
        let queue = self.queue.clone();
        let receipt = delivery.receipt.clone();
        let visibility = self.trigger.visibility;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(visibility / 2);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(e) = queue.extend(&receipt, visibility).await {
                    tracing::warn!(error = %e, "could not renew a message lease");
                    return;
                }
            }
        })
    }
}

/// The `queue` trigger kind.
pub struct QueueKind;

impl TriggerKind for QueueKind {
    fn name(&self) -> &'static str {
        "queue"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Queue,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        QueueSettings::of(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        let Ok(q) = QueueSettings::of(function) else {
            return Description::other(self.name(), function);
        };
        Description {
            kind: "queue",
            source: format!("queue `{}`", q.queue),
            details: serde_json::json!({
                "kind": "queue",
                "queue": q.queue,
                "batch_size": q.batch_size,
                "concurrency": q.concurrency,
                "visibility_ms": q.visibility.as_millis() as u64,
            }),
        }
    }

    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move {
            let trigger = QueueSettings::of(cx.function)?;
            let consumer = QueueConsumer {
                function: cx.function.name.clone(),
                retry: cx.function.retry.clone(),
                queue: cx.queue(&trigger.queue).await?,
                trigger,
                dispatcher: cx.dispatcher.clone(),
                filter: None,
            };
            let mut started = Started::default();
            cx.spawn(&mut started, consumer.run(cx.shutdown.clone()));
            Ok(started)
        })
    }
}

#[cfg(test)]
mod tests {
    use gust_events::Outcome;
    use std::collections::BTreeMap;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::Mutex;

    use gust_backends::QueueProvider;
    use gust_backends::embedded::EmbeddedQueues;
    use gust_manifest::RetryStrategy;

    use super::*;

    /// Decides by payload: `ok`, `flaky` (fails on attempt 1), `poison`
    /// (always retryable failure), `fatal` (not retryable).
    struct ScriptedFunction {
        seen: Mutex<Vec<(String, u32)>>,
    }

    impl Dispatcher for ScriptedFunction {
        fn dispatch(
            &self,
            _function: &str,
            event: Event,
        ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
            Box::pin(async move {
                let body = String::from_utf8(event.data.clone()).unwrap();
                assert_eq!(event.source, "/gust/queue/jobs");
                assert!(event.extension("traceparent").is_some());
                self.seen
                    .lock()
                    .unwrap()
                    .push((body.clone(), event.attempt));
                match (body.as_str(), event.attempt) {
                    ("ok", _) | ("flaky", 2..) => Outcome::Done,
                    ("fatal", _) => Outcome::Fail("bad input".into()),
                    _ => Outcome::Retry("try later".into()),
                }
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settles_retries_and_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let queues = EmbeddedQueues::open(&dir.path().join("q.redb")).unwrap();
        let queue = queues.queue("jobs").await.unwrap();
        for body in ["ok", "flaky", "poison", "fatal"] {
            queue
                .send(body.as_bytes().to_vec(), BTreeMap::new())
                .await
                .unwrap();
        }
        let function = Arc::new(ScriptedFunction {
            seen: Mutex::new(Vec::new()),
        });
        let consumer = QueueConsumer {
            function: "worker".into(),
            trigger: QueueSettings {
                batch_size: 4,
                concurrency: 2,
                visibility: Duration::from_secs(5),
                ..QueueSettings::new("jobs")
            },
            retry: RetryPolicy {
                strategy: RetryStrategy::Fixed,
                max_attempts: 3,
                min: Duration::from_millis(50),
                max: Duration::from_millis(50),
            },
            queue: queue.clone(),
            dispatcher: function.clone(),
            filter: None,
        };
        let (stop, shutdown) = Shutdown::new();
        let running = tokio::spawn(consumer.run(shutdown));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while queue.dead_letters(10).await.unwrap().len() < 2 || queue.depth().await.unwrap() > 0 {
            assert!(tokio::time::Instant::now() < deadline, "did not settle");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.send(true).unwrap();
        running.await.unwrap();

        let dead = queue.dead_letters(10).await.unwrap();
        let poison = dead.iter().find(|d| d.message.body == b"poison").unwrap();
        assert_eq!(poison.attempts, 3);
        assert!(poison.reason.contains("try later"), "{}", poison.reason);
        let fatal = dead.iter().find(|d| d.message.body == b"fatal").unwrap();
        assert_eq!(fatal.attempts, 1);
        assert!(fatal.reason.contains("not retryable"), "{}", fatal.reason);
        let seen = function.seen.lock().unwrap().clone();
        assert!(seen.contains(&("flaky".into(), 2)));
        assert_eq!(seen.iter().filter(|(b, _)| b == "ok").count(), 1);
        assert_eq!(queue.depth().await.unwrap(), 0);
    }
}
