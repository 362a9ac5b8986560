//! Opening an upstream connection: TCP connect with a timeout, the TLS
//! handshake for `rediss://`, then one pipelined Redis handshake (AUTH with
//! the proxy's own credentials, HELLO for the protocol version, SELECT of the
//! configured database).

use super::UpstreamConfig;
use super::UpstreamError;
use crate::protocol::{encode, frame, scan, Proto};
use crate::timer::timeout;
use bytes::{Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// TLS over TCP to the upstream.
pub type TlsStream = tokio_rustls::client::TlsStream<TcpStream>;

/// An upstream connection's byte stream.
pub enum Stream {
    Tcp(TcpStream),
    /// Boxed: a TLS session is much larger than a socket.
    Tls(Box<TlsStream>),
}

/// A connection that passed its handshake.
pub struct Connected {
    pub stream: Stream,
    /// The server's name and version from its HELLO reply, when it
    /// answered one.
    pub server: Option<String>,
    pub version: Option<String>,
    /// The connection's client id on the server, from the same reply.
    pub id: Option<i64>,
}

/// Connects and handshakes within `connect_timeout`. A connection closed
/// in the middle of its handshake (`CLIENT KILL TYPE normal` catches
/// connections being opened too) is tried once more at once: only a
/// connection that cannot be established says the upstream is down.
pub async fn open(cfg: &UpstreamConfig, proto: Proto) -> Result<Connected, UpstreamError> {
    let attempts = async {
        match connect_and_handshake(cfg, proto).await {
            Err(UpstreamError::ConnectionLost) => connect_and_handshake(cfg, proto).await,
            result => result,
        }
    };
    match timeout(cfg.connect_timeout, attempts).await {
        Ok(result) => result,
        Err(_) => Err(UpstreamError::ConnectTimeout),
    }
}

async fn connect_and_handshake(cfg: &UpstreamConfig, proto: Proto) -> Result<Connected, UpstreamError> {
    let addr = &cfg.url.addr;
    let tcp = TcpStream::connect(addr).await.map_err(|e| UpstreamError::Unavailable(format!("{addr}: {e}")))?;
    tcp.set_nodelay(true).map_err(|e| UpstreamError::Unavailable(e.to_string()))?;
    let mut stream = match &cfg.tls {
        None => Stream::Tcp(tcp),
        Some(tls) => {
            let tls = tls.connect(tcp).await.map_err(|e| tls_error(addr, e))?;
            Stream::Tls(Box::new(tls))
        }
    };
    let (request, steps) = handshake(cfg, proto, false);
    stream.write_all(&request).await.map_err(|_| UpstreamError::ConnectionLost)?;
    stream.flush().await.map_err(|_| UpstreamError::ConnectionLost)?;
    let replies = match read_replies(&mut stream, steps.len(), cfg.connect_timeout).await {
        // Nothing was asked of Redis yet: a connect timeout, not a request's.
        Err(UpstreamError::Timeout) => return Err(UpstreamError::ConnectTimeout),
        replies => replies?,
    };
    let hello = check_handshake(proto, &steps, replies)?;
    Ok(Connected { stream, server: hello.server, version: hello.version, id: hello.id })
}

/// A failed TLS handshake: rustls' verdict on what the server sent (its
/// certificate expired, untrusted or for another name: `InvalidData`)
/// means the server is there and refused; anything else (reset, closed)
/// is the connection failing on the way.
fn tls_error(addr: &str, e: std::io::Error) -> UpstreamError {
    let text = format!("{addr}: {e}");
    match e.kind() {
        std::io::ErrorKind::InvalidData => UpstreamError::TlsRefused(text),
        _ => UpstreamError::Tls(text),
    }
}

/// The handshake's replies checked step by step: any error refuses the
/// connection, but for RESP2's HELLO, asked only for the server's name (a
/// Redis before 6 does not know it, an ACL user may not run it), unless
/// it says the connection itself is refused; the HELLO reply tells who
/// the server is.
fn check_handshake(proto: Proto, steps: &[Step], replies: Vec<Bytes>) -> Result<frame::Hello, UpstreamError> {
    let mut hello = frame::Hello::default();
    for (step, reply) in steps.iter().zip(replies) {
        let failed = scan::kind(&reply) == scan::FrameKind::Error;
        match step {
            Step::Hello if failed && proto == Proto::Resp3 => {
                let text = error_text(&reply);
                // Redis before 6 knows no HELLO; `NOPROTO`: no RESP3.
                let unsupported = text.starts_with("NOPROTO") || text.contains("unknown command");
                let why = if unsupported { "RESP3 not supported: " } else { "" };
                return Err(UpstreamError::Handshake(format!("{why}{text}")));
            }
            Step::Hello if failed && refuses_connection(&error_text(&reply)) => {
                return Err(UpstreamError::Handshake(error_text(&reply)));
            }
            Step::Hello => hello = frame::hello(proto, &reply),
            _ if failed => return Err(UpstreamError::Handshake(error_text(&reply))),
            _ => {}
        }
    }
    Ok(hello)
}

/// An error reply that refuses the connection as a whole: authentication
/// required or refused, protected mode, `maxclients` (Redis then closes
/// it).
fn refuses_connection(text: &str) -> bool {
    ["NOAUTH", "WRONGPASS", "DENIED"].iter().any(|code| text.starts_with(code))
        || text.contains("max number of clients reached")
}

/// What makes a connection that RESET a fresh one again: the handshake
/// (RESET logs it out, speaks RESP2 and selects database 0), to pipeline
/// after the RESET; nothing at all for a RESP2 connection to database 0
/// of a server without a password.
pub struct Rehandshake {
    pub request: BytesMut,
    steps: Vec<Step>,
}

impl Rehandshake {
    pub fn new(cfg: &UpstreamConfig, proto: Proto) -> Rehandshake {
        let (request, steps) = handshake(cfg, proto, true);
        Rehandshake { request, steps }
    }

    /// How many replies it gets.
    pub fn replies(&self) -> usize {
        self.steps.len()
    }

    /// Checks them as a new connection's are.
    pub fn check(&self, proto: Proto, replies: Vec<Bytes>) -> Result<(), UpstreamError> {
        check_handshake(proto, &self.steps, replies).map(drop)
    }
}

enum Step {
    Auth,
    Hello,
    Select,
}

/// The handshake of a new connection; `after_reset`: of one RESET just
/// left speaking RESP2, which a RESP2 connection needs no HELLO for.
fn handshake(cfg: &UpstreamConfig, proto: Proto, after_reset: bool) -> (BytesMut, Vec<Step>) {
    let url = &cfg.url;
    let mut out = BytesMut::new();
    let mut steps = Vec::new();
    if let Some(pass) = &url.password {
        match &url.username {
            Some(user) => encode::command(&mut out, [&b"AUTH"[..], user.as_bytes(), pass.as_bytes()].into_iter()),
            None => encode::command(&mut out, [&b"AUTH"[..], pass.as_bytes()].into_iter()),
        }
        steps.push(Step::Auth);
    }
    if proto == Proto::Resp3 || !after_reset {
        let version = if proto == Proto::Resp3 { &b"3"[..] } else { b"2" };
        encode::command(&mut out, [&b"HELLO"[..], version].into_iter());
        steps.push(Step::Hello);
    }
    if url.db != 0 {
        let db = url.db.to_string();
        encode::command(&mut out, [&b"SELECT"[..], db.as_bytes()].into_iter());
        steps.push(Step::Select);
    }
    (out, steps)
}

/// Reads exactly `n` reply frames; fails if the server sends nothing for
/// `idle` (a slow but progressing server is waited for).
pub(crate) async fn read_replies(stream: &mut Stream, n: usize, idle: Duration) -> Result<Vec<Bytes>, UpstreamError> {
    let mut buf = BytesMut::with_capacity(1024);
    let mut scanner = scan::Scanner::default();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        match scanner.next_frame(&buf).map_err(|e| UpstreamError::Protocol(e.to_string()))? {
            Some(len) => out.push(buf.split_to(len).freeze()),
            None => {
                let read = timeout(idle, stream.read_buf(&mut buf)).await.map_err(|_| UpstreamError::Timeout)?;
                if read.map_err(|_| UpstreamError::ConnectionLost)? == 0 {
                    return Err(UpstreamError::ConnectionLost);
                }
            }
        }
    }
    Ok(out)
}

/// An error reply's message (without its type byte), for logs and errors.
pub(crate) fn error_text(reply: &[u8]) -> String {
    String::from_utf8_lossy(reply.get(1..).unwrap_or_default()).trim_end().to_string()
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello_refused(proto: Proto, error: &str) -> Result<(), UpstreamError> {
        let reply = Bytes::from(format!("-{error}\r\n"));
        check_handshake(proto, &[Step::Hello], vec![reply]).map(drop)
    }

    #[test]
    fn a_resp2_hello_error_refuses_the_connection_only_when_it_says_so() {
        for tolerated in
            ["ERR unknown command 'HELLO'", "NOPERM this user has no permissions to run the 'hello' command"]
        {
            assert!(hello_refused(Proto::Resp2, tolerated).is_ok(), "{tolerated}");
        }
        for refusal in [
            "NOAUTH HELLO must be called with the client already authenticated",
            "WRONGPASS invalid username-password pair or user is disabled.",
            "DENIED Redis is running in protected mode",
            "ERR max number of clients reached",
        ] {
            assert_eq!(hello_refused(Proto::Resp2, refusal), Err(UpstreamError::Handshake(refusal.into())));
        }
    }

    #[test]
    fn a_resp3_hello_error_says_whether_resp3_is_missing() {
        let missing = hello_refused(Proto::Resp3, "NOPROTO unsupported protocol version").expect_err("refused");
        assert_eq!(
            missing.to_string(),
            "upstream handshake failed: RESP3 not supported: NOPROTO unsupported protocol version"
        );
        let noauth = hello_refused(Proto::Resp3, "NOAUTH HELLO must be called with the client already authenticated")
            .expect_err("refused");
        assert_eq!(
            noauth.to_string(),
            "upstream handshake failed: NOAUTH HELLO must be called with the client already authenticated"
        );
    }
}
