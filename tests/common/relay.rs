//! A latency relay for tests: Redis "across a network" on loopback. Each
//! accepted connection gets its own connection to the target; every chunk
//! read is forwarded after `one_way` in each direction, later chunks queued
//! behind it (a link with latency, not a slow link). Runs on a thread of
//! its own until the test process ends.

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Starts a relay to `to`, delaying each direction by `one_way`; returns
/// the port it listens on.
pub fn start(to: u16, one_way: Duration) -> u16 {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let port = std_listener.local_addr().expect("relay addr").port();
    std_listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("relay runtime");
        rt.block_on(async move {
            let listener = TcpListener::from_std(std_listener).expect("relay listener");
            let target: SocketAddr = ([127, 0, 0, 1], to).into();
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, target, one_way));
            }
        });
    });
    port
}

async fn serve(client: TcpStream, target: SocketAddr, one_way: Duration) {
    let Ok(server) = TcpStream::connect(target).await else { return };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::join!(pipe(client_read, server_write, one_way), pipe(server_read, client_write, one_way));
}

/// Copies `from` to `to`, each chunk sent `delay` after it was read.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            if tx.send((Instant::now() + delay, buf[..n].to_vec())).is_err() {
                break;
            }
        }
    };
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}
