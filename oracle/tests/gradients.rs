//! High-precision central-difference check of every gradient of the oracle (dq, dk, dv, dg per
//! channel and scalar, dh0), against an independent MPFR implementation of the closed form.
//!
//! Loss L = sum(o * do) + sum(hT * dhT). Every input element x is perturbed in MPFR by
//! h = 2^-60 (not representable in f64, which is why the closed form takes MPFR inputs) at 400
//! bits: L is multilinear in q, k, v, h0, so the central difference is exact up to rounding
//! (2^-400 / h ~ 2^-340), and for g the truncation error is h^2 / 6 * |L'''| ~ 2^-122. The
//! oracle's gradients (at 400 bits) must match to 1e-25 relative to max(|grad|, 1e-3 * max|grad
//! tensor|).

mod common;

use common::*;
use gla_oracle::recurrent;
use ndarray::Array4;
use rug::Float;

const PREC: u32 = 400;

fn step() -> Float {
    Float::with_val(PREC, Float::i_exp(1, -60))
}

/// Central difference of the loss w.r.t. one element selected by `pick`.
fn central(
    p: &gla_reference::Problem,
    base: &MpInputs,
    pick: impl Fn(&mut MpInputs, &Float),
) -> Float {
    let h = step();
    let mut plus = base.clone();
    pick(&mut plus, &h);
    let mut minus = base.clone();
    pick(&mut minus, &Float::with_val(PREC, -&h));
    let lp = closed_form(p, &plus, PREC).2;
    let lm = closed_form(p, &minus, PREC).2;
    Float::with_val(PREC, lp - lm) / Float::with_val(PREC, 2 * h)
}

fn check(name: &str, fd: &Float, grad: &Float, tensor_max: f64) {
    let err = Float::with_val(PREC, fd - grad).abs().to_f64();
    let scale = grad.to_f64().abs().max(1e-3 * tensor_max);
    assert!(
        err <= 1e-25 * scale,
        "{name}: finite difference {} vs oracle {} (err {err:e}, scale {scale:e})",
        fd.to_f64(),
        grad.to_f64()
    );
}

fn check_tensor(
    p: &gla_reference::Problem,
    base: &MpInputs,
    name: &str,
    grad: &Array4<Float>,
    field: fn(&mut MpInputs) -> &mut Array4<Float>,
) -> usize {
    let m = max_abs(grad);
    assert!(
        m > 0.0,
        "{name} is identically zero: the test would be vacuous"
    );
    let mut n = 0;
    for (idx, g) in grad.indexed_iter() {
        let i = [idx.0, idx.1, idx.2, idx.3];
        let fd = central(p, base, |x, h| {
            let e = &mut field(x)[i];
            *e += h;
        });
        check(&format!("{name}{i:?}"), &fd, g, m);
        n += 1;
    }
    n
}

fn check_all(p: &gla_reference::Problem) {
    let exact = recurrent::backward(p, PREC).expect("oracle backward");
    let base = MpInputs::of(p, PREC);

    // Forward: the recurrence equals the closed form.
    let (o, ht, _) = closed_form(p, &base, PREC);
    for (a, b) in exact
        .o
        .iter()
        .zip(o.iter())
        .chain(exact.ht.iter().zip(ht.iter()))
    {
        let err = Float::with_val(PREC, a - b).abs().to_f64();
        assert!(
            err <= 1e-100 * (1.0 + b.to_f64().abs()),
            "forward differs from the closed form: {err:e}"
        );
    }

    let g = exact.grads.as_ref().expect("grads");
    let mut n = 0;
    n += check_tensor(p, &base, "dq", &g.dq, |x| &mut x.q);
    n += check_tensor(p, &base, "dk", &g.dk, |x| &mut x.k);
    n += check_tensor(p, &base, "dv", &g.dv, |x| &mut x.v);
    n += check_tensor(p, &base, "dh0", &g.dh0, |x| &mut x.h0);

    // dg: finite gates by central differences; g = -inf (alpha = 0) has dg = 0 exactly.
    let m = max_abs(&g.dg);
    assert!(m > 0.0);
    let mut resets = 0;
    for (idx, dg) in g.dg.indexed_iter() {
        let i = [idx.0, idx.1, idx.2, idx.3];
        if base.g[i].is_none() {
            assert!(
                dg.is_zero(),
                "dg at a g = -inf gate must be exactly 0, got {}",
                dg.to_f64()
            );
            resets += 1;
            continue;
        }
        let fd = central(p, &base, |x, h| {
            let e = x.g[i].as_mut().expect("finite gate");
            *e += h;
        });
        check(&format!("dg{i:?}"), &fd, dg, m);
        n += 1;
    }
    assert!(n > 50, "too few elements checked: {n}");
    if p.g().iter().any(|&x| x == f64::NEG_INFINITY) {
        assert!(resets > 0);
    }
}

#[test]
fn per_channel_varlen_with_reset_h0_and_dht() {
    // T = 7 packed as [3, 0, 4] (an empty sequence), H = 2, K = 3, V = 2, h0 and dhT present,
    // g = -inf at two places (mid-sequence and at a sequence start), g = 0 at one.
    let s = Spec {
        b: 1,
        t: 7,
        h: 2,
        k: 3,
        v: 2,
        cu: Some(vec![0, 3, 3, 7]),
        scalar: false,
        h0: true,
        dht: true,
        seed: 11,
    };
    let p = problem(&s, |i, g| match i {
        [0, 5, 0, 1] | [0, 3, 1, 2] => f64::NEG_INFINITY,
        [0, 1, 1, 0] => 0.0,
        _ => g,
    });
    check_all(&p);
}

#[test]
fn per_channel_batched_without_h0_and_dht() {
    // dh0 is the zero-h0 gradient; no dhT term.
    let s = Spec {
        b: 2,
        t: 5,
        h: 1,
        k: 3,
        v: 2,
        cu: None,
        scalar: false,
        h0: false,
        dht: false,
        seed: 12,
    };
    let p = problem(&s, |_, g| g);
    check_all(&p);
}

#[test]
fn scalar_gates_batched_with_reset() {
    // Scalar gates: dg [B, T, H, 1] is the sum over channels; a -inf gate resets the whole state.
    let s = Spec {
        b: 2,
        t: 5,
        h: 2,
        k: 3,
        v: 2,
        cu: None,
        scalar: true,
        h0: true,
        dht: true,
        seed: 13,
    };
    let p = problem(&s, |i, g| {
        if i == [1, 2, 0, 0] {
            f64::NEG_INFINITY
        } else {
            g
        }
    });
    check_all(&p);
}
