//! Per-destination status (ESA's `tophosts` and `hoststatus`, `GET /api/v1/tophosts` and
//! `GET /api/v1/hosts/{domain}`): for each next hop domain, what is queued for it now and what happened to
//! its recipients since the server started.
//!
//! The outcome counters of a domain are a [`HostCounters`] of atomics, shared by its delivery queues
//! (`DeliveryQueue::host`) and by each copy a worker takes from them (`Job::host`): a worker counts an
//! outcome with relaxed additions, beside the server's counters, and takes no lock for it. The index from
//! domain to counters ([`HostIndex`]) lives in the queues' state, under the queues' lock that is already held
//! where a queue is made or the status is read.
//!
//! **Bound**: a domain's counters outlive its queues (a queue is deleted once idle) so that `hoststatus`
//! still shows what happened, but not for ever: an entry that no queue or attempt holds and that saw no
//! outcome for [`MAX_IDLE`] is dropped. The index is pruned when it has grown to twice its size after the
//! last pruning (at least [`PRUNE_FLOOR`] entries), so pruning costs amortized O(1) per queue made.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use sluice_api_types as api;
use sluice_queue_db::{QueueId, time::now_ms};

use crate::Transport;

/// How long a domain without a queue and without outcomes keeps its counters.
pub const MAX_IDLE: Duration = Duration::from_secs(24 * 3600);

/// The index is not pruned below this many entries.
const PRUNE_FLOOR: usize = 1024;

/// The outcomes of one domain's recipients since start.
#[derive(Debug)]
pub(crate) struct HostCounters {
    delivered: AtomicU64,
    soft_bounced: AtomicU64,
    hard_bounced: AtomicU64,
    /// The last outcome (wall clock, ms); 0 before the first.
    last_ms: AtomicI64,
    /// When the entry was made (for idleness before any outcome).
    made_ms: i64,
}

impl HostCounters {
    fn new(now_ms: i64) -> HostCounters {
        HostCounters {
            delivered: AtomicU64::new(0),
            soft_bounced: AtomicU64::new(0),
            hard_bounced: AtomicU64::new(0),
            last_ms: AtomicI64::new(0),
            made_ms: now_ms,
        }
    }

    /// Counts an attempt's outcomes: recipients delivered, failed for good, and deferred.
    pub(crate) fn count(&self, delivered: u64, failed: u64, deferred: u64) {
        for (c, n) in [(&self.delivered, delivered), (&self.hard_bounced, failed), (&self.soft_bounced, deferred)] {
            if n > 0 {
                c.fetch_add(n, Relaxed);
            }
        }
        self.last_ms.store(now_ms(), Relaxed);
    }

    fn last_activity_ms(&self) -> Option<i64> {
        Some(self.last_ms.load(Relaxed)).filter(|ms| *ms > 0)
    }
}

/// Domain (lower case) → its counters.
#[derive(Debug, Default)]
pub(crate) struct HostIndex {
    hosts: HashMap<String, Arc<HostCounters>>,
    prune_at: usize,
}

impl HostIndex {
    /// The counters of `domain`, made if it has none.
    pub(crate) fn counters_for(&mut self, domain: &str) -> Arc<HostCounters> {
        let key = domain.to_ascii_lowercase();
        if let Some(c) = self.hosts.get(&key) {
            return c.clone();
        }
        let now = now_ms();
        if self.hosts.len() >= self.prune_at.max(PRUNE_FLOOR) {
            self.prune(now);
            self.prune_at = self.hosts.len() * 2;
        }
        self.hosts.entry(key).or_insert_with(|| Arc::new(HostCounters::new(now))).clone()
    }

    /// Drops the entries nothing holds that were idle for [`MAX_IDLE`].
    fn prune(&mut self, now: i64) {
        let max_idle = MAX_IDLE.as_millis() as i64;
        self.hosts.retain(|_, c| {
            let since = c.last_activity_ms().unwrap_or(c.made_ms);
            Arc::strong_count(c) > 1 || now.saturating_sub(since) < max_idle
        });
    }

    #[cfg(test)]
    fn get(&self, domain: &str) -> Option<&Arc<HostCounters>> {
        self.hosts.get(&domain.to_ascii_lowercase())
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Arc<HostCounters>)> {
        self.hosts.iter()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.hosts.len()
    }
}

named_enum! {
    /// The orders of `tophosts` (`sort=`), each descending.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum HostSort {
        Active = "active",
        Connections = "connections",
        Delivered = "delivered",
        SoftBounced = "soft_bounced",
        HardBounced = "hard_bounced",
    }
}

impl HostSort {
    pub fn parse(s: &str) -> Option<HostSort> {
        HostSort::ALL.iter().copied().find(|o| o.as_str().eq_ignore_ascii_case(s))
    }

    fn key(self, h: &api::Host) -> u64 {
        match self {
            HostSort::Active => h.active_recipients,
            HostSort::Connections => h.connections,
            HostSort::Delivered => h.delivered_recipients,
            HostSort::SoftBounced => h.soft_bounced_events,
            HostSort::HardBounced => h.hard_bounced_recipients,
        }
    }
}

/// Sorts hosts by `sort`, descending; ties by domain.
pub fn sort_hosts(hosts: &mut [api::Host], sort: HostSort) {
    hosts.sort_by(|a, b| sort.key(b).cmp(&sort.key(a)).then_with(|| a.domain.cmp(&b.domain)));
}

impl Transport {
    /// Every destination domain with a delivery queue or counters (`tophosts`), or only `domain`
    /// (`hoststatus`), unsorted. Walks the queued messages once under the queues' lock, for the active
    /// recipients (as `status` does): call it off the async runtime.
    pub fn hosts(&self, only: Option<&str>) -> Vec<api::Host> {
        let only = only.map(str::to_ascii_lowercase);
        let wanted = |domain: &str| only.as_deref().is_none_or(|o| o.eq_ignore_ascii_case(domain));
        let qs = self.inner.lock();
        let mut rows: HashMap<String, api::Host> = HashMap::new();
        let mut domain_of: HashMap<QueueId, String> = HashMap::new();
        for (qid, q) in qs.delivery_queues() {
            let domain = q.key().next_hop_domain.to_ascii_lowercase();
            if !wanted(&domain) {
                continue;
            }
            let row = rows.entry(domain.clone()).or_insert_with(|| empty_row(&domain));
            row.connections += q.workers() as u64;
            if row.last_error.is_none() {
                row.last_error = q.last_error().map(str::to_owned);
            }
            row.queues.push(api::HostQueue {
                identity: self.inner.queue_identity(qid),
                status: q.status().as_str().to_owned(),
                delivery_type: q.key().delivery_type.as_str().to_owned(),
                next_hop_connector: q.key().next_hop_connector.clone(),
                message_count: q.message_count() as u64,
                last_error: q.last_error().map(str::to_owned),
                next_retry_time: q.next_retry_ms().map(sluice_queue_db::time::rfc3339),
            });
            domain_of.insert(qid, domain);
        }
        if !domain_of.is_empty() {
            for (_, m) in qs.messages() {
                for c in &m.copies {
                    if let Some(domain) = domain_of.get(&c.queue)
                        && let Some(row) = rows.get_mut(domain)
                    {
                        row.active_recipients += c.recipients.len() as u64;
                    }
                }
            }
        }
        for (domain, c) in qs.hosts().iter() {
            if !wanted(domain) {
                continue;
            }
            let row = rows.entry(domain.clone()).or_insert_with(|| empty_row(domain));
            row.delivered_recipients = c.delivered.load(Relaxed);
            row.soft_bounced_events = c.soft_bounced.load(Relaxed);
            row.hard_bounced_recipients = c.hard_bounced.load(Relaxed);
            row.last_activity = c.last_activity_ms().map(sluice_queue_db::time::rfc3339);
        }
        drop(qs);
        rows.into_values().collect()
    }
}

fn empty_row(domain: &str) -> api::Host {
    api::Host {
        domain: domain.to_owned(),
        active_recipients: 0,
        connections: 0,
        delivered_recipients: 0,
        soft_bounced_events: 0,
        hard_bounced_recipients: 0,
        last_activity: None,
        last_error: None,
        queues: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_domain_has_one_entry_whatever_its_case() {
        let mut index = HostIndex::default();
        let a = index.counters_for("Remote.TEST");
        a.count(2, 1, 3);
        let b = index.counters_for("remote.test");
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(b.delivered.load(Relaxed), 2);
        assert_eq!(b.hard_bounced.load(Relaxed), 1);
        assert_eq!(b.soft_bounced.load(Relaxed), 3);
        assert!(index.get("REMOTE.test").is_some_and(|c| c.last_activity_ms().is_some()));
    }

    #[test]
    fn idle_unheld_domains_are_pruned_when_the_index_doubles() {
        let mut index = HostIndex::default();
        let old = now_ms() - MAX_IDLE.as_millis() as i64 - 1;
        // Idle for longer than MAX_IDLE and held by nothing: dropped at the next pruning.
        for i in 0..PRUNE_FLOOR {
            index.hosts.insert(format!("idle{i}.test"), Arc::new(HostCounters::new(old)));
        }
        // Held by a queue: kept, however old.
        let held = Arc::new(HostCounters::new(old));
        index.hosts.insert("held.test".into(), held.clone());
        index.hosts.insert("recent.test".into(), Arc::new(HostCounters::new(now_ms())));
        index.counters_for("new.test");
        let mut left: Vec<&String> = index.hosts.keys().collect();
        left.sort();
        assert_eq!(left, ["held.test", "new.test", "recent.test"]);
        assert_eq!(index.len(), 3);
        drop(held);
    }

    #[test]
    fn hosts_sort_descending_by_the_column_asked_then_by_domain() {
        let row = |domain: &str, active, delivered| api::Host {
            active_recipients: active,
            delivered_recipients: delivered,
            ..empty_row(domain)
        };
        let mut hosts = vec![row("b.test", 1, 5), row("a.test", 1, 0), row("c.test", 3, 1)];
        sort_hosts(&mut hosts, HostSort::Active);
        assert_eq!(hosts.iter().map(|h| h.domain.as_str()).collect::<Vec<_>>(), ["c.test", "a.test", "b.test"]);
        sort_hosts(&mut hosts, HostSort::Delivered);
        assert_eq!(hosts.iter().map(|h| h.domain.as_str()).collect::<Vec<_>>(), ["b.test", "c.test", "a.test"]);
        assert_eq!(HostSort::parse("Hard_Bounced"), Some(HostSort::HardBounced));
        assert_eq!(HostSort::parse("bounced"), None);
    }
}
