//! One cached Redis key: the replies of every cached shape of it and how
//! long they live, laid out for the hit path. A hit reads the entry's first
//! cache line (voided? fresh?) and then one buffer holding the key, the
//! shapes and the replies back to back, instead of chasing a pointer per
//! part.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

#[derive(Debug)]
#[repr(C, align(64))]
pub(super) struct KeyEntry {
    /// Set once the entry left the store: memos of it are not served.
    void: AtomicBool,
    /// Until when hits are served: the earliest of the policy TTL and the
    /// key's TTL upstream.
    pub fresh_until: Instant,
    /// The key, then (shape, reply) pairs; each part is prefixed with its
    /// length (u32, little-endian).
    parts: Box<[u8]>,
    /// When the entry goes: `fresh_until`, or later (up to the key's TTL
    /// upstream) when failover may serve stale entries.
    pub expires_at: Instant,
    /// When the key expires upstream, if it has a TTL there.
    pub upstream_expiry: Option<Instant>,
}

impl KeyEntry {
    /// An entry of `key` with (shape, reply) `pairs`; `None` when a part
    /// does not fit a u32 length.
    pub fn new<'a>(
        key: &[u8],
        pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
        fresh_until: Instant,
        expires_at: Instant,
        upstream_expiry: Option<Instant>,
    ) -> Option<KeyEntry> {
        let size = 4 + key.len() + pairs.clone().map(|(s, r)| 8 + s.len() + r.len()).sum::<usize>();
        let mut parts = Vec::with_capacity(size);
        for part in std::iter::once(key).chain(pairs.flat_map(|(s, r)| [s, r])) {
            parts.extend_from_slice(&u32::try_from(part.len()).ok()?.to_le_bytes());
            parts.extend_from_slice(part);
        }
        let parts = parts.into_boxed_slice();
        Some(KeyEntry { void: AtomicBool::new(false), fresh_until, parts, expires_at, upstream_expiry })
    }

    pub fn key(&self) -> &[u8] {
        split(&self.parts).map_or(&[], |(key, _)| key)
    }

    /// The cached (shape, reply) pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        let mut rest = split(&self.parts).map_or(&[][..], |(_, rest)| rest);
        std::iter::from_fn(move || {
            let (shape, after) = split(rest)?;
            let (reply, after) = split(after)?;
            rest = after;
            Some((shape, reply))
        })
    }

    pub fn reply(&self, shape: &[u8]) -> Option<&[u8]> {
        self.pairs().find(|(s, _)| *s == shape).map(|(_, reply)| reply)
    }

    /// Key and reply bytes, for the store's byte bound.
    pub fn weight(&self) -> u32 {
        u32::try_from(self.parts.len()).unwrap_or(u32::MAX)
    }

    pub fn void(&self) {
        self.void.store(true, Ordering::Release);
    }

    pub fn is_void(&self) -> bool {
        self.void.load(Ordering::Acquire)
    }
}

/// The first length-prefixed part of `bytes`, and what follows it.
fn split(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    (len <= rest.len()).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let now = Instant::now();
        let pairs = [(&b"get"[..], &b"$1\r\nv\r\n"[..]), (b"strlen", b":1\r\n"), (b"", b"")];
        let entry = KeyEntry::new(b"k", pairs.iter().copied(), now, now, None).unwrap();
        assert_eq!(entry.key(), b"k");
        assert_eq!(entry.pairs().collect::<Vec<_>>(), pairs);
        assert_eq!(entry.reply(b"strlen"), Some(&b":1\r\n"[..]));
        assert_eq!(entry.reply(b"get "), None);
        assert_eq!(entry.weight(), 4 + 1 + 8 + 3 + 7 + 8 + 6 + 4 + 8);
    }

    #[test]
    fn the_hit_path_fields_share_one_cache_line() {
        assert_eq!(std::mem::align_of::<KeyEntry>(), 64);
        assert!(std::mem::offset_of!(KeyEntry, parts) + std::mem::size_of::<Box<[u8]>>() <= 64);
    }
}
