//! The invalidation channel: one dedicated RESP3 upstream connection with
//! `CLIENT TRACKING on BCAST` for the key prefixes the cache policies can
//! cache. Redis pushes the name of every key that changes under those
//! prefixes (and a null on FLUSHALL/FLUSHDB); each push evicts.
//!
//! Each upstream node has one (a Redis Cluster's masters each theirs).
//! The cache serves a node's keys only while its connection is healthy
//! (see the cache's channels): when it is lost
//! (disconnect, `CLIENT KILL`, upstream restart, no PONG within the request
//! timeout) the cache is bypassed until tracking is re-established (a new
//! connection is opened at once), since writes made meanwhile would go
//! unnoticed, and cleared before it serves again: a restarted or different
//! Redis behind the address is never answered for from the old entries.
//! With failover on, the entries are kept meanwhile for failover to serve
//! should the upstream turn out to be down. Losing this connection is not
//! an outage: it never opens the circuit.

use super::NearCache;
use crate::observe;
use crate::protocol::frame::{invalidation, Invalidation};
use crate::protocol::{encode, Proto};
use crate::router::NodeId;
use crate::upstream::dedicated::DedicatedConn;
use crate::upstream::pool::Health;
use crate::upstream::reconnect::{AttemptError, Reconnect};
use crate::upstream::UpstreamConfig;
use crate::upstream::UpstreamError;
use bytes::BytesMut;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the channel is checked with a PING: also often enough that
/// Redis' idle `timeout` never closes it.
const PING_EVERY: Duration = crate::upstream::KEEPALIVE;

/// Keeps `node`'s invalidation channel up for the life of the process.
/// With `failover`, entries outlive a loss of the channel (see the module
/// documentation).
pub async fn run(
    cache: Arc<NearCache>,
    node: NodeId,
    upstream: Arc<UpstreamConfig>,
    health: Arc<Health>,
    failover: bool,
) {
    if !cache.config().enabled {
        return;
    }
    cache.channel_added(node);
    // Shared with each connection's serve step.
    let (cache, upstream, health) = (&cache, &upstream, &health);
    Reconnect {
        max_backoff: upstream.reconnect_max_backoff,
        breaker: &health.breaker,
        unreachable: "cannot subscribe to invalidations: near-cache bypassed, retrying",
        still_unreachable: "still cannot subscribe to invalidations",
        upstream: Some(&upstream.url),
        slot: None,
    }
    .run(
        || subscribe(cache, upstream),
        |mut conn, _| async move {
            cache.tracking_restored(node, || !health.breaker.allows());
            tracing::info!(upstream = %upstream.url, "near-cache receiving invalidations");
            match listen(&mut conn, cache, upstream.request_timeout).await {
                Ended::Retrack => {
                    // Keys under the new prefixes were not tracked: bypass until re-subscribed.
                    cache.tracking_lost(node, false);
                    tracing::info!("tracked prefixes changed by a reload: re-subscribing to invalidations");
                }
                Ended::Failed(err) => {
                    // Not an outage: only the cache stops serving
                    // until the connection is replaced (at once).
                    cache.tracking_lost(node, failover);
                    observe::tracking_lost();
                    tracing::warn!(error = %err, kept_for_failover = failover, "invalidation connection lost: near-cache bypassed until it is back");
                }
            }
        },
        drop,
    )
    .await;
}

/// Why [`subscribe`] failed.
#[derive(Debug, thiserror::Error)]
enum Subscribe {
    /// No connection could be opened.
    #[error("{0}")]
    Connect(UpstreamError),
    /// The connection was opened but tracking could not be turned on.
    #[error("{0}")]
    Tracking(#[from] UpstreamError),
}

impl AttemptError for Subscribe {
    /// Only a fresh connection that cannot be established is an outage.
    fn connect_failure(&self) -> Option<&UpstreamError> {
        match self {
            Subscribe::Connect(e) => Some(e),
            Subscribe::Tracking(_) => None,
        }
    }
}

/// Opens the connection and turns tracking on.
async fn subscribe(cache: &NearCache, upstream: &UpstreamConfig) -> Result<DedicatedConn, Subscribe> {
    let mut conn = DedicatedConn::open(upstream, Proto::Resp3, "tracking").await.map_err(Subscribe::Connect)?;
    let mut args: Vec<&[u8]> = vec![b"CLIENT", b"TRACKING", b"on", b"BCAST"];
    let prefixes = cache.config().tracking_prefixes();
    for prefix in prefixes.iter().filter(|p| !p.is_empty()) {
        args.extend([&b"PREFIX"[..], prefix]);
    }
    let mut request = BytesMut::new();
    encode::command(&mut request, args.into_iter());
    conn.send(&request).await?;
    let reply = crate::timer::timeout(upstream.request_timeout, conn.next_frame())
        .await
        .map_err(|_| UpstreamError::Timeout)??;
    if reply.first() != Some(&b'+') {
        let text = String::from_utf8_lossy(&reply).trim_end().to_string();
        return Err(UpstreamError::Handshake(format!("CLIENT TRACKING refused: {text}")).into());
    }
    Ok(conn)
}

/// Why [`listen`] stopped.
enum Ended {
    /// The connection failed or stopped answering.
    Failed(UpstreamError),
    /// A reload changed the prefixes to track.
    Retrack,
}

/// Applies invalidations until the connection fails or stops answering, or
/// the tracked prefixes change.
async fn listen(conn: &mut DedicatedConn, cache: &NearCache, deadline: Duration) -> Ended {
    let mut tick = crate::timer::interval(PING_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut ping_sent: Option<Instant> = None;
    loop {
        tokio::select! {
            () = cache.retrack_requested() => return Ended::Retrack,
            frame = conn.next_frame() => match frame {
                Err(e) => return Ended::Failed(e),
                Ok(frame) => match invalidation(&frame) {
                    Some(Invalidation::Keys(keys)) => keys.iter().for_each(|k| cache.invalidate(k)),
                    Some(Invalidation::All) => cache.clear(),
                    None if frame.starts_with(b"+PONG") => ping_sent = None,
                    None => tracing::debug!(frame = ?frame, "unexpected frame on the invalidation connection"),
                },
            },
            _ = tick.tick() => {
                if ping_sent.is_some_and(|at| at.elapsed() > deadline) {
                    return Ended::Failed(UpstreamError::Timeout);
                }
                if ping_sent.is_none() {
                    if let Err(e) = conn.send(b"*1\r\n$4\r\nPING\r\n").await {
                        return Ended::Failed(e);
                    }
                    ping_sent = Some(Instant::now());
                }
            }
        }
    }
}
