//! Commands on keys whatever their type (DEL, UNLINK, EXISTS, the EXPIRE
//! family, TTL, PTTL, PERSIST, TYPE) and the two that touch no key (PING,
//! ECHO).

use super::reply::{self, Reply};
use super::{Ctx, Store};

pub(super) fn del(s: &mut Store, c: &Ctx) -> Reply {
    let mut deleted = 0;
    for i in 1..c.argc() {
        deleted += i64::from(s.remove(c.arg(i), c.now));
    }
    Ok(reply::int(deleted))
}

pub(super) fn exists(s: &mut Store, c: &Ctx) -> Reply {
    let mut found = 0;
    for i in 1..c.argc() {
        found += i64::from(s.live(c.arg(i), c.now).is_some());
    }
    Ok(reply::int(found))
}

pub(super) fn expire(s: &mut Store, c: &Ctx) -> Reply {
    expire_generic(s, c, c.now, 1000)
}

pub(super) fn pexpire(s: &mut Store, c: &Ctx) -> Reply {
    expire_generic(s, c, c.now, 1)
}

pub(super) fn expireat(s: &mut Store, c: &Ctx) -> Reply {
    expire_generic(s, c, 0, 1000)
}

pub(super) fn pexpireat(s: &mut Store, c: &Ctx) -> Reply {
    expire_generic(s, c, 0, 1)
}

/// The NX / XX / GT / LT options of the EXPIRE family.
#[derive(Default)]
struct Conditions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
}

impl Conditions {
    fn parse(c: &Ctx) -> Result<Conditions, bytes::Bytes> {
        let mut cond = Conditions::default();
        for i in 3..c.argc() {
            let flag = match c.arg(i).to_ascii_lowercase().as_slice() {
                b"nx" => &mut cond.nx,
                b"xx" => &mut cond.xx,
                b"gt" => &mut cond.gt,
                b"lt" => &mut cond.lt,
                _ => return Err(reply::error_with("ERR Unsupported option ", c.arg(i))),
            };
            *flag = true;
        }
        if cond.nx && (cond.xx || cond.gt || cond.lt) {
            return reply::fail("ERR NX and XX, GT or LT options at the same time are not compatible");
        }
        if cond.gt && cond.lt {
            return reply::fail("ERR GT and LT options at the same time are not compatible");
        }
        Ok(cond)
    }

    /// True when a key expiring at `current` (`None`: never, which GT
    /// treats as infinitely far) may get the expiry `when`.
    fn allow(&self, current: Option<i64>, when: i64) -> bool {
        match current {
            None => !self.xx && !self.gt,
            Some(current) => {
                let too_soon = self.gt && when <= current;
                let too_late = self.lt && when >= current;
                !self.nx && !too_soon && !too_late
            }
        }
    }
}

/// EXPIRE and friends: the time is `base + arg × unit_ms`; a time not in
/// the future deletes the key.
fn expire_generic(s: &mut Store, c: &Ctx, base: i64, unit_ms: i64) -> Reply {
    let cond = Conditions::parse(c)?;
    let when = c.int(2)?;
    let invalid = || reply::error(&format!("ERR invalid expire time in '{}' command", c.name));
    let when = when.checked_mul(unit_ms).ok_or_else(invalid)?;
    let when = when.checked_add(base).ok_or_else(invalid)?;
    let Some(entry) = s.live(c.key(), c.now) else { return Ok(reply::int(0)) };
    if !cond.allow(entry.expires_at, when) {
        return Ok(reply::int(0));
    }
    if when <= c.now {
        s.remove(c.key(), c.now);
    } else {
        entry.expires_at = Some(when);
    }
    Ok(reply::int(1))
}

pub(super) fn ttl(s: &mut Store, c: &Ctx) -> Reply {
    ttl_generic(s, c, false)
}

pub(super) fn pttl(s: &mut Store, c: &Ctx) -> Reply {
    ttl_generic(s, c, true)
}

fn ttl_generic(s: &mut Store, c: &Ctx, ms: bool) -> Reply {
    let Some(entry) = s.live(c.key(), c.now) else { return Ok(reply::int(-2)) };
    let Some(at) = entry.expires_at else { return Ok(reply::int(-1)) };
    let left = at.saturating_sub(c.now).max(0);
    Ok(reply::int(if ms { left } else { left.saturating_add(500) / 1000 }))
}

pub(super) fn persist(s: &mut Store, c: &Ctx) -> Reply {
    let removed = s.live(c.key(), c.now).is_some_and(|e| e.expires_at.take().is_some());
    Ok(reply::int(i64::from(removed)))
}

pub(super) fn type_of(s: &mut Store, c: &Ctx) -> Reply {
    Ok(reply::status(s.live(c.key(), c.now).map_or("none", |e| e.data.type_name())))
}

pub(super) fn ping(_: &mut Store, c: &Ctx) -> Reply {
    match c.argc() {
        1 => Ok(reply::status("PONG")),
        2 => Ok(reply::bulk(c.arg(1))),
        _ => Err(reply::arity_error(c.name)),
    }
}

pub(super) fn echo(_: &mut Store, c: &Ctx) -> Reply {
    Ok(reply::bulk(c.arg(1)))
}
