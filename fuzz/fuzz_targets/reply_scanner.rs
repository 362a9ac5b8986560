//! Upstream reply delimiting (`protocol::scan::Scanner`).
//!
//! Input: one control byte (seeds how the stream is cut into reads), then
//! the upstream byte stream.
//!
//! The stream is delimited twice: all at once, and arriving in reads of
//! random sizes with one `Scanner` resumed across reads, consuming each
//! complete frame from the front as `upstream::pool` does. Checked, besides
//! "never panics": both give the same frame lengths and end the same way
//! (waiting for more, or the same protocol error); every frame length is
//! > 0 and ≤ the bytes buffered; a frame found on its own (a fresh scanner
//! over exactly its bytes) is that whole frame.
#![no_main]

mod common;

use common::next;
use libfuzzer_sys::fuzz_target;
use nearcache::protocol::scan::{kind, Scanner};
use nearcache::protocol::ProtocolError;

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    frames: Vec<usize>,
    error: Option<ProtocolError>,
}

/// Every complete frame at the front of `buf`; returns bytes consumed.
fn drain(s: &mut Scanner, buf: &[u8], frames: &mut Vec<usize>) -> Result<usize, ProtocolError> {
    let mut consumed = 0;
    while let Some(len) = s.next_frame(&buf[consumed..])? {
        let rest = buf.len() - consumed;
        assert!(len > 0 && len <= rest, "frame of {len} bytes with {rest} buffered");
        let _ = kind(&buf[consumed..consumed + len]);
        frames.push(len);
        consumed += len;
    }
    Ok(consumed)
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };

    // At once.
    let mut frames = Vec::new();
    let error = drain(&mut Scanner::default(), stream, &mut frames).err();
    let whole = Outcome { frames, error };

    // Each frame alone is exactly one frame.
    let mut at = 0;
    for &len in &whole.frames {
        let frame = &stream[at..at + len];
        assert_eq!(Scanner::default().next_frame(frame), Ok(Some(len)), "frame at {at} alone");
        at += len;
    }

    // In reads of random sizes (1..=32 bytes), resuming the same scanner.
    let mut s = Scanner::default();
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut state = u32::from(control).wrapping_mul(0x9e37_79b9) | 1;
    let error = loop {
        let step = 1 + (next(&mut state) % 32) as usize;
        let upto = (fed + step).min(stream.len());
        buf.extend_from_slice(&stream[fed..upto]);
        fed = upto;
        match drain(&mut s, &buf, &mut frames) {
            Ok(consumed) => {
                buf.drain(..consumed);
            }
            Err(e) => break Some(e),
        }
        if fed == stream.len() {
            break None;
        }
    };
    let pieces = Outcome { frames, error };
    assert_eq!(whole, pieces, "the same stream read in pieces is delimited differently");
});
