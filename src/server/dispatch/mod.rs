//! The fate of one request, decided top to bottom in one place before the
//! session carries it out ([`decide`]): the tenancy gate (authentication,
//! refusals, the rewrite into the tenant's namespace), routing (what the
//! command does to the connection's state, and where it goes: the shared
//! pool, the client's dedicated connection, the proxy itself), its effect
//! on the near-cache (a write evicts what it touches; a read may be
//! answered from it), whether `CLIENT REPLY` suppresses its reply, and,
//! while Redis is away, what failover serves from local memory instead.
//! The result says what is owed to the client ([`Fate`]); the reply
//! handlers it carries complete themselves (a cache fill fills the cache,
//! a tenant's reply map strips its prefix). The session keeps the socket
//! loop, reply ordering, batching, dedicated-connection I/O and output
//! limits.
//!
//! This is the splitter of Envoy's splitter → router → pool seam: `tenant`
//! (the gate), `route` (what a command does to the connection, where it
//! goes), `fan` (a request spread over a cluster's masters), `follow`
//! (`MOVED` / `ASK` followed), `answer`, `cluster_view` and `clients` (the
//! replies the proxy gives itself), `reply` (what each reply goes
//! through). `crate::router` names the node; `crate::upstream` carries the
//! request there.

pub mod answer;
pub mod clients;
pub mod cluster_view;
pub mod fan;
pub mod follow;
pub mod reply;
pub mod route;
pub mod tenant;

use crate::cache::read::{self, CacheRead};
use crate::cache::Scratch;
use crate::commands::{self, Command, CommandIndex, Flags, Handler, Spread, State};
use crate::failover::Scope;
use crate::observe;
use crate::protocol::request::{self, Limits};
use crate::protocol::{encode, Args};
use crate::router::cluster::Cluster;
use crate::router::{NodeId, DEFAULT_NODE};
use crate::server::activity::Activity;
use crate::server::satellites::{self, Mirror};
use crate::server::Shared;
use crate::upstream::pool::JobResult;
use bytes::{Bytes, BytesMut};
use fan::Fan;
use reply::{ReplyMap, Slot};
use route::{route, ClientState, Decision, Login, ReplyMode, SideEffect};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;
use tenant::Gate;
use tokio::sync::oneshot;

/// What the client is owed for one request.
pub enum Fate {
    /// Nothing more: a cache hit already written to the client's output,
    /// or no reply at all (`CLIENT REPLY OFF`).
    Written,
    /// This reply, in its place.
    Ready(Bytes),
    /// The reply to another client's identical read, in flight.
    Wait(oneshot::Receiver<JobResult>),
    /// Spread over a Redis Cluster's masters, replies merged into one.
    Fan(Box<Fan>),
    /// Send on the shared pool of upstream `node`: `bytes` (`None`: the
    /// request as the client sent it), its replies owed through `slot`.
    Pool { node: NodeId, bytes: Option<Bytes>, slot: Slot },
    /// Carried out by the session: a dedicated connection, the proxy's own
    /// state, a connection of its own…
    Apply(Box<Apply>),
}

/// A request the session carries out itself: I/O off the shared pool.
pub struct Apply {
    pub carry: Carry,
    /// What its reply goes through.
    pub map: Option<ReplyMap>,
    /// The request as it goes upstream when the proxy rewrote it (a
    /// tenant's namespace, a client id translated); `None`: as the client
    /// sent it.
    pub rewritten: Option<Bytes>,
}

/// What the session does with a request it carries out itself.
pub enum Carry {
    /// Reply (unless suppressed), then close the connection (QUIT, CLIENT
    /// KILL of itself, tracking failover cannot set up).
    Close(Bytes),
    /// Send on the dedicated connection (opened if needed), which answers
    /// with `replies` frames; blocking commands wait without a timeout.
    Dedicated {
        replies: usize,
        blocking: bool,
        /// A write goes first, for `WAIT` to count (see [`Flags::AFTER_WRITES`]).
        write_mark: bool,
        /// With a cluster, whether a (un)subscription goes to the other
        /// masters too (see [`satellites`]).
        mirror: Mirror,
        /// It may leave state on the connection the session does not see
        /// end (see [`Command::leaves_state`]; an unknown command may).
        lasting: bool,
    },
    /// `CLIENT TRACKING` on the dedicated connection, its `REDIRECT`
    /// translated to an upstream id (see `redirects`).
    Tracking,
    /// Send `upstream` on the dedicated connection and drop its reply,
    /// then reply `reply` (HELLO while dedicated).
    SideEffect(Box<SideEffect>),
    /// Have Redis check these credentials (`server.auth = "upstream"`).
    Authenticate(Box<Login>),
    /// Send on a fresh connection of its own, past anything queued or
    /// running upstream (see [`Flags::OUT_OF_BAND`]).
    OutOfBand,
    /// Spread over a cluster's masters once every request the client sent
    /// on the pool is answered (`WAIT`, see [`Fan::after_writes`]).
    AfterWrites(Box<Fan>),
}

/// A request's fate and how it is to be carried out.
pub struct Dispatched {
    pub fate: Fate,
    /// Its reply is suppressed (CLIENT REPLY).
    pub silent: bool,
}

/// What [`decide`] works on: the session's state for this request.
pub struct Ctx<'a> {
    pub shared: &'a Arc<Shared>,
    pub st: &'a mut ClientState,
    pub tenant: &'a mut tenant::Client,
    pub activity: &'a Activity,
    pub scratch: &'a mut Scratch,
    /// The connection's last command name and its entry.
    pub names: &'a mut commands::LastName,
    /// The request's argument ranges (the rewritten one's when the gate
    /// rewrites it).
    pub ranges: &'a mut Vec<Range<usize>>,
    /// The session holds a dedicated connection.
    pub dedicated: bool,
    /// The client's output, when no reply is owed before this request: a
    /// cache hit is written straight there.
    pub out: Option<&'a mut BytesMut>,
    pub now: Instant,
}

/// Decides the fate of `request` (one complete request, as the client sent
/// it or re-encoded from an inline command).
#[inline(always)]
pub fn decide(ctx: Ctx, request: &[u8], owned: Option<Bytes>) -> Dispatched {
    let Ctx { shared, st, tenant, activity, scratch, names, ranges, dedicated, out, now } = ctx;
    let (mut rewritten, mut map) = (owned, None);
    // One lookup serves the gate and routing, unless the gate rewrote the
    // request into another command.
    let mut found = Args::new(rewritten.as_deref().unwrap_or(request), ranges).get(0).and_then(|n| names.lookup(n));
    // With a cluster, the command as the client sent it decides how it
    // spreads over the masters (a tenant's RANDOMKEY runs as a script).
    let cluster = st.cluster_view.is_some();
    let sent = match found {
        Some((_, cmd)) if cluster => {
            Some((cmd, cmd.resolve(&Args::new(rewritten.as_deref().unwrap_or(request), ranges))))
        }
        _ => None,
    };
    let mut renamed = false;
    if shared.tenancy.enabled() {
        let args = Args::new(rewritten.as_deref().unwrap_or(request), ranges);
        let held = tenant::Held { multi: st.multi, state: st.needs_dedicated() };
        match tenant::gate(shared, tenant, found.map(|(_, cmd)| cmd), &args, st.proto, held) {
            Gate::Pass => {}
            Gate::Reply(reply) => {
                // Answered by the gate (AUTH, a refusal): counted like any
                // command.
                observe::command(found.map(|(index, _)| index));
                return Dispatched { fate: Fate::Ready(reply), silent: false };
            }
            Gate::Rewrite(request, reply_map) => {
                tenant.take_ranges(ranges);
                let name = Args::new(&request, ranges).get(0);
                if !name.zip(found).is_some_and(|(name, (_, cmd))| name.eq_ignore_ascii_case(cmd.name.as_bytes())) {
                    // RANDOMKEY runs as a script.
                    found = name.and_then(commands::lookup);
                    renamed = true;
                }
                rewritten = Some(request);
                map = reply_map;
            }
        }
    }
    let bytes = rewritten.as_deref().unwrap_or(request);
    let args = Args::new(bytes, ranges);
    if let Some(decision) = sent.and_then(|(top, cmd)| keyspace_refusal(st, top, cmd)) {
        let owed = Owed { node: DEFAULT_NODE, map: None, rewritten: None, cmd: None, args: &args, dedicated };
        return Dispatched { fate: off_pool(*decision, owed, shared, st, tenant, activity), silent: false };
    }
    let proto = st.proto;
    let incoming = Incoming { args, bytes, found };
    let Planned { decision, silent, cache_candidate, cmd, unnoted } =
        plan(st, incoming, dedicated, shared, scratch, activity);
    // A tenant's RANDOMKEY, a script, still spreads as a RANDOMKEY.
    let sent_spread = sent.filter(|_| renamed).map(|(_, cmd)| cmd.spread);
    let note_write = |scratch: &mut Scratch| {
        if let Some(cmd) = unnoted {
            shared.cache.note_write(cmd, &args, scratch);
        }
    };
    if map.is_none() && cmd.is_some_and(names_redirect) {
        let shared = shared.clone();
        map = Some(Box::new(move |reply: Bytes| shared.redirects.name_redirect(&reply)));
    }
    let node = match cluster {
        false => {
            note_write(scratch);
            DEFAULT_NODE
        }
        true => match cluster_node(
            shared,
            st,
            Spreads { decision: &decision, cmd, sent: sent_spread },
            &args,
            bytes,
            dedicated,
        ) {
            Ok(node) if dedicated || st.upstream_user => {
                note_write(scratch);
                node
            }
            Ok(node) => match cluster_failover(st, node, (&decision, cmd), &args, bytes, shared, scratch) {
                Some(Decision::Close(reply)) => {
                    let owed = Owed { node, map: None, rewritten: None, cmd, args: &args, dedicated };
                    let fate = off_pool(Decision::Close(reply), owed, shared, st, tenant, activity);
                    return Dispatched { fate, silent };
                }
                Some(Decision::Reply(reply)) => return Dispatched { fate: Fate::Ready(reply), silent },
                _ => {
                    note_write(scratch);
                    node
                }
            },
            Err(Spreading::Refused(reply)) => return Dispatched { fate: Fate::Ready(reply), silent },
            Err(Spreading::Fan(fan)) => {
                // What goes out of band (`SCRIPT KILL`) reaches busy masters.
                let on_pools = !matches!(decision, Decision::OutOfBand);
                if let Some(reply) = on_pools.then(|| fan_in_failover(shared, &fan, &args)).flatten() {
                    return Dispatched { fate: Fate::Ready(reply), silent };
                }
                note_write(scratch);
                let fan = match cache_candidate.filter(|cmd| cmd.cached_per_key()) {
                    Some(cmd) => fan.through_cache(&shared.cache, cmd, proto, scratch).mapped(map),
                    None => fan.mapped(map),
                };
                let fate = fan.answered().map_or_else(|fan| Fate::Fan(Box::new(fan)), Fate::Ready);
                return Dispatched { fate, silent };
            }
            Err(Spreading::AfterWrites(fan)) => {
                let carry = Carry::AfterWrites(Box::new(fan.mapped(map)));
                return Dispatched { fate: Fate::Apply(Box::new(Apply { carry, map: None, rewritten: None })), silent };
            }
        },
    };
    let cached = match cache_candidate {
        Some(cmd) => read::plan(&shared.cache, &read::Request { cmd, args: &args, bytes, proto }, scratch, now, out),
        None => CacheRead::Bypass,
    };
    let fate = match cached {
        CacheRead::Written => Fate::Written,
        CacheRead::Ready(reply) => Fate::Ready(reply),
        CacheRead::Wait(rx) => Fate::Wait(rx),
        CacheRead::Fetch { payload, replies, fill } => {
            Fate::Pool { node, bytes: Some(payload.freeze()), slot: Slot::Fill { replies, fill } }
        }
        CacheRead::Bypass => match decision {
            Decision::Pool => {
                // Holds nothing: forgotten rather than handed to the
                // enum's out-of-line drop glue on every request.
                std::mem::forget(decision);
                Fate::Pool { node, bytes: rewritten, slot: map.map_or(Slot::Plain, Slot::Map) }
            }
            decision => {
                let owed = Owed { node, map, rewritten: rewritten.clone(), cmd, args: &args, dedicated };
                off_pool(decision, owed, shared, st, tenant, activity)
            }
        },
    };
    Dispatched { fate, silent }
}

/// What a request owes the client when the near-cache does not answer
/// it.
struct Owed<'a> {
    node: NodeId,
    map: Option<ReplyMap>,
    rewritten: Option<Bytes>,
    cmd: Option<&'static Command>,
    args: &'a Args<'a>,
    /// The session holds a dedicated connection.
    dedicated: bool,
}

/// The fate of a request routing decided to do something else than send
/// on the shared pool: answered here, or carried out by the session.
#[inline(never)]
fn off_pool(
    decision: Decision,
    owed: Owed,
    shared: &Shared,
    st: &mut ClientState,
    tenant: &tenant::Client,
    activity: &Activity,
) -> Fate {
    let Owed { node, map, rewritten, cmd, args, dedicated } = owed;
    let carry = match decision {
        Decision::Pool => return Fate::Pool { node, bytes: rewritten, slot: map.map_or(Slot::Plain, Slot::Map) },
        Decision::Reply(reply) => return Fate::Ready(reply),
        Decision::Silent => return Fate::Written,
        Decision::Clients(op) => return clients::answer(*op, clients::Asker { shared, st, tenant, activity }),
        Decision::Close(reply) => Carry::Close(reply),
        Decision::Dedicated { .. } if std::mem::take(&mut st.tracking_asked) => Carry::Tracking,
        Decision::Dedicated { .. } if holds_multi(shared, st, dedicated) => {
            st.multi_unsent = true;
            return Fate::Ready(Bytes::from_static(encode::OK));
        }
        Decision::Dedicated { replies, blocking } => {
            let plain = !st.multi && !st.pubsub_mode;
            let write_mark = plain && cmd.is_some_and(|cmd| cmd.flags.contains(Flags::AFTER_WRITES));
            let mirror = match cmd {
                Some(cmd) if !st.multi && st.cluster_view.is_some() => satellites::mirror(cmd.handler, args),
                _ => Mirror::No,
            };
            let lasting = cmd.is_none_or(Command::leaves_state);
            Carry::Dedicated { replies, blocking, write_mark, mirror, lasting }
        }
        Decision::DedicatedSideEffect(effect) => Carry::SideEffect(effect),
        Decision::Authenticate(login) => Carry::Authenticate(login),
        Decision::OutOfBand => Carry::OutOfBand,
    };
    Fate::Apply(Box::new(Apply { carry, map, rewritten }))
}

/// In a Redis Cluster, a `MULTI` opening a transaction is answered `+OK`
/// at once and held until the next command, whose keys name the node the
/// transaction runs on (as a cluster client sends it to the node of its
/// first key); the session sends it first on that node's connection (see
/// `ClientState::multi_unsent`).
fn holds_multi(shared: &Shared, st: &ClientState, dedicated: bool) -> bool {
    let opens_transaction = st.multi && st.queued == 0 && !st.multi_unsent;
    opens_transaction && !dedicated && shared.router.as_cluster().is_some()
}

/// A command a cluster cannot run as asked (see
/// [`route::whole_keyspace`]).
#[inline(never)]
fn keyspace_refusal(st: &ClientState, top: &Command, cmd: &Command) -> Option<Box<Decision>> {
    route::whole_keyspace(st, top, cmd).map(Box::new)
}

/// What decides how a cluster request spreads over the masters.
struct Spreads<'a> {
    decision: &'a Decision,
    /// The command as routed (its subcommand resolved).
    cmd: Option<&'static Command>,
    /// How the command the client sent spreads, when the tenancy gate made
    /// it another (a tenant's RANDOMKEY, a script: still every master's).
    sent: Option<Spread>,
}

/// Why a cluster request goes to no single node.
enum Spreading {
    /// This error is the reply (`-CROSSSLOT`).
    Refused(Bytes),
    /// It goes to several masters.
    Fan(Fan),
    /// It goes to several masters once the client's requests on the pool
    /// are answered (`WAIT`).
    AfterWrites(Fan),
}

/// The cluster node a request goes to: its keys' master; or the masters it
/// is spread over (keys of several slots split by slot, a command acting
/// on the whole keyspace sent to every master), as the table's spread
/// says. A dedicated connection goes to the node of the command that opens
/// it (noted in `st.dedicated_node`; in a transaction the node itself
/// refuses keys of other slots). The masters a write goes to are noted in
/// `st.written` for the client's next `WAIT`, which asks them.
#[inline(never)]
fn cluster_node(
    shared: &Shared,
    st: &mut ClientState,
    spreads: Spreads,
    args: &Args,
    request: &[u8],
    dedicated: bool,
) -> Result<NodeId, Spreading> {
    let Spreads { decision, cmd, sent } = spreads;
    let (router, Some(cluster)) = (&shared.router, shared.router.as_cluster()) else { return Ok(DEFAULT_NODE) };
    let writes = cmd.is_some_and(|cmd| cmd.flags.contains(Flags::WRITE));
    match decision {
        Decision::Pool => {
            let to = match (cmd, sent.or(cmd.map(|cmd| cmd.spread))) {
                (_, Some(Spread::AllMasters(merge))) => Err(Spreading::Fan(Fan::all_masters(cluster, request, merge))),
                (_, Some(Spread::Cursor)) => {
                    Err(Fan::scan(cluster, args).map_or_else(Spreading::Refused, Spreading::Fan))
                }
                (_, Some(Spread::Channel)) => Ok(channel_node(cluster, args)),
                (_, Some(Spread::Channels(merge))) if args.len() > 2 => Err(Fan::split_channels(cluster, args, merge)
                    .map_or_else(|| Spreading::Refused(encode::error("ERR syntax error")), Spreading::Fan)),
                (Some(cmd), Some(Spread::Keys(merge))) => router.route(Some(cmd), args).map_err(|unroutable| {
                    Fan::split(cluster, cmd, args, merge).map_or(Spreading::Refused(unroutable.reply()), Spreading::Fan)
                }),
                _ => router.route(cmd, args).map_err(|unroutable| Spreading::Refused(unroutable.reply())),
            };
            if writes {
                match &to {
                    Ok(node) => note_written(st, *node),
                    Err(Spreading::Fan(fan)) => fan.nodes().for_each(|node| note_written(st, node)),
                    Err(_) => {}
                }
            }
            to
        }
        Decision::OutOfBand => match cmd.map(|cmd| cmd.spread) {
            Some(Spread::AllMasters(merge)) => {
                Err(Spreading::Fan(Fan::all_masters(cluster, request, merge).out_of_band()))
            }
            _ => Ok(DEFAULT_NODE),
        },
        Decision::Dedicated { .. } => match cmd.map(|cmd| (cmd.flags, cmd.spread)) {
            Some((flags, Spread::AllMasters(_))) if flags.contains(Flags::AFTER_WRITES) && dedicated => {
                // Its writes on the dedicated connection may still be in
                // flight, where the masters' own connections cannot wait
                // for them.
                let name = String::from_utf8_lossy(args.get(0).unwrap_or_default()).to_uppercase();
                Err(Spreading::Refused(encode::error(&format!(
                    "ERR {name} on a connection holding a transaction, WATCH or subscriptions is not supported \
                     through nearcache with a Redis Cluster"
                ))))
            }
            Some((flags, Spread::AllMasters(merge))) if flags.contains(Flags::AFTER_WRITES) => {
                Err(Spreading::AfterWrites(Fan::after_writes(cluster, &st.written, request, merge)))
            }
            _ => Ok(dedicated_node(router, cluster, st, cmd, args, writes)),
        },
        Decision::DedicatedSideEffect(_) => Ok(dedicated_node(router, cluster, st, cmd, args, writes)),
        _ => Ok(DEFAULT_NODE),
    }
}

/// Notes the node a request opening (or sent on) a dedicated connection
/// goes to, in `st.dedicated_node`; the request itself is owed through the
/// default node's bookkeeping.
fn dedicated_node(
    router: &crate::router::Router,
    cluster: &Cluster,
    st: &mut ClientState,
    cmd: Option<&'static Command>,
    args: &Args,
    writes: bool,
) -> NodeId {
    st.dedicated_node = match cmd.map(|cmd| cmd.spread) {
        Some(Spread::Channel) => channel_node(cluster, args),
        _ => router.route(cmd, args).unwrap_or(DEFAULT_NODE),
    };
    if writes {
        note_written(st, st.dedicated_node);
    }
    DEFAULT_NODE
}

/// `node` has a write of the client's that its next `WAIT` must cover.
fn note_written(st: &mut ClientState, node: NodeId) {
    if !st.written.contains(&node) {
        st.written.push(node);
    }
}

/// The master of a sharded channel's slot (the first channel named).
fn channel_node(cluster: &Cluster, args: &Args) -> NodeId {
    args.get(1).map_or(DEFAULT_NODE, |channel| cluster.slot_node(crate::router::slot::of(channel)))
}

/// Makes `request` (a multibulk the proxy encoded) the one whose argument
/// ranges are in `ranges`.
pub fn reparse(request: Bytes, ranges: &mut Vec<Range<usize>>) -> Bytes {
    /// The proxy's own encoding of a request it accepted: no limit applies.
    const UNLIMITED: Limits = Limits {
        max_bulk_len: usize::MAX,
        // Compared as an i64.
        max_multibulk_len: i64::MAX as usize,
        max_inline_len: usize::MAX,
        max_request_len: usize::MAX,
        unauthenticated: false,
    };
    let mut unused = Vec::new();
    // Our own encoding always parses.
    let _ = request::parse(&request, &UNLIMITED, ranges, &mut unused);
    request
}

/// One request as routing sees it.
#[derive(Clone, Copy)]
struct Incoming<'a> {
    args: Args<'a>,
    /// Its bytes (what failover journals).
    bytes: &'a [u8],
    /// Its command in the table, looked up once per request.
    found: Option<(CommandIndex, &'static Command)>,
}

/// What routing made of one request.
struct Planned {
    pub decision: Decision,
    /// Its reply is suppressed (CLIENT REPLY).
    pub silent: bool,
    /// The command, when the near-cache may answer it (`cache::read::plan`
    /// decides): bound for the shared pool, its reply wanted, the cache
    /// active.
    pub cache_candidate: Option<&'static Command>,
    /// The command, its subcommand resolved; `None` if unknown.
    pub cmd: Option<&'static Command>,
    /// The command whose effect on the near-cache (a write evicts what it
    /// touches) is to be applied once failover has passed the request by:
    /// a cluster's failover, decided after routing, seeds the keys it
    /// writes from the cache first. `None`: failover served it, or the
    /// cache is off.
    pub unnoted: Option<&'static Command>,
}

/// Routes one request, says what its effect on the near-cache will be,
/// and tells whether its reply is suppressed by CLIENT REPLY. With one
/// Redis in failover mode, requests that would go upstream are answered
/// from local memory.
#[inline(always)]
fn plan(
    st: &mut ClientState,
    incoming: Incoming,
    dedicated: bool,
    shared: &Shared,
    scratch: &mut Scratch,
    activity: &Activity,
) -> Planned {
    let Incoming { args, bytes: request, found } = incoming;
    let args = &args;
    let mode_before = st.reply;
    let routed = route(st, args, found, dedicated, &shared.router.default_node().health);
    observe::command(routed.index);
    activity.note_command(routed.cmd);
    if routed.cmd.is_some_and(|cmd| changes_profile(cmd, st)) {
        activity.refresh(st);
    }
    let silent = mode_before != ReplyMode::On && st.reply == mode_before;
    if silent && mode_before == ReplyMode::Skip {
        st.reply = ReplyMode::On;
    }
    if st.multi_refused && matches!(routed.decision, Decision::Dedicated { .. }) {
        return Planned {
            decision: Decision::Reply(refused_in_transaction(st, routed.cmd)),
            silent,
            cache_candidate: None,
            cmd: routed.cmd,
            unnoted: None,
        };
    }
    // A client logged in as its own Redis user is answered by Redis only:
    // the local store and the near-cache know no ACLs.
    let own_user = st.upstream_user;
    if !dedicated && !own_user && shared.failover.active() {
        let bound = Bound { decision: &routed.decision, cmd: routed.cmd, scope: Scope::Single };
        if let Some(decision) = failover(st, bound, args, request, shared, scratch) {
            return Planned { decision, silent, cache_candidate: None, cmd: routed.cmd, unnoted: None };
        }
    }
    let Some(cmd) = routed.cmd.filter(|_| shared.cache.is_active()) else {
        return Planned { decision: routed.decision, silent, cache_candidate: None, cmd: routed.cmd, unnoted: None };
    };
    let cache_candidate = (matches!(routed.decision, Decision::Pool) && !silent && !own_user).then_some(cmd);
    Planned { decision: routed.decision, silent, cache_candidate, cmd: Some(cmd), unnoted: Some(cmd) }
}

/// True when the reply of `cmd` names a client by its upstream id (CLIENT
/// GETREDIR, TRACKINGINFO): translated to the proxy's id on the way back.
fn names_redirect(cmd: &'static Command) -> bool {
    cmd.flags.contains(Flags::NAMES_CLIENT)
}

/// True when `cmd` may change what CLIENT LIST shows of the client (its
/// name, database, subscriptions, transaction…): plain forwarded commands,
/// nearly every request, do not.
fn changes_profile(cmd: &Command, st: &ClientState) -> bool {
    st.multi || !matches!(cmd.handler, Handler::Forward) || cmd.flags.contains(Flags::PUBSUB)
}

/// A request bound upstream, as failover sees it.
struct Bound<'a> {
    decision: &'a Decision,
    cmd: Option<&'static Command>,
    /// Where it would go.
    scope: Scope<'a>,
}

/// What failover makes of a request bound upstream: served from local
/// memory, or refused if it needs a dedicated connection (upstream state
/// the routing just recorded is forgotten). A MULTI is acknowledged and
/// its transaction refused whole (see [`refused_in_transaction`]), as
/// Redis does a transaction with a command it refused: never split between
/// failover and Redis. `None`: not bound upstream, or failover just ended.
fn failover(
    st: &mut ClientState,
    bound: Bound,
    args: &Args,
    request: &[u8],
    shared: &Shared,
    scratch: &mut Scratch,
) -> Option<Decision> {
    let Bound { decision, cmd, scope } = bound;
    match decision {
        Decision::Pool => shared.failover.serve(scope, cmd, args, request, st.proto, scratch).map(Decision::Reply),
        Decision::Dedicated { .. } if std::mem::take(&mut st.multi_unsent) => {
            // A cluster's transaction, held until this first command named
            // its node: refused whole from here.
            observe::failover_command("refused");
            st.multi_refused = true;
            Some(Decision::Reply(refused_in_transaction(st, cmd)))
        }
        Decision::Dedicated { .. } if st.multi && cmd.is_some_and(|c| c.handler == Handler::State(State::Multi)) => {
            observe::failover_command("refused");
            st.multi_refused = true;
            Some(Decision::Reply(Bytes::from_static(encode::OK)))
        }
        Decision::Dedicated { .. } => {
            // Tracking that cannot be set up ends the connection (see
            // `send_tracking`).
            let close = std::mem::take(&mut st.tracking_asked);
            st.clear_upstream_state();
            let reply = shared.failover.serve(scope, None, args, request, st.proto, scratch);
            reply.map(if close { Decision::Close } else { Decision::Reply })
        }
        _ => None,
    }
}

/// With a cluster, what failover makes of a request bound for `node`
/// (see [`failover`]) while that master is unreachable or writes of the
/// request's slot wait in the journal. A transaction's `MULTI`, held until
/// its first command names the node, is left to that command.
fn cluster_failover(
    st: &mut ClientState,
    node: NodeId,
    bound: (&Decision, Option<&'static Command>),
    args: &Args,
    request: &[u8],
    shared: &Shared,
    scratch: &mut Scratch,
) -> Option<Decision> {
    let (decision, cmd) = bound;
    let node = match decision {
        Decision::Pool => node,
        Decision::Dedicated { .. } => {
            // A MULTI held, or ending with nothing queued: no node yet.
            if holds_multi(shared, st, false) || (st.multi_unsent && st.queued == 0) {
                return None;
            }
            st.dedicated_node
        }
        _ => return None,
    };
    let health = &shared.router.node(node).health;
    let slot = || crate::router::slot_of(cmd, args);
    if !shared.failover.covers(health, slot) {
        return None;
    }
    let scope = Scope::Slot { slot: slot(), health };
    failover(st, Bound { decision, cmd, scope }, args, request, shared, scratch)
}

/// With a cluster, the reply to a request spread over masters some of
/// which are served from local memory (unreachable, or writes of a slot
/// it names wait in the journal): refused, since the local store cannot
/// answer for the others and their part must not overtake journaled
/// writes.
fn fan_in_failover(shared: &Shared, fan: &Fan, args: &Args) -> Option<Bytes> {
    let failover = &shared.failover;
    let covered = |(node, slot): (NodeId, Option<u16>)| {
        let health = &shared.router.node(node).health;
        match slot {
            Some(slot) => failover.covers(health, || slot),
            None => failover.covers_node(health) || failover.slots_pending(),
        }
    };
    if !fan.reach().any(covered) {
        return None;
    }
    observe::failover_command("refused");
    let name = String::from_utf8_lossy(args.get(0).unwrap_or_default()).to_uppercase();
    Some(encode::error(&format!(
        "TRYAGAIN upstream unavailable for some of the masters, {name} spanning masters not available in failover mode"
    )))
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
