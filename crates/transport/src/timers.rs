//! The transport's 1-second timer: retries that came due, messages that expire, delay notices, delivery
//! queues idle long enough to delete, and queues in Retry long enough to categorize again.
//!
//! Clock: every deadline a person reads or a restart must keep is wall-clock milliseconds (a copy's next
//! retry, a message's `received_at`), but waiting uses tokio's monotonic clock, so that a step of the system
//! clock neither fires every timer at once nor stalls them, and so that the tests run on tokio's paused
//! clock. Retry deadlines are turned into monotonic instants one by one when set or loaded
//! (`queue::monotonic_deadline`); the expiry and delay deadlines of every queued message are compared with
//! [`WallClock::now_ms`], the wall clock read once at start and moved on by the monotonic clock since.

use std::sync::Arc;
use std::time::Duration;

use sluice_queue_db::Record;
use sluice_smtp::{EnhancedCode, Reply};
use tokio::time::Instant;

use crate::Inner;
use crate::dsn;
use crate::queue::{Delayed, Expired};
use crate::routing::Limits;
use crate::tracking::EventId;

/// The wall clock as the expiry and delay scans read it: the wall-clock time and the monotonic instant
/// taken together once, at start; the time now is that wall time plus the monotonic time gone by since.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallClock {
    wall_ms: i64,
    at: Instant,
}

impl WallClock {
    /// Anchors the clock now.
    pub(crate) fn start() -> WallClock {
        WallClock { wall_ms: sluice_queue_db::now_ms(), at: Instant::now() }
    }

    /// The wall-clock time now, in ms since the epoch, as the monotonic clock has moved since the anchor.
    pub(crate) fn now_ms(&self) -> i64 {
        let gone = Instant::now().saturating_duration_since(self.at).as_millis();
        self.wall_ms.saturating_add(gone.min(i64::MAX as u128) as i64)
    }
}

/// Runs the timer until shutdown. The first round runs at once, before any worker of a recovered queue
/// starts, so that messages that expired while the server was down are not tried again first.
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.shutdown.cancelled() => return,
        }
        round(&inner).await;
        if first {
            first = false;
            let ids = inner.lock().delivery_ids();
            for qid in ids {
                crate::worker::kick(&inner, qid);
            }
        }
    }
}

/// One round of the timer.
async fn round(inner: &Arc<Inner>) {
    crate::worker::release_due(inner);
    let limits = inner.routing().limits.clone();
    let now_ms = inner.clock.now_ms();
    let now = Instant::now();
    let (expired, delayed) = {
        let mut qs = inner.lock();
        // Expiry first: an expired message gets its failure notice, not a delay notice as well.
        let expired = qs.take_expired(now_ms, limits.message_expiration_timeout);
        // A zero `delay_notification_timeout` sends no delay notices (it would send one for every message
        // not delivered within a second).
        let delay = limits.delay_notification_timeout;
        let delayed = if delay.is_zero() { Vec::new() } else { qs.take_delayed(now_ms, delay) };
        qs.compact_arrivals();
        (expired, delayed)
    };
    let mut records = Vec::new();
    for e in expired {
        records.extend(expire(inner, e, &limits).await);
    }
    for d in delayed {
        records.push(delay_notice(inner, d, &limits).await);
    }
    let (deleted, stale) = {
        let mut qs = inner.lock();
        let deleted = qs.delete_idle(now, limits.queue_max_idle_time);
        let stale = qs.resubmit_stale(now, limits.max_idle_time_before_resubmit);
        (deleted, stale)
    };
    for r in &deleted {
        if let Record::QueueDelete { id } = r {
            tracing::info!(queue = %inner.queue_identity(*id), "idle delivery queue deleted");
        }
    }
    records.extend(deleted);
    let resubmitted = !stale.mids.is_empty();
    records.extend(stale.records);
    if !records.is_empty() {
        inner.record(records, "the timer's expiries, delay notices and queue deletions").await;
    }
    if resubmitted {
        inner.lock().push_submission(stale.mids);
        inner.categorizer_wake.notify_one();
    }
}

/// Tells the sender that the expired copies' recipients failed (one notice), logs a FAIL event per copy,
/// and returns the CopyDone records that remove them durably. The copies are already out of their queues.
async fn expire(inner: &Arc<Inner>, e: Expired, limits: &Limits) -> Vec<Record> {
    let reply = crate::worker::expired_reply(limits.message_expiration_timeout);
    let line = crate::agent::reply_line(&reply);
    let mut statuses = Vec::new();
    let mut records = Vec::new();
    for (qid, recipients) in &e.copies {
        let mut ev = inner.event(EventId::Fail, e.mid, &e.envelope);
        ev.recipients =
            recipients.iter().filter_map(|i| e.envelope.recipient(*i as usize)).map(|r| r.address.to_owned()).collect();
        ev.queue = Some(inner.queue_identity(*qid));
        ev.reply = Some(line.clone());
        inner.tracking.log(ev);
        statuses.extend(recipients.iter().map(|i| dsn::RecipientStatus {
            index: *i,
            action: dsn::Action::Failed,
            reply: reply.clone(),
            remote_mta: None,
        }));
        records.push(Record::CopyDone { mid: e.mid, queue: *qid });
    }
    tracing::warn!(mid = e.mid, recipients = statuses.len(), "message expired");
    inner.expired.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    inner.counters.add(crate::Counter::HardBouncedRecipients, statuses.len() as u64);
    dsn::notify(inner, e.mid, &e.envelope, e.body, statuses).await;
    records
}

/// Sends the message's one delay notice, for its recipients still undelivered; returns the record that
/// makes it the only one, also across a restart.
async fn delay_notice(inner: &Arc<Inner>, d: Delayed, limits: &Limits) -> Record {
    if d.envelope.from_address().is_empty() {
        // A notice itself (or any message from the null sender) is never answered with one.
        return Record::DelayNotified { mid: d.mid };
    }
    let fallback = Reply::with_enhanced(
        451,
        Some(EnhancedCode::new(4, 4, 7)),
        format!(
            "Message delayed: not delivered within {}; delivery is still being attempted",
            human(limits.delay_notification_timeout)
        ),
    );
    let statuses = d
        .recipients
        .iter()
        .map(|(index, last_error)| dsn::RecipientStatus {
            index: *index,
            action: dsn::Action::Delayed,
            // The reason it waits, when a next hop gave one.
            reply: last_error.as_deref().and_then(|e| parse_line(e)).unwrap_or_else(|| fallback.clone()),
            remote_mta: None,
        })
        .collect::<Vec<_>>();
    tracing::info!(mid = d.mid, recipients = statuses.len(), "delay notice due");
    inner.delay_notices.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dsn::notify(inner, d.mid, &d.envelope, d.body, statuses).await;
    Record::DelayNotified { mid: d.mid }
}

/// A recorded one-line reply (`451 4.3.0 try again later`) as a [`Reply`] again; `None` if it is not one
/// (or not a transient one).
fn parse_line(line: &str) -> Option<Reply> {
    let wire = format!("{line}\r\n");
    let (reply, _) = sluice_smtp::parse_reply(wire.as_bytes()).ok()??;
    (reply.code / 100 == 4).then_some(reply)
}

/// A duration as the configuration writes it: `2d`, `4h`, `15m` or `90s`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_configured() {
        let cases = [(172_800, "2d"), (14_400, "4h"), (900, "15m"), (90, "90s")];
        for (secs, want) in cases {
            assert_eq!(human(Duration::from_secs(secs)), want);
        }
    }

    #[test]
    fn a_recorded_transient_reply_parses_back_and_others_do_not() {
        let r = parse_line("451 4.3.0 try again later").unwrap();
        assert_eq!((r.code, r.text.as_str()), (451, "try again later"));
        assert!(parse_line("550 5.1.1 no").is_none());
        assert!(parse_line("garbage").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn the_wall_clock_moves_with_the_monotonic_clock() {
        let clock = WallClock::start();
        let before = clock.now_ms();
        tokio::time::advance(Duration::from_secs(3 * 86_400)).await;
        let gone = clock.now_ms() - before;
        assert!((3 * 86_400_000..3 * 86_400_000 + 1_000).contains(&gone), "{gone}");
    }
}
