//! A per-thread memo in front of moka for the keys read most often.
//!
//! A moka lookup costs far more than the rest of a cache hit: hashing,
//! epoch-protected bucket reads, an expiry check and a read record queued
//! for its eviction policy (about 900 instructions and several cache lines
//! per hit). Each worker thread therefore keeps a small direct-mapped table
//! of the entries it found there last, and looks there first (two-way set
//! associative, so two hot keys landing in one set do not evict each other).
//!
//! The memo never decides what is cached, only where a lookup starts: a
//! memoised entry is served only while moka still holds it. Every way an
//! entry leaves moka voids it (an invalidation before it returns, anything
//! else through the eviction listener), a clear changes the cache's epoch
//! (which every slot is stamped with), and the entry's own freshness is
//! checked on every hit. One read in [`SAMPLE`] still goes through moka, so
//! its eviction policy keeps seeing which keys are hot.
//!
//! A memo hit is looked up before the admission check (a memoised key was
//! admitted when it was filled) and its reply is copied into a per-thread
//! buffer handed out in slices, so a hit allocates nothing.
//!
//! A slot holds its entry alive until it is overwritten, so only entries of
//! at most [`MAX_WEIGHT`] bytes are memoised: what voided entries can pin
//! beyond `cache.max_bytes` is at most 4,096 slots × [`MAX_WEIGHT`] per worker.

use super::KeyEntry;
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

/// Sets per worker thread (a power of two).
const SETS: usize = 2048;
const WAYS: usize = 2;
/// Entries larger than this (key and replies, in bytes) are not memoised.
pub const MAX_WEIGHT: u32 = 4096;
/// One hit in this many goes through moka.
pub const SAMPLE: u32 = 64;
/// The size of each reply buffer: a hit's reply is a slice of one, which
/// is freed once all its slices are written out.
const ARENA: usize = 16 * 1024;

#[derive(Default)]
struct Slot {
    hash: u64,
    /// The cache's epoch when the slot was filled.
    epoch: u64,
    entry: Option<Arc<KeyEntry>>,
    /// Hits since the slot was filled or last sampled.
    hits: u32,
}

/// One cache line.
#[derive(Default)]
#[repr(align(64))]
struct Set([Slot; WAYS]);

struct Front {
    sets: Vec<Set>,
    replies: BytesMut,
}

thread_local! {
    static FRONT: RefCell<Front> =
        RefCell::new(Front { sets: (0..SETS).map(|_| Set::default()).collect(), replies: BytesMut::new() });
}

/// The reply for (key, shape) if this thread memoised a live entry of the
/// key in `epoch`; `None` sends the lookup to moka.
/// `shape` is asked for only once such an entry is found.
pub(super) fn get<'s>(
    hash: u64,
    epoch: u64,
    key: &[u8],
    now: Instant,
    shape: impl FnOnce() -> &'s [u8],
) -> Option<Bytes> {
    FRONT.with_borrow_mut(|front| {
        let set = &mut front.sets[hash as usize & (SETS - 1)];
        let slot = set.0.iter_mut().find(|s| s.hash == hash && s.epoch == epoch)?;
        let entry = slot.entry.as_ref()?;
        if entry.is_void() || entry.fresh_until <= now || entry.key() != key {
            return None;
        }
        slot.hits = (slot.hits + 1) % SAMPLE;
        if slot.hits == 0 {
            return None;
        }
        let reply = entry.reply(shape())?;
        if front.replies.capacity() < reply.len() {
            front.replies = BytesMut::with_capacity(ARENA.max(reply.len()));
        }
        front.replies.extend_from_slice(reply);
        Some(front.replies.split().freeze())
    })
}

/// Memoises an entry moka returned for a lookup that began in `epoch`.
pub(super) fn put(hash: u64, epoch: u64, entry: &Arc<KeyEntry>) {
    if entry.weight() > MAX_WEIGHT {
        return;
    }
    FRONT.with_borrow_mut(|front| {
        let set = &mut front.sets[hash as usize & (SETS - 1)];
        // The key's own slot, or the older way's.
        let way = set.0.iter().position(|s| s.hash == hash).unwrap_or_else(|| {
            set.0.rotate_right(1);
            0
        });
        set.0[way] = Slot { hash, epoch, entry: Some(entry.clone()), hits: 0 };
    })
}
