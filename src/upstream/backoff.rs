//! The pause between failed connection attempts, shared by the pool's
//! connections and the invalidation connection: doubling from 50 ms up to
//! `reconnect_max_backoff`, back to the start once an attempt succeeds.
//! It also counts the failures in a row, so the first of a run is logged
//! as a warning and the rest at debug level: an outage does not flood the
//! log.

use std::time::Duration;

const MIN_BACKOFF: Duration = Duration::from_millis(50);

pub struct Backoff {
    next: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff { next: MIN_BACKOFF, max, failures: 0 }
    }

    /// An attempt succeeded; true when it ends a run of failures.
    pub fn succeeded(&mut self) -> bool {
        let recovered = self.failures > 0;
        self.failures = 0;
        self.next = MIN_BACKOFF;
        recovered
    }

    /// An attempt failed: the failures in a row, and how long to wait
    /// before the next attempt.
    pub fn failed(&mut self) -> (u32, Duration) {
        self.failures += 1;
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        (self.failures, wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
