//! A send connector's `tls` and `auth` against the binary: a next hop without STARTTLS under `required`, and a
//! next hop that offers STARTTLS (a real rustls server with a certificate made here) under `opportunistic`
//! and, with a private CA in `SSL_CERT_FILE`, under `required` with AUTH.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::pki_types::PrivateKeyDer;

use crate::harness::*;

/// What a TLS sink's transcript holds where the handshake finished.
const TLS_UP: &str = "<TLS>";

/// A next hop that offers STARTTLS with `config`'s certificate, and AUTH PLAIN once encrypted; it records
/// every line it reads (with [`TLS_UP`] where the handshake finished) and the messages it accepted over TLS.
struct TlsSink {
    port: u16,
    lines: Arc<Mutex<Vec<String>>>,
    over_tls: Arc<Mutex<u32>>,
}

impl TlsSink {
    fn start(config: Arc<rustls::ServerConfig>) -> TlsSink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (lines, over_tls) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(0)));
        let (l, o) = (lines.clone(), over_tls.clone());
        // The thread ends with the test process.
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, lines, over_tls) = (config.clone(), l.clone(), o.clone());
                std::thread::spawn(move || tls_sink_session(stream, config, lines, over_tls));
            }
        });
        TlsSink { port, lines, over_tls }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    fn over_tls(&self) -> u32 {
        *self.over_tls.lock().unwrap()
    }
}

fn tls_sink_session(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    lines: Arc<Mutex<Vec<String>>>,
    over_tls: Arc<Mutex<u32>>,
) {
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut plain = BufReader::new(tcp);
    plain.get_mut().write_all(b"220 tls-sink ESMTP\r\n").unwrap();
    if !converse(&mut plain, false, &lines, &over_tls) {
        return;
    }
    assert!(plain.buffer().is_empty(), "plain text after STARTTLS");
    let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config).unwrap(), plain.into_inner());
    while tls.conn.is_handshaking() {
        if tls.conn.complete_io(&mut tls.sock).is_err() {
            lines.lock().unwrap().push("<handshake failed>".into());
            return;
        }
    }
    lines.lock().unwrap().push(TLS_UP.into());
    converse(&mut BufReader::new(tls), true, &lines, &over_tls);
}

/// Answers commands until QUIT or the end of the connection (false), or an accepted STARTTLS (true).
fn converse<S: Read + Write>(
    s: &mut BufReader<S>,
    tls: bool,
    lines: &Mutex<Vec<String>>,
    over_tls: &Mutex<u32>,
) -> bool {
    let mut in_data = false;
    loop {
        let mut line = String::new();
        if s.read_line(&mut line).unwrap_or(0) == 0 {
            return false;
        }
        let line = line.trim_end().to_owned();
        lines.lock().unwrap().push(line.clone());
        if in_data {
            if line == "." {
                in_data = false;
                *over_tls.lock().unwrap() += u32::from(tls);
                reply(s, b"250 2.0.0 Ok\r\n");
            }
            continue;
        }
        let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
        match verb.as_str() {
            "EHLO" if tls => reply(s, b"250-tls-sink\r\n250-PIPELINING\r\n250 AUTH PLAIN\r\n"),
            "EHLO" => reply(s, b"250-tls-sink\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
            "STAR" if !tls => {
                reply(s, b"220 2.0.0 go ahead\r\n");
                return true;
            }
            "AUTH" => reply(s, b"235 2.7.0 Authentication successful\r\n"),
            "DATA" => {
                in_data = true;
                reply(s, b"354 go\r\n");
            }
            "QUIT" => {
                reply(s, b"221 bye\r\n");
                return false;
            }
            _ => reply(s, b"250 Ok\r\n"),
        }
    }
}

fn reply<S: Read + Write>(s: &mut BufReader<S>, bytes: &[u8]) {
    let _ = s.get_mut().write_all(bytes);
    let _ = s.get_mut().flush();
}

/// A server configuration with a certificate for `name`: self-signed, or signed by a CA whose certificate
/// is returned as PEM.
fn server_config(name: &str, ca: bool) -> (Arc<rustls::ServerConfig>, Option<String>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    let (cert, ca_pem) = if ca {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(rcgen::DnType::CommonName, "sluice test CA");
        ca_params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign, rcgen::KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        (params.signed_by(&key, &issuer).unwrap(), Some(ca_cert.pem()))
    } else {
        (params.self_signed(&key).unwrap(), None)
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(key.serialize_der().into()))
        .unwrap();
    (Arc::new(config), ca_pem)
}

fn connector(port: u16, keys: &str) -> String {
    format!(
        "[transport]\ntransient_failure_retry_interval = \"1s\"\n\n[[send_connectors]]\nname = \"Smart\"\n\
         address_spaces = [\"*\"]\nsmart_hosts = [\"127.0.0.1:{port}\"]\n{keys}\n"
    )
}

fn send_one(s: &Server, subject: &str) {
    let mut c = s.smtp();
    c.cmd("EHLO client.test");
    let r = c.mail("a@example.test", &["b@remote.test"], &format!("Subject: {subject}\r\n\r\nx\r\n"));
    assert!(r.starts_with("250"), "{r}");
}

#[test]
fn required_tls_to_a_next_hop_without_starttls_leaves_the_queue_in_retry_with_4_7_5() {
    let sink = Sink::start();
    let s = Server::start(&connector(sink.port, "tls = \"required\""));
    send_one(&s, "needs tls");
    let retrying = || {
        let q = s.get_json("/api/v1/queues");
        q["items"].as_array().unwrap().iter().find(|q| q["status"] == "Retry").cloned()
    };
    assert!(wait_until(Duration::from_secs(15), || retrying().is_some()), "{}", s.log());
    let queue = retrying().unwrap();
    let last_error = queue["last_error"].as_str().unwrap();
    assert_eq!(last_error, format!("451 4.7.5 no TLS with 127.0.0.1:{}: STARTTLS not offered", sink.port));
    assert_eq!(sink.count(), 0);
    assert!(!s.log().contains("not yet in effect"), "{}", s.log());
}

#[test]
fn opportunistic_tls_delivers_over_tls_to_a_next_hop_offering_starttls() {
    let (config, _) = server_config("sink.test", false);
    let sink = TlsSink::start(config);
    let s = Server::start(&connector(sink.port, "tls = \"opportunistic\""));
    send_one(&s, "over tls");
    assert!(wait_until(Duration::from_secs(15), || sink.over_tls() == 1), "{:?}\n{}", sink.lines(), s.log());
    let lines = sink.lines();
    let tls = lines.iter().position(|l| l == TLS_UP).unwrap();
    let mail = lines.iter().position(|l| l.starts_with("MAIL FROM:")).unwrap();
    assert!(tls < mail, "{lines:?}");
    assert!(wait_until(Duration::from_secs(5), || s.queued() == 0));
}

#[test]
fn required_tls_trusts_the_ca_in_ssl_cert_file_and_authenticates_over_it() {
    let dir = tempfile::tempdir().unwrap();
    let (config, ca) = server_config("127.0.0.1", true);
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.unwrap()).unwrap();
    let sink = TlsSink::start(config);
    let keys = "tls = \"required\"\nauth = { user = \"relay\", password = \"secret\" }";
    let s = Server::start_with_env(&connector(sink.port, keys), &[("SSL_CERT_FILE", ca_file.to_str().unwrap())]);
    send_one(&s, "verified");
    assert!(wait_until(Duration::from_secs(15), || sink.over_tls() == 1), "{:?}\n{}", sink.lines(), s.log());
    let lines = sink.lines();
    let tls = lines.iter().position(|l| l == TLS_UP).unwrap();
    // base64 of NUL "relay" NUL "secret".
    let auth = lines.iter().position(|l| l == "AUTH PLAIN AHJlbGF5AHNlY3JldA==").unwrap();
    let mail = lines.iter().position(|l| l.starts_with("MAIL FROM:")).unwrap();
    assert!(tls < auth && auth < mail, "{lines:?}");
}

#[test]
fn required_tls_refuses_a_certificate_the_system_does_not_trust() {
    // The same next hop as above, without its CA in SSL_CERT_FILE: no delivery, 4.7.5 with the reason.
    let dir = tempfile::tempdir().unwrap();
    let (config, _) = server_config("127.0.0.1", true);
    let (_, other_ca) = server_config("127.0.0.1", true);
    let ca_file = dir.path().join("other-ca.pem");
    std::fs::write(&ca_file, other_ca.unwrap()).unwrap();
    let sink = TlsSink::start(config);
    let s = Server::start_with_env(
        &connector(sink.port, "tls = \"required\""),
        &[("SSL_CERT_FILE", ca_file.to_str().unwrap())],
    );
    send_one(&s, "untrusted");
    let last_error = || {
        let q = s.get_json("/api/v1/queues");
        q["items"].as_array().unwrap().iter().find_map(|q| q["last_error"].as_str().map(str::to_owned))
    };
    assert!(wait_until(Duration::from_secs(15), || last_error().is_some()), "{}", s.log());
    let error = last_error().unwrap();
    assert!(error.starts_with("451 4.7.5 no TLS with 127.0.0.1:"), "{error}");
    assert!(error.contains("certificate not accepted"), "{error}");
    assert_eq!(sink.over_tls(), 0);
    assert!(!sink.lines().iter().any(|l| l.starts_with("MAIL")), "{:?}", sink.lines());
}
