//! A minimal reader over one complete RESP2/RESP3 frame: where each element
//! starts and ends, and the text of string elements. Element boundaries come
//! from the protocol's own [`Scanner`], so this agrees with how replies are
//! delimited everywhere else; nothing here panics on malformed input, it
//! answers `None`.

use crate::protocol::request::parse_int;
use crate::protocol::scan::Scanner;
use std::ops::Range;

/// One element of a frame, located in its buffer.
#[derive(Debug, Clone)]
pub(super) struct Elem {
    /// First byte, RESP3 attributes annotating the value included.
    pub start: usize,
    /// First byte of the value itself (its type byte).
    pub value: usize,
    /// Type byte of the value (`$`, `*`, `%`, …).
    pub ty: u8,
    /// The header line's text (after the type byte).
    pub line: Range<usize>,
    /// One past the element's last byte.
    pub end: usize,
}

impl Elem {
    /// The header's number (a length or count), if it has one.
    pub fn number(&self, buf: &[u8]) -> Option<i64> {
        parse_int(buf.get(self.line.clone())?)
    }

    /// True for an error reply (`-` or `!`).
    pub fn is_error(&self) -> bool {
        matches!(self.ty, b'-' | b'!')
    }

    /// True for a null (`_`, `$-1`, `*-1`, …).
    pub fn is_null(&self, buf: &[u8]) -> bool {
        self.ty == b'_' || (matches!(self.ty, b'$' | b'*' | b'%' | b'~') && self.number(buf) == Some(-1))
    }

    /// True for an array-like aggregate (`*`, `~`, `>`) that is not null.
    pub fn is_array(&self, buf: &[u8]) -> bool {
        matches!(self.ty, b'*' | b'~' | b'>') && self.number(buf).is_some_and(|n| n >= 0)
    }

    /// The bytes from the value's type byte to the end of its header line.
    pub fn header<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.value..self.line.end + 2).unwrap_or_default()
    }

    /// The whole element, attributes included.
    pub fn bytes<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        buf.get(self.start..self.end).unwrap_or_default()
    }
}

/// The element starting at `at`, attributes before its value included.
pub(super) fn element(buf: &[u8], at: usize) -> Option<Elem> {
    let mut value = at;
    while buf.get(value) == Some(&b'|') {
        value = skip_attribute(buf, value)?;
    }
    let ty = *buf.get(value)?;
    let line = value + 1..line_end(buf, value + 1)?;
    let end = value + Scanner::default().next_frame(buf.get(value..)?).ok()??;
    Some(Elem { start: at, value, ty, line, end })
}

/// Where the value annotated by the attribute at `at` starts.
fn skip_attribute(buf: &[u8], at: usize) -> Option<usize> {
    let line_end = line_end(buf, at + 1)?;
    let pairs = usize::try_from(parse_int(buf.get(at + 1..line_end)?)?).ok()?;
    let mut pos = line_end + 2;
    for _ in 0..pairs.checked_mul(2)? {
        pos = element(buf, pos)?.end;
    }
    Some(pos)
}

/// Offset of the CR ending the line that starts at `from`.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    let cr = from + buf.get(from..)?.windows(2).position(|w| w == b"\r\n")?;
    Some(cr)
}

/// The children of an aggregate (for a map: keys and values alternating).
pub(super) fn children(buf: &[u8], agg: &Elem) -> Option<Vec<Elem>> {
    let n = usize::try_from(agg.number(buf)?).ok()?;
    let count = match agg.ty {
        b'*' | b'~' | b'>' => n,
        b'%' => n.checked_mul(2)?,
        _ => return None,
    };
    let mut out = Vec::with_capacity(count.min(1024));
    let mut pos = agg.line.end + 2;
    for _ in 0..count {
        let child = element(buf, pos)?;
        pos = child.end;
        out.push(child);
    }
    (pos == agg.end).then_some(out)
}

/// The text of a string element (bulk or simple string), `None` for
/// anything else (nulls included).
pub(super) fn text<'b>(buf: &'b [u8], e: &Elem) -> Option<&'b [u8]> {
    match e.ty {
        b'+' => buf.get(e.line.clone()),
        b'$' => {
            let len = usize::try_from(e.number(buf)?).ok()?;
            let start = e.line.end + 2;
            buf.get(start..start.checked_add(len)?)
        }
        _ => None,
    }
}
