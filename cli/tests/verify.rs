//! `glacheck verify`: an honest f32 result passes; one element perturbed by 1e-3 relative among
//! ~100,000 fails and is named; bad candidates get precise messages and exit 2.

mod common;
use common::*;
use gla_reference::bounds::magnitudes;
use gla_reference::Problem;
use ndarray::{ArrayD, IxDyn};
use safetensors::Dtype;

fn problem_of(tensors: &[T]) -> Problem {
    let get = |n: &str| {
        tensors
            .iter()
            .find(|t| t.name == n)
            .map(|t| ArrayD::from_shape_vec(IxDyn(&t.shape), t.vals.clone()).unwrap())
    };
    Problem::from_dyn(
        get("q").unwrap(),
        get("k").unwrap(),
        get("v").unwrap(),
        get("g").unwrap(),
        get("h0"),
        get("do"),
        get("dht"),
        None,
        None,
    )
    .unwrap()
}

/// Write the input, run `eval --impl recurrent --compute f32` for an honest candidate.
fn setup(
    tag: &str,
    shape: Shape,
    backward: bool,
) -> (
    std::path::PathBuf,
    Vec<T>,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = temp_dir(tag);
    let input = dir.join("input.safetensors");
    let cand = dir.join("cand.safetensors");
    let ts = problem_tensors(shape, Dtype::F32, backward, 21);
    write(&input, &ts, &[]);
    let mut args = vec!["eval", "--impl", "recurrent", "--compute", "f32"];
    if backward {
        args.push("--backward");
    }
    let o = glacheck(&[&args[..], &[s(&input), "-o", s(&cand)]].concat());
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    (dir, ts, input, cand)
}

#[test]
fn honest_f32_passes_one_perturbed_element_fails_and_is_named() {
    // o has 1 * 400 * 4 * 64 = 102,400 elements.
    let shape = Shape {
        b: 1,
        t: 400,
        h: 4,
        k: 32,
        v: 64,
    };
    let (dir, ts, input, cand) = setup("verify-perturb", shape, false);

    let o = glacheck(&["verify", s(&input), s(&cand), "--precision", "f32"]);
    let (so, se) = texts(&o);
    assert_eq!(
        o.status.code(),
        Some(0),
        "honest f32 recurrent result must pass:\n{so}\n{se}"
    );
    assert!(so.contains("PASS"), "{so}");

    // Perturb the element where |o| / M_o is largest by 1e-3 relative (in f32).
    let (out, _) = read(&cand);
    let (_, oshape, ovals) = &out["o"];
    let p = problem_of(&ts);
    let m = magnitudes(&p);
    let mflat: Vec<f64> = m.o.iter().copied().collect();
    let (idx, _) = ovals
        .iter()
        .zip(&mflat)
        .enumerate()
        .map(|(i, (x, m))| (i, x.abs() / m))
        .fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
    let mut bad = ovals.clone();
    bad[idx] = ((bad[idx] as f32) * (1.0 + 1e-3)) as f64;
    assert_ne!(bad[idx], ovals[idx]);
    let perturbed = dir.join("perturbed.safetensors");
    let (_, hshape, hvals) = &out["ht"];
    write(
        &perturbed,
        &[
            T::new("o", oshape, bad, Dtype::F32),
            T::new("ht", hshape, hvals.clone(), Dtype::F32),
        ],
        &[],
    );
    let (h, v, t) = (shape.h, shape.v, shape.t);
    let (tt, hh, ee) = ((idx / (h * v)) % t, (idx / v) % h, idx % v);

    let o = glacheck(&["verify", s(&input), s(&perturbed), "--precision", "f32"]);
    let (so, se) = texts(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "perturbed result must fail:\n{so}\n{se}"
    );
    assert!(so.contains("FAIL"), "{so}");
    let named = format!("[0, {tt}, {hh}, {ee}]");
    assert!(
        so.contains(&named),
        "the report must name element {named}:\n{so}"
    );
    assert!(
        so.contains(&format!("time {tt}, head {hh}, v channel {ee}")),
        "{so}"
    );
    // ht was not touched: it passes.
    assert!(
        so.lines()
            .any(|l| l.starts_with("ht ") && l.contains("PASS")),
        "{so}"
    );

    // The same in JSON.
    let o = glacheck(&[
        "verify",
        s(&input),
        s(&perturbed),
        "--precision",
        "f32",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(j["pass"], false);
    let ot = j["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["name"] == "o")
        .unwrap();
    assert_eq!(ot["pass"], false);
    assert_eq!(ot["worst"]["index"], serde_json::json!([0, tt, hh, ee]));
    assert!(ot["ratio"].as_f64().unwrap() > ot["bound"].as_f64().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn honest_backward_passes_with_both_dg_forms_reported() {
    let shape = Shape {
        b: 2,
        t: 70,
        h: 2,
        k: 8,
        v: 8,
    };
    let (dir, _, input, cand) = setup("verify-bwd", shape, true);
    let o = glacheck(&["verify", s(&input), s(&cand)]);
    let (so, se) = texts(&o);
    assert_eq!(o.status.code(), Some(0), "{so}\n{se}");
    for n in ["o", "ht", "dq", "dk", "dv", "dg", "dh0"] {
        assert!(
            so.lines()
                .any(|l| l.starts_with(&format!("{n} ")) && l.contains("PASS")),
            "{n}:\n{so}"
        );
    }
    assert!(so.contains("dg ratios: reverse-cumsum"), "{so}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--truth`: the certified f64 truth gives the oracle's verdicts with ratios at least the
/// oracle's, and the report names it; a bad truth is a usage error.
#[test]
fn truth_f64_is_at_least_as_strict_as_the_oracle() {
    let shape = Shape {
        b: 1,
        t: 70,
        h: 2,
        k: 8,
        v: 8,
    };
    let (dir, _, input, cand) = setup("verify-truth", shape, true);
    let json = |truth: &str| -> serde_json::Value {
        let o = glacheck(&["verify", s(&input), s(&cand), "--json", "--truth", truth]);
        let (so, se) = texts(&o);
        assert_eq!(o.status.code(), Some(0), "{truth}: {so}\n{se}");
        serde_json::from_str(&so).unwrap()
    };
    let (f, o) = (json("f64"), json("oracle"));
    assert!(
        f["oracle"].as_str().unwrap().starts_with("certified f64"),
        "{f}"
    );
    assert!(
        o["oracle"].as_str().unwrap().starts_with("MPFR oracle"),
        "{o}"
    );
    let ts = |v: &serde_json::Value| v["tensors"].as_array().unwrap().clone();
    for (a, b) in ts(&f).iter().zip(ts(&o)) {
        let (ra, rb) = (a["ratio"].as_f64().unwrap(), b["ratio"].as_f64().unwrap());
        assert!(
            ra >= rb && a["truth_charge"].as_f64().unwrap() > 0.0,
            "{a}\n{b}"
        );
        assert_eq!(b["truth_charge"].as_f64().unwrap(), 0.0);
    }
    // auto: no stored truth and a small problem: the oracle
    assert!(json("auto")["oracle"]
        .as_str()
        .unwrap()
        .starts_with("MPFR oracle"));
    expect_exit(
        &["verify", s(&input), s(&cand), "--truth", "stored"],
        2,
        "holds no stored truth",
    );
    expect_exit(
        &[
            "verify",
            s(&input),
            s(&cand),
            "--truth",
            "/nonexistent/golden.safetensors",
        ],
        2,
        "golden.safetensors",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--plan tensor-core` declares more rounding stages: the bound grows, the report names the plan;
/// an unknown plan is a usage error.
#[test]
fn declared_plan_sets_the_stages_and_is_reported() {
    let shape = Shape {
        b: 1,
        t: 70,
        h: 2,
        k: 8,
        v: 8,
    };
    let (dir, _, input, cand) = setup("verify-plan", shape, true);
    let json = |plan: &str| -> serde_json::Value {
        let o = glacheck(&[
            "verify",
            s(&input),
            s(&cand),
            "--json",
            "--precision",
            "bf16",
            "--plan",
            plan,
        ]);
        let (so, se) = texts(&o);
        assert!(o.status.code().is_some(), "{plan}: {so}\n{se}");
        serde_json::from_str(&so).unwrap()
    };
    let (f, t) = (json("fla"), json("tensor-core"));
    assert_eq!(
        (f["plan"].as_str(), t["plan"].as_str()),
        (Some("fla"), Some("tensor-core"))
    );
    let ts = |v: &serde_json::Value| v["tensors"].as_array().unwrap().clone();
    for (a, b) in ts(&f).iter().zip(ts(&t)) {
        let stages = |x: &serde_json::Value| x["model"]["u_stages"].as_f64().unwrap();
        // bf16 u = 2^-8: o, ht gain A's two off-diagonal factors, the gradients also dA
        let extra = if matches!(a["name"].as_str(), Some("o" | "ht")) {
            2.0
        } else {
            3.0
        };
        assert_eq!(stages(&b) - stages(a), extra * 2f64.powi(-8), "{a}\n{b}");
    }
    expect_exit(
        &["verify", s(&input), s(&cand), "--plan", "wmma"],
        2,
        "wmma",
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn expect_exit(args: &[&str], code: i32, needle: &str) -> String {
    let o = glacheck(args);
    let (so, se) = texts(&o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "{args:?}\nstdout:\n{so}\nstderr:\n{se}"
    );
    let all = format!("{so}{se}");
    assert!(
        all.contains(needle),
        "{args:?}: expected {needle:?} in\n{all}"
    );
    all
}

#[test]
fn bad_candidates_get_precise_messages() {
    let shape = Shape {
        b: 1,
        t: 20,
        h: 2,
        k: 4,
        v: 3,
    };
    let (dir, _, input, cand) = setup("verify-bad", shape, false);
    let (out, _) = read(&cand);
    let (_, oshape, ovals) = &out["o"];
    let (_, hshape, hvals) = &out["ht"];
    let w = |name: &str, ts: &[T]| {
        let p = dir.join(name);
        write(&p, ts, &[]);
        p
    };
    // Wrong shape.
    let p = w(
        "shape.safetensors",
        &[T::new("o", &[1, 20, 2, 4], vec![0.0; 160], Dtype::F32)],
    );
    let msg = expect_exit(
        &["verify", s(&input), s(&p)],
        2,
        "tensor `o` has shape [1, 20, 2, 4], expected [B, T, H, V] = [1, 20, 2, 3]",
    );
    assert_eq!(msg.trim_end().lines().count(), 1, "{msg}");
    // Wrong dtype.
    let p = w(
        "dtype.safetensors",
        &[T::new("o", oshape, vec![1.0; ovals.len()], Dtype::I32)],
    );
    expect_exit(&["verify", s(&input), s(&p)], 2, "tensor `o` has dtype I32");
    // No outputs at all.
    let p = w(
        "none.safetensors",
        &[T::new("x", &[2], vec![1.0, 2.0], Dtype::F32)],
    );
    expect_exit(&["verify", s(&input), s(&p)], 2, "holds none of o, ht");
    // Gradients but no `do` in the input.
    let p = w(
        "grad.safetensors",
        &[T::new("dv", oshape, ovals.clone(), Dtype::F32)],
    );
    expect_exit(&["verify", s(&input), s(&p)], 2, "no `do`");
    // NaN where the oracle is finite: a failure that names the element.
    let mut nan = ovals.clone();
    nan[(3 * 2 + 1) * 3 + 2] = f64::NAN; // (time 3, head 1, v channel 2) in [1, 20, 2, 3]
    let p = w(
        "nan.safetensors",
        &[
            T::new("o", oshape, nan, Dtype::F32),
            T::new("ht", hshape, hvals.clone(), Dtype::F32),
        ],
    );
    let all = expect_exit(&["verify", s(&input), s(&p)], 1, "non-finite");
    assert!(all.contains("time 3, head 1, v channel 2"), "{all}");
    // Missing / truncated files.
    expect_exit(
        &["verify", s(&input), "/nonexistent/cand.safetensors"],
        2,
        "cand.safetensors",
    );
    let bytes = std::fs::read(&cand).unwrap();
    let p = dir.join("trunc.safetensors");
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    expect_exit(&["verify", s(&input), s(&p)], 2, "truncated");
    // Usage.
    expect_exit(
        &["verify", s(&input), s(&cand), "--precision", "int8"],
        2,
        "int8",
    );
    let _ = std::fs::remove_dir_all(&dir);
}
