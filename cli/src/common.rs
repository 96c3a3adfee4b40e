//! Small pieces shared by the subcommands: exit status, files, progress bars, printing, value
//! parsers for the library's vocabulary.

/// `println!` that ignores write errors (a closed pipe, e.g. `glacheck check | head`, must not
/// turn into a panic; the exit status still reports the verdict).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use anyhow::{anyhow, Context, Result};
use gla_fixtures::io::{FileDtype, TensorFile};
use gla_reference::{Dtype, Problem, Solution};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Outcome of a subcommand that ran to completion (errors are exit status 2, see `main`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Exit status 0.
    Ok,
    /// Exit status 1: a check failed.
    Fail,
}

impl From<Status> for ExitCode {
    fn from(s: Status) -> ExitCode {
        match s {
            Status::Ok => ExitCode::SUCCESS,
            Status::Fail => ExitCode::from(1),
        }
    }
}

/// Write a file so that readers never see a partial one and an existing file is replaced only
/// once the new contents are complete: write `DIR/.NAME.tmp-PID`, then rename over `path`.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("output path `{}` has no file name", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write `{}`", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write `{}`", path.display()));
    }
    Ok(())
}

/// A progress bar on stderr (hidden automatically when stderr is not a terminal).
pub fn progress(len: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb.set_prefix(what.to_string());
    pb
}

/// Print an aligned text table (see `gla_judge::format::table`).
pub fn print_table(header: &[String], rows: &[Vec<String>]) {
    out(&gla_judge::format::table(header, rows));
}

/// Write text to stdout as is, ignoring write errors (see [`outln!`]).
pub fn out(s: &str) {
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(s.as_bytes());
}

/// Read a safetensors file (every message names the file).
pub fn read_file(path: &Path) -> Result<TensorFile> {
    gla_fixtures::io::read_tensors(path).map_err(|e| anyhow!("{e}"))
}

/// Read and validate an input file: the problem, and the rest of the file (its inputs are moved
/// into the problem, not copied: at training shapes each is hundreds of megabytes).
pub fn read_problem(path: &Path) -> Result<(Problem, TensorFile)> {
    let mut f = read_file(path)?;
    let p = f
        .take_problem()
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

/// A command-line value parser for a type with `FromStr` (the library's vocabulary: `Compute`,
/// `Round`, `DgForm`, `Dtype`, `Form`) restricted to the listed names, which `--help` shows.
pub fn choice<T>(names: &'static [&'static str]) -> impl clap::builder::TypedValueParser<Value = T>
where
    T: std::str::FromStr + Clone + Send + Sync + 'static,
    T::Err: std::fmt::Display,
{
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(names)
        .try_map(|s: String| s.parse::<T>().map_err(|e| e.to_string()))
}

/// The glacheck version written into every file's metadata.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
