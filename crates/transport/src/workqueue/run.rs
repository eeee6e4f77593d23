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
use super::remote::{self, RemoteVerdict};
use super::{VirusAction, health, pause, rate};
use crate::Inner;
use crate::categorizer::Taken;
use crate::counters::Counter;
use crate::tracking::EventId;

pub(crate) async fn run(inner: Arc<Inner>) {
    let tasks = inner.tasks.clone();
    tasks.spawn(sample(inner.clone()));
    tasks.spawn(health::check_at_start(inner.clone()));
    let wq = &inner.work_queue;
    loop {
        let permit = tokio::select! {
            p = wq.permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = inner.shutdown.cancelled() => return,
        };
        let notified = inner.categorizer_wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Counted before they leave Submission's list, so that Submission's count never misses them.
        wq.in_process.fetch_add(RUN as u64, Ordering::Relaxed);
        let taken = inner.lock().take_submission(RUN);
        wq.in_process.fetch_sub((RUN - taken.len()) as u64, Ordering::Relaxed);
        match taken.len() {
            1.. => {
                wq.entered.fetch_add(taken.len() as u64, Ordering::Relaxed);
                let inner = inner.clone();
                tasks.spawn(async move {
                    let mut passed = Vec::with_capacity(taken.len());
                    for t in taken {
                        match process(&inner, t).await {
                            Some(p) => passed.push(p),
                            // A message not handed to the categorizer is no longer the work queue's; one
                            // handed on is counted until the categorizer has routed it.
                            None => {
                                inner.work_queue.in_process.fetch_sub(1, Ordering::Relaxed);
                            }
                        }
                    }
                    if !passed.is_empty() {
                        let wq = &inner.work_queue;
                        wq.scanned.lock().unwrap_or_else(|e| e.into_inner()).extend(passed);
                        wq.scanned_wake.notify_one();
                    }
                    drop(permit);
                });
            }
            0 => {
                drop(permit);
                tokio::select! {
                    _ = &mut notified => {}
                    _ = inner.shutdown.cancelled() => return,
                }
            }
        }
    }
}

/// A sample a second for the rate; quarantine retention every 5 seconds.
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
        if n.is_multiple_of(5) {
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

/// Messages one task takes from Submission at once (under load; one when they come one by one): the
/// categorizer then routes them in one batch, with one write of their verdicts.
const RUN: usize = 16;

/// Runs one message through the stages it still needs; returns it, with its verdicts when they changed, when
/// it passed (for the categorizer).
async fn process(inner: &Arc<Inner>, taken: Taken) -> Option<(Taken, Option<Scan>)> {
    let (mid, envelope, recipients) = &taken;
    let mid = *mid;
    let wq = &inner.work_queue;
    let Some((body_ref, mut scan)) = inner.lock().message(mid).map(|m| (m.body, m.scan())) else {
        wq.left.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let mut body: Option<Arc<Vec<u8>>> = None;
    let mut replaced: Option<Vec<u8>> = None;
    loop {
        let pending: Vec<ScanStage> =
            ScanStage::ALL.into_iter().filter(|s| !scan.is_done(*s) && wq.engine_on(*s)).collect();
        let Some(&first) = pending.first() else { break };
        if wq.settings.pass_on_failure && wq.stage(first).is_offline() {
            // `on_engine_failure = "pass"`: the engine is down, the message goes on stamped unscanned.
            pass_unscanned(inner, mid, envelope, first, &mut scan);
            continue;
        }
        tokio::select! {
            _ = wq.stage(first).wait_operational() => {}
            _ = inner.shutdown.cancelled() => return None,
        }
        let Some(message) = read_body(inner, mid, body_ref, &mut body).await else {
            wq.left.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        let verdicts = if let Some(engine) = wq.remote(first).cloned() {
            let to: Vec<&str> =
                recipients.iter().filter_map(|i| envelope.recipient(*i as usize)).map(|r| r.address).collect();
            let about = remote::Envelope { mid, from: envelope.from_address(), recipients: &to };
            match engine.scan(&message, &about).await {
                Ok(verdict) => vec![(first, Verdict::from_remote(verdict))],
                Err(e) => {
                    // The stage goes Offline; this message waits for it (or passes, stamped, with "pass").
                    tracing::warn!(mid, stage = first.as_str(), error = %e, "engine failed; the message waits");
                    health::failed(inner, first, &engine, &e);
                    continue;
                }
            }
        } else {
            // The built-in stages after it that run now go in the same job: the body is read and decoded once.
            let run: Vec<ScanStage> = pending
                .iter()
                .enumerate()
                .take_while(|(i, s)| *i == 0 || (wq.remote(**s).is_none() && wq.stage(**s).is_operational()))
                .map(|(_, s)| *s)
                .collect();
            let Some(verdicts) = scan_stages(inner, mid, body_ref, message, &run).await else {
                // An engine panicked on this message (then it is a suspect, or in Poison): it is tried again
                // from Submission.
                wq.left.fetch_add(1, Ordering::Relaxed);
                return None;
            };
            verdicts
        };
        for (stage, verdict) in verdicts {
            let outcome = judge(inner, mid, envelope, stage, verdict, &mut scan);
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
                    return None;
                }
                Outcome::Drop(reason) => {
                    drop_message(inner, mid, envelope, recipients, stage, &reason).await;
                    wq.left.fetch_add(1, Ordering::Relaxed);
                    return None;
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
    }
    wq.left.fetch_add(1, Ordering::Relaxed);
    if let Some(stripped) = replaced {
        resubmit_stripped(inner, &taken, scan, stripped).await;
        return None;
    }
    // The verdicts are recorded by the categorizer, just before the message's Route.
    let changed = inner.lock().set_scan(mid, &scan).then_some(scan);
    Some((taken, changed))
}

/// The message's stored bytes, read once per message for every stage (on a blocking thread when large). `None` when it cannot be read: it then waits in Submission (the queue database's checks report
/// the damage).
async fn read_body(
    inner: &Arc<Inner>,
    mid: Mid,
    body_ref: BodyRef,
    body: &mut Option<Arc<Vec<u8>>>,
) -> Option<Arc<Vec<u8>>> {
    if let Some(b) = body {
        return Some(b.clone());
    }
    let db = inner.db.clone();
    let read = if body_ref.len <= INLINE_SCAN_MAX {
        db.read_body_of(mid, &body_ref).map_err(|e| e.to_string())
    } else {
        tokio::task::spawn_blocking(move || db.read_body_of(mid, &body_ref).map_err(|e| e.to_string()))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    };
    match read {
        Ok(b) => {
            let b = Arc::new(b);
            *body = Some(b.clone());
            Some(b)
        }
        Err(e) => {
            tracing::error!(mid, error = %e, "cannot read a message body to scan it");
            inner.lock().push_submission([mid]);
            None
        }
    }
}

/// Lets a message past `stage` unscanned (its engine is offline and `on_engine_failure = "pass"`): stamped
/// so (`X-Sluice-Scan: unscanned`), and a `SCAN` tracking event says so.
fn pass_unscanned(inner: &Inner, mid: Mid, env: &Envelope, stage: ScanStage, scan: &mut Scan) {
    scan.done |= stage.bit() | Scan::UNSCANNED;
    let mut ev = inner.event(EventId::Scan, mid, env);
    ev.source = Some(stage.as_str().into());
    ev.reply = Some(format!("unscanned: the {} engine is offline (on_engine_failure = pass)", stage.as_str()));
    inner.tracking.log(ev);
}

/// Messages up to this size are scanned in their task rather than on a blocking thread.
const INLINE_SCAN_MAX: u64 = 256 * 1024;

/// Runs the built-in engines of `stages` once, on one decoding of `body`. `None` when an engine panicked on
/// the message (counted as a crash of the message, `poison.rs`); it then goes back to Submission.
async fn scan_stages(
    inner: &Arc<Inner>,
    mid: Mid,
    body_ref: BodyRef,
    body: Arc<Vec<u8>>,
    stages: &[ScanStage],
) -> Option<Vec<(ScanStage, Verdict)>> {
    let wq = &inner.work_queue;
    let antispam = wq.antispam.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|i| i.set.clone());
    let antivirus = wq.antivirus.read().unwrap_or_else(|e| e.into_inner()).as_ref().map(|i| i.set.clone());
    let strip = wq.settings.virus_action == VirusAction::Strip;
    let owned = stages.to_vec();
    let work = move || {
        let decoded = sluice_scan::mime::decode(&body);
        let mut verdicts = Vec::with_capacity(owned.len());
        for stage in owned {
            let verdict = match stage {
                ScanStage::Antispam => antispam.as_ref().map(|rules| Verdict::Spam(rules.check_decoded(&decoded))),
                ScanStage::Antivirus => antivirus.as_ref().map(|sigs| match sigs.scan_decoded(&decoded) {
                    None => Verdict::Clean,
                    Some(d) if strip => match sigs.strip_decoded(&decoded) {
                        Some((stripped, found)) => Verdict::Stripped(stripped, found),
                        None => Verdict::Virus(d),
                    },
                    Some(d) => Verdict::Virus(d),
                }),
            };
            verdicts.push((stage, verdict.unwrap_or(Verdict::Clean)));
        }
        drop(decoded);
        verdicts
    };
    // A message of the usual size is scanned in its task (tens of microseconds, less than a hand-off to the
    // blocking pool costs); a large one on a blocking thread, off the runtime that serves SMTP.
    // In process from here until the verdicts are in: a crash of the process now blames this message
    // (`poison.rs`), and a suspect is scanned alone.
    let suspect = inner.lock().suspect(mid).is_some();
    let pass = inner.gate.enter(suspect).await;
    let mut slot = inner.in_process.worker();
    slot.set(SUBMISSION, [mid]);
    let injected = if inner.fault_injection {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for stage in stages {
                let at = match stage {
                    ScanStage::Antispam => crate::poison::Stage::Antispam,
                    ScanStage::Antivirus => crate::poison::Stage::Antivirus,
                };
                crate::poison::inject(inner, mid, &body_ref, at);
            }
        }))
    } else {
        Ok(())
    };
    let done = if let Err(payload) = injected {
        Err(payload)
    } else if body_ref.len <= INLINE_SCAN_MAX {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
    } else {
        tokio::task::spawn_blocking(work).await.map_err(|join| match join.try_into_panic() {
            Ok(payload) => payload,
            Err(e) => Box::new(e.to_string()),
        })
    };
    slot.clear();
    drop(slot);
    drop(pass);
    match done {
        Ok(verdicts) => Some(verdicts),
        Err(payload) => {
            let text = crate::poison::panic_text(payload.as_ref());
            drop(payload);
            let names = stages.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("+");
            if !crate::poison::panicked(inner, mid, SUBMISSION, &format!("{names} engine: {text}")).await {
                inner.lock().push_submission([mid]);
                inner.categorizer_wake.notify_one();
            }
            None
        }
    }
}

/// What a stage's verdict means for the message, by the configured actions; the anti-spam verdict is
/// stamped on `scan`, and a spam verdict that passes is a `SCAN` tracking event.
fn judge(inner: &Inner, mid: Mid, env: &Envelope, stage: ScanStage, verdict: Verdict, scan: &mut Scan) -> Outcome {
    let settings = &inner.work_queue.settings;
    match verdict {
        Verdict::Clean => Outcome::Pass,
        Verdict::Spam(v) => {
            scan.scl = v.scl as i8;
            scan.score_tenths = (v.score * 10.0).round().clamp(i16::MIN as f64, i16::MAX as f64) as i16;
            scan.tests = sluice_queue_db::intern_tests(v.hits.iter().map(String::as_str));
            let text = spam_text(&v);
            if settings.scl_delete.is_some_and(|d| v.scl >= d) {
                Outcome::Drop(text)
            } else if v.scl >= settings.scl_quarantine {
                Outcome::Quarantine(text)
            } else {
                let mut ev = inner.event(EventId::Scan, mid, env);
                ev.recipients = env.recipients().map(|r| r.address.to_owned()).collect();
                ev.source = Some(stage.as_str().into());
                ev.reply = Some(text);
                inner.tracking.log(ev);
                Outcome::Pass
            }
        }
        Verdict::Virus(d) => {
            let text = virus_text(&d);
            match settings.virus_action {
                VirusAction::Drop => Outcome::Drop(text),
                _ => Outcome::Quarantine(text),
            }
        }
        Verdict::TooLarge(why) if stage == ScanStage::Antispam => {
            let mut ev = inner.event(EventId::Scan, mid, env);
            ev.source = Some(stage.as_str().into());
            ev.reply = Some(why);
            inner.tracking.log(ev);
            Outcome::Pass
        }
        Verdict::TooLarge(why) => Outcome::Quarantine(format!("not scanned: {why}")),
        Verdict::Stripped(stripped, found) => {
            let names: Vec<String> = found.iter().map(virus_text).collect();
            Outcome::Replace(stripped, format!("stripped: {}", names.join(", ")))
        }
    }
}

enum Verdict {
    Clean,
    Spam(SpamVerdict),
    Virus(Detection),
    Stripped(Vec<u8>, Vec<Detection>),
    /// A network engine declined the message for its size: the anti-spam stage passes it unscored (as
    /// spamc does), the anti-virus stage quarantines it (never delivered unscanned).
    TooLarge(String),
}

impl Verdict {
    fn from_remote(verdict: RemoteVerdict) -> Verdict {
        match verdict {
            RemoteVerdict::Clean => Verdict::Clean,
            // clamd scans the whole message; it does not say which part.
            RemoteVerdict::Virus(name) => Verdict::Virus(Detection { name, part: "message".into() }),
            RemoteVerdict::Spam { score, scl, symbols } => {
                Verdict::Spam(SpamVerdict { score, scl, gtube: symbols.iter().any(|s| s == "GTUBE"), hits: symbols })
            }
            RemoteVerdict::TooLarge(why) => Verdict::TooLarge(why),
        }
    }
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
