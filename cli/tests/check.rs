//! `glacheck check` on a reduced catalog: exit 0 and the table.

mod common;
use common::*;

#[test]
fn check_small_cases_pass_and_print_the_table() {
    let o = glacheck(&["check", "--list"]);
    let (so, se) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    let cases: Vec<String> = so
        .lines()
        .filter_map(|l| l.strip_prefix("case "))
        .map(|l| l.split(':').next().unwrap().to_string())
        .collect();
    assert!(
        cases.len() >= 8,
        "the catalog should have the issue's cases:\n{so}"
    );
    // Two cases keep the test short; the full catalog is `glacheck check`.
    let picked: Vec<&String> = cases.iter().take(2).collect();
    let mut args = vec!["check"];
    for c in &picked {
        args.push("--only");
        args.push(c);
    }
    let o = glacheck(&args);
    let (so, se) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    let header = so.lines().next().unwrap();
    for col in [
        "case",
        "implementation",
        "o",
        "ht",
        "dq",
        "dk",
        "dv",
        "dg",
        "dh0",
        "bound",
        "result",
    ] {
        assert!(
            header.split_whitespace().any(|w| w == col),
            "missing column {col}: {header}"
        );
    }
    for imp in [
        "recurrent-f32",
        "recurrent-f64",
        "parallel-f32",
        "chunked-f32-C64c16",
        "chunked-f32-C64c16-bf16",
    ] {
        assert!(
            so.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(imp) && l.ends_with("PASS")),
            "{imp}:\n{so}"
        );
    }
    assert!(so.contains("PASS:"), "{so}");
}

#[test]
fn check_rejects_unknown_case() {
    let o = glacheck(&["check", "--only", "no-such-case-anywhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(texts(&o).1.contains("no-such-case-anywhere"));
}
