//! One client connection: reads pipelined requests, has the dispatch
//! layer decide each one's fate ([`dispatch::decide`]), carries it out
//! (batches for the shared pool, the dedicated connection's I/O), and
//! writes every reply back in request order, within the output limits.
//!
//! Replies are owed in a queue ([`Pending`]): locally produced bytes, a job
//! on the shared pool, or frames still to come from the session's dedicated
//! connection. The session waits only on the head of the queue, so order is
//! kept whatever mix of destinations a pipeline has, and a dedicated
//! connection's unsolicited frames (pub/sub messages, MONITOR lines) are read
//! only when nothing earlier is still owed.

use super::activity::Activity;
use super::batch::{Batch, Source};
use super::dispatch::answer::{self, Checked};
use super::dispatch::reply::{pool_replies, ReplyMap, Slot};
use super::dispatch::route::{ClientState, Login, SideEffect};
use super::dispatch::tenant;
use super::dispatch::{self, Apply, Carry, Ctx, Dispatched, Fate};
use super::dispatch::{fan, follow};
use super::redirects;
use super::registry::Caller;
use super::satellites::{Mirror, Satellites};
use super::socket::ClientWriter;
use super::users::Credentials;
use super::{NodePools, Pools, Shared};
use crate::cache::Scratch;
use crate::commands::LastName;
use crate::fill::Fill;
use crate::observe;
use crate::protocol::frame::{pubsub, PubSub};
use crate::protocol::request::{self, Parsed};
use crate::protocol::{encode, Args, Proto, ProtocolError};
use crate::router::{NodeId, DEFAULT_NODE};
use crate::upstream::dedicated::DedicatedConn;
use crate::upstream::handoff::{self, Handoff, Outcome};
use crate::upstream::out_of_band;
use crate::upstream::pool::{Handed, JobResult};
use crate::upstream::UpstreamError;
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::ops::Range;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What woke the session up.
enum Wake {
    /// The socket takes output again.
    Writable,
    /// A reply or pushed frame arrived.
    Event(Event),
    /// Input: the byte count read (0: the client closed its side).
    Read(usize),
    /// Other clients named this one as their redirect target.
    Summoned,
}

/// Where a pool request goes, and whether its reply is suppressed: a batch
/// holds requests of one kind only.
#[derive(Clone, Copy)]
struct Target {
    node: NodeId,
    silent: bool,
}

/// A reply owed to the client, in request order.
enum Pending {
    Ready(Bytes),
    Pool {
        rx: follow::Answer,
        /// Client commands answered by this job.
        count: usize,
        silent: bool,
        started: Instant,
        /// What each command's replies are, when some are near-cache reads
        /// to complete (and cache) on the way; `None`: plain pass-through.
        slots: Option<Vec<Slot>>,
    },
    /// A pool batch whose replies the pool's reader writes to the client
    /// itself (see [`handoff`]): the session's only debt while it lasts.
    Handed {
        count: usize,
        started: Instant,
    },
    Dedicated {
        remaining: usize,
        silent: bool,
        discard: bool,
        deadline: Option<Instant>,
        /// Applied to the reply (a tenant's key names).
        map: Option<ReplyMap>,
    },
}

/// A transaction's opening, sent by the proxy for a cluster client whose
/// `MULTI` dispatch held (see `ClientState::multi_unsent`).
const MULTI: &[u8] = b"*1\r\n$5\r\nMULTI\r\n";

/// The write the proxy makes on a dedicated connection before a `WAIT`
/// (see [`crate::commands::Flags::AFTER_WRITES`]): a `PUBLISH` (replicated, and changing no
/// data) on a channel of the proxy's own.
const WRITE_MARK: &[u8] = b"*3\r\n$7\r\nPUBLISH\r\n$18\r\n__nearcache__:wait\r\n$0\r\n\r\n";

/// Replies bigger than this are written from their own buffer instead of
/// being copied into the session's write buffer.
const COPY_LIMIT: usize = 16 * 1024;

/// Unwritten output past which the client's requests are not read until it
/// catches up (no more requests are sent upstream for it; replies already
/// on their way, and pushed messages, still arrive, up to the output
/// buffer limit).
const READ_PAUSE: usize = 1024 * 1024;

/// How often a client held back by its tenant's `max_in_flight` looks
/// whether the tenant is below it again.
const HOLD_BACK: Duration = Duration::from_millis(2);

/// How long a client may stay past `client_output_buffer_limit` (a soft
/// limit, so a client reading a reply larger than it is not cut off).
const OUTPUT_GRACE: Duration = Duration::from_secs(10);

pub struct Session<R, W> {
    shared: Arc<Shared>,
    /// This worker thread's upstream pools.
    pools: Arc<Pools>,
    /// The pools logged in as the client's own Redis user, once Redis
    /// accepted its AUTH (`server.auth = "upstream"`); used while
    /// `st.upstream_user`.
    user_pools: Option<Arc<NodePools>>,
    st: ClientState,
    reader: R,
    writer: Arc<W>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    out: VecDeque<Bytes>,
    args: Vec<Range<usize>>,
    inline: Vec<Vec<u8>>,
    /// Bytes the read buffer should make room for (a partly received bulk).
    reserve: usize,
    scratch: Scratch,
    names: LastName,
    batch: Batch,
    pending: VecDeque<Pending>,
    /// Commands whose replies are still owed (backpressure).
    in_flight: usize,
    dedicated: Option<DedicatedConn>,
    /// The node the dedicated connection is on (its spares take it back).
    dedicated_on: NodeId,
    dedicated_out: BytesMut,
    dedicated_entries: usize,
    /// The dedicated connection carried a command that may have left state
    /// on it the session did not see end: it is cleaned (`RESET`) before
    /// another client gets it.
    dedicated_lasting: bool,
    /// No more requests are read; the session ends once nothing is owed.
    closing: bool,
    /// Complete requests were left in the read buffer because too many
    /// replies were owed.
    stalled: bool,
    /// Since when more than the output limit has been unwritten.
    past_limit_since: Option<Instant>,
    /// A batch's replies outgrew the hard output limit and were dropped.
    replies_dropped: bool,
    /// Last input, and whether idling is allowed (for the idle timeout).
    activity: Arc<Activity>,
    /// The client's tenant, when tenancy is on.
    tenant: tenant::Client,
    /// Lent to a lone request's batch, for its replies to go straight to
    /// the client.
    handoff: Arc<Handoff>,
    /// With a cluster, while subscribed to keyspace notifications: the
    /// other masters' (see [`super::satellites`]).
    satellites: Option<Satellites>,
}

impl<R: Fill, W: ClientWriter> Session<R, W> {
    /// A session over the two halves of a client socket. Shutdown ends it
    /// by shutting down the socket's read side (see `Clients`): the session
    /// then sees end-of-input, finishes what it owes and closes.
    pub fn new(
        shared: Arc<Shared>,
        pools: Arc<Pools>,
        reader: R,
        writer: Arc<W>,
        id: u64,
        peer: IpAddr,
        activity: Arc<Activity>,
    ) -> Session<R, W> {
        let (default_db, auth_upstream) = (shared.router.default_node().config.url.db, shared.auth_upstream);
        let cluster_view = shared.router.as_cluster().map(|_| activity.local);
        let tenant = tenant::Client::new(&shared.tenancy, peer, activity.clone());
        let refusal = tenant.refusal(&shared.tenancy);
        let direct = Box::new(Direct { writer: writer.clone(), activity: activity.clone() });
        let handoff = Arc::new(Handoff::new(direct, cluster_view.is_some()));
        Session {
            shared,
            pools,
            user_pools: None,
            st: ClientState { auth_upstream, cluster_view, ..ClientState::new(id, default_db) },
            reader,
            writer,
            rbuf: BytesMut::with_capacity(16 * 1024),
            wbuf: BytesMut::with_capacity(16 * 1024),
            out: VecDeque::new(),
            args: Vec::new(),
            inline: Vec::new(),
            reserve: 0,
            scratch: Scratch::default(),
            names: Default::default(),
            batch: Batch::default(),
            pending: refusal.clone().map(Pending::Ready).into_iter().collect(),
            in_flight: 0,
            dedicated: None,
            dedicated_on: DEFAULT_NODE,
            dedicated_out: BytesMut::new(),
            dedicated_entries: 0,
            dedicated_lasting: false,
            closing: refusal.is_some(),
            stalled: false,
            past_limit_since: None,
            replies_dropped: false,
            activity,
            tenant,
            handoff,
            satellites: None,
        }
    }

    /// Serves the client until it disconnects, quits, or the proxy shuts
    /// down.
    pub async fn run(mut self) -> std::io::Result<()> {
        let result = self.serve().await;
        self.end();
        result
    }

    /// The socket loop.
    async fn serve(&mut self) -> std::io::Result<()> {
        loop {
            // A lone handed-off batch is looked at by the wait below.
            if !self.owes_only_handed() {
                self.drain_completed();
            }
            let unwritten = self.write_ready()?;
            if self.past_output_limit(unwritten) {
                observe::client_output_limit();
                tracing::warn!(
                    client = self.st.id,
                    unwritten,
                    limit = self.shared.output_limit,
                    "client does not read its replies: output buffer limit reached, disconnecting"
                );
                return Ok(());
            }
            if self.closing && self.pending.is_empty() && unwritten == 0 {
                return Ok(());
            }
            // A tenant with `max_in_flight` requests on the pool waits for
            // replies (its own clients', looked at again every HOLD_BACK).
            let held_back = !self.closing && self.tenant.held_back();
            let reading =
                !self.closing && self.in_flight < self.shared.max_pipeline && unwritten < READ_PAUSE && !held_back;
            if self.stalled && reading {
                self.handle_input().await;
                continue;
            }
            self.activity.set_exempt(self.dedicated.is_some() || !self.pending.is_empty());
            // A client that does not read its replies is not read from
            // either; pushed messages keep coming until the output limit.
            let can_read = reading;
            // A RESP3 connection may be sent pushes at any time (redirected
            // invalidations): its dedicated connection is always listened to.
            let listening = self.st.expects_pushes() || self.st.proto == Proto::Resp3;
            let waiting = !self.pending.is_empty() || (self.dedicated.is_some() && listening);
            // A handed-off batch delivered is looked at when the client
            // next sends something, unless the session has to know sooner.
            let lazy = can_read && self.pending.len() == 1;
            // A RESP3 client may be named as a redirect target (see
            // `redirects`); a RESP2 one gets its connection by subscribing.
            let summonable = self.st.proto == Proto::Resp3 && self.dedicated.is_none() && !self.closing;
            // Three forms, so the common cases do not pay for futures they
            // never poll: a client owed at most a handed-off batch (most
            // connections, most of the time), then everything written,
            // then the general case.
            let wake = if unwritten == 0 && self.only_read_or_handoff(held_back, summonable) {
                let handed = !self.pending.is_empty();
                if !handed && !can_read {
                    return Ok(());
                }
                self.read_or_handoff(handed, can_read, lazy).await?
            } else if unwritten == 0 {
                tokio::select! {
                    biased;
                    event = next_event(&mut self.pending, &mut self.dedicated, &self.handoff, lazy), if waiting => Wake::Event(event),
                    read = std::future::poll_fn(|cx| self.reader.poll_fill(cx, &mut self.rbuf)), if can_read => Wake::Read(read?),
                    aside = next_aside(&mut self.satellites, &self.activity.summons, summonable), if summonable || self.satellites.is_some() => aside,
                    // (An async block: select! builds every branch's future,
                    // and a sleep built is a clock read.)
                    () = async { crate::timer::sleep(HOLD_BACK).await }, if held_back => Wake::Writable,
                    // Nothing owed and nothing to read: only reachable if
                    // the bookkeeping is wrong; end the session rather than
                    // spin.
                    else => return Ok(()),
                }
            } else {
                tokio::select! {
                    biased;
                    writable = self.writer.writable() => {
                        writable?;
                        Wake::Writable
                    }
                    event = next_event(&mut self.pending, &mut self.dedicated, &self.handoff, lazy), if waiting => Wake::Event(event),
                    read = std::future::poll_fn(|cx| self.reader.poll_fill(cx, &mut self.rbuf)), if can_read => Wake::Read(read?),
                    aside = next_aside(&mut self.satellites, &self.activity.summons, summonable), if summonable || self.satellites.is_some() => aside,
                    // (An async block: select! builds every branch's future,
                    // and a sleep built is a clock read.)
                    () = async { crate::timer::sleep(HOLD_BACK).await }, if held_back => Wake::Writable,
                }
            };
            match wake {
                Wake::Writable => {}
                // (Boxed: a rare path that would otherwise grow every session.)
                Wake::Summoned => Box::pin(self.answer_summons()).await,
                Wake::Event(event) => self.on_event(event),
                Wake::Read(0) if self.must_stop_now() => return Ok(()),
                Wake::Read(0) => self.closing = true,
                Wake::Read(_) => {
                    // What came meanwhile goes first (a handed-off batch
                    // delivered: the new requests may be handed off too).
                    self.drain_completed();
                    self.handle_input().await;
                }
            }
        }
    }

    /// True when all the session owes is one handed-off batch.
    #[inline]
    fn owes_only_handed(&self) -> bool {
        self.pending.len() == 1 && matches!(self.pending.front(), Some(Pending::Handed { .. }))
    }

    /// True when the session waits only for its client's input and its
    /// handed-off batch's outcome, if any: what [`Session::read_or_handoff`]
    /// waits for (the `select!` in `serve` waits for the same then, at a
    /// higher cost per wake).
    #[inline]
    fn only_read_or_handoff(&self, held_back: bool, summonable: bool) -> bool {
        let owed = match self.pending.front() {
            None => true,
            Some(Pending::Handed { .. }) => self.pending.len() == 1,
            Some(_) => false,
        };
        owed && !held_back && !summonable && self.dedicated.is_none() && self.satellites.is_none()
    }

    /// Waits for the handed-off batch's outcome (when `handed`; first, as
    /// `serve`'s `select!` is biased) or the client's input (when
    /// `can_read`).
    async fn read_or_handoff(&mut self, handed: bool, can_read: bool, lazy: bool) -> std::io::Result<Wake> {
        let (handoff, reader, rbuf) = (&self.handoff, &mut self.reader, &mut self.rbuf);
        std::future::poll_fn(|cx| {
            if handed {
                if let Poll::Ready(outcome) = handoff.poll_outcome(cx, !lazy) {
                    return Poll::Ready(Ok(Wake::Event(Event::Handed(outcome))));
                }
            }
            if can_read {
                if let Poll::Ready(read) = reader.poll_fill(cx, rbuf) {
                    return Poll::Ready(read.map(Wake::Read));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// True when the client has left more than the output limit unread for
    /// [`OUTPUT_GRACE`] in a row, or more than the hard limit, or a batch's
    /// replies were dropped for outgrowing it: it is to be disconnected.
    #[inline]
    fn past_output_limit(&mut self, unwritten: usize) -> bool {
        if unwritten <= self.shared.output_limit && !self.replies_dropped {
            if self.past_limit_since.is_some() {
                self.past_limit_since = None;
            }
            return false;
        }
        self.past_output_limit_now(unwritten)
    }

    #[cold]
    fn past_output_limit_now(&mut self, unwritten: usize) -> bool {
        let since = *self.past_limit_since.get_or_insert_with(Instant::now);
        self.replies_dropped || unwritten > self.shared.hard_output_limit() || since.elapsed() >= OUTPUT_GRACE
    }

    /// True when what is owed may never come (a blocked command,
    /// subscriptions): the session ends without waiting for it.
    fn must_stop_now(&self) -> bool {
        let blocked = self.pending.iter().any(|p| matches!(p, Pending::Dedicated { deadline: None, .. }));
        blocked || self.st.expects_pushes()
    }

    /// Parses every complete request in the read buffer and carries each
    /// one out: consecutive pool requests from one read go upstream as one
    /// write, dedicated requests are batched into one write.
    async fn handle_input(&mut self) {
        // Lend the read buffer out while requests refer to it; the consumed
        // bytes are dropped afterwards (no copy, no allocation).
        let input = std::mem::take(&mut self.rbuf);
        let now = Instant::now();
        self.activity.touch();
        let mut consumed = 0;
        let mut fatal = None;
        // Without tenants the limits never change; with them, an AUTH in
        // the middle of a pipeline does.
        let tenants = self.shared.tenancy.enabled();
        while !self.closing && self.in_flight < self.shared.max_pipeline && !self.tenant.held_back() {
            if consumed == input.len() {
                // Everything read is handled (a lone request: one pass).
                self.reserve = 0;
                break;
            }
            let tenant_limits;
            let limits = match tenants {
                false => &self.shared.limits,
                true => {
                    tenant_limits = self.tenant.limits(&self.shared.tenancy, &self.shared.limits);
                    &tenant_limits
                }
            };
            let parsed = request::parse(&input[consumed..], limits, &mut self.args, &mut self.inline);
            let (len, owned) = match parsed {
                Err(e) => {
                    fatal = Some(e);
                    break;
                }
                Ok(Parsed::Incomplete { hint }) => {
                    self.reserve = hint.saturating_sub(input.len() - consumed);
                    break;
                }
                Ok(Parsed::Empty { len }) => {
                    consumed += len;
                    continue;
                }
                Ok(Parsed::Multibulk { len }) => (len, None),
                Ok(Parsed::Inline { len }) => (len, Some(self.reencode_inline())),
            };
            let range = consumed..consumed + len;
            consumed += len;
            if self.shared.pause.active() || self.shared.failover.draining() {
                let request = owned.as_deref().unwrap_or(&input[range.clone()]);
                self.wait_for_pause_and_drain(&input, request, now).await;
            }
            // With no reply owed before this one, a hit goes straight to
            // the write buffer.
            let owed = !self.pending.is_empty() || !self.batch.is_empty();
            let proto = self.st.proto;
            let ctx = Ctx {
                shared: &self.shared,
                st: &mut self.st,
                tenant: &mut self.tenant,
                activity: &self.activity,
                scratch: &mut self.scratch,
                names: &mut self.names,
                ranges: &mut self.args,
                dedicated: self.dedicated.is_some(),
                out: (!owed).then_some(&mut self.wbuf),
                now,
            };
            let input_request = if owned.is_some() { &[][..] } else { &input[range.clone()] };
            let Dispatched { fate, silent } = dispatch::decide(ctx, input_request, owned);
            // The fate is carried out without an await on the way (one
            // would keep it in the task's state: a copy per request).
            if self.st.proto != proto {
                self.switch_then_carry_out(&input, proto, range, fate, silent, now).await;
            } else if let Some(applied) = self.carry_out(&input, range.clone(), fate, silent, now) {
                self.apply_fate(&input, range, applied, silent, now).await;
            }
        }
        self.flush_batch(&input, now);
        self.flush_dedicated().await;
        let held_back = self.tenant.held_back();
        if held_back && !self.stalled {
            self.tenant.note_held_back();
        }
        self.stalled = self.in_flight >= self.shared.max_pipeline || held_back;
        self.rbuf = input;
        self.rbuf.advance(consumed);
        self.rbuf.reserve(std::mem::take(&mut self.reserve));
        if let Some(e) = fatal {
            self.protocol_error(e);
        }
    }

    /// Turns the inline command just parsed into a RESP multibulk and
    /// re-parses it, so it is handled exactly like one.
    fn reencode_inline(&mut self) -> Bytes {
        let mut buf = BytesMut::new();
        encode::command(&mut buf, self.inline.iter().map(Vec::as_slice));
        dispatch::reparse(buf.freeze(), &mut self.args)
    }

    /// CLIENT PAUSE and the failover journal's last round hold requests
    /// back: what the client sent before goes out, then the request waits.
    async fn wait_for_pause_and_drain(&mut self, input: &[u8], request: &[u8], now: Instant) {
        if self.shared.pause.active() {
            let args = Args::new(request, &self.args);
            let cmd = args.get(0).and_then(|name| self.names.lookup(name)).map(|(_, parent)| parent.resolve(&args));
            if cmd.is_some_and(|cmd| self.shared.pause.holds(cmd)) {
                self.flush_batch(input, now);
                self.shared.pause.wait().await;
            }
        }
        if self.shared.failover.draining() {
            // The journal's last round is being replayed: wait for it, so
            // the journal stops growing and the circuit can close.
            self.flush_batch(input, now);
            self.shared.failover.wait_drained(self.shared.router.default_node().config.request_timeout).await;
        }
    }

    fn protocol_error(&mut self, e: ProtocolError) {
        observe::protocol_error();
        tracing::debug!(client = self.st.id, error = %e, "protocol error, closing client");
        self.pending.push_back(Pending::Ready(encode::error(&format!("ERR Protocol error: {e}"))));
        self.closing = true;
    }

    /// Adds one request (`replies` upstream replies) to the batch for the
    /// shared pool of `to.node`.
    fn batch_add(&mut self, input: &[u8], source: Source, slot: Slot, to: Target, now: Instant) {
        if !self.batch.is_empty() && (self.batch.silent != to.silent || self.batch.node != to.node) {
            self.flush_batch(input, now);
        }
        self.batch.add(input, source, slot, to.silent, to.node);
    }

    /// Carries out `fate` where nothing needs waiting for; gives back what
    /// the session carries out itself ([`Fate::Apply`]).
    #[inline(always)]
    fn carry_out(
        &mut self,
        input: &[u8],
        range: Range<usize>,
        fate: Fate,
        silent: bool,
        now: Instant,
    ) -> Option<Box<Apply>> {
        match fate {
            Fate::Written => {}
            Fate::Ready(reply) => {
                self.flush_batch(input, now);
                if !silent {
                    self.pending.push_back(Pending::Ready(reply));
                }
            }
            Fate::Wait(rx) => {
                self.flush_batch(input, now);
                self.owe_one(rx, silent, now);
            }
            Fate::Fan(fan) => {
                self.flush_batch(input, now);
                self.send_fan(*fan, silent, now);
            }
            Fate::Pool { node, bytes, slot } => {
                let source = match &bytes {
                    Some(bytes) => Source::Bytes(bytes),
                    None => Source::Input(range),
                };
                self.batch_add(input, source, slot, Target { node, silent }, now);
            }
            Fate::Apply(applied) => return Some(applied),
        }
        None
    }

    /// Carries out a request after which the client speaks another
    /// protocol (HELLO, RESET): what it sent before is answered first.
    async fn switch_then_carry_out(
        &mut self,
        input: &[u8],
        old: Proto,
        range: Range<usize>,
        fate: Fate,
        silent: bool,
        now: Instant,
    ) {
        self.switch_pools(input, old, now).await;
        if let Some(applied) = self.carry_out(input, range.clone(), fate, silent, now) {
            self.apply_fate(input, range, applied, silent, now).await;
        }
    }

    /// Carries out a [`Fate::Apply`] after what was batched before it.
    async fn apply_fate(&mut self, input: &[u8], range: Range<usize>, applied: Box<Apply>, silent: bool, now: Instant) {
        self.flush_batch(input, now);
        let Apply { carry, map, rewritten } = *applied;
        let request = rewritten.as_deref().unwrap_or(&input[range]);
        self.apply(carry, request, silent, now, map).await;
    }

    /// Sends the batch on the session's pool connection.
    fn flush_batch(&mut self, input: &[u8], started: Instant) {
        self.flush_batch_on(self.st.proto, input, started);
    }

    /// Sends the batch on the session's connection of the pool speaking
    /// `proto`.
    fn flush_batch_on(&mut self, proto: Proto, input: &[u8], started: Instant) {
        if self.batch.is_empty() {
            return;
        }
        let (affinity, payload, replies) = (self.st.id as usize, self.batch.payload(input), self.batch.replies);
        let node = self.batch.node;
        let sent = follow::Send { node, proto, affinity, payload, replies, started };
        let cluster = self.shared.router.as_cluster().is_some();
        if self.may_hand_off() {
            let count = self.batch.commands;
            let charge = self.tenant.charge(count);
            if cluster {
                follow::set_detour(&self.handoff, &self.shared, &self.pools, &sent);
            }
            let handed = Handed { affinity, payload, count: replies, now: started, charge };
            self.pools.get(node, proto).hand_off(handed, &self.handoff);
            self.batch.finish();
            self.pending.push_back(Pending::Handed { count, started });
            self.in_flight += count;
            return;
        }
        let rx = match self.own_user() {
            Some(own) => own.get(proto).send(affinity, payload, replies, started).into(),
            None if cluster => follow::send(&self.shared, &self.pools, sent),
            None => self.pools.get(node, proto).send(affinity, payload, replies, started).into(),
        };
        let (count, silent) = (self.batch.commands, self.batch.silent);
        let slots = self.batch.finish();
        self.pending.push_back(Pending::Pool { rx, count, silent, started, slots });
        self.in_flight += count;
        self.tenant.sent(count);
    }

    /// The batch may go as a handoff: nothing is owed or unwritten before
    /// it, its replies are passed on as they are (on a cluster, after its
    /// redirections are followed), and nothing else writes to the client
    /// meanwhile (no dedicated connection, no pushes). A tenant's batch
    /// carries its `max_in_flight` charge into the pool, let go as its
    /// replies arrive.
    fn may_hand_off(&self) -> bool {
        self.pending.is_empty()
            && self.wbuf.is_empty()
            && self.out.is_empty()
            && !self.batch.silent
            && self.batch.is_plain()
            && self.dedicated.is_none()
            && !self.st.expects_pushes()
            && self.own_user().is_none()
    }

    /// The client just switched protocols (HELLO, RESET): each protocol has
    /// its own pool, so what it sent before goes out on the old one and is
    /// answered before anything goes on the new one, which could overtake
    /// it (a GET before a SET it follows).
    async fn switch_pools(&mut self, input: &[u8], old: Proto, now: Instant) {
        self.flush_batch_on(old, input, now);
        self.settle_pool().await;
    }

    async fn apply(&mut self, carry: Carry, request: &[u8], silent: bool, now: Instant, map: Option<ReplyMap>) {
        match carry {
            Carry::Close(reply) => {
                if !silent {
                    self.pending.push_back(Pending::Ready(reply));
                }
                self.closing = true;
            }
            Carry::Tracking => self.send_tracking(request, silent, now, map).await,
            Carry::Dedicated { replies, blocking, write_mark, mirror, lasting } => {
                let deadline = (!blocking).then(|| now + self.shared.router.default_node().config.request_timeout);
                let entry = Pending::Dedicated { remaining: replies, silent, discard: false, deadline, map };
                if write_mark {
                    let mark = Pending::Dedicated { remaining: 1, silent: true, discard: true, deadline, map: None };
                    self.send_dedicated(WRITE_MARK, mark, false).await;
                }
                self.send_dedicated(request, entry, lasting).await;
                self.mirror(request, mirror).await;
            }
            Carry::Authenticate(login) => self.authenticate(*login, silent).await,
            Carry::OutOfBand => self.send_out_of_band(Bytes::copy_from_slice(request), silent, now),
            Carry::AfterWrites(fan) => {
                self.settle_pool().await;
                self.send_fan(*fan, silent, now);
            }
            Carry::SideEffect(effect) => {
                let SideEffect { upstream, reply } = *effect;
                let deadline = Some(now + self.shared.router.default_node().config.request_timeout);
                let entry = Pending::Dedicated { remaining: 1, silent: true, discard: true, deadline, map: None };
                self.send_dedicated(&upstream, entry, true).await;
                if !silent {
                    self.pending.push_back(Pending::Ready(reply));
                }
            }
        }
    }

    /// `AUTH` / `HELLO … AUTH` checked by Redis (`server.auth =
    /// "upstream"`): a connection opened as the user is the check; from then
    /// on the client's commands go on this thread's pool logged in with the
    /// same credentials (see `users`), and its dedicated connections are
    /// opened as the user, so Redis' ACLs apply to it as to a direct client.
    /// Refused credentials get Redis' error and change nothing.
    async fn authenticate(&mut self, login: Login, silent: bool) {
        self.settle_pool().await;
        let Login { user, password, hello } = login;
        let credentials = Credentials { user, password };
        let node = self.shared.router.default_node();
        let proto = hello.as_ref().map_or(self.st.proto, |(proto, _)| *proto);
        let checked = match DedicatedConn::open(&credentials.config(&node.config), proto, "client").await {
            Err(UpstreamError::Handshake(refused)) => Checked::Refused(encode::error(&refused)),
            Err(e) => Checked::Refused(e.reply()),
            Ok(_) => match self.pools.for_user(node, &credentials) {
                Some(pools) => {
                    self.user_pools = Some(pools);
                    Checked::Accepted
                }
                None => Checked::TooManyUsers,
            },
        };
        let reply = answer::logged_in(&mut self.st, hello, checked, &node.health);
        self.activity.refresh(&self.st);
        if !silent {
            self.pending.push_back(Pending::Ready(reply));
        }
    }

    /// Sends one request on a connection of its own (see `out_of_band`);
    /// its reply takes its place among those owed.
    fn send_out_of_band(&mut self, request: Bytes, silent: bool, now: Instant) {
        // As the client's own Redis user, if it has one: its ACLs apply.
        let node = match self.own_user() {
            Some(own) => own.node(),
            None => self.shared.router.default_node(),
        };
        let rx = out_of_band::send(node.config.clone(), self.st.proto, request);
        self.owe_one(rx, silent, now);
    }

    /// Sends a request spread over a cluster's masters; its merged reply
    /// takes its place among those owed.
    fn send_fan(&mut self, fan: fan::Fan, silent: bool, now: Instant) {
        let rx = fan::send(&self.shared, &self.pools, fan, self.st.proto, self.st.id as usize, now);
        self.owe_one(rx, silent, now);
    }

    /// One reply owed, to come through `rx` (sent at `now`).
    fn owe_one(&mut self, rx: oneshot::Receiver<JobResult>, silent: bool, now: Instant) {
        self.pending.push_back(Pending::Pool { rx: rx.into(), count: 1, silent, started: now, slots: None });
        self.in_flight += 1;
    }

    /// The pools logged in as the client's own Redis user, while it is
    /// logged in as one.
    fn own_user(&self) -> Option<&Arc<NodePools>> {
        self.user_pools.as_ref().filter(|_| self.st.upstream_user)
    }

    /// CLIENT TRACKING: sent on the dedicated connection, a `REDIRECT`'s
    /// client id translated (see `redirects`), the named client given a
    /// dedicated connection first if it has none. If no connection can be
    /// opened, the error is the last reply: the client would otherwise go
    /// on caching with nothing to invalidate it.
    async fn send_tracking(&mut self, request: &[u8], silent: bool, now: Instant, map: Option<ReplyMap>) {
        let mut redirect = redirects::redirect(request, &self.shared.redirects);
        if let redirects::Redirect::Unconnected(target) = redirect {
            redirect = match self.summon(target).await {
                Ok(()) => redirects::redirect(request, &self.shared.redirects),
                Err(refusal) => {
                    if !silent {
                        self.pending.push_back(Pending::Ready(refusal));
                    }
                    return;
                }
            };
        }
        let rewritten = match redirect {
            redirects::Redirect::Unchanged => None,
            redirects::Redirect::Rewritten(rewritten) => Some(rewritten),
            redirects::Redirect::Unconnected(_) => {
                if !silent {
                    self.pending.push_back(Pending::Ready(redirects::no_such_client()));
                }
                return;
            }
        };
        let deadline = Some(now + self.shared.router.default_node().config.request_timeout);
        let entry = Pending::Dedicated { remaining: 1, silent, discard: false, deadline, map };
        self.send_dedicated(rewritten.as_deref().unwrap_or(request), entry, true).await;
        if self.dedicated.is_none() {
            self.closing = true;
        }
    }

    /// Gives client `target` (this one or another it may see) a dedicated
    /// connection to be a redirect target; the error is the client's
    /// reply. Another client is asked through the registry and answers
    /// from its own session, within `request_timeout`. (With a Redis
    /// Cluster, a client's dedicated connection is on one node and
    /// tracking on another: not done.)
    async fn summon(&mut self, target: u64) -> Result<(), Bytes> {
        if self.shared.router.as_cluster().is_some() {
            return Err(redirects::no_such_client());
        }
        if target == self.st.id {
            self.open_dedicated_idle().await;
            return self.dedicated.as_ref().map(|_| ()).ok_or_else(redirects::no_such_client);
        }
        let caller = Caller { id: self.st.id, tenant: self.tenant.tenant(), tenancy: self.shared.tenancy.enabled() };
        let answer = self.shared.clients.summon(target, &caller)?;
        let timeout = self.shared.router.default_node().config.request_timeout;
        match crate::timer::timeout(timeout, answer).await {
            Ok(Ok(Some(_))) => Ok(()),
            _ => Err(redirects::no_such_client()),
        }
    }

    /// Other clients named this one as their redirect target: it opens a
    /// dedicated connection, keeps it while connected (session-bound
    /// state, listened to) and tells them its upstream id.
    async fn answer_summons(&mut self) {
        let answers = self.activity.summons.take();
        if answers.is_empty() {
            return;
        }
        self.open_dedicated_idle().await;
        let upstream = self.shared.redirects.upstream_of(self.st.id).filter(|_| self.dedicated.is_some());
        if upstream.is_some() {
            self.st.session_bound = true;
            self.activity.refresh(&self.st);
            tracing::debug!(client = self.st.id, "opened a dedicated upstream connection as a redirect target");
        }
        for answer in answers {
            // The asker may have given up (timed out): nothing to do.
            let _ = answer.send(upstream);
        }
    }

    /// Opens the dedicated connection, sending nothing on it, unless there
    /// is one; a failure is not the client's reply (it asked nothing).
    async fn open_dedicated_idle(&mut self) {
        if self.dedicated.is_none() {
            let open = Pending::Dedicated { remaining: 0, silent: true, discard: false, deadline: None, map: None };
            self.send_dedicated(&[], open, true).await;
        }
    }

    /// A dedicated connection logged in as the client's own Redis user.
    async fn open_as_user(own: Option<Arc<NodePools>>, proto: Proto) -> Result<DedicatedConn, Bytes> {
        let Some(own) = own else { return Err(encode::error("ERR no Redis user logged in")) };
        DedicatedConn::open(&own.node().config, proto, "client").await.map_err(|e| {
            observe::upstream_error(e.kind());
            e.reply()
        })
    }

    /// With a cluster, a (un)subscription of keyspace notifications
    /// (`request`) goes to the other masters too, as `mirror` says (see
    /// [`super::satellites`]), once the dedicated connection took it.
    async fn mirror(&mut self, request: &[u8], mirror: Mirror) {
        if self.dedicated.is_none() {
            return;
        }
        match mirror {
            Mirror::No => return,
            Mirror::IfOpen => {}
            Mirror::Open if self.satellites.is_some() => {}
            Mirror::Open => match Satellites::open(&self.shared, self.dedicated_on, self.st.proto).await {
                Ok(opened) => self.satellites = Some(opened),
                Err(e) => return self.dedicated_failed(e),
            },
        }
        let limit = self.shared.router.default_node().config.request_timeout;
        let sent = match &self.satellites {
            Some(satellites) => satellites.send(request, limit).await,
            None => Ok(()),
        };
        if let Err(e) = sent {
            self.dedicated_failed(e);
        }
    }

    /// Queues `request` for the dedicated connection, opening it first if the
    /// session has none; `lasting`: it may leave state on the connection
    /// past its reply (see `Command::leaves_state`).
    async fn send_dedicated(&mut self, request: &[u8], entry: Pending, lasting: bool) {
        self.settle_pool().await;
        if self.dedicated.is_none() {
            let node = self.shared.router.node(self.st.dedicated_node);
            let breaker = &node.health.breaker;
            let opened = match self.tenant.open_dedicated() {
                Err(refusal) => Err(refusal),
                Ok(()) if self.st.upstream_user => Self::open_as_user(self.own_user().cloned(), self.st.proto).await,
                Ok(()) if !breaker.allows() => Err(breaker.refusal().reply()),
                Ok(()) => node.spares.take(self.st.proto).await.map_err(|e| {
                    observe::upstream_error(e.kind());
                    breaker.connect_failed(&e);
                    e.reply()
                }),
            };
            match opened {
                Ok(p) => {
                    if let Some(upstream) = p.upstream_id() {
                        self.shared.redirects.record(self.st.id, upstream);
                    }
                    self.dedicated = Some(p);
                    self.dedicated_on = self.st.dedicated_node;
                    self.dedicated_lasting = false;
                }
                Err(reply) => {
                    self.tenant.closed_dedicated();
                    if self.st.needs_dedicated() {
                        // The state the client asked for (a transaction, a
                        // database, subscriptions) does not exist: what it
                        // pipelined after must not run without it (a MULTI's
                        // commands one by one, a SET in the wrong database).
                        // It ends as if Redis had dropped the connection.
                        self.closing = true;
                    }
                    self.st.clear_upstream_state();
                    if !matches!(entry, Pending::Dedicated { silent: true, .. }) {
                        self.pending.push_back(Pending::Ready(reply));
                    }
                    return;
                }
            }
        }
        self.dedicated_lasting |= lasting;
        if let Pending::Dedicated { remaining: 0, .. } = entry {
            return;
        }
        if std::mem::take(&mut self.st.multi_unsent) {
            // Its `+OK` was the client's already.
            let discarded = Pending::Dedicated { remaining: 1, silent: true, discard: true, deadline: None, map: None };
            self.queue_dedicated(MULTI, discarded);
        }
        self.queue_dedicated(request, entry);
    }

    /// `request` goes out on the dedicated connection with the next write;
    /// `entry` is what its reply owes.
    fn queue_dedicated(&mut self, request: &[u8], entry: Pending) {
        self.dedicated_out.extend_from_slice(request);
        self.pending.push_back(entry);
        self.dedicated_entries += 1;
        self.in_flight += 1;
    }

    /// Waits until every request this session sent on the shared pool has
    /// been answered, keeping the replies in their places. Requests sent on
    /// the dedicated connection after this cannot overtake them upstream.
    async fn settle_pool(&mut self) {
        for i in 0..self.pending.len() {
            match self.pending.get_mut(i) {
                Some(Pending::Pool { rx, count, silent, started, slots }) => {
                    let (count, silent, started, slots) = (*count, *silent, *started, slots.take());
                    let result = rx.await.unwrap_or(Err(UpstreamError::ConnectionLost));
                    self.pending[i] = Pending::Ready(self.pool_result(result, count, silent, started, slots));
                }
                Some(Pending::Handed { count, started }) => {
                    let (count, started) = (*count, *started);
                    let outcome = std::future::poll_fn(|cx| self.handoff.poll_outcome(cx, true)).await;
                    self.pending[i] = Pending::Ready(self.handed(outcome, count, started));
                }
                _ => {}
            }
        }
    }

    async fn flush_dedicated(&mut self) {
        if self.dedicated_out.is_empty() {
            return;
        }
        let out = self.dedicated_out.split();
        let sent = match self.dedicated.as_mut() {
            Some(p) => p.send(&out).await,
            None => Err(UpstreamError::ConnectionLost),
        };
        if let Err(e) = sent {
            self.dedicated_failed(e);
        }
    }

    /// The dedicated connection failed: everything still owed from it becomes
    /// an error, and because the client's server-side state is gone, the
    /// session closes once those errors are written.
    fn dedicated_failed(&mut self, e: UpstreamError) {
        observe::upstream_error(e.kind());
        tracing::debug!(client = self.st.id, error = %e, "dedicated upstream connection failed");
        for entry in self.pending.iter_mut() {
            if let Pending::Dedicated { remaining, silent, discard, .. } = entry {
                let (remaining, silent, discard) = (*remaining, *silent, *discard);
                let mut errors = BytesMut::new();
                if !silent && !discard {
                    (0..remaining).for_each(|_| errors.extend_from_slice(&e.reply()));
                }
                self.in_flight -= 1;
                *entry = Pending::Ready(errors.freeze());
            }
        }
        self.dedicated = None;
        self.satellites = None;
        self.tenant.closed_dedicated();
        self.dedicated_entries = 0;
        self.st.clear_upstream_state();
        self.closing = true;
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Pool(result) => self.pool_done(result),
            Event::Handed(outcome) => self.handed_done(outcome),
            Event::Frame(Ok(frame)) => self.dedicated_frame(frame),
            Event::Frame(Err(e)) => self.dedicated_failed(e),
            Event::Notification(Ok(frame)) => {
                let frame = self.tenant.pushed(frame);
                self.emit(frame);
            }
            Event::Notification(Err(e)) => self.dedicated_failed(e),
        }
    }

    /// Moves every reply already available at the head of the queue to the
    /// write buffer.
    fn drain_completed(&mut self) {
        loop {
            match self.pending.front_mut() {
                Some(Pending::Ready(_)) => {
                    if let Some(Pending::Ready(bytes)) = self.pending.pop_front() {
                        self.emit(bytes);
                    }
                }
                Some(Pending::Pool { rx, .. }) => match rx.try_recv() {
                    Ok(result) => self.pool_done(result),
                    Err(oneshot::error::TryRecvError::Empty) => return,
                    Err(oneshot::error::TryRecvError::Closed) => self.pool_done(Err(UpstreamError::ConnectionLost)),
                },
                Some(&mut Pending::Handed { count, .. }) => match self.handoff.take() {
                    // The common end: the reader wrote the replies and
                    // counted their latency.
                    Some(Outcome::Delivered) => {
                        // Holds nothing: forgotten rather than handed to
                        // the enum's out-of-line drop glue.
                        std::mem::forget(self.pending.pop_front());
                        // The pool let the tenant's charge go.
                        self.in_flight -= count;
                    }
                    Some(outcome) => self.handed_done(outcome),
                    None => return,
                },
                _ => return,
            }
        }
    }

    fn pool_done(&mut self, result: JobResult) {
        let Some(Pending::Pool { count, silent, started, slots, .. }) = self.pending.pop_front() else {
            return;
        };
        let replies = self.pool_result(result, count, silent, started, slots);
        if !replies.is_empty() {
            self.emit(replies);
        }
    }

    fn handed_done(&mut self, outcome: Outcome) {
        let Some(Pending::Handed { count, started }) = self.pending.pop_front() else {
            return;
        };
        let rest = self.handed(outcome, count, started);
        if !rest.is_empty() {
            self.emit(rest);
        }
    }

    /// What is left to write of a handed-off batch of `count` requests.
    fn handed(&mut self, outcome: Outcome, count: usize, started: Instant) -> Bytes {
        // The pool let the tenant's charge go.
        self.in_flight -= count;
        match outcome {
            Outcome::Returned(Err(e)) => {
                self.kept(Err(e)).map_or_else(Bytes::new, |result| pool_replies(result, count, false, started, None))
            }
            // The reader counted their latency.
            Outcome::Delivered => Bytes::new(),
            Outcome::Returned(Ok(rest)) => rest,
        }
    }

    /// Replies to `count` requests are no longer owed.
    fn answered(&mut self, count: usize) {
        self.in_flight -= count;
        self.tenant.answered(count);
    }

    /// The client's replies for a pool batch of `count` requests now
    /// answered; none when they were dropped for the client's output limit
    /// (it is then disconnected, see [`Session::past_output_limit`]).
    fn pool_result(
        &mut self,
        result: JobResult,
        count: usize,
        silent: bool,
        started: Instant,
        slots: Option<Vec<Slot>>,
    ) -> Bytes {
        self.answered(count);
        self.kept(result).map_or_else(Bytes::new, |result| pool_replies(result, count, silent, started, slots))
    }

    /// A pool batch's `result`, unless its replies were dropped for the
    /// client's output limit.
    fn kept(&mut self, result: JobResult) -> Option<JobResult> {
        if let Err(UpstreamError::OutputLimit) = result {
            self.replies_dropped = true;
            return None;
        }
        Some(result)
    }

    /// A frame from the dedicated connection: the next owed reply, or pushed
    /// data (pub/sub message, MONITOR line, invalidation) passed straight on.
    fn dedicated_frame(&mut self, frame: Bytes) {
        let front_is_dedicated = matches!(self.pending.front(), Some(Pending::Dedicated { .. }));
        let event = match frame.first() {
            Some(b'>') => pubsub(&frame),
            Some(b'*') if self.st.proto == Proto::Resp2 && self.st.pubsub_mode => pubsub(&frame),
            _ => PubSub::Other,
        };
        if let PubSub::Confirmation { remaining: 0 } = event {
            self.st.pubsub_mode = false;
        }
        let is_reply = front_is_dedicated && !matches!(event, PubSub::Message) && !is_push(&frame, event);
        if !is_reply {
            let frame = self.tenant.pushed(frame);
            self.emit(frame);
            return;
        }
        let Some(Pending::Dedicated { remaining, silent, discard, map, .. }) = self.pending.front_mut() else {
            return;
        };
        *remaining -= 1;
        // A subscription confirmation is a push in Redis, not a reply: it
        // is sent whatever CLIENT REPLY says.
        let confirmation = matches!(event, PubSub::Confirmation { .. });
        let (done, show) = (*remaining == 0, (!*silent || confirmation) && !*discard);
        let frame = match map.take() {
            Some(map) => map(frame),
            None if confirmation => self.tenant.pushed(frame),
            None => frame,
        };
        if show {
            self.emit(frame);
        }
        if done {
            self.pending.pop_front();
            self.dedicated_entries -= 1;
            self.in_flight -= 1;
            self.release_dedicated_if_idle();
        }
    }

    /// Drops the dedicated connection once nothing is owed from it and the
    /// client holds no server-side state.
    fn release_dedicated_if_idle(&mut self) {
        if self.dedicated_entries == 0 && !self.st.needs_dedicated() {
            self.give_back_dedicated();
        }
    }

    /// Lets the dedicated connection go, owing nothing: back to the spares,
    /// as it is when it holds nothing of this client (no state left open,
    /// nothing sent that may have left some), cleaned there otherwise;
    /// closed if a redirect named it.
    fn give_back_dedicated(&mut self) {
        self.satellites = None;
        let Some(conn) = self.dedicated.take() else { return };
        self.tenant.closed_dedicated();
        if self.shared.redirects.forget(self.st.id) {
            observe::dedicated_returned("closed");
        } else {
            let clean = !self.dedicated_lasting && !self.st.needs_dedicated();
            self.shared.router.node(self.dedicated_on).spares.give_back(conn, clean);
        }
        tracing::trace!(client = self.st.id, "released dedicated upstream connection");
    }

    /// The session ends: its dedicated connection goes back if it owes
    /// nothing, and is closed if it does (a blocked command's reply may
    /// still come).
    fn end(&mut self) {
        self.satellites = None;
        if self.dedicated_entries == 0 {
            self.give_back_dedicated();
        } else if self.dedicated.take().is_some() {
            observe::dedicated_returned("closed");
        }
    }

    fn emit(&mut self, bytes: Bytes) {
        if bytes.len() < COPY_LIMIT {
            self.wbuf.extend_from_slice(&bytes);
            return;
        }
        if !self.wbuf.is_empty() {
            self.out.push_back(self.wbuf.split().freeze());
        }
        self.out.push_back(bytes);
    }

    /// Writes what the socket takes now, without waiting; returns how many
    /// bytes are left unwritten.
    fn write_ready(&mut self) -> std::io::Result<usize> {
        while let Some(segment) = self.out.front_mut() {
            match try_write(&*self.writer, segment)? {
                0 => return Ok(self.unwritten()),
                n if n == segment.len() => drop(self.out.pop_front()),
                n => segment.advance(n),
            }
            self.activity.touch();
        }
        while !self.wbuf.is_empty() {
            match try_write(&*self.writer, &self.wbuf)? {
                0 => return Ok(self.unwritten()),
                n if n == self.wbuf.len() => self.wbuf.clear(),
                n => self.wbuf.advance(n),
            }
            self.activity.touch();
        }
        Ok(0)
    }

    fn unwritten(&self) -> usize {
        self.out.iter().map(Bytes::len).sum::<usize>() + self.wbuf.len()
    }
}

/// Writes what the socket takes of `data` now: the count, 0 when it would
/// block.
fn try_write(writer: &impl ClientWriter, data: &[u8]) -> std::io::Result<usize> {
    match writer.try_write(data) {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
        Err(e) => Err(e),
    }
}

/// A RESP3 push that is not a subscription confirmation.
fn is_push(frame: &[u8], event: PubSub) -> bool {
    frame.first() == Some(&b'>') && !matches!(event, PubSub::Confirmation { .. })
}

enum Event {
    Pool(JobResult),
    Handed(Outcome),
    /// A keyspace notification from another master.
    Notification(Result<Bytes, UpstreamError>),
    Frame(Result<Bytes, UpstreamError>),
}

/// What may come aside from the client's own exchanges (one branch: both
/// are rare): a summons to be a redirect target (when `summonable`), or
/// the next keyspace notification from the other masters (with
/// satellites open).
fn next_aside<'a>(
    satellites: &'a mut Option<Satellites>,
    summons: &'a redirects::Summons,
    summonable: bool,
) -> impl std::future::Future<Output = Wake> + 'a {
    std::future::poll_fn(move |cx| {
        if summonable && summons.poll(cx).is_ready() {
            return std::task::Poll::Ready(Wake::Summoned);
        }
        match satellites.as_mut() {
            Some(open) => open
                .notifications
                .poll_recv(cx)
                .map(|note| Wake::Event(Event::Notification(note.unwrap_or(Err(UpstreamError::ConnectionLost))))),
            None => std::task::Poll::Pending,
        }
    })
}

/// Waits for whatever the head of the queue is waiting on; with nothing
/// owed, for pushed frames from the dedicated connection.
/// A handed-off batch wakes the session for its delivery only when not
/// `lazy`.
async fn next_event(
    pending: &mut VecDeque<Pending>,
    dedicated: &mut Option<DedicatedConn>,
    handoff: &Handoff,
    lazy: bool,
) -> Event {
    let deadline = match pending.front_mut() {
        Some(Pending::Pool { rx, .. }) => {
            return Event::Pool(rx.await.unwrap_or(Err(UpstreamError::ConnectionLost)));
        }
        Some(Pending::Handed { .. }) => {
            return Event::Handed(std::future::poll_fn(|cx| handoff.poll_outcome(cx, !lazy)).await);
        }
        Some(Pending::Dedicated { deadline, .. }) => *deadline,
        Some(Pending::Ready(_)) | None => None,
    };
    let Some(conn) = dedicated.as_mut() else {
        return Event::Frame(Err(UpstreamError::ConnectionLost));
    };
    match deadline {
        None => Event::Frame(conn.next_frame().await),
        Some(at) => match crate::timer::timeout_at(at.into(), conn.next_frame()).await {
            Ok(frame) => Event::Frame(frame),
            Err(_) => Event::Frame(Err(UpstreamError::Timeout)),
        },
    }
}

/// The client's end of the session's handoff.
struct Direct<W> {
    writer: Arc<W>,
    activity: Arc<Activity>,
}

impl<W: ClientWriter> handoff::ClientEnd for Direct<W> {
    fn try_write(&self, data: &[u8]) -> std::io::Result<usize> {
        self.writer.try_write(data)
    }

    fn delivered(&self) {
        self.activity.touch();
        // Owing nothing more, the session may idle (it looks again when
        // it wakes).
        self.activity.set_exempt(false);
    }
}
