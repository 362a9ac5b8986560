//! Hash commands: HSET / HMSET, HGET, HMGET, HGETALL, HDEL, HINCRBY, HLEN,
//! HEXISTS, HKEYS, HVALS.

use super::data::Hash;
use super::num;
use super::reply::{self, fail, Out, Reply};
use super::{Ctx, Store};
use bytes::Bytes;

/// HSET replies with the number of new fields.
pub(super) fn hset(s: &mut Store, c: &Ctx) -> Reply {
    Ok(reply::int(set_fields(s, c)?))
}

/// HMSET replies with OK.
pub(super) fn hmset(s: &mut Store, c: &Ctx) -> Reply {
    set_fields(s, c)?;
    Ok(reply::ok())
}

/// Sets the field / value pairs from the third argument on; returns how
/// many fields are new.
fn set_fields(s: &mut Store, c: &Ctx) -> Result<i64, Bytes> {
    if c.argc() % 2 == 1 {
        return Err(reply::arity_error(c.name));
    }
    let hash = s.get_or_create::<Hash>(c.key(), c.now)?;
    let mut created = 0;
    for i in (2..c.argc()).step_by(2) {
        created += i64::from(hash.insert(c.owned(i), c.owned(i + 1)));
    }
    Ok(created)
}

pub(super) fn hget(s: &mut Store, c: &Ctx) -> Reply {
    let value = s.get::<Hash>(c.key(), c.now)?.and_then(|h| h.get(c.arg(2)));
    Ok(value.map_or_else(|| reply::null(c.proto), |v| reply::bulk(v)))
}

pub(super) fn hmget(s: &mut Store, c: &Ctx) -> Reply {
    let hash = s.get::<Hash>(c.key(), c.now)?;
    let mut out = Out::new(c.proto);
    out.array(c.argc() - 2);
    for i in 2..c.argc() {
        match hash.as_ref().and_then(|h| h.get(c.arg(i))) {
            Some(v) => out.bulk(v),
            None => out.null(),
        };
    }
    Ok(out.finish())
}

pub(super) fn hgetall(s: &mut Store, c: &Ctx) -> Reply {
    let hash = s.get::<Hash>(c.key(), c.now)?;
    let mut out = Out::new(c.proto);
    out.map(hash.as_ref().map_or(0, |h| h.len()));
    for (field, value) in hash.iter().flat_map(|h| h.iter()) {
        out.bulk(field).bulk(value);
    }
    Ok(out.finish())
}

pub(super) fn hkeys(s: &mut Store, c: &Ctx) -> Reply {
    hash_column(s, c, true)
}

pub(super) fn hvals(s: &mut Store, c: &Ctx) -> Reply {
    hash_column(s, c, false)
}

/// HKEYS (`fields`) or HVALS.
fn hash_column(s: &mut Store, c: &Ctx, fields: bool) -> Reply {
    let Some(hash) = s.get::<Hash>(c.key(), c.now)? else { return Ok(reply::empty_array()) };
    let mut out = Out::new(c.proto);
    out.array(hash.len());
    for (field, value) in hash.iter() {
        out.bulk(if fields { field } else { value });
    }
    Ok(out.finish())
}

pub(super) fn hdel(s: &mut Store, c: &Ctx) -> Reply {
    s.remove_each(c, Hash::remove)
}

pub(super) fn hincrby(s: &mut Store, c: &Ctx) -> Reply {
    let by = c.int(3)?;
    let hash = s.get_or_create::<Hash>(c.key(), c.now)?;
    let current = match hash.get(c.arg(2)) {
        Some(v) => num::parse_i64(v).ok_or_else(|| reply::error("ERR hash value is not an integer"))?,
        None => 0,
    };
    let Some(value) = current.checked_add(by) else { return fail(reply::OVERFLOW) };
    hash.insert(c.owned(2), value.to_string().into());
    Ok(reply::int(value))
}

pub(super) fn hlen(s: &mut Store, c: &Ctx) -> Reply {
    Ok(reply::int(s.get::<Hash>(c.key(), c.now)?.map_or(0, |h| h.len() as i64)))
}

pub(super) fn hexists(s: &mut Store, c: &Ctx) -> Reply {
    let found = s.get::<Hash>(c.key(), c.now)?.is_some_and(|h| h.get(c.arg(2)).is_some());
    Ok(reply::int(i64::from(found)))
}
