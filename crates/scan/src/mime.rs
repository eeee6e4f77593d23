//! Decoding a message once, for every engine that looks at it.
//!
//! [`decode`] parses the message with `mail-parser` and hands out what the engines need:
//!
//! - [`Decoded::header`]: the values of every occurrence of a top-level header, unfolded,
//!   RFC 2047-decoded and joined with `"\n"`, for the antispam header rules;
//! - [`Decoded::body_text`]: the Subject line followed by the decoded text of every `text/*`
//!   part (HTML rendered to text), for the antispam body rules. It is cut at
//!   [`BODY_TEXT_LIMIT`] bytes: a message of tens of megabytes costs no more than its first
//!   256 KiB of text;
//! - [`Decoded::leaves`]: every MIME leaf part decoded from base64 or quoted-printable, nested
//!   `message/rfc822` parts included down to [`MAX_DEPTH`], for the antivirus engine.
//!
//! The header table and the body text are computed on first use and kept, so running both engines
//! on one [`Decoded`] parses the message once.
//!
//! Input that is not a message (its first line is not a header field) or that `mail-parser`
//! cannot parse is never skipped: its headers are read by hand as far as they go, its raw bytes
//! (lossy UTF-8) are the body text, and the whole of it is one leaf part.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::OnceLock;

use mail_parser::decoders::html::html_to_text;
use mail_parser::parsers::MessageStream;
use mail_parser::{Encoding, HeaderValue, Message, MessageParser, MessagePart, MimeHeaders, PartType};

/// The most decoded body text the antispam body rules see, in bytes (256 KiB).
pub const BODY_TEXT_LIMIT: usize = 256 * 1024;

/// How deep nested `message/rfc822` parts are walked; a deeper message is scanned as raw bytes.
pub const MAX_DEPTH: usize = 10;

/// A message decoded once, shared by the scanning engines.
pub struct Decoded<'a> {
    raw: &'a [u8],
    message: Option<Message<'a>>,
    headers: OnceLock<HeaderTable>,
    body_text: OnceLock<String>,
    raw_body_text: OnceLock<String>,
    raw_fields: OnceLock<Vec<(&'a str, &'a [u8])>>,
}

/// The top-level header fields, decoded.
#[derive(Debug, Default)]
struct HeaderTable {
    /// Lowercase name → the decoded values of every occurrence, joined with `"\n"`.
    by_name: HashMap<String, String>,
    /// Every field as `Name: value`, one a line, in message order (SpamAssassin's `ALL`).
    all: String,
}

/// A decoded MIME leaf part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf<'d> {
    /// The attachment's file name, or `part N` (N counts leaf parts from 1 in message order), or
    /// `message` when the part is the whole message body.
    pub label: String,
    /// The part's content, transfer-decoded (base64, quoted-printable), not charset-converted.
    pub bytes: Cow<'d, [u8]>,
    /// What to cut out of the raw message to remove this part.
    pub(crate) span: Span,
    /// Whether the part's MIME type is `text/html`, for HTML body signatures.
    pub(crate) html: bool,
}

/// The bytes of the raw message that stand for a leaf part, for rewriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Span {
    /// The part is the top-level body: rewriting replaces the body and its MIME headers.
    Root,
    /// The part's header and body occupy `start..end` of the raw message.
    Range(usize, usize),
}

/// Parses `message` for scanning. Never fails: see the module documentation.
pub fn decode(message: &[u8]) -> Decoded<'_> {
    // mail-parser reads any first line as a header, even one without a colon; input that does
    // not start with a header field is not a message, and is scanned as raw bytes instead.
    let parsed = header_field_at(message).and_then(|_| {
        let parser = MessageParser::new().with_mime_headers().default_header_raw();
        parser.parse(message).filter(|m| !m.parts.is_empty())
    });
    Decoded {
        raw: message,
        message: parsed,
        headers: OnceLock::new(),
        body_text: OnceLock::new(),
        raw_body_text: OnceLock::new(),
        raw_fields: OnceLock::new(),
    }
}

impl<'a> Decoded<'a> {
    /// The raw message as given to [`decode`].
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// Whether `mail-parser` could parse the message; when not, the fallbacks described in the
    /// module documentation apply.
    pub fn is_parsed(&self) -> bool {
        self.message.is_some()
    }

    /// The parsed message, for rewriting.
    pub(crate) fn message(&self) -> Option<&Message<'a>> {
        self.message.as_ref()
    }

    /// The decoded values of every top-level occurrence of header `name` (case-insensitive),
    /// unfolded and joined with `"\n"`; `None` when the header is absent.
    pub fn header(&self, name: &str) -> Option<&str> {
        let table = self.header_table();
        let key: Cow<'_, str> = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(name.to_ascii_lowercase())
        } else {
            Cow::Borrowed(name)
        };
        table.by_name.get(key.as_ref()).map(String::as_str)
    }

    /// Every top-level header field as `Name: value`, one a line, decoded and unfolded.
    pub fn all_headers(&self) -> &str {
        &self.header_table().all
    }

    /// The Subject line, then the decoded text of every `text/*` part, at most
    /// [`BODY_TEXT_LIMIT`] bytes.
    pub fn body_text(&self) -> &str {
        self.body_text.get_or_init(|| self.build_body_text())
    }

    /// The decoded text of every `text/*` part with HTML left as it is (SpamAssassin's raw
    /// body), at most [`BODY_TEXT_LIMIT`] bytes; no Subject line.
    pub fn raw_body_text(&self) -> &str {
        self.raw_body_text.get_or_init(|| {
            let mut out = String::new();
            match &self.message {
                Some(message) => append_raw_text_parts(message, 0, &mut out),
                None => {
                    let body = header_block_end(self.raw).map_or(self.raw, |end| &self.raw[end..]);
                    let head = &body[..body.len().min(BODY_TEXT_LIMIT)];
                    push_limited(&mut out, &String::from_utf8_lossy(head));
                }
            }
            out
        })
    }

    /// The top-level header fields as they are in the message: name and raw value (after the
    /// colon, folding kept, line endings as sent), in order.
    /// Split once, on the first call.
    pub fn raw_header_fields(&self) -> &[(&'a str, &'a [u8])] {
        self.raw_fields.get_or_init(|| {
            let mut fields = Vec::new();
            let mut rest = self.raw;
            while let Some(field) = header_field_at(rest) {
                let name = std::str::from_utf8(&rest[..field.colon]).unwrap_or_default();
                fields.push((name, rest.get(field.colon + 1..field.end).unwrap_or_default()));
                rest = rest.get(field.end..).unwrap_or_default();
            }
            fields
        })
    }

    /// The raw header block: everything before the blank line that ends the header.
    pub fn raw_header_block(&self) -> &'a [u8] {
        &self.raw[..header_block_end(self.raw).unwrap_or(self.raw.len())]
    }

    /// Every MIME leaf part, decoded, in message order. Unparseable input is one leaf: the raw
    /// message.
    pub fn leaves(&self) -> Vec<Leaf<'_>> {
        let Some(message) = &self.message else {
            let bytes = Cow::Borrowed(self.raw);
            return vec![Leaf { label: "message".to_owned(), bytes, span: Span::Root, html: false }];
        };
        let mut walk = Walk { raw: self.raw, count: 0, out: Vec::new() };
        walk.message(message, 0, Span::Root, true);
        walk.out
    }

    fn header_table(&self) -> &HeaderTable {
        self.headers.get_or_init(|| {
            let fields = match &self.message {
                Some(message) => parsed_headers(message),
                None => hand_parsed_headers(self.raw),
            };
            HeaderTable::new(fields)
        })
    }

    fn build_body_text(&self) -> String {
        let mut out = String::new();
        if let Some(subject) = self.header("subject") {
            push_limited(&mut out, subject);
            push_limited(&mut out, "\n");
        }
        match &self.message {
            Some(message) => append_text_parts(message, 0, &mut out),
            None => {
                let head = &self.raw[..self.raw.len().min(BODY_TEXT_LIMIT)];
                push_limited(&mut out, &String::from_utf8_lossy(head));
            }
        }
        out
    }
}

impl fmt::Debug for Decoded<'_> {
    /// A summary: the parsed message can be nested too deeply to print recursively.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoded")
            .field("len", &self.raw.len())
            .field("parsed", &self.message.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Decoded<'_> {
    /// Takes nested messages apart one level at a time. mail-parser's own types drop
    /// recursively, and a hostile message nesting `message/rfc822` parts tens of thousands deep
    /// would otherwise overflow the stack.
    fn drop(&mut self) {
        let mut pending: Vec<Message<'_>> = self.message.take().into_iter().collect();
        while let Some(mut message) = pending.pop() {
            for part in &mut message.parts {
                if let PartType::Message(nested) = std::mem::take(&mut part.body) {
                    pending.push(nested);
                }
            }
        }
    }
}

impl HeaderTable {
    fn new(fields: Vec<(String, String)>) -> HeaderTable {
        let mut table = HeaderTable::default();
        for (name, value) in fields {
            table.all.push_str(&name);
            table.all.push_str(": ");
            table.all.push_str(&value);
            table.all.push('\n');
            match table.by_name.entry(name.to_ascii_lowercase()) {
                Entry::Occupied(mut joined) => {
                    joined.get_mut().push('\n');
                    joined.get_mut().push_str(&value);
                }
                Entry::Vacant(slot) => {
                    slot.insert(value);
                }
            }
        }
        table
    }
}

/// The top-level header fields of a parsed message, decoded from their raw bytes.
fn parsed_headers(message: &Message<'_>) -> Vec<(String, String)> {
    let raw = message.raw_message.as_ref();
    message
        .headers()
        .iter()
        .map(|header| {
            let bytes = raw.get(header.offset_start as usize..header.offset_end as usize).unwrap_or_default();
            (header.name.as_str().to_owned(), decode_header_value(bytes))
        })
        .collect()
}

/// Reads `Name: value` fields (with folded continuation lines) from the start of `raw` until the
/// first line that is neither.
fn hand_parsed_headers(raw: &[u8]) -> Vec<(String, String)> {
    let mut fields = Vec::new();
    let mut rest = raw;
    while let Some(field) = header_field_at(rest) {
        let value = rest.get(field.colon + 1..field.end).unwrap_or_default();
        fields.push((field.name, decode_header_value(value)));
        rest = rest.get(field.end..).unwrap_or_default();
    }
    fields
}

/// A header field found by hand at the start of a byte string.
struct FieldAt {
    name: String,
    /// Offset of the colon after the name.
    colon: usize,
    /// Offset just past the field's last line (its newline included).
    end: usize,
}

/// The header field at the start of `bytes`, if the first line is one.
fn header_field_at(bytes: &[u8]) -> Option<FieldAt> {
    let line_end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let colon = bytes[..line_end].iter().position(|&b| b == b':')?;
    let name = &bytes[..colon];
    if name.is_empty() || !name.iter().all(|&b| b.is_ascii_graphic()) {
        return None;
    }
    let mut end = colon;
    loop {
        let Some(newline) = bytes[end..].iter().position(|&b| b == b'\n') else {
            end = bytes.len();
            break;
        };
        end += newline + 1;
        if !matches!(bytes.get(end), Some(b' ' | b'\t')) {
            break;
        }
    }
    let name = String::from_utf8_lossy(name).into_owned();
    Some(FieldAt { name, colon, end })
}

/// Unfolds and RFC 2047-decodes one header value (the bytes after the colon).
fn decode_header_value(bytes: &[u8]) -> String {
    match MessageStream::new(bytes).parse_unstructured() {
        HeaderValue::Text(text) => text.into_owned(),
        HeaderValue::TextList(list) => list.join(" "),
        _ => String::new(),
    }
}

/// Appends `text` to `out` without letting `out` grow past [`BODY_TEXT_LIMIT`], cutting at a
/// character boundary.
fn push_limited(out: &mut String, text: &str) {
    let room = BODY_TEXT_LIMIT.saturating_sub(out.len());
    out.push_str(prefix_at_char_boundary(text, room));
}

/// The longest prefix of `text` no longer than `max` bytes that ends on a character boundary.
fn prefix_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    &text[..cut]
}

/// Appends the text of every `text/*` part of `message` (HTML rendered), parts separated by a
/// newline, recursing into nested messages down to [`MAX_DEPTH`].
fn append_text_parts(message: &Message<'_>, depth: usize, out: &mut String) {
    for part in &message.parts {
        if out.len() >= BODY_TEXT_LIMIT {
            return;
        }
        match &part.body {
            PartType::Text(text) => push_part_text(out, text),
            PartType::Html(html) => {
                // Rendering keeps at most the input's length, so rendering a bounded prefix
                // bounds the work for huge HTML parts.
                let head = prefix_at_char_boundary(html, BODY_TEXT_LIMIT * 4);
                push_part_text(out, &html_to_text(head));
            }
            PartType::Message(nested) if depth < MAX_DEPTH => {
                append_text_parts(nested, depth + 1, out);
            }
            _ => {}
        }
    }
}

/// Like [`append_text_parts`], with HTML parts as they are.
fn append_raw_text_parts(message: &Message<'_>, depth: usize, out: &mut String) {
    for part in &message.parts {
        if out.len() >= BODY_TEXT_LIMIT {
            return;
        }
        match &part.body {
            PartType::Text(text) | PartType::Html(text) => push_part_text(out, text),
            PartType::Message(nested) if depth < MAX_DEPTH => append_raw_text_parts(nested, depth + 1, out),
            _ => {}
        }
    }
}

/// The offset just past the blank line ending the header block, if there is one.
fn header_block_end(raw: &[u8]) -> Option<usize> {
    let lf = memchr_find(raw, b"\n\n").map(|i| i + 2);
    let crlf = memchr_find(raw, b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn push_part_text(out: &mut String, text: &str) {
    push_limited(out, text);
    if !out.ends_with('\n') {
        push_limited(out, "\n");
    }
}

/// The state of a walk over a message's leaf parts.
struct Walk<'d> {
    raw: &'d [u8],
    count: usize,
    out: Vec<Leaf<'d>>,
}

impl<'d> Walk<'d> {
    /// Visits the parts of `message`. `enclosing` is the span that removes the whole of
    /// `message` from the raw message; `outer` says whether the offsets of `message`'s parts
    /// count in the raw message (they do not in a nested message that was itself base64- or
    /// quoted-printable-encoded: mail-parser parses those from the decoded bytes).
    fn message(&mut self, message: &'d Message<'d>, depth: usize, enclosing: Span, outer: bool) {
        for (index, part) in message.parts.iter().enumerate() {
            let span = if index == 0 && depth == 0 {
                Span::Root
            } else if index != 0 && outer {
                Span::Range(part.offset_header as usize, part.offset_end as usize)
            } else {
                enclosing
            };
            match &part.body {
                PartType::Multipart(_) => {}
                PartType::Message(nested) if depth < MAX_DEPTH => {
                    let nested_outer = outer && self.shares_buffer(nested);
                    self.message(nested, depth + 1, span, nested_outer);
                }
                PartType::Message(nested) => {
                    let bytes = Cow::Borrowed(nested.raw_message());
                    self.push(part, bytes, span);
                }
                PartType::Text(text) | PartType::Html(text) => {
                    let bytes = text_part_bytes(message.raw_message.as_ref(), part, text);
                    self.push(part, bytes, span);
                }
                PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                    self.push(part, Cow::Borrowed(bytes.as_ref()), span);
                }
            }
        }
    }

    /// Whether a nested message's offsets count in the raw message: mail-parser gives a nested
    /// message parsed in place a view of the whole raw message.
    fn shares_buffer(&self, nested: &Message<'_>) -> bool {
        matches!(&nested.raw_message, Cow::Borrowed(bytes) if std::ptr::eq(bytes.as_ptr(), self.raw.as_ptr()))
    }

    fn push(&mut self, part: &MessagePart<'_>, bytes: Cow<'d, [u8]>, span: Span) {
        self.count += 1;
        let label = match (part.attachment_name(), span) {
            (Some(name), _) => name.to_owned(),
            (None, Span::Root) => "message".to_owned(),
            (None, Span::Range(..)) => format!("part {}", self.count),
        };
        let html = matches!(part.body, PartType::Html(_));
        self.out.push(Leaf { label, bytes, span, html });
    }
}

/// The transfer-decoded bytes of a text part. mail-parser hands text parts over
/// charset-converted; when that conversion may have changed the bytes, they are decoded again
/// from the raw part so that hashes see what the sender sent.
fn text_part_bytes<'d>(raw: &'d [u8], part: &MessagePart<'_>, text: &'d str) -> Cow<'d, [u8]> {
    if text_is_unconverted(part, text) {
        return Cow::Borrowed(text.as_bytes());
    }
    redecode(raw, part).unwrap_or(Cow::Borrowed(text.as_bytes()))
}

/// Whether the text of a part has the same bytes as its transfer-decoded content.
fn text_is_unconverted(part: &MessagePart<'_>, text: &str) -> bool {
    let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
    match charset {
        None => !text.contains('\u{FFFD}'),
        Some(c) if c.eq_ignore_ascii_case("utf-8") || c.eq_ignore_ascii_case("utf8") => !text.contains('\u{FFFD}'),
        Some(c) if c.eq_ignore_ascii_case("us-ascii") || c.eq_ignore_ascii_case("ascii") => text.is_ascii(),
        Some(_) => false,
    }
}

/// Decodes a part's body again from the raw message by its transfer encoding.
fn redecode<'d>(raw: &'d [u8], part: &MessagePart<'_>) -> Option<Cow<'d, [u8]>> {
    let body = raw.get(part.offset_body as usize..part.offset_end as usize)?;
    let (end, bytes) = match part.encoding {
        Encoding::None => return Some(Cow::Borrowed(body)),
        Encoding::Base64 => MessageStream::new(body).decode_base64_mime(b""),
        Encoding::QuotedPrintable => MessageStream::new(body).decode_quoted_printable_mime(b""),
    };
    (end != usize::MAX).then(|| Cow::Owned(bytes.into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_unfolded_decoded_and_joined() {
        let msg = b"Subject: =?utf-8?q?caf=C3=A9?= au\r\n lait\r\nX-A: one\r\nx-a: two\r\n\r\nbody\r\n";
        let d = decode(msg);
        assert_eq!(d.header("SUBJECT"), Some("café au lait"));
        assert_eq!(d.header("X-A"), Some("one\ntwo"));
        assert_eq!(d.header("date"), None);
        assert!(d.all_headers().starts_with("Subject: café au lait\n"));
    }

    #[test]
    fn body_text_is_subject_then_text_parts() {
        let msg = concat!(
            "Subject: hi\r\nMIME-Version: 1.0\r\n",
            "Content-Type: multipart/alternative; boundary=b\r\n\r\n",
            "--b\r\nContent-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n",
            "aGVsbG8gd29ybGQ=\r\n",
            "--b\r\nContent-Type: text/html\r\n\r\n<p>html <b>text</b></p>\r\n",
            "--b--\r\n"
        );
        let d = decode(msg.as_bytes());
        let text = d.body_text();
        assert!(text.starts_with("hi\nhello world"), "{text:?}");
        assert!(text.contains("html text"), "{text:?}");
    }

    #[test]
    fn body_text_is_limited() {
        let mut msg = b"Subject: big\r\n\r\n".to_vec();
        msg.extend(std::iter::repeat_n(b'a', BODY_TEXT_LIMIT * 2));
        let d = decode(&msg);
        assert_eq!(d.body_text().len(), BODY_TEXT_LIMIT);
    }

    #[test]
    fn unparseable_input_is_one_leaf_and_its_text_is_the_body() {
        let d = decode(b"\x00\x01 not a message at all");
        assert!(!d.is_parsed());
        let leaves = d.leaves();
        assert_eq!(leaves.len(), 1);
        assert_eq!(leaves[0].label, "message");
        assert!(d.body_text().contains("not a message"));
    }

    #[test]
    fn hand_parsed_headers_unfold() {
        let fields = hand_parsed_headers(b"A: 1\r\n  more\r\nB:2\r\nnot a header\r\nC: 3\r\n");
        assert_eq!(fields, vec![("A".to_owned(), "1 more".to_owned()), ("B".to_owned(), "2".to_owned())]);
    }

    #[test]
    fn latin1_text_part_is_hashed_as_sent() {
        let msg = b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n";
        let d = decode(msg);
        let leaves = d.leaves();
        assert_eq!(leaves.len(), 1);
        assert!(leaves[0].bytes.starts_with(b"caf\xe9"), "{:?}", leaves[0].bytes);
    }
}
