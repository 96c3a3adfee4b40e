//! The recurrent form of GLA (docs/math.md §1 and §4): the ground-truth algorithm, in f32 or f64.
//!
//! Forward, per (sequence, head):
//! `S_t = Diag(alpha_t) @ S_{t-1} + outer(k_t, v_t)`, `o_t = scale * S_t^T @ q_t`, `hT = S_T`,
//! with `alpha_t = exp(g_t)` computed in the compute type `T` from the input gate rounded to `T`.
//! A gate `g = -inf` gives `alpha = 0` exactly, so the state resets exactly; no difference of log
//! gates is ever formed, so there is no `-inf - -inf` anywhere.
//!
//! Backward (fla's `fused_recurrent` order): pass 1 re-runs the forward and forms
//! `dq_t = scale * S_t @ do_t`; pass 2 runs backwards in time with
//! `dS_t = Diag(alpha_{t+1}) @ dS_{t+1} + scale * outer(q_t, do_t)` (`dS_T` seeded with `dhT`),
//! `dk_t = dS_t @ v_t`, `dv_t = dS_t^T @ k_t`, `dh0 = Diag(alpha_1) @ dS_1`. The gate gradient comes
//! in two algorithms (see [`DgForm`]):
//! - [`DgForm::ReverseCumsum`] (the paper's trick, what the kernels run):
//!   `dg_t = sum_{s >= t} (q_s * dq_s - k_s * dk_s) + rowsum(hT * dhT)`, accumulated in `T`;
//! - [`DgForm::Local`]: `dg_t = alpha_t * rowsum(S_{t-1} * dS_t)`, with `S_{t-1}` recomputed from
//!   checkpoints (memory O(sqrt(T) * K * V) per (sequence, head)).
//!
//! For scalar gates the gate gradient is the channel sum of the per-channel one, shape `[B,T,H,1]`.
//! Work runs in parallel (rayon) over (sequence, head) pairs; every inner loop walks a contiguous
//! row of the row-major `K x V` state. Results are widened exactly to f64.
//!
//! ```
//! use gla_reference::{recurrent, Gates, Problem};
//! use gla_reference::bounds::DgForm;
//! use ndarray::Array4;
//! let (b, t, h, k, v) = (1, 6, 2, 3, 2);
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, h, d)| (t + h + d) as f64 * 0.1 - 0.3);
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| (t as f64 - d as f64) * 0.2);
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| 1.0 - (t * e) as f64 * 0.1);
//! let g = Array4::from_elem((b, t, h, k), -0.5);
//! let do_ = Array4::from_elem((b, t, h, v), 1.0);
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(do_).build()?;
//! let fwd = recurrent::forward::<f32>(&p)?;
//! assert!(fwd.grads.is_none());
//! let bwd = recurrent::backward::<f64>(&p)?;          // reverse-cumsum dg
//! let loc = recurrent::backward_with::<f64>(&p, DgForm::Local)?;
//! let (a, b) = (&bwd.grads.unwrap().dg, &loc.grads.unwrap().dg);
//! assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() < 1e-12));
//! # Ok::<(), gla_reference::GlaError>(())
//! ```

use crate::bounds::DgForm;
use crate::error::Result;
use crate::problem::{GateKind, Problem, SeqSpan};
use crate::real::Real;
use crate::solution::{Gradients, Solution};
use ndarray::{s, Array4};
use rayon::prelude::*;

/// Forward pass of the recurrence computed in `T` (f32 or f64): `o` and `hT`, widened to f64.
///
/// Never fails on a validated [`Problem`]; the `Result` keeps the signature uniform across solvers.
///
/// ```
/// use gla_reference::{recurrent, Gates, Problem};
/// use ndarray::{Array3, Array4};
/// // One step, scalar gate -inf (reset): o = scale * (q.k) * v, hT = outer(k, v).
/// let q = Array4::from_elem((1, 1, 1, 4), 1.0);
/// let k = Array4::from_elem((1, 1, 1, 4), 0.5);
/// let v = Array4::from_elem((1, 1, 1, 2), 3.0);
/// let g = Gates::Scalar(Array3::from_elem((1, 1, 1), f64::NEG_INFINITY));
/// let h0 = Array4::from_elem((1, 1, 4, 2), 7.0);
/// let p = Problem::builder(q, k, v, g).h0(h0).build()?;
/// let s = recurrent::forward::<f64>(&p)?;
/// assert_eq!(s.o[[0, 0, 0, 0]], 0.5 * 4.0 * 0.5 * 3.0);
/// assert_eq!(s.ht[[0, 0, 3, 1]], 1.5);
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn forward<T: Real>(p: &Problem) -> Result<Solution> {
    let raw = run_instance::<T>(
        p,
        Opts {
            grads: false,
            dg_rc: false,
            dg_local: false,
            abs: false,
        },
    );
    Ok(raw.into_solution(DgForm::ReverseCumsum))
}

/// Forward pass plus all gradients, computed in `T`, with the reverse-cumsum gate gradient
/// ([`DgForm::ReverseCumsum`], what fla's kernels run). Needs `do`; `dht` is optional (zeros).
///
/// ```
/// use gla_reference::{recurrent, Gates, Problem};
/// use ndarray::Array4;
/// let p = Problem::builder(Array4::from_elem((1, 3, 1, 2), 0.5), Array4::from_elem((1, 3, 1, 2), 0.5),
///                          Array4::from_elem((1, 3, 1, 2), 1.0),
///                          Gates::PerChannel(Array4::from_elem((1, 3, 1, 2), -0.1))).build()?;
/// assert!(recurrent::backward::<f32>(&p).is_err()); // no `do`
/// let p = p.with_seeds(Some(Array4::from_elem((1, 3, 1, 2), 1.0)), None)?;
/// let s = recurrent::backward::<f32>(&p)?;
/// assert_eq!(s.grads.unwrap().dg.shape(), &[1, 3, 1, 2]);
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn backward<T: Real>(p: &Problem) -> Result<Solution> {
    backward_with::<T>(p, DgForm::ReverseCumsum)
}

/// Forward pass plus all gradients, computed in `T`, with the gate gradient from the chosen
/// algorithm ([`DgForm::ReverseCumsum`] or [`DgForm::Local`]). Needs `do`.
pub fn backward_with<T: Real>(p: &Problem, form: DgForm) -> Result<Solution> {
    p.require_backward()?;
    let opts = Opts {
        grads: true,
        dg_rc: form == DgForm::ReverseCumsum,
        dg_local: form == DgForm::Local,
        abs: false,
    };
    Ok(run_instance::<T>(p, opts).into_solution(form))
}

/// [`run`] for `T`, through its f32 or f64 instance compiled in this crate (`crate::real`).
fn run_instance<T: Real>(p: &Problem, opts: Opts) -> Raw {
    crate::real::instance::<T, _>(|| run_f32(p, opts), || run_f64(p, opts))
}

#[inline(never)]
fn run_f32(p: &Problem, opts: Opts) -> Raw {
    run::<f32>(p, opts)
}

#[inline(never)]
fn run_f64(p: &Problem, opts: Opts) -> Raw {
    run::<f64>(p, opts)
}

/// What the shared kernel computes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Opts {
    /// Run the backward pass (needs `do`).
    pub grads: bool,
    /// Reverse-cumsum gate gradient.
    pub dg_rc: bool,
    /// Local-form gate gradient.
    pub dg_local: bool,
    /// Magnitude mode: every input replaced by its absolute value (gates unchanged, scale |scale|)
    /// and the reverse-cumsum accumulator adds `|q| M_dq + |k| M_dk` instead of `q dq - k dk`.
    /// With `T = f64` this computes docs/math.md's magnitude tensors (section 8).
    pub abs: bool,
}

/// Raw kernel output (f64), both gate-gradient forms optional.
pub(crate) struct Raw {
    pub o: Array4<f64>,
    pub ht: Array4<f64>,
    pub dq: Option<Array4<f64>>,
    pub dk: Option<Array4<f64>>,
    pub dv: Option<Array4<f64>>,
    pub dh0: Option<Array4<f64>>,
    pub dg_rc: Option<Array4<f64>>,
    pub dg_local: Option<Array4<f64>>,
}

impl Raw {
    fn into_solution(self, form: DgForm) -> Solution {
        let dg = match form {
            DgForm::ReverseCumsum => self.dg_rc,
            DgForm::Local => self.dg_local,
        };
        let grads = match (self.dq, self.dk, self.dv, self.dh0, dg) {
            (Some(dq), Some(dk), Some(dv), Some(dh0), Some(dg)) => Some(Gradients {
                dq,
                dk,
                dv,
                dg,
                dh0,
            }),
            _ => None,
        };
        Solution {
            o: self.o,
            ht: self.ht,
            grads,
        }
    }
}

/// Inputs of one (sequence, head) job, converted to `T` and laid out contiguously.
struct JobIn<T> {
    len: usize,
    /// `[len, K]`
    q: Vec<T>,
    /// `[len, K]`
    k: Vec<T>,
    /// `[len, V]`
    v: Vec<T>,
    /// alpha = exp(g), `[len, K]` (scalar gates broadcast over channels).
    a: Vec<T>,
    /// `[len, V]` (empty without the backward pass)
    do_: Vec<T>,
    /// `[K, V]`
    h0: Vec<T>,
    /// `[K, V]`
    dht: Vec<T>,
    scale: T,
}

/// Outputs of one job, in `T`.
struct JobOut<T> {
    o: Vec<T>,
    ht: Vec<T>,
    dq: Vec<T>,
    dk: Vec<T>,
    dv: Vec<T>,
    dh0: Vec<T>,
    /// `[len, K]` per channel (channel sums are formed at scatter time for scalar gates).
    dg_rc: Vec<T>,
    dg_local: Vec<T>,
}

/// The shared kernel: forward, and optionally backward, for every (sequence, head).
pub(crate) fn run<T: Real>(p: &Problem, opts: Opts) -> Raw {
    let dims = p.dims();
    let (kd, vd) = (dims.k, dims.v);
    let seqs = p.sequences();
    let grads = opts.grads && p.do_().is_some();
    let jobs: Vec<(SeqSpan, usize)> = seqs
        .iter()
        .flat_map(|&s| (0..dims.h).map(move |h| (s, h)))
        .collect();

    let outs: Vec<JobOut<T>> = jobs
        .par_iter()
        .map(|&(s, h)| {
            let inp = gather::<T>(p, s, h, grads, opts.abs);
            job_dispatch::<T>(&inp, kd, vd, grads, opts)
        })
        .collect();

    // Scatter.
    let scalar = p.gate_kind() == GateKind::Scalar;
    let kg = if scalar { 1 } else { kd };
    let mut o = Array4::zeros((dims.b, dims.t, dims.h, vd));
    let mut ht = Array4::zeros((dims.n, dims.h, kd, vd));
    let z4 = |c: usize| Array4::<f64>::zeros((dims.b, dims.t, dims.h, c));
    let (mut dq, mut dk, mut dv, mut dh0) = if grads {
        (
            Some(z4(kd)),
            Some(z4(kd)),
            Some(z4(vd)),
            Some(Array4::zeros((dims.n, dims.h, kd, vd))),
        )
    } else {
        (None, None, None, None)
    };
    let mut dg_rc = (grads && opts.dg_rc).then(|| z4(kg));
    let mut dg_local = (grads && opts.dg_local).then(|| z4(kg));

    for (&(sp, h), out) in jobs.iter().zip(outs.iter()) {
        let rows = sp.start..sp.start + sp.len;
        put(o.slice_mut(s![sp.batch, rows.clone(), h, ..]), &out.o);
        put(ht.slice_mut(s![sp.state, h, .., ..]), &out.ht);
        if !grads {
            continue;
        }
        let (dq, dk, dv, dh0) = (
            dq.as_mut().unwrap(),
            dk.as_mut().unwrap(),
            dv.as_mut().unwrap(),
            dh0.as_mut().unwrap(),
        );
        put(dq.slice_mut(s![sp.batch, rows.clone(), h, ..]), &out.dq);
        put(dk.slice_mut(s![sp.batch, rows.clone(), h, ..]), &out.dk);
        put(dv.slice_mut(s![sp.batch, rows.clone(), h, ..]), &out.dv);
        put(dh0.slice_mut(s![sp.state, h, .., ..]), &out.dh0);
        for (dst, src) in [(&mut dg_rc, &out.dg_rc), (&mut dg_local, &out.dg_local)] {
            if let Some(dst) = dst.as_mut() {
                if scalar {
                    for t in 0..sp.len {
                        // Channel sum, in T (what a scalar-gate kernel accumulates).
                        let mut acc = T::zero();
                        for &x in &src[t * kd..(t + 1) * kd] {
                            acc += x;
                        }
                        dst[[sp.batch, sp.start + t, h, 0]] = acc.f64();
                    }
                } else {
                    put(dst.slice_mut(s![sp.batch, rows.clone(), h, ..]), src);
                }
            }
        }
    }
    Raw {
        o,
        ht,
        dq,
        dk,
        dv,
        dh0,
        dg_rc,
        dg_local,
    }
}

/// Copy a job's row-major output (in `T`) into a 2-D view, widening to f64.
fn put<T: Real>(mut dst: ndarray::ArrayViewMut2<f64>, src: &[T]) {
    for (d, &x) in dst.iter_mut().zip(src) {
        *d = x.f64();
    }
}

fn gather<T: Real>(p: &Problem, s: SeqSpan, h: usize, grads: bool, abs: bool) -> JobIn<T> {
    let dims = p.dims();
    let (kd, vd, len) = (dims.k, dims.v, s.len);
    let f = |x: f64| if abs { T::of(x.abs()) } else { T::of(x) };
    let mut q = Vec::with_capacity(len * kd);
    let mut k = Vec::with_capacity(len * kd);
    let mut v = Vec::with_capacity(len * vd);
    let mut a = Vec::with_capacity(len * kd);
    let mut do_ = Vec::with_capacity(if grads { len * vd } else { 0 });
    let scalar = p.gate_kind() == GateKind::Scalar;
    let (qa, ka, va, ga) = (p.q(), p.k(), p.v(), p.g());
    for t in s.start..s.start + len {
        q.extend(qa.slice(s![s.batch, t, h, ..]).iter().map(|&x| f(x)));
        k.extend(ka.slice(s![s.batch, t, h, ..]).iter().map(|&x| f(x)));
        v.extend(va.slice(s![s.batch, t, h, ..]).iter().map(|&x| f(x)));
        // alpha = exp(g) in T from g rounded to T; exp(-inf) = 0 exactly.
        if scalar {
            let alpha = T::of(ga[[s.batch, t, h, 0]]).exp();
            a.extend(std::iter::repeat_n(alpha, kd));
        } else {
            a.extend(
                ga.slice(s![s.batch, t, h, ..])
                    .iter()
                    .map(|&g| T::of(g).exp()),
            );
        }
        if grads {
            if let Some(dd) = p.do_() {
                do_.extend(dd.slice(s![s.batch, t, h, ..]).iter().map(|&x| f(x)));
            }
        }
    }
    let state = |x: Option<&Array4<f64>>| -> Vec<T> {
        match x {
            Some(x) => x
                .slice(s![s.state, h, .., ..])
                .iter()
                .map(|&x| f(x))
                .collect(),
            None => vec![T::zero(); kd * vd],
        }
    };
    let h0 = state(p.h0());
    let dht = if grads { state(p.dht()) } else { Vec::new() };
    let scale = f(p.scale());
    JobIn {
        len,
        q,
        k,
        v,
        a,
        do_,
        h0,
        dht,
        scale,
    }
}

/// Run [`job`] compiled for AVX2 when the CPU has it (wider vectors only: no FMA, the same
/// association everywhere, so results are bit-identical to the baseline build).
fn job_dispatch<T: Real>(j: &JobIn<T>, kd: usize, vd: usize, grads: bool, opts: Opts) -> JobOut<T> {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { job_avx2::<T>(j, kd, vd, grads, opts) };
        }
    }
    job::<T>(j, kd, vd, grads, opts)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn job_avx2<T: Real>(
    j: &JobIn<T>,
    kd: usize,
    vd: usize,
    grads: bool,
    opts: Opts,
) -> JobOut<T> {
    job::<T>(j, kd, vd, grads, opts)
}

/// Dot product with 8 independent partial sums (vectorizable), combined pairwise.
#[inline(always)]
fn dot<T: Real>(x: &[T], y: &[T]) -> T {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &y[..n]);
    let mut acc = [T::zero(); 8];
    let mut xc = x.chunks_exact(8);
    let mut yc = y.chunks_exact(8);
    for (a, b) in (&mut xc).zip(&mut yc) {
        for i in 0..8 {
            acc[i] += a[i] * b[i];
        }
    }
    let mut tail = T::zero();
    for (&a, &b) in xc.remainder().iter().zip(yc.remainder()) {
        tail += a * b;
    }
    ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail
}

/// One forward step of one state row: `row = a * row + kd * v` (two roundings per element in T).
#[inline(always)]
fn step_row<T: Real>(row: &mut [T], a: T, kd: T, v: &[T]) {
    for (x, &ve) in row.iter_mut().zip(v) {
        *x = a * *x + kd * ve;
    }
}

/// Checkpoint segment length for the local-form gate gradient.
fn segment_len(len: usize) -> usize {
    let mut s = 16usize;
    while s * s < len {
        s += 16;
    }
    s
}

#[inline(always)]
fn job<T: Real>(j: &JobIn<T>, kd: usize, vd: usize, grads: bool, opts: Opts) -> JobOut<T> {
    let len = j.len;
    let kv = kd * vd;
    let dg_rc = grads && opts.dg_rc;
    let dg_local = grads && opts.dg_local;
    let seg = segment_len(len);
    let mut ckpt: Vec<T> = Vec::new();

    // ---- Forward: o, hT and (backward) dq = scale * S_t @ do_t.
    let mut o = vec![T::zero(); len * vd];
    let mut dq = if grads {
        vec![T::zero(); len * kd]
    } else {
        Vec::new()
    };
    let mut s = j.h0.clone();
    for t in 0..len {
        if dg_local && t % seg == 0 {
            ckpt.extend_from_slice(&s);
        }
        let (qt, kt, at) = (
            &j.q[t * kd..(t + 1) * kd],
            &j.k[t * kd..(t + 1) * kd],
            &j.a[t * kd..(t + 1) * kd],
        );
        let vt = &j.v[t * vd..(t + 1) * vd];
        let ot = &mut o[t * vd..(t + 1) * vd];
        for d in 0..kd {
            let row = &mut s[d * vd..(d + 1) * vd];
            step_row(row, at[d], kt[d], vt);
            let qd = qt[d] * j.scale;
            for (oe, &x) in ot.iter_mut().zip(row.iter()) {
                *oe += qd * x;
            }
            if grads {
                let dot_ = &j.do_[t * vd..(t + 1) * vd];
                dq[t * kd + d] = dot(row, dot_) * j.scale;
            }
        }
    }
    let ht = s;
    if !grads {
        return JobOut {
            o,
            ht,
            dq,
            dk: Vec::new(),
            dv: Vec::new(),
            dh0: Vec::new(),
            dg_rc: Vec::new(),
            dg_local: Vec::new(),
        };
    }

    // ---- Backward, reverse time.
    let mut dk = vec![T::zero(); len * kd];
    let mut dv = vec![T::zero(); len * vd];
    let mut dgr = if dg_rc {
        vec![T::zero(); len * kd]
    } else {
        Vec::new()
    };
    let mut dgl = if dg_local {
        vec![T::zero(); len * kd]
    } else {
        Vec::new()
    };
    let mut ds = j.dht.clone();
    // Reverse-cumsum accumulator seeded with rowsum(hT * dhT).
    let mut acc: Vec<T> = if dg_rc {
        (0..kd)
            .map(|d| dot(&ht[d * vd..(d + 1) * vd], &j.dht[d * vd..(d + 1) * vd]))
            .collect()
    } else {
        Vec::new()
    };
    // States before each step of the current segment (local form only).
    let mut buf: Vec<T> = Vec::new();
    let nseg = len.div_ceil(seg);
    let mut a_next: Option<usize> = None; // time index whose alpha decays dS on the next step
    for sg in (0..nseg).rev() {
        let (s0, s1) = (sg * seg, ((sg + 1) * seg).min(len));
        if dg_local {
            buf.clear();
            buf.extend_from_slice(&ckpt[sg * kv..(sg + 1) * kv]);
            for t in s0..s1 - 1 {
                let i = t - s0;
                buf.extend_from_within(i * kv..(i + 1) * kv);
                let st = &mut buf[(i + 1) * kv..(i + 2) * kv];
                let kt = &j.k[t * kd..(t + 1) * kd];
                let vt = &j.v[t * vd..(t + 1) * vd];
                for d in 0..kd {
                    step_row(&mut st[d * vd..(d + 1) * vd], j.a[t * kd + d], kt[d], vt);
                }
            }
        }
        for t in (s0..s1).rev() {
            let (qt, kt, at) = (
                &j.q[t * kd..(t + 1) * kd],
                &j.k[t * kd..(t + 1) * kd],
                &j.a[t * kd..(t + 1) * kd],
            );
            let vt = &j.v[t * vd..(t + 1) * vd];
            let dot_ = &j.do_[t * vd..(t + 1) * vd];
            let dvt = &mut dv[t * vd..(t + 1) * vd];
            for d in 0..kd {
                let row = &mut ds[d * vd..(d + 1) * vd];
                let an = match a_next {
                    Some(tn) => j.a[tn * kd + d],
                    None => T::one(),
                };
                // dS_t = alpha_{t+1} * dS_{t+1} + scale * outer(q_t, do_t)
                step_row(row, an, qt[d] * j.scale, dot_);
                let dkd = dot(row, vt);
                dk[t * kd + d] = dkd;
                let kdv = kt[d];
                for (x, &r) in dvt.iter_mut().zip(row.iter()) {
                    *x += kdv * r;
                }
                if dg_rc {
                    let term = if opts.abs {
                        qt[d] * dq[t * kd + d] + kdv * dkd
                    } else {
                        qt[d] * dq[t * kd + d] - kdv * dkd
                    };
                    acc[d] += term;
                    dgr[t * kd + d] = acc[d];
                }
                if dg_local {
                    let prev = &buf[(t - s0) * kv + d * vd..(t - s0) * kv + (d + 1) * vd];
                    dgl[t * kd + d] = at[d] * dot(prev, row);
                }
            }
            a_next = Some(t);
        }
    }
    // dh0 = Diag(alpha_1) @ dS_1 (dh0 = dhT for an empty sequence).
    if let Some(t0) = a_next {
        for d in 0..kd {
            let a = j.a[t0 * kd + d];
            for x in &mut ds[d * vd..(d + 1) * vd] {
                *x = a * *x;
            }
        }
    }
    JobOut {
        o,
        ht,
        dq,
        dk,
        dv,
        dh0: ds,
        dg_rc: dgr,
        dg_local: dgl,
    }
}
