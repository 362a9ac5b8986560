//! Hot reload (`POST /config/reload`) and the admin API's token and
//! `/clients`, against a real redis-server: clients stay connected while
//! policies, breaker settings and tenants change; a revoked tenant's clients
//! are closed; an invalid file changes nothing.
mod common;

use common::{http_with, metric, Proxy, Raw, RedisServer};
use std::time::Duration;

const TOKEN: &str = "test-admin-token-0123456789";

fn tenant(name: &str, extra: &str) -> String {
    let hash = nearcache::tenancy::hash_password(format!("{name}-pw").as_bytes());
    format!("[[tenant]]\nname = \"{name}\"\npassword_sha256 = \"{hash}\"\n{extra}")
}

fn login(proxy: &Proxy, name: &str) -> Raw {
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["AUTH", name, &format!("{name}-pw")]), "+OK\r\n");
    raw
}

fn admin(proxy: &Proxy, method: &str, path: &str) -> (u16, String) {
    http_with(proxy.admin, method, path, &format!("Authorization: Bearer {TOKEN}\r\n"))
}

/// Writes `toml` as the config file and reloads it, with the token.
fn reload(proxy: &Proxy, toml: &str) -> (u16, String) {
    std::fs::write(&proxy.config_path, toml).expect("rewrite config");
    admin(proxy, "POST", "/config/reload")
}

#[test]
fn admin_token_guards_everything_but_health() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, &format!("[admin]\ntoken = \"{TOKEN}\"\n"));
    assert_eq!(proxy.admin_get("/health").0, 200);
    for (method, path) in [("GET", "/metrics"), ("GET", "/ready"), ("GET", "/clients"), ("POST", "/config/reload")] {
        assert_eq!(common::http(proxy.admin, method, path).0, 401, "{path}");
        let wrong = http_with(proxy.admin, method, path, "Authorization: Bearer not-the-token-at-all\r\n");
        assert_eq!(wrong.0, 401, "{path}");
    }
    assert_eq!(admin(&proxy, "GET", "/metrics").0, 200);
    let (status, body) = admin(&proxy, "GET", "/clients");
    assert_eq!((status, body.as_str()), (200, "{\"total\":0,\"tenants\":{}}\n"));
}

#[test]
fn tenants_rules_and_limits_change_without_dropping_clients() {
    let redis = RedisServer::start();
    let base = format!("[admin]\ntoken = \"{TOKEN}\"\n");
    let proxy = Proxy::start_with(redis.port, &format!("{base}{}{}", tenant("acme", ""), tenant("globex", "")));
    let mut acme = login(&proxy, "acme");
    let mut globex = login(&proxy, "globex");
    assert_eq!(acme.call(&["SET", "k", "v"]), "+OK\r\n");
    let (_, clients) = admin(&proxy, "GET", "/clients");
    assert_eq!(clients, "{\"total\":2,\"tenants\":{\"acme\":1,\"globex\":1}}\n");

    // acme loses writes, globex goes, initech arrives.
    let next = format!("{base}{}{}", tenant("acme", "deny = [\"@write\"]\n"), tenant("initech", ""));
    let (status, report) = reload(&proxy, &next);
    assert_eq!(status, 200, "{report}");
    assert!(report.contains("\"tenant acme updated\"") && report.contains("\"tenant globex revoked\""), "{report}");
    assert!(report.contains("\"tenant initech added\"") && report.contains("\"clients_closed\":1"), "{report}");
    assert_eq!(acme.call(&["SET", "k", "w"]), "-NOPERM this command is not allowed for tenant acme\r\n");
    assert_eq!(acme.call(&["GET", "k"]), "$1\r\nv\r\n", "acme's connection survived the reload");
    assert!(globex.is_closed(), "globex's client must be closed");
    let mut again = proxy.raw();
    assert!(again.call(&["AUTH", "globex", "globex-pw"]).starts_with("-WRONGPASS"));
    assert_eq!(login(&proxy, "initech").call(&["SET", "k", "i"]), "+OK\r\n");

    // A new password revokes the old sessions too.
    let rotated =
        next.replace(&nearcache::tenancy::hash_password(b"acme-pw"), &nearcache::tenancy::hash_password(b"acme-new"));
    let (_, report) = reload(&proxy, &rotated);
    assert!(report.contains("\"tenant acme revoked\"") && report.contains("\"tenant acme added\""), "{report}");
    assert!(acme.is_closed(), "a client with the old password must be closed");
    let mut fresh = proxy.raw();
    assert_eq!(fresh.call(&["AUTH", "acme", "acme-new"]), "+OK\r\n");
    assert_eq!(fresh.call(&["GET", "k"]), "$1\r\nv\r\n");

    // [tenancy] settings apply at once and are reported.
    let unauthenticated_are_initech = format!("[tenancy]\ndefault_tenant = \"initech\"\n{rotated}");
    let (_, report) = reload(&proxy, &unauthenticated_are_initech);
    assert!(report.contains("\"applied\":[\"tenancy.default_tenant\"]"), "{report}");
    assert_eq!(proxy.raw().call(&["GET", "k"]), "$1\r\ni\r\n", "an unauthenticated client is initech now");
}

#[test]
fn invalid_file_keeps_the_running_configuration() {
    let redis = RedisServer::start();
    let good = format!("[admin]\ntoken = \"{TOKEN}\"\n{}", tenant("acme", ""));
    let proxy = Proxy::start_with(redis.port, &good);
    let mut acme = login(&proxy, "acme");
    let (status, body) = reload(&proxy, &format!("{good}[breaker]\nfailure_threshold = \"many\"\n"));
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("failure_threshold") && body.contains(".toml"), "{body}");
    assert_eq!(acme.call(&["SET", "k", "v"]), "+OK\r\n");
    let (_, body) = reload(&proxy, &format!("{good}[server]\nmax_clients = 7\n"));
    assert!(body.contains("\"restart_required\":[\"server\"]"), "{body}");
    let metrics = admin(&proxy, "GET", "/metrics").1;
    let errors = metric(&metrics, "nearcache_config_reloads_total{result=\"error\"}");
    assert!(errors.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[test]
fn cache_policies_and_breaker_settings_apply_live() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, "");
    common::wait_ready(&proxy);
    let mut raw = proxy.raw();
    assert_eq!(raw.call(&["SET", "session:1", "s"]), "+OK\r\n");
    let entries = || {
        let stats = proxy.admin_get("/cache/stats").1;
        stats.split("\"entries\":").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse::<u64>().ok())
    };
    let cached = common::eventually(Duration::from_secs(5), || {
        raw.call(&["GET", "session:1"]);
        entries() == Some(1)
    });
    assert!(cached, "GET was never cached");
    let (status, report) =
        proxy.reload("[[cache.policy]]\npattern = \"session:*\"\ncache = false\n[breaker]\nfailure_threshold = 9\n");
    assert_eq!(status, 200, "{report}");
    assert!(report.contains("\"cache.policy\"") && report.contains("\"breaker\""), "{report}");
    assert_eq!(entries(), Some(0), "the reload clears what the old policies cached");
    for _ in 0..3 {
        assert_eq!(raw.call(&["GET", "session:1"]), "$1\r\ns\r\n");
    }
    assert_eq!(entries(), Some(0), "session:* is no longer cached");
    let (_, again) =
        proxy.reload("[[cache.policy]]\npattern = \"session:*\"\ncache = false\n[breaker]\nfailure_threshold = 9\n");
    assert!(again.contains("\"applied\":[]"), "reloading the same file changes nothing: {again}");
}

/// The raw response to a request with the token: status line and headers
/// (names lowercased) and body.
fn admin_raw(proxy: &Proxy, method: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(proxy.admin).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let request =
        format!("{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    format!("{}\r\n\r\n{body}", head.to_ascii_lowercase())
}

#[test]
fn admin_answers_401_404_and_405_and_sends_json() {
    let redis = RedisServer::start();
    let proxy = Proxy::start_with(redis.port, &format!("[admin]\ntoken = \"{TOKEN}\"\n"));
    // Without the token nothing is learnt, not even which paths exist.
    for (method, path) in
        [("GET", "/nope"), ("GET", "/config/reload"), ("DELETE", "/metrics"), ("POST", "/cache/invalidate")]
    {
        for headers in ["", "Authorization: Bearer not-the-token-at-all\r\n", "Authorization: Basic dG9rZW4=\r\n"] {
            let (status, body) = http_with(proxy.admin, method, path, headers);
            assert_eq!(status, 401, "{method} {path} {headers:?}: {body}");
            let body: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
            assert_eq!(body["error"], "Authorization: Bearer <admin.token> required");
        }
    }
    assert_eq!(common::http(proxy.admin, "POST", "/health"), (405, "method not allowed\n".to_string()));
    assert_eq!(admin(&proxy, "GET", "/nope"), (404, "not found\n".to_string()));
    assert_eq!(admin(&proxy, "GET", "/metrics/"), (404, "not found\n".to_string()));
    for (method, path) in
        [("GET", "/config/reload"), ("POST", "/metrics"), ("PUT", "/clients"), ("GET", "/cache/invalidate")]
    {
        assert_eq!(admin(&proxy, method, path), (405, "method not allowed\n".to_string()), "{method} {path}");
    }
    let (status, body) = admin(&proxy, "POST", "/cache/invalidate?other=1");
    assert_eq!((status, body.as_str()), (400, "{\"error\":\"pattern query parameter required\"}\n"));
    let (status, body) = admin(&proxy, "POST", "/cache/invalidate?pattern=bin%FF*");
    assert_eq!((status, body.as_str()), (400, "{\"error\":\"pattern must be UTF-8 once percent-decoded\"}\n"));
    let (status, body) = admin(&proxy, "POST", "/cache/invalidate?pattern=%22no%5C*%22+such");
    assert_eq!((status, body.as_str()), (200, "{\"invalidated\":0}\n"));

    let clients = admin_raw(&proxy, "GET", "/clients");
    assert!(clients.starts_with("http/1.1 200 ok\r\n"), "{clients}");
    assert!(clients.contains("\r\ncontent-type: application/json\r\n"), "{clients}");
    let metrics = admin_raw(&proxy, "GET", "/metrics");
    assert!(metrics.contains("\r\ncontent-type: text/plain; version=0.0.4\r\n"), "{metrics}");
    let missing = admin_raw(&proxy, "GET", "/nope");
    assert!(missing.starts_with("http/1.1 404 not found\r\n"), "{missing}");
    assert!(missing.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"), "{missing}");
}

/// A reload error quotes the offending line (quotes, a backslash, newlines):
/// the body stays one JSON object with the message intact.
#[test]
fn reload_errors_are_escaped_json() {
    let redis = RedisServer::start();
    let good = format!("[admin]\ntoken = \"{TOKEN}\"\n");
    let proxy = Proxy::start_with(redis.port, &good);
    let (status, body) = reload(&proxy, &format!("{good}[breaker]\nfailure_threshold = 'say \"hi\" \\ bye'\n"));
    assert_eq!(status, 400, "{body}");
    assert!(body.ends_with("}\n") && body.matches('\n').count() == 1, "{body:?}");
    let parsed: serde_json::Value = serde_json::from_str(&body).expect("a JSON body");
    assert_eq!(parsed["result"], "error", "{body}");
    let error = parsed["error"].as_str().expect("an error message");
    assert!(error.contains("failure_threshold") && error.contains("\"hi\"") && error.contains('\\'), "{error}");
    assert_eq!(parsed.as_object().map(|o| o.len()), Some(2), "{body}");
}
