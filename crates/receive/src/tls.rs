//! TLS for receive connectors: STARTTLS (RFC 3207) or implicit TLS, with a configured certificate
//! or one generated at start (`tls = "self-signed"`). rustls with the ring provider; TLS 1.2 and 1.3.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sluice_config::ReceiveTls;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// A certificate for `tls = "self-signed"`: the server's host name as its common name and first subject
/// name (with `localhost`), valid from today for one year, as an administrator would make one.
fn self_signed(hostname: &str) -> Result<(CertificateDer<'static>, PrivateKeyDer<'static>), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_owned(), "localhost".to_owned()])?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(rcgen::DnType::CommonName, hostname);
    // "YYYY-MM-DD..." of today, in UTC.
    let today = sluice_queue_db::time::rfc3339(sluice_queue_db::time::now_ms());
    let field = |r: std::ops::Range<usize>| today.get(r).and_then(|t| t.parse::<u16>().ok()).unwrap_or(1);
    let (year, month, day) = (i32::from(field(0..4)), field(5..7) as u8, field(8..10) as u8);
    params.not_before = rcgen::date_time_ymd(year, month, day);
    params.not_after = rcgen::date_time_ymd(year + 1, month, day.min(28));
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.der().clone(), PrivateKeyDer::Pkcs8(key.serialize_der().into())))
}

/// The acceptor for a connector's `tls`, `None` when it is off. An unreadable certificate or key is an
/// error that names the file: the server does not start with a connector that cannot do what it says.
pub fn acceptor(tls: &ReceiveTls, hostname: &str) -> Result<Option<TlsAcceptor>, String> {
    let (chain, key) = match tls {
        ReceiveTls::Off => return Ok(None),
        ReceiveTls::SelfSigned => {
            let (cert, key) =
                self_signed(hostname).map_err(|e| format!("cannot generate a self-signed certificate: {e}"))?;
            (vec![cert], key)
        }
        ReceiveTls::Files(files) => {
            let chain = CertificateDer::pem_file_iter(&files.cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: cannot read the certificate chain: {e}", files.cert.display()))?;
            if chain.is_empty() {
                return Err(format!("{}: no certificate in the file", files.cert.display()));
            }
            let key = PrivateKeyDer::from_pem_file(&files.key)
                .map_err(|e| format!("{}: cannot read the private key: {e}", files.key.display()))?;
            (chain, key)
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the certificate and key do not make a TLS identity: {e}"))?;
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// A session's connection: plain TCP, or TLS over it after STARTTLS or from the start.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    /// While the handshake has the socket.
    Upgrading,
}

impl Stream {
    /// The protocol version and cipher suite, for `Received:` and the log; `None` on a plain connection.
    pub(crate) fn tls_details(&self) -> Option<String> {
        let Stream::Tls(s) = self else { return None };
        let conn = s.get_ref().1;
        let version = conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default();
        let suite = conn.negotiated_cipher_suite().map(|c| format!("{:?}", c.suite())).unwrap_or_default();
        Some(format!("{} {}", version.replace('_', "."), suite))
    }
}

fn gone() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "the connection is being upgraded to TLS")
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(gone())),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
            Stream::Upgrading => Poll::Ready(Err(gone())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
            Stream::Upgrading => Poll::Ready(Err(gone())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
            Stream::Upgrading => Poll::Ready(Err(gone())),
        }
    }
}
