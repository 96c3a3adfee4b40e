//! Problem and solution transformations used by the properties: time slices, sequence splits,
//! head permutations, scaling, perturbations, concatenation of results.
//!
//! Every rebuilt problem keeps the original's scale explicitly (the default K^-0.5 would be the
//! same, but a custom scale must survive) and its gate kind.

use gla_reference::{GateKind, Gates, Gradients, Problem, Result, Solution};
use ndarray::{concatenate, s, Array4, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Parts of a problem, all in the `[B, T, H, *]` / `[N, H, K, V]` layouts (gates `[B,T,H,Kg]`).
#[derive(Debug, Clone)]
pub struct Parts {
    /// Queries.
    pub q: Array4<f64>,
    /// Keys.
    pub k: Array4<f64>,
    /// Values.
    pub v: Array4<f64>,
    /// Gates `[B, T, H, Kg]`.
    pub g: Array4<f64>,
    /// Gate kind.
    pub kind: GateKind,
    /// Initial state.
    pub h0: Option<Array4<f64>>,
    /// Output gradient.
    pub do_: Option<Array4<f64>>,
    /// Final-state gradient.
    pub dht: Option<Array4<f64>>,
    /// Varlen boundaries.
    pub cu: Option<Vec<usize>>,
    /// Scale.
    pub scale: f64,
}

impl Parts {
    /// Take a problem apart.
    pub fn of(p: &Problem) -> Parts {
        Parts {
            q: p.q().clone(),
            k: p.k().clone(),
            v: p.v().clone(),
            g: p.g().clone(),
            kind: p.gate_kind(),
            h0: p.h0().cloned(),
            do_: p.do_().cloned(),
            dht: p.dht().cloned(),
            cu: p.cu_seqlens().map(|c| c.to_vec()),
            scale: p.scale(),
        }
    }

    /// Validate and build.
    pub fn build(self) -> Result<Problem> {
        let gates = match self.kind {
            GateKind::PerChannel => Gates::PerChannel(self.g),
            GateKind::Scalar => Gates::Scalar(self.g.index_axis_move(Axis(3), 0)),
        };
        let mut b = Problem::builder(self.q, self.k, self.v, gates)
            .h0_opt(self.h0)
            .do_opt(self.do_)
            .dht_opt(self.dht)
            .scale(self.scale);
        if let Some(cu) = self.cu {
            b = b.cu_seqlens(&cu.iter().map(|&x| x as i64).collect::<Vec<_>>());
        }
        b.build()
    }
}

/// Rows `start..end` of a dense problem (h0 and dhT kept as they are).
pub fn slice_time(p: &Problem, start: usize, end: usize) -> Result<Problem> {
    let mut x = Parts::of(p);
    let sl = |a: &Array4<f64>| a.slice(s![.., start..end, .., ..]).to_owned();
    x.q = sl(&x.q);
    x.k = sl(&x.k);
    x.v = sl(&x.v);
    x.g = sl(&x.g);
    x.do_ = x.do_.as_ref().map(sl);
    x.cu = None;
    x.build()
}

/// The same problem with other initial state and final-state gradient.
pub fn with_states(
    p: &Problem,
    h0: Option<Array4<f64>>,
    dht: Option<Array4<f64>>,
) -> Result<Problem> {
    let mut x = Parts::of(p);
    x.h0 = h0;
    x.dht = dht;
    x.build()
}

/// Each sequence of a problem as its own dense problem (B = 1, with its `h0[n]` and `dhT[n]`).
pub fn split_sequences(p: &Problem) -> Result<Vec<Problem>> {
    let x = Parts::of(p);
    p.sequences()
        .into_iter()
        .map(|sp| {
            let r = sp.start..sp.start + sp.len;
            let b = sp.batch;
            let sl = |a: &Array4<f64>| a.slice(s![b..b + 1, r.clone(), .., ..]).to_owned();
            let st = |a: &Array4<f64>| a.slice(s![sp.state..sp.state + 1, .., .., ..]).to_owned();
            Parts {
                q: sl(&x.q),
                k: sl(&x.k),
                v: sl(&x.v),
                g: sl(&x.g),
                kind: x.kind,
                h0: x.h0.as_ref().map(st),
                do_: x.do_.as_ref().map(sl),
                dht: x.dht.as_ref().map(st),
                cu: None,
                scale: x.scale,
            }
            .build()
        })
        .collect()
}

/// Stitch per-sequence solutions (from [`split_sequences`]) back into the packed layout of `p`.
pub fn pack_solutions(p: &Problem, parts: &[Solution]) -> Solution {
    let d = p.dims();
    let mut o = Array4::zeros((d.b, d.t, d.h, d.v));
    let mut ht = Array4::zeros((d.n, d.h, d.k, d.v));
    let has_grads = parts.iter().all(|s| s.grads.is_some()) && !parts.is_empty();
    let kg = p.g().shape()[3];
    let mut gr = has_grads.then(|| Gradients {
        dq: Array4::zeros((d.b, d.t, d.h, d.k)),
        dk: Array4::zeros((d.b, d.t, d.h, d.k)),
        dv: Array4::zeros((d.b, d.t, d.h, d.v)),
        dg: Array4::zeros((d.b, d.t, d.h, kg)),
        dh0: Array4::zeros((d.n, d.h, d.k, d.v)),
    });
    for (sp, sol) in p.sequences().into_iter().zip(parts) {
        let r = sp.start..sp.start + sp.len;
        let b = sp.batch;
        o.slice_mut(s![b..b + 1, r.clone(), .., ..]).assign(&sol.o);
        ht.slice_mut(s![sp.state..sp.state + 1, .., .., ..])
            .assign(&sol.ht);
        if let (Some(g), Some(sg)) = (gr.as_mut(), sol.grads.as_ref()) {
            g.dq.slice_mut(s![b..b + 1, r.clone(), .., ..])
                .assign(&sg.dq);
            g.dk.slice_mut(s![b..b + 1, r.clone(), .., ..])
                .assign(&sg.dk);
            g.dv.slice_mut(s![b..b + 1, r.clone(), .., ..])
                .assign(&sg.dv);
            g.dg.slice_mut(s![b..b + 1, r.clone(), .., ..])
                .assign(&sg.dg);
            g.dh0
                .slice_mut(s![sp.state..sp.state + 1, .., .., ..])
                .assign(&sg.dh0);
        }
    }
    Solution { o, ht, grads: gr }
}

/// Concatenate the results of a prefix run (rows before the split) and of its continuation:
/// time-indexed outputs concatenated, hT from the continuation, dh0 from the prefix.
pub fn concat_time(a: &Solution, b: &Solution) -> Solution {
    let cat = |x: &Array4<f64>, y: &Array4<f64>| {
        concatenate(Axis(1), &[x.view(), y.view()]).expect("same shapes")
    };
    Solution {
        o: cat(&a.o, &b.o),
        ht: b.ht.clone(),
        grads: match (&a.grads, &b.grads) {
            (Some(ga), Some(gb)) => Some(Gradients {
                dq: cat(&ga.dq, &gb.dq),
                dk: cat(&ga.dk, &gb.dk),
                dv: cat(&ga.dv, &gb.dv),
                dg: cat(&ga.dg, &gb.dg),
                dh0: ga.dh0.clone(),
            }),
            _ => None,
        },
    }
}

/// Permute the heads of a problem: head `h` of the result is head `perm[h]` of `p`.
pub fn permute_heads(p: &Problem, perm: &[usize]) -> Result<Problem> {
    let mut x = Parts::of(p);
    let pa = |a: &Array4<f64>, axis: usize| a.select(Axis(axis), perm);
    x.q = pa(&x.q, 2);
    x.k = pa(&x.k, 2);
    x.v = pa(&x.v, 2);
    x.g = pa(&x.g, 2);
    x.do_ = x.do_.as_ref().map(|a| pa(a, 2));
    x.h0 = x.h0.as_ref().map(|a| pa(a, 1));
    x.dht = x.dht.as_ref().map(|a| pa(a, 1));
    x.build()
}

/// Permute the heads of a solution like [`permute_heads`].
pub fn permute_heads_solution(s: &Solution, perm: &[usize]) -> Solution {
    let t = |a: &Array4<f64>| a.select(Axis(2), perm);
    let st = |a: &Array4<f64>| a.select(Axis(1), perm);
    Solution {
        o: t(&s.o),
        ht: st(&s.ht),
        grads: s.grads.as_ref().map(|g| Gradients {
            dq: t(&g.dq),
            dk: t(&g.dk),
            dv: t(&g.dv),
            dg: t(&g.dg),
            dh0: st(&g.dh0),
        }),
    }
}

/// Multiply v and h0 by `f` (a power of two for the exact-scaling property).
pub fn scale_v_h0(p: &Problem, f: f64) -> Result<Problem> {
    let mut x = Parts::of(p);
    x.v = x.v.mapv(|a| a * f);
    x.h0 = x.h0.map(|a| a.mapv(|a| a * f));
    x.build()
}

/// Replace q, k, v, g and do at every time step `t >= from` of every batch row with fresh values
/// (signed normal for q, k, v, do; gates in [-1, 0] or -inf), deterministically from `seed`.
/// Values are rounded to f32 (representable in every candidate's f32/f64 inputs); callers that
/// need bf16 inputs round the problem afterwards.
pub fn perturb_from(p: &Problem, from: usize, seed: u64) -> Result<Problem> {
    let mut x = Parts::of(p);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let t = x.q.shape()[1];
    let f32r = |v: f64| v as f32 as f64;
    let fresh = |a: &mut Array4<f64>, rng: &mut ChaCha8Rng, gate: bool| {
        let sh = a.shape().to_vec();
        for b in 0..sh[0] {
            for tt in from..t {
                for h in 0..sh[2] {
                    for c in 0..sh[3] {
                        a[[b, tt, h, c]] = if gate {
                            if rng.gen_range(0..10) == 0 {
                                f64::NEG_INFINITY
                            } else {
                                f32r(-rng.gen::<f64>())
                            }
                        } else {
                            f32r(crate::strategies::normal(rng))
                        };
                    }
                }
            }
        }
    };
    fresh(&mut x.q, &mut rng, false);
    fresh(&mut x.k, &mut rng, false);
    fresh(&mut x.v, &mut rng, false);
    fresh(&mut x.g, &mut rng, true);
    if let Some(d) = x.do_.as_mut() {
        fresh(d, &mut rng, false);
    }
    x.build()
}

/// Replace every input of sequence `n` (its rows, its h0 and dhT) with fresh values.
pub fn perturb_sequence(p: &Problem, n: usize, seed: u64) -> Result<Problem> {
    let mut x = Parts::of(p);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let sp = p.sequences()[n];
    let f32r = |v: f64| v as f32 as f64;
    for tt in sp.start..sp.start + sp.len {
        for h in 0..x.q.shape()[2] {
            for c in 0..x.q.shape()[3] {
                x.q[[sp.batch, tt, h, c]] = f32r(crate::strategies::normal(&mut rng));
                x.k[[sp.batch, tt, h, c]] = f32r(crate::strategies::normal(&mut rng));
            }
            for c in 0..x.g.shape()[3] {
                x.g[[sp.batch, tt, h, c]] = f32r(-rng.gen::<f64>());
            }
            for c in 0..x.v.shape()[3] {
                x.v[[sp.batch, tt, h, c]] = f32r(crate::strategies::normal(&mut rng));
                if let Some(d) = x.do_.as_mut() {
                    d[[sp.batch, tt, h, c]] = f32r(crate::strategies::normal(&mut rng));
                }
            }
        }
    }
    let n = sp.state;
    let mut st = |a: &mut Array4<f64>| {
        a.slice_mut(s![n..n + 1, .., .., ..])
            .mapv_inplace(|_| f32r(crate::strategies::normal(&mut rng)))
    };
    // h0 and dht of the sequence get fresh values when present.
    if let Some(h0) = x.h0.as_mut() {
        st(h0);
    }
    if let Some(dht) = x.dht.as_mut() {
        st(dht);
    }
    x.build()
}

/// The rows of a solution's time-indexed outputs (o, dq, dk, dv, dg) restricted to `t < end` in
/// every batch row, plus nothing else: used by the causality property.
pub fn prefix_outputs(s: &Solution, end: usize) -> Solution {
    let sl = |a: &Array4<f64>| a.slice(s![.., ..end, .., ..]).to_owned();
    Solution {
        o: sl(&s.o),
        ht: Array4::zeros((0, 0, 0, 0)),
        grads: s.grads.as_ref().map(|g| Gradients {
            dq: sl(&g.dq),
            // dk, dv, dg depend on later inputs: excluded (empty).
            dk: Array4::zeros((0, 0, 0, 0)),
            dv: Array4::zeros((0, 0, 0, 0)),
            dg: Array4::zeros((0, 0, 0, 0)),
            dh0: Array4::zeros((0, 0, 0, 0)),
        }),
    }
}

/// Split a solution of `p` into per-sequence solutions (inverse of [`pack_solutions`]).
pub fn unpack_solution(p: &Problem, s: &Solution) -> Vec<Solution> {
    p.sequences()
        .into_iter()
        .map(|sp| {
            let r = sp.start..sp.start + sp.len;
            let b = sp.batch;
            let sl = |a: &Array4<f64>| a.slice(s![b..b + 1, r.clone(), .., ..]).to_owned();
            let st = |a: &Array4<f64>| a.slice(s![sp.state..sp.state + 1, .., .., ..]).to_owned();
            Solution {
                o: sl(&s.o),
                ht: st(&s.ht),
                grads: s.grads.as_ref().map(|g| Gradients {
                    dq: sl(&g.dq),
                    dk: sl(&g.dk),
                    dv: sl(&g.dv),
                    dg: sl(&g.dg),
                    dh0: st(&g.dh0),
                }),
            }
        })
        .collect()
}

/// Set every gate (all channels) at time step `t` of every batch row and head to `-inf`.
pub fn reset_at(p: &Problem, t: usize) -> Result<Problem> {
    let mut x = Parts::of(p);
    x.g.slice_mut(s![.., t, .., ..]).fill(f64::NEG_INFINITY);
    x.build()
}

/// Rows `start..end` of the time-indexed outputs (o, dq, dk, dv, dg) and hT; dh0 left out (empty).
pub fn time_rows(s: &Solution, start: usize, end: usize) -> Solution {
    let sl = |a: &Array4<f64>| a.slice(s![.., start..end, .., ..]).to_owned();
    Solution {
        o: sl(&s.o),
        ht: s.ht.clone(),
        grads: s.grads.as_ref().map(|g| Gradients {
            dq: sl(&g.dq),
            dk: sl(&g.dk),
            dv: sl(&g.dv),
            dg: sl(&g.dg),
            dh0: Array4::zeros((0, 0, 0, 0)),
        }),
    }
}
