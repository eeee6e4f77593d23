//! A message body on its way into the queue database: in memory, or (a large one) its head in memory and
//! the rest in a spool file the receiving session wrote as the data arrived, so that a session never
//! holds a whole large message. The writer copies it into its generation frame.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::ReadError;
use crate::record::BodyRef;
use crate::storage::StorageFile;

/// A body to enqueue.
pub enum Body {
    Memory(Vec<u8>),
    /// `head`, then `tail_len` bytes of `file` from its start.
    Spooled {
        head: Vec<u8>,
        file: File,
        tail_len: u64,
    },
}

impl Body {
    /// The body's length in bytes.
    pub fn len(&self) -> u64 {
        match self {
            Body::Memory(b) => b.len() as u64,
            Body::Spooled { head, tail_len, .. } => head.len() as u64 + tail_len,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the whole body to `out`.
    pub(crate) fn copy_into(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        match self {
            Body::Memory(b) => out.extend_from_slice(b),
            Body::Spooled { head, file, tail_len } => {
                out.extend_from_slice(head);
                let start = out.len();
                out.resize(start + *tail_len as usize, 0);
                if let Err(e) = file.read_exact_at(&mut out[start..], 0) {
                    out.truncate(start - head.len());
                    return Err(e);
                }
            }
        }
        Ok(())
    }
}

impl From<Vec<u8>> for Body {
    fn from(b: Vec<u8>) -> Body {
        Body::Memory(b)
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Memory(b) => write!(f, "Body::Memory({} bytes)", b.len()),
            Body::Spooled { head, tail_len, .. } => write!(f, "Body::Spooled({} + {tail_len} bytes)", head.len()),
        }
    }
}

/// A stored body to read out a piece at a time (delivery streams it instead of holding it whole). Cheap to
/// clone; each [`BodySource::chunks`] starts from the beginning. It holds its generation file open, so a
/// retirement while a delivery reads does not pull the file away.
#[derive(Clone)]
pub struct BodySource {
    inner: Source,
    /// Header lines read with the stored bytes (the work queue's verdict headers), after the body's leading
    /// `Received:` field (sluice's own trace header) or else first: the stored body is never rewritten.
    prefix: Option<Arc<[u8]>>,
}

#[derive(Clone)]
enum Source {
    Stored { name: Arc<str>, file: Arc<dyn StorageFile>, body: BodyRef },
    Memory(Arc<Vec<u8>>),
}

impl BodySource {
    pub(crate) fn stored(name: &str, file: Arc<dyn StorageFile>, body: BodyRef) -> BodySource {
        BodySource { inner: Source::Stored { name: name.into(), file, body }, prefix: None }
    }

    /// A body that is not in a queue database (tests, generated messages).
    pub fn memory(body: Vec<u8>) -> BodySource {
        BodySource { inner: Source::Memory(Arc::new(body)), prefix: None }
    }

    /// The same body with the header lines `prefix` (whole lines, CRLF-ended) inserted after its leading
    /// `Received:` field, or before it when it does not start with one.
    pub fn with_prefix(mut self, prefix: Arc<[u8]>) -> BodySource {
        self.prefix = (!prefix.is_empty()).then_some(prefix);
        self
    }

    pub fn len(&self) -> u64 {
        self.prefix_len()
            + match &self.inner {
                Source::Stored { body, .. } => body.len,
                Source::Memory(b) => b.len() as u64,
            }
    }

    fn prefix_len(&self) -> u64 {
        self.prefix.as_ref().map_or(0, |p| p.len() as u64)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A reader from the first byte.
    pub fn chunks(&self) -> BodyChunks {
        BodyChunks { source: self.clone(), at: 0, crc: 0, prefix_sent: false }
    }

    /// The whole body, its checksum verified.
    pub fn read_all(&self) -> Result<Vec<u8>, ReadError> {
        let mut out = Vec::with_capacity(self.len() as usize);
        let mut chunks = self.chunks();
        while let Some(c) = chunks.next_chunk(1 << 20)? {
            out.extend_from_slice(&c);
        }
        Ok(out)
    }
}

impl std::fmt::Debug for BodySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BodySource({} bytes)", self.len())
    }
}

/// Reads a body in pieces; the checksum is verified with the last piece, which is refused (an error instead
/// of the piece) when it does not match: a sender that writes each piece as it comes can still abort
/// before its end of data.
pub struct BodyChunks {
    source: BodySource,
    at: u64,
    crc: u32,
    prefix_sent: bool,
}

impl BodyChunks {
    /// The next piece of at most `max` bytes (the first one holds the inserted header lines, whole, and may
    /// be longer); `None` after the last one.
    pub fn next_chunk(&mut self, max: usize) -> Result<Option<Vec<u8>>, ReadError> {
        if !self.prefix_sent {
            self.prefix_sent = true;
            if let Some(prefix) = self.source.prefix.clone() {
                let head = self.stored_chunk(max.max(INSERT_WINDOW))?.unwrap_or_default();
                let at = after_leading_received(&head);
                let mut piece = Vec::with_capacity(head.len() + prefix.len());
                piece.extend_from_slice(&head[..at]);
                piece.extend_from_slice(&prefix);
                piece.extend_from_slice(&head[at..]);
                return Ok(Some(piece));
            }
        }
        self.stored_chunk(max)
    }

    /// The next piece of the stored bytes.
    fn stored_chunk(&mut self, max: usize) -> Result<Option<Vec<u8>>, ReadError> {
        let len = self.source.len() - self.source.prefix_len();
        if self.at >= len {
            return Ok(None);
        }
        let n = (len - self.at).min(max.max(1) as u64) as usize;
        let piece = match &self.source.inner {
            Source::Memory(b) => b[self.at as usize..self.at as usize + n].to_vec(),
            Source::Stored { name, file, body } => {
                let mut buf = vec![0u8; n];
                let offset = body.offset + self.at;
                file.read_exact_at(&mut buf, offset).map_err(|source| ReadError::Io {
                    file: name.to_string(),
                    offset,
                    source,
                })?;
                self.crc = crc32c::crc32c_append(self.crc, &buf);
                if self.at + n as u64 == len && self.crc != body.crc {
                    return Err(ReadError::Checksum { file: name.to_string(), offset: body.offset });
                }
                buf
            }
        };
        self.at += n as u64;
        Ok(Some(piece))
    }
}

/// How much of the body is read at once to find where inserted header lines go.
const INSERT_WINDOW: usize = 16 * 1024;

/// The offset just past the body's leading `Received:` field (with its folded lines), or 0 when the body
/// does not start with one or the field does not end within `head`.
fn after_leading_received(head: &[u8]) -> usize {
    if head.len() < 9 || !head[..9].eq_ignore_ascii_case(b"Received:") {
        return 0;
    }
    let mut at = 0;
    while let Some(nl) = head[at..].iter().position(|b| *b == b'\n') {
        at += nl + 1;
        match head.get(at) {
            Some(b' ' | b'\t') => continue,
            Some(_) => return at,
            None => return 0,
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn inserted_lines_follow_the_leading_received_field() {
        let body = b"Received: from a\r\n\tby b; now\r\nSubject: x\r\n\r\nbody\r\n".to_vec();
        let source = BodySource::memory(body).with_prefix(Arc::from(&b"X-Sluice-SCL: 1\r\n"[..]));
        assert_eq!(
            source.read_all().unwrap(),
            b"Received: from a\r\n\tby b; now\r\nX-Sluice-SCL: 1\r\nSubject: x\r\n\r\nbody\r\n".to_vec()
        );
        assert_eq!(after_leading_received(b"Received: cut short"), 0);
    }

    #[test]
    fn a_prefix_is_read_before_the_body() {
        let source = BodySource::memory(b"Subject: x\r\n\r\nbody\r\n".to_vec())
            .with_prefix(Arc::from(&b"X-Sluice-SCL: 1\r\n"[..]));
        assert_eq!(source.len(), 17 + 20);
        assert_eq!(source.read_all().unwrap(), b"X-Sluice-SCL: 1\r\nSubject: x\r\n\r\nbody\r\n".to_vec());
    }

    #[test]
    fn a_spooled_body_is_its_head_then_the_file() {
        let dir = std::env::temp_dir().join(format!("sluice-body-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("spool");
        let mut file = File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        file.write_all(b"the rest\r\n").unwrap();
        std::fs::remove_file(&path).unwrap();
        let body = Body::Spooled { head: b"Subject: x\r\n\r\n".to_vec(), file, tail_len: 10 };
        assert_eq!(body.len(), 24);
        let mut out = b"frame:".to_vec();
        body.copy_into(&mut out).unwrap();
        assert_eq!(out, b"frame:Subject: x\r\n\r\nthe rest\r\n".to_vec());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
