//! The mutant benchmark: every mutant of [`super::mutants`] and every honest implementation
//! judged on the catalog cases by four judges (glacheck's verdict and the anchors' rules of
//! [`super::anchors`]), and the table `glacheck mutants` prints.
//!
//! * A judge **catches** a mutant on a case when it fails one of the mutant's tensors and passes
//!   the same tensor of the mutant's origin (the honest implementation it differs from).
//! * A **false alarm** is a judge failing a tensor of an honest implementation
//!   ([`honest_candidates`]: every CPU form in the registry at its declared arithmetic, the GPU
//!   kernels' CPU twins with their training plans, the textbook forward, a perfectly rounded bf16
//!   result and an emulation of fla's `fused_recurrent` in bf16).
//! * [`Benchmark::gate_ok`]: glacheck catches every mutant that an anchor catches (on some case)
//!   and raises no false alarm.
//!
//! ```no_run
//! use gla_judge::mutants::bench::{catalog_cases, run, Options};
//! let cases = catalog_cases(&gla_fixtures::golden::default_dir(), None)?;
//! let b = run(&cases, &Options::default())?;
//! println!("{}", b.render());
//! assert!(b.gate_ok());
//! # Ok::<(), gla_judge::JudgeError>(())
//! ```

use super::anchors::{cudnn_pass, fa_pass, fla_pass};
use super::{mutants, origin_candidate, Mutant, Origin, CHUNK};
use crate::baseline::DeclaredPlan;
use crate::format::table;
use crate::truth::Truth;
use crate::verify::{
    declared_options, verify, Candidate, Empirical, Labels, VerifyOptions, VerifyReport,
};
use crate::{solve, Compute, DgFormKey, Implementation, JudgeError, Round};
use gla_reference::bounds::DgForm;
use gla_reference::chunked::{self, ChunkOptions};
use gla_reference::{recurrent, Dtype, Problem, Solution};
use ndarray::Array4;
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

/// One catalog case with its truth.
#[derive(Debug, Clone)]
pub struct Case {
    /// The catalog name.
    pub name: String,
    /// The problem as stored in the golden file.
    pub problem: Problem,
    /// The stored truth (with gradients).
    pub truth: Truth,
}

/// The valid catalog cases (those named in `only`, or all) with the truth stored in their golden
/// files in `dir` (the MPFR oracle when a file lacks it).
pub fn catalog_cases(dir: &Path, only: Option<&[String]>) -> Result<Vec<Case>, JudgeError> {
    let mut out = Vec::new();
    for c in gla_fixtures::catalog::cases() {
        if c.must_reject() || only.is_some_and(|o| !o.iter().any(|n| n == c.name)) {
            continue;
        }
        let path = gla_fixtures::golden::path_of(dir, c.name);
        let (problem, truth) = match gla_fixtures::io::read_tensors(&path) {
            Ok(f) => {
                let p = f.problem()?;
                let t = match Truth::stored(&f, &p, p.has_backward())? {
                    Some(t) => t,
                    None => Truth::oracle(&p, p.has_backward())?,
                };
                (p, t)
            }
            Err(_) => {
                let p = c.problem().expect("valid case");
                let t = Truth::oracle(&p, p.has_backward())?;
                (p, t)
            }
        };
        out.push(Case {
            name: c.name.to_string(),
            problem,
            truth,
        });
    }
    Ok(out)
}

/// The four judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JudgeName {
    /// glacheck's verdict: the derived bound, the baseline rule and the bias test.
    Glacheck,
    /// fla's `assert_close` (relative RMS against an fp32 recurrence).
    Fla,
    /// FlashAttention's `max error <= 2x a same-dtype reference's`.
    FlashAttention,
    /// cuDNN frontend's `rtol = atol = 2e-2`.
    Cudnn,
}

/// The judges in table order.
pub const JUDGES: [JudgeName; 4] = [
    JudgeName::Glacheck,
    JudgeName::Fla,
    JudgeName::FlashAttention,
    JudgeName::Cudnn,
];

impl JudgeName {
    /// The column name.
    pub fn name(self) -> &'static str {
        match self {
            JudgeName::Glacheck => "glacheck",
            JudgeName::Fla => "fla",
            JudgeName::FlashAttention => "FlashAttention",
            JudgeName::Cudnn => "cuDNN",
        }
    }
}

/// Every judge's per-tensor verdicts on one candidate.
#[derive(Debug, Clone)]
pub struct Verdicts {
    /// The tensors judged.
    pub tensors: Vec<&'static str>,
    /// `pass[judge][tensor]`, judges in [`JUDGES`] order.
    pub pass: [Vec<bool>; 4],
    /// The glacheck rules each tensor fails (`bound`, `baseline-max`, `baseline-rms`, `bias`).
    pub rules: Vec<Vec<&'static str>>,
    /// glacheck's numbers for each tensor, in words.
    pub numbers: Vec<String>,
}

/// The references the anchor judges compare with on one problem (docs in [`super::anchors`]):
/// fla's fp32 loop, FlashAttention's high-precision reference and its same-dtype PyTorch
/// reference, cuDNN's reference.
pub struct AnchorRefs {
    rec32: Solution,
    hi: Solution,
    pt: Solution,
}

impl AnchorRefs {
    /// The references for a candidate of declared `precision` on `p`.
    pub fn new(p: &Problem, precision: Dtype) -> Result<AnchorRefs, JudgeError> {
        let bwd = p.has_backward();
        let rec = |f64c: bool| -> Result<Solution, JudgeError> {
            Ok(match (f64c, bwd) {
                (false, false) => recurrent::forward::<f32>(p)?,
                (false, true) => recurrent::backward_with::<f32>(p, DgForm::Local)?,
                (true, false) => recurrent::forward::<f64>(p)?,
                (true, true) => recurrent::backward_with::<f64>(p, DgForm::Local)?,
            })
        };
        let rec32 = rec(false)?;
        Ok(if matches!(precision, Dtype::F32 | Dtype::F64) {
            AnchorRefs {
                hi: rec(true)?,
                pt: rec32.clone(),
                rec32,
            }
        } else {
            AnchorRefs {
                hi: rec32.clone(),
                pt: super::same_dtype::recurrence(p, precision),
                rec32,
            }
        })
    }

    /// The anchors' verdicts on output tensor `name` with values `x`: [fla's RMS rule,
    /// FlashAttention's 2x rule, cuDNN's tolerance], true = pass.
    pub fn passes(&self, name: &str, x: &Array4<f64>) -> [bool; 3] {
        let (rec32, hi, pt) = [&self.rec32, &self.hi, &self.pt]
            .map(|s| s.tensor(name).expect("same outputs"))
            .into();
        [fla_pass(x, rec32), fa_pass(x, hi, pt), cudnn_pass(x, hi)]
    }
}

fn judge_with(
    case: &Case,
    cand: &Candidate,
    opts: &VerifyOptions,
    refs: &AnchorRefs,
    label: &str,
) -> Result<Verdicts, JudgeError> {
    let labels = Labels {
        input: case.name.clone(),
        candidate: label.to_string(),
    };
    let report = verify(&case.problem, cand, &case.truth, opts, labels)?;
    let mut v = Verdicts {
        tensors: Vec::new(),
        pass: Default::default(),
        rules: Vec::new(),
        numbers: Vec::new(),
    };
    for (name, x, _) in &cand.tensors {
        let rules = report.failed_rules(name);
        if let Some((t, e)) = report
            .tensors
            .iter()
            .zip(&report.empirical)
            .find(|(t, _)| t.name == *name)
        {
            let b = &e.baseline;
            v.numbers.push(format!(
                "ratio/bound {:.3}, max x{:.2}, RMS x{:.2}, t {:.1}, beta/u {:.3} (limit {:.3})",
                t.ratio / t.bound,
                b.max_ratio().unwrap_or(0.0),
                b.rms_ratio().unwrap_or(0.0),
                e.bias.t,
                e.bias.beta_units(),
                e.bias.beta_limit() / e.bias.u
            ));
        } else {
            v.numbers.push(String::new());
        }
        v.pass[0].push(rules.is_empty());
        for (j, ok) in refs.passes(name, x).into_iter().enumerate() {
            v.pass[j + 1].push(ok);
        }
        v.tensors.push(name);
        v.rules.push(rules);
    }
    Ok(v)
}

fn mutant_options(m: &Mutant) -> VerifyOptions {
    VerifyOptions {
        precision: m.precision,
        chunk: CHUNK,
        dg: DgForm::ReverseCumsum,
        empirical: Empirical::Enforce,
        plan: DeclaredPlan::Fla,
    }
}

/// An honest implementation of the false-alarm rows, with the arithmetic it declares.
#[derive(Debug, Clone, PartialEq)]
pub struct HonestCandidate {
    /// The row name.
    pub name: String,
    /// The precision it declares.
    pub precision: Dtype,
    kind: HonestKind,
}

#[derive(Debug, Clone, PartialEq)]
enum HonestKind {
    Registry(Implementation),
    Textbook,
    Perfect,
    FusedRecurrent,
    TensorCoreF32,
}

/// The honest implementations of the false-alarm rows: every CPU form of the registry
/// (`Implementation::all_cpu`) at its declared arithmetic ([`declared_options`]), the CPU twins
/// of the GPU kernels in bf16 and f16 (with the backward's stored states and state gradients in
/// the input dtype, both dg forms for bf16), the textbook forward in bf16, the exact result
/// rounded to bf16 (a perfect bf16 kernel), and an emulation of fla's `fused_recurrent` in bf16
/// (the f32 recurrence on the bf16 inputs, outputs cast to bf16), and two f32 tensor-core kernels:
/// the chunked f32 form with every product operand rounded to TF32 (`baseline::plan_for(Tf32,
/// _)`, a kernel that converts its operands with `cvt.rna.tf32.f32`) and truncated to TF32
/// (`Tf32Rz`: Triton's default `tl.dot` on fp32 operands, fla's `chunk_gla` in fp32); f32 inputs
/// and outputs.
pub fn honest_candidates() -> Vec<HonestCandidate> {
    let mut v: Vec<HonestCandidate> = Implementation::all_cpu()
        .into_iter()
        .chain([
            Implementation::Chunked {
                compute: Compute::F32,
                chunk: 64,
                sub_chunk: 16,
                round: Round::Bf16Train,
                dg: DgFormKey::ReverseCumsum,
            },
            Implementation::Chunked {
                compute: Compute::F32,
                chunk: 64,
                sub_chunk: 16,
                round: Round::Bf16Train,
                dg: DgFormKey::Local,
            },
            Implementation::Chunked {
                compute: Compute::F32,
                chunk: 64,
                sub_chunk: 16,
                round: Round::F16Train,
                dg: DgFormKey::ReverseCumsum,
            },
        ])
        .map(|imp| HonestCandidate {
            name: imp.name(),
            precision: imp.input_dtype(),
            kind: HonestKind::Registry(imp),
        })
        .collect();
    for (name, kind) in [
        ("textbook-bf16", HonestKind::Textbook),
        ("exact-rounded-bf16", HonestKind::Perfect),
        ("fused-recurrent-bf16", HonestKind::FusedRecurrent),
    ] {
        v.push(HonestCandidate {
            name: name.into(),
            precision: Dtype::Bf16,
            kind,
        });
    }
    for (name, precision) in [
        ("tensor-core-tf32", Dtype::Tf32),
        ("tensor-core-tf32-rz", Dtype::Tf32Rz),
    ] {
        v.push(HonestCandidate {
            name: name.into(),
            precision,
            kind: HonestKind::TensorCoreF32,
        });
    }
    v
}

impl HonestCandidate {
    /// The options it is judged with on `p` ([`declared_options`] for the registry forms; bf16 at
    /// chunk 64 for the others).
    pub fn options(&self, p: &Problem) -> VerifyOptions {
        match &self.kind {
            HonestKind::Registry(imp) => declared_options(imp, p),
            _ => VerifyOptions {
                precision: self.precision,
                ..VerifyOptions::default()
            },
        }
    }

    /// Its outputs on a case (`None` when it does not apply, e.g. an f16 plan outside f16's
    /// range).
    pub fn candidate(&self, case: &Case) -> Result<Option<Candidate>, JudgeError> {
        let p = &case.problem;
        let prec = self.precision;
        let s = match &self.kind {
            HonestKind::Registry(imp) => match solve(imp, p, p.has_backward()) {
                Ok(s) => s,
                Err(gla_reference::GlaError::Unsupported(_)) => return Ok(None),
                Err(e) => return Err(e.into()),
            },
            HonestKind::Textbook => {
                super::textbook::forward(p, CHUNK, 16, prec, &super::textbook::Faults::none())
            }
            HonestKind::Perfect => case.truth.solution.clone(),
            HonestKind::FusedRecurrent => {
                if p.has_backward() {
                    recurrent::backward::<f32>(p)?
                } else {
                    recurrent::forward::<f32>(p)?
                }
            }
            HonestKind::TensorCoreF32 => {
                let opts = ChunkOptions {
                    chunk: CHUNK,
                    sub_chunk: 16,
                    plan: crate::baseline::plan_for(prec, DeclaredPlan::Fla),
                };
                if p.has_backward() {
                    chunked::backward::<f32>(p, &opts)?
                } else {
                    chunked::forward::<f32>(p, &opts)?
                }
            }
        };
        Ok(Some(Candidate::from_solution(&s, prec)))
    }

    /// Its outputs on `case` judged by `verify` with the options it declares (`None` when it
    /// does not apply).
    pub fn judge(&self, case: &Case) -> Result<Option<VerifyReport>, JudgeError> {
        match self.candidate(case)? {
            Some(c) => self.judge_candidate(case, &c).map(Some),
            None => Ok(None),
        }
    }

    /// Its outputs `c` judged on `case` by `verify` with the options it declares.
    pub fn judge_candidate(&self, case: &Case, c: &Candidate) -> Result<VerifyReport, JudgeError> {
        verify(
            &case.problem,
            c,
            &case.truth,
            &self.options(&case.problem),
            Labels {
                input: case.name.clone(),
                candidate: self.name.clone(),
            },
        )
    }
}

/// What to run.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Only these mutants (by name; all when `None`).
    pub mutants: Option<Vec<String>>,
    /// Skip the honest implementations (no false-alarm rows).
    pub skip_honest: bool,
}

/// One mutant's row.
#[derive(Debug, Clone)]
pub struct MutantRow {
    /// The mutant's name.
    pub name: &'static str,
    /// What it gets wrong.
    pub description: &'static str,
    /// The arithmetic it declares.
    pub precision: Dtype,
    /// The cases it applies to.
    pub cases: Vec<String>,
    /// Per judge ([`JUDGES`] order): the cases where it is caught, with the tensors.
    pub caught: [BTreeMap<String, Vec<&'static str>>; 4],
    /// The glacheck rules that caught it (over every case).
    pub rules: BTreeSet<&'static str>,
    /// For each case where an anchor catches it and glacheck does not: what each judge saw.
    pub misses: Vec<(String, String)>,
}

/// One honest implementation's row.
#[derive(Debug, Clone)]
pub struct HonestRow {
    /// The implementation.
    pub name: String,
    /// The arithmetic it declares.
    pub precision: Dtype,
    /// Cases it ran on.
    pub cases: usize,
    /// Per judge: the cases with a failed tensor (a false alarm), with the tensors.
    pub alarms: [BTreeMap<String, Vec<&'static str>>; 4],
}

/// The benchmark's result.
#[derive(Debug, Clone)]
pub struct Benchmark {
    /// One row per mutant.
    pub mutants: Vec<MutantRow>,
    /// One row per honest implementation.
    pub honest: Vec<HonestRow>,
}

/// Run the benchmark on `cases`.
pub fn run(cases: &[Case], opts: &Options) -> Result<Benchmark, JudgeError> {
    let all: Vec<Mutant> = mutants()
        .into_iter()
        .filter(|m| {
            opts.mutants
                .as_ref()
                .is_none_or(|o| o.iter().any(|n| n == m.name))
        })
        .collect();
    let mut rows: Vec<MutantRow> = all
        .iter()
        .map(|m| MutantRow {
            name: m.name,
            description: m.description,
            precision: m.precision,
            cases: Vec::new(),
            caught: Default::default(),
            rules: BTreeSet::new(),
            misses: Vec::new(),
        })
        .collect();
    let honest = if opts.skip_honest {
        Vec::new()
    } else {
        honest_candidates()
    };
    let mut hrows: Vec<HonestRow> = honest
        .iter()
        .map(|h| HonestRow {
            name: h.name.clone(),
            precision: h.precision,
            cases: 0,
            alarms: Default::default(),
        })
        .collect();
    for case in cases {
        let p = &case.problem;
        let mut refs_by: BTreeMap<Dtype, AnchorRefs> = BTreeMap::new();
        let mut origins: BTreeMap<(Dtype, bool), Verdicts> = BTreeMap::new();
        for (m, row) in all.iter().zip(rows.iter_mut()) {
            if !(m.applies)(p) {
                continue;
            }
            if let Entry::Vacant(e) = refs_by.entry(m.precision) {
                e.insert(AnchorRefs::new(p, m.precision)?);
            }
            let r = &refs_by[&m.precision];
            let opts = mutant_options(m);
            let key = (m.precision, m.origin == Origin::Textbook);
            if let Entry::Vacant(e) = origins.entry(key) {
                let oc = origin_candidate(m.origin, m.precision, p)?;
                e.insert(judge_with(case, &oc, &opts, r, "origin")?);
            }
            let orig = &origins[&key];
            let cand = (m.build)(p)?;
            let v = judge_with(case, &cand, &opts, r, m.name)?;
            row.cases.push(case.name.clone());
            for (j, caught) in row.caught.iter_mut().enumerate() {
                let hit: Vec<&'static str> = v
                    .tensors
                    .iter()
                    .enumerate()
                    .filter(|&(i, t)| {
                        let oi = orig.tensors.iter().position(|x| x == t);
                        !v.pass[j][i] && oi.is_some_and(|oi| orig.pass[j][oi])
                    })
                    .map(|(_, t)| *t)
                    .collect();
                if !hit.is_empty() {
                    if j == 0 {
                        for t in &hit {
                            let i = v.tensors.iter().position(|x| x == t).expect("judged");
                            row.rules.extend(v.rules[i].iter().copied());
                        }
                    }
                    caught.insert(case.name.clone(), hit);
                }
            }
            let anchors: Vec<String> = (1..4)
                .filter_map(|j| {
                    row.caught[j]
                        .get(&case.name)
                        .map(|t| format!("{} on {}", JUDGES[j].name(), t.join(", ")))
                })
                .collect();
            if !row.caught[0].contains_key(&case.name) && !anchors.is_empty() {
                let ours: Vec<String> = v
                    .tensors
                    .iter()
                    .zip(&v.numbers)
                    .map(|(t, n)| format!("{t}: {n}"))
                    .collect();
                row.misses.push((
                    case.name.clone(),
                    format!("{}; glacheck: {}", anchors.join("; "), ours.join("; ")),
                ));
            }
        }
        for (h, row) in honest.iter().zip(hrows.iter_mut()) {
            let Some(cand) = h.candidate(case)? else {
                continue;
            };
            let prec = h.precision;
            if let Entry::Vacant(e) = refs_by.entry(prec) {
                e.insert(AnchorRefs::new(p, prec)?);
            }
            let v = judge_with(case, &cand, &h.options(p), &refs_by[&prec], &h.name)?;
            row.cases += 1;
            for (j, alarms) in row.alarms.iter_mut().enumerate() {
                let bad: Vec<&'static str> = v
                    .tensors
                    .iter()
                    .zip(&v.pass[j])
                    .filter(|(_, ok)| !**ok)
                    .map(|(t, _)| *t)
                    .collect();
                if !bad.is_empty() {
                    alarms.insert(case.name.clone(), bad);
                }
            }
        }
    }
    Ok(Benchmark {
        mutants: rows,
        honest: hrows,
    })
}

impl Benchmark {
    /// Mutants that an anchor judge catches on some case and glacheck on none.
    pub fn glacheck_misses(&self) -> Vec<&'static str> {
        self.mutants
            .iter()
            .filter(|m| m.caught[0].is_empty() && m.caught[1..].iter().any(|c| !c.is_empty()))
            .map(|m| m.name)
            .collect()
    }

    /// `(mutant, case)` pairs where an anchor catches the mutant and glacheck does not.
    pub fn glacheck_misses_by_case(&self) -> Vec<(&'static str, String)> {
        self.mutants
            .iter()
            .flat_map(|m| m.misses.iter().map(|(c, _)| (m.name, c.clone())))
            .collect()
    }

    /// Mutants glacheck catches and every anchor misses.
    pub fn only_glacheck(&self) -> Vec<&'static str> {
        self.mutants
            .iter()
            .filter(|m| !m.caught[0].is_empty() && m.caught[1..].iter().all(|c| c.is_empty()))
            .map(|m| m.name)
            .collect()
    }

    /// glacheck's false alarms: `(implementation, case, tensors)`.
    pub fn glacheck_false_alarms(&self) -> Vec<(String, String, Vec<&'static str>)> {
        self.honest
            .iter()
            .flat_map(|h| {
                h.alarms[0]
                    .iter()
                    .map(|(c, t)| (h.name.clone(), c.clone(), t.clone()))
            })
            .collect()
    }

    /// The gate: glacheck catches every mutant an anchor catches and raises no false alarm.
    pub fn gate_ok(&self) -> bool {
        self.glacheck_misses().is_empty() && self.glacheck_false_alarms().is_empty()
    }

    /// The tables as text (what `glacheck mutants` prints).
    pub fn render(&self) -> String {
        let mut s = String::new();
        let mut header = vec!["mutant".to_string(), "claims".into(), "cases".into()];
        header.extend(JUDGES.iter().map(|j| j.name().to_string()));
        let rows: Vec<Vec<String>> = self
            .mutants
            .iter()
            .map(|m| {
                let n = m.cases.len();
                let mut r = vec![m.name.to_string(), m.precision.to_string(), n.to_string()];
                for (j, c) in m.caught.iter().enumerate() {
                    let cell = if c.is_empty() {
                        "missed".to_string()
                    } else {
                        format!("caught {}/{n}", c.len())
                    };
                    let cell = if j == 0 && !c.is_empty() {
                        format!(
                            "{cell} ({})",
                            m.rules.iter().copied().collect::<Vec<_>>().join(", ")
                        )
                    } else {
                        cell
                    };
                    r.push(cell);
                }
                r
            })
            .collect();
        let _ = writeln!(
            s,
            "Mutants (caught k/n: the judge fails the mutant and passes its honest origin on k of the n catalog cases it applies to)"
        );
        s.push_str(&table(&header, &rows));
        if !self.honest.is_empty() {
            let mut header = vec![
                "honest implementation".to_string(),
                "claims".into(),
                "cases".into(),
            ];
            header.extend(JUDGES.iter().map(|j| j.name().to_string()));
            let rows: Vec<Vec<String>> = self
                .honest
                .iter()
                .map(|h| {
                    let mut r = vec![h.name.clone(), h.precision.to_string(), h.cases.to_string()];
                    for a in &h.alarms {
                        r.push(if a.is_empty() {
                            "0".into()
                        } else {
                            format!("{} ({})", a.len(), tensor_summary(a))
                        });
                    }
                    r
                })
                .collect();
            let _ = writeln!(
                s,
                "\nFalse alarms (cases where the judge fails an honest implementation; tensors in parentheses)"
            );
            s.push_str(&table(&header, &rows));
        }
        let _ = writeln!(s);
        let misses = self.glacheck_misses();
        let by_case = self.glacheck_misses_by_case();
        let alarms = self.glacheck_false_alarms();
        let only = self.only_glacheck();
        let _ = writeln!(
            s,
            "mutants every anchor misses and glacheck catches: {}",
            list(&only)
        );
        let _ = writeln!(
            s,
            "mutants an anchor catches and glacheck misses: {}",
            list(&misses)
        );
        let _ = writeln!(
            s,
            "(mutant, case) pairs an anchor catches and glacheck misses: {}",
            if by_case.is_empty() { "none" } else { "" }
        );
        for m in &self.mutants {
            for (c, what) in &m.misses {
                let _ = writeln!(s, "  {} on {c}: {what}", m.name);
            }
        }
        let _ = writeln!(
            s,
            "glacheck false alarms: {}",
            if alarms.is_empty() {
                "none".to_string()
            } else {
                alarms
                    .iter()
                    .map(|(h, c, t)| format!("{h} on {c} ({})", t.join(", ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            }
        );
        let _ = writeln!(
            s,
            "{}",
            if self.gate_ok() {
                "PASS: glacheck catches every mutant an anchor catches and raises no false alarm"
            } else {
                "FAIL: glacheck misses a mutant an anchor catches, or raises a false alarm"
            }
        );
        s
    }

    /// The result as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let judged = |m: &BTreeMap<String, Vec<&'static str>>| serde_json::json!(m);
        serde_json::json!({
            "mutants": self.mutants.iter().map(|m| serde_json::json!({
                "name": m.name,
                "description": m.description,
                "precision": m.precision.to_string(),
                "cases": m.cases,
                "caught": JUDGES.iter().zip(&m.caught).map(|(j, c)| (j.name(), judged(c)))
                    .collect::<BTreeMap<_, _>>(),
                "glacheck_rules": m.rules,
            })).collect::<Vec<_>>(),
            "honest": self.honest.iter().map(|h| serde_json::json!({
                "name": h.name,
                "precision": h.precision.to_string(),
                "cases": h.cases,
                "false_alarms": JUDGES.iter().zip(&h.alarms).map(|(j, c)| (j.name(), judged(c)))
                    .collect::<BTreeMap<_, _>>(),
            })).collect::<Vec<_>>(),
            "only_glacheck": self.only_glacheck(),
            "glacheck_misses": self.glacheck_misses(),
            "glacheck_false_alarms": self.glacheck_false_alarms().len(),
            "gate_ok": self.gate_ok(),
        })
    }
}

fn list(v: &[&str]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// The tensors of a judge's alarms, most frequent first, e.g. `dg x5, o x1`.
fn tensor_summary(a: &BTreeMap<String, Vec<&'static str>>) -> String {
    let mut n: BTreeMap<&str, usize> = BTreeMap::new();
    for ts in a.values() {
        for t in ts {
            *n.entry(t).or_default() += 1;
        }
    }
    let mut v: Vec<(&str, usize)> = n.into_iter().collect();
    v.sort_by(|x, y| y.1.cmp(&x.1).then(x.0.cmp(y.0)));
    v.iter()
        .map(|(t, k)| format!("{t} x{k}"))
        .collect::<Vec<_>>()
        .join(", ")
}
