//! JSON types of the admin API, shared by the server and the CLI. Field names are the public
//! interface: snake_case, as the spec lists them.

use serde::{Deserialize, Serialize};

mod status;
pub use status::*;

/// Every list: a page of items and the bookmark of the next page.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct List<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// `{"error": ..., "detail": ...}` with a 4xx or 5xx status.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}

/// `GET /api/v1/health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub uptime_seconds: u64,
}

/// A queue, as Get-Queue shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
}

/// A message copy in a queue, as Get-Message shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Message {
    pub identity: String,
    pub mid: u64,
    pub queue: String,
    pub status: String,
    pub from_address: String,
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
    pub recipients: Option<Vec<Recipient>>,
}

/// A recipient of a message copy (`include_recipient_info=true`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
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
pub struct ActionResult<T> {
    pub matched: u64,
    pub changed: u64,
    pub identities: Vec<String>,
    pub items: Vec<T>,
}

/// The body of an action on a list: `{"identities": [...]}`, with the action's options.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
pub struct ReloadResult {
    pub reloaded: bool,
    /// Keys that changed but need a restart; their old values stay in effect.
    pub restart_required: Vec<String>,
    pub not_yet_in_effect: Vec<String>,
}

/// `POST /api/v1/database/defrag`: what the run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DefragResult {
    pub generations_compacted: u64,
    pub messages_moved: u64,
    pub bytes_moved: u64,
    /// It stopped at `online_defrag_time_to_run`; the next run goes on.
    pub interrupted: bool,
}

/// An alert: `GET /api/v1/alerts`, and one line of `alerts.log`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
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
#[serde(deny_unknown_fields)]
pub struct ResubmitRequestChange {
    pub enabled: bool,
}
