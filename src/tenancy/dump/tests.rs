//! Tests of DUMP payload validation, on payloads built by hand: every
//! accepted encoding, every refusal, and fuzz-style sweeps (every byte
//! replaced, every truncation, random edits) that must never panic.

use super::*;

/// A payload around `value` (type byte first): RDB version 11 and the CRC64.
fn payload(value: &[u8]) -> Vec<u8> {
    sealed(value, 11)
}

fn sealed(value: &[u8], version: u16) -> Vec<u8> {
    let mut out = value.to_vec();
    out.extend_from_slice(&version.to_le_bytes());
    let crc = crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// An RDB length, in the shortest form.
fn len(n: usize) -> Vec<u8> {
    match n {
        0..=63 => vec![n as u8],
        64..=16383 => vec![0x40 | (n >> 8) as u8, n as u8],
        _ => [&[0x80][..], &(n as u32).to_be_bytes()].concat(),
    }
}

/// An RDB string stored as is.
fn raw(s: &[u8]) -> Vec<u8> {
    [len(s.len()), s.to_vec()].concat()
}

/// An RDB string compressed as `stream`, declared to expand to `n` bytes.
fn lzf_string(stream: &[u8], n: usize) -> Vec<u8> {
    [vec![0xc3], len(stream.len()), len(n), stream.to_vec()].concat()
}

/// "abc" ten times, as LZF: a literal, then a back reference of 27 bytes.
const ABC_STREAM: [u8; 7] = [2, b'a', b'b', b'c', 0xe0, 18, 2];

/// `s` compressed as literal runs only.
fn lzf_literals(s: &[u8]) -> Vec<u8> {
    let stream: Vec<u8> = s.chunks(32).flat_map(|c| [&[c.len() as u8 - 1][..], c].concat()).collect();
    lzf_string(&stream, s.len())
}

/// A listpack element to build.
#[derive(Clone, Copy)]
enum E<'a> {
    I(i64),
    S(&'a [u8]),
}

/// A listpack of `entries`, each in its shortest encoding.
fn listpack(entries: &[E]) -> Vec<u8> {
    listpack_counted(entries, entries.len() as u16)
}

fn listpack_counted(entries: &[E], count: u16) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| entry_bytes(*e)).collect();
    let total = (6 + body.len() + 1) as u32;
    [&total.to_le_bytes()[..], &count.to_le_bytes(), &body, &[0xff]].concat()
}

fn entry_bytes(e: E) -> Vec<u8> {
    let mut out = match e {
        E::I(v @ 0..=127) => vec![v as u8],
        E::I(v @ -4096..=4095) => vec![0xc0 | ((v >> 8) as u8 & 0x1f), v as u8],
        E::I(v) if i16::try_from(v).is_ok() => [&[0xf1][..], &(v as i16).to_le_bytes()].concat(),
        E::I(v) if (-(1 << 23)..1 << 23).contains(&v) => [&[0xf2][..], &v.to_le_bytes()[..3]].concat(),
        E::I(v) if i32::try_from(v).is_ok() => [&[0xf3][..], &(v as i32).to_le_bytes()].concat(),
        E::I(v) => [&[0xf4][..], &v.to_le_bytes()].concat(),
        E::S(s) if s.len() < 64 => [&[0x80 | s.len() as u8][..], s].concat(),
        E::S(s) if s.len() < 4096 => [&[0xe0 | (s.len() >> 8) as u8, s.len() as u8][..], s].concat(),
        E::S(s) => [&[0xf0][..], &(s.len() as u32).to_le_bytes(), s].concat(),
    };
    let (back, n) = back_length(out.len());
    out.extend_from_slice(&back[..n]);
    out
}

fn intset(width: u32, values: &[i64]) -> Vec<u8> {
    let mut out = [width.to_le_bytes(), (values.len() as u32).to_le_bytes()].concat();
    for v in values {
        out.extend_from_slice(&v.to_le_bytes()[..width as usize]);
    }
    out
}

fn typed(kind: u8, parts: &[Vec<u8>]) -> Vec<u8> {
    [vec![kind], parts.concat()].concat()
}

/// Values of every accepted type and encoding (type byte first).
fn valid_values() -> Vec<(&'static str, Vec<u8>)> {
    let long = [b'x'; 100];
    let huge = vec![b'y'; 300];
    vec![
        ("string", typed(STRING, &[raw(b"hello")])),
        ("empty string", typed(STRING, &[raw(b"")])),
        ("int8 string", vec![STRING, 0xc0, 0xfe]),
        ("int16 string", vec![STRING, 0xc1, 0x34, 0x12]),
        ("int32 string", vec![STRING, 0xc2, 1, 2, 3, 0x84]),
        ("compressed string", typed(STRING, &[lzf_string(&ABC_STREAM, 30)])),
        ("literal-compressed string", typed(STRING, &[lzf_literals(&[7; 70])])),
        ("large string", typed(STRING, &[raw(&huge)])),
        ("set", typed(SET, &[len(3), raw(b"a"), raw(b"bb"), vec![0xc0, 7]])),
        ("hash", typed(HASH, &[len(2), raw(b"f1"), raw(b"v1"), raw(b"f2"), lzf_string(&ABC_STREAM, 30)])),
        (
            "zset",
            typed(
                ZSET_2,
                &[
                    len(2),
                    raw(b"m1"),
                    1.5f64.to_le_bytes().to_vec(),
                    raw(b"m2"),
                    f64::NEG_INFINITY.to_le_bytes().to_vec(),
                ],
            ),
        ),
        ("intset16", typed(SET_INTSET, &[raw(&intset(2, &[-3, 5, 1000]))])),
        ("intset32", typed(SET_INTSET, &[raw(&intset(4, &[-70000, 70000]))])),
        ("intset64", typed(SET_INTSET, &[raw(&intset(8, &[i64::MIN, 0, i64::MAX]))])),
        ("set listpack", typed(SET_LISTPACK, &[raw(&listpack(&[E::S(b"a"), E::I(5), E::S(&long)]))])),
        (
            "hash listpack",
            typed(
                HASH_LISTPACK,
                &[raw(&listpack(&[E::S(b"f"), E::S(b"v"), E::I(1), E::I(-5000), E::S(b"g"), E::I(i64::MIN)]))],
            ),
        ),
        (
            "zset listpack",
            typed(
                ZSET_LISTPACK,
                &[raw(&listpack(&[
                    E::S(b"m"),
                    E::I(3),
                    E::S(b"n"),
                    E::S(b"2.5"),
                    E::S(b"o"),
                    E::S(b"-inf"),
                    E::I(70000),
                    E::I(-100_000),
                ]))],
            ),
        ),
        (
            "list",
            typed(
                LIST_QUICKLIST_2,
                &[
                    len(3),
                    len(NODE_PACKED),
                    raw(&listpack(&[E::S(b"a"), E::I(1), E::S(&long), E::I(1 << 40), E::I(-200)])),
                    len(NODE_PLAIN),
                    raw(b"a plain element"),
                    len(NODE_PACKED),
                    lzf_literals(&listpack(&[E::S(b"compressed node"), E::S(&[b'z'; 300])])),
                ],
            ),
        ),
        ("listpack with an unknown count", typed(SET_LISTPACK, &[raw(&listpack_counted(&[E::S(b"a")], u16::MAX))])),
    ]
}

fn refused(value: &[u8]) -> DumpError {
    validate(&payload(value)).expect_err("refused")
}

#[test]
fn crc64_is_redis_jones_crc() {
    assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
    assert_eq!(crc64(b""), 0);
}

#[test]
fn back_lengths_match_redis() {
    let cases: [(usize, &[u8]); 7] = [
        (1, &[1]),
        (127, &[127]),
        (128, &[1, 0x80]),
        (200, &[1, 0xc8]),
        (16_382, &[0x7f, 0xfe]),
        (16_383, &[0, 0xff, 0xff]),
        (2_097_151, &[0, 0xff, 0xff, 0xff]),
    ];
    for (size, expected) in cases {
        let (bytes, n) = back_length(size);
        assert_eq!(&bytes[..n], expected, "{size}");
    }
}

#[test]
fn every_accepted_encoding_is_accepted() {
    for (name, value) in valid_values() {
        assert_eq!(validate(&payload(&value)), Ok(()), "{name}");
    }
    assert_eq!(validate(&sealed(&typed(STRING, &[raw(b"v")]), 9)), Ok(()), "older versions hold strings");
    let long_lengths = [vec![STRING, 0x80, 0, 0, 0, 1, b'x'], vec![STRING, 0x81, 0, 0, 0, 0, 0, 0, 0, 1, b'x']];
    for value in long_lengths {
        assert_eq!(validate(&payload(&value)), Ok(()), "32- and 64-bit lengths");
    }
}

#[test]
fn footer_is_checked() {
    let good = payload(&typed(STRING, &[raw(b"v")]));
    assert_eq!(validate(&good[..9]), Err(DumpError::TooShort));
    assert_eq!(validate(&sealed(&[], 11)), Err(DumpError::Truncated("type")));
    assert_eq!(validate(&sealed(&typed(STRING, &[raw(b"v")]), 12)), Err(DumpError::Version(12)));
    let mut bad_crc = good.clone();
    *bad_crc.last_mut().expect("footer") ^= 1;
    assert_eq!(validate(&bad_crc), Err(DumpError::Checksum));
    let mut zero_crc = good.clone();
    let n = zero_crc.len();
    zero_crc[n - 8..].fill(0);
    assert_eq!(validate(&zero_crc), Err(DumpError::Checksum), "a zero CRC is no exception");
    assert_eq!(refused(&typed(STRING, &[raw(b"v"), vec![0]])), DumpError::Trailing(1));
}

#[test]
fn types_other_than_modern_encodings_are_refused() {
    let what = |kind| match refused(&[kind, 0, 0, 0]) {
        DumpError::Unsupported { kind: k, what } if k == kind => what,
        other => panic!("type {kind}: {other}"),
    };
    for kind in [1, 3, 9, 10, 12, 13, 14] {
        assert!(what(kind).contains("older than Redis 7"), "{kind}");
    }
    assert!(what(7).contains("module"));
    assert!(what(15).contains("stream") && what(21).contains("stream"));
    assert!(what(245).contains("function"));
    assert!(what(25).contains("field expirations"));
    assert!(what(99).contains("unknown"));
    let set_listpack = typed(SET_LISTPACK, &[raw(&listpack(&[E::S(b"a")]))]);
    assert_eq!(validate(&sealed(&set_listpack, 10)), Err(DumpError::NotInVersion { kind: SET_LISTPACK, version: 10 }));
    let hash_listpack = typed(HASH_LISTPACK, &[raw(&listpack(&[E::S(b"f"), E::S(b"v")]))]);
    assert_eq!(validate(&sealed(&hash_listpack, 9)), Err(DumpError::NotInVersion { kind: HASH_LISTPACK, version: 9 }));
}

#[test]
fn strings_are_refused_when_malformed() {
    assert_eq!(refused(&[STRING, 0x82, 0, 0, 0, 1]), DumpError::Length);
    assert_eq!(refused(&[STRING, 0xc4, 1]), DumpError::Encoding(4));
    assert_eq!(refused(&[STRING, 5, b'a']), DumpError::Truncated("string"));
    assert_eq!(refused(&[STRING, 0xc1, 1]), DumpError::Truncated("integer"));
    assert_eq!(
        refused(&[STRING, 0x81, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        DumpError::Truncated("string")
    );
    let compressed = |stream: &[u8], n| refused(&typed(STRING, &[lzf_string(stream, n)]));
    assert_eq!(compressed(&ABC_STREAM, 31), DumpError::Compressed("shorter than its declared length"));
    assert_eq!(compressed(&ABC_STREAM, 29), DumpError::Compressed("longer than its declared length"));
    assert_eq!(compressed(&[2, b'a', b'b', b'c', 0x20, 3], 30), DumpError::Compressed("reference before the start"));
    assert_eq!(compressed(&[0x20, 0], 3), DumpError::Compressed("reference before the start"));
    assert_eq!(compressed(&[2, b'a', b'b', b'c', 0xe0, 18], 30), DumpError::Truncated("compressed string"));
    assert_eq!(compressed(&[5, b'a'], 6), DumpError::Truncated("compressed string"));
    assert_eq!(refused(&[STRING, 0xc3, 10, 3, 1, b'a']), DumpError::Truncated("compressed string"));
    assert_eq!(refused(&[STRING, 0xc3, 0xc0, 3]), DumpError::Length, "a compressed size must be a plain length");
}

#[test]
fn compressed_strings_decompress_like_lzf() {
    let mut out = Vec::new();
    lzf(&ABC_STREAM, 30, Some(&mut out)).expect("valid");
    assert_eq!(out, b"abc".repeat(10));
    let value = typed(SET, &[len(2), lzf_string(&ABC_STREAM, 30), raw(&b"abc".repeat(10))]);
    assert_eq!(refused(&value), DumpError::Duplicate("set member"), "members compare decompressed");
    let huge = typed(SET, &[len(1), lzf_string(&ABC_STREAM, 17 * 1024 * 1024)]);
    let over = DumpError::Compressed("a member, field or listpack over 16 MiB decompressed");
    assert_eq!(refused(&huge), over, "refused before decompressing anything");
}

#[test]
fn plain_collections_are_refused_when_malformed() {
    assert_eq!(refused(&[SET, 0]), DumpError::Empty("set"));
    assert_eq!(refused(&[HASH, 0]), DumpError::Empty("hash"));
    assert_eq!(refused(&[ZSET_2, 0]), DumpError::Empty("sorted set"));
    assert_eq!(refused(&[LIST_QUICKLIST_2, 0]), DumpError::Empty("list"));
    assert_eq!(refused(&[SET, 0xc1]), DumpError::Length, "a count must be a plain length");
    assert_eq!(refused(&typed(SET, &[len(2), raw(b"7"), vec![0xc0, 7]])), DumpError::Duplicate("set member"));
    assert_eq!(refused(&typed(SET, &[len(3), raw(b"a"), raw(b"b")])), DumpError::Truncated("length"));
    let hash = typed(HASH, &[len(2), raw(b"f"), raw(b"1"), raw(b"f"), raw(b"2")]);
    assert_eq!(refused(&hash), DumpError::Duplicate("hash field"));
    let same_value = typed(HASH, &[len(2), raw(b"f"), raw(b"1"), raw(b"g"), raw(b"1")]);
    assert_eq!(validate(&payload(&same_value)), Ok(()), "values may repeat");
    let nan = typed(ZSET_2, &[len(1), raw(b"m"), f64::NAN.to_le_bytes().to_vec()]);
    assert_eq!(refused(&nan), DumpError::Score("NaN"));
    let zset = typed(ZSET_2, &[len(2), raw(b"m"), 1f64.to_le_bytes().to_vec(), raw(b"m"), 2f64.to_le_bytes().to_vec()]);
    assert_eq!(refused(&zset), DumpError::Duplicate("sorted set member"));
    assert_eq!(refused(&typed(ZSET_2, &[len(1), raw(b"m"), vec![0; 7]])), DumpError::Truncated("score"));
}

#[test]
fn quicklist_nodes_are_checked() {
    let list = |nodes: &[Vec<u8>]| typed(LIST_QUICKLIST_2, &[len(nodes.len() / 2), nodes.concat()]);
    let node = raw(&listpack(&[E::S(b"a")]));
    assert_eq!(refused(&list(&[len(3), node.clone()])), DumpError::Node("unknown container"));
    assert_eq!(refused(&list(&[len(NODE_PLAIN), raw(b"")])), DumpError::Node("empty"));
    assert_eq!(refused(&list(&[len(NODE_PACKED), raw(&listpack(&[]))])), DumpError::Node("empty"));
    assert_eq!(
        refused(&list(&[len(NODE_PACKED), raw(b"not a listpack")])),
        DumpError::Listpack("total bytes do not match its size")
    );
    let value = list(&[len(NODE_PACKED), node.clone(), len(NODE_PACKED), node]);
    assert_eq!(validate(&payload(&value)), Ok(()), "list elements may repeat");
}

#[test]
fn listpacks_are_checked_entry_by_entry() {
    let set = |lp: &[u8]| refused(&typed(SET_LISTPACK, &[raw(lp)]));
    let good = listpack(&[E::S(b"ab"), E::I(300)]);
    let mut wrong_total = good.clone();
    wrong_total[0] += 1;
    assert_eq!(set(&wrong_total), DumpError::Listpack("total bytes do not match its size"));
    assert_eq!(set(&good[..5]), DumpError::Truncated("listpack header"));
    let mut no_end = good.clone();
    *no_end.last_mut().expect("end") = 0;
    assert_eq!(set(&no_end), DumpError::Listpack("no terminator"));
    let mut early_end = good.clone();
    early_end[6] = 0xff;
    assert_eq!(set(&early_end), DumpError::Listpack("terminator before its end"));
    let mut unknown = good.clone();
    unknown[6] = 0xf5;
    assert_eq!(set(&unknown), DumpError::Listpack("unknown entry encoding"));
    let mut back = good.clone();
    back[9] = 4;
    assert_eq!(set(&back), DumpError::Listpack("back length does not match its entry"));
    let mut long = good.clone();
    long[6] = 0x87;
    assert_eq!(set(&long), DumpError::Truncated("listpack entry"));
    assert_eq!(
        set(&listpack_counted(&[E::S(b"a"), E::S(b"b")], 3)),
        DumpError::Listpack("element count does not match its header")
    );
    let mut trailing = listpack(&[E::S(b"a")]);
    trailing.splice(trailing.len() - 1..trailing.len() - 1, [0, 1]);
    trailing[0] += 2;
    assert_eq!(
        set(&trailing),
        DumpError::Listpack("element count does not match its header"),
        "a stray 7-bit entry is counted"
    );
}

#[test]
fn listpack_collections_follow_redis_deep_sanitization() {
    let lp = |kind, entries: &[E]| refused(&typed(kind, &[raw(&listpack(entries))]));
    assert_eq!(lp(SET_LISTPACK, &[]), DumpError::Empty("set"));
    assert_eq!(lp(HASH_LISTPACK, &[]), DumpError::Empty("hash"));
    assert_eq!(lp(ZSET_LISTPACK, &[]), DumpError::Empty("sorted set"));
    assert_eq!(lp(SET_LISTPACK, &[E::S(b"12"), E::I(12)]), DumpError::Duplicate("set member"));
    assert_eq!(
        lp(HASH_LISTPACK, &[E::S(b"f"), E::S(b"v"), E::S(b"g")]),
        DumpError::Listpack("a field without its value")
    );
    assert_eq!(lp(HASH_LISTPACK, &[E::I(-3), E::S(b"v"), E::S(b"-3"), E::S(b"w")]), DumpError::Duplicate("hash field"));
    assert_eq!(
        lp(ZSET_LISTPACK, &[E::S(b"m"), E::I(1), E::S(b"m"), E::I(2)]),
        DumpError::Duplicate("sorted set member")
    );
    assert_eq!(lp(ZSET_LISTPACK, &[E::S(b"m"), E::S(b"x1")]), DumpError::Score("not a number"));
    assert_eq!(lp(ZSET_LISTPACK, &[E::S(b"m"), E::S(b"nan")]), DumpError::Score("NaN"));
    assert_eq!(lp(ZSET_LISTPACK, &[E::S(b"m"), E::S(&[0xff, b'1'])]), DumpError::Score("not a number"));
    let values_repeat = typed(HASH_LISTPACK, &[raw(&listpack(&[E::S(b"f"), E::I(1), E::S(b"g"), E::I(1)]))]);
    assert_eq!(validate(&payload(&values_repeat)), Ok(()));
}

#[test]
fn intsets_are_checked() {
    let set = |blob: &[u8]| refused(&typed(SET_INTSET, &[raw(blob)]));
    assert_eq!(set(&intset(3, &[1])), DumpError::Intset("unknown encoding"));
    assert_eq!(set(&intset(2, &[])), DumpError::Empty("set"));
    assert_eq!(set(&intset(2, &[2, 1])), DumpError::Intset("not strictly ascending"));
    assert_eq!(set(&intset(4, &[5, 5])), DumpError::Intset("not strictly ascending"));
    let mut short = intset(2, &[1, 2]);
    short.pop();
    assert_eq!(set(&short), DumpError::Intset("count does not match its size"));
    assert_eq!(set(&[2, 0, 0]), DumpError::Truncated("intset header"));
    let mut huge_count = intset(8, &[1]);
    huge_count[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(set(&huge_count), DumpError::Intset("count does not match its size"));
}

/// Every byte of every value replaced by each of the 255 other values and
/// the payload sealed again with a correct CRC (as an attacker would): never
/// a panic. (Whether Redis agrees with each verdict is tested against a real
/// server in tests/restore.rs.)
#[test]
fn every_single_byte_replacement_is_handled() {
    let (mut tried, mut accepted) = (0, 0);
    for (name, value) in valid_values() {
        for i in 0..value.len().min(400) {
            for b in (0..=255u8).filter(|&b| b != value[i]) {
                let mut mutant = value.clone();
                mutant[i] = b;
                tried += 1;
                if validate(&payload(&mutant)).is_ok() {
                    accepted += 1;
                    let types = [STRING, SET, HASH, ZSET_2, SET_INTSET, HASH_LISTPACK, ZSET_LISTPACK, LIST_QUICKLIST_2];
                    assert!(i > 0 || types.contains(&b) || b == SET_LISTPACK, "{name}: type {b} accepted");
                }
            }
        }
    }
    println!("{tried} single-byte replacements, {accepted} still valid (mostly string contents)");
}

/// The bytes that frame a listpack (its total size, its terminator) or an
/// intset (its encoding and count): every replacement is refused.
#[test]
fn framing_bytes_refuse_every_replacement() {
    let lp = listpack(&[E::S(b"f"), E::I(1), E::S(b"g"), E::S(b"2.5")]);
    let framed = [
        (SET_LISTPACK, lp.clone(), vec![0, 1, 2, 3, lp.len() - 1]),
        (HASH_LISTPACK, lp.clone(), vec![0, 1, 2, 3, lp.len() - 1]),
        (ZSET_LISTPACK, lp.clone(), vec![0, 1, 2, 3, lp.len() - 1]),
        (SET_INTSET, intset(4, &[1, 2, 3]), (0..8).collect()),
    ];
    for (kind, blob, positions) in framed {
        let value = typed(kind, &[raw(&blob)]);
        let offset = value.len() - blob.len();
        for at in positions {
            for b in (0..=255u8).filter(|&b| b != blob[at]) {
                let mut mutant = value.clone();
                mutant[offset + at] = b;
                assert!(validate(&payload(&mutant)).is_err(), "type {kind}: byte {at} = {b} accepted");
            }
        }
    }
}

/// Without a new CRC, every change to a payload is refused.
#[test]
fn every_single_byte_flip_breaks_the_checksum() {
    for (name, value) in valid_values() {
        let good = payload(&value);
        for i in 0..good.len().min(300) {
            for flip in [0x01, 0x80, 0xff] {
                let mut mutant = good.clone();
                mutant[i] ^= flip;
                assert!(validate(&mutant).is_err(), "{name}: byte {i} ^ {flip:#x} accepted");
            }
        }
    }
}

/// Every truncation of every value is refused, checksum resealed or not.
#[test]
fn every_truncation_is_refused() {
    for (name, value) in valid_values() {
        let good = payload(&value);
        for n in 0..good.len() {
            assert!(validate(&good[..n]).is_err(), "{name}: payload cut at {n}");
        }
        for n in 0..value.len() {
            assert!(validate(&payload(&value[..n])).is_err(), "{name}: value cut at {n}, resealed");
        }
    }
}

/// Random edits (replaced, inserted and removed bytes, several at once),
/// resealed: never a panic.
#[test]
fn random_edits_never_panic() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |below: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % below.max(1) as u64) as usize
    };
    for (_, value) in valid_values() {
        for _ in 0..3000 {
            let mut mutant = value.clone();
            for _ in 0..1 + next(4) {
                let at = next(mutant.len() + 1);
                let byte = next(256) as u8;
                match (next(3), mutant.get_mut(at)) {
                    (0, Some(b)) => *b = byte,
                    (1, _) => mutant.insert(at, byte),
                    (_, Some(_)) => {
                        mutant.remove(at);
                    }
                    _ => {}
                }
            }
            let _ = validate(&payload(&mutant));
        }
    }
}
