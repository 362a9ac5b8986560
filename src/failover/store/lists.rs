//! List commands: LPUSH, RPUSH, LPOP, RPOP (with a count), LRANGE, LLEN.

use super::data::List;
use super::reply::{self, Out, Reply};
use super::{index_range, num, Ctx, Store};

pub(super) fn lpush(s: &mut Store, c: &Ctx) -> Reply {
    push(s, c, true)
}

pub(super) fn rpush(s: &mut Store, c: &Ctx) -> Reply {
    push(s, c, false)
}

fn push(s: &mut Store, c: &Ctx, left: bool) -> Reply {
    let list = s.get_or_create::<List>(c.key(), c.now)?;
    for i in 2..c.argc() {
        list.push(c.owned(i), left);
    }
    Ok(reply::int(list.len() as i64))
}

pub(super) fn lpop(s: &mut Store, c: &Ctx) -> Reply {
    pop(s, c, true)
}

pub(super) fn rpop(s: &mut Store, c: &Ctx) -> Reply {
    pop(s, c, false)
}

/// LPOP / RPOP: one element as a bulk string, or with a count an array
/// (a null array when the key is missing).
fn pop(s: &mut Store, c: &Ctx, left: bool) -> Reply {
    if c.argc() > 3 {
        return Err(reply::arity_error(c.name));
    }
    let count = match c.argc() {
        3 => Some(
            num::parse_i64(c.arg(2))
                .filter(|&n| n >= 0)
                .ok_or_else(|| reply::error("ERR value is out of range, must be positive"))?,
        ),
        _ => None,
    };
    let Some(list) = s.get::<List>(c.key(), c.now)? else {
        return Ok(if count.is_some() { reply::null_array(c.proto) } else { reply::null(c.proto) });
    };
    let Some(count) = count else {
        return Ok(list.pop(left).map_or_else(|| reply::null(c.proto), |v| reply::bulk(&v)));
    };
    let n = usize::try_from(count).unwrap_or(usize::MAX).min(list.len());
    let mut out = Out::new(c.proto);
    out.array(n);
    for _ in 0..n {
        if let Some(item) = list.pop(left) {
            out.bulk(&item);
        }
    }
    Ok(out.finish())
}

pub(super) fn lrange(s: &mut Store, c: &Ctx) -> Reply {
    let (start, end) = (c.int(2)?, c.int(3)?);
    let Some(list) = s.get::<List>(c.key(), c.now)? else { return Ok(reply::empty_array()) };
    let Some((start, end)) = index_range(start, end, list.len()) else { return Ok(reply::empty_array()) };
    let mut out = Out::new(c.proto);
    out.array(end - start + 1);
    for item in list.range(start, end) {
        out.bulk(item);
    }
    Ok(out.finish())
}

pub(super) fn llen(s: &mut Store, c: &Ctx) -> Reply {
    Ok(reply::int(s.get::<List>(c.key(), c.now)?.map_or(0, |l| l.len() as i64)))
}
