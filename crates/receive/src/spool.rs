//! The spool: a message's data past its header section goes to a file as it arrives, a chunk at a time.
//!
//! A session holds the `Received:` line and the header section in memory and writes the rest of the data to
//! a spool file (unlinked at once, in `<data_dir>/spool`) as it arrives, so that a large message costs the
//! session no more memory than its header: the queue database's writer reads the spooled part back into the
//! message's frame (streaming with bounded memory per session).

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use sluice_queue_db::Body;

use crate::session::Session;

/// Data past this many bytes after the header section goes to the spool file.
const SPOOL_CHUNK: usize = 32 << 10;

/// The part of a message after its header section, once it outgrows [`SPOOL_CHUNK`]: written to a file as
/// it arrives. The header section stays in memory (the end-of-message checks read and edit it).
pub(crate) struct Spool {
    dir: PathBuf,
    mid: u64,
    file: Option<File>,
    /// Bytes in the file.
    len: u64,
    /// The end of the header section in the in-memory part, once found.
    head_end: Option<usize>,
    /// Where the search for the end of the header section goes on.
    search_from: usize,
    /// The in-memory part is kept whole up to here even without the end of the header section found (the
    /// message is refused for its header size then).
    head_limit: usize,
    error: Option<std::io::Error>,
}

impl Spool {
    pub(crate) fn new(dir: PathBuf, mid: u64, received_len: usize, max_header: u64) -> Spool {
        Spool {
            dir,
            mid,
            file: None,
            len: 0,
            head_end: None,
            // A message without a header section starts with CRLF right after the `Received:` line's.
            search_from: received_len.saturating_sub(2),
            head_limit: received_len
                .saturating_add(usize::try_from(max_header).unwrap_or(usize::MAX))
                .saturating_add(4),
            error: None,
        }
    }

    /// The message's length so far.
    pub(crate) fn total(&self, body: &[u8]) -> u64 {
        body.len() as u64 + self.len
    }

    /// Moves what follows the header section to the file once a chunk of it has come.
    pub(crate) fn absorb(&mut self, body: &mut Vec<u8>) {
        if self.head_end.is_none() {
            let from = self.search_from.min(body.len());
            if let Some(p) = body[from..].windows(4).position(|w| w == b"\r\n\r\n") {
                self.head_end = Some(from + p + 4);
            } else if body.len() > self.head_limit {
                self.head_end = Some(self.head_limit);
            }
            self.search_from = body.len().saturating_sub(3);
        }
        if let Some(h) = self.head_end
            && body.len().saturating_sub(h) >= SPOOL_CHUNK
        {
            self.write_out(body, h);
        }
    }

    fn write_out(&mut self, body: &mut Vec<u8>, h: usize) {
        if body.len() <= h {
            return;
        }
        if self.error.is_none() {
            let written = match self.file.as_mut() {
                Some(f) => f.write_all(&body[h..]),
                None => spool_file(&self.dir, self.mid).and_then(|mut f| {
                    f.write_all(&body[h..])?;
                    self.file = Some(f);
                    Ok(())
                }),
            };
            match written {
                Ok(()) => self.len += (body.len() - h) as u64,
                Err(e) => self.error = Some(e),
            }
        }
        // Memory stays bounded also when the spool failed: the message is refused at its end.
        body.truncate(h);
    }

    /// Drops what was spooled (the message is too big and will be refused).
    pub(crate) fn discard(&mut self) {
        self.file = None;
        self.len = 0;
    }

    /// At the end of the data: once the file is in use, what is still in memory past the header section
    /// goes to it too, so that `body` is the header section alone when the end-of-message checks edit it
    /// (an edit that moved bytes still waiting to be spooled would put them out of order).
    pub(crate) fn settle(&mut self, body: &mut Vec<u8>) {
        if let (Some(h), true) = (self.head_end, self.file.is_some()) {
            self.write_out(body, h);
        }
    }

    /// The whole body: in memory when it never needed the file. `settle` first.
    pub(crate) fn finish(self, body: Vec<u8>) -> std::io::Result<Body> {
        if let Some(e) = self.error {
            return Err(e);
        }
        Ok(match self.file {
            None => Body::Memory(body),
            Some(file) => Body::Spooled { head: body, file, tail_len: self.len },
        })
    }
}

/// A new spool file, already unlinked: nothing is left behind whatever happens to the session.
fn spool_file(dir: &std::path::Path, mid: u64) -> std::io::Result<File> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{mid}-{:08x}", std::process::id()));
    let file = File::options().read(true).write(true).create(true).truncate(true).open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

impl Session {
    /// A spool for message `mid`, whose in-memory part starts with a `Received:` line of `received_len` bytes.
    pub(crate) fn spool(&self, mid: u64, received_len: usize) -> Spool {
        Spool::new(self.policy.spool_dir.clone(), mid, received_len, self.policy.connector.max_header_size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::strip_sluice_headers;

    #[test]
    fn a_large_message_is_spooled_past_its_header_and_memory_stays_bounded() {
        let dir = std::env::temp_dir().join(format!("sluice-spool-test-{}", std::process::id()));
        let received = b"Received: by test\r\n";
        let mut body = received.to_vec();
        let mut spool = Spool::new(dir.clone(), 7, received.len(), 1 << 20);
        let mut sent = b"Subject: s\r\nX-Sluice-A: b\r\n\r\n".to_vec();
        body.extend_from_slice(&sent);
        let piece: Vec<u8> = (0..65536u32).map(|i| b"abcdefgh\r\n"[(i % 10) as usize]).collect();
        let mut most = 0;
        for _ in 0..64 {
            body.extend_from_slice(&piece);
            sent.extend_from_slice(&piece);
            spool.absorb(&mut body);
            most = most.max(body.len());
        }
        assert!(most < received.len() + 64 + SPOOL_CHUNK + piece.len(), "held {most} bytes at once");
        assert_eq!(spool.total(&body), (received.len() + sent.len()) as u64);
        // Some data is still in memory when the data ends.
        body.extend_from_slice(b"the last line\r\n");
        sent.extend_from_slice(b"the last line\r\n");
        // The header section stays in memory, where the end-of-message checks edit it; what follows it is
        // all in the file by then, in order.
        spool.settle(&mut body);
        strip_sluice_headers(&mut body, received.len());
        let stored = spool.finish(body).unwrap();
        let Body::Spooled { head, file, tail_len } = &stored else { panic!("not spooled") };
        assert_eq!(&head[received.len()..], b"Subject: s\r\n\r\n");
        let mut whole = head.clone();
        let mut tail = vec![0u8; *tail_len as usize];
        std::os::unix::fs::FileExt::read_exact_at(file, &mut tail, 0).unwrap();
        whole.extend_from_slice(&tail);
        let header_len = b"Subject: s\r\nX-Sluice-A: b\r\n\r\n".len();
        assert_eq!(&whole[received.len() + b"Subject: s\r\n\r\n".len()..], &sent[header_len..]);
        let spool = Spool::new(dir.clone(), 8, received.len(), 1 << 20);
        let small = [&received[..], b"Subject: s\r\n\r\nshort\r\n"].concat();
        assert!(matches!(spool.finish(small), Ok(Body::Memory(_))), "a small message needs no file");
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 0, "spool files are unlinked");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
