//! Pausing and resuming a stage, and the alerts of a pause that lasts.
//!
//! A stage is paused while it has at least one cause: an administrator's pause, a rule-set swap, or an
//! engine that does not answer. Each pause (from the first cause to the last one gone) has an epoch; a
//! watcher task raises the paused alert after `work_queue_pause_alert_after` and the stuck alert after
//! `work_queue_stuck_after` if the same epoch is still on, and the end of an epoch whose paused alert went
//! out raises the resumed alert.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use sluice_api_types as api;
use sluice_queue_db::ScanStage;
use sluice_queue_db::time::{now_ms, rfc3339};

use crate::Inner;
use crate::alerts::{AlertClass, Severity};

/// Why a stage is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cause {
    Admin,
    Update,
    Offline,
}

#[derive(Debug, Clone)]
struct Reason {
    cause: Cause,
    text: String,
    since_ms: i64,
}

#[derive(Debug, Default)]
struct PauseState {
    reasons: Vec<Reason>,
    epoch: u64,
    alerted: bool,
    stuck: bool,
}

/// One stage's pause state.
pub(crate) struct StageCtl {
    stage: ScanStage,
    state: Mutex<PauseState>,
    resumed: tokio::sync::Notify,
}

impl StageCtl {
    pub(crate) fn new(stage: ScanStage) -> StageCtl {
        StageCtl { stage, state: Mutex::new(PauseState::default()), resumed: tokio::sync::Notify::new() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PauseState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn stuck(&self) -> bool {
        self.lock().stuck
    }

    /// The first reason (an engine offline first), with its time.
    fn reason(&self) -> Option<Reason> {
        let s = self.lock();
        s.reasons.iter().find(|r| r.cause == Cause::Offline).or(s.reasons.first()).cloned()
    }

    /// `Operational`, `Paused`, `Offline`, or `Off` for a stage without an engine.
    pub(crate) fn state_name(&self, on: bool) -> &'static str {
        match self.reason() {
            _ if !on => "Off",
            None => "Operational",
            Some(r) if r.cause == Cause::Offline => "Offline",
            Some(_) => "Paused",
        }
    }

    /// The stage as `GET /api/v1/workqueue` lists it.
    pub(crate) fn status(&self, kind: &str, concurrency: u32, in_process: u64) -> api::Stage {
        api::Stage {
            stage: self.stage.as_str().into(),
            engine: kind.into(),
            state: self.state_name(kind != "off").into(),
            reason: self.reason().map(|r| r.text),
            concurrency,
            in_process,
        }
    }

    /// The stage as a paused one, when it is.
    pub(crate) fn paused(&self) -> Option<api::PausedStage> {
        self.reason().map(|r| api::PausedStage {
            stage: self.stage.as_str().into(),
            reason: r.text,
            since: rfc3339(r.since_ms),
        })
    }

    /// Whether the stage's engine is offline.
    pub(crate) fn is_offline(&self) -> bool {
        self.lock().reasons.iter().any(|r| r.cause == Cause::Offline)
    }

    /// Whether the stage has no cause to pause now.
    pub(crate) fn is_operational(&self) -> bool {
        self.lock().reasons.is_empty()
    }

    /// Waits until the stage has no cause to pause (returns at once when it has none).
    pub(crate) async fn wait_operational(&self) {
        loop {
            let notified = self.resumed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.lock().reasons.is_empty() {
                return;
            }
            notified.await;
        }
    }
}

/// The alert class of a stage's alerts.
fn class(stage: ScanStage) -> AlertClass {
    match stage {
        ScanStage::Antispam => AlertClass::AntiSpam,
        ScanStage::Antivirus => AlertClass::AntiVirus,
    }
}

/// Messages in the work queue: waiting in Submission and taken by the work queue.
pub(crate) fn messages(inner: &Inner) -> u64 {
    inner.lock().submission_len() as u64 + inner.work_queue.messages_in_process()
}

/// Adds a cause to pause `stage` (replacing the same cause's reason). Returns whether the stage was
/// running before.
pub(crate) fn pause(inner: &Arc<Inner>, stage: ScanStage, cause: Cause, text: &str) -> bool {
    pause_for(inner, stage, cause, text).0
}

/// As [`pause`]; also returns whether `cause` is new (it was not a cause of the pause already).
pub(crate) fn pause_for(inner: &Arc<Inner>, stage: ScanStage, cause: Cause, text: &str) -> (bool, bool) {
    let ctl = inner.work_queue.stage(stage);
    let (started, added, epoch) = {
        let mut s = ctl.lock();
        let started = s.reasons.is_empty();
        let before = s.reasons.len();
        s.reasons.retain(|r| r.cause != cause);
        let added = s.reasons.len() == before;
        s.reasons.push(Reason { cause, text: text.to_owned(), since_ms: now_ms() });
        if started {
            s.epoch += 1;
            s.alerted = false;
            s.stuck = false;
        }
        (started, added, s.epoch)
    };
    if started {
        tracing::info!(stage = stage.as_str(), reason = text, "work queue paused");
        let after = inner.work_queue.settings.pause_alert_after;
        if after.is_zero() {
            paused_alert(inner, stage, epoch);
        }
        let inner = inner.clone();
        inner.tasks.clone().spawn(watch(inner, stage, epoch, after));
    }
    (started, added)
}

/// Removes a cause; when none is left the stage runs again. Returns whether it did.
pub(crate) fn resume(inner: &Inner, stage: ScanStage, cause: Cause) -> bool {
    let ctl = inner.work_queue.stage(stage);
    let alerted = {
        let mut s = ctl.lock();
        let before = s.reasons.len();
        s.reasons.retain(|r| r.cause != cause);
        if before == 0 || !s.reasons.is_empty() {
            return false;
        }
        let alerted = s.alerted;
        s.alerted = false;
        s.stuck = false;
        alerted
    };
    tracing::info!(stage = stage.as_str(), "work queue resumed");
    ctl.resumed.notify_waiters();
    if alerted {
        let n = messages(inner);
        inner.alerts.raise_keyed(
            &format!("work-queue-resumed-{}-{}", stage.as_str(), ctl.lock().epoch),
            class(stage),
            Severity::Information,
            format!("work queue resumed, {n} msgs"),
        );
    }
    true
}

/// Raises the paused alert of `epoch` unless it went out or the pause ended.
fn paused_alert(inner: &Inner, stage: ScanStage, epoch: u64) {
    let ctl = inner.work_queue.stage(stage);
    {
        let mut s = ctl.lock();
        if s.epoch != epoch || s.reasons.is_empty() || s.alerted {
            return;
        }
        s.alerted = true;
    }
    let n = messages(inner);
    inner.alerts.raise_keyed(
        &format!("work-queue-paused-{}-{epoch}", stage.as_str()),
        class(stage),
        Severity::Critical,
        format!("work queue paused, {n} msgs, {}", stage.as_str()),
    );
}

/// Raises the paused alert after `after` and the stuck alert after `work_queue_stuck_after`, while the
/// pause of `epoch` lasts.
async fn watch(inner: Arc<Inner>, stage: ScanStage, epoch: u64, after: Duration) {
    let stuck_after = inner.work_queue.settings.stuck_after;
    let on = |inner: &Inner| {
        let s = inner.work_queue.stage(stage).lock();
        s.epoch == epoch && !s.reasons.is_empty()
    };
    let sleep = |d: Duration| {
        let inner = inner.clone();
        async move {
            tokio::select! {
                _ = tokio::time::sleep(d) => true,
                _ = inner.shutdown.cancelled() => false,
            }
        }
    };
    if !after.is_zero() && after < stuck_after {
        if !sleep(after).await || !on(&inner) {
            return;
        }
        paused_alert(&inner, stage, epoch);
    }
    if !sleep(stuck_after.saturating_sub(after.min(stuck_after))).await || !on(&inner) {
        return;
    }
    paused_alert(&inner, stage, epoch);
    inner.work_queue.stage(stage).lock().stuck = true;
    let n = messages(&inner);
    inner.alerts.raise_keyed(
        &format!("work-queue-stuck-{}-{epoch}", stage.as_str()),
        class(stage),
        Severity::Critical,
        format!("work queue still paused after {}, {n} msgs, {}", human(stuck_after), stage.as_str()),
    );
}

/// A duration as the alert says it: `15 minutes`, `1 hour`, `90 seconds`.
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    let (n, unit) = match s {
        _ if s >= 3600 && s.is_multiple_of(3600) => (s / 3600, "hour"),
        _ if s >= 60 && s.is_multiple_of(60) => (s / 60, "minute"),
        _ => (s, "second"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_the_appliance_writes_them() {
        assert_eq!(human(Duration::from_secs(900)), "15 minutes");
        assert_eq!(human(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human(Duration::from_secs(90)), "90 seconds");
        assert_eq!(human(Duration::from_secs(1)), "1 second");
    }
}
