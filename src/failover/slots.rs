//! With a Redis Cluster upstream, failover is per slot: a slot is served
//! from local memory while its master is unreachable, and after that until
//! the writes journaled for it meanwhile are replayed to whichever master
//! serves it then (the old one back, or a promoted replica). [`Pending`]
//! remembers which slots have writes in the journal, so the requests of
//! those slots keep going to failover (behind their journaled writes)
//! while every other slot goes upstream.

use crate::commands::lookup;
use crate::protocol::request::{self, Limits};
use crate::protocol::Args;
use crate::router::slot::{self, SLOTS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The slots with writes in the journal. Set and cleared under the
/// failover lock; read without it (a request that sees a slot pending is
/// checked again under the lock).
pub struct Pending {
    /// Some slot is pending: the one load a request pays while none is.
    any: AtomicBool,
    bits: Box<[AtomicU64]>,
}

impl Default for Pending {
    fn default() -> Self {
        Pending { any: AtomicBool::new(false), bits: (0..SLOTS / 64).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl Pending {
    /// True while some slot has journaled writes.
    pub fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// True while `slot` has journaled writes.
    pub fn has(&self, slot: u16) -> bool {
        let slot = usize::from(slot) % SLOTS;
        self.any() && self.bits[slot / 64].load(Ordering::Acquire) & (1 << (slot % 64)) != 0
    }

    /// A write of `slot` was journaled.
    pub fn add(&self, slot: u16) {
        let slot = usize::from(slot) % SLOTS;
        self.bits[slot / 64].fetch_or(1 << (slot % 64), Ordering::AcqRel);
        self.any.store(true, Ordering::Release);
    }

    /// The writes of `slot` are replayed (others may be left).
    pub fn remove(&self, slot: u16) {
        let slot = usize::from(slot) % SLOTS;
        self.bits[slot / 64].fetch_and(!(1 << (slot % 64)), Ordering::AcqRel);
    }

    /// The journal is empty.
    pub fn clear(&self) {
        self.any.store(false, Ordering::Release);
        self.bits.iter().for_each(|word| word.store(0, Ordering::Release));
    }
}

/// The slot a journal entry (a complete request) belongs to: its first
/// key's, 0 for none (where the router sends what names no key).
pub fn of_entry(entry: &[u8]) -> u16 {
    let (mut ranges, mut inline) = (Vec::new(), Vec::new());
    let limits = Limits { unauthenticated: false, ..Limits::default() };
    if request::parse(entry, &limits, &mut ranges, &mut inline).is_err() {
        return 0;
    }
    let args = Args::new(entry, &ranges);
    let cmd = args.get(0).and_then(lookup).map(|(_, cmd)| cmd.resolve(&args));
    crate::router::slot_of(cmd, &args)
}

/// A hash tag whose slot is `slot`, for a key the replay puts in that
/// slot (its marker): the first decimal number that hashes there.
pub fn tag(slot: u16) -> String {
    (0u32..).map(|n| n.to_string()).find(|n| slot::of(n.as_bytes()) == slot % SLOTS as u16).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_slots_are_remembered_until_cleared() {
        let pending = Pending::default();
        assert!(!pending.any() && !pending.has(5));
        pending.add(5);
        pending.add(16_383);
        assert!(pending.any() && pending.has(5) && pending.has(16_383) && !pending.has(6));
        pending.remove(16_383);
        assert!(pending.any() && pending.has(5) && !pending.has(16_383));
        pending.clear();
        assert!(!pending.any() && !pending.has(5));
    }

    #[test]
    fn an_entry_belongs_to_its_first_keys_slot() {
        assert_eq!(of_entry(b"*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$1\r\n1\r\n"), slot::of(b"foo"));
        assert_eq!(of_entry(b"*2\r\n$4\r\nINCR\r\n$8\r\n{bar}:ab\r\n"), slot::of(b"bar"));
        assert_eq!(of_entry(b"*1\r\n$4\r\nPING\r\n"), 0);
        assert_eq!(of_entry(b"garbage"), 0);
    }

    #[test]
    fn a_tag_hashes_to_its_slot() {
        for slot in [0, 1, 5061, 12_182, 16_383] {
            let key = format!("__nearcache__:replay:0:{{{}}}", tag(slot));
            assert_eq!(slot::of(key.as_bytes()), slot);
        }
    }
}
