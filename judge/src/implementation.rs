//! The candidate implementations the harness and the CLI iterate over.
//!
//! The oracle is not a candidate: it is the truth every candidate is judged against.
//!
//! Input rounding (docs/math.md §8: "compare against the oracle on the SAME already-rounded
//! inputs") happens in one place, [`Implementation::prepare`]: it rounds every input of the
//! problem to the candidate's input dtype ([`Implementation::input_dtype`]: f32 for f32 compute,
//! bf16 / f16 for rounded plans and GPU kernels, nothing for f64). [`solve`] calls it itself, so
//! `solve` always consumes the rounded values, and the harness hands the same prepared problem to
//! the oracle, so candidate and truth see identical inputs. Rounding is idempotent: preparing an
//! already prepared problem changes nothing.

use gla_reference::bounds::{Algorithm, BoundSpec, DgForm, Pass};
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

impl std::str::FromStr for Compute {
    type Err = GlaError;
    /// `f32` or `f64`.
    fn from_str(s: &str) -> Result<Compute> {
        match s {
            "f32" => Ok(Compute::F32),
            "f64" => Ok(Compute::F64),
            _ => Err(GlaError::Options(format!(
                "compute type `{s}` is not supported (use f32 or f64)"
            ))),
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
    /// The training plan of the GPU kernels in bf16 (`gla_gpu::backward_rounding_plan`; the twin
    /// of the GPU bf16 candidate): [`RoundingPlan::kernel_default`]`(Bf16)` plus the tensor-core
    /// operands the kernels round: `A`'s off-diagonal factors and the backward's stored chunk
    /// states and state gradients (`dA` enters their tensor-core products as two 16-bit terms,
    /// not rounded).
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
    /// The kernel plan of inputs in `dtype` (`--round` on the command line): `None` for no
    /// rounding, fla's kernel plan for bf16 and f16.
    ///
    /// ```
    /// use gla_judge::Round;
    /// use gla_reference::Dtype;
    /// assert_eq!(Round::for_dtype(Some(Dtype::Bf16))?, Round::Bf16);
    /// assert!(Round::for_dtype(Some(Dtype::Tf32)).is_err());
    /// # Ok::<(), gla_reference::GlaError>(())
    /// ```
    pub fn for_dtype(dtype: Option<Dtype>) -> Result<Round> {
        match dtype {
            None => Ok(Round::None),
            Some(Dtype::Bf16) => Ok(Round::Bf16),
            Some(Dtype::F16) => Ok(Round::F16),
            Some(d) => Err(GlaError::Options(format!(
                "rounding to {d} is not supported (use bf16 or f16)"
            ))),
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

impl From<DgForm> for DgFormKey {
    fn from(f: DgForm) -> DgFormKey {
        match f {
            DgForm::ReverseCumsum => DgFormKey::ReverseCumsum,
            DgForm::Local => DgFormKey::Local,
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
    /// use gla_judge::Implementation;
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
            v.extend(Self::gpu_candidates());
        }
        v
    }

    /// The GPU candidates (whether or not a GPU is present): one per input dtype the kernels
    /// take (reverse-cumsum dg), and bf16 with the local-form dg.
    pub fn gpu_candidates() -> Vec<Implementation> {
        vec![
            Implementation::gpu(Dtype::Bf16),
            Implementation::gpu(Dtype::F16),
            Implementation::gpu(Dtype::F32),
            Implementation::gpu(Dtype::Bf16).with_local_dg(),
        ]
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
            .chain(Self::gpu_candidates())
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
            return Err(GlaError::Unsupported(
                "no usable GPU on this machine".into(),
            ));
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

/// A form of GLA as a user names it (`--impl` of `glacheck eval` and `sweep`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Form {
    /// The recurrence (`gla_reference::recurrent`).
    Recurrent,
    /// The log-space parallel form (`gla_reference::parallel`).
    Parallel,
    /// The two-level chunked form with rounding emulation (`gla_reference::chunked`).
    Chunked,
    /// The CUDA chunked kernels (`gla_gpu`).
    Gpu,
}

impl Form {
    /// Lower-case name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Form::Recurrent => "recurrent",
            Form::Parallel => "parallel",
            Form::Chunked => "chunked",
            Form::Gpu => "gpu",
        }
    }
}

impl std::str::FromStr for Form {
    type Err = GlaError;
    fn from_str(s: &str) -> Result<Form> {
        match s {
            "recurrent" => Ok(Form::Recurrent),
            "parallel" => Ok(Form::Parallel),
            "chunked" => Ok(Form::Chunked),
            "gpu" => Ok(Form::Gpu),
            _ => Err(GlaError::Options(format!(
                "unknown implementation `{s}` (expected recurrent, parallel, chunked or gpu)"
            ))),
        }
    }
}

/// An implementation as a user configures it: form, compute type, rounding plan (chunked) or
/// input dtype (gpu), chunking and dg algorithm. [`Config::implementation`] checks the
/// combination and names the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Which form.
    pub form: Form,
    /// Compute type.
    pub compute: Compute,
    /// Chunked: fla's kernel rounding plan in this dtype (bf16 or f16; inputs rounded to it
    /// first); gpu: the kernels' input dtype (`None`: f32).
    pub round: Option<Dtype>,
    /// Chunk length C (chunked).
    pub chunk: usize,
    /// Sub-chunk length c (chunked).
    pub sub_chunk: usize,
    /// Gate-gradient algorithm (recurrent, chunked, gpu; the parallel form has only the reverse
    /// cumsum).
    pub dg: DgForm,
}

impl Config {
    /// The candidate this configuration names.
    ///
    /// ```
    /// use gla_judge::implementation::{Config, Form};
    /// use gla_judge::Compute;
    /// use gla_reference::{bounds::DgForm, Dtype};
    /// let c = Config { form: Form::Chunked, compute: Compute::F32, round: Some(Dtype::Bf16),
    ///     chunk: 64, sub_chunk: 16, dg: DgForm::ReverseCumsum };
    /// assert_eq!(c.implementation()?.name(), "chunked-f32-C64c16-bf16");
    /// let bad = Config { form: Form::Parallel, dg: DgForm::Local, ..c };
    /// assert!(bad.implementation().is_err());
    /// # Ok::<(), gla_reference::GlaError>(())
    /// ```
    pub fn implementation(&self) -> Result<Implementation> {
        let compute = self.compute;
        let round = Round::for_dtype(self.round)?;
        if self.dg == DgForm::Local && self.form == Form::Parallel {
            return Err(GlaError::Options(
                "--dg-form local: the parallel form computes dg by the reverse cumsum only".into(),
            ));
        }
        let imp = match self.form {
            Form::Recurrent => Implementation::Recurrent {
                compute,
                dg: DgFormKey::ReverseCumsum,
            },
            Form::Parallel => Implementation::Parallel { compute },
            Form::Chunked => Implementation::Chunked {
                compute,
                chunk: self.chunk,
                sub_chunk: self.sub_chunk,
                round,
                dg: DgFormKey::ReverseCumsum,
            },
            Form::Gpu => {
                let dtype = self.round.unwrap_or(Dtype::F32);
                let imp = Implementation::gpu(dtype);
                if !Implementation::gpu_candidates().contains(&imp) {
                    return Err(GlaError::Options(format!(
                        "gpu: no kernel for inputs in {dtype} (available: {:?})",
                        Implementation::gpu_candidates()
                            .iter()
                            .map(|i| i.name())
                            .collect::<Vec<_>>()
                    )));
                }
                imp
            }
        };
        Ok(if self.dg == DgForm::Local {
            imp.with_local_dg()
        } else {
            imp
        })
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
/// use gla_judge::{solve, Implementation};
/// use gla_reference::{Gates, Problem};
/// use ndarray::Array4;
/// let f = |i: usize| ((i * 7919) % 1000) as f64 / 500.0 - 1.0; // deterministic, signed
/// let (b, t, h, k, v) = (1, 20, 1, 3, 2);
/// let q = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| f(t * 31 + d));
/// let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| f(t * 17 + d + 3));
/// let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| f(t * 13 + e + 9));
/// let g = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| -f(t + d).abs());
/// let do_ = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| f(t * 3 + e + 1));
/// let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(do_).build()?;
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

/// The error model judging a candidate's gradients (and the `o`, `ht` of its backward run):
/// algorithm family (n_acc, lambda), every rounding point of its plan as a stage (the backward
/// recomputes the forward factors, [`Pass::Backward`]), accumulation format, and the dg algorithm
/// the candidate runs.
pub fn bound_spec(imp: &Implementation, _p: &Problem) -> BoundSpec {
    spec_for(imp, Pass::Backward)
}

/// The error model judging a candidate's forward outputs o and hT: like [`bound_spec`] but with
/// only the forward rounding points of the plan as stages ([`Pass::Forward`]).
pub fn bound_spec_forward(imp: &Implementation, _p: &Problem) -> BoundSpec {
    spec_for(imp, Pass::Forward)
}

fn spec_for(imp: &Implementation, pass: Pass) -> BoundSpec {
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
    BoundSpec::from_plan(alg, acc, &imp.plan(), pass).with_dg_form(dg)
}

/// An f16 plan stores inputs, decayed queries and keys, chunk states, `A`, outputs and gradients
/// in f16; it can only be exact-in-the-limit when none of those can exceed f16's largest value
/// (65504). With the anchored algorithm every stored value is bounded by a magnitude: decayed
/// q, k by |q|, |k|; states by `max|h0| + T max|k| max|v|`; `A` by `|scale| K max|q| max|k|`;
/// outputs and gradients by their condition magnitudes `M_x` (`M_dg_local` for dg, which bounds
/// |dg| whichever algorithm computes it). Problems where any of these reaches 65504 / 2 are
/// outside the f16 plan's domain (an f16 kernel overflows there, docs/math.md §7 F3): the candidate does not
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twins_follow_the_gpu_plans() {
        // pure data: needs no GPU
        for d in [Dtype::Bf16, Dtype::F16, Dtype::F32] {
            let gpu = Implementation::gpu(d);
            let twin = gpu.cpu_twin().expect("twin");
            assert_eq!(twin.plan(), gpu.plan(), "{d:?}");
            assert!(matches!(
                twin,
                Implementation::Chunked {
                    compute: Compute::F32,
                    ..
                }
            ));
            // the forward points of the backward plan are the forward kernels' plan, and the
            // bf16 / f16 training plans add exactly the off-diagonal factors and the backward's
            // stored states and state gradients to the forward twin's plan
            let fwd = gla_gpu::rounding_plan(&gla_gpu::GpuOptions::new(d));
            assert_eq!(
                crate::gpu::plan(d).points()[..9],
                fwd.points()[..9],
                "{d:?}"
            );
        }
        for (train, fwd, d) in [
            (Round::Bf16Train, Round::Bf16, Dtype::Bf16),
            (Round::F16Train, Round::F16, Dtype::F16),
        ] {
            let t = Some(d);
            assert_eq!(
                train.plan(),
                fwd.plan().offdiag_q(t).offdiag_k(t).bwd_state(t).dstate(t)
            );
            // the verdict's honest training baseline of the tensor-core plan is the GPU kernels'
            // plus the rounding of dA, which a declared tensor-core kernel charges (its dA is one
            // 16-bit operand) and glacheck's kernels avoid (two terms)
            assert_eq!(
                Some(train.plan().da(t)),
                crate::baseline::training_plan_for(d, crate::baseline::DeclaredPlan::TensorCore)
            );
            assert_eq!(train.dtype(), Some(d));
        }
    }

    #[test]
    fn names_round_trip() {
        for imp in Implementation::all_cpu()
            .into_iter()
            .chain(Implementation::gpu_candidates())
        {
            assert_eq!(Implementation::from_name(&imp.name()), Some(imp));
        }
        assert_eq!(Implementation::from_name("recurrent-f16"), None);
    }
}
