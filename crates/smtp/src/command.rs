//! SMTP commands and their parameters.

use crate::address::{Address, PathError, ReversePath, parse_path};
use crate::reply::Reply;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Ehlo(String),
    Helo(String),
    Mail { from: ReversePath, params: MailParams },
    Rcpt { to: Address, params: RcptParams },
    Data,
    Bdat { size: u64, last: bool },
    Rset,
    Noop,
    Quit,
    Vrfy(String),
    Expn(String),
    Help,
    StartTls,
    Auth { mechanism: String, initial: Option<String> },
}

/// `RET=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ret {
    Full,
    Hdrs,
}

impl std::fmt::Display for Ret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        })
    }
}

/// MAIL FROM parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailParams {
    pub size: Option<u64>,
    /// `BODY=` upper-cased (`7BIT`, `8BITMIME`, `BINARYMIME`).
    pub body: Option<String>,
    pub smtputf8: bool,
    pub ret: Option<Ret>,
    /// `ENVID=`, xtext-decoded.
    pub envid: Option<String>,
    pub auth: Option<String>,
}

impl MailParams {
    /// The body was declared 8-bit.
    pub fn body_8bit(&self) -> bool {
        matches!(self.body.as_deref(), Some("8BITMIME" | "BINARYMIME"))
    }
}

/// RCPT TO parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RcptParams {
    /// `NOTIFY=` keywords, upper-cased.
    pub notify: Option<Vec<String>>,
    /// `ORCPT=` as `(addr-type, xtext-decoded address)`.
    pub orcpt: Option<(String, String)>,
}

impl RcptParams {
    /// `NOTIFY=` as stored: `SUCCESS,FAILURE`.
    pub fn notify_string(&self) -> Option<String> {
        self.notify.as_ref().map(|n| n.join(","))
    }
    /// `ORCPT=` as stored: `rfc822;user@example.com`.
    pub fn orcpt_string(&self) -> Option<String> {
        self.orcpt.as_ref().map(|(t, a)| format!("{t};{a}"))
    }
}

/// A command that cannot be accepted, with the reply that says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("command unrecognized")]
    Unknown,
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    #[error("bad sender address")]
    BadSender,
    #[error("bad recipient address")]
    BadRecipient,
    #[error("address too long")]
    TooLong,
    #[error("non-ASCII address without SMTPUTF8")]
    NonAscii,
    #[error("unknown parameter {0}")]
    UnknownParam(String),
    #[error("invalid command characters")]
    BadCharacters,
}

impl CommandError {
    /// The reply for this error.
    pub fn reply(&self) -> Reply {
        match self {
            CommandError::Unknown => Reply::new(500, "5.5.1", "Command unrecognized"),
            CommandError::Syntax(what) => Reply::new(501, "5.5.4", &format!("Syntax error: {what}")),
            CommandError::BadSender => Reply::new(501, "5.1.7", "Bad sender address syntax"),
            CommandError::BadRecipient => Reply::new(501, "5.1.3", "Bad recipient address syntax"),
            CommandError::TooLong => Reply::new(501, "5.1.3", "Address too long"),
            CommandError::NonAscii => Reply::new(553, "5.6.7", "Non-ASCII address requires SMTPUTF8"),
            CommandError::UnknownParam(p) => Reply::new(555, "5.5.4", &format!("Unsupported parameter {p}")),
            CommandError::BadCharacters => Reply::new(500, "5.5.2", "Invalid characters in command"),
        }
    }
}

/// Parses one command line (without its CRLF). `smtputf8_allowed` permits 8-bit addresses in RCPT (the
/// transaction's MAIL had SMTPUTF8); MAIL permits them when its own parameters include SMTPUTF8.
pub fn parse_command(line: &[u8], smtputf8_allowed: bool) -> Result<Command, CommandError> {
    if line.iter().any(|b| matches!(b, 0 | b'\r' | b'\n')) {
        return Err(CommandError::BadCharacters);
    }
    let line = std::str::from_utf8(line).map_err(|_| CommandError::BadCharacters)?;
    let (verb, arg) = match line.find(' ') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, ""),
    };
    let no_arg = |c: Command| if arg.trim().is_empty() { Ok(c) } else { Err(CommandError::Syntax("no argument expected")) };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" | "HELO" => {
            let name = arg.trim();
            if name.is_empty() || name.contains(' ') {
                return Err(CommandError::Syntax("EHLO and HELO take one domain name"));
            }
            let name = name.to_owned();
            Ok(if verb.eq_ignore_ascii_case("EHLO") { Command::Ehlo(name) } else { Command::Helo(name) })
        }
        "MAIL" => parse_mail(arg),
        "RCPT" => parse_rcpt(arg, smtputf8_allowed),
        "DATA" => no_arg(Command::Data),
        "RSET" => no_arg(Command::Rset),
        "QUIT" => no_arg(Command::Quit),
        "STARTTLS" => no_arg(Command::StartTls),
        "NOOP" => Ok(Command::Noop),
        "HELP" => Ok(Command::Help),
        "VRFY" => Ok(Command::Vrfy(arg.to_owned())),
        "EXPN" => Ok(Command::Expn(arg.to_owned())),
        "BDAT" => {
            let mut parts = arg.split(' ');
            let size = parts.next().and_then(|s| s.parse().ok()).ok_or(CommandError::Syntax("BDAT needs a size"))?;
            let last = match parts.next() {
                None => false,
                Some(l) if l.eq_ignore_ascii_case("LAST") => true,
                Some(_) => return Err(CommandError::Syntax("BDAT size [LAST]")),
            };
            Ok(Command::Bdat { size, last })
        }
        "AUTH" => {
            let mut parts = arg.split(' ');
            let mechanism = parts.next().filter(|m| !m.is_empty()).ok_or(CommandError::Syntax("AUTH mechanism"))?;
            Ok(Command::Auth { mechanism: mechanism.to_ascii_uppercase(), initial: parts.next().map(str::to_owned) })
        }
        _ => Err(CommandError::Unknown),
    }
}

/// Strips `keyword:` (case-insensitive), tolerating one space after the colon.
fn strip_keyword<'a>(arg: &'a str, keyword: &str) -> Option<&'a str> {
    let head = arg.get(..keyword.len())?;
    head.eq_ignore_ascii_case(keyword).then(|| &arg[keyword.len()..]).map(|r| r.strip_prefix(' ').unwrap_or(r))
}

fn params(rest: &str) -> Result<Vec<(String, Option<String>)>, CommandError> {
    let mut out: Vec<(String, Option<String>)> = Vec::new();
    for p in rest.split(' ').filter(|p| !p.is_empty()) {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.to_ascii_uppercase(), Some(v.to_owned())),
            None => (p.to_ascii_uppercase(), None),
        };
        if out.iter().any(|(o, _)| *o == k) {
            return Err(CommandError::Syntax("duplicate parameter"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn path_error(e: PathError, sender: bool) -> CommandError {
    match e {
        PathError::TooLong => CommandError::TooLong,
        PathError::NonAscii => CommandError::NonAscii,
        PathError::Syntax if sender => CommandError::BadSender,
        PathError::Syntax => CommandError::BadRecipient,
    }
}

fn parse_mail(arg: &str) -> Result<Command, CommandError> {
    let rest = strip_keyword(arg, "FROM:").ok_or(CommandError::Syntax("MAIL FROM:<address>"))?;
    let utf8 = rest.split(' ').skip(1).any(|p| p.eq_ignore_ascii_case("SMTPUTF8"));
    let (addr, rest) = parse_path(rest, utf8).map_err(|e| path_error(e, true))?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(CommandError::Syntax("junk after the address"));
    }
    let from = match addr {
        None => ReversePath::Null,
        Some(a) if a.is_postmaster_only() => return Err(CommandError::BadSender),
        Some(a) => ReversePath::Address(a),
    };
    let mut p = MailParams::default();
    for (k, v) in params(rest)? {
        match (k.as_str(), v) {
            ("SIZE", Some(v)) => p.size = Some(v.parse().map_err(|_| CommandError::Syntax("SIZE=<number>"))?),
            ("BODY", Some(v)) => {
                let v = v.to_ascii_uppercase();
                if !matches!(v.as_str(), "7BIT" | "8BITMIME" | "BINARYMIME") {
                    return Err(CommandError::Syntax("BODY=7BIT|8BITMIME"));
                }
                p.body = Some(v);
            }
            ("SMTPUTF8", None) => p.smtputf8 = true,
            ("RET", Some(v)) => {
                p.ret = Some(match v.to_ascii_uppercase().as_str() {
                    "FULL" => Ret::Full,
                    "HDRS" => Ret::Hdrs,
                    _ => return Err(CommandError::Syntax("RET=FULL|HDRS")),
                })
            }
            ("ENVID", Some(v)) => p.envid = Some(xtext_decode(&v)?),
            ("AUTH", Some(v)) => p.auth = Some(v),
            (k, _) => return Err(CommandError::UnknownParam(k.to_owned())),
        }
    }
    Ok(Command::Mail { from, params: p })
}

fn parse_rcpt(arg: &str, utf8: bool) -> Result<Command, CommandError> {
    let rest = strip_keyword(arg, "TO:").ok_or(CommandError::Syntax("RCPT TO:<address>"))?;
    let (addr, rest) = parse_path(rest, utf8).map_err(|e| path_error(e, false))?;
    if !rest.is_empty() && !rest.starts_with(' ') {
        return Err(CommandError::Syntax("junk after the address"));
    }
    let to = addr.ok_or(CommandError::BadRecipient)?;
    let mut p = RcptParams::default();
    for (k, v) in params(rest)? {
        match (k.as_str(), v) {
            ("NOTIFY", Some(v)) => {
                let list: Vec<String> = v.split(',').map(|s| s.to_ascii_uppercase()).collect();
                let valid = list.iter().all(|n| matches!(n.as_str(), "SUCCESS" | "FAILURE" | "DELAY" | "NEVER"));
                if !valid || (list.len() > 1 && list.iter().any(|n| n == "NEVER")) {
                    return Err(CommandError::Syntax("NOTIFY=NEVER or SUCCESS,FAILURE,DELAY"));
                }
                p.notify = Some(list);
            }
            ("ORCPT", Some(v)) => {
                let (t, a) = v.split_once(';').ok_or(CommandError::Syntax("ORCPT=addr-type;address"))?;
                p.orcpt = Some((t.to_owned(), xtext_decode(a)?));
            }
            (k, _) => return Err(CommandError::UnknownParam(k.to_owned())),
        }
    }
    Ok(Command::Rcpt { to, params: p })
}

/// RFC 3461 xtext: `+XX` hex escapes.
fn xtext_decode(s: &str) -> Result<String, CommandError> {
    let bad = CommandError::Syntax("bad xtext");
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'+' {
            let hex = s.get(i + 1..i + 3).ok_or(bad.clone())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad.clone())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_command(b"ehlo client.test", false).unwrap(), Command::Ehlo("client.test".into()));
        assert_eq!(parse_command(b"QUIT", false).unwrap(), Command::Quit);
        assert_eq!(parse_command(b"data", false).unwrap(), Command::Data);
        let Command::Mail { from: ReversePath::Address(a), params } =
            parse_command(b"MAIL FROM:<a@b.test> SIZE=1000 BODY=8BITMIME RET=HDRS ENVID=x+2By", false).unwrap()
        else {
            panic!()
        };
        assert_eq!(a.to_string(), "a@b.test");
        assert_eq!(params.size, Some(1000));
        assert!(params.body_8bit());
        assert_eq!(params.envid.as_deref(), Some("x+y"));
        assert!(matches!(parse_command(b"MAIL FROM: <>", false).unwrap(), Command::Mail { from: ReversePath::Null, .. }));
        let Command::Rcpt { params, .. } =
            parse_command(b"RCPT TO:<c@d.test> NOTIFY=success,failure ORCPT=rfc822;c+40d.test", false).unwrap()
        else {
            panic!()
        };
        assert_eq!(params.notify_string().as_deref(), Some("SUCCESS,FAILURE"));
        assert_eq!(params.orcpt_string().as_deref(), Some("rfc822;c@d.test"));
        assert_eq!(parse_command(b"BDAT 100 LAST", false).unwrap(), Command::Bdat { size: 100, last: true });
    }

    #[test]
    fn errors_have_the_right_codes() {
        let code = |l: &[u8]| parse_command(l, false).unwrap_err().reply();
        assert_eq!(code(b"FOO").code, 500);
        assert_eq!(code(b"MAIL FROM:<a@b.test> FOO=1").code, 555);
        assert_eq!(code(b"MAIL FROM:<a@b.test> SIZE=1 SIZE=2").code, 501);
        assert_eq!(code(b"MAIL FROM:a@b.test").code, 501);
        assert_eq!(code(b"RCPT TO:<x@y.test.>").code, 501);
        assert_eq!(code(b"RCPT TO:<\xc3\xbc@y.test>").code, 553);
        assert_eq!(code(b"NOOP\rMAIL").code, 500);
        assert_eq!(code(b"RCPT TO:<x@y.test>junk").code, 501);
        assert_eq!(code(b"RCPT TO:<x@y.test> NOTIFY=NEVER,SUCCESS").code, 501);
        assert!(parse_command("MAIL FROM:<ü@y.test> SMTPUTF8".as_bytes(), false).is_ok());
        assert!(parse_command("RCPT TO:<ü@y.test>".as_bytes(), true).is_ok());
    }
}
