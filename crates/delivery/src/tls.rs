//! TLS for outbound sessions (STARTTLS, RFC 3207): the rustls client configurations of a send connector's
//! `tls` policies, built once per agent and shared by every connection (and so by rustls' session cache),
//! and the connection's stream, plain or TLS. rustls with the ring provider; TLS 1.2 and 1.3.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use sluice_transport::TlsFailure;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// The client side of TLS for every policy: `opportunistic` (encryption without a certificate check) and
/// `required` (a certificate verified against the trusted roots, for the host's name).
#[derive(Clone)]
pub struct ClientTls {
    opportunistic: Arc<ClientConfig>,
    verified: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the system's certificate authorities, as OpenSSL finds them; `SSL_CERT_FILE` or `SSL_CERT_DIR`
    /// in the environment replace them (for a private CA). Certificates that cannot be read are logged and
    /// skipped: with no root at all, `required` connectors fail each attempt with `4.7.5`, which names the
    /// certificate as untrusted.
    pub fn native() -> ClientTls {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::warn!(%error, "cannot load a trusted certificate authority");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        if ignored > 0 {
            tracing::warn!(ignored, "trusted certificate authorities that rustls cannot use were skipped");
        }
        if added == 0 {
            tracing::warn!(
                "no trusted certificate authority found: send connectors with tls = \"required\" will not deliver"
            );
        }
        ClientTls::from_roots(roots)
    }

    /// Trusts exactly `roots` (tests, and a private CA).
    pub fn with_roots(roots: impl IntoIterator<Item = CertificateDer<'static>>) -> ClientTls {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(roots);
        ClientTls::from_roots(store)
    }

    fn from_roots(roots: RootCertStore) -> ClientTls {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        // The ring provider has cipher suites for TLS 1.2 and 1.3, the safe default versions, so the builder
        // cannot refuse them.
        let builder = || {
            ClientConfig::builder_with_provider(provider.clone())
                .with_safe_default_protocol_versions()
                .expect("the ring provider supports TLS 1.2 and 1.3")
        };
        let verified = builder().with_root_certificates(roots).with_no_client_auth();
        let opportunistic = builder()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
            .with_no_client_auth();
        ClientTls { opportunistic: Arc::new(opportunistic), verified: Arc::new(verified) }
    }

    /// The configuration for a handshake: with the certificate checked or not.
    pub(crate) fn config(&self, verify: bool) -> Arc<ClientConfig> {
        if verify { self.verified.clone() } else { self.opportunistic.clone() }
    }
}

/// Opportunistic TLS (RFC 7435): any certificate is taken, since a check that fails would only send the mail
/// in plain text instead. The handshake's signatures are still verified, so the session's keys are those
/// of the certificate's holder.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A session's connection: plain TCP, or TLS over it after STARTTLS. An enum rather than a boxed trait
/// object, so that a plain connection costs one branch per read or write.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a handshake failed, in words for the recorded reply: the certificate check, or the rest.
pub(crate) fn handshake_failure(error: &std::io::Error) -> TlsFailure {
    match error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(why)) => TlsFailure::Certificate(why.to_string()),
        Some(e) => TlsFailure::Handshake(e.to_string()),
        None => TlsFailure::Handshake(error.to_string()),
    }
}
