//! Queue identities and statuses, in the reference design's words, and the in-memory queues.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_queue_db::{
    BodyRef, Envelope, FIRST_DELIVERY_QUEUE, Mid, POISON, QueueId, RecipientIndices, Record, SUBMISSION, SharedError,
    UNREACHABLE,
};
use smallvec::SmallVec;

use crate::routing::Target;

// The monotonic clock of retry deadlines is tokio's: the same as std's in a running server, and the paused
// clock in tests (`tokio::time::pause`), so that retry timing is tested without waiting for it.
use tokio::time::Instant;

named_enum! {
    /// How a queue's messages leave it.
    ///
    /// The variants are declared in the order of their names: the derived order is that of `as_str`, which
    /// the categorizer has always grouped a message's copies (and numbered new queues) by.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum DeliveryType {
        DnsConnectorDelivery = "DnsConnectorDelivery",
        SmartHostConnectorDelivery = "SmartHostConnectorDelivery",
        SmtpDeliveryToMailbox = "SmtpDeliveryToMailbox",
        Undefined = "Undefined",
        Unreachable = "Unreachable",
    }
}

impl DeliveryType {
    pub fn parse(s: &str) -> Option<DeliveryType> {
        DeliveryType::ALL.iter().copied().find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Internal for mailbox stores, External for send connectors.
    pub fn category(self) -> &'static str {
        match self {
            DeliveryType::SmtpDeliveryToMailbox | DeliveryType::Undefined => "Internal",
            _ => "External",
        }
    }
}

impl fmt::Display for DeliveryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// (DeliveryType, NextHopDomain, NextHopConnector): one delivery queue per distinct key. Ordered by its
/// fields in that order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NextHopSolutionKey {
    pub delivery_type: DeliveryType,
    pub next_hop_domain: String,
    pub next_hop_connector: String,
}

impl NextHopSolutionKey {
    pub(crate) fn to_stored(&self) -> sluice_queue_db::QueueKey {
        sluice_queue_db::QueueKey {
            delivery_type: self.delivery_type.as_str().to_owned(),
            next_hop_domain: self.next_hop_domain.clone(),
            next_hop_connector: self.next_hop_connector.clone(),
        }
    }

    pub(crate) fn from_stored(k: &sluice_queue_db::QueueKey) -> Option<NextHopSolutionKey> {
        Some(NextHopSolutionKey {
            delivery_type: DeliveryType::parse(&k.delivery_type)?,
            next_hop_domain: k.next_hop_domain.clone(),
            next_hop_connector: k.next_hop_connector.clone(),
        })
    }
}

named_enum! {
    /// A queue's status.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum QueueStatus {
        Active = "Active",
        Connecting = "Connecting",
        Ready = "Ready",
        Retry = "Retry",
        Suspended = "Suspended",
    }
}

named_enum! {
    /// A message copy's status.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum MessageStatus {
        Active = "Active",
        Ready = "Ready",
        Retry = "Retry",
        Suspended = "Suspended",
        PendingSuspend = "PendingSuspend",
        PendingRemove = "PendingRemove",
    }
}

/// A message with copies in one or more queues.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) body: BodyRef,
    /// Nearly always one: kept inline, without an allocation of its own.
    pub(crate) copies: SmallVec<[Copy; 1]>,
}

/// A message's copy in one queue.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub(crate) queue: QueueId,
    pub(crate) recipients: RecipientIndices,
    pub(crate) status: MessageStatus,
    pub(crate) retry_count: u32,
    pub(crate) next_retry_ms: i64,
    /// Shared by the copies that failed the same way (`sluice_queue_db::intern_error`).
    pub(crate) last_error: Option<SharedError>,
}

/// A delivery queue. Its fields change only through [`Queues`]' methods, in this file.
#[derive(Debug)]
pub(crate) struct DeliveryQueue {
    key: NextHopSolutionKey,
    target: Target,
    /// Copies waiting for a connection, oldest first.
    ready: VecDeque<Mid>,
    /// Copies waiting for their retry time, with the time on the monotonic clock.
    retry: BTreeMap<Mid, Instant>,
    active: usize,
    workers: usize,
    connecting: usize,
    suspended: bool,
    retry_count: u32,
    last_error: Option<String>,
    first_retry_ms: Option<i64>,
    last_retry_ms: Option<i64>,
    /// The next connection attempt: wall clock for people (`next_retry_time`), monotonic for waiting.
    next_retry_ms: Option<i64>,
    next_retry_at: Option<Instant>,
    message_count: usize,
    /// Wakes idle workers when copies become ready.
    notify: Arc<tokio::sync::Notify>,
}

impl DeliveryQueue {
    fn new(key: NextHopSolutionKey, target: Target) -> DeliveryQueue {
        DeliveryQueue {
            key,
            target,
            ready: VecDeque::new(),
            retry: BTreeMap::new(),
            active: 0,
            workers: 0,
            connecting: 0,
            suspended: false,
            retry_count: 0,
            last_error: None,
            first_retry_ms: None,
            last_retry_ms: None,
            next_retry_ms: None,
            next_retry_at: None,
            message_count: 0,
            notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub(crate) fn status(&self) -> QueueStatus {
        if self.suspended {
            QueueStatus::Suspended
        } else if self.next_retry_ms.is_some() {
            QueueStatus::Retry
        } else if self.connecting > 0 && self.active == 0 {
            QueueStatus::Connecting
        } else if self.active > 0 {
            QueueStatus::Active
        } else {
            QueueStatus::Ready
        }
    }

    pub(crate) fn key(&self) -> &NextHopSolutionKey {
        &self.key
    }

    /// Whether the queue holds its ready copies back: it waits for a retry or is suspended.
    pub(crate) fn held(&self) -> bool {
        self.next_retry_ms.is_some() || self.suspended
    }

    pub(crate) fn message_count(&self) -> usize {
        self.message_count
    }

    /// Copies waiting for their retry time, and the ready ones too while the queue is held.
    pub(crate) fn deferred_count(&self) -> usize {
        self.retry.len() + if self.held() { self.ready.len() } else { 0 }
    }

    pub(crate) fn retry_count(&self) -> u32 {
        self.retry_count
    }

    pub(crate) fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    pub(crate) fn first_retry_ms(&self) -> Option<i64> {
        self.first_retry_ms
    }

    pub(crate) fn last_retry_ms(&self) -> Option<i64> {
        self.last_retry_ms
    }

    pub(crate) fn next_retry_ms(&self) -> Option<i64> {
        self.next_retry_ms
    }
}

/// A copy taken from a delivery queue's ready list for a worker: what the attempt needs without the lock.
pub(crate) struct Job {
    pub(crate) mid: Mid,
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) body: BodyRef,
    pub(crate) recipients: Vec<u32>,
    pub(crate) retry_count: u32,
}

/// Everything in memory about the queues. Guarded by one mutex, never held across an await.
///
/// The fields are private to this file: the counters a delivery queue keeps (`active`, `workers`,
/// `connecting`, `message_count`) and the lists a copy sits in change only through the methods below.
#[derive(Debug)]
pub(crate) struct Queues {
    /// Boxed: a million messages make a table of pointers, and growing it moves pointers.
    messages: HashMap<Mid, Box<Message>>,
    submission: VecDeque<Mid>,
    submission_suspended: bool,
    unreachable: BTreeMap<Mid, ()>,
    unreachable_suspended: bool,
    delivery: BTreeMap<QueueId, DeliveryQueue>,
    keys: crate::routing::KeyIndex,
    next_queue_id: QueueId,
}

/// The copy of `mid` in `queue`, found through the message table alone (so that a delivery queue can be
/// borrowed beside it).
fn copy_in(messages: &mut HashMap<Mid, Box<Message>>, mid: Mid, queue: QueueId) -> Option<&mut Copy> {
    messages.get_mut(&mid).and_then(|m| m.copies.iter_mut().find(|c| c.queue == queue))
}

/// Marks a copy as waiting for its retry after a transient failure.
fn mark_retry(c: &mut Copy, retry_count: u32, next_retry_ms: i64, error: &str) {
    c.retry_count = retry_count;
    c.next_retry_ms = next_retry_ms;
    c.last_error = sluice_queue_db::intern_error(error);
    c.status = MessageStatus::Retry;
}

impl Queues {
    /// No queues and no messages; the first delivery queue made gets [`FIRST_DELIVERY_QUEUE`].
    pub(crate) fn new() -> Queues {
        Queues {
            messages: HashMap::new(),
            submission: VecDeque::new(),
            submission_suspended: false,
            unreachable: BTreeMap::new(),
            unreachable_suspended: false,
            delivery: BTreeMap::new(),
            keys: crate::routing::KeyIndex::default(),
            next_queue_id: FIRST_DELIVERY_QUEUE,
        }
    }

    // --- Loading and taking in ---

    /// Keeps the id of a stored queue from being given to a new one.
    pub(crate) fn reserve_queue_id(&mut self, id: QueueId) {
        self.next_queue_id = self.next_queue_id.max(id + 1);
    }

    /// A delivery queue recovered from the database.
    pub(crate) fn add_queue(&mut self, id: QueueId, key: NextHopSolutionKey, target: Target, suspended: bool) {
        let mut q = DeliveryQueue::new(key.clone(), target);
        q.suspended = suspended;
        self.keys.insert(key, id);
        self.delivery.insert(id, q);
    }

    /// Whether Submission and Unreachable are suspended (as recovered).
    pub(crate) fn set_persistent_suspended(&mut self, submission: bool, unreachable: bool) {
        self.submission_suspended = submission;
        self.unreachable_suspended = unreachable;
    }

    /// Adds a recovered message; its copies are placed with [`Queues::place`].
    pub(crate) fn insert_message(&mut self, mid: Mid, message: Message) {
        self.messages.insert(mid, message.into());
    }

    /// Adds a message just received, with its one copy in Submission.
    pub(crate) fn submit(&mut self, mid: Mid, message: Message) {
        self.messages.insert(mid, message.into());
        self.submission.push_back(mid);
    }

    /// Puts a copy of `mid` in the list of queue `qid`: Submission, Unreachable, or a delivery queue's ready
    /// list, or its retry list when `retry_ms` (a wall-clock time) is given. Poison has no list. Returns
    /// whether the copy went to a delivery queue, whose workers may then be started.
    pub(crate) fn place(&mut self, mid: Mid, qid: QueueId, retry_ms: Option<i64>) -> bool {
        match qid {
            SUBMISSION => self.submission.push_back(mid),
            UNREACHABLE => {
                self.unreachable.insert(mid, ());
            }
            POISON => {}
            qid => {
                let Some(q) = self.delivery.get_mut(&qid) else { return false };
                q.message_count += 1;
                match retry_ms {
                    Some(ms) => {
                        q.retry.insert(mid, monotonic_deadline(ms));
                    }
                    None => q.ready.push_back(mid),
                }
                return true;
            }
        }
        false
    }

    // --- The categorizer ---

    /// Takes up to `n` messages from the front of Submission, with their envelopes; none while Submission
    /// is suspended.
    pub(crate) fn take_submission(&mut self, n: usize) -> Vec<(Mid, Arc<Envelope>)> {
        if self.submission_suspended {
            return Vec::new();
        }
        let n = self.submission.len().min(n);
        let mids: Vec<Mid> = self.submission.drain(..n).collect();
        mids.into_iter().filter_map(|mid| self.messages.get(&mid).map(|m| (mid, m.envelope.clone()))).collect()
    }

    /// The delivery queue for `key`, made (with the record that makes it durable) if there is none yet.
    pub(crate) fn queue_for(&mut self, key: NextHopSolutionKey, target: Target) -> (QueueId, Option<Record>) {
        if let Some(id) = self.keys.get(&key) {
            return (*id, None);
        }
        let id = self.next_queue_id;
        self.next_queue_id += 1;
        let record = Record::QueueCreate { id, key: key.to_stored() };
        self.keys.insert(key.clone(), id);
        self.delivery.insert(id, DeliveryQueue::new(key, target));
        (id, Some(record))
    }

    /// Replaces the Submission copy of `mid` with one Ready copy per `(queue, recipients)`. Returns false
    /// when the message is gone.
    pub(crate) fn replace_submission_copy(&mut self, mid: Mid, copies: &[(QueueId, Vec<u32>)]) -> bool {
        let Some(m) = self.messages.get_mut(&mid) else { return false };
        m.copies.retain(|c| c.queue != SUBMISSION);
        for (qid, rcpts) in copies {
            m.copies.push(Copy {
                queue: *qid,
                recipients: RecipientIndices::from_slice(rcpts),
                status: MessageStatus::Ready,
                retry_count: 0,
                next_retry_ms: 0,
                last_error: None,
            });
        }
        true
    }

    // --- Delivery workers ---

    /// Counts the workers to start for `qid`: while it has more ready copies than workers, up to `limit`.
    /// Idle workers are woken too. None while the queue is suspended, waiting for its retry or empty.
    pub(crate) fn start_workers(&mut self, qid: QueueId, limit: usize) -> usize {
        let Some(q) = self.delivery.get_mut(&qid) else { return 0 };
        if q.suspended || q.next_retry_ms.is_some() || q.ready.is_empty() {
            return 0;
        }
        q.notify.notify_waiters();
        let want = q.ready.len().min(limit);
        let start = want.saturating_sub(q.workers);
        q.workers += start;
        start
    }

    /// What wakes the idle workers of `qid`, while the queue exists.
    pub(crate) fn notifier(&self, qid: QueueId) -> Option<Arc<tokio::sync::Notify>> {
        self.delivery.get(&qid).map(|q| q.notify.clone())
    }

    /// Takes the oldest ready copy of `qid` for a worker and marks it Active, with the queue's target.
    pub(crate) fn take_ready(&mut self, qid: QueueId) -> Option<(Job, Target)> {
        let q = self.delivery.get_mut(&qid)?;
        if q.suspended || q.next_retry_ms.is_some() {
            return None;
        }
        while let Some(mid) = q.ready.pop_front() {
            let Some(m) = self.messages.get_mut(&mid) else { continue };
            let Some(c) = m.copies.iter_mut().find(|c| c.queue == qid) else { continue };
            c.status = MessageStatus::Active;
            q.active += 1;
            let job = Job {
                mid,
                envelope: m.envelope.clone(),
                body: m.body,
                recipients: c.recipients.to_vec(),
                retry_count: c.retry_count,
            };
            return Some((job, q.target.clone()));
        }
        None
    }

    /// A worker of `qid` starts (`true`) or ends (`false`) connecting to the next hop.
    pub(crate) fn set_connecting(&mut self, qid: QueueId, connecting: bool) {
        if let Some(q) = self.delivery.get_mut(&qid) {
            if connecting {
                q.connecting += 1;
            } else {
                q.connecting -= 1;
            }
        }
    }

    /// A worker of `qid` ends. Returns whether copies are still ready (one may have come since its last look).
    pub(crate) fn worker_done(&mut self, qid: QueueId) -> bool {
        match self.delivery.get_mut(&qid) {
            Some(q) => {
                q.workers -= 1;
                !q.ready.is_empty()
            }
            None => false,
        }
    }

    /// The active copy of `mid` in `qid` is done: every recipient has its final outcome.
    pub(crate) fn finish_copy(&mut self, mid: Mid, qid: QueueId) {
        self.remove_copy(mid, qid);
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.active -= 1;
            q.message_count = q.message_count.saturating_sub(1);
        }
    }

    /// The active copy of `mid` in `qid` failed transiently and waits for `next_retry_ms` (wall clock). With
    /// `recipients`, the copy keeps only those (the others have their final outcome).
    pub(crate) fn defer_copy(
        &mut self,
        mid: Mid,
        qid: QueueId,
        recipients: Option<&[u32]>,
        retry_count: u32,
        next_retry_ms: i64,
        error: &str,
    ) {
        if let Some(c) = copy_in(&mut self.messages, mid, qid) {
            if let Some(r) = recipients {
                c.recipients = RecipientIndices::from_slice(r);
            }
            mark_retry(c, retry_count, next_retry_ms, error);
        }
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.active -= 1;
            q.retry.insert(mid, monotonic_deadline(next_retry_ms));
        }
    }

    /// The whole attempt at `qid` failed (no connection, or the session broke): the active copy of `mid`
    /// goes back to the front, so that it is first when the queue retries, and the queue waits until
    /// `next_retry_ms` (wall clock; `now_ms` is the time of the failure).
    pub(crate) fn requeue_front(
        &mut self,
        mid: Mid,
        qid: QueueId,
        retry_count: u32,
        now_ms: i64,
        next_retry_ms: i64,
        error: &str,
    ) {
        if let Some(c) = copy_in(&mut self.messages, mid, qid) {
            mark_retry(c, retry_count, next_retry_ms, error);
        }
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.active -= 1;
            q.ready.push_front(mid);
            q.retry_count += 1;
            q.last_error = Some(error.to_owned());
            q.first_retry_ms.get_or_insert(now_ms);
            q.last_retry_ms = Some(now_ms);
            q.next_retry_ms = Some(next_retry_ms);
            q.next_retry_at = Some(monotonic_deadline(next_retry_ms));
        }
    }

    /// Moves what is due at `now` out of Retry: queues whose retry time came, and copies whose retry time
    /// came back to the ready list. Returns the queues to kick (a queue may appear more than once).
    pub(crate) fn release_due(&mut self, now: Instant) -> Vec<QueueId> {
        let mut due_queues = Vec::new();
        for (qid, q) in self.delivery.iter_mut() {
            if q.next_retry_at.is_some_and(|t| t <= now) {
                q.next_retry_ms = None;
                q.next_retry_at = None;
                due_queues.push(*qid);
            }
            let due: Vec<Mid> = q.retry.iter().filter(|(_, t)| **t <= now).map(|(m, _)| *m).collect();
            for mid in due {
                q.retry.remove(&mid);
                if let Some(c) = copy_in(&mut self.messages, mid, *qid) {
                    c.status = MessageStatus::Ready;
                }
                q.ready.push_back(mid);
                due_queues.push(*qid);
            }
        }
        due_queues
    }

    // --- Configuration reload ---

    /// Gives every delivery queue the target `target_for` finds for its key now, where it finds one.
    pub(crate) fn retarget(&mut self, target_for: impl Fn(&NextHopSolutionKey) -> Option<Target>) {
        for q in self.delivery.values_mut() {
            if let Some(t) = target_for(&q.key) {
                q.target = t;
            }
        }
    }

    /// Moves every Unreachable copy back to Submission, unless Unreachable is suspended. Returns the
    /// records of the moves.
    pub(crate) fn resubmit_unreachable(&mut self) -> Vec<Record> {
        let mut records = Vec::new();
        if self.unreachable_suspended {
            return records;
        }
        let mids: Vec<Mid> = self.unreachable.keys().copied().collect();
        self.unreachable.clear();
        for mid in mids {
            if let Some(c) = copy_in(&mut self.messages, mid, UNREACHABLE) {
                c.queue = SUBMISSION;
                records.push(Record::Route {
                    mid,
                    from: UNREACHABLE,
                    copies: vec![(SUBMISSION, c.recipients.to_vec())],
                });
            }
            if let Some(m) = self.messages.get_mut(&mid) {
                merge_submission_copies(&mut m.copies);
            }
            self.submission.push_back(mid);
        }
        records
    }

    // --- Looking ---

    /// How many messages there are.
    pub(crate) fn message_count(&self) -> usize {
        self.messages.len()
    }

    /// The messages, in no particular order.
    pub(crate) fn messages(&self) -> impl Iterator<Item = (&Mid, &Message)> {
        self.messages.iter().map(|(mid, m)| (mid, &**m))
    }

    pub(crate) fn delivery_queue(&self, qid: QueueId) -> Option<&DeliveryQueue> {
        self.delivery.get(&qid)
    }

    /// The delivery queues, by id.
    pub(crate) fn delivery_queues(&self) -> impl Iterator<Item = (QueueId, &DeliveryQueue)> {
        self.delivery.iter().map(|(id, q)| (*id, q))
    }

    pub(crate) fn delivery_ids(&self) -> Vec<QueueId> {
        self.delivery.keys().copied().collect()
    }

    pub(crate) fn submission_len(&self) -> usize {
        self.submission.len()
    }

    pub(crate) fn submission_suspended(&self) -> bool {
        self.submission_suspended
    }

    pub(crate) fn unreachable_len(&self) -> usize {
        self.unreachable.len()
    }

    pub(crate) fn unreachable_suspended(&self) -> bool {
        self.unreachable_suspended
    }

    /// Removes the copy of `mid` in `queue`; the message goes when its last copy does.
    fn remove_copy(&mut self, mid: Mid, queue: QueueId) {
        if let Some(m) = self.messages.get_mut(&mid) {
            m.copies.retain(|c| c.queue != queue);
            if m.copies.is_empty() {
                self.messages.remove(&mid);
            }
        }
    }
}

/// Two copies that both fell back to Submission become one with all their recipients.
pub(crate) fn merge_submission_copies(copies: &mut SmallVec<[Copy; 1]>) {
    let mut merged: Option<Copy> = None;
    copies.retain(|c| {
        if c.queue != SUBMISSION {
            return true;
        }
        match merged.as_mut() {
            None => merged = Some(c.clone()),
            Some(m) => m.recipients.extend_from_slice(&c.recipients),
        }
        false
    });
    if let Some(mut m) = merged {
        m.recipients.sort_unstable();
        m.recipients.dedup();
        copies.push(m);
    }
}

/// The monotonic instant of a persisted wall-clock deadline: deadlines are stored as wall-clock times (they
/// must mean the same after a restart), but waiting uses the monotonic clock, so that a step of the system
/// clock neither fires every timer at once nor stalls them.
pub(crate) fn monotonic_deadline(wall_ms: i64) -> Instant {
    let now = sluice_queue_db::now_ms();
    Instant::now() + Duration::from_millis(wall_ms.saturating_sub(now).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_types_are_ordered_by_name() {
        let all = [
            DeliveryType::Undefined,
            DeliveryType::Unreachable,
            DeliveryType::DnsConnectorDelivery,
            DeliveryType::SmartHostConnectorDelivery,
            DeliveryType::SmtpDeliveryToMailbox,
        ];
        for a in all {
            for b in all {
                assert_eq!(a.cmp(&b), a.as_str().cmp(b.as_str()), "{a} against {b}");
            }
        }
    }

    #[test]
    fn persisted_deadlines_become_monotonic_waits() {
        let now = sluice_queue_db::now_ms();
        let soon = monotonic_deadline(now + 60_000);
        let wait = soon.saturating_duration_since(Instant::now());
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60), "{wait:?}");
        // A deadline in the past (or a clock that stepped forward past it) is due now, not in the past.
        assert!(monotonic_deadline(now - 3_600_000) <= Instant::now());
    }

    /// A million queued messages cost a million of these (B4 in docs/benchmarks.md): 96 bytes is a mimalloc size
    /// class, and one byte more moves every message to the next.
    #[test]
    fn a_queued_message_stays_small() {
        assert_eq!(size_of::<Copy>(), 56);
        assert_eq!(size_of::<Message>(), 96);
    }
}
