//! The candidate implementations the harness and the CLI iterate over.
//!
//! The oracle is not a candidate: it is the truth every candidate is judged against.
//!
//! Input rounding (spec section 8: "compare against the oracle on the SAME already-rounded
//! inputs") happens in one place, [`Implementation::prepare`]: it rounds every input of the
//! problem to the candidate's input dtype ([`Implementation::input_dtype`]: f32 for f32 compute,
//! bf16 / f16 for rounded plans and GPU kernels, nothing for f64). [`solve`] calls it itself, so
//! `solve` always consumes the rounded values, and the harness hands the same prepared problem to
//! the oracle, so candidate and truth see identical inputs. Rounding is idempotent: preparing an
//! already prepared problem changes nothing.

use gla_reference::bounds::{Algorithm, BoundSpec, DgForm};
use gla_reference::chunked::{self, ChunkOptions};
use gla_reference::rounding::RoundingPlan;
use gla_reference::{parallel, recurrent, Dtype, GlaError, Problem, Result, Solution};
use std::borrow::Cow;
use std::fmt;

/// Compute (accumulation) type of a CPU form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Compute {
    /// f32 arithmetic.
    F32,
    /// f64 arithmetic.
    F64,
}

impl Compute {
    /// The dtype.
    pub fn dtype(self) -> Dtype {
        match self {
            Compute::F32 => Dtype::F32,
            Compute::F64 => Dtype::F64,
        }
    }
}

/// Which rounding plan a chunked candidate follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Round {
    /// No rounding: the plain compute-type algorithm.
    None,
    /// [`RoundingPlan::kernel_default`]`(Bf16)`, inputs pre-rounded to bf16.
    Bf16,
    /// [`RoundingPlan::kernel_default`]`(F16)`, inputs pre-rounded to f16.
    F16,
    /// The training plan of the GPU kernels in bf16: [`RoundingPlan::kernel_default`]`(Bf16)`
    /// plus the backward's stored chunk states and state gradients in bf16
    /// (`gla_gpu::backward_rounding_plan`; the twin of the GPU bf16 candidate).
    Bf16Train,
    /// The same in f16.
    F16Train,
}

impl Round {
    /// The rounding plan.
    pub fn plan(self) -> RoundingPlan {
        match self {
            Round::None => RoundingPlan::none(),
            Round::Bf16 => RoundingPlan::kernel_default(Dtype::Bf16),
            Round::F16 => RoundingPlan::kernel_default(Dtype::F16),
            Round::Bf16Train => crate::gpu::plan(Dtype::Bf16),
            Round::F16Train => crate::gpu::plan(Dtype::F16),
        }
    }
    /// The input dtype of the plan (`None`: the compute type's).
    pub fn dtype(self) -> Option<Dtype> {
        match self {
            Round::None => None,
            Round::Bf16 | Round::Bf16Train => Some(Dtype::Bf16),
            Round::F16 | Round::F16Train => Some(Dtype::F16),
        }
    }
}

/// A candidate implementation of GLA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Implementation {
    /// `gla_reference::recurrent` with the given dg algorithm.
    Recurrent {
        /// Compute type.
        compute: Compute,
        /// Gate-gradient algorithm (`backward_with`).
        dg: DgFormKey,
    },
    /// `gla_reference::parallel` (global-cumsum log-space form).
    Parallel {
        /// Compute type.
        compute: Compute,
    },
    /// `gla_reference::chunked`.
    Chunked {
        /// Compute type.
        compute: Compute,
        /// Chunk size C.
        chunk: usize,
        /// Sub-chunk size c.
        sub_chunk: usize,
        /// Rounding plan.
        round: Round,
        /// Gate-gradient algorithm (`chunked::backward_with`).
        dg: DgFormKey,
    },
    /// `gla_gpu` kernels with inputs in `dtype`.
    Gpu {
        /// Input dtype of the kernels.
        dtype: Dtype,
        /// Gate-gradient algorithm of the backward kernels (`GpuOptions::dg_form`).
        dg: DgFormKey,
    },
}

/// [`DgForm`] with `Ord` (so implementations can key ordered maps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DgFormKey {
    /// Reverse cumsum (the kernels' algorithm).
    ReverseCumsum,
    /// Local form `alpha_t * rowsum(S_{t-1} * dS_t)`.
    Local,
}

impl DgFormKey {
    /// Name suffix: `""` or `"-dglocal"`.
    pub fn suffix(self) -> &'static str {
        match self {
            DgFormKey::ReverseCumsum => "",
            DgFormKey::Local => "-dglocal",
        }
    }

    /// The bounds crate's enum.
    pub fn form(self) -> DgForm {
        match self {
            DgFormKey::ReverseCumsum => DgForm::ReverseCumsum,
            DgFormKey::Local => DgForm::Local,
        }
    }
}

impl fmt::Display for Implementation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl Implementation {
    /// The f32 recurrence (reverse-cumsum dg).
    pub const RECURRENT_F32: Implementation = Implementation::Recurrent {
        compute: Compute::F32,
        dg: DgFormKey::ReverseCumsum,
    };
    /// The f64 recurrence (reverse-cumsum dg).
    pub const RECURRENT_F64: Implementation = Implementation::Recurrent {
        compute: Compute::F64,
        dg: DgFormKey::ReverseCumsum,
    };

    /// A chunked candidate without rounding.
    pub const fn chunked(compute: Compute, chunk: usize, sub_chunk: usize) -> Implementation {
        Implementation::Chunked {
            compute,
            chunk,
            sub_chunk,
            round: Round::None,
            dg: DgFormKey::ReverseCumsum,
        }
    }

    /// A GPU candidate with the reverse-sum dg.
    pub const fn gpu(dtype: Dtype) -> Implementation {
        Implementation::Gpu {
            dtype,
            dg: DgFormKey::ReverseCumsum,
        }
    }

    /// The same candidate with the local-form dg (recurrent, chunked and GPU; others unchanged).
    #[must_use]
    pub fn with_local_dg(mut self) -> Implementation {
        match &mut self {
            Implementation::Recurrent { dg, .. }
            | Implementation::Chunked { dg, .. }
            | Implementation::Gpu { dg, .. } => *dg = DgFormKey::Local,
            Implementation::Parallel { .. } => {}
        }
        self
    }

    /// Every CPU candidate, in table order: recurrent f32 / f32-local-dg / f64, parallel f32 / f64,
    /// chunked f32 and f64 at fla's (64, 16) and at a small (16, 4), chunked f32 (64, 16) with the
    /// bf16 and the f16 kernel plan, chunked f32 (64, 16) with the local-form dg.
    ///
    /// ```
    /// use gla_proptests::Implementation;
    /// let all = Implementation::all_cpu();
    /// assert!(all.iter().any(|i| i.name() == "chunked-f32-C64c16-bf16"));
    /// assert!(all.iter().all(|i| !i.is_gpu()));
    /// ```
    pub fn all_cpu() -> Vec<Implementation> {
        use Compute::*;
        vec![
            Implementation::RECURRENT_F32,
            Implementation::Recurrent {
                compute: F32,
                dg: DgFormKey::Local,
            },
            Implementation::RECURRENT_F64,
            Implementation::Parallel { compute: F32 },
            Implementation::Parallel { compute: F64 },
            Implementation::chunked(F32, 64, 16),
            Implementation::chunked(F64, 64, 16),
            Implementation::chunked(F32, 16, 4),
            Implementation::chunked(F64, 16, 4),
            Implementation::Chunked {
                compute: F32,
                chunk: 64,
                sub_chunk: 16,
                round: Round::Bf16,
                dg: DgFormKey::ReverseCumsum,
            },
            Implementation::Chunked {
                compute: F32,
                chunk: 64,
                sub_chunk: 16,
                round: Round::F16,
                dg: DgFormKey::ReverseCumsum,
            },
            Implementation::chunked(F32, 64, 16).with_local_dg(),
        ]
    }

    /// [`all_cpu`](Self::all_cpu) plus the GPU candidates when a GPU is usable.
    pub fn all_available() -> Vec<Implementation> {
        let mut v = Self::all_cpu();
        if crate::gpu::available() {
            v.extend(crate::gpu::candidates());
        }
        v
    }

    /// Stable name used in tables and on the command line, e.g. `recurrent-f32`,
    /// `chunked-f32-C64c16-bf16`, `gpu-bf16`.
    pub fn name(&self) -> String {
        match *self {
            Implementation::Recurrent { compute, dg } => {
                format!("recurrent-{}{}", compute.dtype(), dg.suffix())
            }
            Implementation::Parallel { compute } => format!("parallel-{}", compute.dtype()),
            Implementation::Chunked {
                compute,
                chunk,
                sub_chunk,
                round,
                dg,
            } => format!(
                "chunked-{}-C{chunk}c{sub_chunk}{}{}",
                compute.dtype(),
                match (round, round.dtype()) {
                    (Round::Bf16Train | Round::F16Train, Some(d)) => format!("-{d}-train"),
                    (_, Some(d)) => format!("-{d}"),
                    (_, None) => String::new(),
                },
                dg.suffix()
            ),
            Implementation::Gpu { dtype, dg } => format!("gpu-{dtype}{}", dg.suffix()),
        }
    }

    /// Parse a name produced by [`name`](Self::name).
    pub fn from_name(name: &str) -> Option<Implementation> {
        Self::all_cpu()
            .into_iter()
            .chain(crate::gpu::candidates())
            .find(|i| i.name() == name)
    }

    /// True when the candidate computes gradients (every candidate, the GPU kernels included).
    /// Properties run `solve(imp, p, imp.supports_backward())`.
    pub fn supports_backward(&self) -> bool {
        true
    }

    /// True for GPU candidates.
    pub fn is_gpu(&self) -> bool {
        matches!(self, Implementation::Gpu { .. })
    }

    /// The dtype the inputs are rounded to before this candidate (and the oracle judging it)
    /// consumes them.
    pub fn input_dtype(&self) -> Dtype {
        match *self {
            Implementation::Recurrent { compute, .. } | Implementation::Parallel { compute } => {
                compute.dtype()
            }
            Implementation::Chunked { compute, round, .. } => {
                round.dtype().unwrap_or(compute.dtype())
            }
            Implementation::Gpu { dtype, .. } => dtype,
        }
    }

    /// Chunk size of a chunked (or GPU) candidate.
    pub fn chunk(&self) -> Option<usize> {
        match *self {
            Implementation::Chunked { chunk, .. } => Some(chunk),
            Implementation::Gpu { .. } => Some(64),
            _ => None,
        }
    }

    /// The problem this candidate consumes: every input rounded to [`input_dtype`](Self::input_dtype)
    /// (borrowed unchanged for f64 and when already representable).
    ///
    /// Errors when an input overflows the format (e.g. |x| > 65504 for f16): the candidate does not
    /// apply to that problem.
    pub fn prepare<'a>(&self, p: &'a Problem) -> Result<Cow<'a, Problem>> {
        let d = self.input_dtype();
        if d == Dtype::F64 {
            return Ok(Cow::Borrowed(p));
        }
        if self.is_gpu() && !crate::gpu::available() {
            return Err(unsupported("no usable GPU on this machine"));
        }
        let r = p.rounded_to(d)?;
        let r = if r == *p {
            Cow::Borrowed(p)
        } else {
            Cow::Owned(r)
        };
        if d == Dtype::F16 {
            f16_range_ok(&r)?;
        }
        if let Implementation::Gpu { dtype, .. } = *self {
            crate::gpu::check_supported(dtype, &r)?;
        }
        Ok(r)
    }

    fn chunk_options(&self) -> Option<ChunkOptions> {
        match *self {
            Implementation::Chunked {
                chunk,
                sub_chunk,
                round,
                ..
            } => Some(ChunkOptions {
                chunk,
                sub_chunk,
                plan: round.plan(),
            }),
            _ => None,
        }
    }

    /// The rounding plan this candidate follows (GPU: the plan its CPU twin uses).
    pub fn plan(&self) -> RoundingPlan {
        match *self {
            Implementation::Chunked { round, .. } => round.plan(),
            Implementation::Gpu { dtype, .. } => crate::gpu::plan(dtype),
            _ => RoundingPlan::none(),
        }
    }

    /// The CPU twin of a GPU candidate (the chunked f32 form with the same plan).
    pub fn cpu_twin(&self) -> Option<Implementation> {
        match *self {
            Implementation::Gpu { dtype, dg } => Some(Implementation::Chunked {
                compute: Compute::F32,
                chunk: 64,
                sub_chunk: 16,
                round: match dtype {
                    Dtype::Bf16 => Round::Bf16Train,
                    Dtype::F16 => Round::F16Train,
                    _ => Round::None,
                },
                dg,
                // (the GPU's f32 path rounds nothing: its twin is the plain chunked f32 form)
            }),
            _ => None,
        }
    }
}

/// Run a candidate: forward (`backward = false`: o, ht) or forward + backward (all outputs).
///
/// The problem's inputs are first rounded to the candidate's input dtype
/// ([`Implementation::prepare`]). Errors: the candidate's own typed errors (e.g. no `do` for the
/// backward), an input that overflows the candidate's input format, or a GPU failure
/// ([`GlaError::Unsupported`] with the GPU's message).
///
/// ```
/// use gla_proptests::{solve, Implementation};
/// use gla_proptests::strategies::{GateRegime, ProblemSpec, ValueRegime};
/// use gla_reference::{Dtype, GateKind};
/// let spec = ProblemSpec { b: 1, t: 20, h: 1, k: 3, v: 2, gate_kind: GateKind::PerChannel,
///     gates: GateRegime::Mild, values: ValueRegime::SignedNormal, h0: true, dht: false,
///     seq_lens: None, scale: None, grid: Dtype::F32, seed: 7 };
/// let p = spec.build()?;
/// let s = solve(&Implementation::RECURRENT_F32, &p, true)?;
/// assert!(s.grads.is_some());
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn solve(imp: &Implementation, p: &Problem, backward: bool) -> Result<Solution> {
    let p = imp.prepare(p)?;
    let p = p.as_ref();
    match *imp {
        Implementation::Recurrent { compute, dg } => match (compute, backward) {
            (Compute::F32, false) => recurrent::forward::<f32>(p),
            (Compute::F64, false) => recurrent::forward::<f64>(p),
            (Compute::F32, true) => recurrent::backward_with::<f32>(p, dg.form()),
            (Compute::F64, true) => recurrent::backward_with::<f64>(p, dg.form()),
        },
        Implementation::Parallel { compute } => match (compute, backward) {
            (Compute::F32, false) => parallel::forward::<f32>(p),
            (Compute::F64, false) => parallel::forward::<f64>(p),
            (Compute::F32, true) => parallel::backward::<f32>(p),
            (Compute::F64, true) => parallel::backward::<f64>(p),
        },
        Implementation::Chunked { compute, dg, .. } => {
            let o = imp.chunk_options().expect("chunked");
            match (compute, backward) {
                (Compute::F32, false) => chunked::forward::<f32>(p, &o),
                (Compute::F64, false) => chunked::forward::<f64>(p, &o),
                (Compute::F32, true) => chunked::backward_with::<f32>(p, &o, dg.form()),
                (Compute::F64, true) => chunked::backward_with::<f64>(p, &o, dg.form()),
            }
        }
        Implementation::Gpu { dtype, dg } => crate::gpu::solve(dtype, dg.form(), p, backward),
    }
}

/// The error model judging a candidate's gradients (and, for forms without rounding stages, its
/// forward outputs): algorithm family (n_acc, lambda), rounding stages (all of the plan's points,
/// since the backward recomputes the forward factors), accumulation format, and the dg algorithm
/// the candidate runs (recurrent: as configured; parallel, chunked and GPU: reverse cumsum).
pub fn bound_spec(imp: &Implementation, _p: &Problem) -> BoundSpec {
    spec_with_stages(imp, stages(&imp.plan(), true))
}

/// The error model judging a candidate's forward outputs o and hT: like [`bound_spec`] but with
/// only the forward rounding points of the plan as stages.
pub fn bound_spec_forward(imp: &Implementation, _p: &Problem) -> BoundSpec {
    spec_with_stages(imp, stages(&imp.plan(), false))
}

fn stages(plan: &RoundingPlan, backward: bool) -> Vec<Dtype> {
    let pts = plan.points();
    let n = if backward { pts.len() } else { 9 };
    pts[..n]
        .iter()
        .filter_map(|(_, d)| *d)
        .filter(|d| !matches!(d, Dtype::F32 | Dtype::F64))
        .collect()
}

fn spec_with_stages(imp: &Implementation, stages: Vec<Dtype>) -> BoundSpec {
    let (alg, acc, dg) = match *imp {
        Implementation::Recurrent { compute, dg } => {
            (Algorithm::Recurrent, compute.dtype(), dg.form())
        }
        Implementation::Parallel { compute } => {
            (Algorithm::Parallel, compute.dtype(), DgForm::ReverseCumsum)
        }
        Implementation::Chunked {
            compute, chunk, dg, ..
        } => (Algorithm::Chunked { chunk }, compute.dtype(), dg.form()),
        Implementation::Gpu { dg, .. } => (Algorithm::Chunked { chunk: 64 }, Dtype::F32, dg.form()),
    };
    BoundSpec::new(alg, acc)
        .with_stages(&stages)
        .with_dg_form(dg)
}

/// An f16 plan stores inputs, decayed queries and keys, chunk states, `A`, outputs and gradients
/// in f16; it can only be exact-in-the-limit when none of those can exceed f16's largest value
/// (65504). With the anchored algorithm every stored value is bounded by a magnitude: decayed
/// q, k by |q|, |k|; states by `max|h0| + T max|k| max|v|`; `A` by `|scale| K max|q| max|k|`;
/// outputs and gradients by their condition magnitudes `M_x` (`M_dg_local` for dg, which bounds
/// |dg| whichever algorithm computes it). Problems where any of these reaches 65504 / 2 are
/// outside the f16 plan's domain (an f16 kernel overflows there, spec F3): the candidate does not
/// apply ([`GlaError::Unsupported`]).
pub fn f16_range_ok(p: &Problem) -> Result<()> {
    let amax = |a: Option<&ndarray::Array4<f64>>| {
        a.map_or(0.0, |a| a.iter().fold(0.0f64, |m, x| m.max(x.abs())))
    };
    let (mq, mk, mv) = (amax(Some(p.q())), amax(Some(p.k())), amax(Some(p.v())));
    let (mh0, mdo, mdht) = (amax(p.h0()), amax(p.do_()), amax(p.dht()));
    let d = p.dims();
    let t = p.max_seq_len() as f64;
    let sc = p.scale().abs();
    let mut worst = [
        ("state", mh0 + t * mk * mv),
        ("state gradient", mdht + t * sc * mq * mdo),
        ("A", sc * d.k as f64 * mq * mk),
    ]
    .iter()
    .fold(("", 0.0f64), |w, &(n, x)| if x > w.1 { (n, x) } else { w });
    let m = gla_reference::bounds::magnitudes(p);
    for name in ["o", "ht", "dq", "dk", "dv", "dh0", "dg_local"] {
        let x = amax(m.tensor(name));
        if x > worst.1 {
            worst = (name, x);
        }
    }
    if worst.1 >= 65504.0 / 2.0 {
        return Err(GlaError::Unsupported(format!(
            "f16 plan: {} can reach {:e}, beyond half of f16's largest value 65504",
            worst.0, worst.1
        )));
    }
    Ok(())
}

/// Map any error to the crate's error type (used for GPU errors).
pub(crate) fn unsupported(msg: impl fmt::Display) -> GlaError {
    GlaError::Unsupported(msg.to_string())
}
