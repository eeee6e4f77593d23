//! The one walker over a database's log and generation files, shared by recovery (`QueueDb::open`),
//! `sluice db check` and `sluice db export`/`salvage`: it opens each file and reads its header, its good
//! frames and its torn tail the way its [`Mode`] asks.

use std::sync::Arc;

use crate::generation::{self, GEN_HEADER_LEN, GenHeader};
use crate::log::{self, FrameScan, LOG_HEADER_LEN, LOG_MAGIC, LogHeader, OnDamage, Order};
use crate::storage::{Storage, StorageFile};
use crate::{LOG, OpenError};

/// Who reads the files, which decides what counts as damage and what is done about it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Opening the database: frames in rising sequence, damage before a file's tail is fatal.
    Recover,
    /// `sluice db check`: as `Recover`, but every problem is the verdict on its file, not an error.
    Check,
    /// `sluice db export`/`salvage`: every readable frame in any order, bad stretches skipped and reported.
    Salvage,
}

impl Mode {
    fn scan(self) -> (Order, OnDamage) {
        match self {
            Mode::Recover | Mode::Check => (Order::Rising, OnDamage::Fail),
            Mode::Salvage => (Order::Any, OnDamage::Skip),
        }
    }
}

/// What kind of frame file a [`DbFile`] is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `trn.log` or a closed log.
    Log,
    /// A generation, with its number.
    Generation(u32),
}

/// A log or generation file, open for reading.
pub(crate) struct DbFile {
    pub(crate) name: String,
    /// The file as described in errors.
    pub(crate) described: String,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) kind: Kind,
}

/// What a file's header says.
pub(crate) enum Header {
    Log(LogHeader),
    Generation(GenHeader),
}

impl Header {
    /// The salt of the file's frame checksums.
    fn salt(&self) -> u64 {
        match self {
            Header::Log(h) => h.salt,
            Header::Generation(h) => h.salt,
        }
    }

    /// Where the file's frames start.
    fn frames_at(&self) -> u64 {
        match self {
            Header::Log(_) => LOG_HEADER_LEN,
            Header::Generation(_) => GEN_HEADER_LEN,
        }
    }
}

/// What reading one file found.
pub(crate) enum Read {
    /// A log with no header yet (created, its first write lost): it holds nothing.
    Unwritten,
    /// The header is unreadable or (in [`Mode::Check`]) the frames are damaged.
    Bad(OpenError),
    /// The header, and where the good frames end and how much torn tail follows them.
    Frames(Header, FrameScan),
}

/// Reads a database's frame files in one [`Mode`].
pub(crate) struct Walker<'a> {
    storage: &'a dyn Storage,
    mode: Mode,
}

impl<'a> Walker<'a> {
    pub(crate) fn new(storage: &'a dyn Storage, mode: Mode) -> Walker<'a> {
        Walker { storage, mode }
    }

    /// `name` as errors describe it.
    pub(crate) fn describe(&self, name: &str) -> String {
        self.storage.describe(name)
    }

    /// Opens `name` for reading.
    pub(crate) fn open(&self, name: &str, kind: Kind) -> Result<DbFile, OpenError> {
        let described = self.describe(name);
        let file = self.storage.open(name, false).map_err(|e| OpenError::io(&described, e))?;
        Ok(DbFile { name: name.to_owned(), described, file: Arc::from(file), kind })
    }

    /// Every generation file, lowest number first, opened.
    pub(crate) fn generations(&self) -> Result<Vec<DbFile>, OpenError> {
        let gens = generation::list(self.storage).map_err(|e| OpenError::io(&self.storage.describe(""), e))?;
        gens.into_iter().map(|(number, name)| self.open(&name, Kind::Generation(number))).collect()
    }

    /// Reads a file's header.
    pub(crate) fn header(&self, f: &DbFile) -> Result<Header, OpenError> {
        match f.kind {
            Kind::Log => log::read_header(f.file.as_ref(), &f.described, LOG_MAGIC).map(Header::Log),
            Kind::Generation(_) => generation::read_header(f.file.as_ref(), &f.described).map(Header::Generation),
        }
    }

    /// Reads a file's frames after `header`, handing each good one to `each`.
    pub(crate) fn frames(
        &self,
        f: &DbFile,
        header: &Header,
        each: impl FnMut(log::Frame) -> Result<(), OpenError>,
    ) -> Result<FrameScan, OpenError> {
        log::scan_frames(f.file.as_ref(), &f.described, header.frames_at(), header.salt(), self.mode.scan(), each)
    }

    /// Reads a whole file: its header, then its frames, each good one handed to `each`. I/O errors (and, but
    /// in [`Mode::Check`], damaged frames) are errors; a bad header is [`Read::Bad`].
    pub(crate) fn read(
        &self,
        f: &DbFile,
        each: impl FnMut(log::Frame) -> Result<(), OpenError>,
    ) -> Result<Read, OpenError> {
        // Only `trn.log` is created before its header is written; salvage takes any log in that state.
        let may_be_unwritten = f.kind == Kind::Log && (f.name == LOG || self.mode == Mode::Salvage);
        if may_be_unwritten && log::is_unwritten(f.file.as_ref()).map_err(|e| OpenError::io(&f.described, e))? {
            return Ok(Read::Unwritten);
        }
        let header = match self.header(f) {
            Ok(h) => h,
            Err(e) => return Ok(Read::Bad(e)),
        };
        match self.frames(f, &header, each) {
            Ok(scan) => Ok(Read::Frames(header, scan)),
            Err(e) if self.mode == Mode::Check => Ok(Read::Bad(e)),
            Err(e) => Err(e),
        }
    }
}
