//! `max_per_domain_messages_per_minute`: message rate throttles per next hop, as GCRA in its virtual
//! scheduling form (each message takes the next free slot, one emission interval after the last; no burst).
//! A worker asks for its slot before each message and waits until it comes. On a cluster node the slots come
//! from Redis (`ClusterHooks::throttle`), shared by every node; here is a single server's clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each next hop's theoretical arrival time: when its next message may go.
#[derive(Default)]
pub struct Throttles {
    next: Mutex<HashMap<String, Instant>>,
}

/// The time between two messages at `per_minute` messages a minute.
pub fn emission_interval(per_minute: u32) -> Duration {
    Duration::from_secs(60) / per_minute.max(1)
}

impl Throttles {
    /// Takes the next slot of `domain` at `per_minute` messages a minute: how long to wait for it.
    pub fn reserve(&self, domain: &str, per_minute: u32, now: Instant) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        if next.len() > 10_000 {
            // Slots in the past say nothing: forget them rather than grow without end.
            next.retain(|_, at| *at > now);
        }
        let at = next.entry(domain.to_ascii_lowercase()).or_insert(now);
        let slot = (*at).max(now);
        *at = slot + emission_interval(per_minute);
        slot - now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_spaced_by_the_emission_interval_per_next_hop() {
        let t = Throttles::default();
        let now = Instant::now();
        assert_eq!(t.reserve("a.test", 60, now), Duration::ZERO, "the first goes at once");
        assert_eq!(t.reserve("A.test", 60, now), Duration::from_secs(1), "the next a second later (case-blind)");
        assert_eq!(t.reserve("a.test", 60, now), Duration::from_secs(2));
        assert_eq!(t.reserve("b.test", 60, now), Duration::ZERO, "another next hop has its own slots");
        // After a quiet spell no credit is saved up: the rate holds from then on.
        let later = now + Duration::from_secs(100);
        assert_eq!(t.reserve("a.test", 60, later), Duration::ZERO);
        assert_eq!(t.reserve("a.test", 60, later), Duration::from_secs(1));
        assert_eq!(emission_interval(120), Duration::from_millis(500));
    }
}
