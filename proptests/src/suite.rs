//! Running the property suite: one libtest-compatible trial per property (`libtest-mimic`), so
//! `cargo test -p gla-proptests -- NAME`, `--list`, `--exact`, `--skip` and `cargo nextest`
//! (listing, filtering, `--partition`) behave as for any Rust test, and a LAPACK-style summary of
//! everything judged is printed after the run and written as JSON for `glacheck suite merge`.
//!
//! Trials: every property of [`properties::all`] over the CPU candidates, and `gpu_<property>`
//! for the properties in [`properties::GPU_PROPERTIES`] over the GPU candidates and their CPU
//! twins. Without a usable GPU the `gpu_` trials are listed as ignored, with the reason printed;
//! `GLA_REQUIRE_GPU=1` turns a missing GPU into a failure instead.
//!
//! Tiers, one switch each: default; `GLA_DEEP=1` (8x cases, larger sizes); `GLA_SHARD=i/n`
//! (shard `i` of `n` draws from its own seed stream, so `n` machines run `n` times the cases,
//! disjoint; set the same `PROPTEST_RNG_SEED` on every shard).

use crate::properties::{self, Ctx, Property};
use crate::strategies::SizeProfile;
use gla_judge::summary::{self, Summary};
use libtest_mimic::{Failed, Trial};
use std::path::{Path, PathBuf};

/// Options of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Candidates, sizes, case counts, persistence, shard.
    pub ctx: Ctx,
    /// Whether GPU trials must run (`GLA_REQUIRE_GPU=1`): a missing GPU fails them.
    pub require_gpu: bool,
}

impl SuiteOptions {
    /// Every available candidate; sizes, case counts and shard from `GLA_DEEP`, `GLA_SHARD`,
    /// `PROPTEST_CASES`, `GLA_IMPLS`; `GLA_REQUIRE_GPU`.
    pub fn from_env() -> Self {
        SuiteOptions {
            ctx: Ctx::from_env(),
            require_gpu: std::env::var("GLA_REQUIRE_GPU").is_ok_and(|v| v == "1"),
        }
    }
}

/// One property bound to its context, ready to run.
#[derive(Clone)]
struct Job {
    ctx: Ctx,
    name: &'static str,
    prop: Property,
}

impl Job {
    fn run(&self) -> Result<(), Failed> {
        let out = (self.prop.run)(&self.ctx, self.name, self.prop.default_cases);
        println!(
            "property {:<34} {:>5} cases {:>8.1}s  {}",
            out.name,
            out.cases,
            out.seconds,
            if out.result.is_ok() { "ok" } else { "FAILED" }
        );
        out.result.map_err(Failed::from)
    }
}

/// The CPU candidates' properties and the GPU round.
fn jobs(opts: &SuiteOptions) -> (Vec<Job>, Vec<Job>) {
    let cpu_ctx = Ctx {
        impls: opts
            .ctx
            .impls
            .iter()
            .filter(|i| !i.is_gpu())
            .copied()
            .collect(),
        ..opts.ctx.clone()
    };
    let cpu = properties::all()
        .into_iter()
        .map(|prop| Job {
            ctx: cpu_ctx.clone(),
            name: prop.name,
            prop,
        })
        .collect();
    // The GPU round: the GPU candidates and their CPU twins on the sizes the kernels take.
    let gpus: Vec<_> = gla_judge::Implementation::gpu_candidates()
        .into_iter()
        .filter(|g| opts.ctx.impls.contains(g) || !gla_judge::gpu::available())
        .collect();
    let mut impls = gpus.clone();
    impls.extend(gpus.iter().filter_map(|g| g.cpu_twin()));
    impls.dedup();
    let gpu_ctx = Ctx {
        impls,
        profile: SizeProfile::gpu(),
        ..opts.ctx.clone()
    };
    let gpu = properties::all()
        .into_iter()
        .filter(|p| properties::GPU_PROPERTIES.contains(&p.name))
        .map(|prop| Job {
            ctx: gpu_ctx.clone(),
            name: Box::leak(format!("gpu_{}", prop.name).into_boxed_str()),
            prop: Property {
                default_cases: (prop.default_cases / 8).max(4),
                ..prop
            },
        })
        .collect();
    (cpu, gpu)
}

/// The trials of the suite, in run order (CPU properties, then the `gpu_` ones).
pub fn trials(opts: &SuiteOptions) -> Vec<Trial> {
    let (cpu, gpu) = jobs(opts);
    let mut out: Vec<Trial> = cpu
        .into_iter()
        .map(|j| Trial::test(j.name, move || j.run()))
        .collect();
    let no_gpu = gla_judge::gpu::unavailable_reason().filter(|_| !gla_judge::gpu::available());
    for j in gpu {
        let t = match (&no_gpu, opts.require_gpu) {
            (None, _) => Trial::test(j.name, move || j.run()),
            (Some(why), true) => {
                let why = why.clone();
                Trial::test(j.name, move || {
                    Err(format!("GLA_REQUIRE_GPU=1 but no usable GPU: {why}").into())
                })
            }
            (Some(_), false) => Trial::test(j.name, || Ok(())).with_ignored_flag(true),
        };
        out.push(t);
    }
    out
}

/// Where the summary goes: `GLA_SUMMARY_DIR/<run>.json` when that variable is set (one file per
/// process, for `glacheck suite merge`), else `target/gla-proptests/summary.{txt,json}`.
pub fn summary_paths(workspace_target: &Path, run: &str) -> (PathBuf, PathBuf) {
    match std::env::var_os("GLA_SUMMARY_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            (d.join(format!("{run}.txt")), d.join(format!("{run}.json")))
        }
        None => {
            let d = workspace_target.join("gla-proptests");
            (d.join("summary.txt"), d.join("summary.json"))
        }
    }
}

/// Print the summary table of everything judged in this process and write it (text and JSON).
/// Nothing is printed or written when no case ran (e.g. `--list`, or a filter that matched
/// nothing).
pub fn finish(candidates: usize, seconds: f64, txt: &Path, json: &Path) {
    let s: Summary = summary::summary();
    if s.properties.is_empty() {
        return;
    }
    let table = format!(
        "GLA property suite ({candidates} candidates, {seconds:.1} s)\n{}",
        s.table()
    );
    println!("\n{table}");
    for (path, body) in [
        (txt, table),
        (
            json,
            serde_json::to_string_pretty(&s.to_json()).unwrap_or_default(),
        ),
    ] {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(path, body) {
            eprintln!("cannot write {}: {e}", path.display());
        }
    }
}
