//! Reading files: schema errors with lines, array tables, paths, the every-key fixture, discovery.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{EVERY_KEY, TempDir, config, error, load};
use crate::effect::present_keys;
use crate::guid::{GuidKind, derive_guid};
use crate::{
    AddressSpace, AntispamEngine, AntivirusEngine, AuthMode, Config, ConfigError, HostPort, MailboxStoreKind,
    NOT_YET_IN_EFFECT, ReceiveTls, ScannerAddress, SendAuth, TlsFiles, TlsMode, UpdateSource, discover_in,
    is_not_yet_in_effect,
};

#[test]
fn unknown_keys_are_errors_naming_key_and_line() {
    // (text, line, the unknown key, the dotted key the error is filed under)
    let cases: &[(&str, usize, &str, Option<&str>)] = &[
        ("[server]\nname = \"mx\"\nbogus = 1\n", 3, "bogus", Some("server.bogus")),
        ("[servre]\nname = \"mx\"\n", 1, "servre", None),
        ("top_level = true\n", 1, "top_level", Some("top_level")),
        (
            "[[receive_connectors]]\n[[receive_connectors]]\nlisten = \"127.0.0.1:25\"\n\n  max_mesage_size = \"1MB\"\n",
            5,
            "max_mesage_size",
            Some("receive_connectors[1].max_mesage_size"),
        ),
        (
            "[[receive_connectors]]\ntls = { cert = \"a\", key = \"b\", chain = \"c\" }\n",
            2,
            "chain",
            Some("receive_connectors[0].tls"),
        ),
        (
            "[[receive_connectors]]\nusers = [{ name = \"a\", password = \"b\" }]\n",
            2,
            "password",
            Some("receive_connectors[0].users"),
        ),
        ("[admin]\ntls = { cert = \"a\", kee = \"b\" }\n", 2, "kee", Some("admin.tls")),
        (
            "[[send_connectors]]\nname = \"x\"\nauth = { user = \"u\", pass = \"p\" }\n",
            3,
            "pass",
            Some("send_connectors[0].auth"),
        ),
        ("[queue_database]\nbatch_size = 40\n[transport]\npoison = 2\n", 4, "poison", Some("transport.poison")),
    ];
    for (text, line, unknown, key) in cases {
        match error(text) {
            ConfigError::Parse { line: got, message, path: None, key: got_key, .. } => {
                assert_eq!(got, *line, "line of {unknown} in:\n{text}\n{message}");
                assert!(message.contains(unknown), "{message:?} should name {unknown}");
                assert_eq!(got_key.as_deref(), *key, "{text}");
            }
            other => panic!("expected a parse error for {unknown}, got {other:?}"),
        }
    }
}

#[test]
fn parse_errors_display_file_line_and_key() {
    let dir = TempDir::new("parse-display");
    let path = dir.write("sluice.toml", "# comment\n[log]\nlevel = \"info\"\nformatt = \"json\"\n");
    let error = Config::from_file(&path).expect_err("unknown key");
    let shown = error.to_string();
    assert!(shown.starts_with(&format!("{}: line 4, column 1: ", path.display())), "{shown}");
    assert!(shown.contains("log.formatt: unknown field `formatt`"), "{shown}");
}

#[test]
fn wrong_types_and_syntax_errors_have_lines() {
    let cases: &[(&str, usize, Option<&str>)] = &[
        ("[queue_database]\nbatch_size = \"40\"\n", 2, Some("queue_database.batch_size")),
        ("[transport]\n\npoison_threshold = -1\n", 3, Some("transport.poison_threshold")),
        ("[debug]\nfault_injection = \"yes\"\n", 2, Some("debug.fault_injection")),
        ("[server\nname = \"x\"\n", 1, None),
        ("[server]\nname = \n", 2, Some("server.name")),
        ("[[receive_connectors]]\nmax_message_size = true\n", 2, Some("receive_connectors[0].max_message_size")),
    ];
    for (text, line, key) in cases {
        match error(text) {
            ConfigError::Parse { line: got, key: got_key, .. } => {
                assert_eq!(got, *line, "{text}");
                assert_eq!(got_key.as_deref(), *key, "{text}");
            }
            other => panic!("expected a parse error, got {other:?} for:\n{text}"),
        }
    }
}

#[test]
fn an_array_table_replaces_the_builtin_entries() {
    let c = config(
        r#"
        [[receive_connectors]]
        name = "Inbound"
        listen = "0.0.0.0:25"
        relay_networks = []
        "#,
    );
    assert_eq!(c.receive_connectors.len(), 1);
    let inbound = &c.receive_connectors[0];
    assert_eq!(inbound.name, "Inbound");
    assert_eq!(inbound.listen, "0.0.0.0:25".parse().expect("addr"));
    assert!(inbound.relay_networks.is_empty());
    // Keys the entry leaves out take their defaults...
    assert_eq!(inbound.max_message_size, 35 * 1024 * 1024);
    assert_eq!(inbound.connection_inactivity_timeout, Duration::from_secs(300));
    // ...and arrays the file leaves out keep their built-in entries.
    assert_eq!(c.mailbox_stores.len(), 1);
    assert_eq!(c.accepted_domains[0].domain, "localhost");

    let c = config("[[receive_connectors]]\n[[receive_connectors]]\nname = \"Second\"\nlisten = \"127.0.0.1:2526\"\n");
    assert_eq!(c.receive_connectors.len(), 2);
    assert_eq!(c.receive_connectors[0].name, "Default");
    assert_eq!(c.receive_connectors[0].relay_networks.len(), 2);

    let c = config("receive_connectors = []\naccepted_domains = []\n");
    assert!(c.receive_connectors.is_empty());
    assert!(c.accepted_domains.is_empty());
    assert_eq!(c.mailbox_stores.len(), 1);
}

#[test]
fn replacing_the_stores_but_not_the_domains_is_a_clear_error() {
    let error = error("[[mailbox_stores]]\nname = \"Dovecot\"\nlmtp = \"127.0.0.1:24\"\n");
    let shown = error.to_string();
    assert!(shown.starts_with("accepted_domains[0].mailbox_store: "), "{shown}");
    assert!(shown.contains("\"Local Maildir\"") && shown.contains("\"Dovecot\""), "{shown}");
}

#[test]
fn relative_paths_are_relative_to_the_file() {
    let dir = TempDir::new("relative-paths");
    let path = dir.write(
        "sluice.toml",
        r#"
        [server]
        data_dir = "data"
        [queue_database]
        log_path = "./logs/../queue-log"
        [updater]
        source = "updates"
        [[mailbox_stores]]
        name = "Local Maildir"
        maildir = "mail/{domain}/{local}/"
        "#,
    );
    let loaded = Config::from_file(&path).expect("valid");
    let c = &loaded.config;
    assert_eq!(loaded.source.as_deref(), Some(path.as_path()));
    assert_eq!(c.server.data_dir, dir.0.join("data"));
    assert_eq!(c.queue_database.path, dir.0.join("data/queue"));
    assert_eq!(c.queue_database.log_path, dir.0.join("logs/../queue-log"));
    assert_eq!(c.updater.source, UpdateSource::Directory(dir.0.join("updates")));
    let MailboxStoreKind::Maildir(template) = &c.mailbox_stores[0].kind else {
        panic!("a Maildir store");
    };
    assert_eq!(Path::new(template.as_str()), dir.0.join("mail/{domain}/{local}"));
}

#[test]
fn a_relative_base_directory_is_relative_to_the_working_directory() {
    let cwd = std::env::current_dir().expect("working directory");
    let c = Config::from_toml("", Path::new("conf")).expect("valid").config;
    assert_eq!(c.server.data_dir, cwd.join("conf/sluice-data"));
}

#[test]
fn data_dir_expands_in_paths() {
    let c = config(
        r#"
        [server]
        data_dir = "/var/lib/sluice"
        [queue_database]
        path = "{data_dir}/q"
        log_path = "/fast/{data_dir}/log"
        [[receive_connectors]]
        tls = { cert = "{data_dir}/tls/cert.pem", key = "key.pem" }
        "#,
    );
    assert_eq!(c.queue_database.path, PathBuf::from("/var/lib/sluice/q"));
    assert_eq!(c.queue_database.log_path, PathBuf::from("/fast/var/lib/sluice/log"));
    assert_eq!(
        c.receive_connectors[0].tls,
        ReceiveTls::Files(TlsFiles {
            cert: PathBuf::from("/var/lib/sluice/tls/cert.pem"),
            key: PathBuf::from("/etc/sluice/key.pem"),
        })
    );
    let MailboxStoreKind::Maildir(template) = &c.mailbox_stores[0].kind else {
        panic!("a Maildir store");
    };
    assert_eq!(template.as_str(), "/var/lib/sluice/mail/{domain}/{local}");
}

#[test]
fn every_key_fixture_loads() {
    let dir = TempDir::new("every-key");
    let path = dir.write("sluice.toml", EVERY_KEY);
    let loaded = Config::from_file(&path).expect("valid");
    let c = &loaded.config;
    let data = dir.0.join("data");

    assert_eq!(c.server.hostname, "mx2.example.test");
    assert_eq!(c.server.user.as_deref(), Some("sluice"));
    assert_eq!(c.admin.token.as_deref(), Some("s3cret"));
    assert_eq!(c.admin.tls, Some(TlsFiles { cert: data.join("admin.pem"), key: PathBuf::from("/etc/ssl/admin.key") }));

    let submission = &c.receive_connectors[1];
    assert_eq!(submission.listen, "[::]:465".parse().expect("addr"));
    assert_eq!(submission.tls_mode, TlsMode::Implicit);
    assert_eq!(submission.auth, AuthMode::Required);
    assert_eq!(submission.users.len(), 2);
    assert_eq!(
        submission.tls,
        ReceiveTls::Files(TlsFiles { cert: dir.0.join("certs/mx2.pem"), key: dir.0.join("certs/mx2.key") })
    );

    let dovecot = &c.mailbox_stores[1];
    assert_eq!(
        dovecot.kind,
        MailboxStoreKind::Lmtp(HostPort { host: "127.0.0.1".to_owned(), port: 24, literal: false })
    );
    assert_eq!(dovecot.guid, "6dcb5a1e-0a88-4fc9-b8f9-634c34b1a123");

    let example = &c.accepted_domains[0];
    assert_eq!(example.domain, "example.test");
    assert_eq!(example.mailboxes.as_deref(), Some(&["alice".to_owned(), "bob".to_owned()][..]));
    assert_eq!(example.aliases["abuse"], ["alice@example.test", "bob@example.test"]);
    assert_eq!(example.recipient_delimiter, Some('-'));
    assert_eq!(c.accepted_domains[1].recipient_delimiter, None);
    assert_eq!(c.accepted_domain("EXAMPLE.test").map(|d| d.mailbox_store.as_str()), Some("Dovecot"));

    let internet = &c.send_connectors[0];
    assert_eq!(internet.address_spaces, [AddressSpace::Any]);
    assert!(internet.smart_hosts.is_empty());
    assert_eq!(internet.guid, "4520e633-d83d-411a-bbe4-6a84648674ee");
    let partner = &c.send_connectors[1];
    assert_eq!(
        partner.smart_hosts.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["relay.partner.test:2526", "[10.0.0.1]:25", "[10.0.0.2]:587"]
    );
    assert_eq!(partner.auth, Some(SendAuth { user: "relay".to_owned(), password: "hunter2".to_owned() }));
    assert_eq!(partner.max_messages_per_connection, 100);
    assert_eq!(partner.guid, derive_guid(GuidKind::SendConnector, "Partner"));

    assert_eq!(c.dns.servers, ["127.0.0.1:5353".parse().expect("addr"), "[::1]:53".parse().expect("addr")]);
    assert_eq!(c.queue_database.log_path, data.join("log"));
    assert_eq!(c.antispam.engine, AntispamEngine::Rspamd { url: "http://127.0.0.1:11333".to_owned() });
    assert_eq!(c.antispam.scl_delete, Some(9));
    assert_eq!(
        c.antivirus.engine,
        AntivirusEngine::Clamd { address: ScannerAddress::Unix(PathBuf::from("/run/clamav/clamd.ctl")) }
    );
    assert_eq!(c.updater.source, UpdateSource::Url("https://updates.example.test/sluice".to_owned()));
    assert_eq!(c.alerts.work_queue_pause_alert_after, Duration::ZERO);
    assert!(c.debug.fault_injection);
}

#[test]
fn not_yet_in_effect_names_keys_of_the_schema() {
    // Each entry of the list must match a key the schema has, or it would never be reported.
    let keys = present_keys(&toml::from_str(EVERY_KEY).expect("valid TOML"));
    for entry in NOT_YET_IN_EFFECT {
        let table = entry.strip_suffix('*');
        let found = keys.iter().any(|key| match table {
            Some(prefix) => key.starts_with(prefix),
            None => key == entry,
        });
        assert!(found, "{entry} is not a key of every-key.toml");
    }
    let loaded = load(EVERY_KEY);
    let expected: Vec<&String> = keys.iter().filter(|key| is_not_yet_in_effect(key)).collect();
    assert_eq!(loaded.not_yet_in_effect.iter().collect::<Vec<_>>(), expected);
    assert!(!loaded.not_yet_in_effect.contains(&"tracking.max_age".to_owned()));
    assert!(!loaded.not_yet_in_effect.contains(&"transport.digest_threshold".to_owned()));
    assert!(!loaded.not_yet_in_effect.contains(&"transport.poison_threshold".to_owned()));
    assert!(!loaded.not_yet_in_effect.contains(&"debug.fault_injection".to_owned()));
    assert!(!loaded.not_yet_in_effect.contains(&"send_connectors.auth".to_owned()));
    assert!(!loaded.not_yet_in_effect.contains(&"receive_connectors.listen".to_owned()));
}

#[test]
fn discovery_order() {
    let dir = TempDir::new("discover");
    let explicit = dir.write("explicit.toml", "[server]\nname = \"explicit\"\n");
    let from_env = dir.write("env.toml", "[server]\nname = \"env\"\n");
    let system = dir.write("system.toml", "[server]\nname = \"system\"\n");
    let absent = dir.0.join("absent.toml");
    let name = |result: Result<crate::Loaded, ConfigError>| result.expect("loads").config.server.name;
    let env = || Some(OsString::from(&from_env));

    assert_eq!(name(discover_in(Some(&explicit), env(), &system)), "explicit");
    assert_eq!(name(discover_in(None, env(), &system)), "env");
    assert_eq!(name(discover_in(None, Some(OsString::new()), &system)), "system");
    assert_eq!(name(discover_in(None, None, &system)), "system");
    let builtin = discover_in(None, None, &absent).expect("built-in defaults");
    assert_eq!(builtin.source, None);
    assert_eq!(builtin, Config::builtin().expect("defaults"));

    for result in [discover_in(Some(&absent), env(), &system), discover_in(None, Some(absent.clone().into()), &system)]
    {
        match result {
            Err(error @ ConfigError::Io { .. }) => assert!(error.to_string().contains("absent.toml"), "{error}"),
            other => panic!("a named file that is missing is an error, got {other:?}"),
        }
    }
}
