//! A circuit breaker per upstream: closed, open, half-open.
//!
//! Closed: calls pass and their outcomes go into a sliding window of
//! `window` split into buckets. When the window holds at least `min_calls`
//! and the failure ratio reaches `failure_ratio`, the breaker opens.
//! Open: calls fail fast for `open_for`. Then half-open: up to
//! `half_open_calls` probes pass; if they all succeed the breaker closes
//! with an empty window, and any failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

/// Breaker settings, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BreakerSettings {
    pub failure_ratio: f64,
    pub min_calls: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub half_open_calls: u32,
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            failure_ratio: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_calls: 3,
        }
    }
}

/// The breaker's state as reported in [`crate::GatewayStatus`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls pass.
    Closed,
    /// Calls fail fast.
    Open,
    /// A few probe calls pass.
    HalfOpen,
}

const BUCKETS: usize = 10;

#[derive(Debug)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { started: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    /// (bucket start, calls, failures), oldest first.
    buckets: [(Option<Instant>, u32, u32); BUCKETS],
    opened_total: u64,
    rejected_total: u64,
}

/// Permission to make one call; report its outcome with [`Breaker::record`].
#[derive(Debug)]
#[must_use]
pub(crate) struct Permit {
    probe: bool,
}

/// A permit that is released if dropped unrecorded.
pub(crate) struct Guard<'a> {
    breaker: &'a Breaker,
    permit: Option<Permit>,
}

impl Guard<'_> {
    /// Records the call's outcome; returns the new state when it changed.
    pub fn record(mut self, success: bool) -> Option<BreakerState> {
        let permit = self.permit.take()?;
        self.breaker.record(permit, success)
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.permit.take() {
            self.breaker.release(p);
        }
    }
}

/// A circuit breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    settings: BreakerSettings,
    inner: Mutex<Inner>,
}

/// A point-in-time view of a breaker.
#[derive(Debug, Clone, Serialize)]
pub struct BreakerSnapshot {
    /// Current state.
    pub state: BreakerState,
    /// Calls in the sliding window.
    pub window_calls: u32,
    /// Failures in the sliding window.
    pub window_failures: u32,
    /// Times the breaker opened.
    pub opened_total: u64,
    /// Calls refused while open (or beyond the half-open probes).
    pub rejected_total: u64,
    /// Milliseconds until an open breaker lets probes through.
    pub open_remaining_ms: u64,
}

impl Breaker {
    pub fn new(settings: BreakerSettings) -> Self {
        Breaker {
            settings,
            inner: Mutex::new(Inner {
                phase: Phase::Closed,
                buckets: [(None, 0, 0); BUCKETS],
                opened_total: 0,
                rejected_total: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to make a call; `Err(retry_after)` while open.
    pub fn try_acquire(&self) -> Result<Permit, Duration> {
        // The common case needs no clock: a closed breaker lets calls pass.
        if matches!(self.lock().phase, Phase::Closed) {
            return Ok(Permit { probe: false });
        }
        self.try_acquire_at(Instant::now())
    }

    fn try_acquire_at(&self, now: Instant) -> Result<Permit, Duration> {
        let mut g = self.lock();
        match g.phase {
            Phase::Closed => Ok(Permit { probe: false }),
            Phase::Open { until } if now < until => {
                g.rejected_total += 1;
                Err(until - now)
            }
            Phase::Open { .. } => {
                tracing::info!(target: "gust_gateway::breaker", "breaker half-open: letting probes through");
                g.phase = Phase::HalfOpen {
                    started: 1,
                    succeeded: 0,
                };
                Ok(Permit { probe: true })
            }
            Phase::HalfOpen {
                ref mut started, ..
            } => {
                if *started < self.settings.half_open_calls {
                    *started += 1;
                    Ok(Permit { probe: true })
                } else {
                    g.rejected_total += 1;
                    Err(Duration::from_millis(100))
                }
            }
        }
    }

    /// Asks to make a call, returning a guard that gives the permit back if
    /// it is dropped without [`Guard::record`] (e.g. the client went away).
    pub fn acquire(&self) -> Result<Guard<'_>, Duration> {
        let permit = self.try_acquire()?;
        Ok(Guard {
            breaker: self,
            permit: Some(permit),
        })
    }

    /// Records a call's outcome. Returns the new state when it changed.
    pub fn record(&self, permit: Permit, success: bool) -> Option<BreakerState> {
        self.record_at(permit, success, Instant::now())
    }

    fn record_at(&self, permit: Permit, success: bool, now: Instant) -> Option<BreakerState> {
        let s = self.settings;
        let mut g = self.lock();
        if permit.probe {
            match g.phase {
                Phase::HalfOpen {
                    ref mut succeeded, ..
                } if success => {
                    *succeeded += 1;
                    if *succeeded >= s.half_open_calls {
                        g.phase = Phase::Closed;
                        g.buckets = [(None, 0, 0); BUCKETS];
                        return Some(BreakerState::Closed);
                    }
                    None
                }
                Phase::HalfOpen { .. } => {
                    g.phase = Phase::Open {
                        until: now + s.open_for,
                    };
                    g.opened_total += 1;
                    Some(BreakerState::Open)
                }
                _ => None,
            }
        } else {
            if !matches!(g.phase, Phase::Closed) {
                return None; // a call that started before the breaker opened
            }
            let width = s.window / BUCKETS as u32;
            let current = g.buckets[BUCKETS - 1].0;
            if current.is_none_or(|start| now.saturating_duration_since(start) >= width) {
                g.buckets.rotate_left(1);
                g.buckets[BUCKETS - 1] = (Some(now), 0, 0);
            }
            let b = &mut g.buckets[BUCKETS - 1];
            b.1 += 1;
            if !success {
                b.2 += 1;
            }
            if success {
                return None; // a success never opens the breaker
            }
            let (calls, failures) = window_totals(&g.buckets, now, s.window);
            if calls >= s.min_calls && f64::from(failures) >= s.failure_ratio * f64::from(calls) {
                g.phase = Phase::Open {
                    until: now + s.open_for,
                };
                g.opened_total += 1;
                return Some(BreakerState::Open);
            }
            None
        }
    }

    /// Gives back a permit whose call never finished (e.g. the client left).
    pub fn release(&self, permit: Permit) {
        if permit.probe {
            let mut g = self.lock();
            if let Phase::HalfOpen {
                ref mut started, ..
            } = g.phase
            {
                *started = started.saturating_sub(1);
            }
        }
    }

    /// The breaker's current state and counters.
    pub fn snapshot(&self) -> BreakerSnapshot {
        let now = Instant::now();
        let g = self.lock();
        let (calls, failures) = window_totals(&g.buckets, now, self.settings.window);
        let (state, remaining) = match g.phase {
            Phase::Closed => (BreakerState::Closed, Duration::ZERO),
            Phase::Open { until } if now < until => (BreakerState::Open, until - now),
            Phase::Open { .. } | Phase::HalfOpen { .. } => (BreakerState::HalfOpen, Duration::ZERO),
        };
        BreakerSnapshot {
            state,
            window_calls: calls,
            window_failures: failures,
            opened_total: g.opened_total,
            rejected_total: g.rejected_total,
            open_remaining_ms: remaining.as_millis() as u64,
        }
    }
}

fn window_totals(
    buckets: &[(Option<Instant>, u32, u32)],
    now: Instant,
    window: Duration,
) -> (u32, u32) {
    buckets
        .iter()
        .filter(|(start, ..)| start.is_some_and(|t| now.saturating_duration_since(t) < window))
        .fold((0, 0), |(c, f), (_, bc, bf)| (c + bc, f + bf))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BreakerSettings {
        BreakerSettings {
            failure_ratio: 0.5,
            min_calls: 4,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_calls: 2,
        }
    }

    fn call(b: &Breaker, ok: bool, now: Instant) -> Option<BreakerState> {
        let p = b.try_acquire_at(now).expect("allowed");
        b.record_at(p, ok, now)
    }

    #[test]
    fn opens_after_ratio_and_min_calls() {
        let b = Breaker::new(settings());
        let t = Instant::now();
        assert_eq!(call(&b, false, t), None);
        assert_eq!(call(&b, false, t), None);
        assert_eq!(call(&b, true, t), None); // 3 calls < min_calls
        assert_eq!(call(&b, false, t), Some(BreakerState::Open)); // 3/4 failed
        assert_eq!(
            b.try_acquire_at(t + Duration::from_secs(1)).unwrap_err(),
            Duration::from_secs(4)
        );
        assert_eq!(b.snapshot().rejected_total, 1);
    }

    #[test]
    fn old_failures_slide_out() {
        let b = Breaker::new(settings());
        let t = Instant::now();
        for _ in 0..3 {
            call(&b, false, t);
        }
        // 11 s later the failures are outside the window.
        let later = t + Duration::from_secs(11);
        for _ in 0..3 {
            assert_eq!(call(&b, true, later), None);
        }
        assert_eq!(call(&b, false, later), None);
        assert_eq!(b.snapshot().state, BreakerState::Closed);
    }

    #[test]
    fn half_open_closes_after_probes_or_reopens() {
        let b = Breaker::new(settings());
        let t = Instant::now();
        for _ in 0..4 {
            call(&b, false, t);
        }
        let after = t + Duration::from_secs(6);
        let p1 = b.try_acquire_at(after).unwrap();
        let p2 = b.try_acquire_at(after).unwrap();
        assert!(b.try_acquire_at(after).is_err(), "only two probes");
        assert_eq!(b.record_at(p1, true, after), None);
        assert_eq!(b.record_at(p2, true, after), Some(BreakerState::Closed));
        assert_eq!(b.snapshot().window_calls, 0);

        for _ in 0..4 {
            call(&b, false, after);
        }
        let again = after + Duration::from_secs(6);
        let p = b.try_acquire_at(again).unwrap();
        assert_eq!(b.record_at(p, false, again), Some(BreakerState::Open));
        assert_eq!(b.snapshot().opened_total, 3);
    }

    #[test]
    fn released_probe_frees_its_slot() {
        let b = Breaker::new(settings());
        let t = Instant::now();
        for _ in 0..4 {
            call(&b, false, t);
        }
        let after = t + Duration::from_secs(6);
        let p1 = b.try_acquire_at(after).unwrap();
        let _p2 = b.try_acquire_at(after).unwrap();
        b.release(p1);
        assert!(b.try_acquire_at(after).is_ok());
    }
}
