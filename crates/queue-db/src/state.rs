//! The live state that the log describes: the queues and the messages in them. Recovery rebuilds it by
//! applying every record in log order; the same `apply` is used by tests as the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use smallvec::SmallVec;

use crate::record::{BodyRef, Envelope, Mid, QUARANTINE, QueueId, QueueKey, Record, Scan, ScanStage};

/// A message with at least one copy still in a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    pub mid: Mid,
    pub envelope: std::sync::Arc<Envelope>,
    pub body: BodyRef,
    /// Nearly always one: kept inline, without an allocation of its own.
    pub copies: SmallVec<[StoredCopy; 1]>,
    /// The work queue's verdicts so far (`Record::Scanned`); [`Scan::NONE`] until a stage is done with it.
    /// In the message's record rather than a map beside it: 16 bytes here cost less than a map's entry.
    pub scan: Scan,
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

/// Text many messages share (an error, the rules they hit): a thin pointer, 8 bytes where it is kept.
pub type SharedText = Arc<String>;

/// An error text shared by many copies.
pub type SharedError = SharedText;

/// The last error of a deferred copy, shared: a million messages behind one dead next hop hold one copy
/// of its error text, not a million. `None` for an empty one.
pub fn intern_error(error: &str) -> Option<SharedError> {
    static ERRORS: Recent = Recent::new();
    ERRORS.intern(error)
}

/// The most bytes of rule names [`Scan::tests`] keeps; a longer list is cut at a name and ends in `,...`.
pub const TESTS_MAX: usize = 1000;

/// The names of the anti-spam rules a message hit, comma-separated, as [`Scan::tests`] keeps them: only
/// the characters a rule name has (letters, digits, `_`, `-`, `.`) are kept, since they go into a header
/// line and may come from a network engine; at most [`TESTS_MAX`] bytes. Shared by the messages that hit
/// the same rules. `None` when no rule hit.
pub fn intern_tests<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<SharedText> {
    static TESTS: Recent = Recent::new();
    let mut out = String::new();
    for name in names {
        let clean = name.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        let len = clean.clone().count();
        if len == 0 {
            continue;
        }
        if out.len() + len + 1 > TESTS_MAX - 4 {
            out.push_str(",...");
            break;
        }
        if !out.is_empty() {
            out.push(',');
        }
        out.extend(clean);
    }
    TESTS.intern(&out)
}

/// The texts handed out last, most recent first: the same text asked for again gets the same allocation.
struct Recent(Mutex<Vec<SharedText>>);

impl Recent {
    /// Distinct texts remembered.
    const LEN: usize = 32;

    const fn new() -> Recent {
        Recent(Mutex::new(Vec::new()))
    }

    fn intern(&self, text: &str) -> Option<SharedText> {
        if text.is_empty() {
            return None;
        }
        let Ok(mut recent) = self.0.lock() else { return Some(Arc::new(text.to_owned())) };
        let shared = match recent.iter().position(|e| e.as_str() == text) {
            Some(i) => recent.remove(i),
            None => Arc::new(text.to_owned()),
        };
        recent.insert(0, Arc::clone(&shared));
        recent.truncate(Self::LEN);
        Some(shared)
    }
}

/// A message whose delivered copies the Safety Net still holds (docs/queue-database.md, "The Safety Net
/// index"): what a resubmit request needs to find it and to send it again. Kept from its first delivery
/// until its generation is retired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNetEntry {
    /// The message's own envelope, the same allocation the live message had: no copy is made.
    pub envelope: Arc<Envelope>,
    /// Where the body is (its generation stays while this entry does).
    pub body: BodyRef,
    /// Nearly always one: a message delivered in one attempt per copy, all copies in one queue.
    pub delivered: Deliveries,
}

/// Recipients delivered at one time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Wall clock, ms since the epoch.
    pub at_ms: i64,
    pub recipients: RecipientIndices,
}

/// The deliveries of a Safety Net entry; one inline.
pub type Deliveries = SmallVec<[Delivery; 1]>;

/// What a Safety Net query asks for: copies delivered within `[start_ms, end_ms]` (wall clock, ms), and
/// optionally only those of a sender, to a recipient, or with an Internet message id. Addresses compare
/// without regard to ASCII case; the message id exactly, with or without its angle brackets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SafetyNetFilter {
    pub start_ms: i64,
    pub end_ms: i64,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub internet_message_id: Option<String>,
}

/// A message the Safety Net holds that matched a [`SafetyNetFilter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetyNetCopy {
    pub mid: Mid,
    pub envelope: Arc<Envelope>,
    pub body: BodyRef,
    /// The recipients (indices into the envelope's) delivered within the window that match the filter,
    /// each once, in order.
    pub recipients: Vec<u32>,
    /// The latest of their deliveries (ms).
    pub delivered_at_ms: i64,
}

impl SafetyNetFilter {
    /// The entry's recipients this filter selects, or `None` when it selects none of them.
    pub fn matches(&self, mid: Mid, entry: &SafetyNetEntry) -> Option<SafetyNetCopy> {
        let env = &entry.envelope;
        if self.sender.as_deref().is_some_and(|s| !s.eq_ignore_ascii_case(env.from_address())) {
            return None;
        }
        if let Some(wanted) = &self.internet_message_id {
            let bare = |s: &str| s.trim().trim_start_matches('<').trim_end_matches('>').to_owned();
            if env.internet_message_id().map(bare) != Some(bare(wanted)) {
                return None;
            }
        }
        let mut recipients = Vec::new();
        let mut latest = i64::MIN;
        for d in entry.delivered.iter().filter(|d| (self.start_ms..=self.end_ms).contains(&d.at_ms)) {
            for &i in &d.recipients {
                let address = env.recipient(i as usize).map(|r| r.address);
                let wanted = match (&self.recipient, address) {
                    (_, None) => false,
                    (None, Some(_)) => true,
                    (Some(r), Some(a)) => r.eq_ignore_ascii_case(a),
                };
                if wanted && !recipients.contains(&i) {
                    recipients.push(i);
                    latest = latest.max(d.at_ms);
                }
            }
        }
        recipients.sort_unstable();
        (!recipients.is_empty()).then(|| SafetyNetCopy {
            mid,
            envelope: env.clone(),
            body: entry.body,
            recipients,
            delivered_at_ms: latest,
        })
    }
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
    /// Messages with delivered copies still in their generation (the Safety Net), by MID: kept from the
    /// first delivery (`CopyDelivered`, `RecipientsDelivered`) until the writer retires the generation.
    /// Boxed like `messages`.
    pub safety_net: BTreeMap<Mid, Box<SafetyNetEntry>>,
    /// Live messages in [`QUARANTINE`]: when, by which stage, why (`Record::Quarantine`).
    pub quarantined: BTreeMap<Mid, Quarantined>,
}

/// Why and since when a message is quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantined {
    pub at_ms: i64,
    pub stage: ScanStage,
    pub reason: String,
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
                        scan: Scan::NONE,
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
                    if *from == QUARANTINE && !copies.iter().any(|(q, _)| *q == QUARANTINE) {
                        self.quarantined.remove(mid);
                    }
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
                    if let Some(entry) = self.safety_net.get_mut(mid) {
                        entry.body = *body;
                    }
                }
            }
            Record::CopyDone { mid, queue } => self.copy_done(*mid, *queue),
            Record::CopyDelivered { mid, queue, at_ms, delivered } => {
                self.note_delivered(*mid, *at_ms, delivered);
                self.copy_done(*mid, *queue);
            }
            Record::RecipientsDelivered { mid, at_ms, delivered } => self.note_delivered(*mid, *at_ms, delivered),
            Record::SafetyNetEntry { mid, entry } => {
                let mut entry = entry.clone();
                // A message still live shares its envelope with the entry, as it did before the checkpoint.
                if let Some(m) = self.messages.get(mid) {
                    entry.envelope = m.envelope.clone();
                }
                self.safety_net.insert(*mid, entry);
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
            Record::Scanned { mid, scan } => {
                if let Some(m) = self.messages.get_mut(mid) {
                    m.scan = scan.clone();
                }
            }
            Record::Quarantine { mid, at_ms, stage, reason } => {
                if self.messages.contains_key(mid) {
                    self.quarantined.insert(*mid, Quarantined { at_ms: *at_ms, stage: *stage, reason: reason.clone() });
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

    /// The copy of `mid` in `queue` is finished.
    fn copy_done(&mut self, mid: Mid, queue: QueueId) {
        self.suspended_copies.remove(&(mid, queue));
        if queue == QUARANTINE {
            self.quarantined.remove(&mid);
        }
        if let Some(m) = self.messages.get_mut(&mid) {
            m.copies.retain(|c| c.queue != queue);
            if m.copies.is_empty() {
                self.remove_message(mid);
            }
        }
    }

    /// Adds a delivery of the live message `mid` to its Safety Net entry (made at its first delivery).
    fn note_delivered(&mut self, mid: Mid, at_ms: i64, delivered: &RecipientIndices) {
        let Some(m) = self.messages.get(&mid) else { return };
        if delivered.is_empty() {
            return;
        }
        let entry = self.safety_net.entry(mid).or_insert_with(|| {
            Box::new(SafetyNetEntry { envelope: m.envelope.clone(), body: m.body, delivered: Deliveries::new() })
        });
        entry.delivered.push(Delivery { at_ms, recipients: delivered.clone() });
    }

    /// Drops the Safety Net entries whose body is in a generation `gone` says is gone (retired, evicted,
    /// or missing at open); returns how many.
    pub(crate) fn prune_safety_net(&mut self, gone: impl Fn(u32) -> bool) -> usize {
        let before = self.safety_net.len();
        self.safety_net.retain(|_, e| !gone(e.body.generation));
        before - self.safety_net.len()
    }

    /// The Safety Net entries that `filter` selects, by MID.
    pub fn safety_net_matches(&self, filter: &SafetyNetFilter) -> Vec<SafetyNetCopy> {
        self.safety_net.iter().filter_map(|(mid, e)| filter.matches(*mid, e)).collect()
    }

    /// A message's last copy is gone.
    fn remove_message(&mut self, mid: Mid) {
        self.messages.remove(&mid);
        self.delay_notified.remove(&mid);
        self.crash_counts.remove(&mid);
        self.quarantined.remove(&mid);
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
            if m.scan != Scan::NONE {
                f(Record::Scanned { mid: m.mid, scan: m.scan.clone() });
            }
            if let Some(q) = self.quarantined.get(&m.mid) {
                f(Record::Quarantine { mid: m.mid, at_ms: q.at_ms, stage: q.stage, reason: q.reason.clone() });
            }
        }
        // After the messages: an entry of a live message then shares its envelope again.
        for (mid, e) in &self.safety_net {
            f(Record::SafetyNetEntry { mid: *mid, entry: e.clone() });
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
        // 96 before it held the verdicts, whose map beside the messages cost more than the 16 bytes.
        assert_eq!(size_of::<StoredMessage>(), 112);
        assert!(size_of::<Envelope>() <= 32, "{}", size_of::<Envelope>());
    }

    /// What a message costs while the Safety Net holds it (docs/queue-database.md, "The Safety Net index"):
    /// a boxed 72-byte entry (mimalloc's 80-byte class), its share of the map's node, and the envelope it
    /// kept from the live message. Records stay 80 bytes, as before the Safety Net index, and the one a
    /// delivery writes allocates nothing for up to four recipients delivered at once.
    #[test]
    fn a_safety_net_entry_stays_small() {
        assert_eq!(size_of::<Delivery>(), 32);
        assert_eq!(size_of::<SafetyNetEntry>(), 72);
        assert!(size_of::<Record>() <= 80, "records grew: {}", size_of::<Record>());
    }

    fn delivered(state: &mut State, mid: Mid, queue: QueueId, at_ms: i64, rcpts: &[u32]) {
        let delivered = RecipientIndices::from_slice(rcpts);
        state.apply(&Record::CopyDelivered { mid, queue, at_ms, delivered });
    }

    fn enqueue_to(state: &mut State, mid: Mid, from: &str, rcpts: &[&str], generation: u32) {
        let envelope = Arc::new(Envelope::from(crate::record::EnvelopeParts {
            from: from.into(),
            recipients: rcpts
                .iter()
                .map(|a| crate::record::Recipient { address: (*a).into(), notify: None, orcpt: None })
                .collect(),
            internet_message_id: Some(format!("<m{mid}@x.test>")),
            ..crate::record::EnvelopeParts::default()
        }));
        let body = BodyRef { generation, offset: mid * 100, len: 10, crc: 0 };
        state.apply(&Record::Enqueue { mid, queue: crate::record::SUBMISSION, envelope, body });
    }

    #[test]
    fn a_delivered_copy_finishes_its_message_and_stays_in_the_safety_net_with_the_same_envelope() {
        let mut state = State::default();
        enqueue_to(&mut state, 1, "a@x.test", &["b@y.test", "c@y.test", "d@z.test"], 3);
        state.apply(&Record::Route { mid: 1, from: 0, copies: vec![(16, vec![0, 1]), (17, vec![2])] });
        let envelope = state.messages[&1].envelope.clone();
        delivered(&mut state, 1, 16, 1_000, &[1]);
        assert!(state.messages.contains_key(&1), "the copy in 17 is live");
        state.apply(&Record::CopyDone { mid: 1, queue: 17 });
        assert!(state.messages.is_empty());
        let entry = &state.safety_net[&1];
        assert!(Arc::ptr_eq(&entry.envelope, &envelope), "no copy of the envelope");
        assert_eq!(entry.body.generation, 3);
        assert_eq!(entry.delivered.len(), 1);
        assert_eq!((entry.delivered[0].at_ms, entry.delivered[0].recipients.as_slice()), (1_000, &[1][..]));
        // A copy finished without a delivery leaves no entry.
        enqueue_to(&mut state, 2, "a@x.test", &["b@y.test"], 3);
        state.apply(&Record::CopyDone { mid: 2, queue: 0 });
        assert_eq!(state.safety_net.keys().copied().collect::<Vec<_>>(), [1]);
        // Nor does a delivery recorded for a message that is gone.
        delivered(&mut state, 2, 0, 5, &[0]);
        assert_eq!(state.safety_net.len(), 1);
    }

    #[test]
    fn a_partial_delivery_and_a_relocation_are_kept_by_the_entry() {
        let mut state = State::default();
        enqueue_to(&mut state, 1, "a@x.test", &["b@y.test", "c@y.test"], 3);
        state.apply(&Record::RecipientsDelivered { mid: 1, at_ms: 10, delivered: RecipientIndices::from_slice(&[0]) });
        let moved = BodyRef { generation: 9, offset: 28, len: 10, crc: 0 };
        state.apply(&Record::Relocate { mid: 1, body: moved });
        delivered(&mut state, 1, 0, 20, &[1]);
        let entry = &state.safety_net[&1];
        assert_eq!(entry.body, moved);
        let times: Vec<i64> = entry.delivered.iter().map(|d| d.at_ms).collect();
        assert_eq!(times, [10, 20]);
    }

    #[test]
    fn a_filter_selects_by_window_sender_recipient_and_message_id() {
        let mut state = State::default();
        enqueue_to(&mut state, 1, "Alice@X.test", &["b@y.test", "c@y.test"], 3);
        enqueue_to(&mut state, 2, "bob@x.test", &["b@y.test"], 3);
        state.apply(&Record::RecipientsDelivered { mid: 1, at_ms: 100, delivered: RecipientIndices::from_slice(&[0]) });
        delivered(&mut state, 1, 0, 200, &[1]);
        delivered(&mut state, 2, 0, 150, &[0]);
        let find = |f: SafetyNetFilter| -> Vec<(Mid, Vec<u32>)> {
            state.safety_net_matches(&f).into_iter().map(|c| (c.mid, c.recipients)).collect()
        };
        let window = |start_ms, end_ms| SafetyNetFilter { start_ms, end_ms, ..SafetyNetFilter::default() };
        assert_eq!(find(window(0, 1_000)), [(1, vec![0, 1]), (2, vec![0])]);
        assert_eq!(find(window(100, 150)), [(1, vec![0]), (2, vec![0])], "both ends are in the window");
        assert_eq!(find(window(151, 199)), []);
        let sender = SafetyNetFilter { sender: Some("alice@x.TEST".into()), ..window(0, 1_000) };
        assert_eq!(find(sender), [(1, vec![0, 1])]);
        let recipient = SafetyNetFilter { recipient: Some("C@y.test".into()), ..window(0, 1_000) };
        assert_eq!(find(recipient), [(1, vec![1])]);
        let id = SafetyNetFilter { internet_message_id: Some("m2@x.test".into()), ..window(0, 1_000) };
        assert_eq!(find(id), [(2, vec![0])]);
        let id = SafetyNetFilter { internet_message_id: Some("<m2@x.test>".into()), ..window(0, 120) };
        assert_eq!(find(id), [], "delivered outside the window");
        let copy = &state.safety_net_matches(&window(0, 1_000))[0];
        assert_eq!(copy.delivered_at_ms, 200);
    }

    #[test]
    fn the_records_of_a_state_rebuild_its_safety_net_and_pruning_drops_a_generation() {
        let mut state = State::default();
        enqueue_to(&mut state, 1, "a@x.test", &["b@y.test"], 3);
        enqueue_to(&mut state, 2, "a@x.test", &["b@y.test", "c@y.test"], 4);
        delivered(&mut state, 1, 0, 100, &[0]);
        state.apply(&Record::RecipientsDelivered { mid: 2, at_ms: 7, delivered: RecipientIndices::from_slice(&[1]) });
        let mut rebuilt = State::default();
        state.for_each_record(10, |r| rebuilt.apply(&r));
        rebuilt.next_mid = state.next_mid;
        assert_eq!(rebuilt.safety_net, state.safety_net);
        assert_eq!(rebuilt.messages, state.messages);
        assert!(
            Arc::ptr_eq(&rebuilt.safety_net[&2].envelope, &rebuilt.messages[&2].envelope),
            "a live message shares its envelope with its entry after a checkpoint too"
        );
        assert_eq!(state.prune_safety_net(|g| g == 3), 1);
        assert_eq!(state.safety_net.keys().copied().collect::<Vec<_>>(), [2]);
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
