//! The validated configuration turned into library objects: one function per object that `serve` (and a
//! configuration reload) hands to a library, so that every config → library mapping is in this file.
//!
//! The libraries have defaults of their own (`Options`, `Limits`, `Thresholds`) for their tests; a test
//! here checks that they equal what the built-in configuration wires, so that the two cannot drift.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use sluice_config::{Config, MailboxStoreKind};
use sluice_queue_db::Options;
use sluice_transport::pressure::Thresholds;
use sluice_transport::{Alerts, Routing, Transport};

/// `[queue_database]` (and the Safety Net hold of `[transport]`) as the queue database takes it.
pub fn queue_db_options(config: &Config) -> Options {
    Options {
        batch_size: config.queue_database.batch_size as usize,
        batch_timeout: config.queue_database.batch_timeout,
        generation_interval: config.queue_database.generation_interval,
        safety_net_hold: config.transport.safety_net_hold_time,
        logging_file_size: config.queue_database.logging_file_size,
        checkpoint_interval: config.queue_database.checkpoint_interval,
        ..Options::default()
    }
}

/// The alert log in `<data_dir>/logs`, with `[alerts]`.
pub fn alerts(config: &Config) -> anyhow::Result<Alerts> {
    let dir = config.server.data_dir.join("logs");
    Alerts::open(&dir, &config.server.name, env!("CARGO_PKG_VERSION"), config.alerts.max_repeat_interval)
        .with_context(|| format!("opening {}", dir.join("alerts.log").display()))
}

/// The routing table of a configuration.
pub fn routing(config: &Config) -> Routing {
    use sluice_transport as t;
    Routing {
        stores: config
            .mailbox_stores
            .iter()
            .map(|s| t::MailboxStore {
                name: s.name.clone(),
                guid: s.guid.clone(),
                kind: match &s.kind {
                    MailboxStoreKind::Maildir(tpl) => t::StoreKind::Maildir(tpl.as_str().to_owned()),
                    MailboxStoreKind::Lmtp(hp) => t::StoreKind::Lmtp(hp.render(24)),
                },
            })
            .collect(),
        accepted_domains: config
            .accepted_domains
            .iter()
            .map(|d| t::AcceptedDomain {
                domain: d.domain.clone(),
                store: d.mailbox_store.clone(),
                recipient_delimiter: d.recipient_delimiter.map(String::from).unwrap_or_default(),
            })
            .collect(),
        send_connectors: config
            .send_connectors
            .iter()
            .map(|c| t::SendConnector {
                name: c.name.clone(),
                guid: c.guid.clone(),
                address_spaces: c.address_spaces.iter().map(|a| a.to_string().to_ascii_lowercase()).collect(),
                smart_hosts: c.smart_hosts.iter().map(|h| h.render(25)).collect(),
                port: c.port,
                session: t::SendSession {
                    tls: match c.tls {
                        sluice_config::SendTls::Opportunistic => t::TlsPolicy::Opportunistic,
                        sluice_config::SendTls::Required => t::TlsPolicy::Required,
                        sluice_config::SendTls::Off => t::TlsPolicy::Off,
                    },
                    auth: c
                        .auth
                        .as_ref()
                        .map(|a| t::Credentials { user: a.user.clone(), password: a.password.clone() }),
                    max_messages_per_connection: c.max_messages_per_connection as usize,
                },
            })
            .collect(),
        limits: limits(&config.transport),
    }
}

/// `[transport]`'s retry, expiry and connection settings as the delivery queues use them.
pub fn limits(t: &sluice_config::TransportConfig) -> sluice_transport::Limits {
    sluice_transport::Limits {
        queue_glitch_retry_count: t.queue_glitch_retry_count,
        queue_glitch_retry_interval: t.queue_glitch_retry_interval,
        transient_failure_retry_count: t.transient_failure_retry_count,
        transient_failure_retry_interval: t.transient_failure_retry_interval,
        outbound_connection_failure_retry_interval: t.outbound_connection_failure_retry_interval,
        message_retry_interval: t.message_retry_interval,
        message_expiration_timeout: t.message_expiration_timeout,
        delay_notification_timeout: t.delay_notification_timeout,
        queue_max_idle_time: t.queue_max_idle_time,
        max_idle_time_before_resubmit: t.max_idle_time_before_resubmit,
        max_outbound_connections: t.max_outbound_connections as usize,
        max_per_domain_outbound_connections: t.max_per_domain_outbound_connections as usize,
        max_per_domain_messages_per_minute: t.max_per_domain_messages_per_minute,
        poison_threshold: t.poison_threshold,
        digest_threshold: t.digest_threshold,
        ..sluice_transport::Limits::default()
    }
}

/// `[back_pressure]` as the transport uses it.
pub fn thresholds(config: &Config) -> Thresholds {
    let b = &config.back_pressure;
    Thresholds {
        check_interval: b.check_interval,
        disk_free_medium: b.disk_free_medium,
        disk_free_high: b.disk_free_high,
        disk_free_normal: b.disk_free_normal,
        memory_medium_percent: b.memory_medium_percent,
        memory_high_percent: b.memory_high_percent,
        memory_normal_percent: b.memory_normal_percent,
        submission_queue_medium: b.submission_queue_medium,
        submission_queue_high: b.submission_queue_high,
        submission_queue_normal: b.submission_queue_normal,
    }
}

/// The delivery agent that the transport's delivery queues use: SMTP (MX routing and smart hosts), LMTP and
/// Maildir, resolving names through `[dns] servers` (or the system's resolver configuration), with the
/// system's trusted certificate authorities (or `SSL_CERT_FILE`) for send connectors with `tls = "required"`.
pub fn delivery_agent(config: &Config) -> sluice_delivery::Agent {
    sluice_delivery::Agent::new(
        config.server.hostname.as_str(),
        &dns_settings(config),
        sluice_delivery::ClientTls::native(),
    )
}

/// `[dns]` as delivery takes it.
pub fn dns_settings(config: &Config) -> sluice_delivery::DnsSettings {
    sluice_delivery::DnsSettings { servers: config.dns.servers.clone() }
}

/// The TLS acceptor of each receive connector, in the order of `receive_connectors`. Certificates are read
/// (or generated) here, before anything starts: a connector that cannot offer the TLS it is configured for
/// stops the start with the file and the reason.
pub fn tls_acceptors(config: &Config) -> anyhow::Result<Vec<Option<tokio_rustls::TlsAcceptor>>> {
    config
        .receive_connectors
        .iter()
        .map(|c| {
            sluice_receive::tls_acceptor(&c.tls, &config.server.hostname)
                .map_err(|e| anyhow::anyhow!("receive connector {}: {e}", c.name))
        })
        .collect()
}

/// The admin API's TLS acceptor for `[admin] tls`, `None` without it. The certificate and key are read here,
/// before anything listens: an API that cannot serve the TLS it is configured for stops the start with the
/// file and the reason.
pub fn admin_tls(config: &Config) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let Some(files) = &config.admin.tls else { return Ok(None) };
    sluice_receive::tls_acceptor(&sluice_config::ReceiveTls::Files(files.clone()), &config.server.hostname)
        .map_err(|e| anyhow::anyhow!("[admin] tls: {e}"))
}

/// `[admin]` as the admin API serves it.
pub fn admin_state(
    config: &Config,
    transport: &Transport,
    started: Instant,
    reload: sluice_admin::ReloadFn,
    cluster: Option<sluice_cluster::Cluster>,
) -> sluice_admin::AdminState {
    sluice_admin::AdminState {
        cluster,
        transport: transport.clone(),
        started,
        token: config.admin.token.clone(),
        allowed_hosts: config.admin.allowed_hosts.clone(),
        listen: config.admin.listen,
        reload,
        defrag_time_to_run: config.queue_database.online_defrag_time_to_run,
        updater_log: config.server.data_dir.join("logs").join("updater.log"),
    }
}

/// The work queue's settings: each built-in engine starts with the set an earlier update installed, or the
/// one shipped in the binary.
pub fn work_queue(
    config: &Config,
    log: &crate::updater::UpdaterLog,
    extra_rules: &[sluice_scan::SourceFile],
) -> sluice_transport::workqueue::Settings {
    use sluice_config::{AntispamEngine, AntivirusEngine, OnEngineFailure, ScannerAddress, VirusAction};
    use sluice_transport::workqueue::{self as wq, Installed, Signatures};
    use wq::remote::{Address, Clamd, Remote, Rspamd, Spamd};
    let data_dir = &config.server.data_dir;
    let (antispam, antispam_remote) = match &config.antispam.engine {
        AntispamEngine::Builtin => (Some(crate::updater::startup_antispam(data_dir, log, extra_rules)), None),
        AntispamEngine::Rspamd { url } => {
            let rspamd = Rspamd::new(url, config.antispam.timeout).expect("an http:// URL, checked with the file");
            (None, Some(Arc::new(Remote::Rspamd(rspamd))))
        }
        AntispamEngine::Spamd { address } => {
            let spamd = Spamd::new(Address::Tcp(address.to_string()), config.antispam.timeout);
            (None, Some(Arc::new(Remote::Spamd(spamd))))
        }
        AntispamEngine::Off => (None, None),
    };
    let (antivirus, antivirus_remote) = match &config.antivirus.engine {
        AntivirusEngine::Builtin => (
            Some(crate::updater::installed_antivirus(data_dir, log).unwrap_or_else(|| Installed {
                set: Signatures::builtin().into(),
                version: "builtin".into(),
                installed_ms: None,
            })),
            None,
        ),
        AntivirusEngine::Clamd { address } => {
            let address = match address {
                ScannerAddress::Tcp(hp) => Address::Tcp(hp.to_string()),
                ScannerAddress::Unix(path) => Address::Unix(path.clone()),
            };
            (None, Some(Arc::new(Remote::Clamd(Clamd::new(address, config.antivirus.timeout)))))
        }
        AntivirusEngine::Off => (None, None),
    };
    let remote = antispam_remote.is_some() || antivirus_remote.is_some();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    wq::Settings {
        antispam,
        antivirus,
        antispam_remote,
        antivirus_remote,
        antivirus_remote_version: crate::updater::remote_antivirus_version(data_dir),
        concurrency: match config.work_queue.concurrency {
            // A network engine spends its time waiting for answers: more messages at once.
            0 if remote => 32,
            0 => 2 * cores,
            n => n as usize,
        },
        pass_on_failure: config.work_queue.on_engine_failure == OnEngineFailure::Pass,
        scl_quarantine: config.antispam.scl_quarantine,
        scl_delete: config.antispam.scl_delete,
        virus_action: match config.antivirus.virus_action {
            VirusAction::Quarantine => wq::VirusAction::Quarantine,
            VirusAction::Drop => wq::VirusAction::Drop,
            VirusAction::Strip => wq::VirusAction::Strip,
        },
        pause_alert_after: config.alerts.work_queue_pause_alert_after,
        stuck_after: config.alerts.work_queue_stuck_after,
        quarantine_retention: config.quarantine.retention,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn library_defaults_equal_the_wiring_of_the_builtin_configuration() {
        let config = Config::builtin().unwrap().config;
        // `Options` has no `PartialEq`; its `Debug` form names every field and value.
        assert_eq!(format!("{:?}", queue_db_options(&config)), format!("{:?}", Options::default()));
        assert_eq!(routing(&config).limits, sluice_transport::Limits::default());
        assert_eq!(thresholds(&config), Thresholds::default());
        assert_eq!(dns_settings(&config), sluice_delivery::DnsSettings::default());
    }
}
