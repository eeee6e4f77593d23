//! The send side against a loopback next hop: STARTTLS by policy (with a real handshake and certificates
//! made here), AUTH, recipients refused with `452`, 8-bit bodies for a next hop without 8BITMIME.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sluice_transport::{Credentials, SendSession, TlsPolicy};

use super::*;

/// A certificate authority of the tests.
struct Ca {
    cert: CertificateDer<'static>,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).unwrap().der().clone();
        Ca { cert, issuer: rcgen::Issuer::new(params, key) }
    }

    /// A server configuration with a certificate for `name` that this CA signed.
    fn server(&self, name: &str) -> Arc<rustls::ServerConfig> {
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap().signed_by(&key, &self.issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], PrivateKeyDer::Pkcs8(key.serialize_der().into()))
            .unwrap();
        Arc::new(config)
    }
}

fn session(tls: TlsPolicy, auth: Option<(&str, &str)>) -> SendSession {
    SendSession {
        tls,
        auth: auth.map(|(user, password)| Credentials { user: user.into(), password: password.into() }),
        ..SendSession::default()
    }
}

/// Opens a session to `addr` as the host `mx.test`, trusting `roots`.
async fn open(
    addr: SocketAddr,
    session: &SendSession,
    roots: &[CertificateDer<'static>],
) -> Result<ClientConnection, DeliveryError> {
    let tls = ClientTls::with_roots(roots.to_vec());
    let spec = SessionSpec { helo: "me.test", protocol: Protocol::Smtp, session: Some(session), tls: &tls };
    ClientConnection::connect_to(addr, "mx.test", "mx.test:25", &spec).await
}

/// Opens a session, delivers `msg` and quits: the outcomes and the next hop's transcript.
async fn deliver(
    answer: Answer,
    options: HopOptions,
    session: &SendSession,
    roots: &[CertificateDer<'static>],
    msg: &Outbound,
) -> (Result<Vec<RecipientOutcome>, DeliveryError>, Vec<String>) {
    let (addr, hop) = next_hop_with(answer, options).await;
    let out = match open(addr, session, roots).await {
        Ok(mut c) => {
            let out = c.transaction(msg).await;
            Box::new(c).quit().await;
            out
        }
        Err(e) => Err(e),
    };
    (out, hop.await.unwrap())
}

/// A next hop that offers STARTTLS (before TLS), PIPELINING and AUTH PLAIN LOGIN, and takes everything.
fn starttls_hop() -> Answer {
    Box::new(|line, tls| match line {
        "EHLO me.test" if tls => "250-hop\r\n250-PIPELINING\r\n250 AUTH PLAIN LOGIN\r\n",
        "EHLO me.test" => "250-hop\r\n250-PIPELINING\r\n250-AUTH PLAIN LOGIN\r\n250 STARTTLS\r\n",
        l if l.starts_with("AUTH PLAIN ") => "235 2.7.0 authenticated\r\n",
        "DATA" => "354 go\r\n",
        "." => "250 2.0.0 queued\r\n",
        "QUIT" => "221 bye\r\n",
        _ => "250 ok\r\n",
    })
}

fn one_recipient() -> Outbound {
    message(sluice_queue_db::EnvelopeParts {
        from: "a@example.test".into(),
        recipients: vec![recipient("b@remote.test", None, None)],
        ..Default::default()
    })
}

fn position(lines: &[String], wanted: &str) -> Option<usize> {
    lines.iter().position(|l| l.starts_with(wanted))
}

fn reply_of(error: &DeliveryError) -> String {
    sluice_transport::reply_line(&error.reply())
}

#[tokio::test]
async fn opportunistic_tls_upgrades_when_offered_and_the_transaction_runs_over_it() {
    // A certificate nobody trusts: opportunistic TLS takes it.
    let options = HopOptions { tls: Some(Ca::new("unknown CA").server("other.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Opportunistic, None);
    let (out, lines) = deliver(starttls_hop(), options, &session, &[], &one_recipient()).await;
    assert_eq!(out.unwrap(), [RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "queued"))]);
    assert_eq!(lines[..4], ["EHLO me.test", "STARTTLS", TLS_UP, "EHLO me.test"]);
    assert!(position(&lines, "MAIL FROM:").unwrap() > position(&lines, TLS_UP).unwrap(), "{lines:?}");
}

#[tokio::test]
async fn opportunistic_tls_without_starttls_offered_goes_in_plain_text() {
    let answer: Answer = Box::new(|line, _| match line {
        "EHLO me.test" => "250-hop\r\n250 PIPELINING\r\n",
        "DATA" => "354 go\r\n",
        "QUIT" => "221 bye\r\n",
        _ => "250 ok\r\n",
    });
    let session = session(TlsPolicy::Opportunistic, None);
    let (out, lines) = deliver(answer, HopOptions::default(), &session, &[], &one_recipient()).await;
    assert!(matches!(out.unwrap()[..], [RecipientOutcome::Delivered(_)]));
    assert_eq!(lines[..2], ["EHLO me.test", "MAIL FROM:<a@example.test>"]);
}

#[tokio::test]
async fn tls_off_never_sends_starttls() {
    let options = HopOptions { tls: Some(Ca::new("CA").server("mx.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Off, None);
    let (out, lines) = deliver(starttls_hop(), options, &session, &[], &one_recipient()).await;
    assert!(matches!(out.unwrap()[..], [RecipientOutcome::Delivered(_)]));
    assert!(position(&lines, "STARTTLS").is_none(), "{lines:?}");
}

#[tokio::test]
async fn a_refused_starttls_fails_the_attempt_rather_than_going_on_in_plain_text() {
    let answer: Answer = Box::new(|line, _| match line {
        "EHLO me.test" => "250-hop\r\n250 STARTTLS\r\n",
        "STARTTLS" => "454 4.7.0 TLS not available\r\n",
        "QUIT" => "221 bye\r\n",
        _ => "250 ok\r\n",
    });
    let session = session(TlsPolicy::Opportunistic, None);
    let (out, lines) = deliver(answer, HopOptions::default(), &session, &[], &one_recipient()).await;
    assert_eq!(
        reply_of(&out.unwrap_err()),
        "451 4.7.5 no TLS with mx.test:25: STARTTLS refused: 454 4.7.0 TLS not available"
    );
    assert!(position(&lines, "MAIL").is_none(), "{lines:?}");
}

#[tokio::test]
async fn required_tls_without_starttls_offered_fails_with_4_7_5() {
    let answer: Answer = Box::new(|line, _| match line {
        "EHLO me.test" => "250-hop\r\n250 PIPELINING\r\n",
        _ => "250 ok\r\n",
    });
    let session = session(TlsPolicy::Required, None);
    let (out, lines) = deliver(answer, HopOptions::default(), &session, &[], &one_recipient()).await;
    assert_eq!(reply_of(&out.unwrap_err()), "451 4.7.5 no TLS with mx.test:25: STARTTLS not offered");
    assert_eq!(lines, ["EHLO me.test"]);
}

#[tokio::test]
async fn required_tls_refuses_a_certificate_from_an_untrusted_ca() {
    let trusted = Ca::new("trusted CA");
    let options = HopOptions { tls: Some(Ca::new("other CA").server("mx.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Required, None);
    let (out, lines) =
        deliver(starttls_hop(), options, &session, std::slice::from_ref(&trusted.cert), &one_recipient()).await;
    let error = reply_of(&out.unwrap_err());
    assert!(error.starts_with("451 4.7.5 no TLS with mx.test:25: certificate not accepted: "), "{error}");
    assert!(error.contains("UnknownIssuer"), "{error}");
    assert!(position(&lines, "<handshake failed").is_some(), "{lines:?}");
    assert!(position(&lines, "MAIL").is_none(), "{lines:?}");
}

#[tokio::test]
async fn required_tls_refuses_a_certificate_for_another_name() {
    let ca = Ca::new("trusted CA");
    let options = HopOptions { tls: Some(ca.server("other.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Required, None);
    let (out, lines) =
        deliver(starttls_hop(), options, &session, std::slice::from_ref(&ca.cert), &one_recipient()).await;
    let error = reply_of(&out.unwrap_err());
    assert!(error.starts_with("451 4.7.5 no TLS with mx.test:25: certificate not accepted: "), "{error}");
    assert!(error.contains("mx.test"), "{error}");
    assert!(position(&lines, "MAIL").is_none(), "{lines:?}");
}

#[tokio::test]
async fn required_tls_with_a_trusted_certificate_delivers_over_tls() {
    let ca = Ca::new("trusted CA");
    let options = HopOptions { tls: Some(ca.server("mx.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Required, None);
    let (out, lines) =
        deliver(starttls_hop(), options, &session, std::slice::from_ref(&ca.cert), &one_recipient()).await;
    assert_eq!(out.unwrap(), [RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "queued"))]);
    assert!(position(&lines, "MAIL FROM:").unwrap() > position(&lines, TLS_UP).unwrap(), "{lines:?}");
}

#[tokio::test]
async fn auth_plain_goes_after_tls_with_the_credentials_in_base64() {
    let options = HopOptions { tls: Some(Ca::new("CA").server("mx.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Opportunistic, Some(("user", "pass")));
    let (out, lines) = deliver(starttls_hop(), options, &session, &[], &one_recipient()).await;
    assert!(matches!(out.unwrap()[..], [RecipientOutcome::Delivered(_)]));
    let auth = position(&lines, "AUTH").unwrap();
    // base64 of NUL "user" NUL "pass".
    assert_eq!(lines[auth], "AUTH PLAIN AHVzZXIAcGFzcw==");
    assert!(position(&lines, TLS_UP).unwrap() < auth && auth < position(&lines, "MAIL").unwrap(), "{lines:?}");
}

#[tokio::test]
async fn auth_login_is_used_when_only_login_is_offered() {
    let answer: Answer = Box::new(|line, tls| match line {
        "EHLO me.test" if tls => "250-hop\r\n250 AUTH LOGIN\r\n",
        "EHLO me.test" => "250-hop\r\n250 STARTTLS\r\n",
        "AUTH LOGIN" => "334 VXNlcm5hbWU6\r\n",
        "dXNlcg==" => "334 UGFzc3dvcmQ6\r\n",
        "cGFzcw==" => "235 2.7.0 authenticated\r\n",
        "DATA" => "354 go\r\n",
        "QUIT" => "221 bye\r\n",
        _ => "250 ok\r\n",
    });
    let options = HopOptions { tls: Some(Ca::new("CA").server("mx.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Opportunistic, Some(("user", "pass")));
    let (out, lines) = deliver(answer, options, &session, &[], &one_recipient()).await;
    assert!(matches!(out.unwrap()[..], [RecipientOutcome::Delivered(_)]));
    let auth = position(&lines, "AUTH").unwrap();
    assert_eq!(lines[auth..auth + 4], ["AUTH LOGIN", "dXNlcg==", "cGFzcw==", "MAIL FROM:<a@example.test>"]);
}

#[tokio::test]
async fn credentials_are_never_sent_in_plain_text() {
    // AUTH offered, STARTTLS not: nothing of the credentials goes.
    let answer: Answer = Box::new(|line, _| match line {
        "EHLO me.test" => "250-hop\r\n250 AUTH PLAIN LOGIN\r\n",
        "QUIT" => "221 bye\r\n",
        _ => "250 ok\r\n",
    });
    let session = session(TlsPolicy::Opportunistic, Some(("user", "pass")));
    let (out, lines) = deliver(answer, HopOptions::default(), &session, &[], &one_recipient()).await;
    assert_eq!(
        reply_of(&out.unwrap_err()),
        "451 4.7.11 credentials not sent to mx.test:25: the session is not encrypted"
    );
    assert_eq!(lines, ["EHLO me.test"]);
    // With TLS off, STARTTLS offered or not, neither.
    let options = HopOptions { tls: Some(Ca::new("CA").server("mx.test")), ..HopOptions::default() };
    let session = session_off_with_auth();
    let (out, lines) = deliver(starttls_hop(), options, &session, &[], &one_recipient()).await;
    assert!(matches!(out, Err(DeliveryError::AuthWithoutTls { .. })), "{out:?}");
    assert_eq!(lines, ["EHLO me.test"]);
}

fn session_off_with_auth() -> SendSession {
    session(TlsPolicy::Off, Some(("user", "pass")))
}

#[tokio::test]
async fn a_refused_auth_fails_the_attempt_with_its_reply() {
    let answer: Answer = Box::new(|line, tls| match line {
        "EHLO me.test" if tls => "250-hop\r\n250 AUTH PLAIN\r\n",
        "EHLO me.test" => "250-hop\r\n250 STARTTLS\r\n",
        l if l.starts_with("AUTH") => "535 5.7.8 authentication credentials invalid\r\n",
        _ => "250 ok\r\n",
    });
    let options = HopOptions { tls: Some(Ca::new("CA").server("mx.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Opportunistic, Some(("user", "wrong")));
    let (out, lines) = deliver(answer, options, &session, &[], &one_recipient()).await;
    assert_eq!(reply_of(&out.unwrap_err()), "535 5.7.8 authentication credentials invalid (AUTH to mx.test:25)");
    assert!(position(&lines, "MAIL").is_none(), "{lines:?}");
}

#[tokio::test]
async fn without_a_mechanism_to_use_the_attempt_fails() {
    let answer: Answer = Box::new(|line, tls| match line {
        "EHLO me.test" if tls => "250-hop\r\n250 AUTH CRAM-MD5\r\n",
        "EHLO me.test" => "250-hop\r\n250 STARTTLS\r\n",
        _ => "250 ok\r\n",
    });
    let options = HopOptions { tls: Some(Ca::new("CA").server("mx.test")), ..HopOptions::default() };
    let session = session(TlsPolicy::Opportunistic, Some(("user", "pass")));
    let (out, _) = deliver(answer, options, &session, &[], &one_recipient()).await;
    assert!(reply_of(&out.unwrap_err()).starts_with("451 4.7.0 mx.test:25 offers neither AUTH PLAIN nor AUTH LOGIN"));
}

fn five_recipients() -> Outbound {
    message(sluice_queue_db::EnvelopeParts {
        from: "a@example.test".into(),
        recipients: (1..=5).map(|i| recipient(&format!("r{i}@remote.test"), None, None)).collect(),
        ..Default::default()
    })
}

/// The RCPT lines of each transaction in a transcript.
fn transactions(lines: &[String]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for line in lines {
        if line.starts_with("MAIL") {
            out.push(Vec::new());
        } else if let (Some(rcpt), Some(last)) = (line.strip_prefix("RCPT TO:"), out.last_mut()) {
            last.push(rcpt.to_owned());
        }
    }
    out
}

#[tokio::test]
async fn recipients_refused_with_452_go_in_following_transactions() {
    for (protocol, ehlo) in [
        (Protocol::Smtp, "250-hop\r\n250 PIPELINING\r\n"),
        (Protocol::Smtp, "250 hop\r\n"),
        (Protocol::Lmtp, "250-hop\r\n250 PIPELINING\r\n"),
    ] {
        let answer: Answer = Box::new(move |line, _| match line {
            l if l.starts_with("EHLO") || l.starts_with("LHLO") => ehlo,
            "DATA" => "354 go\r\n",
            // LMTP: one reply per accepted recipient; two at most here.
            "." if protocol == Protocol::Lmtp => "250 2.0.0 one\r\n250 2.0.0 two\r\n",
            "." => "250 2.0.0 queued\r\n",
            "QUIT" => "221 bye\r\n",
            _ => "250 ok\r\n",
        });
        let (addr, hop) = next_hop_with(answer, HopOptions { max_rcpts: Some(2), ..HopOptions::default() }).await;
        let tls = ClientTls::with_roots([]);
        let spec = SessionSpec { helo: "me.test", protocol, session: None, tls: &tls };
        let mut c = ClientConnection::connect_to(addr, "mx.test", "mx.test:25", &spec).await.unwrap();
        let out = c.transaction(&five_recipients()).await.unwrap();
        Box::new(c).quit().await;
        assert!(out.iter().all(|o| matches!(o, RecipientOutcome::Delivered(_))), "{protocol:?} {ehlo:?}: {out:?}");
        assert_eq!(out.len(), 5);
        let lines = hop.await.unwrap();
        let rounds = transactions(&lines);
        let want: &[&[&str]] = &[
            &["<r1@remote.test>", "<r2@remote.test>", "<r3@remote.test>", "<r4@remote.test>", "<r5@remote.test>"],
            &["<r3@remote.test>", "<r4@remote.test>", "<r5@remote.test>"],
            &["<r5@remote.test>"],
        ];
        assert_eq!(rounds, want, "{protocol:?} {ehlo:?}: {lines:?}");
        assert_eq!(lines.iter().filter(|l| *l == "DATA").count(), 3);
    }
}

#[tokio::test]
async fn recipients_never_accepted_after_452_stay_transient() {
    let answer: Answer = Box::new(|line, _| match line {
        "EHLO me.test" => "250-hop\r\n250 PIPELINING\r\n",
        l if l.starts_with("RCPT TO:<r2@") => "452 4.2.2 mailbox full\r\n",
        l if l.starts_with("RCPT TO:<r3@") => "550 5.1.1 unknown\r\n",
        "DATA" => "354 go\r\n",
        "." => "250 2.0.0 queued\r\n",
        "QUIT" => "221 bye\r\n",
        _ => "250 ok\r\n",
    });
    let msg = message(sluice_queue_db::EnvelopeParts {
        from: "a@example.test".into(),
        recipients: (1..=3).map(|i| recipient(&format!("r{i}@remote.test"), None, None)).collect(),
        ..Default::default()
    });
    let session = session(TlsPolicy::Off, None);
    let (out, lines) = deliver(answer, HopOptions::default(), &session, &[], &msg).await;
    assert_eq!(
        out.unwrap(),
        [
            RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "queued")),
            RecipientOutcome::Transient(Reply::new(452, "4.2.2", "mailbox full")),
            RecipientOutcome::Permanent(Reply::new(550, "5.1.1", "unknown")),
        ]
    );
    // Tried once more on its own, refused again with nothing accepted: no third transaction.
    assert_eq!(
        transactions(&lines),
        [vec!["<r1@remote.test>", "<r2@remote.test>", "<r3@remote.test>"], vec!["<r2@remote.test>"]]
    );
}

fn eight_bit_message(body: &str) -> Outbound {
    let parts = sluice_queue_db::EnvelopeParts {
        from: "a@example.test".into(),
        recipients: vec![recipient("b@remote.test", None, None), recipient("c@remote.test", None, None)],
        body_8bit: true,
        ..Default::default()
    };
    Outbound { body: sluice_queue_db::BodySource::memory(body.as_bytes().to_vec()), ..message(parts) }
}

/// A next hop without 8BITMIME.
fn seven_bit_hop() -> Answer {
    Box::new(|line, _| match line {
        "EHLO me.test" => "250-hop\r\n250-PIPELINING\r\n250 SIZE 100000\r\n",
        "DATA" => "354 go\r\n",
        "." => "250 2.0.0 queued\r\n",
        "QUIT" => "221 bye\r\n",
        _ => "250 ok\r\n",
    })
}

#[tokio::test]
async fn an_8bit_body_goes_as_quoted_printable_to_a_next_hop_without_8bitmime() {
    let body = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\
                Subject: x\r\n\r\nGr\u{fc}\u{df}e\r\n.a line with a dot\r\n";
    let session = session(TlsPolicy::Off, None);
    let (out, lines) = deliver(seven_bit_hop(), HopOptions::default(), &session, &[], &eight_bit_message(body)).await;
    assert!(out.unwrap().iter().all(|o| matches!(o, RecipientOutcome::Delivered(_))));
    let data = position(&lines, "DATA").unwrap();
    let received = &lines[data + 1..];
    assert_eq!(
        received,
        [
            "MIME-Version: 1.0",
            "Content-Type: text/plain; charset=utf-8",
            "Content-Transfer-Encoding: quoted-printable",
            "Subject: x",
            "",
            "Gr=C3=BC=C3=9Fe",
            "..a line with a dot",
            ".",
            "QUIT",
        ]
    );
    // No BODY=8BITMIME to a next hop without it; SIZE is the size of what goes.
    let converted = "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Content-Transfer-Encoding: quoted-printable\r\nSubject: x\r\n\r\nGr=C3=BC=C3=9Fe\r\n\
                     .a line with a dot\r\n";
    assert_eq!(
        lines[position(&lines, "MAIL").unwrap()],
        format!("MAIL FROM:<a@example.test> SIZE={}", converted.len())
    );
}

#[tokio::test]
async fn an_8bit_body_that_cannot_be_converted_fails_its_recipients_with_5_6_3() {
    // Not MIME: there is no header field in which to say how the body is encoded.
    let body = "Subject: x\r\n\r\nGr\u{fc}\u{df}e\r\n";
    let session = session(TlsPolicy::Off, None);
    let (out, lines) = deliver(seven_bit_hop(), HopOptions::default(), &session, &[], &eight_bit_message(body)).await;
    let out = out.unwrap();
    assert_eq!(out.len(), 2);
    for outcome in out {
        let RecipientOutcome::Permanent(reply) = outcome else { panic!("{outcome:?}") };
        assert_eq!(
            sluice_transport::reply_line(&reply),
            "550 5.6.3 mx.test:25 does not support 8BITMIME and this message cannot be converted: it has 8-bit \
             octets but no MIME-Version header field"
        );
    }
    assert!(position(&lines, "MAIL").is_none(), "{lines:?}");
}

#[tokio::test]
async fn an_8bit_body_goes_as_it_is_with_body_8bitmime_where_offered() {
    let body = "MIME-Version: 1.0\r\nSubject: x\r\n\r\nGr\u{fc}\u{df}e\r\n";
    let answer: Answer = Box::new(|line, _| match line {
        "EHLO me.test" => "250-hop\r\n250 8BITMIME\r\n",
        "DATA" => "354 go\r\n",
        "QUIT" => "221 bye\r\n",
        _ => "250 ok\r\n",
    });
    let session = session(TlsPolicy::Off, None);
    let (out, lines) = deliver(answer, HopOptions::default(), &session, &[], &eight_bit_message(body)).await;
    assert!(out.unwrap().iter().all(|o| matches!(o, RecipientOutcome::Delivered(_))));
    assert_eq!(lines[1], "MAIL FROM:<a@example.test> BODY=8BITMIME");
    assert!(lines.contains(&"Gr\u{fc}\u{df}e".to_owned()), "{lines:?}");
}

#[test]
fn base64_encodes_as_rfc_4648_says() {
    for (plain, encoded) in
        [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
    {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
    assert_eq!(base64(b"\0alice\0correct horse"), "AGFsaWNlAGNvcnJlY3QgaG9yc2U=");
}

#[tokio::test]
async fn a_failed_handshake_fails_an_opportunistic_attempt_with_4_7_5() {
    use tokio::io::AsyncBufReadExt;
    // A next hop that offers STARTTLS, accepts it and then answers in plain text.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hop = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = tokio::io::BufReader::new(stream);
        let mut line = String::new();
        for reply in ["220 hop\r\n", "250-hop\r\n250 STARTTLS\r\n"] {
            stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
            stream.read_line(&mut line).await.unwrap();
        }
        stream.get_mut().write_all(b"220 go ahead\r\nthis is not TLS\r\n").await.unwrap();
        line
    });
    let error = open(addr, &session(TlsPolicy::Opportunistic, None), &[]).await.err().unwrap();
    let reply = reply_of(&error);
    assert!(reply.starts_with("451 4.7.5 no TLS with mx.test:25: handshake failed: "), "{reply}");
    assert_eq!(hop.await.unwrap(), "EHLO me.test\r\nSTARTTLS\r\n");
}

#[tokio::test]
async fn what_follows_the_220_to_starttls_in_plain_text_is_not_read_in_the_tls_session() {
    // A man in the middle appends a reply after the 220: if the client read it after the handshake, every
    // reply would be taken for the one before it.
    let options = HopOptions {
        tls: Some(Ca::new("CA").server("mx.test")),
        starttls_reply: Some("220 2.0.0 go ahead\r\n250 2.0.0 injected\r\n"),
        ..HopOptions::default()
    };
    let session = session(TlsPolicy::Opportunistic, None);
    let (out, lines) = deliver(starttls_hop(), options, &session, &[], &one_recipient()).await;
    assert_eq!(out.unwrap(), [RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "queued"))]);
    assert_eq!(lines[..5], ["EHLO me.test", "STARTTLS", TLS_UP, "EHLO me.test", "MAIL FROM:<a@example.test>"]);
}

#[tokio::test]
async fn a_failure_in_a_following_transaction_keeps_what_the_first_delivered() {
    let answer: Answer = Box::new(|line, _| match line {
        "EHLO me.test" => "250-hop\r\n250 PIPELINING\r\n",
        "DATA" => "354 go\r\n",
        "." => "250 2.0.0 queued\r\n",
        _ => "250 ok\r\n",
    });
    let options = HopOptions { max_rcpts: Some(2), close_at_mail: Some(2), ..HopOptions::default() };
    let (addr, hop) = next_hop_with(answer, options).await;
    let mut c = open(addr, &session(TlsPolicy::Off, None), &[]).await.unwrap();
    let out = c.transaction(&five_recipients()).await.unwrap();
    let closed = Reply::new(451, "4.4.2", "mx.test:25 closed the connection");
    let delivered = RecipientOutcome::Delivered(Reply::new(250, "2.0.0", "queued"));
    assert_eq!(out[..2], [delivered.clone(), delivered]);
    assert_eq!(out[2..], vec![RecipientOutcome::Transient(closed); 3]);
    // The session is not used for another message.
    let again = c.transaction(&one_recipient()).await.unwrap_err();
    assert!(reply_of(&again).starts_with("451 4.4.2 connection to mx.test:25 lost: "), "{}", reply_of(&again));
    assert_eq!(transactions(&hop.await.unwrap()).len(), 2);
}
