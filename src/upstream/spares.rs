//! Dedicated connections opened ahead of need. A client beginning a
//! transaction, a blocking command or a subscription needs a connection of
//! its own; opening one costs a TCP handshake and the Redis handshake (a
//! few round trips: across a network that is milliseconds, and a blocking
//! command sent late can be overtaken by another client's write). A few
//! spares per protocol wait ready instead, opened in parallel as they are
//! taken, pinged once unused for [`KEEPALIVE`] (so Redis' idle `timeout`
//! never closes one) and checked again when taken (a `CLIENT KILL` may
//! have closed one); a client that finds none opens its own.
//!
//! A connection a client is done with comes back ([`Spares::give_back`]),
//! so the next transaction, blocking command or subscription costs no new
//! connection (across a network: the TCP, TLS and Redis handshakes, 2 to 6
//! round trips). One that holds nothing of the last client (it carried
//! only commands whose state the session saw end: a transaction, WATCH, a
//! blocking command answered, plain commands) is ready again at once, on
//! any server; others are cleaned on Redis ≥ 6.2 by `RESET` and the
//! handshake, one round trip off any client's path. One that cannot be
//! proven clean (an older server, a reply still owed, a redirect target,
//! anything unexpected before RESET's reply) is closed instead, and
//! whatever state it held upstream goes with it.
//!
//! Spares are not opened while the circuit is open.

use super::conn::Rehandshake;
use super::dedicated::DedicatedConn;
use super::pool::Health;
use super::UpstreamConfig;
use super::{UpstreamError, KEEPALIVE};
use crate::observe;
use crate::protocol::Proto;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Spares opened ahead per protocol: enough for a few clients beginning
/// transactions at once while more are opened (or come back cleaned).
const KEEP: usize = 4;

/// Clean connections kept per protocol for the next clients: as many as
/// clients have been running transactions, blocking commands or
/// subscriptions at once (each cycle holds one for its own round trip and
/// RESET's), up to this. Those beyond [`KEEP`] are closed once unused for
/// [`PING_AFTER`]: a burst's connections do not outlive it.
const KEEP_RETURNED: usize = 256;

/// A spare unused for this long is pinged, and they are looked at this
/// often: none stays silent much past [`KEEPALIVE`].
const PING_AFTER: Duration = Duration::from_millis(KEEPALIVE.as_millis() as u64 / 2);

/// A spare and when it last answered (opened or pinged).
struct Spare {
    conn: DedicatedConn,
    checked: Instant,
}

/// The spares of both protocol versions.
pub struct Spares {
    cfg: Arc<UpstreamConfig>,
    health: Arc<Health>,
    /// RESP2, RESP3.
    ready: [Mutex<Vec<Spare>>; 2],
    /// A client of that protocol has asked for one (RESP3 spares are only
    /// kept once one has).
    wanted: [AtomicBool; 2],
    refill: Notify,
}

impl Spares {
    pub fn new(cfg: Arc<UpstreamConfig>, health: Arc<Health>) -> Spares {
        Spares {
            cfg,
            health,
            ready: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            wanted: [AtomicBool::new(true), AtomicBool::new(false)],
            refill: Notify::new(),
        }
    }

    fn ready(&self, proto: Proto) -> MutexGuard<'_, Vec<Spare>> {
        self.ready[index(proto)].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A dedicated connection for a client speaking `proto`: a spare that
    /// is still open, or a new one.
    pub async fn take(&self, proto: Proto) -> Result<DedicatedConn, UpstreamError> {
        self.wanted[index(proto)].store(true, Ordering::Relaxed);
        loop {
            let spare = self.ready(proto).pop();
            let Some(mut spare) = spare else { break };
            if spare.conn.is_idle_and_open() {
                spare.conn.retag("client");
                self.refill.notify_one();
                return Ok(spare.conn);
            }
        }
        self.refill.notify_one();
        DedicatedConn::open_shareable(&self.cfg, proto, "client").await
    }

    /// Takes back a client's dedicated connection, owing nothing: ready for
    /// the next client at once when `clean` (it holds nothing of the last
    /// one: no state left open, no command that may have left some) and
    /// nothing unasked arrived; else made clean in the background, or
    /// closed.
    pub fn give_back(self: &Arc<Self>, mut conn: DedicatedConn, clean: bool) {
        let proto = conn.proto();
        let kept = self.ready(proto).len() < KEEP_RETURNED;
        if !(conn.shareable() && kept && self.health.breaker.allows()) {
            observe::dedicated_returned("closed");
            return;
        }
        conn.retag("spare");
        if clean && conn.nothing_unread() {
            self.ready(proto).push(Spare { conn, checked: Instant::now() });
            observe::dedicated_returned("reused");
            return;
        }
        if !resets(self.health.version().as_deref()) {
            observe::dedicated_returned("closed");
            return;
        }
        let spares = self.clone();
        tokio::spawn(async move {
            let rehandshake = Rehandshake::new(&spares.cfg, proto);
            match conn.reset(&rehandshake, spares.cfg.request_timeout).await {
                Ok(()) => {
                    spares.ready(proto).push(Spare { conn, checked: Instant::now() });
                    observe::dedicated_returned("reset");
                }
                Err(e) => {
                    observe::dedicated_returned("closed");
                    tracing::debug!(error = %e, "dedicated connection not reusable: closed");
                }
            }
        });
    }

    /// Keeps the spares alive and topped up, for the life of the process
    /// (none while the node rests).
    pub async fn run(&self) {
        loop {
            tokio::select! {
                () = self.refill.notified() => {}
                () = crate::timer::sleep(PING_AFTER) => {}
            }
            let rest = &self.health.breaker.rest;
            if rest.is_resting() {
                // A node serving nothing: its spares are closed, none opened.
                self.ready(Proto::Resp2).clear();
                self.ready(Proto::Resp3).clear();
                rest.awake().await;
            }
            for proto in [Proto::Resp2, Proto::Resp3] {
                if self.wanted[index(proto)].load(Ordering::Relaxed) {
                    self.keep_alive(proto).await;
                    self.top_up(proto).await;
                }
            }
        }
    }

    /// Pings the spares unused for [`PING_AFTER`], one at a time (the
    /// others stay available meanwhile); drops those that do not answer,
    /// and those beyond [`KEEP`].
    async fn keep_alive(&self, proto: Proto) {
        loop {
            let (stale, surplus) = {
                let mut ready = self.ready(proto);
                let at = ready.iter().position(|s| s.checked.elapsed() >= PING_AFTER);
                (at.map(|i| ready.swap_remove(i)), ready.len() >= KEEP)
            };
            let Some(mut spare) = stale else { return };
            if surplus {
                continue;
            }
            if ping(&mut spare.conn, self.cfg.request_timeout).await {
                spare.checked = Instant::now();
                self.ready(proto).push(spare);
            }
        }
    }

    /// Opens the missing spares, all at once, while the circuit is closed;
    /// each is ready as soon as it is open.
    async fn top_up(&self, proto: Proto) {
        let missing = KEEP.saturating_sub(self.ready(proto).len());
        if missing == 0 || !self.health.breaker.allows() {
            return;
        }
        let mut opening = tokio::task::JoinSet::new();
        for _ in 0..missing {
            let cfg = self.cfg.clone();
            opening.spawn(async move { DedicatedConn::open_shareable(&cfg, proto, "spare").await });
        }
        while let Some(opened) = opening.join_next().await {
            match opened {
                // Below those given back: the last one back is taken first.
                Ok(Ok(conn)) => self.ready(proto).insert(0, Spare { conn, checked: Instant::now() }),
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot open a spare dedicated connection"),
                Err(e) => tracing::debug!(error = %e, "opening a spare dedicated connection failed"),
            }
        }
    }
}

/// True when `spare` answers a PING within `limit`.
async fn ping(spare: &mut DedicatedConn, limit: Duration) -> bool {
    let exchange = async {
        spare.send(b"*1\r\n$4\r\nPING\r\n").await?;
        spare.next_frame().await
    };
    matches!(crate::timer::timeout(limit, exchange).await, Ok(Ok(pong)) if pong.starts_with(b"+PONG"))
}

/// True when a server of `version` has RESET (6.2 and later); one that did
/// not say is tried (RESET refused: the connection is closed).
fn resets(version: Option<&str>) -> bool {
    let Some(version) = version else { return true };
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (6, 2)
}

fn index(proto: Proto) -> usize {
    match proto {
        Proto::Resp2 => 0,
        Proto::Resp3 => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::resets;

    #[test]
    fn reset_is_used_from_redis_6_2() {
        for (version, expected) in
            [("6.0.16", false), ("5.0.14", false), ("6.2.0", true), ("7.0.15", true), ("8.0.1", true)]
        {
            assert_eq!(resets(Some(version)), expected, "{version}");
        }
        assert!(resets(None), "a server that does not say is tried");
    }
}
