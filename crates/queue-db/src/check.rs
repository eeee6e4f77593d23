//! `sluice db check`: verifies every file of a queue database without opening it for writing — the
//! checkpoint's, the logs' and the generations' frames, each against its checksum (a generation's frames
//! carry its bodies, so every body is verified).

use crate::checkpoint::{self, Cursor};
use crate::record::Record;
use crate::storage::Storage;
use crate::walk::{Header, Kind, Mode, Read, Walker};
use crate::{LOG, OpenError, parse_closed_log_name};

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
    let walker = Walker::new(storage, Mode::Check);
    let logs: Vec<&String> = names.iter().filter(|n| *n == LOG || parse_closed_log_name(n).is_some()).collect();
    for name in logs {
        let f = walker.open(name, Kind::Log).map_err(into_io)?;
        let mut frames = 0usize;
        let read = walker
            .read(&f, |_| {
                frames += 1;
                Ok(())
            })
            .map_err(into_io)?;
        let (problem, summary) = match read {
            Read::Unwritten => (None, "empty (no header yet)".to_owned()),
            Read::Bad(e) => (Some(e.to_string()), String::new()),
            Read::Frames(_, scan) if scan.torn_bytes > 0 && name != LOG => (
                Some(format!("offset {}: a closed log ends in {} bytes of a bad frame", scan.end, scan.torn_bytes)),
                String::new(),
            ),
            Read::Frames(header, scan) => {
                let first_seq = if let Header::Log(h) = header { h.first_seq } else { 0 };
                (None, format!("{frames} frames from {first_seq}{}", torn_note(scan.torn_bytes)))
            }
        };
        out.push(FileCheck { file: f.described, problem, summary });
    }
    for f in walker.generations().map_err(into_io)? {
        let Kind::Generation(number) = f.kind else { continue };
        let (mut frames, mut bodies, mut bytes) = (0usize, 0u64, 0u64);
        let read = walker
            .read(&f, |frame| {
                frames += 1;
                for r in &frame.records {
                    if let Record::Enqueue { body, .. } | Record::Relocate { body, .. } = r {
                        bodies += 1;
                        bytes += body.len;
                    }
                }
                Ok(())
            })
            .map_err(into_io)?;
        let (problem, summary) = match read {
            Read::Unwritten => (None, String::new()),
            Read::Bad(e) => (Some(e.to_string()), String::new()),
            Read::Frames(_, scan) => {
                // Recovery cuts a torn tail off before it checkpoints, and a clean stop checkpoints
                // everything: a bad frame before the checkpoint's cursor is damage.
                let covered = number < cursor.generation || (number == cursor.generation && scan.end < cursor.offset);
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
                        "{bodies} bodies, {bytes} bytes in {frames} frames, checksums correct{}",
                        torn_note(scan.torn_bytes)
                    );
                    (None, summary)
                }
            }
        };
        out.push(FileCheck { file: f.described, problem, summary });
    }
    Ok(out)
}

/// The I/O error behind an error of the walker (which, in check mode, reports everything else as the
/// file's problem).
fn into_io(e: OpenError) -> std::io::Error {
    match e {
        OpenError::Io { source, .. } => source,
        e => std::io::Error::other(e.to_string()),
    }
}

fn torn_note(torn_bytes: u64) -> String {
    if torn_bytes > 0 {
        format!(", {torn_bytes} bytes of torn tail (a write that was never acknowledged)")
    } else {
        String::new()
    }
}
