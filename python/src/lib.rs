//! `glacheck._glacheck`: the compiled core of the `glacheck` Python package.
//!
//! A thin layer over the Rust crates, which compute every number: problems are validated by
//! `gla-reference` through the file path of `gla-fixtures` (same checks, same messages), the
//! truth is `gla-oracle`'s (or a stored golden's), candidates are judged by `gla-judge`'s verify
//! judge and rendered by its report, the reference forms run through `gla-judge`'s registry.
//! The Python package (`glacheck/`) converts arguments (numpy, torch, ml_dtypes) into tagged
//! numpy arrays and wraps the results; it computes nothing itself.
//!
//! Long calls run off the GIL and honour Ctrl-C ([`blocking`]); no panic reaches Python as
//! anything but `glacheck.InternalError` ([`errors`]).

mod blocking;
mod convert;
mod errors;

use convert::{put_magnitudes, put_solution, tensor_file, TensorArg};
use errors::{guarded, input_error, InputError, InternalError};
use gla_fixtures::io::{StoredTensor, TensorFile, INPUT_NAMES};
use gla_judge::implementation::{Config, Form};
use gla_judge::inputs::take_problem;
use gla_judge::baseline::DeclaredPlan;
use gla_judge::verify::{read_candidate, verify, Empirical, Labels, VerifyOptions, VerifyReport};
use gla_judge::{Compute, JudgeError, Truth, TruthMode, Verdict};
use gla_reference::bounds::{magnitudes, DgForm, TensorReport};
use gla_fixtures::gen::{GateRegime, ProblemSpec, ValueRegime};
use gla_reference::{Dtype, GateKind, Problem, OUTPUT_NAMES};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

include!(concat!(env!("OUT_DIR"), "/goldens.rs"));

/// Where a set of tensors comes from: a safetensors file, or arrays in memory with a label that
/// names them in messages and reports.
#[derive(FromPyObject)]
enum Source<'py> {
    /// A path (str or os.PathLike).
    Path(PathBuf),
    /// `(tensors, metadata, label)`.
    Memory(Vec<TensorArg<'py>>, BTreeMap<String, String>, String),
}

/// A source with its arrays copied (files are read later, in the worker).
enum Loaded {
    Path(PathBuf),
    Memory(TensorFile, String),
}

impl Source<'_> {
    fn load(self) -> PyResult<Loaded> {
        Ok(match self {
            Source::Path(p) => Loaded::Path(p),
            Source::Memory(t, m, label) => {
                let f = tensor_file(t, m, &label)?;
                Loaded::Memory(f, label)
            }
        })
    }
}

impl Loaded {
    /// The file and its label (a path as given, as `glacheck verify` prints it).
    fn read(self) -> Result<(TensorFile, String), String> {
        match self {
            Loaded::Path(p) => {
                let label = p.display().to_string();
                let f = gla_fixtures::io::read_tensors(&p).map_err(|e| e.to_string())?;
                Ok((f, label))
            }
            Loaded::Memory(f, label) => Ok((f, label)),
        }
    }
}

/// The problem held by an input file, with the command line's message on error.
fn problem_of(f: &mut TensorFile, label: &str) -> Result<Problem, String> {
    take_problem(f).map_err(|e| format!("{label}: {e}"))
}

fn parse<T: std::str::FromStr>(s: &str) -> PyResult<T>
where
    T::Err: std::fmt::Display,
{
    s.parse::<T>().map_err(|e| input_error(e.to_string()))
}

fn rayon_pool(threads: usize) -> Result<Arc<rayon::ThreadPool>, String> {
    static POOLS: Mutex<BTreeMap<usize, Arc<rayon::ThreadPool>>> = Mutex::new(BTreeMap::new());
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = pools.get(&threads) {
        return Ok(p.clone());
    }
    let p = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("glacheck-oracle-{i}"))
        .build()
        .map_err(|e| format!("cannot start {threads} oracle threads: {e}"))?;
    let p = Arc::new(p);
    pools.insert(threads, p.clone());
    Ok(p)
}

/// Run `f` in a pool of `threads` threads (None: rayon's global pool).
fn in_pool<R: Send>(threads: Option<usize>, f: impl FnOnce() -> R + Send) -> Result<R, String> {
    match threads {
        None => Ok(f()),
        Some(n) => Ok(rayon_pool(n)?.install(f)),
    }
}

// ---------------------------------------------------------------------------------------------
// The oracle.

/// oracle(tensors, metadata, threads=None, exact_magnitudes=False) -> dict
///
/// Run the MPFR oracle on the problem the tensors form (every gradient when `do` is present);
/// see `glacheck.oracle`, which calls this.
#[pyfunction]
#[pyo3(signature = (tensors, metadata, threads=None, exact_magnitudes=false))]
fn oracle(
    py: Python<'_>,
    tensors: Vec<TensorArg<'_>>,
    metadata: BTreeMap<String, String>,
    threads: Option<usize>,
    exact_magnitudes: bool,
) -> PyResult<Py<PyDict>> {
    guarded(|| {
        let label = "<inputs>";
        let mut f = tensor_file(tensors, metadata, label)?;
        let (r, mags, kind) = blocking::run(py, "oracle", move || {
            let p = problem_of(&mut f, label)?;
            drop(f);
            let backward = p.has_backward();
            let (r, m) = in_pool(threads, || {
                let r = gla_judge::truth::oracle_full(&p, backward)?;
                let m = if exact_magnitudes {
                    gla_oracle::exact_magnitudes(&p)
                } else {
                    magnitudes(&p)
                };
                Ok::<_, gla_reference::GlaError>((r, m))
            })?
            .map_err(|e| e.to_string())?;
            Ok((r, m, p.gate_kind()))
        })?;
        let d = PyDict::new(py);
        put_solution(&d, r.solution, kind)?;
        if let Some(rc) = r.dg_reverse_cumsum {
            d.set_item("dg_reverse_cumsum", convert::gate_array(py, rc, kind))?;
        }
        put_magnitudes(&d, mags, kind)?;
        d.set_item("precision", r.precision)?;
        d.set_item("bits_agreed", r.bits_agreed)?;
        let limiting = match r.limiting {
            None => None,
            Some(l) => {
                let x = PyDict::new(py);
                x.set_item("tensor", l.tensor)?;
                x.set_item("index", l.index.to_vec())?;
                x.set_item("bits", l.bits)?;
                Some(x)
            }
        };
        d.set_item("limiting", limiting)?;
        d.set_item("magnitudes", if exact_magnitudes { "mpfr" } else { "f64" })?;
        Ok(d.unbind())
    })
}

// ---------------------------------------------------------------------------------------------
// The verify judge.

/// A verify report (the judge of `glacheck verify`); wrapped by `glacheck.Report`.
#[pyclass(frozen, name = "VerifyReport", module = "glacheck._glacheck")]
struct PyVerifyReport {
    inner: VerifyReport,
}

#[pymethods]
impl PyVerifyReport {
    /// The report as text: what `glacheck verify` prints.
    fn render(&self) -> String {
        self.inner.render()
    }
    /// The report as JSON text: what `glacheck verify --json` prints (compact).
    fn json(&self) -> PyResult<String> {
        serde_json::to_string(&self.inner.to_json())
            .map_err(|e| InternalError::new_err(e.to_string()))
    }
    /// True when every tensor passes.
    #[getter]
    fn passed(&self) -> bool {
        self.inner.pass()
    }
}

/// Which truth judges the candidate.
enum TruthChoice {
    /// A mode of `gla_judge::TruthMode` (auto, oracle, f64, stored): the command line's rule.
    Mode(TruthMode),
    /// Stored in another file (a golden, or a case's tensors).
    File(Loaded),
}

/// judge(inputs, outputs, truth_mode, truth_source, precision, chunk, dg, baseline, plan) -> VerifyReport
///
/// The verify judge on inputs and a candidate's outputs; see `glacheck.judge`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (inputs, outputs, truth_mode, truth_source, precision, chunk, dg, baseline = "enforce", plan = "fla"))]
fn judge(
    py: Python<'_>,
    inputs: Source<'_>,
    outputs: Source<'_>,
    truth_mode: &str,
    truth_source: Option<Source<'_>>,
    precision: &str,
    chunk: usize,
    dg: &str,
    baseline: &str,
    plan: &str,
) -> PyResult<PyVerifyReport> {
    guarded(|| {
        let opts = VerifyOptions {
            precision: parse::<Dtype>(precision)?,
            chunk,
            dg: parse::<DgForm>(dg)?,
            empirical: parse::<Empirical>(baseline)?,
            plan: parse::<DeclaredPlan>(plan)?,
        };
        let truth = match (truth_mode, truth_source) {
            ("file", Some(s)) => TruthChoice::File(s.load()?),
            (m, None) => TruthChoice::Mode(TruthMode::parse(m).ok_or_else(|| {
                input_error(format!(
                    "unknown truth `{m}` (auto, oracle, f64, stored, or a golden file)"
                ))
            })?),
            (m, _) => return Err(input_error(format!("unknown truth `{m}`"))),
        };
        let inputs = inputs.load()?;
        let outputs = outputs.load()?;
        let report = blocking::run(py, "judge", move || {
            let (mut input_file, input_label) = inputs.read()?;
            let p = problem_of(&mut input_file, &input_label)?;
            let (cand_file, cand_label) = outputs.read()?;
            let labels = Labels {
                input: input_label.clone(),
                candidate: cand_label,
            };
            let e = |e: JudgeError| e.to_string();
            let cand = read_candidate(&cand_file, &p, &labels).map_err(e)?;
            drop(cand_file);
            let backward = cand.has_gradients();
            let truth = match truth {
                TruthChoice::Mode(m) => Truth::choose(m, &input_file, &p, backward, &input_label)
                    .map_err(e)?,
                TruthChoice::File(src) => {
                    let (f, label) = src.read()?;
                    Truth::stored_for(&f, &p, backward, &label).map_err(e)?
                }
            };
            drop(input_file);
            verify(&p, &cand, &truth, &opts, labels).map_err(e)
        })?;
        Ok(PyVerifyReport { inner: report })
    })
}

// ---------------------------------------------------------------------------------------------
// The reference forms.

fn config(
    form: &str,
    compute: &str,
    round: Option<&str>,
    chunk: usize,
    sub_chunk: usize,
    dg: &str,
) -> PyResult<gla_judge::Implementation> {
    let c = Config {
        form: parse::<Form>(form)?,
        compute: parse::<Compute>(compute)?,
        round: round.map(parse::<Dtype>).transpose()?,
        chunk,
        sub_chunk,
        dg: parse::<DgForm>(dg)?,
    };
    c.implementation().map_err(|e| input_error(e.to_string()))
}

/// solve(tensors, metadata, form, compute, round, chunk, sub_chunk, dg, backward) -> dict
///
/// Run one reference form (gla_judge::solve); see `glacheck.reference`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (tensors, metadata, form, compute, round, chunk, sub_chunk, dg, backward))]
fn solve(
    py: Python<'_>,
    tensors: Vec<TensorArg<'_>>,
    metadata: BTreeMap<String, String>,
    form: &str,
    compute: &str,
    round: Option<&str>,
    chunk: usize,
    sub_chunk: usize,
    dg: &str,
    backward: Option<bool>,
) -> PyResult<Py<PyDict>> {
    guarded(|| {
        let imp = config(form, compute, round, chunk, sub_chunk, dg)?;
        let label = "<inputs>";
        let mut f = tensor_file(tensors, metadata, label)?;
        let (s, kind) = blocking::run(py, "solve", move || {
            let p = problem_of(&mut f, label)?;
            let backward = backward.unwrap_or(p.has_backward());
            let s = gla_judge::solve(&imp, &p, backward).map_err(|e| e.to_string())?;
            Ok((s, p.gate_kind()))
        })?;
        let d = PyDict::new(py);
        put_solution(&d, s, kind)?;
        d.set_item("implementation", imp.name())?;
        Ok(d.unbind())
    })
}

fn tensor_report<'py>(py: Python<'py>, t: &TensorReport) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &t.name)?;
    d.set_item("ratio", t.ratio)?;
    d.set_item("bound", t.bound)?;
    d.set_item("pass", t.pass)?;
    d.set_item("worst_index", t.worst_index.map(|i| i.to_vec()))?;
    d.set_item("worst_candidate", t.worst_candidate)?;
    d.set_item("worst_exact", t.worst_exact)?;
    d.set_item("worst_magnitude", t.worst_magnitude)?;
    d.set_item("max_abs_err", t.max_abs_err)?;
    d.set_item("rel_err", t.rel_err)?;
    d.set_item("nonfinite", t.candidate_nonfinite)?;
    d.set_item("first_nonfinite", t.first_nonfinite.map(|i| i.to_vec()))?;
    d.set_item("oracle_nonfinite", t.exact_nonfinite)?;
    d.set_item(
        "dg_ratios",
        t.dg.map(|r| {
            let m: BTreeMap<&str, f64> =
                [("reverse_cumsum", r.reverse_cumsum), ("local", r.local)].into();
            m
        }),
    )?;
    let model: BTreeMap<&str, f64> = [
        ("c", t.c),
        ("n_acc", t.n_acc),
        ("lambda", t.lambda),
        ("u_stages", t.u_stages),
        ("u_acc", t.u_acc),
        ("eta", t.eta),
    ]
    .into();
    d.set_item("model", model)?;
    Ok(d)
}

/// check(tensors, metadata, form, compute, round, chunk, sub_chunk, dg) -> dict
///
/// Judge one reference form against the oracle on the same (rounded) inputs, with the form's
/// own error bound (gla_judge::check_against_oracle); see `glacheck.reference.check`.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (tensors, metadata, form, compute, round, chunk, sub_chunk, dg))]
fn check(
    py: Python<'_>,
    tensors: Vec<TensorArg<'_>>,
    metadata: BTreeMap<String, String>,
    form: &str,
    compute: &str,
    round: Option<&str>,
    chunk: usize,
    sub_chunk: usize,
    dg: &str,
) -> PyResult<Py<PyDict>> {
    guarded(|| {
        let imp = config(form, compute, round, chunk, sub_chunk, dg)?;
        let label = "<inputs>";
        let mut f = tensor_file(tensors, metadata, label)?;
        let verdicts = blocking::run(py, "check", move || {
            let p = problem_of(&mut f, label)?;
            let v = gla_judge::check_against_oracle(&p, &[imp]).map_err(|e| e.to_string())?;
            let text = gla_judge::check::failures(&v);
            Ok((v, text))
        })?;
        let (v, failures) = verdicts;
        let d = PyDict::new(py);
        d.set_item("implementation", imp.name())?;
        let verdict = &v
            .first()
            .ok_or_else(|| InternalError::new_err("no verdict"))?
            .1;
        d.set_item("pass", verdict.pass())?;
        d.set_item("failures", failures)?;
        let tensors = PyList::empty(py);
        match verdict {
            Verdict::Judged(r) => {
                d.set_item("table", r.to_string())?;
                for t in &r.tensors {
                    tensors.append(tensor_report(py, t)?)?;
                }
            }
            Verdict::NotApplicable(why) => d.set_item("not_applicable", why)?,
            Verdict::Error(e) => d.set_item("error", e.to_string())?,
        }
        d.set_item("tensors", tensors)?;
        Ok(d.unbind())
    })
}

// ---------------------------------------------------------------------------------------------
// The catalog.

/// case_names() -> list[str]
///
/// The names of the catalog's cases, in catalog order.
#[pyfunction]
fn case_names() -> Vec<&'static str> {
    gla_fixtures::catalog::names()
}

/// golden_names() -> list[str]
///
/// The cases whose golden file (stored oracle truth) is embedded in this build.
#[pyfunction]
fn golden_names() -> Vec<&'static str> {
    GOLDENS.iter().map(|(n, _)| *n).collect()
}

/// golden_bytes(name) -> bytes
///
/// The bytes of an embedded golden file (a safetensors file, as in fixtures/golden/).
#[pyfunction]
fn golden_bytes(py: Python<'_>, name: &str) -> PyResult<Py<pyo3::types::PyBytes>> {
    let (_, b) = GOLDENS
        .iter()
        .find(|(n, _)| *n == name)
        .ok_or_else(|| input_error(format!("no golden file for `{name}` in this build")))?;
    Ok(pyo3::types::PyBytes::new(py, b).unbind())
}

/// case(name) -> dict
///
/// One catalog case: its description, its inputs and, from its golden file, the oracle's truth
/// and the MPFR magnitudes; see `glacheck.case`.
#[pyfunction]
fn case(py: Python<'_>, name: &str) -> PyResult<Py<PyDict>> {
    guarded(|| {
        let c = gla_fixtures::catalog::case(name).ok_or_else(|| {
            input_error(format!(
                "no case named `{name}` (see glacheck.case_names(); known: {})",
                gla_fixtures::catalog::names().join(", ")
            ))
        })?;
        let golden = GOLDENS.iter().find(|(n, _)| *n == name);
        let file = match golden {
            Some((n, bytes)) => {
                gla_fixtures::io::parse_tensors(bytes, Path::new(&format!("{n}.safetensors")))
                    .map_err(|e| InternalError::new_err(e.to_string()))?
            }
            None => {
                let mut f = TensorFile::default();
                for t in c.input_tensors() {
                    f.tensors.insert(
                        t.name,
                        StoredTensor {
                            dtype: t.dtype,
                            values: t.values,
                        },
                    );
                }
                if let Some(p) = c.problem() {
                    f.metadata
                        .insert("scale".into(), gla_fixtures::io::format_f64(p.scale()));
                }
                f
            }
        };
        let d = PyDict::new(py);
        d.set_item("name", c.name)?;
        d.set_item("description", c.description)?;
        d.set_item("regime", c.regime)?;
        d.set_item("failure_mode", c.failure_mode)?;
        d.set_item("seed", c.seed)?;
        d.set_item(
            "kind",
            if c.must_reject() {
                "must_reject"
            } else {
                "valid"
            },
        )?;
        put_file(&d, &file, c.must_reject() || golden.is_none())?;
        if c.must_reject() {
            let err = c
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            d.set_item("expected_error", err)?;
        }
        d.set_item("golden", golden.is_some())?;
        Ok(d.unbind())
    })
}

/// Put a file's tensors into `d` by role: `inputs` (with `scale`), and unless `inputs_only`,
/// `truth` (o, ht, gradients) and `magnitudes` (m_*); then `metadata`.
fn put_file(d: &Bound<'_, PyDict>, file: &TensorFile, inputs_only: bool) -> PyResult<()> {
    let py = d.py();
    let inputs = PyDict::new(py);
    for n in INPUT_NAMES {
        if let Some(t) = file.tensors.get(n) {
            inputs.set_item(n, convert::stored(py, t))?;
        }
    }
    if let Ok(Some(s)) = file.scale() {
        inputs.set_item("scale", s)?;
    }
    d.set_item("inputs", inputs)?;
    if !inputs_only {
        let truth = PyDict::new(py);
        for n in OUTPUT_NAMES {
            if let Some(t) = file.tensors.get(n) {
                truth.set_item(n, convert::stored(py, t))?;
            }
        }
        d.set_item("truth", truth)?;
        let mags = PyDict::new(py);
        for n in gla_fixtures::golden::MAGNITUDE_NAMES {
            if let Some(t) = file.tensors.get(n) {
                mags.set_item(n, convert::stored(py, t))?;
            }
        }
        d.set_item("magnitudes", mags)?;
    }
    d.set_item("metadata", file.metadata.clone())?;
    Ok(())
}

/// load(path) -> dict
///
/// A glacheck safetensors file (a golden file, inputs, or a candidate's outputs) split by role
/// like a case; see `glacheck.load`.
#[pyfunction]
fn load(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyDict>> {
    guarded(|| {
        let file = gla_fixtures::io::read_tensors(&path).map_err(|e| input_error(e.to_string()))?;
        let d = PyDict::new(py);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = file.metadata.get("case").cloned().unwrap_or(stem);
        d.set_item("name", name)?;
        let kind = file
            .metadata
            .get("kind")
            .cloned()
            .unwrap_or_else(|| "valid".into());
        d.set_item("kind", &kind)?;
        for key in ["description", "regime"] {
            d.set_item(key, file.metadata.get(key).cloned().unwrap_or_default())?;
        }
        d.set_item(
            "failure_mode",
            file.metadata
                .get("failure_mode")
                .filter(|s| !s.is_empty())
                .cloned(),
        )?;
        put_file(&d, &file, false)?;
        if let Some(e) = file.metadata.get("expected_error") {
            d.set_item("expected_error", e)?;
        }
        let stored = ["o", "ht", "m_o", "m_ht"].iter().all(|n| file.contains(n));
        d.set_item("golden", stored)?;
        d.set_item("path", path.display().to_string())?;
        Ok(d.unbind())
    })
}

/// gate_regimes() -> list[str]
///
/// The generator's gate regimes, simplest first (`gla_fixtures::gen::GateRegime`).
#[pyfunction]
fn gate_regimes() -> Vec<String> {
    GateRegime::ALL.iter().map(|r| r.name().to_string()).collect()
}

/// value_regimes() -> list[str]
///
/// The generator's value regimes, simplest first (`gla_fixtures::gen::ValueRegime`).
#[pyfunction]
fn value_regimes() -> Vec<String> {
    ValueRegime::ALL.iter().map(|r| r.name().to_string()).collect()
}

/// generate(b, t, h, k, v, *, scalar=False, gates="mild", values="signed-normal", h0=False,
///          dht=False, seq_lens=None, scale=None, grid="bf16", seed=0) -> dict
///
/// One problem from the generator of the Rust property suite (`gla_fixtures::gen::ProblemSpec`):
/// q, k, v, g (`[B, T, H]` for scalar gates), do, and h0, dht, cu_seqlens when asked for, as
/// float64 numpy arrays (cu_seqlens int64), plus `scale`. Deterministic in its arguments. With
/// `seq_lens` (packed varlen; empty sequences allowed) `b` must be 1 and `t` their sum. `grid`
/// ("bf16", "f32" or "f64") is the format every input is rounded to.
#[pyfunction]
#[pyo3(signature = (b, t, h, k, v, *, scalar=false, gates="mild", values="signed-normal", h0=false, dht=false, seq_lens=None, scale=None, grid="bf16", seed=0))]
#[allow(clippy::too_many_arguments)]
fn generate(
    py: Python<'_>,
    b: usize,
    t: usize,
    h: usize,
    k: usize,
    v: usize,
    scalar: bool,
    gates: &str,
    values: &str,
    h0: bool,
    dht: bool,
    seq_lens: Option<Vec<usize>>,
    scale: Option<f64>,
    grid: &str,
    seed: u64,
) -> PyResult<Py<PyDict>> {
    guarded(|| {
        let gate: GateRegime = gates
            .parse()
            .map_err(|e| input_error(format!("{e} (known: {})", gate_regimes().join(", "))))?;
        let value: ValueRegime = values
            .parse()
            .map_err(|e| input_error(format!("{e} (known: {})", value_regimes().join(", "))))?;
        let grid = match grid {
            "bf16" => Dtype::Bf16,
            "f32" => Dtype::F32,
            "f64" => Dtype::F64,
            other => {
                return Err(input_error(format!(
                    "unknown grid `{other}` (known: bf16, f32, f64)"
                )))
            }
        };
        if let Some(l) = &seq_lens {
            if b != 1 || l.iter().sum::<usize>() != t {
                return Err(input_error(format!(
                    "with seq_lens, b must be 1 and t their sum (b = {b}, t = {t}, sum = {})",
                    l.iter().sum::<usize>()
                )));
            }
        }
        if [b, t, h, k, v].contains(&0) {
            return Err(input_error(format!(
                "every size must be at least 1 (b = {b}, t = {t}, h = {h}, k = {k}, v = {v})"
            )));
        }
        let spec = ProblemSpec {
            b,
            t,
            h,
            k,
            v,
            gate_kind: if scalar {
                GateKind::Scalar
            } else {
                GateKind::PerChannel
            },
            gates: gate,
            values: value,
            h0,
            dht,
            seq_lens,
            scale,
            grid,
            seed,
        };
        let p = spec.build().map_err(|e| input_error(e.to_string()))?;
        let d = PyDict::new(py);
        for x in gla_fixtures::io::problem_tensors(&p, gla_fixtures::io::FileDtype::F64) {
            if x.name == "cu_seqlens" {
                d.set_item(
                    x.name,
                    numpy::PyArray::from_owned_array(py, x.values.mapv(|y| y as i64)),
                )?;
            } else {
                d.set_item(x.name, numpy::PyArray::from_owned_array(py, x.values))?;
            }
        }
        d.set_item("scale", p.scale())?;
        Ok(d.unbind())
    })
}

/// validate(tensors, metadata, label) -> None
///
/// Check that the tensors form a valid problem (the file reader's checks and messages); raise
/// InputError otherwise.
#[pyfunction]
fn validate(
    tensors: Vec<TensorArg<'_>>,
    metadata: BTreeMap<String, String>,
    label: &str,
) -> PyResult<()> {
    guarded(|| {
        let mut f = tensor_file(tensors, metadata, label)?;
        problem_of(&mut f, label).map_err(input_error)?;
        Ok(())
    })
}

/// Large blocks with transparent huge pages (`gla_judge::alloc`), as the command line: judging at
/// training shapes spends half its time in page faults without.
#[global_allocator]
static ALLOC: gla_judge::alloc::HugePages = gla_judge::alloc::HugePages;

/// The compiled core of the `glacheck` package (use the package, not this module).
#[pymodule]
fn _glacheck(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("InternalError", py.get_type::<InternalError>())?;
    m.add_class::<PyVerifyReport>()?;
    m.add_function(wrap_pyfunction!(oracle, m)?)?;
    m.add_function(wrap_pyfunction!(judge, m)?)?;
    m.add_function(wrap_pyfunction!(solve, m)?)?;
    m.add_function(wrap_pyfunction!(check, m)?)?;
    m.add_function(wrap_pyfunction!(case_names, m)?)?;
    m.add_function(wrap_pyfunction!(golden_names, m)?)?;
    m.add_function(wrap_pyfunction!(golden_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(case, m)?)?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(validate, m)?)?;
    m.add_function(wrap_pyfunction!(generate, m)?)?;
    m.add_function(wrap_pyfunction!(gate_regimes, m)?)?;
    m.add_function(wrap_pyfunction!(value_regimes, m)?)?;
    m.add(
        "GOLDEN_ORACLE_THREADS",
        gla_fixtures::golden::ORACLE_THREADS,
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
