//! The work queue from outside: built-in anti-spam and anti-virus verdicts on relayed mail, quarantine
//! (durable, released exactly once, deleted), an administrator's pause with its alerts, and updates of the
//! rule sets (hot-swapped, refused when corrupt).

use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use crate::relay::relay_config;

const GTUBE: &str = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
/// The EICAR test file, base64 (68 bytes, and with the newline `echo` would add).
const EICAR_B64: &str = "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCo=";
const EICAR_NL_B64: &str =
    "WDVPIVAlQEFQWzRcUFpYNTQoUF4pN0NDKTd9JEVJQ0FSLVNUQU5EQVJELUFOVElWSVJVUy1URVNULUZJTEUhJEgrSCoK";

fn clean(subject: &str) -> String {
    format!(
        "From: Alice <a@example.test>\r\nTo: b@remote.test\r\nSubject: {subject}\r\nDate: Thu, 03 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{subject}@example.test>\r\n\r\nHello Bob,\r\nthe minutes of today's meeting are below.\r\n"
    )
}

fn with_attachment(subject: &str, b64: &str) -> String {
    format!(
        "From: a@example.test\r\nTo: b@remote.test\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nsee attached\r\n--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"eicar.com\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--XX--\r\n"
    )
}

fn send(s: &Server, subject_and_body: &str) {
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("a@example.test", &["b@remote.test"], subject_and_body);
    assert!(r.starts_with("250"), "{r}");
}

fn quarantined(s: &Server) -> Vec<serde_json::Value> {
    s.get_json("/api/v1/quarantine")["items"].as_array().unwrap().clone()
}

fn post(s: &Server, path: &str, body: &str) -> (u16, String) {
    http(s.admin, "POST", path, &[("Content-Type", "application/json")], body)
}

fn delivered(sink: &Sink, subject: &str) -> usize {
    sink.subjects.lock().unwrap().get(subject).copied().unwrap_or(0) as usize
}

fn message_with(sink: &Sink, needle: &str) -> Option<String> {
    sink.messages.lock().unwrap().iter().map(|m| String::from_utf8_lossy(m).into_owned()).find(|m| m.contains(needle))
}

fn alert_texts(s: &Server) -> Vec<String> {
    s.get_json("/api/v1/alerts")["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            format!(
                "{} {} {}",
                a["severity"].as_str().unwrap(),
                a["class"].as_str().unwrap(),
                a["text"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn spam_and_viruses_are_quarantined_clean_mail_is_delivered_with_its_scl() {
    let sink = Sink::start();
    let mut s = Server::start(&relay_config(sink.port));
    send(&s, &clean("clean"));
    send(&s, &format!("Subject: gtube\r\n\r\n{GTUBE}\r\n"));
    send(&s, &with_attachment("eicar", EICAR_B64));
    send(&s, &with_attachment("eicar-newline", EICAR_NL_B64));
    // Not MIME at all, and cut short: scanned as bytes, never skipped.
    send(&s, &format!("Subject: broken\r\nContent-Type: multipart/mixed; boundary=\"\r\n\r\n--\r\n{GTUBE}\r\n"));
    assert!(wait_until(Duration::from_secs(20), || delivered(&sink, "clean") == 1 && quarantined(&s).len() == 4));
    let clean = message_with(&sink, "minutes of today").unwrap();
    // After sluice's own trace header, which stays first.
    assert!(clean.starts_with("Received: ") && clean.contains("\r\nX-Sluice-SCL: "), "{clean}");
    assert!(clean.contains("\r\nX-Spam-Status: No, score=") && clean.contains(" tests="), "{clean}");
    let q = quarantined(&s);
    let by_subject =
        |subj: &str| q.iter().find(|m| m["subject"] == subj).unwrap_or_else(|| panic!("{subj}: {q:?}")).clone();
    let gtube = by_subject("gtube");
    assert_eq!((gtube["stage"].as_str(), gtube["scl"].as_i64()), (Some("antispam"), Some(9)), "{gtube}");
    assert!(gtube["verdict"].as_str().unwrap().contains("GTUBE"), "{gtube}");
    for subj in ["eicar", "eicar-newline"] {
        let m = by_subject(subj);
        assert_eq!(m["stage"], "antivirus", "{m}");
        assert!(m["verdict"].as_str().unwrap().contains("Eicar-Test-Signature"), "{m}");
    }
    assert_eq!(by_subject("broken")["scl"], 9);
    let status = s.get_json("/api/v1/status");
    assert_eq!(status["gauges"]["messages_in_quarantine"], 4, "{status}");
    assert!(status["gauges"]["kilobytes_in_quarantine"].as_u64().unwrap() >= 1);
    assert_eq!(status["counters"]["quarantined_messages"]["uptime"], 4);
    // The verdicts are tracking events and the message's SCL.
    assert!(
        wait_until(Duration::from_secs(5), || {
            let events = tracking_events(&s.data());
            events.iter().any(|e| e["event_id"] == "QUARANTINE" && e["source"] == "antivirus")
                && events.iter().any(|e| {
                    e["event_id"] == "SCAN" && e["source"] == "antispam" && e["recipients"][0] == "b@remote.test"
                })
        }),
        "{:?}",
        tracking_events(&s.data())
    );

    // Quarantine is in the queue database: it survives a crash.
    s.kill9();
    s.spawn();
    assert_eq!(quarantined(&s).len(), 4);
    let gtube_mid = gtube["mid"].as_u64().unwrap();
    let (code, body) = post(&s, &format!("/api/v1/quarantine/{gtube_mid}/release"), "");
    assert_eq!(code, 200, "{body}");
    assert!(wait_until(Duration::from_secs(20), || delivered(&sink, "gtube") == 1), "released GTUBE not delivered");
    // Released past the stage that quarantined it: delivered once, with its SCL, and not held again.
    assert!(holds_for(Duration::from_secs(2), || delivered(&sink, "gtube") == 1 && quarantined(&s).len() == 3));
    // With the rules that hit, kept through the crash.
    let released = message_with(&sink, GTUBE).unwrap();
    assert!(released.contains("\r\nX-Sluice-SCL: 9\r\nX-Spam-Status: Yes, score="), "{released}");
    assert!(released.replace("\r\n\t", " ").contains(" tests=GTUBE"), "{released}");
    let eicar_mid = by_subject("eicar")["mid"].as_u64().unwrap();
    let (code, _) =
        http(s.admin, "DELETE", &format!("/api/v1/quarantine/{eicar_mid}"), &[("X-Sluice-Request", "1")], "");
    assert_eq!(code, 200);
    let (code, body) =
        http(s.admin, "DELETE", &format!("/api/v1/quarantine/{eicar_mid}"), &[("X-Sluice-Request", "1")], "");
    assert_eq!(code, 404, "{body}");
    s.kill9();
    s.spawn();
    assert_eq!(quarantined(&s).len(), 2, "a deletion is durable");
    assert!(
        holds_for(Duration::from_secs(1), || delivered(&sink, "gtube") == 1),
        "a release is delivered exactly once"
    );
}

#[test]
fn quarantine_retention_deletes_old_messages() {
    let sink = Sink::start();
    let s = Server::start(&format!("{}\n[quarantine]\nretention = \"1s\"\n", relay_config(sink.port)));
    send(&s, &format!("Subject: gtube\r\n\r\n{GTUBE}\r\n"));
    assert!(wait_until(Duration::from_secs(20), || quarantined(&s).len() == 1));
    assert!(wait_until(Duration::from_secs(20), || quarantined(&s).is_empty()), "retention did not delete it");
    assert!(wait_until(Duration::from_secs(5), || {
        tracking_events(&s.data())
            .iter()
            .any(|e| e["event_id"] == "REMOVE" && e["reply"] == "quarantine retention passed")
    }));
    assert_eq!(delivered(&sink, "gtube"), 0);
}

#[test]
fn verdict_actions_drop_and_strip() {
    let sink = Sink::start();
    let s = Server::start(&format!(
        "{}\n[antispam]\nscl_delete = 9\n\n[antivirus]\nvirus_action = \"strip\"\n",
        relay_config(sink.port)
    ));
    send(&s, &format!("Subject: gtube\r\n\r\n{GTUBE}\r\n"));
    send(&s, &with_attachment("eicar", EICAR_B64));
    assert!(wait_until(Duration::from_secs(20), || delivered(&sink, "eicar") == 1));
    let stripped = message_with(&sink, "see attached").unwrap();
    assert!(!stripped.contains(EICAR_B64), "{stripped}");
    assert!(stripped.contains("Eicar-Test-Signature"), "the notice names the virus: {stripped}");
    assert!(wait_until(
        Duration::from_secs(5),
        || s.get_json("/api/v1/status")["counters"]["dropped_messages"]["uptime"] == 1
    ));
    assert_eq!(delivered(&sink, "gtube"), 0);
    assert!(quarantined(&s).is_empty());
}

#[test]
fn a_paused_work_queue_holds_mail_in_submission_alerts_and_flows_after_resume() {
    let sink = Sink::start();
    let mut s = Server::start(&format!(
        "{}\n[alerts]\nwork_queue_pause_alert_after = \"1s\"\nwork_queue_stuck_after = \"3s\"\n",
        relay_config(sink.port)
    ));
    let (code, body) = post(&s, "/api/v1/workqueue/pause", r#"{"stage": "antispam-x"}"#);
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(&s, "/api/v1/workqueue/pause", r#"{"reason": "rule review"}"#);
    assert_eq!(code, 200, "{body}");
    let wq: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(wq["status"], "Paused");
    assert_eq!(wq["paused_stages"][0]["reason"], "rule review");
    for i in 0..3 {
        send(&s, &clean(&format!("held{i}")));
    }
    assert!(holds_for(Duration::from_secs(1), || sink.count() == 0), "mail waits while paused");
    assert_eq!(s.get_json("/api/v1/workqueue")["messages"], 3);
    assert!(
        wait_until(Duration::from_secs(20), || alert_texts(&s)
            .iter()
            .any(|a| a == "Critical Anti-Spam work queue still paused after 3 seconds, 3 msgs, antispam")),
        "{:?}",
        alert_texts(&s)
    );
    assert!(alert_texts(&s).iter().any(|a| a == "Critical Anti-Spam work queue paused, 3 msgs, antispam"));
    assert_eq!(s.get_json("/api/v1/status")["system_status"], "Work Queue Paused");
    // A crash while paused loses nothing: the messages are scanned after the restart (a pause does not
    // outlive the process).
    s.kill9();
    s.spawn();
    assert!(wait_until(Duration::from_secs(20), || sink.count() == 3), "sink has {}", sink.count());
    assert!(sink.messages.lock().unwrap().iter().all(|m| String::from_utf8_lossy(m).contains("\r\nX-Sluice-SCL: ")));

    let (code, _) = post(&s, "/api/v1/workqueue/pause", r#"{"stage": "antivirus"}"#);
    assert_eq!(code, 200);
    send(&s, &clean("later"));
    assert!(wait_until(Duration::from_secs(10), || alert_texts(&s)
        .iter()
        .any(|a| a.contains("paused, 1 msgs, antivirus"))));
    let (code, body) = post(&s, "/api/v1/workqueue/resume", "");
    assert_eq!(code, 200, "{body}");
    assert!(wait_until(Duration::from_secs(20), || delivered(&sink, "later") == 1));
    // N is what the work queue held when it resumed.
    assert!(
        alert_texts(&s).iter().any(|a| a == "Information Anti-Virus work queue resumed, 1 msgs"),
        "{:?}",
        alert_texts(&s)
    );
    assert_eq!(s.get_json("/api/v1/workqueue")["status"], "Operational");
}

/// Writes an update for `engine` into the source directory `dir`: the files and a manifest naming them
/// (with `bad_sha` the first file's checksum is wrong).
fn publish(dir: &Path, engine: &str, version: &str, files: &[(&str, &str)], bad_sha: bool) {
    let d = dir.join(engine);
    std::fs::create_dir_all(&d).unwrap();
    let mut entries = Vec::new();
    for (i, (name, text)) in files.iter().enumerate() {
        std::fs::write(d.join(name), text).unwrap();
        let sha = if bad_sha && i == 0 { "0".repeat(64) } else { sha256_hex(text.as_bytes()) };
        entries.push(serde_json::json!({"name": name, "sha256": sha, "size": text.len()}));
    }
    let manifest = serde_json::json!({"version": version, "files": entries});
    std::fs::write(d.join("manifest.json"), manifest.to_string()).unwrap();
}

/// What `cmd args` writes for `input` (coreutils), so that the tests do not trust sluice's own hashing.
fn pipe(cmd: &str, args: &[&str], input: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    pipe("sha256sum", &[], bytes).split_whitespace().next().unwrap().to_owned()
}

fn version_of(s: &Server, engine: &str) -> String {
    let engines = s.get_json("/api/v1/engines");
    let e = engines.as_array().unwrap().iter().find(|e| e["engine"] == engine).unwrap().clone();
    e["version"].as_str().unwrap().to_owned()
}

fn updater_log(s: &Server) -> String {
    s.get("/api/v1/logs/updater?tail=1000").1
}

#[test]
fn an_update_is_swapped_in_with_a_short_pause_and_a_corrupt_one_leaves_the_old_rules_running() {
    let sink = Sink::start();
    let updates = tempfile::tempdir().unwrap();
    let s = Server::start(&format!(
        "{}\n[alerts]\nwork_queue_pause_alert_after = \"0s\"\n\n[updater]\nsource = \"{}\"\ninterval = \"1h\"\n",
        relay_config(sink.port),
        updates.path().display()
    ));
    let rules = "# sluice test rules\nheader WINNER_SUBJECT Subject =~ /\\bwinner\\b/i\nscore WINNER_SUBJECT 9.0\ndescribe WINNER_SUBJECT You are a winner\n";
    publish(updates.path(), "antispam", "2026120301", &[("10_test.cf", rules)], false);
    let (code, body) = post(&s, "/api/v1/engines/antispam/update?force=true", "");
    assert_eq!(code, 202, "{body}");
    assert!(
        wait_until(Duration::from_secs(20), || updater_log(&s).contains("antispam waiting for new updates")),
        "{}",
        updater_log(&s)
    );
    let log = updater_log(&s);
    let steps = [
        "Info: antispam downloading version 2026120301",
        "Info: antispam verifying applied files",
        "Info: antispam updating the client manifest",
        "Info: antispam update completed",
        "Info: antispam waiting for new updates",
    ];
    let mut at = 0;
    for step in steps {
        let found = log[at..].find(step).unwrap_or_else(|| panic!("{step:?} missing or out of order in:\n{log}"));
        at += found + step.len();
    }
    // `Mon Aug 18 11:32:55 2014 Info: ...`
    let first = log.lines().next().unwrap();
    assert!(first.split(' ').filter(|w| !w.is_empty()).nth(5) == Some("Info:"), "{first}");
    let engines = s.get_json("/api/v1/engines");
    let antispam = engines.as_array().unwrap().iter().find(|e| e["engine"] == "antispam").unwrap().clone();
    assert_eq!((antispam["version"].as_str(), antispam["rules"].as_u64()), (Some("2026120301"), Some(1)), "{antispam}");
    assert!(
        wait_until(Duration::from_secs(5), || {
            let a = alert_texts(&s);
            a.iter().any(|t| t.starts_with("Critical Anti-Spam work queue paused, ") && t.ends_with(" msgs, antispam"))
                && a.iter().any(|t| t.starts_with("Information Anti-Spam work queue resumed, "))
        }),
        "{:?}",
        alert_texts(&s)
    );
    // The new rules are in force.
    send(&s, &clean("you are the WINNER"));
    assert!(wait_until(Duration::from_secs(20), || quarantined(&s).len() == 1));

    // A corrupt update (a checksum that does not match) changes nothing, with a warning.
    let newer = "header OTHER Subject =~ /other/\nscore OTHER 9\n";
    publish(updates.path(), "antispam", "2026120302", &[("10_test.cf", newer)], true);
    let (code, _) = post(&s, "/api/v1/engines/antispam/update", "");
    assert_eq!(code, 202);
    assert!(
        wait_until(Duration::from_secs(20), || updater_log(&s)
            .contains("Warning: antispam update failed: 10_test.cf: checksum mismatch")),
        "{}",
        updater_log(&s)
    );
    assert!(
        alert_texts(&s).iter().any(|a| a.starts_with("Warning Updater antispam update failed")),
        "{:?}",
        alert_texts(&s)
    );
    // So is one whose rules do not compile.
    publish(
        updates.path(),
        "antispam",
        "2026120303",
        &[("10_test.cf", "header BROKEN Subject =~ /(unclosed/\n")],
        false,
    );
    post(&s, "/api/v1/engines/antispam/update", "");
    let refused = "update failed: nothing in it compiles: 10_test.cf:1: rule BROKEN";
    assert!(wait_until(Duration::from_secs(20), || updater_log(&s).contains(refused)), "{}", updater_log(&s));
    let engines = s.get_json("/api/v1/engines");
    let antispam = engines.as_array().unwrap().iter().find(|e| e["engine"] == "antispam").unwrap().clone();
    assert_eq!(antispam["version"], "2026120301", "the old set runs: {antispam}");
    send(&s, &clean("another winner"));
    send(&s, &clean("other"));
    assert!(wait_until(Duration::from_secs(20), || quarantined(&s).len() == 2 && delivered(&sink, "other") == 1));
    // One broken rule among good ones: it is named and skipped, the rest is installed.
    let mixed = "header BROKEN2 Subject =~ /(open/\nheader JACKPOT Subject =~ /jackpot/i\nscore JACKPOT 9\n";
    publish(updates.path(), "antispam", "2026120304", &[("10_test.cf", mixed)], false);
    post(&s, "/api/v1/engines/antispam/update", "");
    assert!(wait_until(Duration::from_secs(20), || version_of(&s, "antispam") == "2026120304"), "{}", updater_log(&s));
    assert!(
        updater_log(&s).contains("Warning: antispam update: skipped 10_test.cf:1: rule BROKEN2"),
        "{}",
        updater_log(&s)
    );
    assert!(alert_texts(&s).iter().any(|a| a.contains("1 skipped, the rest installed")), "{:?}", alert_texts(&s));
    send(&s, &clean("jackpot"));
    assert!(wait_until(Duration::from_secs(20), || quarantined(&s).len() == 3));
    let (code, _) = post(&s, "/api/v1/engines/antimalware/update", "");
    assert_eq!(code, 400);
}

#[test]
fn an_installed_update_is_in_force_after_a_restart() {
    let sink = Sink::start();
    let updates = tempfile::tempdir().unwrap();
    let mut s = Server::start(&format!(
        "{}\n[updater]\nsource = \"{}\"\ninterval = \"1h\"\n",
        relay_config(sink.port),
        updates.path().display()
    ));
    let sig = "# a hash signature of a made-up attachment\n";
    let content = "this attachment is a made-up threat for the test\n";
    let md5 = pipe("md5sum", &["-"], content.as_bytes()).split_whitespace().next().unwrap().to_owned();
    let hdb = format!("{sig}{md5}:{}:Test.Madeup-1\n", content.len());
    publish(updates.path(), "antivirus", "7", &[("test.hdb", &hdb)], false);
    post(&s, "/api/v1/engines/antivirus/update", "");
    assert!(
        wait_until(Duration::from_secs(20), || updater_log(&s).contains("antivirus update completed")),
        "{}",
        updater_log(&s)
    );
    s.kill9();
    s.spawn();
    let b64 = pipe("base64", &["-w0"], content.as_bytes());
    send(&s, &with_attachment("madeup", &b64));
    assert!(wait_until(Duration::from_secs(20), || quarantined(&s).len() == 1));
    assert!(quarantined(&s)[0]["verdict"].as_str().unwrap().contains("Test.Madeup-1"));
    assert_eq!(s.get_json("/api/v1/engines")[1]["version"], "7");
}

/// A tiny HTTP/1.1 file server on loopback: `GET /<path>` answers the file under `root`, or 404. Counts the
/// requests it served.
fn serve_files(root: std::path::PathBuf) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let path = request.split_whitespace().nth(1).unwrap_or("/").trim_start_matches('/').to_owned();
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = match std::fs::read(root.join(&path)) {
                Ok(body) => [
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
                        .into_bytes(),
                    body,
                ]
                .concat(),
                Err(_) => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
            };
            let _ = stream.write_all(&answer);
        }
    });
    (port, served)
}

#[test]
fn updates_come_from_an_http_source_on_the_schedule() {
    let sink = Sink::start();
    let updates = tempfile::tempdir().unwrap();
    let (port, served) = serve_files(updates.path().to_owned());
    let s = Server::start(&format!(
        "{}\n[updater]\nsource = \"http://127.0.0.1:{port}/feed\"\ninterval = \"1s\"\n",
        relay_config(sink.port)
    ));
    std::fs::create_dir_all(updates.path().join("feed")).unwrap();
    let rules = "header LOTTERY Subject =~ /lottery/i\nscore LOTTERY 8\n";
    publish(&updates.path().join("feed"), "antispam", "http-1", &[("20_http.cf", rules)], false);
    // Nobody asks: the schedule finds it.
    let version = || {
        let engines = s.get_json("/api/v1/engines");
        engines.as_array().unwrap().iter().find(|e| e["engine"] == "antispam").unwrap()["version"].clone()
    };
    assert!(wait_until(Duration::from_secs(20), || version() == "http-1"), "{}", updater_log(&s));
    assert!(served.load(std::sync::atomic::Ordering::SeqCst) >= 2, "the manifest and the rule file came over HTTP");
    send(&s, &clean("lottery results"));
    assert!(wait_until(Duration::from_secs(20), || quarantined(&s).len() == 1));
    // The scheduled checks that find nothing new write nothing.
    let lines = updater_log(&s).lines().count();
    assert!(holds_for(Duration::from_secs(3), || updater_log(&s).lines().count() == lines), "{}", updater_log(&s));
}

#[test]
fn alerts_go_out_by_mail_and_webhook() {
    let sink = Sink::start();
    let postmaster = Sink::start();
    // A webhook receiver: records each POST's body and answers 204.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_port = hook.local_addr().unwrap().port();
    let posts = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let got = posts.clone();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        for stream in hook.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Headers, then Content-Length bytes of body.
            loop {
                let n = stream.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        got.lock().unwrap().push(body.to_owned());
                        break;
                    }
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    let s = Server::start(&format!(
        "{}\n[alerts]\nwork_queue_pause_alert_after = \"0s\"\nemail_to = [\"postmaster@example.test\"]\nsmtp_host = \"127.0.0.1:{}\"\nwebhook_url = \"http://127.0.0.1:{hook_port}/alerts\"\n",
        relay_config(sink.port),
        postmaster.port
    ));
    let (code, _) = post(&s, "/api/v1/workqueue/pause", r#"{"stage": "antivirus"}"#);
    assert_eq!(code, 200);
    let mailed = || {
        postmaster.messages.lock().unwrap().iter().any(|m| {
            let m = String::from_utf8_lossy(m);
            m.contains("X-Sluice-Alert: Anti-Virus/Critical") && m.contains("work queue paused, 0 msgs, antivirus")
        })
    };
    assert!(wait_until(Duration::from_secs(20), mailed), "{:?}", postmaster.subjects.lock().unwrap());
    let hooked = || {
        posts.lock().unwrap().iter().any(|b| {
            serde_json::from_str::<serde_json::Value>(b)
                .is_ok_and(|a| a["text"] == "work queue paused, 0 msgs, antivirus" && a["server"] == "mx")
        })
    };
    assert!(wait_until(Duration::from_secs(20), hooked), "{:?}", posts.lock().unwrap());
    // Alert mail does not go through the queue.
    assert_eq!(sink.count(), 0);
    assert!(s.queued() == 0);
}
