//! The wire protocol through the proxy, mostly as raw RESP bytes: RESP3 and
//! HELLO, inline commands, malformed input, byte-level pipelining, QUIT and
//! RESET, upstream faults, and the admin endpoints.
mod common;

use common::{direct_raw, eventually, metric, wait_ready, wait_ready_resp3, Proxy, RedisServer};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Quick upstream timeouts, and failover off: these tests are about the
/// errors clients get (tests/failover.rs covers failover).
const FAST_FAIL: &str =
    "[upstream]\nrequest_timeout = \"500ms\"\nconnect_timeout = \"300ms\"\n[failover]\nenabled = false\n";

fn setup() -> (RedisServer, Proxy) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port);
    wait_ready(&proxy);
    (redis, proxy)
}

fn start_with(redis: &RedisServer, toml: &str) -> Proxy {
    let proxy = Proxy::start_with(redis.port, toml);
    wait_ready(&proxy);
    proxy
}

/// The request bytes of one command as a RESP multibulk.
fn resp(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
    }
    out
}

fn text(frame: Vec<u8>) -> String {
    String::from_utf8_lossy(&frame).into_owned()
}

/// The server's name and version as its own `HELLO 3` gives them (Valkey
/// says `valkey` and its own version; its INFO's `redis_version` is 7.2.4).
fn server_identity(redis: &RedisServer) -> (String, String) {
    let hello = direct_raw(redis).call(&["HELLO", "3"]);
    let field = |name: &str| {
        let after = hello.split(&format!("${}\r\n{name}\r\n", name.len())).nth(1).expect(name);
        after.split("\r\n").nth(1).expect(name).to_string()
    };
    (field("server"), field("version"))
}

// ---------------------------------------------------------------- RESP3 / HELLO

#[test]
fn hello_3_returns_a_map_with_proto_and_version() {
    let (redis, proxy) = setup();
    let (server, version) = server_identity(&redis);
    let mut raw = proxy.raw();
    // One round trip first, so the proxy has met the upstream.
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    let hello = raw.call(&["HELLO", "3"]);
    assert!(hello.starts_with("%7\r\n"), "{hello:?}");
    assert!(hello.contains(&format!("$6\r\nserver\r\n${}\r\n{server}\r\n", server.len())), "{hello:?}");
    assert!(hello.contains(&format!("$7\r\nversion\r\n${}\r\n{version}\r\n", version.len())), "{hello:?}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello:?}");
    assert!(hello.contains("$4\r\nmode\r\n$10\r\nstandalone\r\n"), "{hello:?}");
    assert!(hello.contains("$4\r\nrole\r\n$6\r\nmaster\r\n"), "{hello:?}");
    assert!(hello.contains("$7\r\nmodules\r\n*0\r\n"), "{hello:?}");
    // The id it reports is the one CLIENT ID gives.
    let id = raw.call(&["CLIENT", "ID"]);
    let id = id.strip_prefix(':').and_then(|s| s.strip_suffix("\r\n")).expect("integer").to_string();
    assert!(hello.contains(&format!("$2\r\nid\r\n:{id}\r\n")), "{hello:?} vs id {id}");

    // Same shape as Redis' own HELLO 3.
    let mut direct = direct_raw(&redis);
    let theirs = direct.call(&["HELLO", "3"]);
    assert!(theirs.starts_with("%7\r\n"), "{theirs:?}");
    assert!(theirs.contains(&format!("$7\r\nversion\r\n${}\r\n{version}\r\n", version.len())));

    // HELLO without a version keeps the protocol and answers in it.
    let again = raw.call(&["HELLO"]);
    assert!(again.starts_with("%7\r\n") && again.contains("$5\r\nproto\r\n:3\r\n"), "{again:?}");
    // HELLO 2 answers a flat array.
    let two = raw.call(&["HELLO", "2"]);
    assert!(two.starts_with("*14\r\n") && two.contains("$5\r\nproto\r\n:2\r\n"), "{two:?}");
}

#[test]
fn requests_pipelined_before_a_hello_are_answered_in_the_old_protocol() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "k", "v"]), "+OK\r\n");
    // One write: the replies before each HELLO keep the protocol the
    // client spoke when it sent them (RESP2 nil `$-1`, RESP3 null `_`).
    let mut pipeline = Vec::new();
    for args in [
        &["GET", "missing"][..],
        &["HELLO", "3"],
        &["GET", "missing"],
        &["GET", "k"],
        &["HELLO", "2"],
        &["GET", "missing"],
    ] {
        pipeline.extend(format!("*{}\r\n", args.len()).bytes());
        args.iter().for_each(|a| pipeline.extend(format!("${}\r\n{a}\r\n", a.len()).bytes()));
    }
    raw.send(&pipeline);
    let mut reply = || String::from_utf8_lossy(&raw.read_frame()).into_owned();
    assert_eq!(reply(), "$-1\r\n");
    assert!(reply().starts_with("%7\r\n"));
    assert_eq!(reply(), "_\r\n");
    assert_eq!(reply(), "$1\r\nv\r\n");
    assert!(reply().starts_with("*14\r\n"));
    assert_eq!(reply(), "$-1\r\n");
}

#[test]
fn first_command_after_start_is_answered() {
    // A client that connects as soon as the proxy listens gets real
    // replies, not an error because the pool has not connected yet.
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "first", "1"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "first"]), "$1\r\n1\r\n");
}

#[test]
fn first_resp3_command_is_answered() {
    // The RESP2 pool is up; the first RESP3 client must not get an error
    // because the RESP3 side has not connected yet.
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    assert!(raw.call(&["HELLO", "3"]).starts_with("%7\r\n"));
    assert_eq!(raw.call(&["GET", "missing"]), "_\r\n");
    assert_eq!(raw.call(&["SET", "k", "v"]), "+OK\r\n");
    // Same through the redis crate, which starts with HELLO 3.
    let (_redis, proxy) = setup();
    let client = redis::Client::open(format!("{}/?protocol=resp3", proxy.url())).unwrap();
    let mut c = client.get_connection().unwrap();
    let v: Option<String> = redis::cmd("GET").arg("missing").query(&mut c).unwrap();
    assert_eq!(v, None);
}

#[test]
fn resp3_replies_and_switching_back() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["HSET", "h", "f", "v"]), ":1\r\n");
    assert_eq!(raw.call(&["HGETALL", "h"]), "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(raw.call(&["GET", "missing"]), "$-1\r\n");

    assert!(raw.call(&["HELLO", "3"]).starts_with('%'));
    wait_ready_resp3(&mut raw);
    assert_eq!(raw.call(&["HGETALL", "h"]), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(raw.call(&["GET", "missing"]), "_\r\n");
    assert_eq!(raw.call(&["ZADD", "z", "1.5", "m"]), ":1\r\n");
    assert_eq!(raw.call(&["ZSCORE", "z", "m"]), ",1.5\r\n");
    assert_eq!(raw.call(&["SADD", "s", "x"]), ":1\r\n");
    assert_eq!(raw.call(&["SMEMBERS", "s"]), "~1\r\n$1\r\nx\r\n");

    assert!(raw.call(&["HELLO", "2"]).starts_with("*14\r\n"));
    assert_eq!(raw.call(&["HGETALL", "h"]), "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(raw.call(&["GET", "missing"]), "$-1\r\n");
    assert_eq!(raw.call(&["ZSCORE", "z", "m"]), "$3\r\n1.5\r\n");
}

#[test]
fn resp3_on_a_pinned_connection() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    // SELECT redirects a connection; HELLO 3 must then switch that one too.
    assert_eq!(raw.call(&["SELECT", "2"]), "+OK\r\n");
    assert_eq!(raw.call(&["HSET", "h", "f", "v"]), ":1\r\n");
    assert!(raw.call(&["HELLO", "3"]).starts_with("%7\r\n"));
    assert_eq!(raw.call(&["HGETALL", "h"]), "%1\r\n$1\r\nf\r\n$1\r\nv\r\n");
    assert_eq!(raw.call(&["GET", "missing"]), "_\r\n");
    assert!(raw.call(&["HELLO", "2"]).starts_with("*14\r\n"));
    assert_eq!(raw.call(&["HGETALL", "h"]), "*2\r\n$1\r\nf\r\n$1\r\nv\r\n");
    let mut d = redis.direct();
    let _: () = redis::cmd("SELECT").arg(2).query(&mut d).unwrap();
    let v: String = redis::cmd("HGET").arg("h").arg("f").query(&mut d).unwrap();
    assert_eq!(v, "v");
}

#[test]
fn hello_unsupported_version() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    let ours = raw.call(&["HELLO", "4"]);
    assert_eq!(ours, "-NOPROTO unsupported protocol version\r\n");
    assert_eq!(ours, direct_raw(&redis).call(&["HELLO", "4"]));
    // The protocol is unchanged and the connection usable.
    assert_eq!(raw.call(&["GET", "missing"]), "$-1\r\n");
    let bad = raw.call(&["HELLO", "x"]);
    assert!(bad.starts_with("-ERR"), "{bad:?}");
    assert_eq!(bad, direct_raw(&redis).call(&["HELLO", "x"]));
}

#[test]
fn resp3_subscriber_gets_pushes_and_can_run_commands() {
    let (_redis, proxy) = setup();
    let mut publisher = proxy.conn();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut publisher).unwrap();
    let mut raw = proxy.raw();
    assert!(raw.call(&["HELLO", "3"]).starts_with('%'));
    wait_ready_resp3(&mut raw);
    assert_eq!(raw.call(&["SUBSCRIBE", "ch"]), ">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n");

    let n: i64 = redis::cmd("PUBLISH").arg("ch").arg("hello").query(&mut publisher).unwrap();
    assert_eq!(n, 1);
    assert_eq!(text(raw.read_frame()), ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n");

    // RESP3 allows ordinary commands while subscribed.
    assert_eq!(raw.call(&["GET", "k"]), "$1\r\nv\r\n");
    assert_eq!(raw.call(&["GET", "missing"]), "_\r\n");
    assert_eq!(raw.call(&["SET", "k2", "x"]), "+OK\r\n");
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");

    let n: i64 = redis::cmd("PUBLISH").arg("ch").arg("again").query(&mut publisher).unwrap();
    assert_eq!(n, 1);
    assert_eq!(text(raw.read_frame()), ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nagain\r\n");

    assert_eq!(raw.call(&["UNSUBSCRIBE", "ch"]), ">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n");
    assert_eq!(raw.call(&["GET", "k2"]), "$1\r\nx\r\n");
    let n: i64 = redis::cmd("PUBLISH").arg("ch").arg("nobody").query(&mut publisher).unwrap();
    assert_eq!(n, 0);
}

#[test]
fn resp3_via_redis_crate() {
    let (_redis, proxy) = setup();
    let client = redis::Client::open(format!("{}/?protocol=resp3", proxy.url())).unwrap();
    let mut c = client.get_connection().unwrap();
    let ready = eventually(Duration::from_secs(5), || {
        redis::cmd("ECHO").arg("ready").query::<String>(&mut c).is_ok_and(|v| v == "ready")
    });
    assert!(ready, "RESP3 commands never went through");
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut c).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut c).unwrap();
    assert_eq!(v, "v");
    let missing: redis::Value = redis::cmd("GET").arg("nope").query(&mut c).unwrap();
    assert_eq!(missing, redis::Value::Nil);
    let _: () = redis::cmd("HSET").arg("h").arg("a").arg("1").arg("b").arg("2").query(&mut c).unwrap();
    let raw: redis::Value = redis::cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert!(matches!(&raw, redis::Value::Map(pairs) if pairs.len() == 2), "{raw:?}");
    let map: std::collections::HashMap<String, i64> = redis::cmd("HGETALL").arg("h").query(&mut c).unwrap();
    assert_eq!(map, [("a".to_string(), 1), ("b".to_string(), 2)].into_iter().collect());
    let score: redis::Value = redis::cmd("INCRBYFLOAT").arg("f").arg("1.5").query(&mut c).unwrap();
    assert_eq!(score, redis::Value::BulkString(b"1.5".to_vec()));
    let replies: Vec<i64> =
        redis::pipe().cmd("INCR").arg("n").cmd("INCR").arg("n").cmd("INCR").arg("n").query(&mut c).unwrap();
    assert_eq!(replies, [1, 2, 3]);
}

// ---------------------------------------------------------------- inline

#[test]
fn inline_commands() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    raw.send(b"PING\r\n");
    assert_eq!(text(raw.read_frame()), "+PONG\r\n");
    raw.send(b"SET k \"hello world\"\r\n");
    assert_eq!(text(raw.read_frame()), "+OK\r\n");
    raw.send(b"GET k\r\n");
    assert_eq!(text(raw.read_frame()), "$11\r\nhello world\r\n");
    // Bare LF as terminator.
    raw.send(b"ECHO lf\n");
    assert_eq!(text(raw.read_frame()), "$2\r\nlf\r\n");
    // A closing quote must be followed by a space, as in Redis.
    let mut direct = direct_raw(&redis);
    direct.send(b"SET k2 'it''s'\n");
    let redis_reply = text(direct.read_frame());
    raw.send(b"SET k2 'it''s'\n");
    let ours = text(raw.read_frame());
    assert_eq!(ours, "-ERR Protocol error: unbalanced quotes in request\r\n");
    assert_eq!(ours, redis_reply);
    assert!(raw.is_closed());
}

#[test]
fn inline_quoting_and_empty_lines() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    raw.send(b"\r\n\r\n   \r\nPING\r\n\r\n");
    assert_eq!(text(raw.read_frame()), "+PONG\r\n");
    raw.send(b"SET q \"a\\tb\\x41\" \n");
    assert_eq!(text(raw.read_frame()), "+OK\r\n");
    raw.send(b"GET q\n");
    assert_eq!(text(raw.read_frame()), "$4\r\na\tbA\r\n");
    raw.send(b"SET q2 'single \"quoted\"'\r\nGET q2\r\n");
    assert_eq!(text(raw.read_frame()), "+OK\r\n");
    assert_eq!(text(raw.read_frame()), "$15\r\nsingle \"quoted\"\r\n");
    // Inline and multibulk mixed in one write.
    let mut mixed = b"INCR n\r\n".to_vec();
    mixed.extend(resp(&["INCR", "n"]));
    mixed.extend(b"INCR n\r\n");
    raw.send(&mixed);
    for n in 1..=3 {
        assert_eq!(text(raw.read_frame()), format!(":{n}\r\n"));
    }
    // Nothing extra was produced for the empty lines.
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn inline_unbalanced_quotes_closes() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    raw.send(b"SET k \"abc\r\n");
    assert_eq!(text(raw.read_frame()), "-ERR Protocol error: unbalanced quotes in request\r\n");
    assert!(raw.is_closed());
}

// ---------------------------------------------------------------- malformed input

#[test]
fn expected_bulk_error_closes() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    raw.send(b"*1\r\n:5\r\n");
    let ours = text(raw.read_frame());
    assert_eq!(ours, "-ERR Protocol error: expected '$', got ':'\r\n");
    assert!(raw.is_closed());
    let mut direct = direct_raw(&redis);
    direct.send(b"*1\r\n:5\r\n");
    assert_eq!(text(direct.read_frame()), ours);
}

#[test]
fn invalid_multibulk_length_closes() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    raw.send(b"*x\r\n");
    let ours = text(raw.read_frame());
    assert_eq!(ours, "-ERR Protocol error: invalid multibulk length\r\n");
    assert!(raw.is_closed());
    let mut direct = direct_raw(&redis);
    direct.send(b"*x\r\n");
    assert_eq!(text(direct.read_frame()), ours);
}

#[test]
fn replies_before_a_protocol_error_are_delivered_in_order() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    let mut batch = resp(&["SET", "a", "1"]);
    batch.extend(resp(&["GET", "a"]));
    batch.extend(b"*1\r\n:5\r\n");
    batch.extend(resp(&["SET", "never", "1"]));
    raw.send(&batch);
    assert_eq!(text(raw.read_frame()), "+OK\r\n");
    assert_eq!(text(raw.read_frame()), "$1\r\n1\r\n");
    assert_eq!(text(raw.read_frame()), "-ERR Protocol error: expected '$', got ':'\r\n");
    assert!(raw.is_closed());
    let never: Option<String> = redis::cmd("GET").arg("never").query(&mut redis.direct()).unwrap();
    assert_eq!(never, None);
}

#[test]
fn oversized_bulk_refused_before_data() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    let started = Instant::now();
    raw.send(b"*1\r\n$999999999999\r\n");
    assert_eq!(text(raw.read_frame()), "-ERR Protocol error: invalid bulk length\r\n");
    assert!(started.elapsed() < Duration::from_secs(2), "refused after {:?}", started.elapsed());
    assert!(raw.is_closed());
    // Negative lengths are refused too.
    let mut raw = proxy.raw();
    raw.send(b"*1\r\n$-5\r\n");
    assert_eq!(text(raw.read_frame()), "-ERR Protocol error: invalid bulk length\r\n");
    assert!(raw.is_closed());
}

#[test]
fn configured_bulk_limit() {
    let redis = RedisServer::start();
    let proxy = start_with(&redis, "[server]\nproto_max_bulk_len = 1024\n");
    let mut raw = proxy.raw();
    let small = "s".repeat(1000);
    assert_eq!(raw.call(&["SET", "small", &small]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "small"]), format!("$1000\r\n{small}\r\n"));
    let big = "b".repeat(2000);
    let reply = raw.call(&["SET", "big", &big]);
    assert_eq!(reply, "-ERR Protocol error: invalid bulk length\r\n");
    assert!(raw.is_closed());
    let exists: i64 = redis::cmd("EXISTS").arg("big").query(&mut redis.direct()).unwrap();
    assert_eq!(exists, 0);
    // Exactly at the limit is accepted.
    let mut raw = proxy.raw();
    let edge = "e".repeat(1024);
    assert_eq!(raw.call(&["SET", "edge", &edge]), "+OK\r\n");
}

#[test]
fn other_clients_unaffected_by_garbage() {
    let (_redis, proxy) = setup();
    let mut good = proxy.raw();
    assert_eq!(good.call(&["SET", "g", "0"]), "+OK\r\n");
    let garbage: [&[u8]; 4] = [b"*1\r\n:5\r\n", b"*x\r\n", b"*1\r\n$9999999999999\r\n", b"SET k \"unterminated\r\n"];
    for (n, bytes) in garbage.iter().enumerate() {
        let mut bad = proxy.raw();
        bad.send(bytes);
        let reply = text(bad.read_frame());
        assert!(reply.starts_with("-ERR Protocol error"), "{bytes:?} -> {reply:?}");
        assert!(bad.is_closed(), "{bytes:?}");
        assert_eq!(good.call(&["INCR", "g"]), format!(":{}\r\n", n + 1));
    }
    assert_eq!(proxy.raw().call(&["GET", "g"]), "$1\r\n4\r\n");
}

/// Lengths Redis refuses (a leading zero, `-0`, a `+`) are refused by the
/// proxy with Redis' own error, never forwarded: Redis would close the
/// shared upstream connection they arrived on, failing every client's
/// requests on it and tripping failover.
#[test]
fn lengths_redis_refuses_never_reach_it() {
    let (redis, proxy) = setup();
    let mut good = proxy.raw();
    assert_eq!(good.call(&["SET", "g", "real"]), "+OK\r\n");
    let lengths: [&[u8]; 5] =
        [b"*1\r\n$04\r\nPING\r\n", b"*01\r\n$4\r\nPING\r\n", b"*1\r\n$-0\r\n", b"*-0\r\n", b"*1\r\n$+4\r\nPING\r\n"];
    for bytes in lengths {
        let mut bad = proxy.raw();
        bad.send(bytes);
        let ours = text(bad.read_frame());
        assert!(ours.starts_with("-ERR Protocol error: invalid"), "{bytes:?} -> {ours:?}");
        assert!(bad.is_closed(), "{bytes:?}");
        let mut direct = direct_raw(&redis);
        direct.send(bytes);
        assert_eq!(text(direct.read_frame()), ours, "{bytes:?}: Redis says otherwise");
        assert_eq!(good.call(&["GET", "g"]), "$4\r\nreal\r\n", "{bytes:?} disturbed another client");
    }
    let metrics = proxy.admin_get("/metrics").1;
    let errors: Vec<&str> = metrics.lines().filter(|l| l.starts_with("nearcache_upstream_errors_total")).collect();
    assert!(errors.is_empty(), "an upstream connection failed: {errors:?}");
}

/// Hostile framing, each on its own connection, while another client keeps
/// working: negative and huge lengths, frames cut off mid-way, RESP3
/// aggregates and arrays nested 10,000 deep where a command is expected.
/// Each gets a protocol error or is simply closed; nothing crashes or hangs.
#[test]
fn hostile_framing_is_refused_and_others_carry_on() {
    let (_redis, proxy) = setup();
    let mut good = proxy.raw();
    assert_eq!(good.call(&["SET", "n", "0"]), "+OK\r\n");
    let deep = |open: &str| open.repeat(10_000).into_bytes();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("negative multibulk", b"*-5\r\n$3\r\nGET\r\n".to_vec()),
        ("negative bulk", b"*1\r\n$-3\r\nGET\r\n".to_vec()),
        ("huge multibulk", b"*99999999999999999999\r\n".to_vec()),
        ("huge bulk", b"*1\r\n$9223372036854775807\r\n".to_vec()),
        ("overflowing bulk", b"*1\r\n$99999999999999999999999\r\n".to_vec()),
        ("nested arrays", deep("*1\r\n")),
        ("nested RESP3 maps", deep("%1\r\n")),
        ("nested RESP3 sets", deep("~1\r\n")),
        ("nested RESP3 pushes", deep(">1\r\n")),
        ("attribute", b"|1\r\n+a\r\n+b\r\n*1\r\n$4\r\nPING\r\n".to_vec()),
        ("integer as argument", b"*2\r\n$3\r\nGET\r\n:1\r\n".to_vec()),
        ("bulk without CRLF", b"*1\r\n$4\r\nPINGxx".to_vec()),
    ];
    for (n, (name, bytes)) in cases.iter().enumerate() {
        let mut bad = TcpStream::connect(proxy.addr).expect("connect");
        bad.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
        bad.write_all(bytes).expect("send");
        let _ = bad.shutdown(std::net::Shutdown::Write);
        let mut reply = Vec::new();
        let _ = bad.read_to_end(&mut reply);
        let reply = String::from_utf8_lossy(&reply);
        // As in Redis, what does not start with `*` is an inline command
        // (each `%1` line is an unknown command), and a multibulk count
        // <= 0 is skipped, the rest read inline.
        let inline = reply
            .lines()
            .all(|l| l.starts_with("-ERR unknown command") || l.starts_with("-ERR wrong number") || l == "+PONG");
        assert!(reply.is_empty() || reply.starts_with("-ERR Protocol error") || inline, "{name}: {reply:.200}");
        assert_eq!(good.call(&["INCR", "n"]), format!(":{}\r\n", n + 1), "after {name}");
    }
    // Frames cut off mid-way, then the connection closed.
    for cut in [&b"*3\r\n$3\r\nSET\r\n$1\r\nk"[..], b"*2\r\n$3\r\nGET\r\n$10\r\nabc", b"*100000\r\n", b"$5\r\nhe"] {
        let mut s = TcpStream::connect(proxy.addr).expect("connect");
        s.write_all(cut).expect("send");
        drop(s);
    }
    assert_eq!(good.call(&["GET", "n"]), format!("$2\r\n{}\r\n", cases.len()));
    assert_eq!(proxy.raw().call(&["PING"]), "+PONG\r\n");
}

/// xorshift64*: deterministic pseudo-random bytes without a crate.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[test]
fn survives_random_garbage_connections() {
    let (_redis, proxy) = setup();
    let mut good = proxy.raw();
    assert_eq!(good.call(&["SET", "alive", "yes"]), "+OK\r\n");
    let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
    for i in 0..200 {
        let mut s = TcpStream::connect(proxy.addr).expect("connect");
        let len = 1 + (rng.next() % 512) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // A share of them start like RESP, to reach the multibulk parser.
        match i % 4 {
            0 => bytes.insert(0, b'*'),
            1 => bytes.splice(0..0, b"*2\r\n$".iter().copied()).for_each(drop),
            _ => {}
        }
        let _ = s.write_all(&bytes);
        if i % 10 == 0 {
            // Some wait for whatever the proxy answers before leaving.
            let _ = s.shutdown(std::net::Shutdown::Write);
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    assert_eq!(good.call(&["GET", "alive"]), "$3\r\nyes\r\n");
    let mut fresh = proxy.raw();
    assert_eq!(fresh.call(&["PING"]), "+PONG\r\n");
    let (status, _) = proxy.admin_get("/health");
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------- pipelining

#[test]
fn hundred_commands_in_one_write() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..100 {
        match i % 3 {
            0 => {
                batch.extend(resp(&["SET", &format!("k{i}"), &format!("v{i}")]));
                expected.push("+OK\r\n".to_string());
            }
            1 => {
                batch.extend(resp(&["GET", &format!("k{}", i - 1)]));
                let v = format!("v{}", i - 1);
                expected.push(format!("${}\r\n{v}\r\n", v.len()));
            }
            _ => {
                batch.extend(resp(&["INCR", "counter"]));
                expected.push(format!(":{}\r\n", i / 3 + 1));
            }
        }
    }
    raw.send(&batch);
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&text(raw.read_frame()), want, "reply {i}");
    }
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
}

#[test]
fn request_split_into_tiny_writes() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    raw.stream.set_nodelay(true).unwrap();
    let mut bytes = resp(&["SET", "split", "hello world"]);
    bytes.extend(resp(&["GET", "split"]));
    bytes.extend(b"ECHO inline\r\n");
    for b in &bytes {
        raw.send(std::slice::from_ref(b));
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(text(raw.read_frame()), "+OK\r\n");
    assert_eq!(text(raw.read_frame()), "$11\r\nhello world\r\n");
    assert_eq!(text(raw.read_frame()), "$6\r\ninline\r\n");
    // A value split across writes at every boundary of its header.
    let big = "x".repeat(5000);
    let bytes = resp(&["SET", "big", &big]);
    for chunk in bytes.chunks(7) {
        raw.send(chunk);
    }
    assert_eq!(text(raw.read_frame()), "+OK\r\n");
    assert_eq!(raw.call(&["STRLEN", "big"]), ":5000\r\n");
}

#[test]
fn large_values_pipelined_with_small_ones() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    let values: Vec<String> = (0..6)
        .map(|i| ((b'a' + i as u8) as char).to_string().repeat([10, 20_000, 5, 1_000_000, 70_000, 1][i]))
        .collect();
    let mut batch = Vec::new();
    for (i, v) in values.iter().enumerate() {
        batch.extend(resp(&["SET", &format!("big{i}"), v]));
    }
    for i in 0..values.len() {
        batch.extend(resp(&["GET", &format!("big{i}")]));
        batch.extend(resp(&["STRLEN", &format!("big{i}")]));
    }
    raw.send(&batch);
    for _ in &values {
        assert_eq!(text(raw.read_frame()), "+OK\r\n");
    }
    for v in &values {
        let frame = raw.read_frame();
        assert_eq!(frame.len(), v.len() + format!("${}\r\n\r\n", v.len()).len());
        assert!(frame == format!("${}\r\n{v}\r\n", v.len()).into_bytes(), "GET of a {}-byte value", v.len());
        assert_eq!(text(raw.read_frame()), format!(":{}\r\n", v.len()));
    }
    let direct: Vec<u8> = redis::cmd("GET").arg("big3").query(&mut redis.direct()).unwrap();
    assert_eq!(direct, values[3].as_bytes());
}

#[test]
fn inline_too_big_closes() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    raw.send(&vec![b'a'; 70 * 1024]);
    assert_eq!(text(raw.read_frame()), "-ERR Protocol error: too big inline request\r\n");
    assert!(raw.is_closed());
}

// ---------------------------------------------------------------- QUIT / RESET

#[test]
fn quit_replies_ok_and_closes() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "before", "1"]), "+OK\r\n");
    let mut batch = resp(&["QUIT"]);
    batch.extend(resp(&["SET", "after", "1"]));
    raw.send(&batch);
    assert_eq!(text(raw.read_frame()), "+OK\r\n");
    assert!(raw.is_closed());
    let after: i64 = redis::cmd("EXISTS").arg("after").query(&mut redis.direct()).unwrap();
    assert_eq!(after, 0, "a command after QUIT was executed");
    // Inline QUIT too.
    let mut raw = proxy.raw();
    raw.send(b"QUIT\r\n");
    assert_eq!(text(raw.read_frame()), "+OK\r\n");
    assert!(raw.is_closed());
}

#[test]
fn reset_restores_resp2_and_db0() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["HSET", "h", "f", "db0"]), ":1\r\n");
    assert!(raw.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(raw.call(&["SELECT", "1"]), "+OK\r\n");
    assert_eq!(raw.call(&["HSET", "h", "f", "db1"]), ":1\r\n");
    assert_eq!(raw.call(&["CLIENT", "SETNAME", "before-reset"]), "+OK\r\n");
    assert_eq!(raw.call(&["HGETALL", "h"]), "%1\r\n$1\r\nf\r\n$3\r\ndb1\r\n");

    assert_eq!(raw.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(raw.call(&["HGETALL", "h"]), "*2\r\n$1\r\nf\r\n$3\r\ndb0\r\n");
    assert_eq!(raw.call(&["GET", "missing"]), "$-1\r\n");
    assert_eq!(raw.call(&["CLIENT", "GETNAME"]), "$-1\r\n");

    // RESET from inside a transaction.
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["SET", "inmulti", "1"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(raw.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(raw.call(&["EXISTS", "inmulti"]), ":0\r\n");

    // RESET while subscribed (RESP2): back to a normal connection.
    assert_eq!(raw.call(&["SUBSCRIBE", "rc"]), "*3\r\n$9\r\nsubscribe\r\n$2\r\nrc\r\n:1\r\n");
    assert_eq!(raw.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(raw.call(&["GET", "missing"]), "$-1\r\n");
    let mut publisher = proxy.conn();
    let receivers: i64 = redis::cmd("PUBLISH").arg("rc").arg("x").query(&mut publisher).unwrap();
    assert_eq!(receivers, 0);
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");

    // RESET on a plain connection.
    let mut plain = proxy.raw();
    assert_eq!(plain.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(plain.call(&["PING"]), "+PONG\r\n");
}

// ---------------------------------------------------------------- upstream faults

/// True when `reply` is an upstream failure error.
fn is_upstream_error(reply: &str) -> bool {
    reply.starts_with("-ERR upstream")
}

#[test]
fn upstream_down_fails_fast_and_recovers() {
    let mut redis = RedisServer::start();
    let proxy = start_with(&redis, FAST_FAIL);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "k", "v"]), "+OK\r\n");
    redis.kill();
    for _ in 0..3 {
        let started = Instant::now();
        let reply = raw.call(&["GET", "k"]);
        let took = started.elapsed();
        assert!(is_upstream_error(&reply), "{reply:?}");
        assert!(took < Duration::from_millis(1200), "error after {took:?}");
    }
    // DedicatedConn commands fail fast too: a blocking one leaves the connection
    // usable, a MULTI that cannot begin ends it (what it pipelined next
    // must not run outside the transaction).
    let reply = raw.call(&["BLPOP", "q", "1"]);
    assert!(is_upstream_error(&reply), "{reply:?}");
    let mut tx = proxy.raw();
    let started = Instant::now();
    tx.send(b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*1\r\n$4\r\nEXEC\r\n");
    let reply = String::from_utf8_lossy(&tx.read_frame()).into_owned();
    assert!(is_upstream_error(&reply), "{reply:?}");
    assert!(started.elapsed() < Duration::from_millis(1200), "error after {:?}", started.elapsed());
    assert!(tx.is_closed(), "nothing after the failed MULTI is run");

    redis.restart();
    let mut last = String::new();
    let recovered = eventually(Duration::from_secs(5), || {
        last = raw.call(&["GET", "k"]);
        last == "$-1\r\n"
    });
    assert!(recovered, "the same client connection never recovered: last reply {last:?}");
    assert_eq!(raw.call(&["SET", "k", "again"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "k"]), "$5\r\nagain\r\n");
    // A transaction works again; the failed one's INCR never ran.
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["INCR", "n"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), "*1\r\n:1\r\n");
}

#[test]
fn upstream_killed_mid_pipeline_every_command_answered() {
    let mut redis = RedisServer::start();
    let proxy = start_with(&redis, FAST_FAIL);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    let mut writer = raw.stream.try_clone().unwrap();
    let kinds: Vec<usize> = (0..1000).map(|i| i % 3).collect();
    let replies = std::thread::scope(|scope| {
        let redis = &mut redis;
        let kinds = &kinds;
        scope.spawn(move || {
            for (chunk_no, chunk) in kinds.chunks(50).enumerate() {
                let mut bytes = Vec::new();
                for (j, kind) in chunk.iter().enumerate() {
                    let i = chunk_no * 50 + j;
                    bytes.extend(match kind {
                        0 => resp(&["SET", &format!("k{i}"), "v"]),
                        1 => resp(&["INCR", "n"]),
                        _ => resp(&["GET", "n"]),
                    });
                }
                writer.write_all(&bytes).unwrap();
                if chunk_no == 9 {
                    redis.kill();
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        let started = Instant::now();
        let replies: Vec<String> = (0..1000).map(|_| text(raw.read_frame())).collect();
        assert!(started.elapsed() < Duration::from_secs(10));
        replies
    });
    let mut ok = 0;
    let mut failed = 0;
    for (i, reply) in replies.iter().enumerate() {
        if is_upstream_error(reply) {
            failed += 1;
            continue;
        }
        let normal = match kinds[i] {
            0 => reply == "+OK\r\n",
            1 => reply.starts_with(':'),
            _ => reply.starts_with('$'),
        };
        assert!(normal, "reply {i} to kind {} is {reply:?}", kinds[i]);
        ok += 1;
    }
    assert_eq!(ok + failed, 1000);
    assert!(ok > 0, "no command succeeded before the kill");
    assert!(failed > 0, "no command failed after the kill");

    // No reply is missing or extra: after a restart, each ECHO gets its own.
    redis.restart();
    let mut i = 0;
    let recovered = eventually(Duration::from_secs(5), || {
        i += 1;
        let marker = format!("m{i}");
        let reply = raw.call(&["ECHO", &marker]);
        assert!(is_upstream_error(&reply) || reply == format!("${}\r\n{marker}\r\n", marker.len()), "{reply:?}");
        !is_upstream_error(&reply)
    });
    assert!(recovered, "never recovered after restart");
}

#[test]
fn paused_upstream_times_out_and_recovers() {
    let redis = RedisServer::start();
    let proxy = start_with(&redis, FAST_FAIL);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "k", "v"]), "+OK\r\n");
    redis.pause();
    let started = Instant::now();
    let reply = raw.call(&["GET", "k"]);
    let took = started.elapsed();
    assert_eq!(reply, "-ERR upstream timeout, the command may or may not have been applied\r\n");
    assert!(took < Duration::from_millis(1500), "timed out after {took:?}");
    assert!(took >= Duration::from_millis(400), "timed out after only {took:?}");
    // While still paused, later requests fail within the same bound.
    let started = Instant::now();
    let reply = raw.call(&["GET", "k"]);
    assert!(is_upstream_error(&reply) && reply.contains("timeout"), "{reply:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "after {:?}", started.elapsed());
    // A dedicated request too.
    let started = Instant::now();
    let mut other = proxy.raw();
    let reply = other.call(&["MULTI"]);
    assert!(is_upstream_error(&reply), "{reply:?}");
    assert!(started.elapsed() < Duration::from_millis(1500), "after {:?}", started.elapsed());

    redis.resume();
    let mut last = String::new();
    let recovered = eventually(Duration::from_secs(5), || {
        last = raw.call(&["GET", "k"]);
        last == "$1\r\nv\r\n"
    });
    assert!(recovered, "never recovered after resume: last reply {last:?}");
}

// ---------------------------------------------------------------- admin

#[test]
fn metrics_and_health() {
    let mut redis = RedisServer::start();
    let proxy = start_with(&redis, FAST_FAIL);
    let (status, body) = proxy.admin_get("/health");
    assert_eq!(status, 200);
    assert!(body.contains("ok"), "{body}");

    let gets = "nearcache_commands_total{command=\"get\"}";
    let (_, before) = proxy.admin_get("/metrics");
    let before = metric(&before, gets).unwrap_or(0.0);
    let mut raw = proxy.raw();
    for _ in 0..5 {
        assert_eq!(raw.call(&["GET", "m"]), "$-1\r\n");
    }
    let (status, body) = proxy.admin_get("/metrics");
    assert_eq!(status, 200);
    let after = metric(&body, gets).unwrap_or_else(|| panic!("no {gets} in\n{body}"));
    assert!(after >= before + 5.0, "{gets}: {before} → {after}");
    let clients = metric(&body, "nearcache_client_connections").unwrap_or_else(|| panic!("no gauge in\n{body}"));
    assert!(clients >= 1.0, "client connections {clients}");
    assert!(body.contains("nearcache_command_duration_seconds_bucket{le=\""), "{body}");
    assert!(body.contains("nearcache_command_duration_seconds_bucket{le=\"+Inf\"}"), "{body}");
    assert!(body.contains("nearcache_command_duration_seconds_count"), "{body}");

    redis.kill();
    // A key never read before: no near-cache entry can answer it.
    let reply = raw.call(&["GET", "never-read"]);
    assert!(is_upstream_error(&reply), "{reply:?}");
    let (_, body) = proxy.admin_get("/metrics");
    let errors: f64 = body
        .lines()
        .filter(|l| l.starts_with("nearcache_upstream_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(errors >= 1.0, "no upstream errors counted:\n{body}");

    let (status, _) = proxy.admin_get("/nope");
    assert_eq!(status, 404);
}

#[test]
fn connections_past_max_clients_are_refused_with_an_error() {
    let redis = RedisServer::start();
    let proxy = start_with(&redis, "[server]\nmax_clients = 2\n");
    // The start-up check's connection may still be ending: retry until two
    // clients hold their slots.
    let admitted = || {
        let start = Instant::now();
        loop {
            let mut raw = proxy.raw();
            if raw.call(&["PING"]) == "+PONG\r\n" {
                return raw;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no slot became free");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let mut first = admitted();
    let second = admitted();
    let mut third = proxy.raw();
    assert_eq!(text(third.read_frame()), "-ERR max number of clients reached\r\n");
    assert!(third.is_closed());
    // The clients already connected are unaffected; a freed slot is reused.
    assert_eq!(first.call(&["PING"]), "+PONG\r\n");
    drop(second);
    let admitted = eventually(Duration::from_secs(5), || proxy.raw().call(&["PING"]) == "+PONG\r\n");
    assert!(admitted, "a slot freed by a disconnect was never reused");
    let (_, body) = proxy.admin_get("/metrics");
    assert!(metric(&body, "nearcache_clients_refused_total").is_some_and(|n| n >= 1.0), "{body}");
}

#[test]
fn idle_clients_are_closed_but_busy_and_subscribed_ones_stay() {
    let redis = RedisServer::start();
    let proxy = start_with(&redis, "[server]\nclient_idle_timeout = \"300ms\"\n");
    let mut idle = proxy.raw();
    assert_eq!(idle.call(&["PING"]), "+PONG\r\n");
    // Its last reply written by the pool's reader (a lone request's
    // handoff), which the session only learns of later: idle all the same.
    assert_eq!(idle.call(&["GET", "nothing"]), "$-1\r\n");
    let mut busy = proxy.raw();
    let mut subscriber = proxy.raw();
    subscriber.cmd(&["SUBSCRIBE", "news"]);
    assert!(text(subscriber.read_frame()).contains("subscribe"));
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(1500) {
        assert_eq!(busy.call(&["PING"]), "+PONG\r\n", "a busy client was closed");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(idle.is_closed(), "an idle client was kept past the timeout");
    let mut publisher = proxy.raw();
    assert_eq!(publisher.call(&["PUBLISH", "news", "still here"]), ":1\r\n");
    assert!(text(subscriber.read_frame()).contains("still here"), "a subscribed client was closed");
    let (_, body) = proxy.admin_get("/metrics");
    assert!(metric(&body, "nearcache_clients_idle_closed_total").is_some_and(|n| n >= 1.0), "{body}");
}

// ---------------------------------------------------------------- slow readers

/// A lone request's reply is written to the client by the pool's reader
/// (see `upstream::handoff`); one bigger than the client's socket takes
/// comes back to the session, which writes the rest as the client reads:
/// the reply arrives whole and in order, and the session goes on.
#[test]
fn a_lone_clients_big_reply_arrives_whole_when_it_reads_late() {
    let redis = RedisServer::start();
    let proxy = start_with(&redis, "[cache]\nenabled = false\n");
    let big = "z".repeat(8 * 1024 * 1024);
    let mut writer = proxy.raw();
    assert_eq!(writer.call(&["SET", "big", &big]), "+OK\r\n");
    let mut client = proxy.raw();
    let whole = format!("${}\r\n{big}\r\n", big.len()).into_bytes();
    for _ in 0..3 {
        client.cmd(&["GET", "big"]);
        std::thread::sleep(Duration::from_millis(300));
        assert!(client.read_frame() == whole, "the big reply came back damaged");
        assert_eq!(client.call(&["GET", "missing"]), "$-1\r\n");
    }
    client.cmd(&["GET", "big"]);
    client.cmd(&["PING"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(client.read_frame() == whole, "the big reply came back damaged");
    assert_eq!(text(client.read_frame()), "+PONG\r\n");
}

/// A subscriber that stops reading is disconnected once the messages it
/// leaves unread pass `client_output_buffer_limit`, instead of the proxy
/// buffering them without bound; a client pipelining big replies it never
/// reads is too; other clients are unaffected.
#[test]
fn clients_that_do_not_read_are_cut_at_the_output_limit() {
    let redis = RedisServer::start();
    let proxy = start_with(&redis, "[server]\nclient_output_buffer_limit = 2097152\n");
    let mut subscriber = proxy.raw();
    assert!(subscriber.call(&["SUBSCRIBE", "firehose"]).contains("subscribe"));
    let payload = "x".repeat(16 * 1024);
    let mut publisher = redis.direct();
    let mut disconnected = false;
    for _ in 0..200 {
        for _ in 0..100 {
            let _: i64 = redis::cmd("PUBLISH").arg("firehose").arg(&payload).query(&mut publisher).expect("publish");
        }
        let receivers: i64 = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg("firehose")
            .query::<(String, i64)>(&mut publisher)
            .expect("numsub")
            .1;
        if receivers == 0 {
            disconnected = true;
            break;
        }
    }
    assert!(disconnected, "the proxy kept a subscriber that reads nothing");

    let mut reader = proxy.raw();
    assert_eq!(reader.call(&["SET", "big", &"y".repeat(256 * 1024)]), "+OK\r\n");
    let mut hoarder = TcpStream::connect(proxy.addr).expect("connect");
    let get = resp(&["GET", "big"]);
    let burst: Vec<u8> = get.iter().copied().cycle().take(get.len() * 400).collect();
    hoarder.write_all(&burst).expect("pipeline");
    hoarder.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let closed = eventually(Duration::from_secs(10), || {
        let mut probe = [0u8; 1];
        hoarder.set_nonblocking(true).expect("nonblocking");
        let r = hoarder.peek(&mut probe);
        hoarder.set_nonblocking(false).expect("blocking");
        // Data is waiting (unread replies), so drain it to reach the end.
        match r {
            Ok(0) => true,
            Ok(_) => {
                let mut sink = vec![0u8; 1 << 20];
                matches!(hoarder.read(&mut sink), Ok(0) | Err(_))
            }
            Err(_) => false,
        }
    });
    assert!(closed, "a client leaving 100 MB unread was not disconnected");
    assert_eq!(reader.call(&["PING"]), "+PONG\r\n");
    let body = proxy.admin_get("/metrics").1;
    let cut = metric(&body, "nearcache_clients_output_limit_closed_total");
    assert!(cut.is_some_and(|n| n >= 2.0), "{body}");
}

/// The limit is soft up to four times its size: a client reading a reply
/// bigger than it gets all of it; one leaving more than it unread (but
/// less than four times) is cut after 10 s of that. (16 MiB, so what the
/// sockets' buffers hold, a few MB on loopback, stays small beside it.)
#[test]
fn the_output_limit_is_soft_below_four_times_its_size() {
    let redis = RedisServer::start();
    let proxy = start_with(&redis, "[server]\nclient_output_buffer_limit = 16777216\n");
    let big = "v".repeat(20 << 20);
    let mut reader = proxy.raw();
    assert_eq!(reader.call(&["SET", "big", &big]), "+OK\r\n");
    reader.cmd(&["GET", "big"]);
    // Starts reading once the proxy holds most of the reply.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(reader.read_frame().len(), big.len() + 13, "a reply bigger than the limit was cut");

    let mut subscriber = proxy.raw();
    assert!(subscriber.call(&["SUBSCRIBE", "slow"]).contains("subscribe"));
    let mut publisher = redis.direct();
    let chunk = "x".repeat(1 << 20);
    for _ in 0..40 {
        let _: i64 = redis::cmd("PUBLISH").arg("slow").arg(&chunk).query(&mut publisher).expect("publish");
    }
    let subscribed = |publisher: &mut redis::Connection| {
        let _: i64 = redis::cmd("PUBLISH").arg("slow").arg("tick").query(publisher).expect("publish");
        redis::cmd("PUBSUB").arg("NUMSUB").arg("slow").query::<(String, i64)>(publisher).expect("numsub").1 == 1
    };
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    assert!(subscribed(&mut publisher), "cut before its grace: under the hard limit");
    let cut = eventually(Duration::from_secs(20), || !subscribed(&mut publisher));
    assert!(cut, "a subscriber past the limit was never cut");
    assert!(started.elapsed() >= Duration::from_secs(9), "cut after {:?}, before its grace", started.elapsed());
}
