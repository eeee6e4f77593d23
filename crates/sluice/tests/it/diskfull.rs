//! R2 (spec 09): the queue database on a small file system, filled through SMTP, twice: (a) with the
//! `[back_pressure]` disk thresholds inside the file system's size, (b) with them off, so that the database
//! itself meets ENOSPC. Needs a small file system at `SLUICE_R2_DIR` (`tests/reliability/r2.sh` mounts a
//! 48 MB tmpfs and runs these); ignored otherwise.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::harness::*;

fn r2_dir(variant: &str) -> PathBuf {
    let base = std::env::var("SLUICE_R2_DIR").expect("SLUICE_R2_DIR: a small file system (tests/reliability/r2.sh)");
    // The file system holds one variant at a time.
    for entry in std::fs::read_dir(&base).unwrap() {
        let _ = std::fs::remove_dir_all(entry.unwrap().path());
    }
    let dir = PathBuf::from(base).join(variant);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Fills the queue database through SMTP until new mail is refused with `452 4.3.1`; returns the subjects
/// of the acknowledged messages and the reply that refused.
fn fill(s: &Server) -> (Vec<String>, String) {
    let body = "z".repeat(64 * 1024);
    let mut acked = Vec::new();
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for i in 0..2000 {
        let subject = format!("r2-{i}");
        let reply = c.mail("a@example.test", &["b@remote.test"], &format!("Subject: {subject}\r\n\r\n{body}\r\n"));
        if reply.starts_with("250") {
            acked.push(subject);
        } else if reply.starts_with("452 4.3.1") {
            return (acked, reply);
        } else {
            panic!("message {i}: unexpected reply {reply:?}");
        }
    }
    panic!("2,000 messages of 64 KB were accepted: the file system is not small");
}

fn run(variant: &str, back_pressure: &str) {
    let dir = r2_dir(variant);
    let port = free_port();
    let mut s = Server::start(&format!(
        "[queue_database]\npath = \"{}\"\ngeneration_interval = \"2s\"\ncheckpoint_interval = \"2s\"\n\n\
         [transport]\nsafety_net_hold_time = \"1h\"\ntransient_failure_retry_interval = \"1s\"\n\n\
         [back_pressure]\ncheck_interval = \"100ms\"\n{back_pressure}\n\
         [[send_connectors]]\nname = \"Out\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n",
        dir.display()
    ));
    let (acked, refusal) = fill(&s);
    println!("R2 ({variant}): {} messages of 64 KB acknowledged, then {refusal:?}", acked.len());
    // (a) is refused by the thresholds at MAIL FROM with a Back Pressure alert; (b) meets the full disk, after
    // DATA or (once the database has said so) at MAIL FROM, with a Hardware alert for the full disk.
    let (expected, class) =
        if variant == "a" { ("Insufficient system resources", "Back Pressure") } else { ("452 4.3.1", "Hardware") };
    assert!(refusal.contains(expected), "{refusal}");
    let alerted = wait_until(Duration::from_secs(10), || {
        let alerts = s.get_json("/api/v1/alerts?severity=Critical");
        alerts["items"].as_array().unwrap().iter().any(|a| a["class"] == class)
    });
    for a in s.get_json("/api/v1/alerts?severity=Warning")["items"].as_array().unwrap() {
        println!("R2 ({variant}): alert {} {}: {}", a["severity"], a["class"], a["text"]);
    }
    assert!(alerted, "a Critical {class} alert");
    assert!(acked.len() > 50, "refused too early: {}", acked.len());
    // The next hop comes up: deliveries free space, and intake resumes by itself.
    let sink = Sink::start_on(port);
    let resumed = wait_until(Duration::from_secs(120), || {
        let mut c = s.smtp();
        c.cmd("EHLO client.test");
        c.mail("a@example.test", &["b@remote.test"], "Subject: r2-after\r\n\r\nagain\r\n").starts_with("250")
    });
    assert!(resumed, "intake did not resume; {} delivered", sink.count());
    let all = wait_until(Duration::from_secs(120), || {
        let got = sink.subjects.lock().unwrap();
        acked.iter().all(|a| got.contains_key(a))
    });
    let got: HashSet<String> = sink.subjects.lock().unwrap().keys().cloned().collect();
    let lost: Vec<&String> = acked.iter().filter(|a| !got.contains(*a)).collect();
    println!(
        "R2 ({variant}): {} of {} acknowledged delivered, {} lost; accepting again",
        acked.len() - lost.len(),
        acked.len(),
        lost.len()
    );
    assert!(all, "lost: {lost:?}");
    assert!(s.signal_and_wait("TERM").success());
    let out = Command::new(BIN).args(["db", "check", "--config"]).arg(s.config_path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && text.contains("0 damaged"), "{text}");
    println!("R2 ({variant}): sluice db check: {}", text.lines().last().unwrap_or_default());
}

#[test]
#[ignore = "needs a small file system: tests/reliability/r2.sh"]
fn r2a_disk_thresholds_refuse_with_452_before_the_disk_is_full() {
    run("a", "disk_free_normal = \"24MB\"\ndisk_free_medium = \"20MB\"\ndisk_free_high = \"16MB\"\n");
}

#[test]
#[ignore = "needs a small file system: tests/reliability/r2.sh"]
fn r2b_a_full_disk_releases_a_reserve_refuses_with_452_and_recovers() {
    run("b", "disk_free_normal = \"0\"\ndisk_free_medium = \"0\"\ndisk_free_high = \"0\"\n");
}
