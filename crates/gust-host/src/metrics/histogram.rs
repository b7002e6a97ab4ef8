//! A lock-free histogram of durations: fixed bucket bounds, one relaxed
//! atomic add per observation (plus the sum), no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Fixed bucket bounds: their `le` label text and the same bounds in
/// nanoseconds (ascending).
#[derive(Debug)]
pub struct Buckets {
    /// Each bound as written in the `le` label, in seconds.
    pub le: &'static [&'static str],
    /// Each bound in nanoseconds.
    pub nanos: &'static [u64],
}

const MS: u64 = 1_000_000;

/// Invocation durations: 1 ms to 10 s.
pub const INVOKE: Buckets = Buckets {
    le: &[
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5",
        "10",
    ],
    nanos: &[
        MS,
        5 * MS / 2,
        5 * MS,
        10 * MS,
        25 * MS,
        50 * MS,
        100 * MS,
        250 * MS,
        500 * MS,
        1_000 * MS,
        2_500 * MS,
        5_000 * MS,
        10_000 * MS,
    ],
};

/// Instantiation times: 10 µs to 1 s (instantiating from a pre-linked
/// component takes microseconds with the pooling allocator).
pub const INIT: Buckets = Buckets {
    le: &[
        "0.00001", "0.000025", "0.00005", "0.0001", "0.00025", "0.0005", "0.001", "0.0025",
        "0.005", "0.01", "0.025", "0.1", "1",
    ],
    nanos: &[
        10_000,
        25_000,
        50_000,
        100_000,
        250_000,
        500_000,
        MS,
        5 * MS / 2,
        5 * MS,
        10 * MS,
        25 * MS,
        100 * MS,
        1_000 * MS,
    ],
};

/// Durations counted into [`Buckets`].
#[derive(Debug)]
pub struct Histogram {
    buckets: &'static Buckets,
    /// Observations per bucket (not cumulative); the last one is above
    /// every bound.
    counts: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A histogram's values at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The `le` text of each bound.
    pub bounds: &'static [&'static str],
    /// Observations per bound (not cumulative, without those above the
    /// last bound).
    pub counts: Vec<u64>,
    /// Every observation.
    pub count: u64,
    /// Their sum in seconds.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram over `buckets`.
    pub fn new(buckets: &'static Buckets) -> Self {
        debug_assert_eq!(buckets.le.len(), buckets.nanos.len());
        Self {
            buckets,
            counts: (0..=buckets.nanos.len())
                .map(|_| AtomicU64::new(0))
                .collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `d`.
    pub fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let at = self
            .buckets
            .nanos
            .iter()
            .position(|&bound| nanos <= bound)
            .unwrap_or(self.buckets.nanos.len());
        self.counts[at].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The current values.
    pub fn snapshot(&self) -> Snapshot {
        let counts: Vec<u64> = self
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        Snapshot {
            bounds: self.buckets.le,
            count: counts.iter().sum(),
            counts: counts[..self.buckets.nanos.len()].to_vec(),
            sum: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

impl Snapshot {
    /// The `q` quantile (0..=1) in seconds, interpolated linearly inside
    /// the bucket that holds it (as Prometheus' `histogram_quantile` does;
    /// the first bucket starts at 0). `None` without observations; an
    /// observation above the last bound counts as the last bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * self.count as f64;
        let mut below = 0u64;
        let mut lower = 0.0;
        for (bound, &n) in self.bounds.iter().zip(&self.counts) {
            let upper: f64 = bound.parse().unwrap_or(lower);
            if n > 0 && (below + n) as f64 >= rank {
                let within = (rank - below as f64) / n as f64;
                return Some(lower + (upper - lower) * within.clamp(0.0, 1.0));
            }
            below += n;
            lower = upper;
        }
        Some(lower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_match_their_labels() {
        for b in [&INVOKE, &INIT] {
            assert_eq!(b.le.len(), b.nanos.len());
            for (le, nanos) in b.le.iter().zip(b.nanos) {
                let seconds: f64 = le.parse().unwrap();
                assert!((seconds * 1e9 - *nanos as f64).abs() < 1.0, "{le}");
            }
            assert!(b.nanos.windows(2).all(|w| w[0] < w[1]));
        }
    }

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(&INVOKE);
        h.observe(Duration::from_micros(500)); // <= 0.001
        h.observe(Duration::from_millis(1)); // == 0.001: le is inclusive
        h.observe(Duration::from_millis(30)); // <= 0.05
        h.observe(Duration::from_secs(60)); // above every bound
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.counts[0], 2);
        assert_eq!(s.counts[5], 1);
        assert_eq!(s.counts.iter().sum::<u64>(), 3);
        assert!((s.sum - 60.0315).abs() < 1e-9, "{}", s.sum);
    }

    #[test]
    fn quantiles_interpolate_inside_buckets() {
        let h = Histogram::new(&INVOKE);
        assert_eq!(h.snapshot().quantile(0.5), None);
        for _ in 0..10 {
            h.observe(Duration::from_millis(4)); // (0.0025, 0.005]
        }
        let s = h.snapshot();
        let p50 = s.quantile(0.5).unwrap();
        assert!((p50 - 0.00375).abs() < 1e-12, "{p50}");
        assert!((s.quantile(1.0).unwrap() - 0.005).abs() < 1e-12);
        h.observe(Duration::from_secs(60)); // above every bound
        assert_eq!(h.snapshot().quantile(1.0), Some(10.0));
        let p99 = h.snapshot().quantile(0.99).unwrap();
        assert!(p99 == 10.0, "{p99}");
    }
}
