//! `glacheck fixtures regen/check` and `glacheck sweep` smoke tests.

mod common;
use common::*;

#[test]
fn fixtures_regen_is_deterministic_and_check_reports_missing_files() {
    let dir = temp_dir("regen");
    let o = glacheck(&["fixtures", "regen", "--only", "mild", "--dir", s(&dir)]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let file = dir.join("mild.safetensors");
    let first = std::fs::read(&file).unwrap();
    let o = glacheck(&["fixtures", "regen", "--only", "mild", "--dir", s(&dir)]);
    assert_eq!(o.status.code(), Some(0));
    assert!(texts(&o).0.contains("unchanged"), "{:?}", texts(&o));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        first,
        "regen must be byte-identical"
    );
    // `check` on a directory holding only one case reports the others missing: exit 1.
    let o = glacheck(&["fixtures", "check", "--dir", s(&dir)]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    assert!(texts(&o).0.contains("golden file missing"));
    // Unknown case: usage error.
    let o = glacheck(&[
        "fixtures",
        "regen",
        "--only",
        "no_such_case",
        "--dir",
        s(&dir),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sweep_writes_csv_and_labelled_svg() {
    let dir = temp_dir("sweep");
    let out = dir.join("out");
    let o = glacheck(&[
        "sweep",
        "--impl",
        "recurrent",
        "--impl",
        "chunked",
        "--regime",
        "mild",
        "--regime",
        "strong",
        "--t-min",
        "16",
        "--t-max",
        "64",
        "--k",
        "8",
        "--v",
        "8",
        "--backward",
        "--out",
        s(&out),
    ]);
    let (so, se) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let mut lines = csv.lines();
    assert!(lines
        .next()
        .unwrap()
        .starts_with("implementation,regime,T,output,ratio,bound,pass"));
    // 2 implementations x 2 regimes x 3 lengths x (o, ht, o.bwd, ht.bwd, dq, dk, dv, dg, dh0,
    // and the informational dg_vs_M_dg_local row, pass column "info").
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2 * 2 * 3 * 10);
    assert_eq!(
        rows.iter()
            .filter(|l| l.contains(",dg_vs_M_dg_local,"))
            .count(),
        2 * 2 * 3
    );
    assert!(rows
        .iter()
        .filter(|l| l.contains(",dg_vs_M_dg_local,"))
        .all(|l| l.contains(",info,")));
    for name in [
        "recurrent-f32-o.svg",
        "recurrent-f32-dg.svg",
        "chunked-f32-C64c16-o.svg",
        "chunked-f32-C64c16-dg.svg",
        "chunked-f32-C64c16-dg_vs_M_dg_local.svg",
    ] {
        let svg = std::fs::read_to_string(out.join(name)).unwrap();
        assert!(svg.starts_with("<svg"), "{name}");
        for needle in [
            "sequence length T",
            "worst ratio of",
            "mild (logsigmoid/16)",
            "strong (logsigmoid/0.1)",
            ">\n16\n<",
            ">\n64\n<",
        ] {
            assert!(svg.contains(needle), "{name}: missing {needle:?}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
