//! `glacheck check`: the built-in catalog through every available implementation.

use crate::backend::{self, CheckRow, TensorReport};
use crate::common::{fmt_ratio, print_table, progress, Status};
use anyhow::{bail, Result};
use clap::Args;
use gla_reference::OUTPUT_NAMES;

/// Arguments of `glacheck check`.
#[derive(Debug, Args)]
#[command(after_help = "\
Every case of the catalog (gla-fixtures) is solved once by the MPFR oracle (forward and backward), \
then by each implementation: recurrent f32 and f64, parallel f32, chunked f32, chunked f32 with the \
bf16 rounding plan of fla's kernels, and the GPU kernels when a CUDA device is present. Each cell is \
the worst elementwise ratio |x - x*| / ((sum u_s + u_acc) M_x + eta) of that output (spec 8.1); \
`bound` is (sum u_s + c u_acc (n_acc + lambda)) / (sum u_s + u_acc) for the tensor closest to its \
bound. A non-finite result where the oracle is finite fails whatever the ratio.
Exit status: 0 every row passes, 1 a row fails, 2 bad usage.")]
pub struct CheckArgs {
    /// Also run the property-test suite (gla-proptests) and print its summary table; its sizes
    /// follow GLA_DEEP=1 and PROPTEST_CASES.
    #[arg(long)]
    pub deep: bool,
    /// Run only the catalog cases whose name contains this string (repeatable).
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
    let cases: Vec<_> = backend::catalog()?
        .into_iter()
        .filter(|c| a.only.is_empty() || a.only.iter().any(|o| c.name.contains(o.as_str())))
        .collect();
    if cases.is_empty() {
        bail!("no catalog case matches --only {:?}", a.only);
    }
    let gpu = backend::gpu_available();
    let impls: Vec<_> = backend::check_implementations(gpu.is_ok())
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
            println!("case {}: {}", c.name, c.description);
        }
        for i in &impls {
            println!("impl {}", i.name());
        }
        return Ok(Status::Ok);
    }

    let pb = progress((cases.len() * (impls.len() + 1)) as u64, "check");
    let mut rows: Vec<CheckRow> = Vec::new();
    for case in &cases {
        pb.set_message(format!("{} (oracle)", case.name));
        let rs = backend::check_case(case, &impls, &|label: &str| {
            pb.inc(1);
            pb.set_message(format!("{} ({label})", case.name));
        });
        rows.extend(rs);
    }
    pb.finish_and_clear();

    print_rows(&rows);
    let failed: Vec<&CheckRow> = rows.iter().filter(|r| !r.pass()).collect();
    println!();
    if failed.is_empty() {
        println!("PASS: {} rows ({} cases x {} implementations)", rows.len(), cases.len(), impls.len());
    } else {
        println!("FAIL: {} of {} rows", failed.len(), rows.len());
        for r in &failed {
            for line in r.failure_lines() {
                println!("  {}  {}: {}", r.case, r.imp, line);
            }
        }
    }

    let mut status = if failed.is_empty() { Status::Ok } else { Status::Fail };

    // Inputs outside GLA's domain (F3's g > 0, F9's linear alpha): validation must reject them.
    let rejects: Vec<_> = backend::must_reject_cases()
        .into_iter()
        .filter(|c| a.only.is_empty() || a.only.iter().any(|o| c.0.contains(o.as_str())))
        .collect();
    if !rejects.is_empty() && a.imp.is_empty() {
        println!();
        println!("inputs outside the domain (must be rejected by validation):");
        for (name, _, err) in &rejects {
            match err {
                Some(e) => println!("  {name}: rejected: {e}  PASS"),
                None => {
                    println!("  {name}: ACCEPTED  FAIL");
                    status = Status::Fail;
                }
            }
        }
    }
    if a.deep {
        println!();
        println!("property-test harness (gla-proptests):");
        if !backend::deep_suite() {
            status = Status::Fail;
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
            v.push(if r.pass() { "PASS".into() } else { "FAIL".into() });
            v
        })
        .collect();
    print_table(&header, &table);
    println!("(cells: worst ratio per output; `!` marks a tensor over its bound or non-finite; `-`: not computed)");
}
