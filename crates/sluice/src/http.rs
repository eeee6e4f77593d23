//! A minimal HTTP/1.1 client for the server's own outbound requests: the updater's downloads and the alert
//! webhook. One request per connection (`Connection: close`); `Content-Length`, chunked and read-to-close
//! answers; no redirects, proxies, cookies or compression. `https://` is verified against the system's
//! trusted authorities and, when `SLUICE_CA` names a PEM file, the authorities in it.
//!
//! Errors name the server (`host:port`), never the whole URL: a webhook's path is often its secret.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The longest answer head (status line and headers) read.
const MAX_HEAD: u64 = 64 * 1024;
/// The longest chunk-size or trailer line read.
const MAX_LINE: u64 = 4096;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("not an http:// or https:// URL: {0}")]
    Url(&'static str),
    #[error("{authority}: cannot connect: {source}")]
    Connect {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{authority}: TLS: {source}")]
    Tls {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{authority}: connection lost: {source}")]
    Io {
        authority: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{authority}: no complete answer within {timeout:?}")]
    Timeout { authority: String, timeout: Duration },
    /// Any status but 2xx, for a GET (redirects included: none is followed).
    #[error("{authority}: answered {status_line}")]
    Status { authority: String, status: u16, status_line: String },
    #[error("{authority}: the answer is too large (over {max} bytes)")]
    TooLarge { authority: String, max: u64 },
    #[error("{authority}: malformed answer: {why}")]
    Malformed { authority: String, why: &'static str },
}

/// GETs `url`: the body of a 2xx answer, at most `max_bytes` of it; any other status is
/// [`HttpError::Status`]. The whole exchange, connecting included, has `timeout`.
pub async fn get(url: &str, timeout: Duration, max_bytes: u64) -> Result<Vec<u8>, HttpError> {
    get_with(url, timeout, max_bytes, &tls_config()).await
}

/// POSTs `body` as `application/json` to `url`: the answer's status, whatever it is (its body is not read).
pub async fn post_json(url: &str, body: &[u8], timeout: Duration) -> Result<u16, HttpError> {
    post_json_with(url, body, timeout, &tls_config()).await
}

async fn get_with(
    url: &str,
    timeout: Duration,
    max_bytes: u64,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Vec<u8>, HttpError> {
    let target = Target::parse(url)?;
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path,
        target.host_header,
        env!("CARGO_PKG_VERSION")
    );
    let exchange = Exchange { request: head.into_bytes(), read_body: Some(max_bytes) };
    let answer = within(timeout, &target, exchange.run(&target, tls)).await?;
    Ok(answer.body)
}

async fn post_json_with(
    url: &str,
    body: &[u8],
    timeout: Duration,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<u16, HttpError> {
    let target = Target::parse(url)?;
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sluice/{}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        target.path,
        target.host_header,
        env!("CARGO_PKG_VERSION"),
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let exchange = Exchange { request, read_body: None };
    let answer = within(timeout, &target, exchange.run(&target, tls)).await?;
    Ok(answer.status)
}

async fn within<T>(
    timeout: Duration,
    target: &Target,
    work: impl Future<Output = Result<T, HttpError>>,
) -> Result<T, HttpError> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(HttpError::Timeout { authority: target.authority.clone(), timeout }))
}

/// Where a URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    https: bool,
    /// The host without brackets: a name or an IP address.
    host: String,
    port: u16,
    /// `host:port` for errors and logs.
    authority: String,
    /// The `Host` header: the host as written, with the port when it is not the scheme's.
    host_header: String,
    /// The path and query (`/` when the URL has none), without the fragment.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Result<Target, HttpError> {
        let (https, rest) = if let Some(r) = strip_prefix_ignore_case(url, "https://") {
            (true, r)
        } else if let Some(r) = strip_prefix_ignore_case(url, "http://") {
            (false, r)
        } else {
            return Err(HttpError::Url("the scheme must be http:// or https://"));
        };
        // Nothing that could end the request line or a header early.
        if rest.bytes().any(|b| b.is_ascii_control() || b == b' ' || !b.is_ascii()) {
            return Err(HttpError::Url("spaces, control characters and non-ASCII characters must be %-encoded"));
        }
        let rest = rest.split('#').next().unwrap_or_default();
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(split);
        let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
        if authority.contains('@') {
            return Err(HttpError::Url("user names and passwords in URLs are not supported"));
        }
        let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
            let (host, after) = bracketed.split_once(']').ok_or(HttpError::Url("an unclosed [ in the host"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(HttpError::Url("between [ and ] must be an IPv6 address"));
            }
            match after {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':').ok_or(HttpError::Url("junk after the ]"))?)),
            }
        } else {
            match authority.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(HttpError::Url("no host"));
        }
        let default_port = if https { 443 } else { 80 };
        let port = match port {
            None => default_port,
            Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(HttpError::Url("the port is not 1-65535"))?,
        };
        let shown = if host.contains(':') { format!("[{host}]") } else { host.to_owned() };
        let authority = format!("{shown}:{port}");
        let host_header = if port == default_port { shown } else { authority.clone() };
        Ok(Target { https, host: host.to_owned(), port, authority, host_header, path })
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// One request and what to read of the answer.
struct Exchange {
    request: Vec<u8>,
    /// `Some(max)`: only a 2xx is wanted, and its body, at most `max` bytes. `None`: only the status.
    read_body: Option<u64>,
}

/// What came back.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl Exchange {
    async fn run(&self, target: &Target, tls: &Arc<rustls::ClientConfig>) -> Result<Answer, HttpError> {
        let authority = &target.authority;
        let tcp = TcpStream::connect((target.host.as_str(), target.port))
            .await
            .map_err(|source| HttpError::Connect { authority: authority.clone(), source })?;
        let _ = tcp.set_nodelay(true);
        if !target.https {
            return self.over(tcp, authority).await;
        }
        let name = ServerName::try_from(target.host.clone()).map_err(|_| HttpError::Url("not a host name for TLS"))?;
        let stream = tokio_rustls::TlsConnector::from(tls.clone())
            .connect(name, tcp)
            .await
            .map_err(|source| HttpError::Tls { authority: authority.clone(), source })?;
        self.over(stream, authority).await
    }

    async fn over<S: AsyncRead + AsyncWrite + Unpin>(&self, stream: S, authority: &str) -> Result<Answer, HttpError> {
        let io = |source| HttpError::Io { authority: authority.to_owned(), source };
        let malformed = |why| HttpError::Malformed { authority: authority.to_owned(), why };
        let mut stream = BufReader::new(stream);
        stream.get_mut().write_all(&self.request).await.map_err(io)?;
        stream.get_mut().flush().await.map_err(io)?;
        // Interim answers (1xx) come before the real one.
        let head = loop {
            let head = read_head(&mut stream).await.map_err(|e| e.name(authority))?;
            if !(100..200).contains(&head.status) {
                break head;
            }
        };
        let Some(max) = self.read_body else {
            return Ok(Answer { status: head.status, body: Vec::new() });
        };
        if !(200..300).contains(&head.status) {
            return Err(HttpError::Status {
                authority: authority.to_owned(),
                status: head.status,
                status_line: head.status_line,
            });
        }
        let too_large = || HttpError::TooLarge { authority: authority.to_owned(), max };
        let mut body = Vec::new();
        if head.status == 204 {
            // No body, whatever the headers say.
        } else if head.chunked {
            loop {
                let line = read_line(&mut stream, MAX_LINE).await.map_err(|e| e.name(authority))?;
                let size = line.split(';').next().unwrap_or_default().trim();
                let size = u64::from_str_radix(size, 16).map_err(|_| malformed("a chunk size is not hexadecimal"))?;
                if size == 0 {
                    // Trailers, up to the empty line.
                    while !read_line(&mut stream, MAX_LINE).await.map_err(|e| e.name(authority))?.is_empty() {}
                    break;
                }
                if body.len() as u64 + size > max {
                    return Err(too_large());
                }
                read_exactly(&mut stream, size, &mut body).await.map_err(|e| e.name(authority))?;
                if !read_line(&mut stream, MAX_LINE).await.map_err(|e| e.name(authority))?.is_empty() {
                    return Err(malformed("a chunk is longer than its size"));
                }
            }
        } else if let Some(length) = head.content_length {
            if length > max {
                return Err(too_large());
            }
            read_exactly(&mut stream, length, &mut body).await.map_err(|e| e.name(authority))?;
        } else {
            // Until the server closes: one byte more than allowed tells that it is too large.
            match (&mut stream).take(max + 1).read_to_end(&mut body).await {
                Ok(_) => {}
                // A TLS peer that closes without close_notify: as plain TCP's close.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(e) => return Err(io(e)),
            }
            if body.len() as u64 > max {
                return Err(too_large());
            }
        }
        Ok(Answer { status: head.status, body })
    }
}

/// The status line and the headers that say how the body is framed.
struct Head {
    status: u16,
    /// The status line as it came, control characters removed, at most 200 characters.
    status_line: String,
    content_length: Option<u64>,
    chunked: bool,
}

/// A failure while reading, before the server's name is put to it.
enum ReadError {
    Io(std::io::Error),
    Malformed(&'static str),
}

impl ReadError {
    fn name(self, authority: &str) -> HttpError {
        let authority = authority.to_owned();
        match self {
            ReadError::Io(source) => HttpError::Io { authority, source },
            ReadError::Malformed(why) => HttpError::Malformed { authority, why },
        }
    }
}

async fn read_head<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R) -> Result<Head, ReadError> {
    let mut budget = MAX_HEAD;
    let status_line = read_line(r, budget).await?;
    budget = budget.saturating_sub(status_line.len() as u64 + 2);
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(ReadError::Malformed("the status line is not HTTP/1.x"));
    }
    let status: u16 = code.parse().map_err(|_| ReadError::Malformed("the status is not a number"))?;
    let mut head = Head {
        status,
        status_line: status_line.chars().filter(|c| !c.is_control()).take(200).collect(),
        content_length: None,
        chunked: false,
    };
    loop {
        if budget == 0 {
            return Err(ReadError::Malformed("the headers are too long"));
        }
        let line = read_line(r, budget).await?;
        budget = budget.saturating_sub(line.len() as u64 + 2);
        if line.is_empty() {
            return Ok(head);
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Malformed("a header line has no colon"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked when it is the last coding; any other coding is read until the close.
            head.chunked = value.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
        } else if name.eq_ignore_ascii_case("content-length") {
            let length: u64 = value.parse().map_err(|_| ReadError::Malformed("Content-Length is not a number"))?;
            if head.content_length.is_some_and(|l| l != length) {
                return Err(ReadError::Malformed("two different Content-Length headers"));
            }
            head.content_length = Some(length);
        }
    }
}

/// One line without its CRLF (or bare LF), at most `max` bytes; the end of the stream before a line end is
/// an error.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, max: u64) -> Result<String, ReadError> {
    let mut line = Vec::new();
    r.take(max).read_until(b'\n', &mut line).await.map_err(ReadError::Io)?;
    if line.last() != Some(&b'\n') {
        return Err(if line.len() as u64 >= max {
            ReadError::Malformed("a line is too long")
        } else {
            ReadError::Io(std::io::ErrorKind::UnexpectedEof.into())
        });
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line).map_err(|_| ReadError::Malformed("a header line is not UTF-8"))
}

async fn read_exactly<R: AsyncRead + Unpin>(r: &mut R, n: u64, out: &mut Vec<u8>) -> Result<(), ReadError> {
    let got = r.take(n).read_to_end(out).await.map_err(ReadError::Io)?;
    if (got as u64) < n {
        return Err(ReadError::Malformed("the answer ended before its body did"));
    }
    Ok(())
}

/// The trusted authorities, read once: the system's, and `SLUICE_CA`'s when set.
fn tls_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            let native = rustls_native_certs::load_native_certs();
            for e in &native.errors {
                tracing::warn!(error = %e, "a trusted authority of the system cannot be read");
            }
            roots.add_parsable_certificates(native.certs);
            if let Some(extra) = std::env::var_os("SLUICE_CA") {
                match CertificateDer::pem_file_iter(&extra) {
                    Ok(certs) => {
                        for cert in certs.flatten() {
                            let _ = roots.add(cert);
                        }
                    }
                    Err(e) => tracing::warn!(file = ?extra, error = %e, "SLUICE_CA cannot be read"),
                }
            }
            client_config(roots)
        })
        .clone()
}

fn client_config(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers one connection with `answer` (after reading the request's head and body) and
    /// hands back the request it read.
    async fn serve_once(answer: &'static [u8]) -> (String, tokio::task::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let request = read_request(&mut s).await;
            s.write_all(answer).await.unwrap();
            s.shutdown().await.unwrap();
            request
        });
        (url, task)
    }

    /// The head and (by Content-Length) the body of a request.
    async fn read_request<S: AsyncRead + Unpin>(s: &mut S) -> Vec<u8> {
        let mut request = Vec::new();
        let mut byte = [0u8; 1];
        while !request.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut byte).await.unwrap();
            request.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap()))
            .unwrap_or(0);
        let mut body = vec![0; length];
        s.read_exact(&mut body).await.unwrap();
        request.extend_from_slice(&body);
        request
    }

    const T: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn a_body_is_read_by_its_content_length() {
        let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello").await;
        assert_eq!(get(&format!("{url}/antispam/manifest.json?x=1#top"), T, 100).await.unwrap(), b"hello");
        let request = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(request.starts_with("GET /antispam/manifest.json?x=1 HTTP/1.1\r\n"), "{request}");
        let port = url.rsplit(':').next().unwrap();
        assert!(request.contains(&format!("\r\nHost: 127.0.0.1:{port}\r\n")), "{request}");
        assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
    }

    #[tokio::test]
    async fn a_chunked_body_is_put_together_and_trailers_skipped() {
        let (url, _server) = serve_once(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
              5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: 1\r\n\r\n",
        )
        .await;
        assert_eq!(get(&url, T, 100).await.unwrap(), b"hello, world");
    }

    #[tokio::test]
    async fn without_a_length_the_body_ends_when_the_server_closes() {
        let (url, _server) = serve_once(b"HTTP/1.0 200 OK\r\n\r\nuntil the end").await;
        assert_eq!(get(&url, T, 100).await.unwrap(), b"until the end");
    }

    #[tokio::test]
    async fn any_status_but_2xx_is_an_error_naming_the_status_line() {
        let (url, _server) = serve_once(b"HTTP/1.1 404 Not Found\r\nContent-Length: 3\r\n\r\nno!").await;
        let e = get(&url, T, 100).await.unwrap_err();
        assert!(matches!(e, HttpError::Status { status: 404, .. }), "{e:?}");
        assert!(e.to_string().ends_with("answered HTTP/1.1 404 Not Found"), "{e}");
        // Redirects are not followed.
        let (url, _server) = serve_once(b"HTTP/1.1 301 Moved\r\nLocation: http://x/\r\n\r\n").await;
        assert!(matches!(get(&url, T, 100).await, Err(HttpError::Status { status: 301, .. })));
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_however_it_is_framed() {
        for answer in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"[..],
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\nhello world",
        ] {
            let (url, _server) = serve_once(answer).await;
            let e = get(&url, T, 10).await.unwrap_err();
            assert!(matches!(e, HttpError::TooLarge { max: 10, .. }), "{e:?}");
            assert!(e.to_string().contains("too large"), "{e}");
        }
    }

    #[tokio::test]
    async fn a_server_that_does_not_answer_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let _server = tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(s);
        });
        let e = get(&url, Duration::from_millis(200), 10).await.unwrap_err();
        assert!(matches!(e, HttpError::Timeout { .. }), "{e:?}");
    }

    #[tokio::test]
    async fn a_short_or_broken_answer_is_malformed() {
        let (url, _server) = serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").await;
        assert!(matches!(get(&url, T, 100).await, Err(HttpError::Malformed { .. })));
        let (url, _server) = serve_once(b"SMTP 220 hello\r\n\r\n").await;
        assert!(matches!(get(&url, T, 100).await, Err(HttpError::Malformed { .. })));
    }

    #[tokio::test]
    async fn json_is_posted_with_its_type_and_length_and_the_status_returned() {
        let (url, server) = serve_once(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n").await;
        assert_eq!(post_json(&format!("{url}/hook/s3cret"), b"{\"id\":1}", T).await.unwrap(), 500);
        let request = String::from_utf8(server.await.unwrap()).unwrap();
        assert!(request.starts_with("POST /hook/s3cret HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nContent-Type: application/json\r\nContent-Length: 8\r\n"), "{request}");
        assert!(request.ends_with("\r\n\r\n{\"id\":1}"), "{request}");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error_naming_the_server_only() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let e = post_json(&format!("http://127.0.0.1:{port}/secret-path"), b"{}", T).await.unwrap_err();
        assert!(matches!(e, HttpError::Connect { .. }), "{e:?}");
        assert!(!e.to_string().contains("secret-path"), "{e}");
    }

    #[tokio::test]
    async fn https_is_verified_against_the_trusted_authorities() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
        let der = CertificateDer::from(cert.der().to_vec());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let server_config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
            )
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for _ in 0..2 {
                let (s, _) = listener.accept().await.unwrap();
                let Ok(mut s) = acceptor.accept(s).await else { continue };
                read_request(&mut s).await;
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nsecret").await.unwrap();
                s.shutdown().await.unwrap();
            }
        });
        let url = format!("https://localhost:{port}/");
        // Not trusted: refused.
        let untrusted = client_config(rustls::RootCertStore::empty());
        assert!(matches!(get_with(&url, T, 100, &untrusted).await, Err(HttpError::Tls { .. })));
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        assert_eq!(get_with(&url, T, 100, &client_config(roots)).await.unwrap(), b"secret");
    }

    #[test]
    fn urls_give_the_server_the_host_header_and_the_path() {
        let t = Target::parse("https://updates.example.com/antispam/manifest.json").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.host_header.as_str(), t.path.as_str()),
            (true, "updates.example.com", 443, "updates.example.com", "/antispam/manifest.json")
        );
        let t = Target::parse("HTTP://[::1]:8080?a=b").unwrap();
        assert_eq!(
            (t.https, t.host.as_str(), t.port, t.host_header.as_str(), t.path.as_str()),
            (false, "::1", 8080, "[::1]:8080", "/?a=b")
        );
        assert_eq!(Target::parse("http://h:80").unwrap().host_header, "h");
        for bad in [
            "ftp://h/",
            "h/x",
            "http://",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://user:pw@h/",
            "http://h/a b",
            "http://h/\r\nX: y",
            "http://[::1/",
            "http://[nope]/",
        ] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
