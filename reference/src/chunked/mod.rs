//! The two-level chunked form of GLA (spec sections 3 and 4): fla's `chunk_gla` algorithm, block
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
//! Backward (spec section 4, chunk-level, not the recurrence):
//! ```text
//!   dH_{NT-1} = dhT,  dH_{p-1} = Diag(exp(Gl_last^p)) dH_p + scale (Q_p*exp(Gl))^T @ do_p,  dh0 = the last one
//!   dA_ij = scale do_i . v_j (j <= i)
//!   dv = A^T @ do + (K * exp(Gl_last - Gl)) @ dH_p
//!   dq = intra(dA, K; anchor first row of the query block) + scale exp(Gl) * (do @ H_p^T)
//!   dk = intra(dA, Q; anchor last valid row of the key block) + exp(Gl_last - Gl) * (V @ dH_p^T)
//!   dg_i = sum_{s=i..L_p-1} (q_s*dq_s - k_s*dk_s) + exp(Gl_last)*rowsum(H_p*dH_p) + sum_j k_j*dk_inter_j
//! ```
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
//! Implementation: matrix products through matrixmultiply (ndarray's `general_mat_mul` on
//! slices, transposes as strides, no temporaries; its runtime-detected AVX-512 kernels are
//! enabled), rayon over (sequence, head) (matrixmultiply itself single-threaded), the
//! per-(sequence, head) kernel compiled three times (baseline, AVX2+FMA, AVX-512; chosen at run
//! time; bitwise identical results). Per (sequence, head): pass 1 computes the chunk-local
//! decays `exp(Gl)`, `exp(Gl_last - Gl)`, the factors `q*exp(Gl)`, `k*exp(Gl_last - Gl)` and the
//! state recurrence (one `[K, C] @ [C, V]` product per chunk); the backward keeps the states
//! `H_p` (`[NT, K, V]`), runs the state-gradient sweep, then per chunk computes the outputs and
//! all gradients, the intra-chunk decays (off-diagonal anchored factors, diagonal elementwise
//! decays) evaluated once and shared by the forward and backward formulas. Buffers come from
//! per-thread workspaces reused across items and calls (at most 64 MiB kept per thread).
//! Measured on the 2-core shared machine (B=1, H=8, T=4096, K=V=128, f32; `cargo bench -p
//! gla-reference --bench chunked`, `GLA_BENCH_QUICK=5` for a quick run): forward+backward
//! ~0.32-0.36 CPU-s (the original implementation: ~0.69-0.73), 2.3-2.6x less than the recurrent
//! reference in the same run (~0.80-0.82 CPU-s), ~25-28 GFLOP per CPU-second against the f32
//! GEMM's ~130; a large share of what is left is the memory-bound part every form pays
//! (widening the inputs, writing the f64 result tensors and faulting in their pages).
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

pub(crate) mod seg;

use crate::dtype::Dtype;
use crate::error::{GlaError, Result};
use crate::problem::Problem;
use crate::real::Real;
pub use crate::rounding::RoundingPlan;
use crate::rounding::{round1, round_in_place};
use crate::solution::Solution;
use ndarray::linalg::general_mat_mul;
use ndarray::{s, Array2, ArrayView2, ArrayViewMut2, ShapeBuilder};
use seg::{Cum, Item, ItemGrads, ItemOut};

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
    let scale = T::of(p.scale());
    Ok(seg::run::<T>(p, false, |it| {
        item_best(it, opts, scale, false)
    }))
}

/// Forward and backward pass of the chunked form (spec section 4 chunk formulas) in compute
/// type `T` with the rounding plan of `opts`. Returns `o`, `ht` and all gradients (dg in the
/// chunk reverse-sum form, i.e. judged with the reverse-cumsum magnitude `M_dg`).
///
/// Errors: [`GlaError::Options`] for invalid chunk sizes or a missing `do`.
pub fn backward<T: Real>(p: &Problem, opts: &ChunkOptions) -> Result<Solution> {
    opts.validate()?;
    p.require_backward()?;
    let scale = T::of(p.scale());
    Ok(seg::run::<T>(p, true, |it| {
        item_best(it, opts, scale, true)
    }))
}

/// `c = alpha * A @ B + beta * c` through matrixmultiply (ndarray's `general_mat_mul`) on
/// slices: `a` is `[m, k]` with strides `sa`, `b` is `[k, n]` with strides `sb` (row, column;
/// a transposed operand is just swapped strides, no copy), `c` is `[m, n]` row-major with row
/// stride `ldc`.
#[allow(clippy::too_many_arguments)]
#[inline]
fn gemm<T: Real>(
    (m, k, n): (usize, usize, usize),
    alpha: T,
    a: &[T],
    sa: (usize, usize),
    b: &[T],
    sb: (usize, usize),
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let av = ArrayView2::from_shape((m, k).strides(sa), a).expect("gemm: A fits its slice");
    let bv = ArrayView2::from_shape((k, n).strides(sb), b).expect("gemm: B fits its slice");
    let mut cv =
        ArrayViewMut2::from_shape((m, n).strides((ldc, 1)), c).expect("gemm: C fits its slice");
    general_mat_mul(alpha, &av, &bv, beta, &mut cv);
}

/// Round a slice in place to `dtype` (the rounding points of the plan; no-op for `None`, for
/// f64 and for f32 in f32 compute), like `rounding::round_in_place`.
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

/// A slice copy of `x` rounded to `dtype`, or `x` itself when nothing is rounded.
fn rounded<'a, T: Real>(x: &'a [T], dtype: Option<Dtype>, own: &'a mut Vec<T>) -> &'a [T] {
    match dtype {
        Some(dt) if !(dt == Dtype::F64 || (dt == Dtype::F32 && T::DTYPE == Dtype::F32)) => {
            own.extend_from_slice(x);
            round_slice(own, dtype);
            own
        }
        _ => x,
    }
}

fn std_slice<T>(a: &Array2<T>) -> &[T] {
    a.as_slice().expect("standard layout")
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
    /// with the forward's decays. Must follow [`Self::forward`] on the same chunk.
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
    ) {
        let lp = q.len() / kk;
        let sc = opts.sub_chunk;
        let plan = &opts.plan;
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

/// [`item`] compiled with AVX2 + FMA (or AVX-512) when available (bitwise the same results).
fn item_best<T: Real>(it: &Item<T>, opts: &ChunkOptions, scale: T, bwd: bool) -> ItemOut<T> {
    #[cfg(target_arch = "x86_64")]
    {
        if seg::has_avx512() {
            // SAFETY: the CPU features were detected at run time.
            return unsafe { item_avx512(it, opts, scale, bwd) };
        }
        if seg::has_avx2() {
            // SAFETY: the CPU features were detected at run time.
            return unsafe { item_avx2(it, opts, scale, bwd) };
        }
    }
    item(it, opts, scale, bwd)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn item_avx2<T: Real>(it: &Item<T>, opts: &ChunkOptions, scale: T, bwd: bool) -> ItemOut<T> {
    item(it, opts, scale, bwd)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
unsafe fn item_avx512<T: Real>(
    it: &Item<T>,
    opts: &ChunkOptions,
    scale: T,
    bwd: bool,
) -> ItemOut<T> {
    item(it, opts, scale, bwd)
}

/// Forward outputs of one chunk (rows `p0..p0+lp`): `o = scale * (qe @ round(H_p)) + A @ v`,
/// A from [`Intra::forward`] (its decays kept for the backward).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn chunk_out<T: Real>(
    intra: &mut Intra<T>,
    cum: &Cum<T>,
    (q, k, vr, qe): (&[T], &[T], &[T], &[T]),
    (kk, vv): (usize, usize),
    (p0, lp): (usize, usize),
    opts: &ChunkOptions,
    scale: T,
    hstate: &[T],
    hs: &mut [T],
    o: &mut [T],
) {
    let plan = &opts.plan;
    let (rk, rv) = (p0 * kk..(p0 + lp) * kk, p0 * vv..(p0 + lp) * vv);
    intra.forward(cum, &q[rk.clone()], &k[rk.clone()], kk, opts, scale);
    let hs = round_view(hstate, plan.state, hs);
    let oc = &mut o[rv.clone()];
    gemm(
        (lp, kk, vv),
        scale,
        &qe[rk],
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
        &vr[rv],
        (vv, 1),
        T::one(),
        oc,
        vv,
    );
    round_slice(oc, plan.o);
}

/// One (sequence, head): forward, and the backward when `bwd` and `do` is present.
///
/// Pass 1 (chunk order): chunk-local reset-aware cumsum, the decays `exp(Gl)` and
/// `exp(Gl_last - Gl)` (kept for the whole sequence), the factors `qe`, `ke`, the state
/// recurrence (one `[K, lp] @ [lp, V]` GEMM per chunk); forward only: the chunk's outputs.
/// Backward: pass 2 (reverse) the state gradients `dH_p`; pass 3 per chunk the outputs and all
/// gradients, the intra-chunk decays computed once and shared by forward and backward.
#[inline(always)]
fn item<T: Real>(it: &Item<T>, opts: &ChunkOptions, scale: T, bwd: bool) -> ItemOut<T> {
    let plan = &opts.plan;
    let (l, kk) = it.q.dim();
    let vv = it.v.ncols();
    let kv = kk * vv;
    let cs = opts.chunk;
    let nt = l.div_ceil(cs);
    let q = std_slice(&it.q);
    let k = std_slice(&it.k);
    let mut vown = Vec::new();
    let vr = rounded(std_slice(&it.v), plan.v, &mut vown);
    let do_ = if bwd { it.do_.as_ref() } else { None };

    // Whole-sequence buffers from this thread's reused workspace (every element is written
    // before it is read): the decays exp(Gl), exp(Gl_last - Gl), the factors qe, ke, and
    // (backward) the chunk states H_p and state gradients dH_p.
    let nst = if do_.is_some() { nt * kv } else { 0 };
    let mut pool = take_pool::<T>(4 * l * kk + 2 * nst);
    let (e0, rest) = pool.split_at_mut(l * kk);
    let (el, rest) = rest.split_at_mut(l * kk);
    let (qe, rest) = rest.split_at_mut(l * kk);
    let (ke, rest) = rest.split_at_mut(l * kk);
    let (states, dstates) = rest.split_at_mut(nst);
    let mut o = pooled::<T>((l, vv));
    let ov = o.as_slice_mut().expect("standard layout");
    let mut h = std_slice(&it.h0).to_vec();
    let mut u = vec![T::zero(); kv];
    let mut hs = vec![T::zero(); kv];
    let mut intra = Intra::<T>::new(cs, opts.sub_chunk, kk);

    for (p, p0) in (0..l).step_by(cs).enumerate() {
        let lp = cs.min(l - p0);
        let last = lp - 1;
        let (rk, rv) = (p0 * kk..(p0 + lp) * kk, p0 * vv..(p0 + lp) * vv);
        let cum = Cum::<T>::new(it.g.slice(s![p0..p0 + lp, ..]));
        for i in 0..lp {
            cum.dec_row(i, -1, &mut e0[(p0 + i) * kk..(p0 + i + 1) * kk]);
            cum.dec_row(last, i as isize, &mut el[(p0 + i) * kk..(p0 + i + 1) * kk]);
        }
        factor_into(
            &q[rk.clone()],
            &e0[rk.clone()],
            T::one(),
            &mut qe[rk.clone()],
            plan.q_decay,
        );
        factor_into(
            &k[rk.clone()],
            &el[rk.clone()],
            T::one(),
            &mut ke[rk.clone()],
            plan.k_decay,
        );
        if do_.is_some() {
            states[p * kv..(p + 1) * kv].copy_from_slice(&h);
        } else {
            chunk_out(
                &mut intra,
                &cum,
                (q, k, vr, qe),
                (kk, vv),
                (p0, lp),
                opts,
                scale,
                &h,
                &mut hs,
                ov,
            );
        }
        // State update: H <- Diag(exp(Gl_last)) H + ke^T @ v (compute-type accumulator).
        gemm(
            (kk, lp, vv),
            T::one(),
            &ke[rk],
            (1, kk),
            &vr[rv],
            (vv, 1),
            T::zero(),
            &mut u,
            vv,
        );
        let glast = &e0[(p0 + last) * kk..(p0 + lp) * kk];
        for d in 0..kk {
            let gd = glast[d];
            for (hv, &uv) in h[d * vv..(d + 1) * vv]
                .iter_mut()
                .zip(&u[d * vv..(d + 1) * vv])
            {
                *hv = gd * *hv + uv;
            }
        }
    }
    let ht = Array2::from_shape_vec((kk, vv), h).expect("state shape");
    let mut grads = None;
    if let Some(do_) = do_ {
        let mut down = Vec::new();
        let dor = rounded(std_slice(do_), plan.do_, &mut down);

        // Pass 2: state gradients, dstates[p] = dL/d(state after chunk p).
        let mut dh = std_slice(&it.dht).to_vec();
        let mut w = vec![T::zero(); kv];
        for (p, p0) in (0..l).step_by(cs).enumerate().rev() {
            let lp = cs.min(l - p0);
            let (rk, rv) = (p0 * kk..(p0 + lp) * kk, p0 * vv..(p0 + lp) * vv);
            gemm(
                (kk, lp, vv),
                T::one(),
                &qe[rk],
                (1, kk),
                &dor[rv],
                (vv, 1),
                T::zero(),
                &mut w,
                vv,
            );
            dstates[p * kv..(p + 1) * kv].copy_from_slice(&dh);
            let glast = &e0[(p0 + lp - 1) * kk..(p0 + lp) * kk];
            for d in 0..kk {
                let gd = glast[d];
                for (x, &wv) in dh[d * vv..(d + 1) * vv]
                    .iter_mut()
                    .zip(&w[d * vv..(d + 1) * vv])
                {
                    *x = gd * *x + scale * wv;
                }
            }
        }
        let dh0 = Array2::from_shape_vec((kk, vv), dh).expect("state shape");

        // Pass 3: per chunk, the outputs and the gradients.
        let mut dq = pooled::<T>((l, kk));
        let mut dk = pooled::<T>((l, kk));
        let mut dv = pooled::<T>((l, vv));
        let mut dg = pooled::<T>((l, kk));
        let (dqs, dks) = (
            dq.as_slice_mut().expect("std"),
            dk.as_slice_mut().expect("std"),
        );
        let (dvs, dgs) = (
            dv.as_slice_mut().expect("std"),
            dg.as_slice_mut().expect("std"),
        );
        let mut hbuf = vec![T::zero(); kv];
        let mut dhbuf = vec![T::zero(); kv];
        let mut da = vec![T::zero(); cs * cs];
        let mut dki = vec![T::zero(); cs * kk];
        let mut acc = vec![T::zero(); kk];
        for (p, p0) in (0..l).step_by(cs).enumerate() {
            let lp = cs.min(l - p0);
            let (rk, rv) = (p0 * kk..(p0 + lp) * kk, p0 * vv..(p0 + lp) * vv);
            let cum = Cum::<T>::new(it.g.slice(s![p0..p0 + lp, ..]));
            let hstate = &states[p * kv..(p + 1) * kv];
            chunk_out(
                &mut intra,
                &cum,
                (q, k, vr, qe),
                (kk, vv),
                (p0, lp),
                opts,
                scale,
                hstate,
                &mut hs,
                ov,
            );
            let hb = round_view(hstate, plan.bwd_state, &mut hbuf);
            let dhp = round_view(&dstates[p * kv..(p + 1) * kv], plan.dstate, &mut dhbuf);
            let (qc, kc, vc, doc) = (
                &q[rk.clone()],
                &k[rk.clone()],
                &vr[rv.clone()],
                &dor[rv.clone()],
            );

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
            let dvc = &mut dvs[rv.clone()];
            gemm(
                (lp, kk, vv),
                T::one(),
                &ke[rk.clone()],
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
            let dqc = &mut dqs[rk.clone()];
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
            for (x, &ev) in dqc.iter_mut().zip(&e0[rk.clone()]) {
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
            for (x, &ev) in dki.iter_mut().zip(&el[rk.clone()]) {
                *x *= ev;
            }
            let dkc = &mut dks[rk.clone()];
            dkc.copy_from_slice(dki);

            // Intra parts: off-diagonal blocks as matrix products, diagonal blocks elementwise.
            intra.backward(&cum, qc, kc, da, kk, opts, dqc, dkc);

            // dg: within-chunk reverse sum plus the state term.
            let glast = &e0[(p0 + lp - 1) * kk..(p0 + lp) * kk];
            // rowsum(H_p * dH_p), each channel summed in order over e; eight channels at a time
            // as independent chains (same sums, no serial latency chain).
            for d0 in (0..kk).step_by(8) {
                let nd = 8.min(kk - d0);
                let mut hsum = [T::zero(); 8];
                for e in 0..vv {
                    for (x, hs_) in hsum.iter_mut().enumerate().take(nd) {
                        let at = (d0 + x) * vv + e;
                        *hs_ += hb[at] * dhp[at];
                    }
                }
                acc[d0..d0 + nd].copy_from_slice(&hsum[..nd]);
            }
            let mut ksum = vec![T::zero(); kk];
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
            let dgc = &mut dgs[rk];
            for i in (0..lp).rev() {
                let r = i * kk..(i + 1) * kk;
                for d in 0..kk {
                    acc[d] +=
                        qc[r.start + d] * dqc[r.start + d] - kc[r.start + d] * dkc[r.start + d];
                }
                dgc[r].copy_from_slice(&acc);
            }
        }
        let mut dg = seg::reduce_dg(dg, it.g.ncols());
        for a in [&mut dq, &mut dk, &mut dv, &mut dg] {
            round_in_place(a, plan.grads);
        }
        grads = Some(ItemGrads {
            dq,
            dk,
            dv,
            dg,
            dh0,
        });
    }
    give_pool(pool);
    ItemOut { o, ht, grads }
}

/// A `[rows, cols]` array in a buffer from this thread's pool (given back by `seg::run`) with
/// unspecified contents: every element of the results is written by [`item`].
fn pooled<T: Real>(shape: (usize, usize)) -> Array2<T> {
    Array2::from_shape_vec(shape, seg::take_buf_dirty::<T>(shape.0 * shape.1))
        .expect("shape matches length")
}

thread_local! {
    /// Per-thread workspace of [`item`], reused across (sequence, head) pairs and calls (no
    /// allocation or page faults per call); at most [`POOL_KEEP`] bytes are kept.
    static POOL: std::cell::RefCell<Option<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(None) };
}

/// Largest workspace kept between calls (bytes).
const POOL_KEEP: usize = 64 << 20;

/// This thread's workspace as `n` elements of `T` (contents unspecified).
fn take_pool<T: Real>(n: usize) -> Vec<T> {
    let mut v = POOL
        .with(|p| p.borrow_mut().take())
        .and_then(|b| b.downcast::<Vec<T>>().ok())
        .map(|b| *b)
        .unwrap_or_default();
    v.resize(n, T::zero());
    v
}

/// Return the workspace for the next item on this thread.
fn give_pool<T: Real>(v: Vec<T>) {
    if v.capacity() * std::mem::size_of::<T>() <= POOL_KEEP {
        POOL.with(|p| *p.borrow_mut() = Some(Box::new(v)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Gates;
    use ndarray::Array4;

    /// The AVX2 build and the baseline build give bitwise identical results.
    #[test]
    fn avx2_build_is_bitwise_identical() {
        let (t, k, v) = (70, 13, 6);
        let f = |i: usize| ((i * 7919) % 1000) as f64 / 500.0 - 1.0;
        let q = Array4::from_shape_fn((1, t, 1, k), |(_, t, _, d)| f(t * 31 + d));
        let kk = Array4::from_shape_fn((1, t, 1, k), |(_, t, _, d)| f(t * 17 + d + 3));
        let vv = Array4::from_shape_fn((1, t, 1, v), |(_, t, _, e)| f(t * 13 + e + 9));
        let mut g = Array4::from_shape_fn((1, t, 1, k), |(_, t, _, d)| -f(t + d).abs() * 3.0);
        g[[0, 20, 0, 2]] = f64::NEG_INFINITY;
        let p = Problem::builder(q, kk, vv, Gates::PerChannel(g))
            .do_(Array4::from_shape_fn((1, t, 1, v), |(_, t, _, e)| {
                f(t * 3 + e)
            }))
            .build()
            .unwrap();
        let opts = ChunkOptions::new(32, 8).unwrap();
        let scale = p.scale() as f32;
        let base = seg::run::<f32>(&p, true, |it| item(it, &opts, scale, true));
        let best = seg::run::<f32>(&p, true, |it| item_best(it, &opts, scale, true));
        assert_eq!(base, best);
        let pb = seg::run::<f32>(&p, true, |it| {
            crate::parallel::item_for_tests(it, scale, true, false)
        });
        let pa = seg::run::<f32>(&p, true, |it| {
            crate::parallel::item_for_tests(it, scale, true, true)
        });
        assert_eq!(pb, pa);
    }
}
