//! Failover to local memory while the upstream is unavailable (the circuit
//! breaker is not closed): reads are answered from the near-cache, then the
//! local [`store`]; writes are applied to the store and appended to the
//! [`journal`]; on recovery the journal is replayed upstream ([`replay`]),
//! in order, before the breaker closes and traffic goes upstream again.
//!
//! Failover serves the commands the command table gives a store handler
//! (`Command::store`); anything else gets `-TRYAGAIN`. While Redis answers
//! but refuses the replay (OOM, READONLY, …: the breaker keeps the reason),
//! everything gets `-TRYAGAIN` with that reason instead: local memory never
//! answers for a reachable Redis. One lock covers the store and the
//! journal, and the breaker closes under it, so a write is either journaled
//! before the last replay round or sent upstream after it — never stranded.
//!
//! Replay runs while failover keeps journaling, so clients writing faster
//! than rounds complete would keep it from ever finding the journal empty.
//! The last round therefore *drains*: once what is left fits in one round,
//! sessions hold their next requests ([`Failover::wait_drained`]) until it
//! is done, then send them upstream (or to failover, if recovery failed).

pub mod journal;
mod replay;
mod seed;
pub mod slots;
pub mod store;

use crate::cache::{shape, NearCache, Scratch};
use crate::commands::{key_indices, Command, Flags};
use crate::observe;
use crate::protocol::{encode, Args, Proto};
use crate::upstream::pool::Health;
use bytes::Bytes;
use journal::{Journal, JournalError};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use store::Store;
use tokio::sync::Notify;

pub use replay::{recover, recover_slots};

/// When the journal file is synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every write (slow, nothing acknowledged is lost on a crash).
    Always,
    /// Once a second (a crash loses at most a second of writes).
    EverySec,
    /// Left to the OS.
    No,
}

/// What recovery does with the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnRecover {
    /// Replay it upstream, in order.
    Replay,
    /// Drop it (counted and logged): the upstream's data wins.
    Discard,
}

/// `[failover]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FailoverConfig {
    pub enabled: bool,
    /// Serve near-cache entries past their policy TTL (never past the key's
    /// TTL upstream), for at most `max_stale`.
    pub serve_stale: bool,
    pub max_stale: Duration,
    /// Bound on the local store.
    pub max_bytes: u64,
    /// Bound on the journal; past it, failover writes are refused.
    pub journal_max_bytes: u64,
    pub journal_path: Option<PathBuf>,
    pub fsync: Fsync,
    pub dead_letter_path: Option<PathBuf>,
    pub on_recover: OnRecover,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        FailoverConfig {
            enabled: true,
            serve_stale: true,
            max_stale: Duration::from_secs(3600),
            max_bytes: 64 * 1024 * 1024,
            journal_max_bytes: 64 * 1024 * 1024,
            journal_path: None,
            fsync: Fsync::EverySec,
            dead_letter_path: None,
            on_recover: OnRecover::Replay,
        }
    }
}

/// What `/ready` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub upstream_up: bool,
    pub failover: bool,
    pub enabled: bool,
    pub journal_entries: usize,
    pub dead_letters: usize,
    /// The upstream answers but refuses the journal's replay: why.
    pub replay_refused: Option<String>,
    /// The upstream refused the proxy's last connection attempt: why (a
    /// single Redis; no outage, the circuit stays closed).
    pub refusing: Option<String>,
    /// How many times the circuit opened since start.
    pub circuit_opened: u64,
}

pub struct Failover {
    config: FailoverConfig,
    health: Arc<Health>,
    cache: Arc<NearCache>,
    local: Mutex<Memory>,
    /// Set while the last replay round is in flight.
    draining: AtomicBool,
    /// Notified when it is done (or failed).
    drained: Notify,
    /// With a Redis Cluster: the slots with journaled writes (failover is
    /// per slot, see [`slots`]).
    pending: Option<slots::Pending>,
    /// With a Redis Cluster: the masters that answered but refused the
    /// last replay, and why (see
    /// [`Breaker::refusal_reason`](crate::upstream::breaker) for a single
    /// Redis).
    replay_refused: Mutex<Vec<(Arc<Health>, String)>>,
}

/// Where a request failover may serve would go upstream.
#[derive(Clone, Copy)]
pub enum Scope<'a> {
    /// The one Redis.
    Single,
    /// A cluster's `slot`, served by the master whose health is `health`.
    Slot { slot: u16, health: &'a Health },
}

/// The store and the journal, under one lock.
struct Memory {
    store: Store,
    journal: Journal,
}

impl Failover {
    /// Opens the journal. Entries a previous run left in its file are
    /// applied to the store and keep the breaker open until they have been
    /// replayed upstream.
    /// With `cluster`, failover is per slot (see [`slots`]).
    pub fn new(
        config: FailoverConfig,
        health: Arc<Health>,
        cache: Arc<NearCache>,
        cluster: bool,
    ) -> Result<Failover, JournalError> {
        let slot_of: fn(&[u8]) -> u16 = if cluster { slots::of_entry } else { |_| 0 };
        let (journal, loaded) = Journal::open(&config, slot_of)?;
        let mut store = Store::new(config.max_bytes);
        let pending = cluster.then(slots::Pending::default);
        if !loaded.is_empty() {
            tracing::warn!(
                entries = loaded.len(),
                "journal holds writes of a previous run: serving from local memory until they are replayed upstream"
            );
            rebuild(&mut store, &loaded);
            match &pending {
                Some(pending) => loaded.iter().for_each(|entry| pending.add(slot_of(entry))),
                None => health.breaker.trip(),
            }
        }
        Ok(Failover {
            config,
            health,
            cache,
            local: Mutex::new(Memory { store, journal }),
            draining: AtomicBool::new(false),
            drained: Notify::new(),
            pending,
            replay_refused: Mutex::new(Vec::new()),
        })
    }

    pub fn config(&self) -> &FailoverConfig {
        &self.config
    }

    /// True while requests are served from local memory (with one Redis;
    /// a cluster's failover is per slot: see [`Failover::covers`]).
    pub fn active(&self) -> bool {
        self.config.enabled && self.pending.is_none() && !self.health.breaker.allows()
    }

    /// With a cluster: true when a request of the slot `slot` names (asked
    /// only if needed), on the master whose health is `health`, is served
    /// from local memory: that master is unreachable, or writes of the slot
    /// wait in the journal.
    #[inline]
    pub fn covers(&self, health: &Health, slot: impl FnOnce() -> u16) -> bool {
        let Some(pending) = self.pending.as_ref().filter(|_| self.config.enabled) else { return false };
        !health.breaker.allows() || (pending.any() && pending.has(slot()))
    }

    /// With a cluster: true when the master whose health is `health` is
    /// unreachable and its slots are served from local memory.
    pub fn covers_node(&self, health: &Health) -> bool {
        self.config.enabled && self.pending.is_some() && !health.breaker.allows()
    }

    /// True while writes of some slot wait in the journal (a cluster).
    pub fn slots_pending(&self) -> bool {
        self.pending.as_ref().is_some_and(slots::Pending::any)
    }

    /// Whether `scope` is (still) served from local memory.
    fn serves(&self, scope: Scope) -> bool {
        match scope {
            Scope::Single => self.active(),
            Scope::Slot { slot, health } => self.covers(health, || slot),
        }
    }

    /// Why Redis, reachable, refuses the replay `scope` waits for.
    fn refusal(&self, scope: Scope) -> Option<String> {
        match scope {
            Scope::Single => self.health.breaker.refusal_reason(),
            Scope::Slot { health, .. } if health.breaker.allows() => {
                let refused = self.replay_refused.lock().unwrap_or_else(PoisonError::into_inner);
                refused.iter().find(|(master, _)| std::ptr::eq(Arc::as_ptr(master), health)).map(|(_, why)| why.clone())
            }
            // Its probes answered but were refused.
            Scope::Slot { health, .. } => health.breaker.refusal_reason(),
        }
    }

    /// True while the last replay round is in flight: requests should
    /// [`Failover::wait_drained`] before they are planned.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Waits (at most `limit`) for the last replay round to end. Only a
    /// throttle: a request served by failover meanwhile is journaled and
    /// replayed like any other.
    pub async fn wait_drained(&self, limit: Duration) {
        let notified = self.drained.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if self.draining() {
            let _ = crate::timer::timeout(limit, notified).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Memory> {
        self.local.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn status(&self) -> Status {
        let local = self.lock();
        let replay_refused = match self.pending {
            None => self.health.breaker.refusal_reason(),
            Some(_) => {
                let refused = self.replay_refused.lock().unwrap_or_else(PoisonError::into_inner);
                refused.first().map(|(_, why)| why.clone())
            }
        };
        Status {
            upstream_up: self.health.breaker.allows(),
            failover: self.active() || self.slots_pending(),
            enabled: self.config.enabled,
            journal_entries: local.journal.len(),
            dead_letters: local.journal.dead_letters(),
            replay_refused,
            refusing: self.pending.is_none().then(|| self.health.breaker.refusing()).flatten(),
            circuit_opened: self.health.breaker.times_opened(),
        }
    }

    /// Answers one request (the complete RESP `request`, parsed as `args`,
    /// bound for `scope`) from local memory. `None`: failover ended
    /// meanwhile, forward it.
    pub fn serve(
        &self,
        scope: Scope,
        cmd: Option<&Command>,
        args: &Args,
        request: &[u8],
        proto: Proto,
        scratch: &mut Scratch,
    ) -> Option<Bytes> {
        let Some(cmd) = cmd.filter(|c| c.store.is_some()) else {
            observe::failover_command("refused");
            return Some(unavailable(args));
        };
        let now_ms = unix_ms();
        let mut local = self.lock();
        if !self.serves(scope) {
            return None;
        }
        if let Some(reason) = self.refusal(scope) {
            // Redis is reachable: a local answer could contradict it.
            observe::failover_command("refused");
            return Some(encode::error(&format!(
                "TRYAGAIN upstream refuses the failover journal's replay ({reason}), {} journaled writes wait",
                local.journal.len()
            )));
        }
        observe::failover_command("served");
        let server = match scope {
            Scope::Single => self.health.identity(),
            Scope::Slot { health, .. } => health.identity(),
        };
        local.store.print_doubles_like(server.name.as_deref(), server.version.as_deref());
        if key_indices(cmd, args, &mut scratch.keys).is_err() {
            scratch.keys.clear();
        }
        if let Scope::Slot { slot, .. } = scope {
            self.forget_stale(&mut local.store, slot, cmd.flags.contains(Flags::WRITE), args, &scratch.keys);
        }
        if !cmd.flags.contains(Flags::WRITE) {
            if let Some(reply) = self.cached(&local, cmd, args, proto, now_ms, scratch) {
                return Some(reply);
            }
        }
        for key in scratch.keys.iter().filter_map(|&i| args.get(i)) {
            seed::from_cache(&self.cache, &mut local.store, key, now_ms, &mut scratch.shape);
        }
        if !cmd.flags.contains(Flags::WRITE) {
            return local.store.execute(cmd, args, proto, now_ms);
        }
        if !local.journal.has_room(request.len()) {
            return Some(encode::error(
                "TRYAGAIN upstream unavailable and the failover journal is full, write refused",
            ));
        }
        for key in scratch.keys.iter().filter_map(|&i| args.get(i)) {
            self.cache.invalidate(key);
        }
        let reply = local.store.execute(cmd, args, proto, now_ms)?;
        if !reply.starts_with(b"-") {
            // A file error is logged by the journal; the entry is in memory.
            let slot = match scope {
                Scope::Single => 0,
                Scope::Slot { slot, .. } => slot,
            };
            let _ = local.journal.append(Bytes::copy_from_slice(request), slot);
            if let Some(pending) = &self.pending {
                pending.add(slot);
            }
        }
        Some(reply)
    }

    /// With a cluster, what the store holds of a slot with no journaled
    /// writes did not come from writes of this outage: copies seeded from
    /// the near-cache, or what an earlier outage of the slot left. The
    /// request's keys are dropped, to be seeded afresh; before the slot's
    /// first write, all its keys are (the writes to come will be read
    /// back from the store).
    fn forget_stale(&self, store: &mut Store, slot: u16, write: bool, args: &Args, keys: &[usize]) {
        if self.pending.as_ref().is_none_or(|pending| pending.has(slot)) {
            return;
        }
        match write {
            true => store.forget(|key| crate::router::slot::of(key) == slot),
            false => keys.iter().filter_map(|&i| args.get(i)).for_each(|key| store.evict(key)),
        }
    }

    /// A single-key read the near-cache answers exactly, when the store
    /// has not taken the key over. (A one-key MGET finds no reply of its
    /// shape: the near-cache keeps MGET per key, as GETs.)
    fn cached(
        &self,
        local: &Memory,
        cmd: &Command,
        args: &Args,
        proto: Proto,
        now_ms: i64,
        scratch: &mut Scratch,
    ) -> Option<Bytes> {
        if !cmd.flags.contains(Flags::CACHEABLE) || scratch.keys.len() != 1 {
            return None;
        }
        let key_index = scratch.keys[0];
        let key = args.get(key_index)?;
        if local.store.contains(key, now_ms) {
            return None;
        }
        shape::of(&mut scratch.shape, proto, cmd, args, key_index);
        self.cache.stale(key, &scratch.shape).map(|(reply, _)| reply)
    }

    /// Syncs the journal file (the `everysec` policy's tick).
    pub fn sync_journal(&self) {
        // Errors are logged by the journal.
        let _ = self.lock().journal.sync_due();
    }
}

/// Applies journal entries loaded at start to the (empty) store.
fn rebuild(store: &mut Store, entries: &[Bytes]) {
    let (mut args, mut inline) = (Vec::new(), Vec::new());
    let now_ms = unix_ms();
    for entry in entries {
        let parsed = crate::protocol::request::parse(entry, &Default::default(), &mut args, &mut inline);
        if parsed.is_err() {
            continue;
        }
        let args = Args::new(entry, &args);
        if let Some((_, cmd)) = args.get(0).and_then(crate::commands::lookup) {
            let _ = store.execute(cmd, &args, Proto::Resp2, now_ms);
        }
    }
}

/// `-TRYAGAIN` for a command failover does not serve.
fn unavailable(args: &Args) -> Bytes {
    let name = String::from_utf8_lossy(args.get(0).unwrap_or_default()).to_uppercase();
    encode::error(&format!("TRYAGAIN upstream unavailable, {name} not available in failover mode"))
}

/// Unix time in milliseconds.
pub fn unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
