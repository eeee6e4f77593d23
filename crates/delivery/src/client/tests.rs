use std::sync::Arc;

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
    sluice_queue_db::Recipient { address: address.into(), notify: notify.map(Into::into), orcpt: orcpt.map(Into::into) }
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
    let all = EhloExtensions {
        pipelining: true,
        size: true,
        eight_bit_mime: true,
        smtputf8: true,
        dsn: true,
        ..EhloExtensions::default()
    };
    let extensions = [EhloExtensions::default(), all, EhloExtensions { dsn: false, ..all }];
    for parts in [plain, dsn, utf8, odd] {
        let msg = message(parts);
        for ext in &extensions {
            let envelope = envelope(ext, &msg, msg.body.len(), None);
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
    let envelope = envelope(&ext, &msg, msg.body.len(), None);
    assert_eq!(envelope.mail, "MAIL FROM:<a@example.test> SIZE=20 RET=FULL ENVID=q+3D1\r\n");
    assert_eq!(envelope.rcpts, ["RCPT TO:<b@remote.test> NOTIFY=SUCCESS,DELAY ORCPT=rfc822;b+2Bx@remote.test\r\n"]);
}

#[test]
fn ehlo_keywords_become_extensions() {
    let ehlo = Reply::new(250, "", "mx.test\nPIPELINING\nsize 1000\n8BITMIME\nSTARTTLS\nDSN\nAUTH login CRAM-MD5");
    let want = EhloExtensions {
        pipelining: true,
        size: true,
        eight_bit_mime: true,
        smtputf8: false,
        dsn: true,
        starttls: true,
        auth_plain: false,
        auth_login: true,
    };
    assert_eq!(EhloExtensions::parse(&ehlo), want);
    let plain = EhloExtensions::parse(&Reply::new(250, "", "mx.test\nAUTH PLAIN LOGIN"));
    assert!(plain.auth_plain && plain.auth_login && !plain.starttls);
}

/// How a test next hop answers: the reply to each command line (and `.` for the end of data), told whether
/// TLS is up.
type Answer = Box<dyn Fn(&str, bool) -> &'static str + Send + Sync>;

/// A test next hop's behaviour beyond its answers.
#[derive(Default)]
struct HopOptions {
    /// With a server configuration, STARTTLS is answered with `220` and a handshake.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// RCPTs past this many accepted in a transaction get `452 4.5.3`.
    max_rcpts: Option<usize>,
    /// The reply to STARTTLS when it is not the plain `220`.
    starttls_reply: Option<&'static str>,
    /// The connection is closed, without a reply, at this MAIL (counting from 1).
    close_at_mail: Option<usize>,
}

/// What a next hop's transcript holds where the TLS handshake finished.
const TLS_UP: &str = "<TLS>";

/// A next hop on a loopback port that answers each command line, and the end of data, with `answer`, and
/// hands back every line it got once the client quits.
async fn next_hop(answer: fn(&str) -> &'static str) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    let (addr, task) = next_hop_with(Box::new(move |line, _| answer(line)), HopOptions::default()).await;
    (addr.to_string(), task)
}

/// How a conversation on one stream ended.
enum Ended {
    Quit,
    Closed,
    StartTls,
}

/// A next hop with STARTTLS (after which its transcript has [`TLS_UP`], or the handshake's failure) and a
/// recipient limit, as `options` say.
async fn next_hop_with(answer: Answer, options: HopOptions) -> (SocketAddr, tokio::task::JoinHandle<Vec<String>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = tokio::io::BufReader::new(stream);
        stream.get_mut().write_all(b"220 hop\r\n").await.unwrap();
        let mut lines = Vec::new();
        if let Ended::StartTls = converse(&mut stream, &answer, &options, false, &mut lines).await {
            assert!(stream.buffer().is_empty(), "the client sent plain text after STARTTLS");
            let acceptor = tokio_rustls::TlsAcceptor::from(options.tls.clone().unwrap());
            match acceptor.accept(stream.into_inner()).await {
                Ok(tls) => {
                    lines.push(TLS_UP.to_owned());
                    converse(&mut tokio::io::BufReader::new(tls), &answer, &options, true, &mut lines).await;
                }
                Err(e) => lines.push(format!("<handshake failed: {e}>")),
            }
        }
        lines
    });
    (addr, task)
}

/// Answers command lines on one stream until QUIT, the end of the connection or an accepted STARTTLS.
async fn converse<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut tokio::io::BufReader<S>,
    answer: &Answer,
    options: &HopOptions,
    tls: bool,
    lines: &mut Vec<String>,
) -> Ended {
    use tokio::io::AsyncBufReadExt;
    let (mut in_data, mut rcpts, mut mails) = (false, 0, 0);
    loop {
        let mut raw = Vec::new();
        if stream.read_until(b'\n', &mut raw).await.unwrap_or(0) == 0 {
            return Ended::Closed;
        }
        let line = String::from_utf8_lossy(&raw).trim_end_matches("\r\n").to_owned();
        lines.push(line.clone());
        if in_data && line != "." {
            continue;
        }
        if line.starts_with("MAIL") {
            mails += 1;
            if options.close_at_mail == Some(mails) {
                return Ended::Closed;
            }
        }
        let reply = if in_data {
            answer(".", tls)
        } else if line == "STARTTLS" && options.tls.is_some() && !tls {
            options.starttls_reply.unwrap_or("220 2.0.0 ready to start TLS\r\n")
        } else if line.starts_with("RCPT") && options.max_rcpts.is_some_and(|max| rcpts >= max) {
            "452 4.5.3 too many recipients\r\n"
        } else {
            if line.starts_with("MAIL") {
                rcpts = 0;
            }
            let reply = answer(&line, tls);
            if line.starts_with("RCPT") && reply.starts_with('2') {
                rcpts += 1;
            }
            reply
        };
        in_data = line == "DATA" && reply.starts_with("354");
        stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
        stream.get_mut().flush().await.unwrap();
        if line == "QUIT" {
            return Ended::Quit;
        }
        if line == "STARTTLS" && reply.starts_with("220") {
            return Ended::StartTls;
        }
    }
}

fn two_recipients() -> Outbound {
    message(sluice_queue_db::EnvelopeParts {
        from: "a@example.test".into(),
        recipients: vec![recipient("bad@remote.test", None, None), recipient("good@remote.test", None, None)],
        ..Default::default()
    })
}

async fn deliver_to(addr: &str, protocol: Protocol) -> Result<Vec<RecipientOutcome>, DeliveryError> {
    let tls = ClientTls::with_roots([]);
    let spec = SessionSpec { helo: "me.test", protocol, session: None, tls: &tls };
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

/// A next hop that keeps a transaction open until RSET, as Dovecot's LMTP does: MAIL while one is open gets
/// 503; RCPTs join the open transaction.
fn stateful_hop() -> Answer {
    let open = std::sync::Mutex::new(false);
    Box::new(move |line: &str, _| {
        let mut open = open.lock().unwrap();
        match line {
            l if l.starts_with("EHLO") || l.starts_with("LHLO") => "250-hop\r\n250 PIPELINING\r\n",
            l if l.starts_with("MAIL") && *open => "503 5.5.0 MAIL already given\r\n",
            l if l.starts_with("MAIL") => {
                *open = true;
                "250 ok\r\n"
            }
            l if l.starts_with("RCPT TO:<bad@") => "550 5.1.1 unknown\r\n",
            l if l.starts_with("RCPT") => "250 ok\r\n",
            "DATA" => "554 5.5.1 no valid recipients\r\n",
            "RSET" => {
                *open = false;
                "250 ok\r\n"
            }
            "QUIT" => "221 bye\r\n",
            _ => "250 ok\r\n",
        }
    })
}

#[tokio::test]
async fn a_pipelined_transaction_whose_recipients_are_all_refused_is_reset_before_the_next() {
    let (addr, hop) = next_hop_with(stateful_hop(), HopOptions::default()).await;
    let tls = ClientTls::with_roots([]);
    let spec = SessionSpec { helo: "me.test", protocol: Protocol::Smtp, session: None, tls: &tls };
    let mut c = ClientConnection::connect_to(addr, "hop", &addr.to_string(), &spec).await.unwrap();
    let refused = message(sluice_queue_db::EnvelopeParts {
        from: "a@example.test".into(),
        recipients: vec![recipient("bad@remote.test", None, None)],
        ..Default::default()
    });
    let out = c.transaction(&refused).await.unwrap();
    assert!(matches!(&out[..], [RecipientOutcome::Permanent(r)] if r.code == 550), "{out:?}");
    // The next message on the connection starts a transaction of its own.
    let second = message(sluice_queue_db::EnvelopeParts {
        from: String::new(),
        recipients: vec![recipient("bad@remote.test", None, None)],
        ..Default::default()
    });
    let out = c.transaction(&second).await.unwrap();
    assert!(matches!(&out[..], [RecipientOutcome::Permanent(r)] if r.code == 550), "{out:?}");
    Box::new(c).quit().await;
    let lines = hop.await.unwrap();
    let data = lines.iter().position(|l| l == "DATA").unwrap();
    assert_eq!(lines[data + 1], "RSET", "{lines:?}");
}

#[tokio::test]
async fn data_taken_after_a_refused_mail_drops_the_connection_without_an_end_of_data() {
    let (addr, hop) = next_hop(|line| match line {
        "EHLO me.test" => "250-hop\r\n250 PIPELINING\r\n",
        l if l.starts_with("MAIL") => "503 5.5.0 MAIL already given\r\n",
        "DATA" => "354 go\r\n",
        _ => "250 ok\r\n",
    })
    .await;
    let error = deliver_to(&addr, Protocol::Smtp).await.unwrap_err();
    assert!(matches!(error, DeliveryError::OutOfStep { .. }), "{error:?}");
    let lines = hop.await.unwrap();
    assert!(!lines.iter().any(|l| l == "."), "an empty message was ended: {lines:?}");
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

mod send;
