//! The two-level chunked form of GLA (docs/math.md §3 and §4): fla's `chunk_gla` algorithm, block
//! for block, as a CPU twin of the GPU kernels, with kernel-faithful rounding emulation.
//!
//! Per (sequence, head), chunks of `C = chunk` rows restart at every sequence start (varlen); the
//! last chunk of a sequence may be partial. Within chunk p (rows i = 0..L_p-1), `Gl` is the
//! chunk-local inclusive cumulative log gate, computed in the compute type `T`.
//!
//! Forward:
//! ```text
//!   H_0 = h0,   H_{p+1} = Diag(exp(Gl_last)) @ H_p + (K * exp(Gl_last - Gl))^T @ V,   hT = H_NT
//!   o_i = scale * (q_i * exp(Gl_i))^T @ H_p + sum_{j<=i} A_ij v_j
//!   A: sub-chunks of c = sub_chunk rows. Block I > J (off-diagonal), anchor a = Gl at the first
//!      row of query block I:  A_IJ = (scale * Q_I * exp(Gl_I - a)) @ (K_J * exp(a - Gl_J))^T
//!      (both factors <= 1, one matrix product per query block);
//!      block I == J: A_ij = scale * sum_d q_i[d] k_j[d] exp(Gl_i[d] - Gl_j[d]), j <= i, elementwise
//!      in log space; entries with j > i are never evaluated (select, not a multiplied mask).
//! ```
//!
//! Backward (docs/math.md §4, chunk-level, not the recurrence):
//! ```text
//!   dH_{NT-1} = dhT,  dH_{p-1} = Diag(exp(Gl_last^p)) dH_p + scale (Q_p*exp(Gl))^T @ do_p,  dh0 = the last one
//!   dA_ij = scale do_i . v_j (j <= i)
//!   dv = A^T @ do + (K * exp(Gl_last - Gl)) @ dH_p
//!   dq = intra(dA, K; anchor first row of the query block) + scale exp(Gl) * (do @ H_p^T)
//!   dk = intra(dA, Q; anchor last valid row of the key block) + exp(Gl_last - Gl) * (V @ dH_p^T)
//!   dg_i = sum_{s=i..L_p-1} (q_s*dq_s - k_s*dk_s) + exp(Gl_last)*rowsum(H_p*dH_p) + sum_j k_j*dk_inter_j
//! ```
//!
//! Local-form gate gradient ([`backward_with`] with [`DgForm::Local`]). The reverse sum above
//! subtracts partial sums: its error is relative to `M_dg` and it cancels catastrophically when
//! alpha is tiny (alpha = 1e-12: errors ~1e5-1e15 times `|dg|`). The local form
//! `dg_t = alpha_t * rowsum(S_{t-1} * dS_t)` expands, per chunk, into sums of terms that each
//! carry the factor `alpha_t` (with `W_rs[d] = q_r[d] k_s[d] dA_rs exp(Gl_r[d] - Gl_s[d])`, s < r):
//! ```text
//!   dg_t = gamma * rowsum(H_p * dH_p)          gamma = exp(Gl_last)       (both outside the chunk)
//!        + sum_{r >= t} q_r * dq_inter_r                                  (keys before the chunk)
//!        + sum_{s < t}  k_s * dk_inter_s                                  (queries after the chunk)
//!        + sum_{s < t <= r} W_rs                                          (pairs inside the chunk)
//! ```
//! The intra-chunk pairs are split by sub-chunk (t in block m): (1) full blocks J < m < I through
//! the forward's anchored factors (`Y_I = dA[I, s]^T @ round(q_I exp(Gl_I - a))`, then
//! `sum_s round(k_s exp(a - Gl_s)) Y_I[s]`, both factors <= 1); (2) s in m, r in later blocks:
//! prefix sums of `k_s * dk_off_s`; (3) r in m, s in earlier blocks: suffix sums of
//! `q_r * dq_off_r` (`dq_off`, `dk_off`: the off-diagonal parts the dq/dk products compute);
//! (4) both in m: elementwise with the forward's diagonal decays. Only additions of such terms:
//! the error is relative to the condition magnitude `M_dg_local` (docs/math.md §8.1), and dg is exactly 0
//! where alpha = 0. Cost per chunk: one more `[< C - c, c] @ [c, K]` product per sub-chunk from
//! the third on, and O(C (c + 2) K) elementwise work; dq, dk, dv, dh0, o, hT are bitwise those
//! of [`backward`]. Scalar gates: the per-channel values summed over channels, as for the
//! reverse sum.
//!
//! Exactness for every valid gate. No exponent that reaches `exp` is positive (checked by
//! `debug_assert!`), and gates of `-inf` (alpha = 0) are exact: per channel, the cumulative gate
//! is restarted after the last reset inside the chunk and a decay across a reset is exactly 0
//! (module `seg`, "reset-aware cumulative gates"). Without resets this is bit-for-bit the
//! ordinary chunk-local cumsum, so the error model's lambda (largest chunk-local sum of |g|) holds.
//!
//! Precision emulation: see [`RoundingPlan`]; the compute type `T` (f32 or f64) is the
//! accumulation format of every product. In f32, `exp` is a vectorized Cody-Waite/Cephes `expf`
//! (<= 2 ulp, the class of CUDA's `exp2f`) that flushes results below 2^-126 to 0 like Triton's
//! `ex2.approx.ftz` (inside the error model's eta floor); f64 uses libm `exp`.
//!
//! Implementation: rayon over (sequence, head); each task reads its f64 inputs chunk by chunk
//! straight into per-thread work buffers of the compute type (reused across items and calls,
//! no whole-tensor copies) and writes its results chunk by chunk straight into the f64 result
//! tensors. Matrix products: module `gemm` (unpacked register tiles for a row-major B;
//! matrixmultiply, with its runtime-detected AVX-512 kernels, for a transposed B). The
//! per-(sequence, head) kernel is compiled three times (baseline, AVX2+FMA, AVX-512; chosen at
//! run time; bitwise identical results). Per (sequence, head): pass 1 reads q, k, v, g and
//! computes the chunk-local decays `exp(Gl)`, `exp(Gl_last - Gl)`, the factors `q*exp(Gl)`,
//! `k*exp(Gl_last - Gl)` and the state recurrence (one `[K, C] @ [C, V]` product per chunk);
//! the backward keeps the states `H_p` (`[NT, K, V]`), then in one reverse sweep per chunk
//! recomputes the chunk's decays and factors, reads `do`, steps the state gradient and computes
//! the outputs and all gradients, the intra-chunk decays (off-diagonal anchored factors,
//! diagonal elementwise decays) evaluated once and shared by the forward and backward formulas.
//! Measured on the 2-core shared machine (B=1, H=8, T=4096, K=V=128, f32;
//! `GLA_BENCH_QUICK=5 cargo bench -p gla-reference --bench chunked`): forward+backward
//! ~0.33-0.35 CPU-s, 175-195 ms wall (the original ~0.69-0.73 CPU-s), 2.8-3.2x less wall time
//! than the recurrent reference in the same run; ~25 GFLOP per CPU-second against the f32
//! GEMM's ~115-135. Where the time goes (rdtsc per phase, one profiling run): writing the five
//! f64 result tensors (page faults, kernel zeroing, f32 -> f64 stores) 22%, reading the f64
//! inputs 7%, the matrix products 37% (at ~60-75 GFLOP/CPU-s: they are small, `[64, 128] @
//! [128, 128]` and smaller), the intra-chunk A (diagonal decays and dot products) 17%, the
//! intra-chunk dq/dk 8%, dg and the rest 9%. The data movement alone
//! ([`interface_floor`]: the same reads, writes and allocations without arithmetic) takes
//! ~0.11 CPU-s (55-60 ms wall), so a form that did nothing but its useful FLOPs at the GEMM rate
//! would still need ~0.18 CPU-s: against the recurrent reference that is at most ~5.2-5.7x CPU,
//! ~6.2x wall (the benchmark prints this bound in every run).
//!
//! ```
//! use gla_reference::{chunked::{self, ChunkOptions}, rounding::RoundingPlan, Dtype, Gates, Problem};
//! use ndarray::Array4;
//! let (b, t, h, k, v) = (1, 40, 2, 5, 3);
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, h, d)| ((t * 7 + d * 3 + h) % 11) as f64 / 11.0 - 0.5);
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| ((t * 5 + d) % 7) as f64 / 7.0 - 0.4);
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| ((t + 3 * e) % 5) as f64 - 2.0);
//! let mut g = Array4::from_elem((b, t, h, k), -0.3);
//! g[[0, 17, 0, 2]] = f64::NEG_INFINITY; // alpha = 0 inside a chunk
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(Array4::ones((b, t, h, v))).build()?;
//! let opts = ChunkOptions { chunk: 16, sub_chunk: 4, ..ChunkOptions::default() };
//! let exact = chunked::backward::<f64>(&p, &opts)?;
//! let bf16 = chunked::forward::<f32>(&p, &opts.with_plan(RoundingPlan::kernel_default(Dtype::Bf16)))?;
//! assert!(exact.grads.unwrap().dg.iter().all(|x| x.is_finite()));
//! assert!(bf16.o.iter().zip(exact.o.iter()).all(|(a, b)| (a - b).abs() < 0.1));
//! # Ok::<(), gla_reference::GlaError>(())
//! ```

// The form by phase: `work` distributes (sequence, head) tasks and owns their buffers and
// writers, `item` runs one task (inter-chunk states, chunk outputs, the backward sweep),
// `intra` computes the intra-chunk blocks, `gemm` the small dense products; `seg` is shared
// with the parallel form, as is the reset-aware cumulative gate (`crate::cumgate`).
pub(crate) mod gemm;
mod intra;
mod item;
pub(crate) mod seg;
mod work;

use crate::bounds::DgForm;
use crate::cumgate::Cum;
use crate::dtype::Dtype;
use crate::error::{GlaError, Result};
use crate::problem::{GateKind, Problem, SeqSpan};
use crate::real::Real;
use crate::rounding::round1;
pub use crate::rounding::RoundingPlan;
use crate::solution::{Gradients, Solution};
use gemm::gemm;
use ndarray::{s, Array2, ArrayView2};
use rayon::prelude::*;
use seg::{zeros4, Shared4};
// The phases see each other's items through the parent (`use super::*` in each).
use intra::*;
use item::*;
use work::*;

/// Options of the chunked form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkOptions {
    /// Chunk size C (rows per chunk; default 64, fixed whatever T is). Must be a multiple of
    /// `sub_chunk`.
    pub chunk: usize,
    /// Sub-chunk size c of the secondary chunking of A (default 16). At least 1.
    pub sub_chunk: usize,
    /// Where operands are rounded to lower precision (default: nowhere).
    pub plan: RoundingPlan,
}

impl Default for ChunkOptions {
    fn default() -> Self {
        ChunkOptions {
            chunk: 64,
            sub_chunk: 16,
            plan: RoundingPlan::none(),
        }
    }
}

impl ChunkOptions {
    /// Options with the given chunk and sub-chunk sizes and no rounding, validated.
    ///
    /// ```
    /// use gla_reference::chunked::ChunkOptions;
    /// assert!(ChunkOptions::new(64, 16).is_ok());
    /// assert!(ChunkOptions::new(48, 32).is_err()); // not a multiple
    /// assert!(ChunkOptions::new(0, 16).is_err());
    /// ```
    pub fn new(chunk: usize, sub_chunk: usize) -> Result<Self> {
        let o = ChunkOptions {
            chunk,
            sub_chunk,
            plan: RoundingPlan::none(),
        };
        o.validate()?;
        Ok(o)
    }

    /// The same options with another rounding plan.
    #[must_use]
    pub fn with_plan(mut self, plan: RoundingPlan) -> Self {
        self.plan = plan;
        self
    }

    /// Check the sizes: both at least 1, `chunk` a multiple of `sub_chunk`.
    pub fn validate(&self) -> Result<()> {
        if self.chunk == 0 || self.sub_chunk == 0 {
            return Err(GlaError::Options(format!(
                "chunk ({}) and sub_chunk ({}) must both be at least 1",
                self.chunk, self.sub_chunk
            )));
        }
        if self.chunk % self.sub_chunk != 0 {
            return Err(GlaError::Options(format!(
                "chunk ({}) must be a multiple of sub_chunk ({})",
                self.chunk, self.sub_chunk
            )));
        }
        Ok(())
    }
}

/// Forward pass of the chunked form in compute type `T` (f32 or f64) with the rounding plan of
/// `opts`. Returns `o` and `ht`.
///
/// Errors: [`GlaError::Options`] for invalid chunk sizes.
pub fn forward<T: Real>(p: &Problem, opts: &ChunkOptions) -> Result<Solution> {
    opts.validate()?;
    Ok(run_instance::<T>(p, opts, None, Isa::Best))
}

/// [`run`] for `T`, through its f32 or f64 instance compiled in this crate (`crate::real`).
fn run_instance<T: Real>(
    p: &Problem,
    opts: &ChunkOptions,
    dg: Option<DgForm>,
    isa: Isa,
) -> Solution {
    crate::real::instance::<T, _>(|| run_f32(p, opts, dg, isa), || run_f64(p, opts, dg, isa))
}

#[inline(never)]
fn run_f32(p: &Problem, opts: &ChunkOptions, dg: Option<DgForm>, isa: Isa) -> Solution {
    run::<f32>(p, opts, dg, isa)
}

#[inline(never)]
fn run_f64(p: &Problem, opts: &ChunkOptions, dg: Option<DgForm>, isa: Isa) -> Solution {
    run::<f64>(p, opts, dg, isa)
}

/// Forward and backward pass of the chunked form (docs/math.md §4 chunk formulas) in compute
/// type `T` with the rounding plan of `opts`. Returns `o`, `ht` and all gradients (dg in the
/// chunk reverse-sum form, i.e. judged with the reverse-cumsum magnitude `M_dg`); the same as
/// [`backward_with`] with [`DgForm::ReverseCumsum`].
///
/// Errors: [`GlaError::Options`] for invalid chunk sizes or a missing `do`.
pub fn backward<T: Real>(p: &Problem, opts: &ChunkOptions) -> Result<Solution> {
    backward_with::<T>(p, opts, DgForm::ReverseCumsum)
}

/// Forward and backward pass of the chunked form in compute type `T` with the rounding plan of
/// `opts`, the gate gradient computed by the chosen algorithm:
///
/// - [`DgForm::ReverseCumsum`]: the chunk reverse sums of docs/math.md §4 (fla's algorithm), the
///   same as [`backward`] bit for bit; judged with `M_dg`.
/// - [`DgForm::Local`]: chunkwise sums of terms that all carry `alpha_t` (module docs, "Local-form
///   gate gradient"): no partial sum is ever subtracted, so the error is relative to the
///   condition magnitude `M_dg_local`, which is up to ~1e14 times smaller than `M_dg` when alpha
///   is tiny. Every other output (`o`, `ht`, `dq`, `dk`, `dv`, `dh0`) is the same bit for bit as
///   with the reverse cumsum.
///
/// Errors: [`GlaError::Options`] for invalid chunk sizes or a missing `do`.
///
/// ```
/// use gla_reference::bounds::{compare, magnitudes, Algorithm, BoundSpec, DgForm};
/// use gla_reference::chunked::{self, ChunkOptions};
/// use gla_reference::{recurrent, Dtype, Gates, Problem};
/// use ndarray::Array4;
/// let (b, t, h, k, v) = (1, 40, 1, 4, 3);
/// let f = |i: usize| ((i * 7919) % 1000) as f64 / 500.0 - 1.0; // deterministic, signed
/// let q = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| f(t * 31 + d));
/// let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| f(t * 17 + d + 3));
/// let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| f(t * 13 + e + 9));
/// let do_ = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| f(t * 3 + e + 1));
/// let g = Array4::from_elem((b, t, h, k), (1e-12f64).ln()); // alpha = 1e-12: nearly memoryless
/// let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(do_).build()?.rounded_to(Dtype::F32)?;
/// let opts = ChunkOptions::new(16, 4)?;
/// let local = chunked::backward_with::<f32>(&p, &opts, DgForm::Local)?;
/// let rc = chunked::backward::<f32>(&p, &opts)?;
/// // Everything but dg is the same bit for bit.
/// assert_eq!(local.grads.as_ref().unwrap().dq, rc.grads.as_ref().unwrap().dq);
/// // Judged against the local (condition) magnitude, the local form passes.
/// let exact = recurrent::backward_with::<f64>(&p, DgForm::Local)?;
/// let spec = BoundSpec::new(Algorithm::Chunked { chunk: 16 }, Dtype::F32).with_dg_form(DgForm::Local);
/// let rep = compare(&p, &exact, &magnitudes(&p), &local, &spec)?;
/// assert!(rep.pass(), "{rep}");
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn backward_with<T: Real>(p: &Problem, opts: &ChunkOptions, form: DgForm) -> Result<Solution> {
    opts.validate()?;
    p.require_backward()?;
    Ok(run_instance::<T>(p, opts, Some(form), Isa::Best))
}

/// Benchmark aid: the data movement of [`backward`] without its arithmetic. Allocates the same
/// f64 result tensors, reads `q`, `k`, `v`, `g`, `do` chunk by chunk into the same compute-type
/// work buffers and writes `o`, `dq`, `dk`, `dv`, `dg` (per-channel gates) from them, with the
/// same parallel split and writers. The result is meaningless (copies of the inputs); its time
/// is the floor under any form that takes and returns f64 tensors (the benchmark reports it).
///
/// Errors: as [`backward`].
#[doc(hidden)]
pub fn interface_floor<T: Real>(p: &Problem, opts: &ChunkOptions) -> Result<Solution> {
    opts.validate()?;
    p.require_backward()?;
    Ok(run_instance::<T>(
        p,
        opts,
        Some(DgForm::ReverseCumsum),
        Isa::Floor,
    ))
}

/// Test hook (`crate::test_support`): the f32 instance of [`run`] with the baseline build of the
/// per-item kernel (`baseline`) or the best build the CPU supports (what the forms use).
pub(crate) fn run_f32_isa(
    p: &Problem,
    opts: &ChunkOptions,
    dg: Option<DgForm>,
    baseline: bool,
) -> Solution {
    run_f32(p, opts, dg, if baseline { Isa::Base } else { Isa::Best })
}
