//! The work queue (the appliance's `workqueue`), its engines and updates, and quarantine.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/workqueue` (ESA `workqueue status`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkQueue {
    /// When this was read, RFC 3339.
    pub time: String,
    /// `Operational`, `Paused` (some stage is paused) or `Offline` (some stage's engine does not answer).
    pub status: String,
    /// The stages that are paused or offline, in stage order.
    pub paused_stages: Vec<PausedStage>,
    /// Messages in the work queue: Submission's message count (waiting, being scanned or categorized).
    pub messages: u64,
    /// Every stage, in order (`antispam`, `antivirus`).
    pub stages: Vec<Stage>,
}

/// A stage that does not scan now.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PausedStage {
    /// `antispam` or `antivirus`.
    pub stage: String,
    /// Why: `updating rules`, an administrator's reason, or why the engine is offline.
    pub reason: String,
    /// Since when, RFC 3339.
    pub since: String,
}

/// One stage of the work queue.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Stage {
    pub stage: String,
    /// `builtin`, `rspamd`, `spamd`, `clamd` or `off`.
    pub engine: String,
    /// `Operational`, `Paused`, `Offline` or `Off` (the stage is skipped).
    pub state: String,
    /// Why it is paused or offline; `null` otherwise.
    pub reason: Option<String>,
    /// Messages scanned at once.
    pub concurrency: u32,
    /// Messages this stage holds now (being scanned, or waiting for it to resume).
    pub in_process: u64,
}

/// `POST /api/v1/workqueue/pause` (and, with only `stage`, `/resume`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PauseRequest {
    /// Shown in status; `paused by administrator` when absent.
    #[serde(default)]
    pub reason: Option<String>,
    /// `antispam` or `antivirus`; every stage when absent.
    #[serde(default)]
    pub stage: Option<String>,
}

/// One row of `GET /api/v1/workqueue/rate` (ESA `workqueue rate`): over the `interval` seconds that end at
/// `time`, messages that entered the work queue (`in`) and left it (`out`), and those waiting at `time`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkQueueRate {
    /// RFC 3339.
    pub time: String,
    pub pending: u64,
    #[serde(rename = "in")]
    pub in_: u64,
    pub out: u64,
}

/// One engine: `GET /api/v1/engines` (ESA `antispamstatus`, `antivirusstatus`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Engine {
    /// `antispam` or `antivirus`.
    pub engine: String,
    /// `builtin`, `rspamd`, `spamd`, `clamd` or `off`.
    pub kind: String,
    /// The version of the rule or signature set in force (`builtin` for the set shipped in the binary).
    pub version: String,
    /// Rules or signatures loaded.
    pub rules: u64,
    /// When the set in force was installed, RFC 3339; `null` for the shipped set.
    pub last_update: Option<String>,
    /// When the updater last checked the source, RFC 3339.
    pub last_check: Option<String>,
    /// The last update's failure, cleared by a successful one.
    pub last_error: Option<String>,
    /// `Operational`, `Paused`, `Offline` or `Off`.
    pub status: String,
}

/// `POST /api/v1/engines/{engine}/update` (202): the update was started; its lines go to the updater log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateStarted {
    pub engine: String,
    pub force: bool,
}

/// A quarantined message: `GET /api/v1/quarantine`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Quarantined {
    pub mid: u64,
    /// When it was quarantined, RFC 3339.
    pub quarantined_at: String,
    /// When retention deletes it, RFC 3339.
    pub expires_at: String,
    /// The stage that quarantined it: `antispam` or `antivirus`.
    pub stage: String,
    /// The verdict: `SCL 9 (score 1000.0: GTUBE)`, `virus Eicar-Test-Signature`.
    pub verdict: String,
    /// The message's SCL, -1 when the anti-spam stage has not scanned it.
    pub scl: i8,
    pub from_address: String,
    pub recipients: Vec<String>,
    pub subject: String,
    pub internet_message_id: String,
    pub size: u64,
}
