//! A session's connection: the stream (plain or TLS), the input and output buffers and the timers around
//! them. It frames the input into command lines strictly (a line ends with CRLF; a bare LF or an overlong
//! line is reported, never run), writes the collected replies, and ends the session with `421` when the
//! client is idle too long or the server stops. It knows nothing of the SMTP verbs.

use std::time::Duration;

use sluice_smtp::{LineStatus, Reply, find_line};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::replies;
use crate::tls::Stream;

/// How long a session in a transaction may go on after shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const READ_CHUNK: usize = 64 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The next thing in the input, for the command loop and the AUTH exchange.
pub(crate) enum Next {
    Line(Vec<u8>),
    TooLong,
    BareLf,
}

/// The connection of one session: what is read waits in `input`, replies wait in `output` until a flush.
pub(crate) struct Conn {
    stream: Stream,
    /// Bytes read and not yet consumed: commands are taken from its start, strictly in order.
    pub(crate) input: Vec<u8>,
    /// Replies collected and not yet written.
    output: Vec<u8>,
    /// `connection_inactivity_timeout`: how long a read or a write may wait for the client.
    idle: Duration,
    /// `max_command_line`.
    max_line: usize,
    shutdown: CancellationToken,
}

/// The error that ends a session once `421` was sent: nothing more is read or answered.
fn closed_after_421() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "closed after 421")
}

impl Conn {
    pub(crate) fn new(stream: Stream, idle: Duration, max_line: usize, shutdown: CancellationToken) -> Conn {
        Conn { stream, input: Vec::with_capacity(4096), output: Vec::with_capacity(1024), idle, max_line, shutdown }
    }

    /// Whether the server is stopping.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutdown.is_cancelled()
    }

    /// Waits up to `pause` for the client to talk before the greeting: `None` when it stayed quiet, else the
    /// number of bytes read (0: it closed).
    pub(crate) async fn read_before_greeting(&mut self, pause: Duration) -> std::io::Result<Option<usize>> {
        match tokio::time::timeout(pause, self.stream.read_buf(&mut self.input)).await {
            Ok(read) => Ok(Some(read?)),
            Err(_) => Ok(None),
        }
    }

    /// Reads more input; false when the client closed. When the client was idle too long or the server is
    /// stopping, it sends `421` and fails with [`closed_after_421`]: the session ends there, whichever of
    /// its steps was waiting (a command, an AUTH answer, message data, the rest of a bad line). A session
    /// `in_transaction` is given [`SHUTDOWN_GRACE`] to finish it after shutdown began.
    pub(crate) async fn fill(&mut self, in_transaction: bool) -> std::io::Result<bool> {
        let idle = self.idle;
        self.input.reserve(READ_CHUNK);
        let shutdown = &self.shutdown;
        let stop = async {
            if in_transaction {
                shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                shutdown.cancelled().await;
            }
        };
        // Reads straight into the spare capacity of the input buffer: no per-read allocation or copy.
        let n = tokio::select! {
            r = tokio::time::timeout(idle, self.stream.read_buf(&mut self.input)) => match r {
                Ok(r) => r?,
                Err(_) => {
                    self.send_now(&replies::IDLE_TOO_LONG.reply()).await?;
                    return Err(closed_after_421());
                }
            },
            _ = stop => {
                self.send_now(&replies::SHUTTING_DOWN.reply()).await?;
                return Err(closed_after_421());
            }
        };
        Ok(n > 0)
    }

    /// Drops the rest of a bad line through its CRLF, reading as much as it takes.
    pub(crate) async fn skip_line(&mut self, in_transaction: bool) -> std::io::Result<()> {
        loop {
            if let Some(n) = sluice_smtp::discard_line(&self.input) {
                self.input.drain(..n);
                return Ok(());
            }
            // A last CR may be the first half of the CRLF.
            let keep = usize::from(self.input.last() == Some(&b'\r'));
            self.input.drain(..self.input.len() - keep);
            if !self.fill(in_transaction).await? {
                return Ok(());
            }
        }
    }

    /// Adds a reply to those written at the next [`Conn::flush`].
    pub(crate) fn reply(&mut self, r: &Reply) {
        self.output.extend_from_slice(r.render().as_bytes());
    }

    /// Adds raw bytes (an AUTH challenge) to those written at the next [`Conn::flush`].
    pub(crate) fn reply_raw(&mut self, bytes: &[u8]) {
        self.output.extend_from_slice(bytes);
    }

    /// Writes the collected replies. A client that stops reading is cut off after the inactivity timeout,
    /// so that it cannot hold a connection (or a graceful shutdown) forever.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            let idle = self.idle;
            // (A TLS stream holds written records until flushed.)
            let write = async {
                self.stream.write_all(&self.output).await?;
                self.stream.flush().await
            };
            match tokio::time::timeout(idle, write).await {
                Ok(r) => r?,
                Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading")),
            }
            self.output.clear();
        }
        Ok(())
    }

    /// Writes `r` at once (outside the pipelined replies), through TLS when it is on.
    pub(crate) async fn send_now(&mut self, r: &Reply) -> std::io::Result<()> {
        self.stream.write_all(r.render().as_bytes()).await?;
        self.stream.flush().await
    }

    /// The TLS handshake on the plain connection (implicit TLS, or after `220` to STARTTLS); the TLS
    /// version and cipher once it succeeded.
    pub(crate) async fn handshake(
        &mut self,
        acceptor: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Option<String>> {
        let Some(acceptor) = acceptor else {
            return Err(std::io::Error::other("TLS is not configured on this connector"));
        };
        let Stream::Plain(tcp) = std::mem::replace(&mut self.stream, Stream::Upgrading) else {
            return Err(std::io::Error::other("the connection is already encrypted"));
        };
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
            Ok(r) => r?,
            Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
        };
        self.stream = Stream::Tls(Box::new(tls));
        Ok(self.stream.tls_details())
    }

    /// Waits, flushing the replies collected so far, until the input holds a whole line or a bad one (too
    /// long, or ended by a bare LF: left in the input for the caller); `None` when the client went away.
    pub(crate) async fn next_line(&mut self, in_transaction: bool) -> std::io::Result<Option<Next>> {
        loop {
            match find_line(&self.input, self.max_line) {
                LineStatus::Line { len_without_crlf, consumed } => {
                    let line = self.input[..len_without_crlf].to_vec();
                    self.input.drain(..consumed);
                    return Ok(Some(Next::Line(line)));
                }
                LineStatus::TooLong => return Ok(Some(Next::TooLong)),
                LineStatus::BareLf => return Ok(Some(Next::BareLf)),
                LineStatus::NeedMore => {
                    self.flush().await?;
                    if !self.fill(in_transaction).await? {
                        return Ok(None);
                    }
                }
            }
        }
    }
}
