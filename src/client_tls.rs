//! TLS for clients: an optional second listener (`server.tls_listen`).
//! Its certificate and key are loaded when the configuration is validated
//! (so a bad one stops the proxy before it starts, naming the file); the
//! server accepts on it.
//!
//! A TLS client's connection is decrypted here and relayed, in process,
//! over a Unix socket pair to an ordinary session, which then serves it
//! exactly as it serves a plain TCP client (same limits, tenancy, output
//! buffer limit), with the client's real address. The relay costs a copy
//! and two local socket operations per direction; the TLS record work is
//! far more than that.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the certificate or key was refused.
#[derive(Debug, thiserror::Error)]
pub enum ServerTlsError {
    #[error("{path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("{path}: {reason}")]
    Key { path: String, reason: String },
}

/// The server side of client TLS: certificate chain and key, loaded once.
#[derive(Clone)]
pub struct ServerTls {
    acceptor: TlsAcceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the PEM certificate chain (leaf first) and private key.
    pub fn load(cert_file: &Path, key_file: &Path) -> Result<ServerTls, ServerTlsError> {
        let cert_err = |reason: String| ServerTlsError::Cert { path: cert_file.display().to_string(), reason };
        let key_err = |reason: String| ServerTlsError::Key { path: key_file.display().to_string(), reason };
        let pem = std::fs::read(cert_file).map_err(|e| cert_err(e.to_string()))?;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<_, _>>()
            .map_err(|e| cert_err(format!("bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(cert_err("no CERTIFICATE in it".into()));
        }
        let pem = std::fs::read(key_file).map_err(|e| key_err(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| key_err(format!("no private key: {e}")))?;
        let config = ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| key_err(format!("does not go with the certificate: {e}")))?;
        Ok(ServerTls { acceptor: TlsAcceptor::from(Arc::new(config)) })
    }

    /// Completes the handshake on `tcp` and starts relaying it; returns the
    /// session's end of the relay, or `None` when the handshake failed
    /// (logged).
    pub async fn accept(&self, tcp: TcpStream, peer: std::net::SocketAddr) -> Option<UnixStream> {
        let tls = match crate::timer::timeout(HANDSHAKE_TIMEOUT, self.acceptor.accept(tcp)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e, "client TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::info!(%peer, "client TLS handshake timed out");
                return None;
            }
        };
        let (session_end, relay_end) = match UnixStream::pair() {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot create the relay for a TLS client");
                return None;
            }
        };
        tokio::spawn(relay(tls, relay_end));
        Some(session_end)
    }
}

/// Copies between the TLS stream and the session until either side ends.
async fn relay(mut tls: tokio_rustls::server::TlsStream<TcpStream>, mut plain: UnixStream) {
    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
}
