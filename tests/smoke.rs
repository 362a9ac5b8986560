//! Smoke test of the harness: a real redis-server behind the proxy.
mod common;

use common::{Proxy, RedisServer};

#[test]
fn set_get_through_proxy() {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port);
    let mut con = proxy.conn();
    let _: () = redis::cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut con).unwrap();
    assert_eq!(v, "v");
    let direct: String = redis::cmd("GET").arg("k").query(&mut redis.direct()).unwrap();
    assert_eq!(direct, "v");
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["PING"]), "+PONG\r\n");
    let (status, body) = proxy.admin_get("/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("nearcache_commands_total"), "{body}");
}
