//! Recovery: the journal goes upstream, oldest first, in rounds on a
//! dedicated connection, while failover keeps serving (and journaling) new
//! requests. When a round finds the journal empty, the circuit closes under
//! the failover lock, the store is cleared and the near-cache resumes.
//!
//! Each round is one transaction that also records, in a marker key unique
//! to the journal (and to the slot, with a cluster), the sequence number
//! following the last entry applied (with one Redis, every entry in slot 0:
//! how many entries have been applied):
//!
//! ```text
//! WATCH marker   GET marker                        (what is applied already)
//! MULTI   entries…   SET marker <sequence> PX 1 day   EXEC
//! ```
//!
//! A transaction is applied whole or not at all, so when a round's reply is
//! lost (the connection drops, or Redis is slower than the request timeout)
//! the next round's GET tells which, and nothing is replayed twice or
//! skipped. WATCH aborts a round if a late one from an abandoned connection
//! moves the marker meanwhile; it is then read again.
//!
//! An entry Redis refuses becomes a dead letter: at queue time (e.g. an
//! unknown command) the transaction is aborted, the refused entries leave
//! the journal and the others are sent again; in EXEC's reply (e.g.
//! WRONGTYPE, the key changed upstream meanwhile) the rest of the round is
//! applied. A refusal that says the server cannot take writes for now
//! (OOM, READONLY, LOADING, …) fails the recovery instead: everything stays
//! journaled and is tried again with the next probe.

use super::journal::Journal;
use super::{slots, Failover, Memory, OnRecover};
use crate::observe;
use crate::protocol::request::parse_int;
use crate::protocol::scan::{self, Frames};
use crate::protocol::{encode, Proto};
use crate::router::cluster::Cluster;
use crate::router::NodeId;
use crate::upstream::conn::{self, error_text, Stream};
use crate::upstream::UpstreamConfig;
use crate::upstream::UpstreamError;
use bytes::{Bytes, BytesMut};
use std::sync::atomic::Ordering;
use std::sync::PoisonError;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Entries sent per round.
const ROUND: usize = 1024;

/// How long a marker outlives its last round if recovery cannot delete it.
const MARKER_TTL_MS: &[u8] = b"86400000";

/// Replays (or discards) the journal, then closes the circuit.
pub async fn recover(failover: &Failover, upstream: &UpstreamConfig) -> Result<(), UpstreamError> {
    if discarded(failover, |local| failover.close(local)) {
        return Ok(());
    }
    let mut tally = Tally::new();
    let result = replay(failover, upstream, &mut tally).await;
    tally.report();
    result
}

/// With `on_recover = "discard"`, drops the journal (counted, logged),
/// ending failover with `close`; false when the journal is to be replayed.
fn discarded(failover: &Failover, close: impl FnOnce(&mut Memory)) -> bool {
    if failover.config.on_recover != OnRecover::Discard {
        return false;
    }
    let mut local = failover.lock();
    let n = local.journal.len();
    if n > 0 {
        tracing::warn!(entries = n, "on_recover = \"discard\": failover writes dropped, upstream data wins");
        observe::journal_replayed("discarded", n);
    }
    close(&mut local);
    true
}

/// Entries replayed by one recovery attempt: counted in the metrics as
/// each round settles (before the circuit closes), logged at the end.
struct Tally {
    started: Instant,
    ok: usize,
    failed: usize,
}

impl Tally {
    fn new() -> Tally {
        Tally { started: Instant::now(), ok: 0, failed: 0 }
    }

    fn ok(&mut self, n: usize) {
        self.ok += n;
        observe::journal_replayed("ok", n);
    }

    fn failed(&mut self, n: usize) {
        self.failed += n;
        observe::journal_replayed("failed", n);
    }

    fn report(&self) {
        if self.ok + self.failed == 0 {
            return;
        }
        let secs = self.started.elapsed().as_secs_f64();
        tracing::info!(
            replayed = self.ok,
            failed = self.failed,
            seconds = secs,
            per_second = ((self.ok + self.failed) as f64 / secs) as u64,
            "journal replayed upstream"
        );
    }
}

/// Rounds of the oldest entries (every entry is of slot 0) until the
/// journal is empty; once the rest fits in one round, requests wait for it
/// (drain) so it cannot keep growing.
async fn replay(failover: &Failover, upstream: &UpstreamConfig, tally: &mut Tally) -> Result<(), UpstreamError> {
    let idle = upstream.request_timeout;
    let marker = failover.lock().journal.marker();
    let mut stream = conn::open(upstream, Proto::Resp2).await?.stream;
    let drain = Drain(failover);
    let take = |journal: &Journal| {
        let round = journal.slot_round(ROUND, |_| true);
        if let Some(&(slot, _)) = round.as_ref() {
            drain.before_round(journal, slot);
        }
        round
    };
    while let Some((_, round)) = next_round(failover, |local| failover.close(local), take).flatten() {
        send_round(failover, &mut stream, &marker, &round, idle, tally).await?;
    }
    drop(drain);
    forget(&mut stream, &marker, idle).await;
    Ok(())
}

/// With a Redis Cluster: replays (or discards) the journal, each round the
/// oldest entries of one slot sent to the master serving that slot now,
/// behind a marker of that slot. A slot leaves failover once its entries
/// are replayed; a master that cannot be reached, or refuses, holds back
/// only its own slots. Remembers which masters refused, and why.
pub async fn recover_slots(failover: &Failover, cluster: &Cluster) -> Result<(), UpstreamError> {
    if discarded(failover, |local| failover.close_slots(local)) {
        return Ok(());
    }
    let mut tally = Tally::new();
    let mut failed = Vec::new();
    replay_slots(failover, cluster, &mut tally, &mut failed).await;
    tally.report();
    let refused = failed.iter().filter_map(|(id, e)| match e {
        UpstreamError::Refused(why) => Some((cluster.node(*id).health.clone(), why.clone())),
        _ => None,
    });
    *failover.replay_refused.lock().unwrap_or_else(PoisonError::into_inner) = refused.collect();
    match failed.into_iter().next() {
        Some((_, e)) => Err(e),
        None if failover.slots_pending() => {
            Err(UpstreamError::Unavailable("no master of a slot with journaled writes answers".into()))
        }
        None => Ok(()),
    }
}

/// The rounds of [`recover_slots`], on a connection per master, until no
/// slot with entries left has a master that answers and has not failed
/// (in `failed`, with the error) during this attempt.
async fn replay_slots(
    failover: &Failover,
    cluster: &Cluster,
    tally: &mut Tally,
    failed: &mut Vec<(NodeId, UpstreamError)>,
) {
    let base = failover.lock().journal.marker();
    let mut streams: Vec<(NodeId, Stream)> = Vec::new();
    let mut markers: Vec<(NodeId, Bytes)> = Vec::new();
    let drain = Drain(failover);
    loop {
        let ready = |slot: u16| {
            let id = cluster.slot_node(slot);
            !failed.iter().any(|(node, _)| *node == id) && cluster.node(id).health.breaker.allows()
        };
        let take = |journal: &Journal| journal.slot_round(ROUND, ready);
        match next_round(failover, |local| failover.close_slots(local), take) {
            Some(Some((slot, round))) => {
                let id = cluster.slot_node(slot);
                let to = Master { id, base: &base, drain: &drain };
                match to.replay(failover, cluster, &mut streams, slot, &round, tally).await {
                    Ok(marker) if !markers.contains(&(id, marker.clone())) => markers.push((id, marker)),
                    Ok(_) => {}
                    Err(e) => {
                        streams.retain(|(node, _)| *node != id);
                        failed.push((id, redirected(cluster, e)));
                    }
                }
                drain.end();
            }
            // Nothing ready: what is left waits for the next attempt.
            Some(None) => return,
            None => break,
        }
    }
    // Emptied (its file truncated, a new id issued): the markers are of no
    // use any more. (Not before: a restarted proxy reloads the file's
    // entries, replayed ones too, and its markers tell which.)
    drop(drain);
    for (id, marker) in markers {
        if let Some((_, stream)) = streams.iter_mut().find(|(node, _)| *node == id) {
            forget(stream, &marker, cluster.node(id).config.request_timeout).await;
        }
    }
}

/// Where a slot's round goes: master `id`, behind a marker named after
/// the journal's `base` marker.
struct Master<'a> {
    id: NodeId,
    base: &'a [u8],
    drain: &'a Drain<'a>,
}

impl Master<'_> {
    /// Sends one slot's `round` on the master's connection (opened if
    /// needed); once the slot has no entry left, it leaves failover. Its
    /// marker's name.
    async fn replay(
        &self,
        failover: &Failover,
        cluster: &Cluster,
        streams: &mut Vec<(NodeId, Stream)>,
        slot: u16,
        round: &[(u64, Bytes)],
        tally: &mut Tally,
    ) -> Result<Bytes, UpstreamError> {
        let node = cluster.node(self.id);
        let at = match streams.iter().position(|(n, _)| *n == self.id) {
            Some(at) => at,
            None => {
                streams.push((self.id, conn::open(&node.config, Proto::Resp2).await?.stream));
                streams.len() - 1
            }
        };
        // (All requests wait for a slot's last round: a few milliseconds.)
        self.drain.before_round(&failover.lock().journal, slot);
        let marker = Bytes::from(format!("{}:{{{}}}", String::from_utf8_lossy(self.base), slots::tag(slot)));
        let (stream, idle) = (&mut streams[at].1, node.config.request_timeout);
        send_round(failover, stream, &marker, round, idle, tally).await?;
        let local = failover.lock();
        if let Some(pending) = failover.pending.as_ref().filter(|_| !local.journal.holds_slot(slot)) {
            pending.remove(slot);
        }
        Ok(marker)
    }
}

/// Sends one slot's `round` (entries with their sequence numbers) on
/// `stream` behind the slot's `marker` (the sequence number after the last
/// entry applied), unless the marker says a round whose reply was lost
/// had applied it already, and takes what was applied out of the journal.
async fn send_round(
    failover: &Failover,
    stream: &mut Stream,
    marker: &[u8],
    round: &[(u64, Bytes)],
    idle: Duration,
    tally: &mut Tally,
) -> Result<(), UpstreamError> {
    let applied = applied_up_to(stream, marker, idle).await?;
    let seqs: Vec<u64> = round.iter().map(|&(seq, _)| seq).collect();
    let done = seqs.iter().take_while(|&&seq| seq < applied).count();
    if done > 0 {
        tracing::warn!(entries = done, "a round whose reply was lost had been applied upstream: not sent again");
        let mut local = failover.lock();
        seqs[..done].iter().for_each(|&seq| drop(local.journal.take(seq)));
        tally.ok(done);
        return Ok(());
    }
    let entries: Vec<Bytes> = round.iter().map(|(_, entry)| entry.clone()).collect();
    let next = seqs.last().map_or(0, |last| last + 1);
    let outcome = transaction(stream, &entries, marker, next, idle).await?;
    settle(&mut failover.lock(), &entries, &seqs, outcome, tally)
}

/// A round's `MOVED` (the slot's master changed): the slot map learns it
/// and the replay is tried again there, not counted as a refusal.
fn redirected(cluster: &Cluster, error: UpstreamError) -> UpstreamError {
    let UpstreamError::Refused(text) = &error else { return error };
    let code = ["MOVED ", "ASK ", "CLUSTERDOWN ", "TRYAGAIN "].iter().filter_map(|c| text.find(c)).min();
    let mut words = text[code.unwrap_or(0)..].split(' ');
    match (words.next(), words.next().and_then(|s| s.parse().ok()), words.next()) {
        (Some("MOVED"), Some(slot), Some(addr)) => {
            cluster.moved(slot, addr);
            UpstreamError::Unavailable(format!("replay redirected: {text}"))
        }
        (Some("CLUSTERDOWN" | "ASK" | "TRYAGAIN"), _, _) => UpstreamError::Unavailable(text.clone()),
        _ => error,
    }
}

/// Under the failover lock, what `take` makes the next round of; `None`
/// once the journal is empty, failover then ended by `close`.
fn next_round<T>(failover: &Failover, close: impl FnOnce(&mut Memory), take: impl FnOnce(&Journal) -> T) -> Option<T> {
    let mut local = failover.lock();
    if local.journal.is_empty() {
        close(&mut local);
        return None;
    }
    Some(take(&local.journal))
}

/// The drain of the last round, ended (waiters woken) however replay ends.
struct Drain<'a>(&'a Failover);

impl Drain<'_> {
    /// Starts the drain when the next round of `slot` is its last, so its
    /// writers cannot keep it from ever leaving failover.
    fn before_round(&self, journal: &Journal, slot: u16) {
        if !journal.holds_slot_beyond(slot, ROUND) {
            self.0.draining.store(true, Ordering::Release);
        }
    }

    fn end(&self) {
        if self.0.draining.swap(false, Ordering::AcqRel) {
            self.0.drained.notify_waiters();
        }
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        self.end();
    }
}

/// What became of one round.
enum Outcome {
    /// Applied: each entry's reply, in order.
    Applied(Vec<Bytes>),
    /// Aborted at queue time: each entry's reply to being queued, and why
    /// (the marker's refusal, or else EXEC's error).
    Aborted(Vec<Bytes>, Bytes),
    /// The marker moved after WATCH: nothing applied, read it again.
    Raced,
}

/// Takes a round's entries (numbered `seqs`) out of the journal as its
/// outcome says.
fn settle(
    local: &mut Memory,
    round: &[Bytes],
    seqs: &[u64],
    outcome: Outcome,
    tally: &mut Tally,
) -> Result<(), UpstreamError> {
    match outcome {
        Outcome::Applied(replies) => {
            let mut failed = 0;
            for (entry, reply) in round.iter().zip(&replies) {
                if scan::kind(reply) == scan::FrameKind::Error {
                    failed += 1;
                    local.journal.dead_letter(entry.clone(), error_text(reply));
                }
            }
            tally.ok(round.len() - failed);
            tally.failed(failed);
            seqs.iter().for_each(|&seq| drop(local.journal.take(seq)));
        }
        Outcome::Aborted(queued, reason) => {
            let refused: Vec<usize> =
                (0..queued.len()).filter(|&i| scan::kind(&queued[i]) == scan::FrameKind::Error).collect();
            if let Some(&i) = refused.iter().find(|&&i| is_transient(&queued[i])) {
                // The server cannot take writes now: they stay journaled.
                return Err(UpstreamError::Refused(format!("replay refused: {}", error_text(&queued[i]))));
            }
            if refused.is_empty() {
                return Err(UpstreamError::Refused(format!(
                    "replay transaction aborted: {} (the upstream user needs WATCH, MULTI, EXEC, GET, SET and DEL on \
                     __nearcache__:replay:*)",
                    error_text(&reason)
                )));
            }
            for &i in &refused {
                if let Some(entry) = seqs.get(i).and_then(|&seq| local.journal.take(seq)) {
                    local.journal.dead_letter(entry, error_text(&queued[i]));
                }
            }
            tally.failed(refused.len());
        }
        Outcome::Raced => {}
    }
    Ok(())
}

/// WATCHes the marker and reads it: how many entries are applied upstream.
async fn applied_up_to(stream: &mut Stream, marker: &[u8], idle: Duration) -> Result<u64, UpstreamError> {
    let mut out = BytesMut::new();
    encode::command(&mut out, [&b"WATCH"[..], marker].into_iter());
    encode::command(&mut out, [&b"GET"[..], marker].into_iter());
    send(stream, &out, idle).await?;
    let replies = conn::read_replies(stream, 2, idle).await?;
    if let Some(e) = replies.iter().find(|r| scan::kind(r) == scan::FrameKind::Error) {
        return Err(UpstreamError::Refused(error_text(e)));
    }
    let value = &replies[1];
    if value.starts_with(b"$-1") {
        return Ok(0);
    }
    bulk_number(value)
        .ok_or_else(|| UpstreamError::Protocol(format!("replay marker: {:?}", String::from_utf8_lossy(value))))
}

/// Sends one round as a transaction that moves the marker to `next`.
async fn transaction(
    stream: &mut Stream,
    round: &[Bytes],
    marker: &[u8],
    next: u64,
    idle: Duration,
) -> Result<Outcome, UpstreamError> {
    let next = next.to_string();
    let mut out = BytesMut::with_capacity(round.iter().map(Bytes::len).sum::<usize>() + 128);
    encode::command(&mut out, [&b"MULTI"[..]].into_iter());
    round.iter().for_each(|e| out.extend_from_slice(e));
    encode::command(&mut out, [&b"SET"[..], marker, next.as_bytes(), b"PX", MARKER_TTL_MS].into_iter());
    encode::command(&mut out, [&b"EXEC"[..]].into_iter());
    send(stream, &out, idle).await?;
    // MULTI's +OK, one reply per queued command (the entries, then SET),
    // then EXEC's.
    let mut replies = conn::read_replies(stream, round.len() + 3, idle).await?;
    let exec = replies.pop().unwrap_or_default();
    if scan::kind(&replies[0]) == scan::FrameKind::Error {
        return Err(UpstreamError::Refused(format!("MULTI: {}", error_text(&replies[0]))));
    }
    if scan::kind(&exec) == scan::FrameKind::Error {
        let marker_queued = replies.pop().unwrap_or_default();
        let reason = if scan::kind(&marker_queued) == scan::FrameKind::Error { marker_queued } else { exec };
        return Ok(Outcome::Aborted(replies.split_off(1), reason));
    }
    if exec.starts_with(b"*-1") {
        return Ok(Outcome::Raced);
    }
    let mut applied: Vec<Bytes> = Frames::elements(exec).map(Iterator::collect).unwrap_or_default();
    if applied.len() != round.len() + 1 {
        return Err(UpstreamError::Protocol(format!(
            "EXEC answered {} replies for {}",
            applied.len(),
            round.len() + 1
        )));
    }
    applied.truncate(round.len());
    Ok(Outcome::Applied(applied))
}

/// Deletes the marker once the journal is replayed (best effort: it
/// expires anyway, and a stale one is behind every later round).
async fn forget(stream: &mut Stream, marker: &[u8], idle: Duration) {
    let mut out = BytesMut::new();
    encode::command(&mut out, [&b"UNWATCH"[..]].into_iter());
    encode::command(&mut out, [&b"DEL"[..], marker].into_iter());
    if send(stream, &out, idle).await.is_ok() {
        let _ = conn::read_replies(stream, 2, idle).await;
    }
}

/// Writes `data`; fails if the server takes none of it for `idle`.
async fn send(stream: &mut Stream, data: &[u8], idle: Duration) -> Result<(), UpstreamError> {
    for chunk in data.chunks(64 * 1024) {
        let write = async {
            stream.write_all(chunk).await?;
            stream.flush().await
        };
        match crate::timer::timeout(idle, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(UpstreamError::ConnectionLost),
            Err(_) => return Err(UpstreamError::Timeout),
        }
    }
    Ok(())
}

/// An error that says the server cannot take writes for now (out of
/// memory, loading, a replica, …), not that the entry is wrong.
fn is_transient(reply: &[u8]) -> bool {
    const TRANSIENT: [&[u8]; 11] = [
        b"OOM",
        b"LOADING",
        b"BUSY",
        b"MASTERDOWN",
        b"MISCONF",
        b"READONLY",
        b"NOREPLICAS",
        b"TRYAGAIN",
        // A cluster's slot moved or is not served for now.
        b"MOVED",
        b"ASK",
        b"CLUSTERDOWN",
    ];
    let code = reply.get(1..).unwrap_or_default();
    TRANSIENT.iter().any(|t| code.starts_with(t))
}

/// A bulk string holding a non-negative integer.
fn bulk_number(frame: &[u8]) -> Option<u64> {
    let body = frame.strip_prefix(b"$")?.strip_suffix(b"\r\n")?;
    let eol = body.iter().position(|&b| b == b'\r')?;
    u64::try_from(parse_int(body.get(eol + 2..)?)?).ok()
}

impl Failover {
    /// The journal is empty: traffic goes upstream again. Runs under the
    /// failover lock, so no write can be journaled after this.
    fn close(&self, local: &mut Memory) {
        emptied(local);
        self.health.breaker.close();
        self.cache.failover_ended();
    }

    /// With a cluster, the journal is empty: no slot is pending, and what
    /// the store holds is forgotten (a slot failing over again starts from
    /// the near-cache, not from what it held the last time). Runs under
    /// the failover lock.
    fn close_slots(&self, local: &mut Memory) {
        emptied(local);
        if let Some(pending) = &self.pending {
            pending.clear();
        }
    }
}

/// The journal is replayed: it and the store start again empty.
fn emptied(local: &mut Memory) {
    local.store.clear();
    if let Err(e) = local.journal.clear() {
        tracing::error!(error = %e, "cannot truncate the journal file: its entries were replayed and may replay again after a restart");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failover::store::Store;
    use crate::failover::FailoverConfig;

    fn journal_of(entries: &[&str]) -> (Memory, Vec<Bytes>) {
        let (mut journal, _) = Journal::open(&FailoverConfig::default(), |_| 0).expect("in-memory journal");
        let round: Vec<Bytes> = entries.iter().map(|e| Bytes::from(e.to_string())).collect();
        round.iter().for_each(|e| journal.append(e.clone(), 0).expect("append"));
        (Memory { store: Store::new(1 << 20), journal }, round)
    }

    fn tally() -> Tally {
        Tally::new()
    }

    fn replies(frames: &[&str]) -> Vec<Bytes> {
        frames.iter().map(|f| Bytes::from(f.to_string())).collect()
    }

    /// What the journal still holds.
    fn live(local: &Memory) -> Vec<Bytes> {
        let round = local.journal.slot_round(usize::MAX, |_| true);
        round.map(|(_, round)| round.into_iter().map(|(_, entry)| entry).collect()).unwrap_or_default()
    }

    #[test]
    fn an_applied_round_leaves_and_its_errors_become_dead_letters() {
        let (mut local, round) = journal_of(&["a", "b", "c"]);
        let mut t = tally();
        let outcome = Outcome::Applied(replies(&[":1\r\n", "-WRONGTYPE no\r\n", "+OK\r\n"]));
        settle(&mut local, &round, &[0, 1, 2], outcome, &mut t).expect("settled");
        assert_eq!((local.journal.len(), local.journal.dead_letters()), (0, 1));
        assert_eq!((t.ok, t.failed), (2, 1));
    }

    #[test]
    fn an_aborted_round_loses_only_the_refused_entries() {
        let (mut local, round) = journal_of(&["a", "b", "c"]);
        let mut t = tally();
        let queued = replies(&["+QUEUED\r\n", "-ERR unknown command 'b'\r\n", "+QUEUED\r\n"]);
        let aborted = Outcome::Aborted(queued, Bytes::from("-EXECABORT\r\n"));
        settle(&mut local, &round, &[0, 1, 2], aborted, &mut t).expect("settled");
        assert_eq!(live(&local), vec![Bytes::from("a"), Bytes::from("c")], "sent again next round");
        assert_eq!((local.journal.dead_letters(), t.failed), (1, 1));
    }

    #[test]
    fn a_slots_round_leaves_by_sequence_number() {
        let (mut journal, _) = Journal::open(&FailoverConfig::default(), |_| 0).expect("in-memory journal");
        for (entry, slot) in [("a", 7), ("b", 3), ("c", 7), ("d", 7)] {
            journal.append(Bytes::from(entry), slot).expect("append");
        }
        let mut local = Memory { store: Store::new(1 << 20), journal };
        let (slot, round) = local.journal.slot_round(2, |slot| slot == 7).expect("slot 7 is ready");
        let (seqs, entries): (Vec<u64>, Vec<Bytes>) = round.into_iter().unzip();
        assert_eq!((slot, &seqs[..]), (7, &[0, 2][..]));
        let queued = replies(&["+QUEUED\r\n", "-ERR unknown command 'c'\r\n"]);
        let aborted = Outcome::Aborted(queued, Bytes::from("-EXECABORT\r\n"));
        settle(&mut local, &entries, &seqs, aborted, &mut tally()).expect("settled");
        assert_eq!(local.journal.len(), 3);
        assert_eq!(local.journal.dead_letters(), 1);
        let applied = Outcome::Applied(replies(&["+OK\r\n"]));
        settle(&mut local, &[Bytes::from("a")], &[0], applied, &mut tally()).expect("settled");
        assert_eq!(live(&local), vec![Bytes::from("b")], "slot 3's");
        assert_eq!(local.journal.slot_round(4, |slot| slot == 7).map(|(_, r)| r), Some(vec![(3, Bytes::from("d"))]));
        assert!(local.journal.holds_slot(7) && local.journal.holds_slot(3));
    }

    #[test]
    fn a_server_that_cannot_take_writes_fails_the_recovery_and_keeps_everything() {
        let (mut local, round) = journal_of(&["a", "b"]);
        let queued = replies(&["-OOM command not allowed\r\n", "-OOM command not allowed\r\n"]);
        let aborted = Outcome::Aborted(queued, Bytes::from("-EXECABORT\r\n"));
        let err = settle(&mut local, &round, &[0, 1], aborted, &mut tally());
        assert!(matches!(err, Err(UpstreamError::Refused(e)) if e.contains("OOM")));
        assert_eq!((local.journal.len(), local.journal.dead_letters()), (2, 0));
    }

    #[test]
    fn a_refused_marker_fails_the_recovery_with_the_reason() {
        let (mut local, round) = journal_of(&["a"]);
        let reason = Bytes::from("-NOPERM No permissions to access a key\r\n");
        let aborted = Outcome::Aborted(replies(&["+QUEUED\r\n"]), reason);
        let err = settle(&mut local, &round, &[0], aborted, &mut tally());
        assert!(matches!(err, Err(UpstreamError::Refused(e)) if e.contains("NOPERM")));
        assert_eq!(local.journal.len(), 1);
    }

    #[test]
    fn marker_values() {
        assert_eq!(bulk_number(b"$4\r\n1024\r\n"), Some(1024));
        assert_eq!(bulk_number(b"$2\r\n-1\r\n"), None);
        assert_eq!(bulk_number(b":3\r\n"), None);
    }
}
