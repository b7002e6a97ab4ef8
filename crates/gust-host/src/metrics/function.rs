//! The series of one function: invocations, errors, timeouts, cold starts,
//! in-flight count and two duration histograms. Created once per function
//! (and kept across reloads), reached from the loaded function without a
//! lookup; the invocation path only does relaxed atomic adds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gust_runtime::{InvocationObserver, InvokeError};

use super::histogram::{self, Histogram, Snapshot};
use super::text::{Families, Kind};
use crate::app::LoadedApp;

/// The metrics of one function.
#[derive(Debug)]
pub struct FunctionMetrics {
    invocations: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    coldstarts: AtomicU64,
    inflight: AtomicI64,
    invoke: Histogram,
    init: Histogram,
}

impl Default for FunctionMetrics {
    fn default() -> Self {
        Self {
            invocations: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            coldstarts: AtomicU64::new(0),
            inflight: AtomicI64::new(0),
            invoke: Histogram::new(&histogram::INVOKE),
            init: Histogram::new(&histogram::INIT),
        }
    }
}

impl FunctionMetrics {
    /// Counts an invocation that starts now. While the returned guard
    /// lives the invocation is in flight; dropping it records the
    /// invocation's duration.
    pub fn start(&self) -> InFlight<'_> {
        self.invocations.fetch_add(1, Ordering::Relaxed);
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InFlight {
            metrics: self,
            began: Instant::now(),
        }
    }

    /// Counts a failed invocation (a timeout also counts as a timeout).
    pub fn failed(&self, timeout: bool) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The current values, for JSON views (the console).
    pub fn snapshot(&self) -> FunctionSnapshot {
        FunctionSnapshot {
            invocations: self.invocations.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            coldstarts: self.coldstarts.load(Ordering::Relaxed),
            inflight: self.inflight.load(Ordering::Relaxed),
            invoke: self.invoke.snapshot(),
        }
    }

    /// Adds this function's samples, labelled `labels`, to `families`.
    fn write(&self, families: &mut Families, labels: &[(&str, &str)]) {
        let counters = [
            (
                "faas_invocations_total",
                "Invocations started.",
                &self.invocations,
            ),
            (
                "faas_errors_total",
                "Invocations that failed: a trap, timeout, memory or instantiation failure, or an error the event function returned.",
                &self.errors,
            ),
            (
                "faas_timeouts_total",
                "Invocations interrupted by the function's timeout.",
                &self.timeouts,
            ),
            (
                "faas_coldstarts_total",
                "Invocations that created a new instance instead of reusing a warm one (every invocation unless instances are reused).",
                &self.coldstarts,
            ),
        ];
        for (name, help, value) in counters {
            families
                .family(name, help, Kind::Counter)
                .sample(labels, value.load(Ordering::Relaxed));
        }
        families
            .family("faas_inflight", "Invocations running now.", Kind::Gauge)
            .sample(labels, self.inflight.load(Ordering::Relaxed));
        families
            .family(
                "faas_invoke_duration_seconds",
                "Time from an invocation's start until the function returned (for HTTP: until the response head; the body may stream on).",
                Kind::Histogram,
            )
            .histogram(labels, &self.invoke.snapshot());
        families
            .family(
                "faas_init_duration_seconds",
                "Time to create a new instance for an invocation (cold starts).",
                Kind::Histogram,
            )
            .histogram(labels, &self.init.snapshot());
    }
}

impl InvocationObserver for FunctionMetrics {
    fn instantiated(&self, took: Duration) {
        self.coldstarts.fetch_add(1, Ordering::Relaxed);
        self.init.observe(took);
    }

    fn failed_late(&self, error: &InvokeError) {
        self.failed(matches!(error, InvokeError::Timeout(_)));
    }
}

/// A function's metrics at one moment (see [`FunctionMetrics::snapshot`]).
#[derive(Debug, Clone)]
pub struct FunctionSnapshot {
    /// Invocations started.
    pub invocations: u64,
    /// Invocations that failed.
    pub errors: u64,
    /// Invocations interrupted by the timeout.
    pub timeouts: u64,
    /// Invocations that created a new instance.
    pub coldstarts: u64,
    /// Invocations running now.
    pub inflight: i64,
    /// Invocation durations.
    pub invoke: Snapshot,
}

/// An invocation in flight (see [`FunctionMetrics::start`]).
#[derive(Debug)]
pub struct InFlight<'a> {
    metrics: &'a FunctionMetrics,
    began: Instant,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.metrics.inflight.fetch_sub(1, Ordering::Relaxed);
        self.metrics.invoke.observe(self.began.elapsed());
    }
}

/// Every function's series of one host by (function, trigger kind), kept
/// across reloads so counters only go up. Locked only when an app version
/// is loaded, never per invocation.
#[derive(Debug, Default)]
pub struct FunctionRegistry {
    series: Mutex<HashMap<(String, &'static str), Arc<FunctionMetrics>>>,
}

impl FunctionRegistry {
    /// The series of `function` with a `trigger` trigger, created on first use.
    pub fn series(&self, function: &str, trigger: &'static str) -> Arc<FunctionMetrics> {
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series
            .entry((function.to_string(), trigger))
            .or_default()
            .clone()
    }
}

/// Adds the series of every function of `app` (labels `app`, `function`,
/// `trigger`) to `families`.
pub fn collect(app: &LoadedApp, families: &mut Families) {
    for f in &app.app.functions {
        let metrics = app
            .functions
            .get(&f.name)
            .map(|l| &l.metrics)
            .or_else(|| app.events.functions.get(&f.name).map(|e| &e.metrics));
        if let Some(metrics) = metrics {
            let labels = [
                ("app", app.app.name.as_str()),
                ("function", f.name.as_str()),
                ("trigger", f.trigger.kind()),
            ];
            metrics.write(families, &labels);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_invocations_failures_and_cold_starts() {
        let m = FunctionMetrics::default();
        {
            let _a = m.start();
            let _b = m.start();
            assert_eq!(m.inflight.load(Ordering::Relaxed), 2);
            m.failed(true);
        }
        m.failed_late(&InvokeError::Trap("x".into()));
        m.instantiated(Duration::from_micros(40));
        assert_eq!(m.inflight.load(Ordering::Relaxed), 0);
        let mut families = Families::default();
        m.write(&mut families, &[("function", "f")]);
        let text = families.encode();
        for line in [
            "faas_invocations_total{function=\"f\"} 2\n",
            "faas_errors_total{function=\"f\"} 2\n",
            "faas_timeouts_total{function=\"f\"} 1\n",
            "faas_coldstarts_total{function=\"f\"} 1\n",
            "faas_inflight{function=\"f\"} 0\n",
            "faas_invoke_duration_seconds_count{function=\"f\"} 2\n",
            "faas_init_duration_seconds_bucket{function=\"f\",le=\"0.00005\"} 1\n",
            "faas_init_duration_seconds_count{function=\"f\"} 1\n",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn the_registry_keeps_one_series_per_function_and_trigger() {
        let r = FunctionRegistry::default();
        let a = r.series("f", "http");
        assert!(Arc::ptr_eq(&a, &r.series("f", "http")));
        assert!(!Arc::ptr_eq(&a, &r.series("f", "queue")));
    }
}
