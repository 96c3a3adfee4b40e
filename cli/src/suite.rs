//! `glacheck suite merge`: merge the JSON summaries of property-suite shards (machines of a CI
//! matrix, `GLA_SHARD=i/n`, or `cargo nextest --partition`) into one LAPACK-style table.

use crate::common::{out, Status};
use anyhow::{bail, Context, Result};
use clap::Subcommand;
use gla_judge::Summary;
use std::path::{Path, PathBuf};

/// `glacheck suite ...`
#[derive(Debug, Subcommand)]
pub enum SuiteCommand {
    /// Merge shard summaries (`*.json` written by the property suite with GLA_SUMMARY_DIR) into
    /// one table. Exit status 1 when any shard failed a case or a property, or when two shards
    /// ran the same case (the shards were not disjoint).
    Merge {
        /// Summary files, or folders whose `*.json` files are read.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Also write the merged summary as JSON.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("cannot read `{}`", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    if out.is_empty() {
        bail!("no summary files in {paths:?}");
    }
    Ok(out)
}

fn read(path: &Path) -> Result<Summary> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("`{}` is not JSON", path.display()))?;
    Summary::from_json(&v)
        .with_context(|| format!("`{}` is not a glacheck suite summary", path.display()))
}

/// Run `glacheck suite ...`.
pub fn run(c: SuiteCommand) -> Result<Status> {
    let SuiteCommand::Merge { paths, json } = c;
    let files = files(&paths)?;
    let mut merged = Summary::default();
    let mut parts: Vec<(PathBuf, Summary)> = Vec::new();
    for f in &files {
        parts.push((f.clone(), read(f)?));
    }
    let mut overlaps = Vec::new();
    for (i, (fa, a)) in parts.iter().enumerate() {
        for (fb, b) in &parts[i + 1..] {
            for (prop, n) in a.overlaps(b) {
                overlaps.push(format!(
                    "{prop}: {n} case(s) ran in both {} and {}",
                    fa.display(),
                    fb.display()
                ));
            }
        }
        merged.merge(a);
    }
    let cases: usize = merged.case_hashes.values().map(Vec::len).sum();
    out(&format!(
        "GLA property suite, {} summaries merged ({cases} generated cases)\n{}",
        files.len(),
        merged.table()
    ));
    if let Some(j) = json {
        crate::common::write_atomically(
            &j,
            serde_json::to_string_pretty(&merged.to_json())?.as_bytes(),
        )?;
    }
    for o in &overlaps {
        crate::outln!("OVERLAP {o}");
    }
    let pass = merged.pass() && overlaps.is_empty();
    crate::outln!(
        "{}",
        if pass {
            "PASS: every shard passed, shards disjoint"
        } else if !overlaps.is_empty() {
            "FAIL: shards overlap"
        } else {
            "FAIL: a shard failed"
        }
    );
    Ok(if pass { Status::Ok } else { Status::Fail })
}
