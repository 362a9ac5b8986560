//! The least a proxy on a bare epoll loop spends per request: what
//! `examples/floor.rs` does (bytes copied between a client and Redis, no
//! parsing, no decision), on one `mio` poll loop instead of tokio's
//! runtime: no tasks, no wakers, no scheduler, no busy-time clock reads.
//! It measures how much of a lone client's cost is the runtime's, for the
//! choice between a hand-written event loop and tokio (issue #19).
//!
//! Each socket is read once per readiness event: a read short of the
//! buffer is taken as the socket drained (epoll reports data arriving after
//! it as a new event), as tokio's reads and `src/fill.rs` do. Writes are
//! `write` calls of what was read; what a full socket does not take waits
//! for its writability.
//!
//! `FLOOR=mio scripts/callgrind.sh` counts its instructions per request.
//!
//! ```sh
//! cargo run --release --example floor_mio -- 127.0.0.1:7001 127.0.0.1:6379
//! ```

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;

const LISTENER: Token = Token(0);

/// One end of a relayed pair: its socket, and what waits to be written to
/// it.
struct End {
    socket: TcpStream,
    unwritten: Vec<u8>,
    /// The token of the other end of the pair.
    peer: Token,
}

struct Relay {
    poll: Poll,
    ends: HashMap<Token, End>,
    next: usize,
    buf: Vec<u8>,
    upstream: SocketAddr,
}

impl Relay {
    /// Takes every pending client, each paired with a new connection to
    /// Redis; a client that cannot be paired (gone already) is dropped.
    fn accept(&mut self, listener: &TcpListener) -> std::io::Result<()> {
        loop {
            let client = match listener.accept() {
                Ok((client, _)) => client,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            };
            if let Err(e) = self.pair(client) {
                eprintln!("floor_mio: client dropped: {e}");
            }
        }
    }

    fn pair(&mut self, mut client: TcpStream) -> std::io::Result<()> {
        let redis = std::net::TcpStream::connect(self.upstream)?;
        redis.set_nonblocking(true)?;
        let mut redis = TcpStream::from_std(redis);
        client.set_nodelay(true)?;
        redis.set_nodelay(true)?;
        let (a, b) = (Token(self.next), Token(self.next + 1));
        self.next += 2;
        self.poll.registry().register(&mut client, a, Interest::READABLE)?;
        self.poll.registry().register(&mut redis, b, Interest::READABLE)?;
        self.ends.insert(a, End { socket: client, unwritten: Vec::new(), peer: b });
        self.ends.insert(b, End { socket: redis, unwritten: Vec::new(), peer: a });
        Ok(())
    }

    /// Reads `from` once and writes what came to its peer; false when the
    /// pair is done.
    fn relay(&mut self, from: Token) -> bool {
        let Some(end) = self.ends.get_mut(&from) else { return false };
        let n = match end.socket.read(&mut self.buf) {
            Ok(0) => return false,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        };
        let peer = end.peer;
        let Some(to) = self.ends.get_mut(&peer) else { return false };
        if !to.unwritten.is_empty() {
            to.unwritten.extend_from_slice(&self.buf[..n]);
            return true;
        }
        let written = match to.socket.write(&self.buf[..n]) {
            Ok(written) => written,
            Err(e) if e.kind() == ErrorKind::WouldBlock => 0,
            Err(_) => return false,
        };
        if written < n {
            to.unwritten.extend_from_slice(&self.buf[written..n]);
            let interest = Interest::READABLE | Interest::WRITABLE;
            return self.poll.registry().reregister(&mut to.socket, peer, interest).is_ok();
        }
        true
    }

    /// Writes what waited for `token`'s socket to take it.
    fn drain(&mut self, token: Token) -> bool {
        let Some(end) = self.ends.get_mut(&token) else { return false };
        while !end.unwritten.is_empty() {
            match end.socket.write(&end.unwritten) {
                Ok(n) => drop(end.unwritten.drain(..n)),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
        self.poll.registry().reregister(&mut end.socket, token, Interest::READABLE).is_ok()
    }

    fn close(&mut self, token: Token) {
        if let Some(mut end) = self.ends.remove(&token) {
            let _ = self.poll.registry().deregister(&mut end.socket);
            if let Some(mut peer) = self.ends.remove(&end.peer) {
                let _ = self.poll.registry().deregister(&mut peer.socket);
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let (Some(listen), Some(upstream)) = (args.next(), args.next()) else {
        eprintln!("usage: floor_mio LISTEN_ADDR UPSTREAM_ADDR");
        std::process::exit(2);
    };
    let parse = |a: &str| a.parse::<SocketAddr>().map_err(|e| std::io::Error::new(ErrorKind::InvalidInput, e));
    let mut listener = TcpListener::bind(parse(&listen)?)?;
    let poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let mut relay = Relay { poll, ends: HashMap::new(), next: 1, buf: vec![0; 16 * 1024], upstream: parse(&upstream)? };
    let mut events = Events::with_capacity(1024);
    loop {
        match relay.poll.poll(&mut events, None) {
            Ok(()) => {}
            // A signal (callgrind_control's, for one).
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let token = event.token();
            if token == LISTENER {
                relay.accept(&listener)?;
                continue;
            }
            let mut live = true;
            if event.is_writable() {
                live = relay.drain(token);
            }
            if live && (event.is_readable() || event.is_read_closed()) {
                live = relay.relay(token);
            }
            if !live {
                relay.close(token);
            }
        }
    }
}
