//! Delivery status notifications (RFC 3464, RFC 3461): what the sender of a message is told when a recipient
//! fails, is delayed, or (asked with `NOTIFY=SUCCESS`) is delivered or relayed.
//!
//! The rules, in [`notify`]: nothing for a message from the null sender (a notice about a notice would loop)
//! nor for a Safety Net resubmission (its sender was told the first time); each recipient's `NOTIFY=` decides
//! whether it is listed (absent means `FAILURE,DELAY`, RFC 3461 4.1); one notice per call covers every
//! recipient listed. The notice is submitted like any message — from `<>`, to the original sender, source
//! `DSN` — and is durable before [`notify`] returns, so that a caller that then records the original copy's
//! end can lose no notice in a crash (at worst one is sent twice). `notice.rs` writes its bytes.
//! docs/dsn.md describes the form.

mod notice;

use std::sync::Arc;

use sluice_queue_db::{BodyRef, Envelope, EnvelopeParts, Mid, ReadError, Recipient};
use sluice_smtp::{HeaderScanner, Notify, Reply};

use crate::Inner;
use crate::tracking::EventId;
use notice::{Report, Reported, Returned};

/// The envelope's `source_name` of a notice.
pub(crate) const SOURCE_DSN: &str = "DSN";

/// Without `RET=`, the whole message goes back only up to this size; a larger one returns its header section.
/// A notice with a large message attached is itself likely refused by the sender's server, and the header
/// section is what identifies the message.
const RETURN_WHOLE_UP_TO: u64 = 1 << 20;
/// With `RET=FULL`, the whole message goes back up to this size (the notice is built in memory); a larger
/// one returns its header section, and the notice says why.
const RETURN_FULL_UP_TO: u64 = 10 << 20;
/// Pieces in which the header section is read.
const HEADER_PIECE: usize = 64 << 10;

/// What became of a recipient, as a notice's `Action:` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Failed for good (a 5xx, no route, or expired).
    Failed,
    /// Not delivered yet (`delay_notification_timeout` passed); still tried.
    Delayed,
    /// Delivered to its mailbox.
    Delivered,
    /// Handed to a next hop that does not take DSN parameters.
    Relayed,
}

/// One recipient a notice covers.
#[derive(Debug, Clone)]
pub(crate) struct RecipientStatus {
    /// Its index among the envelope's recipients.
    pub(crate) index: u32,
    pub(crate) action: Action,
    /// The reply behind the status: the next hop's, or sluice's own (e.g. `4.4.7` for an expired message).
    pub(crate) reply: Reply,
    /// The next hop that gave the reply, if one did.
    pub(crate) remote_mta: Option<String>,
}

/// Does a recipient's `NOTIFY=` (as stored; `None` when not given) ask for a notice of `action`?
/// RFC 3461 4.1: absent means `FAILURE,DELAY`; a value that does not parse counts as absent.
fn wanted(notify: Option<&str>, action: Action) -> bool {
    let notify =
        notify.and_then(|n| n.parse::<Notify>().ok()).unwrap_or(Notify { success: false, failure: true, delay: true });
    match action {
        Action::Failed => notify.failure,
        Action::Delayed => notify.delay,
        Action::Delivered | Action::Relayed => notify.success,
    }
}

/// Why no notice is sent for a message at all, if none is.
fn refused(envelope: &Envelope) -> Option<&'static str> {
    if envelope.from_address().is_empty() {
        Some("the message is from the null sender")
    } else if envelope.source_name() == crate::safety_net::SOURCE_RESUBMIT {
        Some("the message was resubmitted from the Safety Net")
    } else {
        None
    }
}

/// The statuses whose recipient's `NOTIFY=` asks for them (and that name a recipient of the envelope).
fn covered(envelope: &Envelope, statuses: Vec<RecipientStatus>) -> Vec<RecipientStatus> {
    statuses
        .into_iter()
        .filter(|s| envelope.recipient(s.index as usize).is_some_and(|r| wanted(r.notify, s.action)))
        .collect()
}

/// Tells the sender of `mid` what became of `statuses`' recipients: one notice per call, covering those of
/// them whose `NOTIFY=` asks for it. Nothing is sent for a message from the null sender, nor for a Safety
/// Net resubmission. The notice is durable when this returns (or its failure is logged and alerted).
pub(crate) async fn notify(
    inner: &Arc<Inner>,
    mid: Mid,
    envelope: &Arc<Envelope>,
    body: BodyRef,
    statuses: Vec<RecipientStatus>,
) {
    if let Some(why) = refused(envelope) {
        tracing::info!(mid, recipients = statuses.len(), "no delivery status notice: {why}");
        return;
    }
    let statuses = covered(envelope, statuses);
    if statuses.is_empty() {
        return;
    }
    // The timer's clock, not a fresh look at the wall clock: the notice's own expiry and delay deadlines
    // are counted on it, from its arrival.
    let now = inner.clock.now_ms();
    let expiration = inner.routing().limits.message_expiration_timeout;
    let reports_failure = statuses.iter().any(|s| s.action == Action::Failed);
    let returned = returned(inner, mid, &body, content(envelope.ret(), body.len, reports_failure));
    let notice_mid = inner.db.allocate_mid();
    let message_id = format!("<{notice_mid}.{now}.dsn@{}>", inner.hostname);
    let reported = statuses
        .iter()
        .map(|s| {
            let r = envelope.recipient(s.index as usize);
            Reported {
                address: r.map_or("", |r| r.address),
                orcpt: r.and_then(|r| r.orcpt),
                action: s.action,
                reply: &s.reply,
                remote_mta: s.remote_mta.as_deref(),
            }
        })
        .collect();
    let built = notice::build(&Report {
        hostname: &inner.hostname,
        sender: envelope.from_address(),
        env_id: envelope.env_id(),
        arrival_ms: envelope.received_at_ms,
        now_ms: now,
        retry_until_ms: envelope.received_at_ms.saturating_add(expiration.as_millis() as i64),
        message_id: &message_id,
        original_message_id: envelope.internet_message_id(),
        original_utf8: envelope.smtputf8,
        boundary_seed: notice_mid,
        recipients: reported,
        returned,
    });
    let parts = EnvelopeParts {
        from: String::new(),
        recipients: vec![Recipient { address: envelope.from_address().to_owned(), notify: None, orcpt: None }],
        ret: None,
        env_id: None,
        smtputf8: built.utf8,
        body_8bit: built.eight_bit,
        source_name: SOURCE_DSN.to_owned(),
        source_ip: String::new(),
        received_at_ms: now,
        internet_message_id: Some(message_id),
        subject: Some(built.subject.to_owned()),
        priority: Default::default(),
        // Made by this server.
        originating: true,
    };
    let mut actions: Vec<&str> = Vec::new();
    for s in &statuses {
        if !actions.contains(&s.action.as_str()) {
            actions.push(s.action.as_str());
        }
    }
    let actions = actions.join(",");
    let covered: Vec<String> =
        statuses.iter().filter_map(|s| envelope.recipient(s.index as usize)).map(|r| r.address.to_owned()).collect();
    match inner.submit(notice_mid, parts.into(), built.bytes.into()).await {
        Ok(()) => {
            inner.counters.add(crate::Counter::GeneratedBounceRecipients, 1);
            tracing::info!(mid, notice = notice_mid, action = %actions, recipients = covered.len(), "delivery status notice queued");
            let mut ev = inner.event(EventId::Dsn, mid, envelope);
            ev.recipients = covered;
            ev.reply = Some(format!("{actions} notice queued as {notice_mid}"));
            inner.tracking.log(ev);
        }
        Err(e) => {
            // The caller goes on to record the copy's end: the notice is lost, and the operator must know.
            tracing::error!(mid, error = %e, action = %actions, "cannot store a delivery status notice; the sender is not told");
            inner.alerts.raise_keyed(
                "delivery-status-notice-not-stored",
                crate::AlertClass::Queue,
                crate::Severity::Warning,
                format!(
                    "a delivery status notice ({actions}) about message {mid} could not be stored; {} is not told: {e}",
                    sluice_smtp::printable(envelope.from_address())
                ),
            );
        }
    }
}

/// How much of the original a notice returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Content {
    /// The whole message.
    Whole,
    /// The header section, as asked (`RET=HDRS`) or because the notice reports no failure.
    Headers,
    /// The header section, because the message is larger than what may be returned whole.
    TooLarge,
}

/// What of the original a notice returns (RFC 3461 4.3): a notice that reports a failure returns what `RET=`
/// asks — `HDRS` the header section, `FULL` the whole message up to [`RETURN_FULL_UP_TO`] — and without
/// `RET=` the whole message up to [`RETURN_WHOLE_UP_TO`]; a larger message returns its header section. A
/// notice of delay or success only returns the header section: the message is not lost, and the sender
/// has it.
fn content(ret: Option<&str>, size: u64, reports_failure: bool) -> Content {
    let cap = match ret.map(str::to_ascii_uppercase).as_deref() {
        _ if !reports_failure => return Content::Headers,
        Some("HDRS") => return Content::Headers,
        Some("FULL") => RETURN_FULL_UP_TO,
        _ => RETURN_WHOLE_UP_TO,
    };
    if size > cap { Content::TooLarge } else { Content::Whole }
}

/// Reads what [`content`] says the notice returns. A body that cannot be read returns nothing (logged).
fn returned(inner: &Inner, mid: Mid, body: &BodyRef, content: Content) -> Returned {
    let (headers_only, too_large) = match content {
        Content::Whole => (false, false),
        Content::Headers => (true, false),
        Content::TooLarge => (true, true),
    };
    let read = inner.db.body_source(mid, body).and_then(|source| {
        if !headers_only {
            return source.read_all().map(Returned::Full);
        }
        read_header(&source).map(|header| Returned::Headers { header, too_large })
    });
    read.unwrap_or_else(|e| {
        tracing::error!(mid, error = %e, "cannot read a message body for its delivery status notice; it is sent without it");
        Returned::Unreadable
    })
}

/// The header section of a body: its fields up to (not including) the empty line, or the whole body if it
/// has no empty line. Only the pieces up to the end of the header section are read.
fn read_header(source: &sluice_queue_db::BodySource) -> Result<Vec<u8>, ReadError> {
    let mut scanner = HeaderScanner::new();
    let mut out = Vec::new();
    let mut chunks = source.chunks();
    while !scanner.is_complete() {
        let Some(piece) = chunks.next_chunk(HEADER_PIECE)? else { break };
        scanner.feed(&piece);
        out.extend_from_slice(&piece);
    }
    if scanner.is_complete() {
        out.truncate(scanner.header_bytes() as usize);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(from: &str, notify: &[Option<&str>], source: &str) -> Envelope {
        EnvelopeParts {
            from: from.to_owned(),
            recipients: notify
                .iter()
                .enumerate()
                .map(|(i, n)| Recipient {
                    address: format!("r{i}@x.example"),
                    notify: n.map(str::to_owned),
                    orcpt: None,
                })
                .collect(),
            source_name: source.to_owned(),
            ..EnvelopeParts::default()
        }
        .into()
    }

    fn status(index: u32, action: Action) -> RecipientStatus {
        RecipientStatus { index, action, reply: Reply::new(550, "5.1.1", "no"), remote_mta: None }
    }

    fn indices(s: &[RecipientStatus]) -> Vec<u32> {
        s.iter().map(|s| s.index).collect()
    }

    #[test]
    fn notify_decides_per_recipient_and_absent_means_failure_and_delay() {
        use Action::*;
        for (notify, action, want) in [
            (None, Failed, true),
            (None, Delayed, true),
            (None, Delivered, false),
            (None, Relayed, false),
            (Some("NEVER"), Failed, false),
            (Some("NEVER"), Delayed, false),
            (Some("SUCCESS"), Delivered, true),
            (Some("SUCCESS"), Relayed, true),
            (Some("SUCCESS"), Failed, false),
            (Some("FAILURE"), Failed, true),
            (Some("FAILURE"), Delayed, false),
            (Some("DELAY"), Delayed, true),
            (Some("SUCCESS,FAILURE,DELAY"), Delivered, true),
            (Some("failure,delay"), Failed, true),
            (Some("BOGUS"), Failed, true),
        ] {
            assert_eq!(wanted(notify, action), want, "{notify:?} {action:?}");
        }
    }

    #[test]
    fn only_the_recipients_that_asked_are_covered() {
        let env = envelope("a@x.example", &[None, Some("NEVER"), Some("SUCCESS"), Some("FAILURE")], "SMTP:Default");
        let got = covered(
            &env,
            vec![
                status(0, Action::Failed),
                status(1, Action::Failed),
                status(2, Action::Delivered),
                status(3, Action::Failed),
                status(0, Action::Relayed),
                status(9, Action::Failed),
            ],
        );
        assert_eq!(indices(&got), [0, 2, 3]);
        let none = covered(&env, vec![status(1, Action::Failed), status(3, Action::Delayed)]);
        assert!(none.is_empty());
    }

    #[test]
    fn the_null_sender_and_safety_net_resubmissions_get_no_notice() {
        assert!(refused(&envelope("", &[None], "SMTP:Default")).is_some());
        assert!(refused(&envelope("", &[None], SOURCE_DSN)).is_some());
        assert!(refused(&envelope("a@x.example", &[None], "Resubmit")).is_some());
        assert_eq!(refused(&envelope("a@x.example", &[None], "SMTP:Default")), None);
        assert_eq!(refused(&envelope("a@x.example", &[None], "Pickup")), None);
    }

    #[test]
    fn ret_and_size_decide_what_a_failure_returns_and_other_notices_return_headers() {
        use Content::*;
        const MB: u64 = 1 << 20;
        for (ret, size, failure, want) in [
            (None, 1000, true, Whole),
            (None, MB, true, Whole),
            (None, MB + 1, true, TooLarge),
            (Some("FULL"), 5 * MB, true, Whole),
            (Some("full"), 10 * MB, true, Whole),
            (Some("FULL"), 10 * MB + 1, true, TooLarge),
            (Some("HDRS"), 10, true, Headers),
            (Some("FULL"), 10, false, Headers),
            (None, 10, false, Headers),
        ] {
            assert_eq!(content(ret, size, failure), want, "{ret:?} {size} {failure}");
        }
    }

    #[test]
    fn the_header_section_is_read_up_to_the_empty_line() {
        let source = |b: &[u8]| sluice_queue_db::BodySource::memory(b.to_vec());
        let header = read_header(&source(b"Subject: a\r\nX: b\r\n\r\nbody\r\n")).unwrap();
        assert_eq!(header, b"Subject: a\r\nX: b\r\n");
        assert_eq!(read_header(&source(b"Subject: only\r\n")).unwrap(), b"Subject: only\r\n");
        let big = [b"Subject: big\r\n\r\n".as_slice(), &vec![b'x'; 3 * HEADER_PIECE]].concat();
        assert_eq!(read_header(&source(&big)).unwrap(), b"Subject: big\r\n");
    }
}
