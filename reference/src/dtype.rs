//! Floating-point formats: rounding of values to a format and unit roundoffs.

use crate::error::{GlaError, Result};
use std::fmt;
use std::str::FromStr;

/// A storage or arithmetic format.
///
/// `Tf32` is the tensor cores' reduced-precision f32 mode (10 explicit mantissa bits, f32 range):
/// it is never used silently; it exists so a candidate can declare it. `Tf32Rz` is the same format
/// reached by truncation: tensor cores read only the top 19 bits of an f32 operand, so a kernel
/// that hands them f32 values without converting them first (Triton's default `tl.dot` on fp32
/// inputs, e.g. fla's chunk_gla in fp32) rounds every operand toward zero: twice the unit
/// roundoff of round-to-nearest, and biased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    /// IEEE binary64.
    F64,
    /// IEEE binary32.
    F32,
    /// TensorFloat-32 (f32 range, 11-bit significand), rounded to nearest (`cvt.rna.tf32.f32`).
    Tf32,
    /// TensorFloat-32 reached by truncating an f32 (round toward zero): the operands of tensor-core
    /// products on f32 registers that were not converted first.
    Tf32Rz,
    /// bfloat16 (f32 range, 8-bit significand).
    Bf16,
    /// IEEE binary16.
    F16,
}

impl Dtype {
    /// Unit roundoff u = 2^-p of round-to-nearest in this format.
    ///
    /// ```
    /// use gla_reference::Dtype;
    /// assert_eq!(Dtype::F32.unit_roundoff(), 2f64.powi(-24));
    /// assert_eq!(Dtype::Bf16.unit_roundoff(), 2f64.powi(-8));
    /// ```
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Dtype::F64 => 2f64.powi(-53),
            Dtype::F32 => 2f64.powi(-24),
            Dtype::Tf32 | Dtype::F16 => 2f64.powi(-11),
            // round toward zero: the error bound is a whole unit in the last place
            Dtype::Tf32Rz => 2f64.powi(-10),
            Dtype::Bf16 => 2f64.powi(-8),
        }
    }

    /// Smallest positive normal number of the format.
    pub fn min_positive_normal(self) -> f64 {
        match self {
            Dtype::F64 => f64::MIN_POSITIVE,
            Dtype::F32 | Dtype::Tf32 | Dtype::Tf32Rz | Dtype::Bf16 => f32::MIN_POSITIVE as f64,
            Dtype::F16 => 2f64.powi(-14),
        }
    }

    /// The absolute underflow unit used by the error model's floor eta (docs/math.md §8.1): the smallest
    /// normal for formats whose range matches f32 or f64, and the subnormal spacing 2^-24 for
    /// fp16, whose narrow exponent range makes stored decayed values (e.g. k*exp(Gl_last - Gl))
    /// lose all relative accuracy below 2^-14 (docs/math.md §8: `2^-24 * (#terms) * max|k||v|`).
    ///
    /// ```
    /// use gla_reference::Dtype;
    /// assert_eq!(Dtype::F16.underflow_unit(), 2f64.powi(-24));
    /// assert_eq!(Dtype::F32.underflow_unit(), f32::MIN_POSITIVE as f64);
    /// ```
    pub fn underflow_unit(self) -> f64 {
        match self {
            Dtype::F16 => 2f64.powi(-24),
            other => other.min_positive_normal(),
        }
    }

    /// Round an f64 to the nearest value of this format (ties to even), returned as f64.
    ///
    /// Overflow gives +-inf, as a cast in a kernel would. `Tf32` rounds the f32 significand to 10
    /// explicit bits.
    ///
    /// ```
    /// use gla_reference::Dtype;
    /// assert_eq!(Dtype::Bf16.round(1.0 + 1.0 / 512.0), 1.0);
    /// assert_eq!(Dtype::F16.round(1e6), f64::INFINITY);
    /// ```
    #[inline]
    pub fn round(self, x: f64) -> f64 {
        match self {
            Dtype::F64 => x,
            Dtype::F32 => x as f32 as f64,
            // Rounded once, straight from the f64 value: `half`'s f64 conversions truncate the
            // low significand bits or go through f32 first (double rounding).
            Dtype::Bf16 => round_binary(x, 8, -126, 127),
            Dtype::F16 => round_binary(x, 11, -14, 15),
            Dtype::Tf32 => round_binary(x, 11, -126, 127),
            // the kernel holds the value as an f32 first, then the tensor core drops the bits
            Dtype::Tf32Rz => truncate_tf32(x as f32) as f64,
        }
    }

    /// Round an f32 to this format (for f32 compute paths), returned as f32.
    #[inline(always)]
    pub fn round_f32(self, x: f32) -> f32 {
        match self {
            Dtype::F64 | Dtype::F32 => x,
            Dtype::Bf16 => half::bf16::from_f32(x).to_f32(),
            Dtype::F16 => half::f16::from_f32(x).to_f32(),
            Dtype::Tf32 => round_tf32(x),
            Dtype::Tf32Rz => truncate_tf32(x),
        }
    }

    /// Lower-case name as used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "f64",
            Dtype::F32 => "f32",
            Dtype::Tf32 => "tf32",
            Dtype::Tf32Rz => "tf32-rz",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
    }
}

/// Round `x` once to a binary format with a `p`-bit significand (hidden bit included), minimum
/// normal exponent `emin` and maximum exponent `emax`, ties to even, with gradual underflow and
/// overflow to infinity.
///
/// Where `x` is a normal number of the target's exponent range (`emin <= e <= emax`, every value
/// that matters in practice) the significand is rounded on the bits: ties to even on the dropped
/// `53 - p` bits, a carry into the exponent being the round-up to the next binade and beyond
/// `emax` the overflow to infinity. That is the value [`round_binary_scaled`] computes for the
/// whole range (test `bit_rounding_is_the_scaled_rounding`), several times faster.
#[inline]
pub(crate) fn round_binary(x: f64, p: i32, emin: i32, emax: i32) -> f64 {
    let bits = x.to_bits();
    let e = ((bits >> 52) & 0x7ff) as i32 - 1023;
    if e < emin || e > emax || !(2..=52).contains(&p) {
        return round_binary_scaled(x, p, emin, emax);
    }
    let drop = (53 - p) as u32;
    let lsb = (bits >> drop) & 1;
    let r = f64::from_bits((bits + ((1u64 << (drop - 1)) - 1) + lsb) & !((1u64 << drop) - 1));
    let max_finite =
        f64::from_bits((((emax + 1023) as u64) << 52) | (((1u64 << (p - 1)) - 1) << (53 - p)));
    if r.abs() > max_finite {
        f64::INFINITY.copysign(x)
    } else {
        r
    }
}

/// [`round_binary`] by scaling: `x` divided by the target's spacing at `|x|`, rounded to an
/// integer (ties to even) and scaled back.
pub(crate) fn round_binary_scaled(x: f64, p: i32, emin: i32, emax: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let biased = ((x.to_bits() >> 52) & 0x7ff) as i32;
    let e = (biased - 1023).max(emin); // f64 subnormals lie far below every target's range
                                       // The spacing of the target format at |x|; x / quantum is exact (power-of-two scaling in range).
    let quantum = 2f64.powi(e - p + 1);
    let r = (x / quantum).round_ties_even() * quantum;
    let max_finite = (2.0 - 2f64.powi(1 - p)) * 2f64.powi(emax);
    if r.abs() > max_finite {
        f64::INFINITY.copysign(x)
    } else {
        r
    }
}

/// Round an f32 to TF32 (keep 10 explicit mantissa bits, round to nearest even).
fn round_tf32(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    let bits = x.to_bits();
    let lsb = (bits >> 13) & 1;
    let rounded = bits.wrapping_add(0x0fff + lsb) & !0x1fff;
    f32::from_bits(rounded)
}

/// Truncate an f32 to TF32 (keep 10 explicit mantissa bits, round toward zero): what a tensor
/// core does with the low 13 bits of an f32 operand.
fn truncate_tf32(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    f32::from_bits(x.to_bits() & !0x1fff)
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Dtype {
    type Err = GlaError;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f64" | "float64" | "double" => Ok(Dtype::F64),
            "f32" | "float32" | "float" => Ok(Dtype::F32),
            "tf32" => Ok(Dtype::Tf32),
            "tf32-rz" => Ok(Dtype::Tf32Rz),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Dtype::F16),
            other => Err(GlaError::Options(format!(
                "unknown dtype `{other}` (expected one of f64, f32, tf32, tf32-rz, bf16, f16)"
            ))),
        }
    }
}
