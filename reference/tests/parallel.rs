//! The log-space parallel form (forward and hand-derived backward) against the truth, judged with
//! the error model of docs/math.md §8.1 (`bounds::compare` with the calibrated `PARALLEL`
//! constants; lambda = the largest per-sequence sum of |g|, since G is a global cumsum).
//!
//! Truth: the f64 recurrence on the same f32-representable inputs (its error is ~2^-29 of the f32
//! bound). The MPFR cross-check lives in the property-test crate (gla-proptests), since
//! gla-oracle depends on this crate.
//!
//! Larger sizes (g = 0 at T = 8192): `GLA_DEEP=1 cargo test -p gla-reference --release --test parallel`.
//! Calibration: `cargo test -p gla-reference --release --test parallel -- --ignored --nocapture calibrate`.

use gla_reference::bounds::{compare, magnitudes, Algorithm, BoundSpec, Report, PARALLEL};
use gla_reference::{parallel, recurrent, Dtype, GlaError, Problem, Solution};

use rand::Rng;

mod common;
use common::*;

fn truth(p: &Problem) -> Solution {
    recurrent::backward::<f64>(p).unwrap()
}

fn spec() -> BoundSpec {
    BoundSpec::new(Algorithm::Parallel, Dtype::F32).with_constants(PARALLEL)
}

/// Run f32 parallel forward and backward, judge both, return the backward report.
fn check(p: &Problem, what: &str) -> Report {
    let exact = truth(p);
    let mags = magnitudes(p);
    let fwd = parallel::forward::<f32>(p).unwrap();
    let rf = compare(p, &exact, &mags, &fwd, &spec()).unwrap();
    assert!(rf.pass(), "{what}: parallel f32 forward failed\n{rf}");
    let bwd = parallel::backward::<f32>(p).unwrap();
    assert_eq!(bwd.o, fwd.o, "{what}: backward's o differs from forward's");
    assert_eq!(
        bwd.ht, fwd.ht,
        "{what}: backward's ht differs from forward's"
    );
    let rb = compare(p, &exact, &mags, &bwd, &spec()).unwrap();
    assert!(rb.pass(), "{what}: parallel f32 backward failed\n{rb}");
    rb
}

fn all_finite(s: &Solution) -> bool {
    let g = s.grads.as_ref().unwrap();
    [&s.o, &s.ht, &g.dq, &g.dk, &g.dv, &g.dg, &g.dh0]
        .iter()
        .all(|a| a.iter().all(|x| x.is_finite()))
}

#[test]
fn backward_needs_do() {
    let p = make(1, &shape(5, 3, 2), &logsig(16.0));
    let no_do = p.with_seeds(None, None).unwrap();
    assert!(matches!(
        parallel::backward::<f32>(&no_do),
        Err(GlaError::Options(_))
    ));
    assert!(parallel::forward::<f32>(&no_do).is_ok());
}

#[test]
fn gate_regimes() {
    for (i, tau) in [64.0, 16.0, 1.0, 0.1].into_iter().enumerate() {
        for scalar in [false, true] {
            let s = Shape {
                scalar,
                ..shape(150, 12, 10)
            };
            let p = make(10 + i as u64, &s, &logsig(tau));
            check(&p, &format!("tau={tau} scalar={scalar}"));
        }
    }
    // Strong: uniform in [-30, 0] (the naive factorization overflows after ~3 steps).
    let p = make(20, &shape(120, 9, 7), &|r, _, _| -30.0 * r.gen::<f64>());
    check(&p, "U(-30,0)");
}

#[test]
fn zero_gates_long_sequence() {
    // g = 0 (plain linear attention) at T = 4096; K, V and H small so O(T^2 K) stays fast.
    let t = if deep() { 8192 } else { 4096 };
    let s = Shape {
        h: 1,
        h0: true,
        ..shape(t, 2, 2)
    };
    let p = make(30, &s, &|_, _, _| 0.0);
    check(&p, "g = 0");
}

#[test]
fn sequence_lengths() {
    for t in [1, 15, 16, 17, 63, 64, 65, 1000] {
        let s = Shape {
            h: 1,
            ..shape(t, 5, 3)
        };
        let p = make(40 + t as u64, &s, &logsig(4.0));
        check(&p, &format!("T={t}"));
    }
}

#[test]
fn k_v_not_powers_of_two_and_absent_states() {
    for (k, v, h0, dht) in [
        (3, 5, false, false),
        (17, 1, true, false),
        (1, 13, false, true),
    ] {
        let s = Shape {
            h0,
            dht,
            ..shape(77, k, v)
        };
        let p = make(50 + k as u64, &s, &logsig(4.0));
        check(&p, &format!("K={k} V={v} h0={h0} dht={dht}"));
    }
}

#[test]
fn varlen_with_empty_and_length_one_sequences() {
    let cu = vec![0i64, 0, 1, 70, 70, 135, 136];
    for scalar in [false, true] {
        let s = Shape {
            scalar,
            cu: Some(cu.clone()),
            ..shape(136, 6, 4)
        };
        let p = make(60, &s, &logsig(1.0));
        check(&p, &format!("varlen scalar={scalar}"));
        let sol = parallel::backward::<f32>(&p).unwrap();
        let g = sol.grads.as_ref().unwrap();
        for n in [0usize, 3] {
            assert_eq!(
                sol.ht.slice(ndarray::s![n, .., .., ..]),
                p.h0().unwrap().slice(ndarray::s![n, .., .., ..])
            );
            assert_eq!(
                g.dh0.slice(ndarray::s![n, .., .., ..]),
                p.dht().unwrap().slice(ndarray::s![n, .., .., ..])
            );
        }
    }
}

#[test]
fn minus_inf_gates() {
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("first row", vec![0]),
        ("chunk-like starts", vec![32, 64]),
        ("chunk-like ends", vec![31, 63, 99]),
        ("mid", vec![13, 50]),
        ("several", vec![33, 35, 36, 41, 48, 62]),
        ("consecutive", vec![10, 11, 12, 13]),
    ];
    let chans: [ChanSel; 3] = [
        ("all channels", |_| true),
        ("even channels", |d| d % 2 == 0),
        ("channel 1", |d| d == 1),
    ];
    for (name, rows) in &cases {
        for (cname, chan) in chans {
            for scalar in [false, true] {
                if scalar && cname != "all channels" {
                    continue;
                }
                let s = Shape {
                    scalar,
                    ..shape(100, 6, 5)
                };
                let p = make(70, &s, &with_resets(rows.clone(), chan, 1.0));
                let what = format!("-inf at {name}, {cname}, scalar={scalar}");
                check(&p, &what);
                assert!(
                    all_finite(&parallel::backward::<f64>(&p).unwrap()),
                    "{what}: f64 non-finite"
                );
            }
        }
    }
}

#[test]
fn tiny_alpha_and_isolated_huge_gates() {
    let g12 = (1e-12f64).ln();
    for scalar in [false, true] {
        let s = Shape {
            scalar,
            ..shape(130, 8, 6)
        };
        let p = make(80, &s, &move |_, _, _| g12);
        check(&p, &format!("alpha=1e-12 scalar={scalar}"));
    }
    let rows = [0usize, 15, 16, 17, 63, 64, 100];
    let p = make(81, &shape(130, 8, 6), &move |r, t, _| {
        if rows.contains(&t) {
            -300.0
        } else {
            logsigmoid(randn(r)) / 8.0
        }
    });
    check(&p, "isolated -300");
}

#[test]
fn f64_compute_agrees_with_recurrence() {
    let p = make(120, &shape(150, 12, 10), &logsig(0.5));
    let a = parallel::backward::<f64>(&p).unwrap();
    let b = recurrent::backward::<f64>(&p).unwrap();
    let spec = BoundSpec::new(Algorithm::Parallel, Dtype::F64).with_constants(
        gla_reference::bounds::Constants::uniform(PARALLEL.o.max(PARALLEL.dg) + 4.0),
    );
    let rep = compare(&p, &b, &magnitudes(&p), &a, &spec).unwrap();
    assert!(rep.pass(), "{rep}");
}

#[test]
#[ignore = "calibration sweep that produced the constants in bounds/constants.rs; run on demand"]
fn calibrate() {
    let mut worst: std::collections::BTreeMap<String, f64> = Default::default();
    // The tiny sizes check the fixed per-element roundings (exp, products, the h0/dhT terms),
    // which the n_acc = K + T_seq term does not dominate there.
    let sizes = [
        (256usize, 16usize, 16usize),
        (700, 33, 21),
        (1024, 32, 32),
        (1, 2, 24),
        (2, 1, 5),
        (3, 4, 3),
    ];
    let regimes = calibration_regimes();
    for (rname, gate) in &regimes {
        for (si, &(t, k, v)) in sizes.iter().enumerate() {
            // many seeds for the tiny sizes (they are cheap and their worst case is a tail)
            let seeds = if t < 8 { 300u64 } else { 1 };
            for (scalar, seed) in [false, true]
                .into_iter()
                .flat_map(|sc| (0..seeds).map(move |j| (sc, j)))
            {
                let s = Shape {
                    scalar,
                    ..shape(t, k, v)
                };
                let p = make(
                    500 + si as u64 * 7 + scalar as u64 + 1000 * seed,
                    &s,
                    gate.as_ref(),
                );
                let exact = truth(&p);
                let c = parallel::backward::<f32>(&p).unwrap();
                let rep = compare(&p, &exact, &magnitudes(&p), &c, &spec()).unwrap();
                for t in &rep.tensors {
                    let need = t.ratio * (t.u_stages + t.u_acc) / (t.u_acc * (t.n_acc + t.lambda));
                    let w = worst.entry(t.name.clone()).or_default();
                    if need > *w {
                        *w = need;
                        eprintln!("{rname:<12} T={t} K={k} V={v} scalar={scalar} {}: c={need:.4} (lambda={:.1})", t.name, t.lambda, t = t.n_acc as usize - k);
                    }
                }
            }
        }
    }
    eprintln!("parallel f32 worst c: {worst:?}");
    adversarial();
}

/// The chunked family's adversarial sweep (tests/chunked.rs `adversarial_dg_local`) for the
/// parallel form: `CAL_SEEDS` (default 200) small random problems per (gate regime, value
/// regime), f32 compute against the f64 recurrence; prints the largest c_needed per output.
fn adversarial() {
    let mut worst: std::collections::BTreeMap<String, (f64, String)> = Default::default();
    adversarial_cases(|case| {
        let p = &case.p;
        let c = parallel::backward::<f32>(p).unwrap();
        let rep = compare(p, &truth(p), &magnitudes(p), &c, &spec()).unwrap();
        assert!(
            rep.tensors.iter().all(|t| t.candidate_nonfinite == 0),
            "{} seed {}: non-finite\n{rep}",
            case.key(),
            case.seed
        );
        for (n, need) in c_needed(&rep) {
            let e = worst.entry(n).or_default();
            if need > e.0 {
                *e = (
                    need,
                    format!(
                        "{} seed {} T,K,V={:?} scalar={}",
                        case.key(),
                        case.seed,
                        case.dims,
                        case.scalar
                    ),
                );
            }
        }
    });
    let seeds = cal_seeds();
    eprintln!("parallel adversarial sweep ({seeds} seeds per regime pair), f32 c_needed:");
    for (n, (c, at)) in &worst {
        eprintln!("  {n:<4} {c:.3}  ({at})");
    }
}
