//! The rewritten request: a list of arguments, each an optional prefix
//! followed by the client's bytes, encoded once as a RESP multibulk. Nothing
//! is copied until the encoding.

use super::{ReplyFix, Rewritten};
use crate::protocol::{encode, Args};
use bytes::{BufMut, BytesMut};

/// Arguments of the request to send upstream.
pub(super) struct Outgoing<'a> {
    /// Each argument as `head` followed by `tail`.
    parts: Vec<(&'a [u8], &'a [u8])>,
}

impl<'a> Outgoing<'a> {
    /// Every argument of `args`, each preceded by what `head(i)` returns
    /// for its position (`None`: as sent).
    pub fn from_args(args: &Args<'a>, mut head: impl FnMut(usize) -> Option<&'a [u8]>) -> Outgoing<'a> {
        let parts = args.iter().enumerate().map(|(i, arg)| (head(i).unwrap_or_default(), arg)).collect();
        Outgoing { parts }
    }

    /// A request made of `words`, none prefixed.
    pub fn new(words: &[&'a [u8]]) -> Outgoing<'a> {
        Outgoing { parts: words.iter().map(|w| (&b""[..], *w)).collect() }
    }

    /// Appends an argument made of `head` then `tail`.
    pub fn push(&mut self, head: &'a [u8], tail: &'a [u8]) {
        self.parts.push((head, tail));
    }

    /// Encodes the request; its reply will need `fix`.
    pub fn done(self, fix: ReplyFix) -> Rewritten {
        let size: usize = self.parts.iter().map(|(h, t)| h.len() + t.len()).sum();
        encode_parts(self.parts.len(), size, self.parts.into_iter(), fix)
    }
}

/// Encodes a request of `count` arguments, each a head then a tail, `size`
/// bytes in all (the room the encoding needs is reserved once); its reply
/// will need `fix`.
pub(super) fn encode_parts<'a>(
    count: usize,
    size: usize,
    parts: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    fix: ReplyFix,
) -> Rewritten {
    let mut out = BytesMut::with_capacity(size + 16 * (count + 1));
    encode::header(&mut out, b'*', count);
    for (head, tail) in parts {
        encode::header(&mut out, b'$', head.len() + tail.len());
        out.put_slice(head);
        out.put_slice(tail);
        out.put_slice(b"\r\n");
    }
    Rewritten { request: out.freeze(), fix }
}
