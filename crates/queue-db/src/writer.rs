//! The group-commit writer: one thread owns the append ends of the log and the current generations.
//! Transactions queue on a bounded channel; the writer takes what has queued (up to `batch_size`), writes
//! one frame — into a current generation when the batch stores bodies (bodies and records together), into
//! the log otherwise — and hands its fdatasync to a sync thread.
//!
//! Up to [`IN_FLIGHT`] frames are being synced at once, each in a file of its own: while one generation
//! file syncs, the next batch is written into the other generation "lane" (or the log) and synced beside
//! it, so that the disk works on two flushes at a time. A frame is answered only once it and every frame
//! before it (by sequence) are durable; its records are applied to the state in the same order. Recovery
//! drops a frame that was durable ahead of an earlier one that was not (it was never answered).
//!
//! Transactions that nobody waits for (routing, delivery outcomes) ride along with the next durable one or
//! are flushed after `batch_timeout`; a lone durable commit on an idle database is flushed at once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::Cursor;
use crate::generation;
use crate::log::{FRAME_BODIES_AT, LOG_HEADER_LEN, finish_frame};
use crate::record::{BodyRef, Envelope, Mid, QueueId, Record};
use crate::state::State;
use crate::storage::{Storage, StorageFile, is_disk_full};
use crate::time::now_ms;
use crate::{CommitError, MID_HEADROOM};

pub(crate) enum Op {
    Enqueue {
        mid: Mid,
        queue: QueueId,
        envelope: Arc<Envelope>,
        body: crate::Body,
        reply: oneshot::Sender<Result<BodyRef, CommitError>>,
    },
    Commit {
        records: Vec<Record>,
        reply: Option<oneshot::Sender<Result<(), CommitError>>>,
    },
    Close {
        reply: oneshot::Sender<()>,
    },
    /// Drop Safety Net copies, oldest first, until `want_free` bytes are free (disk pressure).
    EvictSafetyNet {
        want_free: u64,
        reply: oneshot::Sender<crate::Eviction>,
    },
    /// Online defragmentation until the deadline.
    Defrag {
        deadline: Instant,
        reply: oneshot::Sender<crate::DefragReport>,
    },
}

/// Frames being synced at once, at most one per file. Recovery relies on this bound: after a crash, at most
/// `IN_FLIGHT - 1` frames can be durable past the first missing one, each the last frame of its file.
pub(crate) const IN_FLIGHT: usize = 2;

/// Generation files that take bodies at the same time, so that two frames with bodies can sync at once.
/// Recovery accepts a torn tail in the newest `LANES` generations only.
pub(crate) const LANES: usize = 2;

/// A flush slower than this is logged: it delays every SMTP client waiting for its 250.
const SLOW_FLUSH: Duration = Duration::from_millis(20);

/// The log grows by this much zero-filled space at a time.
const LOG_PREALLOCATION: u64 = 1 << 20;

/// A generation file is extended by this much zero-filled space at a time while flushes are small.
const GEN_PREALLOCATION: u64 = 512 << 10;
/// Flushes smaller than this extend the generation ahead of them with zeros: their fdatasync then finds the
/// blocks allocated and the size unchanged and costs a data flush without a journal commit (about a third
/// less on ext4 here). Larger flushes are bound by bandwidth, which writing every byte twice would halve.
const PREALLOCATE_BELOW: usize = 64 << 10;

/// A flush takes no more bodies once it holds this many bytes of them; the rest go in the next flush. It
/// bounds the writer's memory: a frame is built whole before it is written (a single larger body makes a
/// frame of its own).
const MAX_FLUSH_BODIES: usize = 16 << 20;

/// While a frame is syncing, the next one waits for the clients just answered to send their next commits:
/// until none has come for this long (or the batch is full, or `GATHER_AT_MOST` has passed). A frame of
/// one commit beside a syncing one would take a whole sync for little.
const GATHER_QUIET: Duration = Duration::from_micros(50);
const GATHER_AT_MOST: Duration = Duration::from_micros(500);

/// Generation files open for reading, shared with the readers of bodies.
pub(crate) type Generations = Arc<RwLock<HashMap<u32, (String, Arc<dyn StorageFile>)>>>;

struct CurrentGeneration {
    number: u32,
    file: Arc<dyn StorageFile>,
    /// The salt of its frames' checksums.
    salt: u64,
    end: u64,
    /// Written so far, the zero-filled space ahead of `end` included.
    allocated: u64,
    opened: Instant,
}

/// A generation file created ahead of need (header written and synced, directory synced), so that opening
/// a generation never puts a file creation and two syncs in front of a waiting client.
struct Spare {
    number: u32,
    name: String,
    file: Arc<dyn StorageFile>,
    salt: u64,
}

/// The file a frame goes into.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    Log,
    /// A generation lane (an index into `Writer::lanes`).
    Lane(usize),
}

/// A frame written and handed to a sync thread, waiting to be answered in sequence order.
struct InFlight {
    seq: u64,
    target: Target,
    /// The sync's outcome, once it is known.
    done: Option<std::io::Result<()>>,
    waiters: Vec<Waiter>,
    /// The records, applied to the state once they are durable.
    applied: Vec<Record>,
    /// The MID high-water mark the frame raises to.
    high_water: Option<Mid>,
    ops: usize,
    bytes: usize,
    started: Instant,
}

/// A frame just written: its sequence, its file, and its sync's outcome if it was synced already.
struct Written {
    seq: u64,
    target: Target,
    done: Option<std::io::Result<()>>,
}

struct SyncJob {
    seq: u64,
    file: Arc<dyn StorageFile>,
}

struct Synced {
    seq: u64,
    result: std::io::Result<()>,
}

/// What the writer starts with, from recovery and the options.
pub(crate) struct WriterInit {
    pub(crate) stats: Arc<crate::Stats>,
    pub(crate) disk_full: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) stopped: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) relocated: crate::Relocations,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) log: Box<dyn StorageFile>,
    pub(crate) log_end: u64,
    pub(crate) salt: u64,
    /// The next frame's sequence, also the first frame of the (empty) active log.
    pub(crate) seq: u64,
    pub(crate) next_generation: u32,
    pub(crate) generations: Generations,
    pub(crate) high_water: Mid,
    pub(crate) state: State,
    pub(crate) opts: crate::Options,
}

pub(crate) struct Writer {
    stats: Arc<crate::Stats>,
    /// Set while the reserve files are (partly) released: the disk ran full and has not recovered.
    disk_full: Arc<std::sync::atomic::AtomicBool>,
    /// Set with `failed`, for readers outside the writer.
    stopped: Arc<std::sync::atomic::AtomicBool>,
    /// Reserve files present.
    reserves: usize,
    /// An eviction is running (it may checkpoint, which may need space: no eviction inside it).
    evicting: bool,
    /// Bodies moved by defragmentation, for readers holding an old `BodyRef`.
    relocated: crate::Relocations,
    /// A defragmentation in progress: one batch runs whenever no commit is waiting.
    defrag: Option<DefragJob>,
    storage: Arc<dyn Storage>,
    log: Arc<dyn StorageFile>,
    log_end: u64,
    /// Bytes of the log file allocated (zero-filled) so far.
    log_allocated: u64,
    salt: u64,
    /// The next frame's sequence.
    seq: u64,
    /// The sequence of the active log's first frame (its name once it is closed).
    log_first_seq: u64,
    next_generation: u32,
    generations: Generations,
    /// The mark that durable frames have raised MIDs to.
    high_water: Mid,
    opts: crate::Options,
    /// The generations taking bodies now, opened when first needed.
    lanes: [Option<CurrentGeneration>; LANES],
    /// The next generation to open, already created (numbered before `next_generation`).
    spare: Option<Spare>,
    /// Frames written and not yet answered, in sequence order.
    inflight: VecDeque<InFlight>,
    sync_jobs: std::sync::mpsc::Sender<SyncJob>,
    synced: mpsc::UnboundedReceiver<Synced>,
    failed: Option<String>,
    /// The durable live state: every record is applied after its flush succeeded. Checkpoints are written
    /// from it, and it tells which generations still hold live messages.
    state: State,
    /// Live messages per generation.
    live: HashMap<u32, usize>,
    /// When the last live message of a generation finished (wall clock, ms).
    finished_at: HashMap<u32, i64>,
    /// Every copy finished after this (wall clock, ms) is still in the Safety Net: the latest finish of a
    /// generation evicted before its hold ended.
    held_since: i64,
    /// The first sequence not covered by the last checkpoint.
    checkpoint_seq: u64,
    /// The size of the last checkpoint, which the reserve files are sized to.
    checkpoint_bytes: u64,
    /// The generation of the last checkpoint's cursor: older generations hold only frames it covers, so
    /// only they may be retired (a retired generation's frames must never be needed by recovery).
    covered_generation: u32,
    last_checkpoint: Instant,
    last_maintenance: Instant,
}

/// Online defragmentation in progress.
struct DefragJob {
    deadline: Instant,
    reply: oneshot::Sender<crate::DefragReport>,
    report: crate::DefragReport,
    /// Sparse generations still to empty, with their live bodies (a snapshot; moved ones are skipped).
    todo: std::collections::VecDeque<(u32, Vec<(Mid, BodyRef)>)>,
}

/// One flush's bytes and bookkeeping, built by `prepare`.
#[derive(Default)]
struct Prepared {
    /// The frame being built: room for its header, then the bodies (the records are added at the end).
    frame: Vec<u8>,
    records: Vec<u8>,
    /// The records, to apply to the state once they are durable.
    applied: Vec<Record>,
    count: u32,
    waiters: Vec<Waiter>,
    max_mid: Option<Mid>,
    /// The frame goes into the lane's generation (it stores bodies), not the log.
    to_generation: bool,
}

/// What one flush needs to answer.
enum Waiter {
    Body(oneshot::Sender<Result<BodyRef, CommitError>>, BodyRef),
    Done(oneshot::Sender<Result<(), CommitError>>),
}

impl Waiter {
    fn answer(self, result: &Result<(), CommitError>) {
        match (self, result) {
            (Waiter::Body(tx, body), Ok(())) => drop(tx.send(Ok(body))),
            (Waiter::Done(tx), Ok(())) => drop(tx.send(Ok(()))),
            (Waiter::Body(tx, _), Err(e)) => drop(tx.send(Err(e.clone()))),
            (Waiter::Done(tx), Err(e)) => drop(tx.send(Err(e.clone()))),
        }
    }
}

/// What the writer waits for.
enum Event {
    Op(Op),
    /// The channel closed: every handle is gone.
    Closed,
    Synced(Synced),
    Timeout,
}

/// Threads that fdatasync the frames the writer hands them, one job at a time each.
fn start_sync_threads() -> std::io::Result<(std::sync::mpsc::Sender<SyncJob>, mpsc::UnboundedReceiver<Synced>)> {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<SyncJob>();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    for _ in 0..IN_FLIGHT {
        let (jobs, done) = (jobs_rx.clone(), done_tx.clone());
        std::thread::Builder::new().name("queue-db-sync".into()).spawn(move || {
            loop {
                // The writer's end closing ends the thread.
                let job = match jobs.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let result = job.file.sync_data();
                if done.send(Synced { seq: job.seq, result }).is_err() {
                    return;
                }
            }
        })?;
    }
    Ok((jobs_tx, done_rx))
}

impl Writer {
    pub(crate) fn new(init: WriterInit) -> std::io::Result<Writer> {
        let mut live: HashMap<u32, usize> = HashMap::new();
        for m in init.state.messages.values() {
            *live.entry(m.body.generation).or_default() += 1;
        }
        let now = now_ms();
        // Generations without live messages at start count as finished now: their hold starts over.
        let finished_at = init
            .generations
            .read()
            .map(|g| g.keys().filter(|n| !live.contains_key(n)).map(|n| (*n, now)).collect())
            .unwrap_or_default();
        let (sync_jobs, synced) = start_sync_threads()?;
        Ok(Writer {
            stats: init.stats,
            disk_full: init.disk_full,
            stopped: init.stopped,
            reserves: 0,
            evicting: false,
            relocated: init.relocated,
            defrag: None,
            storage: init.storage,
            log: Arc::from(init.log),
            log_end: init.log_end,
            log_allocated: init.log_end,
            salt: init.salt,
            seq: init.seq,
            log_first_seq: init.seq,
            next_generation: init.next_generation,
            generations: init.generations,
            high_water: init.high_water,
            lanes: std::array::from_fn(|_| None),
            spare: None,
            inflight: VecDeque::with_capacity(IN_FLIGHT),
            sync_jobs,
            synced,
            failed: None,
            state: init.state,
            live,
            finished_at,
            held_since: 0,
            checkpoint_seq: init.seq,
            covered_generation: init.next_generation,
            checkpoint_bytes: 0,
            last_checkpoint: Instant::now(),
            last_maintenance: Instant::now(),
            opts: init.opts,
        })
    }

    /// Runs until the channel closes or a `Close` arrives.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Op>) {
        // A small runtime of its own only to wait on the channels with a timeout; all file I/O is blocking,
        // on this thread and the sync threads.
        let rt = match tokio::runtime::Builder::new_current_thread().enable_time().build() {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "queue database writer could not start");
                return;
            }
        };
        let batch_size = self.opts.batch_size.max(1);
        let mut batch: Vec<Op> = Vec::with_capacity(batch_size);
        self.prepare_spare();
        let mut lazy_since: Option<Instant> = None;
        loop {
            let maintenance_at = self.last_maintenance + self.opts.maintenance_interval;
            let deadline = match lazy_since {
                Some(t) => (t + self.opts.batch_timeout).min(maintenance_at),
                None => maintenance_at,
            };
            // While a defragmentation runs, only look for waiting commits; otherwise do one batch of it.
            if self.defrag.is_some() && batch.is_empty() && lazy_since.is_none() && self.inflight.is_empty() {
                match rx.try_recv() {
                    Ok(op) => {
                        if self.take(op, &mut batch, &mut rx, batch_size, &mut lazy_since) {
                            return;
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => self.defrag_step(),
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.shut_down(&mut batch);
                        return;
                    }
                }
                continue;
            }
            match self.next_event(&rt, &mut rx, deadline) {
                Event::Op(op) => {
                    if self.take(op, &mut batch, &mut rx, batch_size, &mut lazy_since) {
                        return;
                    }
                }
                Event::Synced(s) => self.on_synced(s),
                Event::Closed => {
                    self.shut_down(&mut batch);
                    return;
                }
                Event::Timeout => {
                    if lazy_since.is_some_and(|t| t.elapsed() >= self.opts.batch_timeout) {
                        self.flush(&mut batch);
                        lazy_since = None;
                    }
                    if self.last_maintenance.elapsed() >= self.opts.maintenance_interval && lazy_since.is_none() {
                        self.maintain();
                    }
                }
            }
            self.housekeeping();
        }
    }

    /// The next operation or finished sync. A client answered a moment ago is likely to send its next
    /// commit within microseconds: look for it briefly before sleeping, which saves a thread wake-up per
    /// commit at low concurrency.
    fn next_event(&mut self, rt: &tokio::runtime::Runtime, rx: &mut mpsc::Receiver<Op>, deadline: Instant) -> Event {
        let start = Instant::now();
        loop {
            if let Ok(s) = self.synced.try_recv() {
                return Event::Synced(s);
            }
            match rx.try_recv() {
                Ok(op) => return Event::Op(op),
                Err(mpsc::error::TryRecvError::Disconnected) => return Event::Closed,
                Err(mpsc::error::TryRecvError::Empty) if start.elapsed() >= SPIN => break,
                Err(mpsc::error::TryRecvError::Empty) => std::hint::spin_loop(),
            }
        }
        let deadline = tokio::time::Instant::from_std(deadline);
        let synced = &mut self.synced;
        let waiting = !self.inflight.is_empty();
        rt.block_on(async {
            tokio::select! {
                biased;
                Some(s) = synced.recv(), if waiting => Event::Synced(s),
                op = rx.recv() => op.map_or(Event::Closed, Event::Op),
                () = tokio::time::sleep_until(deadline) => Event::Timeout,
            }
        })
    }

    /// Takes what the channel holds besides `op` into the batch (up to `batch_size`). Returns the reply of
    /// a `Close` met on the way.
    fn absorb(
        &mut self,
        op: Op,
        batch: &mut Vec<Op>,
        rx: &mut mpsc::Receiver<Op>,
        batch_size: usize,
    ) -> Option<oneshot::Sender<()>> {
        let mut next = Some(op);
        while let Some(op) = next.take() {
            match op {
                Op::Close { reply } => return Some(reply),
                Op::Defrag { deadline, reply } => self.start_defrag(deadline, reply),
                Op::EvictSafetyNet { want_free, reply } => drop(reply.send(self.evict(want_free, true))),
                op => batch.push(op),
            }
            if batch.len() < batch_size {
                next = rx.try_recv().ok();
            }
        }
        None
    }

    /// Takes one operation and whatever else is queued, flushing when due. Returns true when the writer
    /// must stop.
    fn take(
        &mut self,
        op: Op,
        batch: &mut Vec<Op>,
        rx: &mut mpsc::Receiver<Op>,
        batch_size: usize,
        lazy_since: &mut Option<Instant>,
    ) -> bool {
        if let Some(reply) = self.absorb(op, batch, rx, batch_size) {
            self.shut_down(batch);
            let _ = reply.send(());
            return true;
        }
        let durable = |batch: &Vec<Op>| batch.iter().any(|op| !matches!(op, Op::Commit { reply: None, .. }));
        let overdue = lazy_since.is_some_and(|t| t.elapsed() >= self.opts.batch_timeout);
        let due = durable(batch) || overdue || batch.len() >= batch_size;
        if due && !overdue && batch.len() < batch_size && !self.inflight.is_empty() {
            // The disk is busy with a frame: gather what the clients answered last are about to send.
            let start = Instant::now();
            let mut quiet_since = start;
            while batch.len() < batch_size && !self.inflight.is_empty() {
                if let Ok(s) = self.synced.try_recv() {
                    self.on_synced(s);
                    continue;
                }
                match rx.try_recv() {
                    Ok(op) => {
                        if let Some(reply) = self.absorb(op, batch, rx, batch_size) {
                            self.shut_down(batch);
                            let _ = reply.send(());
                            return true;
                        }
                        quiet_since = Instant::now();
                    }
                    Err(mpsc::error::TryRecvError::Empty)
                        if quiet_since.elapsed() < GATHER_QUIET && start.elapsed() < GATHER_AT_MOST =>
                    {
                        // The clients need the CPU more than this thread does (two cores).
                        std::thread::yield_now()
                    }
                    Err(_) => break,
                }
            }
        }
        if due || (self.defrag.is_some() && !batch.is_empty()) {
            self.flush(batch);
            *lazy_since = None;
        } else if lazy_since.is_none() && !batch.is_empty() {
            *lazy_since = Some(Instant::now());
        }
        false
    }

    /// Flushes what is queued, ends a defragmentation and writes a last checkpoint, so that after a clean
    /// stop every frame is covered and any bad frame found later is damage, never taken for a torn tail.
    fn shut_down(&mut self, batch: &mut Vec<Op>) {
        self.flush(batch);
        self.drain();
        self.finish_defrag();
        for lane in 0..LANES {
            self.close_generation(lane);
        }
        // Not left behind as an empty generation (if the unlink is lost, recovery finds one, which is harmless).
        if let Some(spare) = self.spare.take() {
            let _ = self.storage.remove(&spare.name);
        }
        if self.failed.is_none()
            && self.seq != self.checkpoint_seq
            && let Err(e) = self.checkpoint()
        {
            tracing::error!(error = %e, "the checkpoint at shutdown failed");
        }
    }

    /// Work between flushes that needs the log at rest or the state current: rotation, maintenance.
    fn housekeeping(&mut self) {
        if self.failed.is_some() {
            return;
        }
        if self.log_end > self.opts.logging_file_size
            && !self.busy(Target::Log)
            && let Err(e) = self.rotate()
        {
            tracing::error!(error = %e, "cannot rotate the transaction log");
        }
        if self.last_maintenance.elapsed() >= self.opts.maintenance_interval {
            self.maintain();
        }
    }

    /// Flushes the batch: one frame, or several when its bodies exceed what one flush takes.
    fn flush(&mut self, batch: &mut Vec<Op>) {
        while !batch.is_empty() {
            let mut rest = split_at_body_budget(batch);
            self.flush_one(batch);
            std::mem::swap(batch, &mut rest);
        }
    }

    fn flush_one(&mut self, batch: &mut Vec<Op>) {
        if batch.is_empty() {
            return;
        }
        let mut out = Prepared {
            frame: vec![0; FRAME_BODIES_AT as usize],
            waiters: Vec::with_capacity(batch.len()),
            ..Prepared::default()
        };
        let started = Instant::now();
        let ops = batch.len();
        let lane = self.lane_for_bodies();
        // A batch near full (70% of `batch_size`) means about as much is on its way as one frame takes: its
        // sync goes to a sync thread and the next frame is written beside it, as is every frame while one
        // is syncing. Otherwise the frame holds all there is: splitting it would not help (one frame twice
        // the size syncs about as fast as two side by side, measured here), and a hand-off would add two
        // thread wake-ups to its clients' wait, so the writer syncs it itself and what arrives meanwhile
        // makes the next frame larger. (B3 here: 70% gave 64 writers 8-17% more than a full batch did,
        // and leaves 20 writers, whose batches are smaller, as they were.)
        let hand_off = ops * 10 >= self.opts.batch_size.max(1) * 7 || !self.inflight.is_empty();
        let result = self.prepare(batch, &mut out, lane);
        let Prepared { mut frame, mut records, mut applied, mut count, mut waiters, max_mid, to_generation } = out;
        let mut high_water = None;
        let mut result = result.and_then(|()| {
            if let Some(mid) = max_mid
                && mid + MID_HEADROOM / 2 >= self.high_water
            {
                let r = Record::MidHighWater { next: mid + MID_HEADROOM };
                r.encode(&mut records);
                applied.push(r);
                count += 1;
                high_water = Some(mid + MID_HEADROOM);
            }
            let target = if to_generation { Target::Lane(lane) } else { Target::Log };
            self.write(target, &mut frame, &records, count, hand_off)
        });
        if matches!(result, Err(CommitError::DiskFull)) && to_generation {
            // The bodies did not fit. What needs no new space is still committed, in the log: above all the
            // delivery outcomes, which are what frees space again.
            let (refused, rest): (Vec<Waiter>, Vec<Waiter>) =
                waiters.into_iter().partition(|w| matches!(w, Waiter::Body(..)));
            for w in refused {
                w.answer(&Err(CommitError::DiskFull));
            }
            waiters = rest;
            high_water = None;
            applied.retain(|r| !matches!(r, Record::Enqueue { .. } | Record::MidHighWater { .. }));
            let mut records = Vec::new();
            for r in &applied {
                r.encode(&mut records);
            }
            frame = vec![0; FRAME_BODIES_AT as usize];
            result = self.write(Target::Log, &mut frame, &records, applied.len() as u32, hand_off);
        }
        match result {
            Ok(Some(Written { seq, target, done })) => self.inflight.push_back(InFlight {
                seq,
                target,
                done,
                waiters,
                applied,
                high_water,
                ops,
                bytes: frame.len(),
                started,
            }),
            // Nothing to write (every operation was refused, or a lazy batch of nothing).
            Ok(None) => {
                for w in waiters {
                    w.answer(&Ok(()));
                }
            }
            Err(e) => {
                if !matches!(e, CommitError::DiskFull) {
                    tracing::error!(error = %e, "queue database commit failed");
                }
                for w in waiters {
                    w.answer(&Err(e.clone()));
                }
            }
        }
        // A frame synced on this thread is answered at once.
        self.finish_ready();
    }

    /// A sync finished: its frame, and every earlier one that is done, are answered.
    fn on_synced(&mut self, s: Synced) {
        // After a failure the frames in flight were answered already: a late sync finds nothing.
        let Some(f) = self.inflight.iter_mut().find(|f| f.seq == s.seq) else { return };
        let target = f.target;
        let failed = s.result.as_ref().err().map(|e| e.to_string());
        f.done = Some(s.result);
        if let Some(e) = failed
            && self.failed.is_none()
        {
            // Nothing more is written from now on, not even into other files (a log rotation), while the
            // frames before this one finish.
            let what = match target {
                Target::Log => "the transaction log",
                Target::Lane(_) => "a generation file",
            };
            self.fail(format!("syncing {what}: {e}"));
        }
        self.finish_ready();
    }

    /// Answers the frames at the front whose syncs are done, in sequence order, and applies their records:
    /// a frame is durable for its clients only once every frame before it is.
    fn finish_ready(&mut self) {
        while self.inflight.front().is_some_and(|f| f.done.is_some()) {
            let Some(f) = self.inflight.pop_front() else { break };
            if let Some(Err(e)) = &f.done {
                // A failed fsync leaves the page cache in an unknown state (the kernel may have dropped the
                // dirty pages): stop committing until a restart recovers from what is on disk. This frame is
                // where recovery finds the torn tail; the frames after it, even if durable, follow a gap and
                // are dropped there, so none of them is answered as committed either.
                let e = match &self.failed {
                    Some(why) => CommitError::Failed(why.clone()),
                    None => self.fail(format!("syncing a frame: {e}")),
                };
                tracing::error!(error = %e, "queue database commit failed");
                for f in std::iter::once(f).chain(self.inflight.drain(..)) {
                    for w in f.waiters {
                        w.answer(&Err(e.clone()));
                    }
                }
                return;
            }
            let took = f.started.elapsed();
            if took > SLOW_FLUSH {
                tracing::warn!(
                    ms = took.as_millis() as u64,
                    ops = f.ops,
                    frame_bytes = f.bytes,
                    "slow queue database commit"
                );
            }
            // The waiters are answered first: what follows is bookkeeping that the next flush, not this
            // one's clients, waits for.
            for w in f.waiters {
                w.answer(&Ok(()));
            }
            // The mark moves only once it is durable, so that it is never ahead of what a crash keeps.
            if let Some(h) = f.high_water {
                self.high_water = self.high_water.max(h);
            }
            use std::sync::atomic::Ordering::Relaxed;
            self.stats.flushes.fetch_add(1, Relaxed);
            self.stats.operations.fetch_add(f.ops as u64, Relaxed);
            for r in &f.applied {
                self.apply(r);
            }
        }
    }

    /// Waits for every frame in flight to be answered: the state is then current to `seq`.
    fn drain(&mut self) {
        while !self.inflight.is_empty() {
            self.wait_one();
        }
    }

    /// Waits for one sync to finish and answers what it completes.
    fn wait_one(&mut self) {
        match self.synced.blocking_recv() {
            Some(s) => self.on_synced(s),
            None => {
                // The sync threads are gone (they only stop when the writer does): nothing in flight can
                // be known durable.
                let e = self.fail("the queue database's sync threads stopped".to_owned());
                for f in self.inflight.drain(..) {
                    for w in f.waiters {
                        w.answer(&Err(e.clone()));
                    }
                }
            }
        }
    }

    /// A frame is syncing in this file.
    fn busy(&self, target: Target) -> bool {
        self.inflight.iter().any(|f| f.target == target && f.done.is_none())
    }

    /// Waits until a frame may go into `target`: no frame syncing in it, fewer than `IN_FLIGHT` in all.
    fn wait_free(&mut self, target: Target) {
        while self.busy(target) || self.inflight.len() >= IN_FLIGHT {
            self.wait_one();
        }
    }

    /// The lane the next frame with bodies goes into: an open one that is not syncing, else one to open,
    /// else (both syncing) the one that started syncing first.
    fn lane_for_bodies(&self) -> usize {
        let free = |i: &usize| !self.busy(Target::Lane(*i));
        (0..LANES)
            .filter(free)
            .find(|i| self.lanes[*i].is_some())
            .or_else(|| (0..LANES).find(free))
            .or_else(|| {
                self.inflight.iter().find_map(|f| match f.target {
                    Target::Lane(i) => Some(i),
                    Target::Log => None,
                })
            })
            .unwrap_or(0)
    }

    /// The generation numbers taking bodies now.
    fn lane_numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.lanes.iter().flatten().map(|g| g.number)
    }

    fn prepare(&mut self, batch: &mut Vec<Op>, out: &mut Prepared, lane: usize) -> Result<(), CommitError> {
        let Prepared { frame, records, applied, count, waiters, max_mid, to_generation } = out;
        let mut failure = self.failed.clone().map(CommitError::Failed);
        // No room for a new generation refuses the enqueues only; the other records go to the log.
        let mut no_generation = None;
        if failure.is_none()
            && batch.iter().any(|op| matches!(op, Op::Enqueue { .. }))
            && let Err(e) = self.ensure_generation(lane)
        {
            match e {
                CommitError::DiskFull => no_generation = Some(e),
                e => failure = Some(e),
            }
        }
        // The bodies are copied once, into a frame sized for them.
        let bodies: u64 = batch.iter().map(|op| if let Op::Enqueue { body, .. } = op { body.len() } else { 0 }).sum();
        frame.reserve(bodies as usize);
        for op in batch.drain(..) {
            match op {
                Op::Enqueue { mid, queue, envelope, body, reply } => {
                    let refused = failure.clone().or_else(|| no_generation.clone());
                    let Some(current) = self.lanes[lane].as_ref().filter(|_| refused.is_none()) else {
                        let _ = reply.send(Err(refused.unwrap_or(CommitError::Closed)));
                        continue;
                    };
                    // The frame goes at the generation's end.
                    let body_ref = match generation::encode_spooled(current.number, current.end, &body, frame) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::warn!(mid, error = %e, "message refused: its spooled data cannot be read");
                            let _ = reply.send(Err(CommitError::Spool(e.to_string())));
                            continue;
                        }
                    };
                    let r = Record::Enqueue { mid, queue, envelope, body: body_ref };
                    r.encode(records);
                    applied.push(r);
                    *count += 1;
                    *to_generation = true;
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
                    applied.extend(recs);
                    if let Some(tx) = reply {
                        waiters.push(Waiter::Done(tx));
                    }
                }
                Op::Close { reply } => drop(reply.send(())),
                // Handled by `run` before a batch is prepared.
                Op::Defrag { reply, .. } => drop(reply.send(crate::DefragReport::default())),
                Op::EvictSafetyNet { reply, .. } => drop(reply.send(crate::Eviction::default())),
            }
        }
        Ok(())
    }

    /// Writes one frame into `target` and hands its fdatasync to a sync thread (`hand_off`), or syncs it on
    /// this thread; returns its sequence, where it went and the sync's outcome when it is known, `None`
    /// when there was nothing to write. One file, one sync: the frame's checksum
    /// covers its bodies, so a torn flush is a bad frame, whichever of its pages reached the disk.
    fn write(
        &mut self,
        target: Target,
        frame: &mut Vec<u8>,
        records: &[u8],
        count: u32,
        hand_off: bool,
    ) -> Result<Option<Written>, CommitError> {
        // Nothing is written after a failure: a failed write or sync leaves its frame, with this frame's
        // sequence, where a crash may keep it (a defragmentation step found writing on after one).
        if let Some(f) = &self.failed {
            return Err(CommitError::Failed(f.clone()));
        }
        if count == 0 {
            return Ok(None);
        }
        // One frame at a time per file: a later frame complete behind a torn one in the same file would
        // read as damage, not as a torn tail.
        self.wait_free(target);
        if let Some(f) = &self.failed {
            return Err(CommitError::Failed(f.clone()));
        }
        let file = match target {
            Target::Lane(lane) => {
                let current = self.lanes[lane].as_ref().ok_or(CommitError::Closed)?;
                finish_frame(current.salt, self.seq, count, records, frame, 0);
                let (file, at, allocated) = (current.file.clone(), current.end, current.allocated);
                let end = at + frame.len() as u64;
                let len_before = allocated.max(at);
                let written = self.retry_when_full(Keep::Last, |_| file.write_at(frame, at));
                if let Err(e) = written {
                    if is_disk_full(&e) {
                        // Nothing was acknowledged and nothing is lost: the partial frame is wiped and cut
                        // off, durably, before anything else is written (only the last write of a file may
                        // ever be torn), and the batch refused; the database goes on committing what needs
                        // no new space.
                        if let Err(e) = wipe(file.as_ref(), at, len_before) {
                            return Err(self.fail(format!("cleaning up after a full disk in a generation file: {e}")));
                        }
                        return Err(self.out_of_space());
                    }
                    return Err(self.fail(format!("writing a generation file: {e}")));
                }
                let mut fill = end;
                if frame.len() < PREALLOCATE_BELOW && end > allocated {
                    // Zeros after the frame read as the end of the generation at recovery, like a torn tail.
                    // Without space for them the frame is simply appended.
                    match file.write_at(&vec![0u8; GEN_PREALLOCATION as usize], end) {
                        Ok(()) => fill = end + GEN_PREALLOCATION,
                        Err(e) if is_disk_full(&e) => drop(file.set_len(end)),
                        Err(e) => return Err(self.fail(format!("writing a generation file: {e}"))),
                    }
                }
                if let Some(current) = self.lanes[lane].as_mut() {
                    current.end = end;
                    current.allocated = current.allocated.max(fill);
                }
                file
            }
            Target::Log => {
                finish_frame(self.salt, self.seq, count, records, frame, 0);
                let needed = frame.len() as u64;
                // Without space for more zero-filled log, the frame is appended as it is (zeros are never
                // worth a reserve).
                match self.preallocate_log(needed) {
                    Err(e) if is_disk_full(&e) => drop(self.log.set_len(self.log_end.max(self.log_allocated))),
                    Err(e) => return Err(self.fail(format!("writing the transaction log: {e}"))),
                    Ok(()) => {}
                }
                let at = self.log_end;
                // The retry may release a reserve but not evict: eviction can checkpoint, a checkpoint
                // rotates the log, and this frame is encoded for this log file at this offset.
                let evicting = std::mem::replace(&mut self.evicting, true);
                let log = self.log.clone();
                let written = self.retry_when_full(Keep::None, |_| log.write_at(frame, at));
                self.evicting = evicting;
                if let Err(e) = written {
                    if is_disk_full(&e) {
                        if let Err(e) = wipe(self.log.as_ref(), at, self.log_end.max(self.log_allocated)) {
                            return Err(self.fail(format!("cleaning up after a full disk in the transaction log: {e}")));
                        }
                        return Err(self.out_of_space());
                    }
                    return Err(self.fail(format!("writing the transaction log: {e}")));
                }
                self.log_allocated = self.log_allocated.max(at + needed);
                self.log_end += needed;
                self.log.clone()
            }
        };
        let seq = self.seq;
        self.seq += 1;
        if !hand_off {
            let result = file.sync_data();
            return Ok(Some(Written { seq, target, done: Some(result) }));
        }
        if self.sync_jobs.send(SyncJob { seq, file }).is_err() {
            return Err(self.fail("the queue database's sync threads stopped".to_owned()));
        }
        Ok(Some(Written { seq, target, done: None }))
    }

    fn apply(&mut self, r: &Record) {
        let before = match r {
            Record::Route { mid, .. } | Record::CopyDone { mid, .. } | Record::Relocate { mid, .. } => {
                self.state.messages.get(mid).map(|m| (*mid, m.body.generation))
            }
            _ => None,
        };
        self.state.apply(r);
        match r {
            Record::Enqueue { body, .. } => *self.live.entry(body.generation).or_default() += 1,
            Record::Relocate { mid, body } => {
                if let Some((_, old)) = before {
                    *self.live.entry(body.generation).or_default() += 1;
                    self.leave_generation(old, None);
                    if let Ok(mut moved) = self.relocated.write() {
                        moved.insert(*mid, *body);
                    }
                }
            }
            _ => {
                if let Some((mid, generation)) = before
                    && !self.state.messages.contains_key(&mid)
                {
                    self.leave_generation(generation, Some(now_ms()));
                    if let Ok(mut moved) = self.relocated.write() {
                        moved.remove(&mid);
                    }
                }
            }
        }
    }

    /// A message left a generation: finished at `finished` (starting the Safety Net hold), or moved away.
    fn leave_generation(&mut self, generation: u32, finished: Option<i64>) {
        let n = self.live.entry(generation).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.live.remove(&generation);
        }
        match finished {
            Some(at) => {
                self.finished_at.insert(generation, at);
            }
            // A move does not start a hold; a generation whose messages all moved away retires at once
            // unless an earlier finish still holds it.
            None => {
                self.finished_at.entry(generation).or_insert(0);
            }
        }
    }

    /// Starts online defragmentation: finds the sparse closed generations (less than half of the file live)
    /// whose live bodies will be copied forward. A second request while one runs joins it.
    fn start_defrag(&mut self, deadline: Instant, reply: oneshot::Sender<crate::DefragReport>) {
        if self.defrag.is_some() || self.failed.is_some() {
            let _ = reply.send(crate::DefragReport::default());
            return;
        }
        let lanes: Vec<u32> = self.lane_numbers().collect();
        let mut per_gen: std::collections::BTreeMap<u32, (u64, Vec<(Mid, BodyRef)>)> = Default::default();
        for m in self.state.messages.values() {
            if !lanes.contains(&m.body.generation) {
                let e = per_gen.entry(m.body.generation).or_default();
                e.0 += m.body.len;
                e.1.push((m.mid, m.body));
            }
        }
        let todo = per_gen
            .into_iter()
            .filter(|(g, (live_bytes, _))| {
                let size = self.generations.read().ok().and_then(|m| m.get(g).and_then(|(_, f)| f.len().ok()));
                size.is_some_and(|size| live_bytes * 2 < size)
            })
            .map(|(g, (_, bodies))| (g, bodies))
            .collect();
        self.defrag = Some(DefragJob { deadline, reply, report: crate::DefragReport::default(), todo });
    }

    /// One batch of defragmentation (up to 64 bodies), a durable transaction of its own: interrupting
    /// between batches leaves a consistent database.
    fn defrag_step(&mut self) {
        if self.last_maintenance.elapsed() >= self.opts.maintenance_interval {
            self.maintain();
        }
        let Some(job) = self.defrag.as_mut() else { return };
        if Instant::now() >= job.deadline {
            job.report.interrupted = !job.todo.is_empty();
            self.finish_defrag();
            return;
        }
        let Some((generation, bodies)) = job.todo.front_mut() else {
            self.finish_defrag();
            return;
        };
        let generation = *generation;
        let take = bodies.len().min(64);
        let chunk: Vec<(Mid, BodyRef)> = bodies
            .drain(..take)
            .filter(|(mid, body)| self.state.messages.get(mid).is_some_and(|m| m.body == *body))
            .collect();
        let done_with_gen = bodies.is_empty();
        let source = self.generations.read().ok().and_then(|g| g.get(&generation).cloned());
        let result = match source {
            Some((name, file)) if !chunk.is_empty() => self.relocate(&name, file.as_ref(), &chunk),
            _ => Ok(0),
        };
        let Some(job) = self.defrag.as_mut() else { return };
        match result {
            Ok(bytes) => {
                job.report.messages_moved += chunk.len() as u64;
                job.report.bytes_moved += bytes;
                if done_with_gen {
                    job.todo.pop_front();
                    job.report.generations_compacted += 1;
                }
            }
            Err(e) => {
                tracing::warn!(generation, error = %e, "defragmentation stopped");
                job.report.interrupted = true;
                self.finish_defrag();
            }
        }
    }

    fn finish_defrag(&mut self) {
        if let Some(job) = self.defrag.take() {
            tracing::info!(
                generations = job.report.generations_compacted,
                messages = job.report.messages_moved,
                bytes = job.report.bytes_moved,
                interrupted = job.report.interrupted,
                "online defragmentation finished"
            );
            let _ = job.reply.send(job.report);
            self.retire_generations();
        }
    }

    /// Copies `bodies` from a generation into a current one and commits their `Relocate` records.
    fn relocate(&mut self, name: &str, from: &dyn StorageFile, bodies: &[(Mid, BodyRef)]) -> Result<u64, String> {
        let lane = self.lane_for_bodies();
        self.ensure_generation(lane).map_err(|e| e.to_string())?;
        let current = self.lanes[lane].as_ref().ok_or("no current generation")?;
        let (number, end) = (current.number, current.end);
        let mut out = vec![0; FRAME_BODIES_AT as usize];
        let mut records = Vec::new();
        let mut applied = Vec::new();
        for (mid, body) in bodies {
            let data = generation::read_body(from, name, body).map_err(|e| e.to_string())?;
            let new = generation::encode_body(number, end, &data, &mut out);
            let r = Record::Relocate { mid: *mid, body: new };
            r.encode(&mut records);
            applied.push(r);
        }
        let bytes = (out.len() - FRAME_BODIES_AT as usize) as u64;
        let written = self.write(Target::Lane(lane), &mut out, &records, applied.len() as u32, false);
        if let Some(Written { seq, target, done }) = written.map_err(|e| e.to_string())? {
            let ops = applied.len();
            let started = Instant::now();
            let f = InFlight {
                seq,
                target,
                done,
                waiters: Vec::new(),
                applied,
                high_water: None,
                ops,
                bytes: out.len(),
                started,
            };
            self.inflight.push_back(f);
        }
        // Applied once durable, like any commit.
        self.finish_ready();
        self.drain();
        match &self.failed {
            Some(f) => Err(f.clone()),
            None => Ok(bytes),
        }
    }

    /// Periodic work between flushes: closing an old generation, retiring finished ones, checkpoints.
    fn maintain(&mut self) {
        self.last_maintenance = Instant::now();
        // Closing, retiring and checkpointing see the state of every frame written.
        self.drain();
        if self.failed.is_some() {
            return;
        }
        if self.disk_full.load(std::sync::atomic::Ordering::Relaxed) {
            // While the disk is full, finished mail does not wait for its Safety Net hold.
            self.evict(u64::MAX, true);
        }
        if self.reserves < RESERVES.len() || self.disk_full.load(std::sync::atomic::Ordering::Relaxed) {
            self.recreate_reserves();
        }
        // A generation older than the interval is closed even when no new mail comes, so that it can retire.
        for lane in 0..LANES {
            if self.lanes[lane].as_ref().is_some_and(|g| g.opened.elapsed() >= self.opts.generation_interval) {
                self.close_generation(lane);
            }
        }
        self.retire_generations();
        self.prepare_spare();
        if self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval
            && self.seq != self.checkpoint_seq
            && let Err(e) = self.checkpoint()
        {
            tracing::error!(error = %e, "checkpoint failed; the log keeps growing until one succeeds");
        }
    }

    /// Unlinks generations whose messages are all finished and whose Safety Net hold has passed.
    fn retire_generations(&mut self) {
        self.retire_generations_held(self.opts.safety_net_hold.as_millis() as i64);
    }

    /// Unlinks the finished generations whose last finish is `hold` ms old or more; returns how many.
    fn retire_generations_held(&mut self, hold: i64) -> u64 {
        let now = now_ms();
        let due: Vec<u32> = self.retirable().into_iter().filter(|(at, _)| at + hold <= now).map(|(_, g)| g).collect();
        let mut retired = 0;
        for g in self.covered(due) {
            retired += u64::from(self.retire(g).is_some());
        }
        retired
    }

    /// The closed generations without a live message, with their last finish, oldest finish first.
    fn retirable(&self) -> Vec<(i64, u32)> {
        let lanes: Vec<u32> = self.lane_numbers().collect();
        let mut due: Vec<(i64, u32)> = self
            .finished_at
            .iter()
            .filter(|(g, _)| !lanes.contains(g) && !self.live.contains_key(g))
            .map(|(g, at)| (*at, *g))
            .collect();
        due.sort_unstable();
        due
    }

    /// Of the generations `due` to retire, those a checkpoint covers, taking one first if needed: a
    /// generation's frames must be covered before it goes, and after a checkpoint every closed one is.
    fn covered(&mut self, mut due: Vec<u32>) -> Vec<u32> {
        if due.iter().any(|g| *g >= self.covered_generation)
            && self.failed.is_none()
            && let Err(e) = self.checkpoint()
        {
            tracing::error!(error = %e, "checkpoint failed; finished generations are kept until one succeeds");
        }
        // Also after a failure, when no checkpoint is taken: a generation the last one does not cover holds
        // frames recovery will need (a crash test found it retired by the defragmentation's end after a
        // failed write).
        due.retain(|g| *g < self.covered_generation);
        due
    }

    /// Unlinks a finished generation; returns its size, or `None` when it was not open.
    fn retire(&mut self, g: u32) -> Option<u64> {
        self.finished_at.remove(&g);
        // Readers hold their own handle; the unlink only frees the space once they are done.
        let (name, file) = self.generations.write().ok()?.remove(&g)?;
        let size = file.len().unwrap_or(0);
        match self.storage.remove(&name) {
            Ok(()) => tracing::debug!(generation = g, "generation retired"),
            Err(e) => tracing::warn!(generation = g, error = %e, "cannot remove a finished generation"),
        }
        Some(size)
    }

    /// Drops Safety Net copies for disk space, oldest first, whatever their hold, until `want_free` bytes
    /// are free or the Safety Net is empty: finished generations are retired in the order their last copy
    /// finished; then, with `close_lanes`, a generation still taking bodies that holds finished copies is
    /// closed, and retired as soon as nothing live is left in it. A live message is never touched.
    fn evict(&mut self, want_free: u64, close_lanes: bool) -> crate::Eviction {
        let mut ev = crate::Eviction::default();
        // `u64::MAX` empties the Safety Net, whatever the file system says.
        let short = |w: &Writer| want_free == u64::MAX || w.storage.free_space().map_or(true, |free| free < want_free);
        let evicting = std::mem::replace(&mut self.evicting, true);
        if short(self) {
            self.evict_pass(&short, &mut ev);
            // Closing trims a file: nothing is written after a failure.
            if close_lanes && self.failed.is_none() && short(self) {
                let mut closed = false;
                for lane in 0..LANES {
                    if let Some(g) = self.lanes[lane].as_ref().map(|g| g.number)
                        && self.finished_at.contains_key(&g)
                    {
                        self.close_generation(lane);
                        closed = true;
                    }
                }
                if closed {
                    self.evict_pass(&short, &mut ev);
                }
            }
        }
        self.evicting = evicting;
        if ev.generations > 0 {
            self.stats.safety_net_evicted.fetch_add(ev.generations, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                generations = ev.generations,
                bytes = ev.bytes,
                "disk pressure: Safety Net generations evicted before their hold ended"
            );
        }
        ev.held_since = self.held_since;
        ev.empty = self.finished_at.is_empty();
        ev
    }

    /// One pass of `evict` over the closed generations without live messages.
    fn evict_pass(&mut self, short: &dyn Fn(&Writer) -> bool, ev: &mut crate::Eviction) {
        // Oldest finish first; `covered` keeps that order.
        let due = self.retirable();
        let covered = self.covered(due.iter().map(|(_, g)| *g).collect());
        for (finished, g) in due.into_iter().filter(|(_, g)| covered.contains(g)) {
            if !short(self) {
                break;
            }
            if let Some(bytes) = self.retire(g) {
                ev.generations += 1;
                ev.bytes += bytes;
                self.held_since = self.held_since.max(finished);
            }
        }
    }

    /// Closes the active log (renamed `trn-<first seq>.log`) and starts the next one from `trntmp.log`.
    fn rotate(&mut self) -> std::io::Result<()> {
        if self.log_end <= LOG_HEADER_LEN {
            return Ok(());
        }
        let salt = crate::random_u64();
        let next = self.storage.open(crate::LOG_NEXT, true)?;
        let header = crate::log::encode_header(&crate::log::LogHeader { salt, first_seq: self.seq });
        next.set_len(0)?;
        next.write_at(&header, 0)?;
        next.sync_data()?;
        let closed = crate::closed_log_name(self.log_first_seq);
        self.storage.rename(crate::LOG, &closed)?;
        if let Err(e) = self.storage.rename(crate::LOG_NEXT, crate::LOG) {
            // Put the active log back, so that the next rotation starts where this one did.
            if let Err(undo) = self.storage.rename(&closed, crate::LOG) {
                self.fail(format!("a log rotation failed halfway ({e}) and could not be undone ({undo})"));
            }
            return Err(e);
        }
        self.storage.sync_dir()?;
        self.log = Arc::from(next);
        self.log_end = header.len() as u64;
        self.log_allocated = self.log_end;
        self.salt = salt;
        self.log_first_seq = self.seq;
        Ok(())
    }

    /// Writes the live state as the checkpoint and deletes the closed logs it covers.
    fn checkpoint(&mut self) -> std::io::Result<()> {
        // The state must hold every frame before `seq`, which it names as where replay starts.
        self.drain();
        if let Some(f) = &self.failed {
            return Err(std::io::Error::other(f.clone()));
        }
        self.retry_when_full(Keep::None, |w| w.rotate())?;
        // The oldest generation still taking bodies (or the spare, which will): every frame in an older one
        // is covered.
        let lanes = self.lanes.iter().flatten().map(|g| Cursor { generation: g.number, offset: g.end });
        let spare = self.spare.iter().map(|s| Cursor { generation: s.number, offset: 0 });
        let cursor = lanes
            .chain(spare)
            .min_by_key(|c| c.generation)
            .unwrap_or(Cursor { generation: self.next_generation, offset: 0 });
        let salt = crate::random_u64();
        self.checkpoint_bytes = self.retry_when_full(Keep::None, |w| {
            crate::checkpoint::write(w.storage.as_ref(), &w.state, w.high_water, w.seq, cursor, salt)
        })?;
        for name in self.storage.list()? {
            if crate::parse_closed_log_name(&name).is_some_and(|first| first < self.seq) {
                self.storage.remove(&name)?;
            }
        }
        self.storage.sync_dir()?;
        self.checkpoint_seq = self.seq;
        self.covered_generation = cursor.generation;
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Keeps zero-filled space ahead of the log's end, so that most frames overwrite allocated blocks and
    /// their fdatasync flushes data only, without a journal commit for a new file size. Recovery reads the
    /// zeros as the end of the log.
    fn preallocate_log(&mut self, needed: u64) -> std::io::Result<()> {
        if self.log_end + needed <= self.log_allocated {
            return Ok(());
        }
        // Small logs (tests) preallocate in proportion.
        let chunk = LOG_PREALLOCATION.min(self.opts.logging_file_size.next_power_of_two().max(4096));
        let target = (self.log_end + needed).next_multiple_of(chunk) + chunk;
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

    /// Creates the missing reserve files when there is room for them and a margin as large again; once
    /// both are back, the disk-full state ends and intake resumes.
    pub(crate) fn recreate_reserves(&mut self) {
        // Each reserve holds at least half a checkpoint, so that with both released a checkpoint (which
        // retirement needs, and retirement is what frees space) can always be written.
        let size = self.opts.reserve_size.max(self.checkpoint_bytes / 2 + (64 << 10));
        let len = |w: &Writer, name: &str| w.storage.open(name, false).and_then(|f| f.len()).ok();
        let lens: Vec<Option<u64>> = RESERVES.iter().map(|r| len(self, r)).collect();
        self.reserves = lens.iter().filter(|l| l.is_some()).count();
        let missing: u64 = lens.iter().map(|l| size.saturating_sub(l.unwrap_or(0))).sum();
        // Room for what is missing and a margin of two reserves more: below that the disk stays "full", so
        // that intake does not flap on and off at the edge.
        let free = self.storage.free_space().unwrap_or(0);
        let room = free >= missing + 2 * size;
        if missing > 0 && room {
            for (name, l) in RESERVES.iter().zip(&lens) {
                if l.is_some_and(|l| l >= size) {
                    continue;
                }
                match create_reserve(self.storage.as_ref(), name, size) {
                    Ok(()) => self.reserves += usize::from(l.is_none()),
                    Err(e) => {
                        if l.is_none() {
                            let _ = self.storage.remove(name);
                        }
                        tracing::warn!(file = name, error = %e, "cannot create a reserve file");
                        break;
                    }
                }
            }
        }
        let whole = RESERVES.len() == self.reserves;
        self.set_disk_full(!whole || !room);
    }

    /// Releases one reserve file; false when none is left. The last one is kept for `Keep::Last` work.
    fn release_reserve(&mut self, keep: Keep) -> bool {
        if keep == Keep::Last && self.reserves <= 1 {
            return false;
        }
        for name in RESERVES.iter().rev() {
            if self.storage.remove(name).is_ok() {
                self.reserves = self.reserves.saturating_sub(1);
                let _ = self.storage.sync_dir();
                tracing::error!(file = name, "the queue database's disk is full: a reserve file was released");
                self.set_disk_full(true);
                return true;
            }
        }
        false
    }

    /// Runs `op`; when it fails for want of space, evicts the Safety Net or releases a reserve file and runs
    /// it once more.
    fn retry_when_full<T>(
        &mut self,
        keep: Keep,
        mut op: impl FnMut(&mut Writer) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match op(self) {
            Err(e) if is_disk_full(&e) => {
                self.set_disk_full(true);
                // Finished mail held for the Safety Net is the first thing to give up.
                // The generations taking bodies stay open: this may be the middle of a frame's write.
                let evicted = if self.evicting { 0 } else { self.evict(u64::MAX, false).generations };
                if evicted > 0 || self.release_reserve(keep) { op(self) } else { Err(e) }
            }
            r => r,
        }
    }

    fn set_disk_full(&mut self, full: bool) {
        let was = self.disk_full.swap(full, std::sync::atomic::Ordering::Relaxed);
        if was && !full {
            tracing::info!("the queue database has space again: reserve files recreated, intake resumes");
        }
    }

    fn out_of_space(&mut self) -> CommitError {
        self.set_disk_full(true);
        CommitError::DiskFull
    }

    fn fail(&mut self, why: String) -> CommitError {
        self.failed = Some(why.clone());
        self.stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        CommitError::Failed(why)
    }

    /// Ends a lane's generation: no frame goes into it any more. Its zero-filled space is cut off (not
    /// synced: if the cut is lost, recovery reads the zeros as its end).
    fn close_generation(&mut self, lane: usize) {
        self.wait_free(Target::Lane(lane));
        if let Some(g) = self.lanes[lane].take()
            && g.allocated > g.end
            && let Err(e) = g.file.set_len(g.end)
        {
            tracing::warn!(generation = g.number, error = %e, "cannot trim a closed generation");
        }
    }

    /// Creates the spare generation while nothing waits for it (at start, and in maintenance once the last
    /// one was taken). Without one, a generation is created when needed.
    fn prepare_spare(&mut self) {
        if self.spare.is_some() || self.failed.is_some() || self.disk_full.load(std::sync::atomic::Ordering::Relaxed) {
            return;
        }
        match self.create_generation() {
            Ok(spare) => self.spare = Some(spare),
            Err(e) => tracing::debug!(error = %e, "no spare generation file"),
        }
    }

    /// A new, empty generation file: its header synced, the directory synced.
    fn create_generation(&mut self) -> Result<Spare, CommitError> {
        let number = self.next_generation;
        let created = now_ms();
        let name = generation::file_name(number, created);
        let salt = crate::random_u64();
        let opened = self.retry_when_full(Keep::Last, |w| {
            let file: Arc<dyn StorageFile> = Arc::from(w.storage.open(&name, true)?);
            let header = generation::encode_header(number, created, salt);
            file.set_len(0)?;
            file.write_at(&header, 0)?;
            file.sync_data()?;
            w.storage.sync_dir()?;
            Ok::<_, std::io::Error>(file)
        });
        let file = match opened {
            Ok(f) => f,
            Err(e) if is_disk_full(&e) => {
                // Nothing refers to it: it goes, and the batch is refused for want of space.
                let _ = self.storage.remove(&name);
                return Err(self.out_of_space());
            }
            Err(e) => return Err(self.fail(format!("creating generation {name}: {e}"))),
        };
        self.next_generation += 1;
        Ok(Spare { number, name, file, salt })
    }

    /// Opens the lane's generation, or a new one when the interval has passed.
    fn ensure_generation(&mut self, lane: usize) -> Result<(), CommitError> {
        if let Some(f) = &self.failed {
            return Err(CommitError::Failed(f.clone()));
        }
        if self.lanes[lane].as_ref().is_some_and(|g| g.opened.elapsed() < self.opts.generation_interval) {
            return Ok(());
        }
        self.close_generation(lane);
        let Spare { number, name, file, salt } = match self.spare.take() {
            Some(spare) => spare,
            None => self.create_generation()?,
        };
        if let Ok(mut gens) = self.generations.write() {
            gens.insert(number, (name, file.clone()));
        }
        self.lanes[lane] = Some(CurrentGeneration {
            number,
            file,
            salt,
            end: generation::GEN_HEADER_LEN,
            allocated: generation::GEN_HEADER_LEN,
            opened: Instant::now(),
        });
        Ok(())
    }
}

/// Splits off the operations past the body budget of one flush (always keeping at least the first one).
fn split_at_body_budget(batch: &mut Vec<Op>) -> Vec<Op> {
    let mut bytes = 0;
    for (i, op) in batch.iter().enumerate() {
        if let Op::Enqueue { body, .. } = op {
            let len = body.len() as usize;
            if i > 0 && bytes + len > MAX_FLUSH_BODIES {
                return batch.split_off(i);
            }
            bytes += len;
        }
    }
    Vec::new()
}

/// How long the writer looks for the next operation before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

/// What a write that meets a full disk may not take.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keep {
    /// New bodies leave the last reserve alone: it is for the records that free space (delivery
    /// outcomes), checkpoints and a clean stop.
    Last,
    None,
}

/// Reserve files: space set aside so that in-flight commits, checkpoints and a clean stop can finish when
/// the disk runs full.
pub(crate) const RESERVES: [&str; 2] = ["trnres00001.jrs", "trnres00002.jrs"];

fn create_reserve(storage: &dyn Storage, name: &str, size: u64) -> std::io::Result<()> {
    let file = storage.open(name, true)?;
    file.set_len(0)?;
    let zeros = vec![0u8; 64 * 1024];
    let mut at = 0;
    while at < size {
        let n = (size - at).min(zeros.len() as u64) as usize;
        file.write_at(&zeros[..n], at)?;
        at += n as u64;
    }
    file.sync_data()?;
    storage.sync_dir()
}

/// After a write that met a full disk at `at`: zeros over what it may have left inside the file's old
/// length `len` (overwriting allocated blocks needs no space), the file cut back to `len`, and both synced,
/// so that no partial frame is left behind for a crash to pair with a later torn write.
fn wipe(file: &dyn StorageFile, at: u64, len: u64) -> std::io::Result<()> {
    let end = file.len()?.min(len);
    if end > at {
        file.write_at(&vec![0u8; (end - at) as usize], at)?;
    }
    file.set_len(len.max(at))?;
    file.sync_data()
}
