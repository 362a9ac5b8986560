//! Helpers shared by the fuzz targets (a module of each, not a target).
// Each target uses some of these.
#![allow(dead_code)]

use std::ops::Range;

/// The input split at newlines: one argument per line.
pub fn lines(data: &[u8]) -> Vec<Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = 0;
    for (i, &b) in data.iter().enumerate() {
        if b == b'\n' {
            ranges.push(start..i);
            start = i + 1;
        }
    }
    ranges.push(start..data.len());
    ranges
}

/// Small xorshift generator for read and chunk sizes.
pub fn next(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}
