//! The SMTP client (and LMTP, RFC 2033, which differs in its greeting and its per-recipient replies after
//! DATA). One connection delivers many messages in turn; commands are pipelined when the server offers
//! PIPELINING.

use std::time::Duration;

use sluice_smtp::{DotStuffer, Reply, parse_ehlo_keywords, parse_reply};
use sluice_transport::{BoxFuture, DeliveryConnection, Outbound, RecipientOutcome};
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
    pipelining: bool,
    size: bool,
    eight_bit: bool,
    smtputf8: bool,
    /// The next hop takes DSN parameters (RFC 3461), which are then passed on.
    dsn: bool,
    peer: String,
}

/// `host:port`, `[addr]:port`, `[addr]` or `host` (port 25).
fn split_host(spec: &str) -> (String, u16) {
    let (host, port) = if let Some(rest) = spec.strip_prefix('[') {
        match rest.split_once(']') {
            Some((h, p)) => (h.to_owned(), p.strip_prefix(':').and_then(|p| p.parse().ok())),
            None => (rest.to_owned(), None),
        }
    } else {
        match spec.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), p.parse().ok()),
            _ => (spec.to_owned(), None),
        }
    };
    (host, port.unwrap_or(25))
}

fn outcome(r: &Reply) -> RecipientOutcome {
    let text = render(r);
    if r.code / 100 == 2 {
        RecipientOutcome::Delivered(text)
    } else if r.code / 100 == 5 {
        RecipientOutcome::Permanent(text)
    } else {
        RecipientOutcome::Transient(text)
    }
}

fn render(r: &Reply) -> String {
    match &r.enhanced {
        Some(e) => format!("{} {} {}", r.code, e, r.text.replace('\n', " ")),
        None => format!("{} {}", r.code, r.text.replace('\n', " ")),
    }
}

impl ClientConnection {
    /// Tries each host in order; the first that greets and answers EHLO wins.
    pub async fn connect_any(hosts: &[String], helo: &str, protocol: Protocol) -> Result<ClientConnection, String> {
        let mut last = String::from("451 4.4.0 no next hop configured");
        for spec in hosts {
            match ClientConnection::connect(spec, helo, protocol).await {
                Ok(c) => return Ok(c),
                Err(e) => {
                    tracing::debug!(host = %spec, error = %e, "next hop failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn connect(spec: &str, helo: &str, protocol: Protocol) -> Result<ClientConnection, String> {
        let (host, port) = split_host(spec);
        let stream = match timeout(CONNECT_TIMEOUT, TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("451 4.4.1 cannot connect to {spec}: {e}")),
            Err(_) => return Err(format!("451 4.4.1 connection to {spec} timed out")),
        };
        let _ = stream.set_nodelay(true);
        let mut c = ClientConnection {
            stream,
            buf: Vec::with_capacity(4096),
            protocol,
            pipelining: false,
            size: false,
            eight_bit: false,
            smtputf8: false,
            dsn: false,
            peer: spec.to_owned(),
        };
        let greeting = c.read_reply().await?;
        if greeting.code != 220 {
            return Err(format!("{} (greeting from {spec})", render(&greeting)));
        }
        let verb = if protocol == Protocol::Lmtp { "LHLO" } else { "EHLO" };
        c.send(format!("{verb} {helo}\r\n").as_bytes()).await?;
        let mut ehlo = c.read_reply().await?;
        if ehlo.code != 250 && protocol == Protocol::Smtp {
            c.send(format!("HELO {helo}\r\n").as_bytes()).await?;
            ehlo = c.read_reply().await?;
        } else {
            for (kw, _) in parse_ehlo_keywords(&ehlo) {
                match kw.as_str() {
                    "PIPELINING" => c.pipelining = true,
                    "SIZE" => c.size = true,
                    "8BITMIME" => c.eight_bit = true,
                    "SMTPUTF8" => c.smtputf8 = true,
                    "DSN" => c.dsn = true,
                    _ => {}
                }
            }
        }
        if ehlo.code != 250 {
            return Err(format!("{} (EHLO to {spec})", render(&ehlo)));
        }
        Ok(c)
    }

    async fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        match timeout(REPLY_TIMEOUT, self.stream.write_all(bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("451 4.4.2 connection to {} lost: {e}", self.peer)),
            Err(_) => Err(format!("451 4.4.2 {} stopped reading", self.peer)),
        }
    }

    async fn read_reply(&mut self) -> Result<Reply, String> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    return Ok(reply);
                }
                Ok(None) => {}
                Err(e) => return Err(format!("451 4.5.0 bad reply from {}: {e}", self.peer)),
            }
            if self.buf.len() > 64 * 1024 {
                return Err(format!("451 4.5.0 reply from {} too long", self.peer));
            }
            let mut chunk = [0u8; 4096];
            let n = match timeout(REPLY_TIMEOUT, self.stream.read(&mut chunk)).await {
                Ok(Ok(0)) => return Err(format!("451 4.4.2 {} closed the connection", self.peer)),
                Ok(Ok(n)) => n,
                Ok(Err(e)) => return Err(format!("451 4.4.2 connection to {} lost: {e}", self.peer)),
                Err(_) => return Err(format!("451 4.4.2 {} did not answer in time", self.peer)),
            };
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn transaction(&mut self, msg: &Outbound) -> Result<Vec<RecipientOutcome>, String> {
        if msg.envelope.smtputf8 && !self.smtputf8 {
            // RFC 6531 3.2: a message that needs SMTPUTF8 cannot go to a server that lacks it.
            let why = format!("550 5.6.7 {} does not support SMTPUTF8, which this message needs", self.peer);
            return Ok(msg.recipients().map(|_| RecipientOutcome::Permanent(why.clone())).collect());
        }
        let mut mail = format!("MAIL FROM:<{}>", msg.envelope.from_address());
        if self.size {
            mail.push_str(&format!(" SIZE={}", msg.body.len()));
        }
        if msg.envelope.body_8bit && self.eight_bit {
            mail.push_str(" BODY=8BITMIME");
        }
        if msg.envelope.smtputf8 && self.smtputf8 {
            mail.push_str(" SMTPUTF8");
        }
        // RFC 3461 4: a relay passes the DSN parameters on to a next hop that takes them.
        if self.dsn {
            if let Some(ret) = msg.envelope.ret() {
                mail.push_str(&format!(" RET={ret}"));
            }
            if let Some(id) = msg.envelope.env_id().and_then(|id| sluice_smtp::XText::encode(id).ok()) {
                mail.push_str(&format!(" ENVID={}", id.encoded()));
            }
        }
        mail.push_str("\r\n");
        let mut commands = mail.into_bytes();
        for r in msg.recipients() {
            let mut rcpt = format!("RCPT TO:<{}>", r.address);
            if self.dsn {
                if let Some(notify) = r.notify {
                    rcpt.push_str(&format!(" NOTIFY={notify}"));
                }
                let orcpt = r.orcpt.and_then(|o| o.split_once(';'));
                if let Some((kind, addr)) = orcpt
                    && let Ok(x) = sluice_smtp::XText::encode(addr)
                {
                    rcpt.push_str(&format!(" ORCPT={kind};{}", x.encoded()));
                }
            }
            rcpt.push_str("\r\n");
            commands.extend_from_slice(rcpt.as_bytes());
        }
        commands.extend_from_slice(b"DATA\r\n");

        let (mail_reply, rcpt_replies, data_reply) = if self.pipelining {
            self.send(&commands).await?;
            let mail_reply = self.read_reply().await?;
            let mut rcpts = Vec::with_capacity(msg.indices.len());
            for _ in &msg.indices {
                rcpts.push(self.read_reply().await?);
            }
            (mail_reply, rcpts, self.read_reply().await?)
        } else {
            let lines: Vec<Vec<u8>> = commands.split_inclusive(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            let mut lines = lines.into_iter();
            let line = lines.next().unwrap_or_default();
            self.send(&line).await?;
            let mail_reply = self.read_reply().await?;
            if mail_reply.code / 100 != 2 {
                let _ = self.reset().await;
                return Ok(msg.indices.iter().map(|_| outcome(&mail_reply)).collect());
            }
            let mut rcpts = Vec::new();
            for _ in &msg.indices {
                let line = lines.next().unwrap_or_default();
                self.send(&line).await?;
                rcpts.push(self.read_reply().await?);
            }
            if rcpts.iter().all(|r| r.code / 100 != 2) {
                let _ = self.reset().await;
                return Ok(rcpts.iter().map(outcome).collect());
            }
            let line = lines.next().unwrap_or_default();
            self.send(&line).await?;
            (mail_reply, rcpts, self.read_reply().await?)
        };
        if mail_reply.code == 421 || data_reply.code == 421 {
            return Err(render(if mail_reply.code == 421 { &mail_reply } else { &data_reply }));
        }
        if mail_reply.code / 100 != 2 {
            if data_reply.code == 354 {
                self.send(b".\r\n").await?;
                let _ = self.read_reply().await?;
            }
            let _ = self.reset().await;
            return Ok(msg.indices.iter().map(|_| outcome(&mail_reply)).collect());
        }
        let accepted: Vec<bool> = rcpt_replies.iter().map(|r| r.code / 100 == 2).collect();
        if data_reply.code != 354 {
            if accepted.iter().any(|a| *a) {
                let _ = self.reset().await;
            }
            return Ok(rcpt_replies
                .iter()
                .map(|r| if r.code / 100 == 2 { outcome(&data_reply) } else { outcome(r) })
                .collect());
        }
        // The body is read and sent a piece at a time. A piece that cannot be read (or fails the body's
        // checksum, checked with the last piece) ends the attempt before the end of data: the connection
        // is dropped and the next hop discards what it got.
        // A body of one piece goes out with its end of data in one write.
        let unreadable = |e| format!("451 4.3.0 cannot read the message body: {e}");
        let mut stuffer = DotStuffer::new();
        let mut chunks = msg.body.chunks();
        let mut next = chunks.next_chunk(SEND_PIECE).map_err(unreadable)?;
        let mut data = Vec::with_capacity(msg.body.len().min(SEND_PIECE as u64) as usize + 64);
        loop {
            data.clear();
            if let Some(piece) = next.take() {
                stuffer.feed(&piece, &mut data);
            }
            next = chunks.next_chunk(SEND_PIECE).map_err(unreadable)?;
            if next.is_none() {
                stuffer.finish(&mut data);
                self.send(&data).await?;
                break;
            }
            self.send(&data).await?;
        }
        let mut out: Vec<RecipientOutcome> = Vec::with_capacity(accepted.len());
        if self.protocol == Protocol::Lmtp {
            // LMTP: one reply after the data for every accepted recipient, in order.
            for (ok, r) in accepted.iter().zip(&rcpt_replies) {
                out.push(if *ok { outcome(&self.read_reply().await?) } else { outcome(r) });
            }
        } else {
            let final_reply = self.read_reply().await?;
            for (ok, r) in accepted.iter().zip(&rcpt_replies) {
                out.push(if *ok { outcome(&final_reply) } else { outcome(r) });
            }
        }
        Ok(out)
    }

    async fn reset(&mut self) -> Result<(), String> {
        self.send(b"RSET\r\n").await?;
        self.read_reply().await.map(|_| ())
    }
}

impl DeliveryConnection for ClientConnection {
    fn deliver<'a>(&'a mut self, msg: &'a Outbound) -> BoxFuture<'a, Result<Vec<RecipientOutcome>, String>> {
        Box::pin(self.transaction(msg))
    }

    fn quit(mut self: Box<Self>) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            if self.send(b"QUIT\r\n").await.is_ok() {
                let _ = timeout(Duration::from_secs(5), self.read_reply()).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_specs() {
        assert_eq!(split_host("127.0.0.1:2526"), ("127.0.0.1".into(), 2526));
        assert_eq!(split_host("[10.0.0.1]"), ("10.0.0.1".into(), 25));
        assert_eq!(split_host("[::1]:2525"), ("::1".into(), 2525));
        assert_eq!(split_host("mx.example.test"), ("mx.example.test".into(), 25));
    }
}
