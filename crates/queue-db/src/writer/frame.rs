//! Building and writing frames: a batch becomes one frame, into a generation lane when it stores bodies
//! (the bodies inside it) or into the log otherwise.

use super::*;

/// The active transaction log, where frames without bodies go.
pub(super) struct ActiveLog {
    pub(super) file: Arc<dyn StorageFile>,
    /// Where the next frame goes.
    pub(super) end: u64,
    /// Bytes of the log file allocated (zero-filled) so far.
    pub(super) allocated: u64,
    /// The salt of its frames' checksums.
    pub(super) salt: u64,
    /// The sequence of its first frame (its name once it is closed).
    pub(super) first_seq: u64,
}

/// A flush takes no more bodies once it holds this many bytes of them; the rest go in the next flush. It
/// bounds the writer's memory: a frame is built whole before it is written (a single larger body makes a
/// frame of its own).
pub(super) const MAX_FLUSH_BODIES: usize = 16 << 20;

/// One flush's bytes and bookkeeping, built by `prepare`.
#[derive(Default)]
pub(super) struct Prepared {
    /// The frame being built: room for its header, then the bodies (the records are added at the end).
    pub(super) frame: Vec<u8>,
    pub(super) records: Vec<u8>,
    /// The records, to apply to the state once they are durable.
    pub(super) applied: Vec<Record>,
    pub(super) count: u32,
    pub(super) waiters: Vec<Waiter>,
    pub(super) max_mid: Option<Mid>,
    /// The frame goes into the lane's generation (it stores bodies), not the log.
    pub(super) to_generation: bool,
}

/// What one flush needs to answer.
pub(super) enum Waiter {
    Body(oneshot::Sender<Result<BodyRef, CommitError>>, BodyRef),
    Done(oneshot::Sender<Result<(), CommitError>>),
}

impl Waiter {
    pub(super) fn answer(self, result: &Result<(), CommitError>) {
        match (self, result) {
            (Waiter::Body(tx, body), Ok(())) => drop(tx.send(Ok(body))),
            (Waiter::Done(tx), Ok(())) => drop(tx.send(Ok(()))),
            (Waiter::Body(tx, _), Err(e)) => drop(tx.send(Err(e.clone()))),
            (Waiter::Done(tx), Err(e)) => drop(tx.send(Err(e.clone()))),
        }
    }
}

/// Splits off the operations past the body budget of one flush (always keeping at least the first one).
pub(super) fn split_at_body_budget(batch: &mut Vec<Op>) -> Vec<Op> {
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

impl Writer {
    /// Flushes the batch: one frame, or several when its bodies exceed what one flush takes.
    pub(super) fn flush(&mut self, batch: &mut Vec<Op>) {
        while !batch.is_empty() {
            let mut rest = split_at_body_budget(batch);
            self.flush_one(batch);
            std::mem::swap(batch, &mut rest);
        }
    }

    pub(super) fn flush_one(&mut self, batch: &mut Vec<Op>) {
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
        let hand_off = ops * 10 >= self.opts.batch_size.max(1) * 7 || !self.pipeline.inflight.is_empty();
        let result = self.prepare(batch, &mut out, lane);
        let Prepared { mut frame, mut records, mut applied, mut count, mut waiters, max_mid, to_generation } = out;
        let mut high_water = None;
        let mut result = result.and_then(|()| {
            if let Some(mid) = max_mid
                && mid + MID_HEADROOM / 2 >= self.pipeline.high_water
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
            Ok(Some(Written { seq, target, done })) => self.pipeline.inflight.push_back(InFlight {
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

    /// The lane the next frame with bodies goes into: an open one that is not syncing, else one to open,
    /// else (both syncing) the one that started syncing first.
    pub(super) fn lane_for_bodies(&self) -> usize {
        let free = |i: &usize| !self.busy(Target::Lane(*i));
        (0..LANES)
            .filter(free)
            .find(|i| self.gens.lanes[*i].is_some())
            .or_else(|| (0..LANES).find(free))
            .or_else(|| {
                self.pipeline.inflight.iter().find_map(|f| match f.target {
                    Target::Lane(i) => Some(i),
                    Target::Log => None,
                })
            })
            .unwrap_or(0)
    }

    /// The generation numbers taking bodies now.
    pub(super) fn lane_numbers(&self) -> impl Iterator<Item = u32> + '_ {
        self.gens.lanes.iter().flatten().map(|g| g.number)
    }

    pub(super) fn prepare(&mut self, batch: &mut Vec<Op>, out: &mut Prepared, lane: usize) -> Result<(), CommitError> {
        let Prepared { frame, records, applied, count, waiters, max_mid, to_generation } = out;
        let mut failure = self.pipeline.failed.clone().map(CommitError::Failed);
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
                    let Some(current) = self.gens.lanes[lane].as_ref().filter(|_| refused.is_none()) else {
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
                Op::SafetyNet { filter, reply } => drop(reply.send(self.state.safety_net_matches(&filter))),
            }
        }
        Ok(())
    }

    /// Writes one frame into `target` and hands its fdatasync to a sync thread (`hand_off`), or syncs it on
    /// this thread; returns its sequence, where it went and the sync's outcome when it is known, `None`
    /// when there was nothing to write. One file, one sync: the frame's checksum
    /// covers its bodies, so a torn flush is a bad frame, whichever of its pages reached the disk.
    pub(super) fn write(
        &mut self,
        target: Target,
        frame: &mut Vec<u8>,
        records: &[u8],
        count: u32,
        hand_off: bool,
    ) -> Result<Option<Written>, CommitError> {
        // Nothing is written after a failure: a failed write or sync leaves its frame, with this frame's
        // sequence, where a crash may keep it (a defragmentation step found writing on after one).
        if let Some(f) = &self.pipeline.failed {
            return Err(CommitError::Failed(f.clone()));
        }
        if count == 0 {
            return Ok(None);
        }
        // One frame at a time per file: a later frame complete behind a torn one in the same file would
        // read as damage, not as a torn tail.
        self.wait_free(target);
        if let Some(f) = &self.pipeline.failed {
            return Err(CommitError::Failed(f.clone()));
        }
        let file = match target {
            Target::Lane(lane) => self.write_lane(lane, frame, records, count)?,
            Target::Log => self.write_log(frame, records, count)?,
        };
        let seq = self.pipeline.seq;
        self.pipeline.seq += 1;
        if !hand_off {
            let result = file.sync_data();
            self.stats.frame_syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Ok(Some(Written { seq, target, done: Some(result) }));
        }
        if self.pipeline.sync_jobs.send(SyncJob { seq, file }).is_err() {
            return Err(self.fail("the queue database's sync threads stopped".to_owned()));
        }
        Ok(Some(Written { seq, target, done: None }))
    }

    /// Writes one frame at the end of a lane's generation, and zero-filled space after it while flushes are
    /// small; returns the file to sync.
    fn write_lane(
        &mut self,
        lane: usize,
        frame: &mut Vec<u8>,
        records: &[u8],
        count: u32,
    ) -> Result<Arc<dyn StorageFile>, CommitError> {
        let current = self.gens.lanes[lane].as_ref().ok_or(CommitError::Closed)?;
        finish_frame(current.salt, self.pipeline.seq, count, records, frame, 0);
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
        if let Some(current) = self.gens.lanes[lane].as_mut() {
            current.end = end;
            current.allocated = current.allocated.max(fill);
        }
        Ok(file)
    }

    /// Writes one frame at the end of the transaction log, zero-filled space ahead of it first; returns the
    /// file to sync.
    fn write_log(
        &mut self,
        frame: &mut Vec<u8>,
        records: &[u8],
        count: u32,
    ) -> Result<Arc<dyn StorageFile>, CommitError> {
        finish_frame(self.log.salt, self.pipeline.seq, count, records, frame, 0);
        let needed = frame.len() as u64;
        // Without space for more zero-filled log, the frame is appended as it is (zeros are never
        // worth a reserve).
        match self.preallocate_log(needed) {
            Err(e) if is_disk_full(&e) => drop(self.log.file.set_len(self.log.end.max(self.log.allocated))),
            Err(e) => return Err(self.fail(format!("writing the transaction log: {e}"))),
            Ok(()) => {}
        }
        let at = self.log.end;
        // The retry may release a reserve but not evict: eviction can checkpoint, a checkpoint
        // rotates the log, and this frame is encoded for this log file at this offset.
        let evicting = std::mem::replace(&mut self.space.evicting, true);
        let log = self.log.file.clone();
        let written = self.retry_when_full(Keep::None, |_| log.write_at(frame, at));
        self.space.evicting = evicting;
        if let Err(e) = written {
            if is_disk_full(&e) {
                if let Err(e) = wipe(self.log.file.as_ref(), at, self.log.end.max(self.log.allocated)) {
                    return Err(self.fail(format!("cleaning up after a full disk in the transaction log: {e}")));
                }
                return Err(self.out_of_space());
            }
            return Err(self.fail(format!("writing the transaction log: {e}")));
        }
        self.log.allocated = self.log.allocated.max(at + needed);
        self.log.end += needed;
        Ok(self.log.file.clone())
    }
}
