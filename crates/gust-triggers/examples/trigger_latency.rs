//! Benchmark: timer firing lateness and change-feed lag, each next to a
//! baseline measured in the same run.
//!
//! * Timer: a schedule firing every second (`* * * * * *`) through
//!   [`TimerRunner`] (which persists its status before each firing) vs a
//!   bare `tokio::time::sleep` loop to the same whole seconds. Lateness =
//!   when the dispatcher got the event - the slot.
//! * Change feed: table writes at ~1,000/s through [`ChangeFeedConsumer`]
//!   (a durable checkpoint per change) vs a bare `wait_for_change` +
//!   `changes` reader. Lag = when the dispatcher (or the reader) got the
//!   change - when `put` returned.
//!
//! Run with `bench/triggers.sh` (release build). Usage:
//! `trigger_latency [timer-seconds] [feed-writes]`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use gust_backends::embedded::{EmbeddedKv, EmbeddedQueues, EmbeddedTables};
use gust_backends::{KeyValueProvider, QueueProvider, TableProvider};
use gust_events::{Event, Outcome};
use gust_manifest::{RetryPolicy, RetryStrategy};
use gust_triggers::changefeed::{ChangeFeedConsumer, ChangefeedSettings, ChangefeedStart};
use gust_triggers::timer::{TimerRunner, TimerSettings};
use gust_triggers::{Dispatcher, Shutdown};

/// Arrivals: the event, the wall-clock time and the monotonic time.
type Arrivals = Mutex<Vec<(Event, SystemTime, Instant)>>;

/// Records when each event arrived.
#[derive(Default)]
struct Stamps(Arrivals);

impl Dispatcher for Stamps {
    fn dispatch(
        &self,
        _function: &str,
        event: Event,
    ) -> Pin<Box<dyn Future<Output = Outcome> + Send + '_>> {
        self.0
            .lock()
            .unwrap()
            .push((event, SystemTime::now(), Instant::now()));
        Box::pin(async { Outcome::Done })
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{label:<44} n={:<6} p50={:>8.3} ms  p99={:>8.3} ms  max={:>8.3} ms",
        ms.len(),
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN)
    );
}

fn slot_of(event: &Event) -> SystemTime {
    let data: serde_json::Value = serde_json::from_slice(&event.data).unwrap();
    let slot =
        chrono::DateTime::parse_from_rfc3339(data["scheduled_time"].as_str().unwrap()).unwrap();
    SystemTime::UNIX_EPOCH + Duration::from_micros(slot.timestamp_micros() as u64)
}

async fn timer(seconds: u64, dir: &std::path::Path) {
    let kv = EmbeddedKv::open(&dir.join("kv.redb")).unwrap();
    let stamps = Arc::new(Stamps::default());
    let runner = TimerRunner {
        function: "tick".into(),
        trigger: TimerSettings {
            schedule: "* * * * * *".into(),
            time_zone: "UTC".into(),
            run_on_startup: false,
        },
        status: kv.open("gust:timers").unwrap(),
        dispatcher: stamps.clone(),
        lease: None,
    };
    let (stop, shutdown) = Shutdown::new();
    let task = tokio::spawn(runner.run(shutdown));

    // Baseline in the same run: sleep to each whole second.
    let mut base = Vec::new();
    for _ in 0..seconds {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        let next = Duration::from_secs(now.as_secs() + 1);
        tokio::time::sleep(next - now).await;
        let woke = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap();
        base.push((woke - next).as_secs_f64() * 1e3);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    let late: Vec<f64> = stamps
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(e, at, _)| {
            at.duration_since(slot_of(e))
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3
        })
        .collect();
    report("timer lateness: bare tokio sleep (baseline)", base);
    report("timer lateness: gust TimerRunner", late);
}

async fn feed(writes: usize, dir: &std::path::Path) {
    let tables = EmbeddedTables::open(&dir.join("tables.redb")).unwrap();
    let kv = EmbeddedKv::open(&dir.join("checkpoints.redb")).unwrap();
    let queues = EmbeddedQueues::open(&dir.join("queues.redb")).unwrap();
    let table = tables.open("contacts").unwrap();
    let stamps = Arc::new(Stamps::default());
    let consumer = ChangeFeedConsumer {
        function: "project".into(),
        trigger: ChangefeedSettings {
            table: "contacts".into(),
            start: ChangefeedStart::Beginning,
            batch_size: 100,
        },
        retry: RetryPolicy {
            strategy: RetryStrategy::Fixed,
            max_attempts: 3,
            min: Duration::from_millis(10),
            max: Duration::from_millis(10),
        },
        table: tables.open("contacts").unwrap(),
        checkpoints: kv.open("gust:changefeed-checkpoints").unwrap(),
        dead_letters: queues.queue("contacts--project-deadletter").await.unwrap(),
        dispatcher: stamps.clone(),
    };
    let (stop, shutdown) = Shutdown::new();
    let task = tokio::spawn(consumer.run(shutdown));

    // Baseline reader in the same run: no dispatch, no checkpoint.
    let reader_table = tables.open("contacts").unwrap();
    let reader = tokio::spawn(async move {
        let mut seen = HashMap::new();
        let mut after = 0;
        while seen.len() < writes {
            let changes = reader_table.changes(after, 100).await.unwrap();
            if changes.is_empty() {
                reader_table
                    .wait_for_change(after, Duration::from_millis(500))
                    .await;
                continue;
            }
            let now = Instant::now();
            for c in changes {
                after = c.sequence;
                seen.insert(c.sequence, now);
            }
        }
        seen
    });

    // Writes at a steady ~1,000/s, noting when each `put` returned.
    let mut written = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    for i in 0..writes {
        tick.tick().await;
        let seq = table
            .put(
                &format!("k{}", i % 100),
                format!("{{\"n\":{i}}}").into_bytes(),
            )
            .await
            .unwrap();
        written.insert(seq, Instant::now());
    }
    let seen = reader.await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while stamps.0.lock().unwrap().len() < writes && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    // A reader can see a change before `put` has returned to the writer:
    // that counts as zero lag.
    let lag =
        |at: Instant, seq: u64| at.saturating_duration_since(written[&seq]).as_secs_f64() * 1e3;
    let base: Vec<f64> = seen.iter().map(|(seq, at)| lag(*at, *seq)).collect();
    let got: Vec<f64> = stamps
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(e, _, at)| {
            let seq: u64 = e.extension("sequence").unwrap().parse().unwrap();
            lag(*at, seq)
        })
        .collect();
    report("change-feed lag: bare reader (baseline)", base);
    report("change-feed lag: gust ChangeFeedConsumer", got);
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let seconds: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(30);
    let writes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let dir = tempfile::tempdir().unwrap();
    println!("timer: {seconds} one-second slots; change feed: {writes} writes at ~1,000/s");
    tokio::join!(timer(seconds, dir.path()), feed(writes, dir.path()));
}
