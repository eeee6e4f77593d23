//! RCPT TO: one recipient, checked against the accepted domains (mailbox lists, aliases, postmaster) and the
//! relay rules, and expanded once when it is an alias.

use sluice_queue_db::Recipient;
use sluice_smtp::Address;

use crate::replies;
use crate::session::Session;

impl Session {
    pub(crate) fn rcpt(&mut self, to: Address, params: sluice_smtp::RcptParams) {
        // `<postmaster>` without a domain (RFC 5321 4.5.1) is accepted from anyone: the postmaster of the
        // primary (first) accepted domain, or its alias.
        let to = match self.policy.accepted_domains.first() {
            Some(d) if to.domain().is_empty() => {
                sluice_smtp::parse_forward_path(format!("<postmaster@{}>", d.domain).as_bytes(), false).unwrap_or(to)
            }
            _ => to,
        };
        let max = self.policy.connector.max_recipients as usize;
        let accepted = !to.is_address_literal() && self.transport.is_accepted_domain(to.domain());
        let relay_client = self.relay_client || self.user.is_some();
        let mut mailbox = None;
        let Some(tx) = self.tx.as_mut() else {
            return self.reply(replies::NEED_MAIL);
        };
        if tx.recipients.len() >= max {
            return self.refuse_recipient(replies::TOO_MANY_RECIPIENTS);
        }
        if accepted {
            if to.is_quoted() || !sluice_smtp::safe_local_part(to.local()) {
                return self.refuse_recipient(replies::BAD_RECIPIENT_SYNTAX);
            }
            let known = match self.policy.known_mailbox(to.domain(), to.local()) {
                Some(known) => known,
                // No list: trusted clients reach any local part, others only one that exists.
                None if relay_client => Some(to.local().to_owned()),
                None => self.policy.reachable_mailbox(to.domain(), to.local()),
            };
            match known {
                None => return self.refuse_recipient(replies::USER_UNKNOWN),
                // Delivered to the mailbox it matched, whatever the case the client used.
                Some(local) if local != to.local() => mailbox = Some(format!("{local}@{}", to.domain())),
                Some(_) => {}
            }
        } else if !relay_client {
            return self.refuse_recipient(replies::RELAY_DENIED);
        }
        let targets: Vec<String> = match accepted.then(|| self.policy.alias_targets(to.domain(), to.local())).flatten()
        {
            Some(targets) => targets.to_vec(),
            None => vec![mailbox.unwrap_or_else(|| to.to_string())],
        };
        let Some(tx) = self.tx.as_mut() else { return };
        // An alias is expanded here, once: its targets become the envelope's recipients, each remembering
        // the address the client gave (ORCPT, for DSNs).
        let orcpt = params
            .orcpt_string()
            .or_else(|| (targets.len() != 1 || targets[0] != to.to_string()).then(|| format!("rfc822;{to}")));
        let new: Vec<String> =
            targets.into_iter().filter(|t| !tx.recipients.iter().any(|r| r.address.eq_ignore_ascii_case(t))).collect();
        if tx.recipients.len() + new.len() > max {
            return self.refuse_recipient(replies::TOO_MANY_RECIPIENTS);
        }
        for address in new {
            tx.recipients.push(Recipient { address, notify: params.notify_string(), orcpt: orcpt.clone() });
        }
        self.reply(replies::RECIPIENT_OK);
    }

    /// Refuses a recipient (unknown, not relayed, over the limit, unsafe): counted as a rejected recipient.
    /// A RCPT refused for the session's state (no MAIL yet) is a protocol error, not counted here.
    fn refuse_recipient(&mut self, r: replies::Canned) {
        self.counted.counters().add(sluice_transport::Counter::RejectedRecipients, 1);
        self.reply(r);
    }
}
