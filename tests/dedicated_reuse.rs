//! Dedicated connections reused: a transaction, a blocking command or a
//! subscription takes a connection the last client gave back (as it was
//! when it held nothing, else cleaned with RESET) instead of opening one,
//! and nothing of the last client's state reaches the next: watched keys, the database, the name, subscriptions,
//! tracking, a blocked command, a redirect naming the connection. Each test
//! finds the connection upstream (Redis' CLIENT LIST) to prove the second
//! client got the very connection the first gave back.
mod common;

use common::{eventually, metric, wait_ready, Proxy, Raw, RedisServer};
use std::collections::HashMap;
use std::time::Duration;

fn setup() -> (RedisServer, Proxy) {
    let redis = RedisServer::start();
    let proxy = Proxy::start(redis.port);
    wait_ready(&proxy);
    (redis, proxy)
}

/// Redis' CLIENT LIST, one field map per connection.
fn upstream_clients(direct: &mut Raw) -> Vec<HashMap<String, String>> {
    let list = direct.call(&["CLIENT", "LIST"]);
    list.lines()
        .filter(|l| l.contains("id="))
        .map(|l| {
            l.split(' ')
                .filter_map(|f| f.split_once('='))
                .map(|(k, v)| (k.trim_start_matches(|c: char| !c.is_ascii_alphabetic()).to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The id of the one upstream connection `which` picks, once there is one.
fn upstream_id(direct: &mut Raw, what: &str, which: impl Fn(&HashMap<String, String>) -> bool) -> String {
    let mut found = None;
    let seen = eventually(Duration::from_secs(5), || {
        let matching: Vec<_> = upstream_clients(direct).into_iter().filter(&which).collect();
        found = matching.first().and_then(|c| c.get("id").cloned());
        matching.len() == 1
    });
    assert!(seen, "no single upstream connection {what}: {}", direct.call(&["CLIENT", "LIST"]));
    found.unwrap_or_default()
}

fn field<'a>(c: &'a HashMap<String, String>, name: &str) -> &'a str {
    c.get(name).map_or("", String::as_str)
}

/// Waits until the upstream connection `id` was cleaned for the next
/// client: RESET, then the handshake again (AUTH, HELLO 3 for RESP3,
/// SELECT of the configured database `db`; none of them for RESP2 to
/// database 0 of a server without a password).
fn wait_cleaned_to(direct: &mut Raw, id: &str, db: &str) {
    let cleaned = eventually(Duration::from_secs(5), || {
        upstream_clients(direct).iter().any(|c| {
            field(c, "id") == id && field(c, "db") == db && matches!(field(c, "cmd"), "hello" | "reset" | "select")
        })
    });
    assert!(cleaned, "connection {id} was not cleaned: {}", direct.call(&["CLIENT", "LIST"]));
}

fn wait_cleaned(direct: &mut Raw, id: &str) {
    wait_cleaned_to(direct, id, "0");
}

/// Waits until the upstream connection `id` is closed.
fn wait_closed(direct: &mut Raw, id: &str) {
    let closed = eventually(Duration::from_secs(5), || upstream_clients(direct).iter().all(|c| field(c, "id") != id));
    assert!(closed, "connection {id} was not closed: {}", direct.call(&["CLIENT", "LIST"]));
}

/// A client that WATCHes `w`, and the upstream connection it took.
fn watching_w(proxy: &Proxy, d: &mut Raw) -> (Raw, String) {
    let mut a = proxy.raw();
    assert_eq!(a.call(&["WATCH", "w"]), "+OK\r\n");
    let id = upstream_id(d, "that ran WATCH", |c| field(c, "cmd") == "watch");
    (a, id)
}

/// `w` changes (a watch still held on it would abort the next EXEC), then
/// a new client queues a SET of it in a transaction: the client, and the
/// upstream connection it got.
fn transaction_after_w_changed(proxy: &Proxy, d: &mut Raw) -> (Raw, String) {
    assert_eq!(d.call(&["SET", "w", "changed"]), "+OK\r\n");
    let mut b = proxy.raw();
    assert_eq!(b.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(b.call(&["SET", "w", "mine"]), "+QUEUED\r\n");
    let id = upstream_id(d, "in MULTI", |c| field(c, "multi") == "1");
    (b, id)
}

fn direct(redis: &RedisServer) -> Raw {
    Raw::connect(format!("127.0.0.1:{}", redis.port).parse().expect("address"))
}

fn connections_received(direct: &mut Raw) -> u64 {
    let info = direct.call(&["INFO", "stats"]);
    info.lines()
        .find_map(|l| l.strip_prefix("total_connections_received:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("total_connections_received in INFO stats")
}

/// How many RESETs Redis ran (`INFO commandstats`).
fn resets_run(direct: &mut Raw) -> u64 {
    let stats = direct.call(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_reset:calls="))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn transactions_back_to_back_open_no_connection_once_warm() {
    let (redis, proxy) = setup();
    let mut d = direct(&redis);
    let mut c = proxy.raw();
    let mut transaction = |n: usize, d: &mut Raw| {
        assert_eq!(c.call(&["MULTI"]), "+OK\r\n");
        assert_eq!(c.call(&["INCR", "n"]), "+QUEUED\r\n");
        upstream_id(d, "in MULTI", |c| field(c, "multi") == "1");
        assert_eq!(c.call(&["EXEC"]), format!("*1\r\n:{n}\r\n"));
    };
    transaction(1, &mut d);
    // The spares are topped up once (waited for: the count holds still);
    // from then on each transaction takes the connection the last one
    // gave back, ready again before EXEC's reply reaches the client.
    let mut before = connections_received(&mut d);
    let settled = eventually(Duration::from_secs(5), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = connections_received(&mut d);
        std::mem::replace(&mut before, now) == now
    });
    assert!(settled, "the proxy kept opening connections");
    for n in 2..=21 {
        transaction(n, &mut d);
    }
    let opened = connections_received(&mut d) - before;
    // (A take may find one spare short and top them up once.)
    assert!(opened <= 1, "20 transactions opened {opened} upstream connections");
    // A transaction's state ends with its EXEC: nothing to clean.
    assert_eq!(resets_run(&mut d), 0, "RESET sent for a connection that held nothing");
    // (Metrics are the test binary's, shared by its tests.)
    let (_, body) = proxy.admin_get("/metrics");
    let reused = metric(&body, "nearcache_dedicated_returned_total{outcome=\"reused\"}").unwrap_or(0.0);
    assert!(reused >= 21.0, "nearcache_dedicated_returned_total{{outcome=\"reused\"}} {reused}");
}

/// What a connection carried decides whether it is cleaned: a watch ended
/// by UNWATCH, a transaction ended by EXEC or DISCARD, a blocking command
/// answered, subscriptions all unsubscribed and plain commands leave
/// nothing, and the next client gets the connection as it is (and finds no
/// watch, no transaction, no subscription). A watch the client left
/// holding is cleaned first (the next test).
#[test]
fn a_connection_holding_nothing_goes_to_the_next_client_as_it_is() {
    let (redis, proxy) = setup();
    let mut d = direct(&redis);
    let (mut a, first) = watching_w(&proxy, &mut d);
    assert_eq!(a.call(&["GET", "w"]), "$-1\r\n");
    assert_eq!(a.call(&["UNWATCH"]), "+OK\r\n");
    let (mut b, second) = transaction_after_w_changed(&proxy, &mut d);
    assert_eq!(second, first, "B did not get the connection A gave back");
    assert_eq!(b.call(&["EXEC"]), "*1\r\n+OK\r\n");
    assert_eq!(b.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(b.call(&["INCR", "w"]), "+QUEUED\r\n");
    assert_eq!(b.call(&["DISCARD"]), "+OK\r\n");
    assert_eq!(b.call(&["RPUSH", "bl", "x"]), ":1\r\n");
    assert_eq!(b.call(&["BLPOP", "bl", "0"]), "*2\r\n$2\r\nbl\r\n$1\r\nx\r\n");
    b.cmd(&["SUBSCRIBE", "b-news"]);
    assert_eq!(b.read_frame(), b"*3\r\n$9\r\nsubscribe\r\n$6\r\nb-news\r\n:1\r\n");
    b.cmd(&["UNSUBSCRIBE"]);
    assert_eq!(b.read_frame(), b"*3\r\n$11\r\nunsubscribe\r\n$6\r\nb-news\r\n:0\r\n");
    let mut c = proxy.raw();
    assert_eq!(c.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(c.call(&["GET", "w"]), "+QUEUED\r\n");
    let third = upstream_id(&mut d, "in MULTI", |c| field(c, "multi") == "1");
    assert_eq!(third, first, "C did not get the connection B gave back");
    assert_eq!(c.call(&["EXEC"]), "*1\r\n$4\r\nmine\r\n");
    assert_eq!(d.call(&["PUBLISH", "b-news", "x"]), ":0\r\n", "B's subscription outlived it");
    assert_eq!(resets_run(&mut d), 0, "RESET sent for a connection that held nothing");
}

#[test]
fn watched_keys_and_reply_mode_do_not_reach_the_next_client() {
    let (redis, proxy) = setup();
    let mut d = direct(&redis);
    let (mut a, first) = watching_w(&proxy, &mut d);
    a.cmd(&["CLIENT", "REPLY", "OFF"]);
    drop(a);
    wait_cleaned(&mut d, &first);
    let (mut b, second) = transaction_after_w_changed(&proxy, &mut d);
    assert_eq!(second, first, "B did not get the connection A gave back");
    assert_eq!(b.call(&["EXEC"]), "*1\r\n+OK\r\n");
    assert_eq!(d.call(&["GET", "w"]), "$4\r\nmine\r\n");
}

#[test]
fn the_database_and_the_name_do_not_reach_the_next_client() {
    let (redis, proxy) = setup();
    let mut d = direct(&redis);
    let mut a = proxy.raw();
    assert_eq!(a.call(&["CLIENT", "SETNAME", "leaky"]), "+OK\r\n");
    assert_eq!(a.call(&["SELECT", "5"]), "+OK\r\n");
    assert_eq!(a.call(&["SET", "s", "a"]), "+OK\r\n");
    let first = upstream_id(&mut d, "in database 5", |c| field(c, "db") == "5");
    drop(a);
    wait_cleaned(&mut d, &first);
    let mut b = proxy.raw();
    assert_eq!(b.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(b.call(&["SET", "s", "b"]), "+QUEUED\r\n");
    let second = upstream_id(&mut d, "in MULTI", |c| field(c, "multi") == "1");
    assert_eq!(second, first, "B did not get the connection A gave back");
    let clients = upstream_clients(&mut d);
    let reused = clients.iter().find(|c| field(c, "id") == second).expect("B's connection");
    assert_eq!((field(reused, "db"), field(reused, "name")), ("0", ""), "{reused:?}");
    assert_eq!(b.call(&["EXEC"]), "*1\r\n+OK\r\n");
    assert_eq!(d.call(&["GET", "s"]), "$1\r\nb\r\n");
    assert_eq!(d.call(&["SELECT", "5"]), "+OK\r\n");
    assert_eq!(d.call(&["GET", "s"]), "$1\r\na\r\n");
}

#[test]
fn subscriptions_do_not_reach_the_next_client() {
    let (redis, proxy) = setup();
    let mut d = direct(&redis);
    let mut a = proxy.raw();
    a.cmd(&["SUBSCRIBE", "a-news"]);
    assert_eq!(a.read_frame(), b"*3\r\n$9\r\nsubscribe\r\n$6\r\na-news\r\n:1\r\n");
    let first = upstream_id(&mut d, "subscribed", |c| field(c, "sub") == "1");
    drop(a);
    wait_cleaned(&mut d, &first);
    assert_eq!(d.call(&["PUBLISH", "a-news", "x"]), ":0\r\n", "A's subscription outlived A");
    let mut b = proxy.raw();
    b.cmd(&["SUBSCRIBE", "b-news"]);
    assert_eq!(b.read_frame(), b"*3\r\n$9\r\nsubscribe\r\n$6\r\nb-news\r\n:1\r\n");
    let second = upstream_id(&mut d, "subscribed", |c| field(c, "sub") == "1");
    assert_eq!(second, first, "B did not get the connection A gave back");
    assert_eq!(d.call(&["PUBLISH", "a-news", "x"]), ":0\r\n");
    assert_eq!(d.call(&["PUBLISH", "b-news", "y"]), ":1\r\n");
    assert_eq!(b.read_frame(), b"*3\r\n$7\r\nmessage\r\n$6\r\nb-news\r\n$1\r\ny\r\n");
}

#[test]
fn tracking_does_not_reach_the_next_client() {
    let (redis, proxy) = setup();
    let mut d = direct(&redis);
    let mut a = proxy.raw();
    assert!(a.call(&["HELLO", "3"]).starts_with('%'));
    assert_eq!(a.call(&["CLIENT", "TRACKING", "on"]), "+OK\r\n");
    assert_eq!(a.call(&["GET", "tk"]), "_\r\n");
    // (The proxy's own invalidation connection tracks too.)
    let first = upstream_id(&mut d, "tracking", |c| field(c, "flags").contains('t') && field(c, "cmd") == "get");
    drop(a);
    wait_cleaned(&mut d, &first);
    let mut b = proxy.raw();
    assert!(b.call(&["HELLO", "3"]).starts_with('%'));
    b.cmd(&["SUBSCRIBE", "c3"]);
    assert_eq!(b.read_frame(), b">3\r\n$9\r\nsubscribe\r\n$2\r\nc3\r\n:1\r\n");
    let second = upstream_id(&mut d, "subscribed", |c| field(c, "sub") == "1");
    assert_eq!(second, first, "B did not get the connection A gave back");
    // A change to the key A tracked: B must see no invalidation, only its
    // own message.
    assert_eq!(d.call(&["SET", "tk", "new"]), "+OK\r\n");
    assert_eq!(d.call(&["PUBLISH", "c3", "m"]), ":1\r\n");
    assert_eq!(b.read_frame(), b">3\r\n$7\r\nmessage\r\n$2\r\nc3\r\n$1\r\nm\r\n");
}

#[test]
fn a_client_that_left_while_blocked_has_its_connection_closed() {
    let (redis, proxy) = setup();
    let mut d = direct(&redis);
    let mut a = proxy.raw();
    a.cmd(&["BLPOP", "bl", "0"]);
    let blocked = upstream_id(&mut d, "blocked", |c| field(c, "flags").contains('b'));
    drop(a);
    wait_closed(&mut d, &blocked);
    let mut b = proxy.raw();
    assert_eq!(b.call(&["LPUSH", "bl", "item"]), ":1\r\n");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(d.call(&["LLEN", "bl"]), ":1\r\n", "the item went to a BLPOP whose client had left");
}

#[test]
fn a_connection_named_as_a_redirect_target_is_closed() {
    let (redis, proxy) = setup();
    let mut d = direct(&redis);
    let mut a = proxy.raw();
    let a_id = a.call(&["CLIENT", "ID"]);
    let a_id = a_id.trim_start_matches(':').trim();
    a.cmd(&["SUBSCRIBE", "__redis__:invalidate"]);
    a.read_frame();
    let target = upstream_id(&mut d, "subscribed", |c| field(c, "sub") == "1");
    let mut b = proxy.raw();
    assert_eq!(b.call(&["CLIENT", "TRACKING", "on", "REDIRECT", a_id]), "+OK\r\n");
    assert_eq!(b.call(&["GET", "rk"]), "$-1\r\n");
    a.cmd(&["UNSUBSCRIBE"]);
    a.read_frame();
    wait_closed(&mut d, &target);
    // Whoever subscribes next gets no invalidation meant for A.
    let mut c = proxy.raw();
    c.cmd(&["SUBSCRIBE", "__redis__:invalidate"]);
    c.read_frame();
    assert_eq!(d.call(&["SET", "rk", "v"]), "+OK\r\n");
    assert_eq!(d.call(&["PUBLISH", "__redis__:invalidate", "marker"]), ":1\r\n");
    assert_eq!(c.read_frame(), b"*3\r\n$7\r\nmessage\r\n$20\r\n__redis__:invalidate\r\n$6\r\nmarker\r\n");
}

#[test]
fn a_reused_connection_is_logged_in_again_to_the_configured_database() {
    let redis = RedisServer::start();
    let mut d = direct(&redis);
    assert_eq!(d.call(&["CONFIG", "SET", "requirepass", "s3cret"]), "+OK\r\n");
    assert_eq!(d.call(&["AUTH", "s3cret"]), "+OK\r\n");
    let proxy = Proxy::start_url(&format!("redis://:s3cret@127.0.0.1:{}/2", redis.port), "");
    wait_ready(&proxy);
    let mut a = proxy.raw();
    assert_eq!(a.call(&["SELECT", "7"]), "+OK\r\n");
    let first = upstream_id(&mut d, "in database 7", |c| field(c, "db") == "7");
    drop(a);
    wait_cleaned_to(&mut d, &first, "2");
    let mut b = proxy.raw();
    assert_eq!(b.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(b.call(&["SET", "where", "b"]), "+QUEUED\r\n");
    let second = upstream_id(&mut d, "in MULTI", |c| field(c, "multi") == "1");
    assert_eq!(second, first, "B did not get the connection A gave back");
    assert_eq!(b.call(&["EXEC"]), "*1\r\n+OK\r\n");
    assert_eq!(d.call(&["SELECT", "2"]), "+OK\r\n");
    assert_eq!(d.call(&["GET", "where"]), "$1\r\nb\r\n", "not in the configured database");
}

/// A blocking command is not overtaken by a write another client sends
/// after it, with Redis across a link with latency (25 ms each way): it
/// takes a connection waiting clean (opened ahead, or given back) and pays
/// no connection set-up on its path, during which the later `DEL` would
/// reach Redis first and `XREADGROUP` would answer `-NOGROUP` instead of
/// being unblocked by the deletion as it is talking to Redis directly
/// (`-UNBLOCKED …` on Redis 7.0).
#[test]
fn a_blocking_command_is_not_overtaken_by_a_later_write() {
    let redis = RedisServer::start();
    let relay = common::relay::start(redis.port, Duration::from_millis(25));
    let proxy = Proxy::start(relay);
    wait_ready(&proxy);
    let mut direct = direct(&redis);
    // Spares are ready once they are kept alive (PINGed when idle).
    let spares = eventually(Duration::from_secs(5), || {
        upstream_clients(&mut direct).iter().filter(|c| field(c, "cmd") == "ping").count() >= 4
    });
    assert!(spares, "no spares ready: {}", direct.call(&["CLIENT", "LIST"]));
    // What a client talking to Redis directly gets (Redis 7.0: -UNBLOCKED;
    // from 7.2 the command runs again and finds no group: -NOGROUP).
    assert_eq!(direct.call(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]), "+OK\r\n");
    let mut blocked = common::direct_raw(&redis);
    blocked.cmd(&["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"]);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(direct.call(&["DEL", "s"]), ":1\r\n");
    let expected = String::from_utf8_lossy(&blocked.read_frame()).into_owned();
    for round in 0..3 {
        assert_eq!(direct.call(&["XGROUP", "CREATE", "s", "g", "$", "MKSTREAM"]), "+OK\r\n", "round {round}");
        let mut blocked = proxy.raw();
        blocked.cmd(&["XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"]);
        std::thread::sleep(Duration::from_millis(20));
        let mut writer = proxy.raw();
        assert_eq!(writer.call(&["DEL", "s"]), ":1\r\n", "round {round}");
        let reply = String::from_utf8_lossy(&blocked.read_frame()).into_owned();
        assert_eq!(reply, expected, "round {round}");
    }
}
