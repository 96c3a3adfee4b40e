//! Problem generators shared by the chunked and parallel form tests.
#![allow(dead_code)]

use gla_reference::bounds::Report;
use gla_reference::{Dtype, Gates, Problem};
use ndarray::{Array3, Array4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn deep() -> bool {
    std::env::var("GLA_DEEP").map(|v| v == "1").unwrap_or(false)
}

pub fn randn(r: &mut ChaCha8Rng) -> f64 {
    let u1: f64 = r.gen::<f64>().max(1e-300);
    let u2: f64 = r.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

pub fn logsigmoid(x: f64) -> f64 {
    if x < 0.0 {
        x - (1.0 + x.exp()).ln()
    } else {
        -(1.0 + (-x).exp()).ln()
    }
}

/// Gate generator: (rng, t, d) -> g.
pub type GateFn<'a> = &'a dyn Fn(&mut ChaCha8Rng, usize, usize) -> f64;
/// An owned gate generator (calibration regimes).
pub type BoxedGate = Box<dyn Fn(&mut ChaCha8Rng, usize, usize) -> f64>;
/// A named channel selector for -inf placement.
pub type ChanSel = (&'static str, fn(usize) -> bool);

#[derive(Clone)]
pub struct Shape {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub k: usize,
    pub v: usize,
    pub scalar: bool,
    pub cu: Option<Vec<i64>>,
    pub h0: bool,
    pub dht: bool,
}

pub fn shape(t: usize, k: usize, v: usize) -> Shape {
    Shape {
        b: 1,
        t,
        h: 2,
        k,
        v,
        scalar: false,
        cu: None,
        h0: true,
        dht: true,
    }
}

/// Signed randn q, k, v, h0, do, dhT; gates from `gate`; rounded to f32 (the candidate's input
/// format), so the truth consumes exactly the candidate's inputs.
pub fn make(seed: u64, s: &Shape, gate: GateFn) -> Problem {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let (b, t, h, k, v) = (s.b, s.t, s.h, s.k, s.v);
    let q = Array4::from_shape_simple_fn((b, t, h, k), || randn(&mut r));
    let kk = Array4::from_shape_simple_fn((b, t, h, k), || randn(&mut r));
    let vv = Array4::from_shape_simple_fn((b, t, h, v), || randn(&mut r));
    let do_ = Array4::from_shape_simple_fn((b, t, h, v), || randn(&mut r));
    let n = s.cu.as_ref().map_or(b, |c| c.len() - 1);
    let h0 = Array4::from_shape_simple_fn((n, h, k, v), || randn(&mut r));
    let dht = Array4::from_shape_simple_fn((n, h, k, v), || randn(&mut r));
    let gates = if s.scalar {
        Gates::Scalar(Array3::from_shape_fn((b, t, h), |(_, ti, _)| {
            gate(&mut r, ti, 0)
        }))
    } else {
        Gates::PerChannel(Array4::from_shape_fn((b, t, h, k), |(_, ti, _, d)| {
            gate(&mut r, ti, d)
        }))
    };
    let mut bld = Problem::builder(q, kk, vv, gates).do_(do_);
    if s.h0 {
        bld = bld.h0(h0);
    }
    if s.dht {
        bld = bld.dht(dht);
    }
    if let Some(cu) = &s.cu {
        bld = bld.cu_seqlens(cu);
    }
    bld.build().unwrap().rounded_to(Dtype::F32).unwrap()
}

/// `c_needed = (ratio * (us + ua) - us) / (ua * (n_acc + lambda))`: the smallest c passing.
pub fn c_needed(rep: &Report) -> Vec<(String, f64)> {
    rep.tensors
        .iter()
        .map(|t| {
            let need = ((t.ratio * (t.u_stages + t.u_acc) - t.u_stages)
                / (t.u_acc * (t.n_acc + t.lambda)))
                .max(0.0);
            (t.name.clone(), need)
        })
        .collect()
}

/// Value regimes of the adversarial sweep (as in gla-proptests): signed normal; wide range
/// (sign * 2^U(-12, 12)); cancellation (rows in pairs, k equal, v and do opposite plus 2^-10 noise).
#[derive(Clone, Copy, Debug)]
pub enum Values {
    Normal,
    Wide,
    Cancel,
}

pub fn adv_value(r: &mut ChaCha8Rng, vals: Values) -> f64 {
    match vals {
        Values::Wide => {
            let s = if r.gen::<bool>() { 1.0 } else { -1.0 };
            s * 2f64.powf(r.gen_range(-12.0..12.0))
        }
        _ => randn(r),
    }
}

/// A small adversarial problem: gates from `gate` (then isolated -300 / -inf rows when asked),
/// values from `vals`, rounded to f32.
#[allow(clippy::too_many_arguments)]
pub fn adv_problem(
    seed: u64,
    (t, k, v): (usize, usize, usize),
    scalar: bool,
    states: (bool, bool),
    vals: Values,
    gate: &dyn Fn(&mut ChaCha8Rng) -> f64,
    special: Option<f64>,
) -> Problem {
    use ndarray::Array3;
    let mut r = <ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let h = 1;
    let fill = |w: usize, sign: Option<f64>, r: &mut ChaCha8Rng| {
        let mut a = Array4::from_shape_fn((1, t, h, w), |_| adv_value(r, vals));
        if let (Values::Cancel, Some(sg)) = (vals, sign) {
            for ti in (1..t).step_by(2) {
                for d in 0..w {
                    a[[0, ti, 0, d]] = sg * a[[0, ti - 1, 0, d]] + randn(r) * 2f64.powi(-10);
                }
            }
        }
        a
    };
    let q = fill(k, None, &mut r);
    let kk = fill(k, Some(1.0), &mut r);
    let vv = fill(v, Some(-1.0), &mut r);
    let do_ = fill(v, Some(-1.0), &mut r);
    let kg = if scalar { 1 } else { k };
    let mut g = Array4::from_shape_fn((1, t, h, kg), |_| gate(&mut r));
    if let Some(x) = special {
        let cands = [0usize, 3, 4, 15, 16, 17, 63, 64, r.gen_range(0..t)];
        for _ in 0..r.gen_range(1..=3) {
            let row = cands[r.gen_range(0..cands.len())].min(t - 1);
            let all = r.gen::<bool>();
            let ch = r.gen_range(0..kg);
            for d in 0..kg {
                if all || d == ch {
                    g[[0, row, 0, d]] = x;
                }
            }
        }
    }
    let gates = if scalar {
        Gates::Scalar(Array3::from_shape_fn((1, t, h), |(_, ti, hi)| {
            g[[0, ti, hi, 0]]
        }))
    } else {
        Gates::PerChannel(g)
    };
    let mut b = Problem::builder(q, kk, vv, gates).do_(do_);
    if states.0 {
        b = b.h0(Array4::from_shape_fn((1, h, k, v), |_| randn(&mut r)));
    }
    if states.1 {
        b = b.dht(Array4::from_shape_fn((1, h, k, v), |_| randn(&mut r)));
    }
    b.build().unwrap().rounded_to(Dtype::F32).unwrap()
}

/// One problem of the adversarial sweep.
pub struct AdvCase {
    /// Gate regime name.
    pub gate: &'static str,
    pub vals: Values,
    pub seed: u64,
    /// (T, K, V)
    pub dims: (usize, usize, usize),
    pub scalar: bool,
    pub p: Problem,
}

impl AdvCase {
    /// "gate-regime Values".
    pub fn key(&self) -> String {
        format!("{} {:?}", self.gate, self.vals)
    }
}

/// The adversarial sweep shared by the chunked and parallel calibrations: `CAL_SEEDS` (default
/// 200) small random problems (T in 1..80, K in 1..16, V in 1..8, H = 1, 1/4 scalar gates, h0 /
/// dhT each present or not) per (gate regime, value regime), in a fixed order; `f` gets each.
pub fn adversarial_cases(mut f: impl FnMut(&AdvCase)) {
    let seeds = cal_seeds();
    type G = Box<dyn Fn(&mut ChaCha8Rng) -> f64>;
    let gates: Vec<(&str, G, Option<f64>)> = vec![
        (
            "isolated -300",
            Box::new(|r| logsigmoid(randn(r)) / 16.0),
            Some(-300.0),
        ),
        (
            "isolated -inf",
            Box::new(|r| logsigmoid(randn(r)) / 16.0),
            Some(f64::NEG_INFINITY),
        ),
        (
            "mixed extremes",
            Box::new(|r| match r.gen_range(0..7) {
                0 => 0.0,
                1 => logsigmoid(randn(r)) / 16.0,
                2 => -1.0,
                3 => -30.0,
                4 => -300.0,
                5 => (1e-12f64).ln(),
                _ => f64::NEG_INFINITY,
            }),
            None,
        ),
        (
            "strong (to -30)",
            Box::new(|r| (logsigmoid(randn(r)) / 0.1).max(-30.0)),
            None,
        ),
        (
            "tiny alpha ~1e-12",
            Box::new(|r| (1e-12 * r.gen_range(0.5..2.0f64)).ln()),
            None,
        ),
        ("-U(6,12)", Box::new(|r| -r.gen_range(6.0..12.0)), None),
    ];
    for (gi, (gname, gate, special)) in gates.iter().enumerate() {
        for (vi, vals) in [Values::Normal, Values::Wide, Values::Cancel]
            .into_iter()
            .enumerate()
        {
            for seed in 0..seeds {
                let mut r = ChaCha8Rng::seed_from_u64(seed * 1000 + gi as u64 * 10 + vi as u64);
                let dims = (r.gen_range(1..=80), r.gen_range(1..=16), r.gen_range(1..=8));
                let scalar = r.gen_range(0..4) == 0;
                let states = (r.gen::<bool>(), r.gen::<bool>());
                let p = adv_problem(r.gen(), dims, scalar, states, vals, gate.as_ref(), *special);
                f(&AdvCase {
                    gate: gname,
                    vals,
                    seed,
                    dims,
                    scalar,
                    p,
                });
            }
        }
    }
}

/// The number of seeds per regime pair of [`adversarial_cases`] (`CAL_SEEDS`, default 200).
pub fn cal_seeds() -> u64 {
    std::env::var("CAL_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200)
}
