//! `glacheck mutants`: the mutant benchmark (`gla_judge::mutants::bench`): realistic bugs of a
//! GLA kernel judged on the catalog cases by glacheck's verdict and by fla's, FlashAttention's
//! and cuDNN frontend's test rules, plus every judge's false alarms on honest implementations.

use crate::common::{out, Status};
use anyhow::Result;
use clap::Args;
use gla_judge::mutants::bench::{catalog_cases, run, Options};
use std::path::PathBuf;

/// Arguments of `glacheck mutants`.
#[derive(Debug, Args)]
#[command(after_help = "\
Every mutant is a small named change of an honest GLA implementation (a scale error, an intermediate \
rounded to bf16 or TF32, a state accumulated in bf16, a dropped h0, an off-by-one mask in a partial \
chunk, a gate applied twice, a dg without its hT term, a wrong scale, NaN or a finite floor for -inf \
gates, a naive exp factorization, a late anchor, a dg cumsum in bf16, ...). A judge catches a mutant on \
a case when it fails one of the mutant's tensors and passes the same tensor of the honest origin. \
False alarms: cases where a judge fails an honest implementation (the CPU forms at their declared \
arithmetic, the GPU kernels' CPU twins, the textbook forward, the rounded exact result, fla's fused \
recurrence emulated in bf16).
Exit status: 0 when glacheck catches every mutant an anchor catches and raises no false alarm, 1 \
otherwise, 2 bad input or usage.")]
pub struct MutantsArgs {
    /// Directory of the golden files (the stored truth of each catalog case).
    #[arg(long, default_value_os_t = gla_fixtures::golden::default_dir())]
    pub golden_dir: PathBuf,
    /// Only these catalog cases (repeatable; default all).
    #[arg(long = "case")]
    pub cases: Vec<String>,
    /// Only these mutants (repeatable; default all).
    #[arg(long = "mutant")]
    pub mutants: Vec<String>,
    /// Skip the honest implementations (no false-alarm table).
    #[arg(long)]
    pub no_honest: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Run `glacheck mutants`.
pub fn run_mutants(a: MutantsArgs) -> Result<Status> {
    let only = (!a.cases.is_empty()).then_some(a.cases.as_slice());
    let cases = catalog_cases(&a.golden_dir, only)?;
    if cases.is_empty() {
        anyhow::bail!("no catalog case selected (see `glacheck check --list`)");
    }
    let known: Vec<&str> = gla_judge::mutants::mutants()
        .iter()
        .map(|m| m.name)
        .collect();
    if let Some(bad) = a.mutants.iter().find(|m| !known.contains(&m.as_str())) {
        anyhow::bail!("unknown mutant `{bad}` (known: {})", known.join(", "));
    }
    let opts = Options {
        mutants: (!a.mutants.is_empty()).then(|| a.mutants.clone()),
        skip_honest: a.no_honest,
    };
    let b = run(&cases, &opts)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&b.to_json())?);
    } else {
        out(&b.render());
    }
    Ok(if b.gate_ok() {
        Status::Ok
    } else {
        Status::Fail
    })
}
