//! Fixing replies and pushed frames for a tenant: the prefix comes off key
//! and channel names, and names that lack it are dropped from lists, so a
//! tenant never sees a name outside its namespace (nor its own prefix).
//!
//! Only the names change: every other byte of a frame is copied as it came.
//! Frames of an unexpected type (errors, nulls, `+QUEUED` inside MULTI) pass
//! through unchanged; `None` means the frame could not be read at all.

use super::resp::{children, element, text, Elem};
use super::{escape_glob, ReplyFix};
use crate::protocol::{encode, Proto};
use bytes::{BufMut, Bytes, BytesMut};

/// The reply `frame` fixed per `fix`; `None` when it is not one readable
/// RESP frame.
pub(super) fn fix(prefix: &[u8], fix: ReplyFix, proto: Proto, frame: &[u8]) -> Option<Bytes> {
    let top = element(frame, 0)?;
    if top.end != frame.len() {
        return None;
    }
    if top.is_error() || top.is_null(frame) || !shaped(fix, &top, frame) {
        return Some(Bytes::copy_from_slice(frame));
    }
    let mut out = BytesMut::with_capacity(frame.len());
    out.put_slice(frame.get(..top.value)?);
    match fix {
        ReplyFix::None => out.put_slice(frame.get(top.value..)?),
        ReplyFix::Keys | ReplyFix::Channels => names(prefix, frame, &top, &mut out)?,
        ReplyFix::Scan => scan(prefix, frame, &top, &mut out)?,
        ReplyFix::RandomKey => random_key(prefix, proto, frame, &top, &mut out),
        ReplyFix::KeyFirst | ReplyFix::MpopKey => key_first(prefix, frame, &top, &mut out)?,
        ReplyFix::Streams => streams(prefix, frame, &top, &mut out)?,
        ReplyFix::NumSub => numsub(prefix, frame, &top, &mut out)?,
        ReplyFix::Info => info(frame, &top, &mut out)?,
    }
    Some(out.freeze())
}

/// True when `top` is the kind of frame `fix` rewrites. Any other frame
/// (`+QUEUED` inside MULTI, say) passes unchanged.
fn shaped(fix: ReplyFix, top: &Elem, buf: &[u8]) -> bool {
    match fix {
        ReplyFix::None => true,
        ReplyFix::Keys | ReplyFix::Channels | ReplyFix::Scan | ReplyFix::KeyFirst | ReplyFix::MpopKey => {
            top.is_array(buf)
        }
        ReplyFix::Streams | ReplyFix::NumSub => top.is_array(buf) || top.ty == b'%',
        ReplyFix::RandomKey => top.ty == b'$',
        ReplyFix::Info => matches!(top.ty, b'$' | b'='),
    }
}

/// EXEC's reply: an array whose elements are fixed one by one. A count
/// that differs from `fixes` (never, unless the session lost track of the
/// transaction) leaves the extra elements as they are.
pub(super) fn exec(prefix: &[u8], fixes: &[ReplyFix], proto: Proto, frame: &[u8]) -> Option<Bytes> {
    let top = element(frame, 0)?;
    if top.end != frame.len() || !top.is_array(frame) {
        return (top.end == frame.len()).then(|| Bytes::copy_from_slice(frame));
    }
    let mut out = BytesMut::with_capacity(frame.len());
    out.put_slice(frame.get(..top.line.end + 2)?);
    for (i, e) in children(frame, &top)?.iter().enumerate() {
        match fixes.get(i).copied().unwrap_or(ReplyFix::None) {
            ReplyFix::None => out.put_slice(e.bytes(frame)),
            f => out.put_slice(&fix(prefix, f, proto, e.bytes(frame))?),
        }
    }
    Some(out.freeze())
}

/// Writes a name as the same kind of string it came as.
fn put_name(out: &mut BytesMut, ty: u8, name: &[u8]) {
    if ty == b'+' {
        out.put_u8(b'+');
        out.put_slice(name);
        out.put_slice(b"\r\n");
    } else {
        encode::bulk(out, name);
    }
}

/// The name in `e` without `prefix`, if `e` is a string with it.
fn stripped<'b>(prefix: &[u8], buf: &'b [u8], e: &Elem) -> Option<&'b [u8]> {
    text(buf, e)?.strip_prefix(prefix)
}

/// Writes `e` with `prefix` stripped from it, or as it is when it is not a
/// name with the prefix.
fn strip_or_keep(prefix: &[u8], buf: &[u8], e: &Elem, out: &mut BytesMut) {
    match stripped(prefix, buf, e) {
        Some(name) => {
            out.put_slice(buf.get(e.start..e.value).unwrap_or_default());
            put_name(out, e.ty, name);
        }
        None => out.put_slice(e.bytes(buf)),
    }
}

/// Writes the array `agg` keeping only the names with `prefix`, stripped.
fn names(prefix: &[u8], buf: &[u8], agg: &Elem, out: &mut BytesMut) -> Option<()> {
    let kept: Vec<(u8, &[u8])> =
        children(buf, agg)?.iter().filter_map(|e| Some((e.ty, stripped(prefix, buf, e)?))).collect();
    encode::header(out, agg.ty, kept.len());
    for (ty, name) in kept {
        put_name(out, ty, name);
    }
    Some(())
}

/// SCAN: `[cursor, [names]]`.
fn scan(prefix: &[u8], buf: &[u8], top: &Elem, out: &mut BytesMut) -> Option<()> {
    let [cursor, keys] = <[Elem; 2]>::try_from(children(buf, top)?).ok()?;
    if !keys.is_array(buf) {
        return None;
    }
    out.put_slice(top.header(buf));
    out.put_slice(cursor.bytes(buf));
    out.put_slice(buf.get(keys.start..keys.value)?);
    names(prefix, buf, &keys, out)
}

/// RANDOMKEY: a bulk name, stripped; one without the prefix becomes a null
/// (the caller asks again).
fn random_key(prefix: &[u8], proto: Proto, buf: &[u8], top: &Elem, out: &mut BytesMut) {
    match stripped(prefix, buf, top) {
        Some(name) => encode::bulk(out, name),
        None => encode::null(out, proto),
    }
}

/// BLPOP, LMPOP, …: an array whose first element is a key. Also each
/// `[key, entries]` of an XREAD reply, where anything else is copied.
fn key_first(prefix: &[u8], buf: &[u8], top: &Elem, out: &mut BytesMut) -> Option<()> {
    if !top.is_array(buf) {
        out.put_slice(buf.get(top.value..top.end)?);
        return Some(());
    }
    out.put_slice(top.header(buf));
    for (i, e) in children(buf, top)?.iter().enumerate() {
        if i == 0 {
            strip_or_keep(prefix, buf, e, out);
        } else {
            out.put_slice(e.bytes(buf));
        }
    }
    Some(())
}

/// XREAD / XREADGROUP: `[[key, entries], …]` (RESP2) or `{key: entries}`
/// (RESP3).
fn streams(prefix: &[u8], buf: &[u8], top: &Elem, out: &mut BytesMut) -> Option<()> {
    let is_map = top.ty == b'%';
    out.put_slice(top.header(buf));
    for (i, e) in children(buf, top)?.iter().enumerate() {
        if !is_map {
            out.put_slice(buf.get(e.start..e.value)?);
            key_first(prefix, buf, e, out)?;
        } else if i % 2 == 0 {
            strip_or_keep(prefix, buf, e, out);
        } else {
            out.put_slice(e.bytes(buf));
        }
    }
    Some(())
}

/// PUBSUB NUMSUB: `[channel, count, …]` (RESP2) or `{channel: count}`
/// (RESP3); pairs whose channel lacks the prefix are dropped.
fn numsub(prefix: &[u8], buf: &[u8], top: &Elem, out: &mut BytesMut) -> Option<()> {
    let is_map = top.ty == b'%';
    let kids = children(buf, top)?;
    let pairs = kids.chunks_exact(2);
    if !pairs.remainder().is_empty() {
        return None;
    }
    let kept: Vec<(&Elem, &[u8], &Elem)> =
        pairs.filter_map(|p| Some((&p[0], stripped(prefix, buf, &p[0])?, &p[1]))).collect();
    encode::header(out, top.ty, if is_map { kept.len() } else { kept.len() * 2 });
    for (channel, name, count) in kept {
        put_name(out, channel.ty, name);
        out.put_slice(count.bytes(buf));
    }
    Some(())
}

/// The INFO fields a tenant may see: what clients read to learn the
/// server's name, version and mode (Valkey adds `server_name`,
/// `valkey_version` and `server_mode`). Everything else (clients, memory,
/// keyspace, replication, the host) describes the shared server.
const INFO_FIELDS: &[&[u8]] =
    &[b"redis_version:", b"redis_mode:", b"server_name:", b"valkey_version:", b"server_mode:"];

/// INFO: a bulk (RESP2) or verbatim `txt:` string (RESP3) of lines; the
/// `# Server` heading and the fields in [`INFO_FIELDS`] are kept.
fn info(buf: &[u8], top: &Elem, out: &mut BytesMut) -> Option<()> {
    let (format, body) = if top.ty == b'$' {
        (&b""[..], text(buf, top)?)
    } else {
        let len = usize::try_from(top.number(buf)?).ok()?;
        let start = top.line.end + 2;
        buf.get(start..start.checked_add(len)?)?.split_at_checked(4)?
    };
    let mut kept = b"# Server\r\n".to_vec();
    for line in body.split(|&b| b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)) {
        if INFO_FIELDS.iter().any(|f| line.starts_with(f)) {
            kept.extend_from_slice(line);
            kept.extend_from_slice(b"\r\n");
        }
    }
    encode::header(out, top.ty, format.len() + kept.len());
    out.put_slice(format);
    out.put_slice(&kept);
    out.put_slice(b"\r\n");
    Some(())
}

/// A pushed frame with the prefix stripped from its channel and pattern;
/// `None` when it is not a pub/sub or invalidation frame (left unchanged).
pub(super) fn pushed(prefix: &[u8], frame: &[u8]) -> Option<Bytes> {
    let top = element(frame, 0)?;
    if top.end != frame.len() || !top.is_array(frame) {
        return None;
    }
    let kids = children(frame, &top)?;
    let kind = text(frame, kids.first()?)?.to_ascii_lowercase();
    let escaped = escape_glob(prefix);
    let heads: &[Option<&[u8]>] = match kind.as_slice() {
        b"message" | b"smessage" | b"subscribe" | b"unsubscribe" | b"ssubscribe" | b"sunsubscribe" => {
            &[None, Some(prefix)]
        }
        b"pmessage" => &[None, Some(&escaped), Some(prefix)],
        b"psubscribe" | b"punsubscribe" => &[None, Some(&escaped)],
        b"invalidate" => return invalidate(prefix, frame, &top, &kids),
        _ => return None,
    };
    let mut out = BytesMut::with_capacity(frame.len());
    out.put_slice(frame.get(..top.line.end + 2)?);
    for (i, e) in kids.iter().enumerate() {
        match heads.get(i).copied().flatten() {
            Some(head) => strip_or_keep(head, frame, e, &mut out),
            None => out.put_slice(e.bytes(frame)),
        }
    }
    Some(out.freeze())
}

/// RESP3 `invalidate` push (CLIENT TRACKING): `[invalidate, [keys]]`, or a
/// null for a flush.
fn invalidate(prefix: &[u8], frame: &[u8], top: &Elem, kids: &[Elem]) -> Option<Bytes> {
    let [kind, keys] = kids else {
        return None;
    };
    if !keys.is_array(frame) {
        return None;
    }
    let mut out = BytesMut::with_capacity(frame.len());
    out.put_slice(frame.get(..top.line.end + 2)?);
    out.put_slice(kind.bytes(frame));
    out.put_slice(frame.get(keys.start..keys.value)?);
    names(prefix, frame, keys, &mut out)?;
    Some(out.freeze())
}
