//! The admin API as the command line reaches it: where it is (`--api`, `SLUICE_API`, else the configuration
//! file's `[admin]`), the token, and one blocking HTTP/1.1 request per call, over TLS when the address is
//! `https://`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::exit;
use crate::fail;

/// How long the server has to answer: a filter over a million messages takes about a second.
const TIMEOUT: Duration = Duration::from_secs(120);

/// Where the admin API is and how to talk to it.
pub struct Api {
    /// `host:port` as written in the `Host` header.
    authority: String,
    addrs: Vec<SocketAddr>,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    token: Option<String>,
}

/// One answer: the status, the headers and the body.
pub struct Response {
    pub status: u16,
    /// Each header's name and value, in the order they came.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The value of the first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body)
            .map_err(|e| fail(exit::SOFTWARE, format!("the server's answer is not JSON: {e}")))
    }
}

/// What the command line was given to find the API.
pub struct Target {
    pub api: Option<String>,
    pub token: Option<String>,
    pub config: Option<PathBuf>,
}

impl Api {
    /// `--api`/`SLUICE_API` when given, else the address, token and certificate of the configuration file
    /// (found as `serve` finds it). A token given on the command line or in `SLUICE_TOKEN` wins over the
    /// file's.
    pub fn find(target: Target) -> anyhow::Result<Api> {
        let config = match (&target.api, &target.config) {
            // An explicit address needs no configuration, but a named file must load.
            (Some(_), None) => sluice_config::Config::discover(None).ok().map(|l| l.config),
            _ => Some(
                sluice_config::Config::discover(target.config.as_deref()).map_err(|e| fail(exit::CONFIG, e))?.config,
            ),
        };
        let admin = config.as_ref().map(|c| &c.admin);
        let pinned = match admin.and_then(|a| a.tls.as_ref()) {
            Some(files) => Some(
                CertificateDer::from_pem_file(&files.cert)
                    .map_err(|e| fail(exit::CONFIG, format!("{}: {e}", files.cert.display())))?,
            ),
            None => None,
        };
        let token = target.token.filter(|t| !t.is_empty()).or_else(|| admin.and_then(|a| a.token.clone()));
        let (https, authority, addrs) = match &target.api {
            Some(url) => parse_url(url)?,
            None => {
                let admin = admin.expect("a configuration was loaded");
                let listen = admin.listen;
                // A wildcard listen is reached on loopback, naming the listen address as the server expects.
                let connect = match listen.ip() {
                    ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], listen.port())),
                    ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port())),
                    _ => listen,
                };
                (admin.tls.is_some(), listen.to_string(), vec![connect])
            }
        };
        let tls = if https {
            let host = authority.rsplit_once(':').map_or(authority.as_str(), |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned())
                .map_err(|_| fail(exit::USAGE, format!("{host:?} is not a host name for TLS")))?;
            Some((client_config(pinned), name))
        } else {
            None
        };
        Ok(Api { authority, addrs, tls, token })
    }

    pub fn get(&self, path: &str) -> anyhow::Result<Response> {
        self.request("GET", path, None)
    }

    /// One request; a failure to connect or a broken answer is an error, any HTTP status is a response.
    pub fn request(&self, method: &str, path: &str, json: Option<&serde_json::Value>) -> anyhow::Result<Response> {
        let unreachable = |e: std::io::Error| {
            fail(exit::UNAVAILABLE, format!("cannot reach the admin API at {}: {e}", self.authority))
        };
        let tcp = connect(&self.addrs).map_err(unreachable)?;
        tcp.set_read_timeout(Some(TIMEOUT)).map_err(unreachable)?;
        tcp.set_write_timeout(Some(TIMEOUT)).map_err(unreachable)?;
        let body = json.map(|j| j.to_string()).unwrap_or_default();
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nAccept: application/json\r\n\
             X-Sluice-Request: 1\r\nUser-Agent: sluice/{}\r\n",
            self.authority,
            env!("CARGO_PKG_VERSION")
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        if json.is_some() {
            head.push_str("Content-Type: application/json\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let raw = match &self.tls {
            None => exchange(tcp, head.as_bytes()),
            Some((config, name)) => {
                let conn = rustls::ClientConnection::new(config.clone(), name.clone())
                    .map_err(|e| fail(exit::UNAVAILABLE, format!("TLS: {e}")))?;
                exchange(rustls::StreamOwned::new(conn, tcp), head.as_bytes())
            }
        }
        .map_err(unreachable)?;
        parse_response(&raw)
            .ok_or_else(|| fail(exit::SOFTWARE, format!("the admin API at {} gave a broken answer", self.authority)))
    }
}

fn connect(addrs: &[SocketAddr]) -> std::io::Result<TcpStream> {
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(a, Duration::from_secs(10)) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Writes the request and reads until the server closes (the request asked it to).
fn exchange(mut stream: impl Read + Write, request: &[u8]) -> std::io::Result<Vec<u8>> {
    stream.write_all(request)?;
    stream.flush()?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        // A TLS peer that closes without close_notify: the answer is complete when its length says so.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e),
    }
}

/// `http[s]://host[:port][/]`: whether it is TLS, the authority and the addresses it resolves to.
fn parse_url(url: &str) -> anyhow::Result<(bool, String, Vec<SocketAddr>)> {
    let bad = || fail(exit::USAGE, format!("--api {url:?}: expected http://HOST:PORT or https://HOST:PORT"));
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(bad());
    };
    let authority = rest.trim_end_matches('/');
    if authority.is_empty() || authority.contains('/') {
        return Err(bad());
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(h, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && !h.ends_with(':'));
    let authority =
        if has_port { authority.to_owned() } else { format!("{authority}:{}", if https { 443 } else { 80 }) };
    let addrs: Vec<SocketAddr> =
        authority.to_socket_addrs().map_err(|e| fail(exit::UNAVAILABLE, format!("--api {url:?}: {e}")))?.collect();
    Ok((https, authority, addrs))
}

/// The status and the body of a complete HTTP/1.1 answer (`Content-Length`, chunked, or until the end).
fn parse_response(raw: &[u8]) -> Option<Response> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let mut chunked = false;
    let mut length = None;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        headers.push((name.to_owned(), value.to_owned()));
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            chunked = true;
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().ok()?);
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n)?.to_vec()
    } else {
        rest.to_vec()
    };
    Some(Response { status, headers, body })
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// The system's trusted authorities, and the configuration's own admin certificate accepted as it is
/// (the server's certificate is often self-signed, for a name the client does not dial).
fn client_config(pinned: Option<CertificateDer<'static>>) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    if let Some(extra) = std::env::var_os("SLUICE_CA") {
        for cert in CertificateDer::pem_file_iter(extra).into_iter().flatten().flatten() {
            let _ = roots.add(cert);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports the default versions");
    let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone()).build();
    let config = match (pinned, webpki) {
        (Some(pinned), webpki) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { pinned, webpki: webpki.ok(), provider }))
            .with_no_client_auth(),
        (None, Ok(webpki)) => builder.with_webpki_verifier(webpki).with_no_client_auth(),
        // No usable authority at all: only a pinned certificate could be trusted, and there is none.
        (None, Err(_)) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                pinned: CertificateDer::from(Vec::new()),
                webpki: None,
                provider,
            }))
            .with_no_client_auth(),
    };
    Arc::new(config)
}

/// Accepts exactly the pinned certificate, or what the trusted authorities vouch for.
#[derive(Debug)]
struct Pinned {
    pinned: CertificateDer<'static>,
    webpki: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if !self.pinned.is_empty() && end_entity.as_ref() == self.pinned.as_ref() {
            return Ok(rustls::client::danger::ServerCertVerified::assertion());
        }
        match &self.webpki {
            Some(v) => v.verify_server_cert(end_entity, intermediates, server_name, ocsp, now),
            None => Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_by_length_chunks_or_to_the_end() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}junk").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"{}".as_slice()));
        assert_eq!(r.header("content-length"), Some("2"));
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2;x\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (404, b"abcde".as_slice()));
        assert_eq!(parse_response(b"HTTP/1.1 200 OK\r\n\r\nrest").unwrap().body, b"rest");
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_none());
        assert!(parse_response(b"garbage").is_none());
    }

    #[test]
    fn api_addresses_take_a_default_port_and_nothing_after_it() {
        let (https, authority, addrs) = parse_url("http://127.0.0.1:8025/").unwrap();
        assert_eq!((https, authority.as_str(), addrs.len()), (false, "127.0.0.1:8025", 1));
        assert_eq!(parse_url("https://[::1]").unwrap().1, "[::1]:443");
        for bad in ["127.0.0.1:8025", "ftp://x", "http://", "http://h:1/api"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
