//! SMTP commands (RFC 5321 4.1, with EHLO extensions: CHUNKING, STARTTLS, AUTH): parsing a command line into a
//! typed [`Command`], the [`CommandError`] that says which reply refuses a bad one, and the canonical rendering
//! the SMTP client sends.
//!
//! The parser is strict where leniency would be dangerous (NUL, CR and LF inside a line, address syntax, unknown
//! parameters) and lenient where clients commonly stray harmlessly: verbs in any case, spaces after `FROM:` and
//! `TO:`, runs of spaces between parameters, trailing spaces.

use crate::address::{Address, AddressError, AddressRole, ReversePath, parse_path_prefix};
use crate::params::{MailParams, RcptParams, split_params};
use crate::reply::Reply;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `EHLO domain-or-literal`.
    Ehlo(String),
    /// `HELO domain`.
    Helo(String),
    /// `MAIL FROM:<path> [params]`.
    Mail {
        /// The reverse path.
        from: ReversePath,
        /// ESMTP parameters.
        params: MailParams,
    },
    /// `RCPT TO:<path> [params]`.
    Rcpt {
        /// The recipient (possibly `<postmaster>`, see [`Address::is_postmaster_only`]).
        to: Address,
        /// ESMTP parameters.
        params: RcptParams,
    },
    /// `DATA`.
    Data,
    /// `BDAT size [LAST]` (RFC 3030).
    Bdat {
        /// Octets of the chunk that follows the command line.
        size: u64,
        /// The last chunk of the message.
        last: bool,
    },
    /// `RSET`.
    Rset,
    /// `NOOP` (an argument is allowed and ignored).
    Noop,
    /// `QUIT`.
    Quit,
    /// `VRFY string`.
    Vrfy(String),
    /// `EXPN string`.
    Expn(String),
    /// `HELP` (an argument is allowed and ignored).
    Help,
    /// `STARTTLS` (RFC 3207).
    StartTls,
    /// `AUTH mechanism [initial-response]` (RFC 4954).
    Auth {
        /// The SASL mechanism, upper-cased.
        mechanism: String,
        /// The base64 initial response (`=` for an empty one), undecoded.
        initial: Option<String>,
    },
}

impl Command {
    /// The verb, upper-case, for logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Ehlo(_) => "EHLO",
            Command::Helo(_) => "HELO",
            Command::Mail { .. } => "MAIL",
            Command::Rcpt { .. } => "RCPT",
            Command::Data => "DATA",
            Command::Bdat { .. } => "BDAT",
            Command::Rset => "RSET",
            Command::Noop => "NOOP",
            Command::Quit => "QUIT",
            Command::Vrfy(_) => "VRFY",
            Command::Expn(_) => "EXPN",
            Command::Help => "HELP",
            Command::StartTls => "STARTTLS",
            Command::Auth { .. } => "AUTH",
        }
    }

    /// The canonical wire form, CRLF included: upper-case verbs, no space after the colon, parameters in a
    /// fixed order. `parse_command` of it (without the CRLF) gives the command back.
    pub fn render(&self) -> String {
        let mut out = String::from(self.verb());
        match self {
            Command::Ehlo(arg) | Command::Helo(arg) | Command::Vrfy(arg) | Command::Expn(arg) => {
                out.push(' ');
                out.push_str(arg);
            }
            Command::Mail { from, params } => {
                out.push_str(&format!(" FROM:{from}"));
                params.render_into(&mut out);
            }
            Command::Rcpt { to, params } => {
                out.push_str(&format!(" TO:<{to}>"));
                params.render_into(&mut out);
            }
            Command::Bdat { size, last } => {
                out.push_str(&format!(" {size}"));
                if *last {
                    out.push_str(" LAST");
                }
            }
            Command::Auth { mechanism, initial } => {
                out.push(' ');
                out.push_str(mechanism);
                if let Some(initial) = initial {
                    out.push(' ');
                    out.push_str(initial);
                }
            }
            Command::Data | Command::Rset | Command::Noop | Command::Quit | Command::Help | Command::StartTls => {}
        }
        out.push_str("\r\n");
        out
    }
}

/// A command line that cannot be accepted. [`CommandError::reply`] is the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not a verb sluice knows: `500 5.5.1`.
    #[error("command unrecognized")]
    Unrecognized,
    /// NUL, CR or LF inside the line: `500 5.5.2`. Only CRLF ends a line, and nothing is guessed about a line
    /// that contains a stray one.
    #[error("NUL, CR or LF inside a command line")]
    InvalidCharacter,
    /// The arguments do not follow the command's syntax: `501 5.5.4`.
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    /// The MAIL FROM path: see [`AddressError::reply`].
    #[error("bad sender address")]
    Sender(#[source] AddressError),
    /// The RCPT TO path: see [`AddressError::reply`].
    #[error("bad recipient address")]
    Recipient(#[source] AddressError),
    /// A parameter sluice does not implement: `555 5.5.4` (RFC 5321 4.1.1.11).
    #[error("unsupported parameter {0}")]
    UnknownParameter(String),
    /// The same parameter twice: `501 5.5.4`.
    #[error("duplicate parameter {0}")]
    DuplicateParameter(String),
    /// A known parameter with a bad value: `501 5.5.4`.
    #[error("invalid {keyword} parameter: {reason}")]
    InvalidParameter {
        /// The parameter.
        keyword: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An EHLO or HELO argument that is neither a domain name nor an address literal: `501 5.5.2`.
    #[error("bad EHLO/HELO argument")]
    HeloName,
    /// Non-ASCII in a VRFY or EXPN argument without SMTPUTF8: `553 5.6.7`.
    #[error("non-ASCII argument without SMTPUTF8")]
    NonAscii,
}

impl CommandError {
    /// The reply that refuses the command.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unrecognized => Reply::new(500, "5.5.1", "Command unrecognized"),
            CommandError::InvalidCharacter => {
                Reply::new(500, "5.5.2", "Syntax error: NUL, bare CR or bare LF in command line")
            }
            CommandError::Syntax(what) => Reply::new(501, "5.5.4", format!("Syntax error: {what}")),
            CommandError::Sender(e) => e.reply(AddressRole::Sender),
            CommandError::Recipient(e) => e.reply(AddressRole::Recipient),
            CommandError::UnknownParameter(keyword) => {
                Reply::new(555, "5.5.4", format!("Unsupported parameter {}", shorten(keyword)))
            }
            CommandError::DuplicateParameter(keyword) => {
                Reply::new(501, "5.5.4", format!("Duplicate parameter {}", shorten(keyword)))
            }
            CommandError::InvalidParameter { keyword, reason } => {
                Reply::new(501, "5.5.4", format!("Invalid {keyword} parameter: {reason}"))
            }
            CommandError::HeloName => {
                Reply::new(501, "5.5.2", "Syntax error: EHLO and HELO take a domain name or an address literal")
            }
            CommandError::NonAscii => Reply::new(553, "5.6.7", "Non-ASCII argument requires SMTPUTF8"),
        }
    }
}

/// A client-chosen keyword, cut so that a reply line stays short.
fn shorten(keyword: &str) -> &str {
    keyword.get(..keyword.len().min(64)).unwrap_or(keyword)
}

/// Parses one command line, given without its CRLF.
///
/// `smtputf8_allowed` says whether UTF-8 may appear in addresses:
/// - for MAIL, pass whether the connector offers SMTPUTF8; a UTF-8 reverse path is then accepted only when the
///   same command carries the `SMTPUTF8` parameter (RFC 6531 3.4);
/// - for RCPT, pass whether the transaction's MAIL carried `SMTPUTF8` (and the connector offers it);
/// - for VRFY and EXPN, it allows a UTF-8 argument.
///
/// Whether the other parameters belong to advertised extensions is left to the session.
pub fn parse_command(line: &[u8], smtputf8_allowed: bool) -> Result<Command, CommandError> {
    if line.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(CommandError::InvalidCharacter);
    }
    let line = trim_end(line);
    let (verb, rest) = match line.iter().position(|b| *b == b' ') {
        Some(space) => (&line[..space], trim_start(&line[space..])),
        None => (line, &line[line.len()..]),
    };
    let is = |name: &str| verb.eq_ignore_ascii_case(name.as_bytes());
    if is("EHLO") || is("HELO") {
        let name = parse_helo_name(rest)?;
        return Ok(if is("EHLO") { Command::Ehlo(name) } else { Command::Helo(name) });
    }
    if is("MAIL") {
        return parse_mail(rest, smtputf8_allowed);
    }
    if is("RCPT") {
        return parse_rcpt(rest, smtputf8_allowed);
    }
    if is("VRFY") || is("EXPN") {
        let arg = parse_free_text(rest, smtputf8_allowed)?;
        return Ok(if is("VRFY") { Command::Vrfy(arg) } else { Command::Expn(arg) });
    }
    if is("BDAT") {
        return parse_bdat(rest);
    }
    if is("AUTH") {
        return parse_auth(rest);
    }
    // NOOP and HELP may carry an argument (RFC 5321 4.1.1.9, 4.1.1.8), which is ignored.
    if is("NOOP") {
        return Ok(Command::Noop);
    }
    if is("HELP") {
        return Ok(Command::Help);
    }
    let bare =
        [("DATA", Command::Data), ("RSET", Command::Rset), ("QUIT", Command::Quit), ("STARTTLS", Command::StartTls)];
    for (name, command) in bare {
        if is(name) {
            if !rest.is_empty() {
                return Err(CommandError::Syntax("this command takes no arguments"));
            }
            return Ok(command);
        }
    }
    Err(CommandError::Unrecognized)
}

fn trim_end(mut s: &[u8]) -> &[u8] {
    while let [head @ .., b' ' | b'\t'] = s {
        s = head;
    }
    s
}

fn trim_start(mut s: &[u8]) -> &[u8] {
    while let [b' ', tail @ ..] = s {
        s = tail;
    }
    s
}

/// The EHLO/HELO argument: one token of printable ASCII. Its form (domain or address literal) is not checked
/// further here: many real clients send names that are not quite domains, and RFC 5321 4.1.4 forbids refusing
/// mail merely because the name does not verify. A session that wants to be strict can use
/// [`crate::validate_domain`].
/// The argument of EHLO or HELO: a domain name (RFC 5321 syntax, a final dot allowed) or an address literal
/// of an IPv4 or IPv6 address, nothing else.
fn parse_helo_name(rest: &[u8]) -> Result<String, CommandError> {
    if rest.is_empty() || !rest.iter().all(|b| (0x21..=0x7e).contains(b)) {
        return Err(CommandError::Syntax("EHLO and HELO take one domain name or address literal"));
    }
    let name = String::from_utf8_lossy(rest).into_owned();
    let valid = match name.strip_prefix('[') {
        Some(literal) => literal.strip_suffix(']').is_some_and(|inner| crate::address::parse_literal(inner).is_some()),
        None => crate::validate_domain(name.strip_suffix('.').unwrap_or(&name), false).is_ok(),
    };
    if !valid {
        return Err(CommandError::HeloName);
    }
    Ok(name)
}

/// The text after `FROM:`/`TO:`: the keyword, in any case, then optional spaces.
fn strip_keyword<'a>(rest: &'a [u8], keyword: &str) -> Option<&'a [u8]> {
    let head = rest.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword.as_bytes()).then(|| trim_start(&rest[keyword.len()..]))
}

/// What follows the path: nothing, or a space and the parameters.
fn after_path(tail: &[u8]) -> Result<&[u8], CommandError> {
    match tail.first() {
        None => Ok(tail),
        Some(b' ') => Ok(trim_start(tail)),
        Some(_) => Err(CommandError::Syntax("unexpected text after the address")),
    }
}

fn parse_mail(rest: &[u8], smtputf8_allowed: bool) -> Result<Command, CommandError> {
    let rest = strip_keyword(rest, "FROM:").ok_or(CommandError::Syntax("expected MAIL FROM:<address>"))?;
    let (from, consumed) =
        parse_path_prefix(rest, AddressRole::Sender, smtputf8_allowed).map_err(CommandError::Sender)?;
    let params = MailParams::parse(&split_params(after_path(&rest[consumed..])?)?)?;
    // RFC 6531 3.4: a UTF-8 reverse path needs the SMTPUTF8 parameter on this very command.
    if from.address().is_some_and(|a| !a.is_ascii()) && !params.smtputf8 {
        return Err(CommandError::Sender(AddressError::NonAscii));
    }
    Ok(Command::Mail { from, params })
}

fn parse_rcpt(rest: &[u8], smtputf8_allowed: bool) -> Result<Command, CommandError> {
    let rest = strip_keyword(rest, "TO:").ok_or(CommandError::Syntax("expected RCPT TO:<address>"))?;
    let (path, consumed) =
        parse_path_prefix(rest, AddressRole::Recipient, smtputf8_allowed).map_err(CommandError::Recipient)?;
    let params = RcptParams::parse(&split_params(after_path(&rest[consumed..])?)?)?;
    match path {
        ReversePath::Address(to) => Ok(Command::Rcpt { to, params }),
        // parse_path_prefix refuses <> for a recipient; kept total rather than unreachable.
        ReversePath::Null => Err(CommandError::Recipient(AddressError::NullNotAllowed)),
    }
}

/// A VRFY/EXPN argument: any non-empty text, UTF-8 only with SMTPUTF8.
fn parse_free_text(rest: &[u8], smtputf8_allowed: bool) -> Result<String, CommandError> {
    if rest.is_empty() {
        return Err(CommandError::Syntax("an argument is required"));
    }
    if !rest.is_ascii() && !smtputf8_allowed {
        return Err(CommandError::NonAscii);
    }
    let text = std::str::from_utf8(rest).map_err(|_| CommandError::Syntax("the argument is not UTF-8"))?;
    if text.chars().any(char::is_control) {
        return Err(CommandError::Syntax("control character in the argument"));
    }
    Ok(text.to_string())
}

/// `BDAT chunk-size [LAST]`; `chunk-size = 1*DIGIT` (at most 20, and it must fit in 64 bits).
fn parse_bdat(rest: &[u8]) -> Result<Command, CommandError> {
    let mut words = rest.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let size = words
        .next()
        .filter(|w| w.len() <= 20 && w.iter().all(u8::is_ascii_digit))
        .and_then(|w| std::str::from_utf8(w).ok())
        .and_then(|w| w.parse::<u64>().ok())
        .ok_or(CommandError::Syntax("expected BDAT <size> [LAST]"))?;
    let last = match words.next() {
        None => false,
        Some(word) if word.eq_ignore_ascii_case(b"LAST") => true,
        Some(_) => return Err(CommandError::Syntax("expected BDAT <size> [LAST]")),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax("expected BDAT <size> [LAST]"));
    }
    Ok(Command::Bdat { size, last })
}

/// `AUTH mechanism [initial-response]`: a SASL mechanism name (RFC 4422 3.1: up to 20 of `A-Z 0-9 - _`, taken
/// in any case) and a base64 initial response or `=` (RFC 4954 4).
fn parse_auth(rest: &[u8]) -> Result<Command, CommandError> {
    let mut words = rest.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let mechanism = words
        .next()
        .filter(|m| m.len() <= 20 && m.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_')))
        .ok_or(CommandError::Syntax("expected AUTH <mechanism> [initial-response]"))?;
    let initial = match words.next() {
        None => None,
        Some(word) if word.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=')) => {
            Some(String::from_utf8_lossy(word).into_owned())
        }
        Some(_) => return Err(CommandError::Syntax("the initial response must be base64")),
    };
    if words.next().is_some() {
        return Err(CommandError::Syntax("expected AUTH <mechanism> [initial-response]"));
    }
    Ok(Command::Auth { mechanism: String::from_utf8_lossy(mechanism).to_ascii_uppercase(), initial })
}

#[cfg(test)]
mod tests;
