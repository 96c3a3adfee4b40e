//! The compute types the float implementations are generic over (f32 and f64).
//!
//! The public forms (`recurrent::forward::<T>`, `chunked::backward::<T>`, ...) are generic, but
//! their bodies are compiled once, here: each is a thin dispatcher (`instance`) to a
//! non-generic f32 or f64 instance of the form. A crate that calls `chunked::backward::<f32>`
//! links that instance instead of compiling the whole chunked form again in its own code, which
//! keeps every dependent test binary small and quick to build. [`Real`] is sealed: f32 and f64
//! are the only compute types.

use crate::dtype::Dtype;
use num_traits::Float;

/// A compute type: f32 or f64 (sealed: no other type implements it).
///
/// Conversions from f64 round to nearest; conversions to f64 are exact.
pub trait Real:
    sealed::Sealed
    + Float
    + num_traits::NumAssign
    + Send
    + Sync
    + Default
    + std::fmt::Debug
    + std::iter::Sum
    + 'static
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
    #[inline(always)]
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
    #[inline(always)]
    fn round_to(self, dtype: Dtype) -> Self {
        dtype.round(self)
    }
}

mod sealed {
    /// Only f32 and f64 are compute types ([`super::Real`]).
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Run the f32 instance of a form when `T` is f32 and the f64 instance otherwise. The two
/// closures call non-generic functions of this crate, so a caller's monomorphization of a public
/// generic form stops here (module docs).
#[inline(always)]
pub(crate) fn instance<T: Real, R>(on_f32: impl FnOnce() -> R, on_f64: impl FnOnce() -> R) -> R {
    match T::DTYPE {
        Dtype::F32 => on_f32(),
        _ => on_f64(),
    }
}
