//! Draining a database into files: `sluice db export` for a healthy database (drain,
//! migration, backup — circular logging rules out log replay as a backup) and `sluice db salvage` for a
//! damaged one. Both read without writing, and hand over every live message with its envelope and the
//! recipients still pending, for the replay directory to submit again.
//!
//! Salvage reads what it can: the checkpoint if it is whole, every good frame of every log and generation
//! (skipping bad stretches to the next good frame), applied in sequence order. When the checkpoint is
//! damaged the history it summed up is gone, and messages it had seen finished may come out again: a
//! salvage errs towards a duplicate, never a loss.

use std::collections::HashMap;
use std::sync::Arc;

use crate::log::FrameScan;
use crate::record::{Envelope, Mid, Record};
use crate::state::State;
use crate::storage::{Storage, StorageFile};
use crate::walk::{DbFile, Kind, Mode, Read, Walker};
use crate::{OpenError, checkpoint, generation};

/// One message drained from the database.
#[derive(Debug, Clone)]
pub struct Drained {
    pub mid: Mid,
    pub envelope: Envelope,
    /// The recipients still to be delivered (of every copy), in envelope order.
    pub pending: Vec<String>,
    pub body: Vec<u8>,
}

/// What a drain found wrong (file and what); empty for a healthy database.
#[derive(Debug, Default)]
pub struct DrainReport {
    pub messages: u64,
    pub problems: Vec<String>,
}

/// Adds the bad stretches a scan skipped in `described` to the report.
fn note_damage(report: &mut DrainReport, described: &str, scan: &FrameScan) {
    report.problems.extend(scan.damage.iter().map(|(at, what)| format!("{described} at offset {at}: {what}")));
}

/// Reads the live state as recovery would, tolerating damage (each problem is reported), and hands every
/// live message whose body is intact to `out`. With `strict`, any problem stops it before anything is
/// handed over (export: the database must be healthy).
pub fn drain(
    storage: &dyn Storage,
    strict: bool,
    mut out: impl FnMut(Drained) -> std::io::Result<()>,
) -> Result<DrainReport, OpenError> {
    let mut report = DrainReport::default();
    let names = storage.list().map_err(|e| OpenError::io(&storage.describe(""), e))?;
    let (mut state, covered) = match checkpoint::read(storage) {
        Ok(Some(c)) => (c.state, Some(c.next_seq)),
        Ok(None) => (State::default(), None),
        Err(e) => {
            report.problems.push(format!("{e} (the checkpoint is ignored: finished messages may come out again)"));
            (State::default(), None)
        }
    };
    let mut frames: Vec<(u64, Vec<Record>)> = Vec::new();
    let walker = Walker::new(storage, Mode::Salvage);
    // Every good frame of a file into `frames`, its damage into the report; true when its header was read.
    let mut collect = |f: &DbFile, report: &mut DrainReport| -> Result<bool, OpenError> {
        let read = walker.read(f, |frame| {
            frames.push((frame.seq, frame.records));
            Ok(())
        })?;
        Ok(match read {
            Read::Unwritten => false,
            Read::Bad(e) => {
                report.problems.push(e.to_string());
                false
            }
            Read::Frames(_, scan) => {
                note_damage(report, &f.described, &scan);
                true
            }
        })
    };
    for name in &crate::log_files(&names) {
        collect(&walker.open(name, Kind::Log)?, &mut report)?;
    }
    let mut gens: HashMap<u32, (String, Arc<dyn StorageFile>)> = HashMap::new();
    for f in walker.generations()? {
        let Kind::Generation(number) = f.kind else { continue };
        if collect(&f, &mut report)? {
            gens.insert(number, (f.name, f.file));
        }
    }
    frames.retain(|(seq, _)| covered.is_none_or(|c| *seq >= c));
    frames.sort_by_key(|(seq, _)| *seq);
    frames.dedup_by_key(|(seq, _)| *seq);
    for (_, records) in &frames {
        for r in records {
            state.apply(r);
        }
    }
    drop(frames);
    if strict && !report.problems.is_empty() {
        return Err(OpenError::Corrupt {
            file: storage.describe(""),
            offset: 0,
            what: format!("{}; use `sluice db salvage`", report.problems.join("; ")),
        });
    }
    for m in state.messages.values() {
        let body = gens
            .get(&m.body.generation)
            .ok_or_else(|| format!("generation {} is missing", m.body.generation))
            .and_then(|(name, file)| generation::read_body(file.as_ref(), name, &m.body).map_err(|e| e.to_string()));
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                report.problems.push(format!("message {}: body unreadable: {e}", m.mid));
                if strict {
                    return Err(OpenError::Corrupt { file: storage.describe(""), offset: 0, what: e });
                }
                continue;
            }
        };
        let mut pending: Vec<u32> = m.copies.iter().flat_map(|c| c.recipients.iter().copied()).collect();
        pending.sort_unstable();
        pending.dedup();
        let pending =
            pending.iter().filter_map(|i| m.envelope.recipient(*i as usize).map(|r| r.address.to_owned())).collect();
        out(Drained { mid: m.mid, envelope: (*m.envelope).clone(), pending, body })
            .map_err(|e| OpenError::io("the output directory", e))?;
        report.messages += 1;
    }
    Ok(report)
}
