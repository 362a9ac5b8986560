//! The circuit breaker against a real redis-server that the tests kill,
//! restart, pause (SIGSTOP) and resume — with failover off, so requests
//! fail fast while it is open (tests/failover.rs covers failover on).
mod common;

use common::{eventually, metric, wait_ready, Proxy, RedisServer};
use std::time::{Duration, Instant};

const FAST: &str =
    "[upstream]\nrequest_timeout = \"300ms\"\nconnect_timeout = \"300ms\"\nreconnect_max_backoff = \"200ms\"\n\
                    [breaker]\nfailure_threshold = 3\nwindow = \"10s\"\nopen_for = \"300ms\"\nsuccess_threshold = 2\n\
                    [failover]\nenabled = false\n";

fn breaker_state(proxy: &Proxy, redis: &RedisServer) -> Option<f64> {
    let series = format!("nearcache_breaker_state{{upstream=\"redis://127.0.0.1:{}/0\"}}", redis.port);
    metric(&proxy.admin_get("/metrics").1, &series)
}

fn start(redis: &RedisServer) -> Proxy {
    let proxy = Proxy::start_with(redis.port, FAST);
    wait_ready(&proxy);
    proxy
}

#[test]
fn opens_when_the_upstream_dies_and_closes_when_it_returns() {
    let mut redis = RedisServer::start();
    let proxy = start(&redis);
    assert_eq!(breaker_state(&proxy, &redis), Some(0.0));
    let mut raw = proxy.raw();
    redis.kill();
    let opened = eventually(Duration::from_secs(5), || {
        let _ = raw.call(&["GET", "k"]);
        breaker_state(&proxy, &redis) == Some(2.0)
    });
    assert!(opened, "breaker never opened: {:?}", breaker_state(&proxy, &redis));
    // Open: requests fail at once, with the reason.
    let started = Instant::now();
    let reply = raw.call(&["GET", "k"]);
    assert!(reply.starts_with("-ERR upstream unavailable: circuit open"), "{reply:?}");
    assert!(started.elapsed() < Duration::from_millis(100), "fail-fast took {:?}", started.elapsed());
    // A transaction that cannot begin ends its connection (what it
    // pipelined next must not run outside the transaction).
    let mut tx = proxy.raw();
    let reply = tx.call(&["MULTI"]);
    assert!(reply.starts_with("-ERR upstream unavailable: circuit open"), "{reply:?}");
    assert!(tx.is_closed());
    let (status, body) = proxy.admin_get("/ready");
    assert_eq!(status, 503, "failover off and the upstream down: not ready ({body})");
    assert!(body.contains("\"upstream\":\"down\",\"mode\":\"normal\""), "{body}");

    redis.restart();
    let recovered = eventually(Duration::from_secs(10), || raw.call(&["SET", "k", "back"]) == "+OK\r\n");
    assert!(recovered, "requests never flowed again");
    assert_eq!(breaker_state(&proxy, &redis), Some(0.0));
    let body = proxy.admin_get("/metrics").1;
    for to in ["open", "half_open", "closed"] {
        let series = format!("nearcache_breaker_transitions_total{{to=\"{to}\"}}");
        assert!(metric(&body, &series).is_some_and(|n| n >= 1.0), "no {series} in\n{body}");
    }
}

#[test]
fn a_hung_upstream_opens_the_breaker_and_recovers_after_sigcont() {
    let redis = RedisServer::start();
    let proxy = start(&redis);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "k", "v"]), "+OK\r\n");
    redis.pause();
    let started = Instant::now();
    let reply = raw.call(&["GET", "never-cached"]);
    assert!(reply.starts_with("-ERR upstream"), "{reply:?}");
    assert!(started.elapsed() < Duration::from_secs(2), "a hung request took {:?}", started.elapsed());
    // request_timeout × failure_threshold is 0.9 s; allow generously for
    // reconnect attempts and a busy machine.
    let opened = eventually(Duration::from_secs(8), || {
        let _ = raw.call(&["GET", "never-cached"]);
        breaker_state(&proxy, &redis) == Some(2.0)
    });
    println!("breaker opened {:?} after the upstream hung", started.elapsed());
    assert!(opened, "breaker never opened on a hung upstream");
    redis.resume();
    let recovered = eventually(Duration::from_secs(10), || raw.call(&["GET", "k"]) == "$1\r\nv\r\n");
    assert!(recovered, "never recovered after SIGCONT");
}
