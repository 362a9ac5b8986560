//! The circuit breaker of the upstream: **closed** (requests flow; failures
//! are counted in a sliding window) → **open** (requests fail at once, or
//! failover serves them; nothing is sent) → **half-open** (a prober sends
//! PINGs on fresh connections; client requests are still not sent) →
//! **closed** after `success_threshold` answered PINGs, or open again on a
//! failure.
//!
//! The circuit opens only when the upstream cannot be reached or makes no
//! progress, never because one connection closed (Redis' idle `timeout`,
//! `CLIENT KILL`, a restart: the pool reconnects at once):
//! - a fresh connection cannot be established ([`Breaker::connect_failed`];
//!   one Redis answers with a refusal, a password it lacks for instance,
//!   does not count: Redis is there);
//! - a **stall**: requests have been outstanding for `stall_after` while no
//!   pool connection read anything, and a PING on a fresh connection goes
//!   unanswered too ([`Breaker::stalled`]);
//! - `failure_threshold` request timeouts or protocol errors within
//!   `window` ([`Breaker::failure`]).
//!
//! It leaves open as soon as the upstream answers again (a reconnect
//! succeeds, a stalled connection reads): [`Breaker::answered`] starts the
//! probes at once instead of waiting out `open_for`, which only paces the
//! probes of an upstream that does not answer. Before closing, the prober
//! runs the recovery step it is given (failover replays its journal there,
//! and closes the circuit itself); when the upstream answers but refuses
//! that step (OOM, READONLY, …), or refuses the probes themselves, the
//! refusal is kept
//! ([`Breaker::refused`]) so failover can stop answering from local memory
//! while Redis is reachable. Every transition is logged and exported.

use super::rest::Rest;
use super::UpstreamConfig;
use super::{conn, UpstreamError};
use crate::observe;
use crate::protocol::{scan, Proto};
use arc_swap::ArcSwap;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

/// `[breaker]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub window: Duration,
    pub open_for: Duration,
    pub success_threshold: u32,
    /// No reply on any pool connection for this long, with requests
    /// outstanding: the upstream is stalled (hung, paused, busy).
    pub stall_after: Duration,
    /// Failover is on (for the logs of transitions).
    pub failover: bool,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 5,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(2),
            success_threshold: 2,
            stall_after: Duration::from_millis(500),
            failover: false,
        }
    }
}

/// The breaker's state, as exported (`nearcache_breaker_state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl State {
    fn from_u8(v: u8) -> State {
        match v {
            0 => State::Closed,
            1 => State::HalfOpen,
            _ => State::Open,
        }
    }

    fn name(self) -> &'static str {
        match self {
            State::Closed => "closed",
            State::HalfOpen => "half_open",
            State::Open => "open",
        }
    }
}

pub struct Breaker {
    /// Swapped by a reload.
    config: ArcSwap<BreakerConfig>,
    /// The upstream it guards, for logs and metric labels.
    upstream: String,
    state: AtomicU8,
    /// How many times the circuit opened since start.
    opened: AtomicU64,
    inner: Mutex<Inner>,
    /// Notified on entering half-open: reconnect loops retry at once, so
    /// the pool is up by the time the circuit closes.
    pub probing: Notify,
    /// A cluster node serving no slot: nothing reconnects to it, and its
    /// circuit is not probed, until it serves slots again.
    pub rest: Rest,
}

struct Inner {
    /// Failure times within the window (closed state).
    failures: VecDeque<Instant>,
    opened_at: Instant,
    /// Answered probes (half-open state).
    successes: u32,
    /// Why the last connection attempt failed, until one succeeds.
    last_connect_error: Option<String>,
    /// The upstream answers but refused the recovery step: why.
    refused: Option<String>,
    /// The upstream refused the last connection attempt (closed or not):
    /// why, until one succeeds.
    refusing: Option<String>,
}

impl Breaker {
    pub fn new(config: BreakerConfig, upstream: String) -> Breaker {
        observe::breaker_state(&upstream, State::Closed as u8);
        Breaker {
            config: ArcSwap::from_pointee(config),
            upstream,
            state: AtomicU8::new(State::Closed as u8),
            opened: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                failures: VecDeque::new(),
                opened_at: Instant::now(),
                successes: 0,
                last_connect_error: None,
                refused: None,
                refusing: None,
            }),
            probing: Notify::new(),
            rest: Rest::default(),
        }
    }

    /// The settings it runs with.
    pub fn settings(&self) -> BreakerConfig {
        (*self.config.load_full()).clone()
    }

    /// Applies reloaded settings (thresholds, window, `open_for`); whether
    /// failover is on stays as started. True when something changed.
    pub fn reconfigure(&self, new: &BreakerConfig) -> bool {
        let old = self.config.load_full();
        let new = BreakerConfig { failover: old.failover, ..new.clone() };
        if new == *old {
            return false;
        }
        tracing::info!(upstream = %self.upstream, config = ?new, "breaker settings reloaded");
        self.config.store(Arc::new(new));
        true
    }

    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Acquire))
    }

    /// How long the upstream may make no progress, with requests
    /// outstanding, before it counts as stalled.
    pub fn stall_after(&self) -> Duration {
        self.config.load().stall_after
    }

    /// True when requests may go upstream.
    pub fn allows(&self) -> bool {
        self.state() == State::Closed
    }

    /// The error requests get while the breaker is not closed.
    /// Names the last connect failure, when there was one, so clients see
    /// why (e.g. a TLS certificate problem).
    pub fn refusal(&self) -> UpstreamError {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        match &inner.last_connect_error {
            Some(e) => UpstreamError::Unavailable(format!("circuit open ({e})")),
            None => UpstreamError::Unavailable("circuit open".into()),
        }
    }

    /// How many times the circuit opened since start (`/ready`).
    pub fn times_opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// An upstream failure.
    pub fn failure(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        match self.state() {
            State::Open => {}
            State::HalfOpen => {
                // A failed probe: the upstream is unreachable again.
                inner.refused = None;
                self.go(&mut inner, State::Open, now)
            }
            State::Closed => {
                inner.failures.push_back(now);
                while inner.failures.front().is_some_and(|t| now.duration_since(*t) > self.config.load().window) {
                    inner.failures.pop_front();
                }
                if inner.failures.len() >= self.config.load().failure_threshold as usize {
                    self.go(&mut inner, State::Open, now);
                }
            }
        }
    }

    /// Opens the circuit now: the upstream cannot be reached.
    pub fn trip(&self) {
        self.open(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Opens the circuit unless it is open already (its `opened_at` kept).
    fn open(&self, inner: &mut Inner) {
        if self.state() != State::Open {
            self.go(inner, State::Open, Instant::now());
        }
    }

    /// An upstream connection could not be established. Only an upstream
    /// that cannot be reached opens the circuit: one that answered and
    /// refused the connection ([`UpstreamError::is_refusal`]) is there, and
    /// local answers could contradict it; the connection's requests get
    /// the refusal instead.
    pub fn connect_failed(&self, e: &UpstreamError) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if e.is_refusal() {
            inner.refusing = Some(e.to_string());
            return;
        }
        inner.last_connect_error = Some(e.to_string());
        inner.refusing = None;
        inner.refused = None;
        self.open(&mut inner);
    }

    /// The pool made no progress for `stall_after` with requests
    /// outstanding.
    pub fn stalled(&self, silent_for: Duration) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if self.state() == State::Closed {
            observe::upstream_stall();
            tracing::warn!(upstream = %self.upstream, silent_for = ?silent_for, "upstream stalled: no reply with requests outstanding");
            self.go(&mut inner, State::Open, Instant::now());
        }
    }

    /// The upstream answered (a connection was established, or a stalled
    /// one read a reply): while open, probing starts now — unless it
    /// refused the recovery step, which is tried again after `open_for`.
    pub fn answered(&self) {
        if self.state() != State::Open {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if self.state() == State::Open && inner.refused.is_none() {
            self.go(&mut inner, State::HalfOpen, Instant::now());
        }
    }

    /// A connection was established: the upstream no longer refuses
    /// them.
    pub fn connected(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.refusing = None;
    }

    /// Why the upstream refused the last connection attempt, until one
    /// succeeds (`/ready`: the circuit stays closed meanwhile).
    pub fn refusing(&self) -> Option<String> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).refusing.clone()
    }

    /// The upstream answered the probes but refused the recovery step.
    pub fn refused(&self, reason: String) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.refused = Some(reason);
        self.open(&mut inner);
    }

    /// Why the upstream, reachable, refused the last recovery step; `None`
    /// once it is unreachable again, or recovered.
    pub fn refusal_reason(&self) -> Option<String> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).refused.clone()
    }

    /// Half-open → closed: the recovery step is done.
    pub fn close(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if self.state() == State::HalfOpen {
            self.go(&mut inner, State::Closed, Instant::now());
        }
    }

    /// An answered probe (only half-open state counts them); true once
    /// enough have answered to recover.
    fn probe_succeeded(&self) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if self.state() != State::HalfOpen {
            return false;
        }
        inner.successes += 1;
        inner.successes >= self.config.load().success_threshold
    }

    /// Open → half-open once `open_for` has passed.
    fn try_half_open(&self) -> bool {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if self.state() == State::Open && inner.opened_at.elapsed() >= self.config.load().open_for {
            self.go(&mut inner, State::HalfOpen, Instant::now());
        }
        self.state() == State::HalfOpen
    }

    fn go(&self, inner: &mut Inner, to: State, now: Instant) {
        let from = self.state();
        self.state.store(to as u8, Ordering::Release);
        inner.failures.clear();
        inner.successes = 0;
        if to == State::Closed {
            inner.last_connect_error = None;
            inner.refused = None;
        }
        if to == State::Open {
            inner.opened_at = now;
            self.opened.fetch_add(1, Ordering::Relaxed);
        }
        observe::breaker_state(&self.upstream, to as u8);
        observe::breaker_transition(to.name());
        if self.config.load().failover && (from == State::Closed || to == State::Closed) {
            observe::failover_active(&self.upstream, to != State::Closed);
            match to {
                State::Closed => tracing::info!(upstream = %self.upstream, "failover ended: serving from upstream"),
                _ => tracing::warn!(upstream = %self.upstream, "failover mode: serving from local memory"),
            }
        }
        match to {
            State::Closed => {
                tracing::info!(upstream = %self.upstream, from = from.name(), "circuit closed: upstream healthy")
            }
            State::HalfOpen => {
                self.probing.notify_waiters();
                tracing::info!(upstream = %self.upstream, "circuit half-open: probing upstream")
            }
            State::Open => {
                tracing::warn!(upstream = %self.upstream, from = from.name(), open_for = ?self.config.load().open_for, "circuit open: failing fast")
            }
        }
    }

    /// Keeps probing while the circuit is not closed: once half-open (after
    /// `open_for`, or at once when the upstream answered), PINGs on fresh
    /// connections until enough answer, then `recover`, which must
    /// [`Breaker::close`] the circuit when it succeeds.
    pub async fn run_prober<F, Fut>(&self, upstream: &UpstreamConfig, recover: F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), UpstreamError>>,
    {
        let tick = (self.config.load().open_for / 4).clamp(Duration::from_millis(10), Duration::from_millis(250));
        loop {
            tokio::select! {
                () = crate::timer::sleep(tick) => {}
                () = self.probing.notified() => {}
            }
            self.rest.awake().await;
            if !self.allows() && self.try_half_open() {
                self.probe(upstream, &recover).await;
            }
        }
    }

    /// [`Breaker::run_prober`] for an upstream with no recovery step (a
    /// cluster node, a Redis user's pool): the circuit closes once enough
    /// probes are answered.
    pub async fn run_closing_prober(&self, upstream: &UpstreamConfig) {
        self.run_prober(upstream, || async {
            self.close();
            Ok(())
        })
        .await
    }

    /// PINGs in a row until `success_threshold` answer (then the recovery
    /// step) or one fails.
    async fn probe<F, Fut>(&self, upstream: &UpstreamConfig, recover: &F)
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<(), UpstreamError>>,
    {
        while self.state() == State::HalfOpen {
            match ping(upstream).await {
                Ok(()) => {}
                Err(e) if e.is_refusal() => {
                    tracing::warn!(reason = %e, "upstream answers but refused the probe: failover keeps the journal and answers with an error until it is accepted");
                    self.refused(e.to_string());
                    return;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "probe failed");
                    self.failure();
                    return;
                }
            }
            if !self.probe_succeeded() {
                continue;
            }
            match recover().await {
                Ok(()) => {}
                Err(UpstreamError::Refused(reason)) => {
                    tracing::warn!(reason = %reason, "upstream answers but refused recovery: failover keeps the journal and answers with an error until it is accepted");
                    self.refused(reason);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "recovery failed: circuit open again");
                    self.failure();
                }
            }
            return;
        }
    }
}

/// One PING on a fresh connection, within the request timeout.
pub(super) async fn ping(upstream: &UpstreamConfig) -> Result<(), UpstreamError> {
    let probe = async {
        let mut connected = conn::open(upstream, Proto::Resp2).await?;
        connected.stream.write_all(b"*1\r\n$4\r\nPING\r\n").await.map_err(|_| UpstreamError::ConnectionLost)?;
        let mut buf = bytes::BytesMut::with_capacity(64);
        let mut scanner = scan::Scanner::default();
        loop {
            if let Some(len) = scanner.next_frame(&buf).map_err(|e| UpstreamError::Protocol(e.to_string()))? {
                let text = || String::from_utf8_lossy(&buf[1..len]).trim_end().to_string();
                return match scan::kind(&buf[..len]) {
                    _ if buf[..len].starts_with(b"+PONG") => Ok(()),
                    // NOAUTH, LOADING, BUSY…: Redis is there.
                    scan::FrameKind::Error => Err(UpstreamError::Refused(text())),
                    _ => Err(UpstreamError::Protocol(text())),
                };
            }
            if connected.stream.read_buf(&mut buf).await.map_err(|_| UpstreamError::ConnectionLost)? == 0 {
                return Err(UpstreamError::ConnectionLost);
            }
        }
    };
    crate::timer::timeout(upstream.request_timeout, probe).await.map_err(|_| UpstreamError::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(threshold: u32) -> Breaker {
        let config =
            BreakerConfig { failure_threshold: threshold, open_for: Duration::from_millis(20), ..Default::default() };
        Breaker::new(config, "test".into())
    }

    #[test]
    fn opens_after_threshold_failures() {
        let b = breaker(3);
        b.failure();
        b.failure();
        assert!(b.allows());
        b.failure();
        assert_eq!(b.state(), State::Open);
        assert!(!b.allows());
    }

    #[test]
    fn half_open_then_closed_after_successes_or_open_again_on_failure() {
        let b = breaker(1);
        b.failure();
        assert!(!b.try_half_open(), "not before open_for");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.try_half_open());
        b.failure();
        assert_eq!(b.state(), State::Open, "a failed probe reopens");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.try_half_open());
        assert!(!b.probe_succeeded());
        assert!(b.probe_succeeded(), "enough probes answered");
        assert_eq!(b.state(), State::HalfOpen, "closing is the recovery step's call");
        b.close();
        assert_eq!(b.state(), State::Closed);
    }

    #[test]
    fn unreachable_upstream_opens_at_once() {
        let b = breaker(5);
        b.connect_failed(&UpstreamError::ConnectTimeout);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.refusal().to_string(), "upstream unavailable: circuit open (upstream connect timeout)");
    }

    #[test]
    fn a_connection_redis_refused_is_no_outage() {
        let b = breaker(1);
        b.connect_failed(&UpstreamError::Handshake(
            "NOAUTH HELLO must be called with the client already authenticated".into(),
        ));
        assert_eq!(b.state(), State::Closed, "Redis answered: it is reachable");
        assert!(b.refusing().is_some_and(|why| why.contains("NOAUTH")));
        b.connected();
        assert_eq!(b.refusing(), None);
        b.connect_failed(&UpstreamError::Handshake("WRONGPASS".into()));
        b.connect_failed(&UpstreamError::ConnectTimeout);
        assert_eq!((b.state(), b.refusing()), (State::Open, None), "unreachable now: no longer refusing");
        // Open (an outage), then the probes refused.
        b.refused("NOAUTH Authentication required.".into());
        b.connect_failed(&UpstreamError::Handshake("WRONGPASS".into()));
        let refusal = (State::Open, Some("NOAUTH Authentication required.".to_string()));
        assert_eq!((b.state(), b.refusal_reason()), refusal, "still refused, not unreachable");
    }

    #[test]
    fn a_stall_opens_and_an_answer_probes_at_once() {
        let b = breaker(5);
        b.stalled(Duration::from_millis(600));
        assert_eq!(b.state(), State::Open);
        assert!(!b.try_half_open(), "open_for has not passed");
        b.answered();
        assert_eq!(b.state(), State::HalfOpen, "the upstream answered: probe now");
        b.answered();
        assert_eq!(b.state(), State::HalfOpen);
    }

    #[test]
    fn a_refused_recovery_waits_open_for_and_ends_when_unreachable() {
        let b = breaker(5);
        b.stalled(Duration::from_millis(600));
        b.answered();
        b.refused("OOM".into());
        assert_eq!((b.state(), b.refusal_reason()), (State::Open, Some("OOM".to_string())));
        b.answered();
        assert_eq!(b.state(), State::Open, "a refused recovery is not retried at every answer");
        std::thread::sleep(Duration::from_millis(30));
        assert!(b.try_half_open());
        b.failure();
        assert_eq!((b.state(), b.refusal_reason()), (State::Open, None), "a failed probe: unreachable again");
        b.refused("OOM".into());
        b.connect_failed(&UpstreamError::ConnectTimeout);
        assert_eq!(b.refusal_reason(), None);
    }

    #[test]
    fn old_failures_leave_the_window() {
        let config = BreakerConfig { failure_threshold: 2, window: Duration::from_millis(20), ..Default::default() };
        let b = Breaker::new(config, "test".into());
        b.failure();
        std::thread::sleep(Duration::from_millis(30));
        b.failure();
        assert!(b.allows());
    }
}
