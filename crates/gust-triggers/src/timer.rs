//! The timer trigger: fires a function on a cron schedule (6 fields with
//! seconds, or 5), in a time zone, optionally once on startup.
//!
//! Its status (last fired slot, next slot) is persisted in a key-value store,
//! so a restart that finds the next slot already past fires once with
//! `past_due = true`. A slot is recorded as fired *before* the function runs,
//! so no slot ever fires twice; with a [`Lease`] store, a slot also fires
//! on one node only when several run the same app (the node that claims
//! `timer:<function>@<slot>` first fires it).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use gust_backends::{KeyValue, Lease};
use gust_events::{Event, Outcome};
use gust_manifest::{EventTriggerKind, Function, Trigger};
use serde::Deserialize;
use serde_json::json;

use crate::dispatch::{Dispatcher, Shutdown};
use crate::registry::{Description, StartContext, StartFuture, Started, TriggerError, TriggerKind};
use crate::settings::{Invalid, Settings};

/// `trigger = { timer = { schedule = "0 */5 * * * *", time_zone = "Europe/Paris" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimerSettings {
    /// Cron pattern: 6 fields with seconds, or 5 fields (minute granularity).
    #[serde(default)]
    pub schedule: String,
    /// IANA time zone the schedule is read in (default UTC).
    #[serde(default = "default_zone")]
    pub time_zone: String,
    /// Also fire once when the host starts.
    #[serde(default)]
    pub run_on_startup: bool,
}

fn default_zone() -> String {
    "UTC".into()
}

impl Settings for TimerSettings {
    const KIND: &'static str = "timer";
    const HELP: &'static str = "timer triggers take `schedule = \"<cron>\"` (6 fields `sec min hour day month weekday`, e.g. `*/10 * * * * *`, or 5 without seconds, e.g. `0 3 * * *`), `time_zone = \"Europe/Paris\"` (an IANA name) and `run_on_startup = true|false`";

    fn check(&self) -> Result<(), Invalid> {
        Schedule::new(self).map(|_| ())
    }
}

/// Persisted schedule status of one timer function.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerStatus {
    /// The last slot that fired.
    pub last: Option<DateTime<Utc>>,
    /// The slot due next.
    pub next: Option<DateTime<Utc>>,
}

impl TimerStatus {
    fn to_json(&self) -> Vec<u8> {
        json!({ "last": self.last.map(|t| t.to_rfc3339()), "next": self.next.map(|t| t.to_rfc3339()) })
            .to_string()
            .into_bytes()
    }

    fn from_json(bytes: &[u8]) -> Self {
        let v: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        let time = |k: &str| {
            v[k].as_str()
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        Self {
            last: time("last"),
            next: time("next"),
        }
    }
}

/// A compiled schedule in its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

impl Schedule {
    /// Parses `trigger`'s schedule and zone, naming the setting at fault.
    pub fn new(trigger: &TimerSettings) -> Result<Self, Invalid> {
        let cron: Cron = trigger.schedule.parse().map_err(|e| {
            Invalid::new(
                "schedule",
                format!(
                    "schedule `{}` is not a valid cron pattern: {e}",
                    trigger.schedule
                ),
            )
        })?;
        let zone: Tz = trigger.time_zone.parse().map_err(|_| {
            Invalid::new(
                "time_zone",
                format!("unknown time zone `{}`", trigger.time_zone),
            )
        })?;
        Ok(Self { cron, zone })
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = after.with_timezone(&self.zone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    }
}

/// Runs one timer function.
pub struct TimerRunner {
    /// The function.
    pub function: String,
    /// Its trigger settings.
    pub trigger: TimerSettings,
    /// Where the status is kept (key = function name).
    pub status: Arc<dyn KeyValue>,
    /// Runs the function.
    pub dispatcher: Arc<dyn Dispatcher>,
    /// Claims of schedule slots shared by the nodes running this app, and
    /// this node's name in them (none: this process alone fires).
    pub lease: Option<(Arc<dyn Lease>, String)>,
}

/// How long a slot's claim is kept (longer than any clock skew between nodes).
const SLOT_CLAIM: Duration = Duration::from_secs(600);

impl TimerRunner {
    /// Fires on schedule until `shutdown`.
    pub async fn run(self, mut shutdown: Shutdown) {
        let schedule = match Schedule::new(&self.trigger) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(function = %self.function, error = %e.message, "timer not started");
                return;
            }
        };
        let mut status = self.load().await;
        let now = Utc::now();
        match status.next {
            Some(missed) if missed < now - chrono::Duration::seconds(1) => {
                self.fire(&schedule, &mut status, missed, true).await;
            }
            _ if self.trigger.run_on_startup => self.fire(&schedule, &mut status, now, false).await,
            _ => {}
        }
        loop {
            let from = status.last.map_or(Utc::now(), |l| l.max(Utc::now()));
            let Some(next) = schedule.next_after(from) else {
                tracing::warn!(function = %self.function, "schedule has no further slots");
                return;
            };
            status.next = Some(next);
            self.save(&status).await;
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = shutdown.requested() => return,
            }
            self.fire(&schedule, &mut status, next, false).await;
        }
    }

    async fn fire(
        &self,
        schedule: &Schedule,
        status: &mut TimerStatus,
        slot: DateTime<Utc>,
        past_due: bool,
    ) {
        let previous = status.last;
        status.last = Some(slot);
        status.next = schedule.next_after(slot.max(Utc::now()));
        // Recorded before running: a crash now skips this slot rather than
        // firing it twice.
        self.save(status).await;
        if let Some((lease, node)) = &self.lease {
            let claim = format!("timer:{}@{}", self.function, slot.to_rfc3339());
            match lease.acquire(&claim, node, SLOT_CLAIM).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::debug!(function = %self.function, slot = %slot, "slot fired by another node");
                    return;
                }
                Err(e) => {
                    tracing::warn!(function = %self.function, slot = %slot, "cannot claim the slot, skipping it: {e}");
                    return;
                }
            }
        }
        let data = json!({
            "scheduled_time": slot.to_rfc3339(),
            "fired_at": Utc::now().to_rfc3339(),
            "past_due": past_due,
            "last": previous.map(|t| t.to_rfc3339()),
            "next": status.next.map(|t| t.to_rfc3339()),
        });
        let mut event = Event::new(
            format!("/gust/timer/{}", self.function),
            "gust.timer.fired",
            data.to_string().into_bytes(),
        );
        event.id = format!("{}@{}", self.function, slot.to_rfc3339());
        event.subject = Some(self.function.clone());
        event.datacontenttype = Some("application/json".into());
        event.set_extension("pastdue", past_due.to_string());
        match self.dispatcher.dispatch(&self.function, event).await {
            Outcome::Done => {}
            Outcome::Retry(why) | Outcome::Fail(why) => {
                tracing::warn!(function = %self.function, slot = %slot, "timer function failed: {why}");
            }
        }
    }

    async fn load(&self) -> TimerStatus {
        match self.status.get(&self.function).await {
            Ok(Some(bytes)) => TimerStatus::from_json(&bytes),
            _ => TimerStatus::default(),
        }
    }

    async fn save(&self, status: &TimerStatus) {
        if let Err(e) = self.status.set(&self.function, status.to_json()).await {
            tracing::warn!(function = %self.function, error = %e, "cannot persist timer status");
        }
    }
}

/// The internal kv store holding timer status (`:` keeps it apart from
/// user store names).
pub const STATUS_STORE: &str = "gust:timers";

/// The `timer` trigger kind: one firing per slot across the nodes sharing
/// the app's leases.
pub struct TimerKind;

impl TriggerKind for TimerKind {
    fn name(&self) -> &'static str {
        "timer"
    }

    fn serves(&self, trigger: &Trigger) -> bool {
        matches!(
            trigger,
            Trigger::Event {
                kind: EventTriggerKind::Timer,
                ..
            }
        )
    }

    fn validate(&self, function: &Function) -> Result<(), TriggerError> {
        TimerSettings::of(function).map(|_| ())
    }

    fn describe(&self, function: &Function) -> Description {
        let Ok(t) = TimerSettings::of(function) else {
            return Description::other(self.name(), function);
        };
        Description {
            kind: "timer",
            source: format!("schedule `{}` ({})", t.schedule, t.time_zone),
            details: json!({
                "kind": "timer",
                "schedule": t.schedule,
                "time_zone": t.time_zone,
                "run_on_startup": t.run_on_startup,
            }),
        }
    }

    fn start<'a>(&'a self, cx: StartContext<'a>) -> StartFuture<'a> {
        Box::pin(async move {
            let timer = TimerSettings::of(cx.function)?;
            let status = cx
                .services
                .kv
                .open(STATUS_STORE)
                .map_err(|e| cx.error(format!("cannot open the timer status store: {e}")))?;
            let runner = TimerRunner {
                function: cx.function.name.clone(),
                trigger: timer,
                status,
                dispatcher: cx.dispatcher.clone(),
                lease: Some((cx.services.leases.clone(), cx.node.to_string())),
            };
            let mut started = Started::default();
            cx.spawn(&mut started, runner.run(cx.shutdown.clone()));
            Ok(started)
        })
    }
}

#[cfg(test)]
mod tests {
    use gust_backends::KeyValueProvider;
    use gust_backends::embedded::EmbeddedKv;

    use super::*;
    use crate::test_support::Recorder;

    fn trigger(schedule: &str, zone: &str, run_on_startup: bool) -> TimerSettings {
        TimerSettings {
            schedule: schedule.into(),
            time_zone: zone.into(),
            run_on_startup,
        }
    }

    #[test]
    fn next_slot_respects_seconds_and_zones() {
        let t0 = DateTime::parse_from_rfc3339("2026-01-01T00:00:01Z")
            .unwrap()
            .with_timezone(&Utc);
        let every_5s = Schedule::new(&trigger("*/5 * * * * *", "UTC", false)).unwrap();
        assert_eq!(
            every_5s.next_after(t0).unwrap().to_rfc3339(),
            "2026-01-01T00:00:05+00:00"
        );
        // 03:00 in Paris (UTC+1 in January) is 02:00 UTC.
        let paris = Schedule::new(&trigger("0 3 * * *", "Europe/Paris", false)).unwrap();
        assert_eq!(
            paris.next_after(t0).unwrap().to_rfc3339(),
            "2026-01-01T02:00:00+00:00"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_nodes_sharing_a_lease_fire_each_slot_once() {
        let dir = tempfile::tempdir().unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        let leases: Arc<dyn Lease> =
            Arc::new(gust_backends::KvLeases::new(kv.open("leases").unwrap()));
        let recorder = Arc::new(Recorder::new(|_| Outcome::Done));
        let (stop, shutdown) = Shutdown::new();
        let mut tasks = Vec::new();
        for node in ["node-a", "node-b"] {
            let runner = TimerRunner {
                function: "tick".into(),
                trigger: trigger("* * * * * *", "UTC", false),
                status: kv.open(&format!("timers-{node}")).unwrap(),
                dispatcher: recorder.clone(),
                lease: Some((leases.clone(), node.to_string())),
            };
            tasks.push(tokio::spawn(runner.run(shutdown.clone())));
        }
        tokio::time::sleep(Duration::from_millis(2600)).await;
        stop.send(true).unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        let fired = recorder.seen();
        assert!(fired.len() >= 2, "two slots passed, got {}", fired.len());
        let ids: std::collections::HashSet<_> = fired.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), fired.len(), "a slot fired on both nodes");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fires_on_schedule_and_detects_a_missed_slot_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let kv = EmbeddedKv::open(&dir.path().join("kv.redb")).unwrap();
        let store = kv.open("timers").unwrap();
        let recorder = Arc::new(Recorder::new(|_| Outcome::Done));
        let runner = TimerRunner {
            function: "tick".into(),
            trigger: trigger("* * * * * *", "UTC", true),
            status: store.clone(),
            dispatcher: recorder.clone(),
            lease: None,
        };
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(runner.run(shutdown));
        tokio::time::sleep(Duration::from_millis(2300)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let fired = recorder.seen();
        assert!(fired.len() >= 3, "startup + 2 ticks, got {}", fired.len());
        let ids: std::collections::HashSet<_> = fired.iter().map(|e| e.id.clone()).collect();
        assert_eq!(ids.len(), fired.len(), "a slot fired twice");
        assert_eq!(fired[1].extension("pastdue"), Some("false"));

        // Pretend the host was down across a slot: the next slot is in the past.
        let past = Utc::now() - chrono::Duration::seconds(30);
        let status = TimerStatus {
            last: Some(past - chrono::Duration::seconds(1)),
            next: Some(past),
        };
        store.set("tick", status.to_json()).await.unwrap();
        let recorder = Arc::new(Recorder::new(|_| Outcome::Done));
        let runner = TimerRunner {
            function: "tick".into(),
            trigger: trigger("0 0 1 1 *", "UTC", false),
            status: store.clone(),
            dispatcher: recorder.clone(),
            lease: None,
        };
        let (stop, shutdown) = Shutdown::new();
        let task = tokio::spawn(runner.run(shutdown));
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.send(true).unwrap();
        task.await.unwrap();
        let fired = recorder.seen();
        assert_eq!(fired.len(), 1);
        assert_eq!(fired[0].extension("pastdue"), Some("true"));
        let data: serde_json::Value = serde_json::from_slice(&fired[0].data).unwrap();
        assert_eq!(data["past_due"], true);
    }

    mod props {
        use super::super::{Schedule, TimerSettings};
        use chrono::{TimeZone, Utc};
        use proptest::prelude::*;

        fn field() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("*".to_string()),
                Just("*/7".to_string()),
                Just("0".to_string()),
                Just("59".to_string()),
                Just("1-3".to_string()),
                Just("1,2,31".to_string()),
                Just("L".to_string()),
                Just("?".to_string()),
                Just("MON-FRI".to_string()),
                Just("5L".to_string()),
                Just("1#2".to_string()),
                Just("W".to_string()),
                Just("99".to_string()),
                Just("-1".to_string()),
                Just("30".to_string()),
                "[0-9*/,#LW?-]{1,5}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Any text is a schedule or a clear error naming `schedule`.
            #[test]
            fn any_schedule_text_parses_or_is_refused(text in ".{0,40}", zone in "[A-Za-z/_]{0,20}") {
                let settings = TimerSettings {
                    schedule: text,
                    time_zone: zone,
                    run_on_startup: false,
                };
                if let Err(e) = Schedule::new(&settings) {
                    prop_assert!(["schedule", "time_zone"].contains(&e.field));
                    prop_assert!(!e.message.is_empty());
                }
            }

            /// Cron-shaped schedules (5 or 6 fields, some impossible like
            /// February 30th) give a next slot strictly later, or none.
            #[test]
            fn next_slots_move_forward(fields in prop::collection::vec(field(), 5..=6), start in 0i64..4_000_000_000) {
                let settings = TimerSettings {
                    schedule: fields.join(" "),
                    time_zone: "Europe/Paris".into(),
                    run_on_startup: false,
                };
                if let Ok(schedule) = Schedule::new(&settings) {
                    let after = Utc.timestamp_opt(start, 0).unwrap();
                    if let Some(next) = schedule.next_after(after) {
                        prop_assert!(next > after, "{} after {after}: {next}", settings.schedule);
                    }
                }
            }
        }
    }
}
