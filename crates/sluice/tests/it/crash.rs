//! SIGKILL under load (spec 09 R1, CI size): inject messages over SMTP from several clients while the
//! server is killed with SIGKILL at random moments and restarted; at the end every message that got `250`
//! must have been delivered (duplicates are allowed only for messages in flight at a kill).
//!
//! `SLUICE_KILL_MESSAGES` (default 2000) and `SLUICE_KILL_CYCLES` (default 6) size the run.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Reads one reply; its first line's code.
fn reply(r: &mut BufReader<TcpStream>) -> std::io::Result<u16> {
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            return line.get(..3).and_then(|c| c.parse().ok()).ok_or_else(|| std::io::ErrorKind::InvalidData.into());
        }
    }
}

/// One session: sends messages with ids from `next` until the connection fails or all are taken.
/// Returns the ids acknowledged with 250.
fn inject(port: u16, next: &AtomicUsize, total: usize, acked: &Mutex<BTreeSet<usize>>) -> std::io::Result<()> {
    let s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    if reply(&mut r)? != 220 {
        return Err(std::io::ErrorKind::Other.into());
    }
    w.write_all(b"EHLO injector.test\r\n")?;
    reply(&mut r)?;
    let body = "x".repeat(4000);
    loop {
        let id = next.fetch_add(1, Ordering::Relaxed);
        if id >= total {
            return Ok(());
        }
        w.write_all(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<b@remote.test>\r\nDATA\r\n")?;
        let (m, rc, d) = (reply(&mut r)?, reply(&mut r)?, reply(&mut r)?);
        if (m, rc, d) != (250, 250, 354) {
            return Err(std::io::ErrorKind::Other.into());
        }
        w.write_all(format!("Subject: k-{id}\r\n\r\n{body}\r\n.\r\n").as_bytes())?;
        if reply(&mut r)? == 250 {
            acked.lock().unwrap().insert(id);
        }
    }
}

#[test]
fn sigkill_during_injection_loses_nothing_acknowledged() {
    let total = env("SLUICE_KILL_MESSAGES", 2000);
    let cycles = env("SLUICE_KILL_CYCLES", 6);
    let sink = Sink::start();
    let mut s = Server::start(&format!(
        "[transport]\ntransient_failure_retry_interval = \"1s\"\n\n[[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{}\"]\n",
        sink.port
    ));
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let done = Arc::new(AtomicBool::new(false));
    let port = s.smtp;
    let injectors: Vec<_> = (0..8)
        .map(|_| {
            let (next, acked, done) = (next.clone(), acked.clone(), done.clone());
            std::thread::spawn(move || {
                while next.load(Ordering::Relaxed) < total && !done.load(Ordering::Relaxed) {
                    if inject(port, &next, total, &acked).is_err() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    let mut seed = Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64 | 1;
    let mut kills = 0;
    let started = Instant::now();
    while kills < cycles && next.load(Ordering::Relaxed) < total && started.elapsed() < Duration::from_secs(120) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 400));
        s.kill9();
        kills += 1;
        s.spawn();
    }
    for t in injectors {
        t.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let acked = acked.lock().unwrap().clone();
    let all_delivered = wait_until(Duration::from_secs(90), || {
        let got = sink.subjects.lock().unwrap();
        acked.iter().all(|id| got.contains_key(&format!("k-{id}")))
    });
    let got = sink.subjects.lock().unwrap().clone();
    let lost: Vec<usize> = acked.iter().copied().filter(|id| !got.contains_key(&format!("k-{id}"))).collect();
    let duplicated = got.values().filter(|n| **n > 1).count();
    eprintln!(
        "R1 (CI size): {kills} SIGKILLs, {} messages attempted, {} acknowledged, {} delivered, {duplicated} duplicated, {} lost",
        next.load(Ordering::Relaxed).min(total),
        acked.len(),
        got.len(),
        lost.len()
    );
    assert!(kills >= 1, "the server was never killed");
    assert!(all_delivered && lost.is_empty(), "lost acknowledged messages: {lost:?}\n{}", s.log());
    assert!(acked.len() >= total / 2, "too few messages acknowledged to mean anything: {}", acked.len());
}
