//! The recurrent reference against brute-force closed forms (docs/math.md §1 and §4), the two dg
//! forms against each other, f32 against f64 within the calibrated bound (docs/math.md §8.1), exactness of
//! -inf gates, causality, and varlen semantics. The ignored test `calibrate_recurrent_f32` is the
//! calibration sweep behind the constants in `src/bounds/constants.rs`.

use gla_reference::bounds::{
    compare, magnitudes, solve_with_magnitudes, Algorithm, BoundSpec, DgForm, Report,
};
use gla_reference::{recurrent, Dtype, GateKind, Gates, Problem, Solution};
use ndarray::{Array3, Array4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ------------------------------------------------------------------------------------------
// Generators
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum GateGen {
    /// logsigmoid(N(0,1)) / tau
    LogSigmoid(f64),
    /// g == 0 (plain linear attention)
    Zero,
    /// log(alpha) for a constant alpha
    Alpha(f64),
    /// logsigmoid(N(0,1)) / tau with whole rows (all channels) set to -inf with probability p
    NegInfRows(f64, f64),
}

#[derive(Debug, Clone)]
struct Cfg {
    b: usize,
    t: usize,
    h: usize,
    k: usize,
    v: usize,
    gate: GateGen,
    scalar: bool,
    h0: bool,
    do_: bool,
    dht: bool,
    cu: Option<Vec<i64>>,
    seed: u64,
}

impl Cfg {
    fn new(t: usize, k: usize, v: usize, gate: GateGen) -> Cfg {
        Cfg {
            b: 1,
            t,
            h: 1,
            k,
            v,
            gate,
            scalar: false,
            h0: true,
            do_: true,
            dht: true,
            cu: None,
            seed: 1,
        }
    }
}

fn randn(r: &mut ChaCha8Rng) -> f64 {
    // Box-Muller
    let u1: f64 = r.gen::<f64>().max(1e-300);
    let u2: f64 = r.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn logsigmoid(x: f64) -> f64 {
    if x > 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

fn gen(c: &Cfg) -> Problem {
    let mut r = ChaCha8Rng::seed_from_u64(c.seed);
    let (b, t, h, k, v) = (c.b, c.t, c.h, c.k, c.v);
    let q = Array4::from_shape_fn((b, t, h, k), |_| randn(&mut r));
    let kk = Array4::from_shape_fn((b, t, h, k), |_| randn(&mut r));
    let vv = Array4::from_shape_fn((b, t, h, v), |_| randn(&mut r));
    let kg = if c.scalar { 1 } else { k };
    let mut g = Array4::from_shape_fn((b, t, h, kg), |_| match c.gate {
        GateGen::LogSigmoid(tau) | GateGen::NegInfRows(tau, _) => logsigmoid(randn(&mut r)) / tau,
        GateGen::Zero => 0.0,
        GateGen::Alpha(a) => a.ln(),
    });
    if let GateGen::NegInfRows(_, prob) = c.gate {
        for bi in 0..b {
            for ti in 0..t {
                for hi in 0..h {
                    if r.gen::<f64>() < prob {
                        for d in 0..kg {
                            g[[bi, ti, hi, d]] = f64::NEG_INFINITY;
                        }
                    }
                }
            }
        }
    }
    let gates = if c.scalar {
        Gates::Scalar(g.index_axis(ndarray::Axis(3), 0).to_owned())
    } else {
        Gates::PerChannel(g)
    };
    let n = c.cu.as_ref().map_or(b, |cu| cu.len() - 1);
    let mut bld = Problem::builder(q, kk, vv, gates);
    if c.h0 {
        bld = bld.h0(Array4::from_shape_fn((n, h, k, v), |_| randn(&mut r)));
    }
    if c.do_ {
        bld = bld.do_(Array4::from_shape_fn((b, t, h, v), |_| randn(&mut r)));
    }
    if c.dht {
        bld = bld.dht(Array4::from_shape_fn((n, h, k, v), |_| randn(&mut r)));
    }
    if let Some(cu) = &c.cu {
        bld = bld.cu_seqlens(cu);
    }
    bld.build().unwrap().rounded_to(Dtype::F32).unwrap()
}

// ------------------------------------------------------------------------------------------
// Brute-force closed forms (docs/math.md §1 and §4), f64, decays as products of alphas (exact
// for -inf: no difference of cumulative gates is formed).
// ------------------------------------------------------------------------------------------

/// Closed-form solution; dg by the local form alpha_t * rowsum(S_{t-1} * W_t) with S and W from
/// their closed forms.
fn brute(p: &Problem) -> Solution {
    let d = p.dims();
    let (kd, vd) = (d.k, d.v);
    let sc = p.scale();
    let scalar = p.gate_kind() == GateKind::Scalar;
    let kg = if scalar { 1 } else { kd };
    let mut o = Array4::zeros((d.b, d.t, d.h, vd));
    let mut ht = Array4::zeros((d.n, d.h, kd, vd));
    let mut dq = Array4::zeros((d.b, d.t, d.h, kd));
    let mut dk = Array4::zeros((d.b, d.t, d.h, kd));
    let mut dv = Array4::zeros((d.b, d.t, d.h, vd));
    let mut dg = Array4::zeros((d.b, d.t, d.h, kg));
    let mut dh0 = Array4::zeros((d.n, d.h, kd, vd));
    let zero = Array4::<f64>::zeros((d.n, d.h, kd, vd));
    let h0 = p.h0().unwrap_or(&zero);
    let dht = p.dht().unwrap_or(&zero);
    let do_ = p.do_();
    for s in p.sequences() {
        let l = s.len;
        let row = |t: usize| s.start + t;
        for h in 0..d.h {
            let alpha = |t: usize, ch: usize| p.g_at(s.batch, row(t), h, ch).exp();
            // decay from "after step s0" to "after step t" = prod_{r=s0+1..=t} alpha_r; s0 = None: from h0.
            let decay = |s0: Option<usize>, t: usize, ch: usize| {
                let from = s0.map_or(0, |x| x + 1);
                (from..=t).map(|r| alpha(r, ch)).product::<f64>()
            };
            // S after step t (None: h0)
            let state = |t: Option<usize>, ch: usize, e: usize| -> f64 {
                match t {
                    None => h0[[s.state, h, ch, e]],
                    Some(t) => {
                        let mut x = decay(None, t, ch) * h0[[s.state, h, ch, e]];
                        for s1 in 0..=t {
                            x += decay(Some(s1), t, ch)
                                * p.k()[[s.batch, row(s1), h, ch]]
                                * p.v()[[s.batch, row(s1), h, e]];
                        }
                        x
                    }
                }
            };
            let w = |s1: usize, ch: usize, e: usize| -> f64 {
                let dd = do_.unwrap();
                let mut x = if l > 0 {
                    decay(Some(s1), l - 1, ch) * dht[[s.state, h, ch, e]]
                } else {
                    0.0
                };
                for t in s1..l {
                    x += sc
                        * decay(Some(s1), t, ch)
                        * p.q()[[s.batch, row(t), h, ch]]
                        * dd[[s.batch, row(t), h, e]];
                }
                x
            };
            for t in 0..l {
                for e in 0..vd {
                    o[[s.batch, row(t), h, e]] = sc
                        * (0..kd)
                            .map(|ch| p.q()[[s.batch, row(t), h, ch]] * state(Some(t), ch, e))
                            .sum::<f64>();
                }
            }
            for ch in 0..kd {
                for e in 0..vd {
                    ht[[s.state, h, ch, e]] = state(l.checked_sub(1), ch, e);
                }
            }
            if let Some(dd) = do_ {
                for t in 0..l {
                    for ch in 0..kd {
                        dq[[s.batch, row(t), h, ch]] = sc
                            * (0..vd)
                                .map(|e| dd[[s.batch, row(t), h, e]] * state(Some(t), ch, e))
                                .sum::<f64>();
                        dk[[s.batch, row(t), h, ch]] = (0..vd)
                            .map(|e| w(t, ch, e) * p.v()[[s.batch, row(t), h, e]])
                            .sum::<f64>();
                        let loc = alpha(t, ch)
                            * (0..vd)
                                .map(|e| state(t.checked_sub(1), ch, e) * w(t, ch, e))
                                .sum::<f64>();
                        dg[[s.batch, row(t), h, if scalar { 0 } else { ch }]] += loc;
                    }
                    for e in 0..vd {
                        dv[[s.batch, row(t), h, e]] = (0..kd)
                            .map(|ch| w(t, ch, e) * p.k()[[s.batch, row(t), h, ch]])
                            .sum::<f64>();
                    }
                }
                for ch in 0..kd {
                    for e in 0..vd {
                        // dh0 = exp(G_T) dhT + scale sum_t exp(G_t) q_t do_t
                        let mut x = if l > 0 { decay(None, l - 1, ch) } else { 1.0 }
                            * dht[[s.state, h, ch, e]];
                        for t in 0..l {
                            x += sc
                                * decay(None, t, ch)
                                * p.q()[[s.batch, row(t), h, ch]]
                                * dd[[s.batch, row(t), h, e]];
                        }
                        dh0[[s.state, h, ch, e]] = x;
                    }
                }
            }
        }
    }
    let grads = do_.map(|_| gla_reference::Gradients {
        dq,
        dk,
        dv,
        dg,
        dh0,
    });
    Solution { o, ht, grads }
}

/// Assert |a - b| <= units * 2^-53 * (n_acc) * M elementwise (+ a tiny absolute floor for M = 0).
fn assert_close_f64(p: &Problem, a: &Solution, b: &Solution, units: f64, what: &str) {
    let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F64)
        .with_constants(gla_reference::bounds::Constants::uniform(units));
    let m = magnitudes(p);
    for form in [DgForm::ReverseCumsum, DgForm::Local] {
        let r = compare(p, a, &m, b, &spec.clone().with_dg_form(form)).unwrap();
        // Both forms are computed by b? Only judge dg with the local magnitude when asked.
        let ok = r
            .tensors
            .iter()
            .all(|t| t.pass || (t.name == "dg" && form == DgForm::Local));
        assert!(ok, "{what} ({form:?}):\n{r}");
        if form == DgForm::ReverseCumsum {
            break;
        }
    }
}

fn configs_small() -> Vec<Cfg> {
    let mut v = Vec::new();
    let gates = [
        GateGen::LogSigmoid(16.0),
        GateGen::LogSigmoid(1.0),
        GateGen::LogSigmoid(0.1),
        GateGen::Zero,
        GateGen::Alpha(1e-12),
        GateGen::NegInfRows(1.0, 0.3),
    ];
    for (i, &g) in gates.iter().enumerate() {
        for &(t, k, vv) in &[(1usize, 1usize, 1usize), (7, 3, 2), (13, 4, 5)] {
            let mut c = Cfg::new(t, k, vv, g);
            c.seed = (i * 100 + t) as u64;
            c.h = 2;
            c.scalar = i % 2 == 1;
            c.h0 = t != 7;
            c.dht = t != 13;
            v.push(c);
        }
    }
    // varlen with empty and length-1 sequences
    for (i, &scalar) in [false, true].iter().enumerate() {
        let mut c = Cfg::new(12, 3, 4, GateGen::NegInfRows(1.0, 0.2));
        c.cu = Some(vec![0, 0, 1, 5, 5, 12]);
        c.h = 2;
        c.scalar = scalar;
        c.seed = 77 + i as u64;
        v.push(c);
    }
    // batch > 1 without h0/dht
    let mut c = Cfg::new(6, 2, 3, GateGen::LogSigmoid(1.0));
    c.b = 3;
    c.h0 = false;
    c.dht = false;
    v.push(c);
    v
}

#[test]
fn f64_recurrence_matches_closed_forms() {
    for c in configs_small() {
        let p = gen(&c);
        let bf = brute(&p);
        let rc = recurrent::backward::<f64>(&p).unwrap();
        let loc = recurrent::backward_with::<f64>(&p, DgForm::Local).unwrap();
        // The closed form's dg is the local form: compare the local algorithm with M_dg_local and
        // everything else with its own magnitude; 4 f64 units per accumulation step covers both
        // computations' rounding.
        let m = magnitudes(&p);
        let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F64)
            .with_constants(gla_reference::bounds::Constants::uniform(4.0))
            .with_dg_form(DgForm::Local);
        let r = compare(&p, &bf, &m, &loc, &spec).unwrap();
        assert!(r.pass(), "{c:?}\n{r}");
        // Reverse-cumsum dg against the closed form, judged with M_dg.
        let r = compare(
            &p,
            &bf,
            &m,
            &rc,
            &spec.clone().with_dg_form(DgForm::ReverseCumsum),
        )
        .unwrap();
        assert!(r.pass(), "{c:?}\n{r}");
        // The two runs share o, hT, dq, dk, dv, dh0 bit for bit.
        let (g1, g2) = (rc.grads.as_ref().unwrap(), loc.grads.as_ref().unwrap());
        assert_eq!(rc.o, loc.o);
        assert_eq!(rc.ht, loc.ht);
        assert_eq!(
            (&g1.dq, &g1.dk, &g1.dv, &g1.dh0),
            (&g2.dq, &g2.dk, &g2.dv, &g2.dh0)
        );
        // forward() gives the same o and hT as backward().
        let f = recurrent::forward::<f64>(&p).unwrap();
        assert_eq!((f.o, f.ht), (rc.o.clone(), rc.ht.clone()));
        assert_close_f64(&p, &bf, &loc, 4.0, "closed form vs local");
    }
}

#[test]
fn closed_form_is_not_trivially_equal() {
    // Guard against a test that cannot fail: perturbing one input must break the comparison.
    let mut c = Cfg::new(7, 3, 2, GateGen::LogSigmoid(1.0));
    c.seed = 5;
    let p = gen(&c);
    let mut bf = brute(&p);
    bf.o[[0, 3, 0, 1]] += 1e-9 * bf.o[[0, 3, 0, 1]].abs().max(1e-3);
    let rc = recurrent::backward::<f64>(&p).unwrap();
    let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F64);
    let r = compare(&p, &bf, &magnitudes(&p), &rc, &spec).unwrap();
    assert!(!r.tensor("o").unwrap().pass);
    assert_eq!(r.tensor("o").unwrap().worst_index, Some([0, 3, 0, 1]));
}

#[test]
fn dg_by_central_differences() {
    // dL/dg for L = sum(o * do) + sum(hT * dhT), f64 central differences on a smooth case.
    for scalar in [false, true] {
        let mut c = Cfg::new(6, 3, 2, GateGen::LogSigmoid(1.0));
        c.scalar = scalar;
        c.seed = 11;
        let p = gen(&c);
        let sol = recurrent::backward::<f64>(&p).unwrap();
        let dg = &sol.grads.as_ref().unwrap().dg;
        let loss = |p2: &Problem| {
            let s = recurrent::forward::<f64>(p2).unwrap();
            (&s.o * p.do_().unwrap()).sum() + (&s.ht * p.dht().unwrap()).sum()
        };
        let kg = dg.shape()[3];
        for t in 0..6 {
            for d in 0..kg {
                let hstep = 1e-6;
                let mk = |delta: f64| {
                    let mut g = p.g().clone();
                    g[[0, t, 0, d]] += delta;
                    let gates = if scalar {
                        Gates::Scalar(g.index_axis(ndarray::Axis(3), 0).to_owned())
                    } else {
                        Gates::PerChannel(g)
                    };
                    Problem::builder(p.q().clone(), p.k().clone(), p.v().clone(), gates)
                        .h0_opt(p.h0().cloned())
                        .do_opt(p.do_().cloned())
                        .dht_opt(p.dht().cloned())
                        .build()
                        .unwrap()
                };
                let fd = (loss(&mk(hstep)) - loss(&mk(-hstep))) / (2.0 * hstep);
                let x = dg[[0, t, 0, d]];
                assert!(
                    (fd - x).abs() <= 1e-7 * (1.0 + x.abs()),
                    "scalar={scalar} t={t} d={d}: fd {fd} vs {x}"
                );
            }
        }
    }
}

#[test]
fn empty_sequences_pass_states_through() {
    let mut c = Cfg::new(5, 3, 2, GateGen::LogSigmoid(1.0));
    c.cu = Some(vec![0, 0, 5, 5]);
    c.h = 2;
    let p = gen(&c);
    for s in [
        recurrent::backward::<f32>(&p).unwrap(),
        recurrent::backward::<f64>(&p).unwrap(),
    ] {
        let gr = s.grads.unwrap();
        for n in [0usize, 2] {
            for h in 0..2 {
                for d in 0..3 {
                    for e in 0..2 {
                        assert_eq!(s.ht[[n, h, d, e]], p.h0().unwrap()[[n, h, d, e]]);
                        assert_eq!(gr.dh0[[n, h, d, e]], p.dht().unwrap()[[n, h, d, e]]);
                    }
                }
            }
        }
    }
}

#[test]
fn backward_needs_do() {
    let mut c = Cfg::new(4, 2, 2, GateGen::Zero);
    c.do_ = false;
    let p = gen(&c);
    assert!(recurrent::backward::<f32>(&p).is_err());
    assert!(recurrent::backward_with::<f64>(&p, DgForm::Local).is_err());
    assert!(recurrent::forward::<f32>(&p).is_ok());
}

#[test]
fn packed_equals_per_sequence_runs() {
    let mut c = Cfg::new(11, 4, 3, GateGen::NegInfRows(1.0, 0.2));
    c.cu = Some(vec![0, 4, 4, 5, 11]);
    c.h = 2;
    let p = gen(&c);
    let packed = recurrent::backward::<f32>(&p).unwrap();
    let pg = packed.grads.as_ref().unwrap();
    for s in p.sequences() {
        let r = s.start..s.start + s.len;
        let sl4 = |a: &Array4<f64>| a.slice(ndarray::s![.., r.clone(), .., ..]).to_owned();
        let st = |a: &Array4<f64>| {
            a.slice(ndarray::s![s.state..s.state + 1, .., .., ..])
                .to_owned()
        };
        let single = Problem::builder(
            sl4(p.q()),
            sl4(p.k()),
            sl4(p.v()),
            Gates::PerChannel(sl4(p.g())),
        )
        .h0(st(p.h0().unwrap()))
        .do_(sl4(p.do_().unwrap()))
        .dht(st(p.dht().unwrap()))
        .build()
        .unwrap();
        let one = recurrent::backward::<f32>(&single).unwrap();
        let og = one.grads.as_ref().unwrap();
        assert_eq!(one.o, sl4(&packed.o));
        assert_eq!(one.ht, st(&packed.ht));
        assert_eq!(og.dq, sl4(&pg.dq));
        assert_eq!(og.dk, sl4(&pg.dk));
        assert_eq!(og.dv, sl4(&pg.dv));
        assert_eq!(og.dg, sl4(&pg.dg));
        assert_eq!(og.dh0, st(&pg.dh0));
    }
}

/// A -inf gate in every channel at step t0 makes o_t (t >= t0), hT and dq_t (t >= t0) independent
/// of every input before t0, bit for bit; and dk_s, dv_s, dh0 (s < t0) and the local dg_s
/// independent of every input at or after t0 except the gate itself... (the reset stops dS).
fn reset_case<T: gla_reference::Real>() {
    for scalar in [false, true] {
        let mut c = Cfg::new(20, 5, 4, GateGen::LogSigmoid(1.0));
        c.scalar = scalar;
        c.h = 2;
        let t0 = 9;
        let base = gen(&c);
        let mut g = base.g().clone();
        g.slice_mut(ndarray::s![.., t0, .., ..])
            .fill(f64::NEG_INFINITY);
        let mk = |q: Array4<f64>,
                  k: Array4<f64>,
                  v: Array4<f64>,
                  g: Array4<f64>,
                  h0,
                  do_: Array4<f64>,
                  dht| {
            let gates = if scalar {
                Gates::Scalar(g.index_axis(ndarray::Axis(3), 0).to_owned())
            } else {
                Gates::PerChannel(g)
            };
            Problem::builder(q, k, v, gates)
                .h0(h0)
                .do_(do_)
                .dht(dht)
                .build()
                .unwrap()
        };
        let p1 = mk(
            base.q().clone(),
            base.k().clone(),
            base.v().clone(),
            g.clone(),
            base.h0().unwrap().clone(),
            base.do_().unwrap().clone(),
            base.dht().unwrap().clone(),
        );
        // Perturb everything strictly before t0 (and h0).
        let mut r = ChaCha8Rng::seed_from_u64(99);
        let pert = |a: &Array4<f64>, r: &mut ChaCha8Rng, before: bool| {
            let mut a = a.clone();
            for ((_, t, _, _), x) in a.indexed_iter_mut() {
                if (before && t < t0) || (!before && t >= t0) {
                    *x = (*x + randn(r)) as f32 as f64;
                }
            }
            a
        };
        let mut g2 = g.clone();
        for ((_, t, _, _), x) in g2.indexed_iter_mut() {
            if t < t0 {
                *x = -(r.gen::<f64>() as f32 as f64);
            }
        }
        let h0b = base.h0().unwrap().mapv(|x| x * 2.0 + 1.0);
        let p2 = mk(
            pert(base.q(), &mut r, true),
            pert(base.k(), &mut r, true),
            pert(base.v(), &mut r, true),
            g2,
            h0b,
            base.do_().unwrap().clone(),
            base.dht().unwrap().clone(),
        );
        let (s1, s2) = (
            recurrent::backward_with::<T>(&p1, DgForm::Local).unwrap(),
            recurrent::backward_with::<T>(&p2, DgForm::Local).unwrap(),
        );
        let after = |a: &Array4<f64>| a.slice(ndarray::s![.., t0.., .., ..]).to_owned();
        let before = |a: &Array4<f64>| a.slice(ndarray::s![.., ..t0, .., ..]).to_owned();
        let bits = |a: &Array4<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&after(&s1.o)), bits(&after(&s2.o)));
        assert_eq!(bits(&s1.ht), bits(&s2.ht));
        let (g1, g2) = (s1.grads.as_ref().unwrap(), s2.grads.as_ref().unwrap());
        assert_eq!(bits(&after(&g1.dq)), bits(&after(&g2.dq)));
        assert_eq!(bits(&after(&g1.dk)), bits(&after(&g2.dk)));
        assert_eq!(bits(&after(&g1.dv)), bits(&after(&g2.dv)));
        // The local dg at the reset step is exactly 0 (alpha = 0 times a finite rowsum).
        assert!(g1
            .dg
            .slice(ndarray::s![.., t0, .., ..])
            .iter()
            .all(|&x| x == 0.0));
        // And the outputs before t0 did change (the test can fail).
        assert_ne!(bits(&before(&s1.o)), bits(&before(&s2.o)));

        // Backward direction: perturb do and dhT at/after t0; dk, dv, dq? (dq before t0 only sees
        // do before t0), dh0 and local dg before t0 are bit-identical.
        let p3 = mk(
            base.q().clone(),
            base.k().clone(),
            base.v().clone(),
            g.clone(),
            base.h0().unwrap().clone(),
            pert(base.do_().unwrap(), &mut r, false),
            base.dht().unwrap().mapv(|x| x - 3.0),
        );
        let s3 = recurrent::backward_with::<T>(&p3, DgForm::Local).unwrap();
        let g3 = s3.grads.as_ref().unwrap();
        // Steps strictly before t0: dS_{t0-1} = alpha_{t0} dS_{t0} + ... = 0 * finite + ...
        assert_eq!(bits(&before(&g1.dk)), bits(&before(&g3.dk)));
        assert_eq!(bits(&before(&g1.dv)), bits(&before(&g3.dv)));
        assert_eq!(bits(&before(&g1.dq)), bits(&before(&g3.dq)));
        assert_eq!(bits(&before(&g1.dg)), bits(&before(&g3.dg)));
        assert_eq!(bits(&g1.dh0), bits(&g3.dh0));
        assert_ne!(bits(&after(&g1.dk)), bits(&after(&g3.dk)));
    }
}

#[test]
fn neg_inf_gate_resets_exactly_f32() {
    reset_case::<f32>();
}

#[test]
fn neg_inf_gate_resets_exactly_f64() {
    reset_case::<f64>();
}

#[test]
fn causality() {
    let mut c = Cfg::new(16, 4, 3, GateGen::LogSigmoid(4.0));
    c.h = 2;
    c.dht = false;
    let p1 = gen(&c);
    let t1 = 6;
    let mut r = ChaCha8Rng::seed_from_u64(3);
    let mut pert = |a: &Array4<f64>| {
        let mut a = a.clone();
        for ((_, t, _, _), x) in a.indexed_iter_mut() {
            if t > t1 {
                *x = (*x + randn(&mut r)) as f32 as f64;
            }
        }
        a
    };
    let (q, k, v) = (pert(p1.q()), pert(p1.k()), pert(p1.v()));
    let mut g = p1.g().clone();
    for ((_, t, _, _), x) in g.indexed_iter_mut() {
        if t > t1 {
            *x = (*x * 0.5) as f32 as f64;
        }
    }
    let p2 = Problem::builder(q, k, v, Gates::PerChannel(g))
        .h0(p1.h0().unwrap().clone())
        .build()
        .unwrap();
    for (a, b) in [
        (
            recurrent::forward::<f32>(&p1).unwrap(),
            recurrent::forward::<f32>(&p2).unwrap(),
        ),
        (
            recurrent::forward::<f64>(&p1).unwrap(),
            recurrent::forward::<f64>(&p2).unwrap(),
        ),
    ] {
        let head = |x: &Array4<f64>| x.slice(ndarray::s![.., ..=t1, .., ..]).to_owned();
        assert_eq!(head(&a.o), head(&b.o));
        assert_ne!(a.o, b.o);
    }
}

#[test]
fn scalar_gates_equal_broadcast_per_channel() {
    // Scalar gates == the same gate in every channel; dg == the channel sum of the per-channel dg.
    let mut c = Cfg::new(9, 3, 4, GateGen::NegInfRows(1.0, 0.2));
    c.scalar = true;
    let ps = gen(&c);
    let gb = Array4::from_shape_fn((1, 9, 1, 3), |(b, t, h, _)| ps.g()[[b, t, h, 0]]);
    let pc = Problem::builder(
        ps.q().clone(),
        ps.k().clone(),
        ps.v().clone(),
        Gates::PerChannel(gb),
    )
    .h0(ps.h0().unwrap().clone())
    .do_(ps.do_().unwrap().clone())
    .dht(ps.dht().unwrap().clone())
    .build()
    .unwrap();
    let (a, b) = (
        recurrent::backward::<f64>(&ps).unwrap(),
        recurrent::backward::<f64>(&pc).unwrap(),
    );
    assert_eq!(a.o, b.o);
    assert_eq!(a.ht, b.ht);
    let (ga, gb) = (a.grads.unwrap(), b.grads.unwrap());
    assert_eq!(ga.dq, gb.dq);
    assert_eq!(ga.dh0, gb.dh0);
    assert_eq!(ga.dg.shape(), &[1, 9, 1, 1]);
    for t in 0..9 {
        let sum: f64 = (0..3).map(|d| gb.dg[[0, t, 0, d]]).sum();
        assert!((sum - ga.dg[[0, t, 0, 0]]).abs() <= 1e-12 * (1.0 + sum.abs()));
    }
    let _ = Array3::<f64>::zeros((1, 1, 1));
}

// ------------------------------------------------------------------------------------------
// f32 against f64 within the calibrated bound
// ------------------------------------------------------------------------------------------

/// The ratio in units of `u_acc (n_acc + lambda) M` (the quantity c bounds).
fn c_measured(t: &gla_reference::TensorReport) -> f64 {
    t.ratio * (t.u_stages + t.u_acc) / (t.u_acc * (t.n_acc + t.lambda))
}

fn judge_f32(p: &Problem, form: DgForm) -> Report {
    let exact = recurrent::backward_with::<f64>(p, DgForm::Local).unwrap();
    let cand = recurrent::backward_with::<f32>(p, form).unwrap();
    let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F32).with_dg_form(form);
    compare(p, &exact, &magnitudes(p), &cand, &spec).unwrap()
}

fn regimes() -> Vec<(&'static str, GateGen)> {
    vec![
        ("tau64", GateGen::LogSigmoid(64.0)),
        ("tau16", GateGen::LogSigmoid(16.0)),
        ("tau1", GateGen::LogSigmoid(1.0)),
        ("tau0.1", GateGen::LogSigmoid(0.1)),
        ("g=0", GateGen::Zero),
        ("alpha=1e-12", GateGen::Alpha(1e-12)),
        ("-inf rows", GateGen::NegInfRows(16.0, 0.05)),
    ]
}

#[test]
fn f32_within_calibrated_bound() {
    let mut cases = 0;
    for (name, gate) in regimes() {
        for &(t, k, v, scalar) in &[
            (1usize, 1usize, 1usize, false),
            (17, 8, 4, true),
            (100, 16, 16, false),
        ] {
            for form in [DgForm::ReverseCumsum, DgForm::Local] {
                let mut c = Cfg::new(t, k, v, gate);
                c.h = 2;
                c.scalar = scalar;
                c.seed = t as u64 * 7 + 1;
                let p = gen(&c);
                let r = judge_f32(&p, form);
                assert!(
                    r.pass(),
                    "{name} T={t} K={k} V={v} scalar={scalar} {form:?}\n{r}"
                );
                cases += 1;
            }
        }
    }
    let mut c = Cfg::new(40, 8, 8, GateGen::NegInfRows(1.0, 0.1));
    c.cu = Some(vec![0, 0, 1, 20, 20, 40]);
    c.h = 3;
    let p = gen(&c);
    for form in [DgForm::ReverseCumsum, DgForm::Local] {
        let r = judge_f32(&p, form);
        assert!(r.pass(), "varlen {form:?}\n{r}");
    }
    assert_eq!(cases, 42);
}

#[test]
fn f32_report_detects_a_wrong_candidate() {
    // The bound is not vacuous: an f32 run on a perturbed input (one k element off by 1e-2
    // relative) fails.
    let mut c = Cfg::new(64, 16, 16, GateGen::LogSigmoid(16.0));
    c.seed = 4;
    let p = gen(&c);
    let mut k = p.k().clone();
    k[[0, 10, 0, 3]] *= 1.0 + 1e-2;
    let p2 = Problem::builder(p.q().clone(), k, p.v().clone(), p.gates())
        .h0(p.h0().unwrap().clone())
        .do_(p.do_().unwrap().clone())
        .dht(p.dht().unwrap().clone())
        .build()
        .unwrap();
    let exact = recurrent::backward::<f64>(&p).unwrap();
    let cand = recurrent::backward::<f32>(&p2).unwrap();
    let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F32);
    let r = compare(&p, &exact, &magnitudes(&p), &cand, &spec).unwrap();
    assert!(!r.tensor("o").unwrap().pass, "{r}");
    assert!(!r.tensor("ht").unwrap().pass, "{r}");
}

/// Calibration sweep for the recurrent f32 constants (src/bounds/constants.rs). Prints, per
/// output, the max over cases of err / (u_acc (n_acc + lambda) M) and the case attaining it.
///
/// cargo test -p gla-reference --release --test recurrent -- --ignored --nocapture calibrate
#[test]
#[ignore = "calibration sweep that produced the constants in bounds/constants.rs; run on demand"]
fn calibrate_recurrent_f32() {
    let names = ["o", "ht", "dq", "dk", "dv", "dh0", "dg", "dg_local"];
    // best[i][bucket]: bucket 0 = n_acc < 40, 1 = 40..400, 2 = >= 400
    let mut best: Vec<Vec<(f64, String)>> = vec![vec![(0.0, String::new()); 3]; names.len()];
    let sizes: &[(usize, usize, usize)] = &[
        (1, 1, 1),
        (2, 1, 1),
        (3, 2, 1),
        (5, 3, 2),
        (15, 4, 4),
        (16, 16, 16),
        (63, 32, 32),
        (65, 64, 64),
        (100, 8, 128),
        (1000, 64, 64),
        (4096, 16, 16),
        (2048, 128, 128),
    ];
    let small_seeds: u64 = std::env::var("CAL_SMALL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let seeds: u64 = std::env::var("CAL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut ncases = 0usize;
    for (rname, gate) in regimes() {
        for &(t, k, v) in sizes {
            for scalar in [false, true] {
                let ns = if t * k * v <= 200 {
                    small_seeds
                } else if t * k * v > 2_000_000 {
                    1
                } else {
                    seeds
                };
                for seed in 0..ns {
                    let mut c = Cfg::new(t, k, v, gate);
                    c.scalar = scalar;
                    c.h = if t * k * v > 1_000_000 { 1 } else { 2 };
                    c.seed = seed * 1000 + t as u64;
                    c.h0 = seed % 2 == 0;
                    c.dht = seed % 3 != 1;
                    let p = gen(&c);
                    let exact = recurrent::backward_with::<f64>(&p, DgForm::Local).unwrap();
                    let mags = magnitudes(&p);
                    ncases += 1;
                    for form in [DgForm::ReverseCumsum, DgForm::Local] {
                        let cand = recurrent::backward_with::<f32>(&p, form).unwrap();
                        let spec =
                            BoundSpec::new(Algorithm::Recurrent, Dtype::F32).with_dg_form(form);
                        let r = compare(&p, &exact, &mags, &cand, &spec).unwrap();
                        for tr in &r.tensors {
                            let nm = if tr.name == "dg" && form == DgForm::Local {
                                "dg_local"
                            } else {
                                tr.name.as_str()
                            };
                            if tr.name != "dg" && form == DgForm::Local {
                                continue;
                            }
                            let i = names.iter().position(|x| *x == nm).unwrap();
                            let cm = c_measured(tr);
                            assert!(tr.candidate_nonfinite == 0 && tr.exact_nonfinite == 0);
                            let bk = if tr.n_acc < 40.0 {
                                0
                            } else if tr.n_acc < 400.0 {
                                1
                            } else {
                                2
                            };
                            if cm > best[i][bk].0 {
                                best[i][bk] = (
                                    cm,
                                    format!("{rname} T={t} K={k} V={v} scalar={scalar} seed={seed} n_acc={}", tr.n_acc),
                                );
                            }
                        }
                    }
                }
            }
        }
    }
    println!("\n{ncases} problems; max c_measured = err / (u_f32 (n_acc + lambda) M) per output and n_acc bucket");
    for (i, n) in names.iter().enumerate() {
        for (bk, label) in ["n_acc<40", "40<=n_acc<400", "n_acc>=400"]
            .iter()
            .enumerate()
        {
            println!(
                "{n:<9} {label:<14} {:.4}  ({})",
                best[i][bk].0, best[i][bk].1
            );
        }
    }
}

#[test]
fn compare_edge_cases() {
    // q_t = 0 at one step: M_o_t = 0, so o_t must be exactly 0 (eta is ~1e-38 * products).
    let mut c = Cfg::new(8, 4, 3, GateGen::LogSigmoid(1.0));
    c.seed = 21;
    let p0 = gen(&c);
    let mut q = p0.q().clone();
    q.slice_mut(ndarray::s![0, 5, 0, ..]).fill(0.0);
    let p = Problem::builder(q, p0.k().clone(), p0.v().clone(), p0.gates())
        .h0(p0.h0().unwrap().clone())
        .do_(p0.do_().unwrap().clone())
        .dht(p0.dht().unwrap().clone())
        .build()
        .unwrap();
    let m = magnitudes(&p);
    assert!(m
        .o
        .slice(ndarray::s![0, 5, 0, ..])
        .iter()
        .all(|&x| x == 0.0));
    let exact = recurrent::backward::<f64>(&p).unwrap();
    let mut cand = recurrent::backward::<f32>(&p).unwrap();
    let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F32);
    assert!(compare(&p, &exact, &m, &cand, &spec).unwrap().pass());
    cand.o[[0, 5, 0, 2]] = 1e-20;
    let r = compare(&p, &exact, &m, &cand, &spec).unwrap();
    let o = r.tensor("o").unwrap();
    assert!(
        !o.pass && o.ratio > 1e10 && o.zero_magnitude_violations == 1,
        "{r}"
    );
    assert_eq!(o.worst_index, Some([0, 5, 0, 2]));
    // Non-finite candidate where the exact value is finite fails whatever the ratio.
    let mut cand2 = recurrent::backward::<f32>(&p).unwrap();
    cand2.grads.as_mut().unwrap().dg[[0, 1, 0, 1]] = f64::INFINITY;
    let r = compare(&p, &exact, &m, &cand2, &spec).unwrap();
    let dg = r.tensor("dg").unwrap();
    assert!(!dg.pass && dg.candidate_nonfinite == 1 && dg.first_nonfinite == Some([0, 1, 0, 1]));
    assert!(dg.ratio <= dg.bound, "the finite elements are fine: {r}");
    assert!(dg.dg.is_some());
    assert!(r.to_string().contains("FAIL"));
    // Candidate with gradients, exact without: typed error. Magnitudes without backward: error.
    let fwd = recurrent::forward::<f64>(&p).unwrap();
    assert!(compare(&p, &fwd, &m, &cand, &spec).is_err());
    let pf = p.with_seeds(None, None).unwrap();
    assert!(compare(&p, &exact, &magnitudes(&pf), &cand, &spec).is_err());
    // Shape mismatch in a gradient: typed Shape error naming the tensor.
    let mut bad = recurrent::backward::<f32>(&p).unwrap();
    bad.grads.as_mut().unwrap().dk = Array4::zeros((1, 8, 1, 5));
    match compare(&p, &exact, &m, &bad, &spec) {
        Err(gla_reference::GlaError::Shape { tensor, .. }) => assert!(tensor.contains("dk")),
        other => panic!("expected a shape error, got {other:?}"),
    }
    // Chunk size 0 is an options error.
    assert!(compare(
        &p,
        &exact,
        &m,
        &cand,
        &BoundSpec::new(Algorithm::Chunked { chunk: 0 }, Dtype::F32)
    )
    .is_err());
    // A forward-only candidate is judged on o and hT only.
    let r = compare(
        &p,
        &exact,
        &m,
        &recurrent::forward::<f32>(&p).unwrap(),
        &spec,
    )
    .unwrap();
    assert_eq!(
        r.tensors
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        vec!["o", "ht"]
    );
}

#[test]
fn magnitudes_dominate_values() {
    // |x| <= M_x for every output and both dg forms (f64; tiny relative slack for rounding).
    for c in configs_small() {
        let p = gen(&c);
        let m = magnitudes(&p);
        let rc = recurrent::backward::<f64>(&p).unwrap();
        let loc = recurrent::backward_with::<f64>(&p, DgForm::Local).unwrap();
        for name in ["o", "ht", "dq", "dk", "dv", "dh0", "dg"] {
            let x = rc.tensor(name).unwrap();
            let mx = m.tensor(name).unwrap();
            assert!(
                x.iter()
                    .zip(mx.iter())
                    .all(|(x, m)| x.abs() <= m * (1.0 + 1e-12)),
                "{name} {c:?}"
            );
        }
        let mx = m.dg_local.as_ref().unwrap();
        let x = &loc.grads.as_ref().unwrap().dg;
        assert!(
            x.iter()
                .zip(mx.iter())
                .all(|(x, m)| x.abs() <= m * (1.0 + 1e-12)),
            "dg_local {c:?}"
        );
        // M_dg_local <= M_dg (the reverse cumsum's magnitude dominates the condition magnitude).
        let md = m.dg.as_ref().unwrap();
        assert!(
            mx.iter()
                .zip(md.iter())
                .all(|(a, b)| *a <= b * (1.0 + 1e-12)),
            "{c:?}"
        );
    }
}

#[test]
fn one_pass_truth_and_magnitudes_are_bitwise_the_separate_passes() {
    // `solve_with_magnitudes` (one pass, results written in place) against the f64 recurrence
    // and `magnitudes` run separately: every element bit for bit, both dg forms, forward only,
    // varlen with empty sequences, scalar gates, -inf rows, no `do`, a longer sequence (several
    // local-form checkpoint segments).
    let bits = |a: &Array4<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let mut cfgs = configs_small();
    let mut long = Cfg::new(300, 5, 3, GateGen::NegInfRows(1.0, 0.05));
    long.b = 2;
    long.h = 3;
    cfgs.push(long);
    let mut no_do = Cfg::new(9, 3, 2, GateGen::LogSigmoid(1.0));
    no_do.do_ = false;
    no_do.dht = false;
    cfgs.push(no_do);
    for c in cfgs {
        let p = gen(&c);
        let m = magnitudes(&p);
        let mut runs = vec![(false, DgForm::Local, recurrent::forward::<f64>(&p).unwrap())];
        if p.has_backward() {
            for form in [DgForm::ReverseCumsum, DgForm::Local] {
                runs.push((
                    true,
                    form,
                    recurrent::backward_with::<f64>(&p, form).unwrap(),
                ));
            }
        } else {
            assert!(solve_with_magnitudes(&p, true, DgForm::Local).is_err());
        }
        for (backward, form, want) in runs {
            let (s, mm) = solve_with_magnitudes(&p, backward, form).unwrap();
            for name in ["o", "ht", "dq", "dk", "dv", "dg", "dh0"] {
                let (a, b) = (s.tensor(name), want.tensor(name));
                assert_eq!(a.map(bits), b.map(bits), "{name} {backward} {form:?} {c:?}");
            }
            for name in ["o", "ht", "dq", "dk", "dv", "dg", "dg_local", "dh0"] {
                let (a, b) = (mm.tensor(name), m.tensor(name));
                assert_eq!(a.map(bits), b.map(bits), "m_{name} {c:?}");
            }
        }
    }
}
