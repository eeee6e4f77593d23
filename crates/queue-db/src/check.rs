//! `sluice db check`: verifies every file of a queue database without opening it for writing — the
//! checkpoint's and the logs' frames, and every body of every generation against its checksum.

use crate::generation::{self, BODY_HEADER_LEN, GEN_HEADER_LEN};
use crate::storage::Storage;
use crate::{LOG, OpenError, checkpoint, log, parse_closed_log_name};

/// The verdict on one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub file: String,
    /// `None` when the file is sound; otherwise what is wrong and where.
    pub problem: Option<String>,
    /// What was verified (frames, bodies).
    pub summary: String,
}

/// Verifies every file in `storage`.
pub fn check(storage: &dyn Storage) -> std::io::Result<Vec<FileCheck>> {
    let mut names = storage.list()?;
    names.sort();
    let mut out = Vec::new();
    if names.iter().any(|n| n == checkpoint::CHECKPOINT) {
        let (problem, summary) = match checkpoint::read(storage) {
            Ok(Some((state, next))) => {
                (None, format!("{} live messages, replay continues at frame {next}", state.messages.len()))
            }
            Ok(None) => (None, "absent".to_owned()),
            Err(e) => (Some(e.to_string()), String::new()),
        };
        out.push(FileCheck { file: storage.describe(checkpoint::CHECKPOINT), problem, summary });
    }
    let logs: Vec<&String> = names.iter().filter(|n| *n == LOG || parse_closed_log_name(n).is_some()).collect();
    for name in logs {
        let described = storage.describe(name);
        let file = storage.open(name, false)?;
        let (problem, summary) = match log::scan(file.as_ref(), &described) {
            Ok(scan) if scan.torn_bytes > 0 && name != LOG => {
                (Some(format!("a closed log ends in {} bytes of a bad frame", scan.torn_bytes)), String::new())
            }
            Ok(scan) => (
                None,
                format!(
                    "{} frames from {}{}",
                    scan.frames.len(),
                    scan.header_seq,
                    if scan.torn_bytes > 0 {
                        format!(", {} bytes of torn tail", scan.torn_bytes)
                    } else {
                        String::new()
                    }
                ),
            ),
            Err(e) => (Some(e.to_string()), String::new()),
        };
        out.push(FileCheck { file: described, problem, summary });
    }
    for (_, name) in generation::list(storage)? {
        let described = storage.describe(&name);
        let file = storage.open(&name, false)?;
        let (problem, summary) = match generation::check_header(file.as_ref(), &described) {
            Err(OpenError::Corrupt { what, .. }) => (Some(format!("offset 0: {what}")), String::new()),
            Err(e) => (Some(e.to_string()), String::new()),
            Ok(()) => check_bodies(file.as_ref(), &described),
        };
        out.push(FileCheck { file: described, problem, summary });
    }
    Ok(out)
}

/// Walks the body entries of a generation, checking each body's CRC. The walk ends at the first position
/// that is not a body entry (the end, or zeros past the last write).
fn check_bodies(file: &dyn crate::StorageFile, name: &str) -> (Option<String>, String) {
    let len = match file.len() {
        Ok(l) => l,
        Err(e) => return (Some(e.to_string()), String::new()),
    };
    let mut at = GEN_HEADER_LEN;
    let (mut bodies, mut bytes) = (0u64, 0u64);
    while at + BODY_HEADER_LEN <= len {
        let mut h = [0u8; BODY_HEADER_LEN as usize];
        if file.read_exact_at(&mut h, at).is_err() {
            break;
        }
        if h[..4] != *b"SLBD" {
            break;
        }
        let body_len = u64::from_le_bytes(h[12..20].try_into().unwrap_or([0; 8]));
        let crc = u32::from_le_bytes(h[20..24].try_into().unwrap_or([0; 4]));
        let start = at + BODY_HEADER_LEN;
        if start + body_len > len {
            return (Some(format!("offset {at}: a body runs past the end of the file")), String::new());
        }
        let body = crate::BodyRef { generation: 0, offset: start, len: body_len, crc };
        if let Err(e) = generation::read_body(file, name, &body) {
            return (Some(e.to_string()), String::new());
        }
        bodies += 1;
        bytes += body_len;
        at = start + body_len;
    }
    (None, format!("{bodies} bodies, {bytes} bytes, checksums correct"))
}
