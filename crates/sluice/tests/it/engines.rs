//! The network engines' faults from outside, with a clamd stand-in on loopback that speaks clamd's protocol
//! (the real clamd, spamd and rspamd run in tests/interop/engines.sh): an engine that goes away, never
//! answers or answers garbage takes its stage Offline with an alert while SMTP intake goes on and messages
//! wait; it comes back by itself; `on_engine_failure = "pass"` lets messages through stamped unscanned.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::relay::relay_config;

/// How the stand-in answers.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// As clamd: `FOUND` for a stream holding `EICAR-STANDARD`, else `OK`.
    Clamd,
    /// Reads, never answers.
    Silent,
    /// Answers what no clamd would.
    Garbage,
}

/// A clamd stand-in on `127.0.0.1:port`, until stopped (its connections are closed then).
struct FakeClamd {
    stop: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeClamd {
    fn start(port: u16, mode: Mode) -> FakeClamd {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).unwrap();
                        conns2.lock().unwrap().push(s.try_clone().unwrap());
                        std::thread::spawn(move || serve(s, mode));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeClamd { stop, conns, thread: Some(thread) }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

impl Drop for FakeClamd {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(mut s: TcpStream, mode: Mode) {
    let mut buf = Vec::new();
    let mut id = 0u32;
    let mut chunk = [0u8; 65536];
    let mut fill = |s: &mut TcpStream, buf: &mut Vec<u8>, n: usize| -> bool {
        while buf.len() < n {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        }
        true
    };
    loop {
        // A command: up to its NUL.
        let end = loop {
            if let Some(i) = buf.iter().position(|b| *b == 0) {
                break i;
            }
            let have = buf.len();
            if !fill(&mut s, &mut buf, have + 1) {
                return;
            }
        };
        let command: Vec<u8> = buf.drain(..=end).collect();
        match mode {
            Mode::Silent => {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
            Mode::Garbage => {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n\0");
                return;
            }
            Mode::Clamd => {}
        }
        match &command[..] {
            b"zIDSESSION\0" => {}
            b"zPING\0" => {
                let _ = s.write_all(b"PONG\0");
                return;
            }
            b"zINSTREAM\0" => {
                let mut data = Vec::new();
                loop {
                    if !fill(&mut s, &mut buf, 4) {
                        return;
                    }
                    let n = u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
                    buf.drain(..4);
                    if n == 0 {
                        break;
                    }
                    if !fill(&mut s, &mut buf, n) {
                        return;
                    }
                    data.extend(buf.drain(..n));
                }
                id += 1;
                let found = data.windows(14).any(|w| w == b"EICAR-STANDARD");
                let answer =
                    if found { format!("{id}: stream: Eicar-Test FOUND\0") } else { format!("{id}: stream: OK\0") };
                if s.write_all(answer.as_bytes()).is_err() {
                    return;
                }
            }
            _ => {
                let _ = s.write_all(b"UNKNOWN COMMAND\0");
                return;
            }
        }
    }
}

fn config(sink: u16, clamd: u16, extra: &str) -> String {
    format!(
        "{}\n[antispam]\nengine = \"off\"\n[antivirus]\nengine = \"clamd\"\naddress = \"127.0.0.1:{clamd}\"\ntimeout = \"1s\"\n\
         [alerts]\nwork_queue_pause_alert_after = \"1s\"\n{extra}",
        relay_config(sink)
    )
}

fn send(s: &Server, subject: &str) {
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("a@example.test", &["b@remote.test"], &format!("Subject: {subject}\r\n\r\nhello\r\n"));
    assert!(r.starts_with("250"), "{r}");
}

fn delivered(sink: &Sink, subject: &str) -> bool {
    sink.subjects.lock().unwrap().get(subject).copied().unwrap_or(0) > 0
}

fn antivirus(s: &Server) -> serde_json::Value {
    let wq = s.get_json("/api/v1/workqueue");
    wq["stages"].as_array().unwrap().iter().find(|st| st["stage"] == "antivirus").unwrap().clone()
}

fn alerts(s: &Server) -> Vec<String> {
    let items = s.get_json("/api/v1/alerts")["items"].as_array().unwrap().clone();
    items.iter().map(|a| a["text"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn a_clamd_that_goes_away_takes_the_stage_offline_and_its_mail_waits_until_it_returns() {
    let sink = Sink::start();
    let port = free_port();
    let mut clamd = FakeClamd::start(port, Mode::Clamd);
    let s = Server::start(&config(sink.port, port, ""));
    send(&s, "before");
    assert!(wait_until(Duration::from_secs(20), || delivered(&sink, "before")));
    assert_eq!(antivirus(&s)["engine"], "clamd");

    clamd.stop();
    for i in 0..3 {
        send(&s, &format!("during {i}"));
    }
    assert!(wait_until(Duration::from_secs(20), || antivirus(&s)["state"] == "Offline"), "{}", antivirus(&s));
    assert!(antivirus(&s)["reason"].as_str().unwrap().contains("cannot connect"), "{}", antivirus(&s));
    assert_eq!(s.get_json("/api/v1/workqueue")["status"], "Offline");
    assert!(
        wait_until(Duration::from_secs(10), || alerts(&s).iter().any(|a| a.starts_with("antivirus engine offline"))),
        "{:?}",
        alerts(&s)
    );
    // Intake goes on; nothing passes unscanned.
    send(&s, "during 3");
    assert!(holds_for(Duration::from_millis(1500), || (0..4).all(|i| !delivered(&sink, &format!("during {i}")))));
    assert!(wait_until(Duration::from_secs(10), || alerts(&s).iter().any(|a| a.starts_with("work queue paused"))));

    let _clamd = FakeClamd::start(port, Mode::Clamd);
    assert!(
        wait_until(Duration::from_secs(30), || (0..4).all(|i| delivered(&sink, &format!("during {i}")))),
        "{}",
        s.log()
    );
    assert_eq!(antivirus(&s)["state"], "Operational");
    assert!(wait_until(Duration::from_secs(10), || alerts(&s).iter().any(|a| a.starts_with("work queue resumed"))));
    let messages = sink.messages.lock().unwrap();
    assert!(messages.iter().all(|m| !String::from_utf8_lossy(m).contains("unscanned")));
}

#[test]
fn an_infected_message_through_clamd_is_quarantined() {
    let sink = Sink::start();
    let port = free_port();
    let _clamd = FakeClamd::start(port, Mode::Clamd);
    let s = Server::start(&config(sink.port, port, ""));
    send(&s, "clean");
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let body = "Subject: infected\r\n\r\nX5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*\r\n";
    assert!(c.mail("a@example.test", &["b@remote.test"], body).starts_with("250"));
    let quarantined = || s.get_json("/api/v1/quarantine")["items"].as_array().unwrap().clone();
    assert!(wait_until(Duration::from_secs(20), || quarantined().len() == 1 && delivered(&sink, "clean")));
    assert_eq!(quarantined()[0]["verdict"], "virus Eicar-Test in message");
    assert!(!delivered(&sink, "infected"));
}

#[test]
fn an_engine_that_never_answers_or_answers_garbage_is_offline_and_intake_goes_on() {
    for (mode, reason) in [(Mode::Silent, "no answer within 1 second"), (Mode::Garbage, "unexpected answer")] {
        let sink = Sink::start();
        let port = free_port();
        let _clamd = FakeClamd::start(port, mode);
        let s = Server::start(&config(sink.port, port, ""));
        let started = Instant::now();
        for i in 0..5 {
            send(&s, &format!("m{i}"));
        }
        // Scanning is after queueing: five messages are taken while the engine does not answer.
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(wait_until(Duration::from_secs(20), || antivirus(&s)["state"] == "Offline"), "{}", antivirus(&s));
        let why = antivirus(&s)["reason"].as_str().unwrap().to_owned();
        assert!(why.contains(reason), "{why}");
        assert!(holds_for(Duration::from_millis(500), || sink.count() == 0));
    }
}

#[test]
fn on_engine_failure_pass_lets_mail_through_stamped_unscanned() {
    let sink = Sink::start();
    // Nobody listens there.
    let port = free_port();
    let s = Server::start(&config(sink.port, port, "[work_queue]\non_engine_failure = \"pass\"\n"));
    send(&s, "passed");
    assert!(wait_until(Duration::from_secs(20), || delivered(&sink, "passed")), "{}", s.log());
    let messages = sink.messages.lock().unwrap();
    let m = String::from_utf8_lossy(&messages[0]).into_owned();
    assert!(m.contains("X-Sluice-Scan: unscanned (engine failure)\r\n"), "{m}");
    drop(messages);
    assert_eq!(antivirus(&s)["state"], "Offline");
    assert!(alerts(&s).iter().any(|a| a.starts_with("antivirus engine offline") && a.contains("pass unscanned")));
}
