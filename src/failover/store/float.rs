//! Floating point the way Redis does it on x86-64 Linux, so replies match
//! byte for byte: parsing scores with `strtod` rules (strict for ZADD,
//! lenient for range bounds), INCRBYFLOAT's 80-bit `long double` arithmetic
//! and its `%.17Lf` output, and `%.17g` for double replies.
//!
//! Rust has no `long double`, so INCRBYFLOAT's operands are converted to a
//! 64-bit-mantissa value exactly ([`Extended`]) with big integers. Values in
//! the subnormal range are kept at full precision instead of being denormalised;
//! that cannot show in 17 printed decimals.

use super::big::{self, Big};
use std::f64::consts::LOG2_10;

/// Exponent bounds of the x87 extended format, for a value `m × 2^e` with a
/// 64-bit mantissa `m`: it overflows when `e + 64 > EXT_MAX`, and rounds to
/// zero below the smallest subnormal.
const EXT_MAX: i64 = 16384;
const EXT_MIN: i64 = -16446;
/// Longest text `string2ld` accepts (Redis' MAX_LONG_DOUBLE_CHARS).
const MAX_LONG_DOUBLE_CHARS: usize = 5 * 1024;

/// The shape of a C floating-point literal (what `strtod` accepts), sign
/// aside.
enum Literal {
    Inf,
    /// Decimal digits (a `.` removed) and the power of ten they are scaled by.
    Decimal(Vec<u8>, i64),
    /// Hexadecimal digit values and the power of two they are scaled by.
    Hex(Vec<u8>, i64),
}

/// Parses all of `s` as a C floating-point literal: `(negative, literal)`,
/// or `None` when `strtod` would stop before the end or read a NaN.
fn literal(s: &[u8]) -> Option<(bool, Literal)> {
    let (neg, body) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.to_ascii_lowercase();
    if lower == b"inf" || lower == b"infinity" {
        return Some((neg, Literal::Inf));
    }
    if lower.starts_with(b"0x") {
        let (digits, exp) = mantissa(&body[2..], 16, b'p')?;
        return Some((neg, Literal::Hex(digits, exp)));
    }
    let (digits, exp) = mantissa(body, 10, b'e')?;
    Some((neg, Literal::Decimal(digits, exp)))
}

/// Digits with an optional point then an optional exponent (marker `exp_char`,
/// decimal, a power of 10 for decimal digits and of 2 for hex ones), all of
/// `s`: the digit values and the exponent the integer they form is scaled by.
fn mantissa(s: &[u8], radix: u32, exp_char: u8) -> Option<(Vec<u8>, i64)> {
    let digit_bits = if radix == 16 { 4 } else { 1 };
    let mut digits = Vec::new();
    let mut frac = 0i64;
    let mut seen_point = false;
    let mut i = 0;
    while let Some(&b) = s.get(i) {
        if b == b'.' && !seen_point {
            seen_point = true;
        } else if let Some(d) = char::from(b).to_digit(radix) {
            digits.push(d as u8);
            frac += i64::from(seen_point);
        } else {
            break;
        }
        i += 1;
    }
    if digits.is_empty() {
        return None;
    }
    let exp = match s.get(i) {
        None => 0,
        Some(b) if b.to_ascii_lowercase() == exp_char => exponent(&s[i + 1..])?,
        Some(_) => return None,
    };
    Some((digits, exp.saturating_sub(frac * digit_bits)))
}

/// A decimal exponent with an optional sign, saturated far beyond any
/// representable magnitude.
fn exponent(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let value = digits.iter().fold(0i64, |acc, d| (acc * 10 + i64::from(d - b'0')).min(1 << 40));
    Some(if neg { -value } else { value })
}

/// A literal's value rounded to a binary format's mantissa width.
enum Rounded {
    Zero,
    /// `mantissa × 2^exponent`.
    Value(u64, i64),
    /// Far beyond any finite value.
    Huge,
    /// Far below any nonzero value.
    Tiny,
}

/// Rounds `digits` (in `radix`, scaled by `radix`'s exponent base to the
/// power `exp`) to `bits` of mantissa, exactly.
fn round_digits(digits: &[u8], radix: u32, exp: i64, bits: u32) -> Rounded {
    let Some(first) = digits.iter().position(|&d| d != 0) else { return Rounded::Zero };
    let digits = &digits[first..];
    // Magnitude in bits, roughly, to avoid computing absurd powers of ten.
    let (per_digit, per_exp) = if radix == 16 { (4.0, 1.0) } else { (LOG2_10, LOG2_10) };
    let magnitude = digits.len() as f64 * per_digit + exp as f64 * per_exp;
    if magnitude > (EXT_MAX + 64) as f64 {
        return Rounded::Huge;
    }
    if magnitude < (EXT_MIN - 64) as f64 {
        return Rounded::Tiny;
    }
    let mut num = Big::zero();
    for &d in digits {
        num.mul_add(radix, u32::from(d));
    }
    let one = Big::from_u128(1);
    let rounded = match (radix, exp >= 0) {
        (16, _) => big::round(&num, &one, exp, bits),
        (_, true) => big::round(&num.mul_pow10(exp.unsigned_abs()), &one, 0, bits),
        (_, false) => big::round(&num, &Big::pow10(exp.unsigned_abs()), 0, bits),
    };
    rounded.map_or(Rounded::Zero, |(mant, exp)| Rounded::Value(mant, exp))
}

/// Parses a score the way `string2d` does (ZADD, ZINCRBY): the whole
/// argument, no leading space, no NaN, no overflow or underflow to zero.
pub(super) fn parse_strict(s: &[u8]) -> Option<f64> {
    if s.first().is_none_or(|&b| is_c_space(b)) {
        return None;
    }
    let (value, out_of_range) = strtod(s)?;
    (!out_of_range).then_some(value)
}

/// Parses a range bound the way `zslParseRange` calls `strtod`: text up to
/// the first NUL, leading white space skipped, empty text is 0, overflow is
/// accepted as ±inf, NaN refused.
pub(super) fn parse_lenient(s: &[u8]) -> Option<f64> {
    let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
    if s.is_empty() {
        return Some(0.0);
    }
    let start = s.iter().position(|&b| !is_c_space(b))?;
    strtod(&s[start..]).map(|(value, _)| value)
}

/// `isspace` in the C locale.
fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// All of `s` as a double: `(value, out_of_range)`, out of range meaning
/// `strtod` would set ERANGE with an infinite or zero result.
fn strtod(s: &[u8]) -> Option<(f64, bool)> {
    let (neg, lit) = literal(s)?;
    let sign = if neg { -1.0 } else { 1.0 };
    match lit {
        Literal::Inf => Some((sign * f64::INFINITY, false)),
        Literal::Hex(digits, exp) => Some(hex_double(&digits, exp, sign)),
        Literal::Decimal(digits, _) => {
            // The syntax is C's; Rust's parser reads it alike, correctly rounded.
            let value: f64 = std::str::from_utf8(s).ok()?.parse().ok()?;
            let nonzero = digits.iter().any(|&d| d != 0);
            Some((value, value.is_infinite() || (value == 0.0 && nonzero)))
        }
    }
}

/// A hexadecimal literal as a double: `(value, out_of_range)`. Results in
/// the subnormal range may be off by a rounding (double rounding).
fn hex_double(digits: &[u8], exp: i64, sign: f64) -> (f64, bool) {
    match round_digits(digits, 16, exp, 53) {
        Rounded::Zero => (sign * 0.0, false),
        Rounded::Value(_, e) if e + 53 > 1024 => (sign * f64::INFINITY, true),
        Rounded::Value(mant, e) if e + 53 >= -1074 => (sign * ldexp(mant as f64, e), false),
        Rounded::Huge => (sign * f64::INFINITY, true),
        Rounded::Value(..) | Rounded::Tiny => (sign * 0.0, true),
    }
}

/// `x × 2^e` in steps that cannot overflow an intermediate power of two.
fn ldexp(mut x: f64, mut e: i64) -> f64 {
    while e != 0 {
        let step = e.clamp(-1000, 1000);
        x *= 2f64.powi(step as i32);
        e -= step;
    }
    x
}

/// `%.17g`, as Redis formats doubles in replies (`inf` / `-inf` spelt out).
pub(super) fn format_double(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sci = format!("{x:.16e}");
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i64 = exp.parse().unwrap_or(0);
    let (sign, mant) = mant.strip_prefix('-').map_or(("", mant), |m| ("-", m));
    let digits: String = mant.chars().filter(char::is_ascii_digit).collect();
    if !(-4..17).contains(&exp) {
        let digits = digits.trim_end_matches('0');
        let (head, tail) = digits.split_at(1);
        let point = if tail.is_empty() { "" } else { "." };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{head}{point}{tail}e{esign}{:02}", exp.unsigned_abs());
    }
    let fixed = if exp >= 0 {
        let (int, frac) = digits.split_at(exp as usize + 1);
        format!("{int}.{frac}")
    } else {
        format!("0.{}{digits}", "0".repeat(exp.unsigned_abs() as usize - 1))
    };
    let fixed = fixed.trim_end_matches('0').trim_end_matches('.');
    format!("{sign}{fixed}")
}

/// A finite x87 80-bit `long double`: `±mant × 2^exp` (`mant` 0 is zero;
/// otherwise its top bit is set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Extended {
    neg: bool,
    mant: u64,
    exp: i64,
}

/// A `long double` as `string2ld` parses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum LongDouble {
    Finite(Extended),
    Infinite,
}

impl Extended {
    /// Positive zero.
    pub(super) const ZERO: Extended = Extended { neg: false, mant: 0, exp: 0 };

    /// Parses like Redis' `string2ld` (INCRBYFLOAT): `strtold` on the text up
    /// to the first NUL; no leading space, NaN, overflow or underflow to zero.
    pub(super) fn parse(s: &[u8]) -> Option<LongDouble> {
        if s.len() >= MAX_LONG_DOUBLE_CHARS || s.first().is_none_or(|&b| is_c_space(b)) {
            return None;
        }
        let s = &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())];
        if s.is_empty() {
            return Some(LongDouble::Finite(Extended::ZERO));
        }
        let (neg, lit) = literal(s)?;
        let (digits, radix, exp) = match lit {
            Literal::Inf => return Some(LongDouble::Infinite),
            Literal::Decimal(digits, exp) => (digits, 10, exp),
            Literal::Hex(digits, exp) => (digits, 16, exp),
        };
        match round_digits(&digits, radix, exp, 64) {
            Rounded::Zero => Some(LongDouble::Finite(Extended { neg, ..Extended::ZERO })),
            Rounded::Value(mant, exp) => Extended::checked(neg, mant, exp).map(LongDouble::Finite),
            Rounded::Huge | Rounded::Tiny => None,
        }
    }

    /// The value if it is within the format's range.
    fn checked(neg: bool, mant: u64, exp: i64) -> Option<Extended> {
        (exp + 64 <= EXT_MAX && exp + 64 > EXT_MIN).then_some(Extended { neg, mant, exp })
    }

    /// `self + other` rounded to nearest-even, as the FPU does; `None` on
    /// overflow.
    pub(super) fn add(self, other: Extended) -> Option<Extended> {
        if other.mant == 0 {
            let neg = self.neg && (other.neg || self.mant != 0);
            return Some(Extended { neg, ..self });
        }
        if self.mant == 0 {
            return Some(other);
        }
        let base = self.exp.min(other.exp);
        let a = Big::from_u128(u128::from(self.mant)).shl((self.exp - base) as u64);
        let b = Big::from_u128(u128::from(other.mant)).shl((other.exp - base) as u64);
        let (neg, sum) = if self.neg == other.neg {
            (self.neg, a.add(&b))
        } else if a >= b {
            (self.neg, a.sub(&b))
        } else {
            (other.neg, b.sub(&a))
        };
        match big::round(&sum, &Big::from_u128(1), base, 64) {
            None => Some(Extended::ZERO),
            Some((mant, exp)) => Extended::checked(neg, mant, exp),
        }
    }

    /// `%.17Lf` with trailing zeros (and a bare point) removed and `-0` as
    /// `0`: Redis' human-friendly `long double` text.
    pub(super) fn format_human(self) -> String {
        let scaled = Big::from_u128(u128::from(self.mant)).mul_pow10(17);
        let digits =
            if self.exp >= 0 { scaled.shl(self.exp as u64) } else { round_shift(&scaled, self.exp.unsigned_abs()) };
        let digits = format!("{:0>18}", digits.to_decimal());
        let (int, frac) = digits.split_at(digits.len() - 17);
        let text = format!("{int}.{frac}");
        let text = text.trim_end_matches('0').trim_end_matches('.');
        if self.neg && text != "0" {
            format!("-{text}")
        } else {
            text.to_string()
        }
    }
}

/// `x / 2^n` (n ≥ 1) rounded to nearest-even.
fn round_shift(x: &Big, n: u64) -> Big {
    let q = x.shr(n);
    let rem = x.sub(&q.shl(n));
    let half = Big::from_u128(1).shl(n - 1);
    if rem > half || (rem == half && q.is_odd()) {
        q.add(&Big::from_u128(1))
    } else {
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incr(a: &str, b: &str) -> String {
        let (Some(LongDouble::Finite(a)), Some(LongDouble::Finite(b))) =
            (Extended::parse(a.as_bytes()), Extended::parse(b.as_bytes()))
        else {
            return "unparsable".into();
        };
        a.add(b).map_or_else(|| "overflow".into(), Extended::format_human)
    }

    #[test]
    fn long_double_sums_print_like_redis() {
        assert_eq!(incr("10.50", "0.1"), "10.6");
        assert_eq!(incr("10.6", "10000000000"), "10000000010.59999999962747097");
        assert_eq!(incr("0", "5.0e3"), "5000");
        assert_eq!(incr("3", "0"), "3");
        assert_eq!(incr("1", "-1"), "0");
        assert_eq!(incr("-0", "-0"), "0");
        assert_eq!(incr("0x10", "0.5"), "16.5");
        assert_eq!(incr("1e4932", "1e4932"), "overflow");
        assert_eq!(incr("1e-20", "0"), "0");
        assert_eq!(incr("-1e-20", "0"), "0");
    }

    #[test]
    fn long_double_parsing_follows_string2ld() {
        assert_eq!(Extended::parse(b"inf"), Some(LongDouble::Infinite));
        assert_eq!(Extended::parse(b"-Infinity"), Some(LongDouble::Infinite));
        for bad in [&b""[..], b" 1", b"1 ", b"nan", b"1e", b"abc", b"1e99999", b"1e-99999", b"0x", b"."] {
            assert_eq!(Extended::parse(bad), None, "{bad:?}");
        }
        assert_eq!(Extended::parse(b"1.5\0junk").map(|_| ()), Some(()));
        assert_eq!(Extended::parse(b"0e99999"), Some(LongDouble::Finite(Extended::ZERO)));
    }

    #[test]
    fn scores_parse_like_strtod() {
        assert_eq!(parse_strict(b"1.5"), Some(1.5));
        assert_eq!(parse_strict(b"-inf"), Some(f64::NEG_INFINITY));
        assert_eq!(parse_strict(b"0x1p-1"), Some(0.5));
        for bad in [&b""[..], b" 1", b"1e400", b"1e-400", b"nan", b"1.5x", b"1\x00"] {
            assert_eq!(parse_strict(bad), None, "{bad:?}");
        }
        assert_eq!(parse_lenient(b""), Some(0.0));
        assert_eq!(parse_lenient(b" 2"), Some(2.0));
        assert_eq!(parse_lenient(b"1e400"), Some(f64::INFINITY));
        assert_eq!(parse_lenient(b"  "), None);
        assert_eq!(parse_lenient(b"nan"), None);
    }

    #[test]
    fn doubles_format_as_percent_17g() {
        let cases = [
            (0.1, "0.10000000000000001"),
            (1.5, "1.5"),
            (3.0, "3"),
            (-0.0, "-0"),
            (1e17, "1e+17"),
            (1.25e16, "12500000000000000"),
            (0.0001, "0.0001"),
            (0.00001, "1.0000000000000001e-05"),
            (f64::NEG_INFINITY, "-inf"),
            (1.0 + 1.0 / 131072.0, "1.0000076293945312"),
        ];
        for (x, text) in cases {
            assert_eq!(format_double(x), text, "{x}");
        }
    }
}
