//! `glacheck check`: the built-in catalog through every available implementation.

use crate::common::{print_table, progress, Status};
use anyhow::{bail, Result};
use clap::Args;
use gla_judge::format::fmt_ratio;
use gla_judge::{Implementation, Verdict};
use gla_reference::bounds::TensorReport;
use gla_reference::{Problem, OUTPUT_NAMES};

/// Arguments of `glacheck check`.
#[derive(Debug, Args)]
#[command(after_help = "\
Every valid case of the catalog (gla-fixtures) goes through gla-judge's oracle cross-check: inputs \
rounded to each implementation's input dtype, the MPFR oracle once per distinct input (forward and \
backward), then recurrent f32 and f64, parallel f32, chunked f32 (C=64, c=16), chunked f32 with fla's \
bf16 kernel rounding plan, and the GPU kernels when a CUDA device is usable. Each cell is the worst \
elementwise ratio |x - x*| / ((sum u_s + u_acc) M_x + eta) of that output (docs/math.md §8.1): o and ht from \
the forward run, the gradients from the backward run (whose o and ht, and for GPU rows the \
'at most twice the CPU emulation' rule, are judged too and named in failures). `bound` is \
(sum u_s + c u_acc (n_acc + lambda)) / (sum u_s + u_acc) for the tensor closest to its bound. A \
non-finite result where the oracle is finite fails whatever the ratio. The catalog's inputs outside \
GLA's domain (g > 0) must be rejected by validation.
Exit status: 0 every row passes, 1 a row fails, 2 bad usage.")]
pub struct CheckArgs {
    /// Run only this catalog case (exact name, else every case whose name contains it; repeatable).
    #[arg(long, value_name = "NAME")]
    pub only: Vec<String>,
    /// Run only implementations whose label contains this string (repeatable), e.g. `chunked`.
    #[arg(long = "impl", value_name = "LABEL")]
    pub imp: Vec<String>,
    /// List the catalog's cases and the implementations that would run, then exit.
    #[arg(long)]
    pub list: bool,
}

/// Run `glacheck check`.
pub fn run(a: CheckArgs) -> Result<Status> {
    let all = catalog()?;
    // --only NAME: the case of that name, or (when none has it exactly) every case containing it.
    let wanted = |name: &str| {
        a.only.is_empty()
            || a.only.iter().any(|o| {
                name == o.as_str()
                    || (!all.iter().any(|c| c.name == *o) && name.contains(o.as_str()))
            })
    };
    let cases: Vec<_> = all.iter().filter(|c| wanted(&c.name)).cloned().collect();
    if cases.is_empty() {
        bail!("no catalog case matches --only {:?}", a.only);
    }
    let gpu = gpu_available();
    let impls: Vec<_> = Implementation::all_available()
        .into_iter()
        .filter(|c| a.imp.is_empty() || a.imp.iter().any(|o| c.name().contains(o.as_str())))
        .collect();
    if impls.is_empty() {
        bail!("no implementation matches --impl {:?}", a.imp);
    }
    match &gpu {
        Ok(dev) => eprintln!("glacheck check: GPU: {dev}"),
        Err(why) => eprintln!("glacheck check: no GPU rows ({why})"),
    }
    if a.list {
        for c in &cases {
            crate::outln!("case {}: {}", c.name, c.description);
        }
        for i in &impls {
            crate::outln!("impl {}", i.name());
        }
        return Ok(Status::Ok);
    }

    let pb = progress(cases.len() as u64, "check");
    let mut rows: Vec<CheckRow> = Vec::new();
    for case in &cases {
        pb.set_message(case.name.clone());
        rows.extend(check_case(case, &impls));
        pb.inc(1);
    }
    pb.finish_and_clear();

    // Rows whose implementation does not apply to the case (e.g. GPU kernels limited to K, V in
    // {64, 128, 256}, or an input that overflows f16) are summarised, not tabulated.
    let (na, rows): (Vec<CheckRow>, Vec<CheckRow>) =
        rows.into_iter().partition(|r| r.not_applicable.is_some());
    print_rows(&rows);
    if !na.is_empty() {
        let mut by_imp: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
        for r in &na {
            by_imp
                .entry(r.imp.as_str())
                .or_default()
                .push(r.case.as_str());
        }
        crate::outln!("not applicable (not run, not failed):");
        for (imp, cases) in &by_imp {
            let why = na
                .iter()
                .find(|r| r.imp == *imp)
                .and_then(|r| r.not_applicable.clone())
                .unwrap_or_default();
            crate::outln!("  {imp}: {} case(s), e.g. {}: {why}", cases.len(), cases[0]);
        }
    }
    let failed: Vec<&CheckRow> = rows.iter().filter(|r| !r.pass()).collect();
    crate::outln!();
    if failed.is_empty() {
        crate::outln!(
            "PASS: {} rows ({} cases x {} implementations, {} not applicable)",
            rows.len(),
            cases.len(),
            impls.len(),
            na.len()
        );
    } else {
        crate::outln!("FAIL: {} of {} rows", failed.len(), rows.len());
        for r in &failed {
            for line in r.failure_lines() {
                crate::outln!("  {}  {}: {}", r.case, r.imp, line);
            }
        }
    }

    let mut status = if failed.is_empty() {
        Status::Ok
    } else {
        Status::Fail
    };

    // Inputs outside GLA's domain (F3's g > 0, F9's linear alpha): validation must reject them.
    let rejects: Vec<_> = must_reject_cases()
        .into_iter()
        .filter(|c| {
            a.only.is_empty() || a.only.iter().any(|o| c.0 == *o || c.0.contains(o.as_str()))
        })
        .collect();
    if !rejects.is_empty() && a.imp.is_empty() {
        crate::outln!();
        crate::outln!("inputs outside the domain (must be rejected by validation):");
        for (name, _, err) in &rejects {
            match err {
                Some(e) => crate::outln!("  {name}: rejected: {e}  PASS"),
                None => {
                    crate::outln!("  {name}: ACCEPTED  FAIL");
                    status = Status::Fail;
                }
            }
        }
    }
    Ok(status)
}

fn cell(t: Option<&TensorReport>) -> String {
    match t {
        None => "-".into(),
        Some(t) => {
            let mut s = fmt_ratio(Some(t.ratio));
            if !t.pass {
                s.push('!');
            }
            s
        }
    }
}

fn print_rows(rows: &[CheckRow]) {
    let mut header: Vec<String> = vec!["case".into(), "implementation".into()];
    header.extend(OUTPUT_NAMES.iter().map(|s| s.to_string()));
    header.push("bound".into());
    header.push("result".into());
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut v = vec![r.case.clone(), r.imp.clone()];
            if r.not_applicable.is_some() {
                v.extend(OUTPUT_NAMES.iter().map(|_| "n/a".to_string()));
                v.push("-".into());
                v.push("n/a".into());
                return v;
            }
            match &r.error {
                Some(_) => {
                    v.extend(OUTPUT_NAMES.iter().map(|_| "err".to_string()));
                    v.push("-".into());
                }
                None => {
                    v.extend(OUTPUT_NAMES.iter().map(|n| cell(r.tensor(n))));
                    v.push(fmt_ratio(r.tightest_bound()));
                }
            }
            v.push(if r.pass() {
                "PASS".into()
            } else {
                "FAIL".into()
            });
            v
        })
        .collect();
    print_table(&header, &table);
    crate::outln!("(cells: worst ratio per output; `!` marks a tensor over its bound or non-finite; `-`: not computed)");
}

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
fn catalog() -> Result<Vec<Case>> {
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
fn must_reject_cases() -> Vec<(String, String, Option<String>)> {
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

/// Run one case through gla-judge's oracle cross-check (`check_against_oracle_as`,
/// recorded under the property name `check`): inputs rounded to each implementation's input
/// dtype, the MPFR oracle once per distinct prepared problem, every implementation forward and
/// (where it supports it) forward + backward, judged with the bounds of docs/math.md §8.1 (forward outputs with
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
    match gla_judge::check_against_oracle_as("check", &case.problem, impls) {
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

/// Whether a CUDA device is usable (Ok: the GPU candidates; Err: why not).
pub fn gpu_available() -> std::result::Result<String, String> {
    if gla_judge::gpu::available() {
        Ok(format!(
            "kernels {}",
            Implementation::gpu_candidates()
                .iter()
                .map(|i| i.name())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    } else {
        Err(gla_judge::gpu::unavailable_reason().unwrap_or_else(|| "disabled by GLA_NO_GPU".into()))
    }
}
