//! EHLO and HELO: the client names itself, any transaction is dropped, and EHLO lists the extensions this
//! connector offers.

use crate::replies;
use crate::session::Session;

impl Session {
    pub(crate) fn ehlo(&mut self, name: String) {
        self.tx = None;
        self.helo = Some(name);
        self.esmtp = true;
        let mut text = format!(
            "{}\nPIPELINING\nSIZE {}\n8BITMIME\nSMTPUTF8\nCHUNKING\nDSN\nENHANCEDSTATUSCODES",
            self.policy.hostname, self.policy.connector.max_message_size
        );
        if self.starttls_offered() {
            text.push_str("\nSTARTTLS");
        }
        if self.auth_offered() {
            text.push_str("\nAUTH PLAIN LOGIN");
        }
        self.reply_with(&replies::HELLO.text(text));
    }

    pub(crate) fn helo(&mut self, name: String) {
        self.tx = None;
        self.helo = Some(name);
        self.esmtp = false;
        self.reply_with(&replies::HELLO.text(self.policy.hostname.clone()));
    }
}
