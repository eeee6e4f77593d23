//! The sluice queue database: one per server, holding every queue. Bodies go into generation files
//! (written once, retired in bulk); every state change is a record in the transaction log (`trn.log`),
//! committed in groups and fsynced before the commit returns. See `docs/queue-database.md` for the format
//! and the argument that a crash cannot lose a committed transaction.
//!
//! **Invariant**: a commit returns `Ok` only after its frame, and every body it refers to, are on stable
//! storage. Frames go down two lanes (the transaction log and the current generation) and at most
//! `IN_FLIGHT` (two) are unsynced at a time, each the last frame of its own file: only those can be torn,
//! and recovery cuts them off. All integers in the files are little-endian (the lints below refuse the
//! others).
#![deny(clippy::host_endian_bytes, clippy::big_endian_bytes)]

mod body;
mod check;
mod checkpoint;
mod codec;
mod drain;
mod envelope;
mod generation;
mod histogram;
mod log;
mod record;
mod recovery;
pub mod sim;
mod state;
mod storage;
pub mod time;
mod walk;
mod writer;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use body::{Body, BodyChunks, BodySource};
pub use check::{FileCheck, check};
pub use drain::{DrainReport, Drained, drain};
pub use histogram::{BATCH_SIZE, COMMIT_LATENCY_US, Histogram, HistogramSnapshot};
pub use record::{
    BodyRef, Envelope, EnvelopeParts, FIRST_DELIVERY_QUEUE, Mid, POISON, Priority, QUARANTINE, QueueId, QueueKey,
    Recipient, RecipientRef, Record, SUBMISSION, Scan, ScanStage, UNREACHABLE,
};
pub use state::{
    Deliveries, Delivery, Quarantined, RecipientIndices, SafetyNetCopy, SafetyNetEntry, SafetyNetFilter, SharedError,
    SharedText, State, StoredCopy, StoredMessage, StoredQueue, TESTS_MAX, intern_error, intern_tests,
};
pub use storage::{FsStorage, Storage, StorageFile, is_disk_full};
pub use time::now_ms;

use writer::{Generations, Op};

/// The on-disk format version this binary writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// MIDs reserved ahead of use by a persisted high-water mark.
pub(crate) const MID_HEADROOM: Mid = 10_000;

pub(crate) const LOG: &str = "trn.log";
/// The next log file, created ahead so that rotation only renames.
pub(crate) const LOG_NEXT: &str = "trntmp.log";
/// Left by versions that rewrote the log at open; removed when found.
const LOG_NEW: &str = "trn.new";
/// Records per frame in a checkpoint.
pub(crate) const RECORDS_PER_CHECKPOINT_FRAME: usize = 2048;

/// The log files among `names`, in the order their frames were written: closed logs by sequence, then
/// `trn.log`.
pub(crate) fn log_files(names: &[String]) -> Vec<String> {
    let mut logs: Vec<(u64, String)> =
        names.iter().filter_map(|n| parse_closed_log_name(n).map(|s| (s, n.clone()))).collect();
    logs.sort();
    let mut log_names: Vec<String> = logs.into_iter().map(|(_, n)| n).collect();
    if names.iter().any(|n| n == LOG) {
        log_names.push(LOG.to_owned());
    }
    log_names
}

/// `trn-<first seq>.log`: a closed log file.
pub(crate) fn closed_log_name(first_seq: u64) -> String {
    format!("trn-{first_seq:016}.log")
}

/// The first sequence of a closed log file's name.
pub(crate) fn parse_closed_log_name(name: &str) -> Option<u64> {
    name.strip_prefix("trn-")?.strip_suffix(".log")?.parse().ok()
}

/// Settings of the queue database (`[queue_database]`).
#[derive(Debug, Clone)]
pub struct Options {
    pub batch_size: usize,
    pub batch_timeout: Duration,
    pub generation_interval: Duration,
    /// Finished generations younger than this are kept (the Safety Net hold).
    pub safety_net_hold: Duration,
    /// The active log is closed and a new one started past this size.
    pub logging_file_size: u64,
    /// How often the live state is checkpointed (when anything changed).
    pub checkpoint_interval: Duration,
    /// How often the writer retires generations and considers a checkpoint (1 s; tests use 0).
    pub maintenance_interval: Duration,
    /// Capacity of the commit channel.
    pub queue_depth: usize,
    /// Least size of each of the two reserve files (`trnres00001.jrs`, `trnres00002.jrs`); they grow to
    /// half a checkpoint each when the live state is larger.
    pub reserve_size: u64,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            batch_size: 40,
            batch_timeout: Duration::from_millis(100),
            generation_interval: Duration::from_secs(3600),
            safety_net_hold: Duration::from_secs(2 * 86_400),
            logging_file_size: 5 << 20,
            checkpoint_interval: Duration::from_secs(30),
            maintenance_interval: Duration::from_secs(1),
            queue_depth: 8192,
            reserve_size: 1 << 20,
        }
    }
}

/// Why the database could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{file} is damaged at offset {offset}: {what}. The queue database was not opened; run `sluice db check` \
         and `sluice db salvage --to DIR` to recover the readable messages"
    )]
    Corrupt { file: String, offset: u64, what: String },
    #[error("{file} has format version {found}, this sluice reads version {FORMAT_VERSION}; refusing to open it")]
    Version { file: String, found: u32 },
    #[error("{file} is referenced by the transaction log but missing")]
    Missing { file: String },
    #[error(
        "the queue database names {what}, beyond what this sluice can count from; it was not opened. Run \
         `sluice db salvage --to DIR` to recover the readable messages"
    )]
    OutOfRange { what: String },
}

impl OpenError {
    pub(crate) fn io(file: &str, source: std::io::Error) -> OpenError {
        OpenError::Io { file: file.to_owned(), source }
    }
}

/// Why a commit did not happen. Nothing of a failed commit is durable that recovery would keep.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    #[error("the queue database is closed")]
    Closed,
    #[error("the queue database stopped committing: {0}")]
    Failed(String),
    /// The disk is full: this commit was refused, nothing of it is kept, and the database goes on.
    #[error("the queue database is out of disk space")]
    DiskFull,
    /// The message's spooled data could not be read back: this message was refused, the database goes on.
    #[error("cannot read the spooled message data: {0}")]
    Spool(String),
    /// A cluster node could not write the message's shadow copy and refuses such messages
    /// (`reject_on_shadow_failure`): its local copy was taken back, nothing was acknowledged.
    #[error("the shadow copy could not be written: {0}")]
    NotShadowed(String),
}

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("generation {0} is not open")]
    NoGeneration(u32),
    #[error("{file} at offset {offset}: {source}")]
    Io {
        file: String,
        offset: u64,
        #[source]
        source: std::io::Error,
    },
    #[error("{file} at offset {offset}: body checksum mismatch")]
    Checksum { file: String, offset: u64 },
}

/// A record that does not decode.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated record")]
    Truncated,
    #[error("unknown record tag {0}")]
    BadTag(u8),
    #[error("invalid UTF-8 in a string")]
    Utf8,
    #[error("bytes left over after the records")]
    Trailing,
}

/// What recovery found, for the operator's log.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub frames: usize,
    /// Frames found durable after a missing one (in flight beside it at the crash, never answered), dropped.
    pub unanswered_frames: usize,
    pub records: usize,
    pub torn_bytes: u64,
    pub generations_removed: usize,
}

/// Bodies moved by online defragmentation since they were loaded, by MID.
pub(crate) type Relocations = Arc<RwLock<HashMap<Mid, BodyRef>>>;

/// What a defragmentation run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DefragReport {
    pub generations_compacted: u64,
    pub messages_moved: u64,
    pub bytes_moved: u64,
    /// It stopped at its deadline; the next run goes on where it left.
    pub interrupted: bool,
}

/// What a Safety Net eviction did, and what the Safety Net holds after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Eviction {
    /// Generations retired before their hold ended, and their bytes.
    pub generations: u64,
    pub bytes: u64,
    /// Every copy delivered after this time (ms since the epoch) is still held; 0 when nothing was ever
    /// evicted.
    pub held_since: i64,
    /// No delivered copy is held any more.
    pub empty: bool,
}

/// Counters of the writer, for benchmarks and metrics.
#[derive(Debug)]
pub struct Stats {
    /// Flushes (log frames written and synced).
    pub flushes: std::sync::atomic::AtomicU64,
    /// Operations (enqueues and commits) carried by those flushes.
    pub operations: std::sync::atomic::AtomicU64,
    /// Generations retired before their Safety Net hold ended, for want of disk space.
    pub safety_net_evicted: std::sync::atomic::AtomicU64,
    /// fdatasyncs of frames (on the writer's thread or a sync thread).
    pub frame_syncs: std::sync::atomic::AtomicU64,
    /// Microseconds from the start of a flush until its clients were answered (the wait that a durable
    /// commit adds, minus the time its request queued before the flush took it).
    pub commit_latency_us: Histogram,
    /// Operations per flushed frame.
    pub batch_size: Histogram,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            flushes: Default::default(),
            operations: Default::default(),
            safety_net_evicted: Default::default(),
            frame_syncs: Default::default(),
            commit_latency_us: Histogram::new(COMMIT_LATENCY_US),
            batch_size: Histogram::new(BATCH_SIZE),
        }
    }
}

/// An open queue database. Cheap to clone; all clones share the writer.
#[derive(Clone)]
pub struct QueueDb {
    tx: mpsc::Sender<Op>,
    stats: Arc<Stats>,
    storage: Arc<dyn Storage>,
    disk_full: Arc<std::sync::atomic::AtomicBool>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
    relocated: Relocations,
    generations: Generations,
    next_mid: Arc<std::sync::atomic::AtomicU64>,
    writer: Arc<std::sync::Mutex<Option<std::thread::JoinHandle<()>>>>,
}

impl std::fmt::Debug for QueueDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueDb").finish_non_exhaustive()
    }
}

impl QueueDb {
    /// Opens (or creates) the database in `storage`, recovering from whatever state a crash left.
    /// Returns (a copy of) the live state for the transport to load.
    pub fn open(storage: Arc<dyn Storage>, opts: Options) -> Result<(QueueDb, State, RecoveryReport), OpenError> {
        QueueDb::open_with(storage, opts, State::clone)
    }

    /// As [`QueueDb::open`], handing the recovered state to `load` by reference before the writer takes
    /// it: a million queued messages are not copied once more to be loaded (B4, restart).
    pub fn open_with<T>(
        storage: Arc<dyn Storage>,
        opts: Options,
        load: impl FnOnce(&State) -> T,
    ) -> Result<(QueueDb, T, RecoveryReport), OpenError> {
        recovery::open(storage, opts, load)
    }

    /// The writer's counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether the disk ran full and has not recovered yet (reserve files released): new mail should be
    /// refused (`452 4.3.1`) until it clears by itself.
    pub fn disk_full(&self) -> bool {
        self.disk_full.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the database stopped committing after a failed write or sync (until a restart).
    pub fn stopped(&self) -> bool {
        self.stopped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Free bytes on the database's file system.
    pub fn free_space(&self) -> std::io::Result<u64> {
        self.storage.free_space()
    }

    /// Bytes the database's files take on disk (logs, generations, checkpoint, reserve files).
    pub fn used_space(&self) -> std::io::Result<u64> {
        self.storage.used_space()
    }

    /// The generation files open now, and their bytes.
    pub fn generation_files(&self) -> (u64, u64) {
        let gens = self.generations.read().unwrap_or_else(|e| e.into_inner());
        let bytes = gens.values().map(|(_, f)| f.len().unwrap_or(0)).sum();
        (gens.len() as u64, bytes)
    }

    /// The last MID handed out (by [`QueueDb::allocate_mid`] or, after a start, below the recovered mark);
    /// 0 before any.
    pub fn last_mid(&self) -> Mid {
        self.next_mid.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(1)
    }

    /// Drops Safety Net copies for disk space (disk pressure), oldest first and whatever their hold, until
    /// `want_free` bytes are free on the database's file system or the Safety Net is empty. Generations
    /// holding live messages stay; one still taking bodies is closed and goes once its live messages do.
    pub async fn evict_safety_net(&self, want_free: u64) -> Result<Eviction, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::EvictSafetyNet { want_free, reply }).await.map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)
    }

    /// The messages the Safety Net holds that `filter` selects (delivered in its window, of its sender, to
    /// its recipient, with its message id), by MID, each with only the recipients delivered in the window.
    /// The writer first writes what was recorded before the query (deliveries are recorded without
    /// waiting), then answers from its durable state: a query sees every delivery recorded before it.
    pub async fn safety_net(&self, filter: SafetyNetFilter) -> Result<Vec<SafetyNetCopy>, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::SafetyNet { filter, reply }).await.map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)
    }

    /// Marks the disk full from outside the writer (a spool file of the same file system met ENOSPC): new
    /// mail is refused until the writer finds room for its reserve files and a margin again.
    pub fn note_disk_full(&self) {
        self.disk_full.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// A new MID. MIDs are never reused, also across crashes: recovery starts above the persisted
    /// high-water mark, which the writer keeps ahead of every committed MID.
    pub fn allocate_mid(&self) -> Mid {
        self.next_mid.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Stores a new message in `queue` (normally Submission) and returns once it is durable.
    pub async fn enqueue(
        &self,
        mid: Mid,
        queue: QueueId,
        envelope: impl Into<Arc<Envelope>>,
        body: impl Into<Body>,
    ) -> Result<BodyRef, CommitError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Op::Enqueue { mid, queue, envelope: envelope.into(), body: body.into(), reply })
            .await
            .map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)?
    }

    /// Commits `records` as one transaction and returns once it is durable.
    pub async fn commit(&self, records: Vec<Record>) -> Result<(), CommitError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Op::Commit { records, reply: Some(reply) }).await.map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)?
    }

    /// Commits `records` as one transaction without waiting for it to be durable: it is written with the
    /// next durable commit or within `batch_timeout`. For changes whose loss in a crash only repeats work
    /// (a route decided again, a delivery made again), never for an acknowledgement.
    pub async fn record(&self, records: Vec<Record>) -> Result<(), CommitError> {
        self.tx.send(Op::Commit { records, reply: None }).await.map_err(|_| CommitError::Closed)
    }

    /// Reads and verifies a message body.
    pub fn read_body(&self, body: &BodyRef) -> Result<Vec<u8>, ReadError> {
        let (name, file) = self.generation_file(body.generation)?;
        generation::read_body(file.as_ref(), &name, body)
    }

    /// The body of `mid` to read a piece at a time, following a move by defragmentation.
    pub fn body_source(&self, mid: Mid, body: &BodyRef) -> Result<BodySource, ReadError> {
        let body = self.current_place(mid, body);
        let (name, file) = self.generation_file(body.generation)?;
        Ok(BodySource::stored(&name, file, body))
    }

    /// Reads the body of `mid`, following a move by defragmentation after `body` was handed out.
    pub fn read_body_of(&self, mid: Mid, body: &BodyRef) -> Result<Vec<u8>, ReadError> {
        self.read_body(&self.current_place(mid, body))
    }

    /// Where the body of `mid` is now: `body`, unless defragmentation moved it since.
    fn current_place(&self, mid: Mid, body: &BodyRef) -> BodyRef {
        self.relocated.read().ok().and_then(|m| m.get(&mid).copied()).unwrap_or(*body)
    }

    /// An open generation file, with its name.
    fn generation_file(&self, generation: u32) -> Result<(String, Arc<dyn StorageFile>), ReadError> {
        let gens = self.generations.read().map_err(|_| ReadError::NoGeneration(generation))?;
        gens.get(&generation).cloned().ok_or(ReadError::NoGeneration(generation))
    }

    /// Runs online defragmentation for at most `time_to_run` (between commits, which keep flowing).
    pub async fn defrag(&self, time_to_run: Duration) -> Result<DefragReport, CommitError> {
        let (reply, rx) = oneshot::channel();
        let deadline = std::time::Instant::now() + time_to_run;
        self.tx.send(Op::Defrag { deadline, reply }).await.map_err(|_| CommitError::Closed)?;
        rx.await.map_err(|_| CommitError::Closed)
    }

    /// Flushes what is queued and stops the writer. Commits after this fail with `Closed`.
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Op::Close { reply }).await.is_ok() {
            let _ = rx.await;
        }
        let handle = self.writer.lock().ok().and_then(|mut h| h.take());
        if let Some(h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.join()).await;
        }
    }
}

/// A salt that differs per log file; not secret, only unpredictable to a sender of mail.
pub(crate) fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.write_u32(std::process::id());
    h.finish()
}
