//! Redis Cluster's key → hash slot function: CRC16 (XMODEM: polynomial
//! 0x1021, initial value 0) of the key, or of its hash tag, modulo 16,384.
//! The hash tag is what lies between the first `{` and the first `}` after
//! it, when that is not empty, so `{user}:a` and `{user}:b` share a slot.

/// Slots in a Redis Cluster.
pub const SLOTS: usize = 16_384;

/// CRC16 lookup tables for polynomial 0x1021, built at compile time:
/// `TABLES[k][b]` is the CRC of byte `b` followed by `k` zero bytes, so
/// eight bytes are folded in at once (a key of 16 bytes: two steps of
/// eight lookups instead of sixteen dependent ones).
const TABLES: [[u16; 256]; 8] = {
    let mut tables = [[0u16; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            bit += 1;
        }
        tables[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = tables[k - 1][i];
            tables[k][i] = (prev << 8) ^ tables[0][(prev >> 8) as usize];
            i += 1;
        }
        k += 1;
    }
    tables
};

/// Eight `{` bytes, for finding one in a word.
const OPEN_BRACES: u64 = u64::from_ne_bytes([b'{'; 8]);
const LOW_BITS: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);

/// The CRC16 of `bytes` folded into `crc`, or `None` as soon as a `{` is
/// seen when `stop_at_brace` (the key may have a hash tag).
#[inline]
fn crc16_from(mut crc: u16, bytes: &[u8], stop_at_brace: bool) -> Option<u16> {
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let word: [u8; 8] = word.try_into().ok()?;
        let braces = u64::from_ne_bytes(word) ^ OPEN_BRACES;
        if stop_at_brace && braces.wrapping_sub(LOW_BITS) & !braces & HIGH_BITS != 0 {
            return None;
        }
        let w = u64::from_be_bytes(word) ^ (u64::from(crc) << 48);
        let at = |k: u32| usize::from((w >> (8 * k)) as u8);
        crc = TABLES[7][at(7)]
            ^ TABLES[6][at(6)]
            ^ TABLES[5][at(5)]
            ^ TABLES[4][at(4)]
            ^ TABLES[3][at(3)]
            ^ TABLES[2][at(2)]
            ^ TABLES[1][at(1)]
            ^ TABLES[0][at(0)];
    }
    for &b in words.remainder() {
        if stop_at_brace && b == b'{' {
            return None;
        }
        crc = (crc << 8) ^ TABLES[0][usize::from((crc >> 8) as u8 ^ b)];
    }
    Some(crc)
}

/// The part of `key` that is hashed: its hash tag, or all of it.
pub fn hashed_part(key: &[u8]) -> &[u8] {
    let Some(open) = memchr::memchr(b'{', key) else { return key };
    match memchr::memchr(b'}', &key[open + 1..]) {
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

/// The hash slot of `key`: hashed in one pass unless it holds a `{`.
pub fn of(key: &[u8]) -> u16 {
    let crc = crc16_from(0, key, true).or_else(|| crc16_from(0, hashed_part(key), false)).unwrap_or(0);
    crc & (SLOTS as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crc16(bytes: &[u8]) -> u16 {
        crc16_from(0, bytes, false).expect("no stop")
    }

    /// Bit by bit, as Redis' crc16.c defines it.
    fn crc16_bitwise(bytes: &[u8]) -> u16 {
        let mut crc = 0u16;
        for &b in bytes {
            crc ^= u16::from(b) << 8;
            for _ in 0..8 {
                crc = if crc & 0x8000 != 0 { (crc << 1) ^ 0x1021 } else { crc << 1 };
            }
        }
        crc
    }

    #[test]
    fn crc16_matches_the_reference_value() {
        // Redis' crc16.c test vector.
        assert_eq!(crc16(b"123456789"), 0x31C3);
    }

    #[test]
    fn crc16_eight_bytes_at_a_time_matches_bit_by_bit() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for len in 0..80 {
            for _ in 0..20 {
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (seed >> 56) as u8
                    })
                    .collect();
                assert_eq!(crc16(&bytes), crc16_bitwise(&bytes), "{bytes:?}");
            }
        }
    }

    #[test]
    fn a_brace_anywhere_is_seen() {
        for len in 1..40 {
            for at in 0..len {
                let mut key = vec![b'a'; len];
                key[at] = b'{';
                assert_eq!(crc16_from(0, &key, true), None, "{len} {at}");
                // `{` differs from each neighbouring byte by one bit: no
                // false positive for them.
                key[at] = b'z';
                assert!(crc16_from(0, &key, true).is_some());
                key[at] = b'|';
                assert!(crc16_from(0, &key, true).is_some());
            }
        }
    }

    #[test]
    fn slots_match_redis_cluster_keyslot() {
        // CLUSTER KEYSLOT answers on a real cluster.
        assert_eq!(of(b"foo"), 12182);
        assert_eq!(of(b"bar"), 5061);
        assert_eq!(of(b""), 0);
        assert_eq!(of(b"{user1000}.following"), of(b"{user1000}.followers"));
        assert_eq!(of(b"{user1000}.following"), of(b"user1000"));
        assert_eq!(of(b"key:000000012345"), crc16_bitwise(b"key:000000012345") & 0x3FFF);
        assert_eq!(of(b"a-longer-key-of-user:{1000}.x"), of(b"1000"));
        assert_eq!(of(b"a-longer-key-of-user:{}.x"), crc16_bitwise(b"a-longer-key-of-user:{}.x") & 0x3FFF);
    }

    #[test]
    fn hash_tags_follow_redis_rules() {
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hashed_part(b"{user"), b"{user");
        assert_eq!(hashed_part(b"acme:{user}:x"), b"user");
    }
}
