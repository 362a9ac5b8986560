//! The near-cache, end to end: hits proven by Redis' own command counters
//! (`INFO commandstats`), coherence with writes through the proxy, direct
//! writes, other proxies and expiry, behaviour across upstream restarts and
//! loss of the invalidation connection, the memory bound, per-protocol
//! replies, MGET split per key, policies, single flight, client-side
//! tracking through the proxy, reply order in pipelines mixing hits,
//! misses and writes, and the admin endpoints and metrics.
//!
//! Every test starts its own redis-server and proxy. Metrics are
//! process-global (shared by every proxy of this binary), so assertions use
//! each proxy's own `/cache/stats` or deltas.
mod common;

use common::{
    direct_raw, eventually, json_field, json_number, metric, wait_active, wait_ready, wait_ready_resp3, Proxy,
    RedisServer,
};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Quick upstream timeouts, and failover off: these tests are about the
/// errors clients get (tests/failover.rs covers failover).
const FAST_FAIL: &str =
    "[upstream]\nrequest_timeout = \"500ms\"\nconnect_timeout = \"300ms\"\n[failover]\nenabled = false\n";

/// Time for invalidations caused by setup writes to reach the proxy before
/// a test starts counting, so a late one cannot void the fill the test
/// relies on (that voiding is correct, conservative behaviour).
const SETTLE: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------- helpers

fn setup() -> (RedisServer, Proxy) {
    setup_with("")
}

fn setup_with(toml: &str) -> (RedisServer, Proxy) {
    let redis = RedisServer::start();
    let proxy = start_with(&redis, toml);
    (redis, proxy)
}

/// A proxy whose cache fills on a key's first miss, unless `toml` says
/// otherwise: these tests count fills and hits from the first read. The
/// default (`admission = "second"`) has its own test below.
fn start_with(redis: &RedisServer, toml: &str) -> Proxy {
    let mut config: toml::Table = toml.parse().expect("a test's config is TOML");
    let cache = config.entry("cache").or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let Some(cache) = cache.as_table_mut() {
        cache.entry("admission").or_insert_with(|| "first".into());
    }
    let proxy = Proxy::start_with(redis.port, &config.to_string());
    wait_ready(&proxy);
    wait_active(&proxy);
    proxy
}

/// `/cache/stats` of one proxy.
#[derive(Debug, Clone, Copy)]
struct Stats {
    entries: u64,
    bytes: u64,
    hits: u64,
    misses: u64,
    active: bool,
}

fn stats(proxy: &Proxy) -> Stats {
    let (status, body) = proxy.admin_get("/cache/stats");
    assert_eq!(status, 200, "{body}");
    Stats {
        entries: json_number(&body, "entries") as u64,
        bytes: json_number(&body, "bytes") as u64,
        hits: json_number(&body, "hits") as u64,
        misses: json_number(&body, "misses") as u64,
        active: json_field(&body, "active").unwrap_or_else(|| panic!("no active in {body}")) == "true",
    }
}

/// How many times Redis ran `cmd` (lower case, `client|pause` style for
/// subcommands), from `INFO commandstats`.
fn calls(direct: &mut redis::Connection, cmd: &str) -> u64 {
    common::command_stats(direct, cmd).0
}

fn set(direct: &mut redis::Connection, key: &str, value: &str) {
    let () = redis::cmd("SET").arg(key).arg(value).query(direct).expect("SET");
}

fn get(conn: &mut redis::Connection, key: &str) -> Option<String> {
    redis::cmd("GET").arg(key).query(conn).expect("GET")
}

/// Reads `key` twice through `conn`: both reads get `value` and only the
/// first reaches Redis (the second is a hit).
fn assert_cached(direct: &mut redis::Connection, conn: &mut redis::Connection, key: &str, value: &str) {
    let gets = calls(direct, "get");
    assert_eq!(get(conn, key).as_deref(), Some(value), "first read of {key}");
    assert_eq!(get(conn, key).as_deref(), Some(value), "second read of {key}");
    assert_eq!(calls(direct, "get") - gets, 1, "{key} was not cached");
}

fn bulk(value: &str) -> String {
    format!("${}\r\n{value}\r\n", value.len())
}

// ---------------------------------------------------------------- hits

#[test]
fn second_read_is_a_hit_with_the_same_bytes() {
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    set(&mut direct, "k", "hello near-cache");
    std::thread::sleep(SETTLE);
    let gets = calls(&mut direct, "get");
    let hits = stats(&proxy).hits;

    let mut raw = proxy.raw();
    let first = raw.call(&["GET", "k"]);
    let second = raw.call(&["GET", "k"]);
    assert_eq!(first, bulk("hello near-cache"));
    assert_eq!(second, first);
    assert_eq!(calls(&mut direct, "get") - gets, 1, "the second GET went upstream");
    assert!(stats(&proxy).hits > hits, "{:?}", stats(&proxy));

    let theirs = direct_raw(&redis).call(&["GET", "k"]);
    assert_eq!(second, theirs, "a hit must be byte-identical to Redis' reply");
}

#[test]
fn own_writes_are_read_back_immediately() {
    let (_redis, proxy) = setup();
    let mut conn = proxy.conn();
    for i in 0..200 {
        let value = format!("value-{i}");
        let () = redis::cmd("SET").arg("rw").arg(&value).query(&mut conn).expect("SET");
        assert_eq!(get(&mut conn, "rw").as_deref(), Some(value.as_str()), "iteration {i}");
        // A second read, possibly a hit, is as fresh.
        assert_eq!(get(&mut conn, "rw").as_deref(), Some(value.as_str()), "iteration {i}, second read");
    }
    assert!(stats(&proxy).hits > 0, "{:?}", stats(&proxy));
}

/// Hits are answered at once (straight into the client's output when no
/// earlier reply is owed), misses and writes later: in a pipeline mixing
/// them, every reply must still come in request order, and a read after a
/// write in the same pipeline must see it.
#[test]
fn pipelined_hits_misses_and_writes_keep_their_order() {
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    for i in 0..8 {
        set(&mut direct, &format!("hot:{i}"), &format!("hot-{i}"));
    }
    std::thread::sleep(SETTLE);
    let mut conn = proxy.conn();
    for i in 0..8 {
        let key = format!("hot:{i}");
        assert_eq!(get(&mut conn, &key), Some(format!("hot-{i}")));
        assert_eq!(get(&mut conn, &key), Some(format!("hot-{i}")), "{key} is cached");
    }
    let hits = stats(&proxy).hits;
    for round in 0..100 {
        let mut pipe = redis::pipe();
        let mut expected = Vec::new();
        for step in 0..24usize {
            // A hit, a miss, a write then a read of what it wrote, varied per round.
            let hot = format!("hot:{}", (round + step) % 8);
            match (round * 7 + step * 3) % 5 {
                0 | 1 => {
                    pipe.cmd("GET").arg(&hot);
                    expected.push(Some(format!("hot-{}", (round + step) % 8)));
                }
                2 => {
                    pipe.cmd("GET").arg(format!("cold:{round}:{step}"));
                    expected.push(None);
                }
                3 => {
                    let key = format!("written:{}", step % 3);
                    let value = format!("w-{round}-{step}");
                    pipe.cmd("SET").arg(&key).arg(&value).ignore();
                    pipe.cmd("GET").arg(&key);
                    expected.push(Some(value));
                }
                _ => {
                    pipe.cmd("GET").arg(&hot).cmd("GET").arg(&hot);
                    let value = format!("hot-{}", (round + step) % 8);
                    expected.extend([Some(value.clone()), Some(value)]);
                }
            }
        }
        let got: Vec<Option<String>> = pipe.query(&mut conn).expect("pipeline");
        assert_eq!(got, expected, "round {round}");
    }
    assert!(stats(&proxy).hits > hits + 1000, "the hot keys were served as hits: {:?}", stats(&proxy));
}

// ---------------------------------------------------------------- coherence

#[test]
fn direct_writes_are_seen_within_the_invalidation_window() {
    const SLOTS: usize = 1 << 20;
    const READERS: usize = 3;
    const RUN: Duration = Duration::from_secs(2);

    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    set(&mut direct, "hot", "0");
    std::thread::sleep(SETTLE);
    let before = stats(&proxy);

    let t0 = Instant::now();
    // acked_at[n]: nanoseconds since t0 when `SET hot n` was acknowledged.
    let acked_at: Arc<Vec<AtomicU64>> = Arc::new((0..SLOTS).map(|_| AtomicU64::new(0)).collect());
    let acked = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));

    let writer = {
        let (acked_at, acked, done) = (acked_at.clone(), acked.clone(), done.clone());
        let mut conn = redis.direct();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while t0.elapsed() < RUN && (n as usize) < SLOTS - 1 {
                n += 1;
                set(&mut conn, "hot", &n.to_string());
                acked_at[n as usize].store(t0.elapsed().as_nanos() as u64, Ordering::Release);
                acked.store(n, Ordering::Release);
            }
            done.store(true, Ordering::Release);
            n
        })
    };

    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (acked_at, acked, done) = (acked_at.clone(), acked.clone(), done.clone());
            let mut conn = proxy.conn();
            std::thread::spawn(move || {
                let (mut reads, mut stale, mut max_behind) = (0u64, 0u64, 0u64);
                while !done.load(Ordering::Acquire) {
                    let floor = acked.load(Ordering::Acquire);
                    let started = t0.elapsed().as_nanos() as u64;
                    let value: u64 = get(&mut conn, "hot").expect("hot exists").parse().expect("a number");
                    reads += 1;
                    if value < floor {
                        stale += 1;
                        // The value read had been superseded since the next
                        // one was acknowledged.
                        let superseded = acked_at[value as usize + 1].load(Ordering::Acquire);
                        max_behind = max_behind.max(started.saturating_sub(superseded));
                    }
                }
                (reads, stale, max_behind)
            })
        })
        .collect();

    let writes = writer.join().expect("writer");
    let (mut reads, mut stale, mut max_behind) = (0, 0, 0);
    for reader in readers {
        let (r, s, m) = reader.join().expect("reader");
        reads += r;
        stale += s;
        max_behind = max_behind.max(m);
    }
    let after = stats(&proxy);
    let hits = after.hits - before.hits;
    let max_ms = max_behind as f64 / 1e6;
    println!(
        "stale-read test: {writes} direct writes, {reads} reads through the proxy, {hits} hits, \
         {stale} reads older than the last acknowledged write, maximum staleness {max_ms:.3} ms"
    );
    assert!(max_ms < 100.0, "a read returned a value {max_ms:.3} ms behind the acknowledged writes");
    assert!(hits > 0, "the cache never served a hit: the test proves nothing ({before:?} → {after:?})");
    assert!(after.active);
}

#[test]
fn a_write_through_one_proxy_invalidates_another() {
    let redis = RedisServer::start();
    let a = start_with(&redis, "");
    let b = start_with(&redis, "");
    let mut direct = redis.direct();
    set(&mut direct, "shared", "old");
    std::thread::sleep(SETTLE);

    let mut via_b = b.conn();
    let hits = stats(&b).hits;
    assert_eq!(get(&mut via_b, "shared").as_deref(), Some("old"));
    assert_eq!(get(&mut via_b, "shared").as_deref(), Some("old"));
    assert!(stats(&b).hits > hits, "B did not cache the key: {:?}", stats(&b));

    let mut via_a = a.conn();
    let written = Instant::now();
    let () = redis::cmd("SET").arg("shared").arg("new").query(&mut via_a).expect("SET through A");
    let mut last = None;
    let seen = eventually(Duration::from_secs(1), || {
        last = get(&mut via_b, "shared");
        last.as_deref() == Some("new")
    });
    let took = written.elapsed();
    println!("proxy B saw proxy A's write after {:.3} ms", took.as_secs_f64() * 1e3);
    assert!(seen, "B still returns {last:?} 1 s after A's write");
}

#[test]
fn entries_never_outlive_the_upstream_ttl() {
    let (redis, proxy) = setup_with("[cache]\ndefault_ttl = \"60s\"\n");
    let mut direct = redis.direct();
    // No active expiry: only the proxy's own TTL can drop the entry in time.
    let () = redis::cmd("DEBUG").arg("SET-ACTIVE-EXPIRE").arg(0).query(&mut direct).expect("DEBUG");
    set(&mut direct, "short", "lived");
    let () = redis::cmd("PEXPIRE").arg("short").arg(200).query(&mut direct).expect("PEXPIRE");
    let expired_at = Instant::now() + Duration::from_millis(200);
    std::thread::sleep(Duration::from_millis(30));

    let mut conn = proxy.conn();
    assert_cached(&mut direct, &mut conn, "short", "lived");

    std::thread::sleep((expired_at + Duration::from_millis(100)).saturating_duration_since(Instant::now()));
    assert_eq!(get(&mut conn, "short"), None, "served after the key expired upstream");
}

#[test]
fn a_key_read_again_after_its_ttl_is_cached_again() {
    // serve_stale (the default) keeps entries past their TTL for failover:
    // a refill must not inherit the stale entry's end of freshness.
    let (redis, proxy) = setup_with("[cache]\ndefault_ttl = \"200ms\"\n");
    let mut direct = redis.direct();
    set(&mut direct, "k", "v");
    std::thread::sleep(SETTLE);
    let mut conn = proxy.conn();
    assert_cached(&mut direct, &mut conn, "k", "v");
    // Past its TTL the key is read upstream once and cached again.
    std::thread::sleep(Duration::from_millis(300));
    assert_cached(&mut direct, &mut conn, "k", "v");
}

// ---------------------------------------------------------------- upstream faults

#[test]
fn upstream_restart_never_serves_pre_restart_values() {
    // Failover off: failover would serve the cached values while Redis is
    // down (tests/failover.rs).
    let (mut redis, proxy) = setup_with("[failover]\nenabled = false\n");
    let keys: Vec<String> = (0..10).map(|i| format!("r:{i}")).collect();
    {
        let mut direct = redis.direct();
        for k in &keys {
            set(&mut direct, k, &format!("pre-restart-{k}"));
        }
    }
    std::thread::sleep(SETTLE);
    let mut conn = proxy.conn();
    for k in &keys {
        assert_eq!(get(&mut conn, k), Some(format!("pre-restart-{k}")));
        assert_eq!(get(&mut conn, k), Some(format!("pre-restart-{k}")));
    }
    let cached = stats(&proxy);
    assert!(cached.entries >= keys.len() as u64, "{cached:?}");
    let (_, metrics) = proxy.admin_get("/metrics");
    let losses = metric(&metrics, "nearcache_tracking_losses_total").unwrap_or(0.0);

    // A reader hammers the keys through the restart. Reads begun before
    // the kill may legitimately return old values; reads begun once the new
    // server is up must never.
    let restarting = Arc::new(AtomicBool::new(false));
    let restarted = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let (restarting, restarted, stop, keys) = (restarting.clone(), restarted.clone(), stop.clone(), keys.clone());
        let mut raw = proxy.raw();
        std::thread::spawn(move || {
            let (mut after, mut bad_after, mut old_during) = (0u64, Vec::new(), 0u64);
            while !stop.load(Ordering::Acquire) {
                for k in &keys {
                    let (is_during, is_after) = (restarting.load(Ordering::Acquire), restarted.load(Ordering::Acquire));
                    let reply = raw.call(&["GET", k]);
                    let old = reply.contains("pre-restart");
                    if is_after {
                        after += 1;
                        if old {
                            bad_after.push(format!("{k}: {reply:?}"));
                        }
                    } else if is_during && old {
                        old_during += 1;
                    }
                }
            }
            (after, bad_after, old_during)
        })
    };
    std::thread::sleep(Duration::from_millis(50));
    restarting.store(true, Ordering::Release);
    redis.restart();
    restarted.store(true, Ordering::Release);

    // Until the proxy answers again.
    let mut raw = proxy.raw();
    let mut last = String::new();
    let back = eventually(Duration::from_secs(10), || {
        last = raw.call(&["GET", &keys[0]]);
        last == "$-1\r\n"
    });
    assert!(back, "the proxy never answered after the restart: {last:?}");
    wait_active(&proxy);
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Release);
    let (after, bad_after, old_during) = reader.join().expect("reader");
    println!(
        "restart: {after} reads after the restart, {old_during} old values read while it was being restarted \
         (begun before the kill or before the loss was noticed)"
    );
    assert!(bad_after.is_empty(), "pre-restart values after the restart: {bad_after:?}");
    assert!(after > 0);

    for k in &keys {
        assert_eq!(get(&mut conn, k), None, "{k} after the restart");
        assert_eq!(get(&mut conn, k), None, "{k} after the restart, second read");
    }
    let now = stats(&proxy);
    assert!(now.active, "the cache did not re-activate: {now:?}");
    let (_, metrics) = proxy.admin_get("/metrics");
    let losses_now = metric(&metrics, "nearcache_tracking_losses_total").unwrap_or(0.0);
    assert!(losses_now > losses, "the restart was not seen as a tracking loss ({losses} → {losses_now})");
}

#[test]
fn losing_the_invalidation_connection_stops_serving_hits() {
    let (mut redis, proxy) = setup_with(FAST_FAIL);
    let mut direct = redis.direct();
    set(&mut direct, "lost", "cached-value");
    std::thread::sleep(SETTLE);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["GET", "lost"]), bulk("cached-value"));
    let hits = stats(&proxy).hits;
    assert_eq!(raw.call(&["GET", "lost"]), bulk("cached-value"));
    assert!(stats(&proxy).hits > hits, "not cached: {:?}", stats(&proxy));
    let (_, metrics) = proxy.admin_get("/metrics");
    let losses = metric(&metrics, "nearcache_tracking_losses_total").unwrap_or(0.0);

    drop(direct);
    redis.kill();
    let mut last = stats(&proxy);
    let inactive = eventually(Duration::from_secs(5), || {
        last = stats(&proxy);
        !last.active
    });
    assert!(inactive, "the cache still claims to be active after the upstream died: {last:?}");
    let (_, metrics) = proxy.admin_get("/metrics");
    let losses_now = metric(&metrics, "nearcache_tracking_losses_total").unwrap_or(0.0);
    assert!(losses_now >= 1.0 && losses_now > losses, "tracking losses {losses} → {losses_now}");

    for _ in 0..5 {
        let reply = raw.call(&["GET", "lost"]);
        assert!(reply.starts_with("-ERR upstream"), "a read with the upstream down returned {reply:?}");
    }
    assert_eq!(stats(&proxy).entries, 0, "{:?}", stats(&proxy));
}

// ---------------------------------------------------------------- bounds and shapes

#[test]
fn cache_size_is_bounded_in_bytes() {
    let (redis, proxy) = setup_with("[cache]\nmax_bytes = 100000\n");
    let mut direct = redis.direct();
    let value = |i: usize| format!("{i:04}{}", "x".repeat(996));
    let mut pipe = redis::pipe();
    for i in 0..1000 {
        pipe.cmd("SET").arg(format!("big:{i}")).arg(value(i)).ignore();
    }
    let () = pipe.query(&mut direct).expect("SETs");
    std::thread::sleep(SETTLE);

    let mut conn = proxy.conn();
    for i in 0..1000 {
        assert_eq!(get(&mut conn, &format!("big:{i}")), Some(value(i)), "big:{i}");
    }
    let mut last = stats(&proxy);
    let bounded = eventually(Duration::from_secs(3), || {
        last = stats(&proxy);
        last.bytes <= 100_000 && last.entries < 1000
    });
    println!("after reading 1,000,000 bytes through a 100,000-byte cache: {last:?}");
    assert!(bounded, "the cache exceeds its bound: {last:?}");
    // It still caches something.
    assert!(last.entries > 0, "{last:?}");
}

#[test]
fn resp2_and_resp3_replies_are_cached_separately() {
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    let _: i64 = redis::cmd("HSET").arg("h").arg("a").arg(1).arg("b").arg(2).query(&mut direct).expect("HSET");
    std::thread::sleep(SETTLE);
    let resp2_expected = direct_raw(&redis).call(&["HGETALL", "h"]);
    assert!(resp2_expected.starts_with("*4\r\n"), "{resp2_expected:?}");
    let mut direct3 = direct_raw(&redis);
    direct3.call(&["HELLO", "3"]);
    let resp3_expected = direct3.call(&["HGETALL", "h"]);
    assert!(resp3_expected.starts_with("%2\r\n"), "{resp3_expected:?}");

    let hgetalls = calls(&mut direct, "hgetall");
    let mut two = proxy.raw();
    assert_eq!(two.call(&["HGETALL", "h"]), resp2_expected);
    assert_eq!(two.call(&["HGETALL", "h"]), resp2_expected);
    assert_eq!(calls(&mut direct, "hgetall") - hgetalls, 1, "RESP2: the second HGETALL was not a hit");

    let mut three = proxy.raw();
    assert!(three.call(&["HELLO", "3"]).starts_with('%'));
    wait_ready_resp3(&mut three);
    let hgetalls = calls(&mut direct, "hgetall");
    assert_eq!(three.call(&["HGETALL", "h"]), resp3_expected, "RESP3 must not get the cached RESP2 reply");
    assert_eq!(three.call(&["HGETALL", "h"]), resp3_expected);
    assert_eq!(calls(&mut direct, "hgetall") - hgetalls, 1, "RESP3: the second HGETALL was not a hit");
    // The RESP2 reply is still cached, unchanged.
    assert_eq!(two.call(&["HGETALL", "h"]), resp2_expected);
    assert_eq!(calls(&mut direct, "hgetall") - hgetalls, 1);

    // A missing key: nil in each protocol's own encoding, from the cache too.
    let gets = calls(&mut direct, "get");
    assert_eq!(two.call(&["GET", "missing"]), "$-1\r\n");
    assert_eq!(two.call(&["GET", "missing"]), "$-1\r\n");
    assert_eq!(three.call(&["GET", "missing"]), "_\r\n");
    assert_eq!(three.call(&["GET", "missing"]), "_\r\n");
    assert_eq!(calls(&mut direct, "get") - gets, 2, "one upstream GET per protocol");
}

/// The argument lists of the slow log entries for `cmd`, oldest first.
fn logged(direct: &mut redis::Connection, cmd: &str) -> Vec<Vec<String>> {
    let entries: Vec<redis::Value> = redis::cmd("SLOWLOG").arg("GET").arg(1000).query(direct).expect("SLOWLOG GET");
    let mut out: Vec<Vec<String>> = entries
        .iter()
        .filter_map(|e| match e {
            redis::Value::Array(fields) => match fields.get(3) {
                Some(redis::Value::Array(args)) => Some(
                    args.iter()
                        .map(|a| match a {
                            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                            other => format!("{other:?}"),
                        })
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            },
            _ => None,
        })
        .filter(|args| args.first().is_some_and(|a| a.eq_ignore_ascii_case(cmd)))
        .collect();
    out.reverse();
    out
}

#[test]
fn mget_fetches_only_the_keys_not_cached() {
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    set(&mut direct, "a", "1");
    set(&mut direct, "b", "2");
    let () = redis::cmd("CONFIG").arg("SET").arg("slowlog-log-slower-than").arg(0).query(&mut direct).expect("CONFIG");
    let () = redis::cmd("CONFIG").arg("SET").arg("slowlog-max-len").arg(1000).query(&mut direct).expect("CONFIG");
    std::thread::sleep(SETTLE);

    let mut conn = proxy.conn();
    let gets = calls(&mut direct, "get");
    assert_eq!(get(&mut conn, "a").as_deref(), Some("1"));
    assert_eq!(calls(&mut direct, "get") - gets, 1);

    let () = redis::cmd("SLOWLOG").arg("RESET").query(&mut direct).expect("SLOWLOG RESET");
    let mgets = calls(&mut direct, "mget");
    let values: Vec<Option<String>> = redis::cmd("MGET").arg("a").arg("b").arg("c").query(&mut conn).expect("MGET");
    assert_eq!(values, vec![Some("1".into()), Some("2".into()), None]);
    assert_eq!(calls(&mut direct, "mget") - mgets, 1);
    assert_eq!(logged(&mut direct, "mget"), vec![vec!["MGET".to_string(), "b".into(), "c".into()]]);

    let mgets = calls(&mut direct, "mget");
    let gets = calls(&mut direct, "get");
    let values: Vec<Option<String>> = redis::cmd("MGET").arg("a").arg("b").arg("c").query(&mut conn).expect("MGET");
    assert_eq!(values, vec![Some("1".into()), Some("2".into()), None]);
    let values: Vec<Option<String>> = redis::cmd("MGET").arg("c").arg("b").arg("a").query(&mut conn).expect("MGET");
    assert_eq!(values, vec![None, Some("2".into()), Some("1".into())]);
    assert_eq!(calls(&mut direct, "mget") - mgets, 0, "a fully cached MGET went upstream");
    assert_eq!(calls(&mut direct, "get") - gets, 0);
}

#[test]
fn a_get_after_mget_of_a_non_string_key_is_still_wrongtype() {
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    let () = redis::cmd("HSET").arg("h").arg("f").arg("1").query(&mut direct).expect("HSET");
    std::thread::sleep(SETTLE);
    let mut conn = proxy.raw();
    for _ in 0..2 {
        assert_eq!(conn.call(&["MGET", "h", "missing"]), "*2\r\n$-1\r\n$-1\r\n");
    }
    let wrongtype = "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n";
    assert_eq!(conn.call(&["GET", "h"]), wrongtype);
    assert_eq!(conn.call(&["GET", "h"]), wrongtype);
    assert_eq!(conn.call(&["GET", "missing"]), "$-1\r\n");
}

#[test]
fn policies_decide_what_is_cached() {
    let toml = "[cache]\ndefault_ttl = \"off\"\n[[cache.policy]]\npattern = \"secrets:*\"\nttl = \"10m\"\n\
                [[cache.policy]]\npattern = \"ratelimit:*\"\ncache = false\n";
    let (redis, proxy) = setup_with(toml);
    let mut direct = redis.direct();
    for k in ["secrets:x", "ratelimit:x", "other"] {
        set(&mut direct, k, &format!("v-{k}"));
    }
    std::thread::sleep(SETTLE);
    let mut conn = proxy.conn();
    for (key, upstream_reads) in [("secrets:x", 1), ("ratelimit:x", 3), ("other", 3)] {
        let gets = calls(&mut direct, "get");
        for _ in 0..3 {
            assert_eq!(get(&mut conn, key), Some(format!("v-{key}")));
        }
        assert_eq!(calls(&mut direct, "get") - gets, upstream_reads, "upstream GETs for 3 reads of {key}");
    }
    // The cached policy key still follows writes.
    set(&mut direct, "secrets:x", "rotated");
    let mut last = None;
    assert!(
        eventually(Duration::from_secs(1), || {
            last = get(&mut conn, "secrets:x");
            last.as_deref() == Some("rotated")
        }),
        "secrets:x still {last:?}"
    );
}

#[test]
fn concurrent_misses_share_one_upstream_read() {
    const CLIENTS: usize = 20;
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    set(&mut direct, "flight", "landed");
    std::thread::sleep(SETTLE);
    let mut conns: Vec<redis::Connection> = (0..CLIENTS).map(|_| proxy.conn()).collect();
    for c in &mut conns {
        let _: String = redis::cmd("PING").query(c).expect("PING");
    }
    let gets = calls(&mut direct, "get");

    let () = redis::cmd("CLIENT").arg("PAUSE").arg(300).arg("ALL").query(&mut direct).expect("CLIENT PAUSE");
    let barrier = Arc::new(Barrier::new(CLIENTS));
    let threads: Vec<_> = conns
        .into_iter()
        .map(|mut c| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                get(&mut c, "flight")
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("reader").as_deref(), Some("landed"));
    }
    let upstream = calls(&mut direct, "get") - gets;
    println!("single flight: {CLIENTS} concurrent misses → {upstream} upstream GET(s)");
    assert!(upstream <= 2, "{CLIENTS} concurrent misses sent {upstream} GETs upstream");
}

#[test]
fn client_side_tracking_through_the_proxy() {
    let (_redis, proxy) = setup();
    let mut writer = proxy.raw();
    assert_eq!(writer.call(&["SET", "tk", "1"]), "+OK\r\n");

    let mut tracked = proxy.raw();
    assert!(tracked.call(&["HELLO", "3"]).starts_with('%'));
    wait_ready_resp3(&mut tracked);
    assert_eq!(tracked.call(&["CLIENT", "TRACKING", "on"]), "+OK\r\n");
    assert_eq!(tracked.call(&["GET", "tk"]), "$1\r\n1\r\n");

    let push = invalidation_after_write(&mut writer, &mut tracked, "tk");
    assert!(push.starts_with(">2\r\n$10\r\ninvalidate\r\n"), "{push:?}");
    assert_eq!(tracked.call(&["GET", "tk"]), "$1\r\n2\r\n");
}

/// Sets `key` to 2 through `writer`; the frame `listener` receives within
/// 2 s, which must name the key.
fn invalidation_after_write(writer: &mut common::Raw, listener: &mut common::Raw, key: &str) -> String {
    assert_eq!(writer.call(&["SET", key, "2"]), "+OK\r\n");
    listener.stream.set_read_timeout(Some(Duration::from_secs(2))).expect("timeout");
    let frame = listener.try_read_frame().map(|f| String::from_utf8_lossy(&f).into_owned());
    let frame = frame.expect("no invalidation within 2 s");
    assert!(frame.contains(&format!("${}\r\n{key}\r\n", key.len())), "{frame:?}");
    frame
}

/// The id `CLIENT ID` gives `conn`.
fn client_id(conn: &mut common::Raw) -> String {
    conn.call(&["CLIENT", "ID"]).trim_start_matches(':').trim_end().to_string()
}

#[test]
fn resp2_tracking_redirects_to_a_subscribed_client() {
    let (_redis, proxy) = setup();
    let mut writer = proxy.raw();
    assert_eq!(writer.call(&["SET", "rk", "1"]), "+OK\r\n");

    let mut listener = proxy.raw();
    let id = client_id(&mut listener);
    let subscribed = listener.call(&["SUBSCRIBE", "__redis__:invalidate"]);
    assert!(subscribed.contains("__redis__:invalidate"), "{subscribed:?}");

    let mut tracked = proxy.raw();
    let refused = tracked.call(&["CLIENT", "TRACKING", "on", "REDIRECT", "987654321"]);
    assert_eq!(refused, "-ERR The client ID you want redirect to does not exist\r\n");
    let refused = tracked.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &client_id(&mut writer)]);
    assert!(
        refused.starts_with("-ERR the client ID you want redirect to has no connection to Redis yet"),
        "{refused:?}"
    );
    assert_eq!(tracked.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]), "+OK\r\n");
    assert_eq!(tracked.call(&["CLIENT", "GETREDIR"]), format!(":{id}\r\n"), "the proxy's id, not Redis'");
    let info = tracked.call(&["CLIENT", "TRACKINGINFO"]);
    assert!(info.contains(&format!("$8\r\nredirect\r\n:{id}\r\n")), "{info:?}");
    assert_eq!(tracked.call(&["GET", "rk"]), "$1\r\n1\r\n");

    let message = invalidation_after_write(&mut writer, &mut listener, "rk");
    assert!(message.starts_with("*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n"), "{message:?}");
}

/// A RESP3 client gets invalidations redirected to it as pushes, whatever
/// else it is doing: one that holds a dedicated connection for another
/// reason (here `SELECT 1`) and only listens gets them at once, not with
/// its next reply.
#[test]
fn resp3_redirected_invalidations_reach_an_idle_client_at_once() {
    let (_redis, proxy) = setup();
    let mut writer = proxy.raw();
    assert_eq!(writer.call(&["SET", "r3", "1"]), "+OK\r\n");
    let mut listener = proxy.raw();
    assert!(listener.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(listener.call(&["SELECT", "1"]), "+OK\r\n");
    let id = client_id(&mut listener);
    let mut tracked = proxy.raw();
    assert_eq!(tracked.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]), "+OK\r\n");
    assert_eq!(tracked.call(&["GET", "r3"]), "$1\r\n1\r\n");
    let push = invalidation_after_write(&mut writer, &mut listener, "r3");
    assert!(push.starts_with(">2\r\n$10\r\ninvalidate\r\n"), "{push:?}");
}

/// A redirect may name any client, as with Redis: one that only listens
/// (RESP3, nothing sent since `HELLO 3`) gets the pushes at once; a client
/// may name itself; `CLIENT GETREDIR` names the target by the proxy's ids.
/// The target is asked for a connection of its own first (see
/// `server::redirects`).
#[test]
fn a_redirect_may_name_a_client_that_only_listens_or_itself() {
    let (_redis, proxy) = setup();
    let mut writer = proxy.raw();
    assert_eq!(writer.call(&["SET", "rl", "1"]), "+OK\r\n");
    let mut listener = proxy.raw();
    assert!(listener.call(&["HELLO", "3"]).starts_with('%'));
    let id = client_id(&mut listener);
    let mut tracked = proxy.raw();
    assert_eq!(tracked.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &id]), "+OK\r\n");
    assert_eq!(tracked.call(&["CLIENT", "GETREDIR"]), format!(":{id}\r\n"));
    assert_eq!(tracked.call(&["GET", "rl"]), "$1\r\n1\r\n");
    let push = invalidation_after_write(&mut writer, &mut listener, "rl");
    assert_eq!(push, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nrl\r\n");
    // The listener is served as before.
    assert_eq!(listener.call(&["GET", "rl"]), "$1\r\n2\r\n");

    let mut itself = proxy.raw();
    assert!(itself.call(&["HELLO", "3"]).starts_with('%'));
    let own = client_id(&mut itself);
    assert_eq!(itself.call(&["CLIENT", "TRACKING", "on", "REDIRECT", &own]), "+OK\r\n");
    assert_eq!(itself.call(&["CLIENT", "GETREDIR"]), format!(":{own}\r\n"));
    assert_eq!(itself.call(&["GET", "rm"]), "_\r\n");
    let push = invalidation_after_write(&mut writer, &mut itself, "rm");
    assert_eq!(push, ">2\r\n$10\r\ninvalidate\r\n*1\r\n$2\r\nrm\r\n");
}

#[test]
fn tracking_the_proxy_cannot_set_up_ends_the_connection() {
    for failover in [false, true] {
        let toml = format!("[upstream]\nconnect_timeout = \"300ms\"\n[failover]\nenabled = {failover}\n");
        let (mut redis, proxy) = setup_with(&toml);
        let mut tracked = proxy.raw();
        assert!(tracked.call(&["HELLO", "3"]).starts_with('%'));
        redis.kill();
        let refused = tracked.call(&["CLIENT", "TRACKING", "on"]);
        assert!(refused.starts_with('-'), "failover {failover}: {refused:?}");
        assert!(tracked.is_closed(), "failover {failover}: the client was left believing it tracks");
    }
}

#[test]
fn flushall_empties_the_cache() {
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    set(&mut direct, "f1", "one");
    set(&mut direct, "f2", "two");
    std::thread::sleep(SETTLE);
    let mut conn = proxy.conn();

    // Through the proxy.
    assert_cached(&mut direct, &mut conn, "f1", "one");
    let () = redis::cmd("FLUSHALL").query(&mut conn).expect("FLUSHALL");
    assert_eq!(get(&mut conn, "f1"), None, "served after FLUSHALL through the proxy");

    // Directly: only Redis' flush invalidation (a null) tells the proxy.
    set(&mut direct, "f2", "two");
    std::thread::sleep(SETTLE);
    assert_cached(&mut direct, &mut conn, "f2", "two");
    let () = redis::cmd("FLUSHALL").query(&mut direct).expect("direct FLUSHALL");
    let mut last = None;
    let flushed = eventually(Duration::from_secs(1), || {
        last = get(&mut conn, "f2");
        last.is_none()
    });
    assert!(flushed, "f2 still served as {last:?} 1 s after a direct FLUSHALL");
}

// ---------------------------------------------------------------- admin and metrics

#[test]
fn admin_stats_and_pattern_invalidation() {
    let (redis, proxy) = setup();
    let (status, body) = proxy.admin_get("/cache/stats");
    assert_eq!(status, 200, "{body}");
    assert!(body.trim_start().starts_with('{') && body.trim_end().ends_with('}'), "{body}");
    for field in ["entries", "bytes", "hits", "misses", "hit_rate"] {
        json_number(&body, field);
    }
    assert_eq!(json_field(&body, "active"), Some("true"), "{body}");

    let mut direct = redis.direct();
    let secrets = ["secrets:org1:aws", "secrets:org2:gcp"];
    let others = ["flow:org1:1", "user:7"];
    for k in secrets.iter().chain(&others) {
        set(&mut direct, k, &format!("v-{k}"));
    }
    std::thread::sleep(SETTLE);
    let mut conn = proxy.conn();
    let gets = calls(&mut direct, "get");
    for k in secrets.iter().chain(&others) {
        assert_eq!(get(&mut conn, k), Some(format!("v-{k}")));
        assert_eq!(get(&mut conn, k), Some(format!("v-{k}")));
    }
    assert_eq!(calls(&mut direct, "get") - gets, 4, "the keys were not all cached");
    let s = stats(&proxy);
    assert!(s.entries >= 4 && s.bytes > 0 && s.hits >= 4 && s.misses >= 4, "{s:?}");
    let (_, body) = proxy.admin_get("/cache/stats");
    let rate = json_number(&body, "hit_rate");
    assert!((rate - s.hits as f64 / (s.hits + s.misses) as f64).abs() < 0.01, "{body}");

    let (status, body) = proxy.admin_post("/cache/invalidate?pattern=secrets%3A*");
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.trim(), "{\"invalidated\":2}");

    let gets = calls(&mut direct, "get");
    for k in &secrets {
        assert_eq!(get(&mut conn, k), Some(format!("v-{k}")));
    }
    assert_eq!(calls(&mut direct, "get") - gets, 2, "invalidated keys must be read from upstream");
    let gets = calls(&mut direct, "get");
    for k in &others {
        assert_eq!(get(&mut conn, k), Some(format!("v-{k}")));
    }
    assert_eq!(calls(&mut direct, "get") - gets, 0, "keys not matching the pattern must still be hits");

    let (status, body) = proxy.admin_post("/cache/invalidate");
    assert_eq!(status, 400, "{body}");
    let (status, body) = proxy.admin_get("/cache/invalidate?pattern=secrets%3A*");
    assert_eq!(status, 405, "{body}");
}

#[test]
fn cache_metrics_are_exported() {
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    set(&mut direct, "m", "1");
    std::thread::sleep(SETTLE);
    let mut conn = proxy.conn();
    assert_eq!(get(&mut conn, "m").as_deref(), Some("1"));
    assert_eq!(get(&mut conn, "m").as_deref(), Some("1"));
    // A write through the proxy evicts the cached key (an invalidation).
    let () = redis::cmd("SET").arg("m").arg("2").query(&mut conn).expect("SET");
    assert_eq!(get(&mut conn, "m").as_deref(), Some("2"));

    let series = [
        "nearcache_cache_hits_total",
        "nearcache_cache_misses_total",
        "nearcache_cache_evictions_total{reason=\"invalidation\"}",
        "nearcache_cache_invalidations_total",
        "nearcache_cache_bytes",
        "nearcache_cache_entries",
        "nearcache_tracking_connected",
    ];
    let mut body = String::new();
    let all = eventually(Duration::from_secs(2), || {
        let (status, text) = proxy.admin_get("/metrics");
        body = text;
        status == 200 && series.iter().all(|s| metric(&body, s).is_some())
    });
    let missing: Vec<_> = series.iter().filter(|s| metric(&body, s).is_none()).collect();
    assert!(all, "missing series {missing:?} in\n{body}");
    assert!(metric(&body, "nearcache_cache_hits_total").unwrap() >= 1.0);
    assert!(metric(&body, "nearcache_cache_misses_total").unwrap() >= 1.0);
    assert!(metric(&body, "nearcache_cache_evictions_total{reason=\"invalidation\"}").unwrap() >= 1.0);
    assert!(metric(&body, "nearcache_cache_invalidations_total").unwrap() >= 1.0);
}

#[test]
fn second_sight_admission_passes_one_off_reads_through() {
    // The default: no `admission` given.
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, "");
    wait_ready(&proxy);
    wait_active(&proxy);
    let mut direct = redis.direct();
    set(&mut direct, "once", "1");
    std::thread::sleep(SETTLE);
    let (gets, pttls) = (calls(&mut direct, "get"), calls(&mut direct, "pttl"));
    let mut raw = proxy.raw();
    // First sight: forwarded as it is, nothing fetched for the cache.
    assert_eq!(raw.call(&["GET", "once"]), bulk("1"));
    assert_eq!((calls(&mut direct, "get") - gets, calls(&mut direct, "pttl") - pttls), (1, 0));
    // Second sight: a miss that fills; third: a hit.
    assert_eq!(raw.call(&["GET", "once"]), bulk("1"));
    assert_eq!((calls(&mut direct, "get") - gets, calls(&mut direct, "pttl") - pttls), (2, 1));
    assert_eq!(raw.call(&["GET", "once"]), bulk("1"));
    assert_eq!(calls(&mut direct, "get") - gets, 2, "the third read should be a hit");
    // Coherence holds for admitted keys as for any other.
    set(&mut direct, "once", "2");
    assert!(eventually(Duration::from_secs(1), || raw.call(&["GET", "once"]) == bulk("2")));
}

#[test]
fn admission_window_bounds_how_long_a_first_read_is_remembered() {
    // Three keys' first reads are remembered, then the memory starts over.
    let redis = RedisServer::start();
    let proxy = start_with(&redis, "[cache]\nadmission = \"second\"\nadmission_window = 3\n");
    let mut direct = redis.direct();
    let mut raw = proxy.raw();
    let mut fills_of = |raw: &mut common::Raw, key: &str| {
        let pttls = calls(&mut direct, "pttl");
        assert_eq!(raw.call(&["GET", key]), "$-1\r\n");
        calls(&mut direct, "pttl") - pttls
    };
    // Read again within the window: cached (filled with its PTTL).
    assert_eq!(fills_of(&mut raw, "a"), 0, "a first read passes through");
    assert_eq!(fills_of(&mut raw, "a"), 1, "a second read within the window fills");
    // Read again after more first reads than the window holds: forgotten,
    // passed through again. A key can look seen when other keys set its
    // bits (under 1% of reads), so one of five may fill.
    let mut forgotten = 0;
    for i in 0..5 {
        let key = format!("k{i}");
        fills_of(&mut raw, &key);
        for j in 0..6 {
            fills_of(&mut raw, &format!("filler{i}-{j}"));
        }
        if fills_of(&mut raw, &key) == 0 {
            forgotten += 1;
        }
    }
    assert!(forgotten >= 4, "only {forgotten} of 5 keys were forgotten past the window");
}

#[test]
fn other_databases_never_see_cached_db0_values() {
    let (redis, proxy) = setup();
    let mut direct = redis.direct();
    set(&mut direct, "shared-name", "db0");
    std::thread::sleep(SETTLE);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["GET", "shared-name"]), bulk("db0"));
    assert_eq!(raw.call(&["GET", "shared-name"]), bulk("db0"), "cached in db 0");
    assert_eq!(raw.call(&["SELECT", "3"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "shared-name"]), "$-1\r\n", "db 3 must not get db 0's cached value");
    assert_eq!(raw.call(&["SET", "shared-name", "db3"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "shared-name"]), bulk("db3"));
    assert_eq!(raw.call(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(raw.call(&["GET", "shared-name"]), bulk("db0"));
}
