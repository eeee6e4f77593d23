//! Turns the file as written ([`RawConfig`]) into the typed [`Config`], once: defaults applied, units parsed,
//! paths resolved, entries checked against each other. Every error names its key.
//!
//! The default of each key is written next to the key, in the file's own syntax, so this module reads as the
//! schema of the configuration file.

mod queue;
mod routing;
mod scanning;
mod smtp;

use std::collections::BTreeMap;
use std::fmt::Display;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::ConfigError;
use crate::net::is_host_name;
use crate::paths::{PathBase, resolve_data_dir};
use crate::raw::{RawAdmin, RawCluster, RawConfig, RawLog, RawServer, RawSize, RawTlsFiles, RawTracking};
use crate::types::{
    AdminConfig, ClusterConfig, Config, DebugConfig, Keyword, LogConfig, LogFormat, ServerConfig, TlsFiles,
    TrackingConfig,
};
use crate::units::{parse_duration, parse_size};

/// Validates a parsed file; relative paths are resolved against `base` (absolute).
pub(crate) fn validate(raw: RawConfig, base: &Path) -> Result<Config, ConfigError> {
    let server = server(raw.server.unwrap_or_default(), base)?;
    let paths = PathBase { base: base.to_path_buf(), data_dir: server.data_dir.clone() };

    let receive_connectors = smtp::receive_connectors(raw.receive_connectors, &paths)?;
    let mailbox_stores = routing::mailbox_stores(raw.mailbox_stores, &paths)?;
    let accepted_domains = routing::accepted_domains(raw.accepted_domains, &mailbox_stores)?;
    let send_connectors = smtp::send_connectors(raw.send_connectors.unwrap_or_default())?;
    routing::check_guids_unique(&mailbox_stores, &send_connectors)?;

    let admin = admin(raw.admin.unwrap_or_default(), &paths)?;
    if let Some(connector) = receive_connectors.iter().find(|c| c.listen == admin.listen) {
        return Err(ConfigError::invalid(
            "admin.listen",
            format!("{} is also the listen address of receive connector {:?}", admin.listen, connector.name),
        ));
    }

    let server_name = server.name.clone();
    let admin_url = format!("{}://{}", if admin.tls.is_some() { "https" } else { "http" }, admin.listen);
    Ok(Config {
        server,
        log: log(raw.log.unwrap_or_default())?,
        admin,
        receive_connectors,
        mailbox_stores,
        accepted_domains,
        send_connectors,
        dns: queue::dns(raw.dns.unwrap_or_default())?,
        queue_database: queue::queue_database(raw.queue_database.unwrap_or_default(), &paths)?,
        transport: queue::transport(raw.transport.unwrap_or_default())?,
        work_queue: scanning::work_queue(raw.work_queue.unwrap_or_default())?,
        antispam: scanning::antispam(raw.antispam.unwrap_or_default(), &paths)?,
        antivirus: scanning::antivirus(raw.antivirus.unwrap_or_default(), &paths)?,
        quarantine: scanning::quarantine(raw.quarantine.unwrap_or_default())?,
        updater: scanning::updater(raw.updater.unwrap_or_default(), &paths)?,
        alerts: scanning::alerts(raw.alerts.unwrap_or_default())?,
        back_pressure: queue::back_pressure(raw.back_pressure.unwrap_or_default())?,
        tracking: tracking(raw.tracking.unwrap_or_default())?,
        debug: DebugConfig { fault_injection: raw.debug.unwrap_or_default().fault_injection.unwrap_or(false) },
        cluster: raw.cluster.map(|c| cluster(c, &server_name, &admin_url)).transpose()?,
    })
}

fn cluster(raw: RawCluster, server_name: &str, admin_url: &str) -> Result<ClusterConfig, ConfigError> {
    let table = Table::new("cluster");
    let node = raw.node.unwrap_or_else(|| server_name.to_owned());
    if node.is_empty() || !node.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
        return Err(table.err("node", format!("{node:?} cannot name a node: letters, digits, '-', '_' and '.' only")));
    }
    let redis = raw.redis.unwrap_or_default();
    if !(redis.starts_with("redis://") || redis.starts_with("rediss://") || redis.starts_with("redis+unix://")) {
        return Err(table.err(
            "redis",
            format!("{redis:?} is not a Redis URL; e.g. \"redis://127.0.0.1:6379/0\" (the key is required)"),
        ));
    }
    let postgres = raw.postgres.filter(|p| !p.is_empty());
    if let Some(p) = &postgres
        && !(p.starts_with("postgres://") || p.starts_with("postgresql://"))
    {
        return Err(table
            .err("postgres", format!("{p:?} is not a PostgreSQL URL; e.g. \"postgres://sluice@127.0.0.1/sluice\"")));
    }
    let admin_url = raw.admin_url.unwrap_or_else(|| admin_url.to_owned());
    if !(admin_url.starts_with("http://") || admin_url.starts_with("https://")) {
        return Err(table.err("admin_url", format!("{admin_url:?} is not an http:// or https:// URL")));
    }
    let heartbeat_interval = table.nonzero_duration("heartbeat_interval", raw.heartbeat_interval, "10s")?;
    let shadow_takeover_after = table.nonzero_duration("shadow_takeover_after", raw.shadow_takeover_after, "10m")?;
    if shadow_takeover_after < heartbeat_interval * 3 {
        return Err(table.err(
            "shadow_takeover_after",
            "must be at least three heartbeat intervals, or a live node's mail would be taken over",
        ));
    }
    Ok(ClusterConfig {
        node,
        redis,
        postgres,
        admin_url: admin_url.trim_end_matches('/').to_owned(),
        heartbeat_interval,
        shadow_takeover_after,
        reject_on_shadow_failure: raw.reject_on_shadow_failure.unwrap_or(false),
    })
}

fn tracking(raw: RawTracking) -> Result<TrackingConfig, ConfigError> {
    let table = Table::new("tracking");
    Ok(TrackingConfig { max_age: table.nonzero_duration("max_age", raw.max_age, "30d")? })
}

fn server(raw: RawServer, base: &Path) -> Result<ServerConfig, ConfigError> {
    let table = Table::new("server");
    let hostname = match raw.hostname {
        Some(hostname) => {
            if !is_host_name(&hostname) {
                return Err(table.err("hostname", format!("{hostname:?} is not a valid host name")));
            }
            hostname.strip_suffix('.').unwrap_or(&hostname).to_ascii_lowercase()
        }
        None => system_hostname(),
    };
    let name = raw.name.unwrap_or_else(|| hostname.split('.').next().unwrap_or(&hostname).to_owned());
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control() || c == '\\' || c == '/') {
        return Err(table.err(
            "name",
            format!("{name:?} cannot name the server: it must be non-empty, without spaces, '\\' or '/'"),
        ));
    }
    let data_dir = raw.data_dir.unwrap_or_else(|| "./sluice-data".to_owned());
    let data_dir = resolve_data_dir(&data_dir, base).map_err(|why| table.err("data_dir", why))?;
    let user = match raw.user {
        Some(user) if user.is_empty() => return Err(table.err("user", "the user name is empty")),
        user => user,
    };
    Ok(ServerConfig { hostname, name, data_dir, user })
}

/// The system's host name, from the kernel or `/etc/hostname`; `localhost` when neither gives a usable one.
pub(crate) fn system_hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .map(|text| text.trim().to_ascii_lowercase())
        .find(|name| is_host_name(name))
        .unwrap_or_else(|| "localhost".to_owned())
}

fn log(raw: RawLog) -> Result<LogConfig, ConfigError> {
    let table = Table::new("log");
    let level = raw.level.unwrap_or_else(|| "info".to_owned());
    if level.trim().is_empty() {
        return Err(table.err("level", "the filter is empty; e.g. \"info\" or \"info,sluice_receive=debug\""));
    }
    let format = table.keyword("format", raw.format, LogFormat::Text)?;
    Ok(LogConfig { level, format })
}

fn admin(raw: RawAdmin, paths: &PathBase) -> Result<AdminConfig, ConfigError> {
    let table = Table::new("admin");
    let listen = table.socket_addr("listen", raw.listen, "127.0.0.1:8025")?;
    let token = raw.token.filter(|token| !token.is_empty());
    let tls = raw.tls.map(|files| table.tls_files("tls", files, paths)).transpose()?;
    let allowed_hosts = raw.allowed_hosts.unwrap_or_default();
    if let Some(host) =
        allowed_hosts.iter().find(|host| host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(table.err("allowed_hosts", format!("{host:?} is not a host name or host:port")));
    }
    let admin = AdminConfig { listen, token, tls, allowed_hosts };
    // Off loopback the API is reachable from the network: the token keeps strangers out and TLS keeps the
    // token (and what the API answers) from anyone on the path. Refused here, so that `check-config` says so
    // and `serve` stops before anything listens.
    if !admin.is_loopback() {
        let missing: Vec<&str> = [(admin.token.is_none(), "[admin] token"), (admin.tls.is_none(), "[admin] tls")]
            .into_iter()
            .filter_map(|(missing, key)| missing.then_some(key))
            .collect();
        if !missing.is_empty() {
            return Err(table.err(
                "listen",
                format!(
                    "{listen} is not a loopback address: set both [admin] token and [admin] tls \
                     (missing: {}), or listen on 127.0.0.1 or ::1",
                    missing.join(" and ")
                ),
            ));
        }
    }
    Ok(admin)
}

/// Names of connectors and stores appear in headers, logs and queue identities.
pub(super) fn check_name(table: &Table, name: &str) -> Result<(), ConfigError> {
    if name.trim().is_empty() || name.trim() != name || name.chars().any(char::is_control) {
        return Err(table.err(
            "name",
            format!("{name:?} is not a usable name: it must be non-empty, without leading or trailing spaces"),
        ));
    }
    Ok(())
}

/// Reports whether `names` has a duplicate (compared case-insensitively) and names it, for the "unique
/// within each array" rules.
pub(super) fn check_unique<'a>(
    array: &str,
    what: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for (index, name) in names.into_iter().enumerate() {
        if let Some(first) = seen.insert(name.to_lowercase(), index) {
            return Err(ConfigError::invalid(
                format!("{array}[{index}].{what}"),
                format!("{name:?} is already used by {array}[{first}]; each {what} must be unique"),
            ));
        }
    }
    Ok(())
}

/// Names keys in errors (`receive_connectors[0].listen`) and parses values with their defaults.
#[derive(Debug, Clone)]
pub(super) struct Table(String);

impl Table {
    pub(super) fn new(name: &str) -> Self {
        Table(name.to_owned())
    }

    /// One entry of an array table.
    pub(super) fn entry(array: &str, index: usize) -> Self {
        Table(format!("{array}[{index}]"))
    }

    pub(super) fn key(&self, key: &str) -> String {
        format!("{}.{key}", self.0)
    }

    pub(super) fn err(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::invalid(self.key(key), message)
    }

    pub(super) fn duration(&self, key: &str, value: Option<String>, default: &str) -> Result<Duration, ConfigError> {
        parse_duration(value.as_deref().unwrap_or(default)).map_err(|why| self.err(key, why))
    }

    /// A duration that must be longer than zero.
    pub(super) fn nonzero_duration(
        &self,
        key: &str,
        value: Option<String>,
        default: &str,
    ) -> Result<Duration, ConfigError> {
        let duration = self.duration(key, value, default)?;
        if duration.is_zero() {
            return Err(self.err(key, "must be longer than zero"));
        }
        Ok(duration)
    }

    pub(super) fn size(&self, key: &str, value: Option<RawSize>, default: &str) -> Result<u64, ConfigError> {
        match value {
            Some(RawSize::Bytes(bytes)) => Ok(bytes),
            Some(RawSize::Text(text)) => parse_size(&text).map_err(|why| self.err(key, why)),
            None => parse_size(default).map_err(|why| self.err(key, why)),
        }
    }

    /// A size that must be larger than zero.
    pub(super) fn nonzero_size(&self, key: &str, value: Option<RawSize>, default: &str) -> Result<u64, ConfigError> {
        let bytes = self.size(key, value, default)?;
        if bytes == 0 {
            return Err(self.err(key, "must be larger than zero"));
        }
        Ok(bytes)
    }

    /// One of a fixed set of words, e.g. `"reject" | "normalize"`.
    pub(super) fn choice<T: Copy>(
        &self,
        key: &str,
        value: Option<String>,
        default: &str,
        options: &[(&str, T)],
    ) -> Result<T, ConfigError> {
        let word = value.as_deref().unwrap_or(default);
        options.iter().find(|(name, _)| *name == word).map(|(_, option)| *option).ok_or_else(|| {
            let names: Vec<String> = options.iter().map(|(name, _)| format!("{name:?}")).collect();
            self.err(key, format!("{word:?} is not one of {}", names.join(", ")))
        })
    }

    /// One of the words of a [`Keyword`] enum.
    pub(super) fn keyword<T: Keyword>(&self, key: &str, value: Option<String>, default: T) -> Result<T, ConfigError> {
        let options: Vec<(&str, T)> = T::ALL.iter().map(|option| (option.as_str(), *option)).collect();
        self.choice(key, value, default.as_str(), &options)
    }

    /// A number within `min..=max`.
    pub(super) fn in_range<T: PartialOrd + Display + Copy>(
        &self,
        key: &str,
        value: Option<T>,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError> {
        let value = value.unwrap_or(default);
        if value < min || value > max {
            return Err(self.err(key, format!("{value} is out of range: expected {min} to {max}")));
        }
        Ok(value)
    }

    /// A number that must be at least 1.
    pub(super) fn at_least_one(&self, key: &str, value: Option<u32>, default: u32) -> Result<u32, ConfigError> {
        self.in_range(key, value, default, 1, u32::MAX)
    }

    pub(super) fn socket_addr(
        &self,
        key: &str,
        value: Option<String>,
        default: &str,
    ) -> Result<SocketAddr, ConfigError> {
        let text = value.as_deref().unwrap_or(default);
        text.parse().map_err(|_| {
            self.err(key, format!("{text:?} is not a socket address: expected \"ip:port\", e.g. \"127.0.0.1:2525\""))
        })
    }

    pub(super) fn path(
        &self,
        key: &str,
        value: Option<String>,
        default: &str,
        paths: &PathBase,
    ) -> Result<PathBuf, ConfigError> {
        paths.resolve(value.as_deref().unwrap_or(default)).map_err(|why| self.err(key, why))
    }

    pub(super) fn tls_files(&self, key: &str, raw: RawTlsFiles, paths: &PathBase) -> Result<TlsFiles, ConfigError> {
        let file = |name: &str, text: &str| paths.resolve(text).map_err(|why| self.err(&format!("{key}.{name}"), why));
        Ok(TlsFiles { cert: file("cert", &raw.cert)?, key: file("key", &raw.key)? })
    }

    /// An `http://` or `https://` URL.
    pub(super) fn url(&self, key: &str, text: String) -> Result<String, ConfigError> {
        let rest = text
            .strip_prefix("http://")
            .or_else(|| text.strip_prefix("https://"))
            .filter(|rest| !rest.is_empty() && !rest.starts_with('/'));
        if rest.is_none() || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.err(key, format!("{text:?} is not an http:// or https:// URL")));
        }
        Ok(text)
    }
}
