//! Small pieces shared by the subcommands: exit status, output files, progress bars, formatting.

/// `println!` that ignores write errors (a closed pipe, e.g. `glacheck check | head`, must not
/// turn into a panic; the exit status still reports the verdict).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
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

/// A ratio in a table cell: 3 significant digits, `-` when absent, `NaN`/`inf` spelled out.
pub fn fmt_ratio(r: Option<f64>) -> String {
    match r {
        None => "-".into(),
        Some(x) if x.is_nan() => "NaN".into(),
        Some(x) if x.is_infinite() => "inf".into(),
        Some(0.0) => "0".into(),
        Some(x) if (0.01..1000.0).contains(&x) => {
            let digits = if x >= 100.0 {
                0
            } else if x >= 10.0 {
                1
            } else if x >= 1.0 {
                2
            } else {
                3
            };
            format!("{x:.digits$}")
        }
        Some(x) => format!("{x:.2e}"),
    }
}

/// A float for JSON: finite numbers as numbers, NaN and infinities as strings.
pub fn json_f64(x: f64) -> serde_json::Value {
    if x.is_finite() {
        serde_json::json!(x)
    } else if x.is_nan() {
        serde_json::json!("NaN")
    } else if x > 0.0 {
        serde_json::json!("inf")
    } else {
        serde_json::json!("-inf")
    }
}

/// Print rows as an aligned text table (first column left-aligned, the others right-aligned).
pub fn print_table(header: &[String], rows: &[Vec<String>]) {
    let n = header.len();
    let mut w = vec![0usize; n];
    for r in std::iter::once(header).chain(rows.iter().map(|r| r.as_slice())) {
        for (i, c) in r.iter().enumerate().take(n) {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |r: &[String]| {
        let mut s = String::new();
        for (i, c) in r.iter().enumerate().take(n) {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = w[i].saturating_sub(c.chars().count());
            if i <= 1 {
                s.push_str(c);
                s.push_str(&" ".repeat(pad));
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        crate::outln!("{}", s.trim_end());
    };
    line(header);
    crate::outln!(
        "{}",
        "-".repeat(w.iter().sum::<usize>() + 2 * (n.saturating_sub(1)))
    );
    for r in rows {
        line(r);
    }
}

/// The glacheck version written into every file's metadata.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
