//! Request rewriting: every rule of `rewrite::request`.

use super::support::{ok, resolve, rewrite_parts, rewritten, rw, rw_with, Req};
use crate::commands::{all, Command, Flags};
use crate::tenancy::rewrite::{escape_glob, Allowances, Refusal, ReplyFix};

const SCRIPTS: Allowances = Allowances { scripts: true, restore: false };
const NO_KEYS: Refusal = Refusal::Form("cannot find the keys of this command");
const SORT_PATTERNS: Refusal = Refusal::Form("SORT with BY or GET patterns is not allowed for tenants");

#[test]
fn exact_encoding_keeps_the_name_as_sent() {
    let req = Req::new(&[&b"gEt"[..], b"k"]);
    let (parent, cmd) = resolve(&[&b"get"[..]]);
    let rw = rewritten(b"acme:", parent, cmd, &req.args(), Allowances::default()).expect("allowed");
    assert_eq!(&rw.request[..], b"*2\r\n$3\r\ngEt\r\n$6\r\nacme:k\r\n");
    assert_eq!(rw.fix, ReplyFix::None);
}

#[test]
fn plain_keys_are_prefixed() {
    let none = ReplyFix::None;
    assert_eq!(ok("GET k", none), "GET acme:k");
    assert_eq!(ok("SET k v EX 10", none), "SET acme:k v EX 10");
    assert_eq!(ok("MSET a 1 b 2 c 3", none), "MSET acme:a 1 acme:b 2 acme:c 3");
    assert_eq!(ok("MSETNX a a b b", none), "MSETNX acme:a a acme:b b");
    assert_eq!(ok("DEL a b", none), "DEL acme:a acme:b");
    assert_eq!(ok("EXISTS a b a", none), "EXISTS acme:a acme:b acme:a");
    assert_eq!(ok("TOUCH a b", none), "TOUCH acme:a acme:b");
    assert_eq!(ok("WATCH a b", none), "WATCH acme:a acme:b");
    assert_eq!(ok("RENAME a b", none), "RENAME acme:a acme:b");
    assert_eq!(ok("RENAMENX a b", none), "RENAMENX acme:a acme:b");
    assert_eq!(ok("SMOVE src dst member", none), "SMOVE acme:src acme:dst member");
    assert_eq!(ok("LMOVE a b LEFT RIGHT", none), "LMOVE acme:a acme:b LEFT RIGHT");
    assert_eq!(ok("BLMOVE a b LEFT RIGHT 0", none), "BLMOVE acme:a acme:b LEFT RIGHT 0");
    assert_eq!(ok("RPOPLPUSH a b", none), "RPOPLPUSH acme:a acme:b");
    assert_eq!(ok("COPY a b REPLACE", none), "COPY acme:a acme:b REPLACE");
    assert_eq!(ok("HSET h f v", none), "HSET acme:h f v");
    assert_eq!(ok("ZUNIONSTORE dst 2 a b WEIGHTS 1 2", none), "ZUNIONSTORE acme:dst 2 acme:a acme:b WEIGHTS 1 2");
    assert_eq!(ok("ZINTER 2 a b WITHSCORES", none), "ZINTER 2 acme:a acme:b WITHSCORES");
    assert_eq!(ok("SINTERCARD 2 a b LIMIT 1", none), "SINTERCARD 2 acme:a acme:b LIMIT 1");
    assert_eq!(
        ok("GEOSEARCHSTORE dst src FROMMEMBER m BYRADIUS 1 km", none),
        "GEOSEARCHSTORE acme:dst acme:src FROMMEMBER m BYRADIUS 1 km"
    );
    assert_eq!(ok("GEORADIUS k 15 37 200 km STORE dst", none), "GEORADIUS acme:k 15 37 200 km STORE acme:dst");
    assert_eq!(ok("BITOP AND dst a b", none), "BITOP AND acme:dst acme:a acme:b");
    assert_eq!(ok("PFMERGE dst a", none), "PFMERGE acme:dst acme:a");
    assert_eq!(ok("XGROUP CREATE s g $ MKSTREAM", none), "XGROUP CREATE acme:s g $ MKSTREAM");
    assert_eq!(ok("XINFO STREAM s FULL", none), "XINFO STREAM acme:s FULL");
    assert_eq!(ok("PING", none), "PING");
    assert_eq!(ok("ECHO acme:x", none), "ECHO acme:x");
}

#[test]
fn replies_with_key_names_get_their_fix() {
    assert_eq!(ok("BLPOP a b 0", ReplyFix::KeyFirst), "BLPOP acme:a acme:b 0");
    assert_eq!(ok("BRPOP a 1.5", ReplyFix::KeyFirst), "BRPOP acme:a 1.5");
    assert_eq!(ok("BZPOPMIN a b 0", ReplyFix::KeyFirst), "BZPOPMIN acme:a acme:b 0");
    assert_eq!(ok("bzpopmax a 0", ReplyFix::KeyFirst), "bzpopmax acme:a 0");
    assert_eq!(ok("LMPOP 2 a b LEFT COUNT 2", ReplyFix::MpopKey), "LMPOP 2 acme:a acme:b LEFT COUNT 2");
    assert_eq!(ok("ZMPOP 1 a MIN", ReplyFix::MpopKey), "ZMPOP 1 acme:a MIN");
    assert_eq!(ok("BLMPOP 0 2 a b RIGHT", ReplyFix::MpopKey), "BLMPOP 0 2 acme:a acme:b RIGHT");
    assert_eq!(ok("BZMPOP 1 1 a MAX COUNT 3", ReplyFix::MpopKey), "BZMPOP 1 1 acme:a MAX COUNT 3");
    assert_eq!(ok("XREAD COUNT 1 STREAMS a b 0 0", ReplyFix::Streams), "XREAD COUNT 1 STREAMS acme:a acme:b 0 0");
    assert_eq!(ok("XREAD BLOCK 0 STREAMS streams $", ReplyFix::Streams), "XREAD BLOCK 0 STREAMS acme:streams $");
    assert_eq!(
        ok("XREADGROUP GROUP g c COUNT 1 NOACK STREAMS a >", ReplyFix::Streams),
        "XREADGROUP GROUP g c COUNT 1 NOACK STREAMS acme:a >"
    );
    assert_eq!(ok("BRPOPLPUSH a b 0", ReplyFix::None), "BRPOPLPUSH acme:a acme:b 0");
}

#[test]
fn keys_are_opaque_bytes() {
    let parts: [&[u8]; 2] = [b"GET", b""];
    assert_eq!(rewrite_parts(b"acme:", &parts, Allowances::default()).expect("ok").0[1], b"acme:");
    assert_eq!(ok("GET acme:x", ReplyFix::None), "GET acme:acme:x");
    assert_eq!(ok("GET {user}:1", ReplyFix::None), "GET acme:{user}:1");
    assert_eq!(ok("GET a*[b]?\\", ReplyFix::None), "GET acme:a*[b]?\\");
    // A key is never escaped, even when the prefix has glob characters.
    assert_eq!(rw_with("a*b[", "GET k*", Allowances::default()).expect("ok").0, "GET a*b[k*");
    let binary: [&[u8]; 3] = [b"SET", b"\0\r\n\xff", b"\r\n"];
    let (args, _) = rewrite_parts(b"t\0:", &binary, Allowances::default()).expect("ok");
    assert_eq!(args, vec![b"SET".to_vec(), b"t\0:\0\r\n\xff".to_vec(), b"\r\n".to_vec()]);
}

#[test]
fn key_errors_are_refused() {
    assert_eq!(rw("XREAD STREAMS a b 0"), Err(NO_KEYS));
    assert_eq!(rw("XREAD COUNT 1"), Err(NO_KEYS));
    assert_eq!(rw("ZUNIONSTORE dst 3 a b"), Err(NO_KEYS));
    assert_eq!(rw("LMPOP x a LEFT"), Err(NO_KEYS));
    assert_eq!(rw("SINTERCARD -1 a"), Err(NO_KEYS));
}

#[test]
fn keys_pattern_is_confined() {
    assert_eq!(ok("KEYS *", ReplyFix::Keys), "KEYS acme:*");
    assert_eq!(ok("keys \\*", ReplyFix::Keys), "keys acme:\\*");
    assert_eq!(ok("KEYS [a-z]*", ReplyFix::Keys), "KEYS acme:[a-z]*");
    assert_eq!(ok("KEYS acme:*", ReplyFix::Keys), "KEYS acme:acme:*");
    let (out, fix) = rw_with("a*b[c]\\:", "KEYS *", Allowances::default()).expect("ok");
    assert_eq!((out.as_str(), fix), ("KEYS a\\*b\\[c\\]\\\\:*", ReplyFix::Keys));
}

#[test]
fn escape_glob_escapes_every_metacharacter() {
    assert_eq!(escape_glob(b"acme:"), b"acme:");
    assert_eq!(escape_glob(b""), b"");
    assert_eq!(escape_glob(b"a*b?c[d]e\\"), b"a\\*b\\?c\\[d\\]e\\\\");
    assert_eq!(escape_glob(b"^-!{}"), b"^-!{}");
}

#[test]
fn scan_match_is_added_or_confined() {
    let scan = ReplyFix::Scan;
    assert_eq!(ok("SCAN 0", scan), "SCAN 0 MATCH acme:*");
    assert_eq!(ok("SCAN 0 MATCH u:*", scan), "SCAN 0 MATCH acme:u:*");
    assert_eq!(ok("scan 0 match x count 10 type string", scan), "scan 0 match acme:x count 10 type string");
    assert_eq!(ok("SCAN 7 COUNT 10", scan), "SCAN 7 COUNT 10 MATCH acme:*");
    assert_eq!(ok("SCAN 0 TYPE hash", scan), "SCAN 0 TYPE hash MATCH acme:*");
    assert_eq!(ok("SCAN 0 COUNT 5 TYPE set MATCH a*", scan), "SCAN 0 COUNT 5 TYPE set MATCH acme:a*");
    assert_eq!(ok("SCAN 0 MATCH a MATCH b", scan), "SCAN 0 MATCH acme:a MATCH acme:b");
    assert_eq!(ok("SCAN 0 MaTcH *", scan), "SCAN 0 MaTcH acme:*");
    // Values are never taken for options: a COUNT of "match", a TYPE "match".
    assert_eq!(ok("SCAN 0 COUNT match MATCH x", scan), "SCAN 0 COUNT match MATCH acme:x");
    assert_eq!(ok("SCAN 0 TYPE match", scan), "SCAN 0 TYPE match MATCH acme:*");
    // A MATCH without its pattern: still confined (Redis refuses the request).
    assert_eq!(ok("SCAN 0 MATCH", scan), "SCAN 0 MATCH MATCH acme:*");
    let (out, _) = rw_with("p[", "SCAN 0 MATCH ]*", Allowances::default()).expect("ok");
    assert_eq!(out, "SCAN 0 MATCH p\\[]*");
}

#[test]
fn randomkey_retries_server_side_for_a_key_of_the_tenant() {
    let out = ok("RANDOMKEY", ReplyFix::RandomKey);
    assert!(out.starts_with("EVAL_RO for _ = 1, 1000 do") && out.ends_with(" 0 acme:"), "{out}");
}

#[test]
fn info_is_reduced_to_the_server_version() {
    assert_eq!(ok("INFO", ReplyFix::Info), "INFO server");
    assert_eq!(ok("info keyspace", ReplyFix::Info), "INFO server");
}

#[test]
fn sort_keys_are_prefixed_and_patterns_refused() {
    assert_eq!(ok("SORT k", ReplyFix::None), "SORT acme:k");
    assert_eq!(ok("SORT k STORE dst", ReplyFix::None), "SORT acme:k STORE acme:dst");
    assert_eq!(
        ok("sort k limit 0 10 alpha desc store d", ReplyFix::None),
        "sort acme:k limit 0 10 alpha desc store acme:d"
    );
    assert_eq!(ok("SORT_RO k ASC LIMIT 0 1", ReplyFix::None), "SORT_RO acme:k ASC LIMIT 0 1");
    // A destination literally named "by" or "get" is not the option.
    assert_eq!(ok("SORT k STORE by", ReplyFix::None), "SORT acme:k STORE acme:by");
    assert_eq!(ok("SORT k STORE get", ReplyFix::None), "SORT acme:k STORE acme:get");
    for line in [
        "SORT k BY w_*",
        "SORT k BY nosort",
        "sort k by w_*",
        "SORT k GET #",
        "sort k limit 0 1 get #",
        "SORT k LIMIT 0 1 ALPHA GeT h_*->f",
        "SORT k STORE d GET #",
        "SORT k DESC BY x",
        "SORT_RO k BY w_*",
        "sort_ro k get #",
        "SORT k nonsense GET #",
        "SORT k BY",
        "SORT k GET",
    ] {
        assert_eq!(rw(line), Err(SORT_PATTERNS), "{line}");
    }
}

#[test]
fn object_and_memory_on_a_key() {
    for sub in ["ENCODING", "freq", "IDLETIME", "RefCount"] {
        assert_eq!(ok(&format!("OBJECT {sub} k"), ReplyFix::None), format!("OBJECT {sub} acme:k"));
    }
    assert_eq!(ok("OBJECT HELP", ReplyFix::None), "OBJECT HELP");
    assert_eq!(ok("MEMORY USAGE k SAMPLES 5", ReplyFix::None), "MEMORY USAGE acme:k SAMPLES 5");
    assert_eq!(ok("memory help", ReplyFix::None), "memory help");
    for line in ["MEMORY STATS", "MEMORY DOCTOR", "MEMORY MALLOC-STATS", "MEMORY PURGE", "OBJECT", "MEMORY"] {
        assert_eq!(rw(line), Err(Refusal::NotAllowed), "{line}");
    }
    // Unknown subcommands of any container are refused: their keys are unknown.
    for line in ["OBJECT NOPE k", "MEMORY NOPE k", "XINFO NOPE k", "XGROUP NOPE k", "CLIENT NOPE", "PUBSUB NOPE"] {
        assert_eq!(rw(line), Err(Refusal::NotAllowed), "{line}");
    }
}

#[test]
fn scripts_only_when_allowed() {
    let cases = [
        ("EVAL s 2 a b argv", "EVAL s 2 acme:a acme:b argv"),
        ("eval return 0", "eval return 0"),
        ("EVAL s 0 a b", "EVAL s 0 a b"),
        ("EVALSHA sha 1 a acme:argv", "EVALSHA sha 1 acme:a acme:argv"),
        ("EVAL_RO s 1 a x", "EVAL_RO s 1 acme:a x"),
        ("EVALSHA_RO sha 2 a b", "EVALSHA_RO sha 2 acme:a acme:b"),
        ("FCALL f 1 k arg", "FCALL f 1 acme:k arg"),
        ("FCALL_RO f 2 k l arg", "FCALL_RO f 2 acme:k acme:l arg"),
    ];
    for (line, expected) in cases {
        assert_eq!(rw(line), Err(Refusal::NotAllowed), "{line}");
        assert_eq!(rw_with("acme:", line, SCRIPTS), Ok((expected.to_string(), ReplyFix::None)), "{line}");
    }
    assert_eq!(rw_with("acme:", "EVAL s 3 a", SCRIPTS), Err(NO_KEYS));
    assert_eq!(rw_with("acme:", "EVAL s x a", SCRIPTS), Err(NO_KEYS));
    // Script management stays refused even with scripts allowed.
    for line in ["SCRIPT LOAD s", "SCRIPT FLUSH", "SCRIPT KILL", "FUNCTION LOAD x", "FUNCTION LIST", "FUNCTION HELP"] {
        assert_eq!(rw_with("acme:", line, SCRIPTS), Err(Refusal::NotAllowed), "{line}");
    }
}

#[test]
fn dangerous_commands_are_refused() {
    for line in [
        "MIGRATE h 6379 k 0 1000",
        "MIGRATE h 6379 \"\" 0 1000 KEYS a b",
        "SELECT 1",
        "SWAPDB 0 1",
        "MOVE k 1",
        "CONFIG GET maxmemory",
        "CONFIG SET x y",
        "DEBUG OBJECT k",
        "DEBUG SLEEP 0",
        "MONITOR",
        "SHUTDOWN",
        "REPLICAOF no one",
        "SLAVEOF no one",
        "SYNC",
        "PSYNC ? -1",
        "ACL WHOAMI",
        "ACL SETUSER x",
        "MODULE LIST",
        "CLUSTER INFO",
        "CLUSTER GETKEYSINSLOT 1 10",
        "FAILOVER",
        "BGSAVE",
        "SAVE",
        "BGREWRITEAOF",
        "FLUSHDB",
        "FLUSHALL ASYNC",
        "DBSIZE",
        "CLIENT PAUSE 10",
        "CLIENT UNPAUSE",
        "CLIENT NO-EVICT on",
        "SCRIPT EXISTS x",
        "FUNCTION DELETE lib",
        "FUNCTION FLUSH",
        "FUNCTION DUMP",
        "FUNCTION STATS",
        "LATENCY LATEST",
        "LATENCY HELP",
        "SLOWLOG GET",
        "ROLE",
        "LASTSAVE",
        "RESTORE k 0 x",
        "RESTORE-ASKING k 0 x",
        "PFDEBUG GETREG k",
        "PFSELFTEST",
        "REPLCONF listening-port 1",
        "PUBSUB NUMPAT",
    ] {
        assert_eq!(rw(line), Err(Refusal::NotAllowed), "{line}");
        assert_eq!(rw_with("acme:", line, SCRIPTS), Err(Refusal::NotAllowed), "{line}");
    }
}

/// Every DANGEROUS entry of the table, bar those made safe, is refused
/// whatever its arguments.
#[test]
fn every_other_dangerous_entry_is_refused() {
    const SAFE: [&str; 20] = [
        "client list",
        "client kill",
        "client unblock",
        "keys",
        "info",
        "scan",
        "randomkey",
        "sort",
        "sort_ro",
        "object encoding",
        "object freq",
        "object idletime",
        "object refcount",
        "object help",
        "memory usage",
        "memory help",
        "eval",
        "evalsha",
        "eval_ro",
        "evalsha_ro",
    ];
    const SCRIPT_ONLY: [&str; 2] = ["fcall", "fcall_ro"];
    let mut refused = 0;
    for parent in all() {
        let entries: Vec<&Command> =
            if parent.subcommands.is_empty() { vec![parent] } else { parent.subcommands.iter().collect() };
        for cmd in entries {
            let name = if std::ptr::eq(parent, cmd) {
                parent.name.to_string()
            } else {
                format!("{} {}", parent.name, cmd.name)
            };
            let dangerous = cmd.flags.contains(Flags::DANGEROUS) || parent.flags.contains(Flags::DANGEROUS);
            let client_safe = parent.name == "client" && !cmd.flags.contains(Flags::DANGEROUS);
            if !dangerous || client_safe || SAFE.contains(&name.as_str()) || SCRIPT_ONLY.contains(&name.as_str()) {
                continue;
            }
            let line = format!("{name} k 1 k");
            assert_eq!(rw_with("acme:", &line, SCRIPTS), Err(Refusal::NotAllowed), "{line}");
            refused += 1;
        }
    }
    assert!(refused > 100, "{refused}");
}

#[test]
fn client_subcommands_follow_their_own_flags() {
    let none = ReplyFix::None;
    // Answered by the proxy for the tenant's own clients.
    assert_eq!(ok("CLIENT LIST", none), "CLIENT LIST");
    assert_eq!(ok("CLIENT KILL ID 1", none), "CLIENT KILL ID 1");
    assert_eq!(ok("CLIENT UNBLOCK 1", none), "CLIENT UNBLOCK 1");
    assert_eq!(ok("CLIENT ID", none), "CLIENT ID");
    assert_eq!(ok("CLIENT SETNAME app", none), "CLIENT SETNAME app");
    assert_eq!(ok("CLIENT SETINFO lib-name redis-py", none), "CLIENT SETINFO lib-name redis-py");
    assert_eq!(ok("CLIENT INFO", none), "CLIENT INFO");
    assert_eq!(ok("CLIENT TRACKING ON", none), "CLIENT TRACKING ON");
    assert_eq!(ok("CLIENT TRACKING on OPTIN NOLOOP", none), "CLIENT TRACKING on OPTIN NOLOOP");
    let beyond = Refusal::Form("CLIENT TRACKING with BCAST, PREFIX or REDIRECT is not allowed for tenants");
    for line in ["CLIENT TRACKING ON BCAST", "CLIENT TRACKING ON PREFIX x BCAST", "client tracking on redirect 5"] {
        assert_eq!(rw(line), Err(beyond.clone()), "{line}");
    }
}

#[test]
fn copy_stays_in_the_tenants_database() {
    let other = Refusal::Form("COPY with DB is not allowed for tenants (a tenant has one database)");
    for line in ["COPY a b DB 5", "copy a b replace db 1", "COPY a b db 0"] {
        assert_eq!(rw(line), Err(other.clone()), "{line}");
    }
}

#[test]
fn channels_are_prefixed_and_patterns_escaped() {
    let none = ReplyFix::None;
    assert_eq!(ok("SUBSCRIBE a b", none), "SUBSCRIBE acme:a acme:b");
    assert_eq!(ok("SSUBSCRIBE a", none), "SSUBSCRIBE acme:a");
    assert_eq!(ok("UNSUBSCRIBE a", none), "UNSUBSCRIBE acme:a");
    assert_eq!(ok("SUNSUBSCRIBE a b", none), "SUNSUBSCRIBE acme:a acme:b");
    assert_eq!(ok("UNSUBSCRIBE", none), "UNSUBSCRIBE");
    assert_eq!(ok("PUNSUBSCRIBE", none), "PUNSUBSCRIBE");
    assert_eq!(ok("SUNSUBSCRIBE", none), "SUNSUBSCRIBE");
    assert_eq!(ok("PSUBSCRIBE news.* x?", none), "PSUBSCRIBE acme:news.* acme:x?");
    assert_eq!(ok("PUNSUBSCRIBE news.*", none), "PUNSUBSCRIBE acme:news.*");
    assert_eq!(ok("PUBLISH ch ch", none), "PUBLISH acme:ch ch");
    assert_eq!(ok("SPUBLISH ch acme:msg", none), "SPUBLISH acme:ch acme:msg");
    assert_eq!(ok("SUBSCRIBE a*", none), "SUBSCRIBE acme:a*");
    let (out, _) = rw_with("t[1]*", "PSUBSCRIBE * SUBSCRIBE", Allowances::default()).expect("ok");
    assert_eq!(out, "PSUBSCRIBE t\\[1\\]\\** t\\[1\\]\\*SUBSCRIBE");
}

#[test]
fn pubsub_introspection() {
    assert_eq!(ok("PUBSUB CHANNELS", ReplyFix::Channels), "PUBSUB CHANNELS acme:*");
    assert_eq!(ok("PUBSUB CHANNELS n*", ReplyFix::Channels), "PUBSUB CHANNELS acme:n*");
    assert_eq!(ok("pubsub shardchannels", ReplyFix::Channels), "pubsub shardchannels acme:*");
    assert_eq!(ok("PUBSUB SHARDCHANNELS [ab]", ReplyFix::Channels), "PUBSUB SHARDCHANNELS acme:[ab]");
    assert_eq!(ok("PUBSUB NUMSUB a b", ReplyFix::NumSub), "PUBSUB NUMSUB acme:a acme:b");
    assert_eq!(ok("PUBSUB NUMSUB", ReplyFix::NumSub), "PUBSUB NUMSUB");
    assert_eq!(ok("PUBSUB SHARDNUMSUB a", ReplyFix::NumSub), "PUBSUB SHARDNUMSUB acme:a");
    assert_eq!(ok("PUBSUB HELP", ReplyFix::None), "PUBSUB HELP");
    assert_eq!(rw("PUBSUB NUMPAT"), Err(Refusal::NotAllowed));
    assert_eq!(rw("PUBSUB"), Err(Refusal::NotAllowed));
    let (out, _) = rw_with("a?", "PUBSUB CHANNELS", Allowances::default()).expect("ok");
    assert_eq!(out, "PUBSUB CHANNELS a\\?*");
}

/// RESTORE, for a tenant allowed it: the key prefixed, the options known,
/// the payload validated in full. RESTORE-ASKING, MIGRATE, DEBUG and MODULE
/// stay refused.
#[test]
fn restore_when_allowed_prefixes_the_key_and_checks_the_payload() {
    use crate::tenancy::dump::{crc64, DumpError};
    const RESTORE: Allowances = Allowances { scripts: false, restore: true };
    let mut payload = vec![0, 1, b'v', 11, 0];
    payload.extend_from_slice(&crc64(&payload).to_le_bytes());
    let request = |payload: &[u8], options: &[&str]| {
        let mut parts = vec![b"RESTORE".to_vec(), b"k".to_vec(), b"0".to_vec(), payload.to_vec()];
        parts.extend(options.iter().map(|o| o.as_bytes().to_vec()));
        rewrite_parts(b"acme:", &parts, RESTORE)
    };
    let (out, fix) = request(&payload, &["REPLACE", "absttl", "IDLETIME", "5"]).expect("allowed");
    assert_eq!(out[..4], [&b"RESTORE"[..], b"acme:k", b"0", &payload]);
    assert_eq!(fix, ReplyFix::None);
    assert!(request(&payload, &["FREQ", "3"]).is_ok());
    let parts = [&b"RESTORE"[..], b"k", b"0", &payload];
    assert_eq!(rewrite_parts(b"acme:", &parts, Allowances::default()), Err(Refusal::NotAllowed));
    assert_eq!(rewrite_parts(b"acme:", &parts, SCRIPTS), Err(Refusal::NotAllowed));

    let mut corrupt = payload.clone();
    corrupt[2] = b'w';
    assert_eq!(request(&corrupt, &[]), Err(Refusal::Payload(DumpError::Checksum)));
    assert_eq!(request(b"x", &[]), Err(Refusal::Payload(DumpError::TooShort)));
    let options = Refusal::Form("RESTORE options are REPLACE, ABSTTL, IDLETIME seconds and FREQ frequency");
    assert_eq!(request(&payload, &["BOGUS"]), Err(options.clone()));
    assert_eq!(request(&payload, &["REPLACE", "IDLETIME"]), Err(options));

    for line in ["RESTORE-ASKING k 0 x", "MIGRATE h 1 k 0 1", "DEBUG RELOAD", "MODULE LIST", "FUNCTION RESTORE x"] {
        assert_eq!(rw_with("acme:", line, RESTORE), Err(Refusal::NotAllowed), "{line}");
    }
}
