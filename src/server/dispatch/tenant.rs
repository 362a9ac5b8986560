//! The tenancy gate of a session: every request of a client passes here
//! first when tenants are configured. It authenticates (`AUTH`, `HELLO …
//! AUTH`), refuses what an unauthenticated client or the tenant may not
//! run, applies the tenant's rate limit, and rewrites the request into the
//! tenant's namespace (`tenancy::rewrite`), with the fix its reply needs.

use super::reply::ReplyMap;
use crate::commands::{self, Command, Handler, Local, State};
use crate::observe;
use crate::protocol::request::Limits;
use crate::protocol::{encode, Args, Proto};
use crate::server::activity::Activity;
use crate::server::Shared;
use crate::tenancy::rewrite::{self, Refusal, ReplyFix, Workspace};
use crate::tenancy::{AuthError, DedicatedLease, InFlight, PoolCharge, Seat, Tenancy, Tenant, Unauthenticated};
use bytes::{Bytes, BytesMut};
use std::net::IpAddr;
use std::sync::Arc;

/// What happens to one request.
pub enum Gate {
    /// Carry on with it as it is.
    Pass,
    /// Answer this instead (a refusal, or AUTH's reply).
    Reply(Bytes),
    /// Carry on with this request in its place; its reply goes through the
    /// map, if any. Its argument ranges are the client's
    /// ([`Client::take_ranges`]).
    Rewrite(Bytes, Option<ReplyMap>),
}

/// The gate's decision before it is turned into a [`Gate`].
enum Step {
    Pass,
    Reply(Bytes),
    Rewrite(Bytes, Fix),
}

/// What the reply of a rewritten request needs.
enum Fix {
    /// The request's own fix.
    Reply(ReplyFix),
    /// EXEC: the fixes of the queued commands, one per element.
    Exec(Vec<ReplyFix>),
    /// EXEC of a transaction in which the gate refused a command: sent as
    /// DISCARD, answered EXECABORT, as Redis does for a command it refuses
    /// while queueing.
    Aborted,
}

/// The client's side of tenancy: its seat (tenant), its address for the
/// brake on password guessing, and the transaction it is queueing.
pub struct Client {
    seat: Option<Seat>,
    /// Until it authenticates: its place among its address' unauthenticated
    /// connections (`None` when the address had none left).
    unauthenticated: Option<Unauthenticated>,
    peer: IpAddr,
    transaction: Transaction,
    /// Where the client registry sees the tenant (to close its clients when
    /// a reload revokes it).
    activity: Arc<Activity>,
    /// Its requests on the shared pool, counted against `max_in_flight`.
    in_flight: InFlight,
    /// Its dedicated upstream connection, counted against `max_dedicated`.
    dedicated: Option<DedicatedLease>,
    /// Room to rewrite its requests in (and key positions, when the
    /// tenant's rate counts keys).
    work: Workspace,
}

/// Inside MULTI: the reply fixes of the commands queued upstream, in order,
/// and whether the gate refused one (the transaction must then abort).
#[derive(Default)]
struct Transaction {
    fixes: Vec<ReplyFix>,
    aborted: bool,
}

impl Client {
    /// A new connection from `peer`: the default tenant's, if one is
    /// configured, otherwise unauthenticated.
    pub fn new(tenancy: &Tenancy, peer: IpAddr, activity: Arc<Activity>) -> Client {
        let seat = tenancy.default_seat();
        let unauthenticated = match &seat {
            None if tenancy.enabled() => tenancy.unauthenticated(peer),
            _ => None,
        };
        let mut client = Client {
            seat: None,
            unauthenticated,
            peer,
            transaction: Transaction::default(),
            activity,
            in_flight: InFlight::default(),
            dedicated: None,
            work: Workspace::default(),
        };
        client.set_seat(seat);
        client
    }

    /// The refusal of a connection its address may not open: it already
    /// has `max_unauthenticated_per_address` that have not authenticated.
    pub fn refusal(&self, tenancy: &Tenancy) -> Option<Bytes> {
        if !tenancy.enabled() || self.seat.is_some() || self.unauthenticated.is_some() {
            return None;
        }
        observe::unauthenticated_refused();
        tracing::warn!(peer = %self.peer, "too many unauthenticated connections from one address, connection refused");
        Some(encode::error("ERR too many unauthenticated connections from this address"))
    }

    fn set_seat(&mut self, seat: Option<Seat>) {
        self.activity.set_tenant(seat.as_ref().map(|s| s.tenant().clone()));
        if seat.is_some() {
            self.unauthenticated = None;
        }
        self.seat = seat;
    }

    /// The client's tenant, once it has one.
    pub fn tenant(&self) -> Option<&Arc<crate::tenancy::Tenant>> {
        self.seat.as_ref().map(Seat::tenant)
    }

    /// What the client may send: Redis' limits for a client that has not
    /// authenticated, its tenant's `max_request_bytes` once it has.
    pub fn limits(&self, tenancy: &Tenancy, proxy: &Limits) -> Limits {
        match &self.seat {
            _ if !tenancy.enabled() => *proxy,
            None => Limits::UNAUTHENTICATED,
            Some(seat) => {
                let max = seat.tenant().max_request_bytes();
                Limits { max_request_len: max.min(proxy.max_request_len), ..*proxy }
            }
        }
    }

    /// True when the client's tenant has `max_in_flight` requests on the
    /// shared pool: the client is not read until some are answered.
    pub fn held_back(&self) -> bool {
        self.seat.as_ref().is_some_and(|s| s.tenant().over_in_flight())
    }

    /// Counts that the client stopped being read for its tenant's
    /// `max_in_flight`.
    pub fn note_held_back(&self) {
        if let Some(seat) = &self.seat {
            observe::tenant_refusal(seat.tenant().name(), "max_in_flight");
        }
    }

    /// `count` requests went to the shared pool.
    pub fn sent(&mut self, count: usize) {
        if let Some(seat) = &self.seat {
            self.in_flight.sent(seat.tenant(), count);
        }
    }

    /// `count` requests handed off to the shared pool: their charge
    /// against the tenant's `max_in_flight`, held by the pool (none without
    /// a tenant).
    pub fn charge(&self, count: usize) -> Option<PoolCharge> {
        self.seat.as_ref().map(|seat| seat.tenant().charge(count))
    }

    /// `count` requests on the shared pool were answered.
    pub fn answered(&mut self, count: usize) {
        self.in_flight.answered(count);
    }

    /// Counts the dedicated upstream connection the client is about to
    /// open against its tenant's `max_dedicated`; the refusal when the
    /// tenant holds them all.
    pub fn open_dedicated(&mut self) -> Result<(), Bytes> {
        let Some(seat) = &self.seat else {
            return Ok(());
        };
        let tenant = seat.tenant();
        match tenant.dedicated() {
            Some(d) => {
                self.dedicated = Some(d);
                Ok(())
            }
            None => {
                observe::tenant_refusal(tenant.name(), "max_dedicated");
                tracing::debug!(tenant = tenant.name(), "tenant holds max_dedicated upstream connections: refused");
                Err(encode::error(&format!(
                    "BUSY tenant {} holds its max_dedicated upstream connections (transactions, blocking \
                     commands, subscriptions): retry later",
                    tenant.name()
                )))
            }
        }
    }

    /// The client's dedicated upstream connection was closed.
    pub fn closed_dedicated(&mut self) {
        self.dedicated = None;
    }

    /// Strips the tenant's prefix from a frame pushed on a subscribed
    /// connection.
    pub fn pushed(&self, frame: Bytes) -> Bytes {
        match &self.seat {
            Some(seat) => rewrite::pushed(&seat.tenant().prefix, &frame),
            None => frame,
        }
    }

    /// Swaps the argument ranges of the request the gate rewrote last into
    /// `ranges`.
    pub fn take_ranges(&mut self, ranges: &mut Vec<std::ops::Range<usize>>) {
        self.work.take_ranges(ranges);
    }

    /// The step as a [`Gate`], with the reply map its fix needs.
    fn finish(&mut self, step: Step, proto: Proto) -> Gate {
        let (request, fix) = match step {
            Step::Pass => return Gate::Pass,
            Step::Reply(reply) => return Gate::Reply(reply),
            Step::Rewrite(request, fix) => (request, fix),
        };
        let prefix = || self.seat.as_ref().map(|s| s.tenant().prefix.clone()).unwrap_or_default();
        let map: ReplyMap = match fix {
            Fix::Reply(ReplyFix::None) => return Gate::Rewrite(request, None),
            Fix::Reply(fix) => {
                let prefix = prefix();
                Box::new(move |reply: Bytes| rewrite::reply(&prefix, fix, proto, &reply))
            }
            Fix::Exec(fixes) if fixes.iter().all(|f| *f == ReplyFix::None) => return Gate::Rewrite(request, None),
            Fix::Exec(fixes) => {
                let prefix = prefix();
                Box::new(move |reply: Bytes| rewrite::exec_reply(&prefix, &fixes, proto, &reply))
            }
            Fix::Aborted => {
                let abort = |_| encode::error("EXECABORT Transaction discarded because of previous errors.");
                return Gate::Rewrite(rewrite::words(&[b"DISCARD"], &mut self.work), Some(Box::new(abort)));
            }
        };
        Gate::Rewrite(request, Some(map))
    }
}

impl Transaction {
    /// Follows a step taken inside MULTI: what is queued upstream records
    /// its fix (its reply now is `+QUEUED`; the fix applies to its element
    /// of EXEC's reply), what the gate answers itself aborts the
    /// transaction, EXEC gets the fixes.
    fn follow(&mut self, parent: Option<&Command>, step: Step) -> Step {
        match (parent.map(|c| c.handler), step) {
            (Some(Handler::State(State::Exec)), Step::Rewrite(request, _)) => match std::mem::take(self) {
                Transaction { aborted: true, .. } => Step::Rewrite(request, Fix::Aborted),
                Transaction { fixes, .. } => Step::Rewrite(request, Fix::Exec(fixes)),
            },
            (Some(Handler::State(State::Discard) | Handler::Local(Local::Reset | Local::Quit)), step) => {
                *self = Transaction::default();
                step
            }
            // Answered at once by Redis, not queued.
            (Some(Handler::State(State::Multi | State::Watch)), step) => step,
            (_, Step::Reply(reply)) => {
                self.aborted = true;
                Step::Reply(reply)
            }
            (_, Step::Rewrite(request, Fix::Reply(fix))) => {
                self.fixes.push(fix);
                Step::Rewrite(request, Fix::Reply(ReplyFix::None))
            }
            (_, step) => {
                self.fixes.push(ReplyFix::None);
                step
            }
        }
    }
}

const NOAUTH: &str = "NOAUTH Authentication required.";
const REVOKED: &str = "NOAUTH the tenant was removed or its credentials changed: authenticate again";

/// What the connection holds upstream when a request arrives.
#[derive(Clone, Copy)]
pub struct Held {
    /// It is queueing a transaction.
    pub multi: bool,
    /// It holds state a tenant owns (subscriptions, a transaction, WATCH,
    /// tracking…): it may not switch to another tenant.
    pub state: bool,
}

/// Decides what happens to one request of the client (`parent`: its
/// command in the table, `None` when unknown).
pub fn gate(
    shared: &Shared,
    client: &mut Client,
    parent: Option<&'static Command>,
    args: &Args,
    proto: Proto,
    held: Held,
) -> Gate {
    let step = match parent {
        Some(parent) => decide(shared, client, parent, args, held.state),
        None => refuse_unknown(client, args),
    };
    let step = if held.multi { client.transaction.follow(parent, step) } else { step };
    client.finish(step, proto)
}

fn decide(shared: &Shared, client: &mut Client, parent: &'static Command, args: &Args, holds_state: bool) -> Step {
    let cmd = parent.resolve(args);
    match parent.handler {
        Handler::Local(Local::Auth) => return auth(shared, client, args, holds_state),
        Handler::Local(Local::Hello) => {
            if let Some(refused) = hello_auth(shared, client, args, holds_state) {
                return Step::Reply(refused);
            }
        }
        Handler::Local(Local::Reset) => client.set_seat(shared.tenancy.default_seat()),
        _ => {}
    }
    if client.seat.as_ref().is_some_and(|s| s.tenant().is_revoked()) {
        client.set_seat(None);
        return Step::Reply(encode::error(REVOKED));
    }
    let Some(seat) = &client.seat else {
        if parent.name == "ping" {
            return Step::Reply(unauthenticated_ping(args));
        }
        let open = matches!(parent.handler, Handler::Local(Local::Quit | Local::Hello | Local::Reset));
        return if open { Step::Pass } else { Step::Reply(encode::error(NOAUTH)) };
    };
    let tenant = seat.tenant();
    tenant.count_command();
    if !tenant.permits(parent, cmd) {
        return not_allowed(tenant.name(), args);
    }
    let keys = match tenant.counts_keys() {
        true => commands::key_indices(cmd, args, client.work.keys()).map_or(0, |()| client.work.keys().len()),
        false => 0,
    };
    let bytes = args.range(args.len().saturating_sub(1)).map_or(0, |r| r.end + 2);
    if let Some(limit) = tenant.take(keys, bytes) {
        observe::tenant_refusal(tenant.name(), "rate_limit");
        let name = tenant.name();
        return Step::Reply(encode::error(&format!("BUSY rate limit exceeded for tenant {name} ({limit})")));
    }
    match parent.handler {
        Handler::Local(Local::Select) => not_allowed(tenant.name(), args),
        Handler::Local(_) => Step::Pass,
        _ => rewritten(tenant, parent, cmd, args, &mut client.work),
    }
}

fn rewritten(tenant: &Tenant, parent: &Command, cmd: &Command, args: &Args, work: &mut Workspace) -> Step {
    let name = tenant.name();
    match rewrite::request(&tenant.prefix, parent, cmd, args, tenant.allowances(), work) {
        Ok(rw) => Step::Rewrite(rw.request, Fix::Reply(rw.fix)),
        Err(Refusal::NotAllowed) => not_allowed(name, args),
        Err(Refusal::Form(why)) => {
            observe::tenant_refusal(name, "form");
            Step::Reply(encode::error(&format!("NOPERM {why}")))
        }
        Err(Refusal::Payload(why)) => {
            observe::tenant_refusal(name, "payload");
            Step::Reply(encode::error(&format!("ERR DUMP payload refused: {why}")))
        }
    }
}

fn not_allowed(tenant: &str, args: &Args) -> Step {
    observe::tenant_refusal(tenant, "not_allowed");
    let name = String::from_utf8_lossy(args.get(0).unwrap_or_default()).to_lowercase();
    tracing::debug!(tenant, command = %name, "command refused for tenant");
    Step::Reply(encode::error(&format!("NOPERM this command is not allowed for tenant {tenant}")))
}

/// `PING [message]` of a client that has not authenticated, answered by
/// the proxy: health checks work before AUTH without reaching Redis (an
/// unauthenticated client sends nothing upstream at all).
fn unauthenticated_ping(args: &Args) -> Bytes {
    match (args.len(), args.get(1)) {
        (1, _) => Bytes::from_static(b"+PONG\r\n"),
        (2, Some(message)) => {
            let mut out = BytesMut::new();
            encode::bulk(&mut out, message);
            out.freeze()
        }
        _ => encode::error("ERR wrong number of arguments for 'ping' command"),
    }
}

/// Commands not in the table: refused (fail closed).
fn refuse_unknown(client: &Client, args: &Args) -> Step {
    match &client.seat {
        Some(seat) => not_allowed(seat.tenant().name(), args),
        None => Step::Reply(encode::error(NOAUTH)),
    }
}

/// `AUTH tenant password` (or `AUTH password`, for a tenant named
/// `default`).
fn auth(shared: &Shared, client: &mut Client, args: &Args, holds_state: bool) -> Step {
    let (name, password) = match (args.len(), args.get(1), args.get(2)) {
        (2, Some(password), None) => (&b"default"[..], password),
        (3, Some(name), Some(password)) => (name, password),
        _ => return Step::Reply(encode::error("ERR wrong number of arguments for 'auth' command")),
    };
    match login(shared, client, name, password, holds_state) {
        None => Step::Reply(Bytes::from_static(encode::OK)),
        Some(refused) => Step::Reply(refused),
    }
}

/// `HELLO ver AUTH name password …`: the error when the credentials are
/// refused; `None` when there are none or they are good.
fn hello_auth(shared: &Shared, client: &mut Client, args: &Args, holds_state: bool) -> Option<Bytes> {
    let at = (2..args.len()).find(|&i| args.get(i).is_some_and(|a| a.eq_ignore_ascii_case(b"auth")))?;
    let (name, password) = (args.get(at + 1)?, args.get(at + 2)?);
    login(shared, client, name, password, holds_state)
}

/// Authenticates the client as tenant `name`. A connection holding state
/// upstream (subscriptions, a transaction, WATCH, tracking) may not switch
/// to another tenant: that state is the first tenant's, and its messages
/// and replies would reach the second one.
fn login(shared: &Shared, client: &mut Client, name: &[u8], password: &[u8], holds_state: bool) -> Option<Bytes> {
    match shared.tenancy.authenticate(name, password, client.peer) {
        Ok(seat) if holds_state && client.seat.as_ref().is_some_and(|s| s.tenant().name() != seat.tenant().name()) => {
            Some(encode::error(
                "ERR this connection holds subscriptions, a transaction, WATCH or tracking of its tenant: RESET \
                 or reconnect before authenticating as another tenant",
            ))
        }
        Ok(seat) => {
            tracing::debug!(tenant = seat.tenant().name(), peer = %client.peer, "tenant authenticated");
            client.set_seat(Some(seat));
            None
        }
        Err(e) => {
            if e == AuthError::TooManyConnections {
                observe::tenant_refusal(&String::from_utf8_lossy(name), "max_connections");
            }
            Some(encode::error(&e.to_string()))
        }
    }
}
