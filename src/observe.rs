//! Metrics: the Prometheus recorder and every metric nearcache exports.
//!
//! Metric names live here only. Per-command counters are registered once,
//! indexed like the command table, so counting a request is an atomic add
//! rather than a registry lookup. The command latency histogram is a fixed
//! set of atomic buckets rendered next to the exporter's output: recording
//! a sample costs a few atomic adds and no memory, where the exporter's
//! histograms buffer every sample until the next scrape.

use crate::commands::{self, CommandIndex};
use metrics::Counter;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

const COMMANDS_TOTAL: &str = "nearcache_commands_total";
const COMMAND_DURATION: &str = "nearcache_command_duration_seconds";
const CLIENT_CONNECTIONS: &str = "nearcache_client_connections";
const CLIENTS_REFUSED: &str = "nearcache_clients_refused_total";
const UNAUTHENTICATED_REFUSED: &str = "nearcache_unauthenticated_refused_total";
const CLIENTS_IDLE_CLOSED: &str = "nearcache_clients_idle_closed_total";
const UPSTREAM_ERRORS: &str = "nearcache_upstream_errors_total";
const UPSTREAM_CONNECTIONS: &str = "nearcache_upstream_connections";
const UPSTREAM_RECONNECTS: &str = "nearcache_upstream_reconnects_total";
const UPSTREAM_RESENT: &str = "nearcache_upstream_resent_total";
const UPSTREAM_STALLS: &str = "nearcache_upstream_stalls_total";
const UPSTREAM_STALLS_REFUTED: &str = "nearcache_upstream_stalls_refuted_total";
const DEDICATED_CONNECTIONS: &str = "nearcache_dedicated_connections";
const DEDICATED_RETURNED: &str = "nearcache_dedicated_returned_total";
const PROTOCOL_ERRORS: &str = "nearcache_client_protocol_errors_total";
const BREAKER_STATE: &str = "nearcache_breaker_state";
const BREAKER_TRANSITIONS: &str = "nearcache_breaker_transitions_total";
const CACHE_HITS: &str = "nearcache_cache_hits_total";
const CACHE_MISSES: &str = "nearcache_cache_misses_total";
const CACHE_EVICTIONS: &str = "nearcache_cache_evictions_total";
const CACHE_INVALIDATIONS: &str = "nearcache_cache_invalidations_total";
const CACHE_BYTES: &str = "nearcache_cache_bytes";
const CACHE_ENTRIES: &str = "nearcache_cache_entries";
const TRACKING_CONNECTED: &str = "nearcache_tracking_connected";
const TRACKING_LOSSES: &str = "nearcache_tracking_losses_total";
const FAILOVER_ACTIVE: &str = "nearcache_failover_active";
const FAILOVER_COMMANDS: &str = "nearcache_failover_commands_total";
const JOURNAL_ENTRIES: &str = "nearcache_journal_entries";
const JOURNAL_REPLAYED: &str = "nearcache_journal_replayed_total";
const DEAD_LETTERS: &str = "nearcache_journal_dead_letters";
const TENANT_COMMANDS: &str = "nearcache_tenant_commands_total";
const TENANT_REFUSALS: &str = "nearcache_tenant_refusals_total";
const AUTH_FAILURES: &str = "nearcache_auth_failures_total";
const CONFIG_RELOADS: &str = "nearcache_config_reloads_total";
const OUTPUT_LIMIT_CLOSED: &str = "nearcache_clients_output_limit_closed_total";
const CLUSTER_REDIRECTS: &str = "nearcache_cluster_redirects_total";
const CLUSTER_REFRESHES: &str = "nearcache_cluster_topology_refreshes_total";
const CLUSTER_SLOTS: &str = "nearcache_cluster_slots";
const CLUSTER_NODES_RESTING: &str = "nearcache_cluster_nodes_resting";

/// Installs the global Prometheus recorder (once per process) and returns
/// the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be incomplete");
            }
            describe();
            zero();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(COMMANDS_TOTAL, "Commands received, by command name");
    metrics::describe_counter!(CONFIG_RELOADS, "Configuration reloads, by result (ok, error)");
    metrics::describe_counter!(
        OUTPUT_LIMIT_CLOSED,
        "Clients disconnected for leaving more than client_output_buffer_limit unread"
    );
    metrics::describe_histogram!(
        COMMAND_DURATION,
        metrics::Unit::Seconds,
        "Time from receiving a forwarded command to having its reply"
    );
    metrics::describe_gauge!(CLIENT_CONNECTIONS, "Connected clients");
    metrics::describe_counter!(CLIENTS_REFUSED, "Connections refused because max_clients was reached");
    metrics::describe_counter!(
        UNAUTHENTICATED_REFUSED,
        "Connections refused because their address had tenancy.max_unauthenticated_per_address unauthenticated ones"
    );
    metrics::describe_counter!(CLIENTS_IDLE_CLOSED, "Clients closed after client_idle_timeout without input");
    metrics::describe_counter!(UPSTREAM_ERRORS, "Upstream failures, by kind");
    metrics::describe_gauge!(UPSTREAM_CONNECTIONS, "Open shared-pool connections to the upstream");
    metrics::describe_counter!(
        UPSTREAM_RECONNECTS,
        "Shared-pool connections lost (idle timeout, CLIENT KILL, restart) and reconnected at once; not an outage"
    );
    metrics::describe_counter!(
        UPSTREAM_RESENT,
        "Requests not yet written to a lost pool connection, sent again on its replacement"
    );
    metrics::describe_counter!(
        UPSTREAM_STALLS,
        "Times the upstream made no progress for breaker.stall_after with requests outstanding (circuit opened)"
    );
    metrics::describe_counter!(
        UPSTREAM_STALLS_REFUTED,
        "Times requests waited breaker.stall_after with nothing read but Redis answered a PING at once (CLIENT PAUSE WRITE, a long blocking write): no outage"
    );
    metrics::describe_gauge!(
        DEDICATED_CONNECTIONS,
        "Dedicated upstream connections, by role: client (dedicated while a client holds state), spare (ready for the next one) or tracking (invalidations)"
    );
    metrics::describe_counter!(
        DEDICATED_RETURNED,
        "Dedicated connections a client was done with: reset (RESET proved them clean, kept for the next client) or closed"
    );
    metrics::describe_counter!(PROTOCOL_ERRORS, "Client connections closed for a protocol error");
    metrics::describe_gauge!(BREAKER_STATE, "Circuit breaker per upstream: 0 closed, 1 half-open, 2 open");
    metrics::describe_counter!(BREAKER_TRANSITIONS, "Circuit breaker transitions, by state entered");
    metrics::describe_counter!(CACHE_HITS, "Reads answered from the near-cache");
    metrics::describe_counter!(CACHE_MISSES, "Cacheable reads that went upstream");
    metrics::describe_counter!(CACHE_EVICTIONS, "Near-cache entries removed, by reason: size, ttl, invalidation");
    metrics::describe_counter!(CACHE_INVALIDATIONS, "Invalidations applied (per key, or whole-cache clears)");
    metrics::describe_gauge!(CACHE_BYTES, "Weighted size of the near-cache (key and reply bytes)");
    metrics::describe_gauge!(CACHE_ENTRIES, "Keys in the near-cache");
    metrics::describe_gauge!(
        TRACKING_CONNECTED,
        "1 while invalidations from Redis are flowing (the cache serves only then)"
    );
    metrics::describe_counter!(TRACKING_LOSSES, "Times the invalidation connection was lost (the cache was cleared)");
    metrics::describe_counter!(
        CLUSTER_REDIRECTS,
        "Redis Cluster redirections followed for clients, by kind (moved, ask)"
    );
    metrics::describe_counter!(CLUSTER_REFRESHES, "Redis Cluster topology reads, by result (ok, error)");
    metrics::describe_gauge!(CLUSTER_SLOTS, "Hash slots each Redis Cluster node serves, by upstream");
    metrics::describe_gauge!(
        CLUSTER_NODES_RESTING,
        "Redis Cluster nodes serving no slot for 30 s: nothing connects to them until they serve slots again"
    );
    metrics::describe_gauge!(
        FAILOVER_ACTIVE,
        "1 while an upstream's requests (a cluster master's slots') are served from local memory"
    );
    metrics::describe_counter!(
        FAILOVER_COMMANDS,
        "Commands handled in failover mode, by result: served (from local memory) or refused"
    );
    metrics::describe_gauge!(JOURNAL_ENTRIES, "Writes accepted in failover mode and not yet replayed upstream");
    metrics::describe_counter!(
        JOURNAL_REPLAYED,
        "Journal entries handled on recovery, by result: ok, failed (kept as dead letters) or discarded"
    );
    metrics::describe_gauge!(DEAD_LETTERS, "Journal entries that failed to replay and are kept as dead letters");
    metrics::describe_counter!(TENANT_COMMANDS, "Commands run by tenants, by tenant");
    metrics::describe_counter!(
        TENANT_REFUSALS,
        "Tenant commands refused (or, for max_in_flight, clients held back), by tenant and reason: not_allowed, form, \
         rate_limit, max_connections, max_dedicated, max_in_flight, payload"
    );
    metrics::describe_counter!(AUTH_FAILURES, "Failed AUTH / HELLO AUTH attempts");
}

/// Series that exist from the start at 0, so `rate()` and `increase()` see
/// their first event (a series first seen at 1 counts as no increase).
/// Labelled series whose label values belong to other modules appear with
/// their first event.
fn zero() {
    for counter in [
        AUTH_FAILURES,
        CLIENTS_REFUSED,
        UNAUTHENTICATED_REFUSED,
        CLIENTS_IDLE_CLOSED,
        OUTPUT_LIMIT_CLOSED,
        PROTOCOL_ERRORS,
        TRACKING_LOSSES,
        UPSTREAM_RECONNECTS,
        UPSTREAM_RESENT,
        UPSTREAM_STALLS,
        UPSTREAM_STALLS_REFUTED,
    ] {
        metrics::counter!(counter).absolute(0);
    }
    for result in ["ok", "error"] {
        metrics::counter!(CONFIG_RELOADS, "result" => result).absolute(0);
    }
    for gauge in [FAILOVER_ACTIVE, JOURNAL_ENTRIES, DEAD_LETTERS] {
        metrics::gauge!(gauge).set(0.0);
    }
}

struct Handles {
    commands: Vec<Counter>,
    unknown: Counter,
    hits: Counter,
    misses: Counter,
    cache_entries: metrics::Gauge,
    cache_bytes: metrics::Gauge,
}

fn handles() -> &'static Handles {
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    HANDLES.get_or_init(|| Handles {
        commands: commands::all().iter().map(|c| metrics::counter!(COMMANDS_TOTAL, "command" => c.name)).collect(),
        unknown: metrics::counter!(COMMANDS_TOTAL, "command" => "unknown"),
        hits: metrics::counter!(CACHE_HITS),
        misses: metrics::counter!(CACHE_MISSES),
        cache_entries: metrics::gauge!(CACHE_ENTRIES),
        cache_bytes: metrics::gauge!(CACHE_BYTES),
    })
}

/// Counts one command (`None` for a name not in the table).
pub fn command(index: Option<CommandIndex>) {
    let h = handles();
    match index.and_then(|i| h.commands.get(i)) {
        Some(c) => c.increment(1),
        None => h.unknown.increment(1),
    }
}

/// Upper bounds of the latency buckets, in seconds and nanoseconds.
const BUCKETS: [(&str, u64); 13] = [
    ("0.0001", 100_000),
    ("0.00025", 250_000),
    ("0.0005", 500_000),
    ("0.001", 1_000_000),
    ("0.0025", 2_500_000),
    ("0.005", 5_000_000),
    ("0.01", 10_000_000),
    ("0.025", 25_000_000),
    ("0.05", 50_000_000),
    ("0.1", 100_000_000),
    ("0.25", 250_000_000),
    ("1", 1_000_000_000),
    ("5", 5_000_000_000),
];

/// Command latency: per-bucket counts (the last one is +Inf), the sum in
/// nanoseconds.
struct Latency {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

static LATENCY: Latency =
    Latency { buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1], sum_nanos: AtomicU64::new(0) };

/// Records that `count` forwarded commands took `elapsed` (from being read
/// to having their replies).
pub fn command_duration(elapsed: std::time::Duration, count: usize) {
    let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
    let bucket = BUCKETS.iter().position(|&(_, bound)| nanos <= bound).unwrap_or(BUCKETS.len());
    LATENCY.buckets[bucket].fetch_add(count as u64, Ordering::Relaxed);
    LATENCY.sum_nanos.fetch_add(nanos.saturating_mul(count as u64), Ordering::Relaxed);
}

/// The full `/metrics` text: the exporter's metrics and the latency
/// histogram.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    let _ = writeln!(out, "# HELP {COMMAND_DURATION} Time from reading a forwarded command to having its reply");
    let _ = writeln!(out, "# TYPE {COMMAND_DURATION} histogram");
    let mut cumulative = 0;
    for (i, le) in BUCKETS.iter().map(|&(le, _)| le).chain(["+Inf"]).enumerate() {
        cumulative += LATENCY.buckets[i].load(Ordering::Relaxed);
        let _ = writeln!(out, "{COMMAND_DURATION}_bucket{{le=\"{le}\"}} {cumulative}");
    }
    let sum = LATENCY.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
    let _ = writeln!(out, "{COMMAND_DURATION}_sum {sum}");
    let _ = writeln!(out, "{COMMAND_DURATION}_count {cumulative}");
    out
}

pub fn client_idle_closed() {
    metrics::counter!(CLIENTS_IDLE_CLOSED).increment(1);
}

pub fn client_refused() {
    metrics::counter!(CLIENTS_REFUSED).increment(1);
}

pub fn client_connections(delta: f64) {
    metrics::gauge!(CLIENT_CONNECTIONS).increment(delta);
}

pub fn upstream_connected(delta: f64) {
    metrics::gauge!(UPSTREAM_CONNECTIONS).increment(delta);
}

pub fn dedicated_connections(role: &'static str, delta: f64) {
    metrics::gauge!(DEDICATED_CONNECTIONS, "role" => role).increment(delta);
}

/// A client was done with its dedicated connection: `reset` for the next
/// client, or `closed`.
pub fn dedicated_returned(outcome: &'static str) {
    metrics::counter!(DEDICATED_RETURNED, "outcome" => outcome).increment(1);
}

/// An upstream error, by `UpstreamError::kind`.
pub fn upstream_error(kind: &'static str) {
    metrics::counter!(UPSTREAM_ERRORS, "kind" => kind).increment(1);
}

/// A pool connection was lost and is being replaced; `resent` requests
/// not yet written go out on the new one.
pub fn upstream_reconnect(resent: usize) {
    metrics::counter!(UPSTREAM_RECONNECTS).increment(1);
    metrics::counter!(UPSTREAM_RESENT).increment(resent as u64);
}

pub fn upstream_stall() {
    metrics::counter!(UPSTREAM_STALLS).increment(1);
}

pub fn upstream_stall_refuted() {
    metrics::counter!(UPSTREAM_STALLS_REFUTED).increment(1);
}

pub fn unauthenticated_refused() {
    metrics::counter!(UNAUTHENTICATED_REFUSED).increment(1);
}

pub fn protocol_error() {
    metrics::counter!(PROTOCOL_ERRORS).increment(1);
}

pub fn cache_counts(hits: u64, misses: u64) {
    let h = handles();
    h.hits.absolute(hits);
    h.misses.absolute(misses);
}

pub fn cache_eviction(reason: &'static str) {
    metrics::counter!(CACHE_EVICTIONS, "reason" => reason).increment(1);
}

pub fn cache_invalidation() {
    metrics::counter!(CACHE_INVALIDATIONS).increment(1);
}

pub fn cache_size(entries: u64, bytes: u64) {
    let h = handles();
    h.cache_entries.set(entries as f64);
    h.cache_bytes.set(bytes as f64);
}

pub fn tracking_connected(up: bool) {
    metrics::gauge!(TRACKING_CONNECTED).set(if up { 1.0 } else { 0.0 });
}

/// A Redis Cluster node redirected a request (`kind`: `moved`, `ask`).
pub fn cluster_redirect(kind: &'static str) {
    metrics::counter!(CLUSTER_REDIRECTS, "kind" => kind).increment(1);
}

/// The cluster's topology was read (`ok`) or could not be (`error`).
pub fn cluster_refresh(result: &'static str) {
    metrics::counter!(CLUSTER_REFRESHES, "result" => result).increment(1);
}

/// Node `upstream` serves `slots` hash slots.
pub fn cluster_slots(upstream: &str, slots: usize) {
    metrics::gauge!(CLUSTER_SLOTS, "upstream" => upstream.to_string()).set(slots as f64);
}

/// `count` cluster nodes rest (serve no slot: nothing connects to them).
pub fn cluster_nodes_resting(count: usize) {
    metrics::gauge!(CLUSTER_NODES_RESTING).set(count as f64);
}

pub fn tracking_lost() {
    metrics::counter!(TRACKING_LOSSES).increment(1);
}

pub fn breaker_state(upstream: &str, state: u8) {
    metrics::gauge!(BREAKER_STATE, "upstream" => upstream.to_string()).set(f64::from(state));
}

pub fn breaker_transition(to: &'static str) {
    metrics::counter!(BREAKER_TRANSITIONS, "to" => to).increment(1);
}

/// `upstream`'s requests (with a cluster, its slots') are served from
/// local memory.
pub fn failover_active(upstream: &str, active: bool) {
    metrics::gauge!(FAILOVER_ACTIVE, "upstream" => upstream.to_string()).set(if active { 1.0 } else { 0.0 });
}

pub fn failover_command(result: &'static str) {
    metrics::counter!(FAILOVER_COMMANDS, "result" => result).increment(1);
}

pub fn journal_entries(n: usize) {
    metrics::gauge!(JOURNAL_ENTRIES).set(n as f64);
}

pub fn journal_replayed(result: &'static str, n: usize) {
    metrics::counter!(JOURNAL_REPLAYED, "result" => result).increment(n as u64);
}

pub fn dead_letters(n: usize) {
    metrics::gauge!(DEAD_LETTERS).set(n as f64);
}

/// The per-tenant command counter (kept by the tenant: counting is then an
/// atomic add).
pub fn tenant_commands(tenant: &str) -> Counter {
    metrics::counter!(TENANT_COMMANDS, "tenant" => tenant.to_string())
}

pub fn tenant_refusal(tenant: &str, reason: &'static str) {
    metrics::counter!(TENANT_REFUSALS, "tenant" => tenant.to_string(), "reason" => reason).increment(1);
}

pub fn auth_failure() {
    metrics::counter!(AUTH_FAILURES).increment(1);
}

/// A configuration reload: `ok`, or `error` (the file was rejected).
pub fn config_reload(result: &'static str) {
    metrics::counter!(CONFIG_RELOADS, "result" => result).increment(1);
}

/// A client disconnected at `client_output_buffer_limit`.
pub fn client_output_limit() {
    metrics::counter!(OUTPUT_LIMIT_CLOSED).increment(1);
}
