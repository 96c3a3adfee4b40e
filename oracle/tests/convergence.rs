//! Convergence of `evaluate` on the hard regimes (docs/math.md §7), exactness of the state reset,
//! agreement of the local and reverse-cumsum dg, column-block parallelism, and typed errors.

mod common;

use common::*;
use gla_oracle::{evaluate, recurrent, round::round_float, OracleOptions, OracleResult};
use gla_reference::bounds::magnitudes;
use gla_reference::{Dtype, GlaError, Problem};
use ndarray::Array4;
use rug::Float;

fn bwd_opts() -> OracleOptions {
    OracleOptions {
        backward: true,
        ..OracleOptions::default()
    }
}

fn spec(t: usize, scalar: bool, seed: u64) -> Spec {
    Spec {
        b: 1,
        t,
        h: 2,
        k: 6,
        v: 5,
        cu: None,
        scalar,
        h0: true,
        dht: true,
        seed,
    }
}

/// `evaluate` converges to >= 80 bits; its f64 values are within one ulp of a 1000-bit run's
/// correctly rounded values (they agree past 80 bits, so they can differ only next to a rounding
/// boundary), and the local dg agrees with the reverse-cumsum dg within the working precision's
/// cancellation bound.
fn converges(p: &Problem) -> OracleResult {
    let r = evaluate(p, &bwd_opts()).expect("oracle converges");
    eprintln!(
        "precision {} bits_agreed {} limiting {:?}",
        r.precision, r.bits_agreed, r.limiting
    );
    assert!(
        r.bits_agreed >= 80,
        "bits_agreed = {} ({:?})",
        r.bits_agreed,
        r.limiting
    );
    assert!(r.precision <= 319, "needed {} bits", r.precision);
    let hi_exact = recurrent::backward(p, 1000).unwrap();
    bits_agreed_is_honest(p, &r, &hi_exact);
    let hi = hi_exact.to_solution();
    for name in gla_reference::OUTPUT_NAMES {
        let (a, b) = (r.solution.tensor(name).unwrap(), hi.tensor(name).unwrap());
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(
                (x - y).abs() <= 2f64.powi(-52) * y.abs(),
                "{name}: {x:e} vs 1000-bit {y:e}"
            );
        }
    }
    local_vs_reverse_cumsum(p, &r);
    r
}

/// The returned values are within 2^-bits_agreed * max(|x|, 2^-32 M_x, 2^-1074) of a 1000-bit
/// evaluation in every element (the definition of `bits_agreed`, checked against the truth).
fn bits_agreed_is_honest(p: &Problem, r: &OracleResult, hi: &gla_oracle::ExactSolution) {
    // The magnitudes `evaluate` uses for its floor.
    let m = magnitudes(p);
    let mag = |name| m.tensor(name).unwrap();
    let (a, b) = (r.exact.grads.as_ref().unwrap(), hi.grads.as_ref().unwrap());
    let pairs = [
        (&r.exact.o, &hi.o, mag("o")),
        (&r.exact.ht, &hi.ht, mag("ht")),
        (&a.dq, &b.dq, mag("dq")),
        (&a.dk, &b.dk, mag("dk")),
        (&a.dv, &b.dv, mag("dv")),
        (&a.dg, &b.dg, mag("dg_local")),
        (&a.dh0, &b.dh0, mag("dh0")),
        (&a.dg_reverse_cumsum, &b.dg_reverse_cumsum, mag("dg")),
    ];
    for (x, y, mm) in pairs {
        for ((x, y), &mag) in x.iter().zip(y.iter()).zip(mm.iter()) {
            let err = Float::with_val(64, x - y).abs();
            let scale = y
                .to_f64()
                .abs()
                .max(mag * 2f64.powi(-32))
                .max(2f64.powi(-1074));
            let bound = scale * 2f64.powi(-(r.bits_agreed as i32));
            assert!(
                err.to_f64() <= bound,
                "error {} exceeds 2^-{} * {scale:e}",
                err.to_f64(),
                r.bits_agreed
            );
        }
    }
}

/// |dg_local - dg_rc| <= 4 (T + K + V) 2^-p M_dg: both forms are within (T + K + V) 2^-p of
/// the exact value relative to their magnitudes, and M_dg_local <= M_dg (reverse cumsum), which
/// is where the cancellation of the reverse cumsum shows (M_dg / |dg| up to 1e14 for
/// alpha = 1e-12).
fn local_vs_reverse_cumsum(p: &Problem, r: &OracleResult) {
    let d = p.dims();
    let m = magnitudes(p);
    let (m_local, m_rc) = (m.dg_local.unwrap(), m.dg.unwrap());
    let g = r.exact.grads.as_ref().unwrap();
    let n = (p.max_seq_len() + d.k + d.v) as f64;
    let u = 2f64.powi(-(r.precision as i32));
    let mut nonzero = 0;
    for ((a, b), (&ml, &mr)) in
        g.dg.iter()
            .zip(g.dg_reverse_cumsum.iter())
            .zip(m_local.iter().zip(m_rc.iter()))
    {
        let diff = Float::with_val(r.precision, a - b).abs().to_f64();
        assert!(
            diff <= 4.0 * n * u * mr,
            "local {} vs reverse-cumsum {}: diff {diff:e}, M {mr:e}",
            a.to_f64(),
            b.to_f64()
        );
        assert!(ml <= mr * (1.0 + 1e-12), "M_dg_local {ml:e} > M_dg {mr:e}");
        if !a.is_zero() {
            nonzero += 1;
        }
    }
    assert!(nonzero > 0);
    let rc = r.dg_reverse_cumsum.as_ref().unwrap();
    assert_eq!(rc.shape(), r.solution.grads.as_ref().unwrap().dg.shape());
}

#[test]
fn converges_with_reset_mid_sequence() {
    let p = problem(&spec(40, false, 1), |i, g| match i {
        [_, 17, 0, _] => f64::NEG_INFINITY, // whole state of head 0 resets
        [_, 25, 1, 2] | [_, 26, 1, 2] => f64::NEG_INFINITY,
        _ => g,
    });
    let r = converges(&p);
    let dg = &r.solution.grads.as_ref().unwrap().dg;
    assert!((0..6).all(|c| dg[[0, 17, 0, c]] == 0.0));
    assert_eq!(dg[[0, 25, 1, 2]], 0.0);
}

#[test]
fn converges_with_tiny_decay_1e_12() {
    let lg = 1e-12f64.ln();
    let p = problem(&spec(40, false, 2), |_, _| lg);
    converges(&p);
}

#[test]
fn converges_with_g_zero() {
    // alpha = 1 exactly: plain linear attention, long memory, largest cancellation in dg.
    let p = problem(&spec(48, false, 3), |_, _| 0.0);
    converges(&p);
}

#[test]
fn converges_with_strong_gates() {
    let p = problem(&spec(40, false, 4), |_, _| -30.0);
    converges(&p);
}

#[test]
fn converges_on_varlen_with_an_empty_sequence() {
    let s = Spec {
        b: 1,
        t: 40,
        h: 2,
        k: 6,
        v: 5,
        cu: Some(vec![0, 9, 9, 30, 31, 40]),
        scalar: false,
        h0: true,
        dht: true,
        seed: 5,
    };
    let p = problem(&s, |_, g| g);
    let r = converges(&p);
    // Empty sequence 1: hT = h0 and dh0 = dhT exactly.
    let grads = r.solution.grads.as_ref().unwrap();
    for h in 0..2 {
        for c in 0..6 {
            for e in 0..5 {
                assert_eq!(r.solution.ht[[1, h, c, e]], p.h0().unwrap()[[1, h, c, e]]);
                assert_eq!(grads.dh0[[1, h, c, e]], p.dht().unwrap()[[1, h, c, e]]);
            }
        }
    }
}

#[test]
fn converges_with_scalar_gates() {
    let p = problem(&spec(40, true, 6), |i, g| {
        if i[1] == 20 {
            f64::NEG_INFINITY
        } else {
            g
        }
    });
    let r = converges(&p);
    let dg = &r.solution.grads.as_ref().unwrap().dg;
    assert_eq!(dg.shape(), &[1, 40, 2, 1]);
    assert_eq!(dg[[0, 20, 0, 0]], 0.0);
}

#[test]
fn forward_only_evaluation() {
    let p = problem(&spec(20, false, 7), |_, g| g)
        .with_seeds(None, None)
        .unwrap();
    let r = evaluate(&p, &OracleOptions::default()).unwrap();
    assert!(r.bits_agreed >= 80);
    assert!(r.solution.grads.is_none() && r.dg_reverse_cumsum.is_none());
    assert_eq!(r.precision, 191);
}

/// A -inf gate in every channel resets the state exactly: everything from the reset step on is
/// independent of the inputs before it (bit-identical MPFR values), and dg at the reset is 0.
fn reset_is_exact(scalar: bool) {
    let t0 = 9;
    let s = Spec {
        b: 1,
        t: 16,
        h: 1,
        k: 4,
        v: 3,
        cu: None,
        scalar,
        h0: true,
        dht: true,
        seed: 21,
    };
    let reset = |i: [usize; 4], g: f64| if i[1] == t0 { f64::NEG_INFINITY } else { g };
    let p1 = problem(&s, reset);
    // Same inputs from t0 on, different before (and a different h0).
    let p2 = {
        let s2 = Spec { seed: 22, ..s };
        let other = problem(&s2, reset);
        let mix = |a: &Array4<f64>, b: &Array4<f64>| {
            Array4::from_shape_fn(a.raw_dim(), |(bb, t, h, c)| {
                if t < t0 {
                    b[[bb, t, h, c]]
                } else {
                    a[[bb, t, h, c]]
                }
            })
        };
        let g = mix(p1.g(), other.g());
        let gates = if scalar {
            gla_reference::Gates::Scalar(g.index_axis(ndarray::Axis(3), 0).to_owned())
        } else {
            gla_reference::Gates::PerChannel(g)
        };
        Problem::builder(
            mix(p1.q(), other.q()),
            mix(p1.k(), other.k()),
            mix(p1.v(), other.v()),
            gates,
        )
        .h0(other.h0().unwrap().clone())
        .do_(p1.do_().unwrap().clone())
        .dht(p1.dht().unwrap().clone())
        .build()
        .unwrap()
    };
    let a = recurrent::backward(&p1, 127).unwrap();
    let b = recurrent::backward(&p2, 127).unwrap();
    let (ga, gb) = (a.grads.as_ref().unwrap(), b.grads.as_ref().unwrap());
    let mut differs_before = false;
    for t in 0..16 {
        let rows = [
            (&a.o, &b.o),
            (&ga.dq, &gb.dq),
            (&ga.dv, &gb.dv),
            (&ga.dk, &gb.dk),
            (&ga.dg, &gb.dg),
        ];
        for (x, y) in rows {
            let same = x.index_axis(ndarray::Axis(1), t) == y.index_axis(ndarray::Axis(1), t);
            if t >= t0 {
                assert!(
                    same,
                    "row t = {t} depends on inputs before the reset at {t0}"
                );
            } else if !same {
                differs_before = true;
            }
        }
    }
    assert!(
        differs_before,
        "vacuous: the two problems agree before the reset"
    );
    assert_eq!(a.ht, b.ht);
    assert!(ga
        .dg
        .index_axis(ndarray::Axis(1), t0)
        .iter()
        .all(|x| x.is_zero()));
    assert!(ga
        .dg_reverse_cumsum
        .index_axis(ndarray::Axis(1), t0 + 1)
        .iter()
        .any(|x| !x.is_zero()));
}

#[test]
fn reset_is_exact_per_channel() {
    reset_is_exact(false);
}

#[test]
fn reset_is_exact_scalar() {
    reset_is_exact(true);
}

#[test]
fn column_blocks_do_not_change_results() {
    // One sequence, one head: 1 thread gives one column block, 3 threads give 5 blocks of
    // width 1 (V = 5) whose dq, dk, dg partial sums are reduced afterwards.
    let s = Spec {
        b: 1,
        t: 30,
        h: 1,
        k: 4,
        v: 5,
        cu: None,
        scalar: false,
        h0: true,
        dht: true,
        seed: 31,
    };
    let p = problem(&s, |i, g| {
        if i == [0, 12, 0, 3] {
            f64::NEG_INFINITY
        } else {
            g
        }
    });
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| recurrent::backward(&p, 400).unwrap())
    };
    let (one, three) = (run(1), run(3));
    let (g1, g3) = (one.grads.as_ref().unwrap(), three.grads.as_ref().unwrap());
    let pairs = [
        (&one.o, &three.o),
        (&one.ht, &three.ht),
        (&g1.dq, &g3.dq),
        (&g1.dk, &g3.dk),
        (&g1.dv, &g3.dv),
        (&g1.dg, &g3.dg),
        (&g1.dh0, &g3.dh0),
    ];
    for (x, y) in pairs {
        for (a, b) in x.iter().zip(y.iter()) {
            let d = Float::with_val(400, a - b).abs().to_f64();
            assert!(d <= 1e-100 * (1.0 + b.to_f64().abs()), "{d:e}");
        }
    }
}

#[test]
fn round_to_dtype_rounds_once_from_mpfr() {
    let p = problem(&spec(12, false, 41), |_, g| g);
    let r = evaluate(&p, &bwd_opts()).unwrap();
    assert_eq!(r.round_to(Dtype::F64), r.solution);
    let bf = r.round_to(Dtype::Bf16);
    let exact = &r.exact;
    for (x, e) in bf.o.iter().zip(exact.o.iter()) {
        assert_eq!(Dtype::Bf16.round(*x), *x, "not a bf16 value");
        assert_eq!(*x, round_float(e, Dtype::Bf16));
        // Within half an ulp of bf16 (2^-8 relative) of the exact value.
        assert!((x - e.to_f64()).abs() <= 2f64.powi(-8) * e.to_f64().abs());
    }
    assert!(bf.grads.is_some());
}

#[test]
fn typed_errors() {
    let p = problem(&spec(5, false, 51), |_, g| g);
    let opt = |f: fn(&mut OracleOptions)| {
        let mut o = bwd_opts();
        f(&mut o);
        evaluate(&p, &o)
    };
    for r in [
        opt(|o| o.start_precision = 52),
        opt(|o| o.max_precision = 1 << 20),
        opt(|o| o.start_precision = 4096), // not below max_precision
        opt(|o| o.max_precision = 127),
        opt(|o| o.min_agree_bits = 0),
        opt(|o| o.min_agree_bits = 5000),
        opt(|o| o.magnitude_floor_bits = 5000),
    ] {
        assert!(matches!(r, Err(GlaError::Options(_))), "{r:?}");
    }
    assert!(matches!(
        recurrent::forward(&p, 10),
        Err(GlaError::Options(_))
    ));
    assert!(matches!(
        recurrent::backward(&p, 1 << 17),
        Err(GlaError::Options(_))
    ));
    let no_do = p.with_seeds(None, None).unwrap();
    assert!(matches!(
        recurrent::backward(&no_do, 128),
        Err(GlaError::Options(_))
    ));
    assert!(matches!(
        evaluate(&no_do, &bwd_opts()),
        Err(GlaError::Options(_))
    ));
    // Not converging by max_precision is an error naming the limiting element.
    let e = opt(|o| {
        o.min_agree_bits = 200;
        o.max_precision = 256;
    })
    .unwrap_err();
    assert!(
        e.to_string().contains("did not converge") && e.to_string().contains("agreed to"),
        "{e}"
    );
}
