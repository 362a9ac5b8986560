//! Command-table key extraction (`commands::key_indices`).
//!
//! Input: the request's arguments, one per line (`\n`-separated; argument 0
//! is the command name), e.g. `zunionstore\ndst\n2\na\nb`.
//!
//! The command is resolved the way `server::route` does it (`lookup`, then
//! `Command::subcommand` for containers) and its keys extracted. So that
//! every key spec is reached whatever the name, the same arguments are also
//! run through every entry of the table (each top-level command and each
//! subcommand).
//!
//! Checked, besides "never panics": every index is < `args.len()` and not
//! 0 (the command name), indices are strictly increasing (argument order,
//! no duplicates), a command that blocks or not does not panic, and the
//! arity check agrees with the count.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use nearcache::commands::{all, key_indices, lookup, Command};
use nearcache::protocol::Args;

fn check(cmd: &Command, args: &Args, out: &mut Vec<usize>) {
    let _ = cmd.blocks(args);
    let _ = cmd.arity_ok(args.len());
    if key_indices(cmd, args, out).is_err() {
        return;
    }
    for (n, &i) in out.iter().enumerate() {
        assert!(i < args.len(), "{}: key index {i} with {} arguments ({out:?})", cmd.name, args.len());
        assert!(i > 0, "{}: the command name taken for a key ({out:?})", cmd.name);
        if n > 0 {
            assert!(out[n - 1] < i, "{}: key indices not in argument order: {out:?}", cmd.name);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let ranges = common::lines(data);
    let args = Args::new(data, &ranges);
    let mut out = Vec::new();

    // As the router resolves it.
    if let Some((index, parent)) = args.get(0).and_then(lookup) {
        assert!(std::ptr::eq(&all()[index], parent));
        check(parent.resolve(&args), &args, &mut out);
    }

    // Every key spec of the table on the same arguments.
    for parent in all() {
        check(parent, &args, &mut out);
        for sub in parent.subcommands {
            check(sub, &args, &mut out);
        }
    }
});
