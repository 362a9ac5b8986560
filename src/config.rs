//! Configuration: `proxy.toml`, overridden by command-line flags and
//! `NEARCACHE_*` environment variables.
//!
//! The file is read into plain serde structs, then validated into typed
//! values; every error names the file, the key and what was expected.

use crate::cache::{Admission, CacheConfig, Policy};
use crate::failover::{FailoverConfig, Fsync, OnRecover};
use crate::tenancy::{parse_sha256, Rule, TenancyConfig, TenantConfig};
use crate::upstream::breaker::BreakerConfig;
pub use crate::upstream::UpstreamConfig;
use crate::upstream::{Tls, TlsError, UpstreamUrl};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration problem, reported before anything starts.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot read: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {message}")]
    Parse { file: String, message: String },
    #[error("{file}: `{key}`: expected {expected}, got {got:?}")]
    Invalid { file: String, key: &'static str, expected: &'static str, got: String },
}

/// The validated configuration the proxy runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    /// `upstream.cluster`: a Redis Cluster's seed nodes (`host:port`), the
    /// first one's URL in `upstream`; empty for a single Redis.
    pub cluster_seeds: Vec<String>,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub cache: CacheConfig,
    pub breaker: BreakerConfig,
    pub failover: FailoverConfig,
    pub tenancy: TenancyConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub proto_max_bulk_len: usize,
    pub max_multibulk_len: usize,
    /// Most commands a client may have in flight before the proxy stops
    /// reading from it until replies drain.
    pub max_pipeline: usize,
    /// Replies and pushed messages a client may leave unread before it is
    /// disconnected, in bytes; `None`: no limit.
    pub client_output_buffer_limit: Option<usize>,
    /// Connections past this many get `-ERR max number of clients reached`.
    pub max_clients: usize,
    /// TCP keepalive idle time on client sockets (dead peers are noticed).
    pub tcp_keepalive: Duration,
    /// Clients silent for longer are closed; `None`: never.
    pub client_idle_timeout: Option<Duration>,
    pub shutdown_timeout: Duration,
    /// Threads serving clients, each its own event loop with its own
    /// upstream pool; 0 means one per CPU core.
    pub worker_threads: usize,
    /// A second listener for TLS clients.
    pub tls: Option<ClientTlsConfig>,
    /// Who checks a client's `AUTH` (`server.auth`).
    pub auth: AuthMode,
}

/// `server.auth`: who checks a client's `AUTH user password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AuthMode {
    /// The proxy: against its tenants, or (with none) `AUTH` is accepted
    /// and every client acts as the upstream URL's user.
    #[default]
    Proxy,
    /// Redis: a client's `AUTH` is verified by Redis and its commands run
    /// on a dedicated connection authenticated as its user, so Redis' ACLs
    /// hold per user.
    Upstream,
}

/// `server.tls_listen`, `server.tls_cert_file`, `server.tls_key_file`.
#[derive(Debug, Clone)]
pub struct ClientTlsConfig {
    pub listen: SocketAddr,
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    /// Built once here from the two files, so a bad certificate or key
    /// stops the proxy before it starts.
    pub acceptor: crate::client_tls::ServerTls,
}

/// Compared by what it was built from (the files' paths).
impl PartialEq for ClientTlsConfig {
    fn eq(&self, other: &Self) -> bool {
        self.listen == other.listen && self.cert_file == other.cert_file && self.key_file == other.key_file
    }
}

impl Eq for ClientTlsConfig {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// When set, every endpoint but `/health` wants
    /// `Authorization: Bearer <token>`.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `RUST_LOG`-style filter; `RUST_LOG` itself wins when set.
    pub level: String,
}

/// Values from the command line or environment that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub upstream: Option<String>,
    pub admin_listen: Option<String>,
    pub log_format: Option<String>,
    pub log_level: Option<String>,
    pub worker_threads: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    server: RawServer,
    upstream: RawUpstream,
    admin: RawAdmin,
    log: RawLog,
    cache: RawCache,
    breaker: RawBreaker,
    failover: RawFailover,
    tenancy: RawTenancy,
    tenant: Vec<RawTenant>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawTenancy {
    default_tenant: Option<String>,
    auth_failures_per_minute: u64,
    max_unauthenticated_per_address: u64,
}

impl Default for RawTenancy {
    fn default() -> Self {
        RawTenancy { default_tenant: None, auth_failures_per_minute: 10, max_unauthenticated_per_address: 256 }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTenant {
    name: String,
    password_sha256: Option<String>,
    /// Refused with a clear error: only hashes belong in the file.
    password: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    max_ops_per_sec: u64,
    #[serde(default)]
    max_connections: u64,
    #[serde(default)]
    allow_scripts: bool,
    #[serde(default)]
    allow_restore: bool,
    #[serde(default)]
    max_keys_per_sec: u64,
    #[serde(default)]
    max_bytes_per_sec: u64,
    #[serde(default = "default_max_in_flight")]
    max_in_flight: u64,
    #[serde(default = "default_max_dedicated")]
    max_dedicated: u64,
    #[serde(default = "default_max_request_bytes")]
    max_request_bytes: u64,
}

fn default_max_in_flight() -> u64 {
    TenantConfig::DEFAULT_MAX_IN_FLIGHT as u64
}

fn default_max_dedicated() -> u64 {
    TenantConfig::DEFAULT_MAX_DEDICATED as u64
}

fn default_max_request_bytes() -> u64 {
    TenantConfig::DEFAULT_MAX_REQUEST_BYTES as u64
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawFailover {
    enabled: bool,
    serve_stale: bool,
    max_stale: String,
    max_bytes: u64,
    journal_max_bytes: u64,
    journal_path: Option<String>,
    fsync: String,
    dead_letter_path: Option<String>,
    on_recover: String,
}

impl Default for RawFailover {
    fn default() -> Self {
        RawFailover {
            enabled: true,
            serve_stale: true,
            max_stale: "1h".into(),
            max_bytes: 64 * 1024 * 1024,
            journal_max_bytes: 64 * 1024 * 1024,
            journal_path: None,
            fsync: "everysec".into(),
            dead_letter_path: None,
            on_recover: "replay".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawBreaker {
    failure_threshold: u64,
    window: String,
    open_for: String,
    success_threshold: u64,
    stall_after: String,
}

impl Default for RawBreaker {
    fn default() -> Self {
        RawBreaker {
            failure_threshold: 5,
            window: "10s".into(),
            open_for: "2s".into(),
            success_threshold: 2,
            stall_after: "500ms".into(),
        }
    }
}

/// Largest `cache.admission_window`: its table then takes 64 MiB.
const MAX_ADMISSION_WINDOW: u64 = 1 << 24;

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawCache {
    enabled: bool,
    max_bytes: u64,
    /// `"0s"` or `"off"`: keys matching no policy are not cached.
    default_ttl: String,
    admission: String,
    admission_window: u64,
    policy: Vec<RawPolicy>,
}

impl Default for RawCache {
    fn default() -> Self {
        RawCache {
            enabled: true,
            max_bytes: 64 * 1024 * 1024,
            default_ttl: "60s".into(),
            admission: "second".into(),
            admission_window: CacheConfig::default().admission_window as u64,
            policy: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    pattern: String,
    ttl: Option<String>,
    cache: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawServer {
    listen: String,
    proto_max_bulk_len: u64,
    max_multibulk_len: u64,
    max_pipeline: u64,
    client_output_buffer_limit: u64,
    max_clients: u64,
    tcp_keepalive: String,
    client_idle_timeout: String,
    shutdown_timeout: String,
    worker_threads: u64,
    tls_listen: Option<String>,
    tls_cert_file: Option<String>,
    tls_key_file: Option<String>,
    auth: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:6380".into(),
            proto_max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_pipeline: 4096,
            client_output_buffer_limit: 64 * 1024 * 1024,
            max_clients: 10_000,
            tcp_keepalive: "300s".into(),
            client_idle_timeout: "0s".into(),
            shutdown_timeout: "5s".into(),
            worker_threads: 1,
            auth: "proxy".into(),
            tls_listen: None,
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawUpstream {
    url: String,
    /// Seed node URLs of a Redis Cluster (instead of `url`).
    cluster: Vec<String>,
    pool_size: u64,
    connect_timeout: String,
    request_timeout: String,
    reconnect_max_backoff: String,
    /// PEM file of the CA certificates to trust; the built-in roots if unset.
    tls_ca_file: Option<String>,
    /// Testing only: accept any certificate.
    tls_insecure_skip_verify: bool,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            url: "redis://127.0.0.1:6379".into(),
            cluster: Vec::new(),
            pool_size: 2,
            connect_timeout: "1s".into(),
            request_timeout: "3s".into(),
            reconnect_max_backoff: "2s".into(),
            tls_ca_file: None,
            tls_insecure_skip_verify: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawAdmin {
    listen: String,
    token: Option<String>,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin { listen: "127.0.0.1:9121".into(), token: None }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLog {
    format: String,
    level: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog { format: "text".into(), level: "info".into() }
    }
}

impl Config {
    /// Loads `file` (or the defaults when `None`) and applies `overrides`.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (name, raw) = match file {
            Some(path) => (path.display().to_string(), read_raw(path)?),
            None => ("<defaults>".to_string(), RawConfig::default()),
        };
        Validator { file: &name }.validate(raw, overrides)
    }

    /// The defaults, as if started with no file and no flags.
    pub fn defaults() -> Config {
        Validator { file: "<defaults>" }
            .validate(RawConfig::default(), &Overrides::default())
            .expect("built-in defaults are valid")
    }
}

fn read_raw(path: &Path) -> Result<RawConfig, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { file: file.clone(), source })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse { file, message: e.to_string() })
}

struct Validator<'a> {
    file: &'a str,
}

impl Validator<'_> {
    fn validate(&self, mut raw: RawConfig, o: &Overrides) -> Result<Config, ConfigError> {
        // A `redis+cluster://` URL names a cluster's seeds; `--upstream`
        // replaces whatever upstream the file names.
        match o.upstream.as_deref() {
            Some(url) => raw.upstream.cluster = self.cluster_url(url)?,
            None if raw.upstream.cluster.is_empty() => raw.upstream.cluster = self.cluster_url(&raw.upstream.url)?,
            None => {}
        }
        let failover = raw.failover;
        let cluster = !raw.upstream.cluster.is_empty();
        let pick = |flag: &Option<String>, file: String| flag.clone().unwrap_or(file);
        Ok(Config {
            server: ServerConfig {
                listen: self.addr("server.listen", &pick(&o.listen, raw.server.listen))?,
                proto_max_bulk_len: self.size("server.proto_max_bulk_len", raw.server.proto_max_bulk_len)?,
                max_multibulk_len: self.size("server.max_multibulk_len", raw.server.max_multibulk_len)?,
                max_pipeline: self.size("server.max_pipeline", raw.server.max_pipeline)?,
                client_output_buffer_limit: match raw.server.client_output_buffer_limit {
                    0 => None,
                    n => Some(self.size("server.client_output_buffer_limit", n)?),
                },
                max_clients: self.size("server.max_clients", raw.server.max_clients)?,
                tcp_keepalive: self.duration("server.tcp_keepalive", &raw.server.tcp_keepalive)?,
                client_idle_timeout: match raw.server.client_idle_timeout.as_str() {
                    "0" | "0s" | "off" => None,
                    t => Some(self.duration("server.client_idle_timeout", t)?),
                },
                shutdown_timeout: self.duration("server.shutdown_timeout", &raw.server.shutdown_timeout)?,
                worker_threads: match o.worker_threads {
                    Some(n) => n,
                    None => usize::try_from(raw.server.worker_threads).map_err(|_| {
                        self.invalid("server.worker_threads", "a thread count", raw.server.worker_threads)
                    })?,
                },
                tls: self.client_tls(raw.server.tls_listen, raw.server.tls_cert_file, raw.server.tls_key_file)?,
                auth: match raw.server.auth.as_str() {
                    "proxy" => AuthMode::Proxy,
                    "upstream" if cluster => {
                        return Err(self.invalid("server.auth", "\"proxy\" with a cluster upstream", "upstream"))
                    }
                    "upstream" if raw.tenant.is_empty() => AuthMode::Upstream,
                    "upstream" => {
                        return Err(self.invalid("server.auth", "\"proxy\" when tenants are configured", "upstream"))
                    }
                    other => return Err(self.invalid("server.auth", "\"proxy\" or \"upstream\"", other)),
                },
            },
            cluster_seeds: self.cluster_seeds(&raw.upstream.cluster)?,
            upstream: self.upstream(raw.upstream, o.upstream.as_deref())?,
            admin: AdminConfig {
                listen: self.addr("admin.listen", &pick(&o.admin_listen, raw.admin.listen))?,
                token: self.admin_token(raw.admin.token)?,
            },
            log: LogConfig {
                format: self.log_format(&pick(&o.log_format, raw.log.format))?,
                level: pick(&o.log_level, raw.log.level),
            },
            cache: self.cache(raw.cache)?,
            breaker: BreakerConfig {
                failure_threshold: self.count("breaker.failure_threshold", raw.breaker.failure_threshold)?,
                window: self.duration("breaker.window", &raw.breaker.window)?,
                open_for: self.duration("breaker.open_for", &raw.breaker.open_for)?,
                success_threshold: self.count("breaker.success_threshold", raw.breaker.success_threshold)?,
                stall_after: self.duration("breaker.stall_after", &raw.breaker.stall_after)?,
                failover: failover.enabled,
            },
            failover: self.failover(failover)?,
            tenancy: self.tenancy(raw.tenancy, raw.tenant, cluster)?,
        })
        .map(|mut config: Config| {
            if config.failover.enabled && config.failover.serve_stale {
                config.cache.stale_for = Some(config.failover.max_stale);
            }
            config
        })
    }

    /// The seed URLs of `redis+cluster://[user:password@]h1:p1,h2:p2[/0]`
    /// (`rediss+cluster://` for TLS): one `redis://` URL per host, with the
    /// same credentials; nothing for any other URL.
    fn cluster_url(&self, url: &str) -> Result<Vec<String>, ConfigError> {
        let Some((scheme, rest)) = url.split_once("://") else { return Ok(Vec::new()) };
        let Some(scheme) = scheme.strip_suffix("+cluster") else { return Ok(Vec::new()) };
        let (authority, path) = rest.split_once('/').map_or((rest, None), |(a, p)| (a, Some(p)));
        let (userinfo, hosts) = authority.rsplit_once('@').map_or((None, authority), |(u, h)| (Some(u), h));
        let seeds: Vec<String> = hosts
            .split(',')
            .filter(|h| !h.is_empty())
            .map(|host| {
                let userinfo = userinfo.map(|u| format!("{u}@")).unwrap_or_default();
                let path = path.map(|p| format!("/{p}")).unwrap_or_default();
                format!("{scheme}://{userinfo}{host}{path}")
            })
            .collect();
        if seeds.is_empty() {
            return Err(self.invalid("upstream.url", "redis+cluster://host:port,host:port…", UpstreamUrl::redact(url)));
        }
        Ok(seeds)
    }

    /// The `host:port` of each seed of `upstream.cluster`: URLs with the
    /// same scheme and credentials (the first one's are used for every
    /// node), database 0 (a cluster has no other).
    fn cluster_seeds(&self, urls: &[String]) -> Result<Vec<String>, ConfigError> {
        const EXPECTED: &str = "redis:// or rediss:// URLs of cluster nodes, all with the same scheme and credentials and no database but 0";
        let mut seeds = Vec::with_capacity(urls.len());
        let mut first: Option<UpstreamUrl> = None;
        for raw in urls {
            let url = self.url("upstream.cluster", raw)?;
            let differs = first
                .as_ref()
                .is_some_and(|f| f.tls != url.tls || f.username != url.username || f.password != url.password);
            if url.db != 0 || differs {
                return Err(self.invalid("upstream.cluster", EXPECTED, UpstreamUrl::redact(raw)));
            }
            seeds.push(url.addr.clone());
            first.get_or_insert(url);
        }
        Ok(seeds)
    }

    fn upstream(&self, raw: RawUpstream, url_override: Option<&str>) -> Result<UpstreamConfig, ConfigError> {
        let url = match raw.cluster.first() {
            Some(seed) => self.url("upstream.cluster", seed)?,
            None => self.url("upstream.url", url_override.unwrap_or(&raw.url))?,
        };
        let tls = if url.tls {
            Some(self.tls(&url, raw.tls_ca_file.as_deref(), raw.tls_insecure_skip_verify)?)
        } else {
            None
        };
        Ok(UpstreamConfig {
            pool_size: self.size("upstream.pool_size", raw.pool_size)?,
            connect_timeout: self.duration("upstream.connect_timeout", &raw.connect_timeout)?,
            request_timeout: self.duration("upstream.request_timeout", &raw.request_timeout)?,
            reconnect_max_backoff: self.duration("upstream.reconnect_max_backoff", &raw.reconnect_max_backoff)?,
            url,
            tls,
        })
    }

    /// The TLS settings of a `rediss://` upstream (the `tls_*` keys are
    /// ignored for `redis://`).
    fn tls(&self, url: &UpstreamUrl, ca_file: Option<&str>, insecure: bool) -> Result<Tls, ConfigError> {
        Tls::new(&url.host, ca_file.map(Path::new), insecure).map_err(|e| match e {
            TlsError::CaFile { .. } => {
                self.invalid("upstream.tls_ca_file", "a readable PEM file with at least one CA certificate", e)
            }
            TlsError::ServerName(host) => {
                self.invalid("upstream.url", "a host name or IP address usable as a TLS server name", host)
            }
            TlsError::Setup(e) => self.invalid("upstream.url", "TLS settings rustls accepts", e),
        })
    }

    fn cache(&self, raw: RawCache) -> Result<CacheConfig, ConfigError> {
        let default_ttl = match raw.default_ttl.as_str() {
            "off" | "0s" | "0" => None,
            ttl => Some(self.duration("cache.default_ttl", ttl)?),
        };
        let mut policies = Vec::with_capacity(raw.policy.len());
        for p in raw.policy {
            let ttl = match (p.cache, p.ttl) {
                (Some(false), None) => None,
                (Some(false), Some(_)) => {
                    return Err(self.invalid("cache.policy.ttl", "no ttl on a policy with cache = false", &p.pattern))
                }
                (_, Some(ttl)) => Some(self.duration("cache.policy.ttl", &ttl)?),
                (_, None) => {
                    return Err(self.invalid("cache.policy", "a ttl, or cache = false, for pattern", &p.pattern))
                }
            };
            policies.push(Policy { pattern: p.pattern, ttl });
        }
        Ok(CacheConfig {
            enabled: raw.enabled,
            max_bytes: self.size("cache.max_bytes", raw.max_bytes)? as u64,
            default_ttl,
            policies,
            stale_for: None,
            admission: match raw.admission.as_str() {
                "first" => Admission::First,
                "second" => Admission::Second,
                other => return Err(self.invalid("cache.admission", "\"first\" or \"second\"", other)),
            },
            admission_window: match raw.admission_window {
                n @ 1..=MAX_ADMISSION_WINDOW => n as usize,
                other => {
                    return Err(self.invalid(
                        "cache.admission_window",
                        "a number of keys from 1 to 16777216",
                        other.to_string(),
                    ))
                }
            },
        })
    }

    fn failover(&self, raw: RawFailover) -> Result<FailoverConfig, ConfigError> {
        let path = |p: Option<String>| p.filter(|p| !p.is_empty()).map(PathBuf::from);
        let journal_path = path(raw.journal_path);
        let dead_letter_path = path(raw.dead_letter_path).or_else(|| {
            journal_path.as_ref().map(|j| {
                let mut name = j.clone().into_os_string();
                name.push(".dead");
                PathBuf::from(name)
            })
        });
        Ok(FailoverConfig {
            enabled: raw.enabled,
            serve_stale: raw.serve_stale,
            max_stale: self.duration("failover.max_stale", &raw.max_stale)?,
            max_bytes: self.size("failover.max_bytes", raw.max_bytes)? as u64,
            journal_max_bytes: self.size("failover.journal_max_bytes", raw.journal_max_bytes)? as u64,
            journal_path,
            fsync: match raw.fsync.as_str() {
                "always" => Fsync::Always,
                "everysec" => Fsync::EverySec,
                "no" => Fsync::No,
                other => return Err(self.invalid("failover.fsync", "\"always\", \"everysec\" or \"no\"", other)),
            },
            dead_letter_path,
            on_recover: match raw.on_recover.as_str() {
                "replay" => OnRecover::Replay,
                "discard" => OnRecover::Discard,
                other => return Err(self.invalid("failover.on_recover", "\"replay\" or \"discard\"", other)),
            },
        })
    }

    /// The tenants; with a `cluster` upstream their prefixes hold no `{` or
    /// `}`, which would change what their keys' hash tags are.
    fn tenancy(&self, raw: RawTenancy, tenants: Vec<RawTenant>, cluster: bool) -> Result<TenancyConfig, ConfigError> {
        let mut out = Vec::with_capacity(tenants.len());
        for t in tenants {
            if out.iter().any(|o: &TenantConfig| o.name == t.name) {
                return Err(self.invalid("tenant.name", "a name used by one tenant only", &t.name));
            }
            let tenant = self.tenant(t)?;
            if cluster && tenant.prefix.iter().any(|&b| b == b'{' || b == b'}') {
                return Err(self.invalid(
                    "tenant.prefix",
                    "no { or } with a cluster upstream (hash tags)",
                    &tenant.name,
                ));
            }
            out.push(tenant);
        }
        let default_tenant = raw.default_tenant.filter(|d| !d.is_empty());
        if let Some(d) = &default_tenant {
            if !out.iter().any(|t| &t.name == d) {
                return Err(self.invalid("tenancy.default_tenant", "the name of a [[tenant]]", d));
            }
        }
        let auth_failures_per_minute = self.count("tenancy.auth_failures_per_minute", raw.auth_failures_per_minute)?;
        let max_unauthenticated_per_address =
            self.count("tenancy.max_unauthenticated_per_address", raw.max_unauthenticated_per_address)?;
        Ok(TenancyConfig { tenants: out, default_tenant, auth_failures_per_minute, max_unauthenticated_per_address })
    }

    fn tenant(&self, t: RawTenant) -> Result<TenantConfig, ConfigError> {
        if t.name.is_empty() || t.name.contains(|c: char| c.is_whitespace()) {
            return Err(self.invalid("tenant.name", "a non-empty name without spaces", &t.name));
        }
        if t.password.is_some() {
            return Err(self.invalid(
                "tenant.password",
                "no plaintext password: use password_sha256 (`nearcache hash-password`)",
                &t.name,
            ));
        }
        let hash = t.password_sha256.as_deref().and_then(parse_sha256).ok_or_else(|| {
            self.invalid("tenant.password_sha256", "64 hex digits (`nearcache hash-password`)", &t.name)
        })?;
        let prefix = t.prefix.unwrap_or_else(|| format!("{}:", t.name));
        if prefix.is_empty() {
            return Err(self.invalid("tenant.prefix", "a non-empty key prefix", &t.name));
        }
        let rules = |key: &'static str, list: Vec<String>| -> Result<Vec<Rule>, ConfigError> {
            list.iter()
                .map(|r| Rule::parse(r).ok_or_else(|| self.invalid(key, "command names or @categories", r)))
                .collect()
        };
        Ok(TenantConfig {
            allow: rules("tenant.allow", t.allow)?,
            deny: rules("tenant.deny", t.deny)?,
            max_ops_per_sec: u32::try_from(t.max_ops_per_sec)
                .map_err(|_| self.invalid("tenant.max_ops_per_sec", "an operation rate", t.max_ops_per_sec))?,
            max_connections: usize::try_from(t.max_connections)
                .map_err(|_| self.invalid("tenant.max_connections", "a connection count", t.max_connections))?,
            allow_scripts: t.allow_scripts,
            allow_restore: t.allow_restore,
            max_keys_per_sec: u32::try_from(t.max_keys_per_sec)
                .map_err(|_| self.invalid("tenant.max_keys_per_sec", "a key rate", t.max_keys_per_sec))?,
            max_bytes_per_sec: t.max_bytes_per_sec,
            max_in_flight: usize::try_from(t.max_in_flight)
                .map_err(|_| self.invalid("tenant.max_in_flight", "a request count", t.max_in_flight))?,
            max_dedicated: usize::try_from(t.max_dedicated)
                .map_err(|_| self.invalid("tenant.max_dedicated", "a connection count", t.max_dedicated))?,
            max_request_bytes: match usize::try_from(t.max_request_bytes) {
                Ok(n) if n >= 1024 => n,
                _ => {
                    return Err(self.invalid(
                        "tenant.max_request_bytes",
                        "a size of at least 1024",
                        t.max_request_bytes,
                    ))
                }
            },
            password_sha256: hash,
            prefix: prefix.into_bytes(),
            name: t.name,
        })
    }

    fn count(&self, key: &'static str, value: u64) -> Result<u32, ConfigError> {
        match u32::try_from(value) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(self.invalid(key, "a positive count", value)),
        }
    }

    fn invalid(&self, key: &'static str, expected: &'static str, got: impl ToString) -> ConfigError {
        ConfigError::Invalid { file: self.file.to_string(), key, expected, got: got.to_string() }
    }

    fn addr(&self, key: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
        value.parse().map_err(|_| self.invalid(key, "an address like 127.0.0.1:6380 or [::1]:6380", value))
    }

    /// Client TLS: all three keys or none; the certificate and key are
    /// loaded here, once.
    fn client_tls(
        &self,
        listen: Option<String>,
        cert: Option<String>,
        key: Option<String>,
    ) -> Result<Option<ClientTlsConfig>, ConfigError> {
        let (listen, cert, key) = match (listen, cert, key) {
            (None, None, None) => return Ok(None),
            (Some(l), Some(c), Some(k)) => (self.addr("server.tls_listen", &l)?, PathBuf::from(c), PathBuf::from(k)),
            (None, ..) => {
                return Err(self.invalid(
                    "server.tls_listen",
                    "an address, with tls_cert_file and tls_key_file",
                    "none",
                ))
            }
            (_, None, _) => return Err(self.invalid("server.tls_cert_file", "a PEM certificate chain file", "none")),
            (_, _, None) => return Err(self.invalid("server.tls_key_file", "a PEM private key file", "none")),
        };
        let acceptor = crate::client_tls::ServerTls::load(&cert, &key).map_err(|e| match e {
            crate::client_tls::ServerTlsError::Cert { .. } => {
                self.invalid("server.tls_cert_file", "a readable PEM certificate chain", e)
            }
            crate::client_tls::ServerTlsError::Key { .. } => {
                self.invalid("server.tls_key_file", "a readable PEM private key matching the certificate", e)
            }
        })?;
        Ok(Some(ClientTlsConfig { listen, cert_file: cert, key_file: key, acceptor }))
    }

    /// A bearer token: printable ASCII without spaces, 16 characters or
    /// more (it guards reloads and cache invalidation).
    fn admin_token(&self, token: Option<String>) -> Result<Option<String>, ConfigError> {
        match token {
            Some(t) if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) => {
                Err(self.invalid("admin.token", "16 or more printable ASCII characters, no spaces", "<redacted>"))
            }
            token => Ok(token),
        }
    }

    fn size(&self, key: &'static str, value: u64) -> Result<usize, ConfigError> {
        match usize::try_from(value) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(self.invalid(key, "a positive integer", value)),
        }
    }

    fn duration(&self, key: &'static str, value: &str) -> Result<Duration, ConfigError> {
        parse_duration(value)
            .filter(|d| !d.is_zero())
            .ok_or_else(|| self.invalid(key, "a duration like \"500ms\", \"3s\" or \"2m\"", value))
    }

    fn url(&self, key: &'static str, value: &str) -> Result<UpstreamUrl, ConfigError> {
        UpstreamUrl::parse(value).map_err(|e| ConfigError::Invalid {
            file: self.file.to_string(),
            key,
            expected: e.expected(),
            got: UpstreamUrl::redact(value),
        })
    }

    fn log_format(&self, value: &str) -> Result<LogFormat, ConfigError> {
        match value {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(self.invalid("log.format", "\"text\" or \"json\"", value)),
        }
    }
}

/// Parses `"250ms"`, `"3s"`, `"2m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit())?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "s" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "h" => Some(Duration::from_secs(n.checked_mul(3600)?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_str(text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig =
            toml::from_str(text).map_err(|e| ConfigError::Parse { file: "t.toml".into(), message: e.to_string() })?;
        Validator { file: "t.toml" }.validate(raw, &Overrides::default())
    }

    #[test]
    fn defaults_are_valid() {
        let c = Config::defaults();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:6380");
        assert_eq!(c.admin.listen.to_string(), "127.0.0.1:9121");
        assert_eq!(c.upstream.url.addr, "127.0.0.1:6379");
    }

    #[test]
    fn errors_name_file_key_and_expectation() {
        let e = from_str("[server]\nlisten = \"nope\"\n").unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("server.listen") && e.contains("expected an address"), "{e}");
        let e = from_str("[upstream]\nrequest_timeout = \"3 parsecs\"\n").unwrap_err().to_string();
        assert!(e.contains("upstream.request_timeout") && e.contains("duration"), "{e}");
        let e = from_str("[server]\nlisen = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("lisen"), "{e}");
        let e = from_str("[upstream]\nurl = \"http://a:b@h\"\n").unwrap_err().to_string();
        assert!(e.contains("upstream.url") && !e.contains(":b@"), "{e}");
    }

    #[test]
    fn cluster_upstream() {
        let c = from_str("[upstream]\ncluster = [\"redis://u:pw@10.0.0.1:7000\", \"redis://u:pw@10.0.0.2:7001\"]\n")
            .unwrap();
        assert_eq!(c.cluster_seeds, ["10.0.0.1:7000", "10.0.0.2:7001"]);
        assert_eq!(c.upstream.url.addr, "10.0.0.1:7000");
        assert!(c.failover.enabled && c.breaker.failover, "failover per slot with a cluster");
        for bad in
            ["[\"redis://h:1/2\"]", "[\"redis://h:1\", \"rediss://h:2\"]", "[\"redis://a:b@h:1\", \"redis://h:2\"]"]
        {
            let e = from_str(&format!("[upstream]\ncluster = {bad}\n")).unwrap_err().to_string();
            assert!(e.contains("upstream.cluster"), "{bad}: {e}");
        }
        let tenant =
            format!("[[tenant]]\nname = \"a\"\nprefix = \"{{a}}:\"\npassword_sha256 = \"{}\"\n", "0".repeat(64));
        let e = from_str(&format!("[upstream]\ncluster = [\"redis://h:1\"]\n{tenant}")).unwrap_err().to_string();
        assert!(e.contains("tenant.prefix") && e.contains("hash tags"), "{e}");
        assert!(from_str(&tenant).is_ok(), "a single Redis takes any prefix");
        let e = from_str("[server]\nauth = \"upstream\"\n[upstream]\ncluster = [\"redis://h:1\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.auth"), "{e}");
        let c = from_str("[upstream]\nurl = \"rediss+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001/0\"\n").unwrap();
        assert_eq!(c.cluster_seeds, ["10.0.0.1:7000", "10.0.0.2:7001"]);
        assert!(c.upstream.url.tls && c.upstream.url.password.as_deref() == Some("pw"));
        assert!(from_str("[upstream]\nurl = \"redis+cluster://\"\n").unwrap_err().to_string().contains("upstream.url"));
    }

    #[test]
    fn tls_upstream() {
        let c = from_str("[upstream]\nurl = \"rediss://u:pw@127.0.0.1:6390\"\n").unwrap();
        assert!(c.upstream.url.tls && c.upstream.tls.is_some());
        assert_eq!(c.upstream.url.to_string(), "rediss://u:***@127.0.0.1:6390/0");
        let c = from_str("[upstream]\nurl = \"rediss://h\"\ntls_insecure_skip_verify = true\n").unwrap();
        assert!(format!("{:?}", c.upstream.tls).contains("insecure: true"));
        // The TLS keys only matter for rediss://.
        let c = from_str("[upstream]\ntls_ca_file = \"/nonexistent.pem\"\n").unwrap();
        assert!(c.upstream.tls.is_none());
        assert!(Config::defaults().upstream.tls.is_none());
    }

    #[test]
    fn tls_errors_name_the_key() {
        let e = from_str("[upstream]\nurl = \"rediss://h\"\ntls_ca_file = \"/nonexistent/ca.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml") && e.contains("upstream.tls_ca_file") && e.contains("/nonexistent/ca.pem"), "{e}");
        assert!(e.contains("expected a readable PEM file"), "{e}");
        let path = std::env::temp_dir().join(format!("nearcache-config-test-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate\n").unwrap();
        let text = format!("[upstream]\nurl = \"rediss://h\"\ntls_ca_file = {:?}\n", path.display().to_string());
        let e = from_str(&text).unwrap_err().to_string();
        let _ = std::fs::remove_file(&path);
        assert!(e.contains("upstream.tls_ca_file") && e.contains("no CERTIFICATE"), "{e}");
        let e = from_str("[upstream]\ntls_insecure_skip_verify = \"yes\"\n").unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("tls_insecure_skip_verify"), "{e}");
        let e = from_str("[upstream]\nurl = \"rediss://bad_host!\"\n").unwrap_err().to_string();
        assert!(e.contains("upstream.url") && e.contains("TLS server name"), "{e}");
    }

    #[test]
    fn overrides_win() {
        let raw = RawConfig::default();
        let o = Overrides { listen: Some("127.0.0.1:7000".into()), ..Default::default() };
        let c = Validator { file: "x" }.validate(raw, &o).unwrap();
        assert_eq!(c.server.listen.port(), 7000);
    }

    #[test]
    fn tenants() {
        let hash = crate::tenancy::hash_password(b"pw");
        let c = from_str(&format!(
            "[tenancy]\ndefault_tenant = \"acme\"\n[[tenant]]\nname = \"acme\"\npassword_sha256 = \"{hash}\"\n\
             allow = [\"@read\"]\nmax_ops_per_sec = 100\nallow_restore = true\n"
        ))
        .expect("valid");
        assert_eq!(c.tenancy.tenants[0].prefix, b"acme:");
        assert!(c.tenancy.tenants[0].allow_restore && !c.tenancy.tenants[0].allow_scripts);
        assert_eq!(c.tenancy.default_tenant.as_deref(), Some("acme"));
        let err = |text: &str| from_str(text).expect_err("invalid").to_string();
        assert!(err("[[tenant]]\nname = \"a\"\npassword = \"x\"\n").contains("`tenant.password`"));
        assert!(err("[[tenant]]\nname = \"a\"\npassword_sha256 = \"12\"\n").contains("64 hex digits"));
        let bad_rule = format!("[[tenant]]\nname = \"a\"\npassword_sha256 = \"{hash}\"\ndeny = [\"@nope\"]\n");
        assert!(err(&bad_rule).contains("`tenant.deny`"));
        assert!(err("[tenancy]\ndefault_tenant = \"ghost\"\n").contains("`tenancy.default_tenant`"));
    }

    #[test]
    fn client_tls_needs_all_three_keys_and_readable_files() {
        let e = from_str("[server]\ntls_listen = \"127.0.0.1:6390\"\n").unwrap_err().to_string();
        assert!(e.contains("t.toml") && e.contains("server.tls_cert_file"), "{e}");
        let e = from_str("[server]\ntls_cert_file = \"c.pem\"\ntls_key_file = \"k.pem\"\n").unwrap_err().to_string();
        assert!(e.contains("server.tls_listen"), "{e}");
        let missing = "[server]\ntls_listen = \"127.0.0.1:6390\"\ntls_cert_file = \"/nonexistent/c.pem\"\n\
                       tls_key_file = \"/nonexistent/k.pem\"\n";
        let e = from_str(missing).unwrap_err().to_string();
        assert!(e.contains("server.tls_cert_file") && e.contains("/nonexistent/c.pem"), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("3s"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5"), None);
    }
}
