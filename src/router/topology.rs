//! A Redis Cluster's topology as its nodes describe it: which master serves
//! which slot ranges, read from `CLUSTER SHARDS` (Redis ≥ 7.0) or, on older
//! servers, `CLUSTER SLOTS`. Only masters are kept: the proxy sends every
//! command to the master of its slot (replicas would answer reads with
//! `MOVED` unless `READONLY`, and could be behind).

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::types::OwnedFrame as Frame;

/// One master and the slot ranges (inclusive) it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// `host:port` clients connect to.
    pub master: String,
    pub ranges: Vec<(u16, u16)>,
}

/// Why a topology reply could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TopologyError {
    #[error("not a CLUSTER SHARDS / CLUSTER SLOTS reply: {0}")]
    Shape(&'static str),
    #[error("slot {0} out of range")]
    Slot(i64),
    #[error("{0}")]
    Refused(String),
}

/// The masters in a `CLUSTER SHARDS` reply (RESP2), each with its slots;
/// `asked` is the address the reply came from (a node whose endpoint is
/// unknown, `?` or empty, is the one that answered). `tls` picks the
/// nodes' `tls-port`.
pub fn parse_shards(reply: &[u8], asked: &str, tls: bool) -> Result<Vec<Shard>, TopologyError> {
    let mut shards = Vec::new();
    for shard in array(decoded(reply)?)? {
        let fields = pairs(shard)?;
        let slots = field(&fields, "slots").ok_or(TopologyError::Shape("a shard without slots"))?;
        let bounds = array(slots.clone())?.into_iter().map(integer).collect::<Result<Vec<_>, _>>()?;
        let ranges = bounds.chunks(2).map(range).collect::<Result<Vec<_>, _>>()?;
        let nodes = field(&fields, "nodes").ok_or(TopologyError::Shape("a shard without nodes"))?;
        for node in array(nodes.clone())? {
            let node = pairs(node)?;
            let role = field(&node, "role").and_then(text);
            let health = field(&node, "health").and_then(text);
            // A failed master stays listed (as a master, with the shard's
            // slots) next to the replica promoted in its place.
            let healthy = health.as_deref().is_none_or(|h| h == "online");
            if role.as_deref() != Some("master") || !healthy || ranges.is_empty() {
                continue;
            }
            let port_field = if tls && field(&node, "tls-port").is_some() { "tls-port" } else { "port" };
            let port = field(&node, port_field).cloned().map(integer).transpose()?;
            let host = field(&node, "endpoint").and_then(text).or_else(|| field(&node, "ip").and_then(text));
            let master = address(host.as_deref(), port, asked)?;
            shards.push(Shard { master, ranges: ranges.clone() });
        }
    }
    Ok(shards)
}

/// The masters in a `CLUSTER SLOTS` reply (RESP2), each with its slots.
pub fn parse_slots(reply: &[u8], asked: &str) -> Result<Vec<Shard>, TopologyError> {
    let mut shards: Vec<Shard> = Vec::new();
    for entry in array(decoded(reply)?)? {
        let mut items = array(entry)?.into_iter();
        let (Some(start), Some(end), Some(master)) = (items.next(), items.next(), items.next()) else {
            return Err(TopologyError::Shape("a slot range without its master"));
        };
        let range = range(&[integer(start)?, integer(end)?])?;
        let mut node = array(master)?.into_iter();
        let host = node.next().and_then(|h| text(&h));
        let port = node.next().map(integer).transpose()?;
        let master = address(host.as_deref(), port, asked)?;
        match shards.iter_mut().find(|s| s.master == master) {
            Some(shard) => shard.ranges.push(range),
            None => shards.push(Shard { master, ranges: vec![range] }),
        }
    }
    Ok(shards)
}

fn decoded(reply: &[u8]) -> Result<Frame, TopologyError> {
    match decode(reply) {
        Ok(Some((Frame::Error(e), _))) => Err(TopologyError::Refused(e)),
        Ok(Some((frame, _))) => Ok(frame),
        _ => Err(TopologyError::Shape("not one complete RESP2 frame")),
    }
}

fn array(frame: Frame) -> Result<Vec<Frame>, TopologyError> {
    match frame {
        Frame::Array(items) => Ok(items),
        _ => Err(TopologyError::Shape("an array expected")),
    }
}

/// A flat `[name, value, name, value…]` array.
fn pairs(frame: Frame) -> Result<Vec<(String, Frame)>, TopologyError> {
    let items = array(frame)?;
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut items = items.into_iter();
    while let (Some(name), Some(value)) = (items.next(), items.next()) {
        out.push((text(&name).ok_or(TopologyError::Shape("a field name expected"))?, value));
    }
    Ok(out)
}

fn field<'a>(fields: &'a [(String, Frame)], name: &str) -> Option<&'a Frame> {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v)
}

fn text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::BulkString(b) | Frame::SimpleString(b) => String::from_utf8(b.clone()).ok(),
        _ => None,
    }
}

fn integer(frame: Frame) -> Result<i64, TopologyError> {
    match frame {
        Frame::Integer(i) => Ok(i),
        _ => Err(TopologyError::Shape("an integer expected")),
    }
}

fn range(bounds: &[i64]) -> Result<(u16, u16), TopologyError> {
    let slot =
        |s: i64| u16::try_from(s).ok().filter(|&s| usize::from(s) < super::slot::SLOTS).ok_or(TopologyError::Slot(s));
    match bounds {
        [start, end] if start <= end => Ok((slot(*start)?, slot(*end)?)),
        _ => Err(TopologyError::Shape("a slot range expected")),
    }
}

/// `host:port`, the host taken from `asked` when the node's is unknown.
fn address(host: Option<&str>, port: Option<i64>, asked: &str) -> Result<String, TopologyError> {
    let port = port.filter(|p| (1..=65535).contains(p)).ok_or(TopologyError::Shape("a node without a port"))?;
    let host = match host {
        Some(h) if !h.is_empty() && h != "?" => h.to_string(),
        _ => asked.rsplit_once(':').map_or(asked, |(h, _)| h).to_string(),
    };
    Ok(if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> String {
        format!("${}\r\n{s}\r\n", s.len())
    }

    #[test]
    fn cluster_slots_groups_ranges_by_master() {
        let reply = format!(
            "*3\r\n*3\r\n:0\r\n:5460\r\n*3\r\n{}:7000\r\n{}\r\n*3\r\n:5461\r\n:10922\r\n*4\r\n{}:7001\r\n{}*2\r\n{}:7004\r\n*3\r\n:10923\r\n:16383\r\n*2\r\n{}:7000\r\n",
            bulk("127.0.0.1"),
            bulk("id0").trim_end(),
            bulk(""),
            bulk("id1"),
            bulk("127.0.0.1"),
            bulk("127.0.0.1"),
        );
        let shards = parse_slots(reply.as_bytes(), "10.0.0.9:7001").unwrap();
        assert_eq!(
            shards,
            vec![
                Shard { master: "127.0.0.1:7000".into(), ranges: vec![(0, 5460), (10923, 16383)] },
                Shard { master: "10.0.0.9:7001".into(), ranges: vec![(5461, 10922)] },
            ]
        );
    }

    #[test]
    fn cluster_shards_keeps_healthy_masters() {
        let node = |role: &str, port: i64, health: &str| {
            format!(
                "*12\r\n{}{}{}{}{}:{port}\r\n{}{}{}{}{}{}",
                bulk("id"),
                bulk("x"),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("port"),
                bulk("endpoint"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
                bulk("health"),
                bulk(health),
            )
        };
        let shard = |slots: &str, nodes: &[String]| {
            format!("*4\r\n{}{slots}{}*{}\r\n{}", bulk("slots"), bulk("nodes"), nodes.len(), nodes.concat())
        };
        let reply = format!(
            "*2\r\n{}{}",
            shard(
                "*4\r\n:0\r\n:99\r\n:200\r\n:299\r\n",
                &[node("master", 7000, "online"), node("replica", 7003, "online")]
            ),
            shard("*2\r\n:100\r\n:199\r\n", &[node("master", 7001, "failed"), node("master", 7002, "online")]),
        );
        let shards = parse_shards(reply.as_bytes(), "127.0.0.1:7000", false).unwrap();
        assert_eq!(
            shards,
            vec![
                Shard { master: "127.0.0.1:7000".into(), ranges: vec![(0, 99), (200, 299)] },
                Shard { master: "127.0.0.1:7002".into(), ranges: vec![(100, 199)] },
            ]
        );
    }

    #[test]
    fn errors_and_bad_slots_are_reported() {
        assert_eq!(
            parse_shards(b"-ERR unknown subcommand\r\n", "h:1", false),
            Err(TopologyError::Refused("ERR unknown subcommand".into()))
        );
        assert_eq!(
            parse_slots(b"*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n", "h:1"),
            Err(TopologyError::Slot(16384))
        );
    }
}
