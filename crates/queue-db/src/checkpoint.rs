//! The checkpoint (`trn.chk`): the live state as records, in log format, with a header that says from which
//! log sequence replay continues. Written beside the old one and renamed into place, so that there is always
//! one whole checkpoint; log files it covers are deleted after it is durable.
//!
//! ```text
//! header: "SLUICECK" | version u32 | reserved u32 | salt u64 | next_seq u64     (32 bytes)
//! frames: as in the log, numbered from 0
//! ```

use crate::log::{LogHeader, encode_frame, encode_header_with, scan_file};
use crate::record::Mid;
use crate::state::State;
use crate::storage::Storage;
use crate::{OpenError, RECORDS_PER_CHECKPOINT_FRAME};

pub(crate) const CHECKPOINT: &str = "trn.chk";
pub(crate) const CHECKPOINT_NEW: &str = "trn.chk.new";
const MAGIC: &[u8; 8] = b"SLUICECK";

/// Writes `state` as the checkpoint covering every log frame below `next_seq`, durably.
pub(crate) fn write(
    storage: &dyn Storage,
    state: &State,
    high_water: Mid,
    next_seq: u64,
    salt: u64,
) -> std::io::Result<u64> {
    let mut buf = encode_header_with(MAGIC, &LogHeader { salt, first_seq: next_seq });
    let records = state.to_records(high_water);
    let mut enc = Vec::new();
    for (seq, chunk) in (0u64..).zip(records.chunks(RECORDS_PER_CHECKPOINT_FRAME)) {
        enc.clear();
        for r in chunk {
            r.encode(&mut enc);
        }
        encode_frame(salt, seq, chunk.len() as u32, &enc, &mut buf);
    }
    let file = storage.open(CHECKPOINT_NEW, true)?;
    file.set_len(0)?;
    file.write_at(&buf, 0)?;
    file.sync_data()?;
    drop(file);
    storage.rename(CHECKPOINT_NEW, CHECKPOINT)?;
    storage.sync_dir()?;
    Ok(buf.len() as u64)
}

/// Reads the checkpoint: the state it holds and the log sequence replay continues from.
pub(crate) fn read(storage: &dyn Storage) -> Result<Option<(State, u64)>, OpenError> {
    let name = storage.describe(CHECKPOINT);
    let file = match storage.open(CHECKPOINT, false) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(OpenError::Io { file: name, source: e }),
    };
    let scan = scan_file(file.as_ref(), &name, MAGIC, Some(0))?;
    if scan.torn_bytes > 0 {
        // A checkpoint is renamed into place only once it is whole: a bad frame is damage, not a torn write.
        return Err(OpenError::Corrupt { file: name, offset: 0, what: "the checkpoint has a bad frame".to_owned() });
    }
    let mut state = State::default();
    for frame in &scan.frames {
        for r in frame {
            state.apply(r);
        }
    }
    Ok(Some((state, scan.header_seq)))
}
