//! The queues' side of poison messages (`crate::poison`): suspects, moves to Poison and back. A child module
//! of `queue.rs`, so that the counters stay private to the queues.

use std::sync::Arc;

use sluice_queue_db::{
    BodyRef, Envelope, FIRST_DELIVERY_QUEUE, Mid, POISON, QueueId, RecipientIndices, Record, UNREACHABLE,
};

use super::{MessageStatus, Queues};

impl Queues {
    /// The envelope of `mid`, while it is queued.
    pub(crate) fn envelope(&self, mid: Mid) -> Option<Arc<Envelope>> {
        self.messages.get(&mid).map(|m| m.envelope.clone())
    }

    /// Where the body of `mid` is stored, while it is queued.
    pub(crate) fn body(&self, mid: Mid) -> Option<BodyRef> {
        self.messages.get(&mid).map(|m| m.body)
    }

    /// The count of suspects, for the processing gate to read without the lock.
    pub(crate) fn suspect_count(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.suspect_count.clone()
    }

    /// Whether `mid` is a suspect, and its crash count.
    pub(crate) fn suspect(&self, mid: Mid) -> Option<u32> {
        if self.suspects.is_empty() { None } else { self.suspects.get(&mid).copied() }
    }

    /// Makes `mid` a suspect with this crash count, or (`None`) no longer one.
    pub(crate) fn set_suspect(&mut self, mid: Mid, crash_count: Option<u32>) {
        match crash_count {
            Some(n) if self.messages.contains_key(&mid) => {
                self.suspects.insert(mid, n);
            }
            _ => {
                self.suspects.remove(&mid);
            }
        }
        self.suspect_count.store(self.suspects.len(), std::sync::atomic::Ordering::SeqCst);
    }

    /// The message's copies outside Poison and Unreachable: those a crash at start can be blamed on when its
    /// marker named a queue it has no copy in.
    pub(crate) fn processable_copies(&self, mid: Mid) -> Vec<QueueId> {
        self.messages.get(&mid).map_or_else(Vec::new, |m| {
            m.copies.iter().filter(|c| c.queue != POISON && c.queue != UNREACHABLE).map(|c| c.queue).collect()
        })
    }

    /// Moves the copy of `mid` in `from` to Poison, Suspended (merged with a Poison copy it already has); the
    /// message is no longer a suspect. The copy may be waiting (at start) or active (its attempt panicked).
    /// Returns the records of the move (the Route, and the mark that keeps it suspended), or None when there
    /// is no such copy.
    pub(crate) fn move_to_poison(&mut self, mid: Mid, from: QueueId) -> Option<Vec<Record>> {
        let status = self.messages.get(&mid)?.copies.iter().find(|c| c.queue == from)?.status;
        if status == MessageStatus::Active && from >= FIRST_DELIVERY_QUEUE {
            if let Some(q) = self.delivery.get_mut(&from) {
                q.active -= 1;
                q.message_count = q.message_count.saturating_sub(1);
            }
        } else {
            self.take_waiting(mid, from);
        }
        let m = self.messages.get_mut(&mid)?;
        let had_poison = m.copies.iter().any(|c| c.queue == POISON);
        let c = m.copies.iter_mut().find(|c| c.queue == from)?;
        let recipients = c.recipients.to_vec();
        c.queue = POISON;
        c.status = MessageStatus::Suspended;
        c.next_retry_ms = 0;
        let mut records = vec![Record::Route { mid, from, copies: vec![(POISON, recipients)] }];
        if had_poison {
            // One copy per queue: the two Poison copies become one, in memory and in the database.
            let mut all: Vec<u32> = Vec::new();
            let mut first = true;
            m.copies.retain(|c| {
                if c.queue != POISON {
                    return true;
                }
                all.extend_from_slice(&c.recipients);
                std::mem::replace(&mut first, false)
            });
            all.sort_unstable();
            all.dedup();
            if let Some(c) = m.copies.iter_mut().find(|c| c.queue == POISON) {
                c.recipients = RecipientIndices::from_slice(&all);
            }
            records.push(Record::Route { mid, from: POISON, copies: vec![(POISON, all)] });
        } else {
            self.poison += 1;
        }
        records.push(Record::MessageSuspend { mid, queue: POISON, suspended: true });
        self.set_suspect(mid, None);
        self.count_flow(from, true, 1);
        self.count_flow(POISON, false, 1);
        Some(records)
    }

    /// Resumes the Poison copy of `mid`: it becomes a Submission copy (merged with one already there), and
    /// the message a suspect with a crash count of 0, to be categorized alone. Returns the Route record; the
    /// mid goes on Submission's list with [`Queues::push_submission`] once it was handed to the writer.
    pub(crate) fn poison_to_submission(&mut self, mid: Mid) -> Option<Record> {
        let record = self.copy_to_submission(mid, POISON, None)?;
        self.poison -= 1;
        self.set_suspect(mid, Some(0));
        Some(record)
    }
}
