//! Queue identities and statuses, in the reference design's words, and the in-memory queues.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sluice_queue_db::{BodyRef, Envelope, Mid, QueueId, RecipientIndices, SharedError};
use smallvec::SmallVec;

use crate::routing::Target;

/// How a queue's messages leave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum DeliveryType {
    Undefined,
    Unreachable,
    DnsConnectorDelivery,
    SmartHostConnectorDelivery,
    SmtpDeliveryToMailbox,
}

impl DeliveryType {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryType::Undefined => "Undefined",
            DeliveryType::Unreachable => "Unreachable",
            DeliveryType::DnsConnectorDelivery => "DnsConnectorDelivery",
            DeliveryType::SmartHostConnectorDelivery => "SmartHostConnectorDelivery",
            DeliveryType::SmtpDeliveryToMailbox => "SmtpDeliveryToMailbox",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryType> {
        [
            DeliveryType::Undefined,
            DeliveryType::Unreachable,
            DeliveryType::DnsConnectorDelivery,
            DeliveryType::SmartHostConnectorDelivery,
            DeliveryType::SmtpDeliveryToMailbox,
        ]
        .into_iter()
        .find(|t| t.as_str().eq_ignore_ascii_case(s))
    }

    /// Internal for mailbox stores, External for send connectors.
    pub fn category(self) -> &'static str {
        match self {
            DeliveryType::SmtpDeliveryToMailbox | DeliveryType::Undefined => "Internal",
            _ => "External",
        }
    }
}

impl fmt::Display for DeliveryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// (DeliveryType, NextHopDomain, NextHopConnector): one delivery queue per distinct key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NextHopSolutionKey {
    pub delivery_type: DeliveryType,
    pub next_hop_domain: String,
    pub next_hop_connector: String,
}

impl NextHopSolutionKey {
    pub(crate) fn to_stored(&self) -> sluice_queue_db::QueueKey {
        sluice_queue_db::QueueKey {
            delivery_type: self.delivery_type.as_str().to_owned(),
            next_hop_domain: self.next_hop_domain.clone(),
            next_hop_connector: self.next_hop_connector.clone(),
        }
    }

    pub(crate) fn from_stored(k: &sluice_queue_db::QueueKey) -> Option<NextHopSolutionKey> {
        Some(NextHopSolutionKey {
            delivery_type: DeliveryType::parse(&k.delivery_type)?,
            next_hop_domain: k.next_hop_domain.clone(),
            next_hop_connector: k.next_hop_connector.clone(),
        })
    }
}

/// A queue's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum QueueStatus {
    Active,
    Connecting,
    Ready,
    Retry,
    Suspended,
}

impl QueueStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Active => "Active",
            QueueStatus::Connecting => "Connecting",
            QueueStatus::Ready => "Ready",
            QueueStatus::Retry => "Retry",
            QueueStatus::Suspended => "Suspended",
        }
    }
}

/// A message copy's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum MessageStatus {
    Active,
    Ready,
    Retry,
    Suspended,
    PendingSuspend,
    PendingRemove,
}

impl MessageStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageStatus::Active => "Active",
            MessageStatus::Ready => "Ready",
            MessageStatus::Retry => "Retry",
            MessageStatus::Suspended => "Suspended",
            MessageStatus::PendingSuspend => "PendingSuspend",
            MessageStatus::PendingRemove => "PendingRemove",
        }
    }
}

/// A message with copies in one or more queues.
#[derive(Debug)]
pub(crate) struct Message {
    pub(crate) envelope: Arc<Envelope>,
    pub(crate) body: BodyRef,
    /// Nearly always one: kept inline, without an allocation of its own.
    pub(crate) copies: SmallVec<[Copy; 1]>,
}

/// A message's copy in one queue.
#[derive(Debug, Clone)]
pub(crate) struct Copy {
    pub(crate) queue: QueueId,
    pub(crate) recipients: RecipientIndices,
    pub(crate) status: MessageStatus,
    pub(crate) retry_count: u32,
    pub(crate) next_retry_ms: i64,
    /// Shared by the copies that failed the same way (`sluice_queue_db::intern_error`).
    pub(crate) last_error: Option<SharedError>,
}

/// A delivery queue.
#[derive(Debug)]
pub(crate) struct DeliveryQueue {
    pub(crate) key: NextHopSolutionKey,
    pub(crate) target: Target,
    /// Copies waiting for a connection, oldest first.
    pub(crate) ready: VecDeque<Mid>,
    /// Copies waiting for their retry time.
    /// Copies waiting for their retry time, with the time on the monotonic clock.
    pub(crate) retry: BTreeMap<Mid, Instant>,
    pub(crate) active: usize,
    pub(crate) workers: usize,
    pub(crate) connecting: usize,
    pub(crate) suspended: bool,
    pub(crate) retry_count: u32,
    pub(crate) last_error: Option<String>,
    pub(crate) first_retry_ms: Option<i64>,
    pub(crate) last_retry_ms: Option<i64>,
    /// The next connection attempt: wall clock for people (`next_retry_time`), monotonic for waiting.
    pub(crate) next_retry_ms: Option<i64>,
    pub(crate) next_retry_at: Option<Instant>,
    pub(crate) message_count: usize,
    /// Wakes idle workers when copies become ready.
    pub(crate) notify: Arc<tokio::sync::Notify>,
}

impl DeliveryQueue {
    pub(crate) fn new(key: NextHopSolutionKey, target: Target) -> DeliveryQueue {
        DeliveryQueue {
            key,
            target,
            ready: VecDeque::new(),
            retry: BTreeMap::new(),
            active: 0,
            workers: 0,
            connecting: 0,
            suspended: false,
            retry_count: 0,
            last_error: None,
            first_retry_ms: None,
            last_retry_ms: None,
            next_retry_ms: None,
            next_retry_at: None,
            message_count: 0,
            notify: Arc::new(tokio::sync::Notify::new()),
        }
    }

    pub(crate) fn status(&self) -> QueueStatus {
        if self.suspended {
            QueueStatus::Suspended
        } else if self.next_retry_ms.is_some() {
            QueueStatus::Retry
        } else if self.connecting > 0 && self.active == 0 {
            QueueStatus::Connecting
        } else if self.active > 0 {
            QueueStatus::Active
        } else {
            QueueStatus::Ready
        }
    }
}

/// Everything in memory about the queues. Guarded by one mutex, never held across an await.
#[derive(Debug, Default)]
pub(crate) struct Queues {
    /// Boxed: a million messages make a table of pointers, and growing it moves pointers.
    pub(crate) messages: HashMap<Mid, Box<Message>>,
    pub(crate) submission: VecDeque<Mid>,
    pub(crate) submission_suspended: bool,
    pub(crate) unreachable: BTreeMap<Mid, ()>,
    pub(crate) unreachable_suspended: bool,
    pub(crate) delivery: BTreeMap<QueueId, DeliveryQueue>,
    pub(crate) keys: crate::routing::KeyIndex,
    pub(crate) next_queue_id: QueueId,
}

impl Queues {
    /// Removes the copy of `mid` in `queue`; the message goes when its last copy does.
    pub(crate) fn remove_copy(&mut self, mid: Mid, queue: QueueId) {
        if let Some(m) = self.messages.get_mut(&mid) {
            m.copies.retain(|c| c.queue != queue);
            if m.copies.is_empty() {
                self.messages.remove(&mid);
            }
        }
    }
}

/// The monotonic instant of a persisted wall-clock deadline: deadlines are stored as wall-clock times (they
/// must mean the same after a restart), but waiting uses the monotonic clock, so that a step of the system
/// clock neither fires every timer at once nor stalls them.
pub(crate) fn monotonic_deadline(wall_ms: i64) -> Instant {
    let now = sluice_queue_db::now_ms();
    Instant::now() + Duration::from_millis(wall_ms.saturating_sub(now).max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_deadlines_become_monotonic_waits() {
        let now = sluice_queue_db::now_ms();
        let soon = monotonic_deadline(now + 60_000);
        let wait = soon.saturating_duration_since(Instant::now());
        assert!(wait > Duration::from_secs(59) && wait <= Duration::from_secs(60), "{wait:?}");
        // A deadline in the past (or a clock that stepped forward past it) is due now, not in the past.
        assert!(monotonic_deadline(now - 3_600_000) <= Instant::now());
    }

    /// A million queued messages cost a million of these (spec 02 item 11): 96 bytes is a mimalloc size
    /// class, and one byte more moves every message to the next.
    #[test]
    fn a_queued_message_stays_small() {
        assert_eq!(size_of::<Copy>(), 56);
        assert_eq!(size_of::<Message>(), 96);
    }
}
