//! Delimiting replies in an upstream byte stream without decoding them.
//!
//! The scanner walks RESP2/RESP3 headers iteratively (an explicit stack of
//! remaining element counts, never recursion), so arbitrarily nested or huge
//! replies cannot overflow the stack, and it resumes where it stopped when a
//! reply arrives in pieces, so a large reply is walked once, not once per read.
//!
//! Nesting has no limit: any reply Redis can produce (a Lua script returns
//! thousands of nested tables) passes through, rather than costing the
//! shared connection that carried it. The stack holds one count per open
//! aggregate, and each costs at least four bytes of input (`*1\r\n`), so
//! it never outgrows twice the frame.

use super::request::{line_end, parse_int, short_len};
use super::ProtocolError;
use bytes::Bytes;

/// Resumable scanner over a buffer that only grows at the end between calls
/// and is consumed from the front only after a complete frame was reported.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Offset of the next element header to read.
    pos: usize,
    /// Elements still expected by each open aggregate, innermost last.
    stack: Vec<u64>,
}

/// What kind of frame a complete reply is, from its first byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// A RESP3 push (`>`): out-of-band data, not a reply to a request.
    Push,
    /// An error reply (`-` or `!`).
    Error,
    /// Anything else.
    Other,
}

/// Kind of the complete frame at the start of `frame`.
pub fn kind(frame: &[u8]) -> FrameKind {
    match frame.first() {
        Some(b'>') => FrameKind::Push,
        Some(b'-') | Some(b'!') => FrameKind::Error,
        _ => FrameKind::Other,
    }
}

impl Scanner {
    /// Looks for the end of the frame starting at offset 0 of `buf`.
    /// Returns its length once complete; the caller then consumes those
    /// bytes and the scanner starts afresh for the next frame.
    pub fn next_frame(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if self.pos == 0 {
            if let Some(len) = common_frame(buf) {
                return Ok(Some(len));
            }
        }
        self.scan(buf)
    }

    /// [`Scanner::next_frame`] for any frame, header by header.
    fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        loop {
            let Some(step) = self.element(buf)? else {
                return Ok(None);
            };
            match step {
                Step::Open(n) => self.stack.push(n),
                Step::Done => {
                    if self.close_elements() {
                        let len = self.pos;
                        self.pos = 0;
                        return Ok(Some(len));
                    }
                }
            }
        }
    }

    /// Counts one finished element against the open aggregates; true when
    /// the outermost frame is complete.
    fn close_elements(&mut self) -> bool {
        while let Some(top) = self.stack.last_mut() {
            *top -= 1;
            if *top > 0 {
                return false;
            }
            self.stack.pop();
        }
        true
    }

    /// Reads the element header at `self.pos`, advancing past scalars.
    fn element(&mut self, buf: &[u8]) -> Result<Option<Step>, ProtocolError> {
        let start = self.pos;
        let Some(&ty) = buf.get(start) else {
            return Ok(None);
        };
        let Some(eol) = line_end(buf, start + 1)? else {
            return Ok(None);
        };
        let header = &buf[start + 1..eol];
        let after = eol + 2;
        let step = match ty {
            b'+' | b'-' | b':' | b',' | b'#' | b'_' | b'(' => {
                self.pos = after;
                Step::Done
            }
            b'$' | b'!' | b'=' => {
                let Some(end) = bulk_end(header, after)? else {
                    self.pos = after;
                    return Ok(Some(Step::Done));
                };
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                self.pos = end + 2;
                Step::Done
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                self.pos = after;
                match aggregate_len(ty, header)? {
                    0 => Step::Done,
                    n => Step::Open(n),
                }
            }
            other => return Err(ProtocolError::FrameType(other)),
        };
        Ok(Some(step))
    }
}

/// The length of the complete frame at the start of `buf` when it is one
/// of the most common replies: `+OK`, a one-digit integer, a null, or a
/// bulk string of up to 99 bytes (what a GET of a small value gets).
/// Anything else, incomplete or malformed is left to the scanner.
#[inline]
fn common_frame(buf: &[u8]) -> Option<usize> {
    match buf {
        [b'+', b'O', b'K', b'\r', b'\n', ..] | [b'$', b'-', b'1', b'\r', b'\n', ..] => Some(5),
        [b':', b'0'..=b'9', b'\r', b'\n', ..] => Some(4),
        [b'_', b'\r', b'\n', ..] => Some(3),
        [b'$', header @ ..] => {
            let (len, used) = short_len(header)?;
            let end = 1 + used + usize::from(len);
            (buf.get(end..end + 2) == Some(b"\r\n")).then_some(end + 2)
        }
        _ => None,
    }
}

enum Step {
    /// An aggregate expecting this many elements was opened.
    Open(u64),
    /// An element (scalar or empty aggregate) is complete.
    Done,
}

/// End of a bulk payload starting at `data_start`, or `None` for a null
/// bulk (`$-1`).
fn bulk_end(header: &[u8], data_start: usize) -> Result<Option<usize>, ProtocolError> {
    if header == b"?" {
        return Err(ProtocolError::Streamed);
    }
    match parse_int(header) {
        Some(-1) => Ok(None),
        Some(n) if n >= 0 => Ok(Some(data_start + n as usize)),
        _ => Err(ProtocolError::Header),
    }
}

/// Number of elements an aggregate header announces. Maps count keys and
/// values; an attribute (`|`) also covers the value it annotates.
fn aggregate_len(ty: u8, header: &[u8]) -> Result<u64, ProtocolError> {
    if header == b"?" {
        return Err(ProtocolError::Streamed);
    }
    let n = match parse_int(header) {
        Some(-1) => return Ok(0),
        Some(n) if n >= 0 => n as u64,
        _ => return Err(ProtocolError::Header),
    };
    Ok(match ty {
        b'%' => n * 2,
        b'|' => n * 2 + 1,
        _ => n,
    })
}

/// The complete frames of a buffer (replies laid end to end, or the
/// elements of one array reply), in order, as slices of it.
pub struct Frames {
    bytes: Bytes,
    remaining: Option<usize>,
}

impl Frames {
    /// The frames laid end to end in `bytes`.
    pub fn new(bytes: Bytes) -> Frames {
        Frames { bytes, remaining: None }
    }

    /// The elements of an array frame.
    pub fn elements(mut array: Bytes) -> Option<Frames> {
        let eol = array.iter().position(|&b| b == b'\r')?;
        let n = usize::try_from(parse_int(array.get(1..eol)?)?).ok()?;
        let _ = array.split_to(eol + 2);
        Some(Frames { bytes: array, remaining: Some(n) })
    }

    /// The next `n` frames as one slice.
    pub fn take(&mut self, n: usize) -> Option<Bytes> {
        let mut len = 0;
        for _ in 0..n {
            len += Scanner::default().next_frame(&self.bytes[len..]).ok()??;
        }
        Some(self.bytes.split_to(len))
    }
}

impl Iterator for Frames {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        if self.remaining == Some(0) {
            return None;
        }
        let len = Scanner::default().next_frame(&self.bytes).ok()??;
        self.remaining = self.remaining.map(|n| n - 1);
        Some(self.bytes.split_to(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(input: &[u8]) -> Result<Vec<usize>, ProtocolError> {
        let mut s = Scanner::default();
        let mut out = Vec::new();
        let mut buf = input;
        while let Some(n) = s.next_frame(buf)? {
            out.push(n);
            buf = &buf[n..];
        }
        Ok(out)
    }

    #[test]
    fn scalars_and_aggregates() {
        let input = b"+OK\r\n-ERR x\r\n:5\r\n$3\r\nabc\r\n$-1\r\n*-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*0\r\n";
        assert_eq!(frames(input).unwrap(), vec![5, 8, 4, 9, 5, 5, 19, 4]);
    }

    #[test]
    fn common_frames_are_delimited_as_the_scanner_does() {
        let alphabet = b"$+OK-1:_\r\n";
        let mut inputs = vec![Vec::new()];
        for _ in 0..5 {
            let longer: Vec<Vec<u8>> =
                inputs.iter().flat_map(|s| alphabet.iter().map(move |&c| [&s[..], &[c]].concat())).collect();
            inputs.extend(longer);
        }
        for n in 0..=100 {
            for tail in [&b"\r\n"[..], b"\r\n+OK\r\n", b"\rx", b"\r", b""] {
                inputs.push([format!("${n}\r\n").as_bytes(), &vec![b'x'; n], tail].concat());
            }
        }
        let mut fast = 0;
        for input in &inputs {
            if let Some(len) = common_frame(input) {
                fast += 1;
                assert_eq!(Scanner::default().scan(input), Ok(Some(len)), "{input:?}");
            }
        }
        assert!(fast > 200, "{fast} inputs took the fast path");
    }

    #[test]
    fn resp3_types() {
        let input = b"%1\r\n+k\r\n#t\r\n>2\r\n+a\r\n_\r\n|1\r\n+ttl\r\n:3\r\n,1.5\r\n=7\r\ntxt:abc\r\n~1\r\n(12\r\n";
        assert_eq!(frames(input).unwrap(), vec![12, 11, 20, 13, 9]);
    }

    #[test]
    fn resumes_across_reads() {
        let input = b"*3\r\n$5\r\nhello\r\n*1\r\n:1\r\n+x\r\n";
        let mut s = Scanner::default();
        for cut in 0..input.len() {
            assert_eq!(s.next_frame(&input[..cut]).unwrap(), None, "cut {cut}");
        }
        assert_eq!(s.next_frame(input).unwrap(), Some(input.len()));
    }

    #[test]
    fn any_nesting_is_delimited_without_recursion() {
        for depth in [100, 10_000, 1_000_000] {
            let mut input = b"*1\r\n".repeat(depth);
            input.extend_from_slice(b":1\r\n");
            assert_eq!(frames(&input).unwrap(), vec![input.len()], "{depth} deep");
        }
    }

    #[test]
    fn garbage() {
        assert_eq!(frames(b"?x\r\n"), Err(ProtocolError::FrameType(b'?')));
        assert_eq!(frames(b"$x\r\n"), Err(ProtocolError::Header));
        assert_eq!(frames(b"$1\r\nab\r\n"), Err(ProtocolError::MissingCrlf));
        assert_eq!(frames(b"*?\r\n"), Err(ProtocolError::Streamed));
    }

    #[test]
    fn kinds() {
        assert_eq!(kind(b">2\r\n"), FrameKind::Push);
        assert_eq!(kind(b"-ERR\r\n"), FrameKind::Error);
        assert_eq!(kind(b"+OK\r\n"), FrameKind::Other);
    }
}
