//! MAIL FROM: opens a transaction, after the checks that may refuse it (HELO first, authentication when
//! required, the size limit, back pressure).

use sluice_smtp::ReversePath;
use sluice_transport::pressure::{Level as BackPressure, Resource};

use crate::replies;
use crate::session::{Session, Transaction};

impl Session {
    pub(crate) fn mail(&mut self, from: ReversePath, params: sluice_smtp::MailParams) {
        if self.helo.is_none() {
            return self.reply(replies::HELO_FIRST);
        }
        if self.tx.is_some() {
            return self.reply(replies::MAIL_IN_TRANSACTION);
        }
        if self.policy.connector.auth == sluice_config::AuthMode::Required && self.user.is_none() {
            return self.reply(replies::AUTH_REQUIRED);
        }
        if params.body == Some(sluice_smtp::BodyType::BinaryMime) {
            // BINARYMIME is not advertised (RFC 3030 needs it offered first).
            return self.reply(replies::NO_BINARYMIME);
        }
        if params.size.is_some_and(|s| s > self.policy.connector.max_message_size) {
            return self.reply(replies::TOO_BIG);
        }
        // Back pressure: High refuses all new mail, Medium the mail of clients outside relay_networks that
        // have not authenticated. The connection stays; the client tries again later. The reply names the
        // resource, so that the client's log says why.
        let level = self.transport.back_pressure();
        let trusted = self.relay_client || self.user.is_some();
        if level == BackPressure::High || (level == BackPressure::Medium && !trusted) {
            return self.reply(match self.transport.back_pressure_resource() {
                Resource::Disk => replies::BACK_PRESSURE_DISK,
                Resource::Memory => replies::BACK_PRESSURE_MEMORY,
                Resource::Submission => replies::BACK_PRESSURE_SUBMISSION,
            });
        }
        self.tx = Some(Transaction {
            from,
            recipients: Vec::new(),
            body_8bit: params.body_8bit(),
            smtputf8: params.smtputf8,
            ret: params.ret.map(|r| r.to_string()),
            chunks: None,
            env_id: params.envid.as_ref().map(|x| x.decoded().to_owned()),
        });
        self.reply(replies::SENDER_OK);
    }
}
