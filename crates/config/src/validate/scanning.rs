//! `[work_queue]`, `[antispam]`, `[antivirus]`, `[quarantine]`, `[updater]` and `[alerts]`.

use super::Table;
use crate::address::normalise_address;
use crate::error::ConfigError;
use crate::net::{CLAMD_PORT, HostPort, SMTP_PORT, SPAMD_PORT};
use crate::paths::PathBase;
use crate::raw::{RawAlerts, RawAntispam, RawAntivirus, RawQuarantine, RawSclDelete, RawUpdater, RawWorkQueue};
use crate::types::{
    AlertsConfig, AntispamConfig, AntispamEngine, AntivirusConfig, AntivirusEngine, OnEngineFailure, QuarantineConfig,
    ScannerAddress, UpdateSource, UpdaterConfig, VirusAction, WorkQueueConfig,
};

/// The highest spam confidence level.
const MAX_SCL: u8 = 9;

/// Where rspamd is reached when the file chooses it without a `url`.
const DEFAULT_RSPAMD_URL: &str = "http://127.0.0.1:11333";

pub(super) fn work_queue(raw: RawWorkQueue) -> Result<WorkQueueConfig, ConfigError> {
    let t = Table::new("work_queue");
    Ok(WorkQueueConfig {
        concurrency: raw.concurrency.unwrap_or(0),
        on_engine_failure: t.keyword("on_engine_failure", raw.on_engine_failure, OnEngineFailure::Wait)?,
    })
}

#[derive(Clone, Copy)]
enum SpamEngineName {
    Builtin,
    Rspamd,
    Spamd,
    Off,
}

pub(super) fn antispam(raw: RawAntispam, paths: &PathBase) -> Result<AntispamConfig, ConfigError> {
    let t = Table::new("antispam");
    let name = t.choice(
        "engine",
        raw.engine,
        "builtin",
        &[
            ("builtin", SpamEngineName::Builtin),
            ("rspamd", SpamEngineName::Rspamd),
            ("spamd", SpamEngineName::Spamd),
            ("off", SpamEngineName::Off),
        ],
    )?;
    // `url` and `address` may stay in the file while another engine is chosen; they are checked only when used.
    let engine = match name {
        SpamEngineName::Builtin => AntispamEngine::Builtin,
        SpamEngineName::Off => AntispamEngine::Off,
        SpamEngineName::Rspamd => {
            let url = t.url("url", raw.url.unwrap_or_else(|| DEFAULT_RSPAMD_URL.to_owned()))?;
            // rspamd's normal worker speaks plain HTTP; a stage must never end up off for want of TLS.
            if !url.starts_with("http://") {
                return Err(t.err("url", format!("{url:?}: rspamd's worker is reached over http:// (no TLS)")));
            }
            AntispamEngine::Rspamd { url }
        }
        SpamEngineName::Spamd => AntispamEngine::Spamd {
            address: match raw.address {
                Some(text) => HostPort::parse(&text, SPAMD_PORT).map_err(|why| t.err("address", why))?,
                None => HostPort { host: "127.0.0.1".to_owned(), port: SPAMD_PORT, literal: false },
            },
        },
    };
    let scl_delete = match raw.scl_delete {
        None => None,
        Some(RawSclDelete::Text(text)) if text == "off" => None,
        Some(RawSclDelete::Text(text)) => {
            return Err(t.err("scl_delete", format!("{text:?} is neither \"off\" nor an SCL from 0 to {MAX_SCL}")));
        }
        Some(RawSclDelete::Level(level)) => match u8::try_from(level) {
            Ok(level) if level <= MAX_SCL => Some(level),
            _ => {
                return Err(t.err("scl_delete", format!("{level} is out of range: expected \"off\" or 0 to {MAX_SCL}")));
            }
        },
    };
    let rules_dir = match raw.rules_dir.as_deref() {
        None | Some("") => None,
        Some(dir) => Some(t.path("rules_dir", Some(dir.to_owned()), "", paths)?),
    };
    Ok(AntispamConfig {
        engine,
        scl_quarantine: t.in_range("scl_quarantine", raw.scl_quarantine, 7, 0, MAX_SCL)?,
        scl_delete,
        rules_dir,
        timeout: t.nonzero_duration("timeout", raw.timeout, "30s")?,
    })
}

#[derive(Clone, Copy)]
enum VirusEngineName {
    Builtin,
    Clamd,
    Off,
}

pub(super) fn antivirus(raw: RawAntivirus, paths: &PathBase) -> Result<AntivirusConfig, ConfigError> {
    let t = Table::new("antivirus");
    let name = t.choice(
        "engine",
        raw.engine,
        "builtin",
        &[("builtin", VirusEngineName::Builtin), ("clamd", VirusEngineName::Clamd), ("off", VirusEngineName::Off)],
    )?;
    let engine = match name {
        VirusEngineName::Builtin => AntivirusEngine::Builtin,
        VirusEngineName::Off => AntivirusEngine::Off,
        VirusEngineName::Clamd => AntivirusEngine::Clamd {
            address: match raw.address {
                // A value with a slash is a unix socket path; anything else is host:port.
                Some(text) if text.contains('/') => {
                    ScannerAddress::Unix(paths.resolve(&text).map_err(|why| t.err("address", why))?)
                }
                Some(text) => {
                    ScannerAddress::Tcp(HostPort::parse(&text, CLAMD_PORT).map_err(|why| t.err("address", why))?)
                }
                None => {
                    ScannerAddress::Tcp(HostPort { host: "127.0.0.1".to_owned(), port: CLAMD_PORT, literal: false })
                }
            },
        },
    };
    let database_dir = match raw.database_dir.as_deref() {
        None | Some("") => None,
        Some(dir) => Some(t.path("database_dir", Some(dir.to_owned()), "", paths)?),
    };
    Ok(AntivirusConfig {
        engine,
        virus_action: t.keyword("virus_action", raw.virus_action, VirusAction::Quarantine)?,
        database_dir,
        timeout: t.nonzero_duration("timeout", raw.timeout, "30s")?,
    })
}

pub(super) fn quarantine(raw: RawQuarantine) -> Result<QuarantineConfig, ConfigError> {
    let t = Table::new("quarantine");
    Ok(QuarantineConfig { retention: t.nonzero_duration("retention", raw.retention, "30d")? })
}

pub(super) fn updater(raw: RawUpdater, paths: &PathBase) -> Result<UpdaterConfig, ConfigError> {
    let t = Table::new("updater");
    let source = raw.source.unwrap_or_else(|| "{data_dir}/updates".to_owned());
    let source = if source.contains("://") {
        UpdateSource::Url(t.url("source", source)?)
    } else {
        UpdateSource::Directory(paths.resolve(&source).map_err(|why| t.err("source", why))?)
    };
    Ok(UpdaterConfig { source, interval: t.nonzero_duration("interval", raw.interval, "5m")? })
}

pub(super) fn alerts(raw: RawAlerts) -> Result<AlertsConfig, ConfigError> {
    let t = Table::new("alerts");
    let email_to = raw
        .email_to
        .unwrap_or_default()
        .iter()
        .map(|address| normalise_address(address))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| t.err("email_to", why))?;
    let smtp_host = raw
        .smtp_host
        .map(|text| HostPort::parse(&text, SMTP_PORT).map_err(|why| t.err("smtp_host", why)))
        .transpose()?;
    if !email_to.is_empty() && smtp_host.is_none() {
        return Err(t.err(
            "email_to",
            "alert mail is handed to smtp_host directly (not through the queue): set [alerts] smtp_host",
        ));
    }
    Ok(AlertsConfig {
        work_queue_pause_alert_after: t.duration(
            "work_queue_pause_alert_after",
            raw.work_queue_pause_alert_after,
            "10s",
        )?,
        work_queue_stuck_after: t.nonzero_duration("work_queue_stuck_after", raw.work_queue_stuck_after, "15m")?,
        max_repeat_interval: t.nonzero_duration("max_repeat_interval", raw.max_repeat_interval, "1h")?,
        email_to,
        smtp_host,
        webhook_url: raw.webhook_url.map(|url| t.url("webhook_url", url)).transpose()?,
    })
}
