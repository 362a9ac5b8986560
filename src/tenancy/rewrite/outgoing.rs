//! The rewritten request: a list of arguments, each an optional prefix
//! followed by the client's bytes, encoded once as a RESP multibulk. Nothing
//! is copied until the encoding, which records where each argument is so
//! the request need not be parsed again.

use super::{ReplyFix, Rewritten};
use crate::protocol::{encode, Args};
use bytes::{BufMut, BytesMut};
use std::ops::Range;

/// A rewritten request up to this size is encoded into the workspace's
/// buffer; a bigger one gets its own allocation, so a connection never
/// keeps more than [`CHUNK`] for rewriting.
const SMALL: usize = 512;

/// What the workspace's buffer grows by when a small request does not fit.
const CHUNK: usize = 2048;

/// What rewriting reuses from one request of a connection to the next:
/// room for key positions, the buffer small requests are encoded into
/// (each request is split off it; the allocation is reused once every
/// request split off it has been dropped), and the argument ranges of the
/// request last encoded.
#[derive(Default)]
pub struct Workspace {
    pub(super) keys: Vec<usize>,
    pub(super) out: Encoded,
}

/// Where requests are encoded, and the argument ranges of the last one.
#[derive(Default)]
pub(super) struct Encoded {
    buf: BytesMut,
    ranges: Vec<Range<usize>>,
}

impl Workspace {
    /// Room for key positions.
    pub fn keys(&mut self) -> &mut Vec<usize> {
        &mut self.keys
    }

    /// The argument ranges of the request last encoded, as
    /// `protocol::request::parse` gives them.
    pub fn ranges(&self) -> &[Range<usize>] {
        &self.out.ranges
    }

    /// Swaps the ranges of the request last encoded into `ranges`.
    pub fn take_ranges(&mut self, ranges: &mut Vec<Range<usize>>) {
        std::mem::swap(&mut self.out.ranges, ranges);
    }
}

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
    pub fn done(self, fix: ReplyFix, work: &mut Workspace) -> Rewritten {
        let size: usize = self.parts.iter().map(|(h, t)| h.len() + t.len()).sum();
        encode_parts(self.parts.len(), size, self.parts.into_iter(), fix, &mut work.out)
    }
}

/// Encodes a request of `count` arguments, each a head then a tail, `size`
/// bytes in all; its reply will need `fix`. Its argument ranges are left in
/// `out`.
pub(super) fn encode_parts<'a>(
    count: usize,
    size: usize,
    parts: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    fix: ReplyFix,
    out: &mut Encoded,
) -> Rewritten {
    // Headers: `*`/`$`, digits, CRLF; the data's CRLFs.
    let need = size + 16 * (count + 1);
    if need > SMALL {
        let mut own = BytesMut::with_capacity(need);
        write(&mut own, count, parts, &mut out.ranges);
        return Rewritten { request: own.freeze(), fix };
    }
    if out.buf.capacity() < need {
        out.buf.reserve(CHUNK);
    }
    write(&mut out.buf, count, parts, &mut out.ranges);
    Rewritten { request: out.buf.split().freeze(), fix }
}

/// Appends the multibulk to the empty `out`, the ranges of its arguments
/// to the cleared `ranges`.
fn write<'a>(
    out: &mut BytesMut,
    count: usize,
    parts: impl Iterator<Item = (&'a [u8], &'a [u8])>,
    ranges: &mut Vec<Range<usize>>,
) {
    ranges.clear();
    encode::header(out, b'*', count);
    for (head, tail) in parts {
        encode::header(out, b'$', head.len() + tail.len());
        let start = out.len();
        out.put_slice(head);
        out.put_slice(tail);
        ranges.push(start..out.len());
        out.put_slice(b"\r\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(key: &[u8], work: &mut Workspace) -> Rewritten {
        Outgoing::new(&[b"GET", key]).done(ReplyFix::None, work)
    }

    #[test]
    fn requests_kept_stay_intact_while_later_ones_are_encoded() {
        let mut work = Workspace::default();
        let kept: Vec<(String, Rewritten)> = (0..300)
            .map(|i| {
                let key = format!("key:{i}");
                let rw = get(key.as_bytes(), &mut work);
                assert_eq!(work.ranges(), [8..11, 17..17 + key.len()]);
                (key, rw)
            })
            .collect();
        for (key, rw) in kept {
            assert_eq!(rw.request, format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes());
        }
    }

    #[test]
    fn the_buffer_is_reused_once_its_requests_are_dropped() {
        let mut work = Workspace::default();
        let first = get(b"k", &mut work).request.as_ptr() as usize;
        for _ in 0..1000 {
            let at = get(b"k", &mut work).request.as_ptr() as usize;
            assert!((first..first + CHUNK).contains(&at), "a new allocation");
        }
    }

    #[test]
    fn a_big_request_gets_its_own_buffer() {
        let mut work = Workspace::default();
        let value = vec![b'v'; 4 * CHUNK];
        let rw = Outgoing::new(&[b"SET", b"k", &value]).done(ReplyFix::None, &mut work);
        assert_eq!(rw.request.len(), 4 * CHUNK + 29);
        assert_eq!(work.ranges()[2], 27..27 + value.len());
        assert_eq!(work.out.buf.capacity(), 0, "nothing kept for rewriting");
    }
}
