//! Values and combinations that are refused, each with an error naming its key.

use super::{config, error};
use crate::ConfigError;

/// Asserts that `text` is refused with an `Invalid` error for `key` whose message contains `fragment`.
fn assert_invalid(text: &str, key: &str, fragment: &str) {
    match error(text) {
        ConfigError::Invalid { key: got, message } => {
            assert_eq!(got, key, "key for:\n{text}\nmessage: {message}");
            assert!(message.contains(fragment), "{message:?} should contain {fragment:?}\n{text}");
        }
        other => panic!("expected an invalid-value error for {key}, got {other:?}"),
    }
}

#[test]
fn bad_durations_and_sizes_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        ("[queue_database]\nbatch_timeout = \"100\"\n", "queue_database.batch_timeout", "\"100\""),
        ("[transport]\nmessage_retry_interval = \"15 minutes\"\n", "transport.message_retry_interval", "unit"),
        ("[tracking]\nmax_age = \"1.5d\"\n", "tracking.max_age", "\"1.5d\""),
        ("[[receive_connectors]]\nconnection_timeout = \"0s\"\n", "receive_connectors[0].connection_timeout", "zero"),
        ("[[receive_connectors]]\nmax_message_size = \"35MiB\"\n", "receive_connectors[0].max_message_size", "35MiB"),
        ("[[receive_connectors]]\nmax_message_size = 0\n", "receive_connectors[0].max_message_size", "zero"),
        ("[queue_database]\nlogging_file_size = \"5 megabytes\"\n", "queue_database.logging_file_size", "KB, MB"),
        ("[back_pressure]\ndisk_free_high = \"-1GB\"\n", "back_pressure.disk_free_high", "size"),
        ("[queue_database]\nonline_defrag_schedule = \"1:00\"\n", "queue_database.online_defrag_schedule", "HH:MM:SS"),
    ];
    for (text, key, fragment) in cases {
        assert_invalid(text, key, fragment);
    }
}

#[test]
fn sizes_may_be_plain_byte_counts() {
    let c = config("[[receive_connectors]]\nmax_message_size = 1000000\nmax_header_size = \"64KB\"\n");
    assert_eq!(c.receive_connectors[0].max_message_size, 1_000_000);
    assert_eq!(c.receive_connectors[0].max_header_size, 65536);
}

#[test]
fn out_of_range_numbers_are_refused() {
    let cases: &[(&str, &str, &str)] = &[
        ("[transport]\npoison_threshold = 0\n", "transport.poison_threshold", "1 to 10"),
        ("[transport]\npoison_threshold = 11\n", "transport.poison_threshold", "1 to 10"),
        ("[queue_database]\nbatch_size = 0\n", "queue_database.batch_size", "expected 1"),
        ("[back_pressure]\nmemory_high_percent = 101\n", "back_pressure.memory_high_percent", "1 to 100"),
        ("[back_pressure]\nmemory_normal_percent = 0\n", "back_pressure.memory_normal_percent", "1 to 100"),
        ("[antispam]\nscl_quarantine = 10\n", "antispam.scl_quarantine", "0 to 9"),
        ("[antispam]\nscl_delete = 10\n", "antispam.scl_delete", "10"),
        ("[antispam]\nscl_delete = \"never\"\n", "antispam.scl_delete", "\"off\""),
        ("[[receive_connectors]]\nmax_command_line = 100\n", "receive_connectors[0].max_command_line", "512"),
        ("[[receive_connectors]]\nmax_recipients = 0\n", "receive_connectors[0].max_recipients", "0"),
        ("[[send_connectors]]\nname = \"x\"\naddress_spaces = [\"*\"]\nport = 0\n", "send_connectors[0].port", "port"),
    ];
    for (text, key, fragment) in cases {
        assert_invalid(text, key, fragment);
    }
}

#[test]
fn back_pressure_thresholds_must_be_ordered() {
    let cases: &[(&str, &str)] = &[
        ("disk_free_normal = \"1GB\"", "back_pressure.disk_free_normal"),
        ("disk_free_high = \"2GB\"\ndisk_free_medium = \"1GB\"", "back_pressure.disk_free_medium"),
        ("memory_normal_percent = 74", "back_pressure.memory_normal_percent"),
        ("memory_high_percent = 72", "back_pressure.memory_medium_percent"),
        ("submission_queue_normal = 5000", "back_pressure.submission_queue_normal"),
        ("submission_queue_high = 3000", "back_pressure.submission_queue_medium"),
    ];
    for (keys, key) in cases {
        assert_invalid(&format!("[back_pressure]\n{keys}\n"), key, "must be");
    }
    // A zero disables a disk threshold and is left out of the ordering.
    let c = config("[back_pressure]\ndisk_free_medium = 0\ndisk_free_high = \"1GB\"\n");
    assert_eq!(c.back_pressure.disk_free_medium, 0);
    config("[back_pressure]\ndisk_free_medium = 0\ndisk_free_high = 0\ndisk_free_normal = 0\n");
}

#[test]
fn words_must_be_known() {
    let cases: &[(&str, &str, &str)] = &[
        ("[log]\nformat = \"xml\"\n", "log.format", "\"text\", \"json\""),
        ("[[receive_connectors]]\nbare_newlines = \"strip\"\n", "receive_connectors[0].bare_newlines", "\"normalize\""),
        ("[[receive_connectors]]\ntls = \"on\"\n", "receive_connectors[0].tls", "self-signed"),
        ("[[receive_connectors]]\ntls_mode = \"ssl\"\n", "receive_connectors[0].tls_mode", "\"implicit\""),
        ("[[receive_connectors]]\nauth = \"yes\"\n", "receive_connectors[0].auth", "\"required\""),
        ("[work_queue]\non_engine_failure = \"skip\"\n", "work_queue.on_engine_failure", "\"pass\""),
        ("[antispam]\nengine = \"spamassassin\"\n", "antispam.engine", "\"spamd\""),
        ("[antivirus]\nengine = \"sophos\"\n", "antivirus.engine", "\"clamd\""),
        ("[antivirus]\nvirus_action = \"delete\"\n", "antivirus.virus_action", "\"drop\""),
        (
            "[[send_connectors]]\nname = \"x\"\naddress_spaces = [\"*\"]\ntls = \"always\"\n",
            "send_connectors[0].tls",
            "\"opportunistic\"",
        ),
    ];
    for (text, key, fragment) in cases {
        assert_invalid(text, key, fragment);
    }
}

#[test]
fn addresses_and_names_are_checked() {
    let cases: &[(&str, &str, &str)] = &[
        ("[admin]\nlisten = \"localhost:8025\"\n", "admin.listen", "ip:port"),
        ("[[receive_connectors]]\nlisten = \"127.0.0.1\"\n", "receive_connectors[0].listen", "ip:port"),
        (
            "[[receive_connectors]]\nrelay_networks = [\"10.0.0.0/33\"]\n",
            "receive_connectors[0].relay_networks",
            "10.0.0.0/33",
        ),
        ("[server]\nhostname = \"mx 1\"\n", "server.hostname", "host name"),
        ("[server]\nname = \"mx\\\\1\"\n", "server.name", "'\\'"),
        ("[server]\ndata_dir = \"{data_dir}/x\"\n", "server.data_dir", "placeholder"),
        ("[queue_database]\npath = \"{datadir}/queue\"\n", "queue_database.path", "{datadir}"),
        ("[dns]\nservers = [\"dns.example\"]\n", "dns.servers", "dns.example"),
        ("[updater]\nsource = \"ftp://x/\"\n", "updater.source", "https://"),
        ("[alerts]\nwebhook_url = \"hooks.example\"\n", "alerts.webhook_url", "http"),
        ("[alerts]\nemail_to = [\"root\"]\nsmtp_host = \"127.0.0.1\"\n", "alerts.email_to", "local@domain"),
        ("[alerts]\nemail_to = [\"root@localhost\"]\n", "alerts.email_to", "smtp_host"),
        ("[antispam]\nengine = \"rspamd\"\nurl = \"127.0.0.1:11333\"\n", "antispam.url", "URL"),
        ("[antispam]\nengine = \"rspamd\"\nurl = \"https://127.0.0.1:11333\"\n", "antispam.url", "http://"),
        ("[antispam]\nengine = \"spamd\"\naddress = \"spamd:x\"\n", "antispam.address", "port"),
        ("[[mailbox_stores]]\nmaildir = \"{data_dir}/{user}\"\n", "mailbox_stores[0].maildir", "{user}"),
        ("[[mailbox_stores]]\nmaildir = \"m\"\nlmtp = \"127.0.0.1:24\"\n", "mailbox_stores[0].lmtp", "not both"),
        ("[[mailbox_stores]]\nguid = \"not-a-guid\"\n", "mailbox_stores[0].guid", "GUID"),
        ("[[accepted_domains]]\ndomain = \"exa mple.test\"\n", "accepted_domains[0].domain", "invalid domain"),
        ("[[accepted_domains]]\nmailboxes = [\".alice\"]\n", "accepted_domains[0].mailboxes", ".alice"),
        ("[[accepted_domains]]\naliases = { postmaster = [] }\n", "accepted_domains[0].aliases", "nothing"),
        ("[[accepted_domains]]\naliases = { postmaster = [\"root\"] }\n", "accepted_domains[0].aliases", "postmaster"),
        (
            "[[accepted_domains]]\nrecipient_delimiter = \"ab\"\n",
            "accepted_domains[0].recipient_delimiter",
            "delimiter",
        ),
    ];
    for (text, key, fragment) in cases {
        assert_invalid(text, key, fragment);
    }
}

#[test]
fn an_admin_api_off_loopback_needs_a_token_and_tls() {
    let both = "(missing: [admin] token and [admin] tls)";
    let token = "(missing: [admin] token)";
    let tls = "(missing: [admin] tls)";
    let cases: &[(&str, Option<&str>)] = &[
        ("listen = \"0.0.0.0:8025\"", Some(both)),
        ("listen = \"0.0.0.0:8025\"\ntoken = \"t\"", Some(tls)),
        ("listen = \"0.0.0.0:8025\"\ntoken = \"\"\ntls = { cert = \"c\", key = \"k\" }", Some(token)),
        ("listen = \"192.0.2.1:8025\"\ntls = { cert = \"c\", key = \"k\" }", Some(token)),
        ("listen = \"[::]:8025\"\ntoken = \"t\"", Some(tls)),
        ("listen = \"0.0.0.0:8025\"\ntoken = \"t\"\ntls = { cert = \"c\", key = \"k\" }", None),
        ("listen = \"[::]:8025\"\ntoken = \"t\"\ntls = { cert = \"c\", key = \"k\" }", None),
        ("listen = \"[::ffff:127.0.0.1]:8025\"", None),
        ("listen = \"[::1]:8025\"", None),
        ("listen = \"127.0.0.2:8025\"", None),
        ("listen = \"127.0.0.1:8025\"\ntoken = \"t\"\ntls = { cert = \"c\", key = \"k\" }", None),
    ];
    for (keys, refused) in cases {
        let text = format!("[admin]\n{keys}\n");
        match refused {
            None => {
                config(&text);
            }
            Some(fragment) => assert_invalid(&text, "admin.listen", fragment),
        }
    }
}

#[test]
fn entries_must_be_unique() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[[receive_connectors]]\nname = \"A\"\n[[receive_connectors]]\nname = \"a\"\nlisten = \"127.0.0.1:2526\"\n",
            "receive_connectors[1].name",
            "receive_connectors[0]",
        ),
        (
            "[[receive_connectors]]\nname = \"A\"\n[[receive_connectors]]\nname = \"B\"\n",
            "receive_connectors[1].listen",
            "127.0.0.1:2525",
        ),
        ("[[mailbox_stores]]\n[[mailbox_stores]]\nlmtp = \"127.0.0.1\"\n", "mailbox_stores[1].name", "Local Maildir"),
        (
            "[[accepted_domains]]\ndomain = \"Example.test\"\n[[accepted_domains]]\ndomain = \"example.TEST\"\n",
            "accepted_domains[1].domain",
            "example.test",
        ),
        (
            "[[send_connectors]]\nname = \"A\"\naddress_spaces = [\"*\"]\n[[send_connectors]]\nname = \"A\"\naddress_spaces = [\"x.test\"]\n",
            "send_connectors[1].name",
            "\"A\"",
        ),
        (
            "[[send_connectors]]\nname = \"A\"\naddress_spaces = [\"x.test\"]\n[[send_connectors]]\nname = \"B\"\naddress_spaces = [\"X.test\"]\n",
            "send_connectors[1].address_spaces",
            "send_connectors[0]",
        ),
        (
            "[[send_connectors]]\nname = \"A\"\naddress_spaces = [\"x.test\", \"x.test\"]\n",
            "send_connectors[0].address_spaces",
            "twice",
        ),
        (
            "[[receive_connectors]]\nauth = \"optional\"\nusers = [{ name = \"u\", password_hash = \"$argon2id$h\" }, { name = \"u\", password_hash = \"$argon2id$h\" }]\n",
            "receive_connectors[0].users[1].name",
            "\"u\"",
        ),
        (
            "[[mailbox_stores]]\nguid = \"4520e633-d83d-411a-bbe4-6a84648674ee\"\n[[send_connectors]]\nname = \"A\"\naddress_spaces = [\"*\"]\nguid = \"4520E633-D83D-411A-BBE4-6A84648674EE\"\n",
            "send_connectors[0].guid",
            "mailbox_stores[0]",
        ),
        ("[admin]\nlisten = \"127.0.0.1:2525\"\n", "admin.listen", "\"Default\""),
    ];
    for (text, key, fragment) in cases {
        assert_invalid(text, key, fragment);
    }
}

#[test]
fn send_connectors_need_a_name_and_address_spaces() {
    let cases: &[(&str, &str, &str)] = &[
        ("[[send_connectors]]\naddress_spaces = [\"*\"]\n", "send_connectors[0].name", "name"),
        ("[[send_connectors]]\nname = \"x\"\n", "send_connectors[0].address_spaces", "at least one"),
        (
            "[[send_connectors]]\nname = \"x\"\naddress_spaces = []\n",
            "send_connectors[0].address_spaces",
            "at least one",
        ),
        (
            "[[send_connectors]]\nname = \"x\"\naddress_spaces = [\"*.\"]\n",
            "send_connectors[0].address_spaces",
            "\"*.\"",
        ),
        (
            "[[send_connectors]]\nname = \"x\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"relay:99999\"]\n",
            "send_connectors[0].smart_hosts",
            "relay:99999",
        ),
        ("[[send_connectors]]\nname = \" x\"\naddress_spaces = [\"*\"]\n", "send_connectors[0].name", "spaces"),
    ];
    for (text, key, fragment) in cases {
        assert_invalid(text, key, fragment);
    }
}

#[test]
fn send_connector_credentials_need_smart_hosts_and_tls() {
    let connector =
        "[[send_connectors]]\nname = \"x\"\naddress_spaces = [\"*\"]\nauth = { user = \"u\", password = \"p\" }\n";
    assert_invalid(connector, "send_connectors[0].auth", "smart hosts");
    let smart = format!("{connector}smart_hosts = [\"relay.test\"]\n");
    assert_invalid(&format!("{smart}tls = \"off\"\n"), "send_connectors[0].auth", "only over TLS");
    config(&smart);
    config(&format!("{smart}tls = \"required\"\n"));
}

#[test]
fn receive_connector_tls_and_auth_must_fit_together() {
    assert_invalid("[[receive_connectors]]\ntls_mode = \"implicit\"\n", "receive_connectors[0].tls_mode", "implicit");
    assert_invalid("[[receive_connectors]]\nauth = \"required\"\n", "receive_connectors[0].auth", "users");
    config("[[receive_connectors]]\ntls = \"self-signed\"\ntls_mode = \"implicit\"\nauth = \"optional\"\n");
}

#[test]
fn the_cluster_table_is_checked_and_takes_its_defaults() {
    let c = config("[server]\nname = \"mx7\"\n[cluster]\nredis = \"redis://127.0.0.1:6379/0\"\n");
    let cluster = c.cluster.expect("[cluster] given");
    assert_eq!(cluster.node, "mx7", "the node is named as the server by default");
    assert_eq!(cluster.admin_url, "http://127.0.0.1:8025");
    assert_eq!(cluster.heartbeat_interval, std::time::Duration::from_secs(10));
    assert_eq!(cluster.shadow_takeover_after, std::time::Duration::from_secs(600));
    assert_eq!(cluster.postgres, None);
    assert!(!cluster.reject_on_shadow_failure);
    assert_eq!(config("").cluster, None, "no [cluster], no cluster");

    let cases: &[(&str, &str, &str)] = &[
        ("[cluster]\n", "cluster.redis", "Redis URL"),
        ("[cluster]\nredis = \"127.0.0.1:6379\"\n", "cluster.redis", "Redis URL"),
        ("[cluster]\nredis = \"redis://r\"\nnode = \"mx 1\"\n", "cluster.node", "cannot name a node"),
        ("[cluster]\nredis = \"redis://r\"\npostgres = \"mysql://db\"\n", "cluster.postgres", "PostgreSQL URL"),
        ("[cluster]\nredis = \"redis://r\"\nadmin_url = \"mx1:8025\"\n", "cluster.admin_url", "http://"),
        ("[cluster]\nredis = \"redis://r\"\nheartbeat_interval = \"0s\"\n", "cluster.heartbeat_interval", "zero"),
        (
            "[cluster]\nredis = \"redis://r\"\nheartbeat_interval = \"10s\"\nshadow_takeover_after = \"20s\"\n",
            "cluster.shadow_takeover_after",
            "three heartbeat intervals",
        ),
    ];
    for (text, key, fragment) in cases {
        assert_invalid(text, key, fragment);
    }
}
