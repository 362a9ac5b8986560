//! Faults of a **healthy** Redis, as production sees them every week: an
//! operator's `CLIENT KILL` of each kind of proxy connection, Redis' idle
//! `timeout`, `CLIENT PAUSE`, SIGSTOP, a slow command, a restart that
//! comes back empty. A lost connection is not an outage: every reply is
//! exactly what Redis gives, and what is in Redis afterwards is checked
//! directly. Nor is Redis refusing the proxy's new connections (a
//! password, `maxclients`) or holding only some requests (`CLIENT PAUSE
//! WRITE`). Where Redis really stops answering, failover starts within
//! `stall_after` and half of it (a PING confirms) and ends as soon as
//! Redis answers again.
//!
//! Metrics are process-global (every proxy of this binary adds to them):
//! assertions use each proxy's own `/ready` and `/cache/stats`, or Redis'.
mod common;

use common::{direct_raw, eventually, json_number, wait_active, wait_ready, Proxy, Raw, RedisServer};
use redis::Commands;
use std::time::{Duration, Instant};

/// Failover on (the default), quick timeouts, a cache that fills on the
/// first read.
const CONFIG: &str = "[upstream]\nrequest_timeout = \"2s\"\nconnect_timeout = \"300ms\"\n\
                      reconnect_max_backoff = \"200ms\"\n[breaker]\nopen_for = \"2s\"\nstall_after = \"300ms\"\n\
                      [cache]\nadmission = \"first\"\n";

fn start(redis: &RedisServer, toml: &str) -> Proxy {
    let proxy = Proxy::start_with(redis.port, toml);
    wait_ready(&proxy);
    wait_active(&proxy);
    proxy
}

fn mode(proxy: &Proxy) -> String {
    proxy.admin_get("/ready").1
}

/// `CONFIG SET name value` on Redis, directly.
fn config_set(d: &mut redis::Connection, name: &str, value: &str) {
    let _: () = redis::cmd("CONFIG").arg("SET").arg(name).arg(value).query(d).expect("CONFIG SET");
}

/// Not in failover: every reply came from Redis.
fn assert_normal(proxy: &Proxy) {
    let mode = mode(proxy);
    assert!(mode.contains("\"mode\":\"normal\""), "{mode}");
}

/// Redis with the seeded keys, the proxy in front of it, a direct
/// connection.
fn setup(toml: &str) -> (RedisServer, Proxy, redis::Connection) {
    let redis = RedisServer::start();
    let proxy = start(&redis, toml);
    let mut direct = redis.direct();
    seed(&mut direct);
    (redis, proxy, direct)
}

/// Redis' `CLIENT LIST`, one line a client, seen from `direct`.
fn client_list(direct: &mut redis::Connection) -> Vec<String> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(direct).expect("CLIENT LIST");
    list.lines().map(str::to_string).collect()
}

fn field<'a>(client: &'a str, name: &str) -> &'a str {
    client.split(' ').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).unwrap_or_default()
}

/// Ids of the proxy's connections of one kind: the tracking connection
/// (flags `t`), or the others (pool and dedicated); never `direct`'s own.
fn proxy_connections(direct: &mut redis::Connection, tracking: bool) -> Vec<String> {
    let own: i64 = redis::cmd("CLIENT").arg("ID").query(direct).expect("CLIENT ID");
    client_list(direct)
        .iter()
        .filter(|c| field(c, "id") != own.to_string())
        .filter(|c| field(c, "flags").contains('t') == tracking)
        .map(|c| field(c, "id").to_string())
        .collect()
}

/// A fault done through a direct connection to Redis.
type Fault = fn(&mut redis::Connection);

fn kill_ids(direct: &mut redis::Connection, ids: &[String]) {
    for id in ids {
        let _: redis::RedisResult<()> = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query(direct);
    }
}

/// What Redis holds before each fault: a counter, a string, a list.
fn seed(direct: &mut redis::Connection) {
    let _: () = direct.set("ctr", 100).expect("seed");
    let _: () = direct.set("k", "v").expect("seed");
    let _: () = direct.set("s", "a string").expect("seed");
}

/// Right after a fault: uncached reads, writes and a transaction get
/// exactly Redis' replies (failover would answer nil, 0, 1…).
fn assert_exact_replies(raw: &mut Raw, direct: &mut redis::Connection, fault: &str) {
    seed(direct);
    assert_eq!(raw.call(&["GET", "k"]), "$1\r\nv\r\n", "{fault}: GET of an existing key");
    assert_eq!(raw.call(&["EXISTS", "k"]), ":1\r\n", "{fault}: EXISTS");
    assert_eq!(raw.call(&["INCR", "ctr"]), ":101\r\n", "{fault}: INCR of a counter at 100");
    let wrongtype = raw.call(&["LPUSH", "s", "x"]);
    assert!(wrongtype.starts_with("-WRONGTYPE"), "{fault}: LPUSH on a string: {wrongtype:?}");
    raw.send(b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$3\r\nctr\r\n*1\r\n$4\r\nEXEC\r\n");
    let replies: Vec<String> = (0..3).map(|_| String::from_utf8_lossy(&raw.read_frame()).into_owned()).collect();
    assert_eq!(replies, ["+OK\r\n", "+QUEUED\r\n", "*1\r\n:102\r\n"], "{fault}: a transaction");
    assert_eq!(direct.get::<_, i64>("ctr").expect("get"), 102, "{fault}: in Redis");
    assert_eq!(direct.get::<_, String>("s").expect("get"), "a string", "{fault}: in Redis");
}

#[test]
fn client_kill_of_each_proxy_connection_kind_is_not_an_outage() {
    let (_redis, proxy, mut d) = setup(CONFIG);
    let mut raw = proxy.raw();
    let kill_normal: Fault = |d| {
        let _: redis::RedisResult<()> = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg("normal").query(d);
    };
    let kinds: [(&str, Fault); 4] = [
        ("CLIENT KILL TYPE normal", kill_normal),
        ("CLIENT KILL of the tracking connection", |d| {
            let ids = proxy_connections(d, true);
            assert_eq!(ids.len(), 1, "one tracking connection: {:?}", client_list(d));
            kill_ids(d, &ids);
        }),
        ("CLIENT KILL of every pool connection", |d| {
            let ids = proxy_connections(d, false);
            assert!(!ids.is_empty(), "pool connections: {:?}", client_list(d));
            kill_ids(d, &ids);
        }),
        // Now with connections the transactions above gave back as they
        // were (no RESET) waiting for the next one.
        ("CLIENT KILL TYPE normal, after transactions", kill_normal),
    ];
    for (fault, kill) in kinds {
        seed(&mut d);
        // The raw connection's own pool connection is live before the kill.
        assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
        kill(&mut d);
        assert_exact_replies(&mut raw, &mut d, fault);
        assert_normal(&proxy);
    }
    let metrics = proxy.admin_get("/metrics").1;
    assert!(common::metric(&metrics, "nearcache_upstream_reconnects_total").is_some_and(|n| n >= 2.0), "{metrics}");
}

#[test]
fn a_killed_tracking_connection_only_pauses_the_cache_and_it_comes_back_empty() {
    let (_redis, proxy, mut d) = setup(CONFIG);
    let mut raw = proxy.raw();
    let _: () = d.set("cached", "old").expect("set");
    common::wait_cached(&proxy, &mut raw, &["GET", "cached"]);
    let tracking = proxy_connections(&mut d, true);
    kill_ids(&mut d, &tracking);
    // Written while no invalidation could arrive. Until the proxy sees its
    // connection closed it cannot know (the same window as an invalidation
    // in flight); from then on, never served stale: the cache is bypassed,
    // then cleared when tracking is back.
    let _: () = d.set("cached", "new").expect("set");
    let noticed = eventually(Duration::from_secs(5), || {
        let stats = proxy.admin_get("/cache/stats").1;
        stats.contains("\"active\":false") || json_number(&stats, "entries") == 0.0
    });
    assert!(noticed, "the proxy never noticed its invalidation connection was killed");
    for _ in 0..50 {
        let reply = raw.call(&["GET", "cached"]);
        assert_ne!(reply, "$3\r\nold\r\n", "a stale hit after the invalidation connection was lost");
    }
    wait_active(&proxy);
    assert_eq!(raw.call(&["GET", "cached"]), "$3\r\nnew\r\n");
    assert_normal(&proxy);
}

#[test]
fn a_killed_pinned_connection_ends_its_client_as_redis_would_and_no_one_else() {
    let (_redis, proxy, mut d) = setup(CONFIG);
    let mut tx = proxy.raw();
    assert_eq!(tx.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(tx.call(&["SET", "t", "1"]), "+QUEUED\r\n");
    let dedicated: Vec<String> = client_list(&mut d)
        .iter()
        .filter(|c| field(c, "flags").contains('x'))
        .map(|c| field(c, "id").to_string())
        .collect();
    assert_eq!(dedicated.len(), 1, "{:?}", client_list(&mut d));
    kill_ids(&mut d, &dedicated);
    let exec = tx.call(&["EXEC"]);
    assert!(exec.starts_with("-ERR upstream connection lost"), "{exec:?}");
    assert!(tx.is_closed(), "the client's transaction is gone: its connection closes");
    assert!(!d.exists::<_, bool>("t").expect("exists"), "the transaction was not applied");
    let mut other = proxy.raw();
    assert_eq!(other.call(&["SET", "t", "2"]), "+OK\r\n");
    assert_normal(&proxy);
}

#[test]
fn redis_idle_timeout_closing_connections_is_invisible() {
    let (redis, proxy, mut d) = setup(CONFIG);
    let mut raw = proxy.raw();
    let _: () = d.set("cached", "c").expect("set");
    common::wait_cached(&proxy, &mut raw, &["GET", "cached"]);
    config_set(&mut d, "timeout", "1");
    let before = common::json_number(&proxy.admin_get("/cache/stats").1, "hits");
    // Idle well past Redis' timeout (the direct connection too).
    std::thread::sleep(Duration::from_millis(3500));
    let mut d = redis.direct();
    assert_exact_replies(&mut raw, &mut d, "idle timeout");
    // The invalidation connection stayed: the entry is still a hit.
    assert_eq!(raw.call(&["GET", "cached"]), "$1\r\nc\r\n");
    assert_eq!(json_number(&proxy.admin_get("/cache/stats").1, "hits"), before + 1.0);
    assert_normal(&proxy);
    config_set(&mut d, "timeout", "0");
}

/// A stalled Redis (SIGSTOP, `CLIENT PAUSE`): a write sent 1 s into the
/// stall is acknowledged by failover at once; one written to Redis before
/// the stall is never answered from failover, it gets an error saying it
/// may or may not have been applied; failover ends as soon as Redis
/// answers, and the journal lands in Redis.
fn stall_then_resume(stall: impl FnOnce(&RedisServer), resume: impl FnOnce(&RedisServer), name: &str) {
    let (redis, proxy, mut d) = setup(CONFIG);
    let mut before = proxy.raw();
    let mut during = proxy.raw();
    assert_eq!(during.call(&["PING"]), "+PONG\r\n");
    stall(&redis);
    let stalled = Instant::now();
    before.cmd(&["INCR", "written-before"]);
    std::thread::sleep(Duration::from_secs(1));
    let sent = Instant::now();
    assert_eq!(during.call(&["INCRBY", "written-during", "5"]), ":5\r\n", "{name}: served by failover");
    let waited = sent.elapsed();
    assert!(waited < Duration::from_millis(500), "{name}: a write 1 s into the stall took {waited:?}");
    let reply = String::from_utf8_lossy(&before.read_frame()).into_owned();
    assert_eq!(reply, "-ERR upstream timeout, the command may or may not have been applied\r\n", "{name}");
    resume(&redis);
    let resumed = Instant::now();
    let normal =
        eventually(Duration::from_secs(5), || mode(&proxy).contains("\"mode\":\"normal\",\"journal_entries\":0"));
    assert!(normal, "{name}: failover never ended: {}", mode(&proxy));
    println!("{name}: stalled {:?}, back to normal {:?} after Redis resumed", resumed - stalled, resumed.elapsed());
    assert!(
        resumed.elapsed() < Duration::from_secs(1),
        "{name}: failover lasted {:?} after Redis resumed",
        resumed.elapsed()
    );
    assert_eq!(d.get::<_, i64>("written-during").expect("get"), 5, "{name}: the journal was replayed");
    assert_eq!(during.call(&["GET", "written-during"]), "$1\r\n5\r\n");
}

#[test]
fn sigstop_fails_over_after_stall_after_and_recovers_when_redis_resumes() {
    stall_then_resume(RedisServer::pause, RedisServer::resume, "SIGSTOP");
}

#[test]
fn client_pause_fails_over_after_stall_after_and_recovers_when_it_ends() {
    stall_then_resume(
        |redis| {
            let mut d = redis.direct();
            let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(2500).arg("ALL").query(&mut d).expect("pause");
        },
        |_| {},
        "CLIENT PAUSE",
    );
}

/// `CLIENT PAUSE WRITE` (as Redis' own `FAILOVER` does): writes wait past
/// `stall_after` with nothing read, but Redis answers a PING at once, so
/// this is no stall: reads go on from Redis, writes get Redis' replies
/// once the pause ends, nothing is answered from local memory.
#[test]
fn client_pause_write_past_stall_after_is_not_an_outage() {
    let (_redis, proxy, mut d) = setup(CONFIG);
    let (mut writer, mut later, mut reader) = (proxy.raw(), proxy.raw(), proxy.raw());
    assert_eq!(writer.call(&["PING"]), "+PONG\r\n");
    let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("WRITE").query(&mut d).expect("pause");
    writer.cmd(&["INCR", "ctr"]);
    std::thread::sleep(Duration::from_millis(800));
    later.cmd(&["INCRBY", "ctr", "5"]);
    // (A read on a pool connection a paused write holds waits behind it.)
    assert_eq!(reader.call(&["GET", "k"]), "$1\r\nv\r\n", "Redis' answer");
    assert_normal(&proxy);
    assert_eq!(String::from_utf8_lossy(&writer.read_frame()), ":101\r\n");
    assert_eq!(String::from_utf8_lossy(&later.read_frame()), ":106\r\n");
    assert_eq!(d.get::<_, i64>("ctr").expect("get"), 106, "in Redis");
    assert!(mode(&proxy).contains("\"circuit_opened\":0"), "{}", mode(&proxy));
    let metrics = proxy.admin_get("/metrics").1;
    assert!(common::metric(&metrics, "nearcache_upstream_stalls_refuted_total").is_some_and(|n| n >= 1.0), "{metrics}");
}

/// With `stall_after` above the slowest command, a slow command delays
/// the others on its connection (Redis runs one command at a time) but no
/// one gets an error or a failover answer.
#[test]
fn a_slow_command_within_stall_after_is_waited_for() {
    let config = CONFIG.replace("stall_after = \"300ms\"", "stall_after = \"1500ms\"");
    let (_redis, proxy, _direct) = setup(&config);
    let mut slow = proxy.raw();
    let mut other = proxy.raw();
    slow.cmd(&["DEBUG", "SLEEP", "0.8"]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(other.call(&["INCR", "ctr"]), ":101\r\n");
    assert_eq!(slow.read_frame(), b"+OK\r\n");
    assert_normal(&proxy);
}

/// Redis killed and restarted empty: once it answers, failover ends at
/// once and nothing deleted by the restart is served, from the cache or
/// from local memory.
#[test]
fn a_restart_that_comes_back_empty_is_served_at_once_and_never_stale() {
    let mut redis = RedisServer::start();
    let proxy = start(&redis, CONFIG);
    let mut raw = proxy.raw();
    let mut d = redis.direct();
    let _: () = d.set("gone", "before").expect("set");
    common::wait_cached(&proxy, &mut raw, &["GET", "gone"]);
    redis.kill();
    let failed_over = eventually(Duration::from_secs(5), || mode(&proxy).contains("\"mode\":\"failover\""));
    assert!(failed_over, "{}", mode(&proxy));
    assert_eq!(raw.call(&["GET", "gone"]), "$6\r\nbefore\r\n", "failover serves the cached value meanwhile");
    redis.restart();
    let back = Instant::now();
    let normal = eventually(Duration::from_secs(5), || mode(&proxy).contains("\"mode\":\"normal\""));
    assert!(normal, "{}", mode(&proxy));
    println!("back to normal {:?} after Redis answered again", back.elapsed());
    assert!(back.elapsed() < Duration::from_secs(1), "failover lasted {:?} after the restart", back.elapsed());
    assert_eq!(raw.call(&["GET", "gone"]), "$-1\r\n", "the empty Redis' answer");
    let mut direct = direct_raw(&redis);
    assert_eq!(direct.call(&["EXISTS", "gone"]), ":0\r\n");
}

/// A reply nested ~8,000 deep (a Lua table that contains itself) passes
/// through byte for byte, as many times as it is asked for, and costs
/// neither the shared connection nor anyone's request on it.
#[test]
fn any_reply_shape_passes_through_and_costs_no_one_their_connection() {
    let (redis, proxy, mut d) = setup(CONFIG);
    let deep = ["EVAL", "local a={}; local b={a}; a[1]=b; return a", "0"];
    let want = direct_raw(&redis).call(&deep);
    assert!(want.matches("*1\r\n").count() > 5_000, "Redis' reply is not deep: {}", &want[..want.len().min(80)]);
    let mut raw = proxy.raw();
    for n in 1..=5 {
        // Another request rides the same pipeline, before and after it.
        raw.send(b"*2\r\n$4\r\nINCR\r\n$3\r\nctr\r\n");
        raw.cmd(&deep);
        raw.send(b"*2\r\n$4\r\nINCR\r\n$3\r\nctr\r\n");
        assert_eq!(String::from_utf8_lossy(&raw.read_frame()), format!(":{}\r\n", 100 + 2 * n - 1));
        assert!(String::from_utf8_lossy(&raw.read_frame()) == want, "the deep reply, byte for byte");
        assert_eq!(String::from_utf8_lossy(&raw.read_frame()), format!(":{}\r\n", 100 + 2 * n));
    }
    assert_exact_replies(&mut raw, &mut d, "deep replies");
    assert_normal(&proxy);
}

/// A script that never ends keeps Redis busy for everyone; `SCRIPT KILL`
/// and `FUNCTION KILL` are what Redis still serves then, so they go out of
/// band (a connection of their own) instead of queueing behind it — even
/// while the busy Redis has the circuit open.
#[test]
fn script_kill_and_function_kill_reach_a_busy_redis() {
    let (_redis, proxy, mut d) = setup(CONFIG);
    config_set(&mut d, "busy-reply-threshold", "100");
    let library = "#!lua name=spin\nredis.register_function('spin', function() while true do end end)";
    let _: String = redis::cmd("FUNCTION").arg("LOAD").arg(library).query(&mut d).expect("function load");
    let busy: [(&[&str], &str, &str); 2] = [
        (&["EVAL", "while true do end", "0"], "SCRIPT", "Script killed by user"),
        (&["FCALL", "spin", "0"], "FUNCTION", "Script killed by user"),
    ];
    for (script, kind, killed) in busy {
        let mut runner = proxy.raw();
        runner.cmd(script);
        std::thread::sleep(Duration::from_millis(600));
        let mut killer = proxy.raw();
        let started = Instant::now();
        assert_eq!(killer.call(&[kind, "KILL"]), "+OK\r\n", "{kind} KILL");
        assert!(started.elapsed() < Duration::from_secs(1), "{kind} KILL took {:?}", started.elapsed());
        let reply = String::from_utf8_lossy(&runner.read_frame()).into_owned();
        assert!(reply.contains(killed), "{kind}: {reply:?}");
        let normal = eventually(Duration::from_secs(3), || mode(&proxy).contains("\"mode\":\"normal\""));
        assert!(normal, "{}", mode(&proxy));
        assert_exact_replies(&mut killer, &mut d, kind);
    }
}

/// A transaction takes a dedicated connection opened ahead of need (no
/// connection set-up on its path), kept alive across Redis' idle timeout.
#[test]
fn a_transaction_takes_a_connection_opened_ahead() {
    let (redis, proxy, mut d) = setup(CONFIG);
    config_set(&mut d, "timeout", "1");
    std::thread::sleep(Duration::from_millis(2500));
    let mut tx = proxy.raw();
    assert_eq!(tx.call(&["MULTI"]), "+OK\r\n");
    let mut d = redis.direct();
    let in_multi: Vec<String> = client_list(&mut d).into_iter().filter(|c| field(c, "flags").contains('x')).collect();
    assert_eq!(in_multi.len(), 1, "{in_multi:?}");
    let age: u64 = field(&in_multi[0], "age").parse().expect("age");
    assert!(age >= 2, "the transaction's connection was opened {age} s before it: {}", in_multi[0]);
    assert_eq!(tx.call(&["INCR", "n"]), "+QUEUED\r\n");
    assert_eq!(tx.call(&["EXEC"]), "*1\r\n:1\r\n");
    // The connection went back as it was; idle past the timeout, it is
    // still alive for the next transaction.
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(tx.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(tx.call(&["INCR", "n"]), "+QUEUED\r\n");
    assert_eq!(tx.call(&["EXEC"]), "*1\r\n:2\r\n");
    // (The test's own direct connection idled out meanwhile.)
    let mut d = redis.direct();
    config_set(&mut d, "timeout", "0");
}

/// `CLIENT PAUSE` sent through the proxy is held at the proxy: its clients
/// wait as Redis' own would (writes only with `WRITE`), while its
/// connections keep talking to Redis, so nothing is mistaken for an outage
/// and nothing held back lands in the failover journal.
#[test]
fn client_pause_through_the_proxy_holds_its_clients_not_its_connections() {
    // stall_after under the 1 s the write is held, so a pause that reached
    // Redis would fail over and acknowledge it within that second; above
    // the 300 ms of the other tests, so a busy CI machine's scheduling
    // hiccup is not taken for a stall.
    let toml = CONFIG.replace("stall_after = \"300ms\"", "stall_after = \"800ms\"");
    let (_redis, proxy, mut d) = setup(&toml);
    let (mut admin, mut reader, mut writer) = (proxy.raw(), proxy.raw(), proxy.raw());
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "x"]), "-ERR timeout is not an integer or out of range\r\n");
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "-1"]), "-ERR timeout is negative\r\n");
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "10", "SOME"]), "-ERR syntax error\r\n");
    assert_eq!(admin.call(&["CLIENT", "PAUSE", "20000", "WRITE"]), "+OK\r\n");
    assert_eq!(reader.call(&["GET", "k"]), "$1\r\nv\r\n", "reads go on under a WRITE pause");
    writer.cmd(&["SET", "k", "held"]);
    writer.stream.set_read_timeout(Some(Duration::from_millis(1000))).expect("timeout");
    assert_eq!(writer.try_read_frame(), None, "the write waits");
    assert_eq!(d.get::<_, String>("k").expect("get"), "v", "not in Redis yet");
    assert_normal(&proxy);
    assert_eq!(admin.call(&["CLIENT", "UNPAUSE"]), "+OK\r\n");
    writer.stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    assert_eq!(writer.read_frame(), b"+OK\r\n");
    assert_eq!(d.get::<_, String>("k").expect("get"), "held", "written to Redis once unpaused");

    assert_eq!(admin.call(&["CLIENT", "PAUSE", "400"]), "+OK\r\n");
    let started = Instant::now();
    assert_eq!(reader.call(&["GET", "k"]), "$4\r\nheld\r\n");
    assert!(started.elapsed() >= Duration::from_millis(300), "ALL holds reads too: {:?}", started.elapsed());
    assert_normal(&proxy);
    let paused: String = redis::cmd("INFO").arg("clients").query(&mut d).expect("info");
    assert!(!paused.contains("paused_reason:") || paused.contains("paused_reason:none"), "{paused}");
}

/// A connection whose setup is slow (a loaded or distant Redis) but within
/// `connect_timeout` is not a stall: the requests that waited for it are
/// answered by Redis, in RESP2 and RESP3, and the proxy never fails over.
#[test]
fn a_slow_connection_setup_within_connect_timeout_is_not_a_stall() {
    let redis = RedisServer::start();
    let mut direct = redis.direct();
    let _: () = direct.set("slow-setup", "v").expect("set");
    redis.pause();
    let config = CONFIG.replace("connect_timeout = \"300ms\"", "connect_timeout = \"3s\"");
    let proxy = Proxy::start_with(redis.port, &config);
    let mut resp2 = proxy.raw();
    let mut resp3 = proxy.raw();
    resp2.cmd(&["GET", "slow-setup"]);
    assert!(resp3.call(&["HELLO", "3"]).starts_with('%'));
    resp3.cmd(&["GET", "slow-setup"]);
    std::thread::sleep(Duration::from_millis(900));
    redis.resume();
    assert_eq!(resp2.read_frame(), b"$1\r\nv\r\n");
    assert_eq!(resp3.read_frame(), b"$1\r\nv\r\n");
    let ready = mode(&proxy);
    assert!(ready.contains("\"mode\":\"normal\"") && ready.contains("\"circuit_opened\":0"), "{ready}");
}

/// `WAIT` through the proxy counts the replicas that have the client's
/// writes, as it does on Redis: the client's writes travel on the shared
/// pool and `WAIT` on a dedicated connection, which Redis answers for the
/// replication offset of its own last command (a spare's handshake, from
/// before the client's writes: every connected replica would count), so
/// the proxy writes once on it first. A replica stopped (SIGSTOP) has not
/// the latest write: `WAIT 1` times out with 0, then counts it once it is
/// back. The data is untouched.
#[test]
fn wait_counts_only_the_replicas_that_have_the_clients_writes() {
    let redis = RedisServer::start();
    let replica = RedisServer::start();
    let mut follower = direct_raw(&replica);
    assert_eq!(follower.call(&["REPLICAOF", "127.0.0.1", &redis.port.to_string()]), "+OK\r\n");
    let linked = eventually(Duration::from_secs(10), || {
        follower.call(&["INFO", "replication"]).contains("master_link_status:up")
    });
    assert!(linked, "the replica did not attach");
    let proxy = start(&redis, CONFIG);
    let mut client = proxy.raw();
    assert_eq!(client.call(&["SET", "durable", "1"]), "+OK\r\n");
    assert_eq!(client.call(&["WAIT", "1", "2000"]), ":1\r\n");
    // Its dedicated connection is back among the spares, cleaned: its last
    // command comes before the next write.
    std::thread::sleep(Duration::from_millis(200));
    replica.pause();
    assert_eq!(client.call(&["SET", "durable", "2"]), "+OK\r\n");
    let started = Instant::now();
    assert_eq!(client.call(&["WAIT", "1", "500"]), ":0\r\n", "a stopped replica counted as having the write");
    assert!(started.elapsed() >= Duration::from_millis(450), "WAIT returned after {:?}", started.elapsed());
    replica.resume();
    assert_eq!(client.call(&["WAIT", "1", "5000"]), ":1\r\n");
    assert_eq!(follower.call(&["GET", "durable"]), "$1\r\n2\r\n");
    assert_eq!(direct_raw(&redis).call(&["DBSIZE"]), ":1\r\n");
}

/// Redis made to refuse new connections (`refuse`, through `d`, which
/// stays connected), then the proxy's connections killed: refused
/// connections are no outage. Clients get the refusal for a while, nothing
/// is answered or applied from local memory, and once `lift` undoes it
/// everything flows.
fn refused_then_lifted(refuse: Fault, lift: Fault, refusal: &str) {
    let (redis, proxy, mut d) = setup(CONFIG);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    refuse(&mut d);
    for kind in ["normal", "pubsub"] {
        let _: redis::RedisResult<()> = redis::cmd("CLIENT").arg("KILL").arg("TYPE").arg(kind).query(&mut d);
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        for (request, what) in [(&["GET", "k"][..], "GET"), (&["INCR", "ctr"][..], "INCR")] {
            let reply = raw.call(request);
            assert!(reply.starts_with(refusal), "{what} got {reply:?}, not Redis' refusal");
        }
        assert_normal(&proxy);
        let reason = &refusal["-ERR ".len()..];
        assert!(mode(&proxy).contains(&format!("\"refusing\":\"{reason}")), "{}", mode(&proxy));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(mode(&proxy).contains("\"circuit_opened\":0"), "{}", mode(&proxy));
    lift(&mut d);
    let back = eventually(Duration::from_secs(5), || raw.call(&["GET", "k"]) == "$1\r\nv\r\n");
    assert!(back, "never served again: {:?}", raw.call(&["GET", "k"]));
    let cleared = eventually(Duration::from_secs(5), || !mode(&proxy).contains("refusing"));
    assert!(cleared, "{}", mode(&proxy));
    assert_eq!(raw.call(&["GET", "ctr"]), "$3\r\n100\r\n", "nothing was applied meanwhile");
    assert_eq!(direct_raw(&redis).call(&["GET", "ctr"]), "$3\r\n100\r\n");
    assert_normal(&proxy);
}

/// A password set on a healthy Redis, the proxy configured without it.
#[test]
fn a_password_set_on_a_healthy_redis_gets_its_refusal_not_failover() {
    refused_then_lifted(
        |d| config_set(d, "requirepass", "secret"),
        |d| config_set(d, "requirepass", ""),
        "-ERR upstream handshake failed: NOAUTH HELLO must be called with the client already authenticated",
    );
}

/// Redis at `maxclients` (it answers a new connection with an error and
/// closes it): no outage, and no reconnecting in a spin.
#[test]
fn maxclients_reached_gets_its_refusal_not_failover() {
    refused_then_lifted(
        |d| config_set(d, "maxclients", "1"),
        |d| config_set(d, "maxclients", "10000"),
        "-ERR upstream handshake failed: ERR max number of clients reached",
    );
}

/// Redis back after an outage but refusing the proxy (here a password it
/// did not have): it is reachable, so failover stops answering from local
/// memory (its answers could contradict Redis), keeps the journal, and
/// says why; once Redis accepts the proxy, the journal is replayed.
#[test]
fn redis_back_from_an_outage_refusing_the_proxy_gets_no_local_answers() {
    let mut redis = RedisServer::start_persistent();
    let proxy = start(&redis, CONFIG);
    let mut raw = proxy.raw();
    seed(&mut redis.direct());
    common::wait_cached(&proxy, &mut raw, &["GET", "ctr"]);
    redis.kill();
    let failed_over = eventually(Duration::from_secs(5), || mode(&proxy).contains("\"mode\":\"failover\""));
    assert!(failed_over, "{}", mode(&proxy));
    assert_eq!(raw.call(&["INCR", "ctr"]), ":101\r\n", "failover, from the cached value");
    redis.restart_with(&["--requirepass", "secret"]);
    let refused = eventually(Duration::from_secs(6), || mode(&proxy).contains("\"mode\":\"replay_refused\""));
    assert!(refused, "{}", mode(&proxy));
    assert!(mode(&proxy).contains("NOAUTH"), "the reason is given: {}", mode(&proxy));
    for request in [&["GET", "k"][..], &["INCR", "ctr"][..]] {
        let reply = raw.call(request);
        assert!(reply.starts_with("-TRYAGAIN upstream refuses"), "{request:?} got {reply:?}");
        assert!(reply.contains("NOAUTH") && reply.contains("1 journaled writes wait"), "{reply:?}");
    }
    let mut d = redis::Client::open(format!("redis://:secret@127.0.0.1:{}", redis.port))
        .and_then(|c| c.get_connection())
        .expect("direct, with the password");
    config_set(&mut d, "requirepass", "");
    let normal =
        eventually(Duration::from_secs(6), || mode(&proxy).contains("\"mode\":\"normal\",\"journal_entries\":0"));
    assert!(normal, "{}", mode(&proxy));
    assert_eq!(direct_raw(&redis).call(&["GET", "ctr"]), "$3\r\n101\r\n", "the journal was replayed once");
    assert_eq!(raw.call(&["INCR", "ctr"]), ":102\r\n");
}
