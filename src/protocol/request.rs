//! Client request parsing: RESP multibulk (`*N\r\n$len\r\n…`) and inline
//! commands (what telnet sends), into argument ranges over the read buffer.
//!
//! Limits are checked from headers before any data is buffered for them, so
//! an oversized bulk or multibulk is refused without allocating it.

use super::ProtocolError;
use std::ops::Range;

/// Limits on what a client may send.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest accepted bulk string (`proto_max_bulk_len`).
    pub max_bulk_len: usize,
    /// Most arguments in one request (`max_multibulk_len`).
    pub max_multibulk_len: usize,
    /// Longest inline command line.
    pub max_inline_len: usize,
    /// Largest multibulk request, in bytes (a tenant's `max_request_bytes`).
    pub max_request_len: usize,
    /// The client has not authenticated: the limits are Redis' own for
    /// such clients, and so are the errors.
    pub unauthenticated: bool,
}

impl Limits {
    /// What a client that has not authenticated may send, as in Redis 7:
    /// at most 10 arguments of at most 16 KiB each, so that whatever such
    /// clients send, the proxy buffers little for them.
    pub const UNAUTHENTICATED: Limits = Limits {
        max_bulk_len: 16 * 1024,
        max_multibulk_len: 10,
        max_inline_len: 16 * 1024,
        max_request_len: usize::MAX,
        unauthenticated: true,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk_len: 512 * 1024 * 1024,
            max_multibulk_len: 1024 * 1024,
            max_inline_len: 64 * 1024,
            max_request_len: usize::MAX,
            unauthenticated: false,
        }
    }
}

/// Result of looking at the front of the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A complete multibulk request of `len` bytes; its arguments were
    /// written to the `args` vector as ranges into the buffer.
    Multibulk { len: usize },
    /// A complete inline request of `len` bytes; its arguments were written
    /// to the `inline` vector (unquoted, so they are owned).
    Inline { len: usize },
    /// An empty line or `*0`: consumed and ignored, as Redis does.
    Empty { len: usize },
    /// More bytes are needed; at least `hint` in total if known.
    Incomplete { hint: usize },
}

/// Parses one request from the front of `buf`.
pub fn parse(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
    inline: &mut Vec<Vec<u8>>,
) -> Result<Parsed, ProtocolError> {
    args.clear();
    match buf.first() {
        None => Ok(Parsed::Incomplete { hint: 0 }),
        Some(b'*') => parse_multibulk(buf, limits, args),
        Some(_) => parse_inline(buf, limits, inline),
    }
}

/// Finds the end of a header line starting at `from`: the index of its
/// `\r`, `None` when the line is not complete yet.
pub(super) fn line_end(buf: &[u8], from: usize) -> Result<Option<usize>, ProtocolError> {
    let Some(p) = buf.get(from..).and_then(|b| b.iter().position(|&c| c == b'\r')) else {
        return Ok(None);
    };
    let cr = from + p;
    match buf.get(cr + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some(cr)),
        Some(_) => Err(ProtocolError::Header),
    }
}

/// Parses a decimal integer as Redis does (optional '-', digits only).
pub fn parse_int(digits: &[u8]) -> Option<i64> {
    let (neg, digits) = match digits.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, digits),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    // 19 decimal digits always fit a u64; the i64 range is checked after.
    let mut n: u64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        n = n * 10 + u64::from(d - b'0');
    }
    let n = i64::try_from(n).ok()?;
    Some(if neg { -n } else { n })
}

fn parse_multibulk(buf: &[u8], limits: &Limits, args: &mut Vec<Range<usize>>) -> Result<Parsed, ProtocolError> {
    let Some((count, mut pos)) = read_len(buf, 1, ProtocolError::MultibulkLength)? else {
        return Ok(Parsed::Incomplete { hint: 0 });
    };
    if count > limits.max_multibulk_len as i64 {
        return Err(if limits.unauthenticated {
            ProtocolError::UnauthenticatedMultibulk
        } else {
            ProtocolError::MultibulkLength
        });
    }
    if count <= 0 {
        return Ok(Parsed::Empty { len: pos });
    }
    args.reserve((count as usize).min(1024));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(Parsed::Incomplete { hint: 0 }),
            Some(b'$') => {}
            Some(&other) => return Err(ProtocolError::ExpectedBulk(other as char)),
        }
        let Some((len, start)) = read_len(buf, pos + 1, ProtocolError::BulkLength)? else {
            return Ok(Parsed::Incomplete { hint: 0 });
        };
        if len < 0 || len as u64 > limits.max_bulk_len as u64 {
            return Err(if limits.unauthenticated && len >= 0 {
                ProtocolError::UnauthenticatedBulk
            } else {
                ProtocolError::BulkLength
            });
        }
        let end = start + len as usize;
        if end + 2 > limits.max_request_len {
            return Err(ProtocolError::RequestTooLarge);
        }
        if buf.len() < end + 2 {
            return Ok(Parsed::Incomplete { hint: end + 2 });
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        args.push(start..end);
        pos = end + 2;
    }
    Ok(Parsed::Multibulk { len: pos })
}

/// Reads a CRLF-terminated decimal length at `pos` in one pass: the value
/// and the position after the CRLF, `None` while incomplete, `err` when it
/// is not a length (more than 18 digits is never a valid one).
#[inline(always)]
fn read_len(buf: &[u8], pos: usize, err: ProtocolError) -> Result<Option<(i64, usize)>, ProtocolError> {
    match buf.get(pos..).and_then(short_len) {
        Some((n, used)) => Ok(Some((i64::from(n), pos + used))),
        None => read_any_len(buf, pos, err),
    }
}

/// A decimal of one or two digits and its CRLF at the start of `buf`, as
/// most lengths in requests and replies are: its value and the bytes it
/// takes. `None` for anything else, incomplete or invalid.
#[inline(always)]
pub(super) fn short_len(buf: &[u8]) -> Option<(u8, usize)> {
    match buf {
        [d @ b'0'..=b'9', b'\r', b'\n', ..] => Some((d - b'0', 3)),
        [t @ b'1'..=b'9', d @ b'0'..=b'9', b'\r', b'\n', ..] => Some(((t - b'0') * 10 + (d - b'0'), 4)),
        _ => None,
    }
}

/// [`read_len`] for any length, and for incomplete or invalid ones. Only
/// what Redis itself reads as a length is one: no sign but `-`, no leading
/// zero, no `-0`. A request passes upstream as the client wrote it, and a
/// length Redis refuses would make it close a connection shared by every
/// client.
#[inline(never)]
fn read_any_len(buf: &[u8], mut pos: usize, err: ProtocolError) -> Result<Option<(i64, usize)>, ProtocolError> {
    let negative = buf.get(pos) == Some(&b'-');
    if negative {
        pos += 1;
    }
    let digits = pos;
    let mut n: i64 = 0;
    loop {
        match buf.get(pos) {
            None => return Ok(None),
            Some(d) if d.is_ascii_digit() && pos == digits + 1 && n == 0 => return Err(err),
            Some(b'0') if pos == digits && negative => return Err(err),
            Some(&d) if d.is_ascii_digit() && pos - digits < 18 => {
                n = n * 10 + i64::from(d - b'0');
                pos += 1;
            }
            Some(b'\r') if pos > digits => break,
            Some(_) => return Err(err),
        }
    }
    match buf.get(pos + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((if negative { -n } else { n }, pos + 2))),
        Some(_) => Err(err),
    }
}

fn parse_inline(buf: &[u8], limits: &Limits, inline: &mut Vec<Vec<u8>>) -> Result<Parsed, ProtocolError> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() > limits.max_inline_len {
            return Err(ProtocolError::InlineTooBig);
        }
        return Ok(Parsed::Incomplete { hint: 0 });
    };
    if nl > limits.max_inline_len {
        return Err(ProtocolError::InlineTooBig);
    }
    let line = buf[..nl].strip_suffix(b"\r").unwrap_or(&buf[..nl]);
    split_args(line, inline)?;
    if inline.is_empty() {
        return Ok(Parsed::Empty { len: nl + 1 });
    }
    Ok(Parsed::Inline { len: nl + 1 })
}

/// Splits an inline line into arguments with Redis' quoting rules
/// (`"…"` with backslash escapes, `'…'` literal).
fn split_args(line: &[u8], out: &mut Vec<Vec<u8>>) -> Result<(), ProtocolError> {
    out.clear();
    let mut i = 0;
    while i < line.len() {
        while i < line.len() && line[i].is_ascii_whitespace() {
            i += 1;
        }
        if i >= line.len() {
            break;
        }
        let mut arg = Vec::new();
        i = match line[i] {
            b'"' => read_double_quoted(line, i + 1, &mut arg)?,
            b'\'' => read_single_quoted(line, i + 1, &mut arg)?,
            _ => {
                let start = i;
                while i < line.len() && !line[i].is_ascii_whitespace() {
                    i += 1;
                }
                arg.extend_from_slice(&line[start..i]);
                i
            }
        };
        out.push(arg);
    }
    Ok(())
}

/// A closing quote must be followed by a space or the end of the line.
fn after_quote(line: &[u8], i: usize) -> Result<usize, ProtocolError> {
    match line.get(i) {
        None => Ok(i),
        Some(b) if b.is_ascii_whitespace() => Ok(i),
        Some(_) => Err(ProtocolError::UnbalancedQuotes),
    }
}

fn read_double_quoted(line: &[u8], mut i: usize, arg: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(i) {
            None => return Err(ProtocolError::UnbalancedQuotes),
            Some(b'"') => return after_quote(line, i + 1),
            Some(b'\\') => {
                let (byte, used) = unescape(&line[i + 1..]);
                arg.push(byte);
                i += 1 + used;
            }
            Some(&b) => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

/// Decodes the escape after a backslash; returns the byte and how many bytes
/// of `rest` it used.
fn unescape(rest: &[u8]) -> (u8, usize) {
    match rest {
        [b'x', h, l, ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
            let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
            (hex(*h) * 16 + hex(*l), 3)
        }
        [b'n', ..] => (b'\n', 1),
        [b'r', ..] => (b'\r', 1),
        [b't', ..] => (b'\t', 1),
        [b'b', ..] => (8, 1),
        [b'a', ..] => (7, 1),
        [c, ..] => (*c, 1),
        [] => (b'\\', 0),
    }
}

fn read_single_quoted(line: &[u8], mut i: usize, arg: &mut Vec<u8>) -> Result<usize, ProtocolError> {
    loop {
        match line.get(i) {
            None => return Err(ProtocolError::UnbalancedQuotes),
            Some(b'\\') if line.get(i + 1) == Some(&b'\'') => {
                arg.push(b'\'');
                i += 2;
            }
            Some(b'\'') => return after_quote(line, i + 1),
            Some(&b) => {
                arg.push(b);
                i += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(input: &[u8]) -> (Result<Parsed, ProtocolError>, Vec<Vec<u8>>) {
        let mut args = Vec::new();
        let mut inline = Vec::new();
        let r = parse(input, &Limits::default(), &mut args, &mut inline);
        let got = match r {
            Ok(Parsed::Multibulk { .. }) => args.iter().map(|r| input[r.clone()].to_vec()).collect(),
            _ => inline,
        };
        (r, got)
    }

    #[test]
    fn multibulk() {
        let (r, args) = parse_all(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nrest");
        assert_eq!(r, Ok(Parsed::Multibulk { len: 20 }));
        assert_eq!(args, vec![b"GET".to_vec(), b"k".to_vec()]);
    }

    #[test]
    fn incomplete_at_every_cut() {
        let full = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n";
        for cut in 0..full.len() {
            let (r, _) = parse_all(&full[..cut]);
            assert!(matches!(r, Ok(Parsed::Incomplete { .. })), "cut {cut}: {r:?}");
        }
        assert_eq!(parse_all(full).0, Ok(Parsed::Multibulk { len: full.len() }));
    }

    #[test]
    fn short_lengths_read_as_any_length() {
        let alphabet = b"09-\r\nx";
        let mut inputs = vec![Vec::new()];
        for _ in 0..5 {
            let longer = inputs.iter().flat_map(|s: &Vec<u8>| alphabet.iter().map(move |&c| [&s[..], &[c]].concat()));
            inputs = inputs.iter().cloned().chain(longer.collect::<Vec<_>>()).collect();
        }
        for input in &inputs {
            let fast = read_len(input, 0, ProtocolError::BulkLength);
            assert_eq!(fast, read_any_len(input, 0, ProtocolError::BulkLength), "{input:?}");
        }
    }

    #[test]
    fn bulk_hint_allows_reserving() {
        let (r, _) = parse_all(b"*1\r\n$100\r\nabc");
        assert_eq!(r, Ok(Parsed::Incomplete { hint: 4 + 6 + 102 }));
    }

    #[test]
    fn lengths_redis_refuses_are_refused() {
        for bad in ["*01\r\n$4\r\nPING\r\n", "*-0\r\n", "*+1\r\n$4\r\nPING\r\n", "*00\r\n"] {
            assert_eq!(parse_all(bad.as_bytes()).0, Err(ProtocolError::MultibulkLength), "{bad:?}");
        }
        for bad in ["*1\r\n$04\r\nPING\r\n", "*1\r\n$00\r\n\r\n", "*1\r\n$-0\r\n", "*1\r\n$0100\r\n"] {
            assert_eq!(parse_all(bad.as_bytes()).0, Err(ProtocolError::BulkLength), "{bad:?}");
        }
        assert!(parse_all(b"*1\r\n$0\r\n\r\n").0.is_ok());
        assert!(parse_all(b"*1\r\n$10\r\n0123456789\r\n").0.is_ok());
    }

    #[test]
    fn errors() {
        assert_eq!(parse_all(b"*x\r\n").0, Err(ProtocolError::MultibulkLength));
        assert_eq!(parse_all(b"*1\r\n$-5\r\n").0, Err(ProtocolError::BulkLength));
        assert_eq!(parse_all(b"*1\r\n:5\r\n").0, Err(ProtocolError::ExpectedBulk(':')));
        assert_eq!(parse_all(b"*1\r\n$1\r\nab\r\n").0, Err(ProtocolError::MissingCrlf));
        assert_eq!(parse_all(b"*99999999999999999999\r\n").0, Err(ProtocolError::MultibulkLength));
        assert_eq!(parse_all(&[b'*'; 100]).0, Err(ProtocolError::MultibulkLength));
        assert_eq!(parse_all(b"*1\r\n$12345678901234567890").0, Err(ProtocolError::BulkLength));
        assert_eq!(parse_all(b"*1\r\n$3\rx").0, Err(ProtocolError::BulkLength));
    }

    #[test]
    fn limits_refuse_before_buffering() {
        let limits = Limits {
            max_bulk_len: 10,
            max_multibulk_len: 3,
            max_inline_len: 8,
            max_request_len: usize::MAX,
            unauthenticated: false,
        };
        let (mut a, mut i) = (Vec::new(), Vec::new());
        assert_eq!(parse(b"*1\r\n$11\r\n", &limits, &mut a, &mut i), Err(ProtocolError::BulkLength));
        assert_eq!(parse(b"*4\r\n", &limits, &mut a, &mut i), Err(ProtocolError::MultibulkLength));
        assert_eq!(parse(b"PING PING PING", &limits, &mut a, &mut i), Err(ProtocolError::InlineTooBig));
        let whole = Limits { max_request_len: 30, ..limits };
        assert!(parse(b"*2\r\n$3\r\nGET\r\n$5\r\nhello\r\n", &whole, &mut a, &mut i).is_ok());
        let refused = parse(b"*3\r\n$3\r\nSET\r\n$5\r\nhello\r\n$10\r\n", &whole, &mut a, &mut i);
        assert_eq!(refused, Err(ProtocolError::RequestTooLarge), "known from the header, before the data");
    }

    #[test]
    fn unauthenticated_clients_get_redis_limits_and_errors() {
        let limits = &Limits::UNAUTHENTICATED;
        let (mut a, mut i) = (Vec::new(), Vec::new());
        let big = b"*2\r\n$4\r\nAUTH\r\n$419430400\r\n";
        assert_eq!(parse(big, limits, &mut a, &mut i), Err(ProtocolError::UnauthenticatedBulk));
        assert_eq!(parse(b"*11\r\n", limits, &mut a, &mut i), Err(ProtocolError::UnauthenticatedMultibulk));
        let fits = b"*3\r\n$4\r\nAUTH\r\n$4\r\nacme\r\n$6\r\nsecret\r\n";
        assert_eq!(parse(fits, limits, &mut a, &mut i), Ok(Parsed::Multibulk { len: fits.len() }));
    }

    #[test]
    fn empty_requests_are_skipped() {
        assert_eq!(parse_all(b"*0\r\n").0, Ok(Parsed::Empty { len: 4 }));
        assert_eq!(parse_all(b"\r\n").0, Ok(Parsed::Empty { len: 2 }));
        assert_eq!(parse_all(b"   \n").0, Ok(Parsed::Empty { len: 4 }));
    }

    #[test]
    fn inline_with_quotes() {
        let (r, args) = parse_all(b"SET k \"a b\\x41\\n\" 'it\\'s'\r\n");
        assert!(matches!(r, Ok(Parsed::Inline { .. })));
        assert_eq!(args, vec![b"SET".to_vec(), b"k".to_vec(), b"a bA\n".to_vec(), b"it's".to_vec()]);
        assert_eq!(parse_all(b"GET \"k\r\n").0, Err(ProtocolError::UnbalancedQuotes));
        assert_eq!(parse_all(b"GET \"k\"x\r\n").0, Err(ProtocolError::UnbalancedQuotes));
    }

    #[test]
    fn ints() {
        assert_eq!(parse_int(b"123"), Some(123));
        assert_eq!(parse_int(b"-1"), Some(-1));
        assert_eq!(parse_int(b""), None);
        assert_eq!(parse_int(b"-"), None);
        assert_eq!(parse_int(b"1a"), None);
        assert_eq!(parse_int(b"99999999999999999999"), None);
    }
}
