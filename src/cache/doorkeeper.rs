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
//!
//! The table's size is a trade-off: every cacheable read tests one random
//! word of it, so a table larger than the CPU's cache makes that test a
//! memory access, which measured as the largest cost of a miss-heavy load;
//! a smaller one forgets sooner (`cache.admission_window`).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Doorkeeper {
    words: Vec<AtomicU64>,
    marked: AtomicUsize,
    /// Marks after which the set is cleared.
    capacity: usize,
}

impl Doorkeeper {
    /// A set that remembers at least `window` keys: a word per three,
    /// rounded up to a power of two (8 bytes per word).
    pub fn new(window: usize) -> Doorkeeper {
        let words = window.div_ceil(3).max(1).next_power_of_two();
        Doorkeeper {
            words: (0..words).map(|_| AtomicU64::new(0)).collect(),
            marked: AtomicUsize::new(0),
            capacity: words * 3,
        }
    }

    /// True when the key hashed to `h` (a seeded hash) was seen since the
    /// last clear; marks it seen.
    pub fn seen_before(&self, h: u64) -> bool {
        let word = &self.words[(h as usize) & (self.words.len() - 1)];
        let bits = (1u64 << ((h >> 40) & 63)) | (1u64 << ((h >> 46) & 63)) | (1u64 << ((h >> 52) & 63));
        if word.load(Ordering::Relaxed) & bits == bits {
            return true;
        }
        if self.marked.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            self.marked.store(1, Ordering::Relaxed);
            self.words.iter().for_each(|w| w.store(0, Ordering::Relaxed));
        }
        word.fetch_or(bits, Ordering::Relaxed);
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::BuildHasher;

    fn h(key: &[u8]) -> u64 {
        foldhash::quality::FixedState::default().hash_one(key)
    }

    #[test]
    fn second_sight_is_admitted() {
        let d = Doorkeeper::new(1024);
        assert!(!d.seen_before(h(b"a")));
        assert!(d.seen_before(h(b"a")));
        assert!(!d.seen_before(h(b"b")));
    }

    #[test]
    fn a_whole_window_is_remembered() {
        let d = Doorkeeper::new(1000);
        let keys: Vec<[u8; 4]> = (0..1000u32).map(u32::to_le_bytes).collect();
        let first_time = keys.iter().filter(|k| !d.seen_before(h(&k[..]))).count();
        assert!(first_time > 990, "{first_time}: a few may collide");
        assert!(keys.iter().all(|k| d.seen_before(h(&k[..]))));
    }

    #[test]
    fn false_positives_stay_rare() {
        // The default window, over many clear cycles of one-off keys.
        let d = Doorkeeper::new(crate::cache::CacheConfig::default().admission_window);
        let keys = 1_000_000u32;
        let fresh = (0..keys).filter(|i| d.seen_before(h(&i.to_le_bytes()))).count();
        assert!(fresh * 200 < keys as usize, "{fresh} of {keys} new keys looked seen");
    }
}
