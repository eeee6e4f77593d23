//! An 8-bit message for a next hop without 8BITMIME (RFC 6152 3, as RFC 1652 described it): every MIME leaf
//! part whose body has 8-bit octets is encoded as quoted-printable (RFC 2045 6.7) and its
//! `Content-Transfer-Encoding` says so; multiparts are converted part by part. Everything else — header
//! sections, boundaries, parts that are already 7-bit (quoted-printable, base64, ASCII text) — is kept byte
//! for byte.
//!
//! What cannot be converted is refused, and the message's recipients fail with `5.6.3`: 8-bit octets in a
//! header field (unless the message goes with SMTPUTF8), in an enclosed message (`message/rfc822`, whose
//! encoding must stay 7bit, 8bit or binary: RFC 2046 5.2.1), or outside a multipart's parts; a part encoded
//! `binary`, or labelled quoted-printable or base64 but holding 8-bit octets; a message without
//! `MIME-Version`, which has no header field in which to say how its body is encoded.

/// MIME nesting deeper than this is refused rather than followed.
const MAX_DEPTH: usize = 32;
/// RFC 2045 6.7 (5): encoded lines are at most 76 characters, the soft line break's `=` included.
const QP_LINE: usize = 76;

/// Why a message cannot be converted to 7 bit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unconvertible {
    /// A header field has 8-bit octets, and the message does not go with SMTPUTF8.
    #[error("a header field has 8-bit octets")]
    EightBitHeader,
    /// The message is not MIME (no `MIME-Version` header field).
    #[error("it has 8-bit octets but no MIME-Version header field")]
    NotMime,
    /// An enclosed message has 8-bit octets.
    #[error("an enclosed message ({0}) has 8-bit octets")]
    EnclosedMessage(String),
    /// A multipart's preamble or epilogue has 8-bit octets.
    #[error("a multipart has 8-bit octets outside its parts")]
    OutsideParts,
    /// A part whose encoding cannot be changed has 8-bit octets.
    #[error("a part with Content-Transfer-Encoding {0} has 8-bit octets")]
    Encoding(String),
    /// A multipart without a boundary parameter has 8-bit octets.
    #[error("a multipart without a boundary has 8-bit octets")]
    NoBoundary,
    /// The parts are nested deeper than sluice follows.
    #[error("MIME parts are nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// `message` (header section and body) with every 8-bit leaf part as quoted-printable. With `utf8_headers`
/// (the message goes with SMTPUTF8) header fields may keep 8-bit octets.
pub(crate) fn to_seven_bit(message: &[u8], utf8_headers: bool) -> Result<Vec<u8>, Unconvertible> {
    let entity = Entity::split(message);
    if !utf8_headers && has_8bit(entity.header) {
        return Err(Unconvertible::EightBitHeader);
    }
    if !has_8bit(entity.body) {
        return Ok(message.to_vec());
    }
    if !fields(entity.header).any(|f| f.is("MIME-Version")) {
        return Err(Unconvertible::NotMime);
    }
    let mut out = Vec::with_capacity(message.len() + message.len() / 8);
    convert(&entity, Default::Text, utf8_headers, 0, &mut out)?;
    Ok(out)
}

fn has_8bit(bytes: &[u8]) -> bool {
    !bytes.is_ascii()
}

/// A MIME entity: its header section (through the CRLF of its last field), the empty line after it, and its
/// body.
struct Entity<'a> {
    header: &'a [u8],
    separator: &'a [u8],
    body: &'a [u8],
}

impl Entity<'_> {
    /// Splits at the first empty line; without one, the whole is header.
    fn split(bytes: &[u8]) -> Entity<'_> {
        // A part may start with its empty line: no header fields at all.
        for eol in [&b"\r\n"[..], b"\n"] {
            if bytes.starts_with(eol) {
                return Entity { header: &[], separator: eol, body: &bytes[eol.len()..] };
            }
        }
        let mut at = 0;
        while let Some(lf) = memchr(b'\n', &bytes[at..]) {
            let end = at + lf + 1;
            let next = &bytes[end..];
            for eol in [&b"\r\n"[..], b"\n"] {
                if next.starts_with(eol) {
                    return Entity { header: &bytes[..end], separator: eol, body: &next[eol.len()..] };
                }
            }
            at = end;
        }
        Entity { header: bytes, separator: &[], body: &[] }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// The content type a part has without a `Content-Type` field (RFC 2046 5.1.1, 5.1.5).
#[derive(Clone, Copy)]
enum Default {
    Text,
    /// In a `multipart/digest`.
    Message,
}

/// One header field: its whole text (continuation lines and final line break included).
struct Field<'a> {
    raw: &'a [u8],
}

impl Field<'_> {
    fn name(&self) -> &[u8] {
        let colon = memchr(b':', self.raw).unwrap_or(self.raw.len());
        self.raw[..colon].trim_ascii()
    }

    fn is(&self, name: &str) -> bool {
        self.name().eq_ignore_ascii_case(name.as_bytes())
    }

    /// The value, unfolded, without comments (RFC 5322 3.2.2) outside quoted strings.
    fn value(&self) -> String {
        let colon = memchr(b':', self.raw).map_or(self.raw.len(), |c| c + 1);
        let raw = String::from_utf8_lossy(&self.raw[colon..]);
        let (mut out, mut depth, mut quoted, mut escaped) = (String::new(), 0usize, false, false);
        for c in raw.chars().filter(|c| *c != '\r' && *c != '\n') {
            if escaped {
                escaped = false;
                if depth == 0 {
                    out.push(c);
                }
                continue;
            }
            match c {
                '\\' => {
                    escaped = true;
                    if depth == 0 {
                        out.push(c);
                    }
                }
                '"' if depth == 0 => {
                    quoted = !quoted;
                    out.push(c);
                }
                '(' if !quoted => depth += 1,
                ')' if !quoted && depth > 0 => depth -= 1,
                _ if depth == 0 => out.push(c),
                _ => {}
            }
        }
        out.trim().to_owned()
    }
}

/// The header fields of a header section, in order.
fn fields(header: &[u8]) -> impl Iterator<Item = Field<'_>> {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= header.len() {
            return None;
        }
        let start = at;
        loop {
            at += memchr(b'\n', &header[at..]).map_or(header.len() - at, |lf| lf + 1);
            // A line that starts with a space or a tab continues the field (RFC 5322 2.2.3).
            if at >= header.len() || !matches!(header[at], b' ' | b'\t') {
                break;
            }
        }
        Some(Field { raw: &header[start..at] })
    })
}

/// A `Content-Type` value: `type/subtype` (lower case) and its `boundary` parameter.
struct ContentType {
    mime_type: String,
    boundary: Option<String>,
}

impl ContentType {
    fn parse(value: &str) -> ContentType {
        let (mime_type, params) = value.split_once(';').unwrap_or((value, ""));
        ContentType { mime_type: mime_type.trim().to_ascii_lowercase(), boundary: parameter(params, "boundary") }
    }
}

/// The value of parameter `name` in `; a=b; c="d"` (RFC 2045 5.1), unquoted.
fn parameter(mut params: &str, name: &str) -> Option<String> {
    loop {
        params = params.trim_start_matches([';', ' ', '\t']);
        if params.is_empty() {
            return None;
        }
        let (key, rest) = params.split_once('=')?;
        let rest = rest.trim_start();
        let (value, rest) = if let Some(quoted) = rest.strip_prefix('"') {
            let (mut value, mut escaped, mut end) = (String::new(), false, quoted.len());
            for (i, c) in quoted.char_indices() {
                if escaped {
                    value.push(c);
                    escaped = false;
                } else if c == '\\' {
                    escaped = true;
                } else if c == '"' {
                    end = i + 1;
                    break;
                } else {
                    value.push(c);
                }
            }
            (value, &quoted[end..])
        } else {
            let end = rest.find(';').unwrap_or(rest.len());
            (rest[..end].trim().to_owned(), &rest[end..])
        };
        if key.trim().eq_ignore_ascii_case(name) {
            return Some(value);
        }
        params = rest.split_once(';').map_or("", |(_, after)| after);
    }
}

/// Writes `entity`, converted, to `out`.
fn convert(
    entity: &Entity<'_>,
    default: Default,
    utf8_headers: bool,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), Unconvertible> {
    if depth > MAX_DEPTH {
        return Err(Unconvertible::TooDeep);
    }
    if !utf8_headers && has_8bit(entity.header) {
        return Err(Unconvertible::EightBitHeader);
    }
    if !has_8bit(entity.body) {
        out.extend_from_slice(entity.header);
        out.extend_from_slice(entity.separator);
        out.extend_from_slice(entity.body);
        return Ok(());
    }
    let content_type = fields(entity.header).find(|f| f.is("Content-Type")).map(|f| ContentType::parse(&f.value()));
    let mime_type = content_type.as_ref().map_or(
        match default {
            Default::Text => "text/plain",
            Default::Message => "message/rfc822",
        },
        |c| c.mime_type.as_str(),
    );
    if mime_type.starts_with("multipart/") {
        let boundary = content_type.as_ref().and_then(|c| c.boundary.as_deref()).ok_or(Unconvertible::NoBoundary)?;
        let inner = if mime_type == "multipart/digest" { Default::Message } else { Default::Text };
        out.extend_from_slice(entity.header);
        out.extend_from_slice(entity.separator);
        return multipart(entity.body, boundary, inner, utf8_headers, depth, out);
    }
    // RFC 6532 3.5: message/global, unlike message/rfc822, may be encoded like any leaf part.
    if mime_type.starts_with("message/") && mime_type != "message/global" {
        return Err(Unconvertible::EnclosedMessage(mime_type.to_owned()));
    }
    let encoding = fields(entity.header).find(|f| f.is("Content-Transfer-Encoding")).map(|f| f.value());
    match encoding.as_deref().map(str::to_ascii_lowercase).as_deref() {
        // 8-bit octets in a part labelled 7bit are taken for what they are: 8bit.
        None | Some("7bit" | "8bit") => {}
        Some(_) => return Err(Unconvertible::Encoding(encoding.unwrap_or_default())),
    }
    let mut labelled = false;
    for field in fields(entity.header) {
        if !field.is("Content-Transfer-Encoding") {
            out.extend_from_slice(field.raw);
        } else if !labelled {
            out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
            labelled = true;
        }
    }
    if !labelled {
        out.extend_from_slice(b"Content-Transfer-Encoding: quoted-printable\r\n");
    }
    out.extend_from_slice(if entity.separator.is_empty() { b"\r\n" } else { entity.separator });
    quoted_printable(entity.body, out);
    Ok(())
}

/// Writes a multipart body, each part converted; preamble, boundaries and epilogue as they are.
fn multipart(
    body: &[u8],
    boundary: &str,
    inner: Default,
    utf8_headers: bool,
    depth: usize,
    out: &mut Vec<u8>,
) -> Result<(), Unconvertible> {
    // The lines of the body, each with its line break; `None` before the first delimiter and after the
    // closing one.
    let mut part: Option<usize> = None;
    let mut closed = false;
    let mut at = 0;
    let mut line_start = 0;
    while line_start < body.len() {
        let end = line_start + memchr(b'\n', &body[line_start..]).map_or(body.len() - line_start, |lf| lf + 1);
        let line = &body[line_start..end];
        let delimiter = if closed { None } else { delimiter(line, boundary) };
        if let Some(close) = delimiter {
            match part {
                // RFC 2046 5.1.1: the line break before a delimiter belongs to the delimiter.
                Some(start) => {
                    let content = &body[start..line_start];
                    let (content, eol) = strip_eol(content);
                    convert(&Entity::split(content), inner, utf8_headers, depth + 1, out)?;
                    out.extend_from_slice(eol);
                }
                None => {
                    if has_8bit(&body[at..line_start]) {
                        return Err(Unconvertible::OutsideParts);
                    }
                    out.extend_from_slice(&body[at..line_start]);
                }
            }
            out.extend_from_slice(line);
            closed = close;
            part = (!close).then_some(end);
            at = end;
        }
        line_start = end;
    }
    match part {
        // No closing delimiter: the last part runs to the end.
        Some(start) => convert(&Entity::split(&body[start..]), inner, utf8_headers, depth + 1, out),
        None => {
            if has_8bit(&body[at..]) {
                return Err(Unconvertible::OutsideParts);
            }
            out.extend_from_slice(&body[at..]);
            Ok(())
        }
    }
}

/// Whether `line` is a delimiter of `boundary`: `Some(true)` for the closing one (`--boundary--`),
/// `Some(false)` for the others, with only white space after it.
fn delimiter(line: &[u8], boundary: &str) -> Option<bool> {
    let rest = line.strip_prefix(b"--")?.strip_prefix(boundary.as_bytes())?;
    let (close, rest) = match rest.strip_prefix(b"--") {
        Some(rest) => (true, rest),
        None => (false, rest),
    };
    rest.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n')).then_some(close)
}

/// `bytes` without its final line break, and that line break.
fn strip_eol(bytes: &[u8]) -> (&[u8], &[u8]) {
    for eol in [&b"\r\n"[..], b"\n"] {
        if let Some(content) = bytes.strip_suffix(eol) {
            return (content, eol);
        }
    }
    (bytes, &[])
}

/// Quoted-printable (RFC 2045 6.7): CRLF line breaks stay line breaks; `=`, octets outside printable ASCII
/// (a bare CR or LF too) and white space at the end of a line are `=XX`; lines longer than 76 characters
/// are broken with soft line breaks (`=` CRLF).
pub(crate) fn quoted_printable(body: &[u8], out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut column = 0;
    let mut i = 0;
    while let Some(&b) = body.get(i) {
        let rest = &body[i + 1..];
        if b == b'\r' && rest.starts_with(b"\n") {
            out.extend_from_slice(b"\r\n");
            column = 0;
            i += 2;
            continue;
        }
        let at_end = rest.is_empty() || rest.starts_with(b"\r\n");
        let literal = match b {
            b' ' | b'\t' => !at_end,
            b'=' => false,
            33..=126 => true,
            _ => false,
        };
        let width = if literal { 1 } else { 3 };
        // Room for a soft break's `=` after this one, unless it ends the line.
        let room = if at_end { QP_LINE } else { QP_LINE - 1 };
        if column + width > room {
            out.extend_from_slice(b"=\r\n");
            column = 0;
        }
        if literal {
            out.push(b);
        } else {
            out.extend_from_slice(&[b'=', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
        }
        column += width;
        i += 1;
    }
}

#[cfg(test)]
mod tests;
