//! String and counter commands: GET, SET (and SETNX, SETEX, PSETEX),
//! MGET, MSET, GETSET, GETDEL, APPEND, the INCR / DECR family,
//! INCRBYFLOAT and STRLEN.

use super::data::Data;
use super::float::{Extended, LongDouble};
use super::num;
use super::reply::{self, fail, Out, Reply};
use super::{Ctx, Store};
use bytes::Bytes;

/// Longest string Redis builds (`proto-max-bulk-len`, 512 MB).
const MAX_STRING: usize = 512 * 1024 * 1024;

pub(super) fn get(s: &mut Store, c: &Ctx) -> Reply {
    get_reply(s, c)
}

/// GET's reply for the key: its value or a null, or the WRONGTYPE error.
fn get_reply(s: &mut Store, c: &Ctx) -> Reply {
    Ok(match s.get::<Bytes>(c.key(), c.now)? {
        Some(v) => reply::bulk(v),
        None => reply::null(c.proto),
    })
}

/// How SET's expiry argument is read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// EX: seconds from now.
    Seconds,
    /// PX: milliseconds from now.
    Millis,
    /// EXAT: unix seconds.
    UnixSeconds,
    /// PXAT: unix milliseconds.
    UnixMillis,
}

/// SET's options.
#[derive(Default)]
struct SetOptions {
    nx: bool,
    xx: bool,
    get: bool,
    keep_ttl: bool,
    /// The unit and argument position of the expiry.
    expire: Option<(Unit, usize)>,
}

impl SetOptions {
    /// Parses options from argument 3 on, accepting exactly the
    /// combinations Redis does (a repeated option is fine, EX with PX is not).
    fn parse(c: &Ctx) -> Result<SetOptions, Bytes> {
        let mut o = SetOptions::default();
        let mut i = 3;
        while i < c.argc() {
            let opt = c.arg(i).to_ascii_lowercase();
            let unit = match opt.as_slice() {
                b"ex" => Some(Unit::Seconds),
                b"px" => Some(Unit::Millis),
                b"exat" => Some(Unit::UnixSeconds),
                b"pxat" => Some(Unit::UnixMillis),
                _ => None,
            };
            match (opt.as_slice(), unit) {
                (_, Some(unit)) if !o.keep_ttl && i + 1 < c.argc() && o.expire.is_none_or(|(u, _)| u == unit) => {
                    o.expire = Some((unit, i + 1));
                    i += 1;
                }
                (b"nx", None) if !o.xx => o.nx = true,
                (b"xx", None) if !o.nx => o.xx = true,
                (b"get", None) => o.get = true,
                (b"keepttl", None) if o.expire.is_none() => o.keep_ttl = true,
                _ => return fail(reply::SYNTAX),
            }
            i += 1;
        }
        Ok(o)
    }
}

/// The absolute expiry (unix ms) argument `i` gives in `unit`, checked as
/// Redis does: positive, and no overflow.
fn expire_at(c: &Ctx, unit: Unit, i: usize) -> Result<i64, Bytes> {
    let n = c.int(i)?;
    let invalid = || reply::error(&format!("ERR invalid expire time in '{}' command", c.name));
    let seconds = matches!(unit, Unit::Seconds | Unit::UnixSeconds);
    if n <= 0 || (seconds && n > i64::MAX / 1000) {
        return Err(invalid());
    }
    let ms = if seconds { n * 1000 } else { n };
    let at = if matches!(unit, Unit::Seconds | Unit::Millis) { ms.checked_add(c.now) } else { Some(ms) };
    at.filter(|&at| at > 0).ok_or_else(invalid)
}

/// SET and its variants: the value at `value_at`; `done` and `aborted` are
/// the replies when it was set or when NX / XX stopped it (unless GET).
fn set_generic(s: &mut Store, c: &Ctx, o: &SetOptions, value_at: usize, done: Bytes, aborted: Bytes) -> Reply {
    let expire = o.expire.map(|(unit, i)| expire_at(c, unit, i)).transpose()?;
    let old = if o.get { Some(get_reply(s, c)?) } else { None };
    let current = s.live(c.key(), c.now).map(|e| e.expires_at);
    if (o.nx && current.is_some()) || (o.xx && current.is_none()) {
        return Ok(old.unwrap_or(aborted));
    }
    let ttl = if o.keep_ttl { current.flatten() } else { expire };
    s.put(c.key(), Data::Str(c.owned(value_at)), ttl);
    Ok(old.unwrap_or(done))
}

pub(super) fn set(s: &mut Store, c: &Ctx) -> Reply {
    let o = SetOptions::parse(c)?;
    set_generic(s, c, &o, 2, reply::ok(), reply::null(c.proto))
}

pub(super) fn setnx(s: &mut Store, c: &Ctx) -> Reply {
    let o = SetOptions { nx: true, ..SetOptions::default() };
    set_generic(s, c, &o, 2, reply::int(1), reply::int(0))
}

pub(super) fn setex(s: &mut Store, c: &Ctx) -> Reply {
    let o = SetOptions { expire: Some((Unit::Seconds, 2)), ..SetOptions::default() };
    set_generic(s, c, &o, 3, reply::ok(), reply::null(c.proto))
}

pub(super) fn psetex(s: &mut Store, c: &Ctx) -> Reply {
    let o = SetOptions { expire: Some((Unit::Millis, 2)), ..SetOptions::default() };
    set_generic(s, c, &o, 3, reply::ok(), reply::null(c.proto))
}

pub(super) fn mget(s: &mut Store, c: &Ctx) -> Reply {
    let mut out = Out::new(c.proto);
    out.array(c.argc() - 1);
    for i in 1..c.argc() {
        match s.get::<Bytes>(c.arg(i), c.now) {
            Ok(Some(v)) => out.bulk(v),
            _ => out.null(),
        };
    }
    Ok(out.finish())
}

pub(super) fn mset(s: &mut Store, c: &Ctx) -> Reply {
    if c.argc().is_multiple_of(2) {
        return Err(reply::arity_error(c.name));
    }
    for i in (1..c.argc()).step_by(2) {
        s.put(c.arg(i), Data::Str(c.owned(i + 1)), None);
    }
    Ok(reply::ok())
}

pub(super) fn getset(s: &mut Store, c: &Ctx) -> Reply {
    let old = get_reply(s, c)?;
    s.put(c.key(), Data::Str(c.owned(2)), None);
    Ok(old)
}

pub(super) fn getdel(s: &mut Store, c: &Ctx) -> Reply {
    let old = get_reply(s, c)?;
    s.remove(c.key(), c.now);
    Ok(old)
}

pub(super) fn append(s: &mut Store, c: &Ctx) -> Reply {
    let tail = c.arg(2);
    let Some(value) = s.get::<Bytes>(c.key(), c.now)? else {
        s.put(c.key(), Data::Str(c.owned(2)), None);
        return Ok(reply::int(tail.len() as i64));
    };
    if value.len() + tail.len() > MAX_STRING {
        return fail("ERR string exceeds maximum allowed size (proto-max-bulk-len)");
    }
    *value = [&value[..], tail].concat().into();
    Ok(reply::int(value.len() as i64))
}

/// Replaces the string at `key` keeping its expiry, or creates it.
fn overwrite(s: &mut Store, c: &Ctx, value: Bytes) {
    match s.get::<Bytes>(c.key(), c.now) {
        Ok(Some(current)) => *current = value,
        _ => s.put(c.key(), Data::Str(value), None),
    }
}

pub(super) fn incr(s: &mut Store, c: &Ctx) -> Reply {
    incr_by(s, c, 1)
}

pub(super) fn decr(s: &mut Store, c: &Ctx) -> Reply {
    incr_by(s, c, -1)
}

pub(super) fn incrby(s: &mut Store, c: &Ctx) -> Reply {
    let by = c.int(2)?;
    incr_by(s, c, by)
}

pub(super) fn decrby(s: &mut Store, c: &Ctx) -> Reply {
    let by = c.int(2)?;
    if by == i64::MIN {
        return fail("ERR decrement would overflow");
    }
    incr_by(s, c, -by)
}

fn incr_by(s: &mut Store, c: &Ctx, by: i64) -> Reply {
    let current = match s.get::<Bytes>(c.key(), c.now)? {
        Some(v) => num::parse_i64(v).ok_or_else(|| reply::error(reply::NOT_INTEGER))?,
        None => 0,
    };
    let value = current.checked_add(by).ok_or_else(|| reply::error(reply::OVERFLOW))?;
    overwrite(s, c, Bytes::from(value.to_string()));
    Ok(reply::int(value))
}

pub(super) fn incrbyfloat(s: &mut Store, c: &Ctx) -> Reply {
    let not_float = || reply::error(reply::NOT_FLOAT);
    let current = match s.get::<Bytes>(c.key(), c.now)? {
        Some(v) => Extended::parse(v).ok_or_else(not_float)?,
        None => LongDouble::Finite(Extended::ZERO),
    };
    let by = Extended::parse(c.arg(2)).ok_or_else(not_float)?;
    let (LongDouble::Finite(current), LongDouble::Finite(by)) = (current, by) else {
        return fail(reply::NAN_OR_INF);
    };
    let text = current.add(by).ok_or_else(|| reply::error(reply::NAN_OR_INF))?.format_human();
    overwrite(s, c, Bytes::from(text.clone()));
    Ok(reply::bulk(text.as_bytes()))
}

pub(super) fn strlen(s: &mut Store, c: &Ctx) -> Reply {
    Ok(reply::int(s.get::<Bytes>(c.key(), c.now)?.map_or(0, |v| v.len() as i64)))
}
