//! The few `eval:` tests sluice implements natively, for the rules that weigh most in
//! SpamAssassin's stock set. Every other `eval:` test is skipped and counted.
//!
//! - `check_for_shifted_date(min, max)` (`DATE_IN_FUTURE_*`, `DATE_IN_PAST_*`): the `Date` header
//!   minus the time of the `Received` header closest to it is at least `min` and under `max`
//!   hours (`undef` is unbounded); 0 when either is missing.
//! - `check_outlook_message_id()` (`MSGID_OUTLOOK_INVALID`): a Message-Id in Outlook's form whose
//!   embedded time matches neither the `Date` header nor the first `Received` time.
//! - `check_equal_from_domains()` (`HEADER_FROM_DIFFERENT_DOMAINS`): the registered domains of the
//!   From address and the envelope sender (`X-Envelope-From` or `Return-Path`) differ.

use mail_parser::HeaderValue;
use mail_parser::parsers::MessageStream;

use super::view::{HeaderSpec, View};

/// A native `eval:` test.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Eval {
    ShiftedDate { min_hours: Option<f64>, max_hours: Option<f64> },
    OutlookMessageId,
    EqualFromDomains,
}

impl Eval {
    /// The test `eval:name(args)` names, when sluice has it.
    pub(super) fn parse(text: &str) -> Option<Eval> {
        let call = text.strip_prefix("eval:")?.trim();
        let (name, args) = call.split_once('(')?;
        let args: Vec<&str> = args
            .trim_end()
            .strip_suffix(')')?
            .split(',')
            .map(|a| a.trim().trim_matches(['\'', '"']))
            .filter(|a| !a.is_empty())
            .collect();
        let hours = |arg: &str| if arg == "undef" { Ok(None) } else { arg.parse().map(Some) };
        match (name.trim(), args.as_slice()) {
            ("check_for_shifted_date", [min, max]) => {
                Some(Eval::ShiftedDate { min_hours: hours(min).ok()?, max_hours: hours(max).ok()? })
            }
            ("check_outlook_message_id", []) => Some(Eval::OutlookMessageId),
            ("check_equal_from_domains", []) => Some(Eval::EqualFromDomains),
            _ => None,
        }
    }

    pub(super) fn hits(&self, view: &View<'_, '_>) -> bool {
        match self {
            Eval::ShiftedDate { min_hours, max_hours } => {
                let diff = date_diff(view).unwrap_or(0) as f64;
                min_hours.is_none_or(|min| diff >= 3600.0 * min) && max_hours.is_none_or(|max| diff < 3600.0 * max)
            }
            Eval::OutlookMessageId => outlook_message_id(view),
            Eval::EqualFromDomains => different_from_domains(view),
        }
    }
}

/// A header value's date as a Unix time.
fn parse_date(text: &str) -> Option<i64> {
    let mut bytes = text.trim().as_bytes().to_vec();
    bytes.extend_from_slice(b"\n");
    match MessageStream::new(&bytes).parse_date() {
        HeaderValue::DateTime(date) if date.is_valid() => Some(date.to_timestamp()),
        _ => None,
    }
}

/// The `Date` header's time, and the times of the `Received` headers (the text after the last
/// `;`), most recent first; parsed once per message.
fn dates<'v>(view: &'v View<'_, '_>) -> &'v (Option<i64>, Vec<i64>) {
    view.dates(|| {
        let date = view.decoded.header("date").and_then(parse_date);
        let received = view.decoded.header("received").unwrap_or_default();
        (date, received.split('\n').filter_map(|value| parse_date(value.rsplit(';').next()?)).collect())
    })
}

/// `Date` minus the `Received` time closest to it, in seconds.
fn date_diff(view: &View<'_, '_>) -> Option<i64> {
    let (date, received) = dates(view);
    let date = (*date)?;
    received.iter().map(|received| date - received).min_by_key(|diff| diff.abs())
}

fn outlook_message_id(view: &View<'_, '_>) -> bool {
    let Some(id) = view.decoded.header("message-id") else { return false };
    let Some(token) = outlook_time_token(id) else { return false };
    // Outlook's Message-Id embeds its clock: token = time * X + Y (SpamAssassin's constants).
    let expected = |time: i64| (time as f64 * 0.002_328_306_436_538_7 + 27_111_902.832_984_9) as i64;
    const FUDGE: i64 = 250;
    let (date, received) = dates(view);
    if (token - expected(date.unwrap_or(0))).abs() < FUDGE {
        return false;
    }
    let received = received.first().copied().unwrap_or(0);
    (token - expected(received)).abs() >= FUDGE
}

/// `<` four hex digits, eight more (the token), `$`, eight, `$`, eight, `@`.
fn outlook_time_token(id: &str) -> Option<i64> {
    let id = id.trim().strip_prefix('<')?;
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let (head, rest) = id.split_once('$')?;
    let (second, rest) = rest.split_once('$')?;
    let (third, _) = rest.split_once('@')?;
    if !hex(head, 12) || !hex(second, 8) || !hex(third, 8) {
        return None;
    }
    i64::from_str_radix(&head[4..], 16).ok()
}

fn different_from_domains(view: &View<'_, '_>) -> bool {
    let domain = |spec: &str| {
        let spec = HeaderSpec::parse(spec).ok()?;
        let address = view.header(&spec)?;
        let domain = address.rsplit_once('@')?.1.trim().trim_end_matches('>').to_ascii_lowercase();
        (!domain.is_empty()).then(|| registered_domain(&domain))
    };
    match (domain("From:addr"), domain("EnvelopeFrom:addr")) {
        (Some(from), Some(envelope)) => from != envelope,
        _ => false,
    }
}

/// The domain a registry hands out: the last two labels, or three under a two-letter country code
/// whose second level is generic (`example.co.uk`).
fn registered_domain(domain: &str) -> String {
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let generic = ["co", "com", "net", "org", "ac", "gov", "edu", "ne", "or", "go", "gv"];
    let keep = match labels.as_slice() {
        [.., second, tld] if tld.len() == 2 && generic.contains(second) => 3,
        _ => 2,
    };
    labels[labels.len().saturating_sub(keep)..].join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::decode;

    fn hits(eval: &str, message: &str) -> bool {
        let decoded = decode(message.as_bytes());
        let view = View::new(&decoded);
        Eval::parse(eval).expect("a known eval").hits(&view)
    }

    const RECEIVED: &str = "Received: from a.test (a.test [192.0.2.1]) by mx.test; Mon, 1 Jan 2024 10:00:00 +0000\r\n";

    #[test]
    fn shifted_dates() {
        let future = format!("{RECEIVED}Date: Mon, 1 Jan 2024 18:00:00 +0000\r\n\r\nb\r\n");
        assert!(hits("eval:check_for_shifted_date('6', '12')", &future));
        assert!(!hits("eval:check_for_shifted_date('12', '24')", &future));
        let past = format!("{RECEIVED}Date: Sun, 31 Dec 2023 20:00:00 +0000\r\n\r\nb\r\n");
        assert!(hits("eval:check_for_shifted_date('-24', '-12')", &past));
        assert!(!hits("eval:check_for_shifted_date('undef', '-96')", &past));
        assert!(!hits("eval:check_for_shifted_date('6', '12')", "Subject: no dates\r\n\r\nb\r\n"));
    }

    #[test]
    fn equal_from_domains() {
        let same = "From: a@mail.example.co.uk\r\nReturn-Path: <b@example.co.uk>\r\n\r\nb\r\n";
        assert!(!hits("eval:check_equal_from_domains()", same));
        let different = "From: a@example.test\r\nReturn-Path: <bounce@list.other.test>\r\n\r\nb\r\n";
        assert!(hits("eval:check_equal_from_domains()", different));
        assert!(!hits("eval:check_equal_from_domains()", "From: a@example.test\r\n\r\nb\r\n"));
    }

    #[test]
    fn outlook_message_ids() {
        // Token for 2024-01-01 10:00:00 UTC (1704103200): 1704103200 * X + Y.
        let token = (1_704_103_200f64 * 0.002_328_306_436_538_7 + 27_111_902.832_984_9) as i64;
        let good = format!(
            "{RECEIVED}Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <0000{token:08x}$0a1b2c3d$4e5f6a7b@host>\r\n\r\nb\r\n"
        );
        assert!(!hits("eval:check_outlook_message_id()", &good));
        let forged = good.replace(&format!("{token:08x}"), "01234567");
        assert!(hits("eval:check_outlook_message_id()", &forged));
        assert!(!hits("eval:check_outlook_message_id()", "Message-ID: <abc@host>\r\n\r\nb\r\n"));
        assert_eq!(Eval::parse("eval:check_for_freemail()"), None);
    }
}
