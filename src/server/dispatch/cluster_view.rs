//! The cluster a client sees through a proxy fronting a Redis Cluster: one
//! node, the proxy at the address the client reached it at, master of all
//! 16,384 slots. Cluster-aware clients (`CLUSTER SLOTS`, `SHARDS`,
//! `NODES`) then send everything to the proxy, which routes it; asking
//! them about the real nodes would send them around it.

use crate::protocol::{encode, Args, Proto};
use crate::router::slot::SLOTS;
use bytes::{Bytes, BytesMut};
use std::net::SocketAddr;

/// The proxy's node id: 40 hex digits, as every node id.
const ID: &str = "6e65617263616368650000000000000000000000";

/// The reply to a `CLUSTER` subcommand the view answers.
pub fn reply(proto: Proto, addr: SocketAddr, args: &Args) -> Bytes {
    let sub = String::from_utf8_lossy(args.get(1).unwrap_or_default()).to_lowercase();
    let mut out = BytesMut::new();
    match sub.as_str() {
        "info" => encode::bulk(&mut out, info().as_bytes()),
        "myid" => encode::bulk(&mut out, ID.as_bytes()),
        "nodes" => encode::bulk(&mut out, nodes(addr).as_bytes()),
        "slots" => slots(&mut out, addr),
        "shards" => shards(&mut out, proto, addr),
        _ => {
            return encode::error(&format!(
                "ERR 'CLUSTER {}' is not supported through nearcache: it fronts the cluster as one node",
                sub.to_uppercase()
            ))
        }
    }
    out.freeze()
}

fn info() -> String {
    let last = SLOTS;
    [
        "cluster_state:ok".to_string(),
        format!("cluster_slots_assigned:{last}"),
        format!("cluster_slots_ok:{last}"),
        "cluster_slots_pfail:0".into(),
        "cluster_slots_fail:0".into(),
        "cluster_known_nodes:1".into(),
        "cluster_size:1".into(),
        "cluster_current_epoch:1".into(),
        "cluster_my_epoch:1".into(),
        "cluster_stats_messages_sent:0".into(),
        "cluster_stats_messages_received:0".into(),
        "total_cluster_links_buffer_limit_exceeded:0".into(),
        String::new(),
    ]
    .join("\r\n")
}

fn nodes(addr: SocketAddr) -> String {
    let (ip, port) = (addr.ip(), addr.port());
    format!("{ID} {ip}:{port}@0 myself,master - 0 0 1 connected 0-{}\n", SLOTS - 1)
}

fn slots(out: &mut BytesMut, addr: SocketAddr) {
    encode::header(out, b'*', 1);
    encode::header(out, b'*', 3);
    encode::integer(out, 0);
    encode::integer(out, SLOTS as i64 - 1);
    encode::header(out, b'*', 3);
    encode::bulk(out, addr.ip().to_string().as_bytes());
    encode::integer(out, i64::from(addr.port()));
    encode::bulk(out, ID.as_bytes());
}

fn shards(out: &mut BytesMut, proto: Proto, addr: SocketAddr) {
    let ip = addr.ip().to_string();
    encode::header(out, b'*', 1);
    encode::map_header(out, proto, 2);
    encode::bulk(out, b"slots");
    encode::header(out, b'*', 2);
    encode::integer(out, 0);
    encode::integer(out, SLOTS as i64 - 1);
    encode::bulk(out, b"nodes");
    encode::header(out, b'*', 1);
    encode::map_header(out, proto, 7);
    for (name, value) in [("id", ID), ("ip", &ip), ("endpoint", &ip), ("role", "master"), ("health", "online")] {
        encode::bulk(out, name.as_bytes());
        encode::bulk(out, value.as_bytes());
    }
    encode::bulk(out, b"port");
    encode::integer(out, i64::from(addr.port()));
    encode::bulk(out, b"replication-offset");
    encode::integer(out, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::topology;

    fn ask(proto: Proto, words: &[&str]) -> Bytes {
        let (bytes, ranges) = crate::protocol::laid_out(words);
        reply(proto, "127.0.0.1:6380".parse().expect("addr"), &Args::new(&bytes, &ranges))
    }

    #[test]
    fn the_proxy_is_the_master_of_every_slot() {
        let shard = topology::Shard { master: "127.0.0.1:6380".into(), ranges: vec![(0, 16383)] };
        assert_eq!(topology::parse_slots(&ask(Proto::Resp2, &["CLUSTER", "SLOTS"]), "x:1"), Ok(vec![shard.clone()]));
        assert_eq!(topology::parse_shards(&ask(Proto::Resp2, &["CLUSTER", "SHARDS"]), "x:1", false), Ok(vec![shard]));
        let nodes = String::from_utf8_lossy(&ask(Proto::Resp2, &["cluster", "nodes"])).into_owned();
        assert!(nodes.contains(" 127.0.0.1:6380@0 myself,master - 0 0 1 connected 0-16383\n"), "{nodes}");
        assert!(ask(Proto::Resp3, &["CLUSTER", "SHARDS"]).starts_with(b"*1\r\n%2\r\n"));
        assert!(String::from_utf8_lossy(&ask(Proto::Resp2, &["CLUSTER", "INFO"])).contains("cluster_state:ok\r\n"));
        assert!(ask(Proto::Resp2, &["CLUSTER", "GETKEYSINSLOT", "1", "1"]).starts_with(b"-ERR 'CLUSTER GETKEYSINSLOT'"));
    }
}
