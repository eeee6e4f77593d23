//! BDAT (RFC 3030 CHUNKING): the message comes in chunks framed by their sizes, each read whole even when
//! the command is refused, and is stored at the chunk marked `LAST`.

use sluice_smtp::BdatDecoder;

use crate::message::Content;
use crate::replies;
use crate::session::{Flow, Session};
use crate::spool::Spool;

/// BDAT chunks of the current transaction.
pub(crate) struct Chunks {
    decoder: BdatDecoder,
    mid: u64,
    received_len: usize,
    body: Vec<u8>,
    spool: Spool,
    too_big: bool,
}

impl Session {
    /// `BDAT <size> [LAST]`: reads exactly `size` octets of content (also when the command is refused, so
    /// that they are never taken for commands), and stores the message at `LAST`.
    pub(crate) async fn bdat(&mut self, size: u64, last: bool) -> std::io::Result<Flow> {
        let refusal = match self.tx.as_ref() {
            None => Some(replies::BDAT_NEEDS_MAIL),
            Some(tx) if tx.recipients.is_empty() => Some(replies::NO_RECIPIENTS),
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
            let take = remaining.min(self.conn.input.len() as u64) as usize;
            if take > 0 {
                if refusal.is_none()
                    && let Some(c) = self.tx.as_mut().and_then(|t| t.chunks.as_mut())
                {
                    c.decoder.feed(&self.conn.input[..take], &mut c.body);
                    if c.too_big || c.spool.total(&c.body) - c.received_len as u64 > max {
                        c.too_big = true;
                        c.body.truncate(c.received_len);
                        c.spool.discard();
                    }
                    c.spool.absorb(&mut c.body);
                }
                self.conn.input.drain(..take);
                remaining -= take as u64;
            }
            if remaining == 0 {
                break;
            }
            self.conn.flush().await?;
            if !self.fill().await? {
                return Ok(Flow::Close);
            }
        }
        if let Some(r) = refusal {
            self.reply(r);
            return Ok(Flow::Continue);
        }
        if !last {
            self.reply_with(&replies::CHUNK_RECEIVED.text(format!("{size} octets received")));
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
}
