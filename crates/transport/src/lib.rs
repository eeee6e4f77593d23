//! sluice's queues. A message enters the Submission queue durably ([`Transport::submit`]), the categorizer
//! routes its recipients to delivery queues (one per NextHopSolutionKey) or to Unreachable, and delivery
//! workers hand copies to a [`DeliveryAgent`] and record the outcome. Every move between queues is a
//! transaction in the queue database.
//!
//! **Invariant**: the queues in memory (which list a copy sits in, and a delivery queue's counters of active
//! copies, workers and connections) change only through the methods of `Queues` in `queue.rs`, under one
//! mutex that is never held across an await.
//!
//! **API boundary**: this crate knows nothing about HTTP or the CLI; it returns the admin API's JSON types
//! (`sluice-api-types`) for listings because those are plain data.

#[macro_use]
mod names;

mod actions;
mod agent;
pub mod alerts;
mod categorizer;
pub mod cluster;
pub mod counters;
mod dsn;
mod hosts;
mod inprocess;
mod listing;
mod load;
mod poison;
pub mod pressure;
mod queue;
mod routing;
mod safety_net;
mod status;
mod throttle;
mod timers;
pub mod tracking;
mod worker;
pub mod workqueue;

use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use sluice_queue_db::{BodyRef, CommitError, Envelope, Mid, POISON, QueueDb, QueueId, Record, SUBMISSION, UNREACHABLE};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use actions::ActionError;
pub use agent::{
    BoxFuture, DeliveryAgent, DeliveryConnection, DeliveryError, Handoff, Opening, Outbound, RecipientOutcome,
    TlsFailure, reply_line,
};
pub use alerts::{AlertClass, Alerts, Severity};
pub use counters::{Counter, Counters, CountersFileError, InboundSession};
pub use hosts::{HostSort, sort_hosts};
pub use inprocess::{InProcess, InProcessError};
pub use listing::{CopyRow, in_listing_order};
pub use load::Loaded;
pub use queue::{DeliveryType, MessageStatus, NextHopSolutionKey, QueueStatus};
pub use routing::{
    AcceptedDomain, Credentials, Limits, MailboxStore, Route, Routing, SendConnector, SendSession, StoreKind, Target,
    TlsPolicy,
};
pub use safety_net::{RequestsFileError, ResubmitError, ResubmitRequests};
pub use sluice_queue_db::HistogramSnapshot;
pub use throttle::{Throttles, emission_interval};
pub use tracking::{Audit, Event, EventId, Tracking};

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
    hostname: String,
    alerts: Alerts,
    pressure: pressure::Monitor,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// The wall clock of the expiry and delay deadlines (see `timers.rs`).
    clock: timers::WallClock,
    /// The cap on delivery connections across all queues (`max_outbound_connections`).
    connections: worker::ConnectionSlots,
    /// Messages expired and delay notices sent since start.
    expired: std::sync::atomic::AtomicU64,
    delay_notices: std::sync::atomic::AtomicU64,
    /// Safety Net resubmit requests, run by a task of their own.
    resubmit: ResubmitRequests,
    /// What is in process, for the next start to blame after a crash (`inprocess.rs`, `poison.rs`).
    in_process: Arc<InProcess>,
    /// Keeps suspects alone (`poison::Gate`).
    gate: poison::Gate,
    /// `[debug] fault_injection`: `X-Sluice-Fault` headers take effect. When off, no body is read for them.
    fault_injection: bool,
    /// What the server did, for `GET /api/v1/status` and the metrics (`counters.rs`).
    counters: Arc<Counters>,
    /// The anti-spam and anti-virus stages between Submission and the categorizer (`workqueue/`).
    work_queue: workqueue::WorkQueue,
    /// A cluster node's leases and shadow copies (`cluster.rs`); `None` on a single server.
    cluster: Option<Arc<dyn cluster::ClusterHooks>>,
    /// Each next hop's message rate slots on a single server (`throttle.rs`).
    throttles: throttle::Throttles,
    /// `max_per_domain_messages_per_minute`, read by each worker before each message without taking the
    /// routing lock.
    rate_limit: std::sync::atomic::AtomicU32,
    /// Draining: new sessions are refused with `421 4.3.2`, `/health` says so, delivery goes on.
    draining: std::sync::atomic::AtomicBool,
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

    /// Writes records without waiting for them to be durable. A failure means the queue database stopped;
    /// it is logged, naming `what` was not recorded (the categorizer's wording, for every such write).
    async fn record(&self, records: Vec<Record>, what: &str) {
        if self.db.record(records).await.is_err() {
            tracing::error!("cannot record {what}; the queue database stopped");
        }
    }

    fn event(&self, event_id: tracking::EventId, mid: Mid, env: &Envelope) -> Event {
        let mut ev = Event::new(event_id, mid);
        env.from_address().clone_into(&mut ev.sender);
        ev.internet_message_id = env.internet_message_id().map(str::to_owned);
        ev
    }

    /// Stores a message in Submission (a received one, or a delivery status notice) and wakes the
    /// categorizer. Returns once it is durable.
    async fn submit(&self, mid: Mid, envelope: Envelope, body: sluice_queue_db::Body) -> Result<(), CommitError> {
        self.submit_scanned(mid, envelope, body, sluice_queue_db::Scan::NONE).await
    }

    /// On a cluster node with shadow copies: writes the shadow copy of a message committed a moment ago,
    /// before anything can deliver it. When that fails and `reject_on_shadow_failure` is on, the local copy
    /// is taken back (durably) and the submission fails; otherwise the message stays, unshadowed, with an
    /// alert.
    async fn shadow(&self, mid: Mid, envelope: &Arc<Envelope>, body: &BodyRef) -> Result<(), CommitError> {
        let Some(cluster) = self.cluster.as_ref().filter(|c| c.shadows()) else { return Ok(()) };
        if envelope.source_name() == SOURCE_ADOPT {
            // The adopting node's shadow copy is the adopted row itself, handed over by `sluice-cluster`.
            return Ok(());
        }
        let bytes = self.db.body_source(mid, body).and_then(|b| b.read_all());
        let written = match bytes {
            Ok(bytes) => cluster.shadow(mid, envelope.clone(), bytes).await,
            Err(e) => Err(format!("cannot read the body back: {e}")),
        };
        let Err(why) = written else { return Ok(()) };
        if cluster.reject_on_shadow_failure() {
            self.db.commit(vec![Record::CopyDone { mid, queue: SUBMISSION }]).await?;
            // A row written after all (an answer that came too late) goes like a delivered message's.
            cluster.disposed(mid);
            return Err(CommitError::NotShadowed(why));
        }
        self.alerts.raise_keyed(
            "cluster-unshadowed",
            AlertClass::System,
            Severity::Warning,
            format!("messages are accepted without a shadow copy: {why}"),
        );
        Ok(())
    }

    /// [`Inner::submit`], for a message with the work queue's verdicts already (a stripped one).
    async fn submit_scanned(
        &self,
        mid: Mid,
        envelope: Envelope,
        body: sluice_queue_db::Body,
        scan: sluice_queue_db::Scan,
    ) -> Result<(), CommitError> {
        let size = body.len();
        // One envelope, shared by the queue database's state and the queues.
        let envelope = Arc::new(envelope);
        let body_ref = match self.db.enqueue(mid, SUBMISSION, envelope.clone(), body).await {
            Ok(r) => r,
            Err(e) => {
                if matches!(e, CommitError::DiskFull) {
                    pressure::disk_is_full(self);
                }
                if let CommitError::Failed(why) = &e {
                    self.alerts.raise_keyed(
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
        self.shadow(mid, &envelope, &body_ref).await?;
        for event_id in [tracking::EventId::Receive, tracking::EventId::Submit] {
            let mut ev = self.event(event_id, mid, &envelope);
            ev.recipients = envelope.recipients().map(|r| r.address.to_owned()).collect();
            ev.source = Some(envelope.source_name().to_owned());
            if event_id == tracking::EventId::Receive {
                ev.source_ip = Some(envelope.source_ip().to_owned()).filter(|s| !s.is_empty());
                ev.reply = Some(format!("250 2.0.0 Ok: queued as {mid} ({size} bytes)"));
            } else {
                ev.queue = Some(self.queue_identity(SUBMISSION));
            }
            self.tracking.log(ev);
        }
        let recipients = (0..envelope.recipient_count() as u32).collect();
        self.lock().submit(
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
                    scan: scan.clone(),
                }],
            },
        );
        if scan != sluice_queue_db::Scan::NONE {
            self.record(vec![Record::Scanned { mid, scan }], "a scan verdict").await;
        }
        self.categorizer_wake.notify_one();
        Ok(())
    }
}

/// The `source_name` of a message adopted from a peer's shadow copy.
pub const SOURCE_ADOPT: &str = "Adopt";

/// The queues of one server. Cheap to clone.
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

/// What [`Transport::start`] puts together.
pub struct Parts {
    pub db: QueueDb,
    /// The queues [`Transport::load`] made.
    pub loaded: Loaded,
    pub routing: Routing,
    pub agent: Arc<dyn DeliveryAgent>,
    pub tracking: Tracking,
    /// The server's name, the first part of every queue identity.
    pub server_name: String,
    /// The server's host name (as in EHLO): the reporting MTA of delivery status notices.
    pub hostname: String,
    pub alerts: Alerts,
    /// The Safety Net resubmit requests, as saved (`ResubmitRequests::open`).
    pub resubmit_requests: ResubmitRequests,
    /// The in-process marker file, opened before the queue database (what the last run left in it is
    /// blamed at start).
    pub in_process: InProcess,
    /// `[debug] fault_injection`: honour `X-Sluice-Fault` headers (for tests).
    pub fault_injection: bool,
    /// The counters, as saved (`Counters::open`), or `Counters::in_memory()`.
    pub counters: Counters,
    /// The work queue's engines and settings (`workqueue::Settings::off()`: no scanning).
    pub work_queue: workqueue::Settings,
    /// A cluster node's hooks (`sluice-cluster`); `None` on a single server.
    pub cluster: Option<Arc<dyn cluster::ClusterHooks>>,
    /// Messages a peer adopted while this node was away: removed, without notice, before delivery starts.
    pub adopted_elsewhere: Vec<Mid>,
}

impl Transport {
    /// Starts the categorizer, the retry timer and delivery on the queues [`Transport::load`] made. First,
    /// the messages the last run left in process (it stopped uncleanly) are blamed: their crash counts are
    /// raised, and those at `poison_threshold` go to Poison, durably before anything runs.
    pub async fn start(parts: Parts) -> Result<Transport, CommitError> {
        let Parts {
            db,
            loaded,
            routing,
            agent,
            tracking,
            server_name,
            hostname,
            alerts,
            resubmit_requests,
            in_process,
            fault_injection,
            counters,
            work_queue,
            cluster,
            adopted_elsewhere,
        } = parts;
        let Loaded { mut qs, resubmit, quarantined } = loaded;
        qs.set_cluster(cluster.clone());
        let gate = poison::Gate::new(qs.suspect_count());
        let connections = worker::ConnectionSlots::new(routing.limits.max_outbound_connections.max(1));
        let rate_limit = routing.limits.max_per_domain_messages_per_minute;
        let inner = Arc::new(Inner {
            db,
            queues: Mutex::new(qs),
            routing: RwLock::new(Arc::new(routing)),
            tracking,
            agent,
            categorizer_wake: Notify::new(),
            server_name,
            hostname,
            alerts,
            pressure: pressure::Monitor::new(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            clock: timers::WallClock::start(),
            connections,
            expired: Default::default(),
            delay_notices: Default::default(),
            resubmit: resubmit_requests,
            in_process: Arc::new(in_process),
            gate,
            fault_injection,
            counters: Arc::new(counters),
            work_queue: workqueue::WorkQueue::new(work_queue, quarantined),
            cluster,
            throttles: Default::default(),
            rate_limit: rate_limit.into(),
            draining: Default::default(),
        });
        if fault_injection {
            tracing::warn!("fault injection is on: X-Sluice-Fault headers abort or panic this server");
        }
        poison::blame_left(&inner).await?;
        let t = Transport { inner };
        t.drop_adopted(&adopted_elsewhere).await;
        let inner = t.inner.clone();
        t.inner.tasks.spawn(async move {
            if !resubmit.is_empty() {
                inner.record(resubmit, "the return to Submission of copies whose queue is gone").await;
            }
            categorizer::run(inner).await
        });
        // The timer's first round expires what expired while the server was down, then starts the workers
        // of the recovered queues.
        let inner = t.inner.clone();
        t.inner.tasks.spawn(timers::run(inner));
        let inner = t.inner.clone();
        t.inner.tasks.spawn(pressure::watch(inner));
        let inner = t.inner.clone();
        t.inner.tasks.spawn(safety_net::run(inner));
        let inner = t.inner.clone();
        t.inner.tasks.spawn(counters::run(inner));
        if t.inner.work_queue.enabled() {
            let inner = t.inner.clone();
            t.inner.tasks.spawn(workqueue::run(inner));
        }
        t.inner.categorizer_wake.notify_one();
        Ok(t)
    }

    /// Resumes a message in Poison: its crash count goes back to 0, and it goes to Submission (durably) to
    /// be categorized again, alone. Returns false when the message has no copy in Poison.
    pub async fn resume_poison(&self, mid: Mid) -> bool {
        poison::resume_poison(&self.inner, mid, None).await
    }

    /// Messages (or copies of one, when they expired at different times) that expired since start, each
    /// with its failure notice.
    pub fn expired_since_start(&self) -> u64 {
        self.inner.expired.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Delay notices sent since start.
    pub fn delay_notices_since_start(&self) -> u64 {
        self.inner.delay_notices.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A new MID, for the `Received:` header written before the message is stored.
    pub fn allocate_mid(&self) -> Mid {
        self.inner.db.allocate_mid()
    }

    /// Writes an event that is not about one message (the admin API's `AUDIT`) to the tracking log.
    pub fn track(&self, event: Event) {
        self.inner.tracking.log(event);
    }

    /// The alerts of this server.
    pub fn alerts(&self) -> &Alerts {
        &self.inner.alerts
    }

    /// False when mail cannot be taken in: the queue database stopped committing, back pressure is High, or
    /// the node is draining.
    pub fn healthy(&self) -> bool {
        !self.inner.db.stopped() && self.inner.pressure.level() < pressure::Level::High && !self.draining()
    }

    /// Starts draining: new SMTP sessions get `421 4.3.2` and `/health` answers 503; delivery goes on.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether the node is draining.
    pub fn draining(&self) -> bool {
        self.inner.draining.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Messages held now, in every queue (a message with copies in several queues counts once).
    pub fn message_count(&self) -> usize {
        self.inner.lock().message_count()
    }

    /// The back pressure level now: what new mail is refused. A fast intake can fill a disk between two
    /// checks of the monitor, so this also looks at the free space itself, at most every 10 ms, and raises
    /// (never lowers: that is the monitor's, with its hysteresis) the disk's level at once.
    pub fn back_pressure(&self) -> pressure::Level {
        pressure::look_at_disk(&self.inner)
    }

    /// The `[back_pressure]` thresholds (at start and on reload).
    pub fn set_back_pressure_thresholds(&self, t: pressure::Thresholds) {
        self.inner.pressure.set_thresholds(t);
    }

    /// The queue database's file system is full: a commit, or a message's spool file on it, met ENOSPC or
    /// EDQUOT. New mail is refused at once (disk level High, a Critical alert); the monitor lowers the level
    /// again once the database has found room for its reserve files and a margin.
    pub fn disk_is_full(&self) {
        pressure::disk_is_full(&self.inner);
    }

    /// Stores a received message in Submission. Returns once it is durable: only then may the client be
    /// told `250`.
    pub async fn submit(
        &self,
        mid: Mid,
        envelope: Envelope,
        body: impl Into<sluice_queue_db::Body>,
    ) -> Result<(), CommitError> {
        let recipients = envelope.recipient_count() as u64;
        self.inner.submit(mid, envelope, body.into()).await?;
        self.inner.counters.add(Counter::MessagesReceived, 1);
        self.inner.counters.add(Counter::RecipientsReceived, recipients);
        Ok(())
    }

    /// Takes over a message from a peer's shadow copy: a new MID, the original envelope (its time of receipt,
    /// so its expiry and delay notice stay those of the first node), stored durably in Submission. Tracking
    /// records `ADOPT`, naming the original node and MID.
    pub async fn adopt(&self, envelope: Envelope, body: Vec<u8>, from: &str) -> Result<Mid, CommitError> {
        let mut parts = envelope.to_parts();
        SOURCE_ADOPT.clone_into(&mut parts.source_name);
        let envelope = Envelope::from(parts);
        let mid = self.inner.db.allocate_mid();
        let mut ev = self.inner.event(tracking::EventId::Adopt, mid, &envelope);
        ev.recipients = envelope.recipients().map(|r| r.address.to_owned()).collect();
        ev.reply = Some(format!("adopted from {from}"));
        self.inner.submit(mid, envelope, body.into()).await?;
        self.inner.tracking.log(ev);
        Ok(mid)
    }

    /// Removes, without a notice, the messages among `mids` that are still here: a peer adopted them from
    /// their shadow copies (their recipients are the peer's now). Returns how many were removed.
    pub async fn drop_adopted(&self, mids: &[Mid]) -> usize {
        let ids: Vec<String> = mids.iter().filter(|m| self.holds(**m)).map(|m| m.to_string()).collect();
        if ids.is_empty() {
            return 0;
        }
        match self.remove_messages(&ids, false, "cluster: adopted by a peer").await {
            Ok(_) => {
                tracing::warn!(messages = ids.len(), "dropped messages that a peer adopted from their shadow copies");
                ids.len()
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot drop the messages a peer adopted");
                0
            }
        }
    }

    /// The server's name: the first part of its queue and message identities.
    pub fn server_name(&self) -> &str {
        &self.inner.server_name
    }

    /// Whether message `mid` is held (in any queue).
    pub fn holds(&self, mid: Mid) -> bool {
        !self.inner.lock().copies_of(mid, None).is_empty()
    }

    /// Is `domain` one of the accepted domains?
    pub fn is_accepted_domain(&self, domain: &str) -> bool {
        self.inner.routing().is_accepted(domain)
    }

    /// Replaces the routing table (configuration reload): new work uses it at once. The copies waiting in a
    /// delivery queue whose connector or store was removed or changed (its key's target under the new table
    /// is another, or none) go back to Submission and the categorizer at once; those being delivered go
    /// when their attempt ends without success. Unreachable is resubmitted unless suspended. The limits
    /// (retry intervals, the connection caps) apply from the next use.
    pub async fn set_routing(&self, routing: Routing) {
        self.inner.connections.resize(routing.limits.max_outbound_connections.max(1));
        let rate = routing.limits.max_per_domain_messages_per_minute;
        self.inner.rate_limit.store(rate, std::sync::atomic::Ordering::Relaxed);
        let (rerouted, unreachable) = {
            let mut qs = self.inner.lock();
            (qs.reroute(|key| routing.target_for(key)), qs.resubmit_unreachable())
        };
        *self.inner.routing.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(routing);
        let mut records = rerouted.records;
        records.extend(unreachable.records);
        if !records.is_empty() {
            let what = "the return to Submission of Unreachable and of rerouted copies";
            self.inner.record(records, what).await;
        }
        // On Submission's list only now: the categorizer's Route of a copy must follow the one that moved it.
        {
            let mut qs = self.inner.lock();
            qs.push_submission(rerouted.mids);
            qs.push_submission(unreachable.mids);
        }
        self.inner.categorizer_wake.notify_one();
        let ids: Vec<QueueId> = self.inner.lock().delivery_ids();
        for qid in ids {
            worker::kick(&self.inner, qid);
        }
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
        // Nothing is in process any more: the next start blames nobody.
        self.inner.in_process.remove();
        self.inner.db.close().await;
        self.inner.tracking.flush();
        // After every task: what the last deliveries counted is in the file, and the ids exactly.
        if let Err(e) = self.inner.counters.save(true) {
            tracing::warn!(error = %e, "cannot save the counters");
        }
    }
}
