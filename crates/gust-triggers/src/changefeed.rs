//! The change-feed trigger: runs a function on every write to a document
//! table, in sequence order, resuming from a checkpoint persisted per
//! function.
//!
//! Changes are delivered one at a time in the order the table recorded
//! them, so the changes of one key arrive in the order they happened. The
//! checkpoint (the last settled sequence) is written after each batch
//! (`batch_size` changes at most) and when the consumer stops: a crash
//! before that write delivers the batch's settled changes again after a
//! restart (at-least-once), never skips one.
//! A change that keeps failing is retried with the function's retry
//! policy, then sent to the queue `<table>--<function>-deadletter` with its
//! reason and attempt count, and the feed moves on.

use std::sync::Arc;
use std::time::Duration;

use gust_backends::{Change, ChangeKind, KeyValue, Queue, Table};
use gust_events::{Event, rfc3339};
use gust_manifest::{EventTriggerKind, Function, RetryPolicy, Trigger};
use serde::Deserialize;

use crate::dispatch::{Dispatcher, Shutdown};
use crate::registry::{Description, StartContext, StartFuture, Started, TriggerError, TriggerKind};
use crate::settings::{Invalid, Settings, check_range, check_resource_name};
use crate::settle::{Settlement, dead_letter_event, settle};

/// `trigger = { changefeed = { table = "contacts", start = "beginning" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangefeedSettings {
    /// The document table whose writes trigger the function.
    #[serde(default)]
    pub table: String,
    /// Where a function without a checkpoint starts reading (default `now`).
    #[serde(default)]
    pub start: ChangefeedStart,
    /// Changes read per batch (1 to 10000, default 100).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
}

fn default_batch_size() -> u32 {
    100
}

/// Where a change-feed consumer without a checkpoint starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangefeedStart {
    /// Every change the table ever had.
    Beginning,
    /// Only changes made after the function first started.
    #[default]
    Now,
}

impl ChangefeedStart {
    /// The manifest spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Beginning => "beginning",
            Self::Now => "now",
        }
    }
}

impl Settings for ChangefeedSettings {
    const KIND: &'static str = "changefeed";
    const HELP: &'static str = "changefeed triggers take `table = \"contacts\"`, optional `start = \"beginning\"` or `\"now\"` (default) and `batch_size = 100`";

    fn check(&self) -> Result<(), Invalid> {
        check_resource_name("table", "changefeed", &self.table)?;
        check_range("batch_size", self.batch_size, 1..=10_000)
    }
}

/// Longest wait for new changes (bounds shutdown latency).
const POLL: Duration = Duration::from_millis(500);
/// Pause after a backend error before reading again.
const ERROR_PAUSE: Duration = Duration::from_secs(1);

/// The queue through which a function's failed changes are dead-lettered
/// and redriven (`<table>--<function>`; the dead letters are in
/// `<table>--<function>-deadletter`).
pub fn dead_letter_queue(table: &str, function: &str) -> String {
    crate::settle::retry_queue(table, function)
}

/// The key of a function's checkpoint in the checkpoint store.
pub fn checkpoint_key(table: &str, function: &str) -> String {
    format!("{table}|{function}")
}

/// One function consuming one table's change feed.
#[derive(Clone)]
pub struct ChangeFeedConsumer {
    /// The function to run.
    pub function: String,
    /// Trigger settings.
    pub trigger: ChangefeedSettings,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The table whose feed is read.
    pub table: Arc<dyn Table>,
    /// Where checkpoints are kept.
    pub checkpoints: Arc<dyn KeyValue>,
    /// The queue [`dead_letter_queue`] whose dead letters take the changes
    /// the function gave up on.
    pub dead_letters: Arc<dyn Queue>,
    /// Runs the function.
    pub dispatcher: Arc<dyn Dispatcher>,
}

/// The CloudEvent a change becomes.
pub fn change_event(table: &str, change: &Change, attempt: u32) -> Event {
    let ty = match change.kind {
        ChangeKind::Upsert => "gust.table.upserted",
        ChangeKind::Delete => "gust.table.deleted",
    };
    let mut event = Event::new(
        format!("/gust/table/{table}"),
        ty,
        change.body.clone().unwrap_or_default(),
    );
    event.id = format!("{table}:{}", change.sequence);
    event.subject = Some(change.key.clone());
    event.time = Some(rfc3339(change.at));
    if change.body.is_some() {
        event.datacontenttype = Some("application/json".into());
    }
    event.set_extension("sequence", change.sequence.to_string());
    event.set_extension("operation", change.kind.as_str().to_string());
    event.attempt = attempt;
    event
}

impl ChangeFeedConsumer {
    /// Delivers changes until `shutdown`; the change being handled then
    /// settles first.
    pub async fn run(self, shutdown: Shutdown) {
        let mut after = match self.start().await {
            Ok(after) => after,
            Err(e) => {
                tracing::error!(function = %self.function, "change feed cannot start: {e}");
                return;
            }
        };
        while !shutdown.is_requested() {
            let changes = match self
                .table
                .changes(after, self.trigger.batch_size as usize)
                .await
            {
                Ok(changes) => changes,
                Err(e) => {
                    tracing::warn!(function = %self.function, "reading the change feed failed: {e}");
                    tokio::time::sleep(ERROR_PAUSE).await;
                    continue;
                }
            };
            if changes.is_empty() {
                self.table.wait_for_change(after, POLL).await;
                continue;
            }
            let before = after;
            for change in changes {
                if shutdown.is_requested() {
                    break;
                }
                if !self.deliver(&change, &shutdown).await {
                    break;
                }
                after = change.sequence;
            }
            if after != before {
                self.save_checkpoint(after).await;
            }
        }
    }

    /// The sequence to read after: the checkpoint, or where `start` says
    /// (persisted at once, so "now" means the first start).
    async fn start(&self) -> gust_backends::Result<u64> {
        let key = checkpoint_key(&self.trigger.table, &self.function);
        if let Some(bytes) = self.checkpoints.get(&key).await?
            && let Some(seq) = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|s| s.trim().parse().ok())
        {
            return Ok(seq);
        }
        let after = match self.trigger.start {
            ChangefeedStart::Beginning => 0,
            ChangefeedStart::Now => self.table.last_sequence().await?,
        };
        self.checkpoints
            .set(&key, after.to_string().into_bytes())
            .await?;
        Ok(after)
    }

    async fn save_checkpoint(&self, sequence: u64) {
        let key = checkpoint_key(&self.trigger.table, &self.function);
        // A failed write only means the change may be delivered again.
        while let Err(e) = self
            .checkpoints
            .set(&key, sequence.to_string().into_bytes())
            .await
        {
            tracing::warn!(function = %self.function, "cannot save the change-feed checkpoint: {e}");
            tokio::time::sleep(ERROR_PAUSE).await;
        }
    }

    /// Runs the function on `change` until it succeeds, fails for good or
    /// runs out of attempts (then dead-letters it). `false` when shutdown
    /// interrupted the retries: the change is not settled.
    async fn deliver(&self, change: &Change, shutdown: &Shutdown) -> bool {
        let mut attempt = 1;
        loop {
            let event = change_event(&self.trigger.table, change, attempt);
            let outcome = self.dispatcher.dispatch(&self.function, event).await;
            match settle(&outcome, attempt, &self.retry) {
                Settlement::Ack => return true,
                Settlement::Retry(delay) => {
                    // Shutting down mid-retry leaves the checkpoint before
                    // this change: it is delivered again after the restart.
                    let mut stop = shutdown.clone();
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.requested() => return false,
                    }
                    attempt += 1;
                    tracing::debug!(function = %self.function, sequence = change.sequence, "retrying: {outcome:?}");
                }
                Settlement::DeadLetter(reason) => {
                    tracing::warn!(function = %self.function, sequence = change.sequence, "change dead-lettered: {reason}");
                    let event = change_event(&self.trigger.table, change, attempt);
                    dead_letter_event(&*self.dead_letters, &event, &reason, attempt).await;
                    return true;
                }
            }
        }
    }
}

/// The internal kv store holding each change-feed consumer's checkpoint.
pub const CHECKPOINT_STORE: &str = "gust:changefeed-checkpoints";

/// The `changefeed` trigger kind.
pub struct ChangefeedKind;

impl TriggerKind for ChangefeedKind {
    fn name(&self) -> &'static str {
        "changefeed"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Changefeed,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        ChangefeedSettings::of(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        let Ok(c) = ChangefeedSettings::of(function) else {
            return Description::other(self.name(), function);
        };
        Description {
            kind: "changefeed",
            source: format!("changes of table `{}`", c.table),
            details: serde_json::json!({
                "kind": "changefeed",
                "table": c.table,
                "start": c.start.as_str(),
                "deadletter_queue": dead_letter_queue(&c.table, &function.name),
            }),
        }
    }

    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move {
            let feed = &ChangefeedSettings::of(cx.function)?;
            let f = cx.function;
            let table = cx
                .services
                .tables
                .open(&feed.table)
                .map_err(|e| cx.error(format!("cannot open table `{}`: {e}", feed.table)))?;
            let checkpoints = cx
                .services
                .kv
                .open(CHECKPOINT_STORE)
                .map_err(|e| cx.error(format!("cannot open the checkpoint store: {e}")))?;
            let dead_letters = cx.queue(&dead_letter_queue(&feed.table, &f.name)).await?;
            let mut started = Started::default();
            cx.start_redrive(&mut started, dead_letters.clone());
            let consumer = ChangeFeedConsumer {
                function: f.name.clone(),
                trigger: feed.clone(),
                retry: f.retry.clone(),
                table,
                checkpoints,
                dead_letters,
                dispatcher: cx.dispatcher.clone(),
            };
            let claim = format!("changefeed:{}:{}", feed.table, f.name);
            cx.spawn_owned(&mut started, vec![claim], move |_, shutdown| {
                consumer.clone().run(shutdown)
            });
            Ok(started)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::Recorder;
    use gust_backends::embedded::{EmbeddedKv, EmbeddedQueues, EmbeddedTables};
    use gust_backends::{KeyValueProvider, QueueProvider, TableProvider};
    use gust_events::Outcome;
    use gust_manifest::RetryStrategy;

    struct Fixture {
        _dir: tempfile::TempDir,
        table: Arc<dyn Table>,
        checkpoints: Arc<dyn KeyValue>,
        dead: Arc<dyn Queue>,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let table = EmbeddedTables::open(&dir.path().join("t.redb"))
            .unwrap()
            .open("contacts")
            .unwrap();
        let checkpoints = EmbeddedKv::open(&dir.path().join("kv.redb"))
            .unwrap()
            .open("gust:changefeed")
            .unwrap();
        let dead = EmbeddedQueues::open(&dir.path().join("q.redb"))
            .unwrap()
            .queue("contacts--f")
            .await
            .unwrap();
        Fixture {
            _dir: dir,
            table,
            checkpoints,
            dead,
        }
    }

    fn consumer(
        f: &Fixture,
        start: ChangefeedStart,
        recorder: Arc<Recorder>,
    ) -> ChangeFeedConsumer {
        ChangeFeedConsumer {
            function: "f".into(),
            trigger: ChangefeedSettings {
                table: "contacts".into(),
                start,
                batch_size: 2,
            },
            retry: RetryPolicy {
                strategy: RetryStrategy::Fixed,
                max_attempts: 3,
                min: Duration::from_millis(1),
                max: Duration::from_millis(1),
            },
            table: f.table.clone(),
            checkpoints: f.checkpoints.clone(),
            dead_letters: f.dead.clone(),
            dispatcher: recorder,
        }
    }

    /// Runs `consumer` until `done` holds for the recorder, then stops it.
    async fn run_until(
        c: ChangeFeedConsumer,
        recorder: &Recorder,
        done: impl Fn(&[Event]) -> bool,
    ) {
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(c.run(shutdown));
        for _ in 0..500 {
            if done(&recorder.seen()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stop.send(true).unwrap();
        task.await.unwrap();
        assert!(done(&recorder.seen()), "{:?}", recorder.seen());
    }

    fn summary(events: &[Event]) -> Vec<(String, String, String)> {
        events
            .iter()
            .map(|e| {
                (
                    e.subject.clone().unwrap_or_default(),
                    e.ty.clone(),
                    String::from_utf8_lossy(&e.data).into_owned(),
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn delivers_inserts_updates_and_deletes_in_order_and_resumes_from_the_checkpoint() {
        let f = fixture().await;
        f.table.put("a", b"1".to_vec()).await.unwrap();
        f.table.put("b", b"2".to_vec()).await.unwrap();
        f.table.put("a", b"3".to_vec()).await.unwrap();
        f.table.delete("b").await.unwrap();
        let recorder = Arc::new(Recorder::new(|_| Outcome::Done));
        let c = consumer(&f, ChangefeedStart::Beginning, recorder.clone());
        run_until(c, &recorder, |e| e.len() == 4).await;
        let up = "gust.table.upserted".to_string();
        assert_eq!(
            summary(&recorder.seen()),
            vec![
                ("a".into(), up.clone(), "1".into()),
                ("b".into(), up.clone(), "2".into()),
                ("a".into(), up.clone(), "3".into()),
                ("b".into(), "gust.table.deleted".into(), String::new()),
            ]
        );
        let first = &recorder.seen()[0];
        assert_eq!(first.id, "contacts:1");
        assert_eq!(first.extension("operation"), Some("upsert"));
        assert!(first.extension("traceparent").is_some());

        // A restarted consumer continues after the checkpoint.
        f.table.put("c", b"4".to_vec()).await.unwrap();
        let again = Arc::new(Recorder::new(|_| Outcome::Done));
        let c = consumer(&f, ChangefeedStart::Beginning, again.clone());
        run_until(c, &again, |e| !e.is_empty()).await;
        assert_eq!(summary(&again.seen()), vec![("c".into(), up, "4".into())]);
    }

    #[tokio::test]
    async fn start_now_skips_history_and_failures_end_in_the_dead_letter_queue() {
        let f = fixture().await;
        f.table.put("old", b"0".to_vec()).await.unwrap();
        let recorder = Arc::new(Recorder::new(|e| {
            if e.subject.as_deref() == Some("bad") {
                Outcome::Retry("boom".into())
            } else {
                Outcome::Done
            }
        }));
        let c = consumer(&f, ChangefeedStart::Now, recorder.clone());
        let writer = f.table.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            writer.put("bad", b"{}".to_vec()).await.unwrap();
            writer.put("good", b"{}".to_vec()).await.unwrap();
        });
        run_until(c, &recorder, |e| {
            e.iter().any(|e| e.subject.as_deref() == Some("good"))
        })
        .await;
        let subjects: Vec<_> = recorder
            .seen()
            .iter()
            .map(|e| e.subject.clone().unwrap())
            .collect();
        assert_eq!(subjects, ["bad", "bad", "bad", "good"]);
        assert_eq!(recorder.seen()[2].attempt, 3);
        let dead = f.dead.dead_letters(10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].message.metadata["ce-subject"], "bad");
        assert_eq!(dead[0].attempts, 3);
        assert!(dead[0].reason.contains("boom"), "{}", dead[0].reason);
    }
}
