//! The end of a message, whether it came by DATA (`data.rs`) or BDAT (`bdat.rs`): the checks every message
//! passes before it is stored (size, bare CR/LF/NUL, header size, hop count, and the removal of
//! `X-Sluice-*` headers from clients outside `relay_networks`), the `Received:` line it starts with, and
//! its durable commit to the queue.

use std::net::IpAddr;

use sluice_queue_db::{Envelope, EnvelopeParts, Priority, now_ms, time::rfc5322};
use sluice_smtp::{BareNewlines, DataViolation, ReversePath};

use crate::replies;
use crate::session::Session;
use crate::spool::Spool;

/// What the end-of-message checks need from either decoder.
pub(crate) struct Content {
    pub(crate) violation: Option<DataViolation>,
    pub(crate) header_bytes: u64,
    pub(crate) received_headers: usize,
}

impl Session {
    pub(crate) fn bare_newlines(&self) -> BareNewlines {
        match self.policy.connector.bare_newlines {
            sluice_config::BareNewlines::Reject => BareNewlines::Reject,
            sluice_config::BareNewlines::Normalize => BareNewlines::Normalize,
        }
    }

    /// The end of a message: the checks, then the durable commit, then `250`. The transaction ends either way.
    pub(crate) async fn finish_message(
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
            return self.reply(replies::TOO_BIG);
        }
        if let Some(v) = c.violation {
            // With bare_newlines = "normalize" only NUL is a violation; with "reject" bare CR and LF are too.
            tracing::info!(icid = self.icid(), peer = %self.peer, violation = ?v, "message refused: bare CR, LF or NUL in data");
            return self.reply_with(&v.reply());
        }
        if c.header_bytes > connector.max_header_size {
            return self.reply(replies::HEADER_TOO_BIG);
        }
        if c.received_headers >= connector.max_hop_count as usize {
            tracing::info!(icid = self.icid(), peer = %self.peer, hops = c.received_headers, "message refused: mail loop");
            return self.reply(replies::TOO_MANY_HOPS);
        }
        spool.settle(&mut body);
        if !self.relay_client {
            strip_sluice_headers(&mut body, received_len);
        }
        let fields = header_fields(&body[received_len..]);
        let body = match spool.finish(body) {
            Ok(b) => b,
            Err(e) if sluice_queue_db::is_disk_full(&e) => {
                // A full file system, like the queue database's own ENOSPC: refused as such, and new mail
                // with it until space returns.
                tracing::warn!(error = %e, dir = %self.policy.spool_dir.display(), "message not spooled: the disk is full");
                self.transport.disk_is_full();
                return self.reply(replies::DISK_FULL);
            }
            Err(e) => {
                tracing::error!(error = %e, dir = %self.policy.spool_dir.display(), "cannot spool message data");
                return self.reply(replies::STORAGE_FAILED);
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
            internet_message_id: fields.message_id,
            subject: fields.subject,
            priority: fields.priority,
            originating: self.relay_client || self.user.is_some(),
        });
        match self.transport.submit(mid, envelope, body).await {
            Ok(()) => self.reply_with(&replies::QUEUED.text(format!("Ok: queued as {mid}"))),
            Err(sluice_queue_db::CommitError::DiskFull) => {
                tracing::warn!(icid = self.icid(), "message not stored: the queue database's disk is full");
                self.reply(replies::DISK_FULL);
            }
            Err(sluice_queue_db::CommitError::NotShadowed(why)) => {
                tracing::warn!(icid = self.icid(), error = %why, "message refused: its shadow copy could not be written");
                self.reply(replies::NOT_SHADOWED);
            }
            Err(e) => {
                tracing::error!(icid = self.icid(), error = %e, "message not stored");
                self.reply(replies::STORAGE_FAILED);
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

/// What the queue keeps of the header section, for listings and tracking.
#[derive(Debug, Default, PartialEq)]
struct HeaderFields {
    message_id: Option<String>,
    subject: Option<String>,
    /// The first of `Importance:`, `Priority:` and `X-Priority:` that names a priority.
    priority: Priority,
}

/// The header fields named by [`HeaderFields`] from the header section.
fn header_fields(body: &[u8]) -> HeaderFields {
    let end = body.windows(4).position(|w| w == b"\r\n\r\n").map_or(body.len().min(64 * 1024), |p| p + 2);
    let head = String::from_utf8_lossy(&body[..end]);
    let mut fields = HeaderFields::default();
    let mut priority = None;
    let mut current: Option<(&str, String)> = None;
    let mut finish = |cur: Option<(&str, String)>| {
        if let Some((name, value)) = cur {
            let value = value.trim().to_owned();
            if name.eq_ignore_ascii_case("message-id") && fields.message_id.is_none() {
                fields.message_id = Some(value);
            } else if name.eq_ignore_ascii_case("subject") && fields.subject.is_none() {
                fields.subject = Some(value.chars().take(255).collect());
            } else if priority.is_none() {
                priority = Priority::from_header(name, &value);
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
            let kept = ["message-id", "subject", "importance", "priority", "x-priority"];
            if let Some(kept) = kept.iter().find(|k| name.eq_ignore_ascii_case(k)) {
                current = Some((kept, value.to_owned()));
            }
        }
    }
    finish(current);
    fields.priority = priority.unwrap_or_default();
    fields
}

/// Removes `X-Sluice-*` header fields (with their continuation lines) from the header section that starts
/// at `from`: those headers steer sluice (fault injection, for one) and must not be forged from outside.
pub(crate) fn strip_sluice_headers(body: &mut Vec<u8>, from: usize) {
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
    fn sluice_headers_are_removed_with_their_continuations() {
        let mut body = b"Received: x\r\nX-Sluice-Fault: panic@delivery\r\n more\r\nSubject: s\r\nx-sluice-a: b\r\n\r\nX-Sluice-Body: kept\r\n".to_vec();
        strip_sluice_headers(&mut body, 13);
        assert_eq!(body, b"Received: x\r\nSubject: s\r\n\r\nX-Sluice-Body: kept\r\n".to_vec());
    }

    #[test]
    fn the_header_fields_kept_are_read_with_folding_and_the_first_priority_wins() {
        let head = b"Message-ID: <a@b>\r\nSubject: one\r\n two\r\nX-Priority: 1 (Highest)\r\nImportance: low\r\n\r\nImportance: high\r\n";
        let f = header_fields(head);
        assert_eq!(f.message_id.as_deref(), Some("<a@b>"));
        assert_eq!(f.subject.as_deref(), Some("one two"));
        assert_eq!(f.priority, Priority::High);
        assert_eq!(header_fields(b"importance: LOW\r\n\r\n").priority, Priority::Low);
        assert_eq!(header_fields(b"Priority: non-urgent\r\n\r\n").priority, Priority::Low);
        assert_eq!(header_fields(b"X-Priority: 9\r\nImportance: high\r\n\r\n").priority, Priority::High);
        assert_eq!(header_fields(b"Subject: x\r\n\r\nX-Priority: 1\r\n").priority, Priority::Normal);
    }
}
