//! sluice's built-in scanning engines.
//!
//! Everything here is pure: no I/O, no threads, no clocks. The crate holds
//!
//! - [`antispam`]: a documented subset of SpamAssassin's rule language, compiled once into a
//!   [`antispam::RuleSet`] and run against each message to give a score and an SCL;
//! - [`antivirus`]: ClamAV-format hash signatures (`.hdb`, `.hsb`) and extended body signatures
//!   (`.ndb`) plus the built-in EICAR test signature, run against every decoded MIME leaf part,
//!   and the stripping of infected parts;
//! - [`manifest`]: the update source's `manifest.json` and the verification of downloaded files;
//! - [`mime`]: decoding a message once so that both engines can share the work.
//!
//! Rule and signature files reach the engines as [`SourceFile`]s; where they come from (the
//! updater, the configuration directory) is the caller's business.

pub mod antispam;
pub mod antivirus;
pub mod manifest;
pub mod mime;
mod per_thread;

/// A rule or signature file: its name (for error messages; its extension picks the format) and
/// its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The file's name, as reported in errors. Only the extension has meaning.
    pub name: String,
    /// The file's contents.
    pub bytes: Vec<u8>,
}
