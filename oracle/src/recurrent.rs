//! The GLA recurrence and its gradients in MPFR at a fixed precision (docs/math.md §1, 4, 5, 6).
//!
//! Inputs are taken exactly: every f64 of the [`Problem`] is an MPFR value of 53 bits, products
//! of two inputs (`k_t[d] v_t[e]`, `scale q_t[d]`, `scale do_t[e]`) are exact (MPFR's fused
//! `a*b + c*d` and `a + b*c` round once), and the only transcendental, `alpha = exp(g)`, is
//! correctly rounded at the working precision (`g = -inf` is `alpha = 0` exactly, never an
//! MPFR `exp(-inf)`; `g = 0` gives `alpha = 1` exactly). Every operation then rounds once at the
//! working precision `prec`; results are exact up to about `(T + K + V) 2^-prec` times the
//! element's magnitude (see [`crate::magnitude`]).
//!
//! Forward: `S_t = Diag(alpha_t) S_{t-1} + outer(k_t, v_t)`, `o_t = scale S_t^T q_t`, `hT = S_T`.
//! Backward: `dS_T = dhT + scale outer(q_T, do_T)`,
//! `dS_t = Diag(alpha_{t+1}) dS_{t+1} + scale outer(q_t, do_t)`, `dq_t = scale S_t do_t`,
//! `dk_t = dS_t v_t`, `dv_t = dS_t^T k_t`, `dh0 = Diag(alpha_1) dS_1`, and
//! `dg_t = alpha_t rowsum(S_{t-1} * dS_t)` (the local form, `S_0 = h0`) as the oracle's dg. The
//! reverse-cumsum form `sum_{s>=t} (q_s dq_s - k_s dk_s) + rowsum(hT * dhT)` is computed too, as
//! an independent cross-check. Scalar gates: dg is the sum over channels, shape `[B, T, H, 1]`.
//!
//! Parallelism (rayon): the work is split into units (sequence, head, block of value columns).
//! Column `e` of the state, `S[:, e]`, evolves independently of the other columns, and so does
//! `dS[:, e]`; `o[e]`, `dv[e]`, `hT[:, e]` and `dh0[:, e]` are column-local. `dq`, `dk` and the
//! row sums of dg are sums over columns: each unit produces its block's partial sums and they are
//! added (in MPFR) afterwards. A single long sequence of one head is split into about
//! `2 * threads` column blocks, so it still uses every core.
//!
//! Memory: the backward sweep needs `S_{t-1}`. A unit with at most `STORE_ALL_MAX` (2^20) state
//! values `(T + 1) K w` keeps every state from its forward sweep (buffers reused between the
//! units of one evaluation); a larger one keeps a checkpoint of the state every `ceil(sqrt(T))`
//! steps and recomputes each segment (about `2 sqrt(T) K w` MPFR numbers per unit instead of
//! `T K w`, for 3 more MPFR operations per `(t, d, e)`). Both give the same values: the
//! recomputation repeats the forward's operations exactly.

use gla_reference::{GateKind, GlaError, Problem, Result, SeqSpan};
use ndarray::Array4;
use rayon::prelude::*;
use rug::{Assign, Float};

/// Smallest working precision accepted (bits).
pub const MIN_PRECISION: u32 = 53;
/// Largest working precision accepted (bits).
pub const MAX_PRECISION: u32 = 1 << 16;

/// Exact gradients (MPFR values at the working precision).
#[derive(Debug, Clone, PartialEq)]
pub struct ExactGradients {
    /// dL/dq `[B, T, H, K]`.
    pub dq: Array4<Float>,
    /// dL/dk `[B, T, H, K]`.
    pub dk: Array4<Float>,
    /// dL/dv `[B, T, H, V]`.
    pub dv: Array4<Float>,
    /// dL/dg from the local form `alpha_t rowsum(S_{t-1} * dS_t)`, `[B, T, H, Kg]`.
    pub dg: Array4<Float>,
    /// dL/dg from the reverse-cumsum form (independent cross-check), `[B, T, H, Kg]`.
    pub dg_reverse_cumsum: Array4<Float>,
    /// dL/dh0 `[N, H, K, V]`.
    pub dh0: Array4<Float>,
}

/// Result of the MPFR recurrence at one precision.
#[derive(Debug, Clone, PartialEq)]
pub struct ExactSolution {
    /// Working precision in bits.
    pub precision: u32,
    /// Output `[B, T, H, V]`.
    pub o: Array4<Float>,
    /// Final states `[N, H, K, V]`.
    pub ht: Array4<Float>,
    /// Gradients, when the backward pass ran.
    pub grads: Option<ExactGradients>,
}

impl ExactSolution {
    /// Round every value once to f64 (round to nearest, ties to even).
    pub fn to_solution(&self) -> gla_reference::Solution {
        self.round_to(gla_reference::Dtype::F64)
    }

    /// Round every value once, directly from MPFR, to `dtype` (values returned as f64); see
    /// [`crate::round::round_float`]. No double rounding through f64.
    pub fn round_to(&self, dtype: gla_reference::Dtype) -> gla_reference::Solution {
        let r = |a: &Array4<Float>| {
            ndarray::Zip::from(a).par_map_collect(|x| crate::round::round_float(x, dtype))
        };
        gla_reference::Solution {
            o: r(&self.o),
            ht: r(&self.ht),
            grads: self.grads.as_ref().map(|g| gla_reference::Gradients {
                dq: r(&g.dq),
                dk: r(&g.dk),
                dv: r(&g.dv),
                dg: r(&g.dg),
                dh0: r(&g.dh0),
            }),
        }
    }

    /// The reverse-cumsum dg rounded once to `dtype`, when the backward pass ran.
    pub fn dg_reverse_cumsum(&self, dtype: gla_reference::Dtype) -> Option<Array4<f64>> {
        self.grads.as_ref().map(|g| {
            ndarray::Zip::from(&g.dg_reverse_cumsum)
                .par_map_collect(|x| crate::round::round_float(x, dtype))
        })
    }
}

/// Forward pass (o, hT) at `prec` bits.
///
/// Errors: `prec` outside `[MIN_PRECISION, MAX_PRECISION]` ([`GlaError::Options`]).
pub fn forward(p: &Problem, prec: u32) -> Result<ExactSolution> {
    check_precision(prec)?;
    Ok(solve(p, prec, false))
}

/// Forward and backward pass at `prec` bits (needs `do`; `dht` and `h0` default to zeros).
///
/// Errors: `prec` out of range or `do` missing ([`GlaError::Options`]).
pub fn backward(p: &Problem, prec: u32) -> Result<ExactSolution> {
    check_precision(prec)?;
    p.require_backward()?;
    Ok(solve(p, prec, true))
}

pub(crate) fn check_precision(prec: u32) -> Result<()> {
    if !(MIN_PRECISION..=MAX_PRECISION).contains(&prec) {
        return Err(GlaError::Options(format!(
            "oracle precision {prec} bits is outside [{MIN_PRECISION}, {MAX_PRECISION}]"
        )));
    }
    Ok(())
}

/// Per (sequence, head) inputs converted to MPFR (exact).
struct HeadCtx {
    span: SeqSpan,
    h: usize,
    /// alpha_t[d] `[len][kg]` at the working precision.
    alpha: Vec<Float>,
    kg: usize,
    /// q `[len][K]`.
    q: Vec<Float>,
    /// scale * q `[len][K]`.
    sq: Vec<Float>,
    /// k `[len][K]`.
    k: Vec<Float>,
    /// v `[len][V]`.
    v: Vec<Float>,
    /// scale * do `[len][V]`; empty in a forward-only run.
    sdo: Vec<Float>,
}

/// What one (sequence, head, column block) unit produces.
struct BlockOut {
    e0: usize,
    w: usize,
    /// o `[len][w]`.
    o: Vec<Float>,
    /// hT `[K][w]`.
    ht: Vec<Float>,
    /// dv `[len][w]`.
    dv: Vec<Float>,
    /// dh0 `[K][w]`.
    dh0: Vec<Float>,
    /// Partial sums over this block's columns: dq `[len][K]`, dk `[len][K]`,
    /// rowsum(S_{t-1} * dS_t) `[len][K]`, rowsum(hT * dhT) `[K]`.
    dq: Vec<Float>,
    dk: Vec<Float>,
    dgs: Vec<Float>,
    hdht: Vec<Float>,
}

/// Everything one (sequence, head) produces, in local layouts.
struct HeadOut {
    blocks: Vec<BlockOut>,
    dq: Vec<Float>,
    dk: Vec<Float>,
    dg: Vec<Float>,
    dgr: Vec<Float>,
}

fn zeros(prec: u32, n: usize) -> Vec<Float> {
    (0..n).map(|_| Float::new(prec)).collect()
}

fn alpha_of(g: f64, prec: u32) -> Float {
    if g == f64::NEG_INFINITY {
        // alpha = 0 exactly: a state reset. Never evaluate exp(-inf).
        Float::new(prec)
    } else {
        let mut a = Float::with_val(prec, g);
        a.exp_mut();
        a
    }
}

fn build_ctx(p: &Problem, span: SeqSpan, h: usize, prec: u32, bwd: bool) -> HeadCtx {
    let dims = p.dims();
    let (kk, vv, len) = (dims.k, dims.v, span.len);
    let kg = if p.gate_kind() == GateKind::Scalar {
        1
    } else {
        kk
    };
    let (b, t0) = (span.batch, span.start);
    let alpha: Vec<Float> = (0..len * kg)
        .into_par_iter()
        .map(|x| alpha_of(p.g_at(b, t0 + x / kg, h, x % kg), prec))
        .collect();
    // Up to two limbs every operand is held at the working precision: MPFR's fast paths for +
    // and * need all three operands (result included) at the same precision. Inputs are exact at
    // any precision >= 53, the products scale*q and scale*do at any precision >= 106.
    // Above two limbs MPFR has no fast path for *, and its general multiplication costs what the
    // operands' limbs cost: there the inputs are held at 53 bits and the products scale*q and
    // scale*do at 106 (both exact, so every correctly rounded result is the same).
    let (p_in, p_prod) = if prec > 128 { (53, 106) } else { (prec, prec) };
    let scale = Float::with_val(prec, p.scale());
    let conv = |n: usize, w: usize, a: &Array4<f64>| -> Vec<Float> {
        (0..n * w)
            .into_par_iter()
            .map(|x| Float::with_val(p_in, a[[b, t0 + x / w, h, x % w]]))
            .collect()
    };
    let q = conv(len, kk, p.q());
    let sq: Vec<Float> = q
        .par_iter()
        .map(|x| Float::with_val(p_prod, x * &scale))
        .collect();
    let k = conv(len, kk, p.k());
    let v = conv(len, vv, p.v());
    let sdo: Vec<Float> = match (bwd, p.do_()) {
        (true, Some(d)) => conv(len, vv, d)
            .par_iter()
            .map(|x| Float::with_val(p_prod, x * &scale))
            .collect(),
        _ => Vec::new(),
    };
    HeadCtx {
        span,
        h,
        alpha,
        kg,
        q,
        sq,
        k,
        v,
        sdo,
    }
}

/// One step of the state recurrence on a column block: `st = Diag(alpha_i) st + outer(k_i, v_i)`.
///
/// Implemented as an MPFR multiplication, the product `k_i[d] v_i[e]` (exact at precisions of
/// 106 bits and more) and an addition, all operands at the working precision (MPFR's fast
/// paths; about twice as fast as its fused `a*b + c*d`).
#[inline]
#[allow(clippy::too_many_arguments)]
fn state_step(
    ctx: &HeadCtx,
    kk: usize,
    vv: usize,
    e0: usize,
    w: usize,
    i: usize,
    st: &mut [Float],
    kv: &mut Float,
) {
    for d in 0..kk {
        let a = &ctx.alpha[i * ctx.kg + if ctx.kg == 1 { 0 } else { d }];
        let kd = &ctx.k[i * kk + d];
        let row = &mut st[d * w..(d + 1) * w];
        for (e, x) in row.iter_mut().enumerate() {
            *x *= a;
            kv.assign(kd * &ctx.v[i * vv + e0 + e]);
            *x += &*kv;
        }
    }
}

/// `dst = Diag(alpha_i) src + outer(k_i, v_i)` (same roundings as [`state_step`]).
#[inline]
#[allow(clippy::too_many_arguments)]
fn state_step_into(
    ctx: &HeadCtx,
    kk: usize,
    vv: usize,
    e0: usize,
    w: usize,
    i: usize,
    src: &[Float],
    dst: &mut [Float],
    kv: &mut Float,
) {
    for d in 0..kk {
        let a = &ctx.alpha[i * ctx.kg + if ctx.kg == 1 { 0 } else { d }];
        let kd = &ctx.k[i * kk + d];
        for e in 0..w {
            let x = &mut dst[d * w + e];
            x.assign(a * &src[d * w + e]);
            kv.assign(kd * &ctx.v[i * vv + e0 + e]);
            *x += &*kv;
        }
    }
}

/// One step of the reverse sweep at step `i`: `dS = Diag(alpha_{i+1}) dS + scale outer(q_i, do_i)`,
/// and the block's contributions to dk_i, dv_i and rowsum(S_{i-1} * dS_i) (`sprev` = S_{i-1}).
#[inline]
#[allow(clippy::too_many_arguments)]
fn reverse_step(
    ctx: &HeadCtx,
    kk: usize,
    vv: usize,
    e0: usize,
    w: usize,
    i: usize,
    sprev: &[Float],
    ds: &mut [Float],
    dk: &mut [Float],
    dgs: &mut [Float],
    dv: &mut [Float],
    tmp: &mut Float,
) {
    let len = ctx.span.len;
    let dvrow = &mut dv[i * w..(i + 1) * w];
    for d in 0..kk {
        let qd = &ctx.q[i * kk + d];
        let kd = &ctx.k[i * kk + d];
        let anext = if i + 1 < len {
            Some(&ctx.alpha[(i + 1) * ctx.kg + if ctx.kg == 1 { 0 } else { d }])
        } else {
            None
        };
        let dkacc = &mut dk[i * kk + d];
        let dgacc = &mut dgs[i * kk + d];
        for e in 0..w {
            let x = &mut ds[d * w + e];
            if let Some(a) = anext {
                *x *= a;
            }
            tmp.assign(qd * &ctx.sdo[i * vv + e0 + e]);
            *x += &*tmp;
            let x = &ds[d * w + e];
            tmp.assign(x * &ctx.v[i * vv + e0 + e]);
            *dkacc += &*tmp;
            tmp.assign(x * kd);
            dvrow[e] += &*tmp;
            tmp.assign(&sprev[d * w + e] * x);
            *dgacc += &*tmp;
        }
    }
}

/// Largest number of MPFR states (`(len + 1) K w`) a block keeps for its reverse sweep (about
/// 64 bytes each at up to 191 bits); longer blocks keep `sqrt(len)` checkpoints and recompute.
const STORE_ALL_MAX: usize = 1 << 20;

/// Reusable state buffers of one [`solve`] (all at its working precision).
type Pool = std::sync::Mutex<Vec<Vec<Float>>>;

/// One block of value columns `e0..e1` of one (sequence, head) in MPFR: the forward recurrence
/// and, with `bwd`, the reverse sweep over the stored states (or checkpoints) with exact
/// gradients.
///
/// Length (about 200 lines): the forward and reverse sweeps share the block's MPFR state
/// buffers, checkpoints and scratch values (taken once from the pool, since every MPFR
/// allocation is costly); splitting the sweeps apart would pass them through long argument
/// lists.
#[allow(clippy::too_many_arguments)]
fn run_block(
    p: &Problem,
    ctx: &HeadCtx,
    e0: usize,
    e1: usize,
    prec: u32,
    bwd: bool,
    pool: &Pool,
    store_max: usize,
) -> BlockOut {
    let dims = p.dims();
    let (kk, vv) = (dims.k, dims.v);
    let w = e1 - e0;
    let len = ctx.span.len;
    let (st_idx, h) = (ctx.span.state, ctx.h);
    let mut st: Vec<Float> = match p.h0() {
        Some(h0) => (0..kk * w)
            .map(|x| Float::with_val(prec, h0[[st_idx, h, x / w, e0 + x % w]]))
            .collect(),
        None => zeros(prec, kk * w),
    };
    let kw = kk * w;
    // Backward: every state S_i (before step i, i = 0..=len) is kept, `all[i * kw..(i + 1) * kw]`,
    // so the reverse sweep reads S_{i-1} instead of recomputing it (the same values: the same
    // MPFR operations in the same order). Forward only: one state, updated in place.
    // The state buffers come from `pool` (one per concurrently running block, reused: MPFR
    // numbers are allocated once per thread instead of once per block).
    let store_all = bwd && (len + 1) * kw <= store_max;
    let c = ckpt_interval(len);
    let mut ckpts: Vec<Vec<Float>> = Vec::new();
    let mut all: Vec<Float> = Vec::new();
    if store_all {
        all = pool
            .lock()
            .map(|mut v| v.pop())
            .ok()
            .flatten()
            .unwrap_or_default();
        all.truncate((len + 1) * kw);
        let have = all.len();
        all.extend((have..(len + 1) * kw).map(|_| Float::new(prec)));
        for (dst, src) in all[..kw].iter_mut().zip(&st) {
            dst.assign(src);
        }
    }
    let mut o = zeros(prec, len * w);
    let mut dq = if bwd {
        zeros(prec, len * kk)
    } else {
        Vec::new()
    };

    // Forward sweep: state, o, and the block's partial dq = scale * S_t do_t. Dot products are
    // accumulated as an MPFR multiplication into `tmp` and an addition (faster than MPFR's fma
    // at two limbs; one more rounding per term, all at the working precision).
    let mut kv = Float::new(prec);
    let mut tmp = Float::new(prec);
    for i in 0..len {
        if bwd && !store_all && i % c == 0 {
            ckpts.push(st.clone());
        }
        let cur: &[Float] = if store_all {
            let (prev, next) = all.split_at_mut((i + 1) * kw);
            state_step_into(
                ctx,
                kk,
                vv,
                e0,
                w,
                i,
                &prev[i * kw..],
                &mut next[..kw],
                &mut kv,
            );
            &all[(i + 1) * kw..(i + 2) * kw]
        } else {
            state_step(ctx, kk, vv, e0, w, i, &mut st, &mut kv);
            &st
        };
        let orow = &mut o[i * w..(i + 1) * w];
        for d in 0..kk {
            let sqd = &ctx.sq[i * kk + d];
            let srow = &cur[d * w..(d + 1) * w];
            for (oe, x) in orow.iter_mut().zip(srow) {
                tmp.assign(x * sqd);
                *oe += &tmp;
            }
            if bwd {
                let acc = &mut dq[i * kk + d];
                for (e, x) in srow.iter().enumerate() {
                    tmp.assign(x * &ctx.sdo[i * vv + e0 + e]);
                    *acc += &tmp;
                }
            }
        }
    }
    let ht = if store_all {
        all[len * kw..].to_vec()
    } else {
        st
    };
    if !bwd {
        return BlockOut {
            e0,
            w,
            o,
            ht,
            dv: vec![],
            dh0: vec![],
            dq,
            dk: vec![],
            dgs: vec![],
            hdht: vec![],
        };
    }

    // rowsum(hT * dhT) over this block.
    let mut hdht = zeros(prec, kk);
    let mut ds: Vec<Float> = match p.dht() {
        Some(dht) => {
            let ds: Vec<Float> = (0..kk * w)
                .map(|x| Float::with_val(prec, dht[[st_idx, h, x / w, e0 + x % w]]))
                .collect();
            for d in 0..kk {
                for e in 0..w {
                    hdht[d] += &ht[d * w + e] * &ds[d * w + e];
                }
            }
            ds
        }
        None => zeros(prec, kk * w),
    };

    // Reverse sweep; S_{i} (before step i) comes from the stored states, or is recomputed from
    // the checkpoints segment by segment (the same MPFR operations, so the same values).
    let mut dk = zeros(prec, len * kk);
    let mut dgs = zeros(prec, len * kk);
    let mut dv = zeros(prec, len * w);
    if store_all {
        for i in (0..len).rev() {
            let sprev = &all[i * kw..(i + 1) * kw];
            reverse_step(
                ctx, kk, vv, e0, w, i, sprev, &mut ds, &mut dk, &mut dgs, &mut dv, &mut tmp,
            );
        }
        if let Ok(mut v) = pool.lock() {
            v.push(all);
        }
    } else {
        let mut buf = zeros(prec, c.min(len.max(1)) * kw);
        for j in (0..ckpts.len()).rev() {
            let a0 = j * c;
            let a1 = (a0 + c).min(len);
            for (dst, src) in buf[..kw].iter_mut().zip(&ckpts[j]) {
                dst.assign(src);
            }
            for m in 1..(a1 - a0) {
                let (prev, cur) = buf.split_at_mut(m * kw);
                state_step_into(
                    ctx,
                    kk,
                    vv,
                    e0,
                    w,
                    a0 + m - 1,
                    &prev[(m - 1) * kw..],
                    &mut cur[..kw],
                    &mut kv,
                );
            }
            for i in (a0..a1).rev() {
                let sprev = &buf[(i - a0) * kw..(i - a0 + 1) * kw];
                reverse_step(
                    ctx, kk, vv, e0, w, i, sprev, &mut ds, &mut dk, &mut dgs, &mut dv, &mut tmp,
                );
            }
        }
    }
    // dh0 = Diag(alpha_1) dS_1 (= dhT for an empty sequence).
    let mut dh0 = ds;
    if len > 0 {
        for d in 0..kk {
            let a = &ctx.alpha[if ctx.kg == 1 { 0 } else { d }];
            for x in &mut dh0[d * w..(d + 1) * w] {
                *x *= a;
            }
        }
    }
    BlockOut {
        e0,
        w,
        o,
        ht,
        dv,
        dh0,
        dq,
        dk,
        dgs,
        hdht,
    }
}

/// Sum the blocks' partial vectors (consumes them). Each element is the sum of its blocks'
/// values in block order (the same roundings whatever the thread count); elements in parallel.
fn reduce(parts: Vec<&mut Vec<Float>>) -> Vec<Float> {
    let mut it = parts.into_iter();
    let mut acc = match it.next() {
        Some(f) => std::mem::take(f),
        None => return Vec::new(),
    };
    let rest: Vec<&Vec<Float>> = it.map(|p| &*p).collect();
    acc.par_iter_mut()
        .enumerate()
        .with_min_len(1024)
        .for_each(|(x, a)| {
            for part in &rest {
                *a += &part[x];
            }
        });
    acc
}

#[allow(clippy::too_many_arguments)]
fn run_head(
    p: &Problem,
    span: SeqSpan,
    h: usize,
    nblocks: usize,
    prec: u32,
    bwd: bool,
    pool: &Pool,
    store_max: usize,
) -> HeadOut {
    let dims = p.dims();
    let (kk, vv, len) = (dims.k, dims.v, span.len);
    let ctx = build_ctx(p, span, h, prec, bwd);
    let nb = nblocks.clamp(1, vv);
    let bounds: Vec<(usize, usize)> = (0..nb).map(|j| (j * vv / nb, (j + 1) * vv / nb)).collect();
    let mut blocks: Vec<BlockOut> = bounds
        .par_iter()
        .map(|&(e0, e1)| run_block(p, &ctx, e0, e1, prec, bwd, pool, store_max))
        .collect();
    if !bwd {
        return HeadOut {
            blocks,
            dq: vec![],
            dk: vec![],
            dg: vec![],
            dgr: vec![],
        };
    }
    let dq = reduce(blocks.iter_mut().map(|b| &mut b.dq).collect());
    let dk = reduce(blocks.iter_mut().map(|b| &mut b.dk).collect());
    let dgs = reduce(blocks.iter_mut().map(|b| &mut b.dgs).collect());
    let hdht = reduce(blocks.iter_mut().map(|b| &mut b.hdht).collect());
    let kg = ctx.kg;

    // Local form: dg_t[d] = alpha_t[d] * rowsum(S_{t-1} * dS_t)[d]; scalar: sum over d.
    let mut dg = zeros(prec, len * kg);
    for i in 0..len {
        if kg == 1 {
            let mut s = Float::new(prec);
            for d in 0..kk {
                s += &dgs[i * kk + d];
            }
            dg[i].assign(&s * &ctx.alpha[i]);
        } else {
            for d in 0..kk {
                dg[i * kk + d].assign(&dgs[i * kk + d] * &ctx.alpha[i * kk + d]);
            }
        }
    }
    // Reverse-cumsum form: sum_{s>=t} (q_s dq_s - k_s dk_s) + rowsum(hT * dhT).
    let mut dgr = zeros(prec, len * kg);
    let mut acc = hdht;
    for i in (0..len).rev() {
        for d in 0..kk {
            acc[d] += &ctx.q[i * kk + d] * &dq[i * kk + d];
            acc[d] -= &ctx.k[i * kk + d] * &dk[i * kk + d];
        }
        if kg == 1 {
            for a in &acc {
                dgr[i] += a;
            }
        } else {
            for d in 0..kk {
                dgr[i * kk + d].assign(&acc[d]);
            }
        }
    }
    HeadOut {
        blocks,
        dq,
        dk,
        dg,
        dgr,
    }
}

fn zeros4(prec: u32, shape: (usize, usize, usize, usize)) -> Array4<Float> {
    Array4::from_shape_simple_fn(shape, || Float::new(prec))
}

/// Number of (head, column-block) work units the oracle aims for when there are few heads.
const COLUMN_SPLIT_SLOTS: usize = 16;

/// The MPFR recurrence at `prec` (validated by the callers).
pub(crate) fn solve(p: &Problem, prec: u32, bwd: bool) -> ExactSolution {
    solve_with(p, prec, bwd, STORE_ALL_MAX)
}

/// [`solve`] with units of more than `store_max` state values recomputing from checkpoints.
fn solve_with(p: &Problem, prec: u32, bwd: bool, store_max: usize) -> ExactSolution {
    let dims = p.dims();
    let (kk, vv) = (dims.k, dims.v);
    let kg = p.g().shape()[3];
    let seqs = p.sequences();
    let units: Vec<(usize, usize)> = (0..seqs.len())
        .flat_map(|s| (0..dims.h).map(move |h| (s, h)))
        .collect();
    // Enough column blocks that every thread of a typical machine has work. The split is a fixed
    // function of the problem, never of the thread count: the order of the MPFR partial sums (and
    // so the last bits, and `bits_agreed`) must be the same on every machine.
    let want = COLUMN_SPLIT_SLOTS;
    let pool: Pool = std::sync::Mutex::new(Vec::new());
    let nblocks = if units.len() >= want {
        1
    } else {
        want.div_ceil(units.len().max(1))
    };
    let outs: Vec<HeadOut> = units
        .par_iter()
        .map(|&(si, h)| run_head(p, seqs[si], h, nblocks, prec, bwd, &pool, store_max))
        .collect();

    let mut o = zeros4(prec, (dims.b, dims.t, dims.h, vv));
    let mut ht = zeros4(prec, (dims.n, dims.h, kk, vv));
    let mut grads = bwd.then(|| ExactGradients {
        dq: zeros4(prec, (dims.b, dims.t, dims.h, kk)),
        dk: zeros4(prec, (dims.b, dims.t, dims.h, kk)),
        dv: zeros4(prec, (dims.b, dims.t, dims.h, vv)),
        dg: zeros4(prec, (dims.b, dims.t, dims.h, kg)),
        dg_reverse_cumsum: zeros4(prec, (dims.b, dims.t, dims.h, kg)),
        dh0: zeros4(prec, (dims.n, dims.h, kk, vv)),
    });
    for (&(si, h), mut out) in units.iter().zip(outs) {
        let s = seqs[si];
        for blk in &mut out.blocks {
            let w = blk.w;
            for i in 0..s.len {
                for e in 0..w {
                    std::mem::swap(
                        &mut o[[s.batch, s.start + i, h, blk.e0 + e]],
                        &mut blk.o[i * w + e],
                    );
                    if let Some(g) = grads.as_mut() {
                        std::mem::swap(
                            &mut g.dv[[s.batch, s.start + i, h, blk.e0 + e]],
                            &mut blk.dv[i * w + e],
                        );
                    }
                }
            }
            for d in 0..kk {
                for e in 0..w {
                    std::mem::swap(&mut ht[[s.state, h, d, blk.e0 + e]], &mut blk.ht[d * w + e]);
                    if let Some(g) = grads.as_mut() {
                        std::mem::swap(
                            &mut g.dh0[[s.state, h, d, blk.e0 + e]],
                            &mut blk.dh0[d * w + e],
                        );
                    }
                }
            }
        }
        if let Some(g) = grads.as_mut() {
            for i in 0..s.len {
                let t = s.start + i;
                for d in 0..kk {
                    std::mem::swap(&mut g.dq[[s.batch, t, h, d]], &mut out.dq[i * kk + d]);
                    std::mem::swap(&mut g.dk[[s.batch, t, h, d]], &mut out.dk[i * kk + d]);
                }
                for d in 0..kg {
                    std::mem::swap(&mut g.dg[[s.batch, t, h, d]], &mut out.dg[i * kg + d]);
                    std::mem::swap(
                        &mut g.dg_reverse_cumsum[[s.batch, t, h, d]],
                        &mut out.dgr[i * kg + d],
                    );
                }
            }
        }
    }
    ExactSolution {
        precision: prec,
        o,
        ht,
        grads,
    }
}

/// Checkpoint interval for the backward sweeps: about sqrt(T), at least 1.
fn ckpt_interval(len: usize) -> usize {
    ((len as f64).sqrt().ceil() as usize).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gla_reference::Gates;

    /// Keeping every state and recomputing from checkpoints give bit-identical results.
    #[test]
    fn stored_states_match_checkpoint_recompute() {
        let (b, t, h, k, v) = (1, 37, 2, 5, 6);
        let f = |s: f64| {
            move |(_, t, h, d): (usize, usize, usize, usize)| {
                ((t * 7 + h * 3 + d * 5) as f64 * s).sin()
            }
        };
        let q = Array4::from_shape_fn((b, t, h, k), f(0.37));
        let kk = Array4::from_shape_fn((b, t, h, k), f(0.53));
        let vv = Array4::from_shape_fn((b, t, h, v), f(0.71));
        let mut g = Array4::from_shape_fn((b, t, h, k), |(_, t, h, d)| {
            -0.05 - ((t + h + d) % 4) as f64 * 0.1
        });
        g[[0, 11, 1, 2]] = f64::NEG_INFINITY;
        let do_ = Array4::from_shape_fn((b, t, h, v), f(0.29));
        let h0 = Array4::from_shape_fn((1, h, k, v), f(0.91));
        let dht = Array4::from_shape_fn((1, h, k, v), f(0.13));
        let p = Problem::builder(q, kk, vv, Gates::PerChannel(g))
            .h0(h0)
            .do_(do_)
            .dht(dht)
            .build()
            .unwrap();
        for prec in [127, 191] {
            let stored = solve_with(&p, prec, true, usize::MAX);
            let recomputed = solve_with(&p, prec, true, 0);
            assert_eq!(stored, recomputed);
            assert_eq!(stored.to_solution(), recomputed.to_solution());
        }
    }
}
