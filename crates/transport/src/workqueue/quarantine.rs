//! Quarantine: messages a stage held back (`scl_quarantine`, `virus_action = "quarantine"`), kept in the
//! queue database with a copy in [`QUARANTINE`] (not a delivery queue: nothing delivers from it) until an
//! administrator releases or deletes them, or `[quarantine] retention` passes. They are not in the
//! transport's queues: no expiry, retry or listing of delivery queues sees them.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_api_types as api;
use sluice_queue_db::time::{now_ms, rfc3339};
use sluice_queue_db::{BodyRef, CommitError, Envelope, Mid, QUARANTINE, Record, SUBMISSION, Scan, ScanStage};
use smallvec::smallvec;

use crate::Inner;
use crate::counters::Counter;
use crate::queue::{Copy, Message, MessageStatus};
use crate::tracking::EventId;

/// A quarantined message.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) body: BodyRef,
    pub(crate) recipients: Vec<u32>,
    pub(crate) scan: Scan,
    pub(crate) at_ms: i64,
    pub(crate) stage: ScanStage,
    pub(crate) reason: String,
}

#[derive(Debug, Default)]
pub(crate) struct Quarantine {
    held: BTreeMap<Mid, Held>,
    bytes: u64,
}

impl Quarantine {
    pub(crate) fn new(held: Vec<(Mid, Held)>) -> Quarantine {
        let mut q = Quarantine::default();
        for (mid, h) in held {
            q.insert(mid, h);
        }
        q
    }

    fn insert(&mut self, mid: Mid, h: Held) {
        self.bytes += h.body.len;
        if let Some(old) = self.held.insert(mid, h) {
            self.bytes -= old.body.len;
        }
    }

    fn remove(&mut self, mid: Mid) -> Option<Held> {
        let h = self.held.remove(&mid)?;
        self.bytes -= h.body.len;
        Some(h)
    }

    pub(crate) fn totals(&self) -> (u64, u64) {
        (self.held.len() as u64, self.bytes)
    }
}

fn lock(inner: &Inner) -> std::sync::MutexGuard<'_, Quarantine> {
    inner.work_queue.quarantine.lock().unwrap_or_else(|e| e.into_inner())
}

fn row(inner: &Inner, mid: Mid, h: &Held) -> api::Quarantined {
    let retention = inner.work_queue.settings.quarantine_retention.as_millis() as i64;
    api::Quarantined {
        mid,
        quarantined_at: rfc3339(h.at_ms),
        expires_at: rfc3339(h.at_ms.saturating_add(retention)),
        stage: h.stage.as_str().into(),
        verdict: h.reason.clone(),
        scl: h.scan.scl,
        from_address: h.envelope.from_address().into(),
        recipients: h
            .recipients
            .iter()
            .filter_map(|i| h.envelope.recipient(*i as usize))
            .map(|r| r.address.into())
            .collect(),
        subject: h.envelope.subject().unwrap_or("").into(),
        internet_message_id: h.envelope.internet_message_id().unwrap_or("").into(),
        size: h.body.len,
    }
}

/// Quarantined messages in MID order, from `after` on, at most `n`.
pub(crate) fn list(inner: &Inner, after: Option<Mid>, n: usize) -> (Vec<api::Quarantined>, Option<Mid>) {
    let q = lock(inner);
    let start = after.map_or(0, |m| m + 1);
    let mut rows: Vec<api::Quarantined> =
        q.held.range(start..).take(n + 1).map(|(mid, h)| row(inner, *mid, h)).collect();
    let next = (rows.len() > n).then(|| {
        rows.pop();
        rows.last().map_or(0, |r| r.mid)
    });
    (rows, next)
}

/// Moves a message the work queue holds (its Submission copy taken from the queues) to quarantine,
/// durably. On a commit failure the message is put back in Submission.
pub(crate) async fn hold(inner: &Arc<Inner>, mid: Mid, held: Held) -> Result<(), CommitError> {
    // Removed by an administrator while it was scanned: nothing to hold.
    if inner.lock().message(mid).is_none() {
        return Ok(());
    }
    let records = vec![
        Record::Scanned { mid, scan: held.scan.clone() },
        Record::Quarantine { mid, at_ms: held.at_ms, stage: held.stage, reason: held.reason.clone() },
        Record::Route { mid, from: SUBMISSION, copies: vec![(QUARANTINE, held.recipients.clone())] },
    ];
    let mut ev = inner.event(EventId::Quarantine, mid, &held.envelope);
    ev.recipients =
        held.recipients.iter().filter_map(|i| held.envelope.recipient(*i as usize)).map(|r| r.address.into()).collect();
    ev.source = Some(held.stage.as_str().into());
    ev.reply = Some(held.reason.clone());
    inner.db.commit(records).await?;
    inner.lock().finish_copy(mid, SUBMISSION);
    inner.tracking.log(ev);
    inner.counters.add(Counter::QuarantinedMessages, 1);
    lock(inner).insert(mid, held);
    Ok(())
}

/// Why a quarantine action did nothing.
#[derive(Debug, thiserror::Error)]
pub enum QuarantineError {
    #[error("message {0} is not in quarantine")]
    NotFound(Mid),
    #[error(transparent)]
    Commit(#[from] CommitError),
}

/// Releases a quarantined message: it goes back to Submission, durably, and past the stage that
/// quarantined it (the other stages still scan it).
pub(crate) async fn release(inner: &Arc<Inner>, mid: Mid) -> Result<api::Quarantined, QuarantineError> {
    let Some(mut h) = lock(inner).remove(mid) else { return Err(QuarantineError::NotFound(mid)) };
    let shown = row(inner, mid, &h);
    h.scan.done |= h.stage.bit();
    let records = vec![
        Record::Scanned { mid, scan: h.scan.clone() },
        Record::Route { mid, from: QUARANTINE, copies: vec![(SUBMISSION, h.recipients.clone())] },
    ];
    if let Err(e) = inner.db.commit(records).await {
        lock(inner).insert(mid, h);
        return Err(e.into());
    }
    let mut ev = inner.event(EventId::Resubmit, mid, &h.envelope);
    ev.source = Some("quarantine release".into());
    ev.queue = Some(inner.queue_identity(SUBMISSION));
    inner.tracking.log(ev);
    let copy = Copy {
        queue: SUBMISSION,
        recipients: h.recipients.iter().copied().collect(),
        status: MessageStatus::Active,
        retry_count: 0,
        next_retry_ms: 0,
        last_error: None,
        scan: h.scan,
    };
    inner.lock().submit(mid, Message { envelope: h.envelope, body: h.body, copies: smallvec![copy] });
    inner.categorizer_wake.notify_one();
    Ok(shown)
}

/// Deletes a quarantined message for good (no notice to the sender).
pub(crate) async fn delete(inner: &Arc<Inner>, mid: Mid, why: &str) -> Result<api::Quarantined, QuarantineError> {
    let Some(h) = lock(inner).remove(mid) else { return Err(QuarantineError::NotFound(mid)) };
    let shown = row(inner, mid, &h);
    if let Err(e) = inner.db.commit(vec![Record::CopyDone { mid, queue: QUARANTINE }]).await {
        lock(inner).insert(mid, h);
        return Err(e.into());
    }
    let mut ev = inner.event(EventId::Remove, mid, &h.envelope);
    ev.source = Some("quarantine".into());
    ev.reply = Some(why.into());
    inner.tracking.log(ev);
    Ok(shown)
}

/// Deletes what is past retention (run every minute by the runner).
pub(crate) async fn expire(inner: &Arc<Inner>) {
    let retention = inner.work_queue.settings.quarantine_retention.as_millis() as i64;
    let cutoff = now_ms().saturating_sub(retention);
    let old: Vec<Mid> = lock(inner).held.iter().filter(|(_, h)| h.at_ms < cutoff).map(|(mid, _)| *mid).collect();
    for mid in old {
        if let Err(e) = delete(inner, mid, "quarantine retention passed").await {
            tracing::warn!(mid, error = %e, "cannot delete an expired quarantined message");
        }
    }
}
