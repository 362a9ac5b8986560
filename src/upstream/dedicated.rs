//! A dedicated upstream connection: dedicated to one client session while that
//! client holds server-side state (MULTI, WATCH, a blocking command,
//! subscriptions, MONITOR, a non-default database, tracking), or carrying
//! the near-cache's invalidations.
//!
//! Dropping it closes the socket, which makes Redis discard the state: no
//! transaction, watch or subscription can leak to another client.

use super::conn::{self, Stream};
use super::UpstreamConfig;
use super::UpstreamError;
use crate::observe;
use crate::protocol::{scan, Proto};
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Plain TCP or TLS, as the upstream URL says.
pub struct DedicatedConn {
    /// `nearcache_dedicated_connections{role}` label.
    role: &'static str,
    stream: Stream,
    rbuf: BytesMut,
    scanner: scan::Scanner,
    write_timeout: std::time::Duration,
    /// Its client id on the server, when the handshake told it.
    id: Option<i64>,
}

impl DedicatedConn {
    /// Opens and handshakes a new dedicated connection for `role`
    /// (`"client"` or `"tracking"`).
    pub async fn open(cfg: &UpstreamConfig, proto: Proto, role: &'static str) -> Result<DedicatedConn, UpstreamError> {
        let connected = conn::open(cfg, proto).await?;
        observe::dedicated_connections(role, 1.0);
        Ok(DedicatedConn {
            role,
            stream: connected.stream,
            rbuf: BytesMut::with_capacity(4096),
            scanner: scan::Scanner::default(),
            write_timeout: cfg.request_timeout,
            id: connected.id,
        })
    }

    /// Counts it under another role from now on (a spare taken by a client).
    pub fn retag(&mut self, role: &'static str) {
        observe::dedicated_connections(self.role, -1.0);
        observe::dedicated_connections(role, 1.0);
        self.role = role;
    }

    /// True unless the server has closed it or sent something unasked (a
    /// spare's only sign of life). Plain TCP only: a TLS stream cannot be
    /// peeked at without reading a record.
    pub fn is_idle_and_open(&self) -> bool {
        match &self.stream {
            Stream::Tcp(tcp) => {
                matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            }
            Stream::Tls(_) => false,
        }
    }

    /// The connection's client id on the server (what `CLIENT ID` on it
    /// would answer).
    pub fn upstream_id(&self) -> Option<i64> {
        self.id
    }

    /// Sends raw request bytes.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), UpstreamError> {
        // The flush is a no-op on TCP; over TLS it pushes out the last record.
        let write = async {
            self.stream.write_all(payload).await?;
            self.stream.flush().await
        };
        match tokio::time::timeout(self.write_timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(UpstreamError::ConnectionLost),
            Err(_) => Err(UpstreamError::Timeout),
        }
    }

    /// The next complete frame from the server. Cancel-safe: a partly
    /// received frame stays buffered for the next call.
    pub async fn next_frame(&mut self) -> Result<Bytes, UpstreamError> {
        loop {
            let found = self.scanner.next_frame(&self.rbuf).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            if let Some(len) = found {
                return Ok(self.rbuf.split_to(len).freeze());
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) | Err(_) => return Err(UpstreamError::ConnectionLost),
                Ok(_) => {}
            }
        }
    }
}

impl Drop for DedicatedConn {
    fn drop(&mut self) {
        observe::dedicated_connections(self.role, -1.0);
    }
}
