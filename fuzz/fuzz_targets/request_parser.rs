//! Client request parsing (`protocol::request::parse`), driven the way the
//! session drives it: complete requests are consumed from the front of the
//! read buffer one after another until the parser asks for more bytes or
//! reports a protocol error.
//!
//! Input: one control byte, then the client's byte stream.
//! - bit 0 of the control byte: small limits (so the limit checks are hit)
//!   instead of the defaults;
//! - the control byte also seeds how the stream is cut into reads.
//!
//! Checked, besides "never panics":
//! - every reported length is > 0 and within the buffer (a zero length
//!   would make the session loop forever), argument ranges lie inside the
//!   request, in order and without overlap;
//! - `Incomplete { hint }` with a hint asks for more than is buffered;
//! - a multibulk re-encoded with `encode::command` parses back to the same
//!   arguments, and an inline request re-encoded the way the session does
//!   (`reencode_inline`) parses as one multibulk with the same arguments;
//! - feeding the stream in arbitrary reads yields exactly the same requests
//!   and the same final error as feeding it at once.
#![no_main]

use bytes::BytesMut;
mod common;

use common::next;
use libfuzzer_sys::fuzz_target;
use nearcache::protocol::encode;
use nearcache::protocol::request::{parse, Limits, Parsed};
use nearcache::protocol::ProtocolError;
use std::ops::Range;

/// What the session would see: each request's arguments, then how the
/// stream ended.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    requests: Vec<Vec<Vec<u8>>>,
    end: End,
    /// Bytes consumed by complete (or empty) requests.
    consumed: usize,
}

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Waiting for more bytes.
    Incomplete,
    Error(ProtocolError),
}

struct Parser {
    limits: Limits,
    args: Vec<Range<usize>>,
    inline: Vec<Vec<u8>>,
}

impl Parser {
    /// Consumes every complete request at the front of `buf`, as
    /// `Session::handle_input` does; returns the bytes consumed and how it
    /// stopped.
    fn drain(&mut self, buf: &[u8], out: &mut Vec<Vec<Vec<u8>>>) -> (usize, End) {
        let mut consumed = 0;
        loop {
            let rest = &buf[consumed..];
            match parse(rest, &self.limits, &mut self.args, &mut self.inline) {
                Err(e) => return (consumed, End::Error(e)),
                Ok(Parsed::Incomplete { hint }) => {
                    assert!(hint == 0 || hint > rest.len(), "hint {hint} with {} bytes buffered", rest.len());
                    return (consumed, End::Incomplete);
                }
                Ok(Parsed::Empty { len }) => {
                    assert!(len > 0 && len <= rest.len(), "empty request of {len} bytes in {}", rest.len());
                    consumed += len;
                }
                Ok(Parsed::Multibulk { len }) => {
                    assert!(len > 0 && len <= rest.len(), "multibulk of {len} bytes in {}", rest.len());
                    assert!(!self.args.is_empty(), "multibulk without arguments");
                    let mut prev_end = 0;
                    for r in &self.args {
                        assert!(r.start >= prev_end && r.start <= r.end && r.end <= len, "range {r:?} in {len}");
                        prev_end = r.end;
                    }
                    let args: Vec<Vec<u8>> = self.args.iter().map(|r| rest[r.clone()].to_vec()).collect();
                    self.check_reencoded(&args);
                    out.push(args);
                    consumed += len;
                }
                Ok(Parsed::Inline { len }) => {
                    assert!(len > 0 && len <= rest.len(), "inline of {len} bytes in {}", rest.len());
                    assert!(!self.inline.is_empty(), "inline request without arguments");
                    let args = self.inline.clone();
                    self.check_reencoded(&args);
                    out.push(args);
                    consumed += len;
                }
            }
        }
    }

    /// The arguments encoded as a multibulk (what the session does to an
    /// inline request) parse back, alone and whole, to the same arguments.
    fn check_reencoded(&mut self, args: &[Vec<u8>]) {
        let mut buf = BytesMut::new();
        encode::command(&mut buf, args.iter().map(Vec::as_slice));
        // The session re-parses with its own limits; an argument over them
        // can only come from an inline request, whose limit is the line.
        let limits = Limits::default();
        let mut ranges = Vec::new();
        let mut inline = Vec::new();
        let parsed = parse(&buf, &limits, &mut ranges, &mut inline);
        assert_eq!(parsed, Ok(Parsed::Multibulk { len: buf.len() }), "re-encoded request {buf:?}");
        let back: Vec<&[u8]> = ranges.iter().map(|r| &buf[r.clone()]).collect();
        assert_eq!(back, args.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }
}

fn limits(small: bool) -> Limits {
    if small {
        Limits { max_bulk_len: 64, max_multibulk_len: 16, max_inline_len: 128, max_request_len: 1024, unauthenticated: false }
    } else {
        Limits::default()
    }
}

/// The whole stream in one read.
fn at_once(limits: Limits, stream: &[u8]) -> Outcome {
    let mut p = Parser { limits, args: Vec::new(), inline: Vec::new() };
    let mut requests = Vec::new();
    let (consumed, end) = p.drain(stream, &mut requests);
    Outcome { requests, end, consumed }
}

/// The stream arriving in reads of random sizes; consumed bytes are
/// dropped from the buffer after each read, as the session does.
fn in_reads(limits: Limits, stream: &[u8], seed: u8) -> Outcome {
    let mut p = Parser { limits, args: Vec::new(), inline: Vec::new() };
    let mut requests = Vec::new();
    let mut buf = Vec::new();
    let mut fed = 0;
    let mut total = 0;
    let mut state = u32::from(seed).wrapping_mul(0x9e37_79b9) | 1;
    loop {
        let step = 1 + (next(&mut state) % 16) as usize;
        let upto = (fed + step).min(stream.len());
        buf.extend_from_slice(&stream[fed..upto]);
        fed = upto;
        let (consumed, end) = p.drain(&buf, &mut requests);
        buf.drain(..consumed);
        total += consumed;
        if matches!(end, End::Error(_)) || fed == stream.len() {
            return Outcome { requests, end, consumed: total };
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else {
        return;
    };
    let limits = limits(control & 1 == 1);
    let whole = at_once(limits, stream);
    assert!(whole.consumed <= stream.len());
    let pieces = in_reads(limits, stream, control);
    assert_eq!(whole, pieces, "the same stream read in pieces is parsed differently");
});
