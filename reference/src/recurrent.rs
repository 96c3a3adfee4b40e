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
use ndarray::{s, Array4, ArrayViewMut2, ArrayViewMut3, Axis};
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
    pub(crate) fn into_solution(self, form: DgForm) -> Solution {
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
    run_set::<T>(p, &[opts])
        .pop()
        .expect("one result per option set")
}

/// [`run`] for several option sets in one parallel pass over the (sequence, head) jobs: each
/// job runs every set in turn (the same kernel, inputs and arithmetic as [`run`] with that set
/// alone, so each result is bitwise [`run`]'s) and writes its outputs straight into the results,
/// so no job's outputs wait for the others (at training shapes they are gigabytes).
pub(crate) fn run_set<T: Real>(p: &Problem, sets: &[Opts]) -> Vec<Raw> {
    let dims = p.dims();
    let (kd, vd) = (dims.k, dims.v);
    let seqs = p.sequences();
    let scalar = p.gate_kind() == GateKind::Scalar;
    let jobs: Vec<(SeqSpan, usize)> = seqs
        .iter()
        .flat_map(|&s| (0..dims.h).map(move |h| (s, h)))
        .collect();
    let mut raws: Vec<Raw> = sets.iter().map(|&o| Raw::zeros(p, o)).collect();
    // sinks[job][set]: where job's outputs for that set go.
    let mut sinks: Vec<Vec<Sink<'_>>> = jobs.iter().map(|_| Vec::new()).collect();
    for raw in raws.iter_mut() {
        for (to, s) in sinks.iter_mut().zip(raw.sinks(&seqs, dims.h)) {
            to.push(s);
        }
    }
    jobs.par_iter()
        .zip(sinks.into_par_iter())
        .for_each(|(&(s, h), sinks)| {
            for (&opts, sink) in sets.iter().zip(sinks) {
                let grads = opts.grads && p.do_().is_some();
                let inp = gather::<T>(p, s, h, grads, opts.abs);
                let out = job_dispatch::<T>(&inp, kd, vd, grads, opts);
                drop(inp);
                sink.put(&out, scalar, kd);
            }
        });
    raws
}

impl Raw {
    /// Zero results of `p` for the option set `opts`.
    fn zeros(p: &Problem, opts: Opts) -> Raw {
        let dims = p.dims();
        let (kd, vd) = (dims.k, dims.v);
        let grads = opts.grads && p.do_().is_some();
        let kg = if p.gate_kind() == GateKind::Scalar {
            1
        } else {
            kd
        };
        let z4 = |c: usize| Array4::<f64>::zeros((dims.b, dims.t, dims.h, c));
        let zs = || Array4::<f64>::zeros((dims.n, dims.h, kd, vd));
        Raw {
            o: z4(vd),
            ht: zs(),
            dq: grads.then(|| z4(kd)),
            dk: grads.then(|| z4(kd)),
            dv: grads.then(|| z4(vd)),
            dh0: grads.then(zs),
            dg_rc: (grads && opts.dg_rc).then(|| z4(kg)),
            dg_local: (grads && opts.dg_local).then(|| z4(kg)),
        }
    }

    /// One [`Sink`] per job (sequence-major, then head: the order of [`run_set`]'s jobs).
    fn sinks(&mut self, seqs: &[SeqSpan], heads: usize) -> Vec<Sink<'_>> {
        let n = seqs.len() * heads;
        type Views<'a> = Vec<Option<ArrayViewMut2<'a, f64>>>;
        fn each<'a>(
            x: Option<&'a mut Array4<f64>>,
            n: usize,
            split: impl FnOnce(&'a mut Array4<f64>) -> Vec<ArrayViewMut2<'a, f64>>,
        ) -> Views<'a> {
            match x {
                Some(x) => split(x).into_iter().map(Some).collect(),
                None => (0..n).map(|_| None).collect(),
            }
        }
        let rows = |x| each(x, n, |x| job_rows(x, seqs, heads));
        let states = |x| each(x, n, |x| job_states(x, seqs, heads));
        let mut o = rows(Some(&mut self.o)).into_iter();
        let mut ht = states(Some(&mut self.ht)).into_iter();
        let mut dq = rows(self.dq.as_mut()).into_iter();
        let mut dk = rows(self.dk.as_mut()).into_iter();
        let mut dv = rows(self.dv.as_mut()).into_iter();
        let mut dh0 = states(self.dh0.as_mut()).into_iter();
        let mut dg_rc = rows(self.dg_rc.as_mut()).into_iter();
        let mut dg_local = rows(self.dg_local.as_mut()).into_iter();
        (0..n)
            .map(|_| Sink {
                o: o.next().flatten().expect("one view per job"),
                ht: ht.next().flatten().expect("one view per job"),
                dq: dq.next().flatten(),
                dk: dk.next().flatten(),
                dv: dv.next().flatten(),
                dh0: dh0.next().flatten(),
                dg_rc: dg_rc.next().flatten(),
                dg_local: dg_local.next().flatten(),
            })
            .collect()
    }
}

/// Where one job's outputs go: its rows of each `[B, T, H, C]` result and its `[K, V]` block of
/// each state result.
struct Sink<'a> {
    o: ArrayViewMut2<'a, f64>,
    ht: ArrayViewMut2<'a, f64>,
    dq: Option<ArrayViewMut2<'a, f64>>,
    dk: Option<ArrayViewMut2<'a, f64>>,
    dv: Option<ArrayViewMut2<'a, f64>>,
    dh0: Option<ArrayViewMut2<'a, f64>>,
    dg_rc: Option<ArrayViewMut2<'a, f64>>,
    dg_local: Option<ArrayViewMut2<'a, f64>>,
}

impl Sink<'_> {
    /// Write a job's outputs (`scalar`: gate gradients summed over the `kd` channels).
    fn put<T: Real>(self, out: &JobOut<T>, scalar: bool, kd: usize) {
        put(self.o, &out.o);
        put(self.ht, &out.ht);
        for (dst, src) in [
            (self.dq, &out.dq),
            (self.dk, &out.dk),
            (self.dv, &out.dv),
            (self.dh0, &out.dh0),
        ] {
            if let Some(dst) = dst {
                put(dst, src);
            }
        }
        for (dst, src) in [(self.dg_rc, &out.dg_rc), (self.dg_local, &out.dg_local)] {
            let Some(mut dst) = dst else { continue };
            if scalar {
                for t in 0..dst.nrows() {
                    // Channel sum, in T (what a scalar-gate kernel accumulates).
                    let mut acc = T::zero();
                    for &x in &src[t * kd..(t + 1) * kd] {
                        acc += x;
                    }
                    dst[[t, 0]] = acc.f64();
                }
            } else {
                put(dst, src);
            }
        }
    }
}

/// The rows of a `[B, T, H, C]` result that each job writes, `[len, C]` views of
/// `x[batch, start..start + len, h, ..]`, in job order (sequence-major, then head). The
/// sequences of a batch are in time order and do not overlap.
fn job_rows<'a>(
    x: &'a mut Array4<f64>,
    seqs: &[SeqSpan],
    heads: usize,
) -> Vec<ArrayViewMut2<'a, f64>> {
    let mut rest: Vec<Option<(usize, ArrayViewMut3<'a, f64>)>> =
        x.axis_iter_mut(Axis(0)).map(|v| Some((0, v))).collect();
    let mut out = Vec::with_capacity(seqs.len() * heads);
    for sp in seqs {
        let (pos, v) = rest[sp.batch].take().expect("a batch's rest");
        assert!(sp.start >= pos, "sequences in time order");
        let (_, v) = v.split_at(Axis(0), sp.start - pos);
        let (mine, v) = v.split_at(Axis(0), sp.len);
        rest[sp.batch] = Some((sp.start + sp.len, v));
        split_heads(mine.permuted_axes([1, 0, 2]), heads, &mut out);
    }
    out
}

/// The `[K, V]` block `x[state, h]` of a `[N, H, K, V]` result that each job writes, in job order.
fn job_states<'a>(
    x: &'a mut Array4<f64>,
    seqs: &[SeqSpan],
    heads: usize,
) -> Vec<ArrayViewMut2<'a, f64>> {
    let mut per: Vec<Option<ArrayViewMut3<'a, f64>>> = x.axis_iter_mut(Axis(0)).map(Some).collect();
    let mut out = Vec::with_capacity(seqs.len() * heads);
    for sp in seqs {
        let v = per[sp.state].take().expect("one sequence per state");
        split_heads(v, heads, &mut out);
    }
    out
}

/// Push the `heads` sub-views along axis 0 of `v` to `out`.
fn split_heads<'a>(
    mut v: ArrayViewMut3<'a, f64>,
    heads: usize,
    out: &mut Vec<ArrayViewMut2<'a, f64>>,
) {
    for _ in 0..heads {
        let (one, rest) = v.split_at(Axis(0), 1);
        out.push(one.index_axis_move(Axis(0), 0));
        v = rest;
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
    // Kept opaque to the vectorizer: fed with the final sum, it lays the eight partial sums out
    // pairwise across vector lanes and shuffles every load of the loop to match (2.4x slower
    // on AVX2, measured); the arithmetic is the same either way.
    sum8(std::hint::black_box(acc), tail)
}

/// The combination of [`dot`]'s eight partial sums and its tail.
#[inline(always)]
fn sum8<T: Real>(a: [T; 8], tail: T) -> T {
    ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7])) + tail
}

/// `(dot(x0, y0), dot(x1, y1))`, bit for bit, with the two products interleaved (independent
/// dependency chains, so twice the work per cycle where `dot` waits on its additions).
#[inline(always)]
fn dot_pair<T: Real>(x0: &[T], y0: &[T], x1: &[T], y1: &[T]) -> (T, T) {
    let n = x0.len();
    if y0.len() != n || x1.len() != n || y1.len() != n {
        return (dot(x0, y0), dot(x1, y1));
    }
    let m = n - n % 8;
    let (mut a0, mut a1) = ([T::zero(); 8], [T::zero(); 8]);
    for (((p, q), r), s) in x0[..m]
        .chunks_exact(8)
        .zip(y0[..m].chunks_exact(8))
        .zip(x1[..m].chunks_exact(8))
        .zip(y1[..m].chunks_exact(8))
    {
        for i in 0..8 {
            a0[i] += p[i] * q[i];
        }
        for i in 0..8 {
            a1[i] += r[i] * s[i];
        }
    }
    let (mut t0, mut t1) = (T::zero(), T::zero());
    for i in m..n {
        t0 += x0[i] * y0[i];
    }
    for i in m..n {
        t1 += x1[i] * y1[i];
    }
    let (a0, a1) = std::hint::black_box((a0, a1));
    (sum8(a0, t0), sum8(a1, t1))
}

/// One forward step of one state row: `row = a * row + kd * v` (two roundings per element in T).
#[inline(always)]
fn step_row<T: Real>(row: &mut [T], a: T, kd: T, v: &[T]) {
    for (x, &ve) in row.iter_mut().zip(v) {
        *x = a * *x + kd * ve;
    }
}

/// [`step_row`] from the row `src` into `dst`: `dst = a * src + kd * v`, the same two roundings
/// per element.
#[inline(always)]
fn step_row_from<T: Real>(dst: &mut [T], src: &[T], a: T, kd: T, v: &[T]) {
    for ((x, &s), &ve) in dst.iter_mut().zip(src).zip(v) {
        *x = a * s + kd * ve;
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
    let mut ckpt: Vec<T> = if dg_local {
        Vec::with_capacity(len.div_ceil(seg) * kv)
    } else {
        Vec::new()
    };

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
        // Rows in pairs (two independent dot products in flight); each row's arithmetic, and
        // the order of o's accumulation over rows, are those of one row at a time.
        let mut d = 0;
        while d < kd {
            if d + 1 < kd {
                let (r0, r1) = s[d * vd..(d + 2) * vd].split_at_mut(vd);
                step_row(r0, at[d], kt[d], vt);
                step_row(r1, at[d + 1], kt[d + 1], vt);
                let (q0, q1) = (qt[d] * j.scale, qt[d + 1] * j.scale);
                for ((oe, &x0), &x1) in ot.iter_mut().zip(r0.iter()).zip(r1.iter()) {
                    *oe += q0 * x0;
                    *oe += q1 * x1;
                }
                if grads {
                    let dot_ = &j.do_[t * vd..(t + 1) * vd];
                    let (a, b) = dot_pair(r0, dot_, r1, dot_);
                    dq[t * kd + d] = a * j.scale;
                    dq[t * kd + d + 1] = b * j.scale;
                }
                d += 2;
            } else {
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
                d += 1;
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
    let mut buf: Vec<T> = if dg_local {
        vec![T::zero(); seg.min(len) * kv]
    } else {
        Vec::new()
    };
    let nseg = len.div_ceil(seg);
    let mut a_next: Option<usize> = None; // time index whose alpha decays dS on the next step
    for sg in (0..nseg).rev() {
        let (s0, s1) = (sg * seg, ((sg + 1) * seg).min(len));
        if dg_local {
            buf[..kv].copy_from_slice(&ckpt[sg * kv..(sg + 1) * kv]);
            for t in s0..s1 - 1 {
                // State i + 1 of the segment from state i, written in place of a copy.
                let i = t - s0;
                let (done, next) = buf.split_at_mut((i + 1) * kv);
                let (prev, st) = (&done[i * kv..], &mut next[..kv]);
                let (kt, at) = (&j.k[t * kd..(t + 1) * kd], &j.a[t * kd..(t + 1) * kd]);
                let vt = &j.v[t * vd..(t + 1) * vd];
                for (d, (&a, &k)) in at.iter().zip(kt).enumerate() {
                    let r = d * vd..(d + 1) * vd;
                    step_row_from(&mut st[r.clone()], &prev[r], a, k, vt);
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
            // Rows in pairs, as in the forward: each row's arithmetic, and the order of dv's
            // accumulation over rows, are those of one row at a time.
            let mut d = 0;
            while d < kd {
                let w = if d + 1 < kd { 2 } else { 1 };
                let rows = &mut ds[d * vd..(d + w) * vd];
                for (i, row) in rows.chunks_exact_mut(vd).enumerate() {
                    let an = match a_next {
                        Some(tn) => j.a[tn * kd + d + i],
                        None => T::one(),
                    };
                    // dS_t = alpha_{t+1} * dS_{t+1} + scale * outer(q_t, do_t)
                    step_row(row, an, qt[d + i] * j.scale, dot_);
                }
                let rows = &*rows;
                let base = (t - s0) * kv + d * vd;
                let (dks, dls) = if w == 2 {
                    let (r0, r1) = rows.split_at(vd);
                    let (k0, k1) = (kt[d], kt[d + 1]);
                    for ((x, &a), &b) in dvt.iter_mut().zip(r0).zip(r1) {
                        *x += k0 * a;
                        *x += k1 * b;
                    }
                    let dls = if dg_local {
                        let p = &buf[base..base + 2 * vd];
                        dot_pair(&p[..vd], r0, &p[vd..], r1)
                    } else {
                        (T::zero(), T::zero())
                    };
                    (dot_pair(r0, vt, r1, vt), dls)
                } else {
                    let k0 = kt[d];
                    for (x, &a) in dvt.iter_mut().zip(rows) {
                        *x += k0 * a;
                    }
                    let dl = if dg_local {
                        dot(&buf[base..base + vd], rows)
                    } else {
                        T::zero()
                    };
                    ((dot(rows, vt), T::zero()), (dl, T::zero()))
                };
                for (i, (dkd, dl)) in [(dks.0, dls.0), (dks.1, dls.1)]
                    .into_iter()
                    .take(w)
                    .enumerate()
                {
                    let d = d + i;
                    dk[t * kd + d] = dkd;
                    let kdv = kt[d];
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
                        dgl[t * kd + d] = at[d] * dl;
                    }
                }
                d += w;
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
