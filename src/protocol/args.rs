//! A borrowed view of a request's arguments: ranges into the bytes they were
//! read from, so looking at a command never copies it.

use std::ops::Range;

/// The arguments of one request (argument 0 is the command name), as ranges
/// into `buf`.
#[derive(Clone, Copy, Debug)]
pub struct Args<'a> {
    buf: &'a [u8],
    ranges: &'a [Range<usize>],
}

impl<'a> Args<'a> {
    /// Arguments located at `ranges` inside `buf`.
    pub fn new(buf: &'a [u8], ranges: &'a [Range<usize>]) -> Self {
        Args { buf, ranges }
    }

    /// Number of arguments, command name included.
    pub fn len(&self) -> usize {
        self.ranges.len()
    }

    /// True when there are no arguments at all.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// Argument `i`, or `None` past the end.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        self.ranges.get(i).map(|r| &self.buf[r.clone()])
    }

    /// Position of argument `i` inside the buffer.
    pub fn range(&self, i: usize) -> Option<Range<usize>> {
        self.ranges.get(i).cloned()
    }

    /// All arguments in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let buf = self.buf;
        self.ranges.iter().map(move |r| &buf[r.clone()])
    }
}

/// Test support: the bytes and ranges of `parts` laid end to end, for
/// building an [`Args`] from string literals.
#[cfg(test)]
pub fn laid_out(parts: &[&str]) -> (Vec<u8>, Vec<Range<usize>>) {
    let mut buf = Vec::new();
    let mut ranges = Vec::new();
    for p in parts {
        ranges.push(buf.len()..buf.len() + p.len());
        buf.extend_from_slice(p.as_bytes());
    }
    (buf, ranges)
}
