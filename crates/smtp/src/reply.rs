//! Replies: `Reply { code, enhanced, text }`, rendered by the server and parsed by the client.

use std::fmt;

/// An RFC 3463 enhanced status code, `class.subject.detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnhancedCode {
    pub class: u8,
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    /// Parses `"5.7.1"`.
    pub fn parse(s: &str) -> Option<EnhancedCode> {
        let mut parts = s.split('.');
        let class: u8 = parts.next()?.parse().ok()?;
        let subject: u16 = parts.next()?.parse().ok()?;
        let detail: u16 = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) || subject > 999 || detail > 999 {
            return None;
        }
        Some(EnhancedCode { class, subject, detail })
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

/// One SMTP reply; `text` holds one line per `\n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub enhanced: Option<EnhancedCode>,
    pub text: String,
}

impl Reply {
    /// A reply with an enhanced code given as text (`"5.7.1"`; `""` for none, as for `354`). A malformed
    /// code is left out rather than sent.
    pub fn new(code: u16, enhanced: &str, text: &str) -> Reply {
        Reply { code, enhanced: EnhancedCode::parse(enhanced), text: text.to_owned() }
    }

    /// The reply on the wire, multi-line when the text has several lines.
    pub fn render(&self) -> String {
        let lines: Vec<&str> = self.text.split('\n').collect();
        let mut out = String::with_capacity(self.text.len() + 16 * lines.len());
        for (i, line) in lines.iter().enumerate() {
            let sep = if i + 1 == lines.len() { ' ' } else { '-' };
            let line = line.trim_end_matches('\r');
            match &self.enhanced {
                Some(e) => out.push_str(&format!("{}{sep}{e} {line}\r\n", self.code)),
                None if line.is_empty() => out.push_str(&format!("{}{sep}\r\n", self.code)),
                None => out.push_str(&format!("{}{sep}{line}\r\n", self.code)),
            }
        }
        out
    }

    pub fn is_positive(&self) -> bool {
        (200..400).contains(&self.code)
    }
    pub fn is_transient(&self) -> bool {
        (400..500).contains(&self.code)
    }
    pub fn is_permanent(&self) -> bool {
        (500..600).contains(&self.code)
    }
}

/// A reply the client cannot understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("reply line without a three-digit code: {0:?}")]
    BadLine(String),
    #[error("reply lines with different codes")]
    MixedCodes,
}

/// Parses one complete reply from the front of `buf`: `Ok(None)` when more input is needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ReplyError> {
    let mut pos = 0;
    let mut code = None;
    let mut lines: Vec<String> = Vec::new();
    loop {
        let Some(nl) = buf[pos..].iter().position(|b| *b == b'\n') else { return Ok(None) };
        let raw = &buf[pos..pos + nl];
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        pos += nl + 1;
        let line = String::from_utf8_lossy(raw);
        let digits = line.get(..3).filter(|d| d.bytes().all(|b| b.is_ascii_digit()));
        let Some(digits) = digits else { return Err(ReplyError::BadLine(line.into_owned())) };
        let c: u16 = digits.parse().map_err(|_| ReplyError::BadLine(line.to_string()))?;
        if code.is_some_and(|k| k != c) {
            return Err(ReplyError::MixedCodes);
        }
        code = Some(c);
        let sep = line.as_bytes().get(3).copied();
        let rest = line.get(4..).unwrap_or("").to_owned();
        lines.push(rest);
        match sep {
            Some(b'-') => continue,
            None | Some(b' ') => break,
            Some(_) => return Err(ReplyError::BadLine(line.into_owned())),
        }
    }
    let code = code.unwrap_or(0);
    // The enhanced code is taken when the first line starts with one whose class matches the code.
    let enhanced = lines.first().and_then(|l| l.split(' ').next()).and_then(EnhancedCode::parse).filter(|e| {
        u16::from(e.class) == code / 100
    });
    if let Some(e) = enhanced {
        let prefix = e.to_string();
        for l in &mut lines {
            if let Some(rest) = l.strip_prefix(&prefix) {
                *l = rest.trim_start().to_owned();
            }
        }
    }
    Ok(Some((Reply { code, enhanced, text: lines.join("\n") }, pos)))
}

/// The EHLO keywords of a reply (every line but the first), upper-cased, with their parameters.
pub fn parse_ehlo_keywords(reply: &Reply) -> Vec<(String, String)> {
    reply
        .text
        .split('\n')
        .skip(1)
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap_or((l, ""));
            (k.to_ascii_uppercase(), v.to_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_single_and_multi_line() {
        assert_eq!(Reply::new(250, "2.1.0", "Ok").render(), "250 2.1.0 Ok\r\n");
        assert_eq!(Reply::new(354, "", "Go ahead").render(), "354 Go ahead\r\n");
        let r = Reply { code: 250, enhanced: None, text: "mx\nPIPELINING\nSIZE 10".into() };
        assert_eq!(r.render(), "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    }

    #[test]
    fn parse_round_trips_and_waits_for_the_last_line() {
        let r = Reply::new(550, "5.7.1", "Relay access denied");
        let wire = r.render();
        assert_eq!(parse_reply(wire.as_bytes()).unwrap(), Some((r, wire.len())));
        assert_eq!(parse_reply(b"250-mx\r\n250-PIPE").unwrap(), None);
        let (ehlo, used) = parse_reply(b"250-mx\r\n250-PIPELINING\r\n250 SIZE 100\r\nrest").unwrap().unwrap();
        assert_eq!(used, 38);
        assert_eq!(parse_ehlo_keywords(&ehlo), vec![("PIPELINING".into(), "".into()), ("SIZE".into(), "100".into())]);
        assert!(parse_reply(b"hello\r\n").is_err());
        assert!(parse_reply(b"250-a\r\n251 b\r\n").is_err());
        let (bare, _) = parse_reply(b"220\r\n").unwrap().unwrap();
        assert_eq!(bare.code, 220);
    }
}
