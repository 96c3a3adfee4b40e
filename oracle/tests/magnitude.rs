//! The MPFR magnitudes (`gla_oracle::exact_magnitudes`) against the f64 ones
//! (`gla_reference::bounds::magnitudes`), two independent implementations of docs/math.md §8.1:
//! same tensors present, same shapes, values within 1e-13 relative, exact zeros where a reset
//! cuts every path, and `M_dg_local <= M_dg`.

mod common;

use common::*;
use gla_oracle::exact_magnitudes;
use gla_reference::bounds::{magnitudes, Magnitudes};
use gla_reference::Problem;

const NAMES: [&str; 8] = ["o", "ht", "dq", "dk", "dv", "dh0", "dg", "dg_local"];

fn agree(p: &Problem) -> (Magnitudes, Magnitudes) {
    let (exact, f) = (exact_magnitudes(p), magnitudes(p));
    for name in NAMES {
        let (a, b) = (exact.tensor(name), f.tensor(name));
        assert_eq!(a.is_some(), b.is_some(), "{name} present in one only");
        let (Some(a), Some(b)) = (a, b) else { continue };
        assert_eq!(a.shape(), b.shape(), "{name}");
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            assert!(*x >= 0.0 && x.is_finite(), "{name}[{i}] = {x}");
            assert!(
                (x - y).abs() <= 1e-13 * x.max(*y),
                "{name}[{i}]: MPFR {x:e} vs f64 {y:e}"
            );
        }
    }
    if let (Some(l), Some(r)) = (&exact.dg_local, &exact.dg) {
        for (x, y) in l.iter().zip(r.iter()) {
            assert!(x <= y, "M_dg_local {x:e} > M_dg {y:e}");
        }
    }
    (exact, f)
}

#[test]
fn per_channel_gates_with_a_reset() {
    let s = Spec {
        b: 2,
        t: 24,
        h: 2,
        k: 5,
        v: 3,
        cu: None,
        scalar: false,
        h0: true,
        dht: true,
        seed: 11,
    };
    // Channel 2 resets at t = 7 in every head: M_dg_local there is exactly 0 (alpha = 0).
    let p = problem(&s, |i, g| {
        if i[1] == 7 && i[3] == 2 {
            f64::NEG_INFINITY
        } else {
            g
        }
    });
    let (m, _) = agree(&p);
    let dgl = m.dg_local.unwrap();
    assert_eq!(dgl[[0, 7, 1, 2]], 0.0);
    assert!(dgl[[0, 7, 1, 1]] > 0.0);
}

#[test]
fn scalar_gates_varlen_with_an_empty_sequence() {
    let s = Spec {
        b: 1,
        t: 30,
        h: 2,
        k: 4,
        v: 3,
        cu: Some(vec![0, 11, 11, 30]),
        scalar: true,
        h0: true,
        dht: true,
        seed: 12,
    };
    let p = problem(&s, |_, g| g);
    let (m, _) = agree(&p);
    assert_eq!(m.dg.as_ref().unwrap().shape(), &[1, 30, 2, 1]);
    // Empty sequence 1: M_hT = |h0| and M_dh0 = |dhT| exactly.
    let (h0, dht) = (p.h0().unwrap(), p.dht().unwrap());
    for (x, y) in
        m.ht.slice(ndarray::s![1, .., .., ..])
            .iter()
            .zip(h0.slice(ndarray::s![1, .., .., ..]))
    {
        assert_eq!(*x, y.abs());
    }
    let dh0 = m.dh0.unwrap();
    for (x, y) in dh0
        .slice(ndarray::s![1, .., .., ..])
        .iter()
        .zip(dht.slice(ndarray::s![1, .., .., ..]))
    {
        assert_eq!(*x, y.abs());
    }
}

#[test]
fn without_initial_state_or_final_gradient() {
    let s = Spec {
        b: 1,
        t: 17,
        h: 1,
        k: 3,
        v: 6,
        cu: None,
        scalar: false,
        h0: false,
        dht: false,
        seed: 13,
    };
    agree(&problem(&s, |_, g| g));
}

#[test]
fn forward_only_problem_has_no_gradient_magnitudes() {
    let s = Spec {
        b: 1,
        t: 9,
        h: 1,
        k: 3,
        v: 2,
        cu: None,
        scalar: false,
        h0: true,
        dht: false,
        seed: 14,
    };
    let p = problem(&s, |_, g| g);
    let p = Problem::builder(
        p.q().clone(),
        p.k().clone(),
        p.v().clone(),
        gla_reference::Gates::PerChannel(p.g().clone()),
    )
    .h0(p.h0().unwrap().clone())
    .build()
    .unwrap();
    let (m, _) = agree(&p);
    assert!(m.dq.is_none() && m.dg.is_none() && m.dg_local.is_none());
}
