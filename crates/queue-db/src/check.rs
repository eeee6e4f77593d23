//! `sluice db check`: verifies every file of a queue database without opening it for writing — the
//! checkpoint's, the logs' and the generations' frames, each against its checksum (a generation's frames
//! carry its bodies, so every body is verified).

use crate::checkpoint::{self, Cursor};
use crate::generation::{self, GEN_HEADER_LEN};
use crate::log::{self, Order};
use crate::record::Record;
use crate::storage::Storage;
use crate::{LOG, parse_closed_log_name};

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
    // Without a checkpoint every frame may be after the last one.
    let mut cursor = Cursor::default();
    if names.iter().any(|n| n == checkpoint::CHECKPOINT) {
        let (problem, summary) = match checkpoint::read(storage) {
            Ok(Some(c)) => {
                cursor = c.cursor;
                (None, format!("{} live messages, replay continues at frame {}", c.state.messages.len(), c.next_seq))
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
        if name == LOG && log::is_unwritten(file.as_ref())? {
            out.push(FileCheck { file: described, problem: None, summary: "empty (no header yet)".to_owned() });
            continue;
        }
        let (problem, summary) = match log::scan(file.as_ref(), &described) {
            Ok((_, scan)) if scan.torn_bytes > 0 && name != LOG => (
                Some(format!("offset {}: a closed log ends in {} bytes of a bad frame", scan.end, scan.torn_bytes)),
                String::new(),
            ),
            Ok((header, scan)) => {
                (None, format!("{} frames from {}{}", scan.frames.len(), header.first_seq, torn_note(scan.torn_bytes)))
            }
            Err(e) => (Some(e.to_string()), String::new()),
        };
        out.push(FileCheck { file: described, problem, summary });
    }
    for (number, name) in generation::list(storage)? {
        let described = storage.describe(&name);
        let file = storage.open(&name, false)?;
        let header = match generation::read_header(file.as_ref(), &described) {
            Ok(h) => h,
            Err(e) => {
                out.push(FileCheck { file: described, problem: Some(e.to_string()), summary: String::new() });
                continue;
            }
        };
        let (problem, summary) =
            match log::scan_frames(file.as_ref(), &described, GEN_HEADER_LEN, header.salt, Order::Rising) {
                Err(e) => (Some(e.to_string()), String::new()),
                Ok(scan) => {
                    let (mut bodies, mut bytes) = (0u64, 0u64);
                    for r in scan.frames.iter().flat_map(|f| &f.records) {
                        if let Record::Enqueue { body, .. } | Record::Relocate { body, .. } = r {
                            bodies += 1;
                            bytes += body.len;
                        }
                    }
                    // Recovery cuts a torn tail off before it checkpoints, and a clean stop checkpoints
                    // everything: a bad frame before the checkpoint's cursor is damage.
                    let covered =
                        number < cursor.generation || (number == cursor.generation && scan.end < cursor.offset);
                    if scan.torn_bytes > 0 && covered {
                        (
                            Some(format!(
                                "offset {}: a bad frame ({} bytes) where the checkpoint says good frames are",
                                scan.end, scan.torn_bytes
                            )),
                            String::new(),
                        )
                    } else {
                        let summary = format!(
                            "{bodies} bodies, {bytes} bytes in {} frames, checksums correct{}",
                            scan.frames.len(),
                            torn_note(scan.torn_bytes)
                        );
                        (None, summary)
                    }
                }
            };
        out.push(FileCheck { file: described, problem, summary });
    }
    Ok(out)
}

fn torn_note(torn_bytes: u64) -> String {
    if torn_bytes > 0 {
        format!(", {torn_bytes} bytes of torn tail (a write that was never acknowledged)")
    } else {
        String::new()
    }
}
