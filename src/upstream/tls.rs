//! TLS to the upstream (`rediss://` URLs).
//!
//! One rustls client configuration is built when the configuration is
//! validated (so a bad CA file stops the proxy before it starts) and shared
//! by every upstream connection; [`Tls::connect`] wraps a connected TCP
//! stream in it.
//!
//! The server's certificate must chain to a CA from `upstream.tls_ca_file`
//! (PEM), or to the Mozilla root set compiled in (`webpki-roots`) when no
//! file is given, and must name the URL's host: its DNS name, or for an IP
//! address an IP subject alternative name. `tls_insecure_skip_verify` skips
//! the certificate checks (the handshake's signatures are still verified):
//! for testing only, anyone on the path can impersonate the upstream.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// The TLS settings of one upstream, shared by all its connections.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
    insecure: bool,
    /// The insecure-mode warning was logged.
    warned: Arc<AtomicBool>,
}

/// Why the TLS settings were refused.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("{0:?} is not a valid TLS server name")]
    ServerName(String),
    #[error("{0}")]
    Setup(rustls::Error),
}

impl Tls {
    /// TLS to `host`, trusting the CA certificates in `ca_file` (or the
    /// built-in roots), or any certificate when `insecure`.
    pub fn new(host: &str, ca_file: Option<&Path>, insecure: bool) -> Result<Tls, TlsError> {
        let name = ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName(host.to_string()))?;
        let roots = match ca_file {
            Some(path) => load_ca_file(path)?,
            None => RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() },
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?;
        let config = if insecure {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoCertCheck(algorithms)))
                .with_no_client_auth()
        } else {
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(Tls { connector: TlsConnector::from(Arc::new(config)), name, insecure, warned: Arc::default() })
    }

    /// The TLS handshake over a connected socket.
    pub async fn connect(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.name.clone(), tcp).await
    }

    /// Logs, once, that certificates are not checked.
    pub fn warn_if_insecure(&self) {
        if self.insecure && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "upstream.tls_insecure_skip_verify = true: the upstream's TLS certificate is NOT verified; \
                 use this for testing only"
            );
        }
    }
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("server_name", &self.name).field("insecure", &self.insecure).finish_non_exhaustive()
    }
}

/// The certificates of a PEM file; other PEM sections (keys) are skipped.
fn load_ca_file(path: &Path) -> Result<RootCertStore, TlsError> {
    let fail = |reason: String| TlsError::CaFile { path: path.display().to_string(), reason };
    let pem = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("bad PEM: {e}")))?;
        roots.add(cert).map_err(|e| fail(format!("bad certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("no CERTIFICATE in it".into()));
    }
    Ok(roots)
}

/// `tls_insecure_skip_verify`: accepts any certificate for any name, but
/// still checks that the server holds the key of the certificate it sent.
#[derive(Debug)]
struct NoCertCheck(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoCertCheck {
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
        verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("nearcache-tls-unit-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn builds_with_default_roots_for_names_and_ips() {
        assert!(Tls::new("cache.example.com", None, false).is_ok());
        assert!(Tls::new("127.0.0.1", None, false).is_ok());
        assert!(Tls::new("::1", None, true).is_ok());
        assert!(matches!(Tls::new("bad name!", None, false), Err(TlsError::ServerName(_))));
    }

    #[test]
    fn refuses_unusable_ca_files() {
        let missing = std::env::temp_dir().join("nearcache-tls-unit-does-not-exist.pem");
        let e = Tls::new("h", Some(&missing), false).unwrap_err().to_string();
        assert!(e.contains("does-not-exist.pem") && e.contains("No such file"), "{e}");
        let empty = temp("empty.pem", "just some text\n");
        let e = Tls::new("h", Some(&empty), false).unwrap_err().to_string();
        assert!(e.contains("no CERTIFICATE"), "{e}");
        let garbage = temp("garbage.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
        let e = Tls::new("h", Some(&garbage), false).unwrap_err().to_string();
        assert!(e.contains("bad certificate"), "{e}");
        let _ = std::fs::remove_file(empty);
        let _ = std::fs::remove_file(garbage);
    }
}
