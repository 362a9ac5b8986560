//! Real client libraries through the proxy: redis-py (the versions of
//! tests/clients/python/versions.txt, RESP2 and RESP3), ioredis 5 and 6 and
//! node-redis 4 and 6 (tests/clients/node/package.json), each running the
//! scripts under tests/clients/ (connect, AUTH, strings, hashes, TTLs,
//! pipelines, MULTI/EXEC/WATCH, pub/sub, blocking pops, SCAN, DEL) and
//! asserting every reply. Each runs against an open proxy, and against one
//! with a tenant (AUTH as `acme`, keys checked in Redis to be under `acme:`).
//! scripts/test-deps.sh installs the libraries; without them these tests
//! fail, saying so.
mod common;

use common::{Proxy, RedisServer};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const TENANT: &str = "acme";
const PASSWORD: &str = "acme-client-pw";
/// A script that runs longer than this is killed and the test fails.
const SCRIPT_LIMIT: Duration = Duration::from_secs(120);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn missing(what: &str) -> ! {
    panic!("{what} is missing: run `bash scripts/test-deps.sh` (it installs the client libraries these tests run)")
}

/// The redis-py versions to run, from tests/clients/python/versions.txt.
fn python_versions() -> Vec<String> {
    let path = root().join("tests/clients/python/versions.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect()
}

/// The interpreter of the virtual environment holding redis-py `version`.
fn python(version: &str) -> PathBuf {
    let python = root().join(format!("target/clients/redis-py-{version}/bin/python"));
    if !python.exists() {
        missing(&python.display().to_string());
    }
    python
}

/// The Node packages' folder, once each of `modules` is installed there.
fn node_dir(modules: &[(&str, &[u8])]) -> PathBuf {
    let dir = root().join("tests/clients/node");
    for (module, _) in modules {
        let package = dir.join("node_modules").join(module).join("package.json");
        if !package.exists() {
            missing(&package.display().to_string());
        }
    }
    if Command::new("node").arg("--version").output().map(|o| !o.status.success()).unwrap_or(true) {
        missing("node");
    }
    dir
}

/// A redis-server and a proxy in front of it: open with the defaults, or
/// with the tenant `acme` (its keys under `acme:`) and a near-cache that
/// fills on every first read, so that reads go through it all they can.
struct Setup {
    redis: RedisServer,
    proxy: Proxy,
    tenant: bool,
}

impl Setup {
    fn open() -> Setup {
        let redis = RedisServer::start();
        let proxy = Proxy::start(redis.port);
        common::wait_active(&proxy);
        Setup { redis, proxy, tenant: false }
    }

    fn tenant() -> Setup {
        let redis = RedisServer::start();
        let hash = nearcache::tenancy::hash_password(PASSWORD.as_bytes());
        let config = format!(
            "[cache]\nadmission = \"first\"\n\
             [[tenant]]\nname = \"{TENANT}\"\npassword_sha256 = \"{hash}\"\n"
        );
        let proxy = Proxy::start_with(redis.port, &config);
        common::wait_active(&proxy);
        Setup { redis, proxy, tenant: true }
    }

    /// HOST PORT NAMESPACE [USER PASSWORD], as every script takes them.
    fn args(&self, namespace: &str) -> Vec<String> {
        let mut args = vec!["127.0.0.1".to_string(), self.proxy.addr.port().to_string(), namespace.to_string()];
        if self.tenant {
            args.extend([TENANT.to_string(), PASSWORD.to_string()]);
        }
        args
    }

    /// Each script deletes what it wrote but `<namespace>:resp<N>:left`;
    /// Redis must hold exactly those (under the tenant's prefix, if any).
    fn assert_keys_left(&self, runs: &[(&str, &[u8])]) {
        let prefix = if self.tenant { format!("{TENANT}:") } else { String::new() };
        let prefix = prefix.as_str();
        let mut want: Vec<String> = runs
            .iter()
            .flat_map(|(ns, protocols)| protocols.iter().map(move |p| format!("{prefix}{ns}:resp{p}:left")))
            .collect();
        want.sort();
        let mut got: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut self.redis.direct()).expect("KEYS");
        got.sort();
        assert_eq!(got, want, "the keys left in Redis (read directly)");
    }
}

/// Runs `program` with `args` in `dir`; fails the test, printing what it
/// wrote, unless it exits 0 within [`SCRIPT_LIMIT`].
fn run_script(label: &str, program: &Path, dir: &Path, args: &[String]) {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{label}: cannot start {}: {e}", program.display()));
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = pipe.read_to_end(&mut text);
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > SCRIPT_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    let ended = match status {
        Some(status) if status.success() => {
            eprintln!("{label}: passed in {:.1?}", start.elapsed());
            return;
        }
        Some(status) => format!("exited with {status}"),
        None => format!("was killed after {SCRIPT_LIMIT:?}"),
    };
    panic!(
        "{label} {ended}\n--- command: {} {}\n--- stdout:\n{stdout}\n--- stderr:\n{stderr}",
        program.display(),
        args.join(" ")
    );
}

fn redis_py(setup: fn() -> Setup) {
    let versions = python_versions();
    assert!(!versions.is_empty(), "tests/clients/python/versions.txt names no version");
    let pythons: Vec<PathBuf> = versions.iter().map(|v| python(v)).collect();
    let dir = root().join("tests/clients/python");
    let setup = setup();
    let namespaces: Vec<String> = versions.iter().map(|v| format!("py{v}")).collect();
    for ((version, ns), python) in versions.iter().zip(&namespaces).zip(&pythons) {
        let mut args = vec!["check.py".to_string()];
        args.extend(setup.args(ns));
        run_script(&format!("redis-py {version}"), python, &dir, &args);
    }
    let runs: Vec<(&str, &[u8])> = namespaces.iter().map(|ns| (ns.as_str(), &[2u8, 3][..])).collect();
    setup.assert_keys_left(&runs);
}

/// ioredis 5 speaks RESP2; ioredis 6 both (RESP3 by default).
const IOREDIS: [(&str, &[u8]); 2] = [("ioredis", &[2]), ("ioredis-6", &[2, 3])];
/// node-redis 4 speaks RESP2; 5 and later both.
const NODE_REDIS: [(&str, &[u8]); 2] = [("redis", &[2]), ("redis-6", &[2, 3])];

fn node(setup: fn() -> Setup, script: &str, modules: &[(&str, &[u8])]) {
    let dir = node_dir(modules);
    let setup = setup();
    for (module, _) in modules {
        let mut args = vec![script.to_string(), module.to_string()];
        args.extend(setup.args(module));
        run_script(&format!("{script} {module}"), Path::new("node"), &dir, &args);
    }
    setup.assert_keys_left(modules);
}

#[test]
fn redis_py_open() {
    redis_py(Setup::open);
}

#[test]
fn redis_py_tenant() {
    redis_py(Setup::tenant);
}

#[test]
fn ioredis_open() {
    node(Setup::open, "ioredis.js", &IOREDIS);
}

#[test]
fn ioredis_tenant() {
    node(Setup::tenant, "ioredis.js", &IOREDIS);
}

#[test]
fn node_redis_open() {
    node(Setup::open, "node-redis.js", &NODE_REDIS);
}

#[test]
fn node_redis_tenant() {
    node(Setup::tenant, "node-redis.js", &NODE_REDIS);
}
