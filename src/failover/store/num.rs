//! Integer arguments the way Redis reads them (`string2ll`): canonical
//! decimal only — no sign `+`, no leading zeros, no spaces, `-0` refused —
//! within `i64`.

/// Longest text `string2ll` looks at (Redis' LONG_STR_SIZE is 21 with the NUL).
const MAX_LEN: usize = 20;

/// `s` as an `i64` if it is one in canonical form.
pub(super) fn parse_i64(s: &[u8]) -> Option<i64> {
    if s.is_empty() || s.len() > MAX_LEN {
        return None;
    }
    if s == b"0" {
        return Some(0);
    }
    let (neg, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    if !matches!(digits.first(), Some(b'1'..=b'9')) || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut magnitude: u64 = 0;
    for d in digits {
        magnitude = magnitude.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    if neg {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_integers_only() {
        assert_eq!(parse_i64(b"0"), Some(0));
        assert_eq!(parse_i64(b"-12"), Some(-12));
        assert_eq!(parse_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_i64(b"-9223372036854775808"), Some(i64::MIN));
        for bad in [&b""[..], b"-", b"-0", b"+1", b"01", b" 1", b"1 ", b"1.0", b"9223372036854775808", b"1e3"] {
            assert_eq!(parse_i64(bad), None, "{bad:?}");
        }
    }
}
