//! One SMTP session. Commands are read strictly in order from one buffer; replies to pipelined commands
//! are collected and written when the input buffer holds no further complete command, so the server never
//! answers a command before it has read it.
//!
//! This file holds the session's state and the dispatch of each command to its verb's file (`ehlo.rs`,
//! `mail.rs`, `rcpt.rs`, `data.rs`, `bdat.rs`, `starttls.rs`, `auth.rs`); the connection it talks over is
//! `conn.rs`.

use std::net::SocketAddr;
use std::sync::Arc;

use sluice_queue_db::Recipient;
use sluice_smtp::{Command, Reply, ReversePath};
use sluice_transport::Transport;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::conn::{Conn, Next};
use crate::replies;
use crate::tls::Stream;
use crate::{Policy, Shared};

pub(crate) struct Transaction {
    pub(crate) from: ReversePath,
    pub(crate) recipients: Vec<Recipient>,
    pub(crate) body_8bit: bool,
    pub(crate) smtputf8: bool,
    pub(crate) ret: Option<String>,
    pub(crate) env_id: Option<String>,
    /// BDAT chunks received so far, when the transaction uses CHUNKING.
    pub(crate) chunks: Option<crate::bdat::Chunks>,
}

pub(crate) struct Session {
    pub(crate) conn: Conn,
    pub(crate) peer: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    /// The TLS version and cipher, once the connection is encrypted.
    pub(crate) tls: Option<String>,
    /// The AUTH user, once authenticated.
    pub(crate) user: Option<String>,
    pub(crate) policy: Arc<Policy>,
    pub(crate) transport: Transport,
    pub(crate) helo: Option<String>,
    pub(crate) esmtp: bool,
    pub(crate) tx: Option<Transaction>,
    pub(crate) errors: u32,
    pub(crate) relay_client: bool,
    /// The session counted open, with its injection connection id (ICID), which its log lines carry.
    pub(crate) counted: sluice_transport::InboundSession,
}

pub(crate) enum Flow {
    Continue,
    Close,
}

pub(crate) async fn run(
    stream: TcpStream,
    peer: SocketAddr,
    policy: Arc<Policy>,
    transport: Transport,
    shutdown: CancellationToken,
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let counted = transport.counters().inbound_session();
    tracing::debug!(icid = counted.icid, %peer, connector = %policy.connector.name, "SMTP session");
    let relay_client = policy.connector.relay_networks.iter().any(|n| n.contains(peer.ip()));
    let connector = &policy.connector;
    let conn = Conn::new(
        Stream::Plain(stream),
        connector.connection_inactivity_timeout,
        connector.max_command_line as usize,
        shutdown,
    );
    let mut s = Session {
        conn,
        peer,
        shared,
        tls: None,
        user: None,
        policy,
        transport,
        helo: None,
        esmtp: false,
        tx: None,
        errors: 0,
        relay_client,
        counted,
    };
    let connection_timeout = s.policy.connector.connection_timeout;
    if s.policy.connector.tls_mode == sluice_config::TlsMode::Implicit
        && let Err(e) = s.encrypt().await
    {
        tracing::info!(icid = s.icid(), peer = %s.peer, error = %e, "TLS handshake failed");
        return;
    }
    match tokio::time::timeout(connection_timeout, s.serve()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(icid = s.icid(), peer = %s.peer, error = %e, "session ended"),
        Err(_) => {
            let _ = s.send_refusal(replies::CONNECTION_TIME_LIMIT).await;
        }
    }
}

impl Session {
    async fn serve(&mut self) -> std::io::Result<()> {
        // A draining cluster node takes no new sessions; peers take the mail.
        if self.conn.shutting_down() || self.transport.draining() {
            self.send_refusal(replies::SHUTTING_DOWN).await?;
            return Ok(());
        }
        // A client that talks before the greeting (after `greet_pause`, or already when it is due) is not
        // speaking SMTP: refused and logged, as Exim's smtp_enforce_sync and sendmail's greet_pause do.
        if let Some(read) = self.conn.read_before_greeting(self.policy.connector.greet_pause).await? {
            if read == 0 {
                return Ok(());
            }
            tracing::info!(icid = self.icid(), peer = %self.peer, bytes = self.conn.input.len(), "client talked before the greeting; closing");
            self.send_refusal(replies::TALKED_BEFORE_GREETING).await?;
            return Ok(());
        }
        let banner = replies::GREETING.text(format!("{} ESMTP sluice", self.policy.hostname));
        self.conn.send_now(&banner).await?;
        loop {
            match self.conn.next_line(self.tx.is_some()).await? {
                None => return Ok(()),
                Some(Next::Line(line)) => {
                    if let Flow::Close = self.command(&line).await? {
                        self.conn.flush().await?;
                        return Ok(());
                    }
                }
                Some(bad @ (Next::TooLong | Next::BareLf)) => {
                    // The whole line goes, through its CRLF: nothing after a bare LF runs as a command.
                    self.reply(match bad {
                        Next::TooLong => replies::LINE_TOO_LONG,
                        _ => replies::BARE_LF,
                    });
                    self.conn.skip_line(self.tx.is_some()).await?;
                    if self.count_error() {
                        self.conn.flush().await?;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Adds a canned reply to those written at the next flush.
    pub(crate) fn reply(&mut self, r: replies::Canned) {
        self.reply_with(&r.reply());
    }

    /// Adds a reply made at run time to those written at the next flush; a refusal is counted by its code.
    pub(crate) fn reply_with(&mut self, r: &Reply) {
        self.counted.counters().smtp_reply(r.code);
        self.conn.reply(r);
    }

    /// Sends a refusal that ends the session at once, counted by its code.
    async fn send_refusal(&mut self, r: replies::Canned) -> std::io::Result<()> {
        let reply = r.reply();
        self.counted.counters().smtp_reply(reply.code);
        self.conn.send_now(&reply).await
    }

    /// The session's injection connection id.
    pub(crate) fn icid(&self) -> u64 {
        self.counted.icid
    }

    /// Reads more input for the current step; see [`Conn::fill`].
    pub(crate) async fn fill(&mut self) -> std::io::Result<bool> {
        self.conn.fill(self.tx.is_some()).await
    }

    /// Counts a protocol error; true when the session must end.
    pub(crate) fn count_error(&mut self) -> bool {
        self.errors += 1;
        if self.errors >= self.policy.connector.max_errors {
            self.reply(replies::TOO_MANY_ERRORS);
            return true;
        }
        false
    }

    /// Counts a protocol error and says whether the session goes on.
    pub(crate) fn flow_after_error(&mut self) -> Flow {
        if self.count_error() { Flow::Close } else { Flow::Continue }
    }

    /// Encrypts the connection (implicit TLS, or after `220` to STARTTLS).
    pub(crate) async fn encrypt(&mut self) -> std::io::Result<()> {
        self.tls = self.conn.handshake(self.shared.tls.clone()).await?;
        tracing::debug!(icid = self.icid(), peer = %self.peer, tls = ?self.tls, "TLS established");
        Ok(())
    }

    async fn command(&mut self, line: &[u8]) -> std::io::Result<Flow> {
        // MAIL may carry a UTF-8 address when its own line says SMTPUTF8 (we offer it); RCPT when the
        // transaction's MAIL did.
        let smtputf8 = self.tx.as_ref().is_none_or(|t| t.smtputf8);
        let cmd = match sluice_smtp::parse_command(line, smtputf8) {
            Ok(c) => c,
            Err(e) => {
                self.reply_with(&e.reply());
                return Ok(self.flow_after_error());
            }
        };
        match cmd {
            Command::Ehlo(name) => self.ehlo(name),
            Command::Helo(name) => self.helo(name),
            Command::Mail { .. } if self.helo.is_some() && self.tx.is_none() && self.conn.shutting_down() => {
                // After a 421 the connection closes, always.
                self.reply(replies::SHUTTING_DOWN);
                return Ok(Flow::Close);
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => return self.data().await,
            Command::Rset => {
                self.tx = None;
                self.reply(replies::OK);
            }
            Command::Noop => self.reply(replies::OK),
            Command::Quit => {
                self.reply(replies::BYE);
                return Ok(Flow::Close);
            }
            Command::Vrfy(_) => self.reply(replies::CANNOT_VERIFY),
            Command::Expn(_) => self.reply(replies::NO_EXPN),
            Command::Help => self.reply(replies::HELP),
            Command::Bdat { size, last } => return self.bdat(size, last).await,
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial } => return self.auth(&mechanism, initial).await,
        }
        Ok(Flow::Continue)
    }
}
