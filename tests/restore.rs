//! RESTORE for tenants against a real redis-server. A tenant with
//! `allow_restore` moves its own values with DUMP and RESTORE, under its
//! prefix; the proxy refuses payloads it cannot fully validate itself
//! (Redis ships `sanitize-dump-payload no`, and a corrupt listpack that
//! passes the checksum crashes it on the next read); tenants without the
//! option get NOPERM.
mod common;

use common::{Proxy, RedisServer};
use nearcache::tenancy::dump::{crc64, validate};
use redis::{Connection, RedisResult};

fn start() -> (RedisServer, Proxy) {
    let hash = |p: &str| nearcache::tenancy::hash_password(p.as_bytes());
    let config = format!(
        "[[tenant]]\nname = \"acme\"\npassword_sha256 = \"{}\"\nallow_restore = true\n\
         [[tenant]]\nname = \"globex\"\npassword_sha256 = \"{}\"\n",
        hash("acme-pw"),
        hash("globex-pw")
    );
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, &config);
    (redis, proxy)
}

/// A connection through the proxy, authenticated as `tenant`.
fn login(proxy: &Proxy, tenant: &str) -> Connection {
    let url = format!("redis://{tenant}:{tenant}-pw@{}", proxy.addr);
    redis::Client::open(url).and_then(|c| c.get_connection()).expect("tenant connection")
}

fn dump(con: &mut Connection, key: &str) -> Vec<u8> {
    redis::cmd("DUMP").arg(key).query(con).expect("DUMP")
}

fn restore(con: &mut Connection, key: &str, payload: &[u8]) -> RedisResult<()> {
    redis::cmd("RESTORE").arg(key).arg(0).arg(payload).query(con)
}

/// `payload` with its CRC64 computed again, as a forger would.
fn resealed(mut payload: Vec<u8>) -> Vec<u8> {
    let n = payload.len() - 8;
    let crc = crc64(&payload[..n]);
    payload[n..].copy_from_slice(&crc.to_le_bytes());
    payload
}

fn exists(con: &mut Connection, key: &str) -> bool {
    redis::cmd("EXISTS").arg(key).query::<i64>(con).expect("EXISTS") == 1
}

/// A value's type and contents, in an order that does not depend on its
/// encoding.
fn contents(con: &mut Connection, key: &str) -> (String, Vec<Vec<u8>>) {
    let kind: String = redis::cmd("TYPE").arg(key).query(con).expect("TYPE");
    let query = |c: &mut redis::Cmd, con: &mut Connection| c.query::<Vec<Vec<u8>>>(con).expect("read");
    let items = match kind.as_str() {
        "string" => vec![redis::cmd("GET").arg(key).query(con).expect("GET")],
        "list" => query(redis::cmd("LRANGE").arg(key).arg(0).arg(-1), con),
        "zset" => query(redis::cmd("ZRANGE").arg(key).arg(0).arg(-1).arg("WITHSCORES"), con),
        "set" => {
            let mut members = query(redis::cmd("SMEMBERS").arg(key), con);
            members.sort();
            members
        }
        "hash" => {
            let flat = query(redis::cmd("HGETALL").arg(key), con);
            let mut pairs: Vec<Vec<u8>> = flat.chunks(2).map(|p| p.concat()).collect();
            pairs.sort();
            pairs
        }
        other => panic!("{key}: unexpected type {other}"),
    };
    (kind, items)
}

fn run(con: &mut Connection, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<redis::Value>(con).unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

fn encoding(con: &mut Connection, key: &str) -> String {
    redis::cmd("OBJECT").arg("ENCODING").arg(key).query(con).expect("OBJECT ENCODING")
}

/// Small values (listpack and intset encodings, compressed strings) and
/// large ones (plain encodings, several list nodes: 1,000 elements, over
/// any default `*-max-listpack-entries`), written by `con`.
fn write_values(con: &mut Connection) -> Vec<String> {
    let mut keys = Vec::new();
    let mut put = |key: &str, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(con, &args);
        keys.push(key.to_string());
    };
    let words =
        |head: &[&str], tail: Vec<String>| -> Vec<String> { head.iter().map(|s| s.to_string()).chain(tail).collect() };
    put("s:str", words(&["SET", "s:str", "hello"], vec![]));
    put("s:int", words(&["SET", "s:int", "-12345"], vec![]));
    put("s:lzf", words(&["SET", "s:lzf", &"abc".repeat(1000)], vec![]));
    put("s:hash", words(&["HSET", "s:hash", "f1", "v1", "f2", "2", "f3", "-70000"], vec![]));
    put("s:hashz", words(&["HSET", "s:hashz", "f", &"x".repeat(40), "g", &"x".repeat(40)], vec![]));
    put("s:list", words(&["RPUSH", "s:list", "a", "b", "1", "-5", &"q".repeat(200)], vec![]));
    put("s:set", words(&["SADD", "s:set", "a", "b", "c"], vec![]));
    put("s:intset", words(&["SADD", "s:intset", "1", "2", "3", "-7", "100000"], vec![]));
    put("s:zset", words(&["ZADD", "s:zset", "1.5", "m1", "2", "m2", "-3.25", "m3", "inf", "m4"], vec![]));
    let many = |f: &dyn Fn(usize) -> Vec<String>| (0..1000).flat_map(f).collect::<Vec<String>>();
    put("l:hash", words(&["HSET", "l:hash"], many(&|i| vec![format!("field:{i}"), format!("value:{i}")])));
    put("l:list", words(&["RPUSH", "l:list"], many(&|i| vec![format!("{i:0>150}")])));
    put("l:set", words(&["SADD", "l:set"], many(&|i| vec![format!("member:{i}")])));
    put("l:zset", words(&["ZADD", "l:zset"], many(&|i| vec![format!("{}", i as f64 * 0.5), format!("m{i}")])));
    put("l:intset", words(&["SADD", "l:intset"], (0..1000).map(|i| (i * 7).to_string()).collect()));
    put(
        "l:str",
        words(&["SET", "l:str"], vec![(0..20_000u32).map(|i| char::from(b'a' + (i * 31 % 26) as u8)).collect()]),
    );
    keys
}

#[test]
fn a_tenant_moves_its_values_with_dump_and_restore() {
    let (redis, proxy) = start();
    let mut acme = login(&proxy, "acme");
    let mut direct = redis.direct();
    // Elements over 1 KiB go in plain list nodes.
    run(&mut direct, &["DEBUG", "QUICKLIST-PACKED-THRESHOLD", "1024"]);
    let mut keys = write_values(&mut acme);
    run(&mut acme, &["RPUSH", "l:plain", "small", &"p".repeat(3000), "tail"]);
    keys.push("l:plain".into());

    for (key, expected) in [
        ("s:hash", "listpack"),
        ("l:hash", "hashtable"),
        ("s:zset", "listpack"),
        ("l:zset", "skiplist"),
        ("s:intset", "intset"),
        ("l:intset", "hashtable"),
        ("l:list", "quicklist"),
    ] {
        assert_eq!(encoding(&mut acme, key), expected, "{key}");
    }
    for key in &keys {
        let payload = dump(&mut acme, key);
        assert_eq!(validate(&payload), Ok(()), "{key}: the proxy's validator accepts Redis' own DUMP");
        let copy = format!("copy:{key}");
        restore(&mut acme, &copy, &payload).unwrap_or_else(|e| panic!("RESTORE {copy}: {e}"));
        assert_eq!(contents(&mut acme, &copy), contents(&mut acme, key), "{key}");
        assert!(exists(&mut direct, &format!("acme:{copy}")), "{copy} is under the prefix in Redis");
    }
    // The options Redis knows pass.
    let payload = dump(&mut acme, "s:str");
    let with_options: RedisResult<()> = redis::cmd("RESTORE")
        .arg("copy:s:str")
        .arg(0)
        .arg(&payload)
        .arg("REPLACE")
        .arg("IDLETIME")
        .arg(10)
        .query(&mut acme);
    assert_eq!(with_options, Ok(()));
    let bogus: RedisResult<()> =
        redis::cmd("RESTORE").arg("copy:s:str").arg(0).arg(&payload).arg("REPLACE").arg("BOGUS").query(&mut acme);
    assert!(bogus.expect_err("unknown option").to_string().contains("RESTORE options are"));
}

#[test]
fn a_corrupt_listpack_is_refused_and_redis_survives() {
    let (redis, proxy) = start();
    let mut acme = login(&proxy, "acme");
    let mut direct = redis.direct();
    run(&mut acme, &["HSET", "h", "a", "1", "b", "2"]);
    let payload = dump(&mut acme, "h");
    // Type 16 (hash listpack), the listpack's 1-byte length, its 6-byte
    // header, then the first entry: "a" (0x81). Made a 63-byte string, it
    // reads past the end of the listpack.
    assert_eq!((payload[0], payload[8]), (16, 0x81), "{payload:?}");
    let mut forged = payload.clone();
    forged[8] = 0xbf;
    let forged = resealed(forged);

    let err = restore(&mut acme, "evil", &forged).expect_err("refused");
    assert!(err.to_string().contains("DUMP payload refused: truncated in a listpack entry"), "{err}");
    let pong: String = redis::cmd("PING").query(&mut direct).expect("Redis is alive");
    assert_eq!(pong, "PONG");
    assert!(!exists(&mut direct, "acme:evil"));

    // What the proxy protects from: Redis alone takes the forged payload
    // (it is deleted unread here; reading it is what crashes Redis).
    let sanitize: Vec<String> =
        redis::cmd("CONFIG").arg("GET").arg("sanitize-dump-payload").query(&mut direct).expect("CONFIG");
    if sanitize.get(1).map(String::as_str) == Some("no") {
        assert_eq!(restore(&mut direct, "unchecked", &forged), Ok(()));
        run(&mut direct, &["DEL", "unchecked"]);
    }
}

#[test]
fn a_bad_checksum_is_refused() {
    let (redis, proxy) = start();
    let mut acme = login(&proxy, "acme");
    run(&mut acme, &["SET", "k", "v"]);
    let mut payload = dump(&mut acme, "k");
    *payload.last_mut().expect("footer") ^= 0x40;
    let err = restore(&mut acme, "copy", &payload).expect_err("refused");
    assert!(err.to_string().contains("DUMP payload refused: bad CRC64 checksum"), "{err}");
    assert!(!exists(&mut redis.direct(), "acme:copy"));
}

#[test]
fn restore_needs_allow_restore_and_stays_in_the_prefix() {
    let (redis, proxy) = start();
    let mut acme = login(&proxy, "acme");
    let mut globex = login(&proxy, "globex");
    let mut direct = redis.direct();
    run(&mut globex, &["SET", "k", "globex's"]);
    let payload = dump(&mut globex, "k");
    let err = restore(&mut globex, "copy", &payload).expect_err("globex may not RESTORE");
    assert!(err.to_string().contains("not allowed for tenant globex"), "{err}");
    assert!(!exists(&mut direct, "globex:copy"));

    let asking: RedisResult<()> = redis::cmd("RESTORE-ASKING").arg("k").arg(0).arg(&payload).query(&mut acme);
    assert!(asking.expect_err("refused").to_string().contains("not allowed for tenant acme"));
    assert!(!exists(&mut direct, "acme:k"));

    // acme restores globex's value under its own prefix, whatever the key.
    for key in ["k", "globex:k", "../k"] {
        assert_eq!(restore(&mut acme, key, &payload), Ok(()), "{key}");
        let stored: Option<String> = redis::cmd("GET").arg(format!("acme:{key}")).query(&mut direct).expect("GET");
        assert_eq!(stored.as_deref(), Some("globex's"), "{key}");
    }
    let globex_own: String = redis::cmd("GET").arg("globex:k").query(&mut direct).expect("GET");
    assert_eq!(globex_own, "globex's");
    let mut all: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut direct).expect("KEYS");
    all.sort();
    assert_eq!(all, ["acme:../k", "acme:globex:k", "acme:k", "globex:k"]);
}

/// Every single-byte change to the value of real DUMPs, resealed: whatever
/// the proxy accepts, Redis with deep sanitization
/// (`sanitize-dump-payload yes`) accepts too, so the proxy never lets
/// through what Redis itself would call corrupt.
#[test]
fn what_the_proxy_accepts_redis_deep_sanitization_accepts() {
    let redis = RedisServer::start();
    let mut direct = redis.direct();
    run(&mut direct, &["CONFIG", "SET", "sanitize-dump-payload", "yes"]);
    run(&mut direct, &["HSET", "hash", "f1", "v1", "f2", "2", "n", "-70000"]);
    run(&mut direct, &["HSET", "hashz", "f", &"x".repeat(40), "g", &"y".repeat(40)]);
    run(&mut direct, &["ZADD", "zset", "1.5", "m1", "2", "m2", "-3.25", "m3"]);
    run(&mut direct, &["RPUSH", "list", "a", "bb", "7", "-300", "70000"]);
    run(&mut direct, &["SADD", "intset", "1", "2", "3", "-7", "100000"]);
    run(&mut direct, &["SADD", "set", "a", "bb", "ccc"]);
    run(&mut direct, &["SET", "string", "hello"]);
    let (mut accepted, mut stricter) = (0, 0);
    for key in ["hash", "hashz", "zset", "list", "intset", "set", "string"] {
        let payload = dump(&mut direct, key);
        for i in 0..payload.len() - 10 {
            for b in (0..=255u8).filter(|&b| b != payload[i]) {
                let mut mutant = payload.clone();
                mutant[i] = b;
                let mutant = resealed(mutant);
                let redis_says: RedisResult<()> =
                    redis::cmd("RESTORE").arg("oracle").arg(0).arg(&mutant).arg("REPLACE").query(&mut direct);
                match (validate(&mutant), redis_says) {
                    (Ok(()), Ok(())) => accepted += 1,
                    (Ok(()), Err(e)) => panic!("{key}: byte {i} = {b}: accepted by the proxy, Redis says {e}"),
                    (Err(_), Ok(())) => stricter += 1,
                    (Err(_), Err(_)) => {}
                }
            }
        }
    }
    let pong: String = redis::cmd("PING").query(&mut direct).expect("Redis is alive");
    assert_eq!(pong, "PONG");
    assert!(accepted > 0);
    println!("{accepted} mutants accepted by both; {stricter} accepted by Redis only (checks Redis does not make)");
}
