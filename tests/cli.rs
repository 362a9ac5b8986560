//! The `nearcache` binary itself: configuration checks, startup without an
//! upstream, logs, environment overrides and graceful shutdown on SIGTERM.
mod common;

use common::{free_port, wait_for_port, RedisServer};
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_nearcache");

fn write_config(text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("nearcache-cli-{}-{}.toml", std::process::id(), free_port()));
    std::fs::write(&path, text).expect("write config");
    path
}

/// Starts the binary with `args`; stderr and stdout are captured.
fn spawn(args: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(BIN)
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn nearcache")
}

fn sigterm(child: &Child) {
    Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status;
        }
        assert!(start.elapsed() < limit, "nearcache did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn output_of(child: &mut Child) -> String {
    let mut text = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut text);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut text);
    }
    text
}

#[test]
fn check_config_accepts_the_example_file() {
    let out = Command::new(BIN).args(["--check-config", "proxy.toml"]).output().expect("run");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("proxy.toml: ok"));
}

#[test]
fn check_config_names_file_key_and_expectation() {
    let cases = [
        ("[server]\nlisten = \"not-an-address\"\n", "server.listen", "expected an address"),
        ("[upstream]\nrequest_timeout = \"soon\"\n", "upstream.request_timeout", "expected a duration"),
        ("[upstream]\nurl = \"http://h:1\"\n", "upstream.url", "expected a URL like redis://"),
        ("[upstream]\npool_size = 0\n", "upstream.pool_size", "expected a positive integer"),
        ("[breaker]\nfailure_threshold = 0\n", "breaker.failure_threshold", "expected a positive count"),
        ("[cache]\nadmission = \"third\"\n", "cache.admission", "expected \"first\" or \"second\""),
        ("[cache]\nadmission_window = 0\n", "cache.admission_window", "expected a number of keys from 1 to"),
        ("[server]\nlisten = 5\n", "listen", "expected a string"),
        ("[sever]\n", "sever", "unknown field"),
    ];
    for (text, key, expected) in cases {
        let path = write_config(text);
        let out = Command::new(BIN).arg("--check-config").arg(&path).output().expect("run");
        let _ = std::fs::remove_file(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains(&*path.display().to_string()), "file not named for {text}: {err}");
        assert!(err.contains(key) && err.contains(expected), "{text}: {err}");
    }
}

#[test]
fn starts_without_upstream_then_picks_it_up() {
    let held = common::held_port();
    let (listen, admin, upstream) = (free_port(), free_port(), held.port);
    let mut child = spawn(
        &[
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--admin-listen",
            &format!("127.0.0.1:{admin}"),
            "--upstream",
            &format!("redis://user:s3cret@127.0.0.1:{upstream}"),
        ],
        &[("NEARCACHE_LOG_LEVEL", "info")],
    );
    wait_for_port(listen, Duration::from_secs(10));
    let client = redis::Client::open(format!("redis://127.0.0.1:{listen}")).expect("client");
    let mut con = client.get_connection().expect("proxy accepts clients with no upstream");
    // No upstream: failover serves from local memory and journals writes.
    let start = Instant::now();
    while redis::cmd("SET").arg("k").arg("written-before-redis").query::<()>(&mut con).is_err() {
        assert!(start.elapsed() < Duration::from_secs(5), "failover never accepted a write");
        std::thread::sleep(Duration::from_millis(50));
    }
    let v: String = redis::cmd("GET").arg("k").query(&mut con).expect("served locally");
    assert_eq!(v, "written-before-redis");

    // The upstream appears (with the password the URL carries).
    let dir = std::env::temp_dir().join(format!("nearcache-cli-redis-{upstream}"));
    std::fs::create_dir_all(&dir).expect("dir");
    let mut redis = Command::new(common::server_binary())
        .args(["--port", &upstream.to_string(), "--bind", "127.0.0.1", "--save", "", "--requirepass", "s3cret"])
        .args(["--user", "user", "on", ">s3cret", "~*", "&*", "+@all"])
        .arg("--dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    wait_for_port(upstream, Duration::from_secs(10));
    let direct = redis::Client::open(format!("redis://user:s3cret@127.0.0.1:{upstream}")).expect("direct client");
    let mut direct = direct.get_connection().expect("direct connection");
    let start = Instant::now();
    // The journal is replayed into it.
    while redis::cmd("GET").arg("k").query::<Option<String>>(&mut direct).expect("direct get").is_none() {
        assert!(start.elapsed() < Duration::from_secs(10), "the write never reached the upstream");
        std::thread::sleep(Duration::from_millis(50));
    }
    let v: String = redis::cmd("GET").arg("k").query(&mut direct).expect("direct get");
    assert_eq!(v, "written-before-redis");
    redis::cmd("SET").arg("k").arg("v").query::<()>(&mut direct).expect("direct set");
    let start = Instant::now();
    while redis::cmd("GET").arg("k").query::<String>(&mut con).ok().as_deref() != Some("v") {
        assert!(start.elapsed() < Duration::from_secs(10), "upstream never picked up");
        std::thread::sleep(Duration::from_millis(50));
    }

    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    let _ = redis.kill();
    let _ = redis.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let logs = output_of(&mut child);
    assert!(logs.contains("nearcache started"), "{logs}");
    assert!(logs.contains(&format!("127.0.0.1:{listen}")), "listen address not logged: {logs}");
    assert!(logs.contains(&format!("redis://user:***@127.0.0.1:{upstream}")), "upstream not logged: {logs}");
    assert!(!logs.contains("s3cret"), "password leaked into logs: {logs}");
    assert!(logs.contains("upstream unreachable"), "{logs}");
    assert!(logs.contains("failover mode: serving from local memory"), "{logs}");
    assert!(logs.contains("journal replayed upstream"), "{logs}");
}

#[test]
fn environment_overrides_and_json_logs() {
    let redis = RedisServer::start();
    let listen = free_port();
    let mut child = spawn(
        &[],
        &[
            ("NEARCACHE_LISTEN", &format!("127.0.0.1:{listen}")),
            ("NEARCACHE_ADMIN_LISTEN", "127.0.0.1:0"),
            ("NEARCACHE_UPSTREAM", &redis.url()),
            ("NEARCACHE_LOG_FORMAT", "json"),
        ],
    );
    wait_for_port(listen, Duration::from_secs(10));
    let mut con = redis::Client::open(format!("redis://127.0.0.1:{listen}")).unwrap().get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<String> = BufReader::new(stdout).lines().map_while(Result::ok).collect();
    assert!(!lines.is_empty(), "no logs");
    for line in &lines {
        assert!(line.starts_with('{') && line.ends_with('}'), "not JSON: {line}");
    }
    assert!(lines.iter().any(|l| l.contains("nearcache started")), "{lines:?}");
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let redis = RedisServer::start();
    let listen = free_port();
    let mut child = spawn(
        &["--listen", &format!("127.0.0.1:{listen}"), "--admin-listen", "127.0.0.1:0", "--upstream", &redis.url()],
        &[],
    );
    wait_for_port(listen, Duration::from_secs(10));
    let mut slow = redis::Client::open(format!("redis://127.0.0.1:{listen}")).unwrap().get_connection().unwrap();
    let mut idle = redis::Client::open(format!("redis://127.0.0.1:{listen}")).unwrap().get_connection().unwrap();
    let _: String = redis::cmd("PING").query(&mut idle).unwrap();
    let request = std::thread::spawn(move || redis::cmd("DEBUG").arg("SLEEP").arg("0.5").query::<String>(&mut slow));
    std::thread::sleep(Duration::from_millis(150));
    let start = Instant::now();
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert_eq!(request.join().expect("thread").expect("in-flight request answered"), "OK");
    // An idle client does not hold the shutdown up to its timeout.
    assert!(start.elapsed() < Duration::from_secs(3), "shutdown took {:?}", start.elapsed());
    assert!(std::net::TcpStream::connect(("127.0.0.1", listen)).is_err(), "still accepting after exit");
    let logs = output_of(&mut child);
    assert!(logs.contains("shutdown signal received") && logs.contains("nearcache stopped"), "{logs}");
}

#[test]
fn sighup_reloads_the_config_file() {
    let redis = RedisServer::start();
    let (listen, admin) = (free_port(), free_port());
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:{listen}\"\n[admin]\nlisten = \"127.0.0.1:{admin}\"\n[upstream]\nurl = \"{}\"\n",
        redis.url()
    );
    let path = write_config(&base);
    let mut child = spawn(&["--config", path.to_str().expect("utf-8 path")], &[]);
    wait_for_port(admin, Duration::from_secs(10));
    std::fs::write(&path, format!("{base}[breaker]\nfailure_threshold = 9\n")).expect("rewrite");
    Command::new("kill").args(["-HUP", &child.id().to_string()]).status().expect("kill");
    let addr = format!("127.0.0.1:{admin}").parse().expect("addr");
    let reloaded = common::eventually(Duration::from_secs(5), || {
        let body = common::http(addr, "GET", "/metrics").1;
        common::metric(&body, "nearcache_config_reloads_total{result=\"ok\"}") == Some(1.0)
    });
    sigterm(&child);
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
    let _ = std::fs::remove_file(&path);
    let output = output_of(&mut child);
    assert!(reloaded, "no reload counted after SIGHUP: {output}");
    assert!(output.contains("configuration reloaded") && output.contains("breaker"), "{output}");
}
