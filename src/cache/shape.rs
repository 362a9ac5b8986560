//! The *shape* of a cacheable read: everything its reply depends on besides
//! the key's value — protocol version, command, the other arguments. Two
//! reads with the same key and shape get byte-identical replies.

use crate::commands::Command;
use crate::protocol::{Args, Proto};

/// Writes the shape of `args` (a `cmd` whose key is at `key_index`) into
/// `out`: the table's lower-case name stands for however the client spelt it.
pub fn of(out: &mut Vec<u8>, proto: Proto, cmd: &Command, args: &Args, key_index: usize) {
    out.clear();
    out.push(proto.number() as u8);
    put(out, cmd.name.as_bytes());
    for (i, arg) in args.iter().enumerate() {
        if i != 0 && i != key_index {
            put(out, arg);
        }
    }
}

/// Appends one length-prefixed part.
fn put(out: &mut Vec<u8>, part: &[u8]) {
    out.extend_from_slice(&(part.len() as u32).to_le_bytes());
    out.extend_from_slice(part);
}

/// The shape of `GET key`, which MGET is cached as, one key at a time.
pub fn get(out: &mut Vec<u8>, proto: Proto) {
    of_parts(out, proto, &[b"get"]);
}

/// The shape of a read given as its lower-case name and its arguments
/// other than the key (`["lrange", "0", "-1"]`).
pub fn of_parts(out: &mut Vec<u8>, proto: Proto, parts: &[&[u8]]) {
    out.clear();
    out.push(proto.number() as u8);
    for part in parts {
        put(out, part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_of_the_name_does_not_matter_but_arguments_and_protocol_do() {
        let shape = |parts: &[&str], proto| {
            let (buf, ranges) = crate::protocol::laid_out(parts);
            let args = Args::new(&buf, &ranges);
            let (_, cmd) = crate::commands::lookup(args.get(0).unwrap_or_default()).expect("a known command");
            let mut out = Vec::new();
            of(&mut out, proto, cmd, &args, 1);
            out
        };
        assert_eq!(shape(&["GET", "k"], Proto::Resp2), shape(&["get", "other"], Proto::Resp2));
        assert_ne!(shape(&["GET", "k"], Proto::Resp2), shape(&["GET", "k"], Proto::Resp3));
        assert_ne!(shape(&["HGET", "k", "a"], Proto::Resp2), shape(&["HGET", "k", "b"], Proto::Resp2));
        assert_ne!(shape(&["HGET", "k", "ab"], Proto::Resp2), shape(&["HGET", "k", "a", "b"], Proto::Resp2));
        let mut get_shape = Vec::new();
        get(&mut get_shape, Proto::Resp3);
        assert_eq!(get_shape, shape(&["GET", "k"], Proto::Resp3));
    }
}
