//! Failover to local memory against real redis-servers that the tests kill,
//! restart, pause and start late: nothing acknowledged is lost, cached keys
//! keep being served, the journal is replayed before traffic goes upstream.
mod common;

use common::{eventually, free_port, held_port, metric, wait_for_port, Proxy, RedisServer};
use redis::Commands;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

const FAST: &str =
    "[upstream]\nrequest_timeout = \"500ms\"\nconnect_timeout = \"300ms\"\nreconnect_max_backoff = \"200ms\"\n\
                    [breaker]\nfailure_threshold = 3\nopen_for = \"300ms\"\nsuccess_threshold = 2\n";

/// `/ready` as (status, body).
fn ready(proxy: &Proxy) -> (u16, String) {
    proxy.admin_get("/ready")
}

fn mode(proxy: &Proxy) -> String {
    ready(proxy).1
}

fn wait_mode(proxy: &Proxy, want: &str, limit: Duration) {
    let ok = eventually(limit, || mode(proxy).contains(want));
    assert!(ok, "never reached {want}: {}", mode(proxy));
}

fn replayed(proxy: &Proxy, result: &str) -> f64 {
    let series = format!("nearcache_journal_replayed_total{{result=\"{result}\"}}");
    metric(&proxy.admin_get("/metrics").1, &series).unwrap_or(0.0)
}

#[test]
fn starts_without_an_upstream_and_replays_when_one_appears() {
    let held = held_port();
    let port = held.port;
    let proxy = Proxy::start_with(port, FAST);
    wait_mode(&proxy, "\"mode\":\"failover\"", Duration::from_secs(5));
    let (status, body) = ready(&proxy);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"upstream\":\"down\""), "{body}");

    let mut c = proxy.conn();
    let _: () = c.set("greeting", "hello").expect("SET in failover");
    for _ in 0..5 {
        let _: i64 = c.incr("visits", 1).expect("INCR in failover");
    }
    let _: () = c.rpush("queue", &["a", "b"]).expect("RPUSH");
    let _: () = c.hset("user:1", "name", "ada").expect("HSET");
    let _: () = c.sadd("tags", "x").expect("SADD");
    let _: () = c.zadd("board", "p1", 3.5).expect("ZADD");
    let got: String = c.get("greeting").expect("GET from the local store");
    assert_eq!(got, "hello");
    let visits: i64 = c.get("visits").expect("GET counter");
    assert_eq!(visits, 5);
    assert!(mode(&proxy).contains("\"journal_entries\":10"), "{}", mode(&proxy));

    let redis = RedisServer::start_on(port);
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    let mut d = redis.direct();
    assert_eq!(d.get::<_, String>("greeting").expect("get"), "hello");
    assert_eq!(d.get::<_, i64>("visits").expect("get"), 5);
    assert_eq!(d.lrange::<_, Vec<String>>("queue", 0, -1).expect("lrange"), vec!["a", "b"]);
    assert_eq!(d.hget::<_, _, String>("user:1", "name").expect("hget"), "ada");
    assert!(d.sismember::<_, _, bool>("tags", "x").expect("sismember"));
    assert_eq!(d.zscore::<_, _, f64>("board", "p1").expect("zscore"), 3.5);
    // (Metrics are per process: other tests in this binary add to them.)
    assert!(replayed(&proxy, "ok") >= 10.0);
    // Upstream again: the proxy serves what Redis has.
    let _: () = d.set("greeting", "from redis").expect("direct set");
    let got: String = c.get("greeting").expect("GET upstream");
    assert_eq!(got, "from redis");
}

/// What one load client saw.
#[derive(Default, Debug)]
struct Tally {
    hot_reads: u64,
    /// A wrong value for a hot key: never allowed.
    hot_wrong: Vec<String>,
    /// Hot reads that got an error (one in flight on a connection when
    /// Redis died, before failover began).
    hot_errors: Vec<String>,
    incr_ok: i64,
    incr_err: i64,
    push_ok: i64,
    push_err: i64,
    hset_ok: i64,
    slowest: Duration,
    /// From the kill to the first acknowledged INCR sent after it.
    first_after_kill: Option<Duration>,
}

fn load_client(proxy_url: String, id: usize, stop: Arc<AtomicBool>, killed: Arc<OnceLock<Instant>>) -> Tally {
    let client = redis::Client::open(proxy_url).expect("client");
    let mut c = client.get_connection().expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(5))).expect("timeout");
    let mut t = Tally::default();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let started = Instant::now();
        let key = format!("hot:{}", n % 10);
        match c.get::<_, String>(&key) {
            Ok(v) if v == format!("value-{}", n % 10) => t.hot_reads += 1,
            Ok(v) => t.hot_wrong.push(format!("{key}: {v:?}")),
            Err(e) => t.hot_errors.push(format!("{key}: {e}")),
        }
        let sent = Instant::now();
        match c.incr::<_, _, i64>(format!("ctr:{id}"), 1) {
            Ok(_) => {
                t.incr_ok += 1;
                if let Some(at) = killed.get().filter(|at| sent >= **at && t.first_after_kill.is_none()) {
                    t.first_after_kill = Some(at.elapsed());
                }
            }
            Err(_) => t.incr_err += 1,
        }
        match c.lpush::<_, _, i64>(format!("list:{id}"), n) {
            Ok(_) => t.push_ok += 1,
            Err(_) => t.push_err += 1,
        }
        if c.hset::<_, _, _, i64>(format!("hash:{id}"), format!("f{n}"), n).is_ok() {
            t.hset_ok += 1;
        }
        t.slowest = t.slowest.max(started.elapsed() / 4);
    }
    t
}

#[test]
fn killing_the_upstream_under_load_loses_no_acknowledged_write() {
    const CLIENTS: usize = 8;
    let mut redis = RedisServer::start_persistent();
    let proxy = Proxy::start_with(redis.port, FAST);
    common::wait_ready(&proxy);
    // What follows is read to be cached: only once invalidations flow.
    common::wait_active(&proxy);
    let mut c = proxy.conn();
    for i in 0..10 {
        let _: () = c.set(format!("hot:{i}"), format!("value-{i}")).expect("seed");
        let _: String = c.get(format!("hot:{i}")).expect("cache it");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let killed_at = Arc::new(OnceLock::new());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|id| {
            let (url, stop, killed_at) = (proxy.url(), stop.clone(), killed_at.clone());
            std::thread::spawn(move || load_client(url, id, stop, killed_at))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(700));
    let killed = Instant::now();
    redis.kill();
    let _ = killed_at.set(killed);
    wait_mode(&proxy, "\"mode\":\"failover\"", Duration::from_secs(5));
    let switched = killed.elapsed();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(mode(&proxy).contains("\"mode\":\"failover\""), "{}", mode(&proxy));
    redis.restart();
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let tallies: Vec<Tally> = clients.into_iter().map(|h| h.join().expect("client thread")).collect();

    let mut d = redis.direct();
    let mut writes = 0;
    for (id, t) in tallies.iter().enumerate() {
        assert!(t.hot_wrong.is_empty(), "client {id}: wrong values for cached keys: {:?}", t.hot_wrong);
        // Losing the invalidation connection stops hits at once (writes
        // could go unnoticed): a read sent upstream just before the pool
        // saw Redis die gets the honest error, then failover serves.
        assert!(t.hot_errors.len() <= 1, "client {id}: cached keys must keep being served: {:?}", t.hot_errors);
        assert!(
            t.hot_errors.iter().all(|e| e.contains("upstream connection lost") || e.contains("upstream unavailable")),
            "client {id}: {:?}",
            t.hot_errors
        );
        assert!(t.slowest < Duration::from_secs(2), "client {id}: a request took {:?}", t.slowest);
        let ctr: i64 = d.get(format!("ctr:{id}")).expect("counter");
        // A write in flight when Redis died may or may not have been
        // applied (its client got an error): acknowledged ≤ upstream ≤
        // acknowledged + failed.
        assert!(ctr >= t.incr_ok && ctr <= t.incr_ok + t.incr_err, "client {id}: ctr {ctr} vs {t:?}");
        let len: i64 = d.llen(format!("list:{id}")).expect("llen");
        assert!(len >= t.push_ok && len <= t.push_ok + t.push_err, "client {id}: llen {len} vs {t:?}");
        let fields: i64 = d.hlen(format!("hash:{id}")).expect("hlen");
        assert!(fields >= t.hset_ok, "client {id}: hlen {fields} vs {t:?}");
        assert!(t.incr_err + t.push_err <= 4, "client {id}: too many failed writes: {t:?}");
        writes += t.incr_ok + t.push_ok + t.hset_ok;
    }
    let mut served_after: Vec<Duration> = tallies.iter().filter_map(|t| t.first_after_kill).collect();
    served_after.sort();
    assert_eq!(served_after.len(), CLIENTS, "a client never got a write through after the kill");
    let replayed_ok = replayed(&proxy, "ok");
    assert!(replayed_ok > 0.0, "nothing was journaled");
    let body = proxy.admin_get("/metrics").1;
    // Gauges are per process (tests run in parallel): only their presence
    // is checked here; /ready above gave this proxy's values.
    assert!(body.lines().any(|l| l.starts_with("nearcache_failover_active{upstream=")), "{body}");
    assert!(metric(&body, "nearcache_journal_entries").is_some(), "{body}");
    println!(
        "{CLIENTS} clients, {writes} acknowledged writes, {replayed_ok} replayed; /ready said failover {switched:?} \
         after the kill; first write served after the kill, per client: median {:?}, max {:?}",
        served_after[CLIENTS / 2],
        served_after[CLIENTS - 1]
    );
}

#[test]
fn a_hung_upstream_fails_over_within_the_timeouts_and_recovers() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, FAST);
    common::wait_ready(&proxy);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "before", "1"]), "+OK\r\n");
    redis.pause();
    let paused = Instant::now();
    // request_timeout 500 ms; failover within a few timeouts, every request
    // answered (reply or error) within about one.
    let mut slowest = Duration::ZERO;
    let switched = eventually(Duration::from_secs(5), || {
        let started = Instant::now();
        let reply = raw.call(&["SET", "during", "x"]);
        slowest = slowest.max(started.elapsed());
        reply == "+OK\r\n" && mode(&proxy).contains("failover")
    });
    assert!(switched, "never failed over: {}", mode(&proxy));
    assert!(paused.elapsed() < Duration::from_millis(500 * 3 + 1000), "failover after {:?}", paused.elapsed());
    assert!(slowest < Duration::from_millis(1500), "a request took {slowest:?}");
    assert_eq!(raw.call(&["INCRBY", "n", "7"]), ":7\r\n");
    redis.resume();
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    let mut d = redis.direct();
    assert_eq!(d.get::<_, String>("during").expect("get"), "x");
    assert_eq!(d.get::<_, i64>("n").expect("get"), 7);
}

/// Pauses Redis and reads through the proxy until it fails over; reads
/// only, so nothing written is left pending in the paused Redis to run when
/// it resumes. Returns the connection that did it.
fn pause_into_failover(redis: &RedisServer, proxy: &Proxy) -> common::Raw {
    redis.pause();
    let mut raw = proxy.raw();
    let switched = eventually(Duration::from_secs(5), || {
        raw.call(&["GET", "anything"]);
        mode(proxy).contains("\"mode\":\"failover\"")
    });
    assert!(switched, "never failed over: {}", mode(proxy));
    raw
}

#[test]
fn a_round_applied_after_its_timeout_is_not_replayed_twice() {
    let redis = RedisServer::start();
    let mut d = redis.direct();
    // A set whose deletion keeps Redis busier than the request timeout
    // (not deleted in the background, as Valkey does by default).
    let _: () = redis::cmd("CONFIG").arg("SET").arg("lazyfree-lazy-user-del").arg("no").query(&mut d).expect("config");
    let mut pipe = redis::pipe();
    for chunk in 0..200 {
        pipe.cmd("SADD").arg("big").arg((0..10_000).map(|i| chunk * 10_000 + i).collect::<Vec<i64>>()).ignore();
    }
    let _: () = pipe.query(&mut d).expect("fill the big set");
    let config = FAST.replace("request_timeout = \"500ms\"", "request_timeout = \"50ms\"");
    let proxy = Proxy::start_with(redis.port, &config);
    common::wait_ready(&proxy);
    let mut raw = pause_into_failover(&redis, &proxy);
    assert_eq!(raw.call(&["DEL", "big"]), ":0\r\n", "the store does not know the set");
    for n in 1..=5 {
        assert_eq!(raw.call(&["INCR", "ctr"]), format!(":{n}\r\n"));
    }
    redis.resume();
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    let (_, del_usec) = common::command_stats(&mut d, "del");
    println!("the replayed DEL took {del_usec} µs");
    assert!(del_usec > 50_000.0, "the replayed DEL took {del_usec} µs: not slower than the timeout, nothing tested");
    assert_eq!(d.get::<_, i64>("ctr").expect("get"), 5, "the round was applied once");
    assert!(!d.exists::<_, bool>("big").expect("exists"));
    let markers: Vec<String> = d.keys("__nearcache__:*").expect("keys");
    assert!(markers.is_empty(), "the replay marker is deleted after recovery: {markers:?}");
}

#[test]
fn writes_the_upstream_cannot_take_yet_stay_journaled() {
    let redis = RedisServer::start();
    let mut d = redis.direct();
    let proxy = Proxy::start_with(redis.port, FAST);
    common::wait_ready(&proxy);
    // Out of memory: Redis refuses writes (-OOM) but answers PING.
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(1).query(&mut d).expect("maxmemory");
    let mut raw = pause_into_failover(&redis, &proxy);
    assert_eq!(raw.call(&["SET", "kept", "1"]), "+OK\r\n");
    assert_eq!(raw.call(&["INCR", "kept-counter"]), ":1\r\n");
    redis.resume();
    // Probes answer, every replay is refused: nothing lost, nothing
    // dead-lettered, and while Redis is reachable nothing is answered from
    // local memory (it could contradict Redis): every request gets why.
    wait_mode(&proxy, "\"mode\":\"replay_refused\",\"journal_entries\":2,\"dead_letters\":0", Duration::from_secs(5));
    let (status, body) = ready(&proxy);
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"refused\":\"replay refused: OOM command not allowed"), "{body}");
    let refused = "-TRYAGAIN upstream refuses the failover journal's replay (replay refused: OOM command not allowed";
    for cmd in [&["GET", "kept"][..], &["GET", "anything"], &["DEL", "kept"], &["SET", "x", "1"]] {
        let reply = raw.call(cmd);
        assert!(reply.starts_with(refused), "{cmd:?}: {reply:?}");
    }
    assert!(mode(&proxy).contains("\"journal_entries\":2"), "refused requests are not journaled: {}", mode(&proxy));
    let _: () = redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg(0).query(&mut d).expect("maxmemory");
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    assert_eq!(d.get::<_, String>("kept").expect("get"), "1");
    assert_eq!(d.get::<_, i64>("kept-counter").expect("get"), 1);
}

#[test]
fn a_conflicting_replay_becomes_a_dead_letter() {
    let dir = std::env::temp_dir().join(format!("nearcache-deadletter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let dead = dir.join("dead.resp");
    let _ = std::fs::remove_file(&dead);
    let mut redis = RedisServer::start();
    let slow_recovery = format!(
        "{}[failover]\ndead_letter_path = \"{}\"\n",
        FAST.replace("open_for = \"300ms\"", "open_for = \"2s\""),
        dead.display()
    );
    let proxy = Proxy::start_with(redis.port, &slow_recovery);
    common::wait_ready(&proxy);
    redis.kill();
    let mut raw = proxy.raw();
    let accepted = eventually(Duration::from_secs(5), || raw.call(&["LPUSH", "shared", "a"]) == ":1\r\n");
    assert!(accepted, "LPUSH not accepted in failover");
    assert_eq!(raw.call(&["SET", "fine", "1"]), "+OK\r\n");
    // Someone else makes `shared` a string upstream before the replay.
    redis.restart();
    let mut d = redis.direct();
    let _: () = d.set("shared", "a string").expect("direct set");
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    assert!(mode(&proxy).contains("\"dead_letters\":1"), "{}", mode(&proxy));
    assert!(replayed(&proxy, "failed") >= 1.0);
    assert_eq!(d.get::<_, String>("shared").expect("get"), "a string");
    assert_eq!(d.get::<_, String>("fine").expect("get"), "1");
    let kept = std::fs::read(&dead).expect("dead-letter file");
    assert_eq!(kept, b"*3\r\n$5\r\nLPUSH\r\n$6\r\nshared\r\n$1\r\na\r\n");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn discard_on_recover_drops_the_journal_and_counts_it() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, &format!("{FAST}[failover]\non_recover = \"discard\"\n"));
    common::wait_ready(&proxy);
    redis.kill();
    let mut raw = proxy.raw();
    assert!(eventually(Duration::from_secs(5), || raw.call(&["SET", "lost", "1"]) == "+OK\r\n"));
    redis.restart();
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    assert!(replayed(&proxy, "discarded") >= 1.0);
    assert_eq!(raw.call(&["GET", "lost"]), "$-1\r\n");
}

#[test]
fn commands_the_store_cannot_serve_get_tryagain() {
    let held = held_port();
    let proxy = Proxy::start_with(held.port, FAST);
    wait_mode(&proxy, "\"mode\":\"failover\"", Duration::from_secs(5));
    let mut raw = proxy.raw();
    for (cmd, name) in [
        (&["XADD", "s", "*", "f", "v"][..], "XADD"),
        (&["WATCH", "k"][..], "WATCH"),
        (&["BLPOP", "q", "0"][..], "BLPOP"),
        (&["SUBSCRIBE", "ch"][..], "SUBSCRIBE"),
        (&["NOSUCHCOMMAND"][..], "NOSUCHCOMMAND"),
    ] {
        let reply = raw.call(cmd);
        assert_eq!(reply, format!("-TRYAGAIN upstream unavailable, {name} not available in failover mode\r\n"));
    }
    // The refused WATCH left nothing behind.
    assert_eq!(raw.call(&["SET", "k", "v", "EX", "100"]), "+OK\r\n");
    let ttl = raw.call(&["TTL", "k"]);
    assert!(ttl == ":100\r\n" || ttl == ":99\r\n", "{ttl:?}");
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    let body = proxy.admin_get("/metrics").1;
    assert!(metric(&body, "nearcache_failover_commands_total{result=\"refused\"}").is_some_and(|n| n >= 5.0));
    assert!(body.lines().any(|l| l.starts_with("nearcache_failover_active{upstream=")), "{body}");
}

/// A transaction in failover is refused whole, as Redis refuses one with
/// a command it rejected: nothing applied, nothing journaled, whether it
/// is sent command by command or pipelined.
#[test]
fn a_transaction_in_failover_is_refused_whole_never_split() {
    let held = held_port();
    let proxy = Proxy::start_with(held.port, FAST);
    wait_mode(&proxy, "\"mode\":\"failover\"", Duration::from_secs(5));
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "bal", "100"]), "+OK\r\n");
    let refused = "-TRYAGAIN upstream unavailable, transaction refused in failover mode\r\n";
    let abort = "-EXECABORT Transaction discarded because of previous errors.\r\n";
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["DECRBY", "bal", "30"]), refused);
    assert_eq!(raw.call(&["INCRBY", "other", "30"]), refused);
    assert_eq!(raw.call(&["EXEC"]), abort);
    // Pipelined, as issue #15 found it split.
    raw.send(b"*1\r\n$5\r\nMULTI\r\n*3\r\n$6\r\nDECRBY\r\n$3\r\nbal\r\n$2\r\n30\r\n*3\r\n$6\r\nINCRBY\r\n$5\r\nother\r\n$2\r\n30\r\n*1\r\n$4\r\nEXEC\r\n");
    let replies: Vec<String> = (0..4).map(|_| String::from_utf8_lossy(&raw.read_frame()).into_owned()).collect();
    assert_eq!(replies, ["+OK\r\n", refused, refused, abort]);
    // DISCARD ends one too; the connection is a plain one afterwards.
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["SET", "bal", "0"]), refused);
    assert_eq!(raw.call(&["DISCARD"]), "+OK\r\n");
    assert_eq!(raw.call(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(raw.call(&["GET", "bal"]), "$3\r\n100\r\n");
    assert_eq!(raw.call(&["GET", "other"]), "$-1\r\n");
    assert!(mode(&proxy).contains("\"journal_entries\":1,"), "only the SET is journaled: {}", mode(&proxy));
}

/// A transaction begun in failover stays refused when Redis comes back
/// before its EXEC: its commands were never queued anywhere.
#[test]
fn a_transaction_begun_in_failover_is_not_finished_upstream() {
    let held = held_port();
    let port = held.port;
    let proxy = Proxy::start_with(port, FAST);
    wait_mode(&proxy, "\"mode\":\"failover\"", Duration::from_secs(5));
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert!(raw.call(&["SET", "t", "1"]).starts_with("-TRYAGAIN"));
    let redis = RedisServer::start_on(port);
    wait_mode(&proxy, "\"mode\":\"normal\"", Duration::from_secs(10));
    assert!(raw.call(&["SET", "t", "2"]).starts_with("-TRYAGAIN"), "still inside the refused transaction");
    assert_eq!(raw.call(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert!(!redis.direct().exists::<_, bool>("t").expect("exists"));
    // Now upstream, a transaction is Redis' own.
    assert_eq!(raw.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(raw.call(&["SET", "t", "3"]), "+QUEUED\r\n");
    assert_eq!(raw.call(&["EXEC"]), "*1\r\n+OK\r\n");
    assert_eq!(redis.direct().get::<_, String>("t").expect("get"), "3");
}

#[test]
fn a_restart_after_a_crash_mid_replay_resumes_where_the_marker_says() {
    let dir = std::env::temp_dir().join(format!("nearcache-midreplay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let journal = dir.join("journal.aof");
    // What a proxy killed in the middle of a replay leaves: its journal, its
    // id, and upstream the first two entries applied with the marker at 2.
    let entries = ["SET", "INCR", "INCR", "INCR"].map(|cmd| match cmd {
        "SET" => "*3\r\n$3\r\nSET\r\n$8\r\nresumed?\r\n$3\r\nyes\r\n".to_string(),
        _ => "*2\r\n$4\r\nINCR\r\n$7\r\nresumes\r\n".to_string(),
    });
    std::fs::write(&journal, entries.concat()).expect("journal");
    std::fs::write(dir.join("journal.aof.id"), "00000000c0ffee42\n").expect("id");
    let redis = RedisServer::start();
    let mut d = redis.direct();
    let _: () = d.set("resumed?", "yes").expect("set");
    let _: () = d.set("resumes", 1).expect("set");
    let _: () = d.set("__nearcache__:replay:00000000c0ffee42", 2).expect("marker");

    let proxy = Proxy::start_with(redis.port, &format!("{FAST}[failover]\njournal_path = \"{}\"\n", journal.display()));
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    assert_eq!(d.get::<_, i64>("resumes").expect("get"), 3, "only the two entries after the marker were replayed");
    assert_eq!(std::fs::metadata(&journal).expect("journal").len(), 0, "replayed: truncated");
    let id = std::fs::read_to_string(dir.join("journal.aof.id")).expect("id");
    assert_ne!(id.trim(), "00000000c0ffee42", "an emptied journal gets a new id");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_crash_during_an_outage_keeps_the_journaled_writes() {
    let dir = std::env::temp_dir().join(format!("nearcache-crash-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let journal = dir.join("journal.aof");
    let _ = std::fs::remove_file(&journal);
    let held = held_port();
    let upstream_port = held.port;
    let listen = free_port();
    let config = dir.join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:{listen}\"\n[upstream]\nurl = \"redis://127.0.0.1:{upstream_port}\"\n\
             [admin]\nlisten = \"127.0.0.1:{}\"\n[failover]\njournal_path = \"{}\"\nfsync = \"always\"\n",
            free_port(),
            journal.display()
        ),
    )
    .expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_nearcache"))
        .args(["--config", config.to_str().expect("path")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn nearcache");
    wait_for_port(listen, Duration::from_secs(10));
    let client = redis::Client::open(format!("redis://127.0.0.1:{listen}")).expect("client");
    let mut c = client.get_connection().expect("connect");
    let accepted = eventually(Duration::from_secs(5), || c.set::<_, _, ()>("survivor", "yes").is_ok());
    assert!(accepted, "write not accepted without an upstream");
    for _ in 0..3 {
        let _: i64 = c.incr("crash-counter", 1).expect("INCR");
    }
    child.kill().expect("SIGKILL the proxy");
    let _ = child.wait();

    // Restarted, still without Redis: the journaled writes are served.
    let proxy =
        Proxy::start_with(upstream_port, &format!("{FAST}[failover]\njournal_path = \"{}\"\n", journal.display()));
    let mut c = proxy.conn();
    assert_eq!(c.get::<_, String>("survivor").expect("GET after restart"), "yes");
    assert!(mode(&proxy).contains("\"journal_entries\":4"), "{}", mode(&proxy));
    // Then Redis appears: they arrive.
    let redis = RedisServer::start_on(upstream_port);
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    let mut d = redis.direct();
    assert_eq!(d.get::<_, String>("survivor").expect("get"), "yes");
    assert_eq!(d.get::<_, i64>("crash-counter").expect("get"), 3);
    assert_eq!(std::fs::metadata(&journal).expect("journal").len(), 0, "journal file truncated after replay");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn stale_entries_are_served_past_their_policy_ttl_but_not_past_the_upstream_ttl() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, &format!("{FAST}[cache]\ndefault_ttl = \"1s\"\n"));
    common::wait_ready(&proxy);
    // The reads below must be cached: only once invalidations flow.
    common::wait_active(&proxy);
    let mut d = redis.direct();
    let _: () = d.set("forever", "no ttl upstream").expect("set");
    let _: () = redis::cmd("SET").arg("brief").arg("3 s upstream").arg("PX").arg(3000).query(&mut d).expect("set");
    let written = Instant::now();
    let mut raw = proxy.raw();
    for key in ["forever", "brief"] {
        common::wait_cached(&proxy, &mut raw, &["GET", key]);
    }
    redis.kill();
    wait_mode(&proxy, "\"mode\":\"failover\"", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(written.elapsed()));
    // Past the 1 s policy TTL: still served while the upstream is down.
    assert_eq!(raw.call(&["GET", "forever"]), "$15\r\nno ttl upstream\r\n");
    assert_eq!(raw.call(&["GET", "brief"]), "$12\r\n3 s upstream\r\n");
    std::thread::sleep(Duration::from_millis(3300).saturating_sub(written.elapsed()));
    // Past the key's TTL upstream: gone.
    assert_eq!(raw.call(&["GET", "brief"]), "$-1\r\n");
    assert_eq!(raw.call(&["GET", "forever"]), "$15\r\nno ttl upstream\r\n");
}

#[test]
fn failover_writes_start_from_what_the_near_cache_knows() {
    let mut redis = RedisServer::start_persistent();
    let proxy = Proxy::start_with(redis.port, FAST);
    common::wait_ready(&proxy);
    // What follows is read to be cached: only once invalidations flow.
    common::wait_active(&proxy);
    let mut d = redis.direct();
    let _: () = d.set("visits", 41).expect("set");
    let _: () = d.hset_multiple("profile", &[("name", "ada"), ("logins", "9")]).expect("hset");
    let _: () = d.rpush("recent", &["a", "b"]).expect("rpush");
    let mut raw = proxy.raw();
    for read in [&["GET", "visits"][..], &["HGETALL", "profile"], &["LRANGE", "recent", "0", "-1"]] {
        common::wait_cached(&proxy, &mut raw, read);
    }
    redis.kill();
    wait_mode(&proxy, "\"mode\":\"failover\"", Duration::from_secs(5));
    // The store starts from the cached values, so replies are what Redis
    // would have given.
    assert_eq!(raw.call(&["INCR", "visits"]), ":42\r\n");
    assert_eq!(raw.call(&["HINCRBY", "profile", "logins", "1"]), ":10\r\n");
    assert_eq!(raw.call(&["HGET", "profile", "name"]), "$3\r\nada\r\n");
    assert_eq!(raw.call(&["RPUSH", "recent", "c"]), ":3\r\n");
    redis.restart();
    wait_mode(&proxy, "\"mode\":\"normal\",\"journal_entries\":0", Duration::from_secs(10));
    let mut d = redis.direct();
    assert_eq!(d.get::<_, i64>("visits").expect("get"), 42);
    assert_eq!(d.hget::<_, _, i64>("profile", "logins").expect("hget"), 10);
    assert_eq!(d.lrange::<_, Vec<String>>("recent", 0, -1).expect("lrange"), vec!["a", "b", "c"]);
    // And the proxy reads Redis again.
    assert_eq!(raw.call(&["GET", "visits"]), "$2\r\n42\r\n");
}
