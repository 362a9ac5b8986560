//! Tenancy against a real redis-server: two tenants, `acme` and `globex`,
//! share one Redis through the proxy; each sees only its own keyspace.
mod common;

use common::{eventually, metric, Proxy, Raw, RedisServer};
use redis::Commands;
use std::time::{Duration, Instant};

fn config(extra: &str) -> String {
    let hash = |p: &str| nearcache::tenancy::hash_password(p.as_bytes());
    format!(
        "[[tenant]]\nname = \"acme\"\npassword_sha256 = \"{}\"\n\
         [[tenant]]\nname = \"globex\"\npassword_sha256 = \"{}\"\n{extra}",
        hash("acme-pw"),
        hash("globex-pw")
    )
}

fn start(extra: &str) -> (RedisServer, Proxy) {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, &config(extra));
    (redis, proxy)
}

fn login(proxy: &Proxy, tenant: &str) -> Raw {
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["AUTH", tenant, &format!("{tenant}-pw")]), "+OK\r\n");
    raw
}

fn bulk(s: &str) -> String {
    format!("${}\r\n{s}\r\n", s.len())
}

#[test]
fn tenants_see_only_their_own_keys() {
    let (redis, proxy) = start("");
    let mut acme = login(&proxy, "acme");
    let mut globex = login(&proxy, "globex");
    assert_eq!(acme.call(&["SET", "user:1", "acme's"]), "+OK\r\n");
    assert_eq!(globex.call(&["SET", "user:1", "globex's"]), "+OK\r\n");
    assert_eq!(acme.call(&["GET", "user:1"]), bulk("acme's"));
    assert_eq!(globex.call(&["GET", "user:1"]), bulk("globex's"));
    assert_eq!(acme.call(&["MSET", "a", "1", "b", "2"]), "+OK\r\n");
    assert_eq!(acme.call(&["MGET", "a", "b", "user:1"]), format!("*3\r\n{}{}{}", bulk("1"), bulk("2"), bulk("acme's")));
    assert_eq!(globex.call(&["EXISTS", "a", "b"]), ":0\r\n");
    assert_eq!(acme.call(&["RENAME", "a", "c"]), "+OK\r\n");
    let keys = acme.call(&["KEYS", "*"]);
    assert!(keys.starts_with("*3\r\n"), "acme has user:1, b, c: {keys}");
    assert!(!keys.contains("acme:") && !keys.contains("globex"), "{keys}");
    let scan = acme.call(&["SCAN", "0", "COUNT", "1000"]);
    assert!(scan.contains("user:1") && !scan.contains("globex") && !scan.contains("acme:"), "{scan}");
    assert_eq!(acme.call(&["RPUSH", "q", "job"]), ":1\r\n");
    assert_eq!(acme.call(&["BLPOP", "q", "1"]), format!("*2\r\n{}{}", bulk("q"), bulk("job")));

    let mut direct: Vec<String> = redis.direct().keys("*").expect("keys");
    direct.sort();
    assert_eq!(direct, vec!["acme:b", "acme:c", "acme:user:1", "globex:user:1"]);

    // RANDOMKEY names only the tenant's keys, even when it holds few of them.
    for i in 0..200 {
        assert_eq!(globex.call(&["SET", &format!("filler:{i}"), "x"]), "+OK\r\n");
    }
    for _ in 0..50 {
        let key = acme.call(&["RANDOMKEY"]);
        assert!([bulk("user:1"), bulk("b"), bulk("c")].contains(&key), "{key}");
    }
    let mut empty = login(&proxy, "acme");
    assert_eq!(empty.call(&["FLUSHDB"]), "-NOPERM this command is not allowed for tenant acme\r\n");
    // INFO shows the server's version and mode, nothing about the shared server.
    let info = acme.call(&["INFO"]);
    assert!(info.contains("# Server\r\nredis_version:"), "{info}");
    assert!(info.contains("redis_mode:standalone") || info.contains("server_mode:standalone"), "{info}");
    assert!(!info.contains("connected_clients") && !info.contains("db0") && !info.contains("tcp_port"), "{info}");
}

/// The near-cache and the failover store hold rewritten keys: a tenant's
/// cached value, and what it writes while Redis is down, stay its own, and
/// the replay lands under its prefix.
#[test]
fn cache_and_failover_keep_tenants_apart() {
    let mut redis = RedisServer::start();
    let proxy = Proxy::start_with(
        redis.port,
        &config(
            "[upstream]\nrequest_timeout = \"500ms\"\nconnect_timeout = \"300ms\"\nreconnect_max_backoff = \"200ms\"\n\
             [breaker]\nopen_for = \"300ms\"\n",
        ),
    );
    common::wait_active(&proxy);
    let mut acme = login(&proxy, "acme");
    let mut globex = login(&proxy, "globex");
    assert!(eventually(Duration::from_secs(5), || acme.call(&["SET", "k", "acme-v"]) == "+OK\r\n"));
    assert_eq!(globex.call(&["SET", "k", "globex-v"]), "+OK\r\n");
    // Each tenant's read is served from the near-cache, with its own value.
    assert_eq!(common::wait_cached(&proxy, &mut acme, &["GET", "k"]), bulk("acme-v"));
    assert_eq!(common::wait_cached(&proxy, &mut globex, &["GET", "k"]), bulk("globex-v"));

    redis.kill();
    assert!(eventually(Duration::from_secs(5), || acme.call(&["SET", "during", "acme-d"]) == "+OK\r\n"));
    assert_eq!(acme.call(&["GET", "k"]), bulk("acme-v"));
    assert_eq!(globex.call(&["GET", "k"]), bulk("globex-v"));
    assert_eq!(globex.call(&["GET", "during"]), "$-1\r\n");
    assert_eq!(acme.call(&["GET", "during"]), bulk("acme-d"));

    redis.restart();
    let mut direct = redis.direct();
    let replayed = eventually(Duration::from_secs(10), || {
        direct.get::<_, Option<String>>("acme:during").ok().flatten().as_deref() == Some("acme-d")
    });
    assert!(replayed, "the failover write was not replayed under acme's prefix");
    assert!(!direct.exists::<_, bool>("during").expect("exists"));
}

#[test]
fn authentication() {
    let (_redis, proxy) = start("");
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    assert_eq!(
        raw.call(&["AUTH", "acme", "wrong"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(
        raw.call(&["AUTH", "nobody", "acme-pw"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(raw.call(&["AUTH", "acme", "acme-pw"]), "+OK\r\n");
    assert_eq!(raw.call(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(raw.call(&["RESET"]), "+RESET\r\n");
    assert_eq!(raw.call(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");
    // HELLO AUTH, in RESP3.
    let hello = raw.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]);
    assert!(hello.starts_with('%'), "{hello}");
    assert_eq!(raw.call(&["GET", "k"]), bulk("v"));
    let refused = raw.call(&["HELLO", "3", "AUTH", "acme", "nope"]);
    assert!(refused.starts_with("-WRONGPASS"), "{refused}");
    let body = proxy.admin_get("/metrics").1;
    assert!(metric(&body, "nearcache_auth_failures_total").is_some_and(|n| n >= 3.0), "{body}");
}

#[test]
fn guessing_passwords_is_braked_per_address() {
    let (_redis, proxy) = start("[tenancy]\nauth_failures_per_minute = 3\n");
    let mut raw = proxy.raw();
    // A client library retrying one mistyped password guesses nothing new:
    // counted once.
    for _ in 0..11 {
        assert!(raw.call(&["AUTH", "acme", "mistyped"]).starts_with("-WRONGPASS"));
    }
    assert_eq!(raw.call(&["AUTH", "acme", "acme-pw"]), "+OK\r\n");
    for guess in ["guess1", "guess2"] {
        assert!(raw.call(&["AUTH", "acme", guess]).starts_with("-WRONGPASS"));
    }
    let braked = raw.call(&["AUTH", "acme", "acme-pw"]);
    assert!(braked.starts_with("-ERR too many failed authentication attempts"), "{braked}");
}

/// Guessing one tenant's password (or names) from an address does not lock
/// the other tenants out of it; trying many names meets a ceiling.
#[test]
fn the_password_brake_is_per_tenant_with_a_ceiling_per_address() {
    let (_redis, proxy) = start("[tenancy]\nauth_failures_per_minute = 3\n");
    let mut raw = proxy.raw();
    for i in 0..3 {
        assert!(raw.call(&["AUTH", "nobody", &format!("x{i}")]).starts_with("-WRONGPASS"));
    }
    assert!(raw.call(&["AUTH", "nobody", "x3"]).starts_with("-ERR too many failed authentication attempts"));
    assert_eq!(raw.call(&["AUTH", "globex", "globex-pw"]), "+OK\r\n");
    let mut other = proxy.raw();
    for i in 0..30 {
        let _ = other.call(&["AUTH", &format!("name{i}"), "x"]);
    }
    let braked = other.call(&["AUTH", "acme", "acme-pw"]);
    assert!(braked.starts_with("-ERR too many failed authentication attempts"), "{braked}");
}

/// Before AUTH, frames are as small as Redis allows unauthenticated
/// clients: a huge bulk is refused at its header, before a byte of it is
/// buffered, and the connection closed.
#[test]
fn unauthenticated_clients_cannot_make_the_proxy_buffer() {
    let (_redis, proxy) = start("");
    let mut raw = proxy.raw();
    raw.send(b"*2\r\n$4\r\nAUTH\r\n$419430400\r\n");
    assert_eq!(raw.read_frame(), b"-ERR Protocol error: unauthenticated bulk length\r\n");
    assert!(raw.is_closed());
    let mut raw = proxy.raw();
    raw.send(b"*11\r\n");
    assert_eq!(raw.read_frame(), b"-ERR Protocol error: unauthenticated multibulk length\r\n");
    assert!(raw.is_closed());
    // Authenticated, the configured limits apply again.
    let mut acme = login(&proxy, "acme");
    let value = "x".repeat(100_000);
    assert_eq!(acme.call(&["SET", "big", &value]), "+OK\r\n");
}

/// A connection holding a tenant's state upstream cannot become another
/// tenant: its subscriptions would keep delivering the first tenant's
/// messages to the second.
#[test]
fn switching_tenant_is_refused_while_the_connection_holds_state() {
    let (_redis, proxy) = start("");
    let mut sub = login(&proxy, "globex");
    sub.cmd(&["SUBSCRIBE", "news"]);
    assert!(String::from_utf8_lossy(&sub.read_frame()).contains("subscribe"));
    let refused = sub.call(&["AUTH", "acme", "acme-pw"]);
    assert!(refused.starts_with("-ERR this connection holds subscriptions"), "{refused}");
    let mut globex = login(&proxy, "globex");
    assert_eq!(globex.call(&["PUBLISH", "news", "hi"]), ":1\r\n");
    let message = String::from_utf8_lossy(&sub.read_frame()).into_owned();
    assert!(message.contains("$4\r\nnews\r\n$2\r\nhi\r\n"), "still globex's, unprefixed: {message}");
    sub.cmd(&["UNSUBSCRIBE"]);
    assert!(String::from_utf8_lossy(&sub.read_frame()).contains("unsubscribe"));
    assert_eq!(sub.call(&["AUTH", "acme", "acme-pw"]), "+OK\r\n");
    let mut tx = login(&proxy, "globex");
    assert_eq!(tx.call(&["MULTI"]), "+OK\r\n");
    assert!(tx.call(&["AUTH", "acme", "acme-pw"]).starts_with("-ERR this connection holds"));
}

/// The refusal of a switch to another tenant on a connection holding state.
const HOLDS_STATE: &str = "-ERR this connection holds subscriptions, a transaction, WATCH or tracking of its \
                           tenant: RESET or reconnect before authenticating as another tenant\r\n";

/// Two tenants with a key `k` each, and a key only each of them has.
fn two_keyspaces(proxy: &Proxy) {
    let mut acme = login(proxy, "acme");
    assert_eq!(acme.call(&["MSET", "k", "acme's", "acme-only", "a"]), "+OK\r\n");
    let mut globex = login(proxy, "globex");
    assert_eq!(globex.call(&["MSET", "k", "globex's", "globex-only", "g"]), "+OK\r\n");
}

/// WATCH, as `AUTH` and as `HELLO 3 AUTH`: refused, the connection stays
/// globex's (its keys, RESP2, its WATCH still armed), and switches once
/// UNWATCH released it.
#[test]
fn switching_tenant_is_refused_while_watching() {
    let (_redis, proxy) = start("");
    two_keyspaces(&proxy);
    let mut conn = login(&proxy, "globex");
    assert_eq!(conn.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(conn.call(&["AUTH", "acme", "acme-pw"]), HOLDS_STATE);
    assert_eq!(conn.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]), HOLDS_STATE);
    assert_eq!(conn.call(&["GET", "k"]), bulk("globex's"));
    assert_eq!(conn.call(&["GET", "globex-only"]), bulk("g"));
    assert_eq!(conn.call(&["GET", "acme-only"]), "$-1\r\n", "still RESP2: the refused HELLO changed nothing");
    // The WATCH is globex's, on globex's k: a write to it aborts EXEC.
    let mut globex = login(&proxy, "globex");
    assert_eq!(globex.call(&["SET", "k", "globex's 2"]), "+OK\r\n");
    assert_eq!(conn.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(conn.call(&["SET", "k", "overwritten"]), "+QUEUED\r\n");
    assert_eq!(conn.call(&["EXEC"]), "*-1\r\n");
    assert_eq!(conn.call(&["GET", "k"]), bulk("globex's 2"));
    // Re-authenticating as the same tenant is no switch.
    assert_eq!(conn.call(&["WATCH", "k"]), "+OK\r\n");
    assert_eq!(conn.call(&["AUTH", "globex", "globex-pw"]), "+OK\r\n");
    assert_eq!(conn.call(&["UNWATCH"]), "+OK\r\n");
    assert_eq!(conn.call(&["AUTH", "acme", "acme-pw"]), "+OK\r\n");
    assert_eq!(conn.call(&["GET", "k"]), bulk("acme's"));
    assert_eq!(conn.call(&["GET", "globex-only"]), "$-1\r\n");
}

/// CLIENT TRACKING on (RESP3): refused as `AUTH` and as `HELLO 3 AUTH`;
/// the connection stays globex's and keeps receiving globex's
/// invalidations, unprefixed. Tracking off does not release the connection
/// (it stays bound to its upstream connection): RESET does.
#[test]
fn switching_tenant_is_refused_while_tracking() {
    let (_redis, proxy) = start("");
    two_keyspaces(&proxy);
    let mut conn = proxy.raw();
    assert!(conn.call(&["HELLO", "3", "AUTH", "globex", "globex-pw"]).starts_with('%'));
    assert_eq!(conn.call(&["CLIENT", "TRACKING", "on"]), "+OK\r\n");
    assert_eq!(conn.call(&["GET", "k"]), bulk("globex's"));
    assert_eq!(conn.call(&["AUTH", "acme", "acme-pw"]), HOLDS_STATE);
    assert_eq!(conn.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]), HOLDS_STATE);
    assert_eq!(conn.call(&["GET", "globex-only"]), bulk("g"));
    assert_eq!(conn.call(&["GET", "acme-only"]), "_\r\n");
    let mut globex = login(&proxy, "globex");
    assert_eq!(globex.call(&["SET", "k", "globex's 2"]), "+OK\r\n");
    let push = String::from_utf8_lossy(&conn.read_frame()).into_owned();
    assert_eq!(push, format!(">2\r\n{}*1\r\n{}", bulk("invalidate"), bulk("k")), "globex's k, unprefixed");
    assert_eq!(conn.call(&["CLIENT", "TRACKING", "off"]), "+OK\r\n");
    assert_eq!(conn.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]), HOLDS_STATE);
    assert_eq!(conn.call(&["RESET"]), "+RESET\r\n");
    assert!(conn.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]).starts_with('%'));
    assert_eq!(conn.call(&["GET", "k"]), bulk("acme's"));
    assert_eq!(conn.call(&["GET", "globex-only"]), "_\r\n");
}

/// `HELLO 3 AUTH` as the switching command on a subscribed connection and
/// inside MULTI: refused like `AUTH`, the protocol unchanged; the refusal
/// inside MULTI aborts the transaction, as any command the proxy refuses
/// while queueing does.
#[test]
fn switching_tenant_by_hello_is_refused_while_subscribed_or_in_multi() {
    let (_redis, proxy) = start("");
    two_keyspaces(&proxy);
    let mut sub = login(&proxy, "globex");
    assert_eq!(sub.call(&["SUBSCRIBE", "news"]), format!("*3\r\n{}{}:1\r\n", bulk("subscribe"), bulk("news")));
    assert_eq!(sub.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]), HOLDS_STATE);
    let mut globex = login(&proxy, "globex");
    let mut acme = login(&proxy, "acme");
    assert_eq!(acme.call(&["PUBLISH", "news", "acme's"]), ":0\r\n", "no acme subscriber");
    assert_eq!(globex.call(&["PUBLISH", "news", "globex's"]), ":1\r\n");
    let message = String::from_utf8_lossy(&sub.read_frame()).into_owned();
    assert_eq!(message, format!("*3\r\n{}{}{}", bulk("message"), bulk("news"), bulk("globex's")), "RESP2, unprefixed");

    let mut tx = login(&proxy, "globex");
    assert_eq!(tx.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(tx.call(&["GET", "k"]), "+QUEUED\r\n");
    assert_eq!(tx.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]), HOLDS_STATE);
    assert_eq!(tx.call(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(tx.call(&["GET", "k"]), bulk("globex's"));
    assert_eq!(tx.call(&["GET", "acme-only"]), "$-1\r\n");
    let hello = tx.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]);
    assert!(hello.starts_with('%'), "the transaction is over: {hello}");
    assert_eq!(tx.call(&["GET", "k"]), bulk("acme's"));
}

#[test]
fn a_default_tenant_binds_unauthenticated_clients() {
    let (redis, proxy) = start("[tenancy]\ndefault_tenant = \"globex\"\n");
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(redis.direct().get::<_, String>("globex:k").expect("get"), "v");
}

#[test]
fn dangerous_commands_are_refused() {
    let (_redis, proxy) = start("");
    let mut acme = login(&proxy, "acme");
    for cmd in [
        &["SELECT", "1"][..],
        &["SWAPDB", "0", "1"],
        &["MOVE", "k", "1"],
        &["CONFIG", "GET", "*"],
        &["DEBUG", "SLEEP", "0"],
        &["MONITOR"],
        &["FLUSHALL"],
        &["FLUSHDB"],
        &["DBSIZE"],
        &["ACL", "LIST"],
        &["SCRIPT", "FLUSH"],
        &["EVAL", "return 1", "0"],
        &["FUNCTION", "LIST"],
        &["MIGRATE", "127.0.0.1", "1", "k", "0", "100"],
        &["PUBSUB", "NUMPAT"],
        &["RESTORE", "k", "0", "payload"],
        &["RESTORE-ASKING", "k", "0", "payload"],
        &["SCRIPT", "DEBUG", "YES"],
        &["MODULE", "LIST"],
        &["CLIENT", "PAUSE", "10000"],
        &["CLIENT", "UNPAUSE"],
        &["NOSUCHCOMMAND"],
    ] {
        let reply = acme.call(cmd);
        assert_eq!(reply, "-NOPERM this command is not allowed for tenant acme\r\n", "{cmd:?}");
    }
    let body = proxy.admin_get("/metrics").1;
    let unknown = metric(&body, "nearcache_commands_total{command=\"unknown\"}");
    assert!(unknown.is_some_and(|n| n >= 1.0), "refused commands are counted too: {body}");
    let reply = acme.call(&["CLIENT", "TRACKING", "on", "BCAST"]);
    assert!(reply.starts_with("-NOPERM CLIENT TRACKING with BCAST"), "{reply}");
    let reply = acme.call(&["SORT", "k", "BY", "nosort", "GET", "*"]);
    assert!(reply.starts_with("-NOPERM SORT with BY or GET"), "{reply}");
    assert_eq!(acme.call(&["SET", "x", "1"]), "+OK\r\n");
    let reply = acme.call(&["COPY", "x", "x", "DB", "5", "REPLACE"]);
    assert!(reply.starts_with("-NOPERM COPY with DB"), "{reply}");
    assert_eq!(acme.call(&["COPY", "x", "y"]), ":1\r\n");
    assert_eq!(acme.call(&["RPUSH", "l", "2", "1"]), ":2\r\n");
    assert_eq!(acme.call(&["SORT", "l"]), format!("*2\r\n{}{}", bulk("1"), bulk("2")));
}

/// Inside MULTI the requests are rewritten as they are queued and EXEC's
/// reply is fixed element by element; a command the proxy refuses while
/// queueing aborts the transaction, as Redis does.
#[test]
fn transactions_are_rewritten_and_refusals_abort_them() {
    let (redis, proxy) = start("");
    let mut acme = login(&proxy, "acme");
    assert_eq!(acme.call(&["SET", "k", "v"]), "+OK\r\n");
    assert_eq!(acme.call(&["MULTI"]), "+OK\r\n");
    for cmd in [&["KEYS", "*"][..], &["RPUSH", "q", "x"], &["BLPOP", "q", "0"], &["INFO"], &["GET", "k"]] {
        assert_eq!(acme.call(cmd), "+QUEUED\r\n", "{cmd:?}");
    }
    let exec = acme.call(&["EXEC"]);
    let expected = format!("*5\r\n*1\r\n{}:1\r\n*2\r\n{}{}", bulk("k"), bulk("q"), bulk("x"));
    assert!(exec.starts_with(&expected), "{exec}");
    assert!(exec.contains("# Server\r\nredis_version:") && !exec.contains("tcp_port"), "{exec}");
    assert!(exec.ends_with(&bulk("v")) && !exec.contains("acme:"), "{exec}");

    assert_eq!(acme.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(acme.call(&["SET", "a", "1"]), "+QUEUED\r\n");
    assert!(acme.call(&["CONFIG", "GET", "*"]).starts_with("-NOPERM"));
    assert_eq!(acme.call(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(acme.call(&["GET", "a"]), "$-1\r\n");
    assert_eq!(acme.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(acme.call(&["SET", "a", "2"]), "+QUEUED\r\n");
    assert_eq!(acme.call(&["EXEC"]), "*1\r\n+OK\r\n");
    assert_eq!(redis.direct().get::<_, String>("acme:a").expect("get"), "2");
}

/// Per-tenant settings: allow/deny rules, max_connections, allow_scripts,
/// and the metrics labelled by tenant.
#[test]
fn rules_connection_limit_and_scripts_per_tenant() {
    let redis = RedisServer::start();
    let toml = config("").replace(
        "[[tenant]]\nname = \"globex\"",
        "deny = [\"@write\", \"flushall\"]\nmax_connections = 2\n[[tenant]]\nname = \"globex\"\nallow_scripts = true",
    );
    let proxy = Proxy::start_with(redis.port, &toml);
    let mut acme = login(&proxy, "acme");
    let refused = acme.call(&["SET", "k", "v"]);
    assert_eq!(refused, "-NOPERM this command is not allowed for tenant acme\r\n");
    assert_eq!(acme.call(&["GET", "k"]), "$-1\r\n");
    let second = login(&proxy, "acme");
    let mut third = proxy.raw();
    let over = third.call(&["AUTH", "acme", "acme-pw"]);
    assert_eq!(over, "-ERR max number of connections reached for this tenant\r\n");
    drop(second);
    assert!(eventually(Duration::from_secs(2), || third.call(&["AUTH", "acme", "acme-pw"]) == "+OK\r\n"));

    let mut globex = login(&proxy, "globex");
    let script = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])";
    assert_eq!(globex.call(&["EVAL", script, "1", "s", "scripted"]), bulk("scripted"));
    assert_eq!(redis.direct().get::<_, String>("globex:s").expect("get"), "scripted");
    let refused = acme.call(&["EVAL", "return 1", "0"]);
    assert_eq!(refused, "-NOPERM this command is not allowed for tenant acme\r\n");

    let body = proxy.admin_get("/metrics").1;
    let commands = metric(&body, "nearcache_tenant_commands_total{tenant=\"acme\"}");
    assert!(commands.is_some_and(|n| n >= 3.0), "{body}");
    let refusals = metric(&body, "nearcache_tenant_refusals_total{tenant=\"acme\",reason=\"not_allowed\"}");
    assert!(refusals.is_some_and(|n| n >= 2.0), "{body}");
    let full = metric(&body, "nearcache_tenant_refusals_total{tenant=\"acme\",reason=\"max_connections\"}");
    assert!(full.is_some_and(|n| n >= 1.0), "{body}");
}

#[test]
fn pubsub_is_confined_to_the_tenant() {
    let (_redis, proxy) = start("");
    let mut acme_sub = login(&proxy, "acme");
    let mut globex = login(&proxy, "globex");
    let mut acme = login(&proxy, "acme");
    assert_eq!(acme_sub.call(&["SUBSCRIBE", "news"]), format!("*3\r\n{}{}:1\r\n", bulk("subscribe"), bulk("news")));
    assert_eq!(globex.call(&["PUBLISH", "news", "from globex"]), ":0\r\n");
    assert_eq!(acme.call(&["PUBLISH", "news", "from acme"]), ":1\r\n");
    let message = String::from_utf8_lossy(&acme_sub.read_frame()).into_owned();
    assert_eq!(message, format!("*3\r\n{}{}{}", bulk("message"), bulk("news"), bulk("from acme")));
    let channels = acme.call(&["PUBSUB", "CHANNELS"]);
    assert_eq!(channels, format!("*1\r\n{}", bulk("news")));
    assert_eq!(globex.call(&["PUBSUB", "CHANNELS"]), "*0\r\n");

    // Client-side caching: invalidation pushes name the tenant's keys
    // without the prefix.
    let mut tracked = proxy.raw();
    assert!(tracked.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]).starts_with('%'));
    assert_eq!(tracked.call(&["CLIENT", "TRACKING", "on"]), "+OK\r\n");
    assert_eq!(tracked.call(&["GET", "watched"]), "_\r\n");
    assert_eq!(acme.call(&["SET", "watched", "1"]), "+OK\r\n");
    let push = String::from_utf8_lossy(&tracked.read_frame()).into_owned();
    assert_eq!(push, format!(">2\r\n{}*1\r\n{}", bulk("invalidate"), bulk("watched")));
}

#[test]
fn rate_limit_holds_within_twenty_percent() {
    let (_redis, proxy) = start("");
    drop(proxy);
    let redis = RedisServer::start();
    let limited =
        config("").replace("[[tenant]]\nname = \"globex\"", "max_ops_per_sec = 200\n[[tenant]]\nname = \"globex\"");
    let proxy = Proxy::start_with(redis.port, &limited);
    let mut acme = login(&proxy, "acme");
    let started = Instant::now();
    let (mut ok, mut busy) = (0u32, 0u32);
    while started.elapsed() < Duration::from_secs(3) {
        match acme.call(&["INCR", "n"]) {
            r if r.starts_with(':') => ok += 1,
            r if r.starts_with("-BUSY rate limit exceeded for tenant acme") => busy += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    // One second of burst plus 200/s.
    let expected = 200.0 * (started.elapsed().as_secs_f64() + 1.0);
    let ratio = f64::from(ok) / expected;
    println!("rate limit: {ok} allowed, {busy} refused over {:?} (expected ≈{expected:.0})", started.elapsed());
    assert!((0.8..=1.2).contains(&ratio), "allowed {ok}, expected ≈{expected:.0}");
    assert!(busy > 0);
}

/// Strings aimed at the other tenant's data.
const PROBES: &[&str] = &[
    "globex:secret",
    "secret",
    "*",
    "\\*",
    "[a-z]*",
    "globex:*",
    "{globex:secret}",
    "",
    "acme:",
    "..",
    "0",
    "1",
    "-1",
    "10000",
    "MATCH",
    "COUNT",
    "STREAMS",
    "KEYS",
    "BY",
    "GET",
    "#",
    "STORE",
];

/// Hand-written attempts at known escape routes, on top of the generated
/// ones.
const TARGETED: &[&[&str]] = &[
    &["SCAN", "0", "MATCH", "*", "COUNT", "100000"],
    &["SCAN", "0", "MATCH", "globex:*", "COUNT", "100000"],
    &["SCAN", "0", "MATCH", "x", "MATCH", "*", "COUNT", "100000"],
    &["SCAN", "0", "TYPE", "string", "COUNT", "100000"],
    &["KEYS", "\\*"],
    &["KEYS", "[g]lobex:*"],
    &["KEYS", "*globex*"],
    &["KEYS", "??????*"],
    &["SORT", "list", "BY", "globex:*"],
    &["SORT", "list", "GET", "globex:*"],
    &["SORT_RO", "list", "GET", "#"],
    &["OBJECT", "ENCODING", "globex:secret"],
    &["OBJECT", "FREQ", "globex:secret"],
    &["MEMORY", "USAGE", "globex:secret"],
    &["DEBUG", "OBJECT", "globex:secret"],
    &["DUMP", "globex:secret"],
    &["RENAME", "mine", "globex:secret"],
    &["COPY", "list", "globex:secret", "REPLACE"],
    &["MOVE", "globex:secret", "1"],
    &["SUNIONSTORE", "globex:secret", "list"],
    &["GEORADIUS", "g", "0", "0", "1", "km", "STORE", "globex:secret"],
    &["XREAD", "STREAMS", "globex:stream", "0"],
    &["XREAD", "COUNT", "1", "STREAMS", "stream", "globex:stream", "0", "0"],
    &["EVAL", "return redis.call('GET','globex:secret')", "0"],
    &["EVAL_RO", "return redis.call('KEYS','*')", "0"],
    &["FCALL", "f", "1", "globex:secret"],
    &["MIGRATE", "127.0.0.1", "1", "", "0", "100", "KEYS", "globex:secret"],
    &["CLIENT", "LIST"],
    &["CLIENT", "TRACKING", "on", "BCAST"],
    &["CLIENT", "TRACKING", "on", "PREFIX", "globex:"],
    &["PUBSUB", "CHANNELS"],
    &["PUBSUB", "CHANNELS", "*"],
    &["PUBSUB", "NUMSUB", "globex:news"],
    &["PUBSUB", "NUMPAT"],
    &["SELECT", "1"],
    &["SWAPDB", "0", "1"],
    &["FLUSHALL"],
    &["CONFIG", "SET", "dir", "/tmp"],
    &["RANDOMKEY"],
];

/// Every command in the table, with several argument lists made of probes,
/// plus [`TARGETED`], run as `acme` (RESP2 and RESP3 in turn) against a
/// Redis holding `globex`'s data: no reply may carry globex's values or key
/// names, globex's data must be untouched, no key may appear outside the
/// two prefixes, and no pub/sub message may cross between the tenants.
#[test]
fn escape_attempts_never_reach_the_other_tenant() {
    // AUTH and HELLO are probed too: their failures must not lock us out.
    let (redis, proxy) = start("[tenancy]\nauth_failures_per_minute = 1000000000\n");
    let mut globex = login(&proxy, "globex");
    for cmd in [
        &["SET", "secret", "GLOBEX-SECRET-VALUE"][..],
        &["SET", "other", "GLOBEX-OTHER-VALUE"],
        &["RPUSH", "list", "GLOBEX-LIST-VALUE"],
        &["HSET", "hash", "f", "GLOBEX-HASH-VALUE"],
        &["SADD", "set", "GLOBEX-SET-VALUE"],
        &["ZADD", "zset", "1", "GLOBEX-ZSET-VALUE"],
        &["XADD", "stream", "1-1", "f", "GLOBEX-STREAM-VALUE"],
    ] {
        assert!(!globex.call(cmd).starts_with('-'), "{cmd:?}");
    }
    let mut acme = login(&proxy, "acme");
    assert_eq!(acme.call(&["SET", "mine", "acme's"]), "+OK\r\n");
    assert_eq!(acme.call(&["RPUSH", "list", "3", "1", "2"]), ":3\r\n");
    // Listeners on everything each tenant may listen to.
    let mut globex_ear = login(&proxy, "globex");
    assert!(globex_ear.call(&["PSUBSCRIBE", "*"]).contains("psubscribe"));
    let mut acme_ear = login(&proxy, "acme");
    assert!(acme_ear.call(&["PSUBSCRIBE", "*"]).contains("psubscribe"));
    let mut direct = redis.direct();
    let snapshot = |d: &mut redis::Connection| -> Vec<(String, Vec<u8>)> {
        let mut keys: Vec<String> = d.keys("globex:*").expect("keys");
        keys.sort();
        keys.into_iter().map(|k| (k.clone(), redis::cmd("DUMP").arg(&k).query(d).expect("dump"))).collect()
    };
    let before = snapshot(&mut direct);

    let mut commands: Vec<Vec<&str>> = TARGETED.iter().map(|c| c.to_vec()).collect();
    let mut entries = 0;
    for cmd in nearcache::commands::all() {
        let mut names = vec![vec![cmd.name]];
        names.extend(cmd.subcommands.iter().map(|s| vec![cmd.name, s.name]));
        for name in names {
            entries += 1;
            for (i, probe) in PROBES.iter().enumerate() {
                for extra in 0..3 {
                    let mut args = name.clone();
                    args.extend((0..=extra).map(|j| PROBES[(i + j * 7) % PROBES.len()]));
                    args[name.len()] = probe;
                    commands.push(args);
                }
            }
        }
    }
    let mut leaks = Vec::new();
    for (n, args) in commands.iter().enumerate() {
        // A fresh connection each time: subscriptions, MULTI or a blocked
        // command must not spill into the next attempt.
        let mut acme = proxy.raw();
        let hello = if n % 2 == 0 {
            acme.call(&["AUTH", "acme", "acme-pw"])
        } else {
            acme.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"])
        };
        assert!(hello.starts_with('+') || hello.starts_with('%'), "{hello}");
        acme.stream.set_read_timeout(Some(Duration::from_millis(50))).expect("timeout");
        acme.cmd(args);
        // One reply (a blocked command gives none within the timeout).
        if let Some(frame) = acme.try_read_frame() {
            let text = String::from_utf8_lossy(&frame).into_owned();
            // globex's values, or names acme never uses (its own keys may
            // well be called "globex:secret": that is acme:globex:secret).
            let names = ["globex:other", "globex:list", "globex:hash", "globex:set", "globex:zset", "globex:stream"];
            if text.contains("GLOBEX-") || names.iter().any(|m| text.contains(m)) {
                leaks.push(format!("{args:?} -> {text:?}"));
            }
        }
    }
    // globex's listener hears nothing of acme's publishing, then its own.
    let heard = |ear: &mut common::Raw| -> Vec<String> {
        ear.stream.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
        std::iter::from_fn(|| ear.try_read_frame()).map(|f| String::from_utf8_lossy(&f).into_owned()).collect()
    };
    leaks.extend(heard(&mut globex_ear).into_iter().map(|m| format!("globex heard {m:?}")));
    assert_eq!(globex.call(&["PUBLISH", "news", "GLOBEX-MESSAGE"]), ":1\r\n", "only globex's own listener");
    let own = heard(&mut globex_ear);
    assert!(own.len() == 1 && own[0].contains("GLOBEX-MESSAGE"), "{own:?}");
    leaks.extend(
        heard(&mut acme_ear).into_iter().filter(|m| m.contains("GLOBEX-")).map(|m| format!("acme heard {m:?}")),
    );
    let after = snapshot(&mut direct);
    println!("escape suite: {} attempts over {entries} commands and subcommands", commands.len());
    assert!(leaks.is_empty(), "{} leaks, e.g. {:?}", leaks.len(), &leaks[..leaks.len().min(10)]);
    assert_eq!(before, after, "globex's data changed");
    let stray: Vec<String> = direct
        .keys::<_, Vec<String>>("*")
        .expect("keys")
        .into_iter()
        .filter(|k| !k.starts_with("acme:") && !k.starts_with("globex:"))
        .collect();
    assert!(stray.is_empty(), "keys outside both prefixes: {stray:?}");
    assert!(eventually(Duration::from_secs(1), || globex.call(&["GET", "secret"]) == bulk("GLOBEX-SECRET-VALUE")));
}

/// An address may hold only so many connections that have not
/// authenticated (each can keep a few hundred KiB of unfinished requests);
/// one that authenticates frees its place.
#[test]
fn unauthenticated_connections_are_capped_per_address() {
    let (_redis, proxy) = start("[tenancy]\nmax_unauthenticated_per_address = 2\n");
    let mut first = proxy.raw();
    let mut second = proxy.raw();
    assert_eq!(first.call(&["PING"]), "+PONG\r\n");
    assert_eq!(second.call(&["PING"]), "+PONG\r\n");
    let mut third = proxy.raw();
    assert_eq!(third.read_frame(), b"-ERR too many unauthenticated connections from this address\r\n");
    assert!(third.is_closed());
    assert_eq!(first.call(&["AUTH", "acme", "acme-pw"]), "+OK\r\n");
    let mut fourth = proxy.raw();
    assert_eq!(fourth.call(&["PING"]), "+PONG\r\n", "the authenticated one freed its place");
    drop(second);
    let freed = eventually(Duration::from_secs(5), || proxy.raw().call(&["PING"]) == "+PONG\r\n");
    assert!(freed, "a closed one frees its place too");
    let body = proxy.admin_get("/metrics").1;
    assert!(metric(&body, "nearcache_unauthenticated_refused_total").is_some_and(|n| n >= 1.0), "{body}");
}

/// CLIENT LIST, CLIENT KILL and CLIENT UNBLOCK are answered by the proxy
/// for the tenant's own clients: another tenant's clients are neither
/// listed nor killed nor unblocked.
#[test]
fn tenants_see_and_kill_only_their_own_clients() {
    let (_redis, proxy) = start("");
    let mut acme = login(&proxy, "acme");
    let mut acme2 = login(&proxy, "acme");
    let mut globex = login(&proxy, "globex");
    assert_eq!(globex.call(&["CLIENT", "SETNAME", "globex-secret-name"]), "+OK\r\n");
    let globex_id = globex.call(&["CLIENT", "ID"]).trim_start_matches(':').trim_end().to_string();
    globex.cmd(&["BLPOP", "q", "0"]);
    let list = acme.call(&["CLIENT", "LIST"]);
    assert_eq!(list.lines().filter(|l| l.contains("id=")).count(), 2, "{list}");
    assert!(list.lines().filter(|l| l.contains("id=")).all(|l| l.contains(" user=acme ")), "{list}");
    assert!(!list.contains("globex"), "{list}");
    assert_eq!(acme.call(&["CLIENT", "LIST", "ID", &globex_id]), "$0\r\n\r\n");
    assert_eq!(acme.call(&["CLIENT", "KILL", "ID", &globex_id]), ":0\r\n");
    assert_eq!(acme.call(&["CLIENT", "KILL", "USER", "globex"]), ":0\r\n");
    assert_eq!(acme.call(&["CLIENT", "UNBLOCK", &globex_id]), ":0\r\n");
    assert_eq!(acme.call(&["CLIENT", "KILL", "USER", "acme"]), ":1\r\n", "its other client");
    assert!(acme2.is_closed());
    assert_eq!(acme.call(&["RPUSH", "q", "x"]), ":1\r\n", "acme's q, not globex's");
    assert_eq!(globex.try_read_frame(), None, "globex still blocked, on its own q");
    let mut globex2 = login(&proxy, "globex");
    assert_eq!(globex2.call(&["RPUSH", "q", "y"]), ":1\r\n");
    assert_eq!(globex.read_frame(), b"*2\r\n$1\r\nq\r\n$1\r\ny\r\n");
}

/// A tenant's plain CLIENT INFO and CLIENT LIST are the proxy's view of
/// its own clients: its address and the proxy's, `user=<tenant>`, and
/// nothing of the upstream connections (Redis' port, the proxy's
/// addresses towards it, its user) nor of another tenant's clients.
#[test]
fn client_info_and_list_show_only_the_tenants_own_clients() {
    let (redis, proxy) = start("");
    let mut acme = login(&proxy, "acme");
    let mut acme2 = login(&proxy, "acme");
    let mut globex = login(&proxy, "globex");
    assert_eq!(acme.call(&["CLIENT", "SETNAME", "acme-main"]), "+OK\r\n");
    assert_eq!(globex.call(&["CLIENT", "SETNAME", "globex-secret-name"]), "+OK\r\n");
    for c in [&mut acme, &mut acme2, &mut globex] {
        assert!(c.call(&["SET", "k", "v"]).starts_with('+'), "upstream connections are open");
    }
    // The proxy's upstream connections, as Redis lists them: their
    // addresses must not show through.
    let upstream: String = redis::cmd("CLIENT").arg("LIST").query(&mut redis.direct()).expect("client list");
    let upstream_addrs: Vec<&str> = upstream
        .lines()
        .filter_map(|l| l.split(' ').find_map(|f| f.strip_prefix("addr=")))
        .filter(|a| !a.is_empty())
        .collect();
    assert!(!upstream_addrs.is_empty(), "{upstream}");
    let redis_port = format!(":{}", redis.port);
    let me = acme.stream.local_addr().expect("addr").to_string();
    let id = acme.call(&["CLIENT", "ID"]).trim_start_matches(':').trim_end().to_string();

    let info = acme.call(&["CLIENT", "INFO"]);
    let line = info.lines().nth(1).unwrap_or_default();
    assert_eq!(info, bulk(&format!("{line}\n")), "one line, in a bulk");
    assert!(line.starts_with(&format!("id={id} addr={me} laddr={} ", proxy.addr)), "{info}");
    assert!(line.contains(" name=acme-main ") && line.contains(" user=acme "), "{info}");
    let list = acme.call(&["CLIENT", "LIST"]);
    let lines: Vec<&str> = list.lines().filter(|l| l.contains("id=")).collect();
    assert_eq!(lines.len(), 2, "acme's two clients: {list}");
    assert!(
        lines.iter().all(|l| l.contains(" user=acme ") && l.contains(&format!(" laddr={} ", proxy.addr))),
        "{list}"
    );
    assert!(lines.iter().any(|l| l.contains(&format!(" addr={me} "))), "{list}");
    for text in [&info, &list] {
        assert!(!text.contains(&redis_port), "Redis' port shows: {text}");
        assert!(!text.contains("globex"), "another tenant's client shows: {text}");
        assert!(!text.contains("user=default"), "the proxy's upstream user shows: {text}");
        for addr in &upstream_addrs {
            assert!(!text.contains(&format!("={addr} ")), "an upstream connection's address {addr} shows: {text}");
        }
    }
    // RESP3: the same text, as a verbatim string.
    let mut resp3 = proxy.raw();
    assert!(resp3.call(&["HELLO", "3", "AUTH", "acme", "acme-pw"]).starts_with('%'));
    let info = resp3.call(&["CLIENT", "INFO"]);
    assert!(info.starts_with('=') && info.contains("\r\ntxt:id=") && info.contains(" user=acme "), "{info}");
    assert!(!info.contains(&redis_port) && !info.contains("globex"), "{info}");
}
