//! Validation of the DUMP payloads a tenant sends with RESTORE: the proxy's
//! own deep sanitization, done before anything reaches Redis.
//!
//! A payload is a serialized value (Redis' RDB encoding) that RESTORE copies
//! straight into Redis' memory. Redis checks its checksum, but it checks the
//! structures inside (listpacks, intsets) only with `sanitize-dump-payload
//! yes`, and it ships with `no`: a payload with a valid CRC64 and one corrupt
//! listpack byte is accepted, and crashes the server on the next read. A
//! tenant trusted with RESTORE (`allow_restore`) must not be able to take
//! down everyone's Redis, so this module owns the decision to let a payload
//! through, relying on nothing the upstream is configured with.
//!
//! It parses the whole payload, byte-exactly, and accepts only what it fully
//! understands: the encodings Redis 7.0–7.2 and Valkey 8 write for strings,
//! lists (quicklist 2), sets (plain, intset, listpack), sorted sets (plain
//! with binary scores, listpack) and hashes (plain, listpack), with the
//! semantic checks of Redis' deep sanitization (unique members and fields,
//! whole pairs, sorted intsets, real scores, no empty collections). Older
//! encodings (ziplist, zipmap, quicklist 1), streams and module values are
//! refused: a value dumped by a modern server never uses them.
//!
//! Work is linear in the payload's size and memory bounded whatever it
//! holds: every length is checked against the bytes left before anything
//! is read, nothing is allocated from a declared size, a compressed string
//! whose content is checked (a member, a field, a listpack) is decompressed
//! only up to [`MAX_INSPECTED`] (LZF expands up to 88 times), one at a time,
//! and members are told apart by 128-bit keyed hashes, not kept.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasher, RandomState};

/// Largest decompressed member, field or listpack checked (far above what
/// Redis encodes as one: listpacks are a few KiB by default); a compressed
/// one declaring more is refused.
const MAX_INSPECTED: usize = 16 * 1024 * 1024;

/// Newest RDB version accepted: 10 is Redis 7.0's, 11 Redis 7.2's and
/// Valkey 8's.
pub const MAX_RDB_VERSION: u16 = 11;

/// The RDB version (2 bytes) and the CRC64 (8 bytes) after the value.
const FOOTER: usize = 10;

// Value types (the first byte of a payload).
const STRING: u8 = 0;
const SET: u8 = 2;
const HASH: u8 = 4;
/// A sorted set with binary double scores.
const ZSET_2: u8 = 5;
const SET_INTSET: u8 = 11;
const HASH_LISTPACK: u8 = 16;
const ZSET_LISTPACK: u8 = 17;
/// A list as nodes, each a listpack or one plain element.
const LIST_QUICKLIST_2: u8 = 18;
const SET_LISTPACK: u8 = 20;

/// A special string encoding (length byte `11xxxxxx`): LZF-compressed.
const ENCODING_LZF: u8 = 3;

/// Quicklist node containers.
const NODE_PLAIN: usize = 1;
const NODE_PACKED: usize = 2;

/// A listpack's terminator, and its element count when it does not fit.
const LISTPACK_END: u8 = 0xff;
const LISTPACK_COUNT_UNKNOWN: u16 = u16::MAX;

/// Why a payload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DumpError {
    #[error("shorter than its 10-byte footer")]
    TooShort,
    #[error("RDB version {0} is newer than {MAX_RDB_VERSION}")]
    Version(u16),
    #[error("bad CRC64 checksum")]
    Checksum,
    #[error("type {kind} does not exist in RDB version {version}")]
    NotInVersion { kind: u8, version: u16 },
    #[error("{what} (type {kind}) is not accepted")]
    Unsupported { kind: u8, what: &'static str },
    #[error("truncated in a {0}")]
    Truncated(&'static str),
    #[error("{0} bytes after the value")]
    Trailing(usize),
    #[error("invalid length encoding")]
    Length,
    #[error("unknown string encoding {0}")]
    Encoding(u8),
    #[error("invalid compressed string: {0}")]
    Compressed(&'static str),
    #[error("invalid listpack: {0}")]
    Listpack(&'static str),
    #[error("invalid intset: {0}")]
    Intset(&'static str),
    #[error("invalid list node: {0}")]
    Node(&'static str),
    #[error("empty {0}")]
    Empty(&'static str),
    #[error("duplicate {0}")]
    Duplicate(&'static str),
    #[error("invalid sorted set score: {0}")]
    Score(&'static str),
}

type Result<T> = std::result::Result<T, DumpError>;

/// Checks a DUMP payload completely: version, checksum, and every byte of
/// the value, which must end exactly at the footer.
pub fn validate(payload: &[u8]) -> Result<()> {
    let value_len = payload.len().checked_sub(FOOTER).ok_or(DumpError::TooShort)?;
    let (value_bytes, footer) = payload.split_at(value_len);
    let (covered, stored) = payload.split_at(value_len + 2);
    let version = u16::from_le_bytes(Reader::new(footer).array("footer")?);
    if version > MAX_RDB_VERSION {
        return Err(DumpError::Version(version));
    }
    if crc64(covered).to_le_bytes() != stored {
        return Err(DumpError::Checksum);
    }
    let mut r = Reader::new(value_bytes);
    let kind = r.byte("type")?;
    if version < introduced(kind) {
        return Err(DumpError::NotInVersion { kind, version });
    }
    value(&mut r, kind)?;
    match r.rest.len() {
        0 => Ok(()),
        left => Err(DumpError::Trailing(left)),
    }
}

/// Redis' CRC64 (Jones polynomial, reflected, no final xor), as in the
/// footer of a DUMP payload.
pub fn crc64(data: &[u8]) -> u64 {
    data.iter().fold(0, |crc, &b| CRC_TABLE[usize::from(crc as u8 ^ b)] ^ (crc >> 8))
}

/// The Jones polynomial 0xad93d23594c935a9, bit-reversed.
const CRC_POLY: u64 = 0x95ac_9329_ac4b_c9b5;

const CRC_TABLE: [u64; 256] = crc_table();

const fn crc_table() -> [u64; 256] {
    let mut table = [0; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ CRC_POLY } else { crc >> 1 };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
}

/// The bytes still to read; every read is checked against them.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    /// The next `n` bytes (`what` names the structure, for the error).
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n).ok_or(DumpError::Truncated(what))?;
        self.rest = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N]> {
        self.take(N, what)?.try_into().map_err(|_| DumpError::Truncated(what))
    }

    fn byte(&mut self, what: &'static str) -> Result<u8> {
        let [b] = self.array(what)?;
        Ok(b)
    }

    fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// The value of type `kind`.
fn value(r: &mut Reader, kind: u8) -> Result<()> {
    match kind {
        STRING => skip_string(r).map(drop),
        SET => plain_set(r),
        HASH => plain_hash(r),
        ZSET_2 => plain_zset(r),
        LIST_QUICKLIST_2 => quicklist(r),
        SET_INTSET => intset(&string(r)?),
        SET_LISTPACK => set_listpack(&string(r)?),
        HASH_LISTPACK => pairs_listpack(&string(r)?, "hash", "hash field", |_| Ok(())),
        ZSET_LISTPACK => pairs_listpack(&string(r)?, "sorted set", "sorted set member", listpack_score),
        _ => Err(DumpError::Unsupported { kind, what: refused_type(kind) }),
    }
}

/// The first RDB version with values of type `kind`: a payload of an older
/// version cannot hold one (Redis 7.0, RDB 10, would not even read a set
/// listpack).
fn introduced(kind: u8) -> u16 {
    match kind {
        HASH_LISTPACK | ZSET_LISTPACK | LIST_QUICKLIST_2 => 10,
        SET_LISTPACK => 11,
        _ => 0,
    }
}

/// What a type this module does not accept is.
fn refused_type(kind: u8) -> &'static str {
    match kind {
        1 | 3 | 9 | 10 | 12 | 13 | 14 => "an encoding older than Redis 7 (linked list, ziplist, zipmap, quicklist 1)",
        6 | 7 => "a module value",
        15 | 19 | 21 => "a stream",
        22..=25 => "a hash with field expirations",
        245 | 246 => "a function library",
        _ => "an unknown type",
    }
}

/// An RDB length field.
enum Length {
    /// A count or a size.
    Plain(u64),
    /// (`11xxxxxx`) The encoding of a special string: an integer or LZF.
    Special(u8),
}

fn length(r: &mut Reader) -> Result<Length> {
    let first = r.byte("length")?;
    let length = match (first >> 6, first) {
        (0, _) => Length::Plain(u64::from(first & 0x3f)),
        (1, _) => Length::Plain(u64::from(first & 0x3f) << 8 | u64::from(r.byte("length")?)),
        (3, _) => Length::Special(first & 0x3f),
        (_, 0x80) => Length::Plain(u32::from_be_bytes(r.array("length")?).into()),
        (_, 0x81) => Length::Plain(u64::from_be_bytes(r.array("length")?)),
        _ => return Err(DumpError::Length),
    };
    Ok(length)
}

/// A length that must be a count or a size.
fn count(r: &mut Reader) -> Result<usize> {
    match length(r)? {
        Length::Plain(n) => usize::try_from(n).map_err(|_| DumpError::Length),
        Length::Special(_) => Err(DumpError::Length),
    }
}

/// The element count of a collection, which may not be empty.
fn elements(r: &mut Reader, what: &'static str) -> Result<usize> {
    match count(r)? {
        0 => Err(DumpError::Empty(what)),
        n => Ok(n),
    }
}

/// An RDB string, for its content: as stored, an integer in decimal (as
/// Redis compares it), or decompressed.
fn string<'a>(r: &mut Reader<'a>) -> Result<Cow<'a, [u8]>> {
    match length(r)? {
        Length::Plain(n) => Ok(Cow::Borrowed(r.take(size(n)?, "string")?)),
        Length::Special(ENCODING_LZF) => {
            let (packed, len) = compressed(r)?;
            if len > MAX_INSPECTED {
                return Err(DumpError::Compressed("a member, field or listpack over 16 MiB decompressed"));
            }
            let mut out = Vec::new();
            lzf(packed, len, Some(&mut out))?;
            Ok(Cow::Owned(out))
        }
        Length::Special(encoding) => Ok(Cow::Owned(integer(r, encoding)?.to_string().into_bytes())),
    }
}

/// An RDB string whose content nothing checks (a string value, a hash
/// value, a plain list node): only its length, without keeping it.
fn skip_string(r: &mut Reader) -> Result<usize> {
    match length(r)? {
        Length::Plain(n) => Ok(r.take(size(n)?, "string")?.len()),
        Length::Special(ENCODING_LZF) => {
            let (packed, len) = compressed(r)?;
            lzf(packed, len, None)?;
            Ok(len)
        }
        Length::Special(encoding) => Ok(integer(r, encoding)?.to_string().len()),
    }
}

/// A size read from the payload, as `usize` (one that does not fit cannot
/// be in the payload either).
fn size(n: u64) -> Result<usize> {
    usize::try_from(n).map_err(|_| DumpError::Truncated("string"))
}

/// An integer-encoded string: 8, 16 or 32 bits, little endian.
fn integer(r: &mut Reader, encoding: u8) -> Result<i64> {
    match encoding {
        0 => Ok(i8::from_le_bytes(r.array("integer")?).into()),
        1 => Ok(i16::from_le_bytes(r.array("integer")?).into()),
        2 => Ok(i32::from_le_bytes(r.array("integer")?).into()),
        _ => Err(DumpError::Encoding(encoding)),
    }
}

/// A compressed string's stream and its declared decompressed length.
fn compressed<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], usize)> {
    let packed_len = count(r)?;
    let len = count(r)?;
    Ok((r.take(packed_len, "compressed string")?, len))
}

/// Decompresses an LZF stream into `out`, or only checks it when `out` is
/// `None`: it must be read to its end and produce exactly `len` bytes, and
/// every back reference must point into what it produced. `out` grows with
/// what the stream produces, never past `len`.
fn lzf(packed: &[u8], len: usize, mut out: Option<&mut Vec<u8>>) -> Result<()> {
    let mut r = Reader::new(packed);
    let mut produced = 0;
    while !r.is_empty() {
        let control = r.byte("compressed string")?;
        if control < 32 {
            let literal = r.take(usize::from(control) + 1, "compressed string")?;
            produced = within(produced, literal.len(), len)?;
            if let Some(out) = out.as_deref_mut() {
                out.extend_from_slice(literal);
            }
            continue;
        }
        let mut run = usize::from(control >> 5);
        if run == 7 {
            run += usize::from(r.byte("compressed string")?);
        }
        let distance = (usize::from(control & 0x1f) << 8 | usize::from(r.byte("compressed string")?)) + 1;
        if distance > produced {
            return Err(DumpError::Compressed("reference before the start"));
        }
        produced = within(produced, run + 2, len)?;
        if let Some(out) = out.as_deref_mut() {
            copy_back(out, distance, run + 2);
        }
    }
    match produced == len {
        true => Ok(()),
        false => Err(DumpError::Compressed("shorter than its declared length")),
    }
}

/// `produced + more`, if within the declared `len`.
fn within(produced: usize, more: usize, len: usize) -> Result<usize> {
    match produced + more {
        total if total <= len => Ok(total),
        _ => Err(DumpError::Compressed("longer than its declared length")),
    }
}

/// Appends `n` bytes copied from `distance` back (`distance <= out.len()`);
/// the copy may overlap what it appends, byte by byte.
fn copy_back(out: &mut Vec<u8>, distance: usize, n: usize) {
    let start = out.len() - distance;
    for i in start..start + n {
        let byte = out[i];
        out.push(byte);
    }
}

/// Members seen so far in a collection, to refuse a second equal one: kept
/// as two independent keyed hashes (128 bits; the keys are random, so no
/// payload can be crafted to collide), whatever the members' sizes.
struct Distinct {
    seen: HashSet<u128>,
    keys: (RandomState, RandomState),
    what: &'static str,
}

impl Distinct {
    fn new(what: &'static str) -> Distinct {
        Distinct { seen: HashSet::new(), keys: (RandomState::new(), RandomState::new()), what }
    }

    fn insert(&mut self, member: Cow<'_, [u8]>) -> Result<()> {
        let digest = u128::from(self.keys.0.hash_one(&*member)) << 64 | u128::from(self.keys.1.hash_one(&*member));
        match self.seen.insert(digest) {
            true => Ok(()),
            false => Err(DumpError::Duplicate(self.what)),
        }
    }
}

/// SET: a count, then the members.
fn plain_set(r: &mut Reader) -> Result<()> {
    let mut members = Distinct::new("set member");
    for _ in 0..elements(r, "set")? {
        members.insert(string(r)?)?;
    }
    Ok(())
}

/// HASH: a count of pairs, then each field and value.
fn plain_hash(r: &mut Reader) -> Result<()> {
    let mut fields = Distinct::new("hash field");
    for _ in 0..elements(r, "hash")? {
        fields.insert(string(r)?)?;
        skip_string(r)?;
    }
    Ok(())
}

/// ZSET_2: a count, then each member and its score (a little-endian
/// double, never NaN).
fn plain_zset(r: &mut Reader) -> Result<()> {
    let mut members = Distinct::new("sorted set member");
    for _ in 0..elements(r, "sorted set")? {
        members.insert(string(r)?)?;
        if f64::from_le_bytes(r.array("score")?).is_nan() {
            return Err(DumpError::Score("NaN"));
        }
    }
    Ok(())
}

/// LIST_QUICKLIST_2: a count of nodes, each a container kind then a
/// string: one element (plain), or a listpack of elements (packed). Redis
/// writes no empty node.
fn quicklist(r: &mut Reader) -> Result<()> {
    for _ in 0..elements(r, "list")? {
        let empty = match count(r)? {
            NODE_PLAIN => skip_string(r)? == 0,
            NODE_PACKED => listpack(&string(r)?, |_, _| Ok(()))? == 0,
            _ => return Err(DumpError::Node("unknown container")),
        };
        if empty {
            return Err(DumpError::Node("empty"));
        }
    }
    Ok(())
}

/// An intset: encoding (2, 4 or 8 bytes per integer) and count, both 32-bit
/// little endian, then the integers, strictly ascending.
fn intset(blob: &[u8]) -> Result<()> {
    let mut r = Reader::new(blob);
    let width = u32::from_le_bytes(r.array("intset header")?);
    let len = u32::from_le_bytes(r.array("intset header")?);
    if !matches!(width, 2 | 4 | 8) {
        return Err(DumpError::Intset("unknown encoding"));
    }
    if len == 0 {
        return Err(DumpError::Empty("set"));
    }
    if r.rest.len() as u64 != u64::from(len) * u64::from(width) {
        return Err(DumpError::Intset("count does not match its size"));
    }
    let values = r.rest.chunks_exact(width as usize).map(signed_le);
    match values.clone().zip(values.skip(1)).any(|(a, b)| a >= b) {
        true => Err(DumpError::Intset("not strictly ascending")),
        false => Ok(()),
    }
}

/// A little-endian two's complement integer of 1 to 8 bytes.
fn signed_le(bytes: &[u8]) -> i64 {
    let mut wide = [0; 8];
    for (to, from) in wide.iter_mut().zip(bytes) {
        *to = *from;
    }
    sign_extend(u64::from_le_bytes(wide), bytes.len() as u32 * 8)
}

/// The low `bits` of `value` as a two's complement integer.
fn sign_extend(value: u64, bits: u32) -> i64 {
    let unused = 64 - bits;
    ((value << unused) as i64) >> unused
}

/// One element of a listpack.
#[derive(Clone, Copy)]
enum Element<'a> {
    Int(i64),
    Str(&'a [u8]),
}

impl<'a> Element<'a> {
    /// The element as Redis compares it: integers in decimal.
    fn bytes(self) -> Cow<'a, [u8]> {
        match self {
            Element::Int(v) => Cow::Owned(v.to_string().into_bytes()),
            Element::Str(s) => Cow::Borrowed(s),
        }
    }
}

/// A set as a listpack: distinct members, at least one.
fn set_listpack(blob: &[u8]) -> Result<()> {
    let mut members = Distinct::new("set member");
    match listpack(blob, |_, element| members.insert(element.bytes()))? {
        0 => Err(DumpError::Empty("set")),
        _ => Ok(()),
    }
}

/// A hash or sorted set as a listpack: field (member) and value (score)
/// alternating, fields distinct, each value checked by `check_value`, at
/// least one pair.
fn pairs_listpack<'a>(
    blob: &'a [u8],
    what: &'static str,
    field: &'static str,
    mut check_value: impl FnMut(Element<'a>) -> Result<()>,
) -> Result<()> {
    let mut fields = Distinct::new(field);
    let count = listpack(blob, |i, element| match i % 2 {
        0 => fields.insert(element.bytes()),
        _ => check_value(element),
    })?;
    match count {
        0 => Err(DumpError::Empty(what)),
        n if n % 2 == 1 => Err(DumpError::Listpack("a field without its value")),
        _ => Ok(()),
    }
}

/// A sorted set score in a listpack: an integer, or a string that reads as
/// a number (not NaN).
fn listpack_score(element: Element) -> Result<()> {
    let Element::Str(text) = element else {
        return Ok(());
    };
    let score: f64 =
        std::str::from_utf8(text).ok().and_then(|t| t.parse().ok()).ok_or(DumpError::Score("not a number"))?;
    match score.is_nan() {
        true => Err(DumpError::Score("NaN")),
        false => Ok(()),
    }
}

/// Walks a listpack: its header (total bytes, 32-bit, which must be its
/// size; element count, 16-bit, or 65535 when unknown), every entry, and
/// the terminator, which must be its last byte. `each` sees every element
/// with its index. Returns the element count.
fn listpack<'a>(blob: &'a [u8], mut each: impl FnMut(usize, Element<'a>) -> Result<()>) -> Result<usize> {
    let mut r = Reader::new(blob);
    let total = u32::from_le_bytes(r.array("listpack header")?);
    let declared = u16::from_le_bytes(r.array("listpack header")?);
    if usize::try_from(total) != Ok(blob.len()) {
        return Err(DumpError::Listpack("total bytes do not match its size"));
    }
    let entries = r.rest.strip_suffix(&[LISTPACK_END]).ok_or(DumpError::Listpack("no terminator"))?;
    let mut r = Reader::new(entries);
    let mut count = 0;
    while !r.is_empty() {
        each(count, entry(&mut r)?)?;
        count += 1;
    }
    if declared != LISTPACK_COUNT_UNKNOWN && usize::from(declared) != count {
        return Err(DumpError::Listpack("element count does not match its header"));
    }
    Ok(count)
}

/// One listpack entry: encoding, content, then its own size as a back
/// length, which must be the exact encoding Redis writes.
fn entry<'a>(r: &mut Reader<'a>) -> Result<Element<'a>> {
    const WHAT: &str = "listpack entry";
    let before = r.rest.len();
    let first = r.byte(WHAT)?;
    let element = match first {
        0x00..=0x7f => Element::Int(first.into()),
        0x80..=0xbf => Element::Str(r.take(usize::from(first & 0x3f), WHAT)?),
        0xc0..=0xdf => Element::Int(sign_extend(u64::from(first & 0x1f) << 8 | u64::from(r.byte(WHAT)?), 13)),
        0xe0..=0xef => {
            let len = usize::from(first & 0x0f) << 8 | usize::from(r.byte(WHAT)?);
            Element::Str(r.take(len, WHAT)?)
        }
        0xf0 => {
            let len = u32::from_le_bytes(r.array(WHAT)?);
            Element::Str(r.take(size(len.into())?, WHAT)?)
        }
        0xf1 => Element::Int(signed_le(&r.array::<2>(WHAT)?)),
        0xf2 => Element::Int(signed_le(&r.array::<3>(WHAT)?)),
        0xf3 => Element::Int(signed_le(&r.array::<4>(WHAT)?)),
        0xf4 => Element::Int(signed_le(&r.array::<8>(WHAT)?)),
        LISTPACK_END => return Err(DumpError::Listpack("terminator before its end")),
        _ => return Err(DumpError::Listpack("unknown entry encoding")),
    };
    let (expected, n) = back_length(before - r.rest.len());
    if r.take(n, WHAT)? != &expected[..n] {
        return Err(DumpError::Listpack("back length does not match its entry"));
    }
    Ok(element)
}

/// A listpack entry's size as Redis writes it after the entry, 7 bits a
/// byte, most significant first, every byte but the first with its top bit
/// set: the bytes and how many are used.
fn back_length(size: usize) -> ([u8; 5], usize) {
    let n = match size {
        0..=127 => 1,
        128..=16_382 => 2,
        16_383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    };
    let mut bytes = [0; 5];
    for (i, byte) in bytes.iter_mut().take(n).enumerate() {
        let bits = (size >> (7 * (n - 1 - i))) as u8 & 0x7f;
        *byte = if i == 0 { bits } else { bits | 0x80 };
    }
    (bytes, n)
}

#[cfg(test)]
mod tests;
