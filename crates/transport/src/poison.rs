//! Poison messages: a message that crashes the server (an abort, a SIGKILL during processing, a panic) is
//! blamed for it, and after `poison_threshold` crashes it goes to the Poison queue, suspended for good,
//! instead of crashing the server on every start.
//!
//! - Before the categorizer routes a batch, and before a worker hands a copy to the delivery agent, the MIDs
//!   go into the task's slot of the in-process marker file (`inprocess.rs`); they are cleared after. At
//!   start, every MID left in the file was in process at an unclean stop: its crash count is raised, durably,
//!   before anything runs ([`blame_left`]).
//! - A panic while one message is categorized, or while one copy is delivered, is caught and counts the same
//!   as a crash of the process ([`panicked`]); the process stays up.
//! - A message with a crash count below the threshold is a suspect, processed alone ([`Gate`]), so that an
//!   innocent message batched with a poison one is blamed once at most, never up to the threshold.
//! - `[debug] fault_injection` makes the header `X-Sluice-Fault: abort@<stage>` or `panic@<stage>` (stages
//!   `categorizer`, `delivery`) do what it says, for tests ([`inject`]).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Context, Poll};

use sluice_queue_db::{BodyRef, CommitError, Mid, POISON, QueueId, Record, SUBMISSION};
use tokio::sync::{Notify, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::tracking::EventId;
use crate::{AlertClass, Inner, Severity};

/// Keeps suspects alone: while a suspect is in process (categorized or delivered), nothing else is, in any
/// stage, and a suspect waits until nothing else is in process before it starts.
///
/// Why across stages: a crash blames every MID in the marker file, whichever task's slot holds it. Were a
/// suspect delivered while the categorizer routed a batch with a poison message in it, the suspect would be
/// blamed a second time for the poison message's crash and reach a threshold of 2 without ever having crashed
/// anything. So a suspect holds the gate exclusively ([`Gate::alone`]), and every other step of processing
/// holds it shared ([`Gate::normal`]).
///
/// Why it is correct without a lock while there are no suspects: a normal step first counts itself in
/// `unguarded`, then reads the count of suspects; it goes on without the lock only if that is 0. A suspect
/// is counted (`Queues::set_suspect`) before it asks for the gate, and [`Gate::alone`], once it holds the
/// lock, waits for `unguarded` to be 0. All four operations are `SeqCst`, so in their one total order
/// either the normal step's read of the suspects comes after the suspect was counted (it sees it, and takes
/// the lock shared, behind the waiting writer: tokio's `RwLock` is fair), or its count in `unguarded` comes
/// before the suspect's read of `unguarded` (the suspect sees it and waits for it to end). So no step runs
/// beside a suspect, and without suspects the normal path costs two atomic operations on one counter and two
/// loads, no lock.
///
/// A suspect stays one until its message leaves (delivered, expired, removed, or moved to Poison): the count
/// does not say in which stage it crashed, and one copy's clean attempt says nothing of another's. Suspects
/// are rare, and while one waits in a queue the other steps take the lock shared: uncontended, an atomic
/// operation more.
pub(crate) struct Gate {
    /// `Queues::suspects`' length, kept by `Queues`.
    suspects: Arc<AtomicUsize>,
    /// Normal steps in process without the lock.
    unguarded: AtomicUsize,
    lock: RwLock<()>,
    /// Woken when `unguarded` falls to 0.
    drained: Notify,
}

/// Leave to process: held from before a step's marker is written until after it is cleared. The guards are
/// never read, only held until the pass is dropped.
pub(crate) enum Pass<'a> {
    /// A normal step while there were no suspects.
    Free(&'a Gate),
    /// A normal step while there are suspects.
    Shared(#[allow(dead_code)] RwLockReadGuard<'a, ()>),
    /// A suspect's step.
    Alone(#[allow(dead_code)] RwLockWriteGuard<'a, ()>),
}

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        // Only a suspect waits for `unguarded` to drain, and it is counted in `suspects` all the while (before
        // it read `unguarded`): the last step out sees it by the same argument as above, and the common case,
        // no suspects, takes no lock here either.
        if let Pass::Free(gate) = self
            && gate.unguarded.fetch_sub(1, SeqCst) == 1
            && gate.suspects.load(SeqCst) > 0
        {
            gate.drained.notify_waiters();
        }
    }
}

impl Gate {
    pub(crate) fn new(suspects: Arc<AtomicUsize>) -> Gate {
        Gate { suspects, unguarded: AtomicUsize::new(0), lock: RwLock::new(()), drained: Notify::new() }
    }

    /// Whether any message is a suspect now (a hint: the categorizer looks for suspects in a batch only then).
    pub(crate) fn has_suspects(&self) -> bool {
        self.suspects.load(SeqCst) > 0
    }

    /// Leave for a suspect's step (`alone`) or another one.
    pub(crate) async fn enter(&self, alone: bool) -> Pass<'_> {
        if alone { self.alone().await } else { self.normal().await }
    }

    /// Leave for a step that is not a suspect's.
    pub(crate) async fn normal(&self) -> Pass<'_> {
        self.unguarded.fetch_add(1, SeqCst);
        if self.suspects.load(SeqCst) == 0 {
            return Pass::Free(self);
        }
        drop(Pass::Free(self));
        Pass::Shared(self.lock.read().await)
    }

    /// Leave for a suspect's step: once nothing else is in process.
    pub(crate) async fn alone(&self) -> Pass<'_> {
        let exclusive = self.lock.write().await;
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.unguarded.load(SeqCst) == 0 {
                return Pass::Alone(exclusive);
            }
            drained.await;
        }
    }
}

/// The stages a fault can be injected in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Antispam,
    Antivirus,
    Categorizer,
    Delivery,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Antispam => "antispam",
            Stage::Antivirus => "antivirus",
            Stage::Categorizer => "categorizer",
            Stage::Delivery => "delivery",
        }
    }
}

/// What an `X-Sluice-Fault` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Abort,
    Panic,
}

/// With `[debug] fault_injection`, does what the message's `X-Sluice-Fault` header asks for at `stage`:
/// aborts the process (its marker is written by then) or panics. The caller checks
/// `Inner::fault_injection` first, so that nothing is read when it is off.
pub(crate) fn inject(inner: &Inner, mid: Mid, body: &BodyRef, stage: Stage) {
    let Some(fault) = read_fault(inner, mid, body, stage) else { return };
    match fault {
        Fault::Abort => {
            tracing::error!(mid, stage = stage.as_str(), "fault injection: aborting the process");
            std::process::abort();
        }
        Fault::Panic => panic!("fault injection: panic@{} for message {mid}", stage.as_str()),
    }
}

/// The fault the header section of the body of `mid` asks for at `stage`, if any.
fn read_fault(inner: &Inner, mid: Mid, body: &BodyRef, stage: Stage) -> Option<Fault> {
    let source = inner.db.body_source(mid, body).ok()?;
    // The header section is in the first piece: receive refuses longer header sections.
    let head = source.chunks().next_chunk(256 * 1024).ok()??;
    header_fault(&head, stage)
}

/// The fault an `X-Sluice-Fault: abort@<stage>` or `panic@<stage>` field of this header section asks for.
fn header_fault(head: &[u8], stage: Stage) -> Option<Fault> {
    const NAME: &[u8] = b"x-sluice-fault:";
    for line in head.split(|b| *b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None;
        }
        if line.len() < NAME.len() || !line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            continue;
        }
        let value = String::from_utf8_lossy(&line[NAME.len()..]).trim().to_ascii_lowercase();
        let Some((what, at)) = value.split_once('@') else { continue };
        if at != stage.as_str() {
            continue;
        }
        match what {
            "abort" => return Some(Fault::Abort),
            "panic" => return Some(Fault::Panic),
            _ => {}
        }
    }
    None
}

/// A future whose panic is caught and returned: one copy's delivery attempt. `F` is a boxed or pinned
/// future (`Unpin`), so that nothing more is allocated.
pub(crate) struct CatchUnwind<F>(pub(crate) F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = &mut self.0;
        // The future is dropped after a panic, never polled again: whatever state it left is not seen.
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(&mut *fut).poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(out)) => Poll::Ready(Ok(out)),
            Err(payload) => Poll::Ready(Err(payload)),
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// At start, before anything is processed: raises the crash count of every message the last run left in
/// process (it stopped uncleanly), moves those at the threshold to Poison, and commits it all durably.
pub(crate) async fn blame_left(inner: &Arc<Inner>) -> Result<(), CommitError> {
    let left = inner.in_process.left_by_last_run();
    if left.is_empty() {
        return Ok(());
    }
    let threshold = inner.routing().limits.poison_threshold.max(1);
    let mut records = Vec::new();
    let mut poisoned = Vec::new();
    let mut blamed = 0;
    {
        let mut qs = inner.lock();
        let mut i = 0;
        while i < left.len() {
            let mid = left[i].0;
            // Every queue the message was in process from (two copies with two workers).
            let queues: Vec<QueueId> = left[i..].iter().take_while(|(m, _)| *m == mid).map(|(_, q)| *q).collect();
            i += queues.len();
            let copies = qs.processable_copies(mid);
            if copies.is_empty() {
                // Finished, or already in Poison or Unreachable: nothing to blame.
                continue;
            }
            let count = qs.suspect(mid).unwrap_or(0) + 1;
            records.push(Record::CrashCount { mid, count });
            blamed += 1;
            if count < threshold {
                qs.set_suspect(mid, Some(count));
                continue;
            }
            // The copies that were in process; all of them if the log lost the move to where they were.
            let named: Vec<QueueId> = copies.iter().copied().filter(|q| queues.contains(q)).collect();
            for q in if named.is_empty() { copies } else { named } {
                records.extend(qs.move_to_poison(mid, q).into_iter().flatten());
            }
            poisoned.push((mid, count));
        }
    }
    tracing::warn!(
        messages = blamed,
        poisoned = poisoned.len(),
        "crash counts raised for the messages in process at an unclean stop"
    );
    inner.db.commit(records).await?;
    for (mid, count) in poisoned {
        announce(inner, mid, count);
    }
    Ok(())
}

/// A panic (its message `panic`) was caught while `mid`, taken from `from`, was processed: its crash count is raised (durably),
/// and at the threshold the copy goes to Poison. Returns whether it did; if not, the caller puts the copy
/// back, and it is processed again alone.
pub(crate) async fn panicked(inner: &Arc<Inner>, mid: Mid, from: QueueId, panic: &str) -> bool {
    let threshold = inner.routing().limits.poison_threshold.max(1);
    let (count, mut records) = {
        let mut qs = inner.lock();
        let count = qs.suspect(mid).unwrap_or(0) + 1;
        let records = if count >= threshold {
            qs.move_to_poison(mid, from)
        } else {
            qs.set_suspect(mid, Some(count));
            Some(Vec::new())
        };
        (count, records)
    };
    let poisoned = records.as_ref().is_some_and(|r| !r.is_empty());
    tracing::error!(
        mid,
        queue = from,
        crash_count = count,
        panic = %sluice_smtp::printable(panic),
        "a panic while processing a message was caught; it counts as a crash"
    );
    let mut all = vec![Record::CrashCount { mid, count }];
    all.extend(records.take().into_iter().flatten());
    if inner.db.commit(all).await.is_err() {
        tracing::error!(mid, "cannot record a crash count; the queue database stopped");
    }
    if poisoned {
        announce(inner, mid, count);
    }
    poisoned
}

/// Tells that `mid` went to Poison: the log, the tracking log and an alert.
fn announce(inner: &Inner, mid: Mid, count: u32) {
    tracing::error!(mid, crash_count = count, "a message that crashed the server was moved to Poison, suspended");
    let envelope = inner.lock().envelope(mid);
    if let Some(env) = envelope {
        let mut ev = inner.event(EventId::PoisonMessage, mid, &env);
        ev.recipients = env.recipients().map(|r| r.address.to_owned()).collect();
        ev.queue = Some(inner.queue_identity(POISON));
        inner.tracking.log(ev);
    }
    inner.alerts.raise(
        AlertClass::Queue,
        Severity::Warning,
        format!(
            "message {mid} crashed the server {count} times and was moved to {}, suspended; \
             resume it to try again, or remove it",
            inner.queue_identity(POISON)
        ),
    );
}

/// Resumes a message in Poison: its crash count goes back to 0 and its Poison copy to Submission (durably),
/// to be categorized again, alone; the `RESUBMIT` event names `origin` (who asked). Returns false when `mid`
/// has no Poison copy (or it could not be recorded).
pub(crate) async fn resume_poison(inner: &Arc<Inner>, mid: Mid, origin: Option<&str>) -> bool {
    let (route, envelope) = {
        let mut qs = inner.lock();
        let Some(route) = qs.poison_to_submission(mid) else { return false };
        (route, qs.envelope(mid))
    };
    let records = vec![
        route,
        Record::MessageSuspend { mid, queue: POISON, suspended: false },
        Record::CrashCount { mid, count: 0 },
    ];
    if inner.db.commit(records).await.is_err() {
        tracing::error!(mid, "cannot resume a message from Poison; the queue database stopped");
        return false;
    }
    // On Submission's list only now: the categorizer's Route must follow the one that moved it.
    inner.lock().push_submission([mid]);
    if let Some(env) = envelope {
        let mut ev = inner.event(EventId::Resubmit, mid, &env);
        ev.queue = Some(inner.queue_identity(SUBMISSION));
        ev.source = origin.map(str::to_owned);
        inner.tracking.log(ev);
    }
    tracing::info!(mid, "message resumed from Poison; it is categorized again, alone");
    inner.categorizer_wake.notify_one();
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_header_is_read_from_the_header_section_only_and_for_its_stage() {
        let head = b"Received: from x\r\nSubject: s\r\nx-sluice-fault:  Abort@Categorizer \r\n\r\nbody\r\n";
        assert_eq!(header_fault(head, Stage::Categorizer), Some(Fault::Abort));
        assert_eq!(header_fault(head, Stage::Delivery), None);
        let head = b"Subject: s\r\nX-Sluice-Fault: panic@delivery\r\n\r\n";
        assert_eq!(header_fault(head, Stage::Delivery), Some(Fault::Panic));
        let in_body = b"Subject: s\r\n\r\nX-Sluice-Fault: panic@delivery\r\n";
        assert_eq!(header_fault(in_body, Stage::Delivery), None);
        let unknown = b"X-Sluice-Fault: hang@delivery\r\nX-Sluice-Faulty: panic@delivery\r\n\r\n";
        assert_eq!(header_fault(unknown, Stage::Delivery), None);
    }

    #[tokio::test]
    async fn a_panic_in_a_future_is_caught_and_its_message_kept() {
        let ok: Pin<Box<dyn Future<Output = u32> + Send>> = Box::pin(async { 7 });
        assert_eq!(CatchUnwind(ok).await.unwrap(), 7);
        let boom: Pin<Box<dyn Future<Output = u32> + Send>> = Box::pin(async {
            tokio::task::yield_now().await;
            panic!("boom {}", 1)
        });
        let payload = CatchUnwind(boom).await.unwrap_err();
        assert_eq!(panic_text(payload.as_ref()), "boom 1");
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspect_waits_for_the_steps_in_process_and_keeps_new_ones_out() {
        let suspects = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Gate::new(suspects.clone()));
        let normal = gate.normal().await;
        assert!(matches!(normal, Pass::Free(_)), "no suspects: no lock");
        // A message becomes a suspect while a normal step is in process.
        suspects.store(1, SeqCst);
        let g = gate.clone();
        let alone = tokio::spawn(async move {
            let _pass = g.alone().await;
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(!alone.is_finished(), "the suspect waits for the step in process");
        // A new normal step waits behind the suspect.
        let g = gate.clone();
        let later = tokio::spawn(async move {
            let pass = g.normal().await;
            assert!(matches!(pass, Pass::Shared(_)));
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert!(!later.is_finished());
        drop(normal);
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        assert!(!later.is_finished(), "the suspect's step is in process");
        alone.await.unwrap();
        later.await.unwrap();
    }
}
