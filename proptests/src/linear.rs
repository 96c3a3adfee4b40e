//! Plain (ungated) linear attention, written independently of every GLA form and of the oracle:
//! the reference for the `g = 0` identity.
//!
//! With `g = 0` (alpha = 1) GLA is causal linear attention with an initial state:
//! `S_t = h0 + sum_{s<=t} k_s v_s^T`, `o_t = scale * S_t^T q_t`, `hT = S_T`; gradients
//! `dq_t = scale * S_t do_t`, `W_s = dhT + scale * sum_{t>=s} q_t do_t^T`, `dk_s = W_s v_s`,
//! `dv_s = W_s^T k_s`, `dh0 = W_1`, `dg_t = rowsum(S_{t-1} * W_t)` (per channel; summed over
//! channels for scalar gates). Everything is accumulated in double-double arithmetic
//! (error-free transformations with FMA), so the result is the exact value rounded once to f64 up
//! to a relative error of a few units of 2^-100 of the magnitudes: far below any candidate's bound.

use gla_reference::{GateKind, Gradients, Problem, Solution};
use ndarray::Array4;

/// A double-double number `hi + lo`.
#[allow(clippy::should_implement_trait)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Dd {
    hi: f64,
    lo: f64,
}

#[allow(clippy::should_implement_trait)]
impl Dd {
    /// From an f64 (exact).
    pub fn of(x: f64) -> Dd {
        Dd { hi: x, lo: 0.0 }
    }
    /// The exact product of two f64.
    pub fn prod(a: f64, b: f64) -> Dd {
        let hi = a * b;
        Dd {
            hi,
            lo: a.mul_add(b, -hi),
        }
    }
    /// Sum (accurate to ~2^-104 relative).
    pub fn add(self, o: Dd) -> Dd {
        let (s, e) = two_sum(self.hi, o.hi);
        let e = e + self.lo + o.lo;
        let (hi, lo) = fast_two_sum(s, e);
        Dd { hi, lo }
    }
    /// Product by an f64.
    pub fn mul(self, b: f64) -> Dd {
        let p = Dd::prod(self.hi, b);
        let lo = p.lo + self.lo * b;
        let (hi, lo) = fast_two_sum(p.hi, lo);
        Dd { hi, lo }
    }
    /// Product of two double-doubles.
    pub fn mul_dd(self, o: Dd) -> Dd {
        let p = Dd::prod(self.hi, o.hi);
        let lo = p.lo + self.hi * o.lo + self.lo * o.hi;
        let (hi, lo) = fast_two_sum(p.hi, lo);
        Dd { hi, lo }
    }
    /// Rounded to f64.
    pub fn f64(self) -> f64 {
        self.hi + self.lo
    }
}

fn two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    let bb = s - a;
    (s, (a - (s - bb)) + (b - bb))
}

fn fast_two_sum(a: f64, b: f64) -> (f64, f64) {
    let s = a + b;
    (s, b - (s - a))
}

/// Plain linear attention (ignores the problem's gates: treats every gate as 0), forward and,
/// when `do` is present, backward with the local-form gate gradient.
pub fn solve(p: &Problem) -> Solution {
    let d = p.dims();
    let (kd, vd) = (d.k, d.v);
    let kg = p.g().shape()[3];
    let scale = p.scale();
    let mut o = Array4::zeros((d.b, d.t, d.h, vd));
    let mut ht = Array4::zeros((d.n, d.h, kd, vd));
    let backward = p.do_().is_some();
    let mut gr = backward.then(|| Gradients {
        dq: Array4::zeros((d.b, d.t, d.h, kd)),
        dk: Array4::zeros((d.b, d.t, d.h, kd)),
        dv: Array4::zeros((d.b, d.t, d.h, vd)),
        dg: Array4::zeros((d.b, d.t, d.h, kg)),
        dh0: Array4::zeros((d.n, d.h, kd, vd)),
    });
    let (q, k, v) = (p.q(), p.k(), p.v());
    for sp in p.sequences() {
        let b = sp.batch;
        for h in 0..d.h {
            // Forward: states S_0..S_L (S_0 = h0).
            let mut st = vec![Dd::default(); kd * vd];
            if let Some(h0) = p.h0() {
                for i in 0..kd {
                    for e in 0..vd {
                        st[i * vd + e] = Dd::of(h0[[sp.state, h, i, e]]);
                    }
                }
            }
            let mut states = Vec::with_capacity(sp.len + 1);
            states.push(st.clone());
            for r in 0..sp.len {
                let t = sp.start + r;
                for i in 0..kd {
                    for e in 0..vd {
                        st[i * vd + e] =
                            st[i * vd + e].add(Dd::prod(k[[b, t, h, i]], v[[b, t, h, e]]));
                    }
                }
                for e in 0..vd {
                    let mut acc = Dd::default();
                    for i in 0..kd {
                        acc = acc.add(st[i * vd + e].mul(q[[b, t, h, i]]));
                    }
                    o[[b, t, h, e]] = acc.mul(scale).f64();
                }
                if let (Some(g), Some(dout)) = (gr.as_mut(), p.do_()) {
                    for i in 0..kd {
                        let mut acc = Dd::default();
                        for e in 0..vd {
                            acc = acc.add(st[i * vd + e].mul(dout[[b, t, h, e]]));
                        }
                        g.dq[[b, t, h, i]] = acc.mul(scale).f64();
                    }
                }
                states.push(st.clone());
            }
            for i in 0..kd {
                for e in 0..vd {
                    ht[[sp.state, h, i, e]] = st[i * vd + e].f64();
                }
            }
            // Backward: W_s from the end.
            if let (Some(g), Some(dout)) = (gr.as_mut(), p.do_()) {
                let mut w = vec![Dd::default(); kd * vd];
                if let Some(dht) = p.dht() {
                    for i in 0..kd {
                        for e in 0..vd {
                            w[i * vd + e] = Dd::of(dht[[sp.state, h, i, e]]);
                        }
                    }
                }
                for r in (0..sp.len).rev() {
                    let t = sp.start + r;
                    for i in 0..kd {
                        let sq = Dd::prod(scale, q[[b, t, h, i]]);
                        for e in 0..vd {
                            w[i * vd + e] = w[i * vd + e].add(sq.mul(dout[[b, t, h, e]]));
                        }
                    }
                    for i in 0..kd {
                        let mut acc = Dd::default();
                        for e in 0..vd {
                            acc = acc.add(w[i * vd + e].mul(v[[b, t, h, e]]));
                        }
                        g.dk[[b, t, h, i]] = acc.f64();
                    }
                    for e in 0..vd {
                        let mut acc = Dd::default();
                        for i in 0..kd {
                            acc = acc.add(w[i * vd + e].mul(k[[b, t, h, i]]));
                        }
                        g.dv[[b, t, h, e]] = acc.f64();
                    }
                    // dg_t = rowsum(S_{t-1} * W_t).
                    let prev = &states[r];
                    let mut tot = Dd::default();
                    for i in 0..kd {
                        let mut acc = Dd::default();
                        for e in 0..vd {
                            acc = acc.add(prev[i * vd + e].mul_dd(w[i * vd + e]));
                        }
                        match p.gate_kind() {
                            GateKind::PerChannel => g.dg[[b, t, h, i]] = acc.f64(),
                            GateKind::Scalar => tot = tot.add(acc),
                        }
                    }
                    if p.gate_kind() == GateKind::Scalar {
                        g.dg[[b, t, h, 0]] = tot.f64();
                    }
                }
                for i in 0..kd {
                    for e in 0..vd {
                        g.dh0[[sp.state, h, i, e]] = w[i * vd + e].f64();
                    }
                }
            }
        }
    }
    Solution { o, ht, grads: gr }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dd_product_is_exact() {
        let a = 1.0 + 2f64.powi(-30);
        let p = Dd::prod(a, a);
        assert_eq!(p.hi, 1.0 + 2f64.powi(-29));
        assert_eq!(p.lo, 2f64.powi(-60));
    }
}
