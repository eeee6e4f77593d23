//! Remote administration: the admin API on a non-loopback address, served over TLS with a bearer token, and
//! the configurations that must not start (no token, no TLS). The certificate is made here and trusted by the
//! client, so the handshake is verified; every connection goes over loopback.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;

use crate::harness::*;

/// One HTTPS request to `127.0.0.1:port` as `localhost`: (status, body); status 0 when the connection or
/// the handshake fails.
fn https(
    client: &Arc<rustls::ClientConfig>,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else { return (0, String::new()) };
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(client.clone(), name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: localhost:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    if tls.write_all(req.as_bytes()).is_err() {
        return (0, String::new());
    }
    let mut resp = Vec::new();
    // A peer that closes without close_notify still gave us the whole answer (Connection: close).
    let _ = tls.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

/// A `sluice serve` whose admin API listens on `admin_listen` (with `{admin}` standing for its port).
struct Remote {
    dir: tempfile::TempDir,
    admin: u16,
    child: Option<Child>,
}

impl Remote {
    fn config(dir: &Path, admin_listen: &str, admin_keys: &str) -> (PathBuf, u16) {
        let admin = free_port();
        let text = format!(
            "[server]\nhostname = \"mx.test\"\nname = \"mx\"\ndata_dir = \"data\"\n\n\
             [admin]\nlisten = \"{}\"\n{admin_keys}\n\n\
             [[receive_connectors]]\nname = \"Default\"\nlisten = \"127.0.0.1:{}\"\n",
            admin_listen.replace("{admin}", &admin.to_string()),
            free_port()
        );
        let path = dir.join("sluice.toml");
        std::fs::write(&path, text.replace("{admin}", &admin.to_string())).unwrap();
        (path, admin)
    }

    /// Starts the server and waits until its API answers `GET /api/v1/health` over TLS.
    fn start(
        admin_listen: &str,
        admin_keys: &str,
        client: &Arc<rustls::ClientConfig>,
        dir: tempfile::TempDir,
    ) -> Remote {
        let (path, admin) = Remote::config(dir.path(), admin_listen, admin_keys);
        let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&path)
            .env_remove("SLUICE_CONFIG")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut remote = Remote { dir, admin, child: Some(child) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while https(client, admin, "GET", "/api/v1/health", &[]).0 != 200 {
            if let Some(status) = remote.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("sluice exited with {status}: {}", remote.log());
            }
            assert!(Instant::now() < deadline, "sluice did not start: {}", remote.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        remote
    }

    /// SIGTERM, then the process must exit 0 within 10 s.
    fn stop_cleanly(mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "sluice did not stop on SIGTERM: {}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "{status}: {}", self.log());
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("serve.log")).unwrap_or_default()
    }
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn the_admin_api_on_every_address_serves_tls_with_a_token() {
    for wildcard in ["0.0.0.0:{admin}", "[::]:{admin}"] {
        let dir = tempfile::tempdir().unwrap();
        let client = certificate(dir.path(), "localhost", "admin");
        let keys = "token = \"s3cret\"\ntls = { cert = \"admin.pem\", key = \"admin.key\" }\n\
                    allowed_hosts = [\"localhost\"]";
        let s = Remote::start(wildcard, keys, &client, dir);
        let bearer = [("Authorization", "Bearer s3cret")];
        let (status, body) = https(&client, s.admin, "GET", "/api/v1/queues", &bearer);
        assert_eq!(status, 200, "{wildcard}: {body}");
        assert!(body.contains("\"items\""), "{body}");
        assert_eq!(https(&client, s.admin, "GET", "/api/v1/queues", &[]).0, 401, "{wildcard}");
        let wrong = [("Authorization", "Bearer s3cres")];
        assert_eq!(https(&client, s.admin, "GET", "/api/v1/queues", &wrong).0, 401, "{wildcard}");
        // A name that is not an allowed host (DNS rebinding), even with the token.
        let rebound = [("Authorization", "Bearer s3cret"), ("Host", "evil.test")];
        assert_eq!(https(&client, s.admin, "GET", "/api/v1/queues", &rebound).0, 403, "{wildcard}");
        // Plain HTTP to the TLS port gets no answer.
        let (status, _) = http(s.admin, "GET", "/api/v1/health", &[], "");
        assert_eq!(status, 0, "{wildcard}: plain HTTP was answered");
        // ... and the server is still there for a TLS client afterwards.
        assert_eq!(https(&client, s.admin, "GET", "/api/v1/queues", &bearer).0, 200, "{wildcard}");
        // A change over TLS is audited with the client's address, as over plain HTTP.
        let change = [("Authorization", "Bearer s3cret"), ("X-Sluice-Request", "1")];
        assert_eq!(https(&client, s.admin, "POST", "/api/v1/config/reload", &change).0, 200, "{wildcard}");
        let data = s.dir.path().join("data");
        let audited = || {
            tracking_events(&data).into_iter().any(|e| {
                e["event_id"] == "AUDIT"
                    && e["audit"]["path"] == "/api/v1/config/reload"
                    && e["audit"]["token"] == true
                    && e["source"].as_str().is_some_and(|s| s.starts_with("admin API 127.0.0.1:"))
            })
        };
        assert!(wait_until(Duration::from_secs(5), audited), "{wildcard}: {:?}", tracking_events(&data));
        // A silent client in the middle of its handshake does not keep the server from stopping.
        let _silent = TcpStream::connect(("127.0.0.1", s.admin)).unwrap();
        s.stop_cleanly();
    }
}

#[test]
fn a_non_loopback_admin_api_without_token_or_tls_is_refused_naming_what_is_missing() {
    let cases = [
        ("", "(missing: [admin] token and [admin] tls)"),
        ("token = \"s3cret\"", "(missing: [admin] tls)"),
        ("tls = { cert = \"admin.pem\", key = \"admin.key\" }", "(missing: [admin] token)"),
    ];
    for (keys, missing) in cases {
        let dir = tempfile::tempdir().unwrap();
        certificate(dir.path(), "localhost", "admin");
        let (path, _) = Remote::config(dir.path(), "0.0.0.0:{admin}", keys);
        for (verb, code) in [("check-config", 2), ("serve", 1)] {
            let out =
                Command::new(BIN).args([verb, "--config"]).arg(&path).env_remove("SLUICE_CONFIG").output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(code), "{verb} {keys:?}: {err}");
            assert!(err.contains("admin.listen") && err.contains(missing), "{verb} {keys:?}: {err}");
        }
        assert!(!dir.path().join("data").exists(), "serve created its data directory before refusing");
    }
}

#[test]
fn an_unreadable_admin_certificate_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = Remote::config(
        dir.path(),
        "0.0.0.0:{admin}",
        "token = \"t\"\ntls = { cert = \"none.pem\", key = \"none.key\" }",
    );
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&path).env_remove("SLUICE_CONFIG").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("[admin] tls") && err.contains("none.pem"), "{err}");
}

#[test]
fn the_command_line_reaches_a_tls_admin_api_from_the_configuration_or_a_trusted_authority() {
    let dir = tempfile::tempdir().unwrap();
    let client = certificate(dir.path(), "localhost", "admin");
    let keys =
        "token = \"s3cret\"\ntls = { cert = \"admin.pem\", key = \"admin.key\" }\nallowed_hosts = [\"localhost\"]";
    let s = Remote::start("0.0.0.0:{admin}", keys, &client, dir);
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.args(args).env_remove("SLUICE_API").env_remove("SLUICE_TOKEN").env_remove("SLUICE_CONFIG");
        c.env_remove("SLUICE_CA");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    // From the server's own file: a wildcard listen reached on loopback, its token, its certificate pinned.
    let config = s.dir.path().join("sluice.toml");
    let o = run(&["queue", "list", "--config", config.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("Identity"));
    // By address: a certificate no trusted authority vouches for is refused ...
    let api = format!("https://localhost:{}", s.admin);
    let o = run(&["status", "--api", &api, "--token", "s3cret"], &[]);
    assert_eq!(o.status.code(), Some(69), "{}", String::from_utf8_lossy(&o.stderr));
    // ... and accepted once SLUICE_CA names it.
    let ca = s.dir.path().join("admin.pem");
    let o = run(&["status", "--api", &api, "--token", "s3cret"], &[("SLUICE_CA", ca.to_str().unwrap())]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
