//! `glacheck fixtures regen|check`: the committed golden files (gla-fixtures).

use crate::backend;
use crate::common::Status;
use anyhow::Result;
use clap::Subcommand;
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
        FixturesCommand::Regen { only, dir } => {
            backend::fixtures_regen(dir.as_deref(), only.as_deref())
        }
        FixturesCommand::Check { dir } => backend::fixtures_check(dir.as_deref()),
    }
}
