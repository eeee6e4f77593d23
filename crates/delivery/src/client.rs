//! The SMTP client (and LMTP, RFC 2033, which differs in its greeting and its per-recipient replies after
//! DATA). One connection delivers many messages in turn; commands are pipelined when the server offers
//! PIPELINING.

use std::net::SocketAddr;
use std::time::Duration;

use sluice_queue_db::RecipientRef;
use sluice_smtp::{
    BodyType, Command, DotStuffer, MailParams, Orcpt, RcptParams, Reply, XText, parse_ehlo_keywords, parse_reply,
};
use sluice_transport::{
    BoxFuture, DeliveryConnection, DeliveryError, Handoff, Opening, Outbound, RecipientOutcome, SendSession,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// The body goes out in pieces of this size.
const SEND_PIECE: usize = 256 << 10;
/// RFC 5321 4.5.3.2 asks for minutes; one bound for every reply keeps a dead peer from holding a worker.
const REPLY_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Lmtp,
}

/// An open SMTP or LMTP session, after EHLO/LHLO.
pub struct ClientConnection {
    stream: TcpStream,
    buf: Vec<u8>,
    protocol: Protocol,
    extensions: EhloExtensions,
    peer: String,
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
}

impl EhloExtensions {
    /// The keywords of an EHLO reply; unknown ones are ignored.
    fn parse(ehlo: &Reply) -> EhloExtensions {
        let mut extensions = EhloExtensions::default();
        for (keyword, _) in parse_ehlo_keywords(ehlo) {
            match keyword.as_str() {
                "PIPELINING" => extensions.pipelining = true,
                "SIZE" => extensions.size = true,
                "8BITMIME" => extensions.eight_bit_mime = true,
                "SMTPUTF8" => extensions.smtputf8 = true,
                "DSN" => extensions.dsn = true,
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

/// MAIL and the RCPTs for a message, with the parameters the next hop's extensions allow.
fn envelope(extensions: &EhloExtensions, msg: &Outbound) -> Envelope {
    let env = &msg.envelope;
    // RFC 3461 4: a relay passes the DSN parameters on to a next hop that takes them.
    let dsn = extensions.dsn;
    let params = MailParams {
        size: extensions.size.then(|| msg.body.len()),
        body: (env.body_8bit && extensions.eight_bit_mime).then_some(BodyType::EightBitMime),
        smtputf8: env.smtputf8 && extensions.smtputf8,
        // The stored value is what Ret's Display wrote when the message was received.
        ret: env.ret().filter(|_| dsn).and_then(|ret| ret.parse().ok()),
        envid: env.env_id().filter(|_| dsn).and_then(|id| XText::encode(id).ok()),
        auth: None,
    };
    Envelope {
        mail: mail_command(env.from_address(), params),
        rcpts: msg.recipients().map(|r| rcpt_command(r, dsn)).collect(),
    }
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

/// How a session is opened, whatever the host: our name, the protocol, and the send connector's settings
/// (STARTTLS policy, credentials; `None` for LMTP to a mailbox store).
#[derive(Debug, Clone, Copy)]
pub struct SessionSpec<'a> {
    /// Our name in EHLO (LHLO).
    pub helo: &'a str,
    pub protocol: Protocol,
    pub session: Option<&'a SendSession>,
}

impl ClientConnection {
    /// Opens a session with the host `name` at `addr`: TCP, the greeting, EHLO (or LHLO; HELO after a refused
    /// EHLO). `name` is the host's name as routing found it (for TLS, SNI and the certificate check);
    /// `peer` is how errors name the next hop.
    pub async fn connect_to(
        addr: SocketAddr,
        name: &str,
        peer: &str,
        spec: &SessionSpec<'_>,
    ) -> Result<ClientConnection, DeliveryError> {
        let _ = name;
        let (helo, protocol) = (spec.helo, spec.protocol);
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(source)) => return Err(DeliveryError::Connect { peer: peer.to_owned(), source }),
            Err(_) => return Err(DeliveryError::ConnectTimeout { peer: peer.to_owned() }),
        };
        let _ = stream.set_nodelay(true);
        let mut c = ClientConnection {
            stream,
            buf: Vec::with_capacity(4096),
            protocol,
            extensions: EhloExtensions::default(),
            peer: peer.to_owned(),
        };
        let greeting = c.read_reply().await?;
        if greeting.code != 220 {
            return Err(DeliveryError::Refused { reply: greeting, stage: Opening::Greeting, peer: peer.to_owned() });
        }
        let hello = match protocol {
            // LHLO is not an SMTP command; it takes EHLO's argument (RFC 2033 4.1).
            Protocol::Lmtp => format!("LHLO {helo}\r\n"),
            Protocol::Smtp => Command::Ehlo(helo.to_owned()).render(),
        };
        c.send(hello.as_bytes()).await?;
        let mut ehlo = c.read_reply().await?;
        if ehlo.code != 250 && protocol == Protocol::Smtp {
            c.send(Command::Helo(helo.to_owned()).render().as_bytes()).await?;
            ehlo = c.read_reply().await?;
        } else {
            c.extensions = EhloExtensions::parse(&ehlo);
        }
        if ehlo.code != 250 {
            return Err(DeliveryError::Refused { reply: ehlo, stage: Opening::Hello, peer: peer.to_owned() });
        }
        Ok(c)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        match timeout(REPLY_TIMEOUT, self.stream.write_all(bytes)).await {
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
    async fn transaction(&mut self, msg: &Outbound) -> Result<Vec<RecipientOutcome>, DeliveryError> {
        if msg.envelope.smtputf8 && !self.extensions.smtputf8 {
            // RFC 6531 3.2: a message that needs SMTPUTF8 cannot go to a server that lacks it.
            let why =
                Reply::new(550, "5.6.7", format!("{} does not support SMTPUTF8, which this message needs", self.peer));
            return Ok(msg.recipients().map(|_| RecipientOutcome::Permanent(why.clone())).collect());
        }
        let envelope = envelope(&self.extensions, msg);
        let replies = if self.extensions.pipelining {
            self.send_envelope_pipelined(&envelope).await?
        } else {
            match self.send_envelope_lockstep(&envelope).await? {
                Lockstep::Replies(replies) => replies,
                Lockstep::Ended(outcomes) => return Ok(outcomes),
            }
        };
        if let Some(outcomes) = self.refused(&replies).await? {
            return Ok(outcomes);
        }
        self.send_body(msg).await?;
        self.outcomes(&replies).await
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
                self.send(b".\r\n").await?;
                let _ = self.read_reply().await?;
            }
            let _ = self.reset().await;
            return Ok(Some(rcpts.iter().map(|_| outcome(mail)).collect()));
        }
        if data.code != 354 {
            if rcpts.iter().any(|r| r.code / 100 == 2) {
                let _ = self.reset().await;
            }
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
    /// A body of one piece goes out with its end of data in one write.
    async fn send_body(&mut self, msg: &Outbound) -> Result<(), DeliveryError> {
        let mut stuffer = DotStuffer::new();
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

#[cfg(test)]
mod tests {
    use super::*;

    /// MAIL as the client formatted it by hand before it built `Command` values.
    fn hand_made_mail(ext: &EhloExtensions, msg: &Outbound) -> String {
        let mut mail = format!("MAIL FROM:<{}>", msg.envelope.from_address());
        if ext.size {
            mail.push_str(&format!(" SIZE={}", msg.body.len()));
        }
        if msg.envelope.body_8bit && ext.eight_bit_mime {
            mail.push_str(" BODY=8BITMIME");
        }
        if msg.envelope.smtputf8 && ext.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        if ext.dsn {
            if let Some(ret) = msg.envelope.ret() {
                mail.push_str(&format!(" RET={ret}"));
            }
            if let Some(id) = msg.envelope.env_id().and_then(|id| XText::encode(id).ok()) {
                mail.push_str(&format!(" ENVID={}", id.encoded()));
            }
        }
        mail.push_str("\r\n");
        mail
    }

    /// RCPT as the client formatted it by hand before it built `Command` values.
    fn hand_made_rcpt(ext: &EhloExtensions, r: RecipientRef<'_>) -> String {
        let mut rcpt = format!("RCPT TO:<{}>", r.address);
        if ext.dsn {
            if let Some(notify) = r.notify {
                rcpt.push_str(&format!(" NOTIFY={notify}"));
            }
            let orcpt = r.orcpt.and_then(|o| o.split_once(';'));
            if let Some((kind, addr)) = orcpt
                && let Ok(x) = XText::encode(addr)
            {
                rcpt.push_str(&format!(" ORCPT={kind};{}", x.encoded()));
            }
        }
        rcpt.push_str("\r\n");
        rcpt
    }

    fn message(parts: sluice_queue_db::EnvelopeParts) -> Outbound {
        let indices = (0..parts.recipients.len() as u32).collect();
        Outbound {
            mid: 1,
            envelope: std::sync::Arc::new(sluice_queue_db::Envelope::from(parts)),
            indices,
            body: sluice_queue_db::BodySource::memory(b"Subject: x\r\n\r\nbody\r\n".to_vec()),
        }
    }

    fn recipient(address: &str, notify: Option<&str>, orcpt: Option<&str>) -> sluice_queue_db::Recipient {
        sluice_queue_db::Recipient {
            address: address.into(),
            notify: notify.map(Into::into),
            orcpt: orcpt.map(Into::into),
        }
    }

    #[test]
    fn the_envelope_commands_are_the_bytes_the_hand_made_ones_were() {
        let plain = sluice_queue_db::EnvelopeParts {
            from: "a@example.test".into(),
            recipients: vec![recipient("b@remote.test", None, None)],
            ..Default::default()
        };
        let dsn = sluice_queue_db::EnvelopeParts {
            from: "sender+tag@example.test".into(),
            recipients: vec![
                recipient("b@remote.test", Some("SUCCESS,FAILURE"), Some("rfc822;b@remote.test")),
                recipient("c@remote.test", Some("NEVER"), Some("rfc822;a+b=c d@x.test")),
                recipient("d@remote.test", Some("DELAY"), None),
                recipient("e@remote.test", None, Some("x-local;weird")),
            ],
            ret: Some("HDRS".into()),
            env_id: Some("id with spaces+plus=eq".into()),
            body_8bit: true,
            ..Default::default()
        };
        let utf8 = sluice_queue_db::EnvelopeParts {
            from: "j\u{f6}rg@b\u{fc}cher.test".into(),
            recipients: vec![recipient("\u{e9}l\u{e8}ve@\u{e9}cole.test", Some("FAILURE"), None)],
            ret: Some("FULL".into()),
            env_id: Some("e1".into()),
            smtputf8: true,
            body_8bit: true,
            ..Default::default()
        };
        let odd = sluice_queue_db::EnvelopeParts {
            from: String::new(),
            recipients: vec![
                recipient("postmaster", None, None),
                recipient("\"quoted local\"@remote.test", None, None),
                recipient("\"plain\"@remote.test", None, None),
                recipient("user@[192.0.2.1]", None, None),
                recipient("Mixed.Case@Remote.TEST", None, None),
                // Replay files may hold addresses sluice's parser refuses; they go out as stored.
                recipient("a..b@remote.test", Some("SUCCESS"), None),
                recipient("x@y@z", None, None),
            ],
            ..Default::default()
        };
        let all = EhloExtensions { pipelining: true, size: true, eight_bit_mime: true, smtputf8: true, dsn: true };
        let extensions = [EhloExtensions::default(), all, EhloExtensions { dsn: false, ..all }];
        for parts in [plain, dsn, utf8, odd] {
            let msg = message(parts);
            for ext in &extensions {
                let envelope = envelope(ext, &msg);
                assert_eq!(envelope.mail, hand_made_mail(ext, &msg), "{ext:?}");
                let rcpts: Vec<String> = msg.recipients().map(|r| hand_made_rcpt(ext, r)).collect();
                assert_eq!(envelope.rcpts, rcpts, "{ext:?}");
            }
        }
    }

    #[test]
    fn the_dsn_parameters_go_out_typed_and_encoded() {
        let msg = message(sluice_queue_db::EnvelopeParts {
            from: "a@example.test".into(),
            recipients: vec![recipient("b@remote.test", Some("SUCCESS,DELAY"), Some("rfc822;b+x@remote.test"))],
            ret: Some("FULL".into()),
            env_id: Some("q=1".into()),
            ..Default::default()
        });
        let ext = EhloExtensions { size: true, dsn: true, ..EhloExtensions::default() };
        let envelope = envelope(&ext, &msg);
        assert_eq!(envelope.mail, "MAIL FROM:<a@example.test> SIZE=20 RET=FULL ENVID=q+3D1\r\n");
        assert_eq!(envelope.rcpts, ["RCPT TO:<b@remote.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+2Bx@remote.test\r\n"]);
    }

    #[test]
    fn ehlo_keywords_become_extensions() {
        let ehlo = Reply::new(250, "", "mx.test\nPIPELINING\nsize 1000\n8BITMIME\nSTARTTLS\nDSN");
        let want = EhloExtensions { pipelining: true, size: true, eight_bit_mime: true, smtputf8: false, dsn: true };
        assert_eq!(EhloExtensions::parse(&ehlo), want);
    }

    /// A next hop on a loopback port that answers each command line, and the end of data, with `answer`, and
    /// hands back every line it got once the client quits.
    async fn next_hop(answer: fn(&str) -> &'static str) -> (String, tokio::task::JoinHandle<Vec<String>>) {
        use tokio::io::AsyncBufReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let (r, mut w) = stream.into_split();
            let mut r = tokio::io::BufReader::new(r);
            w.write_all(b"220 hop\r\n").await.unwrap();
            let (mut lines, mut in_data) = (Vec::new(), false);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end_matches("\r\n").to_owned();
                lines.push(line.clone());
                if in_data && line != "." {
                    continue;
                }
                let reply = answer(if in_data { "." } else { &line });
                in_data = line == "DATA" && reply.starts_with("354");
                w.write_all(reply.as_bytes()).await.unwrap();
                if line == "QUIT" {
                    break;
                }
            }
            lines
        });
        (addr, task)
    }

    fn two_recipients() -> Outbound {
        message(sluice_queue_db::EnvelopeParts {
            from: "a@example.test".into(),
            recipients: vec![recipient("bad@remote.test", None, None), recipient("good@remote.test", None, None)],
            ..Default::default()
        })
    }

    async fn deliver_to(addr: &str, protocol: Protocol) -> Result<Vec<RecipientOutcome>, DeliveryError> {
        let spec = SessionSpec { helo: "me.test", protocol, session: None };
        let mut c = ClientConnection::connect_to(addr.parse().unwrap(), "hop", addr, &spec).await.unwrap();
        let out = c.transaction(&two_recipients()).await;
        Box::new(c).quit().await;
        out
    }

    #[tokio::test]
    async fn without_pipelining_each_command_waits_for_its_reply() {
        let (addr, hop) = next_hop(|line| match line {
            "EHLO me.test" => "250-hop\r\n250 SIZE 1000\r\n",
            l if l.starts_with("RCPT TO:<bad@") => "550 5.1.1 unknown\r\n",
            "DATA" => "354 go\r\n",
            "." => "250 2.0.0 queued\r\n",
            "QUIT" => "221 bye\r\n",
            _ => "250 ok\r\n",
        })
        .await;
        let out = deliver_to(&addr, Protocol::Smtp).await.unwrap();
        assert_eq!(
            out,
            [
                RecipientOutcome::Permanent(Reply::new(550, "5.1.1", "unknown")),
                RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "queued")),
            ]
        );
        let want = [
            "EHLO me.test",
            "MAIL FROM:<a@example.test> SIZE=20",
            "RCPT TO:<bad@remote.test>",
            "RCPT TO:<good@remote.test>",
            "DATA",
            "Subject: x",
            "",
            "body",
            ".",
            "QUIT",
        ];
        assert_eq!(hop.await.unwrap(), want);
    }

    #[tokio::test]
    async fn without_pipelining_every_recipient_refused_ends_with_rset() {
        let (addr, hop) = next_hop(|line| match line {
            l if l.starts_with("RCPT") => "550 5.1.1 unknown\r\n",
            "QUIT" => "221 bye\r\n",
            _ => "250 ok\r\n",
        })
        .await;
        let out = deliver_to(&addr, Protocol::Smtp).await.unwrap();
        assert!(out.iter().all(|o| matches!(o, RecipientOutcome::Permanent(_))), "{out:?}");
        let lines = hop.await.unwrap();
        assert_eq!(lines[lines.len() - 2..], ["RSET", "QUIT"]);
        assert!(!lines.iter().any(|l| l == "DATA"), "{lines:?}");
    }

    #[tokio::test]
    async fn lmtp_reads_one_reply_per_accepted_recipient_after_the_data() {
        let (addr, hop) = next_hop(|line| match line {
            "LHLO me.test" => "250-hop\r\n250 PIPELINING\r\n",
            "DATA" => "354 go\r\n",
            "." => "250 2.0.0 one\r\n452 4.2.2 full\r\n",
            "QUIT" => "221 bye\r\n",
            _ => "250 ok\r\n",
        })
        .await;
        let out = deliver_to(&addr, Protocol::Lmtp).await.unwrap();
        assert_eq!(
            out,
            [
                RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "one")),
                RecipientOutcome::Transient(Reply::new(452, "4.2.2", "full")),
            ]
        );
        assert_eq!(hop.await.unwrap()[..2], ["LHLO me.test", "MAIL FROM:<a@example.test>"]);
    }

    #[tokio::test]
    async fn a_421_to_data_fails_the_whole_attempt_with_that_reply() {
        let (addr, hop) = next_hop(|line| match line {
            "EHLO me.test" => "250-hop\r\n250 PIPELINING\r\n",
            "DATA" => "421 4.3.2 closing\r\n",
            "QUIT" => "221 bye\r\n",
            _ => "250 ok\r\n",
        })
        .await;
        let error = deliver_to(&addr, Protocol::Smtp).await.unwrap_err();
        assert_eq!(sluice_transport::reply_line(&error.reply()), "421 4.3.2 closing");
        hop.await.unwrap();
    }
}
