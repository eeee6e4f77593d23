//! Disk space: zero-filled preallocation, the reserve files, retrying a write that met a full disk, and
//! evicting the Safety Net for space.

use super::*;

/// The disk-full state and what is set aside for it.
pub(super) struct Space {
    /// Set while the reserve files are (partly) released: the disk ran full and has not recovered.
    pub(super) disk_full: Arc<std::sync::atomic::AtomicBool>,
    /// Reserve files present.
    pub(super) reserves: usize,
    /// An eviction is running (it may checkpoint, which may need space: no eviction inside it).
    pub(super) evicting: bool,
    /// Every copy finished after this (wall clock, ms) is still in the Safety Net: the latest finish of a
    /// generation evicted before its hold ended.
    pub(super) held_since: i64,
}

/// The log grows by this much zero-filled space at a time.
pub(super) const LOG_PREALLOCATION: u64 = 1 << 20;

/// A generation file is extended by this much zero-filled space at a time while flushes are small.
pub(super) const GEN_PREALLOCATION: u64 = 512 << 10;
/// Flushes smaller than this extend the generation ahead of them with zeros: their fdatasync then finds the
/// blocks allocated and the size unchanged and costs a data flush without a journal commit (about a third
/// less on ext4 here). Larger flushes are bound by bandwidth, which writing every byte twice would halve.
pub(super) const PREALLOCATE_BELOW: usize = 64 << 10;

/// What a write that meets a full disk may not take.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Keep {
    /// New bodies leave the last reserve alone: it is for the records that free space (delivery
    /// outcomes), checkpoints and a clean stop.
    Last,
    None,
}

/// Reserve files: space set aside so that in-flight commits, checkpoints and a clean stop can finish when
/// the disk runs full.
pub(crate) const RESERVES: [&str; 2] = ["trnres00001.jrs", "trnres00002.jrs"];

pub(super) fn create_reserve(storage: &dyn Storage, name: &str, size: u64) -> std::io::Result<()> {
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
pub(super) fn wipe(file: &dyn StorageFile, at: u64, len: u64) -> std::io::Result<()> {
    let end = file.len()?.min(len);
    if end > at {
        file.write_at(&vec![0u8; (end - at) as usize], at)?;
    }
    file.set_len(len.max(at))?;
    file.sync_data()
}

impl Writer {
    /// Drops Safety Net copies for disk space, oldest first, whatever their hold, until `want_free` bytes
    /// are free or the Safety Net is empty: finished generations are retired in the order their last copy
    /// finished; then, with `close_lanes`, a generation still taking bodies that holds finished copies is
    /// closed, and retired as soon as nothing live is left in it. A live message is never touched.
    pub(super) fn evict(&mut self, want_free: u64, close_lanes: bool) -> crate::Eviction {
        let mut ev = crate::Eviction::default();
        // `u64::MAX` empties the Safety Net, whatever the file system says.
        let short = |w: &Writer| want_free == u64::MAX || w.storage.free_space().map_or(true, |free| free < want_free);
        let evicting = std::mem::replace(&mut self.space.evicting, true);
        if short(self) {
            self.evict_pass(&short, &mut ev);
            // Closing trims a file: nothing is written after a failure.
            if close_lanes && self.pipeline.failed.is_none() && short(self) {
                let mut closed = false;
                for lane in 0..LANES {
                    if let Some(g) = self.gens.lanes[lane].as_ref().map(|g| g.number)
                        && self.retention.finished_at.contains_key(&g)
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
        self.space.evicting = evicting;
        if ev.generations > 0 {
            self.stats.safety_net_evicted.fetch_add(ev.generations, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(
                generations = ev.generations,
                bytes = ev.bytes,
                "disk pressure: Safety Net generations evicted before their hold ended"
            );
        }
        ev.held_since = self.space.held_since;
        ev.empty = self.retention.finished_at.is_empty();
        ev
    }

    /// One pass of `evict` over the closed generations without live messages.
    pub(super) fn evict_pass(&mut self, short: &dyn Fn(&Writer) -> bool, ev: &mut crate::Eviction) {
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
                self.space.held_since = self.space.held_since.max(finished);
            }
        }
    }

    /// Keeps zero-filled space ahead of the log's end, so that most frames overwrite allocated blocks and
    /// their fdatasync flushes data only, without a journal commit for a new file size. Recovery reads the
    /// zeros as the end of the log.
    pub(super) fn preallocate_log(&mut self, needed: u64) -> std::io::Result<()> {
        if self.log.end + needed <= self.log.allocated {
            return Ok(());
        }
        // Small logs (tests) preallocate in proportion.
        let chunk = LOG_PREALLOCATION.min(self.opts.logging_file_size.next_power_of_two().max(4096));
        let target = (self.log.end + needed).next_multiple_of(chunk) + chunk;
        let zeros = vec![0u8; 64 * 1024];
        let mut at = self.log.allocated.max(self.log.end);
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            self.log.file.write_at(&zeros[..n], at)?;
            at += n as u64;
        }
        self.log.allocated = target;
        Ok(())
    }

    /// Creates the missing reserve files when there is room for them and a margin as large again; once
    /// both are back, the disk-full state ends and intake resumes.
    pub(crate) fn recreate_reserves(&mut self) {
        // Each reserve holds at least half a checkpoint, so that with both released a checkpoint (which
        // retirement needs, and retirement is what frees space) can always be written.
        let size = self.opts.reserve_size.max(self.retention.checkpoint_bytes / 2 + (64 << 10));
        let len = |w: &Writer, name: &str| w.storage.open(name, false).and_then(|f| f.len()).ok();
        let lens: Vec<Option<u64>> = RESERVES.iter().map(|r| len(self, r)).collect();
        self.space.reserves = lens.iter().filter(|l| l.is_some()).count();
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
                    Ok(()) => self.space.reserves += usize::from(l.is_none()),
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
        let whole = RESERVES.len() == self.space.reserves;
        self.set_disk_full(!whole || !room);
    }

    /// Releases one reserve file; false when none is left. The last one is kept for `Keep::Last` work.
    pub(super) fn release_reserve(&mut self, keep: Keep) -> bool {
        if keep == Keep::Last && self.space.reserves <= 1 {
            return false;
        }
        for name in RESERVES.iter().rev() {
            if self.storage.remove(name).is_ok() {
                self.space.reserves = self.space.reserves.saturating_sub(1);
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
    pub(super) fn retry_when_full<T>(
        &mut self,
        keep: Keep,
        mut op: impl FnMut(&mut Writer) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match op(self) {
            Err(e) if is_disk_full(&e) => {
                self.set_disk_full(true);
                // Finished mail held for the Safety Net is the first thing to give up.
                // The generations taking bodies stay open: this may be the middle of a frame's write.
                let evicted = if self.space.evicting { 0 } else { self.evict(u64::MAX, false).generations };
                if evicted > 0 || self.release_reserve(keep) { op(self) } else { Err(e) }
            }
            r => r,
        }
    }

    pub(super) fn set_disk_full(&mut self, full: bool) {
        let was = self.space.disk_full.swap(full, std::sync::atomic::Ordering::Relaxed);
        if was && !full {
            tracing::info!("the queue database has space again: reserve files recreated, intake resumes");
        }
    }

    pub(super) fn out_of_space(&mut self) -> CommitError {
        self.set_disk_full(true);
        CommitError::DiskFull
    }
}
