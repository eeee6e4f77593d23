//! The built-in defaults are the published ones: every key's default, checked one by one.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{BASE, SPEC_EXAMPLE, config, load};
use crate::validate::system_hostname;
use crate::*;

const MIB: u64 = 1024 * 1024;
const GIB: u64 = 1024 * MIB;

fn secs(seconds: u64) -> Duration {
    Duration::from_secs(seconds)
}

fn addr(text: &str) -> SocketAddr {
    text.parse().expect(text)
}

#[test]
fn defaults_are_the_spec_values() {
    let c = config("");
    let base = Path::new(BASE);
    let data_dir = base.join("sluice-data");

    let hostname = system_hostname();
    assert_eq!(c.server.hostname, hostname);
    assert_eq!(c.server.name, hostname.split('.').next().expect("a label"));
    assert_eq!(c.server.data_dir, data_dir);
    assert_eq!(c.server.user, None);

    assert_eq!(c.log.level, "info");
    assert_eq!(c.log.format, LogFormat::Text);

    assert_eq!(c.admin.listen, addr("127.0.0.1:8025"));
    assert_eq!(c.admin.token, None);
    assert_eq!(c.admin.tls, None);
    assert!(c.admin.allowed_hosts.is_empty());

    assert_eq!(c.receive_connectors.len(), 1);
    let rc = &c.receive_connectors[0];
    assert_eq!(rc.name, "Default");
    assert_eq!(rc.listen, addr("127.0.0.1:2525"));
    assert_eq!(rc.relay_networks, ["127.0.0.0/8".parse::<IpNet>().expect("net"), "::1/128".parse().expect("net")]);
    assert_eq!(rc.max_message_size, 35 * MIB);
    assert_eq!(rc.max_header_size, MIB);
    assert_eq!(rc.max_recipients, 200);
    assert_eq!(rc.max_command_line, 2048);
    assert_eq!(rc.max_connections, 1000);
    assert_eq!(rc.max_connections_per_ip, 50);
    assert_eq!(rc.max_errors, 10);
    assert_eq!(rc.max_hop_count, 50);
    assert_eq!(rc.connection_timeout, secs(600));
    assert_eq!(rc.connection_inactivity_timeout, secs(300));
    assert_eq!(rc.greet_pause, secs(0));
    assert_eq!(rc.bare_newlines, BareNewlines::Reject);
    assert_eq!(rc.tls, ReceiveTls::Off);
    assert_eq!(rc.tls_mode, TlsMode::Starttls);
    assert_eq!(rc.auth, AuthMode::Off);
    assert!(rc.users.is_empty());
    assert_eq!(rc.auth_failures_per_minute, 5);

    assert_eq!(c.mailbox_stores.len(), 1);
    let store = &c.mailbox_stores[0];
    assert_eq!(store.name, "Local Maildir");
    let MailboxStoreKind::Maildir(template) = &store.kind else {
        panic!("the built-in store is a Maildir: {store:?}");
    };
    assert_eq!(template.as_str(), "/etc/sluice/sluice-data/mail/{domain}/{local}");
    assert_eq!(
        template.path_for("example.test", "alice"),
        PathBuf::from("/etc/sluice/sluice-data/mail/example.test/alice")
    );
    assert_eq!(store.guid, "7726f8f8-e8ee-8acd-ae68-aaea42614837");

    assert_eq!(
        c.accepted_domains,
        [AcceptedDomain {
            domain: "localhost".to_owned(),
            mailbox_store: "Local Maildir".to_owned(),
            mailboxes: None,
            catch_all: false,
            aliases: Default::default(),
            recipient_delimiter: Some('+'),
        }]
    );
    assert!(c.send_connectors.is_empty());
    assert!(c.dns.servers.is_empty());

    let db = &c.queue_database;
    assert_eq!(db.path, data_dir.join("queue"));
    assert_eq!(db.log_path, data_dir.join("queue"));
    assert_eq!(db.batch_size, 40);
    assert_eq!(db.batch_timeout, Duration::from_millis(100));
    assert_eq!(db.logging_buffer_size, 5 * MIB);
    assert_eq!(db.logging_file_size, 5 * MIB);
    assert_eq!(db.generation_interval, secs(3600));
    assert_eq!(db.checkpoint_interval, secs(30));
    assert_eq!(db.max_background_cleanup_tasks, 32);
    assert!(db.online_defrag_enabled);
    assert_eq!(db.online_defrag_schedule, TimeOfDay { hour: 1, minute: 0, second: 0 });
    assert_eq!(db.online_defrag_time_to_run, secs(3 * 3600));

    let t = &c.transport;
    assert_eq!(t.queue_glitch_retry_count, 4);
    assert_eq!(t.queue_glitch_retry_interval, secs(60));
    assert_eq!(t.transient_failure_retry_count, 6);
    assert_eq!(t.transient_failure_retry_interval, secs(300));
    assert_eq!(t.outbound_connection_failure_retry_interval, secs(600));
    assert_eq!(t.message_retry_interval, secs(900));
    assert_eq!(t.message_expiration_timeout, secs(2 * 86400));
    assert_eq!(t.delay_notification_timeout, secs(4 * 3600));
    assert_eq!(t.queue_max_idle_time, secs(180));
    assert_eq!(t.max_idle_time_before_resubmit, secs(12 * 3600));
    assert_eq!(t.max_outbound_connections, 1000);
    assert_eq!(t.max_per_domain_outbound_connections, 40);
    assert_eq!(t.poison_threshold, 2);
    assert_eq!(t.safety_net_hold_time, secs(2 * 86400));
    assert_eq!(t.digest_threshold, 10);

    assert_eq!(c.work_queue, WorkQueueConfig { concurrency: 0, on_engine_failure: OnEngineFailure::Wait });
    assert_eq!(
        c.antispam,
        AntispamConfig {
            engine: AntispamEngine::Builtin,
            scl_quarantine: 7,
            scl_delete: None,
            rules_dir: None,
            timeout: secs(30),
        }
    );
    assert_eq!(
        c.antivirus,
        AntivirusConfig {
            engine: AntivirusEngine::Builtin,
            virus_action: VirusAction::Quarantine,
            database_dir: None,
            timeout: secs(30)
        }
    );
    assert_eq!(c.quarantine.retention, secs(30 * 86400));
    assert_eq!(c.updater.source, UpdateSource::Directory(data_dir.join("updates")));
    assert_eq!(c.updater.interval, secs(300));

    assert_eq!(c.alerts.work_queue_pause_alert_after, secs(10));
    assert_eq!(c.alerts.work_queue_stuck_after, secs(15 * 60));
    assert_eq!(c.alerts.max_repeat_interval, secs(3600));
    assert!(c.alerts.email_to.is_empty());
    assert_eq!(c.alerts.smtp_host, None);
    assert_eq!(c.alerts.webhook_url, None);

    let bp = &c.back_pressure;
    assert_eq!(bp.check_interval, secs(2));
    assert_eq!(bp.disk_free_medium, 2 * GIB);
    assert_eq!(bp.disk_free_high, 500 * MIB);
    assert_eq!(bp.disk_free_normal, 3 * GIB);
    assert_eq!((bp.memory_normal_percent, bp.memory_medium_percent, bp.memory_high_percent), (71, 73, 75));
    assert_eq!((bp.submission_queue_normal, bp.submission_queue_medium, bp.submission_queue_high), (2000, 4000, 10000));

    assert_eq!(c.tracking.max_age, secs(30 * 86400));
    assert!(!c.debug.fault_injection);
}

#[test]
fn builtin_resolves_against_the_working_directory() {
    let loaded = Config::builtin().expect("the defaults are valid");
    let cwd = std::env::current_dir().expect("working directory");
    assert_eq!(loaded.config.server.data_dir, cwd.join("sluice-data"));
    assert_eq!(loaded.config.queue_database.path, cwd.join("sluice-data/queue"));
    assert!(loaded.not_yet_in_effect.is_empty());
    assert_eq!(loaded.source, None);
    // An empty file in the working directory means the same as no file.
    assert_eq!(Config::from_toml("", &cwd).map(|l| l.config).ok(), Some(loaded.config));
}

#[test]
fn default_name_is_the_first_label_of_the_hostname() {
    let c = config("[server]\nhostname = \"mx1.example.test\"\n");
    assert_eq!(c.server.hostname, "mx1.example.test");
    assert_eq!(c.server.name, "mx1");
    let c = config("[server]\nhostname = \"gateway\"\nname = \"gw-a\"\n");
    assert_eq!((c.server.hostname.as_str(), c.server.name.as_str()), ("gateway", "gw-a"));
}

#[test]
fn spec_example_is_the_defaults() {
    // The example configuration writes out every default; only the host names differ from this machine's.
    let loaded = load(SPEC_EXAMPLE);
    let mut expected = config("");
    expected.server.hostname = "mx1.example.test".to_owned();
    expected.server.name = "mx1".to_owned();
    assert_eq!(loaded.config, expected);
    assert_eq!(
        loaded.not_yet_in_effect,
        ["queue_database.logging_buffer_size", "queue_database.max_background_cleanup_tasks",]
    );
}

#[test]
fn a_dns_send_connector_is_in_effect() {
    let loaded = load(
        "[dns]\nservers = [\"127.0.0.1:5353\"]\n\n[[send_connectors]]\nname = \"Internet\"\naddress_spaces = [\"*\"]\nport = 2525\n",
    );
    assert!(loaded.not_yet_in_effect.is_empty(), "{:?}", loaded.not_yet_in_effect);
    assert_eq!(loaded.config.send_connectors[0].port, 2525);
    assert!(loaded.config.send_connectors[0].smart_hosts.is_empty());
    assert_eq!(loaded.config.dns.servers, ["127.0.0.1:5353".parse().expect("addr")]);
}
