//! Seeding the local store from the near-cache: when failover touches a key
//! the store does not hold, a cached reply that shows the key's whole value
//! (`GET`, `HGETALL`, `SMEMBERS`, `LRANGE 0 -1`, `ZRANGE 0 -1 WITHSCORES`,
//! in either protocol) becomes the store's starting value, so `INCR` on a
//! cached counter or `HSET` on a cached hash starts from what Redis had.

use super::store::{Store, Value};
use crate::cache::{shape, NearCache};
use crate::commands::{self, Flags, StoreOp};
use crate::protocol::Proto;
use bytes::Bytes;
use redis_protocol::resp2::types::OwnedFrame as Frame2;
use redis_protocol::resp3::types::OwnedFrame as Frame3;
use redis_protocol::{resp2, resp3};
use std::sync::OnceLock;
use std::time::Instant;

/// The kind of value a whole-value read shows (in the order seeding tries
/// them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Whole {
    String,
    Hash,
    Set,
    List,
    ZSet,
}

/// What a read the store serves with `op` shows of its key: the whole
/// value of this kind when called with these arguments after the key
/// (`LRANGE key 0 -1`); `None`: only part of it, or none.
fn whole(op: StoreOp) -> Option<(Whole, &'static [&'static [u8]])> {
    match op {
        StoreOp::Get => Some((Whole::String, &[])),
        StoreOp::HGetAll => Some((Whole::Hash, &[])),
        StoreOp::SMembers => Some((Whole::Set, &[])),
        StoreOp::LRange => Some((Whole::List, &[b"0", b"-1"])),
        StoreOp::ZRange => Some((Whole::ZSet, &[b"0", b"-1", b"withscores"])),
        _ => None,
    }
}

/// A whole-value read: what it shows, and the parts of its cache shape
/// (the table's name, then the arguments).
type WholeRead = (Whole, Vec<&'static [u8]>);

/// The reads whose replies hold a key's whole value: the cacheable
/// commands of the table whose store handler [`whole`] names.
fn whole_reads() -> &'static [WholeRead] {
    static READS: OnceLock<Vec<WholeRead>> = OnceLock::new();
    READS.get_or_init(|| {
        let mut reads: Vec<_> = commands::all()
            .iter()
            .filter(|cmd| cmd.flags.contains(Flags::CACHEABLE))
            .filter_map(|cmd| {
                let (whole, args) = whole(cmd.store?)?;
                Some((whole, std::iter::once(cmd.name.as_bytes()).chain(args.iter().copied()).collect()))
            })
            .collect();
        reads.sort_by_key(|(whole, _)| *whole as u8);
        reads
    })
}

/// Seeds `key` into `store` from the cache, if the store lacks it and a
/// whole-value reply is cached. `now_ms` is unix time in milliseconds.
pub fn from_cache(cache: &NearCache, store: &mut Store, key: &[u8], now_ms: i64, shape_buf: &mut Vec<u8>) {
    if store.contains(key, now_ms) {
        return;
    }
    for proto in [Proto::Resp2, Proto::Resp3] {
        for (whole, parts) in whole_reads() {
            shape::of_parts(shape_buf, proto, parts);
            let Some((reply, expiry)) = cache.stale(key, shape_buf) else {
                continue;
            };
            if let Some(value) = decode(*whole, proto, &reply) {
                let expires_at_ms =
                    expiry.map(|at| now_ms + at.saturating_duration_since(Instant::now()).as_millis() as i64);
                store.seed(Bytes::copy_from_slice(key), value, expires_at_ms, now_ms);
                return;
            }
        }
    }
}

/// The value a whole-value reply shows; `None` for nulls, errors and empty
/// collections (the key does not exist).
fn decode(whole: Whole, proto: Proto, reply: &[u8]) -> Option<Value> {
    let items = match proto {
        Proto::Resp2 => resp2_items(resp2::decode::decode(reply).ok()??.0)?,
        Proto::Resp3 => resp3_items(resp3::decode::complete::decode(reply).ok()??.0)?,
    };
    let value = match whole {
        Whole::String => Value::String(items.into_iter().next()?.into_bytes()?),
        Whole::List => Value::List(items.into_iter().map(Item::into_bytes).collect::<Option<_>>()?),
        Whole::Set => Value::Set(items.into_iter().map(Item::into_bytes).collect::<Option<_>>()?),
        Whole::Hash => Value::Hash(pairs(items)?),
        Whole::ZSet => Value::ZSet(scored(items)?),
    };
    let empty = match &value {
        Value::String(_) => false,
        Value::Hash(v) => v.is_empty(),
        Value::List(v) | Value::Set(v) => v.is_empty(),
        Value::ZSet(v) => v.is_empty(),
    };
    (!empty).then_some(value)
}

/// A reply's elements, flattened one level (a RESP3 map becomes key, value,
/// …; a `[member, score]` pair stays a pair).
enum Item {
    Bytes(Bytes),
    Double(f64),
    Pair(Box<Item>, Box<Item>),
}

impl Item {
    fn into_bytes(self) -> Option<Bytes> {
        match self {
            Item::Bytes(b) => Some(b),
            _ => None,
        }
    }

    fn score(self) -> Option<f64> {
        match self {
            Item::Double(d) => Some(d),
            Item::Bytes(b) => std::str::from_utf8(&b).ok()?.parse().ok(),
            Item::Pair(..) => None,
        }
    }
}

fn pairs(items: Vec<Item>) -> Option<Vec<(Bytes, Bytes)>> {
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let Some(k) = it.next() {
        out.push((k.into_bytes()?, it.next()?.into_bytes()?));
    }
    Some(out)
}

fn scored(items: Vec<Item>) -> Option<Vec<(f64, Bytes)>> {
    let mut it = items.into_iter();
    let mut out = Vec::new();
    while let Some(item) = it.next() {
        let (member, score) = match item {
            Item::Pair(m, s) => (*m, *s),
            member => (member, it.next()?),
        };
        out.push((score.score()?, member.into_bytes()?));
    }
    Some(out)
}

fn resp2_items(frame: Frame2) -> Option<Vec<Item>> {
    match frame {
        Frame2::BulkString(b) => Some(vec![Item::Bytes(b.into())]),
        Frame2::Array(items) => items.into_iter().map(resp2_item).collect(),
        _ => None,
    }
}

fn resp2_item(frame: Frame2) -> Option<Item> {
    match frame {
        Frame2::BulkString(b) => Some(Item::Bytes(b.into())),
        _ => None,
    }
}

fn resp3_items(frame: Frame3) -> Option<Vec<Item>> {
    match frame {
        Frame3::BlobString { data, .. } => Some(vec![Item::Bytes(data.into())]),
        Frame3::Array { data, .. } => data.into_iter().map(resp3_item).collect(),
        Frame3::Set { data, .. } => data.into_iter().map(resp3_item).collect(),
        Frame3::Map { data, .. } => {
            let mut out = Vec::with_capacity(data.len() * 2);
            for (k, v) in data {
                out.push(resp3_item(k)?);
                out.push(resp3_item(v)?);
            }
            Some(out)
        }
        _ => None,
    }
}

fn resp3_item(frame: Frame3) -> Option<Item> {
    match frame {
        Frame3::BlobString { data, .. } => Some(Item::Bytes(data.into())),
        Frame3::Double { data, .. } => Some(Item::Double(data)),
        Frame3::Array { data, .. } if data.len() == 2 => {
            let mut it = data.into_iter();
            let (m, s) = (resp3_item(it.next()?)?, resp3_item(it.next()?)?);
            Some(Item::Pair(Box::new(m), Box::new(s)))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<Bytes> {
        v.iter().map(|s| Bytes::copy_from_slice(s.as_bytes())).collect()
    }

    #[test]
    fn whole_values_in_both_protocols() {
        let Some(Value::String(s)) = decode(Whole::String, Proto::Resp2, b"$2\r\n41\r\n") else { panic!("string") };
        assert_eq!(&s[..], b"41");
        assert!(decode(Whole::String, Proto::Resp2, b"$-1\r\n").is_none());
        assert!(decode(Whole::String, Proto::Resp3, b"_\r\n").is_none());
        let Some(Value::Hash(h)) = decode(Whole::Hash, Proto::Resp3, b"%1\r\n$1\r\nf\r\n$1\r\nv\r\n") else {
            panic!("hash")
        };
        assert_eq!(h, vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))]);
        let Some(Value::Set(mut s)) = decode(Whole::Set, Proto::Resp3, b"~2\r\n$1\r\na\r\n$1\r\nb\r\n") else {
            panic!("set")
        };
        // The decoder gives a RESP3 set in no particular order.
        s.sort();
        assert_eq!(s, strings(&["a", "b"]));
        let Some(Value::List(l)) = decode(Whole::List, Proto::Resp2, b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n") else {
            panic!("list")
        };
        assert_eq!(l, strings(&["x", "y"]));
        assert!(decode(Whole::List, Proto::Resp2, b"*0\r\n").is_none());
    }

    #[test]
    fn whole_value_reads_come_from_the_table() {
        let expected: Vec<WholeRead> = vec![
            (Whole::String, vec![b"get"]),
            (Whole::Hash, vec![b"hgetall"]),
            (Whole::Set, vec![b"smembers"]),
            (Whole::List, vec![b"lrange", b"0", b"-1"]),
            (Whole::ZSet, vec![b"zrange", b"0", b"-1", b"withscores"]),
        ];
        assert_eq!(whole_reads(), expected);
    }

    #[test]
    fn sorted_set_scores_in_both_protocols() {
        let flat = b"*4\r\n$1\r\na\r\n$3\r\n1.5\r\n$1\r\nb\r\n$3\r\ninf\r\n";
        let Some(Value::ZSet(z)) = decode(Whole::ZSet, Proto::Resp2, flat) else { panic!("zset") };
        assert_eq!(z, vec![(1.5, Bytes::from_static(b"a")), (f64::INFINITY, Bytes::from_static(b"b"))]);
        let nested = b"*1\r\n*2\r\n$1\r\na\r\n,2\r\n";
        let Some(Value::ZSet(z)) = decode(Whole::ZSet, Proto::Resp3, nested) else { panic!("zset") };
        assert_eq!(z, vec![(2.0, Bytes::from_static(b"a"))]);
    }
}
