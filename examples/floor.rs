//! The least a proxy built on tokio spends per request: bytes copied
//! between a client and Redis, no parsing, no decision, nothing kept. One
//! current-thread runtime (as each of nearcache's worker threads); per
//! client one task reads the client and writes Redis, another reads Redis
//! and writes the client, each write a `try_write` of what was read.
//!
//! `FLOOR=1 scripts/callgrind.sh` counts its instructions per request under
//! the same load as nearcache's, so the proxy's own work is the difference.
//!
//! ```sh
//! cargo run --release --example floor -- 127.0.0.1:7001 127.0.0.1:6379
//! ```

use bytes::BytesMut;
use std::io::ErrorKind;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Copies what `from` reads to `to` until either end closes.
async fn pump(mut from: OwnedReadHalf, to: OwnedWriteHalf) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        buf.clear();
        match from.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut at = 0;
        while at < buf.len() {
            match to.try_write(&buf[at..]) {
                Ok(n) => at += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if to.writable().await.is_err() {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }
}

async fn serve(listen: String, upstream: String) -> std::io::Result<()> {
    let listener = TcpListener::bind(&listen).await?;
    loop {
        let (client, _) = listener.accept().await?;
        let redis = TcpStream::connect(&upstream).await?;
        client.set_nodelay(true)?;
        redis.set_nodelay(true)?;
        let (client_read, client_write) = client.into_split();
        let (redis_read, redis_write) = redis.into_split();
        tokio::spawn(pump(client_read, redis_write));
        tokio::spawn(pump(redis_read, client_write));
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: floor LISTEN UPSTREAM");
        std::process::exit(2);
    };
    tokio::runtime::Builder::new_current_thread().enable_io().build()?.block_on(serve(listen, upstream))
}
