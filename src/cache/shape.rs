//! The *shape* of a cacheable read: everything its reply depends on besides
//! the key's value — protocol version, command, the other arguments. Two
//! reads with the same key and shape get byte-identical replies.

use super::entry::split;
use crate::commands::Command;
use crate::protocol::{Args, Proto};

/// Writes the shape of `args` (a `cmd` whose key is at `key_index`) into
/// `out`: the table's lower-case name stands for however the client spelt it.
pub fn of(out: &mut Vec<u8>, proto: Proto, cmd: &Command, args: &Args, key_index: usize) {
    out.clear();
    out.push(proto.number() as u8);
    put(out, cmd.name.as_bytes());
    others(args, key_index).for_each(|arg| put(out, arg));
}

/// The arguments a shape holds: all but the command's name and the key.
fn others<'a, 'r>(args: &'r Args<'a>, key_index: usize) -> impl Iterator<Item = &'a [u8]> + 'r {
    (1..args.len()).filter(move |&i| i != key_index).filter_map(|i| args.get(i))
}

/// Whether `shape` is the shape of `args`, compared part by part (a memo hit
/// does not build the shape it looks for).
pub fn matches(shape: &[u8], proto: Proto, cmd: &Command, args: &Args, key_index: usize) -> bool {
    let Some((&number, rest)) = shape.split_first() else {
        return false;
    };
    let Some((name, mut rest)) = split(rest) else {
        return false;
    };
    if number != proto.number() as u8 || !same(name, cmd.name.as_bytes()) {
        return false;
    }
    for arg in others(args, key_index) {
        match split(rest) {
            Some((part, after)) if same(part, arg) => rest = after,
            _ => return false,
        }
    }
    rest.is_empty()
}

/// `a == b`, inlined: the parts compared are short, a `memcmp` call costs
/// more than the comparison.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
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

    #[test]
    fn a_shape_matches_exactly_the_reads_it_was_built_from() {
        let reads: [(&[&str], Proto); 7] = [
            (&["GET", "k"], Proto::Resp2),
            (&["GET", "k"], Proto::Resp3),
            (&["HGET", "k", "a"], Proto::Resp2),
            (&["HGET", "k", "b"], Proto::Resp2),
            (&["HGET", "k", "ab"], Proto::Resp2),
            (&["LRANGE", "k", "0", "-1"], Proto::Resp2),
            (&["LRANGE", "k", "0", "1"], Proto::Resp2),
        ];
        let laid: Vec<_> = reads.iter().map(|(parts, proto)| (crate::protocol::laid_out(parts), *proto)).collect();
        for ((buf, ranges), proto) in &laid {
            let args = Args::new(buf, ranges);
            let (_, cmd) = crate::commands::lookup(args.get(0).unwrap_or_default()).expect("a known command");
            let mut built = Vec::new();
            of(&mut built, *proto, cmd, &args, 1);
            for ((other_buf, other_ranges), other_proto) in &laid {
                let other = Args::new(other_buf, other_ranges);
                let (_, other_cmd) = crate::commands::lookup(other.get(0).unwrap_or_default()).expect("known");
                let mut other_built = Vec::new();
                of(&mut other_built, *other_proto, other_cmd, &other, 1);
                assert_eq!(matches(&built, *other_proto, other_cmd, &other, 1), built == other_built);
            }
        }
    }
}
