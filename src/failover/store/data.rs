//! The values the store holds, one type per Redis data type, each keeping
//! a running estimate of its size in bytes and the element order Redis
//! replies in for small values: hashes and sets in insertion order (Redis'
//! listpack), small all-integer sets in numeric order (its intset), sorted
//! sets by (score, member).

use super::num;
use bytes::Bytes;
use std::collections::{BTreeSet, HashMap, VecDeque};

/// Hash maps of the store (seeded per process, like Redis' dict hashing).
pub(super) type Map<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// Bytes charged per key on top of the key and its value (map slot,
/// entry, expiry).
pub(super) const ENTRY_OVERHEAD: u64 = 64;
/// Bytes charged per element of a collection on top of its own bytes.
pub(super) const ELEMENT_OVERHEAD: u64 = 16;
/// Sets of at most this many integers reply in numeric order, as Redis'
/// intset encoding does (`set-max-intset-entries`).
const INTSET_MAX: usize = 512;
/// Sorted sets up to this many members of at most `LISTPACK_VALUE` bytes
/// use Redis' listpack encoding (`zset-max-listpack-entries` / `-value`).
const LISTPACK_ENTRIES: usize = 128;
const LISTPACK_VALUE: usize = 64;

/// One value.
#[derive(Clone, Debug)]
pub(super) enum Data {
    Str(Bytes),
    Hash(Hash),
    List(List),
    Set(Set),
    ZSet(ZSet),
}

impl Data {
    /// Estimated bytes of the value.
    pub(super) fn bytes(&self) -> u64 {
        match self {
            Data::Str(s) => s.len() as u64,
            Data::Hash(h) => h.0.bytes,
            Data::List(l) => l.bytes,
            Data::Set(s) => s.members.bytes,
            Data::ZSet(z) => z.bytes,
        }
    }

    /// True for a collection without elements (which Redis never keeps).
    pub(super) fn is_empty_collection(&self) -> bool {
        match self {
            Data::Str(_) => false,
            Data::Hash(h) => h.len() == 0,
            Data::List(l) => l.items.is_empty(),
            Data::Set(s) => s.len() == 0,
            Data::ZSet(z) => z.len() == 0,
        }
    }

    /// The name TYPE replies with.
    pub(super) fn type_name(&self) -> &'static str {
        match self {
            Data::Str(_) => "string",
            Data::Hash(_) => "hash",
            Data::List(_) => "list",
            Data::Set(_) => "set",
            Data::ZSet(_) => "zset",
        }
    }
}

/// A Redis type the store can look up and create by kind.
pub(super) trait Kind: Default {
    /// The value as this kind, if it is one.
    fn of(data: &mut Data) -> Option<&mut Self>;
    /// The value holding `self`.
    fn wrap(self) -> Data;
}

macro_rules! kind {
    ($ty:ty, $variant:ident) => {
        impl Kind for $ty {
            fn of(data: &mut Data) -> Option<&mut Self> {
                match data {
                    Data::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn wrap(self) -> Data {
                Data::$variant(self)
            }
        }
    };
}

kind!(Bytes, Str);
kind!(Hash, Hash);
kind!(List, List);
kind!(Set, Set);
kind!(ZSet, ZSet);

/// Keys in insertion order with O(1) lookup; removal leaves a hole that is
/// compacted away once holes outnumber entries.
#[derive(Clone, Debug, Default)]
struct Ordered<V> {
    slots: Vec<Option<(Bytes, V)>>,
    index: Map<Bytes, usize>,
    bytes: u64,
}

impl<V: Clone> Ordered<V> {
    fn len(&self) -> usize {
        self.index.len()
    }

    fn get(&self, key: &[u8]) -> Option<&V> {
        let slot = *self.index.get(key)?;
        self.slots.get(slot)?.as_ref().map(|(_, v)| v)
    }

    /// Inserts or replaces in place; true when `key` is new. `weight` is the
    /// bytes of a value.
    fn insert(&mut self, key: Bytes, value: V, weight: fn(&V) -> u64) -> bool {
        if let Some(&slot) = self.index.get(&key) {
            if let Some((_, old)) = self.slots.get_mut(slot).and_then(Option::as_mut) {
                self.bytes = self.bytes - weight(old) + weight(&value);
                *old = value;
            }
            return false;
        }
        self.bytes += key.len() as u64 + weight(&value) + ELEMENT_OVERHEAD;
        self.index.insert(key.clone(), self.slots.len());
        self.slots.push(Some((key, value)));
        true
    }

    fn remove(&mut self, key: &[u8], weight: fn(&V) -> u64) -> bool {
        let Some(slot) = self.index.remove(key) else { return false };
        if let Some((k, v)) = self.slots.get_mut(slot).and_then(Option::take) {
            self.bytes -= k.len() as u64 + weight(&v) + ELEMENT_OVERHEAD;
        }
        if self.slots.len() > 16 && self.slots.len() > 2 * self.index.len() {
            self.compact();
        }
        true
    }

    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        for (i, (k, _)) in self.slots.iter().flatten().enumerate() {
            self.index.insert(k.clone(), i);
        }
    }

    fn iter(&self) -> impl Iterator<Item = (&Bytes, &V)> {
        self.slots.iter().flatten().map(|(k, v)| (k, v))
    }
}

/// A hash: fields in insertion order, values replaced in place.
#[derive(Clone, Debug, Default)]
pub(super) struct Hash(Ordered<Bytes>);

fn len_of(b: &Bytes) -> u64 {
    b.len() as u64
}

impl Hash {
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }

    pub(super) fn get(&self, field: &[u8]) -> Option<&Bytes> {
        self.0.get(field)
    }

    /// Sets `field`; true when it is new.
    pub(super) fn insert(&mut self, field: Bytes, value: Bytes) -> bool {
        self.0.insert(field, value, len_of)
    }

    /// Removes `field`; true when it was there.
    pub(super) fn remove(&mut self, field: &[u8]) -> bool {
        self.0.remove(field, len_of)
    }

    /// Fields and values in reply order.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.0.iter()
    }
}

/// A list.
#[derive(Clone, Debug, Default)]
pub(super) struct List {
    items: VecDeque<Bytes>,
    bytes: u64,
}

fn element_bytes(b: &Bytes) -> u64 {
    b.len() as u64 + ELEMENT_OVERHEAD
}

impl List {
    pub(super) fn len(&self) -> usize {
        self.items.len()
    }

    /// Pushes at the head (`left`) or the tail.
    pub(super) fn push(&mut self, item: Bytes, left: bool) {
        self.bytes += element_bytes(&item);
        if left {
            self.items.push_front(item);
        } else {
            self.items.push_back(item);
        }
    }

    /// Pops from the head (`left`) or the tail.
    pub(super) fn pop(&mut self, left: bool) -> Option<Bytes> {
        let item = if left { self.items.pop_front() } else { self.items.pop_back() }?;
        self.bytes -= element_bytes(&item);
        Some(item)
    }

    /// Elements `start..=end` (valid indices, start ≤ end).
    pub(super) fn range(&self, start: usize, end: usize) -> impl Iterator<Item = &Bytes> {
        self.items.range(start..=end)
    }
}

/// A set: members in insertion order, or numeric order while it only ever
/// held a few integers (Redis' intset; once converted it never goes back).
#[derive(Clone, Debug)]
pub(super) struct Set {
    members: Ordered<()>,
    intset: bool,
}

impl Default for Set {
    fn default() -> Set {
        Set { members: Ordered::default(), intset: true }
    }
}

fn no_bytes(_: &()) -> u64 {
    0
}

impl Set {
    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    pub(super) fn contains(&self, member: &[u8]) -> bool {
        self.members.get(member).is_some()
    }

    /// Adds `member`; true when it is new.
    pub(super) fn insert(&mut self, member: Bytes) -> bool {
        let is_int = num::parse_i64(&member).is_some();
        let added = self.members.insert(member, (), no_bytes);
        self.intset &= is_int && self.len() <= INTSET_MAX;
        added
    }

    /// Removes `member`; true when it was there.
    pub(super) fn remove(&mut self, member: &[u8]) -> bool {
        self.members.remove(member, no_bytes)
    }

    /// Members in reply order.
    pub(super) fn members(&self) -> Vec<&Bytes> {
        let mut out: Vec<&Bytes> = self.members.iter().map(|(m, _)| m).collect();
        if self.intset {
            out.sort_by_key(|m| num::parse_i64(m));
        }
        out
    }
}

/// A score as a sorted-set order key: never NaN, and `-0` equal to `0`
/// (ties go to the member bytes), as in Redis' comparisons.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Score(f64);

impl Eq for Score {}

impl Ord for Score {
    fn cmp(&self, other: &Score) -> std::cmp::Ordering {
        self.0.partial_cmp(&other.0).unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for Score {
    fn partial_cmp(&self, other: &Score) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A sorted set, ordered by (score, member bytes).
#[derive(Clone, Debug)]
pub(super) struct ZSet {
    order: BTreeSet<(Score, Bytes)>,
    scores: Map<Bytes, f64>,
    bytes: u64,
    /// Still small enough for Redis' listpack encoding, which stores scores
    /// as text and so turns `-0` into `0`; once past it Redis keeps `-0`.
    listpack: bool,
}

impl Default for ZSet {
    fn default() -> ZSet {
        ZSet { order: BTreeSet::new(), scores: Map::default(), bytes: 0, listpack: true }
    }
}

impl ZSet {
    pub(super) fn len(&self) -> usize {
        self.scores.len()
    }

    pub(super) fn score(&self, member: &[u8]) -> Option<f64> {
        self.scores.get(member).copied()
    }

    /// Sets `member`'s score (not NaN); true when it is new.
    pub(super) fn insert(&mut self, member: Bytes, score: f64) -> bool {
        let added = !self.remove(&member);
        if added && (self.len() + 1 > LISTPACK_ENTRIES || member.len() > LISTPACK_VALUE) {
            self.listpack = false;
        }
        let score = if self.listpack { score + 0.0 } else { score };
        self.bytes += member.len() as u64 + 8 + ELEMENT_OVERHEAD;
        self.order.insert((Score(score), member.clone()));
        self.scores.insert(member, score);
        added
    }

    /// Removes `member`; true when it was there.
    pub(super) fn remove(&mut self, member: &[u8]) -> bool {
        let Some((member, score)) = self.scores.remove_entry(member) else { return false };
        self.order.remove(&(Score(score), member.clone()));
        self.bytes -= member.len() as u64 + 8 + ELEMENT_OVERHEAD;
        true
    }

    /// (score, member) in order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = (f64, &Bytes)> {
        self.order.iter().map(|(s, m)| (s.0, m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn hashes_keep_insertion_order_and_count_bytes() {
        let mut h = Hash::default();
        for i in 0..40 {
            h.insert(b(&format!("f{i}")), b("v"));
        }
        for i in 0..30 {
            assert!(h.remove(format!("f{i}").as_bytes()));
        }
        assert!(!h.insert(b("f35"), b("longer")));
        let fields: Vec<_> = h.iter().map(|(f, _)| f.clone()).collect();
        assert_eq!(fields.first(), Some(&b("f30")));
        assert_eq!(h.get(b"f35"), Some(&b("longer")));
        let expected: u64 = h.iter().map(|(f, v)| (f.len() + v.len()) as u64 + ELEMENT_OVERHEAD).sum();
        assert_eq!(Data::Hash(h).bytes(), expected);
    }

    #[test]
    fn small_integer_sets_are_numeric_until_a_string_joins() {
        let mut s = Set::default();
        for m in ["10", "-2", "3"] {
            s.insert(b(m));
        }
        assert_eq!(s.members(), [&b("-2"), &b("3"), &b("10")]);
        s.insert(b("x"));
        s.remove(b"x");
        assert_eq!(s.members(), [&b("10"), &b("-2"), &b("3")]);
    }

    #[test]
    fn sorted_sets_order_by_score_then_member() {
        let mut z = ZSet::default();
        z.insert(b("b"), 1.0);
        z.insert(b("a"), 1.0);
        z.insert(b("c"), -0.0);
        z.insert(b("b"), 0.5);
        let order: Vec<_> = z.iter().map(|(s, m)| (s, m.clone())).collect();
        assert_eq!(order, [(0.0, b("c")), (0.5, b("b")), (1.0, b("a"))]);
        assert!(z.score(b"c").is_some_and(|s| s.is_sign_positive()), "listpack-sized: -0 stored as 0");
        assert!(z.remove(b"a") && !z.remove(b"a"));
        assert_eq!(Data::ZSet(z).bytes(), 2 * (1 + 8 + ELEMENT_OVERHEAD));
        let mut big = ZSet::default();
        big.insert(Bytes::from(vec![b'm'; 65]), -0.0);
        big.insert(b("a"), 0.0);
        assert!(big.score(&[b'm'; 65]).is_some_and(|s| s.is_sign_negative()), "skiplist keeps -0");
        let order: Vec<_> = big.iter().map(|(_, m)| m.len()).collect();
        assert_eq!(order, [1, 65], "-0 and 0 tie: member order");
    }
}
