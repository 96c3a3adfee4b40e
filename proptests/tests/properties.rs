//! The property suite as one `harness = false` test binary, so that its summary table is always
//! printed (libtest would capture it). Arguments that do not start with `-` filter properties by
//! substring (`cargo test -p gla-proptests --test properties -- causality`); libtest flags are
//! ignored. `GLA_DEEP=1` multiplies case counts and sizes; `PROPTEST_CASES` overrides case counts.
//! The table is also written to `target/gla-proptests-summary.txt`.

use gla_proptests::suite::{run_and_print, SuiteOptions};

fn main() {
    let mut opts = SuiteOptions::from_env();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        for p in gla_proptests::properties::all() {
            println!("{}: test", p.name);
        }
        return;
    }
    let mut skip_next = false;
    for a in &args {
        if skip_next {
            skip_next = false;
            continue;
        }
        if a == "--test-threads" || a == "--skip" || a == "--format" || a == "--color" {
            skip_next = true;
            continue;
        }
        if !a.starts_with('-') {
            opts.filters.push(a.clone());
        }
    }
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/gla-proptests-summary.txt");
    let ok = run_and_print(&opts, Some(&target));
    std::process::exit(if ok { 0 } else { 1 });
}
