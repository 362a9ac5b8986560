//! Looking inside the few replies whose structure the proxy needs: the
//! upstream's HELLO reply (decoded with the `redis-protocol` crate) and
//! pub/sub confirmations and messages (read by hand from their first
//! elements, without decoding the payload).

use super::request::{line_end, parse_int};
use super::Proto;
use redis_protocol::{resp2, resp3};

/// What the proxy reads of a HELLO reply.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Hello {
    /// The server's name (`redis`, `valkey`).
    pub server: Option<String>,
    /// The server's version.
    pub version: Option<String>,
    /// The connection's client id on the server (what `CLIENT ID` says).
    pub id: Option<i64>,
}

/// The fields of a HELLO reply the proxy uses, in either protocol.
pub fn hello(proto: Proto, reply: &[u8]) -> Hello {
    let pairs: Vec<(Vec<u8>, Vec<u8>)> = match proto {
        Proto::Resp2 => match resp2::decode::decode(reply).ok().flatten().map(|(f, _)| f) {
            Some(resp2::types::OwnedFrame::Array(items)) => {
                items.chunks(2).filter_map(|kv| Some((resp2_bytes(kv.first()?)?, resp2_bytes(kv.get(1)?)?))).collect()
            }
            _ => return Hello::default(),
        },
        Proto::Resp3 => match resp3::decode::complete::decode(reply).ok().flatten().map(|(f, _)| f) {
            Some(resp3::types::OwnedFrame::Map { data, .. }) => {
                data.into_iter().filter_map(|(k, v)| Some((resp3_bytes(k)?, resp3_bytes(v)?))).collect()
            }
            _ => return Hello::default(),
        },
    };
    let field =
        |name: &[u8]| pairs.iter().find(|(k, _)| k == name).and_then(|(_, v)| String::from_utf8(v.clone()).ok());
    Hello { server: field(b"server"), version: field(b"version"), id: field(b"id").and_then(|id| id.parse().ok()) }
}

fn resp2_bytes(frame: &resp2::types::OwnedFrame) -> Option<Vec<u8>> {
    match frame {
        resp2::types::OwnedFrame::BulkString(b) | resp2::types::OwnedFrame::SimpleString(b) => Some(b.clone()),
        resp2::types::OwnedFrame::Integer(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

fn resp3_bytes(frame: resp3::types::OwnedFrame) -> Option<Vec<u8>> {
    match frame {
        resp3::types::OwnedFrame::BlobString { data, .. } | resp3::types::OwnedFrame::SimpleString { data, .. } => {
            Some(data)
        }
        resp3::types::OwnedFrame::Number { data, .. } => Some(data.to_string().into_bytes()),
        _ => None,
    }
}

/// What a pub/sub frame from a subscribed connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSub {
    /// A (un)subscribe confirmation: the reply to one channel of a
    /// (un)subscribe command, with the subscriptions left after it.
    Confirmation { remaining: i64 },
    /// A published message (`message`, `pmessage`, `smessage`).
    Message,
    /// Neither: an ordinary reply (e.g. `pong` in RESP2 subscribed mode).
    Other,
}

/// Classifies an array (RESP2) or push (RESP3) frame by its first element.
pub fn pubsub(frame: &[u8]) -> PubSub {
    let Some((name, next)) = first_string(frame) else {
        return PubSub::Other;
    };
    match name.to_ascii_lowercase().as_slice() {
        b"message" | b"pmessage" | b"smessage" => PubSub::Message,
        b"subscribe" | b"psubscribe" | b"ssubscribe" | b"unsubscribe" | b"punsubscribe" | b"sunsubscribe" => {
            match remaining(&frame[next..]) {
                Some(remaining) => PubSub::Confirmation { remaining },
                None => PubSub::Other,
            }
        }
        _ => PubSub::Other,
    }
}

/// The first element of an array or push frame, when it is a string.
pub fn first_element(frame: &[u8]) -> Option<&[u8]> {
    first_string(frame).map(|(name, _)| name)
}

/// The channel a published message (`message`, `pmessage`, `smessage`)
/// came on.
pub fn pubsub_channel(frame: &[u8]) -> Option<&[u8]> {
    let (name, next) = first_string(frame)?;
    let at = match name.eq_ignore_ascii_case(b"pmessage") {
        // After the pattern.
        true => string_at(frame, next)?.1,
        false => next,
    };
    Some(string_at(frame, at)?.0)
}

/// The first element of an aggregate frame, if it is a bulk or simple
/// string, and the offset just past it.
fn first_string(frame: &[u8]) -> Option<(&[u8], usize)> {
    if !matches!(frame.first(), Some(b'*') | Some(b'>')) {
        return None;
    }
    let eol = line_end(frame, 1).ok()??;
    if parse_int(&frame[1..eol])? < 1 {
        return None;
    }
    string_at(frame, eol + 2)
}

/// A bulk or simple string at `pos`, and the offset just past it.
fn string_at(frame: &[u8], pos: usize) -> Option<(&[u8], usize)> {
    let eol = line_end(frame, pos + 1).ok()??;
    match frame.get(pos)? {
        b'+' => Some((&frame[pos + 1..eol], eol + 2)),
        b'$' => {
            let len = usize::try_from(parse_int(&frame[pos + 1..eol])?).ok()?;
            let data = frame.get(eol + 2..eol + 2 + len)?;
            Some((data, eol + 4 + len))
        }
        _ => None,
    }
}

/// Skips a confirmation's channel (a string, or a null when unsubscribing
/// from nothing) and reads the subscription count after it.
fn remaining(rest: &[u8]) -> Option<i64> {
    let skip = if rest.starts_with(b"_\r\n") {
        3
    } else if rest.starts_with(b"$-1\r\n") {
        5
    } else {
        string_at(rest, 0)?.1
    };
    let rest = rest.get(skip..)?;
    if rest.first() != Some(&b':') {
        return None;
    }
    parse_int(&rest[1..line_end(rest, 1).ok()??])
}

/// An invalidation message of RESP3 client-side tracking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// These keys changed.
    Keys(Vec<bytes::Bytes>),
    /// Everything may have changed (FLUSHALL, FLUSHDB).
    All,
}

/// Parses `>2 invalidate [keys…]` or `>2 invalidate _`; `None` for any
/// other frame.
pub fn invalidation(frame: &bytes::Bytes) -> Option<Invalidation> {
    if frame.first() != Some(&b'>') {
        return None;
    }
    let (name, next) = first_string(frame)?;
    if !name.eq_ignore_ascii_case(b"invalidate") {
        return None;
    }
    let rest = &frame[next..];
    if rest.starts_with(b"_\r\n") || rest.starts_with(b"*-1\r\n") {
        return Some(Invalidation::All);
    }
    if rest.first() != Some(&b'*') {
        return None;
    }
    let eol = line_end(rest, 1).ok()??;
    let count = usize::try_from(parse_int(&rest[1..eol])?).ok()?;
    let mut keys = Vec::with_capacity(count.min(1024));
    let mut pos = next + eol + 2;
    for _ in 0..count {
        let (key, after) = string_at(frame, pos)?;
        keys.push(frame.slice_ref(key));
        pos = after;
    }
    Some(Invalidation::Keys(keys))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_fields() {
        let r2 = b"*6\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$2\r\nid\r\n:42\r\n";
        let want = Hello { server: Some("redis".into()), version: Some("7.0.15".into()), id: Some(42) };
        assert_eq!(hello(Proto::Resp2, r2), want);
        let r3 = b"%3\r\n$6\r\nserver\r\n$6\r\nvalkey\r\n$7\r\nversion\r\n$5\r\n8.0.1\r\n$2\r\nid\r\n:7\r\n";
        let want = Hello { server: Some("valkey".into()), version: Some("8.0.1".into()), id: Some(7) };
        assert_eq!(hello(Proto::Resp3, r3), want);
        assert_eq!(hello(Proto::Resp2, b"-ERR unknown\r\n"), Hello::default());
    }

    #[test]
    fn invalidations() {
        let keys = bytes::Bytes::from_static(b">2\r\n$10\r\ninvalidate\r\n*2\r\n$1\r\na\r\n$3\r\nb:c\r\n");
        assert_eq!(
            invalidation(&keys),
            Some(Invalidation::Keys(vec![bytes::Bytes::from_static(b"a"), bytes::Bytes::from_static(b"b:c")]))
        );
        let all = bytes::Bytes::from_static(b">2\r\n$10\r\ninvalidate\r\n_\r\n");
        assert_eq!(invalidation(&all), Some(Invalidation::All));
        let message = bytes::Bytes::from_static(b">3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$1\r\nx\r\n");
        assert_eq!(invalidation(&message), None);
        assert_eq!(invalidation(&bytes::Bytes::from_static(b"+PONG\r\n")), None);
    }

    #[test]
    fn pubsub_frames() {
        let confirmed = |remaining| PubSub::Confirmation { remaining };
        assert_eq!(pubsub(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:2\r\n"), confirmed(2));
        assert_eq!(pubsub(b">3\r\n$11\r\nunsubscribe\r\n_\r\n:0\r\n"), confirmed(0));
        assert_eq!(pubsub(b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"), confirmed(0));
        assert_eq!(pubsub(b">3\r\n+PSUBSCRIBE\r\n$1\r\np\r\n:1\r\n"), confirmed(1));
        assert_eq!(pubsub(b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$1\r\nx\r\n"), PubSub::Message);
        assert_eq!(pubsub(b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"), PubSub::Other);
        assert_eq!(pubsub(b"+PONG\r\n"), PubSub::Other);
        assert_eq!(pubsub(b"*3\r\n$99\r\nsubscribe\r\n"), PubSub::Other);
    }
}
