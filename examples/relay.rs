//! A TCP relay that adds network latency on loopback, for machines whose
//! kernel has no netem: `scripts/bench-remote.sh` puts one between nearcache
//! and Redis, and one between redis-benchmark and Redis, to measure the proxy
//! where it is meant to run, with Redis across a network.
//!
//! ```sh
//! cargo run --release --example relay -- --listen 127.0.0.1:7001 --to 127.0.0.1:7000 --rtt-ms 0.5
//! ```
//!
//! Every accepted connection gets its own connection to `--to`, and bytes are
//! forwarded both ways, each direction delayed by half of `--rtt-ms`. The
//! delay does not limit throughput: a reader task timestamps each chunk it
//! reads and queues it; the writer sends the chunk once its read time plus
//! the delay has passed, while later chunks keep arriving behind it, so
//! pipelined requests stay pipelined (a link with latency, not a slow link).
//!
//! A client's `connect` completes at once (the kernel accepts on loopback),
//! where across a network it takes a round trip: what the client sends is
//! held until that round trip would have ended, so a client that opens a
//! connection to send a request pays for the TCP handshake as it would.
//!
//! Delays are timed by one dedicated thread, not by tokio's timer: tokio
//! rounds every deadline up to the next whole millisecond, which would turn
//! a 0.5 ms RTT into 2 ms or more. That thread sleeps until the earliest
//! deadline with the process' timer slack lowered to 1 ns (Linux
//! `/proc/self/timerslack_ns`, best effort). A wake-up still lands late, by
//! the kernel's timer latency and the hand-over to the relaying task (tens
//! of µs per direction in a small VM), so the clock learns that lateness and
//! wakes that much earlier: it tracks its 10th percentile, so 9 in 10 chunks
//! leave at or after their time. What remains is the relay's own loopback
//! hop each way: `scripts/bench-remote.sh` prints the RTT measured through
//! it.
//!
//! Both addresses must be loopback: this is a benchmarking tool, not a proxy
//! to expose.

use bytes::{Bytes, BytesMut};
use clap::Parser;
use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::error::Error;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{self as std_mpsc, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// Bytes asked for per read.
const READ_SIZE: usize = 64 * 1024;
/// Chunks in flight per direction before the reader waits: far more than a
/// loopback link fills in one delay, so only a stuck peer ever blocks.
const CHUNKS_IN_FLIGHT: usize = 4096;
/// How much earlier the clock aims after a wake-up that landed early, and
/// how much later after one that landed late: 9 to 1, so it settles where
/// one wake-up in ten is early.
const EARLY_STEP_NS: u64 = 9_000;
const LATE_STEP_NS: u64 = 1_000;

#[derive(Parser)]
#[command(about = "Loopback TCP relay adding a fixed round-trip time (RTT/2 each way)")]
struct Args {
    /// Address to accept connections on (loopback only).
    #[arg(long)]
    listen: SocketAddr,
    /// Address every connection is relayed to (loopback only).
    #[arg(long)]
    to: SocketAddr,
    /// Round-trip time to add, in milliseconds; each direction gets half.
    #[arg(long, default_value_t = 0.5)]
    rtt_ms: f64,
}

/// A chunk read from one side, with when it was read.
type Chunk = (Instant, Bytes);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let args = Args::parse();
    if !args.listen.ip().is_loopback() || !args.to.ip().is_loopback() {
        return Err("--listen and --to must be loopback addresses".into());
    }
    let delay =
        Duration::try_from_secs_f64(args.rtt_ms / 2000.0).map_err(|e| format!("--rtt-ms {}: {e}", args.rtt_ms))?;
    let clock = Clock::start(delay)?;
    let listener = TcpListener::bind(args.listen).await?;
    eprintln!("relay: {} -> {} with {} ms RTT", args.listen, args.to, args.rtt_ms);
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                tokio::spawn(serve(client, args.to, delay, clock.clone()));
            }
            Err(e) => {
                eprintln!("relay: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Relays one client connection until both directions are closed.
async fn serve(client: TcpStream, to: SocketAddr, delay: Duration, clock: Clock) {
    let accepted = Instant::now();
    let server = match TcpStream::connect(to).await {
        Ok(server) => server,
        Err(e) => return eprintln!("relay: cannot reach {to}: {e}"),
    };
    // Nagle would add its own delays to small requests; both sides are
    // latency-sensitive protocol traffic.
    if let Err(e) = client.set_nodelay(true).and_then(|()| server.set_nodelay(true)) {
        return eprintln!("relay: TCP_NODELAY: {e}");
    }
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // A failed direction (a peer reset, typically when a benchmark exits)
    // just ends: there is no one to report it to.
    let _ = tokio::join!(
        relay_direction(client_read, server_write, accepted + 2 * delay, delay, clock.clone()),
        relay_direction(server_read, client_write, accepted, delay, clock),
    );
}

/// Forwards `from` to `to`, every chunk delayed by `delay` from when it was
/// read or from `sendable`, whichever is later; at end of input, what is
/// queued is still delivered, then `to` is shut down.
async fn relay_direction(
    from: OwnedReadHalf,
    to: OwnedWriteHalf,
    sendable: Instant,
    delay: Duration,
    clock: Clock,
) -> io::Result<()> {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let (read, write) = tokio::join!(read_chunks(from, sender, sendable), write_chunks(receiver, to, delay, clock));
    read.and(write)
}

/// Reads chunks as they come, stamped with their arrival time (or
/// `sendable` if later: the connection's handshake would not be over).
async fn read_chunks(mut from: OwnedReadHalf, chunks: mpsc::Sender<Chunk>, sendable: Instant) -> io::Result<()> {
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        buf.reserve(READ_SIZE);
        if from.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        let read_at = Instant::now().max(sendable);
        if chunks.send((read_at, buf.split().freeze())).await.is_err() {
            return Ok(()); // the writer failed; it reports why
        }
    }
}

/// Writes each chunk once `delay` has passed since it was read.
async fn write_chunks(
    mut chunks: mpsc::Receiver<Chunk>,
    mut to: OwnedWriteHalf,
    delay: Duration,
    clock: Clock,
) -> io::Result<()> {
    while let Some((read_at, chunk)) = chunks.recv().await {
        clock.sleep_until(read_at + delay).await;
        to.write_all(&chunk).await?;
    }
    to.shutdown().await
}

/// Wakes tasks at precise instants, from a dedicated thread.
#[derive(Clone)]
struct Clock {
    alarms: std_mpsc::Sender<Alarm>,
    /// How much earlier than asked to wake up, learnt from past wake-ups.
    lead_ns: Arc<AtomicU64>,
    /// At most half the delay: every chunk still waits at least the rest.
    max_lead_ns: u64,
}

/// A task waiting for an instant.
struct Alarm {
    at: Instant,
    wake: oneshot::Sender<()>,
}

impl Clock {
    fn start(delay: Duration) -> io::Result<Clock> {
        // Threads inherit the slack of the thread that creates them.
        let _ = std::fs::write("/proc/self/timerslack_ns", "1");
        let (alarms, requests) = std_mpsc::channel();
        std::thread::Builder::new().name("relay-clock".into()).spawn(move || run_clock(&requests))?;
        let max_lead_ns = u64::try_from(delay.as_nanos() / 2).unwrap_or(u64::MAX);
        Ok(Clock { alarms, lead_ns: Arc::new(AtomicU64::new(0)), max_lead_ns })
    }

    /// Returns at `at`, give or take the learnt lateness.
    async fn sleep_until(&self, at: Instant) {
        let lead = Duration::from_nanos(self.lead_ns.load(Relaxed));
        let wake_at = at.checked_sub(lead).unwrap_or(at);
        if Instant::now() >= wake_at {
            return;
        }
        let (wake, woken) = oneshot::channel();
        if self.alarms.send(Alarm { at: wake_at, wake }).is_err() {
            // The clock thread is gone (it never exits while a Clock lives):
            // fall back to tokio's coarser timer rather than not waiting.
            return tokio::time::sleep_until(at.into()).await;
        }
        let _ = woken.await;
        self.learn(Instant::now() < at);
    }

    /// Moves the lead towards the 10th percentile of the lateness.
    fn learn(&self, early: bool) {
        let lead = self.lead_ns.load(Relaxed);
        let lead = if early { lead.saturating_sub(EARLY_STEP_NS) } else { lead + LATE_STEP_NS };
        self.lead_ns.store(lead.min(self.max_lead_ns), Relaxed);
    }
}

/// The clock thread: collects alarms and fires each when its instant comes.
fn run_clock(requests: &std_mpsc::Receiver<Alarm>) {
    let mut alarms = BinaryHeap::new();
    loop {
        let request = match alarms.peek() {
            Some(Alarm { at, .. }) => requests.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => requests.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        match request {
            Ok(alarm) => alarms.push(alarm),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        fire_due(&mut alarms);
    }
}

/// Wakes every alarm whose instant has passed.
fn fire_due(alarms: &mut BinaryHeap<Alarm>) {
    let now = Instant::now();
    while alarms.peek().is_some_and(|alarm| alarm.at <= now) {
        if let Some(alarm) = alarms.pop() {
            let _ = alarm.wake.send(()); // a dropped waiter no longer cares
        }
    }
}

// `BinaryHeap` is a max-heap: the earliest instant compares greatest.
impl Ord for Alarm {
    fn cmp(&self, other: &Self) -> Ordering {
        other.at.cmp(&self.at)
    }
}

impl PartialOrd for Alarm {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Alarm {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
    }
}

impl Eq for Alarm {}
