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

mod gemm;
pub(crate) mod seg;

use crate::bounds::DgForm;
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
use seg::{zeros4, Cum, Shared4};

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

/// [`interface_floor`]'s per-(sequence, head) work: load every input chunk, write every result.
fn item_floor<T: Real>(src: &Src, sink: &Sink, w: &mut Work<T>, opts: &ChunkOptions) {
    let (l, kk) = src.q.dim();
    let vv = src.v.ncols();
    let kg = src.g.ncols();
    let cs = opts.chunk;
    let (q, k, v, g, d) = (
        sized(&mut w.q, cs * kk),
        sized(&mut w.k, cs * kk),
        sized(&mut w.v, cs * vv),
        sized(&mut w.g, cs * kg),
        sized(&mut w.do_, cs * vv),
    );
    let Some(gout) = sink.outs.grads.as_ref() else {
        return;
    };
    for p0 in (0..l).step_by(cs) {
        let lp = cs.min(l - p0);
        let (q, k, v, g, d) = (
            &mut q[..lp * kk],
            &mut k[..lp * kk],
            &mut v[..lp * vv],
            &mut g[..lp * kg],
            &mut d[..lp * vv],
        );
        load(&src.q, p0, q, None);
        load(&src.k, p0, k, None);
        load(&src.v, p0, v, None);
        load(&src.g, p0, g, None);
        if let Some(s) = &src.do_ {
            load(s, p0, d, None);
        }
        sink.rows(&sink.outs.o, p0, d);
        sink.rows(&gout[0], p0, q);
        sink.rows(&gout[1], p0, k);
        sink.rows(&gout[2], p0, v);
        sink.rows(&gout[3], p0, g);
    }
}

/// Round a slice in place to `dtype` (the rounding points of the plan; no-op for `None`, for
/// f64 and for f32 in f32 compute).
#[inline(always)]
fn round_slice<T: Real>(x: &mut [T], dtype: Option<Dtype>) {
    if let Some(dt) = dtype {
        if dt == Dtype::F64 || (dt == Dtype::F32 && T::DTYPE == Dtype::F32) {
            return;
        }
        for v in x.iter_mut() {
            *v = v.round_to(dt);
        }
    }
}

/// `out = round(mul * x * e, dtype)` elementwise (the factor builder of every log-space product:
/// an operand times its decay `e <= 1`).
#[inline(always)]
fn factor_into<T: Real>(x: &[T], e: &[T], mul: T, out: &mut [T], dtype: Option<Dtype>) {
    for ((o, &xv), &ev) in out.iter_mut().zip(x).zip(e) {
        *o = mul * xv * ev;
    }
    round_slice(out, dtype);
}

/// `x` rounded to `dtype` (in `buf`), or `x` itself when nothing is rounded.
#[inline(always)]
fn round_view<'a, T: Real>(x: &'a [T], dtype: Option<Dtype>, buf: &'a mut [T]) -> &'a [T] {
    match dtype {
        Some(dt) if !(dt == Dtype::F64 || (dt == Dtype::F32 && T::DTYPE == Dtype::F32)) => {
            buf.copy_from_slice(x);
            round_slice(buf, dtype);
            buf
        }
        _ => x,
    }
}

/// Per-chunk workspace of the intra-chunk part (allocated once per (sequence, head)), holding
/// the decay factors the forward computes and the backward reuses: the off-diagonal query
/// decays and key factors (anchor = first row of each query sub-chunk) and the diagonal
/// sub-blocks' elementwise decays.
struct Intra<T> {
    /// `round(A)`, `[lp, lp]` (row stride lp), lower triangular.
    a: Vec<T>,
    /// `exp(Gl_r - Gl_a)` for the rows r of query sub-chunks I >= 1 (anchor a = first row of I), `[C, K]`.
    qd: Vec<T>,
    /// `round(k_r * exp(Gl_a - Gl_r))`, rows r < a of each query sub-chunk I >= 1, concatenated.
    kf: Vec<T>,
    /// `decay(j -> i)` for every (i, j >= first row of the block, j <= i) of each diagonal block.
    dexp: Vec<T>,
    /// Scratch `[C, K]` (query factors, products).
    t1: Vec<T>,
    /// Scratch `[C, K]`.
    t2: Vec<T>,
    /// Scratch `[K]` (rounded diagonal factor).
    buf: Vec<T>,
    ones: Vec<T>,
    /// Local-form dg only: the off-diagonal parts of dq (key blocks before the row's block) and
    /// of dk (query blocks after it) per chunk row, `[C, K]` each (written by [`Self::backward`]
    /// when asked) and the full-block sums per sub-chunk `[NC, K]`.
    dqoff: Vec<T>,
    dkoff: Vec<T>,
    r1: Vec<T>,
}

impl<T: Real> Intra<T> {
    fn new(cs: usize, sc: usize, kk: usize) -> Self {
        let nc = cs.div_ceil(sc);
        Intra {
            a: vec![T::zero(); cs * cs],
            qd: vec![T::zero(); cs * kk],
            kf: vec![T::zero(); sc * nc * nc.saturating_sub(1) / 2 * kk],
            dexp: vec![T::zero(); nc * sc * (sc + 1) / 2 * kk],
            t1: vec![T::zero(); cs * kk],
            t2: vec![T::zero(); cs * kk],
            buf: vec![T::zero(); kk],
            ones: vec![T::one(); kk],
            dqoff: Vec::new(),
            dkoff: Vec::new(),
            r1: Vec::new(),
        }
    }

    /// The intra-chunk matrix A with secondary chunking (see the module docs), rounded per
    /// `plan.a`, for chunk rows `q`, `k` (`[lp, K]`). Keeps the decays for [`Self::backward`].
    #[inline(always)]
    fn forward(
        &mut self,
        cum: &Cum<T>,
        q: &[T],
        k: &[T],
        kk: usize,
        opts: &ChunkOptions,
        scale: T,
    ) {
        let lp = q.len() / kk;
        let sc = opts.sub_chunk;
        let plan = &opts.plan;
        let a = &mut self.a[..lp * lp];
        a.fill(T::zero());
        let (mut koff, mut slot) = (0usize, 0usize);
        for i0 in (0..lp).step_by(sc) {
            let i1 = (i0 + sc).min(lp);
            let nb = i1 - i0;
            if i0 > 0 {
                // Off-diagonal blocks I > J in one product, anchored at the first row of query
                // block I: (scale Q_I exp(Gl_I - a)) @ (K_<I exp(a - Gl_<I))^T, both factors <= 1.
                let qd = &mut self.qd[i0 * kk..i1 * kk];
                for r in 0..nb {
                    cum.dec_row(i0 + r, i0 as isize, &mut qd[r * kk..(r + 1) * kk]);
                }
                let qf = &mut self.t1[..nb * kk];
                factor_into(&q[i0 * kk..i1 * kk], qd, scale, qf, plan.offdiag_q);
                let kf = &mut self.kf[koff * kk..(koff + i0) * kk];
                for r in 0..i0 {
                    cum.dec_row(i0, r as isize, &mut kf[r * kk..(r + 1) * kk]);
                }
                for (o, &kv) in kf.iter_mut().zip(&k[..i0 * kk]) {
                    *o = T::one() * kv * *o;
                }
                round_slice(kf, plan.offdiag_k);
                gemm(
                    (nb, kk, i0),
                    T::one(),
                    qf,
                    (kk, 1),
                    kf,
                    (1, kk),
                    T::zero(),
                    &mut a[i0 * lp..],
                    lp,
                );
                koff += i0;
            }
            // Diagonal block, elementwise in log space; j > i never evaluated.
            for i in i0..i1 {
                let qi = &q[i * kk..(i + 1) * kk];
                for j in i0..=i {
                    let kj = &k[j * kk..(j + 1) * kk];
                    let e = &mut self.dexp[slot * kk..(slot + 1) * kk];
                    slot += 1;
                    cum.dec_row(i, j as isize, e);
                    let acc = if plan.diag.is_some() {
                        for ((b, &x), &ev) in self.buf.iter_mut().zip(qi).zip(e.iter()) {
                            *b = round1(x * ev, plan.diag);
                        }
                        seg::dot3(&self.buf, kj, &self.ones)
                    } else {
                        seg::dot3(qi, e, kj)
                    };
                    a[i * lp + j] = scale * acc;
                }
            }
        }
        round_slice(a, plan.a);
    }

    /// Intra-chunk parts of dq and dk from `da` (`[lp, lp]`, masked and rounded), added to `dq`
    /// and `dk` (`[lp, K]`): off-diagonal blocks as matrix products (dq: the forward's anchors
    /// and factors; dk: anchor = last valid row of the key block), diagonal blocks elementwise
    /// with the forward's decays. Must follow [`Self::forward`] on the same chunk. With `keep_off`
    /// the off-diagonal parts are also stored per row in `self.dqoff` / `self.dkoff` (zero rows
    /// where a row has none) for [`Self::dg_local`].
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn backward(
        &mut self,
        cum: &Cum<T>,
        q: &[T],
        k: &[T],
        da: &[T],
        kk: usize,
        opts: &ChunkOptions,
        dq: &mut [T],
        dk: &mut [T],
        keep_off: bool,
    ) {
        let lp = q.len() / kk;
        let sc = opts.sub_chunk;
        let plan = &opts.plan;
        if keep_off {
            let n = opts.chunk * kk;
            sized(&mut self.dqoff, n)[..lp.min(sc) * kk].fill(T::zero());
            let last0 = (lp - 1) / sc * sc;
            sized(&mut self.dkoff, n)[last0 * kk..lp * kk].fill(T::zero());
        }
        let (mut koff, mut slot) = (0usize, 0usize);
        for i0 in (0..lp).step_by(sc) {
            let i1 = (i0 + sc).min(lp);
            let nb = i1 - i0;
            if i0 > 0 {
                // dq, query block I, anchor a = first row of I: (dA_I,<I @ K*exp(a - Gl)) * exp(Gl_I - a)
                let kf = &self.kf[koff * kk..(koff + i0) * kk];
                let t = &mut self.t1[..nb * kk];
                gemm(
                    (nb, i0, kk),
                    T::one(),
                    &da[i0 * lp..],
                    (lp, 1),
                    kf,
                    (kk, 1),
                    T::zero(),
                    t,
                    kk,
                );
                for ((o, &tv), &ev) in dq[i0 * kk..i1 * kk]
                    .iter_mut()
                    .zip(t.iter())
                    .zip(&self.qd[i0 * kk..i1 * kk])
                {
                    *o += tv * ev;
                }
                if keep_off {
                    for ((o, &tv), &ev) in self.dqoff[i0 * kk..i1 * kk]
                        .iter_mut()
                        .zip(t.iter())
                        .zip(&self.qd[i0 * kk..i1 * kk])
                    {
                        *o = tv * ev;
                    }
                }
                koff += i0;
            }
            if i1 < lp {
                // dk, key block J = [i0, i1), anchor b = its last valid row:
                // (dA_>J,J^T @ Q*exp(Gl - b)) * exp(b - Gl_J)
                let b = i1 - 1;
                let nq = lp - i1;
                let qf = &mut self.t1[..nq * kk];
                for r in 0..nq {
                    cum.dec_row(i1 + r, b as isize, &mut qf[r * kk..(r + 1) * kk]);
                }
                for (o, &qv) in qf.iter_mut().zip(&q[i1 * kk..lp * kk]) {
                    *o = T::one() * qv * *o;
                }
                round_slice(qf, plan.offdiag_q);
                let t = &mut self.t2[..nb * kk];
                gemm(
                    (nb, nq, kk),
                    T::one(),
                    &da[i1 * lp + i0..],
                    (1, lp),
                    qf,
                    (kk, 1),
                    T::zero(),
                    t,
                    kk,
                );
                let dec = &mut self.t1[..nb * kk];
                for r in 0..nb {
                    cum.dec_row(b, (i0 + r) as isize, &mut dec[r * kk..(r + 1) * kk]);
                }
                for ((o, &tv), &ev) in dk[i0 * kk..i1 * kk]
                    .iter_mut()
                    .zip(t.iter())
                    .zip(dec.iter())
                {
                    *o += tv * ev;
                }
                if keep_off {
                    for ((o, &tv), &ev) in self.dkoff[i0 * kk..i1 * kk]
                        .iter_mut()
                        .zip(t.iter())
                        .zip(dec.iter())
                    {
                        *o = tv * ev;
                    }
                }
            }
            // Diagonal block, elementwise with the forward's decays; j > i never evaluated.
            for i in i0..i1 {
                let qi = &q[i * kk..(i + 1) * kk];
                for j in i0..=i {
                    let kj = &k[j * kk..(j + 1) * kk];
                    let e = &self.dexp[slot * kk..(slot + 1) * kk];
                    slot += 1;
                    let daij = da[i * lp + j];
                    let dqi = &mut dq[i * kk..(i + 1) * kk];
                    if plan.diag.is_none() {
                        for ((o, &ev), &kv) in dqi.iter_mut().zip(e).zip(kj) {
                            *o += daij * (kv * ev);
                        }
                    } else {
                        for ((o, &ev), &kv) in dqi.iter_mut().zip(e).zip(kj) {
                            *o += daij * round1(kv * ev, plan.diag);
                        }
                    }
                    let dkj = &mut dk[j * kk..(j + 1) * kk];
                    if plan.diag.is_none() {
                        for ((o, &ev), &qv) in dkj.iter_mut().zip(e).zip(qi) {
                            *o += daij * (qv * ev);
                        }
                    } else {
                        for ((o, &ev), &qv) in dkj.iter_mut().zip(e).zip(qi) {
                            *o += daij * round1(qv * ev, plan.diag);
                        }
                    }
                }
            }
        }
    }
}

impl<T: Real> Intra<T> {
    /// The intra-chunk pairs of the local-form gate gradient, added to `dg` (`[lp, K]`): for
    /// every row t, `sum over pairs s < t <= r of W_rs`, `W_rs = q_r k_s dA_rs decay(s -> r)`,
    /// split by sub-chunk (t in block m): (1) full blocks J < m < I through the forward's
    /// anchored factors, (2) s in m, r in a later block: prefix sums of `k * dkoff`, (3) r in m,
    /// s in an earlier block: suffix sums of `q * dqoff`, (4) both in m: elementwise with the
    /// forward's diagonal decays. Only sums of terms that each carry `alpha_t`; no subtraction.
    /// Must follow [`Self::backward`] with `keep_off` on the same chunk.
    #[inline(always)]
    fn dg_local(
        &mut self,
        q: &[T],
        k: &[T],
        da: &[T],
        kk: usize,
        opts: &ChunkOptions,
        dg: &mut [T],
    ) {
        let lp = q.len() / kk;
        let sc = opts.sub_chunk;
        let plan = &opts.plan;
        let nc = lp.div_ceil(sc);
        let r1 = sized(&mut self.r1, nc * kk);
        r1.fill(T::zero());

        // (1) Full blocks: for query block I and key rows s of blocks J <= I - 2 (anchor a =
        // first row of I, the forward's factors kf_s = round(k_s exp(Gl_a - Gl_s)) and
        // qd_r = exp(Gl_r - Gl_a)): Y_I = dA[I, s]^T @ round(q_I * qd_I), then
        // sum_{J < m} X_IJ = sum_{s < m c} kf_s * Y_I[s] goes to every block m in 1..I.
        let mut koff = 0usize;
        for i0 in (0..lp).step_by(sc).skip(1) {
            let i1 = (i0 + sc).min(lp);
            let nb = i1 - i0;
            let ns = i0 - sc; // key rows of blocks J <= I - 2
            if ns > 0 {
                let qq = &mut self.t1[..nb * kk];
                factor_into(
                    &q[i0 * kk..i1 * kk],
                    &self.qd[i0 * kk..i1 * kk],
                    T::one(),
                    qq,
                    plan.offdiag_q,
                );
                let y = &mut self.t2[..ns * kk];
                gemm(
                    (ns, nb, kk),
                    T::one(),
                    &da[i0 * lp..],
                    (1, lp),
                    qq,
                    (kk, 1),
                    T::zero(),
                    y,
                    kk,
                );
                let kf = &self.kf[koff * kk..(koff + ns) * kk];
                let mut d0 = 0;
                while d0 < kk {
                    let w = lane_width(d0, kk);
                    block_prefixes((d0, w), (ns, sc, kk), kf, y, r1);
                    d0 += w;
                }
            }
            koff += i0;
        }

        let mut slot = 0usize;
        for (m, i0) in (0..lp).step_by(sc).enumerate() {
            let i1 = (i0 + sc).min(lp);
            let nb = i1 - i0;
            let rows = (i0, i1, kk);
            let mut d0 = 0;
            while d0 < kk {
                let w = lane_width(d0, kk);
                let blk = (d0, w);
                // (1) the full-block sum of this block, and (3) suffix sums of q_r * dqoff_r,
                // r >= t (added).
                scan_suffix(blk, rows, q, &self.dqoff, Some(&r1[m * kk..]), dg, false);
                // (2) prefix sums of k_s * dkoff_s, s < t.
                scan_prefix(blk, rows, k, &self.dkoff, None, dg);
                // (4) both in block m: for each s, suffix sums over r of W_rs, added to rows r > s.
                diag_pairs(
                    blk,
                    rows,
                    (q, k, da, lp),
                    &self.dexp[slot * kk..],
                    plan.diag,
                    dg,
                );
                d0 += w;
            }
            slot += nb * (nb + 1) / 2;
        }
    }
}

/// Channels processed together by the local-form dg loops (their accumulators stay in
/// registers), then [`LANES_MID`], then one at a time. Only the evaluation order across
/// channels depends on it, never a channel's own sums.
const LANES: usize = 32;
/// The width after [`LANES`] (see [`lane_width`]).
const LANES_MID: usize = 8;

/// The number of channels from `d0` (of `kk`) the next lane block takes.
#[inline(always)]
fn lane_width(d0: usize, kk: usize) -> usize {
    if d0 + LANES <= kk {
        LANES
    } else if d0 + LANES_MID <= kk {
        LANES_MID
    } else {
        1
    }
}

/// `N` channels from `d0` (`blk = (d0, N)`, N from [`lane_width`]) of the rows
/// `r0..r1` (`rows = (r0, r1, K)`): for t from r1 - 1 down to r0, `acc += a_t * b_t` (acc
/// starting at `init`, or 0), then `out_t = acc` (`assign`) or `out_t += acc`.
#[inline(always)]
fn scan_suffix<T: Real>(
    blk: (usize, usize),
    rows: (usize, usize, usize),
    a: &[T],
    b: &[T],
    init: Option<&[T]>,
    out: &mut [T],
    assign: bool,
) {
    #[inline(always)]
    fn go<T: Real, const N: usize>(
        d0: usize,
        (r0, r1, kk): (usize, usize, usize),
        (a, b, init): (&[T], &[T], Option<&[T]>),
        out: &mut [T],
        assign: bool,
    ) {
        let mut acc = [T::zero(); N];
        if let Some(i) = init {
            acc.copy_from_slice(&i[d0..d0 + N]);
        }
        for t in (r0..r1).rev() {
            let at = t * kk + d0;
            let (av, bv) = (&a[at..at + N], &b[at..at + N]);
            let o = &mut out[at..at + N];
            for x in 0..N {
                acc[x] += av[x] * bv[x];
                o[x] = if assign { acc[x] } else { o[x] + acc[x] };
            }
        }
    }
    match blk.1 {
        LANES => go::<T, LANES>(blk.0, rows, (a, b, init), out, assign),
        LANES_MID => go::<T, LANES_MID>(blk.0, rows, (a, b, init), out, assign),
        _ => go::<T, 1>(blk.0, rows, (a, b, init), out, assign),
    }
}

/// `N` channels from `d0` (see [`scan_suffix`]) of the rows `r0..r1`: for t from r0 up,
/// `out_t += acc + base` (without `base`: `out_t += acc`), then `acc += a_t * b_t` (acc
/// starting at 0): `out_t` gets the sum over the rows before t.
#[inline(always)]
fn scan_prefix<T: Real>(
    blk: (usize, usize),
    rows: (usize, usize, usize),
    a: &[T],
    b: &[T],
    base: Option<&[T]>,
    out: &mut [T],
) {
    #[inline(always)]
    fn go<T: Real, const N: usize>(
        d0: usize,
        (r0, r1, kk): (usize, usize, usize),
        (a, b, base): (&[T], &[T], Option<&[T]>),
        out: &mut [T],
    ) {
        let mut acc = [T::zero(); N];
        for t in r0..r1 {
            let at = t * kk + d0;
            let (av, bv) = (&a[at..at + N], &b[at..at + N]);
            let o = &mut out[at..at + N];
            match base {
                Some(bs) => {
                    let bs = &bs[d0..d0 + N];
                    for x in 0..N {
                        o[x] += acc[x] + bs[x];
                        acc[x] += av[x] * bv[x];
                    }
                }
                None => {
                    for x in 0..N {
                        o[x] += acc[x];
                        acc[x] += av[x] * bv[x];
                    }
                }
            }
        }
    }
    match blk.1 {
        LANES => go::<T, LANES>(blk.0, rows, (a, b, base), out),
        LANES_MID => go::<T, LANES_MID>(blk.0, rows, (a, b, base), out),
        _ => go::<T, 1>(blk.0, rows, (a, b, base), out),
    }
}

/// `N` channels from `d0` (see [`scan_suffix`]) of the full-block sums of one query block:
/// `acc += a_s * b_s` over the key rows s = 0..ns (`dims = (ns, c, K)`), and at the end of each
/// key block, `out[m] += acc` for the next block m = (s + 1) / c.
#[inline(always)]
fn block_prefixes<T: Real>(
    blk: (usize, usize),
    dims: (usize, usize, usize),
    a: &[T],
    b: &[T],
    out: &mut [T],
) {
    #[inline(always)]
    fn go<T: Real, const N: usize>(
        d0: usize,
        (ns, sc, kk): (usize, usize, usize),
        a: &[T],
        b: &[T],
        out: &mut [T],
    ) {
        let mut acc = [T::zero(); N];
        for s in 0..ns {
            let at = s * kk + d0;
            let (av, bv) = (&a[at..at + N], &b[at..at + N]);
            for x in 0..N {
                acc[x] += av[x] * bv[x];
            }
            if (s + 1) % sc == 0 {
                let m = (s + 1) / sc;
                let o = &mut out[m * kk + d0..m * kk + d0 + N];
                for x in 0..N {
                    o[x] += acc[x];
                }
            }
        }
    }
    match blk.1 {
        LANES => go::<T, LANES>(blk.0, dims, a, b, out),
        LANES_MID => go::<T, LANES_MID>(blk.0, dims, a, b, out),
        _ => go::<T, 1>(blk.0, dims, a, b, out),
    }
}

/// `N` channels from `d0` (see [`scan_suffix`]) of the pairs inside one diagonal block (rows
/// `i0..i1`): for each key row s, `acc += W_rs = q_r (dA_rs round(k_s decay(s -> r)))` for r
/// from i1 - 1 down to s + 1, `out_r += acc`. `dexp` starts at the block's first decay slot
/// (slot of (r, s): `(r - i0)(r - i0 + 1)/2 + (s - i0)`, the forward's order).
#[inline(always)]
fn diag_pairs<T: Real>(
    blk: (usize, usize),
    rows: (usize, usize, usize),
    qkda: (&[T], &[T], &[T], usize),
    dexp: &[T],
    diag: Option<Dtype>,
    out: &mut [T],
) {
    #[inline(always)]
    fn go<T: Real, const N: usize>(
        d0: usize,
        (i0, i1, kk): (usize, usize, usize),
        (q, k, da, lp): (&[T], &[T], &[T], usize),
        dexp: &[T],
        diag: Option<Dtype>,
        out: &mut [T],
    ) {
        for s in i0..i1 {
            let ks = &k[s * kk + d0..s * kk + d0 + N];
            let mut acc = [T::zero(); N];
            for r in (s + 1..i1).rev() {
                let (rr, ss) = (r - i0, s - i0);
                let e0 = (rr * (rr + 1) / 2 + ss) * kk + d0;
                let e = &dexp[e0..e0 + N];
                let dars = da[r * lp + s];
                let at = r * kk + d0;
                let qr = &q[at..at + N];
                if diag.is_none() {
                    for x in 0..N {
                        acc[x] += qr[x] * (dars * (ks[x] * e[x]));
                    }
                } else {
                    for x in 0..N {
                        acc[x] += qr[x] * (dars * round1(ks[x] * e[x], diag));
                    }
                }
                let o = &mut out[at..at + N];
                for x in 0..N {
                    o[x] += acc[x];
                }
            }
        }
    }
    match blk.1 {
        LANES => go::<T, LANES>(blk.0, rows, qkda, dexp, diag, out),
        LANES_MID => go::<T, LANES_MID>(blk.0, rows, qkda, dexp, diag, out),
        _ => go::<T, 1>(blk.0, rows, qkda, dexp, diag, out),
    }
}

/// Which build of the per-(sequence, head) kernel runs (bitwise the same results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Isa {
    /// The baseline build (tests compare it with `Best`).
    #[cfg_attr(not(test), allow(dead_code))]
    Base,
    /// AVX-512 or AVX2 + FMA where the CPU has them (run-time detection), else the baseline.
    Best,
    /// No arithmetic: only the data movement ([`interface_floor`]).
    Floor,
}

/// Run the chunked form on every (sequence, head) pair in parallel (rayon); each task reads its
/// f64 inputs chunk by chunk into f32/f64 work buffers and writes its results chunk by chunk
/// straight into the (disjoint) rows of the f64 result tensors.
fn run<T: Real>(p: &Problem, opts: &ChunkOptions, form: Option<DgForm>, isa: Isa) -> Solution {
    let dims = p.dims();
    let (k, v) = (dims.k, dims.v);
    let kg = match p.gate_kind() {
        GateKind::PerChannel => k,
        GateKind::Scalar => 1,
    };
    let bwd = form.is_some() && p.do_().is_some();
    let local = form == Some(DgForm::Local);
    let mut o = zeros4((dims.b, dims.t, dims.h, v));
    let mut ht = zeros4((dims.n, dims.h, k, v));
    let mut grads = bwd.then(|| Gradients {
        dq: zeros4((dims.b, dims.t, dims.h, k)),
        dk: zeros4((dims.b, dims.t, dims.h, k)),
        dv: zeros4((dims.b, dims.t, dims.h, v)),
        dg: zeros4((dims.b, dims.t, dims.h, kg)),
        dh0: zeros4((dims.n, dims.h, k, v)),
    });
    let outs = Outs {
        o: Shared4::new(&mut o),
        ht: Shared4::new(&mut ht),
        grads: grads.as_mut().map(|g| {
            [
                Shared4::new(&mut g.dq),
                Shared4::new(&mut g.dk),
                Shared4::new(&mut g.dv),
                Shared4::new(&mut g.dg),
                Shared4::new(&mut g.dh0),
            ]
        }),
    };
    let scale = T::of(p.scale());
    let tasks: Vec<(SeqSpan, usize)> = p
        .sequences()
        .into_iter()
        .flat_map(|s| (0..dims.h).map(move |h| (s, h)))
        .collect();
    tasks.par_iter().for_each(|&(span, h)| {
        let rows = span.start..span.start + span.len;
        let b = span.batch;
        let src = Src {
            q: p.q().slice(s![b, rows.clone(), h, ..]),
            k: p.k().slice(s![b, rows.clone(), h, ..]),
            v: p.v().slice(s![b, rows.clone(), h, ..]),
            g: p.g().slice(s![b, rows.clone(), h, ..]),
            do_: p
                .do_()
                .filter(|_| bwd)
                .map(|a| a.slice(s![b, rows.clone(), h, ..])),
            h0: p.h0().map(|a| a.slice(s![span.state, h, .., ..])),
            dht: p.dht().map(|a| a.slice(s![span.state, h, .., ..])),
        };
        let sink = Sink {
            outs: &outs,
            b,
            start: span.start,
            h,
            state: span.state,
        };
        let mut w = take_work::<T>();
        match isa {
            Isa::Base => item(&src, &sink, &mut w, opts, scale, local),
            Isa::Best => item_best(&src, &sink, &mut w, opts, scale, local),
            Isa::Floor => item_floor(&src, &sink, &mut w, opts),
        }
        give_work(w);
    });
    // `outs` holds raw pointers only (no borrow): the tasks are done, the tensors are handed out.
    Solution { o, ht, grads }
}

/// The f64 inputs of one (sequence, head): views into the problem's tensors.
struct Src<'a> {
    /// `[L, K]`
    q: ArrayView2<'a, f64>,
    /// `[L, K]`
    k: ArrayView2<'a, f64>,
    /// `[L, V]`
    v: ArrayView2<'a, f64>,
    /// `[L, Kg]`
    g: ArrayView2<'a, f64>,
    /// `[L, V]`, present when the backward pass runs.
    do_: Option<ArrayView2<'a, f64>>,
    /// `[K, V]`
    h0: Option<ArrayView2<'a, f64>>,
    /// `[K, V]`
    dht: Option<ArrayView2<'a, f64>>,
}

/// The result tensors, written by all tasks (each its own rows and states).
struct Outs {
    o: Shared4,
    ht: Shared4,
    /// dq, dk, dv, dg, dh0
    grads: Option<[Shared4; 5]>,
}

/// Where the results of one (sequence, head) go.
struct Sink<'a> {
    outs: &'a Outs,
    b: usize,
    start: usize,
    h: usize,
    state: usize,
}

impl Sink<'_> {
    /// Write rows `r0..` (sequence-relative; `[len, C]` in `x`) of result tensor `t`.
    #[inline]
    fn rows<T: Real>(&self, t: &Shared4, r0: usize, x: &[T]) {
        // SAFETY: each task owns its (sequence, head): sequences are disjoint row ranges
        // (validated by `Problem`) with distinct state indices, so no two tasks write the same
        // element; the tensors outlive the parallel loop (`run`).
        unsafe { t.put_rows(self.b, self.start + r0, self.h, x) }
    }

    /// Write a `[K, V]` state (`ht` or `dh0`).
    #[inline]
    fn state<T: Real>(&self, t: &Shared4, x: &Array2<T>) {
        // SAFETY: as in `rows`: the state index of this task's sequence is its own.
        unsafe { t.state(self.state, self.h, x) }
    }
}

/// Rows `r0..r0 + len` of `src` (`len = dst.len() / C`) converted to the compute type into
/// `dst` (row-major), rounded to `round`.
#[inline(always)]
fn load<T: Real>(src: &ArrayView2<f64>, r0: usize, dst: &mut [T], round: Option<Dtype>) {
    let c = src.ncols();
    if c == 0 {
        return;
    }
    for (r, d) in dst.chunks_exact_mut(c).enumerate() {
        let row = src.row(r0 + r);
        match row.as_slice() {
            Some(xs) => {
                for (d, &x) in d.iter_mut().zip(xs) {
                    *d = T::of(x);
                }
            }
            None => {
                for (d, &x) in d.iter_mut().zip(row.iter()) {
                    *d = T::of(x);
                }
            }
        }
    }
    round_slice(dst, round);
}

/// Per-thread work buffers of [`item`], reused across (sequence, head) pairs and calls (no
/// allocation or page faults per call). Contents are unspecified between uses: every element
/// is written before it is read.
struct Work<T> {
    /// Whole-sequence `[L, K]` / `[L, V]` / `[L, Kg]` inputs in the compute type.
    q: Vec<T>,
    k: Vec<T>,
    v: Vec<T>,
    g: Vec<T>,
    /// Per-chunk `[C, V]` do and `[C, K]` decays and factors.
    do_: Vec<T>,
    e0: Vec<T>,
    el: Vec<T>,
    qe: Vec<T>,
    ke: Vec<T>,
    /// Chunk states `H_p`, `[NT, K, V]` (backward).
    states: Vec<T>,
    /// The state gradient of the current chunk, `[K, V]`.
    dstates: Vec<T>,
    /// `[K, V]` scratch.
    u: Vec<T>,
    hs: Vec<T>,
    hbuf: Vec<T>,
    dhbuf: Vec<T>,
    /// Per-chunk results and scratch.
    oc: Vec<T>,
    dq: Vec<T>,
    dk: Vec<T>,
    dv: Vec<T>,
    dg: Vec<T>,
    dgr: Vec<T>,
    dki: Vec<T>,
    da: Vec<T>,
    acc: Vec<T>,
    ksum: Vec<T>,
    cum: Cum<T>,
    intra: Option<((usize, usize, usize), Intra<T>)>,
}

impl<T: Real> Work<T> {
    fn new() -> Self {
        Work {
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            g: Vec::new(),
            do_: Vec::new(),
            e0: Vec::new(),
            el: Vec::new(),
            qe: Vec::new(),
            ke: Vec::new(),
            states: Vec::new(),
            dstates: Vec::new(),
            u: Vec::new(),
            hs: Vec::new(),
            hbuf: Vec::new(),
            dhbuf: Vec::new(),
            oc: Vec::new(),
            dq: Vec::new(),
            dk: Vec::new(),
            dv: Vec::new(),
            dg: Vec::new(),
            dgr: Vec::new(),
            dki: Vec::new(),
            da: Vec::new(),
            acc: Vec::new(),
            ksum: Vec::new(),
            cum: Cum::empty(),
            intra: None,
        }
    }

    /// Bytes held.
    fn bytes(&self) -> usize {
        let v = [
            &self.q,
            &self.k,
            &self.v,
            &self.g,
            &self.do_,
            &self.e0,
            &self.el,
            &self.qe,
            &self.ke,
            &self.states,
            &self.dstates,
        ];
        v.iter().map(|x| x.capacity()).sum::<usize>() * std::mem::size_of::<T>()
    }
}

/// `v` resized to `n` elements (contents unspecified) as a slice.
#[inline]
fn sized<T: Real>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::zero());
    }
    &mut v[..n]
}

thread_local! {
    /// This thread's [`Work`] (one per compute type), kept between calls up to [`WORK_KEEP`] bytes.
    static WORK: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest workspace kept between calls (bytes).
const WORK_KEEP: usize = 128 << 20;

fn take_work<T: Real>() -> Box<Work<T>> {
    WORK.with(|w| {
        let mut w = w.borrow_mut();
        let i = w.iter().position(|b| b.is::<Work<T>>());
        i.and_then(|i| w.swap_remove(i).downcast::<Work<T>>().ok())
    })
    .unwrap_or_else(|| Box::new(Work::new()))
}

fn give_work<T: Real>(w: Box<Work<T>>) {
    if w.bytes() <= WORK_KEEP {
        WORK.with(|p| p.borrow_mut().push(w));
    }
}

/// [`item`] compiled with AVX2 + FMA (or AVX-512) when available (bitwise the same results).
fn item_best<T: Real>(
    src: &Src,
    sink: &Sink,
    w: &mut Work<T>,
    opts: &ChunkOptions,
    scale: T,
    local: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if seg::has_avx512() {
            // SAFETY: the CPU features were detected at run time.
            return unsafe { item_avx512(src, sink, w, opts, scale, local) };
        }
        if seg::has_avx2() {
            // SAFETY: the CPU features were detected at run time.
            return unsafe { item_avx2(src, sink, w, opts, scale, local) };
        }
    }
    item(src, sink, w, opts, scale, local)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn item_avx2<T: Real>(
    src: &Src,
    sink: &Sink,
    w: &mut Work<T>,
    opts: &ChunkOptions,
    scale: T,
    local: bool,
) {
    item(src, sink, w, opts, scale, local)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn item_avx512<T: Real>(
    src: &Src,
    sink: &Sink,
    w: &mut Work<T>,
    opts: &ChunkOptions,
    scale: T,
    local: bool,
) {
    item(src, sink, w, opts, scale, local)
}

/// `acc[d] = rowsum(h * dh)[d]` for `[K, V]` row-major `h`, `dh`: each channel summed in order
/// over e, eight channels at a time as independent chains (same sums, no serial latency chain).
#[inline(always)]
fn rowsum_prod<T: Real>(h: &[T], dh: &[T], acc: &mut [T], kk: usize, vv: usize) {
    for d0 in (0..kk).step_by(8) {
        let nd = 8.min(kk - d0);
        let mut hsum = [T::zero(); 8];
        for e in 0..vv {
            for (x, hs_) in hsum.iter_mut().enumerate().take(nd) {
                let at = (d0 + x) * vv + e;
                *hs_ += h[at] * dh[at];
            }
        }
        acc[d0..d0 + nd].copy_from_slice(&hsum[..nd]);
    }
}

/// Forward outputs of one chunk: `o = scale * (qe @ round(H_p)) + A @ v` into `oc` (`[lp, V]`),
/// A from [`Intra::forward`] (its decays kept for the backward). `q`, `k`, `qe` are the chunk's
/// `[lp, K]` rows, `vr` its `[lp, V]` rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn chunk_out<T: Real>(
    intra: &mut Intra<T>,
    cum: &Cum<T>,
    (q, k, vr, qe): (&[T], &[T], &[T], &[T]),
    (kk, vv): (usize, usize),
    opts: &ChunkOptions,
    scale: T,
    hstate: &[T],
    hs: &mut [T],
    oc: &mut [T],
) {
    let plan = &opts.plan;
    let lp = q.len() / kk;
    intra.forward(cum, q, k, kk, opts, scale);
    let hs = round_view(hstate, plan.state, hs);
    gemm(
        (lp, kk, vv),
        scale,
        qe,
        (kk, 1),
        hs,
        (vv, 1),
        T::zero(),
        oc,
        vv,
    );
    gemm(
        (lp, lp, vv),
        T::one(),
        &intra.a[..lp * lp],
        (lp, 1),
        vr,
        (vv, 1),
        T::one(),
        oc,
        vv,
    );
    round_slice(oc, plan.o);
}

/// One step of a state recurrence across a chunk: `h[d, :] = glast[d] * h[d, :] + mul * u[d, :]`
/// for `[K, V]` row-major `h`, `u` (`mul = 1` is exact, so it is the plain `glast * h + u`).
#[inline(always)]
fn decay_step<T: Real>(h: &mut [T], glast: &[T], u: &[T], mul: T, vv: usize) {
    for (d, &gd) in glast.iter().enumerate() {
        for (x, &uv) in h[d * vv..(d + 1) * vv]
            .iter_mut()
            .zip(&u[d * vv..(d + 1) * vv])
        {
            *x = gd * *x + mul * uv;
        }
    }
}

/// The chunk's decays `exp(Gl)` into `e0`, `exp(Gl_last - Gl)` into `el` and the factors
/// `q*exp(Gl)` into `qe`, `k*exp(Gl_last - Gl)` into `ke` (first `lp * K` elements each, `lp` =
/// the chunk's rows in `q`), from the chunk-local cumsum `cum`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn chunk_factors<T: Real>(
    cum: &Cum<T>,
    (q, k): (&[T], &[T]),
    kk: usize,
    plan: &RoundingPlan,
    e0: &mut [T],
    el: &mut [T],
    qe: &mut [T],
    ke: &mut [T],
) {
    let lp = q.len() / kk;
    let last = lp - 1;
    for i in 0..lp {
        cum.dec_row(i, -1, &mut e0[i * kk..(i + 1) * kk]);
        cum.dec_row(last, i as isize, &mut el[i * kk..(i + 1) * kk]);
    }
    factor_into(
        q,
        &e0[..lp * kk],
        T::one(),
        &mut qe[..lp * kk],
        plan.q_decay,
    );
    factor_into(
        k,
        &el[..lp * kk],
        T::one(),
        &mut ke[..lp * kk],
        plan.k_decay,
    );
}

/// One (sequence, head): forward, and the backward when `src.do_` is present; results go
/// straight to `sink`, chunk by chunk.
///
/// Pass 1 (chunk order): read the chunk's inputs (kept for the whole sequence in the compute
/// type), the chunk-local reset-aware cumsum, the decays `exp(Gl)` and `exp(Gl_last - Gl)`, the
/// factors `qe`, `ke`, the state recurrence (one `[K, lp] @ [lp, V]` GEMM per chunk; the
/// backward keeps the states `H_p`); forward only: the chunk's outputs. Backward: pass 2
/// (reverse chunk order) recomputes the chunk's decays and factors, reads `do`, steps the state
/// gradient `dH_p`, then computes the chunk's outputs and all its gradients, the intra-chunk
/// decays computed once and shared by forward and backward.
#[inline(always)]
fn item<T: Real>(
    src: &Src,
    sink: &Sink,
    w: &mut Work<T>,
    opts: &ChunkOptions,
    scale: T,
    local: bool,
) {
    let plan = &opts.plan;
    let (l, kk) = src.q.dim();
    let vv = src.v.ncols();
    let kg = src.g.ncols();
    let kv = kk * vv;
    let cs = opts.chunk;
    let nt = l.div_ceil(cs);
    let bwd = src.do_.is_some();
    let nst = if bwd { nt * kv } else { 0 };

    let Work {
        q,
        k,
        v,
        g,
        do_,
        e0,
        el,
        qe,
        ke,
        states,
        dstates,
        u,
        hs,
        hbuf,
        dhbuf,
        oc,
        dq,
        dk,
        dv,
        dg,
        dgr,
        dki,
        da,
        acc,
        ksum,
        cum,
        intra,
    } = w;
    let (q, k, vr, g) = (
        sized(q, l * kk),
        sized(k, l * kk),
        sized(v, l * vv),
        sized(g, l * kg),
    );
    // Chunk-local decays and factors: recomputed per chunk in each sweep (cheaper than keeping
    // whole-sequence copies, which do not stay in cache).
    let (e0, el, qe, ke) = (
        sized(e0, cs * kk),
        sized(el, cs * kk),
        sized(qe, cs * kk),
        sized(ke, cs * kk),
    );
    let states = sized(states, nst);
    let (u, hs) = (sized(u, kv), sized(hs, kv));
    let oc = sized(oc, cs * vv);
    let key = (cs, opts.sub_chunk, kk);
    if intra.as_ref().map(|x| x.0) != Some(key) {
        *intra = Some((key, Intra::<T>::new(cs, opts.sub_chunk, kk)));
    }
    let intra = &mut intra.as_mut().expect("set above").1;

    let mut h = vec![T::zero(); kv];
    if let Some(h0) = &src.h0 {
        load(h0, 0, &mut h, None);
    }

    for (p, p0) in (0..l).step_by(cs).enumerate() {
        let lp = cs.min(l - p0);
        let last = lp - 1;
        let (rk, rv) = (p0 * kk..(p0 + lp) * kk, p0 * vv..(p0 + lp) * vv);
        load(&src.q, p0, &mut q[rk.clone()], None);
        load(&src.k, p0, &mut k[rk.clone()], None);
        load(&src.v, p0, &mut vr[rv.clone()], plan.v);
        let gc = &mut g[p0 * kg..(p0 + lp) * kg];
        load(&src.g, p0, gc, None);
        cum.refill(gc, lp, kg);
        chunk_factors(
            cum,
            (&q[rk.clone()], &k[rk.clone()]),
            kk,
            plan,
            e0,
            el,
            qe,
            ke,
        );
        if bwd {
            states[p * kv..(p + 1) * kv].copy_from_slice(&h);
        } else {
            let oc = &mut oc[..lp * vv];
            chunk_out(
                intra,
                cum,
                (
                    &q[rk.clone()],
                    &k[rk.clone()],
                    &vr[rv.clone()],
                    &qe[..lp * kk],
                ),
                (kk, vv),
                opts,
                scale,
                &h,
                hs,
                oc,
            );
            sink.rows(&sink.outs.o, p0, oc);
        }
        // State update: H <- Diag(exp(Gl_last)) H + ke^T @ v (compute-type accumulator).
        gemm(
            (kk, lp, vv),
            T::one(),
            &ke[..lp * kk],
            (1, kk),
            &vr[rv],
            (vv, 1),
            T::zero(),
            u,
            vv,
        );
        decay_step(&mut h, &e0[last * kk..lp * kk], u, T::one(), vv);
    }
    sink.state(
        &sink.outs.ht,
        &Array2::from_shape_vec((kk, vv), h).expect("state shape"),
    );
    let (Some(src_do), Some(gout)) = (src.do_.as_ref(), sink.outs.grads.as_ref()) else {
        return;
    };

    // Pass 2 (reverse chunk order): per chunk, read do, step the state gradient
    // (dhp = dL/d(state after chunk p) before the step), then the chunk's outputs and all its
    // gradients, the intra-chunk decays computed once and shared by forward and backward.
    let dor = sized(do_, cs * vv);
    let mut dh = vec![T::zero(); kv];
    if let Some(dht) = &src.dht {
        load(dht, 0, &mut dh, None);
    }
    let dhcur = sized(dstates, kv);
    let wbuf = u;
    let (hbuf, dhbuf) = (sized(hbuf, kv), sized(dhbuf, kv));
    let (dqs, dks, dvs, dgs) = (
        sized(dq, cs * kk),
        sized(dk, cs * kk),
        sized(dv, cs * vv),
        sized(dg, cs * kk),
    );
    let dgr = sized(dgr, cs);
    let (da, dki) = (sized(da, cs * cs), sized(dki, cs * kk));
    let (acc, ksum) = (sized(acc, kk), sized(ksum, kk));
    for (p, p0) in (0..l).step_by(cs).enumerate().rev() {
        let lp = cs.min(l - p0);
        let (rk, rv) = (p0 * kk..(p0 + lp) * kk, p0 * vv..(p0 + lp) * vv);
        cum.refill(&g[p0 * kg..(p0 + lp) * kg], lp, kg);
        let (qc, kc, vc) = (&q[rk.clone()], &k[rk.clone()], &vr[rv.clone()]);
        chunk_factors(cum, (qc, kc), kk, plan, e0, el, qe, ke);
        let (e0c, elc, qec, kec) = (
            &e0[..lp * kk],
            &el[..lp * kk],
            &qe[..lp * kk],
            &ke[..lp * kk],
        );
        let doc = &mut dor[..lp * vv];
        load(src_do, p0, doc, plan.do_);
        let doc = &*doc;
        let glast = &e0c[(lp - 1) * kk..lp * kk];

        // State gradient step: dH <- Diag(exp(Gl_last)) dH + scale * qe^T @ do.
        gemm(
            (kk, lp, vv),
            T::one(),
            qec,
            (1, kk),
            doc,
            (vv, 1),
            T::zero(),
            wbuf,
            vv,
        );
        dhcur.copy_from_slice(&dh);
        decay_step(&mut dh, glast, wbuf, scale, vv);

        let hstate = &states[p * kv..(p + 1) * kv];
        let oc = &mut oc[..lp * vv];
        chunk_out(
            intra,
            cum,
            (qc, kc, vc, qec),
            (kk, vv),
            opts,
            scale,
            hstate,
            hs,
            oc,
        );
        sink.rows(&sink.outs.o, p0, oc);
        let hb = round_view(hstate, plan.bwd_state, hbuf);
        let dhp = round_view(dhcur, plan.dstate, dhbuf);

        // dA = scale * do @ v^T on j <= i (upper triangle selected to exact 0).
        let da = &mut da[..lp * lp];
        gemm(
            (lp, vv, lp),
            scale,
            doc,
            (vv, 1),
            vc,
            (1, vv),
            T::zero(),
            da,
            lp,
        );
        for i in 0..lp {
            da[i * lp + i + 1..(i + 1) * lp].fill(T::zero());
        }
        round_slice(da, plan.da);

        // dv = ke @ dH_p + A^T @ do
        let dvc = &mut dvs[..lp * vv];
        gemm(
            (lp, kk, vv),
            T::one(),
            kec,
            (kk, 1),
            dhp,
            (vv, 1),
            T::zero(),
            dvc,
            vv,
        );
        gemm(
            (lp, lp, vv),
            T::one(),
            &intra.a[..lp * lp],
            (1, lp),
            doc,
            (vv, 1),
            T::one(),
            dvc,
            vv,
        );

        // Inter-chunk parts: dq = scale * exp(Gl) * (do @ H_p^T), dk = exp(Gl_last - Gl) * (v @ dH_p^T).
        let dqc = &mut dqs[..lp * kk];
        gemm(
            (lp, vv, kk),
            T::one(),
            doc,
            (vv, 1),
            hb,
            (1, vv),
            T::zero(),
            dqc,
            kk,
        );
        for (x, &ev) in dqc.iter_mut().zip(e0c) {
            *x = *x * ev * scale;
        }
        let dki = &mut dki[..lp * kk];
        gemm(
            (lp, vv, kk),
            T::one(),
            vc,
            (vv, 1),
            dhp,
            (1, vv),
            T::zero(),
            dki,
            kk,
        );
        for (x, &ev) in dki.iter_mut().zip(elc) {
            *x *= ev;
        }
        let dkc = &mut dks[..lp * kk];
        dkc.copy_from_slice(dki);

        let dgc = &mut dgs[..lp * kk];
        if local {
            // Local-form dg, the parts outside the chunk (module docs), before the intra parts
            // are added to dq: dg_t = gamma rowsum(H_p * dH_p) + sum_{s<t} k_s dk_inter_s
            // + sum_{r>=t} q_r dq_inter_r (+ the intra pairs, below).
            rowsum_prod(hb, dhp, acc, kk, vv);
            for (a, &gl) in acc.iter_mut().zip(glast) {
                *a *= gl;
            }
            let mut d0 = 0;
            while d0 < kk {
                let w = lane_width(d0, kk);
                let blk = (d0, w);
                scan_suffix(blk, (0, lp, kk), qc, dqc, None, dgc, true);
                scan_prefix(blk, (0, lp, kk), kc, dki, Some(acc), dgc);
                d0 += w;
            }
        }

        // Intra parts: off-diagonal blocks as matrix products, diagonal blocks elementwise.
        intra.backward(cum, qc, kc, da, kk, opts, dqc, dkc, local);

        if local {
            intra.dg_local(qc, kc, da, kk, opts, dgc);
        } else {
            // dg: within-chunk reverse sum plus the state term.
            rowsum_prod(hb, dhp, acc, kk, vv);
            ksum.fill(T::zero());
            for j in 0..lp {
                for ((s, &kv), &dv) in ksum
                    .iter_mut()
                    .zip(&kc[j * kk..(j + 1) * kk])
                    .zip(&dki[j * kk..(j + 1) * kk])
                {
                    *s += kv * dv;
                }
            }
            for d in 0..kk {
                acc[d] = glast[d] * acc[d] + ksum[d];
            }
            for i in (0..lp).rev() {
                let r = i * kk..(i + 1) * kk;
                for d in 0..kk {
                    acc[d] +=
                        qc[r.start + d] * dqc[r.start + d] - kc[r.start + d] * dkc[r.start + d];
                }
                dgc[r].copy_from_slice(acc);
            }
        }

        // Results of the chunk (rounded per `plan.grads`); scalar gates: dg summed over channels.
        round_slice(dqc, plan.grads);
        round_slice(dkc, plan.grads);
        round_slice(dvc, plan.grads);
        sink.rows(&gout[0], p0, dqc);
        sink.rows(&gout[1], p0, dkc);
        sink.rows(&gout[2], p0, dvc);
        if kg == 1 && kk != 1 {
            let dgr = &mut dgr[..lp];
            for (o, row) in dgr.iter_mut().zip(dgc.chunks_exact(kk)) {
                let mut s = T::zero();
                for &x in row {
                    s += x;
                }
                *o = s;
            }
            round_slice(dgr, plan.grads);
            sink.rows(&gout[3], p0, dgr);
        } else {
            round_slice(dgc, plan.grads);
            sink.rows(&gout[3], p0, dgc);
        }
    }
    sink.state(
        &gout[4],
        &Array2::from_shape_vec((kk, vv), dh).expect("state shape"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gates;
    use ndarray::Array4;

    fn test_problem(t: usize, k: usize, v: usize, scalar: bool) -> Problem {
        let f = |i: usize| ((i * 7919) % 1000) as f64 / 500.0 - 1.0;
        let q = Array4::from_shape_fn((1, t, 2, k), |(_, t, h, d)| f(t * 31 + d + h));
        let kk = Array4::from_shape_fn((1, t, 2, k), |(_, t, _, d)| f(t * 17 + d + 3));
        let vv = Array4::from_shape_fn((1, t, 2, v), |(_, t, _, e)| f(t * 13 + e + 9));
        let gates = if scalar {
            let mut g = ndarray::Array3::from_shape_fn((1, t, 2), |(_, t, _)| -f(t).abs() * 3.0);
            g[[0, 20.min(t - 1), 0]] = f64::NEG_INFINITY;
            Gates::Scalar(g)
        } else {
            let mut g = Array4::from_shape_fn((1, t, 2, k), |(_, t, _, d)| -f(t + d).abs() * 3.0);
            g[[0, 20.min(t - 1), 0, 2.min(k - 1)]] = f64::NEG_INFINITY;
            Gates::PerChannel(g)
        };
        Problem::builder(q, kk, vv, gates)
            .do_(Array4::from_shape_fn((1, t, 2, v), |(_, t, _, e)| {
                f(t * 3 + e)
            }))
            .build()
            .unwrap()
    }

    /// The AVX2/AVX-512 build and the baseline build give bitwise identical results.
    #[test]
    fn avx2_build_is_bitwise_identical() {
        let p = test_problem(70, 13, 6, false);
        let opts = ChunkOptions::new(32, 8).unwrap();
        let scale = p.scale() as f32;
        for form in [DgForm::ReverseCumsum, DgForm::Local] {
            for p in [&p, &test_problem(70, 13, 6, true)] {
                let base = run::<f32>(p, &opts, Some(form), Isa::Base);
                let best = run::<f32>(p, &opts, Some(form), Isa::Best);
                assert_eq!(base, best, "{form:?}");
            }
        }
        let pb = seg::run::<f32>(&p, true, |it| {
            crate::parallel::item_for_tests(it, scale, true, false)
        });
        let pa = seg::run::<f32>(&p, true, |it| {
            crate::parallel::item_for_tests(it, scale, true, true)
        });
        assert_eq!(pb, pa);
    }
}
