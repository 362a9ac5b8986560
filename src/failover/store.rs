//! The local store: answers the commands the table gives a store handler
//! ([`StoreOp`]) from process memory while the upstream Redis is
//! unreachable.
//!
//! Clients must not be able to tell it from Redis 7.0, so every reply —
//! errors included — is byte-identical to Redis' for the same data, in RESP2
//! and RESP3. Keys expire lazily (an expired key behaves as absent and is
//! dropped when touched, or swept when memory runs out), collections emptied
//! by a write are deleted, and the store is bounded: a write that would take
//! it over its byte budget changes nothing and gets Redis' OOM error, while
//! reads and deletes always work.
//!
//! This file owns the key space, expiry, memory accounting and dispatch; the
//! commands live in one module per data type.

mod big;
mod data;
mod float;
mod grisu;
mod hashes;
mod keyspace;
mod lists;
mod num;
mod reply;
mod sets;
mod strings;
mod zsets;

use crate::commands::{self, Command, StoreOp};
use crate::protocol::{Args, Proto};
use bytes::Bytes;
use data::{Data, Kind, Map, ELEMENT_OVERHEAD, ENTRY_OVERHEAD};
use reply::Reply;

/// A whole value, used to seed the store from what the near-cache knows.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    String(Bytes),
    /// Fields and values; a repeated field keeps its last value.
    Hash(Vec<(Bytes, Bytes)>),
    List(Vec<Bytes>),
    /// Members; repeats are ignored.
    Set(Vec<Bytes>),
    /// Scores and members; NaN scores are skipped, a repeated member keeps
    /// its last score.
    ZSet(Vec<(f64, Bytes)>),
}

impl Value {
    /// The stored form, or `None` for an empty collection (Redis never
    /// holds one).
    fn into_data(self) -> Option<Data> {
        let data = match self {
            Value::String(s) => Data::Str(s),
            Value::Hash(pairs) => Data::Hash(pairs.into_iter().fold(data::Hash::default(), |mut h, (f, v)| {
                h.insert(f, v);
                h
            })),
            Value::List(items) => Data::List(items.into_iter().fold(data::List::default(), |mut l, item| {
                l.push(item, false);
                l
            })),
            Value::Set(members) => Data::Set(members.into_iter().fold(data::Set::default(), |mut s, m| {
                s.insert(m);
                s
            })),
            Value::ZSet(pairs) => Data::ZSet(pairs.into_iter().filter(|(s, _)| !s.is_nan()).fold(
                data::ZSet::default(),
                |mut z, (s, m)| {
                    z.insert(m, s);
                    z
                },
            )),
        };
        (!data.is_empty_collection()).then_some(data)
    }
}

/// One key's value and its expiry (absolute unix ms).
#[derive(Clone, Debug)]
struct Entry {
    data: Data,
    expires_at: Option<i64>,
}

impl Entry {
    /// Redis' rule: a key is expired once the clock is past its time.
    fn expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| now > at)
    }
}

/// Bytes charged for `key` holding `data`.
fn entry_size(key: &[u8], data: &Data) -> u64 {
    key.len() as u64 + ENTRY_OVERHEAD + data.bytes()
}

/// Most a write can add beyond its arguments' bytes and overheads: the
/// longest number INCRBYFLOAT can produce (`%.17Lf` of the largest long
/// double).
const RESULT_SLACK: u64 = 5200;

/// At most one sweep of expired keys per this many milliseconds.
const SWEEP_INTERVAL_MS: i64 = 1000;

/// The local store. Not thread-safe by itself; the caller serialises access.
#[derive(Debug)]
pub struct Store {
    entries: Map<Bytes, Entry>,
    used: u64,
    max: u64,
    /// How double replies are printed: as the upstream server does.
    doubles: Doubles,
    last_sweep: Option<i64>,
}

/// How a server prints doubles in replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doubles {
    /// `%.17g`: Redis before 7.2.
    Printf,
    /// Integers as such, else fpconv's Grisu2 digits: Redis 7.2 on, Valkey.
    Grisu,
}

impl Doubles {
    /// The format of the server a HELLO reply named.
    pub fn of(name: Option<&str>, version: Option<&str>) -> Doubles {
        if name == Some("valkey") {
            return Doubles::Grisu;
        }
        let mut parts = version.unwrap_or_default().split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        match (parts.next(), parts.next()) {
            (Some(major), Some(minor)) if (major, minor) >= (7, 2) => Doubles::Grisu,
            _ => Doubles::Printf,
        }
    }

    /// `x` as this server prints it (`inf` / `-inf` spelt out).
    fn format(self, x: f64) -> String {
        match self {
            _ if x.is_infinite() => if x > 0.0 { "inf" } else { "-inf" }.to_string(),
            Doubles::Printf => float::format_double(x),
            Doubles::Grisu => grisu::format(x),
        }
    }
}

/// One command being run: its arguments, the client's protocol and the time.
struct Ctx<'a> {
    args: Args<'a>,
    proto: Proto,
    doubles: Doubles,
    now: i64,
    /// The table's lower-case name, for error texts.
    name: &'a str,
}

impl<'a> Ctx<'a> {
    /// Argument `i` (empty past the end: arity is checked before).
    fn arg(&self, i: usize) -> &'a [u8] {
        self.args.get(i).unwrap_or_default()
    }

    fn argc(&self) -> usize {
        self.args.len()
    }

    /// The key (argument 1).
    fn key(&self) -> &'a [u8] {
        self.arg(1)
    }

    /// Argument `i` copied out of the request.
    fn owned(&self, i: usize) -> Bytes {
        Bytes::copy_from_slice(self.arg(i))
    }

    /// True when argument `i` is `word`, ignoring ASCII case.
    fn is(&self, i: usize, word: &str) -> bool {
        self.arg(i).eq_ignore_ascii_case(word.as_bytes())
    }

    /// Argument `i` as an integer, or Redis' "not an integer" error.
    fn int(&self, i: usize) -> Result<i64, Bytes> {
        num::parse_i64(self.arg(i)).ok_or_else(|| reply::error(reply::NOT_INTEGER))
    }
}

type Handler = fn(&mut Store, &Ctx) -> Reply;

/// The handler of `op`, and whether it may add bytes (a write that is not
/// a pure delete).
fn handler_of(op: StoreOp) -> (Handler, bool) {
    match op {
        StoreOp::Append => (strings::append, true),
        StoreOp::Decr => (strings::decr, true),
        StoreOp::DecrBy => (strings::decrby, true),
        StoreOp::Del => (keyspace::del, false),
        StoreOp::Echo => (keyspace::echo, false),
        StoreOp::Exists => (keyspace::exists, false),
        StoreOp::Expire => (keyspace::expire, false),
        StoreOp::ExpireAt => (keyspace::expireat, false),
        StoreOp::Get => (strings::get, false),
        StoreOp::GetDel => (strings::getdel, false),
        StoreOp::GetSet => (strings::getset, true),
        StoreOp::HDel => (hashes::hdel, false),
        StoreOp::HExists => (hashes::hexists, false),
        StoreOp::HGet => (hashes::hget, false),
        StoreOp::HGetAll => (hashes::hgetall, false),
        StoreOp::HIncrBy => (hashes::hincrby, true),
        StoreOp::HKeys => (hashes::hkeys, false),
        StoreOp::HLen => (hashes::hlen, false),
        StoreOp::HMGet => (hashes::hmget, false),
        StoreOp::HMSet => (hashes::hmset, true),
        StoreOp::HSet => (hashes::hset, true),
        StoreOp::HVals => (hashes::hvals, false),
        StoreOp::Incr => (strings::incr, true),
        StoreOp::IncrBy => (strings::incrby, true),
        StoreOp::IncrByFloat => (strings::incrbyfloat, true),
        StoreOp::LLen => (lists::llen, false),
        StoreOp::LPop => (lists::lpop, false),
        StoreOp::LPush => (lists::lpush, true),
        StoreOp::LRange => (lists::lrange, false),
        StoreOp::MGet => (strings::mget, false),
        StoreOp::MSet => (strings::mset, true),
        StoreOp::Persist => (keyspace::persist, false),
        StoreOp::PExpire => (keyspace::pexpire, false),
        StoreOp::PExpireAt => (keyspace::pexpireat, false),
        StoreOp::Ping => (keyspace::ping, false),
        StoreOp::PSetEx => (strings::psetex, true),
        StoreOp::PTtl => (keyspace::pttl, false),
        StoreOp::RPop => (lists::rpop, false),
        StoreOp::RPush => (lists::rpush, true),
        StoreOp::SAdd => (sets::sadd, true),
        StoreOp::SCard => (sets::scard, false),
        StoreOp::Set => (strings::set, true),
        StoreOp::SetEx => (strings::setex, true),
        StoreOp::SetNx => (strings::setnx, true),
        StoreOp::SIsMember => (sets::sismember, false),
        StoreOp::SMembers => (sets::smembers, false),
        StoreOp::SRem => (sets::srem, false),
        StoreOp::StrLen => (strings::strlen, false),
        StoreOp::Ttl => (keyspace::ttl, false),
        StoreOp::Type => (keyspace::type_of, false),
        StoreOp::Unlink => (keyspace::del, false),
        StoreOp::ZAdd => (zsets::zadd, true),
        StoreOp::ZCard => (zsets::zcard, false),
        StoreOp::ZIncrBy => (zsets::zincrby, true),
        StoreOp::ZRange => (zsets::zrange, false),
        StoreOp::ZRem => (zsets::zrem, false),
        StoreOp::ZScore => (zsets::zscore, false),
    }
}

/// A write was refused: it would have taken the store over its budget.
struct OutOfMemory;

/// The touched keys' entries before a write, to undo it.
type Snapshot = Vec<(Bytes, Option<Entry>)>;

impl Store {
    /// An empty store that holds at most about `max_bytes`.
    pub fn new(max_bytes: u64) -> Store {
        Store { entries: Map::default(), used: 0, max: max_bytes, doubles: Doubles::Printf, last_sweep: None }
    }

    /// Prints doubles as the server named by `name` and `version` does
    /// (Redis' format until the upstream has answered once).
    pub fn print_doubles_like(&mut self, name: Option<&str>, version: Option<&str>) {
        self.doubles = Doubles::of(name, version);
    }

    /// Runs one command. `cmd` is the request's command table entry and
    /// `args` the whole request (`args.get(0)` is the command name as the
    /// client spelled it). `now_ms` is unix time in milliseconds. Returns the
    /// encoded RESP reply for `proto`, or `None` when the store does not
    /// serve `cmd` (it has no [`StoreOp`]).
    pub fn execute(&mut self, cmd: &Command, args: &Args, proto: Proto, now_ms: i64) -> Option<Bytes> {
        let op = cmd.store?;
        if !cmd.arity_ok(args.len()) {
            return Some(reply::arity_error(cmd.name));
        }
        let mut positions = Vec::new();
        if commands::key_indices(cmd, args, &mut positions).is_err() {
            return Some(reply::error(reply::SYNTAX));
        }
        let mut keys: Vec<&[u8]> = positions.iter().filter_map(|&i| args.get(i)).collect();
        keys.sort_unstable();
        keys.dedup();
        let ctx = Ctx { args: *args, proto, doubles: self.doubles, now: now_ms, name: cmd.name };
        let reply = match self.run(op, &ctx, &keys) {
            Err(OutOfMemory) if self.sweep_expired(now_ms) => self.run(op, &ctx, &keys),
            done => done,
        };
        Some(reply.unwrap_or_else(|OutOfMemory| reply::error(reply::OOM)))
    }

    /// True when `key` holds a live (unexpired) value.
    pub fn contains(&self, key: &[u8], now_ms: i64) -> bool {
        self.entries.get(key).is_some_and(|e| !e.expired(now_ms))
    }

    /// Inserts `value` for `key` unless the key is already present (and
    /// live); `expires_at_ms` is an absolute unix time in ms. Skipped when
    /// it would take the store over its budget, when the value is an empty
    /// collection or when it has already expired.
    pub fn seed(&mut self, key: Bytes, value: Value, expires_at_ms: Option<i64>, now_ms: i64) {
        if self.contains(&key, now_ms) || expires_at_ms.is_some_and(|at| now_ms > at) {
            return;
        }
        let Some(data) = value.into_data() else { return };
        let stale = self.entries.get(&key).map_or(0, |e| entry_size(&key, &e.data));
        let size = entry_size(&key, &data);
        let used = self.used.saturating_sub(stale) + size;
        if used > self.max {
            return;
        }
        self.used = used;
        self.entries.insert(key, Entry { data, expires_at: expires_at_ms });
    }

    /// Drops `key` (outside any command: see `forget`).
    pub fn evict(&mut self, key: &[u8]) {
        if let Some(entry) = self.entries.remove(key) {
            self.used = self.used.saturating_sub(entry_size(key, &entry.data));
        }
    }

    /// Drops the keys `gone` says.
    pub fn forget(&mut self, mut gone: impl FnMut(&[u8]) -> bool) {
        let mut freed = 0;
        self.entries.retain(|key, entry| {
            let drop = gone(key);
            if drop {
                freed += entry_size(key, &entry.data);
            }
            !drop
        });
        self.used = self.used.saturating_sub(freed);
    }

    /// Drops everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.used = 0;
    }

    /// Number of keys (expired keys not yet dropped included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Approximate bytes used: keys, values and a fixed overhead per key and
    /// per collection element.
    pub fn bytes(&self) -> u64 {
        self.used
    }

    /// Runs `op` with the accounting of the keys it touches; undoes it and
    /// reports `OutOfMemory` if it took the store over budget.
    fn run(&mut self, op: StoreOp, ctx: &Ctx, keys: &[&[u8]]) -> Result<Bytes, OutOfMemory> {
        let (handler, grows) = handler_of(op);
        let used_before = self.used;
        let before = self.size_of(keys);
        let snapshot = (grows && self.may_exceed(ctx, keys.len())).then(|| self.snapshot(keys));
        let reply = handler(self, ctx).unwrap_or_else(|error| error);
        for key in keys {
            if self.entries.get(*key).is_some_and(|e| e.data.is_empty_collection()) {
                self.entries.remove(*key);
            }
        }
        self.used = self.used.saturating_sub(before) + self.size_of(keys);
        match snapshot {
            Some(snapshot) if self.used > self.max && self.used > used_before => {
                self.restore(snapshot);
                self.used = used_before;
                Err(OutOfMemory)
            }
            _ => Ok(reply),
        }
    }

    /// True when the command's arguments could take the store over budget:
    /// no write adds more than its arguments, their overheads and a result
    /// of at most [`RESULT_SLACK`] bytes.
    fn may_exceed(&self, ctx: &Ctx, keys: usize) -> bool {
        let args: u64 = ctx.args.iter().skip(1).map(|a| a.len() as u64 + ELEMENT_OVERHEAD).sum();
        self.used + args + keys as u64 * ENTRY_OVERHEAD + RESULT_SLACK > self.max
    }

    fn size_of(&self, keys: &[&[u8]]) -> u64 {
        keys.iter().filter_map(|k| self.entries.get(*k).map(|e| entry_size(k, &e.data))).sum()
    }

    fn snapshot(&self, keys: &[&[u8]]) -> Snapshot {
        keys.iter().map(|k| (Bytes::copy_from_slice(k), self.entries.get(*k).cloned())).collect()
    }

    fn restore(&mut self, snapshot: Snapshot) {
        for (key, entry) in snapshot {
            match entry {
                Some(entry) => self.entries.insert(key, entry),
                None => self.entries.remove(&key),
            };
        }
    }

    /// Drops every expired key, at most once per [`SWEEP_INTERVAL_MS`];
    /// true when that freed anything.
    fn sweep_expired(&mut self, now: i64) -> bool {
        if self.last_sweep.is_some_and(|at| now.saturating_sub(at) < SWEEP_INTERVAL_MS) {
            return false;
        }
        self.last_sweep = Some(now);
        let before = self.used;
        let mut freed = 0;
        self.entries.retain(|key, entry| {
            let keep = !entry.expired(now);
            if !keep {
                freed += entry_size(key, &entry.data);
            }
            keep
        });
        self.used = before.saturating_sub(freed);
        freed > 0
    }

    // Key access for the commands. Sizes are not tracked here: `run`
    // recomputes the touched keys' sizes after each command.

    /// The live entry at `key`; an expired one is dropped first.
    fn live(&mut self, key: &[u8], now: i64) -> Option<&mut Entry> {
        if self.entries.get(key).is_some_and(|e| e.expired(now)) {
            self.entries.remove(key);
        }
        self.entries.get_mut(key)
    }

    /// The live value at `key` as kind `T`: `Ok(None)` when absent, the
    /// WRONGTYPE error when it is another kind.
    fn get<T: Kind>(&mut self, key: &[u8], now: i64) -> Result<Option<&mut T>, Bytes> {
        match self.live(key, now) {
            None => Ok(None),
            Some(entry) => T::of(&mut entry.data).map(Some).ok_or_else(|| reply::error(reply::WRONG_TYPE)),
        }
    }

    /// HDEL, SREM, ZREM: removes every argument from the third on from
    /// the collection at the key; replies how many were there.
    fn remove_each<T: Kind>(&mut self, c: &Ctx, remove: impl Fn(&mut T, &[u8]) -> bool) -> Reply {
        let Some(items) = self.get::<T>(c.key(), c.now)? else { return Ok(reply::int(0)) };
        let removed = (2..c.argc()).filter(|&i| remove(items, c.arg(i))).count();
        Ok(reply::int(removed as i64))
    }

    /// Like [`Store::get`], creating an empty `T` (no expiry) when absent.
    fn get_or_create<T: Kind>(&mut self, key: &[u8], now: i64) -> Result<&mut T, Bytes> {
        if self.live(key, now).is_none() {
            self.put(key, T::default().wrap(), None);
        }
        match self.entries.get_mut(key) {
            Some(entry) => T::of(&mut entry.data).ok_or_else(|| reply::error(reply::WRONG_TYPE)),
            None => Err(reply::error(reply::WRONG_TYPE)),
        }
    }

    /// Sets `key` to `data`, replacing whatever was there.
    fn put(&mut self, key: &[u8], data: Data, expires_at: Option<i64>) {
        self.entries.insert(Bytes::copy_from_slice(key), Entry { data, expires_at });
    }

    /// Deletes `key`; true when it held a live value.
    fn remove(&mut self, key: &[u8], now: i64) -> bool {
        self.entries.remove(key).is_some_and(|e| !e.expired(now))
    }
}

/// The valid indices `start..=end` of a sequence of `len` elements given
/// Redis-style indices (negative count from the end), or `None` when empty.
fn index_range(start: i64, end: i64, len: usize) -> Option<(usize, usize)> {
    let len = len as i64;
    let start = if start < 0 { start + len } else { start }.max(0);
    let end = if end < 0 { end + len } else { end };
    if start > end || start >= len {
        return None;
    }
    Some((start as usize, end.min(len - 1) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;

    fn run(store: &mut Store, parts: &[&str], now: i64) -> String {
        run_proto(store, parts, now, Proto::Resp2)
    }

    fn run_proto(store: &mut Store, parts: &[&str], now: i64, proto: Proto) -> String {
        let (buf, ranges) = crate::protocol::laid_out(parts);
        let (_, cmd) = commands::lookup(parts[0].as_bytes()).expect("known");
        let reply = store.execute(cmd, &Args::new(&buf, &ranges), proto, now).expect("served");
        String::from_utf8_lossy(&reply).into_owned()
    }

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn each_command_with_a_store_op_has_the_one_named_after_it() {
        for cmd in commands::all() {
            if let Some(op) = cmd.store {
                assert_eq!(format!("{op:?}").to_ascii_lowercase(), cmd.name);
            }
            assert!(cmd.subcommands.iter().all(|sub| sub.store.is_none()), "{}", cmd.name);
        }
        let (buf, ranges) = crate::protocol::laid_out(&["SCAN", "0"]);
        let (_, scan) = commands::lookup(b"scan").expect("known");
        assert_eq!(Store::new(1000).execute(scan, &Args::new(&buf, &ranges), Proto::Resp2, NOW), None);
    }

    #[test]
    fn keys_expire_lazily_with_the_given_clock() {
        let mut s = Store::new(1 << 20);
        assert_eq!(run(&mut s, &["SET", "k", "v", "PX", "100"], NOW), "+OK\r\n");
        assert_eq!(run(&mut s, &["PTTL", "k"], NOW + 40), ":60\r\n");
        assert_eq!(run(&mut s, &["GET", "k"], NOW + 100), "$1\r\nv\r\n", "alive at its expiry time");
        assert!(s.contains(b"k", NOW + 100));
        assert!(!s.contains(b"k", NOW + 101));
        assert_eq!(s.len(), 1, "only dropped when touched");
        assert_eq!(run(&mut s, &["GET", "k"], NOW + 101), "$-1\r\n");
        assert_eq!((s.len(), s.bytes()), (0, 0));
        assert_eq!(run(&mut s, &["SET", "k", "v"], NOW), "+OK\r\n");
        assert_eq!(run(&mut s, &["EXPIREAT", "k", "1"], NOW), ":1\r\n");
        assert_eq!((s.len(), run(&mut s, &["TTL", "k"], NOW)), (0, ":-2\r\n".into()));
    }

    #[test]
    fn a_write_over_budget_is_refused_and_changes_nothing() {
        let mut s = Store::new(300);
        assert_eq!(run(&mut s, &["RPUSH", "l", "a", "b"], NOW), ":2\r\n");
        let used = s.bytes();
        assert_eq!(used, 1 + ENTRY_OVERHEAD + 2 * (1 + ELEMENT_OVERHEAD));
        let big = "x".repeat(300);
        let oom = "-OOM command not allowed when used memory > 'maxmemory'.\r\n";
        assert_eq!(run(&mut s, &["RPUSH", "l", "c", &big], NOW), oom);
        assert_eq!(run(&mut s, &["LRANGE", "l", "0", "-1"], NOW), "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        assert_eq!(s.bytes(), used);
        assert_eq!(run(&mut s, &["SET", "k", &big], NOW), oom);
        assert_eq!(run(&mut s, &["EXISTS", "k"], NOW), ":0\r\n");
        // A small write near the limit still fits exactly.
        assert_eq!(run(&mut s, &["SET", "k", "v"], NOW), "+OK\r\n");
        assert_eq!(run(&mut s, &["DEL", "l", "k"], NOW), ":2\r\n");
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn expired_keys_are_swept_when_memory_runs_out() {
        let mut s = Store::new(400);
        let value = "x".repeat(200);
        assert_eq!(run(&mut s, &["SET", "old", &value, "PX", "10"], NOW), "+OK\r\n");
        assert_eq!(run(&mut s, &["SET", "new", &value], NOW + 20), "+OK\r\n");
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), 3 + ENTRY_OVERHEAD + 200);
    }

    #[test]
    fn seeding_never_overwrites_and_respects_the_budget() {
        let mut s = Store::new(200);
        s.seed(b("k"), Value::String(b("first")), None, NOW);
        s.seed(b("k"), Value::String(b("second")), None, NOW);
        assert_eq!(run(&mut s, &["GET", "k"], NOW), "$5\r\nfirst\r\n");
        s.seed(b("big"), Value::String(Bytes::from(vec![b'x'; 200])), None, NOW);
        assert!(!s.contains(b"big", NOW));
        s.seed(b("gone"), Value::String(b("v")), Some(NOW - 1), NOW);
        s.seed(b("empty"), Value::Set(vec![]), None, NOW);
        assert_eq!(s.len(), 1);
        s.seed(b("t"), Value::String(b("v")), Some(NOW + 5_000), NOW);
        assert_eq!(run(&mut s, &["TTL", "t"], NOW), ":5\r\n");
        // An expired key may be replaced by a seed.
        s.seed(b("t"), Value::ZSet(vec![(2.0, b("b")), (f64::NAN, b("n")), (1.0, b("a"))]), None, NOW + 6_000);
        assert_eq!(run(&mut s, &["ZRANGE", "t", "0", "-1"], NOW + 6_000), "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        s.clear();
        assert!(s.is_empty() && s.bytes() == 0);
    }

    #[test]
    fn collections_emptied_by_a_write_are_deleted() {
        let mut s = Store::new(1 << 20);
        run(&mut s, &["HSET", "h", "f", "v"], NOW);
        assert_eq!(run(&mut s, &["HDEL", "h", "f"], NOW), ":1\r\n");
        assert_eq!(run(&mut s, &["TYPE", "h"], NOW), "+none\r\n");
        run(&mut s, &["RPUSH", "l", "a", "b"], NOW);
        assert_eq!(run(&mut s, &["LPOP", "l", "5"], NOW), "*2\r\n$1\r\na\r\n$1\r\nb\r\n");
        assert_eq!(run(&mut s, &["EXISTS", "l"], NOW), ":0\r\n");
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn hostile_arguments_get_errors_not_panics() {
        let mut s = Store::new(1 << 20);
        run(&mut s, &["RPUSH", "l", "a"], NOW);
        assert_eq!(
            run(&mut s, &["LRANGE", "l", "-9223372036854775808", "9223372036854775807"], NOW),
            "*1\r\n$1\r\na\r\n"
        );
        assert_eq!(run(&mut s, &["LPOP", "l", "9223372036854775807"], NOW), "*1\r\n$1\r\na\r\n");
        assert_eq!(
            run(&mut s, &["EXPIRE", "k", "9223372036854775807"], NOW),
            "-ERR invalid expire time in 'expire' command\r\n"
        );
        assert_eq!(
            run(&mut s, &["SET", "k", "v", "EX", "9223372036854775"], NOW),
            "-ERR invalid expire time in 'set' command\r\n"
        );
        assert_eq!(run(&mut s, &["GET"], NOW), "-ERR wrong number of arguments for 'get' command\r\n");
        assert_eq!(run(&mut s, &["INCRBYFLOAT", "f", "1e4000"], NOW).len(), 4001 + 8);
        assert_eq!(run_proto(&mut s, &["ZADD", "z", "INCR", "1", "m"], NOW, Proto::Resp3), ",1\r\n");
    }

    #[test]
    fn index_ranges_follow_redis() {
        assert_eq!(index_range(0, -1, 3), Some((0, 2)));
        assert_eq!(index_range(-100, 100, 3), Some((0, 2)));
        assert_eq!(index_range(2, 1, 3), None);
        assert_eq!(index_range(3, 5, 3), None);
        assert_eq!(index_range(i64::MIN, i64::MAX, 0), None);
    }
}
