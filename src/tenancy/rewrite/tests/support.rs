//! Helpers: building requests, resolving commands as the caller does, and
//! decoding the rewritten multibulk.

use crate::commands::{lookup, Command};
use crate::protocol::request::{parse, Limits, Parsed};
use crate::protocol::Args;
use crate::tenancy::rewrite::{request, Allowances, Refusal, ReplyFix, Rewritten, Workspace};
use std::ops::Range;

/// Owned request arguments, viewable as [`Args`].
pub struct Req {
    buf: Vec<u8>,
    ranges: Vec<Range<usize>>,
}

impl Req {
    pub fn new<T: AsRef<[u8]>>(parts: &[T]) -> Req {
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        for part in parts {
            let start = buf.len();
            buf.extend_from_slice(part.as_ref());
            ranges.push(start..buf.len());
        }
        Req { buf, ranges }
    }

    pub fn args(&self) -> Args<'_> {
        Args::new(&self.buf, &self.ranges)
    }
}

/// The words of a line, as byte strings.
pub fn words(line: &str) -> Vec<Vec<u8>> {
    line.split_whitespace().map(|w| w.as_bytes().to_vec()).collect()
}

/// (parent, cmd) for a request, as the session's gate resolves them: the
/// subcommand when the parent has one by that name, else the parent.
pub fn resolve<T: AsRef<[u8]>>(parts: &[T]) -> (&'static Command, &'static Command) {
    let (_, parent) = lookup(parts[0].as_ref()).expect("known command");
    (parent, parent.resolve(&Req::new(parts).args()))
}

/// Decodes a RESP multibulk of bulk strings, requiring it to be exactly one.
pub fn decode(mut input: &[u8]) -> Vec<Vec<u8>> {
    fn line(input: &mut &[u8], ty: u8) -> usize {
        assert_eq!(input[0], ty, "type byte");
        let cr = input.windows(2).position(|w| w == b"\r\n").expect("CRLF");
        let n = std::str::from_utf8(&input[1..cr]).expect("utf8").parse().expect("number");
        *input = &input[cr + 2..];
        n
    }
    let count = line(&mut input, b'*');
    let mut out = Vec::new();
    for _ in 0..count {
        let len = line(&mut input, b'$');
        out.push(input[..len].to_vec());
        assert_eq!(&input[len..len + 2], b"\r\n");
        input = &input[len + 2..];
    }
    assert!(input.is_empty(), "trailing bytes");
    out
}

/// Rewrites `parts` for `prefix`: the decoded arguments and the fix.
pub fn rewrite_parts<T: AsRef<[u8]>>(
    prefix: &[u8],
    parts: &[T],
    allow: Allowances,
) -> Result<(Vec<Vec<u8>>, ReplyFix), Refusal> {
    let req = Req::new(parts);
    let (parent, cmd) = resolve(parts);
    rewritten(prefix, parent, cmd, &req.args(), allow).map(|rw| (decode(&rw.request), rw.fix))
}

/// [`request`] with a fresh workspace, checking the argument ranges it
/// records against a parse of the request.
pub fn rewritten(
    prefix: &[u8],
    parent: &Command,
    cmd: &Command,
    args: &Args,
    allow: Allowances,
) -> Result<Rewritten, Refusal> {
    let mut work = Workspace::default();
    let rw = request(prefix, parent, cmd, args, allow, &mut work)?;
    let (mut ranges, mut inline) = (Vec::new(), Vec::new());
    let limits = Limits::default();
    assert_eq!(parse(&rw.request, &limits, &mut ranges, &mut inline), Ok(Parsed::Multibulk { len: rw.request.len() }));
    assert_eq!(work.ranges(), &ranges[..], "recorded argument ranges");
    Ok(rw)
}

/// Rewrites a space-separated request for tenant `acme:` (no scripts).
pub fn rw(line: &str) -> Result<(String, ReplyFix), Refusal> {
    rw_with("acme:", line, Allowances::default())
}

/// Rewrites a space-separated request: the result's words joined by spaces.
pub fn rw_with(prefix: &str, line: &str, allow: Allowances) -> Result<(String, ReplyFix), Refusal> {
    rewrite_parts(prefix.as_bytes(), &words(line), allow).map(|(args, fix)| (join(&args), fix))
}

/// Arguments joined by spaces (lossy), for readable assertions.
pub fn join(args: &[Vec<u8>]) -> String {
    args.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect::<Vec<_>>().join(" ")
}

/// The rewritten request line, asserting the fix.
pub fn ok(line: &str, fix: ReplyFix) -> String {
    let (out, got) = rw(line).unwrap_or_else(|e| panic!("{line}: refused {e:?}"));
    assert_eq!(got, fix, "{line}");
    out
}

/// A small deterministic PRNG (xorshift64*), so property tests need no
/// dependency and are reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Up to `max` bytes drawn from `alphabet`.
    pub fn bytes(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }

    /// One of `items`.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}
