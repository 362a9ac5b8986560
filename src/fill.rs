//! Reading a socket into a buffer with one readiness check per wake.
//!
//! A session and a pool connection's reader each read their socket into a
//! `BytesMut` whenever it is readable: two polls per message (one that
//! reads, one that finds nothing and registers the task). Through tokio's
//! `AsyncRead` each goes through `ReadBuf` and `poll_read`'s layers; here a
//! plain socket is asked for readiness and read once, and a read short of
//! the room it had is taken as the socket drained (true of epoll and
//! kqueue, as tokio's own `poll_read` assumes): readiness is cleared as of
//! before the read, so bytes that arrive meanwhile still wake the task.
//! About 35 instructions less per poll (a lone client's forwarded GET,
//! four polls: 5,911 -> 5,838), and the read itself is a direct system
//! call ([`crate::sys`]). TLS upstream streams, dominated by their
//! decryption, keep the `AsyncRead` path.

use crate::sys::{self, Socket};
use bytes::BytesMut;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, Interest};
use tokio::net::{tcp, unix, TcpStream, UnixStream};

/// The read side of a stream a session or pool reads from.
pub trait Fill {
    /// Reads what the stream has into `buf`'s spare room (growing it when
    /// full): the byte count, 0 at end of stream, `Pending` with the task
    /// registered when nothing is there.
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;
}

impl Fill for tcp::OwnedReadHalf {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        fill_socket::<TcpStream>(self.as_ref(), cx, buf)
    }
}

impl Fill for unix::OwnedReadHalf {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        fill_socket::<UnixStream>(self.as_ref(), cx, buf)
    }
}

/// A split TLS stream (or any other): tokio's `AsyncRead` path.
impl<T: AsyncRead> Fill for tokio::io::ReadHalf<T> {
    fn poll_fill(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        pin!(self.read_buf(buf)).poll(cx)
    }
}

/// Waits for readiness (which also spends the task's cooperative budget,
/// so a client that never stops sending cannot starve the others), then
/// reads once.
fn fill_socket<S: Socket>(socket: &S, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
    if buf.len() == buf.capacity() {
        buf.reserve(64);
    }
    let room = buf.capacity() - buf.len();
    loop {
        ready!(socket.poll_read_ready(cx))?;
        let mut read = None;
        // `try_io` clears readiness, as of before its closure ran, when
        // the closure says `WouldBlock`: said after a short read too.
        let tried = socket.try_io(Interest::READABLE, || {
            let n = sys::recv(socket, buf)?;
            read = Some(n);
            if 0 < n && n < room {
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(())
            }
        });
        match (read, tried) {
            (Some(n), _) => return Poll::Ready(Ok(n)),
            (None, Err(e)) if e.kind() != io::ErrorKind::WouldBlock => return Poll::Ready(Err(e)),
            // Readiness was stale: cleared, wait again.
            (None, _) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::time::Duration;
    use tokio::io::AsyncWriteExt;
    use tokio::net::{TcpListener, TcpStream};

    async fn pair() -> (tcp::OwnedReadHalf, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        (server.into_split().0, client)
    }

    async fn fill(reader: &mut impl Fill, buf: &mut BytesMut) -> usize {
        crate::timer::timeout(Duration::from_secs(5), poll_fn(|cx| reader.poll_fill(cx, buf)))
            .await
            .expect("a fill never woke")
            .expect("read")
    }

    #[tokio::test]
    async fn a_short_read_waits_for_what_comes_next() {
        let (mut reader, mut writer) = pair().await;
        let mut buf = BytesMut::with_capacity(1024);
        writer.write_all(b"hello").await.expect("write");
        assert_eq!(fill(&mut reader, &mut buf).await, 5);
        // Readiness was cleared by the short read: what is written later
        // still wakes the reader.
        tokio::spawn(async move {
            crate::timer::sleep(Duration::from_millis(50)).await;
            writer.write_all(b"abc").await.expect("write");
            writer
        });
        assert_eq!(fill(&mut reader, &mut buf).await, 3);
        assert_eq!(&buf[..], b"helloabc");
    }

    #[tokio::test]
    async fn a_full_read_leaves_the_rest_readable_and_the_end_reads_zero() {
        let (mut reader, mut writer) = pair().await;
        writer.write_all(&[7u8; 100]).await.expect("write");
        drop(writer);
        crate::timer::sleep(Duration::from_millis(20)).await;
        let mut buf = BytesMut::with_capacity(16);
        let mut total = 0;
        loop {
            match fill(&mut reader, &mut buf).await {
                0 => break,
                n => total += n,
            }
        }
        assert_eq!(total, 100);
        assert_eq!(buf.len(), 100);
    }

    #[tokio::test]
    async fn a_unix_socket_fills_too() {
        let (a, mut b) = UnixStream::pair().expect("pair");
        let (mut reader, _keep) = a.into_split();
        b.write_all(b"ping").await.expect("write");
        let mut buf = BytesMut::new();
        assert_eq!(fill(&mut reader, &mut buf).await, 4);
        assert_eq!(&buf[..], b"ping");
    }

    /// Bytes that arrive between a short read and its clearing of
    /// readiness, with the I/O driver on another thread, are not lost.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nothing_written_in_small_pieces_is_missed() {
        let (mut reader, mut writer) = pair().await;
        let pieces = 2_000;
        let writing = tokio::spawn(async move {
            for i in 0..pieces {
                writer.write_all(&[(i % 251) as u8; 3]).await.expect("write");
                if i % 7 == 0 {
                    tokio::task::yield_now().await;
                }
            }
            writer
        });
        let mut buf = BytesMut::with_capacity(64);
        while buf.len() < pieces * 3 {
            fill(&mut reader, &mut buf).await;
        }
        assert_eq!(buf.len(), pieces * 3);
        drop(writing.await.expect("writer"));
    }
}
