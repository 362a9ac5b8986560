//! What the client registry knows of a session: when it last exchanged
//! something and whether it may idle (for the idle-timeout reaper), and its
//! tenant (for closing a revoked tenant's clients). Sessions write the time
//! at almost no cost: relaxed atomic stores of a coarse clock the reaper
//! itself advances, no clock read per request.

use crate::tenancy::Tenant;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

/// The process' time origin, so instants fit in an atomic.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn millis(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin()).as_millis()).unwrap_or(u64::MAX)
}

/// Coarse "now" in milliseconds since the origin, advanced by [`tick`].
static NOW_MS: AtomicU64 = AtomicU64::new(0);

/// Advances the coarse clock (the reaper calls it every round).
pub fn tick() {
    NOW_MS.store(millis(Instant::now()), Ordering::Relaxed);
}

#[derive(Debug)]
pub struct Activity {
    last_ms: AtomicU64,
    exempt: AtomicBool,
    /// Set on AUTH and RESET, not per request.
    tenant: Mutex<Option<Arc<Tenant>>>,
}

impl Default for Activity {
    fn default() -> Self {
        tick();
        Activity {
            last_ms: AtomicU64::new(NOW_MS.load(Ordering::Relaxed)),
            exempt: AtomicBool::new(false),
            tenant: Mutex::new(None),
        }
    }
}

impl Activity {
    /// The client sent or received something just now.
    pub fn touch(&self) {
        self.last_ms.store(NOW_MS.load(Ordering::Relaxed), Ordering::Relaxed);
    }

    /// The client is waiting for replies, or holds upstream state
    /// (subscriptions, a blocked command, a transaction…): it may be silent
    /// for long without being idle.
    pub fn set_exempt(&self, exempt: bool) {
        self.exempt.store(exempt, Ordering::Relaxed);
    }

    pub fn is_exempt(&self) -> bool {
        self.exempt.load(Ordering::Relaxed)
    }

    /// The client now acts as `tenant` (or none).
    pub fn set_tenant(&self, tenant: Option<Arc<Tenant>>) {
        *self.tenant.lock().unwrap_or_else(PoisonError::into_inner) = tenant;
    }

    /// The name of the client's tenant, if a reload revoked it.
    pub fn revoked_tenant(&self) -> Option<String> {
        let tenant = self.tenant.lock().unwrap_or_else(PoisonError::into_inner);
        tenant.as_ref().filter(|t| t.is_revoked()).map(|t| t.name().to_string())
    }

    /// Time since the last touch, by the coarse clock.
    pub fn idle_for(&self) -> Duration {
        let now = NOW_MS.load(Ordering::Relaxed);
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}
