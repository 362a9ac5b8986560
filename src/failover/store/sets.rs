//! Set commands: SADD, SREM, SMEMBERS, SISMEMBER, SCARD.

use super::data::Set;
use super::reply::{self, Out, Reply};
use super::{Ctx, Store};

pub(super) fn sadd(s: &mut Store, c: &Ctx) -> Reply {
    let set = s.get_or_create::<Set>(c.key(), c.now)?;
    let mut added = 0;
    for i in 2..c.argc() {
        added += i64::from(set.insert(c.owned(i)));
    }
    Ok(reply::int(added))
}

pub(super) fn srem(s: &mut Store, c: &Ctx) -> Reply {
    s.remove_each(c, Set::remove)
}

pub(super) fn smembers(s: &mut Store, c: &Ctx) -> Reply {
    let members = s.get::<Set>(c.key(), c.now)?.map(|set| set.members()).unwrap_or_default();
    let mut out = Out::new(c.proto);
    out.set(members.len());
    for member in members {
        out.bulk(member);
    }
    Ok(out.finish())
}

pub(super) fn sismember(s: &mut Store, c: &Ctx) -> Reply {
    let found = s.get::<Set>(c.key(), c.now)?.is_some_and(|set| set.contains(c.arg(2)));
    Ok(reply::int(i64::from(found)))
}

pub(super) fn scard(s: &mut Store, c: &Ctx) -> Reply {
    Ok(reply::int(s.get::<Set>(c.key(), c.now)?.map_or(0, |set| set.len() as i64)))
}
