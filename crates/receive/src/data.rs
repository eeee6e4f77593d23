//! DATA: the message follows the `354`, dot-stuffed and ended by `<CRLF>.<CRLF>`; nothing may be
//! pipelined behind the command.

use sluice_smtp::{DataDecoder, DataStatus};

use crate::message::Content;
use crate::replies;
use crate::session::{Flow, Session};

impl Session {
    pub(crate) async fn data(&mut self) -> std::io::Result<Flow> {
        let Some(tx) = self.tx.as_ref() else {
            self.reply(replies::DATA_NEEDS_MAIL);
            return Ok(Flow::Continue);
        };
        if tx.chunks.is_some() {
            self.reply(replies::DATA_AFTER_BDAT);
            return Ok(Flow::Continue);
        }
        if tx.recipients.is_empty() {
            self.reply(replies::NO_RECIPIENTS);
            return Ok(Flow::Continue);
        }
        if !self.conn.input.is_empty() {
            // RFC 2920 3.1: DATA ends a pipelined group and the message follows the 354 only. Bytes sent with
            // it cannot be told apart from commands: refused, logged, and the connection closed (Postfix's
            // "improper command pipelining after DATA").
            tracing::info!(icid = self.icid(), peer = %self.peer, bytes = self.conn.input.len(), "improper pipelining after DATA; closing");
            self.tx = None;
            self.reply(replies::PIPELINED_AFTER_DATA);
            return Ok(Flow::Close);
        }
        let mid = self.transport.allocate_mid();
        let received = self.received_header(mid);
        self.reply(replies::START_DATA);
        self.conn.flush().await?;

        let max = self.policy.connector.max_message_size;
        let mut decoder = DataDecoder::new(self.bare_newlines());
        let mut body = Vec::with_capacity(received.len() + 8192);
        body.extend_from_slice(received.as_bytes());
        let mut spool = self.spool(mid, received.len());
        let mut too_big = false;
        loop {
            let status = decoder.feed(&self.conn.input, &mut body);
            if too_big || spool.total(&body) - received.len() as u64 > max {
                // Keep reading to the end of the data, but keep nothing.
                too_big = true;
                body.truncate(received.len());
                spool.discard();
            }
            spool.absorb(&mut body);
            match status {
                DataStatus::Done { consumed } => {
                    self.conn.input.drain(..consumed);
                    break;
                }
                DataStatus::NeedMore => self.conn.input.clear(),
            }
            self.conn.flush().await?;
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
}
