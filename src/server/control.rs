//! What the operator can do to a running proxy (signals, admin API): hot
//! reload, and counting its clients.
//!
//! A reload (`SIGHUP` or `POST /config/reload`) re-reads `proxy.toml` and
//! applies what can change while clients stay connected: cache policies,
//! breaker settings, tenants (rules, limits; removed tenants and changed
//! passwords or prefixes close their clients). Settings that need a restart
//! (listen addresses, the upstream, failover, …) are reported, not applied.
//! An invalid file is rejected whole and the running configuration kept.

use super::registry::Clients;
use super::Shared;
use crate::config::{Config, ConfigError, Overrides, UpstreamConfig};
use crate::observe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// Where the configuration comes from: the file and the flag/environment
/// overrides it was started with (they keep winning over the file).
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub overrides: Overrides,
}

/// What a reload did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// What changed live (`cache.policy`, `breaker`, `tenant acme added`,
    /// `tenancy.default_tenant`, …).
    pub applied: Vec<String>,
    /// Keys that differ but take effect only after a restart.
    pub restart_required: Vec<&'static str>,
    /// Clients closed because their tenant was revoked.
    pub clients_closed: usize,
}

pub struct Control {
    source: ConfigSource,
    running: Mutex<Config>,
    shared: Arc<Shared>,
    clients: Arc<Clients>,
}

/// One cluster master, for `/ready`.
pub struct NodeReport {
    pub upstream: String,
    pub up: bool,
    pub slots: usize,
    /// Why the master, reachable, refuses the proxy's probes.
    pub refused: Option<String>,
}

impl Control {
    pub(super) fn new(source: ConfigSource, running: Config, shared: Arc<Shared>, clients: Arc<Clients>) -> Control {
        Control { source, running: Mutex::new(running), shared, clients }
    }

    /// Connected clients: in all, and per tenant (empty without tenants).
    pub fn clients(&self) -> (usize, Vec<(String, usize)>) {
        (self.clients.count(), self.shared.tenancy.connections())
    }

    /// A Redis Cluster upstream's masters: each one's URL, whether its
    /// circuit lets requests through, and how many slots it serves; empty
    /// for a single Redis.
    pub fn cluster_nodes(&self) -> Vec<NodeReport> {
        let Some(cluster) = self.shared.router.as_cluster() else { return Vec::new() };
        cluster
            .slots_per_node()
            .into_iter()
            .filter(|&(_, slots)| slots > 0)
            .map(|(id, slots)| {
                let node = cluster.node(id);
                let breaker = &node.health.breaker;
                NodeReport {
                    upstream: node.config.url.to_string(),
                    up: breaker.allows(),
                    slots,
                    refused: breaker.refusal_reason(),
                }
            })
            .collect()
    }

    /// Re-reads the file and applies it; the error names the file, key and
    /// what was expected, and nothing is applied then.
    pub fn reload(&self) -> Result<Report, ConfigError> {
        let new = Config::load(self.source.file.as_deref(), &self.source.overrides).inspect_err(|e| {
            observe::config_reload("error");
            tracing::error!(error = %e, "config reload rejected: the running configuration is kept");
        })?;
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        let mut report = Report { restart_required: restart_only(&running, &new), ..Report::default() };
        let (policies, restart) = self.shared.cache.reconfigure(&new.cache);
        report.restart_required.extend(restart);
        if policies {
            report.applied.push("cache.policy".into());
        }
        let nodes = self.shared.router.nodes();
        let reconfigured = nodes.iter().map(|node| node.health.breaker.reconfigure(&new.breaker));
        if reconfigured.filter(|&changed| changed).count() > 0 {
            report.applied.push("breaker".into());
        }
        let tenants = self.shared.tenancy.reload(&new.tenancy);
        report.restart_required.extend(tenants.restart);
        report.applied.extend(tenants.added.iter().map(|t| format!("tenant {t} added")));
        report.applied.extend(tenants.updated.iter().map(|t| format!("tenant {t} updated")));
        report.applied.extend(tenants.revoked.iter().map(|t| format!("tenant {t} revoked")));
        report.applied.extend(tenants.settings.iter().map(|key| key.to_string()));
        if !tenants.revoked.is_empty() {
            report.clients_closed = self.clients.close_revoked();
        }
        *running = new;
        observe::config_reload("ok");
        tracing::info!(
            applied = ?report.applied,
            restart_required = ?report.restart_required,
            clients_closed = report.clients_closed,
            "configuration reloaded"
        );
        Ok(report)
    }
}

/// The settings that differ between `old` and `new` and are read only at
/// start.
fn restart_only(old: &Config, new: &Config) -> Vec<&'static str> {
    [
        ("server.listen", old.server.listen != new.server.listen),
        ("server", old.server != new.server && old.server.listen == new.server.listen),
        ("admin", old.admin != new.admin),
        ("log", old.log != new.log),
        ("upstream", !same_upstream(&old.upstream, &new.upstream)),
        ("failover", old.failover != new.failover),
    ]
    .into_iter()
    .filter_map(|(key, differs)| differs.then_some(key))
    .collect()
}

/// Upstream settings compared by what they were built from (TLS material
/// is compared by the URL scheme and host it was built for).
fn same_upstream(a: &UpstreamConfig, b: &UpstreamConfig) -> bool {
    a.url == b.url
        && a.pool_size == b.pool_size
        && a.connect_timeout == b.connect_timeout
        && a.request_timeout == b.request_timeout
        && a.reconnect_max_backoff == b.reconnect_max_backoff
        && a.tls.is_some() == b.tls.is_some()
}
