//! SIGKILL under load (R1 in docs/benchmarks.md, CI size): inject messages over SMTP from several clients while the
//! server is killed with SIGKILL at random moments and restarted; at the end every message that got `250`
//! must have been delivered (duplicates are allowed only for messages in flight at a kill).
//!
//! `SLUICE_KILL_MESSAGES` (default 3000) and `SLUICE_KILL_CYCLES` (default 20) size the run; the documented
//! long run is `SLUICE_KILL_CYCLES=200 SLUICE_KILL_MESSAGES=30000` (see `tests/reliability/r1.sh`).

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
fn inject(port: u16, next: &AtomicUsize, done: &AtomicBool, acked: &Mutex<BTreeSet<usize>>) -> std::io::Result<()> {
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
        if done.load(Ordering::Relaxed) {
            return Ok(());
        }
        let id = next.fetch_add(1, Ordering::Relaxed);
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
    let total = env("SLUICE_KILL_MESSAGES", 3000);
    let cycles = env("SLUICE_KILL_CYCLES", 20);
    let sink = Sink::start();
    // Every kill lands while messages are in process, so poison detection blames them, and a message in
    // process alone (a suspect) at two kills would go to Poison at the default threshold of 2, rightly by
    // its rules: the server cannot tell these kills from crashes. This test is about durability, so the
    // threshold is the highest; the poison tests are in `poison.rs`.
    let mut s = Server::start(&format!(
        "[transport]\npoison_threshold = 10\nqueue_glitch_retry_interval = \"1s\"\ntransient_failure_retry_interval = \"1s\"\noutbound_connection_failure_retry_interval = \"1s\"\nmessage_retry_interval = \"1s\"\n\n[[send_connectors]]\nname = \"Sink\"\naddress_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{}\"]\n",
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
                while !done.load(Ordering::Relaxed) {
                    if inject(port, &next, &done, &acked).is_err() {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })
        })
        .collect();
    let mut seed = Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64 | 1;
    let mut kills = 0;
    let started = Instant::now();
    // Kills come every 50-250 ms so that the cycles land during the injection; a kill after the injection
    // ended would test recovery without load, which the queue database tests cover.
    // The injection goes on until every kill happened and at least `total` messages were attempted.
    while (kills < cycles || next.load(Ordering::Relaxed) < total) && started.elapsed() < Duration::from_secs(600) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(50 + seed % 200));
        if kills < cycles {
            s.kill9();
            kills += 1;
            s.spawn();
        }
    }
    done.store(true, Ordering::Relaxed);
    for t in injectors {
        t.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    // Wait until every acknowledged message arrived, or until the server has nothing left queued (then
    // whatever is missing is lost); large runs need time to drain their backlog.
    let mut empty_checks = 0;
    let all_delivered = wait_until(Duration::from_secs(900), || {
        let got = sink.subjects.lock().unwrap();
        if acked.iter().all(|id| got.contains_key(&format!("k-{id}"))) {
            return true;
        }
        drop(got);
        empty_checks = if s.queued() == 0 { empty_checks + 1 } else { 0 };
        empty_checks >= 40
    }) && {
        let got = sink.subjects.lock().unwrap();
        acked.iter().all(|id| got.contains_key(&format!("k-{id}")))
    };
    let got = sink.subjects.lock().unwrap().clone();
    let lost: Vec<usize> = acked.iter().copied().filter(|id| !got.contains_key(&format!("k-{id}"))).collect();
    let duplicated = got.values().filter(|n| **n > 1).count();
    eprintln!(
        "R1: {kills} SIGKILLs, {} messages attempted, {} acknowledged, {} delivered, {duplicated} duplicated, {} lost",
        next.load(Ordering::Relaxed),
        acked.len(),
        got.len(),
        lost.len()
    );
    assert!(kills >= cycles.min(20), "only {kills} kills happened before the injection ended");
    let shown: Vec<usize> = lost.iter().copied().take(50).collect();
    assert!(all_delivered && lost.is_empty(), "{} acknowledged messages lost, first {shown:?}", lost.len());
    assert!(acked.len() >= total / 2, "too few messages acknowledged to mean anything: {}", acked.len());
}
