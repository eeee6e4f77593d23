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

/// `GET /api/v1/engines/antispam/rules`: what the built-in anti-spam engine loaded, what it skipped, and
/// which rules cost the most (timed on one message in 64).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleReport {
    /// The version of the rule set in force.
    pub version: String,
    /// Rules loaded (tests and metas).
    pub loaded: u64,
    /// Rules run for each message: the scored ones and the sub-rules scored metas read.
    pub active: u64,
    /// Active tests that run only when one of their literals occurs in the message.
    pub prefiltered: u64,
    /// Active tests that run on every message.
    pub always: u64,
    /// Rules on the backtracking engine (look-around, back-references).
    pub backtracking: u64,
    /// Rules that did not compile (named in the updater log when the set was loaded).
    pub errors: u64,
    /// Rule lines not loaded, by reason.
    pub skipped: std::collections::BTreeMap<String, u64>,
    /// Every skipped rule line.
    pub skipped_total: u64,
    /// Setting lines that mean nothing to sluice (`lang`, `priority`, ...).
    pub ignored_settings: u64,
    /// The rules that took the most time on the messages timed so far, costliest first.
    pub slowest: Vec<RuleTime>,
}

/// One rule's measured cost.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RuleTime {
    pub rule: String,
    /// Mean time of one run, microseconds.
    pub mean_us: f64,
    /// Runs timed.
    pub runs: u64,
    /// Total time timed, microseconds.
    pub total_us: f64,
    /// What lets the rule run on a message: `literal`, `regex set` or `every message`.
    #[serde(default)]
    pub woken_by: String,
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
