//! Command behaviour through the proxy, against a real redis-server: every
//! common data type, errors, pipelines, concurrency, transactions, blocking
//! commands, pub/sub, SELECT, CLIENT and connection lifecycle.
mod common;

use common::{eventually, wait_ready, Proxy, RedisServer};
use redis::{Connection, RedisError, Value};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// A proxy in front of a fresh redis-server (the server must outlive it).
fn setup() -> (RedisServer, Proxy) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port);
    wait_ready(&proxy);
    (redis, proxy)
}

/// The error as Redis wrote it: `CODE message`.
fn err_text(e: &RedisError) -> String {
    format!("{} {}", e.code().unwrap_or("?"), e.detail().unwrap_or(""))
}

/// Runs `cmd` expecting an error reply; returns its text.
fn query_err(cmd: &redis::Cmd, con: &mut Connection) -> String {
    match cmd.query::<Value>(con) {
        Ok(v) => panic!("expected an error reply, got {v:?}"),
        Err(e) => err_text(&e),
    }
}

fn q<T: redis::FromRedisValue>(con: &mut Connection, args: &[&str]) -> T {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(con).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn cmd(args: &[&str]) -> redis::Cmd {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd
}

/// `blocked_clients` from Redis' INFO clients, asked directly.
fn blocked_clients(redis: &RedisServer) -> i64 {
    let info: String = q(&mut redis.direct(), &["INFO", "clients"]);
    info.lines()
        .find_map(|l| l.strip_prefix("blocked_clients:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("blocked_clients in INFO")
}

#[test]
fn strings() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    assert_eq!(q::<Value>(&mut c, &["SET", "s", "v1"]), Value::Okay);
    assert_eq!(q::<String>(&mut c, &["GET", "s"]), "v1");
    assert_eq!(q::<Option<String>>(&mut c, &["GET", "missing"]), None);
    // NX on an existing key does nothing; NX GET returns the old value.
    assert_eq!(q::<Value>(&mut c, &["SET", "s", "v2", "NX"]), Value::Nil);
    assert_eq!(q::<Option<String>>(&mut c, &["SET", "s", "v3", "GET"]), Some("v1".into()));
    assert_eq!(q::<String>(&mut d, &["GET", "s"]), "v3");
    assert_eq!(q::<Value>(&mut c, &["SET", "fresh", "x", "NX"]), Value::Okay);
    // EX sets a TTL.
    assert_eq!(q::<Value>(&mut c, &["SET", "ex", "x", "EX", "100"]), Value::Okay);
    let ttl: i64 = q(&mut d, &["TTL", "ex"]);
    assert!((99..=100).contains(&ttl), "ttl {ttl}");

    assert_eq!(q::<Value>(&mut c, &["MSET", "m1", "a", "m2", "b"]), Value::Okay);
    assert_eq!(
        q::<Vec<Option<String>>>(&mut c, &["MGET", "m1", "nope", "m2"]),
        vec![Some("a".into()), None, Some("b".into())]
    );

    assert_eq!(q::<i64>(&mut c, &["INCR", "n"]), 1);
    assert_eq!(q::<i64>(&mut c, &["INCRBY", "n", "41"]), 42);
    assert_eq!(q::<String>(&mut c, &["INCRBYFLOAT", "n", "0.5"]), "42.5");
    assert_eq!(q::<String>(&mut d, &["GET", "n"]), "42.5");

    assert_eq!(q::<i64>(&mut c, &["APPEND", "ap", "Hello"]), 5);
    assert_eq!(q::<i64>(&mut c, &["APPEND", "ap", " World"]), 11);
    assert_eq!(q::<String>(&mut c, &["GETRANGE", "ap", "0", "4"]), "Hello");
    assert_eq!(q::<String>(&mut c, &["GETRANGE", "ap", "-5", "-1"]), "World");
    assert_eq!(q::<i64>(&mut c, &["STRLEN", "ap"]), 11);
    assert_eq!(q::<i64>(&mut c, &["STRLEN", "missing"]), 0);

    assert_eq!(q::<i64>(&mut c, &["SETNX", "nx", "1"]), 1);
    assert_eq!(q::<i64>(&mut c, &["SETNX", "nx", "2"]), 0);
    assert_eq!(q::<String>(&mut c, &["GET", "nx"]), "1");

    assert_eq!(q::<Option<String>>(&mut c, &["GETDEL", "nx"]), Some("1".into()));
    assert_eq!(q::<Option<String>>(&mut c, &["GETDEL", "nx"]), None);
    assert_eq!(q::<i64>(&mut d, &["EXISTS", "nx"]), 0);

    // Binary-safe values pass through untouched.
    let bin: Vec<u8> = (0..=255u8).collect();
    let _: () = redis::cmd("SET").arg("bin").arg(&bin).query(&mut c).unwrap();
    let back: Vec<u8> = redis::cmd("GET").arg("bin").query(&mut c).unwrap();
    assert_eq!(back, bin);
}

#[test]
fn keys() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    for k in ["k1", "k2", "k3"] {
        let _: () = q(&mut c, &["SET", k, "v"]);
    }
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "k1", "k2", "nope"]), 2);
    assert_eq!(q::<i64>(&mut c, &["DEL", "k1", "nope"]), 1);
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "k1"]), 0);

    assert_eq!(q::<i64>(&mut c, &["TTL", "k2"]), -1);
    assert_eq!(q::<i64>(&mut c, &["TTL", "nope"]), -2);
    assert_eq!(q::<i64>(&mut c, &["EXPIRE", "k2", "100"]), 1);
    assert_eq!(q::<i64>(&mut c, &["EXPIRE", "nope", "100"]), 0);
    let ttl: i64 = q(&mut c, &["TTL", "k2"]);
    assert!((99..=100).contains(&ttl), "ttl {ttl}");
    let pttl: i64 = q(&mut c, &["PTTL", "k2"]);
    assert!((98_000..=100_000).contains(&pttl), "pttl {pttl}");
    assert_eq!(q::<i64>(&mut c, &["PERSIST", "k2"]), 1);
    assert_eq!(q::<i64>(&mut c, &["TTL", "k2"]), -1);
    assert_eq!(q::<i64>(&mut d, &["TTL", "k2"]), -1);

    let _: () = q(&mut c, &["LPUSH", "alist", "x"]);
    let _: () = q(&mut c, &["HSET", "ahash", "f", "v"]);
    let _: () = q(&mut c, &["SADD", "aset", "m"]);
    let _: () = q(&mut c, &["ZADD", "azset", "1", "m"]);
    for (k, t) in [("k2", "string"), ("alist", "list"), ("ahash", "hash"), ("aset", "set"), ("azset", "zset")] {
        assert_eq!(q::<String>(&mut c, &["TYPE", k]), t);
    }
    assert_eq!(q::<String>(&mut c, &["TYPE", "nope"]), "none");

    assert_eq!(q::<Value>(&mut c, &["RENAME", "k2", "renamed"]), Value::Okay);
    assert_eq!(q::<i64>(&mut d, &["EXISTS", "k2", "renamed"]), 1);
    assert_eq!(query_err(&cmd(&["RENAME", "nope", "x"]), &mut c), "ERR no such key");

    // SCAN with MATCH, iterated to the end, and KEYS.
    for i in 0..50 {
        let _: () = q(&mut c, &["SET", &format!("scan:{i}"), "v"]);
    }
    let mut seen = HashSet::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, batch): (String, Vec<String>) = q(&mut c, &["SCAN", &cursor, "MATCH", "scan:*", "COUNT", "7"]);
        seen.extend(batch);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let expected: HashSet<String> = (0..50).map(|i| format!("scan:{i}")).collect();
    assert_eq!(seen, expected);
    let mut keys: Vec<String> = q(&mut c, &["KEYS", "scan:*"]);
    let mut direct: Vec<String> = q(&mut d, &["KEYS", "scan:*"]);
    keys.sort();
    direct.sort();
    assert_eq!(keys.len(), 50);
    assert_eq!(keys, direct);
}

#[test]
fn hashes() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    assert_eq!(q::<i64>(&mut c, &["HSET", "h", "a", "1", "b", "2", "c", "3"]), 3);
    assert_eq!(q::<i64>(&mut c, &["HSET", "h", "a", "10"]), 0);
    assert_eq!(q::<String>(&mut c, &["HGET", "h", "a"]), "10");
    assert_eq!(q::<Option<String>>(&mut c, &["HGET", "h", "zz"]), None);
    assert_eq!(
        q::<Vec<Option<String>>>(&mut c, &["HMGET", "h", "a", "zz", "b"]),
        vec![Some("10".into()), None, Some("2".into())]
    );
    let all: HashMap<String, String> = q(&mut c, &["HGETALL", "h"]);
    let direct: HashMap<String, String> = q(&mut d, &["HGETALL", "h"]);
    assert_eq!(all, direct);
    assert_eq!(all.len(), 3);
    assert_eq!(all["c"], "3");
    assert_eq!(q::<HashMap<String, String>>(&mut c, &["HGETALL", "nope"]), HashMap::new());
    assert_eq!(q::<i64>(&mut c, &["HINCRBY", "h", "b", "5"]), 7);
    assert_eq!(q::<i64>(&mut c, &["HINCRBY", "h", "new", "-3"]), -3);
    assert_eq!(q::<i64>(&mut c, &["HDEL", "h", "new", "zz"]), 1);
    assert_eq!(q::<i64>(&mut c, &["HLEN", "h"]), 3);
    let mut keys: Vec<String> = q(&mut c, &["HKEYS", "h"]);
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
    let mut vals: Vec<String> = q(&mut c, &["HVALS", "h"]);
    vals.sort();
    assert_eq!(vals, ["10", "3", "7"]);
}

#[test]
fn lists() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    assert_eq!(q::<i64>(&mut c, &["RPUSH", "l", "b", "c"]), 2);
    assert_eq!(q::<i64>(&mut c, &["LPUSH", "l", "a", "z"]), 4);
    assert_eq!(q::<Vec<String>>(&mut c, &["LRANGE", "l", "0", "-1"]), ["z", "a", "b", "c"]);
    assert_eq!(q::<i64>(&mut c, &["LLEN", "l"]), 4);
    assert_eq!(q::<String>(&mut c, &["LPOP", "l"]), "z");
    assert_eq!(q::<String>(&mut c, &["RPOP", "l"]), "c");
    assert_eq!(q::<Vec<String>>(&mut c, &["LPOP", "l", "5"]), ["a", "b"]);
    assert_eq!(q::<Option<String>>(&mut c, &["LPOP", "l"]), None);
    assert_eq!(q::<i64>(&mut c, &["LLEN", "l"]), 0);

    let _: () = q(&mut c, &["RPUSH", "src", "1", "2", "3"]);
    assert_eq!(q::<String>(&mut c, &["LMOVE", "src", "dst", "LEFT", "RIGHT"]), "1");
    assert_eq!(q::<String>(&mut c, &["LMOVE", "src", "dst", "RIGHT", "LEFT"]), "3");
    assert_eq!(q::<Vec<String>>(&mut d, &["LRANGE", "dst", "0", "-1"]), ["3", "1"]);
    assert_eq!(q::<Vec<String>>(&mut d, &["LRANGE", "src", "0", "-1"]), ["2"]);
}

#[test]
fn sets() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    assert_eq!(q::<i64>(&mut c, &["SADD", "s1", "a", "b", "c", "a"]), 3);
    assert_eq!(q::<i64>(&mut c, &["SADD", "s2", "b", "c", "d"]), 3);
    assert_eq!(q::<i64>(&mut c, &["SREM", "s1", "a", "zz"]), 1);
    assert_eq!(q::<HashSet<String>>(&mut c, &["SMEMBERS", "s1"]), HashSet::from(["b".into(), "c".into()]));
    assert_eq!(q::<i64>(&mut c, &["SISMEMBER", "s1", "b"]), 1);
    assert_eq!(q::<i64>(&mut c, &["SISMEMBER", "s1", "a"]), 0);
    assert_eq!(q::<i64>(&mut c, &["SCARD", "s2"]), 3);
    let inter: HashSet<String> = q(&mut c, &["SINTER", "s1", "s2"]);
    assert_eq!(inter, HashSet::from(["b".into(), "c".into()]));
    assert_eq!(inter, q::<HashSet<String>>(&mut d, &["SINTER", "s1", "s2"]));
}

#[test]
fn sorted_sets() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    assert_eq!(q::<i64>(&mut c, &["ZADD", "z", "1", "a", "2", "b", "3.5", "c"]), 3);
    assert_eq!(q::<f64>(&mut c, &["ZSCORE", "z", "c"]), 3.5);
    assert_eq!(q::<Option<f64>>(&mut c, &["ZSCORE", "z", "nope"]), None);
    assert_eq!(
        q::<Vec<(String, f64)>>(&mut c, &["ZRANGE", "z", "0", "-1", "WITHSCORES"]),
        vec![("a".into(), 1.0), ("b".into(), 2.0), ("c".into(), 3.5)]
    );
    assert_eq!(q::<f64>(&mut c, &["ZINCRBY", "z", "10", "a"]), 11.0);
    assert_eq!(q::<Vec<String>>(&mut c, &["ZRANGE", "z", "0", "-1"]), ["b", "c", "a"]);
    assert_eq!(q::<i64>(&mut c, &["ZCARD", "z"]), 3);
    assert_eq!(q::<i64>(&mut c, &["ZREM", "z", "b", "nope"]), 1);
    assert_eq!(q::<Vec<String>>(&mut c, &["ZRANGEBYSCORE", "z", "3", "20"]), ["c", "a"]);
    assert_eq!(q::<Vec<String>>(&mut c, &["ZRANGEBYSCORE", "z", "(3.5", "+inf"]), ["a"]);
    let via: Value = q(&mut c, &["ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES"]);
    let direct: Value = q(&mut d, &["ZRANGEBYSCORE", "z", "-inf", "+inf", "WITHSCORES"]);
    assert_eq!(via, direct);
}

#[test]
fn streams() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    assert_eq!(q::<String>(&mut c, &["XADD", "st", "1-1", "f", "a"]), "1-1");
    assert_eq!(q::<String>(&mut c, &["XADD", "st", "2-1", "f", "b", "g", "c"]), "2-1");
    let auto: String = q(&mut c, &["XADD", "st", "*", "f", "c"]);
    assert!(auto.contains('-'), "{auto}");
    assert_eq!(q::<i64>(&mut c, &["XLEN", "st"]), 3);

    type Entries = Vec<(String, Vec<String>)>;
    let range: Entries = q(&mut c, &["XRANGE", "st", "-", "2-1"]);
    assert_eq!(
        range,
        vec![
            ("1-1".into(), vec!["f".into(), "a".into()]),
            ("2-1".into(), vec!["f".into(), "b".into(), "g".into(), "c".into()])
        ]
    );
    let read: Vec<(String, Entries)> = q(&mut c, &["XREAD", "COUNT", "10", "STREAMS", "st", "1-1"]);
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].0, "st");
    assert_eq!(read[0].1.len(), 2);
    assert_eq!(read[0].1[0].0, "2-1");
    assert_eq!(read[0].1[1].0, auto);
    assert_eq!(q::<Value>(&mut c, &["XREAD", "STREAMS", "st", "$"]), Value::Nil);
    let via: Value = q(&mut c, &["XRANGE", "st", "-", "+"]);
    assert_eq!(via, q::<Value>(&mut d, &["XRANGE", "st", "-", "+"]));
}

#[test]
fn hyperloglog_and_bitmaps() {
    let (_redis, proxy) = setup();
    let mut c = proxy.conn();

    assert_eq!(q::<i64>(&mut c, &["PFADD", "hll", "a", "b", "c"]), 1);
    assert_eq!(q::<i64>(&mut c, &["PFADD", "hll", "a"]), 0);
    assert_eq!(q::<i64>(&mut c, &["PFCOUNT", "hll"]), 3);

    assert_eq!(q::<i64>(&mut c, &["SETBIT", "bits", "7", "1"]), 0);
    assert_eq!(q::<i64>(&mut c, &["SETBIT", "bits", "100", "1"]), 0);
    assert_eq!(q::<i64>(&mut c, &["SETBIT", "bits", "7", "1"]), 1);
    assert_eq!(q::<i64>(&mut c, &["GETBIT", "bits", "7"]), 1);
    assert_eq!(q::<i64>(&mut c, &["GETBIT", "bits", "8"]), 0);
    assert_eq!(q::<i64>(&mut c, &["BITCOUNT", "bits"]), 2);
    assert_eq!(q::<i64>(&mut c, &["BITCOUNT", "bits", "0", "0"]), 1);
}

#[test]
fn scripting() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    let echo = "return {KEYS[1], KEYS[2], ARGV[1], ARGV[2]}";
    assert_eq!(q::<Vec<String>>(&mut c, &["EVAL", echo, "2", "ka", "kb", "x", "y"]), ["ka", "kb", "x", "y"]);
    let set = "redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCRBY', KEYS[2], ARGV[2])";
    assert_eq!(q::<i64>(&mut c, &["EVAL", set, "2", "ek", "ecount", "hello", "5"]), 5);
    assert_eq!(q::<String>(&mut d, &["GET", "ek"]), "hello");

    let sha: String = q(&mut c, &["SCRIPT", "LOAD", set]);
    assert_eq!(sha.len(), 40);
    assert_eq!(q::<i64>(&mut c, &["EVALSHA", &sha, "2", "ek", "ecount", "bye", "2"]), 7);
    assert_eq!(q::<String>(&mut d, &["GET", "ek"]), "bye");
    let missing = query_err(&cmd(&["EVALSHA", &"0".repeat(40), "0"]), &mut c);
    assert!(missing.starts_with("NOSCRIPT"), "{missing}");
}

/// SCRIPT DEBUG turns the connection it runs on into a Lua debugger
/// session for its next EVAL (SYNC: one that blocks the whole server): on
/// a shared upstream connection another client's EVAL would get the
/// debugger's output. Refused; every client's scripts still run.
#[test]
fn script_debug_is_refused_and_scripts_run_as_usual() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    for mode in ["YES", "SYNC", "NO"] {
        assert_eq!(raw.call(&["SCRIPT", "DEBUG", mode]), "-ERR 'script|debug' is not supported through nearcache\r\n");
    }
    let mut others: Vec<_> = (0..8).map(|_| proxy.conn()).collect();
    for c in &mut others {
        assert_eq!(q::<i64>(c, &["EVAL", "return 1", "0"]), 1);
    }
    assert_eq!(raw.call(&["EVAL", "return 2", "0"]), ":2\r\n");
}

#[test]
fn error_replies() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    let _: () = q(&mut c, &["SET", "str", "v"]);
    let wrongtype = query_err(&cmd(&["LPUSH", "str", "x"]), &mut c);
    assert_eq!(wrongtype, "WRONGTYPE Operation against a key holding the wrong kind of value");
    assert_eq!(wrongtype, query_err(&cmd(&["LPUSH", "str", "x"]), &mut d));

    let arity = query_err(&redis::cmd("GET"), &mut c);
    assert_eq!(arity, "ERR wrong number of arguments for 'get' command");
    assert_eq!(arity, query_err(&redis::cmd("GET"), &mut d));
    let arity = query_err(&cmd(&["GET", "a", "b"]), &mut c);
    assert_eq!(arity, "ERR wrong number of arguments for 'get' command");

    let unknown = query_err(&cmd(&["NOSUCHCMD", "a", "b"]), &mut c);
    assert!(unknown.starts_with("ERR unknown command 'NOSUCHCMD'"), "{unknown}");
    assert_eq!(unknown, query_err(&cmd(&["NOSUCHCMD", "a", "b"]), &mut d));

    let not_int = query_err(&cmd(&["INCR", "str"]), &mut c);
    assert_eq!(not_int, "ERR value is not an integer or out of range");

    // The connection is still fine after errors.
    assert_eq!(q::<String>(&mut c, &["GET", "str"]), "v");
}

#[test]
fn pipeline_of_1000_commands_in_order() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        match i % 4 {
            0 => pipe.cmd("SET").arg(format!("p{i}")).arg(i),
            1 => pipe.cmd("INCR").arg("pcounter"),
            2 => pipe.cmd("GET").arg(format!("p{}", i - 2)),
            _ => pipe.cmd("GET").arg("pcounter"),
        };
    }
    let replies: Vec<Value> = pipe.query(&mut c).unwrap();
    assert_eq!(replies.len(), 1000);
    for (i, reply) in replies.iter().enumerate() {
        let expected = match i % 4 {
            0 => Value::Okay,
            1 => Value::Int((i / 4 + 1) as i64),
            2 => Value::BulkString((i - 2).to_string().into_bytes()),
            _ => Value::BulkString((i / 4 + 1).to_string().into_bytes()),
        };
        assert_eq!(reply, &expected, "reply {i}");
    }
    assert_eq!(q::<i64>(&mut redis.direct(), &["GET", "pcounter"]), 250);
}

#[test]
fn concurrent_clients_incr_exact() {
    let (redis, proxy) = setup();
    let threads: Vec<_> = (0..20)
        .map(|_| {
            let client = proxy.client();
            std::thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                for _ in 0..200 {
                    let _: i64 = redis::cmd("INCR").arg("shared").query(&mut c).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(q::<i64>(&mut proxy.conn(), &["GET", "shared"]), 4000);
    assert_eq!(q::<i64>(&mut redis.direct(), &["GET", "shared"]), 4000);
}

#[test]
fn clients_spread_over_worker_threads_are_all_served_and_drained_on_shutdown() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, "[server]\nworker_threads = 3\n");
    wait_ready(&proxy);
    // Twelve clients: the listener deals them to the three workers in turn.
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let client = proxy.client();
            std::thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                let key = format!("w{i}");
                for n in 0..100 {
                    let _: () = redis::cmd("SET").arg(&key).arg(n).query(&mut c).unwrap();
                    let got: i64 = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
                    assert_eq!(got, n, "{key}: a read after its own write");
                    let _: i64 = redis::cmd("INCR").arg("across-workers").query(&mut c).unwrap();
                }
                // State on a dedicated connection works on every worker.
                let (a, b): (i64, i64) = redis::pipe().atomic().incr(&key, 1).incr(&key, 1).query(&mut c).unwrap();
                assert_eq!((a, b), (100, 101));
                c
            })
        })
        .collect();
    let mut open: Vec<Connection> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(q::<i64>(&mut redis.direct(), &["GET", "across-workers"]), 1200);
    let (_, clients) = proxy.admin_get("/clients");
    assert!(clients.starts_with("{\"total\":12"), "{clients}");
    // A graceful stop ends every worker's sessions and returns.
    let started = Instant::now();
    proxy.stop();
    assert!(started.elapsed() < Duration::from_secs(5), "shutdown took {:?}", started.elapsed());
    assert!(open.iter_mut().all(|c| redis::cmd("PING").query::<String>(c).is_err()));
}

/// As in Redis, a SUBSCRIBE queued in a transaction subscribes at EXEC (in
/// both protocols); one queued and discarded does not.
#[test]
fn subscribe_inside_multi_takes_effect_at_exec() {
    let (redis, proxy) = setup();
    let mut publisher = redis.direct();
    for (hello, exec) in [
        ("2", "*1\r\n*3\r\n$9\r\nsubscribe\r\n$2\r\nms\r\n:1\r\n"),
        ("3", "*1\r\n>3\r\n$9\r\nsubscribe\r\n$2\r\nms\r\n:1\r\n"),
    ] {
        let mut discarded = proxy.raw();
        assert_eq!(discarded.call(&["MULTI"]), "+OK\r\n");
        assert_eq!(discarded.call(&["SUBSCRIBE", "gone"]), "+QUEUED\r\n");
        assert_eq!(discarded.call(&["DISCARD"]), "+OK\r\n");
        assert_eq!(discarded.call(&["GET", "x"]), "$-1\r\n");

        let mut raw = proxy.raw();
        assert!(raw.call(&["HELLO", hello]).len() > 10);
        assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
        assert_eq!(raw.call(&["SUBSCRIBE", "ms"]), "+QUEUED\r\n");
        assert_eq!(raw.call(&["EXEC"]), exec, "RESP{hello}");
        assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "ms", "hi"]), 1, "RESP{hello}: not subscribed after EXEC");
        let message = String::from_utf8_lossy(&raw.read_frame()).into_owned();
        assert!(message.ends_with("$7\r\nmessage\r\n$2\r\nms\r\n$2\r\nhi\r\n"), "{message:?}");
        assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "gone", "x"]), 0, "a discarded SUBSCRIBE took effect");
    }
}

#[test]
fn multi_exec_and_discard() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    assert_eq!(q::<Value>(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(q::<Value>(&mut c, &["SET", "t", "1"]), Value::SimpleString("QUEUED".into()));
    assert_eq!(q::<Value>(&mut c, &["INCR", "t"]), Value::SimpleString("QUEUED".into()));
    assert_eq!(q::<Value>(&mut c, &["GET", "t"]), Value::SimpleString("QUEUED".into()));
    // Nothing applied before EXEC.
    assert_eq!(q::<Option<String>>(&mut d, &["GET", "t"]), None);
    let exec: Value = q(&mut c, &["EXEC"]);
    assert_eq!(exec, Value::Array(vec![Value::Okay, Value::Int(2), Value::BulkString(b"2".to_vec())]));
    assert_eq!(q::<String>(&mut d, &["GET", "t"]), "2");

    // Errors inside a transaction come back in EXEC's array (raw, because
    // the redis crate turns a nested error into an Err).
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["LPUSH", "t", "x"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["INCR", "t"]), "+QUEUED\r\n");
    assert_eq!(
        raw.call(&["EXEC"]),
        "*2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n:3\r\n"
    );
    // A command refused while queueing aborts the transaction.
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["NOSUCHCMD"]), "-ERR unknown command 'NOSUCHCMD', with args beginning with: \r\n");
    assert_eq!(raw.call(&["INCR", "t"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(raw.call(&["GET", "t"]), "$1\r\n3\r\n");

    assert_eq!(q::<Value>(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(q::<Value>(&mut c, &["SET", "t", "discarded"]), Value::SimpleString("QUEUED".into()));
    assert_eq!(q::<Value>(&mut c, &["DISCARD"]), Value::Okay);
    assert_eq!(q::<String>(&mut d, &["GET", "t"]), "3");
    assert_eq!(query_err(&redis::cmd("EXEC"), &mut c), "ERR EXEC without MULTI");
    assert_eq!(query_err(&redis::cmd("DISCARD"), &mut c), "ERR DISCARD without MULTI");

    // The connection is back to normal.
    assert_eq!(q::<String>(&mut c, &["GET", "t"]), "3");

    // MULTI inside MULTI is refused by the server, in its own words and
    // with its own outcome (Redis goes on with the transaction, Valkey
    // aborts it): through the proxy, exactly the same.
    let nested = |con: &mut redis::Connection, key: &str| {
        let _: () = q(con, &["SET", key, "3"]);
        assert_eq!(q::<Value>(con, &["MULTI"]), Value::Okay);
        let refused = query_err(&redis::cmd("MULTI"), con);
        assert_eq!(q::<Value>(con, &["INCR", key]), Value::SimpleString("QUEUED".into()));
        let exec = redis::cmd("EXEC").query::<Value>(con).map_err(|e| e.to_string());
        (refused, exec, q::<String>(con, &["GET", key]))
    };
    assert_eq!(nested(&mut c, "t"), nested(&mut d, "t-direct"));
}

#[test]
fn exec_without_multi_on_fresh_connection() {
    let (_redis, proxy) = setup();
    let mut c = proxy.conn();
    assert_eq!(query_err(&redis::cmd("EXEC"), &mut c), "ERR EXEC without MULTI");
    assert_eq!(query_err(&redis::cmd("DISCARD"), &mut c), "ERR DISCARD without MULTI");
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
}

#[test]
fn watch_conflict_and_no_conflict() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut other = proxy.conn();

    let _: () = q(&mut c, &["SET", "w", "1"]);
    // Conflict: another client changes the watched key.
    assert_eq!(q::<Value>(&mut c, &["WATCH", "w"]), Value::Okay);
    let _: () = q(&mut other, &["SET", "w", "changed"]);
    assert_eq!(q::<Value>(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(q::<Value>(&mut c, &["SET", "w", "mine"]), Value::SimpleString("QUEUED".into()));
    assert_eq!(q::<Value>(&mut c, &["EXEC"]), Value::Nil);
    assert_eq!(q::<String>(&mut redis.direct(), &["GET", "w"]), "changed");

    // No conflict.
    assert_eq!(q::<Value>(&mut c, &["WATCH", "w"]), Value::Okay);
    let _: String = q(&mut other, &["GET", "w"]);
    assert_eq!(q::<Value>(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(q::<Value>(&mut c, &["SET", "w", "mine"]), Value::SimpleString("QUEUED".into()));
    assert_eq!(q::<Value>(&mut c, &["EXEC"]), Value::Array(vec![Value::Okay]));
    assert_eq!(q::<String>(&mut redis.direct(), &["GET", "w"]), "mine");

    // UNWATCH drops the watch: a later change does not abort.
    assert_eq!(q::<Value>(&mut c, &["WATCH", "w"]), Value::Okay);
    assert_eq!(q::<Value>(&mut c, &["UNWATCH"]), Value::Okay);
    let _: () = q(&mut other, &["SET", "w", "again"]);
    assert_eq!(q::<Value>(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(q::<Value>(&mut c, &["GET", "w"]), Value::SimpleString("QUEUED".into()));
    assert_eq!(q::<Value>(&mut c, &["EXEC"]), Value::Array(vec![Value::BulkString(b"again".to_vec())]));
}

#[test]
fn blpop_woken_by_another_client() {
    let (_redis, proxy) = setup();
    let client = proxy.client();
    let waiter = std::thread::spawn(move || {
        let mut c = client.get_connection().unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let started = Instant::now();
        let got: Option<(String, String)> = redis::cmd("BLPOP").arg("queue").arg(5).query(&mut c).unwrap();
        (got, started.elapsed(), c)
    });
    std::thread::sleep(Duration::from_millis(300));
    let mut pusher = proxy.conn();
    assert_eq!(q::<i64>(&mut pusher, &["RPUSH", "queue", "job1"]), 1);
    let (got, waited, mut c) = waiter.join().unwrap();
    assert_eq!(got, Some(("queue".into(), "job1".into())));
    assert!(waited < Duration::from_secs(4), "woken after {waited:?}");
    assert_eq!(q::<i64>(&mut pusher, &["LLEN", "queue"]), 0);
    // The connection that blocked works normally afterwards.
    assert_eq!(q::<String>(&mut c, &["PING"]), "PONG");
    let _: () = q(&mut c, &["SET", "after", "1"]);
    assert_eq!(q::<String>(&mut c, &["GET", "after"]), "1");
}

#[test]
fn blpop_timeout_returns_nil() {
    let (_redis, proxy) = setup();
    let mut c = proxy.conn();
    let started = Instant::now();
    let got: Value = q(&mut c, &["BLPOP", "empty", "0.5"]);
    let waited = started.elapsed();
    assert_eq!(got, Value::Nil);
    assert!(waited >= Duration::from_millis(450), "returned after {waited:?}");
    assert!(waited < Duration::from_secs(3), "returned after {waited:?}");
    assert_eq!(q::<String>(&mut c, &["PING"]), "PONG");
}

#[test]
fn blocked_client_does_not_block_others() {
    let (_redis, proxy) = setup();
    let blocked: Vec<_> = (0..3)
        .map(|i| {
            let client = proxy.client();
            std::thread::spawn(move || {
                let mut c = client.get_connection().unwrap();
                let got: Value = redis::cmd("BLPOP").arg(format!("never{i}")).arg(2).query(&mut c).unwrap();
                got
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let mut c = proxy.conn();
    let mut worst = Duration::ZERO;
    for i in 0..100 {
        let started = Instant::now();
        let _: () = q(&mut c, &["SET", "free", &i.to_string()]);
        assert_eq!(q::<i64>(&mut c, &["GET", "free"]), i);
        worst = worst.max(started.elapsed());
    }
    assert!(worst < Duration::from_millis(200), "slowest round trip {worst:?} while clients are blocked");
    // A second connection also works (new sessions share the pool).
    assert_eq!(q::<String>(&mut proxy.conn(), &["PING"]), "PONG");
    for t in blocked {
        assert_eq!(t.join().unwrap(), Value::Nil);
    }
}

#[test]
fn pubsub_subscribe_and_publish() {
    let (_redis, proxy) = setup();
    let mut sub_con = proxy.conn();
    let mut publisher = proxy.conn();
    let mut sub = sub_con.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sub.subscribe("news").unwrap();
    sub.subscribe("sport").unwrap();
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "news", "hello"]), 1);
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "sport", "goal"]), 1);
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "other", "nobody"]), 0);
    let m = sub.get_message().unwrap();
    assert_eq!((m.get_channel_name(), m.get_payload::<String>().unwrap()), ("news", "hello".to_string()));
    let m = sub.get_message().unwrap();
    assert_eq!((m.get_channel_name(), m.get_payload::<String>().unwrap()), ("sport", "goal".to_string()));

    let numsub: Value = q(&mut publisher, &["PUBSUB", "NUMSUB", "news", "sport", "other"]);
    assert_eq!(
        numsub,
        Value::Array(vec![
            Value::BulkString(b"news".to_vec()),
            Value::Int(1),
            Value::BulkString(b"sport".to_vec()),
            Value::Int(1),
            Value::BulkString(b"other".to_vec()),
            Value::Int(0),
        ])
    );
}

#[test]
fn pubsub_pattern_messages() {
    let (_redis, proxy) = setup();
    let mut sub_con = proxy.conn();
    let mut publisher = proxy.conn();
    let mut sub = sub_con.as_pubsub();
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sub.psubscribe("ev.*").unwrap();
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "ev.login", "alice"]), 1);
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "other.login", "bob"]), 0);
    let m = sub.get_message().unwrap();
    assert!(m.from_pattern());
    assert_eq!(m.get_pattern::<String>().unwrap(), "ev.*");
    assert_eq!(m.get_channel_name(), "ev.login");
    assert_eq!(m.get_payload::<String>().unwrap(), "alice");
    assert_eq!(q::<i64>(&mut publisher, &["PUBSUB", "NUMPAT"]), 1);
}

#[test]
fn pubsub_unsubscribe_returns_to_normal() {
    let (_redis, proxy) = setup();
    let mut publisher = proxy.conn();
    let _: () = q(&mut publisher, &["SET", "k", "v"]);
    let mut raw = proxy.raw();
    raw.cmd(&["SUBSCRIBE", "a", "b"]);
    assert_eq!(raw.read_frame(), b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n");
    assert_eq!(raw.read_frame(), b"*3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n");
    raw.cmd(&["PSUBSCRIBE", "p*"]);
    assert_eq!(raw.read_frame(), b"*3\r\n$10\r\npsubscribe\r\n$2\r\np*\r\n:3\r\n");
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "a", "m1"]), 1);
    assert_eq!(raw.read_frame(), b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nm1\r\n");
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "px", "m2"]), 1);
    assert_eq!(raw.read_frame(), b"*4\r\n$8\r\npmessage\r\n$2\r\np*\r\n$2\r\npx\r\n$2\r\nm2\r\n");
    // RESP2 subscribed mode allows PING, answered as an array.
    assert_eq!(raw.call(&["PING"]), "*2\r\n$4\r\npong\r\n$0\r\n\r\n");

    raw.cmd(&["UNSUBSCRIBE"]);
    // Which channel goes first is Redis' choice; the counts follow the order.
    let first = String::from_utf8(raw.read_frame()).unwrap();
    let second = String::from_utf8(raw.read_frame()).unwrap();
    let mut channels = Vec::new();
    for (frame, left) in [(&first, 2), (&second, 1)] {
        let channel = frame
            .strip_prefix("*3\r\n$11\r\nunsubscribe\r\n$1\r\n")
            .and_then(|rest| rest.strip_suffix(&format!("\r\n:{left}\r\n")))
            .unwrap_or_else(|| panic!("unexpected confirmation {frame:?}"));
        channels.push(channel.to_string());
    }
    channels.sort();
    assert_eq!(channels, ["a", "b"]);
    assert_eq!(raw.call(&["PUNSUBSCRIBE"]), "*3\r\n$12\r\npunsubscribe\r\n$2\r\np*\r\n:0\r\n");
    // Back to normal: ordinary commands and replies.
    assert_eq!(raw.call(&["GET", "k"]), "$1\r\nv\r\n");
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "a", "late"]), 0);
    assert_eq!(raw.call(&["SET", "k", "w"]), "+OK\r\n");
    assert_eq!(q::<String>(&mut publisher, &["GET", "k"]), "w");
}

#[test]
fn pubsub_via_redis_crate_then_normal_commands() {
    let (_redis, proxy) = setup();
    let mut con = proxy.conn();
    let mut publisher = proxy.conn();
    {
        let mut sub = con.as_pubsub();
        sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        sub.subscribe("c1").unwrap();
        assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "c1", "x"]), 1);
        assert_eq!(sub.get_message().unwrap().get_payload::<String>().unwrap(), "x");
        sub.unsubscribe("c1").unwrap();
    }
    let _: () = q(&mut con, &["SET", "after-sub", "ok"]);
    assert_eq!(q::<String>(&mut con, &["GET", "after-sub"]), "ok");
    assert_eq!(q::<i64>(&mut publisher, &["PUBLISH", "c1", "x"]), 0);
}

#[test]
fn select_database() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut other = proxy.conn();
    let mut d = redis.direct();

    let _: () = q(&mut c, &["SET", "where", "db0"]);
    assert_eq!(q::<Value>(&mut c, &["SELECT", "1"]), Value::Okay);
    assert_eq!(q::<Option<String>>(&mut c, &["GET", "where"]), None);
    let _: () = q(&mut c, &["SET", "where", "db1"]);
    assert_eq!(q::<String>(&mut c, &["GET", "where"]), "db1");
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 1);

    // Redis itself agrees: the key is in database 1.
    assert_eq!(q::<String>(&mut d, &["GET", "where"]), "db0");
    let _: () = q(&mut d, &["SELECT", "1"]);
    assert_eq!(q::<String>(&mut d, &["GET", "where"]), "db1");
    let _: () = q(&mut d, &["SELECT", "0"]);

    // Another proxy client is still on database 0.
    assert_eq!(q::<String>(&mut other, &["GET", "where"]), "db0");

    // Several commands pipelined on database 1.
    let (a, b): (String, i64) =
        redis::pipe().cmd("GET").arg("where").cmd("INCR").arg("db1counter").query(&mut c).unwrap();
    assert_eq!((a.as_str(), b), ("db1", 1));

    assert_eq!(q::<Value>(&mut c, &["SELECT", "0"]), Value::Okay);
    assert_eq!(q::<String>(&mut c, &["GET", "where"]), "db0");
    assert_eq!(q::<i64>(&mut c, &["EXISTS", "db1counter"]), 0);
    let invalid = query_err(&cmd(&["SELECT", "notanumber"]), &mut c);
    assert_eq!(invalid, "ERR value is not an integer or out of range");
    let out_of_range = query_err(&cmd(&["SELECT", "100000"]), &mut c);
    assert_eq!(out_of_range, query_err(&cmd(&["SELECT", "100000"]), &mut d));
    assert_eq!(q::<String>(&mut c, &["GET", "where"]), "db0");
}

/// A CLIENT subcommand the proxy does not know (a newer server's, as
/// Valkey's CLIENT CAPA) may set state on the connection it runs on: it
/// runs on the client's own upstream connection, kept for the session,
/// never on a shared one. Proven by killing the connection that then
/// serves the client's CLIENT TRACKINGINFO: the client's connection ends,
/// as a direct client's would, and the others are untouched.
#[test]
fn an_unknown_client_subcommand_runs_on_the_clients_own_connection() {
    let (redis, proxy) = setup();
    let mut a = proxy.raw();
    let refused = a.call(&["CLIENT", "NO-SUCH-SUBCOMMAND", "x"]);
    assert!(refused.starts_with("-ERR unknown subcommand"), "{refused:?}");
    assert!(a.call(&["CLIENT", "TRACKINGINFO"]).starts_with('*'));
    let mut d = redis.direct();
    let list: String = q(&mut d, &["CLIENT", "LIST"]);
    let own: Vec<&str> = list
        .lines()
        .filter(|l| l.contains(" cmd=client|trackinginfo "))
        .filter_map(|l| l.split(' ').next()?.strip_prefix("id="))
        .collect();
    assert_eq!(own.len(), 1, "{list}");
    assert_eq!(q::<i64>(&mut d, &["CLIENT", "KILL", "ID", own[0]]), 1);
    a.cmd(&["GET", "k"]);
    let ended = a.is_closed() || a.try_read_frame().is_some_and(|f| f.starts_with(b"-")) && a.is_closed();
    assert!(ended, "the client outlived its own upstream connection");
    let mut b = proxy.conn();
    assert_eq!(q::<Option<String>>(&mut b, &["GET", "k"]), None);
}

#[test]
fn client_and_server_commands() {
    let (redis, proxy) = setup();
    let mut c = proxy.conn();
    let mut d = redis.direct();

    assert_eq!(q::<Value>(&mut c, &["CLIENT", "SETNAME", "worker-1"]), Value::Okay);
    assert_eq!(q::<String>(&mut c, &["CLIENT", "GETNAME"]), "worker-1");
    assert_eq!(q::<Option<String>>(&mut proxy.conn(), &["CLIENT", "GETNAME"]), None);
    let bad = query_err(&cmd(&["CLIENT", "SETNAME", "has space"]), &mut c);
    assert_eq!(bad, query_err(&cmd(&["CLIENT", "SETNAME", "has space"]), &mut d));
    let id: Value = q(&mut c, &["CLIENT", "ID"]);
    let Value::Int(id) = id else { panic!("CLIENT ID: {id:?}") };
    assert!(id > 0);
    let id2: i64 = q(&mut proxy.conn(), &["CLIENT", "ID"]);
    assert_ne!(id, id2, "each client has its own id");

    assert_eq!(q::<String>(&mut c, &["ECHO", "hello there"]), "hello there");
    assert_eq!(q::<String>(&mut c, &["PING"]), "PONG");
    assert_eq!(q::<String>(&mut c, &["PING", "with arg"]), "with arg");
    for i in 0..5 {
        let _: () = q(&mut c, &["SET", &format!("dbsize{i}"), "v"]);
    }
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), 5);
    assert_eq!(q::<i64>(&mut c, &["DBSIZE"]), q::<i64>(&mut d, &["DBSIZE"]));
    let info: String = q(&mut c, &["INFO", "server"]);
    assert!(info.contains("# Server"), "{info}");
    assert!(info.contains("redis_version:"), "{info}");
    let count: i64 = q(&mut c, &["COMMAND", "COUNT"]);
    assert!(count > 100, "{count}");
    assert_eq!(count, q::<i64>(&mut d, &["COMMAND", "COUNT"]));
}

#[test]
fn client_reply_off_on_skip() {
    let (redis, proxy) = setup();
    let mut raw = proxy.raw();
    let mut d = redis.direct();

    // SKIP: the next command has no reply, the one after does.
    raw.cmd(&["CLIENT", "REPLY", "SKIP"]);
    raw.cmd(&["SET", "skipped", "1"]);
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    assert_eq!(q::<String>(&mut d, &["GET", "skipped"]), "1");

    // OFF: nothing until ON, which itself answers +OK.
    raw.cmd(&["CLIENT", "REPLY", "OFF"]);
    raw.cmd(&["SET", "off", "2"]);
    raw.cmd(&["GET", "off"]);
    raw.cmd(&["INCR", "offcount"]);
    raw.cmd(&["NOSUCHCMD"]);
    assert_eq!(raw.call(&["CLIENT", "REPLY", "ON"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "off"]), "$1\r\n2\r\n");
    assert_eq!(q::<i64>(&mut d, &["GET", "offcount"]), 1);

    // The same sequence pipelined in one write.
    let mut batch = Vec::new();
    for args in [
        &["CLIENT", "REPLY", "SKIP"][..],
        &["INCR", "p"],
        &["INCR", "p"],
        &["CLIENT", "REPLY", "OFF"],
        &["INCR", "p"],
        &["CLIENT", "REPLY", "ON"],
        &["INCR", "p"],
    ] {
        batch.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            batch.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    raw.send(&batch);
    assert_eq!(raw.read_frame(), b":2\r\n");
    assert_eq!(raw.read_frame(), b"+OK\r\n");
    assert_eq!(raw.read_frame(), b":4\r\n");
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
}

/// QUIT (or CLIENT KILL of itself) under `CLIENT REPLY OFF` gets no
/// reply, as from Redis; the proxy then closes the connection (Redis 7.0
/// to Valkey 8 leave it open, reading nothing more from it).
#[test]
fn quit_under_client_reply_off_closes_without_a_reply() {
    let (redis, proxy) = setup();
    let mut direct = common::direct_raw(&redis);
    direct.stream.set_read_timeout(Some(Duration::from_millis(500))).expect("timeout");
    direct.cmd(&["CLIENT", "REPLY", "OFF"]);
    direct.cmd(&["QUIT"]);
    assert_eq!(direct.try_read_frame(), None, "redis sends nothing");

    let mut raw = proxy.raw();
    raw.cmd(&["CLIENT", "REPLY", "OFF"]);
    raw.cmd(&["QUIT"]);
    assert!(raw.is_closed(), "closed, nothing sent");

    let mut raw = proxy.raw();
    let id = raw.call(&["CLIENT", "ID"]);
    let id = id.trim_start_matches(':').trim_end();
    raw.cmd(&["CLIENT", "REPLY", "OFF"]);
    raw.cmd(&["CLIENT", "KILL", "ID", id, "SKIPME", "no"]);
    assert!(raw.is_closed(), "killed itself: closed, nothing sent");
}

#[test]
fn disconnect_inside_multi_leaves_no_state() {
    let (redis, proxy) = setup();
    {
        let mut raw = proxy.raw();
        assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
        assert_eq!(raw.call(&["SET", "k", "v"]), "+QUEUED\r\n");
        // Dropped here, without EXEC.
    }
    std::thread::sleep(Duration::from_millis(200));
    let mut c = proxy.conn();
    assert_eq!(query_err(&redis::cmd("EXEC"), &mut c), "ERR EXEC without MULTI");
    assert_eq!(q::<Option<String>>(&mut c, &["GET", "k"]), None);
    let _: () = q(&mut c, &["SET", "other", "1"]);
    assert_eq!(q::<String>(&mut c, &["GET", "other"]), "1");
    assert_eq!(q::<Option<String>>(&mut redis.direct(), &["GET", "k"]), None);
    // A raw client too: no QUEUED replies leak from the dropped transaction.
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "x", "1"]), "+OK\r\n");
    assert_eq!(raw.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
}

#[test]
fn disconnect_while_blocked_closes_pinned_connection() {
    let (redis, proxy) = setup();
    {
        let mut raw = proxy.raw();
        raw.cmd(&["BLPOP", "ghostlist", "0"]);
        assert!(eventually(Duration::from_secs(3), || blocked_clients(&redis) == 1), "the BLPOP never reached Redis");
        // Dropped while blocked.
    }
    assert!(
        eventually(Duration::from_secs(3), || blocked_clients(&redis) == 0),
        "Redis still has a client blocked in BLPOP after the proxy client left"
    );
    let mut c = proxy.conn();
    assert_eq!(q::<i64>(&mut c, &["LPUSH", "ghostlist", "item"]), 1);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(q::<i64>(&mut c, &["LLEN", "ghostlist"]), 1, "the pushed item was consumed by a ghost BLPOP");
    assert_eq!(q::<i64>(&mut redis.direct(), &["LLEN", "ghostlist"]), 1);
}

#[test]
fn arity_error_inside_multi_aborts_exec() {
    let (redis, proxy) = setup();
    let mut d = redis.direct();
    // What Redis does: a command refused while queueing (here for its
    // arity) flags the transaction, and EXEC aborts it.
    let mut direct = common::Raw::connect(format!("127.0.0.1:{}", redis.port).parse().unwrap());
    assert_eq!(direct.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(direct.call(&["GET"]), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(direct.call(&["INCR", "counter"]), "+QUEUED\r\n");
    assert_eq!(direct.call(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(q::<Option<i64>>(&mut d, &["GET", "counter"]), None);

    // Through the proxy: the same.
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET"]), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(raw.call(&["INCR", "counter"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(q::<Option<i64>>(&mut d, &["GET", "counter"]), None, "the aborted transaction was applied");
}

#[test]
fn select_inside_multi_changes_database() {
    let (redis, proxy) = setup();
    let mut d = redis.direct();
    let mut c = proxy.conn();
    // In Redis, a SELECT executed by EXEC changes the connection's database
    // for the commands that follow.
    let _: () = q(&mut c, &["SET", "where", "db0"]);
    assert_eq!(q::<Value>(&mut c, &["MULTI"]), Value::Okay);
    assert_eq!(q::<Value>(&mut c, &["SELECT", "1"]), Value::SimpleString("QUEUED".into()));
    assert_eq!(q::<Value>(&mut c, &["SET", "where", "db1"]), Value::SimpleString("QUEUED".into()));
    assert_eq!(q::<Value>(&mut c, &["EXEC"]), Value::Array(vec![Value::Okay, Value::Okay]));
    let _: () = q(&mut d, &["SELECT", "1"]);
    assert_eq!(q::<String>(&mut d, &["GET", "where"]), "db1");
    assert_eq!(q::<String>(&mut c, &["GET", "where"]), "db1", "after EXEC ran SELECT 1 the client must be on db 1");
}

#[test]
fn pipelined_write_then_transaction_keeps_order() {
    // One client pipelines a write (shared pool) and a transaction that
    // reads it (dedicated connection). Redis runs one connection's commands in
    // order, so the transaction must see the write. CLIENT PAUSE WRITE holds
    // the write back for a moment (as a busy server would) to make any
    // reordering between the two upstream connections visible.
    let (redis, proxy) = setup();
    let mut batch = Vec::new();
    for args in [&["SET", "ordered", "1"][..], &["MULTI"], &["GET", "ordered"], &["EXEC"]] {
        batch.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in args {
            batch.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
    }
    let expected = ["+OK\r\n", "+OK\r\n", "+QUEUED\r\n", "*1\r\n$1\r\n1\r\n"];

    // Directly against Redis, for reference.
    let _: () = q(&mut redis.direct(), &["CLIENT", "PAUSE", "300", "WRITE"]);
    let mut direct = common::Raw::connect(format!("127.0.0.1:{}", redis.port).parse().unwrap());
    direct.send(&batch);
    let replies: Vec<String> = (0..4).map(|_| String::from_utf8(direct.read_frame()).unwrap()).collect();
    assert_eq!(replies, expected);
    let _: () = q(&mut redis.direct(), &["DEL", "ordered"]);

    // Through the proxy.
    let _: () = q(&mut redis.direct(), &["CLIENT", "PAUSE", "300", "WRITE"]);
    let mut raw = proxy.raw();
    raw.send(&batch);
    let replies: Vec<String> = (0..4).map(|_| String::from_utf8(raw.read_frame()).unwrap()).collect();
    assert_eq!(replies, expected, "the transaction ran before the write sent ahead of it");
}

/// WATCH, then `cmd_name` without MULTI (an error that, in Redis, leaves the
/// watch in place), then a conflicting write: the transaction must abort.
fn watch_kept_after_error(cmd_name: &str) {
    let (redis, proxy) = setup();
    let mut other = proxy.conn();
    for (label, mut con) in
        [("redis", common::Raw::connect(format!("127.0.0.1:{}", redis.port).parse().unwrap())), ("proxy", proxy.raw())]
    {
        assert_eq!(con.call(&["SET", "wk", "0"]), "+OK\r\n");
        assert_eq!(con.call(&["WATCH", "wk"]), "+OK\r\n");
        assert_eq!(con.call(&[cmd_name]), format!("-ERR {cmd_name} without MULTI\r\n"));
        let _: () = q(&mut other, &["SET", "wk", "changed"]);
        assert_eq!(con.call(&["MULTI"]), "+OK\r\n");
        assert_eq!(con.call(&["SET", "wk", "mine"]), "+QUEUED\r\n");
        assert_eq!(con.call(&["EXEC"]), "*-1\r\n", "{label}: WATCH was lost after {cmd_name} without MULTI");
        assert_eq!(q::<String>(&mut other, &["GET", "wk"]), "changed", "{label}");
    }
}

#[test]
fn watch_survives_exec_without_multi() {
    watch_kept_after_error("EXEC");
}

#[test]
fn watch_survives_discard_without_multi() {
    watch_kept_after_error("DISCARD");
}

#[test]
fn blocking_commands_may_outlast_request_timeout() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, "[upstream]\nrequest_timeout = \"300ms\"\n");
    wait_ready(&proxy);
    let mut c = proxy.conn();
    let _: String = q(&mut c, &["XADD", "bs", "1-1", "f", "v"]);
    for args in [
        &["BLPOP", "bl-empty", "0.8"][..],
        &["BRPOP", "bl-empty", "0.8"],
        &["BZPOPMIN", "bz-empty", "0.8"],
        &["XREAD", "BLOCK", "800", "STREAMS", "bs", "$"],
        &["xread", "count", "1", "block", "800", "streams", "bs", "$"],
    ] {
        let started = Instant::now();
        let reply: Value = q(&mut c, args);
        let took = started.elapsed();
        assert_eq!(reply, Value::Nil, "{args:?}");
        assert!(took >= Duration::from_millis(750) && took < Duration::from_secs(3), "{args:?} took {took:?}");
    }
    let started = Instant::now();
    assert_eq!(q::<i64>(&mut c, &["WAIT", "1", "800"]), 0);
    assert!(started.elapsed() >= Duration::from_millis(750), "WAIT took {:?}", started.elapsed());
    // The shared pool was not disturbed: a normal command is fast.
    let started = Instant::now();
    assert_eq!(q::<String>(&mut proxy.conn(), &["PING"]), "PONG");
    assert!(started.elapsed() < Duration::from_millis(200));
}

#[test]
fn mixed_local_and_forwarded_replies_keep_order() {
    let (_redis, proxy) = setup();
    let mut raw = proxy.raw();
    let id = raw.call(&["CLIENT", "ID"]);
    let mut batch = Vec::new();
    let mut expected = Vec::new();
    for i in 0..50 {
        let (args, want): (Vec<String>, String) = match i % 5 {
            0 => (vec!["SET".into(), format!("mk{i}"), format!("{i}")], "+OK\r\n".into()),
            1 => (vec!["CLIENT".into(), "ID".into()], id.clone()),
            2 => {
                (vec!["GET".into(), format!("mk{}", i - 2)], format!("${}\r\n{}\r\n", (i - 2).to_string().len(), i - 2))
            }
            3 => (vec!["CLIENT".into(), "GETNAME".into()], "$-1\r\n".into()),
            _ => (vec!["ECHO".into(), format!("e{i}")], format!("${}\r\ne{i}\r\n", format!("e{i}").len())),
        };
        batch.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for a in &args {
            batch.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        expected.push(want);
    }
    raw.send(&batch);
    for (i, want) in expected.iter().enumerate() {
        assert_eq!(&String::from_utf8(raw.read_frame()).unwrap(), want, "reply {i}");
    }
}

#[test]
fn monitor_streams_commands_until_the_client_leaves() {
    let (_redis, proxy) = setup();
    let mut monitor = proxy.raw();
    assert_eq!(monitor.call(&["MONITOR"]), "+OK\r\n");
    let mut con = proxy.conn();
    let _: () = redis::cmd("SET").arg("watched-key").arg("v").query(&mut con).unwrap();
    let start = std::time::Instant::now();
    let mut seen = String::new();
    while !seen.contains("watched-key") {
        assert!(start.elapsed() < Duration::from_secs(5), "MONITOR never showed the SET: {seen}");
        seen = String::from_utf8_lossy(&monitor.read_frame()).into_owned();
    }
    assert!(seen.starts_with('+') && seen.to_lowercase().contains("\"set\""), "{seen}");
    drop(monitor);
    let v: String = redis::cmd("GET").arg("watched-key").query(&mut con).unwrap();
    assert_eq!(v, "v");
}

/// Subscription confirmations are pushes in Redis, sent whatever `CLIENT
/// REPLY` says: through the proxy too, byte for byte as Redis sends them,
/// in RESP2 and RESP3 (a client waiting for one would otherwise hang).
#[test]
fn subscribe_confirmations_pass_client_reply_off_and_skip() {
    let (redis, proxy) = setup();
    for resp3 in [false, true] {
        let mut seen = Vec::new();
        for mut raw in [common::direct_raw(&redis), proxy.raw()] {
            if resp3 {
                raw.read_frame_after(&["HELLO", "3"]);
            }
            let mut frames = Vec::new();
            raw.cmd(&["CLIENT", "REPLY", "OFF"]);
            raw.cmd(&["SUBSCRIBE", "a", "b"]);
            frames.extend((0..2).map(|_| raw.read_frame()));
            raw.cmd(&["UNSUBSCRIBE", "a"]);
            frames.push(raw.read_frame());
            let mut skip = if resp3 { raw } else { common::Raw::connect(raw.stream.peer_addr().expect("addr")) };
            skip.cmd(&["CLIENT", "REPLY", "SKIP"]);
            skip.cmd(&["PSUBSCRIBE", "p*"]);
            frames.push(skip.read_frame());
            seen.push(frames);
        }
        assert_eq!(seen[1], seen[0], "resp3 {resp3}: the proxy's frames vs Redis'");
    }
}

/// CLIENT KILL and CLIENT UNBLOCK name clients by the ids CLIENT ID gave
/// them, the proxy's: they act on those clients (a blocked BLPOP returns,
/// as from Redis), never on an upstream connection that happens to carry
/// the same id.
#[test]
fn client_kill_and_unblock_act_on_the_proxys_clients() {
    let (redis, proxy) = setup();
    let id_of = |raw: &mut common::Raw| {
        let reply = raw.call(&["CLIENT", "ID"]);
        reply.trim_start_matches(':').trim_end().to_string()
    };
    for (how, want) in [("TIMEOUT", "*-1\r\n"), ("ERROR", "-UNBLOCKED")] {
        let mut blocked = proxy.raw();
        let id = id_of(&mut blocked);
        blocked.cmd(&["BLPOP", "never", "0"]);
        let mut other = proxy.raw();
        let unblocked =
            common::eventually(Duration::from_secs(5), || other.call(&["CLIENT", "UNBLOCK", &id, how]) == ":1\r\n");
        assert!(unblocked, "CLIENT UNBLOCK {id} {how}");
        let reply = String::from_utf8_lossy(&blocked.read_frame()).into_owned();
        assert!(reply.starts_with(want), "{how}: {reply:?}");
        assert_eq!(blocked.call(&["PING"]), "+PONG\r\n", "the unblocked client carries on");
        assert_eq!(other.call(&["CLIENT", "UNBLOCK", &id]), ":0\r\n", "no longer blocked");
    }
    let mut victim = proxy.raw();
    let victim_id = id_of(&mut victim);
    let mut killer = proxy.raw();
    let killer_id = id_of(&mut killer);
    // Upstream connections carry small ids too: none of them is touched.
    let upstream_before: String = redis::cmd("CLIENT").arg("LIST").query(&mut redis.direct()).expect("CLIENT LIST");
    assert_eq!(killer.call(&["CLIENT", "KILL", "ID", &victim_id]), ":1\r\n");
    assert!(victim.is_closed(), "the killed client's connection closes");
    assert_eq!(killer.call(&["CLIENT", "KILL", "ID", &victim_id]), ":0\r\n");
    assert_eq!(killer.call(&["CLIENT", "KILL", "ID", &killer_id]), ":0\r\n", "SKIPME yes by default");
    assert_eq!(killer.call(&["CLIENT", "KILL", "ADDR", "127.0.0.1:1"]), ":0\r\n");
    assert_eq!(killer.call(&["CLIENT", "KILL", "127.0.0.1:1"]), "-ERR No such client\r\n");
    let upstream_after: String = redis::cmd("CLIENT").arg("LIST").query(&mut redis.direct()).expect("CLIENT LIST");
    let ids = |list: &str| -> Vec<String> {
        let others = list.lines().filter(|l| !l.contains("cmd=client|list"));
        others.filter_map(|l| l.split(' ').next().map(str::to_string)).collect()
    };
    assert_eq!(ids(&upstream_after), ids(&upstream_before), "the upstream connections are all still there");
    assert_eq!(killer.call(&["CLIENT", "KILL", "ID", &killer_id, "SKIPME", "no"]), ":1\r\n");
    assert!(killer.is_closed());
}

/// CLIENT LIST and CLIENT INFO show the proxy's clients in Redis' format
/// (their own ids, addresses, names, library, database, subscriptions,
/// transaction and last command), not the upstream connections they
/// share; CLIENT KILL's filters (ADDR, LADDR, USER, TYPE, MAXAGE, the old
/// `ip:port` form) select among them.
#[test]
fn client_list_and_info_describe_the_proxys_clients() {
    let (redis, proxy) = setup();
    let field = |line: &str, name: &str| -> String {
        let prefix = format!("{name}=");
        line.split(' ').find_map(|kv| kv.strip_prefix(prefix.as_str())).unwrap_or("?").to_string()
    };
    let mut app = proxy.raw();
    let id = app.call(&["CLIENT", "ID"]).trim_start_matches(':').trim_end().to_string();
    assert_eq!(app.call(&["CLIENT", "SETNAME", "web-1"]), "+OK\r\n");
    assert_eq!(app.call(&["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]), "+OK\r\n");
    assert_eq!(app.call(&["CLIENT", "SETINFO", "lib-ver", "5.2.1"]), "+OK\r\n");
    let refused = app.call(&["CLIENT", "SETINFO", "lib-name", "a b"]);
    assert_eq!(refused, "-ERR lib-name cannot contain spaces, newlines or special characters.\r\n");
    assert_eq!(app.call(&["CLIENT", "SETINFO", "colour", "x"]), "-ERR Unrecognized option 'colour'\r\n");
    assert_eq!(app.call(&["SELECT", "2"]), "+OK\r\n");
    assert_eq!(app.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(app.call(&["SET", "k", "v"]), "+QUEUED\r\n");
    let refused = app.call(&["CLIENT", "INFO"]);
    assert!(refused.starts_with("-ERR CLIENT INFO inside MULTI is not supported"), "{refused:?}");
    let aborted = app.call(&["EXEC"]);
    assert!(aborted.starts_with("-EXECABORT"), "refused while queueing, as Redis does: {aborted:?}");
    assert_eq!(app.call(&["EXISTS", "k"]), ":0\r\n");
    let info = app.call(&["CLIENT", "INFO"]);
    let line = info.lines().nth(1).expect("a line");
    let local = app.stream.local_addr().expect("addr").to_string();
    let peer = app.stream.peer_addr().expect("addr").to_string();
    for (name, want) in [
        ("id", id.as_str()),
        ("addr", local.as_str()),
        ("laddr", peer.as_str()),
        ("name", "web-1"),
        ("db", "2"),
        ("multi", "-1"),
        ("cmd", "client|info"),
        ("user", "default"),
        ("resp", "2"),
        ("lib-name", "redis-py"),
        ("lib-ver", "5.2.1"),
        ("flags", "N"),
    ] {
        assert_eq!(field(line, name), want, "{name} in {line}");
    }

    let mut sub = proxy.raw();
    let sub_id = sub.call(&["CLIENT", "ID"]).trim_start_matches(':').trim_end().to_string();
    sub.cmd(&["SUBSCRIBE", "a", "b"]);
    sub.read_frame();
    sub.read_frame();
    sub.cmd(&["PSUBSCRIBE", "p*"]);
    sub.read_frame();
    sub.cmd(&["SSUBSCRIBE", "s1"]);
    sub.read_frame();
    // Age and idle time in whole seconds, as Redis counts them.
    std::thread::sleep(Duration::from_millis(1100));
    let list = app.call(&["CLIENT", "LIST"]);
    let lines: Vec<&str> = list.lines().skip(1).filter(|l| l.starts_with("id=")).collect();
    assert_eq!(lines.len(), 2, "{list}");
    let sub_line = lines.iter().find(|l| field(l, "id") == sub_id).expect("the subscriber");
    assert_eq!((field(sub_line, "sub"), field(sub_line, "flags")), ("2".to_string(), "P".to_string()));
    assert_eq!((field(sub_line, "psub"), field(sub_line, "ssub")), ("1".to_string(), "1".to_string()));
    assert_eq!(field(sub_line, "cmd"), "ssubscribe");
    let seconds =
        |line: &str, name: &str| field(line, name).parse::<u64>().unwrap_or_else(|_| panic!("{name}: {line}"));
    assert!(seconds(sub_line, "age") >= 1 && seconds(sub_line, "idle") >= 1, "{sub_line}");
    let app_line = lines.iter().find(|l| field(l, "id") == id).expect("the caller");
    assert!(seconds(app_line, "age") >= 1 && seconds(app_line, "idle") == 0, "{app_line}");
    // MAXAGE: clients at least that many seconds old (Valkey 8's rule).
    let mut young = proxy.raw();
    let young_id = young.call(&["CLIENT", "ID"]).trim_start_matches(':').trim_end().to_string();
    assert_eq!(app.call(&["CLIENT", "KILL", "MAXAGE", "1", "ID", &young_id]), ":0\r\n");
    assert_eq!(young.call(&["PING"]), "+PONG\r\n");
    let pubsub = app.call(&["CLIENT", "LIST", "TYPE", "pubsub"]);
    assert!(pubsub.contains(&format!("id={sub_id} ")) && !pubsub.contains(&format!("id={id} ")), "{pubsub}");
    let by_id = app.call(&["CLIENT", "LIST", "ID", &id, "999999"]);
    assert!(by_id.contains(&format!("id={id} ")) && !by_id.contains(&format!("id={sub_id} ")), "{by_id}");
    assert_eq!(app.call(&["CLIENT", "LIST", "TYPE", "nope"]), "-ERR Unknown client type 'nope'\r\n");
    assert_eq!(app.call(&["CLIENT", "LIST", "ID", "x"]), "-ERR Invalid client ID\r\n");
    let upstream: String = redis::cmd("CLIENT").arg("LIST").query(&mut redis.direct()).expect("CLIENT LIST");
    assert!(!upstream.contains("web-1"), "Redis sees the proxy's connections, not its clients");

    // `t` for a tracking client only, not for other state held for the
    // whole session (CLIENT NO-EVICT).
    let mut tracked = proxy.raw();
    assert_eq!(tracked.call(&["CLIENT", "TRACKING", "on"]), "+OK\r\n");
    let flags = tracked.call(&["CLIENT", "INFO"]);
    assert_eq!(field(flags.lines().nth(1).expect("a line"), "flags"), "t", "{flags}");
    assert_eq!(tracked.call(&["CLIENT", "TRACKING", "off"]), "+OK\r\n");
    let flags = tracked.call(&["CLIENT", "INFO"]);
    assert_eq!(field(flags.lines().nth(1).expect("a line"), "flags"), "N", "{flags}");
    assert_eq!(tracked.call(&["CLIENT", "NO-EVICT", "on"]), "+OK\r\n");
    let flags = tracked.call(&["CLIENT", "INFO"]);
    assert_eq!(field(flags.lines().nth(1).expect("a line"), "flags"), "N", "{flags}");

    // KILL by filters.
    assert_eq!(app.call(&["CLIENT", "KILL", "USER", "nobody"]), "-ERR No such user 'nobody'\r\n");
    assert_eq!(app.call(&["CLIENT", "KILL", "TYPE", "master"]), ":0\r\n");
    assert_eq!(app.call(&["CLIENT", "KILL", "MAXAGE", "3600"]), ":0\r\n");
    assert_eq!(app.call(&["CLIENT", "KILL", "MAXAGE", "0"]), "-ERR maxage should be greater than 0\r\n");
    assert_eq!(app.call(&["CLIENT", "KILL", "MAXAGE", "x"]), "-ERR maxage is not an integer or out of range\r\n");
    let sub_addr = sub.stream.local_addr().expect("addr").to_string();
    assert_eq!(app.call(&["CLIENT", "KILL", "ADDR", &sub_addr, "TYPE", "normal"]), ":0\r\n");
    assert_eq!(app.call(&["CLIENT", "KILL", "ADDR", &sub_addr, "TYPE", "pubsub", "MAXAGE", "1"]), ":1\r\n");
    assert!(sub.is_closed());
    let mut third = proxy.raw();
    assert_eq!(third.call(&["PING"]), "+PONG\r\n");
    let third_addr = third.stream.local_addr().expect("addr").to_string();
    assert_eq!(app.call(&["CLIENT", "KILL", &third_addr]), "+OK\r\n");
    assert!(third.is_closed());
    let mut fourth = proxy.raw();
    assert_eq!(fourth.call(&["PING"]), "+PONG\r\n");
    assert_eq!(app.call(&["CLIENT", "KILL", "LADDR", &peer, "USER", "default"]), ":3\r\n", "all but the caller");
    assert!(fourth.is_closed() && tracked.is_closed() && young.is_closed());
    assert_eq!(app.call(&["PING"]), "+PONG\r\n");
}
