//! The message content of a transaction: DATA (dot-stuffed, ended by `<CRLF>.<CRLF>`) and BDAT (RFC 3030
//! CHUNKING, framed by chunk sizes), and the checks every message passes at its end before it is stored:
//! size, bare CR/LF/NUL, header size, hop count, and the removal of `X-Sluice-*` headers from clients outside
//! `relay_networks`.
//!
//! A session holds the `Received:` line and the header section in memory and writes the rest of the data to
//! a spool file (unlinked at once, in `<data_dir>/spool`) as it arrives, a chunk at a time, so that a large
//! message costs the session no more memory than its header: the queue database's writer reads the spooled
//! part back into the message's frame (spec 03: streaming with bounded memory per session).

use std::fs::File;
use std::io::Write;
use std::net::IpAddr;
use std::path::PathBuf;

use sluice_queue_db::{Body, Envelope, EnvelopeParts, now_ms, time::rfc5322};
use sluice_smtp::{BareNewlines, BdatDecoder, DataDecoder, DataStatus, DataViolation, Reply, ReversePath};

use crate::session::{Flow, Session};

/// BDAT chunks of the current transaction.
pub(crate) struct Chunks {
    decoder: BdatDecoder,
    mid: u64,
    received_len: usize,
    body: Vec<u8>,
    spool: Spool,
    too_big: bool,
}

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
    fn new(dir: PathBuf, mid: u64, received_len: usize, max_header: u64) -> Spool {
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
    fn total(&self, body: &[u8]) -> u64 {
        body.len() as u64 + self.len
    }

    /// Moves what follows the header section to the file once a chunk of it has come.
    fn absorb(&mut self, body: &mut Vec<u8>) {
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
    fn discard(&mut self) {
        self.file = None;
        self.len = 0;
    }

    /// At the end of the data: once the file is in use, what is still in memory past the header section
    /// goes to it too, so that `body` is the header section alone when the end-of-message checks edit it
    /// (an edit that moved bytes still waiting to be spooled would put them out of order).
    fn settle(&mut self, body: &mut Vec<u8>) {
        if let (Some(h), true) = (self.head_end, self.file.is_some()) {
            self.write_out(body, h);
        }
    }

    /// The whole body: in memory when it never needed the file. `settle` first.
    fn finish(self, body: Vec<u8>) -> std::io::Result<Body> {
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

/// What the end-of-message checks need from either decoder.
struct Content {
    violation: Option<DataViolation>,
    header_bytes: u64,
    received_headers: usize,
}

impl Session {
    fn bare_newlines(&self) -> BareNewlines {
        match self.policy.connector.bare_newlines {
            sluice_config::BareNewlines::Reject => BareNewlines::Reject,
            sluice_config::BareNewlines::Normalize => BareNewlines::Normalize,
        }
    }

    pub(crate) async fn data(&mut self) -> std::io::Result<Flow> {
        let Some(tx) = self.tx.as_ref() else {
            self.reply(Reply::new(503, "5.5.1", "Need MAIL and RCPT before DATA"));
            return Ok(Flow::Continue);
        };
        if tx.chunks.is_some() {
            self.reply(Reply::new(503, "5.5.1", "DATA cannot follow BDAT in one transaction"));
            return Ok(Flow::Continue);
        }
        if tx.recipients.is_empty() {
            self.reply(Reply::new(554, "5.5.1", "No valid recipients"));
            return Ok(Flow::Continue);
        }
        if !self.input.is_empty() {
            // RFC 2920 3.1: DATA ends a pipelined group and the message follows the 354 only. Bytes sent with
            // it cannot be told apart from commands: refused, logged, and the connection closed (Postfix's
            // "improper command pipelining after DATA").
            tracing::info!(peer = %self.peer, bytes = self.input.len(), "improper pipelining after DATA; closing");
            self.tx = None;
            self.reply(Reply::new(554, "5.5.0", "Improper use of SMTP command pipelining"));
            return Ok(Flow::Close);
        }
        let mid = self.transport.allocate_mid();
        let received = self.received_header(mid);
        self.reply(Reply::new(354, "", "End data with <CR><LF>.<CR><LF>"));
        self.flush().await?;

        let max = self.policy.connector.max_message_size;
        let mut decoder = DataDecoder::new(self.bare_newlines());
        let mut body = Vec::with_capacity(received.len() + 8192);
        body.extend_from_slice(received.as_bytes());
        let mut spool = self.spool(mid, received.len());
        let mut too_big = false;
        loop {
            let status = decoder.feed(&self.input, &mut body);
            if too_big || spool.total(&body) - received.len() as u64 > max {
                // Keep reading to the end of the data, but keep nothing.
                too_big = true;
                body.truncate(received.len());
                spool.discard();
            }
            spool.absorb(&mut body);
            match status {
                DataStatus::Done { consumed } => {
                    self.input.drain(..consumed);
                    break;
                }
                DataStatus::NeedMore => self.input.clear(),
            }
            self.flush().await?;
            if !self.fill().await? {
                return Ok(Flow::Close);
            }
        }
        let content = Content {
            violation: decoder.violation(),
            header_bytes: decoder.header_bytes(),
            received_headers: decoder.count_received_headers(),
        };
        self.finish_message(mid, received.len(), body, spool, too_big, content).await;
        Ok(Flow::Continue)
    }

    fn spool(&self, mid: u64, received_len: usize) -> Spool {
        Spool::new(self.policy.spool_dir.clone(), mid, received_len, self.policy.connector.max_header_size)
    }

    /// `BDAT <size> [LAST]`: reads exactly `size` octets of content (also when the command is refused, so
    /// that they are never taken for commands), and stores the message at `LAST`.
    pub(crate) async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<Flow> {
        let refusal = match self.tx.as_ref() {
            None => Some(Reply::new(503, "5.5.1", "Need MAIL and RCPT before BDAT")),
            Some(tx) if tx.recipients.is_empty() => Some(Reply::new(554, "5.5.1", "No valid recipients")),
            Some(_) => None,
        };
        if refusal.is_none() && self.tx.as_ref().is_some_and(|t| t.chunks.is_none()) {
            let mid = self.transport.allocate_mid();
            let received = self.received_header(mid);
            let mut body = Vec::with_capacity(received.len() + 8192);
            body.extend_from_slice(received.as_bytes());
            let chunks = Chunks {
                decoder: BdatDecoder::new(self.bare_newlines()),
                mid,
                received_len: received.len(),
                body,
                spool: self.spool(mid, received.len()),
                too_big: false,
            };
            if let Some(tx) = self.tx.as_mut() {
                tx.chunks = Some(chunks);
            }
        }
        let max = self.policy.connector.max_message_size;
        let mut remaining = size;
        loop {
            let take = remaining.min(self.input.len() as u64) as usize;
            if take > 0 {
                if refusal.is_none()
                    && let Some(c) = self.tx.as_mut().and_then(|t| t.chunks.as_mut())
                {
                    c.decoder.feed(&self.input[..take], &mut c.body);
                    if c.too_big || c.spool.total(&c.body) - c.received_len as u64 > max {
                        c.too_big = true;
                        c.body.truncate(c.received_len);
                        c.spool.discard();
                    }
                    c.spool.absorb(&mut c.body);
                }
                self.input.drain(..take);
                remaining -= take as u64;
            }
            if remaining == 0 {
                break;
            }
            self.flush().await?;
            if !self.fill().await? {
                return Ok(Flow::Close);
            }
        }
        if let Some(r) = refusal {
            self.reply(r);
            return Ok(Flow::Continue);
        }
        if !last {
            self.reply(Reply::new(250, "2.0.0", format!("{size} octets received")));
            return Ok(Flow::Continue);
        }
        let Some(mut c) = self.tx.as_mut().and_then(|t| t.chunks.take()) else { return Ok(Flow::Continue) };
        c.decoder.finish(&mut c.body);
        let content = Content {
            violation: c.decoder.violation(),
            header_bytes: c.decoder.header_bytes(),
            received_headers: c.decoder.count_received_headers(),
        };
        self.finish_message(c.mid, c.received_len, c.body, c.spool, c.too_big, content).await;
        Ok(Flow::Continue)
    }

    /// The end of a message: the checks, then the durable commit, then `250`. The transaction ends either way.
    async fn finish_message(
        &mut self,
        mid: u64,
        received_len: usize,
        mut body: Vec<u8>,
        mut spool: Spool,
        too_big: bool,
        c: Content,
    ) {
        let Some(tx) = self.tx.take() else { return };
        let connector = &self.policy.connector;
        if too_big || spool.total(&body) - received_len as u64 > connector.max_message_size {
            return self.reply(Reply::new(552, "5.3.4", "Message size exceeds the fixed maximum message size"));
        }
        if let Some(v) = c.violation {
            // With bare_newlines = "normalize" only NUL is a violation; with "reject" bare CR and LF are too.
            tracing::info!(peer = %self.peer, violation = ?v, "message refused: bare CR, LF or NUL in data");
            return self.reply(v.reply());
        }
        if c.header_bytes > connector.max_header_size {
            return self.reply(Reply::new(552, "5.3.4", "Message header exceeds the maximum header size"));
        }
        if c.received_headers >= connector.max_hop_count as usize {
            tracing::info!(peer = %self.peer, hops = c.received_headers, "message refused: mail loop");
            return self.reply(Reply::new(554, "5.4.6", "Too many hops"));
        }
        spool.settle(&mut body);
        if !self.relay_client {
            strip_sluice_headers(&mut body, received_len);
        }
        let (message_id, subject) = header_fields(&body[received_len..]);
        let body = match spool.finish(body) {
            Ok(b) => b,
            Err(e) if sluice_queue_db::is_disk_full(&e) => {
                // A full file system, like the queue database's own ENOSPC: refused as such, and new mail
                // with it until space returns.
                tracing::warn!(error = %e, dir = %self.policy.spool_dir.display(), "message not spooled: the disk is full");
                self.transport.disk_is_full();
                return self.reply(Reply::new(452, "4.3.1", "Insufficient system storage, try again later"));
            }
            Err(e) => {
                tracing::error!(error = %e, dir = %self.policy.spool_dir.display(), "cannot spool message data");
                return self.reply(Reply::new(451, "4.3.0", "Temporary storage failure, try again later"));
            }
        };
        let envelope = Envelope::from(EnvelopeParts {
            from: match &tx.from {
                ReversePath::Null => String::new(),
                ReversePath::Address(a) => a.to_string(),
            },
            recipients: tx.recipients,
            ret: tx.ret,
            env_id: tx.env_id,
            smtputf8: tx.smtputf8,
            body_8bit: tx.body_8bit,
            source_name: format!("SMTP:{}", self.policy.connector.name),
            source_ip: self.peer.ip().to_string(),
            received_at_ms: now_ms(),
            internet_message_id: message_id,
            subject,
        });
        match self.transport.submit(mid, envelope, body).await {
            Ok(()) => self.reply(Reply::new(250, "2.0.0", format!("Ok: queued as {mid}"))),
            Err(sluice_queue_db::CommitError::DiskFull) => {
                tracing::warn!("message not stored: the queue database's disk is full");
                self.reply(Reply::new(452, "4.3.1", "Insufficient system storage, try again later"));
            }
            Err(e) => {
                tracing::error!(error = %e, "message not stored");
                self.reply(Reply::new(451, "4.3.0", "Temporary storage failure, try again later"));
            }
        }
    }

    pub(crate) fn received_header(&self, mid: u64) -> String {
        let helo = self.helo.as_deref().unwrap_or("unknown");
        let ip = match self.peer.ip() {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => format!("IPv6:{v6}"),
        };
        // RFC 3848: ESMTPS with TLS, ESMTPA after AUTH, ESMTPSA with both.
        let with = match (self.esmtp, self.tls.is_some(), self.user.is_some()) {
            (false, _, _) => "SMTP",
            (true, false, false) => "ESMTP",
            (true, true, false) => "ESMTPS",
            (true, false, true) => "ESMTPA",
            (true, true, true) => "ESMTPSA",
        };
        let one_rcpt = self.tx.as_ref().filter(|t| t.recipients.len() == 1).map(|t| t.recipients[0].address.clone());
        let mut h = format!(
            "Received: from {} ([{ip}])\r\n\tby {} (sluice) with {with} id {mid}\r\n\t(connector {})",
            sanitize(helo),
            self.policy.hostname,
            sanitize(&self.policy.connector.name)
        );
        if let Some(tls) = &self.tls {
            h.push_str(&format!("\r\n\t(using {})", sanitize(tls)));
        }
        if let Some(r) = one_rcpt {
            h.push_str(&format!("\r\n\tfor <{}>", sanitize(&r)));
        }
        h.push_str(&format!("; {}\r\n", rfc5322(now_ms())));
        h
    }
}

/// Keeps header text on one line and printable (escaped as in logs), and out of the comment's parentheses.
fn sanitize(s: &str) -> String {
    sluice_smtp::printable(s).chars().map(|c| if c == '(' || c == ')' { '_' } else { c }).take(255).collect()
}

/// `Message-ID:` and `Subject:` from the header section, for listings and tracking.
fn header_fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let end = body.windows(4).position(|w| w == b"\r\n\r\n").map_or(body.len().min(64 * 1024), |p| p + 2);
    let head = String::from_utf8_lossy(&body[..end]);
    let mut message_id = None;
    let mut subject = None;
    let mut current: Option<(&str, String)> = None;
    let mut finish = |cur: Option<(&str, String)>| {
        if let Some((name, value)) = cur {
            let value = value.trim().to_owned();
            if name.eq_ignore_ascii_case("message-id") && message_id.is_none() {
                message_id = Some(value);
            } else if name.eq_ignore_ascii_case("subject") && subject.is_none() {
                subject = Some(value.chars().take(255).collect());
            }
        }
    };
    for line in head.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = current.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
            continue;
        }
        finish(current.take());
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("message-id") || name.eq_ignore_ascii_case("subject") {
                current = Some((
                    if name.eq_ignore_ascii_case("subject") { "subject" } else { "message-id" },
                    value.to_owned(),
                ));
            }
        }
    }
    finish(current);
    (message_id, subject)
}

/// Removes `X-Sluice-*` header fields (with their continuation lines) from the header section that starts
/// at `from`: those headers steer sluice (fault injection, for one) and must not be forged from outside.
fn strip_sluice_headers(body: &mut Vec<u8>, from: usize) {
    let head_end = body[from..].windows(4).position(|w| w == b"\r\n\r\n").map_or(body.len(), |p| from + p + 2);
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..from]);
    let mut dropping = false;
    for line in body[from..head_end].split_inclusive(|b| *b == b'\n') {
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            dropping = line.len() >= 9 && line[..9].eq_ignore_ascii_case(b"x-sluice-");
        }
        if !dropping {
            out.extend_from_slice(line);
        }
    }
    out.extend_from_slice(&body[head_end..]);
    *body = out;
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn sluice_headers_are_removed_with_their_continuations() {
        let mut body = b"Received: x\r\nX-Sluice-Fault: panic@delivery\r\n more\r\nSubject: s\r\nx-sluice-a: b\r\n\r\nX-Sluice-Body: kept\r\n".to_vec();
        strip_sluice_headers(&mut body, 13);
        assert_eq!(body, b"Received: x\r\nSubject: s\r\n\r\nX-Sluice-Body: kept\r\n".to_vec());
    }
}
