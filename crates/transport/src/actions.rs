//! What an administrator does to queues and messages: Suspend-, Resume- and Retry-Queue, Suspend-,
//! Resume-, Remove- and Export-Message, on one identity or a list of them.
//!
//! Every action is all or nothing: each identity is resolved and its state checked under the queues' lock
//! before anything changes, so a list naming one unknown identity (404) or one copy the action does not
//! apply to (409) changes nothing. An action is durable before it is answered: its records are committed
//! (fsync) — a suspended message is still suspended after a SIGKILL, a removed one still gone. Each changed
//! copy is a tracking event (`SUSPEND`, `RESUME`, `REMOVE`, `RESUBMIT`) naming the request's origin.

use std::sync::Arc;

use sluice_api_types as api;
use sluice_queue_db::{BodyRef, BodySource, Envelope, Mid, POISON, QueueId, Record, SUBMISSION, UNREACHABLE};
use sluice_smtp::Reply;

use crate::queue::{MessageStatus, Pending, Removal};
use crate::tracking::EventId;
use crate::{Inner, Transport, dsn, worker};

/// Why an action was refused; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The request itself is malformed (an identity that is not one, an empty list).
    #[error("{0}")]
    BadRequest(String),
    /// Identities that name no queue or message.
    #[error("no such {kind}: {}", .identities.join(", "))]
    NotFound { kind: &'static str, identities: Vec<String> },
    /// Identities whose state the action does not apply to, each with why.
    #[error("{}", .0.iter().map(|(id, why)| format!("{id}: {why}")).collect::<Vec<_>>().join("; "))]
    WrongState(Vec<(String, String)>),
    /// The queue database stopped; nothing was recorded.
    #[error("the queue database stopped: {0}")]
    Stopped(String),
}

/// The reply a recipient fails with when an administrator removes its message with a notice: permanent,
/// in the mail system class (RFC 3463 X.3.0), saying who removed it.
pub(crate) fn removed_reply() -> Reply {
    Reply::new(550, "5.3.0", "The message was removed by the administrator")
}

/// A message identity: `<server>\<queue>\<mid>`, `<queue>\<mid>`, `<server>\*\<mid>`, `*\<mid>` or a bare
/// `<mid>` (the last three name every copy). `/` may stand for `\`.
fn parse_message(t: &Transport, identity: &str) -> Result<(Option<QueueId>, Mid), ActionError> {
    let bad =
        || ActionError::BadRequest(format!("{identity:?} is not a message identity such as <server>\\<queue>\\<mid>"));
    let s = identity.replace('/', "\\");
    let mut parts: Vec<&str> = s.split('\\').collect();
    let mid: Mid = parts.pop().and_then(|m| m.trim().parse().ok()).ok_or_else(bad)?;
    let server_is = |p: &str| p.eq_ignore_ascii_case(&t.inner.server_name);
    let queue = match parts.as_slice() {
        [] => None,
        [q] if *q == "*" => None,
        [q] if server_is(q) && t.parse_queue(q).is_err() => None,
        [q] => Some(*q),
        [server, q] if server_is(server) => (*q != "*").then_some(*q),
        [_, _] => return Err(ActionError::NotFound { kind: "message", identities: vec![identity.to_owned()] }),
        _ => return Err(bad()),
    };
    let qid = match queue {
        None => None,
        Some(q) => Some(
            t.parse_queue(q)
                .map_err(|_| ActionError::NotFound { kind: "message", identities: vec![identity.to_owned()] })?,
        ),
    };
    Ok((qid, mid))
}

/// The identities of a list action, checked for shape.
fn non_empty(identities: &[String]) -> Result<(), ActionError> {
    if identities.is_empty() {
        return Err(ActionError::BadRequest("the list of identities is empty".into()));
    }
    Ok(())
}

/// A message action's target: the copies each identity names, resolved under the lock.
struct Targets {
    /// `(identity as given, mid, queues)`.
    copies: Vec<(String, Mid, Vec<QueueId>)>,
}

impl Transport {
    /// Resolves message identities to their copies; all must exist.
    fn message_targets(&self, identities: &[String]) -> Result<Targets, ActionError> {
        non_empty(identities)?;
        let parsed: Vec<(String, Option<QueueId>, Mid)> = identities
            .iter()
            .map(|id| parse_message(self, id).map(|(q, mid)| (id.clone(), q, mid)))
            .collect::<Result<_, _>>()?;
        let qs = self.inner.lock();
        let mut missing = Vec::new();
        let mut copies = Vec::new();
        for (id, only, mid) in parsed {
            let queues: Vec<QueueId> = qs.copies_of(mid, only).into_iter().map(|(q, _)| q).collect();
            if queues.is_empty() {
                missing.push(id);
            } else {
                copies.push((id, mid, queues));
            }
        }
        if !missing.is_empty() {
            return Err(ActionError::NotFound { kind: "message", identities: missing });
        }
        Ok(Targets { copies })
    }

    /// `GET /api/v1/messages/{identity}`: the copies it names, and whether it names every copy of the
    /// message (`<server>\*\<mid>`, a bare MID) rather than the one in a queue.
    pub fn message(&self, identity: &str) -> Result<(Vec<api::Message>, bool), ActionError> {
        let every = parse_message(self, identity)?.0.is_none();
        let targets = self.message_targets(&[identity.to_owned()])?;
        let qs = self.inner.lock();
        let copies = targets.copies.iter().flat_map(|(_, mid, queues)| self.copies_json(&qs, *mid, queues)).collect();
        Ok((copies, every))
    }

    /// Suspend-Message: each named copy is Suspended, or PendingSuspend while it is being delivered (then
    /// suspended if the attempt leaves it undelivered). Suspending a suspended copy changes nothing.
    pub async fn suspend_messages(
        &self,
        identities: &[String],
        origin: &str,
    ) -> Result<api::ActionResult<api::Message>, ActionError> {
        let targets = self.message_targets(identities)?;
        let mut records = Vec::new();
        let mut changed = Vec::new();
        {
            let mut qs = self.inner.lock();
            for (_, mid, queues) in &targets.copies {
                for qid in queues {
                    let before = qs.copies_of(*mid, Some(*qid)).first().map(|(_, s)| *s);
                    let after = qs.suspend_copy(*mid, *qid);
                    if after.is_some() && after != before {
                        records.push(Record::MessageSuspend { mid: *mid, queue: *qid, suspended: true });
                        changed.push((*mid, *qid));
                    }
                }
            }
        }
        self.commit(records).await?;
        self.log_actions(EventId::Suspend, &changed, origin, None);
        Ok(self.action_result(&targets, changed.len()))
    }

    /// Resume-Message: each named copy leaves Suspended (ready at once) or PendingSuspend; a Poison copy
    /// has its crash count reset and goes back to the categorizer, to be processed alone. A copy that is
    /// not suspended is a 409 and nothing is resumed.
    pub async fn resume_messages(
        &self,
        identities: &[String],
        origin: &str,
    ) -> Result<api::ActionResult<api::Message>, ActionError> {
        let targets = self.message_targets(identities)?;
        let mut records = Vec::new();
        let mut changed = Vec::new();
        let mut poison = Vec::new();
        let mut kick = Vec::new();
        {
            let mut qs = self.inner.lock();
            let mut wrong = Vec::new();
            for (id, mid, queues) in &targets.copies {
                for (qid, status) in queues.iter().flat_map(|q| qs.copies_of(*mid, Some(*q))) {
                    if !matches!(status, MessageStatus::Suspended | MessageStatus::PendingSuspend) {
                        wrong.push((self.copy_identity(id, *mid, qid), format!("{}, not suspended", status.as_str())));
                    }
                }
            }
            if !wrong.is_empty() {
                return Err(ActionError::WrongState(wrong));
            }
            for (_, mid, queues) in &targets.copies {
                for qid in queues {
                    if *qid == POISON {
                        poison.push(*mid);
                        continue;
                    }
                    if let Ok(kicked) = qs.resume_copy(*mid, *qid) {
                        records.push(Record::MessageSuspend { mid: *mid, queue: *qid, suspended: false });
                        changed.push((*mid, *qid));
                        if kicked {
                            kick.push(*qid);
                        }
                    }
                }
            }
        }
        self.commit(records).await?;
        for mid in &poison {
            if crate::poison::resume_poison(&self.inner, *mid, Some(origin)).await {
                changed.push((*mid, POISON));
            }
        }
        self.log_actions(EventId::Resume, &changed, origin, None);
        self.inner.categorizer_wake.notify_one();
        kick.sort_unstable();
        kick.dedup();
        for qid in kick {
            worker::kick(&self.inner, qid);
        }
        Ok(self.action_result(&targets, changed.len()))
    }

    /// Remove-Message: each named copy leaves its queue now (PendingRemove while it is being delivered:
    /// removed when the attempt ends, unless it delivered it). With `with_ndr` the sender is told, in one
    /// delivery status notice per message, that the administrator removed it (`5.3.0`).
    pub async fn remove_messages(
        &self,
        identities: &[String],
        with_ndr: bool,
        origin: &str,
    ) -> Result<api::ActionResult<api::Message>, ActionError> {
        let targets = self.message_targets(identities)?;
        let mut removed = Vec::new();
        let mut changed = Vec::new();
        {
            let mut qs = self.inner.lock();
            for (_, mid, queues) in &targets.copies {
                for qid in queues {
                    let was = qs.copies_of(*mid, Some(*qid)).first().map(|(_, s)| *s);
                    if was == Some(MessageStatus::PendingRemove) {
                        continue;
                    }
                    match qs.remove_copy_now(*mid, *qid, with_ndr) {
                        Some(Removal::Now { recipients, envelope, body }) => {
                            removed.push((*mid, *qid, recipients, envelope, body));
                            changed.push((*mid, *qid));
                        }
                        Some(Removal::Pending) => changed.push((*mid, *qid)),
                        None => {}
                    }
                }
            }
        }
        let mut records = Vec::new();
        for (mid, qid, recipients, envelope, body) in &removed {
            self.inner.counters.add(crate::Counter::DeletedRecipients, recipients.len() as u64);
            if with_ndr {
                tell_removed(&self.inner, *mid, envelope, *body, recipients).await;
            }
            records.push(Record::CopyDone { mid: *mid, queue: *qid });
        }
        self.commit(records).await?;
        let reply = if with_ndr { "removed with a notice to the sender" } else { "removed without a notice" };
        self.log_actions(EventId::Remove, &changed, origin, Some(reply));
        Ok(self.action_result(&targets, changed.len()))
    }

    /// The header block of message `mid` as stored (sluice's `Received:` line first), up to the blank line and
    /// at most 64 KB: for the web viewer's message page, whatever the message's state. The body is never
    /// changed once stored, and the source keeps its file open, so a message delivered meanwhile is still
    /// read whole; `None` when there is no such message or its file cannot be read.
    pub fn header_block(&self, mid: Mid) -> Option<Vec<u8>> {
        const MAX: usize = 64 * 1024;
        let body = self.inner.lock().message(mid).map(|m| m.body)?;
        let source = self.inner.db.body_source(mid, &body).ok()?;
        let mut chunks = source.chunks();
        let mut out = Vec::new();
        while out.len() < MAX {
            // The blank line may straddle the last chunk and this one: look from the last chunk's last byte.
            let from = out.len().saturating_sub(1);
            match chunks.next_chunk(16 * 1024) {
                Ok(Some(bytes)) => out.extend_from_slice(&bytes),
                Ok(None) => break,
                Err(_) => return None,
            }
            if let Some(end) = out[from..].windows(2).position(|w| w == b"\n\n" || w == b"\n\r") {
                out.truncate(from + end + 1);
                return Some(out);
            }
        }
        out.truncate(MAX);
        Some(out)
    }

    /// Export-Message: the message's bytes as stored (what was received, after sluice's `Received:` line),
    /// to read a piece at a time. Only a suspended copy is exported (409 otherwise): a message being
    /// delivered or retried may change under the reader.
    pub fn export(&self, identity: &str) -> Result<(Mid, BodySource), ActionError> {
        let (only, mid) = parse_message(self, identity)?;
        let (body, statuses) = {
            let qs = self.inner.lock();
            let statuses = qs.copies_of(mid, only);
            (qs.message(mid).map(|m| m.body), statuses)
        };
        let Some(body) = body.filter(|_| !statuses.is_empty()) else {
            return Err(ActionError::NotFound { kind: "message", identities: vec![identity.to_owned()] });
        };
        let wrong: Vec<(String, String)> = statuses
            .iter()
            .filter(|(_, s)| *s != MessageStatus::Suspended)
            .map(|(q, s)| {
                (self.copy_identity(identity, mid, *q), format!("{}; only a Suspended message is exported", s.as_str()))
            })
            .collect();
        if !wrong.is_empty() {
            return Err(ActionError::WrongState(wrong));
        }
        let source = self.inner.db.body_source(mid, &body).map_err(|e| ActionError::Stopped(e.to_string()))?;
        Ok((mid, source))
    }

    /// Suspend-Queue on each named queue: it opens no new connection (Submission: the categorizer stops;
    /// Unreachable: no resubmission on reload); its messages keep their statuses and deliveries in flight
    /// finish. Suspending a suspended queue changes nothing; Poison cannot be suspended or resumed.
    pub async fn suspend_queues(
        &self,
        identities: &[String],
        origin: &str,
    ) -> Result<api::ActionResult<api::Queue>, ActionError> {
        self.set_queues_suspended(identities, true, origin).await
    }

    /// Resume-Queue on each named queue; one that is not suspended is a 409 and nothing is resumed.
    pub async fn resume_queues(
        &self,
        identities: &[String],
        origin: &str,
    ) -> Result<api::ActionResult<api::Queue>, ActionError> {
        self.set_queues_suspended(identities, false, origin).await
    }

    async fn set_queues_suspended(
        &self,
        identities: &[String],
        suspended: bool,
        origin: &str,
    ) -> Result<api::ActionResult<api::Queue>, ActionError> {
        let qids = self.queue_targets(identities)?;
        let mut records = Vec::new();
        {
            let mut qs = self.inner.lock();
            let mut wrong = Vec::new();
            for (id, qid) in identities.iter().zip(&qids) {
                match qs.queue_suspended(*qid) {
                    _ if *qid == POISON => {
                        wrong.push((id.clone(), "Poison's messages are always suspended; act on them".to_owned()))
                    }
                    Some(false) if !suspended => wrong.push((id.clone(), "not suspended".to_owned())),
                    _ => {}
                }
            }
            if !wrong.is_empty() {
                return Err(ActionError::WrongState(wrong));
            }
            for qid in &qids {
                if qs.set_queue_suspended(*qid, suspended) {
                    records.push(Record::QueueSuspend { id: *qid, suspended });
                }
            }
        }
        let changed = records.len();
        self.commit(records).await?;
        let what = if suspended { "suspended" } else { "resumed" };
        for qid in &qids {
            tracing::info!(queue = %self.inner.queue_identity(*qid), origin, "queue {what}");
        }
        if !suspended {
            self.inner.categorizer_wake.notify_one();
            for qid in &qids {
                worker::kick(&self.inner, *qid);
            }
        }
        self.queue_result(&qids, changed)
    }

    /// Retry-Queue on each named queue. Without `resubmit`: a delivery queue in Retry (or with copies
    /// waiting for their own retry) connects now, its retry timer reset; any other is a 409. With
    /// `resubmit`: the queue's waiting messages (not suspended, not being delivered) go back to the
    /// categorizer — the only retry of Unreachable, and of a suspended queue's messages after a routing
    /// change.
    pub async fn retry_queues(
        &self,
        identities: &[String],
        resubmit: bool,
        origin: &str,
    ) -> Result<api::ActionResult<api::Queue>, ActionError> {
        let qids = self.queue_targets(identities)?;
        let mut moved_records = Vec::new();
        let mut moved_mids = Vec::new();
        let mut changed = 0;
        {
            let mut qs = self.inner.lock();
            let mut wrong = Vec::new();
            for (id, qid) in identities.iter().zip(&qids) {
                let why = match *qid {
                    SUBMISSION | POISON => Some("it is not a delivery queue"),
                    UNREACHABLE if !resubmit => Some("Unreachable is retried only with resubmit=true"),
                    UNREACHABLE => None,
                    _ if resubmit => None,
                    qid => match qs.delivery_queue(qid) {
                        Some(q) if q.status() == crate::QueueStatus::Suspended => {
                            Some("Suspended; resume it, or retry with resubmit=true")
                        }
                        Some(q) if q.status() != crate::QueueStatus::Retry && q.deferred_count() == 0 => {
                            Some("not in Retry")
                        }
                        _ => None,
                    },
                };
                if let Some(why) = why {
                    let status = self.queue_status(&qs, *qid);
                    wrong.push((id.clone(), format!("{status}: {why}")));
                }
            }
            if !wrong.is_empty() {
                return Err(ActionError::WrongState(wrong));
            }
            for qid in &qids {
                if resubmit {
                    let moved = qs.resubmit_queue(*qid);
                    changed += usize::from(!moved.mids.is_empty());
                    moved_records.extend(moved.records);
                    moved_mids.extend(moved.mids);
                } else if qs.retry_now(*qid) {
                    changed += 1;
                }
            }
        }
        if !moved_records.is_empty() {
            self.commit(moved_records).await?;
        }
        for mid in &moved_mids {
            let Some(env) = self.inner.lock().message(*mid).map(|m| m.envelope.clone()) else { continue };
            let mut ev = self.inner.event(EventId::Resubmit, *mid, &env);
            ev.source = Some(origin.to_owned());
            ev.queue = Some(self.inner.queue_identity(SUBMISSION));
            self.inner.tracking.log(ev);
        }
        // On Submission's list only now: the categorizer's Route of a copy must follow the one that moved it.
        self.inner.lock().push_submission(moved_mids);
        self.inner.categorizer_wake.notify_one();
        for qid in &qids {
            tracing::info!(queue = %self.inner.queue_identity(*qid), origin, resubmit, "queue retried");
            worker::kick(&self.inner, *qid);
        }
        self.queue_result(&qids, changed)
    }

    /// Resolves queue identities; all must exist.
    fn queue_targets(&self, identities: &[String]) -> Result<Vec<QueueId>, ActionError> {
        non_empty(identities)?;
        let mut missing = Vec::new();
        let mut qids = Vec::new();
        for id in identities {
            match self.parse_queue(id) {
                Ok(q) => qids.push(q),
                Err(_) => missing.push(id.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(ActionError::NotFound { kind: "queue", identities: missing });
        }
        Ok(qids)
    }

    fn queue_status(&self, qs: &crate::queue::Queues, qid: QueueId) -> String {
        match qid {
            SUBMISSION | UNREACHABLE | POISON => {
                if qs.queue_suspended(qid) == Some(true) { "Suspended" } else { "Ready" }.to_owned()
            }
            qid => qs.delivery_queue(qid).map_or("gone", |q| q.status().as_str()).to_owned(),
        }
    }

    fn queue_result(&self, qids: &[QueueId], changed: usize) -> Result<api::ActionResult<api::Queue>, ActionError> {
        let mut items = Vec::new();
        let mut identities = Vec::new();
        for qid in qids {
            let name = self.inner.queue_identity(*qid);
            // A queue deleted meanwhile (idle) is named without its object.
            if let Ok(q) = self.queue(&name) {
                items.push(q);
            }
            identities.push(name);
        }
        Ok(api::ActionResult { matched: qids.len() as u64, changed: changed as u64, identities, items })
    }

    /// Commits an action's records (durable before the answer).
    async fn commit(&self, records: Vec<Record>) -> Result<(), ActionError> {
        if records.is_empty() {
            return Ok(());
        }
        self.inner.db.commit(records).await.map_err(|e| ActionError::Stopped(e.to_string()))
    }

    /// The full identity of the copy of `mid` in `qid`, for an error about an identity that named several.
    fn copy_identity(&self, given: &str, mid: Mid, qid: QueueId) -> String {
        let full = format!("{}\\{mid}", self.inner.queue_identity(qid));
        if full.eq_ignore_ascii_case(given) { given.to_owned() } else { full }
    }

    fn log_actions(&self, event_id: EventId, changed: &[(Mid, QueueId)], origin: &str, reply: Option<&str>) {
        for (mid, qid) in changed {
            let env = self.inner.lock().message(*mid).map(|m| m.envelope.clone());
            let mut ev = match &env {
                Some(env) => self.inner.event(event_id, *mid, env),
                None => crate::Event::new(event_id, *mid),
            };
            ev.queue = Some(self.inner.queue_identity(*qid));
            ev.source = Some(origin.to_owned());
            ev.reply = reply.map(str::to_owned);
            self.inner.tracking.log(ev);
            tracing::info!(mid, queue = %self.inner.queue_identity(*qid), origin, "message {}", event_id.as_str());
        }
    }

    fn action_result(&self, targets: &Targets, changed: usize) -> api::ActionResult<api::Message> {
        let qs = self.inner.lock();
        let mut identities = Vec::new();
        let mut items = Vec::new();
        for (_, mid, queues) in &targets.copies {
            for qid in queues {
                identities.push(format!("{}\\{mid}", self.inner.queue_identity(*qid)));
            }
            items.extend(self.copies_json(&qs, *mid, queues));
        }
        api::ActionResult { matched: identities.len() as u64, changed: changed as u64, identities, items }
    }
}

/// Tells the sender of `mid` that the administrator removed it, for `recipients`; durable when this
/// returns (a Safety Net resubmission or a message from the null sender gets none).
pub(crate) async fn tell_removed(
    inner: &Arc<Inner>,
    mid: Mid,
    envelope: &Arc<Envelope>,
    body: BodyRef,
    recipients: &[u32],
) {
    let reply = removed_reply();
    let statuses = recipients
        .iter()
        .map(|i| dsn::RecipientStatus {
            index: *i,
            action: dsn::Action::Failed,
            reply: reply.clone(),
            remote_mta: None,
        })
        .collect();
    dsn::notify(inner, mid, envelope, body, statuses).await;
}

/// The end of an attempt that left the copy of `job.mid` in `qid` with `remaining` recipients, when an
/// administrator asked for its suspension or removal meanwhile: applies it and returns true; false when
/// nothing was asked (the attempt's outcome goes on as usual).
pub(crate) async fn apply_pending(
    inner: &Arc<Inner>,
    qid: QueueId,
    job: &crate::queue::Job,
    remaining: &[u32],
    error: &str,
) -> bool {
    let Some(pending) = inner.lock().pending_action(job.mid, qid) else { return false };
    let retry_count = job.retry_count + 1;
    match pending {
        Pending::Suspend => {
            inner.lock().suspend_active(job.mid, qid, remaining, retry_count, error);
            let mut records = Vec::new();
            if remaining.len() < job.recipients.len() {
                records.push(Record::Route { mid: job.mid, from: qid, copies: vec![(qid, remaining.to_vec())] });
                // A narrowed copy keeps its suspension, but the mark is set again in case the Route cleared it.
                records.push(Record::MessageSuspend { mid: job.mid, queue: qid, suspended: true });
            }
            records.push(Record::Defer {
                mid: job.mid,
                queue: qid,
                retry_count,
                next_retry_ms: 0,
                last_error: error.to_owned(),
            });
            inner.record(records, "a suspension after an attempt").await;
            tracing::info!(mid = job.mid, queue = qid, "message suspended after its delivery attempt");
        }
        Pending::Remove { with_ndr } => {
            inner.lock().finish_copy(job.mid, qid);
            inner.counters.add(crate::Counter::DeletedRecipients, remaining.len() as u64);
            if with_ndr {
                tell_removed(inner, job.mid, &job.envelope, job.body, remaining).await;
            }
            inner.record(vec![Record::CopyDone { mid: job.mid, queue: qid }], "a removal after an attempt").await;
            tracing::info!(mid = job.mid, queue = qid, with_ndr, "message removed after its delivery attempt");
        }
    }
    true
}
