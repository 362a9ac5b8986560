//! A minimal unsigned big integer, just enough to convert decimal text to
//! binary floating point and back exactly (INCRBYFLOAT's `long double`
//! arithmetic and hexadecimal scores). Not a general-purpose bignum: only
//! the operations those conversions need, none of them fast for huge values.

use std::cmp::Ordering;

/// An unsigned integer as little-endian 32-bit limbs, without high zero limbs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Big(Vec<u32>);

impl Big {
    /// Zero.
    pub(super) fn zero() -> Big {
        Big(Vec::new())
    }

    /// `v` as a big integer.
    pub(super) fn from_u128(mut v: u128) -> Big {
        let mut limbs = Vec::new();
        while v != 0 {
            limbs.push(v as u32);
            v >>= 32;
        }
        Big(limbs)
    }

    /// `10^n`.
    pub(super) fn pow10(n: u64) -> Big {
        Big::from_u128(1).mul_pow10(n)
    }

    /// `self × 10^n`.
    pub(super) fn mul_pow10(&self, n: u64) -> Big {
        let mut out = self.clone();
        let mut left = n;
        while left > 0 {
            let step = left.min(9);
            out.mul_add(10u32.pow(step as u32), 0);
            left -= step;
        }
        out
    }

    /// True for zero.
    pub(super) fn is_zero(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of significant bits (0 for zero).
    pub(super) fn bits(&self) -> u64 {
        match self.0.last() {
            Some(top) => (self.0.len() as u64 - 1) * 32 + u64::from(32 - top.leading_zeros()),
            None => 0,
        }
    }

    /// `self = self * mul + add`.
    pub(super) fn mul_add(&mut self, mul: u32, add: u32) {
        let mut carry = u64::from(add);
        for limb in &mut self.0 {
            let v = u64::from(*limb) * u64::from(mul) + carry;
            *limb = v as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            self.0.push(carry as u32);
        }
        self.trim();
    }

    /// `self / div`, leaving the quotient in `self`; returns the remainder.
    fn div_rem_small(&mut self, div: u32) -> u32 {
        let mut rem = 0u64;
        for limb in self.0.iter_mut().rev() {
            let cur = (rem << 32) | u64::from(*limb);
            *limb = (cur / u64::from(div)) as u32;
            rem = cur % u64::from(div);
        }
        self.trim();
        rem as u32
    }

    /// `self << n`.
    pub(super) fn shl(&self, n: u64) -> Big {
        if self.is_zero() {
            return Big::zero();
        }
        let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
        let mut out = vec![0u32; limbs];
        let mut carry = 0u32;
        for &limb in &self.0 {
            out.push(if bits == 0 { limb } else { (limb << bits) | carry });
            carry = if bits == 0 { 0 } else { limb >> (32 - bits) };
        }
        out.push(carry);
        let mut out = Big(out);
        out.trim();
        out
    }

    /// `self >> n`.
    pub(super) fn shr(&self, n: u64) -> Big {
        let (limbs, bits) = ((n / 32) as usize, (n % 32) as u32);
        let Some(kept) = self.0.get(limbs..) else { return Big::zero() };
        let mut out: Vec<u32> = kept
            .iter()
            .enumerate()
            .map(|(i, &limb)| {
                let high = kept.get(i + 1).copied().unwrap_or(0);
                if bits == 0 {
                    limb
                } else {
                    (limb >> bits) | (high << (32 - bits))
                }
            })
            .collect();
        out.push(0);
        let mut out = Big(out);
        out.trim();
        out
    }

    /// True when the lowest bit is set.
    pub(super) fn is_odd(&self) -> bool {
        self.0.first().is_some_and(|l| l & 1 == 1)
    }

    /// `self + other`.
    pub(super) fn add(&self, other: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len().max(other.0.len()) + 1);
        let mut carry = 0u64;
        for i in 0..self.0.len().max(other.0.len()) {
            let v = u64::from(self.limb(i)) + u64::from(other.limb(i)) + carry;
            out.push(v as u32);
            carry = v >> 32;
        }
        out.push(carry as u32);
        let mut out = Big(out);
        out.trim();
        out
    }

    /// `self - other`; `other` must not be larger.
    pub(super) fn sub(&self, other: &Big) -> Big {
        let mut out = Vec::with_capacity(self.0.len());
        let mut borrow = 0i64;
        for i in 0..self.0.len() {
            let mut v = i64::from(self.limb(i)) - i64::from(other.limb(i)) - borrow;
            borrow = i64::from(v < 0);
            if v < 0 {
                v += 1 << 32;
            }
            out.push(v as u32);
        }
        let mut out = Big(out);
        out.trim();
        out
    }

    /// `(self / div, self % div)` when the quotient is known to be below
    /// `2^quotient_bits` (at most 127).
    pub(super) fn div_rem_bounded(&self, div: &Big, quotient_bits: u32) -> (u128, Big) {
        let mut rem = self.clone();
        let mut q = 0u128;
        for i in (0..quotient_bits).rev() {
            let step = div.shl(u64::from(i));
            if rem >= step {
                rem = rem.sub(&step);
                q |= 1 << i;
            }
        }
        (q, rem)
    }

    /// The decimal digits (`"0"` for zero).
    pub(super) fn to_decimal(&self) -> String {
        let mut chunks = Vec::new();
        let mut rest = self.clone();
        while !rest.is_zero() {
            chunks.push(rest.div_rem_small(1_000_000_000));
        }
        let mut out = chunks.pop().map_or_else(|| "0".to_string(), |top| top.to_string());
        for chunk in chunks.iter().rev() {
            out.push_str(&format!("{chunk:09}"));
        }
        out
    }

    fn limb(&self, i: usize) -> u32 {
        self.0.get(i).copied().unwrap_or(0)
    }

    fn trim(&mut self) {
        while self.0.last() == Some(&0) {
            self.0.pop();
        }
    }
}

impl Ord for Big {
    fn cmp(&self, other: &Big) -> Ordering {
        self.0.len().cmp(&other.0.len()).then_with(|| self.0.iter().rev().cmp(other.0.iter().rev()))
    }
}

impl PartialOrd for Big {
    fn partial_cmp(&self, other: &Big) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// `num / den × 2^exp2` rounded to nearest-even with `bits` (≤ 64)
/// significant bits: `(mantissa, exponent)` with the mantissa in
/// `[2^(bits-1), 2^bits)` and the value `mantissa × 2^exponent`. `None` when
/// `num` is zero.
pub(super) fn round(num: &Big, den: &Big, exp2: i64, bits: u32) -> Option<(u64, i64)> {
    if num.is_zero() || den.is_zero() {
        return None;
    }
    // The quotient scaled by 2^shift has bits+1 or bits+2 bits.
    let shift = i64::from(bits) + 1 - (num.bits() as i64 - den.bits() as i64);
    let (a, b) =
        if shift >= 0 { (num.shl(shift as u64), den.clone()) } else { (num.clone(), den.shl((-shift) as u64)) };
    let (mut q, rem) = a.div_rem_bounded(&b, bits + 2);
    let mut sticky = !rem.is_zero();
    let mut exp = exp2 - shift;
    if q >> (bits + 1) != 0 {
        sticky |= q & 1 != 0;
        q >>= 1;
        exp += 1;
    }
    let guard = q & 1 != 0;
    let mut mant = q >> 1;
    exp += 1;
    if guard && (sticky || mant & 1 != 0) {
        mant += 1;
        if mant >> bits != 0 {
            mant >>= 1;
            exp += 1;
        }
    }
    Some((mant as u64, exp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_and_decimal() {
        let big = Big::pow10(30);
        assert_eq!(big.to_decimal(), "1000000000000000000000000000000");
        assert_eq!(big.shl(3).to_decimal(), "8000000000000000000000000000000");
        assert_eq!(big.add(&Big::from_u128(7)).sub(&Big::from_u128(8)).to_decimal(), "999999999999999999999999999999");
        assert_eq!(Big::zero().to_decimal(), "0");
        assert_eq!(Big::from_u128(u128::MAX).bits(), 128);
        assert!(Big::pow10(10) > Big::pow10(9));
        assert_eq!(big.shl(77).shr(77), big);
        assert_eq!(big.shr(200), Big::zero());
        assert!(Big::from_u128(3).is_odd() && !big.is_odd());
    }

    #[test]
    fn rounds_to_nearest_even() {
        // 0.1 as a double: 0x1.999999999999ap-4.
        assert_eq!(round(&Big::from_u128(1), &Big::from_u128(10), 0, 53), Some((0x0019_9999_9999_999a, -56)));
        // 2^53 + 1 is a tie between 2^53 and 2^53 + 2: even wins.
        assert_eq!(round(&Big::from_u128((1 << 53) + 1), &Big::from_u128(1), 0, 53), Some((1 << 52, 1)));
        assert_eq!(round(&Big::from_u128((1 << 53) + 3), &Big::from_u128(1), 0, 53), Some(((1 << 52) + 2, 1)));
        assert_eq!(round(&Big::zero(), &Big::from_u128(1), 0, 53), None);
    }
}
