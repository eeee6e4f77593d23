//! Poison messages end to end, with `[debug] fault_injection` on and `poison_threshold = 2`: a message whose
//! `X-Sluice-Fault` header aborts the server while it is categorized crashes it twice, across restarts, and
//! then sits in Poison, suspended; one whose delivery panics gets there without a restart; the messages sent
//! around them are delivered; a suspect is processed alone, so a poison message never blames it twice. From a
//! client outside `relay_networks` the header is removed and does nothing.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::harness::*;
use crate::relay::relay_config;

/// The signal `std::process::abort` ends the process with.
const SIGABRT: i32 = 6;

fn poison_config(sink_port: u16) -> String {
    let relay = relay_config(sink_port).replace("[transport]\n", "[transport]\npoison_threshold = 2\n");
    format!("{relay}\n[debug]\nfault_injection = true\n")
}

fn message(subject: &str, fault: Option<&str>) -> String {
    let fault = fault.map(|f| format!("X-Sluice-Fault: {f}\r\n")).unwrap_or_default();
    format!("Subject: {subject}\r\n{fault}\r\nx\r\n")
}

/// Sends one message to `b@remote.test` in a session of its own; whether it got `250`. Any failure (the
/// server is down, or went down meanwhile) is `false`, never a panic.
fn send(s: &Server, body: &str) -> bool {
    send_to(s, "b@remote.test", body)
}

/// As [`send`], to `rcpt`.
fn send_to(s: &Server, rcpt: &str, body: &str) -> bool {
    let attempt = || -> std::io::Result<bool> {
        let stream = TcpStream::connect(("127.0.0.1", s.smtp))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut w = stream.try_clone()?;
        let mut r = BufReader::new(stream);
        let mut reply = || -> std::io::Result<String> {
            loop {
                let mut line = String::new();
                if r.read_line(&mut line)? == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    return Ok(line);
                }
            }
        };
        reply()?;
        let rcpt = format!("RCPT TO:<{rcpt}>");
        for cmd in ["EHLO client.test", "MAIL FROM:<a@example.test>", &rcpt, "DATA"] {
            w.write_all(format!("{cmd}\r\n").as_bytes())?;
            let line = reply()?;
            if !line.starts_with('2') && !line.starts_with('3') {
                return Ok(false);
            }
        }
        w.write_all(format!("{body}.\r\n").as_bytes())?;
        Ok(reply()?.starts_with("250"))
    };
    attempt().unwrap_or(false)
}

/// The messages in Poison, if the server answers.
fn in_poison(s: &Server) -> Vec<serde_json::Value> {
    let (status, body) = s.get("/api/v1/messages?queue=Poison");
    if status != 200 {
        return Vec::new();
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    v["items"].as_array().cloned().unwrap_or_default()
}

fn assert_aborted(status: std::process::ExitStatus, s: &Server) {
    assert_eq!(
        status.signal(),
        Some(SIGABRT),
        "sluice ended otherwise than by the injected abort: {status:?}\n{}",
        s.log()
    );
}

/// Asserts that the one message in Poison is `subject`, Suspended, and tracked as POISONMESSAGE.
fn assert_poisoned(s: &Server, subject: &str) {
    let poisoned = in_poison(s);
    assert_eq!(poisoned.len(), 1, "{poisoned:?}");
    assert_eq!(poisoned[0]["subject"], subject);
    assert_eq!(poisoned[0]["status"], "Suspended");
    assert_eq!(poisoned[0]["queue"], "mx\\Poison");
    let mid = poisoned[0]["mid"].as_u64().unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || tracking_events(&s.data())
            .iter()
            .any(|e| e["event_id"] == "POISONMESSAGE" && e["mid"] == mid)),
        "no POISONMESSAGE event for {mid}"
    );
    let q = s.get_json("/api/v1/queues/mx%5CPoison");
    assert_eq!(q["message_count"], 1);
}

#[test]
fn a_message_that_aborts_the_categorizer_crashes_the_server_twice_then_sits_in_poison() {
    crashes_twice_then_sits_in_poison("abort@categorizer");
}

#[test]
fn a_message_that_aborts_its_delivery_crashes_the_server_twice_then_sits_in_poison() {
    crashes_twice_then_sits_in_poison("abort@delivery");
}

#[test]
fn a_message_that_aborts_the_antispam_scan_crashes_the_server_twice_then_sits_in_poison() {
    crashes_twice_then_sits_in_poison("abort@antispam");
}

#[test]
fn a_message_that_aborts_the_antivirus_scan_crashes_the_server_twice_then_sits_in_poison() {
    crashes_twice_then_sits_in_poison("abort@antivirus");
}

#[test]
fn a_message_whose_scan_panics_goes_to_poison_without_a_restart() {
    panics_then_sits_in_poison("panic@antivirus");
}

/// Sends A, then P with `X-Sluice-Fault: <fault>` (a panic), then B: P must be in Poison without a restart, A
/// and B delivered. Returns the server, still up.
fn panics_then_sits_in_poison(fault: &str) -> Server {
    let sink = Sink::start();
    let mut s = Server::start(&poison_config(sink.port));
    assert!(send(&s, &message("A", None)));
    assert!(send(&s, &message("P", Some(fault))));
    assert!(send(&s, &message("B", None)));
    assert!(wait_until(Duration::from_secs(20), || !in_poison(&s).is_empty()), "nothing in Poison:\n{}", s.log());
    assert_poisoned(&s, "P");
    let delivered = |subject: &str| sink.subjects.lock().unwrap().contains_key(subject);
    assert!(wait_until(Duration::from_secs(20), || delivered("A") && delivered("B")));
    assert!(!delivered("P"));
    assert!(s.exited().is_none(), "a caught panic does not take the process down");
    s
}

/// Sends A, then P with `X-Sluice-Fault: <fault>`, then B; restarts the server each time it aborts; P must
/// be in Poison after two aborts, and A and B delivered.
fn crashes_twice_then_sits_in_poison(fault: &str) {
    let sink = Sink::start();
    let mut s = Server::start(&poison_config(sink.port));
    assert!(send(&s, &message("A", None)));
    // The server may abort before its 250 reaches the client: the message was stored by then.
    send(&s, &message("P", Some(fault)));
    let mut b_sent = false;
    let mut aborts = 0;
    loop {
        if !b_sent {
            b_sent = send(&s, &message("B", None));
        }
        let mut exited = None;
        let settled = wait_until(Duration::from_secs(30), || {
            exited = s.exited();
            exited.is_some() || !in_poison(&s).is_empty()
        });
        assert!(settled, "neither an abort nor a message in Poison:\n{}", s.log());
        let Some(status) = exited else { break };
        assert_aborted(status, &s);
        aborts += 1;
        assert!(aborts <= 2, "a third crash: the message should have been in Poison after two\n{}", s.log());
        // Restarted; it may abort again while it starts.
        while let Some(status) = s.spawn_or_exit() {
            assert_aborted(status, &s);
            aborts += 1;
            assert!(aborts <= 2, "a third crash while starting\n{}", s.log());
        }
    }
    assert_eq!(aborts, 2, "poison_threshold = 2");
    assert_poisoned(&s, "P");
    assert!(b_sent || send(&s, &message("B", None)), "B is taken once the server stays up");
    let delivered = |subject: &str| sink.subjects.lock().unwrap().contains_key(subject);
    assert!(
        wait_until(Duration::from_secs(20), || delivered("A") && delivered("B")),
        "A and B delivered: {:?}",
        sink.subjects.lock().unwrap()
    );
    assert!(!delivered("P"));
    // It stays up and P stays where it is: never expired, never resumed by itself.
    assert!(holds_for(Duration::from_secs(2), || s.exited().is_none() && in_poison(&s).len() == 1));
}

#[test]
fn a_message_whose_delivery_panics_goes_to_poison_without_a_restart() {
    let s = panics_then_sits_in_poison("panic@delivery");
    assert_eq!(s.get("/api/v1/health").0, 200);
    assert!(s.log().contains("a panic while processing a message was caught"));
    // An administrator exports it (a Poison message is suspended) and removes it.
    let mid = in_poison(&s)[0]["mid"].as_u64().unwrap();
    let (status, exported) = s.get(&format!("/api/v1/messages/mx%5CPoison%5C{mid}/export"));
    assert_eq!(status, 200, "{exported}");
    assert!(exported.contains("Subject: P\r\n"), "{exported}");
    let (status, body) =
        http(s.admin, "DELETE", &format!("/api/v1/messages/{mid}?with_ndr=false"), &[("X-Sluice-Request", "1")], "");
    assert_eq!(status, 200, "{body}");
    assert!(in_poison(&s).is_empty());
    assert_eq!(s.get(&format!("/api/v1/messages/{mid}")).0, 404);
}

#[test]
fn a_fault_header_from_outside_relay_networks_is_removed_and_does_nothing() {
    let mut s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nrelay_networks = []\n\n\
         [debug]\nfault_injection = true\n",
    );
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let body = "Subject: forged\r\nX-Sluice-Fault: abort@categorizer\r\nX-Sluice-Fault: panic@delivery\r\n\r\nhi\r\n";
    assert!(c.mail("a@example.test", &["postmaster"], body).starts_with("250"));
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "postmaster").len() == 1));
    let stored = std::fs::read_to_string(&maildir_new(&s.data(), "localhost", "postmaster")[0]).unwrap();
    assert!(stored.contains("Subject: forged") && !stored.to_ascii_lowercase().contains("x-sluice-fault"), "{stored}");
    assert!(s.exited().is_none());
    assert!(in_poison(&s).is_empty());
}

/// A next hop that takes `delay` to answer the end of each message's data: a message delivered to it is in
/// process for that long. Returns its port and the subjects it accepted, with counts.
fn slow_sink(delay: Duration) -> (u16, Arc<Mutex<HashMap<String, u32>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let subjects = Arc::new(Mutex::new(HashMap::new()));
    let accepted = subjects.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let subjects = accepted.clone();
            std::thread::spawn(move || {
                let serve = || -> std::io::Result<()> {
                    let mut w = stream.try_clone()?;
                    let mut r = BufReader::new(stream);
                    w.write_all(b"220 slow ESMTP\r\n")?;
                    let (mut in_data, mut subject) = (false, String::new());
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line)? == 0 {
                            return Ok(());
                        }
                        if in_data {
                            if line == ".\r\n" {
                                in_data = false;
                                std::thread::sleep(delay);
                                w.write_all(b"250 2.0.0 Ok\r\n")?;
                                *subjects.lock().unwrap().entry(std::mem::take(&mut subject)).or_insert(0) += 1;
                            } else if let Some(s) = line.strip_prefix("Subject: ") {
                                subject = s.trim_end().to_owned();
                            }
                            continue;
                        }
                        let reply: &[u8] = match line.get(..4).unwrap_or("").to_ascii_uppercase().as_str() {
                            "EHLO" => b"250-slow\r\n250 PIPELINING\r\n",
                            "DATA" => {
                                in_data = true;
                                b"354 go\r\n"
                            }
                            "QUIT" => return w.write_all(b"221 bye\r\n"),
                            _ => b"250 Ok\r\n",
                        };
                        w.write_all(reply)?;
                    }
                };
                let _ = serve();
            });
        }
    });
    (port, subjects)
}

/// The gate of suspects. A SIGKILL while A is being delivered (slowly, through a next hop of its own) makes A
/// a suspect. After the restart A is delivered alone, which takes two seconds; Q, whose categorization
/// aborts the server, comes in meanwhile. Were Q categorized beside A's delivery, its abort would blame A a
/// second time and send it to Poison; as it waits until A is done, only Q is blamed, twice, and gets there.
#[test]
fn a_suspect_is_processed_alone_so_that_a_poison_message_never_blames_it_again() {
    let (port, delivered) = slow_sink(Duration::from_secs(2));
    let slow = format!(
        "{}\n[[send_connectors]]\nname = \"Slow\"\naddress_spaces = [\"slow.test\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n",
        poison_config(port)
    );
    let mut s = Server::start(&slow);
    assert!(send_to(&s, "a@slow.test", &message("A", None)));
    std::thread::sleep(Duration::from_millis(500));
    s.kill9();
    s.spawn();
    // A's delivery, alone, is under way: Q comes in now.
    std::thread::sleep(Duration::from_millis(500));
    send(&s, &message("Q", Some("abort@categorizer")));
    let mut aborts = 0;
    loop {
        let mut exited = None;
        let settled = wait_until(Duration::from_secs(30), || {
            exited = s.exited();
            exited.is_some() || !in_poison(&s).is_empty()
        });
        assert!(settled, "neither an abort nor a message in Poison:\n{}", s.log());
        let Some(status) = exited else { break };
        assert_aborted(status, &s);
        aborts += 1;
        assert!(aborts <= 2, "a third crash\n{}", s.log());
        while let Some(status) = s.spawn_or_exit() {
            assert_aborted(status, &s);
            aborts += 1;
            assert!(aborts <= 2, "a third crash while starting\n{}", s.log());
        }
    }
    // The log's fields are coloured: its text is compared without the escape sequences.
    let log = String::from_utf8(strip_ansi(s.log().as_bytes())).unwrap();
    let blamed: Vec<&str> = log.lines().filter(|l| l.contains("crash counts raised")).collect();
    assert_eq!(blamed.len(), 3, "the kill and two aborts: {log}");
    assert!(blamed.iter().all(|l| l.contains("messages=1 ")), "one message blamed at a time: {log}");
    assert_poisoned(&s, "Q");
    assert!(
        wait_until(Duration::from_secs(20), || delivered.lock().unwrap().contains_key("A")),
        "A delivered: {:?}",
        delivered.lock().unwrap()
    );
    assert!(holds_for(Duration::from_secs(1), || in_poison(&s).len() == 1), "only Q in Poison");
}

/// `text` without its ANSI escape sequences (`ESC [ ... m`).
fn strip_ansi(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        if text[i] == 0x1b && text.get(i + 1) == Some(&b'[') {
            i += 2;
            while i < text.len() && text[i] != b'm' {
                i += 1;
            }
        } else {
            out.push(text[i]);
        }
        i += 1;
    }
    out
}
