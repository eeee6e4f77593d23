//! rspamd's normal worker over HTTP/1.1: `POST /checkv2` with the message (and the envelope as rspamd's
//! request headers), `GET /ping` as the health check. One request per connection (`Connection: close`): the
//! worker is on loopback, where a connection costs less than the scan.
//!
//! The SCL comes from rspamd's action, which already weighs its own thresholds: `reject` is 9, `add header`
//! and `rewrite subject` are 7 (quarantined by default, as a SpamAssassin score over the threshold),
//! `greylist` and `soft reject` are 5, and `no action` maps the score as the built-in engine does, at most 4.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{Address, EngineError, Envelope, RemoteVerdict, connect, read_to_end};

/// The longest answer read (rspamd's JSON with every symbol's description stays well under this).
const MAX_ANSWER: usize = 1024 * 1024;

/// An rspamd worker reached at `http://host:port[/prefix]`.
#[derive(Debug)]
pub struct Rspamd {
    url: String,
    address: Address,
    host: String,
    prefix: String,
    pub(super) timeout: Duration,
}

impl Rspamd {
    /// `url` is `http://host:port` with an optional path prefix; `None` when it is not such a URL.
    pub fn new(url: &str, timeout: Duration) -> Option<Rspamd> {
        let rest = url.strip_prefix("http://")?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return None;
        }
        let hostport = if authority.rsplit_once(':').is_some_and(|(_, p)| p.parse::<u16>().is_ok()) {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        Some(Rspamd {
            url: url.to_owned(),
            address: Address::Tcp(hostport),
            host: authority.to_owned(),
            prefix: prefix.to_owned(),
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// `POST /checkv2`.
    pub async fn scan(&self, message: &[u8], envelope: &Envelope<'_>) -> Result<RemoteVerdict, EngineError> {
        let mut head = format!(
            "POST {}/checkv2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\nQueue-Id: {}\r\n",
            self.prefix,
            self.host,
            message.len(),
            envelope.mid
        );
        // Addresses reach here validated by the SMTP server: no CR or LF.
        if !envelope.from.is_empty() {
            head.push_str(&format!("From: {}\r\n", envelope.from));
        }
        for rcpt in envelope.recipients {
            head.push_str(&format!("Rcpt: {rcpt}\r\n"));
        }
        head.push_str("\r\n");
        let (status, body) = self.request(head.as_bytes(), message).await?;
        if status != 200 {
            return Err(EngineError::Garbage(format!("HTTP {status}: {}", excerpt(&body))));
        }
        parse_check(&body)
    }

    /// `GET /ping`: `pong`.
    pub async fn ping(&self) -> Result<(), EngineError> {
        let head = format!("GET {}/ping HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.prefix, self.host);
        let (status, body) = self.request(head.as_bytes(), b"").await?;
        if status == 200 && body.trim_ascii().eq_ignore_ascii_case(b"pong") {
            Ok(())
        } else {
            Err(EngineError::Garbage(format!("ping answered HTTP {status}: {}", excerpt(&body))))
        }
    }

    /// One request; the status and the body of the answer.
    async fn request(&self, head: &[u8], body: &[u8]) -> Result<(u16, Vec<u8>), EngineError> {
        let mut conn = connect(&self.address).await?;
        let mut out = Vec::with_capacity(head.len() + body.len());
        out.extend_from_slice(head);
        out.extend_from_slice(body);
        conn.write_all(&out).await.map_err(EngineError::Io)?;
        conn.flush().await.map_err(EngineError::Io)?;
        let answer = read_to_end(&mut conn, MAX_ANSWER).await?;
        parse_response(&answer)
    }
}

fn excerpt(body: &[u8]) -> String {
    String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned()
}

/// An HTTP/1.1 response read to its end: status and body (by `Content-Length`, chunked, or to the end).
fn parse_response(answer: &[u8]) -> Result<(u16, Vec<u8>), EngineError> {
    let garbage = || EngineError::Garbage(format!("not an HTTP response: {:?}", excerpt(answer)));
    let end = answer.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(garbage)?;
    let head = std::str::from_utf8(&answer[..end]).map_err(|_| garbage())?;
    let rest = &answer[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let code: u16 = match status.split_whitespace().collect::<Vec<_>>().as_slice() {
        [version, code, ..] if version.starts_with("HTTP/1.") => code.parse().map_err(|_| garbage())?,
        _ => return Err(garbage()),
    };
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else { continue };
        if name.eq_ignore_ascii_case("content-length") {
            length = value.trim().parse::<usize>().ok();
        } else if name.eq_ignore_ascii_case("transfer-encoding") && value.trim().eq_ignore_ascii_case("chunked") {
            chunked = true;
        }
    }
    let body = if chunked {
        dechunk(rest).ok_or_else(garbage)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or_else(|| EngineError::Garbage(format!("a body shorter than its {n} bytes")))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok((code, body))
}

/// A chunked body's data.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&rest[..eol]).ok()?.split(';').next()?.trim();
        let n = usize::from_str_radix(size, 16).ok()?;
        rest = &rest[eol + 2..];
        if n == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..n)?);
        rest = rest.get(n + 2..)?;
    }
}

#[derive(serde::Deserialize)]
struct Check {
    #[serde(default)]
    is_skipped: bool,
    score: f64,
    action: String,
    #[serde(default)]
    symbols: std::collections::BTreeMap<String, Symbol>,
}

#[derive(serde::Deserialize)]
struct Symbol {
    #[serde(default)]
    score: f64,
}

/// `{"is_skipped": false, "score": 3.1, "required_score": 15, "action": "no action", "symbols": {...}}`
fn parse_check(body: &[u8]) -> Result<RemoteVerdict, EngineError> {
    let check: Check = serde_json::from_slice(body)
        .map_err(|e| EngineError::Garbage(format!("not rspamd's answer ({e}): {}", excerpt(body))))?;
    let mut symbols: Vec<(String, f64)> = check.symbols.into_iter().map(|(name, s)| (name, s.score)).collect();
    symbols.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let scl = match check.action.as_str() {
        "reject" => 9,
        "add header" | "rewrite subject" => 7,
        "greylist" | "soft reject" => 5,
        "no action" => sluice_scan::antispam::scl_of(check.score).min(4),
        other => return Err(EngineError::Garbage(format!("an unknown action {other:?}"))),
    };
    // rspamd skips the rest of the checks after a decisive one (GTUBE: `reject`), or the whole message
    // (over its `max_message` size: `no action`, unscored).
    if check.is_skipped && check.action == "no action" {
        return Ok(RemoteVerdict::TooLarge("rspamd: skipped the message".into()));
    }
    Ok(RemoteVerdict::Spam { score: check.score, scl, symbols: symbols.into_iter().map(|(n, _)| n).collect() })
}

#[cfg(test)]
mod tests {
    use super::super::fake;
    use super::*;

    #[test]
    fn urls_read_as_an_administrator_writes_them() {
        let r = Rspamd::new("http://127.0.0.1:11333", Duration::from_secs(1)).unwrap();
        assert_eq!((r.address.to_string(), r.prefix.as_str()), ("127.0.0.1:11333".into(), ""));
        let r = Rspamd::new("http://scan.example/rspamd/", Duration::from_secs(1)).unwrap();
        assert_eq!((r.address.to_string(), r.prefix.as_str()), ("scan.example:80".into(), "/rspamd"));
        assert!(Rspamd::new("https://127.0.0.1:11333", Duration::from_secs(1)).is_none());
        assert!(Rspamd::new("http://", Duration::from_secs(1)).is_none());
    }

    #[test]
    fn actions_map_to_scl() {
        let check = |action: &str, score: f64| {
            let body = serde_json::json!({
                "is_skipped": false, "score": score, "required_score": 15.0, "action": action,
                "symbols": {"GTUBE": {"name": "GTUBE", "score": 0.0}, "R_DKIM_NA": {"name": "R_DKIM_NA", "score": 0.5}}
            });
            parse_check(body.to_string().as_bytes()).unwrap()
        };
        let RemoteVerdict::Spam { scl, symbols, .. } = check("reject", 0.0) else { panic!() };
        assert_eq!((scl, symbols), (9, vec!["R_DKIM_NA".to_owned(), "GTUBE".to_owned()]));
        assert!(matches!(check("add header", 7.0), RemoteVerdict::Spam { scl: 7, .. }));
        assert!(matches!(check("greylist", 4.0), RemoteVerdict::Spam { scl: 5, .. }));
        assert!(matches!(check("no action", 1.0), RemoteVerdict::Spam { scl: 1, .. }));
        assert!(matches!(check("no action", 5.9), RemoteVerdict::Spam { scl: 4, .. }));
        assert!(parse_check(b"<html>").is_err());
        assert!(parse_check(br#"{"score": 1, "action": "explode"}"#).is_err());
    }

    #[test]
    fn responses_by_length_chunked_and_to_the_end() {
        assert_eq!(
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npongXX").unwrap(),
            (200, b"pong".to_vec())
        );
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\npo\r\n2;x=1\r\nng\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked).unwrap(), (200, b"pong".to_vec()));
        assert_eq!(parse_response(b"HTTP/1.0 500 Oops\r\n\r\nbad").unwrap(), (500, b"bad".to_vec()));
        assert!(parse_response(b"SPAMD/1.1 0 EX_OK\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
    }

    #[tokio::test]
    async fn a_check_sends_the_message_and_the_envelope() {
        let addr = fake::serve(|mut s| async move {
            let mut got = fake::read_until(&mut s, b"\r\n\r\n").await;
            let head = String::from_utf8_lossy(&got).into_owned();
            if head.starts_with("GET /ping ") {
                fake::write(&mut s, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\npong\n").await;
                return;
            }
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap();
            let at = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            while got.len() < at + length {
                got.extend(fake::read_some(&mut s).await);
            }
            let ok = head.starts_with("POST /checkv2 HTTP/1.1\r\n")
                && head.contains("\r\nFrom: a@x.example\r\n")
                && head.contains("\r\nRcpt: b@y.example\r\nRcpt: c@y.example\r\n")
                && got[at..].ends_with(b"GTUBE\r\n");
            let body = if ok {
                r#"{"is_skipped":false,"score":0,"required_score":15,"action":"reject","symbols":{"GTUBE":{"score":0}}}"#
            } else {
                r#"{"error":"bad request"}"#
            };
            let answer = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            fake::write(&mut s, answer.as_bytes()).await;
        })
        .await;
        let r = Rspamd::new(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
        r.ping().await.unwrap();
        let envelope = Envelope { mid: 7, from: "a@x.example", recipients: &["b@y.example", "c@y.example"] };
        let verdict = r.scan(b"Subject: x\r\n\r\nGTUBE\r\n", &envelope).await.unwrap();
        assert_eq!(verdict, RemoteVerdict::Spam { score: 0.0, scl: 9, symbols: vec!["GTUBE".into()] });
    }
}
