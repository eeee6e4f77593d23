//! Delivery queues at work: workers that take ready copies, hold a connection to the next hop through a
//! [`DeliveryAgent`], and record each outcome. The agent (SMTP, LMTP, Maildir) lives in another crate; this
//! module decides when to connect, when to retry and what each reply means for the queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use sluice_queue_db::{QueueId, Record, now_ms};
use sluice_smtp::{EnhancedCode, Reply};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::Inner;
use crate::agent::{DeliveryConnection, DeliveryError, Handoff, Outbound, RecipientOutcome, reply_line};
use crate::dsn;
use crate::poison::{self, CatchUnwind};
use crate::queue::Job;
use crate::routing::Target;
use crate::tracking::EventId;

#[cfg(doc)]
use crate::agent::DeliveryAgent;

/// How long a delivery attempt in progress may go on once shutdown began.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The cap on delivery connections across all queues (`max_outbound_connections`): a worker holds a slot
/// from before it connects until its connection is closed.
pub(crate) struct ConnectionSlots {
    semaphore: Arc<Semaphore>,
    /// The configured cap, and the slots still to be taken out of use after it was lowered while they were
    /// held: each is forgotten instead of returned when it is given back.
    size: std::sync::Mutex<usize>,
    debt: Arc<AtomicUsize>,
}

/// One delivery connection's slot, and on a cluster node its lease on one of the next hop's connections;
/// both given back when dropped.
pub(crate) struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    debt: Arc<AtomicUsize>,
    lease: Option<crate::cluster::Lease>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let owed = self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok();
        if let (true, Some(p)) = (owed, self.permit.take()) {
            p.forget();
        }
    }
}

impl ConnectionSlots {
    pub(crate) fn new(size: usize) -> ConnectionSlots {
        ConnectionSlots {
            semaphore: Arc::new(Semaphore::new(size)),
            size: std::sync::Mutex::new(size),
            debt: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Changes the cap (configuration reload). Lowering it takes free slots out at once and the others as
    /// they are given back.
    pub(crate) fn resize(&self, new: usize) {
        let mut size = self.size.lock().unwrap_or_else(|e| e.into_inner());
        if new > *size {
            let mut grow = new - *size;
            // Slots still owed from an earlier lowering are forgiven first.
            while grow > 0 && self.debt.fetch_update(Ordering::AcqRel, Ordering::Acquire, |d| d.checked_sub(1)).is_ok()
            {
                grow -= 1;
            }
            self.semaphore.add_permits(grow);
        } else {
            let cut = *size - new;
            let forgotten = self.semaphore.forget_permits(cut);
            self.debt.fetch_add(cut - forgotten, Ordering::AcqRel);
        }
        *size = new;
    }

    /// Slots held now: delivery connections open or being opened.
    pub(crate) fn in_use(&self) -> usize {
        let size = *self.size.lock().unwrap_or_else(|e| e.into_inner());
        // Slots owed after a lowering are still held; the free ones are not.
        (size + self.debt.load(Ordering::Acquire)).saturating_sub(self.semaphore.available_permits())
    }

    /// Waits for a free slot.
    async fn acquire(&self) -> Slot {
        // The semaphore is never closed.
        let permit = self.semaphore.clone().acquire_owned().await.ok();
        Slot { permit, debt: self.debt.clone(), lease: None }
    }
}

/// Starts workers for a queue while it has more ready copies than workers, up to the per-domain limit.
pub(crate) fn kick(inner: &Arc<Inner>, qid: QueueId) {
    let limit = inner.routing().limits.max_per_domain_outbound_connections.max(1);
    let start = inner.lock().start_workers(qid, limit);
    for _ in 0..start {
        let inner2 = inner.clone();
        inner.tasks.spawn(async move { worker(inner2, qid).await });
    }
}

/// One worker of a delivery queue: it takes the queue's ready copies one after another and delivers them
/// over one connection, kept while mail keeps coming.
async fn worker(inner: Arc<Inner>, qid: QueueId) {
    let mut marker = inner.in_process.worker();
    let mut w = Worker { inner, qid, conn: None, conn_target: None, slot: None, sent: 0 };
    while let Some((job, target)) = w.next_job().await {
        // A connection opened for another target (a reload changed the queue's) is not used again.
        if w.conn.is_some() && w.conn_target.as_ref() != Some(&target) {
            w.close().await;
        }
        let body = match w.inner.db.body_source(job.mid, &job.body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(mid = job.mid, error = %e, "cannot read a message body");
                let error = reply_line(&DeliveryError::Body(e).reply());
                not_delivered(&w.inner, qid, &job, &target, job.recipients.clone(), &error, false).await;
                continue;
            }
        };
        let body = match crate::workqueue::headers(&job.scan) {
            Some(headers) => body.with_prefix(headers.into_bytes().into()),
            None => body,
        };
        let outbound = Outbound {
            mid: job.mid,
            envelope: job.envelope.clone(),
            indices: job
                .recipients
                .iter()
                .copied()
                .filter(|i| (*i as usize) < job.envelope.recipient_count())
                .collect(),
            body,
        };
        let conn = match w.conn.take() {
            Some(conn) => conn,
            None => match w.connect(&target).await {
                Some(Ok(conn)) => conn,
                Some(Err(e)) if e.is_permanent() => {
                    // No route to the domain: every recipient fails now, and so will the next copy's.
                    let outcomes = outbound.indices.iter().map(|_| RecipientOutcome::Permanent(e.reply())).collect();
                    finish(&w.inner, qid, &job, &target, &outbound, outcomes, (Handoff::Relayed, None)).await;
                    continue;
                }
                Some(Err(e)) => {
                    let error = reply_line(&e.reply());
                    not_delivered(&w.inner, qid, &job, &target, job.recipients.clone(), &error, true).await;
                    break;
                }
                None => {
                    // Shutdown came while the worker waited for a connection slot: nothing was tried.
                    w.inner.lock().put_back(job.mid, qid);
                    break;
                }
            },
        };
        throttle(&w.inner, qid).await;
        // In process from here until the outcome is recorded (`poison.rs`); a suspect alone.
        let inner = w.inner.clone();
        let pass = inner.gate.enter(job.suspect).await;
        marker.set(qid, [job.mid]);
        let step = w.attempt(conn, &job, &target, &outbound).await;
        marker.clear();
        drop(pass);
        match step {
            Step::Next => {}
            Step::Stop => break,
            Step::Panicked(panic) => {
                // Tried again, alone, unless it reached the threshold and went to Poison.
                if !poison::panicked(&inner, job.mid, qid, &panic).await {
                    inner.lock().put_back(job.mid, qid);
                }
            }
        }
    }
    w.close().await;
    let Worker { inner, .. } = w;
    let more = inner.lock().worker_done(qid);
    // A message may have arrived between the last look and the exit.
    if more && !inner.shutdown.is_cancelled() {
        kick(&inner, qid);
    }
}

/// A connection slot for a worker of `qid`, with the cluster's lease on a cluster node.
async fn slot_and_lease(inner: &Arc<Inner>, qid: QueueId) -> Slot {
    let mut slot = inner.connections.acquire().await;
    if let Some(cluster) = &inner.cluster {
        let domain = inner.lock().next_hop_domain(qid).unwrap_or_default();
        let limit = inner.routing().limits.max_per_domain_outbound_connections.max(1);
        slot.lease = Some(cluster.lease(&domain, limit).await);
    }
    slot
}

/// Waits for the next hop's next message slot under `max_per_domain_messages_per_minute` (`throttle.rs`),
/// if it has a rate limit.
async fn throttle(inner: &Arc<Inner>, qid: QueueId) {
    let per_minute = inner.rate_limit.load(Ordering::Relaxed);
    if per_minute == 0 {
        return;
    }
    let domain = inner.lock().next_hop_domain(qid).unwrap_or_default();
    let wait = match &inner.cluster {
        Some(cluster) => cluster.throttle(&domain, per_minute).await,
        None => inner.throttles.reserve(&domain, per_minute, std::time::Instant::now()),
    };
    if !wait.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = inner.shutdown.cancelled() => {}
        }
    }
}

/// On a cluster node, returns once another worker (of any node) waits for a connection to `qid`'s next hop:
/// an idle connection then gives its lease up. Without a cluster it never returns.
async fn lease_wanted(inner: &Arc<Inner>, qid: QueueId) {
    let Some(cluster) = &inner.cluster else { return std::future::pending().await };
    let domain = inner.lock().next_hop_domain(qid).unwrap_or_default();
    loop {
        tokio::time::sleep(LEASE_WANTED_EVERY).await;
        if cluster.lease_wanted(&domain).await {
            return;
        }
    }
}

/// How often an idle connection of a cluster node looks for workers waiting for its lease.
const LEASE_WANTED_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// What a worker does after an attempt.
enum Step {
    /// Takes the next copy.
    Next,
    /// Stops: the session failed, and the queue waits for its retry.
    Stop,
    /// The attempt panicked (with this message): the copy's crash count is raised.
    Panicked(String),
}

/// A worker's state between copies.
struct Worker {
    inner: Arc<Inner>,
    qid: QueueId,
    /// The open connection to the next hop, if any, and the target it was opened for.
    conn: Option<Box<dyn DeliveryConnection>>,
    conn_target: Option<Target>,
    /// The connection slot held while `conn` is open (or being opened).
    slot: Option<Slot>,
    /// Copies delivered over `conn`.
    sent: usize,
}

impl Worker {
    /// The next ready copy and its target, waiting for one while a connection is open; `None` when the worker
    /// should stop (no work and no connection, idle too long, shutdown, or the queue is gone).
    async fn next_job(&mut self) -> Option<(Job, Target)> {
        loop {
            if self.conn.is_none() {
                self.slot = None;
            }
            let inner = &self.inner;
            if inner.shutdown.is_cancelled() {
                return None;
            }
            let notify = inner.lock().notifier(self.qid)?;
            let notified = notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Some(next) = inner.lock().take_ready(self.qid) {
                return Some(next);
            }
            // Without a connection to keep there is nothing to wait for.
            self.conn.as_ref()?;
            // Keep the connection for a while in case more mail comes for this next hop (on a cluster node,
            // only while no other node waits for a connection to it).
            let idle = inner.routing().limits.connection_idle;
            tokio::select! {
                _ = &mut notified => continue,
                _ = tokio::time::sleep(idle) => return None,
                _ = lease_wanted(inner, self.qid) => return None,
                _ = inner.shutdown.cancelled() => return None,
            }
        }
    }

    /// Opens a connection to the target, counted as connecting meanwhile, once a connection slot is free
    /// (and, on a cluster node, one of the cluster's connections to the next hop). `None` when shutdown came
    /// first.
    async fn connect(&mut self, target: &Target) -> Option<Result<Box<dyn DeliveryConnection>, DeliveryError>> {
        let inner = self.inner.clone();
        inner.lock().set_connecting(self.qid, true);
        let slot = tokio::select! {
            slot = slot_and_lease(&inner, self.qid) => Some(slot),
            _ = inner.shutdown.cancelled() => None,
        };
        let connected = match slot {
            Some(slot) => {
                self.slot = Some(slot);
                let dcid = inner.counters.next_dcid();
                let c = inner.agent.connect(target).await;
                log_connection(dcid, self.qid, &c);
                Some(c)
            }
            None => None,
        };
        inner.lock().set_connecting(self.qid, false);
        match &connected {
            Some(Ok(_)) => self.conn_target = Some(target.clone()),
            _ => self.slot = None,
        }
        connected
    }

    /// Ends the open connection, if any, and gives its slot back.
    async fn close(&mut self) {
        if let Some(c) = self.conn.take() {
            c.quit().await;
        }
        self.slot = None;
        self.sent = 0;
    }

    /// One copy's attempt over `conn` and its outcome, recorded. With fault injection on, the copy's
    /// `X-Sluice-Fault` header is looked at first.
    async fn attempt(&mut self, conn: Box<dyn DeliveryConnection>, job: &Job, target: &Target, out: &Outbound) -> Step {
        let (inner, qid) = (self.inner.clone(), self.qid);
        if inner.fault_injection {
            let injected = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                poison::inject(&inner, job.mid, &job.body, poison::Stage::Delivery)
            }));
            if let Err(payload) = injected {
                // The connection's state is unknown after a panic: it is dropped, not used again.
                drop(conn);
                self.slot = None;
                self.sent = 0;
                return Step::Panicked(poison::panic_text(payload.as_ref()));
            }
        }
        match self.deliver(conn, out, target).await {
            Err(panic) => Step::Panicked(panic),
            Ok(Ok(outcomes)) => {
                self.conn_target = Some(target.clone());
                // The session went through: the queue's count of failures in a row starts again.
                inner.lock().queue_delivered(qid);
                let handed = self.conn.as_ref().map_or((Handoff::Relayed, None), |c| (c.handoff(), c.remote_mta()));
                finish(&inner, qid, job, target, out, outcomes, handed).await;
                self.delivered(target).await;
                Step::Next
            }
            Ok(Err(e)) => {
                self.conn = None;
                self.slot = None;
                let error = reply_line(&e.reply());
                not_delivered(&inner, qid, job, target, job.recipients.clone(), &error, true).await;
                Step::Stop
            }
        }
    }

    /// Delivers one copy over `conn`, which is kept (or the fresh one that replaced it). A panic of the
    /// agent is caught (`Err`, with its message): the connection is dropped, as its state is unknown.
    async fn deliver(
        &mut self,
        mut conn: Box<dyn DeliveryConnection>,
        outbound: &Outbound,
        target: &Target,
    ) -> Result<Result<Vec<RecipientOutcome>, DeliveryError>, String> {
        let inner = &self.inner;
        // At shutdown an attempt gets a grace period; a copy abandoned then stays queued (and may be
        // delivered twice if the peer had accepted it: a duplicate, never a loss).
        let stopping = async {
            inner.shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let caught = tokio::select! {
            r = CatchUnwind(conn.deliver(outbound)) => r,
            _ = stopping => Ok(Err(DeliveryError::Shutdown)),
        };
        let mut result = match caught {
            Ok(r) => r,
            Err(p) => {
                drop(conn);
                self.slot = None;
                self.sent = 0;
                return Err(poison::panic_text(p.as_ref()));
            }
        };
        self.conn = Some(conn);
        if result.is_err() && self.sent > 0 && !inner.shutdown.is_cancelled() {
            // A reused connection may have been closed by the peer while idle: one fresh attempt (in the same
            // connection slot) before the failure counts against the queue.
            self.conn = None;
            self.sent = 0;
            let dcid = inner.counters.next_dcid();
            let fresh = inner.agent.connect(target).await;
            log_connection(dcid, self.qid, &fresh);
            if let Ok(mut fresh) = fresh {
                match CatchUnwind(fresh.deliver(outbound)).await {
                    Ok(r) => result = r,
                    Err(p) => {
                        drop(fresh);
                        self.slot = None;
                        return Err(poison::panic_text(p.as_ref()));
                    }
                }
                self.conn = Some(fresh);
            }
        }
        Ok(result)
    }

    /// Counts a delivered copy; the connection ends after the target's most messages per connection.
    async fn delivered(&mut self, target: &Target) {
        self.sent += 1;
        if self.sent >= target.max_messages_per_connection().max(1) {
            self.close().await;
        }
    }
}

/// Logs a delivery connection's opening under its DCID (the `current_ids.dcid` of the status).
fn log_connection(dcid: u64, qid: QueueId, c: &Result<Box<dyn DeliveryConnection>, DeliveryError>) {
    match c {
        Ok(c) => tracing::debug!(dcid, queue = qid, remote = c.remote_mta().unwrap_or(""), "delivery connection open"),
        Err(e) => tracing::debug!(dcid, queue = qid, error = %e, "delivery connection failed"),
    }
}

/// Applies the next hop's per-recipient replies to the copy, and tells the sender of those that failed (and,
/// when asked, of those delivered) in one notice. The recipients left with a transient reply go on as
/// [`not_delivered`] says. `handed` is what a delivered recipient became and the next hop that answered (the
/// notice's `Remote-MTA`), if one did.
async fn finish(
    inner: &Arc<Inner>,
    qid: QueueId,
    job: &Job,
    target: &Target,
    out: &Outbound,
    outcomes: Vec<RecipientOutcome>,
    handed: (Handoff, Option<&str>),
) {
    let (handoff, remote_mta) = handed;
    let mut remaining = Vec::new();
    // For the Safety Net index; inline (no allocation) up to four recipients.
    let mut delivered = sluice_queue_db::RecipientIndices::new();
    let mut statuses = Vec::new();
    let mut transient_error = String::new();
    // Counted once per copy, not per recipient.
    let (mut n_delivered, mut n_failed, mut n_deferred) = (0, 0, 0);
    // The outcomes answer the recipients sent, in their order; a recipient left without one is retried.
    let missing = (outcomes.len() < out.indices.len())
        .then(|| RecipientOutcome::Transient(Reply::new(451, "4.4.0", "no reply for this recipient")));
    for (i, outcome) in out.indices.iter().zip(outcomes.iter().chain(missing.iter().cycle())) {
        let address = job.envelope.recipient(*i as usize).map(|r| r.address.to_owned()).unwrap_or_default();
        let reply = reply_line(outcome.reply());
        let status = |action| dsn::RecipientStatus {
            index: *i,
            action,
            reply: outcome.reply().clone(),
            remote_mta: remote_mta.map(str::to_owned),
        };
        let event_id = match outcome {
            RecipientOutcome::Delivered(_) => {
                match handoff {
                    Handoff::Delivered => statuses.push(status(dsn::Action::Delivered)),
                    Handoff::Relayed => statuses.push(status(dsn::Action::Relayed)),
                    Handoff::PassedOn => {}
                }
                delivered.push(*i);
                n_delivered += 1;
                EventId::Deliver
            }
            RecipientOutcome::Permanent(_) => {
                statuses.push(status(dsn::Action::Failed));
                n_failed += 1;
                EventId::Fail
            }
            RecipientOutcome::Transient(_) => {
                remaining.push(*i);
                transient_error.clone_from(&reply);
                n_deferred += 1;
                EventId::Defer
            }
        };
        let mut ev = inner.event(event_id, job.mid, &job.envelope);
        ev.recipients = vec![address];
        ev.queue = Some(inner.queue_identity(qid));
        ev.reply = Some(reply.clone());
        inner.tracking.log(ev);
        if event_id == EventId::Fail {
            tracing::warn!(mid = job.mid, reply = %sluice_smtp::printable(&reply), "permanent delivery failure");
        }
    }
    count_outcomes(inner, job, n_delivered, n_failed, n_deferred);
    if !statuses.is_empty() {
        dsn::notify(inner, job.mid, &job.envelope, job.body, statuses).await;
    }
    if remaining.is_empty() {
        inner.lock().finish_copy(job.mid, qid);
        // One record either way: a copy with deliveries is remembered by the Safety Net index.
        let done = if delivered.is_empty() {
            Record::CopyDone { mid: job.mid, queue: qid }
        } else {
            Record::CopyDelivered { mid: job.mid, queue: qid, at_ms: now_ms(), delivered }
        };
        inner.record(vec![done], "a delivery").await;
    } else {
        if !delivered.is_empty() {
            // Some recipients were delivered, others wait: the copy goes on, and the index learns of these.
            let partial = Record::RecipientsDelivered { mid: job.mid, at_ms: now_ms(), delivered };
            inner.record(vec![partial], "a partial delivery").await;
        }
        copy_not_done(inner, qid, job, target, remaining, &transient_error, None).await;
    }
}

/// Adds a copy's outcomes to the counters, the server's and its next hop domain's: recipients delivered,
/// failed for good, and deferred.
fn count_outcomes(inner: &Inner, job: &Job, delivered: u64, failed: u64, deferred: u64) {
    job.host.count(delivered, failed, deferred);
    use crate::counters::Counter;
    for (c, n) in [
        (Counter::DeliveredRecipients, delivered),
        (Counter::HardBouncedRecipients, failed),
        (Counter::SoftBouncedEvents, deferred),
    ] {
        if n > 0 {
            inner.counters.add(c, n);
        }
    }
}

/// A transient failure of the whole attempt, for every recipient of the copy. With `queue_level` (no
/// connection, or the session failed as a whole) the queue goes to Retry too
/// ([`crate::Limits::queue_retry_interval`]); without (the body could not be read) only the copy waits.
async fn not_delivered(
    inner: &Arc<Inner>,
    qid: QueueId,
    job: &Job,
    target: &Target,
    recipients: Vec<u32>,
    error: &str,
    queue_level: bool,
) {
    tracing::info!(mid = job.mid, queue = qid, error = %sluice_smtp::printable(error), "delivery deferred");
    count_outcomes(inner, job, 0, 0, recipients.len() as u64);
    let mut ev = inner.event(EventId::Defer, job.mid, &job.envelope);
    ev.recipients =
        recipients.iter().filter_map(|i| job.envelope.recipient(*i as usize)).map(|r| r.address.to_owned()).collect();
    ev.queue = Some(inner.queue_identity(qid));
    ev.reply = Some(error.to_owned());
    inner.tracking.log(ev);
    let queue_retry = if queue_level {
        let limits = inner.routing().limits.clone();
        inner.lock().queue_failed(qid, now_ms(), error, &limits)
    } else {
        None
    };
    copy_not_done(inner, qid, job, target, recipients, error, queue_retry.map(Some)).await;
}

/// The active copy's attempt ended with `remaining` recipients not delivered. In this order:
/// - a reload changed or removed the queue's target since the attempt began: they go back to Submission
///   and the categorizer, under the new routing;
/// - after a queue-level failure (`queue_retry` holds the queue's next retry time): the copy goes back to
///   the front of the queue, which waits in Retry;
/// - else (a recipient-level 4xx): the copy keeps those recipients and waits `message_retry_interval`; the
///   queue is not held.
///
/// A message past `message_expiration_timeout` is left to the timer, which expires all its copies together
/// (one notice) within a second, now that none is being delivered.
async fn copy_not_done(
    inner: &Arc<Inner>,
    qid: QueueId,
    job: &Job,
    target: &Target,
    remaining: Vec<u32>,
    error: &str,
    queue_retry: Option<Option<i64>>,
) {
    // Suspended or removed by an administrator while it was being delivered.
    if crate::actions::apply_pending(inner, qid, job, &remaining, error).await {
        return;
    }
    let limits = inner.routing().limits.clone();
    let rerouted = {
        let mut qs = inner.lock();
        if qs.rerouted(qid, target) { Some(qs.active_to_submission(job.mid, qid, &remaining)) } else { None }
    };
    if let Some(record) = rerouted {
        inner.record(record.into_iter().collect(), "the return to Submission of a rerouted copy").await;
        inner.lock().push_submission([job.mid]);
        inner.categorizer_wake.notify_one();
        return;
    }
    let retry_count = job.retry_count + 1;
    let narrowed = remaining.len() < job.recipients.len();
    let next = match queue_retry {
        Some(queue_next) => {
            let next = queue_next.unwrap_or_else(now_ms);
            inner.lock().requeue_front(job.mid, qid, retry_count, next, error);
            next
        }
        None => {
            let next = now_ms().saturating_add(limits.message_retry_interval.as_millis().min(i64::MAX as u128) as i64);
            inner.lock().defer_copy(job.mid, qid, Some(&remaining), retry_count, next, error);
            next
        }
    };
    let mut records = Vec::new();
    if narrowed {
        records.push(Record::Route { mid: job.mid, from: qid, copies: vec![(qid, remaining)] });
    }
    records.push(Record::Defer {
        mid: job.mid,
        queue: qid,
        retry_count,
        next_retry_ms: next,
        last_error: error.to_owned(),
    });
    inner.record(records, "a deferral").await;
}

/// Moves what is due out of Retry; called every second.
pub(crate) fn release_due(inner: &Arc<Inner>) {
    let now = tokio::time::Instant::now();
    let mut due_queues = inner.lock().release_due(now);
    due_queues.sort_unstable();
    due_queues.dedup();
    for qid in due_queues {
        kick(inner, qid);
    }
}

/// The reply an expired recipient fails with: final (`550`), with the enhanced code RFC 3463 gives an
/// expired delivery time (X.4.7) in the persistent-transient class, as the failure was a series of transient
/// ones; the notice says `Action: failed` (RFC 3464).
pub(crate) fn expired_reply(timeout: std::time::Duration) -> Reply {
    Reply::with_enhanced(
        550,
        Some(EnhancedCode::new(4, 4, 7)),
        format!("Message expired: not delivered within {}", crate::timers::human(timeout)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lowering_the_connection_cap_takes_held_slots_out_as_they_are_given_back() {
        let slots = ConnectionSlots::new(2);
        let (a, b) = (slots.acquire().await, slots.acquire().await);
        assert_eq!(slots.in_use(), 2);
        slots.resize(1);
        assert_eq!(slots.semaphore.available_permits(), 0);
        assert_eq!(slots.in_use(), 2, "lowering the cap closes no connection");
        drop(a);
        assert_eq!(slots.semaphore.available_permits(), 0, "the first slot given back is owed");
        assert_eq!(slots.in_use(), 1);
        drop(b);
        assert_eq!(slots.semaphore.available_permits(), 1);
        assert_eq!(slots.in_use(), 0);
        slots.resize(3);
        assert_eq!(slots.semaphore.available_permits(), 3);
        let held = slots.acquire().await;
        slots.resize(1);
        slots.resize(2);
        drop(held);
        assert_eq!(slots.semaphore.available_permits(), 2, "the cap is the one set last");
    }
}
