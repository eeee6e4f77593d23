//! A simulated disk for crash tests: every file has the bytes a crash would keep (synced) and the bytes the
//! page cache holds (written). [`SimStorage::crash`] keeps the synced bytes plus an arbitrary subset of the
//! unsynced pages, the way a power loss can; faults can fail the Nth write or sync.
//!
//! Directory operations (create, rename, remove) are durable at once here, which is stronger than a real
//! file system; the engine still calls `sync_dir` where a real one needs it.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};

use crate::storage::{Storage, StorageFile};

const PAGE: usize = 4096;

#[derive(Default)]
struct SimFile {
    written: Vec<u8>,
    synced: Vec<u8>,
}

#[derive(Default)]
struct Disk {
    files: BTreeMap<String, Arc<Mutex<SimFile>>>,
    writes: u64,
    syncs: u64,
    dir_syncs: u64,
    fail_write_at: Option<u64>,
    fail_sync_at: Option<u64>,
    /// Bytes the disk holds at most (all files' lengths together); writes past it fail with ENOSPC.
    capacity: Option<u64>,
    /// Raised by every crash; handles opened before it fail, as a dead process's would.
    epoch: u64,
    /// How long an fdatasync takes (before it looks at the file), so that writes can happen beside it.
    sync_delay: std::time::Duration,
    /// fdatasyncs started and not yet returned.
    syncing: u64,
}

/// An in-memory disk that can crash. Clones share the disk.
#[derive(Clone, Default)]
pub struct SimStorage {
    disk: Arc<Mutex<Disk>>,
    /// A process's view ([`SimStorage::process`]): it dies with the next crash.
    epoch: Option<u64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A test helper: a poisoned lock means a test already panicked.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SimStorage {
    pub fn new() -> SimStorage {
        SimStorage::default()
    }

    /// The fdatasyncs of files and the syncs of the directory so far: what the waits of commits are made of.
    pub fn syncs(&self) -> (u64, u64) {
        let d = lock(&self.disk);
        (d.syncs, d.dir_syncs)
    }

    /// The disk as one process sees it, until the next crash: after it, every operation through this view
    /// fails, as a killed process does nothing more. Open each database on a view of its own.
    pub fn process(&self) -> SimStorage {
        let epoch = lock(&self.disk).epoch;
        SimStorage { disk: self.disk.clone(), epoch: Some(epoch) }
    }

    fn alive(&self, d: &Disk) -> io::Result<()> {
        match self.epoch {
            Some(e) if e != d.epoch => Err(io::Error::other("the simulated process died in a crash")),
            _ => Ok(()),
        }
    }

    /// Fails the `n`th write from now (1 = the next one) with EIO.
    pub fn fail_write_after(&self, n: u64) {
        let mut d = lock(&self.disk);
        d.fail_write_at = Some(d.writes + n);
    }

    /// Limits the disk to `bytes` (the sum of all files' lengths); `None` lifts the limit.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        lock(&self.disk).capacity = bytes;
    }

    /// Bytes used by all files.
    pub fn used(&self) -> u64 {
        used(&lock(&self.disk))
    }

    /// Makes every fdatasync take `delay` (spent before it copies the file's bytes, without holding the disk):
    /// a crash can then land while several frames are written and not yet synced, as on a real disk.
    pub fn set_sync_delay(&self, delay: std::time::Duration) {
        lock(&self.disk).sync_delay = delay;
    }

    /// fdatasyncs started and not yet returned: with a sync delay, a test can wait until frames are written
    /// and syncing side by side, and crash then.
    pub fn syncs_in_progress(&self) -> u64 {
        lock(&self.disk).syncing
    }

    /// Fails the `n`th sync from now with EIO.
    pub fn fail_sync_after(&self, n: u64) {
        let mut d = lock(&self.disk);
        d.fail_sync_at = Some(d.syncs + n);
    }

    /// Simulates a power loss: each file keeps its synced bytes, and of the unsynced bytes, each page is
    /// kept or lost as `keep(file, page)` says (pages past a lost one still may be kept: reordered writeback).
    pub fn crash(&self, mut keep: impl FnMut(&str, usize) -> bool) {
        let mut d = lock(&self.disk);
        d.fail_write_at = None;
        d.fail_sync_at = None;
        d.epoch += 1;
        for (name, f) in d.files.iter() {
            let mut f = lock(f);
            let mut after = f.synced.clone();
            if f.written.len() > after.len() {
                after.resize(f.written.len(), 0);
            }
            for (i, page) in f.written.chunks(PAGE).enumerate() {
                let start = i * PAGE;
                let differs = f.synced.get(start..start + page.len()) != Some(page);
                if differs && keep(name, i) {
                    after[start..start + page.len()].copy_from_slice(page);
                }
            }
            // A file's length is metadata: a crash keeps the synced length or the written one.
            if !keep(name, usize::MAX) {
                after.truncate(f.synced.len().max(trailing_kept(&after, f.synced.len())));
            }
            f.written = after.clone();
            f.synced = after;
        }
    }

    /// The synced bytes of a file, for tests that damage files.
    pub fn contents(&self, name: &str) -> Option<Vec<u8>> {
        let d = lock(&self.disk);
        d.files.get(name).map(|f| lock(f).written.clone())
    }

    /// Replaces a file's bytes (written and synced), for tests that damage files.
    pub fn set_contents(&self, name: &str, bytes: Vec<u8>) {
        let mut d = lock(&self.disk);
        let f = d.files.entry(name.to_owned()).or_default();
        let mut f = lock(f);
        f.written = bytes.clone();
        f.synced = bytes;
    }
}

fn used(d: &Disk) -> u64 {
    d.files.values().map(|f| lock(f).written.len() as u64).sum()
}

/// The length to keep when unsynced pages past the synced length were partly kept: up to the last
/// nonzero byte.
fn trailing_kept(bytes: &[u8], synced_len: usize) -> usize {
    bytes.iter().rposition(|b| *b != 0).map_or(synced_len, |p| p + 1)
}

struct SimHandle {
    file: Arc<Mutex<SimFile>>,
    disk: Arc<Mutex<Disk>>,
    epoch: u64,
}

impl SimHandle {
    fn check(&self, d: &Disk) -> io::Result<()> {
        if d.epoch == self.epoch { Ok(()) } else { Err(io::Error::other("the simulated machine crashed")) }
    }
}

impl StorageFile for SimHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let f = lock(&self.file);
        let start = (offset as usize).min(f.written.len());
        let n = buf.len().min(f.written.len() - start);
        buf[..n].copy_from_slice(&f.written[start..start + n]);
        Ok(n)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        // The disk lock is held across the write so that a crash is atomic with respect to it.
        let mut d = lock(&self.disk);
        self.check(&d)?;
        d.writes += 1;
        if d.fail_write_at == Some(d.writes) {
            return Err(io::Error::other("injected write failure"));
        }
        let mut end = offset as usize + buf.len();
        let current = lock(&self.file).written.len();
        let mut full = false;
        if let Some(cap) = d.capacity
            && end > current
            && used(&d) + (end - current) as u64 > cap
        {
            // Like a real file system, a write that meets a full disk writes what fits, then fails.
            let room = cap.saturating_sub(used(&d)) as usize;
            end = (current + room).max(offset as usize);
            full = true;
        }
        let buf = &buf[..end - offset as usize];
        let mut f = lock(&self.file);
        if f.written.len() < end {
            f.written.resize(end, 0);
        }
        f.written[offset as usize..end].copy_from_slice(buf);
        if full { Err(io::Error::from(io::ErrorKind::StorageFull)) } else { Ok(()) }
    }
    fn sync_data(&self) -> io::Result<()> {
        let delay = {
            let mut d = lock(&self.disk);
            d.syncing += 1;
            d.sync_delay
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        let mut d = lock(&self.disk);
        d.syncing -= 1;
        self.check(&d)?;
        d.syncs += 1;
        if d.fail_sync_at == Some(d.syncs) {
            return Err(io::Error::other("injected sync failure"));
        }
        let mut f = lock(&self.file);
        f.synced = f.written.clone();
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.file).written.len() as u64)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let d = lock(&self.disk);
        self.check(&d)?;
        let current = lock(&self.file).written.len() as u64;
        if let Some(cap) = d.capacity
            && len > current
            && used(&d) + (len - current) > cap
        {
            return Err(io::Error::from(io::ErrorKind::StorageFull));
        }
        lock(&self.file).written.resize(len as usize, 0);
        Ok(())
    }
}

impl Storage for SimStorage {
    fn open(&self, name: &str, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let mut d = lock(&self.disk);
        self.alive(&d)?;
        let file = match d.files.get(name) {
            Some(f) => f.clone(),
            None if create => d.files.entry(name.to_owned()).or_default().clone(),
            None => return Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        Ok(Box::new(SimHandle { file, disk: self.disk.clone(), epoch: d.epoch }))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let mut d = lock(&self.disk);
        self.alive(&d)?;
        let f = d.files.remove(from).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        d.files.insert(to.to_owned(), f);
        Ok(())
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        let mut d = lock(&self.disk);
        self.alive(&d)?;
        d.files.remove(name).map(|_| ()).ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
    fn list(&self) -> io::Result<Vec<String>> {
        Ok(lock(&self.disk).files.keys().cloned().collect())
    }
    fn sync_dir(&self) -> io::Result<()> {
        let mut d = lock(&self.disk);
        self.alive(&d)?;
        d.dir_syncs += 1;
        Ok(())
    }
    fn describe(&self, name: &str) -> String {
        format!("sim:{name}")
    }
    fn free_space(&self) -> io::Result<u64> {
        let d = lock(&self.disk);
        Ok(d.capacity.map_or(u64::MAX, |cap| cap.saturating_sub(used(&d))))
    }
}
