//! Everything that talks to the upstream Redis: the address and credentials
//! ([`url`]), TLS for `rediss://` ([`tls`]), opening and handshaking a
//! connection ([`conn`]), the shared pool of multiplexed pipelined
//! connections for stateless commands ([`pool`]), dedicated connections
//! dedicated to one client ([`dedicated`]), replies written straight to a
//! lone client ([`handoff`]), opened ahead of need ([`spares`]),
//! and one-request connections for what must not wait behind others
//! ([`out_of_band`]); a cluster node serving nothing keeps none of them
//! going ([`rest`]).

pub mod breaker;
pub mod conn;
pub mod dedicated;
pub mod handoff;
pub mod out_of_band;
pub mod pool;
pub mod reconnect;
pub mod rest;
pub mod spares;
pub mod tls;
mod url;

pub use tls::{Tls, TlsError};

/// `[upstream]`, validated (by `config`, which composes every module's
/// settings).
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub url: UpstreamUrl,
    pub pool_size: usize,
    pub connect_timeout: std::time::Duration,
    pub request_timeout: std::time::Duration,
    pub reconnect_max_backoff: std::time::Duration,
    /// Built once here for a `rediss://` URL, shared by every connection.
    pub tls: Option<Tls>,
}

/// How long an upstream connection kept open for later (a pool connection,
/// a spare, the invalidation connection) may stay silent before it sends a
/// PING: under the smallest idle `timeout` Redis accepts (1 s), so Redis
/// never closes one under a request.
pub const KEEPALIVE: std::time::Duration = std::time::Duration::from_millis(500);
pub use url::{UpstreamUrl, UrlError};

/// Why an upstream request could not be answered. Cloned to every request
/// that a single failure affects.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    #[error("upstream unavailable: {0}")]
    Unavailable(String),
    #[error("upstream connect timeout")]
    ConnectTimeout,
    #[error("upstream timeout, the command may or may not have been applied")]
    Timeout,
    #[error("upstream connection lost, the command may or may not have been applied")]
    ConnectionLost,
    #[error("upstream protocol error: {0}")]
    Protocol(String),
    #[error("upstream handshake failed: {0}")]
    Handshake(String),
    #[error("upstream TLS handshake failed: {0}")]
    Tls(String),
    /// The TLS handshake got through to the server, whose certificate (or
    /// protocol) was refused: it is there.
    #[error("upstream TLS handshake failed: {0}")]
    TlsRefused(String),
    /// The upstream answers but refused what the proxy needs of it (the
    /// failover journal's replay: OOM, READONLY, missing ACL rights, …).
    #[error("upstream refused: {0}")]
    Refused(String),
    /// A batch's replies outgrew what its client may hold unread; they
    /// were dropped as they came (the client is disconnected).
    #[error("replies larger than the client output buffer limit")]
    OutputLimit,
}

impl UpstreamError {
    /// Redis answered and refused (a handshake's error reply: a wrong
    /// password, missing ACL rights, `maxclients`, a busy script; a
    /// certificate the proxy does not trust; a refused replay): it is
    /// reachable, so this is no outage.
    pub fn is_refusal(&self) -> bool {
        matches!(self, UpstreamError::Handshake(_) | UpstreamError::TlsRefused(_) | UpstreamError::Refused(_))
    }

    /// Label for `nearcache_upstream_errors_total{kind}`.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unavailable(_) => "unavailable",
            UpstreamError::ConnectTimeout => "connect_timeout",
            UpstreamError::Timeout => "timeout",
            UpstreamError::ConnectionLost => "connection_lost",
            UpstreamError::Protocol(_) => "protocol",
            UpstreamError::Handshake(_) => "handshake",
            UpstreamError::Tls(_) | UpstreamError::TlsRefused(_) => "tls",
            UpstreamError::Refused(_) => "refused",
            UpstreamError::OutputLimit => "output_limit",
        }
    }

    /// The RESP error reply a client gets for this failure.
    pub fn reply(&self) -> bytes::Bytes {
        crate::protocol::encode::error(&format!("ERR {self}"))
    }
}
