//! The rates of a queue: message copies entering and leaving it, counted in 5-second buckets.
//!
//! `incoming_rate` and `outgoing_rate` are copies per second averaged over the twelve most recent complete
//! buckets (the last 60 seconds, not counting the bucket being filled); `velocity` is outgoing minus
//! incoming: positive while the queue drains, negative while it grows. Every rate sluice shows is per second.

use std::time::Duration;

use tokio::time::Instant;

/// The width of a bucket.
pub(crate) const BUCKET: Duration = Duration::from_secs(5);
/// The complete buckets a rate averages over.
const WINDOW: u64 = 12;
/// The ring: the complete buckets and the one being filled.
const SLOTS: usize = WINDOW as usize + 1;

/// The counts of one queue. Recording is two array writes; reading sums at most twelve buckets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flow {
    /// The index of the bucket last written (buckets counted from the queues' start).
    current: u64,
    /// `[in, out]` per bucket, at `index % SLOTS`.
    counts: [[u32; 2]; SLOTS],
}

/// Copies per second in and out, and their difference.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Rates {
    pub(crate) incoming: f64,
    pub(crate) outgoing: f64,
}

impl Rates {
    /// `outgoing - incoming`.
    pub(crate) fn velocity(&self) -> f64 {
        self.outgoing - self.incoming
    }
}

/// The bucket `now` falls in, counting from `started`.
pub(crate) fn bucket(started: Instant, now: Instant) -> u64 {
    (now.saturating_duration_since(started).as_millis() / BUCKET.as_millis()) as u64
}

impl Flow {
    /// Counts `n` copies entering (`out` false) or leaving the queue in bucket `at`.
    pub(crate) fn record(&mut self, at: u64, out: bool, n: u32) {
        if at > self.current {
            // The buckets skipped since the last write saw nothing; at most a whole ring needs clearing.
            let first = self.current.max(at.saturating_sub(SLOTS as u64)) + 1;
            for i in first..=at {
                self.counts[(i % SLOTS as u64) as usize] = [0, 0];
            }
            self.current = at;
        }
        // A write for an older bucket (the clock read before the lock was taken) counts in the current one.
        let slot = &mut self.counts[(self.current % SLOTS as u64) as usize][usize::from(out)];
        *slot = slot.saturating_add(n);
    }

    /// The rates at bucket `now`: the twelve complete buckets before it.
    pub(crate) fn rates(&self, now: u64) -> Rates {
        let first = now.saturating_sub(WINDOW).max(self.current.saturating_sub(WINDOW));
        let (mut incoming, mut outgoing) = (0u64, 0u64);
        for i in first..now.min(self.current + 1) {
            let [i_n, o_n] = self.counts[(i % SLOTS as u64) as usize];
            incoming += u64::from(i_n);
            outgoing += u64::from(o_n);
        }
        let seconds = (WINDOW * BUCKET.as_secs()) as f64;
        Rates { incoming: incoming as f64 / seconds, outgoing: outgoing as f64 / seconds }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_steady_flow_reads_as_its_rate_once_the_window_is_full() {
        let mut f = Flow::default();
        // 5 in and 3 out per second, for 90 seconds.
        for second in 0..90u64 {
            f.record(second / 5, false, 5);
            f.record(second / 5, true, 3);
        }
        let r = f.rates(90 / 5);
        assert_eq!((r.incoming, r.outgoing), (5.0, 3.0));
        assert_eq!(r.velocity(), -2.0);
    }

    #[test]
    fn the_bucket_being_filled_is_not_counted_and_old_buckets_drop_out() {
        let mut f = Flow::default();
        f.record(0, false, 60);
        assert_eq!(f.rates(0).incoming, 0.0, "bucket 0 is still being filled");
        assert_eq!(f.rates(1).incoming, 1.0, "60 copies over 60 seconds");
        assert_eq!(f.rates(12).incoming, 1.0, "bucket 0 is the oldest of the window");
        assert_eq!(f.rates(13).incoming, 0.0, "out of the window");
        // Writing long after clears what the ring held.
        f.record(100, true, 12);
        assert_eq!(f.rates(101), Rates { incoming: 0.0, outgoing: 0.2 });
        assert_eq!(f.rates(100), Rates::default());
    }

    #[test]
    fn a_late_write_counts_in_the_current_bucket() {
        let mut f = Flow::default();
        f.record(7, false, 1);
        f.record(6, false, 1);
        assert_eq!(f.rates(8).incoming * 60.0, 2.0);
    }
}
