//! The frames in flight: the sync threads, and answering frames in sequence order once each and every
//! frame before it is durable (a frame is never answered ahead of an earlier one).

use super::*;

/// The frames written and not yet answered, and what answering them moves.
pub(super) struct Pipeline {
    /// The next frame's sequence.
    pub(super) seq: u64,
    /// Frames written and not yet answered, in sequence order.
    pub(super) inflight: VecDeque<InFlight>,
    pub(super) sync_jobs: std::sync::mpsc::Sender<SyncJob>,
    pub(super) synced: mpsc::UnboundedReceiver<Synced>,
    /// Why the writer stopped committing (a failed write or sync), until a restart.
    pub(super) failed: Option<String>,
    /// Set with `failed`, for readers outside the writer.
    pub(super) stopped: Arc<std::sync::atomic::AtomicBool>,
    /// The mark that durable frames have raised MIDs to.
    pub(super) high_water: Mid,
}

/// A flush slower than this is logged: it delays every SMTP client waiting for its 250.
pub(super) const SLOW_FLUSH: Duration = Duration::from_millis(20);

/// A frame written and handed to a sync thread, waiting to be answered in sequence order.
pub(super) struct InFlight {
    pub(super) seq: u64,
    pub(super) target: Target,
    /// The sync's outcome, once it is known.
    pub(super) done: Option<std::io::Result<()>>,
    pub(super) waiters: Vec<Waiter>,
    /// The records, applied to the state once they are durable.
    pub(super) applied: Vec<Record>,
    /// The MID high-water mark the frame raises to.
    pub(super) high_water: Option<Mid>,
    pub(super) ops: usize,
    pub(super) bytes: usize,
    pub(super) started: Instant,
}

/// A frame just written: its sequence, its file, and its sync's outcome if it was synced already.
pub(super) struct Written {
    pub(super) seq: u64,
    pub(super) target: Target,
    pub(super) done: Option<std::io::Result<()>>,
}

pub(super) struct SyncJob {
    pub(super) seq: u64,
    pub(super) file: Arc<dyn StorageFile>,
}

pub(super) struct Synced {
    pub(super) seq: u64,
    pub(super) result: std::io::Result<()>,
}

/// Threads that fdatasync the frames the writer hands them, one job at a time each.
pub(super) fn start_sync_threads(
    stats: Arc<crate::Stats>,
) -> std::io::Result<(std::sync::mpsc::Sender<SyncJob>, mpsc::UnboundedReceiver<Synced>)> {
    let (jobs_tx, jobs_rx) = std::sync::mpsc::channel::<SyncJob>();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let jobs_rx = Arc::new(Mutex::new(jobs_rx));
    for _ in 0..IN_FLIGHT {
        let (jobs, done, stats) = (jobs_rx.clone(), done_tx.clone(), stats.clone());
        std::thread::Builder::new().name("queue-db-sync".into()).spawn(move || {
            loop {
                // The writer's end closing ends the thread.
                let job = match jobs.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(job) = job else { return };
                let result = job.file.sync_data();
                stats.frame_syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if done.send(Synced { seq: job.seq, result }).is_err() {
                    return;
                }
            }
        })?;
    }
    Ok((jobs_tx, done_rx))
}

impl Writer {
    /// A sync finished: its frame, and every earlier one that is done, are answered.
    pub(super) fn on_synced(&mut self, s: Synced) {
        // After a failure the frames in flight were answered already: a late sync finds nothing.
        let Some(f) = self.pipeline.inflight.iter_mut().find(|f| f.seq == s.seq) else { return };
        let target = f.target;
        let failed = s.result.as_ref().err().map(|e| e.to_string());
        f.done = Some(s.result);
        if let Some(e) = failed
            && self.pipeline.failed.is_none()
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
    pub(super) fn finish_ready(&mut self) {
        while self.pipeline.inflight.front().is_some_and(|f| f.done.is_some()) {
            let Some(f) = self.pipeline.inflight.pop_front() else { break };
            if let Some(Err(e)) = &f.done {
                // A failed fsync leaves the page cache in an unknown state (the kernel may have dropped the
                // dirty pages): stop committing until a restart recovers from what is on disk. This frame is
                // where recovery finds the torn tail; the frames after it, even if durable, follow a gap and
                // are dropped there, so none of them is answered as committed either.
                let e = match &self.pipeline.failed {
                    Some(why) => CommitError::Failed(why.clone()),
                    None => self.fail(format!("syncing a frame: {e}")),
                };
                tracing::error!(error = %e, "queue database commit failed");
                for f in std::iter::once(f).chain(self.pipeline.inflight.drain(..)) {
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
                self.pipeline.high_water = self.pipeline.high_water.max(h);
            }
            use std::sync::atomic::Ordering::Relaxed;
            self.stats.flushes.fetch_add(1, Relaxed);
            self.stats.operations.fetch_add(f.ops as u64, Relaxed);
            self.stats.commit_latency_us.observe(took.as_micros().min(u128::from(u64::MAX)) as u64);
            self.stats.batch_size.observe(f.ops as u64);
            for r in &f.applied {
                self.apply(r);
            }
        }
    }

    /// Waits for every frame in flight to be answered: the state is then current to `seq`.
    pub(super) fn drain(&mut self) {
        while !self.pipeline.inflight.is_empty() {
            self.wait_one();
        }
    }

    /// Waits for one sync to finish and answers what it completes.
    pub(super) fn wait_one(&mut self) {
        match self.pipeline.synced.blocking_recv() {
            Some(s) => self.on_synced(s),
            None => {
                // The sync threads are gone (they only stop when the writer does): nothing in flight can
                // be known durable.
                let e = self.fail("the queue database's sync threads stopped".to_owned());
                for f in self.pipeline.inflight.drain(..) {
                    for w in f.waiters {
                        w.answer(&Err(e.clone()));
                    }
                }
            }
        }
    }

    /// A frame is syncing in this file.
    pub(super) fn busy(&self, target: Target) -> bool {
        self.pipeline.inflight.iter().any(|f| f.target == target && f.done.is_none())
    }

    /// Waits until a frame may go into `target`: no frame syncing in it, fewer than `IN_FLIGHT` in all.
    pub(super) fn wait_free(&mut self, target: Target) {
        while self.busy(target) || self.pipeline.inflight.len() >= IN_FLIGHT {
            self.wait_one();
        }
    }
}
