//! The transaction log: a file header, then frames. A frame is one flush of the group commit and holds
//! whole transactions only; it is written and fsynced before the next frame is written, so only the last
//! frame of the log can be torn by a crash.
//!
//! ```text
//! header: "SLUICELG" | version u32 | reserved u32 | salt u64 | first_seq u64          (32 bytes)
//! frame:  magic u32 "SLTF" | seq u64 | len u32 | crc u32 | payload (len bytes)
//!         crc = CRC32C(salt | seq | len | payload); payload = count u32, then the records
//! ```
//! The salt is random per log file, so that bytes inside a record (a subject line, say) can never pass for
//! a frame when recovery looks past a bad frame to tell a torn tail from damage.

use crate::codec::Dec;
use crate::record::Record;
use crate::storage::StorageFile;
use crate::{DecodeError, FORMAT_VERSION, OpenError};

pub(crate) const LOG_MAGIC: &[u8; 8] = b"SLUICELG";
pub(crate) const LOG_HEADER_LEN: u64 = 32;
const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"SLTF");
pub(crate) const FRAME_HEADER_LEN: usize = 20;
/// A frame larger than this is not one we wrote: treated as damage.
const MAX_FRAME_LEN: u32 = 256 << 20;

pub(crate) struct LogHeader {
    pub(crate) salt: u64,
    pub(crate) first_seq: u64,
}

pub(crate) fn encode_header(h: &LogHeader) -> Vec<u8> {
    encode_header_with(LOG_MAGIC, h)
}

pub(crate) fn encode_header_with(magic: &[u8; 8], h: &LogHeader) -> Vec<u8> {
    let mut b = Vec::with_capacity(LOG_HEADER_LEN as usize);
    b.extend_from_slice(magic);
    b.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&h.salt.to_le_bytes());
    b.extend_from_slice(&h.first_seq.to_le_bytes());
    b
}

/// Appends one frame holding `records` (already encoded, `count` of them) to `out`.
pub(crate) fn encode_frame(salt: u64, seq: u64, count: u32, records: &[u8], out: &mut Vec<u8>) {
    let len = (records.len() + 4) as u32;
    let mut crc = crc32c::crc32c(&salt.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &len.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &count.to_le_bytes());
    crc = crc32c::crc32c_append(crc, records);
    out.extend_from_slice(&FRAME_MAGIC.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(records);
}

/// What reading a log found.
pub(crate) struct LogScan {
    /// The header's sequence field: the first frame's sequence in a log, the next sequence after the
    /// covered log in a checkpoint.
    pub(crate) header_seq: u64,
    pub(crate) frames: Vec<Vec<Record>>,
    /// Bytes of torn tail found after the last good frame (zero-filled preallocation does not count).
    pub(crate) torn_bytes: u64,
}

/// Reads a whole log file. A bad frame with no good frame anywhere after it is a torn tail (the last flush
/// did not finish); a bad frame followed by a good one is damage, reported with its offset.
pub(crate) fn scan(file: &dyn StorageFile, name: &str) -> Result<LogScan, OpenError> {
    scan_file(file, name, LOG_MAGIC, None)
}

/// Reads a log-format file with the given magic; frames are numbered from `frames_from`, or from the
/// header's sequence when `None`.
pub(crate) fn scan_file(
    file: &dyn StorageFile,
    name: &str,
    magic: &[u8; 8],
    frames_from: Option<u64>,
) -> Result<LogScan, OpenError> {
    let len = file.len().map_err(|e| OpenError::io(name, e))?;
    let mut data = vec![0u8; len as usize];
    file.read_exact_at(&mut data, 0).map_err(|e| OpenError::io(name, e))?;
    let header = parse_header(&data, name, magic)?;
    let header_seq = header.first_seq;
    let mut frames = Vec::new();
    let mut pos = LOG_HEADER_LEN as usize;
    let mut next_seq = frames_from.unwrap_or(header.first_seq);
    while pos < data.len() {
        match parse_frame(&data[pos..], header.salt) {
            Some((seq, payload, flen)) if seq == next_seq => {
                let records = decode_payload(payload).map_err(|e| OpenError::Corrupt {
                    file: name.to_owned(),
                    offset: pos as u64,
                    what: format!("frame {seq} passes its checksum but does not decode: {e}"),
                })?;
                frames.push(records);
                next_seq += 1;
                pos += flen;
            }
            found => {
                let what = match found {
                    Some((seq, _, _)) => format!("frame sequence {seq} where {next_seq} was expected"),
                    None => "bad frame".to_owned(),
                };
                if let Some(later) = find_good_frame(&data, pos + 1, header.salt) {
                    return Err(OpenError::Corrupt {
                        file: name.to_owned(),
                        offset: pos as u64,
                        what: format!("{what}, followed by a good frame at offset {later}"),
                    });
                }
                // Zero-filled preallocated space is not a torn write: count only up to the last nonzero byte.
                let torn = data[pos..].iter().rposition(|b| *b != 0).map_or(0, |p| p + 1) as u64;
                return Ok(LogScan { header_seq, frames, torn_bytes: torn });
            }
        }
    }
    Ok(LogScan { header_seq, frames, torn_bytes: 0 })
}

fn parse_header(data: &[u8], name: &str, magic: &[u8; 8]) -> Result<LogHeader, OpenError> {
    if data.len() < LOG_HEADER_LEN as usize || &data[..8] != magic {
        return Err(OpenError::Corrupt {
            file: name.to_owned(),
            offset: 0,
            what: format!("bad magic (expected {})", String::from_utf8_lossy(magic)),
        });
    }
    let mut d = Dec::new(&data[8..LOG_HEADER_LEN as usize]);
    let bad = |_| OpenError::Corrupt { file: name.to_owned(), offset: 0, what: "short header".into() };
    let version = d.u32().map_err(bad)?;
    if version != FORMAT_VERSION {
        return Err(OpenError::Version { file: name.to_owned(), found: version });
    }
    let _reserved = d.u32().map_err(bad)?;
    Ok(LogHeader { salt: d.u64().map_err(bad)?, first_seq: d.u64().map_err(bad)? })
}

/// Returns (seq, payload, frame length) when a whole, checksummed frame starts at `data[0]`.
fn parse_frame(data: &[u8], salt: u64) -> Option<(u64, &[u8], usize)> {
    let header = data.get(..FRAME_HEADER_LEN)?;
    let word = |r: std::ops::Range<usize>| header[r].iter().rev().fold(0u64, |a, b| (a << 8) | u64::from(*b));
    if word(0..4) as u32 != FRAME_MAGIC {
        return None;
    }
    let seq = word(4..12);
    let len = word(12..16) as u32;
    let crc = word(16..20) as u32;
    if !(4..=MAX_FRAME_LEN).contains(&len) {
        return None;
    }
    let payload = data.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + len as usize)?;
    let mut c = crc32c::crc32c(&salt.to_le_bytes());
    c = crc32c::crc32c_append(c, &header[4..16]);
    c = crc32c::crc32c_append(c, payload);
    (c == crc).then_some((seq, payload, FRAME_HEADER_LEN + len as usize))
}

fn find_good_frame(data: &[u8], from: usize, salt: u64) -> Option<usize> {
    let magic = FRAME_MAGIC.to_le_bytes();
    (from..data.len().saturating_sub(FRAME_HEADER_LEN))
        .find(|&i| data[i..i + 4] == magic && parse_frame(&data[i..], salt).is_some())
}

fn decode_payload(payload: &[u8]) -> Result<Vec<Record>, DecodeError> {
    let mut d = Dec::new(payload);
    let count = d.u32()? as usize;
    let mut records = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        records.push(Record::decode(&mut d)?);
    }
    if !d.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok(records)
}
