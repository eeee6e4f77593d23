//! A histogram with fixed bucket bounds and atomic counters, for the writer's figures (commit latency, batch
//! size). Recording is a search over a dozen bounds and three relaxed atomic additions: no lock and no
//! allocation on the commit path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How many bounds a histogram has at most (its last bucket, above them all, is `+Inf`).
const MAX_BOUNDS: usize = 16;

/// Observations counted into buckets by fixed upper bounds (inclusive), as Prometheus histograms are.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One per bound, plus one for the values above the last bound. Each counts its bucket alone (not
    /// cumulatively); [`Histogram::snapshot`] sums them up.
    buckets: [AtomicU64; MAX_BOUNDS + 1],
    sum: AtomicU64,
    count: AtomicU64,
}

/// A histogram's figures at one moment, cumulative by bucket as the Prometheus text format wants them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or below it)`, the bounds in increasing order.
    pub buckets: Vec<(u64, u64)>,
    pub sum: u64,
    pub count: u64,
}

impl Histogram {
    /// A histogram with these upper bounds (increasing, at most 16).
    ///
    /// # Panics
    /// When there are more than 16 bounds: the bounds are constants of this crate, so a test finds it.
    pub const fn new(bounds: &'static [u64]) -> Histogram {
        assert!(bounds.len() <= MAX_BOUNDS, "a histogram has at most 16 bounds");
        Histogram {
            bounds,
            buckets: [const { AtomicU64::new(0) }; MAX_BOUNDS + 1],
            sum: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Counts one observation.
    pub fn observe(&self, value: u64) {
        let i = self.bounds.iter().position(|b| value <= *b).unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum.fetch_add(value, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    /// The figures now. Read without a lock, so a concurrent observation may show in `count` and not yet in
    /// its bucket; `count` is taken as the sum of the buckets, so the snapshot is always consistent with
    /// itself (the `+Inf` bucket equals `count`).
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (i, bound) in self.bounds.iter().enumerate() {
            total += self.buckets[i].load(Relaxed);
            buckets.push((*bound, total));
        }
        total += self.buckets[self.bounds.len()].load(Relaxed);
        HistogramSnapshot { buckets, sum: self.sum.load(Relaxed), count: total }
    }
}

/// Commit latency bounds, in microseconds: 250 µs to 1 s.
pub const COMMIT_LATENCY_US: &[u64] =
    &[250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];

/// Batch size bounds, in operations per frame.
pub const BATCH_SIZE: &[u64] = &[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_fall_into_the_first_bucket_that_holds_them_and_the_snapshot_is_cumulative() {
        static BOUNDS: &[u64] = &[1, 10, 100];
        let h = Histogram::new(BOUNDS);
        for v in [0, 1, 2, 10, 11, 100, 101, 5000] {
            h.observe(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(1, 2), (10, 4), (100, 6)]);
        assert_eq!(s.count, 8);
        assert_eq!(s.sum, 1 + 2 + 10 + 11 + 100 + 101 + 5000);
    }

    #[test]
    fn the_writer_bounds_fit_and_increase() {
        for bounds in [COMMIT_LATENCY_US, BATCH_SIZE] {
            let _ = Histogram::new(bounds);
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        }
    }
}
