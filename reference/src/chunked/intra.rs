//! The intra-chunk part of the chunked form: the matrix `A` of each chunk from its sub-chunk blocks
//! (off-diagonal blocks with anchored decay factors, diagonal blocks with elementwise decays), its
//! products with `V` and, in the backward, with `dO`, and the row scans the gradients need.

use super::*;

/// Per-chunk workspace of the intra-chunk part (allocated once per (sequence, head)), holding
/// the decay factors the forward computes and the backward reuses: the off-diagonal query
/// decays and key factors (anchor = first row of each query sub-chunk) and the diagonal
/// sub-blocks' elementwise decays.
pub(super) struct Intra<T> {
    /// `round(A)`, `[lp, lp]` (row stride lp), lower triangular.
    pub(super) a: Vec<T>,
    /// `exp(Gl_r - Gl_a)` for the rows r of query sub-chunks I >= 1 (anchor a = first row of I), `[C, K]`.
    pub(super) qd: Vec<T>,
    /// `round(k_r * exp(Gl_a - Gl_r))`, rows r < a of each query sub-chunk I >= 1, concatenated.
    pub(super) kf: Vec<T>,
    /// `decay(j -> i)` for every (i, j >= first row of the block, j <= i) of each diagonal block.
    pub(super) dexp: Vec<T>,
    /// Scratch `[C, K]` (query factors, products).
    pub(super) t1: Vec<T>,
    /// Scratch `[C, K]`.
    pub(super) t2: Vec<T>,
    /// Scratch `[K]` (rounded diagonal factor).
    pub(super) buf: Vec<T>,
    pub(super) ones: Vec<T>,
    /// Local-form dg only: the off-diagonal parts of dq (key blocks before the row's block) and
    /// of dk (query blocks after it) per chunk row, `[C, K]` each (written by [`Self::backward`]
    /// when asked) and the full-block sums per sub-chunk `[NC, K]`.
    pub(super) dqoff: Vec<T>,
    pub(super) dkoff: Vec<T>,
    pub(super) r1: Vec<T>,
}

impl<T: Real> Intra<T> {
    pub(super) fn new(cs: usize, sc: usize, kk: usize) -> Self {
        let nc = cs.div_ceil(sc);
        Intra {
            a: vec![T::zero(); cs * cs],
            qd: vec![T::zero(); cs * kk],
            kf: vec![T::zero(); sc * nc * nc.saturating_sub(1) / 2 * kk],
            dexp: vec![T::zero(); nc * sc * (sc + 1) / 2 * kk],
            t1: vec![T::zero(); cs * kk],
            t2: vec![T::zero(); cs * kk],
            buf: vec![T::zero(); kk],
            ones: vec![T::one(); kk],
            dqoff: Vec::new(),
            dkoff: Vec::new(),
            r1: Vec::new(),
        }
    }

    /// The intra-chunk matrix A with secondary chunking (see the module docs), rounded per
    /// `plan.a`, for chunk rows `q`, `k` (`[lp, K]`). Keeps the decays for [`Self::backward`].
    #[inline(always)]
    pub(super) fn forward(
        &mut self,
        cum: &Cum<T>,
        q: &[T],
        k: &[T],
        kk: usize,
        opts: &ChunkOptions,
        scale: T,
    ) {
        let lp = q.len() / kk;
        let sc = opts.sub_chunk;
        let plan = &opts.plan;
        let a = &mut self.a[..lp * lp];
        a.fill(T::zero());
        let (mut koff, mut slot) = (0usize, 0usize);
        for i0 in (0..lp).step_by(sc) {
            let i1 = (i0 + sc).min(lp);
            let nb = i1 - i0;
            if i0 > 0 {
                // Off-diagonal blocks I > J in one product, anchored at the first row of query
                // block I: (scale Q_I exp(Gl_I - a)) @ (K_<I exp(a - Gl_<I))^T, both factors <= 1.
                let qd = &mut self.qd[i0 * kk..i1 * kk];
                for r in 0..nb {
                    cum.dec_row(i0 + r, i0 as isize, &mut qd[r * kk..(r + 1) * kk]);
                }
                let qf = &mut self.t1[..nb * kk];
                factor_into(&q[i0 * kk..i1 * kk], qd, scale, qf, plan.offdiag_q);
                let kf = &mut self.kf[koff * kk..(koff + i0) * kk];
                for r in 0..i0 {
                    cum.dec_row(i0, r as isize, &mut kf[r * kk..(r + 1) * kk]);
                }
                for (o, &kv) in kf.iter_mut().zip(&k[..i0 * kk]) {
                    *o = T::one() * kv * *o;
                }
                round_slice(kf, plan.offdiag_k);
                gemm(
                    (nb, kk, i0),
                    T::one(),
                    qf,
                    (kk, 1),
                    kf,
                    (1, kk),
                    T::zero(),
                    &mut a[i0 * lp..],
                    lp,
                );
                koff += i0;
            }
            // Diagonal block, elementwise in log space; j > i never evaluated.
            for i in i0..i1 {
                let qi = &q[i * kk..(i + 1) * kk];
                for j in i0..=i {
                    let kj = &k[j * kk..(j + 1) * kk];
                    let e = &mut self.dexp[slot * kk..(slot + 1) * kk];
                    slot += 1;
                    cum.dec_row(i, j as isize, e);
                    let acc = if plan.diag.is_some() {
                        for ((b, &x), &ev) in self.buf.iter_mut().zip(qi).zip(e.iter()) {
                            *b = round1(x * ev, plan.diag);
                        }
                        seg::dot3(&self.buf, kj, &self.ones)
                    } else {
                        seg::dot3(qi, e, kj)
                    };
                    a[i * lp + j] = scale * acc;
                }
            }
        }
        round_slice(a, plan.a);
    }

    /// Intra-chunk parts of dq and dk from `da` (`[lp, lp]`, masked and rounded), added to `dq`
    /// and `dk` (`[lp, K]`): off-diagonal blocks as matrix products (dq: the forward's anchors
    /// and factors; dk: anchor = last valid row of the key block), diagonal blocks elementwise
    /// with the forward's decays. Must follow [`Self::forward`] on the same chunk. With `keep_off`
    /// the off-diagonal parts are also stored per row in `self.dqoff` / `self.dkoff` (zero rows
    /// where a row has none) for [`Self::dg_local`].
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub(super) fn backward(
        &mut self,
        cum: &Cum<T>,
        q: &[T],
        k: &[T],
        da: &[T],
        kk: usize,
        opts: &ChunkOptions,
        dq: &mut [T],
        dk: &mut [T],
        keep_off: bool,
    ) {
        let lp = q.len() / kk;
        let sc = opts.sub_chunk;
        let plan = &opts.plan;
        if keep_off {
            let n = opts.chunk * kk;
            sized(&mut self.dqoff, n)[..lp.min(sc) * kk].fill(T::zero());
            let last0 = (lp - 1) / sc * sc;
            sized(&mut self.dkoff, n)[last0 * kk..lp * kk].fill(T::zero());
        }
        let (mut koff, mut slot) = (0usize, 0usize);
        for i0 in (0..lp).step_by(sc) {
            let i1 = (i0 + sc).min(lp);
            let nb = i1 - i0;
            if i0 > 0 {
                // dq, query block I, anchor a = first row of I: (dA_I,<I @ K*exp(a - Gl)) * exp(Gl_I - a)
                let kf = &self.kf[koff * kk..(koff + i0) * kk];
                let t = &mut self.t1[..nb * kk];
                gemm(
                    (nb, i0, kk),
                    T::one(),
                    &da[i0 * lp..],
                    (lp, 1),
                    kf,
                    (kk, 1),
                    T::zero(),
                    t,
                    kk,
                );
                for ((o, &tv), &ev) in dq[i0 * kk..i1 * kk]
                    .iter_mut()
                    .zip(t.iter())
                    .zip(&self.qd[i0 * kk..i1 * kk])
                {
                    *o += tv * ev;
                }
                if keep_off {
                    for ((o, &tv), &ev) in self.dqoff[i0 * kk..i1 * kk]
                        .iter_mut()
                        .zip(t.iter())
                        .zip(&self.qd[i0 * kk..i1 * kk])
                    {
                        *o = tv * ev;
                    }
                }
                koff += i0;
            }
            if i1 < lp {
                // dk, key block J = [i0, i1), anchor b = its last valid row:
                // (dA_>J,J^T @ Q*exp(Gl - b)) * exp(b - Gl_J)
                let b = i1 - 1;
                let nq = lp - i1;
                let qf = &mut self.t1[..nq * kk];
                for r in 0..nq {
                    cum.dec_row(i1 + r, b as isize, &mut qf[r * kk..(r + 1) * kk]);
                }
                for (o, &qv) in qf.iter_mut().zip(&q[i1 * kk..lp * kk]) {
                    *o = T::one() * qv * *o;
                }
                round_slice(qf, plan.offdiag_q);
                let t = &mut self.t2[..nb * kk];
                gemm(
                    (nb, nq, kk),
                    T::one(),
                    &da[i1 * lp + i0..],
                    (1, lp),
                    qf,
                    (kk, 1),
                    T::zero(),
                    t,
                    kk,
                );
                let dec = &mut self.t1[..nb * kk];
                for r in 0..nb {
                    cum.dec_row(b, (i0 + r) as isize, &mut dec[r * kk..(r + 1) * kk]);
                }
                for ((o, &tv), &ev) in dk[i0 * kk..i1 * kk]
                    .iter_mut()
                    .zip(t.iter())
                    .zip(dec.iter())
                {
                    *o += tv * ev;
                }
                if keep_off {
                    for ((o, &tv), &ev) in self.dkoff[i0 * kk..i1 * kk]
                        .iter_mut()
                        .zip(t.iter())
                        .zip(dec.iter())
                    {
                        *o = tv * ev;
                    }
                }
            }
            // Diagonal block, elementwise with the forward's decays; j > i never evaluated.
            for i in i0..i1 {
                let qi = &q[i * kk..(i + 1) * kk];
                for j in i0..=i {
                    let kj = &k[j * kk..(j + 1) * kk];
                    let e = &self.dexp[slot * kk..(slot + 1) * kk];
                    slot += 1;
                    let daij = da[i * lp + j];
                    let dqi = &mut dq[i * kk..(i + 1) * kk];
                    if plan.diag.is_none() {
                        for ((o, &ev), &kv) in dqi.iter_mut().zip(e).zip(kj) {
                            *o += daij * (kv * ev);
                        }
                    } else {
                        for ((o, &ev), &kv) in dqi.iter_mut().zip(e).zip(kj) {
                            *o += daij * round1(kv * ev, plan.diag);
                        }
                    }
                    let dkj = &mut dk[j * kk..(j + 1) * kk];
                    if plan.diag.is_none() {
                        for ((o, &ev), &qv) in dkj.iter_mut().zip(e).zip(qi) {
                            *o += daij * (qv * ev);
                        }
                    } else {
                        for ((o, &ev), &qv) in dkj.iter_mut().zip(e).zip(qi) {
                            *o += daij * round1(qv * ev, plan.diag);
                        }
                    }
                }
            }
        }
    }
}

impl<T: Real> Intra<T> {
    /// The intra-chunk pairs of the local-form gate gradient, added to `dg` (`[lp, K]`): for
    /// every row t, `sum over pairs s < t <= r of W_rs`, `W_rs = q_r k_s dA_rs decay(s -> r)`,
    /// split by sub-chunk (t in block m): (1) full blocks J < m < I through the forward's
    /// anchored factors, (2) s in m, r in a later block: prefix sums of `k * dkoff`, (3) r in m,
    /// s in an earlier block: suffix sums of `q * dqoff`, (4) both in m: elementwise with the
    /// forward's diagonal decays. Only sums of terms that each carry `alpha_t`; no subtraction.
    /// Must follow [`Self::backward`] with `keep_off` on the same chunk.
    #[inline(always)]
    pub(super) fn dg_local(
        &mut self,
        q: &[T],
        k: &[T],
        da: &[T],
        kk: usize,
        opts: &ChunkOptions,
        dg: &mut [T],
    ) {
        let lp = q.len() / kk;
        let sc = opts.sub_chunk;
        let plan = &opts.plan;
        let nc = lp.div_ceil(sc);
        let r1 = sized(&mut self.r1, nc * kk);
        r1.fill(T::zero());

        // (1) Full blocks: for query block I and key rows s of blocks J <= I - 2 (anchor a =
        // first row of I, the forward's factors kf_s = round(k_s exp(Gl_a - Gl_s)) and
        // qd_r = exp(Gl_r - Gl_a)): Y_I = dA[I, s]^T @ round(q_I * qd_I), then
        // sum_{J < m} X_IJ = sum_{s < m c} kf_s * Y_I[s] goes to every block m in 1..I.
        let mut koff = 0usize;
        for i0 in (0..lp).step_by(sc).skip(1) {
            let i1 = (i0 + sc).min(lp);
            let nb = i1 - i0;
            let ns = i0 - sc; // key rows of blocks J <= I - 2
            if ns > 0 {
                let qq = &mut self.t1[..nb * kk];
                factor_into(
                    &q[i0 * kk..i1 * kk],
                    &self.qd[i0 * kk..i1 * kk],
                    T::one(),
                    qq,
                    plan.offdiag_q,
                );
                let y = &mut self.t2[..ns * kk];
                gemm(
                    (ns, nb, kk),
                    T::one(),
                    &da[i0 * lp..],
                    (1, lp),
                    qq,
                    (kk, 1),
                    T::zero(),
                    y,
                    kk,
                );
                let kf = &self.kf[koff * kk..(koff + ns) * kk];
                let mut d0 = 0;
                while d0 < kk {
                    let w = lane_width(d0, kk);
                    block_prefixes((d0, w), (ns, sc, kk), kf, y, r1);
                    d0 += w;
                }
            }
            koff += i0;
        }

        let mut slot = 0usize;
        for (m, i0) in (0..lp).step_by(sc).enumerate() {
            let i1 = (i0 + sc).min(lp);
            let nb = i1 - i0;
            let rows = (i0, i1, kk);
            let mut d0 = 0;
            while d0 < kk {
                let w = lane_width(d0, kk);
                let blk = (d0, w);
                // (1) the full-block sum of this block, and (3) suffix sums of q_r * dqoff_r,
                // r >= t (added).
                scan_suffix(blk, rows, q, &self.dqoff, Some(&r1[m * kk..]), dg, false);
                // (2) prefix sums of k_s * dkoff_s, s < t.
                scan_prefix(blk, rows, k, &self.dkoff, None, dg);
                // (4) both in block m: for each s, suffix sums over r of W_rs, added to rows r > s.
                diag_pairs(
                    blk,
                    rows,
                    (q, k, da, lp),
                    &self.dexp[slot * kk..],
                    plan.diag,
                    dg,
                );
                d0 += w;
            }
            slot += nb * (nb + 1) / 2;
        }
    }
}

/// Channels processed together by the local-form dg loops (their accumulators stay in
/// registers), then [`LANES_MID`], then one at a time. Only the evaluation order across
/// channels depends on it, never a channel's own sums.
pub(super) const LANES: usize = 32;
/// The width after [`LANES`] (see [`lane_width`]).
pub(super) const LANES_MID: usize = 8;

/// The number of channels from `d0` (of `kk`) the next lane block takes.
#[inline(always)]
pub(super) fn lane_width(d0: usize, kk: usize) -> usize {
    if d0 + LANES <= kk {
        LANES
    } else if d0 + LANES_MID <= kk {
        LANES_MID
    } else {
        1
    }
}

/// `N` channels from `d0` (`blk = (d0, N)`, N from [`lane_width`]) of the rows
/// `r0..r1` (`rows = (r0, r1, K)`): for t from r1 - 1 down to r0, `acc += a_t * b_t` (acc
/// starting at `init`, or 0), then `out_t = acc` (`assign`) or `out_t += acc`.
#[inline(always)]
pub(super) fn scan_suffix<T: Real>(
    blk: (usize, usize),
    rows: (usize, usize, usize),
    a: &[T],
    b: &[T],
    init: Option<&[T]>,
    out: &mut [T],
    assign: bool,
) {
    #[inline(always)]
    fn go<T: Real, const N: usize>(
        d0: usize,
        (r0, r1, kk): (usize, usize, usize),
        (a, b, init): (&[T], &[T], Option<&[T]>),
        out: &mut [T],
        assign: bool,
    ) {
        let mut acc = [T::zero(); N];
        if let Some(i) = init {
            acc.copy_from_slice(&i[d0..d0 + N]);
        }
        for t in (r0..r1).rev() {
            let at = t * kk + d0;
            let (av, bv) = (&a[at..at + N], &b[at..at + N]);
            let o = &mut out[at..at + N];
            for x in 0..N {
                acc[x] += av[x] * bv[x];
                o[x] = if assign { acc[x] } else { o[x] + acc[x] };
            }
        }
    }
    match blk.1 {
        LANES => go::<T, LANES>(blk.0, rows, (a, b, init), out, assign),
        LANES_MID => go::<T, LANES_MID>(blk.0, rows, (a, b, init), out, assign),
        _ => go::<T, 1>(blk.0, rows, (a, b, init), out, assign),
    }
}

/// `N` channels from `d0` (see [`scan_suffix`]) of the rows `r0..r1`: for t from r0 up,
/// `out_t += acc + base` (without `base`: `out_t += acc`), then `acc += a_t * b_t` (acc
/// starting at 0): `out_t` gets the sum over the rows before t.
#[inline(always)]
pub(super) fn scan_prefix<T: Real>(
    blk: (usize, usize),
    rows: (usize, usize, usize),
    a: &[T],
    b: &[T],
    base: Option<&[T]>,
    out: &mut [T],
) {
    #[inline(always)]
    fn go<T: Real, const N: usize>(
        d0: usize,
        (r0, r1, kk): (usize, usize, usize),
        (a, b, base): (&[T], &[T], Option<&[T]>),
        out: &mut [T],
    ) {
        let mut acc = [T::zero(); N];
        for t in r0..r1 {
            let at = t * kk + d0;
            let (av, bv) = (&a[at..at + N], &b[at..at + N]);
            let o = &mut out[at..at + N];
            match base {
                Some(bs) => {
                    let bs = &bs[d0..d0 + N];
                    for x in 0..N {
                        o[x] += acc[x] + bs[x];
                        acc[x] += av[x] * bv[x];
                    }
                }
                None => {
                    for x in 0..N {
                        o[x] += acc[x];
                        acc[x] += av[x] * bv[x];
                    }
                }
            }
        }
    }
    match blk.1 {
        LANES => go::<T, LANES>(blk.0, rows, (a, b, base), out),
        LANES_MID => go::<T, LANES_MID>(blk.0, rows, (a, b, base), out),
        _ => go::<T, 1>(blk.0, rows, (a, b, base), out),
    }
}

/// `N` channels from `d0` (see [`scan_suffix`]) of the full-block sums of one query block:
/// `acc += a_s * b_s` over the key rows s = 0..ns (`dims = (ns, c, K)`), and at the end of each
/// key block, `out[m] += acc` for the next block m = (s + 1) / c.
#[inline(always)]
pub(super) fn block_prefixes<T: Real>(
    blk: (usize, usize),
    dims: (usize, usize, usize),
    a: &[T],
    b: &[T],
    out: &mut [T],
) {
    #[inline(always)]
    fn go<T: Real, const N: usize>(
        d0: usize,
        (ns, sc, kk): (usize, usize, usize),
        a: &[T],
        b: &[T],
        out: &mut [T],
    ) {
        let mut acc = [T::zero(); N];
        for s in 0..ns {
            let at = s * kk + d0;
            let (av, bv) = (&a[at..at + N], &b[at..at + N]);
            for x in 0..N {
                acc[x] += av[x] * bv[x];
            }
            if (s + 1) % sc == 0 {
                let m = (s + 1) / sc;
                let o = &mut out[m * kk + d0..m * kk + d0 + N];
                for x in 0..N {
                    o[x] += acc[x];
                }
            }
        }
    }
    match blk.1 {
        LANES => go::<T, LANES>(blk.0, dims, a, b, out),
        LANES_MID => go::<T, LANES_MID>(blk.0, dims, a, b, out),
        _ => go::<T, 1>(blk.0, dims, a, b, out),
    }
}

/// `N` channels from `d0` (see [`scan_suffix`]) of the pairs inside one diagonal block (rows
/// `i0..i1`): for each key row s, `acc += W_rs = q_r (dA_rs round(k_s decay(s -> r)))` for r
/// from i1 - 1 down to s + 1, `out_r += acc`. `dexp` starts at the block's first decay slot
/// (slot of (r, s): `(r - i0)(r - i0 + 1)/2 + (s - i0)`, the forward's order).
#[inline(always)]
pub(super) fn diag_pairs<T: Real>(
    blk: (usize, usize),
    rows: (usize, usize, usize),
    qkda: (&[T], &[T], &[T], usize),
    dexp: &[T],
    diag: Option<Dtype>,
    out: &mut [T],
) {
    #[inline(always)]
    fn go<T: Real, const N: usize>(
        d0: usize,
        (i0, i1, kk): (usize, usize, usize),
        (q, k, da, lp): (&[T], &[T], &[T], usize),
        dexp: &[T],
        diag: Option<Dtype>,
        out: &mut [T],
    ) {
        for s in i0..i1 {
            let ks = &k[s * kk + d0..s * kk + d0 + N];
            let mut acc = [T::zero(); N];
            for r in (s + 1..i1).rev() {
                let (rr, ss) = (r - i0, s - i0);
                let e0 = (rr * (rr + 1) / 2 + ss) * kk + d0;
                let e = &dexp[e0..e0 + N];
                let dars = da[r * lp + s];
                let at = r * kk + d0;
                let qr = &q[at..at + N];
                if diag.is_none() {
                    for x in 0..N {
                        acc[x] += qr[x] * (dars * (ks[x] * e[x]));
                    }
                } else {
                    for x in 0..N {
                        acc[x] += qr[x] * (dars * round1(ks[x] * e[x], diag));
                    }
                }
                let o = &mut out[at..at + N];
                for x in 0..N {
                    o[x] += acc[x];
                }
            }
        }
    }
    match blk.1 {
        LANES => go::<T, LANES>(blk.0, rows, qkda, dexp, diag, out),
        LANES_MID => go::<T, LANES_MID>(blk.0, rows, qkda, dexp, diag, out),
        _ => go::<T, 1>(blk.0, rows, qkda, dexp, diag, out),
    }
}
