//! The stream trigger: one task per partition reads records in offset order
//! and runs the function on them one at a time, so records of one partition
//! (and so of one key) are handled in the order they were appended.
//!
//! Each record becomes a `gust.stream.record` CloudEvent ([`record_event`]).
//! A record whose function asks to retry is tried again after the retry
//! policy's backoff, up to its `max_attempts`, and then appended to the
//! dead-letter stream `<stream>-deadletter` with the reason and attempts;
//! a record that fails for good goes there at once. Either way the partition
//! moves on: a poison record never blocks it.
//!
//! The consumer's position is the stream checkpoint of the function's name,
//! committed after each batch was handled (and on shutdown), never before.
//! After a crash the records since the last checkpoint are delivered again:
//! at least once. Without a checkpoint, `start` decides where to begin, and
//! that position is committed at once so a restart does not move it.

use std::sync::Arc;
use std::time::Duration;

use gust_backends::stream::{MAX_PARTITIONS, StreamConfig};
use gust_backends::{Queue, Stream, StreamRecord};
use gust_events::{Event, new_traceparent, rfc3339};
use gust_manifest::RetryPolicy;
use serde::Deserialize;

use crate::dispatch::{Dispatcher, Shutdown};
use crate::registry::{Description, StartContext, StartFuture, Started, TriggerError, TriggerKind};
use crate::settings::{Invalid, Settings};
use crate::settle::{Settlement, dead_letter_event, settle};
use gust_manifest::{EventTriggerKind, Function, Trigger};

/// Longest wait for new records in one call (bounds the recovery from a
/// failed wait; shutdown interrupts it at once).
const POLL: Duration = Duration::from_secs(1);
/// Pause after a backend call failed, before trying again.
const PAUSE: Duration = Duration::from_secs(1);

/// CloudEvents `type` of a stream record.
pub const RECORD_EVENT_TYPE: &str = "gust.stream.record";

/// Where a consumer without a checkpoint begins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartFrom {
    /// The oldest record still kept.
    Earliest,
    /// Only records appended after the consumer first started.
    #[default]
    Latest,
}

/// The settings of a `stream` trigger, as written in `gust.toml`, e.g.
/// `trigger = { stream = { stream = "telemetry", batch_size = 50, start = "earliest" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamTriggerSettings {
    /// The stream to consume.
    pub stream: String,
    /// Most records read (and checkpointed) at once; default 100.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Where to begin when the function has no checkpoint yet: `"earliest"`
    /// or `"latest"` (default).
    #[serde(default)]
    pub start: StartFrom,
    /// Partitions to create the stream with if it does not exist yet
    /// (default: the backend's, 4 on embedded). An existing stream keeps its
    /// count; opening it with another one is an error.
    #[serde(default)]
    pub partitions: Option<u32>,
}

fn default_batch_size() -> u32 {
    100
}

/// A stream trigger's settings do not make sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamTriggerError {
    /// `stream` is empty.
    #[error("stream trigger: `stream` must name a stream")]
    NoStream,
    /// `batch_size` is 0.
    #[error("stream trigger on `{stream}`: `batch_size` must be at least 1")]
    BatchSize {
        /// The stream.
        stream: String,
    },
    /// `partitions` is out of range.
    #[error(
        "stream trigger on `{stream}`: `partitions` must be 1 to {MAX_PARTITIONS}, not {partitions}"
    )]
    Partitions {
        /// The stream.
        stream: String,
        /// What was written.
        partitions: u32,
    },
}

impl StreamTriggerSettings {
    /// Settings for consuming `stream` with every default.
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            batch_size: default_batch_size(),
            start: StartFrom::default(),
            partitions: None,
        }
    }

    /// Checks the values, naming the field at fault.
    pub fn validate(&self) -> Result<(), StreamTriggerError> {
        if self.stream.is_empty() {
            return Err(StreamTriggerError::NoStream);
        }
        if self.batch_size == 0 {
            return Err(StreamTriggerError::BatchSize {
                stream: self.stream.clone(),
            });
        }
        if let Some(partitions) = self.partitions
            && (partitions == 0 || partitions > MAX_PARTITIONS)
        {
            return Err(StreamTriggerError::Partitions {
                stream: self.stream.clone(),
                partitions,
            });
        }
        Ok(())
    }

    /// The setting a [`StreamTriggerError`] is about.
    fn field_of(error: &StreamTriggerError) -> &'static str {
        match error {
            StreamTriggerError::NoStream => "stream",
            StreamTriggerError::BatchSize { .. } => "batch_size",
            StreamTriggerError::Partitions { .. } => "partitions",
        }
    }

    /// How to open the stream (with `StreamProvider::stream_with`) when
    /// `partitions` is given; `None` means open it as it is.
    pub fn stream_config(&self) -> Option<StreamConfig> {
        self.partitions.map(|partitions| StreamConfig {
            partitions,
            ..StreamConfig::default()
        })
    }
}

impl Settings for StreamTriggerSettings {
    const KIND: &'static str = "stream";
    const HELP: &'static str = "stream triggers take `stream = \"telemetry\"`, optional `batch_size = 100`, `start = \"earliest\"` or `\"latest\"` (default) and `partitions = 1..N`";

    fn check(&self) -> Result<(), Invalid> {
        self.validate()
            .map_err(|e| Invalid::new(Self::field_of(&e), e.to_string()))
    }
}

/// The CloudEvent a stream record becomes on delivery `attempt`:
/// type `gust.stream.record`, source `/gust/stream/<stream>`, subject the
/// key, id `<partition>-<offset>` (unique within the source), time the
/// append time, and extensions `partitionkey`, `partition`, `offset` and
/// `traceparent` (the record's own when its metadata has one, else
/// `traceparent` as given), plus the record's other metadata.
pub fn record_event(stream: &str, record: &StreamRecord, attempt: u32, traceparent: &str) -> Event {
    let mut extensions: Vec<(String, String)> = record
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "content-type")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    extensions.sort();
    let mut event = Event {
        id: format!("{}-{}", record.partition, record.offset),
        source: format!("/gust/stream/{stream}"),
        ty: RECORD_EVENT_TYPE.into(),
        subject: (!record.key.is_empty()).then(|| record.key.clone()),
        time: Some(rfc3339(record.appended_at)),
        datacontenttype: record.metadata.get("content-type").cloned(),
        data: record.body.clone(),
        extensions,
        attempt: attempt.max(1),
    };
    event.set_extension("partitionkey", record.key.clone());
    event.set_extension("partition", record.partition.to_string());
    event.set_extension("offset", record.offset.to_string());
    if event.extension("traceparent").is_none() {
        event.set_extension("traceparent", traceparent);
    }
    event
}

/// One function consuming one stream.
pub struct StreamConsumer {
    /// The function to run; also the name its checkpoints are kept under.
    pub function: String,
    /// Trigger settings.
    pub settings: StreamTriggerSettings,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// The stream.
    pub stream: Arc<dyn Stream>,
    /// The queue `<stream>--<function>` whose dead letters take the records
    /// the function gave up on ([`crate::settle::retry_queue`]).
    pub dead_letters: Arc<dyn Queue>,
    /// Runs the function.
    pub dispatcher: Arc<dyn Dispatcher>,
}

/// How handling one record ended.
enum Handled {
    /// Done or dead-lettered: move past it.
    Settled,
    /// Shutdown came first: leave it for the next run.
    Stopped,
}

impl StreamConsumer {
    /// Consumes every partition until `shutdown`; the record being handled
    /// in each partition finishes, and what was handled is committed.
    pub async fn run(self, shutdown: Shutdown) {
        self.warn_on_partition_mismatch();
        let this = Arc::new(self);
        // Dropping `run` (e.g. aborting its task) aborts every partition
        // task with it, without committing: like a crash.
        let mut tasks = tokio::task::JoinSet::new();
        for partition in 0..this.stream.partitions() {
            tasks.spawn(this.clone().consume(partition, shutdown.clone()));
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(stream = %this.stream.name(), error = %e, "stream partition task failed");
            }
        }
    }

    /// Says so when the stream has another partition count than the
    /// trigger's settings name.
    fn warn_on_partition_mismatch(&self) {
        if let Some(want) = self.settings.partitions
            && want != self.stream.partitions()
        {
            tracing::warn!(
                stream = %self.stream.name(),
                function = %self.function,
                configured = want,
                actual = self.stream.partitions(),
                "stream has another partition count than its trigger says; consuming all it has"
            );
        }
    }

    /// Consumes one partition until `shutdown`.
    async fn consume(self: Arc<Self>, partition: u32, mut shutdown: Shutdown) {
        let Some(mut next) = self.start_position(partition, &mut shutdown).await else {
            return;
        };
        let mut committed = next;
        let batch = self.settings.batch_size.max(1) as usize;
        loop {
            if shutdown.is_requested() {
                break;
            }
            let records = match self.stream.read(partition, next, batch).await {
                Ok(records) => records,
                Err(e) => {
                    tracing::warn!(stream = %self.stream.name(), partition, error = %e, "stream read failed; retrying");
                    if pause(&mut shutdown, PAUSE).await {
                        break;
                    }
                    continue;
                }
            };
            if records.is_empty() {
                tokio::select! {
                    waited = self.stream.wait_for_append(partition, next, POLL) => {
                        if let Err(e) = waited {
                            tracing::warn!(stream = %self.stream.name(), partition, error = %e, "waiting for records failed");
                            if pause(&mut shutdown, PAUSE).await {
                                break;
                            }
                        }
                    }
                    () = shutdown.requested() => break,
                }
                continue;
            }
            if records[0].offset > next {
                tracing::warn!(
                    stream = %self.stream.name(),
                    partition,
                    function = %self.function,
                    lost = records[0].offset - next,
                    "records were removed by retention before they were handled"
                );
            }
            let mut stopped = false;
            for record in &records {
                match self.handle(record, &mut shutdown).await {
                    Handled::Settled => next = record.offset + 1,
                    Handled::Stopped => {
                        stopped = true;
                        break;
                    }
                }
                if shutdown.is_requested() {
                    stopped = true;
                    break;
                }
            }
            if next != committed && self.commit(partition, next).await {
                committed = next;
            }
            if stopped {
                break;
            }
        }
        if next != committed {
            self.commit(partition, next).await;
        }
    }

    /// The checkpoint, or (without one) where `start` says, committed at
    /// once. `None` when shutdown came first.
    async fn start_position(&self, partition: u32, shutdown: &mut Shutdown) -> Option<u64> {
        loop {
            let found = match self.stream.checkpoint(&self.function, partition).await {
                Ok(Some(next)) => return Some(next),
                Ok(None) => {
                    self.stream
                        .offsets(partition)
                        .await
                        .map(|o| match self.settings.start {
                            StartFrom::Earliest => o.earliest,
                            StartFrom::Latest => o.next,
                        })
                }
                Err(e) => Err(e),
            };
            match found {
                Ok(start) => {
                    if self.commit(partition, start).await {
                        return Some(start);
                    }
                }
                Err(e) => {
                    tracing::warn!(stream = %self.stream.name(), partition, error = %e, "cannot find where to start; retrying");
                }
            }
            if pause(shutdown, PAUSE).await {
                return None;
            }
        }
    }

    /// Commits `next`; logs and returns false when that failed (the records
    /// are then delivered again after a restart).
    async fn commit(&self, partition: u32, next: u64) -> bool {
        match self.stream.commit(&self.function, partition, next).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(stream = %self.stream.name(), partition, next, error = %e, "cannot commit the stream checkpoint");
                false
            }
        }
    }

    /// Runs the function on `record` until it is done, dead-lettered, or
    /// shutdown interrupts a backoff.
    async fn handle(&self, record: &StreamRecord, shutdown: &mut Shutdown) -> Handled {
        // One trace for every attempt of a record.
        let traceparent = new_traceparent();
        let mut attempt = 1;
        loop {
            let event = record_event(self.stream.name(), record, attempt, &traceparent);
            let outcome = self.dispatcher.dispatch(&self.function, event).await;
            match settle(&outcome, attempt, &self.retry) {
                Settlement::Ack => return Handled::Settled,
                Settlement::Retry(delay) => {
                    if pause(shutdown, delay).await {
                        return Handled::Stopped;
                    }
                    attempt += 1;
                    tracing::debug!(stream = %self.stream.name(), partition = record.partition, offset = record.offset, attempt, ?outcome, "retrying stream record");
                }
                Settlement::DeadLetter(reason) => {
                    let event = record_event(self.stream.name(), record, attempt, &traceparent);
                    dead_letter_event(&*self.dead_letters, &event, &reason, attempt).await;
                    tracing::warn!(stream = %self.stream.name(), partition = record.partition, offset = record.offset, function = %self.function, %reason, "stream record dead-lettered");
                    return Handled::Settled;
                }
            }
        }
    }
}

/// Sleeps `d`; true when shutdown was requested first.
async fn pause(shutdown: &mut Shutdown, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => shutdown.is_requested(),
        () = shutdown.requested() => true,
    }
}

/// The `stream` trigger kind: owns its settings ([`StreamTriggerSettings`]).
pub struct StreamKind;

impl TriggerKind for StreamKind {
    fn name(&self) -> &'static str {
        "stream"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Stream,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        StreamTriggerSettings::of(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        Description::from_settings(self.name(), "stream", function)
    }

    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move {
            let f = cx.function;
            let settings = StreamTriggerSettings::of(f)?;
            let stream = match settings.stream_config() {
                Some(config) => {
                    cx.services
                        .streams
                        .stream_with(&settings.stream, config)
                        .await
                }
                None => cx.services.streams.stream(&settings.stream).await,
            }
            .map_err(|e| cx.error(format!("cannot open stream `{}`: {e}", settings.stream)))?;
            let dead_letters = cx
                .queue(&crate::settle::retry_queue(&settings.stream, &f.name))
                .await?;
            let mut started = Started::default();
            cx.start_redrive(&mut started, dead_letters.clone());
            let consumer = StreamConsumer {
                function: f.name.clone(),
                settings,
                retry: f.retry.clone(),
                stream,
                dead_letters,
                dispatcher: cx.dispatcher.clone(),
            };
            consumer.warn_on_partition_mismatch();
            let consumer = Arc::new(consumer);
            let claims = (0..consumer.stream.partitions())
                .map(|p| format!("stream:{}:{}:{p}", consumer.stream.name(), f.name))
                .collect();
            cx.spawn_owned(&mut started, claims, move |p, shutdown| {
                consumer.clone().consume(p as u32, shutdown)
            });
            Ok(started)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use gust_backends::StreamProvider;
    use gust_backends::embedded::{EmbeddedQueues, EmbeddedStreams};
    use gust_backends::stream::Retention;
    use gust_events::Outcome;
    use gust_manifest::RetryStrategy;
    use tokio::task::JoinHandle;

    use super::*;
    use crate::test_support::Recorder;

    fn retry(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            strategy: RetryStrategy::Fixed,
            max_attempts,
            min: Duration::from_millis(20),
            max: Duration::from_millis(20),
        }
    }

    fn settings(stream: &str, start: StartFrom, batch_size: u32) -> StreamTriggerSettings {
        StreamTriggerSettings {
            batch_size,
            start,
            ..StreamTriggerSettings::new(stream)
        }
    }

    async fn open(
        dir: &tempfile::TempDir,
        name: &str,
        partitions: u32,
    ) -> (EmbeddedStreams, Arc<dyn Stream>) {
        let streams = EmbeddedStreams::open(&dir.path().join("streams.redb")).unwrap();
        let stream = streams
            .stream_with(
                name,
                StreamConfig {
                    partitions,
                    retention: Retention::default(),
                },
            )
            .await
            .unwrap();
        (streams, stream)
    }

    async fn append(stream: &dyn Stream, key: &str, body: &str) {
        stream
            .append(key, body.as_bytes().to_vec(), BTreeMap::new())
            .await
            .unwrap();
    }

    /// The dead-letter queue of `function`, in a store of its own that lives
    /// as long as the test process.
    fn dead_letters(function: &str) -> Arc<dyn Queue> {
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let queues = EmbeddedQueues::open(&dir.path().join("queues.redb")).unwrap();
        Arc::new(
            queues
                .open_queue(&crate::settle::retry_queue("s", function))
                .unwrap(),
        )
    }

    fn start(
        function: &str,
        settings: StreamTriggerSettings,
        retry: RetryPolicy,
        stream: &Arc<dyn Stream>,
        recorder: &Arc<Recorder>,
    ) -> (tokio::sync::watch::Sender<bool>, JoinHandle<()>) {
        let consumer = StreamConsumer {
            function: function.into(),
            settings,
            retry,
            stream: stream.clone(),
            dead_letters: dead_letters(function),
            dispatcher: recorder.clone(),
        };
        let (stop, shutdown) = Shutdown::new();
        (stop, tokio::spawn(consumer.run(shutdown)))
    }

    async fn stop(stop: tokio::sync::watch::Sender<bool>, running: JoinHandle<()>) {
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), running)
            .await
            .expect("consumer stops promptly")
            .unwrap();
    }

    /// Waits (up to 10 s) until `f` holds.
    async fn until(what: &str, mut f: impl AsyncFnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !f().await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn bodies(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| String::from_utf8(e.data.clone()).unwrap())
            .collect()
    }

    fn offset(e: &Event) -> u64 {
        e.extension("offset").unwrap().parse().unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivers_each_partition_in_order_as_cloud_events() {
        let dir = tempfile::tempdir().unwrap();
        let (_streams, stream) = open(&dir, "telemetry", 3).await;
        let keys: Vec<String> = (0..6).map(|k| format!("device-{k}")).collect();
        for i in 0..10 {
            for key in &keys {
                append(&*stream, key, &format!("{key}/{i}")).await;
            }
        }
        let recorder = Arc::new(Recorder::new(|_| Outcome::Done));
        // A small batch, so ordering must hold across batches too.
        let (tx, running) = start(
            "agg",
            settings("telemetry", StartFrom::Earliest, 4),
            retry(3),
            &stream,
            &recorder,
        );
        until("all records", async || recorder.seen().len() >= 60).await;
        // Checkpoint after the last batch of each partition.
        until("checkpoints at the end", async || {
            let mut all = true;
            for p in 0..3 {
                let end = stream.offsets(p).await.unwrap().next;
                all &= stream.checkpoint("agg", p).await.unwrap() == Some(end);
            }
            all
        })
        .await;
        stop(tx, running).await;

        let seen = recorder.seen();
        assert_eq!(seen.len(), 60, "each record once");
        for p in 0..3 {
            let of_partition: Vec<&Event> = seen
                .iter()
                .filter(|e| e.extension("partition") == Some(&p.to_string()))
                .collect();
            let offsets: Vec<u64> = of_partition.iter().map(|e| offset(e)).collect();
            assert_eq!(
                offsets,
                (0..offsets.len() as u64).collect::<Vec<_>>(),
                "partition {p} in order"
            );
        }
        for key in &keys {
            let of_key: Vec<Event> = seen
                .iter()
                .filter(|e| e.subject.as_deref() == Some(key))
                .cloned()
                .collect();
            assert_eq!(
                bodies(&of_key),
                (0..10).map(|i| format!("{key}/{i}")).collect::<Vec<_>>()
            );
        }
        let e = &seen[0];
        assert_eq!(e.ty, "gust.stream.record");
        assert_eq!(e.source, "/gust/stream/telemetry");
        let key = e.subject.clone().unwrap();
        assert_eq!(e.extension("partitionkey"), Some(key.as_str()));
        let partition = stream.partition_for(&key);
        assert_eq!(
            e.extension("partition"),
            Some(partition.to_string().as_str())
        );
        assert_eq!(e.id, format!("{partition}-{}", offset(e)));
        assert_eq!(e.attempt, 1);
        assert!(e.time.is_some());
        assert!(
            e.extension("traceparent")
                .is_some_and(|t| t.starts_with("00-"))
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_only_after_success_and_resumes_from_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (_streams, stream) = open(&dir, "s", 1).await;
        for body in ["a", "b", "slow", "c"] {
            append(&*stream, "k", body).await;
        }
        let busy = |e: &Event| {
            if e.data == b"slow" {
                Outcome::Retry("busy".into())
            } else {
                Outcome::Done
            }
        };
        let policy = retry(1000);

        // Run 1 crashes (is aborted) while `slow` is being retried: a and b
        // were handled, but their batch was not, so nothing was committed.
        let first = Arc::new(Recorder::new(busy));
        let (_tx, running) = start(
            "fn",
            settings("s", StartFrom::Earliest, 10),
            policy.clone(),
            &stream,
            &first,
        );
        until("slow retried", async || {
            bodies(&first.seen())
                .iter()
                .filter(|b| *b == "slow")
                .count()
                >= 2
        })
        .await;
        assert_eq!(
            stream.checkpoint("fn", 0).await.unwrap(),
            Some(0),
            "not before success"
        );
        running.abort();
        let _ = running.await;
        assert_eq!(bodies(&first.seen())[..2], ["a", "b"]);

        // Run 2 sees a and b again (at least once), then is stopped while
        // retrying `slow`: it commits what it handled, up to `slow`.
        let second = Arc::new(Recorder::new(busy));
        let (tx, running) = start(
            "fn",
            settings("s", StartFrom::Earliest, 10),
            policy.clone(),
            &stream,
            &second,
        );
        until("slow retried", async || {
            bodies(&second.seen())
                .iter()
                .filter(|b| *b == "slow")
                .count()
                >= 2
        })
        .await;
        stop(tx, running).await;
        assert_eq!(bodies(&second.seen())[..2], ["a", "b"]);
        assert_eq!(stream.checkpoint("fn", 0).await.unwrap(), Some(2));

        // Run 3 resumes at `slow` (its start setting does not matter now).
        let third = Arc::new(Recorder::new(|_| Outcome::Done));
        let (tx, running) = start(
            "fn",
            settings("s", StartFrom::Latest, 10),
            policy,
            &stream,
            &third,
        );
        until("the rest", async || third.seen().len() >= 2).await;
        until("checkpoint at the end", async || {
            stream.checkpoint("fn", 0).await.unwrap() == Some(4)
        })
        .await;
        stop(tx, running).await;
        assert_eq!(bodies(&third.seen()), ["slow", "c"]);
        let offsets: Vec<u64> = third.seen().iter().map(offset).collect();
        assert_eq!(offsets, [2, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn retries_then_dead_letters_and_moves_on() {
        let dir = tempfile::tempdir().unwrap();
        let (_streams, stream) = open(&dir, "s", 1).await;
        for body in ["ok1", "poison", "fatal", "flaky", "ok2"] {
            append(&*stream, "k", body).await;
        }
        let recorder = Arc::new(Recorder::new(|e| match (e.data.as_slice(), e.attempt) {
            (b"poison", _) | (b"flaky", 1) => Outcome::Retry("boom".into()),
            (b"fatal", _) => Outcome::Fail("bad input".into()),
            _ => Outcome::Done,
        }));
        let dead = dead_letters("fn");
        let consumer = StreamConsumer {
            function: "fn".into(),
            settings: settings("s", StartFrom::Earliest, 100),
            retry: retry(3),
            stream: stream.clone(),
            dead_letters: dead.clone(),
            dispatcher: recorder.clone(),
        };
        let (tx, shutdown) = Shutdown::new();
        let running = tokio::spawn(consumer.run(shutdown));
        until("checkpoint past every record", async || {
            stream.checkpoint("fn", 0).await.unwrap() == Some(5)
        })
        .await;
        stop(tx, running).await;

        let seen: Vec<(String, u32)> = recorder
            .seen()
            .iter()
            .map(|e| (String::from_utf8(e.data.clone()).unwrap(), e.attempt))
            .collect();
        let expected: Vec<(String, u32)> = [
            ("ok1", 1),
            ("poison", 1),
            ("poison", 2),
            ("poison", 3),
            ("fatal", 1),
            ("flaky", 1),
            ("flaky", 2),
            ("ok2", 1),
        ]
        .iter()
        .map(|(b, a)| (b.to_string(), *a))
        .collect();
        assert_eq!(seen, expected);
        // Every attempt of a record carries the same id and trace.
        let poison: Vec<Event> = recorder
            .seen()
            .into_iter()
            .filter(|e| e.data == b"poison")
            .collect();
        assert!(poison.iter().all(|e| e.id == poison[0].id
            && e.extension("traceparent") == poison[0].extension("traceparent")));

        // Dead letters go to the queue `s--fn`, each the record's event.
        assert_eq!(dead.name(), "s--fn");
        let letters = dead.dead_letters(10).await.unwrap();
        let summary: Vec<(&[u8], &str, u32)> = letters
            .iter()
            .map(|d| (d.message.body.as_slice(), d.reason.as_str(), d.attempts))
            .collect();
        assert_eq!(
            summary,
            [
                (&b"poison"[..], "gave up after 3 attempts: boom", 3),
                (&b"fatal"[..], "not retryable: bad input", 1),
            ]
        );
        let event = gust_events::from_metadata(&letters[0].message.metadata, Vec::new(), 1)
            .expect("a dead letter carries its event");
        assert_eq!(event.id, poison[0].id);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn starts_at_earliest_or_latest_without_a_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (_streams, stream) = open(&dir, "s", 2).await;
        let keys = ["x", "y", "z"];
        for key in keys {
            append(&*stream, key, &format!("old-{key}")).await;
        }
        let early = Arc::new(Recorder::new(|_| Outcome::Done));
        let late = Arc::new(Recorder::new(|_| Outcome::Done));
        let (tx_early, run_early) = start(
            "early",
            settings("s", StartFrom::Earliest, 10),
            retry(3),
            &stream,
            &early,
        );
        let (tx_late, run_late) = start(
            "late",
            settings("s", StartFrom::Latest, 10),
            retry(3),
            &stream,
            &late,
        );
        // The starting position is committed before anything is handled.
        until("late consumer started", async || {
            let mut all = true;
            for p in 0..2 {
                all &= stream.checkpoint("late", p).await.unwrap().is_some();
            }
            all
        })
        .await;
        for key in keys {
            append(&*stream, key, &format!("new-{key}")).await;
        }
        until("early saw all", async || early.seen().len() >= 6).await;
        until("late saw the new ones", async || late.seen().len() >= 3).await;
        stop(tx_late, run_late).await;
        // Appended while `late` is down: its checkpoint wins over "latest".
        append(&*stream, "x", "while-down").await;
        let (tx_late, run_late) = start(
            "late",
            settings("s", StartFrom::Latest, 10),
            retry(3),
            &stream,
            &late,
        );
        until("late caught up", async || late.seen().len() >= 4).await;
        until("early caught up", async || early.seen().len() >= 7).await;
        stop(tx_late, run_late).await;
        stop(tx_early, run_early).await;

        let mut e = bodies(&early.seen());
        e.sort();
        assert_eq!(
            e,
            [
                "new-x",
                "new-y",
                "new-z",
                "old-x",
                "old-y",
                "old-z",
                "while-down"
            ]
        );
        let mut l = bodies(&late.seen());
        l.sort();
        assert_eq!(l, ["new-x", "new-y", "new-z", "while-down"]);
    }

    /// A function that does nothing, counting calls.
    struct Noop(std::sync::atomic::AtomicU64);

    impl Dispatcher for Noop {
        fn dispatch(
            &self,
            _function: &str,
            _event: Event,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send + '_>> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(async { Outcome::Done })
        }
    }

    /// `cargo test -p gust-triggers --lib stream::tests::throughput -- --ignored --nocapture`
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "measurement"]
    async fn throughput() {
        let dir = tempfile::tempdir().unwrap();
        let (_streams, stream) = open(&dir, "bench", 4).await;
        let n = 40_000u64;
        for b in 0..n / 1000 {
            let batch = (0..1000)
                .map(|i| {
                    (
                        format!("dev-{}", (b + i) % 64),
                        vec![b'x'; 100],
                        BTreeMap::new(),
                    )
                })
                .collect();
            stream.append_batch(batch).await.unwrap();
        }
        let noop = Arc::new(Noop(Default::default()));
        let consumer = StreamConsumer {
            function: "noop".into(),
            settings: settings("bench", StartFrom::Earliest, 100),
            retry: retry(3),
            stream: stream.clone(),
            dead_letters: dead_letters("noop"),
            dispatcher: noop.clone(),
        };
        let (tx, shutdown) = Shutdown::new();
        let started = std::time::Instant::now();
        let running = tokio::spawn(consumer.run(shutdown));
        while noop.0.load(std::sync::atomic::Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        stop(tx, running).await;
        println!("consumed {n} in {secs:.2}s = {:.0}/s", n as f64 / secs);
    }

    #[test]
    fn settings_have_defaults_and_are_checked() {
        let s: StreamTriggerSettings =
            serde_json::from_value(serde_json::json!({"stream": "t"})).unwrap();
        assert_eq!(s, StreamTriggerSettings::new("t"));
        assert_eq!(
            (s.batch_size, s.start, s.partitions),
            (100, StartFrom::Latest, None)
        );
        assert!(s.validate().is_ok());
        assert_eq!(s.stream_config(), None);
        let s: StreamTriggerSettings = serde_json::from_value(serde_json::json!({
            "stream": "t", "batch_size": 5, "start": "earliest", "partitions": 8
        }))
        .unwrap();
        assert_eq!(
            (s.batch_size, s.start, s.partitions),
            (5, StartFrom::Earliest, Some(8))
        );
        assert_eq!(s.stream_config().unwrap().partitions, 8);
        assert!(
            serde_json::from_value::<StreamTriggerSettings>(
                serde_json::json!({"stream": "t", "start": "middle"})
            )
            .is_err()
        );
        assert!(
            serde_json::from_value::<StreamTriggerSettings>(
                serde_json::json!({"stream": "t", "batch": 5})
            )
            .is_err()
        );
        let zero = StreamTriggerSettings {
            batch_size: 0,
            ..StreamTriggerSettings::new("t")
        };
        assert_eq!(
            zero.validate().unwrap_err().to_string(),
            "stream trigger on `t`: `batch_size` must be at least 1"
        );
        let many = StreamTriggerSettings {
            partitions: Some(0),
            ..StreamTriggerSettings::new("t")
        };
        assert!(matches!(
            many.validate(),
            Err(StreamTriggerError::Partitions { .. })
        ));
    }
}
