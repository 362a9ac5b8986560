//! A lone client's replies, written by the pool's reader straight to the
//! client's socket.
//!
//! A client that sends one request and waits for its reply (most
//! application connections) would otherwise cost a task hop per reply: the
//! reader hands the replies to the session, which wakes only to write
//! them. When nothing else is owed to the client and its replies need no
//! work (no near-cache fill, no tenant map, nothing suppressed), the
//! session hands its socket to the batch instead: the reader writes the
//! replies as they arrive, and the session learns it was done the next
//! time it wakes anyway (the client's next request). Whatever the reader
//! cannot write whole (the socket is full, the batch failed) goes back to
//! the session, which is then woken and carries on as with any reply.
//!
//! A session has one handoff for its whole life, used by at most one batch
//! at a time (the session only hands off when nothing else is owed). On a
//! Redis Cluster the session sets the batch's [`Detour`] in it too: replies
//! holding a redirection go there instead of to the client, and come back
//! through [`Handoff::complete`] once it is followed.

use super::pool::JobResult;
use super::UpstreamError;
use crate::observe;
use atomic_waker::AtomicWaker;
use bytes::{Buf, Bytes, BytesMut};
use std::any::Any;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Instant;

/// The client's end: its socket, and what a delivery means for it.
pub trait ClientEnd: Send + Sync {
    /// Writes what the socket takes now (`WouldBlock`: nothing).
    fn try_write(&self, data: &[u8]) -> io::Result<usize>;
    /// The replies reached the client (it may idle from now on).
    fn delivered(&self);
}

/// Replies of a handed-off batch that need more work before the client
/// sees them (a Redis Cluster's redirections, followed by the layer that
/// knows how): that layer completes the handoff once it is done. A detour
/// the replies did not need stays in the handoff, for that layer to renew
/// for the next batch (`Any`: it knows its own type).
pub trait Detour: Any + Send {
    /// True when `replies` need it.
    fn needed(&self, replies: &[u8]) -> bool;
    /// Does it for `replies` (of `count` requests sent at `sent_at`), then
    /// completes `handoff` with what the client is to get.
    fn take(self: Box<Self>, replies: Bytes, handoff: Arc<Handoff>, count: usize, sent_at: Instant);
}

/// How a handed-off batch ended.
pub enum Outcome {
    /// Its replies were written to the client.
    Delivered,
    /// What is left for the session to write (the part the socket did not
    /// take), or why the batch failed.
    Returned(JobResult),
}

/// Where the batch stands, in [`Handoff::state`].
const RUNNING: u8 = 0;
const DELIVERED: u8 = 1;
const RETURNED: u8 = 2;

/// A delivery, the common end, is one atomic store for the reader and one
/// load for the session (both on one worker thread, as a rule): no lock.
/// What comes back is rare and kept behind a mutex. `state` and `eager`
/// are sequentially consistent: the reader stores the state then reads
/// `eager`, the session stores `eager` then reads the state, and at least
/// one of them sees the other's store, so a delivery the session waits for
/// is never missed.
pub struct Handoff {
    client: Box<dyn ClientEnd>,
    state: AtomicU8,
    /// What came back, once `state` says `RETURNED`.
    returned: Mutex<Option<JobResult>>,
    /// The session, when it waits for the outcome.
    waker: AtomicWaker,
    /// It is to be woken for a delivery too, not only for what comes back.
    eager: AtomicBool,
    /// A cluster session's: the detour the batch's replies may need, set
    /// by the session as it hands the batch off; `None` on one Redis.
    detour: Option<Mutex<Option<Box<dyn Detour>>>>,
}

impl Handoff {
    /// The handoff of a session whose batches may need a [`Detour`] when
    /// `detours` (a cluster's).
    pub fn new(client: Box<dyn ClientEnd>, detours: bool) -> Handoff {
        Handoff {
            client,
            state: AtomicU8::new(RUNNING),
            returned: Mutex::new(None),
            waker: AtomicWaker::new(),
            eager: AtomicBool::new(false),
            detour: detours.then(|| Mutex::new(None)),
        }
    }

    /// The session's side: `set` gives the batch it is handing off the
    /// detour its replies take if they need it (the last batch's, when it
    /// is still there, renewed).
    pub fn set_detour(&self, set: impl FnOnce(&mut Option<Box<dyn Detour>>)) {
        if let Some(slot) = &self.detour {
            set(&mut slot.lock().unwrap_or_else(PoisonError::into_inner));
        }
    }

    /// The reader's side: the batch's detour, taken, when `replies` need
    /// it.
    #[inline]
    pub(super) fn detour(&self, replies: &[u8]) -> Option<Box<dyn Detour>> {
        self.detour.as_ref().and_then(|slot| taken(slot, replies))
    }

    /// The reader's side (or a [`Detour`]'s): the batch's replies (`count`
    /// commands, sent at `sent_at`) or its failure.
    pub fn complete(&self, result: JobResult, count: usize, sent_at: Instant) {
        let outcome = match result {
            Ok(replies) => {
                observe::command_duration(sent_at.elapsed(), count);
                match self.write(&replies) {
                    None => Outcome::Delivered,
                    Some(taken) => Outcome::Returned(Ok(replies.slice(taken..))),
                }
            }
            Err(e) => Outcome::Returned(Err(e)),
        };
        self.settle(outcome);
    }

    /// The reader's side, replies still in its read buffer: the first
    /// `len` bytes of `rbuf`, taken from it. Written from there, they need
    /// no `Bytes` of their own unless some come back.
    pub(super) fn deliver(&self, rbuf: &mut BytesMut, len: usize, count: usize, sent_at: Instant) {
        observe::command_duration(sent_at.elapsed(), count);
        let outcome = match self.write(&rbuf[..len]) {
            None => {
                rbuf.advance(len);
                Outcome::Delivered
            }
            Some(taken) => Outcome::Returned(Ok(rbuf.split_to(len).freeze().slice(taken..))),
        };
        self.settle(outcome);
    }

    fn settle(&self, outcome: Outcome) {
        match outcome {
            Outcome::Delivered => {
                self.state.store(DELIVERED, SeqCst);
                if self.eager.load(SeqCst) {
                    self.waker.wake();
                }
            }
            Outcome::Returned(result) => {
                *self.returned.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
                self.state.store(RETURNED, SeqCst);
                self.waker.wake();
            }
        }
    }

    /// Writes `replies` to the client: `None` when it took them all, else
    /// the bytes it took (none when the socket would block or failed: the
    /// session then sees the same).
    fn write(&self, replies: &[u8]) -> Option<usize> {
        match self.client.try_write(replies) {
            Ok(n) if n == replies.len() => {
                self.client.delivered();
                None
            }
            Ok(n) => Some(n),
            Err(_) => Some(0),
        }
    }

    /// The session's side: the outcome, if the batch has ended.
    #[inline]
    pub fn take(&self) -> Option<Outcome> {
        if self.state.load(SeqCst) == RUNNING {
            return None;
        }
        match self.state.swap(RUNNING, SeqCst) {
            DELIVERED => Some(Outcome::Delivered),
            RETURNED => {
                let returned = self.returned.lock().unwrap_or_else(PoisonError::into_inner).take();
                Some(Outcome::Returned(returned.unwrap_or(Err(UpstreamError::ConnectionLost))))
            }
            _ => None,
        }
    }

    /// The outcome, or `Pending` with the session woken once there is one
    /// to act on: anything that comes back, and a delivery too when
    /// `eager` (a session waiting only for its client's next request
    /// learns of a delivery then).
    pub fn poll_outcome(&self, cx: &mut Context<'_>, eager: bool) -> Poll<Outcome> {
        self.eager.store(eager, SeqCst);
        self.waker.register(cx.waker());
        match self.state.load(SeqCst) {
            RUNNING => Poll::Pending,
            // Not eager, a delivery waits for `take` (the session's next
            // request): acting on it now would cost the session a turn of
            // its loop for nothing to write.
            DELIVERED if !eager => Poll::Pending,
            _ => self.take().map_or(Poll::Pending, Poll::Ready),
        }
    }
}

/// The detour in `slot`, taken, when `replies` need it.
#[inline(never)]
fn taken(slot: &Mutex<Option<Box<dyn Detour>>>, replies: &[u8]) -> Option<Box<dyn Detour>> {
    let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
    if slot.as_ref()?.needed(replies) {
        slot.take()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::task::{Wake, Waker};

    /// A client socket that takes at most `room` bytes per write.
    struct Socket {
        room: usize,
        delivered: AtomicUsize,
    }

    impl ClientEnd for Arc<Socket> {
        fn try_write(&self, data: &[u8]) -> io::Result<usize> {
            Ok(data.len().min(self.room))
        }
        fn delivered(&self) {
            self.delivered.fetch_add(1, SeqCst);
        }
    }

    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    fn handoff(room: usize) -> (Handoff, Arc<Socket>) {
        let socket = Arc::new(Socket { room, delivered: AtomicUsize::new(0) });
        (Handoff::new(Box::new(socket.clone()), false), socket)
    }

    fn waker() -> (Arc<Wakes>, Waker) {
        let wakes = Arc::new(Wakes::default());
        (wakes.clone(), Waker::from(wakes))
    }

    /// A session waiting lazily, then its batch's `+OK` arriving for a
    /// socket that takes `room` bytes.
    fn answered_while_lazy(room: usize) -> (Handoff, Arc<Socket>, Arc<Wakes>, Waker) {
        let (handoff, socket) = handoff(room);
        let (wakes, waker) = waker();
        assert!(handoff.poll_outcome(&mut Context::from_waker(&waker), false).is_pending());
        handoff.complete(Ok(Bytes::from_static(b"+OK\r\n")), 1, Instant::now());
        (handoff, socket, wakes, waker)
    }

    #[test]
    fn a_delivery_waits_for_take_unless_the_session_is_eager() {
        let (handoff, socket, wakes, waker) = answered_while_lazy(1024);
        let mut cx = Context::from_waker(&waker);
        assert_eq!(socket.delivered.load(SeqCst), 1);
        assert_eq!(wakes.0.load(SeqCst), 0, "not woken for a delivery");
        assert!(handoff.poll_outcome(&mut cx, false).is_pending(), "left for take");
        assert!(matches!(handoff.take(), Some(Outcome::Delivered)));
        assert!(handoff.take().is_none());
        // Eager: woken, and the poll has it.
        assert!(handoff.poll_outcome(&mut cx, true).is_pending());
        handoff.complete(Ok(Bytes::from_static(b"+OK\r\n")), 1, Instant::now());
        assert_eq!(wakes.0.load(SeqCst), 1);
        assert!(matches!(handoff.poll_outcome(&mut cx, true), Poll::Ready(Outcome::Delivered)));
        assert!(handoff.take().is_none());
    }

    #[test]
    fn what_the_socket_did_not_take_and_failures_come_back_and_wake() {
        let (handoff, socket, wakes, waker) = answered_while_lazy(3);
        let mut cx = Context::from_waker(&waker);
        assert_eq!(socket.delivered.load(SeqCst), 0);
        assert_eq!(wakes.0.load(SeqCst), 1);
        match handoff.poll_outcome(&mut cx, false) {
            Poll::Ready(Outcome::Returned(Ok(rest))) => assert_eq!(&rest[..], b"\r\n"),
            _ => panic!("the rest comes back"),
        }
        assert!(handoff.poll_outcome(&mut cx, false).is_pending());
        handoff.complete(Err(UpstreamError::ConnectionLost), 1, Instant::now());
        assert_eq!(wakes.0.load(SeqCst), 2);
        assert!(matches!(handoff.take(), Some(Outcome::Returned(Err(UpstreamError::ConnectionLost)))));
    }

    /// Replies still in the reader's buffer: written from there and taken
    /// from it, or what the socket did not take comes back.
    #[test]
    fn replies_are_delivered_from_the_read_buffer_and_taken_from_it() {
        for (room, rest) in [(1024, &b""[..]), (3, &b"\r\n"[..]), (0, &b"+OK\r\n"[..])] {
            let (handoff, socket) = handoff(room);
            let mut rbuf = BytesMut::from(&b"+OK\r\n:1"[..]);
            handoff.deliver(&mut rbuf, 5, 1, Instant::now());
            assert_eq!(&rbuf[..], b":1", "the next batch's bytes stay");
            match handoff.take() {
                Some(Outcome::Delivered) => assert!(rest.is_empty() && socket.delivered.load(SeqCst) == 1),
                Some(Outcome::Returned(Ok(back))) => assert_eq!(&back[..], rest),
                _ => panic!("no outcome for room {room}"),
            }
        }
    }

    /// The reader on another thread, racing the session's poll: an eager
    /// session that got `Pending` is woken for the delivery, every time.
    #[test]
    fn no_delivery_is_missed_across_threads() {
        let (handoff, _socket) = handoff(1024);
        let handoff = Arc::new(handoff);
        let rounds = 5_000;
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let reader = {
            let handoff = handoff.clone();
            std::thread::spawn(move || {
                for _ in 0..rounds {
                    go_rx.recv().expect("go");
                    handoff.complete(Ok(Bytes::from_static(b":1\r\n")), 1, Instant::now());
                }
            })
        };
        for _ in 0..rounds {
            go_tx.send(()).expect("send");
            let (wakes, waker) = waker();
            let mut cx = Context::from_waker(&waker);
            if handoff.poll_outcome(&mut cx, true).is_pending() {
                let deadline = Instant::now() + std::time::Duration::from_secs(5);
                while wakes.0.load(SeqCst) == 0 {
                    assert!(Instant::now() < deadline, "a delivery was missed");
                    std::thread::yield_now();
                }
                assert!(matches!(handoff.poll_outcome(&mut cx, true), Poll::Ready(Outcome::Delivered)));
            }
        }
        reader.join().expect("reader");
    }

    /// A detour needed by replies starting with `-`.
    struct Dash;

    impl Detour for Dash {
        fn needed(&self, replies: &[u8]) -> bool {
            replies.starts_with(b"-")
        }
        fn take(self: Box<Self>, replies: Bytes, handoff: Arc<Handoff>, count: usize, sent_at: Instant) {
            handoff.complete(Ok(replies), count, sent_at);
        }
    }

    #[test]
    fn a_batch_takes_its_detour_once_and_only_when_its_replies_need_it() {
        let socket = Arc::new(Socket { room: 64, delivered: AtomicUsize::new(0) });
        let handoff = Handoff::new(Box::new(socket.clone()), true);
        handoff.set_detour(|slot| *slot = Some(Box::new(Dash)));
        assert!(handoff.detour(b"+OK\r\n").is_none(), "not needed");
        let mut kept = false;
        handoff.set_detour(|slot| kept = slot.as_deref_mut().is_some_and(|d| (d as &mut dyn Any).is::<Dash>()));
        assert!(kept, "a detour not needed stays, to be renewed");
        assert!(handoff.detour(b"-MOVED 1 h:1\r\n").is_some());
        assert!(handoff.detour(b"-MOVED 1 h:1\r\n").is_none(), "taken once");
        handoff.set_detour(|slot| kept = slot.is_some());
        assert!(!kept, "a detour taken is gone");
        let single = Handoff::new(Box::new(socket), false);
        single.set_detour(|slot| *slot = Some(Box::new(Dash)));
        assert!(single.detour(b"-MOVED 1 h:1\r\n").is_none(), "one Redis takes no detour");
    }
}
