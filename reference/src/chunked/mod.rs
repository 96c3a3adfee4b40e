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
//! Implementation: matrix products through ndarray's `dot` (matrixmultiply), rayon over
//! (sequence, head), the per-(sequence, head) kernel compiled twice (baseline and AVX2+FMA,
//! chosen at run time; bitwise identical results). Memory per (sequence, head) in the backward:
//! the chunk states and the per-chunk A (O(T (K V / C + C))).
//! Measured on the 2-core shared machine (B=1, H=8, T=4096, K=V=128, f32): forward+backward
//! ~0.37-0.69 s, 1.2-1.3x faster than the recurrent reference; at K=V=128, C=64 the chunked
//! algorithm does about as many flops as the recurrence (~1.03x), so on a CPU it wins only by
//! GEMM efficiency (its GPU advantage is tensor-core throughput).
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

use crate::error::{GlaError, Result};
use crate::problem::Problem;
use crate::real::Real;
use crate::rounding::{round1, round_in_place};
pub use crate::rounding::RoundingPlan;
use crate::solution::Solution;
use ndarray::{s, Array2, ArrayView2};
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
        ChunkOptions { chunk: 64, sub_chunk: 16, plan: RoundingPlan::none() }
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
        let o = ChunkOptions { chunk, sub_chunk, plan: RoundingPlan::none() };
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
    Ok(seg::run::<T>(p, false, |it| item_best(it, opts, scale, false)))
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
    Ok(seg::run::<T>(p, true, |it| item_best(it, opts, scale, true)))
}

/// The per-chunk quantities shared by the forward and the backward pass.
struct Chunk<T> {
    p0: usize,
    lp: usize,
    cum: Cum<T>,
    /// `round(q * exp(Gl))`, `[lp, K]` (unscaled).
    qe: Array2<T>,
    /// `round(k * exp(Gl_last - Gl))`, `[lp, K]`.
    ke: Array2<T>,
    /// `exp(Gl_last)` per key channel.
    glast: Vec<T>,
    /// `round(A)`, `[lp, lp]`, lower triangular.
    a: Array2<T>,
    /// `round(v)`, `[lp, V]`.
    vr: Array2<T>,
}

#[inline(always)]
fn prep<T: Real>(it: &Item<T>, p0: usize, lp: usize, opts: &ChunkOptions, scale: T) -> Chunk<T> {
    let plan = &opts.plan;
    let kk = it.q.ncols();
    let rows = p0..p0 + lp;
    let q = it.q.slice(s![rows.clone(), ..]);
    let k = it.k.slice(s![rows.clone(), ..]);
    let cum = Cum::<T>::new(it.g.slice(s![rows.clone(), ..]));
    let last = lp - 1;
    let qe = cum.factor(q, |i| (i, -1), T::one(), plan.q_decay);
    let ke = cum.factor(k, |j| (last, j as isize), T::one(), plan.k_decay);
    let glast = cum.dec_vec(last, -1, kk);
    let mut a = intra_a(q, k, &cum, opts, scale);
    round_in_place(&mut a, plan.a);
    let mut vr = it.v.slice(s![rows, ..]).to_owned();
    round_in_place(&mut vr, plan.v);
    Chunk { p0, lp, cum, qe, ke, glast, a, vr }
}

/// The intra-chunk matrix A with secondary chunking (see the module docs).
#[inline(always)]
fn intra_a<T: Real>(
    q: ArrayView2<T>,
    k: ArrayView2<T>,
    cum: &Cum<T>,
    opts: &ChunkOptions,
    scale: T,
) -> Array2<T> {
    let (lp, kk) = q.dim();
    let c = opts.sub_chunk;
    let plan = &opts.plan;
    let mut a = Array2::<T>::zeros((lp, lp));
    for i0 in (0..lp).step_by(c) {
        let i1 = (i0 + c).min(lp);
        if i0 > 0 {
            // Off-diagonal blocks I > J, anchored at the first row of query block I.
            let qf = cum.factor(q.slice(s![i0..i1, ..]), |r| (i0 + r, i0 as isize), scale, plan.offdiag_q);
            let kf = cum.factor(k.slice(s![0..i0, ..]), |r| (i0, r as isize), T::one(), plan.offdiag_k);
            a.slice_mut(s![i0..i1, 0..i0]).assign(&qf.dot(&kf.t()));
        }
        // Diagonal block, elementwise in log space; j > i never evaluated.
        let mut buf = vec![T::zero(); kk];
        let ones_k = if plan.diag.is_some() { ones(kk) } else { Vec::new() };
        for i in i0..i1 {
            let qi = q.row(i);
            let qi = qi.as_slice().expect("standard layout");
            for j in i0..=i {
                let kj = k.row(j);
                let kj = kj.as_slice().expect("standard layout");
                cum.dec_row(i, j as isize, &mut buf);
                let acc = if plan.diag.is_some() {
                    for (b, &x) in buf.iter_mut().zip(qi) {
                        *b = round1(x * *b, plan.diag);
                    }
                    seg::dot3(&buf, kj, &ones_k)
                } else {
                    seg::dot3(qi, &buf, kj)
                };
                a[[i, j]] = scale * acc;
            }
        }
    }
    a
}

/// [`item`] compiled with AVX2 + FMA when available (bitwise the same results).
fn item_best<T: Real>(it: &Item<T>, opts: &ChunkOptions, scale: T, bwd: bool) -> ItemOut<T> {
    #[cfg(target_arch = "x86_64")]
    {
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

fn ones<T: Real>(n: usize) -> Vec<T> {
    vec![T::one(); n]
}

#[inline(always)]
fn item<T: Real>(it: &Item<T>, opts: &ChunkOptions, scale: T, bwd: bool) -> ItemOut<T> {
    let plan = &opts.plan;
    let (l, kk) = it.q.dim();
    let vv = it.v.ncols();
    let cs = opts.chunk;
    let mut h = it.h0.clone();
    let mut o = Array2::<T>::zeros((l, vv));
    let mut chunks: Vec<Chunk<T>> = Vec::new();
    let mut states: Vec<Array2<T>> = Vec::new();
    for p0 in (0..l).step_by(cs) {
        let lp = cs.min(l - p0);
        let c = prep(it, p0, lp, opts, scale);
        let mut hs = h.clone();
        round_in_place(&mut hs, plan.state);
        let mut oc = c.qe.dot(&hs);
        oc.mapv_inplace(|x| x * scale);
        oc += &c.a.dot(&c.vr);
        round_in_place(&mut oc, plan.o);
        o.slice_mut(s![p0..p0 + lp, ..]).assign(&oc);
        // State update: H <- Diag(exp(Gl_last)) H + ke^T @ v (f32/f64 accumulator).
        let upd = c.ke.t().dot(&c.vr);
        if bwd {
            states.push(h.clone());
        }
        for d in 0..kk {
            let gd = c.glast[d];
            for e in 0..vv {
                h[[d, e]] = gd * h[[d, e]] + upd[[d, e]];
            }
        }
        if bwd {
            chunks.push(c);
        }
    }
    let ht = h;
    let grads = match (&it.do_, bwd) {
        (Some(do_), true) => Some(backward_item(it, opts, scale, &chunks, &states, do_)),
        _ => None,
    };
    ItemOut { o, ht, grads }
}

#[inline(always)]
fn backward_item<T: Real>(
    it: &Item<T>,
    opts: &ChunkOptions,
    scale: T,
    chunks: &[Chunk<T>],
    states: &[Array2<T>],
    do_: &Array2<T>,
) -> ItemGrads<T> {
    let plan = &opts.plan;
    let (l, kk) = it.q.dim();
    let vv = it.v.ncols();
    let kg = it.g.ncols();
    let c = opts.sub_chunk;
    let mut dor = do_.clone();
    round_in_place(&mut dor, plan.do_);

    // State gradients: dhs[p] = dL/d(state after chunk p).
    let nt = chunks.len();
    let mut dhs: Vec<Array2<T>> = vec![Array2::zeros((0, 0)); nt];
    let mut dh = it.dht.clone();
    for p in (0..nt).rev() {
        let chk = &chunks[p];
        let do_c = dor.slice(s![chk.p0..chk.p0 + chk.lp, ..]);
        let upd = chk.qe.t().dot(&do_c);
        let mut next = upd;
        for d in 0..kk {
            let gd = chk.glast[d];
            for e in 0..vv {
                next[[d, e]] = gd * dh[[d, e]] + scale * next[[d, e]];
            }
        }
        dhs[p] = std::mem::replace(&mut dh, next);
    }
    let dh0 = dh;

    let mut dq = Array2::<T>::zeros((l, kk));
    let mut dk = Array2::<T>::zeros((l, kk));
    let mut dv = Array2::<T>::zeros((l, vv));
    let mut dg = Array2::<T>::zeros((l, kk));
    for (p, chk) in chunks.iter().enumerate() {
        let (p0, lp) = (chk.p0, chk.lp);
        let rows = p0..p0 + lp;
        let last = lp - 1;
        let cum = &chk.cum;
        let q = it.q.slice(s![rows.clone(), ..]);
        let k = it.k.slice(s![rows.clone(), ..]);
        let do_c = dor.slice(s![rows.clone(), ..]);
        let mut hb = states[p].clone();
        round_in_place(&mut hb, plan.bwd_state);
        let mut dhp = dhs[p].clone();
        round_in_place(&mut dhp, plan.dstate);

        // dA = scale * do @ v^T on j <= i (upper triangle selected to exact 0).
        let mut da = do_c.dot(&chk.vr.t());
        for i in 0..lp {
            for j in 0..lp {
                da[[i, j]] = if j <= i { scale * da[[i, j]] } else { T::zero() };
            }
        }
        round_in_place(&mut da, plan.da);

        // dv = A^T @ do + ke @ dH_p
        let dvc = chk.a.t().dot(&do_c) + chk.ke.dot(&dhp);

        // Inter-chunk parts of dq and dk.
        let e0 = cum.decays(lp, kk, |i| (i, -1));
        let kl = cum.decays(lp, kk, |j| (last, j as isize));
        let mut dqc = (do_c.dot(&hb.t()) * &e0).as_standard_layout().into_owned();
        dqc.mapv_inplace(|x| x * scale);
        let dk_inter = chk.vr.dot(&dhp.t()) * &kl;
        let mut dkc = dk_inter.as_standard_layout().into_owned();

        // Intra parts: off-diagonal blocks as matrix products, diagonal blocks elementwise.
        let mut buf = vec![T::zero(); kk];
        for i0 in (0..lp).step_by(c) {
            let i1 = (i0 + c).min(lp);
            if i0 > 0 {
                // dq, query block I, anchor a = first row of I: (dA_I,<I @ K*exp(a - Gl)) * exp(Gl_I - a)
                let kf = cum.factor(k.slice(s![0..i0, ..]), |r| (i0, r as isize), T::one(), plan.offdiag_k);
                let t = da.slice(s![i0..i1, 0..i0]).dot(&kf);
                let dec = cum.decays(i1 - i0, kk, |r| (i0 + r, i0 as isize));
                let mut dst = dqc.slice_mut(s![i0..i1, ..]);
                dst += &(t * &dec);
            }
            if i1 < lp {
                // dk, key block J = [i0, i1), anchor b = its last valid row:
                // (dA_>J,J^T @ Q*exp(Gl - b)) * exp(b - Gl_J)
                let b = i1 - 1;
                let qf = cum.factor(q.slice(s![i1..lp, ..]), |r| (i1 + r, b as isize), T::one(), plan.offdiag_q);
                let t = da.slice(s![i1..lp, i0..i1]).t().dot(&qf);
                let dec = cum.decays(i1 - i0, kk, |r| (b, (i0 + r) as isize));
                let mut dst = dkc.slice_mut(s![i0..i1, ..]);
                dst += &(t * &dec);
            }
            // Diagonal block, elementwise (vectorized over channels); j > i never evaluated.
            for i in i0..i1 {
                let qi = q.row(i);
                let qi = qi.as_slice().expect("standard layout");
                for j in i0..=i {
                    let kj = k.row(j);
                    let kj = kj.as_slice().expect("standard layout");
                    let daij = da[[i, j]];
                    cum.dec_row(i, j as isize, &mut buf);
                    let mut dqi = dqc.row_mut(i);
                    let dqi = dqi.as_slice_mut().expect("standard layout");
                    let mut dkj = dkc.row_mut(j);
                    let dkj = dkj.as_slice_mut().expect("standard layout");
                    if plan.diag.is_none() {
                        for ((o, &e), &kv) in dqi.iter_mut().zip(buf.iter()).zip(kj) {
                            *o += daij * (kv * e);
                        }
                        for ((o, &e), &qv) in dkj.iter_mut().zip(buf.iter()).zip(qi) {
                            *o += daij * (qv * e);
                        }
                    } else {
                        for ((o, &e), &kv) in dqi.iter_mut().zip(buf.iter()).zip(kj) {
                            *o += daij * round1(kv * e, plan.diag);
                        }
                        for ((o, &e), &qv) in dkj.iter_mut().zip(buf.iter()).zip(qi) {
                            *o += daij * round1(qv * e, plan.diag);
                        }
                    }
                }
            }
        }

        // dg: within-chunk reverse sum plus the state term.
        let mut acc: Vec<T> = (0..kk)
            .map(|d| {
                let mut hsum = T::zero();
                for e in 0..vv {
                    hsum += hb[[d, e]] * dhp[[d, e]];
                }
                let mut ksum = T::zero();
                for j in 0..lp {
                    ksum += k[[j, d]] * dk_inter[[j, d]];
                }
                chk.glast[d] * hsum + ksum
            })
            .collect();
        for i in (0..lp).rev() {
            for d in 0..kk {
                acc[d] += q[[i, d]] * dqc[[i, d]] - k[[i, d]] * dkc[[i, d]];
                dg[[p0 + i, d]] = acc[d];
            }
        }
        dq.slice_mut(s![rows.clone(), ..]).assign(&dqc);
        dk.slice_mut(s![rows.clone(), ..]).assign(&dkc);
        dv.slice_mut(s![rows, ..]).assign(&dvc);
    }
    let mut dg = seg::reduce_dg(dg, kg);
    for a in [&mut dq, &mut dk, &mut dv, &mut dg] {
        round_in_place(a, plan.grads);
    }
    ItemGrads { dq, dk, dv, dg, dh0 }
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
            .do_(Array4::from_shape_fn((1, t, 1, v), |(_, t, _, e)| f(t * 3 + e)))
            .build()
            .unwrap();
        let opts = ChunkOptions::new(32, 8).unwrap();
        let scale = p.scale() as f32;
        let base = seg::run::<f32>(&p, true, |it| item(it, &opts, scale, true));
        let best = seg::run::<f32>(&p, true, |it| item_best(it, &opts, scale, true));
        assert_eq!(base, best);
        let pb = seg::run::<f32>(&p, true, |it| crate::parallel::item_for_tests(it, scale, true, false));
        let pa = seg::run::<f32>(&p, true, |it| crate::parallel::item_for_tests(it, scale, true, true));
        assert_eq!(pb, pa);
    }
}
