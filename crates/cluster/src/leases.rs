//! Connection leases: a delivery worker holds one for each connection it opens to a next hop, so that
//! all nodes together keep to `max_per_domain_outbound_connections`. A lease lives in Redis for
//! [`LEASE_TTL`] and is renewed at a third of it while held; a node that dies loses its leases when they
//! expire. When Redis cannot be reached, the node keeps to its share of the limit (limit / live nodes, at
//! least 1), counted locally, and goes back to Redis by itself once it answers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::Shared;

/// How long a lease lives without renewal.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(30);
/// Waiting for a lease: the first and the longest pause between tries.
const FIRST_WAIT: Duration = Duration::from_millis(20);
const LONGEST_WAIT: Duration = Duration::from_millis(400);

/// A held lease; given back when dropped.
pub(crate) struct Held {
    shared: Arc<Shared>,
    domain: String,
    /// The member in Redis, or `None` for a lease of the local share.
    id: Option<String>,
    renewal: Option<tokio::task::AbortHandle>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(r) = self.renewal.take() {
            r.abort();
        }
        {
            let mut held = self.shared.held.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = held.get_mut(&self.domain) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    held.remove(&self.domain);
                }
            }
        }
        if let Some(id) = self.id.take() {
            let (shared, domain) = (self.shared.clone(), std::mem::take(&mut self.domain));
            // Off the worker's path; a release that fails leaves the lease to expire.
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Err(e) = shared.redis.release(&domain, &id).await {
                        tracing::debug!(error = %e, domain, "cannot release a connection lease; it expires");
                    }
                });
            }
        }
    }
}

/// Waits for one of the cluster's `limit` connections to `domain`.
pub(crate) async fn acquire(shared: Arc<Shared>, domain: String, limit: usize) -> Held {
    let mut wait = FIRST_WAIT;
    loop {
        let n = shared.next_lease.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}:{n}", shared.config.node);
        match shared.redis.acquire(&domain, &id, limit, LEASE_TTL).await {
            Ok(true) => {
                count(&shared, &domain, usize::MAX);
                let renewal = tokio::spawn(renew(shared.clone(), domain.clone(), id.clone())).abort_handle();
                mark_reachable(&shared);
                return Held { shared, domain, id: Some(id), renewal: Some(renewal) };
            }
            Ok(false) => {
                mark_reachable(&shared);
                // Idle connections of other nodes look for this and give their leases up.
                let _ = shared.redis.want_lease(&domain).await;
            }
            Err(e) => {
                crate::Cluster { shared: shared.clone() }.redis_unreachable(&e);
                let share = (limit / shared.live_nodes.load(Ordering::Relaxed).max(1)).max(1);
                if count(&shared, &domain, share) {
                    return Held { shared, domain, id: None, renewal: None };
                }
            }
        }
        // Spread out, so that waiting workers of several nodes do not try in step.
        let jitter = Duration::from_millis(u64::from(std::process::id() % 7) + n % 13);
        tokio::time::sleep(wait + jitter).await;
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}

/// Counts one more lease held for `domain` if fewer than `below` are; says whether it did.
fn count(shared: &Shared, domain: &str, below: usize) -> bool {
    let mut held = shared.held.lock().unwrap_or_else(|e| e.into_inner());
    let n = held.entry(domain.to_owned()).or_insert(0);
    if *n < below {
        *n += 1;
        true
    } else {
        false
    }
}

fn mark_reachable(shared: &Arc<Shared>) {
    if shared.fallback.load(Ordering::Relaxed) {
        crate::Cluster { shared: shared.clone() }.redis_reachable();
    }
}

/// Renews a lease at a third of its life until aborted (the lease was given back).
async fn renew(shared: Arc<Shared>, domain: String, id: String) {
    loop {
        tokio::time::sleep(LEASE_TTL / 3).await;
        match shared.redis.renew(&domain, &id, LEASE_TTL).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(domain, lease = id, "a connection lease expired while held; the connection goes on");
                return;
            }
            Err(e) => tracing::debug!(error = %e, domain, "cannot renew a connection lease"),
        }
    }
}
