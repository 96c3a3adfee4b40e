//! The magnitude tensors `M_x` (docs/math.md §8.1) in MPFR: the arithmetic of the golden files.
//!
//! [`exact_magnitudes`] runs the recurrence on absolute values with the decays
//! `alpha = exp(g)` evaluated in MPFR (`exp(-inf) = 0`), at [`MAGNITUDE_PRECISION`] bits, and
//! rounds each element once to f64:
//!
//! ```text
//! Sabs_0 = |h0|;  Sabs_t = Diag(alpha_t) Sabs_{t-1} + outer(|k_t|, |v_t|)
//! M_o_t = |scale| Sabs_t^T |q_t|          M_ht = Sabs_T          M_dq_t = |scale| Sabs_t |do_t|
//! dSabs_T = |dhT| + |scale| outer(|q_T|, |do_T|);  dSabs_t = Diag(alpha_{t+1}) dSabs_{t+1} + |scale| outer(|q_t|, |do_t|)
//! M_dk_t = dSabs_t |v_t|    M_dv_t = dSabs_t^T |k_t|    M_dh0 = Diag(alpha_1) dSabs_1
//! M_dg_local_t[d] = alpha_t[d] sum_e Sabs_{t-1}[d,e] dSabs_t[d,e]
//! M_dg_t[d] = sum_{s>=t} (|q_s[d]| M_dq_s[d] + |k_s[d]| M_dk_s[d]) + sum_e Sabs_T[d,e] |dhT[d,e]|
//! ```
//!
//! Scalar gates: the dg magnitudes are summed over channels (shape `[B, T, H, 1]`).
//!
//! These are the definitions of `gla_reference::bounds::magnitudes`, the f64 computation
//! (what every comparison and the oracle's own convergence floor use). The two differ only in
//! arithmetic: every term is non-negative, so 128 bits make this computation essentially exact,
//! and it calls no libm, so its bits are the same on every platform; the f64 one agrees with it to
//! about `1e-15` relative (its `exp` and its sums round in f64). The golden files store these
//! (`gla_fixtures::golden`), which is why they are kept apart from the faster f64 ones.
//!
//! ```
//! use gla_oracle::magnitude::exact_magnitudes;
//! use gla_reference::bounds::magnitudes;
//! use gla_reference::{Gates, Problem};
//! use ndarray::Array4;
//! let (b, t, h, k, v) = (1, 5, 1, 3, 2);
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| (t as f64 - d as f64) * 0.25);
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| ((t * d) % 3) as f64 - 1.0);
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| 0.5 + (t + e) as f64);
//! let mut g = Array4::from_elem((b, t, h, k), -0.3);
//! g[[0, 2, 0, 1]] = f64::NEG_INFINITY; // a state reset
//! let do_ = Array4::from_elem((b, t, h, v), -1.0);
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(do_).build()?;
//! let (exact, f64_mags) = (exact_magnitudes(&p), magnitudes(&p));
//! for name in ["o", "ht", "dq", "dk", "dv", "dh0", "dg", "dg_local"] {
//!     let (a, b) = (exact.tensor(name).unwrap(), f64_mags.tensor(name).unwrap());
//!     assert!(a.iter().zip(b.iter()).all(|(x, y)| (x - y).abs() <= 1e-13 * x));
//! }
//! # Ok::<(), gla_reference::GlaError>(())
//! ```

use gla_reference::bounds::Magnitudes;
use gla_reference::{GateKind, Problem, SeqSpan};
use ndarray::Array4;
use rug::{Assign, Float};

/// MPFR precision (bits) of [`exact_magnitudes`].
pub const MAGNITUDE_PRECISION: u32 = 128;

/// The magnitude tensors of `p` computed in MPFR ([`MAGNITUDE_PRECISION`] bits, all terms
/// non-negative, so essentially exact) and rounded once to f64, with the decays
/// `alpha = exp(g)` evaluated in MPFR (`exp(-inf) = 0`). Same definitions and shapes as
/// `gla_reference::bounds::magnitudes`; deterministic on every platform. Gradient magnitudes
/// are present when the problem has `do`.
///
/// Cost: one MPFR forward and backward sweep over the absolute values, sequential; the backward
/// sweep keeps every state of a (sequence, head), `T K V` MPFR numbers.
pub fn exact_magnitudes(p: &Problem) -> Magnitudes {
    let d = p.dims();
    let kg = p.g().shape()[3];
    let grads = p.has_backward();
    let mut m = RawMags {
        o: Array4::zeros((d.b, d.t, d.h, d.v)),
        ht: Array4::zeros((d.n, d.h, d.k, d.v)),
        dq: Array4::zeros((d.b, d.t, d.h, d.k)),
        dk: Array4::zeros((d.b, d.t, d.h, d.k)),
        dv: Array4::zeros((d.b, d.t, d.h, d.v)),
        dh0: Array4::zeros((d.n, d.h, d.k, d.v)),
        dg: Array4::zeros((d.b, d.t, d.h, kg)),
        dgl: Array4::zeros((d.b, d.t, d.h, kg)),
    };
    for s in p.sequences() {
        for h in 0..d.h {
            head(p, s, h, grads, &mut m);
        }
    }
    Magnitudes {
        o: m.o,
        ht: m.ht,
        dq: grads.then_some(m.dq),
        dk: grads.then_some(m.dk),
        dv: grads.then_some(m.dv),
        dh0: grads.then_some(m.dh0),
        dg: grads.then_some(m.dg),
        dg_local: grads.then_some(m.dgl),
    }
}

/// The output tensors, every gradient one allocated (dropped at the end when not computed).
struct RawMags {
    o: Array4<f64>,
    ht: Array4<f64>,
    dq: Array4<f64>,
    dk: Array4<f64>,
    dv: Array4<f64>,
    dh0: Array4<f64>,
    dg: Array4<f64>,
    dgl: Array4<f64>,
}

/// `x` at [`MAGNITUDE_PRECISION`] (exact: every f64 fits).
fn fl(x: f64) -> Float {
    Float::with_val(MAGNITUDE_PRECISION, x)
}

/// Zero at [`MAGNITUDE_PRECISION`].
fn zero() -> Float {
    Float::new(MAGNITUDE_PRECISION)
}

/// The magnitudes of one (sequence `s`, head `h`), written into `m`: the forward sweep (keeping
/// every state `Sabs_{t-1}` and `M_dq_t` when `grads`), then the reverse sweep for `dk`, `dv`,
/// both dg forms and `dh0`. It stays one function (about 160 lines) because both sweeps share
/// the decays, the inputs as MPFR numbers and the kept states; the golden bytes depend on the
/// exact order of its MPFR operations, so it is kept as it is.
fn head(p: &Problem, s: SeqSpan, h: usize, grads: bool, m: &mut RawMags) {
    let d = p.dims();
    let (kk, vv, len, b, n) = (d.k, d.v, s.len, s.batch, s.state);
    let scalar = p.gate_kind() == GateKind::Scalar;
    let sc = fl(p.scale().abs());
    let row = |a: &Array4<f64>, t: usize, w: usize| -> Vec<Float> {
        (0..w)
            .map(|i| fl(a[[b, s.start + t, h, i]].abs()))
            .collect()
    };
    let alpha: Vec<Vec<Float>> = (0..len)
        .map(|t| {
            (0..kk)
                .map(|c| {
                    let g = p.g_at(b, s.start + t, h, c);
                    if g == f64::NEG_INFINITY {
                        zero()
                    } else {
                        fl(g).exp()
                    }
                })
                .collect()
        })
        .collect();
    let q: Vec<Vec<Float>> = (0..len).map(|t| row(p.q(), t, kk)).collect();
    let k: Vec<Vec<Float>> = (0..len).map(|t| row(p.k(), t, kk)).collect();
    let v: Vec<Vec<Float>> = (0..len).map(|t| row(p.v(), t, vv)).collect();
    let dout: Vec<Vec<Float>> = match p.do_() {
        Some(a) if grads => (0..len).map(|t| row(a, t, vv)).collect(),
        _ => Vec::new(),
    };
    let state = |a: Option<&Array4<f64>>| -> Vec<Float> {
        (0..kk * vv)
            .map(|i| {
                a.map(|a| fl(a[[n, h, i / vv, i % vv]].abs()))
                    .unwrap_or_else(zero)
            })
            .collect()
    };
    let mut st = state(p.h0());
    let mut prev: Vec<Vec<Float>> = Vec::new();
    let mut mdq: Vec<Vec<Float>> = Vec::new();
    let mut acc = zero();
    for t in 0..len {
        if grads {
            prev.push(st.clone());
        }
        for c in 0..kk {
            for e in 0..vv {
                let x = &mut st[c * vv + e];
                *x *= &alpha[t][c];
                *x += &k[t][c] * &v[t][e];
            }
        }
        for e in 0..vv {
            acc.assign(0);
            for c in 0..kk {
                acc += &q[t][c] * &st[c * vv + e];
            }
            acc *= &sc;
            m.o[[b, s.start + t, h, e]] = acc.to_f64();
        }
        if grads {
            let mut row_dq = Vec::with_capacity(kk);
            for c in 0..kk {
                acc.assign(0);
                for e in 0..vv {
                    acc += &st[c * vv + e] * &dout[t][e];
                }
                acc *= &sc;
                m.dq[[b, s.start + t, h, c]] = acc.to_f64();
                row_dq.push(acc.clone());
            }
            mdq.push(row_dq);
        }
    }
    for c in 0..kk {
        for e in 0..vv {
            m.ht[[n, h, c, e]] = st[c * vv + e].to_f64();
        }
    }
    if !grads {
        return;
    }
    let dht = state(p.dht());
    let mut ds = dht.clone();
    // Reverse-cumsum magnitude accumulators, seeded with rowsum(Sabs_T * |dhT|).
    let mut rc: Vec<Float> = (0..kk)
        .map(|c| {
            let mut a = zero();
            for e in 0..vv {
                a += &st[c * vv + e] * &dht[c * vv + e];
            }
            a
        })
        .collect();
    let mut sq = zero();
    let mut dgl_row = vec![zero(); kk];
    let mut rc_row = vec![zero(); kk];
    for t in (0..len).rev() {
        for c in 0..kk {
            sq.assign(&sc * &q[t][c]);
            for e in 0..vv {
                let x = &mut ds[c * vv + e];
                if t + 1 < len {
                    *x *= &alpha[t + 1][c];
                }
                *x += &sq * &dout[t][e];
            }
        }
        let mut mdk = Vec::with_capacity(kk);
        for c in 0..kk {
            acc.assign(0);
            for e in 0..vv {
                acc += &ds[c * vv + e] * &v[t][e];
            }
            m.dk[[b, s.start + t, h, c]] = acc.to_f64();
            mdk.push(acc.clone());
        }
        for e in 0..vv {
            acc.assign(0);
            for c in 0..kk {
                acc += &ds[c * vv + e] * &k[t][c];
            }
            m.dv[[b, s.start + t, h, e]] = acc.to_f64();
        }
        for c in 0..kk {
            acc.assign(0);
            for e in 0..vv {
                acc += &prev[t][c * vv + e] * &ds[c * vv + e];
            }
            acc *= &alpha[t][c];
            dgl_row[c].assign(&acc);
            rc[c] += &q[t][c] * &mdq[t][c];
            rc[c] += &k[t][c] * &mdk[c];
            rc_row[c].assign(&rc[c]);
        }
        if scalar {
            let mut a = zero();
            let mut r = zero();
            for c in 0..kk {
                a += &dgl_row[c];
                r += &rc_row[c];
            }
            m.dgl[[b, s.start + t, h, 0]] = a.to_f64();
            m.dg[[b, s.start + t, h, 0]] = r.to_f64();
        } else {
            for c in 0..kk {
                m.dgl[[b, s.start + t, h, c]] = dgl_row[c].to_f64();
                m.dg[[b, s.start + t, h, c]] = rc_row[c].to_f64();
            }
        }
    }
    for c in 0..kk {
        for e in 0..vv {
            let mut x = ds[c * vv + e].clone();
            if len > 0 {
                x *= &alpha[0][c];
            }
            m.dh0[[n, h, c, e]] = x.to_f64();
        }
    }
}
