//! Rendering the effective configuration, and what a reload keeps.

use std::path::Path;

use super::{EVERY_KEY, SPEC_EXAMPLE, config};
use crate::{Config, RESTART_KEYS};

#[test]
fn rendered_configuration_loads_back_equal() {
    let every_key = EVERY_KEY.replace("data_dir = \"data\"", "data_dir = \"/srv/sluice\"");
    let extra = "[[send_connectors]]\nname = \"x\"\naddress_spaces = [\"x.test\"]\nsmart_hosts = [\"[::1]:2526\", \"::1\", \"Relay.Test\"]\n\
                 [antispam]\nengine = \"spamd\"\naddress = \"spamd.test:7830\"\n\
                 [antivirus]\nengine = \"clamd\"\naddress = \"127.0.0.1\"\n\
                 [alerts]\nemail_to = [\"Root@LocalHost\"]\nsmtp_host = \"[192.0.2.1]\"\n\
                 [[receive_connectors]]\nmax_message_size = 1000\nmax_header_size = \"1536B\"\n";
    for text in ["", SPEC_EXAMPLE, every_key.as_str(), extra] {
        let original = config(text);
        let rendered = original.to_toml_string();
        // Every path in the output is absolute, so the base directory of the second load does not matter.
        let reloaded = match Config::from_toml(&rendered, Path::new("/elsewhere")) {
            Ok(loaded) => loaded.config,
            Err(error) => panic!("rendered configuration refused: {error}\n{rendered}"),
        };
        assert_eq!(reloaded, original, "{rendered}");
        assert_eq!(reloaded.to_toml_string(), rendered);
    }
}

#[test]
fn rendering_keeps_human_units() {
    let rendered = config("").to_toml_string();
    for line in [
        "max_message_size = \"35MB\"",
        "max_header_size = \"1MB\"",
        "batch_timeout = \"100ms\"",
        "message_expiration_timeout = \"2d\"",
        "disk_free_high = \"500MB\"",
        "online_defrag_schedule = \"01:00:00\"",
        "scl_delete = \"off\"",
        "relay_networks = [\"127.0.0.0/8\", \"::1/128\"]",
        "maildir = \"/etc/sluice/sluice-data/mail/{domain}/{local}\"",
        "guid = \"7726f8f8-e8ee-8acd-ae68-aaea42614837\"",
        "[[receive_connectors]]",
        "[transport]",
    ] {
        assert!(rendered.lines().any(|l| l.trim() == line), "{line:?} missing from:\n{rendered}");
    }
}

#[test]
fn restart_required_changes_lists_restart_keys() {
    let base = "[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n\
                [[receive_connectors]]\nname = \"B\"\nlisten = \"127.0.0.1:2526\"\n";
    let old = config(base);
    let cases: &[(&str, &[&str])] = &[
        ("", &[]),
        ("[transport]\npoison_threshold = 5\n", &[]),
        (
            "[server]\ndata_dir = \"/srv/data\"\n",
            &["server.data_dir", "queue_database.path", "queue_database.log_path", "updater.source"],
        ),
        ("[queue_database]\nlog_path = \"/fast/log\"\n", &["queue_database.log_path"]),
        ("[admin]\nlisten = \"127.0.0.1:9025\"\n", &["admin.listen"]),
        ("[debug]\nfault_injection = true\n", &["debug.fault_injection"]),
        (
            "[queue_database]\nbatch_size = 7\ncheckpoint_interval = \"1m\"\n",
            &["queue_database.batch_size", "queue_database.checkpoint_interval"],
        ),
        ("[admin]\ntoken = \"t\"\n", &["admin.token"]),
    ];
    for (extra, expected) in cases {
        let new = config(&format!("{extra}{base}"));
        assert_eq!(old.restart_required_changes(&new), *expected, "{extra}");
    }

    let listen_cases: &[(&str, bool)] = &[
        // Same addresses, new settings or order: no restart.
        (
            "[[receive_connectors]]\nname = \"B\"\nlisten = \"127.0.0.1:2526\"\nmax_errors = 3\n\
          [[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n",
            false,
        ),
        ("[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n", true),
        (
            "[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n\
          [[receive_connectors]]\nname = \"B\"\nlisten = \"127.0.0.1:2527\"\n",
            true,
        ),
    ];
    for (connectors, restart) in listen_cases {
        let new = config(connectors);
        let expected: &[&str] = if *restart { &["receive_connectors.listen"] } else { &[] };
        assert_eq!(old.restart_required_changes(&new), expected, "{connectors}");
    }
}

/// Every `[queue_database]` key set to a value other than its default.
const QUEUE_DATABASE: &str = "[queue_database]\npath = \"/q\"\nlog_path = \"/l\"\nbatch_size = 64\n\
    batch_timeout = \"50ms\"\nlogging_buffer_size = \"8MB\"\nlogging_file_size = \"16MB\"\n\
    generation_interval = \"30m\"\ncheckpoint_interval = \"1m\"\nmax_background_cleanup_tasks = 8\n\
    online_defrag_enabled = false\nonline_defrag_schedule = \"03:30:00\"\nonline_defrag_time_to_run = \"90m\"\n";

#[test]
fn every_restart_key_can_be_reported() {
    let old = config(
        "[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n[cluster]\nnode = \"a\"\nredis = \"redis://a\"\n",
    );
    let new = config(&format!(
        "[server]\ndata_dir = \"/a\"\nname = \"other\"\nhostname = \"other.example\"\n\
         [log]\nlevel = \"debug\"\nformat = \"json\"\n[dns]\nservers = [\"127.0.0.1:5353\"]\n\
         [transport]\nsafety_net_hold_time = \"1h\"\n[alerts]\nmax_repeat_interval = \"5m\"\n\
         work_queue_pause_alert_after = \"1s\"\nwork_queue_stuck_after = \"1m\"\nemail_to = [\"a@b.test\"]\n\
         smtp_host = \"127.0.0.1:2\"\nwebhook_url = \"http://127.0.0.1:3/\"\n\
         [admin]\nlisten = \"127.0.0.1:1\"\ntoken = \"t\"\ntls = {{ cert = \"c\", key = \"k\" }}\nallowed_hosts = [\"h:1\"]\n\
         [debug]\nfault_injection = true\n{QUEUE_DATABASE}\
         [work_queue]\nconcurrency = 3\non_engine_failure = \"pass\"\n\
         [antispam]\nengine = \"off\"\nscl_quarantine = 8\nscl_delete = 9\nrules_dir = \"/r\"\ntimeout = \"5s\"\n\
         [antivirus]\nengine = \"off\"\nvirus_action = \"drop\"\ndatabase_dir = \"/c\"\ntimeout = \"5s\"\n[quarantine]\nretention = \"1d\"\n\
         [updater]\nsource = \"/u\"\ninterval = \"1h\"\n\
         [[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\ntls = \"self-signed\"\n\
         tls_mode = \"implicit\"\nmax_connections = 5\n\
         [[receive_connectors]]\nname = \"B\"\nlisten = \"127.0.0.1:2\"\n\
         [cluster]\nnode = \"b\"\nredis = \"redis://b\"\npostgres = \"postgres://p\"\nadmin_url = \"http://x:1\"\n\
         heartbeat_interval = \"2s\"\nshadow_takeover_after = \"1m\"\nreject_on_shadow_failure = true\n"
    ));
    assert_eq!(old.restart_required_changes(&new), RESTART_KEYS);
    // Each is kept by a reload (the new connector waits for the restart).
    let applied = new.with_restart_keys_from(&old);
    assert!(old.restart_required_changes(&applied).is_empty());
}

#[test]
fn a_connectors_tls_and_connection_limit_need_a_restart_and_keep_their_running_values() {
    let old = config(
        "[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\ntls = \"self-signed\"\nmax_connections = 3\n",
    );
    let cases: &[(&str, &[&str])] = &[
        ("tls = \"self-signed\"\nmax_connections = 3\nmax_errors = 2\n", &[]),
        ("tls = { cert = \"c\", key = \"k\" }\nmax_connections = 3\n", &["receive_connectors.tls"]),
        ("tls = \"off\"\nmax_connections = 3\n", &["receive_connectors.tls"]),
        ("tls = \"self-signed\"\ntls_mode = \"implicit\"\nmax_connections = 3\n", &["receive_connectors.tls_mode"]),
        (
            "tls = { cert = \"c\", key = \"k\" }\nmax_connections = 9\nmax_errors = 2\n",
            &["receive_connectors.tls", "receive_connectors.max_connections"],
        ),
    ];
    for (keys, expected) in cases {
        let new = config(&format!("[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n{keys}"));
        assert_eq!(old.restart_required_changes(&new), *expected, "{keys}");
        let applied = new.clone().with_restart_keys_from(&old);
        let (was, is) = (&old.receive_connectors[0], &applied.receive_connectors[0]);
        assert_eq!((&is.tls, is.tls_mode, is.max_connections), (&was.tls, was.tls_mode, was.max_connections));
        // The rest of the connector's settings apply.
        assert_eq!(is.max_errors, new.receive_connectors[0].max_errors, "{keys}");
    }
}

#[test]
fn a_reload_keeps_the_whole_queue_database_section() {
    let old = config("");
    let new = config(QUEUE_DATABASE);
    let applied = new.with_restart_keys_from(&old);
    assert_eq!(applied.queue_database, old.queue_database);
}

#[test]
fn reload_keeps_restart_values_and_applies_the_rest() {
    let old = config(
        "[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n\
         [[receive_connectors]]\nname = \"B\"\nlisten = \"127.0.0.1:2526\"\n",
    );
    let new = config(
        "[server]\ndata_dir = \"/srv/new\"\n\
         [admin]\nlisten = \"127.0.0.1:9025\"\n\
         [transport]\npoison_threshold = 5\n\
         [[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\nmax_errors = 3\n\
         [[receive_connectors]]\nname = \"C\"\nlisten = \"127.0.0.1:2527\"\n",
    );
    let applied = new.with_restart_keys_from(&old);
    assert!(old.restart_required_changes(&applied).is_empty());
    assert_eq!(applied.server.data_dir, old.server.data_dir);
    assert_eq!(applied.queue_database.path, old.queue_database.path);
    assert_eq!(applied.admin.listen, old.admin.listen);
    assert_eq!(applied.transport.poison_threshold, 5);
    // A keeps its address and takes its new settings; B keeps its old listener and settings; C waits.
    let connectors: Vec<(&str, u32)> =
        applied.receive_connectors.iter().map(|c| (c.name.as_str(), c.max_errors)).collect();
    assert_eq!(connectors, [("A", 3), ("B", 10)]);
}

#[test]
fn reload_falls_back_to_old_connectors_when_names_would_clash() {
    let old = config(
        "[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n\
         [[receive_connectors]]\nname = \"B\"\nlisten = \"127.0.0.1:2526\"\n",
    );
    // A moves to B's address and B goes away: keeping the old listener at 2525 would give two "A"s.
    let new = config("[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2526\"\nmax_errors = 1\n");
    let applied = new.with_restart_keys_from(&old);
    assert_eq!(applied.receive_connectors, old.receive_connectors);
}

#[test]
fn reload_keeps_the_running_admin_api() {
    let old = config("[admin]\nlisten = \"0.0.0.0:8025\"\ntoken = \"t\"\ntls = { cert = \"c\", key = \"k\" }\n");
    // Never exposed without protection, nor left with a token or certificate it does not use.
    for text in [
        "[admin]\nlisten = \"127.0.0.1:8025\"\n",
        "[admin]\nlisten = \"127.0.0.1:8025\"\ntoken = \"new\"\ntls = { cert = \"c2\", key = \"k\" }\n",
        "[admin]\nlisten = \"0.0.0.0:8025\"\ntoken = \"new\"\ntls = { cert = \"c\", key = \"k\" }\nallowed_hosts = [\"mx\"]\n",
    ] {
        let new = config(text);
        assert!(!old.restart_required_changes(&new).is_empty(), "{text}");
        assert_eq!(new.with_restart_keys_from(&old).admin, old.admin, "{text}");
    }
}

#[test]
fn a_file_names_the_restart_only_keys_it_sets() {
    let loaded = super::load(
        "[server]\nname = \"mx\"\ndata_dir = \"/d\"\n[queue_database]\nbatch_size = 3\n\
         [[receive_connectors]]\nname = \"A\"\nmax_connections = 4\ntls = \"self-signed\"\nmax_errors = 2\n",
    );
    assert_eq!(
        loaded.restart_only,
        [
            "server.data_dir",
            "server.name",
            "receive_connectors.tls",
            "receive_connectors.max_connections",
            "queue_database.batch_size"
        ]
    );
}
