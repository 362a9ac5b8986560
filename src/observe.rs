//! Metrics: the Prometheus recorder and every metric nearcache exports.
//!
//! Metric names live here only. Per-command counters are registered once,
//! indexed like the command table, so counting a request is an atomic add
//! rather than a registry lookup.

use crate::commands::{self, CommandIndex};
use crate::upstream::UpstreamError;
use metrics::{Counter, Histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

const COMMANDS_TOTAL: &str = "nearcache_commands_total";
const COMMAND_DURATION: &str = "nearcache_command_duration_seconds";
const CLIENT_CONNECTIONS: &str = "nearcache_client_connections";
const UPSTREAM_ERRORS: &str = "nearcache_upstream_errors_total";
const UPSTREAM_CONNECTIONS: &str = "nearcache_upstream_connections";
const PINNED_CONNECTIONS: &str = "nearcache_pinned_connections";
const PROTOCOL_ERRORS: &str = "nearcache_client_protocol_errors_total";

/// Installs the global Prometheus recorder (once per process) and returns
/// the handle that renders `/metrics`.
pub fn install() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let buckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(COMMAND_DURATION.into()), &buckets)
                .map(PrometheusBuilder::build_recorder);
            match recorder {
                Ok(recorder) => {
                    let handle = recorder.handle();
                    if metrics::set_global_recorder(recorder).is_err() {
                        tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
                    }
                    describe();
                    handle
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot build the metrics recorder");
                    PrometheusBuilder::new().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(COMMANDS_TOTAL, "Commands received, by command name");
    metrics::describe_histogram!(
        COMMAND_DURATION,
        metrics::Unit::Seconds,
        "Time from receiving a forwarded command to having its reply"
    );
    metrics::describe_gauge!(CLIENT_CONNECTIONS, "Connected clients");
    metrics::describe_counter!(UPSTREAM_ERRORS, "Upstream failures, by kind");
    metrics::describe_gauge!(UPSTREAM_CONNECTIONS, "Open shared-pool connections to the upstream");
    metrics::describe_gauge!(
        PINNED_CONNECTIONS,
        "Upstream connections pinned to one client (transactions, blocking, pub/sub)"
    );
    metrics::describe_counter!(PROTOCOL_ERRORS, "Client connections closed for a protocol error");
}

struct Handles {
    commands: Vec<Counter>,
    unknown: Counter,
    duration: Histogram,
}

fn handles() -> &'static Handles {
    static HANDLES: OnceLock<Handles> = OnceLock::new();
    HANDLES.get_or_init(|| Handles {
        commands: commands::all().iter().map(|c| metrics::counter!(COMMANDS_TOTAL, "command" => c.name)).collect(),
        unknown: metrics::counter!(COMMANDS_TOTAL, "command" => "unknown"),
        duration: metrics::histogram!(COMMAND_DURATION),
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

/// Records how long `count` forwarded commands took.
pub fn command_duration(seconds: f64, count: usize) {
    let h = &handles().duration;
    for _ in 0..count {
        h.record(seconds);
    }
}

pub fn client_connections(delta: f64) {
    metrics::gauge!(CLIENT_CONNECTIONS).increment(delta);
}

pub fn upstream_connected(delta: f64) {
    metrics::gauge!(UPSTREAM_CONNECTIONS).increment(delta);
}

pub fn pinned_connections(delta: f64) {
    metrics::gauge!(PINNED_CONNECTIONS).increment(delta);
}

pub fn upstream_error(e: &UpstreamError) {
    metrics::counter!(UPSTREAM_ERRORS, "kind" => e.kind()).increment(1);
}

pub fn protocol_error() {
    metrics::counter!(PROTOCOL_ERRORS).increment(1);
}
