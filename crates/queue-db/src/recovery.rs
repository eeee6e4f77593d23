//! Recovery: how [`QueueDb::open`](crate::QueueDb::open) finds the committed state in whatever a crash
//! left, then starts the writer. Each function is one step of `docs/queue-database.md` "Recovery", in
//! order; the argument that no committed transaction is lost is in the section after it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::mpsc;

use crate::checkpoint::{self, Cursor};
use crate::generation::{self, GenHeader};
use crate::record::Record;
use crate::state::State;
use crate::storage::{Storage, StorageFile};
use crate::walk::{DbFile, Kind, Mode, Read, Walker};
use crate::writer::{self, Generations, IN_FLIGHT, LANES, Writer, WriterInit};
use crate::{
    LOG, LOG_NEW, LOG_NEXT, MID_HEADROOM, OpenError, Options, QueueDb, RecoveryReport, Relocations, Stats, log,
    log_files, now_ms, random_u64,
};

/// A frame found at recovery that the checkpoint does not cover.
struct Replayed {
    seq: u64,
    /// The file, as described in errors.
    file: String,
    /// The generation and offset of a frame in a generation (`None` in a log).
    at: Option<(u32, u64)>,
    records: Vec<Record>,
}

/// The generation files found at open, their headers read.
struct Gens {
    /// Every generation file as (number, name), lowest first, the unfinished ones too.
    listed: Vec<(u32, String)>,
    /// Those with a whole header, open.
    open: HashMap<u32, (String, Arc<dyn StorageFile>)>,
    headers: HashMap<u32, GenHeader>,
    /// Shorter than their header: a crash while they were created. Removed once recovery has read the logs.
    unfinished: Vec<String>,
}

/// What the checkpoint says.
struct Start {
    state: State,
    /// The sequence replay continues from (`None` without a checkpoint: from the first frame found).
    covered: Option<u64>,
    cursor: Cursor,
}

/// What reading the logs and generations found.
#[derive(Default)]
struct Found {
    /// Every frame the checkpoint does not cover.
    frames: Vec<Replayed>,
    /// The sequence of each file's last good frame.
    last_in: HashMap<String, u64>,
    /// Files that end in a bad frame: only the writes in flight can have been torn, one per file.
    torn: Vec<String>,
    /// Where each generation's good frames end.
    gen_ends: HashMap<u32, u64>,
}

/// Opens the database in `storage`: the steps of recovery, then the writer. See [`QueueDb::open_with`].
pub(crate) fn open<T>(
    storage: Arc<dyn Storage>,
    opts: Options,
    load: impl FnOnce(&State) -> T,
) -> Result<(QueueDb, T, RecoveryReport), OpenError> {
    let names = storage.list().map_err(|e| OpenError::io(&storage.describe(""), e))?;
    clear_leftovers(storage.as_ref(), &names)?;
    let walker = Walker::new(storage.as_ref(), Mode::Recover);
    let mut gens = open_generations(&walker)?;
    let mut report = RecoveryReport::default();
    // The checkpoint, then every frame after it: from the logs (closed ones by sequence, then trn.log)
    // and from the generations at or after the checkpoint's cursor, merged by sequence.
    let Start { mut state, covered, cursor } = read_checkpoint(storage.as_ref())?;
    let log_names = log_files(&names);
    if log_names.is_empty() && covered.is_none() && !gens.open.is_empty() {
        return Err(OpenError::Missing { file: storage.describe(LOG) });
    }
    let mut found = Found::default();
    read_logs(&walker, &log_names, covered, &mut found, &mut report)?;
    read_generations(&walker, &gens, covered, &mut found, &mut report)?;
    let (frames, next_seq) = order_frames(&mut found, covered, &mut report)?;
    let newest_generation = apply_and_trim(storage.as_ref(), &mut gens, frames, &found, &mut state, &mut report)?;
    // Generation numbers are never reused: not those of files still here, of bodies the frames name, nor
    // of the generation the last checkpoint saw (it may have been retired since).
    // Numbers read from the files are checked before anything counts from them: a damaged or crafted file
    // must be refused, never wrap a counter around to numbers already used.
    let newest = gens.listed.last().map_or(0, |(n, _)| *n).max(newest_generation).max(cursor.generation);
    if newest > u32::MAX / 2 {
        return Err(OpenError::OutOfRange { what: format!("generation {newest}") });
    }
    let next_generation = newest + 1;
    if state.next_mid > u64::MAX / 2 {
        return Err(OpenError::OutOfRange { what: format!("message id {}", state.next_mid) });
    }
    let high_water = state.next_mid + MID_HEADROOM;
    let mut resumed = Resumed { state, high_water, next_seq, next_generation };
    reseal(storage.as_ref(), &opts, (&names, &log_names), &mut gens, &mut resumed, &mut report)?;
    start_writer(storage, opts, gens.open, resumed, load).map(|(db, loaded)| (db, loaded, report))
}

/// Step 1: removes the files of interrupted work (a checkpoint not yet renamed into place: the old one is
/// whole; an old-style rewrite). `trntmp.log` is removed in [`reseal`], after recovery. The reserve files
/// are released for recovery (its checkpoint and fresh log need room on a full disk) and recreated by the
/// writer when there is space.
fn clear_leftovers(storage: &dyn Storage, names: &[String]) -> Result<(), OpenError> {
    for leftover in [checkpoint::CHECKPOINT_NEW, LOG_NEW].into_iter().chain(writer::RESERVES) {
        if names.iter().any(|n| n == leftover) {
            storage.remove(leftover).map_err(|e| OpenError::io(&storage.describe(leftover), e))?;
        }
    }
    Ok(())
}

/// Step 1, continued: reads every generation's header.
fn open_generations(walker: &Walker<'_>) -> Result<Gens, OpenError> {
    let mut gens = Gens { listed: Vec::new(), open: HashMap::new(), headers: HashMap::new(), unfinished: Vec::new() };
    for f in walker.generations()? {
        let Kind::Generation(number) = f.kind else { continue };
        gens.listed.push((number, f.name.clone()));
        match generation::read_header(f.file.as_ref(), &f.described) {
            Ok(h) => {
                gens.headers.insert(number, h);
                gens.open.insert(number, (f.name, f.file));
            }
            // A crash while a generation was being created leaves it shorter than its header: it holds
            // nothing, and is removed below unless the log refers to it (then the start is refused).
            Err(_) if f.file.len().unwrap_or(0) <= generation::GEN_HEADER_LEN => gens.unfinished.push(f.name),
            Err(e) => return Err(e),
        }
    }
    Ok(gens)
}

/// Step 2: loads the checkpoint, if there is one.
fn read_checkpoint(storage: &dyn Storage) -> Result<Start, OpenError> {
    Ok(match checkpoint::read(storage)? {
        Some(c) => Start { state: c.state, covered: Some(c.next_seq), cursor: c.cursor },
        None => Start { state: State::default(), covered: None, cursor: Cursor::default() },
    })
}

/// Steps 3 and 4 for the logs: reads the closed logs and `trn.log` frame by frame. Only the last of them
/// may end in a torn tail, and no log frame may store a body.
fn read_logs(
    walker: &Walker<'_>,
    log_names: &[String],
    covered: Option<u64>,
    found: &mut Found,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    for (i, name) in log_names.iter().enumerate() {
        let f = walker.open(name, Kind::Log)?;
        let described = f.described.clone();
        let mut frames = Vec::new();
        let scan = match walker.read(&f, |frame| {
            frames.push(frame);
            Ok(())
        })? {
            // A crash while recovery was creating the fresh log: it holds nothing yet.
            Read::Unwritten => continue,
            Read::Bad(e) => return Err(e),
            Read::Frames(_, scan) => scan,
        };
        if scan.torn_bytes > 0 {
            if i + 1 != log_names.len() {
                return Err(OpenError::Corrupt {
                    file: described,
                    offset: scan.end,
                    what: "a closed log file ends in a bad frame".to_owned(),
                });
            }
            report.torn_bytes += scan.torn_bytes;
            found.torn.push(described.clone());
        }
        for f in frames {
            if let Some(r) = f.records.iter().find(|r| matches!(r, Record::Enqueue { .. } | Record::Relocate { .. })) {
                return Err(OpenError::Corrupt {
                    file: described,
                    offset: f.offset,
                    what: format!("frame {} stores a body in the log ({r:?})", f.seq),
                });
            }
            found.last_in.insert(described.clone(), f.seq);
            if covered.is_none_or(|c| f.seq >= c) {
                found.frames.push(Replayed { seq: f.seq, file: described.clone(), at: None, records: f.records });
            }
        }
    }
    Ok(())
}

/// Steps 3 and 4 for the generations: every generation is read whole, every frame checked against its CRC:
/// damage anywhere in what the database holds refuses the start, not only in what the checkpoint does not
/// cover. Frames the checkpoint covers are checked and dropped at once. Only the generations that can have
/// had a frame in flight may end in a torn tail.
fn read_generations(
    walker: &Walker<'_>,
    gens: &Gens,
    covered: Option<u64>,
    found: &mut Found,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    // The generations that can have had a frame in flight: the newest `LANES` that hold anything past
    // their header (the writer creates the next generation ahead of need: an empty one is newer than
    // the lanes it will follow).
    let holds_frames =
        |n: &u32| gens.open.get(n).is_some_and(|(_, f)| f.len().unwrap_or(0) > generation::GEN_HEADER_LEN);
    let newest_lanes = gens.listed.iter().rev().filter(|(n, _)| holds_frames(n)).nth(LANES - 1).map_or(0, |(n, _)| *n);
    let mut scanned: Vec<u32> = gens.open.keys().copied().collect();
    scanned.sort_unstable();
    for number in scanned {
        let (name, file) = &gens.open[&number];
        let f = DbFile {
            name: name.clone(),
            described: walker.describe(name),
            file: file.clone(),
            kind: Kind::Generation(number),
        };
        let described = f.described.clone();
        let header = crate::walk::Header::Generation(gens.headers[&number]);
        let scan = walker.frames(&f, &header, |frame| {
            for r in &frame.records {
                if let Record::Enqueue { body, .. } | Record::Relocate { body, .. } = r
                    && (body.generation != number
                        || body.offset < frame.bodies.0
                        || body.offset + body.len > frame.bodies.1)
                {
                    return Err(OpenError::Corrupt {
                        file: described.clone(),
                        offset: frame.offset,
                        what: format!("frame {} refers to a body outside itself", frame.seq),
                    });
                }
            }
            found.last_in.insert(described.clone(), frame.seq);
            if covered.is_none_or(|c| frame.seq >= c) {
                let at = Some((number, frame.offset));
                found.frames.push(Replayed { seq: frame.seq, file: described.clone(), at, records: frame.records });
            }
            Ok(())
        })?;
        if scan.torn_bytes > 0 {
            if number < newest_lanes {
                return Err(OpenError::Corrupt {
                    file: described,
                    offset: scan.end,
                    what: format!("a generation older than the newest {LANES} ends in a bad frame"),
                });
            }
            report.torn_bytes += scan.torn_bytes;
            found.torn.push(described.clone());
        }
        found.gen_ends.insert(number, scan.end);
    }
    Ok(())
}

/// Step 4, across files, and step 5: at most `IN_FLIGHT` files may end torn; the frames are merged by
/// sequence and must follow on from the checkpoint's without a repeat. Frames after a gap that were synced
/// beside the lost one and never answered are dropped (and their place cut off the generation with the
/// torn tails); anything else after a gap is damage. Returns the frames to apply and the next sequence.
fn order_frames(
    found: &mut Found,
    covered: Option<u64>,
    report: &mut RecoveryReport,
) -> Result<(Vec<Replayed>, u64), OpenError> {
    if found.torn.len() > IN_FLIGHT {
        return Err(OpenError::Corrupt {
            file: found.torn.join(" and "),
            offset: 0,
            what: format!(
                "{} files end in a bad frame; a crash tears only the writes in flight, at most {IN_FLIGHT}",
                found.torn.len()
            ),
        });
    }
    let mut frames = std::mem::take(&mut found.frames);
    frames.sort_by_key(|f| f.seq);
    let mut next_seq = covered;
    let mut previous: Option<&String> = None;
    let mut replayed = frames.len();
    for (i, f) in frames.iter().enumerate() {
        let seq = f.seq;
        if let Some(expected) = next_seq
            && seq != expected
        {
            // Frames are synced up to `IN_FLIGHT` at a time, each in a file of its own, and answered in
            // sequence: frames durable past a missing one were never answered. They can only be the
            // few right after the gap, each the last frame of its file; anything else is damage.
            let after = &frames[i..];
            let unanswered = seq > expected
                && after.len() < IN_FLIGHT
                && after
                    .iter()
                    .all(|a| a.seq < expected + IN_FLIGHT as u64 && found.last_in.get(&a.file) == Some(&a.seq));
            if unanswered {
                replayed = i;
                break;
            }
            let what = if seq < expected {
                format!("frame {seq} appears twice (also in {})", previous.map_or("?", |p| p.as_str()))
            } else {
                format!("frames {expected} to {} are missing before frame {seq}", seq - 1)
            };
            return Err(OpenError::Corrupt { file: f.file.clone(), offset: 0, what });
        }
        next_seq = Some(seq + 1);
        previous = Some(&f.file);
    }
    for f in frames.drain(replayed..) {
        // Cut off with the torn tails below, before anything is written: its sequence is used again.
        if let Some((number, offset)) = f.at {
            let end = found.gen_ends.entry(number).or_insert(offset);
            *end = (*end).min(offset);
        }
        report.unanswered_frames += 1;
    }
    report.frames = frames.len();
    Ok((frames, next_seq.unwrap_or(0)))
}

/// Step 6: applies the frames, removes the unfinished generations, cuts each generation's torn tail (or
/// zeros of an extension that never got its data) off, and checks that every live message's body lies
/// inside its generation. Returns the newest generation the frames name.
fn apply_and_trim(
    storage: &dyn Storage,
    gens: &mut Gens,
    frames: Vec<Replayed>,
    found: &Found,
    state: &mut State,
    report: &mut RecoveryReport,
) -> Result<u32, OpenError> {
    // Generation numbers are never reused, also when the newest generation was already retired.
    let mut newest_generation = 0;
    for f in &frames {
        for r in &f.records {
            if let Record::Enqueue { body, .. } | Record::Relocate { body, .. } = r {
                newest_generation = newest_generation.max(body.generation);
            }
            state.apply(r);
            report.records += 1;
        }
    }
    drop(frames);
    for name in gens.unfinished.drain(..) {
        storage.remove(&name).map_err(|e| OpenError::io(&storage.describe(&name), e))?;
    }
    // A torn tail (or zeros of an extension that never got its data) is cut off, so that everything
    // before the next checkpoint's cursor is good frames and a bad one found there later is damage.
    for (number, end) in &found.gen_ends {
        let (name, file) = &gens.open[number];
        let len = file.len().map_err(|e| OpenError::io(&storage.describe(name), e))?;
        if *end < len {
            file.set_len(*end)
                .and_then(|()| file.sync_data())
                .map_err(|e| OpenError::io(&storage.describe(name), e))?;
        }
    }
    for m in state.messages.values() {
        let Some((name, file)) = gens.open.get(&m.body.generation) else {
            return Err(OpenError::Missing { file: format!("generation {} (message {})", m.body.generation, m.mid) });
        };
        let end = m.body.offset + m.body.len;
        let len = file.len().map_err(|e| OpenError::io(name, e))?;
        if end > len {
            return Err(OpenError::Corrupt {
                file: storage.describe(name),
                offset: m.body.offset,
                what: format!("body of message {} extends past the end of the file", m.mid),
            });
        }
    }
    Ok(newest_generation)
}

/// Step 7: writes a checkpoint of the recovered state with the cursor at the next generation: recovery next
/// time starts from here. Only then may files go whose frames the old checkpoint did not cover: the logs,
/// and the generations no live message uses whose Safety Net hold has passed.
fn reseal(
    storage: &dyn Storage,
    opts: &Options,
    (names, log_names): (&[String], &[String]),
    gens: &mut Gens,
    resumed: &mut Resumed,
    report: &mut RecoveryReport,
) -> Result<(), OpenError> {
    let Resumed { state, high_water, next_seq, next_generation } = resumed;
    // The generations to retire now: none holds a live message, and their Safety Net hold has passed.
    let referenced: HashSet<u32> = state.messages.values().map(|m| m.body.generation).collect();
    let hold_ms = (opts.safety_net_hold + opts.generation_interval).as_millis() as i64;
    let now = now_ms();
    let retiring: Vec<(u32, String)> = gens
        .open
        .iter()
        .filter(|(number, _)| !referenced.contains(number) && gens.headers[number].created_ms + hold_ms < now)
        .map(|(number, (name, _))| (*number, name.clone()))
        .collect();
    // A Safety Net entry goes with its generation: one retired now, or already gone (retired after the
    // checkpoint that still listed the entry was written).
    state.prune_safety_net(|g| !gens.open.contains_key(&g) || retiring.iter().any(|(r, _)| *r == g));
    let cursor = Cursor { generation: *next_generation, offset: 0 };
    checkpoint::write(storage, state, *high_water, *next_seq, cursor, random_u64())
        .map_err(|e| OpenError::io(&storage.describe(checkpoint::CHECKPOINT), e))?;
    for name in log_names.iter().chain([LOG_NEXT.to_owned()].iter()) {
        match storage.remove(name) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(OpenError::io(&storage.describe(name), e)),
        }
    }
    for (_, name) in &retiring {
        storage.remove(name).map_err(|e| OpenError::io(&storage.describe(name), e))?;
        report.generations_removed += 1;
    }
    gens.open.retain(|_, (name, _)| names.contains(name) && storage.open(name, false).is_ok());
    Ok(())
}

/// What the writer resumes from.
struct Resumed {
    state: State,
    high_water: u64,
    next_seq: u64,
    next_generation: u32,
}

/// Step 7, continued: starts a fresh `trn.log`, hands the state to `load`, and starts the writer, which
/// opens a new generation for new mail. The next MID is the persisted high-water mark.
fn start_writer<T>(
    storage: Arc<dyn Storage>,
    opts: Options,
    open_gens: HashMap<u32, (String, Arc<dyn StorageFile>)>,
    resumed: Resumed,
    load: impl FnOnce(&State) -> T,
) -> Result<(QueueDb, T), OpenError> {
    let Resumed { mut state, high_water, next_seq, next_generation } = resumed;
    let salt = random_u64();
    let io = |e| OpenError::io(&storage.describe(LOG), e);
    let header = log::encode_header(&log::LogHeader { salt, first_seq: next_seq });
    let log_file = storage.open(LOG, true).map_err(io)?;
    log_file.set_len(0).map_err(io)?;
    log_file.write_at(&header, 0).map_err(io)?;
    log_file.sync_data().map_err(io)?;
    storage.sync_dir().map_err(io)?;
    let log_end = header.len() as u64;
    state.next_mid = state.next_mid.max(1);
    let next_mid = state.next_mid;
    let loaded = load(&state);

    let generations: Generations = Arc::new(RwLock::new(open_gens));
    let (tx, rx) = mpsc::channel(opts.queue_depth.max(1));
    let stats = Arc::new(Stats::default());
    let relocated: Relocations = Arc::default();
    let disk_full = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));
    let mut w = Writer::new(WriterInit {
        stats: stats.clone(),
        disk_full: disk_full.clone(),
        stopped: stopped.clone(),
        relocated: relocated.clone(),
        storage: storage.clone(),
        log: log_file,
        log_end,
        salt,
        seq: next_seq,
        next_generation,
        generations: generations.clone(),
        high_water,
        state,
        opts,
    })
    .map_err(|e| OpenError::io("queue database writer", e))?;
    w.recreate_reserves();
    let handle = std::thread::Builder::new()
        .name("queue-db-writer".into())
        .spawn(move || w.run(rx))
        .map_err(|e| OpenError::io("writer thread", e))?;
    let db = QueueDb {
        tx,
        stats,
        storage,
        disk_full,
        stopped,
        relocated,
        generations,
        next_mid: Arc::new(AtomicU64::new(next_mid)),
        writer: Arc::new(Mutex::new(Some(handle))),
    };
    Ok((db, loaded))
}
