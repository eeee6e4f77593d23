//! Delivery queues at work: workers that take ready copies, hold a connection to the next hop through a
//! [`DeliveryAgent`], and record each outcome. The agent (SMTP, LMTP, Maildir) lives in another crate; this
//! module decides when to connect, when to retry and what each reply means for the queue.

use std::sync::Arc;

use sluice_queue_db::{QueueId, Record, now_ms};
use sluice_smtp::Reply;

use crate::Inner;
use crate::agent::{DeliveryConnection, DeliveryError, Handoff, Outbound, RecipientOutcome, reply_line};
use crate::dsn;
use crate::queue::Job;
use crate::routing::Target;
use crate::tracking::EventId;

#[cfg(doc)]
use crate::agent::DeliveryAgent;

/// How long a delivery attempt in progress may go on once shutdown began.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

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
    let mut w = Worker { inner, qid, conn: None, sent: 0 };
    while let Some((job, target)) = w.next_job().await {
        let body = match w.inner.db.body_source(job.mid, &job.body) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(mid = job.mid, error = %e, "cannot read a message body");
                defer(&w.inner, qid, &job, &DeliveryError::Body(e), false).await;
                continue;
            }
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
                Ok(conn) => conn,
                Err(e) if e.is_permanent() => {
                    // No route to the domain: every recipient fails now, and so will the next copy's.
                    let outcomes = outbound.indices.iter().map(|_| RecipientOutcome::Permanent(e.reply())).collect();
                    finish(&w.inner, qid, &job, &outbound, outcomes, Handoff::Relayed).await;
                    continue;
                }
                Err(e) => {
                    defer(&w.inner, qid, &job, &e, true).await;
                    break;
                }
            },
        };
        match w.deliver(conn, &outbound, &target).await {
            Ok(outcomes) => {
                let handoff = w.conn.as_ref().map_or(Handoff::Relayed, |c| c.handoff());
                finish(&w.inner, qid, &job, &outbound, outcomes, handoff).await;
                w.delivered(&target).await;
            }
            Err(e) => {
                w.conn = None;
                defer(&w.inner, qid, &job, &e, true).await;
                break;
            }
        }
    }
    let Worker { inner, conn, .. } = w;
    if let Some(c) = conn {
        c.quit().await;
    }
    let more = inner.lock().worker_done(qid);
    // A message may have arrived between the last look and the exit.
    if more && !inner.shutdown.is_cancelled() {
        kick(&inner, qid);
    }
}

/// A worker's state between copies.
struct Worker {
    inner: Arc<Inner>,
    qid: QueueId,
    /// The open connection to the next hop, if any.
    conn: Option<Box<dyn DeliveryConnection>>,
    /// Copies delivered over `conn`.
    sent: usize,
}

impl Worker {
    /// The next ready copy and its target, waiting for one while a connection is open; `None` when the worker
    /// should stop (no work and no connection, idle too long, shutdown, or the queue is gone).
    async fn next_job(&mut self) -> Option<(Job, Target)> {
        let inner = &self.inner;
        loop {
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
            // Keep the connection for a while in case more mail comes for this next hop.
            let idle = inner.routing().limits.connection_idle;
            tokio::select! {
                _ = &mut notified => continue,
                _ = tokio::time::sleep(idle) => return None,
                _ = inner.shutdown.cancelled() => return None,
            }
        }
    }

    /// Opens a connection to the target, counted as connecting meanwhile.
    async fn connect(&mut self, target: &Target) -> Result<Box<dyn DeliveryConnection>, DeliveryError> {
        self.inner.lock().set_connecting(self.qid, true);
        let connected = self.inner.agent.connect(target).await;
        self.inner.lock().set_connecting(self.qid, false);
        connected
    }

    /// Delivers one copy over `conn`, which is kept (or the fresh one that replaced it).
    async fn deliver(
        &mut self,
        mut conn: Box<dyn DeliveryConnection>,
        outbound: &Outbound,
        target: &Target,
    ) -> Result<Vec<RecipientOutcome>, DeliveryError> {
        let inner = &self.inner;
        // At shutdown an attempt gets a grace period; a copy abandoned then stays queued (and may be
        // delivered twice if the peer had accepted it: a duplicate, never a loss).
        let stopping = async {
            inner.shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        let mut result = tokio::select! {
            r = conn.deliver(outbound) => r,
            _ = stopping => Err(DeliveryError::Shutdown),
        };
        self.conn = Some(conn);
        if result.is_err() && self.sent > 0 && !inner.shutdown.is_cancelled() {
            // A reused connection may have been closed by the peer while idle: one fresh attempt before the
            // failure counts against the queue.
            self.conn = None;
            self.sent = 0;
            if let Ok(mut fresh) = inner.agent.connect(target).await {
                result = fresh.deliver(outbound).await;
                self.conn = Some(fresh);
            }
        }
        result
    }

    /// Counts a delivered copy; the connection ends after the target's most messages per connection.
    async fn delivered(&mut self, target: &Target) {
        self.sent += 1;
        if self.sent >= target.max_messages_per_connection().max(1) {
            if let Some(c) = self.conn.take() {
                c.quit().await;
            }
            self.sent = 0;
        }
    }
}

/// Applies the next hop's per-recipient replies to the copy, and tells the sender of those that failed (and,
/// when asked, of those delivered) in one notice.
async fn finish(
    inner: &Arc<Inner>,
    qid: QueueId,
    job: &Job,
    out: &Outbound,
    outcomes: Vec<RecipientOutcome>,
    handoff: Handoff,
) {
    let mut remaining = Vec::new();
    let mut statuses = Vec::new();
    let mut transient_error = String::new();
    // The outcomes answer the recipients sent, in their order; a recipient left without one is retried.
    let missing = (outcomes.len() < out.indices.len())
        .then(|| RecipientOutcome::Transient(Reply::new(451, "4.4.0", "no reply for this recipient")));
    for (i, outcome) in out.indices.iter().zip(outcomes.iter().chain(missing.iter().cycle())) {
        let address = job.envelope.recipient(*i as usize).map(|r| r.address.to_owned()).unwrap_or_default();
        let reply = reply_line(outcome.reply());
        let status =
            |action| dsn::RecipientStatus { index: *i, action, reply: outcome.reply().clone(), remote_mta: None };
        let event_id = match outcome {
            RecipientOutcome::Delivered(_) => {
                match handoff {
                    Handoff::Delivered => statuses.push(status(dsn::Action::Delivered)),
                    Handoff::Relayed => statuses.push(status(dsn::Action::Relayed)),
                    Handoff::PassedOn => {}
                }
                EventId::Deliver
            }
            RecipientOutcome::Permanent(_) => {
                statuses.push(status(dsn::Action::Failed));
                EventId::Fail
            }
            RecipientOutcome::Transient(_) => {
                remaining.push(*i);
                transient_error.clone_from(&reply);
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
    if !statuses.is_empty() {
        dsn::notify(inner, job.mid, &job.envelope, job.body, statuses).await;
    }
    if remaining.is_empty() {
        inner.lock().finish_copy(job.mid, qid);
        let done = vec![Record::CopyDone { mid: job.mid, queue: qid }];
        inner.record(done, "a delivery").await;
    } else {
        let next = now_ms() + inner.routing().limits.transient_failure_retry_interval.as_millis() as i64;
        inner.lock().defer_copy(job.mid, qid, Some(&remaining), job.retry_count + 1, next, &transient_error);
        let records = vec![
            Record::Route { mid: job.mid, from: qid, copies: vec![(qid, remaining)] },
            Record::Defer {
                mid: job.mid,
                queue: qid,
                retry_count: job.retry_count + 1,
                next_retry_ms: next,
                last_error: transient_error,
            },
        ];
        inner.record(records, "a deferral").await;
    }
}

/// A transient failure of the whole attempt. With `queue_level`, the queue goes to Retry too.
async fn defer(inner: &Arc<Inner>, qid: QueueId, job: &Job, error: &DeliveryError, queue_level: bool) {
    let error = reply_line(&error.reply());
    let error = error.as_str();
    let now = now_ms();
    let next = now + inner.routing().limits.transient_failure_retry_interval.as_millis() as i64;
    if queue_level {
        // The copy goes back to the front: it is first when the queue retries.
        inner.lock().requeue_front(job.mid, qid, job.retry_count + 1, now, next, error);
    } else {
        inner.lock().defer_copy(job.mid, qid, None, job.retry_count + 1, next, error);
    }
    tracing::info!(mid = job.mid, queue = qid, error = %sluice_smtp::printable(error), "delivery deferred");
    let mut ev = inner.event(EventId::Defer, job.mid, &job.envelope);
    ev.recipients = job
        .recipients
        .iter()
        .filter_map(|i| job.envelope.recipient(*i as usize))
        .map(|r| r.address.to_owned())
        .collect();
    ev.queue = Some(inner.queue_identity(qid));
    ev.reply = Some(error.to_owned());
    inner.tracking.log(ev);
    let defer = Record::Defer {
        mid: job.mid,
        queue: qid,
        retry_count: job.retry_count + 1,
        next_retry_ms: next,
        last_error: error.to_owned(),
    };
    inner.record(vec![defer], "a deferral").await;
}

/// Moves what is due out of Retry; called every second.
pub(crate) fn release_due(inner: &Arc<Inner>) {
    let now = tokio::time::Instant::now();
    let mut due_queues = inner.lock().release_due(now);
    due_queues.dedup();
    for qid in due_queues {
        kick(inner, qid);
    }
}
