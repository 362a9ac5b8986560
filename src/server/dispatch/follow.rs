//! Redis Cluster redirections, followed for the shared pool, so clients
//! never see them. A batch goes to the node the router names; when some of
//! its replies are `-MOVED slot host:port` (the slot lives elsewhere now:
//! the router learns it, and refreshes the rest of the map), `-ASK slot
//! host:port` (the key is being migrated: asked once there, after
//! `ASKING`) or `-TRYAGAIN` (a multi-key request during a migration: asked
//! again shortly), each such request is sent again where it was sent to,
//! up to [`MAX_HOPS`] times, and its reply takes the redirection's place.
//! Requests of one batch that were not redirected keep their replies: the
//! client gets every reply in its place, as one batch. A batch none of
//! whose replies is a redirection (nearly all) costs a copy of its
//! requests and a look at its replies: its [`Answer`] is the pool's own,
//! and only a redirected one starts a task to follow it. A lone batch
//! handed off to the pool's reader (`upstream::handoff`) carries the same
//! as its [`Detour`]: the reader gives it the replies holding a
//! redirection instead of writing them to the client.

use crate::observe;
use crate::protocol::scan::{Frames, Scanner};
use crate::protocol::Proto;
use crate::router::cluster::Cluster;
use crate::router::NodeId;
use crate::server::{Pools, Shared};
use crate::upstream::handoff::{Detour, Handoff};
use crate::upstream::pool::JobResult;
use crate::upstream::UpstreamError;
use bytes::{Bytes, BytesMut};
use std::any::Any;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Redirections followed for one request before its last one is the reply.
const MAX_HOPS: usize = 5;

/// How long a request answered `-TRYAGAIN` waits before it is sent again,
/// times the attempt.
const TRYAGAIN_AFTER: Duration = Duration::from_millis(20);

/// Where one batch goes.
pub struct Send<'a> {
    pub node: NodeId,
    pub proto: Proto,
    /// The session's pool connection.
    pub affinity: usize,
    pub payload: &'a [u8],
    /// Replies the payload produces (one per request).
    pub replies: usize,
    pub started: Instant,
}

/// Sends a batch on `cluster`'s pools and follows its redirections.
pub fn send(shared: &Arc<Shared>, pools: &Arc<Pools>, batch: Send) -> Answer {
    let rx = pools.get(batch.node, batch.proto).send(batch.affinity, batch.payload, batch.replies, batch.started);
    Answer { rx, resend: Some(resend(shared, pools, &batch)) }
}

/// Sets what a batch handed off on a cluster's pools takes when some of
/// its replies are redirections (they are followed, then the client gets
/// them): the last batch's, renewed in place when its replies did not
/// need it (as a rule: no allocation per batch).
pub fn set_detour(handoff: &Handoff, shared: &Arc<Shared>, pools: &Arc<Pools>, batch: &Send) {
    handoff.set_detour(|slot| {
        match slot.as_deref_mut().and_then(|last| (last as &mut dyn Any).downcast_mut::<Resend>()) {
            Some(last) => last.renew(batch),
            None => *slot = Some(resend(shared, pools, batch)),
        }
    });
}

fn resend(shared: &Arc<Shared>, pools: &Arc<Pools>, batch: &Send) -> Box<Resend> {
    Box::new(Resend {
        shared: shared.clone(),
        pools: pools.clone(),
        payload: Kept::new(batch.payload),
        node: batch.node,
        proto: batch.proto,
        affinity: batch.affinity,
    })
}

/// The replies of a batch: the pool's answer itself when none of them is
/// a redirection (most batches: nothing more to run), else those of a
/// task that follows the redirections. Awaited, or tried, as the pool's
/// answer would be.
pub struct Answer {
    rx: oneshot::Receiver<JobResult>,
    /// What following the redirections needs, until the replies are seen.
    resend: Option<Box<Resend>>,
}

/// A batch as sent, to send again where it was redirected.
struct Resend {
    shared: Arc<Shared>,
    pools: Arc<Pools>,
    payload: Kept,
    node: NodeId,
    proto: Proto,
    affinity: usize,
}

impl From<oneshot::Receiver<JobResult>> for Answer {
    /// An answer with no redirections to follow.
    fn from(rx: oneshot::Receiver<JobResult>) -> Answer {
        Answer { rx, resend: None }
    }
}

impl Answer {
    /// The replies, if they are there (as `oneshot::Receiver::try_recv`).
    pub fn try_recv(&mut self) -> Result<JobResult, oneshot::error::TryRecvError> {
        loop {
            let result = self.rx.try_recv()?;
            if let Some(result) = self.followed(result) {
                return Ok(result);
            }
        }
    }

    /// `result` when it is the answer; `None` when some of its replies are
    /// redirections, followed from now on by a task whose answer is
    /// awaited instead.
    fn followed(&mut self, result: JobResult) -> Option<JobResult> {
        match (result, self.resend.take()) {
            (Ok(replies), Some(resend)) if redirected(&replies) => {
                self.rx = resend.follow(replies);
                None
            }
            (result, _) => Some(result),
        }
    }
}

impl Future for Answer {
    type Output = Result<JobResult, oneshot::error::RecvError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let result = ready!(Pin::new(&mut self.rx).poll(cx))?;
            if let Some(result) = self.followed(result) {
                return Poll::Ready(Ok(result));
            }
        }
    }
}

impl Resend {
    /// Now keeps `batch` (of the same session: same shared state, pools).
    fn renew(&mut self, batch: &Send) {
        self.payload.set(batch.payload);
        (self.node, self.proto, self.affinity) = (batch.node, batch.proto, batch.affinity);
    }

    /// Follows the redirections among `replies` in a task of its own: its
    /// answer.
    fn follow(self: Box<Self>, replies: Bytes) -> oneshot::Receiver<JobResult> {
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(Ok(self.followed(replies).await));
        });
        rx
    }

    /// `replies` with each redirection followed.
    async fn followed(self: Box<Self>, replies: Bytes) -> Bytes {
        let Some(cluster) = self.shared.router.as_cluster() else { return replies };
        let hop = Hop { cluster, pools: &self.pools, proto: self.proto, affinity: self.affinity };
        hop.follow(self.node, &self.payload.bytes(), replies).await
    }
}

/// Requests up to this size are kept in place in their [`Resend`].
const KEPT_IN_PLACE: usize = 112;

/// A batch's requests, kept in case they are redirected: in place when
/// small (a lone request, as a rule), so keeping them costs no allocation
/// of their own.
enum Kept {
    InPlace { len: u8, bytes: [u8; KEPT_IN_PLACE] },
    Shared(Bytes),
}

impl Kept {
    fn new(payload: &[u8]) -> Kept {
        match u8::try_from(payload.len()) {
            Ok(len) if payload.len() <= KEPT_IN_PLACE => {
                let mut bytes = [0; KEPT_IN_PLACE];
                bytes[..payload.len()].copy_from_slice(payload);
                Kept::InPlace { len, bytes }
            }
            _ => Kept::Shared(Bytes::copy_from_slice(payload)),
        }
    }

    /// Keeps `payload` instead, in place when it fits.
    fn set(&mut self, payload: &[u8]) {
        match (self, u8::try_from(payload.len())) {
            (Kept::InPlace { len, bytes }, Ok(new)) if payload.len() <= KEPT_IN_PLACE => {
                bytes[..payload.len()].copy_from_slice(payload);
                *len = new;
            }
            (kept, _) => *kept = Kept::new(payload),
        }
    }

    /// The requests, to send again (rarely: a copy when in place).
    fn bytes(&self) -> Bytes {
        match self {
            Kept::InPlace { len, bytes } => Bytes::copy_from_slice(&bytes[..usize::from(*len)]),
            Kept::Shared(bytes) => bytes.clone(),
        }
    }
}

impl Detour for Resend {
    fn needed(&self, replies: &[u8]) -> bool {
        redirected(replies)
    }

    fn take(self: Box<Self>, replies: Bytes, handoff: Arc<Handoff>, count: usize, sent_at: Instant) {
        tokio::spawn(async move {
            let followed = self.followed(replies).await;
            handoff.complete(Ok(followed), count, sent_at);
        });
    }
}

/// What a reply asks for.
#[derive(Debug, PartialEq, Eq)]
enum Redirect {
    Moved { slot: u16, addr: String },
    Ask { addr: String },
    TryAgain,
}

fn redirect(reply: &[u8]) -> Option<Redirect> {
    if reply.starts_with(b"-TRYAGAIN") {
        return Some(Redirect::TryAgain);
    }
    let line = std::str::from_utf8(reply.strip_suffix(b"\r\n")?).ok()?;
    let mut words = line.split(' ');
    let (kind, slot, addr) = (words.next()?, words.next()?, words.next()?);
    match kind {
        "-MOVED" => Some(Redirect::Moved { slot: slot.parse().ok()?, addr: addr.to_string() }),
        "-ASK" => Some(Redirect::Ask { addr: addr.to_string() }),
        _ => None,
    }
}

/// True when some reply of `replies` is a redirection. They are walked
/// only when a `-` starts a line (an error reply can start nowhere else;
/// most batches have none).
fn redirected(replies: &[u8]) -> bool {
    let may_be_error = |at: usize| at == 0 || replies[..at].ends_with(b"\r\n");
    if !memchr::memchr_iter(b'-', replies).any(may_be_error) {
        return false;
    }
    let (mut scanner, mut rest) = (Scanner::default(), replies);
    while let Ok(Some(len)) = scanner.next_frame(rest) {
        let (frame, after) = rest.split_at(len);
        if frame.first() == Some(&b'-') && redirect(frame).is_some() {
            return true;
        }
        rest = after;
    }
    false
}

/// Sends requests again where they were redirected.
struct Hop<'a> {
    cluster: &'a Cluster,
    pools: &'a Pools,
    proto: Proto,
    affinity: usize,
}

impl Hop<'_> {
    /// The batch's replies with each redirection followed.
    async fn follow(&self, node: NodeId, payload: &Bytes, replies: Bytes) -> Bytes {
        let mut out = BytesMut::with_capacity(replies.len());
        for (request, reply) in Frames::new(payload.clone()).zip(Frames::new(replies)) {
            match redirect(&reply) {
                Some(first) => out.extend_from_slice(&self.resend(node, &request, reply.clone(), first).await),
                None => out.extend_from_slice(&reply),
            }
        }
        out.freeze()
    }

    /// `request`'s reply once its redirections are followed (the last one
    /// after [`MAX_HOPS`]).
    async fn resend(&self, mut node: NodeId, request: &Bytes, mut reply: Bytes, mut next: Redirect) -> Bytes {
        for attempt in 1..=MAX_HOPS {
            let asking = match next {
                Redirect::Moved { slot, addr } => {
                    observe::cluster_redirect("moved");
                    let Some(to) = self.cluster.moved(slot, &addr) else { return reply };
                    node = to;
                    false
                }
                Redirect::Ask { addr } => {
                    observe::cluster_redirect("ask");
                    let Some(to) = self.cluster.node_at(&addr) else { return reply };
                    node = to;
                    true
                }
                Redirect::TryAgain => {
                    crate::timer::sleep(TRYAGAIN_AFTER * u32::try_from(attempt).unwrap_or(u32::MAX)).await;
                    false
                }
            };
            match self.ask(node, request, asking).await {
                Ok(answer) => reply = answer,
                Err(e) => return e.reply(),
            }
            match redirect(&reply) {
                Some(again) => next = again,
                None => return reply,
            }
        }
        reply
    }

    /// Sends `request` to `node` (after `ASKING` when `asking`): its reply.
    async fn ask(&self, node: NodeId, request: &[u8], asking: bool) -> Result<Bytes, UpstreamError> {
        const ASKING: &[u8] = b"*1\r\n$6\r\nASKING\r\n";
        let mut payload = BytesMut::with_capacity(ASKING.len() + request.len());
        if asking {
            payload.extend_from_slice(ASKING);
        }
        payload.extend_from_slice(request);
        let count = 1 + usize::from(asking);
        let pool = self.pools.get(node, self.proto);
        let replies = pool
            .send(self.affinity, &payload, count, Instant::now())
            .await
            .unwrap_or(Err(UpstreamError::ConnectionLost))?;
        // ASKING's `+OK` first, when sent.
        Frames::new(replies)
            .nth(usize::from(asking))
            .ok_or_else(|| UpstreamError::Protocol("a reply missing after a redirection".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirections_are_recognised() {
        assert_eq!(
            redirect(b"-MOVED 3999 127.0.0.1:6381\r\n"),
            Some(Redirect::Moved { slot: 3999, addr: "127.0.0.1:6381".into() })
        );
        assert_eq!(redirect(b"-ASK 3999 127.0.0.1:6381\r\n"), Some(Redirect::Ask { addr: "127.0.0.1:6381".into() }));
        assert_eq!(redirect(b"-TRYAGAIN Multiple keys request during rehashing of slot\r\n"), Some(Redirect::TryAgain));
        assert_eq!(redirect(b"-ERR MOVED\r\n"), None);
        assert_eq!(redirect(b"-MOVED x 127.0.0.1:6381\r\n"), None);
        assert!(redirected(b"+OK\r\n-MOVED 1 h:1\r\n"));
        assert!(!redirected(b"+OK\r\n$5\r\n-MOVE\r\n"));
        assert!(redirected(b"-MOVED 1 h:1\r\n$-1\r\n"));
        assert!(!redirected(b"$-1\r\n:-1\r\n$3\r\na-b\r\n-ERR x\r\n"));
        assert!(redirected(b"$6\r\n\r\n-ASK\r\n-ASK 7 h:2\r\n"));
    }

    #[test]
    fn requests_are_kept_whole_in_place_or_shared() {
        for len in [0, 1, KEPT_IN_PLACE, KEPT_IN_PLACE + 1, 4096] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let kept = Kept::new(&payload);
            assert_eq!(matches!(kept, Kept::InPlace { .. }), len <= KEPT_IN_PLACE, "{len}");
            assert_eq!(kept.bytes(), payload);
        }
    }

    #[test]
    fn kept_requests_are_renewed_whole_whatever_the_sizes() {
        let sizes = [0, 5, KEPT_IN_PLACE, KEPT_IN_PLACE + 1, 4096];
        for from in sizes {
            for to in sizes {
                let mut kept = Kept::new(&vec![1; from]);
                let payload: Vec<u8> = (0..to).map(|i| i as u8).collect();
                kept.set(&payload);
                assert_eq!(kept.bytes(), payload, "{from} -> {to}");
                assert_eq!(matches!(kept, Kept::InPlace { .. }), to <= KEPT_IN_PLACE, "{from} -> {to}");
            }
        }
    }
}
