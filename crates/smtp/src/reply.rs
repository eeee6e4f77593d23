//! SMTP replies: the typed `Reply { code, enhanced, text }` every outcome is expressed in, its wire rendering
//! (RFC 5321 4.2, with RFC 2034/3463 enhanced status codes on every line), and the client-side reader that turns
//! bytes from a server back into a `Reply`, plus the EHLO keyword list a client needs.

use std::fmt;

/// Longest reply line (without its line ending) the reader accepts. RFC 5321 4.5.3.1.5 allows 512 octets
/// including CRLF; real servers exceed that a little, so the reader is generous but still bounded, so that a
/// hostile server cannot make a client buffer without limit.
pub const MAX_REPLY_LINE: usize = 4096;

/// Most lines one (multi-line) reply may have before the reader gives up.
pub const MAX_REPLY_LINES: usize = 512;

/// An RFC 3463 enhanced status code, `class.subject.detail`, e.g. `5.7.1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 (success), 4 (persistent transient failure) or 5 (permanent failure).
    pub class: u8,
    /// Subject, 0..=999.
    pub subject: u16,
    /// Detail, 0..=999.
    pub detail: u16,
}

impl EnhancedCode {
    /// Builds a code from its three parts; nothing is checked (use [`EnhancedCode::parse`] for text).
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode { class, subject, detail }
    }

    /// Parses exactly `class.subject.detail` (RFC 3463: class 2, 4 or 5; subject and detail 1 to 3 digits).
    ///
    /// This is a `const fn`, so a caller that wants a compile-time checked constant can write
    /// `const C: EnhancedCode = match EnhancedCode::parse("5.7.1") { Some(c) => c, None => panic!() };`
    /// and a typo fails the build instead of a session.
    pub const fn parse(s: &str) -> Option<EnhancedCode> {
        match Self::parse_prefix(s.as_bytes()) {
            Some((code, len)) if len == s.len() => Some(code),
            _ => None,
        }
    }

    /// Parses `s` as [`EnhancedCode::parse`] does, for a reply with code `code`: `None` also when the class is
    /// not the first digit of `code` (RFC 3463 requires them to agree), the rule [`Reply::new`] applies.
    ///
    /// A `const fn`, for replies kept as constants: matching `None` to a `panic!` in a `const` item turns a
    /// typo in the enhanced code, or a class that disagrees with the code, into a build failure:
    ///
    /// ```compile_fail
    /// use sluice_smtp::EnhancedCode;
    /// const DENIED: EnhancedCode = match EnhancedCode::parse_for(550, "5.7") {
    ///     Some(c) => c,
    ///     None => panic!("not an enhanced code for a 5xx reply"),
    /// };
    /// assert_eq!(DENIED.class, 5);
    /// ```
    pub const fn parse_for(code: u16, s: &str) -> Option<EnhancedCode> {
        match Self::parse(s) {
            Some(c) if c.class as u16 == code / 100 => Some(c),
            _ => None,
        }
    }

    /// Parses an enhanced code at the start of `bytes`, returning it and the number of bytes it spans.
    pub(crate) const fn parse_prefix(bytes: &[u8]) -> Option<(EnhancedCode, usize)> {
        if bytes.len() < 5 {
            return None;
        }
        let class = bytes[0];
        if !(class == b'2' || class == b'4' || class == b'5') || bytes[1] != b'.' {
            return None;
        }
        let (subject, after_subject) = match parse_number(bytes, 2) {
            Some(parsed) => parsed,
            None => return None,
        };
        if after_subject >= bytes.len() || bytes[after_subject] != b'.' {
            return None;
        }
        let (detail, end) = match parse_number(bytes, after_subject + 1) {
            Some(parsed) => parsed,
            None => return None,
        };
        Some((EnhancedCode { class: class - b'0', subject, detail }, end))
    }
}

/// Parses 1 to 3 ASCII digits starting at `start`; returns the value and the index after the last digit.
const fn parse_number(bytes: &[u8], start: usize) -> Option<(u16, usize)> {
    let mut i = start;
    let mut value: u16 = 0;
    while i < bytes.len() && i - start < 3 && bytes[i].is_ascii_digit() {
        value = value * 10 + (bytes[i] - b'0') as u16;
        i += 1;
    }
    if i == start || (i < bytes.len() && bytes[i].is_ascii_digit()) {
        // No digit at all, or a fourth digit: not an RFC 3463 code.
        return None;
    }
    Some((value, i))
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply. `text` holds the lines of a multi-line reply joined with `'\n'`, without the code and
/// without the enhanced code, which lives in `enhanced` and is written on every line.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The three-digit reply code (RFC 5321 4.2.2), e.g. 250.
    pub code: u16,
    /// The enhanced status code, when there is one.
    pub enhanced: Option<EnhancedCode>,
    /// Human-readable text; `'\n'` separates the lines of a multi-line reply.
    pub text: String,
}

impl Reply {
    /// Builds a reply from a code, an enhanced code written as text (`"5.7.1"`, or `""` for none) and the text.
    ///
    /// This never panics: it is meant for literals such as `Reply::new(550, "5.7.1", "Relay access denied")`,
    /// and an enhanced string that does not parse, or whose class is not the first digit of `code` (RFC 3463
    /// requires them to agree), is dropped, leaving `enhanced` `None`. Tests of the callers catch such typos;
    /// for a compile-time check build the code with the `const fn` [`EnhancedCode::parse`] and use
    /// [`Reply::with_enhanced`].
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        let enhanced = EnhancedCode::parse(enhanced).filter(|e| u16::from(e.class) == code / 100);
        Reply { code, enhanced, text: text.into() }
    }

    /// Builds a reply from already typed parts.
    pub fn with_enhanced(code: u16, enhanced: Option<EnhancedCode>, text: impl Into<String>) -> Reply {
        Reply { code, enhanced, text: text.into() }
    }

    /// Builds a reply without an enhanced code (e.g. `354`, or a greeting).
    pub fn plain(code: u16, text: impl Into<String>) -> Reply {
        Reply { code, enhanced: None, text: text.into() }
    }

    /// The lines of the text (at least one, possibly empty).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.text.split('\n')
    }

    /// 2xx or 3xx (RFC 5321 4.2.1: positive completion or positive intermediate).
    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }

    /// 2xx: the command succeeded.
    pub fn is_positive_completion(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// 3xx: more input is expected (354 after DATA, 334 during AUTH).
    pub fn is_intermediate(&self) -> bool {
        (300..400).contains(&self.code)
    }

    /// 4xx: transient negative completion; try again later.
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }

    /// 5xx: permanent negative completion.
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }

    /// The wire form: one `code[-| ][enhanced ]text\r\n` line per line of `text`, `-` on all but the last.
    ///
    /// Control characters in the text (other than tab) are written as spaces and a `'\r'` before a `'\n'` is
    /// dropped, so that no text, whatever its origin, can end a reply line early or forge another reply.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(self.text.len() + 16);
        let mut lines = self.lines().peekable();
        while let Some(line) = lines.next() {
            let separator = if lines.peek().is_some() { '-' } else { ' ' };
            let line = line.strip_suffix('\r').unwrap_or(line);
            out.push_str(&format!("{:03}", self.code));
            match (&self.enhanced, line.is_empty()) {
                (Some(enhanced), _) => {
                    out.push(separator);
                    out.push_str(&enhanced.to_string());
                    if !line.is_empty() {
                        out.push(' ');
                    }
                }
                (None, false) => out.push(separator),
                // RFC 5321 4.2: the last line may be the bare code; intermediate lines keep their '-'.
                (None, true) => {
                    if separator == '-' {
                        out.push('-');
                    }
                }
            }
            out.extend(line.chars().map(|c| if c.is_control() && c != '\t' { ' ' } else { c }));
            out.push_str("\r\n");
        }
        out
    }
}

/// One line, for logs and DSN diagnostic codes: `550 5.7.1 Relay access denied`, lines joined by a space.
impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:03}", self.code)?;
        if let Some(enhanced) = &self.enhanced {
            write!(f, " {enhanced}")?;
        }
        for line in self.lines().filter(|l| !l.is_empty()) {
            write!(f, " {line}")?;
        }
        Ok(())
    }
}

/// Why bytes from a server are not a reply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    /// A line does not start with a three-digit code `[2-5][0-5][0-9]` (RFC 5321 4.2).
    #[error("reply line {line} does not start with a valid reply code")]
    BadCode {
        /// 1-based line number within the reply.
        line: usize,
    },
    /// The character after the code is neither `-`, a space nor the end of the line.
    #[error("reply line {line} has an invalid character after the reply code")]
    BadSeparator {
        /// 1-based line number within the reply.
        line: usize,
    },
    /// The lines of one multi-line reply carry different codes.
    #[error("reply line {line} has code {found}, the reply started with {expected}")]
    MixedCodes {
        /// 1-based line number within the reply.
        line: usize,
        /// The code of the first line.
        expected: u16,
        /// The code of this line.
        found: u16,
    },
    /// A line is longer than [`MAX_REPLY_LINE`].
    #[error("reply line longer than {MAX_REPLY_LINE} octets")]
    LineTooLong,
    /// The reply has more than [`MAX_REPLY_LINES`] lines.
    #[error("reply has more than {MAX_REPLY_LINES} lines")]
    TooManyLines,
}

/// Reads one complete reply from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold the whole reply yet, else the reply and the number of bytes it
/// used (what follows belongs to the next reply, e.g. with PIPELINING). Lines end with CRLF; a bare LF is
/// accepted too, since being lenient here cannot confuse anyone downstream. The text of every line is kept,
/// joined with `'\n'`. When the first line's text starts with an enhanced code whose class is the first digit of
/// the reply code, it is taken into `enhanced` and removed from every line that starts with it.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines: Vec<&[u8]> = Vec::new();
    loop {
        let rest = &buf[pos..];
        let Some(lf) = rest.iter().position(|&b| b == b'\n') else {
            if rest.len() > MAX_REPLY_LINE + 1 {
                return Err(ReplyError::LineTooLong);
            }
            return Ok(None);
        };
        let line = &rest[..lf];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        pos += lf + 1;
        if line.len() > MAX_REPLY_LINE {
            return Err(ReplyError::LineTooLong);
        }
        let number = lines.len() + 1;
        if number > MAX_REPLY_LINES {
            return Err(ReplyError::TooManyLines);
        }
        let this_code = parse_code(line).ok_or(ReplyError::BadCode { line: number })?;
        match code {
            None => code = Some(this_code),
            Some(expected) if expected != this_code => {
                return Err(ReplyError::MixedCodes { line: number, expected, found: this_code });
            }
            Some(_) => {}
        }
        let last = match line.get(3) {
            None | Some(b' ') => true,
            Some(b'-') => false,
            Some(_) => return Err(ReplyError::BadSeparator { line: number }),
        };
        lines.push(line.get(4..).unwrap_or_default());
        if last {
            break;
        }
    }
    // `code` was set on the first iteration, which either returned or pushed a line.
    let code = code.unwrap_or_default();
    let enhanced = lines
        .first()
        .and_then(|first| enhanced_prefix(first))
        .map(|(enhanced, _)| enhanced)
        .filter(|e| u16::from(e.class) == code / 100);
    let mut text = String::new();
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            text.push('\n');
        }
        let line = match (enhanced, enhanced_prefix(line)) {
            (Some(want), Some((found, len))) if want == found => &line[len..],
            _ => line,
        };
        text.push_str(&String::from_utf8_lossy(line));
    }
    Ok(Some((Reply { code, enhanced, text }, pos)))
}

/// The reply code at the start of a line, per RFC 5321's `%x32-35 %x30-35 %x30-39`.
fn parse_code(line: &[u8]) -> Option<u16> {
    match line {
        [a @ b'2'..=b'5', b @ b'0'..=b'5', c @ b'0'..=b'9', ..] => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// An enhanced code at the start of a line's text, followed by a space or the end of the line; the length
/// returned includes that space.
fn enhanced_prefix(text: &[u8]) -> Option<(EnhancedCode, usize)> {
    let (code, len) = EnhancedCode::parse_prefix(text)?;
    match text.get(len) {
        None => Some((code, len)),
        Some(b' ') => Some((code, len + 1)),
        Some(_) => None,
    }
}

/// The extensions a server lists in its EHLO reply: every line after the first (which is the greeting), split at
/// the first space into the keyword, upper-cased, and the rest (its parameters, trimmed). Blank lines are
/// skipped. A legacy `AUTH=LOGIN` line is kept as the keyword `AUTH=LOGIN`, not merged with `AUTH`.
pub fn parse_ehlo_keywords(reply: &Reply) -> Vec<(String, String)> {
    reply
        .lines()
        .skip(1)
        .filter_map(|line| {
            let line = line.trim();
            if line.is_empty() {
                return None;
            }
            let (keyword, rest) = line.split_once([' ', '\t']).unwrap_or((line, ""));
            Some((keyword.to_ascii_uppercase(), rest.trim().to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
