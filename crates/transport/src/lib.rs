//! sluice's queues. A message enters the Submission queue durably ([`Transport::submit`]), the categorizer
//! routes its recipients to delivery queues (one per NextHopSolutionKey) or to Unreachable, and delivery
//! workers hand copies to a [`DeliveryAgent`] and record the outcome. Every move between queues is a
//! transaction in the queue database.
//!
//! **API boundary**: this crate knows nothing about HTTP or the CLI; it returns the admin API's JSON types
//! (`sluice-api-types`) for listings because those are plain data.

pub mod alerts;
mod categorizer;
mod delivery;
pub mod pressure;
mod queue;
mod routing;
mod tracking;

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use sluice_api_types as api;
use sluice_queue_db::time::rfc3339;
use sluice_queue_db::{
    CommitError, Envelope, FIRST_DELIVERY_QUEUE, Mid, POISON, QueueDb, QueueId, Record, SUBMISSION, State, UNREACHABLE,
};
use smallvec::SmallVec;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use alerts::{AlertClass, Alerts, Severity};
pub use delivery::{
    BoxFuture, DeliveryAgent, DeliveryConnection, DeliveryError, Opening, Outbound, RecipientOutcome, reply_line,
};
pub use queue::{DeliveryType, MessageStatus, NextHopSolutionKey, QueueStatus};
pub use routing::{AcceptedDomain, Limits, MailboxStore, Route, Routing, SendConnector, StoreKind, Target};
pub use tracking::{Event, Tracking};

use queue::{Copy, Message, Queues};

/// A queue identity that names no queue.
#[derive(Debug, thiserror::Error)]
#[error("no queue {0}")]
pub struct NoSuchQueue(pub String);

pub(crate) struct Inner {
    db: QueueDb,
    queues: Mutex<Queues>,
    routing: RwLock<Arc<Routing>>,
    tracking: Tracking,
    agent: Arc<dyn DeliveryAgent>,
    categorizer_wake: Notify,
    server_name: String,
    alerts: Alerts,
    pressure: pressure::BackPressure,
    thresholds: RwLock<pressure::Thresholds>,
    /// When receive last looked at the free space itself (ms since `started`).
    disk_looked: std::sync::atomic::AtomicU64,
    /// The back pressure level last alerted.
    alerted: std::sync::Mutex<pressure::Level>,
    started: std::time::Instant,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Queues> {
        // The lock is never held across an await or a call that can panic halfway through an update.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routing(&self) -> Arc<Routing> {
        self.routing.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn queue_identity(&self, qid: QueueId) -> String {
        let name = match qid {
            SUBMISSION => "Submission".to_owned(),
            UNREACHABLE => "Unreachable".to_owned(),
            POISON => "Poison".to_owned(),
            n => n.to_string(),
        };
        format!("{}\\{name}", self.server_name)
    }

    fn event(&self, event_id: &'static str, mid: Mid, env: &Envelope) -> Event {
        let mut ev = Event::new(event_id, mid);
        env.from_address().clone_into(&mut ev.sender);
        ev.internet_message_id = env.internet_message_id().map(str::to_owned);
        ev
    }
}

/// The queues of one server. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

/// Recovered queues, from [`Transport::load`], for [`Transport::start`].
pub struct Loaded {
    qs: Queues,
    /// Route records for copies whose delivery queue is gone (back to Submission).
    resubmit: Vec<Record>,
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
        let now = sluice_queue_db::now_ms();
        for (&mid, m) in &state.messages {
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
                copies.push(Copy {
                    queue,
                    recipients: c.recipients.clone(),
                    status: if waiting { MessageStatus::Retry } else { MessageStatus::Ready },
                    retry_count: c.retry_count,
                    next_retry_ms: c.next_retry_ms,
                    last_error: c.last_error.clone(),
                });
            }
            // Two copies that both fell back to Submission become one with all their recipients.
            queue::merge_submission_copies(&mut copies);
            for c in &copies {
                qs.place(mid, c.queue, Some(c.next_retry_ms).filter(|ms| *ms > now));
            }
            qs.insert_message(mid, Message { envelope: m.envelope.clone(), body: m.body, copies });
        }
        Loaded { qs, resubmit }
    }

    /// Starts the categorizer, the retry timer and delivery on the queues [`Transport::load`] made.
    pub fn start(
        db: QueueDb,
        loaded: Loaded,
        routing: Routing,
        agent: Arc<dyn DeliveryAgent>,
        tracking: Tracking,
        server_name: String,
        alerts: Alerts,
    ) -> Transport {
        let Loaded { qs, resubmit } = loaded;
        let inner = Arc::new(Inner {
            db,
            queues: Mutex::new(qs),
            routing: RwLock::new(Arc::new(routing)),
            tracking,
            agent,
            categorizer_wake: Notify::new(),
            server_name,
            alerts,
            pressure: pressure::BackPressure::default(),
            thresholds: RwLock::new(pressure::Thresholds::default()),
            disk_looked: std::sync::atomic::AtomicU64::new(0),
            alerted: std::sync::Mutex::new(pressure::Level::Normal),
            started: std::time::Instant::now(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        });
        let t = Transport { inner };
        let inner = t.inner.clone();
        t.inner.tasks.spawn(async move {
            if !resubmit.is_empty() {
                let _ = inner.db.record(resubmit).await;
            }
            categorizer::run(inner).await
        });
        let inner = t.inner.clone();
        t.inner.tasks.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => delivery::release_due(&inner),
                    _ = inner.shutdown.cancelled() => return,
                }
            }
        });
        let inner = t.inner.clone();
        t.inner.tasks.spawn(watch_pressure(inner));
        let ids: Vec<QueueId> = t.inner.lock().delivery_ids();
        for qid in ids {
            delivery::kick(&t.inner, qid);
        }
        t.inner.categorizer_wake.notify_one();
        t
    }

    /// A new MID, for the `Received:` header written before the message is stored.
    pub fn allocate_mid(&self) -> Mid {
        self.inner.db.allocate_mid()
    }

    /// The alerts of this server.
    pub fn alerts(&self) -> &Alerts {
        &self.inner.alerts
    }

    /// False when mail cannot be taken in: the queue database stopped committing, or back pressure is High.
    pub fn healthy(&self) -> bool {
        !self.inner.db.stopped() && self.inner.pressure.level() < pressure::Level::High
    }

    /// The back pressure level now: what new mail is refused. A fast intake can fill a disk between two
    /// checks of the monitor, so this also looks at the free space itself, at most every 10 ms, and raises
    /// (never lowers: that is the monitor's, with its hysteresis) the disk's level at once.
    pub fn back_pressure(&self) -> pressure::Level {
        use std::sync::atomic::Ordering::Relaxed;
        let level = self.inner.pressure.level();
        if level == pressure::Level::High {
            return level;
        }
        let now = self.inner.started.elapsed().as_millis() as u64;
        let last = self.inner.disk_looked.load(Relaxed);
        if now >= last + 10
            && self.inner.disk_looked.compare_exchange(last, now, Relaxed, Relaxed).is_ok()
            && let Ok(free) = self.inner.db.free_space()
        {
            let t = *self.inner.thresholds.read().unwrap_or_else(|e| e.into_inner());
            let was = self.inner.pressure.of(pressure::Resource::Disk);
            let disk = pressure::falling(was, free, t.disk_free_medium, t.disk_free_high, t.disk_free_normal);
            if disk > was {
                self.inner.pressure.set(pressure::Resource::Disk, disk);
                alert_level(&self.inner, &[format!("{} MB free for the queue database", free / 1_000_000)]);
                // The Safety Net makes room at once rather than at the monitor's next check.
                if let Some(want) = eviction_target(&t, was, free, false) {
                    let inner = self.inner.clone();
                    tokio::spawn(async move { evict_safety_net(&inner, want).await });
                }
            }
        }
        self.inner.pressure.level()
    }

    /// The `[back_pressure]` thresholds (at start and on reload).
    pub fn set_back_pressure_thresholds(&self, t: pressure::Thresholds) {
        *self.inner.thresholds.write().unwrap_or_else(|e| e.into_inner()) = t;
    }

    /// The queue database's file system is full: a commit, or a message's spool file on it, met ENOSPC or
    /// EDQUOT. New mail is refused at once (disk level High, a Critical alert); the monitor lowers the level
    /// again once the database has found room for its reserve files and a margin.
    pub fn disk_is_full(&self) {
        self.inner.db.note_disk_full();
        let (before, _) = self.inner.pressure.set(pressure::Resource::Disk, pressure::Level::High);
        if before != pressure::Level::High {
            disk_full_alert(&self.inner);
        }
    }

    /// Stores a received message in Submission. Returns once it is durable: only then may the client be
    /// told `250`.
    pub async fn submit(
        &self,
        mid: Mid,
        envelope: Envelope,
        body: impl Into<sluice_queue_db::Body>,
    ) -> Result<(), CommitError> {
        let body = body.into();
        let size = body.len();
        // One envelope, shared by the queue database's state and the queues.
        let envelope = Arc::new(envelope);
        let body_ref = match self.inner.db.enqueue(mid, SUBMISSION, envelope.clone(), body).await {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, CommitError::DiskFull) {
                    self.disk_is_full();
                }
                if let CommitError::Failed(why) = &e {
                    self.inner.alerts.raise_keyed(
                        "queue-database-failed",
                        AlertClass::System,
                        Severity::Critical,
                        format!(
                            "the queue database stopped committing; mail is refused with 451 until a restart: {why}"
                        ),
                    );
                }
                return Err(e);
            }
        };
        for event_id in [tracking::EventId::Receive, tracking::EventId::Submit] {
            let mut ev = self.inner.event(event_id.as_str(), mid, &envelope);
            ev.recipients = envelope.recipients().map(|r| r.address.to_owned()).collect();
            ev.source = Some(envelope.source_name().to_owned());
            if event_id == tracking::EventId::Receive {
                ev.source_ip = Some(envelope.source_ip().to_owned()).filter(|s| !s.is_empty());
                ev.reply = Some(format!("250 2.0.0 Ok: queued as {mid} ({size} bytes)"));
            } else {
                ev.queue = Some(self.inner.queue_identity(SUBMISSION));
            }
            self.inner.tracking.log(ev);
        }
        let recipients = (0..envelope.recipient_count() as u32).collect();
        self.inner.lock().submit(
            mid,
            Message {
                envelope,
                body: body_ref,
                copies: smallvec::smallvec![Copy {
                    queue: SUBMISSION,
                    recipients,
                    status: MessageStatus::Active,
                    retry_count: 0,
                    next_retry_ms: 0,
                    last_error: None,
                }],
            },
        );
        self.inner.categorizer_wake.notify_one();
        Ok(())
    }

    /// Is `domain` one of the accepted domains?
    pub fn is_accepted_domain(&self, domain: &str) -> bool {
        self.inner.routing().is_accepted(domain)
    }

    /// Replaces the routing table (configuration reload): new work uses it at once. Delivery queues whose
    /// connector or store changed get the new target; Unreachable is resubmitted unless suspended.
    pub async fn set_routing(&self, routing: Routing) {
        let records = {
            let mut qs = self.inner.lock();
            qs.retarget(|key| routing.target_for(key));
            qs.resubmit_unreachable()
        };
        *self.inner.routing.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routing);
        if !records.is_empty() {
            let _ = self.inner.db.record(records).await;
        }
        self.inner.categorizer_wake.notify_one();
        let ids: Vec<QueueId> = self.inner.lock().delivery_ids();
        for qid in ids {
            delivery::kick(&self.inner, qid);
        }
    }

    /// The queues, as Get-Queue lists them: Submission, the delivery queues, and Unreachable and Poison
    /// when they are not empty.
    pub fn queues(&self) -> Vec<api::Queue> {
        let qs = self.inner.lock();
        let mut out = vec![self.persistent_queue(&qs, SUBMISSION)];
        for (id, q) in qs.delivery_queues() {
            let key = q.key();
            out.push(api::Queue {
                identity: self.inner.queue_identity(id),
                delivery_type: key.delivery_type.as_str().to_owned(),
                next_hop_domain: key.next_hop_domain.clone(),
                next_hop_connector: key.next_hop_connector.clone(),
                next_hop_category: key.delivery_type.category().to_owned(),
                status: q.status().as_str().to_owned(),
                message_count: q.message_count() as u64,
                deferred_message_count: q.deferred_count() as u64,
                locked_message_count: 0,
                retry_count: q.retry_count(),
                last_error: q.last_error().map(str::to_owned),
                first_retry_time: q.first_retry_ms().map(rfc3339),
                last_retry_time: q.last_retry_ms().map(rfc3339),
                next_retry_time: q.next_retry_ms().map(rfc3339),
            });
        }
        for id in [UNREACHABLE, POISON] {
            let q = self.persistent_queue(&qs, id);
            if q.message_count > 0 {
                out.push(q);
            }
        }
        out
    }

    /// One queue by identity (`Submission`, `<server>\3`, `mx1/Unreachable`, ...).
    pub fn queue(&self, identity: &str) -> Result<api::Queue, NoSuchQueue> {
        let qid = self.parse_queue(identity)?;
        let name = self.inner.queue_identity(qid);
        if matches!(qid, SUBMISSION | UNREACHABLE | POISON) {
            return Ok(self.persistent_queue(&self.inner.lock(), qid));
        }
        self.queues().into_iter().find(|q| q.identity == name).ok_or_else(|| NoSuchQueue(identity.to_owned()))
    }

    fn persistent_queue(&self, qs: &Queues, id: QueueId) -> api::Queue {
        let (delivery_type, domain, count, suspended) = match id {
            SUBMISSION => ("Undefined", "Submission", qs.submission_len(), qs.submission_suspended()),
            UNREACHABLE => ("Unreachable", "Unreachable Domain", qs.unreachable_len(), qs.unreachable_suspended()),
            _ => ("Undefined", "Poison Message", 0, false),
        };
        api::Queue {
            identity: self.inner.queue_identity(id),
            delivery_type: delivery_type.to_owned(),
            next_hop_domain: domain.to_owned(),
            next_hop_connector: String::new(),
            next_hop_category: "Internal".to_owned(),
            status: if suspended {
                "Suspended"
            } else if count > 0 {
                "Active"
            } else {
                "Ready"
            }
            .to_owned(),
            message_count: count as u64,
            deferred_message_count: if id == POISON { count as u64 } else { 0 },
            locked_message_count: 0,
            retry_count: 0,
            last_error: None,
            first_retry_time: None,
            last_retry_time: None,
            next_retry_time: None,
        }
    }

    /// Resolves a queue identity: the full `<server>\<queue>`, `<server>/<queue>` or just `<queue>`.
    pub fn parse_queue(&self, identity: &str) -> Result<QueueId, NoSuchQueue> {
        let not_found = || NoSuchQueue(identity.to_owned());
        let s = identity.replace('/', "\\");
        let local = match s.split_once('\\') {
            Some((server, rest)) if server.eq_ignore_ascii_case(&self.inner.server_name) => rest.to_owned(),
            Some(_) => return Err(not_found()),
            None => s,
        };
        let qid = match local.to_ascii_lowercase().as_str() {
            "submission" => SUBMISSION,
            "unreachable" => UNREACHABLE,
            "poison" => POISON,
            n => n.parse::<QueueId>().ok().filter(|n| *n >= FIRST_DELIVERY_QUEUE).ok_or_else(not_found)?,
        };
        if qid >= FIRST_DELIVERY_QUEUE && self.inner.lock().delivery_queue(qid).is_none() {
            return Err(not_found());
        }
        Ok(qid)
    }

    /// Message copies, in one queue or in all, oldest MID first.
    pub fn messages(&self, queue: Option<&str>, include_recipients: bool) -> Result<Vec<api::Message>, NoSuchQueue> {
        let only = queue.map(|q| self.parse_queue(q)).transpose()?;
        let qs = self.inner.lock();
        let mut messages: Vec<(&Mid, &Message)> = qs.messages().collect();
        messages.sort_unstable_by_key(|(mid, _)| **mid);
        let mut out = Vec::new();
        for (mid, m) in messages {
            for c in &m.copies {
                if only.is_some_and(|q| q != c.queue) {
                    continue;
                }
                let queue_retrying = qs.delivery_queue(c.queue).is_some_and(|q| q.held());
                let status =
                    if c.status == MessageStatus::Ready && queue_retrying { MessageStatus::Retry } else { c.status };
                let queue_identity = self.inner.queue_identity(c.queue);
                let next_hop = qs.delivery_queue(c.queue).map_or_else(String::new, |q| q.key().next_hop_domain.clone());
                out.push(api::Message {
                    identity: format!("{queue_identity}\\{mid}"),
                    mid: *mid,
                    queue: queue_identity,
                    status: status.as_str().to_owned(),
                    from_address: m.envelope.from_address().to_owned(),
                    internet_message_id: m.envelope.internet_message_id().map(str::to_owned),
                    subject: m.envelope.subject().map(str::to_owned),
                    size: m.body.len,
                    date_received: rfc3339(m.envelope.received_at_ms),
                    source_ip: m.envelope.source_ip().to_owned(),
                    message_source_name: m.envelope.source_name().to_owned(),
                    last_error: c.last_error.as_deref().cloned(),
                    retry_count: c.retry_count,
                    recipients: include_recipients.then(|| {
                        c.recipients
                            .iter()
                            .filter_map(|i| m.envelope.recipient(*i as usize))
                            .map(|r| api::Recipient {
                                address: r.address.to_owned(),
                                status: status.as_str().to_owned(),
                                last_error: c.last_error.as_deref().cloned(),
                                retry_count: c.retry_count,
                                next_hop: next_hop.clone(),
                            })
                            .collect()
                    }),
                });
            }
        }
        Ok(out)
    }

    /// Runs online defragmentation of the queue database for at most `time_to_run`.
    pub async fn defrag(&self, time_to_run: Duration) -> Result<sluice_queue_db::DefragReport, CommitError> {
        self.inner.db.defrag(time_to_run).await
    }

    /// Stops the categorizer and delivery at a safe point, then closes the database.
    pub async fn shutdown(&self) {
        self.inner.shutdown.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
        self.inner.db.close().await;
        self.inner.tracking.flush();
    }
}

fn disk_full_alert(inner: &Inner) {
    inner.alerts.raise_keyed(
        "queue-database-disk-full",
        AlertClass::Hardware,
        Severity::Critical,
        "the queue database's disk is full: a reserve file was released, in-flight commits finish, new mail \
         gets 452 4.3.1 until space returns",
    );
}

/// How much free space the Safety Net should make room for now, if any: under disk pressure (free space
/// below the Normal mark, or a level above Normal) up to that mark; on a full disk, all of it.
fn eviction_target(t: &pressure::Thresholds, level: pressure::Level, free: u64, disk_full: bool) -> Option<u64> {
    if disk_full {
        Some(u64::MAX)
    } else if free < t.disk_free_normal || level > pressure::Level::Normal {
        Some(t.disk_free_normal.max(t.disk_free_medium).max(t.disk_free_high))
    } else {
        None
    }
}

/// Drops Safety Net copies until `want` bytes are free, with a Warning alert saying what the Safety Net
/// still covers.
async fn evict_safety_net(inner: &Inner, want: u64) {
    let Ok(ev) = inner.db.evict_safety_net(want).await else { return };
    if ev.generations == 0 {
        return;
    }
    let holds = if ev.empty {
        "the Safety Net is now empty".to_owned()
    } else {
        format!("Safety Net now holds copies delivered since {}", rfc3339(ev.held_since))
    };
    inner.alerts.raise_keyed(
        "safety-net-evicted",
        AlertClass::BackPressure,
        Severity::Warning,
        format!(
            "disk pressure: {} Safety Net generations ({} MB) removed before their hold ended; {holds}",
            ev.generations,
            ev.bytes.div_ceil(1_000_000)
        ),
    );
}

/// Checks the back pressure resources every `check_interval` and alerts on every change of level.
async fn watch_pressure(inner: Arc<Inner>) {
    use pressure::{Level, Resource, falling, rising};
    loop {
        let interval = inner.thresholds.read().unwrap_or_else(|e| e.into_inner()).check_interval;
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = inner.shutdown.cancelled() => return,
        }
        let t = *inner.thresholds.read().unwrap_or_else(|e| e.into_inner());
        let mut reasons = Vec::new();
        // Disk: the Safety Net gives way before the level rises.
        let was = inner.pressure.of(Resource::Disk);
        let mut disk = match inner.db.free_space() {
            Ok(mut free) => {
                if let Some(want) = eviction_target(&t, was, free, inner.db.disk_full()) {
                    evict_safety_net(&inner, want).await;
                    free = inner.db.free_space().unwrap_or(free);
                }
                let level = falling(was, free, t.disk_free_medium, t.disk_free_high, t.disk_free_normal);
                if level > Level::Normal {
                    reasons.push(format!("{} MB free for the queue database", free / 1_000_000));
                }
                level
            }
            Err(_) => was,
        };
        if inner.db.disk_full() {
            if was != Level::High {
                disk_full_alert(&inner);
            }
            disk = Level::High;
            reasons.push("the queue database's disk is full".to_owned());
        }
        let mem_was = inner.pressure.of(Resource::Memory);
        let memory = match pressure::memory_percent() {
            Some(p) => {
                let l = rising(
                    mem_was,
                    p,
                    t.memory_medium_percent.into(),
                    t.memory_high_percent.into(),
                    t.memory_normal_percent.into(),
                );
                if l > Level::Normal {
                    reasons.push(format!("resident memory at {p}% of physical memory"));
                }
                l
            }
            None => mem_was,
        };
        let submission_len = inner.lock().submission_len() as u64;
        let submission = rising(
            inner.pressure.of(Resource::Submission),
            submission_len,
            t.submission_queue_medium,
            t.submission_queue_high,
            t.submission_queue_normal,
        );
        if submission > Level::Normal {
            reasons.push(format!("{submission_len} messages in Submission"));
        }
        inner.pressure.set(Resource::Disk, disk);
        inner.pressure.set(Resource::Memory, memory);
        inner.pressure.set(Resource::Submission, submission);
        alert_level(&inner, &reasons);
    }
}

/// Alerts when the overall back pressure level differs from the one last alerted.
fn alert_level(inner: &Inner, reasons: &[String]) {
    use pressure::Level;
    let now = inner.pressure.level();
    let before = {
        let mut alerted = inner.alerted.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::replace(&mut *alerted, now)
    };
    if before == now {
        return;
    }
    let (severity, what) = match now {
        Level::High => (Severity::Critical, "all new mail gets 452 4.3.1"),
        Level::Medium => (Severity::Warning, "new mail from outside relay_networks gets 452 4.3.1"),
        Level::Normal => (Severity::Information, "new mail is accepted again"),
    };
    let why = if reasons.is_empty() { String::new() } else { format!(" ({})", reasons.join("; ")) };
    inner.alerts.raise(
        AlertClass::BackPressure,
        severity,
        format!("back pressure {} -> {}: {what}{why}", before.as_str(), now.as_str()),
    );
}
