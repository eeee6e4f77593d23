//! Generation files: the bodies of the messages that entered during one `generation_interval`, appended
//! once and never rewritten, and retired with one unlink when nothing refers to them any more.
//!
//! ```text
//! header: "SLUICEGN" | version u32 | number u32 | created_ms i64 | salt u64        (32 bytes)
//! then:   frames (see `log`), each holding the bodies of one flush and its records
//! ```
//! A flush that stores bodies is one frame here: bodies and the records that refer to them (the `Enqueue`
//! with its envelope, a `Relocate`) under one checksum, made durable by one fdatasync. So a generation alone
//! holds every message's envelope and body, which is what `sluice db salvage` reads.

use crate::record::BodyRef;
use crate::storage::{Storage, StorageFile};
use crate::time::yyyymmddhh;
use crate::{FORMAT_VERSION, OpenError, ReadError};

pub(crate) const GEN_MAGIC: &[u8; 8] = b"SLUICEGN";
pub(crate) const GEN_HEADER_LEN: u64 = 32;

/// `gen-<YYYYMMDDHH>-<n>.que`
pub(crate) fn file_name(number: u32, created_ms: i64) -> String {
    format!("gen-{}-{number}.que", yyyymmddhh(created_ms))
}

/// The generation number in a file name, when it is a generation file's name.
pub(crate) fn parse_name(name: &str) -> Option<u32> {
    let rest = name.strip_prefix("gen-")?.strip_suffix(".que")?;
    let (stamp, n) = rest.split_once('-')?;
    (stamp.len() == 10 && stamp.bytes().all(|b| b.is_ascii_digit())).then_some(())?;
    n.parse().ok()
}

pub(crate) fn encode_header(number: u32, created_ms: i64, salt: u64) -> Vec<u8> {
    let mut b = Vec::with_capacity(GEN_HEADER_LEN as usize);
    b.extend_from_slice(GEN_MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&number.to_le_bytes());
    b.extend_from_slice(&created_ms.to_le_bytes());
    b.extend_from_slice(&salt.to_le_bytes());
    b
}

/// What a generation's header says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GenHeader {
    pub(crate) created_ms: i64,
    /// The salt of its frames' checksums.
    pub(crate) salt: u64,
}

/// Reads and checks a generation file's header.
pub(crate) fn read_header(file: &dyn StorageFile, name: &str) -> Result<GenHeader, OpenError> {
    let mut h = [0u8; GEN_HEADER_LEN as usize];
    let corrupt = |what: &str| OpenError::Corrupt { file: name.to_owned(), offset: 0, what: what.to_owned() };
    file.read_exact_at(&mut h, 0).map_err(|_| corrupt("shorter than its header"))?;
    if &h[..8] != GEN_MAGIC {
        return Err(corrupt("not a sluice generation file (bad magic)"));
    }
    let word = |r: std::ops::Range<usize>| h[r].iter().rev().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    crate::log::check_version(word(8..12) as u32, name)?;
    Ok(GenHeader { created_ms: word(16..24) as i64, salt: word(24..32) })
}

/// Appends `body` to a frame being built in `frame` (header room included) that will be written at file
/// offset `frame_at`; returns where the body will be.
pub(crate) fn encode_body(generation: u32, frame_at: u64, body: &[u8], frame: &mut Vec<u8>) -> BodyRef {
    let offset = frame_at + frame.len() as u64;
    frame.extend_from_slice(body);
    BodyRef { generation, offset, len: body.len() as u64, crc: crc32c::crc32c(body) }
}

/// As [`encode_body`], for a body that may be partly in a spool file (read back here).
pub(crate) fn encode_spooled(
    generation: u32,
    frame_at: u64,
    body: &crate::Body,
    frame: &mut Vec<u8>,
) -> std::io::Result<BodyRef> {
    let start = frame.len();
    body.copy_into(frame)?;
    let bytes = &frame[start..];
    Ok(BodyRef { generation, offset: frame_at + start as u64, len: bytes.len() as u64, crc: crc32c::crc32c(bytes) })
}

/// Reads and verifies a body.
pub(crate) fn read_body(file: &dyn StorageFile, name: &str, body: &BodyRef) -> Result<Vec<u8>, ReadError> {
    let mut buf = vec![0u8; body.len as usize];
    file.read_exact_at(&mut buf, body.offset).map_err(|source| ReadError::Io {
        file: name.to_owned(),
        offset: body.offset,
        source,
    })?;
    if crc32c::crc32c(&buf) != body.crc {
        return Err(ReadError::Checksum { file: name.to_owned(), offset: body.offset });
    }
    Ok(buf)
}

/// Lists the generation files in `storage` as (number, name), lowest number first.
pub(crate) fn list(storage: &dyn Storage) -> std::io::Result<Vec<(u32, String)>> {
    let mut gens: Vec<(u32, String)> =
        storage.list()?.into_iter().filter_map(|n| parse_name(&n).map(|g| (g, n))).collect();
    gens.sort();
    Ok(gens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let name = file_name(42, 1_795_326_845_000);
        assert_eq!(name, "gen-2026112205-42.que");
        assert_eq!(parse_name(&name), Some(42));
        for bad in ["gen-2026-1.que", "gen-2026112205-x.que", "trn.log", "gen-2026112205-1.quex"] {
            assert_eq!(parse_name(bad), None, "{bad}");
        }
    }
}
