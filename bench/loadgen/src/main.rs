//! Offered load for B2 (docs/benchmarks.md): `connections` SMTP sessions send 4 KB messages on a fixed schedule (open
//! loop: a late message is sent at once, never skipped), and the time from writing the end of data to reading
//! the `250` is recorded. Also measures the fdatasync latency of the disk under a given directory, as the
//! floor to compare with.
//!
//! The queue database modes (B3) are in `qdb.rs`.
//!
//! ```text
//! sluice-loadgen smtp ADDR RATE SECONDS CONNECTIONS SIZE [DIR]
//!     -> "p50_ms p99_ms p999_ms sent [fsync_p50_ms fsync_p99_ms fsync_count]"
//! ```
//!
//! With DIR, a probe thread writes 4 KB and fdatasyncs a file in DIR every 10 ms during the load, so that
//! the floor is measured under the same disk conditions as the latencies (shared machines' disks stall now
//! and then; a floor measured a minute earlier would not show it).
//!
//! ```text
//! ```

mod qdb;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

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

fn session(addr: String, interval: Duration, start: Instant, end: Instant, size: usize) -> std::io::Result<Vec<f64>> {
    let s = TcpStream::connect(&addr)?;
    s.set_nodelay(true)?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    reply(&mut r)?;
    w.write_all(b"EHLO loadgen.test\r\n")?;
    reply(&mut r)?;
    let body = format!("Subject: load\r\n\r\n{}\r\n", "x".repeat(size.saturating_sub(20)));
    let mut lat = Vec::new();
    let mut next = start;
    while next < end {
        sleep_until(next);
        next += interval;
        w.write_all(b"MAIL FROM:<load@source.test>\r\nRCPT TO:<rcpt@sink.test>\r\nDATA\r\n")?;
        let codes = (reply(&mut r)?, reply(&mut r)?, reply(&mut r)?);
        if codes != (250, 250, 354) {
            return Err(std::io::Error::other(format!("unexpected replies {codes:?}")));
        }
        w.write_all(body.as_bytes())?;
        let t = Instant::now();
        w.write_all(b".\r\n")?;
        let code = reply(&mut r)?;
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        if code != 250 {
            return Err(std::io::Error::other(format!("DATA answered {code}")));
        }
        lat.push(ms);
    }
    w.write_all(b"QUIT\r\n")?;
    Ok(lat)
}

fn smtp(args: &[String]) -> Result<(), String> {
    let (args, probe_dir) = match args {
        [a @ .., dir] if a.len() == 5 => (a, Some(dir.clone())),
        a => (a, None),
    };
    let [addr, rate, secs, conns, size] = args else {
        return Err("smtp ADDR RATE SECONDS CONNECTIONS SIZE [DIR]".into());
    };
    let parse = |s: &str| s.parse::<f64>().map_err(|e| format!("{s}: {e}"));
    let (rate, secs, conns, size) = (parse(rate)?, parse(secs)?, parse(conns)? as usize, parse(size)? as usize);
    let interval = Duration::from_secs_f64(conns as f64 / rate);
    let start = Instant::now() + Duration::from_millis(200);
    let end = start + Duration::from_secs_f64(secs);
    let threads: Vec<_> = (0..conns)
        .map(|i| {
            let addr = addr.clone();
            // Spread the sessions' schedules evenly over one interval.
            let offset = interval.mul_f64(i as f64 / conns as f64);
            std::thread::spawn(move || session(addr, interval, start + offset, end, size))
        })
        .collect();
    let probe = probe_dir.map(|dir| std::thread::spawn(move || fsync_probe(&dir, start, end)));
    let mut all = Vec::new();
    for t in threads {
        all.extend(t.join().map_err(|_| "a session panicked".to_string())?.map_err(|e| e.to_string())?);
    }
    all.sort_by(f64::total_cmp);
    print!("{:.3} {:.3} {:.3} {}", percentile(&all, 0.5), percentile(&all, 0.99), percentile(&all, 0.999), all.len());
    if let Some(p) = probe {
        let mut lat = p.join().map_err(|_| "the fsync probe panicked".to_string())??;
        lat.sort_by(f64::total_cmp);
        print!(" {:.3} {:.3} {}", percentile(&lat, 0.5), percentile(&lat, 0.99), lat.len());
    }
    println!();
    Ok(())
}

fn fsync_probe(dir: &str, start: Instant, end: Instant) -> Result<Vec<f64>, String> {
    let path = std::path::Path::new(dir).join(".loadgen-probe");
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let block = vec![b'x'; 4096];
    let mut lat = Vec::new();
    let mut next = start;
    while next < end {
        sleep_until(next);
        next += Duration::from_millis(10);
        f.write_all(&block).map_err(|e| e.to_string())?;
        let t = Instant::now();
        f.sync_data().map_err(|e| e.to_string())?;
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    Ok(lat)
}

/// Open-loop scheduling: waits for `at` if it is still ahead; a late slot runs at once.
fn sleep_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("smtp") => smtp(&args[1..]),
        Some("qdb") => qdb::qdb(&args[1..]),
        Some("plain") => qdb::plain(&args[1..]),
        Some("seq") => qdb::seq(&args[1..]),
        Some("frames") => qdb::frames(&args[1..]),
        _ => Err("usage: sluice-loadgen smtp ADDR RATE SECONDS CONNECTIONS SIZE [DIR] | \
                  qdb DIR WRITERS SECONDS SIZE | plain DIR SECONDS SIZE | seq DIR MB | frames DIR SECONDS BYTES FILES"
            .into()),
    };
    if let Err(e) = result {
        eprintln!("sluice-loadgen: {e}");
        std::process::exit(1);
    }
}
