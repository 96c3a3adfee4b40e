//! The property suite as one test binary with a libtest-compatible harness (`libtest-mimic`):
//! `cargo test -p gla-proptests --test properties -- causality`, `-- --list`, `--exact NAME` and
//! `cargo nextest run -p gla-proptests` work as for any Rust test. The summary table is printed
//! after the run and written to `target/gla-proptests/summary.{txt,json}` (or, with
//! `GLA_SUMMARY_DIR`, one file per process for `glacheck suite merge`). See `gla_proptests::suite`
//! for the tiers (`GLA_DEEP=1`, `GLA_SHARD=i/n`).

use gla_proptests::suite::{finish, summary_paths, trials, SuiteOptions};

fn main() {
    let args = libtest_mimic::Arguments::from_args();
    let opts = SuiteOptions::from_env();
    if let (Some(why), false) = (
        gla_judge::gpu::unavailable_reason().filter(|_| !gla_judge::gpu::available()),
        args.list,
    ) {
        println!("gpu_ properties ignored: no usable GPU ({why})");
    }
    let start = std::time::Instant::now();
    let conclusion = libtest_mimic::run(&args, trials(&opts));
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    let run = match (&opts.ctx.shard, args.filter.as_deref()) {
        (Some((i, n)), f) => format!(
            "shard-{i}-of-{n}{}",
            f.map_or(String::new(), |f| format!("-{f}"))
        ),
        (None, Some(f)) => format!("run-{f}-{}", std::process::id()),
        (None, None) => format!("run-{}", std::process::id()),
    };
    let (txt, json) = summary_paths(&target, &run);
    finish(
        opts.ctx.impls.len(),
        start.elapsed().as_secs_f64(),
        &txt,
        &json,
    );
    conclusion.exit();
}
