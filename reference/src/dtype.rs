//! Floating-point formats: rounding of values to a format and unit roundoffs.

use crate::error::{GlaError, Result};
use std::fmt;
use std::str::FromStr;

/// A storage or arithmetic format.
///
/// `Tf32` is the tensor cores' reduced-precision f32 mode (10 explicit mantissa bits, f32 range):
/// it is never used silently; it exists so a candidate can declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    /// IEEE binary64.
    F64,
    /// IEEE binary32.
    F32,
    /// TensorFloat-32 (f32 range, 11-bit significand).
    Tf32,
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
            Dtype::Bf16 => 2f64.powi(-8),
        }
    }

    /// Smallest positive normal number of the format.
    pub fn min_positive_normal(self) -> f64 {
        match self {
            Dtype::F64 => f64::MIN_POSITIVE,
            Dtype::F32 | Dtype::Tf32 | Dtype::Bf16 => f32::MIN_POSITIVE as f64,
            Dtype::F16 => 2f64.powi(-14),
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
    pub fn round(self, x: f64) -> f64 {
        match self {
            Dtype::F64 => x,
            Dtype::F32 => x as f32 as f64,
            Dtype::Bf16 => half::bf16::from_f64(x).to_f64(),
            Dtype::F16 => half::f16::from_f64(x).to_f64(),
            Dtype::Tf32 => round_tf32(x as f32) as f64,
        }
    }

    /// Round an f32 to this format (for f32 compute paths), returned as f32.
    pub fn round_f32(self, x: f32) -> f32 {
        match self {
            Dtype::F64 | Dtype::F32 => x,
            Dtype::Bf16 => half::bf16::from_f32(x).to_f32(),
            Dtype::F16 => half::f16::from_f32(x).to_f32(),
            Dtype::Tf32 => round_tf32(x),
        }
    }

    /// Lower-case name as used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F64 => "f64",
            Dtype::F32 => "f32",
            Dtype::Tf32 => "tf32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        }
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
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "fp16" | "float16" | "half" => Ok(Dtype::F16),
            other => Err(GlaError::Options(format!(
                "unknown dtype `{other}` (expected one of f64, f32, tf32, bf16, f16)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_keeps_ten_bits() {
        let x = 1.0f32 + 2f32.powi(-10) + 2f32.powi(-12);
        assert_eq!(Dtype::Tf32.round_f32(x), 1.0 + 2f32.powi(-10));
        assert_eq!(Dtype::Tf32.round_f32(1.0 + 2f32.powi(-11)), 1.0); // tie to even
    }

    #[test]
    fn parse_rejects_unknown() {
        assert!("int8".parse::<Dtype>().is_err());
        assert_eq!("bfloat16".parse::<Dtype>().unwrap(), Dtype::Bf16);
    }
}
