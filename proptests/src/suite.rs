//! Running the whole property suite and printing its summary: what the `properties` test binary
//! (a `harness = false` test, so its output is always shown) and `glacheck check --deep` call.
//!
//! ```no_run
//! use gla_proptests::suite::{run, SuiteOptions};
//! let summary = run(&SuiteOptions::from_env());
//! println!("{}", summary.table());
//! std::process::exit(if summary.pass() { 0 } else { 1 });
//! ```

use crate::harness::{self, Summary};
use crate::properties::{self, Ctx};
use std::io::Write;

/// Options of a suite run.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Candidates, sizes, case counts, persistence.
    pub ctx: Ctx,
    /// Run only properties whose name contains one of these (all when empty).
    pub filters: Vec<String>,
    /// Print one line per property as it finishes (to stdout).
    pub progress: bool,
}

impl SuiteOptions {
    /// Every available candidate, sizes and case counts from `GLA_DEEP` / `PROPTEST_CASES`.
    pub fn from_env() -> Self {
        SuiteOptions {
            ctx: Ctx::from_env(),
            filters: Vec::new(),
            progress: true,
        }
    }
    /// Deep run (8x cases, larger sizes) whatever the environment says.
    pub fn deep() -> Self {
        let mut o = Self::from_env();
        o.ctx.case_factor = 8;
        o.ctx.profile = crate::strategies::SizeProfile::deep();
        o
    }
}

/// Run the selected properties sequentially; return the summary (also left in the global one).
/// Failures are reported in the summary's property list with the minimal failing input.
pub fn run(opts: &SuiteOptions) -> Summary {
    harness::reset_summary();
    let mut jobs: Vec<(Ctx, &'static str, properties::Property)> = Vec::new();
    for prop in properties::all() {
        jobs.push((opts.ctx.clone(), prop.name, prop));
    }
    // The GPU round: the GPU candidates and their CPU twins on the sizes the kernels take.
    let gpus: Vec<_> = opts
        .ctx
        .impls
        .iter()
        .filter(|i| i.is_gpu())
        .copied()
        .collect();
    if !gpus.is_empty() {
        let mut impls = gpus.clone();
        impls.extend(gpus.iter().filter_map(|g| g.cpu_twin()));
        impls.dedup();
        let ctx = Ctx {
            impls,
            profile: crate::strategies::SizeProfile::gpu(),
            ..opts.ctx.clone()
        };
        for prop in properties::all() {
            if properties::GPU_PROPERTIES.contains(&prop.name) {
                let name: &'static str = Box::leak(format!("gpu_{}", prop.name).into_boxed_str());
                let p = properties::Property {
                    default_cases: (prop.default_cases / 8).max(4),
                    ..prop
                };
                jobs.push((ctx.clone(), name, p));
            }
        }
    } else if opts.progress {
        if let Some(why) = crate::gpu::unavailable_reason() {
            println!("no GPU candidates: {why}");
        }
    }
    for (ctx, name, prop) in jobs {
        if !opts.filters.is_empty() && !opts.filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let out = (prop.run)(&ctx, name, prop.default_cases);
        if opts.progress {
            let status = if out.result.is_ok() { "ok" } else { "FAILED" };
            println!(
                "property {:<34} {:>5} cases {:>8.1}s  {}",
                out.name, out.cases, out.seconds, status
            );
            if let Err(msg) = &out.result {
                println!("{msg}");
            }
            let _ = std::io::stdout().flush();
        }
    }
    harness::summary()
}

/// Run, print the table to stdout, and write it to `path` when given. Returns true on success.
pub fn run_and_print(opts: &SuiteOptions, path: Option<&std::path::Path>) -> bool {
    let start = std::time::Instant::now();
    let s = run(opts);
    let table = format!(
        "GLA property suite ({} candidates, {:.1} s)\n{}",
        opts.ctx.impls.len(),
        start.elapsed().as_secs_f64(),
        s.table()
    );
    println!("\n{table}");
    if let Some(p) = path {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let _ = std::fs::write(p, &table);
    }
    s.pass()
}
