//! Fault injection under load, through nearcache: what clients see while
//! Redis misbehaves, and whether anything acknowledged is lost or applied
//! twice.
//!
//! `scripts/faults.sh` starts a persistent Redis (`appendfsync always`, so a
//! SIGKILL keeps every acknowledged write) and the proxy, then runs this.
//!
//! Eight clients (`--clients`) loop through the proxy on raw RESP2
//! connections (a 10 s deadline per request; a connection that fails or
//! times out is dropped and a new one opened), each doing in turn:
//!
//! - `GET hot:N` (N = 0..9, preloaded in Redis as `value-N`, cached by the
//!   proxy): a reply other than `value-N` or an error is wrong;
//! - `INCR ctr:<id>` and `LPUSH list:<id> …`: the client knows the value that
//!   must come back, the last acknowledged one + 1, plus at most the number
//!   of earlier requests that failed and were never seen applied (an error
//!   means "maybe applied", possibly later: a journaled write replayed after
//!   recovery). Anything else, e.g. a reset to 1, is wrong;
//! - `MULTI; DECRBY acct:<id>:a 1; INCRBY acct:<id>:b 1; EXEC`, pipelined:
//!   EXEC must answer two integers summing to what they summed to before (0),
//!   an error or nil; a queued command answered with an integer (it ran
//!   outside the transaction) or any other EXEC reply is a split transaction.
//!
//! After a warm-up, these faults are applied one at a time, directly to
//! Redis, each with ~3 s of load around it and ~2 s of recovery:
//! (a) `CLIENT KILL TYPE normal`; (b) `CLIENT KILL ID` of the proxy's
//! tracking connection; (c) the same for one pool connection; (d) `CONFIG
//! SET timeout 1` while the clients idle 3 s, then load, then `timeout 0`;
//! (e) `CLIENT PAUSE 3000 ALL`; (f) SIGSTOP for 3 s, then SIGCONT; (g) SIGKILL,
//! and 1 s later a restart on the same port and directory (`--restart-cmd`).
//!
//! Per phase it prints requests, errors, wrong replies (the first three
//! below), the longest wait of a request sent during the phase, and how long
//! after the fault's 1 s mark (for d: after the clients resume) the first
//! INCR sent from then on was acknowledged. For the stall faults (e, f) the
//! target is 500 ms (`breaker.stall_after`).
//!
//! At the end, once the proxy reports its failover journal replayed (admin
//! `/ready`: mode normal, no journal entries), Redis is read directly: per
//! client, acknowledged increments and list pushes against the values there
//! (lost: below the highest acknowledged; duplicated: above acknowledged +
//! maybe-applied), and the transfer sums (a + b must be 0). It exits 0
//! whatever it measured (1 only when it cannot set up); the last line is
//! `faults: wrong=N wrong_in_outage=N lost=N duplicated=N`: `wrong` counts
//! the phases where Redis is reachable (warm-up, a–d; a nonzero transfer
//! sum counts there too), the target being 0; `wrong_in_outage` the
//! phases e–g, where failover answers with its documented limits (an
//! uncached counter starts from 0 locally; a split transaction would still
//! be a bug).

use clap::Parser;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Hot keys `hot:0`..`hot:9`.
const HOT_KEYS: u64 = 10;
/// A request (or a pipelined transaction) not answered by then has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const WARMUP: Duration = Duration::from_secs(2);
/// Load from the start of each fault…
const FAULT_LOAD: Duration = Duration::from_secs(3);
/// …then this long to recover before the next one.
const RECOVERY: Duration = Duration::from_secs(2);
/// Writes sent this long into a fault time the proxy's recovery of writes.
const PROBE_AFTER: Duration = Duration::from_secs(1);
/// What the stall faults (e, f) aim at for that write.
const STALL_TARGET_MS: u128 = 500;
/// How long the stall and idle faults last.
const STALL: Duration = Duration::from_secs(3);
/// How long the proxy may take to replay its failover journal at the end.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);
/// Wrong replies printed per phase.
const EXAMPLES: usize = 3;
/// Most common error texts printed per phase.
const TOP_ERRORS: usize = 2;

/// Fault injection under load through nearcache (see the module docs).
#[derive(Parser, Debug)]
struct Args {
    /// The proxy's client address (host:port).
    #[arg(long)]
    proxy: String,
    /// Redis' address, for preloading, faults and the final reads.
    #[arg(long)]
    redis: String,
    /// The proxy's admin HTTP address, polled for /ready at the end.
    #[arg(long)]
    admin: String,
    /// Shell command (`sh -c`) starting Redis again on the same port and
    /// directory; it may return before Redis answers (it is waited for).
    #[arg(long)]
    restart_cmd: String,
    /// The faults to apply, by letter, in this order.
    #[arg(long, default_value = "abcdefg")]
    faults: String,
    /// Client tasks.
    #[arg(long, default_value_t = 8)]
    clients: usize,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let faults: Vec<Fault> = match args.faults.chars().map(Fault::from_letter).collect() {
        Some(f) => f,
        None => return fail(&format!("--faults {:?}: letters a to g only", args.faults)),
    };
    if let Err(e) = preload(&args.redis, args.clients).await {
        return fail(&format!("cannot preload Redis at {}: {e}", args.redis));
    }
    let shared = Arc::new(Shared::new(args.proxy.clone()));
    shared.begin("warmup", None, false, false);
    let clients: Vec<_> = (0..args.clients).map(|id| tokio::spawn(Client::new(id).run(shared.clone()))).collect();
    tokio::time::sleep(WARMUP).await;
    for fault in faults {
        run_fault(fault, &args, &shared).await;
    }
    shared.stop.store(true, Ordering::Relaxed);
    let clients = join_clients(clients).await;
    shared.report();
    println!("{}", wait_replayed(&args.admin).await);
    let (wrong_end, lost, duplicated) = match final_check(&args.redis, &clients).await {
        Ok(totals) => totals,
        Err(e) => {
            println!("cannot read Redis at the end: {e}");
            (0, 0, 0)
        }
    };
    let (reachable, outage) = shared.wrong_totals();
    println!("faults: wrong={} wrong_in_outage={outage} lost={lost} duplicated={duplicated}", reachable + wrong_end);
    std::process::ExitCode::SUCCESS
}

fn fail(message: &str) -> std::process::ExitCode {
    eprintln!("faults: {message}");
    std::process::ExitCode::FAILURE
}

// ---------------------------------------------------------------- RESP ----

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reply::Status(s) => write!(f, "+{s}"),
            Reply::Error(e) => write!(f, "-{e}"),
            Reply::Int(n) => write!(f, ":{n}"),
            Reply::Bulk(b) => write!(f, "{:?}", String::from_utf8_lossy(&b[..b.len().min(60)])),
            Reply::Nil => write!(f, "nil"),
            Reply::Array(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().take(4).enumerate() {
                    write!(f, "{}{item}", if i == 0 { "" } else { ", " })?;
                }
                write!(f, "{}]", if items.len() > 4 { ", …" } else { "" })
            }
        }
    }
}

/// One reply from the front of `buf` and the bytes it took, or None when
/// more bytes are needed.
fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, String> {
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = std::str::from_utf8(&buf[1..end]).map_err(|_| "reply header is not UTF-8".to_string())?;
    let next = end + 2;
    let reply = match buf[0] {
        b'+' => Reply::Status(line.to_string()),
        b'-' => Reply::Error(line.to_string()),
        b':' => Reply::Int(number(line)?),
        b'$' => return Ok(parse_bulk(buf, next, number(line)?)),
        b'*' => return parse_array(buf, next, number(line)?),
        other => return Err(format!("unexpected reply type byte {:?}", other as char)),
    };
    Ok(Some((reply, next)))
}

fn parse_bulk(buf: &[u8], start: usize, len: i64) -> Option<(Reply, usize)> {
    let Ok(len) = usize::try_from(len) else {
        return Some((Reply::Nil, start));
    };
    let end = start + len;
    (buf.len() >= end + 2).then(|| (Reply::Bulk(buf[start..end].to_vec()), end + 2))
}

fn parse_array(buf: &[u8], mut pos: usize, len: i64) -> Result<Option<(Reply, usize)>, String> {
    let Ok(len) = usize::try_from(len) else {
        return Ok(Some((Reply::Nil, pos)));
    };
    let mut items = Vec::with_capacity(len.min(1024));
    for _ in 0..len {
        let Some((item, used)) = parse(&buf[pos..])? else {
            return Ok(None);
        };
        items.push(item);
        pos += used;
    }
    Ok(Some((Reply::Array(items), pos)))
}

fn number(text: &str) -> Result<i64, String> {
    text.parse().map_err(|_| format!("bad number in reply header: {text:?}"))
}

/// Commands as RESP arrays of bulk strings, back to back.
fn encode(commands: &[Vec<String>]) -> Vec<u8> {
    let mut out = Vec::new();
    for command in commands {
        out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
        for arg in command {
            out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
        }
    }
    out
}

fn command(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// The replies to a pipeline, in order, up to the first transport failure.
struct Exchange {
    replies: Vec<Reply>,
    /// Why the rest did not come (timeout, closed, unparsable): the
    /// connection is then unusable.
    failure: Option<String>,
}

impl Exchange {
    /// The first error reply, else the transport failure.
    fn error_text(&self) -> String {
        let reply = self.replies.iter().find(|r| matches!(r, Reply::Error(_)));
        match (reply, &self.failure) {
            (Some(reply), _) => reply.to_string(),
            (None, Some(failure)) => failure.clone(),
            (None, None) => "EXEC answered nil".to_string(),
        }
    }

    /// The only reply, an error reply turned into `Err`.
    fn single(self) -> Result<Reply, String> {
        match (self.replies.into_iter().next(), self.failure) {
            (Some(Reply::Error(e)), _) => Err(format!("-{e}")),
            (Some(reply), _) => Ok(reply),
            (None, failure) => Err(failure.unwrap_or_else(|| "no reply".into())),
        }
    }
}

/// A RESP connection.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: &str) -> Result<Conn, String> {
        let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(format!("connect {addr}: {e}")),
            Err(_) => return Err(format!("connect {addr}: timed out")),
        };
        let _ = stream.set_nodelay(true);
        Ok(Conn { stream, buf: Vec::with_capacity(4096) })
    }

    /// Sends `commands` pipelined and reads a reply to each, all within
    /// [`REQUEST_TIMEOUT`].
    async fn exchange(&mut self, commands: &[Vec<String>]) -> Exchange {
        let deadline = tokio::time::Instant::now() + REQUEST_TIMEOUT;
        let mut ex = Exchange { replies: Vec::with_capacity(commands.len()), failure: None };
        match tokio::time::timeout_at(deadline, self.stream.write_all(&encode(commands))).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => ex.failure = Some(format!("write: {e}")),
            Err(_) => ex.failure = Some("write timed out".into()),
        }
        while ex.failure.is_none() && ex.replies.len() < commands.len() {
            match tokio::time::timeout_at(deadline, self.read_reply()).await {
                Ok(Ok(reply)) => ex.replies.push(reply),
                Ok(Err(e)) => ex.failure = Some(e),
                Err(_) => ex.failure = Some(format!("no reply in {REQUEST_TIMEOUT:?}")),
            }
        }
        ex
    }

    async fn read_reply(&mut self) -> Result<Reply, String> {
        loop {
            if let Some((reply, used)) = parse(&self.buf)? {
                self.buf.drain(..used);
                return Ok(reply);
            }
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) => return Err("connection closed".into()),
                Ok(_) => {}
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// One command; an error reply is `Err`.
    async fn call(&mut self, args: &[&str]) -> Result<Reply, String> {
        self.exchange(&[command(args)]).await.single()
    }
}

/// One command on a fresh direct connection (Redis may have closed any
/// older one: these faults kill connections).
async fn direct(addr: &str, args: &[&str]) -> Result<Reply, String> {
    Conn::connect(addr).await?.call(args).await
}

// ------------------------------------------------------------- phases ----

/// What one phase (the warm-up, or a fault and its recovery) measured, by
/// the send time of each request.
struct Phase {
    name: String,
    /// INCRs sent from then on time the recovery of writes (None: not yet
    /// known, or not measured).
    probe_at: Option<Instant>,
    stall: bool,
    /// Redis is unreachable during it (stopped, paused, killed): failover
    /// answers, with its documented limits (an uncached counter starts
    /// from 0 locally), so wrong replies are counted apart.
    outage: bool,
    requests: u64,
    errors: u64,
    wrong: u64,
    max_wait: Duration,
    examples: Vec<String>,
    /// How often each error text (cut short) was seen.
    error_texts: HashMap<String, u64>,
    /// When the first INCR sent at or after `probe_at` was acknowledged.
    first_ack: Option<Instant>,
}

/// One finished request.
struct Sample {
    client: usize,
    phase: usize,
    op: Op,
    sent: Instant,
    done: Instant,
    outcome: Outcome,
}

/// State shared by the clients and the fault driver.
struct Shared {
    proxy: String,
    stop: AtomicBool,
    /// While set, clients send nothing (fault d).
    idle: AtomicBool,
    current: AtomicUsize,
    phases: Mutex<Vec<Phase>>,
}

impl Shared {
    fn new(proxy: String) -> Shared {
        Shared {
            proxy,
            stop: AtomicBool::new(false),
            idle: AtomicBool::new(false),
            current: AtomicUsize::new(0),
            phases: Mutex::new(Vec::new()),
        }
    }

    fn phases(&self) -> MutexGuard<'_, Vec<Phase>> {
        self.phases.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a phase; requests sent from now on count in it.
    fn begin(&self, name: &str, probe_after: Option<Duration>, stall: bool, outage: bool) -> Instant {
        let start = Instant::now();
        let mut phases = self.phases();
        phases.push(Phase {
            name: name.to_string(),
            probe_at: probe_after.map(|d| start + d),
            stall,
            outage,
            requests: 0,
            errors: 0,
            wrong: 0,
            max_wait: Duration::ZERO,
            examples: Vec::new(),
            error_texts: HashMap::new(),
            first_ack: None,
        });
        self.current.store(phases.len() - 1, Ordering::Relaxed);
        start
    }

    /// INCRs sent from now on time the current phase's recovery of writes.
    fn probe_now(&self) {
        let current = self.current.load(Ordering::Relaxed);
        if let Some(phase) = self.phases().get_mut(current) {
            phase.probe_at = Some(Instant::now());
        }
    }

    fn record(&self, sample: Sample) {
        let mut phases = self.phases();
        let Some(phase) = phases.get_mut(sample.phase) else {
            return;
        };
        phase.requests += 1;
        phase.max_wait = phase.max_wait.max(sample.done - sample.sent);
        match sample.outcome {
            Outcome::Ok => {
                let probed = phase.probe_at.is_some_and(|t| sample.sent >= t);
                if sample.op == Op::Incr && probed && phase.first_ack.is_none_or(|t| sample.done < t) {
                    phase.first_ack = Some(sample.done);
                }
            }
            Outcome::Error(text) => {
                phase.errors += 1;
                let short: String = text.chars().take(90).collect();
                *phase.error_texts.entry(short).or_default() += 1;
            }
            Outcome::Wrong(text) => {
                phase.wrong += 1;
                if phase.examples.len() < EXAMPLES {
                    phase.examples.push(format!("client {}: {text}", sample.client));
                }
            }
        }
    }

    /// Wrong replies while Redis was reachable, and during outages.
    fn wrong_totals(&self) -> (u64, u64) {
        let phases = self.phases();
        let sum = |outage: bool| phases.iter().filter(|p| p.outage == outage).map(|p| p.wrong).sum();
        (sum(false), sum(true))
    }

    /// One line per phase, wrong replies' examples below it.
    fn report(&self) {
        println!(
            "{:<20} {:>9} {:>7} {:>6} {:>12} {:>20}",
            "phase", "requests", "errors", "wrong", "max_wait_ms", "write_after_1s_ms"
        );
        for phase in self.phases().iter() {
            println!(
                "{:<20} {:>9} {:>7} {:>6} {:>12} {:>20}",
                phase.name,
                phase.requests,
                phase.errors,
                phase.wrong,
                phase.max_wait.as_millis(),
                write_recovery(phase)
            );
            for example in &phase.examples {
                println!("    wrong: {example}");
            }
            let mut errors: Vec<_> = phase.error_texts.iter().collect();
            errors.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            for (text, count) in errors.into_iter().take(TOP_ERRORS) {
                println!("    error x{count}: {text}");
            }
        }
    }
}

/// Milliseconds from the phase's probe mark to the first acknowledged INCR
/// sent after it, with the target for stall faults.
fn write_recovery(phase: &Phase) -> String {
    let ms = match (phase.probe_at, phase.first_ack) {
        (Some(at), Some(ack)) => (ack - at).as_millis().to_string(),
        (Some(_), None) => "none".to_string(),
        (None, _) => "-".to_string(),
    };
    if phase.stall {
        let verdict = match phase.probe_at.zip(phase.first_ack) {
            Some((at, ack)) if (ack - at).as_millis() <= STALL_TARGET_MS => "ok",
            _ => "MISSED",
        };
        format!("{ms} (<={STALL_TARGET_MS} {verdict})")
    } else {
        ms
    }
}

// ------------------------------------------------------------- clients ----

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Get,
    Incr,
    Lpush,
    Transfer,
}

const OPS: [Op; 4] = [Op::Get, Op::Incr, Op::Lpush, Op::Transfer];

enum Outcome {
    Ok,
    /// An error reply or a failed connection (its text): the request may
    /// or may not have taken effect.
    Error(String),
    Wrong(String),
}

/// What a client knows of one of its ever-growing values (a counter, a list
/// length).
#[derive(Default, Clone)]
struct Tally {
    /// Acknowledged requests.
    acked: u64,
    /// Requests that failed (maybe applied).
    ambiguous: u64,
    /// Failed requests not (yet) seen applied in a later reply.
    unresolved: u64,
    /// The last acknowledged value.
    last: i64,
    /// The highest acknowledged value: Redis held at least this.
    highest: i64,
}

impl Tally {
    /// An acknowledged reply `value`: it must be the last one + 1, plus at
    /// most the failed requests not yet seen applied.
    fn acknowledged(&mut self, value: i64) -> Result<(), String> {
        self.acked += 1;
        let low = self.last + 1;
        let high = low + self.unresolved as i64;
        let verdict = if value < low || value > high {
            let expected = if low == high { low.to_string() } else { format!("{low}..={high}") };
            Err(format!("expected {expected}, got {value}"))
        } else {
            self.unresolved -= (value - low) as u64;
            Ok(())
        };
        if value > high {
            self.unresolved = 0;
        }
        self.last = value;
        self.highest = self.highest.max(value);
        verdict
    }

    fn failed(&mut self) {
        self.ambiguous += 1;
        self.unresolved += 1;
    }
}

/// One load-generating client with its own keys.
struct Client {
    id: usize,
    conn: Option<Conn>,
    step: u64,
    counter: Tally,
    list: Tally,
    /// What a + b summed to in the last EXEC reply.
    transfer_sum: i64,
}

impl Client {
    fn new(id: usize) -> Client {
        Client { id, conn: None, step: 0, counter: Tally::default(), list: Tally::default(), transfer_sum: 0 }
    }

    /// Loops until told to stop; returns itself for the final check.
    async fn run(mut self, shared: Arc<Shared>) -> Client {
        while !shared.stop.load(Ordering::Relaxed) {
            if shared.idle.load(Ordering::Relaxed) {
                // Connections to the proxy stay open, idle.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
            let op = OPS[(self.step % OPS.len() as u64) as usize];
            let phase = shared.current.load(Ordering::Relaxed);
            let sent = Instant::now();
            let outcome = self.perform(op, &shared.proxy).await;
            shared.record(Sample { client: self.id, phase, op, sent, done: Instant::now(), outcome });
            self.step += 1;
        }
        self
    }

    async fn perform(&mut self, op: Op, proxy: &str) -> Outcome {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => match Conn::connect(proxy).await {
                Ok(conn) => conn,
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    return self.judge(op, Exchange { replies: Vec::new(), failure: Some("connect".into()) });
                }
            },
        };
        let exchange = conn.exchange(&self.commands(op)).await;
        if exchange.failure.is_none() {
            self.conn = Some(conn);
        }
        self.judge(op, exchange)
    }

    fn hot_key(&self) -> u64 {
        (self.step / OPS.len() as u64) % HOT_KEYS
    }

    fn commands(&self, op: Op) -> Vec<Vec<String>> {
        let id = self.id;
        match op {
            Op::Get => vec![command(&["GET", &format!("hot:{}", self.hot_key())])],
            Op::Incr => vec![command(&["INCR", &format!("ctr:{id}")])],
            Op::Lpush => vec![command(&["LPUSH", &format!("list:{id}"), &format!("c{id}-{}", self.step)])],
            Op::Transfer => vec![
                command(&["MULTI"]),
                command(&["DECRBY", &format!("acct:{id}:a"), "1"]),
                command(&["INCRBY", &format!("acct:{id}:b"), "1"]),
                command(&["EXEC"]),
            ],
        }
    }

    fn judge(&mut self, op: Op, exchange: Exchange) -> Outcome {
        let first = exchange.replies.first();
        match op {
            Op::Get => judge_get(self.hot_key(), first, &exchange),
            Op::Incr => judge_growth(&mut self.counter, "INCR", first, &exchange),
            Op::Lpush => judge_growth(&mut self.list, "LPUSH", first, &exchange),
            Op::Transfer => self.judge_transfer(&exchange),
        }
    }

    fn judge_transfer(&mut self, exchange: &Exchange) -> Outcome {
        let replies = exchange.replies.as_slice();
        let shown = || replies.iter().map(|r| r.to_string()).collect::<Vec<_>>().join(" ");
        let multi_ok = matches!(replies.first(), Some(Reply::Status(s)) if s == "OK");
        let ran_alone = replies.iter().skip(1).take(2).any(|r| matches!(r, Reply::Int(_)));
        if ran_alone {
            return Outcome::Wrong(format!("split transfer, a queued command ran alone: {}", shown()));
        }
        match replies.get(3) {
            None | Some(Reply::Error(_)) | Some(Reply::Nil) => Outcome::Error(exchange.error_text()),
            Some(Reply::Array(items)) if multi_ok => match items.as_slice() {
                [Reply::Int(a), Reply::Int(b)] => self.check_sum(a + b, &shown()),
                _ => Outcome::Wrong(format!("transfer EXEC answered {}", shown())),
            },
            Some(_) => Outcome::Wrong(format!("transfer answered {}", shown())),
        }
    }

    fn check_sum(&mut self, sum: i64, shown: &str) -> Outcome {
        if sum == self.transfer_sum {
            return Outcome::Ok;
        }
        let before = std::mem::replace(&mut self.transfer_sum, sum);
        Outcome::Wrong(format!("split transfer: a + b went from {before} to {sum} ({shown})"))
    }
}

fn judge_get(key: u64, reply: Option<&Reply>, exchange: &Exchange) -> Outcome {
    let expected = format!("value-{key}");
    match reply {
        None | Some(Reply::Error(_)) => Outcome::Error(exchange.error_text()),
        Some(Reply::Bulk(b)) if *b == expected.as_bytes() => Outcome::Ok,
        Some(other) => Outcome::Wrong(format!("GET hot:{key} answered {other}, expected {expected:?}")),
    }
}

/// INCR or LPUSH: the reply is the new counter or list length.
fn judge_growth(tally: &mut Tally, name: &str, reply: Option<&Reply>, exchange: &Exchange) -> Outcome {
    match reply {
        None | Some(Reply::Error(_)) => {
            tally.failed();
            Outcome::Error(exchange.error_text())
        }
        Some(Reply::Int(value)) => match tally.acknowledged(*value) {
            Ok(()) => Outcome::Ok,
            Err(e) => Outcome::Wrong(format!("{name} {e}")),
        },
        Some(other) => {
            tally.failed();
            Outcome::Wrong(format!("{name} answered {other}"))
        }
    }
}

/// Waits for every client (each request has a deadline, so they end).
async fn join_clients(handles: Vec<tokio::task::JoinHandle<Client>>) -> Vec<Client> {
    let mut clients = Vec::new();
    for handle in handles {
        match tokio::time::timeout(REQUEST_TIMEOUT + CONNECT_TIMEOUT * 2, handle).await {
            Ok(Ok(client)) => clients.push(client),
            Ok(Err(e)) => println!("a client task failed: {e}"),
            Err(_) => println!("a client did not stop in time; its keys are not checked"),
        }
    }
    clients
}

// -------------------------------------------------------------- faults ----

#[derive(Debug, Clone, Copy)]
enum Fault {
    KillNormal,
    KillTracking,
    KillPool,
    IdleTimeout,
    ClientPause,
    Stop,
    Restart,
}

impl Fault {
    fn from_letter(letter: char) -> Option<Fault> {
        Some(match letter {
            'a' => Fault::KillNormal,
            'b' => Fault::KillTracking,
            'c' => Fault::KillPool,
            'd' => Fault::IdleTimeout,
            'e' => Fault::ClientPause,
            'f' => Fault::Stop,
            'g' => Fault::Restart,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Fault::KillNormal => "a kill-normal",
            Fault::KillTracking => "b kill-tracking",
            Fault::KillPool => "c kill-pool-conn",
            Fault::IdleTimeout => "d idle-timeout-1s",
            Fault::ClientPause => "e client-pause-3s",
            Fault::Stop => "f sigstop-3s",
            Fault::Restart => "g sigkill-restart",
        }
    }
}

/// One phase: the fault, load until [`FAULT_LOAD`] after its start, then
/// [`RECOVERY`].
async fn run_fault(fault: Fault, args: &Args, shared: &Shared) {
    let stall = matches!(fault, Fault::ClientPause | Fault::Stop);
    // For d, writes are timed from when the clients resume.
    let probe = (!matches!(fault, Fault::IdleTimeout)).then_some(PROBE_AFTER);
    let outage = matches!(fault, Fault::ClientPause | Fault::Stop | Fault::Restart);
    let start = shared.begin(fault.name(), probe, stall, outage);
    let note = apply(fault, args, shared).await.unwrap_or_else(|e| format!("NOT APPLIED: {e}"));
    println!("{}: {note}", fault.name());
    tokio::time::sleep_until((start + FAULT_LOAD).into()).await;
    tokio::time::sleep(RECOVERY).await;
}

/// Applies the fault; says what it did.
async fn apply(fault: Fault, args: &Args, shared: &Shared) -> Result<String, String> {
    let redis = args.redis.as_str();
    match fault {
        Fault::KillNormal => match direct(redis, &["CLIENT", "KILL", "TYPE", "normal"]).await? {
            Reply::Int(n) => Ok(format!("CLIENT KILL TYPE normal killed {n} connections")),
            other => Err(format!("CLIENT KILL answered {other}")),
        },
        Fault::KillTracking => kill_matching(redis, "tracking", |c| c.flags().contains('t')).await,
        Fault::KillPool => kill_matching(redis, "pool", is_pool_connection).await,
        Fault::IdleTimeout => idle_timeout(redis, shared).await,
        Fault::ClientPause => {
            let millis = STALL.as_millis().to_string();
            direct(redis, &["CLIENT", "PAUSE", &millis, "ALL"]).await?;
            Ok(format!("CLIENT PAUSE {millis} ALL"))
        }
        Fault::Stop => {
            let pid = redis_pid(redis).await?;
            signal("-STOP", pid).await?;
            tokio::time::sleep(STALL).await;
            signal("-CONT", pid).await?;
            Ok(format!("SIGSTOP pid {pid}, SIGCONT {} ms later", STALL.as_millis()))
        }
        Fault::Restart => restart(redis, &args.restart_cmd).await,
    }
}

/// Fault d: Redis closes connections idle for 1 s while the clients send
/// nothing for 3 s; then they load it again and the timeout is reset.
async fn idle_timeout(redis: &str, shared: &Shared) -> Result<String, String> {
    direct(redis, &["CONFIG", "SET", "timeout", "1"]).await?;
    shared.idle.store(true, Ordering::Relaxed);
    tokio::time::sleep(STALL).await;
    shared.probe_now();
    shared.idle.store(false, Ordering::Relaxed);
    tokio::time::sleep(FAULT_LOAD).await;
    direct(redis, &["CONFIG", "SET", "timeout", "0"]).await?;
    Ok(format!(
        "CONFIG SET timeout 1, clients idle {} ms, load {} ms, timeout 0",
        STALL.as_millis(),
        FAULT_LOAD.as_millis()
    ))
}

/// Fault g: SIGKILL, and a restart 1 s later on the same port and data.
async fn restart(redis: &str, restart_cmd: &str) -> Result<String, String> {
    let pid = redis_pid(redis).await?;
    signal("-KILL", pid).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    run_program("sh", &["-c", restart_cmd]).await?;
    loop {
        if let Ok(new_pid) = redis_pid(redis).await {
            let ms = started.elapsed().as_millis();
            return Ok(format!("SIGKILL pid {pid}, restarted 1 s later as pid {new_pid} (answering after {ms} ms)"));
        }
        if started.elapsed() > Duration::from_secs(10) {
            return Err(format!("SIGKILL pid {pid}; Redis did not answer within 10 s of the restart"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One `CLIENT LIST` entry.
struct ClientInfo {
    line: String,
}

impl ClientInfo {
    fn field(&self, name: &str) -> &str {
        self.line.split_whitespace().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')).unwrap_or("")
    }

    fn flags(&self) -> &str {
        self.field("flags")
    }
}

/// A pool connection: not tracking, not in a transaction, last ran a
/// command the clients send outside transactions.
fn is_pool_connection(c: &ClientInfo) -> bool {
    !c.flags().contains('t')
        && !c.flags().contains('x')
        && c.field("multi") == "-1"
        && matches!(c.field("cmd"), "get" | "incr" | "lpush" | "pttl")
}

/// The proxy's connections to Redis (all but the one asking).
async fn proxy_connections(redis: &str) -> Result<Vec<ClientInfo>, String> {
    let Reply::Bulk(text) = direct(redis, &["CLIENT", "LIST"]).await? else {
        return Err("CLIENT LIST did not answer a bulk string".into());
    };
    let text = String::from_utf8_lossy(&text).into_owned();
    let all = text.lines().map(|line| ClientInfo { line: line.to_string() });
    Ok(all.filter(|c| c.field("cmd") != "client|list").collect())
}

/// Kills the first of the proxy's connections to Redis that `pick` selects
/// (for the pool, the least idle one).
async fn kill_matching(redis: &str, what: &str, pick: fn(&ClientInfo) -> bool) -> Result<String, String> {
    let mut candidates: Vec<ClientInfo> = proxy_connections(redis).await?.into_iter().filter(pick).collect();
    candidates.sort_by_key(|c| c.field("idle").parse::<u64>().unwrap_or(u64::MAX));
    let Some(chosen) = candidates.first() else {
        return Err(format!("no {what} connection in CLIENT LIST"));
    };
    let id = chosen.field("id");
    let killed = direct(redis, &["CLIENT", "KILL", "ID", id]).await?;
    Ok(format!("CLIENT KILL ID {id} ({killed}) of the {what} connection: {}", chosen.line))
}

/// The process id of the Redis answering at `redis`.
async fn redis_pid(redis: &str) -> Result<u32, String> {
    let Reply::Bulk(info) = direct(redis, &["INFO", "server"]).await? else {
        return Err("INFO did not answer a bulk string".into());
    };
    let info = String::from_utf8_lossy(&info).into_owned();
    info.lines()
        .find_map(|l| l.strip_prefix("process_id:"))
        .and_then(|pid| pid.trim().parse().ok())
        .ok_or_else(|| "no process_id in INFO server".to_string())
}

async fn signal(sig: &str, pid: u32) -> Result<(), String> {
    run_program("kill", &[sig, &pid.to_string()]).await
}

/// Runs a program to completion off the async threads.
async fn run_program(program: &str, args: &[&str]) -> Result<(), String> {
    let mut cmd = std::process::Command::new(program);
    cmd.args(args);
    let shown = format!("{program} {}", args.join(" "));
    match tokio::task::spawn_blocking(move || cmd.status()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{shown}: {status}")),
        Ok(Err(e)) => Err(format!("{shown}: {e}")),
        Err(e) => Err(format!("{shown}: {e}")),
    }
}

// ------------------------------------------------------ setup and end ----

/// A clean Redis with the hot keys.
async fn preload(redis: &str, clients: usize) -> Result<(), String> {
    let mut conn = Conn::connect(redis).await?;
    conn.call(&["FLUSHALL"]).await?;
    for key in 0..HOT_KEYS {
        conn.call(&["SET", &format!("hot:{key}"), &format!("value-{key}")]).await?;
    }
    println!("preloaded hot:0..{} in Redis; {clients} clients", HOT_KEYS - 1);
    Ok(())
}

/// Polls the proxy's /ready until its failover journal is replayed.
async fn wait_replayed(admin: &str) -> String {
    let start = Instant::now();
    let mut last = String::from("no answer");
    while start.elapsed() < DRAIN_LIMIT {
        match ready(admin).await {
            Ok(body) if body.contains("\"mode\":\"normal\"") && body.contains("\"journal_entries\":0") => {
                return format!("proxy /ready after {} ms: {}", start.elapsed().as_millis(), body.trim());
            }
            Ok(body) => last = body.trim().to_string(),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    format!("proxy NOT replayed after {} s: {last}", DRAIN_LIMIT.as_secs())
}

/// The body of `GET /ready`.
async fn ready(admin: &str) -> Result<String, String> {
    let fetch = async {
        let mut stream = TcpStream::connect(admin).await.map_err(|e| format!("connect {admin}: {e}"))?;
        let request = format!("GET /ready HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&response).into_owned();
        text.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).ok_or_else(|| "no HTTP body".to_string())
    };
    tokio::time::timeout(Duration::from_secs(2), fetch).await.unwrap_or_else(|_| Err("/ready timed out".into()))
}

/// An integer read directly from Redis (a missing key is 0).
async fn read_int(conn: &mut Conn, args: &[&str]) -> Result<i64, String> {
    match conn.call(args).await? {
        Reply::Int(n) => Ok(n),
        Reply::Nil => Ok(0),
        Reply::Bulk(b) => String::from_utf8_lossy(&b).parse().map_err(|_| format!("{args:?}: not a number")),
        other => Err(format!("{args:?} answered {other}")),
    }
}

/// Losses and duplicates of one growing value: (lost, duplicated).
fn audit(tally: &Tally, value: i64) -> (u64, u64) {
    let floor = tally.highest.max(tally.acked as i64);
    let ceiling = (tally.acked + tally.ambiguous) as i64;
    ((floor - value).max(0) as u64, (value - ceiling).max(0) as u64)
}

fn describe(tally: &Tally, value: i64) -> String {
    let (lost, dup) = audit(tally, value);
    format!("acked {:>5} maybe {:>3} redis {:>5} lost {lost} dup {dup}", tally.acked, tally.ambiguous, value)
}

/// Reads every client's keys directly: returns (unbalanced transfers,
/// lost, duplicated).
async fn final_check(redis: &str, clients: &[Client]) -> Result<(u64, u64, u64), String> {
    let mut conn = Conn::connect(redis).await?;
    let (mut unbalanced, mut lost, mut duplicated) = (0, 0, 0);
    println!("client  INCR ctr:<id>                                     | LPUSH list:<id>                                   | transfer a + b");
    for c in clients {
        let id = c.id;
        let counter = read_int(&mut conn, &["GET", &format!("ctr:{id}")]).await?;
        let len = read_int(&mut conn, &["LLEN", &format!("list:{id}")]).await?;
        let a = read_int(&mut conn, &["GET", &format!("acct:{id}:a")]).await?;
        let b = read_int(&mut conn, &["GET", &format!("acct:{id}:b")]).await?;
        for (tally, value) in [(&c.counter, counter), (&c.list, len)] {
            let (l, d) = audit(tally, value);
            lost += l;
            duplicated += d;
        }
        unbalanced += u64::from(a + b != 0);
        let balance = if a + b == 0 { "ok" } else { "UNBALANCED" };
        println!(
            "{id:>6}  {} | {} | {a} + {b} = {} {balance}",
            describe(&c.counter, counter),
            describe(&c.list, len),
            a + b
        );
    }
    println!("total: lost {lost}, duplicated {duplicated}, unbalanced transfers {unbalanced}");
    Ok((unbalanced, lost, duplicated))
}
