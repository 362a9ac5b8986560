//! Key extraction: turns a command's [`Keys`] description and the arguments
//! of one request into the argument positions of its keys.
//!
//! Plain commands describe their keys with a fixed range; the rest (EVAL,
//! ZUNIONSTORE, XREAD, SORT, MIGRATE, GEORADIUS, …) are found here by parsing
//! the arguments the way Redis does. Nothing here panics, whatever the input.

use super::{Command, Keys};
use crate::protocol::Args;
use std::ops::RangeInclusive;

/// Why the keys of a request could not be located.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// The key count is missing, not an integer, or negative.
    #[error("numkeys must be a non-negative integer")]
    BadNumKeys,
    /// The key count says there are more keys than arguments.
    #[error("numkeys exceeds the number of arguments")]
    NumKeysTooLarge,
    /// The arguments do not have the shape the command requires.
    #[error("syntax error")]
    Syntax,
}

/// Pushes the argument positions of every key of `cmd` (the resolved command
/// or subcommand entry) given `args` (`args[0]` = command name) into `out`
/// (cleared first), in argument order.
///
/// The plain range is inlined into callers; the parsed forms are not (their
/// code would make every caller's prologue heavier).
#[inline]
pub fn key_indices(cmd: &Command, args: &Args, out: &mut Vec<usize>) -> Result<(), KeyError> {
    out.clear();
    match plain_positions(cmd, args) {
        Some(positions) => {
            out.extend(positions);
            Ok(())
        }
        None => parsed(cmd, args, out),
    }
}

/// The key positions of a command whose table entry gives them (none, or a
/// plain range), in order; `None` when they must be parsed from the
/// arguments ([`key_indices`] does).
#[inline]
pub fn plain_positions(cmd: &Command, args: &Args) -> Option<std::iter::StepBy<RangeInclusive<usize>>> {
    let (first, last, step) = match cmd.keys {
        Keys::None => (1, 0, 1),
        Keys::Range { first, last, step } => match bounds(args.len(), first, last) {
            Some((first, last)) => (first, last, usize::from(step.max(1))),
            None => (1, 0, 1),
        },
        _ => return None,
    };
    Some((first..=last).step_by(step))
}

/// The position of the only key of a request; `None` when it has none,
/// several, or they cannot be located. `scratch` holds the positions of
/// keys the table does not give as a plain range.
#[inline]
pub fn only_key(cmd: &Command, args: &Args, scratch: &mut Vec<usize>) -> Option<usize> {
    if let Some(mut positions) = plain_positions(cmd, args) {
        let first = positions.next()?;
        return positions.next().is_none().then_some(first);
    }
    key_indices(cmd, args, scratch).ok()?;
    match scratch[..] {
        [only] => Some(only),
        _ => None,
    }
}

#[inline(never)]
fn parsed(cmd: &Command, args: &Args, out: &mut Vec<usize>) -> Result<(), KeyError> {
    match cmd.keys {
        Keys::None | Keys::Range { .. } => Ok(()),
        Keys::NumKeys { numkeys_at, fixed } => num_keys(args, numkeys_at, fixed, out),
        Keys::Streams => streams(args, out),
        Keys::Sort => {
            sort(args, out);
            Ok(())
        }
        Keys::Migrate => migrate(args, out),
        Keys::GeoRadius => {
            georadius(args, out);
            Ok(())
        }
    }
}

/// The first and last key positions of a range among `len` arguments;
/// `None` when it holds none.
#[inline]
fn bounds(len: usize, first: u8, last: i8) -> Option<(usize, usize)> {
    let first = usize::from(first);
    // -1 is the last argument: len - 1.
    let last =
        if last < 0 { len.checked_sub(usize::from(last.unsigned_abs()))? } else { usize::from(last.unsigned_abs()) };
    // A position past the end is not a key.
    let end = last.min(len.checked_sub(1)?);
    (first <= end).then_some((first, end))
}

/// A key count at `numkeys_at` followed by that many keys, plus the fixed
/// key (a destination) at `fixed`.
fn num_keys(args: &Args, numkeys_at: u8, fixed: Option<u8>, out: &mut Vec<usize>) -> Result<(), KeyError> {
    let at = usize::from(numkeys_at);
    let n = args.get(at).and_then(parse_count).ok_or(KeyError::BadNumKeys)?;
    let last = at.checked_add(n).ok_or(KeyError::NumKeysTooLarge)?;
    if last >= args.len() {
        return Err(KeyError::NumKeysTooLarge);
    }
    if let Some(fixed) = fixed.map(usize::from) {
        if fixed < args.len() {
            out.push(fixed);
        }
    }
    out.extend(at + 1..=last);
    Ok(())
}

/// Parses a non-negative decimal integer as Redis does: digits only, no sign,
/// no leading zeros (except "0" itself).
fn parse_count(arg: &[u8]) -> Option<usize> {
    match arg {
        [] => None,
        [b'0'] => Some(0),
        [b'0', ..] => None,
        _ => arg.iter().try_fold(0usize, |n, &b| {
            if b.is_ascii_digit() {
                n.checked_mul(10)?.checked_add(usize::from(b - b'0'))
            } else {
                None
            }
        }),
    }
}

/// XREAD / XREADGROUP: the options, then `STREAMS key… id…`.
fn streams(args: &Args, out: &mut Vec<usize>) -> Result<(), KeyError> {
    // Walk the options so that a group or consumer named "streams" is not
    // mistaken for the keyword.
    let mut i = 1;
    let streams_at = loop {
        let arg = args.get(i).ok_or(KeyError::Syntax)?;
        if arg.eq_ignore_ascii_case(b"streams") {
            break i;
        } else if arg.eq_ignore_ascii_case(b"count") || arg.eq_ignore_ascii_case(b"block") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"group") {
            i += 3;
        } else if arg.eq_ignore_ascii_case(b"noack") {
            i += 1;
        } else {
            return Err(KeyError::Syntax);
        }
    };
    let rest = args.len() - streams_at - 1;
    if rest == 0 || rest % 2 == 1 {
        return Err(KeyError::Syntax);
    }
    out.extend(streams_at + 1..=streams_at + rest / 2);
    Ok(())
}

/// SORT / SORT_RO: the key at 1 and the destination after every `STORE`.
fn sort(args: &Args, out: &mut Vec<usize>) {
    if args.len() < 2 {
        return;
    }
    out.push(1);
    let mut i = 2;
    while let Some(arg) = args.get(i) {
        if arg.eq_ignore_ascii_case(b"by") || arg.eq_ignore_ascii_case(b"get") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"limit") {
            i += 3;
        } else if arg.eq_ignore_ascii_case(b"store") {
            if i + 1 < args.len() {
                out.push(i + 1);
            }
            i += 2;
        } else {
            i += 1;
        }
    }
}

/// `MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH pw]
/// [AUTH2 user pw] [KEYS key…]`: the key at 3 unless empty, or those after
/// `KEYS` (which requires the key at 3 to be empty).
fn migrate(args: &Args, out: &mut Vec<usize>) -> Result<(), KeyError> {
    const KEY_AT: usize = 3;
    let single = args.get(KEY_AT).is_some_and(|key| !key.is_empty());
    let mut i = 6;
    while let Some(arg) = args.get(i) {
        if arg.eq_ignore_ascii_case(b"auth") {
            i += 2;
        } else if arg.eq_ignore_ascii_case(b"auth2") {
            i += 3;
        } else if arg.eq_ignore_ascii_case(b"keys") {
            if single {
                return Err(KeyError::Syntax);
            }
            out.extend(i + 1..args.len());
            return Ok(());
        } else {
            i += 1;
        }
    }
    if single {
        out.push(KEY_AT);
    }
    Ok(())
}

/// GEORADIUS key lon lat radius unit … / GEORADIUSBYMEMBER key member radius
/// unit …: the key at 1 and the destination after `STORE` / `STOREDIST`.
fn georadius(args: &Args, out: &mut Vec<usize>) {
    if args.len() < 2 {
        return;
    }
    out.push(1);
    // Options start after the unit at the earliest (GEORADIUSBYMEMBER), so a
    // member literally named "store" is never taken for the option.
    let mut i = 5;
    while let Some(arg) = args.get(i) {
        if (arg.eq_ignore_ascii_case(b"store") || arg.eq_ignore_ascii_case(b"storedist")) && i + 1 < args.len() {
            out.push(i + 1);
            i += 2;
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::{all, lookup};
    use std::ops::Range;

    /// Owned request arguments, viewable as [`Args`].
    struct Req {
        buf: Vec<u8>,
        ranges: Vec<Range<usize>>,
    }

    impl Req {
        fn new(parts: &[&[u8]]) -> Req {
            let mut buf = Vec::new();
            let mut ranges = Vec::new();
            for part in parts {
                let start = buf.len();
                buf.extend_from_slice(part);
                ranges.push(start..buf.len());
            }
            Req { buf, ranges }
        }

        fn args(&self) -> Args<'_> {
            Args::new(&self.buf, &self.ranges)
        }
    }

    fn parts(line: &str) -> Vec<&[u8]> {
        line.split_whitespace().map(str::as_bytes).collect()
    }

    /// Resolves the command (and subcommand, if the entry is a container)
    /// named by the request.
    fn resolve(req: &Req) -> &'static Command {
        let args = req.args();
        let (_, cmd) = lookup(args.get(0).unwrap()).expect("known command");
        if cmd.subcommands.is_empty() {
            cmd
        } else {
            cmd.subcommand(args.get(1).unwrap()).expect("known subcommand")
        }
    }

    fn keys_of_parts(parts: &[&[u8]]) -> Result<Vec<usize>, KeyError> {
        let req = Req::new(parts);
        let cmd = resolve(&req);
        let mut out = vec![42];
        let res = key_indices(cmd, &req.args(), &mut out);
        res.map(|()| out)
    }

    /// Key positions of a request written as space-separated words.
    fn keys(line: &str) -> Result<Vec<usize>, KeyError> {
        keys_of_parts(&parts(line))
    }

    #[test]
    fn range_commands() {
        assert_eq!(keys("GET k"), Ok(vec![1]));
        assert_eq!(keys("get k"), Ok(vec![1]));
        assert_eq!(keys("SET k v EX 10"), Ok(vec![1]));
        assert_eq!(keys("MSET a 1 b 2 c 3"), Ok(vec![1, 3, 5]));
        assert_eq!(keys("DEL a b c"), Ok(vec![1, 2, 3]));
        assert_eq!(keys("BLPOP a b 0"), Ok(vec![1, 2]));
        assert_eq!(keys("BLPOP a 0"), Ok(vec![1]));
        assert_eq!(keys("BRPOPLPUSH src dst 0"), Ok(vec![1, 2]));
        assert_eq!(keys("BITOP AND dst a b"), Ok(vec![2, 3, 4]));
        assert_eq!(keys("ZRANGESTORE dst src 0 -1"), Ok(vec![1, 2]));
        assert_eq!(keys("GEORADIUS_RO k 1 2 3 km"), Ok(vec![1]));
        assert_eq!(keys("PING"), Ok(vec![]));
        assert_eq!(keys("PUBLISH ch msg"), Ok(vec![]));
        assert_eq!(keys("SPUBLISH ch msg"), Ok(vec![]));
    }

    #[test]
    fn only_key_is_the_single_key_position_of_every_command() {
        for cmd in crate::commands::all() {
            for argc in 1..8 {
                let words: Vec<String> =
                    std::iter::once(cmd.name.to_string()).chain((1..argc).map(|i| i.to_string())).collect();
                let req = Req::new(&parts(&words.join(" ")));
                let mut found = Vec::new();
                let single = match key_indices(cmd, &req.args(), &mut found) {
                    Ok(()) if found.len() == 1 => Some(found[0]),
                    _ => None,
                };
                assert_eq!(only_key(cmd, &req.args(), &mut Vec::new()), single, "{} with {argc} arguments", cmd.name);
            }
        }
    }

    #[test]
    fn range_is_clamped_to_the_arguments() {
        // Too few arguments: no position past the end.
        assert_eq!(keys("GET"), Ok(vec![]));
        assert_eq!(keys("BLPOP"), Ok(vec![]));
        assert_eq!(keys("BLPOP 0"), Ok(vec![]));
        assert_eq!(keys("RENAME a"), Ok(vec![1]));
        assert_eq!(keys("MSET a"), Ok(vec![1]));
    }

    #[test]
    fn eval_and_fcall() {
        assert_eq!(keys("EVAL s 0"), Ok(vec![]));
        assert_eq!(keys("EVAL s 0 a b"), Ok(vec![]));
        assert_eq!(keys("EVAL s 2 a b c"), Ok(vec![3, 4]));
        assert_eq!(keys("EVALSHA sha 1 a"), Ok(vec![3]));
        assert_eq!(keys("EVAL_RO s 1 a"), Ok(vec![3]));
        assert_eq!(keys("EVALSHA_RO s 2 a b"), Ok(vec![3, 4]));
        assert_eq!(keys("FCALL f 2 a b arg"), Ok(vec![3, 4]));
        assert_eq!(keys("FCALL_RO f 0 arg"), Ok(vec![]));
        assert_eq!(keys("EVAL s 3 a b"), Err(KeyError::NumKeysTooLarge));
        assert_eq!(keys("EVAL s -1 a"), Err(KeyError::BadNumKeys));
        assert_eq!(keys("EVAL s x a"), Err(KeyError::BadNumKeys));
        assert_eq!(keys("EVAL s 1x a"), Err(KeyError::BadNumKeys));
        assert_eq!(keys("EVAL s +1 a"), Err(KeyError::BadNumKeys));
        assert_eq!(keys("EVAL s 01 a"), Err(KeyError::BadNumKeys));
        assert_eq!(keys_of_parts(&[b"EVAL", b"s", b""]), Err(KeyError::BadNumKeys));
        assert_eq!(keys("EVAL s"), Err(KeyError::BadNumKeys));
        assert_eq!(keys("EVAL s 99999999999999999999 a"), Err(KeyError::BadNumKeys));
        assert_eq!(keys(&format!("EVAL s {} a", usize::MAX)), Err(KeyError::NumKeysTooLarge));
        assert_eq!(keys("EVAL s 9999999 a"), Err(KeyError::NumKeysTooLarge));
    }

    #[test]
    fn numkeys_with_destination() {
        assert_eq!(keys("ZUNIONSTORE dst 2 a b WEIGHTS 1 2"), Ok(vec![1, 3, 4]));
        assert_eq!(keys("ZINTERSTORE dst 1 a"), Ok(vec![1, 3]));
        assert_eq!(keys("ZDIFFSTORE dst 2 a b"), Ok(vec![1, 3, 4]));
        assert_eq!(keys("ZUNIONSTORE dst 3 a b"), Err(KeyError::NumKeysTooLarge));
        assert_eq!(keys("ZUNIONSTORE dst"), Err(KeyError::BadNumKeys));
    }

    #[test]
    fn numkeys_first() {
        assert_eq!(keys("ZDIFF 2 a b WITHSCORES"), Ok(vec![2, 3]));
        assert_eq!(keys("ZUNION 1 a"), Ok(vec![2]));
        assert_eq!(keys("ZINTER 2 a b"), Ok(vec![2, 3]));
        assert_eq!(keys("ZINTERCARD 2 a b LIMIT 1"), Ok(vec![2, 3]));
        assert_eq!(keys("SINTERCARD 3 a b c"), Ok(vec![2, 3, 4]));
        assert_eq!(keys("SINTERCARD 3 a b"), Err(KeyError::NumKeysTooLarge));
        assert_eq!(keys("LMPOP 2 a b LEFT COUNT 2"), Ok(vec![2, 3]));
        assert_eq!(keys("ZMPOP 1 a MIN"), Ok(vec![2]));
        assert_eq!(keys("BLMPOP 0 2 a b LEFT"), Ok(vec![3, 4]));
        assert_eq!(keys("BZMPOP 1.5 1 a MAX COUNT 3"), Ok(vec![3]));
        assert_eq!(keys("BLMPOP 0 x a LEFT"), Err(KeyError::BadNumKeys));
    }

    #[test]
    fn xread() {
        assert_eq!(keys("XREAD STREAMS a b 0 0"), Ok(vec![2, 3]));
        assert_eq!(keys("XREAD COUNT 10 BLOCK 0 STREAMS a 0"), Ok(vec![6]));
        assert_eq!(keys("xread block 5 count 1 streams a b c 0 0 0"), Ok(vec![6, 7, 8]));
        // A stream literally named "streams".
        assert_eq!(keys("XREAD STREAMS streams 0"), Ok(vec![2]));
        assert_eq!(keys("XREAD STREAMS a b 0"), Err(KeyError::Syntax));
        assert_eq!(keys("XREAD STREAMS"), Err(KeyError::Syntax));
        assert_eq!(keys("XREAD COUNT 1 a 0"), Err(KeyError::Syntax));
        assert_eq!(keys("XREAD COUNT"), Err(KeyError::Syntax));
        assert_eq!(keys("XREAD"), Err(KeyError::Syntax));
    }

    #[test]
    fn xreadgroup() {
        assert_eq!(keys("XREADGROUP GROUP g c STREAMS a >"), Ok(vec![5]));
        assert_eq!(keys("XREADGROUP GROUP g c COUNT 1 BLOCK 0 NOACK STREAMS a b > >"), Ok(vec![10, 11]));
        // Group and consumer literally named "streams".
        assert_eq!(keys("XREADGROUP GROUP streams streams STREAMS a >"), Ok(vec![5]));
        assert_eq!(keys("XREADGROUP GROUP g c STREAMS a b >"), Err(KeyError::Syntax));
    }

    #[test]
    fn sort() {
        assert_eq!(keys("SORT k"), Ok(vec![1]));
        assert_eq!(keys("SORT k STORE dst"), Ok(vec![1, 3]));
        assert_eq!(keys("sort k by w_* limit 0 10 get # get h_* desc alpha store dst"), Ok(vec![1, 14]));
        // Patterns literally named "store" are not the option.
        assert_eq!(keys("SORT k BY store GET store LIMIT 0 1"), Ok(vec![1]));
        assert_eq!(keys("SORT k GET store STORE dst"), Ok(vec![1, 5]));
        assert_eq!(keys("SORT k STORE a STORE b"), Ok(vec![1, 3, 5]));
        // STORE without its argument: Redis rejects it, there is no key.
        assert_eq!(keys("SORT k STORE"), Ok(vec![1]));
        assert_eq!(keys("SORT_RO k BY w_* GET #"), Ok(vec![1]));
        assert_eq!(keys("SORT"), Ok(vec![]));
    }

    #[test]
    fn migrate() {
        assert_eq!(keys("MIGRATE h 6379 k 0 1000"), Ok(vec![3]));
        assert_eq!(keys("MIGRATE h 6379 k 0 1000 COPY REPLACE AUTH pw"), Ok(vec![3]));
        assert_eq!(
            keys_of_parts(&[
                b"MIGRATE", b"h", b"1", b"", b"0", b"10", b"REPLACE", b"AUTH2", b"u", b"keys", b"KEYS", b"a", b"b",
            ]),
            Ok(vec![11, 12])
        );
        assert_eq!(
            keys_of_parts(&[b"MIGRATE", b"h", b"1", b"", b"0", b"10", b"AUTH", b"KEYS", b"KEYS", b"a"]),
            Ok(vec![9])
        );
        assert_eq!(keys_of_parts(&[b"MIGRATE", b"h", b"1", b"", b"0", b"10", b"KEYS", b"a", b"b"]), Ok(vec![7, 8]));
        // Empty key and no KEYS: nothing to migrate.
        assert_eq!(keys_of_parts(&[b"MIGRATE", b"h", b"1", b"", b"0", b"10"]), Ok(vec![]));
        assert_eq!(keys("MIGRATE h 6379 k 0 1000 KEYS a b"), Err(KeyError::Syntax));
        assert_eq!(keys("MIGRATE h"), Ok(vec![]));
    }

    #[test]
    fn georadius() {
        assert_eq!(keys("GEORADIUS k 15 37 200 km"), Ok(vec![1]));
        assert_eq!(keys("GEORADIUS k 15 37 200 km WITHDIST STORE dst"), Ok(vec![1, 8]));
        assert_eq!(keys("GEORADIUS k 15 37 200 km COUNT 3 STOREDIST dst"), Ok(vec![1, 9]));
        assert_eq!(keys("GEORADIUSBYMEMBER k m 100 km STORE dst"), Ok(vec![1, 6]));
        assert_eq!(keys("georadiusbymember k m 100 km storedist dst"), Ok(vec![1, 6]));
        // A member literally named "store".
        assert_eq!(keys("GEORADIUSBYMEMBER k store 100 km"), Ok(vec![1]));
        assert_eq!(keys("GEORADIUS k 15 37 200 km STORE"), Ok(vec![1]));
        assert_eq!(keys("GEORADIUS"), Ok(vec![]));
    }

    #[test]
    fn subcommands() {
        assert_eq!(keys("OBJECT ENCODING k"), Ok(vec![2]));
        assert_eq!(keys("object freq k"), Ok(vec![2]));
        assert_eq!(keys("OBJECT HELP"), Ok(vec![]));
        assert_eq!(keys("MEMORY USAGE k SAMPLES 5"), Ok(vec![2]));
        assert_eq!(keys("XINFO STREAM k FULL"), Ok(vec![2]));
        assert_eq!(keys("XINFO GROUPS k"), Ok(vec![2]));
        assert_eq!(keys("XGROUP CREATE k g $ MKSTREAM"), Ok(vec![2]));
        assert_eq!(keys("XGROUP DESTROY k g"), Ok(vec![2]));
        assert_eq!(keys("CLIENT LIST"), Ok(vec![]));
        assert_eq!(keys("CONFIG GET maxmemory"), Ok(vec![]));

        let (_, object) = lookup(b"OBJECT").unwrap();
        assert_eq!(object.arity, -2);
        assert_eq!(object.keys, Keys::None);
        let encoding = object.subcommand(b"encoding").unwrap();
        assert_eq!(encoding.name, "encoding");
        assert_eq!(encoding.arity, 3);
        assert_eq!(encoding.keys, Keys::Range { first: 2, last: 2, step: 1 });
        assert!(object.subcommand(b"nope").is_none());
    }

    #[test]
    fn table_names_are_lower_case_sorted_and_unique() {
        fn check(cmds: &[Command], parent: &str) {
            for cmd in cmds {
                assert!(!cmd.name.is_empty(), "empty name under {parent:?}");
                assert!(!cmd.name.bytes().any(|b| b.is_ascii_uppercase()), "{parent} {} is not lower case", cmd.name);
                assert!(cmd.name.len() <= 32, "{} is too long", cmd.name);
                check(cmd.subcommands, cmd.name);
            }
            for pair in cmds.windows(2) {
                assert!(
                    pair[0].name < pair[1].name,
                    "{parent}: {} / {} unsorted or duplicate",
                    pair[0].name,
                    pair[1].name
                );
            }
        }
        check(all(), "");
        let mut names: Vec<&str> = all().iter().map(|c| c.name).collect();
        names.dedup();
        assert_eq!(names.len(), all().len());
        for (i, cmd) in all().iter().enumerate() {
            assert_eq!(lookup(cmd.name.as_bytes()).map(|(j, _)| j), Some(i));
            assert_eq!(lookup(cmd.name.to_ascii_uppercase().as_bytes()).map(|(j, _)| j), Some(i));
        }
    }

    #[test]
    fn table_shape() {
        fn check(cmds: &[Command], parent: Option<&str>) {
            for cmd in cmds {
                if let Keys::Range { first, step, .. } = cmd.keys {
                    assert!(first > 0, "{}: first must be > 0", cmd.name);
                    assert!(step > 0, "{}: step must be > 0", cmd.name);
                }
                if let Keys::NumKeys { numkeys_at, fixed } = cmd.keys {
                    assert!(numkeys_at > 0, "{}", cmd.name);
                    assert!(fixed.is_none_or(|f| f > 0 && f < numkeys_at), "{}", cmd.name);
                }
                assert_ne!(cmd.arity, 0, "{}", cmd.name);
                if parent.is_none() && !cmd.subcommands.is_empty() {
                    assert_eq!(cmd.keys, Keys::None, "{}", cmd.name);
                    assert!(cmd.arity < 0, "{}", cmd.name);
                }
                if parent.is_some() {
                    assert!(cmd.subcommands.is_empty(), "{}", cmd.name);
                    assert!(cmd.arity.abs() >= 2, "{}", cmd.name);
                }
                check(cmd.subcommands, Some(cmd.name));
            }
        }
        check(all(), None);
        assert!(all().len() > 230);
    }

    #[test]
    fn key_indices_never_panics() {
        const WORDS: [&[u8]; 7] = [b"x", b"-1", b"99999999999999999999", b"STREAMS", b"KEYS", b"STORE", b""];
        fn each_args(len: usize, f: &mut dyn FnMut(&[&[u8]])) {
            let mut idx = vec![0usize; len];
            loop {
                let parts: Vec<&[u8]> = idx.iter().map(|&i| WORDS[i]).collect();
                f(&parts);
                // Next combination, odometer style.
                let mut pos = 0;
                loop {
                    if pos == len {
                        return;
                    }
                    idx[pos] += 1;
                    if idx[pos] < WORDS.len() {
                        break;
                    }
                    idx[pos] = 0;
                    pos += 1;
                }
            }
        }
        let mut entries: Vec<&Command> = Vec::new();
        for cmd in all() {
            entries.push(cmd);
            entries.extend(cmd.subcommands.iter());
        }
        let mut out = Vec::new();
        for len in 0..=5 {
            each_args(len, &mut |parts| {
                let req = Req::new(parts);
                let args = req.args();
                for cmd in &entries {
                    if key_indices(cmd, &args, &mut out).is_ok() {
                        assert!(out.windows(2).all(|w| w[0] < w[1]), "{}: {out:?}", cmd.name);
                        assert!(out.iter().all(|&i| i > 0 && i < args.len()), "{}", cmd.name);
                    }
                }
            });
        }
    }

    #[test]
    fn errors_clear_nothing_stale() {
        let req = Req::new(&parts("EVAL s 5 a"));
        let (_, eval) = lookup(b"eval").unwrap();
        let mut out = vec![1, 2, 3];
        assert_eq!(key_indices(eval, &req.args(), &mut out), Err(KeyError::NumKeysTooLarge));
        assert!(out.is_empty());
    }

    #[test]
    fn handlers_and_flags() {
        use crate::commands::{Flags, Handler, Local, State, SubKind};
        let get = |name: &str| lookup(name.as_bytes()).unwrap().1;
        let sub = |name: &str, s: &str| get(name).subcommand(s.as_bytes()).unwrap();
        assert_eq!(get("quit").handler, Handler::Local(Local::Quit));
        assert_eq!(get("select").handler, Handler::Local(Local::Select));
        assert_eq!(sub("client", "id").handler, Handler::Local(Local::ClientId));
        assert_eq!(sub("client", "setinfo").handler, Handler::Local(Local::ClientSetInfo));
        assert_eq!(sub("client", "no-touch").handler, Handler::State(State::Session));
        assert_eq!(sub("client", "list").handler, Handler::Local(Local::ClientList));
        assert_eq!(sub("client", "pause").handler, Handler::Local(Local::ClientPause));
        assert_eq!(sub("client", "trackinginfo").handler, Handler::Forward);
        assert_eq!(get("readonly").handler, Handler::Local(Local::ClusterState));
        assert_eq!(sub("cluster", "slots").handler, Handler::Local(Local::ClusterView));
        use crate::commands::{Merge, Spread};
        assert_eq!(get("keys").spread, Spread::AllMasters(Merge::Concat));
        assert_eq!(sub("script", "load").spread, Spread::AllMasters(Merge::Same));
        assert_eq!(get("mget").spread, Spread::Keys(Merge::Values));
        assert_eq!(get("scan").spread, Spread::Cursor);
        assert_eq!(get("wait").spread, Spread::AllMasters(Merge::Min));
        assert_eq!(get("waitaof").spread, Spread::AllMasters(Merge::MinEach));
        assert_eq!(get("get").spread, Spread::One);
        assert_eq!(get("ssubscribe").handler, Handler::State(State::Subscribe(SubKind::Shard)));
        assert_eq!(get("punsubscribe").handler, Handler::State(State::Unsubscribe(SubKind::Pattern)));
        assert_eq!(get("psync").handler, Handler::Unsupported);
        assert_eq!(get("blpop").handler, Handler::Forward);

        assert!(get("get").flags.contains(Flags::READ));
        assert!(!get("get").flags.contains(Flags::WRITE));
        assert!(get("blmove").flags.contains(Flags::WRITE.with(Flags::BLOCKING)));
        assert!(get("waitaof").flags.contains(Flags::BLOCKING));
        assert!(get("xread").flags.contains(Flags::READ.with(Flags::MAY_BLOCK)));
        assert!(!get("xread").flags.contains(Flags::BLOCKING));
        assert!(get("eval").flags.contains(Flags::SCRIPT.with(Flags::DANGEROUS)));
        assert!(get("flushall").flags.contains(Flags::ADMIN.with(Flags::DANGEROUS)));
        assert!(get("subscribe").flags.contains(Flags::PUBSUB.with(Flags::CONN_STATE)));
        assert!(sub("config", "get").flags.contains(Flags::ADMIN));
        assert!(sub("cluster", "setslot").flags.contains(Flags::ADMIN));
        assert!(!sub("cluster", "info").flags.contains(Flags::ADMIN));
        assert_eq!(get("zrank").arity, -3);
        assert_eq!(get("command").arity, -1);
    }
}
