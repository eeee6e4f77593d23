//! Address syntax of MAIL and RCPT (RFC 5321 4.1.2). A source route is parsed and ignored: only the final
//! mailbox is judged. `%` and `!` are ordinary local-part characters: sluice never interprets them.

use std::fmt;

/// A mailbox `local@domain`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    local: String,
    domain: String,
    quoted: bool,
    literal: bool,
}

impl Address {
    /// The local part; for a quoted local part, its content without the quotes.
    pub fn local(&self) -> &str {
        &self.local
    }
    /// The domain as given (an address literal keeps its brackets); empty for `<postmaster>`.
    pub fn domain(&self) -> &str {
        &self.domain
    }
    pub fn is_quoted(&self) -> bool {
        self.quoted
    }
    pub fn is_address_literal(&self) -> bool {
        self.literal
    }
    /// `<postmaster>` without a domain (RCPT only).
    pub fn is_postmaster_only(&self) -> bool {
        self.domain.is_empty()
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.quoted {
            write!(f, "\"{}\"", self.local.replace('\\', "\\\\").replace('"', "\\\""))?;
        } else {
            f.write_str(&self.local)?;
        }
        if !self.domain.is_empty() {
            write!(f, "@{}", self.domain)?;
        }
        Ok(())
    }
}

/// The MAIL FROM path: an address or the null sender `<>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReversePath {
    Null,
    Address(Address),
}

/// Why a path does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PathError {
    Syntax,
    TooLong,
    NonAscii,
}

fn is_atext(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b) || b >= 0x80
}

/// Parses `<...>` at the front of `s`; returns the address and the rest of the text after `>`.
pub(crate) fn parse_path(s: &str, utf8: bool) -> Result<(Option<Address>, &str), PathError> {
    let inner_start = s.strip_prefix('<').ok_or(PathError::Syntax)?;
    // Find the closing '>' outside a quoted string.
    let bytes = inner_start.as_bytes();
    let (mut i, mut in_quote) = (0, false);
    let end = loop {
        let b = *bytes.get(i).ok_or(PathError::Syntax)?;
        match b {
            b'\\' if in_quote => i += 1,
            b'"' => in_quote = !in_quote,
            b'>' if !in_quote => break i,
            _ => {}
        }
        i += 1;
    };
    let inner = &inner_start[..end];
    let rest = &inner_start[end + 1..];
    if inner.len() > 256 {
        return Err(PathError::TooLong);
    }
    if !utf8 && !inner.is_ascii() {
        return Err(PathError::NonAscii);
    }
    if inner.is_empty() {
        return Ok((None, rest));
    }
    // A source route "@a,@b:" is ignored (RFC 5321 4.1.2, C.6).
    let mailbox = if inner.starts_with('@') {
        let colon = inner.find(':').ok_or(PathError::Syntax)?;
        for hop in inner[..colon].split(',') {
            let d = hop.strip_prefix('@').ok_or(PathError::Syntax)?;
            check_domain(d)?;
        }
        &inner[colon + 1..]
    } else {
        inner
    };
    Ok((Some(parse_mailbox(mailbox)?), rest))
}

fn parse_mailbox(s: &str) -> Result<Address, PathError> {
    if s.eq_ignore_ascii_case("postmaster") {
        return Ok(Address { local: s.to_owned(), domain: String::new(), quoted: false, literal: false });
    }
    let (local, quoted, after) = if let Some(q) = s.strip_prefix('"') {
        let mut local = String::new();
        let mut chars = q.char_indices();
        let end = loop {
            let (i, c) = chars.next().ok_or(PathError::Syntax)?;
            match c {
                '\\' => {
                    let (_, esc) = chars.next().ok_or(PathError::Syntax)?;
                    local.push(esc);
                }
                '"' => break i,
                c if c.is_control() => return Err(PathError::Syntax),
                c => local.push(c),
            }
        };
        (local, true, &q[end + 1..])
    } else {
        let at = s.rfind('@').ok_or(PathError::Syntax)?;
        let local = &s[..at];
        if local.is_empty()
            || local.starts_with('.')
            || local.ends_with('.')
            || local.contains("..")
            || !local.bytes().all(|b| b == b'.' || is_atext(b))
        {
            return Err(PathError::Syntax);
        }
        (local.to_owned(), false, &s[at..])
    };
    let domain = after.strip_prefix('@').ok_or(PathError::Syntax)?;
    if local.len() > 64 {
        return Err(PathError::TooLong);
    }
    let literal = domain.starts_with('[');
    if literal {
        let inner = domain.strip_prefix('[').and_then(|d| d.strip_suffix(']')).ok_or(PathError::Syntax)?;
        let ok = if let Some(v6) = inner.strip_prefix("IPv6:") {
            v6.parse::<std::net::Ipv6Addr>().is_ok()
        } else {
            inner.parse::<std::net::Ipv4Addr>().is_ok()
        };
        if !ok {
            return Err(PathError::Syntax);
        }
    } else {
        check_domain(domain)?;
    }
    Ok(Address { local, domain: domain.to_owned(), quoted, literal })
}

fn check_domain(d: &str) -> Result<(), PathError> {
    if d.len() > 255 {
        return Err(PathError::TooLong);
    }
    // A trailing dot (`example.com.`) is not RFC 5321 syntax.
    if d.is_empty() || d.split('.').any(|label| {
        label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b >= 0x80)
    }) {
        return Err(PathError::Syntax);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Option<Address>, PathError> {
        parse_path(s, false).map(|(a, _)| a)
    }

    #[test]
    fn addresses() {
        let a = parse("<User@Example.COM>").unwrap().unwrap();
        assert_eq!((a.local(), a.domain()), ("User", "Example.COM"));
        assert_eq!(parse("<>").unwrap(), None);
        // Source routes are ignored; the final mailbox is what counts.
        let a = parse("<@relay.example,@b.example:user@accepted.test>").unwrap().unwrap();
        assert_eq!(a.to_string(), "user@accepted.test");
        // Percent hack and bang paths are plain local parts.
        let a = parse("<user%other.example@accepted.test>").unwrap().unwrap();
        assert_eq!((a.local(), a.domain()), ("user%other.example", "accepted.test"));
        let a = parse("<other.example!user@accepted.test>").unwrap().unwrap();
        assert_eq!(a.domain(), "accepted.test");
        let a = parse("<\"john doe\"@example.com>").unwrap().unwrap();
        assert!(a.is_quoted());
        assert_eq!(a.to_string(), "\"john doe\"@example.com");
        let a = parse("<\"a@b\"@example.com>").unwrap().unwrap();
        assert_eq!((a.local(), a.domain()), ("a@b", "example.com"));
        assert!(parse("<user@[127.0.0.1]>").unwrap().unwrap().is_address_literal());
        assert!(parse("<user@[IPv6:::1]>").unwrap().unwrap().is_address_literal());
        assert!(parse("<postmaster>").unwrap().unwrap().is_postmaster_only());
    }

    #[test]
    fn bad_addresses() {
        for bad in [
            "<user@example.com.>",
            "<user@>",
            "<@example.com>",
            "<user>",
            "<a..b@example.com>",
            "<.a@example.com>",
            "<user@[999.1.1.1]>",
            "<user@exa mple.com>",
            "user@example.com",
            "<user@example.com",
            "<user@-bad.com>",
        ] {
            assert_eq!(parse(bad).unwrap_err(), PathError::Syntax, "{bad}");
        }
        assert_eq!(parse(&format!("<{}@example.com>", "x".repeat(65))).unwrap_err(), PathError::TooLong);
        assert_eq!(parse("<üser@example.com>").unwrap_err(), PathError::NonAscii);
        assert!(parse_path("<üser@exämple.com>", true).is_ok());
    }
}
