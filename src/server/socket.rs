//! The client sockets a session can serve: TCP, or the in-process Unix
//! socket a TLS client's decrypted stream arrives on ([`crate::client_tls`]).
//! Sessions are generic over them (no dynamic dispatch on the hot path);
//! the client registry only needs to shut them down.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use tokio::net::{tcp, unix};

/// What the client registry does to a client's socket: shut it down, so
/// the session sees end-of-input (shutdown, idle timeout, revoked tenant).
pub trait Closable: Send + Sync {
    fn shutdown(&self, how: Shutdown);
}

/// The write half of a client socket, written without waiting.
pub trait ClientWriter: Closable + 'static {
    /// Writes what the socket takes now: `WouldBlock` when nothing.
    fn try_write(&self, data: &[u8]) -> io::Result<usize>;
    /// Resolves when the socket may take more.
    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send;
}

impl Closable for tcp::OwnedWriteHalf {
    fn shutdown(&self, how: Shutdown) {
        let stream: &tokio::net::TcpStream = self.as_ref();
        let _ = socket2::SockRef::from(stream).shutdown(how);
    }
}

impl ClientWriter for tcp::OwnedWriteHalf {
    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        crate::sys::try_send(self.as_ref(), data)
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        tcp::OwnedWriteHalf::writable(self)
    }
}

impl Closable for unix::OwnedWriteHalf {
    fn shutdown(&self, how: Shutdown) {
        let stream: &tokio::net::UnixStream = self.as_ref();
        let _ = socket2::SockRef::from(stream).shutdown(how);
    }
}

impl ClientWriter for unix::OwnedWriteHalf {
    fn try_write(&self, data: &[u8]) -> io::Result<usize> {
        crate::sys::try_send(self.as_ref(), data)
    }

    fn writable(&self) -> impl Future<Output = io::Result<()>> + Send {
        unix::OwnedWriteHalf::writable(self)
    }
}
