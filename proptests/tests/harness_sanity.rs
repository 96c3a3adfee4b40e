//! Sanity of the suite's own machinery: the strategies generate what their regimes promise, the
//! transformations round-trip, and the judges can fail (an injected NaN, an injected error above
//! the bound, a one-ulp change are all caught).

use gla_judge::check::{compare_pair, identical, judge};
use gla_judge::truth::oracle;
use gla_judge::{bound_spec, solve, Implementation};
use gla_proptests::strategies::{problem_spec, GateRegime, ProblemSpec, SizeProfile, ValueRegime};
use gla_proptests::transform;
use gla_reference::bounds::magnitudes;
use gla_reference::{Dtype, GateKind};
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;

fn spec(gates: GateRegime, values: ValueRegime, t: usize, seed: u64) -> ProblemSpec {
    ProblemSpec {
        b: 2,
        t,
        h: 2,
        k: 5,
        v: 3,
        gate_kind: GateKind::PerChannel,
        gates,
        values,
        h0: true,
        dht: true,
        seq_lens: None,
        scale: None,
        grid: Dtype::F32,
        seed,
    }
}

#[test]
fn generated_specs_build_and_respect_the_profile() {
    let mut runner = TestRunner::deterministic();
    let prof = SizeProfile::default();
    let strat = problem_spec(prof);
    let mut varlen = 0;
    let mut empty_seq = 0;
    for _ in 0..300 {
        let s = strat.new_tree(&mut runner).unwrap().current();
        let p = s.build().unwrap_or_else(|e| panic!("{s:?}: {e}"));
        let d = p.dims();
        assert!(d.k <= prof.max_width && d.v <= prof.max_width, "{s:?}");
        if let Some(l) = &s.seq_lens {
            varlen += 1;
            empty_seq += l.iter().filter(|&&x| x == 0).count();
            assert_eq!(d.n, l.len());
        }
        // Every input sits on docs/math.md's grid.
        assert_eq!(p.rounded_to(s.grid).unwrap(), p, "{s:?}");
    }
    assert!(varlen > 20, "varlen layouts are drawn ({varlen})");
    assert!(empty_seq > 5, "empty sequences are drawn ({empty_seq})");
}

#[test]
fn gate_regimes_generate_what_they_promise() {
    let g = |r: GateRegime| {
        spec(r, ValueRegime::SignedNormal, 64, 3)
            .build()
            .unwrap()
            .g()
            .clone()
    };
    assert!(g(GateRegime::Zero).iter().all(|&x| x == 0.0));
    assert!(g(GateRegime::IsolatedNegInf)
        .iter()
        .any(|&x| x == f64::NEG_INFINITY));
    assert!(g(GateRegime::IsolatedMinus300).iter().any(|&x| x == -300.0));
    let tiny = g(GateRegime::TinyDecay);
    assert!(tiny.iter().all(|&x| (-29.0..-26.0).contains(&x)));
    // Chunk-crossing regime: a 64-row chunk sums past 88.72, a 16-row sub-chunk does not.
    let c = g(GateRegime::CrossF32ExpLimitChunk);
    let col: Vec<f64> = (0..64).map(|t| c[[0, t, 0, 0]]).collect();
    assert!(col.iter().sum::<f64>() < -88.72);
    assert!(col.chunks(16).all(|w| w.iter().sum::<f64>() > -88.72));
    let s = g(GateRegime::CrossF32ExpLimitSubChunk);
    let col: Vec<f64> = (0..16).map(|t| s[[0, t, 0, 0]]).collect();
    assert!(col.iter().sum::<f64>() < -88.72);
    assert!(g(GateRegime::MixedExtremes).iter().all(|&x| x <= 0.0));
    // Cancellation pairs: k equal, v opposite (up to 2^-10 noise) on rows 2i, 2i+1.
    let p = spec(GateRegime::Mild, ValueRegime::Cancellation, 8, 5)
        .build()
        .unwrap();
    assert_eq!(p.k()[[0, 1, 0, 0]], p.k()[[0, 0, 0, 0]]);
    assert!((p.v()[[0, 1, 0, 0]] + p.v()[[0, 0, 0, 0]]).abs() < 0.01);
}

#[test]
fn transforms_round_trip() {
    let mut s = spec(GateRegime::Mild, ValueRegime::SignedNormal, 0, 9);
    s.b = 1;
    s.seq_lens = Some(vec![3, 0, 1, 17]);
    s.t = 21;
    let p = s.build().unwrap();
    let imp = Implementation::RECURRENT_F64;
    let whole = solve(&imp, &p, true).unwrap();
    let parts = transform::split_sequences(&p).unwrap();
    assert_eq!(parts.len(), 4);
    let back = transform::pack_solutions(&p, &transform::unpack_solution(&p, &whole));
    identical(&whole, &back).unwrap();
    let perm = [1, 0];
    let q = transform::permute_heads(&p, &perm).unwrap();
    assert_eq!(transform::permute_heads(&q, &perm).unwrap(), p);
}

#[test]
fn judges_can_fail() {
    let p = spec(GateRegime::Moderate, ValueRegime::SignedNormal, 20, 4)
        .build()
        .unwrap();
    let imp = Implementation::RECURRENT_F32;
    let exact = oracle(&p, true).unwrap();
    let m = magnitudes(&p);
    let f = solve(&imp, &p, false).unwrap();
    let b = solve(&imp, &p, true).unwrap();
    assert!(judge(&imp, &p, &m, &exact, &f, Some(&b)).unwrap().pass());
    // A NaN where the oracle is finite fails.
    let mut bad = b.clone();
    bad.grads.as_mut().unwrap().dk[[1, 7, 0, 2]] = f64::NAN;
    assert!(!judge(&imp, &p, &m, &exact, &f, Some(&bad)).unwrap().pass());
    // An error of 1e-4 relative to the magnitude fails an f32 bound (~100 u at this size).
    let mut bad = f.clone();
    let i = [0, 11, 1, 1];
    bad.o[i] += 1e-4 * m.o[i];
    let r = judge(&imp, &p, &m, &exact, &bad, None).unwrap();
    assert!(!r.tensor("o").unwrap().pass, "{r}");
    // One ulp is caught by bit-identity.
    let mut one = f.clone();
    one.o[i] = f64::from_bits(one.o[i].to_bits() + 1);
    assert!(identical(&f, &one).is_err());
    // Pairwise: two candidates within bound pass, a perturbed one fails.
    let c = Implementation::chunked(gla_judge::Compute::F32, 16, 4);
    let sc = solve(&c, &p, true).unwrap();
    let ok = compare_pair(
        &p,
        &p,
        &m,
        &b,
        &bound_spec(&imp, &p),
        &sc,
        &bound_spec(&c, &p),
    )
    .unwrap();
    assert!(ok.pass(), "{ok}");
    let mut sc2 = sc.clone();
    sc2.grads.as_mut().unwrap().dg[[0, 3, 0, 0]] += 1e-3 * m.dg.as_ref().unwrap()[[0, 3, 0, 0]];
    let bad = compare_pair(
        &p,
        &p,
        &m,
        &b,
        &bound_spec(&imp, &p),
        &sc2,
        &bound_spec(&c, &p),
    )
    .unwrap();
    assert!(!bad.pass());
}
