//! All file I/O of the queue database goes through [`Storage`], so that tests can run the engine over a
//! backend that fails writes or syncs and drops unsynced bytes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A directory of files. Paths given to it are file names inside that directory.
pub trait Storage: Send + Sync + 'static {
    /// Opens a file for reading and writing, creating it when `create` is set.
    fn open(&self, name: &str, create: bool) -> io::Result<Box<dyn StorageFile>>;
    /// Atomically replaces `to` with `from`.
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
    /// The names of the files in the directory.
    fn list(&self) -> io::Result<Vec<String>>;
    /// Makes creations, renames and removals durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Where the files are, for messages to people.
    fn describe(&self, name: &str) -> String;
    /// Bytes free for this directory's files (what an unprivileged writer may still use).
    fn free_space(&self) -> io::Result<u64>;
    /// Bytes the directory's files take (by default their lengths).
    fn used_space(&self) -> io::Result<u64> {
        let mut total = 0;
        for name in self.list()? {
            // A file removed between the listing and the look is not counted.
            if let Ok(f) = self.open(&name, false) {
                total += f.len().unwrap_or(0);
            }
        }
        Ok(total)
    }
}

/// Whether an error means the file system is full (ENOSPC, or EDQUOT: the same thing to a writer).
pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.kind() == io::ErrorKind::QuotaExceeded
}

/// One open file: positional reads and writes, so that readers and the writer share it without a cursor.
pub trait StorageFile: Send + Sync {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&self) -> io::Result<()>;
    fn len(&self) -> io::Result<u64>;
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    fn set_len(&self, len: u64) -> io::Result<()>;

    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        let mut done = 0;
        while done < buf.len() {
            let n = self.read_at(&mut buf[done..], offset)?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            done += n;
            offset += n as u64;
        }
        Ok(())
    }
}

/// The real file system.
#[derive(Debug, Clone)]
pub struct FsStorage {
    dir: PathBuf,
}

impl FsStorage {
    /// Uses `dir`, creating it when missing.
    pub fn new(dir: impl Into<PathBuf>) -> io::Result<FsStorage> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        Ok(FsStorage { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

struct FsFile(File);

impl StorageFile for FsFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Storage for FsStorage {
    fn open(&self, name: &str, create: bool) -> io::Result<Box<dyn StorageFile>> {
        let f = OpenOptions::new().read(true).write(true).create(create).open(self.dir.join(name))?;
        Ok(Box::new(FsFile(f)))
    }
    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        fs::rename(self.dir.join(from), self.dir.join(to))
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        fs::remove_file(self.dir.join(name))
    }
    fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }
    fn sync_dir(&self) -> io::Result<()> {
        File::open(&self.dir)?.sync_all()
    }
    fn describe(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
    fn free_space(&self) -> io::Result<u64> {
        let st = rustix::fs::statvfs(&self.dir)?;
        Ok(st.f_bavail.saturating_mul(st.f_frsize))
    }
    fn used_space(&self) -> io::Result<u64> {
        use std::os::unix::fs::MetadataExt;
        // The blocks allocated, as `du` counts them: zero-filled preallocation takes space, holes do not.
        let mut total = 0;
        for entry in fs::read_dir(&self.dir)? {
            if let Ok(m) = entry?.metadata() {
                total += m.blocks() * 512;
            }
        }
        Ok(total)
    }
}
