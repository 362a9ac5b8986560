//! The near-cache: read replies kept in process memory (moka), bounded in
//! bytes, never older than the last write Redis acknowledged (beyond the
//! invalidation delivery window) and never alive after the key's TTL
//! upstream.
//!
//! Entries are grouped per Redis key: one moka entry per key holds the
//! replies of every cached command *shape* on it (`GET k`, `HGET k f`, …,
//! per protocol version), so an invalidation of the key drops them all at
//! once. Coherence with other writers comes from server-assisted
//! invalidation ([`tracking`] calls [`NearCache::invalidate`]);
//! writes through the proxy invalidate locally before they are forwarded.
//!
//! **Fill race.** A miss opens a *flight* for (key, shape) before the read
//! goes upstream; an invalidation of the key marks its flights void, and a
//! void flight's reply is passed on but not cached. Both happen under one
//! lock, so a reply read before a write can never be cached after that
//! write's invalidation. Concurrent misses of the same (key, shape) join
//! the open flight instead of reading again (single flight).
//!
//! **Channels.** Each upstream node has its invalidation channel. With one
//! Redis, the cache serves only while its channel receives. With a Redis
//! Cluster, each channel covers its node's keys (the cluster's slot map
//! says which): a node's channel lost drops that node's keys and stops
//! serving (and filling) them until it is back; the other nodes' keys are
//! served meanwhile.

mod doorkeeper;
mod entry;
mod memo;
mod policy;
pub mod read;
pub mod shape;
pub mod tracking;

pub use memo::Hit;
pub use policy::{Admission, CacheConfig, Policy};

use doorkeeper::Doorkeeper;
use entry::KeyEntry;

use crate::commands::{key_indices, Command, Flags, Keys};
use crate::glob;
use crate::observe;
use crate::protocol::Args;
use crate::router::cluster::{SlotMap, MAX_NODES};
use crate::router::NodeId;
use crate::upstream::pool::JobResult;
use crate::upstream::UpstreamError;
use arc_swap::ArcSwap;
use bytes::{Bytes, BytesMut};
use moka::notification::RemovalCause;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

struct EntryExpiry;

impl moka::Expiry<Bytes, Arc<KeyEntry>> for EntryExpiry {
    fn expire_after_create(&self, _: &Bytes, value: &Arc<KeyEntry>, now: Instant) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &Bytes,
        value: &Arc<KeyEntry>,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(value.expires_at.saturating_duration_since(now))
    }
}

/// A read of (key, shape) in progress upstream.
struct Flight {
    id: u64,
    shape: Bytes,
    /// Cleared by an invalidation of the key: the reply is not cached and no
    /// one new joins.
    valid: bool,
    waiters: Vec<oneshot::Sender<JobResult>>,
}

/// What a read finds.
pub enum Read {
    /// The cached reply.
    Hit(Bytes),
    /// Not cached: read upstream, then [`FillTicket::complete`].
    Miss(FillTicket),
    /// The same read is already in flight: its reply will arrive here.
    Join(oneshot::Receiver<JobResult>),
}

/// Keys are chosen by clients: the hash must be seeded (flood-resistant),
/// but SipHash costs more than the rest of a miss.
type KeyHash = foldhash::quality::RandomState;

pub struct NearCache {
    /// Swapped whole by a reload (policies, TTLs).
    config: Arc<ArcSwap<CacheConfig>>,
    /// Wakes the tracking task when the tracked prefixes changed.
    retrack: tokio::sync::Notify,
    store: moka::sync::Cache<Bytes, Arc<KeyEntry>, KeyHash>,
    flights: Mutex<HashMap<Bytes, Vec<Flight>>>,
    next_flight: AtomicU64,
    /// True only while invalidations are being received.
    active: AtomicBool,
    /// Invalidation channels (one per upstream node) not receiving, and
    /// which (a bit per node): with one Redis the cache serves only while
    /// none is down; with a cluster, the keys of the nodes whose channel
    /// is up.
    channels_down: AtomicUsize,
    down: Box<[AtomicU64]>,
    /// A Redis Cluster's slot map: which node's channel covers a key.
    partition: OnceLock<SlotMap>,
    /// Tracking is back but failover still serves the entries kept from
    /// before: they are dropped, and the cache activated, when it ends.
    restored: AtomicBool,
    /// Set with `admission = "second"`.
    doorkeeper: Option<Doorkeeper>,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Changes with every clear; the memo's slots are stamped with it.
    epoch: AtomicU64,
    /// Counts invalidations, so a memo slot knows when to check whether
    /// its entry was voided.
    invalidations: AtomicU64,
    /// Hashes a key once per read, for the memo and the doorkeeper.
    hasher: KeyHash,
}

/// Epochs are unique across the process, so a thread's memo never mistakes
/// one cache's entries for another's.
fn next_epoch() -> u64 {
    static EPOCHS: AtomicU64 = AtomicU64::new(1);
    EPOCHS.fetch_add(1, Ordering::Relaxed)
}

/// Scratch space a session reuses across requests.
#[derive(Default)]
pub struct Scratch {
    pub(crate) shape: Vec<u8>,
    pub(crate) keys: Vec<usize>,
    pub(crate) settings: Settings,
}

/// A session's handle on the cache settings: while no reload replaced them,
/// reading them costs one atomic load (a plain `ArcSwap::load` costs about
/// as much as the rest of a cache miss's bookkeeping).
#[derive(Default)]
pub(crate) struct Settings(Option<arc_swap::cache::Cache<Arc<ArcSwap<CacheConfig>>, Arc<CacheConfig>>>);

/// Numbers for `/cache/stats`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub entries: u64,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
    pub active: bool,
}

impl NearCache {
    pub fn new(config: CacheConfig) -> Arc<NearCache> {
        let store = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            .weigher(|_, entry: &Arc<KeyEntry>| entry.charge())
            .expire_after(EntryExpiry)
            .eviction_listener(|_, entry: Arc<KeyEntry>, cause| {
                entry.void();
                match cause {
                    RemovalCause::Size => observe::cache_eviction("size"),
                    RemovalCause::Expired => observe::cache_eviction("ttl"),
                    RemovalCause::Explicit => observe::cache_eviction("invalidation"),
                    RemovalCause::Replaced => {}
                }
            })
            .build_with_hasher(KeyHash::default());
        let doorkeeper = (config.admission == Admission::Second).then(|| Doorkeeper::new(config.admission_window));
        Arc::new(NearCache {
            store,
            flights: Mutex::new(HashMap::new()),
            next_flight: AtomicU64::new(1),
            active: AtomicBool::new(false),
            channels_down: AtomicUsize::new(0),
            down: (0..MAX_NODES.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            partition: OnceLock::new(),
            restored: AtomicBool::new(false),
            doorkeeper,
            config: Arc::new(ArcSwap::from_pointee(config)),
            retrack: tokio::sync::Notify::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            epoch: AtomicU64::new(next_epoch()),
            invalidations: AtomicU64::new(0),
            hasher: KeyHash::default(),
        })
    }

    pub fn config(&self) -> Arc<CacheConfig> {
        self.config.load_full()
    }

    /// Applies reloaded settings: policies, `default_ttl` and `stale_for`
    /// change live (what is cached was cached under the old ones, so the
    /// cache is cleared, and tracking re-subscribes if its prefixes
    /// changed). Returns whether they changed, and the keys that differ but
    /// need a restart.
    pub fn reconfigure(&self, new: &CacheConfig) -> (bool, Vec<&'static str>) {
        let old = self.config.load_full();
        let mut restart = Vec::new();
        for (key, differs) in [
            ("cache.enabled", old.enabled != new.enabled),
            ("cache.max_bytes", old.max_bytes != new.max_bytes),
            ("cache.admission", old.admission != new.admission),
            ("cache.admission_window", old.admission_window != new.admission_window),
        ] {
            if differs {
                restart.push(key);
            }
        }
        let live = CacheConfig {
            default_ttl: new.default_ttl,
            policies: new.policies.clone(),
            stale_for: new.stale_for,
            ..(*old).clone()
        };
        let changed = live != *old;
        if changed {
            let retrack = live.tracking_prefixes() != old.tracking_prefixes();
            self.config.store(Arc::new(live));
            self.clear();
            if retrack {
                self.retrack.notify_one();
            }
            tracing::info!(retrack, "cache policies reloaded: cache cleared");
        }
        (changed, restart)
    }

    /// Resolves when a reload changed the prefixes to track.
    pub(crate) async fn retrack_requested(&self) {
        self.retrack.notified().await
    }

    /// True while reads may be served from and filled into the cache.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// The upstream is a Redis Cluster whose slots `map` says where each
    /// key lives: each node's channel covers its keys only.
    pub fn partition(&self, map: SlotMap) {
        let _ = self.partition.set(map);
    }

    /// Whether a read of `key` may be served from, or filled into, the
    /// cache: every channel receives, or (with a cluster) that of the
    /// node serving `key`.
    #[inline]
    pub(crate) fn covers(&self, key: &[u8]) -> bool {
        self.channels_down.load(Ordering::Acquire) == 0 || self.covers_partly(key)
    }

    #[cold]
    fn covers_partly(&self, key: &[u8]) -> bool {
        self.partition.get().is_some_and(|map| !self.is_down(map.key_node(key)))
    }

    fn is_down(&self, node: NodeId) -> bool {
        self.down.get(node / 64).is_some_and(|word| word.load(Ordering::Acquire) & (1 << (node % 64)) != 0)
    }

    /// Notes `node`'s channel down or up; counts it if that changed.
    fn mark(&self, node: NodeId, down: bool) {
        let Some(word) = self.down.get(node / 64) else { return };
        let bit = 1 << (node % 64);
        let before = match down {
            true => word.fetch_or(bit, Ordering::AcqRel),
            false => word.fetch_and(!bit, Ordering::AcqRel),
        };
        match (down, before & bit != 0) {
            (true, false) => {
                self.channels_down.fetch_add(1, Ordering::AcqRel);
            }
            (false, true) => {
                self.channels_down.fetch_sub(1, Ordering::AcqRel);
            }
            _ => {}
        }
    }

    /// `node`'s invalidation channel was lost: writes there may now go
    /// unnoticed, so hits of its keys stop (with one Redis: all hits).
    /// Its entries are dropped, unless `keep_for_failover`: then failover
    /// may still serve them (see [`NearCache::stale`]).
    pub fn tracking_lost(&self, node: NodeId, keep_for_failover: bool) {
        let mut flights = self.lock();
        self.mark(node, true);
        observe::tracking_connected(false);
        if let Some(map) = self.partition.get() {
            // Dropped when the channel is back (see `tracking_restored`).
            if !keep_for_failover {
                self.drop_node_locked(&mut flights, map, node);
            }
            return;
        }
        if !keep_for_failover {
            self.clear_locked(&mut flights);
        }
        self.active.store(false, Ordering::Release);
        self.restored.store(false, Ordering::Release);
    }

    /// `node`'s invalidations flow again. What is cached may have changed
    /// upstream meanwhile, so it is dropped before hits resume — unless
    /// failover is still serving it (`in_failover`), then that waits for
    /// [`NearCache::failover_ended`].
    pub fn tracking_restored(&self, node: NodeId, in_failover: impl Fn() -> bool) {
        let mut flights = self.lock();
        self.mark(node, false);
        let down = self.channels_down.load(Ordering::Acquire);
        if down == 0 {
            observe::tracking_connected(true);
        }
        if let Some(map) = self.partition.get() {
            // Keys of slots that moved to the node while its channel was
            // down were cached under another node's channel.
            self.drop_node_locked(&mut flights, map, node);
            self.active.store(true, Ordering::Release);
            return;
        }
        if down > 0 {
            return;
        }
        self.restored.store(true, Ordering::Release);
        if !in_failover() {
            self.activate_locked(&mut flights);
        }
    }

    /// One more invalidation channel (a node seen for the first time):
    /// until it receives, writes on that node go unseen, so hits of its
    /// keys stop and they are dropped.
    pub fn channel_added(&self, node: NodeId) {
        self.tracking_lost(node, false);
    }

    /// Drops what is cached, and voids what is being read, of the keys
    /// `map` places on `node`.
    fn drop_node_locked(&self, flights: &mut HashMap<Bytes, Vec<Flight>>, map: &SlotMap, node: NodeId) {
        for (key, key_flights) in flights.iter_mut() {
            if map.key_node(key) == node {
                key_flights.iter_mut().for_each(|f| f.valid = false);
            }
        }
        let keys: Vec<Arc<Bytes>> = self.store.iter().map(|(k, _)| k).filter(|k| map.key_node(k) == node).collect();
        for key in &keys {
            self.evict(key);
        }
        observe::cache_invalidation();
    }

    /// Failover is over: activates the cache if tracking is back.
    pub fn failover_ended(&self) {
        let mut flights = self.lock();
        if self.restored.load(Ordering::Acquire) && !self.is_active() {
            self.activate_locked(&mut flights);
        }
    }

    fn activate_locked(&self, flights: &mut HashMap<Bytes, Vec<Flight>>) {
        self.clear_locked(flights);
        self.active.store(true, Ordering::Release);
    }

    /// What failover may serve for (key, shape): an entry still alive, past
    /// its policy TTL only when `serve_stale` kept it.
    /// Also tells when the key expires upstream, if it has a TTL there.
    pub fn stale(&self, key: &[u8], shape: &[u8]) -> Option<(Bytes, Option<Instant>)> {
        let entry = self.store.get(key)?;
        Some((Bytes::copy_from_slice(entry.parts.reply(shape)?), entry.upstream_expiry))
    }

    /// The current settings, through a session's handle on them.
    fn settings<'a>(&self, handle: &'a mut Settings) -> &'a CacheConfig {
        handle.0.get_or_insert_with(|| arc_swap::cache::Cache::new(self.config.clone())).load()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Bytes, Vec<Flight>>> {
        self.flights.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a read of `key` may use the cache now, and for how long its
    /// reply may be kept: the cache is active, a policy caches the key and
    /// (with `admission = "second"`) the key was read recently before. A
    /// refused read counts as a miss and goes upstream as it is.
    pub(crate) fn admit(&self, key: &[u8], hash: u64, settings: &mut Settings) -> Option<Duration> {
        if !self.is_active() || !self.covers(key) {
            return None;
        }
        let ttl = self.settings(settings).ttl_for(key)?;
        if self.doorkeeper.as_ref().is_some_and(|d| !d.seen_before(hash)) {
            self.misses.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(ttl)
    }

    /// Looks `shape` of an admitted `key` (whose [`NearCache::hash`] is
    /// `hash`) up; on a miss opens (or joins) a flight whose reply will be
    /// kept for `ttl`.
    pub fn read(self: &Arc<Self>, key: &[u8], hash: u64, shape: &[u8], ttl: Duration, now: Instant) -> Read {
        if let Some(reply) = self.cached(key, hash, shape, now) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Read::Hit(reply);
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut flights = self.lock();
        let key_flights = flights.entry(Bytes::copy_from_slice(key)).or_default();
        if let Some(flight) = key_flights.iter_mut().find(|f| f.valid && f.shape == shape) {
            let (tx, rx) = oneshot::channel();
            flight.waiters.push(tx);
            return Read::Join(rx);
        }
        let id = self.next_flight.fetch_add(1, Ordering::Relaxed);
        let shape = Bytes::copy_from_slice(shape);
        key_flights.push(Flight { id, shape: shape.clone(), valid: true, waiters: Vec::new() });
        Read::Miss(FillTicket { cache: self.clone(), key: Bytes::copy_from_slice(key), shape, id, ttl, done: false })
    }

    /// A read's hash of `key`, for [`NearCache::memoised`] and
    /// [`NearCache::admit`].
    pub fn hash(&self, key: &[u8]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The reply for (key, shape) from this thread's memo of recent hits
    /// (see `memo`), before any admission check, appended to `out` if
    /// given: the reply of the first of the key's shapes `shape` accepts.
    /// `None`: ask [`NearCache::admit`] and [`NearCache::read`].
    pub fn memoised(
        &self,
        key: &[u8],
        hash: u64,
        now: Instant,
        shape: impl Fn(&[u8]) -> bool,
        out: Option<&mut BytesMut>,
    ) -> Option<Hit> {
        if !self.covers(key) {
            return None;
        }
        let hit = memo::get(hash, self.stamp(), key, now, shape, out)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(hit)
    }

    fn cached(&self, key: &[u8], hash: u64, shape: &[u8], now: Instant) -> Option<Bytes> {
        // Taken before the lookup: a change after it shows in the memo.
        let stamp = self.stamp();
        let entry = self.store.get(key).filter(|e| e.fresh_until > now)?;
        memo::put(hash, stamp, &entry);
        entry.parts.reply(shape).map(Bytes::copy_from_slice)
    }

    fn stamp(&self) -> memo::Stamp {
        memo::Stamp {
            epoch: self.epoch.load(Ordering::Acquire),
            invalidations: self.invalidations.load(Ordering::Acquire),
        }
    }

    /// A client sent a write through the proxy: drop what it touches before
    /// it is forwarded, so the client reads its own write even before Redis'
    /// invalidation arrives. A write whose keys are unknown (FLUSHDB,
    /// SWAPDB, …) clears everything.
    #[inline]
    pub fn note_write(&self, cmd: &Command, args: &Args, scratch: &mut Scratch) {
        if cmd.flags.contains(Flags::WRITE) && self.is_active() {
            self.evict_written(cmd, args, scratch);
        }
    }

    fn evict_written(&self, cmd: &Command, args: &Args, scratch: &mut Scratch) {
        if cmd.keys == Keys::None {
            self.clear();
            return;
        }
        if key_indices(cmd, args, &mut scratch.keys).is_err() {
            return;
        }
        let settings = self.settings(&mut scratch.settings);
        for key in scratch.keys.iter().filter_map(|&i| args.get(i)) {
            if settings.ttl_for(key).is_some() {
                self.invalidate(key);
            }
        }
    }

    /// Drops everything cached for `key` and voids its reads in flight.
    pub fn invalidate(&self, key: &[u8]) {
        let mut flights = self.lock();
        if let Some(key_flights) = flights.get_mut(key) {
            key_flights.iter_mut().for_each(|f| f.valid = false);
        }
        self.evict(key);
        observe::cache_invalidation();
    }

    /// Removes `key`'s entry, voids it and counts the invalidation, in that
    /// order (not left to the eviction listener): no memo serves the entry
    /// once this returns.
    fn evict(&self, key: &[u8]) {
        if let Some(entry) = self.store.remove(key) {
            entry.void();
        }
        self.invalidations.fetch_add(1, Ordering::Release);
    }

    /// Drops everything (a flush upstream, or a write whose keys are
    /// unknown).
    pub fn clear(&self) {
        let mut flights = self.lock();
        self.clear_locked(&mut flights);
    }

    fn clear_locked(&self, flights: &mut HashMap<Bytes, Vec<Flight>>) {
        flights.values_mut().flatten().for_each(|f| f.valid = false);
        self.store.invalidate_all();
        self.epoch.store(next_epoch(), Ordering::Release);
        observe::cache_invalidation();
    }

    /// Drops every key matching a glob pattern; returns how many.
    pub fn invalidate_matching(&self, pattern: &[u8]) -> usize {
        let keys: Vec<Arc<Bytes>> = self.store.iter().map(|(k, _)| k).filter(|k| glob::matches(pattern, k)).collect();
        let mut flights = self.lock();
        for (key, key_flights) in flights.iter_mut() {
            if glob::matches(pattern, key) {
                key_flights.iter_mut().for_each(|f| f.valid = false);
            }
        }
        for key in &keys {
            self.evict(key);
        }
        keys.len()
    }

    /// Brings the hit and miss counters of `/metrics` up to date: reads
    /// count them once, in the cache's own counters, and a scrape copies
    /// them over.
    pub fn publish_counts(&self) {
        observe::cache_counts(self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed));
    }

    pub fn stats(&self) -> Stats {
        self.store.run_pending_tasks();
        Stats {
            entries: self.store.entry_count(),
            bytes: self.store.weighted_size(),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            active: self.is_active(),
        }
    }

    /// Ends flight `id` of `key`: its waiters get `result`; the reply is
    /// cached for `ttl` when the flight is still valid.
    fn land(&self, key: &Bytes, shape: &Bytes, id: u64, result: JobResult, ttl: Option<Lifetime>) {
        let mut flights = self.lock();
        let Some(key_flights) = flights.get_mut(key) else {
            return;
        };
        let Some(pos) = key_flights.iter().position(|f| f.id == id) else {
            return;
        };
        let flight = key_flights.swap_remove(pos);
        if key_flights.is_empty() {
            flights.remove(key);
        }
        if let (true, Ok(reply), Some(ttl)) = (flight.valid, &result, ttl) {
            self.insert(key, shape, reply.clone(), ttl);
        }
        for waiter in flight.waiters {
            let _ = waiter.send(result.clone());
        }
    }

    fn insert(&self, key: &Bytes, shape: &Bytes, reply: Bytes, ttl: Lifetime) {
        let now = Instant::now();
        let (mut fresh_until, mut expires_at) = (now + ttl.fresh, now + ttl.life);
        let upstream_expiry = ttl.upstream.map(|d| now + d);
        // Only a fresh entry's other shapes are kept; a stale one (kept
        // past its TTL for failover) would make the new entry stale at once.
        let old = self.store.get(key).filter(|old| old.fresh_until > now);
        if let Some(old) = &old {
            fresh_until = fresh_until.min(old.fresh_until);
            expires_at = expires_at.min(old.expires_at);
        }
        // The entry copies the reply out of the upstream read buffer (it
        // would otherwise pin that whole buffer, memory the byte bound does
        // not see) together with the other shapes already cached.
        let kept = old.iter().flat_map(|old| old.parts.pairs()).filter(|(s, _)| s != shape);
        let pairs = std::iter::once((&shape[..], &reply[..])).chain(kept);
        if let Some(entry) = KeyEntry::new(key, pairs, fresh_until, expires_at, upstream_expiry) {
            self.store.insert(key.clone(), Arc::new(entry));
        }
        observe::cache_size(self.store.entry_count(), self.store.weighted_size());
    }
}

/// How long a filled entry is served (`fresh`) and kept (`life`).
#[derive(Clone, Copy)]
struct Lifetime {
    fresh: Duration,
    life: Duration,
    /// The key's TTL upstream.
    upstream: Option<Duration>,
}

/// The right (and duty) to complete one flight. Dropped without
/// completing, it fails the flight so joined readers are never stranded.
pub struct FillTicket {
    cache: Arc<NearCache>,
    key: Bytes,
    shape: Bytes,
    id: u64,
    ttl: Duration,
    done: bool,
}

impl FillTicket {
    /// The Redis key being read.
    pub fn key(&self) -> &Bytes {
        &self.key
    }

    /// The upstream reply arrived; `pttl_ms` is the key's PTTL read in the
    /// same round trip (-1 no expiry, -2 no key), which caps the entry's
    /// life.
    pub fn complete(mut self, reply: Bytes, pttl_ms: Option<i64>) {
        self.done = true;
        let upstream = match pttl_ms {
            Some(ms) if ms >= 0 => Some(Duration::from_millis(ms as u64)),
            Some(_) => None,
            // The PTTL reply was missing or unexpected: pass on, don't cache.
            None => return self.cache.land(&self.key, &self.shape, self.id, Ok(reply), None),
        };
        let cap = |d: Duration| upstream.map_or(d, |u| d.min(u));
        let stale = self.cache.config.load().stale_for.unwrap_or_default();
        let ttl = Some(Lifetime { fresh: cap(self.ttl), life: cap(self.ttl.saturating_add(stale)), upstream });
        self.cache.land(&self.key, &self.shape, self.id, Ok(reply), ttl);
    }

    /// The upstream read failed.
    pub fn fail(mut self, err: UpstreamError) {
        self.done = true;
        self.cache.land(&self.key, &self.shape, self.id, Err(err), None);
    }
}

impl Drop for FillTicket {
    fn drop(&mut self) {
        if !self.done {
            let err = UpstreamError::Unavailable("the reading client went away".into());
            self.cache.land(&self.key, &self.shape, self.id, Err(err), None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> Arc<NearCache> {
        let c = NearCache::new(CacheConfig { admission: Admission::First, ..CacheConfig::default() });
        c.tracking_restored(0, || false);
        c
    }

    const TTL: Duration = Duration::from_secs(60);

    fn read(c: &Arc<NearCache>, key: &[u8], shape: &[u8], ttl: Duration, now: Instant) -> Read {
        c.read(key, c.hash(key), shape, ttl, now)
    }

    fn miss(c: &Arc<NearCache>, key: &str) -> FillTicket {
        match read(c, key.as_bytes(), b"get", TTL, Instant::now()) {
            Read::Miss(t) => t,
            _ => panic!("expected a miss"),
        }
    }

    #[test]
    fn fill_then_hit() {
        let c = cache();
        miss(&c, "k").complete(Bytes::from_static(b"$1\r\nv\r\n"), Some(-1));
        assert!(matches!(read(&c, b"k", b"get", TTL, Instant::now()), Read::Hit(r) if &r[..] == b"$1\r\nv\r\n"));
        assert!(matches!(read(&c, b"k", b"strlen", TTL, Instant::now()), Read::Miss(_)));
    }

    #[test]
    fn invalidation_during_flight_prevents_caching() {
        let c = cache();
        let ticket = miss(&c, "k");
        c.invalidate(b"k");
        ticket.complete(Bytes::from_static(b"$3\r\nold\r\n"), Some(-1));
        assert!(matches!(read(&c, b"k", b"get", TTL, Instant::now()), Read::Miss(_)));
    }

    #[test]
    fn concurrent_misses_share_one_read() {
        let c = cache();
        let ticket = miss(&c, "k");
        let Read::Join(mut rx) = read(&c, b"k", b"get", TTL, Instant::now()) else { panic!("expected to join") };
        ticket.complete(Bytes::from_static(b"$1\r\nv\r\n"), Some(-1));
        assert_eq!(rx.try_recv().unwrap().unwrap(), Bytes::from_static(b"$1\r\nv\r\n"));
    }

    #[test]
    fn dropped_ticket_releases_joiners() {
        let c = cache();
        let ticket = miss(&c, "k");
        let Read::Join(mut rx) = read(&c, b"k", b"get", TTL, Instant::now()) else { panic!("expected to join") };
        drop(ticket);
        assert!(rx.try_recv().unwrap().is_err());
        assert!(matches!(read(&c, b"k", b"get", TTL, Instant::now()), Read::Miss(_)));
    }

    #[test]
    fn upstream_ttl_caps_the_entry() {
        let c = cache();
        miss(&c, "k").complete(Bytes::from_static(b"+x\r\n"), Some(30));
        assert!(matches!(read(&c, b"k", b"get", TTL, Instant::now()), Read::Hit(_)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(read(&c, b"k", b"get", TTL, Instant::now()), Read::Miss(_)));
    }

    #[test]
    fn a_stale_entry_is_replaced_by_a_fresh_fill() {
        let stale_for = Some(Duration::from_secs(60));
        let c = NearCache::new(CacheConfig { admission: Admission::First, stale_for, ..CacheConfig::default() });
        c.tracking_restored(0, || false);
        let ttl = Duration::from_millis(30);
        let Read::Miss(ticket) = read(&c, b"k", b"get", ttl, Instant::now()) else { panic!("expected a miss") };
        ticket.complete(Bytes::from_static(b"+old\r\n"), Some(-1));
        std::thread::sleep(Duration::from_millis(50));
        let Read::Miss(ticket) = read(&c, b"k", b"get", ttl, Instant::now()) else { panic!("stale: a miss") };
        ticket.complete(Bytes::from_static(b"+new\r\n"), Some(-1));
        assert!(matches!(read(&c, b"k", b"get", ttl, Instant::now()), Read::Hit(r) if &r[..] == b"+new\r\n"));
    }

    #[test]
    fn inactive_cache_bypasses_and_activation_clears() {
        let c = cache();
        miss(&c, "k").complete(Bytes::from_static(b"+x\r\n"), Some(-1));
        c.tracking_lost(0, false);
        assert_eq!(c.admit(b"k", c.hash(b"k"), &mut Settings::default()), None);
        c.tracking_restored(0, || false);
        assert!(matches!(read(&c, b"k", b"get", TTL, Instant::now()), Read::Miss(_)));
    }

    #[test]
    fn second_sight_admission() {
        let c = NearCache::new(CacheConfig::default());
        assert_eq!(c.config().admission, Admission::Second, "the default");
        c.tracking_restored(0, || false);
        let mut settings = Settings::default();
        assert_eq!(c.admit(b"k", c.hash(b"k"), &mut settings), None);
        assert_eq!(c.admit(b"k", c.hash(b"k"), &mut settings), Some(Duration::from_secs(60)));
    }

    /// A read as a session makes it: this thread's memo, then the store.
    fn lookup(c: &Arc<NearCache>, key: &str) -> Read {
        let now = Instant::now();
        match c.memoised(key.as_bytes(), c.hash(key.as_bytes()), now, |s| s == b"get", None) {
            Some(Hit::Reply(reply)) => Read::Hit(reply),
            Some(Hit::Written) => panic!("no output was given"),
            None => read(c, key.as_bytes(), b"get", TTL, now),
        }
    }

    /// A second read is served by this thread's memo: it must still see
    /// every invalidation, clear and other cache.
    fn memoised(c: &Arc<NearCache>, key: &str) {
        miss(c, key).complete(Bytes::from_static(b"+x\r\n"), Some(-1));
        assert_memoised(c, key);
    }

    /// A hit, after which this thread's memo holds the key.
    fn assert_memoised(c: &Arc<NearCache>, key: &str) {
        assert!(matches!(lookup(c, key), Read::Hit(_)));
        assert!(
            c.memoised(key.as_bytes(), c.hash(key.as_bytes()), Instant::now(), |s| s == b"get", None).is_some(),
            "not memoised"
        );
    }

    #[test]
    fn invalidation_reaches_a_memoised_entry() {
        let c = cache();
        memoised(&c, "k");
        c.invalidate(b"k");
        assert!(matches!(lookup(&c, "k"), Read::Miss(_)));
    }

    #[test]
    fn clear_reaches_memoised_entries() {
        let c = cache();
        memoised(&c, "k");
        c.clear();
        assert!(matches!(lookup(&c, "k"), Read::Miss(_)));
    }

    #[test]
    fn a_memo_serves_only_its_own_cache() {
        let (a, b) = (cache(), cache());
        memoised(&a, "k");
        assert!(matches!(lookup(&b, "k"), Read::Miss(_)));
    }

    #[test]
    fn a_memoised_entry_still_expires() {
        let c = cache();
        miss(&c, "k").complete(Bytes::from_static(b"+x\r\n"), Some(40));
        assert_memoised(&c, "k");
        std::thread::sleep(Duration::from_millis(60));
        assert!(matches!(lookup(&c, "k"), Read::Miss(_)));
    }

    #[test]
    fn pattern_invalidation() {
        let c = cache();
        for k in ["secrets:1:a", "secrets:2:a", "flow:1"] {
            memoised(&c, k);
        }
        assert_eq!(c.invalidate_matching(b"secrets:*"), 2);
        assert!(matches!(lookup(&c, "flow:1"), Read::Hit(_)));
        assert!(matches!(lookup(&c, "secrets:1:a"), Read::Miss(_)));
    }
}
