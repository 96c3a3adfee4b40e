//! Every error path of the problem builder (and `from_dyn`, `rounded_to`, `Dtype` parsing), with
//! the error variant and the message contents (tensor, index, value) checked; and `Dtype`'s
//! rounding emulation (formerly unit tests of `src/dtype.rs`).

use gla_reference::{test_support, Dtype, Gates, GlaError, Problem, ProblemBuilder};
use ndarray::{Array3, Array4, ArrayD, IxDyn};

const B: usize = 1;
const T: usize = 5;
const H: usize = 2;
const K: usize = 3;
const V: usize = 4;

fn a4(s: (usize, usize, usize, usize), x: f64) -> Array4<f64> {
    Array4::from_elem(s, x)
}
fn qk() -> Array4<f64> {
    a4((B, T, H, K), 0.5)
}
fn vv() -> Array4<f64> {
    a4((B, T, H, V), 0.25)
}
fn gpc() -> Array4<f64> {
    a4((B, T, H, K), -0.1)
}
fn state(n: usize) -> Array4<f64> {
    a4((n, H, K, V), 1.0)
}
fn base() -> ProblemBuilder {
    Problem::builder(qk(), qk(), vv(), Gates::PerChannel(gpc()))
}
fn err(b: ProblemBuilder) -> GlaError {
    b.build().expect_err("expected a validation error")
}
fn dynz(shape: &[usize]) -> ArrayD<f64> {
    ArrayD::zeros(IxDyn(shape))
}

#[test]
fn valid_problem_builds() {
    let p = base()
        .h0(state(B))
        .do_(vv())
        .dht(state(B))
        .scale(0.3)
        .build()
        .unwrap();
    assert_eq!(p.dims().n, 1);
    assert_eq!(p.scale(), 0.3);
    // -inf gates are valid (alpha = 0).
    let mut g = gpc();
    g[[0, 2, 1, 0]] = f64::NEG_INFINITY;
    assert!(Problem::builder(qk(), qk(), vv(), Gates::PerChannel(g))
        .build()
        .is_ok());
    // Empty sequences are valid.
    assert!(Problem::builder(qk(), qk(), vv(), Gates::PerChannel(gpc()))
        .cu_seqlens(&[0, 0, 5, 5])
        .h0(state(3))
        .build()
        .is_ok());
}

fn assert_shape(e: GlaError, tensor: &str, got: &[usize]) {
    match &e {
        GlaError::Shape {
            tensor: t, got: g, ..
        } => {
            assert_eq!(t, tensor, "{e}");
            assert_eq!(g, got, "{e}");
        }
        other => panic!("expected Shape error for {tensor}, got {other:?}"),
    }
    let msg = e.to_string();
    assert!(msg.contains(&format!("`{tensor}`")), "{msg}");
    assert!(msg.contains(&format!("{got:?}")), "{msg}");
}

#[test]
fn from_dyn_rejects_wrong_ranks() {
    let q4 = || dynz(&[B, T, H, K]);
    let v4 = || dynz(&[B, T, H, V]);
    let g4 = || dynz(&[B, T, H, K]);
    // q
    let e = Problem::from_dyn(
        dynz(&[B, T, K]),
        q4(),
        v4(),
        g4(),
        None,
        None,
        None,
        None,
        None,
    )
    .unwrap_err();
    assert_shape(e, "q", &[B, T, K]);
    // k
    let e = Problem::from_dyn(
        q4(),
        dynz(&[B, T, H, K, 1]),
        v4(),
        g4(),
        None,
        None,
        None,
        None,
        None,
    )
    .unwrap_err();
    assert_shape(e, "k", &[B, T, H, K, 1]);
    // v
    let e = Problem::from_dyn(
        q4(),
        q4(),
        dynz(&[T, H, V]),
        g4(),
        None,
        None,
        None,
        None,
        None,
    )
    .unwrap_err();
    assert_shape(e, "v", &[T, H, V]);
    // g: rank 2 and rank 5
    for shape in [vec![B, T], vec![B, T, H, K, 1]] {
        let e = Problem::from_dyn(q4(), q4(), v4(), dynz(&shape), None, None, None, None, None)
            .unwrap_err();
        assert_shape(e.clone(), "g", &shape);
        assert!(e.to_string().contains("scalar"), "{e}");
    }
    // h0, do, dht
    let e = Problem::from_dyn(
        q4(),
        q4(),
        v4(),
        g4(),
        Some(dynz(&[H, K, V])),
        None,
        None,
        None,
        None,
    )
    .unwrap_err();
    assert_shape(e, "h0", &[H, K, V]);
    let e = Problem::from_dyn(
        q4(),
        q4(),
        v4(),
        g4(),
        None,
        Some(dynz(&[B, T, V])),
        None,
        None,
        None,
    )
    .unwrap_err();
    assert_shape(e, "do", &[B, T, V]);
    let e = Problem::from_dyn(
        q4(),
        q4(),
        v4(),
        g4(),
        None,
        None,
        Some(dynz(&[1, H, K, V, 1])),
        None,
        None,
    )
    .unwrap_err();
    assert_shape(e, "dht", &[1, H, K, V, 1]);
    // Rank 3 gates are scalar gates and build.
    let p = Problem::from_dyn(
        q4(),
        q4(),
        v4(),
        dynz(&[B, T, H]),
        None,
        None,
        None,
        None,
        None,
    )
    .unwrap();
    assert_eq!(p.gate_kind(), gla_reference::GateKind::Scalar);
}

#[test]
fn shape_mismatches() {
    // k
    assert_shape(
        err(Problem::builder(
            qk(),
            a4((B, T, H, K + 1), 0.0),
            vv(),
            Gates::PerChannel(gpc()),
        )),
        "k",
        &[B, T, H, K + 1],
    );
    assert_shape(
        err(Problem::builder(
            qk(),
            a4((B, T + 1, H, K), 0.0),
            vv(),
            Gates::PerChannel(gpc()),
        )),
        "k",
        &[B, T + 1, H, K],
    );
    // v: leading dims must match q's
    assert_shape(
        err(Problem::builder(
            qk(),
            qk(),
            a4((B, T, H + 1, V), 0.0),
            Gates::PerChannel(gpc()),
        )),
        "v",
        &[B, T, H + 1],
    );
    assert_shape(
        err(Problem::builder(
            qk(),
            qk(),
            a4((B + 1, T, H, V), 0.0),
            Gates::PerChannel(gpc()),
        )),
        "v",
        &[B + 1, T, H],
    );
    // g per-channel
    assert_shape(
        err(Problem::builder(
            qk(),
            qk(),
            vv(),
            Gates::PerChannel(a4((B, T, H, K - 1), 0.0)),
        )),
        "g",
        &[B, T, H, K - 1],
    );
    // g scalar
    let e = err(Problem::builder(
        qk(),
        qk(),
        vv(),
        Gates::Scalar(Array3::zeros((B, T - 1, H))),
    ));
    assert!(e.to_string().contains("scalar"), "{e}");
    assert_shape(e, "g", &[B, T - 1, H]);
    // h0: wrong K, V, H, N
    assert_shape(
        err(base().h0(a4((B, H, K, V + 1), 0.0))),
        "h0",
        &[B, H, K, V + 1],
    );
    assert_shape(err(base().h0(a4((2, H, K, V), 0.0))), "h0", &[2, H, K, V]);
    // h0 N must equal the number of sequences under cu_seqlens
    assert_shape(
        err(base().cu_seqlens(&[0, 2, 5]).h0(state(1))),
        "h0",
        &[1, H, K, V],
    );
    // do
    assert_shape(
        err(base().do_(a4((B, T, H, V - 1), 0.0))),
        "do",
        &[B, T, H, V - 1],
    );
    // dht
    assert_shape(
        err(base().dht(a4((B, H + 1, K, V), 0.0))),
        "dht",
        &[B, H + 1, K, V],
    );
    assert_shape(
        err(base().cu_seqlens(&[0, 5]).dht(state(2))),
        "dht",
        &[2, H, K, V],
    );
}

#[test]
fn positive_and_plus_inf_gates() {
    let mut g = gpc();
    g[[0, 3, 1, 2]] = 0.25;
    let e = err(Problem::builder(qk(), qk(), vv(), Gates::PerChannel(g)));
    assert_eq!(
        e,
        GlaError::PositiveGate {
            index: vec![0, 3, 1, 2],
            value: 0.25
        }
    );
    let msg = e.to_string();
    assert!(
        msg.contains("[0, 3, 1, 2]") && msg.contains("2.5e-1") && msg.contains("> 0"),
        "{msg}"
    );
    // The smallest positive value is rejected too.
    let mut g = Array3::from_elem((B, T, H), -1.0);
    g[[0, 4, 0]] = f64::from_bits(1);
    let e = err(Problem::builder(qk(), qk(), vv(), Gates::Scalar(g)));
    assert!(
        matches!(e, GlaError::PositiveGate { ref index, .. } if index == &vec![0, 4, 0]),
        "{e:?}"
    );
    // +inf
    let mut g = gpc();
    g[[0, 1, 0, 0]] = f64::INFINITY;
    let e = err(Problem::builder(qk(), qk(), vv(), Gates::PerChannel(g)));
    assert!(
        matches!(e, GlaError::NonFinite { ref tensor, ref index, value } if tensor == "g" && index == &vec![0, 1, 0, 0] && value == f64::INFINITY),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("inf") && e.to_string().contains("`g`"),
        "{e}"
    );
    // g = 0 and g = -0 are valid.
    let mut g = gpc();
    g[[0, 0, 0, 0]] = -0.0;
    g[[0, 0, 0, 1]] = 0.0;
    assert!(Problem::builder(qk(), qk(), vv(), Gates::PerChannel(g))
        .build()
        .is_ok());
}

#[test]
fn nan_in_each_tensor() {
    let idx = [0usize, 2, 1, 1];
    let with_nan = |mut a: Array4<f64>| {
        a[idx] = f64::NAN;
        a
    };
    let check = |e: GlaError, tensor: &str, index: Vec<usize>| {
        assert_eq!(
            e,
            GlaError::NaN {
                tensor: tensor.into(),
                index: index.clone()
            }
        );
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("`{tensor}`"))
                && msg.contains("NaN")
                && msg.contains(&format!("{index:?}")),
            "{msg}"
        );
    };
    check(
        err(Problem::builder(
            with_nan(qk()),
            qk(),
            vv(),
            Gates::PerChannel(gpc()),
        )),
        "q",
        idx.to_vec(),
    );
    check(
        err(Problem::builder(
            qk(),
            with_nan(qk()),
            vv(),
            Gates::PerChannel(gpc()),
        )),
        "k",
        idx.to_vec(),
    );
    check(
        err(Problem::builder(
            qk(),
            qk(),
            with_nan(vv()),
            Gates::PerChannel(gpc()),
        )),
        "v",
        idx.to_vec(),
    );
    check(
        err(Problem::builder(
            qk(),
            qk(),
            vv(),
            Gates::PerChannel(with_nan(gpc())),
        )),
        "g",
        idx.to_vec(),
    );
    let mut gs = Array3::from_elem((B, T, H), -0.5);
    gs[[0, 3, 1]] = f64::NAN;
    check(
        err(Problem::builder(qk(), qk(), vv(), Gates::Scalar(gs))),
        "g",
        vec![0, 3, 1],
    );
    let sidx = [0usize, 1, 2, 3];
    let mut h0 = state(B);
    h0[sidx] = f64::NAN;
    check(err(base().h0(h0)), "h0", sidx.to_vec());
    check(err(base().do_(with_nan(vv()))), "do", idx.to_vec());
    let mut dht = state(B);
    dht[sidx] = f64::NAN;
    check(err(base().dht(dht)), "dht", sidx.to_vec());
}

#[test]
fn infinities_outside_gates() {
    for value in [f64::INFINITY, f64::NEG_INFINITY] {
        let idx = [0usize, 4, 0, 2];
        let with = |mut a: Array4<f64>| {
            a[idx] = value;
            a
        };
        let check = |e: GlaError, tensor: &str, index: Vec<usize>| {
            assert_eq!(
                e,
                GlaError::NonFinite {
                    tensor: tensor.into(),
                    index: index.clone(),
                    value
                }
            );
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("`{tensor}`"))
                    && msg.contains(&format!("{value}"))
                    && msg.contains(&format!("{index:?}")),
                "{msg}"
            );
        };
        check(
            err(Problem::builder(
                with(qk()),
                qk(),
                vv(),
                Gates::PerChannel(gpc()),
            )),
            "q",
            idx.to_vec(),
        );
        check(
            err(Problem::builder(
                qk(),
                with(qk()),
                vv(),
                Gates::PerChannel(gpc()),
            )),
            "k",
            idx.to_vec(),
        );
        check(
            err(Problem::builder(
                qk(),
                qk(),
                with(vv()),
                Gates::PerChannel(gpc()),
            )),
            "v",
            idx.to_vec(),
        );
        check(err(base().do_(with(vv()))), "do", idx.to_vec());
        let sidx = [0usize, 1, 0, 3];
        let mut h0 = state(B);
        h0[sidx] = value;
        check(err(base().h0(h0)), "h0", sidx.to_vec());
        let mut dht = state(B);
        dht[sidx] = value;
        check(err(base().dht(dht)), "dht", sidx.to_vec());
    }
}

#[test]
fn zero_sized_dims() {
    let e = err(Problem::builder(
        a4((B, T, H, 0), 0.0),
        a4((B, T, H, 0), 0.0),
        vv(),
        Gates::PerChannel(a4((B, T, H, 0), 0.0)),
    ));
    assert_eq!(
        e,
        GlaError::ZeroDim {
            tensor: "q".into(),
            what: "K".into()
        }
    );
    assert!(e.to_string().contains("K"), "{e}");
    let e = err(Problem::builder(
        qk(),
        qk(),
        a4((B, T, H, 0), 0.0),
        Gates::PerChannel(gpc()),
    ));
    assert_eq!(
        e,
        GlaError::ZeroDim {
            tensor: "v".into(),
            what: "V".into()
        }
    );
    assert!(e.to_string().contains("`v`"), "{e}");
    let e = err(Problem::builder(
        a4((B, T, 0, K), 0.0),
        a4((B, T, 0, K), 0.0),
        a4((B, T, 0, V), 0.0),
        Gates::PerChannel(a4((B, T, 0, K), 0.0)),
    ));
    assert_eq!(
        e,
        GlaError::ZeroDim {
            tensor: "q".into(),
            what: "H".into()
        }
    );
}

fn cu_err(b: ProblemBuilder, needle: &str) {
    let e = err(b);
    assert!(matches!(e, GlaError::CuSeqlens(_)), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains(needle), "`{needle}` not in: {msg}");
}

#[test]
fn bad_cu_seqlens() {
    // B != 1
    let b2 = Problem::builder(
        a4((2, T, H, K), 0.0),
        a4((2, T, H, K), 0.0),
        a4((2, T, H, V), 0.0),
        Gates::PerChannel(a4((2, T, H, K), 0.0)),
    );
    cu_err(b2.cu_seqlens(&[0, 5]), "B = 2");
    cu_err(base().cu_seqlens(&[]), "empty");
    cu_err(base().cu_seqlens(&[0]), "1 entry");
    cu_err(base().cu_seqlens(&[1, 5]), "cu_seqlens[0] = 1");
    cu_err(base().cu_seqlens(&[0, 3, 2, 5]), "decreases at index 2");
    cu_err(base().cu_seqlens(&[0, 3, 4]), "cu_seqlens[2] = 4");
    cu_err(base().cu_seqlens(&[0, 3, 6]), "T = 5");
    // negative entries are caught by the first/ordering checks
    cu_err(base().cu_seqlens(&[-1, 5]), "cu_seqlens[0] = -1");
}

#[test]
fn non_finite_scale() {
    for s in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let e = err(base().scale(s));
        assert!(
            matches!(e, GlaError::Scale(x) if x.is_nan() == s.is_nan()),
            "{e:?}"
        );
        assert!(e.to_string().contains("scale"), "{e}");
    }
    // A negative or zero scale is legal.
    assert!(base().scale(-2.0).build().is_ok());
    assert!(base().scale(0.0).build().is_ok());
}

#[test]
fn rounded_to_rejects_overflow() {
    let p = Problem::builder(a4((B, T, H, K), 1e6), qk(), vv(), Gates::PerChannel(gpc()))
        .build()
        .unwrap();
    let e = p.rounded_to(Dtype::F16).unwrap_err();
    assert!(
        matches!(e, GlaError::NonFinite { ref tensor, .. } if tensor == "q"),
        "{e:?}"
    );
    assert!(p.rounded_to(Dtype::Bf16).is_ok());
}

#[test]
fn dtype_parse() {
    for (s, d) in [
        ("f64", Dtype::F64),
        ("F32", Dtype::F32),
        ("tf32", Dtype::Tf32),
        ("bfloat16", Dtype::Bf16),
        ("half", Dtype::F16),
    ] {
        assert_eq!(s.parse::<Dtype>().unwrap(), d);
    }
    for bad in ["", "int8", "f8", "bf32", "float128"] {
        let e = bad.parse::<Dtype>().unwrap_err();
        assert!(matches!(e, GlaError::Options(_)), "{e:?}");
        assert!(e.to_string().contains(&format!("`{bad}`")), "{e}");
    }
}

// ------------------------------------------------------------------------------------------------
// Dtype rounding emulation
// ------------------------------------------------------------------------------------------------

#[test]
fn tf32_keeps_ten_bits() {
    let x = 1.0f32 + 2f32.powi(-10) + 2f32.powi(-12);
    assert_eq!(Dtype::Tf32.round_f32(x), 1.0 + 2f32.powi(-10));
    assert_eq!(Dtype::Tf32.round_f32(1.0 + 2f32.powi(-11)), 1.0); // tie to even
}

#[test]
fn f64_rounding_is_single() {
    // Cases where truncating to f32 first (or dropping low bits) gives the wrong answer.
    assert_eq!(Dtype::Bf16.round(-397.000_161_17), -398.0);
    assert_eq!(
        Dtype::F16.round(1.0 + 2f64.powi(-11) + 2f64.powi(-40)),
        1.0 + 2f64.powi(-10)
    );
    assert_eq!(
        Dtype::Tf32.round(1.0 + 2f64.powi(-11) + 2f64.powi(-40)),
        1.0 + 2f64.powi(-10)
    );
    // Agrees with `half` on f32-exact inputs, including subnormals, ties and overflow.
    let mut x = 1.0e-41f32;
    while x < 7.0e4 {
        for v in [x, -x, x * 1.000_001, x * 0.999_999] {
            assert_eq!(
                Dtype::Bf16.round(v as f64),
                half::bf16::from_f32(v).to_f64(),
                "{v}"
            );
            assert_eq!(
                Dtype::F16.round(v as f64),
                half::f16::from_f32(v).to_f64(),
                "{v}"
            );
        }
        x *= 1.37;
    }
    assert_eq!(Dtype::F16.round(65519.0), 65504.0);
    assert_eq!(Dtype::F16.round(65520.0), f64::INFINITY);
    assert_eq!(Dtype::Bf16.round(f64::MAX), f64::INFINITY);
    assert!(Dtype::Bf16.round(f64::NAN).is_nan());
}

#[test]
fn bit_rounding_is_the_scaled_rounding() {
    // The fast path of `round_binary` against the scaling it replaces, bit for bit: random
    // bit patterns across the targets' ranges (ties, near-ties and carries included), both
    // signs, and every binade edge.
    let formats = [
        (8, -126, 127),
        (11, -14, 15),
        (11, -126, 127),
        (24, -126, 127),
    ];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for &(p, emin, emax) in &formats {
        let check = |x: f64| {
            let (a, b) = (
                test_support::round_binary(x, p, emin, emax),
                test_support::round_binary_scaled(x, p, emin, emax),
            );
            assert_eq!(a.to_bits(), b.to_bits(), "{x:e} p={p}: {a:e} vs {b:e}");
        };
        for e in (emin - 3)..=(emax + 2) {
            let base = ((e + 1023) as u64) << 52;
            let drop = 53 - p as u64;
            for _ in 0..2000 {
                let r = next();
                let mant = r & ((1 << 52) - 1);
                // Random, a tie, just below and above a tie, all-ones (carry).
                let tie = (mant & !((1 << drop) - 1)) | (1 << (drop - 1));
                for m in [mant, tie, tie - 1, tie + 1, (1 << 52) - 1, 0] {
                    let x = f64::from_bits(base | m);
                    check(x);
                    check(-x);
                }
            }
        }
        for x in [
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            check(x);
        }
        assert!(test_support::round_binary(f64::NAN, p, emin, emax).is_nan());
    }
}

#[test]
fn parse_rejects_unknown() {
    assert!("int8".parse::<Dtype>().is_err());
    assert_eq!("bfloat16".parse::<Dtype>().unwrap(), Dtype::Bf16);
}
