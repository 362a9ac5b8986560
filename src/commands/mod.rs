//! The command table: the single source of truth about every Redis command
//! nearcache knows.
//!
//! For each command it records arity, behaviour flags, where its keys are and
//! how the proxy must handle it (forward on the shared pool, answer locally,
//! or hold a dedicated upstream connection), whether the near-cache may keep
//! its reply and which handler of the failover store serves it, if any.
//! Routing, metrics labels, caching, failover and tenancy all read this
//! table, from the one entry a request's lookup finds: no other list of
//! command names exists (failover's whole-value reads, `failover::seed`,
//! are derived from the store handlers). Where one command behaves unlike
//! any other, its entry's name is compared (tenancy answers `ping` before
//! AUTH and checks the forms of CLIENT `tracking` and of `copy`; MGET's
//! keys are cached under the shape of `get`), and the words a command's
//! syntax defines (`STREAMS`, `BY`, `REDIRECT`, …) are matched where its
//! arguments are parsed.

mod keys;
mod table;

pub use keys::{key_indices, only_key, plain_positions, KeyError};

use crate::protocol::Args;
use std::sync::OnceLock;

/// Behaviour flags of a command (a small bit set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    pub const NONE: Flags = Flags(0);
    /// Reads data.
    pub const READ: Flags = Flags(1);
    /// Modifies data.
    pub const WRITE: Flags = Flags(1 << 1);
    /// Server administration (CONFIG, DEBUG, SHUTDOWN, …).
    pub const ADMIN: Flags = Flags(1 << 2);
    /// Always may block the connection (BLPOP, WAIT, …).
    pub const BLOCKING: Flags = Flags(1 << 3);
    /// Blocks only when a `BLOCK` argument is given (XREAD, XREADGROUP).
    pub const MAY_BLOCK: Flags = Flags(1 << 4);
    /// Publish/subscribe.
    pub const PUBSUB: Flags = Flags(1 << 5);
    /// Changes per-connection state on the server.
    pub const CONN_STATE: Flags = Flags(1 << 6);
    /// Can reach arbitrary keys or the server itself.
    pub const DANGEROUS: Flags = Flags(1 << 7);
    /// Runs a script or function.
    pub const SCRIPT: Flags = Flags(1 << 8);
    /// A read whose reply depends only on its one key's value and its
    /// arguments: the near-cache may keep it (MGET is kept per key, see
    /// [`Flags::PER_KEY`]).
    pub const CACHEABLE: Flags = Flags(1 << 9);
    /// Redis serves it while busy with a script (`SCRIPT KILL`, `FUNCTION
    /// KILL`, `SHUTDOWN`): sent out of band, on a connection of its own,
    /// never queued behind other requests, even while the circuit is open.
    pub const OUT_OF_BAND: Flags = Flags(1 << 10);
    /// Its reply names clients by id (`CLIENT GETREDIR`, `TRACKINGINFO`):
    /// upstream ids are translated to the proxy's on the way back.
    pub const NAMES_CLIENT: Flags = Flags(1 << 11);
    /// Redis' `may-replicate`: may change data without being a write
    /// (`PUBLISH`, `SPUBLISH`, `EXEC`), so `CLIENT PAUSE WRITE` holds it.
    pub const MAY_REPLICATE: Flags = Flags(1 << 12);
    /// A cacheable read of any number of keys answering one value per key
    /// (MGET): the near-cache keeps and serves each key on its own.
    pub const PER_KEY: Flags = Flags(1 << 13);
    /// Waits until replicas (or the AOF) have the connection's writes
    /// (`WAIT`, `WAITAOF`: Redis waits for the replication offset of the
    /// connection's last propagated write, 0 for one that wrote nothing,
    /// which every connected replica has). It runs on a dedicated
    /// connection, which carried none of the client's pooled writes: the
    /// proxy writes once on it first, so the wait covers everything
    /// written before.
    pub const AFTER_WRITES: Flags = Flags(1 << 14);

    /// Both sets combined.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// True when every flag of `other` is set.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// Where a command's keys are, in terms of argument positions
/// (argument 0 is the command name).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keys {
    /// No keys.
    None,
    /// Keys at `first`, `first + step`, … up to `last` (negative: counted
    /// from the end, -1 is the last argument), as in Redis' legacy key spec.
    Range { first: u8, last: i8, step: u8 },
    /// A key count at `numkeys_at` followed by that many keys, plus an
    /// optional fixed key (a destination) at `fixed`.
    /// EVAL, FCALL, ZUNIONSTORE, ZDIFF, LMPOP, BLMPOP, SINTERCARD, …
    NumKeys { numkeys_at: u8, fixed: Option<u8> },
    /// XREAD / XREADGROUP: the first half of the arguments after `STREAMS`.
    Streams,
    /// SORT / SORT_RO: the key at 1 and the destination after `STORE`.
    Sort,
    /// MIGRATE: the key at 3 (unless empty) and those after `KEYS`.
    Migrate,
    /// GEORADIUS / GEORADIUSBYMEMBER: the key at 1 and those after
    /// `STORE` / `STOREDIST`.
    GeoRadius,
}

/// Kind of pub/sub subscription a (un)subscribe command manages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubKind {
    Channel,
    Pattern,
    Shard,
}

/// How the proxy handles a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handler {
    /// Forwarded: on the shared pool, or on the dedicated connection while the
    /// session has one. Blocking commands hold a dedicated connection for
    /// their duration.
    Forward,
    /// Answered by the proxy.
    Local(Local),
    /// Changes connection state: redirects a dedicated upstream connection.
    State(State),
    /// Cannot work through a proxy; refused with an error.
    Unsupported,
}

/// Commands the proxy answers itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Local {
    Quit,
    Hello,
    Reset,
    Auth,
    Select,
    ClientId,
    ClientGetName,
    ClientSetName,
    ClientSetInfo,
    ClientReply,
    /// CLIENT KILL and CLIENT UNBLOCK name clients by the ids the proxy
    /// gave them: they act on the proxy's clients, not on whatever
    /// upstream connection carries the same id.
    ClientKill,
    ClientUnblock,
    /// CLIENT LIST and CLIENT INFO: the proxy's clients (a tenant sees its
    /// own), not the upstream connections they share.
    ClientList,
    ClientInfo,
    /// CLIENT PAUSE and UNPAUSE: the proxy's clients wait, not its
    /// upstream connections (`server::pause`).
    ClientPause,
    ClientUnpause,
    /// CLUSTER INFO, SLOTS, SHARDS, NODES, MYID, COUNTKEYSINSLOT and
    /// GETKEYSINSLOT: with a Redis Cluster upstream the proxy describes
    /// itself, a one-node cluster serving every slot, so cluster-aware
    /// clients keep talking to it (`server::cluster_view`); forwarded
    /// otherwise.
    ClusterView,
    /// ASKING, READONLY and READWRITE: with a Redis Cluster upstream the
    /// proxy follows redirections and reads from masters itself, so they
    /// change nothing (`+OK`); otherwise the client's dedicated
    /// connection's state, as any connection state.
    ClusterState,
}

/// Where a command's reply names keys, besides the commands whose reply is
/// all key names (`KEYS`, `SCAN`, `RANDOMKEY`: rewritten whole for tenants).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKeys {
    None,
    /// `[key, …]` or a null: the key popped from (BLPOP, BZPOPMIN…).
    First,
    /// `[key, elements]` or a null (LMPOP, ZMPOP, BLMPOP, BZMPOP).
    Mpop,
    /// One entry per stream, `[key, entries]` (a map in RESP3), or a null
    /// (XREAD, XREADGROUP).
    Streams,
}

/// How a command reaches a Redis Cluster's masters (Redis' `request_policy`
/// tips), and how their replies make the client's one (`response_policy`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spread {
    /// The master of its keys' slot (any master when it has none).
    One,
    /// Split by slot: one request per slot with that slot's keys (and
    /// their values), in parallel.
    Keys(Merge),
    /// Sent to every master.
    AllMasters(Merge),
    /// A cursor over every master in turn (`SCAN`): the proxy's cursor
    /// names the master and that master's cursor.
    Cursor,
    /// The master of its first channel's slot (`SSUBSCRIBE`, `SPUBLISH`):
    /// sharded pub/sub's channels hash like keys.
    Channel,
    /// Split by its channels' slots (`PUBSUB SHARDNUMSUB`, channels from
    /// the third argument on), as `Keys` splits keys.
    Channels(Merge),
}

/// How the replies of a spread command's parts make one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// One value per key, put back in the request's key order (MGET).
    Values,
    /// Integers added up (DEL, EXISTS, DBSIZE).
    Sum,
    /// `+OK` once every part answered `+OK` (MSET, FLUSHALL).
    AllOk,
    /// Arrays laid end to end (KEYS).
    Concat,
    /// The same reply from every part (SCRIPT LOAD's SHA1).
    Same,
    /// Arrays of integers combined element by element, the smallest kept
    /// (SCRIPT EXISTS' 0/1: an AND; WAITAOF's local and replica counts).
    MinEach,
    /// One of the replies that is not nil, picked at random (RANDOMKEY).
    Any,
    /// `+OK` from the master whose running script was killed; Redis'
    /// `-NOTBUSY` only when no master was running one (SCRIPT KILL,
    /// FUNCTION KILL, sent out of band).
    Killed,
    /// The smallest integer (WAIT: the replicas that acknowledged the
    /// client's writes on every master it wrote to).
    Min,
    /// Two elements per channel, name and count, put back in the
    /// request's order (PUBSUB SHARDNUMSUB).
    Pairs,
    /// The reply of the master running a function, else the first
    /// (FUNCTION STATS).
    Running,
}

/// Commands that create or end per-connection upstream state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Multi,
    Exec,
    Discard,
    Watch,
    Unwatch,
    Subscribe(SubKind),
    Unsubscribe(SubKind),
    Monitor,
    /// State that lasts for the rest of the session (CLIENT NO-EVICT,
    /// READONLY, …).
    Session,
    /// CLIENT TRACKING: session state too, whose `REDIRECT` names a client
    /// by its proxy id, and which a client must not believe it has when
    /// the proxy could not set it up.
    Tracking,
}

/// The failover store's handler of a command (`failover::store`), one per
/// command it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreOp {
    Append,
    Decr,
    DecrBy,
    Del,
    Echo,
    Exists,
    Expire,
    ExpireAt,
    Get,
    GetDel,
    GetSet,
    HDel,
    HExists,
    HGet,
    HGetAll,
    HIncrBy,
    HKeys,
    HLen,
    HMGet,
    HMSet,
    HSet,
    HVals,
    Incr,
    IncrBy,
    IncrByFloat,
    LLen,
    LPop,
    LPush,
    LRange,
    MGet,
    MSet,
    Persist,
    PExpire,
    PExpireAt,
    Ping,
    PSetEx,
    PTtl,
    RPop,
    RPush,
    SAdd,
    SCard,
    Set,
    SetEx,
    SetNx,
    SIsMember,
    SMembers,
    SRem,
    StrLen,
    Ttl,
    Type,
    Unlink,
    ZAdd,
    ZCard,
    ZIncrBy,
    ZRange,
    ZRem,
    ZScore,
}

/// One entry of the command table.
#[derive(Debug)]
pub struct Command {
    /// Lower-case name (`"get"`, or `"encoding"` for a subcommand).
    pub name: &'static str,
    /// Redis arity: positive means exactly that many arguments (command name
    /// included), negative means at least that many.
    pub arity: i32,
    pub flags: Flags,
    pub keys: Keys,
    pub handler: Handler,
    /// The failover store's handler: `Some` when the local store serves the
    /// command while the upstream is down; other commands are refused in
    /// failover mode.
    pub store: Option<StoreOp>,
    /// How it reaches a Redis Cluster's masters.
    pub spread: Spread,
    /// Where its reply names keys (a tenant gets them without its prefix).
    pub reply_keys: ReplyKeys,
    /// Subcommands (CLIENT, CONFIG, OBJECT, …); empty for plain commands.
    /// A subcommand's key positions count from the parent's name.
    pub subcommands: &'static [Command],
}

impl Command {
    /// True when `argc` arguments (name included) satisfy the arity.
    pub fn arity_ok(&self, argc: usize) -> bool {
        let argc = argc as i64;
        let arity = i64::from(self.arity);
        if arity >= 0 {
            argc == arity
        } else {
            argc >= -arity
        }
    }

    /// A cacheable read the near-cache serves key by key (see
    /// [`Flags::PER_KEY`]).
    #[inline]
    pub fn cached_per_key(&self) -> bool {
        self.flags.contains(Flags::CACHEABLE.with(Flags::PER_KEY))
    }

    /// Looks up a subcommand by name, ignoring ASCII case.
    pub fn subcommand(&self, name: &[u8]) -> Option<&'static Command> {
        self.subcommands.iter().find(|c| c.name.as_bytes().eq_ignore_ascii_case(name))
    }

    /// The entry a request runs: its subcommand's (`OBJECT ENCODING k`),
    /// or this one when it has none or the subcommand is unknown (the
    /// caller can tell by comparing the two).
    #[inline]
    pub fn resolve(&'static self, args: &Args) -> &'static Command {
        match args.get(1) {
            Some(sub) if !self.subcommands.is_empty() => self.subcommand(sub).unwrap_or(self),
            _ => self,
        }
    }

    /// True when the connection it ran on may keep state from it, past its
    /// reply, that the session does not see end: anything changing
    /// per-connection state ([`Flags::CONN_STATE`]) but a transaction's,
    /// WATCH's and subscriptions' own commands (their state ends with EXEC,
    /// DISCARD, UNWATCH, or the unsubscription confirmed with no
    /// subscription left, which the session follows), and a subcommand the
    /// table does not know (resolved to its parent). A dedicated connection
    /// that carried none goes back to the spares as it is, without `RESET`.
    pub fn leaves_state(&self) -> bool {
        let followed = matches!(
            self.handler,
            Handler::State(
                State::Multi
                    | State::Exec
                    | State::Discard
                    | State::Watch
                    | State::Unwatch
                    | State::Subscribe(_)
                    | State::Unsubscribe(_)
            )
        );
        (self.flags.contains(Flags::CONN_STATE) && !followed) || !self.subcommands.is_empty()
    }

    /// True when this entry stands for a subcommand the table does not
    /// know (its parent, see [`Command::resolve`]) of a family some of whose
    /// subcommands change per-connection state (`CLIENT`): a newer server's
    /// (Valkey's `CLIENT CAPA`) may too, so it runs on the client's own
    /// connection, kept for the session, never on a shared one.
    #[inline]
    pub fn unknown_of_stateful_family(&self) -> bool {
        self.subcommands.iter().any(|sub| sub.flags.contains(Flags::CONN_STATE))
    }

    /// True when the command blocks given these arguments: always for
    /// BLOCKING commands; for XREAD / XREADGROUP when a `BLOCK` option
    /// comes before `STREAMS` (option values are stepped over, so a group
    /// named "block" is not mistaken for it).
    #[inline]
    pub fn blocks(&self, args: &Args) -> bool {
        if self.flags.contains(Flags::BLOCKING) {
            return true;
        }
        self.flags.contains(Flags::MAY_BLOCK) && block_option(args)
    }
}

/// Whether XREAD / XREADGROUP arguments ask to block (see
/// [`Command::blocks`]).
fn block_option(args: &Args) -> bool {
    let mut i = 1;
    while let Some(arg) = args.get(i) {
        let skip = match arg.to_ascii_lowercase().as_slice() {
            b"block" => return true,
            b"streams" => return false,
            b"count" => 1,
            b"group" => 2,
            _ => 0,
        };
        i += 1 + skip;
    }
    false
}

/// Index of a top-level command in [`all`]; stable for the process' life,
/// used to index per-command metrics.
pub type CommandIndex = usize;

/// Every top-level command nearcache knows.
pub fn all() -> &'static [Command] {
    table::COMMANDS
}

/// Longest command name in the table; longer names cannot match.
const MAX_NAME: usize = 32;

/// Slots in the name index: a power of two well above the table size, so
/// probes are short.
const SLOTS: usize = 1024;

/// An empty slot of the name index.
const EMPTY: u16 = u16::MAX;

/// A command name lower-cased and zero-padded into four words, so it is
/// hashed and compared a word at a time rather than a byte at a time.
type Packed = [u64; MAX_NAME / 8];

/// Packs a name of at most [`MAX_NAME`] bytes.
fn pack(name: &[u8]) -> Packed {
    let mut packed = [0; MAX_NAME / 8];
    for (i, p) in packed.iter_mut().enumerate().take(name.len().div_ceil(8)) {
        *p = lowercase(word(name, i));
    }
    packed
}

/// The `i`th eight bytes of `name`, little-endian, zero-padded.
fn word(name: &[u8], i: usize) -> u64 {
    let rest = name.get(i * 8..).unwrap_or_default();
    match rest.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => rest.iter().rev().fold(0, |acc, &b| acc << 8 | u64::from(b)),
    }
}

/// `to_ascii_lowercase` of eight bytes at once: the high bit of a byte in
/// `ge_a` / `gt_z` tells whether its low seven bits are ≥ 'A' / > 'Z' (the
/// sums cannot carry into the next byte); a byte gets 0x20 when it is
/// ASCII and between the two.
fn lowercase(w: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    let low7 = w & (0x7f * ONES);
    let ge_a = low7 + (0x80 - u64::from(b'A')) * ONES;
    let gt_z = low7 + (0x7f - u64::from(b'Z')) * ONES;
    let upper = ge_a & !gt_z & !w & (0x80 * ONES);
    w | (upper >> 2)
}

/// Slot of a packed name. Names are the table's and few: a multiply mixes
/// enough, and SipHash's flood resistance would buy nothing.
fn slot_of(p: &Packed) -> usize {
    let mixed = p[0] ^ p[1].rotate_left(21) ^ p[2].rotate_left(42) ^ p[3].rotate_left(11);
    (mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - SLOTS.trailing_zeros())) as usize
}

/// Open-addressing index from packed name to table position, and each
/// command's packed name.
struct Index {
    slots: [u16; SLOTS],
    names: Vec<Packed>,
}

fn index() -> &'static Index {
    static INDEX: OnceLock<Box<Index>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let names: Vec<Packed> = all().iter().map(|c| pack(c.name.as_bytes())).collect();
        let mut slots = [EMPTY; SLOTS];
        for (i, name) in names.iter().enumerate() {
            let mut slot = slot_of(name);
            while slots[slot] != EMPTY {
                slot = (slot + 1) % SLOTS;
            }
            slots[slot] = u16::try_from(i).expect("the command table has fewer than 65535 entries");
        }
        Box::new(Index { slots, names })
    })
}

/// The last command name a connection looked up, as it was spelt, and
/// what it found: clients mostly send the same commands again, and
/// comparing a few bytes costs less than [`lookup`].
#[derive(Default)]
pub struct LastName {
    name: [u8; 16],
    len: usize,
    found: Option<(CommandIndex, &'static Command)>,
}

impl LastName {
    /// [`lookup`], remembering the answer for the next time.
    #[inline]
    pub fn lookup(&mut self, name: &[u8]) -> Option<(CommandIndex, &'static Command)> {
        if name.len() == self.len && name == &self.name[..self.len] {
            return self.found;
        }
        let found = lookup(name);
        if let (Some(to), true) = (self.name.get_mut(..name.len()), found.is_some()) {
            to.copy_from_slice(name);
            (self.len, self.found) = (name.len(), found);
        }
        found
    }
}

/// Finds a top-level command by name, ignoring ASCII case.
pub fn lookup(name: &[u8]) -> Option<(CommandIndex, &'static Command)> {
    if name.len() > MAX_NAME {
        return None;
    }
    let index = index();
    let packed = pack(name);
    let mut slot = slot_of(&packed);
    loop {
        let i = usize::from(index.slots[slot]);
        // An empty slot (`EMPTY`) is past the table's end: not found.
        let cmd = all().get(i)?;
        if index.names[i] == packed && cmd.name.len() == name.len() {
            return Some((i, cmd));
        }
        slot = (slot + 1) % SLOTS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_may_leave_state_on_a_connection() {
        let entry = |name: &str, sub: Option<&str>| {
            let (_, cmd) = lookup(name.as_bytes()).expect(name);
            sub.map_or(cmd, |sub| cmd.subcommand(sub.as_bytes()).expect(sub))
        };
        for (name, sub) in [
            ("get", None),
            ("blpop", None),
            ("xread", None),
            ("multi", None),
            ("exec", None),
            ("discard", None),
            ("watch", None),
            ("unwatch", None),
            ("eval", None),
            ("publish", None),
            ("subscribe", None),
            ("punsubscribe", None),
            ("ssubscribe", None),
        ] {
            assert!(!entry(name, sub).leaves_state(), "{name}");
        }
        for (name, sub) in [
            ("select", None),
            ("monitor", None),
            ("hello", None),
            ("readonly", None),
            ("client", Some("setname")),
            ("client", Some("tracking")),
            ("client", Some("no-evict")),
            ("script", Some("debug")),
        ] {
            assert!(entry(name, sub).leaves_state(), "{name} {sub:?}");
        }
        // A subcommand the table does not know resolves to its parent: of
        // CLIENT it may hold state (kept on the client's own connection).
        assert!(entry("client", None).leaves_state());
        assert!(entry("client", None).unknown_of_stateful_family());
        assert!(!entry("object", None).unknown_of_stateful_family());
        assert!(!entry("get", None).unknown_of_stateful_family());
    }

    #[test]
    fn the_last_name_is_remembered_as_spelt() {
        let mut names = LastName::default();
        let name = |found: Option<(CommandIndex, &'static Command)>| found.map(|(_, c)| c.name);
        assert_eq!(name(names.lookup(b"GET")), Some("get"));
        assert_eq!(name(names.lookup(b"GET")), Some("get"));
        assert_eq!(name(names.lookup(b"get")), Some("get"));
        assert_eq!(name(names.lookup(b"SET")), Some("set"));
        assert_eq!(name(names.lookup(b"GEt")), Some("get"));
        assert_eq!(name(names.lookup(b"nosuchcommand")), None);
        assert_eq!(name(names.lookup(b"GEt")), Some("get"), "an unknown name is not remembered");
        assert_eq!(name(names.lookup(b"nosuchcommandwithalongname")), None);
        let long = "x".repeat(40);
        assert_eq!(name(names.lookup(long.as_bytes())), None);
        assert_eq!(name(names.lookup(b"set")), Some("set"));
    }

    #[test]
    fn every_command_is_found_by_its_name_in_any_case() {
        for (i, cmd) in all().iter().enumerate() {
            let upper = cmd.name.to_ascii_uppercase();
            for name in [cmd.name, upper.as_str()] {
                assert_eq!(lookup(name.as_bytes()).map(|(found, _)| found), Some(i), "{name}");
            }
        }
        assert_eq!(lookup(b"gEt").map(|(_, c)| c.name), Some("get"));
    }

    /// The flags that replaced name tests elsewhere mark exactly these.
    #[test]
    fn flag_driven_behaviour_covers_the_commands_meant() {
        let named = |pred: fn(&Command) -> bool| {
            let mut names: Vec<String> = Vec::new();
            for cmd in all() {
                if pred(cmd) {
                    names.push(cmd.name.into());
                }
                names.extend(cmd.subcommands.iter().filter(|s| pred(s)).map(|s| format!("{}|{}", cmd.name, s.name)));
            }
            names
        };
        assert_eq!(named(Command::cached_per_key), ["mget"]);
        assert_eq!(named(|c| c.flags.contains(Flags::NAMES_CLIENT)), ["client|getredir", "client|trackinginfo"]);
        assert_eq!(named(|c| c.flags.contains(Flags::MAY_REPLICATE)), ["exec", "publish", "spublish"]);
    }

    #[test]
    fn near_misses_are_unknown() {
        for name in [&b"ge"[..], b"gets", b"get\0", b"\0get", b"", b"georadius\x7fro", b"GEORADIUS-RO", &[b'a'; 40]] {
            assert!(lookup(name).is_none(), "{:?}", String::from_utf8_lossy(name));
        }
        assert!(lookup(b"GEORADIUS_RO").is_some());
    }

    #[test]
    fn words_are_lowercased_like_bytes() {
        for b in 0..=255u8 {
            for at in 0..8 {
                let word = u64::from_le_bytes(std::array::from_fn(|i| if i == at { b } else { b'Q' }));
                let expected =
                    u64::from_le_bytes(std::array::from_fn(|i| if i == at { b.to_ascii_lowercase() } else { b'q' }));
                assert_eq!(lowercase(word), expected, "byte {b:#x} at {at}");
            }
        }
    }
}
