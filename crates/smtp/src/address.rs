//! Address syntax of MAIL and RCPT: the RFC 5321 4.1.2 `Path`, with RFC 6531 UTF-8 when SMTPUTF8 is in effect.
//!
//! Relay decisions are only as good as this parser, so it is strict and interprets nothing:
//! - a source route (`<@a,@b:user@example.com>`) is checked for syntax and then dropped: only the final mailbox
//!   is judged (RFC 5321 4.1.2 and C.6);
//! - `%` and `!` are ordinary local-part characters: no percent hack, no bang path;
//! - a quoted local part is decoded (quotes and backslash escapes removed) and flagged, so that a recipient check
//!   sees `"user@other.example"@accepted.test` as the local part `user@other.example` at `accepted.test`;
//! - a domain is a dot-separated list of letter-digit-hyphen labels, or an IPv4 or `IPv6:` address literal; a
//!   trailing dot (`example.com.`) is a syntax error;
//! - limits of RFC 5321 4.5.3.1: local part ≤ 64 octets, domain ≤ 255, the whole path (brackets, source route
//!   and all) ≤ 256.
//!
//! Without SMTPUTF8 any octet above 127 is refused with `553 5.6.7` (RFC 6531 3.5 and the 5.6.7 code of
//! RFC 5248: "non-ASCII addresses not permitted"), distinct from a syntax error, so that the client knows what
//! to fix. With SMTPUTF8 the octets must be valid UTF-8; they are then allowed wherever RFC 6531 allows them
//! (atoms, quoted strings, domain labels), but never in address literals.

use std::borrow::Cow;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::reply::Reply;

/// Longest local part, in octets (RFC 5321 4.5.3.1.1).
pub const MAX_LOCAL_PART: usize = 64;
/// Longest domain, in octets (RFC 5321 4.5.3.1.2).
pub const MAX_DOMAIN: usize = 255;
/// Longest path, brackets included (RFC 5321 4.5.3.1.3).
pub const MAX_PATH: usize = 256;
/// Longest domain label, in octets (RFC 1035 2.3.4).
pub const MAX_LABEL: usize = 63;

/// A mailbox, `local@domain`, or the special recipient `<postmaster>` (empty domain).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    /// Decoded: without quotes and backslash escapes.
    local: String,
    /// As given; an address literal keeps its brackets; empty only for `<postmaster>`.
    domain: String,
    quoted: bool,
    literal: bool,
}

impl Address {
    /// Parses a bare mailbox, `local@domain` without angle brackets (for configuration, headers, tests).
    /// `smtputf8` allows UTF-8 in the local part and domain.
    pub fn parse(mailbox: &str, smtputf8: bool) -> Result<Address, AddressError> {
        let mut cursor = Cursor::new(mailbox.as_bytes(), smtputf8);
        let address = cursor.mailbox()?;
        if !cursor.at_end() {
            return Err(AddressError::TrailingJunk);
        }
        // A bare mailbox must fit in a path once bracketed.
        if mailbox.len() + 2 > MAX_PATH {
            return Err(AddressError::PathTooLong);
        }
        Ok(address)
    }

    /// The local part, decoded: for `"john doe"@example.com` this is `john doe`. See [`Address::is_quoted`].
    pub fn local(&self) -> &str {
        &self.local
    }

    /// The domain as given, case preserved; an address literal keeps its brackets (`[127.0.0.1]`). Empty for
    /// `<postmaster>`.
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The domain lower-cased, for comparisons (domains are case-insensitive).
    pub fn domain_lower(&self) -> String {
        self.domain.to_lowercase()
    }

    /// The local part was written as a quoted string.
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }

    /// The domain is an address literal (`[127.0.0.1]`, `[IPv6:::1]`).
    pub fn is_address_literal(&self) -> bool {
        self.literal
    }

    /// The IP address of an address literal.
    pub fn address_literal_ip(&self) -> Option<IpAddr> {
        if !self.literal {
            return None;
        }
        let inner = self.domain.strip_prefix('[')?.strip_suffix(']')?;
        parse_literal(inner)
    }

    /// This is the RCPT-only `<postmaster>` without a domain (RFC 5321 4.5.1).
    pub fn is_postmaster_only(&self) -> bool {
        self.domain.is_empty()
    }

    /// Only ASCII: the address can be sent without SMTPUTF8.
    pub fn is_ascii(&self) -> bool {
        self.local.is_ascii() && self.domain.is_ascii()
    }

    /// The local part as it is written on the wire: quoted (with `"` and `\` escaped) when it was quoted or when
    /// it is not a dot-string, otherwise as is.
    pub fn local_wire(&self) -> Cow<'_, str> {
        if !self.quoted && is_dot_string(&self.local) {
            return Cow::Borrowed(&self.local);
        }
        let mut out = String::with_capacity(self.local.len() + 2);
        out.push('"');
        for c in self.local.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
        Cow::Owned(out)
    }
}

/// `local@domain` as on the wire (without angle brackets); `<postmaster>` renders as its local part alone.
impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.local_wire())?;
        if !self.domain.is_empty() {
            write!(f, "@{}", self.domain)?;
        }
        Ok(())
    }
}

/// The MAIL FROM path: a mailbox or the null reverse path `<>` (bounces and other notifications).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ReversePath {
    /// `<>`.
    Null,
    /// `<local@domain>`.
    Address(Address),
}

impl ReversePath {
    /// `<>`.
    pub fn is_null(&self) -> bool {
        matches!(self, ReversePath::Null)
    }

    /// The mailbox, unless this is `<>`.
    pub fn address(&self) -> Option<&Address> {
        match self {
            ReversePath::Null => None,
            ReversePath::Address(address) => Some(address),
        }
    }
}

/// The wire form with its angle brackets: `<>` or `<local@domain>`.
impl fmt::Display for ReversePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReversePath::Null => f.write_str("<>"),
            ReversePath::Address(address) => write!(f, "<{address}>"),
        }
    }
}

/// Which command an address came from; it decides the reply code of an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressRole {
    /// MAIL FROM.
    Sender,
    /// RCPT TO.
    Recipient,
}

/// Why a path or mailbox does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The path does not start with `<` or lacks its closing `>`.
    #[error("the address must be enclosed in angle brackets")]
    Brackets,
    /// `<>` where a mailbox is required (RCPT).
    #[error("the null address <> is not allowed here")]
    NullNotAllowed,
    /// A source route that is not `@domain,@domain:`.
    #[error("bad source route")]
    SourceRoute,
    /// A local part that is neither a dot-string nor a quoted string.
    #[error("bad local part")]
    LocalPart,
    /// No `@domain` after the local part (only `<postmaster>` may omit it, and only in RCPT).
    #[error("missing @domain")]
    MissingDomain,
    /// A domain that is not a dot-separated list of letter-digit-hyphen labels.
    #[error("bad domain")]
    Domain,
    /// A domain ending with a dot (`example.com.`).
    #[error("the domain ends with a dot")]
    TrailingDot,
    /// An address literal that is not an IPv4 address or `IPv6:` and an IPv6 address.
    #[error("bad address literal")]
    AddressLiteral,
    /// Something after the mailbox (inside the brackets, or after a bare mailbox).
    #[error("unexpected characters after the address")]
    TrailingJunk,
    /// Local part over 64 octets.
    #[error("local part longer than 64 octets")]
    LocalPartTooLong,
    /// Domain over 255 octets.
    #[error("domain longer than 255 octets")]
    DomainTooLong,
    /// A domain label over 63 octets.
    #[error("domain label longer than 63 octets")]
    LabelTooLong,
    /// Path over 256 octets.
    #[error("path longer than 256 octets")]
    PathTooLong,
    /// Octets above 127 without SMTPUTF8.
    #[error("non-ASCII address without SMTPUTF8")]
    NonAscii,
    /// Octets above 127 that are not UTF-8.
    #[error("address is not valid UTF-8")]
    InvalidUtf8,
}

impl AddressError {
    /// The reply: `553 5.6.7` for a non-ASCII address without SMTPUTF8; otherwise `553 5.1.7` for a sender
    /// (RFC 3463 "bad sender's mailbox address syntax"; 553 is RFC 5321's "mailbox name not allowed") and
    /// `501 5.1.3` for a recipient ("bad destination mailbox address syntax"). The text says what is wrong.
    pub fn reply(&self, role: AddressRole) -> Reply {
        match (self, role) {
            (AddressError::NonAscii, _) => Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"),
            (_, AddressRole::Sender) => Reply::new(553, "5.1.7", format!("Bad sender address syntax: {self}")),
            (_, AddressRole::Recipient) => Reply::new(501, "5.1.3", format!("Bad recipient address syntax: {self}")),
        }
    }
}

/// Parses a whole MAIL FROM path, `<>` or `<[source-route:]mailbox>`, and nothing after it.
pub fn parse_reverse_path(input: &[u8], smtputf8: bool) -> Result<ReversePath, AddressError> {
    let (path, consumed) = parse_path_prefix(input, AddressRole::Sender, smtputf8)?;
    if consumed != input.len() {
        return Err(AddressError::TrailingJunk);
    }
    Ok(path)
}

/// Parses a whole RCPT TO path, `<[source-route:]mailbox>` or `<postmaster>`, and nothing after it.
pub fn parse_forward_path(input: &[u8], smtputf8: bool) -> Result<Address, AddressError> {
    let (path, consumed) = parse_path_prefix(input, AddressRole::Recipient, smtputf8)?;
    if consumed != input.len() {
        return Err(AddressError::TrailingJunk);
    }
    match path {
        ReversePath::Address(address) => Ok(address),
        // parse_path_prefix refuses `<>` for a recipient; kept total rather than unreachable.
        ReversePath::Null => Err(AddressError::NullNotAllowed),
    }
}

/// Checks a domain name (not an address literal) with the same rules as in a path.
pub fn validate_domain(domain: &str, smtputf8: bool) -> Result<(), AddressError> {
    let mut cursor = Cursor::new(domain.as_bytes(), smtputf8);
    cursor.domain()?;
    match cursor.peek() {
        None => Ok(()),
        Some(b'.') => Err(cursor.dot_error()),
        Some(_) => Err(AddressError::Domain),
    }
}

/// Parses a path at the start of `input` and returns it with the number of bytes it spans (through `>`).
/// A sender may be `<>`; a recipient may be `<postmaster>`.
pub(crate) fn parse_path_prefix(
    input: &[u8],
    role: AddressRole,
    smtputf8: bool,
) -> Result<(ReversePath, usize), AddressError> {
    let mut cursor = Cursor::new(input, smtputf8);
    if !cursor.eat(b'<') {
        return Err(AddressError::Brackets);
    }
    if cursor.eat(b'>') {
        return match role {
            AddressRole::Sender => Ok((ReversePath::Null, cursor.pos)),
            AddressRole::Recipient => Err(AddressError::NullNotAllowed),
        };
    }
    let routed = cursor.peek() == Some(b'@');
    if routed {
        cursor.source_route()?;
    }
    // RFC 5321 4.5.1: `<Postmaster>` alone, any case, is a valid recipient; the client's spelling is kept.
    let postmaster = if !routed && role == AddressRole::Recipient { cursor.postmaster() } else { None };
    let address = match postmaster {
        Some(spelling) => Address { local: spelling.to_string(), domain: String::new(), quoted: false, literal: false },
        None => cursor.mailbox()?,
    };
    match cursor.peek() {
        Some(b'>') => cursor.pos += 1,
        None => return Err(AddressError::Brackets),
        Some(_) => return Err(AddressError::TrailingJunk),
    }
    if cursor.pos > MAX_PATH {
        return Err(AddressError::PathTooLong);
    }
    Ok((ReversePath::Address(address), cursor.pos))
}

/// RFC 5321 `atext`, ASCII part.
fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b)
}

/// RFC 5321 `qtextSMTP`, ASCII part: printable except `"` and `\`, space included.
fn is_qtext(b: u8) -> bool {
    matches!(b, 32..=33 | 35..=91 | 93..=126)
}

/// A non-empty `Atom *("." Atom)`, where non-ASCII characters count as atext (they only reach here when
/// SMTPUTF8 allowed them).
fn is_dot_string(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.bytes().all(|b| b >= 0x80 || is_atext(b)))
}

/// An address literal's content: an IPv4 address, or `IPv6:` and an IPv6 address. Other standardized tags of
/// RFC 5321 4.1.3 are refused: nothing can be delivered to them.
pub(crate) fn parse_literal(inner: &str) -> Option<IpAddr> {
    let tag = inner.get(..5);
    if tag.is_some_and(|t| t.eq_ignore_ascii_case("IPv6:")) {
        inner[5..].parse::<Ipv6Addr>().ok().map(IpAddr::V6)
    } else {
        inner.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
    }
}

/// A position in the input, with the SMTPUTF8 switch.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    smtputf8: bool,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8], smtputf8: bool) -> Self {
        Cursor { bytes, pos: 0, smtputf8 }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// If the next octet starts a non-ASCII character, consumes it and returns its text; `NonAscii` without
    /// SMTPUTF8, `InvalidUtf8` when it is not UTF-8.
    fn utf8_char(&mut self) -> Result<Option<&'a str>, AddressError> {
        let Some(first) = self.peek().filter(|b| *b >= 0x80) else { return Ok(None) };
        if !self.smtputf8 {
            return Err(AddressError::NonAscii);
        }
        let len = match first {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return Err(AddressError::InvalidUtf8),
        };
        let slice = self.bytes.get(self.pos..self.pos + len).ok_or(AddressError::InvalidUtf8)?;
        let text = std::str::from_utf8(slice).map_err(|_| AddressError::InvalidUtf8)?;
        self.pos += len;
        Ok(Some(text))
    }

    /// `postmaster` (any case) right before `>`: consumes it and returns its spelling; consumes nothing
    /// otherwise.
    fn postmaster(&mut self) -> Option<&'a str> {
        let end = self.pos + "postmaster".len();
        let word = self.bytes.get(self.pos..end).filter(|w| w.eq_ignore_ascii_case(b"postmaster"))?;
        if self.bytes.get(end) != Some(&b'>') {
            return None;
        }
        self.pos = end;
        // The ten octets matched ASCII letters.
        std::str::from_utf8(word).ok()
    }

    /// `A-d-l ":"`: `@domain *( "," @domain ) ":"`. The domains are checked and thrown away.
    fn source_route(&mut self) -> Result<(), AddressError> {
        loop {
            if !self.eat(b'@') {
                return Err(AddressError::SourceRoute);
            }
            self.domain().map_err(|e| match e {
                AddressError::NonAscii | AddressError::InvalidUtf8 | AddressError::DomainTooLong => e,
                _ => AddressError::SourceRoute,
            })?;
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b':') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(AddressError::SourceRoute),
            }
        }
    }

    /// `Local-part "@" ( Domain / address-literal )`.
    fn mailbox(&mut self) -> Result<Address, AddressError> {
        let start = self.pos;
        let (local, quoted) =
            if self.peek() == Some(b'"') { (self.quoted_string()?, true) } else { (self.dot_string()?, false) };
        if self.pos - start > MAX_LOCAL_PART {
            return Err(AddressError::LocalPartTooLong);
        }
        if !self.eat(b'@') {
            return Err(match self.peek() {
                None | Some(b'>') => AddressError::MissingDomain,
                Some(_) => AddressError::LocalPart,
            });
        }
        let domain_start = self.pos;
        let literal = self.peek() == Some(b'[');
        if literal {
            self.address_literal()?;
        } else {
            self.domain()?;
            if self.peek() == Some(b'.') {
                return Err(self.dot_error());
            }
        }
        // The octets were checked to be ASCII or UTF-8 characters, so this never replaces anything.
        let domain = String::from_utf8_lossy(&self.bytes[domain_start..self.pos]).into_owned();
        Ok(Address { local, domain, quoted, literal })
    }

    /// `Atom *("." Atom)`.
    fn dot_string(&mut self) -> Result<String, AddressError> {
        let mut out = String::new();
        loop {
            let atom_start = out.len();
            loop {
                match self.peek() {
                    Some(b) if is_atext(b) => {
                        out.push(char::from(b));
                        self.pos += 1;
                    }
                    Some(b) if b >= 0x80 => {
                        if let Some(c) = self.utf8_char()? {
                            out.push_str(c);
                        }
                    }
                    _ => break,
                }
            }
            if out.len() == atom_start {
                // An empty atom: leading dot, double dot, trailing dot or nothing at all.
                return Err(AddressError::LocalPart);
            }
            if !self.eat(b'.') {
                return Ok(out);
            }
            out.push('.');
        }
    }

    /// `DQUOTE *QcontentSMTP DQUOTE`, decoded.
    fn quoted_string(&mut self) -> Result<String, AddressError> {
        let mut out = String::new();
        self.pos += 1; // the opening quote, checked by the caller
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.pos += 1;
                    match self.peek() {
                        Some(b @ 32..=126) => {
                            out.push(char::from(b));
                            self.pos += 1;
                        }
                        _ => return Err(AddressError::LocalPart),
                    }
                }
                Some(b) if is_qtext(b) => {
                    out.push(char::from(b));
                    self.pos += 1;
                }
                Some(b) if b >= 0x80 => {
                    if let Some(c) = self.utf8_char()? {
                        out.push_str(c);
                    }
                }
                _ => return Err(AddressError::LocalPart),
            }
        }
    }

    /// `sub-domain *("." sub-domain)`; stops before a dot that is not followed by a label (the caller decides
    /// whether that is a trailing dot).
    fn domain(&mut self) -> Result<(), AddressError> {
        let start = self.pos;
        loop {
            self.label()?;
            let dot = self.pos;
            if !self.eat(b'.') {
                break;
            }
            if !self.starts_label() {
                self.pos = dot;
                break;
            }
        }
        if self.pos - start > MAX_DOMAIN {
            return Err(AddressError::DomainTooLong);
        }
        Ok(())
    }

    /// The error for a dot after a domain that [`Cursor::domain`] did not take: a trailing dot when nothing but
    /// the end of the path follows it, else a bad domain (`example..com`).
    fn dot_error(&self) -> AddressError {
        match self.bytes.get(self.pos + 1) {
            None | Some(b'>') => AddressError::TrailingDot,
            Some(_) => AddressError::Domain,
        }
    }

    /// Whether the next character can start a label (`Let-dig`, or a U-label character).
    fn starts_label(&self) -> bool {
        self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b >= 0x80)
    }

    /// `sub-domain = Let-dig [Ldh-str]`: letters, digits and inner hyphens (and UTF-8 with SMTPUTF8).
    fn label(&mut self) -> Result<(), AddressError> {
        let start = self.pos;
        let mut last = None;
        loop {
            match self.peek() {
                Some(b) if b.is_ascii_alphanumeric() || (b == b'-' && self.pos > start) => {
                    self.pos += 1;
                    last = Some(b);
                }
                Some(b) if b >= 0x80 => {
                    self.utf8_char()?;
                    last = Some(b'a');
                }
                _ => break,
            }
        }
        match last {
            None => Err(AddressError::Domain),
            Some(b'-') => Err(AddressError::Domain),
            Some(_) if self.pos - start > MAX_LABEL => Err(AddressError::LabelTooLong),
            Some(_) => Ok(()),
        }
    }

    /// `"[" ( IPv4 / "IPv6:" IPv6 ) "]"`.
    fn address_literal(&mut self) -> Result<(), AddressError> {
        self.pos += 1; // the '[' checked by the caller
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b']' => break,
                b if b >= 0x80 && !self.smtputf8 => return Err(AddressError::NonAscii),
                33..=90 | 94..=126 => self.pos += 1,
                _ => return Err(AddressError::AddressLiteral),
            }
        }
        let inner = std::str::from_utf8(&self.bytes[start..self.pos]).map_err(|_| AddressError::AddressLiteral)?;
        if !self.eat(b']') || parse_literal(inner).is_none() {
            return Err(AddressError::AddressLiteral);
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests;

/// Is a local part safe for a mailbox store: letters, digits and `.-_+=`, no leading dot, no `..`,
/// at most 64 octets. The receive side refuses others with `550 5.1.3`; Maildir delivery refuses them too,
/// since the local part becomes a directory name.
pub fn safe_local_part(local: &str) -> bool {
    !local.is_empty()
        && local.len() <= MAX_LOCAL_PART
        && !local.starts_with('.')
        && !local.contains("..")
        && local.bytes().all(|b| b.is_ascii_alphanumeric() || b".-_+=".contains(&b))
}
