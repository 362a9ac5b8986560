//! A per-thread memo in front of moka for the keys read most often.
//!
//! A moka lookup costs far more than the rest of a cache hit: hashing,
//! epoch-protected bucket reads, an expiry check and a read record queued
//! for its eviction policy (about 900 instructions and several cache lines
//! per hit). Each worker thread therefore keeps a table of the entries it
//! found there last (two-way set associative, so two hot keys landing in
//! one set do not evict each other), and looks there first. The sets' tags
//! (32 bits of the key's hash per way) are kept apart from their slots in
//! a table small enough to stay in the CPU's cache, so a key the memo does
//! not hold costs no memory access; a slot is one cache line holding all a
//! hit checks, and points at the entry's buffer of key, shapes and
//! replies.
//!
//! The memo never decides what is cached, only where a lookup starts, and
//! it never serves what a write made stale. Slots are stamped with the
//! cache's [`Stamp`]: a clear changes its epoch, which no slot then
//! matches; an invalidation voids the entry it removes before it counts
//! itself, and a slot whose count is behind checks its entry's void flag
//! before it serves (the common case of no invalidation since costs
//! nothing). Freshness (the policy TTL and the key's TTL upstream) is
//! checked on every hit. One memo hit in [`SAMPLE`] still goes through
//! moka, so its eviction policy keeps seeing which keys are hot.
//!
//! A memo hit is looked up before the admission check (a memoised key was
//! admitted when it was filled). Its reply is copied straight into the
//! client's output when the caller gives it (no reply is owed before it),
//! otherwise into a per-thread buffer handed out in slices: a hit allocates
//! nothing.
//!
//! A slot keeps its entry alive until it is overwritten, so only entries of
//! at most [`MAX_WEIGHT`] bytes are memoised: what the memo holds beyond
//! `cache.max_bytes` is at most `SETS × WAYS` (4,096) entries of [`MAX_WEIGHT`] per worker.

use super::entry::{KeyEntry, Parts};
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

/// Sets per worker thread (a power of two).
const SETS: usize = 2048;
const WAYS: usize = 2;
/// Entries larger than this (key and replies, in bytes) are not memoised.
const MAX_WEIGHT: u32 = 4096;
/// One memo hit in this many goes through moka.
const SAMPLE: u32 = 64;
/// The size of each reply buffer: a hit's reply is a slice of one, which
/// is freed once all its slices are written out.
const ARENA: usize = 16 * 1024;

/// What a memo slot is checked against: the cache's epoch (changed by
/// every clear) and its count of invalidations.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) struct Stamp {
    pub epoch: u64,
    pub invalidations: u64,
}

#[derive(Default)]
#[repr(align(64))]
struct Slot {
    epoch: u64,
    /// The invalidation count when the entry was last known not void.
    invalidations: u64,
    held: Option<Memoised>,
}

/// A memoised entry, with what a hit reads of it at hand.
struct Memoised {
    fresh_until: Instant,
    entry: Arc<KeyEntry>,
    parts: Parts,
}

/// One worker thread's memo: its sets of slots and its reply buffer.
struct Memo {
    /// Per set, the tag of each way's key (0 for none).
    tags: Vec<[u32; WAYS]>,
    sets: Vec<[Slot; WAYS]>,
    replies: BytesMut,
    /// Memo hits since the last one sent through moka.
    hits: u32,
}

impl Memo {
    fn new() -> Memo {
        Memo {
            tags: vec![[0; WAYS]; SETS],
            sets: (0..SETS).map(|_| Default::default()).collect(),
            replies: BytesMut::new(),
            hits: 0,
        }
    }
}

thread_local! {
    /// Made on the thread's first fill; constant-initialised, so a lookup
    /// pays no lazy-initialisation check.
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// What became of a memo hit's reply.
pub enum Hit {
    /// Appended to the output the caller gave.
    Written,
    /// No output was given: here it is.
    Reply(Bytes),
}

/// The reply for (key, shape) if this thread memoised a live entry of the
/// key under `stamp`'s epoch, appended to `out` if given; `None` sends the
/// lookup to moka. The reply is that of the first shape `shape` accepts.
pub(super) fn get(
    hash: u64,
    stamp: Stamp,
    key: &[u8],
    now: Instant,
    shape: impl Fn(&[u8]) -> bool,
    out: Option<&mut BytesMut>,
) -> Option<Hit> {
    MEMO.with_borrow_mut(|memo| {
        let memo = memo.as_mut()?;
        let (index, tag) = place(hash);
        let way = memo.tags[index].iter().position(|&t| t == tag)?;
        let slot = &mut memo.sets[index][way];
        let held = slot.held.as_ref().filter(|_| slot.epoch == stamp.epoch)?;
        if held.fresh_until <= now || held.parts.key() != key {
            return None;
        }
        if slot.invalidations != stamp.invalidations {
            if held.entry.is_void() {
                return None;
            }
            slot.invalidations = stamp.invalidations;
        }
        memo.hits += 1;
        if memo.hits == SAMPLE {
            memo.hits = 0;
            return None;
        }
        let reply = held.parts.reply_where(shape)?;
        if let Some(out) = out {
            out.extend_from_slice(reply);
            return Some(Hit::Written);
        }
        if memo.replies.capacity() < reply.len() {
            memo.replies = BytesMut::with_capacity(ARENA.max(reply.len()));
        }
        memo.replies.extend_from_slice(reply);
        Some(Hit::Reply(memo.replies.split().freeze()))
    })
}

/// Memoises an entry moka returned for a lookup that began under `stamp`.
pub(super) fn put(hash: u64, stamp: Stamp, entry: &Arc<KeyEntry>) {
    if entry.parts.weight() > MAX_WEIGHT {
        return;
    }
    MEMO.with_borrow_mut(|memo| {
        let memo = memo.get_or_insert_with(Memo::new);
        let (index, tag) = place(hash);
        let (tags, set) = (&mut memo.tags[index], &mut memo.sets[index]);
        // The key's own slot, or the older way's.
        let way = tags.iter().position(|&t| t == tag).unwrap_or_else(|| {
            tags.rotate_right(1);
            set.rotate_right(1);
            0
        });
        tags[way] = tag;
        set[way] = Slot {
            epoch: stamp.epoch,
            invalidations: stamp.invalidations,
            held: Some(Memoised { fresh_until: entry.fresh_until, entry: entry.clone(), parts: entry.parts.clone() }),
        };
    })
}

/// A key's set, and its tag within the set.
fn place(hash: u64) -> (usize, u32) {
    (hash as usize & (SETS - 1), (hash >> 32) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_cache_line() {
        assert_eq!(std::mem::size_of::<Slot>(), 64);
    }
}
