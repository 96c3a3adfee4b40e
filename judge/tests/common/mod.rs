//! Shared helpers of the verifier-power tests: a deterministic problem generator covering the
//! property suite's gate and value regimes (every value exact in bf16 and fp16, so one oracle
//! run serves every candidate), and the honest candidates' verdicts on a case.

#![allow(dead_code)]

use gla_fixtures::gen::{both_exact, log_exact, Gen, Temperature};
use gla_judge::mutants::bench::{honest_candidates, Case};
use gla_judge::Truth;
use gla_reference::{Gates, Problem};
use ndarray::{Array3, Array4};

/// Gate regimes (those of `gla_proptests::strategies::GateRegime`).
pub const GATE_REGIMES: [&str; 10] = [
    "zero",
    "mild",
    "moderate",
    "strong",
    "tiny",
    "neg-inf",
    "minus-300",
    "mixed",
    "cross-chunk",
    "cross-sub",
];
/// Value regimes (those of `gla_proptests::strategies::ValueRegime`).
pub const VALUE_REGIMES: [&str; 5] = ["normal", "positive", "wide", "zero-rows", "cancel"];

fn pick<T: Copy>(r: &mut Gen, xs: &[T]) -> T {
    xs[(r.next_u32() as usize) % xs.len()]
}

fn value(r: &mut Gen, regime: &str) -> f64 {
    match regime {
        "positive" => both_exact(r.uniform()),
        "wide" => {
            let s = if r.next_u32() % 2 == 0 { 1.0 } else { -1.0 };
            both_exact(s * 2f64.powf(24.0 * r.uniform() - 12.0))
        }
        _ => r.normal(),
    }
}

fn gate(r: &mut Gen, regime: &str) -> f64 {
    match regime {
        "zero" => 0.0,
        "mild" | "neg-inf" | "minus-300" => r.gate(Temperature::MILD),
        "moderate" => r.gate(Temperature::UNIT),
        "strong" => r.gate(Temperature::STRONG),
        "tiny" => log_exact(1e-12 * (0.5 + 1.5 * r.uniform())),
        "mixed" => match r.next_u32() % 7 {
            0 => 0.0,
            1 => r.gate(Temperature::MILD),
            2 => -1.0,
            3 => -30.0,
            4 => -300.0,
            5 => log_exact(1e-12),
            _ => f64::NEG_INFINITY,
        },
        "cross-chunk" => both_exact(-(1.6 + 3.4 * r.uniform())),
        _ => both_exact(-(6.0 + 6.0 * r.uniform())),
    }
}

/// A drawn problem: sizes, layout, gate and value regimes from the seed (with `do`, so every
/// candidate runs its backward).
pub fn draw(seed: u64) -> (String, Problem) {
    let mut r = Gen::new(0x9e37_79b9 ^ seed);
    let gates = pick(&mut r, &GATE_REGIMES);
    let values = pick(&mut r, &VALUE_REGIMES);
    let t = pick(
        &mut r,
        &[1usize, 2, 5, 15, 16, 17, 33, 63, 64, 65, 79, 100, 130],
    );
    let k = pick(&mut r, &[1usize, 2, 3, 4, 8, 12, 16, 24]);
    let v = pick(&mut r, &[1usize, 2, 5, 8, 16, 24]);
    let h = pick(&mut r, &[1usize, 2]);
    let varlen = t >= 5 && r.next_u32() % 5 == 0;
    let b = if varlen {
        1
    } else {
        pick(&mut r, &[1usize, 2])
    };
    let scalar = r.next_u32() % 4 == 0;
    let cu: Option<Vec<i64>> = varlen.then(|| {
        let mut cuts: Vec<i64> = (0..pick(&mut r, &[1usize, 2, 3, 4]))
            .map(|_| (r.next_u32() as usize % (t + 1)) as i64)
            .collect();
        cuts.push(0);
        cuts.push(t as i64);
        cuts.sort();
        cuts
    });
    let n = cu.as_ref().map_or(b, |c| c.len() - 1);
    let fill = |r: &mut Gen, shape: (usize, usize, usize, usize), sign: Option<f64>| {
        let mut a = Array4::from_shape_fn(shape, |_| value(r, values));
        if values == "zero-rows" {
            for bb in 0..shape.0 {
                for tt in 0..shape.1 {
                    for hh in 0..shape.2 {
                        if r.next_u32() % 3 == 0 {
                            for x in 0..shape.3 {
                                a[[bb, tt, hh, x]] = 0.0;
                            }
                        }
                    }
                }
            }
        }
        if let (Some(sign), "cancel") = (sign, values) {
            for bb in 0..shape.0 {
                for tt in (1..shape.1).step_by(2) {
                    for hh in 0..shape.2 {
                        for x in 0..shape.3 {
                            let noise = if sign < 0.0 { r.normal() / 1024.0 } else { 0.0 };
                            a[[bb, tt, hh, x]] = both_exact(sign * a[[bb, tt - 1, hh, x]] + noise);
                        }
                    }
                }
            }
        }
        a
    };
    let q = fill(&mut r, (b, t, h, k), None);
    let kk = fill(&mut r, (b, t, h, k), Some(1.0));
    let vv = fill(&mut r, (b, t, h, v), Some(-1.0));
    let d_o = fill(&mut r, (b, t, h, v), Some(-1.0));
    let kg = if scalar { 1 } else { k };
    let mut g = Array4::from_shape_fn((b, t, h, kg), |_| gate(&mut r, gates));
    if matches!(gates, "neg-inf" | "minus-300") {
        let special = if gates == "neg-inf" {
            f64::NEG_INFINITY
        } else {
            -300.0
        };
        for _ in 0..(1 + r.next_u32() % 3) {
            let row = pick(&mut r, &[0usize, 3, 4, 15, 16, 17, 63, 64, 100]).min(t - 1);
            let all = r.next_u32() % 2 == 0;
            let ch = r.next_u32() as usize % kg;
            for bb in 0..b {
                for hh in 0..h {
                    for d in 0..kg {
                        if all || d == ch {
                            g[[bb, row, hh, d]] = special;
                        }
                    }
                }
            }
        }
    }
    let sv = if matches!(values, "cancel" | "zero-rows") {
        "normal"
    } else {
        values
    };
    let h0 =
        (r.next_u32() % 2 == 0).then(|| Array4::from_shape_fn((n, h, k, v), |_| value(&mut r, sv)));
    let dht =
        (r.next_u32() % 2 == 0).then(|| Array4::from_shape_fn((n, h, k, v), |_| value(&mut r, sv)));
    let scale = match r.next_u32() % 4 {
        0 => Some(1.0),
        1 => Some(0.25),
        _ => None,
    };
    let gates_t = if scalar {
        let g3: Array3<f64> = g.index_axis_move(ndarray::Axis(3), 0);
        Gates::Scalar(g3)
    } else {
        Gates::PerChannel(g)
    };
    let mut bld = Problem::builder(q, kk, vv, gates_t)
        .h0_opt(h0)
        .dht_opt(dht)
        .do_(d_o)
        .scale_opt(scale);
    if let Some(cu) = &cu {
        bld = bld.cu_seqlens(cu);
    }
    let p = bld.build().expect("valid drawn problem");
    let name = format!(
        "drawn#{seed} B={b} T={t} H={h} K={k} V={v}{}{} gates={gates} values={values}",
        if scalar { " scalar" } else { "" },
        cu.map(|c| format!(" cu={c:?}")).unwrap_or_default()
    );
    (name, p)
}

/// A drawn problem with its oracle truth.
pub fn drawn_case(seed: u64) -> Case {
    let (name, problem) = draw(seed);
    let truth = Truth::oracle(&problem, true).expect("oracle");
    Case {
        name,
        problem,
        truth,
    }
}

/// One honest candidate's verdict on one tensor of one case.
#[derive(Debug, Clone)]
pub struct Record {
    pub imp: String,
    pub case: String,
    pub tensor: String,
    pub t: f64,
    pub beta_u: f64,
    pub honest_beta_u: f64,
    pub max_ratio: f64,
    pub rms_ratio: f64,
    pub bound_frac: f64,
    pub rules: Vec<&'static str>,
}

/// Every honest candidate of the benchmark judged by `verify` on `case`: one record per tensor.
pub fn honest_records(case: &Case) -> Vec<Record> {
    let mut out = Vec::new();
    for h in honest_candidates() {
        let Some(rep) = h.judge(case).expect("honest candidate runs and is judged") else {
            continue;
        };
        for (t, e) in rep.tensors.iter().zip(&rep.empirical) {
            out.push(Record {
                imp: h.name.clone(),
                case: case.name.clone(),
                tensor: t.name.clone(),
                t: e.bias.t,
                beta_u: e.bias.beta_units(),
                honest_beta_u: e.bias.honest_beta / e.bias.u,
                max_ratio: e.baseline.max_ratio().unwrap_or(0.0),
                rms_ratio: e.baseline.rms_ratio().unwrap_or(0.0),
                bound_frac: t.ratio / t.bound,
                rules: rep.failed_rules(&t.name),
            });
        }
    }
    out
}
