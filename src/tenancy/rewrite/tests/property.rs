//! Property-style checks, over random arguments for every entry of the
//! command table, that nothing a tenant sends escapes its prefix; and, with a
//! reference implementation of Redis' glob matcher, that an escaped prefix
//! confines any pattern written after it.
//!
//! Deterministic (fixed seeds of [`Rng`]), so a failure is reproducible.

use super::support::{decode, join, resolve, rewritten, Req, Rng};
use crate::commands::{all, key_indices, Command};
use crate::tenancy::rewrite::{escape_glob, Allowances};

/// Bytes random arguments are drawn from: glob metacharacters, hash tags,
/// separators, and the bytes of another tenant's prefix.
const ALPHABET: &[u8] = b"*?[]\\^-{}:globex:a1 \0\r\n\xff";

/// Words that steer the argument parsers (options, key counts, keywords).
const WORDS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "-1",
    "",
    "MATCH",
    "match",
    "COUNT",
    "TYPE",
    "STORE",
    "storedist",
    "STREAMS",
    "streams",
    "GROUP",
    "BLOCK",
    "NOACK",
    "BY",
    "get",
    "LIMIT",
    "KEYS",
    "AUTH",
    "AUTH2",
    "BCAST",
    "PREFIX",
    "REDIRECT",
    "ON",
    "WITHSCORES",
    "ENCODING",
    "globex:",
    "globex:*",
    "acme:",
    "acme:*",
    "*",
    "\\",
];

/// Prefixes the request properties run with: a plain one, and one made of
/// glob metacharacters.
const PREFIXES: [&[u8]; 2] = [b"acme:", b"a*[?]\\^-{x}:"];

/// Random requests tried per table entry and prefix.
const PER_ENTRY: usize = 24;

/// One random argument.
fn argument(rng: &mut Rng) -> Vec<u8> {
    match rng.below(8) {
        0..=2 => rng.pick(WORDS).as_bytes().to_vec(),
        3 => [&b"globex:"[..], &rng.bytes(ALPHABET, 4)].concat(),
        _ => rng.bytes(ALPHABET, 8),
    }
}

/// `name` in random ASCII case, as a client may send it.
fn any_case(rng: &mut Rng, name: &str) -> Vec<u8> {
    name.bytes().map(|b| if rng.below(2) == 0 { b.to_ascii_uppercase() } else { b }).collect()
}

/// Every table entry as (parent, subcommand or none).
fn entries() -> Vec<(&'static Command, Option<&'static Command>)> {
    let mut out = Vec::new();
    for parent in all() {
        out.push((parent, None));
        out.extend(parent.subcommands.iter().map(|sub| (parent, Some(sub))));
    }
    out
}

fn eq(a: &[u8], b: &str) -> bool {
    a.eq_ignore_ascii_case(b.as_bytes())
}

/// True when a SCAN request has a MATCH option as Redis reads options: in
/// (name, value) pairs from argument 2.
fn scan_has_match(parts: &[Vec<u8>]) -> bool {
    (3..parts.len()).step_by(2).any(|i| eq(&parts[i - 1], "match"))
}

/// How argument `i` of the original request must come out: preceded by the
/// prefix (a key or channel), by the escaped prefix (a pattern), or as sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Head {
    Prefix,
    Escaped,
    AsSent,
}

/// The head argument `i` must get, given the command (`path` is the lower-case "parent" or "parent sub") and
/// the key positions found by the command table.
fn expected_head(path: &str, parts: &[Vec<u8>], keys: &[usize], i: usize) -> Head {
    let pattern = match path {
        "keys" => i == 1,
        "scan" => i >= 3 && i % 2 == 1 && eq(&parts[i - 1], "match"),
        "psubscribe" | "punsubscribe" => i >= 1,
        "pubsub channels" | "pubsub shardchannels" => i >= 2,
        _ => false,
    };
    let channel = match path {
        "subscribe" | "unsubscribe" | "ssubscribe" | "sunsubscribe" => i >= 1,
        "publish" | "spublish" => i == 1,
        "pubsub numsub" | "pubsub shardnumsub" => i >= 2,
        _ => false,
    };
    if pattern {
        Head::Escaped
    } else if channel || keys.contains(&i) {
        Head::Prefix
    } else {
        Head::AsSent
    }
}

/// Commands the rewrite replaces by a request of its own (INFO by a fixed
/// section, RANDOMKEY by a script that retries upstream): what goes upstream
/// must not depend on the client's arguments at all.
const REPLACED: [&str; 2] = ["info", "randomkey"];

/// Checks one accepted request: `parts` as sent, `out` as rewritten.
fn check_rewritten(
    prefix: &[u8],
    allow: Allowances,
    parent: &Command,
    cmd: &Command,
    parts: &[Vec<u8>],
    out: &[Vec<u8>],
) {
    let escaped = escape_glob(prefix);
    let path =
        if std::ptr::eq(parent, cmd) { parent.name.to_string() } else { format!("{} {}", parent.name, cmd.name) };
    let shown = || format!("{path}: {:?} -> {:?}", join(parts), join(out));

    // Every key the table finds in what goes upstream carries the prefix.
    let (out_parent, out_cmd) = resolve(out);
    let out_req = Req::new(out);
    let mut keys = Vec::new();
    key_indices(out_cmd, &out_req.args(), &mut keys).unwrap_or_else(|e| panic!("{}: keys not found: {e}", shown()));
    for &k in &keys {
        assert!(out[k].starts_with(prefix), "key {k} unprefixed: {}", shown());
    }
    if REPLACED.contains(&path.as_str()) {
        let bare = Req::new(&[parent.name]);
        let fixed = rewritten(prefix, parent, parent, &bare.args(), allow).expect("the bare command is allowed");
        assert_eq!(out, decode(&fixed.request), "depends on the arguments: {}", shown());
        return;
    }
    assert!(std::ptr::eq(out_parent, parent) && std::ptr::eq(out_cmd, cmd), "command changed: {}", shown());

    // The keys are where they were in the request.
    let in_req = Req::new(parts);
    let mut keys_in = Vec::new();
    key_indices(cmd, &in_req.args(), &mut keys_in).unwrap_or_else(|e| panic!("{}: keys not found: {e}", shown()));
    assert_eq!(keys, keys_in, "key positions moved: {}", shown());

    // Patterns Redis reads are confined by the escaped prefix.
    let patterns: Vec<usize> = match path.as_str() {
        "keys" => (1..out.len().min(2)).collect(),
        "psubscribe" | "punsubscribe" => (1..out.len()).collect(),
        "pubsub channels" | "pubsub shardchannels" => (2..out.len()).collect(),
        "scan" => redis_scan_patterns(out),
        _ => Vec::new(),
    };
    for &p in &patterns {
        assert!(out[p].starts_with(&escaped), "pattern {p} unconfined: {}", shown());
    }

    // The shape: arguments added only where a pattern was missing.
    let added: Vec<Vec<u8>> = match path.as_str() {
        "scan" if !scan_has_match(parts) => vec![b"MATCH".to_vec(), [&escaped[..], b"*"].concat()],
        "pubsub channels" | "pubsub shardchannels" if parts.len() == 2 => vec![[&escaped[..], b"*"].concat()],
        _ => Vec::new(),
    };
    assert_eq!(out.len(), parts.len() + added.len(), "argument count: {}", shown());
    assert_eq!(&out[parts.len()..], &added[..], "added arguments: {}", shown());
    assert_eq!(out[0], parts[0], "command name: {}", shown());
    for (i, (sent, went)) in parts.iter().zip(out).enumerate().skip(1) {
        let want = match expected_head(&path, parts, &keys_in, i) {
            Head::Prefix => [prefix, sent].concat(),
            Head::Escaped => [&escaped[..], sent].concat(),
            Head::AsSent => sent.clone(),
        };
        assert_eq!(went, &want, "argument {i}: {}", shown());
    }
}

/// The MATCH patterns of a SCAN request Redis would run (it parses every
/// option, in pairs, and refuses the request on the first it cannot read).
/// Empty when Redis refuses it; otherwise at least one MATCH must be there.
fn redis_scan_patterns(out: &[Vec<u8>]) -> Vec<usize> {
    let mut i = 2;
    let mut patterns = Vec::new();
    while i < out.len() {
        let pair = out.len() - i >= 2;
        let word = &out[i];
        if pair && (eq(word, "match") || eq(word, "count") || eq(word, "type")) {
            if eq(word, "match") {
                patterns.push(i + 1);
            }
            i += 2;
        } else {
            return Vec::new();
        }
    }
    assert!(!patterns.is_empty(), "SCAN accepted by Redis without MATCH: {out:?}");
    patterns
}

#[test]
fn nothing_escapes_the_prefix_for_any_command() {
    let entries = entries();
    let mut rng = Rng::new(0x5eed_0001);
    let (mut tried, mut accepted) = (0usize, 0usize);
    for prefix in PREFIXES {
        for &(parent, sub) in &entries {
            for _ in 0..PER_ENTRY {
                let mut parts = vec![any_case(&mut rng, parent.name)];
                if let Some(sub) = sub {
                    parts.push(any_case(&mut rng, sub.name));
                }
                for _ in 0..rng.below(8) {
                    parts.push(argument(&mut rng));
                }
                let allow = Allowances { scripts: rng.below(2) == 0, restore: rng.below(2) == 0 };
                let (p, c) = resolve(&parts);
                let req = Req::new(&parts);
                tried += 1;
                if let Ok(rw) = rewritten(prefix, p, c, &req.args(), allow) {
                    accepted += 1;
                    check_rewritten(prefix, allow, p, c, &parts, &decode(&rw.request));
                }
            }
        }
    }
    println!("{tried} random requests over {} table entries, {accepted} accepted and checked", entries.len());
    assert!(accepted > tried / 4, "{accepted} of {tried}");
}

/// The same check over requests built to hit the pattern and channel forms
/// often: every option order of SCAN, pattern lists, PUBSUB.
#[test]
fn patterns_and_channels_are_always_confined() {
    const LINES: [&str; 9] = [
        "SCAN",
        "KEYS",
        "PSUBSCRIBE",
        "PUNSUBSCRIBE",
        "SUBSCRIBE",
        "SPUBLISH",
        "PUBSUB CHANNELS",
        "PUBSUB SHARDCHANNELS",
        "PUBSUB NUMSUB",
    ];
    const SCAN_WORDS: [&str; 6] = ["MATCH", "match", "COUNT", "TYPE", "0", "*"];
    let mut rng = Rng::new(0x5eed_0002);
    let mut checked = 0;
    for prefix in PREFIXES {
        for _ in 0..3000 {
            let mut parts: Vec<Vec<u8>> = rng.pick(&LINES).split(' ').map(|w| w.as_bytes().to_vec()).collect();
            for _ in 0..rng.below(7) {
                let word =
                    if rng.below(2) == 0 { rng.pick(&SCAN_WORDS).as_bytes().to_vec() } else { argument(&mut rng) };
                parts.push(word);
            }
            let (p, c) = resolve(&parts);
            let req = Req::new(&parts);
            let allow = Allowances::default();
            let rw = rewritten(prefix, p, c, &req.args(), allow).expect("pattern forms are allowed");
            check_rewritten(prefix, allow, p, c, &parts, &decode(&rw.request));
            checked += 1;
        }
    }
    println!("{checked} pattern and channel requests checked");
}

/// Redis' `stringmatchlen` (util.c), case-sensitive, as a reference: `*`,
/// `?`, `[…]` with `^` negation, ranges (either order, bytes compared as C
/// `char`, signed) and `\` escapes inside and outside classes; an unclosed
/// class ends at the end of the pattern. Reading past the end of the
/// pattern sees the NUL that ends an sds string.
fn redis_glob(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    glob_from(pattern, string, &mut skip_longer, 0)
}

fn glob_from(pattern: &[u8], string: &[u8], skip_longer: &mut bool, nesting: u32) -> bool {
    if nesting > 1000 {
        return false;
    }
    let at = |i: usize| pattern.get(i).copied().unwrap_or(0);
    let signed = |b: u8| i32::from(b as i8);
    let (mut p, mut plen) = (0usize, pattern.len());
    let (mut s, mut slen) = (0usize, string.len());
    while plen > 0 && slen > 0 {
        match at(p) {
            b'*' => {
                while plen > 0 && at(p + 1) == b'*' {
                    p += 1;
                    plen -= 1;
                }
                if plen == 1 {
                    return true;
                }
                while slen > 0 {
                    if glob_from(&pattern[p + 1..], &string[s..], skip_longer, nesting + 1) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                    slen -= 1;
                }
                *skip_longer = true;
                return false;
            }
            b'?' => {
                s += 1;
                slen -= 1;
            }
            b'[' => {
                p += 1;
                plen -= 1;
                let not = at(p) == b'^';
                if not {
                    p += 1;
                    plen -= 1;
                }
                let c = string[s];
                let mut matched = false;
                loop {
                    if at(p) == b'\\' && plen >= 2 {
                        p += 1;
                        plen -= 1;
                        matched |= at(p) == c;
                    } else if at(p) == b']' {
                        break;
                    } else if plen == 0 {
                        p -= 1;
                        plen += 1;
                        break;
                    } else if plen >= 3 && at(p + 1) == b'-' {
                        let (a, b) = (signed(at(p)), signed(at(p + 2)));
                        let (lo, hi) = (a.min(b), a.max(b));
                        p += 2;
                        plen -= 2;
                        matched |= (lo..=hi).contains(&signed(c));
                    } else {
                        matched |= at(p) == c;
                    }
                    p += 1;
                    plen -= 1;
                }
                if matched == not {
                    return false;
                }
                s += 1;
                slen -= 1;
            }
            b'\\' if plen >= 2 => {
                p += 1;
                plen -= 1;
                if at(p) != string[s] {
                    return false;
                }
                s += 1;
                slen -= 1;
            }
            other => {
                if other != string[s] {
                    return false;
                }
                s += 1;
                slen -= 1;
            }
        }
        p += 1;
        plen -= 1;
        if slen == 0 {
            while at(p) == b'*' {
                p += 1;
                plen -= 1;
            }
            break;
        }
    }
    plen == 0 && slen == 0
}

#[test]
fn reference_glob_follows_redis() {
    let cases: [(&str, &str, bool); 30] = [
        ("*", "anything", true),
        // Redis' own quirk: a lone `*` does not match the empty string
        // (KEYS special-cases it).
        ("*", "", false),
        ("", "", true),
        ("a*", "a", true),
        ("a**", "a", true),
        ("*a", "ba", true),
        ("*a", "ab", false),
        ("h?llo", "hello", true),
        ("h?llo", "hllo", false),
        ("h[ae]llo", "hallo", true),
        ("h[ae]llo", "hillo", false),
        ("h[^e]llo", "hallo", true),
        ("h[^e]llo", "hello", false),
        ("h[a-b]llo", "hbllo", true),
        ("h[b-a]llo", "hallo", true),
        ("h[a-b]llo", "hcllo", false),
        ("[a-]", "-", false),
        ("[a-]", "a", true),
        ("h\\*llo", "h*llo", true),
        ("h\\*llo", "hello", false),
        ("[\\]]", "]", true),
        ("[\\^x]", "^", true),
        ("[]", "]", false),
        ("[abc", "c", true),
        ("[abc", "ab", false),
        ("[^", "x", true),
        ("\\", "\\", true),
        ("a\\", "a\\", true),
        ("*\\*", "x*", true),
        ("*\\*", "x\\", false),
    ];
    for (pattern, string, want) in cases {
        assert_eq!(redis_glob(pattern.as_bytes(), string.as_bytes()), want, "{pattern:?} ~ {string:?}");
    }
}

/// Bytes for prefixes, patterns and strings: every glob metacharacter and a
/// few plain bytes, so near misses are frequent.
const GLOB_ALPHABET: &[u8] = b"*?[]\\^-:ab\xff";

/// A string that does not start with `prefix`, often a near miss: the prefix cut short, or with one byte changed,
/// then random bytes.
fn not_starting_with(rng: &mut Rng, prefix: &[u8]) -> Vec<u8> {
    loop {
        let mut s = match rng.below(3) {
            0 => prefix[..rng.below(prefix.len() + 1)].to_vec(),
            1 => {
                let mut s = prefix.to_vec();
                let i = rng.below(s.len());
                s[i] = *rng.pick(GLOB_ALPHABET);
                s
            }
            _ => Vec::new(),
        };
        s.extend(rng.bytes(GLOB_ALPHABET, 6));
        if !s.starts_with(prefix) {
            return s;
        }
    }
}

#[test]
fn escaped_prefix_matches_only_inside_the_prefix() {
    let mut rng = Rng::new(0x5eed_0003);
    let (mut cases, mut matched_inside) = (0, 0);
    for _ in 0..4000 {
        let prefix = [rng.bytes(GLOB_ALPHABET, 5), b":".to_vec()].concat();
        let escaped = escape_glob(&prefix);
        let tail = rng.bytes(GLOB_ALPHABET, 6);
        let pattern = [&escaped[..], &tail].concat();
        for _ in 0..8 {
            let outside = not_starting_with(&mut rng, &prefix);
            assert!(
                !redis_glob(&pattern, &outside),
                "{:?} matches {:?} outside prefix {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&outside),
                String::from_utf8_lossy(&prefix)
            );
            // Inside the prefix the tenant's pattern works as written (for a
            // non-empty rest; on the bare prefix, only a run of `*` matches).
            let rest = rng.bytes(GLOB_ALPHABET, 6);
            let inside = [&prefix[..], &rest].concat();
            let want = if rest.is_empty() { tail.iter().all(|&b| b == b'*') } else { redis_glob(&tail, &rest) };
            assert_eq!(
                redis_glob(&pattern, &inside),
                want,
                "{:?} ~ {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&inside)
            );
            matched_inside += usize::from(want);
            cases += 2;
        }
    }
    println!("{cases} glob cases checked ({matched_inside} matches inside the prefix)");
    assert!(matched_inside > 1000, "{matched_inside}");
}
