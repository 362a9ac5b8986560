//! Encoding the replies and requests the proxy writes itself.
//!
//! Constant replies are pre-encoded statics; the rest are small builders that
//! write straight into a `BytesMut` without an intermediate frame tree.

use super::Proto;
use bytes::{BufMut, Bytes, BytesMut};

pub const OK: &[u8] = b"+OK\r\n";
pub const RESET: &[u8] = b"+RESET\r\n";

/// An error reply: `-{msg}\r\n`, with CR/LF in `msg` replaced by spaces so a
/// message can never break framing.
pub fn error(msg: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(msg.len() + 3);
    out.put_u8(b'-');
    out.extend(msg.bytes().map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.put_slice(b"\r\n");
    out.freeze()
}

/// Writes an aggregate header (`*n`, `%n`) or a bulk length (`$n`).
pub fn header(out: &mut BytesMut, ty: u8, n: usize) {
    // One append (one capacity check) of the whole line: type, digits (20
    // at most), CRLF.
    let mut digits = itoa::Buffer::new();
    let digits = digits.format(n).as_bytes();
    let mut line = [0u8; 24];
    line[0] = ty;
    line[1..=digits.len()].copy_from_slice(digits);
    line[digits.len() + 1..digits.len() + 3].copy_from_slice(b"\r\n");
    out.put_slice(&line[..digits.len() + 3]);
}

/// Writes a bulk string.
pub fn bulk(out: &mut BytesMut, data: &[u8]) {
    header(out, b'$', data.len());
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Writes an integer reply.
pub fn integer(out: &mut BytesMut, n: i64) {
    out.put_u8(b':');
    out.put_slice(itoa::Buffer::new().format(n).as_bytes());
    out.put_slice(b"\r\n");
}

/// Writes a null in the client's protocol (`$-1` or `_`).
pub fn null(out: &mut BytesMut, proto: Proto) {
    out.put_slice(match proto {
        Proto::Resp2 => b"$-1\r\n",
        Proto::Resp3 => b"_\r\n",
    });
}

/// Writes a map header: a RESP3 map of `pairs` pairs, or in RESP2 a flat
/// array of twice as many elements.
pub fn map_header(out: &mut BytesMut, proto: Proto, pairs: usize) {
    match proto {
        Proto::Resp2 => header(out, b'*', pairs * 2),
        Proto::Resp3 => header(out, b'%', pairs),
    }
}

/// Encodes a request as a RESP multibulk.
pub fn command<'a>(out: &mut BytesMut, args: impl ExactSizeIterator<Item = &'a [u8]>) {
    header(out, b'*', args.len());
    for arg in args {
        bulk(out, arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders() {
        let mut out = BytesMut::new();
        command(&mut out, [&b"GET"[..], b"k"].into_iter());
        integer(&mut out, -3);
        null(&mut out, Proto::Resp2);
        null(&mut out, Proto::Resp3);
        map_header(&mut out, Proto::Resp2, 2);
        map_header(&mut out, Proto::Resp3, 2);
        assert_eq!(&out[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n:-3\r\n$-1\r\n_\r\n*4\r\n%2\r\n");
        assert_eq!(&error("ERR a\r\nb")[..], b"-ERR a  b\r\n");
        out.clear();
        header(&mut out, b'$', 0);
        header(&mut out, b'*', usize::MAX);
        assert_eq!(&out[..], format!("$0\r\n*{}\r\n", usize::MAX).as_bytes());
    }
}
