//! The mutant benchmark (issue "verifier power"): realistic bugs of a GLA kernel, each a named
//! candidate, judged on the catalog cases by glacheck's verdict and by the anchor projects' test
//! rules ([`anchors`]), to show which judge catches what ([`bench`](mod@bench)).
//!
//! Each [`Mutant`] is one small change. Most are built over the public reference API: a problem
//! transform (a dropped `h0`, a wrong scale, gates clamped to a floor), a rounding-plan variation
//! of the chunked form (an intermediate rounded to bf16 or TF32 where the declared arithmetic
//! keeps f32), or a post-processing of an honest solution (a scale error, a truncating cast, a dg
//! without its `hT` term, a dg reverse cumsum in bf16). The bugs that live inside the algorithm
//! (masks, anchors, factorizations, accumulators) use the small textbook forward of
//! [`textbook`] with one fault switch each.
//!
//! Every mutant declares the arithmetic it claims (bf16 for fla-style kernels, f32 for the
//! f32-path bugs) and has an origin: the honest implementation it differs from
//! ([`Origin`]). A judge is credited with catching a mutant on a case only where it fails the
//! mutant's tensor and passes the origin's same tensor (a judge that fails the honest kernel too
//! has not found the bug).
//!
//! ```
//! use gla_judge::mutants::{mutants, Mutant};
//! let all = mutants();
//! assert!(all.len() >= 15);
//! let scale = all.iter().find(|m| m.name == "scale-0.5%").unwrap();
//! let p = gla_fixtures::catalog::case("mild").unwrap().problem().unwrap();
//! assert!((scale.applies)(&p));
//! let c = (scale.build)(&p)?;
//! assert!(c.has_gradients());
//! # Ok::<(), gla_reference::GlaError>(())
//! ```

pub mod anchors;
pub mod bench;
pub mod same_dtype;
pub mod textbook;

use crate::baseline::{plan_for, DeclaredPlan};
use crate::verify::Candidate;
use gla_reference::bounds::DgForm;
use gla_reference::chunked::{self, ChunkOptions};
use gla_reference::rounding::RoundingPlan;
use gla_reference::{default_scale, Dtype, GateKind, Gates, Problem, Result, Solution};
use ndarray::{Array4, Axis};
use textbook::Faults;

/// The honest implementation a mutant differs from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The chunked reference in f32 at C = 64, c = 16 with the declared precision's plan
    /// (`crate::baseline::plan_for`), forward and backward.
    Twin,
    /// The textbook forward of [`textbook`] without faults (forward only).
    Textbook,
}

/// One mutant: a named, realistic bug of a GLA implementation.
#[derive(Debug, Clone, Copy)]
pub struct Mutant {
    /// Short name (the benchmark table's row).
    pub name: &'static str,
    /// The bug, in one sentence.
    pub description: &'static str,
    /// The arithmetic the mutant claims (`glacheck verify --precision`).
    pub precision: Dtype,
    /// The honest implementation it differs from.
    pub origin: Origin,
    /// True when the bug can show on this problem (e.g. `-inf` gates present, K != V).
    pub applies: fn(&Problem) -> bool,
    /// The mutant's outputs on a problem, with the dtypes it stores them in.
    pub build: fn(&Problem) -> Result<Candidate>,
}

/// The chunk and sub-chunk of every mutant and origin (fla's).
pub const CHUNK: usize = 64;
/// Sub-chunk length of the mutants (fla's).
pub const SUB_CHUNK: usize = 16;

/// A solution as a candidate of declared `precision` ([`Candidate::from_solution`]).
pub fn candidate_of(s: &Solution, precision: Dtype) -> Candidate {
    Candidate::from_solution(s, precision)
}

/// The chunked reference in f32 at (64, 16) with `plan`: forward and backward when the problem
/// has `do`.
pub fn chunked_f32(p: &Problem, plan: RoundingPlan) -> Result<Solution> {
    let o = ChunkOptions {
        chunk: CHUNK,
        sub_chunk: SUB_CHUNK,
        plan,
    };
    if p.has_backward() {
        chunked::backward_with::<f32>(p, &o, DgForm::ReverseCumsum)
    } else {
        chunked::forward::<f32>(p, &o)
    }
}

/// The origin's candidate on `p` for a mutant of declared `precision`.
pub fn origin_candidate(origin: Origin, precision: Dtype, p: &Problem) -> Result<Candidate> {
    Ok(match origin {
        Origin::Twin => candidate_of(
            &chunked_f32(p, plan_for(precision, DeclaredPlan::Fla))?,
            precision,
        ),
        Origin::Textbook => candidate_of(
            &textbook::forward(p, CHUNK, SUB_CHUNK, precision, &Faults::none()),
            precision,
        ),
    })
}

/// A copy of `p` with other gates, initial state or scale.
fn rebuild(
    p: &Problem,
    gates: Option<Gates>,
    h0: Option<Option<Array4<f64>>>,
    scale: Option<f64>,
) -> Result<Problem> {
    let mut b = Problem::builder(
        p.q().clone(),
        p.k().clone(),
        p.v().clone(),
        gates.unwrap_or_else(|| p.gates()),
    )
    .h0_opt(h0.unwrap_or_else(|| p.h0().cloned()))
    .do_opt(p.do_().cloned())
    .dht_opt(p.dht().cloned())
    .scale(scale.unwrap_or(p.scale()));
    if let Some(cu) = p.cu_seqlens() {
        b = b.cu_seqlens(&cu.iter().map(|&x| x as i64).collect::<Vec<_>>());
    }
    b.build()
}

/// Round an f32 value to bf16 by truncation (round toward zero): the upper 16 bits.
pub fn bf16_truncate(x: f64) -> f64 {
    let f = x as f32;
    if !f.is_finite() {
        return f as f64;
    }
    f32::from_bits(f.to_bits() & 0xffff_0000) as f64
}

fn twin(p: &Problem, precision: Dtype) -> Result<Candidate> {
    Ok(candidate_of(
        &chunked_f32(p, plan_for(precision, DeclaredPlan::Fla))?,
        precision,
    ))
}

fn any_gate(p: &Problem, f: impl Fn(f64) -> bool) -> bool {
    p.g().iter().any(|&g| f(g))
}

fn always(_: &Problem) -> bool {
    true
}

fn has_backward(p: &Problem) -> bool {
    p.has_backward()
}

/// `rowsum(ht * dht)` per (sequence, head, channel), summed over channels for scalar gates:
/// the `hT` term of the reverse-cumsum dg, `[N, H, Kg]`.
fn ht_term(p: &Problem, ht: &Array4<f64>) -> Array4<f64> {
    let d = p.dims();
    let kg = if p.gate_kind() == GateKind::Scalar {
        1
    } else {
        d.k
    };
    let mut out = Array4::<f64>::zeros((d.n, d.h, kg, 1));
    if let Some(dht) = p.dht() {
        for n in 0..d.n {
            for h in 0..d.h {
                for a in 0..d.k {
                    let mut s = 0.0f32;
                    for e in 0..d.v {
                        s += (ht[[n, h, a, e]] as f32) * (dht[[n, h, a, e]] as f32);
                    }
                    let c = if kg == 1 { 0 } else { a };
                    out[[n, h, c, 0]] += s as f64;
                }
            }
        }
    }
    out
}

/// The twin with f32 gradients (the final gradient cast skipped), for post-processing of dg.
fn twin_f32_grads(p: &Problem) -> Result<Solution> {
    chunked_f32(p, RoundingPlan::kernel_default(Dtype::Bf16).grads(None))
}

/// Every mutant, in table order.
pub fn mutants() -> Vec<Mutant> {
    use Origin::{Textbook, Twin};
    let bf16 = Dtype::Bf16;
    let f32_ = Dtype::F32;
    let m = |name, precision, origin, applies, build, description| Mutant {
        name,
        description,
        precision,
        origin,
        applies,
        build,
    };
    vec![
        m("scale-0.5%", bf16, Twin, always, scale_half_percent,
          "Every output 0.5% too large (a systematic scale error), stored as the honest kernel stores it."),
        m("scale-0.25%", bf16, Twin, always, scale_quarter_percent,
          "Every output 0.25% too large (a normalizing constant off by a quarter percent, below fla's 0.5% RMS rule), stored as the honest kernel stores it."),
        m("cast-truncated", bf16, Twin, always, cast_truncated,
          "The final casts of o, dq, dk, dv, dg to bf16 truncate (round toward zero, e.g. `bits >> 16`) instead of rounding to nearest."),
        m("A-bf16-in-f32", f32_, Twin, always, a_bf16,
          "An f32 kernel rounds the intra-chunk matrix A to bf16 before A @ V (the plan keeps it f32)."),
        m("A-cast-truncated", bf16, Textbook, always, a_truncated,
          "The intra-chunk matrix A is cast to bf16 by truncation (round toward zero) before A @ V."),
        m("state-bf16-in-f32", f32_, Twin, always, state_bf16,
          "An f32 kernel stores the chunk states H_p in bf16 (the plan keeps them f32)."),
        m("tf32-in-f32", f32_, Twin, always, tf32_in_f32,
          "A kernel declared f32 feeds every GEMM operand as TF32 (torch.backends.cuda.matmul.allow_tf32 left on)."),
        m("state-acc-bf16", bf16, Textbook, always, state_acc_bf16,
          "The running state is accumulated in bf16 (rounded after the decay and after every rank-1 update) instead of f32."),
        m("AV-acc-bf16", bf16, Textbook, always, av_acc_bf16,
          "One GEMM, A @ V, accumulates in bf16 (every partial sum rounded) instead of f32."),
        m("Gl-bf16", bf16, Textbook, always, gl_bf16,
          "The chunk-local cumulative gate is stored in bf16 (fla's chunk_local_cumsum without output_dtype=float32)."),
        m("drop-h0-one-seq", bf16, Twin, drop_h0_applies, drop_h0,
          "The initial state of one sequence (the last) of a batch or varlen pack is dropped (an offset bug in the h0 pointer)."),
        m("mask-partial-chunk", bf16, Textbook, partial_applies, mask_partial,
          "Off-by-one boundary check in a partial last chunk: its last valid row is treated as padding."),
        m("gate-twice-boundary", bf16, Textbook, multi_chunk_applies, gate_twice,
          "The gate at a chunk boundary is applied twice: the carried state is decayed by the next chunk's first gate, which that chunk's cumulative gate applies again."),
        m("scale-V^-0.5", bf16, Twin, scale_v_applies, scale_v,
          "The default scale is computed from the value size, V^-0.5, instead of the key size, K^-0.5 (K != V)."),
        m("inf-gate-NaN", bf16, Textbook, has_neg_inf, inf_nan,
          "No reset handling: after a -inf gate the cumulative gate is -inf and exp(Gl_i - Gl_j) = exp(-inf + inf) = NaN (F2)."),
        m("inf-gate-floor", bf16, Twin, below_floor, inf_floor,
          "Gates clamped to a finite floor (-20) to dodge the NaN: a -inf gate leaves exp(-20) = 2e-9 of the old state instead of an exact reset."),
        m("naive-exp-factor", bf16, Textbook, always, naive_exp,
          "exp(Gl_i - Gl_j) computed as exp(Gl_i) * exp(-Gl_j): exp of a positive exponent overflows for tiny decays and strong gates, 0 * inf = NaN (F1, F4)."),
        m("anchor-late", bf16, Textbook, always, anchor_late,
          "The off-diagonal sub-chunk anchor one row late behind an exponent guard min(x, 0): the first query row of each sub-chunk loses its factor exp(-g)."),
        m("state-carry-bf16", bf16, Textbook, multi_chunk_applies, state_carry_bf16,
          "The state carried between chunks is kept in bf16 (rounded to nearest once per chunk) instead of an f32 accumulator."),
        m("ht-bf16-readback", bf16, Twin, always, ht_bf16_readback,
          "The final state is written from the kernel's bf16 state tile: hT rounded to bf16, then stored as the f32 the kernel declares."),
        m("dh0-bf16-readback", bf16, Twin, has_backward, dh0_bf16_readback,
          "The initial-state gradient is written from the bf16 dstate tile the dk/dv GEMMs use: dh0 rounded to bf16, then stored as f32."),
        m("state-cast-truncated", bf16, Textbook, always, state_truncated,
          "The chunk states H_p are cast to bf16 by truncation (round toward zero) instead of rounding to nearest."),
        m("log2e-bf16", bf16, Textbook, always, log2e_bf16,
          "exp(x) computed as exp2(x log2 e) with log2 e held in bf16 (1.4453125): every decay factor exp(x) becomes exp(1.0018 x)."),
        m("dg-no-hT-term", bf16, Twin, has_dht, dg_no_ht,
          "The gate gradient misses the final-state term rowsum(hT * dhT)."),
        m("dg-revcumsum-bf16", bf16, Twin, has_backward, dg_rc_bf16,
          "The reverse cumsum of dg accumulates in bf16 (fla's chunk_global_cumsum with a bf16 output)."),
    ]
}

fn scale_half_percent(p: &Problem) -> Result<Candidate> {
    let mut c = twin(p, Dtype::Bf16)?;
    for (_, x, st) in c.tensors.iter_mut() {
        let st = *st;
        x.mapv_inplace(|v| st.round(v * 1.005));
    }
    Ok(c)
}

fn scale_quarter_percent(p: &Problem) -> Result<Candidate> {
    let mut c = twin(p, Dtype::Bf16)?;
    for (_, x, st) in c.tensors.iter_mut() {
        let st = *st;
        x.mapv_inplace(|v| st.round(v * 1.0025));
    }
    Ok(c)
}

fn cast_truncated(p: &Problem) -> Result<Candidate> {
    let s = chunked_f32(
        p,
        RoundingPlan::kernel_default(Dtype::Bf16)
            .o(None)
            .grads(None),
    )?;
    let mut c = candidate_of(&s, Dtype::F32);
    for (name, x, st) in c.tensors.iter_mut() {
        if !matches!(*name, "ht" | "dh0") {
            x.mapv_inplace(bf16_truncate);
            *st = Dtype::Bf16;
        }
    }
    Ok(c)
}

fn a_bf16(p: &Problem) -> Result<Candidate> {
    Ok(candidate_of(
        &chunked_f32(p, RoundingPlan::none().a(Some(Dtype::Bf16)))?,
        Dtype::F32,
    ))
}

fn state_bf16(p: &Problem) -> Result<Candidate> {
    Ok(candidate_of(
        &chunked_f32(p, RoundingPlan::none().state(Some(Dtype::Bf16)))?,
        Dtype::F32,
    ))
}

fn tf32_in_f32(p: &Problem) -> Result<Candidate> {
    // a tf32 kernel's plan (every product operand in TF32) and the diagonal blocks too
    let plan = crate::baseline::plan_for(Dtype::Tf32, crate::baseline::DeclaredPlan::Fla)
        .diag(Some(Dtype::Tf32));
    Ok(candidate_of(&chunked_f32(p, plan)?, Dtype::F32))
}

fn textbook_with(p: &Problem, f: Faults) -> Result<Candidate> {
    Ok(candidate_of(
        &textbook::forward(p, CHUNK, SUB_CHUNK, Dtype::Bf16, &f),
        Dtype::Bf16,
    ))
}

fn state_acc_bf16(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            state_acc_low: true,
            ..Faults::none()
        },
    )
}

fn state_carry_bf16(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            state_carry_low: true,
            ..Faults::none()
        },
    )
}

/// The honest twin with one f32 tensor (`ht` or `dh0`) rounded to bf16 and still stored as f32.
fn readback_bf16(p: &Problem, tensor: &str) -> Result<Candidate> {
    let mut c = twin(p, Dtype::Bf16)?;
    for (name, x, _) in c.tensors.iter_mut() {
        if *name == tensor {
            x.mapv_inplace(|v| Dtype::Bf16.round(v));
        }
    }
    Ok(c)
}

fn ht_bf16_readback(p: &Problem) -> Result<Candidate> {
    readback_bf16(p, "ht")
}

fn dh0_bf16_readback(p: &Problem) -> Result<Candidate> {
    readback_bf16(p, "dh0")
}

fn state_truncated(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            state_truncate: true,
            ..Faults::none()
        },
    )
}

fn log2e_bf16(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            log2e_low: true,
            ..Faults::none()
        },
    )
}

fn a_truncated(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            a_truncate: true,
            ..Faults::none()
        },
    )
}

fn av_acc_bf16(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            av_acc_low: true,
            ..Faults::none()
        },
    )
}

fn gl_bf16(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            gl_low: true,
            ..Faults::none()
        },
    )
}

fn drop_h0_applies(p: &Problem) -> bool {
    p.dims().n >= 2
        && p.h0().is_some_and(|h| {
            h.index_axis(Axis(0), p.dims().n - 1)
                .iter()
                .any(|&x| x != 0.0)
        })
}

fn drop_h0(p: &Problem) -> Result<Candidate> {
    let mut h0 = p.h0().cloned();
    if let Some(h) = h0.as_mut() {
        let last = h.shape()[0] - 1;
        h.index_axis_mut(Axis(0), last).fill(0.0);
    }
    let q = rebuild(p, None, Some(h0), None)?;
    twin(&q, Dtype::Bf16)
}

fn partial_applies(p: &Problem) -> bool {
    p.sequences().iter().any(|s| s.len % CHUNK != 0)
}

fn mask_partial(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            mask_partial: true,
            ..Faults::none()
        },
    )
}

fn multi_chunk_applies(p: &Problem) -> bool {
    p.sequences().iter().any(|s| s.len > CHUNK)
}

fn gate_twice(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            gate_twice: true,
            ..Faults::none()
        },
    )
}

fn scale_v_applies(p: &Problem) -> bool {
    let d = p.dims();
    d.k != d.v && p.scale() == default_scale(d.k)
}

fn scale_v(p: &Problem) -> Result<Candidate> {
    let q = rebuild(p, None, None, Some(default_scale(p.dims().v)))?;
    twin(&q, Dtype::Bf16)
}

fn has_neg_inf(p: &Problem) -> bool {
    any_gate(p, |g| g == f64::NEG_INFINITY)
}

fn inf_nan(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            naive_inf: true,
            ..Faults::none()
        },
    )
}

/// The floor of `inf-gate-floor`.
pub const GATE_FLOOR: f64 = -20.0;

fn below_floor(p: &Problem) -> bool {
    any_gate(p, |g| g < GATE_FLOOR)
}

fn inf_floor(p: &Problem) -> Result<Candidate> {
    let g = p.g().mapv(|g| g.max(GATE_FLOOR));
    let gates = match p.gate_kind() {
        GateKind::PerChannel => Gates::PerChannel(g),
        GateKind::Scalar => Gates::Scalar(g.index_axis(Axis(3), 0).to_owned()),
    };
    let q = rebuild(p, Some(gates), None, None)?;
    twin(&q, Dtype::Bf16)
}

fn naive_exp(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            naive_exp: true,
            ..Faults::none()
        },
    )
}

fn anchor_late(p: &Problem) -> Result<Candidate> {
    textbook_with(
        p,
        Faults {
            anchor_late: true,
            ..Faults::none()
        },
    )
}

fn has_dht(p: &Problem) -> bool {
    p.has_backward() && p.dht().is_some()
}

/// Apply `f(dg_row, sequence state index, head)` to the f32 dg of `s`, then cast the gradients
/// to bf16 as the honest kernel does.
fn with_dg(
    p: &Problem,
    s: Solution,
    f: impl Fn(&mut Solution, &Problem) -> Result<()>,
) -> Result<Candidate> {
    let mut s = s;
    f(&mut s, p)?;
    Ok(candidate_of(&s, Dtype::Bf16))
}

fn dg_no_ht(p: &Problem) -> Result<Candidate> {
    with_dg(p, twin_f32_grads(p)?, |s, p| {
        let term = ht_term(p, &s.ht);
        let g = s.grads.as_mut().expect("backward");
        for sq in p.sequences() {
            for t in sq.start..sq.start + sq.len {
                for h in 0..p.dims().h {
                    for c in 0..g.dg.shape()[3] {
                        let x = g.dg[[sq.batch, t, h, c]] as f32 - term[[sq.state, h, c, 0]] as f32;
                        g.dg[[sq.batch, t, h, c]] = x as f64;
                    }
                }
            }
        }
        Ok(())
    })
}

/// fla 0.6.0's `chunk_gla` evaluation of the gate gradient's reverse cumsum inside a chunk
/// (fla/ops/gla/chunk.py, `b_dg - tl.cumsum(b_dg, 0) + tl.sum(b_dg, 0) + b_dgk`): with the chunk's
/// terms x_s = q_s dq_s - k_s dk_s (f32, from the twin's f32 gradients),
/// `dg_t = ((x_t - P_t) + S) + carry` in f32, where P_t is the chunk's inclusive prefix sum (in
/// order), S its total summed as a tree (Triton's `tl.sum` is a tree reduction, so S and the last
/// P_t differ in their roundings) and carry the reverse cumsum of everything after the chunk (with
/// the hT term), cast to bf16. Exact in exact arithmetic; in floating point its error scales with
/// the chunk's largest partial sums, not with the suffix sum_{s >= t} |x_s| that `M_dg` measures,
/// so rows whose suffix is small next to earlier rows lose every digit. Not in [`mutants`] (on the catalog's
/// cases the f32 rounding of those sums stays far below the bf16 bound): it replays the defect
/// the Hypothesis strategy found in fla's kernel on a GPU, on the problem it shrank to
/// (fixtures/regressions/fla_chunk_gla_dg_total_minus_prefix.safetensors; judge/tests/power.rs).
pub fn dg_chunk_total_minus_prefix(p: &Problem) -> Result<Candidate> {
    with_dg_terms(p, |x, ht| {
        // chunks from the last; carry = reverse cumsum after the chunk (direct, f32)
        let mut dg = vec![0f32; x.len()];
        let mut carry = ht;
        let starts: Vec<usize> = (0..x.len()).step_by(CHUNK).collect();
        for &c0 in starts.iter().rev() {
            let c1 = (c0 + CHUNK).min(x.len());
            let total = tree_sum(&x[c0..c1]);
            let mut prefix = 0f32;
            for t in c0..c1 {
                prefix += x[t];
                dg[t] = ((x[t] - prefix) + total) + carry;
            }
            carry = x[c0..c1].iter().rev().fold(carry, |a, &v| a + v);
        }
        dg
    })
}

/// Pairwise (tree) f32 sum: halves summed separately, then added.
fn tree_sum(x: &[f32]) -> f32 {
    match x.len() {
        0 => 0.0,
        1 => x[0],
        n => tree_sum(&x[..n.next_power_of_two() / 2]) + tree_sum(&x[n.next_power_of_two() / 2..]),
    }
}

fn dg_rc_bf16(p: &Problem) -> Result<Candidate> {
    with_dg_terms(p, |x, ht| {
        let r = |v: f32| Dtype::Bf16.round_f32(v);
        let mut dg = vec![0f32; x.len()];
        let mut acc = r(ht);
        for t in (0..x.len()).rev() {
            acc = r(acc + x[t]);
            dg[t] = acc;
        }
        dg
    })
}

/// The twin's outputs (f32 gradients) with dg recomputed by `rc` from the reverse-cumsum terms:
/// for every (sequence, head, gate column), `rc(x, ht)` gets the terms x_t = q_t dq_t - k_t dk_t
/// (f32, summed over channels for scalar gates) in time order and the `hT` term rowsum(hT * dhT),
/// and returns dg for each row.
fn with_dg_terms(p: &Problem, rc: impl Fn(&[f32], f32) -> Vec<f32>) -> Result<Candidate> {
    with_dg(p, twin_f32_grads(p)?, |s, p| {
        let term = ht_term(p, &s.ht);
        let d = p.dims();
        let scalar = p.gate_kind() == GateKind::Scalar;
        let g = s.grads.as_mut().expect("backward");
        let kg = if scalar { 1 } else { d.k };
        for sq in p.sequences() {
            for h in 0..d.h {
                for c in 0..kg {
                    let chans = if scalar { 0..d.k } else { c..c + 1 };
                    let x: Vec<f32> = (sq.start..sq.start + sq.len)
                        .map(|t| {
                            let mut x = 0f32;
                            for a in chans.clone() {
                                x += p.q()[[sq.batch, t, h, a]] as f32
                                    * g.dq[[sq.batch, t, h, a]] as f32
                                    - p.k()[[sq.batch, t, h, a]] as f32
                                        * g.dk[[sq.batch, t, h, a]] as f32;
                            }
                            x
                        })
                        .collect();
                    let dg = rc(&x, term[[sq.state, h, c, 0]] as f32);
                    for (i, v) in dg.into_iter().enumerate() {
                        g.dg[[sq.batch, sq.start + i, h, c]] = v as f64;
                    }
                }
            }
        }
        Ok(())
    })
}
