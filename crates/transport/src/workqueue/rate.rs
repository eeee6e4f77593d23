//! The work queue's rate (the appliance's `workqueue rate`): a sample a second of the messages waiting and
//! the running counts in and out, an hour of them, from which rows of any interval are cut.

use std::collections::VecDeque;

use sluice_api_types as api;
use sluice_queue_db::time::rfc3339;

/// Samples kept: one an hour at one a second.
const KEPT: usize = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// Wall clock, ms, on a whole second.
    pub(crate) at_ms: i64,
    pub(crate) pending: u64,
    pub(crate) entered: u64,
    pub(crate) left: u64,
}

#[derive(Debug, Default)]
pub(crate) struct History {
    samples: VecDeque<Sample>,
}

impl History {
    pub(crate) fn push(&mut self, s: Sample) {
        if self.samples.len() == KEPT {
            self.samples.pop_front();
        }
        self.samples.push_back(s);
    }

    /// Up to `samples` rows of `interval` seconds, oldest first, the last one ending at `now` (the figures
    /// of this moment, which are not a sample yet).
    pub(crate) fn rows(&self, now: Sample, interval: u64, samples: usize) -> Vec<api::WorkQueueRate> {
        let interval_ms = interval.max(1) as i64 * 1000;
        // The latest sample at or before `t`; before the first, the first one (counts start at 0 at start).
        let at = |t: i64| -> Sample {
            if t >= now.at_ms {
                return now;
            }
            let i = self.samples.partition_point(|s| s.at_ms <= t);
            match i {
                0 => self.samples.front().copied().unwrap_or(Sample { at_ms: t, pending: 0, entered: 0, left: 0 }),
                i => self.samples[i - 1],
            }
        };
        let mut rows = Vec::with_capacity(samples);
        for k in (0..samples.max(1) as i64).rev() {
            let end = now.at_ms - k * interval_ms;
            let (e, b) = (at(end), at(end - interval_ms));
            rows.push(api::WorkQueueRate {
                time: rfc3339(end),
                pending: e.pending,
                in_: e.entered.saturating_sub(b.entered),
                out: e.left.saturating_sub(b.left),
            });
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_differences_over_each_interval() {
        let mut h = History::default();
        for i in 0..30i64 {
            h.push(Sample { at_ms: i * 1000, pending: i as u64, entered: 10 * i as u64, left: 5 * i as u64 });
        }
        let now = Sample { at_ms: 30_000, pending: 7, entered: 300, left: 150 };
        let rows = h.rows(now, 10, 2);
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[1].pending, rows[1].in_, rows[1].out), (7, 100, 50));
        assert_eq!((rows[0].pending, rows[0].in_, rows[0].out), (20, 100, 50));
    }
}
