//! Command-specific rewrites: the DANGEROUS commands made safe for tenants
//! (KEYS, SCAN, RANDOMKEY, SORT, OBJECT, MEMORY, scripts, RESTORE, the CLIENT
//! commands the proxy answers for the tenant's own clients) and pub/sub, whose
//! channels and patterns are not keys in the command table.

use super::outgoing::{Outgoing, Workspace};
use super::{escape_glob, keyed, Allowances, Refusal, ReplyFix, Rewritten};
use crate::commands::Command;
use crate::protocol::Args;
use crate::tenancy::dump;

/// RESTORE options Redis knows, checked before the payload.
const RESTORE_OPTIONS: &str = "RESTORE options are REPLACE, ABSTTL, IDLETIME seconds and FREQ frequency";

/// SORT options that read other keys by pattern.
const SORT_PATTERNS: &str = "SORT with BY or GET patterns is not allowed for tenants";

/// RANDOMKEY for a tenant: Redis' RANDOMKEY retried server-side, in one
/// round trip, until it names a key with the prefix (`ARGV[1]`). After
/// 1000 misses it answers nil: a tenant holding a share `f` of the keyspace
/// gets nil with probability `(1 - f)^1000` (under 0.01% for f = 1%). The
/// worst case, a tenant with no keys, costs Redis about 1 ms, never a walk
/// of the whole keyspace.
const RANDOM_KEY_SCRIPT: &[u8] = b"for _ = 1, 1000 do \
local k = redis.call('RANDOMKEY') \
if not k then return false end \
if string.sub(k, 1, #ARGV[1]) == ARGV[1] then return k end \
end \
return false";

/// A DANGEROUS command: made safe here, or refused.
pub(super) fn dangerous(
    prefix: &[u8],
    parent: &Command,
    cmd: &Command,
    args: &Args,
    allow: Allowances,
    work: &mut Workspace,
) -> Result<Rewritten, Refusal> {
    match (parent.name, cmd.name) {
        ("keys", _) => Ok(keys(prefix, args, work)),
        ("scan", _) => Ok(scan(prefix, args, work)),
        ("randomkey", _) => {
            Ok(Outgoing::new(&[b"EVAL_RO", RANDOM_KEY_SCRIPT, b"0", prefix]).done(ReplyFix::RandomKey, work))
        }
        ("info", _) => Ok(Outgoing::new(&[b"INFO", b"server"]).done(ReplyFix::Info, work)),
        // Answered by the proxy from its registry, where a tenant sees and
        // acts on its own clients only.
        ("client", "list" | "kill" | "unblock") => Ok(Outgoing::from_args(args, |_| None).done(ReplyFix::None, work)),
        ("sort" | "sort_ro", _) if sort_has_patterns(args) => Err(Refusal::Form(SORT_PATTERNS)),
        ("sort" | "sort_ro", _) => keyed(prefix, cmd, args, ReplyFix::None, work),
        ("object", "encoding" | "freq" | "idletime" | "refcount" | "help") => {
            keyed(prefix, cmd, args, ReplyFix::None, work)
        }
        ("memory", "usage" | "help") => keyed(prefix, cmd, args, ReplyFix::None, work),
        ("eval" | "evalsha" | "eval_ro" | "evalsha_ro" | "fcall" | "fcall_ro", _) if allow.scripts => {
            keyed(prefix, cmd, args, ReplyFix::None, work)
        }
        ("restore", _) if allow.restore => restore(prefix, cmd, args, work),
        _ => Err(Refusal::NotAllowed),
    }
}

/// `KEYS pattern`: the pattern confined to the prefix.
fn keys(prefix: &[u8], args: &Args, work: &mut Workspace) -> Rewritten {
    let escaped = escape_glob(prefix);
    Outgoing::from_args(args, |i| (i == 1).then_some(escaped.as_slice())).done(ReplyFix::Keys, work)
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE t]`: every MATCH confined to
/// the prefix (Redis uses the last one), or `MATCH prefix*` added. Options
/// are walked in pairs as Redis does (every SCAN option takes one value), so
/// a MATCH Redis would honour is never missed.
fn scan(prefix: &[u8], args: &Args, work: &mut Workspace) -> Rewritten {
    let escaped = escape_glob(prefix);
    let mut matched = false;
    let mut out = Outgoing::from_args(args, |i| {
        let is_match = i >= 3 && i % 2 == 1 && args.get(i - 1).is_some_and(|w| w.eq_ignore_ascii_case(b"match"));
        matched |= is_match;
        is_match.then_some(escaped.as_slice())
    });
    if !matched {
        out.push(b"", b"MATCH");
        out.push(&escaped, b"*");
    }
    out.done(ReplyFix::Scan, work)
}

/// `RESTORE key ttl payload [REPLACE] [ABSTTL] [IDLETIME s] [FREQ f]`: the
/// key prefixed, the options only those Redis knows, and the payload
/// validated in full ([`dump`]): Redis itself restores it unchecked unless
/// configured with `sanitize-dump-payload yes`, and a corrupt one can crash
/// it. (RESTORE-ASKING, for cluster migrations, stays refused.)
fn restore(prefix: &[u8], cmd: &Command, args: &Args, work: &mut Workspace) -> Result<Rewritten, Refusal> {
    if !restore_options_known(args) {
        return Err(Refusal::Form(RESTORE_OPTIONS));
    }
    dump::validate(args.get(3).unwrap_or_default()).map_err(Refusal::Payload)?;
    keyed(prefix, cmd, args, ReplyFix::None, work)
}

/// True when every RESTORE option is one Redis knows, with its value where
/// it takes one.
fn restore_options_known(args: &Args) -> bool {
    let mut i = 4;
    while let Some(word) = args.get(i) {
        let takes_value = word.eq_ignore_ascii_case(b"idletime") || word.eq_ignore_ascii_case(b"freq");
        if takes_value && i + 1 < args.len() {
            i += 1;
        } else if !(word.eq_ignore_ascii_case(b"replace") || word.eq_ignore_ascii_case(b"absttl")) {
            return false;
        }
        i += 1;
    }
    true
}

/// True when a SORT request has a BY or GET option. The options are walked
/// as Redis walks them (LIMIT takes two values, STORE one), so a BY/GET Redis
/// would see is always found; unknown words (a syntax error for Redis) are
/// stepped over one at a time, so a later BY/GET is still found.
fn sort_has_patterns(args: &Args) -> bool {
    let mut i = 2;
    while let Some(word) = args.get(i) {
        let left = args.len() - i - 1;
        if word.eq_ignore_ascii_case(b"by") || word.eq_ignore_ascii_case(b"get") {
            return true;
        } else if word.eq_ignore_ascii_case(b"limit") && left >= 2 {
            i += 2;
        } else if word.eq_ignore_ascii_case(b"store") && left >= 1 {
            i += 1;
        }
        i += 1;
    }
    false
}

/// `CLIENT TRACKING … BCAST | PREFIX | REDIRECT` would deliver
/// invalidations of other tenants' keys, or send the tenant's elsewhere;
/// plain tracking only reports keys the connection read.
pub(super) fn tracking_beyond_own_keys(args: &Args) -> bool {
    args.iter().skip(2).any(|a| {
        a.eq_ignore_ascii_case(b"bcast") || a.eq_ignore_ascii_case(b"prefix") || a.eq_ignore_ascii_case(b"redirect")
    })
}

/// `COPY src dst DB n`: a tenant has one database (SELECT, MOVE and
/// SWAPDB are refused), so its keys may not be written into another.
pub(super) fn copy_to_another_database(args: &Args) -> bool {
    args.iter().skip(3).any(|a| a.eq_ignore_ascii_case(b"db"))
}

/// Pub/sub: channels prefixed, patterns given the escaped prefix as a
/// literal head. PUBSUB NUMPAT (it counts every tenant's patterns) and
/// anything unknown are refused.
pub(super) fn pubsub(
    prefix: &[u8],
    parent: &Command,
    cmd: &Command,
    args: &Args,
    work: &mut Workspace,
) -> Result<Rewritten, Refusal> {
    let escaped = escape_glob(prefix);
    let rewritten = match (parent.name, cmd.name) {
        ("subscribe" | "ssubscribe" | "unsubscribe" | "sunsubscribe", _) => {
            from(args, 1, prefix).done(ReplyFix::None, work)
        }
        ("psubscribe" | "punsubscribe", _) => from(args, 1, &escaped).done(ReplyFix::None, work),
        ("publish" | "spublish", _) => {
            Outgoing::from_args(args, |i| (i == 1).then_some(prefix)).done(ReplyFix::None, work)
        }
        ("pubsub", "channels" | "shardchannels") => {
            let mut out = from(args, 2, &escaped);
            if args.len() == 2 {
                out.push(&escaped, b"*");
            }
            out.done(ReplyFix::Channels, work)
        }
        ("pubsub", "numsub" | "shardnumsub") => from(args, 2, prefix).done(ReplyFix::NumSub, work),
        ("pubsub", "help") => Outgoing::from_args(args, |_| None).done(ReplyFix::None, work),
        _ => return Err(Refusal::NotAllowed),
    };
    Ok(rewritten)
}

/// Every argument from `first` on preceded by `head`.
fn from<'a>(args: &Args<'a>, first: usize, head: &'a [u8]) -> Outgoing<'a> {
    Outgoing::from_args(args, |i| (i >= first).then_some(head))
}
