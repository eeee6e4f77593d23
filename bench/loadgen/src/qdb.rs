//! B3: the queue database alone, and the disk under it.
//!
//! `qdb DIR WRITERS SECONDS SIZE` -> "commits_per_s bytes_per_s mean_batch": WRITERS tasks each enqueue
//! SIZE-byte bodies durably, one after another, for SECONDS.
//! `plain DIR SECONDS SIZE` -> "commits_per_s": a single writer's `write + fdatasync` loop, appending.
//! `seq DIR MB` -> "mb_per_s": one large sequential write of MB MiB and one fdatasync (in MB/s of 10^6 bytes,
//! like the other figures).
//! `frames DIR SECONDS BYTES FILES` -> "mb_per_s": FILES threads, each appending BYTES and fdatasyncing its
//! own file in a loop: what a group commit writing frames of BYTES, FILES at a time, could do at best.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use sluice_queue_db::{Envelope, EnvelopeParts, FsStorage, Options, QueueDb, Recipient, SUBMISSION};

fn num(s: &str) -> Result<f64, String> {
    s.parse::<f64>().map_err(|e| format!("{s}: {e}"))
}

pub fn qdb(args: &[String]) -> Result<(), String> {
    let [dir, writers, secs, size] = args else { return Err("qdb DIR WRITERS SECONDS SIZE".into()) };
    let (writers, secs, size) = (num(writers)? as usize, num(secs)?, num(size)? as usize);
    let dir = std::path::Path::new(dir).join(format!("qdb-{writers}"));
    let _ = std::fs::remove_dir_all(&dir);
    let storage = FsStorage::new(&dir).map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let result = rt.block_on(async move {
        let (db, _, _) = QueueDb::open(Arc::new(storage), Options::default()).map_err(|e| e.to_string())?;
        let end = Instant::now() + Duration::from_secs_f64(secs);
        let start = Instant::now();
        let (f0, o0) = (db.stats().flushes.load(Ordering::Relaxed), db.stats().operations.load(Ordering::Relaxed));
        let tasks: Vec<_> = (0..writers)
            .map(|_| {
                let db = db.clone();
                tokio::spawn(async move {
                    let body = vec![b'x'; size];
                    let mut n = 0u64;
                    while Instant::now() < end {
                        let mid = db.allocate_mid();
                        let env = Envelope::from(EnvelopeParts {
                            from: "bench@source.test".into(),
                            recipients: vec![Recipient { address: "rcpt@sink.test".into(), notify: None, orcpt: None }],
                            ..EnvelopeParts::default()
                        });
                        db.enqueue(mid, SUBMISSION, env, body.clone()).await.map_err(|e| e.to_string())?;
                        n += 1;
                    }
                    Ok::<u64, String>(n)
                })
            })
            .collect();
        let mut commits = 0;
        for t in tasks {
            commits += t.await.map_err(|e| e.to_string())??;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let flushes = db.stats().flushes.load(Ordering::Relaxed) - f0;
        let ops = db.stats().operations.load(Ordering::Relaxed) - o0;
        db.close().await;
        Ok::<_, String>((commits as f64 / elapsed, ops as f64 / flushes.max(1) as f64))
    });
    let _ = std::fs::remove_dir_all(&dir);
    let (rate, batch) = result?;
    println!("{rate:.1} {:.1} {batch:.2}", rate * size as f64);
    Ok(())
}

pub fn plain(args: &[String]) -> Result<(), String> {
    let [dir, secs, size] = args else { return Err("plain DIR SECONDS SIZE".into()) };
    let (secs, size) = (num(secs)?, num(size)? as usize);
    let (n, elapsed) = sync_loop(&std::path::Path::new(dir).join(".plain-loop"), size, secs)?;
    println!("{:.1}", n as f64 / elapsed);
    Ok(())
}

/// Appends `bytes` and fdatasyncs, again and again for `secs`, in a new file at `path` (removed after):
/// how many times, in how long.
fn sync_loop(path: &std::path::Path, bytes: usize, secs: f64) -> Result<(u64, f64), String> {
    let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
    let block = vec![b'x'; bytes];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f.write_all(&block).map_err(|e| e.to_string())?;
        f.sync_data().map_err(|e| e.to_string())?;
        n += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(path);
    Ok((n, elapsed))
}

pub fn seq(args: &[String]) -> Result<(), String> {
    let [dir, mb] = args else { return Err("seq DIR MB".into()) };
    let mb = num(mb)? as usize;
    let path = std::path::Path::new(dir).join(".seq-write");
    let mut f = std::fs::File::create(&path).map_err(|e| e.to_string())?;
    let block = vec![b'x'; 1 << 20];
    let start = Instant::now();
    for _ in 0..mb {
        f.write_all(&block).map_err(|e| e.to_string())?;
    }
    f.sync_data().map_err(|e| e.to_string())?;
    let rate = (mb << 20) as f64 / 1e6 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_file(&path);
    println!("{rate:.1}");
    Ok(())
}

pub fn frames(args: &[String]) -> Result<(), String> {
    let [dir, secs, bytes, files] = args else { return Err("frames DIR SECONDS BYTES FILES".into()) };
    let (secs, bytes, files) = (num(secs)?, num(bytes)? as usize, num(files)? as usize);
    let threads: Vec<_> = (0..files)
        .map(|i| {
            let path = std::path::Path::new(dir).join(format!(".frames-{i}"));
            std::thread::spawn(move || sync_loop(&path, bytes, secs).map(|(n, _)| n))
        })
        .collect();
    let mut total = 0;
    for t in threads {
        total += t.join().map_err(|_| "a loop panicked".to_owned())??;
    }
    println!("{:.1}", (total as usize * bytes) as f64 / 1e6 / secs);
    Ok(())
}
