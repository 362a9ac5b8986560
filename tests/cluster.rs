//! A Redis Cluster behind one proxy port: three masters started by the
//! test (`cluster-enabled yes`, slots assigned with `CLUSTER ADDSLOTSRANGE`,
//! nodes introduced with `CLUSTER MEET`), the proxy given one of them as
//! its seed. Clients talk to the proxy as to one standalone server: keys
//! land on their slot's master, `MOVED` and `ASK` during a slot migration
//! are followed, multi-key requests across slots get Redis Cluster's own
//! `-CROSSSLOT`, transactions and blocking commands run on their keys'
//! node, and the near-cache stays coherent with writes made on any node.
mod common;

use common::{direct_raw, eventually, metric, Proxy, Raw, RedisServer};
use nearcache::protocol::scan::Frames;
use nearcache::router::slot;
use std::time::Duration;

struct Cluster {
    nodes: Vec<RedisServer>,
    /// Each node's first slot (the range it serves goes to the next one's).
    starts: Vec<u16>,
}

impl Cluster {
    /// `n` masters sharing the 16,384 slots in equal ranges.
    fn start(n: usize) -> Cluster {
        let nodes: Vec<RedisServer> = (0..n).map(|_| RedisServer::start_cluster_node()).collect();
        let per = slot::SLOTS / n;
        let starts: Vec<u16> = (0..n).map(|i| (i * per) as u16).collect();
        for (i, node) in nodes.iter().enumerate() {
            let end = if i == n - 1 { slot::SLOTS - 1 } else { (i + 1) * per - 1 };
            let reply = direct_raw(node).call(&["CLUSTER", "ADDSLOTSRANGE", &starts[i].to_string(), &end.to_string()]);
            assert_eq!(reply, "+OK\r\n");
        }
        let mut first = direct_raw(&nodes[0]);
        for node in &nodes[1..] {
            let bus = node.cluster_bus().expect("a cluster node").to_string();
            assert_eq!(first.call(&["CLUSTER", "MEET", "127.0.0.1", &node.port.to_string(), &bus]), "+OK\r\n");
        }
        let cluster = Cluster { nodes, starts };
        let ok = eventually(Duration::from_secs(20), || {
            cluster.nodes.iter().all(|node| {
                let info = direct_raw(node).call(&["CLUSTER", "INFO"]);
                info.contains("cluster_state:ok") && info.contains(&format!("cluster_known_nodes:{n}"))
            })
        });
        assert!(ok, "the cluster did not form");
        cluster
    }

    /// `n` masters that keep serving their slots while another is down
    /// (`cluster-require-full-coverage no`).
    fn start_partial(n: usize) -> Cluster {
        let cluster = Cluster::start(n);
        cluster.config_set("cluster-require-full-coverage", "no");
        cluster
    }

    /// Waits until node `node`'s replica has what was written to it before
    /// (through the proxy too): `WAIT` counts the replicas that have the
    /// asking connection's own writes, so the master's own connection
    /// writes once (next to `key`), after the others did.
    fn replicated(&self, node: usize, key: &str) {
        let mut master = self.direct(node);
        assert_eq!(master.call(&["SET", &format!("{{{key}}}:mark"), "1"]), "+OK\r\n");
        assert_eq!(master.call(&["WAIT", "1", "5000"]), ":1\r\n");
    }

    /// `CONFIG SET parameter value` on every node.
    fn config_set(&self, parameter: &str, value: &str) {
        for node in 0..self.nodes.len() {
            let set = self.direct(node).call(&["CONFIG", "SET", parameter, value]);
            assert_eq!(set, "+OK\r\n", "node {node}: {parameter} {value}");
        }
    }

    /// The node serving `key`.
    fn owner(&self, key: &str) -> usize {
        let slot = slot::of(key.as_bytes());
        self.starts.iter().rposition(|&start| start <= slot).unwrap_or(0)
    }

    /// A key named `prefix` plus a number, served by node `node`.
    fn key_on(&self, node: usize, prefix: &str) -> String {
        (0..).map(|i| format!("{prefix}{i}")).find(|k| self.owner(k) == node).unwrap_or_default()
    }

    fn direct(&self, node: usize) -> Raw {
        direct_raw(&self.nodes[node])
    }

    fn id(&self, node: usize) -> String {
        self.direct(node).call(&["CLUSTER", "MYID"]).lines().nth(1).unwrap_or_default().to_string()
    }

    /// Gives `slot` to node `to` on every node: `to` first, then `from`,
    /// then the others, the order `CLUSTER SETSLOT`'s documentation asks
    /// for (redis/redis#7116: told the other way round, the old and the new
    /// owner can answer `MOVED` to each other, and a cluster client's
    /// redirections run out).
    fn give_slot(&self, slot: &str, from: usize, to: usize) {
        let owner = self.id(to);
        let others = (0..self.nodes.len()).filter(|n| *n != from && *n != to);
        for node in [to, from].into_iter().chain(others) {
            assert_eq!(self.direct(node).call(&["CLUSTER", "SETSLOT", slot, "NODE", &owner]), "+OK\r\n", "node {node}");
        }
    }

    /// A new node replicating node `node`, in sync with it, and a
    /// connection to it.
    fn replica_of(&self, node: usize) -> (RedisServer, Raw) {
        let replica = RedisServer::start_cluster_node();
        let mut direct = direct_raw(&replica);
        let bus = self.nodes[0].cluster_bus().expect("bus").to_string();
        assert_eq!(direct.call(&["CLUSTER", "MEET", "127.0.0.1", &self.nodes[0].port.to_string(), &bus]), "+OK\r\n");
        let master = self.id(node);
        let attached =
            eventually(Duration::from_secs(20), || direct.call(&["CLUSTER", "REPLICATE", &master]) == "+OK\r\n");
        let replicating = attached
            && eventually(Duration::from_secs(20), || {
                direct.call(&["INFO", "replication"]).contains("master_link_status:up")
            });
        assert!(replicating, "the replica did not attach: {}", direct.call(&["CLUSTER", "NODES"]));
        (replica, direct)
    }

    fn proxy(&self, toml: &str) -> Proxy {
        let seeds = format!("redis+cluster://127.0.0.1:{},127.0.0.1:{}", self.nodes[0].port, self.nodes[1].port);
        let proxy = Proxy::start_url(&seeds, toml);
        let known = eventually(Duration::from_secs(10), || {
            let (_, body) = proxy.admin_get("/metrics");
            (0..self.nodes.len()).all(|i| {
                let series =
                    format!("nearcache_cluster_slots{{upstream=\"redis://127.0.0.1:{}/0\"}}", self.nodes[i].port);
                metric(&body, &series).is_some_and(|slots| slots > 0.0)
            })
        });
        assert!(known, "the proxy did not learn the topology: {}", proxy.admin_get("/metrics").1);
        proxy
    }
}

/// A `SCAN` reply's cursor and keys.
fn scan_reply(reply: Vec<u8>) -> (String, Vec<String>) {
    let text = |bulk: bytes::Bytes| String::from_utf8_lossy(&bulk).lines().nth(1).unwrap_or_default().to_string();
    let mut parts = Frames::elements(bytes::Bytes::from(reply)).expect("an array");
    let cursor = parts.next().map(text).unwrap_or_default();
    let keys = parts.next().and_then(Frames::elements).map(|keys| keys.map(text).collect()).unwrap_or_default();
    (cursor, keys)
}

#[test]
fn keys_go_to_their_slots_master_and_cross_slot_requests_are_refused() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("");
    let mut client = proxy.raw();
    for i in 0..60 {
        assert_eq!(client.call(&["SET", &format!("key:{i}"), &i.to_string()]), "+OK\r\n");
    }
    for i in 0..60 {
        let key = format!("key:{i}");
        let value = i.to_string();
        let stored = cluster.direct(cluster.owner(&key)).call(&["GET", &key]);
        assert_eq!(stored, format!("${}\r\n{value}\r\n", value.len()), "{key} on its slot's master");
        assert_eq!(client.call(&["GET", &key]), stored);
    }
    // Keys sharing a hash tag share a slot: multi-key commands work.
    assert_eq!(client.call(&["MSET", "{user1}:a", "1", "{user1}:b", "2"]), "+OK\r\n");
    assert_eq!(client.call(&["MGET", "{user1}:a", "{user1}:b"]), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    // Commands that must be atomic across keys need one slot, as on a
    // cluster.
    let apart = (cluster.key_on(0, "a"), cluster.key_on(1, "b"));
    let crossslot = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";
    assert_eq!(client.call(&["RENAME", &apart.0, &apart.1]), crossslot);
    assert_eq!(client.call(&["SUNIONSTORE", &apart.0, &apart.1]), crossslot);
    assert_eq!(client.call(&["PING"]), "+PONG\r\n");
}

/// Multi-key commands across slots are split by slot and their replies
/// merged in the request's order; commands acting on the whole keyspace go
/// to every master.
#[test]
fn multi_key_commands_are_split_and_keyspace_commands_fan_out() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("[cache]\nenabled = false\n");
    let mut client = proxy.raw();
    let keys: Vec<String> = (0..3).flat_map(|node| [cluster.key_on(node, "x"), cluster.key_on(node, "y")]).collect();
    let mut mset = vec!["MSET".to_string()];
    for (i, key) in keys.iter().enumerate() {
        mset.extend([key.clone(), format!("v{i}")]);
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(client.call(&mset), "+OK\r\n");
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(cluster.direct(cluster.owner(key)).call(&["GET", key]), format!("$2\r\nv{i}\r\n"));
    }
    let mget = client.call(&["MGET", &keys[5], "missing", &keys[0], &keys[3]]);
    assert_eq!(mget, "*4\r\n$2\r\nv5\r\n$-1\r\n$2\r\nv0\r\n$2\r\nv3\r\n");
    assert_eq!(client.call(&["EXISTS", &keys[0], &keys[2], &keys[0], "missing"]), ":3\r\n");
    assert_eq!(client.call(&["DBSIZE"]), ":6\r\n");
    let listed = client.call(&["KEYS", "*"]);
    assert!(listed.starts_with("*6\r\n") && keys.iter().all(|k| listed.contains(k.as_str())), "{listed:?}");
    assert_eq!(client.call(&["DEL", &keys[1], &keys[4], "missing"]), ":2\r\n");
    assert_eq!(client.call(&["DBSIZE"]), ":4\r\n");
    // Scripts are loaded on every master, so EVALSHA runs wherever its key is.
    let sha = client.call(&["SCRIPT", "LOAD", "return redis.call('GET', KEYS[1])"]);
    assert!(sha.starts_with("$40\r\n"), "{sha:?}");
    let sha = sha.lines().nth(1).unwrap_or_default().to_string();
    assert_eq!(client.call(&["SCRIPT", "EXISTS", &sha, "0000"]), "*2\r\n:1\r\n:0\r\n");
    for (i, key) in [(0, &keys[0]), (2, &keys[2]), (5, &keys[5])] {
        assert_eq!(client.call(&["EVALSHA", &sha, "1", key]), format!("$2\r\nv{i}\r\n"));
    }
    // SCAN walks every master behind one cursor: each key once.
    let mut seen = Vec::new();
    let mut cursor = "0".to_string();
    for _ in 0..100 {
        let (next, keys) = scan_reply(client.read_frame_after(&["SCAN", &cursor, "COUNT", "1"]));
        (cursor, seen) = (next, [seen, keys].concat());
        if cursor == "0" {
            break;
        }
    }
    seen.sort();
    let mut expected: Vec<String> = [0, 2, 3, 5].iter().map(|&i| keys[i].clone()).collect();
    expected.sort();
    assert_eq!((cursor.as_str(), seen), ("0", expected));
    assert_eq!(client.call(&["SCAN", "not-a-cursor"]), "-ERR invalid cursor\r\n");
    let random = client.call(&["RANDOMKEY"]);
    assert!([0, 2, 3, 5].iter().any(|&i| random.contains(keys[i].as_str())), "{random:?}");
    assert_eq!(client.call(&["FLUSHALL"]), "+OK\r\n");
    assert_eq!(client.call(&["DBSIZE"]), ":0\r\n");
    assert_eq!(client.call(&["RANDOMKEY"]), "$-1\r\n");
    assert_eq!(client.call(&["MGET", &keys[0], &keys[5]]), "*2\r\n$-1\r\n$-1\r\n");
}

/// `PUBSUB SHARDNUMSUB` asks each channel's master (a master counts only
/// its own slots' channels), the counts put back in the request's order;
/// functions restored from a dump go to every master, and `FUNCTION
/// STATS` answers as a master does.
#[test]
fn shard_channel_counts_and_functions_span_the_masters() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("[cache]\nenabled = false\n");
    let mut client = proxy.raw();
    let (a, b, idle) = (cluster.key_on(0, "ch"), cluster.key_on(2, "ch"), cluster.key_on(1, "ch"));
    let mut subscribers: Vec<common::Raw> = Vec::new();
    for channel in [&a, &b, &b] {
        let mut subscriber = proxy.raw();
        assert!(subscriber.call(&["SSUBSCRIBE", channel]).starts_with("*3\r\n$10\r\nssubscribe\r\n"));
        subscribers.push(subscriber);
    }
    let expected =
        format!("*6\r\n${}\r\n{b}\r\n:2\r\n${}\r\n{a}\r\n:1\r\n${}\r\n{idle}\r\n:0\r\n", b.len(), a.len(), idle.len());
    assert_eq!(client.call(&["PUBSUB", "SHARDNUMSUB", &b, &a, &idle]), expected);
    assert_eq!(
        client.call(&["PUBSUB", "SHARDNUMSUB", &b]),
        cluster.direct(2).call(&["PUBSUB", "SHARDNUMSUB", &b]),
        "one slot's channel, as its master answers"
    );
    assert_eq!(client.call(&["PUBSUB", "SHARDNUMSUB"]), cluster.direct(0).call(&["PUBSUB", "SHARDNUMSUB"]));
    let mut resp3 = proxy.raw();
    assert!(resp3.call(&["HELLO", "3"]).starts_with('%'));
    // In RESP3, as the server answers (Redis 7.0: an array).
    let mut direct3 = cluster.direct(0);
    assert!(direct3.call(&["HELLO", "3"]).starts_with('%'));
    let header = if direct3.call(&["PUBSUB", "SHARDNUMSUB", &a]).starts_with('%') { "%2" } else { "*4" };
    let both = format!("{header}\r\n${}\r\n{a}\r\n:1\r\n${}\r\n{b}\r\n:2\r\n", a.len(), b.len());
    assert_eq!(resp3.call(&["PUBSUB", "SHARDNUMSUB", &a, &b]), both);

    let library =
        "#!lua name=lib\nredis.register_function('get', function(keys) return redis.call('GET', keys[1]) end)";
    assert_eq!(client.call(&["FUNCTION", "LOAD", library]), "$3\r\nlib\r\n");
    let dump = client.read_frame_after(&["FUNCTION", "DUMP"]);
    let payload = dump.split(|&c| c == b'\n').skip(1).collect::<Vec<_>>().join(&b'\n');
    let payload = &payload[..payload.len() - 2];
    assert_eq!(client.call(&["FUNCTION", "FLUSH"]), "+OK\r\n");
    let mut restore = b"*3\r\n$8\r\nFUNCTION\r\n$7\r\nRESTORE\r\n".to_vec();
    restore.extend_from_slice(format!("${}\r\n", payload.len()).as_bytes());
    restore.extend_from_slice(payload);
    restore.extend_from_slice(b"\r\n");
    client.send(&restore);
    assert_eq!(client.read_frame(), b"+OK\r\n");
    for node in 0..3 {
        let listed = cluster.direct(node).call(&["FUNCTION", "LIST"]);
        assert!(listed.contains("lib"), "node {node}: {listed:?}");
    }
    assert_eq!(client.call(&["FUNCTION", "STATS"]), cluster.direct(0).call(&["FUNCTION", "STATS"]));
}

/// A script that never ends keeps its master busy for everyone: `SCRIPT
/// KILL` and `FUNCTION KILL` go to every master, each on a connection of its
/// own (not behind the script on the pool), and the one running it kills
/// it; with none running, the reply is Redis' own `-NOTBUSY`.
#[test]
fn script_kill_and_function_kill_reach_the_busy_master() {
    let cluster = Cluster::start(3);
    cluster.config_set("busy-reply-threshold", "100");
    let proxy = cluster.proxy("[cache]\nenabled = false\n");
    let mut client = proxy.raw();
    let library = "#!lua name=spin\nredis.register_function('spin', function() while true do end end)";
    assert_eq!(client.call(&["FUNCTION", "LOAD", library]), "$4\r\nspin\r\n");
    let mut killer = proxy.raw();
    for kind in ["SCRIPT", "FUNCTION"] {
        assert_eq!(
            killer.call(&[kind, "KILL"]),
            cluster.direct(0).call(&[kind, "KILL"]),
            "{kind} KILL, nothing running"
        );
    }
    let key = cluster.key_on(1, "spin");
    let eval = ["EVAL", "while true do end", "1", key.as_str()];
    let fcall = ["FCALL", "spin", "1", key.as_str()];
    for (script, kind) in [(&eval, "SCRIPT"), (&fcall, "FUNCTION")] {
        let mut runner = proxy.raw();
        runner.cmd(script);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(killer.call(&[kind, "KILL"]), "+OK\r\n", "{kind} KILL");
        let reply = String::from_utf8_lossy(&runner.read_frame()).into_owned();
        assert!(reply.contains("Script killed by user"), "{kind}: {reply:?}");
        let serving = eventually(Duration::from_secs(5), || client.call(&["SET", &key, kind]) == "+OK\r\n");
        assert!(serving, "the busy master's keys are served again after {kind} KILL");
        // Its slots may have failed over while it ran the script (it
        // answered nothing): they are served by it again once it answers
        // and what was journaled meanwhile is replayed.
        let normal = eventually(Duration::from_secs(10), || proxy.admin_get("/ready").1.contains(r#""mode":"normal""#));
        assert!(normal, "after {kind} KILL: {}", proxy.admin_get("/ready").1);
    }
    assert_eq!(cluster.direct(1).call(&["GET", &key]), "$8\r\nFUNCTION\r\n");
}

/// `WAIT` counts the replicas that acknowledged the client's writes on
/// every master it wrote to (the smallest count), each asked behind a
/// write of the proxy's that leaves nothing behind; masters it did not
/// write to are not waited for.
#[test]
fn wait_counts_the_replicas_of_every_master_written_to() {
    let cluster = Cluster::start(3);
    let (replica, mut on_replica) = cluster.replica_of(0);
    let proxy = cluster.proxy("[cache]\nenabled = false\n");
    let (k0, k1) = (cluster.key_on(0, "w"), cluster.key_on(1, "w"));
    let mut client = proxy.raw();
    assert_eq!(client.call(&["SET", &k0, "a"]), "+OK\r\n");
    let started = std::time::Instant::now();
    assert_eq!(client.call(&["WAIT", "1", "0"]), ":1\r\n", "node 0's replica has the write");
    assert_eq!(client.call(&["WAIT", "1", "0"]), ":1\r\n", "asked again, about the same writes");
    assert!(started.elapsed() < Duration::from_secs(5), "masters not written to are not waited for");
    assert_eq!(on_replica.call(&["READONLY"]), "+OK\r\n");
    assert_eq!(on_replica.call(&["GET", &k0]), "$1\r\na\r\n");
    let mut both = proxy.raw();
    assert_eq!(both.call(&["SET", &k0, "b"]), "+OK\r\n");
    assert_eq!(both.call(&["SET", &k1, "c"]), "+OK\r\n");
    assert_eq!(both.call(&["WAIT", "1", "300"]), ":0\r\n", "node 1 has no replica");
    assert_eq!(on_replica.call(&["GET", &k0]), "$1\r\nb\r\n");
    // A replica that cannot acknowledge: the write is not counted as
    // replicated.
    replica.pause();
    assert_eq!(client.call(&["SET", &k0, "d"]), "+OK\r\n");
    assert_eq!(client.call(&["WAIT", "1", "300"]), ":0\r\n", "node 0's replica is stopped");
    replica.resume();
    assert_eq!(client.call(&["WAIT", "1", "0"]), ":1\r\n", "the replica caught up");
    assert!(proxy.raw().call(&["WAIT", "0", "0"]).starts_with(':'), "nothing written: one master answers");
    // WAITAOF the same way, merged element by element: as node 0 answers
    // its own client (an error where the server has no WAITAOF).
    let mut direct = cluster.direct(0);
    assert_eq!(direct.call(&["SET", &k0, "e"]), "+OK\r\n");
    let expected = direct.call(&["WAITAOF", "0", "1", "1000"]);
    assert_eq!(client.call(&["SET", &k0, "f"]), "+OK\r\n");
    assert_eq!(client.call(&["WAITAOF", "0", "1", "1000"]), expected);
    assert_eq!(cluster.direct(0).call(&["DBSIZE"]), ":1\r\n", "the proxy's marks leave nothing behind");
    assert_eq!(cluster.direct(1).call(&["DBSIZE"]), ":1\r\n");
    assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
    assert!(client.call(&["WAIT", "0", "0"]).starts_with("-ERR 'WAIT' acts on every master"));
    assert_eq!(client.call(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    // Writes on a dedicated connection may be in flight where the masters'
    // own connections cannot wait for them.
    assert_eq!(client.call(&["WATCH", &k0]), "+OK\r\n");
    let refused = client.call(&["WAITAOF", "0", "0", "0"]);
    assert!(refused.starts_with("-ERR WAITAOF on a connection holding a transaction, WATCH"), "{refused:?}");
    assert_eq!(client.call(&["UNWATCH"]), "+OK\r\n");
}

#[test]
fn moved_and_ask_are_followed_during_a_slot_migration() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("[cache]\nenabled = false\n");
    let mut client = proxy.raw();
    let key = cluster.key_on(1, "moving:");
    let slot = slot::of(key.as_bytes()).to_string();
    assert_eq!(client.call(&["SET", &key, "before"]), "+OK\r\n");
    // Slot of `key` migrating from node 1 to node 2.
    let (from, to) = (cluster.id(1), cluster.id(2));
    assert_eq!(cluster.direct(2).call(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from]), "+OK\r\n");
    assert_eq!(cluster.direct(1).call(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to]), "+OK\r\n");
    // A new key of the slot is created on the target (node 1 answers ASK).
    let fresh = format!("{{{key}}}:new");
    assert_eq!(client.call(&["SET", &fresh, "asked"]), "+OK\r\n");
    // The key moves: node 1 answers ASK for it from now on.
    let port = cluster.nodes[2].port.to_string();
    let migrated = cluster.direct(1).call(&["MIGRATE", "127.0.0.1", &port, "", "0", "5000", "KEYS", &key]);
    assert_eq!(migrated, "+OK\r\n");
    assert_eq!(client.call(&["GET", &key]), "$6\r\nbefore\r\n");
    // The migration ends: node 1 answers MOVED, the proxy learns it.
    cluster.give_slot(&slot, 1, 2);
    assert_eq!(client.call(&["GET", &key]), "$6\r\nbefore\r\n");
    assert_eq!(client.call(&["SET", &key, "after"]), "+OK\r\n");
    assert_eq!(cluster.direct(2).call(&["GET", &key]), "$5\r\nafter\r\n");
    assert_eq!(cluster.direct(2).call(&["EXISTS", &fresh]), ":1\r\n");
    let (_, body) = proxy.admin_get("/metrics");
    for kind in ["moved", "ask"] {
        let followed = metric(&body, &format!("nearcache_cluster_redirects_total{{kind=\"{kind}\"}}"));
        assert!(followed.is_some_and(|n| n > 0.0), "{kind}: {body}");
    }
}

#[test]
fn transactions_and_blocking_commands_run_on_their_keys_node() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("");
    let tag = cluster.key_on(2, "tx");
    let counter = format!("{{{tag}}}:n");
    let mut client = proxy.raw();
    assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(client.call(&["INCR", &counter]), "+QUEUED\r\n");
    assert_eq!(client.call(&["INCR", &counter]), "+QUEUED\r\n");
    assert_eq!(client.call(&["EXEC"]), "*2\r\n:1\r\n:2\r\n");
    assert_eq!(cluster.direct(2).call(&["GET", &counter]), "$1\r\n2\r\n");
    // Dedicated connections are reused on every node: once warm, more
    // transactions there (almost) open no connection.
    let opened = |cluster: &Cluster| {
        let stats = cluster.direct(2).call(&["INFO", "stats"]);
        let line = stats.lines().find_map(|l| l.strip_prefix("total_connections_received:")).unwrap_or("0");
        line.trim().parse::<u64>().unwrap_or(0)
    };
    let mut transactions = |n| {
        for _ in 0..n {
            assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
            assert_eq!(client.call(&["INCR", &counter]), "+QUEUED\r\n");
            assert!(client.call(&["EXEC"]).starts_with("*1\r\n:"));
        }
    };
    transactions(10);
    let before = opened(&cluster);
    transactions(20);
    // One for the `direct` call, and at most a spare or two topped up
    // (a connection per transaction before spares were per node).
    let more = opened(&cluster) - before;
    assert!(more <= 3, "20 transactions on node 2 opened {more} connections");
    // An empty transaction goes wherever keyless commands go.
    assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(client.call(&["EXEC"]), "*0\r\n");
    // A transaction RESET before its first command leaves nothing behind.
    assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(client.call(&["RESET"]), "+RESET\r\n");
    let other = format!("{{{tag}}}:r");
    assert_eq!(client.call(&["SET", &other, "1"]), "+OK\r\n");
    assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(client.call(&["GET", &other]), "+QUEUED\r\n");
    assert_eq!(client.call(&["EXEC"]), "*1\r\n$1\r\n1\r\n");
    assert_eq!(client.call(&["DISCARD"]), "-ERR DISCARD without MULTI\r\n");

    let list = cluster.key_on(1, "jobs");
    let mut worker = proxy.raw();
    worker.cmd(&["BLPOP", &list, "0"]);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(client.call(&["RPUSH", &list, "job"]), ":1\r\n");
    let popped = String::from_utf8_lossy(&worker.read_frame()).into_owned();
    assert_eq!(popped, format!("*2\r\n${}\r\n{list}\r\n$3\r\njob\r\n", list.len()));
}

#[test]
fn the_near_cache_sees_writes_made_on_every_node() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("[cache]\nadmission = \"first\"\n");
    let mut client = proxy.raw();
    for node in 0..3 {
        let key = cluster.key_on(node, "cached:");
        assert_eq!(client.call(&["SET", &key, "old"]), "+OK\r\n");
        common::wait_cached(&proxy, &mut client, &["GET", &key]);
        // Written on the node itself, not through the proxy.
        assert_eq!(cluster.direct(node).call(&["SET", &key, "new"]), "+OK\r\n");
        let seen = eventually(Duration::from_secs(5), || client.call(&["GET", &key]) == "$3\r\nnew\r\n");
        assert!(seen, "{key} on node {node}: the cached value outlived a write");
    }
    // An MGET across slots is read through the cache too: each master's
    // share from it, only the misses fetched (and cached on the way).
    let keys: Vec<String> = (0..3).map(|node| cluster.key_on(node, "cached:")).collect();
    let hits = || common::json_number(&proxy.admin_get("/cache/stats").1, "hits");
    let all = |client: &mut Raw| client.call(&["MGET", &keys[0], "cached:none", &keys[1], &keys[2]]);
    let expected = "*4\r\n$3\r\nnew\r\n$-1\r\n$3\r\nnew\r\n$3\r\nnew\r\n";
    assert_eq!(all(&mut client), expected);
    let before = hits();
    assert_eq!(all(&mut client), expected);
    assert_eq!(hits() - before, 4.0, "every key a hit, the missing one too");
    assert_eq!(cluster.direct(1).call(&["SET", &keys[1], "newer"]), "+OK\r\n");
    let seen = eventually(Duration::from_secs(5), || {
        all(&mut client) == "*4\r\n$3\r\nnew\r\n$-1\r\n$5\r\nnewer\r\n$3\r\nnew\r\n"
    });
    assert!(seen, "a cross-slot MGET outlived a write: {:?}", all(&mut client));
}

/// Cluster-aware clients see one node, the proxy, master of every slot,
/// and send it everything (redis-rs' cluster client here); connection
/// state of cluster clients (READONLY, ASKING) changes nothing upstream.
#[test]
fn cluster_clients_see_the_proxy_as_a_one_node_cluster() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("");
    let mut raw = proxy.raw();
    let port = proxy.addr.port();
    let slots = raw.call(&["CLUSTER", "SLOTS"]);
    assert!(slots.starts_with("*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$9\r\n127.0.0.1\r\n"), "{slots:?}");
    assert!(slots.contains(&format!(":{port}\r\n")), "{slots:?}");
    assert_eq!(raw.call(&["READONLY"]), "+OK\r\n");
    assert_eq!(raw.call(&["ASKING"]), "+OK\r\n");

    let client = redis::cluster::ClusterClient::new(vec![proxy.url()]).expect("cluster client");
    let mut conn = client.get_connection().expect("cluster connection");
    for node in 0..3 {
        let key = cluster.key_on(node, "rs:");
        let _: () = redis::cmd("SET").arg(&key).arg(node).query(&mut conn).expect("SET");
        let got: usize = redis::cmd("GET").arg(&key).query(&mut conn).expect("GET");
        assert_eq!(got, node);
        assert_eq!(cluster.direct(node).call(&["GET", &key]), format!("$1\r\n{node}\r\n"));
    }
    // Pub/sub is cluster-wide: a message published through the proxy
    // reaches a subscriber wherever each lands.
    let mut subscriber = proxy.raw();
    assert!(subscriber.call(&["SUBSCRIBE", "news"]).starts_with("*3\r\n$9\r\nsubscribe\r\n"));
    // (PUBLISH counts the receivers of the node it ran on only.)
    assert!(cluster.direct(2).call(&["PUBLISH", "news", "hello"]).starts_with(':'));
    let message = String::from_utf8_lossy(&subscriber.read_frame()).into_owned();
    assert_eq!(message, "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
    // Sharded pub/sub lives on the channel's shard.
    let channel = cluster.key_on(2, "orders");
    let mut shard_subscriber = proxy.raw();
    assert!(shard_subscriber.call(&["SSUBSCRIBE", &channel]).starts_with("*3\r\n$10\r\nssubscribe\r\n"));
    assert_eq!(cluster.direct(2).call(&["SPUBLISH", &channel, "one"]), ":1\r\n", "subscribed on its shard");
    assert_eq!(raw.call(&["SPUBLISH", &channel, "two"]), ":1\r\n", "published on its shard");
    for text in ["one", "two"] {
        let message = String::from_utf8_lossy(&shard_subscriber.read_frame()).into_owned();
        assert!(message.starts_with("*3\r\n$8\r\nsmessage\r\n") && message.ends_with(&format!("$3\r\n{text}\r\n")));
    }
}

/// Tenants on a cluster: prefixed keys keep their hash tags (the tag
/// decides the slot, so a tenant's multi-key commands work as before);
/// `RANDOMKEY` and `KEYS` see the tenant's keys on every master; what needs
/// every master is refused inside a transaction (EXEC aborts), as for
/// everyone.
#[test]
fn tenants_keep_hash_tags_and_their_keyspace_spans_the_masters() {
    let cluster = Cluster::start(3);
    let hash = nearcache::tenancy::hash_password(b"pw");
    let proxy = cluster.proxy(&format!("[[tenant]]\nname = \"acme\"\npassword_sha256 = \"{hash}\"\n"));
    let mut client = proxy.raw();
    assert_eq!(client.call(&["AUTH", "acme", "pw"]), "+OK\r\n");
    let tag = cluster.key_on(2, "user");
    let (a, b) = (format!("{{{tag}}}:a"), format!("{{{tag}}}:b"));
    assert_eq!(client.call(&["MSET", &a, "1", &b, "2"]), "+OK\r\n");
    assert_eq!(cluster.direct(2).call(&["GET", &format!("acme:{a}")]), "$1\r\n1\r\n");
    assert_eq!(client.call(&["MGET", &a, &b]), "*2\r\n$1\r\n1\r\n$1\r\n2\r\n");
    // RANDOMKEY (a script retrying Redis' own until a key has the tenant's
    // prefix) asks every master: one of the tenant's keys, stripped,
    // wherever they live; nil for a tenant with none.
    assert!(client.call(&["RANDOMKEY"]).contains(&format!("\r\n{{{tag}}}:")));
    let lone = cluster.key_on(0, "lone");
    assert_eq!(client.call(&["DEL", &a, &b]), ":2\r\n");
    assert_eq!(client.call(&["RANDOMKEY"]), "$-1\r\n", "no key left");
    assert_eq!(client.call(&["SET", &lone, "x"]), "+OK\r\n");
    assert_eq!(client.call(&["RANDOMKEY"]), format!("${}\r\n{lone}\r\n", lone.len()), "the one key, on node 0");
    assert_eq!(client.call(&["DEL", &lone]), ":1\r\n");
    assert_eq!(client.call(&["MSET", &a, "1", &b, "2"]), "+OK\r\n");
    assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(client.call(&["SET", &a, "3"]), "+QUEUED\r\n");
    let refused = client.call(&["KEYS", "*"]);
    assert!(refused.starts_with("-ERR 'KEYS' acts on every master of a Redis Cluster: not inside"), "{refused:?}");
    assert!(client.call(&["EXEC"]).starts_with("-EXECABORT"));
    // Outside a transaction KEYS goes to every master, the tenant's keys
    // only, their prefix stripped.
    assert_eq!(client.call(&["SET", "plain", "p"]), "+OK\r\n");
    let listed = client.call(&["KEYS", "*"]);
    assert!(
        listed.starts_with("*3\r\n") && listed.contains("\r\nplain\r\n") && !listed.contains("acme:"),
        "{listed:?}"
    );
    assert_eq!(client.call(&["GET", &a]), "$1\r\n1\r\n");
}

/// A master dies and the cluster promotes its replica: the proxy follows
/// (its circuit for the dead node opens, the topology is read every second
/// meanwhile), and writes to that master's slots succeed again once the
/// replica serves them, with nothing lost that was acknowledged. Failover
/// to local memory is off: meanwhile those slots' requests get errors.
#[test]
fn a_replica_promoted_in_place_of_a_dead_master_is_followed() {
    let mut cluster = Cluster::start(3);
    let (_replica, mut direct) = cluster.replica_of(1);
    let proxy = cluster.proxy(
        "[cache]\nenabled = false\n[failover]\nenabled = false\n[upstream]\nreconnect_max_backoff = \"500ms\"\n",
    );
    let mut client = proxy.raw();
    let key = cluster.key_on(1, "survivor:");
    assert_eq!(client.call(&["SET", &key, "kept"]), "+OK\r\n");
    cluster.replicated(1, &key);

    cluster.nodes[1].kill();
    let started = std::time::Instant::now();
    // Until the replica takes over, the proxy still answers for the others.
    let degraded = eventually(Duration::from_secs(10), || {
        let (status, body) = proxy.admin_get("/ready");
        status == 200 && body.contains(r#""upstream":"degraded""#) && body.contains(r#""state":"down""#)
    });
    assert!(degraded, "/ready: {}", proxy.admin_get("/ready").1);
    let back = eventually(Duration::from_secs(30), || client.call(&["INCR", &format!("{{{key}}}:n")]).starts_with(':'));
    assert!(
        back,
        "writes to the dead master's slots never came back: {:?}, the replica sees {}, the seed says {:?}",
        client.call(&["INCR", &format!("{{{key}}}:n")]),
        direct.call(&["CLUSTER", "NODES"]),
        cluster.direct(0).call(&["CLUSTER", "SHARDS"])
    );
    assert_eq!(client.call(&["GET", &key]), "$4\r\nkept\r\n");
    assert_eq!(direct.call(&["GET", &key]), "$4\r\nkept\r\n", "served by the promoted replica");
    let (status, ready) = proxy.admin_get("/ready");
    assert!(status == 200 && ready.contains(r#""upstream":"up""#), "{ready}");
    eprintln!("writes back {:?} after the master died", started.elapsed());

    // The dead master serves no slot: it is dialled (its pool reconnects,
    // its circuit is probed) until it has served none for 30 s, then it
    // rests and nothing dials it any more.
    let dials = || upstream_errors(&proxy.admin_get("/metrics").1);
    let before = dials();
    std::thread::sleep(Duration::from_secs(3));
    assert!(dials() > before, "the dead master is dialled before it rests");
    let resting = || metric(&proxy.admin_get("/metrics").1, "nearcache_cluster_nodes_resting") == Some(1.0);
    assert!(eventually(Duration::from_secs(45), resting), "{}", proxy.admin_get("/metrics").1);
    let at_rest = dials();
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(dials(), at_rest, "a resting node is dialled");
    assert_eq!(client.call(&["GET", &key]), "$4\r\nkept\r\n");
}

/// Upstream failures counted so far, of every kind.
fn upstream_errors(metrics: &str) -> f64 {
    let counts = metrics.lines().filter(|l| l.starts_with("nearcache_upstream_errors_total{"));
    counts.filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).sum()
}

/// Faults of a healthy cluster are not outages: every master closing the
/// proxy's connections (`CLIENT KILL TYPE normal`) and an idle `timeout`
/// of 1 s cost no request an error, and nothing is written twice.
#[test]
fn lost_connections_to_healthy_masters_are_replaced_without_errors() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("");
    let mut client = proxy.raw();
    let keys: Vec<String> = (0..3).map(|node| cluster.key_on(node, "counter")).collect();
    for key in &keys {
        assert_eq!(client.call(&["INCR", key]), ":1\r\n");
    }
    for node in 0..3 {
        let killed = cluster.direct(node).call(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
        assert!(killed.starts_with(':') && killed != ":0\r\n", "node {node}: {killed:?}");
    }
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(client.call(&["INCR", key]), ":2\r\n", "node {i}, after its connections were killed");
    }
    cluster.config_set("timeout", "1");
    std::thread::sleep(Duration::from_millis(2500));
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(client.call(&["INCR", key]), ":3\r\n", "node {i}, after 2.5 s idle under timeout 1");
        assert_eq!(cluster.direct(i).call(&["GET", key]), "$1\r\n3\r\n");
    }
}

/// Slots move between masters (the `CLUSTER SETSLOT` / `MIGRATE` sequence
/// `redis-cli --cluster reshard` runs) while clients work: a client of the
/// proxy writing and reading back its own keys, another reading keys that
/// a cluster client writes straight to the cluster, through the near-cache.
/// No request gets an error, every write is where it belongs afterwards,
/// and the near-cache agrees with the cluster.
#[test]
fn slots_resharded_under_load_cost_no_errors_and_keep_the_cache_coherent() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("[cache]\nadmission = \"first\"\n");
    // 24 slots of node 1, four keys in each: half written through the
    // proxy, half straight to the cluster.
    let moving: Vec<u16> = (cluster.starts[1]..cluster.starts[1] + 24).collect();
    let mut keys: Vec<String> = Vec::new();
    for slot in &moving {
        keys.extend((0..).map(|i| format!("r{i}")).filter(|k| slot::of(k.as_bytes()) == *slot).take(4));
    }
    let (own, theirs): (Vec<String>, Vec<String>) = keys.iter().cloned().partition(|k| k.len() % 2 == 0);
    assert!(!own.is_empty() && !theirs.is_empty(), "{keys:?}");
    let seeds: Vec<String> = cluster.nodes.iter().map(|n| format!("redis://127.0.0.1:{}", n.port)).collect();
    let direct = redis::cluster::ClusterClient::new(seeds).expect("cluster client");
    let mut writer = direct.get_connection().expect("cluster connection");
    for key in &theirs {
        let _: () = redis::cmd("SET").arg(key).arg("0").query(&mut writer).expect("SET");
    }
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let mut own_client = proxy.raw();
    let own_keys = own.clone();
    let own_load = std::thread::spawn(move || {
        let (mut round, mut wrong) = (0u64, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) || round < 3 {
            round += 1;
            for key in &own_keys {
                let value = format!("v{round}");
                let set = own_client.call(&["SET", key, &value]);
                let got = own_client.call(&["GET", key]);
                if set != "+OK\r\n" || got != format!("${}\r\n{value}\r\n", value.len()) {
                    wrong.push(format!("{key}: SET {set:?}, GET {got:?} (wrote {value})"));
                }
            }
        }
        (round, wrong)
    });
    let stop = done.clone();
    let mut reader = proxy.raw();
    let their_keys = theirs.clone();
    let their_load = std::thread::spawn(move || {
        let (mut reads, mut errors) = (0u64, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for key in &their_keys {
                let got = reader.call(&["GET", key]);
                reads += 1;
                if !got.starts_with('$') {
                    errors.push(format!("GET {key}: {got:?}"));
                }
            }
            let got = reader.call(&["MGET", &their_keys[0], &their_keys[their_keys.len() - 1]]);
            if !got.starts_with("*2\r\n$") {
                errors.push(format!("MGET: {got:?}"));
            }
        }
        (reads, errors)
    });
    let (from, to) = (cluster.id(1), cluster.id(2));
    let target_port = cluster.nodes[2].port.to_string();
    let mut round = 0u64;
    for slot in &moving {
        let slot = slot.to_string();
        assert_eq!(cluster.direct(2).call(&["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from]), "+OK\r\n");
        assert_eq!(cluster.direct(1).call(&["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to]), "+OK\r\n");
        // The cluster's own clients keep writing meanwhile.
        round += 1;
        for key in &theirs {
            let _: () = redis::cmd("SET").arg(key).arg(round).query(&mut writer).expect("direct SET");
        }
        let listed = cluster.direct(1).call(&["CLUSTER", "GETKEYSINSLOT", &slot, "100"]);
        let in_slot: Vec<&str> = listed.lines().skip(2).step_by(2).collect();
        if !in_slot.is_empty() {
            let mut migrate = vec!["MIGRATE", "127.0.0.1", &target_port, "", "0", "5000", "KEYS"];
            migrate.extend(in_slot);
            assert_eq!(cluster.direct(1).call(&migrate), "+OK\r\n");
        }
        cluster.give_slot(&slot, 1, 2);
        std::thread::sleep(Duration::from_millis(20));
    }
    round += 1;
    for key in &theirs {
        let _: () = redis::cmd("SET").arg(key).arg(round).query(&mut writer).expect("direct SET");
    }
    std::thread::sleep(Duration::from_millis(200));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (rounds, wrong) = own_load.join().expect("own load");
    let (reads, errors) = their_load.join().expect("their load");
    assert!(wrong.is_empty(), "{} of {rounds} rounds went wrong: {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    assert!(errors.is_empty(), "{} of {reads} reads failed: {:?}", errors.len(), &errors[..errors.len().min(5)]);
    // Everything lives on node 2 now, as last written.
    let mut client = proxy.raw();
    for key in &own {
        let last = format!("v{rounds}");
        assert_eq!(cluster.direct(2).call(&["GET", key]), format!("${}\r\n{last}\r\n", last.len()), "{key}");
    }
    let last = round.to_string();
    for key in &theirs {
        assert_eq!(cluster.direct(2).call(&["GET", key]), format!("${}\r\n{last}\r\n", last.len()), "{key}");
        let fresh = eventually(Duration::from_secs(2), || {
            client.call(&["GET", key]) == format!("${}\r\n{last}\r\n", last.len())
        });
        assert!(
            fresh,
            "{key}: the near-cache kept {:?} after the cluster's write of {last}",
            client.call(&["GET", key])
        );
    }
    eprintln!("{rounds} rounds of own writes, {reads} reads of the cluster's, {} slots moved", moving.len());
}

/// An operator's `CLUSTER FAILOVER` (a replica takes over from its live
/// master, which pauses writes meanwhile and answers `MOVED` after) under
/// load: no client sees an error, and every acknowledged `INCR` is counted
/// on the new master.
#[test]
fn a_manual_failover_under_load_costs_no_errors() {
    let cluster = Cluster::start(3);
    let (_replica, mut direct) = cluster.replica_of(1);
    let proxy = cluster.proxy("");
    let counter = cluster.key_on(1, "hits:");
    let key = format!("{{{counter}}}:last");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let mut client = proxy.raw();
    let (load_counter, load_key) = (counter.clone(), key.clone());
    let load = std::thread::spawn(move || {
        let (mut acknowledged, mut wrong) = (0u64, Vec::new());
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            let incr = client.call(&["INCR", &load_counter]);
            if incr == format!(":{}\r\n", acknowledged + 1) {
                acknowledged += 1;
            } else {
                wrong.push(format!("INCR after {acknowledged}: {incr:?}"));
            }
            let value = acknowledged.to_string();
            let set = client.call(&["SET", &load_key, &value]);
            let got = client.call(&["GET", &load_key]);
            if set != "+OK\r\n" || got != format!("${}\r\n{value}\r\n", value.len()) {
                wrong.push(format!("SET {set:?}, GET {got:?} (wrote {value})"));
            }
        }
        (acknowledged, wrong)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(direct.call(&["CLUSTER", "FAILOVER"]), "+OK\r\n");
    let promoted = eventually(Duration::from_secs(20), || direct.call(&["ROLE"]).starts_with("*3\r\n$6\r\nmaster"));
    assert!(promoted, "the replica never took over: {}", direct.call(&["ROLE"]));
    std::thread::sleep(Duration::from_millis(500));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, wrong) = load.join().expect("load");
    assert!(wrong.is_empty(), "{} requests went wrong: {:?}", wrong.len(), &wrong[..wrong.len().min(5)]);
    let count = acknowledged.to_string();
    assert_eq!(direct.call(&["GET", &counter]), format!("${}\r\n{count}\r\n", count.len()), "on the new master");
    eprintln!("{acknowledged} INCRs acknowledged across the failover");
}

/// A node's invalidation channel lost (the node stops answering for a
/// moment) drops that node's keys from the near-cache and stops serving
/// them until the channel is back; the other nodes' keys are served from
/// the cache meanwhile, and stay coherent.
#[test]
fn a_nodes_lost_invalidation_channel_stops_only_its_keys() {
    let cluster = Cluster::start(3);
    let proxy = cluster.proxy("[upstream]\nrequest_timeout = \"300ms\"\n[cache]\nadmission = \"first\"\n");
    let mut client = proxy.raw();
    let (near, far) = (cluster.key_on(0, "steady:"), cluster.key_on(1, "sleepy:"));
    for key in [&near, &far] {
        assert_eq!(client.call(&["SET", key, "1"]), "+OK\r\n");
        common::wait_cached(&proxy, &mut client, &["GET", key]);
    }
    let entries = |proxy: &Proxy| common::json_number(&proxy.admin_get("/cache/stats").1, "entries");
    assert_eq!(entries(&proxy), 2.0);
    // Node 1 stops answering for 1.5 s (under the cluster's node timeout):
    // its channel misses a PING's answer and is declared lost.
    let sleeper = cluster.direct(1);
    let sleeping = std::thread::spawn(move || {
        let mut sleeper = sleeper;
        sleeper.call(&["DEBUG", "SLEEP", "1.5"])
    });
    let lost = eventually(Duration::from_secs(2), || {
        metric(&proxy.admin_get("/metrics").1, "nearcache_tracking_connected") == Some(0.0)
    });
    assert!(lost, "node 1's channel was never declared lost");
    assert_eq!(entries(&proxy), 2.0, "node 1's key is kept for failover (not served: see below)");
    // Node 0's key is still served from the cache, and a write there is
    // still seen.
    let hits = || common::json_number(&proxy.admin_get("/cache/stats").1, "hits");
    let before = hits();
    assert_eq!(client.call(&["GET", &near]), "$1\r\n1\r\n");
    assert!(hits() > before, "node 0's key was not served from the cache while node 1's channel was down");
    assert_eq!(cluster.direct(0).call(&["SET", &near, "2"]), "+OK\r\n");
    let seen = eventually(Duration::from_secs(2), || client.call(&["GET", &near]) == "$1\r\n2\r\n");
    assert!(seen, "a write on node 0 went unseen while node 1's channel was down");
    assert_eq!(sleeping.join().expect("sleeper"), "+OK\r\n");
    // Node 1 is back: its keys are read from it, then cached again, and
    // its writes seen.
    let back = eventually(Duration::from_secs(5), || {
        metric(&proxy.admin_get("/metrics").1, "nearcache_tracking_connected") == Some(1.0)
    });
    assert!(back, "node 1's channel never came back");
    assert_eq!(cluster.direct(1).call(&["SET", &far, "3"]), "+OK\r\n");
    let fresh = eventually(Duration::from_secs(2), || client.call(&["GET", &far]) == "$1\r\n3\r\n");
    assert!(fresh, "node 1's key: {:?}", client.call(&["GET", &far]));
    common::wait_cached(&proxy, &mut client, &["GET", &far]);
}

/// Keyspace notifications come from the node where the key lives: a
/// client subscribed to them through the proxy gets every master's, while
/// a published message (which the cluster's bus carries to every node)
/// still arrives once; unsubscribing stops them all.
#[test]
fn keyspace_notifications_come_from_every_master() {
    let cluster = Cluster::start(3);
    cluster.config_set("notify-keyspace-events", "KA");
    let proxy = cluster.proxy("");
    let mut listener = proxy.raw();
    let confirmed = listener.call(&["PSUBSCRIBE", "__keyspace@0__:*"]);
    assert!(confirmed.starts_with("*3\r\n$10\r\npsubscribe\r\n"), "{confirmed:?}");
    assert!(listener.call(&["SUBSCRIBE", "news"]).starts_with("*3\r\n$9\r\nsubscribe\r\n"));
    let mut writer = proxy.raw();
    let keys: Vec<String> = (0..3).map(|node| cluster.key_on(node, "noted:")).collect();
    for key in &keys {
        assert_eq!(writer.call(&["SET", key, "1"]), "+OK\r\n");
    }
    let mut seen: Vec<String> = (0..3).map(|_| String::from_utf8_lossy(&listener.read_frame()).into_owned()).collect();
    seen.sort();
    let mut expected: Vec<String> = keys
        .iter()
        .map(|key| {
            let channel = format!("__keyspace@0__:{key}");
            format!(
                "*4\r\n$8\r\npmessage\r\n$16\r\n__keyspace@0__:*\r\n${}\r\n{channel}\r\n$3\r\nset\r\n",
                channel.len()
            )
        })
        .collect();
    expected.sort();
    assert_eq!(seen, expected);
    // A message published once arrives once (each master's satellite
    // receives it too, and passes it not on).
    assert!(writer.call(&["PUBLISH", "news", "hi"]).starts_with(':'));
    assert_eq!(String::from_utf8_lossy(&listener.read_frame()), "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$2\r\nhi\r\n");
    let unsubscribed = listener.call(&["PUNSUBSCRIBE", "__keyspace@0__:*"]);
    assert!(unsubscribed.starts_with("*3\r\n$12\r\npunsubscribe\r\n"), "{unsubscribed:?}");
    for key in &keys {
        assert_eq!(writer.call(&["SET", key, "2"]), "+OK\r\n");
    }
    assert!(writer.call(&["PUBLISH", "news", "again"]).starts_with(':'));
    let next = String::from_utf8_lossy(&listener.read_frame()).into_owned();
    assert_eq!(next, "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nagain\r\n", "a notification after PUNSUBSCRIBE");
    // RESP3: pushes, from any master.
    let mut resp3 = proxy.raw();
    assert!(resp3.call(&["HELLO", "3"]).starts_with('%'));
    assert!(resp3.call(&["SUBSCRIBE", &format!("__keyspace@0__:{}", keys[2])]).starts_with(">3\r\n$9\r\nsubscribe"));
    assert_eq!(writer.call(&["DEL", &keys[2]]), ":1\r\n");
    let pushed = String::from_utf8_lossy(&resp3.read_frame()).into_owned();
    assert!(pushed.starts_with(">3\r\n$7\r\nmessage\r\n") && pushed.ends_with("$3\r\ndel\r\n"), "{pushed:?}");
}

/// A master killed under load, its replica promoted by the cluster: the
/// clients writing to its slots get errors only while the cluster fails
/// over (bounded by its node timeout, 2 s here, plus the proxy's next
/// topology read), the other masters' clients none at all (with
/// `cluster-require-full-coverage no`: by default every master answers
/// `-CLUSTERDOWN` meanwhile, which the proxy passes on); the counter
/// on the promoted replica holds every acknowledged increment, but for
/// at most the last one, which Redis' asynchronous replication may not
/// have carried before the kill. Failover to local memory is off (with it
/// on, see `writes_journaled_while_a_master_is_down_…`).
#[test]
fn a_master_killed_under_load_fails_only_its_slots_and_only_meanwhile() {
    let mut cluster = Cluster::start_partial(3);
    let (_replica, mut direct) = cluster.replica_of(1);
    let proxy = cluster.proxy("[cache]\nenabled = false\n[failover]\nenabled = false\n");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = |node: usize, done: std::sync::Arc<std::sync::atomic::AtomicBool>| {
        let mut client = proxy.raw();
        let counter = cluster.key_on(node, "load:");
        std::thread::spawn(move || {
            let (mut acknowledged, mut uncertain, mut errors) = (0u64, 0u64, Vec::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = client.call(&["INCR", &counter]);
                let at = std::time::Instant::now();
                match reply.strip_prefix(':') {
                    Some(n) => acknowledged = n.trim().parse().unwrap_or(acknowledged),
                    None => {
                        // A request written before the kill may have
                        // been applied.
                        if reply.contains("may or may not") || reply.contains("timed out") {
                            uncertain += 1;
                        }
                        errors.push((at, reply));
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
            (counter, acknowledged, uncertain, errors)
        })
    };
    let victims = load(1, done.clone());
    let bystanders = load(2, done.clone());
    std::thread::sleep(Duration::from_millis(500));
    let killed = std::time::Instant::now();
    cluster.nodes[1].kill();
    let promoted = eventually(Duration::from_secs(20), || direct.call(&["ROLE"]).starts_with("*3\r\n$6\r\nmaster"));
    assert!(promoted, "the replica never took over: {}", direct.call(&["ROLE"]));
    std::thread::sleep(Duration::from_millis(3000));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (_, _, _, others) = bystanders.join().expect("bystanders");
    assert!(others.is_empty(), "another master's clients got errors: {:?}", &others[..others.len().min(3)]);
    let (counter, acknowledged, uncertain, errors) = victims.join().expect("victims");
    assert!(!errors.is_empty(), "no request failed while the master was gone");
    let last_error = errors.last().map(|(at, _)| at.duration_since(killed)).unwrap_or_default();
    assert!(last_error < Duration::from_secs(10), "errors went on for {last_error:?}: {:?}", errors.last());
    let mut kinds: Vec<&str> = errors.iter().map(|(_, e)| e.split(" (").next().unwrap_or_default()).collect();
    kinds.dedup();
    eprintln!("errors meanwhile: {kinds:?}");
    let on_replica: u64 = direct.call(&["GET", &counter]).lines().nth(1).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(
        on_replica + 1 >= acknowledged && on_replica <= acknowledged + uncertain,
        "{acknowledged} acknowledged ({uncertain} uncertain), {on_replica} on the promoted replica"
    );
    eprintln!(
        "{} errors, the last {last_error:?} after the kill; {acknowledged} acknowledged, {on_replica} kept",
        errors.len()
    );
}

/// The slots of a master that cannot be reached fail over to local memory
/// (`cluster-require-full-coverage no` keeps the others serving): its
/// cached keys are read, its writes journaled and answered, requests
/// spread over masters refused; the other masters are served as usual.
/// When the master is back (restarted empty), the journal is replayed to
/// it once, and its slots are served from it again.
#[test]
fn a_dead_masters_slots_fail_over_to_local_memory_and_replay_when_it_is_back() {
    let mut cluster = Cluster::start_partial(3);
    let proxy = cluster.proxy("[cache]\nadmission = \"first\"\n");
    let mut client = proxy.raw();
    let (kept, counter) = (cluster.key_on(1, "kept:"), cluster.key_on(1, "counter:"));
    let written = format!("{{{kept}}}:written");
    let other = cluster.key_on(2, "other:");
    // A first outage, with reads only: what local memory took from the
    // near-cache then is not served in the next one.
    let seen = cluster.key_on(1, "seen:");
    assert_eq!(client.call(&["SET", &seen, "old"]), "+OK\r\n");
    common::wait_cached(&proxy, &mut client, &["GET", &seen]);
    cluster.nodes[1].kill();
    let read = eventually(Duration::from_secs(10), || client.call(&["STRLEN", &seen]) == ":3\r\n");
    assert!(read, "STRLEN in failover: {:?}", client.call(&["STRLEN", &seen]));
    cluster.nodes[1].restart();
    let normal = eventually(Duration::from_secs(20), || proxy.admin_get("/ready").1.contains(r#""mode":"normal""#));
    assert!(normal, "{}", proxy.admin_get("/ready").1);
    let rewritten = eventually(Duration::from_secs(5), || client.call(&["SET", &seen, "newer"]) == "+OK\r\n");
    assert!(rewritten, "node 1 back: {:?}", client.call(&["SET", &seen, "newer"]));
    common::wait_cached(&proxy, &mut client, &["GET", &seen]);
    assert_eq!(client.call(&["SET", &kept, "before"]), "+OK\r\n");
    assert_eq!(client.call(&["SET", &counter, "5"]), "+OK\r\n");
    common::wait_cached(&proxy, &mut client, &["GET", &kept]);
    common::wait_cached(&proxy, &mut client, &["GET", &counter]);

    cluster.nodes[1].kill();
    let failing_over = eventually(Duration::from_secs(10), || client.call(&["SET", &written, "during"]) == "+OK\r\n");
    assert!(failing_over, "node 1's slots never failed over: {:?}", client.call(&["SET", &written, "during"]));
    let (status, ready) = proxy.admin_get("/ready");
    assert!(status == 200 && ready.contains(r#""mode":"failover""#), "{ready}");
    let active = format!("nearcache_failover_active{{upstream=\"redis://127.0.0.1:{}/0\"}}", cluster.nodes[1].port);
    assert_eq!(metric(&proxy.admin_get("/metrics").1, &active), Some(1.0));
    assert_eq!(client.call(&["GET", &kept]), "$6\r\nbefore\r\n", "a cached key is read from local memory");
    assert_eq!(client.call(&["GET", &seen]), "$5\r\nnewer\r\n", "not what the first outage left");
    assert_eq!(client.call(&["STRLEN", &seen]), ":5\r\n");
    assert_eq!(client.call(&["INCR", &counter]), ":6\r\n", "a cached counter goes on from its value");
    assert_eq!(client.call(&["GET", &written]), "$6\r\nduring\r\n");
    assert!(client.call(&["MGET", &kept, &other]).starts_with("-TRYAGAIN"), "spread over a master in failover");
    assert!(client.call(&["DBSIZE"]).starts_with("-TRYAGAIN"));
    // A transaction on those slots is refused whole, as in failover with
    // one Redis; one on another master runs there.
    let in_failover = format!("{{{kept}}}:tx");
    assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
    let queued = client.call(&["SET", &in_failover, "1"]);
    assert!(queued.starts_with("-TRYAGAIN") && queued.contains("transaction refused"), "{queued}");
    assert!(client.call(&["INCR", &in_failover]).starts_with("-TRYAGAIN"));
    assert_eq!(client.call(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(client.call(&["MULTI"]), "+OK\r\n");
    assert_eq!(client.call(&["INCR", &format!("{{{other}}}:tx")]), "+QUEUED\r\n");
    assert_eq!(client.call(&["EXEC"]), "*1\r\n:1\r\n");
    let blocking = client.call(&["BLPOP", &in_failover, "1"]);
    assert!(blocking.starts_with("-TRYAGAIN") && blocking.contains("BLPOP"), "{blocking}");
    // Another master's keys go to it, as usual.
    assert_eq!(client.call(&["SET", &other, "elsewhere"]), "+OK\r\n");
    assert_eq!(cluster.direct(2).call(&["GET", &other]), "$9\r\nelsewhere\r\n");
    assert!(proxy.admin_get("/ready").1.contains(r#""journal_entries":2"#), "{}", proxy.admin_get("/ready").1);

    cluster.nodes[1].restart();
    let replayed =
        eventually(Duration::from_secs(20), || proxy.admin_get("/ready").1.contains(r#""journal_entries":0"#));
    assert!(replayed, "the journal was never replayed: {}", proxy.admin_get("/ready").1);
    let mut direct = cluster.direct(1);
    assert_eq!(direct.call(&["GET", &written]), "$6\r\nduring\r\n", "replayed to the master back");
    assert_eq!(direct.call(&["GET", &counter]), "$1\r\n1\r\n", "the INCR replayed once (the master restarted empty)");
    let markers = eventually(Duration::from_secs(5), || direct.call(&["KEYS", "__nearcache__*"]) == "*0\r\n");
    assert!(markers, "replay markers left: {}", direct.call(&["KEYS", "__nearcache__*"]));
    let normal = eventually(Duration::from_secs(10), || proxy.admin_get("/ready").1.contains(r#""mode":"normal""#));
    assert!(normal, "{}", proxy.admin_get("/ready").1);
    assert_eq!(metric(&proxy.admin_get("/metrics").1, &active), Some(0.0));
    // Served by the master again: what it holds, not what local memory did.
    assert_eq!(client.call(&["GET", &kept]), "$-1\r\n");
    assert_eq!(client.call(&["INCR", &counter]), ":2\r\n");
    assert_eq!(client.call(&["MGET", &written, &other]), "*2\r\n$6\r\nduring\r\n$9\r\nelsewhere\r\n");
    assert_eq!(direct.call(&["EXISTS", &in_failover]), ":0\r\n", "nothing of the refused transaction");
}

/// A master dies and its replica takes over: meanwhile its slots are
/// served from local memory; the writes journaled then are replayed to the
/// promoted replica (a node the proxy had never sent a request to), and
/// nothing acknowledged is lost.
#[test]
fn writes_journaled_while_a_master_is_down_are_replayed_to_the_promoted_replica() {
    let mut cluster = Cluster::start_partial(3);
    let (_replica, mut direct) = cluster.replica_of(1);
    let proxy = cluster.proxy("");
    let mut client = proxy.raw();
    let key = cluster.key_on(1, "promoted:");
    let list = format!("{{{key}}}:list");
    assert_eq!(client.call(&["SET", &key, "kept"]), "+OK\r\n");
    cluster.replicated(1, &key);

    cluster.nodes[1].kill();
    let mut acknowledged = 0;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(8) {
        let reply = client.call(&["RPUSH", &list, &acknowledged.to_string()]);
        if reply.starts_with(':') {
            acknowledged += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(acknowledged > 0, "no write was acknowledged while the master was down");
    let promoted = eventually(Duration::from_secs(20), || direct.call(&["ROLE"]).starts_with("*3\r\n$6\r\nmaster"));
    assert!(promoted, "the replica never took over: {}", direct.call(&["ROLE"]));
    let replayed =
        eventually(Duration::from_secs(20), || proxy.admin_get("/ready").1.contains(r#""journal_entries":0"#));
    assert!(replayed, "the journal was never replayed: {}", proxy.admin_get("/ready").1);
    let expected: Vec<String> = (0..acknowledged).map(|i| i.to_string()).collect();
    let on_replica = direct.call(&["LRANGE", &list, "0", "-1"]);
    let values: Vec<&str> = on_replica.lines().skip(2).step_by(2).collect();
    assert_eq!(values, expected, "every acknowledged RPUSH, in order, on the promoted replica");
    assert_eq!(client.call(&["GET", &key]), "$4\r\nkept\r\n");
    assert_eq!(client.call(&["LLEN", &list]), format!(":{acknowledged}\r\n"));
}

/// Two masters down, one back: the writes journaled for its slots are
/// replayed to it, and its slots served by it again, while the other's
/// stay in failover (its writes, journaled in between, wait for it).
#[test]
fn a_master_back_is_replayed_to_while_another_is_still_down() {
    let mut cluster = Cluster::start_partial(3);
    let proxy = cluster.proxy("");
    let mut client = proxy.raw();
    let (one, two) = (cluster.key_on(1, "one:"), cluster.key_on(2, "two:"));
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let failing_over = eventually(Duration::from_secs(10), || client.call(&["SET", &one, "1"]) == "+OK\r\n");
    assert!(failing_over, "{:?}", client.call(&["SET", &one, "1"]));
    let both = eventually(Duration::from_secs(10), || client.call(&["SET", &two, "2"]) == "+OK\r\n");
    assert!(both, "{:?}", client.call(&["SET", &two, "2"]));
    assert_eq!(client.call(&["APPEND", &one, "1"]), ":2\r\n");
    assert!(proxy.admin_get("/ready").1.contains(r#""journal_entries":3"#), "{}", proxy.admin_get("/ready").1);

    cluster.nodes[1].restart();
    let mut direct = cluster.direct(1);
    let replayed = eventually(Duration::from_secs(20), || direct.call(&["GET", &one]) == "$2\r\n11\r\n");
    assert!(replayed, "node 1 has {:?}: {}", direct.call(&["GET", &one]), proxy.admin_get("/ready").1);
    let (status, ready) = proxy.admin_get("/ready");
    assert!(status == 200 && ready.contains(r#""journal_entries":1"#), "{ready}");
    // Node 1's slots are its own again: a write there is on node 1 at once.
    let upstream = eventually(Duration::from_secs(5), || {
        client.call(&["SET", &one, "upstream"]) == "+OK\r\n" && direct.call(&["GET", &one]) == "$8\r\nupstream\r\n"
    });
    assert!(upstream, "node 1 has {:?}", direct.call(&["GET", &one]));
    assert_eq!(client.call(&["GET", &two]), "$1\r\n2\r\n", "node 2's slots are still served from local memory");

    cluster.nodes[2].restart();
    let mut direct = cluster.direct(2);
    let replayed = eventually(Duration::from_secs(20), || direct.call(&["GET", &two]) == "$1\r\n2\r\n");
    assert!(replayed, "node 2 has {:?}: {}", direct.call(&["GET", &two]), proxy.admin_get("/ready").1);
    let empty = eventually(Duration::from_secs(5), || proxy.admin_get("/ready").1.contains(r#""journal_entries":0"#));
    assert!(empty, "{}", proxy.admin_get("/ready").1);
}

/// A proxy killed in the middle of a cluster replay leaves its journal
/// file and id; the next one loads them and replays each slot from where
/// its marker says: entries a lost round had applied are not applied
/// again, the others are, each to its slot's master.
#[test]
fn a_restart_mid_replay_resumes_each_slot_where_its_marker_says() {
    let cluster = Cluster::start(3);
    let (a, b) = (cluster.key_on(1, "resume:"), cluster.key_on(2, "resume:"));
    let (counter_a, counter_b) = (format!("{{{a}}}:n"), format!("{{{b}}}:n"));
    let command = |args: &[&str]| {
        let mut out = format!("*{}\r\n", args.len());
        args.iter().for_each(|arg| out.push_str(&format!("${}\r\n{arg}\r\n", arg.len())));
        out
    };
    let dir = std::env::temp_dir().join(format!("nearcache-cluster-midreplay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let journal = dir.join("journal.aof");
    let entries = [
        command(&["SET", &a, "yes"]),
        command(&["INCR", &counter_a]),
        command(&["INCR", &counter_b]),
        command(&["INCR", &counter_a]),
    ];
    std::fs::write(&journal, entries.concat()).expect("journal");
    std::fs::write(dir.join("journal.aof.id"), "00000000c0ffee43\n").expect("id");
    // Upstream, slot a's first round (entries 0 and 1) was applied, its
    // marker at 2; nothing of slot b.
    let mut node1 = cluster.direct(1);
    assert_eq!(node1.call(&["SET", &a, "yes"]), "+OK\r\n");
    assert_eq!(node1.call(&["SET", &counter_a, "1"]), "+OK\r\n");
    let tag = nearcache::failover::slots::tag(slot::of(a.as_bytes()));
    let marker = format!("__nearcache__:replay:00000000c0ffee43:{{{tag}}}");
    assert_eq!(node1.call(&["SET", &marker, "2"]), "+OK\r\n");

    let proxy = cluster.proxy(&format!("[failover]\njournal_path = \"{}\"\n", journal.display()));
    let replayed =
        eventually(Duration::from_secs(10), || proxy.admin_get("/ready").1.contains(r#""journal_entries":0"#));
    assert!(replayed, "{}", proxy.admin_get("/ready").1);
    assert_eq!(node1.call(&["GET", &counter_a]), "$1\r\n2\r\n", "slot a: only the entry after its marker");
    assert_eq!(cluster.direct(2).call(&["GET", &counter_b]), "$1\r\n1\r\n", "slot b: all of it");
    let markers = eventually(Duration::from_secs(5), || node1.call(&["KEYS", "__nearcache__*"]) == "*0\r\n");
    assert!(markers, "{}", node1.call(&["KEYS", "__nearcache__*"]));
    assert_eq!(std::fs::metadata(&journal).expect("journal").len(), 0, "replayed: truncated");
    let mut client = proxy.raw();
    assert_eq!(client.call(&["MGET", &counter_a, &counter_b]), "*2\r\n$1\r\n2\r\n$1\r\n1\r\n");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A healthy master that stalls (SIGSTOP, under the cluster's node
/// timeout): a write sent to it before the stall is never answered from
/// failover (it gets an error saying it may or may not have been applied);
/// one sent into the stall is answered by failover at once; the other
/// masters' clients see nothing; once the master answers, the journal
/// lands on it and its slots are its own again.
#[test]
fn a_stalled_master_fails_over_alone_and_gets_its_writes_once_it_answers() {
    let cluster = Cluster::start_partial(3);
    let proxy = cluster.proxy(
        "[upstream]\nrequest_timeout = \"1s\"\n[breaker]\nstall_after = \"300ms\"\n[cache]\nadmission = \"first\"\n",
    );
    let (stalled, elsewhere) = (cluster.key_on(1, "stalled:"), cluster.key_on(2, "elsewhere:"));
    let during = format!("{{{stalled}}}:during");
    let (mut before, mut writer, mut bystander) = (proxy.raw(), proxy.raw(), proxy.raw());
    assert_eq!(before.call(&["SET", &stalled, "1"]), "+OK\r\n");
    cluster.nodes[1].pause();
    before.cmd(&["INCR", &stalled]);
    std::thread::sleep(Duration::from_millis(700));
    let sent = std::time::Instant::now();
    assert_eq!(writer.call(&["INCRBY", &during, "5"]), ":5\r\n", "served by failover");
    assert!(sent.elapsed() < Duration::from_millis(500), "a write into the stall took {:?}", sent.elapsed());
    assert_eq!(bystander.call(&["INCR", &elsewhere]), ":1\r\n", "another master, as usual");
    let reply = String::from_utf8_lossy(&before.read_frame()).into_owned();
    assert_eq!(reply, "-ERR upstream timeout, the command may or may not have been applied\r\n");
    cluster.nodes[1].resume();
    let normal = eventually(Duration::from_secs(10), || {
        let ready = proxy.admin_get("/ready").1;
        ready.contains(r#""mode":"normal""#) && ready.contains(r#""journal_entries":0"#)
    });
    assert!(normal, "{}", proxy.admin_get("/ready").1);
    let mut direct = cluster.direct(1);
    assert_eq!(direct.call(&["GET", &during]), "$1\r\n5\r\n", "the journal was replayed once");
    assert_eq!(direct.call(&["GET", &stalled]), "$1\r\n2\r\n", "the write sent before the stall ran once, upstream");
    assert_eq!(writer.call(&["INCRBY", &during, "1"]), ":6\r\n");
    assert_eq!(bystander.call(&["GET", &elsewhere]), "$1\r\n1\r\n");
}

/// A master back from a stall but refusing the proxy's new connections
/// (here a password the proxy lacks) is reachable: its slots stop being
/// answered from local memory (the error and `/ready` say why), the other
/// masters are untouched, and once it accepts the proxy the journaled
/// writes land on it.
#[test]
fn a_master_back_but_refusing_the_proxy_gets_no_local_answers_for_its_slots() {
    let cluster = Cluster::start_partial(3);
    let proxy = cluster
        .proxy("[upstream]\nrequest_timeout = \"1s\"\n[breaker]\nstall_after = \"300ms\"\nopen_for = \"500ms\"\n");
    let (refusing, elsewhere) = (cluster.key_on(1, "refusing:"), cluster.key_on(2, "elsewhere:"));
    let during = format!("{{{refusing}}}:during");
    let (mut before, mut writer, mut bystander) = (proxy.raw(), proxy.raw(), proxy.raw());
    assert_eq!(before.call(&["SET", &refusing, "1"]), "+OK\r\n");
    let mut admin = cluster.direct(1);
    assert_eq!(admin.call(&["CONFIG", "SET", "requirepass", "secret"]), "+OK\r\n");
    cluster.nodes[1].pause();
    before.cmd(&["INCR", &refusing]);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(writer.call(&["INCRBY", &during, "5"]), ":5\r\n", "served by failover");
    cluster.nodes[1].resume();
    let refused = eventually(Duration::from_secs(10), || proxy.admin_get("/ready").1.contains("NOAUTH"));
    assert!(refused, "{}", proxy.admin_get("/ready").1);
    for request in [&["GET", &during][..], &["INCR", &during][..]] {
        let reply = writer.call(request);
        assert!(reply.starts_with("-TRYAGAIN upstream refuses") && reply.contains("NOAUTH"), "{request:?}: {reply:?}");
    }
    assert_eq!(bystander.call(&["INCR", &elsewhere]), ":1\r\n", "another master, as usual");
    assert_eq!(admin.call(&["CONFIG", "SET", "requirepass", ""]), "+OK\r\n");
    let normal = eventually(Duration::from_secs(10), || {
        let ready = proxy.admin_get("/ready").1;
        ready.contains(r#""mode":"normal""#) && ready.contains(r#""journal_entries":0"#)
    });
    assert!(normal, "{}", proxy.admin_get("/ready").1);
    assert_eq!(cluster.direct(1).call(&["GET", &during]), "$1\r\n5\r\n", "the journal was replayed once");
    assert_eq!(writer.call(&["INCRBY", &during, "1"]), ":6\r\n");
}

/// A cluster made the usual way, `redis-cli --cluster create … --cluster-
/// replicas 1` over six nodes: the proxy finds the three masters (not the
/// replicas) from one seed, spreads keys over them, counts only the
/// masters' keys, and follows an operator's `CLUSTER FAILOVER` on a
/// replica.
#[test]
fn a_cluster_created_by_redis_cli_with_replicas_is_served() {
    let nodes: Vec<RedisServer> = (0..6).map(|_| RedisServer::start_cluster_node()).collect();
    let addresses: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let created = std::process::Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "1", "--cluster-yes"])
        .output()
        .expect("redis-cli (scripts/test-deps.sh installs it)");
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stdout));
    let formed = eventually(Duration::from_secs(20), || {
        nodes.iter().all(|node| direct_raw(node).call(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    });
    assert!(formed, "the cluster did not form");
    let proxy = Proxy::start_url(&format!("redis+cluster://{}", addresses[0]), "");
    let masters = eventually(Duration::from_secs(10), || {
        let ready = proxy.admin_get("/ready").1;
        ready.matches(r#""state":"up""#).count() == 3 && ready.contains(r#""upstream":"up""#)
    });
    assert!(masters, "{}", proxy.admin_get("/ready").1);
    let mut client = proxy.raw();
    let keys: Vec<String> = (0..30).map(|i| format!("made:{i}")).collect();
    let mut mset = vec!["MSET".to_string()];
    keys.iter().for_each(|k| mset.extend([k.clone(), k.clone()]));
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(client.call(&mset), "+OK\r\n");
    assert_eq!(client.call(&["DBSIZE"]), ":30\r\n", "the masters' keys, each once");
    assert_eq!(client.call(&["MGET", &keys[0], &keys[29]]), "*2\r\n$6\r\nmade:0\r\n$7\r\nmade:29\r\n");
    // An operator promotes the replica serving `made:0`'s slot.
    let slot = slot::of(keys[0].as_bytes()).to_string();
    let master = nodes
        .iter()
        .find(|node| direct_raw(node).call(&["CLUSTER", "COUNTKEYSINSLOT", &slot]) == ":1\r\n")
        .expect("made:0's master");
    let master_port = format!(":{}", master.port);
    let replica = nodes
        .iter()
        .find(|node| {
            let role = direct_raw(node).call(&["ROLE"]);
            role.starts_with("*5\r\n$5\r\nslave") && role.lines().nth(5) == Some(master_port.as_str())
        })
        .expect("a replica of made:0's master");
    let mut direct = direct_raw(replica);
    // A replica still in its first sync cannot take over.
    let synced =
        eventually(Duration::from_secs(20), || direct.call(&["INFO", "replication"]).contains("master_link_status:up"));
    assert!(synced, "{}", direct.call(&["INFO", "replication"]));
    assert_eq!(direct.call(&["CLUSTER", "FAILOVER"]), "+OK\r\n");
    let promoted = eventually(Duration::from_secs(20), || direct.call(&["ROLE"]).starts_with("*3\r\n$6\r\nmaster"));
    assert!(promoted, "{}", direct.call(&["ROLE"]));
    let followed = eventually(Duration::from_secs(10), || client.call(&["INCR", "made:0:n"]).starts_with(':'));
    assert!(followed, "{:?}", client.call(&["INCR", "made:0:n"]));
    assert_eq!(client.call(&["SET", &keys[0], "after"]), "+OK\r\n");
    assert_eq!(direct.call(&["GET", &keys[0]]), "$5\r\nafter\r\n", "on the promoted replica");
    // Commands sent to every master reach the new one, not the demoted
    // one, once the proxy has read the topology again (a second at most
    // after it saw the change).
    let started = std::time::Instant::now();
    let masters_only = eventually(Duration::from_secs(3), || client.call(&["DBSIZE"]) == ":31\r\n");
    assert!(masters_only, "DBSIZE {:?}: {}", client.call(&["DBSIZE"]), proxy.admin_get("/ready").1);
    eprintln!("DBSIZE counted the masters only {:?} after the failover was followed", started.elapsed());
}

/// A client that keeps writing to a dead master's slot through its outage,
/// its return and the replay: every acknowledged `RPUSH` ends up on the
/// master exactly once and in order (the journaled ones replayed before
/// any sent upstream after them), and the slot leaves failover although
/// the writes never stop (the slot's last round holds requests back).
#[test]
fn a_slots_writers_never_pause_and_nothing_is_reordered_or_lost() {
    let mut cluster = Cluster::start_partial(3);
    let proxy = cluster.proxy("[cache]\nenabled = false\n");
    let list = cluster.key_on(1, "ordered:");
    cluster.nodes[1].kill();
    let mut probe = proxy.raw();
    let probed = format!("{{{list}}}:probe");
    let failing_over = eventually(Duration::from_secs(10), || probe.call(&["SET", &probed, "x"]) == "+OK\r\n");
    assert!(failing_over, "{}", proxy.admin_get("/ready").1);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (mut client, list, done) = (proxy.raw(), list.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut acknowledged, mut errors) = (0u64, Vec::new());
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let reply = client.call(&["RPUSH", &list, &acknowledged.to_string()]);
                match reply.starts_with(':') {
                    true => acknowledged += 1,
                    false => errors.push(reply),
                }
            }
            (acknowledged, errors)
        })
    };
    std::thread::sleep(Duration::from_millis(1500));
    cluster.nodes[1].restart();
    let replayed = eventually(Duration::from_secs(20), || {
        let ready = proxy.admin_get("/ready").1;
        ready.contains(r#""mode":"normal""#) && ready.contains(r#""journal_entries":0"#)
    });
    std::thread::sleep(Duration::from_millis(300));
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let (acknowledged, errors) = writer.join().expect("writer");
    assert!(replayed, "the slot never left failover: {}", proxy.admin_get("/ready").1);
    assert!(errors.is_empty(), "{} errors, e.g. {:?}", errors.len(), &errors[..errors.len().min(3)]);
    let values = cluster.direct(1).call(&["LRANGE", &list, "0", "-1"]);
    let values: Vec<u64> = values.lines().skip(2).step_by(2).filter_map(|v| v.parse().ok()).collect();
    assert_eq!(values.len() as u64, acknowledged, "every acknowledged RPUSH, once");
    assert!(values.iter().enumerate().all(|(i, &v)| v == i as u64), "in order");
    eprintln!("{acknowledged} RPUSHes through the outage, the return and the replay");
}

/// A tenant's writes to a dead master's slots are journaled in its
/// namespace and replayed there: the keys land under its prefix, in the
/// slot its hash tag names, and another tenant does not see them, in
/// failover or after.
#[test]
fn a_tenants_writes_in_failover_are_replayed_in_its_namespace() {
    let mut cluster = Cluster::start_partial(3);
    let hash = nearcache::tenancy::hash_password(b"pw");
    let tenants = format!(
        "[[tenant]]\nname = \"acme\"\npassword_sha256 = \"{hash}\"\n[[tenant]]\nname = \"globex\"\npassword_sha256 = \"{hash}\"\n"
    );
    let proxy = cluster.proxy(&tenants);
    let (mut acme, mut globex) = (proxy.raw(), proxy.raw());
    assert_eq!(acme.call(&["AUTH", "acme", "pw"]), "+OK\r\n");
    assert_eq!(globex.call(&["AUTH", "globex", "pw"]), "+OK\r\n");
    let tag = cluster.key_on(1, "user");
    let key = format!("{{{tag}}}:n");
    cluster.nodes[1].kill();
    let failing_over = eventually(Duration::from_secs(10), || acme.call(&["INCRBY", &key, "5"]) == ":5\r\n");
    assert!(failing_over, "{:?}", acme.call(&["GET", &key]));
    assert_eq!(acme.call(&["GET", &key]), "$1\r\n5\r\n");
    assert_eq!(globex.call(&["GET", &key]), "$-1\r\n", "another tenant's namespace, in failover too");
    cluster.nodes[1].restart();
    let replayed = eventually(Duration::from_secs(20), || {
        let ready = proxy.admin_get("/ready").1;
        ready.contains(r#""mode":"normal""#) && ready.contains(r#""journal_entries":0"#)
    });
    assert!(replayed, "{}", proxy.admin_get("/ready").1);
    let mut direct = cluster.direct(1);
    assert_eq!(direct.call(&["GET", &format!("acme:{key}")]), "$1\r\n5\r\n", "under the tenant's prefix");
    assert_eq!(direct.call(&["DBSIZE"]), ":1\r\n", "and nothing else");
    assert_eq!(acme.call(&["INCR", &key]), ":6\r\n");
    assert_eq!(globex.call(&["GET", &key]), "$-1\r\n");
}

/// A master that answers but refuses the replay (here `NOREPLICAS`: it
/// takes no writes) holds back only its own slots, which answer
/// `-TRYAGAIN` with the reason rather than from local memory; another
/// master's journaled writes, written after, are replayed meanwhile; once
/// the first accepts, its writes land too.
#[test]
fn a_master_refusing_the_replay_holds_back_only_its_slots() {
    let cluster = Cluster::start_partial(3);
    let proxy = cluster.proxy("[breaker]\nstall_after = \"300ms\"\n[cache]\nenabled = false\n");
    let (refusing, accepting) = (cluster.key_on(1, "refusing:"), cluster.key_on(2, "accepting:"));
    assert_eq!(cluster.direct(1).call(&["CONFIG", "SET", "min-replicas-to-write", "1"]), "+OK\r\n");
    let mut client = proxy.raw();
    cluster.nodes[1].pause();
    cluster.nodes[2].pause();
    let journaled = eventually(Duration::from_secs(10), || client.call(&["SET", &refusing, "1"]) == "+OK\r\n");
    assert!(journaled, "{:?}", client.call(&["SET", &refusing, "1"]));
    let journaled = eventually(Duration::from_secs(10), || client.call(&["SET", &accepting, "2"]) == "+OK\r\n");
    assert!(journaled, "{:?}", client.call(&["SET", &accepting, "2"]));
    cluster.nodes[1].resume();
    cluster.nodes[2].resume();
    let mut direct = cluster.direct(2);
    let replayed = eventually(Duration::from_secs(10), || direct.call(&["GET", &accepting]) == "$1\r\n2\r\n");
    assert!(replayed, "node 2 has {:?}: {}", direct.call(&["GET", &accepting]), proxy.admin_get("/ready").1);
    let refused = eventually(Duration::from_secs(10), || {
        client.call(&["GET", &refusing]).starts_with("-TRYAGAIN upstream refuses the failover journal's replay")
    });
    assert!(refused, "{:?}", client.call(&["GET", &refusing]));
    let (status, ready) = proxy.admin_get("/ready");
    // Still 200: the other masters' slots are served (a single Redis would
    // answer 503).
    assert!(status == 200 && ready.contains(r#""mode":"replay_refused""#) && ready.contains("NOREPLICAS"), "{ready}");
    assert_eq!(client.call(&["GET", &accepting]), "$1\r\n2\r\n", "the other master's slot is its own again");
    assert_eq!(cluster.direct(1).call(&["CONFIG", "SET", "min-replicas-to-write", "0"]), "+OK\r\n");
    let landed = eventually(Duration::from_secs(10), || cluster.direct(1).call(&["GET", &refusing]) == "$1\r\n1\r\n");
    assert!(landed, "{}", proxy.admin_get("/ready").1);
    let normal = eventually(Duration::from_secs(5), || proxy.admin_get("/ready").1.contains(r#""mode":"normal""#));
    assert!(normal, "{}", proxy.admin_get("/ready").1);
    assert_eq!(client.call(&["GET", &refusing]), "$1\r\n1\r\n");
}

/// Two masters down, writes journaled to a file; one master back gets its
/// writes; the proxy then stops and another starts on the same journal
/// (which still holds the replayed entries: the file is truncated only
/// once empty): the replayed entries are not applied again, the others
/// land when their master is back.
#[test]
fn a_restarted_proxy_does_not_replay_again_what_a_master_already_got() {
    let mut cluster = Cluster::start_partial(3);
    let dir = std::env::temp_dir().join(format!("nearcache-cluster-journal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let journal = dir.join("journal.aof");
    let toml =
        format!("[cache]\nenabled = false\n[failover]\njournal_path = \"{}\"\nfsync = \"always\"\n", journal.display());
    let (one, two) = (cluster.key_on(1, "once:"), cluster.key_on(2, "once:"));
    let proxy = cluster.proxy(&toml);
    let mut client = proxy.raw();
    cluster.nodes[1].kill();
    cluster.nodes[2].kill();
    let journaled = eventually(Duration::from_secs(10), || client.call(&["INCR", &one]) == ":1\r\n");
    assert!(journaled, "{:?}", client.call(&["GET", &one]));
    let journaled = eventually(Duration::from_secs(10), || client.call(&["INCR", &two]) == ":1\r\n");
    assert!(journaled, "{:?}", client.call(&["GET", &two]));
    cluster.nodes[2].restart();
    let mut direct = cluster.direct(2);
    let replayed = eventually(Duration::from_secs(20), || direct.call(&["GET", &two]) == "$1\r\n1\r\n");
    assert!(replayed, "{}", proxy.admin_get("/ready").1);
    drop(client);
    proxy.stop();

    let proxy = cluster.proxy(&toml);
    cluster.nodes[1].restart();
    let empty = eventually(Duration::from_secs(20), || proxy.admin_get("/ready").1.contains(r#""journal_entries":0"#));
    assert!(empty, "{}", proxy.admin_get("/ready").1);
    assert_eq!(cluster.direct(1).call(&["GET", &one]), "$1\r\n1\r\n");
    assert_eq!(direct.call(&["GET", &two]), "$1\r\n1\r\n", "not applied a second time");
    // The count drops as the last round's entries are taken out (it was
    // answered); the file is truncated just after, once the replay finds
    // the journal empty.
    let truncated = eventually(Duration::from_secs(5), || std::fs::metadata(&journal).is_ok_and(|m| m.len() == 0));
    assert!(truncated, "replayed: truncated");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A slot whose journaled writes wait (its master refuses them) moves to
/// another master meanwhile: the replay's `MOVED` updates the slot map,
/// and the writes land on the slot's new master.
#[test]
fn a_pending_slot_that_moves_is_replayed_to_its_new_master() {
    let cluster = Cluster::start_partial(3);
    let proxy = cluster.proxy("[breaker]\nstall_after = \"300ms\"\n[cache]\nenabled = false\n");
    let key = cluster.key_on(1, "moving:");
    let slot = slot::of(key.as_bytes()).to_string();
    assert_eq!(cluster.direct(1).call(&["CONFIG", "SET", "min-replicas-to-write", "1"]), "+OK\r\n");
    let mut client = proxy.raw();
    cluster.nodes[1].pause();
    let journaled = eventually(Duration::from_secs(10), || client.call(&["SET", &key, "moved"]) == "+OK\r\n");
    assert!(journaled, "{:?}", client.call(&["SET", &key, "moved"]));
    cluster.nodes[1].resume();
    let refused = eventually(Duration::from_secs(10), || proxy.admin_get("/ready").1.contains("NOREPLICAS"));
    assert!(refused, "{}", proxy.admin_get("/ready").1);
    // The slot (no key in it upstream) is given to node 2.
    cluster.give_slot(&slot, 1, 2);
    let mut direct = cluster.direct(2);
    let landed = eventually(Duration::from_secs(15), || direct.call(&["GET", &key]) == "$5\r\nmoved\r\n");
    assert!(landed, "node 2 has {:?}: {}", direct.call(&["GET", &key]), proxy.admin_get("/ready").1);
    let normal = eventually(Duration::from_secs(5), || proxy.admin_get("/ready").1.contains(r#""mode":"normal""#));
    assert!(normal, "{}", proxy.admin_get("/ready").1);
    assert_eq!(client.call(&["GET", &key]), "$5\r\nmoved\r\n");
    assert_eq!(cluster.direct(1).call(&["DBSIZE"]), ":0\r\n", "nothing on the old master");
}
