//! `CLIENT PAUSE` / `CLIENT UNPAUSE`, honoured at the proxy. Forwarded, a
//! pause would stop Redis answering the proxy's own shared connections
//! (its clients' requests queue behind it, and past `stall_after` the
//! breaker takes the silence for an outage and fails over, accepting the
//! very writes the pause was meant to hold back). Held here instead, the
//! proxy's clients wait, as Redis' own would, while its connections stay
//! healthy: the pause an operator takes before switching Redis over.

use crate::commands::{Command, Flags, Handler, Local};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub struct Pause {
    epoch: Instant,
    /// When the pause ends, in milliseconds since `epoch`; 0: no pause.
    until_ms: AtomicU64,
    /// `WRITE`: only commands that may write wait.
    writes_only: AtomicBool,
    resumed: Notify,
}

impl Default for Pause {
    fn default() -> Self {
        Pause {
            epoch: Instant::now(),
            until_ms: AtomicU64::new(0),
            writes_only: AtomicBool::new(false),
            resumed: Notify::new(),
        }
    }
}

impl Pause {
    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX).max(1)
    }

    /// Pauses for `timeout` from now (a pause under way is only extended),
    /// every command or (`writes_only`) those that may write; pausing all
    /// wins over pausing writes.
    pub fn pause(&self, timeout: Duration, writes_only: bool) {
        let until = self.millis(Instant::now() + timeout);
        let all_under_way = self.active() && !self.writes_only.load(Ordering::Acquire);
        self.writes_only.store(writes_only && !all_under_way, Ordering::Release);
        self.until_ms.fetch_max(until, Ordering::AcqRel);
        tracing::info!(timeout_ms = timeout.as_millis() as u64, writes_only, "clients paused by CLIENT PAUSE");
    }

    /// Ends the pause.
    pub fn unpause(&self) {
        if self.until_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("clients unpaused");
        }
        self.resumed.notify_waiters();
    }

    /// True while a pause is under way: one atomic load when none is.
    #[inline]
    pub fn active(&self) -> bool {
        let until = self.until_ms.load(Ordering::Acquire);
        until != 0 && self.millis(Instant::now()) < until
    }

    /// True when the pause holds `cmd` back. CLIENT PAUSE and UNPAUSE never
    /// wait (the pause can always be ended); in `WRITE` mode, what may
    /// write waits: writes, scripts, PUBLISH, EXEC.
    pub fn holds(&self, cmd: &Command) -> bool {
        if !self.active() || matches!(cmd.handler, Handler::Local(Local::ClientPause | Local::ClientUnpause)) {
            return false;
        }
        !self.writes_only.load(Ordering::Acquire)
            || cmd.flags.contains(Flags::WRITE)
            || cmd.flags.contains(Flags::SCRIPT)
            || cmd.flags.contains(Flags::MAY_REPLICATE)
    }

    /// Waits until the pause ends (expires or is lifted).
    pub async fn wait(&self) {
        while self.active() {
            let until = self.until_ms.load(Ordering::Acquire);
            let left = Duration::from_millis(until.saturating_sub(self.millis(Instant::now())));
            tokio::select! {
                _ = crate::timer::sleep(left) => {}
                _ = self.resumed.notified() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::lookup;

    fn cmd(name: &str) -> &'static Command {
        lookup(name.as_bytes()).expect("known").1
    }

    #[test]
    fn write_pauses_hold_writes_only_and_all_wins() {
        let pause = Pause::default();
        assert!(!pause.holds(cmd("set")));
        pause.pause(Duration::from_secs(10), true);
        assert!(pause.holds(cmd("set")) && pause.holds(cmd("eval")) && pause.holds(cmd("publish")));
        assert!(!pause.holds(cmd("get")));
        pause.pause(Duration::from_secs(1), false);
        assert!(pause.holds(cmd("get")), "ALL wins");
        pause.pause(Duration::from_secs(1), true);
        assert!(pause.holds(cmd("get")), "a WRITE pause does not weaken an ALL pause under way");
        pause.unpause();
        assert!(!pause.active() && !pause.holds(cmd("set")));
    }

    #[tokio::test]
    async fn a_pause_expires_or_is_lifted() {
        let pause = Pause::default();
        pause.pause(Duration::from_millis(30), false);
        let started = Instant::now();
        pause.wait().await;
        assert!(started.elapsed() >= Duration::from_millis(25));
        pause.pause(Duration::from_secs(60), false);
        let waiting = async { pause.wait().await };
        let lifting = async {
            crate::timer::sleep(Duration::from_millis(20)).await;
            pause.unpause();
        };
        crate::timer::timeout(Duration::from_secs(5), async { tokio::join!(waiting, lifting) }).await.expect("lifted");
    }
}
