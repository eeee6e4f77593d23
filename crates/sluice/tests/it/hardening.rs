//! SMTP receive against a hostile client: what public security suites and a mutation fuzzer found, each
//! driven over a raw socket against the binary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;
use crate::tls::{b64, hash};

/// A raw connection past its greeting.
fn raw(s: &Server) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greeting = [0u8; 512];
    let n = c.read(&mut greeting).unwrap();
    assert!(greeting[..n].starts_with(b"220"));
    c
}

/// Everything the server sends until it closes the connection (or 10 s pass).
fn rest(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// What the server sends until a `421` reply has come whole, it closes the connection, or 10 s pass.
fn until_421(c: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 512];
    while !String::from_utf8_lossy(&out).split("\r\n").any(|line| line.starts_with("421 ")) {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_user_name_cannot_forge_a_log_line_or_colour_the_terminal() {
    let s = Server::start(&format!(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\n\
         auth = \"optional\"\n\
         users = [{{ name = \"alice\", password_hash = \"{}\" }}]\n",
        hash("correct horse")
    ));
    let mut c = s.smtp();
    assert!(c.cmd("EHLO client.test").contains("AUTH PLAIN"));
    let forged = b"\0evil\r\n2026-12-02T00:00:00Z  INFO sluice::serve: FAKE-LOG-LINE\x1b[31mRED\0pw";
    assert!(c.cmd(&format!("AUTH PLAIN {}", b64(forged))).starts_with("535"));
    assert!(wait_until(Duration::from_secs(10), || s.log().contains("authentication failed")));
    let log = s.log();
    assert!(!log.lines().any(|l| l.starts_with("2026-12-02T00:00:00Z")), "a forged line:\n{log}");
    let failed = log.lines().find(|l| l.contains("authentication failed")).unwrap();
    assert!(failed.contains("evil\\x0d\\x0a2026-12-02T00:00:00Z"), "{failed}");
    assert!(failed.contains("FAKE-LOG-LINE\\x1b[31mRED"), "{failed}");
    assert!(!log.contains("\x1b[31mRED"), "a terminal escape reached the log");
}

#[test]
fn a_bare_lf_ends_no_command_and_the_whole_line_is_refused() {
    let s = Server::start("");
    let mut c = raw(&s);
    c.write_all(b"NOOP\nMAIL FROM:<x@t.test>\r\nQUIT\r\n").unwrap();
    let said = rest(&mut c);
    assert!(said.starts_with("500 5.5.2"), "{said}");
    assert!(!said.contains("Sender ok") && !said.contains("250 2.1.0"), "a command ran after a bare LF: {said}");
    assert!(said.contains("221"), "the next line is a command again: {said}");
    // The same inside an over-long line, and a bare CR, which was already refused whole.
    let mut c = raw(&s);
    let long = "X".repeat(2000);
    c.write_all(format!("{long}\nMAIL FROM:<x@t.test>\r\nNOOP\rMAIL FROM:<y@t.test>\r\nQUIT\r\n").as_bytes()).unwrap();
    let said = rest(&mut c);
    assert!(!said.contains("250 2.1.0"), "{said}");
    assert_eq!(said.matches("500 5.5.2").count(), 2, "{said}");
}

#[test]
fn after_421_the_connection_is_closed_wherever_the_session_was_waiting() {
    let s = Server::start(&format!(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\n\
         connection_inactivity_timeout = \"1s\"\nmax_errors = 1000000\n\
         auth = \"optional\"\n\
         users = [{{ name = \"alice\", password_hash = \"{}\" }}]\n",
        hash("correct horse")
    ));
    // Waiting for an AUTH answer. The NOOP goes out once the 421 (after 1 s idle) has come.
    let mut c = raw(&s);
    c.write_all(b"EHLO client.test\r\nAUTH LOGIN\r\n").unwrap();
    let mut said = until_421(&mut c);
    let _ = c.write_all(b"NOOP\r\n");
    said.push_str(&rest(&mut c));
    assert!(said.contains("421 4.4.2"), "{said}");
    assert!(!said.contains("250 2.0.0") && said.matches("421").count() == 1, "answered after 421: {said}");
    // Skipping an over-long line.
    let mut c = raw(&s);
    c.write_all("Y".repeat(3000).as_bytes()).unwrap();
    let mut said = until_421(&mut c);
    let _ = c.write_all(b"\r\nNOOP\r\n");
    said.push_str(&rest(&mut c));
    assert!(said.contains("421 4.4.2"), "{said}");
    assert!(said.matches("421").count() == 1 && !said.contains("250"), "answered after 421: {said}");
}

#[test]
fn an_address_locked_out_on_one_connector_is_locked_out_on_all() {
    let other = free_port();
    let users = format!("users = [{{ name = \"alice\", password_hash = \"{}\" }}]", hash("correct horse"));
    let s = Server::start(&format!(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\nauth = \"optional\"\n\
         auth_failures_per_minute = 2\n{users}\n\n\
         [[receive_connectors]]\nname = \"Submission\"\nlisten = \"127.0.0.1:{other}\"\nauth = \"optional\"\n\
         auth_failures_per_minute = 2\n{users}\n"
    ));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    for _ in 0..2 {
        assert!(c.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0wrong"))).starts_with("535"));
    }
    let mut d = Smtp::connect(([127, 0, 0, 1], other).into());
    d.cmd("EHLO client.test");
    let r = d.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0correct horse")));
    assert!(r.starts_with("454 4.7.0"), "the other connector let the address in: {r}");
}

/// Takes the server's certificate without judging it.
#[derive(Debug)]
struct Capture(std::sync::Mutex<Vec<u8>>, std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for Capture {
    fn verify_server_cert(
        &self,
        end_entity: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        *self.0.lock().unwrap() = end_entity.to_vec();
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.1.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.1.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.1.signature_verification_algorithms.supported_schemes()
    }
}

#[test]
fn the_self_signed_certificate_names_the_server_and_lasts_a_year() {
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\ntls = \"self-signed\"\n",
    );
    let mut c = raw(&s);
    c.write_all(b"EHLO client.test\r\n").unwrap();
    let mut buf = [0u8; 4096];
    let mut said = String::new();
    while !said.contains("250 ") {
        let n = c.read(&mut buf).unwrap();
        said.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    c.write_all(b"STARTTLS\r\n").unwrap();
    let n = c.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"220"));
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let capture = std::sync::Arc::new(Capture(Default::default(), provider.clone()));
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(capture.clone())
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("mx.test").unwrap();
    let mut tls = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    while tls.is_handshaking() {
        tls.complete_io(&mut c).unwrap();
    }
    let der = capture.0.lock().unwrap().clone();
    let has = |needle: &[u8]| der.windows(needle.len()).any(|w| w == needle);
    assert!(!has(b"rcgen self signed cert"), "the library's placeholder name");
    // The host name as the common name (an OID 2.5.4.3 attribute) as well as a subject name.
    assert!(has(&[0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x07]) && has(b"mx.test"), "CN = mx.test");
    // Valid from today to the same day next year (UTCTime YYMMDD000000Z).
    let today = sluice_queue_db::time::rfc3339(sluice_queue_db::time::now_ms());
    let (yy, mm, dd) = (&today[2..4], &today[5..7], &today[8..10]);
    let next = format!("{:02}", yy.parse::<u32>().unwrap() + 1);
    assert!(has(format!("{yy}{mm}{dd}000000Z").as_bytes()), "not before today");
    let day = dd.parse::<u32>().unwrap().min(28);
    assert!(has(format!("{next}{mm}{day:02}000000Z").as_bytes()), "not after one year from today");
}

#[test]
fn protocol_strictness_auth_before_ehlo_binarymime_and_bad_ehlo_names() {
    let s = Server::start(&format!(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\nauth = \"optional\"\n\
         users = [{{ name = \"alice\", password_hash = \"{}\" }}]\n",
        hash("correct horse")
    ));
    let mut c = s.smtp();
    assert!(c.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0correct horse"))).starts_with("503 5.5.1"));
    assert!(c.cmd("EHLO [255.255.255.256]").starts_with("501 5.5.2"));
    assert!(c.cmd(&format!("EHLO {}", "a".repeat(600))).starts_with("501 5.5.2"));
    assert!(c.cmd("EHLO [IPv6:::1]").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<a@example.test> BODY=BINARYMIME").starts_with("555 5.5.4"));
    assert!(c.cmd("MAIL FROM:<a@example.test> BODY=8BITMIME").starts_with("250"));
}

#[test]
fn a_mailbox_matched_without_regard_to_case_receives_the_mail() {
    let s = Server::start(
        "[[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\nmailboxes = [\"bob\"]\n\
         recipient_delimiter = \"+\"\n",
    );
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("a@example.test", &["BOB@LocalHost", "Bob+News@localhost"], "Subject: case\r\n\r\nhi\r\n");
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "bob").len() == 2));
    for wrong in ["BOB", "Bob"] {
        assert!(maildir_new(&s.data(), "localhost", wrong).is_empty(), "a folder {wrong} that bob's reader never sees");
    }
}

#[test]
fn postmaster_without_a_domain_is_accepted_from_anyone_and_delivered_locally() {
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nrelay_networks = []\n\n\
         [[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\nmailboxes = [\"bob\"]\n",
    );
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("a@example.test", &["postmaster"], "Subject: to the postmaster\r\n\r\nhi\r\n");
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "postmaster").len() == 1));
    // And <postmaster@an accepted domain> is never unknown.
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<PostMaster@localhost>").starts_with("250"));
}

#[test]
fn untrusted_clients_reach_only_local_parts_that_exist_unless_the_domain_is_catch_all() {
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\nrelay_networks = []\n\n\
         [[accepted_domains]]\ndomain = \"localhost\"\nmailbox_store = \"Local Maildir\"\n\
         aliases = { \"info\" = [\"bob@localhost\"] }\n\n\
         [[accepted_domains]]\ndomain = \"open.test\"\nmailbox_store = \"Local Maildir\"\ncatch_all = true\n",
    );
    std::fs::create_dir_all(s.data().join("mail/localhost/bob/new")).unwrap();
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    for i in 0..50 {
        let r = c.cmd(&format!("RCPT TO:<random{i}@localhost>"));
        assert!(r.starts_with("550 5.1.1"), "{r}");
    }
    assert!(c.cmd("RCPT TO:<Bob@localhost>").starts_with("250"), "a Maildir already there");
    assert!(c.cmd("RCPT TO:<info@localhost>").starts_with("250"), "an alias");
    assert!(c.cmd("RCPT TO:<anyone@open.test>").starts_with("250"), "catch_all");
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: hello\r\n\r\nhi\r\n.\r\n");
    assert!(c.read().starts_with("250"));
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "open.test", "anyone").len() == 1));
    // Bob and info (an alias of bob) are one recipient: one copy.
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "bob").len() == 1));
    let folders: Vec<String> = std::fs::read_dir(s.data().join("mail/localhost"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(folders, ["bob"], "no folder made for a refused local part");
}

#[test]
fn lines_over_998_octets_are_folded_on_the_way_out() {
    let sink = Sink::start();
    let s = Server::start(&crate::relay::relay_config(sink.port));
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let long = "w".repeat(3000);
    let r = c.mail("a@example.test", &["b@remote.test"], &format!("Subject: long\r\nX-Long: {long}\r\n\r\n{long}\r\n"));
    assert!(r.starts_with("250"), "{r}");
    assert!(wait_until(Duration::from_secs(10), || sink.messages.lock().unwrap().len() == 1));
    let got = sink.messages.lock().unwrap()[0].clone();
    let lines: Vec<&[u8]> = got.split(|b| *b == b'\n').collect();
    assert!(lines.iter().all(|l| l.len() <= 998 + 1), "a line over 998 octets went out");
    // Folded with CRLF and a space: the header stays one field, and nothing is lost.
    let text = String::from_utf8(got.clone()).unwrap();
    assert_eq!(text.replace("\r\n ", "").matches(&long).count(), 2);
    assert!(text.contains("\r\nX-Long: www") && text.contains("\r\n www"));
}

#[test]
fn message_data_sent_before_the_354_is_improper_pipelining() {
    let sink = Sink::start();
    let s = Server::start(&crate::relay::relay_config(sink.port));
    let mut c = raw(&s);
    c.write_all(b"EHLO client.test\r\nMAIL FROM:<a@example.test>\r\nRCPT TO:<b@remote.test>\r\nDATA\r\nSubject: early\r\n\r\nx\r\n.\r\n")
        .unwrap();
    let said = rest(&mut c);
    assert!(said.contains("554 5.5.0") && !said.contains("354"), "{said}");
    assert!(wait_until(Duration::from_secs(5), || s.log().contains("improper pipelining after DATA")));
    // A client that waits for the 354 is served.
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    assert!(c.mail("a@example.test", &["b@remote.test"], "Subject: patient\r\n\r\nx\r\n").starts_with("250"));
    assert!(wait_until(Duration::from_secs(10), || sink.count() == 1));
    assert!(!sink.subjects.lock().unwrap().contains_key("early"));
}

#[test]
fn a_client_that_talks_before_the_greeting_is_refused() {
    let s = Server::start(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{smtp}\"\ngreet_pause = \"500ms\"\n",
    );
    let mut c = TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    c.write_all(b"EHLO early.test\r\nMAIL FROM:<a@example.test>\r\n").unwrap();
    let said = rest(&mut c);
    assert!(said.starts_with("554 5.5.0") && !said.contains("220") && !said.contains("250"), "{said}");
    assert!(wait_until(Duration::from_secs(5), || s.log().contains("client talked before the greeting")));
    // A client that waits is greeted.
    let mut c = s.smtp();
    assert!(c.cmd("EHLO patient.test").starts_with("250"));
}
