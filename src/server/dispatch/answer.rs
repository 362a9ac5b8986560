//! Replies the proxy produces itself, in the client's protocol: HELLO,
//! CLIENT GETNAME/ID/SETNAME/SETINFO, and unsubscribe confirmations for a client
//! that has no subscriptions.

use super::route::{ClientState, Decision, Login, SideEffect};
use crate::commands::SubKind;
use crate::protocol::{encode, request::parse_int, Args, Proto};
use crate::server::users::MAX_USERS;
use crate::upstream::pool::Health;
use bytes::{Bytes, BytesMut};

/// Version HELLO reports before any upstream handshake told the real one.
const DEFAULT_VERSION: &str = "7.0.0";

pub fn integer(n: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(24);
    encode::integer(&mut out, n);
    out.freeze()
}

/// What Redis made of a client's credentials (`server.auth = "upstream"`).
pub enum Checked {
    /// A connection opened as the user: the client is logged in as it.
    Accepted,
    /// Accepted, but this worker thread already has pools for as many
    /// Redis users as it keeps.
    TooManyUsers,
    /// Refused (or Redis unreachable): this error is the reply.
    Refused(Bytes),
}

/// The reply to AUTH / HELLO … AUTH once Redis checked the credentials;
/// accepted ones log the client in, with HELLO's protocol and name.
/// Anything else changes nothing.
pub fn logged_in(
    st: &mut ClientState,
    hello: Option<(Proto, Option<Bytes>)>,
    checked: Checked,
    health: &Health,
) -> Bytes {
    match checked {
        Checked::Accepted => {
            st.upstream_user = true;
            let Some((proto, name)) = hello else { return Bytes::from_static(encode::OK) };
            st.proto = proto;
            if let Some(name) = name {
                // Checked when HELLO was routed.
                set_name(st, &name).ok();
            }
            hello_now(st, health)
        }
        Checked::TooManyUsers => encode::error(&format!(
            "ERR too many Redis users logged in through this proxy at once (at most {MAX_USERS} per worker thread)"
        )),
        Checked::Refused(reply) => reply,
    }
}

/// CLIENT GETNAME.
pub fn name(st: &ClientState) -> Bytes {
    let mut out = BytesMut::new();
    match &st.name {
        Some(name) => encode::bulk(&mut out, name),
        None => encode::null(&mut out, st.proto),
    }
    out.freeze()
}

/// CLIENT SETNAME, with Redis' validation (an empty name clears it).
pub fn set_name(st: &mut ClientState, name: &[u8]) -> Result<(), Bytes> {
    check_name(name)?;
    st.name = (!name.is_empty()).then(|| Bytes::copy_from_slice(name));
    Ok(())
}

fn check_name(name: &[u8]) -> Result<(), Bytes> {
    match name.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        true => Err(encode::error("ERR Client names cannot contain spaces, newlines or special characters.")),
        false => Ok(()),
    }
}

/// CLIENT SETINFO LIB-NAME|LIB-VER value, with Redis' validation (an empty
/// value clears it).
pub fn set_info(st: &mut ClientState, args: &Args) -> Result<(), Bytes> {
    let (attr, value) = (args.get(2).unwrap_or_default(), args.get(3).unwrap_or_default());
    let name = String::from_utf8_lossy(attr);
    let slot = match attr.to_ascii_lowercase().as_slice() {
        b"lib-name" => &mut st.lib_name,
        b"lib-ver" => &mut st.lib_ver,
        _ => return Err(encode::error(&format!("ERR Unrecognized option '{name}'"))),
    };
    if value.iter().any(|&b| !(b'!'..=b'~').contains(&b)) {
        return Err(encode::error(&format!("ERR {name} cannot contain spaces, newlines or special characters.")));
    }
    *slot = (!value.is_empty()).then(|| Bytes::copy_from_slice(value));
    Ok(())
}

/// HELLO [protover [AUTH user pass] [SETNAME name]].
pub fn hello(st: &mut ClientState, args: &Args, dedicated: bool, health: &Health) -> Decision {
    let proto = match args.get(1) {
        None => st.proto,
        Some(v) => match parse_int(v) {
            Some(2) => Proto::Resp2,
            Some(3) => Proto::Resp3,
            Some(_) => return Decision::Reply(encode::error("NOPROTO unsupported protocol version")),
            None => return Decision::Reply(encode::error("ERR Protocol version is not an integer or out of range")),
        },
    };
    let mut i = 2;
    let mut new_name = None;
    let mut credentials = None;
    while let Some(opt) = args.get(i) {
        let lower = opt.to_ascii_lowercase();
        match lower.as_slice() {
            b"auth" if args.len() > i + 2 => {
                credentials = args.get(i + 1).zip(args.get(i + 2));
                i += 3;
            }
            b"setname" if args.len() > i + 1 => {
                new_name = args.get(i + 1);
                i += 2;
            }
            _ => {
                let opt = String::from_utf8_lossy(opt);
                return Decision::Reply(encode::error(&format!("ERR Syntax error in HELLO option '{opt}'")));
            }
        }
    }
    if let Some(err) = new_name.and_then(|name| check_name(name).err()) {
        return Decision::Reply(err);
    }
    if let (true, Some((user, password))) = (st.auth_upstream, credentials) {
        if dedicated {
            return Decision::Reply(encode::error(AUTH_HOLDING_STATE));
        }
        let hello = Some((proto, new_name.map(Bytes::copy_from_slice)));
        let (user, password) = (Some(Bytes::copy_from_slice(user)), Bytes::copy_from_slice(password));
        return Decision::Authenticate(Box::new(Login { user, password, hello }));
    }
    if let Some(name) = new_name {
        // Checked above, before anything changed.
        set_name(st, name).ok();
    }
    let switched = proto != st.proto;
    st.proto = proto;
    let reply = hello_now(st, health);
    if dedicated && switched {
        let mut upstream = BytesMut::new();
        let n = itoa::Buffer::new().format(proto.number()).to_owned();
        encode::command(&mut upstream, [&b"HELLO"[..], n.as_bytes()].into_iter());
        return Decision::DedicatedSideEffect(Box::new(SideEffect { upstream: upstream.freeze(), reply }));
    }
    Decision::Reply(reply)
}

/// HELLO's reply for the client as it is now.
pub fn hello_now(st: &ClientState, health: &Health) -> Bytes {
    let server = health.identity();
    let version = server.version.as_deref().unwrap_or(DEFAULT_VERSION);
    hello_reply(st, server.name.as_deref().unwrap_or("redis"), version)
}

/// `AUTH` / `HELLO … AUTH` with `server.auth = "upstream"` on a connection
/// holding state upstream, which belongs to the user it has.
pub const AUTH_HOLDING_STATE: &str = "ERR with server.auth = \"upstream\", AUTH and HELLO AUTH are refused on a \
                                      connection holding state (a transaction, subscriptions, SELECT…): RESET first";

/// HELLO's reply, naming the upstream server (`redis`, `valkey`) and its
/// version as it does.
fn hello_reply(st: &ClientState, server: &str, version: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(128);
    encode::map_header(&mut out, st.proto, 7);
    for (key, value) in [(&b"server"[..], server.as_bytes()), (b"version", version.as_bytes())] {
        encode::bulk(&mut out, key);
        encode::bulk(&mut out, value);
    }
    encode::bulk(&mut out, b"proto");
    encode::integer(&mut out, st.proto.number());
    encode::bulk(&mut out, b"id");
    encode::integer(&mut out, st.id as i64);
    for (key, value) in [(&b"mode"[..], &b"standalone"[..]), (b"role", b"master")] {
        encode::bulk(&mut out, key);
        encode::bulk(&mut out, value);
    }
    encode::bulk(&mut out, b"modules");
    encode::header(&mut out, b'*', 0);
    out.freeze()
}

/// What Redis answers to an unsubscribe from a client with no
/// subscriptions: one confirmation per argument (or one with a null
/// channel), each reporting 0 subscriptions left.
pub fn unsubscribed(proto: Proto, kind: SubKind, args: &Args) -> Bytes {
    let name: &[u8] = match kind {
        SubKind::Channel => b"unsubscribe",
        SubKind::Pattern => b"punsubscribe",
        SubKind::Shard => b"sunsubscribe",
    };
    let ty = if proto == Proto::Resp3 { b'>' } else { b'*' };
    let mut out = BytesMut::new();
    let mut confirm = |channel: Option<&[u8]>| {
        encode::header(&mut out, ty, 3);
        encode::bulk(&mut out, name);
        match channel {
            Some(c) => encode::bulk(&mut out, c),
            None => encode::null(&mut out, proto),
        }
        encode::integer(&mut out, 0);
    };
    if args.len() > 1 {
        args.iter().skip(1).for_each(|c| confirm(Some(c)));
    } else {
        confirm(None);
    }
    out.freeze()
}
