//! The categorizer: takes messages from Submission, routes every recipient, and replaces the Submission
//! copy with one copy per NextHopSolutionKey (bifurcation), or an Unreachable copy for recipients with no
//! route. Delivery queues are created here when the first recipient is routed to them.
//!
//! A batch is in process (its MIDs in the categorizer's slot of the in-process marker file) from before it
//! is routed until its copies are placed; suspects are routed alone, and a panic while one message is
//! routed is caught and blamed on it alone (`poison.rs`).

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_queue_db::{Envelope, Mid, QueueId, Record, SUBMISSION, UNREACHABLE};

use crate::Inner;
use crate::inprocess::Slot;
use crate::poison::{self, Stage};
use crate::queue::{NextHopSolutionKey, Queues};
use crate::routing::{Route, Routing, Target};

/// Messages taken from Submission per round.
pub(crate) const BATCH: usize = 256;

pub(crate) async fn run(inner: Arc<Inner>) {
    let mut slot = inner.in_process.categorizer();
    loop {
        // With the work queue on, it takes from Submission and hands on what it passed.
        let wake = if inner.work_queue.enabled() { &inner.work_queue.scanned_wake } else { &inner.categorizer_wake };
        let notified = wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        while categorize_batch(&inner, &mut slot).await {}
        tokio::select! {
            _ = &mut notified => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

/// A message taken from Submission: its MID, envelope and the recipients of its Submission copy.
pub(crate) type Taken = (Mid, Arc<Envelope>, Vec<u32>);

/// Routes up to one batch; returns whether there may be more. The suspects in it are routed alone, each in
/// a batch of its own, after the others.
async fn categorize_batch(inner: &Arc<Inner>, slot: &mut Slot) -> bool {
    let (mut batch, scans): (Vec<Taken>, Vec<Record>) = if inner.work_queue.enabled() {
        inner.work_queue.take_scanned(BATCH)
    } else {
        (inner.lock().take_submission(BATCH), Vec::new())
    };
    if batch.is_empty() {
        return false;
    }
    // The work queue's verdicts go to the log before the routes that follow them (one write per batch).
    if !scans.is_empty() {
        inner.record(scans, "the work queue's verdicts").await;
    }
    let mut suspects = Vec::new();
    if inner.gate.has_suspects() {
        let qs = inner.lock();
        let (s, normal): (Vec<Taken>, Vec<Taken>) =
            batch.into_iter().partition(|(mid, _, _)| qs.suspect(*mid).is_some());
        (suspects, batch) = (s, normal);
    }
    if !batch.is_empty() {
        categorize(inner, slot, batch, false).await;
    }
    for suspect in suspects {
        categorize(inner, slot, vec![suspect], true).await;
    }
    true
}

/// Routes one batch (`alone`: a suspect's batch of one), in process from before routing until its copies
/// are placed.
async fn categorize(inner: &Arc<Inner>, slot: &mut Slot, batch: Vec<Taken>, alone: bool) {
    let pass = inner.gate.enter(alone).await;
    slot.set(SUBMISSION, batch.iter().map(|(mid, _, _)| *mid));
    // Route outside the lock: routing may grow to lookups that take time.
    let (decisions, panicked) = route_batch(inner, &inner.routing(), &batch);
    let (records, placements) = replace_submission_copies(&mut inner.lock(), decisions);
    if inner.work_queue.enabled() {
        inner.work_queue.routed(batch.len());
    }
    // The route is written before any copy can be delivered, so the log never holds a delivery of a copy it
    // has not seen routed. Nobody waits for it to be durable: after a crash, routing is simply done again.
    inner.record(records, "routing").await;
    let mut kicked = Vec::new();
    {
        let mut qs = inner.lock();
        for (mid, queues) in &placements {
            for qid in queues {
                if qs.place_routed(*mid, *qid) {
                    kicked.push(*qid);
                }
            }
        }
    }
    for (mid, queues) in &placements {
        let Some((_, env, routed)) = batch.iter().find(|(m, _, _)| m == mid) else { continue };
        let mut ev = inner.event(crate::tracking::EventId::Route, *mid, env);
        ev.recipients =
            routed.iter().filter_map(|i| env.recipient(*i as usize)).map(|r| r.address.to_owned()).collect();
        ev.queue = Some(queues.iter().map(|q| inner.queue_identity(*q)).collect::<Vec<_>>().join(","));
        inner.tracking.log(ev);
    }
    kicked.sort_unstable();
    kicked.dedup();
    for qid in kicked {
        crate::worker::kick(inner, qid);
    }
    slot.clear();
    drop(pass);
    // A message whose routing panicked keeps its Submission copy: it is routed again, alone, unless it
    // reached the threshold.
    for (mid, payload) in panicked {
        let panic = poison::panic_text(payload.as_ref());
        drop(payload);
        if !poison::panicked(inner, mid, SUBMISSION, &panic).await {
            inner.lock().push_submission([mid]);
            inner.categorizer_wake.notify_one();
        }
    }
}

/// A message's recipients (those of its Submission copy) grouped by routing decision.
type Decision = (Mid, Vec<u32>, BTreeMap<RouteKey, Group>);

/// A caught panic's payload.
type Panic = Box<dyn std::any::Any + Send>;

/// Routes the recipients of each message's Submission copy: all of them for a new message, those that came
/// back (from Unreachable, a reload or a resubmission) for one routed before. A panic while one message is
/// routed is caught: that message is returned apart, with the panic, and the others are routed.
fn route_batch(inner: &Inner, routing: &Routing, batch: &[Taken]) -> (Vec<Decision>, Vec<(Mid, Panic)>) {
    let mut decisions = Vec::with_capacity(batch.len());
    let mut panicked = Vec::new();
    for taken in batch {
        let mid = taken.0;
        let routed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if inner.fault_injection {
                let body = inner.lock().body(mid);
                if let Some(body) = body {
                    poison::inject(inner, mid, &body, Stage::Categorizer);
                }
            }
            route_message(routing, taken)
        }));
        match routed {
            Ok(decision) => decisions.push(decision),
            Err(payload) => panicked.push((mid, payload)),
        }
    }
    (decisions, panicked)
}

/// Routes one message's recipients, grouped by routing decision.
fn route_message(routing: &Routing, (mid, env, routed): &Taken) -> Decision {
    let mut groups: BTreeMap<RouteKey, Group> = BTreeMap::new();
    for &i in routed {
        let Some(r) = env.recipient(i as usize) else { continue };
        let (key, target) = match routing.route(r.address) {
            Route::Deliver { key, target } => (RouteKey::Deliver(key), Some(target)),
            Route::Unreachable { reason } => {
                let recipient = sluice_smtp::printable(r.address);
                tracing::info!(mid, recipient = %recipient, reason, "no route; recipient is unreachable");
                (RouteKey::Unreachable, None)
            }
        };
        groups.entry(key).or_insert_with(|| Group { target, recipients: Vec::new() }).recipients.push(i);
    }
    (*mid, routed.clone(), groups)
}

/// Replaces each message's Submission copy with its routed copies, making delivery queues as needed. Returns
/// the records of it and, per message, the queues its copies are to be placed in.
fn replace_submission_copies(qs: &mut Queues, decisions: Vec<Decision>) -> (Vec<Record>, Vec<(Mid, Vec<QueueId>)>) {
    let mut records = Vec::new();
    let mut placements = Vec::new();
    for (mid, routed, groups) in decisions {
        let mut copies = Vec::new();
        for (key, group) in groups {
            let qid = match (key, group.target) {
                (RouteKey::Deliver(key), Some(target)) => {
                    let (id, created) = qs.queue_for(key, target);
                    records.extend(created);
                    id
                }
                // Unreachable; a next hop's group always has its target.
                _ => UNREACHABLE,
            };
            copies.push((qid, group.recipients));
        }
        if !qs.replace_submission_copy(mid, &routed, &copies) {
            continue;
        }
        placements.push((mid, copies.iter().map(|(q, _)| *q).collect()));
        records.push(Record::Route { mid, from: SUBMISSION, copies });
    }
    (records, placements)
}

/// A routing decision as a map key (keys are grouped per message). The derived order puts the next hops
/// first, by delivery type name, next-hop domain and connector, and Unreachable last.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum RouteKey {
    Deliver(NextHopSolutionKey),
    Unreachable,
}

/// The recipients of one message that share a routing decision, with the target of the first of them: the
/// target follows from the key, so it takes no part in the grouping. None for Unreachable.
struct Group {
    target: Option<Target>,
    recipients: Vec<u32>,
}
