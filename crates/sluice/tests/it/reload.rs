//! A reload of settings that take effect only at a restart: reported by key, and the running value kept.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

const CONNECTOR: &str = "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\n";

#[test]
fn a_reload_reports_a_connectors_tls_and_connection_limit_and_keeps_the_running_ones() {
    let mut s = Server::start(&format!("{CONNECTOR}max_connections = 1\nmax_errors = 10\n"));
    s.extra = format!("{CONNECTOR}max_connections = 5\nmax_errors = 3\ntls = \"self-signed\"\n");
    s.write_config();
    let (status, body) = http(s.admin, "POST", "/api/v1/config/reload", &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    let result: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        result["restart_required"],
        serde_json::json!(["receive_connectors.tls", "receive_connectors.max_connections"]),
        "{body}"
    );

    // The old limit holds: a second client is turned away while the first is connected.
    let mut first = Smtp::connect_when_served(([127, 0, 0, 1], s.smtp).into());
    // The old TLS setting holds too: no STARTTLS without a restart.
    let ehlo = first.cmd("EHLO client.test");
    assert!(ehlo.starts_with("250") && !ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(greeting(s.smtp).starts_with("421 4.7.0"), "a second connection was served");
    // The rest of the connector's new settings are in effect: the third error ends the session.
    for _ in 0..3 {
        assert!(first.cmd("BOGUS").starts_with("500 5.5.1"));
    }
    assert!(first.read().starts_with("421 4.7.0"));

    // A restart puts the new ones into effect.
    drop(first);
    s.kill9();
    s.spawn();
    let mut c = s.smtp();
    assert!(c.cmd("EHLO client.test").contains("STARTTLS"));
    assert!(greeting(s.smtp).starts_with("220"));
}

/// The first line a new connection to `port` gets.
fn greeting(port: u16) -> String {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut line = String::new();
    let _ = BufReader::new(tcp).read_line(&mut line);
    line
}

#[test]
fn check_config_names_the_restart_only_keys_a_file_sets() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(
        &path,
        "[log]\nlevel = \"debug\"\n[queue_database]\ncheckpoint_interval = \"1m\"\n\
         [[receive_connectors]]\nname = \"A\"\nmax_connections = 4\nmax_errors = 2\n",
    )
    .unwrap();
    let out = Command::new(BIN).args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("takes effect only at a restart")).collect();
    assert_eq!(notes.len(), 3, "{err}");
    assert!(notes[0].contains("log.level"), "{err}");
    assert!(notes[1].contains("receive_connectors.max_connections"), "{err}");
    assert!(notes[2].contains("queue_database.checkpoint_interval"), "{err}");
}

#[test]
fn check_config_against_the_running_file_names_exactly_the_restart_keys_that_differ() {
    let dir = tempfile::tempdir().unwrap();
    let running = dir.path().join("running.toml");
    let edited = dir.path().join("edited.toml");
    let connector = "[[receive_connectors]]\nname = \"A\"\nlisten = \"127.0.0.1:2525\"\n";
    std::fs::write(&running, format!("[queue_database]\nbatch_size = 40\n{connector}max_connections = 4\n")).unwrap();
    std::fs::write(
        &edited,
        format!(
            "[queue_database]\nbatch_size = 40\n{connector}max_connections = 9\ntls = \"self-signed\"\nmax_errors = 3\n"
        ),
    )
    .unwrap();
    let check =
        || Command::new(BIN).args(["check-config", "--config"]).arg(&edited).arg("--against").arg(&running).output();
    let out = check().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    let notes: Vec<&str> = err.lines().filter(|l| l.contains("takes effect only at a restart")).collect();
    // batch_size is set in both files, unchanged: not named.
    assert_eq!(notes.len(), 2, "{err}");
    assert!(notes[0].contains("receive_connectors.tls differs from") && notes[0].contains("running.toml"), "{err}");
    assert!(notes[1].contains("receive_connectors.max_connections differs"), "{err}");

    // A running file that does not load is a configuration error (exit 2) naming it.
    std::fs::write(&running, "[transport]\nbogus = 1\n").unwrap();
    let out = check().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
}
