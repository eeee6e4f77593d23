//! The life of files: applying durable records to the state, opening, closing and retiring generations,
//! rotating the log, and checkpoints.

use super::*;

/// What tells when a generation may go, and the checkpoints that must cover it first.
pub(super) struct Retention {
    /// Live messages per generation.
    pub(super) live: HashMap<u32, usize>,
    /// When the last live message of a generation finished (wall clock, ms).
    pub(super) finished_at: HashMap<u32, i64>,
    /// The first sequence not covered by the last checkpoint.
    pub(super) checkpoint_seq: u64,
    /// The size of the last checkpoint, which the reserve files are sized to.
    pub(super) checkpoint_bytes: u64,
    /// The generation of the last checkpoint's cursor: older generations hold only frames it covers, so
    /// only they may be retired (a retired generation's frames must never be needed by recovery).
    pub(super) covered_generation: u32,
    pub(super) last_checkpoint: Instant,
    pub(super) last_maintenance: Instant,
}

impl Writer {
    pub(super) fn apply(&mut self, r: &Record) {
        let before = match r {
            Record::Route { mid, .. }
            | Record::CopyDone { mid, .. }
            | Record::CopyDelivered { mid, .. }
            | Record::Relocate { mid, .. } => self.state.messages.get(mid).map(|m| (*mid, m.body.generation)),
            _ => None,
        };
        self.state.apply(r);
        match r {
            Record::Enqueue { body, .. } => *self.retention.live.entry(body.generation).or_default() += 1,
            Record::Relocate { mid, body } => {
                if let Some((_, old)) = before {
                    *self.retention.live.entry(body.generation).or_default() += 1;
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
    pub(super) fn leave_generation(&mut self, generation: u32, finished: Option<i64>) {
        let n = self.retention.live.entry(generation).or_default();
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.retention.live.remove(&generation);
        }
        match finished {
            Some(at) => {
                self.retention.finished_at.insert(generation, at);
            }
            // A move does not start a hold; a generation whose messages all moved away retires at once
            // unless an earlier finish still holds it.
            None => {
                self.retention.finished_at.entry(generation).or_insert(0);
            }
        }
    }

    /// Periodic work between flushes: closing an old generation, retiring finished ones, checkpoints.
    pub(super) fn maintain(&mut self) {
        self.retention.last_maintenance = Instant::now();
        // Closing, retiring and checkpointing see the state of every frame written.
        self.drain();
        if self.pipeline.failed.is_some() {
            return;
        }
        if self.space.disk_full.load(std::sync::atomic::Ordering::Relaxed) {
            // While the disk is full, finished mail does not wait for its Safety Net hold.
            self.evict(u64::MAX, true);
        }
        if self.space.reserves < RESERVES.len() || self.space.disk_full.load(std::sync::atomic::Ordering::Relaxed) {
            self.recreate_reserves();
        }
        // A generation older than the interval is closed even when no new mail comes, so that it can retire.
        for lane in 0..LANES {
            if self.gens.lanes[lane].as_ref().is_some_and(|g| g.opened.elapsed() >= self.opts.generation_interval) {
                self.close_generation(lane);
            }
        }
        self.retire_generations();
        self.prepare_spare();
        if self.retention.last_checkpoint.elapsed() >= self.opts.checkpoint_interval
            && self.pipeline.seq != self.retention.checkpoint_seq
            && let Err(e) = self.checkpoint()
        {
            tracing::error!(error = %e, "checkpoint failed; the log keeps growing until one succeeds");
        }
    }

    /// Unlinks generations whose messages are all finished and whose Safety Net hold has passed.
    pub(super) fn retire_generations(&mut self) {
        self.retire_generations_held(self.opts.safety_net_hold.as_millis() as i64);
    }

    /// Unlinks the finished generations whose last finish is `hold` ms old or more; returns how many.
    pub(super) fn retire_generations_held(&mut self, hold: i64) -> u64 {
        let now = now_ms();
        let due: Vec<u32> = self.retirable().into_iter().filter(|(at, _)| at + hold <= now).map(|(_, g)| g).collect();
        let mut retired = 0;
        for g in self.covered(due) {
            retired += u64::from(self.retire(g).is_some());
        }
        retired
    }

    /// The closed generations without a live message, with their last finish, oldest finish first.
    pub(super) fn retirable(&self) -> Vec<(i64, u32)> {
        let lanes: Vec<u32> = self.lane_numbers().collect();
        let mut due: Vec<(i64, u32)> = self
            .retention
            .finished_at
            .iter()
            .filter(|(g, _)| !lanes.contains(g) && !self.retention.live.contains_key(g))
            .map(|(g, at)| (*at, *g))
            .collect();
        due.sort_unstable();
        due
    }

    /// Of the generations `due` to retire, those a checkpoint covers, taking one first if needed: a
    /// generation's frames must be covered before it goes, and after a checkpoint every closed one is.
    pub(super) fn covered(&mut self, mut due: Vec<u32>) -> Vec<u32> {
        if due.iter().any(|g| *g >= self.retention.covered_generation)
            && self.pipeline.failed.is_none()
            && let Err(e) = self.checkpoint()
        {
            tracing::error!(error = %e, "checkpoint failed; finished generations are kept until one succeeds");
        }
        // Also after a failure, when no checkpoint is taken: a generation the last one does not cover holds
        // frames recovery will need (a crash test found it retired by the defragmentation's end after a
        // failed write).
        due.retain(|g| *g < self.retention.covered_generation);
        due
    }

    /// Unlinks a finished generation; returns its size, or `None` when it was not open.
    pub(super) fn retire(&mut self, g: u32) -> Option<u64> {
        self.retention.finished_at.remove(&g);
        // The copies it held leave the Safety Net with it (the next checkpoint no longer lists them; one
        // written before still may, and recovery drops those, their generation being gone).
        self.state.prune_safety_net(|generation| generation == g);
        // Readers hold their own handle; the unlink only frees the space once they are done.
        let (name, file) = self.gens.shared.write().ok()?.remove(&g)?;
        let size = file.len().unwrap_or(0);
        match self.storage.remove(&name) {
            Ok(()) => tracing::debug!(generation = g, "generation retired"),
            Err(e) => tracing::warn!(generation = g, error = %e, "cannot remove a finished generation"),
        }
        Some(size)
    }

    /// Closes the active log (renamed `trn-<first seq>.log`) and starts the next one from `trntmp.log`.
    pub(super) fn rotate(&mut self) -> std::io::Result<()> {
        if self.log.end <= LOG_HEADER_LEN {
            return Ok(());
        }
        let salt = crate::random_u64();
        let next = self.storage.open(crate::LOG_NEXT, true)?;
        let header = crate::log::encode_header(&crate::log::LogHeader { salt, first_seq: self.pipeline.seq });
        next.set_len(0)?;
        next.write_at(&header, 0)?;
        next.sync_data()?;
        let closed = crate::closed_log_name(self.log.first_seq);
        self.storage.rename(crate::LOG, &closed)?;
        if let Err(e) = self.storage.rename(crate::LOG_NEXT, crate::LOG) {
            // Put the active log back, so that the next rotation starts where this one did.
            if let Err(undo) = self.storage.rename(&closed, crate::LOG) {
                self.fail(format!("a log rotation failed halfway ({e}) and could not be undone ({undo})"));
            }
            return Err(e);
        }
        self.storage.sync_dir()?;
        self.log.file = Arc::from(next);
        self.log.end = header.len() as u64;
        self.log.allocated = self.log.end;
        self.log.salt = salt;
        self.log.first_seq = self.pipeline.seq;
        Ok(())
    }

    /// Writes the live state as the checkpoint and deletes the closed logs it covers.
    pub(super) fn checkpoint(&mut self) -> std::io::Result<()> {
        // The state must hold every frame before `seq`, which it names as where replay starts.
        self.drain();
        if let Some(f) = &self.pipeline.failed {
            return Err(std::io::Error::other(f.clone()));
        }
        self.retry_when_full(Keep::None, |w| w.rotate())?;
        // The oldest generation still taking bodies (or the spare, which will): every frame in an older one
        // is covered.
        let lanes = self.gens.lanes.iter().flatten().map(|g| Cursor { generation: g.number, offset: g.end });
        let spare = self.gens.spare.iter().map(|s| Cursor { generation: s.number, offset: 0 });
        let cursor = lanes
            .chain(spare)
            .min_by_key(|c| c.generation)
            .unwrap_or(Cursor { generation: self.gens.next_number, offset: 0 });
        let salt = crate::random_u64();
        self.retention.checkpoint_bytes = self.retry_when_full(Keep::None, |w| {
            crate::checkpoint::write(w.storage.as_ref(), &w.state, w.pipeline.high_water, w.pipeline.seq, cursor, salt)
        })?;
        for name in self.storage.list()? {
            if crate::parse_closed_log_name(&name).is_some_and(|first| first < self.pipeline.seq) {
                self.storage.remove(&name)?;
            }
        }
        self.storage.sync_dir()?;
        self.retention.checkpoint_seq = self.pipeline.seq;
        self.retention.covered_generation = cursor.generation;
        self.retention.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Ends a lane's generation: no frame goes into it any more. Its zero-filled space is cut off (not
    /// synced: if the cut is lost, recovery reads the zeros as its end).
    pub(super) fn close_generation(&mut self, lane: usize) {
        self.wait_free(Target::Lane(lane));
        if let Some(g) = self.gens.lanes[lane].take()
            && g.allocated > g.end
            && let Err(e) = g.file.set_len(g.end)
        {
            tracing::warn!(generation = g.number, error = %e, "cannot trim a closed generation");
        }
    }

    /// Creates the spare generation while nothing waits for it (at start, and in maintenance once the last
    /// one was taken). Without one, a generation is created when needed.
    pub(super) fn prepare_spare(&mut self) {
        if self.gens.spare.is_some()
            || self.pipeline.failed.is_some()
            || self.space.disk_full.load(std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        match self.create_generation() {
            Ok(spare) => self.gens.spare = Some(spare),
            Err(e) => tracing::debug!(error = %e, "no spare generation file"),
        }
    }

    /// A new, empty generation file: its header synced, the directory synced.
    pub(super) fn create_generation(&mut self) -> Result<Spare, CommitError> {
        let number = self.gens.next_number;
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
        self.gens.next_number += 1;
        Ok(Spare { number, name, file, salt })
    }

    /// Opens the lane's generation, or a new one when the interval has passed.
    pub(super) fn ensure_generation(&mut self, lane: usize) -> Result<(), CommitError> {
        if let Some(f) = &self.pipeline.failed {
            return Err(CommitError::Failed(f.clone()));
        }
        if self.gens.lanes[lane].as_ref().is_some_and(|g| g.opened.elapsed() < self.opts.generation_interval) {
            return Ok(());
        }
        self.close_generation(lane);
        let Spare { number, name, file, salt } = match self.gens.spare.take() {
            Some(spare) => spare,
            None => self.create_generation()?,
        };
        if let Ok(mut gens) = self.gens.shared.write() {
            gens.insert(number, (name, file.clone()));
        }
        self.gens.lanes[lane] = Some(CurrentGeneration {
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
