//! Loading: the queue database's recovered state becomes the transport's queues at start. A copy whose
//! delivery queue is gone from the routing table goes back to Submission, to be categorized again.

use sluice_queue_db::{POISON, QUARANTINE, Record, SUBMISSION, State, UNREACHABLE};
use smallvec::SmallVec;

use crate::queue::{self, Copy, Message, MessageStatus, NextHopSolutionKey, Queues};
use crate::{Routing, Transport};

/// Recovered queues, from [`Transport::load`], for [`Transport::start`].
pub struct Loaded {
    pub(crate) qs: Queues,
    /// Route records for copies whose delivery queue is gone (back to Submission).
    pub(crate) resubmit: Vec<Record>,
    /// Quarantined messages (kept apart from the queues).
    pub(crate) quarantined: Vec<(sluice_queue_db::Mid, crate::workqueue::Held)>,
}

impl Loaded {
    /// How many messages were recovered.
    pub fn messages(&self) -> usize {
        self.qs.message_count()
    }
}

impl Transport {
    /// The recovered state as queues (for [`QueueDb::open_with`], which lends the state before the writer
    /// takes it). Copies whose delivery queue is gone from `routing` go back to Submission.
    ///
    /// [`QueueDb::open_with`]: sluice_queue_db::QueueDb::open_with
    pub fn load(state: &State, routing: &Routing) -> Loaded {
        let mut qs = Queues::new();
        let mut resubmit: Vec<Record> = Vec::new();
        for (id, stored) in &state.queues {
            qs.reserve_queue_id(*id);
            let Some(key) = NextHopSolutionKey::from_stored(&stored.key) else { continue };
            // A queue whose connector or store is gone is not recreated; its copies are categorized again.
            let Some(target) = routing.target_for(&key) else { continue };
            qs.add_queue(*id, key, target, state.suspended.contains_key(id));
        }
        qs.set_persistent_suspended(
            state.suspended.contains_key(&SUBMISSION),
            state.suspended.contains_key(&UNREACHABLE),
        );
        qs.set_delay_notified(state.delay_notified.iter().copied());
        let now = sluice_queue_db::now_ms();
        let mut quarantined = Vec::new();
        for (&mid, m) in &state.messages {
            let scan = m.scan.clone();
            if let Some(c) = m.copies.iter().find(|c| c.queue == QUARANTINE) {
                let q = state.quarantined.get(&mid);
                quarantined.push((
                    mid,
                    crate::workqueue::Held {
                        envelope: m.envelope.clone(),
                        body: m.body,
                        recipients: c.recipients.to_vec(),
                        scan,
                        at_ms: q.map_or(m.envelope.received_at_ms, |q| q.at_ms),
                        stage: q.map_or(sluice_queue_db::ScanStage::Antispam, |q| q.stage),
                        reason: q.map_or_else(String::new, |q| q.reason.clone()),
                    },
                ));
                continue;
            }
            let mut copies = SmallVec::new();
            for c in &m.copies {
                let queue = if c.queue == SUBMISSION
                    || c.queue == UNREACHABLE
                    || c.queue == POISON
                    || qs.delivery_queue(c.queue).is_some()
                {
                    c.queue
                } else {
                    resubmit.push(Record::Route {
                        mid,
                        from: c.queue,
                        copies: vec![(SUBMISSION, c.recipients.to_vec())],
                    });
                    SUBMISSION
                };
                let waiting = c.next_retry_ms > now;
                // Suspended by an administrator (where it still is), or in Poison (for good: nothing takes it
                // but a resume or a removal): it waits in no list.
                let held = queue == POISON || (queue == c.queue && state.suspended_copies.contains(&(mid, queue)));
                copies.push(Copy {
                    queue,
                    recipients: c.recipients.clone(),
                    status: if held {
                        MessageStatus::Suspended
                    } else if waiting {
                        MessageStatus::Retry
                    } else {
                        MessageStatus::Ready
                    },
                    retry_count: c.retry_count,
                    next_retry_ms: c.next_retry_ms,
                    last_error: c.last_error.clone(),
                    scan: scan.clone(),
                });
            }
            // Two copies that both fell back to Submission become one with all their recipients.
            queue::merge_submission_copies(&mut copies);
            for c in &copies {
                if c.status == MessageStatus::Suspended {
                    qs.place_held(mid, c.queue);
                } else {
                    qs.place(mid, c.queue, Some(c.next_retry_ms).filter(|ms| *ms > now));
                }
            }
            let poisoned = copies.iter().any(|c| c.queue == POISON);
            qs.insert_message(mid, Message { envelope: m.envelope.clone(), body: m.body, copies });
            // A message that crashed the server before stays a suspect across a restart.
            if let Some(&count) = state.crash_counts.get(&mid).filter(|_| !poisoned) {
                qs.set_suspect(mid, Some(count));
            }
        }
        Loaded { qs, resubmit, quarantined }
    }
}
