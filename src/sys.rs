//! Socket reads and writes as direct system calls.
//!
//! glibc's `recv` and `send` are thread-cancellation points: each call
//! switches asynchronous cancellation on and off around the system call
//! (about 30 instructions of the 60 a call costs in user space). A lone
//! client's forwarded request makes four of them. Made through `rustix`,
//! which issues the system call itself on Linux, they cost the call alone.
//! tokio's readiness bookkeeping is kept: every call runs inside the
//! socket's `try_io`, which clears readiness when the call would block.

use bytes::{BufMut, BytesMut};
use rustix::net::{RecvFlags, SendFlags};
use std::io;
use std::os::fd::AsFd;
use std::task::{Context, Poll};
use tokio::io::Interest;
use tokio::net::{TcpStream, UnixStream};

/// What the direct calls need of a tokio socket: its readiness and its
/// descriptor.
pub trait Socket: AsFd {
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
    fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R>;
}

macro_rules! socket {
    ($t:ty) => {
        impl Socket for $t {
            fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
                <$t>::poll_read_ready(self, cx)
            }
            fn try_io<R>(&self, interest: Interest, f: impl FnOnce() -> io::Result<R>) -> io::Result<R> {
                <$t>::try_io(self, interest, f)
            }
        }
    };
}

socket!(TcpStream);
socket!(UnixStream);

/// Reads what the socket has into `buf`'s spare room (one `recv`): the
/// byte count, 0 at end of stream. The caller makes room first.
pub fn recv<S: AsFd>(socket: &S, buf: &mut BytesMut) -> io::Result<usize> {
    let ((filled, _), _) = rustix::net::recv(socket, buf.spare_capacity_mut(), RecvFlags::empty())?;
    let n = filled.len();
    // SAFETY: `recv` initialised the first `n` bytes of the spare room.
    unsafe { buf.advance_mut(n) };
    Ok(n)
}

/// Writes what the socket takes of `data` now (one `send`, never raising
/// SIGPIPE): `WouldBlock` when it takes nothing, readiness then cleared.
pub fn try_send<S: Socket>(socket: &S, data: &[u8]) -> io::Result<usize> {
    socket.try_io(Interest::WRITABLE, || Ok(rustix::net::send(socket, data, SendFlags::NOSIGNAL)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn what_is_sent_is_received_and_a_closed_peer_is_an_error_not_a_signal() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        a.writable().await.expect("writable");
        assert_eq!(try_send(&a, b"ping").expect("send"), 4);
        let mut got = [0u8; 4];
        b.read_exact(&mut got).await.expect("read");
        assert_eq!(&got, b"ping");

        let mut buf = BytesMut::with_capacity(16);
        drop(b);
        assert_eq!(recv(&a, &mut buf).expect("end of stream"), 0);
        let sent = try_send(&a, b"x").and_then(|_| try_send(&a, b"y"));
        assert!(sent.is_err(), "writing to a closed peer must fail: {sent:?}");
    }

    #[tokio::test]
    async fn recv_appends_to_what_the_buffer_holds() {
        let (a, b) = UnixStream::pair().expect("pair");
        b.writable().await.expect("writable");
        try_send(&b, b"def").expect("send");
        a.readable().await.expect("readable");
        let mut buf = BytesMut::with_capacity(16);
        buf.extend_from_slice(b"abc");
        assert_eq!(recv(&a, &mut buf).expect("recv"), 3);
        assert_eq!(&buf[..], b"abcdef");
    }
}
