//! SMTP receive, driven over a real socket.

use std::time::Duration;

use crate::harness::*;

#[test]
fn local_mail_lands_in_maildir_with_trace_headers() {
    let s = Server::start("");
    let mut c = s.smtp();
    assert!(c.cmd("EHLO client.test").contains("PIPELINING"));
    let r = c.mail("sender@example.test", &["user@localhost"], "Subject: hello\r\n\r\nbody line\r\n..dot\r\n");
    assert!(r.starts_with("250 2.0.0"), "{r}");
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "user").len() == 1));
    let text = std::fs::read_to_string(&maildir_new(&s.data(), "localhost", "user")[0]).unwrap();
    assert!(text.starts_with(
        "Return-Path: <sender@example.test>\r\nDelivered-To: user@localhost\r\nReceived: from client.test"
    ));
    assert!(text.contains("by mx.test (sluice)"), "{text}");
    assert!(text.ends_with("Subject: hello\r\n\r\nbody line\r\n.dot\r\n"), "{text}");
    // The tracking log tells the message's story.
    let mid: u64 = r.split("queued as ").nth(1).unwrap().trim().parse().unwrap();
    assert!(wait_until(Duration::from_secs(5), || {
        let ids: Vec<String> = tracking_events(&s.data())
            .iter()
            .filter(|e| e["mid"] == mid)
            .map(|e| e["event_id"].as_str().unwrap().to_owned())
            .collect();
        ["RECEIVE", "SUBMIT", "ROUTE", "DELIVER"].iter().all(|id| ids.iter().any(|i| i == id))
    }));
    let receive = tracking_events(&s.data()).into_iter().find(|e| e["event_id"] == "RECEIVE").unwrap();
    assert_eq!(receive["sender"], "sender@example.test");
    assert_eq!(receive["recipients"][0], "user@localhost");
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let s = Server::start("");
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    c.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<u1@localhost>\r\nRCPT TO:<u2@localhost>\r\nDATA\r\n");
    assert!(c.read().starts_with("250 2.1.0"));
    assert!(c.read().starts_with("250 2.1.5"));
    assert!(c.read().starts_with("250 2.1.5"));
    assert!(c.read().starts_with("354"));
    c.send(b"Subject: p\r\n\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n");
    assert!(c.read().starts_with("250 2.0.0"));
    assert!(c.read().starts_with("250"));
    assert!(c.read().starts_with("221"));
    for who in ["u1", "u2"] {
        assert!(
            wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", who).len() == 1),
            "{who} did not receive the message within 10 s"
        );
    }
}

#[test]
fn relay_is_denied_outside_relay_networks() {
    let s = Server::start(&format!(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{}\"\nrelay_networks = [\"127.0.0.2/32\"]\n\n[[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\ncatch_all = true\n",
        "{smtp}"
    ));
    // 127.0.0.1 is not in relay_networks here.
    let mut c = s.smtp();
    c.cmd("EHLO outside.test");
    assert!(c.cmd("MAIL FROM:<a@outside.test>").starts_with("250"));
    let r = c.cmd("RCPT TO:<victim@elsewhere.test>");
    assert!(r.starts_with("550 5.7.1"), "{r}");
    for trick in [
        "RCPT TO:<victim%elsewhere.test@localhost>",
        "RCPT TO:<elsewhere.test!victim@localhost>",
        "RCPT TO:<\"victim@elsewhere.test\"@localhost>",
    ] {
        let r = c.cmd(trick);
        assert!(!r.starts_with("250"), "{trick}: {r}");
    }
    let r = c.cmd("RCPT TO:<@localhost:victim@elsewhere.test>");
    assert!(r.starts_with("550 5.7.1"), "source route: {r}");
    let r = c.cmd("RCPT TO:<victim@[127.0.0.1]>");
    assert!(r.starts_with("550 5.7.1"), "address literal: {r}");
    assert!(c.cmd("RCPT TO:<user@LOCALHOST>").starts_with("250"));
}

#[test]
fn smuggled_transactions_never_become_messages() {
    for (mode, variant) in [
        ("reject", "\n.\n"),
        ("reject", "\n.\r\n"),
        ("reject", "\r.\r"),
        ("reject", "\r\n.\n"),
        ("normalize", "\n.\n"),
        ("normalize", "\r\n.\n"),
        ("normalize", "\n.\r\n"),
    ] {
        let s = Server::start(&format!(
            "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\nbare_newlines = \"{mode}\"\n"
        ));
        let mut c = s.smtp();
        c.cmd("EHLO client.test");
        c.cmd("MAIL FROM:<a@example.test>");
        c.cmd("RCPT TO:<first@localhost>");
        assert!(c.cmd("DATA").starts_with("354"));
        c.send(
            format!(
                "Subject: one\r\n\r\nbody{variant}MAIL FROM:<evil@example.test>\r\nRCPT TO:<second@localhost>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\n"
            )
            .as_bytes(),
        );
        let r = c.read();
        if mode == "reject" {
            assert!(r.starts_with("550 5.6.0"), "{mode} {variant:?}: {r}");
        } else {
            assert!(r.starts_with("250"), "{mode} {variant:?}: {r}");
        }
        assert!(c.cmd("NOOP").starts_with("250"), "session continues in step");
        // A marker after the attempt: a smuggled transaction would have been queued before it.
        let r = c.mail("a@example.test", &["marker@localhost"], "Subject: marker\r\n\r\nx\r\n");
        assert!(r.starts_with("250"), "{mode} {variant:?}: marker: {r}");
        c.cmd("QUIT");
        let count = |who: &str| maildir_new(&s.data(), "localhost", who).len();
        let first = usize::from(mode == "normalize");
        assert!(
            wait_until(Duration::from_secs(20), || count("marker") == 1 && count("first") == first),
            "{mode} {variant:?}: after 20 s marker has {} messages, first has {} (expected {first})",
            count("marker"),
            count("first")
        );
        // Proving that nothing arrives takes a bounded wait: 300 ms more after the marker arrived.
        assert!(
            holds_for(Duration::from_millis(300), || count("second") == 0 && count("first") == first),
            "{mode} {variant:?}: smuggled (second has {}, first has {})",
            count("second"),
            count("first")
        );
    }
}

#[test]
fn protocol_errors_get_enhanced_codes() {
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nmax_message_size = \"1KB\"\nmax_recipients = 2\n",
    );
    let mut c = s.smtp();
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("503 5.5.1"));
    c.cmd("EHLO client.test");
    assert!(c.cmd("RCPT TO:<u@localhost>").starts_with("503 5.5.1"));
    assert!(c.cmd("DATA").starts_with("503 5.5.1"));
    assert!(c.cmd("FOO bar").starts_with("500 5.5.1"));
    assert!(c.cmd("MAIL FROM:<a@example.test> SIZE=5000").starts_with("552 5.3.4"));
    assert!(c.cmd("MAIL FROM:<a@example.test> X=1").starts_with("555 5.5.4"));
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("503 5.5.1"));
    assert!(c.cmd("RCPT TO:<a/b@localhost>").starts_with("550 5.1.3"));
    assert!(c.cmd("RCPT TO:<.hidden@localhost>").starts_with("501 5.1.3"));
    assert!(c.cmd("RCPT TO:<a=b@localhost>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<c@localhost>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<d@localhost>").starts_with("452 4.5.3"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: big\r\n\r\n{}\r\n.\r\n", "x".repeat(2000)).as_bytes());
    assert!(c.read().starts_with("552 5.3.4"));
    let long = format!("NOOP {}", "x".repeat(3000));
    assert!(c.cmd(&long).starts_with("500 5.5.2"));
    assert!(c.cmd("NOOP").starts_with("250"));
    assert!(c.cmd("QUIT").starts_with("221"));
}

#[test]
fn too_many_errors_end_the_session() {
    let s = Server::start("");
    let mut c = s.smtp();
    let mut last = String::new();
    for _ in 0..10 {
        last = c.cmd("BOGUS");
    }
    assert!(last.starts_with("500 5.5.1"), "{last}");
    let closing = c.read();
    assert!(closing.starts_with("421 4.7.0"), "{closing}");
    assert_eq!(c.read(), "", "the server closed the connection");
}

#[test]
fn bdat_chunks_make_one_message_and_refused_chunks_are_never_commands() {
    let s = Server::start("");
    let mut c = s.smtp();
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("CHUNKING") && ehlo.contains("SMTPUTF8"), "{ehlo}");
    // A refused BDAT's octets are read and thrown away, not taken for commands.
    c.send(b"BDAT 12\r\nQUIT\r\nQUIT\r\n");
    assert!(c.read().starts_with("503 5.5.1"));
    assert!(c.cmd("NOOP").starts_with("250"), "still in step");
    c.send(b"MAIL FROM:<a@example.test>\r\nRCPT TO:<chunky@localhost>\r\nBDAT 21\r\nSubject: chunks\r\n\r\nab");
    assert!(c.read().starts_with("250 2.1.0"));
    assert!(c.read().starts_with("250 2.1.5"));
    assert!(c.read().starts_with("250 2.0.0"));
    c.send(b"BDAT 8 LAST\r\ncd\r\nef\r\n");
    let r = c.read();
    assert!(r.starts_with("250 2.0.0") && r.contains("queued as"), "{r}");
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "chunky").len() == 1));
    let text = std::fs::read_to_string(&maildir_new(&s.data(), "localhost", "chunky")[0]).unwrap();
    assert!(text.ends_with("Subject: chunks\r\n\r\nabcd\r\nef\r\n"), "{text:?}");
    // The same content rules as DATA: a bare LF is refused.
    c.cmd("MAIL FROM:<a@example.test>");
    c.cmd("RCPT TO:<chunky@localhost>");
    c.send(b"BDAT 12 LAST\r\nSubject: x\n\n");
    assert!(c.read().starts_with("550 5.6.0"));
}

#[test]
fn loops_are_cut_and_outside_clients_cannot_forge_sluice_headers() {
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nrelay_networks = [\"127.0.0.2/32\"]\nmax_hop_count = 5\n\n[[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\ncatch_all = true\n",
    );
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let hops = "Received: from a by b; Sun, 22 Nov 2026 05:00:00 +0000\r\n".repeat(5);
    let r = c.mail("a@example.test", &["loop@localhost"], &format!("{hops}Subject: loop\r\n\r\nx\r\n"));
    assert!(r.starts_with("554 5.4.6"), "{r}");
    let r = c.mail(
        "a@example.test",
        &["plain@localhost"],
        "X-Sluice-Fault: panic@delivery\r\n\tcontinued\r\nSubject: forged\r\n\r\nX-Sluice-Fault: in the body stays\r\n",
    );
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "plain").len() == 1));
    let text = std::fs::read_to_string(&maildir_new(&s.data(), "localhost", "plain")[0]).unwrap();
    assert!(!text.contains("X-Sluice-Fault: panic") && !text.contains("continued"), "{text}");
    assert!(text.contains("Subject: forged\r\n\r\nX-Sluice-Fault: in the body stays"), "{text}");
}

#[test]
fn smtputf8_senders_are_accepted_when_declared() {
    let s = Server::start("");
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<üser@exämple.test>").starts_with("553 5.6.7"), "not without SMTPUTF8");
    assert!(c.cmd("MAIL FROM:<üser@exämple.test> SMTPUTF8").starts_with("250"));
    assert!(c.cmd("RCPT TO:<intl@localhost>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send("Subject: grüße\r\n\r\nhallo\r\n.\r\n".as_bytes());
    assert!(c.read().starts_with("250"));
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "intl").len() == 1));
    let text = std::fs::read_to_string(&maildir_new(&s.data(), "localhost", "intl")[0]).unwrap();
    assert!(text.starts_with("Return-Path: <üser@exämple.test>"), "{text}");
}

#[test]
fn unknown_mailboxes_are_refused_when_the_domain_lists_them() {
    let s = Server::start(
        "[[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\nmailboxes = [\"alice\", \"bob\"]\n",
    );
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    assert!(c.cmd("RCPT TO:<alice@localhost>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<Bob+lists@LOCALHOST>").starts_with("250"), "+tag and case are ignored");
    let r = c.cmd("RCPT TO:<mallory@localhost>");
    assert!(r.starts_with("550 5.1.1"), "{r}");
}

#[test]
fn an_alias_delivers_to_each_of_its_targets_once() {
    let s = Server::start(
        "[[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\nmailboxes = [\"alice\", \"bob\"]\n\
         aliases = { \"team\" = [\"alice@localhost\", \"bob@localhost\"] }\n",
    );
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    c.cmd("MAIL FROM:<a@example.test>");
    assert!(c.cmd("RCPT TO:<Team+news@localhost>").starts_with("250"), "an alias is a known recipient");
    assert!(c.cmd("RCPT TO:<alice@localhost>").starts_with("250"), "a target given again is not doubled");
    assert!(c.cmd("RCPT TO:<mallory@localhost>").starts_with("550 5.1.1"));
    c.cmd("DATA");
    assert!(c.cmd("Subject: to the team\r\n\r\nhello\r\n.").starts_with("250"));
    for who in ["alice", "bob"] {
        assert!(
            wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", who).len() == 1),
            "{who} gets it"
        );
    }
    // A second copy for alice or a mailbox for the alias must not appear: a bounded wait after both arrived.
    assert!(
        holds_for(Duration::from_millis(300), || maildir_new(&s.data(), "localhost", "alice").len() == 1),
        "alice got it more than once"
    );
    assert!(maildir_new(&s.data(), "localhost", "team").is_empty(), "the alias has no mailbox of its own");
}

#[test]
fn a_flood_from_one_address_outside_relay_networks_gets_421() {
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nrelay_networks = [\"127.0.0.2/32\"]\nmax_connections_per_ip = 2\n",
    );
    // The harness's readiness probe was a connection too: until the server has seen it close, it holds a
    // slot. Wait until two sessions are open at once, each greeted.
    let greeted = || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
        let mut buf = [0u8; 3];
        use std::io::Read;
        (c.read_exact(&mut buf).is_ok() && &buf == b"220").then_some(c)
    };
    let mut open = Vec::new();
    assert!(wait_until(Duration::from_secs(10), || {
        match greeted() {
            Some(c) => open.push(c),
            None => open.clear(),
        }
        open.len() == 2
    }));
    let (first, second) = (open.remove(0), open.remove(0));
    let mut third = std::net::TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
    let mut greeting = String::new();
    use std::io::Read;
    third.read_to_string(&mut greeting).unwrap();
    assert!(greeting.starts_with("421 4.7.0"), "{greeting}");
    drop(first);
    drop(second);
    // The slots come back when the sessions end.
    assert!(wait_until(Duration::from_secs(5), || {
        let mut s2 = std::net::TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
        let mut buf = [0u8; 3];
        s2.read_exact(&mut buf).is_ok() && &buf == b"220"
    }));
}

#[test]
fn a_client_that_stops_reading_is_cut_off() {
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nconnection_inactivity_timeout = \"1s\"\nmax_errors = 1000000\n",
    );
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
    c.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
    // Pipeline commands without ever reading the replies until the server's send buffer is full and the
    // server stops reading; then the server must give up on its own.
    let burst = "NOOP\r\n".repeat(10_000);
    let started = std::time::Instant::now();
    let mut closed = false;
    while started.elapsed() < Duration::from_secs(30) {
        match c.write_all(burst.as_bytes()) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    assert!(closed, "the server kept a client that never reads");
    // And the server still serves others.
    let mut other = s.smtp();
    assert!(other.cmd("NOOP").starts_with("250"));
}

#[test]
fn slowloris_clients_are_cut_off_by_the_timeouts_while_others_are_served() {
    use std::io::{Read, Write};
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nconnection_timeout = \"3s\"\nconnection_inactivity_timeout = \"1s\"\n",
    );
    let connect = || {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
        c.set_read_timeout(Some(Duration::from_millis(250))).unwrap();
        let mut banner = [0u8; 3];
        c.read_exact(&mut banner).unwrap();
        assert_eq!(&banner, b"220");
        c
    };
    // The trickler sends a command a byte at a time, never idle long enough for the inactivity timeout.
    let mut slow = connect();
    // The idler sends nothing after the banner.
    let mut idle = connect();
    let started = std::time::Instant::now();
    let (mut slow_said, mut idle_said) = (Vec::new(), Vec::new());
    let (mut slow_cut, mut idle_cut) = (None, None);
    std::thread::scope(|scope| {
        // Meanwhile a normal client is served.
        let normal = scope.spawn(|| {
            let mut c = s.smtp();
            c.cmd("EHLO client.test");
            c.mail("a@example.test", &["u@localhost"], "Subject: s\r\n\r\nx\r\n")
        });
        while started.elapsed() < Duration::from_secs(20) && (slow_cut.is_none() || idle_cut.is_none()) {
            let _ = slow.write_all(b"N");
            for (c, said, cut) in
                [(&mut slow, &mut slow_said, &mut slow_cut), (&mut idle, &mut idle_said, &mut idle_cut)]
            {
                let mut buf = [0u8; 512];
                match c.read(&mut buf) {
                    Ok(0) => *cut = cut.or(Some(started.elapsed())),
                    Ok(n) => said.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
            }
        }
        let r = normal.join().unwrap();
        assert!(r.starts_with("250"), "{r}");
    });
    let (slow_cut, idle_cut) =
        (slow_cut.expect("the trickler was never cut off"), idle_cut.expect("the idler was kept"));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(text(&slow_said).contains("421 4.4.2 Connection time limit exceeded"), "{}", text(&slow_said));
    assert!(slow_cut >= Duration::from_millis(2500), "cut after {slow_cut:?}, before connection_timeout");
    assert!(text(&idle_said).contains("421 4.4.2 Idle too long"), "{}", text(&idle_said));
    assert!(idle_cut < Duration::from_millis(2500), "the idler lasted {idle_cut:?}");
}

#[test]
fn a_large_message_from_outside_relay_networks_loses_its_sluice_headers_and_nothing_else() {
    // Spooled past its header, and its header edited at the end: the spooled data must stay in order.
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nrelay_networks = []\n\n[[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\ncatch_all = true\n",
    );
    let mut rest = String::new();
    let mut i = 0;
    while rest.len() < 2 << 20 {
        rest.push_str(&format!("line {i:07}\r\n"));
        i += 1;
    }
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<user@localhost>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(format!("Subject: big\r\nX-Sluice-Fault: x\r\n\r\n{rest}").as_bytes());
    // The last line comes alone with the end of data: it is still in memory when the header is edited.
    std::thread::sleep(Duration::from_millis(300));
    c.send(b"the last line\r\n.\r\n");
    let r = c.read();
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(20), || maildir_new(&s.data(), "localhost", "user").len() == 1));
    let text = std::fs::read_to_string(&maildir_new(&s.data(), "localhost", "user")[0]).unwrap();
    assert!(!text.contains("X-Sluice-Fault"), "the header from outside relay_networks was kept");
    let expected = format!("Subject: big\r\n\r\n{rest}the last line\r\n");
    assert!(text.ends_with(&expected), "the content changed ({} bytes)", text.len());
}
