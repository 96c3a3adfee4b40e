//! Problem generators shared by the chunked and parallel form tests: thin wrappers over
//! gla-fixtures' generator (`gla_fixtures::gen`) with the reference tests' pinned streams
//! (`Stream::REFERENCE` for the form tests, `Stream::CALIBRATION` for the adversarial sweep), so
//! the problems (and the fingerprints and calibration evidence taken from them) stay the same.
#![allow(dead_code)]

use gla_fixtures::gen::{
    seq_lens, BoxMuller, GateRegime, GateSource, LogSigmoid, ProblemSpec, Stream, ValueRegime,
};
use gla_reference::bounds::Report;
use gla_reference::{Dtype, GateKind, Problem};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub fn deep() -> bool {
    std::env::var("GLA_DEEP").map(|v| v == "1").unwrap_or(false)
}

/// N(0, 1) of the reference tests' stream ([`BoxMuller::ClampedU`]).
pub fn randn(r: &mut ChaCha8Rng) -> f64 {
    BoxMuller::ClampedU.sample(r)
}

/// logsigmoid in the reference tests' arithmetic ([`LogSigmoid::Ln`]).
pub fn logsigmoid(x: f64) -> f64 {
    LogSigmoid::Ln.eval(x)
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
    let spec = ProblemSpec {
        b: s.b,
        t: s.t,
        h: s.h,
        k: s.k,
        v: s.v,
        gate_kind: if s.scalar {
            GateKind::Scalar
        } else {
            GateKind::PerChannel
        },
        gates: GateRegime::Zero, // unused: the gates come from `gate`
        values: ValueRegime::SignedNormal,
        h0: s.h0,
        dht: s.dht,
        seq_lens: s.cu.as_deref().map(seq_lens),
        scale: None,
        grid: Dtype::F32,
        seed,
    };
    let mut each = |r: &mut ChaCha8Rng, [_, t, _, d]: [usize; 4]| gate(r, t, d);
    spec.build_with(&Stream::REFERENCE, GateSource::Each(&mut each))
        .unwrap()
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

/// A small adversarial problem of the calibration stream (`Stream::CALIBRATION`): B = H = 1,
/// gates of `gates` (with its isolated -300 / -inf rows), values of `vals`, rounded to f32.
pub fn adv_problem(
    seed: u64,
    (t, k, v): (usize, usize, usize),
    scalar: bool,
    (h0, dht): (bool, bool),
    vals: ValueRegime,
    gates: GateRegime,
) -> Problem {
    let spec = ProblemSpec {
        b: 1,
        t,
        h: 1,
        k,
        v,
        gate_kind: if scalar {
            GateKind::Scalar
        } else {
            GateKind::PerChannel
        },
        gates,
        values: vals,
        h0,
        dht,
        seq_lens: None,
        scale: None,
        grid: Dtype::F32,
        seed,
    };
    spec.build_with(&Stream::CALIBRATION, GateSource::Regime)
        .unwrap()
}

/// One problem of the adversarial sweep.
pub struct AdvCase {
    /// Gate regime name.
    pub gate: &'static str,
    pub vals: ValueRegime,
    pub seed: u64,
    /// (T, K, V)
    pub dims: (usize, usize, usize),
    pub scalar: bool,
    pub p: Problem,
}

impl AdvCase {
    /// "gate-regime values" (e.g. `isolated -inf Wide`: the names the calibration evidence uses).
    pub fn key(&self) -> String {
        let vals = match self.vals {
            ValueRegime::SignedNormal => "Normal",
            ValueRegime::WideRange => "Wide",
            ValueRegime::Cancellation => "Cancel",
            other => unreachable!("not in the adversarial sweep: {other:?}"),
        };
        format!("{} {vals}", self.gate)
    }
}

/// The adversarial sweep shared by the chunked and parallel calibrations: `CAL_SEEDS` (default
/// 200) small random problems (T in 1..80, K in 1..16, V in 1..8, H = 1, 1/4 scalar gates, h0 /
/// dhT each present or not) per (gate regime, value regime), in a fixed order; `f` gets each.
pub fn adversarial_cases(mut f: impl FnMut(&AdvCase)) {
    let seeds = cal_seeds();
    let gates = [
        ("isolated -300", GateRegime::IsolatedMinus300),
        ("isolated -inf", GateRegime::IsolatedNegInf),
        ("mixed extremes", GateRegime::MixedExtremes),
        ("strong (to -30)", GateRegime::Strong),
        ("tiny alpha ~1e-12", GateRegime::TinyDecay),
        ("-U(6,12)", GateRegime::CrossF32ExpLimitSubChunk),
    ];
    let values = [
        ValueRegime::SignedNormal,
        ValueRegime::WideRange,
        ValueRegime::Cancellation,
    ];
    for (gi, (gname, regime)) in gates.into_iter().enumerate() {
        for (vi, vals) in values.into_iter().enumerate() {
            for seed in 0..seeds {
                let mut r = ChaCha8Rng::seed_from_u64(seed * 1000 + gi as u64 * 10 + vi as u64);
                let dims = (r.gen_range(1..=80), r.gen_range(1..=16), r.gen_range(1..=8));
                let scalar = r.gen_range(0..4) == 0;
                let states = (r.gen::<bool>(), r.gen::<bool>());
                let p = adv_problem(r.gen(), dims, scalar, states, vals, regime);
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

/// Gates logsigmoid(N(0, 1)) / `tau`: mild for large `tau`, strong for small.
pub fn logsig(tau: f64) -> impl Fn(&mut ChaCha8Rng, usize, usize) -> f64 {
    move |r, _, _| logsigmoid(randn(r)) / tau
}

/// Gates logsigmoid(N(0, 1)) / `tau`, with -inf at the given rows (per channel: only in channels
/// where `chan(d)`).
pub fn with_resets(
    rows: Vec<usize>,
    chan: fn(usize) -> bool,
    tau: f64,
) -> impl Fn(&mut ChaCha8Rng, usize, usize) -> f64 {
    move |r, t, d| {
        let x = logsigmoid(randn(r)) / tau;
        if rows.contains(&t) && chan(d) {
            f64::NEG_INFINITY
        } else {
            x
        }
    }
}

/// The gate regimes of the chunked and parallel forms' calibration sweeps (`calibrate`), which
/// produced the constants in `bounds/constants.rs`.
pub fn calibration_regimes() -> Vec<(&'static str, BoxedGate)> {
    let regimes: Vec<(&'static str, BoxedGate)> = vec![
        ("tau64", Box::new(logsig(64.0))),
        ("tau16", Box::new(logsig(16.0))),
        ("tau1", Box::new(logsig(1.0))),
        ("tau0.1", Box::new(logsig(0.1))),
        (
            "U(-30,0)",
            Box::new(|r: &mut ChaCha8Rng, _, _| -30.0 * r.gen::<f64>()),
        ),
        ("g=0", Box::new(|_: &mut ChaCha8Rng, _, _| 0.0)),
        (
            "alpha=1e-12",
            Box::new(|_: &mut ChaCha8Rng, _, _| (1e-12f64).ln()),
        ),
        (
            "-inf",
            Box::new(with_resets(
                vec![0, 31, 32, 45, 100, 200],
                |d| d % 2 == 0,
                1.0,
            )),
        ),
        (
            "isolated -300",
            Box::new(|r: &mut ChaCha8Rng, t: usize, _| {
                if [0usize, 15, 16, 17, 63, 64, 100, 130, 131].contains(&t) {
                    -300.0
                } else {
                    logsigmoid(randn(r)) / 8.0
                }
            }),
        ),
        (
            "-88 every 7",
            Box::new(|r: &mut ChaCha8Rng, t: usize, _| {
                if t % 7 == 3 {
                    -88.0
                } else {
                    logsigmoid(randn(r)) / 4.0
                }
            }),
        ),
    ];
    regimes
}
