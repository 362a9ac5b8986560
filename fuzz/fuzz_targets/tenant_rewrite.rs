//! Tenant rewriting (`tenancy::rewrite`): requests confined to a prefix,
//! replies and pushed frames stripped of it.
//!
//! Input: one control byte, then the tenant's prefix up to the first `\n`
//! (empty: `acme:`), then the rest.
//! - control bits 0-1: 0 = a request (the rest: its arguments, one per
//!   line), 1 = a request for a table entry chosen by index (the rest: two
//!   bytes of index, then the arguments after the command and subcommand
//!   names, one per line), 2 = a reply (the rest: the reply's bytes), 3 = a
//!   pushed frame and an EXEC reply (the rest: the frame's bytes);
//! - bit 2: scripts allowed; bit 3: RESP3; bits 4-7: which `ReplyFix`.
//!
//! Checked, besides "never panics":
//! - requests: the command is resolved as the session's gate does; a
//!   rewrite that is accepted is exactly one RESP multibulk that parses
//!   back whole; every key the command table finds in it (`key_indices` on
//!   the re-parsed request) starts with the prefix; unless the command is
//!   replaced by one of the proxy's own (INFO, RANDOMKEY), the command
//!   resolves to the same table entry, keeps its name as sent and its keys
//!   stay at the same positions;
//! - replies, pushed frames, EXEC replies: when the input is one complete
//!   frame (as the upstream scanner delimits it), so is the output, since
//!   it is written to the client as it is.
#![no_main]

use bytes::Bytes;
mod common;

use common::lines;
use libfuzzer_sys::fuzz_target;
use nearcache::commands::{all, key_indices, lookup, Command};
use nearcache::protocol::request::{parse, Limits, Parsed};
use nearcache::protocol::scan::Scanner;
use nearcache::protocol::{Args, Proto};
use nearcache::tenancy::rewrite::{exec_reply, pushed, reply, request, Allowances, ReplyFix, Workspace};

/// Commands the rewrite replaces by a request of its own.
const REPLACED: [&str; 2] = ["info", "randomkey"];

/// (parent, cmd) as `server::tenant::gate` resolves them.
fn resolve(args: &Args) -> Option<(&'static Command, &'static Command)> {
    let (_, parent) = lookup(args.get(0)?)?;
    Some((parent, parent.resolve(args)))
}

fn check_request(prefix: &[u8], allow: Allowances, data: &[u8]) {
    let ranges = lines(data);
    let args = Args::new(data, &ranges);
    let Some((parent, cmd)) = resolve(&args) else {
        return;
    };
    let mut work = Workspace::default();
    let Ok(rw) = request(prefix, parent, cmd, &args, allow, &mut work) else {
        return;
    };
    let shown = || {
        format!(
            "{:?} -> {:?}",
            args.iter().map(String::from_utf8_lossy).collect::<Vec<_>>(),
            String::from_utf8_lossy(&rw.request)
        )
    };

    // One complete multibulk, parsed as the session re-parses it.
    let (mut out_ranges, mut inline) = (Vec::new(), Vec::new());
    let parsed = parse(&rw.request, &Limits::default(), &mut out_ranges, &mut inline);
    assert_eq!(parsed, Ok(Parsed::Multibulk { len: rw.request.len() }), "not one multibulk: {}", shown());
    assert_eq!(work.ranges(), &out_ranges[..], "argument ranges recorded wrong: {}", shown());
    let out = Args::new(&rw.request, &out_ranges);

    // Every key of what goes upstream carries the prefix.
    let (out_parent, out_cmd) = resolve(&out).unwrap_or_else(|| panic!("unknown command: {}", shown()));
    let mut keys = Vec::new();
    key_indices(out_cmd, &out, &mut keys).unwrap_or_else(|e| panic!("keys not found ({e}): {}", shown()));
    for &k in &keys {
        let key = out.get(k).unwrap_or_else(|| panic!("key index {k} out of range: {}", shown()));
        assert!(key.starts_with(prefix), "key {k} unprefixed: {}", shown());
    }
    if REPLACED.contains(&parent.name) {
        return;
    }

    // The same command, as sent, with its keys where they were.
    assert!(std::ptr::eq(out_parent, parent) && std::ptr::eq(out_cmd, cmd), "command changed: {}", shown());
    assert_eq!(out.get(0), args.get(0), "command name changed: {}", shown());
    assert!(out.len() >= args.len(), "arguments lost: {}", shown());
    let mut keys_in = Vec::new();
    key_indices(cmd, &args, &mut keys_in).unwrap_or_else(|e| panic!("accepted without keys ({e}): {}", shown()));
    assert_eq!(keys, keys_in, "key positions moved: {}", shown());
}

/// A request for table entry `index` (every top-level command, then every
/// subcommand, in table order), its names in upper case, followed by the
/// lines of `rest`.
fn by_index(index: usize, rest: &[u8]) -> Vec<u8> {
    let entries = all().len() + all().iter().map(|c| c.subcommands.len()).sum::<usize>();
    let mut i = index % entries;
    let mut names = Vec::new();
    if let Some(parent) = all().get(i) {
        names.push(parent.name);
    } else {
        i -= all().len();
        for parent in all() {
            if let Some(sub) = parent.subcommands.get(i) {
                names.extend([parent.name, sub.name]);
                break;
            }
            i -= parent.subcommands.len();
        }
    }
    let mut data = names.join("\n").to_ascii_uppercase().into_bytes();
    if !rest.is_empty() {
        data.push(b'\n');
        data.extend_from_slice(rest);
    }
    data
}

/// True when `frame` is exactly one complete frame.
fn one_frame(frame: &[u8]) -> bool {
    Scanner::default().next_frame(frame) == Ok(Some(frame.len()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (prefix, body) = match rest.iter().position(|&b| b == b'\n') {
        Some(nl) => (&rest[..nl], &rest[nl + 1..]),
        None => (rest, &[][..]),
    };
    let prefix: &[u8] = if prefix.is_empty() { b"acme:" } else { prefix };
    let allow = Allowances { scripts: control & 4 != 0, restore: control & 4 != 0 };
    let proto = if control & 8 != 0 { Proto::Resp3 } else { Proto::Resp2 };
    let fix = ReplyFix::ALL[usize::from(control >> 4) % ReplyFix::ALL.len()];
    match control & 3 {
        0 => check_request(prefix, allow, body),
        1 => {
            if let [hi, lo, rest @ ..] = body {
                let data = by_index(usize::from(*hi) << 8 | usize::from(*lo), rest);
                check_request(prefix, allow, &data);
            }
        }
        2 => {
            let out = reply(prefix, fix, proto, body);
            if one_frame(body) {
                assert!(one_frame(&out), "{fix:?} reply {:?} became {:?}", Bytes::copy_from_slice(body), out);
            }
        }
        _ => {
            let out = pushed(prefix, body);
            if one_frame(body) {
                assert!(one_frame(&out), "pushed {:?} became {:?}", Bytes::copy_from_slice(body), out);
            }
            let fixes: Vec<ReplyFix> =
                (0..8).map(|i| ReplyFix::ALL[(usize::from(control >> 4) + i) % ReplyFix::ALL.len()]).collect();
            let out = exec_reply(prefix, &fixes, proto, body);
            if one_frame(body) {
                assert!(
                    one_frame(&out),
                    "EXEC reply {:?} with {fixes:?} became {:?}",
                    Bytes::copy_from_slice(body),
                    out
                );
            }
        }
    }
});
