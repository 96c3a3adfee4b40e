//! Corpus replay: every committed input of `fuzz/corpus/<target>/` (and, for the file targets,
//! every golden fixture) through its target. A panic in a target (a finding) fails the test.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest time one input may take (the slowest seen is far below; a hang fails here).
const PER_INPUT: Duration = Duration::from_secs(10);

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    v.sort();
    v
}

/// Replay one target's inputs; the failures, one line each.
fn replay(target: gla_fuzz::Target) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = target.name;
    let mut inputs = files(&root.join("corpus").join(name));
    let mut failures = Vec::new();
    if inputs.len() < 5 {
        failures.push(format!(
            "corpus of `{name}` holds only {} inputs",
            inputs.len()
        ));
    }
    if target.goldens {
        let goldens = files(&root.join("../fixtures/golden"));
        assert!(goldens.len() >= 20, "golden fixtures missing");
        inputs.extend(goldens);
    }
    for path in &inputs {
        let data = std::fs::read(path).expect("readable input");
        let start = Instant::now();
        if std::panic::catch_unwind(|| (target.run)(&data)).is_err() {
            failures.push(format!("`{name}` panicked on {}", path.display()));
        } else if start.elapsed() > PER_INPUT {
            failures.push(format!(
                "`{name}` took {:?} on {}",
                start.elapsed(),
                path.display()
            ));
        }
    }
    failures
}

/// Every registered target on its corpus (a new target in `gla_fuzz::TARGETS` is replayed
/// without changes here, once its corpus folder exists).
#[test]
fn corpus_replay() {
    let failures: Vec<String> = gla_fuzz::TARGETS.into_iter().flat_map(replay).collect();
    assert!(
        failures.is_empty(),
        "{} finding(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}
