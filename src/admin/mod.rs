//! The admin HTTP API: `GET /metrics` (Prometheus text), `GET /health`
//! (alive), `GET /ready` (upstream and failover state), `GET /cache/stats`,
//! `POST /cache/invalidate?pattern=…`, `GET /clients` (per tenant) and
//! `POST /config/reload`. With `admin.token` set, every endpoint but
//! `/health` wants `Authorization: Bearer <token>` (compared in constant
//! time) and answers 401 otherwise; a known path with the wrong method
//! answers 405 (`HEAD` is served wherever `GET` is), an unknown one 404.
//!
//! This module owns the admin listener, its routes, its authentication and
//! the shape of every body it sends; the numbers come from the cache, the
//! failover and [`Control`]. HTTP is left to hyper (one request per
//! connection, bounded header size and time) and routing, method checks and
//! query decoding to axum; every JSON body is a `#[derive(Serialize)]`
//! struct written by serde_json, never text pasted together. The API is
//! meant to grow (clients, tenants, cluster topology), and hand-written
//! HTTP framing and JSON quoting are where protocol bugs and injection
//! hide.

use crate::cache::NearCache;
use crate::failover::Failover;
use crate::server::{ConfigSource, Control, Report, Server};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::{Deserialize, Serialize, Serializer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// The most a request's head may take (hyper's smallest allowed limit).
const MAX_REQUEST: usize = 8 * 1024;
/// The most a connection may stay open, request and response together.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";
/// Prometheus' text exposition format.
const PROMETHEUS: &str = "text/plain; version=0.0.4";

/// Binds the admin listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// What the admin endpoints look at.
pub struct Admin {
    metrics: PrometheusHandle,
    cache: Arc<NearCache>,
    failover: Arc<Failover>,
    control: Arc<Control>,
    token: Option<String>,
}

impl Admin {
    /// The admin API of `server`, whose reloads read `source`.
    pub fn new(metrics: PrometheusHandle, server: &Server, source: ConfigSource, token: Option<String>) -> Admin {
        Admin { metrics, cache: server.cache(), failover: server.failover(), control: server.control(source), token }
    }

    /// The handle reloads go through (also used on SIGHUP).
    pub fn control(&self) -> Arc<Control> {
        self.control.clone()
    }
}

/// Serves admin requests forever.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    let upkeep = admin.metrics.clone();
    tokio::spawn(async move {
        let mut tick = crate::timer::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let app = router(admin);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .keep_alive(false)
                        .max_buf_size(MAX_REQUEST)
                        .serve_connection(TokioIo::new(stream), service);
                    match crate::timer::timeout(REQUEST_TIMEOUT, connection).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => tracing::debug!(error = %e, "admin connection failed"),
                        Err(_) => tracing::debug!("admin connection timed out"),
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                crate::timer::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The admin routes, behind the token check.
fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/cache/stats", get(cache_stats))
        .route("/cache/invalidate", post(invalidate))
        .route("/clients", get(clients))
        .route("/config/reload", post(reload))
        .method_not_allowed_fallback(|| async { text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n") })
        .fallback(|| async { text(StatusCode::NOT_FOUND, "not found\n") })
        .layer(middleware::from_fn_with_state(admin.clone(), require_token))
        .with_state(admin)
}

/// Lets `/health` and authorized requests through; 401 for the rest
/// (unknown paths and wrong methods included, so that without the token
/// nothing about the API can be learnt).
async fn require_token(State(admin): State<Arc<Admin>>, request: Request, next: Next) -> Response {
    if request.uri().path() == "/health" || authorized(admin.token.as_deref(), bearer(request.headers())) {
        return next.run(request).await;
    }
    json(StatusCode::UNAUTHORIZED, &Error { error: "Authorization: Bearer <admin.token> required" })
}

/// The credentials of an `Authorization: Bearer …` header.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION)?.to_str().ok()?.trim().strip_prefix("Bearer ")
}

/// True when no token is configured, or `given` is it (compared in
/// constant time).
fn authorized(token: Option<&str>, given: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    crate::tenancy::constant_time_eq(given.unwrap_or_default().as_bytes(), token.as_bytes())
}

fn text(status: StatusCode, body: &'static str) -> Response {
    (status, [(CONTENT_TYPE, TEXT)], body).into_response()
}

/// `body` as JSON and a newline (for `curl` at a terminal).
fn json(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            (status, [(CONTENT_TYPE, JSON)], bytes).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "admin response not serializable");
            text(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    admin.cache.publish_counts();
    ([(CONTENT_TYPE, PROMETHEUS)], crate::observe::render(&admin.metrics)).into_response()
}

async fn health() -> Response {
    text(StatusCode::OK, "ok\n")
}

/// `{"error":"…"}`.
#[derive(Serialize)]
struct Error<'a> {
    error: &'a str,
}

/// `/ready`.
#[derive(Serialize)]
struct Ready<'a> {
    /// `up` or `down`.
    upstream: &'static str,
    /// `normal`, `failover` or `replay_refused`.
    mode: &'static str,
    journal_entries: usize,
    dead_letters: usize,
    /// How many times the circuit opened (failover started) since start.
    circuit_opened: u64,
    /// Why the upstream refuses the journal's replay.
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<&'a str>,
    /// Why the upstream refused the proxy's last connection attempt (pool,
    /// invalidation or dedicated: a password or ACL it lacks, `maxclients`,
    /// a certificate it cannot trust), until one succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    refusing: Option<&'a str>,
    /// A Redis Cluster's masters.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    nodes: &'a [NodeReady],
}

/// One cluster master in `/ready`.
#[derive(Serialize)]
struct NodeReady {
    upstream: String,
    /// `up` or `down` (its circuit is open).
    state: &'static str,
    slots: usize,
    /// Why it answers but refuses the proxy's probes (its slots get this
    /// error, not local answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
}

/// 200 while requests are answered, from upstream or from failover; 503
/// when the upstream is down and failover is off, or when the upstream
/// answers but refuses the journal's replay (mode `replay_refused`:
/// requests get an error until it accepts it).
async fn ready(State(admin): State<Arc<Admin>>) -> Response {
    let s = admin.failover.status();
    let nodes: Vec<NodeReady> = admin
        .control
        .cluster_nodes()
        .into_iter()
        .map(|n| NodeReady {
            upstream: n.upstream,
            state: if n.up { "up" } else { "down" },
            slots: n.slots,
            refused: n.refused,
        })
        .collect();
    let up = nodes.iter().filter(|n| n.state == "up").count();
    // A cluster answers while one master does (the others' slots fail).
    let (upstream, upstream_up) = match (nodes.len(), up) {
        (0, _) => (if s.upstream_up { "up" } else { "down" }, s.upstream_up),
        (all, up) if up == all => ("up", true),
        (_, 0) => ("down", false),
        _ => ("degraded", true),
    };
    // A cluster's slots fail over with their master.
    let failing_over = s.failover || (s.enabled && up < nodes.len());
    let mode = match (&s.replay_refused, failing_over) {
        (Some(_), true) => "replay_refused",
        (_, true) => "failover",
        (_, false) => "normal",
    };
    let body = Ready {
        upstream,
        mode,
        journal_entries: s.journal_entries,
        dead_letters: s.dead_letters,
        circuit_opened: s.circuit_opened,
        refused: s.replay_refused.as_deref(),
        refusing: s.refusing.as_deref(),
        nodes: &nodes,
    };
    let answering = upstream_up || (s.enabled && s.replay_refused.is_none());
    json(if answering { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE }, &body)
}

/// `/cache/stats`.
#[derive(Serialize)]
struct CacheStats {
    entries: u64,
    bytes: u64,
    max_bytes: u64,
    hits: u64,
    misses: u64,
    /// hits / (hits + misses), to 4 decimals; 0 before any lookup.
    hit_rate: f64,
    active: bool,
}

async fn cache_stats(State(admin): State<Arc<Admin>>) -> Response {
    let s = admin.cache.stats();
    let lookups = s.hits + s.misses;
    let hit_rate = if lookups == 0 { 0.0 } else { s.hits as f64 / lookups as f64 };
    let body = CacheStats {
        entries: s.entries,
        bytes: s.bytes,
        max_bytes: admin.cache.config().max_bytes,
        hits: s.hits,
        misses: s.misses,
        hit_rate: (hit_rate * 10_000.0).round() / 10_000.0,
        active: s.active,
    };
    json(StatusCode::OK, &body)
}

#[derive(Deserialize)]
struct InvalidateQuery {
    pattern: Option<String>,
}

/// `{"invalidated":N}`.
#[derive(Serialize)]
struct Invalidated {
    invalidated: usize,
}

async fn invalidate(
    State(admin): State<Arc<Admin>>,
    query: Result<Query<InvalidateQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(InvalidateQuery { pattern: Some(pattern) })) = query else {
        return json(StatusCode::BAD_REQUEST, &Error { error: "pattern query parameter required" });
    };
    // The query is decoded as UTF-8, invalid bytes (`%FF`) replaced: such a
    // pattern would silently miss the keys it was meant for.
    if pattern.contains(char::REPLACEMENT_CHARACTER) {
        return json(StatusCode::BAD_REQUEST, &Error { error: "pattern must be UTF-8 once percent-decoded" });
    }
    let n = admin.cache.invalidate_matching(pattern.as_bytes());
    tracing::info!(pattern = %pattern, keys = n, "cache invalidated by pattern");
    json(StatusCode::OK, &Invalidated { invalidated: n })
}

/// `{"total":N,"tenants":{"acme":N,…}}`.
#[derive(Serialize)]
struct Clients<'a> {
    total: usize,
    tenants: Tenants<'a>,
}

/// Tenant names and their client counts, as a JSON object in this order.
struct Tenants<'a>(&'a [(String, usize)]);

impl Serialize for Tenants<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, n)| (name, n)))
    }
}

async fn clients(State(admin): State<Arc<Admin>>) -> Response {
    let (total, tenants) = admin.control.clients();
    json(StatusCode::OK, &Clients { total, tenants: Tenants(&tenants) })
}

/// A reload's outcome: `{"result":"ok","applied":[…],"restart_required":[…],
/// "clients_closed":N}` or `{"result":"error","error":"…"}`.
#[derive(Serialize)]
#[serde(tag = "result", rename_all = "lowercase")]
enum Reloaded<'a> {
    Ok { applied: &'a [String], restart_required: &'a [&'static str], clients_closed: usize },
    Error { error: String },
}

impl<'a> From<&'a Report> for Reloaded<'a> {
    fn from(report: &'a Report) -> Reloaded<'a> {
        Reloaded::Ok {
            applied: &report.applied,
            restart_required: &report.restart_required,
            clients_closed: report.clients_closed,
        }
    }
}

async fn reload(State(admin): State<Arc<Admin>>) -> Response {
    match admin.control.reload() {
        Ok(report) => json(StatusCode::OK, &Reloaded::from(&report)),
        Err(e) => json(StatusCode::BAD_REQUEST, &Reloaded::Error { error: e.to_string() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn to_json(body: &impl Serialize) -> String {
        serde_json::to_string(body).expect("serializable")
    }

    #[test]
    fn bodies_keep_their_field_names_and_order() {
        let ready = Ready {
            upstream: "down",
            mode: "normal",
            journal_entries: 3,
            dead_letters: 0,
            circuit_opened: 1,
            refused: None,
            refusing: None,
            nodes: &[],
        };
        assert_eq!(
            to_json(&ready),
            r#"{"upstream":"down","mode":"normal","journal_entries":3,"dead_letters":0,"circuit_opened":1}"#
        );
        let refused = Ready { refused: Some("NOPERM"), mode: "replay_refused", ..ready };
        assert!(to_json(&refused).ends_with(r#""circuit_opened":1,"refused":"NOPERM"}"#));
        let refusing = Ready { refusing: Some("upstream handshake failed: NOAUTH"), ..ready };
        assert!(to_json(&refusing).ends_with(r#""circuit_opened":1,"refusing":"upstream handshake failed: NOAUTH"}"#));
        let stats =
            CacheStats { entries: 1, bytes: 2, max_bytes: 3, hits: 2, misses: 1, hit_rate: 0.6667, active: true };
        assert_eq!(
            to_json(&stats),
            r#"{"entries":1,"bytes":2,"max_bytes":3,"hits":2,"misses":1,"hit_rate":0.6667,"active":true}"#
        );
        let tenants = [("acme".to_string(), 1), ("globex".to_string(), 2)];
        assert_eq!(
            to_json(&Clients { total: 4, tenants: Tenants(&tenants) }),
            r#"{"total":4,"tenants":{"acme":1,"globex":2}}"#
        );
        assert_eq!(to_json(&Clients { total: 0, tenants: Tenants(&[]) }), r#"{"total":0,"tenants":{}}"#);
        let report = Report { applied: vec!["breaker".into()], restart_required: vec!["server"], clients_closed: 2 };
        assert_eq!(
            to_json(&Reloaded::from(&report)),
            r#"{"result":"ok","applied":["breaker"],"restart_required":["server"],"clients_closed":2}"#
        );
        assert_eq!(to_json(&Reloaded::Error { error: "bad".into() }), r#"{"result":"error","error":"bad"}"#);
        assert_eq!(to_json(&Invalidated { invalidated: 7 }), r#"{"invalidated":7}"#);
    }

    /// Tenant names, reload errors (which quote the offending value) and
    /// replay refusals (Redis' words) are echoed: quotes, backslashes and
    /// control characters stay inside their string.
    #[test]
    fn echoed_strings_are_escaped() {
        let hostile = "a\"b\\c\nd\u{1}\",\"total\":999,\"x\":\"";
        let tenants = [(hostile.to_string(), 1)];
        let body = to_json(&Clients { total: 1, tenants: Tenants(&tenants) });
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(parsed["total"], 1);
        assert_eq!(parsed["tenants"][hostile], 1);
        assert_eq!(parsed["tenants"].as_object().map(|o| o.len()), Some(1));

        let body = to_json(&Reloaded::Error { error: hostile.into() });
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
        assert_eq!(parsed["error"], hostile);
        assert_eq!(parsed.as_object().map(|o| o.len()), Some(2));

        let ready = Ready {
            upstream: "up",
            mode: "replay_refused",
            journal_entries: 0,
            dead_letters: 0,
            circuit_opened: 0,
            refused: Some(hostile),
            refusing: None,
            nodes: &[NodeReady {
                upstream: "redis://h:1/0".into(),
                state: "down",
                slots: 16384,
                refused: Some(hostile.into()),
            }],
        };
        let parsed: serde_json::Value = serde_json::from_str(&to_json(&ready)).expect("valid JSON");
        assert_eq!(parsed["refused"], hostile);
        assert_eq!(parsed["nodes"][0]["state"], "down");
        assert_eq!(parsed["nodes"][0]["refused"], hostile);
    }

    #[tokio::test]
    async fn json_bodies_end_in_a_newline() {
        let response = json(StatusCode::BAD_REQUEST, &Error { error: "x" });
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert_eq!(response.headers().get(CONTENT_TYPE).map(HeaderValue::as_bytes), Some(JSON.as_bytes()));
        let body = axum::body::to_bytes(response.into_body(), 1024).await.expect("body");
        assert_eq!(&body[..], b"{\"error\":\"x\"}\n");
    }

    #[test]
    fn bearer_tokens() {
        let mut headers = HeaderMap::new();
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Bearer secret-token"));
        assert_eq!(bearer(&headers), Some("secret-token"));
        headers.insert(AUTHORIZATION, HeaderValue::from_static("Basic c2VjcmV0"));
        assert_eq!(bearer(&headers), None);
        headers.insert(AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff").expect("opaque header value"));
        assert_eq!(bearer(&headers), None);

        assert!(authorized(None, None));
        assert!(authorized(None, Some("anything")));
        assert!(authorized(Some("secret-token"), Some("secret-token")));
        assert!(!authorized(Some("secret-token"), None));
        assert!(!authorized(Some("secret-token"), Some("secret-toke")));
        assert!(!authorized(Some("secret-token"), Some("")));
    }

    #[test]
    fn query_parameters_are_percent_decoded() {
        let pattern = |query: &str| {
            let uri: axum::http::Uri = format!("/cache/invalidate?{query}").parse().expect("uri");
            Query::<InvalidateQuery>::try_from_uri(&uri).ok().and_then(|q| q.0.pattern)
        };
        assert_eq!(pattern("pattern=secrets%3Aorg1%3A*").as_deref(), Some("secrets:org1:*"));
        assert_eq!(pattern("a=1&pattern=x+y").as_deref(), Some("x y"));
        assert_eq!(pattern("pattern=%22q%22%5C").as_deref(), Some("\"q\"\\"));
        assert_eq!(pattern("a=1"), None);
        assert_eq!(pattern(""), None);
    }
}
