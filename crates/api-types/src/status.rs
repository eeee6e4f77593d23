//! `GET /api/v1/status` (ESA's `status detail`) and `POST /api/v1/counters/reset`.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Status {
    /// `Online`; `Work Queue Paused` and `Offline` come with the work queue.
    pub system_status: String,
    /// When this process started, RFC 3339.
    pub up_since: String,
    /// When the `reset` column of the counters started (the last reset, or the server's first start).
    pub last_counter_reset: String,
    /// The message queued longest, `null` when nothing is queued.
    pub oldest_message: Option<OldestMessage>,
    pub counters: StatusCounters,
    pub current_ids: CurrentIds,
    pub gauges: Gauges,
    pub rates: Rates,
    pub back_pressure: BackPressureStatus,
    /// This node's part in a cluster; absent on a single server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<crate::ClusterStatus>,
}

/// The message queued longest.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OldestMessage {
    pub mid: u64,
    /// RFC 3339.
    pub date_received: String,
    pub age_seconds: u64,
}

/// One counter: since the last reset, since this process started, and over the server's lifetime
/// (kept across restarts).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CounterColumns {
    pub reset: u64,
    pub uptime: u64,
    pub lifetime: u64,
}

/// The counters of `GET /api/v1/status`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusCounters {
    pub messages_received: CounterColumns,
    pub recipients_received: CounterColumns,
    pub generated_bounce_recipients: CounterColumns,
    pub rejected_recipients: CounterColumns,
    pub dropped_messages: CounterColumns,
    pub soft_bounced_events: CounterColumns,
    /// Delivered, hard-bounced and deleted recipients together.
    pub completed_recipients: CounterColumns,
    pub hard_bounced_recipients: CounterColumns,
    pub delivered_recipients: CounterColumns,
    pub deleted_recipients: CounterColumns,
    pub quarantined_messages: CounterColumns,
}

/// The last ids handed out: message (MID), injection connection (ICID), delivery connection (DCID).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CurrentIds {
    pub mid: u64,
    pub icid: u64,
    pub dcid: u64,
}

/// Figures of the moment.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gauges {
    pub current_inbound_connections: u64,
    pub current_outbound_connections: u64,
    /// Recipients queued and not yet delivered, bounced or removed.
    pub active_recipients: u64,
    pub messages_in_work_queue: u64,
    /// Disk space the queue database's files take, and what is free on their file system.
    pub kilobytes_used: u64,
    pub kilobytes_free: u64,
    pub messages_in_quarantine: u64,
    pub kilobytes_in_quarantine: u64,
}

/// Events per hour over the last 1, 5 and 15 minutes.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rate {
    pub one_minute: u64,
    pub five_minutes: u64,
    pub fifteen_minutes: u64,
}

/// Messages received, recipients delivered, recipients hard-bounced, per hour.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Rates {
    pub received: Rate,
    pub delivered: Rate,
    pub bounced: Rate,
}

/// The back pressure level and each resource's reading.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackPressureStatus {
    /// `Normal`, `Medium` or `High`: the highest of the resources' levels.
    pub level: String,
    pub resources: Vec<BackPressureResource>,
}

/// One back pressure resource: its level, its value now and its thresholds (`[back_pressure]`; 0 is off).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BackPressureResource {
    /// `queue_database_disk`, `memory` or `submission_queue`.
    pub resource: String,
    pub level: String,
    /// `null` when it could not be read.
    pub value: Option<u64>,
    /// What `value` and the thresholds count: `bytes_free`, `percent_of_physical_memory`, `messages`.
    pub unit: String,
    /// Medium from this value on (for free space: below it).
    pub medium: u64,
    pub high: u64,
    /// Back to Normal only past this value.
    pub normal: u64,
}

/// `POST /api/v1/counters/reset`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CountersReset {
    /// The time of the reset, RFC 3339.
    pub last_counter_reset: String,
}
