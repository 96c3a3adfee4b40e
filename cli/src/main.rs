//! `glacheck`: tells Gated Linear Attention kernel authors whether their code is right, and by how
//! much it may be wrong.
//!
//! The binary is thin: argument parsing, progress bars, printing, plots and exit codes. Every
//! number comes from the library crates: `gla-judge` (the implementations, the truth, the
//! verdicts and the verify judge), `gla-fixtures` (files, catalog, goldens), `gla-gpu` (timings)
//! and `gla-reference` (types).
//!
//! Exit status: 0 = ok / every check passed, 1 = a check failed, 2 = bad input or usage.

mod bench;
mod check;
mod common;
mod eval;
mod fixtures;
mod mutants;
mod suite;
mod sweep;
mod verify;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Verify Gated Linear Attention (GLA) kernels against an exact MPFR oracle, with componentwise
/// error bounds (docs/math.md §8.1).
#[derive(Debug, Parser)]
#[command(name = "glacheck", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Solve one problem read from a safetensors file (fla layout) and write the results.
    Eval(eval::EvalArgs),
    /// Run the built-in case catalog through every available implementation against the oracle.
    Check(check::CheckArgs),
    /// Judge a candidate's outputs (from any kernel, any language) against the oracle.
    Verify(verify::VerifyArgs),
    /// The mutant benchmark: realistic bugs judged by glacheck and by fla's, FlashAttention's and cuDNN's rules.
    Mutants(mutants::MutantsArgs),
    /// Regenerate or check the committed golden fixtures.
    #[command(subcommand)]
    Fixtures(fixtures::FixturesCommand),
    /// Error growth against sequence length and gate strength: SVG plots and a CSV.
    Sweep(sweep::SweepArgs),
    /// Property-suite shards: merge their summaries into one table.
    #[command(subcommand)]
    Suite(suite::SuiteCommand),
    /// Time the GPU kernels (CUDA events, median, L2-rotated inputs): ms, GB/s, TFLOP/s, floor.
    Bench(bench::BenchArgs),
}

/// Large blocks with transparent huge pages (`gla_judge::alloc`): a training-shape `verify`
/// spends half its time in page faults without.
#[global_allocator]
static ALLOC: gla_judge::alloc::HugePages = gla_judge::alloc::HugePages;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // clap prints help/version to stdout (exit 0) and usage errors to stderr (exit 2).
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let result = match cli.command {
        Command::Eval(a) => eval::run(a),
        Command::Check(a) => check::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Mutants(a) => mutants::run_mutants(a),
        Command::Fixtures(c) => fixtures::run(c),
        Command::Sweep(a) => sweep::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Suite(c) => suite::run(c),
    };
    match result {
        Ok(status) => status.into(),
        Err(e) => {
            // One line: the whole context chain joined by ": ".
            eprintln!("glacheck: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
