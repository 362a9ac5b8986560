//! Admission on second sight: a small lock-free bit set remembers which keys
//! were read recently. A key read for the first time is forwarded as plain
//! pass-through (no cache lookup, no PTTL, no fill); only a key seen before
//! is looked up and, on a miss, filled. One-hit wonders on miss-heavy
//! traffic then cost a hash and one or two atomic operations instead of an
//! entry's worth of allocations.
//!
//! A key marks three bits of one 64-bit word (a blocked Bloom filter: one
//! load to test, one `fetch_or` to mark). The set is cleared after
//! `capacity` marks, three per word on average, so a one-off key passes for
//! one seen before (and is filled for nothing) in well under 1% of reads.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Doorkeeper {
    words: Vec<AtomicU64>,
    hasher: foldhash::quality::RandomState,
    marked: AtomicUsize,
    /// Marks after which the set is cleared.
    capacity: usize,
}

impl Doorkeeper {
    /// A set of `bits` bits (rounded up to a power of two, at least 64).
    pub fn new(bits: usize) -> Doorkeeper {
        let words = (bits.max(64).next_power_of_two()) / 64;
        Doorkeeper {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::quality::RandomState::default(),
            marked: AtomicUsize::new(0),
            capacity: words * 3,
        }
    }

    /// True when `key` was seen since the last clear; marks it seen.
    pub fn seen_before(&self, key: &[u8]) -> bool {
        let h = self.hasher.hash_one(key);
        let word = &self.words[(h as usize) & (self.words.len() - 1)];
        let bits = (1u64 << ((h >> 40) & 63)) | (1u64 << ((h >> 46) & 63)) | (1u64 << ((h >> 52) & 63));
        if word.load(Ordering::Relaxed) & bits == bits {
            return true;
        }
        word.fetch_or(bits, Ordering::Relaxed);
        if self.marked.fetch_add(1, Ordering::Relaxed) + 1 >= self.capacity {
            self.marked.store(0, Ordering::Relaxed);
            self.words.iter().for_each(|w| w.store(0, Ordering::Relaxed));
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_sight_is_admitted() {
        let d = Doorkeeper::new(1 << 16);
        assert!(!d.seen_before(b"a"));
        assert!(d.seen_before(b"a"));
        assert!(!d.seen_before(b"b"));
    }

    #[test]
    fn false_positives_stay_rare() {
        // The cache's size, over five clear cycles of one-off keys.
        let d = Doorkeeper::new(1 << 22);
        let keys = 1_000_000u32;
        let fresh = (0..keys).filter(|i| d.seen_before(&i.to_le_bytes())).count();
        assert!(fresh * 200 < keys as usize, "{fresh} of {keys} new keys looked seen");
    }
}
