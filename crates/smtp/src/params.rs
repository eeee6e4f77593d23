//! The ESMTP parameters of MAIL FROM and RCPT TO that sluice understands: `SIZE` (RFC 1870), `BODY` (RFC 6152,
//! RFC 3030), `SMTPUTF8` (RFC 6531), `RET`, `ENVID`, `NOTIFY`, `ORCPT` (RFC 3461) and `AUTH` (RFC 4954).
//!
//! Parsing checks syntax only: whether the connector advertised the extension a parameter belongs to is the
//! session's decision. Any other parameter is refused with `555 5.5.4` (RFC 5321 4.1.1.11), a repeated one with
//! `501 5.5.4`.

use std::fmt;
use std::str::FromStr;

use crate::command::CommandError;
use crate::xtext::XText;

/// Longest `ENVID` value (RFC 3461 4.4: 100 characters).
pub const MAX_ENVID: usize = 100;
/// Longest `ORCPT` value (RFC 3461 4.2: 500 characters).
pub const MAX_ORCPT: usize = 500;

/// `BODY=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyType {
    /// `7BIT`.
    SevenBit,
    /// `8BITMIME` (RFC 6152).
    EightBitMime,
    /// `BINARYMIME` (RFC 3030; BDAT only).
    BinaryMime,
}

impl BodyType {
    /// The keyword as written on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            BodyType::SevenBit => "7BIT",
            BodyType::EightBitMime => "8BITMIME",
            BodyType::BinaryMime => "BINARYMIME",
        }
    }
}

impl fmt::Display for BodyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `RET=`: what a failure DSN should return of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ret {
    /// `FULL`: the whole message.
    Full,
    /// `HDRS`: its header only.
    Hdrs,
}

impl fmt::Display for Ret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Ret::Full => "FULL",
            Ret::Hdrs => "HDRS",
        })
    }
}

/// The wire value, in any case (as a stored envelope keeps it, for the client to pass on).
impl FromStr for Ret {
    type Err = CommandError;

    fn from_str(value: &str) -> Result<Ret, CommandError> {
        match value.to_ascii_uppercase().as_str() {
            "FULL" => Ok(Ret::Full),
            "HDRS" => Ok(Ret::Hdrs),
            _ => Err(invalid("RET", "expected FULL or HDRS")),
        }
    }
}

/// MAIL FROM parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MailParams {
    /// `SIZE=`: the client's estimate. A value of more than 20 digits is a syntax error; one of up to 20 digits
    /// that does not fit is kept as `u64::MAX`, so that it fails the size limit (552) rather than the syntax.
    pub size: Option<u64>,
    /// `BODY=`.
    pub body: Option<BodyType>,
    /// `SMTPUTF8`.
    pub smtputf8: bool,
    /// `RET=`.
    pub ret: Option<Ret>,
    /// `ENVID=`.
    pub envid: Option<XText>,
    /// `AUTH=`: the authenticated submitter claimed by a relaying client (`<>` when unknown), kept as given.
    pub auth: Option<XText>,
}

impl MailParams {
    /// The body was declared 8-bit (`8BITMIME` or `BINARYMIME`).
    pub fn body_8bit(&self) -> bool {
        matches!(self.body, Some(BodyType::EightBitMime | BodyType::BinaryMime))
    }

    /// Appends ` KEY=value` for each parameter, in a fixed order.
    pub(crate) fn render_into(&self, out: &mut String) {
        if let Some(size) = self.size {
            out.push_str(&format!(" SIZE={size}"));
        }
        if let Some(body) = self.body {
            out.push_str(&format!(" BODY={body}"));
        }
        if self.smtputf8 {
            out.push_str(" SMTPUTF8");
        }
        if let Some(ret) = self.ret {
            out.push_str(&format!(" RET={ret}"));
        }
        if let Some(envid) = &self.envid {
            out.push_str(&format!(" ENVID={envid}"));
        }
        if let Some(auth) = &self.auth {
            out.push_str(&format!(" AUTH={auth}"));
        }
    }

    /// Parses the parameters after the MAIL FROM path.
    pub(crate) fn parse(params: &[(String, Option<&str>)]) -> Result<MailParams, CommandError> {
        let mut out = MailParams::default();
        for (keyword, value) in params {
            match keyword.as_str() {
                "SIZE" => out.size = Some(parse_size(value_of("SIZE", *value)?)?),
                "BODY" => {
                    let value = value_of("BODY", *value)?;
                    out.body = Some(match value.to_ascii_uppercase().as_str() {
                        "7BIT" => BodyType::SevenBit,
                        "8BITMIME" => BodyType::EightBitMime,
                        "BINARYMIME" => BodyType::BinaryMime,
                        _ => return Err(invalid("BODY", "expected 7BIT, 8BITMIME or BINARYMIME")),
                    });
                }
                "SMTPUTF8" => {
                    if value.is_some() {
                        return Err(invalid("SMTPUTF8", "takes no value"));
                    }
                    out.smtputf8 = true;
                }
                "RET" => out.ret = Some(value_of("RET", *value)?.parse()?),
                "ENVID" => {
                    let value = value_of("ENVID", *value)?;
                    if value.len() > MAX_ENVID {
                        return Err(invalid("ENVID", "longer than 100 characters"));
                    }
                    out.envid = Some(XText::decode(value).map_err(|_| invalid("ENVID", "bad xtext"))?);
                }
                "AUTH" => {
                    let value = value_of("AUTH", *value)?;
                    out.auth = Some(XText::decode(value).map_err(|_| invalid("AUTH", "bad xtext"))?);
                }
                _ => return Err(CommandError::UnknownParameter(keyword.clone())),
            }
        }
        Ok(out)
    }
}

/// The parameters as they follow the path on the wire: ` KEY=value` each, in the order [`Command::render`]
/// writes them.
///
/// [`Command::render`]: crate::Command::render
impl fmt::Display for MailParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.render_into(&mut out);
        f.write_str(&out)
    }
}

/// `NOTIFY=`: when to send a DSN for a recipient. All three false is `NEVER`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Notify {
    /// `SUCCESS`.
    pub success: bool,
    /// `FAILURE`.
    pub failure: bool,
    /// `DELAY`.
    pub delay: bool,
}

impl Notify {
    /// `NOTIFY=NEVER`.
    pub const NEVER: Notify = Notify { success: false, failure: false, delay: false };

    /// No notification at all.
    pub fn is_never(&self) -> bool {
        !(self.success || self.failure || self.delay)
    }

    fn parse(value: &str) -> Result<Notify, CommandError> {
        if value.eq_ignore_ascii_case("NEVER") {
            return Ok(Notify::NEVER);
        }
        let mut notify = Notify::NEVER;
        for word in value.split(',') {
            let flag = match word.to_ascii_uppercase().as_str() {
                "SUCCESS" => &mut notify.success,
                "FAILURE" => &mut notify.failure,
                "DELAY" => &mut notify.delay,
                "NEVER" => return Err(invalid("NOTIFY", "NEVER cannot be combined")),
                _ => return Err(invalid("NOTIFY", "expected NEVER or SUCCESS, FAILURE, DELAY")),
            };
            if *flag {
                return Err(invalid("NOTIFY", "repeated keyword"));
            }
            *flag = true;
        }
        Ok(notify)
    }
}

/// The wire value, as [`Notify`]'s `Display` writes it or in any case and order (as a stored recipient keeps
/// it, for the client to pass on).
impl FromStr for Notify {
    type Err = CommandError;

    fn from_str(value: &str) -> Result<Notify, CommandError> {
        Notify::parse(value)
    }
}

/// The wire value: `NEVER`, or `SUCCESS,FAILURE,DELAY` (those that are set, in that order).
impl fmt::Display for Notify {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_never() {
            return f.write_str("NEVER");
        }
        let words = [(self.success, "SUCCESS"), (self.failure, "FAILURE"), (self.delay, "DELAY")];
        let set: Vec<&str> = words.iter().filter(|(on, _)| *on).map(|(_, word)| *word).collect();
        f.write_str(&set.join(","))
    }
}

/// `ORCPT=addr-type;xtext`: the recipient as the original client gave it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Orcpt {
    /// The address type, as given (usually `rfc822`; compare case-insensitively).
    pub addr_type: String,
    /// The address.
    pub address: XText,
}

/// The wire value, `addr-type;` and the encoded address.
impl fmt::Display for Orcpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{};{}", self.addr_type, self.address)
    }
}

impl Orcpt {
    fn parse(value: &str) -> Result<Orcpt, CommandError> {
        if value.len() > MAX_ORCPT {
            return Err(invalid("ORCPT", "longer than 500 characters"));
        }
        let (addr_type, address) = value.split_once(';').ok_or(invalid("ORCPT", "expected addr-type;address"))?;
        // addr-type is an RFC 5322 atom.
        let atom_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-/=?^_`{|}~".contains(&b);
        if addr_type.is_empty() || !addr_type.bytes().all(atom_char) {
            return Err(invalid("ORCPT", "bad address type"));
        }
        let address = XText::decode(address).map_err(|_| invalid("ORCPT", "bad xtext"))?;
        Ok(Orcpt { addr_type: addr_type.to_string(), address })
    }
}

/// RCPT TO parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RcptParams {
    /// `NOTIFY=`.
    pub notify: Option<Notify>,
    /// `ORCPT=`.
    pub orcpt: Option<Orcpt>,
}

impl RcptParams {
    /// `NOTIFY=` as its wire value (`SUCCESS,FAILURE`), for storing with the recipient.
    pub fn notify_string(&self) -> Option<String> {
        self.notify.map(|n| n.to_string())
    }

    /// `ORCPT=` decoded, `rfc822;user@example.com`, as a DSN's `Original-Recipient:` wants it (RFC 3464 2.3.1).
    pub fn orcpt_string(&self) -> Option<String> {
        self.orcpt.as_ref().map(|o| format!("{};{}", o.addr_type, o.address.decoded()))
    }

    /// Appends ` KEY=value` for each parameter, in a fixed order.
    pub(crate) fn render_into(&self, out: &mut String) {
        if let Some(notify) = self.notify {
            out.push_str(&format!(" NOTIFY={notify}"));
        }
        if let Some(orcpt) = &self.orcpt {
            out.push_str(&format!(" ORCPT={orcpt}"));
        }
    }

    /// Parses the parameters after the RCPT TO path.
    pub(crate) fn parse(params: &[(String, Option<&str>)]) -> Result<RcptParams, CommandError> {
        let mut out = RcptParams::default();
        for (keyword, value) in params {
            match keyword.as_str() {
                "NOTIFY" => out.notify = Some(Notify::parse(value_of("NOTIFY", *value)?)?),
                "ORCPT" => out.orcpt = Some(Orcpt::parse(value_of("ORCPT", *value)?)?),
                _ => return Err(CommandError::UnknownParameter(keyword.clone())),
            }
        }
        Ok(out)
    }
}

/// The parameters as they follow the path on the wire: ` KEY=value` each, in the order [`Command::render`]
/// writes them.
///
/// [`Command::render`]: crate::Command::render
impl fmt::Display for RcptParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.render_into(&mut out);
        f.write_str(&out)
    }
}

/// Splits `KEY[=value] KEY[=value] ...` (runs of spaces allowed), checking the RFC 5321 4.1.2 `esmtp-param`
/// syntax and refusing repeated keywords. Keywords are upper-cased.
pub(crate) fn split_params(text: &[u8]) -> Result<Vec<(String, Option<&str>)>, CommandError> {
    let mut out: Vec<(String, Option<&str>)> = Vec::new();
    for token in text.split(|b| *b == b' ').filter(|t| !t.is_empty()) {
        let (keyword, value) = match token.iter().position(|b| *b == b'=') {
            Some(eq) => (&token[..eq], Some(&token[eq + 1..])),
            None => (token, None),
        };
        let keyword_ok = keyword.first().is_some_and(u8::is_ascii_alphanumeric)
            && keyword.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
        // esmtp-value: one or more of %d33-60 / %d62-126 (no '=', no space, no control, ASCII).
        let value_ok = value.is_none_or(|v| !v.is_empty() && v.iter().all(|b| matches!(b, 33..=60 | 62..=126)));
        if !keyword_ok || !value_ok {
            return Err(CommandError::Syntax("bad parameter syntax"));
        }
        let keyword = String::from_utf8_lossy(keyword).to_ascii_uppercase();
        if out.iter().any(|(seen, _)| *seen == keyword) {
            return Err(CommandError::DuplicateParameter(keyword));
        }
        // Checked above: the value is ASCII.
        let value = value.map(|v| std::str::from_utf8(v).unwrap_or_default());
        out.push((keyword, value));
    }
    Ok(out)
}

fn value_of<'a>(keyword: &'static str, value: Option<&'a str>) -> Result<&'a str, CommandError> {
    value.ok_or(invalid(keyword, "needs a value"))
}

fn invalid(keyword: &'static str, reason: &'static str) -> CommandError {
    CommandError::InvalidParameter { keyword, reason }
}

/// RFC 1870 `size-value = 1*20DIGIT`.
fn parse_size(value: &str) -> Result<u64, CommandError> {
    if value.is_empty() || value.len() > 20 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("SIZE", "expected a number of octets"));
    }
    Ok(value.parse().unwrap_or(u64::MAX))
}
