//! The group-commit writer: one thread owns the append ends of the log and the current generation.
//! Transactions queue on a bounded channel; the writer takes what has queued (up to `batch_size`), writes
//! the bodies, fdatasyncs the generation, writes one log frame, fdatasyncs the log, and only then answers.
//! Transactions that nobody waits for (routing, delivery outcomes) ride along with the next durable one or
//! are flushed after `batch_timeout`; a lone durable commit on an idle database is flushed at once.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::generation;
use crate::log::encode_frame;
use crate::record::{BodyRef, Envelope, Mid, QueueId, Record};
use crate::storage::{Storage, StorageFile};
use crate::time::now_ms;
use crate::{CommitError, MID_HEADROOM};

pub(crate) enum Op {
    Enqueue {
        mid: Mid,
        queue: QueueId,
        envelope: Box<Envelope>,
        body: Vec<u8>,
        reply: oneshot::Sender<Result<BodyRef, CommitError>>,
    },
    Commit {
        records: Vec<Record>,
        reply: Option<oneshot::Sender<Result<(), CommitError>>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
}

/// A flush slower than this is logged: it delays every SMTP client waiting for its 250.
const SLOW_FLUSH: Duration = Duration::from_millis(20);

/// The log grows by this much zero-filled space at a time.
const LOG_PREALLOCATION: u64 = 1 << 20;

/// Generation files open for reading, shared with the readers of bodies.
pub(crate) type Generations = Arc<RwLock<HashMap<u32, (String, Arc<dyn StorageFile>)>>>;

struct CurrentGeneration {
    number: u32,
    file: Arc<dyn StorageFile>,
    end: u64,
    opened: Instant,
}

pub(crate) struct Writer {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) log: Box<dyn StorageFile>,
    pub(crate) log_end: u64,
    /// Bytes of the log file allocated (zero-filled) so far.
    log_allocated: u64,
    pub(crate) salt: u64,
    pub(crate) seq: u64,
    pub(crate) next_generation: u32,
    pub(crate) generations: Generations,
    pub(crate) generation_interval: Duration,
    pub(crate) batch_size: usize,
    pub(crate) batch_timeout: Duration,
    pub(crate) high_water: Mid,
    current: Option<CurrentGeneration>,
    failed: Option<String>,
    syncer: Syncer,
}

/// A thread that fdatasyncs a generation file while the writer syncs the log.
struct Syncer {
    tx: std::sync::mpsc::SyncSender<Arc<dyn StorageFile>>,
    done: std::sync::mpsc::Receiver<std::io::Result<()>>,
}

impl Syncer {
    fn spawn() -> std::io::Result<Syncer> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<dyn StorageFile>>(1);
        let (done_tx, done) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new().name("queue-db-syncer".into()).spawn(move || {
            for file in rx {
                if done_tx.send(file.sync_data()).is_err() {
                    return;
                }
            }
        })?;
        Ok(Syncer { tx, done })
    }

    /// Starts a sync; false when the thread is gone.
    fn start(&self, file: Arc<dyn StorageFile>) -> bool {
        self.tx.send(file).is_ok()
    }

    fn wait(&self) -> std::io::Result<()> {
        self.done.recv().unwrap_or_else(|_| Err(std::io::Error::other("the generation syncer stopped")))
    }
}

/// What one flush needs to answer.
enum Waiter {
    Body(oneshot::Sender<Result<BodyRef, CommitError>>, BodyRef),
    Done(oneshot::Sender<Result<(), CommitError>>),
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        log: Box<dyn StorageFile>,
        log_end: u64,
        salt: u64,
        seq: u64,
        next_generation: u32,
        generations: Generations,
        generation_interval: Duration,
        batch_size: usize,
        batch_timeout: Duration,
        high_water: Mid,
    ) -> std::io::Result<Writer> {
        Ok(Writer {
            storage,
            log,
            log_end,
            log_allocated: log_end,
            salt,
            seq,
            next_generation,
            generations,
            generation_interval,
            batch_size: batch_size.max(1),
            batch_timeout,
            high_water,
            current: None,
            failed: None,
            syncer: Syncer::spawn()?,
        })
    }

    /// Runs until the channel closes or a `Close` arrives.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        // A small runtime of its own only to wait on the channel with a timeout; all file I/O is blocking,
        // on this thread.
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "queue database writer could not start");
                return;
            }
        };
        let mut batch: Vec<Op> = Vec::with_capacity(self.batch_size);
        let mut lazy_since: Option<Instant> = None;
        loop {
            let next = match lazy_since {
                None => rt.block_on(rx.recv()),
                Some(t) => {
                    let deadline = tokio::time::Instant::from_std(t + self.batch_timeout);
                    match rt.block_on(async { tokio::time::timeout_at(deadline, rx.recv()).await }) {
                        Ok(op) => op,
                        Err(_elapsed) => {
                            self.flush(&mut batch);
                            lazy_since = None;
                            continue;
                        }
                    }
                }
            };
            let Some(op) = next else {
                self.flush(&mut batch);
                return;
            };
            if let Op::Close { reply } = op {
                self.flush(&mut batch);
                let _ = reply.send(());
                return;
            }
            batch.push(op);
            while batch.len() < self.batch_size {
                match rx.try_recv() {
                    Ok(Op::Close { reply }) => {
                        self.flush(&mut batch);
                        let _ = reply.send(());
                        return;
                    }
                    Ok(op) => batch.push(op),
                    Err(_) => break,
                }
            }
            let durable = batch.iter().any(|op| !matches!(op, Op::Commit { reply: None, .. }));
            let overdue = lazy_since.is_some_and(|t| t.elapsed() >= self.batch_timeout);
            if durable || overdue || batch.len() >= self.batch_size {
                self.flush(&mut batch);
                lazy_since = None;
            } else if lazy_since.is_none() {
                lazy_since = Some(Instant::now());
            }
        }
    }

    fn flush(&mut self, batch: &mut Vec<Op>) {
        if batch.is_empty() {
            return;
        }
        let mut bodies = Vec::new();
        let mut records = Vec::new();
        let mut count = 0u32;
        let mut waiters = Vec::with_capacity(batch.len());
        let mut max_mid = None;
        let started = Instant::now();
        let ops = batch.len();
        let result = self.prepare(batch, &mut bodies, &mut records, &mut count, &mut waiters, &mut max_mid);
        let result = result.and_then(|()| {
            if let Some(mid) = max_mid
                && mid + MID_HEADROOM / 2 >= self.high_water
            {
                self.high_water = mid + MID_HEADROOM;
                Record::MidHighWater { next: self.high_water }.encode(&mut records);
                count += 1;
            }
            self.write(&bodies, &records, count)
        });
        let took = started.elapsed();
        if took > SLOW_FLUSH {
            tracing::warn!(ms = took.as_millis() as u64, ops, body_bytes = bodies.len(), "slow queue database commit");
        }
        match result {
            Ok(()) => {
                for w in waiters {
                    match w {
                        Waiter::Body(tx, body) => drop(tx.send(Ok(body))),
                        Waiter::Done(tx) => drop(tx.send(Ok(()))),
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "queue database commit failed");
                for w in waiters {
                    match w {
                        Waiter::Body(tx, _) => drop(tx.send(Err(e.clone()))),
                        Waiter::Done(tx) => drop(tx.send(Err(e.clone()))),
                    }
                }
            }
        }
    }

    fn prepare(
        &mut self,
        batch: &mut Vec<Op>,
        bodies: &mut Vec<u8>,
        records: &mut Vec<u8>,
        count: &mut u32,
        waiters: &mut Vec<Waiter>,
        max_mid: &mut Option<Mid>,
    ) -> Result<(), CommitError> {
        let mut failure = self.failed.clone().map(CommitError::Failed);
        if failure.is_none()
            && batch.iter().any(|op| matches!(op, Op::Enqueue { .. }))
            && let Err(e) = self.ensure_generation()
        {
            failure = Some(e);
        }
        for op in batch.drain(..) {
            match op {
                Op::Enqueue { mid, queue, envelope, body, reply } => {
                    let Some(current) = self.current.as_ref().filter(|_| failure.is_none()) else {
                        let _ = reply.send(Err(failure.clone().unwrap_or(CommitError::Closed)));
                        continue;
                    };
                    let at = current.end + bodies.len() as u64;
                    let body_ref = generation::encode_body(current.number, at, mid, &body, bodies);
                    Record::Enqueue { mid, queue, envelope: *envelope, body: body_ref }.encode(records);
                    *count += 1;
                    *max_mid = Some(max_mid.map_or(mid, |m: Mid| m.max(mid)));
                    waiters.push(Waiter::Body(reply, body_ref));
                }
                Op::Commit { records: recs, reply } => {
                    if let Some(f) = &failure {
                        if let Some(tx) = reply {
                            let _ = tx.send(Err(f.clone()));
                        }
                        continue;
                    }
                    for r in &recs {
                        r.encode(records);
                    }
                    *count += recs.len() as u32;
                    if let Some(tx) = reply {
                        waiters.push(Waiter::Done(tx));
                    }
                }
                Op::Close { reply } => drop(reply.send(())),
            }
        }
        Ok(())
    }

    fn write(&mut self, bodies: &[u8], records: &[u8], count: u32) -> Result<(), CommitError> {
        if count == 0 {
            return Ok(());
        }
        // The generation's fdatasync runs on the syncer thread while this thread writes and syncs the log
        // frame, so a commit waits for one sync, not two in a row. The frame may thus become durable before
        // the bodies it refers to; only the last frame can be in that state (the next frame is written after
        // both syncs), and recovery checks that frame's bodies (see `docs/queue-database.md`).
        let mut gen_sync = false;
        if !bodies.is_empty() {
            let current = self.current.as_mut().ok_or(CommitError::Closed)?;
            if let Err(e) = current.file.write_at(bodies, current.end) {
                // The bytes past `end` are garbage nothing refers to; the next body overwrites them.
                return Err(self.fail(format!("writing a generation file: {e}")));
            }
            current.end += bodies.len() as u64;
            gen_sync = self.syncer.start(current.file.clone());
            if !gen_sync {
                return Err(self.fail("the generation syncer stopped".to_owned()));
            }
        }
        let mut frame = Vec::with_capacity(records.len() + 32);
        encode_frame(self.salt, self.seq, count, records, &mut frame);
        let logged = self
            .preallocate_log(frame.len() as u64)
            .and_then(|()| self.log.write_at(&frame, self.log_end))
            .and_then(|()| self.log.sync_data());
        let synced = if gen_sync { self.syncer.wait() } else { Ok(()) };
        if let Err(e) = logged {
            // A failed fsync leaves the page cache in an unknown state (the kernel may have dropped the
            // dirty pages): stop committing until a restart recovers from what is on disk.
            let _ = self.log.set_len(self.log_end);
            return Err(self.fail(format!("writing the transaction log: {e}")));
        }
        if let Err(e) = synced {
            return Err(self.fail(format!("syncing a generation file: {e}")));
        }
        self.log_end += frame.len() as u64;
        self.seq += 1;
        Ok(())
    }

    /// Keeps zero-filled space ahead of the log's end, so that most frames overwrite allocated blocks and
    /// their fdatasync flushes data only, without a journal commit for a new file size. Recovery reads the
    /// zeros as the end of the log.
    fn preallocate_log(&mut self, needed: u64) -> std::io::Result<()> {
        if self.log_end + needed <= self.log_allocated {
            return Ok(());
        }
        let target = (self.log_end + needed).next_multiple_of(LOG_PREALLOCATION) + LOG_PREALLOCATION;
        let zeros = vec![0u8; 64 * 1024];
        let mut at = self.log_allocated.max(self.log_end);
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.log.write_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.log_allocated = target;
        Ok(())
    }

    fn fail(&mut self, why: String) -> CommitError {
        self.failed = Some(why.clone());
        CommitError::Failed(why)
    }

    /// Opens the current generation, or a new one when the interval has passed.
    fn ensure_generation(&mut self) -> Result<(), CommitError> {
        if self.current.as_ref().is_some_and(|g| g.opened.elapsed() < self.generation_interval) {
            return Ok(());
        }
        let number = self.next_generation;
        let created = now_ms();
        let name = generation::file_name(number, created);
        let opened = (|| {
            let file: Arc<dyn StorageFile> = Arc::from(self.storage.open(&name, true)?);
            let header = generation::encode_header(number, created);
            file.set_len(0)?;
            file.write_at(&header, 0)?;
            file.sync_data()?;
            self.storage.sync_dir()?;
            Ok::<_, std::io::Error>(file)
        })();
        let file = opened.map_err(|e| self.fail(format!("creating generation {name}: {e}")))?;
        self.next_generation += 1;
        if let Ok(mut gens) = self.generations.write() {
            gens.insert(number, (name, file.clone()));
        }
        self.current =
            Some(CurrentGeneration { number, file, end: generation::GEN_HEADER_LEN, opened: Instant::now() });
        Ok(())
    }
}
