//! The chunked form (forward and chunk-level backward) against the truth, judged with the error
//! model of docs/math.md §8.1 (`bounds::compare` with the calibrated `CHUNKED` / `CHUNKED_BF16`
//! constants).
//!
//! Truth: the f64 recurrence on the same f32-representable inputs. Its own error (~2^-53 * n * M)
//! is ~2^-29 of the f32 bound, invisible here (docs/math.md §8: f64 is enough to judge f32 and
//! bf16 paths). The MPFR cross-check (gla-oracle depends on this crate, so it cannot be used
//! from these tests) lives in the property-test crate (gla-proptests).
//!
//! Larger sizes (T = 16384 for g = 0, a 20-seed sweep at T ~ 1500-2200, K = 33, V = 21):
//! `GLA_DEEP=1 cargo test -p gla-reference --release --test chunked -- --include-ignored`.
//! Calibration of the constants (prints the evidence quoted in bounds/constants.rs; `CAL_SEEDS`
//! sets the seeds per regime of the local-form dg's adversarial sweep, default 200):
//! `CAL_SEEDS=3000 cargo test -p gla-reference --release --test chunked -- --ignored --nocapture calibrate`.
//!
//! The local-form gate gradient (`backward_with(.., DgForm::Local)`) is judged against
//! `M_dg_local` with the f64 recurrence's local dg as the truth (tests `dg_local_*`).
//!
//! Building blocks through the hidden `gla_reference::test_support` hooks (formerly unit tests in
//! `src/`; not public API): the reset-aware cumulative gates, the f32 `exp`, the small GEMM, and
//! the bitwise identity of the baseline and AVX2/AVX-512 builds of the chunked and parallel
//! per-item kernels (section "Internals").

use gla_reference::bounds::{
    compare, magnitudes, Algorithm, BoundSpec, DgForm, Magnitudes, Pass, Report, CHUNKED, RECURRENT,
};
use gla_reference::chunked::{self, ChunkOptions};
use gla_reference::rounding::RoundingPlan;
use gla_reference::{recurrent, Dtype, Gates, GlaError, Problem, Solution};
use ndarray::Array4;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

mod common;
use common::*;

fn truth(p: &Problem) -> Solution {
    recurrent::backward::<f64>(p).unwrap()
}

fn spec_f32(opts: &ChunkOptions) -> BoundSpec {
    BoundSpec::new(Algorithm::Chunked { chunk: opts.chunk }, Dtype::F32).with_constants(CHUNKED)
}

fn spec_plan(opts: &ChunkOptions, backward: bool) -> BoundSpec {
    let pass = if backward {
        Pass::Backward
    } else {
        Pass::Forward
    };
    BoundSpec::from_plan(
        Algorithm::Chunked { chunk: opts.chunk },
        Dtype::F32,
        &opts.plan,
        pass,
    )
}

/// Run f32 chunked forward and backward, judge both, return the backward report.
fn check_with(p: &Problem, opts: &ChunkOptions, what: &str) -> Report {
    let exact = truth(p);
    let mags = magnitudes(p);
    let bf = !opts.plan.is_none();
    let fwd = chunked::forward::<f32>(p, opts).unwrap();
    let sf = spec_plan_or(opts, bf, false);
    let rf = compare(p, &exact, &mags, &fwd, &sf).unwrap();
    assert!(rf.pass(), "{what}: chunked f32 forward failed\n{rf}");
    let bwd = chunked::backward::<f32>(p, opts).unwrap();
    // The forward outputs of backward() are the forward's, bit for bit.
    assert_eq!(bwd.o, fwd.o, "{what}: backward's o differs from forward's");
    assert_eq!(
        bwd.ht, fwd.ht,
        "{what}: backward's ht differs from forward's"
    );
    let sb = spec_plan_or(opts, bf, true);
    let rb = compare(p, &exact, &mags, &bwd, &sb).unwrap();
    assert!(rb.pass(), "{what}: chunked f32 backward failed\n{rb}");
    rb
}

fn spec_plan_or(opts: &ChunkOptions, bf: bool, backward: bool) -> BoundSpec {
    if bf {
        spec_plan(opts, backward)
    } else {
        spec_f32(opts)
    }
}

fn check(p: &Problem, what: &str) -> Report {
    check_with(p, &ChunkOptions::default(), what)
}

fn small(c: usize, sc: usize) -> ChunkOptions {
    ChunkOptions::new(c, sc).unwrap()
}

/// All outputs finite.
fn all_finite(s: &Solution) -> bool {
    let g = s.grads.as_ref().unwrap();
    [&s.o, &s.ht, &g.dq, &g.dk, &g.dv, &g.dg, &g.dh0]
        .iter()
        .all(|a| a.iter().all(|x| x.is_finite()))
}

// ------------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------------

#[test]
fn options_are_validated() {
    let p = make(1, &shape(5, 3, 2), &logsig(16.0));
    for (c, sc) in [(0, 16), (64, 0), (48, 32), (10, 4)] {
        let o = ChunkOptions {
            chunk: c,
            sub_chunk: sc,
            plan: RoundingPlan::none(),
        };
        assert!(
            matches!(chunked::forward::<f32>(&p, &o), Err(GlaError::Options(_))),
            "{c},{sc}"
        );
        assert!(
            matches!(chunked::backward::<f32>(&p, &o), Err(GlaError::Options(_))),
            "{c},{sc}"
        );
    }
    let no_do = p.with_seeds(None, None).unwrap();
    assert!(matches!(
        chunked::backward::<f32>(&no_do, &ChunkOptions::default()),
        Err(GlaError::Options(_))
    ));
    assert_eq!(ChunkOptions::default(), ChunkOptions::new(64, 16).unwrap());
}

// ------------------------------------------------------------------------------------------------
// Gate regimes and sizes
// ------------------------------------------------------------------------------------------------

#[test]
fn mild_and_strong_gates() {
    for (i, tau) in [64.0, 16.0, 1.0, 0.1].into_iter().enumerate() {
        let p = make(10 + i as u64, &shape(150, 12, 10), &logsig(tau));
        check(&p, &format!("tau={tau}"));
        // Small chunks (more chunk boundaries and sub-chunk anchors).
        check_with(&p, &small(16, 4), &format!("tau={tau}, C=16 c=4"));
    }
}

#[test]
fn strong_gates_down_to_minus_30() {
    // Uniform in [-30, 0]: every sub-chunk holds sum |g| far above 88.7 (F5, F6 territory).
    let p = make(20, &shape(200, 9, 7), &|r, _, _| -30.0 * r.gen::<f64>());
    let rep = check(&p, "U(-30,0)");
    assert!(rep.tensors.iter().all(|t| t.candidate_nonfinite == 0));
    let ps = make(
        21,
        &Shape {
            scalar: true,
            ..shape(200, 9, 7)
        },
        &|r, _, _| -30.0 * r.gen::<f64>(),
    );
    check(&ps, "scalar U(-30,0)");
}

#[test]
fn zero_gates_long_sequence() {
    // Plain linear attention, T = 4096 (small K, V keep the test fast).
    let t = if deep() { 16384 } else { 4096 };
    let s = Shape {
        h: 1,
        ..shape(t, 5, 3)
    };
    let p = make(30, &s, &|_, _, _| 0.0);
    check(&p, "g = 0");
}

#[test]
fn sequence_lengths_around_chunk_sizes() {
    let (c, sc) = (64usize, 16usize);
    for t in [1, sc - 1, sc, sc + 1, c - 1, c, c + 1, 1000] {
        for scalar in [false, true] {
            let s = Shape {
                scalar,
                ..shape(t, 7, 5)
            };
            let p = make(40 + t as u64, &s, &logsig(1.0));
            check(&p, &format!("T={t} scalar={scalar}"));
        }
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
        let rep = check(&p, &format!("varlen scalar={scalar}"));
        let _ = rep;
        // Empty sequences: hT = h0 and dh0 = dhT exactly.
        let sol = chunked::backward::<f32>(&p, &ChunkOptions::default()).unwrap();
        let g = sol.grads.as_ref().unwrap();
        for n in [0usize, 3] {
            for h in 0..2 {
                for d in 0..6 {
                    for e in 0..4 {
                        assert_eq!(sol.ht[[n, h, d, e]], p.h0().unwrap()[[n, h, d, e]]);
                        assert_eq!(g.dh0[[n, h, d, e]], p.dht().unwrap()[[n, h, d, e]]);
                    }
                }
            }
        }
        // Packed == concatenation of separate runs (sequence 2, rows 1..70).
        let single = {
            let sl = |a: &Array4<f64>, r: std::ops::Range<usize>| {
                a.slice(ndarray::s![.., r, .., ..]).to_owned()
            };
            let st = |a: &Array4<f64>| a.slice(ndarray::s![2..3, .., .., ..]).to_owned();
            let gates = match p.gates() {
                Gates::PerChannel(g) => Gates::PerChannel(sl(&g, 1..70)),
                Gates::Scalar(g) => Gates::Scalar(g.slice(ndarray::s![.., 1..70, ..]).to_owned()),
            };
            Problem::builder(sl(p.q(), 1..70), sl(p.k(), 1..70), sl(p.v(), 1..70), gates)
                .h0(st(p.h0().unwrap()))
                .dht(st(p.dht().unwrap()))
                .do_(sl(p.do_().unwrap(), 1..70))
                .scale(p.scale())
                .build()
                .unwrap()
        };
        let one = chunked::backward::<f32>(&single, &ChunkOptions::default()).unwrap();
        let og = one.grads.as_ref().unwrap();
        for t in 0..69 {
            for h in 0..2 {
                for e in 0..4 {
                    assert_eq!(one.o[[0, t, h, e]], sol.o[[0, t + 1, h, e]]);
                    assert_eq!(og.dv[[0, t, h, e]], g.dv[[0, t + 1, h, e]]);
                }
                for d in 0..g.dg.shape()[3] {
                    assert_eq!(og.dg[[0, t, h, d]], g.dg[[0, t + 1, h, d]]);
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------
// alpha = 0 (g = -inf), tiny alpha, isolated huge gates
// ------------------------------------------------------------------------------------------------

#[test]
fn minus_inf_gates_everywhere_they_can_hurt() {
    // C = 32, c = 8 (so T = 100 has full and partial chunks, several sub-chunks per chunk).
    let opts = small(32, 8);
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("chunk starts", vec![0, 32, 64, 96]),
        ("chunk ends", vec![31, 63, 95, 99]),
        ("mid-chunk", vec![13, 50]),
        ("mid-sub-chunk", vec![3, 45, 70]),
        ("sub-chunk first rows", vec![8, 16, 24, 40, 88]),
        ("several in one chunk", vec![33, 35, 36, 41, 48, 62]),
        ("consecutive", vec![10, 11, 12, 13, 14, 15, 16, 17]),
        ("last row", vec![99]),
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
                check_with(&p, &opts, &what);
                check_with(&p, &ChunkOptions::default(), &what);
                // f64 compute is exact up to f64 rounding (no NaN from -inf - -inf).
                let s64 = chunked::backward::<f64>(&p, &opts).unwrap();
                assert!(all_finite(&s64), "{what}: non-finite f64 output");
            }
        }
    }
}

#[test]
fn minus_inf_resets_forget_exactly() {
    // g = -inf at row 37 in every channel: outputs from row 37 on must not depend on anything
    // before it (h0, earlier k, v), exactly, in f32.
    let s = Shape {
        h: 1,
        ..shape(90, 4, 3)
    };
    let p = make(71, &s, &with_resets(vec![37], |_| true, 2.0));
    let a = chunked::forward::<f32>(&p, &small(32, 8)).unwrap();
    let mut k2 = p.k().clone();
    let mut v2 = p.v().clone();
    for t in 0..37 {
        for d in 0..4 {
            k2[[0, t, 0, d]] *= -3.0;
        }
        for e in 0..3 {
            v2[[0, t, 0, e]] += 1.0;
        }
    }
    let p2 = Problem::builder(p.q().clone(), k2, v2, p.gates())
        .h0(p.h0().unwrap().mapv(|x| x * 2.0))
        .scale(p.scale())
        .build()
        .unwrap();
    let b = chunked::forward::<f32>(&p2, &small(32, 8)).unwrap();
    for t in 37..90 {
        for e in 0..3 {
            assert_eq!(a.o[[0, t, 0, e]], b.o[[0, t, 0, e]], "t={t}");
        }
    }
    assert_eq!(a.ht, b.ht);
}

#[test]
fn tiny_alpha_and_isolated_huge_gates() {
    // alpha = 1e-12 constant (F1): essentially memoryless.
    let g12 = (1e-12f64).ln();
    for scalar in [false, true] {
        let s = Shape {
            scalar,
            ..shape(130, 8, 6)
        };
        let p = make(80, &s, &move |_, _, _| g12);
        check(&p, &format!("alpha=1e-12 scalar={scalar}"));
        check_with(
            &p,
            &small(32, 8),
            &format!("alpha=1e-12 C=32 scalar={scalar}"),
        );
    }
    // Isolated -300 gates on chunk/sub-chunk boundaries and inside (F7).
    let rows = [0usize, 15, 16, 17, 63, 64, 100];
    let s = shape(130, 8, 6);
    let p = make(81, &s, &move |r, t, _| {
        if rows.contains(&t) {
            -300.0
        } else {
            logsigmoid(randn(r)) / 8.0
        }
    });
    check(&p, "isolated -300");
    check_with(&p, &small(32, 8), "isolated -300, C=32");
}

// ------------------------------------------------------------------------------------------------
// Error growth with lambda, and the bf16 plan
// ------------------------------------------------------------------------------------------------

#[test]
fn error_grows_no_faster_than_lambda() {
    // Sweep gate strength; the ratio stays under the bound, and err/(u M) tracks n_acc + lambda
    // (lambda goes from ~1 to ~500 here).
    let mut rows = Vec::new();
    for (i, tau) in [64.0, 4.0, 1.0, 0.25, 0.1].into_iter().enumerate() {
        let p = make(90 + i as u64, &shape(256, 16, 16), &logsig(tau));
        let exact = truth(&p);
        let mags = magnitudes(&p);
        let opts = ChunkOptions::default();
        let cand = chunked::forward::<f32>(&p, &opts).unwrap();
        let rep = compare(&p, &exact, &mags, &cand, &spec_f32(&opts)).unwrap();
        let o = rep.tensor("o").unwrap();
        assert!(o.ratio <= o.bound, "tau={tau}\n{rep}");
        rows.push((tau, o.lambda, o.n_acc, o.ratio));
    }
    for (tau, lambda, n_acc, ratio) in &rows {
        eprintln!("tau={tau:<5} lambda={lambda:>8.1} n_acc+lambda={:>8.1} err/(uM)={ratio:>8.2} per unit={:.4}", n_acc + lambda, ratio / (n_acc + lambda));
        // Within c of the prediction at every strength.
        assert!(ratio / (n_acc + lambda) <= CHUNKED.o);
    }
    // The error does grow with lambda (the term is real, not slack): strongest vs mildest.
    let (first, last) = (rows[0], rows[rows.len() - 1]);
    assert!(last.1 > 20.0 * first.1);
    assert!(
        last.3 > 2.0 * first.3,
        "err did not grow with lambda: {rows:?}"
    );
}

#[test]
fn bf16_kernel_plan_within_bf16_bound() {
    let plans = [
        ("kernel_default", RoundingPlan::kernel_default(Dtype::Bf16)),
        (
            "everything",
            RoundingPlan::kernel_default(Dtype::Bf16)
                .offdiag_q(Some(Dtype::Bf16))
                .offdiag_k(Some(Dtype::Bf16))
                .diag(Some(Dtype::Bf16))
                .v(Some(Dtype::Bf16))
                .do_(Some(Dtype::Bf16))
                .bwd_state(Some(Dtype::Bf16))
                .dstate(Some(Dtype::Bf16))
                .da(Some(Dtype::Bf16)),
        ),
        ("fp16 default", RoundingPlan::kernel_default(Dtype::F16)),
    ];
    for (pname, plan) in plans {
        for (i, tau) in [16.0, 1.0, 0.1].into_iter().enumerate() {
            let p0 = make(100 + i as u64, &shape(150, 12, 10), &logsig(tau));
            let dt = plan.q_decay.unwrap();
            let p = p0.rounded_to(dt).unwrap();
            let opts = ChunkOptions::default().with_plan(plan);
            check_with(&p, &opts, &format!("{pname} tau={tau}"));
            check_with(
                &p,
                &small(32, 8).with_plan(plan),
                &format!("{pname} C=32 tau={tau}"),
            );
        }
    }
}

#[test]
fn bf16_plan_with_minus_inf_and_tiny_alpha_stays_finite() {
    let plan = RoundingPlan::kernel_default(Dtype::Bf16)
        .offdiag_q(Some(Dtype::Bf16))
        .offdiag_k(Some(Dtype::Bf16));
    let g12 = (1e-12f64).ln();
    let p = make(
        110,
        &shape(100, 8, 8),
        &with_resets(vec![0, 31, 32, 50], |_| true, 1.0),
    )
    .rounded_to(Dtype::Bf16)
    .unwrap();
    check_with(&p, &small(32, 8).with_plan(plan), "bf16 -inf");
    let p = make(111, &shape(100, 8, 8), &move |_, _, _| g12)
        .rounded_to(Dtype::Bf16)
        .unwrap();
    check_with(
        &p,
        &ChunkOptions::default().with_plan(plan),
        "bf16 alpha=1e-12",
    );
}

#[test]
fn f64_compute_agrees_with_recurrence() {
    // f64 chunked vs f64 recurrence: both ~1e-16 relative to M; judged with the sum of both
    // families' f64 bounds (c_chunked + c_recurrent) * u64 * (n_acc + lambda) * M.
    let p = make(120, &shape(150, 12, 10), &logsig(0.5));
    let a = chunked::backward::<f64>(&p, &ChunkOptions::default()).unwrap();
    let b = recurrent::backward::<f64>(&p).unwrap();
    let mags = magnitudes(&p);
    let spec = BoundSpec::new(Algorithm::Chunked { chunk: 64 }, Dtype::F64).with_constants(
        gla_reference::bounds::Constants::uniform(CHUNKED.o.max(CHUNKED.dg) + 4.0),
    );
    let rep = compare(&p, &b, &mags, &a, &spec).unwrap();
    assert!(rep.pass(), "{rep}");
}

#[test]
#[ignore = "deep run (GLA_DEEP=1 with --ignored): larger random sweep for nightly runs"]
fn deep_random_sweep() {
    if !deep() {
        return;
    }
    for seed in 0..20u64 {
        let tau = [64.0, 16.0, 1.0, 0.3, 0.1][seed as usize % 5];
        let p = make(
            1000 + seed,
            &shape(1500 + 37 * seed as usize, 33, 21),
            &logsig(tau),
        );
        check(&p, &format!("deep seed={seed}"));
    }
}

// ------------------------------------------------------------------------------------------------
// The local-form gate gradient (backward_with(.., DgForm::Local)), judged against M_dg_local
// ------------------------------------------------------------------------------------------------

/// The truth for the local form: the f64 recurrence with the local dg (its error is relative to
/// M_dg_local, ~2^-29 of the f32 bound; the f64 reverse cumsum's is relative to M_dg, which can
/// be 1e14 times larger).
fn truth_local(p: &Problem) -> Solution {
    recurrent::backward_with::<f64>(p, DgForm::Local).unwrap()
}

/// The spec judging `backward_with(.., Local)` in compute type `acc` (f32: the chunked family's
/// constants; f64: the chunked plus the recurrent constant, since the f64 truth's own error is of
/// the same size as the candidate's), with the plan's stages when it rounds.
fn spec_local(opts: &ChunkOptions, acc: Dtype) -> BoundSpec {
    let s = if acc == Dtype::F64 {
        let mut c = CHUNKED;
        for (x, r) in [
            (&mut c.o, RECURRENT.o),
            (&mut c.ht, RECURRENT.ht),
            (&mut c.dq, RECURRENT.dq),
            (&mut c.dk, RECURRENT.dk),
            (&mut c.dv, RECURRENT.dv),
            (&mut c.dh0, RECURRENT.dh0),
            (&mut c.dg_local, RECURRENT.dg_local),
        ] {
            *x += r;
        }
        BoundSpec::new(Algorithm::Chunked { chunk: opts.chunk }, Dtype::F64).with_constants(c)
    } else {
        spec_plan_or(opts, !opts.plan.is_none(), true)
    };
    s.with_dg_form(DgForm::Local)
}

/// Run `backward_with(.., Local)` in f32 and f64 (f64 only without a rounding plan), judge every
/// output (dg against M_dg_local), check that everything but dg is bitwise `backward`'s, and
/// return the f32 report.
fn check_local_with(
    p: &Problem,
    exact: &Solution,
    mags: &Magnitudes,
    opts: &ChunkOptions,
    what: &str,
) -> Report {
    let loc = chunked::backward_with::<f32>(p, opts, DgForm::Local).unwrap();
    let rc = chunked::backward::<f32>(p, opts).unwrap();
    let (gl, gr) = (loc.grads.as_ref().unwrap(), rc.grads.as_ref().unwrap());
    assert!(
        loc.o == rc.o
            && loc.ht == rc.ht
            && gl.dq == gr.dq
            && gl.dk == gr.dk
            && gl.dv == gr.dv
            && gl.dh0 == gr.dh0,
        "{what}: the local form changed an output other than dg"
    );
    let rep = compare(p, exact, mags, &loc, &spec_local(opts, Dtype::F32)).unwrap();
    assert!(rep.pass(), "{what}: local-form f32 backward failed\n{rep}");
    if opts.plan.is_none() {
        let l64 = chunked::backward_with::<f64>(p, opts, DgForm::Local).unwrap();
        let r64 = compare(p, exact, mags, &l64, &spec_local(opts, Dtype::F64)).unwrap();
        assert!(r64.pass(), "{what}: local-form f64 backward failed\n{r64}");
    }
    rep
}

/// [`check_local_with`] with both chunkings (64, 16) and (16, 4).
fn check_local(p: &Problem, what: &str) -> Vec<Report> {
    let (exact, mags) = (truth_local(p), magnitudes(p));
    [ChunkOptions::default(), small(16, 4)]
        .iter()
        .map(|o| {
            let w = format!("{what}, C={} c={}", o.chunk, o.sub_chunk);
            check_local_with(p, &exact, &mags, o, &w)
        })
        .collect()
}

/// dg (per channel) is exactly 0 wherever the gate is -inf (alpha = 0 times a finite sum).
fn assert_dg_zero_at_resets(p: &Problem, s: &Solution, what: &str) {
    let dg = &s.grads.as_ref().unwrap().dg;
    let g = p.g();
    let mut n = 0;
    for (idx, &x) in g.indexed_iter() {
        if x == f64::NEG_INFINITY {
            assert_eq!(dg[idx], 0.0, "{what}: dg at a -inf gate {idx:?}");
            n += 1;
        }
    }
    assert!(n > 0, "{what}: no -inf gate");
}

#[test]
fn dg_local_mild_and_strong_gates() {
    for (i, tau) in [16.0, 1.0].into_iter().enumerate() {
        let p = make(200 + i as u64, &shape(150, 12, 10), &logsig(tau));
        check_local(&p, &format!("tau={tau}"));
    }
    for scalar in [false, true] {
        let s = Shape {
            scalar,
            ..shape(200, 9, 7)
        };
        let p = make(205, &s, &|r, _, _| -30.0 * r.gen::<f64>());
        check_local(&p, &format!("U(-30,0) scalar={scalar}"));
    }
}

#[test]
fn dg_local_tiny_alpha_beats_the_reverse_cumsum() {
    // alpha = 1e-12 in every channel (F1): the reverse cumsum's dg cancels (its error is relative
    // to M_dg, ~1e12 x M_dg_local here); the local form's is relative to M_dg_local.
    let g12 = (1e-12f64).ln();
    for scalar in [false, true] {
        let s = Shape {
            scalar,
            ..shape(130, 8, 6)
        };
        let p = make(210, &s, &move |_, _, _| g12);
        let (exact, mags) = (truth_local(&p), magnitudes(&p));
        for opts in [ChunkOptions::default(), small(16, 4)] {
            let what = format!(
                "alpha=1e-12 scalar={scalar} C={} c={}",
                opts.chunk, opts.sub_chunk
            );
            let rep = check_local_with(&p, &exact, &mags, &opts, &what);
            let loc = rep.tensor("dg").unwrap();
            let rc = chunked::backward::<f32>(&p, &opts).unwrap();
            let spec = spec_local(&opts, Dtype::F32);
            let rrc = compare(&p, &exact, &mags, &rc, &spec).unwrap();
            let rcd = rrc.tensor("dg").unwrap();
            eprintln!(
                "{what}: dg ratio vs M_dg_local: local {:.3e}, reverse cumsum {:.3e} (bound {:.3e}); \
                 vs M_dg: local {:.3e}, reverse cumsum {:.3e}",
                loc.ratio,
                rcd.ratio,
                loc.bound,
                loc.dg.unwrap().reverse_cumsum,
                rcd.dg.unwrap().reverse_cumsum
            );
            assert!(loc.pass && loc.ratio <= loc.bound, "{what}\n{rep}");
            // The magnitude matters: the reverse cumsum is far outside the local bound.
            assert!(
                rcd.ratio > 1e3 * rcd.bound,
                "{what}: the reverse cumsum unexpectedly accurate\n{rrc}"
            );
        }
    }
}

#[test]
fn dg_local_isolated_huge_gates() {
    let rows = [0usize, 15, 16, 17, 63, 64, 100];
    let p = make(220, &shape(130, 8, 6), &move |r, t, _| {
        if rows.contains(&t) {
            -300.0
        } else {
            logsigmoid(randn(r)) / 8.0
        }
    });
    check_local(&p, "isolated -300");
}

#[test]
fn dg_local_minus_inf_gates() {
    let cases: Vec<(&str, Vec<usize>)> = vec![
        ("chunk starts", vec![0, 16, 32, 64, 96]),
        ("chunk ends", vec![15, 31, 63, 95, 99]),
        ("mid-chunk", vec![5, 13, 22, 50, 70]),
        ("several in one chunk", vec![33, 35, 36, 41, 48, 62]),
    ];
    for (name, rows) in &cases {
        for scalar in [false, true] {
            let s = Shape {
                scalar,
                ..shape(100, 6, 5)
            };
            let chan = if scalar {
                |_| true
            } else {
                |d: usize| d % 2 == 0
            };
            let p = make(230, &s, &with_resets(rows.clone(), chan, 1.0));
            let what = format!("-inf at {name}, scalar={scalar}");
            check_local(&p, &what);
            for opts in [ChunkOptions::default(), small(16, 4)] {
                for s in [
                    chunked::backward_with::<f32>(&p, &opts, DgForm::Local).unwrap(),
                    chunked::backward_with::<f64>(&p, &opts, DgForm::Local).unwrap(),
                ] {
                    assert!(all_finite(&s), "{what}");
                    if !scalar {
                        assert_dg_zero_at_resets(&p, &s, &what);
                    }
                }
            }
        }
    }
}

#[test]
fn dg_local_sequence_lengths_and_varlen() {
    for t in [1usize, 15, 16, 17, 63, 64, 65, 1000] {
        let scalar = t % 2 == 1;
        let s = Shape {
            scalar,
            ..shape(t, 7, 5)
        };
        let p = make(240 + t as u64, &s, &logsig(1.0));
        check_local(&p, &format!("T={t} scalar={scalar}"));
    }
    let cu = vec![0i64, 0, 1, 70, 70, 135, 136];
    for scalar in [false, true] {
        let s = Shape {
            scalar,
            cu: Some(cu.clone()),
            ..shape(136, 6, 4)
        };
        let p = make(250, &s, &logsig(1.0));
        check_local(&p, &format!("varlen scalar={scalar}"));
    }
    // No h0 / dhT (their terms vanish).
    let s = Shape {
        h0: false,
        dht: false,
        ..shape(77, 5, 3)
    };
    check_local(&make(251, &s, &logsig(4.0)), "no h0, no dht");
}

#[test]
fn dg_local_bf16_kernel_plan() {
    let plans = [
        ("kernel_default", RoundingPlan::kernel_default(Dtype::Bf16)),
        (
            "everything",
            RoundingPlan::kernel_default(Dtype::Bf16)
                .offdiag_q(Some(Dtype::Bf16))
                .offdiag_k(Some(Dtype::Bf16))
                .diag(Some(Dtype::Bf16))
                .do_(Some(Dtype::Bf16))
                .bwd_state(Some(Dtype::Bf16))
                .dstate(Some(Dtype::Bf16))
                .da(Some(Dtype::Bf16)),
        ),
    ];
    let g12 = (1e-12f64).ln();
    let gates: [(&str, BoxedGate); 3] = [
        ("tau=1", Box::new(logsig(1.0))),
        ("alpha=1e-12", Box::new(move |_: &mut ChaCha8Rng, _, _| g12)),
        (
            "-inf",
            Box::new(with_resets(vec![0, 15, 31, 32, 50], |_| true, 1.0)),
        ),
    ];
    for (gi, (gname, gate)) in gates.iter().enumerate() {
        let p = make(260 + gi as u64, &shape(100, 8, 8), gate.as_ref())
            .rounded_to(Dtype::Bf16)
            .unwrap();
        let (exact, mags) = (truth_local(&p), magnitudes(&p));
        for (pname, plan) in plans {
            for opts in [ChunkOptions::default(), small(16, 4)] {
                let o = opts.with_plan(plan);
                let what = format!("{pname} {gname} C={}", o.chunk);
                check_local_with(&p, &exact, &mags, &o, &what);
            }
        }
    }
}

#[test]
fn dg_local_agrees_with_reverse_cumsum_on_mild_gates() {
    // Both algorithms compute the same dg: on a mild problem they agree within the sum of their
    // bounds, elementwise: (b_loc unit M_dg_local + eta_loc) + (b_rc unit M_dg + eta_rc).
    let p = make(270, &shape(150, 12, 10), &logsig(16.0));
    let mags = magnitudes(&p);
    for opts in [ChunkOptions::default(), small(16, 4)] {
        let loc = chunked::backward_with::<f32>(&p, &opts, DgForm::Local).unwrap();
        let rc = chunked::backward::<f32>(&p, &opts).unwrap();
        let (a, b) = (&loc.grads.unwrap().dg, &rc.grads.unwrap().dg);
        let sl = spec_local(&opts, Dtype::F32);
        let sr = spec_f32(&opts);
        let unit = sl.u_stages() + sl.u_acc();
        let (bl, br) = (sl.bound(&p, "dg").unwrap(), sr.bound(&p, "dg").unwrap());
        let (el, er) = (sl.eta(&p, "dg_local").unwrap(), sr.eta(&p, "dg").unwrap());
        let (ml, mr) = (mags.dg_local.as_ref().unwrap(), mags.dg.as_ref().unwrap());
        let mut worst = 0.0f64;
        let mut differ = 0;
        for ((idx, &x), &y) in a.indexed_iter().zip(b.iter()) {
            let tol = bl * unit * ml[idx] + el + br * unit * mr[idx] + er;
            worst = worst.max((x - y).abs() / tol);
            differ += (x != y) as usize;
        }
        eprintln!(
            "C={}: max |dg_local - dg_rc| / (sum of bounds) = {worst:.3e}",
            opts.chunk
        );
        assert!(worst <= 1.0, "C={}: forms disagree ({worst})", opts.chunk);
        assert!(differ > 0, "the two forms are the same computation");
    }
}

// ------------------------------------------------------------------------------------------------
// Calibration (prints the evidence for bounds::CHUNKED / CHUNKED_BF16)
// ------------------------------------------------------------------------------------------------

#[test]
#[ignore = "calibration sweep that produced the constants in bounds/constants.rs; run on demand"]
fn calibrate() {
    let mut worst_f32: std::collections::BTreeMap<String, f64> = Default::default();
    let mut worst_bf: std::collections::BTreeMap<String, f64> = Default::default();
    // The local-form dg per regime: (regime, "f32 c" | "f64 c" | "bf16 ratio") -> max.
    let mut local_rows: std::collections::BTreeMap<(String, &str), f64> = Default::default();
    let sizes = [(256usize, 16usize, 16usize), (1024, 64, 64), (700, 33, 21)];
    let regimes = calibration_regimes();
    for (rname, gate) in &regimes {
        for (si, &(t, k, v)) in sizes.iter().enumerate() {
            for scalar in [false, true] {
                let s = Shape {
                    scalar,
                    ..shape(t, k, v)
                };
                let p = make(500 + si as u64 * 7 + scalar as u64, &s, gate.as_ref());
                let exact = truth(&p);
                let exact_l = truth_local(&p);
                let mags = magnitudes(&p);
                for opts in [ChunkOptions::default(), small(32, 8), small(16, 4)] {
                    // The local-form dg (backward_with(.., Local)) against M_dg_local, f32 and
                    // f64 compute (f64: c_needed against the f64 recurrence, whose own error
                    // is included).
                    for acc in [Dtype::F32, Dtype::F64] {
                        let c = if acc == Dtype::F32 {
                            chunked::backward_with::<f32>(&p, &opts, DgForm::Local).unwrap()
                        } else {
                            chunked::backward_with::<f64>(&p, &opts, DgForm::Local).unwrap()
                        };
                        let spec = BoundSpec::new(Algorithm::Chunked { chunk: opts.chunk }, acc)
                            .with_constants(CHUNKED)
                            .with_dg_form(DgForm::Local);
                        let rep = compare(&p, &exact_l, &mags, &c, &spec).unwrap();
                        let (_, need) =
                            c_needed(&rep).into_iter().find(|(n, _)| n == "dg").unwrap();
                        let kind = if acc == Dtype::F32 { "f32 c" } else { "f64 c" };
                        let e = local_rows.entry((rname.to_string(), kind)).or_default();
                        *e = e.max(need);
                        let key = format!("dg_local {acc:?}");
                        let w = worst_f32.entry(key.clone()).or_default();
                        if need > *w {
                            *w = need;
                            eprintln!("{key} {rname:<12} T={t} K={k} V={v} scalar={scalar} C={} c={}: c={need:.4} (lambda {:.1})", opts.chunk, opts.sub_chunk, rep.tensor("dg").unwrap().lambda);
                        }
                    }
                    if opts.chunk == 16 {
                        let pb = p.rounded_to(Dtype::Bf16).unwrap();
                        let ob = opts.with_plan(RoundingPlan::kernel_default(Dtype::Bf16));
                        let c = chunked::backward_with::<f32>(&pb, &ob, DgForm::Local).unwrap();
                        let spec = spec_plan(&ob, true).with_dg_form(DgForm::Local);
                        let rep =
                            compare(&pb, &truth_local(&pb), &magnitudes(&pb), &c, &spec).unwrap();
                        let tr = rep.tensor("dg").unwrap();
                        let e = local_rows
                            .entry((rname.to_string(), "bf16 ratio"))
                            .or_default();
                        *e = e.max(tr.ratio);
                        let w = worst_bf.entry("dg_local".into()).or_default();
                        if tr.ratio > *w {
                            *w = tr.ratio;
                            eprintln!("bf16 {rname:<12} T={t} K={k} V={v} scalar={scalar} C=16 dg_local: ratio={:.4} (bound {:.3})", tr.ratio, tr.bound);
                        }
                        continue;
                    }
                    let c = chunked::backward::<f32>(&p, &opts).unwrap();
                    let rep = compare(&p, &exact, &mags, &c, &spec_f32(&opts)).unwrap();
                    for (n, need) in c_needed(&rep) {
                        let w = worst_f32.entry(n.clone()).or_default();
                        if need > *w {
                            *w = need;
                            eprintln!("f32  {rname:<12} T={t} K={k} V={v} scalar={scalar} C={} {n}: c={need:.4}", opts.chunk);
                        }
                    }
                    let pb = p.rounded_to(Dtype::Bf16).unwrap();
                    let exact_b = truth(&pb);
                    let mags_b = magnitudes(&pb);
                    let ob = opts.with_plan(RoundingPlan::kernel_default(Dtype::Bf16));
                    let c = chunked::backward::<f32>(&pb, &ob).unwrap();
                    let rep = compare(&pb, &exact_b, &mags_b, &c, &spec_plan(&ob, true)).unwrap();
                    let cl = chunked::backward_with::<f32>(&pb, &ob, DgForm::Local).unwrap();
                    let spec_l = spec_plan(&ob, true).with_dg_form(DgForm::Local);
                    let rl = compare(&pb, &truth_local(&pb), &mags_b, &cl, &spec_l).unwrap();
                    let tl = rl.tensor("dg").unwrap();
                    let e = local_rows
                        .entry((rname.to_string(), "bf16 ratio"))
                        .or_default();
                    *e = e.max(tl.ratio);
                    let w = worst_bf.entry("dg_local".into()).or_default();
                    if tl.ratio > *w {
                        *w = tl.ratio;
                        eprintln!("bf16 {rname:<12} T={t} K={k} V={v} scalar={scalar} C={} dg_local: ratio={:.4} (bound {:.3})", opts.chunk, tl.ratio, tl.bound);
                    }
                    for tr in &rep.tensors {
                        let w = worst_bf.entry(tr.name.clone()).or_default();
                        // For the bf16 family record the ratio to (sum u_s + u_acc) M.
                        if tr.ratio > *w {
                            *w = tr.ratio;
                            eprintln!("bf16 {rname:<12} T={t} K={k} V={v} scalar={scalar} C={} {}: ratio={:.4} (bound {:.3})", opts.chunk, tr.name, tr.ratio, tr.bound);
                        }
                    }
                }
            }
        }
    }
    adversarial_dg_local(&mut local_rows);
    eprintln!("f32 worst c: {worst_f32:?}");
    eprintln!("bf16 worst ratio: {worst_bf:?}");
    eprintln!("local-form dg per regime (c_needed f32 / f64, bf16 ratio to (sum u_s + u_acc) M):");
    let mut last = String::new();
    for ((r, kind), x) in &local_rows {
        if *r != last {
            eprint!("\n  {r:<28}");
            last = r.clone();
        }
        eprint!(" {kind} {x:.4}");
    }
    eprintln!();
}

/// Many small random problems in the regimes that pushed the log-space families' constants up
/// (isolated huge gates with more rows in the chunk, wide-range values, small chunkings):
/// `CAL_SEEDS` (default 200) seeds per (gate regime, value regime). Records the local-form dg's
/// c_needed (f32, f64) and bf16 ratio per gate regime, and the largest dq/dk c_needed of the
/// same runs for context.
fn adversarial_dg_local(rows: &mut std::collections::BTreeMap<(String, &str), f64>) {
    let seeds = cal_seeds();
    let mut ctx: std::collections::BTreeMap<String, (f64, String)> = Default::default();
    adversarial_cases(|case| {
        let key = format!("adv {}", case.key());
        let (p, seed, dims, scalar) = (&case.p, case.seed, case.dims, case.scalar);
        let exact = truth_local(p);
        let mags = magnitudes(p);
        for opts in [ChunkOptions::default(), small(32, 8), small(16, 4)] {
            for acc in [Dtype::F32, Dtype::F64] {
                let c = if acc == Dtype::F32 {
                    chunked::backward_with::<f32>(p, &opts, DgForm::Local).unwrap()
                } else {
                    chunked::backward_with::<f64>(p, &opts, DgForm::Local).unwrap()
                };
                let spec = BoundSpec::new(Algorithm::Chunked { chunk: opts.chunk }, acc)
                    .with_constants(CHUNKED)
                    .with_dg_form(DgForm::Local);
                let rep = compare(p, &exact, &mags, &c, &spec).unwrap();
                assert!(
                    rep.tensors.iter().all(|t| t.candidate_nonfinite == 0),
                    "{key} seed {seed}: non-finite\n{rep}"
                );
                let kind = if acc == Dtype::F32 { "f32 c" } else { "f64 c" };
                for (n, need) in c_needed(&rep) {
                    if n == "dg" {
                        let e = rows.entry((key.clone(), kind)).or_default();
                        if need > *e {
                            *e = need;
                            if acc == Dtype::F32 && need > 0.5 {
                                eprintln!("{key} seed {seed} T,K,V={dims:?} scalar={scalar} C={} c={}: dg_local c={need:.3}", opts.chunk, opts.sub_chunk);
                            }
                        }
                    } else if acc == Dtype::F32 {
                        let e = ctx.entry(n).or_default();
                        if need > e.0 {
                            *e = (need, format!("{key} seed {seed} C={}", opts.chunk));
                        }
                    }
                }
            }
            let pb = p.rounded_to(Dtype::Bf16).unwrap();
            let ob = opts.with_plan(RoundingPlan::kernel_default(Dtype::Bf16));
            let c = chunked::backward_with::<f32>(&pb, &ob, DgForm::Local).unwrap();
            let spec = spec_plan(&ob, true).with_dg_form(DgForm::Local);
            let rep = compare(&pb, &truth_local(&pb), &magnitudes(&pb), &c, &spec).unwrap();
            let e = rows.entry((key.clone(), "bf16 ratio")).or_default();
            *e = e.max(rep.tensor("dg").unwrap().ratio);
        }
    });
    eprintln!("adversarial sweep ({seeds} seeds per regime pair), other outputs' f32 c_needed (context): {ctx:?}");
}

// ------------------------------------------------------------------------------------------------
// Internals (private building blocks through `gla_reference::test_support`)
// ------------------------------------------------------------------------------------------------

mod internals {
    use gla_reference::bounds::DgForm;
    use gla_reference::chunked::ChunkOptions;
    use gla_reference::test_support::{
        chunked_f32_isa, expf_fast, gemm_f32, parallel_f32_isa, vexp_f32, CumGate,
    };
    use gla_reference::{Gates, Problem};
    use ndarray::Array4;

    /// Reset-aware cumulative gates (`cumgate::Cum`): decays across a reset are exactly 0,
    /// from the reset row on they restart.
    #[test]
    fn reset_aware_cumsum() {
        let ninf = f64::NEG_INFINITY;
        let g = ndarray::array![[-1.0], [ninf], [-0.5], [-0.25], [ninf], [-2.0]];
        let c = CumGate::new(g.view());
        assert_eq!(c.dec(0, -1, 0), (-1.0f64).exp());
        assert_eq!(c.dec(3, -1, 0), 0.0); // reset at row 1 lies in (-1, 3]
        assert_eq!(c.dec(3, 1, 0), (-0.75f64).exp()); // from the reset row on: finite
        assert_eq!(c.dec(3, 2, 0), (-0.25f64).exp());
        assert_eq!(c.dec(5, 3, 0), 0.0);
        assert_eq!(c.dec(5, 4, 0), (-2.0f64).exp());
        assert_eq!(c.dec(4, 4, 0), 1.0);
    }

    /// expf_fast: <= 2 ulp from the exact exp on normal results, exact 1 at 0, exact 0 for -inf,
    /// results below the normal range flushed (error < 2^-126).
    #[test]
    fn fast_exp_accuracy() {
        let mut worst_ulp = 0.0f64;
        let mut x = -87.0f32;
        while x <= 0.0 {
            let want = (x as f64).exp();
            let got = expf_fast(x) as f64;
            let ulp = (want as f32).abs() as f64 * 2f64.powi(-23);
            worst_ulp = worst_ulp.max((got - want).abs() / ulp);
            x += 0.000_731;
        }
        assert!(worst_ulp <= 2.0, "worst {worst_ulp} ulp");
        assert_eq!(expf_fast(0.0), 1.0);
        assert_eq!(expf_fast(f32::NEG_INFINITY), 0.0);
        assert_eq!(expf_fast(-200.0), 0.0);
        for x in [-87.34f32, -88.0, -95.0, -100.0, -103.0] {
            let want = (x as f64).exp();
            assert!((expf_fast(x) as f64 - want).abs() <= 2f64.powi(-126), "{x}");
        }
        assert!(expf_fast(-87.33) >= f32::MIN_POSITIVE);
        let mut v = [0.0f32, -1.0, f32::NEG_INFINITY];
        vexp_f32(&mut v);
        assert_eq!(v[2], 0.0);
        assert_eq!(v[0], 1.0);
    }

    /// The chunked form's GEMM against a plain triple loop with the same per-element order
    /// (bitwise), all stride combinations, edge sizes, `beta = 0` ignoring NaN in C.
    #[test]
    fn matches_naive() {
        let f = |i: usize| ((i * 7919) % 1000) as f32 / 500.0 - 1.0;
        for (m, k, n) in [
            (1, 1, 1),
            (9, 5, 33),
            (64, 128, 128),
            (17, 3, 50),
            (8, 0, 16),
            (5, 7, 1),
        ] {
            let a: Vec<f32> = (0..m * k).map(f).collect();
            let b: Vec<f32> = (0..k * n).map(|i| f(i + 11)).collect();
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                let sa = if ta { (1, m) } else { (k, 1) };
                let sb = if tb { (1, k) } else { (n, 1) };
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.5, 1.0)] {
                    let ldc = n + 3;
                    let mut c = vec![f32::NAN; m * ldc];
                    if beta != 0.0 {
                        c.iter_mut().enumerate().for_each(|(i, x)| *x = f(i + 5));
                    }
                    let mut want = c.clone();
                    for i in 0..m {
                        for j in 0..n {
                            let mut acc = 0.0f32;
                            for p in 0..k {
                                acc = a[i * sa.0 + p * sa.1].mul_add(b[p * sb.0 + j * sb.1], acc);
                            }
                            let old = want[i * ldc + j];
                            want[i * ldc + j] = if beta == 0.0 {
                                alpha * acc
                            } else {
                                alpha * acc + beta * old
                            };
                        }
                    }
                    gemm_f32((m, k, n), alpha, &a, sa, &b, sb, beta, &mut c, ldc);
                    for i in 0..m {
                        assert_eq!(c[i * ldc..i * ldc + n], want[i * ldc..i * ldc + n]);
                    }
                }
            }
        }
    }

    fn test_problem(t: usize, k: usize, v: usize, scalar: bool) -> Problem {
        let f = |i: usize| ((i * 7919) % 1000) as f64 / 500.0 - 1.0;
        let q = Array4::from_shape_fn((1, t, 2, k), |(_, t, h, d)| f(t * 31 + d + h));
        let kk = Array4::from_shape_fn((1, t, 2, k), |(_, t, _, d)| f(t * 17 + d + 3));
        let vv = Array4::from_shape_fn((1, t, 2, v), |(_, t, _, e)| f(t * 13 + e + 9));
        let gates = if scalar {
            let mut g = ndarray::Array3::from_shape_fn((1, t, 2), |(_, t, _)| -f(t).abs() * 3.0);
            g[[0, 20.min(t - 1), 0]] = f64::NEG_INFINITY;
            Gates::Scalar(g)
        } else {
            let mut g = Array4::from_shape_fn((1, t, 2, k), |(_, t, _, d)| -f(t + d).abs() * 3.0);
            g[[0, 20.min(t - 1), 0, 2.min(k - 1)]] = f64::NEG_INFINITY;
            Gates::PerChannel(g)
        };
        Problem::builder(q, kk, vv, gates)
            .do_(Array4::from_shape_fn((1, t, 2, v), |(_, t, _, e)| {
                f(t * 3 + e)
            }))
            .build()
            .unwrap()
    }

    /// The AVX2/AVX-512 build and the baseline build give bitwise identical results (chunked
    /// form, both dg forms, per-channel and scalar gates; parallel form).
    #[test]
    fn avx2_build_is_bitwise_identical() {
        let p = test_problem(70, 13, 6, false);
        let opts = ChunkOptions::new(32, 8).unwrap();
        for form in [DgForm::ReverseCumsum, DgForm::Local] {
            for p in [&p, &test_problem(70, 13, 6, true)] {
                let base = chunked_f32_isa(p, &opts, Some(form), true);
                let best = chunked_f32_isa(p, &opts, Some(form), false);
                assert_eq!(base, best, "{form:?}");
            }
        }
        let pb = parallel_f32_isa(&p, true, true);
        let pa = parallel_f32_isa(&p, true, false);
        assert_eq!(pb, pa);
    }
}
