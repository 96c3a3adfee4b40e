//! Rounding an MPFR value ONCE to a target floating-point format.
//!
//! Rounding the oracle's result first to f64 and then to bf16 (or f16, f32) is a double
//! rounding and can be wrong by one unit in the last place of the target: e.g.
//! x = 1 + 2^-8 + 2^-70 rounds to 1 + 2^-8 in f64, a tie in bf16 that goes to even (1), while the
//! correctly rounded bf16 value is 1 + 2^-7. [`round_float`] therefore rounds the MPFR value
//! directly to the target format:
//!
//! * normal range (|x| >= smallest normal of the target): MPFR rounds the value to the target's
//!   significand width (8 bits for bf16, 11 for f16 and tf32, 24 for f32, 53 for f64) with
//!   round-to-nearest, ties-to-even; a result above the largest finite value of the format
//!   overflows to +-inf (IEEE rule: overflow is decided after rounding with unbounded exponent);
//! * subnormal range: the value is scaled by a power of two (exact) so that the format's smallest
//!   subnormal becomes 1, rounded to the nearest integer (ties to even) and scaled back, which
//!   handles gradual underflow, rounding up to the smallest normal, and underflow to a signed zero.
//!
//! The result is returned as the f64 holding the target value exactly (every bf16, f16, tf32 and
//! f32 value is an f64).

use gla_reference::Dtype;
use rug::float::Round;
use rug::Float;

/// Significand bits (including the implicit one), exponent of the smallest normal and exponent
/// of the largest binade of each format (IEEE convention: smallest normal = 2^emin).
fn format_params(dtype: Dtype) -> (u32, i32, i32) {
    match dtype {
        Dtype::F64 => (53, -1022, 1023),
        Dtype::F32 => (24, -126, 127),
        Dtype::Tf32 | Dtype::Tf32Rz => (11, -126, 127),
        Dtype::Bf16 => (8, -126, 127),
        Dtype::F16 => (11, -14, 15),
    }
}

/// Largest finite value of a format: (2 - 2^(1-p)) * 2^emax.
fn max_finite(dtype: Dtype) -> f64 {
    let (p, _, emax) = format_params(dtype);
    (2.0 - 2f64.powi(1 - p as i32)) * 2f64.powi(emax)
}

/// Round `x` once, to nearest with ties to even, to the format `dtype`; see the module docs.
/// `Tf32Rz` is the one exception: `x` rounded to f32, then truncated to TF32 (as a kernel does).
///
/// NaN stays NaN, +-inf stays +-inf, the sign of zero is kept.
///
/// ```
/// use gla_oracle::round::round_float;
/// use gla_reference::Dtype;
/// use rug::Float;
/// // 1 + 2^-8 + 2^-70: double rounding through f64 would give 1.0 in bf16.
/// let x = Float::with_val(200, 1) + Float::with_val(200, Float::i_exp(1, -8))
///     + Float::with_val(200, Float::i_exp(1, -70));
/// assert_eq!(half::bf16::from_f64(x.to_f64()).to_f64(), 1.0); // the trap
/// assert_eq!(round_float(&x, Dtype::Bf16), 1.0 + 2f64.powi(-7)); // correct
/// ```
pub fn round_float(x: &Float, dtype: Dtype) -> f64 {
    if dtype == Dtype::Tf32Rz {
        // an f32 value (rounded once) whose low 13 bits the tensor core drops
        return Dtype::Tf32Rz.round(round_float(x, Dtype::F32));
    }
    if x.is_nan() {
        return f64::NAN;
    }
    if x.is_infinite() || x.is_zero() {
        // Exact in f64 (signed zero and infinities keep their sign).
        return x.to_f64();
    }
    let (p, emin, _) = format_params(dtype);
    // MPFR exponent convention: x = m * 2^e with m in [0.5, 1), so |x| >= 2^emin  <=>  e > emin.
    let e = x.get_exp().expect("finite nonzero value has an exponent");
    if e > emin {
        let r = Float::with_val_round(p, x, Round::Nearest).0;
        let max = max_finite(dtype);
        // r has at most p <= 53 significand bits; if its magnitude exceeds the format's largest
        // finite value, the rounded value overflows.
        if r.clone().abs() > max {
            return if r.is_sign_negative() {
                f64::NEG_INFINITY
            } else {
                f64::INFINITY
            };
        }
        r.to_f64()
    } else {
        // Subnormal range: quantum = smallest subnormal = 2^(emin - p + 1).
        let qexp = emin - p as i32 + 1;
        let prec = x.prec().max(64);
        let mut y = Float::with_val(prec, x);
        y >>= qexp; // y = x / 2^qexp, exact
        y.round_even_mut(); // nearest integer, ties to even (keeps the sign of zero)
        y <<= qexp; // back, exact
        y.to_f64() // a multiple of the quantum below 2^emin: exact in f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fl(x: f64) -> Float {
        Float::with_val(200, x)
    }

    #[test]
    fn double_rounding_trap_bf16_f16_f32() {
        let one = Float::with_val(300, 1);
        // bf16: half ulp of 1 is 2^-8.
        let x = one.clone()
            + Float::with_val(300, Float::i_exp(1, -8))
            + Float::with_val(300, Float::i_exp(1, -70));
        assert_eq!(round_float(&x, Dtype::Bf16), 1.0 + 2f64.powi(-7));
        assert_eq!(Dtype::Bf16.round(x.to_f64()), 1.0); // what double rounding gives
                                                        // f16: half ulp of 1 is 2^-11.
        let x = one.clone()
            + Float::with_val(300, Float::i_exp(1, -11))
            + Float::with_val(300, Float::i_exp(1, -80));
        assert_eq!(round_float(&x, Dtype::F16), 1.0 + 2f64.powi(-10));
        // f32: half ulp of 1 is 2^-24; just below the tie must go down.
        let x = one.clone() + Float::with_val(300, Float::i_exp(1, -24))
            - Float::with_val(300, Float::i_exp(1, -90));
        assert_eq!(round_float(&x, Dtype::F32), 1.0);
        let x = one
            + Float::with_val(300, Float::i_exp(1, -24))
            + Float::with_val(300, Float::i_exp(1, -90));
        assert_eq!(round_float(&x, Dtype::F32), 1.0 + 2f64.powi(-23));
    }

    #[test]
    fn ties_go_to_even() {
        // 1 + 2^-8 is exactly halfway between bf16 neighbours 1 and 1 + 2^-7: even is 1.
        assert_eq!(round_float(&fl(1.0 + 2f64.powi(-8)), Dtype::Bf16), 1.0);
        // 1 + 3*2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: even is 1 + 2^-6.
        assert_eq!(
            round_float(&fl(1.0 + 3.0 * 2f64.powi(-8)), Dtype::Bf16),
            1.0 + 2f64.powi(-6)
        );
        assert_eq!(round_float(&fl(-(1.0 + 2f64.powi(-8))), Dtype::Bf16), -1.0);
    }

    #[test]
    fn overflow_and_specials() {
        assert_eq!(round_float(&fl(65504.0), Dtype::F16), 65504.0);
        assert_eq!(round_float(&fl(65519.0), Dtype::F16), 65504.0); // below the midpoint 65520
        assert_eq!(round_float(&fl(65520.0), Dtype::F16), f64::INFINITY); // tie rounds to 2^16
        assert_eq!(round_float(&fl(-1e300), Dtype::Bf16), f64::NEG_INFINITY);
        assert_eq!(
            round_float(&fl(3.0e38), Dtype::Bf16),
            half::bf16::from_f64(3.0e38).to_f64()
        );
        let huge = Float::with_val(100, Float::i_exp(1, 5000));
        assert_eq!(round_float(&huge, Dtype::F64), f64::INFINITY);
        assert!(round_float(&Float::with_val(53, rug::float::Special::Nan), Dtype::F32).is_nan());
        let nz = round_float(&fl(-0.0), Dtype::Bf16);
        assert!(nz == 0.0 && nz.is_sign_negative());
    }

    #[test]
    fn subnormals_and_underflow() {
        // f16 smallest subnormal 2^-24; half of it ties to even (0); just above goes up.
        assert_eq!(round_float(&fl(2f64.powi(-25)), Dtype::F16), 0.0);
        assert_eq!(
            round_float(&fl(2f64.powi(-25) * (1.0 + 1e-9)), Dtype::F16),
            2f64.powi(-24)
        );
        assert_eq!(
            round_float(&fl(3.0 * 2f64.powi(-25)), Dtype::F16),
            2.0 * 2f64.powi(-24)
        );
        let tiny_neg = round_float(&fl(-2f64.powi(-30)), Dtype::F16);
        assert!(tiny_neg == 0.0 && tiny_neg.is_sign_negative());
        // bf16 smallest subnormal 2^-133.
        assert_eq!(
            round_float(&fl(2f64.powi(-133) * 1.4), Dtype::Bf16),
            2f64.powi(-133)
        );
        // Rounding up into the smallest normal.
        let just_below = fl(2f64.powi(-126) * (1.0 - 2f64.powi(-30)));
        assert_eq!(round_float(&just_below, Dtype::F32), 2f64.powi(-126));
        // f64 subnormals from a value far below f64's range.
        let t = Float::with_val(100, Float::i_exp(3, -1080)); // 1.5 * 2^-1079 -> 2^-1074 * 0.09375 -> 0
        assert_eq!(round_float(&t, Dtype::F64), 0.0);
        let t = Float::with_val(100, Float::i_exp(3, -1075)); // 1.5 * 2^-1074 -> 2 * 2^-1074 (tie to even)
        assert_eq!(round_float(&t, Dtype::F64), 2.0 * 5e-324);
    }

    /// Independent reference for one rounding of an f64: scale by a power of two so that the
    /// target's quantum is 1, round to an integer (ties to even) in f64, scale back.
    fn reference(x: f64, dtype: Dtype) -> f64 {
        if x == 0.0 || !x.is_finite() {
            return x;
        }
        let (p, emin, _) = format_params(dtype);
        let e = ((x.to_bits() >> 52) & 0x7ff) as i32 - 1023; // floor(log2|x|) for normal x
        let qe = (e - (p as i32 - 1)).max(emin - p as i32 + 1);
        let scale = |y: f64, k: i32| {
            // exact multiplication by 2^k in two steps (k may be outside f64's exponent range)
            y * 2f64.powi(k / 2) * 2f64.powi(k - k / 2)
        };
        let r = scale(scale(x, -qe).round_ties_even(), qe);
        if r.abs() > max_finite(dtype) {
            r.signum() * f64::INFINITY
        } else {
            r
        }
    }

    #[test]
    fn agrees_with_single_roundings_of_f64_inputs() {
        // For an f64 input there is only one rounding: compare with an independent reference,
        // with Rust's `as f32` (correctly rounded), and with `half`'s conversions on inputs that
        // are exact in f32 (half's f64 -> bf16/f16 truncates the low 32 significand bits before
        // rounding, so it is not correctly rounded for general f64 inputs near a tie).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for i in 0..20000 {
            let mant: f64 = rng.gen_range(-2.0..2.0);
            let exp: i32 = match i % 4 {
                0 => rng.gen_range(-150..130),
                1 => rng.gen_range(-30..20),
                2 => rng.gen_range(-1080..-1000),
                _ => rng.gen_range(-5..5),
            };
            // Make halfway cases common: cut the significand to a few bits sometimes.
            let mant = match i % 3 {
                0 => (mant * 2f64.powi(20)).round() / 2f64.powi(20),
                1 => (mant * 2f64.powi(8)).round() / 2f64.powi(8) * (1.0 + f64::EPSILON),
                _ => mant,
            };
            let x = mant * 2f64.powi(exp / 2) * 2f64.powi(exp - exp / 2);
            assert!(x.is_finite());
            let f = fl(x);
            assert_eq!(round_float(&f, Dtype::F64).to_bits(), x.to_bits());
            assert_eq!(
                round_float(&f, Dtype::F32).to_bits(),
                (x as f32 as f64).to_bits(),
                "{x:e}"
            );
            for dt in [Dtype::F32, Dtype::Tf32, Dtype::Bf16, Dtype::F16] {
                assert_eq!(
                    round_float(&f, dt).to_bits(),
                    reference(x, dt).to_bits(),
                    "{dt} {x:e}"
                );
            }
            let x32 = x as f32 as f64;
            if x32.is_finite() {
                let f32v = fl(x32);
                assert_eq!(
                    round_float(&f32v, Dtype::Bf16).to_bits(),
                    half::bf16::from_f64(x32).to_f64().to_bits()
                );
                assert_eq!(
                    round_float(&f32v, Dtype::F16).to_bits(),
                    half::f16::from_f64(x32).to_f64().to_bits()
                );
                // tf32: the reference crate rounds f32 bits, a single rounding for f32 values.
                assert_eq!(
                    round_float(&f32v, Dtype::Tf32).to_bits(),
                    Dtype::Tf32.round(x32).to_bits(),
                    "tf32 {x32:e}"
                );
            }
        }
    }

    #[test]
    fn agrees_with_mpfr_get_flt_and_get_d_on_wide_values() {
        // Values with 200 significant bits (no f64 intermediate): MPFR's own correctly rounded
        // conversions to float and double are references for F32 and F64.
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for i in 0..20000 {
            let hi: f64 = rng.gen_range(-2.0..2.0);
            let lo: f64 = rng.gen_range(-1.0..1.0);
            let exp: i32 = match i % 3 {
                0 => rng.gen_range(-155..130),
                1 => rng.gen_range(-1085..-1000),
                _ => rng.gen_range(-8..8),
            };
            // hi + lo * 2^-(24 or 53) (+ a tail): values next to f32 and f64 rounding boundaries.
            let shift = if i % 2 == 0 { -24 } else { -53 };
            let mut x = Float::with_val(200, hi)
                + Float::with_val(200, lo) * Float::with_val(200, Float::i_exp(1, shift));
            x += Float::with_val(200, Float::i_exp(1, -150)) * rng.gen_range(-1.0..1.0f64);
            x <<= exp;
            assert_eq!(
                round_float(&x, Dtype::F32).to_bits(),
                (x.to_f32() as f64).to_bits(),
                "{x}"
            );
            assert_eq!(
                round_float(&x, Dtype::F64).to_bits(),
                x.to_f64().to_bits(),
                "{x}"
            );
        }
    }

    #[test]
    fn half_f64_conversion_is_not_correctly_rounded() {
        // Documented finding: -397.00016117... is just above the bf16 midpoint 397 (between 396
        // and 398), so the correctly rounded bf16 value is -398; half's direct f64 conversion
        // drops the sticky bits and returns -396.
        let x = -3.970001611709595e2;
        assert_eq!(round_float(&fl(x), Dtype::Bf16), -398.0);
        assert_eq!(reference(x, Dtype::Bf16), -398.0);
        // f16: 1 + 2^-11 + 2^-40 is above the midpoint 1 + 2^-11: correct result 1 + 2^-10.
        // half's f64 -> f16 goes through f32 (F16C) or truncates the low 32 bits (fallback):
        // both see an exact tie and return 1.0.
        let x = 1.0 + 2f64.powi(-11) + 2f64.powi(-40);
        assert_eq!(round_float(&fl(x), Dtype::F16), 1.0 + 2f64.powi(-10));
        assert_eq!(reference(x, Dtype::F16), 1.0 + 2f64.powi(-10));
    }
}
