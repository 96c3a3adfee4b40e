//! A small, self-contained textbook chunked GLA forward (docs/math.md §3) in f32 with fla's
//! low-precision rounding points, and named fault switches for the mutants whose bug lives inside
//! the algorithm (which `gla_reference::chunked` does not expose).
//!
//! Per (sequence, head), chunks of `C` rows; within a chunk the cumulative log gate restarts
//! after every `-inf` gate (a reset), so `exp(G_i - G_j)` is exactly 0 across a reset and never
//! evaluated as `-inf - (-inf)`:
//!
//! ```text
//! o_i = scale (round(q_i exp(Gl_i)) . round(H_p)) + sum_{j <= i} round(A_ij) v_j,  then round(o_i)
//! A_ij (sub-chunk I > J, anchor a = Gl at the first row of I) = scale (q_i exp(Gl_i - a)) . (k_j exp(a - Gl_j))
//! A_ij (same sub-chunk, j <= i) = scale sum_d q_i[d] k_j[d] exp(Gl_i[d] - Gl_j[d])
//! H_{p+1} = exp(Gl_last) H_p + sum_j round(k_j exp(Gl_last - Gl_j)) v_j^T      (f32 accumulator)
//! ```
//!
//! `round` is the low-precision format `low` (bf16 for fla's bf16 kernels; f32 makes it a plain
//! f32 algorithm). With [`Faults::none`] this is an honest implementation of fla's bf16 forward
//! plan (`RoundingPlan::kernel_default`), judged as one in the mutant benchmark's false-alarm
//! rows. Each fault switch is one realistic bug; see [`Faults`].
//!
//! ```
//! use gla_judge::mutants::textbook::{forward, Faults};
//! use gla_reference::{chunked, ChunkOptions, Dtype, Gates, Problem, RoundingPlan};
//! use ndarray::Array4;
//! let f = |i: usize| ((i * 7919) % 1000) as f64 / 500.0 - 1.0;
//! let (b, t, h, k, v) = (1, 40, 1, 4, 3);
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| f(t * 31 + d));
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| f(t * 17 + d + 3));
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| f(t * 13 + e + 9));
//! let mut g = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| -f(t + d).abs() / 4.0);
//! g[[0, 9, 0, 1]] = f64::NEG_INFINITY;
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).build()?;
//! let mine = forward(&p, 16, 4, Dtype::F32, &Faults::none());
//! let reference = chunked::forward::<f64>(&p, &ChunkOptions::new(16, 4)?)?;
//! let err = mine.o.iter().zip(reference.o.iter()).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
//! assert!(err < 1e-5, "{err}");
//! // the -inf gate is a reset: with the naive cumsum it is NaN
//! let naive = forward(&p, 16, 4, Dtype::F32, &Faults { naive_inf: true, ..Faults::none() });
//! assert!(naive.o.iter().any(|x| x.is_nan()));
//! # Ok::<(), gla_reference::GlaError>(())
//! ```

use gla_reference::{Dtype, Problem, Solution};
use ndarray::Array4;

/// The fault switches of the textbook forward; each one a realistic bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Off-by-one boundary check in a partial last chunk (`L < C` valid rows): rows `< L - 1`
    /// are taken as valid, so the last valid row is treated as padding (its key and value miss
    /// the intra-chunk product and the state update, its output is never written).
    pub mask_partial: bool,
    /// The off-diagonal sub-chunk anchor one row late (`a = Gl` at the query block's second row)
    /// in a kernel that guards every exponent with `min(x, 0)` (the "every exponent that reaches
    /// exp is <= 0" rule, as glacheck's own kernels do): the query factor `exp(Gl_i - a)` of the
    /// block's first row has the positive exponent `-g_{first+1}`, which the guard clamps to 0,
    /// so that row's off-diagonal entries miss a factor `exp(-g_{first+1})`.
    pub anchor_late: bool,
    /// The naive factorization `exp(Gl_i - Gl_j) = exp(Gl_i) * exp(-Gl_j)` for every intra-chunk
    /// entry: `exp(-Gl_j)` overflows to inf once `-Gl_j > 88.7` (tiny decays, strong gates),
    /// while `exp(Gl_i)` underflows: `0 * inf = NaN` (docs/math.md §7, F1 and F4).
    pub naive_exp: bool,
    /// Plain cumulative gates without reset handling: after a `-inf` gate, `Gl = -inf` and
    /// `exp(Gl_i - Gl_j) = exp(-inf + inf) = NaN` (docs/math.md §7, F2).
    pub naive_inf: bool,
    /// The gate at a chunk boundary applied twice: the state carried into the next chunk is also
    /// decayed by that chunk's first gate, which the chunk's own cumulative gate applies again.
    pub gate_twice: bool,
    /// The running state accumulated in the low-precision format (rounded after the decay and
    /// after every rank-1 update) instead of f32.
    pub state_acc_low: bool,
    /// The state carried from one chunk to the next rounded to the low-precision format (the
    /// kernel keeps its state tile in bf16 between chunks, e.g. to reuse the tensor-core operand)
    /// instead of an f32 accumulator; the rank-1 updates within a chunk stay f32.
    pub state_carry_low: bool,
    /// One GEMM, `A @ V`, accumulated in the low-precision format (every partial sum rounded).
    pub av_acc_low: bool,
    /// The chunk-local cumulative gate stored in the low-precision format (the cumsum is computed
    /// in f32 but written as bf16).
    pub gl_low: bool,
    /// The intra-chunk matrix A cast to bf16 by truncation (round toward zero, the upper 16 bits
    /// of the f32 value) instead of rounding to nearest (only with `low` = bf16).
    pub a_truncate: bool,
    /// The chunk-state snapshot `H_p` (stored in the low-precision format) cast by truncation
    /// instead of rounding to nearest (only with `low` = bf16).
    pub state_truncate: bool,
    /// Every `exp(x)` computed as `exp2(x log2 e)` with the constant `log2 e` held in bf16
    /// (1.4453125 instead of 1.4426950...): every decay factor `exp(x)` becomes `exp(1.0018 x)`.
    pub log2e_low: bool,
}

impl Faults {
    /// No fault: the honest textbook forward.
    pub fn none() -> Faults {
        Faults::default()
    }
}

/// The textbook chunked forward in f32 with chunk `chunk`, sub-chunk `sub` (a divisor of
/// `chunk`), rounding points in `low` (bf16, f16, or f32 for none) and the given faults.
/// Returns `o` and `ht`.
///
/// Length (about 210 lines): deliberately one function that reads top to bottom like the
/// formulas in the module docs, so that each fault switch sits next to the line it breaks.
pub fn forward(p: &Problem, chunk: usize, sub: usize, low: Dtype, faults: &Faults) -> Solution {
    let d = p.dims();
    let (kd, vd) = (d.k, d.v);
    let mut o = Array4::<f64>::zeros((d.b, d.t, d.h, vd));
    let mut ht = Array4::<f64>::zeros((d.n, d.h, kd, vd));
    let r = |x: f32| low.round_f32(x);
    // exp of a log gate difference (<= 0 in every honest use); `log2e_low` holds log2 e in bf16
    let log2e = if faults.log2e_low {
        Dtype::Bf16.round_f32(std::f32::consts::LOG2_E)
    } else {
        std::f32::consts::LOG2_E
    };
    let ex = |x: f32| -> f32 {
        if faults.log2e_low {
            (x * log2e).exp2()
        } else {
            x.exp()
        }
    };
    let scale = p.scale() as f32;
    let chunk = chunk.max(1);
    let sub = sub.clamp(1, chunk);
    for s in p.sequences() {
        for h in 0..d.h {
            // the running state H (K x V), f32 (or low with state_acc_low)
            let mut st = vec![0f32; kd * vd];
            if let Some(h0) = p.h0() {
                for a in 0..kd {
                    for e in 0..vd {
                        st[a * vd + e] = h0[[s.state, h, a, e]] as f32;
                    }
                }
            }
            let mut c0 = 0;
            while c0 < s.len {
                let lc = chunk.min(s.len - c0);
                let nvalid = if faults.mask_partial && lc < chunk {
                    lc - 1
                } else {
                    lc
                };
                let row = |i: usize| s.start + c0 + i;
                let q = |i: usize, a: usize| p.q()[[s.batch, row(i), h, a]] as f32;
                let k = |i: usize, a: usize| p.k()[[s.batch, row(i), h, a]] as f32;
                let v = |i: usize, e: usize| p.v()[[s.batch, row(i), h, e]] as f32;
                // cumulative gates: gl[i][a] (restarted after the last reset lr[i][a] when reset
                // handling is on; rows >= nvalid are padding with g = 0)
                let mut gl = vec![0f32; lc * kd];
                let mut lr = vec![-1i64; lc * kd];
                for a in 0..kd {
                    let (mut run, mut last) = (0f32, -1i64);
                    for i in 0..lc {
                        let g = if i < nvalid {
                            p.g_at(s.batch, row(i), h, a) as f32
                        } else {
                            0.0
                        };
                        if g == f32::NEG_INFINITY && !faults.naive_inf {
                            run = 0.0;
                            last = i as i64;
                        } else {
                            run += g;
                        }
                        gl[i * kd + a] = if faults.gl_low { r(run) } else { run };
                        lr[i * kd + a] = last;
                    }
                }
                let gl_ = |i: usize, a: usize| gl[i * kd + a];
                let lr_ = |i: usize, a: usize| lr[i * kd + a];
                // exp(G_i - G_j) for j <= i (0 across a reset)
                let decay = |i: usize, j: usize, a: usize| -> f32 {
                    if lr_(i, a) > j as i64 {
                        0.0
                    } else if faults.naive_exp {
                        ex(gl_(i, a)) * ex(-gl_(j, a))
                    } else {
                        ex(gl_(i, a) - gl_(j, a))
                    }
                };
                // exp(G_i) from the chunk start (0 after a reset inside the chunk)
                let from_start = |i: usize, a: usize| -> f32 {
                    if lr_(i, a) >= 0 {
                        0.0
                    } else {
                        ex(gl_(i, a))
                    }
                };
                // the anchored factor exp(G_i - G_anchor) for any i (inf across a reset that lies
                // between a later anchor and i)
                let anchored = |i: usize, anchor: usize, a: usize| -> f32 {
                    if i >= anchor {
                        decay(i, anchor, a)
                    } else if faults.anchor_late {
                        // the exponent guard of a kernel: min(x, 0)
                        1.0
                    } else if lr_(anchor, a) > i as i64 {
                        f32::INFINITY
                    } else {
                        ex(gl_(i, a) - gl_(anchor, a))
                    }
                };
                // inter-chunk part with the stored (rounded) state snapshot
                let snap: Vec<f32> = st
                    .iter()
                    .map(|&x| {
                        if faults.state_truncate && low == Dtype::Bf16 {
                            f32::from_bits(x.to_bits() & 0xffff_0000)
                        } else {
                            r(x)
                        }
                    })
                    .collect();
                let mut out = vec![0f32; lc * vd];
                for i in 0..nvalid {
                    let qd: Vec<f32> = (0..kd).map(|a| r(q(i, a) * from_start(i, a))).collect();
                    for e in 0..vd {
                        let mut acc = 0f32;
                        for a in 0..kd {
                            acc += qd[a] * snap[a * vd + e];
                        }
                        out[i * vd + e] = scale * acc;
                    }
                }
                // intra-chunk A (rounded), then A @ V
                for i in 0..nvalid {
                    let bi = i / sub;
                    let first = bi * sub;
                    let anchor = if faults.anchor_late && first + 1 < nvalid {
                        first + 1
                    } else {
                        first
                    };
                    let mut arow = vec![0f32; i + 1];
                    for (j, aij) in arow.iter_mut().enumerate() {
                        let mut acc = 0f32;
                        if j < first && !faults.naive_exp {
                            for a in 0..kd {
                                let fq = scale * q(i, a) * anchored(i, anchor, a);
                                let fk = k(j, a) * decay(anchor, j, a);
                                acc += fq * fk;
                            }
                        } else {
                            for a in 0..kd {
                                acc += q(i, a) * k(j, a) * decay(i, j, a);
                            }
                            acc *= scale;
                        }
                        *aij = if faults.a_truncate && low == Dtype::Bf16 {
                            f32::from_bits(acc.to_bits() & 0xffff_0000)
                        } else {
                            r(acc)
                        };
                    }
                    for e in 0..vd {
                        let mut acc = 0f32;
                        for (j, aij) in arow.iter().enumerate() {
                            acc += aij * v(j, e);
                            if faults.av_acc_low {
                                acc = r(acc);
                            }
                        }
                        out[i * vd + e] += acc;
                    }
                }
                for i in 0..nvalid {
                    for e in 0..vd {
                        o[[s.batch, row(i), h, e]] = r(out[i * vd + e]) as f64;
                    }
                }
                // state update
                if nvalid > 0 {
                    let last = nvalid - 1;
                    for a in 0..kd {
                        let dl = from_start(last, a);
                        let kdec: Vec<f32> = (0..nvalid)
                            .map(|j| r(k(j, a) * decay(last, j, a)))
                            .collect();
                        for e in 0..vd {
                            let x = &mut st[a * vd + e];
                            *x *= dl;
                            if faults.state_acc_low {
                                *x = r(*x);
                            }
                            for (j, kj) in kdec.iter().enumerate() {
                                *x += kj * v(j, e);
                                if faults.state_acc_low {
                                    *x = r(*x);
                                }
                            }
                        }
                    }
                }
                if faults.state_carry_low {
                    st.iter_mut().for_each(|x| *x = r(*x));
                }
                c0 += lc;
                if faults.gate_twice && c0 < s.len {
                    for a in 0..kd {
                        let g = p.g_at(s.batch, s.start + c0, h, a) as f32;
                        let alpha = ex(g);
                        for e in 0..vd {
                            st[a * vd + e] *= alpha;
                        }
                    }
                }
            }
            for a in 0..kd {
                for e in 0..vd {
                    ht[[s.state, h, a, e]] = st[a * vd + e] as f64;
                }
            }
        }
    }
    Solution { o, ht, grads: None }
}
