//! The live state that the log describes: the queues and the messages in them. Recovery rebuilds it by
//! applying every record in log order; the same `apply` is used by tests as the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use smallvec::SmallVec;

use crate::record::{BodyRef, Envelope, Mid, QueueId, QueueKey, Record};

/// A message with at least one copy still in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub mid: Mid,
    pub envelope: std::sync::Arc<Envelope>,
    pub body: BodyRef,
    /// Nearly always one: kept inline, without an allocation of its own.
    pub copies: SmallVec<[StoredCopy; 1]>,
}

/// Indices into the envelope's recipients; up to four without an allocation.
pub type RecipientIndices = SmallVec<[u32; 4]>;

/// The copy of a message in one queue, with the recipients it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    pub queue: QueueId,
    /// Indices into the envelope's recipients.
    pub recipients: RecipientIndices,
    pub retry_count: u32,
    /// Wall-clock time of the next attempt (ms since the epoch); 0 = now.
    pub next_retry_ms: i64,
    /// Shared by every copy that failed the same way (see [`intern_error`]).
    pub last_error: Option<SharedError>,
}

/// An error text shared by many copies: a thin pointer (8 bytes in each copy, not 16).
pub type SharedError = Arc<String>;

/// The last error of a deferred copy, shared: a million messages behind one dead next hop hold one copy
/// of its error text, not a million. `None` for an empty one.
pub fn intern_error(error: &str) -> Option<SharedError> {
    /// Distinct errors remembered, most recent first.
    const RECENT: usize = 32;
    static ERRORS: Mutex<Vec<SharedError>> = Mutex::new(Vec::new());
    if error.is_empty() {
        return None;
    }
    let Ok(mut recent) = ERRORS.lock() else { return Some(Arc::new(error.to_owned())) };
    let shared = match recent.iter().position(|e| e.as_str() == error) {
        Some(i) => recent.remove(i),
        None => Arc::new(error.to_owned()),
    };
    recent.insert(0, Arc::clone(&shared));
    recent.truncate(RECENT);
    Some(shared)
}

/// A delivery queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredQueue {
    pub key: QueueKey,
}

/// Everything recovery rebuilt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Boxed: the map's nodes stay small, and a node split moves pointers, not messages.
    pub messages: BTreeMap<Mid, Box<StoredMessage>>,
    pub queues: BTreeMap<QueueId, StoredQueue>,
    /// Queues (persistent or delivery) that an administrator suspended.
    pub suspended: BTreeMap<QueueId, bool>,
    /// No MID below this has ever been handed out.
    pub next_mid: Mid,
    /// Live messages whose sender was sent the delay notice (`Record::DelayNotified`). Kept beside the
    /// messages rather than in them: few messages are ever delayed that long, and a queued message's record
    /// must stay 96 bytes.
    pub delay_notified: BTreeSet<Mid>,
    /// Copies an administrator suspended (`Record::MessageSuspend`), and those in Poison: few, so kept
    /// beside the messages like `delay_notified`.
    pub suspended_copies: BTreeSet<(Mid, QueueId)>,
    /// Live messages that were in process at an unclean stop or a panic, with how many times
    /// (`Record::CrashCount`; a count of 0 is not kept).
    pub crash_counts: BTreeMap<Mid, u32>,
}

impl State {
    /// Applies one committed record.
    pub fn apply(&mut self, record: &Record) {
        match record {
            Record::MidHighWater { next } => self.next_mid = self.next_mid.max(*next),
            Record::QueueCreate { id, key } => {
                self.queues.insert(*id, StoredQueue { key: key.clone() });
            }
            Record::QueueDelete { id } => {
                self.queues.remove(id);
                self.suspended.remove(id);
            }
            Record::QueueSuspend { id, suspended } => {
                if *suspended {
                    self.suspended.insert(*id, true);
                } else {
                    self.suspended.remove(id);
                }
            }
            Record::Enqueue { mid, queue, envelope, body } => {
                self.next_mid = self.next_mid.max(mid + 1);
                let copy = StoredCopy {
                    queue: *queue,
                    recipients: (0..envelope.recipient_count() as u32).collect(),
                    retry_count: 0,
                    next_retry_ms: 0,
                    last_error: None,
                };
                self.messages.insert(
                    *mid,
                    Box::new(StoredMessage {
                        mid: *mid,
                        envelope: envelope.clone(),
                        body: *body,
                        copies: smallvec::smallvec![copy],
                    }),
                );
            }
            Record::Route { mid, from, copies } => {
                if let Some(m) = self.messages.get_mut(mid) {
                    // A copy that moves is not suspended in its new queue, unless it stays where it was
                    // (a narrowed copy keeps its mark).
                    if !copies.iter().any(|(q, _)| q == from) {
                        self.suspended_copies.remove(&(*mid, *from));
                    }
                    m.copies.retain(|c| c.queue != *from);
                    for (queue, recipients) in copies {
                        m.copies.push(StoredCopy {
                            queue: *queue,
                            recipients: RecipientIndices::from_slice(recipients),
                            retry_count: 0,
                            next_retry_ms: 0,
                            last_error: None,
                        });
                    }
                    if m.copies.is_empty() {
                        self.remove_message(*mid);
                    }
                }
            }
            Record::Defer { mid, queue, retry_count, next_retry_ms, last_error } => {
                if let Some(c) =
                    self.messages.get_mut(mid).and_then(|m| m.copies.iter_mut().find(|c| c.queue == *queue))
                {
                    c.retry_count = *retry_count;
                    c.next_retry_ms = *next_retry_ms;
                    if c.last_error.as_deref() != Some(last_error) {
                        c.last_error = intern_error(last_error);
                    }
                }
            }
            Record::Relocate { mid, body } => {
                if let Some(m) = self.messages.get_mut(mid) {
                    m.body = *body;
                }
            }
            Record::CopyDone { mid, queue } => {
                self.suspended_copies.remove(&(*mid, *queue));
                if let Some(m) = self.messages.get_mut(mid) {
                    m.copies.retain(|c| c.queue != *queue);
                    if m.copies.is_empty() {
                        self.remove_message(*mid);
                    }
                }
            }
            Record::DelayNotified { mid } => {
                // Only a live message keeps the mark: it goes with the message's last copy.
                if self.messages.contains_key(mid) {
                    self.delay_notified.insert(*mid);
                }
            }
            Record::MessageSuspend { mid, queue, suspended } => {
                let here = self.messages.get(mid).is_some_and(|m| m.copies.iter().any(|c| c.queue == *queue));
                if *suspended && here {
                    self.suspended_copies.insert((*mid, *queue));
                } else {
                    self.suspended_copies.remove(&(*mid, *queue));
                }
            }
            Record::CrashCount { mid, count } => {
                if *count > 0 && self.messages.contains_key(mid) {
                    self.crash_counts.insert(*mid, *count);
                } else {
                    self.crash_counts.remove(mid);
                }
            }
        }
    }

    /// A message's last copy is gone.
    fn remove_message(&mut self, mid: Mid) {
        self.messages.remove(&mid);
        self.delay_notified.remove(&mid);
        self.crash_counts.remove(&mid);
        // A copy's mark goes with the copy (`CopyDone`, `Route`); none is left when the message goes.
    }

    /// Hands `f`, one at a time, the records that recreate this state from nothing, in an order `apply`
    /// accepts (a checkpoint of a million messages is encoded as it goes, never held as records).
    pub(crate) fn for_each_record(&self, high_water: Mid, mut f: impl FnMut(Record)) {
        f(Record::MidHighWater { next: high_water });
        for (id, q) in &self.queues {
            f(Record::QueueCreate { id: *id, key: q.key.clone() });
        }
        for id in self.suspended.keys() {
            f(Record::QueueSuspend { id: *id, suspended: true });
        }
        for m in self.messages.values() {
            // Enqueue into a queue no copy uses, then route to the real copies.
            let staging = QueueId::MAX;
            f(Record::Enqueue { mid: m.mid, queue: staging, envelope: m.envelope.clone(), body: m.body });
            f(Record::Route {
                mid: m.mid,
                from: staging,
                copies: m.copies.iter().map(|c| (c.queue, c.recipients.to_vec())).collect(),
            });
            for c in m.copies.iter().filter(|c| c.retry_count > 0 || c.last_error.is_some() || c.next_retry_ms != 0) {
                f(Record::Defer {
                    mid: m.mid,
                    queue: c.queue,
                    retry_count: c.retry_count,
                    next_retry_ms: c.next_retry_ms,
                    last_error: c.last_error.as_deref().cloned().unwrap_or_default(),
                });
            }
            if self.delay_notified.contains(&m.mid) {
                f(Record::DelayNotified { mid: m.mid });
            }
            for c in m.copies.iter().filter(|c| self.suspended_copies.contains(&(m.mid, c.queue))) {
                f(Record::MessageSuspend { mid: m.mid, queue: c.queue, suspended: true });
            }
            if let Some(count) = self.crash_counts.get(&m.mid) {
                f(Record::CrashCount { mid: m.mid, count: *count });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The index is what a million queued messages cost (B4 in docs/benchmarks.md: at most 512 B resident each): these sizes are mimalloc size
    /// classes, and one byte more moves a message's record to the next class.
    #[test]
    fn a_queued_message_stays_small() {
        assert_eq!(size_of::<StoredCopy>(), 48);
        assert_eq!(size_of::<StoredMessage>(), 96);
        assert!(size_of::<Envelope>() <= 32, "{}", size_of::<Envelope>());
    }

    fn enqueue(state: &mut State, mid: Mid) {
        let envelope = Arc::new(Envelope::from(crate::record::EnvelopeParts {
            from: "a@b.test".into(),
            recipients: vec![crate::record::Recipient { address: "c@d.test".into(), notify: None, orcpt: None }],
            ..crate::record::EnvelopeParts::default()
        }));
        let body = BodyRef { generation: 1, offset: 0, len: 1, crc: 0 };
        state.apply(&Record::Enqueue { mid, queue: crate::record::SUBMISSION, envelope, body });
    }

    #[test]
    fn the_delay_mark_lives_and_dies_with_its_message() {
        let mut state = State::default();
        enqueue(&mut state, 1);
        enqueue(&mut state, 2);
        state.apply(&Record::DelayNotified { mid: 1 });
        state.apply(&Record::DelayNotified { mid: 2 });
        // A mark for a message that is gone (its last copy finished in the same flush) is not kept.
        state.apply(&Record::DelayNotified { mid: 3 });
        assert_eq!(state.delay_notified.iter().copied().collect::<Vec<_>>(), [1, 2]);
        state.apply(&Record::CopyDone { mid: 1, queue: crate::record::SUBMISSION });
        state.apply(&Record::Route { mid: 2, from: crate::record::SUBMISSION, copies: vec![] });
        assert!(state.delay_notified.is_empty());
    }

    #[test]
    fn suspension_and_crash_marks_live_and_die_with_their_copies() {
        use crate::record::{POISON, SUBMISSION};
        let mut state = State::default();
        enqueue(&mut state, 1);
        state.apply(&Record::MessageSuspend { mid: 1, queue: SUBMISSION, suspended: true });
        state.apply(&Record::MessageSuspend { mid: 1, queue: 16, suspended: true });
        assert_eq!(state.suspended_copies.iter().copied().collect::<Vec<_>>(), [(1, SUBMISSION)], "no copy in 16");
        state.apply(&Record::CrashCount { mid: 1, count: 2 });
        // To Poison: the Submission mark goes with the move; Poison's is set by its own record.
        state.apply(&Record::Route { mid: 1, from: SUBMISSION, copies: vec![(POISON, vec![0])] });
        assert!(state.suspended_copies.is_empty());
        state.apply(&Record::MessageSuspend { mid: 1, queue: POISON, suspended: true });
        assert_eq!(state.crash_counts.get(&1), Some(&2));
        state.apply(&Record::CrashCount { mid: 1, count: 0 });
        assert!(state.crash_counts.is_empty());
        state.apply(&Record::CrashCount { mid: 1, count: 1 });
        state.apply(&Record::CopyDone { mid: 1, queue: POISON });
        assert!(state.suspended_copies.is_empty() && state.crash_counts.is_empty() && state.messages.is_empty());
    }

    #[test]
    fn the_records_of_a_state_rebuild_its_delay_marks() {
        let mut state = State::default();
        for mid in 1..=3 {
            enqueue(&mut state, mid);
        }
        state.apply(&Record::DelayNotified { mid: 2 });
        state.apply(&Record::MessageSuspend { mid: 3, queue: crate::record::SUBMISSION, suspended: true });
        state.apply(&Record::CrashCount { mid: 1, count: 1 });
        let mut rebuilt = State::default();
        state.for_each_record(10, |r| rebuilt.apply(&r));
        rebuilt.next_mid = state.next_mid;
        assert_eq!(rebuilt.delay_notified, state.delay_notified);
        assert_eq!(rebuilt.suspended_copies, state.suspended_copies);
        assert_eq!(rebuilt.crash_counts, state.crash_counts);
        assert_eq!(rebuilt.messages, state.messages);
    }
}
