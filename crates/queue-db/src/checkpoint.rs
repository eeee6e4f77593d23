//! The checkpoint (`trn.chk`): the live state as records, in log format, with a header that says from which
//! frame sequence replay continues and where in the generations the frames after it can be. Written beside
//! the old one and renamed into place, so that there is always one whole checkpoint; log files it covers
//! are deleted after it is durable.
//!
//! ```text
//! header: "SLUICECK" | version u32 | cursor generation u32 | salt u64 | next_seq u64 | cursor offset u64  (40)
//! frames: as in the log, numbered from 0
//! ```
//! The cursor is the end of the generation that was current when the checkpoint was taken: every frame the
//! checkpoint does not cover is in the log, in that generation after that offset, or in a newer generation.

use crate::log::{LogHeader, OnDamage, Order, encode_frame, encode_header_with, read_header, scan_frames};
use crate::record::{Mid, Record};
use crate::state::State;
use crate::storage::{Storage, StorageFile};
use crate::{OpenError, RECORDS_PER_CHECKPOINT_FRAME};

pub(crate) const CHECKPOINT: &str = "trn.chk";
pub(crate) const CHECKPOINT_NEW: &str = "trn.chk.new";
const MAGIC: &[u8; 8] = b"SLUICECK";
const HEADER_LEN: u64 = 40;
/// A checkpoint is written in pieces of about this size.
const WRITE_CHUNK: usize = 1 << 20;

/// Where frames not covered by a checkpoint may start in the generations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Cursor {
    pub(crate) generation: u32,
    /// In `generation`; 0 means from its first frame (also when it does not exist yet).
    pub(crate) offset: u64,
}

/// What a checkpoint holds.
pub(crate) struct Checkpoint {
    pub(crate) state: State,
    /// The first frame sequence it does not cover.
    pub(crate) next_seq: u64,
    pub(crate) cursor: Cursor,
}

/// Writes `state` as the checkpoint covering every frame below `next_seq`, durably.
pub(crate) fn write(
    storage: &dyn Storage,
    state: &State,
    high_water: Mid,
    next_seq: u64,
    cursor: Cursor,
    salt: u64,
) -> std::io::Result<u64> {
    let mut buf = encode_header_with(MAGIC, &LogHeader { salt, first_seq: next_seq });
    buf[12..16].copy_from_slice(&cursor.generation.to_le_bytes());
    buf.extend_from_slice(&cursor.offset.to_le_bytes());
    let file = storage.open(CHECKPOINT_NEW, true)?;
    file.set_len(0)?;
    // Encoded and written a frame at a time: the state may hold a million messages, and the checkpoint
    // must not double the memory they take.
    let mut frames = Frames { file: file.as_ref(), salt, seq: 0, count: 0, records: Vec::new(), buf, at: 0 };
    let mut pushed = Ok(());
    state.for_each_record(high_water, |r| {
        if pushed.is_ok() {
            pushed = frames.push(&r);
        }
    });
    pushed?;
    let len = frames.finish()?;
    file.sync_data()?;
    drop(file);
    storage.rename(CHECKPOINT_NEW, CHECKPOINT)?;
    storage.sync_dir()?;
    Ok(len)
}

/// Encodes records into checkpoint frames of `RECORDS_PER_CHECKPOINT_FRAME` and writes them out in pieces of
/// about `WRITE_CHUNK`.
struct Frames<'a> {
    file: &'a dyn StorageFile,
    salt: u64,
    seq: u64,
    /// Records in the frame being built, and their encoding.
    count: u32,
    records: Vec<u8>,
    /// Encoded frames not yet written, which start at file offset `at`.
    buf: Vec<u8>,
    at: u64,
}

impl Frames<'_> {
    fn push(&mut self, r: &Record) -> std::io::Result<()> {
        r.encode(&mut self.records);
        self.count += 1;
        if self.count as usize == RECORDS_PER_CHECKPOINT_FRAME {
            self.end_frame();
            if self.buf.len() >= WRITE_CHUNK {
                self.write_out()?;
            }
        }
        Ok(())
    }

    fn end_frame(&mut self) {
        if self.count > 0 {
            encode_frame(self.salt, self.seq, self.count, &[], &self.records, &mut self.buf);
            self.seq += 1;
            self.records.clear();
            self.count = 0;
        }
    }

    fn write_out(&mut self) -> std::io::Result<()> {
        self.file.write_at(&self.buf, self.at)?;
        self.at += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is left; the checkpoint's length.
    fn finish(mut self) -> std::io::Result<u64> {
        self.end_frame();
        self.write_out()?;
        Ok(self.at)
    }
}

/// Reads the checkpoint, if there is one.
pub(crate) fn read(storage: &dyn Storage) -> Result<Option<Checkpoint>, OpenError> {
    let name = storage.describe(CHECKPOINT);
    let file = match storage.open(CHECKPOINT, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OpenError::Io { file: name, source: e }),
    };
    let header = read_header(file.as_ref(), &name, MAGIC)?;
    let mut h = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0).map_err(|e| OpenError::io(&name, e))?;
    let cursor = Cursor {
        generation: u32::from_le_bytes([h[12], h[13], h[14], h[15]]),
        offset: u64::from_le_bytes(h[32..40].try_into().unwrap_or_default()),
    };
    let mut state = State::default();
    let scan = scan_frames(file.as_ref(), &name, HEADER_LEN, header.salt, (Order::From(0), OnDamage::Fail), |frame| {
        for r in &frame.records {
            state.apply(r);
        }
        Ok(())
    })?;
    if scan.torn_bytes > 0 {
        // A checkpoint is renamed into place only once it is whole: a bad frame is damage, not a torn write.
        return Err(OpenError::Corrupt {
            file: name,
            offset: scan.end,
            what: "the checkpoint has a bad frame".to_owned(),
        });
    }
    Ok(Some(Checkpoint { state, next_seq: header.first_seq, cursor }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::record::{BodyRef, Envelope, EnvelopeParts, Recipient, SUBMISSION};

    /// A state of several frames and several write pieces comes back whole.
    #[test]
    fn a_large_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let storage = crate::FsStorage::new(dir.path()).unwrap();
        let mut state = State::default();
        for mid in 1..=5_000u64 {
            let envelope = Envelope::from(EnvelopeParts {
                from: format!("s{mid}@a.test"),
                recipients: vec![Recipient { address: format!("r{mid}@b.test"), notify: None, orcpt: None }],
                subject: Some("x".repeat(300)),
                ..EnvelopeParts::default()
            });
            let body = BodyRef { generation: 1, offset: mid * 10, len: 10, crc: 7 };
            state.apply(&Record::Enqueue { mid, queue: SUBMISSION, envelope: Arc::new(envelope), body });
            if mid % 3 == 0 {
                state.apply(&Record::Defer {
                    mid,
                    queue: SUBMISSION,
                    retry_count: 2,
                    next_retry_ms: 9,
                    last_error: "451 x".into(),
                });
            }
            if mid % 5 == 0 {
                state.apply(&Record::DelayNotified { mid });
            }
        }
        assert_eq!(state.delay_notified.len(), 1_000);
        state.next_mid = 10_000;
        let cursor = Cursor { generation: 4, offset: 123 };
        let len = write(&storage, &state, 10_000, 77, cursor, 99).unwrap();
        assert!(len > 2 * WRITE_CHUNK as u64, "{len}: the test must span several pieces");
        let read = read(&storage).unwrap().unwrap();
        assert_eq!((read.next_seq, read.cursor), (77, cursor));
        assert_eq!(read.state, state);
    }
}
