//! The empirical baseline verdict of `glacheck verify` (docs/math.md §8.2, "Verifier power"):
//! a candidate's error may be at most twice the error of glacheck's own honest implementations of
//! the arithmetic it declares, plus a floor, in the largest element and in the RMS.
//!
//! This is FlashAttention's rule (a kernel's error against the exact result, compared with the
//! error of a same-precision reference on the same inputs), with glacheck's reference forms as
//! the same-precision references. The derived bound (docs/math.md §8.1) proves a result wrong
//! when it is exceeded, but at low precision it sits about ten times above what a correct kernel
//! does; the baseline closes that gap from the other side: a kernel twice as inaccurate as a
//! straightforward implementation of its own arithmetic is not accepted.
//!
//! The honest implementations of a declared arithmetic ([`honest_set`]), each called directly on
//! the problem as stored (the inputs the candidate consumed):
//!
//! * the chunked form (`gla_reference::chunked`) in f32 (f64 for `--precision f64`) with the
//!   declared chunk length `C`, sub-chunk the largest divisor of `C` not above 16
//!   ([`sub_chunk_for`]), and the declared precision's rounding plan ([`plan_for`]: none for f32
//!   and f64, `RoundingPlan::kernel_default(p)` for tf32, bf16 and f16, plus `A`'s off-diagonal
//!   factors and `dA` with [`DeclaredPlan::TensorCore`]), its dg by the declared algorithm;
//! * for bf16 and f16 also the chunked form with the training plan ([`training_plan_for`]: the
//!   backward's stored states and state gradients rounded too), and with
//!   [`DeclaredPlan::TensorCore`] that plan once more without `dA`'s rounding (a kernel that
//!   feeds `dA` to the tensor cores as two 16-bit terms, as glacheck's GPU kernels do: neither
//!   is uniformly more accurate, see [`honest_set`]);
//! * for f32 and f64 also the recurrent form in the same compute type.
//!
//! Each honest output is rounded to the dtype the candidate stores that tensor in (a candidate
//! that stores `o` in bf16 is compared with honest results stored in bf16). The baseline error of
//! a tensor is the worst over the set, separately for `max |x_h - x*|` and `RMS(x_h - x*)` (over
//! the elements where the truth is finite). The candidate passes when
//!
//! ```text
//! max |x - x*| <= BASELINE_FACTOR * base_max + u_acc sqrt(n_acc + lambda) max(M_x)
//! RMS(x - x*)  <= BASELINE_FACTOR * base_rms + u_acc sqrt(n_acc + lambda) RMS(M_x)
//! ```
//!
//! with `u_acc` the accumulation format's unit roundoff (f32's, f64's for `--precision f64`) and
//! `M_x` the magnitude that judges the tensor (`M_dg` or `M_dg_local` for dg). The floor covers
//! what the honest implementations do not emulate, the order of a kernel's f32 accumulation
//! (tensor cores) and its approximate `exp`. It is the probabilistic size of an accumulation's
//! error (Higham and Mary: with rounding errors that behave as independent zero-mean variables,
//! a sum of `n` terms errs by about `sqrt(n) u` relative to its magnitude with high
//! probability), not the worst case `n u` of the derived bound: at f32, where every honest error
//! sits far below the worst case, the worst-case floor let through f32-path bugs that
//! FlashAttention's rule catches (the chunk state stored in bf16 on the `strong` case, measured
//! 326x the baseline's max error yet under an `n u` floor). With `sqrt`, the honest direction
//! still holds on the catalog and the drawn problems (`judge/tests/power.rs`). At bf16 the floor
//! is far below the rounding stages' error.
//!
//! ```
//! use gla_judge::baseline::{err_stats, honest_set, sub_chunk_for, DeclaredPlan};
//! use gla_reference::Dtype;
//! assert_eq!(sub_chunk_for(64), 16);
//! assert_eq!(sub_chunk_for(24), 12);
//! assert_eq!(sub_chunk_for(13), 13);
//! assert_eq!(sub_chunk_for(17), 1);
//! let names: Vec<String> = honest_set(Dtype::F32, 64, DeclaredPlan::Fla).iter().map(|h| h.name()).collect();
//! assert_eq!(names, ["chunked-f32-C64c16", "recurrent-f32"]);
//! assert_eq!(honest_set(Dtype::Bf16, 32, DeclaredPlan::Fla)[0].name(), "chunked-f32-C32c16-bf16");
//! let x = ndarray::Array4::from_elem((1, 1, 1, 4), 1.5);
//! let exact = ndarray::Array4::from_elem((1, 1, 1, 4), 1.0);
//! let s = err_stats(&x, &exact);
//! assert_eq!((s.max, s.rms), (0.5, 0.5));
//! ```

use gla_reference::bounds::DgForm;
use gla_reference::chunked::{self, ChunkOptions};
use gla_reference::rounding::RoundingPlan;
use gla_reference::{recurrent, Dtype, Problem, Result, Solution};
use ndarray::Array4;

/// How many times the honest baseline's error a candidate may err (max and RMS alike).
///
/// FlashAttention's factor (`max |out - out_ref| <= 2 max |out_pt - out_ref|`, FA2 and FA3's
/// `rtol`), kept: the honest implementations measured at most 1.0x their own baseline by
/// construction, and the other honest forms glacheck has (parallel, other chunkings, the GPU
/// kernels' training plans, fla's recurrence) stay below it (docs/math.md §8.2, "Verifier
/// power"; evidence in `judge/tests/power.rs`).
pub const BASELINE_FACTOR: f64 = 2.0;

/// The largest sub-chunk length the baseline's chunked form uses (fla's 16).
pub const MAX_SUB_CHUNK: usize = 16;

/// The sub-chunk length of the baseline's chunked form for a chunk length `chunk`: its largest
/// divisor not above [`MAX_SUB_CHUNK`] (at least 1).
pub fn sub_chunk_for(chunk: usize) -> usize {
    (1..=MAX_SUB_CHUNK.min(chunk.max(1)))
        .rev()
        .find(|c| chunk % c == 0)
        .unwrap_or(1)
}

/// One honest implementation of a declared arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Honest {
    /// `gla_reference::chunked` in `compute` (f32 or f64) with `opts`.
    Chunked {
        /// f32 or f64.
        compute: Dtype,
        /// Chunk, sub-chunk and rounding plan.
        opts: ChunkOptions,
    },
    /// `gla_reference::recurrent` in `compute` (f32 or f64).
    Recurrent {
        /// f32 or f64.
        compute: Dtype,
    },
}

impl Honest {
    /// A name in the style of [`crate::Implementation::name`], e.g. `chunked-f32-C64c16-bf16`.
    pub fn name(&self) -> String {
        match *self {
            Honest::Chunked { compute, opts } => {
                let round = match opts.plan.stages().first() {
                    Some((_, d)) => {
                        // tensor-core plan: A's off-diagonal factors rounded; "-tc-da2": dA
                        // not rounded (two 16-bit terms)
                        let tc = match (opts.plan.offdiag_q.is_some(), opts.plan.da.is_some()) {
                            (true, false) => "-tc-da2",
                            (true, true) | (false, true) => "-tc",
                            (false, false) => "",
                        };
                        let train = if opts.plan.dstate.is_some() {
                            "-train"
                        } else {
                            ""
                        };
                        format!("-{d}{tc}{train}")
                    }
                    None => String::new(),
                };
                format!(
                    "chunked-{compute}-C{}c{}{round}",
                    opts.chunk, opts.sub_chunk
                )
            }
            Honest::Recurrent { compute } => format!("recurrent-{compute}"),
        }
    }

    /// Run it on `p` exactly as stored: the forward, or (`backward`) every output with dg by
    /// `dg`.
    pub fn solve(&self, p: &Problem, backward: bool, dg: DgForm) -> Result<Solution> {
        let f64c = |d: Dtype| d == Dtype::F64;
        match (*self, backward) {
            (Honest::Chunked { compute, opts }, false) if f64c(compute) => {
                chunked::forward::<f64>(p, &opts)
            }
            (Honest::Chunked { opts, .. }, false) => chunked::forward::<f32>(p, &opts),
            (Honest::Chunked { compute, opts }, true) if f64c(compute) => {
                chunked::backward_with::<f64>(p, &opts, dg)
            }
            (Honest::Chunked { opts, .. }, true) => chunked::backward_with::<f32>(p, &opts, dg),
            (Honest::Recurrent { compute }, false) if f64c(compute) => recurrent::forward::<f64>(p),
            (Honest::Recurrent { .. }, false) => recurrent::forward::<f32>(p),
            (Honest::Recurrent { compute }, true) if f64c(compute) => {
                recurrent::backward_with::<f64>(p, dg)
            }
            (Honest::Recurrent { .. }, true) => recurrent::backward_with::<f32>(p, dg),
        }
    }
}

/// The accumulation format of a declared precision: f64 for f64, f32 otherwise.
pub fn accumulation(precision: Dtype) -> Dtype {
    if precision == Dtype::F64 {
        Dtype::F64
    } else {
        Dtype::F32
    }
}

/// Which intermediates a bf16 / f16 / tf32 candidate declares rounded to its precision
/// (`glacheck verify --plan`): the rounding plan behind both the derived bound's stages and the
/// honest implementations of the baseline rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeclaredPlan {
    /// fla's kernel plan (`RoundingPlan::kernel_default`): `q*exp(Gl)`, `k*exp(Gl_last - Gl)`,
    /// the stored states, `A` before `A @ V`, `o` and the final gradients.
    #[default]
    Fla,
    /// fla's plan plus the further tensor-core operands of a kernel that computes `A`'s
    /// off-diagonal sub-blocks and the backward's intra-chunk products on tensor cores: the
    /// anchored factors of `A`'s off-diagonal blocks (`offdiag_q`, `offdiag_k`) and `dA` (`da`);
    /// glacheck's own bf16 / f16 GPU kernels round all of these but `dA`, which they feed to the
    /// tensor cores as two 16-bit terms.
    TensorCore,
}

impl DeclaredPlan {
    /// `fla` or `tensor-core`.
    pub fn name(self) -> &'static str {
        match self {
            DeclaredPlan::Fla => "fla",
            DeclaredPlan::TensorCore => "tensor-core",
        }
    }
}

impl std::str::FromStr for DeclaredPlan {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "fla" => Ok(DeclaredPlan::Fla),
            "tensor-core" => Ok(DeclaredPlan::TensorCore),
            _ => Err(format!("unknown plan `{s}` (fla, tensor-core)")),
        }
    }
}

/// The rounding plan of a declared precision: none for f32 and f64; for bf16 and f16 fla's kernel
/// plan (`RoundingPlan::kernel_default`), with [`DeclaredPlan::TensorCore`] plus `A`'s
/// off-diagonal factors and `dA`; for tf32 and tf32-rz every product operand in that format,
/// whichever plan is declared (the plan the derived bound charges).
///
/// ```
/// use gla_judge::baseline::{plan_for, DeclaredPlan};
/// use gla_reference::{Dtype, RoundingPlan};
/// assert_eq!(plan_for(Dtype::Bf16, DeclaredPlan::Fla), RoundingPlan::kernel_default(Dtype::Bf16));
/// let tc = plan_for(Dtype::Bf16, DeclaredPlan::TensorCore);
/// assert_eq!((tc.offdiag_q, tc.offdiag_k, tc.da), (Some(Dtype::Bf16), Some(Dtype::Bf16), Some(Dtype::Bf16)));
/// assert!(plan_for(Dtype::F32, DeclaredPlan::TensorCore).is_none());
/// let tf = plan_for(Dtype::Tf32Rz, DeclaredPlan::Fla);
/// assert_eq!((tf.v, tf.da, tf.o), (Some(Dtype::Tf32Rz), Some(Dtype::Tf32Rz), None));
/// ```
pub fn plan_for(precision: Dtype, decl: DeclaredPlan) -> RoundingPlan {
    if matches!(precision, Dtype::F64 | Dtype::F32) {
        return RoundingPlan::none();
    }
    if matches!(precision, Dtype::Tf32 | Dtype::Tf32Rz) {
        // An f32 kernel whose products run on tensor cores: every product operand is rounded to
        // TF32 (to nearest for `tf32`, toward zero for `tf32-rz`), inputs and outputs stay f32,
        // so both declared plans are this one. Triton's default `tl.dot` on fp32 inputs does
        // this to every operand of fla's chunk_gla (the factors of A's off-diagonal blocks, v,
        // do, the stored states and state gradients, dA), by truncation (`tf32-rz`).
        let t = Some(precision);
        return RoundingPlan::none()
            .q_decay(t)
            .k_decay(t)
            .v(t)
            .state(t)
            .a(t)
            .offdiag_q(t)
            .offdiag_k(t)
            .do_(t)
            .bwd_state(t)
            .dstate(t)
            .da(t);
    }
    let p = Some(precision);
    match decl {
        DeclaredPlan::Fla => RoundingPlan::kernel_default(precision),
        DeclaredPlan::TensorCore => RoundingPlan::kernel_default(precision)
            .offdiag_q(p)
            .offdiag_k(p)
            .da(p),
    }
}

/// The training plan of a low precision: [`plan_for`] plus the backward's stored states and
/// state gradients in that precision (what fla's and glacheck's bf16 / f16 training kernels
/// store); `None` for f32, f64 and tf32.
pub fn training_plan_for(precision: Dtype, decl: DeclaredPlan) -> Option<RoundingPlan> {
    matches!(precision, Dtype::Bf16 | Dtype::F16).then(|| {
        plan_for(precision, decl)
            .bwd_state(Some(precision))
            .dstate(Some(precision))
    })
}

/// The honest implementations of the arithmetic `precision` (rounding plan `decl`) with chunk
/// length `chunk`: the chunked form with the precision's plan, for bf16 / f16 also with the
/// training plan ([`training_plan_for`]: both are correct kernels of the declared arithmetic, and
/// the baseline is the worst of them; with [`DeclaredPlan::TensorCore`] also the training plan
/// without `dA`'s rounding: rounding `dA` makes dq and dk up to 2.5x less accurate, while not
/// rounding it leaves f32 noise where dg's reverse sum cancels, which the rounded `dA` cancels
/// exactly; both are honest), and for f32 / f64 the recurrent form.
pub fn honest_set(precision: Dtype, chunk: usize, decl: DeclaredPlan) -> Vec<Honest> {
    let compute = accumulation(precision);
    let chunked = |plan| Honest::Chunked {
        compute,
        opts: ChunkOptions {
            chunk,
            sub_chunk: sub_chunk_for(chunk),
            plan,
        },
    };
    let mut v = vec![chunked(plan_for(precision, decl))];
    if let Some(plan) = training_plan_for(precision, decl) {
        v.push(chunked(plan));
        if plan.da.is_some() {
            // dA as two 16-bit tensor-core terms (glacheck's GPU kernels): no dA rounding, which
            // is more accurate for dq and dk but leaves f32 noise where dg's reverse sum cancels
            // (rounded dA makes those terms cancel exactly)
            v.push(chunked(plan.da(None)));
        }
    }
    if matches!(precision, Dtype::F64 | Dtype::F32) {
        v.push(Honest::Recurrent { compute });
    }
    v
}

/// Error of a tensor against the truth.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrStats {
    /// `max |x - x*|` (inf when `x` is non-finite where `x*` is finite).
    pub max: f64,
    /// `sqrt(mean (x - x*)^2)` over the same elements (inf likewise).
    pub rms: f64,
    /// Elements compared (those with a finite truth).
    pub n: usize,
}

/// [`ErrStats`] of `x` against `exact` over the elements where `exact` is finite.
pub fn err_stats(x: &Array4<f64>, exact: &Array4<f64>) -> ErrStats {
    err_stats_of(x, exact, |a| a)
}

/// [`err_stats`] of `f(x)` (e.g. `x` rounded to a storage dtype) without materializing it.
pub fn err_stats_of(x: &Array4<f64>, exact: &Array4<f64>, f: impl Fn(f64) -> f64) -> ErrStats {
    let mut acc = ErrAcc::default();
    for (&a, &e) in x.iter().zip(exact.iter()) {
        acc.add(f(a), e);
    }
    acc.finish()
}

/// The running sums of [`err_stats`], one element at a time (so that one pass over a tensor can
/// feed several statistics; the same sums in the same order as [`err_stats`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ErrAcc {
    max: f64,
    sum2: f64,
    n: usize,
}

impl ErrAcc {
    /// Add the element `a` of truth `e` (skipped where `e` is not finite).
    #[inline(always)]
    pub(crate) fn add(&mut self, a: f64, e: f64) {
        if !e.is_finite() {
            return;
        }
        self.n += 1;
        let d = (a - e).abs();
        let d = if d.is_finite() { d } else { f64::INFINITY };
        self.max = self.max.max(d);
        self.sum2 += d * d;
    }

    pub(crate) fn finish(self) -> ErrStats {
        ErrStats {
            max: self.max,
            rms: if self.n == 0 {
                0.0
            } else {
                (self.sum2 / self.n as f64).sqrt()
            },
            n: self.n,
        }
    }
}

/// `(max, RMS)` of a magnitude tensor over the elements where `exact` is finite.
pub fn magnitude_scale(m: &Array4<f64>, exact: &Array4<f64>) -> (f64, f64) {
    let mut acc = MagAcc::default();
    for (&m, &e) in m.iter().zip(exact.iter()) {
        acc.add(m, e);
    }
    acc.finish()
}

/// The running sums of [`magnitude_scale`] (see [`ErrAcc`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MagAcc {
    max: f64,
    sum2: f64,
    n: usize,
}

impl MagAcc {
    /// Add the magnitude `m` of an element of truth `e`.
    #[inline(always)]
    pub(crate) fn add(&mut self, m: f64, e: f64) {
        if e.is_finite() && m.is_finite() {
            self.max = self.max.max(m);
            self.sum2 += m * m;
            self.n += 1;
        }
    }

    pub(crate) fn finish(self) -> (f64, f64) {
        (
            self.max,
            if self.n == 0 {
                0.0
            } else {
                (self.sum2 / self.n as f64).sqrt()
            },
        )
    }
}

/// One honest implementation's statistics on one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct HonestStats {
    /// The honest implementation's name.
    pub name: String,
    /// Its error against the truth, its results rounded to the candidate's stored dtype.
    pub err: ErrStats,
    /// `|beta|` of that error (the bias test's statistic, `crate::bias`).
    pub beta: f64,
}

/// The honest implementations of a declared arithmetic on `p`, reduced one at a time to
/// per-tensor statistics against `exact` (each result rounded to `stored(tensor)` first) and
/// dropped: at training shapes one solution is gigabytes. Returns the names run and, for each
/// tensor of `tensors`, one [`HonestStats`] per implementation that computes it.
#[allow(clippy::too_many_arguments)]
pub fn honest_stats(
    p: &Problem,
    precision: Dtype,
    decl: DeclaredPlan,
    chunk: usize,
    dg: DgForm,
    backward: bool,
    exact: &Solution,
    tensors: &[(String, Dtype)],
) -> Result<(Vec<String>, Vec<Vec<HonestStats>>)> {
    use rayon::prelude::*;
    // The training plans (stored states and state gradients rounded) differ from the
    // precision's plan in the backward only.
    let mut names = Vec::new();
    let mut out = vec![Vec::new(); tensors.len()];
    for h in honest_set(precision, chunk, decl).into_iter().filter(|h| {
        backward || !matches!(h, Honest::Chunked { opts, .. } if opts.plan.dstate.is_some())
    }) {
        let name = h.name();
        let s = h.solve(p, backward, dg)?;
        let per: Vec<Option<HonestStats>> = tensors
            .par_iter()
            .map(|(t, st)| {
                let (Some(x), Some(e)) = (s.tensor(t), exact.tensor(t)) else {
                    return None;
                };
                // One pass for both statistics (`err_stats_of` and `bias::stats_of` of the
                // rounded result, the same sums).
                let (mut err, mut bias) = (ErrAcc::default(), crate::bias::BiasAcc::default());
                for_pairs(x, e, |a, e| {
                    let a = st.round(a);
                    err.add(a, e);
                    bias.add(a, e);
                });
                Some(HonestStats {
                    name: name.clone(),
                    err: err.finish(),
                    beta: bias.finish().1.abs(),
                })
            })
            .collect();
        for (o, x) in out.iter_mut().zip(per) {
            o.extend(x);
        }
        names.push(name);
    }
    Ok((names, out))
}

/// Call `f(x_i, y_i)` for the elements of two arrays of one shape, in order (over flat slices
/// where both are contiguous).
#[inline(always)]
pub(crate) fn for_pairs(x: &Array4<f64>, y: &Array4<f64>, mut f: impl FnMut(f64, f64)) {
    match (x.as_slice(), y.as_slice()) {
        (Some(xs), Some(ys)) if x.shape() == y.shape() => {
            for (&a, &b) in xs.iter().zip(ys) {
                f(a, b);
            }
        }
        _ => {
            for (&a, &b) in x.iter().zip(y.iter()) {
                f(a, b);
            }
        }
    }
}

/// The baseline verdict on one tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorBaseline {
    /// Output name.
    pub name: String,
    /// The candidate's error.
    pub candidate: ErrStats,
    /// Worst `max |x_h - x*|` over the honest set (`None` when no honest result is finite where
    /// the truth is: the rule is then not applied).
    pub base_max: Option<f64>,
    /// Worst `RMS(x_h - x*)` over the honest set.
    pub base_rms: Option<f64>,
    /// The honest implementation attaining `base_max`.
    pub max_by: String,
    /// The honest implementation attaining `base_rms`.
    pub rms_by: String,
    /// `u_acc sqrt(n_acc + lambda) max(M_x)`.
    pub floor_max: f64,
    /// `u_acc sqrt(n_acc + lambda) RMS(M_x)`.
    pub floor_rms: f64,
    /// `candidate.max <= BASELINE_FACTOR * base_max + floor_max` (true when no baseline).
    pub pass_max: bool,
    /// `candidate.rms <= BASELINE_FACTOR * base_rms + floor_rms` (true when no baseline).
    pub pass_rms: bool,
}

impl TensorBaseline {
    /// Both halves of the rule hold.
    pub fn pass(&self) -> bool {
        self.pass_max && self.pass_rms
    }
    /// `candidate.max / base_max` (`None` without a baseline; inf when the baseline is exact
    /// and the candidate is not).
    pub fn max_ratio(&self) -> Option<f64> {
        self.base_max.map(|b| ratio(self.candidate.max, b))
    }
    /// `candidate.rms / base_rms`.
    pub fn rms_ratio(&self) -> Option<f64> {
        self.base_rms.map(|b| ratio(self.candidate.rms, b))
    }
}

fn ratio(a: f64, b: f64) -> f64 {
    if a == 0.0 {
        0.0
    } else if b == 0.0 {
        f64::INFINITY
    } else {
        a / b
    }
}

/// Judge one tensor: the candidate `x` against `exact`, with the honest implementations' errors
/// `honest` ([`honest_stats`]), the judging magnitude `m` and the floor's unit `floor_unit`
/// (`u_acc sqrt(n_acc + lambda)`, module docs: the floors are `floor_unit max(M)` and
/// `floor_unit RMS(M)`).
pub fn judge_tensor(
    name: &str,
    x: &Array4<f64>,
    exact: &Array4<f64>,
    m: &Array4<f64>,
    honest: &[HonestStats],
    floor_unit: f64,
) -> TensorBaseline {
    judge_stats(
        name,
        err_stats(x, exact),
        magnitude_scale(m, exact),
        honest,
        floor_unit,
    )
}

/// [`judge_tensor`] from the candidate's error statistics and the magnitude's `(max, RMS)`
/// ([`magnitude_scale`]).
pub(crate) fn judge_stats(
    name: &str,
    candidate: ErrStats,
    (mmax, mrms): (f64, f64),
    honest: &[HonestStats],
    floor_unit: f64,
) -> TensorBaseline {
    let (mut base_max, mut base_rms) = (None::<f64>, None::<f64>);
    let (mut max_by, mut rms_by) = (String::new(), String::new());
    for h in honest {
        let (hname, s) = (&h.name, h.err);
        if !(s.max.is_finite() && s.rms.is_finite()) {
            continue;
        }
        if base_max.is_none_or(|b| s.max > b) {
            base_max = Some(s.max);
            max_by = hname.to_string();
        }
        if base_rms.is_none_or(|b| s.rms > b) {
            base_rms = Some(s.rms);
            rms_by = hname.to_string();
        }
    }
    let (floor_max, floor_rms) = (floor_unit * mmax, floor_unit * mrms);
    let pass_max = base_max.is_none_or(|b| candidate.max <= BASELINE_FACTOR * b + floor_max);
    let pass_rms = base_rms.is_none_or(|b| candidate.rms <= BASELINE_FACTOR * b + floor_rms);
    TensorBaseline {
        name: name.to_string(),
        candidate,
        base_max,
        base_rms,
        max_by,
        rms_by,
        floor_max,
        floor_rms,
        pass_max,
        pass_rms,
    }
}
