//! `glacheck fixtures regen|check`: the committed golden files (gla-fixtures).

use crate::common::Status;
use anyhow::{anyhow, bail, Result};
use clap::Subcommand;
use std::path::Path;
use std::path::PathBuf;

/// `glacheck fixtures ...`
#[derive(Debug, Subcommand)]
pub enum FixturesCommand {
    /// Regenerate the golden files deterministically (byte-identical on every machine).
    Regen {
        /// Regenerate only the case with this name (see `glacheck check --list`).
        #[arg(long, value_name = "NAME")]
        only: Option<String>,
        /// Directory of the golden files (default: the repository's fixtures/golden).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Confirm that the committed golden files match what the code produces now.
    /// Exit status 1 when a file differs or is missing.
    Check {
        /// Directory of the golden files (default: the repository's fixtures/golden).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

/// Run `glacheck fixtures ...`.
pub fn run(c: FixturesCommand) -> Result<Status> {
    match c {
        FixturesCommand::Regen { only, dir } => fixtures_regen(dir.as_deref(), only.as_deref()),
        FixturesCommand::Check { dir } => fixtures_check(dir.as_deref()),
    }
}

/// The golden directory: `dir`, or the source tree's `fixtures/golden`.
fn golden_dir(dir: Option<&Path>) -> std::path::PathBuf {
    dir.map(Path::to_path_buf)
        .unwrap_or_else(gla_fixtures::golden::default_dir)
}

/// Regenerate golden files (every case, or `only`), one case at a time with a progress bar.
fn fixtures_regen(dir: Option<&Path>, only: Option<&str>) -> Result<Status> {
    let dir = golden_dir(dir);
    let names: Vec<&str> = match only {
        Some(n) => {
            if gla_fixtures::catalog::case(n).is_none() {
                bail!(
                    "no case named `{n}` (cases: {})",
                    gla_fixtures::catalog::names().join(", ")
                );
            }
            vec![n]
        }
        None => gla_fixtures::catalog::names(),
    };
    let pb = crate::common::progress(names.len() as u64, "regen");
    let mut changed = 0;
    for n in &names {
        pb.set_message(n.to_string());
        for r in gla_fixtures::golden::regen(&dir, Some(n)).map_err(|e| anyhow!("{e}"))? {
            pb.suspend(|| {
                crate::outln!(
                    "{} {}",
                    if r.changed { "wrote    " } else { "unchanged" },
                    r.path.display()
                );
            });
            changed += r.changed as usize;
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    crate::outln!(
        "{} of {} golden file(s) changed in {}",
        changed,
        names.len(),
        dir.display()
    );
    if changed > 0 {
        crate::outln!(
            "review with `git diff --stat {}` and `glacheck fixtures check`",
            dir.display()
        );
    }
    Ok(Status::Ok)
}

/// Check the golden files byte for byte against what the code produces now.
fn fixtures_check(dir: Option<&Path>) -> Result<Status> {
    let dir = golden_dir(dir);
    let pb = indicatif::ProgressBar::new_spinner();
    pb.set_message(format!(
        "regenerating {} case(s) in memory",
        gla_fixtures::catalog::names().len()
    ));
    pb.enable_steady_tick(std::time::Duration::from_millis(200));
    let mismatches = gla_fixtures::golden::check(&dir, None).map_err(|e| anyhow!("{e}"))?;
    pb.finish_and_clear();
    if mismatches.is_empty() {
        crate::outln!(
            "PASS: {} golden file(s) in {} match the code",
            gla_fixtures::catalog::names().len(),
            dir.display()
        );
        Ok(Status::Ok)
    } else {
        for m in &mismatches {
            crate::outln!("FAIL {m}");
        }
        crate::outln!(
            "FAIL: {} mismatch(es) in {}; if the change is intended, run `glacheck fixtures regen` and review the diff",
            mismatches.len(),
            dir.display()
        );
        Ok(Status::Fail)
    }
}
