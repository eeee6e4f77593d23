//! STARTTLS (RFC 3207): when it is offered, and the upgrade of a plain session to TLS.

use crate::replies;
use crate::session::{Flow, Session};

impl Session {
    pub(crate) fn starttls_offered(&self) -> bool {
        self.tls.is_none()
            && self.shared.tls.is_some()
            && self.policy.connector.tls_mode == sluice_config::TlsMode::Starttls
    }

    /// STARTTLS (RFC 3207). Whatever the client sent after the command is discarded unread, so that no
    /// plaintext command can be injected into the encrypted session (CVE-2011-0411); the session starts
    /// over, without HELO, transaction or authentication.
    pub(crate) async fn starttls(&mut self) -> std::io::Result<Flow> {
        if self.tls.is_some() {
            self.reply(replies::TLS_ACTIVE);
            return Ok(Flow::Continue);
        }
        if !self.starttls_offered() {
            self.reply(replies::NO_STARTTLS);
            return Ok(self.flow_after_error());
        }
        self.reply(replies::READY_FOR_TLS);
        self.conn.flush().await?;
        if !self.conn.input.is_empty() {
            tracing::info!(icid = self.icid(), peer = %self.peer, bytes = self.conn.input.len(), "input pipelined after STARTTLS discarded");
        }
        self.conn.input.clear();
        if let Err(e) = self.encrypt().await {
            tracing::info!(icid = self.icid(), peer = %self.peer, error = %e, "TLS handshake failed");
            return Ok(Flow::Close);
        }
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
        self.user = None;
        Ok(Flow::Continue)
    }
}
