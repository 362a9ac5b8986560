//! The fate of one request, decided in one place before the session
//! carries it out: routing (what the command does to the connection's
//! state, and where it goes: the shared pool, the client's dedicated
//! connection, the proxy itself), its effect on the near-cache (a write
//! evicts what it touches), whether `CLIENT REPLY` suppresses its reply,
//! and, while Redis is away, what failover serves from local memory
//! instead. The session keeps the socket loop, reply ordering, batching,
//! dedicated-connection I/O and output limits.

use super::activity::Activity;
use super::route::{route, ClientState, Decision, ReplyMode, Routed};
use super::Shared;
use crate::cache::Scratch;
use crate::commands::{Command, Flags, Handler, State};
use crate::observe;
use crate::protocol::{encode, Args};
use bytes::Bytes;

/// What to do with one request, decided before it is carried out.
pub struct Planned {
    pub decision: Decision,
    /// Its reply is suppressed (CLIENT REPLY).
    pub silent: bool,
    /// The command, when the near-cache may answer it (`cache::read::plan`
    /// decides): bound for the shared pool, its reply wanted, the cache
    /// active.
    pub cache_candidate: Option<&'static Command>,
    /// Its reply names a client by its upstream id (CLIENT GETREDIR,
    /// TRACKINGINFO): translated to the proxy's id on the way back.
    pub names_redirect: bool,
}

/// Routes one request, applies its effect on the near-cache (a write
/// evicts what it touches), and tells whether its reply is suppressed by
/// CLIENT REPLY. In failover mode, requests that would go upstream are
/// answered from local memory.
pub fn plan(
    st: &mut ClientState,
    args: &Args,
    request: &[u8],
    pinned: bool,
    shared: &Shared,
    scratch: &mut Scratch,
    activity: &Activity,
) -> Planned {
    let mode_before = st.reply;
    let routed = route(st, args, pinned, &shared.info);
    observe::command(routed.index);
    activity.note_command(routed.index, routed.cmd);
    if routed.cmd.is_some_and(|cmd| changes_profile(cmd, st)) {
        activity.refresh(st);
    }
    let silent = mode_before != ReplyMode::On && st.reply == mode_before;
    if silent && mode_before == ReplyMode::Skip {
        st.reply = ReplyMode::On;
    }
    if st.multi_refused && matches!(routed.decision, Decision::Pinned { .. }) {
        return Planned {
            decision: Decision::Reply(refused_in_transaction(st, routed.cmd)),
            silent,
            cache_candidate: None,
            names_redirect: false,
        };
    }
    if !pinned && shared.failover.active() {
        if let Some(decision) = failover(st, &routed, args, request, shared, scratch) {
            return Planned { decision, silent, cache_candidate: None, names_redirect: false };
        }
    }
    let Some(cmd) = routed.cmd.filter(|_| shared.cache.is_active()) else {
        let names_redirect = routed.cmd.is_some_and(|cmd| matches!(cmd.name, "getredir" | "trackinginfo"));
        return Planned { decision: routed.decision, silent, cache_candidate: None, names_redirect };
    };
    shared.cache.note_write(cmd, args, scratch);
    let cache_candidate = (matches!(routed.decision, Decision::Pool) && !silent).then_some(cmd);
    let names_redirect = matches!(cmd.name, "getredir" | "trackinginfo");
    Planned { decision: routed.decision, silent, cache_candidate, names_redirect }
}

/// True when `cmd` may change what CLIENT LIST shows of the client (its
/// name, database, subscriptions, transaction…): plain forwarded commands,
/// nearly every request, do not.
fn changes_profile(cmd: &Command, st: &ClientState) -> bool {
    st.multi || !matches!(cmd.handler, Handler::Forward) || cmd.flags.contains(Flags::PUBSUB)
}

/// What failover makes of a request bound upstream: served from local
/// memory, or refused if it needs a dedicated connection (upstream state
/// the routing just recorded is forgotten). A MULTI is acknowledged and
/// its transaction refused whole (see [`refused_in_transaction`]), as
/// Redis does a transaction with a command it refused: never split between
/// failover and Redis. `None`: not bound upstream, or failover just ended.
fn failover(
    st: &mut ClientState,
    routed: &Routed,
    args: &Args,
    request: &[u8],
    shared: &Shared,
    scratch: &mut Scratch,
) -> Option<Decision> {
    match routed.decision {
        Decision::Pool => shared.failover.serve(routed.cmd, args, request, st.proto, scratch).map(Decision::Reply),
        Decision::Pinned { .. }
            if st.multi && routed.cmd.is_some_and(|c| c.handler == Handler::State(State::Multi)) =>
        {
            observe::failover_command("refused");
            st.multi_refused = true;
            Some(Decision::Reply(Bytes::from_static(encode::OK)))
        }
        Decision::Pinned { .. } => {
            // Tracking that cannot be set up ends the connection (see
            // `send_tracking`).
            let close = std::mem::take(&mut st.tracking_asked);
            st.clear_upstream_state();
            let reply = shared.failover.serve(None, args, request, st.proto, scratch);
            reply.map(if close { Decision::Close } else { Decision::Reply })
        }
        _ => None,
    }
}

/// The reply to a command of a transaction refused in failover: EXEC
/// aborts it (as Redis does after a command it refused), DISCARD drops it,
/// anything else is refused.
fn refused_in_transaction(st: &mut ClientState, cmd: Option<&Command>) -> Bytes {
    if st.multi {
        return encode::error("TRYAGAIN upstream unavailable, transaction refused in failover mode");
    }
    st.multi_refused = false;
    match cmd.map(|c| c.handler) {
        Some(Handler::State(State::Exec)) => {
            encode::error("EXECABORT Transaction discarded because of previous errors.")
        }
        _ => Bytes::from_static(encode::OK),
    }
}
