//! Crash tests: a workload of concurrent commits over the simulated disk, a power loss at a random moment
//! (unsynced pages kept or lost at random), then recovery compared with what was acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use sluice_queue_db::sim::SimStorage;
use sluice_queue_db::{Options, QueueDb, Record, SUBMISSION, Storage};

use crate::envelope;

/// A small deterministic generator (xorshift), so failures name their seed.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Default)]
struct Model {
    /// Enqueues acknowledged (must survive unless a done was acknowledged), with their bodies.
    acked: BTreeMap<u64, Vec<u8>>,
    /// Every MID whose enqueue was attempted.
    attempted: BTreeSet<u64>,
    /// CopyDone or CopyDelivered acknowledged: must be gone.
    done: BTreeSet<u64>,
    /// CopyDelivered acknowledged: in the Safety Net index while its generation is kept.
    delivered: BTreeSet<u64>,
}

fn options() -> Options {
    Options { batch_size: 8, ..Options::default() }
}

/// Every background mechanism at full tilt: log rotation every few frames, a checkpoint and generation
/// retirement after every flush, a new generation every few milliseconds with no Safety Net hold.
fn churning_options() -> Options {
    Options {
        batch_size: 8,
        logging_file_size: 2048,
        checkpoint_interval: std::time::Duration::ZERO,
        maintenance_interval: std::time::Duration::ZERO,
        generation_interval: std::time::Duration::from_millis(3),
        safety_net_hold: std::time::Duration::ZERO,
        ..Options::default()
    }
}

/// Which storage fault a cycle injects before its crash.
#[derive(Clone, Copy, PartialEq)]
enum Fault {
    None,
    /// Fail the Nth write or fdatasync from the start of the cycle (N random).
    WriteOrSync,
    /// The disk fills up a random amount into the cycle (writes that meet it write what fits, then fail).
    DiskFull,
}

fn run_seed(seed: u64, opts: fn() -> Options) {
    run_seed_with(seed, opts, Fault::None)
}

fn run_seed_with(seed: u64, opts: fn() -> Options, fault: Fault) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let sim = SimStorage::new();
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    // Syncs that take a while, as on a disk, so that crashes land with frames in flight side by side.
    sim.set_sync_delay(std::time::Duration::from_micros(rng.below(300)));
    let model = Arc::new(Mutex::new(Model::default()));
    // Three crash cycles per seed: each reopen must see everything acknowledged so far.
    for cycle in 0..3 {
        if fault == Fault::DiskFull {
            // Starting needs room for one checkpoint; the reserves may all have gone to the cycle before.
            sim.set_capacity(Some(sim.used() + (256 << 10)));
        }
        let storage: Arc<dyn Storage> = Arc::new(sim.process());
        // Batches from 2 to 8 operations for 6 writers: full batches are synced beside the next frame,
        // others one at a time, and the seeds cover both.
        let opts = Options { batch_size: 2 + (seed % 7) as usize, ..opts() };
        let hold = opts.safety_net_hold;
        let (db, state, _) =
            QueueDb::open(storage, opts).unwrap_or_else(|e| panic!("seed {seed} cycle {cycle}: reopen failed: {e}"));
        // Nothing delivered may leave the Safety Net while it is held and the disk has room.
        let held = hold > std::time::Duration::from_secs(3600) && fault != Fault::DiskFull;
        check(&db, &state, &model.lock().unwrap(), seed, cycle);
        check_safety_net(&db, &state, &model.lock().unwrap(), held, (seed, cycle));
        let crash_after = 5 + rng.below(60);
        let body_seed = rng.next();
        if fault == Fault::WriteOrSync {
            let n = 1 + rng.below(40);
            if rng.below(2) == 0 { sim.fail_write_after(n) } else { sim.fail_sync_after(n) }
        }
        if fault == Fault::DiskFull {
            sim.set_capacity(Some(sim.used() + 16_384 + rng.below(400_000)));
        }
        rt.block_on(async {
            let mut tasks = Vec::new();
            for t in 0..6u64 {
                let db = db.clone();
                let model = model.clone();
                tasks.push(tokio::spawn(async move {
                    for i in 0..40u64 {
                        let mid = db.allocate_mid();
                        let len = ((body_seed ^ (t * 977 + i * 131)) % 9000) as usize;
                        let body: Vec<u8> = (0..len).map(|k| (k as u64 ^ mid) as u8).collect();
                        model.lock().unwrap().attempted.insert(mid);
                        match db.enqueue(mid, SUBMISSION, envelope(mid), body.clone()).await {
                            Ok(_) => {}
                            // Refused for want of space: nothing of it is kept, and the database goes on.
                            Err(sluice_queue_db::CommitError::DiskFull) => {
                                let _ = db.commit(vec![]).await;
                                continue;
                            }
                            Err(_) => return,
                        }
                        model.lock().unwrap().acked.insert(mid, body);
                        // Half the finished copies were delivered: the Safety Net index goes through the same
                        // crashes, checkpoints, relocations and retirements.
                        let delivered = |at_ms| Record::CopyDelivered {
                            mid,
                            queue: SUBMISSION,
                            at_ms,
                            delivered: sluice_queue_db::RecipientIndices::from_slice(&[0]),
                        };
                        if i % 3 == 0 {
                            let done = if i % 2 == 0 {
                                delivered(sluice_queue_db::now_ms())
                            } else {
                                Record::CopyDone { mid, queue: SUBMISSION }
                            };
                            if db.commit(vec![done]).await.is_err() {
                                return;
                            }
                            let mut model = model.lock().unwrap();
                            model.done.insert(mid);
                            if i % 2 == 0 {
                                model.delivered.insert(mid);
                            }
                        } else if i % 3 == 1 {
                            // Lazy: may or may not survive.
                            let _ = db.record(vec![delivered(sluice_queue_db::now_ms())]).await;
                        }
                    }
                }));
            }
            // Defragmentation runs alongside, so that crashes also land inside relocations.
            let defrag_db = db.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    if defrag_db.defrag(std::time::Duration::from_millis(5)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                }
            }));
            loop {
                tokio::task::yield_now().await;
                if model.lock().unwrap().acked.len() as u64 >= crash_after * (cycle + 1)
                    || tasks.iter().all(|t| t.is_finished())
                {
                    break;
                }
            }
            let mut r = Rng(body_seed | 1);
            sim.crash(|_, _| r.below(2) == 0);
            for t in tasks {
                let _ = t.await;
            }
        });
        drop(db);
    }
}

fn check(db: &QueueDb, state: &sluice_queue_db::State, model: &Model, seed: u64, cycle: u64) {
    for (mid, body) in &model.acked {
        if model.done.contains(mid) {
            assert!(!state.messages.contains_key(mid), "seed {seed} cycle {cycle}: finished {mid} came back");
            continue;
        }
        let Some(m) = state.messages.get(mid) else {
            // Lazily finished before the crash is allowed.
            continue;
        };
        assert_eq!(*m.envelope, envelope(*mid), "seed {seed} cycle {cycle}: envelope of {mid}");
        assert_eq!(&db.read_body(&m.body).unwrap(), body, "seed {seed} cycle {cycle}: body of {mid}");
    }
    for (mid, m) in &state.messages {
        assert!(model.attempted.contains(mid), "seed {seed} cycle {cycle}: {mid} was never written");
        assert!(db.read_body(&m.body).is_ok(), "seed {seed} cycle {cycle}: {mid} recovered without its body");
    }
    let lazily_done: usize = model.acked.keys().filter(|m| !model.done.contains(m)).count();
    let present = state.messages.len();
    assert!(present <= lazily_done + model.attempted.len(), "seed {seed}: more messages than written");
    if let Some(max) = model.attempted.iter().max() {
        assert!(state.next_mid > *max, "seed {seed} cycle {cycle}: MID {max} could be reused");
    }
}

/// Every Safety Net entry is a delivered message with its exact envelope and a readable body (an entry
/// of a retired generation is gone); with `held`, every acknowledged delivery is there.
fn check_safety_net(db: &QueueDb, state: &sluice_queue_db::State, model: &Model, held: bool, at: (u64, u64)) {
    let (seed, cycle) = at;
    for (mid, e) in &state.safety_net {
        let body =
            model.acked.get(mid).unwrap_or_else(|| panic!("seed {seed} cycle {cycle}: {mid} never acknowledged"));
        assert_eq!(*e.envelope, envelope(*mid), "seed {seed} cycle {cycle}: Safety Net envelope of {mid}");
        let read = db.read_body_of(*mid, &e.body);
        assert_eq!(read.as_ref().ok(), Some(body), "seed {seed} cycle {cycle}: Safety Net body of {mid}: {read:?}");
        assert!(e.delivered[0].at_ms > 0, "seed {seed} cycle {cycle}: delivery of {mid}");
    }
    if held {
        for mid in &model.delivered {
            assert!(
                state.safety_net.contains_key(mid),
                "seed {seed} cycle {cycle}: delivered {mid} left the Safety Net"
            );
        }
    }
}

/// The seeds to run: `SLUICE_CRASH_SEEDS=N` runs 0..N (default 40), `SLUICE_CRASH_SEED=K` only K (to rerun
/// a failure).
fn seeds() -> std::ops::Range<u64> {
    let var = |name| std::env::var(name).ok().and_then(|s: String| s.parse::<u64>().ok());
    match var("SLUICE_CRASH_SEED") {
        Some(k) => k..k + 1,
        None => 0..var("SLUICE_CRASH_SEEDS").unwrap_or(40),
    }
}

#[test]
fn acknowledged_commits_survive_random_crashes() {
    for seed in seeds() {
        run_seed(seed, options);
    }
}

#[test]
fn failed_writes_and_syncs_are_never_acknowledged_and_recovery_matches() {
    for seed in seeds() {
        let opts = if seed % 2 == 0 { options } else { churning_options };
        run_seed_with(2000 + seed, opts, Fault::WriteOrSync);
    }
}

#[test]
fn acknowledged_commits_survive_crashes_while_the_disk_runs_full() {
    for seed in seeds() {
        let opts = if seed % 2 == 0 { full_disk_options } else { churning_full_disk_options };
        run_seed_with(3000 + seed, opts, Fault::DiskFull);
    }
}

fn full_disk_options() -> Options {
    Options { reserve_size: 16 << 10, ..options() }
}

fn churning_full_disk_options() -> Options {
    Options { reserve_size: 16 << 10, ..churning_options() }
}

#[test]
fn acknowledged_commits_survive_crashes_during_rotation_checkpoints_and_retirement() {
    for seed in seeds() {
        run_seed(1000 + seed, churning_options);
    }
}

#[test]
fn acknowledged_messages_are_exact_after_clean_reopen() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(sim.clone());
    let (db, _, _) = QueueDb::open(storage.clone(), options()).unwrap();
    let mids: Vec<u64> = rt.block_on(async {
        let mut mids = Vec::new();
        for i in 0..10 {
            let mid = db.allocate_mid();
            db.enqueue(mid, SUBMISSION, envelope(mid), vec![b'x'; i * 100]).await.unwrap();
            mids.push(mid);
        }
        db.commit(vec![Record::CopyDone { mid: mids[0], queue: SUBMISSION }]).await.unwrap();
        db.close().await;
        mids
    });
    let (db, state, _) = QueueDb::open(storage, options()).unwrap();
    assert_eq!(state.messages.keys().copied().collect::<Vec<_>>(), mids[1..].to_vec());
    for (i, mid) in mids.iter().enumerate().skip(1) {
        let m = &state.messages[mid];
        assert_eq!(db.read_body(&m.body).unwrap(), vec![b'x'; i * 100]);
    }
    assert!(state.next_mid > *mids.last().unwrap());
}

#[test]
fn damage_before_the_tail_is_refused_with_file_and_offset() {
    // Enqueues are frames in the generation, finishes are frames in the log: damage the first frame of
    // each in turn, with good frames after it, and a crash (no checkpoint at a clean stop covers them).
    for target in ["gen-", "trn.log"] {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sim = SimStorage::new();
        let (db, _, _) = QueueDb::open(Arc::new(sim.process()), options()).unwrap();
        rt.block_on(async {
            for i in 0..5 {
                let mid = db.allocate_mid();
                db.enqueue(mid, SUBMISSION, envelope(mid), b"hello\r\n".to_vec()).await.unwrap();
                if i < 3 {
                    db.commit(vec![Record::CopyDone { mid, queue: SUBMISSION }]).await.unwrap();
                }
            }
        });
        sim.crash(|_, _| false);
        drop(db);
        let name = sim_names(&sim).into_iter().find(|n| n.starts_with(target)).unwrap();
        let mut bytes = sim.contents(&name).unwrap();
        // Inside the first frame (both headers are 32 bytes): good frames follow it.
        bytes[32 + 30] ^= 0x40;
        sim.set_contents(&name, bytes);
        let err = QueueDb::open(Arc::new(sim.process()), options()).unwrap_err().to_string();
        assert!(err.contains(&name) && err.contains("offset 32"), "{err}");
    }
}

/// Two enqueues whose frames sync side by side, one in each generation lane, and a crash before either
/// sync finished; `keep` says which files keep their unsynced bytes. Returns the MIDs acknowledged before.
fn crash_with_two_frames_in_flight(sim: &SimStorage, keep: impl Fn(&str) -> bool) -> Vec<u64> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    // Every frame is a full batch, handed to a sync thread: the next one is written beside it.
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), Options { batch_size: 1, ..options() }).unwrap();
    let side_by_side = |delay_ms: u64, crash: bool| {
        sim.set_sync_delay(std::time::Duration::from_millis(delay_ms));
        let mut pending = Vec::new();
        let mut mids = Vec::new();
        for body in [&b"first\r\n"[..], b"second\r\n"] {
            let (db, mid) = (db.clone(), db.allocate_mid());
            mids.push(mid);
            pending.push(rt.spawn(async move { db.enqueue(mid, SUBMISSION, envelope(mid), body.to_vec()).await }));
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        if crash {
            // Both frames written and syncing side by side, however slowly this machine got there.
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(delay_ms);
            while sim.syncs_in_progress() < 2 {
                assert!(std::time::Instant::now() < deadline, "two frames never synced side by side");
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            sim.crash(|name, _| keep(name));
        }
        for p in pending {
            let acked = rt.block_on(p).unwrap().is_ok();
            assert_eq!(acked, !crash, "a commit whose sync was cut by the crash was acknowledged");
        }
        mids
    };
    // The first pair opens the second lane (its creation syncs too); the second is cut by the crash.
    let before = side_by_side(30, false);
    // The writer replaces the spare the second lane took; that file's sync must not count as a frame's below.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while sim_names(sim).iter().filter(|n| n.ends_with(".que")).count() < 3 || sim.syncs_in_progress() > 0 {
        assert!(std::time::Instant::now() < deadline, "no new spare generation: {:?}", sim_names(sim));
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    side_by_side(3_000, true);
    sim.set_sync_delay(std::time::Duration::ZERO);
    before
}

#[test]
fn a_frame_durable_ahead_of_a_lost_one_is_dropped_and_its_sequence_reused_safely() {
    // The second frame (in the second generation) reached the disk whole; the first (in the first) did not.
    let sim = SimStorage::new();
    let mut mids = crash_with_two_frames_in_flight(&sim, |name| name.ends_with("-2.que"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (db, state, report) = QueueDb::open(Arc::new(sim.process()), options()).unwrap();
    assert_eq!(report.unanswered_frames, 1);
    assert_eq!(state.messages.keys().copied().collect::<Vec<_>>(), mids, "a frame never answered came back");
    // Its sequence is used again by the next frames: a second crash and recovery must not meet it twice.
    rt.block_on(async {
        for _ in 0..3 {
            let mid = db.allocate_mid();
            db.enqueue(mid, SUBMISSION, envelope(mid), b"after\r\n".to_vec()).await.unwrap();
            mids.push(mid);
        }
    });
    sim.crash(|_, _| false);
    drop(db);
    let (_, state, report) = QueueDb::open(Arc::new(sim.process()), options()).unwrap();
    assert_eq!(report.unanswered_frames, 0);
    assert_eq!(state.messages.keys().copied().collect::<Vec<_>>(), mids);
}

#[test]
fn a_missing_frame_with_acknowledged_frames_after_it_is_damage() {
    // One client, one frame at a time: the enqueues go to the generation, the finish to the log.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), options()).unwrap();
    rt.block_on(async {
        let first = db.allocate_mid();
        db.enqueue(first, SUBMISSION, envelope(first), b"first\r\n".to_vec()).await.unwrap();
        db.commit(vec![Record::CopyDone { mid: first, queue: SUBMISSION }]).await.unwrap();
        for _ in 0..2 {
            let mid = db.allocate_mid();
            db.enqueue(mid, SUBMISSION, envelope(mid), b"later\r\n".to_vec()).await.unwrap();
        }
    });
    sim.crash(|_, _| false);
    drop(db);
    // The log's frame goes: two acknowledged frames follow the gap, more than can have been in flight.
    sim.set_contents("trn.log", sim.contents("trn.log").unwrap()[..32].to_vec());
    let err = QueueDb::open(Arc::new(sim.process()), options()).unwrap_err().to_string();
    assert!(err.contains("are missing before frame"), "{err}");
}

#[test]
fn after_a_failure_no_generation_is_retired_that_the_checkpoint_does_not_cover() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let opts = Options {
        generation_interval: std::time::Duration::from_millis(1),
        safety_net_hold: std::time::Duration::ZERO,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        maintenance_interval: std::time::Duration::from_secs(3600),
        ..options()
    };
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), opts.clone()).unwrap();
    let kept = rt.block_on(async {
        // A message finished in the first generation, another in the next: the first is due to retire,
        // but no checkpoint covers its frames yet.
        let first = db.allocate_mid();
        db.enqueue(first, SUBMISSION, envelope(first), b"first\r\n".to_vec()).await.unwrap();
        db.commit(vec![Record::CopyDone { mid: first, queue: SUBMISSION }]).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        let kept = db.allocate_mid();
        db.enqueue(kept, SUBMISSION, envelope(kept), b"kept\r\n".to_vec()).await.unwrap();
        // The database fails; with no checkpoint possible, retiring must leave the first generation alone.
        sim.fail_write_after(1);
        let mid = db.allocate_mid();
        assert!(db.enqueue(mid, SUBMISSION, envelope(mid), b"refused\r\n".to_vec()).await.is_err());
        let _ = db.evict_safety_net(u64::MAX).await;
        kept
    });
    sim.crash(|_, _| false);
    drop(db);
    let (_, state, _) = QueueDb::open(Arc::new(sim.process()), opts).unwrap();
    assert_eq!(state.messages.keys().copied().collect::<Vec<_>>(), vec![kept]);
}

#[test]
fn a_failed_sync_is_never_acknowledged() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), options()).unwrap();
    rt.block_on(async {
        let mid = db.allocate_mid();
        db.enqueue(mid, SUBMISSION, envelope(mid), b"one\r\n".to_vec()).await.unwrap();
        sim.fail_sync_after(1);
        let mid2 = db.allocate_mid();
        assert!(db.enqueue(mid2, SUBMISSION, envelope(mid2), b"two\r\n".to_vec()).await.is_err());
        // The database stays stopped rather than acknowledging on top of an unknown state.
        let mid3 = db.allocate_mid();
        assert!(db.enqueue(mid3, SUBMISSION, envelope(mid3), b"three\r\n".to_vec()).await.is_err());
    });
    sim.crash(|_, _| false);
    let (_, state, _) = QueueDb::open(Arc::new(sim.process()), options()).unwrap();
    assert_eq!(state.messages.len(), 1);
}

#[test]
fn defragmentation_moves_live_bodies_forward_and_retires_the_old_generation() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let storage: Arc<dyn Storage> = Arc::new(sim.clone());
    let opts = || Options {
        generation_interval: std::time::Duration::from_millis(300),
        safety_net_hold: std::time::Duration::ZERO,
        maintenance_interval: std::time::Duration::ZERO,
        ..Options::default()
    };
    let (db, _, _) = QueueDb::open(storage.clone(), opts()).unwrap();
    let body = |mid: u64| -> Vec<u8> { (0..4096).map(|i| (i as u64 ^ mid) as u8).collect() };
    let (live, old_gens) = rt.block_on(async {
        let mut live = Vec::new();
        for i in 0..40 {
            let mid = db.allocate_mid();
            let r = db.enqueue(mid, SUBMISSION, envelope(mid), body(mid)).await.unwrap();
            if i % 10 == 0 {
                live.push((mid, r));
            } else {
                db.commit(vec![Record::CopyDone { mid, queue: SUBMISSION }]).await.unwrap();
            }
        }
        let old = generations_with_frames(&sim);
        // A new generation for new mail, so that the first ones are closed.
        tokio::time::sleep(std::time::Duration::from_millis(350)).await;
        let mid = db.allocate_mid();
        db.enqueue(mid, SUBMISSION, envelope(mid), body(mid)).await.unwrap();
        let report = db.defrag(std::time::Duration::from_secs(10)).await.unwrap();
        assert_eq!(report.messages_moved, 4, "{report:?}");
        assert!(report.generations_compacted >= 1, "{report:?}");
        assert!(!report.interrupted);
        (live, old)
    });
    let now = sim_names(&sim);
    assert!(old_gens.iter().all(|g| !now.contains(g)), "emptied generations retired: {old_gens:?} {now:?}");
    for (mid, old_ref) in &live {
        assert_eq!(db.read_body_of(*mid, old_ref).unwrap(), body(*mid), "read through the move");
    }
    rt.block_on(db.close());
    let (db, state, _) = QueueDb::open(storage, opts()).unwrap();
    for (mid, _) in &live {
        let m = &state.messages[mid];
        assert_eq!(db.read_body(&m.body).unwrap(), body(*mid), "recovered at its new place");
    }
}

fn sim_names(sim: &SimStorage) -> Vec<String> {
    sluice_queue_db::Storage::list(sim).unwrap()
}

/// The generation files holding frames: not the empty one the writer creates ahead of need.
fn generations_with_frames(sim: &SimStorage) -> Vec<String> {
    let header = 32;
    sim_names(sim)
        .into_iter()
        .filter(|n| n.starts_with("gen-") && sim.contents(n).is_some_and(|c| c.len() > header))
        .collect()
}

#[test]
fn a_generation_is_retired_only_once_a_checkpoint_covers_its_frames() {
    // Checkpoints only when retirement needs one: a finished generation holds the frames of its enqueues,
    // which recovery needs until a checkpoint covers them.
    let opts = || Options {
        generation_interval: std::time::Duration::from_millis(50),
        safety_net_hold: std::time::Duration::ZERO,
        maintenance_interval: std::time::Duration::ZERO,
        checkpoint_interval: std::time::Duration::from_secs(3600),
        ..Options::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), opts()).unwrap();
    let first = rt.block_on(async {
        let mut mids = Vec::new();
        for _ in 0..5 {
            let mid = db.allocate_mid();
            db.enqueue(mid, SUBMISSION, envelope(mid), b"finished\r\n".to_vec()).await.unwrap();
            db.commit(vec![Record::CopyDone { mid, queue: SUBMISSION }]).await.unwrap();
            mids.push(mid);
        }
        let first = generations_with_frames(&sim);
        tokio::time::sleep(std::time::Duration::from_millis(80)).await;
        // New mail opens the next generation; the first one is finished and due.
        let mid = db.allocate_mid();
        db.enqueue(mid, SUBMISSION, envelope(mid), b"live\r\n".to_vec()).await.unwrap();
        db.commit(vec![]).await.unwrap();
        first
    });
    // One generation, or two when this machine took longer than the interval over the first five.
    assert!(!first.is_empty());
    let now = sim_names(&sim);
    assert!(first.iter().all(|g| !now.contains(g)), "the finished generations were retired: {first:?} {now:?}");
    sim.crash(|_, _| false);
    drop(db);
    let (_, state, _) = QueueDb::open(Arc::new(sim.process()), opts())
        .unwrap_or_else(|e| panic!("reopen after retirement failed: {e}"));
    assert_eq!(state.messages.len(), 1, "only the live message is left");
}

#[test]
fn a_full_disk_refuses_new_mail_keeps_what_was_acknowledged_and_recovers_by_itself() {
    let opts = || Options {
        generation_interval: std::time::Duration::from_millis(100),
        safety_net_hold: std::time::Duration::from_secs(3600),
        maintenance_interval: std::time::Duration::ZERO,
        reserve_size: 64 << 10,
        ..Options::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    sim.set_capacity(Some(1 << 20));
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), opts()).unwrap();
    assert!(sim_names(&sim).iter().filter(|n| n.ends_with(".jrs")).count() == 2, "reserves created");
    let body = |mid: u64| -> Vec<u8> { (0..4000).map(|i| (i as u64 ^ mid) as u8).collect() };
    let acked = rt.block_on(async {
        let mut acked = Vec::new();
        for i in 0..1000 {
            let mid = db.allocate_mid();
            match db.enqueue(mid, SUBMISSION, envelope(mid), body(mid)).await {
                Ok(_) => acked.push(mid),
                Err(sluice_queue_db::CommitError::DiskFull) => break,
                Err(e) => panic!("enqueue {i}: {e}"),
            }
            if i % 20 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        }
        acked
    });
    assert!(acked.len() > 50 && acked.len() < 1000, "the disk ran full after {} messages", acked.len());
    assert!(db.disk_full(), "the database says so");
    assert!(sim_names(&sim).iter().filter(|n| n.ends_with(".jrs")).count() < 2, "a reserve was released");
    let keep: Vec<u64> = acked[acked.len() - 3..].to_vec();
    rt.block_on(async {
        // Delivery outcomes need no new space: they are committed while the disk is full.
        for mid in &acked[..acked.len() - 3] {
            db.commit(vec![Record::CopyDone { mid: *mid, queue: SUBMISSION }]).await.unwrap();
        }
        // Finished generations go (the Safety Net gives way), the reserves come back, intake resumes.
        let mut resumed = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            db.commit(vec![]).await.unwrap();
            if !db.disk_full() {
                resumed = true;
                break;
            }
        }
        assert!(resumed, "still full: {:?}, {} bytes used", sim_names(&sim), sim.used());
        let mid = db.allocate_mid();
        db.enqueue(mid, SUBMISSION, envelope(mid), body(mid)).await.unwrap();
    });
    assert_eq!(sim_names(&sim).iter().filter(|n| n.ends_with(".jrs")).count(), 2, "reserves recreated");
    sim.crash(|_, _| false);
    drop(db);
    let (db, state, _) = QueueDb::open(Arc::new(sim.process()), opts()).unwrap();
    for mid in &keep {
        assert_eq!(db.read_body(&state.messages[mid].body).unwrap(), body(*mid), "acknowledged and kept");
    }
    assert_eq!(state.messages.len(), 4, "the three kept and the one after recovery");
}

#[test]
fn a_crash_right_after_the_disk_ran_full_reopens_with_everything_acknowledged() {
    // A write that meets a full disk leaves a partial frame behind; it must be wiped before anything else is
    // written, or a crash pairs it with the next torn write and the database reads as damaged.
    for (capacity, keep_unsynced) in [(300 << 10, true), (700 << 10, false), (1 << 20, true), (900 << 10, true)] {
        let opts = || Options {
            reserve_size: 32 << 10,
            maintenance_interval: std::time::Duration::ZERO,
            ..Options::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sim = SimStorage::new();
        sim.set_capacity(Some(capacity));
        let (db, _, _) = QueueDb::open(Arc::new(sim.process()), opts()).unwrap();
        let acked = rt.block_on(async {
            let mut acked = Vec::new();
            let mut refused = 0;
            for i in 0..2000u64 {
                let mid = db.allocate_mid();
                // Bodies of odd sizes, so that frames end anywhere in a page.
                let body = vec![b'a' + (i % 26) as u8; 3000 + (i as usize * 37) % 5000];
                match db.enqueue(mid, SUBMISSION, envelope(mid), body).await {
                    Ok(_) => acked.push(mid),
                    Err(sluice_queue_db::CommitError::DiskFull) => {
                        refused += 1;
                        // Records without bodies still go in, then one more refused enqueue.
                        let _ = db.commit(vec![]).await;
                        if refused == 3 {
                            break;
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            acked
        });
        // Unsynced bytes kept (the page cache reached the disk after all) or lost.
        sim.crash(|_, _| keep_unsynced);
        drop(db);
        let (_, state, _) = QueueDb::open(Arc::new(sim.process()), opts())
            .unwrap_or_else(|e| panic!("capacity {capacity}: reopen after a full disk failed: {e}"));
        for mid in &acked {
            assert!(state.messages.contains_key(mid), "capacity {capacity}: message {mid} acknowledged and lost");
        }
    }
}

#[test]
fn a_message_id_too_large_to_count_from_is_refused_not_wrapped_around() {
    // A damaged or crafted database naming a next MID near the top of the range: counting on from it would
    // wrap to MIDs already used.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let sim = SimStorage::new();
    let (db, _, _) = QueueDb::open(Arc::new(sim.process()), options()).unwrap();
    rt.block_on(db.commit(vec![Record::MidHighWater { next: u64::MAX - 10 }])).unwrap();
    sim.crash(|_, _| false);
    drop(db);
    let err = QueueDb::open(Arc::new(sim.process()), options()).map(|_| ()).unwrap_err();
    assert!(matches!(err, sluice_queue_db::OpenError::OutOfRange { .. }), "{err}");
    assert!(err.to_string().contains("salvage"), "{err}");
}
