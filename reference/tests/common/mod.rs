//! Problem generators shared by the chunked and parallel form tests.
#![allow(dead_code)]

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
