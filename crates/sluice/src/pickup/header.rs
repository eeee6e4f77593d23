//! The header section of a message given to sluice locally (the pickup directory, `sluice sendmail`): its
//! fields, unfolded, and the RFC 5322 3.4 address lists of `From:`, `Sender:`, `To:`, `Cc:` and `Bcc:`, with
//! display names, groups, comments, quoted local parts and the obsolete route and empty-element syntax.
//! Pure: the message is given as CRLF text.

use std::ops::Range;

use sluice_smtp::Address;

/// One header field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field name as written (compare it without regard to case).
    pub name: String,
    /// The value, unfolded (each CRLF before a continuation line removed), without the trailing CRLF.
    pub value: String,
    /// Where the field lies in the message, continuation lines and the final CRLF included.
    pub range: Range<usize>,
}

/// A message's header section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub fields: Vec<Field>,
    /// Where the body starts: after the empty line, or the message's length when it has none.
    pub body_start: usize,
}

impl Section {
    /// Parses the header section of `message`, strictly: every line before the first empty line must be a
    /// field (`name:` with a name of printable ASCII) or the continuation of one.
    pub fn parse(message: &[u8]) -> Result<Section, String> {
        let mut fields: Vec<Field> = Vec::new();
        let mut at = 0;
        while at < message.len() {
            let end = line_end(message, at);
            let line = &message[at..end];
            let text = line.strip_suffix(b"\r\n").unwrap_or(line);
            if text.is_empty() {
                return Ok(Section { fields, body_start: end });
            }
            if text[0] == b' ' || text[0] == b'\t' {
                let Some(last) = fields.last_mut() else {
                    return Err("the message starts with a continuation line".to_owned());
                };
                last.value.push_str(&String::from_utf8_lossy(text));
                last.range.end = end;
            } else {
                let Some(name) = field_name(text) else {
                    let shown: String = String::from_utf8_lossy(text).chars().take(60).collect();
                    return Err(format!("unparsable header line {shown:?}"));
                };
                let value = String::from_utf8_lossy(&text[name.len() + 1..]).into_owned();
                let name = std::str::from_utf8(name).unwrap_or_default().trim_end().to_owned();
                fields.push(Field { name, value, range: at..end });
            }
            at = end;
        }
        Ok(Section { fields, body_start: message.len() })
    }

    /// The values of the fields named `name` (case-insensitively), in order.
    pub fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.fields.iter().filter(move |f| f.name.eq_ignore_ascii_case(name)).map(|f| f.value.as_str())
    }

    /// Whether a field named `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.values(name).next().is_some()
    }
}

/// The end of the line that starts at `at` (after its LF), or the message's end.
fn line_end(message: &[u8], at: usize) -> usize {
    message[at..].iter().position(|b| *b == b'\n').map_or(message.len(), |p| at + p + 1)
}

/// The name of a field line, up to (not including) its colon: printable ASCII other than the colon
/// (RFC 5322 2.2), then optional spaces or tabs before the colon (the obsolete syntax of 4.5).
pub fn field_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|b| *b == b':')?;
    let name = &line[..colon];
    let trimmed = name.trim_ascii_end();
    let ok = !trimmed.is_empty() && trimmed.iter().all(|b| (33..=126).contains(b));
    ok.then_some(name)
}

/// Where the header section of `message` ends when it is read leniently, as sendmail does: at the first
/// empty line, or at the first line that is neither a field nor a continuation (that line and what follows
/// are the body). The bool is true when an empty line is there (and `.0` is after it).
pub fn lenient_end(message: &[u8]) -> (usize, bool) {
    let mut at = 0;
    while at < message.len() {
        let end = line_end(message, at);
        let line = &message[at..end];
        let text = line.strip_suffix(b"\r\n").unwrap_or(line);
        if text.is_empty() {
            return (end, true);
        }
        let continuation = at > 0 && (text[0] == b' ' || text[0] == b'\t');
        if !continuation && field_name(text).is_none() {
            return (at, false);
        }
        at = end;
    }
    (message.len(), false)
}

/// One lexical token of an address list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// Atom text, dots included (dot-atoms and the obsolete phrase).
    Atom(String),
    /// A quoted string, decoded.
    Quoted(String),
    /// A domain literal, brackets included.
    Literal(String),
    /// One of `< > @ , ; :`.
    Special(char),
}

fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) || !c.is_ascii()
}

/// Splits an unfolded field value into tokens, dropping white space and comments.
fn tokenize(value: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {}
            '(' => {
                let mut depth = 1;
                while depth > 0 {
                    match chars.next() {
                        Some('\\') => {
                            chars.next();
                        }
                        Some('(') => depth += 1,
                        Some(')') => depth -= 1,
                        Some(_) => {}
                        None => return Err("unterminated comment".to_owned()),
                    }
                }
            }
            '"' => {
                let mut s = String::new();
                loop {
                    match chars.next() {
                        Some('\\') => s.push(chars.next().ok_or("unterminated quoted string")?),
                        Some('"') => break,
                        Some(c) => s.push(c),
                        None => return Err("unterminated quoted string".to_owned()),
                    }
                }
                tokens.push(Token::Quoted(s));
            }
            '[' => {
                let mut s = String::from("[");
                loop {
                    match chars.next() {
                        Some(']') => break,
                        Some('[' | '\\') | None => return Err("bad domain literal".to_owned()),
                        Some(c) => s.push(c),
                    }
                }
                s.push(']');
                tokens.push(Token::Literal(s));
            }
            '<' | '>' | '@' | ',' | ';' | ':' => tokens.push(Token::Special(c)),
            c if is_atext(c) => {
                let mut s = String::from(c);
                while let Some(&n) = chars.peek()
                    && is_atext(n)
                {
                    s.push(n);
                    chars.next();
                }
                tokens.push(Token::Atom(s));
            }
            c => return Err(format!("unexpected {c:?} in an address list")),
        }
    }
    Ok(tokens)
}

/// The mailboxes of an RFC 5322 address list (`To:`, `Cc:`, `Bcc:`, `From:`, or a sendmail argument), as
/// envelope addresses (`local@domain`, the local part quoted only when it must be). Groups give their
/// members (`undisclosed-recipients:;` gives none); a mailbox without a domain (`root`) is qualified with
/// `default_domain`, as sendmail does.
pub fn parse_address_list(value: &str, default_domain: &str) -> Result<Vec<String>, String> {
    let tokens = tokenize(value)?;
    let mut out = Vec::new();
    let mut current: Vec<Token> = Vec::new();
    let mut in_group = false;
    let mut in_angle = false;
    for token in tokens {
        match token {
            Token::Special('<') if !in_angle => {
                in_angle = true;
                // What came before is a display name.
                current.clear();
            }
            Token::Special('<') => return Err("nested '<'".to_owned()),
            Token::Special('>') if in_angle => {
                in_angle = false;
                out.push(mailbox(&current, default_domain)?);
                current.clear();
                // Only comments (already dropped) may follow the angle address before the separator.
                current.push(Token::Special('>'));
            }
            Token::Special('>') => return Err("'>' without '<'".to_owned()),
            // An obsolete source route (`<@a,@b:user@example.com>`) is dropped: only the mailbox counts.
            Token::Special(':') if in_angle => current.clear(),
            Token::Special(',') if in_angle => {}
            Token::Special(':') => {
                if in_group {
                    return Err("a group inside a group".to_owned());
                }
                if current.is_empty() || current.iter().any(|t| matches!(t, Token::Special(_) | Token::Literal(_))) {
                    return Err("bad group name".to_owned());
                }
                in_group = true;
                current.clear();
            }
            Token::Special(sep @ (',' | ';')) => {
                if sep == ';' && !in_group {
                    return Err("';' outside a group".to_owned());
                }
                finish(&mut current, &mut out, default_domain)?;
                if sep == ';' {
                    in_group = false;
                }
            }
            other => {
                if current.first() == Some(&Token::Special('>')) {
                    return Err("text after an angle address".to_owned());
                }
                current.push(other);
            }
        }
    }
    if in_angle {
        return Err("'<' without '>'".to_owned());
    }
    if in_group {
        return Err("a group without its closing ';'".to_owned());
    }
    finish(&mut current, &mut out, default_domain)?;
    Ok(out)
}

/// Ends one element of the list: an addr-spec (unless it was an angle address, already taken, or empty, which
/// the obsolete syntax allows).
fn finish(current: &mut Vec<Token>, out: &mut Vec<String>, default_domain: &str) -> Result<(), String> {
    if !current.is_empty() && current[0] != Token::Special('>') {
        out.push(mailbox(current, default_domain)?);
    }
    current.clear();
    Ok(())
}

/// An addr-spec from its tokens: a local part (atom or quoted string), then `@` and a domain (atom or
/// literal), or a local part alone, qualified with `default_domain`. Checked with the SMTP address parser.
fn mailbox(tokens: &[Token], default_domain: &str) -> Result<String, String> {
    let shown = || tokens.iter().map(render_token).collect::<Vec<_>>().join(" ");
    let (local, domain) = match tokens {
        [local] => (local, None),
        [local, Token::Special('@'), domain @ (Token::Atom(_) | Token::Literal(_))] => (local, Some(domain)),
        [] => return Err("an empty address".to_owned()),
        _ => return Err(format!("bad address {:?}", shown())),
    };
    let local = match local {
        Token::Atom(a) => a.clone(),
        // A quoted local part that needs no quotes is written without them: the same mailbox.
        Token::Quoted(q) if is_dot_atom(q) => q.clone(),
        Token::Quoted(q) => {
            let mut s = String::from('"');
            for c in q.chars() {
                if c == '"' || c == '\\' {
                    s.push('\\');
                }
                s.push(c);
            }
            s.push('"');
            s
        }
        _ => return Err(format!("bad address {:?}", shown())),
    };
    let domain = match domain {
        Some(Token::Atom(d) | Token::Literal(d)) => d.as_str(),
        _ => default_domain,
    };
    let text = format!("{local}@{domain}");
    let address = Address::parse(&text, true).map_err(|e| format!("bad address {text:?}: {e}"))?;
    Ok(address.to_string())
}

/// `atext *("." atext)`: a local part that needs no quotes.
fn is_dot_atom(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(|atom| !atom.is_empty() && atom.chars().all(|c| c != '.' && is_atext(c)))
}

fn render_token(t: &Token) -> String {
    match t {
        Token::Atom(s) | Token::Literal(s) => s.clone(),
        Token::Quoted(s) => format!("{s:?}"),
        Token::Special(c) => c.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_lists_give_their_mailboxes() {
        let cases: &[(&str, &[&str])] = &[
            ("a@example.test", &["a@example.test"]),
            (" a@example.test , b@example.test ", &["a@example.test", "b@example.test"]),
            ("Alice <a@example.test>", &["a@example.test"]),
            ("\"Doe, John\" <j@example.test>, b@x.test", &["j@example.test", "b@x.test"]),
            ("<a@example.test>", &["a@example.test"]),
            ("Dr. J. Doe <j@example.test>", &["j@example.test"]),
            ("a@example.test (Alice, the first)", &["a@example.test"]),
            ("(comment (nested)) a@example.test", &["a@example.test"]),
            ("\"john doe\"@example.test", &["\"john doe\"@example.test"]),
            ("\"john\"@example.test", &["john@example.test"]),
            ("\"a\\\"b\"@example.test", &["\"a\\\"b\"@example.test"]),
            ("friends: a@x.test, Bob <b@x.test>;, c@x.test", &["a@x.test", "b@x.test", "c@x.test"]),
            ("undisclosed-recipients:;", &[]),
            ("a@x.test,,b@x.test,", &["a@x.test", "b@x.test"]),
            ("<@relay.test,@r2.test:a@x.test>", &["a@x.test"]),
            ("root", &["root@mx.test"]),
            ("Root <root>", &["root@mx.test"]),
            ("a@[127.0.0.1]", &["a@[127.0.0.1]"]),
            ("Jörg <jörg@exämple.test>", &["jörg@exämple.test"]),
            ("a@x.test\r\n\t, b@x.test", &["a@x.test", "b@x.test"]),
            ("", &[]),
        ];
        for (value, expected) in cases {
            assert_eq!(
                parse_address_list(value, "mx.test"),
                Ok(expected.iter().map(|e| e.to_string()).collect()),
                "{value:?}"
            );
        }
    }

    #[test]
    fn bad_address_lists_are_refused() {
        for value in [
            "john doe@example.test",
            "a@",
            "@example.test",
            "<a@example.test",
            "a@example.test>",
            "Alice <a@example.test> junk",
            "\"unterminated@example.test",
            "(unterminated a@example.test",
            "g: a@x.test",
            "a@x.test;",
            "g: h: a@x.test;;",
            "a@exa mple.test",
            "a@-bad-.test",
            "a\\b@x.test",
            "<<a@x.test>>",
        ] {
            assert!(parse_address_list(value, "mx.test").is_err(), "{value:?}");
        }
    }

    #[test]
    fn a_header_section_is_split_into_unfolded_fields() {
        let m = b"To: a@x.test,\r\n b@x.test\r\nSubject : s\r\nBcc: c@x.test\r\n\r\nbody: not a field\r\n";
        let s = Section::parse(m).unwrap();
        let names: Vec<_> = s.fields.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["To", "Subject", "Bcc"]);
        assert_eq!(s.fields[0].value, " a@x.test, b@x.test");
        assert_eq!(&m[s.fields[2].range.clone()], b"Bcc: c@x.test\r\n");
        assert_eq!(&m[s.body_start..], b"body: not a field\r\n");
        assert_eq!(s.values("subject").collect::<Vec<_>>(), [" s"]);
        assert_eq!(Section::parse(b"Subject: s\r\n").unwrap().body_start, 12);
        for bad in
            [&b" folded first\r\n\r\n"[..], b"no colon\r\n\r\n", b": empty name\r\n\r\n", b"From a@x Mon\r\n\r\n"]
        {
            assert!(Section::parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_lenient_end_stops_at_the_first_line_that_is_not_a_field() {
        assert_eq!(lenient_end(b"To: a\r\n\r\nbody"), (9, true));
        assert_eq!(lenient_end(b"To: a\r\n folded\r\nhello there\r\n"), (16, false));
        assert_eq!(lenient_end(b"hello\r\n"), (0, false));
        assert_eq!(lenient_end(b" hello\r\n"), (0, false));
        assert_eq!(lenient_end(b"To: a\r\n"), (7, false));
    }
}
