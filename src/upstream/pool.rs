//! The shared pool: a few long-lived upstream connections, each multiplexing
//! the stateless commands of many client sessions.
//!
//! A session appends its requests to a connection's backlog (under the
//! connection's lock, so the byte order is the order of the in-flight
//! queue) and gets a receiver for the replies. Because Redis answers in
//! order, the replies to one batch are contiguous in the stream: the
//! connection's reader task splits them off its buffer as one `Bytes` and
//! hands them back untouched.
//!
//! A flush task per connection writes the backlog. Woken by the first
//! request, it yields once before writing, so the requests every other
//! ready session adds meanwhile go out in the same write: like an event
//! loop, many clients' requests cost one upstream write (and one read for
//! Redis) instead of one each. Without pipelining this halves the proxy's
//! system calls and is what lets it keep up with twemproxy. The same path
//! serves TLS (`rediss://`), where the flush task owns the write half.
//!
//! A request that finds its TCP connection idle (nothing in flight, nothing
//! queued) has no one to share a write with: the session writes it to the
//! socket itself, without waking the flush task. A lone client's request
//! then crosses one task hop less; busy connections keep batching.
//!
//! A lost connection is not an outage (Redis' idle `timeout`, `CLIENT
//! KILL`, a restart close connections all the time): it is replaced at
//! once. Requests not yet written to it are sent again on the new one;
//! those written and unanswered fail with an error that says they may or
//! may not have been applied. Only when a new connection cannot be
//! established does the circuit open (one Redis answers with a refusal
//! does not: Redis is there), and while reconnecting fails (with
//! exponential backoff) requests fail at once with the reason.
//!
//! The reader also watches the upstream's progress: a request unanswered
//! for `request_timeout` fails its connection; requests outstanding for
//! `breaker.stall_after` while no pool connection has read anything, and
//! a PING on a fresh connection unanswered too, tell the breaker the
//! upstream is stalled. An idle connection sends a PING
//! now and then, so Redis' idle `timeout` never closes it under a request.

use super::breaker::{self, Breaker};
use super::conn::{self, Stream, TlsStream};
use super::handoff::Handoff;
use super::reconnect::Reconnect;
use super::UpstreamConfig;
use super::{UpstreamError, KEEPALIVE};
use crate::fill::Fill;
use crate::observe;
use crate::protocol::{scan, Proto};
use crate::tenancy::PoolCharge;
use arc_swap::ArcSwap;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, WriteHalf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};

/// The replies of a batch of requests, or why there are none.
pub type JobResult = Result<Bytes, UpstreamError>;

/// An upstream node's health, as its connections learn it: its circuit
/// breaker, when a pool connection last read, and the server's name and
/// version (which HELLO replies and the admin API report). One per node
/// (the router's `Node::health`), shared by everything that talks to the
/// node.
pub struct Health {
    identity: ArcSwap<Identity>,
    pub breaker: Breaker,
    progress: Progress,
    /// A stall is being confirmed ([`Health::suspect_stall`]).
    confirming: AtomicBool,
    /// When the last suspected stall was refuted, in [`Progress`]'
    /// milliseconds (the first of a run is logged at info level).
    refuted_at: AtomicU64,
}

/// The upstream server as its HELLO reply names it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Identity {
    /// `redis`, `valkey`…
    pub name: Option<String>,
    pub version: Option<String>,
}

impl Health {
    pub fn new(breaker: Breaker) -> Health {
        Health {
            identity: ArcSwap::from_pointee(Identity::default()),
            breaker,
            progress: Progress::new(),
            confirming: AtomicBool::new(false),
            refuted_at: AtomicU64::new(0),
        }
    }

    /// Requests have waited `stall_after` with nothing read: Redis is hung
    /// (SIGSTOP, `CLIENT PAUSE ALL`, one slow command: it answers nothing)
    /// or holds only these requests back (`CLIENT PAUSE WRITE` while reads
    /// flow, a long blocking write). A PING on a fresh connection tells
    /// them apart: answered (or refused) within half of `stall_after`,
    /// Redis is serving, so no failover, and progress counts from now;
    /// else the circuit opens. One confirmation at a time.
    fn suspect_stall(self: &Arc<Self>, cfg: &UpstreamConfig, silent: Duration) {
        if self.confirming.swap(true, Ordering::AcqRel) {
            return;
        }
        let (health, cfg) = (self.clone(), cfg.clone());
        tokio::spawn(async move {
            let stall_after = health.breaker.stall_after();
            let answer = crate::timer::timeout(stall_after / 2, breaker::ping(&cfg)).await;
            match answer {
                Ok(Ok(())) => health.refute_stall(&cfg, None),
                Ok(Err(e)) if e.is_refusal() => health.refute_stall(&cfg, Some(e)),
                _ => health.breaker.stalled(silent + stall_after / 2),
            }
            health.confirming.store(false, Ordering::Release);
        });
    }

    fn refute_stall(&self, cfg: &UpstreamConfig, refusal: Option<UpstreamError>) {
        observe::upstream_stall_refuted();
        let at = Instant::now();
        // 0: never (a refutation stores at least 1).
        let now = self.progress.millis(at).max(1);
        let last = self.refuted_at.swap(now, Ordering::Relaxed);
        let run_gap = u64::try_from(4 * self.breaker.stall_after().as_millis()).unwrap_or(u64::MAX);
        let first_of_a_run = last == 0 || now.saturating_sub(last) > run_gap;
        let refusal = refusal.map(|e| e.to_string());
        let message = "requests wait with nothing read, but Redis answers at once: not a stall (paused writes?)";
        if first_of_a_run {
            tracing::info!(upstream = %cfg.url, refusal, "{message}");
        } else {
            tracing::debug!(upstream = %cfg.url, refusal, "{message}");
        }
        self.progress.touch(at);
    }

    /// The upstream's name and version, once a handshake reported them.
    pub fn identity(&self) -> Arc<Identity> {
        self.identity.load_full()
    }

    /// The upstream's version, once a handshake reported it.
    pub fn version(&self) -> Option<String> {
        self.identity().version.clone()
    }

    fn set_identity(&self, name: Option<String>, version: Option<String>) {
        let identity = Identity { name, version };
        if identity.version.is_some() && **self.identity.load() != identity {
            self.identity.store(Arc::new(identity));
        }
    }
}

/// When a pool connection (of any worker thread) last read from the
/// upstream, to the granularity of a reader's tick: readers note that they
/// read, and publish it on their next tick, so the read path pays nothing.
struct Progress {
    epoch: Instant,
    /// Milliseconds since `epoch`.
    last_read: AtomicU64,
}

impl Progress {
    fn new() -> Progress {
        Progress { epoch: Instant::now(), last_read: AtomicU64::new(0) }
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn touch(&self, now: Instant) {
        self.last_read.fetch_max(self.millis(now), Ordering::Relaxed);
    }

    fn silent_for(&self, now: Instant) -> Duration {
        Duration::from_millis(self.millis(now).saturating_sub(self.last_read.load(Ordering::Relaxed)))
    }
}

/// A fixed set of multiplexed connections speaking one protocol version.
pub struct Pool {
    conns: Vec<Arc<PoolConn>>,
    health: Arc<Health>,
}

impl Pool {
    /// Starts `cfg.pool_size` connections; they connect in the background
    /// and keep reconnecting for the life of the process. A batch whose
    /// replies come to more than `max_batch_reply` bytes fails with
    /// [`UpstreamError::OutputLimit`], its replies dropped as they
    /// arrive instead of held.
    pub fn start(cfg: Arc<UpstreamConfig>, proto: Proto, health: Arc<Health>, max_batch_reply: usize) -> Pool {
        if let Some(tls) = &cfg.tls {
            tls.warn_if_insecure();
        }
        let conns = (0..cfg.pool_size)
            .map(|slot| {
                let conn = Arc::new(PoolConn::new());
                tokio::spawn(
                    Maintainer {
                        cfg: cfg.clone(),
                        proto,
                        health: health.clone(),
                        slot,
                        conn: conn.clone(),
                        max_batch_reply,
                    }
                    .run(),
                );
                conn
            })
            .collect();
        Pool { conns, health }
    }

    /// Sends `payload` (complete requests producing `count` replies) on the
    /// connection chosen by `affinity`; a session keeps one connection.
    pub fn send(&self, affinity: usize, payload: &[u8], count: usize, now: Instant) -> oneshot::Receiver<JobResult> {
        let (reply, rx) = oneshot::channel();
        self.send_to(affinity, payload, InFlight { count, reply: Reply::Channel(reply), sent_at: now });
        rx
    }

    /// As [`Pool::send`], the replies written straight to the client the
    /// handoff names (see [`super::handoff`]).
    pub fn hand_off(&self, handed: Handed<'_>, to: &Arc<Handoff>) {
        let Handed { affinity, payload, count, now, charge } = handed;
        self.send_to(affinity, payload, InFlight { count, reply: Reply::Handoff(to.clone(), charge), sent_at: now });
    }

    fn send_to(&self, affinity: usize, payload: &[u8], job: InFlight) {
        if !self.health.breaker.allows() {
            job.answer(Err(self.health.breaker.refusal()));
            return;
        }
        self.conns[affinity % self.conns.len()].send(payload, job);
    }
}

/// A batch a session hands off: its replies go straight to the client.
pub struct Handed<'a> {
    /// Which of the pool's connections (the session's id).
    pub affinity: usize,
    pub payload: &'a [u8],
    /// How many replies it takes.
    pub count: usize,
    pub now: Instant,
    /// Its charge against the client's tenant's `max_in_flight`, let go as
    /// soon as the replies are in.
    pub charge: Option<PoolCharge>,
}

/// A batch written upstream, waiting for its replies.
struct InFlight {
    count: usize,
    reply: Reply,
    sent_at: Instant,
}

/// Where a batch's replies go.
enum Reply {
    /// To the session, which writes them.
    Channel(oneshot::Sender<JobResult>),
    /// Straight to the client (unless they take the handoff's detour); the
    /// charge is let go first.
    Handoff(Arc<Handoff>, Option<PoolCharge>),
    /// Nowhere (the keepalive's PONG).
    Discard,
}

impl InFlight {
    /// Answers with the first `len` bytes of the reader's buffer, taken
    /// from it: a handoff writes them to the client from there. `errors`:
    /// some of them are error replies (only those can need a detour).
    fn answer_from(self, rbuf: &mut BytesMut, len: usize, errors: bool) {
        match self.reply {
            Reply::Handoff(to, charge) => {
                drop(charge);
                match errors.then(|| to.detour(&rbuf[..len])).flatten() {
                    Some(detour) => detour.take(rbuf.split_to(len).freeze(), to, self.count, self.sent_at),
                    None => to.deliver(rbuf, len, self.count, self.sent_at),
                }
            }
            _ => self.answer(Ok(rbuf.split_to(len).freeze())),
        }
    }

    fn answer(self, result: JobResult) {
        match self.reply {
            Reply::Channel(tx) => {
                let _ = tx.send(result);
            }
            Reply::Handoff(to, charge) => {
                drop(charge);
                match (result.as_ref().ok().and_then(|replies| to.detour(replies)), result) {
                    (Some(detour), Ok(replies)) => detour.take(replies, to, self.count, self.sent_at),
                    (_, result) => to.complete(result, self.count, self.sent_at),
                }
            }
            Reply::Discard => {}
        }
    }
}

/// One multiplexed connection, shared by the sessions and its tasks.
struct PoolConn {
    state: Mutex<ConnState>,
    /// Wakes the flush task when the backlog has bytes.
    flush: Notify,
}

struct ConnState {
    link: Link,
    inflight: VecDeque<InFlight>,
    /// Bytes accepted but not yet handed to the flush task.
    backlog: BytesMut,
    /// The last requests in flight, whose bytes are all in the backlog:
    /// never written, so safe to send again if the connection is lost.
    unflushed: usize,
    /// When the last request was accepted (for the keepalive).
    last_sent: Instant,
    /// The last read answered at most one batch: one client at a time uses
    /// the connection, so an idle one is written to directly (several
    /// clients share a write instead).
    solo: bool,
    /// The flush task has been woken for the backlog and not yet found it
    /// empty: it may hold bytes it has not written. While set, new requests
    /// queue in the backlog so the write order never changes. Set whenever
    /// the backlog of a live connection is non-empty.
    flushing: bool,
}

enum Link {
    /// A connection attempt is under way (the first, or the replacement of
    /// a lost connection): requests queue in the backlog and are written
    /// once it succeeds (or fail with it).
    Connecting,
    /// Requests fail at once with the reason, until a reconnect succeeds.
    Down(UpstreamError),
    Up {
        generation: u64,
        /// The TCP write half, shared with the flush task, for requests
        /// written directly (none over TLS). Only one of them writes at a
        /// time: sessions only while `flushing` is unset, under the lock.
        direct: Option<Arc<OwnedWriteHalf>>,
    },
}

impl PoolConn {
    fn new() -> PoolConn {
        PoolConn {
            state: Mutex::new(ConnState {
                link: Link::Connecting,
                inflight: VecDeque::new(),
                backlog: BytesMut::new(),
                unflushed: 0,
                last_sent: Instant::now(),
                solo: true,
                flushing: false,
            }),
            flush: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, ConnState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn send(&self, payload: &[u8], job: InFlight) {
        let mut st = self.lock();
        if let Link::Down(e) = &st.link {
            let e = e.clone();
            drop(st);
            job.answer(Err(e));
            return;
        }
        st.last_sent = job.sent_at;
        let idle = st.inflight.is_empty() && !st.flushing && st.solo;
        st.inflight.push_back(job);
        if let (true, Link::Up { direct: Some(socket), .. }) = (idle, &st.link) {
            match crate::sys::try_send::<TcpStream>((**socket).as_ref(), payload) {
                Ok(n) if n == payload.len() => return,
                // Part of it is on the wire: it can no longer be sent again
                // whole, so it does not count as unflushed.
                Ok(n) if n > 0 => {
                    st.backlog.extend_from_slice(&payload[n..]);
                    st.flushing = true;
                    self.flush.notify_one();
                    return;
                }
                // Nothing written (the socket would block, or failed: its
                // reader will see that): queued like any other request.
                _ => {}
            }
        }
        st.unflushed += 1;
        st.backlog.extend_from_slice(payload);
        if matches!(st.link, Link::Up { .. }) && !st.flushing {
            st.flushing = true;
            self.flush.notify_one();
        }
    }

    /// Marks the connection down and fails everything in flight with `err`.
    fn fail(&self, err: UpstreamError) {
        let orphans: Vec<InFlight> = {
            let mut st = self.lock();
            st.link = Link::Down(err.clone());
            st.backlog.clear();
            st.unflushed = 0;
            st.flushing = false;
            st.inflight.drain(..).collect()
        };
        for job in orphans {
            job.answer(Err(err.clone()));
        }
    }

    /// The live connection failed with `err`: requests written to it fail
    /// with `err`; those never written stay queued for its replacement.
    /// Returns how many stay.
    fn lost(&self, err: &UpstreamError) -> usize {
        let (written, kept): (Vec<InFlight>, usize) = {
            let mut st = self.lock();
            st.link = Link::Connecting;
            st.flushing = false;
            let written = st.inflight.len().saturating_sub(st.unflushed);
            (st.inflight.drain(..written).collect(), st.unflushed)
        };
        for job in written {
            job.answer(Err(err.clone()));
        }
        kept
    }

    /// Queues a PING if nothing was sent for [`KEEPALIVE`] and nothing is
    /// in flight.
    fn keepalive(&self, now: Instant) {
        let mut st = self.lock();
        if !st.inflight.is_empty() || now.saturating_duration_since(st.last_sent) < KEEPALIVE {
            return;
        }
        // Nobody waits for the PONG.
        st.last_sent = now;
        st.inflight.push_back(InFlight { count: 1, reply: Reply::Discard, sent_at: now });
        st.unflushed += 1;
        st.backlog.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        if matches!(st.link, Link::Up { .. }) && !st.flushing {
            st.flushing = true;
            self.flush.notify_one();
        }
    }
}

/// The task that owns a pool connection's lifecycle: connect, read replies,
/// detect timeouts, reconnect.
struct Maintainer {
    cfg: Arc<UpstreamConfig>,
    proto: Proto,
    health: Arc<Health>,
    slot: usize,
    conn: Arc<PoolConn>,
    max_batch_reply: usize,
}

/// What woke a pool connection's reader.
enum Woke {
    Read(std::io::Result<usize>),
    Tick,
}

/// Bounds of a reader's tick (a quarter of `stall_after`).
const TICK_MIN: Duration = Duration::from_millis(10);
const TICK_MAX: Duration = Duration::from_millis(100);

impl Maintainer {
    async fn run(self) {
        let mut generation = 0u64;
        Reconnect {
            max_backoff: self.cfg.reconnect_max_backoff,
            breaker: &self.health.breaker,
            unreachable: "upstream unreachable, retrying in the background",
            still_unreachable: "upstream still unreachable",
            upstream: Some(&self.cfg.url),
            slot: Some(self.slot),
        }
        .run(
            || async { conn::open(&self.cfg, self.proto).await.inspect_err(|err| observe::upstream_error(err.kind())) },
            |connected, recovered| {
                let first = generation == 0;
                generation += 1;
                self.connected(connected, recovered || first, generation)
            },
            |err| self.conn.fail(err),
        )
        .await;
    }

    /// Serves a new connection until it is lost; `announce` when it is the
    /// first or ends a run of failures.
    async fn connected(&self, connected: conn::Connected, announce: bool, generation: u64) {
        if announce {
            tracing::info!(upstream = %self.cfg.url, slot = self.slot, proto = ?self.proto, "upstream connected");
        }
        self.health.set_identity(connected.server, connected.version);
        // The handshake was answered: progress, and the
        // connect time is `connect_timeout`'s, not a stall.
        self.health.progress.touch(Instant::now());
        self.health.breaker.answered();
        observe::upstream_connected(1.0);
        let err = self.serve(connected.stream, generation).await;
        observe::upstream_connected(-1.0);
        observe::upstream_error(err.kind());
        if err != UpstreamError::ConnectionLost {
            // A lost connection is replaced at once, not counted.
            self.health.breaker.failure();
        }
        let resent = self.conn.lost(&err);
        observe::upstream_reconnect(resent);
        tracing::info!(upstream = %self.cfg.url, slot = self.slot, error = %err, resent, "upstream connection lost: reconnecting");
    }

    /// Runs one live connection until it fails.
    async fn serve(&self, stream: Stream, generation: u64) -> UpstreamError {
        let err = match stream {
            Stream::Tcp(tcp) => {
                let (reader, writer) = tcp.into_split();
                self.up(FlushWriter::Tcp(Arc::new(writer)), generation);
                Reader::new(reader, self.max_batch_reply).run(&self.conn, &self.cfg, &self.health).await
            }
            Stream::Tls(tls) => {
                let (reader, writer) = tokio::io::split(*tls);
                self.up(FlushWriter::Tls(writer), generation);
                Reader::new(reader, self.max_batch_reply).run(&self.conn, &self.cfg, &self.health).await
            }
        };
        // Wake the flush task so it sees the generation change and exits.
        self.conn.lock().link = Link::Connecting;
        self.conn.flush.notify_one();
        err
    }

    /// Opens the connection to requests and starts its flush task.
    fn up(&self, writer: FlushWriter, generation: u64) {
        {
            let mut st = self.conn.lock();
            let direct = match &writer {
                FlushWriter::Tcp(socket) => Some(socket.clone()),
                FlushWriter::Tls(_) => None,
            };
            st.link = Link::Up { generation, direct };
            // Requests that waited for the connection are timed (request
            // timeout, stall) from now, when they can be written.
            let now = Instant::now();
            st.inflight.iter_mut().for_each(|f| f.sent_at = now);
            if !st.backlog.is_empty() {
                // Requests that waited for the first connection.
                st.flushing = true;
                self.conn.flush.notify_one();
            }
        }
        tokio::spawn(flush(self.conn.clone(), writer, generation));
    }
}

/// The flush task's side of the socket.
enum FlushWriter {
    /// Shared with sessions writing directly (see [`Link::Up`]).
    Tcp(Arc<OwnedWriteHalf>),
    Tls(WriteHalf<TlsStream>),
}

impl FlushWriter {
    async fn write_all(&mut self, mut chunk: &[u8]) -> std::io::Result<()> {
        match self {
            FlushWriter::Tcp(writer) => {
                while !chunk.is_empty() {
                    writer.writable().await?;
                    match crate::sys::try_send::<TcpStream>((**writer).as_ref(), chunk) {
                        Ok(n) => chunk = &chunk[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            }
            FlushWriter::Tls(writer) => {
                writer.write_all(chunk).await?;
                writer.flush().await
            }
        }
    }
}

/// Writes the backlog, in order, each time a session wakes it.
async fn flush(conn: Arc<PoolConn>, mut writer: FlushWriter, generation: u64) {
    loop {
        conn.flush.notified().await;
        // Let the other ready sessions add their requests to this write.
        tokio::task::yield_now().await;
        loop {
            let chunk = {
                let mut st = conn.lock();
                if !matches!(st.link, Link::Up { generation: g, .. } if g == generation) {
                    return;
                }
                if st.backlog.is_empty() {
                    st.flushing = false;
                    break;
                }
                st.unflushed = 0;
                st.backlog.split().freeze()
            };
            if writer.write_all(&chunk).await.is_err() {
                return;
            }
        }
    }
}

/// The read side of a live connection, over TCP or TLS.
struct Reader<R> {
    stream: R,
    rbuf: BytesMut,
    scanner: scan::Scanner,
    /// Bytes of the front batch's replies already delimited.
    scanned: usize,
    /// Replies of the front batch already delimited.
    frames: usize,
    /// Bytes past which a batch's replies are dropped, and whether the
    /// front batch's were.
    max_batch_reply: usize,
    dropping: bool,
    /// Batches answered by the last read, answered once the lock is let go
    /// (popped one by one: a `Vec`'s `drain` costs its out-of-line drop),
    /// and the length of each one's replies, which lie in order at the
    /// front of `rbuf`: `kept` bytes in all.
    done: VecDeque<Done>,
    kept: usize,
    /// Some reply of the front batch delimited so far is an error.
    errors: bool,
    /// Something was read since the last tick (published then).
    progressed: bool,
}

/// A batch whose replies are all in the reader's buffer.
struct Done {
    job: InFlight,
    /// The length of its replies.
    len: usize,
    /// Some of them are error replies.
    errors: bool,
}

impl<R: Fill> Reader<R> {
    fn new(stream: R, max_batch_reply: usize) -> Reader<R> {
        Reader {
            stream,
            rbuf: BytesMut::with_capacity(16 * 1024),
            scanner: scan::Scanner::default(),
            scanned: 0,
            frames: 0,
            max_batch_reply,
            dropping: false,
            done: VecDeque::new(),
            kept: 0,
            errors: false,
            progressed: false,
        }
    }

    async fn run(&mut self, conn: &PoolConn, cfg: &UpstreamConfig, health: &Arc<Health>) -> UpstreamError {
        let every = (health.breaker.stall_after() / 4).min(cfg.request_timeout).clamp(TICK_MIN, TICK_MAX);
        let mut tick = pin!(crate::timer::sleep(every));
        // The tick was polled and will wake this task when due.
        let mut armed = false;
        loop {
            let woke = poll_fn(|cx| {
                if let Poll::Ready(read) = self.stream.poll_fill(cx, &mut self.rbuf) {
                    return Poll::Ready(Woke::Read(read));
                }
                // Polling an armed tick again would only register the same
                // waker again (most of a wake's cost when Redis answers a
                // lone client): it is polled once due.
                if armed && !tick.is_elapsed() {
                    return Poll::Pending;
                }
                armed = tick.as_mut().poll(cx).is_pending();
                if armed {
                    return Poll::Pending;
                }
                Poll::Ready(Woke::Tick)
            })
            .await;
            match woke {
                Woke::Read(Ok(0) | Err(_)) => return UpstreamError::ConnectionLost,
                Woke::Read(Ok(_)) => {
                    self.progressed = true;
                    if let Err(e) = self.deliver(conn) {
                        return e;
                    }
                }
                Woke::Tick => {
                    if let Err(e) = self.check(conn, cfg, health) {
                        return e;
                    }
                    // The next tick a period after this one was handled.
                    tick.as_mut().reset(tokio::time::Instant::now() + every);
                }
            }
        }
    }

    /// The reader's tick: publishes progress (a stalled upstream answering
    /// again ends the stall), fails the connection when its oldest request
    /// is past `request_timeout`, reports a stall, or sends a keepalive.
    fn check(&mut self, conn: &PoolConn, cfg: &UpstreamConfig, health: &Arc<Health>) -> Result<(), UpstreamError> {
        let now = Instant::now();
        if std::mem::take(&mut self.progressed) {
            health.progress.touch(now);
            health.breaker.answered();
        }
        let oldest = conn.lock().inflight.front().map(|f| now.saturating_duration_since(f.sent_at));
        let Some(waited) = oldest else {
            conn.keepalive(now);
            return Ok(());
        };
        if waited > cfg.request_timeout {
            return Err(UpstreamError::Timeout);
        }
        let stall_after = health.breaker.stall_after();
        if waited > stall_after && health.breaker.allows() {
            let silent = health.progress.silent_for(now);
            if silent > stall_after {
                health.suspect_stall(cfg, silent.min(waited));
            }
        }
        Ok(())
    }

    /// Hands every batch whose replies are all in the buffer back to its
    /// session.
    fn deliver(&mut self, conn: &PoolConn) -> Result<(), UpstreamError> {
        let result = {
            let mut st = conn.lock();
            let result = self.split_complete(&mut st.inflight);
            // One batch answered by this read: one client at a time.
            st.solo = self.done.len() <= 1;
            result
        };
        self.answer_done();
        result
    }

    /// Answers the batches `split_complete` found complete, in order.
    fn answer_done(&mut self) {
        while let Some(Done { job, len, errors }) = self.done.pop_front() {
            job.answer_from(&mut self.rbuf, len, errors);
        }
        self.kept = 0;
    }

    /// Removes the front batch's replies delimited so far (they are past
    /// the batch-reply limit): from the front of the buffer, or, rarely,
    /// from behind replies kept for batches answered by the same read.
    fn drop_scanned(&mut self) {
        let (from, to) = (self.kept, self.kept + std::mem::take(&mut self.scanned));
        if from == 0 {
            self.rbuf.advance(to);
        } else {
            self.rbuf.copy_within(to.., from);
            self.rbuf.truncate(self.rbuf.len() - (to - from));
        }
    }

    fn split_complete(&mut self, inflight: &mut VecDeque<InFlight>) -> Result<(), UpstreamError> {
        while let Some(front) = inflight.front() {
            let at = self.kept + self.scanned;
            let found =
                self.scanner.next_frame(&self.rbuf[at..]).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
            let Some(len) = found else {
                return Ok(());
            };
            match scan::kind(&self.rbuf[at..at + len]) {
                scan::FrameKind::Push => {
                    return Err(UpstreamError::Protocol("unexpected push frame on a pool connection".into()))
                }
                scan::FrameKind::Error => self.errors = true,
                scan::FrameKind::Other => {}
            }
            self.scanned += len;
            self.frames += 1;
            if self.scanned > self.max_batch_reply {
                self.drop_scanned();
                self.dropping = true;
            }
            if self.frames == front.count {
                self.frames = 0;
                let errors = std::mem::take(&mut self.errors);
                if let Some(job) = inflight.pop_front() {
                    if std::mem::take(&mut self.dropping) {
                        // Rare: answered at once, the lock held.
                        self.drop_scanned();
                        job.answer(Err(UpstreamError::OutputLimit));
                    } else {
                        self.done.push_back(Done { job, len: self.scanned, errors });
                        self.kept += std::mem::take(&mut self.scanned);
                    }
                }
            }
        }
        if self.rbuf.len() == self.kept {
            Ok(())
        } else {
            Err(UpstreamError::Protocol("reply without a request".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Context;

    /// The replies are put in the reader's buffer by hand.
    struct NoStream;

    impl Fill for NoStream {
        fn poll_fill(&mut self, _: &mut Context<'_>, _: &mut BytesMut) -> Poll<std::io::Result<usize>> {
            Poll::Pending
        }
    }

    fn job(count: usize) -> (InFlight, oneshot::Receiver<JobResult>) {
        let (tx, rx) = oneshot::channel();
        (InFlight { count, reply: Reply::Channel(tx), sent_at: Instant::now() }, rx)
    }

    fn replies(rx: &mut oneshot::Receiver<JobResult>) -> JobResult {
        rx.try_recv().expect("answered")
    }

    /// Three batches answered by one read, the middle one's replies past
    /// the batch-reply limit: it is cut out from behind the first one's,
    /// which are still in the buffer, and the others get theirs whole.
    #[test]
    fn a_batch_past_the_reply_limit_is_cut_out_from_between_others() {
        let mut reader = Reader::new(NoStream, 8);
        reader.rbuf.extend_from_slice(b"+OK\r\n$10\r\n0123456789\r\n:1\r\n:2\r\n");
        let ((a, mut ra), (b, mut rb), (c, mut rc)) = (job(1), job(1), job(2));
        let mut inflight = VecDeque::from([a, b, c]);
        reader.split_complete(&mut inflight).expect("replies");
        reader.answer_done();
        assert_eq!(&replies(&mut ra).expect("first")[..], b"+OK\r\n");
        assert!(matches!(replies(&mut rb), Err(UpstreamError::OutputLimit)));
        assert_eq!(&replies(&mut rc).expect("last")[..], b":1\r\n:2\r\n");
        assert!(reader.rbuf.is_empty() && inflight.is_empty());
    }

    /// A batch answered and the next one's reply cut in two by the reads.
    #[test]
    fn a_reply_split_across_reads_follows_one_answered_before_it() {
        let mut reader = Reader::new(NoStream, 1024);
        reader.rbuf.extend_from_slice(b"+OK\r\n$3\r\nab");
        let ((a, mut ra), (b, mut rb)) = (job(1), job(1));
        let mut inflight = VecDeque::from([a, b]);
        reader.split_complete(&mut inflight).expect("replies");
        reader.answer_done();
        assert_eq!(&replies(&mut ra).expect("first")[..], b"+OK\r\n");
        assert!(rb.try_recv().is_err(), "not complete yet");
        reader.rbuf.extend_from_slice(b"c\r\n");
        reader.split_complete(&mut inflight).expect("replies");
        reader.answer_done();
        assert_eq!(&replies(&mut rb).expect("second")[..], b"$3\r\nabc\r\n");
        assert!(reader.rbuf.is_empty());
    }
}
