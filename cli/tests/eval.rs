//! `glacheck eval`: round trips of files written by hand in fla's layout, and bad inputs.

mod common;
use common::*;
use gla_reference::bounds::{compare, magnitudes, Algorithm, BoundSpec};
use gla_reference::{recurrent, Dtype as D, Problem, Solution};
use ndarray::{ArrayD, IxDyn};
use safetensors::Dtype;

const SHAPE: Shape = Shape {
    b: 2,
    t: 37,
    h: 2,
    k: 8,
    v: 6,
};

/// The problem the test wrote, built independently of the file reader.
fn problem_of(tensors: &[T], cu: Option<Vec<i64>>, scale: Option<f64>) -> Problem {
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
        cu,
        scale,
    )
    .unwrap()
}

fn tensor4(
    out: &std::collections::HashMap<String, (Dtype, Vec<usize>, Vec<f64>)>,
    n: &str,
) -> ndarray::Array4<f64> {
    let (_, shape, vals) = &out[n];
    let s = if shape.len() == 3 {
        vec![shape[0], shape[1], shape[2], 1]
    } else {
        shape.clone()
    };
    ArrayD::from_shape_vec(IxDyn(&s), vals.clone())
        .unwrap()
        .into_dimensionality()
        .unwrap()
}

fn solution_of(out: &std::collections::HashMap<String, (Dtype, Vec<usize>, Vec<f64>)>) -> Solution {
    let grads = out.contains_key("dq").then(|| gla_reference::Gradients {
        dq: tensor4(out, "dq"),
        dk: tensor4(out, "dk"),
        dv: tensor4(out, "dv"),
        dg: tensor4(out, "dg"),
        dh0: tensor4(out, "dh0"),
    });
    Solution {
        o: tensor4(out, "o"),
        ht: tensor4(out, "ht"),
        grads,
    }
}

#[test]
fn recurrent_round_trip_f32_and_bf16_inputs() {
    for (in_dtype, compute, out_dtype) in [
        (Dtype::F32, "f64", Dtype::F64),
        (Dtype::BF16, "f32", Dtype::F32),
        (Dtype::F32, "f32", Dtype::F32),
    ] {
        let dir = temp_dir("eval-rt");
        let input = dir.join("in.safetensors");
        let output = dir.join("out.safetensors");
        let ts = problem_tensors(SHAPE, in_dtype, true, 11);
        write(&input, &ts, &[("scale", "0.3")]);
        let o = glacheck(&[
            "eval",
            "--impl",
            "recurrent",
            "--compute",
            compute,
            "--backward",
            s(&input),
            "-o",
            s(&output),
        ]);
        let (so, se) = texts(&o);
        assert_eq!(o.status.code(), Some(0), "stdout:\n{so}\nstderr:\n{se}");
        let (out, meta) = read(&output);
        let mut names: Vec<&String> = out.keys().collect();
        names.sort();
        assert_eq!(names, ["dg", "dh0", "dk", "dq", "dv", "ht", "o"]);
        for n in ["o", "ht", "dq", "dk", "dv", "dg", "dh0"] {
            assert_eq!(out[n].0, out_dtype, "{n} dtype");
        }
        let Shape { b, t, h, k, v } = SHAPE;
        assert_eq!(out["o"].1, vec![b, t, h, v]);
        assert_eq!(out["ht"].1, vec![b, h, k, v]);
        assert_eq!(out["dg"].1, vec![b, t, h, k]);
        assert_eq!(out["dh0"].1, vec![b, h, k, v]);
        assert_eq!(meta["impl"], "recurrent");
        assert_eq!(meta["compute"], compute);
        assert_eq!(meta["scale"].parse::<f64>().unwrap(), 0.3);
        assert!(meta.contains_key("glacheck_version"));
        // Exactly what the library computes on the same values: the file round trip loses nothing.
        let p = problem_of(&ts, None, Some(0.3));
        let want = if compute == "f64" {
            recurrent::backward::<f64>(&p)
        } else {
            recurrent::backward::<f32>(&p)
        }
        .unwrap();
        let got = solution_of(&out);
        assert_eq!(got, want, "{in_dtype:?} -> {compute}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn forward_only_scalar_gates_varlen_int32() {
    // Packed varlen (B = 1) with an empty sequence, scalar gates [B,T,H], cu_seqlens int32, no scale.
    let dir = temp_dir("eval-varlen");
    let input = dir.join("in.safetensors");
    let output = dir.join("out.safetensors");
    let (t, h, k, v) = (30, 2, 4, 3);
    let cu = vec![0i64, 7, 7, 30];
    let ts = vec![
        T::new("q", &[1, t, h, k], values(1, t * h * k), Dtype::BF16),
        T::new("k", &[1, t, h, k], values(2, t * h * k), Dtype::BF16),
        T::new("v", &[1, t, h, v], values(3, t * h * v), Dtype::BF16),
        T::new("g", &[1, t, h], gates(4, t * h), Dtype::BF16),
        T::new("h0", &[3, h, k, v], values(5, 3 * h * k * v), Dtype::BF16),
        T::new(
            "cu_seqlens",
            &[4],
            cu.iter().map(|&x| x as f64).collect(),
            Dtype::I32,
        ),
    ];
    write(&input, &ts, &[]);
    let o = glacheck(&[
        "eval",
        "--impl",
        "recurrent",
        "--compute",
        "f64",
        s(&input),
        "-o",
        s(&output),
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let (out, _) = read(&output);
    assert_eq!(out.len(), 2, "forward only: o and ht");
    assert_eq!(out["ht"].1, vec![3, h, k, v]);
    let p = problem_of(&ts[..5], Some(cu), None);
    assert_eq!(solution_of(&out), recurrent::forward::<f64>(&p).unwrap());
    // The empty sequence's final state is its initial state.
    let ht = tensor4(&out, "ht");
    let h0 = ArrayD::from_shape_vec(IxDyn(&[3, h, k, v]), ts[4].vals.clone()).unwrap();
    for hh in 0..h {
        for kk in 0..k {
            for vv in 0..v {
                assert_eq!(ht[[1, hh, kk, vv]], h0[[1, hh, kk, vv]]);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oracle_round_trip_bf16_and_f32() {
    for in_dtype in [Dtype::BF16, Dtype::F32] {
        let dir = temp_dir("eval-oracle");
        let input = dir.join("in.safetensors");
        let output = dir.join("out.safetensors");
        let shape = Shape {
            b: 1,
            t: 24,
            h: 2,
            k: 4,
            v: 4,
        };
        let ts = problem_tensors(shape, in_dtype, true, 5);
        write(&input, &ts, &[]);
        let o = glacheck(&[
            "eval",
            "--impl",
            "oracle",
            "--backward",
            s(&input),
            "-o",
            s(&output),
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
        let (out, meta) = read(&output);
        assert_eq!(out.len(), 7);
        assert!(
            out.values().all(|t| t.0 == Dtype::F64),
            "oracle results are f64"
        );
        assert_eq!(meta["impl"], "oracle");
        let bits: u32 = meta["oracle_bits_agreed"].parse().unwrap();
        assert!(bits >= 53, "oracle agreed on {bits} bits only");
        // The oracle's f64 result passes the f64 recurrence's own bound against... itself judged as
        // the truth: the f64 recurrence must be within its bound of the oracle.
        let p = problem_of(&ts, None, None);
        let exact = solution_of(&out);
        let cand = recurrent::backward::<f64>(&p).unwrap();
        let r = compare(
            &p,
            &exact,
            &magnitudes(&p),
            &cand,
            &BoundSpec::new(Algorithm::Recurrent, D::F64),
        )
        .unwrap();
        assert!(r.pass(), "{r}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Run eval on a bad input: exit 2, one error line naming the problem, output untouched.
fn bad_input(
    tag: &str,
    tensors: &[T],
    meta: &[(&str, &str)],
    raw: Option<Vec<u8>>,
    extra: &[&str],
    expect: &str,
) {
    let dir = temp_dir(tag);
    let input = dir.join("in.safetensors");
    match raw {
        Some(bytes) => std::fs::write(&input, bytes).unwrap(),
        None => write(&input, tensors, meta),
    }
    // 1. The output does not exist: it must not be created.
    let fresh = dir.join("fresh.safetensors");
    let mut args = vec!["eval", "--impl", "recurrent"];
    args.extend_from_slice(extra);
    let o = glacheck(&[&args[..], &[s(&input), "-o", s(&fresh)]].concat());
    let (so, se) = texts(&o);
    assert_eq!(o.status.code(), Some(2), "{tag}: stdout {so} stderr {se}");
    assert!(
        se.contains(expect),
        "{tag}: stderr should mention {expect:?}:\n{se}"
    );
    assert_eq!(
        se.trim_end().lines().count(),
        1,
        "{tag}: one error line:\n{se}"
    );
    assert!(!fresh.exists(), "{tag}: output created");
    // 2. The output exists: it must not be overwritten.
    let old = dir.join("old.safetensors");
    std::fs::write(&old, b"previous contents").unwrap();
    let o = glacheck(&[&args[..], &[s(&input), "-o", s(&old)]].concat());
    assert_eq!(o.status.code(), Some(2), "{tag}");
    assert_eq!(
        std::fs::read(&old).unwrap(),
        b"previous contents",
        "{tag}: output overwritten"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{tag}: stray files {leftovers:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_inputs_exit_2_and_leave_output_alone() {
    let good = problem_tensors(SHAPE, Dtype::F32, true, 3);
    let without = |n: &str| -> Vec<T> {
        problem_tensors(SHAPE, Dtype::F32, true, 3)
            .into_iter()
            .filter(|t| t.name != n)
            .collect()
    };
    bad_input(
        "missing-g",
        &without("g"),
        &[],
        None,
        &[],
        "missing tensor `g`",
    );
    bad_input(
        "missing-v",
        &without("v"),
        &[],
        None,
        &[],
        "missing tensor `v`",
    );
    // Wrong shape: k with a different K.
    let mut wrong = without("k");
    let Shape { b, t, h, k, .. } = SHAPE;
    wrong.push(T::new(
        "k",
        &[b, t, h, k + 1],
        values(9, b * t * h * (k + 1)),
        Dtype::F32,
    ));
    bad_input("shape-k", &wrong, &[], None, &[], "`k`");
    // Wrong rank of g.
    let mut wrong = without("g");
    wrong.push(T::new(
        "g",
        &[b, t * h * k],
        gates(9, b * t * h * k),
        Dtype::F32,
    ));
    bad_input("rank-g", &wrong, &[], None, &[], "`g`");
    // Wrong dtype: q stored as int32.
    let mut wrong = without("q");
    wrong.push(T::new(
        "q",
        &[b, t, h, k],
        vec![1.0; b * t * h * k],
        Dtype::I32,
    ));
    bad_input("dtype-q", &wrong, &[], None, &[], "`q`");
    // cu_seqlens as float.
    let mut wrong = problem_tensors(Shape { b: 1, ..SHAPE }, Dtype::F32, false, 3);
    wrong.retain(|x| x.name != "h0");
    wrong.push(T::new("cu_seqlens", &[2], vec![0.0, t as f64], Dtype::F32));
    bad_input("dtype-cu", &wrong, &[], None, &[], "cu_seqlens");
    // Positive gate.
    let mut wrong = without("g");
    let mut gv = gates(9, b * t * h * k);
    gv[17] = 0.5;
    wrong.push(T::new("g", &[b, t, h, k], gv, Dtype::F32));
    bad_input("positive-g", &wrong, &[], None, &[], "> 0");
    // Bad scale metadata.
    bad_input("scale", &good, &[("scale", "one half")], None, &[], "scale");
    // Truncated file: cut the data section short.
    let dir = temp_dir("trunc-src");
    let f = dir.join("x.safetensors");
    write(&f, &good, &[]);
    let bytes = std::fs::read(&f).unwrap();
    bad_input(
        "truncated",
        &[],
        &[],
        Some(bytes[..bytes.len() - 100].to_vec()),
        &[],
        "truncated",
    );
    bad_input(
        "truncated-header",
        &[],
        &[],
        Some(bytes[..20].to_vec()),
        &[],
        "truncated",
    );
    bad_input(
        "not-safetensors",
        &[],
        &[],
        Some(b"hello world, definitely not a tensor file".to_vec()),
        &[],
        "safetensors",
    );
    let _ = std::fs::remove_dir_all(&dir);
    // --backward without `do`.
    bad_input("no-do", &without("do"), &[], None, &["--backward"], "`do`");
}

#[test]
fn usage_errors_exit_2() {
    let o = glacheck(&["eval", "--impl", "nonsense", "a", "-o", "b"]);
    assert_eq!(o.status.code(), Some(2));
    let o = glacheck(&[
        "eval",
        "--impl",
        "recurrent",
        "--round",
        "bf16",
        "a",
        "-o",
        "b",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(texts(&o).1.contains("--round"));
    let o = glacheck(&[
        "eval",
        "--impl",
        "chunked",
        "--chunk",
        "48",
        "--sub-chunk",
        "32",
        "a",
        "-o",
        "b",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = glacheck(&[
        "eval",
        "--impl",
        "recurrent",
        "/nonexistent/in.safetensors",
        "-o",
        "/tmp/never.safetensors",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(!std::path::Path::new("/tmp/never.safetensors").exists());
}
