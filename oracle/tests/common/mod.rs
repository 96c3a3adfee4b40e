//! Shared helpers of the oracle's integration tests: random problems (gla-fixtures' generator,
//! the oracle tests' pinned stream `Stream::ORACLE`) and an independent MPFR implementation of
//! the closed form (docs/math.md §1) used by the finite-difference check.
#![allow(dead_code)]

use gla_fixtures::gen::{
    seq_lens, BoxMuller, GateRegime, GateSource, LogSigmoid, ProblemSpec, Stream, ValueRegime,
};
use gla_reference::{Dtype, GateKind, Problem};
use ndarray::Array4;
use rand_chacha::ChaCha8Rng;
use rug::Float;

/// One fla-style gate logsigmoid(x) / tau of the oracle tests' stream (x from
/// [`BoxMuller::RangeF32`], [`LogSigmoid::Direct`], clamped to <= 0).
pub fn gate(rng: &mut ChaCha8Rng, tau: f64) -> f64 {
    (LogSigmoid::Direct.eval(BoxMuller::RangeF32.sample(rng)) / tau).min(0.0)
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

/// A random problem with `do`; gates from `gate(b, t, h, d, random_gate)` (random_gate =
/// logsigmoid / 4, drawn whether used or not).
pub fn problem(s: &Spec, gate_of: impl Fn([usize; 4], f64) -> f64) -> Problem {
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
        gates: GateRegime::Zero, // unused: the gates come from `gate_of`
        values: ValueRegime::SignedNormal,
        h0: s.h0,
        dht: s.dht,
        seq_lens: s.cu.as_deref().map(seq_lens),
        scale: None,
        grid: Dtype::F64, // the values are drawn on the f32 grid; the gates are kept as drawn
        seed: s.seed,
    };
    let mut each = |r: &mut ChaCha8Rng, idx: [usize; 4]| gate_of(idx, gate(r, 4.0));
    spec.build_with(&Stream::ORACLE, GateSource::Each(&mut each))
        .expect("valid test problem")
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

/// Closed form (docs/math.md §1, with decays as products of alphas so that -inf is exact):
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
