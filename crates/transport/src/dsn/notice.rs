//! The notice itself: a `multipart/report; report-type=delivery-status` message (RFC 6522) with a
//! human-readable explanation, the machine-readable `message/delivery-status` part (RFC 3464) and the
//! returned message or its header section. Pure: the caller gathers the facts, this writes the bytes.
//!
//! Written by hand rather than with a MIME library because every part is plain text whose encoding must stay
//! as it is: a returned message may only be `7bit` or `8bit` (RFC 2046 5.2.1), never re-encoded, and the
//! report's fields have a fixed syntax. Lines end in CRLF; an 8-bit part is declared `8bit`.
//!
//! Addresses that need SMTPUTF8 (RFC 6531) make the report a `message/global-delivery-status` (RFC 6533),
//! with `utf-8` address types; a returned message that needed SMTPUTF8 is `message/global` (RFC 6532).

use sluice_queue_db::time::rfc5322;
use sluice_smtp::Reply;

use super::Action;

/// Header fields folded at a space past this many octets (RFC 5322 2.1.1's recommendation).
const FOLD_AT: usize = 78;
/// A word longer than this in a folded field is cut, so that no line exceeds RFC 5322's 998 octets.
const MAX_WORD: usize = 900;

/// What the notice is about, gathered by the caller.
#[derive(Debug)]
pub(crate) struct Report<'a> {
    /// This server's host name: `Reporting-MTA:` and the `MAILER-DAEMON@` of `From:`.
    pub(crate) hostname: &'a str,
    /// The original envelope sender, who gets the notice.
    pub(crate) sender: &'a str,
    /// The original message's `ENVID=`.
    pub(crate) env_id: Option<&'a str>,
    /// When the original message was received (ms since the epoch).
    pub(crate) arrival_ms: i64,
    /// Now: `Date:` and each recipient's `Last-Attempt-Date:`.
    pub(crate) now_ms: i64,
    /// Until when a delayed recipient is tried (`Will-Retry-Until:`).
    pub(crate) retry_until_ms: i64,
    /// The notice's own `Message-ID:`, with its angle brackets.
    pub(crate) message_id: &'a str,
    /// The original's `Message-ID:`, for `In-Reply-To:` and `References:`.
    pub(crate) original_message_id: Option<&'a str>,
    /// The original message needed SMTPUTF8.
    pub(crate) original_utf8: bool,
    /// Part of a unique boundary (the notice's MID).
    pub(crate) boundary_seed: u64,
    pub(crate) recipients: Vec<Reported<'a>>,
    pub(crate) returned: Returned,
}

/// One recipient the notice covers.
#[derive(Debug)]
pub(crate) struct Reported<'a> {
    pub(crate) address: &'a str,
    /// `ORCPT=` as stored, decoded: `rfc822;user@example.com`.
    pub(crate) orcpt: Option<&'a str>,
    pub(crate) action: Action,
    pub(crate) reply: &'a Reply,
    pub(crate) remote_mta: Option<&'a str>,
}

/// What of the original message goes back with the notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Returned {
    /// The whole message.
    Full(Vec<u8>),
    /// Its header section, because the sender asked (`RET=HDRS`) or because the message is too large.
    Headers { header: Vec<u8>, too_large: bool },
    /// Nothing: the body could not be read.
    Unreadable,
}

/// A built notice.
#[derive(Debug)]
pub(crate) struct Notice {
    /// The whole message, CRLF line endings.
    pub(crate) bytes: Vec<u8>,
    pub(crate) subject: &'static str,
    /// Some octet is above 127 (the envelope says `BODY=8BITMIME`).
    pub(crate) eight_bit: bool,
    /// Some header or report field holds UTF-8, or the returned message needed SMTPUTF8.
    pub(crate) utf8: bool,
}

impl Action {
    /// The `Action:` field's value (RFC 3464 2.3.3).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
        }
    }
}

/// The most important action decides the subject: a failure first, then a delay, then success.
fn subject(recipients: &[Reported<'_>]) -> &'static str {
    let has = |a: Action| recipients.iter().any(|r| r.action == a);
    if has(Action::Failed) {
        "Undelivered Mail Returned to Sender"
    } else if has(Action::Delayed) {
        "Delayed Mail (still being retried)"
    } else if has(Action::Delivered) {
        "Successful Mail Delivery Report"
    } else {
        "Relayed Mail Delivery Report"
    }
}

/// `Status:` (RFC 3464 2.3.4): the reply's enhanced code, else one derived from the reply's class.
pub(crate) fn status(reply: &Reply) -> String {
    match reply.enhanced {
        Some(e) => e.to_string(),
        None => match reply.code / 100 {
            2 => "2.0.0",
            4 => "4.0.0",
            _ => "5.0.0",
        }
        .to_owned(),
    }
}

/// Text fit for a field or a line of the explanation: control characters become spaces and, unless UTF-8 is
/// allowed, other non-ASCII characters become `?`.
fn clean(s: &str, utf8: bool) -> String {
    s.chars()
        .map(|c| {
            if c.is_control() {
                ' '
            } else if !utf8 && !c.is_ascii() {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// A `Message-ID:` fit for `In-Reply-To:`: `<...>` of visible ASCII, else nothing.
fn msg_id(id: &str) -> Option<&str> {
    let id = id.trim();
    (id.len() > 2 && id.starts_with('<') && id.ends_with('>') && id.bytes().all(|b| b.is_ascii_graphic())).then_some(id)
}

/// One unfolded field, `Name: value` and CRLF.
fn field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\n");
}

/// A field folded at spaces past [`FOLD_AT`] octets; runs of spaces become one, so that no line is only
/// white space.
fn folded_field(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push(':');
    let mut line = name.len() + 1;
    let mut first = true;
    for word in value.split(' ').filter(|w| !w.is_empty()) {
        let mut end = word.len().min(MAX_WORD);
        while !word.is_char_boundary(end) {
            end -= 1;
        }
        let word = &word[..end];
        if !first && line + 1 + word.len() > FOLD_AT {
            out.push_str("\r\n");
            line = 0;
        }
        out.push(' ');
        out.push_str(word);
        line += 1 + word.len();
        first = false;
    }
    out.push_str("\r\n");
}

/// `rfc822; addr`, or `utf-8; addr` for an address that needs SMTPUTF8 (RFC 6533 3).
fn typed_address(address: &str) -> String {
    if address.is_ascii() { format!("rfc822; {address}") } else { format!("utf-8; {address}") }
}

/// The `ORCPT=` value as `Original-Recipient:` wants it: `type;address`.
fn original_recipient(orcpt: &str, utf8: bool) -> String {
    clean(orcpt, utf8)
}

/// The human-readable part: what happened to each recipient, grouped by action.
fn explanation(report: &Report<'_>, utf8: bool) -> String {
    let mut text = format!("This is the mail system at host {}.\r\n", clean(report.hostname, utf8));
    for action in [Action::Failed, Action::Delayed, Action::Delivered, Action::Relayed] {
        let mut who = report.recipients.iter().filter(|r| r.action == action).peekable();
        if who.peek().is_none() {
            continue;
        }
        text.push_str("\r\n");
        text.push_str(match action {
            Action::Failed => {
                "Your message could not be delivered to the recipients below, and will not be tried again.\r\n\
                 The reason is given with each recipient.\r\n"
            }
            Action::Delayed => {
                "Your message has not yet been delivered to the recipients below. It is still being tried;\r\n\
                 you need not send it again. You will be told if it fails for good.\r\n"
            }
            Action::Delivered => "Your message was delivered to the recipients below, as you asked.\r\n",
            Action::Relayed => {
                "Your message was passed on to the recipients below through a mail system that does not\r\n\
                 report delivery: you may get no further notice about them.\r\n"
            }
        });
        if action == Action::Delayed {
            text.push_str(&format!("It will be tried until {}.\r\n", rfc5322(report.retry_until_ms)));
        }
        text.push_str("\r\n");
        for r in who {
            let reply = clean(&r.reply.to_string(), utf8);
            let mut end = reply.len().min(MAX_WORD);
            while !reply.is_char_boundary(end) {
                end -= 1;
            }
            text.push_str(&format!("<{}>: {}", clean(r.address, utf8), &reply[..end]));
            if let Some(mta) = r.remote_mta {
                text.push_str(&format!(" (reply from {})", clean(mta, utf8)));
            }
            text.push_str("\r\n");
        }
    }
    match &report.returned {
        Returned::Full(_) => text.push_str("\r\nYour message is attached.\r\n"),
        Returned::Headers { too_large: false, .. } => {
            text.push_str("\r\nThe header section of your message is attached.\r\n")
        }
        Returned::Headers { too_large: true, .. } => {
            text.push_str("\r\nYour message is too large to return whole; its header section is attached.\r\n")
        }
        Returned::Unreadable => text.push_str("\r\nYour message could not be read back and is not attached.\r\n"),
    }
    text
}

/// The `message/delivery-status` body (RFC 3464 2.1): the per-message fields, then a block per recipient.
fn delivery_status(report: &Report<'_>, utf8: bool) -> String {
    let mut out = String::new();
    field(&mut out, "Reporting-MTA", &format!("dns; {}", clean(report.hostname, utf8)));
    if let Some(envid) = report.env_id {
        field(&mut out, "Original-Envelope-Id", &clean(envid, utf8));
    }
    field(&mut out, "Arrival-Date", &rfc5322(report.arrival_ms));
    for r in &report.recipients {
        out.push_str("\r\n");
        if let Some(orcpt) = r.orcpt {
            field(&mut out, "Original-Recipient", &original_recipient(orcpt, utf8));
        }
        field(&mut out, "Final-Recipient", &clean(&typed_address(r.address), utf8));
        field(&mut out, "Action", r.action.as_str());
        field(&mut out, "Status", &status(r.reply));
        if let Some(mta) = r.remote_mta {
            field(&mut out, "Remote-MTA", &format!("dns; {}", clean(mta, utf8)));
        }
        folded_field(&mut out, "Diagnostic-Code", &format!("smtp; {}", clean(&r.reply.to_string(), utf8)));
        field(&mut out, "Last-Attempt-Date", &rfc5322(report.now_ms));
        if r.action == Action::Delayed {
            field(&mut out, "Will-Retry-Until", &rfc5322(report.retry_until_ms));
        }
    }
    out
}

/// `7bit` or `8bit`, as the octets are.
fn encoding(bytes: &[u8]) -> &'static str {
    if bytes.is_ascii() { "7bit" } else { "8bit" }
}

/// A boundary that occurs in none of the parts (RFC 2046 5.1.1).
fn boundary(seed: u64, parts: &[&[u8]]) -> String {
    let mut n = 0u32;
    loop {
        let candidate = format!("=_dsn_{seed}_{n}");
        let delimiter = format!("--{candidate}");
        let found = parts.iter().any(|p| p.windows(delimiter.len()).any(|w| w == delimiter.as_bytes()));
        if !found {
            return candidate;
        }
        n += 1;
    }
}

/// Builds the notice.
pub(crate) fn build(report: &Report<'_>) -> Notice {
    // UTF-8 in the report's fields needs the global report type; UTF-8 in the sender's address, a UTF-8 header.
    let report_utf8 = report.recipients.iter().any(|r| !r.address.is_ascii() || r.orcpt.is_some_and(|o| !o.is_ascii()))
        || report.env_id.is_some_and(|e| !e.is_ascii());
    let utf8 = report_utf8 || !report.sender.is_ascii() || report.original_utf8;
    let subject = subject(&report.recipients);

    let text = explanation(report, utf8);
    let status = delivery_status(report, report_utf8);
    let (returned, returned_type, description): (&[u8], _, _) = match &report.returned {
        Returned::Full(m) => {
            (m, if report.original_utf8 { "message/global" } else { "message/rfc822" }, "Undelivered Message")
        }
        Returned::Headers { header, .. } => (
            header,
            if report.original_utf8 { "message/global-headers" } else { "text/rfc822-headers" },
            "Undelivered Message Headers",
        ),
        Returned::Unreadable => (&[], "", ""),
    };
    let boundary = boundary(report.boundary_seed, &[text.as_bytes(), status.as_bytes(), returned]);
    let eight_bit = !text.is_ascii() || !status.is_ascii() || !returned.is_ascii() || !report.sender.is_ascii();

    let mut head = String::new();
    field(&mut head, "From", &format!("Mail Delivery System <MAILER-DAEMON@{}>", clean(report.hostname, utf8)));
    field(&mut head, "To", &format!("<{}>", clean(report.sender, utf8)));
    field(&mut head, "Subject", subject);
    field(&mut head, "Date", &rfc5322(report.now_ms));
    field(&mut head, "Message-ID", report.message_id);
    if let Some(id) = report.original_message_id.and_then(msg_id) {
        field(&mut head, "In-Reply-To", id);
        field(&mut head, "References", id);
    }
    field(&mut head, "Auto-Submitted", "auto-replied");
    field(&mut head, "MIME-Version", "1.0");
    head.push_str(&format!(
        "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"{boundary}\"\r\n"
    ));
    field(&mut head, "Content-Transfer-Encoding", if eight_bit { "8bit" } else { "7bit" });
    head.push_str("\r\nThis is a MIME-encapsulated message.\r\n");

    let mut out = head.into_bytes();
    let part = |out: &mut Vec<u8>, description: &str, content_type: &str, cte: &str, content: &[u8]| {
        out.extend_from_slice(format!("\r\n--{boundary}\r\n").as_bytes());
        out.extend_from_slice(format!("Content-Description: {description}\r\n").as_bytes());
        out.extend_from_slice(format!("Content-Type: {content_type}\r\n").as_bytes());
        out.extend_from_slice(format!("Content-Transfer-Encoding: {cte}\r\n\r\n").as_bytes());
        out.extend_from_slice(content);
        // The CRLF before the next delimiter belongs to the delimiter: a part's own last line keeps its end.
        if !content.ends_with(b"\r\n") && !content.is_empty() {
            out.extend_from_slice(b"\r\n");
        }
    };
    let charset = if text.is_ascii() { "us-ascii" } else { "utf-8" };
    part(
        &mut out,
        "Notification",
        &format!("text/plain; charset={charset}"),
        encoding(text.as_bytes()),
        text.as_bytes(),
    );
    let status_type = if report_utf8 { "message/global-delivery-status" } else { "message/delivery-status" };
    part(&mut out, "Delivery report", status_type, encoding(status.as_bytes()), status.as_bytes());
    if !returned_type.is_empty() {
        part(&mut out, description, returned_type, encoding(returned), returned);
    }
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Notice { bytes: out, subject, eight_bit, utf8 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARRIVAL: i64 = 1_795_326_845_000; // Sun, 22 Nov 2026 05:54:05 +0000
    const NOW: i64 = ARRIVAL + 60_000;

    fn reply(code: u16, enhanced: &str, text: &str) -> Reply {
        Reply::new(code, enhanced, text)
    }

    fn report<'a>(recipients: Vec<Reported<'a>>, returned: Returned) -> Report<'a> {
        Report {
            hostname: "mx.example.org",
            sender: "alice@example.org",
            env_id: None,
            arrival_ms: ARRIVAL,
            now_ms: NOW,
            retry_until_ms: ARRIVAL + 2 * 86_400_000,
            message_id: "<dsn.7@mx.example.org>",
            original_message_id: Some("<orig@example.org>"),
            original_utf8: false,
            boundary_seed: 7,
            recipients,
            returned,
        }
    }

    fn failed<'a>(address: &'a str, reply: &'a Reply) -> Reported<'a> {
        Reported { address, orcpt: None, action: Action::Failed, reply, remote_mta: None }
    }

    const ORIGINAL: &[u8] = b"Subject: hello\r\nMessage-ID: <orig@example.org>\r\n\r\nHi Bob.\r\n";

    fn text(n: &Notice) -> String {
        String::from_utf8(n.bytes.clone()).unwrap()
    }

    /// The body of the part whose `Content-Type:` starts with `content_type`.
    fn part<'a>(notice: &'a str, content_type: &str) -> Option<&'a str> {
        let boundary = notice.split("boundary=\"").nth(1)?.split('"').next()?;
        let delimiter = format!("\r\n--{boundary}");
        notice.split(delimiter.as_str()).skip(1).find_map(|p| {
            let (head, body) = p.split_once("\r\n\r\n")?;
            head.contains(&format!("Content-Type: {content_type}")).then_some(body)
        })
    }

    #[test]
    fn a_failure_notice_has_the_header_fields_and_the_three_parts() {
        let r = reply(550, "5.1.1", "no such user");
        let notice = build(&report(vec![failed("bob@remote.example", &r)], Returned::Full(ORIGINAL.to_vec())));
        let t = text(&notice);
        let (head, _) = t.split_once("\r\n\r\n").unwrap();
        for want in [
            "From: Mail Delivery System <MAILER-DAEMON@mx.example.org>",
            "To: <alice@example.org>",
            "Subject: Undelivered Mail Returned to Sender",
            "Date: Sun, 22 Nov 2026 05:55:05 +0000",
            "Message-ID: <dsn.7@mx.example.org>",
            "In-Reply-To: <orig@example.org>",
            "References: <orig@example.org>",
            "Auto-Submitted: auto-replied",
            "MIME-Version: 1.0",
            "Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"=_dsn_7_0\"",
            "Content-Transfer-Encoding: 7bit",
        ] {
            assert!(head.contains(want), "{want:?} missing from\n{head}");
        }
        assert_eq!(notice.subject, "Undelivered Mail Returned to Sender");
        assert!(!notice.eight_bit && !notice.utf8);
        assert!(t.ends_with("\r\n--=_dsn_7_0--\r\n"));
        assert_eq!(t.matches("\r\n--=_dsn_7_0\r\n").count(), 3);
        // Every line ends in CRLF.
        assert!(!t.replace("\r\n", "").contains('\n') && !t.replace("\r\n", "").contains('\r'));

        let human = part(&t, "text/plain; charset=us-ascii").unwrap();
        assert!(human.contains("<bob@remote.example>: 550 5.1.1 no such user\r\n"), "{human}");
        assert!(human.contains("could not be delivered"));
        let status = part(&t, "message/delivery-status").unwrap();
        assert_eq!(
            status,
            "Reporting-MTA: dns; mx.example.org\r\n\
             Arrival-Date: Sun, 22 Nov 2026 05:54:05 +0000\r\n\
             \r\n\
             Final-Recipient: rfc822; bob@remote.example\r\n\
             Action: failed\r\n\
             Status: 5.1.1\r\n\
             Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n\
             Last-Attempt-Date: Sun, 22 Nov 2026 05:55:05 +0000\r\n"
        );
        assert_eq!(part(&t, "message/rfc822").unwrap(), std::str::from_utf8(ORIGINAL).unwrap());
    }

    #[test]
    fn envid_orcpt_remote_mta_and_a_delay_appear_in_the_report() {
        let r = reply(451, "4.4.1", "connection refused");
        let mut rep = report(
            vec![Reported {
                address: "bob@remote.example",
                orcpt: Some("rfc822;Bob@Remote.Example"),
                action: Action::Delayed,
                reply: &r,
                remote_mta: Some("relay.example"),
            }],
            Returned::Headers { header: b"Subject: hello\r\n".to_vec(), too_large: false },
        );
        rep.env_id = Some("QQ314159");
        let notice = build(&rep);
        let t = text(&notice);
        assert!(t.contains("Subject: Delayed Mail (still being retried)\r\n"));
        let status = part(&t, "message/delivery-status").unwrap();
        assert!(status.contains("Original-Envelope-Id: QQ314159\r\n"), "{status}");
        assert!(status.contains("Original-Recipient: rfc822;Bob@Remote.Example\r\n"));
        assert!(status.contains("Action: delayed\r\nStatus: 4.4.1\r\nRemote-MTA: dns; relay.example\r\n"));
        assert!(status.contains("Will-Retry-Until: Tue, 24 Nov 2026 05:54:05 +0000\r\n"));
        let human = part(&t, "text/plain").unwrap();
        assert!(human.contains("(reply from relay.example)"));
        assert!(human.contains("It will be tried until Tue, 24 Nov 2026 05:54:05 +0000."));
        assert_eq!(part(&t, "text/rfc822-headers").unwrap(), "Subject: hello\r\n");
        assert!(part(&t, "message/rfc822").is_none());
    }

    #[test]
    fn the_returned_content_follows_what_was_read() {
        let r = reply(550, "5.1.1", "no");
        let big = build(&report(
            vec![failed("b@x.example", &r)],
            Returned::Headers { header: b"Subject: big\r\n".to_vec(), too_large: true },
        ));
        let t = text(&big);
        assert!(part(&t, "text/plain").unwrap().contains("too large to return whole"));
        assert_eq!(part(&t, "text/rfc822-headers").unwrap(), "Subject: big\r\n");

        let unreadable = build(&report(vec![failed("b@x.example", &r)], Returned::Unreadable));
        let t = text(&unreadable);
        assert!(part(&t, "text/plain").unwrap().contains("could not be read back"));
        assert_eq!(t.matches("\r\n--=_dsn_7_0\r\n").count(), 2, "no third part");
    }

    #[test]
    fn a_status_without_an_enhanced_code_is_derived_from_the_reply_class() {
        assert_eq!(status(&reply(550, "", "no")), "5.0.0");
        assert_eq!(status(&reply(554, "5.7.1", "no")), "5.7.1");
        assert_eq!(status(&reply(421, "", "later")), "4.0.0");
        assert_eq!(status(&reply(250, "", "ok")), "2.0.0");
    }

    #[test]
    fn delivered_and_relayed_notices_have_their_own_subject_and_action() {
        let ok = reply(250, "2.0.0", "Ok");
        let delivered =
            Reported { address: "b@x.example", orcpt: None, action: Action::Delivered, reply: &ok, remote_mta: None };
        let t = text(&build(&report(vec![delivered], Returned::Unreadable)));
        assert!(t.contains("Subject: Successful Mail Delivery Report\r\n"));
        assert!(t.contains("Action: delivered\r\nStatus: 2.0.0\r\n"));
        let relayed =
            Reported { address: "b@x.example", orcpt: None, action: Action::Relayed, reply: &ok, remote_mta: None };
        let t = text(&build(&report(vec![relayed], Returned::Unreadable)));
        assert!(t.contains("Subject: Relayed Mail Delivery Report\r\n"));
        assert!(t.contains("Action: relayed\r\n"));
    }

    #[test]
    fn one_notice_lists_every_recipient_and_a_failure_decides_the_subject() {
        let no = reply(550, "5.1.1", "no");
        let ok = reply(250, "2.0.0", "Ok");
        let t = text(&build(&report(
            vec![
                Reported {
                    address: "d@x.example",
                    orcpt: None,
                    action: Action::Delivered,
                    reply: &ok,
                    remote_mta: None,
                },
                failed("f@x.example", &no),
            ],
            Returned::Unreadable,
        )));
        assert!(t.contains("Subject: Undelivered Mail Returned to Sender\r\n"));
        let status = part(&t, "message/delivery-status").unwrap();
        assert_eq!(status.matches("Final-Recipient:").count(), 2);
        let human = part(&t, "text/plain").unwrap();
        assert!(human.find("<f@x.example>").unwrap() < human.find("<d@x.example>").unwrap(), "failures first");
    }

    #[test]
    fn a_boundary_found_in_the_returned_message_is_not_used() {
        let r = reply(550, "5.1.1", "no");
        let original = b"Subject: x\r\n\r\n--=_dsn_7_0\r\n".to_vec();
        let t = text(&build(&report(vec![failed("b@x.example", &r)], Returned::Full(original))));
        assert!(t.contains("boundary=\"=_dsn_7_1\""));
        assert!(t.ends_with("\r\n--=_dsn_7_1--\r\n"));
    }

    #[test]
    fn a_long_diagnostic_is_folded_and_control_characters_never_end_a_field() {
        let long = format!("{} end", "word ".repeat(60));
        let r = reply(550, "5.7.1", &long);
        let evil = reply(550, "5.7.1", "bad\r\nInjected: yes");
        let t =
            text(&build(&report(vec![failed("a@x.example", &r), failed("b@x.example", &evil)], Returned::Unreadable)));
        let status = part(&t, "message/delivery-status").unwrap();
        assert!(status.lines().all(|l| l.len() <= FOLD_AT + 1), "{status}");
        assert!(status.contains("Diagnostic-Code: smtp; 550 5.7.1 word word"));
        assert!(status.contains("\r\n word"), "continuation lines start with a space");
        assert!(!t.contains("\r\nInjected"));
        assert!(status.contains("bad Injected: yes"), "{status}");
    }

    #[test]
    fn eight_bit_content_is_declared_and_utf8_addresses_use_the_global_report() {
        let r = reply(550, "5.1.1", "no");
        let original = "Subject: caf\u{e9}\r\n\r\nna\u{ef}ve\r\n".as_bytes().to_vec();
        let notice = build(&report(vec![failed("b@x.example", &r)], Returned::Full(original)));
        assert!(notice.eight_bit && !notice.utf8);
        let t = text(&notice);
        assert!(t.contains("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n"));
        assert!(t.contains("Content-Transfer-Encoding: 8bit\r\n\r\nThis is a MIME"));
        assert!(t.contains("Content-Type: message/delivery-status\r\nContent-Transfer-Encoding: 7bit\r\n"));

        let mut rep = report(vec![failed("j\u{f6}rg@m\u{fc}ller.example", &r)], Returned::Unreadable);
        rep.original_utf8 = true;
        let notice = build(&rep);
        assert!(notice.utf8 && notice.eight_bit);
        let t = text(&notice);
        let status = part(&t, "message/global-delivery-status").unwrap();
        assert!(status.contains("Final-Recipient: utf-8; j\u{f6}rg@m\u{fc}ller.example\r\n"));
        assert!(part(&t, "text/plain; charset=utf-8").is_some());
    }

    #[test]
    fn a_malformed_original_message_id_is_not_repeated() {
        let r = reply(550, "5.1.1", "no");
        let mut rep = report(vec![failed("b@x.example", &r)], Returned::Unreadable);
        rep.original_message_id = Some("no brackets");
        let t = text(&build(&rep));
        assert!(!t.contains("In-Reply-To") && !t.contains("References"));
    }
}
