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
//!
//! This file holds the operations, the writer's state and its event loop; each concern is an `impl Writer`
//! of its own beside it: `frame` (building and writing frames), `pipeline` (frames in flight, answered in
//! sequence order), `space` (preallocation, reserves, a full disk, Safety Net eviction), `retention`
//! (generations, log rotation, checkpoints) and `defrag`. The sub-modules share this file's imports
//! (`use super::*`).

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

mod defrag;
mod frame;
mod pipeline;
mod retention;
mod space;

use defrag::DefragJob;
use frame::{ActiveLog, Waiter};
use pipeline::{InFlight, Pipeline, SyncJob, Synced, Written, start_sync_threads};
use retention::Retention;
pub(crate) use space::RESERVES;
use space::{GEN_PREALLOCATION, Keep, PREALLOCATE_BELOW, Space, wipe};

/// What the handles ask of the writer.
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
    /// The Safety Net entries a resubmit request selects.
    SafetyNet {
        filter: crate::SafetyNetFilter,
        reply: oneshot::Sender<Vec<crate::SafetyNetCopy>>,
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
    /// Bodies moved by defragmentation, for readers holding an old `BodyRef`.
    relocated: crate::Relocations,
    /// A defragmentation in progress: one batch runs whenever no commit is waiting.
    defrag: Option<DefragJob>,
    storage: Arc<dyn Storage>,
    opts: crate::Options,
    /// The durable live state: every record is applied after its flush succeeded. Checkpoints are written
    /// from it, and it tells which generations still hold live messages.
    state: State,
    /// The active transaction log's append end.
    log: ActiveLog,
    /// The generations taking bodies, the spare, and the numbering.
    gens: Gens,
    /// Frames in flight and their answering in sequence order.
    pipeline: Pipeline,
    /// Reserve files and the disk-full state.
    space: Space,
    /// What may be retired, and the checkpoints that allow it.
    retention: Retention,
}

/// The generation files the writer appends to.
struct Gens {
    /// The generations taking bodies now, opened when first needed.
    lanes: [Option<CurrentGeneration>; LANES],
    /// The next generation to open, already created (numbered before `next_number`).
    spare: Option<Spare>,
    /// The number the next generation created gets.
    next_number: u32,
    /// Every generation file open for reading, shared with the readers of bodies.
    shared: Generations,
}

/// What the writer waits for.
enum Event {
    Op(Op),
    /// The channel closed: every handle is gone.
    Closed,
    Synced(Synced),
    Timeout,
}

/// How long the writer looks for the next operation before it sleeps.
const SPIN: Duration = Duration::from_micros(50);

impl Writer {
    pub(crate) fn new(init: WriterInit) -> std::io::Result<Writer> {
        let mut live: HashMap<u32, usize> = HashMap::new();
        for m in init.state.messages.values() {
            *live.entry(m.body.generation).or_default() += 1;
        }
        let now = now_ms();
        // Generations without live messages at start count as finished now: their hold starts over.
        let mut finished_at: HashMap<u32, i64> = init
            .generations
            .read()
            .map(|g| g.keys().filter(|n| !live.contains_key(n)).map(|n| (*n, now)).collect())
            .unwrap_or_default();
        // A generation holding delivered copies is held from their last delivery, also when it still has
        // live messages: without it, a generation whose live messages defragmentation moved away after a
        // restart was retired at once, taking copies delivered a moment before the restart with it (the
        // crash test found it once the Safety Net index was checked).
        for e in init.state.safety_net.values() {
            let at = e.delivered.iter().map(|d| d.at_ms).max().unwrap_or(now).min(now);
            let held = finished_at.entry(e.body.generation).or_insert(at);
            *held = (*held).max(at);
        }
        let (sync_jobs, synced) = start_sync_threads(init.stats.clone())?;
        let now = Instant::now();
        Ok(Writer {
            stats: init.stats,
            relocated: init.relocated,
            defrag: None,
            storage: init.storage,
            opts: init.opts,
            state: init.state,
            log: ActiveLog {
                file: Arc::from(init.log),
                end: init.log_end,
                allocated: init.log_end,
                salt: init.salt,
                first_seq: init.seq,
            },
            gens: Gens {
                lanes: std::array::from_fn(|_| None),
                spare: None,
                next_number: init.next_generation,
                shared: init.generations,
            },
            pipeline: Pipeline {
                seq: init.seq,
                inflight: VecDeque::with_capacity(IN_FLIGHT),
                sync_jobs,
                synced,
                failed: None,
                stopped: init.stopped,
                high_water: init.high_water,
            },
            space: Space { disk_full: init.disk_full, reserves: 0, evicting: false, held_since: 0 },
            retention: Retention {
                live,
                finished_at,
                checkpoint_seq: init.seq,
                checkpoint_bytes: 0,
                covered_generation: init.next_generation,
                last_checkpoint: now,
                last_maintenance: now,
            },
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
            let maintenance_at = self.retention.last_maintenance + self.opts.maintenance_interval;
            let deadline = match lazy_since {
                Some(t) => (t + self.opts.batch_timeout).min(maintenance_at),
                None => maintenance_at,
            };
            // While a defragmentation runs, only look for waiting commits; otherwise do one batch of it.
            if self.defrag.is_some() && batch.is_empty() && lazy_since.is_none() && self.pipeline.inflight.is_empty() {
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
                    if self.retention.last_maintenance.elapsed() >= self.opts.maintenance_interval
                        && lazy_since.is_none()
                    {
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
            if let Ok(s) = self.pipeline.synced.try_recv() {
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
        let synced = &mut self.pipeline.synced;
        let waiting = !self.pipeline.inflight.is_empty();
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
                Op::SafetyNet { filter, reply } => {
                    // What was recorded before the query (deliveries nobody waits for) is written first, so
                    // that the answer sees it.
                    self.flush(batch);
                    self.drain();
                    drop(reply.send(self.state.safety_net_matches(&filter)));
                }
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
        if due && !overdue && batch.len() < batch_size && !self.pipeline.inflight.is_empty() {
            // The disk is busy with a frame: gather what the clients answered last are about to send.
            let start = Instant::now();
            let mut quiet_since = start;
            while batch.len() < batch_size && !self.pipeline.inflight.is_empty() {
                if let Ok(s) = self.pipeline.synced.try_recv() {
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
        if let Some(spare) = self.gens.spare.take() {
            let _ = self.storage.remove(&spare.name);
        }
        if self.pipeline.failed.is_none()
            && self.pipeline.seq != self.retention.checkpoint_seq
            && let Err(e) = self.checkpoint()
        {
            tracing::error!(error = %e, "the checkpoint at shutdown failed");
        }
    }

    /// Work between flushes that needs the log at rest or the state current: rotation, maintenance.
    fn housekeeping(&mut self) {
        if self.pipeline.failed.is_some() {
            return;
        }
        if self.log.end > self.opts.logging_file_size
            && !self.busy(Target::Log)
            && let Err(e) = self.rotate()
        {
            tracing::error!(error = %e, "cannot rotate the transaction log");
        }
        if self.retention.last_maintenance.elapsed() >= self.opts.maintenance_interval {
            self.maintain();
        }
    }

    fn fail(&mut self, why: String) -> CommitError {
        self.pipeline.failed = Some(why.clone());
        self.pipeline.stopped.store(true, std::sync::atomic::Ordering::Relaxed);
        CommitError::Failed(why)
    }
}
