//! Requests that must reach Redis past everything else: `SCRIPT KILL`,
//! `FUNCTION KILL` and `SHUTDOWN` are what Redis still serves while a
//! script keeps it busy. On a pool connection they would queue behind that
//! script (or behind the circuit, which a busy Redis opens), and Redis
//! would stay busy for everyone. Each is sent on a fresh connection of its
//! own, which is closed after its one reply.

use super::conn;
use super::pool::JobResult;
use super::UpstreamConfig;
use super::UpstreamError;
use crate::protocol::Proto;
use bytes::Bytes;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

/// Sends one complete request on a new connection speaking `proto`; the
/// receiver gets its reply (or why there is none).
pub fn send(cfg: Arc<UpstreamConfig>, proto: Proto, request: Bytes) -> oneshot::Receiver<JobResult> {
    let (reply, rx) = oneshot::channel();
    tokio::spawn(async move {
        let _ = reply.send(exchange(&cfg, proto, &request).await);
    });
    rx
}

async fn exchange(cfg: &UpstreamConfig, proto: Proto, request: &[u8]) -> JobResult {
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
    let mut replies = conn::read_replies(&mut stream, 1, cfg.request_timeout).await?;
    replies.pop().ok_or(UpstreamError::ConnectionLost)
}
