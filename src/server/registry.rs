//! The connected clients: each one's socket (to close it) and what the
//! proxy knows of it ([`Activity`]). The idle reaper, the closing of a
//! revoked tenant's clients and shutdown work from here, and so do the
//! CLIENT commands that name clients (`LIST`, `INFO`, `KILL`): Redis only
//! sees the proxy's shared upstream connections, so they are answered from
//! this registry, in Redis' formats. A tenant sees and kills only its own
//! tenant's clients.

use super::activity::{self, Activity};
use super::redirects;
use super::socket::Closable;
use crate::observe;
use crate::protocol::{encode, request::parse_int, Args, Proto};
use crate::tenancy::Tenant;
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::oneshot;

/// A connected client as the registry sees it.
type Registered = (Arc<dyn Closable>, Arc<Activity>);

#[derive(Default)]
pub struct Clients {
    sockets: Mutex<HashMap<u64, Registered>>,
    closing: AtomicBool,
    /// Sessions accepted and not yet ended (for `max_clients`).
    pub live: AtomicUsize,
}

/// Who asks: the caller's id and what it can see.
pub struct Caller<'a> {
    pub id: u64,
    /// Its tenant, when tenancy is on: only that tenant's clients are seen.
    pub tenant: Option<&'a Arc<Tenant>>,
    pub tenancy: bool,
}

impl Caller<'_> {
    fn sees(&self, activity: &Activity) -> bool {
        !self.tenancy || activity.tenant().as_ref().zip(self.tenant).is_some_and(|(a, b)| Arc::ptr_eq(a, b))
    }
}

impl Clients {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Registered>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// False once shutdown has begun: the client is not served.
    pub fn register(&self, id: u64, socket: Arc<dyn Closable>, activity: Arc<Activity>) -> bool {
        let mut sockets = self.lock();
        if self.closing.load(Ordering::Acquire) {
            return false;
        }
        sockets.insert(id, (socket, activity));
        true
    }

    pub fn deregister(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Connected clients.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// Closes clients idle for longer than `limit` (those holding upstream
    /// state, e.g. subscribed or blocked, are exempt, as in Redis).
    pub fn close_idle(&self, limit: Duration) {
        for (id, (socket, activity)) in self.lock().iter() {
            if activity.idle_for() > limit && !activity.is_exempt() {
                observe::client_idle_closed();
                tracing::info!(client = id, idle = ?activity.idle_for(), "closing idle client");
                socket.shutdown(Shutdown::Both);
            }
        }
    }

    /// Closes the clients of tenants a reload revoked; returns how many.
    pub fn close_revoked(&self) -> usize {
        let mut closed = 0;
        for (id, (socket, activity)) in self.lock().iter() {
            if let Some(tenant) = activity.revoked_tenant() {
                tracing::info!(client = id, tenant, "closing a client of a revoked tenant");
                socket.shutdown(Shutdown::Both);
                closed += 1;
            }
        }
        closed
    }

    /// Shuts down the read side of every client socket: each session sees
    /// end-of-input, finishes the replies it owes and closes.
    pub fn end_input(&self) {
        let sockets = self.lock();
        self.closing.store(true, Ordering::Release);
        for (socket, _) in sockets.values() {
            socket.shutdown(Shutdown::Read);
        }
    }

    /// CLIENT KILL: closes the clients the filter matches, other than the
    /// caller; returns how many matched, and whether the caller did (it
    /// closes itself after its reply).
    pub fn kill(&self, filter: &KillFilter, caller: &Caller) -> (usize, bool) {
        let (mut killed, mut itself) = (0, false);
        for (&id, (socket, activity)) in self.lock().iter() {
            if !caller.sees(activity) || !filter.matches(id, activity, caller) {
                continue;
            }
            killed += 1;
            if id == caller.id {
                itself = true;
            } else {
                tracing::info!(client = id, by = caller.id, "client killed by CLIENT KILL");
                socket.shutdown(Shutdown::Both);
            }
        }
        (killed, itself)
    }

    /// Asks client `id` (other than the caller, and one it may see) to open
    /// a dedicated connection to be the caller's redirect target. Only a
    /// RESP3 client is asked (its session listens for summons): a RESP2
    /// target receives invalidations only once subscribed, which gives it
    /// its connection. The error is the caller's reply.
    pub fn summon(&self, id: u64, caller: &Caller) -> Result<oneshot::Receiver<Option<i64>>, Bytes> {
        let sockets = self.lock();
        let Some((_, activity)) = sockets.get(&id).filter(|(_, activity)| id != caller.id && caller.sees(activity))
        else {
            return Err(redirects::no_such_client());
        };
        if activity.profile().resp != 3 {
            return Err(encode::error(
                "ERR the client ID you want redirect to has no connection to Redis yet: through nearcache, \
                 a RESP2 target must SUBSCRIBE to __redis__:invalidate first",
            ));
        }
        let (answer, rx) = oneshot::channel();
        activity.summons.summon(answer);
        Ok(rx)
    }

    /// True when client `id` exists and the caller may see it.
    pub fn sees(&self, id: u64, caller: &Caller) -> bool {
        self.lock().get(&id).is_some_and(|(_, activity)| caller.sees(activity))
    }

    /// CLIENT LIST: one line per client the filter matches, by id.
    pub fn list(&self, filter: &ListFilter, caller: &Caller) -> String {
        activity::tick();
        let sockets = self.lock();
        let mut ids: Vec<u64> =
            sockets.iter().filter(|(&id, (_, a))| caller.sees(a) && filter.matches(id, a)).map(|(&id, _)| id).collect();
        ids.sort_unstable();
        let mut out = String::new();
        for id in ids {
            if let Some((_, activity)) = sockets.get(&id) {
                line(&mut out, id, activity);
            }
        }
        out
    }

    /// CLIENT INFO: the caller's own line.
    pub fn info(&self, id: u64) -> String {
        activity::tick();
        let mut out = String::new();
        if let Some((_, activity)) = self.lock().get(&id) {
            line(&mut out, id, activity);
        }
        out
    }
}

/// A client's line in CLIENT LIST / CLIENT INFO, with Redis 7.2's fields.
/// The buffer and memory fields are the proxy's to know and it does not
/// track them per client: they read 0.
fn line(out: &mut String, id: u64, activity: &Activity) {
    let p = activity.profile().clone();
    let flags: String = [(p.sub + p.psub + p.ssub > 0, 'P'), (p.multi >= 0, 'x'), (p.tracking, 't')]
        .iter()
        .filter(|f| f.0)
        .map(|f| f.1)
        .collect();
    let user = activity.tenant().map_or_else(|| "default".to_string(), |t| t.name().to_string());
    let text = |b: &Option<Bytes>| b.as_deref().map(String::from_utf8_lossy).unwrap_or_default().into_owned();
    let _ = writeln!(
        out,
        "id={id} addr={} laddr={} fd=-1 name={} age={} idle={} flags={} db={} sub={} psub={} ssub={} multi={} \
         qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} \
         user={user} redir=-1 resp={} lib-name={} lib-ver={}",
        activity.peer,
        activity.local,
        text(&p.name),
        activity.age().as_secs(),
        activity.idle_for().as_secs(),
        if flags.is_empty() { "N" } else { &flags },
        p.db,
        p.sub,
        p.psub,
        p.ssub,
        p.multi,
        activity.last_command(),
        p.resp,
        text(&p.lib_name),
        text(&p.lib_ver),
    );
}

/// CLIENT LIST / CLIENT INFO's reply: a verbatim string in RESP3, a bulk
/// string in RESP2, as Redis sends them.
pub fn text_reply(text: &str, proto: Proto) -> Bytes {
    let mut out = BytesMut::with_capacity(text.len() + 16);
    match proto {
        Proto::Resp2 => encode::bulk(&mut out, text.as_bytes()),
        Proto::Resp3 => {
            encode::header(&mut out, b'=', text.len() + 4);
            out.extend_from_slice(b"txt:");
            out.extend_from_slice(text.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.freeze()
}

/// Client types of CLIENT KILL / CLIENT LIST `TYPE`. The proxy's clients
/// are never masters or replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientType {
    Normal,
    PubSub,
    Replication,
}

impl ClientType {
    fn parse(name: &[u8]) -> Result<ClientType, Bytes> {
        match name.to_ascii_lowercase().as_slice() {
            b"normal" => Ok(ClientType::Normal),
            b"pubsub" => Ok(ClientType::PubSub),
            b"master" | b"slave" | b"replica" => Ok(ClientType::Replication),
            _ => Err(encode::error(&format!("ERR Unknown client type '{}'", String::from_utf8_lossy(name)))),
        }
    }

    fn of(activity: &Activity) -> ClientType {
        let p = activity.profile();
        if p.sub + p.psub + p.ssub > 0 {
            ClientType::PubSub
        } else {
            ClientType::Normal
        }
    }
}

/// `CLIENT KILL ip:port`, or `CLIENT KILL <filter> <value> …` with ID, TYPE,
/// ADDR, LADDR, USER, MAXAGE and SKIPME, as Redis parses them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KillFilter {
    /// The old form: answered `+OK` or `-ERR No such client`.
    pub old_form: bool,
    id: Option<u64>,
    kind: Option<ClientType>,
    addr: Option<String>,
    laddr: Option<String>,
    user: Option<String>,
    max_age: Option<u64>,
    skip_me: bool,
}

impl KillFilter {
    pub fn parse(args: &Args) -> Result<KillFilter, Bytes> {
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        if args.len() == 3 {
            let addr = Some(text(args.get(2).unwrap_or_default()));
            return Ok(KillFilter { old_form: true, addr, ..KillFilter::default() });
        }
        let mut filter = KillFilter { skip_me: true, ..KillFilter::default() };
        let mut i = 2;
        while i < args.len() {
            let (Some(name), Some(value)) = (args.get(i), args.get(i + 1)) else {
                return Err(encode::error("ERR syntax error"));
            };
            match name.to_ascii_lowercase().as_slice() {
                b"id" => match parse_int(value).and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0) {
                    Some(v) => filter.id = Some(v),
                    None => return Err(encode::error("ERR client-id should be greater than 0")),
                },
                b"type" => filter.kind = Some(ClientType::parse(value)?),
                b"addr" => filter.addr = Some(text(value)),
                b"laddr" => filter.laddr = Some(text(value)),
                b"user" => filter.user = Some(text(value)),
                b"maxage" => match parse_int(value).map(u64::try_from) {
                    Some(Ok(v)) if v > 0 => filter.max_age = Some(v),
                    Some(_) => return Err(encode::error("ERR maxage should be greater than 0")),
                    None => return Err(encode::error("ERR maxage is not an integer or out of range")),
                },
                b"skipme" => match value.to_ascii_lowercase().as_slice() {
                    b"yes" => filter.skip_me = true,
                    b"no" => filter.skip_me = false,
                    _ => return Err(encode::error("ERR syntax error")),
                },
                _ => return Err(encode::error("ERR syntax error")),
            }
            i += 2;
        }
        Ok(filter)
    }

    /// The user the filter names, if any (to check that it exists).
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    fn matches(&self, id: u64, activity: &Activity, caller: &Caller) -> bool {
        if self.skip_me && id == caller.id && !self.old_form {
            return false;
        }
        let user = activity.tenant().map_or_else(|| "default".to_string(), |t| t.name().to_string());
        self.id.is_none_or(|v| v == id)
            && self.kind.is_none_or(|k| k == ClientType::of(activity))
            && self.addr.as_ref().is_none_or(|a| *a == activity.peer.to_string())
            && self.laddr.as_ref().is_none_or(|a| *a == activity.local.to_string())
            && self.user.as_ref().is_none_or(|u| *u == user)
            && self.max_age.is_none_or(|max| activity.age().as_secs() >= max)
    }
}

/// `CLIENT LIST [TYPE type] [ID id …]`, as Redis parses it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListFilter {
    kind: Option<ClientType>,
    ids: Option<Vec<u64>>,
}

impl ListFilter {
    pub fn parse(args: &Args) -> Result<ListFilter, Bytes> {
        let option = args.get(2).map(<[u8]>::to_ascii_lowercase);
        match (args.len(), option.as_deref()) {
            (2, _) => Ok(ListFilter::default()),
            (4, Some(b"type")) => {
                Ok(ListFilter { kind: Some(ClientType::parse(args.get(3).unwrap_or_default())?), ids: None })
            }
            (n, Some(b"id")) if n > 3 => {
                let ids = args
                    .iter()
                    .skip(3)
                    .map(|a| parse_int(a).and_then(|v| u64::try_from(v).ok()).filter(|&v| v > 0))
                    .collect::<Option<Vec<u64>>>()
                    .ok_or_else(|| encode::error("ERR Invalid client ID"))?;
                Ok(ListFilter { kind: None, ids: Some(ids) })
            }
            _ => Err(encode::error("ERR syntax error")),
        }
    }

    fn matches(&self, id: u64, activity: &Activity) -> bool {
        self.kind.is_none_or(|k| k == ClientType::of(activity)) && self.ids.as_ref().is_none_or(|ids| ids.contains(&id))
    }
}
