//! One request made several for a Redis Cluster's masters, and their
//! replies made one: the fragments of Envoy's splitter. A multi-key command
//! whose keys span slots is split by slot (`MGET`, `MSET`, `DEL`, `EXISTS`,
//! `UNLINK`, `TOUCH`: the table's `Spread::Keys`); a command acting on the
//! whole keyspace goes to every master (`DBSIZE`, `KEYS`, `FLUSHALL`,
//! `SCRIPT LOAD`…: `Spread::AllMasters`); `SCAN` walks the masters one
//! after the other behind a cursor of the proxy's (`Spread::Cursor`). The
//! parts go out in parallel,
//! each on its node's pool with its redirections followed (`follow`), or
//! on a connection of its own for what must get past a busy master
//! (`SCRIPT KILL`, see [`out_of_band`]), and their replies are merged as
//! the table's [`Merge`] says; the first error among them is the client's
//! reply (but for [`Merge::Killed`], where idle masters answer
//! `-NOTBUSY`).

use super::answer;
use super::follow;
use super::reply::ReplyMap;
use crate::cache::read::{self, CacheRead, Fill};
use crate::cache::{NearCache, Scratch};
use crate::commands::{key_indices, Command, Merge};
use crate::protocol::scan::Frames;
use crate::protocol::{encode, Args, Proto};
use crate::router::cluster::Cluster;
use crate::router::{slot, NodeId};
use crate::server::{Pools, Shared};
use crate::upstream::out_of_band;
use crate::upstream::pool::JobResult;
use crate::upstream::UpstreamError;
use bytes::{Bytes, BytesMut};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::oneshot;

/// Bits of the proxy's `SCAN` cursor naming the node (a [`NodeId`]); the
/// node's own cursor is above them. Node ids stay below
/// [`crate::router::cluster::MAX_NODES`].
const CURSOR_NODE_BITS: u32 = 10;

/// How the parts' replies make the client's.
#[derive(Clone, Copy)]
enum Combine {
    /// As the command table says.
    Table(Merge),
    /// `SCAN` on `node`, `next` the master after it: the node's cursor
    /// becomes the proxy's.
    Scan { node: NodeId, next: Option<NodeId> },
}

/// A request spread over several masters.
pub struct Fan {
    parts: Vec<Part>,
    merge: Combine,
    /// Keys of the whole request ([`Merge::Values`]).
    keys: usize,
    /// Applied to the merged reply (a tenant's key names).
    map: Option<ReplyMap>,
    /// How the parts get to their masters.
    via: Via,
}

/// How a fan's parts get to their masters.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Via {
    /// Each on its node's pool, redirections followed.
    Pool,
    /// Each on a connection of its own, past what its master is busy with
    /// (one reply, within the request timeout).
    OwnConnection,
    /// Each on a connection of its own, waited for as long as it takes;
    /// `replies` frames, the last one the part's reply (`WAIT`).
    Awaited { replies: usize },
}

/// One master's share of a request.
struct Part {
    node: NodeId,
    /// The slot of its keys (`None`: it acts on its master's whole
    /// keyspace).
    slot: Option<u16>,
    request: Bytes,
    /// Where each of its keys' values goes in the merged reply.
    positions: Vec<usize>,
    /// How the near-cache takes part (an `MGET`'s share).
    cached: Cached,
}

/// What the near-cache makes of a part.
enum Cached {
    /// Nothing: sent as it is, one reply.
    No,
    /// Answered by the near-cache: not sent.
    Hit(Bytes),
    /// Its misses sent (the request replaced by what the cache fetches:
    /// `replies` frames), the cache filled with the replies.
    Fetch { replies: usize, fill: Fill },
}

impl Fan {
    /// `cmd`'s request `args` split by slot: one part per slot, with that
    /// slot's keys and what follows each up to the next key (`MSET`'s
    /// values), in the request's order. `None` when its keys cannot be
    /// located.
    pub fn split(cluster: &Cluster, cmd: &Command, args: &Args, merge: Merge) -> Option<Fan> {
        let mut at = Vec::new();
        key_indices(cmd, args, &mut at).ok()?;
        Fan::split_at(cluster, args, &at, merge)
    }

    /// `PUBSUB SHARDNUMSUB channel…` (`args`) split by the channels' slots
    /// (a master answers only for its own), each channel's name and count
    /// put back in the request's order ([`Merge::Pairs`]).
    pub fn split_channels(cluster: &Cluster, args: &Args, merge: Merge) -> Option<Fan> {
        let at: Vec<usize> = (2..args.len()).collect();
        Fan::split_at(cluster, args, &at, merge)
    }

    /// `args` split by the slots of the words at `at` (keys, or channels):
    /// each part is what comes before the first of them, then its slot's
    /// words and what follows each up to the next.
    fn split_at(cluster: &Cluster, args: &Args, at: &[usize], merge: Merge) -> Option<Fan> {
        let head: Vec<&[u8]> = (0..at.first().copied().unwrap_or(args.len())).filter_map(|i| args.get(i)).collect();
        let mut by_slot: BTreeMap<u16, (Vec<&[u8]>, Vec<usize>)> = BTreeMap::new();
        for (n, &position) in at.iter().enumerate() {
            let end = at.get(n + 1).copied().unwrap_or(args.len());
            let slot = slot::of(args.get(position)?);
            let (words, positions) = by_slot.entry(slot).or_default();
            words.extend((position..end).filter_map(|i| args.get(i)));
            positions.push(n);
        }
        let parts = by_slot
            .into_iter()
            .map(|(slot, (words, positions))| {
                let mut request = BytesMut::new();
                encode::command(&mut request, head.iter().copied().chain(words).collect::<Vec<_>>().into_iter());
                Part {
                    node: cluster.slot_node(slot),
                    slot: Some(slot),
                    request: request.freeze(),
                    positions,
                    cached: Cached::No,
                }
            })
            .collect();
        Some(Fan { parts, merge: Combine::Table(merge), keys: at.len(), map: None, via: Via::Pool })
    }

    /// `request` sent to every master serving slots.
    pub fn all_masters(cluster: &Cluster, request: &[u8], merge: Merge) -> Fan {
        let request = Bytes::copy_from_slice(request);
        let parts = cluster
            .masters()
            .into_iter()
            .map(|node| Part { node, slot: None, request: request.clone(), positions: Vec::new(), cached: Cached::No })
            .collect();
        Fan { parts, merge: Combine::Table(merge), keys: 0, map: None, via: Via::Pool }
    }

    /// `SCAN cursor …` (`args`) as the step of the proxy's cursor: the
    /// master it names (the first one for 0) is asked with its own cursor;
    /// when that master is done, the cursor moves on to the next master.
    /// `Err`: Redis' reply to a cursor that is not one.
    pub fn scan(cluster: &Cluster, args: &Args) -> Result<Fan, Bytes> {
        let invalid = || encode::error("ERR invalid cursor");
        let cursor: u64 = std::str::from_utf8(args.get(1).unwrap_or_default())
            .ok()
            .and_then(|c| c.parse().ok())
            .ok_or_else(invalid)?;
        let masters = cluster.masters();
        let (node, at) = match cursor {
            0 => (*masters.first().ok_or_else(invalid)?, 0),
            c => ((c & ((1 << CURSOR_NODE_BITS) - 1)) as NodeId, c >> CURSOR_NODE_BITS),
        };
        if cluster.nodes().nth(node).is_none() {
            return Err(invalid());
        }
        let at = at.to_string();
        let words: Vec<&[u8]> =
            args.iter().enumerate().map(|(i, word)| if i == 1 { at.as_bytes() } else { word }).collect();
        let mut request = BytesMut::new();
        encode::command(&mut request, words.into_iter());
        let next = masters.into_iter().find(|&m| m > node);
        let part = Part { node, slot: None, request: request.freeze(), positions: Vec::new(), cached: Cached::No };
        Ok(Fan { parts: vec![part], merge: Combine::Scan { node, next }, keys: 0, map: None, via: Via::Pool })
    }

    /// Each part goes on a connection of its own, past what its master is
    /// busy with.
    pub fn out_of_band(mut self) -> Fan {
        self.via = Via::OwnConnection;
        self
    }

    /// `WAIT` (`request`) asked of each master in `written` (the first
    /// master when none), each behind a write of its own on the same
    /// connection (`write_mark`): Redis' `WAIT` counts the replicas that
    /// acknowledged the connection's last write, which, sent after the
    /// client's writes were answered, covers them. A master none of whose
    /// slots can be named is left out.
    pub fn after_writes(cluster: &Cluster, written: &[NodeId], request: &[u8], merge: Merge) -> Fan {
        let first = cluster.masters().into_iter().take(1).collect::<Vec<_>>();
        let nodes = if written.is_empty() { &first[..] } else { written };
        let parts = nodes
            .iter()
            .filter_map(|&node| {
                let mut bytes = BytesMut::from(&write_mark(cluster, node)?[..]);
                bytes.extend_from_slice(request);
                Some(Part { node, slot: None, request: bytes.freeze(), positions: Vec::new(), cached: Cached::No })
            })
            .collect();
        let via = Via::Awaited { replies: WRITE_MARK_REPLIES + 1 };
        Fan { parts, merge: Combine::Table(merge), keys: 0, map: None, via }
    }

    /// The masters its parts go to.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.parts.iter().map(|part| part.node)
    }

    /// Each part's master and the slot of its keys (`None`: the master's
    /// whole keyspace).
    pub fn reach(&self) -> impl Iterator<Item = (NodeId, Option<u16>)> + '_ {
        self.parts.iter().map(|part| (part.node, part.slot))
    }

    /// Each part of a split `cmd` (an `MGET`: cached per key) read
    /// through the near-cache, as one within a slot is: hits answered from
    /// it, only the misses sent, their replies filling it.
    pub fn through_cache(mut self, cache: &Arc<NearCache>, cmd: &Command, proto: Proto, scratch: &mut Scratch) -> Fan {
        let now = Instant::now();
        let mut ranges = Vec::new();
        for part in &mut self.parts {
            let request = super::reparse(part.request.clone(), &mut ranges);
            let args = Args::new(&request, &ranges);
            let read = read::Request { cmd, args: &args, bytes: &request, proto };
            part.cached = match read::plan(cache, &read, scratch, now, None) {
                CacheRead::Ready(reply) => Cached::Hit(reply),
                CacheRead::Fetch { payload, replies, fill } => {
                    part.request = payload.freeze();
                    Cached::Fetch { replies, fill }
                }
                CacheRead::Written | CacheRead::Wait(_) | CacheRead::Bypass => Cached::No,
            };
        }
        self
    }

    /// The merged reply, when the near-cache answered every part (nothing
    /// to send); else the fan, to be sent.
    pub fn answered(self) -> Result<Bytes, Fan> {
        let hits = self.parts.iter().map(|part| match &part.cached {
            Cached::Hit(reply) => Some(reply.clone()),
            Cached::No | Cached::Fetch { .. } => None,
        });
        let Some(replies) = hits.collect::<Option<Vec<Bytes>>>() else { return Err(self) };
        let Fan { parts, merge, keys, map, .. } = self;
        let positions: Vec<Vec<usize>> = parts.into_iter().map(|part| part.positions).collect();
        Ok(finish(combine(merge, keys, &positions, replies), map))
    }

    /// The merged reply goes through `map` too.
    pub fn mapped(mut self, map: Option<ReplyMap>) -> Fan {
        self.map = map;
        self
    }
}

/// Sends every part of `fan`; the receiver gets the merged reply.
pub fn send(
    shared: &Arc<Shared>,
    pools: &Arc<Pools>,
    fan: Fan,
    proto: Proto,
    affinity: usize,
    started: Instant,
) -> oneshot::Receiver<JobResult> {
    let Fan { parts, merge, keys, map, via } = fan;
    let mut sent = Vec::with_capacity(parts.len());
    let mut positions = Vec::with_capacity(parts.len());
    for part in parts {
        let config = || shared.router.node(part.node).config.clone();
        let (replies, fill) = match part.cached {
            Cached::Hit(reply) => {
                sent.push(Sent::Ready(reply));
                positions.push(part.positions);
                continue;
            }
            Cached::Fetch { replies, fill } => (replies, Some(fill)),
            Cached::No => (1, None),
        };
        let rx = match via {
            Via::Pool => {
                let batch = follow::Send { node: part.node, proto, affinity, payload: &part.request, replies, started };
                follow::send(shared, pools, batch)
            }
            Via::OwnConnection => out_of_band::send(config(), proto, part.request.clone()).into(),
            Via::Awaited { replies } => out_of_band::awaited(config(), proto, part.request.clone(), replies).into(),
        };
        sent.push(Sent::Upstream(rx, fill));
        positions.push(part.positions);
    }
    let (tx, rx) = oneshot::channel();
    tokio::spawn(async move {
        let mut replies = Vec::with_capacity(sent.len());
        for part in sent {
            replies.push(match part {
                Sent::Ready(reply) => Ok(reply),
                Sent::Upstream(rx, fill) => {
                    let result = rx.await.unwrap_or(Err(UpstreamError::ConnectionLost));
                    match fill {
                        Some(fill) => fill.finish(result),
                        None => result,
                    }
                }
            });
        }
        let merged = replies
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .map(|replies| finish(combine(merge, keys, &positions, replies), map));
        let _ = tx.send(merged);
    });
    rx
}

/// The merged `reply` through the fan's `map`, unless it is an error.
fn finish(reply: Bytes, map: Option<ReplyMap>) -> Bytes {
    match map {
        Some(map) if reply.first() != Some(&b'-') => map(reply),
        _ => reply,
    }
}

/// A part on its way: answered already, or its reply to come (and the
/// near-cache fill it goes through).
enum Sent {
    Ready(Bytes),
    Upstream(follow::Answer, Option<Fill>),
}

/// Frames a [`write_mark`] is answered with.
const WRITE_MARK_REPLIES: usize = 4;

/// A write that leaves nothing behind, replicated like any other, on a key
/// of the proxy's that `node` serves: `MULTI`, `SET` it, `DEL` it, `EXEC`.
/// (A single Redis' mark, a `PUBLISH`, is not replicated in a cluster.)
/// `None` when `node` serves no slot.
fn write_mark(cluster: &Cluster, node: NodeId) -> Option<Bytes> {
    let key = (0..slot::SLOTS * 8)
        .map(|n| format!("__nearcache__:wait:{{{n}}}"))
        .find(|key| cluster.slot_node(slot::of(key.as_bytes())) == node)?;
    let mut out = BytesMut::new();
    encode::command(&mut out, [&b"MULTI"[..]].into_iter());
    encode::command(&mut out, [&b"SET"[..], key.as_bytes(), b""].into_iter());
    encode::command(&mut out, [&b"DEL"[..], key.as_bytes()].into_iter());
    encode::command(&mut out, [&b"EXEC"[..]].into_iter());
    Some(out.freeze())
}

/// `SCRIPT KILL` / `FUNCTION KILL` asked of every master: `+OK` from the
/// one that was running a script; else an error that is not `-NOTBUSY`
/// (`-UNKILLABLE`: the script wrote), else `-NOTBUSY` as every idle master
/// answers.
fn killed(replies: Vec<Bytes>) -> Bytes {
    let refused = |r: &Bytes| r.first() == Some(&b'-');
    if let Some(ok) = replies.iter().find(|r| !refused(r)) {
        return ok.clone();
    }
    let notbusy = |r: &Bytes| r.starts_with(b"-NOTBUSY");
    let reply = replies.iter().find(|r| !notbusy(r)).or(replies.first()).cloned();
    reply.unwrap_or_else(|| encode::error("NOTBUSY No scripts in execution right now."))
}

/// The client's reply from the parts' `replies` (one frame each, in part
/// order, `positions` the parts' keys).
fn combine(merge: Combine, keys: usize, positions: &[Vec<usize>], replies: Vec<Bytes>) -> Bytes {
    // (Idle masters refuse SCRIPT KILL: see `killed`.)
    let first_error = replies.iter().find(|r| r.first() == Some(&b'-'));
    if let Some(error) = first_error.filter(|_| !matches!(merge, Combine::Table(Merge::Killed))) {
        return error.clone();
    }
    let merge = match merge {
        Combine::Table(merge) => merge,
        Combine::Scan { node, next } => {
            let stepped = replies.first().and_then(|reply| scan_step(reply, node, next));
            return stepped.unwrap_or_else(|| encode::error("ERR a SCAN reply nearcache cannot read"));
        }
    };
    let merged = match merge {
        Merge::Values => values(keys, positions, &replies),
        Merge::Pairs => pairs(keys, positions, &replies),
        Merge::Running => Some(running(replies)),
        Merge::Sum => replies.iter().map(|r| integer(r)).sum::<Option<i64>>().map(answer::integer),
        Merge::AllOk => Some(Bytes::from_static(encode::OK)),
        Merge::Concat => concat(&replies),
        Merge::Same => replies.windows(2).all(|w| w[0] == w[1]).then(|| replies.first().cloned()).flatten(),
        Merge::MinEach => min_each(&replies),
        Merge::Any => any(replies),
        Merge::Killed => Some(killed(replies)),
        Merge::Min => replies.iter().map(|r| integer(r)).min().flatten().map(answer::integer),
    };
    merged.unwrap_or_else(|| encode::error("ERR the cluster's masters gave replies nearcache cannot merge"))
}

/// `node`'s `SCAN` reply with the proxy's cursor: the node's next one, or
/// the start of `next` once the node is done, or 0 after the last master.
fn scan_step(reply: &Bytes, node: NodeId, next: Option<NodeId>) -> Option<Bytes> {
    let mut elements = Frames::elements(reply.clone())?;
    let (cursor, keys) = (elements.next()?, elements.next()?);
    let digits = std::str::from_utf8(&cursor).ok()?.lines().nth(1)?;
    let at: u64 = digits.parse().ok()?;
    let proxy = match (at, next) {
        (0, Some(next)) => next as u64,
        (0, None) => 0,
        (at, _) => at.checked_mul(1 << CURSOR_NODE_BITS)? | node as u64,
    };
    let mut out = BytesMut::new();
    encode::header(&mut out, b'*', 2);
    encode::bulk(&mut out, proxy.to_string().as_bytes());
    out.extend_from_slice(&keys);
    Some(out.freeze())
}

/// One of the replies that is not nil, at random; nil when all are.
fn any(replies: Vec<Bytes>) -> Option<Bytes> {
    let found: Vec<Bytes> = replies.into_iter().filter(|r| !matches!(&r[..], b"$-1\r\n" | b"_\r\n")).collect();
    match found.len() {
        0 => Some(Bytes::from_static(b"$-1\r\n")),
        n => found.into_iter().nth(rand_below(n)),
    }
}

/// A number below `n`, from the clock (a fair enough pick among masters).
fn rand_below(n: usize) -> usize {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    nanos as usize % n
}

/// The integer of an integer reply.
fn integer(reply: &[u8]) -> Option<i64> {
    std::str::from_utf8(reply.strip_prefix(b":")?.strip_suffix(b"\r\n")?).ok()?.parse().ok()
}

/// Each part's array elements put back at their keys' positions.
fn values(keys: usize, positions: &[Vec<usize>], replies: &[Bytes]) -> Option<Bytes> {
    let placed = in_request_order(keys, 1, positions, replies)?;
    let mut out = BytesMut::new();
    encode::header(&mut out, b'*', keys);
    placed.iter().for_each(|value| out.extend_from_slice(value));
    Some(out.freeze())
}

/// Two elements per channel (its name and count, `PUBSUB SHARDNUMSUB`),
/// put back in the request's order, in an array or (RESP3) a map as the
/// parts answered.
fn pairs(channels: usize, positions: &[Vec<usize>], replies: &[Bytes]) -> Option<Bytes> {
    let placed = in_request_order(channels, 2, positions, replies)?;
    let mut out = BytesMut::new();
    match replies.first().and_then(|r| r.first()) {
        Some(b'%') => encode::header(&mut out, b'%', channels),
        _ => encode::header(&mut out, b'*', channels * 2),
    }
    placed.iter().for_each(|pair| out.extend_from_slice(pair));
    Some(out.freeze())
}

/// The parts' array (or map) elements, `width` per key (or channel), each
/// run where its key was in the request (`positions`, per part); `None`
/// when a part answered fewer than it was asked for.
fn in_request_order(keys: usize, width: usize, positions: &[Vec<usize>], replies: &[Bytes]) -> Option<Vec<Bytes>> {
    let mut placed: Vec<Option<Bytes>> = vec![None; keys];
    for (reply, positions) in replies.iter().zip(positions) {
        let mut frames = Frames::elements(reply.clone())?;
        for &at in positions {
            *placed.get_mut(at)? = Some(Frames::take(&mut frames, width)?);
        }
    }
    placed.into_iter().collect()
}

/// `FUNCTION STATS` of every master: the one running a function (its
/// `running_script` is not nil), else the first (the libraries, loaded on
/// every master, count the same).
fn running(replies: Vec<Bytes>) -> Bytes {
    let is_running = |reply: &Bytes| {
        let script = Frames::elements(reply.clone()).and_then(|mut fields| fields.nth(1));
        script.is_some_and(|s| !matches!(&s[..], b"$-1\r\n" | b"*-1\r\n" | b"_\r\n"))
    };
    let at = replies.iter().position(is_running).unwrap_or(0);
    replies.into_iter().nth(at).unwrap_or_else(|| encode::error("ERR no master answered"))
}

/// Every part's array elements, one array (of the first part's type).
fn concat(replies: &[Bytes]) -> Option<Bytes> {
    let kind = *replies.first()?.first()?;
    let mut elements = Vec::new();
    for reply in replies {
        elements.extend(Frames::elements(reply.clone())?);
    }
    let mut out = BytesMut::new();
    encode::header(&mut out, kind, elements.len());
    elements.iter().for_each(|e| out.extend_from_slice(e));
    Some(out.freeze())
}

/// Arrays of integers combined element by element, the smallest kept
/// (SCRIPT EXISTS: 1 only where every master has the script; WAITAOF: the
/// counts every master reached).
fn min_each(replies: &[Bytes]) -> Option<Bytes> {
    let mut all: Option<Vec<i64>> = None;
    for reply in replies {
        let these: Vec<i64> = Frames::elements(reply.clone())?.map(|e| integer(&e)).collect::<Option<_>>()?;
        all = Some(match all {
            None => these,
            Some(all) if all.len() == these.len() => all.iter().zip(&these).map(|(a, b)| (*a).min(*b)).collect(),
            Some(_) => return None,
        });
    }
    let all = all?;
    let mut out = BytesMut::new();
    encode::header(&mut out, b'*', all.len());
    all.iter().for_each(|&n| encode::integer(&mut out, n));
    Some(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn replies_are_merged_as_the_table_says() {
        let values = combine(
            Combine::Table(Merge::Values),
            3,
            &[vec![0, 2], vec![1]],
            vec![b("*2\r\n$1\r\na\r\n$-1\r\n"), b("*1\r\n$1\r\nb\r\n")],
        );
        assert_eq!(values, b("*3\r\n$1\r\na\r\n$1\r\nb\r\n$-1\r\n"));
        assert_eq!(combine(Combine::Table(Merge::Sum), 0, &[], vec![b(":2\r\n"), b(":3\r\n")]), b(":5\r\n"));
        assert_eq!(combine(Combine::Table(Merge::AllOk), 0, &[], vec![b("+OK\r\n"), b("+OK\r\n")]), b("+OK\r\n"));
        assert_eq!(combine(Combine::Table(Merge::Sum), 0, &[], vec![b(":2\r\n"), b("-ERR x\r\n")]), b("-ERR x\r\n"));
        assert_eq!(
            combine(
                Combine::Table(Merge::Concat),
                0,
                &[],
                vec![b("*1\r\n$1\r\na\r\n"), b("*0\r\n"), b("*1\r\n$1\r\nc\r\n")]
            ),
            b("*2\r\n$1\r\na\r\n$1\r\nc\r\n")
        );
        assert_eq!(
            combine(Combine::Table(Merge::Same), 0, &[], vec![b("$1\r\nx\r\n"), b("$1\r\nx\r\n")]),
            b("$1\r\nx\r\n")
        );
        assert!(
            combine(Combine::Table(Merge::Same), 0, &[], vec![b("$1\r\nx\r\n"), b("$1\r\ny\r\n")]).starts_with(b"-ERR")
        );
        assert_eq!(
            combine(Combine::Table(Merge::MinEach), 0, &[], vec![b("*2\r\n:1\r\n:1\r\n"), b("*2\r\n:1\r\n:0\r\n")]),
            b("*2\r\n:1\r\n:0\r\n")
        );
        assert_eq!(combine(Combine::Table(Merge::Any), 0, &[], vec![b("$-1\r\n"), b("$1\r\nk\r\n")]), b("$1\r\nk\r\n"));
        assert_eq!(combine(Combine::Table(Merge::Any), 0, &[], vec![b("$-1\r\n")]), b("$-1\r\n"));
        let notbusy = || b("-NOTBUSY No scripts in execution right now.\r\n");
        let killed = |replies| combine(Combine::Table(Merge::Killed), 0, &[], replies);
        assert_eq!(killed(vec![notbusy(), b("+OK\r\n"), notbusy()]), b("+OK\r\n"));
        assert_eq!(killed(vec![notbusy(), b("-UNKILLABLE x\r\n")]), b("-UNKILLABLE x\r\n"));
        assert_eq!(killed(vec![notbusy(), notbusy()]), notbusy());
        let pairs = |replies| combine(Combine::Table(Merge::Pairs), 3, &[vec![1], vec![0, 2]], replies);
        assert_eq!(
            pairs(vec![b("*2\r\n$1\r\nb\r\n:2\r\n"), b("*4\r\n$1\r\na\r\n:1\r\n$1\r\nc\r\n:0\r\n")]),
            b("*6\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n$1\r\nc\r\n:0\r\n")
        );
        assert_eq!(
            pairs(vec![b("%1\r\n$1\r\nb\r\n:2\r\n"), b("%2\r\n$1\r\na\r\n:1\r\n$1\r\nc\r\n:0\r\n")]),
            b("%3\r\n$1\r\na\r\n:1\r\n$1\r\nb\r\n:2\r\n$1\r\nc\r\n:0\r\n")
        );
        let stats = |running: &str| b(&format!("*4\r\n$14\r\nrunning_script\r\n{running}$7\r\nengines\r\n*0\r\n"));
        let busy = "*6\r\n$4\r\nname\r\n$4\r\nspin\r\n$7\r\ncommand\r\n*0\r\n$11\r\nduration_ms\r\n:5\r\n";
        let running = |replies| combine(Combine::Table(Merge::Running), 0, &[], replies);
        assert_eq!(running(vec![stats("*-1\r\n"), stats(busy), stats("$-1\r\n")]), stats(busy));
        assert_eq!(running(vec![stats("_\r\n"), stats("*-1\r\n")]), stats("_\r\n"));
    }

    #[test]
    fn scan_cursors_name_the_node_and_its_cursor() {
        let reply = |cursor: &str| b(&format!("*2\r\n${}\r\n{cursor}\r\n*1\r\n$1\r\nk\r\n", cursor.len()));
        let step = |cursor, node, next| combine(Combine::Scan { node, next }, 0, &[], vec![reply(cursor)]);
        assert_eq!(step("7", 2, Some(3)), reply(&(7 * 1024 + 2).to_string()));
        assert_eq!(step("0", 2, Some(3)), reply("3"));
        assert_eq!(step("0", 3, None), reply("0"));
    }
}
