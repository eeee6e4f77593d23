//! Renders a [`Config`] back to TOML, every key explicit, in the units an operator writes.
//!
//! This is what `sluice check-config` prints. Loading the output (with any base directory, since every path
//! in it is absolute) gives back an equal `Config`; a test holds it to that.

use std::path::Path;

use crate::net::{CLAMD_PORT, LMTP_PORT, SMTP_PORT, SPAMD_PORT};
use crate::raw::{
    RawAcceptedDomain, RawAdmin, RawAlerts, RawAntispam, RawAntivirus, RawBackPressure, RawCluster, RawConfig,
    RawDebug, RawDns, RawLog, RawMailboxStore, RawQuarantine, RawQueueDatabase, RawReceiveConnector, RawReceiveTls,
    RawSclDelete, RawSendAuth, RawSendConnector, RawServer, RawSize, RawTlsFiles, RawTracking, RawTransport,
    RawUpdater, RawUser, RawWorkQueue,
};
use crate::types::{
    AcceptedDomain, AntispamEngine, AntivirusEngine, Config, MailboxStore, MailboxStoreKind, ReceiveConnector,
    ReceiveTls, ScannerAddress, SendConnector, TlsFiles, UpdateSource,
};
use crate::units::{render_duration, render_size};

/// The effective configuration as TOML.
pub(crate) fn render(config: &Config) -> String {
    // Serialising these plain structs of strings, integers, booleans, arrays and tables cannot fail: every
    // integer came from TOML (so fits an i64), and no map has non-string keys.
    toml::to_string(&to_raw(config)).expect("a RawConfig always serialises to TOML")
}

fn text(value: &str) -> Option<String> {
    Some(value.to_owned())
}

fn path(value: &Path) -> Option<String> {
    Some(value.to_string_lossy().into_owned())
}

fn duration(value: std::time::Duration) -> Option<String> {
    Some(render_duration(value))
}

fn size(value: u64) -> Option<RawSize> {
    Some(RawSize::Text(render_size(value)))
}

fn tls_files(files: &TlsFiles) -> RawTlsFiles {
    RawTlsFiles { cert: files.cert.to_string_lossy().into_owned(), key: files.key.to_string_lossy().into_owned() }
}

fn to_raw(config: &Config) -> RawConfig {
    let server = &config.server;
    let admin = &config.admin;
    let db = &config.queue_database;
    let transport = &config.transport;
    let bp = &config.back_pressure;
    let alerts = &config.alerts;
    RawConfig {
        server: Some(RawServer {
            hostname: text(&server.hostname),
            name: text(&server.name),
            data_dir: path(&server.data_dir),
            user: server.user.clone(),
        }),
        log: Some(RawLog { level: text(&config.log.level), format: text(config.log.format.as_str()) }),
        admin: Some(RawAdmin {
            listen: Some(admin.listen.to_string()),
            token: Some(admin.token.clone().unwrap_or_default()),
            allowed_hosts: Some(admin.allowed_hosts.clone()),
            tls: admin.tls.as_ref().map(tls_files),
        }),
        receive_connectors: Some(config.receive_connectors.iter().map(receive_connector).collect()),
        mailbox_stores: Some(config.mailbox_stores.iter().map(mailbox_store).collect()),
        accepted_domains: Some(config.accepted_domains.iter().map(accepted_domain).collect()),
        send_connectors: Some(config.send_connectors.iter().map(send_connector).collect()),
        dns: Some(RawDns { servers: Some(config.dns.servers.iter().map(ToString::to_string).collect()) }),
        queue_database: Some(RawQueueDatabase {
            path: path(&db.path),
            log_path: path(&db.log_path),
            batch_size: Some(db.batch_size),
            batch_timeout: duration(db.batch_timeout),
            logging_buffer_size: size(db.logging_buffer_size),
            logging_file_size: size(db.logging_file_size),
            generation_interval: duration(db.generation_interval),
            checkpoint_interval: duration(db.checkpoint_interval),
            max_background_cleanup_tasks: Some(db.max_background_cleanup_tasks),
            online_defrag_enabled: Some(db.online_defrag_enabled),
            online_defrag_schedule: Some(db.online_defrag_schedule.to_string()),
            online_defrag_time_to_run: duration(db.online_defrag_time_to_run),
        }),
        transport: Some(RawTransport {
            queue_glitch_retry_count: Some(transport.queue_glitch_retry_count),
            queue_glitch_retry_interval: duration(transport.queue_glitch_retry_interval),
            transient_failure_retry_count: Some(transport.transient_failure_retry_count),
            transient_failure_retry_interval: duration(transport.transient_failure_retry_interval),
            outbound_connection_failure_retry_interval: duration(transport.outbound_connection_failure_retry_interval),
            message_retry_interval: duration(transport.message_retry_interval),
            message_expiration_timeout: duration(transport.message_expiration_timeout),
            delay_notification_timeout: duration(transport.delay_notification_timeout),
            queue_max_idle_time: duration(transport.queue_max_idle_time),
            max_idle_time_before_resubmit: duration(transport.max_idle_time_before_resubmit),
            max_outbound_connections: Some(transport.max_outbound_connections),
            max_per_domain_outbound_connections: Some(transport.max_per_domain_outbound_connections),
            max_per_domain_messages_per_minute: Some(transport.max_per_domain_messages_per_minute),
            poison_threshold: Some(transport.poison_threshold),
            safety_net_hold_time: duration(transport.safety_net_hold_time),
            digest_threshold: Some(transport.digest_threshold),
        }),
        work_queue: Some(RawWorkQueue {
            concurrency: Some(config.work_queue.concurrency),
            on_engine_failure: text(config.work_queue.on_engine_failure.as_str()),
        }),
        antispam: Some(antispam(config)),
        antivirus: Some(antivirus(config)),
        quarantine: Some(RawQuarantine { retention: duration(config.quarantine.retention) }),
        updater: Some(RawUpdater {
            source: Some(match &config.updater.source {
                UpdateSource::Directory(dir) => dir.to_string_lossy().into_owned(),
                UpdateSource::Url(url) => url.clone(),
            }),
            interval: duration(config.updater.interval),
        }),
        alerts: Some(RawAlerts {
            work_queue_pause_alert_after: duration(alerts.work_queue_pause_alert_after),
            work_queue_stuck_after: duration(alerts.work_queue_stuck_after),
            max_repeat_interval: duration(alerts.max_repeat_interval),
            email_to: Some(alerts.email_to.clone()),
            smtp_host: alerts.smtp_host.as_ref().map(|host| host.render(SMTP_PORT)),
            webhook_url: alerts.webhook_url.clone(),
        }),
        back_pressure: Some(RawBackPressure {
            check_interval: duration(bp.check_interval),
            disk_free_medium: size(bp.disk_free_medium),
            disk_free_high: size(bp.disk_free_high),
            disk_free_normal: size(bp.disk_free_normal),
            memory_medium_percent: Some(bp.memory_medium_percent),
            memory_high_percent: Some(bp.memory_high_percent),
            memory_normal_percent: Some(bp.memory_normal_percent),
            submission_queue_medium: Some(bp.submission_queue_medium),
            submission_queue_high: Some(bp.submission_queue_high),
            submission_queue_normal: Some(bp.submission_queue_normal),
        }),
        tracking: Some(RawTracking { max_age: duration(config.tracking.max_age) }),
        debug: Some(RawDebug { fault_injection: Some(config.debug.fault_injection) }),
        cluster: config.cluster.as_ref().map(|c| RawCluster {
            node: text(&c.node),
            redis: text(&c.redis),
            postgres: c.postgres.clone(),
            admin_url: text(&c.admin_url),
            heartbeat_interval: duration(c.heartbeat_interval),
            shadow_takeover_after: duration(c.shadow_takeover_after),
            reject_on_shadow_failure: Some(c.reject_on_shadow_failure),
        }),
    }
}

fn receive_connector(connector: &ReceiveConnector) -> RawReceiveConnector {
    RawReceiveConnector {
        name: text(&connector.name),
        listen: Some(connector.listen.to_string()),
        relay_networks: Some(connector.relay_networks.iter().map(ToString::to_string).collect()),
        max_message_size: size(connector.max_message_size),
        max_header_size: size(connector.max_header_size),
        max_recipients: Some(connector.max_recipients),
        max_command_line: Some(connector.max_command_line),
        max_connections: Some(connector.max_connections),
        max_connections_per_ip: Some(connector.max_connections_per_ip),
        max_errors: Some(connector.max_errors),
        max_hop_count: Some(connector.max_hop_count),
        connection_timeout: duration(connector.connection_timeout),
        connection_inactivity_timeout: duration(connector.connection_inactivity_timeout),
        greet_pause: duration(connector.greet_pause),
        bare_newlines: text(connector.bare_newlines.as_str()),
        tls: Some(match &connector.tls {
            ReceiveTls::Off => RawReceiveTls::Mode("off".to_owned()),
            ReceiveTls::SelfSigned => RawReceiveTls::Mode("self-signed".to_owned()),
            ReceiveTls::Files(files) => RawReceiveTls::Files(tls_files(files)),
        }),
        tls_mode: text(connector.tls_mode.as_str()),
        auth: text(connector.auth.as_str()),
        auth_failures_per_minute: Some(connector.auth_failures_per_minute),
        users: Some(
            connector
                .users
                .iter()
                .map(|user| RawUser { name: user.name.clone(), password_hash: user.password_hash.clone() })
                .collect(),
        ),
    }
}

fn mailbox_store(store: &MailboxStore) -> RawMailboxStore {
    let (maildir, lmtp) = match &store.kind {
        MailboxStoreKind::Maildir(template) => (text(template.as_str()), None),
        MailboxStoreKind::Lmtp(address) => (None, Some(address.render(LMTP_PORT))),
    };
    RawMailboxStore { name: text(&store.name), maildir, lmtp, guid: text(&store.guid) }
}

fn accepted_domain(domain: &AcceptedDomain) -> RawAcceptedDomain {
    RawAcceptedDomain {
        domain: text(&domain.domain),
        mailbox_store: text(&domain.mailbox_store),
        mailboxes: domain.mailboxes.clone(),
        catch_all: Some(domain.catch_all),
        recipient_delimiter: Some(domain.recipient_delimiter.map(String::from).unwrap_or_default()),
        // An empty table would print as a bare `[accepted_domains.aliases]` header: leave it out.
        aliases: (!domain.aliases.is_empty()).then(|| domain.aliases.clone()),
    }
}

fn send_connector(connector: &SendConnector) -> RawSendConnector {
    RawSendConnector {
        name: text(&connector.name),
        address_spaces: Some(connector.address_spaces.iter().map(ToString::to_string).collect()),
        smart_hosts: Some(connector.smart_hosts.iter().map(|host| host.render(SMTP_PORT)).collect()),
        port: Some(connector.port),
        tls: text(connector.tls.as_str()),
        max_messages_per_connection: Some(connector.max_messages_per_connection),
        guid: text(&connector.guid),
        auth: connector
            .auth
            .as_ref()
            .map(|auth| RawSendAuth { user: auth.user.clone(), password: auth.password.clone() }),
    }
}

fn antispam(config: &Config) -> RawAntispam {
    let antispam = &config.antispam;
    let (engine, url, address) = match &antispam.engine {
        AntispamEngine::Builtin => ("builtin", None, None),
        AntispamEngine::Off => ("off", None, None),
        AntispamEngine::Rspamd { url } => ("rspamd", Some(url.clone()), None),
        AntispamEngine::Spamd { address } => ("spamd", None, Some(address.render(SPAMD_PORT))),
    };
    RawAntispam {
        engine: text(engine),
        scl_quarantine: Some(antispam.scl_quarantine),
        scl_delete: Some(match antispam.scl_delete {
            Some(level) => RawSclDelete::Level(i64::from(level)),
            None => RawSclDelete::Text("off".to_owned()),
        }),
        rules_dir: text(&antispam.rules_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()),
        url,
        address,
        timeout: duration(antispam.timeout),
    }
}

fn antivirus(config: &Config) -> RawAntivirus {
    let antivirus = &config.antivirus;
    let (engine, address) = match &antivirus.engine {
        AntivirusEngine::Builtin => ("builtin", None),
        AntivirusEngine::Off => ("off", None),
        AntivirusEngine::Clamd { address: ScannerAddress::Tcp(address) } => ("clamd", Some(address.render(CLAMD_PORT))),
        AntivirusEngine::Clamd { address: ScannerAddress::Unix(socket) } => {
            ("clamd", Some(socket.to_string_lossy().into_owned()))
        }
    };
    RawAntivirus {
        engine: text(engine),
        virus_action: text(antivirus.virus_action.as_str()),
        address,
        database_dir: text(&antivirus.database_dir.as_ref().map(|d| d.display().to_string()).unwrap_or_default()),
        timeout: duration(antivirus.timeout),
    }
}
