//! The oracle's own f64 magnitude tensors (spec section 8), used as the absolute floor of its
//! convergence test (see [`crate::OracleOptions::magnitude_floor_bits`]).
//!
//! These are the componentwise condition magnitudes `M_x` of the spec, computed in f64 with the
//! decays `alpha = exp(g)` rounded to f64 (`exp(-inf) = 0`):
//!
//! ```text
//! Sabs_0 = |h0|;  Sabs_t = Diag(alpha_t) Sabs_{t-1} + outer(|k_t|, |v_t|)
//! M_o_t = |scale| Sabs_t^T |q_t|          M_ht = Sabs_T          M_dq_t = |scale| Sabs_t |do_t|
//! dSabs_T = |dhT| + |scale| outer(|q_T|, |do_T|);  dSabs_t = Diag(alpha_{t+1}) dSabs_{t+1} + |scale| outer(|q_t|, |do_t|)
//! M_dk_t = dSabs_t |v_t|    M_dv_t = dSabs_t^T |k_t|    M_dh0 = Diag(alpha_1) dSabs_1
//! M_dg_local_t[d] = alpha_t[d] sum_e Sabs_{t-1}[d,e] dSabs_t[d,e]
//! M_dg_rc_t[d] = sum_{s>=t} (|q_s[d]| M_dq_s[d] + |k_s[d]| M_dk_s[d]) + sum_e Sabs_T[d,e] |dhT[d,e]|
//! ```
//!
//! Scalar gates: the dg magnitudes are summed over channels (shape `[B, T, H, 1]`).
//! They bound every intermediate of the oracle's recurrence, so the oracle's rounding error at
//! precision p is at most about `(T + K + V) * 2^-p * M_x` per element. The canonical magnitude
//! code used by glacheck's comparisons lives in `gla_reference::bounds`; this copy is private to the
//! oracle's convergence test and may differ from it in underflow details (it is only a floor).

use gla_reference::{GateKind, Problem};
use ndarray::Array4;
use rayon::prelude::*;

/// Magnitude tensors of a problem (f64), shaped like the corresponding outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Magnitudes {
    /// `M_o` `[B, T, H, V]`.
    pub o: Array4<f64>,
    /// `M_hT` `[N, H, K, V]`.
    pub ht: Array4<f64>,
    /// Gradient magnitudes, when computed for a backward pass.
    pub grads: Option<GradMagnitudes>,
}

/// Magnitudes of the gradients.
#[derive(Debug, Clone, PartialEq)]
pub struct GradMagnitudes {
    /// `M_dq` `[B, T, H, K]`.
    pub dq: Array4<f64>,
    /// `M_dk` `[B, T, H, K]`.
    pub dk: Array4<f64>,
    /// `M_dv` `[B, T, H, V]`.
    pub dv: Array4<f64>,
    /// `M_dg_local` `[B, T, H, Kg]` (magnitude of the local form, the oracle's dg).
    pub dg_local: Array4<f64>,
    /// `M_dg` `[B, T, H, Kg]` of the reverse-cumsum form.
    pub dg_reverse_cumsum: Array4<f64>,
    /// `M_dh0` `[N, H, K, V]`.
    pub dh0: Array4<f64>,
}

struct HeadMags {
    o: Vec<f64>,
    ht: Vec<f64>,
    dq: Vec<f64>,
    dk: Vec<f64>,
    dv: Vec<f64>,
    dgl: Vec<f64>,
    dgr: Vec<f64>,
    dh0: Vec<f64>,
}

/// Compute the magnitudes of `p`; the gradient magnitudes only when `backward` (they need `do`;
/// a missing `do` counts as zeros).
pub fn magnitudes(p: &Problem, backward: bool) -> Magnitudes {
    let dims = p.dims();
    let (kk, vv) = (dims.k, dims.v);
    let kg = p.g().shape()[3];
    let seqs = p.sequences();
    let units: Vec<(usize, usize)> = (0..seqs.len())
        .flat_map(|s| (0..dims.h).map(move |h| (s, h)))
        .collect();
    let outs: Vec<HeadMags> = units
        .par_iter()
        .map(|&(si, h)| head_magnitudes(p, seqs[si], h, backward))
        .collect();

    let mut o = Array4::zeros((dims.b, dims.t, dims.h, vv));
    let mut ht = Array4::zeros((dims.n, dims.h, kk, vv));
    let mut dq = Array4::zeros((dims.b, dims.t, dims.h, kk));
    let mut dk = Array4::zeros((dims.b, dims.t, dims.h, kk));
    let mut dv = Array4::zeros((dims.b, dims.t, dims.h, vv));
    let mut dgl = Array4::zeros((dims.b, dims.t, dims.h, kg));
    let mut dgr = Array4::zeros((dims.b, dims.t, dims.h, kg));
    let mut dh0 = Array4::zeros((dims.n, dims.h, kk, vv));
    for (&(si, h), m) in units.iter().zip(outs) {
        let s = seqs[si];
        for i in 0..s.len {
            let t = s.start + i;
            for e in 0..vv {
                o[[s.batch, t, h, e]] = m.o[i * vv + e];
                if backward {
                    dv[[s.batch, t, h, e]] = m.dv[i * vv + e];
                }
            }
            if backward {
                for d in 0..kk {
                    dq[[s.batch, t, h, d]] = m.dq[i * kk + d];
                    dk[[s.batch, t, h, d]] = m.dk[i * kk + d];
                }
                for d in 0..kg {
                    dgl[[s.batch, t, h, d]] = m.dgl[i * kg + d];
                    dgr[[s.batch, t, h, d]] = m.dgr[i * kg + d];
                }
            }
        }
        for d in 0..kk {
            for e in 0..vv {
                ht[[s.state, h, d, e]] = m.ht[d * vv + e];
                if backward {
                    dh0[[s.state, h, d, e]] = m.dh0[d * vv + e];
                }
            }
        }
    }
    let grads = backward.then_some(GradMagnitudes {
        dq,
        dk,
        dv,
        dg_local: dgl,
        dg_reverse_cumsum: dgr,
        dh0,
    });
    Magnitudes { o, ht, grads }
}

fn alpha64(g: f64) -> f64 {
    if g == f64::NEG_INFINITY {
        0.0
    } else {
        g.exp()
    }
}

fn head_magnitudes(p: &Problem, s: gla_reference::SeqSpan, h: usize, backward: bool) -> HeadMags {
    let dims = p.dims();
    let (kk, vv, len) = (dims.k, dims.v, s.len);
    let kg = if p.gate_kind() == GateKind::Scalar {
        1
    } else {
        kk
    };
    let sc = p.scale().abs();
    let (b, t0) = (s.batch, s.start);
    let q = |i: usize, d: usize| p.q()[[b, t0 + i, h, d]].abs();
    let k = |i: usize, d: usize| p.k()[[b, t0 + i, h, d]].abs();
    let v = |i: usize, e: usize| p.v()[[b, t0 + i, h, e]].abs();
    let dov = |i: usize, e: usize| p.do_().map_or(0.0, |a| a[[b, t0 + i, h, e]].abs());
    let al = |i: usize, d: usize| alpha64(p.g_at(b, t0 + i, h, d));
    let step = |st: &mut [f64], i: usize| {
        for d in 0..kk {
            let a = al(i, d);
            let kd = k(i, d);
            for e in 0..vv {
                st[d * vv + e] = a * st[d * vv + e] + kd * v(i, e);
            }
        }
    };

    let mut st: Vec<f64> = match p.h0() {
        Some(h0) => (0..kk * vv)
            .map(|x| h0[[s.state, h, x / vv, x % vv]].abs())
            .collect(),
        None => vec![0.0; kk * vv],
    };
    let c = ckpt_interval(len);
    let mut ckpts: Vec<Vec<f64>> = Vec::new();
    let mut o = vec![0.0; len * vv];
    let mut dq = vec![0.0; if backward { len * kk } else { 0 }];
    for i in 0..len {
        if backward && i % c == 0 {
            ckpts.push(st.clone());
        }
        step(&mut st, i);
        for d in 0..kk {
            let qd = sc * q(i, d);
            let mut acc = 0.0;
            for e in 0..vv {
                let x = st[d * vv + e];
                o[i * vv + e] += qd * x;
                if backward {
                    acc += x * dov(i, e);
                }
            }
            if backward {
                dq[i * kk + d] = sc * acc;
            }
        }
    }
    let ht = st;
    if !backward {
        return HeadMags {
            o,
            ht,
            dq,
            dk: vec![],
            dv: vec![],
            dgl: vec![],
            dgr: vec![],
            dh0: vec![],
        };
    }
    let dht = |d: usize, e: usize| p.dht().map_or(0.0, |a| a[[s.state, h, d, e]].abs());
    let mut ds: Vec<f64> = (0..kk * vv).map(|x| dht(x / vv, x % vv)).collect();
    let mut dk = vec![0.0; len * kk];
    let mut dv = vec![0.0; len * vv];
    let mut dgl = vec![0.0; len * kg];
    let mut buf = vec![0.0; c.max(1) * kk * vv];
    for j in (0..ckpts.len()).rev() {
        let a0 = j * c;
        let a1 = (a0 + c).min(len);
        buf[..kk * vv].copy_from_slice(&ckpts[j]);
        for m in 1..(a1 - a0) {
            let (prev, cur) = buf.split_at_mut(m * kk * vv);
            let cur = &mut cur[..kk * vv];
            cur.copy_from_slice(&prev[(m - 1) * kk * vv..]);
            step(cur, a0 + m - 1);
        }
        for i in (a0..a1).rev() {
            let sprev = &buf[(i - a0) * kk * vv..(i - a0 + 1) * kk * vv];
            for d in 0..kk {
                let an = if i + 1 < len { al(i + 1, d) } else { 1.0 };
                let qd = sc * q(i, d);
                let kd = k(i, d);
                let (mut dka, mut dga) = (0.0, 0.0);
                for e in 0..vv {
                    let x = an * ds[d * vv + e] + qd * dov(i, e);
                    ds[d * vv + e] = x;
                    dka += x * v(i, e);
                    dv[i * vv + e] += x * kd;
                    dga += sprev[d * vv + e] * x;
                }
                dk[i * kk + d] = dka;
                let dg = al(i, d) * dga;
                if kg == 1 {
                    dgl[i] += dg;
                } else {
                    dgl[i * kk + d] = dg;
                }
            }
        }
    }
    let mut dh0 = ds;
    if len > 0 {
        for d in 0..kk {
            let a = al(0, d);
            for e in 0..vv {
                dh0[d * vv + e] *= a;
            }
        }
    }
    let mut dgr = vec![0.0; len * kg];
    let mut acc: Vec<f64> = (0..kk)
        .map(|d| (0..vv).map(|e| ht[d * vv + e] * dht(d, e)).sum())
        .collect();
    for i in (0..len).rev() {
        for d in 0..kk {
            acc[d] += q(i, d) * dq[i * kk + d] + k(i, d) * dk[i * kk + d];
            if kg == 1 {
                dgr[i] += acc[d];
            } else {
                dgr[i * kk + d] = acc[d];
            }
        }
    }
    HeadMags {
        o,
        ht,
        dq,
        dk,
        dv,
        dgl,
        dgr,
        dh0,
    }
}

/// Checkpoint interval for the backward sweeps: about sqrt(T), at least 1.
pub(crate) fn ckpt_interval(len: usize) -> usize {
    ((len as f64).sqrt().ceil() as usize).max(1)
}
