//! One SMTP session. Commands are read strictly in order from one buffer; replies to pipelined commands
//! are collected and written when the input buffer holds no further complete command, so the server never
//! answers a command before it has read it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sluice_queue_db::Recipient;
use sluice_smtp::{Address, Command, LineStatus, Reply, ReversePath, find_line};
use sluice_transport::Transport;
use sluice_transport::pressure::Level as BackPressure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::Policy;

/// How long a session in a transaction may go on after shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const READ_CHUNK: usize = 64 * 1024;

pub(crate) struct Transaction {
    pub(crate) from: ReversePath,
    pub(crate) recipients: Vec<Recipient>,
    pub(crate) body_8bit: bool,
    pub(crate) smtputf8: bool,
    pub(crate) ret: Option<String>,
    pub(crate) env_id: Option<String>,
    /// BDAT chunks received so far, when the transaction uses CHUNKING.
    pub(crate) chunks: Option<crate::message::Chunks>,
}

pub(crate) struct Session {
    pub(crate) stream: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) policy: Arc<Policy>,
    pub(crate) transport: Transport,
    pub(crate) shutdown: CancellationToken,
    pub(crate) input: Vec<u8>,
    pub(crate) output: Vec<u8>,
    pub(crate) helo: Option<String>,
    pub(crate) esmtp: bool,
    pub(crate) tx: Option<Transaction>,
    pub(crate) errors: u32,
    pub(crate) relay_client: bool,
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
) {
    let _ = stream.set_nodelay(true);
    let relay_client = policy.connector.relay_networks.iter().any(|n| n.contains(peer.ip()));
    let mut s = Session {
        stream,
        peer,
        policy,
        transport,
        shutdown,
        input: Vec::with_capacity(4096),
        output: Vec::with_capacity(1024),
        helo: None,
        esmtp: false,
        tx: None,
        errors: 0,
        relay_client,
    };
    let connection_timeout = s.policy.connector.connection_timeout;
    match tokio::time::timeout(connection_timeout, s.serve()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(peer = %s.peer, error = %e, "session ended"),
        Err(_) => {
            let _ = s.stream.write_all(b"421 4.4.2 Connection time limit exceeded\r\n").await;
        }
    }
}

impl Session {
    async fn serve(&mut self) -> std::io::Result<()> {
        if self.shutdown.is_cancelled() {
            self.stream.write_all(b"421 4.3.2 Service shutting down\r\n").await?;
            return Ok(());
        }
        let banner = format!("220 {} ESMTP sluice\r\n", self.policy.hostname);
        self.stream.write_all(banner.as_bytes()).await?;
        loop {
            let max = self.policy.connector.max_command_line as usize;
            match find_line(&self.input, max) {
                LineStatus::Line { len_without_crlf, consumed } => {
                    let line: Vec<u8> = self.input[..len_without_crlf].to_vec();
                    self.input.drain(..consumed);
                    if let Flow::Close = self.command(&line).await? {
                        self.flush().await?;
                        return Ok(());
                    }
                }
                LineStatus::TooLong => {
                    // Discard up to the end of the over-long line, then go on.
                    self.reply(Reply::new(500, "5.5.2", "Line too long"));
                    self.skip_long_line().await?;
                    if self.count_error() {
                        self.flush().await?;
                        return Ok(());
                    }
                }
                LineStatus::BareLf => {
                    let end = self.input.iter().position(|b| *b == b'\n').map_or(self.input.len(), |p| p + 1);
                    self.input.drain(..end);
                    self.reply(Reply::new(500, "5.5.2", "Command lines end with CRLF"));
                    if self.count_error() {
                        self.flush().await?;
                        return Ok(());
                    }
                }
                LineStatus::NeedMore => {
                    self.flush().await?;
                    if !self.fill().await? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads more input; false when the client closed, timed out, or the server is stopping between
    /// transactions.
    pub(crate) async fn fill(&mut self) -> std::io::Result<bool> {
        let idle = self.policy.connector.connection_inactivity_timeout;
        let in_transaction = self.tx.is_some();
        self.input.reserve(READ_CHUNK);
        let stop = async {
            if in_transaction {
                self.shutdown.cancelled().await;
                tokio::time::sleep(SHUTDOWN_GRACE).await;
            } else {
                self.shutdown.cancelled().await;
            }
        };
        // Reads straight into the spare capacity of the input buffer: no per-read allocation or copy.
        let n = tokio::select! {
            r = tokio::time::timeout(idle, self.stream.read_buf(&mut self.input)) => match r {
                Ok(r) => r?,
                Err(_) => {
                    self.stream.write_all(b"421 4.4.2 Idle too long, closing connection\r\n").await?;
                    return Ok(false);
                }
            },
            _ = stop => {
                self.stream.write_all(b"421 4.3.2 Service shutting down\r\n").await?;
                return Ok(false);
            }
        };
        Ok(n > 0)
    }

    async fn skip_long_line(&mut self) -> std::io::Result<()> {
        loop {
            if let Some(p) = self.input.iter().position(|b| *b == b'\n') {
                self.input.drain(..=p);
                return Ok(());
            }
            self.input.clear();
            if !self.fill().await? {
                return Ok(());
            }
        }
    }

    pub(crate) fn reply(&mut self, r: Reply) {
        self.output.extend_from_slice(r.render().as_bytes());
    }

    /// Writes the collected replies. A client that stops reading is cut off after the inactivity timeout,
    /// so that it cannot hold a connection (or a graceful shutdown) forever.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if !self.output.is_empty() {
            let idle = self.policy.connector.connection_inactivity_timeout;
            match tokio::time::timeout(idle, self.stream.write_all(&self.output)).await {
                Ok(r) => r?,
                Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "client stopped reading")),
            }
            self.output.clear();
        }
        Ok(())
    }

    /// Counts a protocol error; true when the session must end.
    fn count_error(&mut self) -> bool {
        self.errors += 1;
        if self.errors >= self.policy.connector.max_errors {
            self.reply(Reply::new(421, "4.7.0", "Too many errors, closing connection"));
            return true;
        }
        false
    }

    async fn command(&mut self, line: &[u8]) -> std::io::Result<Flow> {
        // MAIL may carry a UTF-8 address when its own line says SMTPUTF8 (we offer it); RCPT when the
        // transaction's MAIL did.
        let smtputf8 = self.tx.as_ref().is_none_or(|t| t.smtputf8);
        let cmd = match sluice_smtp::parse_command(line, smtputf8) {
            Ok(c) => c,
            Err(e) => {
                self.reply(e.reply());
                return Ok(if self.count_error() { Flow::Close } else { Flow::Continue });
            }
        };
        match cmd {
            Command::Ehlo(name) => {
                self.tx = None;
                self.helo = Some(name);
                self.esmtp = true;
                let text = format!(
                    "{}\nPIPELINING\nSIZE {}\n8BITMIME\nSMTPUTF8\nCHUNKING\nENHANCEDSTATUSCODES",
                    self.policy.hostname, self.policy.connector.max_message_size
                );
                self.reply(Reply { code: 250, enhanced: None, text });
            }
            Command::Helo(name) => {
                self.tx = None;
                self.helo = Some(name);
                self.esmtp = false;
                self.reply(Reply { code: 250, enhanced: None, text: self.policy.hostname.clone() });
            }
            Command::Mail { from, params } => self.mail(from, params),
            Command::Rcpt { to, params } => self.rcpt(to, params),
            Command::Data => return self.data().await,
            Command::Rset => {
                self.tx = None;
                self.reply(Reply::new(250, "2.0.0", "Ok"));
            }
            Command::Noop => self.reply(Reply::new(250, "2.0.0", "Ok")),
            Command::Quit => {
                self.reply(Reply::new(221, "2.0.0", "Bye"));
                return Ok(Flow::Close);
            }
            Command::Vrfy(_) => self.reply(Reply::new(252, "2.5.0", "Cannot verify the user, but will accept mail")),
            Command::Expn(_) => self.reply(Reply::new(502, "5.5.1", "EXPN is not available")),
            Command::Help => self.reply(Reply::new(214, "2.0.0", "See RFC 5321")),
            Command::Bdat { size, last } => return self.bdat(size, last).await,
            Command::StartTls | Command::Auth { .. } => {
                self.reply(Reply::new(502, "5.5.1", "Command not offered on this connector"));
                if self.count_error() {
                    return Ok(Flow::Close);
                }
            }
        }
        Ok(Flow::Continue)
    }

    fn mail(&mut self, from: ReversePath, params: sluice_smtp::MailParams) {
        if self.helo.is_none() {
            return self.reply(Reply::new(503, "5.5.1", "Say EHLO or HELO first"));
        }
        if self.tx.is_some() {
            return self.reply(Reply::new(503, "5.5.1", "A transaction is already in progress; RSET first"));
        }
        if self.shutdown.is_cancelled() {
            return self.reply(Reply::new(421, "4.3.2", "Service shutting down"));
        }
        if params.size.is_some_and(|s| s > self.policy.connector.max_message_size) {
            return self.reply(Reply::new(552, "5.3.4", "Message size exceeds the fixed maximum message size"));
        }
        // Back pressure (spec 04): High refuses all new mail, Medium the mail of clients outside
        // relay_networks. The connection stays; the client tries again later.
        let level = self.transport.back_pressure();
        if level == BackPressure::High || (level == BackPressure::Medium && !self.relay_client) {
            return self.reply(Reply::new(452, "4.3.1", "Insufficient system resources, try again later"));
        }
        self.tx = Some(Transaction {
            from,
            recipients: Vec::new(),
            body_8bit: params.body_8bit(),
            smtputf8: params.smtputf8,
            ret: params.ret.map(|r| r.to_string()),
            chunks: None,
            env_id: params.envid.as_ref().map(|x| x.decoded().to_owned()),
        });
        self.reply(Reply::new(250, "2.1.0", "Sender ok"));
    }

    fn rcpt(&mut self, to: Address, params: sluice_smtp::RcptParams) {
        let max = self.policy.connector.max_recipients as usize;
        let accepted = !to.is_address_literal() && self.transport.is_accepted_domain(to.domain());
        let relay_client = self.relay_client;
        let Some(tx) = self.tx.as_mut() else {
            return self.reply(Reply::new(503, "5.5.1", "Need MAIL before RCPT"));
        };
        if tx.recipients.len() >= max {
            return self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        if accepted {
            if to.is_quoted() || !sluice_smtp::safe_local_part(to.local()) {
                return self.reply(Reply::new(550, "5.1.3", "Bad recipient address syntax"));
            }
            if self.policy.known_mailbox(to.domain(), to.local()) == Some(false) {
                return self.reply(Reply::new(550, "5.1.1", "User unknown"));
            }
        } else if !relay_client {
            return self.reply(Reply::new(550, "5.7.1", "Relay access denied"));
        }
        let targets: Vec<String> = match accepted.then(|| self.policy.alias_targets(to.domain(), to.local())).flatten()
        {
            Some(targets) => targets.to_vec(),
            None => vec![to.to_string()],
        };
        let Some(tx) = self.tx.as_mut() else { return };
        // An alias is expanded here, once: its targets become the envelope's recipients, each remembering
        // the address the client gave (ORCPT, for DSNs).
        let orcpt = params
            .orcpt_string()
            .or_else(|| (targets.len() != 1 || targets[0] != to.to_string()).then(|| format!("rfc822;{to}")));
        let new: Vec<String> =
            targets.into_iter().filter(|t| !tx.recipients.iter().any(|r| r.address.eq_ignore_ascii_case(t))).collect();
        if tx.recipients.len() + new.len() > max {
            return self.reply(Reply::new(452, "4.5.3", "Too many recipients"));
        }
        for address in new {
            tx.recipients.push(Recipient { address, notify: params.notify_string(), orcpt: orcpt.clone() });
        }
        self.reply(Reply::new(250, "2.1.5", "Recipient ok"));
    }
}
