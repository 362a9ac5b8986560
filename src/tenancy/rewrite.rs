//! Request and reply rewriting for tenants: the pure, I/O-free half of the
//! tenant security boundary.
//!
//! A tenant owns a key prefix (`acme:`). Every key, pattern and channel it
//! sends is confined to that prefix here ([`request`]), and every key or
//! channel name coming back has the prefix stripped ([`reply`], [`pushed`]),
//! so a tenant sees its namespace as if it were a whole Redis and can name
//! nothing outside it.
//!
//! The command table decides where keys are ([`key_indices`]); this module
//! adds the rest: commands that reach beyond named keys (`Flags::DANGEROUS`)
//! are refused unless made safe here (KEYS and SCAN get their pattern
//! confined, SORT loses BY/GET, scripts only when allowed), pub/sub channels
//! are prefixed and patterns get the prefix as a literal (glob-escaped) head,
//! so no glob a tenant writes can match outside its namespace. Anything not
//! understood is refused rather than forwarded (fail closed).
//!
//! Layout: [`outgoing`] builds the rewritten request, [`forms`] holds the
//! command-specific rewrites, [`resp`] reads reply frames and [`replies`]
//! fixes them.

mod forms;
mod outgoing;
mod replies;
mod resp;
#[cfg(test)]
mod tests;

pub use outgoing::Workspace;

use crate::commands::{key_indices, Command, Flags, ReplyKeys};
use crate::protocol::{Args, Proto};
use crate::tenancy::dump::DumpError;
use bytes::Bytes;

/// How a reply must be fixed on its way back to the tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyFix {
    None,
    /// KEYS: an array of key names.
    Keys,
    /// SCAN: `[cursor, [keys]]`.
    Scan,
    /// RANDOMKEY: a bulk key name, or null.
    RandomKey,
    /// BLPOP/BRPOP/BZPOPMIN/BZPOPMAX: [key, …] or a null (array).
    KeyFirst,
    /// LMPOP/ZMPOP/BLMPOP/BZMPOP: [key, elements] or null.
    MpopKey,
    /// XREAD/XREADGROUP: RESP2 array of [key, entries]; RESP3 map key → entries; or null.
    Streams,
    /// PUBSUB CHANNELS / SHARDCHANNELS: an array of channel names (only those with the prefix are kept).
    Channels,
    /// PUBSUB NUMSUB / SHARDNUMSUB: flat [channel, count, …] (RESP2) or map (RESP3).
    NumSub,
    /// INFO: only the fields in `replies::INFO_FIELDS` are kept.
    Info,
}

impl ReplyFix {
    /// Every fix, for tests and fuzzing to go through.
    pub const ALL: [ReplyFix; 10] = [
        ReplyFix::None,
        ReplyFix::Keys,
        ReplyFix::Scan,
        ReplyFix::RandomKey,
        ReplyFix::KeyFirst,
        ReplyFix::MpopKey,
        ReplyFix::Streams,
        ReplyFix::Channels,
        ReplyFix::NumSub,
        ReplyFix::Info,
    ];
}

/// Why a request is refused for a tenant (the caller formats the NOPERM error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not allowed for tenants at all (reply: `-NOPERM this command is not allowed for tenant <name>`).
    NotAllowed,
    /// Allowed but this form is not (e.g. SORT … BY/GET, KEYS in a script) — message explains.
    Form(&'static str),
    /// RESTORE with a DUMP payload the proxy does not accept (reply: `-ERR DUMP payload refused: <why>`).
    Payload(DumpError),
}

/// A request rewritten into the tenant's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The request to send upstream, as a complete RESP multibulk.
    pub request: Bytes,
    /// What its reply needs on the way back.
    pub fix: ReplyFix,
}

/// Options of the tenant that change what is allowed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allowances {
    /// EVAL*, EVALSHA* and FCALL* may run (their declared keys are
    /// prefixed; what the script itself touches is not checked).
    pub scripts: bool,
    /// RESTORE may run: its key is prefixed and its payload validated in
    /// full by [`crate::tenancy::dump`] before it is forwarded.
    pub restore: bool,
}

/// Refusal for a request whose keys cannot be located.
const NO_KEYS: &str = "cannot find the keys of this command";

/// Rewrites one request of a tenant whose prefix is `prefix`. `cmd` is the table entry (subcommand already
/// resolved by the caller: for `OBJECT ENCODING k`, cmd is the `encoding` subcommand of `object`; `parent` is
/// the top-level command, equal to `cmd` for plain commands).
///
/// Every key found by [`key_indices`] is prefixed, channels are prefixed, patterns get the glob-escaped prefix;
/// commands reaching beyond named keys are refused unless made safe here. The request is re-encoded as a RESP
/// multibulk keeping the command name as the client sent it, its argument
/// ranges left in `work` (kept by the caller between requests).
pub fn request(
    prefix: &[u8],
    parent: &Command,
    cmd: &Command,
    args: &Args,
    allow: Allowances,
    work: &mut Workspace,
) -> Result<Rewritten, Refusal> {
    if unresolved_subcommand(parent, cmd, args) {
        return Err(Refusal::NotAllowed);
    }
    if parent.flags.contains(Flags::PUBSUB) || cmd.flags.contains(Flags::PUBSUB) {
        return forms::pubsub(prefix, parent, cmd, args, work);
    }
    if dangerous(parent, cmd) {
        return forms::dangerous(prefix, parent, cmd, args, allow, work);
    }
    if cmd.name == "tracking" && forms::tracking_beyond_own_keys(args) {
        return Err(Refusal::Form("CLIENT TRACKING with BCAST, PREFIX or REDIRECT is not allowed for tenants"));
    }
    if cmd.name == "copy" && forms::copy_to_another_database(args) {
        return Err(Refusal::Form("COPY with DB is not allowed for tenants (a tenant has one database)"));
    }
    keyed(prefix, cmd, args, fix_for(parent), work)
}

/// A container (CLIENT, XINFO, …) given a subcommand the table does not know: its keys are unknown, so it is
/// refused (fail closed).
fn unresolved_subcommand(parent: &Command, cmd: &Command, args: &Args) -> bool {
    !parent.subcommands.is_empty() && std::ptr::eq(parent, cmd) && args.len() > 1
}

/// True when the command reaches beyond its named keys. CLIENT is the one container whose DANGEROUS flag does
/// not extend to every subcommand (the table flags KILL, LIST, PAUSE, … individually), so for it only the
/// subcommand's flag counts.
fn dangerous(parent: &Command, cmd: &Command) -> bool {
    cmd.flags.contains(Flags::DANGEROUS) || (parent.flags.contains(Flags::DANGEROUS) && parent.name != "client")
}

/// The reply fix a plain keyed command needs (the command table's
/// `reply_keys`).
fn fix_for(parent: &Command) -> ReplyFix {
    match parent.reply_keys {
        ReplyKeys::None => ReplyFix::None,
        ReplyKeys::First => ReplyFix::KeyFirst,
        ReplyKeys::Mpop => ReplyFix::MpopKey,
        ReplyKeys::Streams => ReplyFix::Streams,
    }
}

/// Prefixes every key argument of `cmd` (positions from [`key_indices`]),
/// encoding the request straight from `args`.
fn keyed(prefix: &[u8], cmd: &Command, args: &Args, fix: ReplyFix, work: &mut Workspace) -> Result<Rewritten, Refusal> {
    let Workspace { keys, out } = work;
    key_indices(cmd, args, keys).map_err(|_| Refusal::Form(NO_KEYS))?;
    // In order, each once: the walk below takes one per argument.
    keys.sort_unstable();
    keys.dedup();
    let size = args.iter().map(<[u8]>::len).sum::<usize>() + keys.len() * prefix.len();
    let mut next_key = keys.iter().copied().peekable();
    let parts = args.iter().enumerate().map(|(i, arg)| match next_key.next_if_eq(&i) {
        Some(_) => (prefix, arg),
        None => (&b""[..], arg),
    });
    Ok(outgoing::encode_parts(args.len(), size, parts, fix, out))
}

/// Fixes one complete reply frame for the tenant: strips `prefix` from key/channel names per `fix`;
/// names without the prefix (should not happen) are dropped from arrays (KEYS, SCAN, CHANNELS) so nothing
/// foreign leaks. Errors and other frames pass through unchanged.
///
/// A frame that cannot be read as RESP (never from a sane upstream) becomes an error reply rather than being
/// forwarded unchecked.
pub fn reply(prefix: &[u8], fix: ReplyFix, proto: Proto, reply: &[u8]) -> Bytes {
    if fix == ReplyFix::None {
        return Bytes::copy_from_slice(reply);
    }
    replies::fix(prefix, fix, proto, reply)
        .unwrap_or_else(|| crate::protocol::encode::error("ERR nearcache: malformed reply from upstream"))
}

/// EXEC's reply: each element fixed by the fix of the command queued at
/// its position (`fixes`, in order). A null (WATCH abort) or an error
/// (EXECABORT) passes unchanged.
pub fn exec_reply(prefix: &[u8], fixes: &[ReplyFix], proto: Proto, reply: &[u8]) -> Bytes {
    replies::exec(prefix, fixes, proto, reply)
        .unwrap_or_else(|| crate::protocol::encode::error("ERR nearcache: malformed reply from upstream"))
}

/// A frame pushed on a subscribed connection (RESP2 array or RESP3 push): message/pmessage/smessage and
/// (p|s)(un)subscribe confirmations get the prefix stripped from the channel and pattern; other frames unchanged.
///
/// Patterns are stripped of the glob-escaped prefix they were given by [`request`]. RESP3 `invalidate` pushes
/// (CLIENT TRACKING) get the prefix stripped from their key names too, dropping any without it.
pub fn pushed(prefix: &[u8], frame: &[u8]) -> Bytes {
    replies::pushed(prefix, frame).unwrap_or_else(|| Bytes::copy_from_slice(frame))
}

/// A request of `words`, none rewritten (its ranges left in `work`).
pub fn words(words: &[&[u8]], work: &mut Workspace) -> Bytes {
    outgoing::Outgoing::new(words).done(ReplyFix::None, work).request
}

/// `prefix` with glob metacharacters (`* ? [ ] \`) escaped with a backslash, so it matches only itself.
pub fn escape_glob(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len() + 4);
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}
