//! The configuration file as written: serde structs that mirror the TOML schema key for key.
//!
//! Every table refuses unknown keys (`deny_unknown_fields`) and every key is optional; defaults, units and
//! cross-checks are applied once, by `validate`, which turns a [`RawConfig`] into a [`crate::Config`]. The
//! same structs, fully populated, render the effective configuration back to TOML (`render`).
//!
//! Values written in human units (durations, sizes, addresses) are kept as text here so that a wrong value
//! is reported by `validate` with its key and a sentence saying what was expected.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RawConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<RawServer>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<RawLog>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin: Option<RawAdmin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receive_connectors: Option<Vec<RawReceiveConnector>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox_stores: Option<Vec<RawMailboxStore>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub accepted_domains: Option<Vec<RawAcceptedDomain>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub send_connectors: Option<Vec<RawSendConnector>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<RawDns>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_database: Option<RawQueueDatabase>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transport: Option<RawTransport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub work_queue: Option<RawWorkQueue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub antispam: Option<RawAntispam>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub antivirus: Option<RawAntivirus>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<RawQuarantine>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub updater: Option<RawUpdater>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<RawAlerts>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub back_pressure: Option<RawBackPressure>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracking: Option<RawTracking>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<RawDebug>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<RawCluster>,
}

/// Declares a raw table: a struct whose fields are all optional, skipped on output when absent, and whose
/// unknown keys are refused. Keeps the long list of tables below readable and uniform.
macro_rules! raw_table {
    ($(#[$meta:meta])* $name:ident { $($field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Default, Deserialize, Serialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $name {
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
        }
    };
}

raw_table!(
    /// `[server]`
    RawServer {
        hostname: String,
        name: String,
        data_dir: String,
        user: String,
    }
);

raw_table!(
    /// `[log]`
    RawLog {
        level: String,
        format: String,
    }
);

raw_table!(
    /// `[admin]`
    RawAdmin {
        listen: String,
        token: String,
        allowed_hosts: Vec<String>,
        tls: RawTlsFiles,
    }
);

raw_table!(
    /// One `[[receive_connectors]]` entry.
    RawReceiveConnector {
        name: String,
        listen: String,
        relay_networks: Vec<String>,
        max_message_size: RawSize,
        max_header_size: RawSize,
        max_recipients: u32,
        max_command_line: u32,
        max_connections: u32,
        max_connections_per_ip: u32,
        max_errors: u32,
        max_hop_count: u32,
        connection_timeout: String,
        connection_inactivity_timeout: String,
        greet_pause: String,
        bare_newlines: String,
        tls: RawReceiveTls,
        tls_mode: String,
        auth: String,
        auth_failures_per_minute: u32,
        users: Vec<RawUser>,
    }
);

raw_table!(
    /// One `[[mailbox_stores]]` entry.
    RawMailboxStore {
        name: String,
        maildir: String,
        lmtp: String,
        guid: String,
    }
);

raw_table!(
    /// One `[[accepted_domains]]` entry.
    RawAcceptedDomain {
        domain: String,
        mailbox_store: String,
        mailboxes: Vec<String>,
        catch_all: bool,
        recipient_delimiter: String,
        aliases: BTreeMap<String, Vec<String>>,
    }
);

raw_table!(
    /// One `[[send_connectors]]` entry.
    RawSendConnector {
        name: String,
        address_spaces: Vec<String>,
        smart_hosts: Vec<String>,
        port: u16,
        tls: String,
        max_messages_per_connection: u32,
        guid: String,
        auth: RawSendAuth,
    }
);

raw_table!(
    /// `[dns]`
    RawDns {
        servers: Vec<String>,
    }
);

raw_table!(
    /// `[queue_database]`
    RawQueueDatabase {
        path: String,
        log_path: String,
        batch_size: u32,
        batch_timeout: String,
        logging_buffer_size: RawSize,
        logging_file_size: RawSize,
        generation_interval: String,
        checkpoint_interval: String,
        max_background_cleanup_tasks: u32,
        online_defrag_enabled: bool,
        online_defrag_schedule: String,
        online_defrag_time_to_run: String,
    }
);

raw_table!(
    /// `[transport]`
    RawTransport {
        queue_glitch_retry_count: u32,
        queue_glitch_retry_interval: String,
        transient_failure_retry_count: u32,
        transient_failure_retry_interval: String,
        outbound_connection_failure_retry_interval: String,
        message_retry_interval: String,
        message_expiration_timeout: String,
        delay_notification_timeout: String,
        queue_max_idle_time: String,
        max_idle_time_before_resubmit: String,
        max_outbound_connections: u32,
        max_per_domain_outbound_connections: u32,
        max_per_domain_messages_per_minute: u32,
        poison_threshold: u32,
        safety_net_hold_time: String,
        digest_threshold: u32,
    }
);

raw_table!(
    /// `[work_queue]`
    RawWorkQueue {
        concurrency: u32,
        on_engine_failure: String,
    }
);

raw_table!(
    /// `[antispam]`
    RawAntispam {
        engine: String,
        scl_quarantine: u8,
        scl_delete: RawSclDelete,
        rules_dir: String,
        url: String,
        address: String,
        timeout: String,
    }
);

raw_table!(
    /// `[antivirus]`
    RawAntivirus {
        engine: String,
        virus_action: String,
        address: String,
        database_dir: String,
        timeout: String,
    }
);

raw_table!(
    /// `[quarantine]`
    RawQuarantine {
        retention: String,
    }
);

raw_table!(
    /// `[updater]`
    RawUpdater {
        source: String,
        interval: String,
    }
);

raw_table!(
    /// `[alerts]`
    RawAlerts {
        work_queue_pause_alert_after: String,
        work_queue_stuck_after: String,
        max_repeat_interval: String,
        email_to: Vec<String>,
        smtp_host: String,
        webhook_url: String,
    }
);

raw_table!(
    /// `[back_pressure]`
    RawBackPressure {
        check_interval: String,
        disk_free_medium: RawSize,
        disk_free_high: RawSize,
        disk_free_normal: RawSize,
        memory_medium_percent: u8,
        memory_high_percent: u8,
        memory_normal_percent: u8,
        submission_queue_medium: u64,
        submission_queue_high: u64,
        submission_queue_normal: u64,
    }
);

raw_table!(
    /// `[tracking]`
    RawTracking {
        max_age: String,
    }
);

raw_table!(
    /// `[cluster]`
    RawCluster {
        node: String,
        redis: String,
        postgres: String,
        admin_url: String,
        heartbeat_interval: String,
        shadow_takeover_after: String,
        reject_on_shadow_failure: bool,
    }
);

raw_table!(
    /// `[debug]`
    RawDebug {
        fault_injection: bool,
    }
);

/// `{ cert = "...", key = "..." }` for receive connectors and the admin listener.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTlsFiles {
    pub cert: String,
    pub key: String,
}

/// `{ name = "alice", password_hash = "$argon2id$..." }` in a receive connector's `users`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub name: String,
    pub password_hash: String,
}

/// `{ user = "relay", password = "..." }` in a send connector.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSendAuth {
    pub user: String,
    pub password: String,
}

/// A size: a string with a unit (`"35MB"`) or an integer number of bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSize {
    Text(String),
    Bytes(u64),
}

/// `scl_delete`: `"off"` or an SCL from 0 to 9.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawSclDelete {
    Text(String),
    Level(i64),
}

/// A receive connector's `tls`: `"off"`, `"self-signed"` or `{ cert = "...", key = "..." }`.
#[derive(Debug, Clone)]
pub enum RawReceiveTls {
    Mode(String),
    Files(RawTlsFiles),
}

impl<'de> Deserialize<'de> for RawSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = RawSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"35MB\" or a number of bytes")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawSize, E> {
                Ok(RawSize::Text(value.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawSize, E> {
                u64::try_from(value)
                    .map(RawSize::Bytes)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(value), &self))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawSize, E> {
                Ok(RawSize::Bytes(value))
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

impl Serialize for RawSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RawSize::Text(text) => serializer.serialize_str(text),
            RawSize::Bytes(bytes) => serializer.serialize_u64(*bytes),
        }
    }
}

impl<'de> Deserialize<'de> for RawSclDelete {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SclVisitor;
        impl Visitor<'_> for SclVisitor {
            type Value = RawSclDelete;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"off\" or an SCL from 0 to 9")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawSclDelete, E> {
                Ok(RawSclDelete::Text(value.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, value: i64) -> Result<RawSclDelete, E> {
                Ok(RawSclDelete::Level(value))
            }
            fn visit_u64<E: de::Error>(self, value: u64) -> Result<RawSclDelete, E> {
                i64::try_from(value)
                    .map(RawSclDelete::Level)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(value), &self))
            }
        }
        deserializer.deserialize_any(SclVisitor)
    }
}

impl Serialize for RawSclDelete {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RawSclDelete::Text(text) => serializer.serialize_str(text),
            RawSclDelete::Level(level) => serializer.serialize_i64(*level),
        }
    }
}

impl<'de> Deserialize<'de> for RawReceiveTls {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TlsVisitor;
        impl<'de> Visitor<'de> for TlsVisitor {
            type Value = RawReceiveTls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("\"off\", \"self-signed\" or { cert = \"...\", key = \"...\" }")
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<RawReceiveTls, E> {
                Ok(RawReceiveTls::Mode(value.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawReceiveTls, A::Error> {
                // Deserialising the table as the struct keeps `deny_unknown_fields` and its key-naming errors.
                RawTlsFiles::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawReceiveTls::Files)
            }
        }
        deserializer.deserialize_any(TlsVisitor)
    }
}

impl Serialize for RawReceiveTls {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            RawReceiveTls::Mode(mode) => serializer.serialize_str(mode),
            RawReceiveTls::Files(files) => files.serialize(serializer),
        }
    }
}
