//! Per-tenant fairness against a real redis-server: what one tenant may
//! take of the shared proxy (requests in flight, dedicated connections,
//! request size, keys and bytes per second) is bounded by its own limits,
//! and reaching them slows or refuses only that tenant.
mod common;

use common::{command_stats, eventually, metric, Proxy, Raw, RedisServer};
use redis::Commands;
use std::io::Write;
use std::time::{Duration, Instant};

/// Two tenants; `acme_settings` are added to acme's `[[tenant]]`.
fn start(acme_settings: &str) -> (RedisServer, Proxy) {
    let hash = |p: &str| nearcache::tenancy::hash_password(p.as_bytes());
    let toml = format!(
        "[[tenant]]\nname = \"acme\"\npassword_sha256 = \"{}\"\n{acme_settings}\n\
         [[tenant]]\nname = \"globex\"\npassword_sha256 = \"{}\"\n",
        hash("acme-pw"),
        hash("globex-pw")
    );
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, &toml);
    (redis, proxy)
}

fn login(proxy: &Proxy, tenant: &str) -> Raw {
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["AUTH", tenant, &format!("{tenant}-pw")]), "+OK\r\n");
    raw
}

fn pipeline(raw: &mut Raw, key: &str, n: usize) {
    raw.send(&pipelined(key, n));
}

/// `n` pipelined `INCR key`.
fn pipelined(key: &str, n: usize) -> Vec<u8> {
    format!("*2\r\n$4\r\nINCR\r\n${}\r\n{key}\r\n", key.len()).repeat(n).into_bytes()
}

/// With `max_in_flight = 1`, a tenant's pipelines from several connections
/// are held back at the proxy, not refused: every reply is right, another
/// tenant's request is answered promptly while they are still outstanding
/// (the held-back tenant slows only itself), and once they are answered (or
/// their client is gone) nothing stays counted.
#[test]
fn max_in_flight_holds_back_without_refusing_or_leaking() {
    // Per client: ~550 KB of INCRs, read by the proxy 16 KiB at a time, so
    // acme's work is dozens of batches that the cap sends one at a time.
    const PER_CLIENT: usize = 20_000;
    let (redis, proxy) = start("max_in_flight = 1");
    let mut globex = login(&proxy, "globex");
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let mut client = login(&proxy, "acme");
            let mut writer = client.stream.try_clone().expect("clone");
            std::thread::spawn(move || {
                let incrs = pipelined("n", PER_CLIENT);
                let sending = std::thread::spawn(move || writer.write_all(&incrs).expect("write"));
                for i in 0..PER_CLIENT {
                    let reply = String::from_utf8(client.read_frame()).expect("utf8");
                    assert!(reply.starts_with(':'), "reply {i}: {reply:?}");
                }
                sending.join().expect("writer");
            })
        })
        .collect();
    let mut gone = login(&proxy, "acme");
    pipeline(&mut gone, "gone", 300);
    drop(gone);
    // Once acme's pipelines run, globex's request is answered at once,
    // while most of acme's are still outstanding: Redis has not even run
    // them yet. (Without the cap the proxy reads acme's pipelines whole and
    // globex's request queues behind more than half of them.)
    let mut direct = redis.direct();
    let started =
        eventually(Duration::from_secs(10), || direct.get::<_, Option<i64>>("acme:n").expect("get").is_some());
    assert!(started, "acme's pipelines never reached Redis");
    let asked = Instant::now();
    assert_eq!(globex.call(&["SET", "k", "v"]), "+OK\r\n");
    let took = asked.elapsed();
    let done: i64 = direct.get("acme:n").expect("get");
    println!("globex answered in {took:?}, acme's INCRs run by then: {done} of {}", 3 * PER_CLIENT);
    assert!(took < Duration::from_secs(1), "globex waited {took:?} behind acme");
    let third = i64::try_from(PER_CLIENT).expect("count");
    assert!(done < third, "globex was answered only after {done} of acme's requests had run");
    for reader in readers {
        reader.join().expect("acme's replies");
    }
    let body = proxy.admin_get("/metrics").1;
    let held = metric(&body, "nearcache_tenant_refusals_total{tenant=\"acme\",reason=\"max_in_flight\"}");
    assert!(held.is_some_and(|n| n >= 1.0), "clients were held back: {body}");
    // Whatever the client that left had sent is answered or dropped, and
    // released: acme is not held back forever.
    let mut acme = login(&proxy, "acme");
    assert!(eventually(Duration::from_secs(5), || {
        let direct: i64 = redis.direct().get("acme:n").expect("get");
        direct >= i64::try_from(3 * PER_CLIENT).expect("count")
            && acme.call(&["GET", "n"]) == format!("${}\r\n{direct}\r\n", direct.to_string().len())
    }));
}

/// A lone request's replies are written to the client by the pool's
/// reader, and its session may not wake again until its client sends: the
/// request's count against `max_in_flight` is let go as its reply arrives,
/// so a client that went quiet after its reply holds nothing, and the
/// tenant's other clients are served one after the other (with a count
/// left behind, every request of theirs would wait forever).
#[test]
fn a_quiet_client_holds_no_count_against_max_in_flight() {
    let (_redis, proxy) = start("max_in_flight = 1");
    let mut clients: Vec<Raw> = (0..3).map(|_| login(&proxy, "acme")).collect();
    assert_eq!(clients[0].call(&["SET", "k", "v"]), "+OK\r\n");
    for round in 0..300 {
        let client = &mut clients[round % 3];
        if round % 2 == 0 {
            assert_eq!(client.call(&["GET", "k"]), "$1\r\nv\r\n", "round {round}");
        } else {
            client.send(b"*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
            let incr = String::from_utf8(client.read_frame()).expect("utf8");
            assert_eq!(incr, format!(":{}\r\n", round / 2 + 1), "round {round}");
            assert_eq!(client.read_frame(), b"$1\r\nv\r\n", "round {round}");
        }
    }
}

/// `max_dedicated = 1`: a second blocking command of the tenant is refused
/// while the first holds its dedicated connection; another tenant is not
/// affected, and the connection is available again once released.
#[test]
fn max_dedicated_caps_a_tenants_upstream_connections() {
    let (_redis, proxy) = start("max_dedicated = 1");
    let mut blocked = login(&proxy, "acme");
    blocked.cmd(&["BLPOP", "q", "0"]);
    let mut second = login(&proxy, "acme");
    let busy = "-BUSY tenant acme holds its max_dedicated upstream connections (transactions, blocking commands, \
                subscriptions): retry later\r\n";
    assert!(eventually(Duration::from_secs(2), || second.call(&["BLPOP", "other", "0.1"]) == busy));
    assert_eq!(second.call(&["GET", "k"]), "$-1\r\n", "the shared pool still serves the tenant");
    let mut globex = login(&proxy, "globex");
    assert_eq!(globex.call(&["BLPOP", "q", "0.1"]), "*-1\r\n", "another tenant blocks as usual");
    assert_eq!(globex.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(globex.call(&["EXEC"]), "*0\r\n");

    assert_eq!(second.call(&["RPUSH", "q", "job"]), ":1\r\n");
    assert_eq!(blocked.read_frame(), b"*2\r\n$1\r\nq\r\n$3\r\njob\r\n");
    assert!(eventually(Duration::from_secs(2), || second.call(&["BLPOP", "other", "0.1"]) == "*-1\r\n"));

    // A transaction refused for the limit closes the client, as when its
    // connection cannot be opened: what it pipelined must not run outside it.
    blocked.cmd(&["BLPOP", "q", "0"]);
    let mut tx = login(&proxy, "acme");
    assert!(eventually(Duration::from_secs(2), || {
        let mut probe = login(&proxy, "acme");
        probe.call(&["BLPOP", "other", "0.1"]) == busy
    }));
    tx.send(b"*1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$1\r\n1\r\n");
    assert_eq!(tx.read_frame(), busy.as_bytes());
    assert!(tx.is_closed());
    assert_eq!(second.call(&["EXISTS", "t"]), ":0\r\n");

    let body = proxy.admin_get("/metrics").1;
    let refused = metric(&body, "nearcache_tenant_refusals_total{tenant=\"acme\",reason=\"max_dedicated\"}");
    assert!(refused.is_some_and(|n| n >= 2.0), "{body}");
}

/// `max_request_bytes`: a larger request is refused from its header, before
/// the proxy buffers it, and the client disconnected, as Redis does past
/// `proto-max-bulk-len`; other tenants keep the proxy's own limit.
#[test]
fn max_request_bytes_bounds_a_tenants_requests() {
    let (redis, proxy) = start("max_request_bytes = 1024");
    let mut acme = login(&proxy, "acme");
    let small = "x".repeat(900);
    assert_eq!(acme.call(&["SET", "small", &small]), "+OK\r\n");
    acme.send(b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$2000\r\n");
    assert_eq!(acme.read_frame(), b"-ERR Protocol error: request larger than the tenant's max_request_bytes\r\n");
    assert!(acme.is_closed());
    let mut globex = login(&proxy, "globex");
    assert_eq!(globex.call(&["SET", "big", &"y".repeat(100_000)]), "+OK\r\n");
    let keys: Vec<String> = redis.direct().keys("*big").expect("keys");
    assert_eq!(keys, vec!["globex:big"]);
}

/// Rates can count what a request costs: `max_keys_per_sec` counts the keys
/// a command names and `max_bytes_per_sec` its bytes, so one `MSET` of 500
/// keys is paid for like 500 `SET`s. A costly request is let through and
/// paid back before the next one; the connection stays open.
#[test]
fn rate_limits_count_keys_and_bytes() {
    let (_redis, proxy) = start("max_keys_per_sec = 100\nmax_bytes_per_sec = 100000");
    let mut acme = login(&proxy, "acme");
    let mut mset = vec!["MSET".to_string()];
    for i in 0..500 {
        mset.extend([format!("k{i}"), "v".to_string()]);
    }
    let args: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(acme.call(&args), "+OK\r\n");
    let over = "-BUSY rate limit exceeded for tenant acme (max_keys_per_sec)\r\n";
    assert_eq!(acme.call(&["GET", "k1"]), over);
    assert_eq!(acme.call(&["MGET", "k1", "k2"]), over);
    assert_eq!(acme.call(&["PING"]), "+PONG\r\n", "a command naming no key costs no key");

    let mut bytes = login(&proxy, "acme");
    assert_eq!(bytes.call(&["PUBLISH", "ch", &"z".repeat(200_000)]), ":0\r\n");
    assert_eq!(
        bytes.call(&["PUBLISH", "ch", "z"]),
        "-BUSY rate limit exceeded for tenant acme (max_bytes_per_sec)\r\n"
    );

    let mut globex = login(&proxy, "globex");
    assert_eq!(globex.call(&args), "+OK\r\n");
    assert_eq!(globex.call(&["GET", "k1"]), "$1\r\nv\r\n");
}

/// Before AUTH, `PING` is answered by the proxy: health checks work, and a
/// client that has not authenticated sends nothing to Redis.
#[test]
fn unauthenticated_ping_is_answered_by_the_proxy() {
    let (redis, proxy) = start("");
    let mut direct = redis.direct();
    let mut raw = proxy.raw();
    let (before, _) = command_stats(&mut direct, "ping");
    for _ in 0..50 {
        assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    }
    assert_eq!(raw.call(&["PING", "hi"]), "$2\r\nhi\r\n");
    assert_eq!(raw.call(&["PING", "a", "b"]), "-ERR wrong number of arguments for 'ping' command\r\n");
    assert_eq!(raw.call(&["GET", "k"]), "-NOAUTH Authentication required.\r\n");
    let (after, _) = command_stats(&mut direct, "ping");
    // The pool's keepalive PINGs (two connections, one per 500 ms) are all
    // Redis may have seen meanwhile, far fewer than the client's 51.
    assert!(after - before < 20, "{before} -> {after}");
}
