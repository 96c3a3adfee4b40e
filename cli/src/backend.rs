//! The one place where the CLI calls into the library crates. Subcommands see only the small
//! types defined or re-exported here, so a library API change touches this file alone.

use anyhow::{anyhow, bail, Result};
pub use gla_fixtures::io::{FileDtype, TensorFile};
pub use gla_reference::bounds::TensorReport;
use gla_reference::bounds::{compare, magnitudes, Algorithm, BoundSpec, DgForm, Magnitudes};
use gla_reference::{Dtype, Problem, Solution};
use std::collections::BTreeMap;
use std::path::Path;

// ---------------------------------------------------------------------------------------------
// Files (gla-fixtures owns the format)
// ---------------------------------------------------------------------------------------------

/// Read a safetensors file (every message names the file).
pub fn read_file(path: &Path) -> Result<TensorFile> {
    gla_fixtures::io::read_tensors(path).map_err(|e| anyhow!("{e}"))
}

/// Read and validate an input file: the problem and the whole file.
pub fn read_problem(path: &Path) -> Result<(Problem, TensorFile)> {
    let f = read_file(path)?;
    let p = f
        .problem()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok((p, f))
}

/// Write a solution (o, ht and the gradients when present; scalar-gate dg as `[B,T,H]`) with
/// metadata, atomically: on any error nothing at `path` is created or changed.
pub fn write_solution(
    path: &Path,
    p: &Problem,
    s: &Solution,
    dtype: Dtype,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<String>> {
    let fd = FileDtype::from_dtype(dtype).map_err(|e| anyhow!("{e}"))?;
    let tensors = gla_fixtures::io::solution_tensors(s, p.gate_kind(), fd);
    let names = tensors.iter().map(|t| t.name.clone()).collect();
    gla_fixtures::io::write_tensors(path, &tensors, metadata).map_err(|e| anyhow!("{e}"))?;
    Ok(names)
}

/// Shortest round-trip decimal of an f64 (metadata values).
pub fn format_f64(x: f64) -> String {
    gla_fixtures::io::format_f64(x)
}

// ---------------------------------------------------------------------------------------------
// Solvers (gla-oracle; gla-proptests' Implementation enum over gla-reference and gla-gpu)
// ---------------------------------------------------------------------------------------------

use gla_proptests::implementation::{Compute as PCompute, DgFormKey, Round as PRound};
pub use gla_proptests::Implementation;
use gla_proptests::Verdict;

/// Which solver (`eval --impl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum ImplKind {
    /// MPFR recurrence (gla-oracle), converged past f64.
    Oracle,
    /// Recurrent form (gla-reference).
    Recurrent,
    /// Log-space parallel form (gla-reference).
    Parallel,
    /// Two-level chunked form with rounding emulation (gla-reference).
    Chunked,
    /// CUDA chunked kernels (gla-gpu).
    Gpu,
}

impl ImplKind {
    /// Lower-case name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ImplKind::Oracle => "oracle",
            ImplKind::Recurrent => "recurrent",
            ImplKind::Parallel => "parallel",
            ImplKind::Chunked => "chunked",
            ImplKind::Gpu => "gpu",
        }
    }
}

/// A float solver as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SolverConfig {
    /// Which form (not the oracle).
    pub kind: ImplKind,
    /// Compute type (f32 or f64).
    pub compute: Dtype,
    /// Rounding plan of the chunked form (`RoundingPlan::kernel_default(dtype)`, fla's kernel
    /// plan; inputs are rounded to that dtype first) or the GPU kernels' input dtype.
    pub round: Option<Dtype>,
    /// Chunk length C.
    pub chunk: usize,
    /// Sub-chunk length c.
    pub sub_chunk: usize,
    /// Gate-gradient algorithm (recurrent, chunked, gpu; the parallel form has only the reverse
    /// cumsum).
    pub dg: DgForm,
}

impl SolverConfig {
    /// The implementation it names.
    pub fn implementation(&self) -> Result<Implementation> {
        let compute = match self.compute {
            Dtype::F32 => PCompute::F32,
            Dtype::F64 => PCompute::F64,
            d => bail!("compute type {d} is not supported (use f32 or f64)"),
        };
        let round = match self.round {
            None => PRound::None,
            Some(Dtype::Bf16) => PRound::Bf16,
            Some(Dtype::F16) => PRound::F16,
            Some(d) => bail!("rounding to {d} is not supported (use bf16 or f16)"),
        };
        if self.dg == DgForm::Local && self.kind == ImplKind::Parallel {
            bail!("--dg-form local: the parallel form computes dg by the reverse cumsum only");
        }
        let imp = match self.kind {
            ImplKind::Oracle => bail!("the oracle is not a float implementation"),
            ImplKind::Recurrent => Implementation::Recurrent {
                compute,
                dg: DgFormKey::ReverseCumsum,
            },
            ImplKind::Parallel => Implementation::Parallel { compute },
            ImplKind::Chunked => Implementation::Chunked {
                compute,
                chunk: self.chunk,
                sub_chunk: self.sub_chunk,
                round,
                dg: DgFormKey::ReverseCumsum,
            },
            ImplKind::Gpu => {
                let dtype = self.round.unwrap_or(Dtype::F32);
                let imp = Implementation::gpu(dtype);
                if !gla_proptests::gpu::candidates().contains(&imp) {
                    bail!(
                        "gpu: no kernel for inputs in {dtype} (available: {:?})",
                        gla_proptests::gpu::candidates()
                            .iter()
                            .map(|i| i.name())
                            .collect::<Vec<_>>()
                    );
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

/// The oracle's answer.
#[derive(Debug, Clone)]
pub struct OracleOut {
    /// Exact result rounded once to f64.
    pub solution: Solution,
    /// Working precision (bits) of the last evaluation.
    pub precision: u32,
    /// Bits on which the last two precisions agreed.
    pub bits_agreed: u32,
}

/// Run the MPFR oracle (forward, and backward when asked), converged to agree well past f64.
pub fn oracle(p: &Problem, backward: bool) -> Result<OracleOut> {
    let opts = gla_oracle::OracleOptions {
        backward,
        ..Default::default()
    };
    let r = gla_oracle::evaluate(p, &opts)?;
    Ok(OracleOut {
        solution: r.solution,
        precision: r.precision,
        bits_agreed: r.bits_agreed,
    })
}

/// Run a float implementation. Its inputs are first rounded to its input dtype (f32 for f32
/// compute, the plan's dtype for rounded plans; exact for inputs already in that format).
pub fn solve(imp: &Implementation, p: &Problem, backward: bool) -> Result<Solution> {
    if imp.is_gpu() {
        if let Err(why) = gpu_available() {
            bail!("{}: no usable GPU ({why})", imp.name());
        }
    }
    Ok(gla_proptests::solve(imp, p, backward)?)
}

/// Whether a CUDA device is usable (Ok: a description; Err: why not).
pub fn gpu_available() -> std::result::Result<String, String> {
    if gla_proptests::gpu::available() {
        Ok(format!(
            "kernels {}",
            gla_proptests::gpu::candidates()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(gla_proptests::gpu::unavailable_reason()
            .unwrap_or_else(|| "disabled by GLA_NO_GPU".into()))
    }
}

/// Magnitude tensors of a problem (spec section 8).
pub fn mags(p: &Problem) -> Magnitudes {
    magnitudes(p)
}

/// Judge a candidate (spec 8.1).
pub fn judge(
    p: &Problem,
    exact: &Solution,
    m: &Magnitudes,
    cand: &Solution,
    spec: &BoundSpec,
) -> Result<Vec<TensorReport>> {
    Ok(compare(p, exact, m, cand, spec)?.tensors)
}

/// The error models of `verify` (forward outputs o, ht; gradients), consistent with how
/// gla-proptests judges the chunked candidates: the chunked algorithm with chunk C (n_acc,
/// lambda), the chunked family's calibrated constants, accumulation in f32 (f64 for f64), and
/// for tf32 / bf16 / f16 the rounding stages of fla's kernel plan
/// (`RoundingPlan::kernel_default(precision)`: q*exp(Gl), k*exp(Gl_last - Gl), the chunk states
/// H_p, A before A@V and the output o, i.e. 5 stages for o and hT; plus the final gradients,
/// 6 stages, for dq, dk, dv, dg, dh0). `extra` adds stages (e.g. a coarser storage dtype).
pub fn verify_specs(
    precision: Dtype,
    chunk: usize,
    dg: DgForm,
    extra: &[Dtype],
) -> (BoundSpec, BoundSpec) {
    let acc = if precision == Dtype::F64 {
        Dtype::F64
    } else {
        Dtype::F32
    };
    let plan = if matches!(precision, Dtype::F64 | Dtype::F32) {
        gla_reference::rounding::RoundingPlan::none()
    } else {
        gla_reference::rounding::RoundingPlan::kernel_default(precision)
    };
    let pts = plan.points();
    let stages = |n: usize| -> Vec<Dtype> {
        pts[..n]
            .iter()
            .filter_map(|(_, d)| *d)
            .filter(|d| !matches!(d, Dtype::F32 | Dtype::F64))
            .chain(extra.iter().copied())
            .collect()
    };
    let base = BoundSpec::new(Algorithm::Chunked { chunk }, acc).with_dg_form(dg);
    // Points 0..9 are the forward pass's (see RoundingPlan::forward_u_sum).
    (
        base.clone().with_stages(&stages(9)),
        base.with_stages(&stages(pts.len())),
    )
}

// ---------------------------------------------------------------------------------------------
// Catalog and `check`
// ---------------------------------------------------------------------------------------------

/// One case of the built-in catalog.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short name.
    pub name: String,
    /// One-line description (gate regime, shapes).
    pub description: String,
    /// The problem (with backward seeds).
    pub problem: Problem,
}

/// The built-in catalog's valid cases (gla-fixtures), in catalog order.
pub fn catalog() -> Result<Vec<Case>> {
    Ok(gla_fixtures::catalog::cases()
        .into_iter()
        .filter_map(|c| {
            c.problem().map(|problem| Case {
                name: c.name.to_string(),
                description: c.description.to_string(),
                problem,
            })
        })
        .collect())
}

/// The catalog's must-reject cases (inputs outside GLA's domain): (name, description, the
/// validation error, or None when validation wrongly accepted the input).
pub fn must_reject_cases() -> Vec<(String, String, Option<String>)> {
    gla_fixtures::catalog::cases()
        .into_iter()
        .filter(|c| c.must_reject())
        .map(|c| {
            (
                c.name.to_string(),
                c.description.to_string(),
                c.validate().err().map(|e| e.to_string()),
            )
        })
        .collect()
}

/// The implementations `check` runs: every CPU implementation and precision of
/// [`Implementation::all_cpu`] (recurrent f32/f64 and its local-dg variant, parallel f32/f64,
/// chunked f32/f64 at two chunkings, chunked with fla's bf16 and fp16 kernel plans), plus the GPU
/// kernels when usable: the same list the property suite iterates over.
pub fn check_implementations(gpu: bool) -> Vec<Implementation> {
    let mut v = Implementation::all_cpu();
    if gpu {
        v.extend(gla_proptests::gpu::candidates());
    }
    v
}

/// One row of the `check` table.
#[derive(Debug, Clone)]
pub struct CheckRow {
    /// Case name.
    pub case: String,
    /// Implementation name.
    pub imp: String,
    /// Per-tensor verdicts: forward o, ht; backward run o.bwd, ht.bwd, dq, dk, dv, dg, dh0.
    pub tensors: Vec<TensorReport>,
    /// Why the row could not be judged (oracle or solver error): the row fails.
    pub error: Option<String>,
    /// Why the implementation does not apply to the case (input overflows its format): not a failure.
    pub not_applicable: Option<String>,
}

impl CheckRow {
    /// The verdict of one output.
    pub fn tensor(&self, name: &str) -> Option<&TensorReport> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// Row verdict.
    pub fn pass(&self) -> bool {
        self.error.is_none() && self.tensors.iter().all(|t| t.pass)
    }
    /// The bound of the tensor with the largest ratio/bound.
    pub fn tightest_bound(&self) -> Option<f64> {
        self.tensors
            .iter()
            .max_by(|a, b| (a.ratio / a.bound).total_cmp(&(b.ratio / b.bound)))
            .map(|t| t.bound)
    }
    /// Human-readable reasons for a failure.
    pub fn failure_lines(&self) -> Vec<String> {
        if let Some(e) = &self.error {
            return vec![e.clone()];
        }
        self.tensors
            .iter()
            .filter(|t| !t.pass)
            .map(|t| {
                if t.candidate_nonfinite > 0 {
                    format!(
                        "{}: {} non-finite value(s) where the oracle is finite, first at {:?}",
                        t.name,
                        t.candidate_nonfinite,
                        t.first_nonfinite.unwrap_or_default()
                    )
                } else {
                    format!(
                        "{}: ratio {:.3e} > bound {:.3e} at {:?} (got {:e}, exact {:e}, M {:e})",
                        t.name,
                        t.ratio,
                        t.bound,
                        t.worst_index.unwrap_or_default(),
                        t.worst_candidate,
                        t.worst_exact,
                        t.worst_magnitude
                    )
                }
            })
            .collect()
    }
}

/// Run one case through gla-proptests' oracle cross-check harness (`check_against_oracle_as`,
/// recorded under the property name `check`): inputs rounded to each implementation's input
/// dtype, the MPFR oracle once per distinct prepared problem, every implementation forward and
/// (where it supports it) forward + backward, judged with spec 8.1's bounds (forward outputs with
/// the forward rounding stages; backward-run outputs, reported as `o.bwd`/`ht.bwd`, dq, ..., with
/// all of them); GPU rows also by the "at most twice the CPU emulation" rule (`o~2x`, `ht~2x`).
pub fn check_case(case: &Case, impls: &[Implementation]) -> Vec<CheckRow> {
    let row = |imp: &Implementation| CheckRow {
        case: case.name.clone(),
        imp: imp.name(),
        tensors: vec![],
        error: None,
        not_applicable: None,
    };
    match gla_proptests::harness::check_against_oracle_as("check", &case.problem, impls) {
        Err(e) => impls
            .iter()
            .map(|i| CheckRow {
                error: Some(format!("oracle: {e}")),
                ..row(i)
            })
            .collect(),
        Ok(verdicts) => verdicts
            .into_iter()
            .map(|(imp, v)| match v {
                Verdict::Judged(r) => CheckRow {
                    tensors: r.tensors,
                    ..row(&imp)
                },
                Verdict::NotApplicable(why) => CheckRow {
                    not_applicable: Some(why),
                    ..row(&imp)
                },
                Verdict::Error(e) => CheckRow {
                    error: Some(e.to_string()),
                    ..row(&imp)
                },
            })
            .collect(),
    }
}

/// Run the property-test suite (gla-proptests; sizes from `GLA_DEEP` / `PROPTEST_CASES`),
/// printing its progress and summary table to stdout. True when everything passed.
pub fn deep_suite() -> bool {
    gla_proptests::suite::run_and_print(&gla_proptests::suite::SuiteOptions::from_env(), None)
}

// ---------------------------------------------------------------------------------------------
// Golden fixtures
// ---------------------------------------------------------------------------------------------

/// The golden directory: `dir`, or the source tree's `fixtures/golden`.
fn golden_dir(dir: Option<&Path>) -> std::path::PathBuf {
    dir.map(Path::to_path_buf)
        .unwrap_or_else(gla_fixtures::golden::default_dir)
}

/// Regenerate golden files (every case, or `only`), one case at a time with a progress bar.
pub fn fixtures_regen(dir: Option<&Path>, only: Option<&str>) -> Result<crate::common::Status> {
    let dir = golden_dir(dir);
    let names: Vec<&str> = match only {
        Some(n) => {
            if gla_fixtures::catalog::case(n).is_none() {
                bail!(
                    "no case named `{n}` (cases: {})",
                    gla_fixtures::catalog::names().join(", ")
                );
            }
            vec![n]
        }
        None => gla_fixtures::catalog::names(),
    };
    let pb = crate::common::progress(names.len() as u64, "regen");
    let mut changed = 0;
    for n in &names {
        pb.set_message(n.to_string());
        for r in gla_fixtures::golden::regen(&dir, Some(n)).map_err(|e| anyhow!("{e}"))? {
            pb.suspend(|| {
                crate::outln!(
                    "{} {}",
                    if r.changed { "wrote    " } else { "unchanged" },
                    r.path.display()
                );
            });
            changed += r.changed as usize;
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    crate::outln!(
        "{} of {} golden file(s) changed in {}",
        changed,
        names.len(),
        dir.display()
    );
    if changed > 0 {
        crate::outln!(
            "review with `git diff --stat {}` and `glacheck fixtures check`",
            dir.display()
        );
    }
    Ok(crate::common::Status::Ok)
}

/// Check the golden files byte for byte against what the code produces now.
pub fn fixtures_check(dir: Option<&Path>) -> Result<crate::common::Status> {
    let dir = golden_dir(dir);
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(format!(
        "regenerating {} case(s) in memory",
        gla_fixtures::catalog::names().len()
    ));
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    let mismatches = gla_fixtures::golden::check(&dir, None).map_err(|e| anyhow!("{e}"))?;
    pb.finish_and_clear();
    if mismatches.is_empty() {
        crate::outln!(
            "PASS: {} golden file(s) in {} match the code",
            gla_fixtures::catalog::names().len(),
            dir.display()
        );
        Ok(crate::common::Status::Ok)
    } else {
        for m in &mismatches {
            crate::outln!("FAIL {m}");
        }
        crate::outln!(
            "FAIL: {} mismatch(es) in {}; if the change is intended, run `glacheck fixtures regen` and review the diff",
            mismatches.len(),
            dir.display()
        );
        Ok(crate::common::Status::Fail)
    }
}
