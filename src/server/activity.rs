//! What the client registry knows of a session: when it last exchanged
//! something and whether it may idle (for the idle-timeout reaper), its
//! tenant (for closing a revoked tenant's clients), and what `CLIENT LIST`
//! shows of it (addresses, name, library, database, subscriptions, last
//! command). Sessions write the time and the last command at almost no
//! cost: relaxed atomic stores (of a coarse clock the reaper itself
//! advances: no clock read per request); the rest only when a command
//! changes the connection's state.

use super::dispatch::route::ClientState;
use super::redirects::Summons;
use crate::commands::{self, Command};
use crate::tenancy::Tenant;
use bytes::Bytes;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
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
    /// The client's address and the proxy's address it connected to.
    pub peer: SocketAddr,
    pub local: SocketAddr,
    created: Instant,
    /// The last command: the address of its entry in the command table
    /// (0: none yet).
    last_command: AtomicUsize,
    profile: Mutex<Profile>,
    /// Other clients asking this one to become their redirect target.
    pub summons: Summons,
}

/// The connection state `CLIENT LIST` shows, copied from the session when
/// a command changes it.
#[derive(Debug, Clone, Default)]
pub struct Profile {
    pub name: Option<Bytes>,
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub db: i64,
    pub resp: i64,
    pub sub: usize,
    pub psub: usize,
    pub ssub: usize,
    /// Commands queued in MULTI, -1 outside one.
    pub multi: i64,
    pub tracking: bool,
}

impl Profile {
    fn of(st: &ClientState) -> Profile {
        Profile {
            name: st.name.clone(),
            lib_name: st.lib_name.clone(),
            lib_ver: st.lib_ver.clone(),
            db: st.db,
            resp: st.proto.number(),
            sub: st.channels.len(),
            psub: st.patterns.len(),
            ssub: st.shard_channels.len(),
            multi: if st.multi { st.queued } else { -1 },
            tracking: st.tracking,
        }
    }
}

impl Activity {
    pub fn new(peer: SocketAddr, local: SocketAddr) -> Activity {
        tick();
        Activity {
            last_ms: AtomicU64::new(NOW_MS.load(Ordering::Relaxed)),
            exempt: AtomicBool::new(false),
            tenant: Mutex::new(None),
            peer,
            local,
            created: Instant::now(),
            last_command: AtomicUsize::new(0),
            profile: Mutex::new(Profile { resp: 2, multi: -1, ..Profile::default() }),
            summons: Summons::default(),
        }
    }

    /// The client ran `cmd` (resolved to its subcommand). Kept as the
    /// entry's address, one store per request; named only when `CLIENT
    /// LIST` asks.
    #[inline]
    pub fn note_command(&self, cmd: Option<&'static Command>) {
        if let Some(cmd) = cmd {
            self.last_command.store(std::ptr::from_ref(cmd) as usize, Ordering::Relaxed);
        }
    }

    /// The last command's name as `CLIENT LIST` shows it (`get`,
    /// `client|list`; `NULL` before any).
    pub fn last_command(&self) -> String {
        let at = self.last_command.load(Ordering::Relaxed);
        let is = |c: &Command| std::ptr::from_ref(c) as usize == at;
        for parent in commands::all() {
            if is(parent) {
                return parent.name.to_string();
            }
            if let Some(sub) = parent.subcommands.iter().find(|s| is(s)) {
                return format!("{}|{}", parent.name, sub.name);
            }
        }
        "NULL".to_string()
    }

    /// The session's connection state changed: copied for `CLIENT LIST`.
    pub fn refresh(&self, st: &ClientState) {
        *self.profile() = Profile::of(st);
    }

    pub fn profile(&self) -> MutexGuard<'_, Profile> {
        self.profile.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How long the client has been connected.
    pub fn age(&self) -> Duration {
        self.created.elapsed()
    }

    /// The client's tenant, if any.
    pub fn tenant(&self) -> Option<Arc<Tenant>> {
        self.tenant.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The client is asking about clients: its own idle time is 0, as in
    /// Redis, whatever the coarse clock last said.
    pub fn touch_now(&self) {
        tick();
        self.touch();
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_command_is_named_as_client_list_shows_it() {
        let addr = "127.0.0.1:1".parse().expect("an address");
        let activity = Activity::new(addr, addr);
        assert_eq!(activity.last_command(), "NULL");
        let (_, get) = commands::lookup(b"get").expect("GET is in the table");
        activity.note_command(Some(get));
        assert_eq!(activity.last_command(), "get");
        let (_, client) = commands::lookup(b"client").expect("CLIENT is in the table");
        activity.note_command(client.subcommand(b"list"));
        assert_eq!(activity.last_command(), "client|list");
        activity.note_command(None);
        assert_eq!(activity.last_command(), "client|list", "an unknown command leaves the last one");
    }
}
