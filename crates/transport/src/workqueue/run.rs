//! The work queue's runner: takes messages from Submission as permits allow, runs each through the stages,
//! and hands the passed ones to the categorizer; a sampler for the rate, and quarantine retention.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use sluice_queue_db::time::now_ms;
use sluice_queue_db::{Body, BodyRef, Envelope, Mid, Record, SUBMISSION, Scan, ScanStage};
use sluice_scan::antispam::SpamVerdict;
use sluice_scan::antivirus::Detection;

use super::quarantine::{self, Held};
use super::{VirusAction, pause, rate};
use crate::Inner;
use crate::categorizer::Taken;
use crate::counters::Counter;
use crate::tracking::EventId;

pub(crate) async fn run(inner: Arc<Inner>) {
    let tasks = inner.tasks.clone();
    tasks.spawn(sample(inner.clone()));
    let wq = &inner.work_queue;
    loop {
        let permit = tokio::select! {
            p = wq.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = inner.shutdown.cancelled() => return,
        };
        let notified = inner.categorizer_wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Counted before it leaves Submission's list, so that Submission's count never misses it.
        wq.in_process.fetch_add(1, Ordering::Relaxed);
        let mut taken = inner.lock().take_submission(1);
        match taken.pop() {
            Some(t) => {
                wq.entered.fetch_add(1, Ordering::Relaxed);
                let inner = inner.clone();
                tasks.spawn(async move {
                    // A message handed to the categorizer is counted until the categorizer takes it.
                    if !process(&inner, t).await {
                        inner.work_queue.in_process.fetch_sub(1, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
            None => {
                wq.in_process.fetch_sub(1, Ordering::Relaxed);
                drop(permit);
                tokio::select! {
                    _ = &mut notified => {}
                    _ = inner.shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// A sample a second for the rate; quarantine retention every minute.
async fn sample(inner: Arc<Inner>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut n = 0u64;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = inner.shutdown.cancelled() => return,
        }
        let s = now_sample(&inner);
        inner.work_queue.rate.lock().unwrap_or_else(|e| e.into_inner()).push(s);
        n += 1;
        if n.is_multiple_of(60) {
            quarantine::expire(&inner).await;
        }
    }
}

pub(crate) fn now_sample(inner: &Inner) -> rate::Sample {
    let wq = &inner.work_queue;
    rate::Sample {
        at_ms: now_ms() / 1000 * 1000,
        pending: pause::messages(inner),
        entered: wq.entered.load(Ordering::Relaxed),
        left: wq.left.load(Ordering::Relaxed),
    }
}

/// What one stage decided.
enum Outcome {
    Pass,
    Quarantine(String),
    Drop(String),
    /// Deliver this body instead (the infected parts replaced).
    Replace(Vec<u8>, String),
}

/// Runs one message through the stages it still needs; returns whether it was handed to the categorizer.
async fn process(inner: &Arc<Inner>, taken: Taken) -> bool {
    let (mid, envelope, recipients) = &taken;
    let mid = *mid;
    let wq = &inner.work_queue;
    let Some((body_ref, mut scan)) = inner.lock().message(mid).map(|m| (m.body, m.scan())) else {
        wq.left.fetch_add(1, Ordering::Relaxed);
        return false;
    };
    let mut body: Option<Arc<Vec<u8>>> = None;
    let mut replaced: Option<Vec<u8>> = None;
    for stage in ScanStage::ALL {
        if scan.is_done(stage) || wq.version(stage).is_none() {
            continue;
        }
        tokio::select! {
            _ = wq.stage(stage).wait_operational() => {}
            _ = inner.shutdown.cancelled() => return false,
        }
        let outcome = match scan_stage(inner, mid, body_ref, &mut body, stage, &mut scan).await {
            Some(o) => o,
            None => {
                // The engine panicked on this message: it is a suspect (or goes to Poison), and is tried
                // again alone from Submission.
                wq.left.fetch_add(1, Ordering::Relaxed);
                return false;
            }
        };
        scan.done |= stage.bit();
        match outcome {
            Outcome::Pass => {}
            Outcome::Quarantine(reason) => {
                let held = Held {
                    envelope: envelope.clone(),
                    body: body_ref,
                    recipients: recipients.clone(),
                    scan,
                    at_ms: now_ms(),
                    stage,
                    reason,
                };
                if let Err(e) = quarantine::hold(inner, mid, held).await {
                    tracing::error!(mid, error = %e, "cannot quarantine; the message stays in Submission");
                    inner.lock().push_submission([mid]);
                }
                wq.left.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Outcome::Drop(reason) => {
                drop_message(inner, mid, envelope, recipients, stage, &reason).await;
                wq.left.fetch_add(1, Ordering::Relaxed);
                return false;
            }
            Outcome::Replace(stripped, reason) => {
                body = Some(Arc::new(stripped.clone()));
                replaced = Some(stripped);
                let mut ev = inner.event(EventId::Scan, mid, envelope);
                ev.source = Some(stage.as_str().into());
                ev.reply = Some(reason);
                inner.tracking.log(ev);
            }
        }
    }
    wq.left.fetch_add(1, Ordering::Relaxed);
    if let Some(stripped) = replaced {
        resubmit_stripped(inner, &taken, scan, stripped).await;
        return false;
    }
    let changed = inner.lock().set_scan(mid, scan);
    if changed {
        inner.record(vec![Record::Scanned { mid, scan }], "a scan verdict").await;
    }
    wq.scanned.lock().unwrap_or_else(|e| e.into_inner()).push(taken);
    wq.scanned_wake.notify_one();
    true
}

/// Runs `stage`'s engine on a blocking thread (reading the body first when no stage has). `None` when the
/// engine panicked on the message (counted as a crash of the message, `poison.rs`).
async fn scan_stage(
    inner: &Arc<Inner>,
    mid: Mid,
    body_ref: BodyRef,
    body: &mut Option<Arc<Vec<u8>>>,
    stage: ScanStage,
    scan: &mut Scan,
) -> Option<Outcome> {
    let wq = &inner.work_queue;
    let antispam = wq.antispam.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|i| i.set.clone());
    let antivirus = wq.antivirus.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|i| i.set.clone());
    let have = body.clone();
    let strip = wq.settings.virus_action == VirusAction::Strip;
    let db = inner.db.clone();
    let job = tokio::task::spawn_blocking(move || {
        let body = match have {
            Some(b) => b,
            None => Arc::new(db.read_body_of(mid, &body_ref).map_err(|e| e.to_string())?),
        };
        let verdict = match stage {
            ScanStage::Antispam => antispam.map(|rules| Verdict::Spam(rules.check(&body))),
            ScanStage::Antivirus => antivirus.map(|sigs| match sigs.scan(&body) {
                None => Verdict::Clean,
                Some(d) if strip => match sigs.strip(&body) {
                    Some((stripped, found)) => Verdict::Stripped(stripped, found),
                    None => Verdict::Virus(d),
                },
                Some(d) => Verdict::Virus(d),
            }),
        };
        Ok::<_, String>((body, verdict))
    });
    let (read, verdict) = match job.await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            // A body that cannot be read is not scanned and not passed: it waits in Submission (the queue
            // database's checks report the damage).
            tracing::error!(mid, error = %e, "cannot read a message body to scan it");
            inner.lock().push_submission([mid]);
            return None;
        }
        Err(join) => {
            let text = join.try_into_panic().map(|p| crate::poison::panic_text(p.as_ref())).unwrap_or_default();
            if !crate::poison::panicked(inner, mid, SUBMISSION, &format!("{} engine: {text}", stage.as_str())).await {
                inner.lock().push_submission([mid]);
                inner.categorizer_wake.notify_one();
            }
            return None;
        }
    };
    *body = Some(read);
    let settings = &wq.settings;
    let env = inner.lock().envelope(mid);
    let outcome = match verdict {
        None | Some(Verdict::Clean) => Outcome::Pass,
        Some(Verdict::Spam(v)) => {
            scan.scl = v.scl as i8;
            scan.score_tenths = (v.score * 10.0).round().clamp(i16::MIN as f64, i16::MAX as f64) as i16;
            let text = spam_text(&v);
            if settings.scl_delete.is_some_and(|d| v.scl >= d) {
                Outcome::Drop(text)
            } else if v.scl >= settings.scl_quarantine {
                Outcome::Quarantine(text)
            } else {
                if let Some(env) = &env {
                    let mut ev = inner.event(EventId::Scan, mid, env);
                    ev.recipients = env.recipients().map(|r| r.address.to_owned()).collect();
                    ev.source = Some(stage.as_str().into());
                    ev.reply = Some(text);
                    inner.tracking.log(ev);
                }
                Outcome::Pass
            }
        }
        Some(Verdict::Virus(d)) => {
            let text = virus_text(&d);
            match settings.virus_action {
                VirusAction::Drop => Outcome::Drop(text),
                _ => Outcome::Quarantine(text),
            }
        }
        Some(Verdict::Stripped(stripped, found)) => {
            let names: Vec<String> = found.iter().map(virus_text).collect();
            Outcome::Replace(stripped, format!("stripped: {}", names.join(", ")))
        }
    };
    Some(outcome)
}

enum Verdict {
    Clean,
    Spam(SpamVerdict),
    Virus(Detection),
    Stripped(Vec<u8>, Vec<Detection>),
}

/// `SCL 9 (score 1000.0: GTUBE)`
fn spam_text(v: &SpamVerdict) -> String {
    let hits = if v.hits.is_empty() { "no rules hit".to_owned() } else { v.hits.join(",") };
    format!("SCL {} (score {:.1}: {hits})", v.scl, v.score)
}

/// `virus Eicar-Test-Signature in eicar.com`
fn virus_text(d: &Detection) -> String {
    format!("virus {} in {}", d.name, d.part)
}

/// Drops a message a stage decided to drop (`scl_delete`, `virus_action = "drop"`): gone for good, counted
/// in `dropped_messages`, no notice.
async fn drop_message(inner: &Arc<Inner>, mid: Mid, env: &Envelope, recipients: &[u32], stage: ScanStage, why: &str) {
    inner.lock().finish_copy(mid, SUBMISSION);
    inner.record(vec![Record::CopyDone { mid, queue: SUBMISSION }], "a dropped message").await;
    inner.counters.add(Counter::DroppedMessages, 1);
    let mut ev = inner.event(EventId::Fail, mid, env);
    ev.recipients = recipients.iter().filter_map(|i| env.recipient(*i as usize)).map(|r| r.address.into()).collect();
    ev.source = Some(stage.as_str().into());
    ev.reply = Some(format!("dropped by {}: {why}", stage.as_str()));
    inner.tracking.log(ev);
}

/// A message whose infected parts were stripped: the new body is a new message (new MID, same envelope,
/// every stage done), durably queued before the old one is recorded done.
async fn resubmit_stripped(inner: &Arc<Inner>, taken: &Taken, scan: Scan, stripped: Vec<u8>) {
    let (mid, envelope, recipients) = taken;
    let mut parts = envelope.to_parts();
    let keep: Vec<_> = recipients.iter().filter_map(|i| parts.recipients.get(*i as usize).cloned()).collect();
    parts.recipients = keep;
    let new_mid = inner.db.allocate_mid();
    match inner.submit_scanned(new_mid, Envelope::from(parts), Body::Memory(stripped), scan).await {
        Ok(()) => {
            inner.lock().finish_copy(*mid, SUBMISSION);
            inner.record(vec![Record::CopyDone { mid: *mid, queue: SUBMISSION }], "a stripped message").await;
            let mut ev = inner.event(EventId::Resubmit, *mid, envelope);
            ev.reply = Some(format!("infected parts stripped; delivered as {new_mid}"));
            inner.tracking.log(ev);
        }
        Err(e) => {
            tracing::error!(mid = *mid, error = %e, "cannot queue the stripped message; the original waits in Submission");
            inner.lock().push_submission([*mid]);
        }
    }
}
