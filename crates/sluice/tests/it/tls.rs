//! STARTTLS, implicit TLS and AUTH on a receive connector, driven with a real TLS client (rustls) against
//! the binary; the certificate is made here and trusted by the client, so the handshake is verified.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;

use crate::harness::*;

/// `alice`'s argon2 hash, made by the binary itself.
pub(crate) fn hash(password: &str) -> String {
    let mut child = std::process::Command::new(BIN)
        .arg("hash-password")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(format!("{password}\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A server whose connector has the certificate and `extra` keys, with no relay networks: only AUTH lets
/// a client relay.
fn server(extra: &str) -> (Server, Arc<rustls::ClientConfig>) {
    let dir = tempfile::tempdir().unwrap();
    let client = certificate(dir.path(), "mx.test", "cert");
    let connector = format!(
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{{smtp}}\"\nrelay_networks = []\n\
         tls = {{ cert = \"{0}/cert.pem\", key = \"{0}/cert.key\" }}\n\
         users = [{{ name = \"alice\", password_hash = \"{1}\" }}]\n{extra}\n",
        dir.path().display(),
        hash("correct horse")
    );
    let s = Server::start(&connector);
    // The certificate files stay until the server has read them (at start).
    drop(dir);
    (s, client)
}

/// An SMTP client that can switch to TLS.
enum Conn {
    Plain(BufReader<TcpStream>),
    Tls(Box<BufReader<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>>),
}

impl Conn {
    fn plain(port: u16) -> Conn {
        let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn::Plain(BufReader::new(s))
    }

    fn tls_over(tcp: TcpStream, config: &Arc<rustls::ClientConfig>) -> Conn {
        let name = ServerName::try_from("mx.test").unwrap();
        let conn = rustls::ClientConnection::new(config.clone(), name).unwrap();
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        // Complete the handshake now: it fails if anything but TLS comes back.
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock).unwrap();
        }
        Conn::Tls(Box::new(BufReader::new(stream)))
    }

    fn starttls(self, config: &Arc<rustls::ClientConfig>) -> Conn {
        let Conn::Plain(reader) = self else { panic!("already TLS") };
        assert!(reader.buffer().is_empty(), "plaintext after the 220 to STARTTLS: {:?}", reader.buffer());
        Conn::tls_over(reader.into_inner(), config)
    }

    fn send(&mut self, raw: &[u8]) {
        match self {
            Conn::Plain(r) => r.get_mut().write_all(raw).unwrap(),
            Conn::Tls(r) => {
                r.get_mut().write_all(raw).unwrap();
                r.get_mut().flush().unwrap();
            }
        }
    }

    fn read(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let n = match self {
                Conn::Plain(r) => r.read_line(&mut line),
                Conn::Tls(r) => r.read_line(&mut line),
            };
            if n.unwrap_or(0) == 0 {
                return all;
            }
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes());
        self.read()
    }
}

pub(crate) fn b64(text: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { A[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

#[test]
fn starttls_discards_injected_commands_then_auth_allows_relay() {
    let (s, client) = server("auth = \"optional\"");
    let mut c = Conn::plain(s.smtp);
    assert!(c.read().starts_with("220"));
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.contains("STARTTLS") && ehlo.contains("DSN"), "{ehlo}");
    // Without AUTH, nobody relays here.
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@remote.test>").starts_with("550 5.7.1"));
    assert!(c.cmd("RSET").starts_with("250"));
    // A command pipelined behind STARTTLS is dropped unanswered: it never reaches the TLS session, and no
    // plaintext reply follows the 220 (`starttls` checks, and the handshake would fail on one).
    c.send(b"STARTTLS\r\nMAIL FROM:<injected@example.test>\r\n");
    assert!(c.read().starts_with("220 2.0.0"));
    let mut c = c.starttls(&client);
    // The session starts over: the first reply is the EHLO's, STARTTLS is gone, AUTH is offered.
    let ehlo = c.cmd("EHLO client.test");
    assert!(ehlo.starts_with("250-mx.test"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS") && ehlo.contains("AUTH PLAIN LOGIN"), "{ehlo}");
    assert!(c.cmd("STARTTLS").starts_with("503"));
    // A wrong password, then LOGIN with the right one.
    assert!(c.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0wrong"))).starts_with("535 5.7.8"));
    assert!(c.cmd("AUTH LOGIN").starts_with("334 VXNlcm5hbWU6"));
    assert!(c.cmd(&b64(b"alice")).starts_with("334 UGFzc3dvcmQ6"));
    assert!(c.cmd(&b64(b"correct horse")).starts_with("235 2.7.0"));
    assert!(c.cmd("AUTH PLAIN").starts_with("503"));
    // Authenticated: relaying is allowed, and local mail carries the trace of TLS and AUTH.
    assert!(c.cmd("MAIL FROM:<alice@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<b@remote.test>").starts_with("250"), "relay after AUTH");
    assert!(c.cmd("RSET").starts_with("250"));
    assert!(c.cmd("MAIL FROM:<alice@example.test>").starts_with("250"));
    assert!(c.cmd("RCPT TO:<user@localhost>").starts_with("250"));
    assert!(c.cmd("DATA").starts_with("354"));
    c.send(b"Subject: over tls\r\n\r\nhello\r\n.\r\n");
    assert!(c.read().starts_with("250 2.0.0"));
    assert!(wait_until(Duration::from_secs(10), || maildir_new(&s.data(), "localhost", "user").len() == 1));
    let text = std::fs::read_to_string(&maildir_new(&s.data(), "localhost", "user")[0]).unwrap();
    assert!(text.contains("with ESMTPSA id"), "{text}");
    assert!(text.contains("(using TLSv1.3"), "{text}");
    assert!(!text.contains("injected"), "{text}");
}

#[test]
fn auth_required_refuses_mail_before_auth_and_failures_are_rate_limited() {
    let (s, _) = server("auth = \"required\"\nauth_failures_per_minute = 2");
    let mut c = Conn::plain(s.smtp);
    assert!(c.read().starts_with("220"));
    assert!(c.cmd("EHLO client.test").contains("AUTH PLAIN LOGIN"), "loopback may authenticate without TLS");
    assert!(c.cmd("MAIL FROM:<a@example.test>").starts_with("530 5.7.0"));
    assert!(c.cmd("AUTH CRAM-MD5").starts_with("504"));
    assert!(c.cmd("AUTH PLAIN").starts_with("334"));
    assert!(c.cmd("*").starts_with("501"));
    assert!(c.cmd("AUTH PLAIN not-base64!").starts_with("501"));
    // Someone else's identity is refused, even with alice's password.
    assert!(c.cmd(&format!("AUTH PLAIN {}", b64(b"bob\0alice\0correct horse"))).starts_with("535"));
    assert!(c.cmd(&format!("AUTH PLAIN {}", b64(b"\0nobody\0correct horse"))).starts_with("535"));
    // Two failures in a minute from this address: even the right password is refused now, on any session.
    let mut d = Conn::plain(s.smtp);
    assert!(d.read().starts_with("220"));
    d.cmd("EHLO client.test");
    assert!(d.cmd(&format!("AUTH PLAIN {}", b64(b"\0alice\0correct horse"))).starts_with("454 4.7.0"));
    assert!(wait_until(Duration::from_secs(10), || s.log().contains("authentication failed")), "{}", s.log());
}

#[test]
fn implicit_tls_speaks_tls_from_the_first_byte() {
    let (s, client) = server("tls_mode = \"implicit\"\nauth = \"optional\"");
    let tcp = TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut c = Conn::tls_over(tcp, &client);
    assert!(c.read().starts_with("220 mx.test"));
    let ehlo = c.cmd("EHLO client.test");
    assert!(!ehlo.contains("STARTTLS") && ehlo.contains("AUTH"), "{ehlo}");
    // A plaintext client gets no banner.
    let mut plain = TcpStream::connect(("127.0.0.1", s.smtp)).unwrap();
    plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    plain.write_all(b"EHLO x\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(!String::from_utf8_lossy(&buf[..n]).contains("220"), "{:?}", &buf[..n]);
}

#[test]
fn a_missing_certificate_stops_the_start_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"data\"\n[admin]\nlisten = \"127.0.0.1:{}\"\n[[receive_connectors]]\nname = \"Default\"\n\
             listen = \"127.0.0.1:{}\"\ntls = {{ cert = \"/nonexistent/cert.pem\", key = \"/nonexistent/key.pem\" }}\n",
            free_port(),
            free_port()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(BIN).args(["serve", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/cert.pem") && err.contains("Default"), "{err}");
}

#[test]
fn a_password_hash_that_is_not_argon2_is_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(
        &config,
        "[[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:2525\"\nauth = \"optional\"\n\
         users = [{ name = \"alice\", password_hash = \"plaintext\" }]\n",
    )
    .unwrap();
    let out = std::process::Command::new(BIN).args(["check-config", "--config"]).arg(&config).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("argon2") && err.contains("hash-password"), "{err}");
}

#[test]
fn hash_password_refuses_an_empty_password_with_a_usage_error() {
    for input in ["\n", "\r\n", ""] {
        let mut child = std::process::Command::new(BIN)
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(64), "{input:?}: EX_USAGE");
        assert!(out.stdout.is_empty(), "no hash for an empty password");
        assert!(String::from_utf8_lossy(&out.stderr).contains("empty"), "{input:?}");
    }
}
