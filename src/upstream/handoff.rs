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
//! at a time (the session only hands off when nothing else is owed).

use super::pool::JobResult;
use crate::observe;
use bytes::Bytes;
use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// The client's end: its socket, and what a delivery means for it.
pub trait ClientEnd: Send + Sync {
    /// Writes what the socket takes now (`WouldBlock`: nothing).
    fn try_write(&self, data: &[u8]) -> io::Result<usize>;
    /// The replies reached the client (it may idle from now on).
    fn delivered(&self);
}

/// How a handed-off batch ended.
pub enum Outcome {
    /// Its replies were written to the client.
    Delivered,
    /// What is left for the session to write (the part the socket did not
    /// take), or why the batch failed.
    Returned(JobResult),
}

pub struct Handoff {
    client: Box<dyn ClientEnd>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    outcome: Option<Outcome>,
    /// The session, when it waits for the outcome.
    waker: Option<Waker>,
    /// It is to be woken for a delivery too, not only for what comes back.
    eager: bool,
}

impl Handoff {
    pub fn new(client: Box<dyn ClientEnd>) -> Handoff {
        Handoff { client, state: Mutex::new(State::default()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The reader's side: the batch's replies (`count` commands, sent at
    /// `sent_at`) or its failure.
    pub(super) fn complete(&self, result: JobResult, count: usize, sent_at: Instant) {
        let outcome = match result {
            Ok(replies) => {
                observe::command_duration(sent_at.elapsed(), count);
                self.write(replies)
            }
            Err(e) => Outcome::Returned(Err(e)),
        };
        let returned = matches!(outcome, Outcome::Returned(_));
        let waker = {
            let mut state = self.lock();
            state.outcome = Some(outcome);
            if returned || state.eager {
                state.waker.take()
            } else {
                None
            }
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn write(&self, replies: Bytes) -> Outcome {
        match self.client.try_write(&replies) {
            Ok(n) if n == replies.len() => {
                self.client.delivered();
                Outcome::Delivered
            }
            // The rest (all of it when the socket took nothing or failed:
            // the session then sees the same).
            Ok(n) => Outcome::Returned(Ok(replies.slice(n..))),
            Err(_) => Outcome::Returned(Ok(replies)),
        }
    }

    /// The session's side: the outcome, if the batch has ended.
    pub fn take(&self) -> Option<Outcome> {
        self.lock().outcome.take()
    }

    /// The outcome, or `Pending` with the session woken once there is one
    /// to act on: anything that comes back, and a delivery too when
    /// `eager` (a session waiting only for its client's next request
    /// learns of a delivery then).
    pub fn poll_outcome(&self, cx: &mut Context<'_>, eager: bool) -> Poll<Outcome> {
        let mut state = self.lock();
        // Not eager, a delivery waits for `take` (the session's next
        // request): acting on it now would cost the session a turn of its
        // loop for nothing to write. Nothing more comes of this batch.
        if !eager && matches!(state.outcome, Some(Outcome::Delivered)) {
            return Poll::Pending;
        }
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                state.eager = eager;
                if !state.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                    state.waker = Some(cx.waker().clone());
                }
                Poll::Pending
            }
        }
    }
}
