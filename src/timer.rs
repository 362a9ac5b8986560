//! The proxy's timers (sleeps, timeouts, intervals), all kept by one thread
//! of their own.
//!
//! A tokio runtime with a time driver reads the clock and walks its timer
//! wheel every time it parks, whether or not a timer is due: for a lone
//! client that is twice per request (waiting for the client, then for
//! Redis), ~950 instructions of a forwarded GET's ~7,000, though nearly no
//! request arms a timer. The worker threads' runtimes therefore have no
//! time driver: every timer in the proxy is created here, in the context of
//! the timer thread's runtime, which keeps it and wakes whoever waits on it
//! (tokio's timers may be polled from any runtime). A test in `lib.rs`
//! keeps `tokio::time`'s constructors out of the rest of the code.

use std::future::IntoFuture;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::runtime::Handle;
use tokio::time::{Instant, Interval, Sleep, Timeout};

/// The timer thread's runtime, started on first use.
fn runtime() -> &'static Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE.get_or_init(start)
}

/// Starts the timer thread: a runtime with only a time driver, parked
/// until the next timer is due (or an earlier one is armed).
fn start() -> Handle {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the timer runtime: {e}"));
    let handle = runtime.handle().clone();
    std::thread::Builder::new()
        .name("nearcache-timer".into())
        .spawn(move || runtime.block_on(std::future::pending::<()>()))
        .unwrap_or_else(|e| panic!("cannot start the timer thread: {e}"));
    handle
}

/// Starts the timer thread now rather than on the first timer: start-up
/// fails early and requests never pay for it.
pub fn init() {
    runtime();
}

/// Completes after `duration`.
pub fn sleep(duration: Duration) -> Sleep {
    let _on = runtime().enter();
    tokio::time::sleep(duration)
}

/// `future`, or `Elapsed` if it takes longer than `duration`.
pub fn timeout<F: IntoFuture>(duration: Duration, future: F) -> Timeout<F::IntoFuture> {
    let _on = runtime().enter();
    tokio::time::timeout(duration, future)
}

/// `future`, or `Elapsed` if it is not done by `deadline`.
pub fn timeout_at<F: IntoFuture>(deadline: Instant, future: F) -> Timeout<F::IntoFuture> {
    let _on = runtime().enter();
    tokio::time::timeout_at(deadline, future)
}

/// Ticks every `period`, the first tick at once.
pub fn interval(period: Duration) -> Interval {
    let _on = runtime().enter();
    tokio::time::interval(period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_work_on_a_runtime_without_a_time_driver() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_io().build().expect("runtime");
        runtime.block_on(async {
            let started = Instant::now();
            sleep(Duration::from_millis(20)).await;
            assert!(started.elapsed() >= Duration::from_millis(20));
            assert!(timeout(Duration::from_millis(10), std::future::pending::<()>()).await.is_err());
            assert_eq!(timeout(Duration::from_secs(5), async { 7 }).await.ok(), Some(7));
            let mut tick = interval(Duration::from_millis(5));
            tick.tick().await;
            tick.tick().await;
            assert!(started.elapsed() >= Duration::from_millis(35));
        });
    }
}
