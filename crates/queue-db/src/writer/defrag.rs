//! Online defragmentation: live bodies of sparse closed generations are copied forward in small durable
//! batches between commits.

use super::*;

/// Online defragmentation in progress.
pub(super) struct DefragJob {
    pub(super) deadline: Instant,
    pub(super) reply: oneshot::Sender<crate::DefragReport>,
    pub(super) report: crate::DefragReport,
    /// Sparse generations still to empty, with their live bodies (a snapshot; moved ones are skipped).
    pub(super) todo: std::collections::VecDeque<(u32, Vec<(Mid, BodyRef)>)>,
}

impl Writer {
    /// Starts online defragmentation: finds the sparse closed generations (less than half of the file live)
    /// whose live bodies will be copied forward. A second request while one runs joins it.
    pub(super) fn start_defrag(&mut self, deadline: Instant, reply: oneshot::Sender<crate::DefragReport>) {
        if self.defrag.is_some() || self.pipeline.failed.is_some() {
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
                let size = self.gens.shared.read().ok().and_then(|m| m.get(g).and_then(|(_, f)| f.len().ok()));
                size.is_some_and(|size| live_bytes * 2 < size)
            })
            .map(|(g, (_, bodies))| (g, bodies))
            .collect();
        self.defrag = Some(DefragJob { deadline, reply, report: crate::DefragReport::default(), todo });
    }

    /// One batch of defragmentation (up to 64 bodies), a durable transaction of its own: interrupting
    /// between batches leaves a consistent database.
    pub(super) fn defrag_step(&mut self) {
        if self.retention.last_maintenance.elapsed() >= self.opts.maintenance_interval {
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
        let source = self.gens.shared.read().ok().and_then(|g| g.get(&generation).cloned());
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

    pub(super) fn finish_defrag(&mut self) {
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
    pub(super) fn relocate(
        &mut self,
        name: &str,
        from: &dyn StorageFile,
        bodies: &[(Mid, BodyRef)],
    ) -> Result<u64, String> {
        let lane = self.lane_for_bodies();
        self.ensure_generation(lane).map_err(|e| e.to_string())?;
        let current = self.gens.lanes[lane].as_ref().ok_or("no current generation")?;
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
            self.pipeline.inflight.push_back(f);
        }
        // Applied once durable, like any commit.
        self.finish_ready();
        self.drain();
        match &self.pipeline.failed {
            Some(f) => Err(f.clone()),
            None => Ok(bytes),
        }
    }
}
