//! `sluice check-config`, bad configurations, and a graceful stop.

use std::process::Command;
use std::time::Duration;

use crate::harness::*;

#[test]
fn check_config_prints_the_effective_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "[transport]\ntransient_failure_retry_interval = \"30s\"\n").unwrap();
    let out = Command::new(BIN).args(["check-config", "--config"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("transient_failure_retry_interval = \"30s\""), "{text}");
    assert!(text.contains("batch_size = 40"), "{text}");
}

#[test]
fn unknown_keys_are_errors_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.toml");
    std::fs::write(&path, "[server]\nname = \"mx\"\n\n[transport]\nretry_bogus = 3\n").unwrap();
    for verb in ["check-config", "serve"] {
        let out = Command::new(BIN).args([verb, "--config"]).arg(&path).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("retry_bogus") && err.contains("line 5"), "{verb}: {err}");
    }
}

#[test]
fn sigterm_stops_cleanly_and_queued_mail_survives() {
    let port = free_port();
    let mut s = Server::start(&format!(
        "[transport]\ntransient_failure_retry_interval = \"1s\"\n[[send_connectors]]\nname = \"Down\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n"
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.mail("a@example.test", &["b@remote.test"], "Subject: keep\r\n\r\nx\r\n").starts_with("250"));
    drop(c);
    let status = s.signal_and_wait("TERM");
    assert!(status.success(), "{status}: {}", s.log());
    assert!(s.log().contains("stopped cleanly"));
    let sink = Sink::start_on(port);
    s.spawn();
    assert!(wait_until(Duration::from_secs(15), || sink.count() == 1), "{}", s.log());
}

#[test]
fn db_check_verifies_every_file_and_names_damage() {
    let port = free_port();
    let mut s = Server::start(&format!(
        "[[send_connectors]]\nname = \"Down\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n"
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let body = format!("Subject: keep\r\n\r\n{}\r\n", "z".repeat(2000));
    assert!(c.mail("a@example.test", &["b@remote.test"], &body).starts_with("250"));
    drop(c);
    assert!(s.signal_and_wait("TERM").success());
    let check = |s: &Server| Command::new(BIN).args(["db", "check", "--config"]).arg(s.config_path()).output().unwrap();
    let out = check(&s);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 bodies") && text.contains("0 damaged"), "{text}");
    // Flip a byte in the middle of the body: the check names the file and the offset.
    let queue = s.data().join("queue");
    let generation = std::fs::read_dir(&queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "que"))
        .unwrap();
    let mut bytes = std::fs::read(&generation).unwrap();
    let middle = bytes.len() - 1000;
    bytes[middle] ^= 0x20;
    std::fs::write(&generation, bytes).unwrap();
    let out = check(&s);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("DAMAGED") && text.contains(".que") && text.contains("offset"), "{text}");
}
