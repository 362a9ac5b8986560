//! Deciding what happens to one request: answered locally, forwarded on the
//! shared pool, or forwarded on the session's dedicated connection — and the
//! per-client state (protocol, database, transaction, subscriptions) those
//! decisions depend on and change.

use super::{answer, cluster_view};
use crate::commands::{Command, CommandIndex, Flags, Handler, Local, Spread, State, SubKind};
use crate::protocol::{encode, request::parse_int, Args, Proto};
use crate::router::{NodeId, DEFAULT_NODE};
use crate::server::registry;
use crate::upstream::pool::Health;
use bytes::Bytes;
use std::collections::HashSet;

/// CLIENT REPLY mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyMode {
    On,
    Off,
    Skip,
}

/// Everything the proxy knows about one client connection.
#[derive(Debug)]
pub struct ClientState {
    pub id: u64,
    pub proto: Proto,
    pub name: Option<Bytes>,
    /// CLIENT SETINFO LIB-NAME / LIB-VER.
    pub lib_name: Option<Bytes>,
    pub lib_ver: Option<Bytes>,
    pub reply: ReplyMode,
    /// Database of the client's upstream state (the URL's by default).
    pub db: i64,
    pub default_db: i64,
    pub multi: bool,
    /// Commands queued in the transaction (for CLIENT LIST).
    pub queued: i64,
    /// `server.auth = "upstream"`: AUTH is checked by Redis.
    pub auth_upstream: bool,
    /// With a Redis Cluster upstream: the address the client reached the
    /// proxy at, which the proxy's one-node cluster view names.
    pub cluster_view: Option<std::net::SocketAddr>,
    /// With a Redis Cluster upstream: the client's `MULTI` was answered and
    /// not sent yet (the next command's keys pick the node); RESET forgets it.
    pub multi_unsent: bool,
    /// With a Redis Cluster upstream: the node a dedicated connection opened
    /// for the request being carried out goes to (its keys' master).
    pub dedicated_node: NodeId,
    /// With a Redis Cluster upstream: the masters the client ever wrote
    /// to, which `WAIT` asks (see `fan::Fan::after_writes`): as Redis
    /// counts the replicas that have a connection's last write, asked
    /// again or not.
    pub written: Vec<NodeId>,
    /// Authenticated to Redis as its own user: its commands go on pools and
    /// dedicated connections logged in as that user, never the near-cache
    /// or failover. Only RESET (or another AUTH) ends it.
    pub upstream_user: bool,
    /// The transaction was opened in failover mode: it is refused whole
    /// (its commands get an error, EXEC `-EXECABORT`), and nothing of it
    /// goes upstream or to local memory, whatever the mode meanwhile.
    pub multi_refused: bool,
    pub watching: bool,
    pub monitor: bool,
    /// State that only ends with the session (CLIENT TRACKING, …).
    pub session_bound: bool,
    /// CLIENT TRACKING is on (for CLIENT LIST's `t` flag).
    pub tracking: bool,
    /// The request being routed is CLIENT TRACKING: set by routing, taken
    /// when it is applied (a `REDIRECT` to translate, and the connection
    /// to close if tracking cannot be set up). Not a [`Decision`] of its
    /// own, which every request would pay for.
    pub tracking_asked: bool,
    /// Subscriptions asked for, to know how many confirmations an
    /// argument-less unsubscribe produces.
    pub channels: HashSet<Bytes>,
    pub patterns: HashSet<Bytes>,
    pub shard_channels: HashSet<Bytes>,
    /// The dedicated connection is in RESP2 subscribed mode: from the first
    /// subscribe sent until a confirmation reports no subscription left.
    pub pubsub_mode: bool,
    /// Subscriptions queued inside MULTI: they take effect at EXEC.
    pub queued_subscriptions: Vec<(SubKind, Bytes)>,
}

impl ClientState {
    pub fn new(id: u64, default_db: i64) -> ClientState {
        ClientState {
            id,
            proto: Proto::Resp2,
            name: None,
            lib_name: None,
            lib_ver: None,
            reply: ReplyMode::On,
            db: default_db,
            default_db,
            multi: false,
            queued: 0,
            auth_upstream: false,
            cluster_view: None,
            multi_unsent: false,
            dedicated_node: DEFAULT_NODE,
            written: Vec::new(),
            upstream_user: false,
            multi_refused: false,
            watching: false,
            monitor: false,
            session_bound: false,
            tracking: false,
            tracking_asked: false,
            channels: HashSet::new(),
            patterns: HashSet::new(),
            shard_channels: HashSet::new(),
            pubsub_mode: false,
            queued_subscriptions: Vec::new(),
        }
    }

    /// True while the client has any subscription.
    pub fn subscribed(&self) -> bool {
        !(self.channels.is_empty() && self.patterns.is_empty() && self.shard_channels.is_empty())
    }

    /// True while upstream holds state for this client, so its dedicated
    /// connection must be kept.
    pub fn needs_dedicated(&self) -> bool {
        self.multi
            || self.watching
            || self.monitor
            || self.session_bound
            || self.pubsub_mode
            || self.subscribed()
            || self.db != self.default_db
    }

    /// Frames from the dedicated connection may arrive unasked (messages,
    /// MONITOR lines, invalidations).
    pub fn expects_pushes(&self) -> bool {
        self.monitor || self.session_bound || self.pubsub_mode || self.subscribed()
    }

    /// Forgets all upstream state: the dedicated connection is gone.
    pub fn clear_upstream_state(&mut self) {
        self.multi = false;
        self.multi_refused = false;
        self.watching = false;
        self.monitor = false;
        self.session_bound = false;
        self.tracking = false;
        self.db = self.default_db;
        self.channels.clear();
        self.patterns.clear();
        self.shard_channels.clear();
        self.pubsub_mode = false;
        self.queued_subscriptions.clear();
    }

    fn subs_mut(&mut self, kind: SubKind) -> &mut HashSet<Bytes> {
        match kind {
            SubKind::Channel => &mut self.channels,
            SubKind::Pattern => &mut self.patterns,
            SubKind::Shard => &mut self.shard_channels,
        }
    }
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Reply with these bytes, produced locally.
    Reply(Bytes),
    /// No reply at all (CLIENT REPLY OFF / SKIP).
    Silent,
    /// Forward on the shared pool.
    Pool,
    /// Forward on the dedicated connection (opened if needed), which answers
    /// with `replies` frames; blocking commands wait without a timeout.
    Dedicated { replies: usize, blocking: bool },
    /// Send `upstream` on the dedicated connection and drop its one reply, then
    /// reply `reply` locally (HELLO while dedicated).
    DedicatedSideEffect(Box<SideEffect>),
    /// Reply, then close the connection (QUIT).
    Close(Bytes),
    /// Act on another client of the proxy (CLIENT KILL, CLIENT UNBLOCK).
    Clients(Box<ClientsOp>),
    /// Have Redis check these credentials by opening the client's
    /// dedicated connection as that user (`server.auth = "upstream"`).
    Authenticate(Box<Login>),
    /// Send on a fresh connection of its own, past anything queued or
    /// running upstream (see [`Flags::OUT_OF_BAND`]).
    ///
    /// [`Flags::OUT_OF_BAND`]: crate::commands::Flags::OUT_OF_BAND
    OutOfBand,
}

/// The CLIENT commands that name the proxy's clients, answered from its
/// registry ([`registry`]).
#[derive(Debug, PartialEq, Eq)]
pub enum ClientsOp {
    /// CLIENT KILL: close the clients the filter matches.
    Kill(registry::KillFilter),
    /// CLIENT LIST.
    List(registry::ListFilter),
    /// CLIENT INFO: the caller's own line.
    Info,
    /// CLIENT PAUSE for `timeout`, of every command or only writes.
    Pause {
        timeout: std::time::Duration,
        writes_only: bool,
    },
    Unpause,
    /// Unblock its blocked command, as a timeout or (`error`) with
    /// `-UNBLOCKED`.
    Unblock {
        id: u64,
        error: bool,
    },
}

/// A client's credentials, to be checked by Redis (`server.auth =
/// "upstream"`).
#[derive(Debug, PartialEq, Eq)]
pub struct Login {
    /// `None`: Redis' `default` user (`AUTH password`).
    pub user: Option<Bytes>,
    pub password: Bytes,
    /// HELLO's protocol and SETNAME, applied once Redis accepts them.
    pub hello: Option<(Proto, Option<Bytes>)>,
}

/// A request sent upstream only for its effect, then a local reply.
#[derive(Debug, PartialEq, Eq)]
pub struct SideEffect {
    pub upstream: Bytes,
    pub reply: Bytes,
}

/// The outcome of routing one request.
pub struct Routed {
    /// Position in the command table (for metrics); `None` if unknown.
    pub index: Option<CommandIndex>,
    /// The command, its subcommand resolved; `None` if unknown.
    pub cmd: Option<&'static Command>,
    pub decision: Decision,
}

/// Decides what to do with `args` (its command `found` in the table, as
/// [`crate::commands::lookup`] gave it) and applies its effect on `st`.
/// `dedicated` tells whether the session currently has a dedicated connection;
/// `health` supplies the upstream's version for HELLO replies.
#[inline(always)]
pub fn route(
    st: &mut ClientState,
    args: &Args,
    found: Option<(CommandIndex, &'static Command)>,
    dedicated: bool,
    health: &Health,
) -> Routed {
    if args.is_empty() {
        return Routed { index: None, cmd: None, decision: Decision::Silent };
    }
    let Some((index, cmd)) = found else {
        return Routed { index: None, cmd: None, decision: forward(dedicated) };
    };
    let cmd = cmd.resolve(args);
    Routed { index: Some(index), cmd: Some(cmd), decision: route_known(st, cmd, args, dedicated, health) }
}

fn route_known(st: &mut ClientState, cmd: &'static Command, args: &Args, dedicated: bool, health: &Health) -> Decision {
    // Inside MULTI everything but the connection's own lifecycle is queued
    // upstream as Redis does, errors included (a bad command there must
    // make EXEC abort).
    if st.multi && !matches!(cmd.handler, Handler::Local(Local::Quit) | Handler::Local(Local::Reset)) {
        return after_multi_command(st, cmd, args);
    }
    if !cmd.arity_ok(args.len()) {
        let name = full_name(cmd, args);
        return Decision::Reply(encode::error(&if name.contains('|') {
            format!("ERR unknown subcommand or wrong number of arguments for '{name}' command")
        } else {
            format!("ERR wrong number of arguments for '{name}' command")
        }));
    }
    match cmd.handler {
        Handler::Forward if cmd.blocks(args) => Decision::Dedicated { replies: 1, blocking: true },
        Handler::Forward if cmd.flags.contains(Flags::OUT_OF_BAND) => Decision::OutOfBand,
        Handler::Forward if cmd.unknown_of_stateful_family() => state_command(st, State::Session, args, dedicated),
        Handler::Forward => forward(dedicated),
        Handler::Local(local) => local_command(st, local, args, dedicated, health),
        Handler::State(state) => state_command(st, state, args, dedicated),
        Handler::Unsupported => Decision::Reply(encode::error(&format!(
            "ERR '{}' is not supported through nearcache",
            full_name(cmd, args)
        ))),
    }
}

/// The command's name as Redis' errors write it: `script|debug` for a
/// subcommand.
fn full_name(cmd: &Command, args: &Args) -> String {
    let name = String::from_utf8_lossy(args.get(0).unwrap_or_default()).to_lowercase();
    if cmd.name == name {
        name
    } else {
        format!("{name}|{}", cmd.name)
    }
}

/// A command sent while in MULTI: queued upstream; EXEC and DISCARD end the
/// transaction, a queued SELECT moves the connection when EXEC runs it.
fn after_multi_command(st: &mut ClientState, cmd: &Command, args: &Args) -> Decision {
    match cmd.handler {
        Handler::State(State::Exec) => {
            st.multi = false;
            st.queued = 0;
            st.watching = false;
            // As in Redis, the client is subscribed after EXEC (whose reply
            // holds the confirmations): the connection must stay.
            for (kind, channel) in std::mem::take(&mut st.queued_subscriptions) {
                st.pubsub_mode = true;
                st.subs_mut(kind).insert(channel);
            }
        }
        Handler::State(State::Discard) => {
            st.multi = false;
            st.queued = 0;
            st.watching = false;
            st.queued_subscriptions.clear();
        }
        Handler::State(State::Subscribe(kind)) if cmd.arity_ok(args.len()) => {
            st.queued_subscriptions.extend(args.iter().skip(1).map(|c| (kind, Bytes::copy_from_slice(c))));
        }
        Handler::Local(Local::Select) if cmd.arity_ok(args.len()) => {
            if let Some(db) = args.get(1).and_then(parse_int) {
                st.db = db;
            }
        }
        Handler::Local(
            Local::ClientList
            | Local::ClientInfo
            | Local::ClientKill
            | Local::ClientUnblock
            | Local::ClientPause
            | Local::ClientUnpause,
        ) => return registry_in_multi(cmd),
        _ => {}
    }
    if st.multi {
        st.queued += 1;
    }
    Decision::Dedicated { replies: 1, blocking: false }
}

/// A CLIENT command the proxy answers from its registry, inside MULTI: its
/// answer cannot be one of EXEC's, and Redis' own would describe the
/// transaction's upstream connection. Refused as Redis refuses a command
/// while queueing: an unknown command goes upstream so Redis marks the
/// transaction and EXEC answers `-EXECABORT`; the client gets the reason.
fn registry_in_multi(cmd: &Command) -> Decision {
    let reply = encode::error(&format!(
        "ERR CLIENT {} inside MULTI is not supported through nearcache (it is answered by the proxy): the \
         transaction will abort",
        cmd.name.to_uppercase()
    ));
    refused_while_queueing(reply)
}

/// With a Redis Cluster upstream, any command needing every master inside
/// a transaction (which runs on one node) would be answered by one master
/// for all: refused instead (inside MULTI so that EXEC aborts, as for a
/// command Redis refuses while queueing). `top` is the command, `cmd` its
/// subcommand's entry, or `top` again.
pub fn whole_keyspace(st: &ClientState, top: &Command, cmd: &Command) -> Option<Decision> {
    let why = match cmd.spread {
        Spread::AllMasters(_) | Spread::Cursor if st.multi => "not inside a transaction through nearcache",
        _ => return None,
    };
    let name = match top.name == cmd.name {
        true => top.name.to_uppercase(),
        false => format!("{} {}", top.name.to_uppercase(), cmd.name.to_uppercase()),
    };
    let reply = encode::error(&format!("ERR '{name}' acts on every master of a Redis Cluster: {why}"));
    Some(match st.multi {
        true => refused_while_queueing(reply),
        false => Decision::Reply(reply),
    })
}

/// A command the proxy refuses inside MULTI: the client gets `reply`, and
/// an unknown command is queued upstream so Redis marks the transaction
/// and EXEC answers `-EXECABORT`.
fn refused_while_queueing(reply: Bytes) -> Decision {
    let upstream = Bytes::from_static(b"*1\r\n$32\r\nNEARCACHE.REFUSED-IN-TRANSACTION\r\n");
    Decision::DedicatedSideEffect(Box::new(SideEffect { upstream, reply }))
}

fn forward(dedicated: bool) -> Decision {
    if dedicated {
        Decision::Dedicated { replies: 1, blocking: false }
    } else {
        Decision::Pool
    }
}

fn local_command(st: &mut ClientState, local: Local, args: &Args, dedicated: bool, health: &Health) -> Decision {
    match local {
        Local::Quit => Decision::Close(Bytes::from_static(encode::OK)),
        Local::Hello => answer::hello(st, args, dedicated, health),
        Local::Reset if dedicated => {
            reset(st);
            Decision::Dedicated { replies: 1, blocking: false }
        }
        Local::Reset => {
            reset(st);
            Decision::Reply(Bytes::from_static(encode::RESET))
        }
        Local::Auth if st.auth_upstream => upstream_auth(args, dedicated),
        Local::Auth => Decision::Reply(Bytes::from_static(encode::OK)),
        Local::Select => select(st, args, dedicated),
        Local::ClientId => Decision::Reply(answer::integer(st.id as i64)),
        Local::ClientGetName => Decision::Reply(answer::name(st)),
        Local::ClientSetName => match answer::set_name(st, args.get(2).unwrap_or_default()) {
            Ok(()) => Decision::Reply(Bytes::from_static(encode::OK)),
            Err(err) => Decision::Reply(err),
        },
        Local::ClientSetInfo => match answer::set_info(st, args) {
            Ok(()) => Decision::Reply(Bytes::from_static(encode::OK)),
            Err(err) => Decision::Reply(err),
        },
        Local::ClientReply => client_reply(st, args.get(2).unwrap_or_default()),
        Local::ClientKill => match registry::KillFilter::parse(args) {
            Ok(filter) => Decision::Clients(Box::new(ClientsOp::Kill(filter))),
            Err(err) => Decision::Reply(err),
        },
        Local::ClientUnblock => client_unblock(args),
        Local::ClientList => match registry::ListFilter::parse(args) {
            Ok(filter) => Decision::Clients(Box::new(ClientsOp::List(filter))),
            Err(err) => Decision::Reply(err),
        },
        Local::ClientInfo => Decision::Clients(Box::new(ClientsOp::Info)),
        Local::ClientPause => client_pause(args),
        Local::ClientUnpause => Decision::Clients(Box::new(ClientsOp::Unpause)),
        Local::ClusterView => match st.cluster_view {
            Some(addr) => Decision::Reply(cluster_view::reply(st.proto, addr, args)),
            None => forward(dedicated),
        },
        Local::ClusterState if st.cluster_view.is_some() => Decision::Reply(Bytes::from_static(encode::OK)),
        Local::ClusterState => state_command(st, State::Session, args, dedicated),
    }
}

/// `CLIENT PAUSE <milliseconds> [WRITE|ALL]`, with Redis' errors.
fn client_pause(args: &Args) -> Decision {
    let Some(ms) = args.get(2).and_then(parse_int) else {
        return Decision::Reply(encode::error("ERR timeout is not an integer or out of range"));
    };
    let Ok(ms) = u64::try_from(ms) else {
        return Decision::Reply(encode::error("ERR timeout is negative"));
    };
    let writes_only = match (args.len(), args.get(3).map(<[u8]>::to_ascii_lowercase).as_deref()) {
        (3, _) | (4, Some(b"all")) => false,
        (4, Some(b"write")) => true,
        _ => return Decision::Reply(encode::error("ERR syntax error")),
    };
    Decision::Clients(Box::new(ClientsOp::Pause { timeout: std::time::Duration::from_millis(ms), writes_only }))
}

/// `CLIENT UNBLOCK <id> [TIMEOUT|ERROR]`, the id the proxy gave the client.
fn client_unblock(args: &Args) -> Decision {
    let Some(id) = args.get(2).and_then(parse_int) else {
        return Decision::Reply(encode::error("ERR value is not an integer or out of range"));
    };
    let error = match args.get(3).map(<[u8]>::to_ascii_lowercase).as_deref() {
        None | Some(b"timeout") => false,
        Some(b"error") => true,
        Some(_) => return Decision::Reply(encode::error("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")),
    };
    match u64::try_from(id) {
        Ok(id) if args.len() <= 4 => Decision::Clients(Box::new(ClientsOp::Unblock { id, error })),
        Ok(_) => Decision::Reply(encode::error("ERR syntax error")),
        Err(_) => Decision::Reply(answer::integer(0)),
    }
}

/// `AUTH [user] password` checked by Redis (`server.auth = "upstream"`)
/// on a connection opened as that user; refused while the client holds a
/// dedicated connection, whose state belongs to the user it has.
fn upstream_auth(args: &Args, dedicated: bool) -> Decision {
    let (user, password) = match (args.len(), args.get(1), args.get(2)) {
        (2, Some(password), None) => (None, password),
        (3, Some(user), Some(password)) => (Some(Bytes::copy_from_slice(user)), password),
        _ => return Decision::Reply(encode::error("ERR syntax error")),
    };
    if dedicated {
        return Decision::Reply(encode::error(answer::AUTH_HOLDING_STATE));
    }
    Decision::Authenticate(Box::new(Login { user, password: Bytes::copy_from_slice(password), hello: None }))
}

/// RESET: back to a fresh connection's state (upstream state is reset by
/// forwarding RESET on the dedicated connection, if any).
fn reset(st: &mut ClientState) {
    let (id, default_db, auth_upstream, cluster_view) = (st.id, st.default_db, st.auth_upstream, st.cluster_view);
    *st = ClientState::new(id, default_db);
    st.auth_upstream = auth_upstream;
    st.cluster_view = cluster_view;
}

fn select(st: &mut ClientState, args: &Args, dedicated: bool) -> Decision {
    let Some(db) = args.get(1).and_then(parse_int) else {
        return Decision::Reply(encode::error("ERR value is not an integer or out of range"));
    };
    if !dedicated && db == st.default_db {
        return Decision::Reply(Bytes::from_static(encode::OK));
    }
    st.db = db;
    Decision::Dedicated { replies: 1, blocking: false }
}

fn client_reply(st: &mut ClientState, mode: &[u8]) -> Decision {
    let mode = mode.to_ascii_lowercase();
    match mode.as_slice() {
        b"on" => {
            st.reply = ReplyMode::On;
            Decision::Reply(Bytes::from_static(encode::OK))
        }
        b"off" => {
            st.reply = ReplyMode::Off;
            Decision::Silent
        }
        b"skip" => {
            if st.reply == ReplyMode::On {
                st.reply = ReplyMode::Skip;
            }
            Decision::Silent
        }
        _ => Decision::Reply(encode::error("ERR syntax error")),
    }
}

fn state_command(st: &mut ClientState, state: State, args: &Args, dedicated: bool) -> Decision {
    let one = Decision::Dedicated { replies: 1, blocking: false };
    match state {
        State::Multi => {
            st.multi = true;
            one
        }
        State::Exec | State::Discard if !dedicated => {
            let name = if state == State::Exec { "EXEC" } else { "DISCARD" };
            Decision::Reply(encode::error(&format!("ERR {name} without MULTI")))
        }
        // Outside MULTI these fail upstream and, as in Redis, keep WATCH.
        State::Exec | State::Discard => one,
        State::Watch => {
            st.watching = true;
            one
        }
        State::Unwatch if !dedicated => Decision::Reply(Bytes::from_static(encode::OK)),
        State::Unwatch => {
            st.watching = false;
            one
        }
        State::Subscribe(kind) => {
            st.pubsub_mode = true;
            let set = st.subs_mut(kind);
            set.extend(args.iter().skip(1).map(Bytes::copy_from_slice));
            Decision::Dedicated { replies: args.len() - 1, blocking: false }
        }
        State::Unsubscribe(kind) => unsubscribe(st, kind, args, dedicated),
        State::Monitor => {
            st.monitor = true;
            one
        }
        State::Session => {
            st.session_bound = true;
            one
        }
        State::Tracking => {
            st.session_bound = true;
            st.tracking = args.get(2).is_some_and(|on| on.eq_ignore_ascii_case(b"on"));
            st.tracking_asked = true;
            one
        }
    }
}

fn unsubscribe(st: &mut ClientState, kind: SubKind, args: &Args, dedicated: bool) -> Decision {
    if !dedicated {
        return Decision::Reply(answer::unsubscribed(st.proto, kind, args));
    }
    let set = st.subs_mut(kind);
    let replies = if args.len() > 1 {
        for channel in args.iter().skip(1) {
            set.remove(channel);
        }
        args.len() - 1
    } else {
        let n = set.len().max(1);
        set.clear();
        n
    };
    Decision::Dedicated { replies, blocking: false }
}
