//! The in-process marker file: which messages the categorizer and each delivery worker have in process, kept
//! where it survives a crash of the process (the kernel's page cache), so that the next start knows whom to
//! blame for the crash (poison messages, `poison.rs`).
//!
//! Poison detection is about crashes of the *process* (an abort, a SIGKILL during processing, a panic): a
//! slot written with `pwrite` is in the kernel once the call returns, and a process crash does not lose it.
//! Nothing here is fsynced: a crash of the machine may lose the file's last writes, which only means that
//! nobody is blamed for it — right, since no message caused it. So the hot path pays one `pwrite` before a
//! batch or a copy is processed and one after, never a disk flush.
//!
//! Layout (little-endian): a 16-byte header (`SLUICEIP`, version `u32`, reserved `u32`), then fixed slots,
//! each a 16-byte slot header (MID count `u32`, queue `u32`, CRC-32C of the count, queue and MIDs `u32`,
//! reserved `u32`) and room for its MIDs: slot 0 is the categorizer's ([`BATCH_SLOT`] MIDs), the slots after
//! it are the delivery workers' (one MID each), handed out to the workers running at a time. A slot whose
//! checksum does not match (a write torn by a SIGKILL) blames nobody.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sluice_queue_db::{Mid, QueueId};

/// The file's first bytes.
const MAGIC: &[u8; 8] = b"SLUICEIP";
const VERSION: u32 = 1;
const HEADER: u64 = 16;
const SLOT_HEADER: usize = 16;

/// The MIDs the categorizer's slot holds: its batch.
pub(crate) const BATCH_SLOT: usize = crate::categorizer::BATCH;

/// Where the categorizer's slot begins, and the first worker slot.
const CATEGORIZER_AT: u64 = HEADER;
const WORKERS_AT: u64 = CATEGORIZER_AT + (SLOT_HEADER + 8 * BATCH_SLOT) as u64;
/// A worker slot's size: its header and one MID.
const WORKER_SLOT: u64 = (SLOT_HEADER + 8) as u64;

/// Opening or resetting the marker file failed.
#[derive(Debug, thiserror::Error)]
#[error("the in-process marker file {path}: {source}")]
pub struct InProcessError {
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

/// The marker file of a running server, and what an earlier run left in it.
pub struct InProcess {
    file: File,
    path: PathBuf,
    /// The messages that were in process when the last run stopped uncleanly, with the queue each one's copy
    /// was taken from.
    left: Vec<(Mid, QueueId)>,
    /// Worker slots free to hand out (the highest not yet handed out is `next`).
    free: Mutex<(Vec<u32>, u32)>,
}

impl InProcess {
    /// Opens (or creates) the marker file at `path`, reads what an earlier run left in it, and empties it.
    /// A file another version wrote, or garbage, blames nobody.
    pub fn open(path: &Path) -> Result<InProcess, InProcessError> {
        let err = |source| InProcessError { path: path.to_owned(), source };
        let left = match std::fs::read(path) {
            Ok(bytes) => read_left(&bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(err(e)),
        };
        if !left.is_empty() {
            tracing::warn!(path = %path.display(), messages = left.len(), "messages were in process at an unclean stop");
        }
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(err)?;
        // Emptied now, before anything is blamed: should the start crash before the blame is committed, the
        // next start blames nobody rather than the same messages twice for one crash.
        file.set_len(0).map_err(err)?;
        let mut header = [0u8; HEADER as usize];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&VERSION.to_le_bytes());
        file.write_all_at(&header, 0).map_err(err)?;
        Ok(InProcess { file, path: path.to_owned(), left, free: Mutex::new((Vec::new(), 0)) })
    }

    /// The messages in process at an unclean stop of the last run (empty after a clean one), each with the
    /// queue its copy was taken from.
    pub fn left_by_last_run(&self) -> &[(Mid, QueueId)] {
        &self.left
    }

    /// The categorizer's slot.
    pub(crate) fn categorizer(self: &Arc<Self>) -> Slot {
        Slot {
            file: self.clone(),
            at: CATEGORIZER_AT,
            capacity: BATCH_SLOT,
            buf: Vec::with_capacity(SLOT_HEADER + 8 * BATCH_SLOT),
        }
    }

    /// A free worker slot, given back when dropped.
    pub(crate) fn worker(self: &Arc<Self>) -> Slot {
        let index = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            match free.0.pop() {
                Some(i) => i,
                None => {
                    free.1 += 1;
                    free.1 - 1
                }
            }
        };
        Slot {
            file: self.clone(),
            at: WORKERS_AT + u64::from(index) * WORKER_SLOT,
            capacity: 1,
            buf: Vec::with_capacity(WORKER_SLOT as usize),
        }
    }

    /// A clean stop: nothing is in process, and the file goes.
    pub(crate) fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.path) {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot remove the in-process marker file");
        }
    }
}

/// One processing task's slot in the marker file.
pub(crate) struct Slot {
    file: Arc<InProcess>,
    at: u64,
    capacity: usize,
    /// The bytes of the last write, kept so that writing allocates nothing.
    buf: Vec<u8>,
}

impl Slot {
    /// Marks `mids`, whose copies were taken from `queue`, as in process (at most the slot's capacity; the
    /// rest are left out). One `pwrite`.
    pub(crate) fn set(&mut self, queue: QueueId, mids: impl IntoIterator<Item = Mid>) {
        self.buf.clear();
        self.buf.resize(SLOT_HEADER, 0);
        for mid in mids.into_iter().take(self.capacity) {
            self.buf.extend_from_slice(&mid.to_le_bytes());
        }
        let count = ((self.buf.len() - SLOT_HEADER) / 8) as u32;
        self.buf[0..4].copy_from_slice(&count.to_le_bytes());
        self.buf[4..8].copy_from_slice(&queue.to_le_bytes());
        let crc = slot_crc(&self.buf);
        self.buf[8..12].copy_from_slice(&crc.to_le_bytes());
        self.write();
    }

    /// Nothing is in process here any more. One `pwrite` of the slot's header.
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.buf.resize(SLOT_HEADER, 0);
        let crc = slot_crc(&self.buf);
        self.buf[8..12].copy_from_slice(&crc.to_le_bytes());
        self.write();
    }

    fn write(&self) {
        // A failed write only means that a crash now would blame nobody: logged, never fatal.
        if let Err(e) = self.file.file.write_all_at(&self.buf, self.at) {
            tracing::warn!(path = %self.file.path.display(), error = %e, "cannot write the in-process marker");
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.at >= WORKERS_AT {
            let index = ((self.at - WORKERS_AT) / WORKER_SLOT) as u32;
            self.file.free.lock().unwrap_or_else(|e| e.into_inner()).0.push(index);
        }
    }
}

/// The CRC-32C of a slot's count, queue and MIDs (its checksum field left out).
fn slot_crc(slot: &[u8]) -> u32 {
    crc32c::crc32c_append(crc32c::crc32c(&slot[..8]), &slot[SLOT_HEADER..])
}

/// The MIDs in the slots of a marker file's bytes, with their queues.
fn read_left(bytes: &[u8]) -> Vec<(Mid, QueueId)> {
    let mut left = Vec::new();
    if bytes.len() < HEADER as usize || &bytes[..8] != MAGIC || bytes[8..12] != VERSION.to_le_bytes() {
        return left;
    }
    let mut at = CATEGORIZER_AT as usize;
    let mut capacity = BATCH_SLOT;
    while at + SLOT_HEADER <= bytes.len() {
        let u32_at = |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let (count, queue, crc) = (u32_at(at) as usize, u32_at(at + 4), u32_at(at + 8));
        let end = at + SLOT_HEADER + 8 * count;
        if count > 0 && count <= capacity && end <= bytes.len() {
            let mut slot = bytes[at..end].to_vec();
            slot[8..12].fill(0);
            if slot_crc(&slot) == crc {
                for m in bytes[at + SLOT_HEADER..end].chunks_exact(8) {
                    let mut mid = [0u8; 8];
                    mid.copy_from_slice(m);
                    left.push((Mid::from_le_bytes(mid), queue));
                }
            } else {
                tracing::warn!(offset = at, "a torn in-process marker slot blames nobody");
            }
        }
        at += SLOT_HEADER + 8 * capacity;
        capacity = 1;
    }
    left.sort_unstable();
    left.dedup();
    left
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_in_process_at_a_crash_is_read_back_and_what_was_cleared_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inprocess");
        {
            let marker = Arc::new(InProcess::open(&path).unwrap());
            assert!(marker.left_by_last_run().is_empty());
            let mut categorizer = marker.categorizer();
            categorizer.set(1, [10, 11, 12]);
            let mut a = marker.worker();
            let mut b = marker.worker();
            let mut c = marker.worker();
            a.set(16, [5]);
            b.set(17, [6]);
            b.clear();
            c.set(18, [7]);
            drop(c);
            // Slot c is handed out again and overwritten: only the last write counts.
            let mut d = marker.worker();
            d.set(19, [8]);
            // The process "crashes": the file is left as it is.
            std::mem::forget((categorizer, a, b, d));
        }
        let marker = Arc::new(InProcess::open(&path).unwrap());
        assert_eq!(marker.left_by_last_run(), [(5, 16), (8, 19), (10, 1), (11, 1), (12, 1)]);
        drop(marker);
        // Opening empties the file: the same crash is not blamed twice.
        let marker = Arc::new(InProcess::open(&path).unwrap());
        assert!(marker.left_by_last_run().is_empty());
        marker.categorizer().set(1, [1]);
        marker.remove();
        assert!(!path.exists(), "a clean stop removes the file");
        assert!(InProcess::open(&path).unwrap().left_by_last_run().is_empty());
    }

    #[test]
    fn a_batch_fills_its_slot_and_a_torn_slot_blames_nobody() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inprocess");
        {
            let marker = Arc::new(InProcess::open(&path).unwrap());
            marker.categorizer().set(1, 1000..1000 + BATCH_SLOT as u64 + 5);
            marker.worker().set(20, [3]);
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let left = read_left(&bytes);
        assert_eq!(left.len(), BATCH_SLOT + 1, "the categorizer's slot holds a whole batch, no more");
        assert!(left.contains(&(3, 20)));
        // A SIGKILL in the middle of the worker's write: its MID is not the one its checksum covers.
        let worker_mid = WORKERS_AT as usize + SLOT_HEADER;
        bytes[worker_mid] ^= 1;
        let left = read_left(&bytes);
        assert_eq!(left.len(), BATCH_SLOT);
        assert!(left.iter().all(|(_, q)| *q == 1));
        // Another format blames nobody.
        bytes[0] = b'X';
        assert!(read_left(&bytes).is_empty());
    }
}
