//! Generation files: the bodies of the messages that entered during one `generation_interval`, appended
//! once and never rewritten. A generation is retired with one unlink when nothing refers to it any more.
//!
//! ```text
//! header: "SLUICEGN" | version u32 | number u32 | created_ms i64 | reserved u32     (28 bytes)
//! body:   magic u32 "SLBD" | mid u64 | len u64 | crc u32 | body bytes (len)
//! ```
//! The log's `Enqueue` record points at the body bytes and carries their CRC32C; the body header is there
//! so that `sluice db salvage` can find bodies without the log.

use crate::record::{BodyRef, Mid};
use crate::storage::{Storage, StorageFile};
use crate::time::yyyymmddhh;
use crate::{FORMAT_VERSION, OpenError, ReadError};

pub(crate) const GEN_MAGIC: &[u8; 8] = b"SLUICEGN";
pub(crate) const GEN_HEADER_LEN: u64 = 28;
const BODY_MAGIC: u32 = u32::from_le_bytes(*b"SLBD");
pub(crate) const BODY_HEADER_LEN: u64 = 24;

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

pub(crate) fn encode_header(number: u32, created_ms: i64) -> Vec<u8> {
    let mut b = Vec::with_capacity(GEN_HEADER_LEN as usize);
    b.extend_from_slice(GEN_MAGIC);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&number.to_le_bytes());
    b.extend_from_slice(&created_ms.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b
}

/// Checks a generation file's header.
pub(crate) fn check_header(file: &dyn StorageFile, name: &str) -> Result<(), OpenError> {
    let mut h = [0u8; GEN_HEADER_LEN as usize];
    let corrupt = |what: &str| OpenError::Corrupt { file: name.to_owned(), offset: 0, what: what.to_owned() };
    file.read_exact_at(&mut h, 0).map_err(|_| corrupt("shorter than its header"))?;
    if &h[..8] != GEN_MAGIC {
        return Err(corrupt("not a sluice generation file (bad magic)"));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if version != FORMAT_VERSION {
        return Err(OpenError::Version { file: name.to_owned(), found: version });
    }
    Ok(())
}

/// Appends the body header and body of `mid` to `out`, which will be written at file offset `at`;
/// returns where the body bytes will be.
pub(crate) fn encode_body(generation: u32, at: u64, mid: Mid, body: &[u8], out: &mut Vec<u8>) -> BodyRef {
    let crc = crc32c::crc32c(body);
    out.extend_from_slice(&BODY_MAGIC.to_le_bytes());
    out.extend_from_slice(&mid.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(body);
    BodyRef { generation, offset: at + BODY_HEADER_LEN, len: body.len() as u64, crc }
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
