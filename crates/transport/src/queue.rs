//! Queue identities and statuses, in the reference design's words, and the in-memory queues.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sluice_queue_db::{
    BodyRef, Envelope, FIRST_DELIVERY_QUEUE, Mid, POISON, Priority, QueueId, RecipientIndices, Record, SUBMISSION,
    Scan, SharedError, UNREACHABLE,
};
use smallvec::SmallVec;

use crate::hosts::{HostCounters, HostIndex};
use crate::routing::{Limits, Target};

mod flow;
mod poison;

pub(crate) use flow::Rates;

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

impl MessageStatus {
    /// Being delivered: the attempt's end decides (a pending suspension or removal is applied then).
    pub(crate) fn in_flight(self) -> bool {
        matches!(self, MessageStatus::Active | MessageStatus::PendingSuspend | MessageStatus::PendingRemove)
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

impl Message {
    /// The work queue's verdicts (kept in each copy).
    pub(crate) fn scan(&self) -> Scan {
        self.copies.first().map_or(Scan::NONE, |c| c.scan.clone())
    }
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
    /// The message's work-queue verdicts, the same in every copy (the rules hit are one shared text).
    pub(crate) scan: Scan,
}

/// A delivery queue. Its fields change only through [`Queues`]' methods, in this file.
#[derive(Debug)]
pub(crate) struct DeliveryQueue {
    key: NextHopSolutionKey,
    target: Target,
    /// Copies waiting for a connection, oldest first.
    ready: VecDeque<Mid>,
    /// Copies waiting for their retry time, with the time on the monotonic clock.
    /// Ordered by time, so that the timer looks only at what is due: `(deadline, mid, the copy's
    /// next_retry_ms)`. An entry whose copy left (it expired or was moved) stays until its time and is then
    /// dropped: it is live only while the copy is in Retry here with that same `next_retry_ms`.
    retry: BTreeSet<(Instant, Mid, i64)>,
    /// The copies here in Retry (live entries of `retry`).
    retrying: usize,
    /// The copies here that an administrator suspended (in no list: found through the message table).
    held_copies: usize,
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
    /// Copies the categorizer routed here whose Route record is on its way to the writer: counted, so that
    /// the queue is not deleted as idle under them before they are placed.
    pending: usize,
    /// The routing table has no target for the key any more (its connector or store was removed or
    /// changed): nothing new is routed here, and the queue is deleted once idle.
    gone: bool,
    /// Since when the queue has been empty, with no worker (for `queue_max_idle_time`).
    idle_since: Option<Instant>,
    /// The first queue-level failure since the queue last delivered, on the monotonic clock (for
    /// `max_idle_time_before_resubmit`; moved on when the queue's messages are categorized again).
    first_retry_at: Option<Instant>,
    /// Copies entering and leaving, for its rates.
    flow: flow::Flow,
    /// The outcome counters of its next hop domain (`hosts.rs`), shared with the domain's other queues.
    host: Arc<HostCounters>,
}

impl DeliveryQueue {
    fn new(key: NextHopSolutionKey, target: Target, host: Arc<HostCounters>) -> DeliveryQueue {
        DeliveryQueue {
            host,
            key,
            target,
            ready: VecDeque::new(),
            retry: BTreeSet::new(),
            retrying: 0,
            held_copies: 0,
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
            pending: 0,
            gone: false,
            idle_since: None,
            first_retry_at: None,
            flow: flow::Flow::default(),
        }
    }

    /// No copy, placed or on its way, and no worker: the queue could be deleted.
    fn is_empty_and_idle(&self) -> bool {
        self.message_count == 0 && self.pending == 0 && self.workers == 0 && self.active == 0 && self.connecting == 0
    }

    /// Suspended; Retry while it waits for its next attempt; Active while a copy goes over an open
    /// connection; Connecting while its workers only connect (each holds the copy it took, counted active,
    /// while it connects or waits for a connection slot); else Ready.
    pub(crate) fn status(&self) -> QueueStatus {
        if self.suspended {
            QueueStatus::Suspended
        } else if self.next_retry_ms.is_some() {
            QueueStatus::Retry
        } else if self.active > self.connecting {
            QueueStatus::Active
        } else if self.connecting > 0 {
            QueueStatus::Connecting
        } else {
            QueueStatus::Ready
        }
    }

    pub(crate) fn key(&self) -> &NextHopSolutionKey {
        &self.key
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// Whether the queue holds its ready copies back: it waits for a retry or is suspended.
    pub(crate) fn held(&self) -> bool {
        self.next_retry_ms.is_some() || self.suspended
    }

    /// The copies in the queue, those the categorizer routed here and is about to place included.
    pub(crate) fn message_count(&self) -> usize {
        self.message_count + self.pending
    }

    /// Copies waiting for their retry time, and the ready ones too while the queue is held. (The ready list
    /// may hold entries of copies that left it, which are skipped when taken: it is not counted.)
    pub(crate) fn deferred_count(&self) -> usize {
        if self.held() { self.message_count.saturating_sub(self.active) } else { self.retrying + self.held_copies }
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

    /// Its delivery workers now (each holds at most one connection, open or being opened).
    pub(crate) fn workers(&self) -> usize {
        self.workers
    }
}

/// A copy taken from a delivery queue's ready list for a worker: what the attempt needs without the lock.
pub(crate) struct Job {
    pub(crate) mid: Mid,
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) body: BodyRef,
    pub(crate) recipients: Vec<u32>,
    pub(crate) retry_count: u32,
    /// The message is a suspect: it is delivered alone (`poison.rs`).
    pub(crate) suspect: bool,
    /// The queue's next hop domain's outcome counters (counted without the lock).
    pub(crate) host: Arc<HostCounters>,
    /// The work queue's verdicts, sent as header lines before the body.
    pub(crate) scan: Scan,
}

/// Everything in memory about the queues. Guarded by one mutex, never held across an await.
///
/// The fields are private to this file: the counters a delivery queue keeps (`active`, `workers`,
/// `connecting`, `message_count`) and the lists a copy sits in change only through the methods below.
#[derive(Debug)]
pub(crate) struct Queues {
    /// Told of each message's final disposition, on a cluster node with shadow copies.
    cluster: Option<Arc<dyn crate::cluster::ClusterHooks>>,
    /// Boxed: a million messages make a table of pointers, and growing it moves pointers.
    messages: HashMap<Mid, Box<Message>>,
    submission: VecDeque<Mid>,
    /// Submission copies an administrator suspended (not on `submission`'s list).
    submission_held: usize,
    submission_suspended: bool,
    unreachable: BTreeMap<Mid, ()>,
    unreachable_suspended: bool,
    delivery: BTreeMap<QueueId, DeliveryQueue>,
    keys: crate::routing::KeyIndex,
    next_queue_id: QueueId,
    /// Copies in Poison (nothing takes them from there; they are only counted and listed).
    poison: usize,
    /// Suspects: messages to be processed alone (`poison.rs`), with their crash count (0 for one resumed from
    /// Poison). Few, usually none; a message in Poison is not here.
    suspects: HashMap<Mid, u32>,
    /// `suspects.len()`, read without the lock by the processing gate (`poison::Gate`).
    suspect_count: Arc<std::sync::atomic::AtomicUsize>,
    /// Every message by arrival, `(received_at_ms, mid)`, oldest first (MIDs rise with time): the expiry and
    /// delay deadlines of all messages, scanned from the front every second instead of a timer per message
    /// or a scan of all. Entries of finished messages are skipped when reached, and dropped in bulk when
    /// they are more than half of the list (`compact_arrivals`).
    arrivals: VecDeque<(i64, Mid)>,
    /// How many entries at the front of `arrivals` were considered for the delay notice.
    delay_cursor: usize,
    /// Recovered messages whose delay notice was sent before the restart (`Record::DelayNotified`); each is
    /// dropped when the delay scan reaches it.
    delay_notified: HashSet<Mid>,
    /// Messages that expired while a copy of theirs was being delivered or in Submission: they expire when
    /// no copy is (looked at again every second).
    expire_later: Vec<Mid>,
    /// Copies whose removal was asked for while they were being delivered (`PendingRemove`), with whether
    /// the sender is to be told: applied when the attempt ends without delivering them.
    pending_remove: HashMap<(Mid, QueueId), bool>,
    /// When these queues were made: rates count 5-second buckets from here.
    started: Instant,
    /// The rates of Submission, Unreachable and Poison, by queue id.
    flows: [flow::Flow; 3],
    /// The messages whose priority is not Normal (few): the queues' counts per priority come from them.
    prioritized: HashSet<Mid>,
    /// The outcome counters of each next hop domain (`hosts.rs`).
    hosts: HostIndex,
}

/// A message's copies that expired, taken out of their queues: the sender is told, the copies are recorded
/// done.
pub(crate) struct Expired {
    pub(crate) mid: Mid,
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) body: BodyRef,
    /// Each expired copy's queue and recipients.
    pub(crate) copies: Vec<(QueueId, Vec<u32>)>,
}

/// A message whose delay notice is due, with its recipients still undelivered and each one's last error.
pub(crate) struct Delayed {
    pub(crate) mid: Mid,
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) body: BodyRef,
    pub(crate) recipients: Vec<(u32, Option<SharedError>)>,
}

/// Whether a message received at `received_at_ms` has passed `timeout` at `now_ms` (both wall clock).
pub(crate) fn past(received_at_ms: i64, timeout: Duration, now_ms: i64) -> bool {
    received_at_ms.saturating_add(timeout.as_millis().min(i64::MAX as u128) as i64) <= now_ms
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
            cluster: None,
            messages: HashMap::new(),
            submission: VecDeque::new(),
            submission_held: 0,
            submission_suspended: false,
            unreachable: BTreeMap::new(),
            unreachable_suspended: false,
            delivery: BTreeMap::new(),
            keys: crate::routing::KeyIndex::default(),
            next_queue_id: FIRST_DELIVERY_QUEUE,
            poison: 0,
            suspects: HashMap::new(),
            suspect_count: Arc::default(),
            arrivals: VecDeque::new(),
            delay_cursor: 0,
            delay_notified: HashSet::new(),
            expire_later: Vec::new(),
            pending_remove: HashMap::new(),
            started: Instant::now(),
            flows: Default::default(),
            prioritized: HashSet::new(),
            hosts: HostIndex::default(),
        }
    }

    // --- Loading and taking in ---

    /// Keeps the id of a stored queue from being given to a new one.
    pub(crate) fn reserve_queue_id(&mut self, id: QueueId) {
        self.next_queue_id = self.next_queue_id.max(id + 1);
    }

    /// A delivery queue recovered from the database.
    pub(crate) fn add_queue(&mut self, id: QueueId, key: NextHopSolutionKey, target: Target, suspended: bool) {
        let host = self.hosts.counters_for(&key.next_hop_domain);
        let mut q = DeliveryQueue::new(key.clone(), target, host);
        q.suspended = suspended;
        self.keys.insert(key, id);
        self.delivery.insert(id, q);
    }

    /// Whether Submission and Unreachable are suspended (as recovered).
    pub(crate) fn set_persistent_suspended(&mut self, submission: bool, unreachable: bool) {
        self.submission_suspended = submission;
        self.unreachable_suspended = unreachable;
    }

    /// Adds a recovered message, in MID order; its copies are placed with [`Queues::place`].
    pub(crate) fn insert_message(&mut self, mid: Mid, message: Message) {
        self.arrivals.push_back((message.envelope.received_at_ms, mid));
        if message.envelope.priority() != Priority::Normal {
            self.prioritized.insert(mid);
        }
        self.messages.insert(mid, message.into());
    }

    /// The recovered messages whose delay notice was already sent.
    pub(crate) fn set_delay_notified(&mut self, mids: impl IntoIterator<Item = Mid>) {
        self.delay_notified = mids.into_iter().collect();
    }

    /// Adds a message just received, with its one copy in Submission.
    pub(crate) fn submit(&mut self, mid: Mid, message: Message) {
        self.arrivals.push_back((message.envelope.received_at_ms, mid));
        if message.envelope.priority() != Priority::Normal {
            self.prioritized.insert(mid);
        }
        self.messages.insert(mid, message.into());
        self.submission.push_back(mid);
        self.count_flow(SUBMISSION, false, 1);
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
            POISON => self.poison += 1,
            qid => {
                let Some(q) = self.delivery.get_mut(&qid) else { return false };
                q.message_count += 1;
                match retry_ms {
                    Some(ms) => {
                        q.retry.insert((monotonic_deadline(ms), mid, ms));
                        q.retrying += 1;
                    }
                    None => q.ready.push_back(mid),
                }
                q.idle_since = None;
                return true;
            }
        }
        false
    }

    /// Places a copy the categorizer routed to `qid` (counted as pending since
    /// [`Queues::replace_submission_copy`]) on its ready list. Returns whether the queue exists.
    /// Returns false too when the copy left meanwhile (it expired before it was placed).
    pub(crate) fn place_routed(&mut self, mid: Mid, qid: QueueId) -> bool {
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.pending = q.pending.saturating_sub(1);
        }
        let here = self.messages.get(&mid).is_some_and(|m| m.copies.iter().any(|c| c.queue == qid));
        here && self.place(mid, qid, None)
    }

    /// Sets the work queue's verdicts on `mid`; returns whether they changed.
    pub(crate) fn set_scan(&mut self, mid: Mid, scan: &Scan) -> bool {
        match self.messages.get_mut(&mid) {
            Some(m) if m.copies.first().is_some_and(|c| c.scan != *scan) => {
                for c in &mut m.copies {
                    c.scan = scan.clone();
                }
                true
            }
            _ => false,
        }
    }

    /// Puts mids whose copies were moved to Submission (and whose Route records were handed to the writer)
    /// on Submission's list, for the categorizer.
    pub(crate) fn push_submission(&mut self, mids: impl IntoIterator<Item = Mid>) {
        self.submission.extend(mids);
    }

    // --- The categorizer ---

    /// Takes up to `n` messages from the front of Submission, with their envelopes and the recipients of
    /// their Submission copy; none while Submission is suspended. A message without a Submission copy (it
    /// expired, or its entry came twice) is skipped.
    pub(crate) fn take_submission(&mut self, n: usize) -> Vec<(Mid, Arc<Envelope>, Vec<u32>)> {
        if self.submission_suspended {
            return Vec::new();
        }
        let n = self.submission.len().min(n);
        let mut mids: Vec<Mid> = self.submission.drain(..n).collect();
        mids.sort_unstable();
        mids.dedup();
        mids.into_iter()
            .filter_map(|mid| {
                let m = self.messages.get(&mid)?;
                let c = m.copies.iter().find(|c| c.queue == SUBMISSION && c.status != MessageStatus::Suspended)?;
                Some((mid, m.envelope.clone(), c.recipients.to_vec()))
            })
            .collect()
    }

    /// The delivery queue for `key`, made (with the record that makes it durable) if there is none yet.
    pub(crate) fn queue_for(&mut self, key: NextHopSolutionKey, target: Target) -> (QueueId, Option<Record>) {
        if let Some(id) = self.keys.get(&key) {
            if let Some(q) = self.delivery.get_mut(id) {
                // The routing table routes to the key again (a reload brought its connector back).
                if q.gone {
                    q.gone = false;
                    q.target = target;
                }
            }
            return (*id, None);
        }
        let id = self.next_queue_id;
        self.next_queue_id += 1;
        let record = Record::QueueCreate { id, key: key.to_stored() };
        self.keys.insert(key.clone(), id);
        let host = self.hosts.counters_for(&key.next_hop_domain);
        self.delivery.insert(id, DeliveryQueue::new(key, target, host));
        (id, Some(record))
    }

    /// Replaces the Submission copy of `mid`, for `routed` recipients, with one Ready copy per `(queue,
    /// recipients)`; the delivery queues count them as pending until [`Queues::place_routed`]. Returns false
    /// when the message or its Submission copy is gone; when the copy's recipients changed meanwhile (more came
    /// back to Submission), nothing is replaced and the message goes back on Submission's list, to be
    /// routed again whole.
    pub(crate) fn replace_submission_copy(&mut self, mid: Mid, routed: &[u32], copies: &[(QueueId, Vec<u32>)]) -> bool {
        let Some(m) = self.messages.get_mut(&mid) else { return false };
        let Some(c) = m.copies.iter().find(|c| c.queue == SUBMISSION) else { return false };
        // Suspended by an administrator while it was being routed: it stays.
        if c.status == MessageStatus::Suspended {
            return false;
        }
        if c.recipients.as_slice() != routed {
            self.submission.push_back(mid);
            return false;
        }
        let scan = c.scan.clone();
        m.copies.retain(|c| c.queue != SUBMISSION);
        for (qid, rcpts) in copies {
            if let Some(q) = self.delivery.get_mut(qid) {
                q.pending += 1;
            }
            m.copies.push(Copy {
                queue: *qid,
                recipients: RecipientIndices::from_slice(rcpts),
                status: MessageStatus::Ready,
                retry_count: 0,
                next_retry_ms: 0,
                last_error: None,
                scan: scan.clone(),
            });
        }
        self.count_flow(SUBMISSION, true, 1);
        for (qid, _) in copies {
            self.count_flow(*qid, false, 1);
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
            // An entry whose copy left the list (expired, moved, or listed twice) is skipped.
            let Some(c) = m.copies.iter_mut().find(|c| c.queue == qid && c.status == MessageStatus::Ready) else {
                continue;
            };
            c.status = MessageStatus::Active;
            q.active += 1;
            let job = Job {
                mid,
                envelope: m.envelope.clone(),
                body: m.body,
                recipients: c.recipients.to_vec(),
                retry_count: c.retry_count,
                suspect: !self.suspects.is_empty() && self.suspects.contains_key(&mid),
                host: q.host.clone(),
                scan: c.scan.clone(),
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
        if !self.pending_remove.is_empty() {
            self.pending_remove.remove(&(mid, qid));
        }
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
            q.retry.insert((monotonic_deadline(next_retry_ms), mid, next_retry_ms));
            q.retrying += 1;
        }
    }

    /// A queue-level failure at `qid` (no connection, or the session failed as a whole) at `now_ms` (wall
    /// clock): the queue goes to Retry for the interval its count of failures in a row calls for
    /// ([`Limits::queue_retry_interval`]). A worker failing while the queue already waits (another worker's
    /// failure put it there) does not count again. Returns the wall-clock time of the next attempt.
    pub(crate) fn queue_failed(&mut self, qid: QueueId, now_ms: i64, error: &str, limits: &Limits) -> Option<i64> {
        let q = self.delivery.get_mut(&qid)?;
        if let Some(next) = q.next_retry_ms {
            return Some(next);
        }
        q.retry_count += 1;
        let wait = limits.queue_retry_interval(q.retry_count);
        let next = now_ms.saturating_add(wait.as_millis().min(i64::MAX as u128) as i64);
        q.last_error = Some(error.to_owned());
        q.first_retry_ms.get_or_insert(now_ms);
        q.first_retry_at.get_or_insert_with(Instant::now);
        q.last_retry_ms = Some(now_ms);
        q.next_retry_ms = Some(next);
        q.next_retry_at = Some(Instant::now() + wait);
        Some(next)
    }

    /// The queue delivered (a session went through): its count of failures in a row starts again.
    pub(crate) fn queue_delivered(&mut self, qid: QueueId) {
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.retry_count = 0;
            q.first_retry_ms = None;
            q.first_retry_at = None;
        }
    }

    /// The active copy of `mid` goes back to the front of `qid`'s ready list after a queue-level failure, so
    /// that it is first when the queue retries; it keeps `retry_count`, `next_retry_ms` (the queue's) and the
    /// error.
    pub(crate) fn requeue_front(&mut self, mid: Mid, qid: QueueId, retry_count: u32, next_retry_ms: i64, error: &str) {
        if let Some(c) = copy_in(&mut self.messages, mid, qid) {
            mark_retry(c, retry_count, next_retry_ms, error);
            // Ready on the list of a held queue: listed as Retry while the queue waits.
            c.status = MessageStatus::Ready;
        }
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.active -= 1;
            q.ready.push_front(mid);
        }
    }

    /// The active copy of `mid` goes back to the front of `qid`'s ready list untouched: its attempt did not
    /// start (shutdown came first).
    pub(crate) fn put_back(&mut self, mid: Mid, qid: QueueId) {
        // A removal asked for meanwhile is not applied here (no notice can be sent under the lock): the
        // copy stays, as after a restart.
        self.pending_remove.remove(&(mid, qid));
        let mut held = false;
        if let Some(c) = copy_in(&mut self.messages, mid, qid) {
            held = c.status == MessageStatus::PendingSuspend;
            c.status = if held { MessageStatus::Suspended } else { MessageStatus::Ready };
        }
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.active -= 1;
            if held {
                q.held_copies += 1;
            } else {
                q.ready.push_front(mid);
            }
        }
    }

    /// Whether an attempt at `qid` that started with `target` must send what it did not deliver back to the
    /// categorizer: the routing table changed the queue's target since, or has none for it any more.
    pub(crate) fn rerouted(&self, qid: QueueId, target: &Target) -> bool {
        self.delivery.get(&qid).is_some_and(|q| q.gone || q.target != *target)
    }

    /// The active copy of `mid` in `qid` goes back to Submission with `recipients` (what its attempt did not
    /// deliver). Returns the Route record; the mid goes on Submission's list with
    /// [`Queues::push_submission`] once the record was handed to the writer.
    pub(crate) fn active_to_submission(&mut self, mid: Mid, qid: QueueId, recipients: &[u32]) -> Option<Record> {
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.active -= 1;
            q.message_count = q.message_count.saturating_sub(1);
        }
        self.copy_to_submission(mid, qid, Some(recipients))
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
            while let Some(&(at, mid, wall)) = q.retry.first() {
                if at > now {
                    break;
                }
                q.retry.pop_first();
                let Some(c) = copy_in(&mut self.messages, mid, *qid) else { continue };
                if c.status != MessageStatus::Retry || c.next_retry_ms != wall {
                    continue;
                }
                c.status = MessageStatus::Ready;
                q.retrying -= 1;
                q.ready.push_back(mid);
                due_queues.push(*qid);
            }
        }
        due_queues
    }

    // --- Configuration reload and resubmission ---

    /// Applies a new routing table to the delivery queues: a queue whose key `target_for` gives another
    /// target (its connector or store changed) takes the new one and leaves Retry; one without a target any
    /// more (removed) is marked gone. The waiting copies of both (ready or in retry, not those being
    /// delivered, and not in a suspended queue) go back to Submission at once, to be categorized under the
    /// new table. Returns the Route records and the mids to put on Submission's list once they are handed
    /// to the writer.
    pub(crate) fn reroute(&mut self, target_for: impl Fn(&NextHopSolutionKey) -> Option<Target>) -> Moved {
        let mut moved = Moved::default();
        let ids: Vec<QueueId> = self.delivery.keys().copied().collect();
        for qid in ids {
            let Some(q) = self.delivery.get_mut(&qid) else { continue };
            match target_for(&q.key) {
                Some(t) if t == q.target && !q.gone => continue,
                Some(t) => {
                    q.target = t;
                    q.gone = false;
                    q.next_retry_ms = None;
                    q.next_retry_at = None;
                    q.retry_count = 0;
                    q.first_retry_ms = None;
                    q.first_retry_at = None;
                }
                None => q.gone = true,
            }
            if !q.suspended {
                self.waiting_to_submission(qid, &mut moved);
            }
        }
        moved
    }

    /// Moves every Unreachable copy back to Submission, unless Unreachable is suspended. Returns the
    /// records of the moves and the mids to put on Submission's list once they are handed to the writer.
    pub(crate) fn resubmit_unreachable(&mut self) -> Moved {
        let mut moved = Moved::default();
        if self.unreachable_suspended {
            return moved;
        }
        let held =
            |m: &Message| m.copies.iter().any(|c| c.queue == UNREACHABLE && c.status == MessageStatus::Suspended);
        let mids: Vec<Mid> =
            self.unreachable.keys().copied().filter(|mid| !self.messages.get(mid).is_some_and(|m| held(m))).collect();
        for mid in &mids {
            self.unreachable.remove(mid);
        }
        for mid in mids {
            moved.records.extend(self.copy_to_submission(mid, UNREACHABLE, None));
            moved.mids.push(mid);
        }
        moved
    }

    /// Queues in Retry (not suspended) whose first failure since they last delivered is `max_idle` old at
    /// `now`: their waiting copies go back to Submission (`max_idle_time_before_resubmit`), to be categorized
    /// again, e.g. under routing that changed. The count restarts from now, so a queue whose copies come
    /// back to it is not resubmitted again before another `max_idle`.
    pub(crate) fn resubmit_stale(&mut self, now: Instant, max_idle: Duration) -> Moved {
        let mut moved = Moved::default();
        let stale: Vec<QueueId> = self
            .delivery
            .iter()
            .filter(|(_, q)| {
                !q.suspended && q.next_retry_ms.is_some() && q.first_retry_at.is_some_and(|t| t + max_idle <= now)
            })
            .map(|(id, _)| *id)
            .collect();
        for qid in stale {
            if let Some(q) = self.delivery.get_mut(&qid) {
                q.first_retry_at = Some(now);
            }
            self.waiting_to_submission(qid, &mut moved);
        }
        moved
    }

    /// Moves the copies of `qid` that wait (ready, or for their retry time) to Submission.
    fn waiting_to_submission(&mut self, qid: QueueId, moved: &mut Moved) {
        let Some(q) = self.delivery.get_mut(&qid) else { return };
        let mut mids: Vec<Mid> = q.ready.drain(..).collect();
        mids.extend(std::mem::take(&mut q.retry).into_iter().map(|(_, mid, _)| mid));
        q.retrying = 0;
        mids.sort_unstable();
        mids.dedup();
        for mid in mids {
            let waiting = self
                .messages
                .get(&mid)
                .and_then(|m| m.copies.iter().find(|c| c.queue == qid))
                .is_some_and(|c| !c.status.in_flight() && c.status != MessageStatus::Suspended);
            if !waiting {
                continue;
            }
            if let Some(q) = self.delivery.get_mut(&qid) {
                q.message_count = q.message_count.saturating_sub(1);
            }
            moved.records.extend(self.copy_to_submission(mid, qid, None));
            moved.mids.push(mid);
        }
    }

    /// The copy of `mid` in `from` becomes a Submission copy (merged with one already there), for
    /// `recipients` or all of its own, with no retry state (as the Route record leaves it in the database).
    fn copy_to_submission(&mut self, mid: Mid, from: QueueId, recipients: Option<&[u32]>) -> Option<Record> {
        let m = self.messages.get_mut(&mid)?;
        let c = m.copies.iter_mut().find(|c| c.queue == from)?;
        if let Some(r) = recipients {
            c.recipients = RecipientIndices::from_slice(r);
        }
        c.queue = SUBMISSION;
        c.status = MessageStatus::Active;
        c.retry_count = 0;
        c.next_retry_ms = 0;
        c.last_error = None;
        let record = Record::Route { mid, from, copies: vec![(SUBMISSION, c.recipients.to_vec())] };
        merge_submission_copies(&mut m.copies);
        self.count_flow(from, true, 1);
        self.count_flow(SUBMISSION, false, 1);
        Some(record)
    }

    // --- The timers: expiry, delay notices, idle queues ---

    /// Takes the copies of every message whose expiry time (`received_at + timeout`) is past at `now_ms`
    /// out of their queues, all at once so that the sender gets one notice: copies in a delivery queue,
    /// waiting or ready, and in Unreachable; a Poison copy never expires. While a copy of the message is
    /// being delivered, or in Submission, the message waits (looked at again every second): it expires when
    /// that attempt ends without success (the copy then waits again), or once the categorizer placed it.
    pub(crate) fn take_expired(&mut self, now_ms: i64, timeout: Duration) -> Vec<Expired> {
        let mut due: Vec<Mid> = std::mem::take(&mut self.expire_later);
        while let Some(&(received, mid)) = self.arrivals.front() {
            if !past(received, timeout, now_ms) {
                break;
            }
            self.arrivals.pop_front();
            self.delay_cursor = self.delay_cursor.saturating_sub(1);
            due.push(mid);
        }
        let mut out = Vec::new();
        for mid in due {
            let Some(m) = self.messages.get(&mid) else { continue };
            // A copy the categorizer has yet to place, or one being delivered, ends first; a suspended one
            // expires (Poison's never do).
            let waits =
                |c: &Copy| (c.queue == SUBMISSION && c.status != MessageStatus::Suspended) || c.status.in_flight();
            if m.copies.iter().any(waits) {
                self.expire_later.push(mid);
                continue;
            }
            let (envelope, body) = (m.envelope.clone(), m.body);
            let expiring: Vec<(QueueId, Vec<u32>)> =
                m.copies.iter().filter(|c| c.queue != POISON).map(|c| (c.queue, c.recipients.to_vec())).collect();
            for (qid, recipients) in &expiring {
                if let Some(q) = self.delivery.get(qid) {
                    q.host.count(0, recipients.len() as u64, 0);
                }
                self.take_waiting(mid, *qid);
                self.remove_copy(mid, *qid);
            }
            if !expiring.is_empty() {
                out.push(Expired { mid, envelope, body, copies: expiring });
            }
        }
        out
    }

    /// Takes a waiting copy of `mid` off `qid`'s lists and counters (a ready-list entry is left, to be
    /// skipped when reached).
    fn take_waiting(&mut self, mid: Mid, qid: QueueId) {
        match qid {
            UNREACHABLE => {
                self.unreachable.remove(&mid);
            }
            SUBMISSION => {
                if copy_in(&mut self.messages, mid, qid).is_some_and(|c| c.status == MessageStatus::Suspended) {
                    self.submission_held -= 1;
                }
            }
            POISON => self.poison = self.poison.saturating_sub(1),
            qid => {
                let status = copy_in(&mut self.messages, mid, qid).map(|c| c.status);
                if let Some(q) = self.delivery.get_mut(&qid) {
                    // Its retry entry stays until its time, and is then dropped.
                    match status {
                        Some(MessageStatus::Retry) => q.retrying -= 1,
                        Some(MessageStatus::Suspended) => q.held_copies -= 1,
                        _ => {}
                    }
                    q.message_count = q.message_count.saturating_sub(1);
                }
            }
        }
    }

    /// Every message whose delay notice is due at `now_ms` (`received_at + timeout` past, not sent before),
    /// with its recipients still undelivered (outside Poison). Each message is returned once: the scan
    /// moves on past it, whatever the caller does.
    pub(crate) fn take_delayed(&mut self, now_ms: i64, timeout: Duration) -> Vec<Delayed> {
        let mut out = Vec::new();
        while let Some(&(received, mid)) = self.arrivals.get(self.delay_cursor) {
            if !past(received, timeout, now_ms) {
                break;
            }
            self.delay_cursor += 1;
            if self.delay_notified.remove(&mid) {
                continue;
            }
            let Some(m) = self.messages.get(&mid) else { continue };
            let recipients: Vec<(u32, Option<SharedError>)> = m
                .copies
                .iter()
                .filter(|c| c.queue != POISON)
                .flat_map(|c| c.recipients.iter().map(|i| (*i, c.last_error.clone())))
                .collect();
            if !recipients.is_empty() {
                out.push(Delayed { mid, envelope: m.envelope.clone(), body: m.body, recipients });
            }
        }
        out
    }

    /// Drops the arrival entries of finished messages once they are more than half of the list, so that
    /// it stays within twice the messages queued (amortized: each entry is looked at a bounded number of
    /// times).
    pub(crate) fn compact_arrivals(&mut self) {
        if self.arrivals.len() <= 2 * self.messages.len() + 1024 {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.messages.len() + 1024);
        let mut cursor = 0;
        for (i, entry) in self.arrivals.drain(..).enumerate() {
            if self.messages.contains_key(&entry.1) {
                if i < self.delay_cursor {
                    cursor += 1;
                }
                kept.push_back(entry);
            }
        }
        self.arrivals = kept;
        self.delay_cursor = cursor;
    }

    /// Deletes the delivery queues that have been empty, with no worker, for `max_idle` at `now` (never a
    /// suspended one); a queue for the same key is made again when needed, with a new number. Returns the
    /// QueueDelete records.
    pub(crate) fn delete_idle(&mut self, now: Instant, max_idle: Duration) -> Vec<Record> {
        let mut deleted = Vec::new();
        for (qid, q) in self.delivery.iter_mut() {
            if q.suspended || !q.is_empty_and_idle() {
                q.idle_since = None;
                continue;
            }
            let since = *q.idle_since.get_or_insert(now);
            if since + max_idle <= now {
                deleted.push(*qid);
            }
        }
        let mut records = Vec::new();
        for qid in deleted {
            if let Some(q) = self.delivery.remove(&qid) {
                if self.keys.get(&q.key) == Some(&qid) {
                    self.keys.remove(&q.key);
                }
                records.push(Record::QueueDelete { id: qid });
            }
        }
        records
    }

    // --- Administrators' actions ---

    /// The copies of `mid` (all, or the one in `only`) with their statuses.
    pub(crate) fn copies_of(&self, mid: Mid, only: Option<QueueId>) -> Vec<(QueueId, MessageStatus)> {
        let Some(m) = self.messages.get(&mid) else { return Vec::new() };
        m.copies.iter().filter(|c| only.is_none_or(|q| q == c.queue)).map(|c| (c.queue, c.status)).collect()
    }

    /// Whether queue `qid` is suspended; `None` when there is no such queue. Poison is always suspended.
    pub(crate) fn queue_suspended(&self, qid: QueueId) -> Option<bool> {
        match qid {
            SUBMISSION => Some(self.submission_suspended),
            UNREACHABLE => Some(self.unreachable_suspended),
            POISON => Some(true),
            qid => self.delivery.get(&qid).map(|q| q.suspended),
        }
    }

    /// Suspends or resumes queue `qid` (Submission, Unreachable or a delivery queue; not Poison). Its
    /// copies keep their own statuses. Returns whether it changed.
    pub(crate) fn set_queue_suspended(&mut self, qid: QueueId, suspended: bool) -> bool {
        let flag = match qid {
            SUBMISSION => &mut self.submission_suspended,
            UNREACHABLE => &mut self.unreachable_suspended,
            POISON => return false,
            qid => match self.delivery.get_mut(&qid) {
                Some(q) => {
                    q.idle_since = None;
                    &mut q.suspended
                }
                None => return false,
            },
        };
        let changed = *flag != suspended;
        *flag = suspended;
        changed
    }

    /// Retry-Queue: the delivery queue `qid` leaves Retry now, and its copies waiting for their own retry
    /// time are ready. Returns false when nothing waits (the queue is not in Retry and no copy waits).
    pub(crate) fn retry_now(&mut self, qid: QueueId) -> bool {
        let Some(q) = self.delivery.get_mut(&qid) else { return false };
        if q.suspended || (q.next_retry_ms.is_none() && q.retrying == 0) {
            return false;
        }
        q.next_retry_ms = None;
        q.next_retry_at = None;
        for (_, mid, wall) in std::mem::take(&mut q.retry) {
            let Some(c) = copy_in(&mut self.messages, mid, qid) else { continue };
            if c.status != MessageStatus::Retry || c.next_retry_ms != wall {
                continue;
            }
            c.status = MessageStatus::Ready;
            q.retrying -= 1;
            q.ready.push_back(mid);
        }
        true
    }

    /// Retry-Queue with resubmit: the copies of `qid` (a delivery queue, suspended or not, or Unreachable)
    /// that wait go back to Submission, to be categorized again; suspended copies and those being delivered
    /// stay. Returns the Route records and the mids to put on Submission's list once they are handed to
    /// the writer.
    pub(crate) fn resubmit_queue(&mut self, qid: QueueId) -> Moved {
        if qid != UNREACHABLE {
            let mut moved = Moved::default();
            self.waiting_to_submission(qid, &mut moved);
            return moved;
        }
        let suspended = std::mem::replace(&mut self.unreachable_suspended, false);
        let moved = self.resubmit_unreachable();
        self.unreachable_suspended = suspended;
        moved
    }

    /// Suspend-Message on the copy of `mid` in `qid`. Returns its status after: Suspended, or
    /// PendingSuspend while it is being delivered (it is suspended if the attempt does not finish it);
    /// unchanged when already either, or PendingRemove. `None` when there is no such copy.
    pub(crate) fn suspend_copy(&mut self, mid: Mid, qid: QueueId) -> Option<MessageStatus> {
        let c = copy_in(&mut self.messages, mid, qid)?;
        let after = match (c.status, qid) {
            (MessageStatus::Suspended | MessageStatus::PendingSuspend | MessageStatus::PendingRemove, _) => {
                return Some(c.status);
            }
            // In Submission a copy is "Active" until the categorizer places it; it holds no worker.
            (_, SUBMISSION) => {
                self.submission_held += 1;
                MessageStatus::Suspended
            }
            (MessageStatus::Active, _) => MessageStatus::PendingSuspend,
            (was, qid) => {
                if let Some(q) = self.delivery.get_mut(&qid) {
                    if was == MessageStatus::Retry {
                        q.retrying -= 1;
                    }
                    q.held_copies += 1;
                }
                // Its entry in a ready or retry list stays, and is skipped when reached.
                MessageStatus::Suspended
            }
        };
        c.status = after;
        Some(after)
    }

    /// Resume-Message on a copy outside Poison: a suspended copy is ready again (at once, whatever retry
    /// time it had), a PendingSuspend one simply goes on being delivered. `Err` with the copy's status when
    /// it is not suspended (or there is no such copy: `None`). Returns whether a delivery queue is to be
    /// kicked.
    pub(crate) fn resume_copy(&mut self, mid: Mid, qid: QueueId) -> Result<bool, Option<MessageStatus>> {
        let c = copy_in(&mut self.messages, mid, qid).ok_or(None)?;
        match (c.status, qid) {
            (MessageStatus::PendingSuspend, _) => {
                c.status = MessageStatus::Active;
                Ok(false)
            }
            (MessageStatus::Suspended, POISON) => Err(Some(MessageStatus::Suspended)),
            (MessageStatus::Suspended, SUBMISSION) => {
                c.status = MessageStatus::Active;
                self.submission_held -= 1;
                self.submission.push_back(mid);
                Ok(false)
            }
            (MessageStatus::Suspended, UNREACHABLE) => {
                c.status = MessageStatus::Ready;
                Ok(false)
            }
            (MessageStatus::Suspended, qid) => {
                c.status = MessageStatus::Ready;
                c.next_retry_ms = 0;
                if let Some(q) = self.delivery.get_mut(&qid) {
                    q.held_copies -= 1;
                    q.ready.push_back(mid);
                }
                Ok(true)
            }
            (other, _) => Err(Some(other)),
        }
    }

    /// Remove-Message on the copy of `mid` in `qid`: a copy not being delivered is taken out of its queue
    /// now and returned (the caller tells the sender and records it done); one being delivered becomes
    /// PendingRemove, applied when its attempt ends without delivering it. `None` when there is no such
    /// copy.
    pub(crate) fn remove_copy_now(&mut self, mid: Mid, qid: QueueId, with_ndr: bool) -> Option<Removal> {
        let m = self.messages.get_mut(&mid)?;
        let c = m.copies.iter_mut().find(|c| c.queue == qid)?;
        if qid != SUBMISSION && c.status.in_flight() {
            c.status = MessageStatus::PendingRemove;
            self.pending_remove.insert((mid, qid), with_ndr);
            return Some(Removal::Pending);
        }
        let removed = Removal::Now { recipients: c.recipients.to_vec(), envelope: m.envelope.clone(), body: m.body };
        self.take_waiting(mid, qid);
        self.remove_copy(mid, qid);
        Some(removed)
    }

    /// What an administrator asked for the copy of `mid` in `qid` while it was being delivered, now that its
    /// attempt ended with recipients left: `None` when nothing (or the request was withdrawn by a resume).
    pub(crate) fn pending_action(&mut self, mid: Mid, qid: QueueId) -> Option<Pending> {
        let status = copy_in(&mut self.messages, mid, qid)?.status;
        let with_ndr = self.pending_remove.remove(&(mid, qid));
        match status {
            MessageStatus::PendingSuspend => Some(Pending::Suspend),
            MessageStatus::PendingRemove => Some(Pending::Remove { with_ndr: with_ndr.unwrap_or(true) }),
            _ => None,
        }
    }

    /// The active copy of `mid` in `qid`, suspended while it was being delivered, is Suspended now that its
    /// attempt ended, with `recipients` left, the attempt's count and error.
    pub(crate) fn suspend_active(&mut self, mid: Mid, qid: QueueId, recipients: &[u32], retry_count: u32, error: &str) {
        if let Some(c) = copy_in(&mut self.messages, mid, qid) {
            c.recipients = RecipientIndices::from_slice(recipients);
            mark_retry(c, retry_count, 0, error);
            c.status = MessageStatus::Suspended;
        }
        if let Some(q) = self.delivery.get_mut(&qid) {
            q.active -= 1;
            q.held_copies += 1;
        }
    }

    /// A recovered copy that was suspended (or is in Poison): counted in its queue, in no list.
    pub(crate) fn place_held(&mut self, mid: Mid, qid: QueueId) {
        match qid {
            SUBMISSION => self.submission_held += 1,
            UNREACHABLE => {
                self.unreachable.insert(mid, ());
            }
            POISON => self.poison += 1,
            qid => {
                if let Some(q) = self.delivery.get_mut(&qid) {
                    q.message_count += 1;
                    q.held_copies += 1;
                    q.idle_since = None;
                }
            }
        }
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

    pub(crate) fn message(&self, mid: Mid) -> Option<&Message> {
        self.messages.get(&mid).map(|m| &**m)
    }

    pub(crate) fn delivery_queue(&self, qid: QueueId) -> Option<&DeliveryQueue> {
        self.delivery.get(&qid)
    }

    /// The delivery queues, by id.
    pub(crate) fn delivery_queues(&self) -> impl Iterator<Item = (QueueId, &DeliveryQueue)> {
        self.delivery.iter().map(|(id, q)| (*id, q))
    }

    /// The outcome counters of the next hop domains.
    pub(crate) fn hosts(&self) -> &HostIndex {
        &self.hosts
    }

    /// Gives the queues the cluster's hooks (at start): each message finally disposed of is reported.
    pub(crate) fn set_cluster(&mut self, cluster: Option<Arc<dyn crate::cluster::ClusterHooks>>) {
        self.cluster = cluster.filter(|c| c.shadows());
    }

    /// The next-hop domain of delivery queue `qid`.
    pub(crate) fn next_hop_domain(&self, qid: QueueId) -> Option<String> {
        self.delivery.get(&qid).map(|q| q.key().next_hop_domain.clone())
    }

    pub(crate) fn delivery_ids(&self) -> Vec<QueueId> {
        self.delivery.keys().copied().collect()
    }

    /// Submission's copies: those waiting for the categorizer (an entry listed twice counts twice) and
    /// those suspended.
    pub(crate) fn submission_len(&self) -> usize {
        self.submission.len() + self.submission_held
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

    pub(crate) fn poison_len(&self) -> usize {
        self.poison
    }

    /// The rates of queue `qid` now (zero for a queue that does not exist).
    pub(crate) fn rates(&self, qid: QueueId) -> Rates {
        let now = flow::bucket(self.started, Instant::now());
        match qid {
            SUBMISSION | UNREACHABLE | POISON => self.flows[qid as usize].rates(now),
            qid => self.delivery.get(&qid).map_or_else(Rates::default, |q| q.flow.rates(now)),
        }
    }

    /// The copies of each queue whose priority is High, and those whose priority is Low (the others are
    /// Normal), for the queues that have any.
    pub(crate) fn priority_counts(&self) -> HashMap<QueueId, [u64; 2]> {
        let mut counts: HashMap<QueueId, [u64; 2]> = HashMap::new();
        for mid in &self.prioritized {
            let Some(m) = self.messages.get(mid) else { continue };
            let low = usize::from(m.envelope.priority() == Priority::Low);
            for c in &m.copies {
                counts.entry(c.queue).or_default()[low] += 1;
            }
        }
        counts
    }

    /// Counts a copy entering (`out` false) or leaving queue `qid`, for its rates. Recovery places copies
    /// without counting them: a restart is not traffic.
    fn count_flow(&mut self, qid: QueueId, out: bool, n: u32) {
        let at = flow::bucket(self.started, Instant::now());
        match qid {
            SUBMISSION | UNREACHABLE | POISON => self.flows[qid as usize].record(at, out, n),
            qid => {
                if let Some(q) = self.delivery.get_mut(&qid) {
                    q.flow.record(at, out, n);
                }
            }
        }
    }

    /// Removes the copy of `mid` in `queue`; the message goes when its last copy does.
    fn remove_copy(&mut self, mid: Mid, queue: QueueId) {
        if let Some(m) = self.messages.get_mut(&mid) {
            m.copies.retain(|c| c.queue != queue);
            if m.copies.is_empty() {
                self.messages.remove(&mid);
                if let Some(cluster) = &self.cluster {
                    cluster.disposed(mid);
                }
                if !self.prioritized.is_empty() {
                    self.prioritized.remove(&mid);
                }
                if !self.suspects.is_empty() {
                    self.set_suspect(mid, None);
                }
            }
            self.count_flow(queue, true, 1);
        }
    }
}

/// What Remove-Message did to a copy.
pub(crate) enum Removal {
    /// Taken out of its queue: the caller tells the sender (if asked) and records the copy done.
    Now { recipients: Vec<u32>, envelope: Arc<Envelope>, body: BodyRef },
    /// Being delivered: removed when the attempt ends, unless it delivers the copy.
    Pending,
}

/// An administrator's request waiting for a copy's attempt to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pending {
    Suspend,
    Remove { with_ndr: bool },
}

/// Copies moved back to Submission: their Route records, and the mids to put on Submission's list once the
/// records were handed to the writer (so that the categorizer's Route never reaches the log before them).
#[derive(Debug, Default)]
pub(crate) struct Moved {
    pub(crate) records: Vec<Record>,
    pub(crate) mids: Vec<Mid>,
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

    fn message(received_at_ms: i64, queue: QueueId) -> Message {
        let envelope = Envelope::from(sluice_queue_db::EnvelopeParts {
            from: "a@b.test".into(),
            recipients: vec![sluice_queue_db::Recipient { address: "c@d.test".into(), notify: None, orcpt: None }],
            received_at_ms,
            ..sluice_queue_db::EnvelopeParts::default()
        });
        Message {
            envelope: Arc::new(envelope),
            body: BodyRef { generation: 1, offset: 0, len: 1, crc: 0 },
            copies: smallvec::smallvec![Copy {
                queue,
                recipients: smallvec::smallvec![0],
                status: MessageStatus::Ready,
                retry_count: 0,
                next_retry_ms: 0,
                last_error: None,
                scan: Scan::NONE,
            }],
        }
    }

    #[test]
    fn the_delay_scan_reaches_each_message_once_also_across_a_compaction() {
        let mut qs = Queues::new();
        for mid in 1..=3000u64 {
            qs.insert_message(mid, message(mid as i64, UNREACHABLE));
            qs.place(mid, UNREACHABLE, None);
        }
        qs.set_delay_notified([7]);
        let due: Vec<Mid> = qs.take_delayed(1000, Duration::ZERO).iter().map(|d| d.mid).collect();
        assert_eq!(due.len(), 999, "1..=1000 but 7, notified before a restart");
        assert!(!due.contains(&7));
        // Most messages finish; their entries are dropped in bulk, and the scan goes on where it was.
        for mid in (1..=3000u64).filter(|m| m % 10 != 0) {
            qs.remove_copy(mid, UNREACHABLE);
        }
        qs.compact_arrivals();
        assert_eq!(qs.arrivals.len(), 300);
        assert_eq!(qs.delay_cursor, 100);
        let due: Vec<Mid> = qs.take_delayed(2000, Duration::ZERO).iter().map(|d| d.mid).collect();
        assert_eq!(due, (1010..=2000).step_by(10).collect::<Vec<_>>());
        // Expiry pops the front, the delay scan's cursor moving with it.
        let expired: Vec<Mid> = qs.take_expired(1500, Duration::ZERO).iter().map(|e| e.mid).collect();
        assert_eq!(expired, (10..=1500).step_by(10).collect::<Vec<_>>());
        assert_eq!(qs.delay_cursor, 50);
        assert_eq!(qs.message_count(), 150);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_entry_whose_copy_expired_is_dropped_when_due() {
        let mut qs = Queues::new();
        let key = NextHopSolutionKey {
            delivery_type: DeliveryType::SmtpDeliveryToMailbox,
            next_hop_domain: "store".into(),
            next_hop_connector: "g-store".into(),
        };
        let (qid, _) = qs.queue_for(key, Target::Lmtp { address: "127.0.0.1:24".into() });
        let now = sluice_queue_db::now_ms();
        // Message 1 was received long ago, message 2 just now; both wait a minute for their retry.
        for (mid, received) in [(1, 0), (2, now)] {
            qs.insert_message(mid, message(received, qid));
            qs.place(mid, qid, None);
            let (job, _) = qs.take_ready(qid).unwrap();
            assert_eq!(job.mid, mid);
            qs.defer_copy(mid, qid, None, 1, now + 60_000, "451 4.3.0 later");
        }
        let q = qs.delivery_queue(qid).unwrap();
        assert_eq!((q.deferred_count(), q.message_count()), (2, 2));
        let expired = qs.take_expired(now - 1, Duration::ZERO);
        assert_eq!(expired.iter().map(|e| e.mid).collect::<Vec<_>>(), [1]);
        let q = qs.delivery_queue(qid).unwrap();
        assert_eq!((q.deferred_count(), q.message_count()), (1, 1));
        assert!(qs.release_due(Instant::now()).is_empty(), "nothing is due yet");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert_eq!(qs.release_due(Instant::now()), [qid], "only the copy still there");
        let (job, _) = qs.take_ready(qid).unwrap();
        assert_eq!(job.mid, 2);
        assert!(qs.take_ready(qid).is_none());
        assert_eq!(qs.delivery_queue(qid).unwrap().deferred_count(), 0);
    }

    #[test]
    fn poison_copies_are_counted_and_never_expire() {
        let mut qs = Queues::new();
        qs.insert_message(1, message(0, POISON));
        qs.place(1, POISON, None);
        assert_eq!(qs.poison_len(), 1);
        assert!(qs.take_expired(i64::MAX, Duration::ZERO).is_empty());
        assert!(qs.take_delayed(i64::MAX, Duration::ZERO).is_empty(), "no delay notice for a Poison copy");
        assert_eq!(qs.message_count(), 1);
    }

    #[test]
    fn a_copy_moved_to_poison_leaves_its_queues_counters_and_a_resume_makes_it_a_suspect_in_submission() {
        let mut qs = Queues::new();
        let key = NextHopSolutionKey {
            delivery_type: DeliveryType::SmartHostConnectorDelivery,
            next_hop_domain: "relay".into(),
            next_hop_connector: "g-relay".into(),
        };
        let (qid, _) = qs.queue_for(key, Target::Lmtp { address: "127.0.0.1:24".into() });
        for mid in [1, 2] {
            qs.insert_message(mid, message(0, qid));
            qs.place(mid, qid, None);
        }
        qs.set_suspect(1, Some(1));
        assert_eq!(qs.suspect_count().load(std::sync::atomic::Ordering::SeqCst), 1);
        // Message 1's attempt panicked: its copy is active when it moves.
        let (job, _) = qs.take_ready(qid).unwrap();
        assert!(job.mid == 1 && job.suspect);
        let records = qs.move_to_poison(1, qid).unwrap();
        assert!(matches!(records[0], Record::Route { mid: 1, from, .. } if from == qid));
        assert!(matches!(records[1], Record::MessageSuspend { mid: 1, queue: POISON, suspended: true }));
        // Message 2 was waiting (blamed at start).
        qs.move_to_poison(2, qid).unwrap();
        let q = qs.delivery_queue(qid).unwrap();
        assert_eq!((q.active, q.message_count), (0, 0));
        assert!(qs.take_ready(qid).is_none(), "nothing is left to deliver");
        assert_eq!(qs.poison_len(), 2);
        assert_eq!(qs.suspect(1), None, "a message in Poison is no suspect");
        assert_eq!(qs.suspect_count().load(std::sync::atomic::Ordering::SeqCst), 0);
        let c = &qs.messages[&1].copies[0];
        assert_eq!((c.queue, c.status), (POISON, MessageStatus::Suspended));
        assert!(qs.take_expired(i64::MAX, Duration::ZERO).is_empty());

        let route = qs.poison_to_submission(1).unwrap();
        assert!(matches!(route, Record::Route { mid: 1, from: POISON, .. }));
        assert!(qs.poison_to_submission(1).is_none(), "only a Poison copy is resumed");
        assert_eq!(qs.poison_len(), 1);
        assert_eq!(qs.suspect(1), Some(0), "resumed: processed alone, with a count of 0");
        qs.push_submission([1]);
        let taken = qs.take_submission(10);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, 1);
    }

    /// A million queued messages cost a million of these (B4 in docs/benchmarks.md): 112 bytes is a mimalloc
    /// size class, and one byte more moves every message to the next. (96 before the verdicts kept the rules
    /// that hit: a shared pointer, and the padding around it.)
    #[test]
    fn a_queued_message_stays_small() {
        assert_eq!(size_of::<Copy>(), 72);
        assert_eq!(size_of::<Message>(), 112);
    }
}
