//! One cached Redis key: the replies of every cached shape of it and how
//! long they live, laid out for the hit path: the key, the shapes and the
//! replies back to back in one buffer (one or two cache lines, instead of a
//! pointer to chase per part), which the memo (`memo`) shares.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// The key, then (shape, reply) pairs; each part is prefixed with its
/// length (u32, little-endian).
#[derive(Debug, Clone)]
pub(super) struct Parts(Arc<[u8]>);

impl Parts {
    /// `None` when a part does not fit a u32 length.
    fn new<'a>(key: &[u8], pairs: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone) -> Option<Parts> {
        let size = 4 + key.len() + pairs.clone().map(|(s, r)| 8 + s.len() + r.len()).sum::<usize>();
        let mut parts = Vec::with_capacity(size);
        for part in std::iter::once(key).chain(pairs.flat_map(|(s, r)| [s, r])) {
            parts.extend_from_slice(&u32::try_from(part.len()).ok()?.to_le_bytes());
            parts.extend_from_slice(part);
        }
        Some(Parts(parts.into()))
    }

    pub fn key(&self) -> &[u8] {
        split(&self.0).map_or(&[], |(key, _)| key)
    }

    /// The (shape, reply) pairs.
    pub fn pairs(&self) -> impl Iterator<Item = (&[u8], &[u8])> + Clone {
        let mut rest = split(&self.0).map_or(&[][..], |(_, rest)| rest);
        std::iter::from_fn(move || {
            let (shape, after) = split(rest)?;
            let (reply, after) = split(after)?;
            rest = after;
            Some((shape, reply))
        })
    }

    pub fn reply(&self, shape: &[u8]) -> Option<&[u8]> {
        self.reply_where(|s| s == shape)
    }

    /// The reply of the first shape `matches` accepts.
    pub fn reply_where(&self, matches: impl Fn(&[u8]) -> bool) -> Option<&[u8]> {
        self.pairs().find(|(s, _)| matches(s)).map(|(_, reply)| reply)
    }

    /// Key and reply bytes, for the store's byte bound.
    pub fn weight(&self) -> u32 {
        u32::try_from(self.0.len()).unwrap_or(u32::MAX)
    }
}

/// What one entry costs beyond its bytes: the entry itself, moka's node,
/// deque and timer-wheel links and hash-table slot, the key's second copy
/// (moka's), and the allocator's headers. Measured with
/// `examples/cache_memory.rs` (process memory grew by ≈600 bytes per entry
/// more than the entries' bytes, with 16-byte values), so that
/// `cache.max_bytes` bounds what the cache really holds, whatever the size
/// of its values.
const ENTRY_OVERHEAD: u32 = 600;

#[derive(Debug)]
pub(super) struct KeyEntry {
    /// Set once the entry left the store: memos of it are not served.
    void: AtomicBool,
    /// Until when hits are served: the earliest of the policy TTL and the
    /// key's TTL upstream.
    pub fresh_until: Instant,
    pub parts: Parts,
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
        let parts = Parts::new(key, pairs)?;
        Some(KeyEntry { void: AtomicBool::new(false), fresh_until, parts, expires_at, upstream_expiry })
    }

    /// What the entry counts against `cache.max_bytes`: its bytes, the
    /// key's copy moka keeps, and [`ENTRY_OVERHEAD`].
    pub fn charge(&self) -> u32 {
        let key = u32::try_from(self.parts.key().len()).unwrap_or(u32::MAX);
        self.parts.weight().saturating_add(key).saturating_add(ENTRY_OVERHEAD)
    }

    pub fn void(&self) {
        self.void.store(true, Ordering::Release);
    }

    pub fn is_void(&self) -> bool {
        self.void.load(Ordering::Acquire)
    }
}

/// The first length-prefixed part of `bytes`, and what follows it.
pub(super) fn split(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_le_bytes(*len) as usize;
    (len <= rest.len()).then(|| rest.split_at(len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip() {
        let pairs = [(&b"get"[..], &b"$1\r\nv\r\n"[..]), (b"strlen", b":1\r\n"), (b"", b"")];
        let parts = Parts::new(b"k", pairs.iter().copied()).unwrap();
        assert_eq!(parts.key(), b"k");
        assert_eq!(parts.pairs().collect::<Vec<_>>(), pairs);
        assert_eq!(parts.reply(b"strlen"), Some(&b":1\r\n"[..]));
        assert_eq!(parts.reply(b"get "), None);
        assert_eq!(parts.weight(), 4 + 1 + 8 + 3 + 7 + 8 + 6 + 4 + 8);
        let now = Instant::now();
        let entry = KeyEntry::new(b"k", pairs.iter().copied(), now, now, None).unwrap();
        assert_eq!(entry.charge(), parts.weight() + 1 + ENTRY_OVERHEAD, "bytes, moka's key and the overhead");
    }
}
