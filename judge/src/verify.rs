//! The judge of outside kernels: a candidate's outputs (from any kernel, any language, read from a
//! safetensors file) against the exact truth of the inputs it consumed.
//!
//! The error model (docs/math.md §8.1) is that of the chunked algorithm with chunk `C` (n_acc,
//! lambda) and its calibrated constants, accumulation in f32 (f64 for f64), and for tf32, bf16
//! and f16 the rounding stages of the declared plan (`--plan`: fla's kernel plan
//! `RoundingPlan::kernel_default` by default, or with the tensor-core operands of
//! [`DeclaredPlan::TensorCore`]), counted by the one plan-to-stages mapping `BoundSpec::from_plan`: forward outputs `o`, `ht` with the
//! forward points, gradients with all of them. A candidate stored in a dtype coarser than the
//! declared precision gets one more stage. A non-finite value where the truth is finite fails
//! whatever the ratio.
//!
//! Two empirical verdicts sit beside the derived bound (docs/math.md §8.2, "Verifier power"):
//! the baseline rule ([`crate::baseline`]: at most [`BASELINE_FACTOR`] times the max and RMS
//! error of glacheck's honest implementations of the declared arithmetic, plus a floor) and the
//! bias test ([`crate::bias`]). The bound proves a result wrong when exceeded; the empirical
//! verdicts reject results that are inside it yet clearly worse than, or biased against, an
//! honest implementation of the same arithmetic. A tensor fails on any of the three, unless
//! [`VerifyOptions::empirical`] is [`Empirical::Advisory`] (then the empirical verdicts only
//! warn).
//!
//! ```
//! use gla_judge::verify::{read_candidate, verify, Labels, VerifyOptions};
//! use gla_judge::Truth;
//! use gla_fixtures::io::{FileDtype, StoredTensor, TensorFile};
//! # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
//! let input = gla_fixtures::io::read_tensors(dir.join("mild.safetensors"))?;
//! let p = input.problem()?;
//! // A candidate: here the stored truth itself, rounded to bf16 (a perfect bf16 kernel).
//! let truth = Truth::stored(&input, &p, true)?.expect("a golden holds its truth");
//! let mut cand = TensorFile::default();
//! for (name, x) in [("o", &truth.solution.o), ("ht", &truth.solution.ht)] {
//!     let values = x.mapv(|v| gla_reference::Dtype::Bf16.round(v)).into_dyn();
//!     cand.tensors.insert(name.into(), StoredTensor { dtype: FileDtype::Bf16, values });
//! }
//! let c = read_candidate(&cand, &p, &Labels::default())?;
//! let opts = VerifyOptions { precision: gla_reference::Dtype::Bf16, ..Default::default() };
//! let report = verify(&p, &c, &truth, &opts, Labels::default())?;
//! assert!(report.pass(), "{}", report.render());
//! # Ok::<(), gla_judge::JudgeError>(())
//! ```

use crate::baseline::{self, DeclaredPlan, TensorBaseline, BASELINE_FACTOR};
use crate::bias::{self, BiasStat, BIAS_FACTOR, B_MIN, T_BIAS};
use crate::format::{fmt_ratio, json_f64, table};
use crate::truth::Truth;
use crate::JudgeError;
use gla_fixtures::io::TensorFile;
use gla_reference::bounds::{
    compare_with, Algorithm, BoundSpec, DgForm, Pass, Report, TensorReport,
};
use gla_reference::{Dtype, GateKind, Problem, Solution, OUTPUT_NAMES};
use ndarray::{Array4, Axis};
use rayon::prelude::*;
use std::fmt::Write as _;

/// What the candidate claims about its arithmetic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifyOptions {
    /// The arithmetic the candidate claims (sets the unit roundoffs): f64, f32, tf32, bf16, f16.
    pub precision: Dtype,
    /// The chunk length C the candidate's algorithm uses (sets n_acc and lambda).
    pub chunk: usize,
    /// Which dg algorithm the candidate runs (selects the judged dg magnitude; both ratios are
    /// reported).
    pub dg: DgForm,
    /// Whether the empirical verdicts (baseline rule and bias test) fail a tensor or only warn
    /// (`--baseline enforce|advisory`).
    pub empirical: Empirical,
    /// Which intermediates a bf16 / f16 / tf32 candidate rounds (`--plan fla|tensor-core`): the
    /// rounding plan of both the bound and the honest baseline.
    pub plan: DeclaredPlan,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            precision: Dtype::F32,
            chunk: 64,
            dg: DgForm::ReverseCumsum,
            empirical: Empirical::Enforce,
            plan: DeclaredPlan::Fla,
        }
    }
}

/// What the empirical verdicts (the baseline rule and the bias test) do to the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Empirical {
    /// A tensor failing the baseline rule or the bias test fails (the default).
    #[default]
    Enforce,
    /// They are reported as warnings; only the derived bound fails a tensor.
    Advisory,
}

impl Empirical {
    /// `enforce` or `advisory`.
    pub fn name(self) -> &'static str {
        match self {
            Empirical::Enforce => "enforce",
            Empirical::Advisory => "advisory",
        }
    }
}

impl std::str::FromStr for Empirical {
    type Err = JudgeError;
    /// `enforce` or `advisory`.
    fn from_str(s: &str) -> Result<Empirical, JudgeError> {
        match s {
            "enforce" => Ok(Empirical::Enforce),
            "advisory" => Ok(Empirical::Advisory),
            _ => Err(JudgeError::Input(format!(
                "unknown baseline mode `{s}` (expected enforce or advisory)"
            ))),
        }
    }
}

impl std::fmt::Display for Empirical {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The empirical verdicts on one tensor: the baseline rule and the bias test.
#[derive(Debug, Clone, PartialEq)]
pub struct EmpiricalReport {
    /// The baseline rule ([`crate::baseline`]).
    pub baseline: TensorBaseline,
    /// The bias test ([`crate::bias`]; its `honest_beta` is the largest `|beta|` of the honest
    /// implementations on this tensor, each stored like the candidate).
    pub bias: BiasStat,
}

impl EmpiricalReport {
    /// Both empirical verdicts pass.
    pub fn pass(&self) -> bool {
        self.baseline.pass() && self.bias.pass
    }
}

/// How the report names the two files (paths on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    /// The inputs.
    pub input: String,
    /// The candidate's outputs.
    pub candidate: String,
}

impl Default for Labels {
    fn default() -> Self {
        Labels {
            input: "<inputs>".into(),
            candidate: "<outputs>".into(),
        }
    }
}

/// The candidate's outputs, checked against the problem's shapes.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// `(name, values as [.., .., .., ..], stored dtype)` in [`OUTPUT_NAMES`] order.
    pub tensors: Vec<(&'static str, Array4<f64>, Dtype)>,
}

impl Candidate {
    /// A solution as the outputs of a kernel of declared `precision` (what the mutant benchmark
    /// and the honest-direction tests judge): each tensor rounded to, and tagged with,
    /// [`stored_dtype`].
    ///
    /// ```
    /// use gla_judge::verify::Candidate;
    /// use gla_reference::{Dtype, Solution};
    /// use ndarray::Array4;
    /// let s = Solution { o: Array4::from_elem((1, 1, 1, 1), 1.0 + 1e-4), ht: Array4::zeros((1, 1, 1, 1)), grads: None };
    /// let c = Candidate::from_solution(&s, Dtype::Bf16);
    /// assert_eq!(c.tensors[0].1[[0, 0, 0, 0]], 1.0); // o stored in bf16
    /// assert_eq!(c.tensors[1].2, Dtype::F32); // ht in f32
    /// ```
    pub fn from_solution(s: &Solution, precision: Dtype) -> Candidate {
        let mut tensors = Vec::new();
        for name in OUTPUT_NAMES {
            if let Some(x) = s.tensor(name) {
                let st = stored_dtype(precision, name);
                tensors.push((name, x.mapv(|v| st.round(v)), st));
            }
        }
        Candidate { tensors }
    }

    /// True when the candidate holds a gradient (the truth must then include the backward).
    pub fn has_gradients(&self) -> bool {
        self.tensors
            .iter()
            .any(|(n, _, _)| !matches!(*n, "o" | "ht"))
    }
}

/// The dtype a kernel of declared `precision` stores output `name` in: o and the gradients dq,
/// dk, dv, dg in the input dtype (bf16, f16), the states ht and dh0 in f32 (as fla does); f32
/// for f32 and tf32, f64 for f64.
pub fn stored_dtype(precision: Dtype, name: &str) -> Dtype {
    match precision {
        Dtype::F64 => Dtype::F64,
        Dtype::Bf16 | Dtype::F16 if !matches!(name, "ht" | "dh0") => precision,
        _ => Dtype::F32,
    }
}

/// The arithmetic a registry implementation declares when judged as an outside candidate on
/// `p`: its input dtype's precision (the rounding plan's dtype, else the compute type), its chunk
/// length and its dg algorithm. The recurrence declares fla's chunk 64 (its error is far below
/// the chunked form's); the parallel form, whose cumulative gate runs over the whole sequence,
/// is a chunked form with one chunk per sequence and declares the longest sequence as its chunk.
///
/// ```
/// use gla_judge::{verify::declared_options, Implementation};
/// use gla_reference::Dtype;
/// let p = gla_fixtures::catalog::case("partial_t100").unwrap().problem().unwrap();
/// let imp = Implementation::from_name("chunked-f32-C64c16-bf16").unwrap();
/// let o = declared_options(&imp, &p);
/// assert_eq!((o.precision, o.chunk), (Dtype::Bf16, 64));
/// let par = Implementation::from_name("parallel-f32").unwrap();
/// assert_eq!(declared_options(&par, &p).chunk, 100);
/// ```
pub fn declared_options(imp: &crate::Implementation, p: &Problem) -> VerifyOptions {
    use crate::Implementation as I;
    let (precision, chunk, dg) = match *imp {
        I::Recurrent { compute, dg } => (compute.dtype(), 64, dg.form()),
        I::Parallel { compute } => (
            compute.dtype(),
            p.max_seq_len().max(1),
            DgForm::ReverseCumsum,
        ),
        I::Chunked {
            compute,
            chunk,
            round,
            dg,
            ..
        } => (round.dtype().unwrap_or(compute.dtype()), chunk, dg.form()),
        I::Gpu { dtype, dg } => (dtype, 64, dg.form()),
    };
    // an implementation that rounds A's off-diagonal factors (glacheck's tensor-core GPU kernels
    // and their CPU twins) declares the tensor-core plan
    let tc = imp.plan().offdiag_q.is_some();
    VerifyOptions {
        precision,
        chunk,
        dg,
        plan: if tc && precision != Dtype::F32 {
            DeclaredPlan::TensorCore
        } else {
            DeclaredPlan::Fla
        },
        ..VerifyOptions::default()
    }
}

/// Expected shape of an output, and its shape description.
fn expected_shape(p: &Problem, name: &str) -> (Vec<usize>, String) {
    let d = p.dims();
    match name {
        "o" | "dv" => (
            vec![d.b, d.t, d.h, d.v],
            format!("[B, T, H, V] = {:?}", [d.b, d.t, d.h, d.v]),
        ),
        "ht" | "dh0" => (
            vec![d.n, d.h, d.k, d.v],
            format!("[N, H, K, V] = {:?}", [d.n, d.h, d.k, d.v]),
        ),
        "dg" if p.gate_kind() == GateKind::Scalar => (
            vec![d.b, d.t, d.h],
            format!("[B, T, H] = {:?} (scalar gates)", [d.b, d.t, d.h]),
        ),
        _ => (
            vec![d.b, d.t, d.h, d.k],
            format!("[B, T, H, K] = {:?}", [d.b, d.t, d.h, d.k]),
        ),
    }
}

/// Read a candidate's outputs from a file: every one of o, ht, dq, dk, dv, dg, dh0 it holds (any
/// float dtype), each checked against the shape `p` implies (scalar-gate dg as `[B, T, H]` or
/// `[B, T, H, 1]`). `labels` name the files in messages. Errors: a tensor of the wrong shape or a
/// non-float dtype, none of the outputs present, or gradients for a problem without `do`.
pub fn read_candidate(
    f: &TensorFile,
    p: &Problem,
    labels: &Labels,
) -> Result<Candidate, JudgeError> {
    let names = candidate_names(f, p, labels)?;
    let values = names
        .iter()
        .map(|&(n, _)| f.tensors[n].values.clone())
        .collect();
    candidate_from(names, values, labels)
}

/// [`read_candidate`], moving the candidate's tensors out of `f` instead of copying them (at
/// training shapes each is hundreds of megabytes): on success `f` no longer holds them; on an
/// error it is left as it was.
///
/// ```
/// use gla_judge::verify::{read_candidate, take_candidate, Labels};
/// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
/// let mut f = gla_fixtures::io::read_tensors(dir.join("mild.safetensors"))?;
/// let p = f.problem()?;
/// let copied = read_candidate(&f, &p, &Labels::default())?;
/// let moved = take_candidate(&mut f, &p, &Labels::default())?;
/// assert_eq!(copied.tensors, moved.tensors);
/// assert!(!f.contains("o") && f.contains("q"));
/// # Ok::<(), gla_judge::JudgeError>(())
/// ```
pub fn take_candidate(
    f: &mut TensorFile,
    p: &Problem,
    labels: &Labels,
) -> Result<Candidate, JudgeError> {
    let names = candidate_names(f, p, labels)?;
    let values = names
        .iter()
        .map(|&(n, _)| f.tensors.remove(n).expect("checked").values)
        .collect();
    candidate_from(names, values, labels)
}

/// The outputs `f` holds, checked (float dtype, shape), with their stored dtypes.
fn candidate_names(
    f: &TensorFile,
    p: &Problem,
    labels: &Labels,
) -> Result<Vec<(&'static str, Dtype)>, JudgeError> {
    let label = format!("CANDIDATE {}", labels.candidate);
    let mut names = Vec::new();
    for name in OUTPUT_NAMES {
        if !f.contains(name) {
            continue;
        }
        let t = f
            .float(name)
            .map_err(|e| JudgeError::Input(format!("{label}: {e}")))?;
        let (want, desc) = expected_shape(p, name);
        let got = t.shape().to_vec();
        let ok = got == want
            || (name == "dg" && want.len() == 3 && got == [want[0], want[1], want[2], 1]);
        if !ok {
            return Err(JudgeError::Input(format!(
                "{label}: tensor `{name}` has shape {got:?}, expected {desc}"
            )));
        }
        names.push((name, t.dtype.dtype().unwrap_or(Dtype::F64)));
    }
    if names.is_empty() {
        let found: Vec<&String> = f.tensors.keys().chain(f.other.keys()).collect();
        return Err(JudgeError::Input(format!(
            "{label}: holds none of o, ht, dq, dk, dv, dg, dh0 (found: {found:?})"
        )));
    }
    if !p.has_backward() && names.iter().any(|(n, _)| !matches!(*n, "o" | "ht")) {
        let g: Vec<&str> = names
            .iter()
            .map(|x| x.0)
            .filter(|n| !matches!(*n, "o" | "ht"))
            .collect();
        return Err(JudgeError::Input(format!(
            "{label}: holds gradients {g:?} but INPUT {} has no `do`: save the output gradient (and dht, \
             if used) the kernel's backward consumed",
            labels.input
        )));
    }
    Ok(names)
}

/// The candidate of checked `names` (with stored dtypes) and their `values`.
fn candidate_from(
    names: Vec<(&'static str, Dtype)>,
    values: Vec<ndarray::ArrayD<f64>>,
    labels: &Labels,
) -> Result<Candidate, JudgeError> {
    let label = format!("CANDIDATE {}", labels.candidate);
    let mut tensors = Vec::new();
    for ((name, dtype), a) in names.into_iter().zip(values) {
        let a = if a.ndim() == 3 {
            a.insert_axis(Axis(3))
        } else {
            a
        };
        let a4: Array4<f64> = a
            .into_dimensionality()
            .map_err(|e| JudgeError::Input(format!("{label}: tensor `{name}`: {e}")))?;
        tensors.push((name, a4, dtype));
    }
    Ok(Candidate { tensors })
}

/// The error models of `verify` for a claimed arithmetic: forward outputs (o, ht) and gradients.
/// Chunked algorithm with chunk `chunk`, the chunked family's calibrated constants, accumulation
/// in f32 (f64 for f64); tf32 / bf16 / f16 add the stages of the declared plan
/// (`baseline::plan_for(precision, decl)`: fla's kernel plan, or with tensor-core operands, through
/// `BoundSpec::from_plan`); `extra` adds stages (e.g. a coarser storage dtype).
pub fn specs(
    precision: Dtype,
    decl: DeclaredPlan,
    chunk: usize,
    dg: DgForm,
    extra: &[Dtype],
) -> (BoundSpec, BoundSpec) {
    let acc = if precision == Dtype::F64 {
        Dtype::F64
    } else {
        Dtype::F32
    };
    let plan = baseline::plan_for(precision, decl);
    let alg = Algorithm::Chunked { chunk };
    let spec = |pass| {
        let s = BoundSpec::from_plan(alg, acc, &plan, pass).with_dg_form(dg);
        let stages: Vec<Dtype> = s.stages.iter().chain(extra).copied().collect();
        s.with_stages(&stages)
    };
    (spec(Pass::Forward), spec(Pass::Backward))
}

/// The verdict on one candidate: per-tensor reports and everything needed to print them.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    /// The file names as given.
    pub labels: Labels,
    /// The options the candidate was judged with.
    pub options: VerifyOptions,
    /// `(B, T, H, K, V, N)`, scalar gates, varlen, scale of the problem.
    pub problem: ProblemSummary,
    /// Where the truth came from.
    pub truth: String,
    /// Notes (e.g. a stage added for a coarse storage dtype).
    pub notes: Vec<String>,
    /// The error model of the forward outputs.
    pub spec_forward: BoundSpec,
    /// The error model of the gradients.
    pub spec_backward: BoundSpec,
    /// One report per tensor the candidate holds, in [`OUTPUT_NAMES`] order.
    pub tensors: Vec<TensorReport>,
    /// The empirical verdicts, one per tensor, in the order of `tensors`.
    pub empirical: Vec<EmpiricalReport>,
    /// The honest implementations the baseline ran (names).
    pub honest: Vec<String>,
    /// The stored dtype of each reported tensor, by name.
    pub stored: Vec<(String, String)>,
    /// For each tensor, where its worst element and first non-finite element sit, in words.
    locate: Vec<(String, Option<String>, Option<String>)>,
    index_json: Vec<(String, Option<serde_json::Value>, Option<serde_json::Value>)>,
}

/// What a report says about the problem.
#[derive(Debug, Clone, PartialEq)]
pub struct ProblemSummary {
    /// Batch, time, heads, key and value channels, sequences.
    pub dims: [usize; 6],
    /// Scalar (per-head) gates.
    pub scalar_gates: bool,
    /// Packed variable-length sequences.
    pub varlen: bool,
    /// The scale applied to q.
    pub scale: f64,
}

/// Judge `cand` against `truth` (which must answer the same problem `p`, with gradients when the
/// candidate holds any).
pub fn verify(
    p: &Problem,
    cand: &Candidate,
    truth: &Truth,
    opts: &VerifyOptions,
    labels: Labels,
) -> Result<VerifyReport, JudgeError> {
    let judged = judge_candidate(p, cand, truth, opts)?;
    judged.finish(p, &truth.solution, opts, labels)
}

/// [`verify`], consuming the candidate and the truth so that each is freed as soon as it has
/// served: the candidate and the magnitudes once the bound and the candidate's statistics are
/// taken, before the honest implementations run (at training shapes eleven tensors of hundreds
/// of megabytes, which then no longer add to the honest solutions' memory). The same report.
///
/// ```
/// use gla_judge::verify::{read_candidate, verify, verify_owned, Labels, VerifyOptions};
/// use gla_judge::Truth;
/// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
/// let input = gla_fixtures::io::read_tensors(dir.join("mild.safetensors"))?;
/// let p = input.problem()?;
/// let truth = Truth::f64(&p, true)?;
/// let cand = read_candidate(&input, &p, &Labels::default())?; // the stored oracle results
/// let opts = VerifyOptions::default();
/// let a = verify(&p, &cand, &truth, &opts, Labels::default())?;
/// let b = verify_owned(&p, cand, truth, &opts, Labels::default())?;
/// assert_eq!(a.to_json(), b.to_json());
/// # Ok::<(), gla_judge::JudgeError>(())
/// ```
pub fn verify_owned(
    p: &Problem,
    cand: Candidate,
    truth: Truth,
    opts: &VerifyOptions,
    labels: Labels,
) -> Result<VerifyReport, JudgeError> {
    let judged = judge_candidate(p, &cand, &truth, opts)?;
    drop(cand);
    let Truth { solution, .. } = truth; // the magnitudes go
    judged.finish(p, &solution, opts, labels)
}

/// What [`verify`] knows once the candidate has been judged against the bound and its
/// statistics taken: everything but the honest implementations' results.
struct Judged {
    backward: bool,
    notes: Vec<String>,
    spec_fwd: BoundSpec,
    spec_bwd: BoundSpec,
    tensors: Vec<TensorReport>,
    /// Name and stored dtype of each judged tensor.
    stored: Vec<(String, Dtype)>,
    /// The candidate's statistics per judged tensor.
    stats: Vec<CandidateStats>,
    truth_source: String,
}

/// The candidate's side of the empirical verdicts on one tensor.
struct CandidateStats {
    err: baseline::ErrStats,
    magnitude_scale: (f64, f64),
    bias: (f64, f64),
    acc_beta: f64,
    u: f64,
    floor_unit: f64,
}

/// The bound verdicts and the candidate's statistics (the first half of [`verify`]).
fn judge_candidate(
    p: &Problem,
    cand: &Candidate,
    truth: &Truth,
    opts: &VerifyOptions,
) -> Result<Judged, JudgeError> {
    if opts.chunk == 0 {
        return Err(JudgeError::Input("--chunk must be at least 1".into()));
    }
    let backward = cand.has_gradients();
    let exact = &truth.solution;
    if backward && exact.grads.is_none() {
        return Err(JudgeError::Input(
            "the truth holds no gradients but the candidate does".into(),
        ));
    }
    // The model.
    let precision = opts.precision;
    let coarsest = cand
        .tensors
        .iter()
        .map(|x| x.2)
        .max_by(|x, y| x.unit_roundoff().total_cmp(&y.unit_roundoff()));
    let mut notes = Vec::new();
    let mut extra = Vec::new();
    if let Some(st) = coarsest {
        if st.unit_roundoff() > precision.unit_roundoff() {
            extra.push(st);
            notes.push(format!(
                "the candidate stores results as {st}, coarser than --precision {precision}: one {st} rounding stage added"
            ));
        }
    }
    let (spec_fwd, spec_bwd) = specs(precision, opts.plan, opts.chunk, opts.dg, &extra);
    let mags = &truth.magnitudes;
    // The candidate's tensors judged where they lie (no copy into a solution): the forward
    // outputs with the forward model, the gradients with the backward one. Against an
    // approximate truth every element is charged the truth's own bound.
    let judge = |forward: bool, spec: &BoundSpec| -> gla_reference::Result<Report> {
        let tensor = |n: &str| {
            cand.tensors
                .iter()
                .find(|x| x.0 == n && matches!(n, "o" | "ht") == forward)
                .map(|x| &x.1)
        };
        compare_with(p, exact, mags, tensor, spec, truth.budget.as_ref())
    };
    if let Some(b) = &truth.budget {
        // The largest per-tensor coefficient of the budget (`c` differs by output).
        let c = OUTPUT_NAMES
            .iter()
            .filter_map(|n| b.c_for(n))
            .fold(0.0, f64::max);
        let worst = b.u_stages() + c * b.u_acc() * (b.n_acc(p) + b.lambda(p));
        notes.push(format!(
            "truth: certified f64 (each element charged the truth's own bound, at most {worst:.1e} M)"
        ));
    }
    let mut tensors: Vec<TensorReport> = judge(true, &spec_fwd)?.tensors;
    if backward {
        tensors.extend(judge(false, &spec_bwd)?.tensors);
    }
    let stored: Vec<(String, Dtype)> = tensors
        .iter()
        .map(|t| {
            let st = cand.tensors.iter().find(|c| c.0 == t.name).map(|c| c.2);
            (
                t.name.clone(),
                st.expect("reported tensors are the candidate's"),
            )
        })
        .collect();
    // The candidate's side of the empirical verdicts (the baseline rule's error and floor, the
    // bias test's statistics). One tensor per task: each is a pass over gigabytes at training
    // shapes.
    let acc = baseline::accumulation(precision);
    let stats = tensors
        .par_iter()
        .map(|t| -> Result<CandidateStats, JudgeError> {
            let (_, x, st) = cand
                .tensors
                .iter()
                .find(|c| c.0 == t.name)
                .expect("reported tensors are the candidate's");
            let exact_t = exact
                .tensor(&t.name)
                .expect("the truth holds every judged tensor");
            let mname = match (t.name.as_str(), opts.dg) {
                ("dg", DgForm::Local) => "dg_local",
                (n, _) => n,
            };
            let m = mags.tensor(mname).ok_or_else(|| {
                JudgeError::Input(format!("the truth holds no magnitude for `{mname}`"))
            })?;
            let scale = acc.unit_roundoff() * (t.n_acc + t.lambda);
            // One pass over the tensor for the four statistics of `baseline::judge_tensor`
            // (the candidate's error, the magnitude's scale), `bias::bias_stat` and
            // `bias::accumulation_beta` (the same sums in the same order).
            let mut err = baseline::ErrAcc::default();
            let mut mag = baseline::MagAcc::default();
            let mut bias_acc = bias::BiasAcc::default();
            let mut beta_acc = bias::AccBetaAcc::default();
            let mut each = |a: f64, e: f64, m: f64| {
                err.add(a, e);
                mag.add(m, e);
                bias_acc.add(a, e);
                beta_acc.add(e, m);
            };
            match (x.as_slice(), exact_t.as_slice(), m.as_slice()) {
                (Some(xs), Some(es), Some(ms))
                    if x.shape() == exact_t.shape() && m.shape() == exact_t.shape() =>
                {
                    for ((&a, &e), &m) in xs.iter().zip(es).zip(ms) {
                        each(a, e, m);
                    }
                }
                _ => {
                    for ((&a, &e), &m) in x.iter().zip(exact_t.iter()).zip(m.iter()) {
                        each(a, e, m);
                    }
                }
            }
            Ok(CandidateStats {
                err: err.finish(),
                magnitude_scale: mag.finish(),
                bias: bias_acc.finish(),
                acc_beta: beta_acc.finish(scale),
                u: precision.unit_roundoff().max(st.unit_roundoff()),
                floor_unit: acc.unit_roundoff() * (t.n_acc + t.lambda).sqrt(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Judged {
        backward,
        notes,
        spec_fwd,
        spec_bwd,
        tensors,
        stored,
        stats,
        truth_source: truth.source.clone(),
    })
}

impl Judged {
    /// The honest implementations' side of the empirical verdicts, and the report (the second
    /// half of [`verify`]; `exact` is the truth's solution).
    fn finish(
        self,
        p: &Problem,
        exact: &Solution,
        opts: &VerifyOptions,
        labels: Labels,
    ) -> Result<VerifyReport, JudgeError> {
        let Judged {
            backward,
            notes,
            spec_fwd,
            spec_bwd,
            tensors,
            stored,
            stats,
            truth_source,
        } = self;
        // Honest implementations of the declared arithmetic on the problem as stored.
        let (honest, honest_stats) = baseline::honest_stats(
            p,
            opts.precision,
            opts.plan,
            opts.chunk,
            opts.dg,
            backward,
            exact,
            &stored,
        )?;
        let empirical = tensors
            .iter()
            .zip(&honest_stats)
            .zip(&stats)
            .map(|((t, hs), c)| {
                let honest_beta = hs.iter().map(|h| h.beta).fold(0.0, f64::max);
                EmpiricalReport {
                    baseline: baseline::judge_stats(
                        &t.name,
                        c.err,
                        c.magnitude_scale,
                        hs,
                        c.floor_unit,
                    ),
                    bias: bias::bias_verdict(c.bias, c.u, honest_beta, c.acc_beta),
                }
            })
            .collect();
        let d = p.dims();
        Ok(VerifyReport {
            empirical,
            honest,
            stored: stored
                .iter()
                .map(|(n, st)| (n.clone(), st.to_string()))
                .collect(),
            locate: tensors
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.worst_index.map(|i| locate(p, &t.name, i)),
                        t.first_nonfinite.map(|i| locate(p, &t.name, i)),
                    )
                })
                .collect(),
            index_json: tensors
                .iter()
                .map(|t| {
                    (
                        t.name.clone(),
                        t.worst_index.map(|i| index_json(&t.name, p, i)),
                        t.first_nonfinite.map(|i| index_json(&t.name, p, i)),
                    )
                })
                .collect(),
            tensors,
            labels,
            options: *opts,
            problem: ProblemSummary {
                dims: [d.b, d.t, d.h, d.k, d.v, d.n],
                scalar_gates: p.gate_kind() == GateKind::Scalar,
                varlen: p.cu_seqlens().is_some(),
                scale: p.scale(),
            },
            truth: truth_source,
            notes,
            spec_forward: spec_fwd,
            spec_backward: spec_bwd,
        })
    }
}

/// Where an element sits, in words.
fn locate(p: &Problem, name: &str, i: [usize; 4]) -> String {
    match name {
        "ht" | "dh0" => format!("(sequence {}, head {}, k {}, v {})", i[0], i[1], i[2], i[3]),
        _ => {
            let ch = match name {
                "o" | "dv" => "v channel",
                "dg" if p.gate_kind() == GateKind::Scalar => "scalar gate",
                _ => "k channel",
            };
            let seq = match p.cu_seqlens() {
                Some(cu) => {
                    let n = cu
                        .windows(2)
                        .position(|w| i[1] >= w[0] && i[1] < w[1])
                        .unwrap_or(0);
                    format!(" = sequence {n} step {}", i[1] - cu[n])
                }
                None => String::new(),
            };
            if ch == "scalar gate" {
                format!("(batch {}, time {}{seq}, head {})", i[0], i[1], i[2])
            } else {
                format!(
                    "(batch {}, time {}{seq}, head {}, {ch} {})",
                    i[0], i[1], i[2], i[3]
                )
            }
        }
    }
}

fn index_json(name: &str, p: &Problem, i: [usize; 4]) -> serde_json::Value {
    match name {
        "ht" | "dh0" => serde_json::json!({"sequence": i[0], "head": i[1], "k": i[2], "v": i[3]}),
        "dg" if p.gate_kind() == GateKind::Scalar => {
            serde_json::json!({"batch": i[0], "time": i[1], "head": i[2]})
        }
        _ => serde_json::json!({"batch": i[0], "time": i[1], "head": i[2], "channel": i[3]}),
    }
}

impl VerifyReport {
    /// True when every tensor passes: the derived bound, and (unless advisory) the baseline rule
    /// and the bias test.
    pub fn pass(&self) -> bool {
        self.pass_bound() && (self.advisory() || self.pass_empirical())
    }

    /// True when every tensor is within the derived bound (and finite where the truth is).
    pub fn pass_bound(&self) -> bool {
        self.tensors.iter().all(|t| t.pass)
    }

    /// True when every tensor passes the baseline rule and the bias test.
    pub fn pass_empirical(&self) -> bool {
        self.empirical.iter().all(|e| e.pass())
    }

    /// True when the empirical verdicts only warn.
    pub fn advisory(&self) -> bool {
        self.options.empirical == Empirical::Advisory
    }

    /// The rules tensor `name` fails: any of `bound`, `baseline-max`, `baseline-rms`, `bias`
    /// (whether or not the empirical ones are advisory).
    pub fn failed_rules(&self, name: &str) -> Vec<&'static str> {
        let mut v = Vec::new();
        if let Some((t, e)) = self
            .tensors
            .iter()
            .zip(&self.empirical)
            .find(|(t, _)| t.name == name)
        {
            if !t.pass {
                v.push("bound");
            }
            if !e.baseline.pass_max {
                v.push("baseline-max");
            }
            if !e.baseline.pass_rms {
                v.push("baseline-rms");
            }
            if !e.bias.pass {
                v.push("bias");
            }
        }
        v
    }

    fn stored_of(&self, name: &str) -> String {
        self.stored
            .iter()
            .find(|x| x.0 == name)
            .map(|x| x.1.clone())
            .unwrap_or_default()
    }

    fn dg_name(&self) -> &'static str {
        self.options.dg.name()
    }

    /// The report as JSON (what `glacheck verify --json` prints).
    pub fn to_json(&self) -> serde_json::Value {
        let tensors: Vec<serde_json::Value> = self
            .tensors
            .iter()
            .zip(&self.index_json)
            .zip(&self.empirical)
            .map(|((t, (_, worst_at, first_at)), e)| {
                let b = &e.baseline;
                let opt = |x: Option<f64>| x.map(json_f64);
                serde_json::json!({
                    "name": t.name,
                    "stored_dtype": self.stored_of(&t.name),
                    "ratio": json_f64(t.ratio),
                    "truth_charge": json_f64(t.truth_charge),
                    "bound": json_f64(t.bound),
                    "pass": t.pass && (self.advisory() || e.pass()),
                    "verdicts": {"bound": t.pass, "baseline": b.pass(), "bias": e.bias.pass},
                    "baseline": {
                        "max_err": json_f64(b.candidate.max),
                        "rms_err": json_f64(b.candidate.rms),
                        "base_max": opt(b.base_max),
                        "base_rms": opt(b.base_rms),
                        "max_by": b.max_by,
                        "rms_by": b.rms_by,
                        "max_ratio": opt(b.max_ratio()),
                        "rms_ratio": opt(b.rms_ratio()),
                        "floor_max": json_f64(b.floor_max),
                        "floor_rms": json_f64(b.floor_rms),
                        "factor": BASELINE_FACTOR,
                        "pass_max": b.pass_max,
                        "pass_rms": b.pass_rms,
                    },
                    "bias": {
                        "t": json_f64(e.bias.t),
                        "beta": json_f64(e.bias.beta),
                        "u": e.bias.u,
                        "beta_over_u": json_f64(e.bias.beta_units()),
                        "honest_beta": json_f64(e.bias.honest_beta),
                        "accumulation_beta": json_f64(e.bias.acc_beta),
                        "beta_limit": json_f64(e.bias.beta_limit()),
                        "factor": BIAS_FACTOR,
                        "t_max": T_BIAS,
                        "b_min": B_MIN,
                        "pass": e.bias.pass,
                    },
                    "worst": t.worst_index.map(|i| serde_json::json!({
                        "index": i,
                        "at": worst_at,
                        "candidate": json_f64(t.worst_candidate),
                        "exact": json_f64(t.worst_exact),
                        "magnitude": json_f64(t.worst_magnitude),
                    })),
                    "max_abs_err": json_f64(t.max_abs_err),
                    "max_abs_exact": json_f64(t.max_abs_exact),
                    "rel_err": json_f64(t.rel_err),
                    "nonfinite_where_oracle_finite": t.candidate_nonfinite,
                    "first_nonfinite": first_at,
                    "oracle_nonfinite": t.exact_nonfinite,
                    "dg_ratios": t.dg.map(|d| serde_json::json!({
                        "reverse_cumsum": json_f64(d.reverse_cumsum), "local": json_f64(d.local)})),
                    "model": {"c": t.c, "n_acc": t.n_acc, "lambda": json_f64(t.lambda),
                              "u_stages": t.u_stages + 0.0, "u_acc": t.u_acc, "eta": t.eta},
                })
            })
            .collect();
        serde_json::json!({
            "input": self.labels.input,
            "candidate": self.labels.candidate,
            "precision": self.options.precision.to_string(),
            "plan": self.options.plan.name(),
            "chunk": self.options.chunk,
            "dg_form": self.dg_name(),
            "oracle": self.truth,
            "notes": self.notes,
            "baseline_mode": self.options.empirical.name(),
            "honest": self.honest,
            "pass": self.pass(),
            "pass_bound": self.pass_bound(),
            "pass_empirical": self.pass_empirical(),
            "tensors": tensors,
        })
    }

    /// The report as text (what `glacheck verify` prints): problem, truth, model, one row per
    /// tensor, the dg ratios, one line per failure naming the tensor and element, the verdict.
    pub fn render(&self) -> String {
        let mut s = String::new();
        self.render_into(&mut s);
        s
    }

    fn render_into(&self, s: &mut String) {
        let [b, t, h, k, v, n] = self.problem.dims;
        let precision = self.options.precision;
        let _ = writeln!(
            s,
            "glacheck verify {} against {}",
            self.labels.candidate, self.labels.input
        );
        let _ = writeln!(
            s,
            "problem: B={b} T={t} H={h} K={k} V={v} N={n}{}{}, scale={}",
            if self.problem.scalar_gates {
                ", scalar gates"
            } else {
                ""
            },
            if self.problem.varlen { ", varlen" } else { "" },
            self.problem.scale
        );
        let _ = writeln!(s, "truth: {}", self.truth);
        let reports = &self.tensors;
        let fwd_t = reports.iter().find(|t| t.name == "o" || t.name == "ht");
        let bwd_t = reports
            .iter()
            .find(|t| !matches!(t.name.as_str(), "o" | "ht"));
        if let Some(t) = fwd_t.or(bwd_t) {
            let _ = writeln!(
                s,
                "model: chunked C={}, precision {precision} ({} plan): u_acc = {:.3e}, n_acc = {}, lambda = {:.4}, dg judged as {}",
                self.options.chunk,
                self.options.plan.name(),
                t.u_acc,
                t.n_acc,
                t.lambda,
                self.dg_name()
            );
            let stages = |spec: &BoundSpec| -> String {
                if spec.stages.is_empty() {
                    "none".into()
                } else {
                    format!(
                        "{} (sum u_s = {:.3e})",
                        spec.stages
                            .iter()
                            .map(|d| d.to_string())
                            .collect::<Vec<_>>()
                            .join("+"),
                        spec.u_stages()
                    )
                }
            };
            let _ = writeln!(
                s,
                "       rounding stages: o, ht: {}; gradients: {}",
                stages(&self.spec_forward),
                stages(&self.spec_backward)
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        let _ = writeln!(s);
        let header: Vec<String> = [
            "tensor",
            "stored",
            "ratio",
            "bound",
            "result",
            "worst element",
            "candidate",
            "exact",
            "nonfinite",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let rows: Vec<Vec<String>> = reports
            .iter()
            .map(|t| {
                let worst = |f: &dyn Fn() -> String| t.worst_index.map(|_| f());
                vec![
                    t.name.clone(),
                    self.stored_of(&t.name),
                    fmt_ratio(Some(t.ratio)),
                    fmt_ratio(Some(t.bound)),
                    if t.pass { "PASS".into() } else { "FAIL".into() },
                    t.worst_index
                        .map(|i| format!("{i:?}"))
                        .unwrap_or_else(|| "-".into()),
                    worst(&|| format!("{:.6e}", t.worst_candidate)).unwrap_or_else(|| "-".into()),
                    worst(&|| format!("{:.6e}", t.worst_exact)).unwrap_or_else(|| "-".into()),
                    format!("{}", t.candidate_nonfinite),
                ]
            })
            .collect();
        s.push_str(&table(&header, &rows));
        if let Some(r) = reports.iter().find(|t| t.name == "dg").and_then(|t| t.dg) {
            let _ = writeln!(
                s,
                "dg ratios: reverse-cumsum magnitude {}, local magnitude {} (judged: {})",
                fmt_ratio(Some(r.reverse_cumsum)),
                fmt_ratio(Some(r.local)),
                self.dg_name()
            );
        }
        self.render_empirical(s);
        let _ = writeln!(s);
        for (t, (_, worst_at, first_at)) in reports.iter().zip(&self.locate) {
            self.render_empirical_failures(s, &t.name);
            if t.pass {
                continue;
            }
            if t.candidate_nonfinite > 0 {
                let _ = writeln!(
                    s,
                    "FAIL {}: {} non-finite value(s) where the oracle is finite; first at {} {:?}",
                    t.name,
                    t.candidate_nonfinite,
                    first_at.as_deref().unwrap_or("?"),
                    t.first_nonfinite.unwrap_or_default()
                );
            }
            if t.ratio > t.bound {
                if let Some(i) = t.worst_index {
                    let _ = writeln!(
                        s,
                        "FAIL {}: worst element {} {:?}: candidate {:e}, oracle {:e}, |err| {:.3e} = {} x (sum u_s + u_acc) M + eta, bound {}",
                        t.name,
                        worst_at.as_deref().unwrap_or("?"),
                        i,
                        t.worst_candidate,
                        t.worst_exact,
                        (t.worst_candidate - t.worst_exact).abs(),
                        fmt_ratio(Some(t.ratio)),
                        fmt_ratio(Some(t.bound))
                    );
                }
            }
        }
        let count = |f: &dyn Fn(&TensorReport, &EmpiricalReport) -> bool| {
            reports
                .iter()
                .zip(&self.empirical)
                .filter(|(t, e)| f(t, e))
                .count()
        };
        let n_bound = count(&|t, _| !t.pass);
        let n_base = count(&|_, e| !e.baseline.pass());
        let n_bias = count(&|_, e| !e.bias.pass);
        if self.pass() {
            let empirical = if self.pass_empirical() {
                ", the honest baseline and the bias test".to_string()
            } else {
                format!(" (advisory warnings: baseline {n_base}, bias {n_bias})")
            };
            let _ = writeln!(
                s,
                "PASS: {} tensor(s) within the {precision} bound{empirical}",
                reports.len()
            );
        } else {
            let nfail = if self.advisory() {
                n_bound
            } else {
                count(&|t, e| !t.pass || !e.pass())
            };
            let _ = writeln!(
                s,
                "FAIL: {nfail} of {} tensor(s) (bound: {n_bound}, baseline: {n_base}, bias: {n_bias}{})",
                reports.len(),
                if self.advisory() { "; baseline and bias advisory" } else { "" }
            );
        }
    }

    /// The empirical verdicts as a table (one row per tensor).
    fn render_empirical(&self, s: &mut String) {
        let precision = self.options.precision;
        let _ = writeln!(
            s,
            "\nempirical verdicts (docs/math.md §8.2; {}): honest {precision} baseline = worst of {}",
            self.options.empirical.name(),
            self.honest.join(", ")
        );
        let _ = writeln!(
            s,
            "  baseline rule: max and RMS error <= {BASELINE_FACTOR}x the baseline's + u_acc (n_acc + lambda) max(M) resp. RMS(M); \
             bias test: fails when |t| > {T_BIAS} and |beta| > {BIAS_FACTOR}x the honest |beta| + {B_MIN} u"
        );
        let header: Vec<String> = [
            "tensor", "max err", "base max", "x", "RMS err", "base RMS", "x", "baseline", "bias t",
            "beta/u", "bias",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let e3 = |x: f64| {
            if x == 0.0 {
                "0".to_string()
            } else {
                format!("{x:.2e}")
            }
        };
        let verdict = |ok: bool| -> String {
            match (ok, self.advisory()) {
                (true, _) => "PASS".into(),
                (false, false) => "FAIL".into(),
                (false, true) => "WARN".into(),
            }
        };
        let rows: Vec<Vec<String>> = self
            .empirical
            .iter()
            .map(|e| {
                let b = &e.baseline;
                vec![
                    b.name.clone(),
                    e3(b.candidate.max),
                    b.base_max.map(e3).unwrap_or_else(|| "-".into()),
                    fmt_ratio(b.max_ratio()),
                    e3(b.candidate.rms),
                    b.base_rms.map(e3).unwrap_or_else(|| "-".into()),
                    fmt_ratio(b.rms_ratio()),
                    verdict(b.pass()),
                    format!("{:.2}", e.bias.t),
                    format!("{:.3}", e.bias.beta_units()),
                    verdict(e.bias.pass),
                ]
            })
            .collect();
        s.push_str(&table(&header, &rows));
    }

    /// One line per empirical rule tensor `name` fails, naming the rule.
    fn render_empirical_failures(&self, s: &mut String, name: &str) {
        let Some(e) = self.empirical.iter().find(|e| e.baseline.name == name) else {
            return;
        };
        let tag = if self.advisory() { "WARN" } else { "FAIL" };
        let precision = self.options.precision;
        let b = &e.baseline;
        let half = |what: &str, err: f64, base: Option<f64>, by: &str, floor: f64, ok: bool| {
            if ok {
                return String::new();
            }
            let base = base.unwrap_or(0.0);
            format!(
                "{tag} {name}: {what} error {err:.2e} = {}x the honest {precision} baseline {base:.2e} ({by}) \
                 (rule: <= {BASELINE_FACTOR}x + floor {floor:.2e})\n",
                fmt_ratio(Some(if base > 0.0 { err / base } else { f64::INFINITY }))
            )
        };
        s.push_str(&half(
            "max",
            b.candidate.max,
            b.base_max,
            &b.max_by,
            b.floor_max,
            b.pass_max,
        ));
        s.push_str(&half(
            "RMS",
            b.candidate.rms,
            b.base_rms,
            &b.rms_by,
            b.floor_rms,
            b.pass_rms,
        ));
        if !e.bias.pass {
            let _ = writeln!(
                s,
                "{tag} {name}: biased error: t = {:.1}, relative bias beta = {:.2e} = {:.2} u, the honest {precision} \
                 implementations' {:.2e} (rule: bias test, fails when |t| > {T_BIAS} and |beta| > \
                 {BIAS_FACTOR}x the honest bias + {B_MIN} u + the accumulations' {:.2e} = {:.2e})",
                e.bias.t,
                e.bias.beta,
                e.bias.beta_units(),
                e.bias.honest_beta,
                e.bias.acc_beta,
                e.bias.beta_limit()
            );
        }
    }
}
