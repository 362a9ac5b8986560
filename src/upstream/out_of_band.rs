//! Requests that must reach Redis past everything else: `SCRIPT KILL`,
//! `FUNCTION KILL` and `SHUTDOWN` are what Redis still serves while a
//! script keeps it busy. On a pool connection they would queue behind that
//! script (or behind the circuit, which a busy Redis opens), and Redis
//! would stay busy for everyone. Each is sent on a fresh connection of its
//! own, which is closed after its one reply. A Redis Cluster's `WAIT` goes
//! to each master this way too ([`awaited`]), behind a write of its own.

use super::conn;
use super::pool::JobResult;
use super::UpstreamConfig;
use super::UpstreamError;
use crate::protocol::Proto;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// Sends one complete request on a new connection speaking `proto`; the
/// receiver gets its reply (or why there is none).
pub fn send(cfg: Arc<UpstreamConfig>, proto: Proto, request: Bytes) -> oneshot::Receiver<JobResult> {
    let idle = cfg.request_timeout;
    spawn_exchange(cfg, proto, request, 1, idle)
}

/// Sends `request` (`replies` commands) on a new connection and waits as
/// long as it takes (a `WAIT` blocks for its own timeout, or for ever):
/// the receiver gets the last reply, or the first error among the others
/// (what the last one counts did not happen then).
pub fn awaited(cfg: Arc<UpstreamConfig>, proto: Proto, request: Bytes, replies: usize) -> oneshot::Receiver<JobResult> {
    spawn_exchange(cfg, proto, request, replies, Duration::MAX)
}

/// Runs [`exchange`] in a task of its own; the receiver gets its result.
fn spawn_exchange(
    cfg: Arc<UpstreamConfig>,
    proto: Proto,
    request: Bytes,
    replies: usize,
    idle: Duration,
) -> oneshot::Receiver<JobResult> {
    let (reply, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = reply.send(exchange(&cfg, proto, &request, replies, idle).await);
    });
    rx
}

/// Opens a connection, writes `request` and reads its `n` replies, each
/// read waiting at most `idle`: the last reply, or the first error among
/// the others.
async fn exchange(cfg: &UpstreamConfig, proto: Proto, request: &[u8], n: usize, idle: Duration) -> JobResult {
    let mut stream = conn::open(cfg, proto).await?.stream;
    let write = async {
        stream.write_all(request).await?;
        stream.flush().await
    };
    match crate::timer::timeout(cfg.request_timeout, write).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(UpstreamError::ConnectionLost),
        Err(_) => return Err(UpstreamError::Timeout),
    }
    let mut replies = conn::read_replies(&mut stream, n, idle).await?;
    let failed = replies.iter().take(n.saturating_sub(1)).position(|r| r.first() == Some(&b'-'));
    match failed {
        Some(at) => Ok(replies.swap_remove(at)),
        None => replies.pop().ok_or(UpstreamError::ConnectionLost),
    }
}
