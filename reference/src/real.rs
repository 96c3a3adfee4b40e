//! The compute types the float implementations are generic over (f32 and f64).

use crate::dtype::Dtype;
use num_traits::Float;

/// A compute type: f32 or f64.
///
/// Conversions from f64 round to nearest; conversions to f64 are exact.
pub trait Real:
    Float + num_traits::NumAssign + Send + Sync + Default + std::fmt::Debug + std::iter::Sum + 'static
{
    /// The dtype this type computes in.
    const DTYPE: Dtype;
    /// Round an f64 to this type.
    fn of(x: f64) -> Self;
    /// Widen to f64 (exact).
    fn f64(self) -> f64;
    /// Round to a lower-precision format (bf16, f16, tf32) and back, i.e. emulate storing this
    /// value in that format. `Dtype::F32`/`F64` leave the value as this type holds it.
    fn round_to(self, dtype: Dtype) -> Self;
}

impl Real for f32 {
    const DTYPE: Dtype = Dtype::F32;
    #[inline]
    fn of(x: f64) -> Self {
        x as f32
    }
    #[inline]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline]
    fn round_to(self, dtype: Dtype) -> Self {
        dtype.round_f32(self)
    }
}

impl Real for f64 {
    const DTYPE: Dtype = Dtype::F64;
    #[inline]
    fn of(x: f64) -> Self {
        x
    }
    #[inline]
    fn f64(self) -> f64 {
        self
    }
    #[inline]
    fn round_to(self, dtype: Dtype) -> Self {
        dtype.round(self)
    }
}
