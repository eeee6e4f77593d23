//! The SMTP client (and LMTP, RFC 2033, which differs in its greeting and its per-recipient replies after
//! DATA). One connection delivers many messages in turn; commands are pipelined when the server offers
//! PIPELINING. A session is opened with STARTTLS as the send connector's `tls` says and authenticates with
//! its credentials (only over TLS); an 8-bit body goes to a next hop without 8BITMIME as quoted-printable
//! (`downgrade`); recipients refused with `452` (too many recipients) go in a following transaction.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_queue_db::RecipientRef;
use sluice_smtp::{
    BodyType, Command, DotStuffer, MailParams, Orcpt, RcptParams, Reply, XText, parse_ehlo_keywords, parse_reply,
};
use sluice_transport::{
    BoxFuture, Credentials, DeliveryConnection, DeliveryError, Handoff, Opening, Outbound, RecipientOutcome,
    SendSession, TlsFailure, TlsPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

use crate::downgrade;
use crate::tls::{ClientTls, Stream, handshake_failure};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The bound on a TLS handshake, as on the receive side.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// The body goes out in pieces of this size.
const SEND_PIECE: usize = 256 << 10;
/// RFC 5321 4.5.3.2 asks for minutes; one bound for every reply keeps a dead peer from holding a worker.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Lmtp,
}

/// An open SMTP or LMTP session, after EHLO/LHLO (and STARTTLS and AUTH where the connector asks for them).
pub struct ClientConnection {
    stream: Stream,
    buf: Vec<u8>,
    protocol: Protocol,
    extensions: EhloExtensions,
    peer: String,
    /// The next hop's host name, as routing found it (a delivery report's `Remote-MTA`).
    name: String,
    /// A following transaction failed after an earlier one delivered: the session cannot be trusted with
    /// another (a late reply could be taken for the next command's).
    broken: bool,
}

/// The extensions of the next hop's EHLO (or LHLO) reply that the client uses; none after HELO.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct EhloExtensions {
    /// `PIPELINING` (RFC 2920): the envelope goes out in one write.
    pipelining: bool,
    /// `SIZE` (RFC 1870): MAIL carries the body's size.
    size: bool,
    /// `8BITMIME` (RFC 6152): MAIL declares an 8-bit body.
    eight_bit_mime: bool,
    /// `SMTPUTF8` (RFC 6531): a message that needs it can go.
    smtputf8: bool,
    /// The next hop takes DSN parameters (RFC 3461), which are then passed on.
    dsn: bool,
    /// `STARTTLS` (RFC 3207).
    starttls: bool,
    /// `AUTH` with the `PLAIN` mechanism (RFC 4954, RFC 4616).
    auth_plain: bool,
    /// `AUTH` with the `LOGIN` mechanism (used when PLAIN is not offered).
    auth_login: bool,
}

impl EhloExtensions {
    /// The keywords of an EHLO reply; unknown ones are ignored.
    fn parse(ehlo: &Reply) -> EhloExtensions {
        let mut extensions = EhloExtensions::default();
        for (keyword, params) in parse_ehlo_keywords(ehlo) {
            match keyword.as_str() {
                "PIPELINING" => extensions.pipelining = true,
                "SIZE" => extensions.size = true,
                "8BITMIME" => extensions.eight_bit_mime = true,
                "SMTPUTF8" => extensions.smtputf8 = true,
                "DSN" => extensions.dsn = true,
                "STARTTLS" => extensions.starttls = true,
                "AUTH" => {
                    for mechanism in params.split_ascii_whitespace() {
                        extensions.auth_plain |= mechanism.eq_ignore_ascii_case("PLAIN");
                        extensions.auth_login |= mechanism.eq_ignore_ascii_case("LOGIN");
                    }
                }
                _ => {}
            }
        }
        extensions
    }
}

/// The envelope commands of one message, rendered with CRLF: MAIL and one RCPT per recipient (DATA follows).
struct Envelope {
    mail: String,
    rcpts: Vec<String>,
}

/// The next hop's replies to MAIL, to each RCPT and to DATA.
struct EnvelopeReplies {
    mail: Reply,
    rcpts: Vec<Reply>,
    data: Reply,
}

/// How a lockstep envelope ended: every command answered, or the transaction over early (MAIL refused, or every
/// RCPT), with each recipient's outcome.
enum Lockstep {
    Replies(EnvelopeReplies),
    Ended(Vec<RecipientOutcome>),
}

/// The body that goes out: the stored one, read a piece at a time, or its 7-bit conversion.
#[derive(Clone, Copy)]
enum Content<'a> {
    Stored,
    Converted(&'a [u8]),
}

impl Content<'_> {
    fn len(&self, msg: &Outbound) -> u64 {
        match self {
            Content::Stored => msg.body.len(),
            Content::Converted(body) => body.len() as u64,
        }
    }
}

/// What one transaction did with its recipients (those of the message, or the ones a `452` left over).
struct Round {
    /// One per recipient of the transaction, in order.
    outcomes: Vec<RecipientOutcome>,
    /// The positions (in the transaction's recipients) refused with `452` at RCPT: too many recipients for
    /// this transaction (RFC 5321 4.5.3.1.10), to be sent in the next one.
    too_many: Vec<usize>,
    /// Whether the next hop accepted at least one RCPT.
    accepted: bool,
}

/// MAIL and the RCPTs for a message, with the parameters the next hop's extensions allow: for every
/// recipient of the copy, or for those at `only` (positions among them).
fn envelope(extensions: &EhloExtensions, msg: &Outbound, size: u64, only: Option<&[usize]>) -> Envelope {
    let env = &msg.envelope;
    // RFC 3461 4: a relay passes the DSN parameters on to a next hop that takes them.
    let dsn = extensions.dsn;
    let params = MailParams {
        size: extensions.size.then_some(size),
        body: (env.body_8bit && extensions.eight_bit_mime).then_some(BodyType::EightBitMime),
        smtputf8: env.smtputf8 && extensions.smtputf8,
        // The stored value is what Ret's Display wrote when the message was received.
        ret: env.ret().filter(|_| dsn).and_then(|ret| ret.parse().ok()),
        envid: env.env_id().filter(|_| dsn).and_then(|id| XText::encode(id).ok()),
        auth: None,
    };
    let rcpts = match only {
        None => msg.recipients().map(|r| rcpt_command(r, dsn)).collect(),
        Some(positions) => {
            let all: Vec<RecipientRef<'_>> = msg.recipients().collect();
            positions.iter().filter_map(|&i| all.get(i)).map(|r| rcpt_command(*r, dsn)).collect()
        }
    };
    Envelope { mail: mail_command(env.from_address(), params), rcpts }
}

/// `MAIL FROM:<from>` and its parameters, rendered by the smtp crate. The address was checked when the message
/// was received (or is taken as a replay file stored it) and goes out as stored: parsing it again here would
/// only render the same bytes.
fn mail_command(from: &str, params: MailParams) -> String {
    format!("MAIL FROM:<{from}>{params}\r\n")
}

/// `RCPT TO:<address>` and, when the next hop takes DSN parameters, the recipient's `NOTIFY=` and `ORCPT=`.
/// The stored `NOTIFY=` is what Notify's Display wrote; the stored `ORCPT=` is decoded, and is encoded again.
fn rcpt_command(recipient: RecipientRef<'_>, dsn: bool) -> String {
    let params = if dsn {
        RcptParams {
            notify: recipient.notify.and_then(|notify| notify.parse().ok()),
            orcpt: recipient.orcpt.and_then(|orcpt| orcpt.split_once(';')).and_then(|(addr_type, address)| {
                Some(Orcpt { addr_type: addr_type.to_owned(), address: XText::encode(address).ok()? })
            }),
        }
    } else {
        RcptParams::default()
    };
    format!("RCPT TO:<{}>{params}\r\n", recipient.address)
}

fn outcome(r: &Reply) -> RecipientOutcome {
    RecipientOutcome::of(r.clone())
}

/// How a session is opened, whatever the host: our name, the protocol, the send connector's settings
/// (STARTTLS policy, credentials; `None` for LMTP to a mailbox store) and the agent's TLS configurations.
#[derive(Debug, Clone, Copy)]
pub struct SessionSpec<'a> {
    /// Our name in EHLO (LHLO).
    pub helo: &'a str,
    pub protocol: Protocol,
    pub session: Option<&'a SendSession>,
    /// The TLS client configurations (the agent's, built once).
    pub tls: &'a ClientTls,
}

impl ClientConnection {
    /// Opens a session with the host `name` at `addr`: TCP, the greeting, EHLO (or LHLO; HELO after a refused
    /// EHLO), then, with a send connector's settings, STARTTLS and EHLO again as its `tls` says, and AUTH with
    /// its credentials. `name` is the host's name as routing found it (for TLS, SNI and the certificate
    /// check); `peer` is how errors name the next hop.
    pub async fn connect_to(
        addr: SocketAddr,
        name: &str,
        peer: &str,
        spec: &SessionSpec<'_>,
    ) -> Result<ClientConnection, DeliveryError> {
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(DeliveryError::Connect { peer: peer.to_owned(), source }),
            Err(_) => return Err(DeliveryError::ConnectTimeout { peer: peer.to_owned() }),
        };
        let _ = stream.set_nodelay(true);
        let mut c = ClientConnection {
            stream: Stream::Plain(stream),
            buf: Vec::with_capacity(4096),
            protocol: spec.protocol,
            extensions: EhloExtensions::default(),
            peer: peer.to_owned(),
            name: name.to_owned(),
            broken: false,
        };
        let greeting = c.read_reply().await?;
        if greeting.code != 220 {
            return Err(DeliveryError::Refused { reply: greeting, stage: Opening::Greeting, peer: peer.to_owned() });
        }
        c.hello(spec.helo).await?;
        let Some(session) = spec.session else { return Ok(c) };
        let mut c = c.secure(session.tls, name, addr, spec).await?;
        if let Some(credentials) = &session.auth {
            c.authenticate(credentials).await?;
        }
        Ok(c)
    }

    /// EHLO (LHLO; HELO after a refused EHLO), and the extensions its reply offers.
    async fn hello(&mut self, helo: &str) -> Result<(), DeliveryError> {
        let hello = match self.protocol {
            // LHLO is not an SMTP command; it takes EHLO's argument (RFC 2033 4.1).
            Protocol::Lmtp => format!("LHLO {helo}\r\n"),
            Protocol::Smtp => Command::Ehlo(helo.to_owned()).render(),
        };
        self.send(hello.as_bytes()).await?;
        let mut ehlo = self.read_reply().await?;
        self.extensions = EhloExtensions::default();
        if ehlo.code != 250 && self.protocol == Protocol::Smtp {
            self.send(Command::Helo(helo.to_owned()).render().as_bytes()).await?;
            ehlo = self.read_reply().await?;
        } else {
            self.extensions = EhloExtensions::parse(&ehlo);
        }
        if ehlo.code != 250 {
            return Err(DeliveryError::Refused { reply: ehlo, stage: Opening::Hello, peer: self.peer.clone() });
        }
        Ok(())
    }

    /// STARTTLS as `policy` says, then EHLO again over TLS. `opportunistic` upgrades whenever STARTTLS is
    /// offered, taking any certificate, and stays in plain text only when it is not offered; `required`
    /// needs the offer and a certificate trusted for `name` (SNI `name`); `off` never upgrades. Once
    /// STARTTLS is sent, anything but a finished handshake fails the attempt (`4.7.5`).
    async fn secure(
        self,
        policy: TlsPolicy,
        name: &str,
        addr: SocketAddr,
        spec: &SessionSpec<'_>,
    ) -> Result<ClientConnection, DeliveryError> {
        let verify = match policy {
            TlsPolicy::Off => return Ok(self),
            _ if self.stream.is_tls() => return Ok(self),
            TlsPolicy::Opportunistic if !self.extensions.starttls => return Ok(self),
            TlsPolicy::Opportunistic => false,
            TlsPolicy::Required if !self.extensions.starttls => return Err(self.tls_failed(TlsFailure::NotOffered)),
            TlsPolicy::Required => true,
        };
        let mut c = self;
        c.send(Command::StartTls.render().as_bytes()).await?;
        let reply = c.read_reply().await?;
        if reply.code != 220 {
            return Err(c.tls_failed(TlsFailure::Refused(reply)));
        }
        let server_name = match ServerName::try_from(name.to_owned()) {
            Ok(server_name) => server_name,
            // Without a certificate check the name only goes into SNI, which an address leaves out.
            Err(_) if !verify => ServerName::IpAddress(addr.ip().into()),
            Err(e) => return Err(c.tls_failed(TlsFailure::Certificate(format!("{name:?} is not a host name: {e}")))),
        };
        let ClientConnection { stream, mut buf, protocol, peer, name: host, extensions, broken } = c;
        let tcp = match stream {
            Stream::Plain(tcp) => tcp,
            // Not reached: an encrypted session returned before STARTTLS.
            tls @ Stream::Tls(_) => {
                return Ok(ClientConnection { stream: tls, buf, protocol, extensions, peer, name: host, broken });
            }
        };
        // RFC 3207 4.2: nothing the next hop sent in plain text after its 220 belongs to the encrypted session
        // (a man in the middle could have added it).
        buf.clear();
        let connector = TlsConnector::from(spec.tls.config(verify));
        let tls = match timeout(HANDSHAKE_TIMEOUT, connector.connect(server_name, tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => return Err(DeliveryError::Tls { peer, failure: handshake_failure(&error) }),
            Err(_) => return Err(DeliveryError::Tls { peer, failure: TlsFailure::Handshake("timed out".into()) }),
        };
        let mut c = ClientConnection {
            stream: Stream::Tls(Box::new(tls)),
            buf,
            protocol,
            extensions: EhloExtensions::default(),
            peer,
            name: host,
            broken,
        };
        // RFC 3207 4.2: what the plain-text EHLO offered is forgotten; the extensions are asked for again.
        c.hello(spec.helo).await?;
        Ok(c)
    }

    fn tls_failed(&self, failure: TlsFailure) -> DeliveryError {
        DeliveryError::Tls { peer: self.peer.clone(), failure }
    }

    /// AUTH PLAIN (or LOGIN when only LOGIN is offered) with the connector's credentials, only over TLS:
    /// without it the credentials are not sent at all (`4.7.11`). A refusal fails the attempt with the next
    /// hop's reply.
    async fn authenticate(&mut self, credentials: &Credentials) -> Result<(), DeliveryError> {
        if !self.stream.is_tls() {
            return Err(DeliveryError::AuthWithoutTls { peer: self.peer.clone() });
        }
        let Credentials { user, password } = credentials;
        let reply = if self.extensions.auth_plain {
            // RFC 4616: the authorization identity (empty: the same), the user and the password, NUL-separated,
            // as the initial response (RFC 4954 4).
            let token = base64(format!("\0{user}\0{password}").as_bytes());
            let auth = Command::Auth { mechanism: "PLAIN".to_owned(), initial: Some(token) };
            self.send(auth.render().as_bytes()).await?;
            self.read_reply().await?
        } else if self.extensions.auth_login {
            self.send(Command::Auth { mechanism: "LOGIN".to_owned(), initial: None }.render().as_bytes()).await?;
            let mut reply = self.read_reply().await?;
            for answer in [user, password] {
                if reply.code != 334 {
                    break;
                }
                self.send(format!("{}\r\n", base64(answer.as_bytes())).as_bytes()).await?;
                reply = self.read_reply().await?;
            }
            reply
        } else {
            return Err(DeliveryError::AuthNotOffered { peer: self.peer.clone() });
        };
        if reply.code != 235 {
            return Err(DeliveryError::Refused { reply, stage: Opening::Auth, peer: self.peer.clone() });
        }
        Ok(())
    }

    /// Writes `bytes` and flushes them (TLS keeps records buffered until then; for plain TCP the flush
    /// returns at once).
    async fn send(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let stream = &mut self.stream;
        let write = async move {
            stream.write_all(bytes).await?;
            stream.flush().await
        };
        match timeout(REPLY_TIMEOUT, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(source)) => Err(DeliveryError::Lost { peer: self.peer.clone(), source }),
            Err(_) => Err(DeliveryError::WriteTimeout { peer: self.peer.clone() }),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, DeliveryError> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(source) => return Err(DeliveryError::BadReply { peer: self.peer.clone(), source }),
            }
            if self.buf.len() > 64 * 1024 {
                return Err(DeliveryError::ReplyTooLong { peer: self.peer.clone() });
            }
            let mut chunk = [0u8; 4096];
            let n = match timeout(REPLY_TIMEOUT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return Err(DeliveryError::Closed { peer: self.peer.clone() }),
                Ok(Ok(n)) => n,
                Ok(Err(source)) => return Err(DeliveryError::Lost { peer: self.peer.clone(), source }),
                Err(_) => return Err(DeliveryError::ReplyTimeout { peer: self.peer.clone() }),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// One message: the envelope, then (when the next hop takes it) the body, then each recipient's outcome.
    /// Recipients refused with `452` (too many recipients) go in a following transaction on the same
    /// connection, again while the one before accepted any recipient; those never accepted keep their `452`
    /// (transient).
    async fn transaction(&mut self, msg: &Outbound) -> Result<Vec<RecipientOutcome>, DeliveryError> {
        if self.broken {
            let source = std::io::Error::other("the session failed in an earlier transaction");
            return Err(DeliveryError::Lost { peer: self.peer.clone(), source });
        }
        if msg.envelope.smtputf8 && !self.extensions.smtputf8 {
            // RFC 6531 3.2: a message that needs SMTPUTF8 cannot go to a server that lacks it.
            let why =
                Reply::new(550, "5.6.7", format!("{} does not support SMTPUTF8, which this message needs", self.peer));
            return Ok(msg.recipients().map(|_| RecipientOutcome::Permanent(why.clone())).collect());
        }
        let converted = if msg.envelope.body_8bit && !self.extensions.eight_bit_mime {
            // RFC 6152 3: an 8-bit message goes to a next hop without 8BITMIME only converted to 7 bit.
            match downgrade::to_seven_bit(&read_whole(msg)?, msg.envelope.smtputf8) {
                Ok(body) => Some(body),
                Err(why) => {
                    let why = Reply::new(
                        550,
                        "5.6.3",
                        format!("{} does not support 8BITMIME and this message cannot be converted: {why}", self.peer),
                    );
                    return Ok(msg.recipients().map(|_| RecipientOutcome::Permanent(why.clone())).collect());
                }
            }
        } else {
            None
        };
        let content = converted.as_deref().map_or(Content::Stored, Content::Converted);
        let first = self.round(msg, content, None).await?;
        if first.too_many.is_empty() {
            return Ok(first.outcomes);
        }
        let Round { mut outcomes, too_many, mut accepted } = first;
        let mut pending = too_many;
        while accepted && !pending.is_empty() {
            let round = match self.round(msg, content, Some(&pending)).await {
                Ok(round) => round,
                Err(error) => {
                    // The recipients an earlier transaction delivered stay delivered: the failure is only
                    // theirs that were still pending (transient, whatever its code), and the session is over.
                    let why = error.reply();
                    for &i in &pending {
                        if let Some(slot) = outcomes.get_mut(i) {
                            *slot = RecipientOutcome::Transient(why.clone());
                        }
                    }
                    self.broken = true;
                    return Ok(outcomes);
                }
            };
            accepted = round.accepted;
            let next = round.too_many.iter().filter_map(|&i| pending.get(i).copied()).collect();
            for (&i, outcome) in pending.iter().zip(round.outcomes) {
                if let Some(slot) = outcomes.get_mut(i) {
                    *slot = outcome;
                }
            }
            pending = next;
        }
        Ok(outcomes)
    }

    /// One transaction for the copy's recipients, or those at `only`.
    async fn round(
        &mut self,
        msg: &Outbound,
        content: Content<'_>,
        only: Option<&[usize]>,
    ) -> Result<Round, DeliveryError> {
        let envelope = envelope(&self.extensions, msg, content.len(msg), only);
        let replies = if self.extensions.pipelining {
            self.send_envelope_pipelined(&envelope).await?
        } else {
            match self.send_envelope_lockstep(&envelope).await? {
                Lockstep::Replies(replies) => replies,
                // Nothing was accepted: there is no following transaction.
                Lockstep::Ended(outcomes) => return Ok(Round { outcomes, too_many: Vec::new(), accepted: false }),
            }
        };
        let mail_taken = replies.mail.code / 100 == 2;
        let accepted = mail_taken && replies.rcpts.iter().any(|r| r.code / 100 == 2);
        let too_many = if mail_taken {
            replies.rcpts.iter().enumerate().filter(|(_, r)| r.code == 452).map(|(i, _)| i).collect()
        } else {
            Vec::new()
        };
        if let Some(outcomes) = self.refused(&replies).await? {
            return Ok(Round { outcomes, too_many, accepted });
        }
        self.send_body(msg, content).await?;
        let outcomes = self.outcomes(&replies).await?;
        Ok(Round { outcomes, too_many, accepted })
    }

    /// Sends MAIL, every RCPT and DATA in one write (RFC 2920), then reads their replies.
    async fn send_envelope_pipelined(&mut self, envelope: &Envelope) -> Result<EnvelopeReplies, DeliveryError> {
        let mut commands =
            Vec::with_capacity(envelope.mail.len() + envelope.rcpts.iter().map(String::len).sum::<usize>() + 6);
        commands.extend_from_slice(envelope.mail.as_bytes());
        for rcpt in &envelope.rcpts {
            commands.extend_from_slice(rcpt.as_bytes());
        }
        commands.extend_from_slice(Command::Data.render().as_bytes());
        self.send(&commands).await?;
        let mail = self.read_reply().await?;
        let mut rcpts = Vec::with_capacity(envelope.rcpts.len());
        for _ in &envelope.rcpts {
            rcpts.push(self.read_reply().await?);
        }
        Ok(EnvelopeReplies { mail, rcpts, data: self.read_reply().await? })
    }

    /// Sends MAIL, every RCPT and DATA one at a time, each after the reply to the one before. The transaction
    /// ends (with RSET) as soon as MAIL is refused or once every RCPT is.
    async fn send_envelope_lockstep(&mut self, envelope: &Envelope) -> Result<Lockstep, DeliveryError> {
        self.send(envelope.mail.as_bytes()).await?;
        let mail = self.read_reply().await?;
        if mail.code / 100 != 2 {
            let _ = self.reset().await;
            return Ok(Lockstep::Ended(envelope.rcpts.iter().map(|_| outcome(&mail)).collect()));
        }
        let mut rcpts = Vec::with_capacity(envelope.rcpts.len());
        for rcpt in &envelope.rcpts {
            self.send(rcpt.as_bytes()).await?;
            rcpts.push(self.read_reply().await?);
        }
        if rcpts.iter().all(|r| r.code / 100 != 2) {
            let _ = self.reset().await;
            return Ok(Lockstep::Ended(rcpts.iter().map(outcome).collect()));
        }
        self.send(Command::Data.render().as_bytes()).await?;
        Ok(Lockstep::Replies(EnvelopeReplies { mail, rcpts, data: self.read_reply().await? }))
    }

    /// The outcomes when the envelope's replies leave no body to send: MAIL refused, or DATA not answered with
    /// 354. A `421` (the next hop is closing) fails the whole attempt.
    async fn refused(&mut self, replies: &EnvelopeReplies) -> Result<Option<Vec<RecipientOutcome>>, DeliveryError> {
        let EnvelopeReplies { mail, rcpts, data } = replies;
        if mail.code == 421 || data.code == 421 {
            return Err(DeliveryError::Closing(if mail.code == 421 { mail } else { data }.clone()));
        }
        if mail.code / 100 != 2 {
            if data.code == 354 {
                // Out of step: a next hop that refused MAIL cannot have a transaction to take data for. An
                // end of data now could deliver an empty message into whatever transaction it does have;
                // dropping the connection makes it discard everything.
                return Err(DeliveryError::OutOfStep { peer: self.peer.clone(), reply: mail.clone() });
            }
            let _ = self.reset().await;
            return Ok(Some(rcpts.iter().map(|_| outcome(mail)).collect()));
        }
        if data.code != 354 {
            // MAIL opened a transaction that DATA did not end, whether or not a recipient was taken: without
            // RSET the next MAIL on this connection would meet "MAIL already given", and its RCPTs would join
            // this transaction's sender.
            let _ = self.reset().await;
            return Ok(Some(
                rcpts.iter().map(|r| if r.code / 100 == 2 { outcome(data) } else { outcome(r) }).collect(),
            ));
        }
        Ok(None)
    }

    /// Sends the body, dot-stuffed, and the end of data.
    ///
    /// The body is read and sent a piece at a time. A piece that cannot be read (or fails the body's
    /// checksum, checked with the last piece) ends the attempt before the end of data: the connection
    /// is dropped and the next hop discards what it got.
    /// A body of one piece goes out with its end of data in one write; so does a converted body, which is
    /// in memory whole.
    async fn send_body(&mut self, msg: &Outbound, content: Content<'_>) -> Result<(), DeliveryError> {
        let mut stuffer = DotStuffer::new();
        if let Content::Converted(body) = content {
            let mut data = Vec::with_capacity(body.len() + body.len() / 64 + 8);
            stuffer.feed(body, &mut data);
            stuffer.finish(&mut data);
            return self.send(&data).await;
        }
        let mut chunks = msg.body.chunks();
        let mut next = chunks.next_chunk(SEND_PIECE).map_err(DeliveryError::Body)?;
        let mut data = Vec::with_capacity(msg.body.len().min(SEND_PIECE as u64) as usize + 64);
        loop {
            data.clear();
            if let Some(piece) = next.take() {
                stuffer.feed(&piece, &mut data);
            }
            next = chunks.next_chunk(SEND_PIECE).map_err(DeliveryError::Body)?;
            if next.is_none() {
                stuffer.finish(&mut data);
                self.send(&data).await?;
                return Ok(());
            }
            self.send(&data).await?;
        }
    }

    /// Each recipient's outcome after the end of data: its RCPT refusal, or the reply to the data.
    async fn outcomes(&mut self, replies: &EnvelopeReplies) -> Result<Vec<RecipientOutcome>, DeliveryError> {
        let mut out: Vec<RecipientOutcome> = Vec::with_capacity(replies.rcpts.len());
        if self.protocol == Protocol::Lmtp {
            // LMTP: one reply after the data for every accepted recipient, in order.
            for r in &replies.rcpts {
                out.push(if r.code / 100 == 2 { outcome(&self.read_reply().await?) } else { outcome(r) });
            }
        } else {
            let final_reply = self.read_reply().await?;
            for r in &replies.rcpts {
                out.push(if r.code / 100 == 2 { outcome(&final_reply) } else { outcome(r) });
            }
        }
        Ok(out)
    }

    async fn reset(&mut self) -> Result<(), DeliveryError> {
        self.send(Command::Rset.render().as_bytes()).await?;
        self.read_reply().await.map(|_| ())
    }
}

impl DeliveryConnection for ClientConnection {
    fn deliver<'a>(&'a mut self, msg: &'a Outbound) -> BoxFuture<'a, Result<Vec<RecipientOutcome>, DeliveryError>> {
        Box::pin(self.transaction(msg))
    }

    fn remote_mta(&self) -> Option<&str> {
        Some(&self.name)
    }

    fn handoff(&self) -> Handoff {
        match self.protocol {
            Protocol::Lmtp => Handoff::Delivered,
            Protocol::Smtp if self.extensions.dsn => Handoff::PassedOn,
            Protocol::Smtp => Handoff::Relayed,
        }
    }

    fn quit(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if self.send(Command::Quit.render().as_bytes()).await.is_ok() {
                let _ = timeout(Duration::from_secs(5), self.read_reply()).await;
            }
        })
    }
}

/// The whole stored body, for a conversion: its pieces read in turn (the checksum is checked with the last).
fn read_whole(msg: &Outbound) -> Result<Vec<u8>, DeliveryError> {
    let mut body = Vec::with_capacity(usize::try_from(msg.body.len()).unwrap_or(0));
    let mut chunks = msg.body.chunks();
    while let Some(piece) = chunks.next_chunk(SEND_PIECE).map_err(DeliveryError::Body)? {
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// Standard base64 (RFC 4648 4) with padding, for AUTH.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let n = group.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= group.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
