//! Sorted-set commands: ZADD (NX / XX / GT / LT / CH / INCR), ZINCRBY,
//! ZREM, ZSCORE, ZCARD and ZRANGE in all its forms (by index, BYSCORE,
//! BYLEX, REV, LIMIT, WITHSCORES).

use super::data::ZSet;
use super::float;
use super::reply::{self, fail, Out, Reply};
use super::{index_range, Ctx, Store};
use crate::protocol::Proto;
use bytes::Bytes;

/// ZADD's options.
#[derive(Default)]
struct AddOptions {
    nx: bool,
    xx: bool,
    gt: bool,
    lt: bool,
    ch: bool,
    incr: bool,
}

/// What adding one member did.
enum Added {
    /// Ignored (NX, XX, GT, LT said no).
    Nothing,
    /// New member, changed score, or same score; with the resulting score.
    New(f64),
    Changed(f64),
    Same(f64),
    /// The increment made the score NaN.
    Nan,
}

pub(super) fn zadd(s: &mut Store, c: &Ctx) -> Reply {
    zadd_generic(s, c, false)
}

/// ZINCRBY is ZADD INCR (options are even looked for in its arguments, as
/// Redis does).
pub(super) fn zincrby(s: &mut Store, c: &Ctx) -> Reply {
    zadd_generic(s, c, true)
}

/// Options from argument 2 on, and the position of the first score.
fn add_options(c: &Ctx, incr: bool) -> (AddOptions, usize) {
    let mut o = AddOptions { incr, ..AddOptions::default() };
    let mut i = 2;
    while i < c.argc() {
        let flag = match c.arg(i).to_ascii_lowercase().as_slice() {
            b"nx" => &mut o.nx,
            b"xx" => &mut o.xx,
            b"gt" => &mut o.gt,
            b"lt" => &mut o.lt,
            b"ch" => &mut o.ch,
            b"incr" => &mut o.incr,
            _ => break,
        };
        *flag = true;
        i += 1;
    }
    (o, i)
}

/// The scores of the score/member pairs from `first`, after the checks
/// Redis makes before touching the key.
fn scores(c: &Ctx, o: &AddOptions, first: usize) -> Result<Vec<f64>, Bytes> {
    let args = c.argc() - first;
    if args == 0 || !args.is_multiple_of(2) {
        return fail(reply::SYNTAX);
    }
    if o.nx && o.xx {
        return fail("ERR XX and NX options at the same time are not compatible");
    }
    if (o.nx && (o.gt || o.lt)) || (o.gt && o.lt) {
        return fail("ERR GT, LT, and/or NX options at the same time are not compatible");
    }
    if o.incr && args > 2 {
        return fail("ERR INCR option supports a single increment-element pair");
    }
    (first..c.argc())
        .step_by(2)
        .map(|i| float::parse_strict(c.arg(i)).ok_or_else(|| reply::error(reply::NOT_FLOAT)))
        .collect()
}

fn zadd_generic(s: &mut Store, c: &Ctx, incr: bool) -> Reply {
    let (o, first) = add_options(c, incr);
    let scores = scores(c, &o, first)?;
    let (mut added, mut changed, mut last) = (0, 0, None);
    if o.xx && s.get::<ZSet>(c.key(), c.now)?.is_none() {
        return Ok(add_reply(c, &o, 0, last));
    }
    let zset = s.get_or_create::<ZSet>(c.key(), c.now)?;
    for (j, &score) in scores.iter().enumerate() {
        match add_one(zset, c.arg(first + 2 * j + 1), score, &o) {
            Added::Nothing => {}
            Added::New(score) => (added, last) = (added + 1, Some(score)),
            Added::Changed(score) => (changed, last) = (changed + 1, Some(score)),
            Added::Same(score) => last = Some(score),
            Added::Nan => return fail("ERR resulting score is not a number (NaN)"),
        }
    }
    Ok(add_reply(c, &o, if o.ch { added + changed } else { added }, last))
}

/// ZADD's count, or with INCR the new score (null when nothing was done).
fn add_reply(c: &Ctx, o: &AddOptions, count: i64, last: Option<f64>) -> Bytes {
    match (o.incr, last) {
        (false, _) => reply::int(count),
        (true, Some(score)) => reply::double(c.proto, c.doubles, score),
        (true, None) => reply::null(c.proto),
    }
}

/// Redis' `zsetAdd` for one member.
fn add_one(zset: &mut ZSet, member: &[u8], score: f64, o: &AddOptions) -> Added {
    let Some(current) = zset.score(member) else {
        if o.xx {
            return Added::Nothing;
        }
        zset.insert(Bytes::copy_from_slice(member), score);
        return Added::New(score);
    };
    if o.nx {
        return Added::Nothing;
    }
    let score = if o.incr { score + current } else { score };
    if score.is_nan() {
        return Added::Nan;
    }
    if (o.lt && score >= current) || (o.gt && score <= current) {
        return Added::Nothing;
    }
    if score == current {
        return Added::Same(score);
    }
    zset.insert(Bytes::copy_from_slice(member), score);
    Added::Changed(score)
}

pub(super) fn zrem(s: &mut Store, c: &Ctx) -> Reply {
    s.remove_each(c, ZSet::remove)
}

pub(super) fn zscore(s: &mut Store, c: &Ctx) -> Reply {
    let score = s.get::<ZSet>(c.key(), c.now)?.and_then(|z| z.score(c.arg(2)));
    Ok(score.map_or_else(|| reply::null(c.proto), |x| reply::double(c.proto, c.doubles, x)))
}

pub(super) fn zcard(s: &mut Store, c: &Ctx) -> Reply {
    Ok(reply::int(s.get::<ZSet>(c.key(), c.now)?.map_or(0, |z| z.len() as i64)))
}

/// How ZRANGE reads its range.
#[derive(Clone, Copy, PartialEq, Eq)]
enum By {
    Rank,
    Score,
    Lex,
}

/// ZRANGE's options.
struct RangeOptions {
    by: Option<By>,
    rev: bool,
    withscores: bool,
    offset: i64,
    /// Negative: no limit.
    limit: i64,
}

impl RangeOptions {
    fn parse(c: &Ctx) -> Result<RangeOptions, Bytes> {
        let mut o = RangeOptions { by: None, rev: false, withscores: false, offset: 0, limit: -1 };
        let mut i = 4;
        while i < c.argc() {
            if c.is(i, "withscores") {
                o.withscores = true;
            } else if c.is(i, "limit") && c.argc() - i > 2 {
                (o.offset, o.limit) = (c.int(i + 1)?, c.int(i + 2)?);
                i += 2;
            } else if c.is(i, "rev") && !o.rev {
                o.rev = true;
            } else if c.is(i, "byscore") && o.by.is_none() {
                o.by = Some(By::Score);
            } else if c.is(i, "bylex") && o.by.is_none() {
                o.by = Some(By::Lex);
            } else {
                return fail(reply::SYNTAX);
            }
            i += 1;
        }
        let by = o.by.unwrap_or(By::Rank);
        if o.limit != -1 && by == By::Rank {
            return fail("ERR syntax error, LIMIT is only supported in combination with either BYSCORE or BYLEX");
        }
        if o.withscores && by == By::Lex {
            return fail("ERR syntax error, WITHSCORES not supported in combination with BYLEX");
        }
        Ok(o)
    }
}

/// One end of a BYSCORE range.
#[derive(Clone, Copy)]
struct ScoreBound {
    value: f64,
    exclusive: bool,
}

impl ScoreBound {
    /// `(x` is exclusive; otherwise parsed leniently, like Redis' `strtod`.
    fn parse(arg: &[u8]) -> Option<ScoreBound> {
        match arg.strip_prefix(b"(") {
            Some(rest) => Some(ScoreBound { value: float::parse_lenient(rest)?, exclusive: true }),
            None => Some(ScoreBound { value: float::parse_lenient(arg)?, exclusive: false }),
        }
    }
}

/// One end of a BYLEX range.
#[derive(Clone, Copy)]
enum LexBound<'a> {
    /// `-`
    Lowest,
    /// `+`
    Highest,
    /// `[x`
    Inclusive(&'a [u8]),
    /// `(x`
    Exclusive(&'a [u8]),
}

impl<'a> LexBound<'a> {
    fn parse(arg: &'a [u8]) -> Option<LexBound<'a>> {
        // `+` and `-` must be alone (as C strings: a NUL ends them).
        let alone = arg.get(1).is_none_or(|&b| b == 0);
        match arg.split_first()? {
            (b'+', _) if alone => Some(LexBound::Highest),
            (b'-', _) if alone => Some(LexBound::Lowest),
            (b'[', rest) => Some(LexBound::Inclusive(rest)),
            (b'(', rest) => Some(LexBound::Exclusive(rest)),
            _ => None,
        }
    }
}

/// The range, parsed.
enum Range<'a> {
    Rank(i64, i64),
    Score(ScoreBound, ScoreBound),
    Lex(LexBound<'a>, LexBound<'a>),
}

impl Range<'_> {
    /// True when a member is at or past the minimum.
    fn above_min(&self, score: f64, member: &[u8]) -> bool {
        match self {
            Range::Rank(..) => true,
            Range::Score(min, _) => score > min.value || (!min.exclusive && score == min.value),
            Range::Lex(min, _) => match *min {
                LexBound::Lowest => true,
                LexBound::Highest => false,
                LexBound::Inclusive(x) => member >= x,
                LexBound::Exclusive(x) => member > x,
            },
        }
    }

    /// True when a member is at or before the maximum.
    fn below_max(&self, score: f64, member: &[u8]) -> bool {
        match self {
            Range::Rank(..) => true,
            Range::Score(_, max) => score < max.value || (!max.exclusive && score == max.value),
            Range::Lex(_, max) => match *max {
                LexBound::Lowest => false,
                LexBound::Highest => true,
                LexBound::Inclusive(x) => member <= x,
                LexBound::Exclusive(x) => member < x,
            },
        }
    }
}

pub(super) fn zrange(s: &mut Store, c: &Ctx) -> Reply {
    let o = RangeOptions::parse(c)?;
    let by = o.by.unwrap_or(By::Rank);
    let (lo, hi) = if o.rev && by != By::Rank { (c.arg(3), c.arg(2)) } else { (c.arg(2), c.arg(3)) };
    let range = match by {
        By::Rank => Range::Rank(c.int(2)?, c.int(3)?),
        By::Score => match (ScoreBound::parse(lo), ScoreBound::parse(hi)) {
            (Some(min), Some(max)) => Range::Score(min, max),
            _ => return fail("ERR min or max is not a float"),
        },
        By::Lex => match (LexBound::parse(lo), LexBound::parse(hi)) {
            (Some(min), Some(max)) => Range::Lex(min, max),
            _ => return fail("ERR min or max not valid string range item"),
        },
    };
    let Some(zset) = s.get::<ZSet>(c.key(), c.now)? else { return Ok(reply::empty_array()) };
    let items = select(zset, &range, &o);
    let pairs = o.withscores && c.proto == Proto::Resp3;
    let mut out = Out::new(c.proto);
    out.array(if o.withscores && !pairs { items.len() * 2 } else { items.len() });
    for (score, member) in items {
        if pairs {
            out.array(2);
        }
        out.bulk(member);
        if o.withscores {
            out.double(c.doubles, score);
        }
    }
    Ok(out.finish())
}

/// The members `range` selects, in reply order.
fn select<'z>(zset: &'z ZSet, range: &Range, o: &RangeOptions) -> Vec<(f64, &'z Bytes)> {
    let ordered: Box<dyn Iterator<Item = (f64, &Bytes)>> =
        if o.rev { Box::new(zset.iter().rev()) } else { Box::new(zset.iter()) };
    if let Range::Rank(start, end) = *range {
        return match index_range(start, end, zset.len()) {
            Some((start, end)) => ordered.skip(start).take(end - start + 1).collect(),
            None => Vec::new(),
        };
    }
    // Walking from the start of the range towards its end.
    let starts =
        |score, member: &[u8]| if o.rev { range.below_max(score, member) } else { range.above_min(score, member) };
    let lasts =
        |score, member: &[u8]| if o.rev { range.above_min(score, member) } else { range.below_max(score, member) };
    let Ok(offset) = usize::try_from(o.offset) else { return Vec::new() };
    let limit = usize::try_from(o.limit).unwrap_or(usize::MAX);
    ordered
        .skip_while(|(score, member)| !starts(*score, member))
        .take_while(|(score, member)| lasts(*score, member))
        .skip(offset)
        .take(limit)
        .collect()
}
