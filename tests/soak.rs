//! Soak: 2,000 concurrent client connections with mixed, pipelined traffic
//! for `SOAK_SECS` seconds (default 60) against the release proxy binary.
//! After a warm-up that lasts until memory is in its steady state, memory
//! must stay flat and no request may fail.
//!
//! Ignored by default; run it with `scripts/soak.sh`, which raises the
//! open-file limit and runs
//! `cargo test --release --test soak -- --ignored --nocapture`.
//!
//! The proxy runs as its own process (the `nearcache` binary, not the
//! in-process harness of `common::Proxy`), so the resident set read from
//! `/proc/<pid>/status` is the proxy's alone, not the load generator's.
//!
//! Traffic, per connection, round after round (one pipeline per round):
//! SET/GET of a private string with read-your-writes checks, INCR of a
//! private counter (checked), HSET+HGETALL, LPUSH+LTRIM+LRANGE (head
//! checked), EXPIRE, MGET, reads of 32 hot keys (cache hits), reads and
//! SET EX writes over a cold key space larger than the near-cache (size
//! evictions), writes to hot keys now and then (invalidations). Clients
//! are split over two tenants (the default one, unauthenticated or with
//! AUTH, and another with AUTH or HELLO 3 AUTH); one in 25 speaks RESP3;
//! every connection reconnects every 300 rounds (session churn).
//!
//! Environment: `SOAK_SECS` (default 60), `SOAK_CLIENTS` (default 2000).

mod common;

use common::{free_port, http, metric, wait_for_port, RedisServer};
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound of the near-cache (`cache.max_bytes`): small, so that the cold key
/// space overflows it and size evictions run for the whole soak.
const CACHE_MAX_BYTES: u64 = 16 * 1024 * 1024;
/// Cold keys per tenant, pre-loaded upstream: about 230 bytes each
/// (key + 200-byte value), 24 MiB for the default tenant alone.
const COLD_KEYS: [u64; 2] = [100_000, 20_000];
/// `cache.admission_window`: more than all cold keys.
const ADMISSION_WINDOW: u64 = 1 << 20;
const HOT_KEYS: u64 = 32;
const WARMUP: Duration = Duration::from_secs(5);
/// The warm-up goes on until the proxy's memory is in its steady state, at
/// most this long.
const MAX_WARMUP: Duration = Duration::from_secs(300);
/// Steady state: the near-cache is full and RSS grew less than this (per
/// mille) over the last `SETTLE` interval.
const SETTLED_PER_MILLE: u64 = 3;
const SETTLE: Duration = Duration::from_secs(10);
/// Each connection reconnects after this many rounds.
const CHURN_ROUNDS: u64 = 300; // SOAK_CHURN_ROUNDS overrides; 0: no churn
/// A round (one pipeline) slower than this counts as a failure.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "soak-password";
const TENANTS: [&str; 2] = ["app", "billing"];

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

// ---------------------------------------------------------------- RESP ----

/// A decoded reply (RESP2 or RESP3).
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(Vec<u8>),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
    Map(Vec<(Reply, Reply)>),
    /// Doubles, booleans, big numbers.
    Other(Vec<u8>),
}

fn line<'a>(buf: &'a [u8], pos: &mut usize) -> Option<&'a [u8]> {
    let start = *pos;
    let end = start + buf.get(start..)?.windows(2).position(|w| w == b"\r\n")?;
    *pos = end + 2;
    Some(&buf[start..end])
}

fn int(bytes: &[u8]) -> Result<i64, String> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad number {:?}", String::from_utf8_lossy(bytes)))
}

/// One reply from `buf[*pos..]`; `Ok(None)` (and `pos` unspecified) when
/// incomplete.
fn parse(buf: &[u8], pos: &mut usize) -> Result<Option<Reply>, String> {
    let Some(head) = line(buf, pos) else {
        return Ok(None);
    };
    let Some((&tag, rest)) = head.split_first() else {
        return Err("empty reply line".into());
    };
    Ok(Some(match tag {
        b'+' => Reply::Simple(rest.to_vec()),
        b'-' => Reply::Error(String::from_utf8_lossy(rest).into_owned()),
        b':' => Reply::Int(int(rest)?),
        b'_' => Reply::Nil,
        b',' | b'#' | b'(' => Reply::Other(rest.to_vec()),
        b'$' | b'!' | b'=' => {
            let n = int(rest)?;
            if n < 0 {
                Reply::Nil
            } else {
                let n = n as usize;
                if buf.len() < *pos + n + 2 {
                    return Ok(None);
                }
                let data = buf[*pos..*pos + n].to_vec();
                *pos += n + 2;
                if tag == b'!' {
                    Reply::Error(String::from_utf8_lossy(&data).into_owned())
                } else {
                    Reply::Bulk(data)
                }
            }
        }
        b'*' | b'~' | b'>' => {
            let n = int(rest)?;
            if n < 0 {
                Reply::Nil
            } else {
                let mut items = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let Some(item) = parse(buf, pos)? else {
                        return Ok(None);
                    };
                    items.push(item);
                }
                Reply::Array(items)
            }
        }
        b'%' => {
            let n = int(rest)?;
            let mut pairs = Vec::with_capacity(n.max(0) as usize);
            for _ in 0..n {
                let (Some(k), Some(v)) = (parse(buf, pos)?, parse(buf, pos)?) else {
                    return Ok(None);
                };
                pairs.push((k, v));
            }
            Reply::Map(pairs)
        }
        other => return Err(format!("unknown reply type {:?}", other as char)),
    }))
}

fn encode(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// A client connection: pipelined commands out, replies parsed back.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    pending: usize,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn, String> {
        let stream = TcpStream::connect(addr).await.map_err(|e| format!("connect: {e}"))?;
        stream.set_nodelay(true).map_err(|e| format!("nodelay: {e}"))?;
        Ok(Conn { stream, buf: Vec::with_capacity(4096), out: Vec::with_capacity(4096), pending: 0 })
    }

    fn push(&mut self, args: &[&[u8]]) {
        encode(&mut self.out, args);
        self.pending += 1;
    }

    /// Sends what was pushed and reads one reply per command.
    async fn flush(&mut self) -> Result<Vec<Reply>, String> {
        self.stream.write_all(&self.out).await.map_err(|e| format!("write: {e}"))?;
        self.out.clear();
        let mut replies = Vec::with_capacity(self.pending);
        let mut chunk = [0u8; 16384];
        while replies.len() < self.pending {
            let mut pos = 0;
            match parse(&self.buf, &mut pos)? {
                Some(reply) => {
                    self.buf.drain(..pos);
                    replies.push(reply);
                }
                None => match self.stream.read(&mut chunk).await {
                    Ok(0) => return Err("connection closed by the proxy".into()),
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) => return Err(format!("read: {e}")),
                },
            }
        }
        self.pending = 0;
        Ok(replies)
    }
}

// --------------------------------------------------------------- clients ----

#[derive(Default)]
struct Stats {
    /// Commands that got a reply.
    requests: AtomicU64,
    rounds: AtomicU64,
    /// `-` replies (none is expected in this traffic).
    error_replies: AtomicU64,
    /// Replies of the right kind but the wrong content (stale reads, …).
    mismatches: AtomicU64,
    /// Connection failures, closes and round timeouts.
    io_errors: AtomicU64,
    reconnects: AtomicU64,
    ready: AtomicUsize,
    /// The first problems seen, for the report.
    samples: Mutex<Vec<String>>,
}

impl Stats {
    fn problem(&self, counter: &AtomicU64, what: String) {
        counter.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < 20 {
            samples.push(what);
        }
    }
}

/// How one client connects: which tenant, how it logs in, which protocol.
#[derive(Clone, Copy)]
struct Profile {
    tenant: usize,
    resp3: bool,
    explicit_auth: bool,
}

impl Profile {
    fn of(id: u64) -> Profile {
        let tenant = usize::from(id % 10 == 3);
        let resp3 = id.is_multiple_of(25) || id % 50 == 3;
        // The default tenant mostly connects without AUTH; the other must AUTH.
        Profile { tenant, resp3, explicit_auth: tenant == 1 || id % 40 == 1 }
    }

    async fn connect(self, addr: &str) -> Result<Conn, String> {
        let mut conn = Conn::open(addr).await?;
        let tenant = TENANTS[self.tenant].as_bytes();
        match (self.resp3, self.explicit_auth) {
            (true, true) => conn.push(&[b"HELLO", b"3", b"AUTH", tenant, PASSWORD.as_bytes()]),
            (true, false) => conn.push(&[b"HELLO", b"3"]),
            (false, true) => conn.push(&[b"AUTH", tenant, PASSWORD.as_bytes()]),
            (false, false) => {}
        }
        conn.push(&[b"PING"]);
        let replies = conn.flush().await?;
        if let Some(Reply::Error(e)) = replies.iter().find(|r| matches!(r, Reply::Error(_))) {
            return Err(format!("setup refused: {e}"));
        }
        Ok(conn)
    }
}

/// xorshift64*: cheap, deterministic per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What a client knows of its private keys, to check replies against.
struct Client {
    id: u64,
    profile: Profile,
    rng: Rng,
    round: u64,
    string: Vec<u8>,
    counter: Vec<u8>,
    hash: Vec<u8>,
    list: Vec<u8>,
    /// Last value written to `string`.
    last: Option<Vec<u8>>,
    incrs: i64,
}

/// Expected shape of one reply.
enum Want {
    Ok,
    Int,
    IntEq(i64),
    Bulk,
    BulkOrNil,
    /// Exactly this value (`None`: nil).
    Value(Option<Vec<u8>>),
    NonEmptyHash,
    ListHead(Vec<u8>),
    /// MGET of three keys, the third with this value.
    Mget3(Option<Vec<u8>>),
}

fn check(want: &Want, got: &Reply) -> bool {
    let value = |v: &Option<Vec<u8>>, r: &Reply| match (v, r) {
        (Some(v), Reply::Bulk(b)) => v == b,
        (None, Reply::Nil) => true,
        _ => false,
    };
    match want {
        Want::Ok => matches!(got, Reply::Simple(s) if s == b"OK"),
        Want::Int => matches!(got, Reply::Int(_)),
        Want::IntEq(n) => got == &Reply::Int(*n),
        Want::Bulk => matches!(got, Reply::Bulk(_)),
        Want::BulkOrNil => matches!(got, Reply::Bulk(_) | Reply::Nil),
        Want::Value(v) => value(v, got),
        Want::NonEmptyHash => match got {
            Reply::Map(pairs) => !pairs.is_empty(),
            Reply::Array(items) => !items.is_empty() && items.len() % 2 == 0,
            _ => false,
        },
        Want::ListHead(head) => matches!(got, Reply::Array(items) if items.first() == Some(&Reply::Bulk(head.clone()))),
        Want::Mget3(third) => match got {
            Reply::Array(items) if items.len() == 3 => value(third, &items[2]),
            _ => false,
        },
    }
}

impl Client {
    fn new(id: u64) -> Client {
        let key = |kind: &str| format!("soak:{id}:{kind}").into_bytes();
        Client {
            id,
            profile: Profile::of(id),
            rng: Rng(0x9e37_79b9_7f4a_7c15 ^ (id + 1).wrapping_mul(0x1000_0000_01b3)),
            round: 0,
            string: key("s"),
            counter: key("c"),
            hash: key("h"),
            list: key("l"),
            last: None,
            incrs: 0,
        }
    }

    fn hot(&mut self) -> Vec<u8> {
        format!("hot:{}", self.rng.below(HOT_KEYS)).into_bytes()
    }

    fn cold(&mut self) -> Vec<u8> {
        format!("cold:{}", self.rng.below(COLD_KEYS[self.profile.tenant])).into_bytes()
    }

    /// Pushes one round of mixed commands; returns what each reply must be.
    fn plan(&mut self, conn: &mut Conn) -> Vec<Want> {
        let r = self.round;
        self.round += 1;
        let mut wants = Vec::with_capacity(6);
        match (r + self.id) % 4 {
            0 => {
                let v = format!("v{}-{r}", self.id).into_bytes();
                conn.push(&[b"SET", &self.string, &v]);
                conn.push(&[b"GET", &self.string]);
                conn.push(&[b"INCR", &self.counter]);
                let (a, b) = (self.hot(), self.hot());
                conn.push(&[b"GET", &a]);
                conn.push(&[b"GET", &b]);
                self.incrs += 1;
                wants.extend([Want::Ok, Want::Value(Some(v.clone())), Want::IntEq(self.incrs), Want::Bulk, Want::Bulk]);
                self.last = Some(v);
            }
            1 => {
                let field = format!("f{}", r % 8).into_bytes();
                conn.push(&[b"HSET", &self.hash, &field, r.to_string().as_bytes()]);
                conn.push(&[b"HGETALL", &self.hash]);
                let (a, b, c) = (self.hot(), self.hot(), self.cold());
                conn.push(&[b"MGET", &a, &b, &self.string]);
                conn.push(&[b"GET", &c]);
                wants.extend([Want::Int, Want::NonEmptyHash, Want::Mget3(self.last.clone()), Want::BulkOrNil]);
            }
            2 => {
                let head = r.to_string().into_bytes();
                conn.push(&[b"LPUSH", &self.list, &head]);
                conn.push(&[b"LTRIM", &self.list, b"0", b"15"]);
                conn.push(&[b"LRANGE", &self.list, b"0", b"-1"]);
                conn.push(&[b"EXPIRE", &self.string, b"600"]);
                let c = self.cold();
                conn.push(&[b"GET", &c]);
                let exists = i64::from(self.last.is_some());
                wants.extend([Want::Int, Want::Ok, Want::ListHead(head), Want::IntEq(exists), Want::BulkOrNil]);
            }
            _ => {
                let (a, b, c) = (self.cold(), self.cold(), self.cold());
                let value = vec![b'a' + (r % 26) as u8; 200];
                conn.push(&[b"GET", &a]);
                conn.push(&[b"GET", &b]);
                conn.push(&[b"SET", &c, &value, b"EX", b"120"]);
                conn.push(&[b"GET", &self.string]);
                wants.extend([Want::BulkOrNil, Want::BulkOrNil, Want::Ok, Want::Value(self.last.clone())]);
                // A few writers keep the hot keys changing: invalidations.
                if self.id.is_multiple_of(100) && r % 20 == 3 {
                    let hot = self.hot();
                    conn.push(&[b"SET", &hot, format!("hot-{}-{r}", self.id).as_bytes()]);
                    wants.push(Want::Ok);
                }
            }
        }
        wants
    }
}

/// What every client task shares.
struct Shared {
    addr: String,
    stats: Stats,
    stop: AtomicBool,
    /// Bounds concurrent connection setups (the accept backlog).
    gate: tokio::sync::Semaphore,
    /// No permits until every client is connected: traffic starts together.
    go: tokio::sync::Semaphore,
    /// Reconnect every this many rounds (0: never).
    churn_rounds: u64,
}

async fn run_client(id: u64, shared: Arc<Shared>) {
    let (stats, stop) = (&shared.stats, &shared.stop);
    let mut client = Client::new(id);
    let shared_ref: &Shared = &shared;
    let connect = |profile: Profile| async move {
        let _permit = shared_ref.gate.acquire().await.expect("gate");
        profile.connect(&shared_ref.addr).await
    };
    let conn = connect(client.profile).await;
    stats.ready.fetch_add(1, Ordering::SeqCst);
    let mut conn = match conn {
        Ok(c) => c,
        Err(e) => {
            stats.problem(&stats.io_errors, format!("client {id}: {e}"));
            return;
        }
    };
    shared.go.acquire().await.expect("go").forget();
    while !stop.load(Ordering::Relaxed) {
        let churn = shared.churn_rounds;
        if churn > 0 && client.round > 0 && (client.round + id * 7).is_multiple_of(churn) {
            drop(conn);
            conn = match connect(client.profile).await {
                Ok(c) => c,
                Err(e) => {
                    stats.problem(&stats.io_errors, format!("client {id} reconnect: {e}"));
                    return;
                }
            };
            stats.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        let round = client.round;
        let wants = client.plan(&mut conn);
        let replies = match tokio::time::timeout(ROUND_TIMEOUT, conn.flush()).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                stats.problem(&stats.io_errors, format!("client {id} round {round}: {e}"));
                return;
            }
            Err(_) => {
                stats.problem(&stats.io_errors, format!("client {id} round {round}: no reply in {ROUND_TIMEOUT:?}"));
                return;
            }
        };
        stats.requests.fetch_add(replies.len() as u64, Ordering::Relaxed);
        stats.rounds.fetch_add(1, Ordering::Relaxed);
        for (i, (want, got)) in wants.iter().zip(&replies).enumerate() {
            if let Reply::Error(e) = got {
                stats.problem(&stats.error_replies, format!("client {id} round {round} cmd {i}: -{e}"));
            } else if !check(want, got) {
                stats.problem(&stats.mismatches, format!("client {id} round {round} cmd {i}: unexpected {got:?}"));
            }
        }
    }
}

// ----------------------------------------------------------------- proxy ----

/// The proxy binary as a child process, stopped on drop.
struct ProxyProcess {
    child: Child,
    addr: String,
    admin: std::net::SocketAddr,
    log: PathBuf,
    config: PathBuf,
}

impl ProxyProcess {
    fn start(redis_port: u16, toml: &str) -> ProxyProcess {
        let dir = std::env::temp_dir();
        let tag = format!("{}-{}", std::process::id(), free_port());
        let config = dir.join(format!("nearcache-soak-{tag}.toml"));
        let log = dir.join(format!("nearcache-soak-{tag}.log"));
        std::fs::write(&config, toml).expect("write config");
        for _ in 0..10 {
            let (port, admin_port) = (free_port(), free_port());
            let child = Command::new(env!("CARGO_BIN_EXE_nearcache"))
                .arg("--config")
                .arg(&config)
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")])
                .args(["--upstream", &format!("redis://127.0.0.1:{redis_port}")])
                .args(["--log-format", "json"])
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .stdout(std::fs::File::create(&log).expect("log file"))
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start the nearcache binary");
            let mut proxy = ProxyProcess {
                child,
                addr: format!("127.0.0.1:{port}"),
                admin: format!("127.0.0.1:{admin_port}").parse().expect("admin addr"),
                log: log.clone(),
                config: config.clone(),
            };
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = proxy.child.try_wait() {
                    break; // a port was taken meanwhile: try others
                }
                if std::net::TcpStream::connect(&proxy.addr).is_ok() {
                    wait_for_port(admin_port, Duration::from_secs(5));
                    return proxy;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            proxy.kill();
        }
        panic!("the proxy binary did not start; see {}", log.display());
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn metrics(&self) -> String {
        let (status, body) = http(self.admin, "GET", "/metrics");
        assert_eq!(status, 200, "GET /metrics");
        body
    }

    /// SIGTERM, then waits for a clean exit.
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(&self.config);
    }
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS`, `VmHWM`).
fn status_kib(pid: u32, field: &str) -> u64 {
    status_kib_or_count(pid, field)
}

/// A numeric `/proc/<pid>/status` field: KiB for sizes, else a count.
fn status_kib_or_count(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status of the proxy");
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

fn nofile_soft_limit() -> u64 {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Loads the hot and cold keys of both tenants straight into Redis.
fn preload(redis: &RedisServer) {
    let mut con = redis.direct();
    let value = vec![b'x'; 200];
    for (t, tenant) in TENANTS.iter().enumerate() {
        let mut pipe = redis::pipe();
        for i in 0..HOT_KEYS {
            pipe.set(format!("{tenant}:hot:{i}"), format!("hot-{i}")).ignore();
        }
        pipe.exec(&mut con).expect("preload hot keys");
        for chunk in (0..COLD_KEYS[t]).collect::<Vec<_>>().chunks(2000) {
            let mut pipe = redis::pipe();
            for i in chunk {
                pipe.set(format!("{tenant}:cold:{i}"), &value).ignore();
            }
            pipe.exec(&mut con).expect("preload cold keys");
        }
    }
}

fn config_toml() -> String {
    let hash = nearcache::tenancy::hash_password(PASSWORD.as_bytes());
    format!(
        r#"[server]
max_clients = 10000
client_idle_timeout = "0s"

[log]
level = "warn"

[cache]
max_bytes = {CACHE_MAX_BYTES}
default_ttl = "60s"
# Remembers the whole cold key space, so its keys are cached from their
# second read and overflow max_bytes (the default window is 16,384 keys).
admission_window = {ADMISSION_WINDOW}

[failover]
max_bytes = 16777216
journal_max_bytes = 16777216

[tenancy]
default_tenant = "app"

[[tenant]]
name = "app"
password_sha256 = "{hash}"
prefix = "app:"

[[tenant]]
name = "billing"
password_sha256 = "{hash}"
prefix = "billing:"
"#
    )
}

// ------------------------------------------------------------------ test ----

#[test]
#[ignore = "soak: minutes and ~4,500 file descriptors; run scripts/soak.sh"]
fn soak_2000_connections_memory_flat_no_errors() {
    let clients = env_num("SOAK_CLIENTS", 2000);
    let secs = env_num("SOAK_SECS", 60);
    let need = clients * 2 + 500;
    let limit = nofile_soft_limit();
    assert!(limit >= need, "open-file limit {limit} < {need}: run `ulimit -n 65536` first (scripts/soak.sh does)");

    let redis = RedisServer::start();
    let t0 = Instant::now();
    preload(&redis);
    println!("soak: preloaded {} keys into Redis in {:.1?}", COLD_KEYS.iter().sum::<u64>(), t0.elapsed());
    let mut proxy = ProxyProcess::start(redis.port, &config_toml());
    let pid = proxy.pid();
    let rss_idle = status_kib(pid, "VmRSS");
    println!("soak: proxy pid {pid} on {}, RSS idle {:.1} MiB", proxy.addr, mib(rss_idle));

    let shared = Arc::new(Shared {
        addr: proxy.addr.clone(),
        stats: Stats::default(),
        stop: AtomicBool::new(false),
        gate: tokio::sync::Semaphore::new(64),
        go: tokio::sync::Semaphore::new(0),
        churn_rounds: env_num("SOAK_CHURN_ROUNDS", CHURN_ROUNDS),
    });
    let stats = &shared.stats;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let t_connect = Instant::now();
    let tasks: Vec<_> = (0..clients).map(|id| rt.spawn(run_client(id, shared.clone()))).collect();
    while stats.ready.load(Ordering::SeqCst) < clients as usize {
        assert!(
            t_connect.elapsed() < Duration::from_secs(120),
            "only {} of {clients} clients connected",
            stats.ready.load(Ordering::SeqCst)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let connect_time = t_connect.elapsed();
    let mut connected = -1.0;
    common::eventually(Duration::from_secs(5), || {
        connected = metric(&proxy.metrics(), "nearcache_client_connections").unwrap_or(-1.0);
        connected == clients as f64
    });
    let rss_connected = status_kib(pid, "VmRSS");
    println!(
        "soak: {clients} clients connected in {connect_time:.1?}, the proxy counts {connected}; RSS {:.1} MiB \
         ({:.1} KiB per idle connection); traffic starts",
        mib(rss_connected),
        rss_connected.saturating_sub(rss_idle) as f64 / clients as f64
    );
    shared.go.add_permits(clients as usize);
    // Warm-up, until the start figure is a steady state: the near-cache
    // full, and RSS no longer climbing. Sessions keep the buffers their
    // largest pipelines needed, the cache's structures grow with its
    // churn, and every connection is replaced every CHURN_ROUNDS rounds:
    // RSS rises towards a plateau over the first minutes, at a pace set by
    // the request rate. A leak never levels off, so it still fails below.
    let t_warm = Instant::now();
    std::thread::sleep(WARMUP);
    let mut cache_bytes = 0.0;
    let mut warm_samples = vec![status_kib(pid, "VmRSS")];
    while t_warm.elapsed() < MAX_WARMUP {
        std::thread::sleep(SETTLE);
        cache_bytes = metric(&proxy.metrics(), "nearcache_cache_bytes").unwrap_or(0.0);
        let (before, now) = (warm_samples[warm_samples.len() - 1], status_kib(pid, "VmRSS"));
        warm_samples.push(now);
        let settled = now.saturating_sub(before) * 1000 < before * SETTLED_PER_MILLE;
        if settled && cache_bytes >= 0.95 * CACHE_MAX_BYTES as f64 {
            break;
        }
    }
    println!(
        "soak: warm-up RSS every {SETTLE:?} (MiB): {}",
        warm_samples.iter().map(|&kib| format!("{:.1}", mib(kib))).collect::<Vec<_>>().join(" ")
    );
    let warmup = t_warm.elapsed();

    let rss_start = status_kib(pid, "VmRSS");
    let fds_start = open_fds(pid);
    let threads_start = status_kib_or_count(pid, "Threads");
    let requests_start = stats.requests.load(Ordering::Relaxed);
    let t_start = Instant::now();
    println!(
        "soak: start after {warmup:.1?} of warm-up: RSS {:.1} MiB, {fds_start} fds, cache {:.1} MiB, {requests_start} requests so far",
        mib(rss_start),
        cache_bytes / 1048576.0
    );
    let mut samples = vec![(0u64, rss_start)];
    let (mut last_requests, mut last_t) = (requests_start, Instant::now());
    while t_start.elapsed() < Duration::from_secs(secs) {
        let left = Duration::from_secs(secs).saturating_sub(t_start.elapsed());
        std::thread::sleep(left.min(Duration::from_secs(10)));
        let rss = status_kib(pid, "VmRSS");
        let requests = stats.requests.load(Ordering::Relaxed);
        let body = proxy.metrics();
        println!(
            "soak: t={:>3}s RSS {:>7.1} MiB, {:>7.0} req/s, cache {:.1} MiB / {} entries, clients {}, problems {}",
            t_start.elapsed().as_secs(),
            mib(rss),
            (requests - last_requests) as f64 / last_t.elapsed().as_secs_f64(),
            metric(&body, "nearcache_cache_bytes").unwrap_or(0.0) / 1048576.0,
            metric(&body, "nearcache_cache_entries").unwrap_or(0.0),
            metric(&body, "nearcache_client_connections").unwrap_or(-1.0),
            stats.error_replies.load(Ordering::Relaxed)
                + stats.mismatches.load(Ordering::Relaxed)
                + stats.io_errors.load(Ordering::Relaxed),
        );
        samples.push((t_start.elapsed().as_secs(), rss));
        (last_requests, last_t) = (requests, Instant::now());
    }
    let rss_end = status_kib(pid, "VmRSS");
    let fds_end = open_fds(pid);
    let threads_end = status_kib_or_count(pid, "Threads");
    let hwm = status_kib(pid, "VmHWM");
    let elapsed = t_start.elapsed();
    let requests = stats.requests.load(Ordering::Relaxed) - requests_start;
    let body = proxy.metrics();
    shared.stop.store(true, Ordering::Relaxed);
    rt.block_on(async {
        for t in tasks {
            t.await.expect("client task");
        }
    });
    drop(rt);

    // Every session ended: the gauge must come back to zero.
    let mut left_connected = -1.0;
    let drained = common::eventually(Duration::from_secs(10), || {
        left_connected = metric(&proxy.metrics(), "nearcache_client_connections").unwrap_or(-1.0);
        left_connected == 0.0
    });

    let m = |series: &str| metric(&body, series).unwrap_or(0.0);
    let sum = |prefix: &str| -> f64 {
        body.lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .fold(0.0, |a, b| a + b)
    };
    let hits = m("nearcache_cache_hits_total");
    let misses = m("nearcache_cache_misses_total");
    println!("soak: ---------------------------------------------------------------");
    println!("soak: clients {clients}, measured {elapsed:.1?} (after {warmup:.1?} of warm-up)");
    println!(
        "soak: requests {requests} ({:.0}/s), {} in total incl. warm-up, rounds {}, reconnects {}",
        requests as f64 / elapsed.as_secs_f64(),
        stats.requests.load(Ordering::Relaxed),
        stats.rounds.load(Ordering::Relaxed),
        stats.reconnects.load(Ordering::Relaxed)
    );
    println!(
        "soak: errors: {} error replies, {} wrong replies, {} connection failures/timeouts",
        stats.error_replies.load(Ordering::Relaxed),
        stats.mismatches.load(Ordering::Relaxed),
        stats.io_errors.load(Ordering::Relaxed)
    );
    println!(
        "soak: RSS idle {:.1} MiB, start {:.1} MiB, end {:.1} MiB ({:+.1} MiB, {:+.1}%), peak {:.1} MiB",
        mib(rss_idle),
        mib(rss_start),
        mib(rss_end),
        mib(rss_end) - mib(rss_start),
        (rss_end as f64 / rss_start as f64 - 1.0) * 100.0,
        mib(hwm)
    );
    println!(
        "soak: RSS samples (s, MiB): {}",
        samples.iter().map(|(t, k)| format!("{t}:{:.1}", mib(*k))).collect::<Vec<_>>().join(" ")
    );
    println!("soak: fds start {fds_start}, end {fds_end}; threads start {threads_start}, end {threads_end}");
    println!(
        "soak: cache hits {hits}, misses {misses} ({:.1}% hits), {:.1} MiB / {} entries, evictions size {} ttl {} invalidation {}",
        100.0 * hits / (hits + misses).max(1.0),
        m("nearcache_cache_bytes") / 1048576.0,
        m("nearcache_cache_entries"),
        m("nearcache_cache_evictions_total{reason=\"size\"}"),
        m("nearcache_cache_evictions_total{reason=\"ttl\"}"),
        m("nearcache_cache_evictions_total{reason=\"invalidation\"}"),
    );
    println!(
        "soak: upstream errors {}, protocol errors {}, refused {}, breaker transitions {}, tenant refusals {}",
        sum("nearcache_upstream_errors_total"),
        m("nearcache_client_protocol_errors_total"),
        m("nearcache_clients_refused_total"),
        sum("nearcache_breaker_transitions_total"),
        sum("nearcache_tenant_refusals_total"),
    );
    println!("soak: client connections after the clients left: {left_connected}");
    let samples_text = stats.samples.lock().unwrap().join("\n  ");
    if !samples_text.is_empty() {
        println!("soak: first problems:\n  {samples_text}");
    }

    let status = proxy.terminate();
    println!("soak: proxy exit after SIGTERM: {status:?}");
    let log = std::fs::read_to_string(&proxy.log).unwrap_or_default();
    let noisy: Vec<&str> = log.lines().filter(|l| l.contains("\"level\":\"ERROR\"")).collect();
    let warnings = log.lines().filter(|l| l.contains("\"level\":\"WARN\"")).count();
    println!("soak: proxy log: {} ERROR, {warnings} WARN lines", noisy.len());
    for l in log.lines().filter(|l| l.contains("\"level\":\"")).take(10) {
        println!("  {l}");
    }
    let _ = std::fs::remove_file(&proxy.log);
    let _ = std::io::stdout().flush();

    assert_eq!(stats.io_errors.load(Ordering::Relaxed), 0, "connection failures or timeouts");
    assert_eq!(stats.error_replies.load(Ordering::Relaxed), 0, "error replies");
    assert_eq!(stats.mismatches.load(Ordering::Relaxed), 0, "wrong replies");
    assert!(requests > 0, "no traffic");
    assert_eq!(connected, clients as f64, "the proxy counted {connected} of {clients} clients");
    assert!(drained, "nearcache_client_connections stayed at {left_connected} after every client left");
    assert!(m("nearcache_cache_bytes") <= CACHE_MAX_BYTES as f64, "cache above cache.max_bytes");
    assert!(
        m("nearcache_cache_evictions_total{reason=\"size\"}") > 0.0,
        "no size evictions: the cold key space no longer overflows the cache"
    );
    assert_eq!(sum("nearcache_upstream_errors_total"), 0.0, "upstream errors");
    assert!(noisy.is_empty(), "the proxy logged errors: {noisy:?}");
    assert!(status.is_some_and(|s| s.success()), "the proxy did not exit cleanly on SIGTERM: {status:?}");
    // Memory. The measured minute starts in the steady state (see the
    // warm-up): flat means within 5% + 4 MiB of allocator noise. A leak of
    // 5 bytes per request (about 4 million requests a minute here) would
    // exceed it.
    let bound = rss_start + rss_start / 20 + 4 * 1024;
    assert!(
        rss_end <= bound,
        "RSS grew from {:.1} MiB to {:.1} MiB (bound {:.1} MiB)",
        mib(rss_start),
        mib(rss_end),
        mib(bound)
    );
    assert!(fds_end <= fds_start + 64, "file descriptors grew from {fds_start} to {fds_end}");
}
