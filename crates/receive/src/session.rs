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

use crate::tls::Stream;
use crate::{Policy, Shared};

/// How long a session in a transaction may go on after shutdown began.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
const READ_CHUNK: usize = 64 * 1024;
/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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

/// The next thing in the input, for the command loop and the AUTH exchange.
enum Next {
    Line(Vec<u8>),
    TooLong,
    BareLf,
}

pub(crate) struct Session {
    pub(crate) stream: Stream,
    pub(crate) peer: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    /// The TLS version and cipher, once the connection is encrypted.
    pub(crate) tls: Option<String>,
    /// The AUTH user, once authenticated.
    pub(crate) user: Option<String>,
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
    shared: Arc<Shared>,
) {
    let _ = stream.set_nodelay(true);
    let relay_client = policy.connector.relay_networks.iter().any(|n| n.contains(peer.ip()));
    let mut s = Session {
        stream: Stream::Plain(stream),
        peer,
        shared,
        tls: None,
        user: None,
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
    if s.policy.connector.tls_mode == sluice_config::TlsMode::Implicit
        && let Err(e) = s.handshake().await
    {
        tracing::info!(peer = %s.peer, error = %e, "TLS handshake failed");
        return;
    }
    match tokio::time::timeout(connection_timeout, s.serve()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(peer = %s.peer, error = %e, "session ended"),
        Err(_) => {
            let _ = s.send_now(b"421 4.4.2 Connection time limit exceeded\r\n").await;
        }
    }
}

/// The error that ends a session once `421` was sent: nothing more is read or answered.
fn closed_after_421() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "closed after 421")
}

impl Session {
    async fn serve(&mut self) -> std::io::Result<()> {
        if self.shutdown.is_cancelled() {
            self.send_now(b"421 4.3.2 Service shutting down\r\n").await?;
            return Ok(());
        }
        // A client that talks before the greeting (after `greet_pause`, or already when it is due) is not
        // speaking SMTP: refused and logged, as Exim's smtp_enforce_sync and sendmail's greet_pause do.
        let pause = self.policy.connector.greet_pause;
        if let Ok(read) = tokio::time::timeout(pause, self.stream.read_buf(&mut self.input)).await {
            if read? == 0 {
                return Ok(());
            }
            tracing::info!(peer = %self.peer, bytes = self.input.len(), "client talked before the greeting; closing");
            self.send_now(b"554 5.5.0 SMTP synchronization error: talked before the greeting\r\n").await?;
            return Ok(());
        }
        let banner = format!("220 {} ESMTP sluice\r\n", self.policy.hostname);
        self.send_now(banner.as_bytes()).await?;
        loop {
            match self.next_line().await? {
                None => return Ok(()),
                Some(Next::Line(line)) => {
                    if let Flow::Close = self.command(&line).await? {
                        self.flush().await?;
                        return Ok(());
                    }
                }
                Some(bad @ (Next::TooLong | Next::BareLf)) => {
                    // The whole line goes, through its CRLF: nothing after a bare LF runs as a command.
                    self.reply(match bad {
                        Next::TooLong => Reply::new(500, "5.5.2", "Line too long"),
                        _ => Reply::new(500, "5.5.2", "Command lines end with CRLF"),
                    });
                    self.skip_line().await?;
                    if self.count_error() {
                        self.flush().await?;
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Reads more input; false when the client closed. When the client was idle too long or the server is
    /// stopping, it sends `421` and fails with [`closed_after_421`]: the session ends there, whichever of
    /// its steps was waiting (a command, an AUTH answer, message data, the rest of a bad line).
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
                    self.send_now(b"421 4.4.2 Idle too long, closing connection\r\n").await?;
                    return Err(closed_after_421());
                }
            },
            _ = stop => {
                self.send_now(b"421 4.3.2 Service shutting down\r\n").await?;
                return Err(closed_after_421());
            }
        };
        Ok(n > 0)
    }

    /// Drops the rest of a bad line through its CRLF, reading as much as it takes.
    async fn skip_line(&mut self) -> std::io::Result<()> {
        loop {
            if let Some(n) = sluice_smtp::discard_line(&self.input) {
                self.input.drain(..n);
                return Ok(());
            }
            // A last CR may be the first half of the CRLF.
            let keep = usize::from(self.input.last() == Some(&b'\r'));
            self.input.drain(..self.input.len() - keep);
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
                let mut text = format!(
                    "{}\nPIPELINING\nSIZE {}\n8BITMIME\nSMTPUTF8\nCHUNKING\nDSN\nENHANCEDSTATUSCODES",
                    self.policy.hostname, self.policy.connector.max_message_size
                );
                if self.starttls_offered() {
                    text.push_str("\nSTARTTLS");
                }
                if self.auth_offered() {
                    text.push_str("\nAUTH PLAIN LOGIN");
                }
                self.reply(Reply { code: 250, enhanced: None, text });
            }
            Command::Helo(name) => {
                self.tx = None;
                self.helo = Some(name);
                self.esmtp = false;
                self.reply(Reply { code: 250, enhanced: None, text: self.policy.hostname.clone() });
            }
            Command::Mail { .. } if self.helo.is_some() && self.tx.is_none() && self.shutdown.is_cancelled() => {
                // After a 421 the connection closes, always.
                self.reply(Reply::new(421, "4.3.2", "Service shutting down"));
                return Ok(Flow::Close);
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
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial } => return self.auth(&mechanism, initial).await,
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
        if self.policy.connector.auth == sluice_config::AuthMode::Required && self.user.is_none() {
            return self.reply(Reply::new(530, "5.7.0", "Authentication required"));
        }
        if params.body == Some(sluice_smtp::BodyType::BinaryMime) {
            // BINARYMIME is not advertised (RFC 3030 needs it offered first).
            return self.reply(Reply::new(555, "5.5.4", "BODY=BINARYMIME is not offered"));
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
        // `<postmaster>` without a domain (RFC 5321 4.5.1) is accepted from anyone: the postmaster of the
        // primary (first) accepted domain, or its alias.
        let to = match self.policy.accepted_domains.first() {
            Some(d) if to.domain().is_empty() => {
                sluice_smtp::parse_forward_path(format!("<postmaster@{}>", d.domain).as_bytes(), false).unwrap_or(to)
            }
            _ => to,
        };
        let max = self.policy.connector.max_recipients as usize;
        let accepted = !to.is_address_literal() && self.transport.is_accepted_domain(to.domain());
        let relay_client = self.relay_client || self.user.is_some();
        let mut mailbox = None;
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
            let known = match self.policy.known_mailbox(to.domain(), to.local()) {
                Some(known) => known,
                // No list: trusted clients reach any local part, others only one that exists.
                None if relay_client => Some(to.local().to_owned()),
                None => self.policy.reachable_mailbox(to.domain(), to.local()),
            };
            match known {
                None => return self.reply(Reply::new(550, "5.1.1", "User unknown")),
                // Delivered to the mailbox it matched, whatever the case the client used.
                Some(local) if local != to.local() => mailbox = Some(format!("{local}@{}", to.domain())),
                Some(_) => {}
            }
        } else if !relay_client {
            return self.reply(Reply::new(550, "5.7.1", "Relay access denied"));
        }
        let targets: Vec<String> = match accepted.then(|| self.policy.alias_targets(to.domain(), to.local())).flatten()
        {
            Some(targets) => targets.to_vec(),
            None => vec![mailbox.unwrap_or_else(|| to.to_string())],
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

impl Session {
    /// Writes `bytes` at once (outside the pipelined replies), through TLS when it is on.
    async fn send_now(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await
    }

    fn starttls_offered(&self) -> bool {
        self.tls.is_none()
            && self.shared.tls.is_some()
            && self.policy.connector.tls_mode == sluice_config::TlsMode::Starttls
    }

    /// AUTH is offered when users are configured, once the connection is encrypted or when the client is
    /// on loopback (spec 03), and not again after it succeeded.
    fn auth_offered(&self) -> bool {
        self.policy.connector.auth != sluice_config::AuthMode::Off
            && !self.policy.connector.users.is_empty()
            && self.user.is_none()
            && crate::auth::allowed_on(self.tls.is_some(), self.peer.ip())
    }

    /// The TLS handshake on the plain connection (implicit TLS, or after `220` to STARTTLS).
    async fn handshake(&mut self) -> std::io::Result<()> {
        let Some(acceptor) = self.shared.tls.clone() else {
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
        self.tls = self.stream.tls_details();
        tracing::debug!(peer = %self.peer, tls = ?self.tls, "TLS established");
        Ok(())
    }

    /// STARTTLS (RFC 3207). Whatever the client sent after the command is discarded unread, so that no
    /// plaintext command can be injected into the encrypted session (CVE-2011-0411); the session starts
    /// over, without HELO, transaction or authentication.
    async fn starttls(&mut self) -> std::io::Result<Flow> {
        if self.tls.is_some() {
            self.reply(Reply::new(503, "5.5.1", "TLS is already active"));
            return Ok(Flow::Continue);
        }
        if !self.starttls_offered() {
            self.reply(Reply::new(502, "5.5.1", "STARTTLS is not offered on this connector"));
            return Ok(if self.count_error() { Flow::Close } else { Flow::Continue });
        }
        self.reply(Reply::new(220, "2.0.0", "Ready to start TLS"));
        self.flush().await?;
        if !self.input.is_empty() {
            tracing::info!(peer = %self.peer, bytes = self.input.len(), "input pipelined after STARTTLS discarded");
        }
        self.input.clear();
        if let Err(e) = self.handshake().await {
            tracing::info!(peer = %self.peer, error = %e, "TLS handshake failed");
            return Ok(Flow::Close);
        }
        self.helo = None;
        self.esmtp = false;
        self.tx = None;
        self.user = None;
        Ok(Flow::Continue)
    }

    /// AUTH PLAIN and LOGIN (RFC 4954), against the connector's users; failures are rate-limited per client
    /// address (`auth_failures_per_minute`) and logged.
    async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> std::io::Result<Flow> {
        let connector = &self.policy.connector;
        if connector.auth == sluice_config::AuthMode::Off || connector.users.is_empty() {
            self.reply(Reply::new(502, "5.5.1", "AUTH is not offered on this connector"));
            return Ok(if self.count_error() { Flow::Close } else { Flow::Continue });
        }
        if !self.esmtp {
            self.reply(Reply::new(503, "5.5.1", "Say EHLO first"));
            return Ok(Flow::Continue);
        }
        if self.user.is_some() {
            self.reply(Reply::new(503, "5.5.1", "Already authenticated"));
            return Ok(Flow::Continue);
        }
        if self.tx.is_some() {
            self.reply(Reply::new(503, "5.5.1", "AUTH is not allowed during a mail transaction"));
            return Ok(Flow::Continue);
        }
        if !self.auth_offered() {
            self.reply(Reply::new(538, "5.7.11", "Encryption required for requested authentication mechanism"));
            return Ok(Flow::Continue);
        }
        let limit = connector.auth_failures_per_minute;
        if self.shared.auth_failures.blocked(self.peer.ip(), limit) {
            tracing::warn!(peer = %self.peer, "AUTH refused: too many failures from this address");
            self.reply(Reply::new(454, "4.7.0", "Too many failed authentication attempts, try again later"));
            return Ok(Flow::Continue);
        }
        let initial = match initial.as_deref() {
            Some("=") => Some(Vec::new()),
            Some(text) => match crate::auth::base64_decode(text.as_bytes()) {
                Some(d) => Some(d),
                None => {
                    self.reply(Reply::new(501, "5.5.2", "The initial response is not base64"));
                    return Ok(Flow::Continue);
                }
            },
            None => None,
        };
        let credentials = match mechanism {
            "PLAIN" => {
                let response = match initial {
                    Some(r) => Some(r),
                    None => self.challenge("").await?,
                };
                match response {
                    None => return Ok(Flow::Continue),
                    Some(r) => crate::auth::parse_plain(&r),
                }
            }
            "LOGIN" => {
                let name = match initial {
                    Some(r) => Some(r),
                    None => self.challenge("VXNlcm5hbWU6").await?,
                };
                let Some(name) = name else { return Ok(Flow::Continue) };
                let Some(password) = self.challenge("UGFzc3dvcmQ6").await? else { return Ok(Flow::Continue) };
                match (String::from_utf8(name), String::from_utf8(password)) {
                    (Ok(n), Ok(p)) if !n.is_empty() => Some((n, p)),
                    _ => None,
                }
            }
            _ => {
                self.reply(Reply::new(504, "5.5.4", "Unrecognized authentication mechanism; use PLAIN or LOGIN"));
                return Ok(Flow::Continue);
            }
        };
        let policy = self.policy.clone();
        let (name, ok) = match credentials {
            Some((name, password)) => {
                let n = name.clone();
                // The semaphore is never closed; should it be, the session ends.
                let Ok(_slot) = self.shared.verifications.acquire().await else { return Ok(Flow::Close) };
                let ok =
                    tokio::task::spawn_blocking(move || crate::auth::verify(&policy.connector.users, &n, &password))
                        .await
                        .unwrap_or(false);
                (name, ok)
            }
            None => (String::new(), false),
        };
        if ok {
            tracing::info!(peer = %self.peer, user = %sluice_smtp::printable(&name), "authenticated");
            self.user = Some(name);
            self.reply(Reply::new(235, "2.7.0", "Authentication successful"));
            return Ok(Flow::Continue);
        }
        tracing::warn!(peer = %self.peer, user = %sluice_smtp::printable(&name), mechanism, "authentication failed");
        self.shared.auth_failures.record(self.peer.ip());
        self.reply(Reply::new(535, "5.7.8", "Authentication credentials invalid"));
        Ok(if self.count_error() { Flow::Close } else { Flow::Continue })
    }

    /// Sends `334 <challenge>` and reads the client's base64 answer. `None` when the client cancelled
    /// (`*`), sent something that is not base64 (both answered here), or went away.
    async fn challenge(&mut self, challenge: &str) -> std::io::Result<Option<Vec<u8>>> {
        self.output.extend_from_slice(format!("334 {challenge}\r\n").as_bytes());
        match self.next_line().await? {
            None => Ok(None),
            Some(Next::Line(line)) => {
                if line == b"*" {
                    self.reply(Reply::new(501, "5.0.0", "Authentication cancelled"));
                    return Ok(None);
                }
                Ok(match crate::auth::base64_decode(&line) {
                    Some(d) => Some(d),
                    None => {
                        self.reply(Reply::new(501, "5.5.2", "The response is not base64"));
                        None
                    }
                })
            }
            Some(Next::TooLong | Next::BareLf) => {
                self.skip_line().await?;
                self.reply(Reply::new(500, "5.5.2", "Bad authentication response line"));
                Ok(None)
            }
        }
    }

    /// Waits, flushing the replies collected so far, until the input holds a whole line or a bad one (too
    /// long, or ended by a bare LF: left in the input for the caller); `None` when the client went away.
    async fn next_line(&mut self) -> std::io::Result<Option<Next>> {
        loop {
            let max = self.policy.connector.max_command_line as usize;
            match find_line(&self.input, max) {
                LineStatus::Line { len_without_crlf, consumed } => {
                    let line = self.input[..len_without_crlf].to_vec();
                    self.input.drain(..consumed);
                    return Ok(Some(Next::Line(line)));
                }
                LineStatus::TooLong => return Ok(Some(Next::TooLong)),
                LineStatus::BareLf => return Ok(Some(Next::BareLf)),
                LineStatus::NeedMore => {
                    self.flush().await?;
                    if !self.fill().await? {
                        return Ok(None);
                    }
                }
            }
        }
    }
}
