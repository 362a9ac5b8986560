//! Dedicated connections opened ahead of need. A client beginning a
//! transaction, a blocking command or a subscription needs a connection of
//! its own; opening one costs a TCP handshake and the Redis handshake (a
//! few round trips: across a network that is milliseconds, and a blocking
//! command sent late can be overtaken by another client's write). A couple
//! of spares per protocol wait ready instead, are kept alive with a PING
//! every [`KEEPALIVE`] (so Redis' idle `timeout` never closes one) and are
//! checked again when taken (a `CLIENT KILL` may have closed one); a
//! client that finds none opens its own, as before.
//!
//! Spares are plain TCP only (a TLS stream cannot be checked without
//! reading it), and are not opened while the circuit is open.

use super::pinned::Pinned;
use super::pool::UpstreamInfo;
use super::UpstreamError;
use crate::config::UpstreamConfig;
use crate::protocol::Proto;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::Notify;

/// Spares kept per protocol.
const KEEP: usize = 2;

/// How often spares are pinged: under the smallest idle `timeout` Redis
/// accepts (1 s).
const KEEPALIVE: Duration = Duration::from_millis(500);

/// The spares of both protocol versions.
pub struct Spares {
    cfg: Arc<UpstreamConfig>,
    info: Arc<UpstreamInfo>,
    /// RESP2, RESP3.
    ready: [Mutex<Vec<Pinned>>; 2],
    /// A client of that protocol has asked for one (RESP3 spares are only
    /// kept once one has).
    wanted: [AtomicBool; 2],
    refill: Notify,
}

impl Spares {
    pub fn new(cfg: Arc<UpstreamConfig>, info: Arc<UpstreamInfo>) -> Spares {
        Spares {
            cfg,
            info,
            ready: [Mutex::new(Vec::new()), Mutex::new(Vec::new())],
            wanted: [AtomicBool::new(true), AtomicBool::new(false)],
            refill: Notify::new(),
        }
    }

    /// A dedicated connection for a client speaking `proto`: a spare that
    /// is still open, or a new one.
    pub async fn take(&self, proto: Proto) -> Result<Pinned, UpstreamError> {
        let i = index(proto);
        self.wanted[i].store(true, Ordering::Relaxed);
        loop {
            let spare = self.ready[i].lock().unwrap_or_else(PoisonError::into_inner).pop();
            let Some(mut spare) = spare else { break };
            if spare.is_idle_and_open() {
                spare.retag("client");
                self.refill.notify_one();
                return Ok(spare);
            }
        }
        self.refill.notify_one();
        Pinned::open(&self.cfg, proto, "client").await
    }

    /// Keeps the spares alive and topped up, for the life of the process.
    pub async fn run(&self) {
        if self.cfg.tls.is_some() {
            return;
        }
        loop {
            tokio::select! {
                () = self.refill.notified() => {}
                () = tokio::time::sleep(KEEPALIVE) => {}
            }
            for proto in [Proto::Resp2, Proto::Resp3] {
                if self.wanted[index(proto)].load(Ordering::Relaxed) {
                    self.tend(proto).await;
                }
            }
        }
    }

    /// Pings the spares of `proto` (dropping those that do not answer), then
    /// opens new ones up to [`KEEP`] while the circuit is closed.
    async fn tend(&self, proto: Proto) {
        let ready = &self.ready[index(proto)];
        let mut spares = std::mem::take(&mut *ready.lock().unwrap_or_else(PoisonError::into_inner));
        let mut alive = Vec::with_capacity(KEEP);
        for mut spare in spares.drain(..) {
            if ping(&mut spare, self.cfg.request_timeout).await {
                alive.push(spare);
            }
        }
        while alive.len() < KEEP && self.info.breaker.allows() {
            match Pinned::open(&self.cfg, proto, "spare").await {
                Ok(spare) => alive.push(spare),
                Err(e) => {
                    tracing::debug!(error = %e, "cannot open a spare dedicated connection");
                    break;
                }
            }
        }
        ready.lock().unwrap_or_else(PoisonError::into_inner).extend(alive);
    }
}

/// True when `spare` answers a PING within `limit`.
async fn ping(spare: &mut Pinned, limit: Duration) -> bool {
    let exchange = async {
        spare.send(b"*1\r\n$4\r\nPING\r\n").await?;
        spare.next_frame().await
    };
    matches!(tokio::time::timeout(limit, exchange).await, Ok(Ok(pong)) if pong.starts_with(b"+PONG"))
}

fn index(proto: Proto) -> usize {
    match proto {
        Proto::Resp2 => 0,
        Proto::Resp3 => 1,
    }
}
