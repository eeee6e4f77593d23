//! The categorizer: takes messages from Submission, routes every recipient, and replaces the Submission
//! copy with one copy per NextHopSolutionKey (bifurcation), or an Unreachable copy for recipients with no
//! route. Delivery queues are created here when the first recipient is routed to them.

use std::collections::BTreeMap;
use std::sync::Arc;

use sluice_queue_db::{Mid, QueueId, Record, SUBMISSION, UNREACHABLE};

use crate::Inner;
use crate::queue::NextHopSolutionKey;
use crate::routing::{Route, Target};

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
    let batch: Vec<(Mid, Arc<sluice_queue_db::Envelope>)> = inner.lock().take_submission(BATCH);
    if batch.is_empty() {
        return false;
    }
    let routing = inner.routing();
    // Route outside the lock: routing may grow to lookups that take time.
    let decisions: Vec<(Mid, BTreeMap<RouteKey, Vec<u32>>)> = batch
        .iter()
        .map(|(mid, env)| {
            let mut groups: BTreeMap<RouteKey, Vec<u32>> = BTreeMap::new();
            for (i, r) in env.recipients().enumerate() {
                let key = match routing.route(r.address) {
                    Route::Deliver { key, target } => RouteKey::Deliver(OrdKey(key), OrdTarget(target)),
                    Route::Unreachable { reason } => {
                        tracing::info!(mid, recipient = %sluice_smtp::printable(r.address), reason, "no route; recipient is unreachable");
                        RouteKey::Unreachable
                    }
                };
                groups.entry(key).or_default().push(i as u32);
            }
            (*mid, groups)
        })
        .collect();

    let mut records = Vec::new();
    let mut placements: Vec<(Mid, Vec<QueueId>)> = Vec::new();
    {
        let mut qs = inner.lock();
        for (mid, groups) in decisions {
            let mut copies = Vec::new();
            for (key, rcpts) in groups {
                let qid = match key {
                    RouteKey::Unreachable => UNREACHABLE,
                    RouteKey::Deliver(OrdKey(key), OrdTarget(target)) => {
                        let (id, created) = qs.queue_for(key, target);
                        records.extend(created);
                        id
                    }
                };
                copies.push((qid, rcpts));
            }
            if !qs.replace_submission_copy(mid, &copies) {
                continue;
            }
            placements.push((mid, copies.iter().map(|(q, _)| *q).collect()));
            records.push(Record::Route { mid, from: SUBMISSION, copies });
        }
    }
    // The route is written before any copy can be delivered, so the log never holds a delivery of a copy it
    // has not seen routed. Nobody waits for it to be durable: after a crash, routing is simply done again.
    if inner.db.record(records).await.is_err() {
        tracing::error!("cannot record routing; the queue database stopped");
    }
    let mut kicked = Vec::new();
    {
        let mut qs = inner.lock();
        for (mid, queues) in &placements {
            for qid in queues {
                if qs.place(*mid, *qid, None) {
                    kicked.push(*qid);
                }
            }
        }
    }
    for (mid, queues) in &placements {
        let Some(env) = batch.iter().find(|(m, _)| m == mid).map(|(_, e)| e.clone()) else { continue };
        let mut ev = inner.event(crate::tracking::EventId::Route.as_str(), *mid, &env);
        ev.recipients = env.recipients().map(|r| r.address.to_owned()).collect();
        ev.queue = Some(queues.iter().map(|q| inner.queue_identity(*q)).collect::<Vec<_>>().join(","));
        inner.tracking.log(ev);
    }
    kicked.sort_unstable();
    kicked.dedup();
    for qid in kicked {
        crate::delivery::kick(inner, qid);
    }
    true
}

/// A routing decision as a map key (keys are grouped per message).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum RouteKey {
    Deliver(OrdKey, OrdTarget),
    Unreachable,
}

#[derive(PartialEq, Eq)]
struct OrdKey(NextHopSolutionKey);
impl PartialOrd for OrdKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.delivery_type.as_str(), &self.0.next_hop_domain, &self.0.next_hop_connector).cmp(&(
            other.0.delivery_type.as_str(),
            &other.0.next_hop_domain,
            &other.0.next_hop_connector,
        ))
    }
}

/// The target follows from the key; it takes no part in ordering.
struct OrdTarget(Target);
impl PartialEq for OrdTarget {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for OrdTarget {}
impl PartialOrd for OrdTarget {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OrdTarget {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}
