//! JSON types of the admin API, shared by the server and the CLI. Field names are the public
//! interface: snake_case, as the spec lists them.

use serde::{Deserialize, Serialize};

mod cluster;
mod status;
mod tracking;
mod workqueue;
pub use cluster::*;
pub use status::*;
pub use tracking::*;
pub use workqueue::*;

/// Every list: a page of items and the bookmark of the next page.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct List<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// `{"error": ..., "detail": ...}` with a 4xx or 5xx status.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub detail: Option<serde_json::Value>,
}

/// `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
}

/// A queue, as Get-Queue shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Queue {
    pub identity: String,
    pub delivery_type: String,
    pub next_hop_domain: String,
    pub next_hop_connector: String,
    pub next_hop_category: String,
    pub status: String,
    pub message_count: u64,
    pub deferred_message_count: u64,
    pub locked_message_count: u64,
    pub retry_count: u32,
    pub last_error: Option<String>,
    pub first_retry_time: Option<String>,
    pub last_retry_time: Option<String>,
    pub next_retry_time: Option<String>,
    /// Message copies entering per second, averaged over the last 60 seconds (twelve 5-second buckets).
    pub incoming_rate: f64,
    /// Message copies leaving per second (delivered, failed, moved or removed), likewise.
    pub outgoing_rate: f64,
    /// `outgoing_rate - incoming_rate`: positive while the queue drains, negative while it grows.
    pub velocity: f64,
    /// The next hop whose certificate is verified, when the queue's connector requires TLS; else null.
    pub tls_domain: Option<String>,
    pub message_counts_per_priority: PriorityCounts,
}

/// A queue's message copies by priority.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PriorityCounts {
    pub high: u64,
    pub normal: u64,
    pub low: u64,
}

/// A message copy in a queue, as Get-Message shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Message {
    pub identity: String,
    pub mid: u64,
    pub queue: String,
    pub status: String,
    pub from_address: String,
    /// The envelope sender as received (sluice does not rewrite it; a DSN's is empty).
    pub original_from_address: String,
    pub internet_message_id: Option<String>,
    pub subject: Option<String>,
    pub size: u64,
    pub date_received: String,
    /// When the message expires (`date_received` + `message_expiration_timeout`), RFC 3339.
    pub expiration_time: String,
    pub source_ip: String,
    pub message_source_name: String,
    pub last_error: Option<String>,
    pub retry_count: u32,
    /// Spam confidence level 0..9, or -1 when the message was not scanned.
    pub scl: i32,
    /// `High`, `Normal` or `Low`, from the message's `Importance:`, `Priority:` or `X-Priority:` header.
    pub priority: String,
    /// `Originating` (from an authenticated client, one in `relay_networks`, or made by this server) or
    /// `Incoming`.
    pub directionality: String,
    /// Why the copy is not on its way now: `TransientFailure`, `QueueRetry`, `QueueSuspended`, `Suspended`,
    /// `NoRoute` or `Poison`; null when it is ready or being delivered.
    pub deferred_reason: Option<String>,
    /// Seconds since the message was received.
    pub message_latency: u64,
    pub recipients: Option<Vec<Recipient>>,
}

/// A recipient of a message copy (`include_recipient_info=true`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Recipient {
    pub address: String,
    pub status: String,
    pub last_error: Option<String>,
    pub retry_count: u32,
    pub next_hop: String,
}

/// The answer to an action on a list of queues or message copies, or on every copy of a message: how many
/// matched and changed, the identities acted on, and the objects as they are after it (a removed copy is
/// named in `identities` only, unless its removal waits for its delivery attempt to end).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActionResult<T> {
    pub matched: u64,
    pub changed: u64,
    pub identities: Vec<String>,
    pub items: Vec<T>,
}

/// The body of an action on a list: `{"identities": [...]}`, with the action's options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    pub identities: Vec<String>,
    /// Remove-Message: tell the senders (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_ndr: Option<bool>,
    /// Retry-Queue: send the queues' messages back to the categorizer (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resubmit: Option<bool>,
}

/// `POST /api/v1/config/reload`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReloadResult {
    pub reloaded: bool,
    /// Keys that changed but need a restart; their old values stay in effect.
    pub restart_required: Vec<String>,
    pub not_yet_in_effect: Vec<String>,
}

/// `POST /api/v1/database/defrag`: what the run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DefragResult {
    pub generations_compacted: u64,
    pub messages_moved: u64,
    pub bytes_moved: u64,
    /// It stopped at `online_defrag_time_to_run`; the next run goes on.
    pub interrupted: bool,
}

/// An alert: `GET /api/v1/alerts`, and one line of `alerts.log`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Alert {
    pub id: u64,
    /// RFC 3339, UTC.
    pub time: String,
    /// `System`, `Hardware`, `Updater`, `Anti-Virus`, `Anti-Spam`, `Queue` or `Back Pressure`.
    pub class: String,
    /// `Critical`, `Warning` or `Information`.
    pub severity: String,
    pub text: String,
    /// Repeats of this alert suppressed since it was last raised.
    pub suppressed: u64,
    pub server: String,
    pub version: String,
}

/// `POST /api/v1/resubmit-requests` (Add-ResubmitRequest): resubmit the copies the Safety Net holds that
/// were delivered between `start_time` and `end_time` (RFC 3339, both included), optionally only those of
/// a sender, to a recipient, or with an Internet message id.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewResubmitRequest {
    pub start_time: String,
    pub end_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recipient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<String>,
}

/// A Safety Net resubmit request and its progress: `GET /api/v1/resubmit-requests[/{id}]`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResubmitRequest {
    pub id: u64,
    /// RFC 3339, UTC.
    pub start_time: String,
    pub end_time: String,
    pub sender: Option<String>,
    pub recipient: Option<String>,
    pub internet_message_id: Option<String>,
    pub enabled: bool,
    /// `Pending`, `Running`, `Completed`, `Disabled` or `Failed` (see `error`).
    pub status: String,
    /// Messages the Safety Net held that the request selects.
    pub matched: u64,
    /// Of those, resubmitted so far (each as a new message).
    pub resubmitted: u64,
    /// RFC 3339, UTC.
    pub created: String,
    pub completed: Option<String>,
    /// Who added it (`admin API 127.0.0.1:53412`).
    pub origin: String,
    /// Why it failed, when `status` is `Failed`.
    pub error: Option<String>,
}

/// `PATCH /api/v1/resubmit-requests/{id}`: enable or disable a request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResubmitRequestChange {
    pub enabled: bool,
}

/// A row of `GET /api/v1/queue-digest` (Get-QueueDigest): the queues of one group.
///
/// Rows of several servers for the same `group` merge by addition ([`DigestRow::merge`]): counts and rates
/// add, `queues_by_status` adds per status, `queues` are listed together, and the descriptive fields are
/// those of the larger row.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DigestRow {
    /// The value of the `group_by` property the row's queues share.
    pub group: String,
    pub message_count: u64,
    pub queue_count: u64,
    /// The delivery type, status and last error of the row's largest queue.
    pub delivery_type: String,
    pub status: String,
    pub last_error: Option<String>,
    pub incoming_rate: f64,
    pub outgoing_rate: f64,
    pub velocity: f64,
    /// How many of the row's queues are in each status.
    pub queues_by_status: std::collections::BTreeMap<String, u64>,
    /// With `details_level` Normal: each queue's identity, status and count; Verbose: the whole queue. Absent
    /// with None.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queues: Option<Vec<DigestQueue>>,
}

/// A queue in a digest row's details.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum DigestQueue {
    Verbose(Box<Queue>),
    Normal { identity: String, status: String, message_count: u64 },
}

impl DigestQueue {
    /// The queue's identity, whatever the details level.
    pub fn identity(&self) -> &str {
        match self {
            DigestQueue::Normal { identity, .. } => identity,
            DigestQueue::Verbose(q) => &q.identity,
        }
    }
}

impl DigestRow {
    /// Adds `other` (a row of the same group, from another server) to this row.
    pub fn merge(&mut self, other: DigestRow) {
        if other.message_count > self.message_count {
            self.delivery_type = other.delivery_type;
            self.status = other.status;
            self.last_error = other.last_error;
        }
        self.message_count += other.message_count;
        self.queue_count += other.queue_count;
        self.incoming_rate += other.incoming_rate;
        self.outgoing_rate += other.outgoing_rate;
        self.velocity += other.velocity;
        for (status, n) in other.queues_by_status {
            *self.queues_by_status.entry(status).or_default() += n;
        }
        match (&mut self.queues, other.queues) {
            (Some(mine), Some(theirs)) => mine.extend(theirs),
            (mine @ None, theirs) => *mine = theirs,
            (Some(_), None) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(group: &str, count: u64, status: &str, rate: f64) -> DigestRow {
        DigestRow {
            group: group.into(),
            message_count: count,
            queue_count: 1,
            delivery_type: "DnsConnectorDelivery".into(),
            status: status.into(),
            last_error: Some(format!("{status} error")),
            incoming_rate: rate,
            outgoing_rate: 0.0,
            velocity: -rate,
            queues_by_status: [(status.to_owned(), 1)].into(),
            queues: Some(vec![DigestQueue::Normal {
                identity: format!("{group}-{count}"),
                status: status.into(),
                message_count: count,
            }]),
        }
    }

    #[test]
    fn digest_rows_of_two_servers_merge_by_addition() {
        let mut a = row("example.com", 12, "Ready", 1.5);
        a.merge(row("example.com", 40, "Retry", 2.0));
        assert_eq!((a.message_count, a.queue_count), (52, 2));
        assert_eq!((a.incoming_rate, a.velocity), (3.5, -3.5));
        assert_eq!((a.status.as_str(), a.last_error.as_deref()), ("Retry", Some("Retry error")));
        assert_eq!(a.queues_by_status, [("Ready".to_owned(), 1), ("Retry".to_owned(), 1)].into());
        assert_eq!(a.queues.as_ref().map(Vec::len), Some(2));
        // Through JSON, as a client merging the answers of several servers would.
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<DigestRow>(&json).unwrap(), a);
    }
}
