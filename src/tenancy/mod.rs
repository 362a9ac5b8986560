//! Per-organisation key namespaces: tenants authenticate to the proxy
//! (`AUTH tenant password`, `HELLO 3 AUTH tenant password`) and every key,
//! pattern and channel they use is confined to their prefix ([`rewrite`]).
//!
//! This module owns who the tenants are (`[[tenant]]` in proxy.toml, with
//! SHA-256 password hashes compared in constant time), what each may run
//! (allow/deny lists of command names or categories), their limits
//! (operations per second, connections) and the brake on password
//! guessing (failures per client address). With no tenants configured the
//! proxy is an open proxy and none of this applies.

pub mod dump;
pub mod rewrite;

use crate::commands::{Command, Flags};
use crate::observe;
use arc_swap::ArcSwap;
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use std::time::{Duration, Instant};

/// One `[[tenant]]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantConfig {
    pub name: String,
    pub password_sha256: [u8; 32],
    pub prefix: Vec<u8>,
    pub allow: Vec<Rule>,
    pub deny: Vec<Rule>,
    /// 0: unlimited.
    pub max_ops_per_sec: u32,
    /// 0: unlimited.
    pub max_connections: usize,
    pub allow_scripts: bool,
    /// RESTORE may run, its DUMP payload validated by [`dump`] first.
    pub allow_restore: bool,
    /// Keys named per second, over all commands (an `MSET` of 1,000 keys
    /// costs 1,000). 0: unlimited.
    pub max_keys_per_sec: u32,
    /// Request bytes per second. 0: unlimited.
    pub max_bytes_per_sec: u64,
    /// Requests of the tenant waiting for Redis on the shared pool at once,
    /// over all its connections; past it its clients are not read until
    /// replies come back. 0: unlimited.
    pub max_in_flight: usize,
    /// Dedicated upstream connections (transactions, blocking commands,
    /// subscriptions, SELECT…) held by the tenant's clients at once.
    /// 0: unlimited.
    pub max_dedicated: usize,
    /// Largest request, in bytes (a client sending more is disconnected
    /// with a protocol error, as Redis does past `proto-max-bulk-len`).
    pub max_request_bytes: usize,
}

impl TenantConfig {
    /// Defaults of the limits that are not unlimited by default.
    pub const DEFAULT_MAX_IN_FLIGHT: usize = 4096;
    pub const DEFAULT_MAX_DEDICATED: usize = 64;
    pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;
}

/// `[tenancy]` and the tenants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TenancyConfig {
    pub tenants: Vec<TenantConfig>,
    /// Unauthenticated clients act as this tenant.
    pub default_tenant: Option<String>,
    /// Failed AUTHs allowed per client address per minute.
    pub auth_failures_per_minute: u32,
    /// Connections not yet authenticated allowed per client address.
    pub max_unauthenticated_per_address: u32,
}

/// An allow/deny entry: a command name (`get`, `client|kill`) or a category
/// (`@read`, `@write`, `@admin`, `@dangerous`, `@blocking`, `@pubsub`,
/// `@scripting`, `@connection`, `@all`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    Command(String),
    Category(Flags),
    All,
}

impl Rule {
    /// Parses a rule; `None` for an unknown category.
    pub fn parse(text: &str) -> Option<Rule> {
        let Some(category) = text.strip_prefix('@') else {
            return Some(Rule::Command(text.to_ascii_lowercase()));
        };
        let flags = match category.to_ascii_lowercase().as_str() {
            "all" => return Some(Rule::All),
            "read" => Flags::READ,
            "write" => Flags::WRITE,
            "admin" => Flags::ADMIN,
            "dangerous" => Flags::DANGEROUS,
            "blocking" => Flags::BLOCKING,
            "pubsub" => Flags::PUBSUB,
            "scripting" => Flags::SCRIPT,
            "connection" => Flags::CONN_STATE,
            _ => return None,
        };
        Some(Rule::Category(flags))
    }

    fn matches(&self, parent: &Command, cmd: &Command) -> bool {
        match self {
            Rule::All => true,
            Rule::Category(flags) => cmd.flags.contains(*flags) || parent.flags.contains(*flags),
            Rule::Command(name) => match name.split_once('|') {
                Some((p, sub)) => p == parent.name && sub == cmd.name,
                None => name == parent.name,
            },
        }
    }
}

/// A tenant at run time. Its name and prefix are its identity; the rest
/// of its settings can change on a reload.
#[derive(Debug)]
pub struct Tenant {
    name: String,
    pub prefix: Bytes,
    config: ArcSwap<TenantConfig>,
    /// What every request reads of `config`, kept beside it.
    hot: Hot,
    /// Set when a reload removed the tenant or changed its credentials:
    /// its sessions are closed.
    revoked: AtomicBool,
    /// Token buckets of `max_ops_per_sec`, `max_keys_per_sec` and
    /// `max_bytes_per_sec`.
    buckets: Mutex<[Bucket; 3]>,
    connections: AtomicUsize,
    /// Requests on the shared pool (see `max_in_flight`).
    in_flight: AtomicUsize,
    /// Dedicated upstream connections held (see `max_dedicated`).
    dedicated: AtomicUsize,
    commands: metrics::Counter,
}

/// The settings every request of a tenant reads, copied out of its
/// config each time one is stored (at start, on a reload): a request reads
/// them without loading the config (an `ArcSwap` load is ~50 instructions,
/// and a request asked for up to ten). Each is read on its own, so a
/// request racing a reload may see some old and some new, as it could
/// with one load per setting.
#[derive(Debug, Default)]
struct Hot {
    /// No allow or deny list: every command is permitted.
    open: AtomicBool,
    /// A rate limit is set.
    rated: AtomicBool,
    counts_keys: AtomicBool,
    max_in_flight: AtomicUsize,
    max_request_bytes: AtomicUsize,
    scripts: AtomicBool,
    restore: AtomicBool,
}

impl Hot {
    fn set(&self, c: &TenantConfig) {
        let rated = c.max_ops_per_sec > 0 || c.max_keys_per_sec > 0 || c.max_bytes_per_sec > 0;
        self.open.store(c.allow.is_empty() && c.deny.is_empty(), Ordering::Release);
        self.rated.store(rated, Ordering::Release);
        self.counts_keys.store(c.max_keys_per_sec > 0, Ordering::Release);
        self.max_in_flight.store(c.max_in_flight, Ordering::Release);
        self.max_request_bytes.store(c.max_request_bytes, Ordering::Release);
        self.scripts.store(c.allow_scripts, Ordering::Release);
        self.restore.store(c.allow_restore, Ordering::Release);
    }
}

impl Tenant {
    fn new(config: TenantConfig) -> Tenant {
        let now = Instant::now();
        let tenant = Tenant {
            name: config.name.clone(),
            prefix: Bytes::copy_from_slice(&config.prefix),
            buckets: Mutex::new(rates(&config).map(|rate| Bucket { tokens: rate, at: now })),
            connections: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            dedicated: AtomicUsize::new(0),
            commands: observe::tenant_commands(&config.name),
            revoked: AtomicBool::new(false),
            hot: Hot::default(),
            config: ArcSwap::from_pointee(config),
        };
        tenant.hot.set(&tenant.config.load());
        tenant
    }

    /// Takes new settings (a reload). A rate just turned on starts with
    /// its bucket full, as at start; the others keep their tokens, capped
    /// at the new rate when next taken from.
    fn reconfigure(&self, config: TenantConfig) {
        let (old, new) = (rates(&self.config.load()), rates(&config));
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        for ((bucket, old), new) in buckets.iter_mut().zip(old).zip(new) {
            if old == 0.0 && new > 0.0 {
                *bucket = Bucket { tokens: new, at: now };
            }
        }
        drop(buckets);
        self.hot.set(&config);
        self.config.store(Arc::new(config));
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The tenant's current settings.
    pub fn config(&self) -> Arc<TenantConfig> {
        self.config.load_full()
    }

    /// Its largest request, in bytes.
    pub fn max_request_bytes(&self) -> usize {
        self.hot.max_request_bytes.load(Ordering::Acquire)
    }

    /// What its options allow that tenants are otherwise refused.
    pub fn allowances(&self) -> rewrite::Allowances {
        rewrite::Allowances {
            scripts: self.hot.scripts.load(Ordering::Acquire),
            restore: self.hot.restore.load(Ordering::Acquire),
        }
    }

    /// True once a reload removed the tenant or changed its password or
    /// prefix: its clients must authenticate again.
    pub fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Acquire)
    }

    /// Clients holding a seat of this tenant.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// True when the allow/deny lists let the tenant run `cmd`.
    pub fn permits(&self, parent: &Command, cmd: &Command) -> bool {
        if self.hot.open.load(Ordering::Acquire) {
            return true;
        }
        let c = self.config.load();
        !c.deny.iter().any(|r| r.matches(parent, cmd))
            && (c.allow.is_empty() || c.allow.iter().any(|r| r.matches(parent, cmd)))
    }

    /// Counts one command of the tenant.
    pub fn count_command(&self) {
        self.commands.increment(1);
    }

    /// Takes a request's cost from the tenant's budgets (token buckets
    /// holding one second of each rate): one operation, `keys` keys and
    /// `bytes` bytes. A request is let through while every bucket it draws
    /// from has something left, and may take it into debt (an `MSET` of
    /// 100,000 keys costs 100,000 whatever the rate), so a costly request
    /// is paid for by the time it takes to refill. `None` when allowed,
    /// otherwise the name of the limit it is over.
    pub fn take(&self, keys: usize, bytes: usize) -> Option<&'static str> {
        if !self.hot.rated.load(Ordering::Acquire) {
            return None;
        }
        let rates = rates(&self.config.load());
        let costs = [1.0, keys as f64, bytes as f64];
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        for (b, rate) in buckets.iter_mut().zip(rates) {
            b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
            b.at = now;
        }
        let over = (0..3).find(|&i| rates[i] > 0.0 && costs[i] > 0.0 && buckets[i].tokens < 1.0);
        if let Some(i) = over {
            return Some(["max_ops_per_sec", "max_keys_per_sec", "max_bytes_per_sec"][i]);
        }
        for (i, b) in buckets.iter_mut().enumerate() {
            if rates[i] > 0.0 {
                b.tokens -= costs[i];
            }
        }
        None
    }

    /// True when the tenant's limits count the keys of a request.
    pub fn counts_keys(&self) -> bool {
        self.hot.counts_keys.load(Ordering::Acquire)
    }

    /// True when the tenant has `max_in_flight` requests on the shared
    /// pool: its clients wait before sending more.
    pub fn over_in_flight(&self) -> bool {
        let max = self.hot.max_in_flight.load(Ordering::Acquire);
        max > 0 && self.in_flight.load(Ordering::Relaxed) >= max
    }

    /// Requests of the tenant on the shared pool now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// `count` requests of a batch handed off to the shared pool, counted
    /// until the returned charge is dropped.
    pub fn charge(self: &Arc<Self>, count: usize) -> PoolCharge {
        self.in_flight.fetch_add(count, Ordering::Relaxed);
        PoolCharge { tenant: self.clone(), count }
    }

    /// A dedicated upstream connection for one of the tenant's clients,
    /// counted until dropped; `None` when the tenant holds `max_dedicated`.
    pub fn dedicated(self: &Arc<Self>) -> Option<DedicatedLease> {
        let max = self.config.load().max_dedicated;
        let taken = self.dedicated.fetch_add(1, Ordering::AcqRel);
        if max > 0 && taken >= max {
            self.dedicated.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(DedicatedLease(self.clone()))
    }
}

/// A tenant's rates, per second, in the order of its buckets: operations,
/// keys, bytes (0: unlimited).
fn rates(c: &TenantConfig) -> [f64; 3] {
    [f64::from(c.max_ops_per_sec), f64::from(c.max_keys_per_sec), c.max_bytes_per_sec as f64]
}

/// Requests a client has on the shared pool, counted against its tenant's
/// `max_in_flight` (to the tenant it had when it sent them, even if it
/// authenticates as another meanwhile) until answered or dropped.
#[derive(Debug, Default)]
pub struct InFlight {
    charged: Option<(Arc<Tenant>, usize)>,
}

impl InFlight {
    /// `count` requests of `tenant`'s client went to the pool.
    pub fn sent(&mut self, tenant: &Arc<Tenant>, count: usize) {
        match &mut self.charged {
            Some((_, n)) => *n += count,
            None => self.charged = Some((tenant.clone(), count)),
        }
        if let Some((t, _)) = &self.charged {
            t.in_flight.fetch_add(count, Ordering::Relaxed);
        }
    }

    /// `count` of them were answered.
    pub fn answered(&mut self, count: usize) {
        let Some((tenant, n)) = &mut self.charged else {
            return;
        };
        let count = count.min(*n);
        tenant.in_flight.fetch_sub(count, Ordering::Relaxed);
        *n -= count;
        if *n == 0 {
            self.charged = None;
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((tenant, n)) = self.charged.take() {
            tenant.in_flight.fetch_sub(n, Ordering::Relaxed);
        }
    }
}

/// Requests of a batch a client handed off to the shared pool (the pool's
/// reader writes their replies to the client), counted against the
/// tenant's `max_in_flight` until the pool drops the batch, answered or
/// failed: the session, which may not wake until its client sends again,
/// holds no count for them.
#[derive(Debug)]
pub struct PoolCharge {
    tenant: Arc<Tenant>,
    count: usize,
}

impl Drop for PoolCharge {
    fn drop(&mut self) {
        self.tenant.in_flight.fetch_sub(self.count, Ordering::Relaxed);
    }
}

/// A dedicated upstream connection counted against its tenant's
/// `max_dedicated`, released when dropped.
#[derive(Debug)]
pub struct DedicatedLease(Arc<Tenant>);

impl Drop for DedicatedLease {
    fn drop(&mut self) {
        self.0.dedicated.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// A connection counted against its tenant's `max_connections`, released
/// when dropped (the client re-authenticated, reset or went away).
#[derive(Debug)]
pub struct Seat(Arc<Tenant>);

impl Seat {
    pub fn tenant(&self) -> &Arc<Tenant> {
        &self.0
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Why authentication failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("WRONGPASS invalid username-password pair or user is disabled.")]
    WrongPass,
    #[error("ERR too many failed authentication attempts from this address, retry later")]
    TooManyFailures,
    #[error("ERR max number of connections reached for this tenant")]
    TooManyConnections,
}

/// The configured tenants.
pub struct Tenancy {
    /// Fixed at start: turning tenancy on or off needs a restart.
    enabled: bool,
    registry: RwLock<Registry>,
    failures: Mutex<Failures>,
    /// Connections not yet authenticated, per address.
    unauthenticated: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One unauthenticated connection of an address, counted until dropped
/// (when the client authenticates or disconnects).
pub struct Unauthenticated {
    peer: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for Unauthenticated {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.peer) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.peer);
            }
        }
    }
}

/// Failed AUTHs in the current minute, per (address, tenant name hash) and
/// per address (`None`), with when that minute began and the last wrong
/// password's digest (a repeat of it is not counted again).
type Failures = HashMap<(IpAddr, Option<u64>), (u32, Instant, u64)>;

/// An address may fail this many times the per-tenant limit, over all the
/// names it tries, before every AUTH from it fails.
const ADDRESS_FACTOR: u32 = 10;

/// What a reload replaces.
struct Registry {
    tenants: HashMap<String, Arc<Tenant>>,
    default: Option<Arc<Tenant>>,
    failures_per_minute: u32,
    unauthenticated_per_address: u32,
}

/// What a reload of the tenants did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TenancyChange {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    /// Removed, or given a new password or prefix: their clients are closed.
    pub revoked: Vec<String>,
    /// Settings that differ but need a restart.
    pub restart: Vec<&'static str>,
    /// `[tenancy]` settings that changed, applied at once.
    pub settings: Vec<&'static str>,
}

/// The `[tenancy]` settings (beyond the tenants themselves) that differ
/// between two registries.
fn changed_settings(old: &Registry, new: &Registry) -> Vec<&'static str> {
    let name = |r: &Registry| r.default.as_ref().map(|t| t.name.clone());
    [
        ("tenancy.default_tenant", name(old) != name(new)),
        ("tenancy.auth_failures_per_minute", old.failures_per_minute != new.failures_per_minute),
        ("tenancy.max_unauthenticated_per_address", old.unauthenticated_per_address != new.unauthenticated_per_address),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect()
}

impl Registry {
    fn new(config: &TenancyConfig, mut existing: impl FnMut(&TenantConfig) -> Option<Arc<Tenant>>) -> Registry {
        let tenants: HashMap<String, Arc<Tenant>> = config
            .tenants
            .iter()
            .map(|t| (t.name.clone(), existing(t).unwrap_or_else(|| Arc::new(Tenant::new(t.clone())))))
            .collect();
        let default = config.default_tenant.as_ref().and_then(|name| tenants.get(name).cloned());
        Registry {
            tenants,
            default,
            failures_per_minute: config.auth_failures_per_minute,
            unauthenticated_per_address: config.max_unauthenticated_per_address,
        }
    }
}

impl Tenancy {
    pub fn new(config: &TenancyConfig) -> Tenancy {
        Tenancy {
            enabled: !config.tenants.is_empty(),
            registry: RwLock::new(Registry::new(config, |_| None)),
            failures: Mutex::new(HashMap::new()),
            unauthenticated: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A connection from `peer` that has not authenticated: its place
    /// among that address' unauthenticated connections, or `None` when the
    /// address already has `max_unauthenticated_per_address` of them (each
    /// may hold up to ~200 KiB of unfinished requests).
    pub fn unauthenticated(&self, peer: IpAddr) -> Option<Unauthenticated> {
        let limit = self.registry().unauthenticated_per_address as usize;
        let mut counts = self.unauthenticated.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(peer).or_insert(0);
        if limit > 0 && *count >= limit {
            return None;
        }
        *count += 1;
        Some(Unauthenticated { peer, counts: self.unauthenticated.clone() })
    }

    /// True when tenants are configured: tenancy is enforced.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn registry(&self) -> RwLockReadGuard<'_, Registry> {
        self.registry.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies a reloaded `[tenancy]` and `[[tenant]]` list. A tenant whose
    /// password and prefix are unchanged keeps its clients and takes its new
    /// rules and limits at once; one removed, or with a new password or
    /// prefix, is revoked (its clients are closed by the caller).
    pub fn reload(&self, config: &TenancyConfig) -> TenancyChange {
        let mut change = TenancyChange::default();
        if config.tenants.is_empty() == self.enabled {
            change.restart.push("tenant");
            return change;
        }
        let mut registry = self.registry.write().unwrap_or_else(PoisonError::into_inner);
        let next = Registry::new(config, |new| {
            let kept = registry.tenants.get(&new.name).filter(|t| {
                let old = t.config();
                old.password_sha256 == new.password_sha256 && old.prefix == new.prefix
            });
            let Some(kept) = kept else {
                change.added.push(new.name.clone());
                return None;
            };
            if *kept.config() != *new {
                kept.reconfigure(new.clone());
                change.updated.push(new.name.clone());
            }
            Some(kept.clone())
        });
        for (name, old) in &registry.tenants {
            if !next.tenants.get(name).is_some_and(|t| Arc::ptr_eq(t, old)) {
                old.revoked.store(true, Ordering::Release);
                change.revoked.push(name.clone());
            }
        }
        change.settings = changed_settings(&registry, &next);
        *registry = next;
        change
    }

    /// Connected clients per tenant, by name.
    pub fn connections(&self) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> =
            self.registry().tenants.values().map(|t| (t.name.clone(), t.connections())).collect();
        out.sort();
        out
    }

    /// The seat of an unauthenticated client: the default tenant's, if one
    /// is configured and has room.
    pub fn default_seat(&self) -> Option<Seat> {
        self.registry().default.as_ref().and_then(|t| seat(t).ok())
    }

    /// Checks `name`/`password` for a client at `peer`: the tenant's seat,
    /// or why not. Failures are counted per address and tenant name: past
    /// the limit every attempt at that name from that address fails for the
    /// rest of the minute, right or wrong, and past ten times the limit
    /// over all names, every attempt from that address. So guessing one
    /// tenant's password does not lock the other tenants out of a shared
    /// address (a NAT, a proxy), and trying many names does not escape the
    /// brake.
    pub fn authenticate(&self, name: &[u8], password: &[u8], peer: IpAddr) -> Result<Seat, AuthError> {
        let name_key = name_hash(name);
        if self.blocked(peer, name_key) {
            observe::auth_failure();
            return Err(AuthError::TooManyFailures);
        }
        let registry = self.registry();
        let tenant = std::str::from_utf8(name).ok().and_then(|n| registry.tenants.get(n));
        let given: [u8; 32] = Sha256::digest(password).into();
        // Compared even for an unknown name, so timing tells nothing.
        let expected = tenant.map_or([0xff; 32], |t| t.config.load().password_sha256);
        if tenant.is_none() || !constant_time_eq(&given, &expected) {
            self.note_failure(peer, name_key, name_hash(&given));
            observe::auth_failure();
            tracing::info!(%peer, tenant = %String::from_utf8_lossy(name), "authentication failed");
            return Err(AuthError::WrongPass);
        }
        tenant.map_or(Err(AuthError::WrongPass), seat)
    }

    fn blocked(&self, peer: IpAddr, name: u64) -> bool {
        let limit = self.registry().failures_per_minute;
        let failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let over = |key, limit: u32| {
            failures.get(&key).is_some_and(|(n, since, _)| *n >= limit && since.elapsed() < Duration::from_secs(60))
        };
        over((peer, Some(name)), limit) || over((peer, None), limit.saturating_mul(ADDRESS_FACTOR))
    }

    /// Counts a failed AUTH of `name` from `peer`, unless it repeats the
    /// last wrong password tried for that name: a client library retrying
    /// a mistyped password (redis-py 8 tries 11 times) guesses nothing new
    /// and must not lock the tenant out of the address.
    fn note_failure(&self, peer: IpAddr, name: u64, password: u64) {
        let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
        if failures.len() > 100_000 {
            failures.retain(|_, (_, since, _)| since.elapsed() < Duration::from_secs(60));
        }
        for key in [(peer, Some(name)), (peer, None)] {
            let entry = failures.entry(key).or_insert((0, Instant::now(), 0));
            if entry.1.elapsed() >= Duration::from_secs(60) {
                *entry = (0, Instant::now(), 0);
            }
            if key.1.is_some() && entry.0 > 0 && entry.2 == password {
                return;
            }
            entry.0 += 1;
            entry.2 = password;
        }
    }
}

/// A tenant name as the brake counts it (any name an attacker sends costs
/// the same few bytes).
fn name_hash(name: &[u8]) -> u64 {
    let digest = Sha256::digest(name);
    u64::from_le_bytes([digest[0], digest[1], digest[2], digest[3], digest[4], digest[5], digest[6], digest[7]])
}

fn seat(tenant: &Arc<Tenant>) -> Result<Seat, AuthError> {
    let max = tenant.config.load().max_connections;
    let taken = tenant.connections.fetch_add(1, Ordering::AcqRel);
    if max > 0 && taken >= max {
        tenant.connections.fetch_sub(1, Ordering::AcqRel);
        return Err(AuthError::TooManyConnections);
    }
    Ok(Seat(tenant.clone()))
}

/// Byte-wise comparison whose time does not depend on where they differ
/// (only on their lengths), for secrets: passwords here, the admin token.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The hex SHA-256 of a password, as `password_sha256` wants it.
pub fn hash_password(password: &[u8]) -> String {
    Sha256::digest(password).iter().map(|b| format!("{b:02x}")).collect()
}

/// Parses a 64-digit hex SHA-256.
pub fn parse_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::lookup;

    fn tenant(name: &str, password: &str) -> TenantConfig {
        TenantConfig {
            name: name.into(),
            password_sha256: parse_sha256(&hash_password(password.as_bytes())).expect("hex"),
            prefix: format!("{name}:").into_bytes(),
            allow: Vec::new(),
            deny: Vec::new(),
            max_ops_per_sec: 0,
            max_connections: 0,
            allow_scripts: false,
            allow_restore: false,
            max_keys_per_sec: 0,
            max_bytes_per_sec: 0,
            max_in_flight: 0,
            max_dedicated: 0,
            max_request_bytes: TenantConfig::DEFAULT_MAX_REQUEST_BYTES,
        }
    }

    const PEER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn authentication_and_failure_brake() {
        let t = Tenancy::new(&TenancyConfig {
            tenants: vec![tenant("acme", "s3cret")],
            auth_failures_per_minute: 3,
            ..Default::default()
        });
        assert_eq!(t.authenticate(b"acme", b"s3cret", PEER).expect("auth").tenant().name(), "acme");
        for _ in 0..10 {
            assert_eq!(t.authenticate(b"acme", b"retried", PEER).err(), Some(AuthError::WrongPass));
        }
        assert!(t.authenticate(b"acme", b"s3cret", PEER).is_ok(), "a retried wrong password counts once");
        for wrong in ["w1", "w2"] {
            assert_eq!(t.authenticate(b"acme", wrong.as_bytes(), PEER).err(), Some(AuthError::WrongPass));
        }
        assert_eq!(t.authenticate(b"acme", b"s3cret", PEER).err(), Some(AuthError::TooManyFailures));
        let other = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));
        assert!(t.authenticate(b"acme", b"s3cret", other).is_ok(), "other addresses are not braked");
    }

    #[test]
    fn the_brake_is_per_tenant_name_with_a_ceiling_per_address() {
        let t = Tenancy::new(&TenancyConfig {
            tenants: vec![tenant("acme", "a"), tenant("globex", "g")],
            auth_failures_per_minute: 3,
            ..Default::default()
        });
        for i in 0..3 {
            assert_eq!(t.authenticate(b"nobody", format!("x{i}").as_bytes(), PEER).err(), Some(AuthError::WrongPass));
        }
        assert_eq!(t.authenticate(b"nobody", b"x3", PEER).err(), Some(AuthError::TooManyFailures));
        assert!(t.authenticate(b"globex", b"g", PEER).is_ok(), "another tenant is not locked out");
        // Many names: the address' ceiling is ten times the limit.
        for i in 0..27 {
            assert_eq!(t.authenticate(format!("n{i}").as_bytes(), b"x", PEER).err(), Some(AuthError::WrongPass));
        }
        assert_eq!(t.authenticate(b"acme", b"a", PEER).err(), Some(AuthError::TooManyFailures));
    }

    #[test]
    fn connection_limit_and_seats_are_released() {
        let mut config = tenant("acme", "pw");
        config.max_connections = 1;
        let t =
            Tenancy::new(&TenancyConfig { tenants: vec![config], auth_failures_per_minute: 10, ..Default::default() });
        let seat = t.authenticate(b"acme", b"pw", PEER).expect("first");
        assert_eq!(t.authenticate(b"acme", b"pw", PEER).err(), Some(AuthError::TooManyConnections));
        drop(seat);
        assert!(t.authenticate(b"acme", b"pw", PEER).is_ok());
    }

    #[test]
    fn allow_and_deny_rules() {
        let mut config = tenant("acme", "pw");
        config.allow = vec![Rule::parse("@read").expect("rule"), Rule::parse("set").expect("rule")];
        config.deny = vec![Rule::parse("hgetall").expect("rule")];
        let t = Tenant::new(config);
        let cmd = |name: &str| lookup(name.as_bytes()).expect("known").1;
        assert!(t.permits(cmd("get"), cmd("get")));
        assert!(t.permits(cmd("set"), cmd("set")));
        assert!(!t.permits(cmd("del"), cmd("del")));
        assert!(!t.permits(cmd("hgetall"), cmd("hgetall")));
        assert_eq!(Rule::parse("@nonsense"), None);
    }

    /// What requests read without loading the config follows a reload.
    #[test]
    fn a_reload_reaches_what_every_request_reads() {
        let t = Tenancy::new(&TenancyConfig { tenants: vec![tenant("acme", "pw")], ..Default::default() });
        let acme = t.authenticate(b"acme", b"pw", PEER).expect("auth").tenant().clone();
        let get = lookup(b"get").expect("known").1;
        assert!(acme.permits(get, get) && acme.take(1, 10).is_none() && !acme.counts_keys());
        assert!(!acme.allowances().scripts && !acme.over_in_flight());
        let mut next = tenant("acme", "pw");
        next.deny = vec![Rule::parse("get").expect("rule")];
        next.max_keys_per_sec = 1;
        next.allow_scripts = true;
        next.max_in_flight = 1;
        next.max_request_bytes = 100;
        let change = t.reload(&TenancyConfig { tenants: vec![next], ..Default::default() });
        assert_eq!(change.updated, ["acme"]);
        assert!(!acme.permits(get, get) && acme.counts_keys() && acme.allowances().scripts);
        assert_eq!(acme.max_request_bytes(), 100);
        assert!(acme.take(1, 10).is_none() && acme.take(1, 10).is_some(), "one key per second");
        acme.in_flight.fetch_add(1, Ordering::Relaxed);
        assert!(acme.over_in_flight());
    }

    #[test]
    fn rate_limit_bucket() {
        let mut config = tenant("acme", "pw");
        config.max_ops_per_sec = 10;
        let t = Tenant::new(config);
        let granted = (0..50).filter(|_| t.take(1, 10).is_none()).count();
        assert_eq!(granted, 10, "one second of burst");
        std::thread::sleep(Duration::from_millis(250));
        let granted = (0..50).filter(|_| t.take(1, 10).is_none()).count();
        assert!((2..=3).contains(&granted), "refilled at the rate: {granted}");
    }

    #[test]
    fn costly_requests_go_into_debt() {
        let mut config = tenant("acme", "pw");
        config.max_keys_per_sec = 100;
        config.max_bytes_per_sec = 1_000_000;
        let t = Tenant::new(config);
        assert_eq!(t.take(1_000, 20), None, "one request may cost more than a second's budget");
        assert_eq!(t.take(1, 20), Some("max_keys_per_sec"), "then it is paid back first");
        assert_eq!(t.take(0, 20), None, "a request naming no key does not draw on the key budget");
        assert_eq!(t.take(0, 2_000_000), None);
        assert_eq!(t.take(0, 1), Some("max_bytes_per_sec"));
    }

    #[test]
    fn in_flight_is_charged_to_the_tenant_that_sent() {
        let mut config = tenant("acme", "pw");
        config.max_in_flight = 3;
        let acme = Arc::new(Tenant::new(config));
        let globex = Arc::new(Tenant::new(tenant("globex", "pw")));
        let mut a = InFlight::default();
        a.sent(&acme, 2);
        assert!(!acme.over_in_flight());
        a.sent(&globex, 1);
        assert!(acme.over_in_flight(), "still charged to the tenant of the first requests");
        assert_eq!(globex.in_flight(), 0);
        a.answered(2);
        assert!(!acme.over_in_flight());
        drop(a);
        assert_eq!(acme.in_flight(), 0, "released by a client that went away");
    }

    #[test]
    fn dedicated_connections_are_capped_and_released() {
        let mut config = tenant("acme", "pw");
        config.max_dedicated = 1;
        let acme = Arc::new(Tenant::new(config));
        let first = acme.dedicated().expect("first");
        assert!(acme.dedicated().is_none());
        drop(first);
        assert!(acme.dedicated().is_some());
    }

    #[test]
    fn password_hashes() {
        assert_eq!(hash_password(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(parse_sha256("zz").is_none());
        assert!(parse_sha256(&"g".repeat(64)).is_none());
    }
}
