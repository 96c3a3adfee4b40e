//! A PyTorch-style same-dtype reference of GLA: the recurrence written with tensor operations in
//! the kernel's dtype, every operation's result rounded to that dtype, and its autograd. This is
//! FlashAttention's `out_pt` (`attention_ref(..., upcast=False)`) transposed to GLA: what a test
//! author gets from a naive PyTorch reference left in bf16.
//!
//! Per sequence and head, with `r` the rounding to the dtype:
//!
//! ```text
//! q' = r(q scale);  S_0 = r(h0);  a_t = r(exp(g_t))
//! S_t = r( r(a_t * S_{t-1}) + r(k_t v_t^T) )               (elementwise ops, each rounded)
//! o_t = r( q'_t @ S_t )                                    (a reduction: f32 accumulation, one rounding)
//! ```
//!
//! and the backward of exactly these operations (the gate gradient as autograd computes it,
//! `dg_t = r(r(sum_e dS_t * S_{t-1}) * a_t)`, the local form).
//!
//! ```
//! use gla_judge::mutants::same_dtype::recurrence;
//! use gla_reference::{recurrent, Dtype};
//! let p = gla_fixtures::catalog::case("mild").unwrap().problem().unwrap();
//! let pt = recurrence(&p, Dtype::Bf16);
//! let exact = recurrent::forward::<f64>(&p)?;
//! let err = pt.o.iter().zip(exact.o.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
//! assert!(err > 1e-3 && err < 0.5, "{err}");
//! // in f32 it is an f32 recurrence
//! let f = recurrence(&p, Dtype::F32);
//! let err = f.o.iter().zip(exact.o.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
//! assert!(err < 1e-5, "{err}");
//! # Ok::<(), gla_reference::GlaError>(())
//! ```

use gla_reference::{Dtype, GateKind, Gradients, Problem, Solution};
use ndarray::Array4;

/// The same-dtype recurrence and (when `p` has `do`) its autograd, every op rounded to `dtype`.
pub fn recurrence(p: &Problem, dtype: Dtype) -> Solution {
    let d = p.dims();
    let (kd, vd) = (d.k, d.v);
    let r = |x: f32| dtype.round_f32(x);
    let scale = p.scale() as f32;
    let scalar = p.gate_kind() == GateKind::Scalar;
    let kg = if scalar { 1 } else { kd };
    let bwd = p.has_backward();
    let mut o = Array4::<f64>::zeros((d.b, d.t, d.h, vd));
    let mut ht = Array4::<f64>::zeros((d.n, d.h, kd, vd));
    let mut g = Gradients {
        dq: Array4::zeros((d.b, d.t, d.h, kd)),
        dk: Array4::zeros((d.b, d.t, d.h, kd)),
        dv: Array4::zeros((d.b, d.t, d.h, vd)),
        dg: Array4::zeros((d.b, d.t, d.h, kg)),
        dh0: Array4::zeros((d.n, d.h, kd, vd)),
    };
    for s in p.sequences() {
        for h in 0..d.h {
            let at = |t: usize| s.start + t;
            let q = |t: usize, a: usize| r(p.q()[[s.batch, at(t), h, a]] as f32 * scale);
            let k = |t: usize, a: usize| r(p.k()[[s.batch, at(t), h, a]] as f32);
            let v = |t: usize, e: usize| r(p.v()[[s.batch, at(t), h, e]] as f32);
            let alpha = |t: usize, a: usize| r((p.g_at(s.batch, at(t), h, a) as f32).exp());
            // states S_0 .. S_T
            let mut states: Vec<Vec<f32>> = Vec::with_capacity(s.len + 1);
            let mut st = vec![0f32; kd * vd];
            if let Some(h0) = p.h0() {
                for a in 0..kd {
                    for e in 0..vd {
                        st[a * vd + e] = r(h0[[s.state, h, a, e]] as f32);
                    }
                }
            }
            states.push(st.clone());
            for t in 0..s.len {
                for a in 0..kd {
                    let al = alpha(t, a);
                    for e in 0..vd {
                        let x = &mut st[a * vd + e];
                        *x = r(r(al * *x) + r(k(t, a) * v(t, e)));
                    }
                }
                for e in 0..vd {
                    let acc: f32 = (0..kd).map(|a| q(t, a) * st[a * vd + e]).sum();
                    o[[s.batch, at(t), h, e]] = r(acc) as f64;
                }
                if bwd {
                    states.push(st.clone());
                }
            }
            for a in 0..kd {
                for e in 0..vd {
                    ht[[s.state, h, a, e]] = st[a * vd + e] as f64;
                }
            }
            if !bwd {
                continue;
            }
            let dout =
                |t: usize, e: usize| r(p.do_().expect("backward")[[s.batch, at(t), h, e]] as f32);
            let mut ds = vec![0f32; kd * vd];
            if let Some(dht) = p.dht() {
                for a in 0..kd {
                    for e in 0..vd {
                        ds[a * vd + e] = r(dht[[s.state, h, a, e]] as f32);
                    }
                }
            }
            for t in (0..s.len).rev() {
                let st_t = &states[t + 1];
                let st_prev = &states[t];
                for a in 0..kd {
                    for e in 0..vd {
                        let x = &mut ds[a * vd + e];
                        *x = r(*x + r(q(t, a) * dout(t, e)));
                    }
                }
                let mut dgs = 0f32;
                for a in 0..kd {
                    let dqa: f32 = (0..vd).map(|e| dout(t, e) * st_t[a * vd + e]).sum();
                    g.dq[[s.batch, at(t), h, a]] = r(r(dqa) * scale) as f64;
                    let dka: f32 = (0..vd).map(|e| ds[a * vd + e] * v(t, e)).sum();
                    g.dk[[s.batch, at(t), h, a]] = r(dka) as f64;
                    let da: f32 = (0..vd).map(|e| ds[a * vd + e] * st_prev[a * vd + e]).sum();
                    let dga = r(r(da) * alpha(t, a));
                    if scalar {
                        dgs += dga;
                    } else {
                        g.dg[[s.batch, at(t), h, a]] = dga as f64;
                    }
                }
                if scalar {
                    g.dg[[s.batch, at(t), h, 0]] = r(dgs) as f64;
                }
                for e in 0..vd {
                    let dve: f32 = (0..kd).map(|a| ds[a * vd + e] * k(t, a)).sum();
                    g.dv[[s.batch, at(t), h, e]] = r(dve) as f64;
                }
                for a in 0..kd {
                    let al = alpha(t, a);
                    for e in 0..vd {
                        let x = &mut ds[a * vd + e];
                        *x = r(al * *x);
                    }
                }
            }
            for a in 0..kd {
                for e in 0..vd {
                    g.dh0[[s.state, h, a, e]] = ds[a * vd + e] as f64;
                }
            }
        }
    }
    Solution {
        o,
        ht,
        grads: bwd.then_some(g),
    }
}
