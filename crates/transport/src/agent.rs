//! The delivery seam: the traits a delivery agent (SMTP, LMTP, Maildir, in another crate) implements, and the
//! message copy and per-recipient outcomes that cross it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sluice_queue_db::{Envelope, Mid, ReadError, RecipientRef};
use sluice_smtp::{EnhancedCode, Reply, ReplyError};

use crate::routing::Target;

/// A boxed future, for the object-safe agent traits.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One message copy on its way out.
#[derive(Debug)]
pub struct Outbound {
    pub mid: Mid,
    pub envelope: Arc<Envelope>,
    /// The envelope recipients this copy is for: indices into the envelope's recipients.
    pub indices: Vec<u32>,
    /// Read a piece at a time while it is sent: a delivery never holds a large body whole.
    pub body: sluice_queue_db::BodySource,
}

impl Outbound {
    /// The recipients this copy is for, with their DSN parameters, in the order of `indices`.
    pub fn recipients(&self) -> impl ExactSizeIterator<Item = RecipientRef<'_>> + '_ {
        self.indices.iter().map(|i| {
            self.envelope.recipient(*i as usize).unwrap_or(RecipientRef { address: "", notify: None, orcpt: None })
        })
    }
}

/// What the next hop said about one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientOutcome {
    /// The recipient's copy is delivered.
    Delivered(Reply),
    /// Not delivered this time; tried again later.
    Transient(Reply),
    /// Not delivered, for good.
    Permanent(Reply),
}

impl RecipientOutcome {
    /// What a reply means for its recipient: 2xx delivered, 5xx permanent, anything else transient.
    pub fn of(reply: Reply) -> RecipientOutcome {
        match reply.code / 100 {
            2 => RecipientOutcome::Delivered(reply),
            5 => RecipientOutcome::Permanent(reply),
            _ => RecipientOutcome::Transient(reply),
        }
    }

    /// The reply behind the outcome.
    pub fn reply(&self) -> &Reply {
        match self {
            RecipientOutcome::Delivered(reply)
            | RecipientOutcome::Transient(reply)
            | RecipientOutcome::Permanent(reply) => reply,
        }
    }
}

/// A reply as one line of text, the form the tracking log, `last_error` and the API show: the code, the
/// enhanced code and the text, separated by spaces, with the text's lines joined by spaces.
///
/// Not `Reply`'s `Display`, which leaves out empty lines (and so the space after a bare code): this keeps the
/// recorded text exactly as it has always been written.
pub fn reply_line(reply: &Reply) -> String {
    let text = reply.text.replace('\n', " ");
    match &reply.enhanced {
        Some(enhanced) => format!("{} {enhanced} {text}", reply.code),
        None => format!("{} {text}", reply.code),
    }
}

/// Why a delivery attempt failed as a whole: the connection could not be had or was lost, the TLS or AUTH
/// that the send connector asks for could not be had, the next hop ended the session, the body could not be
/// read, or sluice is shutting down. Every one but [`DeliveryError::NoRoute`] is a transient failure for the
/// queue; [`DeliveryError::reply`] is what is recorded of it.
///
/// The message of each is the text of that reply.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// The target names no next hop to try.
    #[error("no next hop configured")]
    NoNextHop,
    /// DNS gave no answer to rely on for a domain or a host (a `SERVFAIL`, a refusal, a timeout, no server to
    /// ask): the attempt is tried again later.
    #[error("DNS lookup for {domain} failed: {why}")]
    Dns {
        /// The name looked up: the recipients' domain, or a host's name.
        domain: String,
        /// What the resolver said.
        why: String,
    },
    /// DNS named hosts for the domain and none of them took the session: every host and address tried, most
    /// preferred first, each with what it said (or why it was skipped), in the order tried.
    #[error("no host for {domain} took the session: {}", .tried.join("; "))]
    HostsFailed {
        /// The recipients' domain.
        domain: String,
        /// One entry per address tried or host skipped, e.g. `cannot connect to mx1.example[192.0.2.1]:25: ...`.
        tried: Vec<String>,
        /// Whether any address was tried: if not (no host has an address), routing failed (`4.4.4`) rather
        /// than the connections (`4.4.1`).
        connected: bool,
    },
    /// DNS says the domain takes no mail: it does not exist, or it publishes a null MX (RFC 7505). The one
    /// permanent failure of an attempt: its recipients fail at once, with `reply` (a 5xx).
    #[error("{}", .reply.text)]
    NoRoute {
        /// The recipients' domain.
        domain: String,
        /// What is recorded and reported, e.g. `556 5.1.10`.
        reply: Reply,
    },
    /// The TCP connection could not be opened.
    #[error("cannot connect to {peer}: {source}")]
    Connect {
        /// The next hop, as configured.
        peer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The TCP connection was not open in time.
    #[error("connection to {peer} timed out")]
    ConnectTimeout {
        /// The next hop, as configured.
        peer: String,
    },
    /// The next hop refused the session: its greeting was not 220, or its answer to EHLO (LHLO, HELO) not 250.
    #[error("{} ({} {peer})", .reply.text, .stage.as_str())]
    Refused {
        /// Its reply.
        reply: Reply,
        /// Where in the opening it refused.
        stage: Opening,
        /// The next hop, as configured.
        peer: String,
    },
    /// Writing to or reading from the connection failed.
    #[error("connection to {peer} lost: {source}")]
    Lost {
        /// The next hop, as configured.
        peer: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The next hop closed the connection while a reply was awaited.
    #[error("{peer} closed the connection")]
    Closed {
        /// The next hop, as configured.
        peer: String,
    },
    /// The next hop answered DATA with 354 after refusing MAIL: its state is not the client's, so the
    /// connection is dropped rather than an end of data sent.
    #[error("{peer} took DATA after refusing MAIL ({})", .reply.text)]
    OutOfStep {
        /// The next hop, as configured.
        peer: String,
        /// Its reply to MAIL.
        reply: Reply,
    },
    /// The next hop took nothing more within the reply timeout.
    #[error("{peer} stopped reading")]
    WriteTimeout {
        /// The next hop, as configured.
        peer: String,
    },
    /// The next hop did not answer within the reply timeout.
    #[error("{peer} did not answer in time")]
    ReplyTimeout {
        /// The next hop, as configured.
        peer: String,
    },
    /// What the next hop sent is not an SMTP reply.
    #[error("bad reply from {peer}: {source}")]
    BadReply {
        /// The next hop, as configured.
        peer: String,
        /// Why.
        #[source]
        source: ReplyError,
    },
    /// The next hop's reply went on past the reader's bound.
    #[error("reply from {peer} too long")]
    ReplyTooLong {
        /// The next hop, as configured.
        peer: String,
    },
    /// TLS that the connector's `tls` asks for could not be had: STARTTLS not offered (`required`), refused,
    /// or its handshake failed (for `required`, also a certificate that is not trusted for the host's name).
    #[error("no TLS with {peer}: {failure}")]
    Tls {
        /// The next hop, as configured.
        peer: String,
        /// Why.
        failure: TlsFailure,
    },
    /// The connector has credentials but the session is not encrypted: they are not sent in plain text.
    #[error("credentials not sent to {peer}: the session is not encrypted")]
    AuthWithoutTls {
        /// The next hop, as configured.
        peer: String,
    },
    /// The connector has credentials but the next hop offers neither AUTH PLAIN nor AUTH LOGIN.
    #[error("{peer} offers neither AUTH PLAIN nor AUTH LOGIN; the connector has credentials")]
    AuthNotOffered {
        /// The next hop, as configured.
        peer: String,
    },
    /// The next hop is closing the session (`421`) in the middle of a transaction: its reply.
    #[error("{}", .0.text)]
    Closing(Reply),
    /// A piece of the message body could not be read (or failed its checksum).
    #[error("cannot read the message body: {0}")]
    Body(#[source] ReadError),
    /// The task that writes Maildir files failed.
    #[error("Maildir delivery task failed: {0}")]
    MaildirTask(#[source] tokio::task::JoinError),
    /// sluice is shutting down and the attempt's grace period is over.
    #[error("delivery interrupted by shutdown")]
    Shutdown,
}

impl DeliveryError {
    /// Whether the failure is final for every recipient of the attempt (no route to the domain), rather than
    /// a queue-level transient failure.
    pub fn is_permanent(&self) -> bool {
        matches!(self, DeliveryError::NoRoute { .. })
    }
}

/// What a recipient delivered over a connection has become, in RFC 3464's words (`Action:`), for a
/// `NOTIFY=SUCCESS` notice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handoff {
    /// In its mailbox (Maildir, LMTP): a `delivered` notice is due.
    Delivered,
    /// Handed to a next hop that does not take DSN parameters: a `relayed` notice is due.
    Relayed,
    /// Handed to a next hop that took the DSN parameters: it notifies, sluice does not.
    PassedOn,
}

/// Why TLS with a next hop could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsFailure {
    /// Its EHLO reply does not offer STARTTLS.
    NotOffered,
    /// It answered STARTTLS with this reply instead of `220`.
    Refused(Reply),
    /// The handshake failed (or timed out): why, in rustls' words.
    Handshake(String),
    /// Its certificate is not trusted for the host's name: why, in rustls' words.
    Certificate(String),
}

impl std::fmt::Display for TlsFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsFailure::NotOffered => f.write_str("STARTTLS not offered"),
            TlsFailure::Refused(reply) => write!(f, "STARTTLS refused: {}", reply_line(reply)),
            TlsFailure::Handshake(why) => write!(f, "handshake failed: {why}"),
            TlsFailure::Certificate(why) => write!(f, "certificate not accepted: {why}"),
        }
    }
}

/// Where in the opening of a session the next hop refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// Its greeting.
    Greeting,
    /// Its answer to EHLO (LHLO, or HELO after a refused EHLO).
    Hello,
    /// Its answer to AUTH: the credentials were refused.
    Auth,
}

impl Opening {
    /// How the recorded text names it.
    fn as_str(self) -> &'static str {
        match self {
            Opening::Greeting => "greeting from",
            Opening::Hello => "EHLO to",
            Opening::Auth => "AUTH to",
        }
    }
}

impl DeliveryError {
    /// The reply recorded for the failure (its one-line form, [`reply_line`], is the copy's `last_error` and
    /// the tracking log's reply): the next hop's own code for a refusal or a `421`, else `451` with the
    /// enhanced code of the cause (RFC 3463: 4.4.x routing and network, 4.5.0 protocol, 4.3.x system,
    /// 4.7.5 no TLS where the policy asks for it, 4.7.11 credentials not sent without encryption (RFC 4954's
    /// "encryption required for requested authentication mechanism"), 4.7.0 no AUTH mechanism to use).
    pub fn reply(&self) -> Reply {
        let (subject, detail) = match self {
            DeliveryError::Refused { reply, .. }
            | DeliveryError::Closing(reply)
            | DeliveryError::NoRoute { reply, .. } => {
                return Reply::with_enhanced(reply.code, reply.enhanced, self.to_string());
            }
            DeliveryError::NoNextHop => (4, 0),
            DeliveryError::Connect { .. } | DeliveryError::ConnectTimeout { .. } => (4, 1),
            DeliveryError::Lost { .. }
            | DeliveryError::Closed { .. }
            | DeliveryError::WriteTimeout { .. }
            | DeliveryError::ReplyTimeout { .. } => (4, 2),
            DeliveryError::Dns { .. } => (4, 3),
            DeliveryError::HostsFailed { connected: true, .. } => (4, 1),
            DeliveryError::HostsFailed { connected: false, .. } => (4, 4),
            DeliveryError::BadReply { .. } | DeliveryError::ReplyTooLong { .. } | DeliveryError::OutOfStep { .. } => {
                (5, 0)
            }
            DeliveryError::Body(_) | DeliveryError::MaildirTask(_) => (3, 0),
            DeliveryError::Shutdown => (3, 2),
            DeliveryError::Tls { .. } => (7, 5),
            DeliveryError::AuthWithoutTls { .. } => (7, 11),
            DeliveryError::AuthNotOffered { .. } => (7, 0),
        };
        Reply::with_enhanced(451, Some(EnhancedCode::new(4, subject, detail)), self.to_string())
    }
}

/// Opens connections to next hops.
pub trait DeliveryAgent: Send + Sync + 'static {
    /// Connects to the target; an error is a queue-level transient failure.
    fn connect<'a>(&'a self, target: &'a Target) -> BoxFuture<'a, Result<Box<dyn DeliveryConnection>, DeliveryError>>;
}

/// An open connection that can deliver messages one after another.
pub trait DeliveryConnection: Send {
    /// Delivers one copy; one outcome per recipient in order. An error means the session failed as a whole
    /// (nothing was delivered by this call) and the connection is unusable.
    fn deliver<'a>(&'a mut self, msg: &'a Outbound) -> BoxFuture<'a, Result<Vec<RecipientOutcome>, DeliveryError>>;
    /// What a recipient delivered over this connection has become.
    fn handoff(&self) -> Handoff;
    /// The next hop's host name, for a delivery report's `Remote-MTA`; none for a local mailbox store.
    fn remote_mta(&self) -> Option<&str> {
        None
    }
    /// Ends the session politely.
    fn quit(self: Box<Self>) -> BoxFuture<'static, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(text: &str) -> std::io::Error {
        std::io::Error::other(text.to_owned())
    }

    fn parsed(wire: &str) -> Reply {
        sluice_smtp::parse_reply(wire.as_bytes()).unwrap().unwrap().0
    }

    #[test]
    fn each_error_records_the_text_it_always_had() {
        let peer = || "mx.test:25".to_owned();
        let cases: Vec<(DeliveryError, &str)> = vec![
            (DeliveryError::NoNextHop, "451 4.4.0 no next hop configured"),
            (
                DeliveryError::Dns { domain: "remote.test".into(), why: "SERVFAIL".into() },
                "451 4.4.3 DNS lookup for remote.test failed: SERVFAIL",
            ),
            (
                DeliveryError::NoRoute {
                    domain: "remote.test".into(),
                    reply: Reply::new(556, "5.1.10", "remote.test accepts no mail (null MX)"),
                },
                "556 5.1.10 remote.test accepts no mail (null MX)",
            ),
            (
                DeliveryError::HostsFailed {
                    domain: "remote.test".into(),
                    tried: vec![
                        "cannot connect to mx1.test[192.0.2.1]:25: refused".into(),
                        "554 5.7.1 go away (greeting from mx2.test[192.0.2.2]:25)".into(),
                    ],
                    connected: true,
                },
                "451 4.4.1 no host for remote.test took the session: cannot connect to mx1.test[192.0.2.1]:25: \
                 refused; 554 5.7.1 go away (greeting from mx2.test[192.0.2.2]:25)",
            ),
            (
                DeliveryError::HostsFailed {
                    domain: "remote.test".into(),
                    tried: vec!["mx1.test: no address".into()],
                    connected: false,
                },
                "451 4.4.4 no host for remote.test took the session: mx1.test: no address",
            ),
            (
                DeliveryError::Connect { peer: peer(), source: io("refused") },
                "451 4.4.1 cannot connect to mx.test:25: refused",
            ),
            (DeliveryError::ConnectTimeout { peer: peer() }, "451 4.4.1 connection to mx.test:25 timed out"),
            (
                DeliveryError::Refused {
                    reply: parsed("554-5.7.1 go\r\n554 5.7.1 away\r\n"),
                    stage: Opening::Greeting,
                    peer: peer(),
                },
                "554 5.7.1 go away (greeting from mx.test:25)",
            ),
            (
                DeliveryError::Refused { reply: parsed("502 no\r\n"), stage: Opening::Hello, peer: peer() },
                "502 no (EHLO to mx.test:25)",
            ),
            (
                DeliveryError::Lost { peer: peer(), source: io("reset") },
                "451 4.4.2 connection to mx.test:25 lost: reset",
            ),
            (DeliveryError::Closed { peer: peer() }, "451 4.4.2 mx.test:25 closed the connection"),
            (DeliveryError::WriteTimeout { peer: peer() }, "451 4.4.2 mx.test:25 stopped reading"),
            (DeliveryError::ReplyTimeout { peer: peer() }, "451 4.4.2 mx.test:25 did not answer in time"),
            (
                DeliveryError::BadReply { peer: peer(), source: ReplyError::BadCode { line: 1 } },
                "451 4.5.0 bad reply from mx.test:25: reply line 1 does not start with a valid reply code",
            ),
            (DeliveryError::ReplyTooLong { peer: peer() }, "451 4.5.0 reply from mx.test:25 too long"),
            (
                DeliveryError::OutOfStep { peer: peer(), reply: parsed("503 5.5.1 MAIL already given\r\n") },
                "451 4.5.0 mx.test:25 took DATA after refusing MAIL (MAIL already given)",
            ),
            (DeliveryError::Closing(parsed("421 4.3.2 bye\r\n")), "421 4.3.2 bye"),
            (
                DeliveryError::Body(ReadError::Checksum { file: "g1".into(), offset: 7 }),
                "451 4.3.0 cannot read the message body: g1 at offset 7: body checksum mismatch",
            ),
            (DeliveryError::Shutdown, "451 4.3.2 delivery interrupted by shutdown"),
            (
                DeliveryError::Tls { peer: peer(), failure: TlsFailure::NotOffered },
                "451 4.7.5 no TLS with mx.test:25: STARTTLS not offered",
            ),
            (
                DeliveryError::Tls { peer: peer(), failure: TlsFailure::Refused(parsed("454 4.7.0 not now\r\n")) },
                "451 4.7.5 no TLS with mx.test:25: STARTTLS refused: 454 4.7.0 not now",
            ),
            (
                DeliveryError::Tls { peer: peer(), failure: TlsFailure::Handshake("received fatal alert".into()) },
                "451 4.7.5 no TLS with mx.test:25: handshake failed: received fatal alert",
            ),
            (
                DeliveryError::Tls { peer: peer(), failure: TlsFailure::Certificate("UnknownIssuer".into()) },
                "451 4.7.5 no TLS with mx.test:25: certificate not accepted: UnknownIssuer",
            ),
            (
                DeliveryError::AuthWithoutTls { peer: peer() },
                "451 4.7.11 credentials not sent to mx.test:25: the session is not encrypted",
            ),
            (
                DeliveryError::AuthNotOffered { peer: peer() },
                "451 4.7.0 mx.test:25 offers neither AUTH PLAIN nor AUTH LOGIN; the connector has credentials",
            ),
            (
                DeliveryError::Refused {
                    reply: parsed("535 5.7.8 bad credentials\r\n"),
                    stage: Opening::Auth,
                    peer: peer(),
                },
                "535 5.7.8 bad credentials (AUTH to mx.test:25)",
            ),
        ];
        for (error, want) in cases {
            assert_eq!(reply_line(&error.reply()), want);
        }
    }

    #[test]
    fn a_reply_line_keeps_every_space_of_the_reply() {
        // An empty text or an empty line keeps its separator, as the recorded text always has.
        for (wire, want) in [
            ("250 2.0.0 Ok\r\n", "250 2.0.0 Ok"),
            ("250 Ok\r\n", "250 Ok"),
            ("554\r\n", "554 "),
            ("250 2.1.5\r\n", "250 2.1.5 "),
            ("550-5.1.1 first\r\n550-\r\n550 5.1.1 last\r\n", "550 5.1.1 first  last"),
        ] {
            assert_eq!(reply_line(&parsed(wire)), want, "{wire:?}");
        }
    }

    #[test]
    fn a_reply_means_delivered_permanent_or_transient_by_its_class() {
        assert!(matches!(RecipientOutcome::of(parsed("250 ok\r\n")), RecipientOutcome::Delivered(_)));
        assert!(matches!(RecipientOutcome::of(parsed("550 no\r\n")), RecipientOutcome::Permanent(_)));
        assert!(matches!(RecipientOutcome::of(parsed("451 later\r\n")), RecipientOutcome::Transient(_)));
        assert!(matches!(RecipientOutcome::of(parsed("354 go on\r\n")), RecipientOutcome::Transient(_)));
    }
}
