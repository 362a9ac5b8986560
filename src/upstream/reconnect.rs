//! Reconnecting: the loop that keeps one upstream connection open for the
//! life of the process, written once for the pool's connections and the
//! invalidation connection. It connects, serves the connection until it is
//! lost, and connects again at once: a lost connection is not an outage
//! (one lost as soon as it was made, as with `maxclients`, is replaced
//! after a wait that doubles like a failed attempt's, not in a spin).
//! When connecting fails it tells the circuit breaker (a fresh connection
//! that cannot be established is an outage) and waits before the next
//! attempt: doubling from 50 ms up to `reconnect_max_backoff`, back to the
//! start once an attempt succeeds, and cut short when the circuit
//! half-opens, so the connection is back as soon as the upstream is
//! probed. The first failure of a run is logged as a warning and the rest
//! at debug level: an outage does not flood the log. A cluster node that
//! rests (serves no slot) is not connected to until it wakes.

use super::breaker::Breaker;
use super::{UpstreamError, UpstreamUrl};
use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};
use tokio::sync::futures::Notified;

const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// A connection lost sooner than this after it was made is not replaced at
/// once: the next one waits, doubling like failed attempts.
const SHORT_LIVED: Duration = Duration::from_millis(100);

/// One connection's reconnect loop: what it needs besides its steps.
pub struct Reconnect<'a> {
    /// The bound of the wait between failed attempts.
    pub max_backoff: Duration,
    /// Told of each connect failure; its half-opening ends a wait.
    pub breaker: &'a Breaker,
    /// Logged (warn) for the first failure of a run.
    pub unreachable: &'static str,
    /// Logged (debug) for the later ones, with their count.
    pub still_unreachable: &'static str,
    /// The connection's fields in those logs, where it has them.
    pub upstream: Option<&'a UpstreamUrl>,
    pub slot: Option<usize>,
}

/// The error of a failed attempt, which may have got past connecting (and
/// failed at a later step, such as turning tracking on).
pub trait AttemptError: Display {
    /// The connect failure, when no connection could be opened: an outage.
    fn connect_failure(&self) -> Option<&UpstreamError>;
}

impl AttemptError for UpstreamError {
    fn connect_failure(&self) -> Option<&UpstreamError> {
        Some(self)
    }
}

impl Reconnect<'_> {
    /// Runs forever: `connect`, then `serve` the connection until it is
    /// lost (told whether it ends a run of failures), and again. A failed
    /// attempt is reported and logged, its error handed to `failed`, and
    /// the next one waits.
    pub async fn run<T, E: AttemptError, C, S>(
        self,
        mut connect: impl FnMut() -> C,
        mut serve: impl FnMut(T, bool) -> S,
        mut failed: impl FnMut(E),
    ) where
        C: Future<Output = Result<T, E>>,
        S: Future<Output = ()>,
    {
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            self.breaker.rest.awake().await;
            // Listening from before the attempt: a half-opening during it
            // (another connection got through) still cuts the wait short.
            let probing = self.breaker.probing.notified();
            tokio::pin!(probing);
            probing.as_mut().enable();
            match connect().await {
                Ok(conn) => {
                    self.breaker.connected();
                    let opened = Instant::now();
                    serve(conn, backoff.succeeded()).await;
                    if opened.elapsed() < SHORT_LIVED {
                        // Closed as soon as it was made (`maxclients`, a
                        // proxy in between that drops each connection):
                        // reconnecting at once would spin.
                        let wait = backoff.lost_at_once();
                        tracing::debug!(
                            upstream = self.upstream.map(tracing::field::display),
                            slot = self.slot,
                            ?wait,
                            "connection lost as soon as it was made: waiting before the next"
                        );
                        pause(wait, probing).await;
                    } else {
                        backoff.lived();
                    }
                }
                Err(err) => {
                    let refused = err.connect_failure().is_some_and(UpstreamError::is_refusal);
                    if let Some(e) = err.connect_failure() {
                        self.breaker.connect_failed(e);
                    }
                    let (failures, wait) = backoff.failed();
                    let upstream = self.upstream.map(tracing::field::display);
                    if failures == 1 && refused {
                        tracing::warn!(upstream, slot = self.slot, error = %err, "upstream answers but refused the connection (no outage: its requests get the refusal), retrying");
                    } else if failures == 1 {
                        tracing::warn!(upstream, slot = self.slot, error = %err, "{}", self.unreachable);
                    } else {
                        tracing::debug!(upstream, slot = self.slot, error = %err, failures, "{}", self.still_unreachable);
                    }
                    failed(err);
                    pause(wait, probing).await;
                }
            }
        }
    }
}

/// Waits `wait`, or less if the circuit half-opens meanwhile (the upstream
/// answers again: connect now).
async fn pause(wait: Duration, probing: Pin<&mut Notified<'_>>) {
    tokio::select! {
        _ = crate::timer::sleep(wait) => {}
        _ = probing => {}
    }
}

/// The wait before the next attempt, and the failures in a row; and the
/// wait after a connection lost as soon as it was made.
struct Backoff {
    next: Duration,
    max: Duration,
    failures: u32,
    after_short: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Backoff {
        Backoff { next: MIN_BACKOFF, max, failures: 0, after_short: MIN_BACKOFF }
    }

    /// A connection was lost as soon as it was made: how long to wait
    /// before the next attempt.
    fn lost_at_once(&mut self) -> Duration {
        let wait = self.after_short;
        self.after_short = (self.after_short * 2).min(self.max.max(MIN_BACKOFF));
        wait
    }

    /// A connection lived: the next one lost is replaced at once.
    fn lived(&mut self) {
        self.after_short = MIN_BACKOFF;
    }

    /// An attempt succeeded; true when it ends a run of failures.
    fn succeeded(&mut self) -> bool {
        let recovered = self.failures > 0;
        self.failures = 0;
        self.next = MIN_BACKOFF;
        recovered
    }

    /// An attempt failed: the failures in a row, and how long to wait
    /// before the next attempt.
    fn failed(&mut self) -> (u32, Duration) {
        self.failures += 1;
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        (self.failures, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::ready;

    #[test]
    fn doubles_up_to_the_bound_and_starts_over_after_a_success() {
        let mut b = Backoff::new(Duration::from_millis(150));
        let waits: Vec<_> = (0..4).map(|_| b.failed()).collect();
        let ms = |n| Duration::from_millis(n);
        assert_eq!(waits, [(1, ms(50)), (2, ms(100)), (3, ms(150)), (4, ms(150))]);
        assert!(b.succeeded());
        assert!(!b.succeeded());
        assert_eq!(b.failed(), (1, ms(50)));
    }

    /// A reconnect loop of `breaker`'s that waits 1 ms at most.
    fn quick(breaker: &Breaker) -> Reconnect<'_> {
        Reconnect {
            max_backoff: Duration::from_millis(1),
            breaker,
            unreachable: "unreachable",
            still_unreachable: "still unreachable",
            upstream: None,
            slot: None,
        }
    }

    #[tokio::test]
    async fn reconnects_after_a_loss_and_after_a_wait_when_connecting_fails() {
        let breaker = Breaker::new(Default::default(), "test".into());
        let reconnect = quick(&breaker);
        let mut attempts = 0;
        let mut failed = Vec::new();
        let (served, mut connections) = tokio::sync::mpsc::unbounded_channel();
        let forever = reconnect.run(
            || {
                attempts += 1;
                ready(if (2..=3).contains(&attempts) { Err(UpstreamError::ConnectTimeout) } else { Ok(attempts) })
            },
            |attempt, recovered| {
                let _ = served.send((attempt, recovered));
                // A served connection is lost at once, after a turn for the test.
                tokio::task::yield_now()
            },
            |err| failed.push(err),
        );
        let first_three = async {
            let mut got = Vec::new();
            while got.len() < 3 {
                got.extend(connections.recv().await);
            }
            got
        };
        tokio::select! {
            () = forever => panic!("the loop ended"),
            got = first_three => assert_eq!(got, [(1, false), (4, true), (5, false)]),
        }
        assert_eq!(failed, [UpstreamError::ConnectTimeout, UpstreamError::ConnectTimeout]);
        assert!(!breaker.allows(), "a connect failure opens the circuit");
    }

    #[test]
    fn connections_lost_at_once_wait_longer_each_time_until_one_lives() {
        let mut b = Backoff::new(Duration::from_millis(150));
        let ms = |n| Duration::from_millis(n);
        let waits: Vec<_> = (0..4).map(|_| b.lost_at_once()).collect();
        assert_eq!(waits, [ms(50), ms(100), ms(150), ms(150)]);
        assert!(!b.succeeded(), "not a failure");
        assert_eq!(b.lost_at_once(), ms(150), "a connect that succeeds does not reset it");
        b.lived();
        assert_eq!(b.lost_at_once(), ms(50));
    }

    #[tokio::test]
    async fn connections_lost_as_soon_as_made_are_not_replaced_in_a_spin() {
        let breaker = Breaker::new(Default::default(), "test".into());
        let reconnect = quick(&breaker);
        let attempts = std::cell::Cell::new(0);
        let forever = reconnect.run(
            || {
                attempts.set(attempts.get() + 1);
                ready(Ok::<_, UpstreamError>(()))
            },
            |(), _| ready(()),
            |_: UpstreamError| {},
        );
        assert!(crate::timer::timeout(Duration::from_millis(200), forever).await.is_err());
        assert!((2..=6).contains(&attempts.get()), "{} connections in 200 ms", attempts.get());
        assert!(breaker.allows(), "not an outage");
    }

    #[tokio::test]
    async fn a_connection_that_lived_is_replaced_at_once() {
        let breaker = Breaker::new(Default::default(), "test".into());
        let reconnect = quick(&breaker);
        let connects = std::cell::RefCell::new(Vec::new());
        let lost = std::cell::Cell::new(None);
        let forever = reconnect.run(
            || {
                connects.borrow_mut().push(Instant::now());
                ready(Ok::<_, UpstreamError>(()))
            },
            |(), _| async {
                crate::timer::sleep(SHORT_LIVED + Duration::from_millis(10)).await;
                lost.set(Some(Instant::now()));
            },
            |_: UpstreamError| {},
        );
        let _ = crate::timer::timeout(SHORT_LIVED * 2, forever).await;
        let (lost, again) = (lost.get().expect("served"), connects.borrow()[1]);
        assert!(again - lost < Duration::from_millis(30), "replaced after {:?}", again - lost);
    }

    #[tokio::test]
    async fn a_half_opening_during_a_failed_attempt_cuts_its_wait_short() {
        let breaker = Breaker::new(Default::default(), "test".into());
        let reconnect = quick(&breaker);
        let attempts = std::cell::RefCell::new(Vec::new());
        let forever = reconnect.run(
            || {
                attempts.borrow_mut().push(Instant::now());
                if attempts.borrow().len() == 1 {
                    // Another connection got through meanwhile: probing.
                    breaker.stalled(Duration::from_secs(1));
                    breaker.answered();
                }
                ready(Err::<(), _>(UpstreamError::ConnectTimeout))
            },
            |(), _| ready(()),
            |_| {},
        );
        let _ = crate::timer::timeout(Duration::from_millis(40), forever).await;
        let attempts = attempts.borrow();
        assert!(attempts.len() >= 2, "the wait after the first attempt was not cut short");
        assert!(attempts[1] - attempts[0] < Duration::from_millis(30), "{:?}", attempts[1] - attempts[0]);
    }

    #[tokio::test]
    async fn a_resting_node_is_not_connected_to_until_it_wakes() {
        let breaker = Breaker::new(Default::default(), "test".into());
        breaker.rest.rest();
        let reconnect = quick(&breaker);
        let attempts = std::cell::Cell::new(0);
        let forever = reconnect.run(
            || {
                attempts.set(attempts.get() + 1);
                ready(Err::<(), _>(UpstreamError::ConnectTimeout))
            },
            |(), _| ready(()),
            |_| {},
        );
        tokio::pin!(forever);
        assert!(crate::timer::timeout(Duration::from_millis(30), forever.as_mut()).await.is_err());
        assert_eq!(attempts.get(), 0, "dialled while resting");
        breaker.rest.wake();
        assert!(crate::timer::timeout(Duration::from_millis(30), forever.as_mut()).await.is_err());
        assert!(attempts.get() > 0, "not dialled once awake");
    }
}
