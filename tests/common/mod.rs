//! Test harness: real `redis-server` processes on free loopback ports, the
//! proxy running in-process on its own runtime thread, and raw RESP helpers.
#![allow(dead_code)]

pub mod relay;

use nearcache::config::{Config, Overrides};
use nearcache::protocol::scan::Scanner;
use nearcache::{admin, observe, server};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server binary the tests run: `NEARCACHE_TEST_SERVER` (a path, e.g.
/// what `shared/vendor/build-server.sh valkey-8.0.1` prints), or Debian's
/// `redis-server`. TLS tests always use the latter (the vendored builds
/// have no TLS).
pub fn server_binary() -> String {
    std::env::var("NEARCACHE_TEST_SERVER").unwrap_or_else(|_| "redis-server".to_string())
}

/// A port nothing listens on right now (never 6379).
pub fn free_port() -> u16 {
    held_port().port
}

/// A port held for a test's Redis that is not there yet: bound but not
/// listening, so connecting to it is refused as to a free port, while no
/// other test's `free_port` can be handed it. Redis binds it anyway (both
/// sockets set `SO_REUSEADDR` and this one never listens); keep it alive
/// for the whole test.
pub struct HeldPort {
    pub port: u16,
    _socket: socket2::Socket,
}

pub fn held_port() -> HeldPort {
    use socket2::{Domain, Socket, Type};
    loop {
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket.set_reuse_address(true).expect("SO_REUSEADDR");
        socket.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into()).expect("bind");
        let port = socket.local_addr().ok().and_then(|a| a.as_socket()).map(|a| a.port()).expect("bound port");
        if port != 6379 {
            return HeldPort { port, _socket: socket };
        }
    }
}

/// A redis-server child process, killed on drop.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: std::path::PathBuf,
    /// Every write is in the append-only file before Redis answers, so a
    /// restart after [`RedisServer::kill`] keeps everything acknowledged.
    persistent: bool,
    /// A Redis Cluster node: its cluster bus port (`--cluster-port`).
    cluster_bus: Option<u16>,
    /// Its ports, held for it while it lives (across kills and restarts),
    /// so no other test's server can take one while it is down.
    _held: Vec<HeldPort>,
    /// Arguments given to the next starts (see [`RedisServer::restart_with`]).
    extra: Vec<String>,
}

impl RedisServer {
    /// A redis-server on a port held for it (see [`HeldPort`]).
    pub fn start() -> RedisServer {
        RedisServer::start_any(false)
    }

    /// A redis-server whose data survives a kill (`appendfsync always`).
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_any(true)
    }

    fn start_any(persistent: bool) -> RedisServer {
        let held = held_port();
        let port = held.port;
        RedisServer::try_start_on(port, persistent, vec![held])
            .unwrap_or_else(|| panic!("redis-server did not start on its held port {port}"))
    }

    /// A Redis Cluster node (`cluster-enabled yes`) on a held port, serving
    /// no slots and knowing no other node yet.
    pub fn start_cluster_node() -> RedisServer {
        let (held, bus) = (held_port(), held_port());
        let (port, cluster_bus) = (held.port, Some(bus.port));
        let dir = std::env::temp_dir().join(format!("nearcache-test-redis-{port}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = RedisServer {
            port,
            child: None,
            dir,
            persistent: false,
            cluster_bus,
            _held: vec![held, bus],
            extra: Vec::new(),
        };
        assert!(server.spawn(), "cluster node did not start on its held port {port}");
        server
    }

    pub fn start_on(port: u16) -> RedisServer {
        RedisServer::try_start_on(port, false, Vec::new())
            .unwrap_or_else(|| panic!("redis-server did not start on {port}"))
    }

    fn try_start_on(port: u16, persistent: bool, held: Vec<HeldPort>) -> Option<RedisServer> {
        let dir = std::env::temp_dir().join(format!("nearcache-test-redis-{port}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server =
            RedisServer { port, child: None, dir, persistent, cluster_bus: None, _held: held, extra: Vec::new() };
        server.spawn().then_some(server)
    }

    /// Starts the child; true once *it* (not another process that took the
    /// port) answers on the port.
    fn spawn(&mut self) -> bool {
        let child = Command::new(server_binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "everysec"]
            })
            .args(["--enable-debug-command", "local"])
            .args(match self.cluster_bus {
                Some(bus) => vec![
                    "--cluster-enabled".to_string(),
                    "yes".into(),
                    "--cluster-port".into(),
                    bus.to_string(),
                    "--cluster-node-timeout".into(),
                    "2000".into(),
                ],
                None => vec![],
            })
            .args(&self.extra)
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{} (scripts/test-deps.sh installs redis-server): {e}", server_binary()));
        let pid = child.id();
        self.child = Some(child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_)))) {
                self.child = None;
                return false;
            }
            if server_pid(self.port, self.password()) == Some(pid) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// The password it was started with, if any.
    fn password(&self) -> Option<&str> {
        let at = self.extra.iter().position(|arg| arg == "--requirepass")?;
        self.extra.get(at + 1).map(String::as_str)
    }

    /// A cluster node's bus port.
    pub fn cluster_bus(&self) -> Option<u16> {
        self.cluster_bus
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty unless persistent).
    pub fn restart(&mut self) {
        self.kill();
        assert!(self.spawn(), "redis-server did not restart on {}", self.port);
    }

    /// Starts it again on the same port with `args` too (`--requirepass
    /// x`: a Redis that comes back refusing the proxy).
    pub fn restart_with(&mut self, args: &[&str]) {
        self.extra = args.iter().map(|a| a.to_string()).collect();
        self.restart();
    }

    fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([sig, &child.id().to_string()]).status();
        }
    }

    /// SIGSTOP: the server hangs with its sockets open.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// SIGCONT.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A direct connection, bypassing the proxy.
    pub fn direct(&self) -> redis::Connection {
        redis::Client::open(self.url()).and_then(|c| c.get_connection()).expect("direct connection")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The process id of the Redis answering on `port`, if one does.
fn server_pid(port: u16, password: Option<&str>) -> Option<u32> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    if let Some(password) = password {
        s.write_all(format!("AUTH {password}\r\n").as_bytes()).ok()?;
    }
    s.write_all(b"INFO server\r\n").ok()?;
    let mut text = String::new();
    let mut chunk = [0u8; 8192];
    while !text.contains("process_id:") || !text[text.find("process_id:")?..].contains('\n') {
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        text.push_str(&String::from_utf8_lossy(&chunk[..n]));
    }
    let rest = &text[text.find("process_id:")? + "process_id:".len()..];
    rest.lines().next()?.trim().parse().ok()
}

pub fn wait_for_port(port: u16, limit: Duration) {
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < limit, "nothing listening on {port} after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The proxy, running in-process on its own runtime thread until dropped.
pub struct Proxy {
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    /// The configuration file, kept for reloads.
    pub config_path: std::path::PathBuf,
    /// The TLS listener, when `server.tls_listen` is configured.
    pub tls: Option<SocketAddr>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// `NEARCACHE_TEST_LOG=debug` (any filter) prints the test proxies' logs
/// to stderr (run one test to tell proxies apart).
fn log_if_asked() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    if let Ok(filter) = std::env::var("NEARCACHE_TEST_LOG") {
        ONCE.call_once(|| {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_writer(std::io::stderr)
                .try_init();
        });
    }
}

impl Proxy {
    /// A proxy in front of `upstream_port` with default settings.
    pub fn start(upstream_port: u16) -> Proxy {
        Proxy::start_with(upstream_port, "")
    }

    /// A proxy in front of `upstream_port`; `toml` is extra configuration
    /// (listen addresses and the upstream URL are set by the harness).
    pub fn start_with(upstream_port: u16, toml: &str) -> Proxy {
        Proxy::start_url(&format!("redis://127.0.0.1:{upstream_port}"), toml)
    }

    /// A proxy in front of the upstream `url` (`redis://` or `rediss://`).
    pub fn start_url(url: &str, toml: &str) -> Proxy {
        let path = std::env::temp_dir().join(format!("nearcache-test-{}-{}.toml", std::process::id(), free_port()));
        std::fs::write(&path, toml).expect("write config");
        let overrides = Overrides {
            listen: Some("127.0.0.1:0".into()),
            upstream: Some(url.to_string()),
            admin_listen: Some("127.0.0.1:0".into()),
            ..Overrides::default()
        };
        let config = Config::load(Some(&path), &overrides).expect("valid test config");
        let source = server::ConfigSource { file: Some(path.clone()), overrides };
        log_if_asked();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("rt");
            rt.block_on(async move {
                let metrics = observe::install();
                let admin_listener = admin::bind(config.admin.listen).await.expect("admin bind");
                let admin_addr = admin_listener.local_addr().expect("admin addr");
                let server = server::Server::bind(&config).await.expect("bind");
                let token = config.admin.token.clone();
                let admin_state = std::sync::Arc::new(admin::Admin::new(metrics, &server, source, token));
                tokio::spawn(admin::serve(admin_listener, admin_state));
                addr_tx.send((server.local_addr().expect("addr"), admin_addr, server.tls_addr())).expect("send addr");
                server
                    .run(async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let (addr, admin, tls) = addr_rx.recv_timeout(Duration::from_secs(10)).expect("proxy started");
        Proxy { addr, admin, config_path: path, tls, stop: Some(stop_tx), thread: Some(thread) }
    }

    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("client")
    }

    /// A fresh connection through the proxy.
    pub fn conn(&self) -> redis::Connection {
        let con = self.client().get_connection().expect("connection through proxy");
        con.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        con
    }

    /// A raw TCP connection through the proxy.
    pub fn raw(&self) -> Raw {
        Raw::connect(self.addr)
    }

    /// GET on the admin listener: (status code, body).
    pub fn admin_get(&self, path: &str) -> (u16, String) {
        http(self.admin, "GET", path)
    }

    /// POST (no body) on the admin listener: (status code, body).
    pub fn admin_post(&self, path: &str) -> (u16, String) {
        http(self.admin, "POST", path)
    }

    /// Rewrites the configuration file (the harness' listen addresses and
    /// upstream still override it) and asks for a reload: (status, body).
    pub fn reload(&self, toml: &str) -> (u16, String) {
        std::fs::write(&self.config_path, toml).expect("rewrite config");
        self.admin_post("/config/reload")
    }

    /// Stops accepting and waits for the proxy to finish.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let _ = std::fs::remove_file(&self.config_path);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A minimal HTTP/1.1 request without a body: (status, body).
pub fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    http_with(addr, method, path, "")
}

/// [`http`] with extra header lines (each ending in CRLF).
pub fn http_with(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("admin connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    write!(s, "{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n").expect("write");
    let mut text = String::new();
    s.read_to_string(&mut text).expect("read");
    let status = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

/// A raw RESP connection for protocol edge cases.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        Raw { stream, buf: Vec::new() }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Sends a command as a RESP multibulk.
    pub fn cmd(&mut self, args: &[&str]) {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        self.send(&out);
    }

    /// Reads one complete reply frame, as raw bytes.
    pub fn read_frame(&mut self) -> Vec<u8> {
        self.try_read_frame().expect("connection closed before a full reply")
    }

    /// One complete frame, or `None` if the connection closed first.
    pub fn try_read_frame(&mut self) -> Option<Vec<u8>> {
        loop {
            let mut scanner = Scanner::default();
            if let Some(n) = scanner.next_frame(&self.buf).expect("valid RESP from proxy") {
                return Some(self.buf.drain(..n).collect());
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Sends a command and reads (and drops) its reply.
    pub fn read_frame_after(&mut self, args: &[&str]) -> Vec<u8> {
        self.cmd(args);
        self.read_frame()
    }

    /// Sends a command and returns its reply as text.
    pub fn call(&mut self, args: &[&str]) -> String {
        self.cmd(args);
        String::from_utf8_lossy(&self.read_frame()).into_owned()
    }

    /// True when the server closed the connection (reads EOF, or the
    /// connection resets) within the read timeout; false if it sent
    /// something or the read timed out.
    pub fn is_closed(&mut self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
        }
    }
}

/// Peak resident memory of this process, in KiB (tests that measure it run
/// in a binary of their own, so it is the proxy's).
pub fn peak_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("VmHWM");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number")
}

/// Polls `f` until it returns true or `limit` passes.
pub fn eventually(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    f()
}

/// Waits until a forwarded command goes through the proxy.
pub fn wait_ready(proxy: &Proxy) {
    let mut raw = proxy.raw();
    wait_forwarding(&mut raw);
}

/// Waits until the near-cache serves: its invalidation connection is up.
pub fn wait_active(proxy: &Proxy) {
    let mut last = String::new();
    let active = eventually(Duration::from_secs(5), || {
        last = proxy.admin_get("/cache/stats").1;
        last.contains("\"active\":true")
    });
    assert!(active, "near-cache never became active: {last}");
}

/// After HELLO 3 on `raw`: waits until a forwarded command goes through in
/// RESP3.
pub fn wait_ready_resp3(raw: &mut Raw) {
    wait_forwarding(raw);
}

fn wait_forwarding(raw: &mut Raw) {
    let mut last = String::new();
    let ready = eventually(Duration::from_secs(5), || {
        last = raw.call(&["ECHO", "ready"]);
        last == "$5\r\nready\r\n"
    });
    assert!(ready, "proxy never forwarded a command: {last:?}");
}

/// A raw connection straight to Redis, to compare with.
pub fn direct_raw(redis: &RedisServer) -> Raw {
    Raw::connect(format!("127.0.0.1:{}", redis.port).parse().expect("addr"))
}

/// The raw text of a top-level field of a flat JSON object.
pub fn json_field<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let start = body.find(&format!("\"{name}\":"))? + name.len() + 3;
    let rest = &body[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    Some(rest[..end].trim())
}

pub fn json_number(body: &str, name: &str) -> f64 {
    json_field(body, name).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no number {name} in {body}"))
}

/// Redis' own account of a command (lower case, `client|pause` style for
/// subcommands), from `INFO commandstats`: (calls, microseconds per call).
pub fn command_stats(direct: &mut redis::Connection, cmd: &str) -> (u64, f64) {
    let info: String = redis::cmd("INFO").arg("commandstats").query(direct).expect("INFO commandstats");
    let prefix = format!("cmdstat_{cmd}:");
    let Some(line) = info.lines().find_map(|l| l.strip_prefix(&prefix)) else {
        return (0, 0.0);
    };
    let field = |name: &str| line.split(',').find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='));
    (
        field("calls").and_then(|v| v.parse().ok()).unwrap_or(0),
        field("usec_per_call").and_then(|v| v.parse().ok()).unwrap_or(0.0),
    )
}

/// Sends the read `command` through `raw` until the near-cache answers it
/// (a first read's fill is dropped when an invalidation for the key, e.g.
/// of the write that created it, is still on its way); returns the reply.
pub fn wait_cached(proxy: &Proxy, raw: &mut Raw, command: &[&str]) -> String {
    let hits = || json_number(&proxy.admin_get("/cache/stats").1, "hits");
    let mut reply = String::new();
    let cached = eventually(Duration::from_secs(5), || {
        let before = hits();
        reply = raw.call(command);
        hits() > before
    });
    assert!(cached, "{command:?} never served from the near-cache");
    reply
}

/// Value of one sample line of the Prometheus text (`name{labels} value`).
pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}
