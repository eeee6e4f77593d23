//! The network engines a stage can use instead of the built-in ones: clamd (anti-virus), spamd and rspamd
//! (anti-spam), each reached over TCP or a unix socket with a timeout.
//!
//! An engine that refuses the connection, does not answer within its timeout, or answers something its
//! protocol does not allow is an [`EngineError`]: the work queue marks the stage Offline and probes the engine
//! ([`Remote::ping`]) until it answers again. A message the engine declines by size is a
//! [`RemoteVerdict::TooLarge`], a property of the message, not a fault of the engine.

mod clamd;
mod rspamd;
mod spamd;

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

pub use clamd::Clamd;
pub use rspamd::Rspamd;
pub use spamd::Spamd;

/// Where an engine listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    /// `host:port`
    Tcp(String),
    /// A unix socket.
    Unix(PathBuf),
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Tcp(hp) => f.write_str(hp),
            Address::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A byte stream to an engine, over TCP or a unix socket.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

pub(crate) type Conn = Box<dyn Stream>;

/// Opens a connection to `address`.
pub(crate) async fn connect(address: &Address) -> Result<Conn, EngineError> {
    let conn: Conn = match address {
        Address::Tcp(hp) => {
            let s = tokio::net::TcpStream::connect(hp.as_str()).await.map_err(EngineError::Connect)?;
            s.set_nodelay(true).ok();
            Box::new(s)
        }
        Address::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await.map_err(EngineError::Connect)?),
    };
    Ok(conn)
}

/// Reads until end of stream, at most `limit` bytes (more is a protocol error).
pub(crate) async fn read_to_end(conn: &mut Conn, limit: usize) -> Result<Vec<u8>, EngineError> {
    let mut out = Vec::new();
    let n = conn.take(limit as u64 + 1).read_to_end(&mut out).await.map_err(EngineError::Io)?;
    if n > limit {
        return Err(EngineError::Garbage(format!("an answer longer than {limit} bytes")));
    }
    Ok(out)
}

/// Why an engine gave no verdict.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot connect: {0}")]
    Connect(std::io::Error),
    #[error("no answer within {}", crate::workqueue::pause::human(*.0))]
    Timeout(Duration),
    #[error("{0}")]
    Io(std::io::Error),
    #[error("unexpected answer: {0}")]
    Garbage(String),
}

/// An engine's verdict on one message.
#[derive(Debug, Clone, PartialEq)]
pub enum RemoteVerdict {
    Clean,
    /// The signature's name.
    Virus(String),
    /// The anti-spam score, mapped to an SCL, and the rules (symbols) that hit, highest score first.
    Spam {
        score: f64,
        scl: u8,
        symbols: Vec<String>,
    },
    /// The engine does not take a message this large (clamd's `StreamMaxLength`, spamc's max size).
    TooLarge(String),
}

/// A stage's network engine.
#[derive(Debug)]
pub enum Remote {
    Clamd(Clamd),
    Spamd(Spamd),
    Rspamd(Rspamd),
}

impl Remote {
    /// `clamd`, `spamd` or `rspamd`: the `engine =` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Remote::Clamd(_) => "clamd",
            Remote::Spamd(_) => "spamd",
            Remote::Rspamd(_) => "rspamd",
        }
    }

    /// `clamd at 127.0.0.1:3310`, for logs and alerts.
    pub fn describe(&self) -> String {
        let at = match self {
            Remote::Clamd(c) => c.address().to_string(),
            Remote::Spamd(s) => s.address().to_string(),
            Remote::Rspamd(r) => r.url().to_owned(),
        };
        format!("{} at {at}", self.kind())
    }

    fn timeout(&self) -> Duration {
        match self {
            Remote::Clamd(c) => c.timeout,
            Remote::Spamd(s) => s.timeout,
            Remote::Rspamd(r) => r.timeout,
        }
    }

    /// Scans one message (the whole stored message, header and body), within the engine's timeout.
    pub async fn scan(&self, message: &[u8], envelope: &Envelope<'_>) -> Result<RemoteVerdict, EngineError> {
        let timeout = self.timeout();
        let work = async {
            match self {
                Remote::Clamd(c) => c.scan(message).await,
                Remote::Spamd(s) => s.scan(message).await,
                Remote::Rspamd(r) => r.scan(message, envelope).await,
            }
        };
        tokio::time::timeout(timeout, work).await.unwrap_or(Err(EngineError::Timeout(timeout)))
    }

    /// Whether the engine answers its health check (`PING`), within its timeout.
    pub async fn ping(&self) -> Result<(), EngineError> {
        let timeout = self.timeout();
        let work = async {
            match self {
                Remote::Clamd(c) => c.ping().await,
                Remote::Spamd(s) => s.ping().await,
                Remote::Rspamd(r) => r.ping().await,
            }
        };
        tokio::time::timeout(timeout, work).await.unwrap_or(Err(EngineError::Timeout(timeout)))
    }
}

/// What an engine may be told about a message beside its content (rspamd uses it).
#[derive(Debug, Default, Clone, Copy)]
pub struct Envelope<'a> {
    pub mid: u64,
    pub from: &'a str,
    pub recipients: &'a [&'a str],
}

/// The SCL of an anti-spam score on a scale whose spam threshold is `required`: the built-in engine's
/// mapping (a score at the threshold is SCL 7) after scaling the threshold to SpamAssassin's 5.0.
pub(crate) fn scl_of(score: f64, required: f64) -> u8 {
    let scaled = if required > 0.0 { score * sluice_scan::antispam::REQUIRED_SCORE / required } else { score };
    sluice_scan::antispam::scl_of(scaled)
}

#[cfg(test)]
pub(crate) mod fake {
    //! A loopback server answering each connection with a function of what it read, for the protocol
    //! tests of each engine.

    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// Serves on a free loopback port; `answer` gets each connection's stream and does the talking.
    pub async fn serve<F, Fut>(answer: F) -> String
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let answer = Arc::new(answer);
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let answer = answer.clone();
                tokio::spawn(async move { answer(s).await });
            }
        });
        addr
    }

    /// Reads until `end` has been seen (or end of stream); returns what was read.
    pub async fn read_until(s: &mut tokio::net::TcpStream, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(end.len()).any(|w| w == end) {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    }

    /// One read's worth (empty at end of stream).
    pub async fn read_some(s: &mut tokio::net::TcpStream) -> Vec<u8> {
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).await.unwrap_or(0);
        buf.truncate(n);
        buf
    }

    pub async fn write(s: &mut tokio::net::TcpStream, bytes: &[u8]) {
        let _ = s.write_all(bytes).await;
        let _ = s.flush().await;
    }
}
