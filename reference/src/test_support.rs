//! **Not public API.** Hooks into private items for this crate's own integration tests
//! (`reference/tests/`): the unit tests live there so that `cargo test` does not compile the
//! whole crate a second time as a unit-test harness (the `[lib] test = false` note in
//! `Cargo.toml`). Hidden from the documentation; no semver promise: anything here may change or
//! vanish in any release. Other crates must not use it.
//!
//! Each hook is a thin non-generic wrapper (f32 or f64) over the private item it exposes, so the
//! tests exercise the same code the forms run.

use crate::bounds::DgForm;
use crate::chunked::ChunkOptions;
use crate::problem::Problem;
use crate::solution::Solution;
use ndarray::ArrayView2;

/// The chunked form in f32 with the per-(sequence, head) kernel forced to its baseline build
/// (`baseline = true`) or the best build this CPU supports (AVX-512 or AVX2 + FMA, runtime
/// detection; what the public forms run). `dg`: `None` for the forward only, else the backward
/// with that gate-gradient form. The options must be valid (not checked here).
pub fn chunked_f32_isa(
    p: &Problem,
    opts: &ChunkOptions,
    dg: Option<DgForm>,
    baseline: bool,
) -> Solution {
    crate::chunked::run_f32_isa(p, opts, dg, baseline)
}

/// The log-space parallel form in f32 (`backward`: with gradients; needs `do`) with the per-item
/// kernel forced to its baseline build (`baseline = true`) or the AVX2 + FMA build where the CPU
/// has it (what the public forms run).
pub fn parallel_f32_isa(p: &Problem, backward: bool, baseline: bool) -> Solution {
    crate::parallel::run_f32(p, backward, !baseline)
}

/// The chunked form's f32 `exp` (Cody-Waite/Cephes, flush below -87.33; `chunked::seg::expf_fast`).
pub fn expf_fast(x: f32) -> f32 {
    crate::chunked::seg::expf_fast(x)
}

/// The in-place vector `exp` of the log-space forms in f32 (`chunked::seg::vexp`).
pub fn vexp_f32(x: &mut [f32]) {
    crate::chunked::seg::vexp::<f32>(x)
}

/// The chunked form's small matrix product in f32 (`chunked::gemm::gemm`):
/// `c = alpha * A @ B + beta * c`, `a` `[m, k]` with strides `sa`, `b` `[k, n]` with strides
/// `sb`, `c` `[m, n]` row-major with row stride `ldc` (not read when `beta = 0`).
#[allow(clippy::too_many_arguments)]
pub fn gemm_f32(
    mkn: (usize, usize, usize),
    alpha: f32,
    a: &[f32],
    sa: (usize, usize),
    b: &[f32],
    sb: (usize, usize),
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    crate::chunked::gemm::gemm::<f32>(mkn, alpha, a, sa, b, sb, beta, c, ldc)
}

/// The reset-aware cumulative gates of the log-space forms in f64 (`cumgate::Cum`).
pub struct CumGate(crate::cumgate::Cum<f64>);

impl CumGate {
    /// Build from gates `[L, Kg]`.
    pub fn new(g: ArrayView2<f64>) -> Self {
        CumGate(crate::cumgate::Cum::new(g))
    }

    /// `decay(j -> i)` in gate channel `c` (`j <= i`; `j = -1`: from before row 0): exactly 0
    /// across a reset, else `exp(Gr_i - Gr_j)`.
    pub fn dec(&self, i: usize, j: isize, c: usize) -> f64 {
        self.0.dec(i, j, c)
    }
}

/// Rounding of `x` to a binary format with `p` significand bits, smallest normal exponent `emin`
/// and largest exponent `emax`, ties to even (`dtype::round_binary`, the bit-manipulating path
/// `Dtype::round` runs).
pub fn round_binary(x: f64, p: i32, emin: i32, emax: i32) -> f64 {
    crate::dtype::round_binary(x, p, emin, emax)
}

/// The same rounding by scaling (`dtype::round_binary_scaled`), the reference the fast path is
/// checked against.
pub fn round_binary_scaled(x: f64, p: i32, emin: i32, emax: i32) -> f64 {
    crate::dtype::round_binary_scaled(x, p, emin, emax)
}
