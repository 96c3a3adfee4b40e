//! The log-space parallel form of GLA (docs/math.md §2), forward and hand-derived backward.
//!
//! Per (sequence, head), with the global (per-sequence) inclusive cumulative gate `G` computed in
//! the compute type `T`:
//!
//! ```text
//!   A_ts = scale * sum_d q_t[d] k_s[d] exp(G_t[d] - G_s[d])        (s <= t; never evaluated for s > t)
//!   o    = A @ V + scale * (Q * exp(G)) @ h0
//!   hT   = (K * exp(G_T - G))^T @ V + Diag(exp(G_T)) @ h0
//! ```
//!
//! The masked upper triangle is never evaluated (no exponent is formed for s > t), so no
//! exponent that reaches `exp` is positive. Gates of `-inf` (alpha = 0) are handled exactly: the
//! cumulative gate is restarted after each reset (per channel) and a decay across a reset is the
//! exact 0 (see [`crate::chunked`]'s module docs, "reset-aware cumulative gates"); `-inf - (-inf)`
//! never arises.
//!
//! Precision: because `G` is a global cumsum, every decay carries a relative error of about
//! `u * sum_{r<=t} |g_r|` (the error model's lambda for this family is the largest per-sequence
//! sum of `|g|`, counting only the part after the last reset). Cost `O(T^2 K)` exponentials per
//! (sequence, head) and a `T x T` matrix in memory: measured on the 2-core shared machine
//! (B=1, H=8, K=V=128, f32) ~0.4-1 s for the forward at T = 1024 and ~10-30 s at T = 4096; use
//! it up to T ~ 2000, the chunked form beyond. f32 `exp` as in [`crate::chunked`] (vectorized,
//! <= 2 ulp, flush below 2^-126).
//!
//! Backward (hand-derived; `dA_ts = scale * do_t . v_s` for s <= t):
//!
//! ```text
//!   dq_t[d] = sum_{s<=t} dA_ts k_s[d] exp(G_t-G_s)[d] + scale exp(G_t[d]) (h0 @ do_t)[d]
//!   dk_s[d] = sum_{t>=s} dA_ts q_t[d] exp(G_t-G_s)[d] + exp(G_T-G_s)[d] (dhT @ v_s)[d]
//!   dv      = A^T @ do + (K * exp(G_T - G)) @ dhT
//!   dh0     = Diag(exp(G_T)) @ dhT + scale * (Q * exp(G))^T @ do
//!   dg_t    = sum_{s>=t} (q_s*dq_s - k_s*dk_s) + rowsum(hT * dhT)   (reverse-cumsum form)
//! ```
//!
//! ```
//! use gla_reference::{parallel, Gates, Problem};
//! use ndarray::Array4;
//! let (b, t, h, k, v) = (1, 7, 1, 3, 2);
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| (t as f64 * 0.3 - d as f64).sin());
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| (t as f64 + d as f64 * 0.7).cos());
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| (t * 2 + e) as f64 * 0.1);
//! let mut g = Array4::from_elem((b, t, h, k), -0.5);
//! g[[0, 2, 0, 0]] = f64::NEG_INFINITY; // a reset in channel 0
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(Array4::ones((b, t, h, v))).build()?;
//! let par = parallel::backward::<f64>(&p)?;
//! assert!(par.o.iter().chain(par.grads.as_ref().unwrap().dg.iter()).all(|x| x.is_finite()));
//! # Ok::<(), gla_reference::GlaError>(())
//! ```

use crate::chunked::seg::{self, Item, ItemGrads, ItemOut};
use crate::cumgate::Cum;
use crate::error::Result;
use crate::problem::Problem;
use crate::real::Real;
use crate::solution::Solution;
use ndarray::{Array2, Axis};

/// Forward pass of the log-space parallel form in compute type `T` (f32 or f64).
///
/// Returns `o` and `ht` (no gradients). Never fails for a valid [`Problem`].
pub fn forward<T: Real>(p: &Problem) -> Result<Solution> {
    Ok(crate::real::instance::<T, _>(
        || run_f32(p, false, true),
        || run_f64(p, false, true),
    ))
}

/// Forward and backward pass of the log-space parallel form in compute type `T`.
///
/// Needs the output gradient `do` (error [`crate::GlaError::Options`] otherwise); `dht` is
/// optional (zero). Returns `o`, `ht` and all gradients; `dg` uses the reverse-cumsum form.
pub fn backward<T: Real>(p: &Problem) -> Result<Solution> {
    p.require_backward()?;
    Ok(crate::real::instance::<T, _>(
        || run_f32(p, true, true),
        || run_f64(p, true, true),
    ))
}

/// Both passes in `T` (the forms' one body; `bwd` adds the gradients). `avx2`: use the AVX2 +
/// FMA build of the per-item kernel where the CPU has it (the forms always do; the baseline build
/// only for the tests' bitwise comparison, `crate::test_support`).
fn run<T: Real>(p: &Problem, bwd: bool, avx2: bool) -> Solution {
    let scale = T::of(p.scale());
    seg::run::<T>(p, bwd, |it| item_isa(it, scale, bwd, avx2))
}

/// The f32 instance of [`run`], compiled in this crate (`crate::real`).
#[inline(never)]
pub(crate) fn run_f32(p: &Problem, bwd: bool, avx2: bool) -> Solution {
    run::<f32>(p, bwd, avx2)
}

/// The f64 instance of [`run`], compiled in this crate (`crate::real`).
#[inline(never)]
fn run_f64(p: &Problem, bwd: bool, avx2: bool) -> Solution {
    run::<f64>(p, bwd, avx2)
}

/// [`item`] compiled with AVX2 + FMA when `avx2` and the CPU has them, else the baseline build
/// (bitwise the same results).
fn item_isa<T: Real>(it: &Item<T>, scale: T, bwd: bool, avx2: bool) -> ItemOut<T> {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2 && seg::has_avx2() {
            // SAFETY: the CPU features were detected at run time.
            return unsafe { item_avx2(it, scale, bwd) };
        }
    }
    item(it, scale, bwd)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn item_avx2<T: Real>(it: &Item<T>, scale: T, bwd: bool) -> ItemOut<T> {
    item(it, scale, bwd)
}

#[inline(always)]
fn row<T>(a: &Array2<T>, i: usize) -> &[T] {
    let n = a.ncols();
    &a.as_slice().expect("standard layout")[i * n..(i + 1) * n]
}

#[inline(always)]
fn item<T: Real>(it: &Item<T>, scale: T, bwd: bool) -> ItemOut<T> {
    let (l, kk) = it.q.dim();
    let vv = it.v.ncols();
    let kg = it.g.ncols();
    if l == 0 {
        return ItemOut {
            o: Array2::zeros((0, vv)),
            ht: it.h0.clone(),
            grads: bwd.then(|| ItemGrads {
                dq: Array2::zeros((0, kk)),
                dk: Array2::zeros((0, kk)),
                dv: Array2::zeros((0, vv)),
                dg: Array2::zeros((0, kg)),
                dh0: it.dht.clone(),
            }),
        };
    }
    let cum = Cum::<T>::new(it.g.view());
    let (q, k) = (&it.q, &it.k);
    let last = l - 1;
    // Decayed queries from the sequence start and keys to the sequence end.
    let qe = cum.factor(q.view(), |t| (t, -1), T::one(), None);
    let kt = cum.factor(k.view(), |s| (last, s as isize), T::one(), None);
    let end = cum.dec_vec(last, -1, kk);

    let mut a = Array2::<T>::zeros((l, l));
    let da = it
        .do_
        .as_ref()
        .filter(|_| bwd)
        .map(|d| d.dot(&it.v.t()).mapv(|x| x * scale));
    let mut dq = Array2::<T>::zeros((l, kk));
    let mut dk = Array2::<T>::zeros((l, kk));
    {
        let qs = q.as_slice().expect("standard layout");
        let ks = k.as_slice().expect("standard layout");
        let mut buf = vec![T::zero(); kk];
        for t in 0..l {
            let qt = &qs[t * kk..(t + 1) * kk];
            for s in 0..=t {
                let ksr = &ks[s * kk..(s + 1) * kk];
                // decay(s -> t) per channel: exponent selected to -inf across a reset, then exp.
                cum.dec_row(t, s as isize, &mut buf);
                a[[t, s]] = scale * seg::dot3(qt, ksr, &buf);
                if let Some(da) = &da {
                    let dats = da[[t, s]];
                    {
                        let mut dqt = dq.row_mut(t);
                        let dqt = dqt.as_slice_mut().expect("standard layout");
                        for ((o, &e), &kv) in dqt.iter_mut().zip(buf.iter()).zip(ksr) {
                            *o += dats * kv * e;
                        }
                    }
                    let mut dks = dk.row_mut(s);
                    let dks = dks.as_slice_mut().expect("standard layout");
                    for ((o, &e), &qv) in dks.iter_mut().zip(buf.iter()).zip(qt) {
                        *o += dats * qv * e;
                    }
                }
            }
        }
    }
    let qes = qe.mapv(|x| x * scale);
    let mut o = a.dot(&it.v);
    o += &qes.dot(&it.h0);
    let mut ht = kt.t().dot(&it.v);
    for d in 0..kk {
        for e in 0..vv {
            ht[[d, e]] += end[d] * it.h0[[d, e]];
        }
    }
    let grads = match (&it.do_, bwd) {
        (Some(do_), true) => {
            let dv = a.t().dot(do_) + kt.dot(&it.dht);
            let e0 = cum.decays(l, kk, |t| (t, -1)).mapv(|x| x * scale);
            dq += &(do_.dot(&it.h0.t()) * &e0);
            let kdec = cum.decays(l, kk, |s| (last, s as isize));
            dk += &(it.v.dot(&it.dht.t()) * &kdec);
            let mut dh0 = qes.t().dot(do_);
            for d in 0..kk {
                for e in 0..vv {
                    dh0[[d, e]] += end[d] * it.dht[[d, e]];
                }
            }
            // dg: reverse cumsum of q*dq - k*dk, seeded with rowsum(hT * dhT).
            let seed = (&ht * &it.dht).sum_axis(Axis(1));
            let mut dg = Array2::<T>::zeros((l, kk));
            let mut acc: Vec<T> = seed.to_vec();
            for t in (0..l).rev() {
                let (qt, dqt, kt_, dkt) = (row(q, t), row(&dq, t), row(k, t), row(&dk, t));
                for d in 0..kk {
                    acc[d] += qt[d] * dqt[d] - kt_[d] * dkt[d];
                    dg[[t, d]] = acc[d];
                }
            }
            Some(ItemGrads {
                dq,
                dk,
                dv,
                dg: seg::reduce_dg(dg, kg),
                dh0,
            })
        }
        _ => None,
    };
    ItemOut { o, ht, grads }
}
