//! Frames, the unit of the group commit, and the files made of them. A frame is one flush and holds whole
//! transactions only. A flush that carries bodies is one frame appended to the current generation file (the
//! bodies inside it), synced with one fdatasync; a flush without bodies is one frame in the transaction log
//! (`trn.log`). Frames are numbered by one sequence across both kinds of file. At most two frames are
//! unsynced at a time, each the last of its own file, so a crash can tear only the last frame of a file.
//!
//! ```text
//! log header: "SLUICELG" | version u32 | reserved u32 | salt u64 | first_seq u64          (32 bytes)
//! frame:      magic u32 "SLTF" | seq u64 | len u32 | crc u32 | payload (len bytes)
//!             payload = record count u32 | body bytes u32 | bodies | records
//!             crc = CRC32C(salt | seq | len | payload)
//! ```
//! The salt is random per file, so that bytes inside a record or a body (a subject line, a forwarded
//! message) can never pass for a frame when recovery looks past a bad frame to tell a torn tail from damage.

use crate::codec::Dec;
use crate::record::Record;
use crate::storage::StorageFile;
use crate::{DecodeError, FORMAT_VERSION, OpenError};

pub(crate) const LOG_MAGIC: &[u8; 8] = b"SLUICELG";
pub(crate) const LOG_HEADER_LEN: u64 = 32;
const FRAME_MAGIC: u32 = u32::from_le_bytes(*b"SLTF");
pub(crate) const FRAME_HEADER_LEN: u64 = 20;
/// Where a frame's bodies start, from the start of the frame: the header, the record count, the body length.
pub(crate) const FRAME_BODIES_AT: u64 = FRAME_HEADER_LEN + 8;
/// A frame larger than this is not one we wrote: treated as damage.
const MAX_FRAME_LEN: u32 = 1 << 30;
/// Frames are read in chunks of this size.
const READ_CHUNK: usize = 1 << 20;

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

/// Appends one frame holding `bodies` and `records` (already encoded, `count` of them) to `out`.
pub(crate) fn encode_frame(salt: u64, seq: u64, count: u32, bodies: &[u8], records: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    out.reserve(FRAME_BODIES_AT as usize + bodies.len() + records.len());
    out.resize(start + FRAME_BODIES_AT as usize, 0);
    out.extend_from_slice(bodies);
    finish_frame(salt, seq, count, records, out, start);
}

/// Completes the frame that starts at `out[start]`: room for its header and then its bodies are already
/// there (so that bodies are copied once, straight into the frame); appends the records and fills in the
/// header and checksum.
pub(crate) fn finish_frame(salt: u64, seq: u64, count: u32, records: &[u8], out: &mut Vec<u8>, start: usize) {
    let body_len = (out.len() - start - FRAME_BODIES_AT as usize) as u32;
    out.extend_from_slice(records);
    let len = (out.len() - start - FRAME_HEADER_LEN as usize) as u32;
    let f = &mut out[start..];
    f[0..4].copy_from_slice(&FRAME_MAGIC.to_le_bytes());
    f[4..12].copy_from_slice(&seq.to_le_bytes());
    f[12..16].copy_from_slice(&len.to_le_bytes());
    f[20..24].copy_from_slice(&count.to_le_bytes());
    f[24..28].copy_from_slice(&body_len.to_le_bytes());
    let mut crc = crc32c::crc32c(&salt.to_le_bytes());
    crc = crc32c::crc32c_append(crc, &f[4..16]);
    crc = crc32c::crc32c_append(crc, &f[FRAME_HEADER_LEN as usize..]);
    f[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// One good frame found by a scan.
pub(crate) struct Frame {
    pub(crate) seq: u64,
    /// Where the frame starts in its file.
    pub(crate) offset: u64,
    /// The file offsets of its bodies: `[start, end)`.
    pub(crate) bodies: (u64, u64),
    pub(crate) records: Vec<Record>,
}

/// How the sequence numbers of a file's frames must run.
#[derive(Clone, Copy)]
pub(crate) enum Order {
    /// One after another from this number (a checkpoint).
    From(u64),
    /// Rising, with gaps where frames went to other files (the log and the generations).
    Rising,
    /// In any order (salvage: whatever is readable).
    Any,
}

/// What a scan does at a bad frame that has a good frame somewhere after it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnDamage {
    /// Stop with [`OpenError::Corrupt`] naming the offset (open and check).
    Fail,
    /// Note it in [`FrameScan::damage`] and go on at the next good frame (salvage).
    Skip,
}

/// What reading a file's frames found.
pub(crate) struct FrameScan {
    /// The end of the last good frame (where the next frame would go).
    pub(crate) end: u64,
    /// Bytes of torn tail after the last good frame, up to the last nonzero byte (zero-filled preallocation
    /// and zeros of an extension that never got its data do not count).
    pub(crate) torn_bytes: u64,
    /// (offset, what) of each bad stretch skipped with [`OnDamage::Skip`]; a torn tail is not listed.
    pub(crate) damage: Vec<(u64, String)>,
}

/// Reads a file's frames from `start`, handing each good frame to `each` as it is read (a checkpoint of a
/// million messages is applied frame by frame). A bad frame with no good frame anywhere after it is a torn
/// tail (the last flush did not finish); a bad frame followed by a good one is damage, reported with its
/// offset (or skipped, with [`OnDamage::Skip`]). An error from `each` ends the scan.
pub(crate) fn scan_frames(
    file: &dyn StorageFile,
    name: &str,
    start: u64,
    salt: u64,
    (order, on_damage): (Order, OnDamage),
    mut each: impl FnMut(Frame) -> Result<(), OpenError>,
) -> Result<FrameScan, OpenError> {
    let io = |e| OpenError::io(name, e);
    let len = file.len().map_err(io)?;
    let mut r = Reader::new(file, len);
    let mut damage = Vec::new();
    let mut pos = start;
    let mut last: Option<u64> = None;
    loop {
        let found = r.frame(pos, salt).map_err(io)?;
        let what = match found {
            None if pos >= len => return Ok(FrameScan { end: pos, torn_bytes: 0, damage }),
            Some((seq, flen, Ok((records, bodies)))) if in_order(order, last, seq) => {
                let at = pos + FRAME_BODIES_AT;
                each(Frame { seq, offset: pos, bodies: (at, at + bodies), records })?;
                last = Some(seq);
                pos += flen;
                continue;
            }
            Some((seq, _, Err(e))) if in_order(order, last, seq) => match on_damage {
                OnDamage::Fail => {
                    return Err(OpenError::Corrupt {
                        file: name.to_owned(),
                        offset: pos,
                        what: format!("frame {seq} passes its checksum but does not decode: {e}"),
                    });
                }
                OnDamage::Skip => format!("frame {seq} does not decode: {e}"),
            },
            Some((seq, _, _)) => format!("frame sequence {seq} out of order after {last:?}"),
            None => "bad frame".to_owned(),
        };
        match r.find_good_frame(pos + 1, salt).map_err(io)? {
            Some(later) if on_damage == OnDamage::Skip => {
                damage.push((pos, format!("{what}; {} bytes skipped", later - pos)));
                pos = later;
            }
            Some(later) => {
                return Err(OpenError::Corrupt {
                    file: name.to_owned(),
                    offset: pos,
                    what: format!("{what}, followed by a good frame at offset {later}"),
                });
            }
            None => {
                let torn_bytes = r.last_nonzero_after(pos).map_err(io)?;
                return Ok(FrameScan { end: pos, torn_bytes, damage });
            }
        }
    }
}

fn in_order(order: Order, last: Option<u64>, seq: u64) -> bool {
    match (order, last) {
        (Order::From(first), None) => seq == first,
        (Order::From(_), Some(l)) => seq == l + 1,
        (Order::Rising, None) | (Order::Any, _) => true,
        (Order::Rising, Some(l)) => seq > l,
    }
}

/// Reads and checks the 32-byte header of a log-format file.
pub(crate) fn read_header(file: &dyn StorageFile, name: &str, magic: &[u8; 8]) -> Result<LogHeader, OpenError> {
    let mut h = [0u8; LOG_HEADER_LEN as usize];
    let corrupt = |what: String| OpenError::Corrupt { file: name.to_owned(), offset: 0, what };
    file.read_exact_at(&mut h, 0).map_err(|_| corrupt("shorter than its header".into()))?;
    if &h[..8] != magic {
        return Err(corrupt(format!("bad magic (expected {})", String::from_utf8_lossy(magic))));
    }
    let mut d = Dec::new(&h[8..]);
    let bad = |_| corrupt("short header".into());
    let version = d.u32().map_err(bad)?;
    check_version(version, name)?;
    let _reserved = d.u32().map_err(bad)?;
    Ok(LogHeader { salt: d.u64().map_err(bad)?, first_seq: d.u64().map_err(bad)? })
}

/// Refuses a format this binary does not read: newer ones, and the first one (frames without bodies).
pub(crate) fn check_version(version: u32, name: &str) -> Result<(), OpenError> {
    if version == FORMAT_VERSION { Ok(()) } else { Err(OpenError::Version { file: name.to_owned(), found: version }) }
}

/// Decodes a payload: the records, and the length of the bodies before them.
fn decode_payload(payload: &[u8]) -> Result<(Vec<Record>, u64), DecodeError> {
    let mut d = Dec::new(payload);
    let count = d.u32()? as usize;
    let body_len = d.u32()? as usize;
    let records_at = 8usize.checked_add(body_len).filter(|n| *n <= payload.len()).ok_or(DecodeError::Truncated)?;
    let mut d = Dec::new(&payload[records_at..]);
    let mut records = Vec::with_capacity(count.min(4096));
    for _ in 0..count {
        records.push(Record::decode(&mut d)?);
    }
    if !d.is_empty() {
        return Err(DecodeError::Trailing);
    }
    Ok((records, body_len as u64))
}

/// Reads a file in large chunks, for scanning frames.
struct Reader<'a> {
    file: &'a dyn StorageFile,
    len: u64,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    at: u64,
}

impl<'a> Reader<'a> {
    fn new(file: &'a dyn StorageFile, len: u64) -> Reader<'a> {
        Reader { file, len, buf: Vec::new(), at: 0 }
    }

    /// The `n` bytes at `offset`, or `None` past the end of the file.
    fn bytes(&mut self, offset: u64, n: usize) -> std::io::Result<Option<&[u8]>> {
        if offset.checked_add(n as u64).is_none_or(|end| end > self.len) {
            return Ok(None);
        }
        if offset < self.at || offset + n as u64 > self.at + self.buf.len() as u64 {
            let want = n.max(READ_CHUNK).min((self.len - offset) as usize);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, offset)?;
            self.at = offset;
        }
        let start = (offset - self.at) as usize;
        Ok(Some(&self.buf[start..start + n]))
    }

    /// A whole, checksummed frame at `offset`: (seq, frame length, its records and body length decoded).
    #[allow(clippy::type_complexity)]
    fn frame(
        &mut self,
        offset: u64,
        salt: u64,
    ) -> std::io::Result<Option<(u64, u64, Result<(Vec<Record>, u64), DecodeError>)>> {
        let Some(h) = self.bytes(offset, FRAME_HEADER_LEN as usize)? else { return Ok(None) };
        let mut header = [0u8; FRAME_HEADER_LEN as usize];
        header.copy_from_slice(h);
        let word = |r: std::ops::Range<usize>| header[r].iter().rev().fold(0u64, |a, b| (a << 8) | u64::from(*b));
        if word(0..4) as u32 != FRAME_MAGIC {
            return Ok(None);
        }
        let (seq, len, crc) = (word(4..12), word(12..16) as u32, word(16..20) as u32);
        if !(8..=MAX_FRAME_LEN).contains(&len) {
            return Ok(None);
        }
        let mut c = crc32c::crc32c(&salt.to_le_bytes());
        c = crc32c::crc32c_append(c, &header[4..16]);
        let Some(payload) = self.bytes(offset + FRAME_HEADER_LEN, len as usize)? else { return Ok(None) };
        c = crc32c::crc32c_append(c, payload);
        Ok((c == crc).then(|| (seq, FRAME_HEADER_LEN + u64::from(len), decode_payload(payload))))
    }

    fn find_good_frame(&mut self, from: u64, salt: u64) -> std::io::Result<Option<u64>> {
        let magic = FRAME_MAGIC.to_le_bytes();
        let mut at = from;
        while at + FRAME_HEADER_LEN <= self.len {
            let n = (self.len - at).min(READ_CHUNK as u64) as usize;
            let Some(chunk) = self.bytes(at, n)? else { break };
            let hits: Vec<u64> =
                chunk.windows(4).enumerate().filter(|(_, w)| *w == magic).map(|(i, _)| at + i as u64).collect();
            for hit in hits {
                if self.frame(hit, salt)?.is_some() {
                    return Ok(Some(hit));
                }
            }
            // Overlap by three bytes so that a magic across two chunks is seen.
            at += (n as u64).saturating_sub(3).max(1);
        }
        Ok(None)
    }

    /// How many bytes from `from` up to the last nonzero byte of the file.
    fn last_nonzero_after(&mut self, from: u64) -> std::io::Result<u64> {
        let mut torn = 0;
        let mut at = from;
        while at < self.len {
            let n = (self.len - at).min(READ_CHUNK as u64) as usize;
            let Some(chunk) = self.bytes(at, n)? else { break };
            if let Some(p) = chunk.iter().rposition(|b| *b != 0) {
                torn = at + p as u64 + 1 - from;
            }
            at += n as u64;
        }
        Ok(torn)
    }
}

/// Whether a log file has no header yet: shorter than one, or zeros (created, its first write lost).
pub(crate) fn is_unwritten(file: &dyn StorageFile) -> std::io::Result<bool> {
    let len = file.len()?;
    if len < LOG_HEADER_LEN {
        return Ok(true);
    }
    let mut h = [0u8; LOG_HEADER_LEN as usize];
    file.read_exact_at(&mut h, 0)?;
    Ok(h.iter().all(|b| *b == 0))
}
