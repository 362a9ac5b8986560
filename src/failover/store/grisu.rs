//! Doubles as Redis ≥ 7.2 and Valkey print them (`d2string`): an integer
//! when the value is one (within ±2^62), otherwise the digits Grisu2
//! generates — Redis bundles the fpconv implementation, whose digits are
//! short but not always the shortest (of two equally close 17-digit
//! candidates it may take either) — laid out plainly or in scientific
//! notation by fpconv's rules. Reproduced step for step, since the
//! failover store answers for the server byte for byte.

use super::big::{self, Big};
use std::sync::OnceLock;

/// A 64-bit mantissa and a binary exponent: `frac × 2^exp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fp {
    frac: u64,
    exp: i32,
}

const HIDDEN_BIT: u64 = 1 << 52;
const FRAC_MASK: u64 = HIDDEN_BIT - 1;
/// IEEE bias plus the 52 fraction bits.
const EXP_BIAS: i32 = 1023 + 52;

/// The cached powers of ten: 10^-348, 10^-340, … 10^340.
const FIRST_POWER: i32 = -348;
const POWER_STEP: i32 = 8;
const POWERS: usize = 87;
/// The window the scaled upper boundary's exponent must fall in.
const EXP_MIN: i32 = -60;
const EXP_MAX: i32 = -32;

/// `10^k` for each cached `k`, rounded to nearest with a 64-bit mantissa.
fn cached_powers() -> &'static [Fp] {
    static POWERS_TEN: OnceLock<Vec<Fp>> = OnceLock::new();
    POWERS_TEN.get_or_init(|| {
        let one = Big::from_u128(1);
        (0..POWERS as i32)
            .map(|i| {
                let k = FIRST_POWER + i * POWER_STEP;
                let ten_k = Big::pow10(u64::from(k.unsigned_abs()));
                let rounded = if k >= 0 { big::round(&ten_k, &one, 0, 64) } else { big::round(&one, &ten_k, 0, 64) };
                let (frac, exp) = rounded.unwrap_or((1 << 63, 0));
                Fp { frac, exp: exp as i32 }
            })
            .collect()
    })
}

/// The cached power that brings an exponent `exp` into the window, and
/// its decimal exponent.
fn cached_power(exp: i32) -> (Fp, i32) {
    let powers = cached_powers();
    let approx = (-f64::from(exp + POWERS as i32) * 0.301_029_995_663_981_14) as i32;
    let mut idx = ((approx - FIRST_POWER) / POWER_STEP).clamp(0, POWERS as i32 - 1) as usize;
    loop {
        let current = exp + powers[idx].exp + 64;
        if current < EXP_MIN && idx + 1 < POWERS {
            idx += 1;
        } else if current > EXP_MAX && idx > 0 {
            idx -= 1;
        } else {
            return (powers[idx], FIRST_POWER + idx as i32 * POWER_STEP);
        }
    }
}

/// The value of a positive finite `x` as mantissa and exponent.
fn build(x: f64) -> Fp {
    let bits = x.to_bits();
    let frac = bits & FRAC_MASK;
    match ((bits >> 52) & 0x7ff) as i32 {
        0 => Fp { frac, exp: 1 - EXP_BIAS },
        e => Fp { frac: frac + HIDDEN_BIT, exp: e - EXP_BIAS },
    }
}

fn normalize(mut fp: Fp) -> Fp {
    while fp.frac & HIDDEN_BIT == 0 {
        fp.frac <<= 1;
        fp.exp -= 1;
    }
    Fp { frac: fp.frac << 11, exp: fp.exp - 11 }
}

/// The midpoints to the neighbouring doubles, normalised, on one exponent.
fn boundaries(w: Fp) -> (Fp, Fp) {
    let mut upper = Fp { frac: (w.frac << 1) + 1, exp: w.exp - 1 };
    while upper.frac & (HIDDEN_BIT << 1) == 0 {
        upper.frac <<= 1;
        upper.exp -= 1;
    }
    upper = Fp { frac: upper.frac << 10, exp: upper.exp - 10 };
    let shift = if w.frac == HIDDEN_BIT { 2 } else { 1 };
    let lower_exp = w.exp - shift;
    let lower = Fp { frac: ((w.frac << shift) - 1) << (lower_exp - upper.exp), exp: upper.exp };
    (lower, upper)
}

/// The product's upper 64 bits, rounded.
fn multiply(a: Fp, b: Fp) -> Fp {
    let product = u128::from(a.frac) * u128::from(b.frac) + (1u128 << 63);
    Fp { frac: (product >> 64) as u64, exp: a.exp + b.exp + 64 }
}

/// Moves the last digit down while that brings the digits closer to the
/// value and keeps them inside the boundaries.
fn round_digit(digits: &mut [u8], delta: u64, mut rem: u64, kappa: u64, frac: u64) {
    let Some(last) = digits.last_mut() else { return };
    while rem < frac
        && delta - rem >= kappa
        && (rem.wrapping_add(kappa) < frac || frac - rem > rem.wrapping_add(kappa).wrapping_sub(frac))
    {
        *last -= 1;
        rem = rem.wrapping_add(kappa);
    }
}

/// Grisu2's digits of `w` between `lower` and `upper`; adds the decimal
/// exponent of the last digit to `k`.
fn generate(w: Fp, upper: Fp, lower: Fp, k: &mut i32) -> Vec<u8> {
    let wfrac = upper.frac - w.frac;
    let mut delta = upper.frac - lower.frac;
    let shift = (-upper.exp) as u32;
    let one = 1u64 << shift;
    let mut part1 = upper.frac >> shift;
    let mut part2 = upper.frac & (one - 1);
    let mut digits = Vec::with_capacity(18);
    let mut kappa = 10;
    let mut div = 1_000_000_000u64;
    while kappa > 0 {
        let digit = part1 / div;
        if digit != 0 || !digits.is_empty() {
            digits.push(b'0' + digit as u8);
        }
        part1 -= digit * div;
        kappa -= 1;
        let rem = (part1 << shift) + part2;
        if rem <= delta {
            *k += kappa;
            round_digit(&mut digits, delta, rem, div << shift, wfrac);
            return digits;
        }
        div /= 10;
    }
    let mut unit = 10u64;
    loop {
        part2 = part2.wrapping_mul(10);
        delta = delta.wrapping_mul(10);
        kappa -= 1;
        let digit = part2 >> shift;
        if digit != 0 || !digits.is_empty() {
            digits.push(b'0' + digit as u8);
        }
        part2 &= one - 1;
        if part2 < delta {
            *k += kappa;
            round_digit(&mut digits, delta, part2, one, wfrac.wrapping_mul(unit));
            return digits;
        }
        unit = unit.wrapping_mul(10);
    }
}

/// Grisu2's digits of a positive finite `x` and the decimal exponent of
/// the last one.
fn grisu2(x: f64) -> (Vec<u8>, i32) {
    let w = build(x);
    let (lower, upper) = boundaries(w);
    let w = normalize(w);
    let (power, k) = cached_power(upper.exp);
    let w = multiply(w, power);
    let mut upper = multiply(upper, power);
    let mut lower = multiply(lower, power);
    lower.frac += 1;
    upper.frac -= 1;
    let mut exp10 = -k;
    let digits = generate(w, upper, lower, &mut exp10);
    (digits, exp10)
}

/// The digits laid out as fpconv does: a plain integer, a plain decimal,
/// or scientific notation (at most 18 digits, 17 for a negative value).
fn emit(digits: &[u8], k: i32, neg: bool, out: &mut String) {
    let n = digits.len() as i32;
    let exp = (k + n - 1).abs();
    let text = |d: &[u8]| String::from_utf8_lossy(d).into_owned();
    if k >= 0 && exp < n + 7 {
        out.push_str(&text(digits));
        out.extend(std::iter::repeat_n('0', k as usize));
        return;
    }
    if k < 0 && (k > -7 || exp < 4) {
        let offset = n - k.abs();
        if offset <= 0 {
            out.push_str("0.");
            out.extend(std::iter::repeat_n('0', offset.unsigned_abs() as usize));
            out.push_str(&text(digits));
        } else {
            let (int, frac) = digits.split_at(offset as usize);
            out.push_str(&text(int));
            out.push('.');
            out.push_str(&text(frac));
        }
        return;
    }
    let kept = &digits[..digits.len().min(18 - usize::from(neg))];
    out.push_str(&text(&kept[..1]));
    if kept.len() > 1 {
        out.push('.');
        out.push_str(&text(&kept[1..]));
    }
    out.push('e');
    out.push(if k + kept.len() as i32 - 1 < 0 { '-' } else { '+' });
    out.push_str(&exp.to_string());
}

/// `d2string` of a finite `x`.
pub(super) fn format(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0".into() } else { "0".into() };
    }
    let limit = (i64::MAX / 2) as f64;
    if (-limit..=limit).contains(&x) && (x as i64) as f64 == x {
        return (x as i64).to_string();
    }
    let mut out = String::with_capacity(24);
    if x.is_sign_negative() {
        out.push('-');
    }
    let (digits, k) = grisu2(x.abs());
    emit(&digits, k, x.is_sign_negative(), &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_powers_are_rounded_powers_of_ten() {
        let powers = cached_powers();
        assert_eq!(powers[0], Fp { frac: 18_054_884_314_459_144_840, exp: -1220 }, "10^-348");
        let k4 = ((4 - FIRST_POWER) / POWER_STEP) as usize;
        assert_eq!(powers[k4], Fp { frac: 10_000 << 50, exp: -50 }, "10^4");
    }

    #[test]
    fn formats_like_redis_7_2() {
        for (x, text) in [
            (0.1, "0.1"),
            (0.00001, "0.00001"),
            (1e-320, "1e-320"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (3.0, "3"),
            (-0.0, "-0"),
            (1e30, "1e+30"),
            (12_345_678_901_234_567_000.0, "12345678901234567000"),
            (1.000_007_629_394_531_3, "1.0000076293945313"),
            (1.0 / 3.0, "0.3333333333333333"),
            (123_456.789, "123456.789"),
        ] {
            assert_eq!(format(x), text, "{x:e}");
        }
    }
}
