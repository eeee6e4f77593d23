//! spamd, SpamAssassin's daemon, over SPAMC/1.5: `SYMBOLS` gives the score, the threshold and the rules that
//! hit in one answer; `PING` is the health check.
//!
//! As `spamc` does, a message larger than the maximum size (spamc's default, 500 KB) is not sent: spamd would
//! spend seconds on it and spammers do not send such messages. It passes the stage unscored.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use super::{Address, EngineError, RemoteVerdict, connect, read_to_end, scl_of};

/// spamc's default maximum message size (`spamc -s`): 500 KB.
pub const MAX_SIZE: usize = 500 * 1024;
/// The longest answer read: a status line, a few headers and the rule names.
const MAX_ANSWER: usize = 64 * 1024;

/// A spamd reached at one address.
#[derive(Debug)]
pub struct Spamd {
    address: Address,
    pub(super) timeout: Duration,
    max_size: usize,
}

impl Spamd {
    pub fn new(address: Address, timeout: Duration) -> Spamd {
        Spamd { address, timeout, max_size: MAX_SIZE }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    /// `SYMBOLS`: the score and the rules that hit.
    pub async fn scan(&self, message: &[u8]) -> Result<RemoteVerdict, EngineError> {
        if message.len() > self.max_size {
            return Ok(RemoteVerdict::TooLarge(format!(
                "spamd: not scanned, {} bytes is over spamc's maximum of {} bytes",
                message.len(),
                self.max_size
            )));
        }
        let mut conn = connect(&self.address).await?;
        let mut request =
            format!("SYMBOLS SPAMC/1.5\r\nContent-length: {}\r\nUser: sluice\r\n\r\n", message.len()).into_bytes();
        request.extend_from_slice(message);
        conn.write_all(&request).await.map_err(EngineError::Io)?;
        // As spamc: the end of the request is the end of our half of the connection.
        conn.shutdown().await.map_err(EngineError::Io)?;
        let answer = read_to_end(&mut conn, MAX_ANSWER).await?;
        parse_symbols(&answer)
    }

    /// `PING`: `SPAMD/1.5 0 PONG`.
    pub async fn ping(&self) -> Result<(), EngineError> {
        let mut conn = connect(&self.address).await?;
        conn.write_all(b"PING SPAMC/1.5\r\n\r\n").await.map_err(EngineError::Io)?;
        let answer = read_to_end(&mut conn, MAX_ANSWER).await?;
        let text = String::from_utf8_lossy(&answer);
        let line = text.lines().next().unwrap_or_default();
        if line.starts_with("SPAMD/") && line.ends_with(" 0 PONG") {
            Ok(())
        } else {
            Err(EngineError::Garbage(format!("PING answered {line:?}")))
        }
    }
}

/// `SPAMD/1.1 0 EX_OK`, headers (`Spam: True ; 1000.0 / 5.0`), a blank line, `RULE_A,RULE_B`.
fn parse_symbols(answer: &[u8]) -> Result<RemoteVerdict, EngineError> {
    let text = String::from_utf8_lossy(answer);
    let garbage = || EngineError::Garbage(format!("{:?}", text.chars().take(200).collect::<String>()));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(garbage)?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    let mut words = status.split_whitespace();
    if !words.next().is_some_and(|w| w.starts_with("SPAMD/")) {
        return Err(garbage());
    }
    if words.next() != Some("0") {
        return Err(EngineError::Garbage(format!("spamd refused the message: {status}")));
    }
    let spam = lines.find_map(|l| l.strip_prefix("Spam:")).ok_or_else(garbage)?;
    // ` True ; 1000.0 / 5.0`
    let (_, numbers) = spam.split_once(';').ok_or_else(garbage)?;
    let (score, required) = numbers.split_once('/').ok_or_else(garbage)?;
    let score: f64 = score.trim().parse().map_err(|_| garbage())?;
    let required: f64 = required.trim().parse().map_err(|_| garbage())?;
    let symbols = body.trim().split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect();
    Ok(RemoteVerdict::Spam { score, scl: scl_of(score, required), symbols })
}

#[cfg(test)]
mod tests {
    use super::super::fake;
    use super::*;

    #[test]
    fn answers_read_as_spamd_writes_them() {
        let gtube =
            b"SPAMD/1.1 0 EX_OK\r\nContent-length: 24\r\nSpam: True ; 1000.0 / 5.0\r\n\r\nGTUBE,MISSING_DATE,NO_RELAYS";
        match parse_symbols(gtube).unwrap() {
            RemoteVerdict::Spam { score, scl, symbols } => {
                assert_eq!((score, scl), (1000.0, 9));
                assert_eq!(symbols, ["GTUBE", "MISSING_DATE", "NO_RELAYS"]);
            }
            other => panic!("{other:?}"),
        }
        let ham = b"SPAMD/1.1 0 EX_OK\r\nContent-length: 0\r\nSpam: False ; 1.2 / 5.0\r\n\r\n";
        assert_eq!(parse_symbols(ham).unwrap(), RemoteVerdict::Spam { score: 1.2, scl: 1, symbols: vec![] });
        // On a threshold of 10, a score of 10 is SCL 7, as 5 is on SpamAssassin's default.
        let high = b"SPAMD/1.1 0 EX_OK\r\nSpam: True ; 10.0 / 10.0\r\n\r\nX";
        assert!(matches!(parse_symbols(high).unwrap(), RemoteVerdict::Spam { scl: 7, .. }));
        assert!(parse_symbols(b"SPAMD/1.0 76 Bad header line: x\r\n\r\n").is_err());
        assert!(parse_symbols(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_symbols(b"").is_err());
    }

    #[tokio::test]
    async fn a_message_goes_with_its_length_and_a_large_one_is_not_sent() {
        let addr = fake::serve(|mut s| async move {
            let got = fake::read_until(&mut s, b"\r\n\r\n").await;
            let head = String::from_utf8_lossy(&got).into_owned();
            if head.starts_with("PING SPAMC/1.5") {
                fake::write(&mut s, b"SPAMD/1.5 0 PONG\r\n").await;
                return;
            }
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-length: "))
                .and_then(|n| n.trim().parse().ok())
                .unwrap();
            let mut body = got[got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4..].to_vec();
            while body.len() < length {
                let more = fake::read_some(&mut s).await;
                assert!(!more.is_empty(), "the whole message is sent");
                body.extend(more);
            }
            let spam = body.windows(5).any(|w| w == b"GTUBE");
            let answer = if spam { "True ; 1000.0 / 5.0\r\n\r\nGTUBE" } else { "False ; 0.5 / 5.0\r\n\r\n" };
            fake::write(&mut s, format!("SPAMD/1.1 0 EX_OK\r\nSpam: {answer}").as_bytes()).await;
        })
        .await;
        let spamd = Spamd::new(Address::Tcp(addr), Duration::from_secs(5));
        spamd.ping().await.unwrap();
        let verdict = spamd.scan(b"Subject: x\r\n\r\nGTUBE\r\n").await.unwrap();
        assert!(matches!(verdict, RemoteVerdict::Spam { scl: 9, .. }), "{verdict:?}");
        let mut long = b"Subject: y\r\n\r\n".to_vec();
        long.extend(vec![b'a'; 200_000]);
        assert!(matches!(spamd.scan(&long).await.unwrap(), RemoteVerdict::Spam { scl: 0, .. }));
        long.extend(vec![b'a'; MAX_SIZE]);
        assert!(matches!(spamd.scan(&long).await.unwrap(), RemoteVerdict::TooLarge(_)));
    }
}
