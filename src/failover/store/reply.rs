//! Encoding the store's replies exactly as Redis 7.0 writes them, in RESP2
//! and RESP3, and the error texts it uses.

use super::Doubles;
use crate::protocol::encode;
use crate::protocol::Proto;
use bytes::{BufMut, Bytes, BytesMut};

/// A command's reply; `Err` carries an encoded error reply so `?` can
/// return it early.
pub(super) type Reply = Result<Bytes, Bytes>;

pub(super) const WRONG_TYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";
pub(super) const NOT_INTEGER: &str = "ERR value is not an integer or out of range";
pub(super) const NOT_FLOAT: &str = "ERR value is not a valid float";
pub(super) const SYNTAX: &str = "ERR syntax error";
pub(super) const OVERFLOW: &str = "ERR increment or decrement would overflow";
pub(super) const NAN_OR_INF: &str = "ERR increment would produce NaN or Infinity";
pub(super) const OOM: &str = "OOM command not allowed when used memory > 'maxmemory'.";

/// An error reply with a fixed message.
pub(super) fn error(msg: &str) -> Bytes {
    encode::error(msg)
}

/// `Err` of an error reply, for `?`.
pub(super) fn fail<T>(msg: &str) -> Result<T, Bytes> {
    Err(error(msg))
}

/// An error reply whose text includes client bytes, cleaned as Redis'
/// `addReplyErrorFormat` does: cut at a NUL (C string), CR/LF trimmed at
/// the end and turned into spaces elsewhere.
pub(super) fn error_with(prefix: &str, arg: &[u8]) -> Bytes {
    let arg = &arg[..arg.iter().position(|&b| b == 0).unwrap_or(arg.len())];
    let mut text = prefix.as_bytes().to_vec();
    text.extend_from_slice(arg);
    while text.last().is_some_and(|b| matches!(b, b'\r' | b'\n')) {
        text.pop();
    }
    let mut out = BytesMut::with_capacity(text.len() + 3);
    out.put_u8(b'-');
    out.extend(text.iter().map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }));
    out.put_slice(b"\r\n");
    out.freeze()
}

/// `ERR wrong number of arguments for '<name>' command`.
pub(super) fn arity_error(name: &str) -> Bytes {
    error(&format!("ERR wrong number of arguments for '{name}' command"))
}

/// `+OK`.
pub(super) fn ok() -> Bytes {
    Bytes::from_static(encode::OK)
}

/// A status reply `+text`.
pub(super) fn status(text: &str) -> Bytes {
    Bytes::from(format!("+{text}\r\n"))
}

/// An integer reply.
pub(super) fn int(n: i64) -> Bytes {
    let mut out = BytesMut::with_capacity(24);
    encode::integer(&mut out, n);
    out.freeze()
}

/// A bulk string reply.
pub(super) fn bulk(data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(data.len() + 16);
    encode::bulk(&mut out, data);
    out.freeze()
}

/// A null: `$-1` in RESP2, `_` in RESP3.
pub(super) fn null(proto: Proto) -> Bytes {
    Bytes::from_static(match proto {
        Proto::Resp2 => b"$-1\r\n",
        Proto::Resp3 => b"_\r\n",
    })
}

/// A null array: `*-1` in RESP2, `_` in RESP3.
pub(super) fn null_array(proto: Proto) -> Bytes {
    Bytes::from_static(match proto {
        Proto::Resp2 => b"*-1\r\n",
        Proto::Resp3 => b"_\r\n",
    })
}

/// An empty array, `*0` in both protocols.
pub(super) fn empty_array() -> Bytes {
    Bytes::from_static(b"*0\r\n")
}

/// A double reply, printed as the server does.
pub(super) fn double(proto: Proto, doubles: Doubles, x: f64) -> Bytes {
    let mut out = Out::new(proto);
    out.double(doubles, x);
    out.finish()
}

/// A reply built piece by piece.
pub(super) struct Out {
    buf: BytesMut,
    proto: Proto,
}

impl Out {
    pub(super) fn new(proto: Proto) -> Out {
        Out { buf: BytesMut::new(), proto }
    }

    /// Array header of `n` elements.
    pub(super) fn array(&mut self, n: usize) -> &mut Out {
        encode::header(&mut self.buf, b'*', n);
        self
    }

    /// Set header (`~n` in RESP3, an array in RESP2).
    pub(super) fn set(&mut self, n: usize) -> &mut Out {
        let ty = if self.proto == Proto::Resp3 { b'~' } else { b'*' };
        encode::header(&mut self.buf, ty, n);
        self
    }

    /// Map header of `n` pairs (`%n` in RESP3, a flat array in RESP2).
    pub(super) fn map(&mut self, n: usize) -> &mut Out {
        encode::map_header(&mut self.buf, self.proto, n);
        self
    }

    pub(super) fn bulk(&mut self, data: &[u8]) -> &mut Out {
        encode::bulk(&mut self.buf, data);
        self
    }

    pub(super) fn null(&mut self) -> &mut Out {
        encode::null(&mut self.buf, self.proto);
        self
    }

    /// A double: `,x` in RESP3, a bulk string in RESP2, printed as the
    /// server does.
    pub(super) fn double(&mut self, doubles: Doubles, x: f64) -> &mut Out {
        let text = doubles.format(x);
        match self.proto {
            Proto::Resp2 => encode::bulk(&mut self.buf, text.as_bytes()),
            Proto::Resp3 => {
                self.buf.put_u8(b',');
                self.buf.put_slice(text.as_bytes());
                self.buf.put_slice(b"\r\n");
            }
        }
        self
    }

    pub(super) fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_with_client_bytes_are_cleaned_like_redis() {
        assert_eq!(&error_with("ERR Unsupported option ", b"a\r\nb\n")[..], b"-ERR Unsupported option a  b\r\n");
        assert_eq!(&error_with("ERR Unsupported option ", b"ab\0cd")[..], b"-ERR Unsupported option ab\r\n");
    }

    #[test]
    fn doubles_per_protocol() {
        assert_eq!(&double(Proto::Resp2, Doubles::Printf, 1.5)[..], b"$3\r\n1.5\r\n");
        assert_eq!(&double(Proto::Resp3, Doubles::Grisu, f64::INFINITY)[..], b",inf\r\n");
        assert_eq!(&double(Proto::Resp3, Doubles::Printf, 0.1)[..], b",0.10000000000000001\r\n");
        assert_eq!(&double(Proto::Resp3, Doubles::Grisu, 0.1)[..], b",0.1\r\n");
    }
}
