//! `glacheck verify`'s empirical verdicts from the command line: the bf16 chunked twin's `o`
//! scaled by 1.005 passes the derived bound but fails the honest baseline at `--precision bf16`,
//! with a line naming `o` and the rule; `--baseline advisory` turns that into a warning; the JSON
//! carries both verdicts; `glacheck mutants` runs.

mod common;
use common::*;
use safetensors::Dtype;
use std::path::PathBuf;

fn mild() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden/mild.safetensors")
}

/// The bf16 twin's o and ht (from `glacheck eval`), o scaled by `factor` and stored in bf16.
fn candidate(tag: &str, factor: f64) -> PathBuf {
    let dir = temp_dir(tag);
    let twin = dir.join("twin.safetensors");
    let o = glacheck(&[
        "eval",
        "--impl",
        "chunked",
        "--compute",
        "f32",
        "--round",
        "bf16",
        s(&mild()),
        "-o",
        s(&twin),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let (t, _) = read(&twin);
    let (_, oshape, ovals) = &t["o"];
    let (_, hshape, hvals) = &t["ht"];
    let scaled: Vec<f64> = ovals
        .iter()
        .map(|&x| gla_reference::Dtype::Bf16.round(x * factor))
        .collect();
    let cand = dir.join("cand.safetensors");
    write(
        &cand,
        &[
            T::new("o", oshape, scaled, Dtype::BF16),
            T::new("ht", hshape, hvals.clone(), Dtype::F32),
        ],
        &[],
    );
    cand
}

#[test]
fn twin_scaled_by_1_005_fails_at_bf16_naming_o_and_the_rule() {
    let honest = candidate("power-honest", 1.0);
    let o = glacheck(&["verify", s(&mild()), s(&honest), "--precision", "bf16"]);
    let (so, se) = texts(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "the honest twin passes:\n{so}\n{se}"
    );
    assert!(so.contains("empirical verdicts"), "{so}");

    let bad = candidate("power-scaled", 1.005);
    let o = glacheck(&["verify", s(&mild()), s(&bad), "--precision", "bf16"]);
    let (so, se) = texts(&o);
    assert_eq!(o.status.code(), Some(1), "1.005 x o must fail:\n{so}\n{se}");
    let line = so
        .lines()
        .find(|l| l.starts_with("FAIL o: "))
        .unwrap_or_else(|| panic!("no FAIL line for o:\n{so}"));
    assert!(
        line.contains("baseline") || line.contains("bias"),
        "the line names the rule: {line}"
    );
    assert!(line.contains("rule"), "{line}");
    // the derived bound alone passes it: the main table says PASS for o
    assert!(
        so.lines()
            .any(|l| l.starts_with("o ") && l.contains("PASS")),
        "{so}"
    );
    assert!(!so.lines().any(|l| l.starts_with("FAIL ht")), "{so}");

    // advisory: a warning, exit 0
    let o = glacheck(&[
        "verify",
        s(&mild()),
        s(&bad),
        "--precision",
        "bf16",
        "--baseline",
        "advisory",
    ]);
    let (so, se) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    assert!(so.lines().any(|l| l.starts_with("WARN o: ")), "{so}");

    // JSON: both verdicts
    let o = glacheck(&[
        "verify",
        s(&mild()),
        s(&bad),
        "--precision",
        "bf16",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(j["pass"], false);
    assert_eq!(j["pass_bound"], true);
    let ot = j["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "o")
        .unwrap();
    assert_eq!(ot["verdicts"]["bound"], true);
    assert!(
        ot["verdicts"]["baseline"] == false || ot["verdicts"]["bias"] == false,
        "{ot}"
    );
    assert!(ot["baseline"]["base_rms"].as_f64().unwrap() > 0.0, "{ot}");
}

#[test]
fn bad_baseline_mode_is_a_usage_error() {
    let o = glacheck(&["verify", s(&mild()), s(&mild()), "--baseline", "sometimes"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn mutants_subcommand_runs_one_mutant_on_one_case() {
    let o = glacheck(&[
        "mutants",
        "--case",
        "mild",
        "--mutant",
        "scale-0.5%",
        "--no-honest",
    ]);
    let (so, se) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    assert!(
        so.lines()
            .any(|l| l.starts_with("scale-0.5%") && l.contains("caught 1/1")),
        "{so}"
    );
    let o = glacheck(&["mutants", "--mutant", "no-such-bug"]);
    assert_eq!(o.status.code(), Some(2));
}
