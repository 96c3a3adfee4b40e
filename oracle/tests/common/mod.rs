//! Shared helpers of the oracle's integration tests: random problems and an independent MPFR
//! implementation of the closed form (spec section 1) used by the finite-difference check.
#![allow(dead_code)]

use gla_reference::{GateKind, Gates, Problem};
use ndarray::{Array3, Array4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rug::Float;

/// Normal-ish random f64 values rounded to f32 (like kernel inputs).
pub fn randn(rng: &mut ChaCha8Rng, shape: (usize, usize, usize, usize)) -> Array4<f64> {
    Array4::from_shape_simple_fn(shape, || {
        let (u1, u2): (f64, f64) = (rng.gen_range(1e-9..1.0), rng.gen());
        ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 as f64
    })
}

/// fla-style gates logsigmoid(x) / tau.
pub fn gates(rng: &mut ChaCha8Rng, shape: (usize, usize, usize, usize), tau: f64) -> Array4<f64> {
    randn(rng, shape).mapv(|x| (-(1.0 + (-x).exp()).ln() / tau).min(0.0))
}

pub struct Spec {
    pub b: usize,
    pub t: usize,
    pub h: usize,
    pub k: usize,
    pub v: usize,
    pub cu: Option<Vec<i64>>,
    pub scalar: bool,
    pub h0: bool,
    pub dht: bool,
    pub seed: u64,
}

/// A random problem with `do`; gates from `gate(b, t, h, d, random_gate)`.
pub fn problem(s: &Spec, gate: impl Fn([usize; 4], f64) -> f64) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(s.seed);
    let n = s.cu.as_ref().map_or(s.b, |c| c.len() - 1);
    let q = randn(&mut rng, (s.b, s.t, s.h, s.k));
    let k = randn(&mut rng, (s.b, s.t, s.h, s.k));
    let v = randn(&mut rng, (s.b, s.t, s.h, s.v));
    let kg = if s.scalar { 1 } else { s.k };
    let g0 = gates(&mut rng, (s.b, s.t, s.h, kg), 4.0);
    let g = Array4::from_shape_fn((s.b, s.t, s.h, kg), |(b, t, h, d)| {
        gate([b, t, h, d], g0[[b, t, h, d]])
    });
    let gates = if s.scalar {
        Gates::Scalar(Array3::from_shape_fn((s.b, s.t, s.h), |(b, t, h)| {
            g[[b, t, h, 0]]
        }))
    } else {
        Gates::PerChannel(g)
    };
    let do_ = randn(&mut rng, (s.b, s.t, s.h, s.v));
    let h0 = randn(&mut rng, (n, s.h, s.k, s.v));
    let dht = randn(&mut rng, (n, s.h, s.k, s.v));
    let mut bld = Problem::builder(q, k, v, gates).do_(do_);
    if s.h0 {
        bld = bld.h0(h0);
    }
    if s.dht {
        bld = bld.dht(dht);
    }
    if let Some(cu) = &s.cu {
        bld = bld.cu_seqlens(cu);
    }
    bld.build().expect("valid test problem")
}

/// The inputs of a problem as MPFR numbers (h0, dht zeros when absent), so that any of them can
/// be perturbed by a non-representable amount.
#[derive(Clone)]
pub struct MpInputs {
    pub q: Array4<Float>,
    pub k: Array4<Float>,
    pub v: Array4<Float>,
    /// `None` is g = -inf.
    pub g: Array4<Option<Float>>,
    pub h0: Array4<Float>,
    pub do_: Array4<Float>,
    pub dht: Array4<Float>,
    pub scale: Float,
}

impl MpInputs {
    pub fn of(p: &Problem, prec: u32) -> MpInputs {
        let d = p.dims();
        let f = |a: &Array4<f64>| a.map(|&x| Float::with_val(prec, x));
        MpInputs {
            q: f(p.q()),
            k: f(p.k()),
            v: f(p.v()),
            g: p.g().map(|&x| {
                if x == f64::NEG_INFINITY {
                    None
                } else {
                    Some(Float::with_val(prec, x))
                }
            }),
            h0: p.h0().map(f).unwrap_or_else(|| {
                Array4::from_shape_simple_fn((d.n, d.h, d.k, d.v), || Float::new(prec))
            }),
            do_: f(p.do_().expect("do")),
            dht: p.dht().map(f).unwrap_or_else(|| {
                Array4::from_shape_simple_fn((d.n, d.h, d.k, d.v), || Float::new(prec))
            }),
            scale: Float::with_val(prec, p.scale()),
        }
    }
}

/// Closed form (spec section 1, with decays as products of alphas so that -inf is exact):
/// `S_t = (prod_{r<=t} alpha_r) h0 + sum_{s<=t} (prod_{s<r<=t} alpha_r) outer(k_s, v_s)`,
/// `o_t = scale S_t^T q_t`. Returns (o, hT) and the loss `sum(o * do) + sum(hT * dht)`.
pub fn closed_form(p: &Problem, x: &MpInputs, prec: u32) -> (Array4<Float>, Array4<Float>, Float) {
    let d = p.dims();
    let scalar = p.gate_kind() == GateKind::Scalar;
    let mut o = Array4::from_shape_simple_fn((d.b, d.t, d.h, d.v), || Float::new(prec));
    let mut ht = Array4::from_shape_simple_fn((d.n, d.h, d.k, d.v), || Float::new(prec));
    let mut loss = Float::new(prec);
    for s in p.sequences() {
        for h in 0..d.h {
            let alpha = |t: usize, c: usize| -> Float {
                match &x.g[[s.batch, s.start + t, h, if scalar { 0 } else { c }]] {
                    None => Float::new(prec),
                    Some(g) => Float::with_val(prec, g.exp_ref()),
                }
            };
            // decay(from, to)[c] = prod_{from < r <= to} alpha_r[c]; `from = None` includes r = 0.
            let alphas: Vec<Vec<Float>> = (0..s.len)
                .map(|t| (0..d.k).map(|c| alpha(t, c)).collect())
                .collect();
            let decay = |from: Option<usize>, to: usize, c: usize| -> Float {
                let mut r = Float::with_val(prec, 1);
                let lo = from.map_or(0, |f| f + 1);
                for a in alphas.iter().take(to + 1).skip(lo) {
                    r *= &a[c];
                }
                r
            };
            let state = |t: usize, c: usize, e: usize| -> Float {
                let mut acc = Float::with_val(prec, &x.h0[[s.state, h, c, e]] * decay(None, t, c));
                for r in 0..=t {
                    let kv = Float::with_val(
                        prec,
                        &x.k[[s.batch, s.start + r, h, c]] * &x.v[[s.batch, s.start + r, h, e]],
                    );
                    acc += kv * decay(Some(r), t, c);
                }
                acc
            };
            for t in 0..s.len {
                for e in 0..d.v {
                    let mut acc = Float::new(prec);
                    for c in 0..d.k {
                        acc += Float::with_val(
                            prec,
                            &x.q[[s.batch, s.start + t, h, c]] * state(t, c, e),
                        );
                    }
                    acc *= &x.scale;
                    loss += Float::with_val(prec, &acc * &x.do_[[s.batch, s.start + t, h, e]]);
                    o[[s.batch, s.start + t, h, e]] = acc;
                }
            }
            for c in 0..d.k {
                for e in 0..d.v {
                    let hv = if s.len == 0 {
                        x.h0[[s.state, h, c, e]].clone()
                    } else {
                        state(s.len - 1, c, e)
                    };
                    loss += Float::with_val(prec, &hv * &x.dht[[s.state, h, c, e]]);
                    ht[[s.state, h, c, e]] = hv;
                }
            }
        }
    }
    (o, ht, loss)
}

/// max |x| over a tensor of MPFR values, as f64.
pub fn max_abs(a: &Array4<Float>) -> f64 {
    a.iter().map(|x| x.to_f64().abs()).fold(0.0, f64::max)
}
