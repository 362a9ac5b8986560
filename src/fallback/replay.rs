//! Recovery: the journal goes upstream, oldest first, in pipelined rounds
//! on a dedicated connection, while failover keeps serving (and journaling)
//! new requests. When a round finds the journal empty, the circuit closes
//! under the failover lock, the store is cleared and the near-cache resumes.
//!
//! An entry Redis answers with an error becomes a dead letter. If the
//! connection fails mid-round, the unanswered entries stay journaled and
//! are sent again on the next recovery: delivery is at least once.

use super::{Failover, Local, OnRecover};
use crate::config::UpstreamConfig;
use crate::observe;
use crate::protocol::Proto;
use crate::upstream::conn::{self, Stream};
use crate::upstream::UpstreamError;
use bytes::{Bytes, BytesMut};
use std::time::Instant;
use tokio::io::AsyncWriteExt;

/// Entries sent per round.
const ROUND: usize = 1024;

/// Replays (or discards) the journal, then closes the circuit.
pub async fn recover(failover: &Failover, upstream: &UpstreamConfig) -> Result<(), UpstreamError> {
    if failover.config.on_recover == OnRecover::Discard {
        let mut local = failover.lock();
        let n = local.journal.len();
        if n > 0 {
            tracing::warn!(entries = n, "on_recover = \"discard\": failover writes dropped, upstream data wins");
            observe::journal_replayed("discarded", n);
        }
        failover.close(&mut local);
        return Ok(());
    }
    let started = Instant::now();
    let mut conn: Option<Stream> = None;
    let (mut ok, mut failed) = (0usize, 0usize);
    loop {
        let round = {
            let mut local = failover.lock();
            if local.journal.is_empty() {
                failover.close(&mut local);
                break;
            }
            local.journal.oldest(ROUND)
        };
        let stream = match conn.as_mut() {
            Some(stream) => stream,
            None => conn.insert(conn::open(upstream, Proto::Resp2).await?.stream),
        };
        let replies = tokio::time::timeout(upstream.request_timeout, exchange(stream, &round))
            .await
            .map_err(|_| UpstreamError::Timeout)??;
        let mut local = failover.lock();
        for (entry, reply) in round.iter().zip(&replies) {
            if reply.starts_with(b"-") {
                failed += 1;
                let error = String::from_utf8_lossy(reply).trim_end().trim_start_matches('-').to_string();
                local.journal.dead_letter(entry.clone(), error);
            } else {
                ok += 1;
            }
        }
        local.journal.pop_oldest(round.len());
    }
    if ok + failed > 0 {
        observe::journal_replayed("ok", ok);
        observe::journal_replayed("failed", failed);
        let secs = started.elapsed().as_secs_f64();
        tracing::info!(
            replayed = ok,
            failed,
            seconds = secs,
            per_second = ((ok + failed) as f64 / secs) as u64,
            "journal replayed upstream"
        );
    }
    Ok(())
}

/// Sends one round and reads one reply per entry.
async fn exchange(stream: &mut Stream, round: &[Bytes]) -> Result<Vec<Bytes>, UpstreamError> {
    let mut out = BytesMut::with_capacity(round.iter().map(Bytes::len).sum());
    round.iter().for_each(|e| out.extend_from_slice(e));
    stream.write_all(&out).await.map_err(|_| UpstreamError::ConnectionLost)?;
    stream.flush().await.map_err(|_| UpstreamError::ConnectionLost)?;
    conn::read_replies(stream, round.len()).await
}

impl Failover {
    /// The journal is empty: traffic goes upstream again. Runs under the
    /// failover lock, so no write can be journaled after this.
    fn close(&self, local: &mut Local) {
        local.store.clear();
        if let Err(e) = local.journal.clear() {
            tracing::error!(error = %e, "cannot truncate the journal file: its entries were replayed and may replay again after a restart");
        }
        self.info.breaker.close();
        self.cache.failover_ended();
    }
}
