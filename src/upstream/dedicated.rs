//! A dedicated upstream connection: dedicated to one client session while that
//! client holds server-side state (MULTI, WATCH, a blocking command,
//! subscriptions, MONITOR, a non-default database, tracking), or carrying
//! the near-cache's invalidations.
//!
//! A client's connection goes back to the spares once the client is done
//! with it: as it is when it carried nothing that may outlast its reply
//! (see `Command::leaves_state`), else only after [`DedicatedConn::reset`]
//! proved it clean (Redis' `RESET`); otherwise it is dropped, which closes
//! the socket and makes Redis discard the state: no transaction, watch or
//! subscription can leak to another client.

use super::conn::{self, Rehandshake, Stream};
use super::UpstreamConfig;
use super::UpstreamError;
use crate::observe;
use crate::protocol::{scan, Proto};
use bytes::{Bytes, BytesMut};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadBuf};

/// What RESET answers.
const RESET_REPLY: &[u8] = b"+RESET\r\n";

/// Frames the old state may still have on the way before the RESET's
/// reply (messages, pushes, MONITOR lines); past them it is not cleaned.
const MAX_SKIPPED: usize = 10_000;

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
    /// The protocol its handshake chose.
    proto: Proto,
    /// Opened with the proxy's own credentials for any client: may be
    /// cleaned and given to another (not a connection logged in as a
    /// client's own Redis user, nor the invalidation connection).
    shareable: bool,
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
            proto,
            shareable: false,
        })
    }

    /// Opens one that may serve client after client (see [`Self::reset`]).
    pub async fn open_shareable(
        cfg: &UpstreamConfig,
        proto: Proto,
        role: &'static str,
    ) -> Result<DedicatedConn, UpstreamError> {
        let mut conn = DedicatedConn::open(cfg, proto, role).await?;
        conn.shareable = true;
        Ok(conn)
    }

    pub fn shareable(&self) -> bool {
        self.shareable
    }

    pub fn proto(&self) -> Proto {
        self.proto
    }

    /// Counts it under another role from now on (a spare taken by a client).
    pub fn retag(&mut self, role: &'static str) {
        observe::dedicated_connections(self.role, -1.0);
        observe::dedicated_connections(role, 1.0);
        self.role = role;
    }

    /// Nothing it received is left unread (a connection given back owes
    /// nothing: anything here came unasked).
    pub fn nothing_unread(&self) -> bool {
        self.rbuf.is_empty()
    }

    /// True unless the server has closed it or sent something unasked (a
    /// spare's only sign of life). Looks at the TCP socket without reading
    /// it, under TLS too.
    pub fn is_idle_and_open(&self) -> bool {
        let tcp = match &self.stream {
            Stream::Tcp(tcp) => tcp,
            Stream::Tls(tls) => tls.get_ref().0,
        };
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        matches!(tcp.poll_peek(&mut Context::from_waker(Waker::noop()), &mut buf), Poll::Pending)
    }

    /// Makes it a fresh connection for another client: `RESET` (Redis ≥
    /// 6.2) drops whatever the last one left (a transaction, watched keys,
    /// subscriptions, tracking, MONITOR, the database, the name, the reply
    /// mode, NO-EVICT / NO-TOUCH), then the handshake runs again (RESET
    /// logs out and speaks RESP2). Messages and pushes still on the way
    /// from the old state are read and dropped up to RESET's reply;
    /// anything else before it (a reply owed, an error: RESET unknown)
    /// means it cannot be proven clean: `Err`, and the caller closes it.
    pub async fn reset(&mut self, rehandshake: &Rehandshake, limit: Duration) -> Result<(), UpstreamError> {
        let exchange = async {
            let mut request = BytesMut::from(&b"*1\r\n$5\r\nRESET\r\n"[..]);
            request.extend_from_slice(&rehandshake.request);
            self.send(&request).await?;
            self.skip_to_reset().await?;
            let mut replies = Vec::with_capacity(rehandshake.replies());
            for _ in 0..rehandshake.replies() {
                replies.push(self.next_frame().await?);
            }
            rehandshake.check(self.proto, replies)
        };
        crate::timer::timeout(limit, exchange).await.unwrap_or(Err(UpstreamError::Timeout))
    }

    /// Reads up to RESET's reply, dropping what the old state sent before.
    async fn skip_to_reset(&mut self) -> Result<(), UpstreamError> {
        for _ in 0..MAX_SKIPPED {
            let frame = self.next_frame().await?;
            if frame == RESET_REPLY {
                return Ok(());
            }
            if !unasked(&frame) {
                return Err(UpstreamError::Handshake(format!("RESET: {}", conn::error_text(&frame))));
            }
        }
        Err(UpstreamError::Protocol("RESET: too much still on the way".into()))
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
        match crate::timer::timeout(self.write_timeout, write).await {
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

/// True for what a server sends unasked: RESP3 pushes, RESP2 pub/sub
/// messages, MONITOR lines (`+<timestamp> …`).
fn unasked(frame: &[u8]) -> bool {
    const MESSAGES: [&[u8]; 3] = [b"*3\r\n$7\r\nmessage\r\n", b"*4\r\n$8\r\npmessage\r\n", b"*3\r\n$8\r\nsmessage\r\n"];
    match frame.first() {
        Some(b'>') => true,
        Some(b'+') => frame.get(1).is_some_and(u8::is_ascii_digit),
        _ => MESSAGES.iter().any(|m| frame.starts_with(m)),
    }
}

#[cfg(test)]
mod tests {
    use super::unasked;

    #[test]
    fn only_what_a_server_sends_unasked_is_skipped_before_reset() {
        assert!(unasked(b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"));
        assert!(unasked(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"));
        assert!(unasked(b"*4\r\n$8\r\npmessage\r\n$2\r\nc*\r\n$2\r\nch\r\n$1\r\nx\r\n"));
        assert!(unasked(b"+1733400000.123456 [0 127.0.0.1:5000] \"get\" \"k\"\r\n"));
        for owed in
            [&b"+OK\r\n"[..], b"-ERR unknown command 'RESET'\r\n", b"$1\r\nx\r\n", b":1\r\n", b"*1\r\n$1\r\nx\r\n"]
        {
            assert!(!unasked(owed), "{}", String::from_utf8_lossy(owed));
        }
    }
}
