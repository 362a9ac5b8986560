//! Memory that clients which never authenticate can make the proxy hold:
//! oversized frames are refused at their header (nothing buffered), and
//! what fits the unauthenticated limits (10 arguments of 16 KiB) is bounded
//! per connection and per address. Its own test binary, so the process'
//! peak memory is this proxy's.
mod common;

use common::{peak_kib, Proxy, RedisServer};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

#[test]
fn unauthenticated_clients_cannot_grow_the_proxy() {
    let redis = RedisServer::start();
    let hash = nearcache::tenancy::hash_password(b"acme-pw");
    let proxy = Proxy::start_with(redis.port, &format!("[[tenant]]\nname = \"acme\"\npassword_sha256 = \"{hash}\"\n"));
    let mut acme = proxy.raw();
    assert_eq!(acme.call(&["AUTH", "acme", "acme-pw"]), "+OK\r\n");
    let before = peak_kib();

    // Four clients each announcing a 400 MiB AUTH argument and sending
    // 64 MiB of it: refused at the header, their connections closed.
    let chunk = vec![b'x'; 1 << 20];
    let mut sent_mib = 0;
    for _ in 0..4 {
        let mut attacker = TcpStream::connect(proxy.addr).expect("connect");
        attacker.set_write_timeout(Some(Duration::from_secs(5))).expect("timeout");
        let _ = attacker.write_all(b"*2\r\n$4\r\nAUTH\r\n$419430400\r\n");
        for _ in 0..64 {
            if attacker.write_all(&chunk).is_err() {
                break;
            }
            sent_mib += 1;
        }
    }
    // Two hundred clients each holding what the limits allow: nine full
    // 16 KiB arguments and the start of a tenth.
    let arg = format!("$16384\r\n{}\r\n", "y".repeat(16384));
    let held: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut c = TcpStream::connect(proxy.addr).expect("connect");
            let _ = c.write_all(format!("*10\r\n{}$16384\r\nyy", arg.repeat(9)).as_bytes());
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let grown_mib = (peak_kib() - before) / 1024;
    println!(
        "peak memory grew by {grown_mib} MiB: 4 clients announcing 400 MiB each (they got {sent_mib} MiB written \
         before being closed), 200 holding 9 x 16 KiB each"
    );
    assert!(grown_mib < 64, "unauthenticated clients grew the proxy by {grown_mib} MiB");
    assert_eq!(acme.call(&["PING"]), "+PONG\r\n");
    drop(held);
}
