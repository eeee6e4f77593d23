//! The categorizer: takes messages from Submission, routes every recipient, and replaces the Submission
//! copy with one copy per NextHopSolutionKey (bifurcation), or an Unreachable copy for recipients with no
//! route. Delivery queues are created here when the first recipient is routed to them.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_queue_db::{Envelope, Mid, QueueId, Record, SUBMISSION, UNREACHABLE};

use crate::Inner;
use crate::queue::{NextHopSolutionKey, Queues};
use crate::routing::{Route, Routing, Target};

/// Messages taken from Submission per round.
const BATCH: usize = 256;

pub(crate) async fn run(inner: Arc<Inner>) {
    loop {
        let notified = inner.categorizer_wake.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        while categorize_batch(&inner).await {}
        tokio::select! {
            _ = &mut notified => {}
            _ = inner.shutdown.cancelled() => return,
        }
    }
}

/// Routes up to one batch; returns whether there may be more.
async fn categorize_batch(inner: &Arc<Inner>) -> bool {
    let batch: Vec<(Mid, Arc<Envelope>, Vec<u32>)> = inner.lock().take_submission(BATCH);
    if batch.is_empty() {
        return false;
    }
    // Route outside the lock: routing may grow to lookups that take time.
    let decisions = route_batch(&inner.routing(), &batch);
    let (records, placements) = replace_submission_copies(&mut inner.lock(), decisions);
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
    true
}

/// A message's recipients (those of its Submission copy) grouped by routing decision.
type Decision = (Mid, Vec<u32>, BTreeMap<RouteKey, Group>);

/// Routes the recipients of each message's Submission copy: all of them for a new message, those that came
/// back (from Unreachable, a reload or a resubmission) for one routed before.
fn route_batch(routing: &Routing, batch: &[(Mid, Arc<Envelope>, Vec<u32>)]) -> Vec<Decision> {
    batch
        .iter()
        .map(|(mid, env, routed)| {
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
        })
        .collect()
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
