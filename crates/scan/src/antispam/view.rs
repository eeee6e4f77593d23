//! What each kind of rule looks at, computed once per message and only when some rule needs it.
//!
//! - Header rules see a header's values (see [`HeaderSpec`]).
//! - `body` rules see SpamAssassin's rendered body: the Subject, then the text parts (HTML
//!   rendered) split into paragraphs at blank lines, whitespace inside a paragraph collapsed to
//!   single spaces, one paragraph a line.
//! - `rawbody` rules see the text parts decoded but not rendered, line by line.
//! - `uri` rules see every URI in the message, one a line: `http(s)://`, `ftp://` and `mailto:`
//!   links and `www.` names (given `http://`) in the text, and `href`/`src`/`action` attribute
//!   values in HTML. URIs are not canonicalised further (no `%xx` decoding).
//! - `full` rules see the raw message, at most [`FULL_LIMIT`] bytes.

use std::borrow::Cow;
use std::sync::{LazyLock, OnceLock};

use regex::bytes::Regex;

use crate::mime::{BODY_TEXT_LIMIT, Decoded};
use crate::per_thread::PerThread;

/// The most of the raw message `full` rules see.
pub(super) const FULL_LIMIT: usize = BODY_TEXT_LIMIT * 4;

/// The haystacks rules run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Haystack {
    /// Every header, decoded: the prefilter's haystack for decoded header rules.
    Headers,
    /// The raw header block: for `:raw` header rules.
    RawHeaders,
    Body,
    RawBody,
    Uri,
    Full,
}

/// Which header a header rule tests, and how.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct HeaderSpec {
    pub target: HeaderTarget,
    pub modifier: Modifier,
    /// `:raw`: the value as sent, not decoded or unfolded.
    pub raw: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum HeaderTarget {
    /// A header by its lowercase name.
    Named(String),
    /// Every header, as `Name: value` lines.
    All,
    /// `To` and `Cc` together.
    ToCc,
    /// The envelope sender as the message records it (`Return-Path`, `X-Envelope-From`).
    EnvelopeFrom,
    /// `Message-Id` and its variants (`Resent-Message-Id`, `X-Message-Id`).
    MessageId,
    /// SpamAssassin's relay pseudo-headers, built from the `Received` headers: `true` for the
    /// trusted relays (`X-Spam-Relays-Trusted`, `-Internal`), `false` for the others
    /// (`-Untrusted`, `-External`).
    Relays(bool),
}

/// A modifier that picks part of a header's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Modifier {
    None,
    /// The first address.
    Addr,
    /// Every address, one a line.
    Addrs,
    /// The first display name.
    Name,
    /// Every display name, one a line.
    Names,
    /// The first occurrence of the header only.
    First,
    /// The last occurrence only.
    Last,
}

impl HeaderSpec {
    /// Parses `Name[:modifier...]`.
    pub(super) fn parse(text: &str) -> Result<HeaderSpec, String> {
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or_default();
        if name.is_empty() {
            return Err("missing header name".to_owned());
        }
        let target = match name {
            "ALL" => HeaderTarget::All,
            "ToCc" => HeaderTarget::ToCc,
            "EnvelopeFrom" => HeaderTarget::EnvelopeFrom,
            "MESSAGEID" => HeaderTarget::MessageId,
            "X-Spam-Relays-Trusted" | "X-Spam-Relays-Internal" => HeaderTarget::Relays(true),
            "X-Spam-Relays-Untrusted" | "X-Spam-Relays-External" => HeaderTarget::Relays(false),
            _ => HeaderTarget::Named(name.to_ascii_lowercase()),
        };
        let mut spec = HeaderSpec { target, modifier: Modifier::None, raw: false };
        for modifier in parts {
            spec.modifier = match modifier {
                "raw" => {
                    spec.raw = true;
                    continue;
                }
                "addr" => Modifier::Addr,
                "addrs" => Modifier::Addrs,
                "name" => Modifier::Name,
                "names" => Modifier::Names,
                "first" => Modifier::First,
                "last" => Modifier::Last,
                other => return Err(format!("header modifier :{other} is not supported")),
            };
        }
        Ok(spec)
    }
}

/// A message as the rules see it.
pub(super) struct View<'d, 'a> {
    pub decoded: &'d Decoded<'a>,
    body: OnceLock<(String, usize)>,
    raw_body: OnceLock<String>,
    uris: OnceLock<String>,
    relays: OnceLock<(String, String)>,
    /// The `Date` header's time and the `Received` headers' times, for the date `eval:` tests (a
    /// stock set has eight of them).
    dates: OnceLock<(Option<i64>, Vec<i64>)>,
    /// The values header rules test, by the rule set's number for each distinct [`HeaderSpec`]:
    /// twenty rules on `From:addr` parse the address once.
    headers: Vec<OnceLock<Option<Cow<'d, str>>>>,
}

impl<'d, 'a> View<'d, 'a> {
    #[cfg(test)]
    pub(super) fn new(decoded: &'d Decoded<'a>) -> Self {
        View::with_headers(decoded, 0)
    }

    /// A view that keeps the values of `slots` distinct header specs (see [`View::header_in`]).
    pub(super) fn with_headers(decoded: &'d Decoded<'a>, slots: usize) -> Self {
        View {
            decoded,
            body: OnceLock::new(),
            raw_body: OnceLock::new(),
            uris: OnceLock::new(),
            relays: OnceLock::new(),
            dates: OnceLock::new(),
            headers: (0..slots).map(|_| OnceLock::new()).collect(),
        }
    }

    /// [`View::header`], computed on the first call for `slot` (the rule set's number for `spec`) and
    /// kept for the message's other rules on the same spec.
    pub(super) fn header_in(&self, slot: usize, spec: &HeaderSpec) -> Option<&str> {
        self.headers[slot].get_or_init(|| self.header(spec)).as_deref()
    }

    /// The message's dates, computed by `init` on the first call.
    pub(super) fn dates(&self, init: impl FnOnce() -> (Option<i64>, Vec<i64>)) -> &(Option<i64>, Vec<i64>) {
        self.dates.get_or_init(init)
    }

    /// The bytes of a haystack.
    pub(super) fn haystack(&self, haystack: Haystack) -> &[u8] {
        match haystack {
            Haystack::Headers => self.decoded.all_headers().as_bytes(),
            Haystack::RawHeaders => self.decoded.raw_header_block(),
            Haystack::Body => self.body().0.as_bytes(),
            Haystack::RawBody => self.raw_body().as_bytes(),
            Haystack::Uri => self.uris().as_bytes(),
            Haystack::Full => {
                let raw = self.decoded.raw();
                &raw[..raw.len().min(FULL_LIMIT)]
            }
        }
    }

    /// The rendered body, and where it starts after the Subject line (for `nosubject`).
    pub(super) fn body(&self) -> &(String, usize) {
        self.body.get_or_init(|| render_body(self.decoded))
    }

    fn raw_body(&self) -> &str {
        self.raw_body.get_or_init(|| crlf_to_lf(self.decoded.raw_body_text()))
    }

    fn uris(&self) -> &str {
        self.uris.get_or_init(|| extract_uris(self.raw_body().as_bytes(), self.body().0.as_bytes()))
    }

    /// The value a header rule tests, `None` when the header is absent.
    pub(super) fn header(&self, spec: &HeaderSpec) -> Option<Cow<'d, str>> {
        let values: Vec<Cow<'d, str>> = match &spec.target {
            HeaderTarget::All if spec.raw => {
                return Some(String::from_utf8_lossy(self.decoded.raw_header_block()));
            }
            HeaderTarget::All => return Some(Cow::Borrowed(self.decoded.all_headers())),
            HeaderTarget::Relays(trusted) => {
                let (t, u) = self.relays.get_or_init(|| relays(self.decoded));
                return Some(Cow::Owned(if *trusted { t } else { u }.clone()));
            }
            HeaderTarget::Named(name) => self.values(&[name.as_str()], spec.raw),
            HeaderTarget::ToCc => self.values(&["to", "cc"], spec.raw),
            HeaderTarget::MessageId => {
                self.values(&["message-id", "resent-message-id", "x-message-id", "x-original-message-id"], spec.raw)
            }
            HeaderTarget::EnvelopeFrom => {
                let values = self.values(&["x-envelope-from"], spec.raw);
                if values.is_empty() { self.values(&["return-path"], spec.raw) } else { values }
            }
        };
        if values.is_empty() {
            return None;
        }
        let picked: Vec<Cow<'d, str>> = match spec.modifier {
            Modifier::None => values,
            Modifier::First => values.into_iter().take(1).collect(),
            Modifier::Last => values.into_iter().last().into_iter().collect(),
            Modifier::Addr => addresses(&values).into_iter().take(1).map(Cow::Owned).collect(),
            Modifier::Addrs => addresses(&values).into_iter().map(Cow::Owned).collect(),
            Modifier::Name => names(&values).into_iter().take(1).map(Cow::Owned).collect(),
            Modifier::Names => names(&values).into_iter().map(Cow::Owned).collect(),
        };
        match picked.len() {
            0 => Some(Cow::Borrowed("")),
            1 => picked.into_iter().next(),
            _ => Some(Cow::Owned(picked.join("\n"))),
        }
    }

    /// The values of the named headers, decoded (each occurrence its own value) or raw.
    fn values(&self, names: &[&str], raw: bool) -> Vec<Cow<'d, str>> {
        let mut out = Vec::new();
        if raw {
            for (name, value) in self.decoded.raw_header_fields() {
                if names.iter().any(|n| name.eq_ignore_ascii_case(n)) {
                    let text = String::from_utf8_lossy(value);
                    out.push(Cow::Owned(crlf_to_lf(text.trim_start().trim_end_matches(['\r', '\n']))));
                }
            }
            return out;
        }
        for name in names {
            if let Some(joined) = self.decoded.header(name) {
                out.extend(joined.split('\n').map(Cow::Borrowed));
            }
        }
        out
    }
}

/// SpamAssassin's relay lines, trusted and untrusted, from the `Received` headers (most recent
/// first): `[ ip=192.0.2.1 rdns=mail.example.test helo=mail.example.test by=mx.example.test
/// ident= envfrom= intl=0 id=ABC auth= msa=0 ]`, one bracket per relay, joined with a space. With no
/// trusted networks configured, as SpamAssassin infers them: relays from private (RFC 1918) or
/// loopback addresses are trusted until the first public one; it and every relay after it are not.
fn relays(decoded: &Decoded<'_>) -> (String, String) {
    let mut trusted = Vec::new();
    let mut untrusted = Vec::new();
    for value in decoded.header("received").unwrap_or_default().split('\n') {
        let Some(relay) = Relay::parse(value) else { continue };
        let text = relay.to_string();
        if untrusted.is_empty() && relay.private {
            trusted.push(text);
        } else {
            untrusted.push(text);
        }
    }
    (trusted.join(" "), untrusted.join(" "))
}

/// One `Received` header, parsed as far as the relay lines need.
#[derive(Debug, PartialEq)]
struct Relay {
    ip: String,
    rdns: String,
    helo: String,
    by: String,
    id: String,
    private: bool,
}

impl Relay {
    /// `from HELO (RDNS [IP]) by BY ... id ID; date`, and the common variants (`from HELO
    /// ([IP])`, `from RDNS (HELO HELO) (IP)`); `None` without an IPv4 address.
    fn parse(value: &str) -> Option<Relay> {
        let value = value.split(';').next().unwrap_or_default();
        let from = value.trim_start().strip_prefix("from ")?;
        let (from_part, rest) = match from.find(" by ") {
            Some(at) => (&from[..at], &from[at + 4..]),
            None => (from, ""),
        };
        let helo_word = from_part.split_whitespace().next().unwrap_or_default();
        let ip = find_ipv4(from_part)?;
        let mut helo = helo_word.trim_matches(['(', ')', '[', ']']).to_owned();
        let mut rdns = String::new();
        // Inside the parentheses: "rdns [ip]", "HELO name", or "rdns".
        for group in from_part.split('(').skip(1) {
            let inner = group.split(')').next().unwrap_or_default();
            let mut words = inner.split_whitespace();
            match words.next() {
                Some("HELO" | "helo") => helo = words.next().unwrap_or_default().to_owned(),
                // "rdns [ip]", or a lone host name.
                Some(word)
                    if !word.starts_with('[')
                        && find_ipv4(word).is_none()
                        && (inner.contains('[') || word.contains('.')) =>
                {
                    rdns = word.trim_end_matches('.').to_owned();
                }
                _ => {}
            }
        }
        if rdns.eq_ignore_ascii_case("unknown") {
            rdns.clear();
        }
        let by = rest.split_whitespace().next().unwrap_or_default().to_owned();
        let id = rest
            .split_whitespace()
            .skip_while(|w| *w != "id")
            .nth(1)
            .unwrap_or_default()
            .trim_end_matches(';')
            .to_owned();
        let private = is_private(&ip);
        Some(Relay { ip, rdns, helo, by, id, private })
    }
}

impl std::fmt::Display for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "[ ip={} rdns={} helo={} by={} ident= envfrom= intl={} id={} auth= msa=0 ]",
            self.ip,
            self.rdns,
            self.helo,
            self.by,
            u8::from(self.private),
            self.id
        )
    }
}

/// The first dotted-quad IPv4 address in `text`.
fn find_ipv4(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        if bytes[start].is_ascii_digit() && (start == 0 || !bytes[start - 1].is_ascii_alphanumeric()) {
            let end = start + bytes[start..].iter().take_while(|b| b.is_ascii_digit() || **b == b'.').count();
            let candidate = text[start..end].trim_end_matches('.');
            if candidate.parse::<std::net::Ipv4Addr>().is_ok() {
                return Some(candidate.to_owned());
            }
            start = end;
        } else {
            start += 1;
        }
    }
    None
}

fn is_private(ip: &str) -> bool {
    ip.parse::<std::net::Ipv4Addr>().is_ok_and(|ip| ip.is_private() || ip.is_loopback() || ip.is_link_local())
}

/// SpamAssassin's rendered body; see the module documentation.
fn render_body(decoded: &Decoded<'_>) -> (String, usize) {
    let text = decoded.body_text();
    let (subject, rest) = match decoded.header("subject") {
        Some(_) => text.split_once('\n').unwrap_or((text, "")),
        None => ("", text),
    };
    let mut out = String::with_capacity(text.len());
    out.push_str(subject);
    let start = if decoded.header("subject").is_some() {
        out.push('\n');
        out.len()
    } else {
        0
    };
    let mut paragraph_open = false;
    let mut blank_run = false;
    for line in rest.split('\n') {
        let words = line.split_ascii_whitespace();
        let mut empty = true;
        for word in words {
            if empty && paragraph_open {
                out.push(if blank_run { '\n' } else { ' ' });
            } else if !empty {
                out.push(' ');
            }
            out.push_str(word);
            empty = false;
            paragraph_open = true;
            blank_run = false;
        }
        if empty && paragraph_open {
            blank_run = true;
        }
    }
    (out, start)
}

/// `text` with each CRLF as LF (`str::replace` searches for the pair more slowly).
fn crlf_to_lf(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for at in memchr::memmem::find_iter(text.as_bytes(), b"\r\n") {
        // `at` is the CR, an ASCII byte: a character boundary.
        out.push_str(&text[copied..at]);
        copied = at + 1;
    }
    out.push_str(&text[copied..]);
    out
}

/// Finds links in the text and HTML; see the module documentation.
fn extract_uris(raw_body: &[u8], body: &[u8]) -> String {
    static SCHEMED: LazyLock<PerThread<Regex>> = LazyLock::new(|| {
        PerThread::new(
            Regex::new(r#"(?i-u)\b(?:(?:https?|ftp)://|mailto:|www\d{0,3}\.)[^\s"'<>()\\]+"#).expect("static regex"),
        )
    });
    static ATTRIBUTE: LazyLock<PerThread<Regex>> = LazyLock::new(|| {
        PerThread::new(Regex::new(r#"(?i-u)\b(?:href|src|action)\s*=\s*["']?([^"'\s>]+)"#).expect("static regex"))
    });
    let mut uris: Vec<String> = Vec::new();
    let mut add = |uri: &[u8]| {
        let uri = String::from_utf8_lossy(uri);
        let uri = uri.trim_end_matches(['.', ',', ';', ':', '!', '?']);
        let uri = if uri.get(..4).is_some_and(|head| head.eq_ignore_ascii_case("www.")) {
            format!("http://{uri}")
        } else {
            uri.to_owned()
        };
        if !uri.is_empty() && !uris.contains(&uri) {
            uris.push(uri);
        }
    };
    for captures in ATTRIBUTE.captures_iter(raw_body) {
        if let Some(value) = captures.get(1) {
            add(value.as_bytes());
        }
    }
    for haystack in [raw_body, body] {
        for found in SCHEMED.find_iter(haystack) {
            add(found.as_bytes());
        }
    }
    uris.join("\n")
}

/// The addresses in header values: what is in `<...>`, or else the words holding an `@`.
fn addresses(values: &[Cow<'_, str>]) -> Vec<String> {
    let mut out = Vec::new();
    for value in values {
        for entry in split_addresses(value) {
            let address = match (entry.find('<'), entry.rfind('>')) {
                (Some(open), Some(close)) if open < close => entry[open + 1..close].trim().to_owned(),
                _ => {
                    let without_comment = entry.split('(').next().unwrap_or_default();
                    without_comment.trim().to_owned()
                }
            };
            if !address.is_empty() {
                out.push(address);
            }
        }
    }
    out
}

/// The display names in header values: the text before `<...>`, unquoted, or a trailing
/// `(comment)`.
fn names(values: &[Cow<'_, str>]) -> Vec<String> {
    let mut out = Vec::new();
    for value in values {
        for entry in split_addresses(value) {
            let name = match entry.find('<') {
                Some(open) => entry[..open].trim(),
                None => match (entry.find('('), entry.rfind(')')) {
                    (Some(open), Some(close)) if open < close => entry[open + 1..close].trim(),
                    _ => "",
                },
            };
            out.push(name.trim_matches('"').trim().to_owned());
        }
    }
    out
}

/// Splits an address list at commas outside quotes and angle brackets.
fn split_addresses(value: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut quoted, mut angle, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => angle = true,
            '>' if !quoted => angle = false,
            ',' if !quoted && !angle => {
                out.push(value[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim());
    out.retain(|entry| !entry.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mime::decode;

    #[test]
    fn line_endings_become_newlines() {
        assert_eq!(crlf_to_lf("a\r\nb\r\n\r\nc\rd\n\r"), "a\nb\n\nc\rd\n\r");
        assert_eq!(crlf_to_lf("caf\u{e9}\r\n"), "caf\u{e9}\n");
        assert_eq!(crlf_to_lf(""), "");
    }

    #[test]
    fn header_modifiers() {
        let msg = b"From: \"Jane Doe\" <jane@example.test>\r\nTo: a@x.test, Bob <b@y.test>\r\nCc: c@z.test (Carl)\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nX-A: one\r\nX-A: two\r\n\r\nbody\r\n";
        let d = decode(msg);
        let view = View::new(&d);
        let get = |spec: &str| view.header(&HeaderSpec::parse(spec).unwrap()).map(|v| v.into_owned());
        assert_eq!(get("From:addr").as_deref(), Some("jane@example.test"));
        assert_eq!(get("From:name").as_deref(), Some("Jane Doe"));
        assert_eq!(get("To:addrs").as_deref(), Some("a@x.test\nb@y.test"));
        assert_eq!(get("ToCc:names").as_deref(), Some("\nBob\nCarl"));
        assert_eq!(get("Subject").as_deref(), Some("café"));
        assert_eq!(get("Subject:raw").as_deref(), Some("=?utf-8?q?caf=C3=A9?="));
        assert_eq!(get("X-A:first").as_deref(), Some("one"));
        assert_eq!(get("X-A:last").as_deref(), Some("two"));
        assert_eq!(get("X-A").as_deref(), Some("one\ntwo"));
        assert_eq!(get("X-Missing"), None);
        assert!(HeaderSpec::parse("From:host").is_err());
    }

    #[test]
    fn body_is_paragraphs_with_collapsed_whitespace() {
        let msg = b"Subject: Hello\r\n\r\nfirst   line\r\nsame\tparagraph\r\n\r\n\r\nsecond one\r\n";
        let d = decode(msg);
        let view = View::new(&d);
        let (body, start) = view.body();
        assert_eq!(body, "Hello\nfirst line same paragraph\nsecond one");
        assert_eq!(&body[*start..], "first line same paragraph\nsecond one");
    }

    #[test]
    fn uris_from_text_and_html() {
        let msg = concat!(
            "Subject: x\r\nContent-Type: text/html\r\n\r\n",
            "<a href=\"http://spam.example/buy?x=1\">click</a> visit www.example.test.\r\n",
            "<img src='https://img.example/p.gif'> mailto:me@example.test\r\n"
        );
        let d = decode(msg.as_bytes());
        let view = View::new(&d);
        let uris = String::from_utf8(view.haystack(Haystack::Uri).to_vec()).unwrap();
        let uris: Vec<&str> = uris.lines().collect();
        assert_eq!(
            uris,
            vec![
                "http://spam.example/buy?x=1",
                "https://img.example/p.gif",
                "http://www.example.test",
                "mailto:me@example.test"
            ]
        );
        assert!(view.haystack(Haystack::RawBody).starts_with(b"<a href"));
    }

    #[test]
    fn relay_pseudo_headers() {
        let msg = concat!(
            "Received: from localhost (localhost [127.0.0.1])\r\n\tby mx.example.test (Postfix) with ESMTP id AB12; Mon, 1 Jan 2024 10:00:00 +0000\r\n",
            "Received: from mail.sender.test (mail.sender.test [192.0.2.7])\r\n\tby mx.example.test with SMTP id CD34; Mon, 1 Jan 2024 10:00:00 +0000\r\n",
            "Received: from unknown (HELO bogus) (198.51.100.9)\r\n\tby mail.sender.test with SMTP; Mon, 1 Jan 2024 09:59:00 +0000\r\n",
            "Subject: x\r\n\r\nbody\r\n"
        );
        let d = decode(msg.as_bytes());
        let view = View::new(&d);
        let get = |spec: &str| view.header(&HeaderSpec::parse(spec).unwrap()).unwrap().into_owned();
        assert_eq!(
            get("X-Spam-Relays-Trusted"),
            "[ ip=127.0.0.1 rdns=localhost helo=localhost by=mx.example.test ident= envfrom= intl=1 id=AB12 auth= msa=0 ]"
        );
        assert_eq!(
            get("X-Spam-Relays-External"),
            "[ ip=192.0.2.7 rdns=mail.sender.test helo=mail.sender.test by=mx.example.test ident= envfrom= intl=0 id=CD34 auth= msa=0 ] \
             [ ip=198.51.100.9 rdns= helo=bogus by=mail.sender.test ident= envfrom= intl=0 id= auth= msa=0 ]"
        );
    }

    #[test]
    fn uris_with_non_ascii_characters() {
        let msg = "Subject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<a href=\"é€/x\">y</a> <a href='ww€'>z</a> http://ex.test/ü\r\n";
        let d = decode(msg.as_bytes());
        let view = View::new(&d);
        let uris = String::from_utf8(view.haystack(Haystack::Uri).to_vec()).unwrap();
        assert_eq!(uris, "é€/x\nww€\nhttp://ex.test/ü");
    }
}
