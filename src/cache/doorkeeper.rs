//! Admission on second sight: a small lock-free bit set remembers which keys
//! were read recently. A key read for the first time is forwarded as plain
//! pass-through (no cache lookup, no PTTL, no fill); only a key seen before
//! is looked up and, on a miss, filled. One-hit wonders on miss-heavy
//! traffic then cost a hash and two atomic operations instead of an entry's
//! worth of allocations. The set is cleared every `capacity` admissions so
//! false positives stay rare.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

pub struct Doorkeeper {
    bits: Vec<AtomicU64>,
    hasher: foldhash::quality::RandomState,
    marked: AtomicUsize,
    /// Marks after which the set is cleared (a sixteenth of its bits).
    capacity: usize,
}

impl Doorkeeper {
    /// A set of `bits` bits (rounded up to a power of two, at least 64).
    pub fn new(bits: usize) -> Doorkeeper {
        let words = (bits.max(64).next_power_of_two()) / 64;
        Doorkeeper {
            bits: (0..words).map(|_| AtomicU64::new(0)).collect(),
            hasher: foldhash::quality::RandomState::default(),
            marked: AtomicUsize::new(0),
            capacity: words * 4,
        }
    }

    /// True when `key` was seen since the last clear; marks it seen.
    pub fn seen_before(&self, key: &[u8]) -> bool {
        let h = self.hasher.hash_one(key);
        let mask = self.bits.len() - 1;
        let probes = [(h as usize) & mask, ((h >> 32) as usize) & mask];
        let bits = [1u64 << ((h >> 20) & 63), 1u64 << ((h >> 52) & 63)];
        let seen = probes.iter().zip(bits).all(|(&w, b)| self.bits[w].load(Ordering::Relaxed) & b != 0);
        if !seen {
            for (&w, b) in probes.iter().zip(bits) {
                self.bits[w].fetch_or(b, Ordering::Relaxed);
            }
            if self.marked.fetch_add(1, Ordering::Relaxed) + 1 >= self.capacity {
                self.marked.store(0, Ordering::Relaxed);
                self.bits.iter().for_each(|w| w.store(0, Ordering::Relaxed));
            }
        }
        seen
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
        let d = Doorkeeper::new(1 << 16);
        let fresh = (0..4000u32).filter(|i| d.seen_before(&i.to_le_bytes())).count();
        assert!(fresh < 40, "{fresh} of 4000 new keys looked seen");
    }
}
