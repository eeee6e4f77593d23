//! `sluice check-config`, bad configurations, and a graceful stop.

use std::path::PathBuf;
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
fn check_config_and_the_db_tools_exit_2_when_the_configuration_or_the_database_is_unusable() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[transport]\nretry_bogus = 3\n").unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "[server]\ndata_dir = \"data\"\n").unwrap();
    let to = dir.path().join("out");
    let run = |args: &[&str], config: &std::path::Path| {
        let out = Command::new(BIN).args(args).arg("--config").arg(config).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for args in [&["check-config"][..], &["db", "check"], &["db", "export", "--to", to.to_str().unwrap()]] {
        let (code, err) = run(args, &bad);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.starts_with("sluice: ") && err.contains("retry_bogus"), "{args:?}: {err}");
    }
    for args in [&["db", "check"][..], &["db", "salvage", "--to", to.to_str().unwrap()]] {
        let (code, err) = run(args, &good);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.starts_with("sluice: no queue database at "), "{args:?}: {err}");
    }
}

#[test]
fn sigterm_stops_cleanly_and_queued_mail_survives() {
    let port = free_port();
    let mut s = Server::start(&format!(
        "[transport]\nqueue_glitch_retry_interval = \"1s\"\ntransient_failure_retry_interval = \"1s\"\noutbound_connection_failure_retry_interval = \"1s\"\nmessage_retry_interval = \"1s\"\n[[send_connectors]]\nname = \"Down\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n"
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
    let generation = generation_file(&queue);
    let mut bytes = std::fs::read(&generation).unwrap();
    let middle = bytes.len() - 1000;
    bytes[middle] ^= 0x20;
    std::fs::write(&generation, bytes).unwrap();
    let out = check(&s);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("DAMAGED") && text.contains(".que") && text.contains("offset"), "{text}");
}

#[test]
fn a_damaged_generation_is_refused_at_start_and_salvage_with_the_replay_directory_delivers_the_rest() {
    let port = free_port();
    let mut s = Server::start(&format!(
        "[transport]\nqueue_glitch_retry_interval = \"1s\"\ntransient_failure_retry_interval = \"1s\"\noutbound_connection_failure_retry_interval = \"1s\"\nmessage_retry_interval = \"1s\"\n\n\
         [[send_connectors]]\nname = \"Out\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n"
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for i in 0..5 {
        let body = format!("Subject: salvage-{i}\r\n\r\n{}\r\n", format!("line {i} of the body\r\n").repeat(100));
        assert!(c.mail("a@example.test", &["b@remote.test", "c@remote.test"], &body).starts_with("250"));
    }
    drop(c);
    assert!(s.signal_and_wait("TERM").success());
    // A byte flipped inside the third message's body, in the middle of the generation file.
    let queue = s.data().join("queue");
    let generation = generation_file(&queue);
    let mut bytes = std::fs::read(&generation).unwrap();
    let at = bytes.windows(9).position(|w| w == b"salvage-2").unwrap() + 200;
    bytes[at] ^= 0x01;
    std::fs::write(&generation, bytes).unwrap();
    // The start is refused, naming the file and the offset.
    let out = Command::new(BIN).args(["serve", "--config"]).arg(s.config_path()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started on a damaged database: {err}");
    let name = generation.file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&name) && err.contains("offset"), "{err}");
    // Export wants a healthy database; salvage takes what it can.
    let drained = s.data().join("drained");
    let drain = |what: &str| {
        Command::new(BIN)
            .args(["db", what, "--to"])
            .arg(&drained)
            .arg("--config")
            .arg(s.config_path())
            .output()
            .unwrap()
    };
    let out = drain("export");
    assert!(!out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stderr).contains("salvage"));
    let out = drain("salvage");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    assert!(text.contains("4 messages written") && text.contains("DAMAGED"), "{text}");
    let files: Vec<PathBuf> = std::fs::read_dir(&drained).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 4, "{files:?}");
    let one = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        one.starts_with("X-Sender: <a@example.test>\r\nX-Receiver: <b@remote.test>\r\nX-Receiver: <c@remote.test>\r\n"),
        "{one}"
    );
    // A fresh queue database; the salvaged messages go through the replay directory to the next hop.
    std::fs::rename(&queue, s.data().join("queue.damaged")).unwrap();
    let sink = Sink::start_on(port);
    s.spawn();
    let replay = s.data().join("replay");
    for f in &files {
        std::fs::copy(f, replay.join(f.file_name().unwrap())).unwrap();
    }
    let want: Vec<String> = [0, 1, 3, 4].iter().map(|i| format!("salvage-{i}")).collect();
    let delivered = wait_until(Duration::from_secs(30), || {
        let got = sink.subjects.lock().unwrap();
        want.iter().all(|w| got.contains_key(w))
    });
    assert!(delivered, "{:?} {}", sink.subjects.lock().unwrap(), s.log());
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_dir(&replay).unwrap().count() == 0),
        "replayed files are removed"
    );
}

/// The (only) generation file of a queue database.
fn generation_file(queue: &std::path::Path) -> PathBuf {
    std::fs::read_dir(queue)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "que"))
        .unwrap()
}
