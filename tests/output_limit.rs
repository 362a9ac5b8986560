//! Memory held for a client that pipelines big reads and never reads the
//! replies: bounded by the hard output limit, not by what it asked for.
//! Its own test binary, so the process' peak memory is this proxy's.
mod common;

use common::{eventually, peak_kib, wait_ready, Proxy, RedisServer};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn replies_past_the_hard_limit_are_dropped_as_they_come() {
    let redis = RedisServer::start();
    // 1 MiB limit: 4 MiB hard. No near-cache: every GET goes upstream.
    let config = "[server]\nclient_output_buffer_limit = 1048576\n[cache]\nenabled = false\n";
    let proxy = Proxy::start_with(redis.port, config);
    wait_ready(&proxy);
    let mut setup = proxy.raw();
    assert_eq!(setup.call(&["SET", "big", &"y".repeat(256 * 1024)]), "+OK\r\n");
    let before = peak_kib();

    // 400 GETs in one write: 100 MB of replies, one pool batch.
    let mut hoarder = TcpStream::connect(proxy.addr).expect("connect");
    let get = b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n";
    hoarder.write_all(&get.repeat(400)).expect("pipeline");
    hoarder.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    std::thread::sleep(Duration::from_secs(1));
    // Read what was written before the disconnection, up to its end.
    let mut sink = vec![0u8; 1 << 20];
    let closed = eventually(Duration::from_secs(10), || loop {
        match hoarder.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return false,
            Err(_) => return true,
        }
    });
    assert!(closed, "a client leaving 100 MB unread was not disconnected");
    let grown_mib = (peak_kib() - before) / 1024;
    println!("peak memory grew by {grown_mib} MiB for 100 MB of unread replies");
    assert!(grown_mib < 40, "the proxy held {grown_mib} MiB for a client whose hard limit is 4 MiB");
    assert_eq!(setup.call(&["PING"]), "+PONG\r\n");
}
