//! clamd, ClamAV's daemon: each message is streamed with `INSTREAM` on a session (`IDSESSION`) kept in a
//! pool, so a scan costs no connection set-up; `PING` is the health check, `RELOAD` makes clamd read the
//! signature files an update wrote into its database directory, `VERSION` names its signature set.
//!
//! The protocol (clamd(8)): commands are `z`-prefixed and NUL-terminated, answers NUL-terminated; in a
//! session each answer starts with the command's number (`3: stream: OK`). `INSTREAM` data goes in chunks,
//! each a 4-byte big-endian length and the bytes, ended by a zero length. A session clamd closed (its
//! `IdleTimeout`) is noticed on use; the scan is then sent again on a new connection.

use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use super::{Address, Conn, EngineError, RemoteVerdict, connect};

/// Idle sessions kept open; more concurrent scans open more, and close them when done.
const POOL: usize = 32;
/// Bytes per `INSTREAM` chunk.
const CHUNK: usize = 64 * 1024;
/// The longest answer read (clamd's are one short line).
const MAX_ANSWER: usize = 4096;

/// A clamd reached at one address.
#[derive(Debug)]
pub struct Clamd {
    address: Address,
    pub(super) timeout: Duration,
    idle: Mutex<Vec<Session>>,
}

struct Session {
    conn: BufReader<Conn>,
    /// The number clamd gives the next command on this session.
    next: u64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("next", &self.next).finish_non_exhaustive()
    }
}

impl Clamd {
    pub fn new(address: Address, timeout: Duration) -> Clamd {
        Clamd { address, timeout, idle: Mutex::new(Vec::new()) }
    }

    pub fn address(&self) -> &Address {
        &self.address
    }

    async fn open(&self) -> Result<Session, EngineError> {
        let mut conn = connect(&self.address).await?;
        conn.write_all(b"zIDSESSION\0").await.map_err(EngineError::Io)?;
        Ok(Session { conn: BufReader::new(conn), next: 1 })
    }

    /// Streams `message` to clamd; a pooled session that turns out closed is replaced once.
    pub async fn scan(&self, message: &[u8]) -> Result<RemoteVerdict, EngineError> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let (mut session, reused) = match pooled {
            Some(s) => (s, true),
            None => (self.open().await?, false),
        };
        let answer = match instream(&mut session, message).await {
            Err(EngineError::Io(_)) if reused => {
                session = self.open().await?;
                instream(&mut session, message).await?
            }
            other => other?,
        };
        let verdict = verdict(&answer)?;
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < POOL {
            idle.push(session);
        }
        Ok(verdict)
    }

    /// `PING`, on a connection of its own: `PONG` or an error.
    pub async fn ping(&self) -> Result<(), EngineError> {
        match self.command("PING").await?.as_str() {
            "PONG" => Ok(()),
            other => Err(EngineError::Garbage(format!("PING answered {other:?}"))),
        }
    }

    /// `RELOAD`: clamd reads its database directory again (in the background; scans go on with the old
    /// signatures until the new ones are loaded).
    pub async fn reload(&self) -> Result<(), EngineError> {
        match self.command("RELOAD").await?.as_str() {
            "RELOADING" => {
                // Sessions opened before the reload keep working; nothing to drop.
                Ok(())
            }
            other => Err(EngineError::Garbage(format!("RELOAD answered {other:?}"))),
        }
    }

    /// `VERSION`: `ClamAV 1.4.6/27480/Tue Dec  1 09:00:00 2026`.
    pub async fn version(&self) -> Result<String, EngineError> {
        self.command("VERSION").await
    }

    async fn command(&self, name: &str) -> Result<String, EngineError> {
        let work = async {
            let mut conn = BufReader::new(connect(&self.address).await?);
            conn.get_mut().write_all(format!("z{name}\0").as_bytes()).await.map_err(EngineError::Io)?;
            read_answer(&mut conn).await
        };
        tokio::time::timeout(self.timeout, work).await.unwrap_or(Err(EngineError::Timeout(self.timeout)))
    }
}

/// One `INSTREAM` on a session; the answer without its number.
async fn instream(session: &mut Session, message: &[u8]) -> Result<String, EngineError> {
    let w = session.conn.get_mut();
    let mut out = Vec::with_capacity(message.len() + message.len() / CHUNK * 4 + 20);
    out.extend_from_slice(b"zINSTREAM\0");
    for chunk in message.chunks(CHUNK) {
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&0u32.to_be_bytes());
    w.write_all(&out).await.map_err(EngineError::Io)?;
    w.flush().await.map_err(EngineError::Io)?;
    let id = session.next;
    session.next += 1;
    let answer = read_answer(&mut session.conn).await?;
    match answer.split_once(": ") {
        Some((n, rest)) if n.parse() == Ok(id) => Ok(rest.to_owned()),
        _ => Err(EngineError::Garbage(format!("{answer:?} (expected the answer to command {id})"))),
    }
}

/// Reads one NUL-terminated answer; end of stream before it is an I/O error.
async fn read_answer(conn: &mut BufReader<Conn>) -> Result<String, EngineError> {
    let mut buf = Vec::new();
    let n = (&mut *conn).take(MAX_ANSWER as u64).read_until(0, &mut buf).await.map_err(EngineError::Io)?;
    match buf.pop() {
        Some(0) => {}
        _ if n == 0 => {
            return Err(EngineError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "clamd closed the connection",
            )));
        }
        _ => return Err(EngineError::Garbage(format!("{:?}", String::from_utf8_lossy(&buf)))),
    }
    Ok(String::from_utf8_lossy(&buf).trim_end().to_owned())
}

/// `stream: OK`, `stream: Eicar-Test-Signature FOUND`, `INSTREAM size limit exceeded. ERROR`.
fn verdict(answer: &str) -> Result<RemoteVerdict, EngineError> {
    if answer == "stream: OK" {
        return Ok(RemoteVerdict::Clean);
    }
    if let Some(name) = answer.strip_prefix("stream: ").and_then(|r| r.strip_suffix(" FOUND")) {
        return Ok(RemoteVerdict::Virus(name.to_owned()));
    }
    if answer.contains("size limit exceeded") {
        return Ok(RemoteVerdict::TooLarge(format!("clamd: {answer}")));
    }
    Err(EngineError::Garbage(format!("{answer:?}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::super::fake;
    use super::*;

    /// A clamd that knows one signature (`EVIL` anywhere in the stream) and answers `PING`; `sessions`
    /// counts the connections it took.
    async fn clamd(sessions: Arc<AtomicUsize>) -> String {
        fake::serve(move |mut s| {
            let sessions = sessions.clone();
            async move {
                sessions.fetch_add(1, Ordering::SeqCst);
                let mut id = 0;
                let mut pending: Vec<u8> = Vec::new();
                loop {
                    let mut got = fake::read_until(&mut s, b"\0").await;
                    if got.is_empty() {
                        return;
                    }
                    pending.append(&mut got);
                    if pending.starts_with(b"zIDSESSION\0") {
                        pending.drain(..11);
                        continue;
                    }
                    if pending.starts_with(b"zPING\0") {
                        fake::write(&mut s, b"PONG\0").await;
                        return;
                    }
                    if pending.starts_with(b"zINSTREAM\0") {
                        // Read chunks until the zero length.
                        let mut data = Vec::new();
                        let mut at = 10;
                        loop {
                            while pending.len() < at + 4 {
                                let more = fake::read_some(&mut s).await;
                                if more.is_empty() {
                                    return;
                                }
                                pending.extend(more);
                            }
                            let n = u32::from_be_bytes(pending[at..at + 4].try_into().unwrap()) as usize;
                            at += 4;
                            if n == 0 {
                                break;
                            }
                            while pending.len() < at + n {
                                let more = fake::read_some(&mut s).await;
                                if more.is_empty() {
                                    return;
                                }
                                pending.extend(more);
                            }
                            data.extend_from_slice(&pending[at..at + n]);
                            at += n;
                        }
                        pending.drain(..at);
                        id += 1;
                        let answer = if data.windows(4).any(|w| w == b"EVIL") {
                            format!("{id}: stream: Evil.Test FOUND\0")
                        } else {
                            format!("{id}: stream: OK\0")
                        };
                        fake::write(&mut s, answer.as_bytes()).await;
                        continue;
                    }
                    fake::write(&mut s, b"UNKNOWN COMMAND\0").await;
                    return;
                }
            }
        })
        .await
    }

    #[tokio::test]
    async fn scans_stream_in_chunks_on_one_pooled_session() {
        let sessions = Arc::new(AtomicUsize::new(0));
        let c = Clamd::new(Address::Tcp(clamd(sessions.clone()).await), Duration::from_secs(5));
        // Over two chunks, the signature across their boundary.
        let mut big = vec![b'a'; CHUNK - 2];
        big.extend_from_slice(b"EVIL");
        big.extend(vec![b'b'; 1000]);
        assert_eq!(c.scan(&big).await.unwrap(), RemoteVerdict::Virus("Evil.Test".into()));
        assert_eq!(c.scan(b"Subject: hi\r\n\r\nclean\r\n").await.unwrap(), RemoteVerdict::Clean);
        assert_eq!(c.scan(b"EVIL").await.unwrap(), RemoteVerdict::Virus("Evil.Test".into()));
        assert_eq!(sessions.load(Ordering::SeqCst), 1, "one session carried every scan");
        c.ping().await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_connection_and_garbage_are_errors() {
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = free.local_addr().unwrap().to_string();
        drop(free);
        let c = Clamd::new(Address::Tcp(addr), Duration::from_secs(5));
        assert!(matches!(c.scan(b"x").await, Err(EngineError::Connect(_))));
        assert!(matches!(c.ping().await, Err(EngineError::Connect(_))));

        let garbage = fake::serve(|mut s| async move {
            fake::read_until(&mut s, b"\0").await;
            fake::write(&mut s, b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
        })
        .await;
        let c = Clamd::new(Address::Tcp(garbage), Duration::from_secs(5));
        assert!(matches!(c.ping().await, Err(EngineError::Garbage(_))), "{:?}", c.ping().await);
        assert!(matches!(c.scan(b"x").await, Err(EngineError::Garbage(_) | EngineError::Io(_))));
    }

    #[test]
    fn answers_read_as_clamd_writes_them() {
        assert_eq!(verdict("stream: OK").unwrap(), RemoteVerdict::Clean);
        assert_eq!(
            verdict("stream: Win.Test.EICAR_HDB-1 FOUND").unwrap(),
            RemoteVerdict::Virus("Win.Test.EICAR_HDB-1".into())
        );
        assert!(matches!(verdict("INSTREAM size limit exceeded. ERROR").unwrap(), RemoteVerdict::TooLarge(_)));
        assert!(verdict("stream: lstat() failed. ERROR").is_err());
    }
}
