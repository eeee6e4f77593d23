//! The validated configuration: what the rest of sluice reads.
//!
//! Every value here has been checked, has its default applied, carries its unit (`Duration`, bytes as `u64`)
//! and has absolute paths. Field names are the keys of the configuration file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::address::AddressSpace;
use crate::net::{HostPort, IpNet};
use crate::units::TimeOfDay;

/// A value written in the file as one of a fixed set of words.
pub(crate) trait Keyword: Copy + 'static {
    /// Every value, in the order the spec lists them.
    const ALL: &'static [Self];
    /// The word used in the configuration file.
    fn as_str(self) -> &'static str;
}

/// Declares an enum of configuration words with its [`Keyword`] impl, `as_str` and `Display`, so that the
/// word for each variant is written once, for both parsing and rendering.
macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $word:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// The word used in the configuration file.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)*
                }
            }
        }

        impl Keyword for $name {
            const ALL: &'static [Self] = &[$($name::$variant,)*];
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// The effective configuration of one server.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[log]`
    pub log: LogConfig,
    /// `[admin]`
    pub admin: AdminConfig,
    /// `[[receive_connectors]]`: SMTP listeners, each with its own policy.
    pub receive_connectors: Vec<ReceiveConnector>,
    /// `[[mailbox_stores]]`: where local mail is delivered.
    pub mailbox_stores: Vec<MailboxStore>,
    /// `[[accepted_domains]]`: the domains this server delivers locally.
    pub accepted_domains: Vec<AcceptedDomain>,
    /// `[[send_connectors]]`: routes for mail to other domains.
    pub send_connectors: Vec<SendConnector>,
    /// `[dns]`
    pub dns: DnsConfig,
    /// `[queue_database]`.
    pub queue_database: QueueDatabaseConfig,
    /// `[transport]`.
    pub transport: TransportConfig,
    /// `[work_queue]`.
    pub work_queue: WorkQueueConfig,
    /// `[antispam]`
    pub antispam: AntispamConfig,
    /// `[antivirus]`
    pub antivirus: AntivirusConfig,
    /// `[quarantine]`
    pub quarantine: QuarantineConfig,
    /// `[updater]`
    pub updater: UpdaterConfig,
    /// `[alerts]`
    pub alerts: AlertsConfig,
    /// `[back_pressure]`
    pub back_pressure: BackPressureConfig,
    /// `[tracking]`
    pub tracking: TrackingConfig,
    /// `[debug]`
    pub debug: DebugConfig,
    /// `[cluster]`: absent on a single server.
    pub cluster: Option<ClusterConfig>,
}

/// `[server]`
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Used in the banner, EHLO and `Received:` (default: the system's host name).
    pub hostname: String,
    /// The `<server>` part of queue identities (default: the first label of `hostname`).
    pub name: String,
    /// Where the queue database, pickup and replay directories and logs live (absolute).
    pub data_dir: PathBuf,
    /// Drop privileges to this user after binding ports.
    pub user: Option<String>,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// A tracing filter, e.g. `"info,sluice_receive=debug"`.
    pub level: String,
    /// How log lines are written to stderr.
    pub format: LogFormat,
}

keyword_enum!(
    /// `[log] format`
    LogFormat {
        /// `"text"`: human-readable lines.
        Text = "text",
        /// `"json"`: one JSON object per line.
        Json = "json",
    }
);

/// `[admin]`: the HTTP API.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminConfig {
    /// Where the API listens.
    pub listen: SocketAddr,
    /// The bearer token; `None` when the file leaves it empty.
    pub token: Option<String>,
    /// Certificate and key, required when `listen` is not loopback.
    pub tls: Option<TlsFiles>,
    /// Extra `Host` header values accepted besides the listen address (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
}

/// A certificate chain and private key in PEM files (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert: PathBuf,
    /// The private key.
    pub key: PathBuf,
}

/// One `[[receive_connectors]]` entry: an SMTP listener and its policy.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceiveConnector {
    /// Unique among receive connectors; appears in `Received:` and `message_source_name`.
    pub name: String,
    /// The listening socket; unique among receive connectors.
    pub listen: SocketAddr,
    /// Clients allowed to relay (and exempt from the per-IP connection limit).
    pub relay_networks: Vec<IpNet>,
    /// Bytes; advertised with `SIZE`.
    pub max_message_size: u64,
    /// Bytes of header section.
    pub max_header_size: u64,
    /// Recipients per message.
    pub max_recipients: u32,
    /// Octets per command line.
    pub max_command_line: u32,
    /// Concurrent connections to this listener.
    pub max_connections: u32,
    /// Concurrent connections per client IP outside `relay_networks`.
    pub max_connections_per_ip: u32,
    /// Protocol errors before disconnecting.
    pub max_errors: u32,
    /// `Received:` headers beyond which a message is refused as looping.
    pub max_hop_count: u32,
    /// Total time a session may last.
    pub connection_timeout: Duration,
    /// Time a session may stay silent.
    pub connection_inactivity_timeout: Duration,
    /// How long the server waits before its greeting; a client that talks before it is refused (`554 5.5.0`)
    /// and the connection closed. Input already waiting when the greeting is due is refused with 0 too.
    pub greet_pause: Duration,
    /// What to do with a bare CR or LF in message data.
    pub bare_newlines: BareNewlines,
    /// Whether and with which certificate TLS is offered.
    pub tls: ReceiveTls,
    /// STARTTLS or implicit TLS.
    pub tls_mode: TlsMode,
    /// SMTP AUTH policy.
    pub auth: AuthMode,
    /// Accounts for SMTP AUTH.
    pub users: Vec<User>,
    /// Failed AUTH attempts allowed per client IP per minute.
    pub auth_failures_per_minute: u32,
}

keyword_enum!(
    /// `bare_newlines`
    BareNewlines {
        /// `"reject"`: refuse the message with `550 5.6.0`.
        Reject = "reject",
        /// `"normalize"`: store a bare LF as CRLF.
        Normalize = "normalize",
    }
);

/// A receive connector's `tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiveTls {
    /// `"off"`
    Off,
    /// `"self-signed"`: a certificate generated at start.
    SelfSigned,
    /// `{ cert = "...", key = "..." }`
    Files(TlsFiles),
}

keyword_enum!(
    /// `tls_mode`
    TlsMode {
        /// `"starttls"`: plain connection upgraded with STARTTLS.
        Starttls = "starttls",
        /// `"implicit"`: TLS from the first byte (port 465 style).
        Implicit = "implicit",
    }
);

keyword_enum!(
    /// A receive connector's `auth`.
    AuthMode {
        /// `"off"`: AUTH is not offered.
        Off = "off",
        /// `"optional"`: offered, not required.
        Optional = "optional",
        /// `"required"`: MAIL FROM is refused before AUTH.
        Required = "required",
    }
);

/// An SMTP AUTH account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name.
    pub name: String,
    /// A PHC-format password hash, e.g. `$argon2id$...`.
    pub password_hash: String,
}

/// One `[[mailbox_stores]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxStore {
    /// Unique among mailbox stores; named by accepted domains; the NextHopDomain of its queue.
    pub name: String,
    /// Where the mail goes.
    pub kind: MailboxStoreKind,
    /// The NextHopConnector of its queue: configured, or derived from the name (stable across restarts).
    pub guid: String,
}

/// How a mailbox store delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailboxStoreKind {
    /// `maildir = "..."`: write Maildir files locally.
    Maildir(MaildirTemplate),
    /// `lmtp = "host:port"`: hand over by LMTP.
    Lmtp(HostPort),
}

/// A Maildir path template: absolute, `{data_dir}` expanded, `{domain}` and `{local}` left in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirTemplate(String);

impl MaildirTemplate {
    /// Wraps a template that is already absolute with `{data_dir}` expanded (as the loader makes it).
    pub fn new(template: impl Into<String>) -> Self {
        MaildirTemplate(template.into())
    }

    /// The template text, e.g. `/var/lib/sluice/mail/{domain}/{local}`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The Maildir of one recipient: `domain` is the lower-cased domain, `local` the local part after aliases
    /// and without `+tag`. The caller has checked that both are safe as path components.
    pub fn path_for(&self, domain: &str, local: &str) -> PathBuf {
        PathBuf::from(self.0.replace("{domain}", domain).replace("{local}", local))
    }
}

/// One `[[accepted_domains]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedDomain {
    /// The domain, lower-case; unique among accepted domains.
    pub domain: String,
    /// The name of the [`MailboxStore`] that receives its mail.
    pub mailbox_store: String,
    /// When set, the only local parts accepted (besides aliases); others get `550 5.1.1`.
    pub mailboxes: Option<Vec<String>>,
    /// Without `mailboxes`: whether clients outside `relay_networks` (and not authenticated) may reach any
    /// local part. When false they reach only local parts that exist: an alias, `postmaster`, or a Maildir
    /// folder already there.
    pub catch_all: bool,
    /// Local part to the addresses it expands to.
    pub aliases: BTreeMap<String, Vec<String>>,
    /// The character after which a `+tag` is ignored for mailbox lookup; `None` when set to `""`.
    pub recipient_delimiter: Option<char>,
}

/// One `[[send_connectors]]` entry: how sluice sends over SMTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendConnector {
    /// Unique among send connectors.
    pub name: String,
    /// The recipient domains routed here; never empty.
    pub address_spaces: Vec<AddressSpace>,
    /// Hosts tried in order; empty means DNS MX routing.
    pub smart_hosts: Vec<HostPort>,
    /// The port for DNS routing.
    pub port: u16,
    /// STARTTLS policy.
    pub tls: SendTls,
    /// Credentials for smart hosts.
    pub auth: Option<SendAuth>,
    /// Messages sent over one connection before it is closed.
    pub max_messages_per_connection: u32,
    /// The NextHopConnector of its queues: configured, or derived from the name (stable across restarts).
    pub guid: String,
}

keyword_enum!(
    /// A send connector's `tls`.
    SendTls {
        /// `"opportunistic"`: STARTTLS when offered, without certificate checks.
        Opportunistic = "opportunistic",
        /// `"required"`: STARTTLS with a verified certificate, or no delivery.
        Required = "required",
        /// `"off"`: never STARTTLS.
        Off = "off",
    }
);

/// A send connector's `auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendAuth {
    /// The login name.
    pub user: String,
    /// The password.
    pub password: String,
}

/// `[dns]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Resolvers to ask; empty means the system resolver.
    pub servers: Vec<SocketAddr>,
}

/// `[queue_database]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDatabaseConfig {
    /// Directory of generation files and the checkpoint (absolute).
    pub path: PathBuf,
    /// Directory of the transaction logs (absolute; defaults to `path`).
    pub log_path: PathBuf,
    /// Operations per group-commit flush, at least 1.
    pub batch_size: u32,
    /// Longest an operation waits to be flushed.
    pub batch_timeout: Duration,
    /// Bytes.
    pub logging_buffer_size: u64,
    /// Bytes per log file.
    pub logging_file_size: u64,
    /// Time covered by one generation file.
    pub generation_interval: Duration,
    /// Time between checkpoints.
    pub checkpoint_interval: Duration,
    /// Concurrent cleanup tasks.
    pub max_background_cleanup_tasks: u32,
    /// Whether scheduled online defragmentation runs.
    pub online_defrag_enabled: bool,
    /// When scheduled defragmentation starts (local time).
    pub online_defrag_schedule: TimeOfDay,
    /// How long it may run.
    pub online_defrag_time_to_run: Duration,
}

/// `[transport]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportConfig {
    /// Immediate connection retries after a connection failure.
    pub queue_glitch_retry_count: u32,
    /// Between glitch retries.
    pub queue_glitch_retry_interval: Duration,
    /// Retries after the glitch retries.
    pub transient_failure_retry_count: u32,
    /// Between transient retries.
    pub transient_failure_retry_interval: Duration,
    /// After the transient retries are used up.
    pub outbound_connection_failure_retry_interval: Duration,
    /// Per-message retry after a recipient-level 4xx.
    pub message_retry_interval: Duration,
    /// Then the message expires.
    pub message_expiration_timeout: Duration,
    /// Then one delay DSN goes to the sender; zero sends none.
    pub delay_notification_timeout: Duration,
    /// An empty delivery queue is deleted after this.
    pub queue_max_idle_time: Duration,
    /// A Retry queue that delivered nothing this long is resubmitted.
    pub max_idle_time_before_resubmit: Duration,
    /// Outbound connections in total.
    pub max_outbound_connections: u32,
    /// Outbound connections per next hop.
    pub max_per_domain_outbound_connections: u32,
    /// Messages a minute to one next hop at most (0: no limit); for the whole cluster with `[cluster]`.
    pub max_per_domain_messages_per_minute: u32,
    /// Crashes before a message is poison, 1..=10.
    pub poison_threshold: u32,
    /// How long delivered copies are kept.
    pub safety_net_hold_time: Duration,
    /// Delivery queues below this many messages are left out of the digest.
    pub digest_threshold: u32,
}

/// `[work_queue]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkQueueConfig {
    /// Messages scanned at once; 0 means automatic.
    pub concurrency: u32,
    /// What to do while an engine is unreachable.
    pub on_engine_failure: OnEngineFailure,
}

keyword_enum!(
    /// `on_engine_failure`
    OnEngineFailure {
        /// `"wait"`: hold messages until the engine answers.
        Wait = "wait",
        /// `"pass"`: let messages through unscanned.
        Pass = "pass",
    }
);

/// `[antispam]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AntispamConfig {
    /// The engine and its address.
    pub engine: AntispamEngine,
    /// SCL at or above which a message is quarantined.
    pub scl_quarantine: u8,
    /// SCL at or above which a message is dropped; `None` is `"off"`.
    pub scl_delete: Option<u8>,
    /// A directory of SpamAssassin-syntax `.cf` files (e.g. Debian's `/usr/share/spamassassin`) the built-in
    /// engine loads beside its own set; `None` (`""`, the default) loads none.
    pub rules_dir: Option<PathBuf>,
    /// Longest wait for a verdict.
    pub timeout: Duration,
}

/// `[antispam] engine`, with the engine's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AntispamEngine {
    /// `"builtin"`
    Builtin,
    /// `"rspamd"`, reached at `url` (default `http://127.0.0.1:11333`).
    Rspamd {
        /// Base URL of the rspamd worker.
        url: String,
    },
    /// `"spamd"`, reached at `address` (default `127.0.0.1:783`).
    Spamd {
        /// spamd's address.
        address: HostPort,
    },
    /// `"off"`
    Off,
}

/// `[antivirus]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AntivirusConfig {
    /// The engine and its address.
    pub engine: AntivirusEngine,
    /// What to do with an infected message.
    pub virus_action: VirusAction,
    /// clamd: the directory clamd loads its signatures from, where the updater writes an update's files
    /// before `RELOAD`; `None` (`""`, the default) leaves clamd's signatures to the administrator.
    pub database_dir: Option<PathBuf>,
    /// Longest wait for a verdict.
    pub timeout: Duration,
}

/// `[antivirus] engine`, with the engine's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AntivirusEngine {
    /// `"builtin"`
    Builtin,
    /// `"clamd"`, reached at `address` (default `127.0.0.1:3310`).
    Clamd {
        /// clamd's address.
        address: ScannerAddress,
    },
    /// `"off"`
    Off,
}

/// Where a scanning daemon listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScannerAddress {
    /// `host:port`
    Tcp(HostPort),
    /// A unix socket path (any value containing `/`), absolute.
    Unix(PathBuf),
}

keyword_enum!(
    /// `virus_action`
    VirusAction {
        /// `"quarantine"`
        Quarantine = "quarantine",
        /// `"drop"`
        Drop = "drop",
        /// `"strip"`: the infected part is replaced by a notice.
        Strip = "strip",
    }
);

/// `[quarantine]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuarantineConfig {
    /// How long quarantined messages are kept.
    pub retention: Duration,
}

/// `[updater]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdaterConfig {
    /// Where rule and signature sets come from.
    pub source: UpdateSource,
    /// Time between checks.
    pub interval: Duration,
}

/// `[updater] source`
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateSource {
    /// A local directory (absolute).
    Directory(PathBuf),
    /// An `http://` or `https://` URL.
    Url(String),
}

/// `[alerts]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// A work-queue pause longer than this raises a Critical alert.
    pub work_queue_pause_alert_after: Duration,
    /// A pause longer than this raises the "still paused" alert.
    pub work_queue_stuck_after: Duration,
    /// Cap of the growing interval between repeats of one alert.
    pub max_repeat_interval: Duration,
    /// Addresses that receive alerts by mail.
    pub email_to: Vec<String>,
    /// The SMTP server alert mail is handed to directly (port 25 by default).
    pub smtp_host: Option<HostPort>,
    /// Where alerts are POSTed as JSON.
    pub webhook_url: Option<String>,
}

/// `[back_pressure]`. Disk values are bytes of free space, 0 disables a level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackPressureConfig {
    /// Time between resource checks.
    pub check_interval: Duration,
    /// Free space under which the level is Medium.
    pub disk_free_medium: u64,
    /// Free space under which the level is High.
    pub disk_free_high: u64,
    /// Free space above which the level returns to Normal.
    pub disk_free_normal: u64,
    /// Resident memory (percent of physical) at which the level is Medium.
    pub memory_medium_percent: u8,
    /// ... High.
    pub memory_high_percent: u8,
    /// ... below which it returns to Normal.
    pub memory_normal_percent: u8,
    /// Submission queue length at which the level is Medium.
    pub submission_queue_medium: u64,
    /// ... High.
    pub submission_queue_high: u64,
    /// ... below which it returns to Normal.
    pub submission_queue_normal: u64,
}

/// `[tracking]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackingConfig {
    /// How long tracking events are kept.
    pub max_age: Duration,
}

/// `[cluster]`: several nodes sharing per-next-hop limits, a digest, queue actions and shadow copies.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// This node's unique name (default: `[server] name`, the first part of its queue identities).
    pub node: String,
    /// `redis://host:port/db` (or `rediss://`): shared limits, heartbeats, the digest, actions, drain.
    pub redis: String,
    /// `postgres://...`: shadow copies of accepted messages; `None` without.
    pub postgres: Option<String>,
    /// How peers reach this node's admin API (default: `http://` and `[admin] listen`).
    pub admin_url: String,
    /// How often the heartbeat and digest are written (their TTL is three of these).
    pub heartbeat_interval: Duration,
    /// A node silent this long is dead: its shadow copies are adopted.
    pub shadow_takeover_after: Duration,
    /// `true`: `451 4.4.0` when the shadow copy cannot be written; `false`: accepted unshadowed.
    pub reject_on_shadow_failure: bool,
}

/// `[debug]`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DebugConfig {
    /// Honour `X-Sluice-Fault` headers from `relay_networks` (for poison-message tests).
    pub fault_injection: bool,
}

impl Config {
    /// The mailbox store named `name`.
    pub fn mailbox_store(&self, name: &str) -> Option<&MailboxStore> {
        self.mailbox_stores.iter().find(|store| store.name == name)
    }

    /// The accepted domain entry for `domain` (compared case-insensitively).
    pub fn accepted_domain(&self, domain: &str) -> Option<&AcceptedDomain> {
        self.accepted_domains.iter().find(|accepted| accepted.domain.eq_ignore_ascii_case(domain))
    }

    /// The pickup directory, `<data_dir>/pickup`.
    pub fn pickup_dir(&self) -> PathBuf {
        self.server.data_dir.join("pickup")
    }

    /// The replay directory, `<data_dir>/replay`.
    pub fn replay_dir(&self) -> PathBuf {
        self.server.data_dir.join("replay")
    }

    /// The log directory, `<data_dir>/logs`.
    pub fn logs_dir(&self) -> PathBuf {
        self.server.data_dir.join("logs")
    }
}

impl AdminConfig {
    /// Whether the API listens on a loopback address only.
    pub fn is_loopback(&self) -> bool {
        self.listen.ip().to_canonical().is_loopback()
    }
}
