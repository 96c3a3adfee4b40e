//! One (sequence, head) of the chunked form: the forward sweep over chunks (inter-chunk state
//! passing, chunk outputs) and the backward sweep (state gradients, dq/dk/dv/dg per chunk), with
//! the rounding points of the plan; plus the data-movement floor of the benchmark.

use super::*;

/// [`interface_floor`]'s per-(sequence, head) work: load every input chunk, write every result.
pub(super) fn item_floor<T: Real>(src: &Src, sink: &Sink, w: &mut Work<T>, opts: &ChunkOptions) {
    let (l, kk) = src.q.dim();
    let vv = src.v.ncols();
    let kg = src.g.ncols();
    let cs = opts.chunk;
    let (q, k, v, g, d) = (
        sized(&mut w.q, cs * kk),
        sized(&mut w.k, cs * kk),
        sized(&mut w.v, cs * vv),
        sized(&mut w.g, cs * kg),
        sized(&mut w.do_, cs * vv),
    );
    let Some(gout) = sink.outs.grads.as_ref() else {
        return;
    };
    for p0 in (0..l).step_by(cs) {
        let lp = cs.min(l - p0);
        let (q, k, v, g, d) = (
            &mut q[..lp * kk],
            &mut k[..lp * kk],
            &mut v[..lp * vv],
            &mut g[..lp * kg],
            &mut d[..lp * vv],
        );
        load(&src.q, p0, q, None);
        load(&src.k, p0, k, None);
        load(&src.v, p0, v, None);
        load(&src.g, p0, g, None);
        if let Some(s) = &src.do_ {
            load(s, p0, d, None);
        }
        sink.rows(&sink.outs.o, p0, d);
        sink.rows(&gout[0], p0, q);
        sink.rows(&gout[1], p0, k);
        sink.rows(&gout[2], p0, v);
        sink.rows(&gout[3], p0, g);
    }
}

/// Round a slice in place to `dtype` (the rounding points of the plan; no-op for `None`, for
/// f64 and for f32 in f32 compute).
#[inline(always)]
pub(super) fn round_slice<T: Real>(x: &mut [T], dtype: Option<Dtype>) {
    if let Some(dt) = dtype {
        if dt == Dtype::F64 || (dt == Dtype::F32 && T::DTYPE == Dtype::F32) {
            return;
        }
        // One loop per format, the format a constant in each (the rounding inlined, no
        // dispatch per element).
        match dt {
            Dtype::Bf16 => x.iter_mut().for_each(|v| *v = v.round_to(Dtype::Bf16)),
            Dtype::F16 => x.iter_mut().for_each(|v| *v = v.round_to(Dtype::F16)),
            Dtype::Tf32 => x.iter_mut().for_each(|v| *v = v.round_to(Dtype::Tf32)),
            _ => x.iter_mut().for_each(|v| *v = v.round_to(dt)),
        }
    }
}

/// `out = round(mul * x * e, dtype)` elementwise (the factor builder of every log-space product:
/// an operand times its decay `e <= 1`).
#[inline(always)]
pub(super) fn factor_into<T: Real>(x: &[T], e: &[T], mul: T, out: &mut [T], dtype: Option<Dtype>) {
    for ((o, &xv), &ev) in out.iter_mut().zip(x).zip(e) {
        *o = mul * xv * ev;
    }
    round_slice(out, dtype);
}

/// `x` rounded to `dtype` (in `buf`), or `x` itself when nothing is rounded.
#[inline(always)]
pub(super) fn round_view<'a, T: Real>(
    x: &'a [T],
    dtype: Option<Dtype>,
    buf: &'a mut [T],
) -> &'a [T] {
    match dtype {
        Some(dt) if !(dt == Dtype::F64 || (dt == Dtype::F32 && T::DTYPE == Dtype::F32)) => {
            buf.copy_from_slice(x);
            round_slice(buf, dtype);
            buf
        }
        _ => x,
    }
}

/// [`item`] compiled with AVX2 + FMA (or AVX-512) when available (bitwise the same results).
pub(super) fn item_best<T: Real>(
    src: &Src,
    sink: &Sink,
    w: &mut Work<T>,
    opts: &ChunkOptions,
    scale: T,
    local: bool,
) {
    #[cfg(target_arch = "x86_64")]
    {
        if seg::has_avx512() {
            // SAFETY: the CPU features were detected at run time.
            return unsafe { item_avx512(src, sink, w, opts, scale, local) };
        }
        if seg::has_avx2() {
            // SAFETY: the CPU features were detected at run time.
            return unsafe { item_avx2(src, sink, w, opts, scale, local) };
        }
    }
    item(src, sink, w, opts, scale, local)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn item_avx2<T: Real>(
    src: &Src,
    sink: &Sink,
    w: &mut Work<T>,
    opts: &ChunkOptions,
    scale: T,
    local: bool,
) {
    item(src, sink, w, opts, scale, local)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn item_avx512<T: Real>(
    src: &Src,
    sink: &Sink,
    w: &mut Work<T>,
    opts: &ChunkOptions,
    scale: T,
    local: bool,
) {
    item(src, sink, w, opts, scale, local)
}

/// `acc[d] = rowsum(h * dh)[d]` for `[K, V]` row-major `h`, `dh`: each channel summed in order
/// over e, eight channels at a time as independent chains (same sums, no serial latency chain).
#[inline(always)]
pub(super) fn rowsum_prod<T: Real>(h: &[T], dh: &[T], acc: &mut [T], kk: usize, vv: usize) {
    for d0 in (0..kk).step_by(8) {
        let nd = 8.min(kk - d0);
        let mut hsum = [T::zero(); 8];
        for e in 0..vv {
            for (x, hs_) in hsum.iter_mut().enumerate().take(nd) {
                let at = (d0 + x) * vv + e;
                *hs_ += h[at] * dh[at];
            }
        }
        acc[d0..d0 + nd].copy_from_slice(&hsum[..nd]);
    }
}

/// Forward outputs of one chunk: `o = scale * (qe @ round(H_p)) + A @ v` into `oc` (`[lp, V]`),
/// A from [`Intra::forward`] (its decays kept for the backward). `q`, `k`, `qe` are the chunk's
/// `[lp, K]` rows, `vr` its `[lp, V]` rows.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn chunk_out<T: Real>(
    intra: &mut Intra<T>,
    cum: &Cum<T>,
    (q, k, vr, qe): (&[T], &[T], &[T], &[T]),
    (kk, vv): (usize, usize),
    opts: &ChunkOptions,
    scale: T,
    hstate: &[T],
    hs: &mut [T],
    oc: &mut [T],
) {
    let plan = &opts.plan;
    let lp = q.len() / kk;
    intra.forward(cum, q, k, kk, opts, scale);
    let hs = round_view(hstate, plan.state, hs);
    gemm(
        (lp, kk, vv),
        scale,
        qe,
        (kk, 1),
        hs,
        (vv, 1),
        T::zero(),
        oc,
        vv,
    );
    gemm(
        (lp, lp, vv),
        T::one(),
        &intra.a[..lp * lp],
        (lp, 1),
        vr,
        (vv, 1),
        T::one(),
        oc,
        vv,
    );
    round_slice(oc, plan.o);
}

/// One step of a state recurrence across a chunk: `h[d, :] = glast[d] * h[d, :] + mul * u[d, :]`
/// for `[K, V]` row-major `h`, `u` (`mul = 1` is exact, so it is the plain `glast * h + u`).
#[inline(always)]
pub(super) fn decay_step<T: Real>(h: &mut [T], glast: &[T], u: &[T], mul: T, vv: usize) {
    for (d, &gd) in glast.iter().enumerate() {
        for (x, &uv) in h[d * vv..(d + 1) * vv]
            .iter_mut()
            .zip(&u[d * vv..(d + 1) * vv])
        {
            *x = gd * *x + mul * uv;
        }
    }
}

/// The chunk's decays `exp(Gl)` into `e0`, `exp(Gl_last - Gl)` into `el` and the factors
/// `q*exp(Gl)` into `qe`, `k*exp(Gl_last - Gl)` into `ke` (first `lp * K` elements each, `lp` =
/// the chunk's rows in `q`), from the chunk-local cumsum `cum`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(super) fn chunk_factors<T: Real>(
    cum: &Cum<T>,
    (q, k): (&[T], &[T]),
    kk: usize,
    plan: &RoundingPlan,
    e0: &mut [T],
    el: &mut [T],
    qe: &mut [T],
    ke: &mut [T],
) {
    let lp = q.len() / kk;
    let last = lp - 1;
    for i in 0..lp {
        cum.dec_row(i, -1, &mut e0[i * kk..(i + 1) * kk]);
        cum.dec_row(last, i as isize, &mut el[i * kk..(i + 1) * kk]);
    }
    factor_into(
        q,
        &e0[..lp * kk],
        T::one(),
        &mut qe[..lp * kk],
        plan.q_decay,
    );
    factor_into(
        k,
        &el[..lp * kk],
        T::one(),
        &mut ke[..lp * kk],
        plan.k_decay,
    );
}

/// One (sequence, head): forward, and the backward when `src.do_` is present; results go
/// straight to `sink`, chunk by chunk.
///
/// Pass 1 (chunk order): read the chunk's inputs (kept for the whole sequence in the compute
/// type), the chunk-local reset-aware cumsum, the decays `exp(Gl)` and `exp(Gl_last - Gl)`, the
/// factors `qe`, `ke`, the state recurrence (one `[K, lp] @ [lp, V]` GEMM per chunk; the
/// backward keeps the states `H_p`); forward only: the chunk's outputs. Backward: pass 2
/// (reverse chunk order) recomputes the chunk's decays and factors, reads `do`, steps the state
/// gradient `dH_p`, then computes the chunk's outputs and all its gradients, the intra-chunk
/// decays computed once and shared by forward and backward.
///
/// Length (about 360 lines): the two passes share a dozen per-chunk work buffers, the chunk's
/// cumulative gates and the intra-chunk decays; the function is inlined into each ISA build
/// ([`item_best`]: baseline, AVX2, AVX-512), so splitting it into phases would either pass
/// those buffers through long argument lists or lose the single `#[target_feature]` context
/// its loops are vectorised in. Its phases are the commented blocks below; the pieces that
/// stand alone are separate functions ([`chunk_out`], [`chunk_factors`], [`decay_step`],
/// [`rowsum_prod`], `Intra`).
#[inline(always)]
pub(super) fn item<T: Real>(
    src: &Src,
    sink: &Sink,
    w: &mut Work<T>,
    opts: &ChunkOptions,
    scale: T,
    local: bool,
) {
    let plan = &opts.plan;
    let (l, kk) = src.q.dim();
    let vv = src.v.ncols();
    let kg = src.g.ncols();
    let kv = kk * vv;
    let cs = opts.chunk;
    let nt = l.div_ceil(cs);
    let bwd = src.do_.is_some();
    let nst = if bwd { nt * kv } else { 0 };

    let Work {
        q,
        k,
        v,
        g,
        do_,
        e0,
        el,
        qe,
        ke,
        states,
        dstates,
        u,
        hs,
        hbuf,
        dhbuf,
        oc,
        dq,
        dk,
        dv,
        dg,
        dgr,
        dki,
        da,
        acc,
        ksum,
        cum,
        intra,
    } = w;
    let (q, k, vr, g) = (
        sized(q, l * kk),
        sized(k, l * kk),
        sized(v, l * vv),
        sized(g, l * kg),
    );
    // Chunk-local decays and factors: recomputed per chunk in each sweep (cheaper than keeping
    // whole-sequence copies, which do not stay in cache).
    let (e0, el, qe, ke) = (
        sized(e0, cs * kk),
        sized(el, cs * kk),
        sized(qe, cs * kk),
        sized(ke, cs * kk),
    );
    let states = sized(states, nst);
    let (u, hs) = (sized(u, kv), sized(hs, kv));
    let oc = sized(oc, cs * vv);
    let key = (cs, opts.sub_chunk, kk);
    if intra.as_ref().map(|x| x.0) != Some(key) {
        *intra = Some((key, Intra::<T>::new(cs, opts.sub_chunk, kk)));
    }
    let intra = &mut intra.as_mut().expect("set above").1;

    let mut h = vec![T::zero(); kv];
    if let Some(h0) = &src.h0 {
        load(h0, 0, &mut h, None);
    }

    for (p, p0) in (0..l).step_by(cs).enumerate() {
        let lp = cs.min(l - p0);
        let last = lp - 1;
        let (rk, rv) = (p0 * kk..(p0 + lp) * kk, p0 * vv..(p0 + lp) * vv);
        load(&src.q, p0, &mut q[rk.clone()], None);
        load(&src.k, p0, &mut k[rk.clone()], None);
        load(&src.v, p0, &mut vr[rv.clone()], plan.v);
        let gc = &mut g[p0 * kg..(p0 + lp) * kg];
        load(&src.g, p0, gc, None);
        cum.refill(gc, lp, kg);
        chunk_factors(
            cum,
            (&q[rk.clone()], &k[rk.clone()]),
            kk,
            plan,
            e0,
            el,
            qe,
            ke,
        );
        if bwd {
            states[p * kv..(p + 1) * kv].copy_from_slice(&h);
        } else {
            let oc = &mut oc[..lp * vv];
            chunk_out(
                intra,
                cum,
                (
                    &q[rk.clone()],
                    &k[rk.clone()],
                    &vr[rv.clone()],
                    &qe[..lp * kk],
                ),
                (kk, vv),
                opts,
                scale,
                &h,
                hs,
                oc,
            );
            sink.rows(&sink.outs.o, p0, oc);
        }
        // State update: H <- Diag(exp(Gl_last)) H + ke^T @ v (compute-type accumulator).
        gemm(
            (kk, lp, vv),
            T::one(),
            &ke[..lp * kk],
            (1, kk),
            &vr[rv],
            (vv, 1),
            T::zero(),
            u,
            vv,
        );
        decay_step(&mut h, &e0[last * kk..lp * kk], u, T::one(), vv);
    }
    sink.state(
        &sink.outs.ht,
        &Array2::from_shape_vec((kk, vv), h).expect("state shape"),
    );
    let (Some(src_do), Some(gout)) = (src.do_.as_ref(), sink.outs.grads.as_ref()) else {
        return;
    };

    // Pass 2 (reverse chunk order): per chunk, read do, step the state gradient
    // (dhp = dL/d(state after chunk p) before the step), then the chunk's outputs and all its
    // gradients, the intra-chunk decays computed once and shared by forward and backward.
    let dor = sized(do_, cs * vv);
    let mut dh = vec![T::zero(); kv];
    if let Some(dht) = &src.dht {
        load(dht, 0, &mut dh, None);
    }
    let dhcur = sized(dstates, kv);
    let wbuf = u;
    let (hbuf, dhbuf) = (sized(hbuf, kv), sized(dhbuf, kv));
    let (dqs, dks, dvs, dgs) = (
        sized(dq, cs * kk),
        sized(dk, cs * kk),
        sized(dv, cs * vv),
        sized(dg, cs * kk),
    );
    let dgr = sized(dgr, cs);
    let (da, dki) = (sized(da, cs * cs), sized(dki, cs * kk));
    let (acc, ksum) = (sized(acc, kk), sized(ksum, kk));
    for (p, p0) in (0..l).step_by(cs).enumerate().rev() {
        let lp = cs.min(l - p0);
        let (rk, rv) = (p0 * kk..(p0 + lp) * kk, p0 * vv..(p0 + lp) * vv);
        cum.refill(&g[p0 * kg..(p0 + lp) * kg], lp, kg);
        let (qc, kc, vc) = (&q[rk.clone()], &k[rk.clone()], &vr[rv.clone()]);
        chunk_factors(cum, (qc, kc), kk, plan, e0, el, qe, ke);
        let (e0c, elc, qec, kec) = (
            &e0[..lp * kk],
            &el[..lp * kk],
            &qe[..lp * kk],
            &ke[..lp * kk],
        );
        let doc = &mut dor[..lp * vv];
        load(src_do, p0, doc, plan.do_);
        let doc = &*doc;
        let glast = &e0c[(lp - 1) * kk..lp * kk];

        // State gradient step: dH <- Diag(exp(Gl_last)) dH + scale * qe^T @ do.
        gemm(
            (kk, lp, vv),
            T::one(),
            qec,
            (1, kk),
            doc,
            (vv, 1),
            T::zero(),
            wbuf,
            vv,
        );
        dhcur.copy_from_slice(&dh);
        decay_step(&mut dh, glast, wbuf, scale, vv);

        let hstate = &states[p * kv..(p + 1) * kv];
        let oc = &mut oc[..lp * vv];
        chunk_out(
            intra,
            cum,
            (qc, kc, vc, qec),
            (kk, vv),
            opts,
            scale,
            hstate,
            hs,
            oc,
        );
        sink.rows(&sink.outs.o, p0, oc);
        let hb = round_view(hstate, plan.bwd_state, hbuf);
        let dhp = round_view(dhcur, plan.dstate, dhbuf);

        // dA = scale * do @ v^T on j <= i (upper triangle selected to exact 0).
        let da = &mut da[..lp * lp];
        gemm(
            (lp, vv, lp),
            scale,
            doc,
            (vv, 1),
            vc,
            (1, vv),
            T::zero(),
            da,
            lp,
        );
        for i in 0..lp {
            da[i * lp + i + 1..(i + 1) * lp].fill(T::zero());
        }
        round_slice(da, plan.da);

        // dv = ke @ dH_p + A^T @ do
        let dvc = &mut dvs[..lp * vv];
        gemm(
            (lp, kk, vv),
            T::one(),
            kec,
            (kk, 1),
            dhp,
            (vv, 1),
            T::zero(),
            dvc,
            vv,
        );
        gemm(
            (lp, lp, vv),
            T::one(),
            &intra.a[..lp * lp],
            (1, lp),
            doc,
            (vv, 1),
            T::one(),
            dvc,
            vv,
        );

        // Inter-chunk parts: dq = scale * exp(Gl) * (do @ H_p^T), dk = exp(Gl_last - Gl) * (v @ dH_p^T).
        let dqc = &mut dqs[..lp * kk];
        gemm(
            (lp, vv, kk),
            T::one(),
            doc,
            (vv, 1),
            hb,
            (1, vv),
            T::zero(),
            dqc,
            kk,
        );
        for (x, &ev) in dqc.iter_mut().zip(e0c) {
            *x = *x * ev * scale;
        }
        let dki = &mut dki[..lp * kk];
        gemm(
            (lp, vv, kk),
            T::one(),
            vc,
            (vv, 1),
            dhp,
            (1, vv),
            T::zero(),
            dki,
            kk,
        );
        for (x, &ev) in dki.iter_mut().zip(elc) {
            *x *= ev;
        }
        let dkc = &mut dks[..lp * kk];
        dkc.copy_from_slice(dki);

        let dgc = &mut dgs[..lp * kk];
        if local {
            // Local-form dg, the parts outside the chunk (module docs), before the intra parts
            // are added to dq: dg_t = gamma rowsum(H_p * dH_p) + sum_{s<t} k_s dk_inter_s
            // + sum_{r>=t} q_r dq_inter_r (+ the intra pairs, below).
            rowsum_prod(hb, dhp, acc, kk, vv);
            for (a, &gl) in acc.iter_mut().zip(glast) {
                *a *= gl;
            }
            let mut d0 = 0;
            while d0 < kk {
                let w = lane_width(d0, kk);
                let blk = (d0, w);
                scan_suffix(blk, (0, lp, kk), qc, dqc, None, dgc, true);
                scan_prefix(blk, (0, lp, kk), kc, dki, Some(acc), dgc);
                d0 += w;
            }
        }

        // Intra parts: off-diagonal blocks as matrix products, diagonal blocks elementwise.
        intra.backward(cum, qc, kc, da, kk, opts, dqc, dkc, local);

        if local {
            intra.dg_local(qc, kc, da, kk, opts, dgc);
        } else {
            // dg: within-chunk reverse sum plus the state term.
            rowsum_prod(hb, dhp, acc, kk, vv);
            ksum.fill(T::zero());
            for j in 0..lp {
                for ((s, &kv), &dv) in ksum
                    .iter_mut()
                    .zip(&kc[j * kk..(j + 1) * kk])
                    .zip(&dki[j * kk..(j + 1) * kk])
                {
                    *s += kv * dv;
                }
            }
            for d in 0..kk {
                acc[d] = glast[d] * acc[d] + ksum[d];
            }
            for i in (0..lp).rev() {
                let r = i * kk..(i + 1) * kk;
                for d in 0..kk {
                    acc[d] +=
                        qc[r.start + d] * dqc[r.start + d] - kc[r.start + d] * dkc[r.start + d];
                }
                dgc[r].copy_from_slice(acc);
            }
        }

        // Results of the chunk (rounded per `plan.grads`); scalar gates: dg summed over channels.
        round_slice(dqc, plan.grads);
        round_slice(dkc, plan.grads);
        round_slice(dvc, plan.grads);
        sink.rows(&gout[0], p0, dqc);
        sink.rows(&gout[1], p0, dkc);
        sink.rows(&gout[2], p0, dvc);
        if kg == 1 && kk != 1 {
            let dgr = &mut dgr[..lp];
            for (o, row) in dgr.iter_mut().zip(dgc.chunks_exact(kk)) {
                let mut s = T::zero();
                for &x in row {
                    s += x;
                }
                *o = s;
            }
            round_slice(dgr, plan.grads);
            sink.rows(&gout[3], p0, dgr);
        } else {
            round_slice(dgc, plan.grads);
            sink.rows(&gout[3], p0, dgc);
        }
    }
    sink.state(
        &gout[4],
        &Array2::from_shape_vec((kk, vv), dh).expect("state shape"),
    );
}
