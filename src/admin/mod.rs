//! The admin HTTP listener: `/metrics` (Prometheus text), `/health`
//! (alive), `/ready` (upstream and failover state), `/cache/stats`,
//! `POST /cache/invalidate?pattern=…`, `/clients` (per tenant) and
//! `POST /config/reload`. With `admin.token` set, every endpoint but
//! `/health` wants `Authorization: Bearer <token>`.
//!
//! A deliberately tiny HTTP/1.1 responder — one request per connection,
//! bounded header size and time, no request bodies — because these
//! endpoints are scraped by Prometheus, probed by orchestrators and called
//! by operators' scripts, nothing more.

use crate::cache::NearCache;
use crate::fallback::Failover;
use crate::server::{ConfigSource, Control, Server};
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAX_REQUEST: usize = 8 * 1024;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let admin = admin.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(REQUEST_TIMEOUT, handle(stream, &admin)).await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

struct Response {
    status: &'static str,
    content_type: &'static str,
    body: String,
}

async fn handle(mut stream: TcpStream, admin: &Admin) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        if buf.len() > MAX_REQUEST || stream.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let bearer = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.trim().eq_ignore_ascii_case("authorization").then(|| value.trim().strip_prefix("Bearer ")).flatten()
    });
    let response = if path == "/health" || authorized(admin.token.as_deref(), bearer) {
        respond(method, path, query, admin)
    } else {
        Response {
            status: "401 Unauthorized",
            content_type: "application/json",
            body: "{\"error\":\"Authorization: Bearer <admin.token> required\"}\n".into(),
        }
    };
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(response.body.as_bytes()).await?;
    stream.shutdown().await
}

fn respond(method: &str, path: &str, query: &str, admin: &Admin) -> Response {
    let text = |status, body: &str| Response { status, content_type: "text/plain; charset=utf-8", body: body.into() };
    let json = |status, body: String| Response { status, content_type: "application/json", body };
    match (method, path) {
        ("GET", "/metrics") => {
            admin.cache.publish_counts();
            Response {
                status: "200 OK",
                content_type: "text/plain; version=0.0.4",
                body: crate::observe::render(&admin.metrics),
            }
        }
        ("GET", "/health") => text("200 OK", "ok\n"),
        ("GET", "/ready") => ready(&admin.failover),
        ("GET", "/cache/stats") => json("200 OK", cache_stats(&admin.cache)),
        ("POST", "/cache/invalidate") => match query_param(query, "pattern") {
            Some(pattern) => {
                let n = admin.cache.invalidate_matching(&pattern);
                tracing::info!(pattern = %String::from_utf8_lossy(&pattern), keys = n, "cache invalidated by pattern");
                json("200 OK", format!("{{\"invalidated\":{n}}}\n"))
            }
            None => json("400 Bad Request", "{\"error\":\"pattern query parameter required\"}\n".into()),
        },
        ("GET", "/clients") => json("200 OK", clients(&admin.control)),
        ("POST", "/config/reload") => match admin.control.reload() {
            Ok(report) => json("200 OK", reload_report(&report)),
            Err(e) => {
                json("400 Bad Request", format!("{{\"result\":\"error\",\"error\":{}}}\n", quote(&e.to_string())))
            }
        },
        (
            _,
            "/metrics" | "/health" | "/ready" | "/cache/stats" | "/cache/invalidate" | "/clients" | "/config/reload",
        ) => text("405 Method Not Allowed", "method not allowed\n"),
        _ => text("404 Not Found", "not found\n"),
    }
}

/// True when no token is configured, or `given` is it (compared in
/// constant time).
fn authorized(token: Option<&str>, given: Option<&str>) -> bool {
    let Some(token) = token else {
        return true;
    };
    crate::tenancy::constant_time_eq(given.unwrap_or_default().as_bytes(), token.as_bytes())
}

/// `{"total":N,"tenants":{"acme":N,…}}`.
fn clients(control: &Control) -> String {
    let (total, tenants) = control.clients();
    let tenants: Vec<String> = tenants.iter().map(|(name, n)| format!("{}:{n}", quote(name))).collect();
    format!("{{\"total\":{total},\"tenants\":{{{}}}}}\n", tenants.join(","))
}

fn reload_report(report: &crate::server::Report) -> String {
    let list = |items: Vec<&str>| items.iter().map(|i| quote(i)).collect::<Vec<_>>().join(",");
    format!(
        "{{\"result\":\"ok\",\"applied\":[{}],\"restart_required\":[{}],\"clients_closed\":{}}}\n",
        list(report.applied.iter().map(String::as_str).collect()),
        list(report.restart_required.clone()),
        report.clients_closed
    )
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// 200 while requests are answered, from upstream or from failover; 503
/// when the upstream is down and failover is off, or when the upstream
/// answers but refuses the journal's replay (mode `replay_refused`:
/// requests get an error until it accepts it).
fn ready(failover: &Failover) -> Response {
    let s = failover.status();
    let mode = match (&s.replay_refused, s.failover) {
        (Some(_), true) => "replay_refused",
        (_, true) => "failover",
        (_, false) => "normal",
    };
    let body = format!(
        "{{\"upstream\":\"{}\",\"mode\":\"{}\",\"journal_entries\":{},\"dead_letters\":{}{}}}\n",
        if s.upstream_up { "up" } else { "down" },
        mode,
        s.journal_entries,
        s.dead_letters,
        s.replay_refused.as_deref().map(|r| format!(",\"refused\":{}", quote(r))).unwrap_or_default()
    );
    let answering = s.upstream_up || (s.enabled && s.replay_refused.is_none());
    let status = if answering { "200 OK" } else { "503 Service Unavailable" };
    Response { status, content_type: "application/json", body }
}

fn cache_stats(cache: &NearCache) -> String {
    let s = cache.stats();
    let lookups = s.hits + s.misses;
    let hit_rate = if lookups == 0 { 0.0 } else { s.hits as f64 / lookups as f64 };
    format!(
        "{{\"entries\":{},\"bytes\":{},\"max_bytes\":{},\"hits\":{},\"misses\":{},\"hit_rate\":{:.4},\"active\":{}}}\n",
        s.entries,
        s.bytes,
        cache.config().max_bytes,
        s.hits,
        s.misses,
        hit_rate,
        s.active
    )
}

/// The percent-decoded value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Option<Vec<u8>> {
    query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == name).and_then(|(_, v)| decode(v))
}

/// Percent-decoding (`%2A`, and `+` for a space, as forms send it).
fn decode(s: &str) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                out.push(u8::from_str_radix(s.get(i + 1..i + 3)?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters() {
        assert_eq!(query_param("pattern=secrets%3Aorg1%3A*", "pattern"), Some(b"secrets:org1:*".to_vec()));
        assert_eq!(query_param("a=1&pattern=x+y", "pattern"), Some(b"x y".to_vec()));
        assert_eq!(query_param("a=1", "pattern"), None);
        assert_eq!(query_param("pattern=%zz", "pattern"), None);
    }
}
