//! Listings: the queues and message copies as the admin API's Get-Queue and Get-Message show them, and the
//! resolution of a queue identity such as `<server>\3` or `Submission`.

use sluice_api_types as api;
use sluice_queue_db::time::rfc3339;
use sluice_queue_db::{FIRST_DELIVERY_QUEUE, Mid, POISON, QueueId, SUBMISSION, UNREACHABLE};

use std::collections::HashMap;

use crate::queue::{Copy, Message, MessageStatus, QueueStatus, Queues};
use crate::routing::{SendSession, Target, TlsPolicy};
use crate::{NoSuchQueue, Transport};

impl Transport {
    /// The queues, as Get-Queue lists them: Submission, the delivery queues, and Unreachable and Poison
    /// when they are not empty.
    pub fn queues(&self) -> Vec<api::Queue> {
        let qs = self.inner.lock();
        let priorities = qs.priority_counts();
        let mut out = vec![self.persistent_queue(&qs, SUBMISSION, &priorities)];
        for (id, q) in qs.delivery_queues() {
            let key = q.key();
            let rates = qs.rates(id);
            let required = |s: &SendSession| s.tls == TlsPolicy::Required;
            let tls_domain = match q.target() {
                Target::SmartHosts { session, .. } | Target::Dns { session, .. } if required(session) => {
                    Some(key.next_hop_domain.clone())
                }
                _ => None,
            };
            out.push(api::Queue {
                identity: self.inner.queue_identity(id),
                delivery_type: key.delivery_type.as_str().to_owned(),
                next_hop_domain: key.next_hop_domain.clone(),
                next_hop_connector: key.next_hop_connector.clone(),
                next_hop_category: key.delivery_type.category().to_owned(),
                status: q.status().as_str().to_owned(),
                message_count: q.message_count() as u64,
                deferred_message_count: q.deferred_count() as u64,
                locked_message_count: 0,
                retry_count: q.retry_count(),
                last_error: q.last_error().map(str::to_owned),
                first_retry_time: q.first_retry_ms().map(rfc3339),
                last_retry_time: q.last_retry_ms().map(rfc3339),
                next_retry_time: q.next_retry_ms().map(rfc3339),
                incoming_rate: rounded(rates.incoming),
                outgoing_rate: rounded(rates.outgoing),
                velocity: rounded(rates.velocity()),
                tls_domain,
                message_counts_per_priority: per_priority(q.message_count() as u64, priorities.get(&id)),
            });
        }
        for id in [UNREACHABLE, POISON] {
            let q = self.persistent_queue(&qs, id, &priorities);
            if q.message_count > 0 {
                out.push(q);
            }
        }
        out
    }

    /// One queue by identity (`Submission`, `<server>\3`, `mx1/Unreachable`, ...).
    pub fn queue(&self, identity: &str) -> Result<api::Queue, NoSuchQueue> {
        let qid = self.parse_queue(identity)?;
        let name = self.inner.queue_identity(qid);
        if matches!(qid, SUBMISSION | UNREACHABLE | POISON) {
            let qs = self.inner.lock();
            return Ok(self.persistent_queue(&qs, qid, &qs.priority_counts()));
        }
        self.queues().into_iter().find(|q| q.identity == name).ok_or_else(|| NoSuchQueue(identity.to_owned()))
    }

    fn persistent_queue(&self, qs: &Queues, id: QueueId, priorities: &HashMap<QueueId, [u64; 2]>) -> api::Queue {
        let rates = qs.rates(id);
        let (delivery_type, domain, count, suspended) = match id {
            SUBMISSION => ("Undefined", "Submission", qs.submission_len(), qs.submission_suspended()),
            UNREACHABLE => ("Unreachable", "Unreachable Domain", qs.unreachable_len(), qs.unreachable_suspended()),
            _ => ("Undefined", "Poison Message", qs.poison_len(), false),
        };
        api::Queue {
            identity: self.inner.queue_identity(id),
            delivery_type: delivery_type.to_owned(),
            next_hop_domain: domain.to_owned(),
            next_hop_connector: String::new(),
            next_hop_category: "Internal".to_owned(),
            // Submission is Active while the categorizer has work; Unreachable and Poison deliver nothing, so
            // they are never Active.
            status: if suspended {
                "Suspended"
            } else if count > 0 && id == SUBMISSION {
                "Active"
            } else {
                "Ready"
            }
            .to_owned(),
            message_count: count as u64,
            deferred_message_count: if id == POISON { count as u64 } else { 0 },
            locked_message_count: 0,
            retry_count: 0,
            last_error: None,
            first_retry_time: None,
            last_retry_time: None,
            next_retry_time: None,
            incoming_rate: rounded(rates.incoming),
            outgoing_rate: rounded(rates.outgoing),
            velocity: rounded(rates.velocity()),
            tls_domain: None,
            message_counts_per_priority: per_priority(count as u64, priorities.get(&id)),
        }
    }

    /// Resolves a queue identity: the full `<server>\<queue>`, `<server>/<queue>` or just `<queue>`.
    pub fn parse_queue(&self, identity: &str) -> Result<QueueId, NoSuchQueue> {
        let not_found = || NoSuchQueue(identity.to_owned());
        let s = identity.replace('/', "\\");
        let local = match s.split_once('\\') {
            Some((server, rest)) if server.eq_ignore_ascii_case(&self.inner.server_name) => rest.to_owned(),
            Some(_) => return Err(not_found()),
            None => s,
        };
        let qid = match local.to_ascii_lowercase().as_str() {
            "submission" => SUBMISSION,
            "unreachable" => UNREACHABLE,
            "poison" => POISON,
            n => n.parse::<QueueId>().ok().filter(|n| *n >= FIRST_DELIVERY_QUEUE).ok_or_else(not_found)?,
        };
        if qid >= FIRST_DELIVERY_QUEUE && self.inner.lock().delivery_queue(qid).is_none() {
            return Err(not_found());
        }
        Ok(qid)
    }

    /// Message copies, in one queue or in all, oldest MID first.
    pub fn messages(&self, queue: Option<&str>, include_recipients: bool) -> Result<Vec<api::Message>, NoSuchQueue> {
        let only = queue.map(|q| self.parse_queue(q)).transpose()?;
        let expiration_ms = self.expiration_ms();
        let qs = self.inner.lock();
        let mut messages: Vec<(&Mid, &Message)> = qs.messages().collect();
        messages.sort_unstable_by_key(|(mid, _)| **mid);
        let mut out = Vec::new();
        for (mid, m) in messages {
            for c in &m.copies {
                if only.is_some_and(|q| q != c.queue) {
                    continue;
                }
                out.push(self.copy_json(&qs, *mid, m, c, include_recipients, expiration_ms));
            }
        }
        Ok(out)
    }

    /// `[transport] digest_threshold`, as last loaded.
    pub fn digest_threshold(&self) -> u32 {
        self.inner.routing().limits.digest_threshold
    }

    /// `message_expiration_timeout` in milliseconds.
    pub(crate) fn expiration_ms(&self) -> i64 {
        let expiration = self.inner.routing().limits.message_expiration_timeout;
        expiration.as_millis().min(i64::MAX as u128) as i64
    }

    /// The copies of `mid` in `queues`, as Get-Message shows them (with their recipients).
    pub(crate) fn copies_json(&self, qs: &Queues, mid: Mid, queues: &[QueueId]) -> Vec<api::Message> {
        let Some(m) = qs.message(mid) else { return Vec::new() };
        let expiration_ms = self.expiration_ms();
        m.copies
            .iter()
            .filter(|c| queues.contains(&c.queue))
            .map(|c| self.copy_json(qs, mid, m, c, true, expiration_ms))
            .collect()
    }

    /// A copy as Get-Message shows it: Ready in a queue that waits for its retry is listed as Retry.
    fn copy_json(
        &self,
        qs: &Queues,
        mid: Mid,
        m: &Message,
        c: &Copy,
        include_recipients: bool,
        expiration_ms: i64,
    ) -> api::Message {
        let queue = qs.delivery_queue(c.queue);
        let queue_retrying = queue.is_some_and(|q| q.held());
        let status = if c.status == MessageStatus::Ready && queue_retrying { MessageStatus::Retry } else { c.status };
        let deferred_reason = match (c.queue, status) {
            (POISON, _) => Some("Poison"),
            (_, MessageStatus::Suspended) => Some("Suspended"),
            (UNREACHABLE, _) => Some("NoRoute"),
            (_, MessageStatus::Retry) if c.status == MessageStatus::Retry => Some("TransientFailure"),
            (_, MessageStatus::Retry) if queue.is_some_and(|q| q.status() == QueueStatus::Suspended) => {
                Some("QueueSuspended")
            }
            (_, MessageStatus::Retry) => Some("QueueRetry"),
            _ => None,
        };
        let now_ms = sluice_queue_db::now_ms();
        let queue_identity = self.inner.queue_identity(c.queue);
        let next_hop = qs.delivery_queue(c.queue).map_or_else(String::new, |q| q.key().next_hop_domain.clone());
        api::Message {
            identity: format!("{queue_identity}\\{mid}"),
            mid,
            queue: queue_identity,
            status: status.as_str().to_owned(),
            from_address: m.envelope.from_address().to_owned(),
            original_from_address: m.envelope.from_address().to_owned(),
            internet_message_id: m.envelope.internet_message_id().map(str::to_owned),
            subject: m.envelope.subject().map(str::to_owned),
            size: m.body.len,
            date_received: rfc3339(m.envelope.received_at_ms),
            expiration_time: rfc3339(m.envelope.received_at_ms.saturating_add(expiration_ms)),
            source_ip: m.envelope.source_ip().to_owned(),
            message_source_name: m.envelope.source_name().to_owned(),
            last_error: c.last_error.as_deref().cloned(),
            retry_count: c.retry_count,
            scl: -1,
            priority: m.envelope.priority().as_str().to_owned(),
            directionality: if m.envelope.originating() { "Originating" } else { "Incoming" }.to_owned(),
            deferred_reason: deferred_reason.map(str::to_owned),
            message_latency: (now_ms.saturating_sub(m.envelope.received_at_ms).max(0) / 1000) as u64,
            recipients: include_recipients.then(|| {
                c.recipients
                    .iter()
                    .filter_map(|i| m.envelope.recipient(*i as usize))
                    .map(|r| api::Recipient {
                        address: r.address.to_owned(),
                        status: status.as_str().to_owned(),
                        last_error: c.last_error.as_deref().cloned(),
                        retry_count: c.retry_count,
                        next_hop: next_hop.clone(),
                    })
                    .collect()
            }),
        }
    }
}

/// A rate as the API shows it: three decimals.
fn rounded(rate: f64) -> f64 {
    (rate * 1000.0).round() / 1000.0
}

/// A queue's counts per priority from its message count and its High and Low counts.
fn per_priority(count: u64, high_low: Option<&[u64; 2]>) -> api::PriorityCounts {
    let [high, low] = high_low.copied().unwrap_or_default();
    api::PriorityCounts { high, normal: count.saturating_sub(high + low), low }
}
