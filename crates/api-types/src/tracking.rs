//! The message tracking search (`GET /api/v1/tracking`) and the per-destination host status
//! (`GET /api/v1/tophosts`, `GET /api/v1/hosts/{domain}`).

use serde::{Deserialize, Serialize};

/// One event of the message tracking log, as its line in the daily file holds it (the same field names).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrackingEvent {
    /// RFC 3339, UTC, milliseconds.
    pub time: String,
    /// `RECEIVE`, `SUBMIT`, `ROUTE`, `DELIVER`, `DEFER`, `FAIL`, `DSN`, `SUSPEND`, `RESUME`, `REMOVE`,
    /// `RESUBMIT`, `POISONMESSAGE` or `AUDIT`.
    pub event_id: String,
    /// The message's MID (0 on `AUDIT` events).
    pub mid: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_message_id: Option<String>,
    /// The envelope sender (`""` for the null sender).
    #[serde(default)]
    pub sender: String,
    /// The recipients the event is about.
    #[serde(default)]
    pub recipients: Vec<String>,
    /// The queue's identity (`<server>\<queue>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Where the message or the request came from (a receive connector, `admin API <peer>`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The reply text (the next hop's, or what the server decided).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply: Option<String>,
    /// What an `AUDIT` event records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<TrackingAudit>,
}

/// A state-changing request to the admin API and its outcome (`AUDIT` events).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TrackingAudit {
    pub method: String,
    pub path: String,
    pub token: bool,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed: Option<u64>,
}

/// One destination domain (a delivery queue's next hop domain), as ESA's `tophosts` and `hoststatus` show
/// it. The counters count since the server started.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Host {
    /// The next hop domain.
    pub domain: String,
    /// Recipients queued for the domain now (in its delivery queues, being delivered or waiting).
    pub active_recipients: u64,
    /// Delivery workers of the domain's queues now: each holds at most one outbound connection, open or
    /// being opened.
    pub connections: u64,
    /// Recipients the next hop accepted.
    pub delivered_recipients: u64,
    /// Deferrals: a recipient's attempt that ended in a transient failure.
    pub soft_bounced_events: u64,
    /// Recipients that failed for good (5xx, expiry).
    pub hard_bounced_recipients: u64,
    /// The last delivery outcome for the domain (RFC 3339), if any since start.
    pub last_activity: Option<String>,
    /// The last queue-level error of one of the domain's queues, if one is in Retry.
    pub last_error: Option<String>,
    /// The domain's delivery queues now (usually one; none once they were deleted as idle).
    pub queues: Vec<HostQueue>,
}

/// A delivery queue of a [`Host`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HostQueue {
    /// `<server>\<queue id>`.
    pub identity: String,
    /// `Active`, `Connecting`, `Ready`, `Retry` or `Suspended`.
    pub status: String,
    pub delivery_type: String,
    pub next_hop_connector: String,
    pub message_count: u64,
    pub last_error: Option<String>,
    pub next_retry_time: Option<String>,
}
