//! `redis-benchmark` (a real, demanding client) runs through the proxy with
//! no errors, for the command mix the core issue names.
mod common;

use common::{Proxy, RedisServer};
use std::process::Command;

#[test]
fn redis_benchmark_runs_clean_through_the_proxy() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port);
    for pipeline in ["1", "16"] {
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &proxy.addr.port().to_string()])
            .args(["-t", "get,set,lpush,lpop,incr,mset", "-n", "5000", "-c", "20", "-P", pipeline, "-q"])
            .output()
            .expect("redis-benchmark must be installed (scripts/test-deps.sh)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "exit {:?}: {stdout} {stderr}", out.status);
        for test in ["SET: ", "GET: ", "INCR: ", "LPUSH: ", "LPOP: ", "MSET (10 keys): "] {
            assert!(stdout.contains(test), "{test} missing: {stdout}");
        }
        assert!(!stdout.contains("ERR") && !stderr.contains("ERR"), "errors: {stdout} {stderr}");
        assert!(stdout.contains("requests per second"), "{stdout}");
        // Every INCR arrived (with -P, redis-benchmark may round its last
        // pipelines up, at most one pipeline per client).
        let n: i64 = redis::cmd("GET").arg("counter:__rand_int__").query(&mut redis.direct()).unwrap();
        let expected = if pipeline == "1" { 5000 } else { 10_000 };
        assert!((expected..expected + 16 * 20).contains(&n), "INCR count {n}, expected {expected}");
    }
    // redis-benchmark has no MGET test of its own: run it as a custom command.
    let out = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &proxy.addr.port().to_string(), "-n", "5000", "-c", "20", "-q"])
        .args(["MGET", "key:__rand_int__", "counter:__rand_int__", "missing"])
        .output()
        .expect("redis-benchmark");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("MGET") && !stdout.contains("ERR"), "{stdout}");
}
