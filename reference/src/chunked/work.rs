//! Work distribution of the chunked form: one task per (sequence, head) on the rayon pool, the
//! input views each task reads chunk by chunk, the writers of its disjoint result rows, and the
//! per-thread work buffers reused across tasks.

use super::*;

/// Which build of the per-(sequence, head) kernel runs (bitwise the same results).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Isa {
    /// The baseline build (tests compare it with `Best`: `crate::test_support`).
    Base,
    /// AVX-512 or AVX2 + FMA where the CPU has them (run-time detection), else the baseline.
    Best,
    /// No arithmetic: only the data movement ([`interface_floor`]).
    Floor,
}

/// Run the chunked form on every (sequence, head) pair in parallel (rayon); each task reads its
/// f64 inputs chunk by chunk into f32/f64 work buffers and writes its results chunk by chunk
/// straight into the (disjoint) rows of the f64 result tensors.
pub(super) fn run<T: Real>(
    p: &Problem,
    opts: &ChunkOptions,
    form: Option<DgForm>,
    isa: Isa,
) -> Solution {
    let dims = p.dims();
    let (k, v) = (dims.k, dims.v);
    let kg = match p.gate_kind() {
        GateKind::PerChannel => k,
        GateKind::Scalar => 1,
    };
    let bwd = form.is_some() && p.do_().is_some();
    let local = form == Some(DgForm::Local);
    let mut o = zeros4((dims.b, dims.t, dims.h, v));
    let mut ht = zeros4((dims.n, dims.h, k, v));
    let mut grads = bwd.then(|| Gradients {
        dq: zeros4((dims.b, dims.t, dims.h, k)),
        dk: zeros4((dims.b, dims.t, dims.h, k)),
        dv: zeros4((dims.b, dims.t, dims.h, v)),
        dg: zeros4((dims.b, dims.t, dims.h, kg)),
        dh0: zeros4((dims.n, dims.h, k, v)),
    });
    let outs = Outs {
        o: Shared4::new(&mut o),
        ht: Shared4::new(&mut ht),
        grads: grads.as_mut().map(|g| {
            [
                Shared4::new(&mut g.dq),
                Shared4::new(&mut g.dk),
                Shared4::new(&mut g.dv),
                Shared4::new(&mut g.dg),
                Shared4::new(&mut g.dh0),
            ]
        }),
    };
    let scale = T::of(p.scale());
    let tasks: Vec<(SeqSpan, usize)> = p
        .sequences()
        .into_iter()
        .flat_map(|s| (0..dims.h).map(move |h| (s, h)))
        .collect();
    tasks.par_iter().for_each(|&(span, h)| {
        let rows = span.start..span.start + span.len;
        let b = span.batch;
        let src = Src {
            q: p.q().slice(s![b, rows.clone(), h, ..]),
            k: p.k().slice(s![b, rows.clone(), h, ..]),
            v: p.v().slice(s![b, rows.clone(), h, ..]),
            g: p.g().slice(s![b, rows.clone(), h, ..]),
            do_: p
                .do_()
                .filter(|_| bwd)
                .map(|a| a.slice(s![b, rows.clone(), h, ..])),
            h0: p.h0().map(|a| a.slice(s![span.state, h, .., ..])),
            dht: p.dht().map(|a| a.slice(s![span.state, h, .., ..])),
        };
        let sink = Sink {
            outs: &outs,
            b,
            start: span.start,
            h,
            state: span.state,
        };
        let mut w = take_work::<T>();
        match isa {
            Isa::Base => item(&src, &sink, &mut w, opts, scale, local),
            Isa::Best => item_best(&src, &sink, &mut w, opts, scale, local),
            Isa::Floor => item_floor(&src, &sink, &mut w, opts),
        }
        give_work(w);
    });
    // `outs` holds raw pointers only (no borrow): the tasks are done, the tensors are handed out.
    Solution { o, ht, grads }
}

/// The f64 inputs of one (sequence, head): views into the problem's tensors.
pub(super) struct Src<'a> {
    /// `[L, K]`
    pub(super) q: ArrayView2<'a, f64>,
    /// `[L, K]`
    pub(super) k: ArrayView2<'a, f64>,
    /// `[L, V]`
    pub(super) v: ArrayView2<'a, f64>,
    /// `[L, Kg]`
    pub(super) g: ArrayView2<'a, f64>,
    /// `[L, V]`, present when the backward pass runs.
    pub(super) do_: Option<ArrayView2<'a, f64>>,
    /// `[K, V]`
    pub(super) h0: Option<ArrayView2<'a, f64>>,
    /// `[K, V]`
    pub(super) dht: Option<ArrayView2<'a, f64>>,
}

/// The result tensors, written by all tasks (each its own rows and states).
pub(super) struct Outs {
    pub(super) o: Shared4,
    pub(super) ht: Shared4,
    /// dq, dk, dv, dg, dh0
    pub(super) grads: Option<[Shared4; 5]>,
}

/// Where the results of one (sequence, head) go.
pub(super) struct Sink<'a> {
    pub(super) outs: &'a Outs,
    pub(super) b: usize,
    pub(super) start: usize,
    pub(super) h: usize,
    pub(super) state: usize,
}

impl Sink<'_> {
    /// Write rows `r0..` (sequence-relative; `[len, C]` in `x`) of result tensor `t`.
    #[inline]
    pub(super) fn rows<T: Real>(&self, t: &Shared4, r0: usize, x: &[T]) {
        // SAFETY: each task owns its (sequence, head): sequences are disjoint row ranges
        // (validated by `Problem`) with distinct state indices, so no two tasks write the same
        // element; the tensors outlive the parallel loop (`run`).
        unsafe { t.put_rows(self.b, self.start + r0, self.h, x) }
    }

    /// Write a `[K, V]` state (`ht` or `dh0`).
    #[inline]
    pub(super) fn state<T: Real>(&self, t: &Shared4, x: &Array2<T>) {
        // SAFETY: as in `rows`: the state index of this task's sequence is its own.
        unsafe { t.state(self.state, self.h, x) }
    }
}

/// Rows `r0..r0 + len` of `src` (`len = dst.len() / C`) converted to the compute type into
/// `dst` (row-major), rounded to `round`.
#[inline(always)]
pub(super) fn load<T: Real>(src: &ArrayView2<f64>, r0: usize, dst: &mut [T], round: Option<Dtype>) {
    let c = src.ncols();
    if c == 0 {
        return;
    }
    for (r, d) in dst.chunks_exact_mut(c).enumerate() {
        let row = src.row(r0 + r);
        match row.as_slice() {
            Some(xs) => {
                for (d, &x) in d.iter_mut().zip(xs) {
                    *d = T::of(x);
                }
            }
            None => {
                for (d, &x) in d.iter_mut().zip(row.iter()) {
                    *d = T::of(x);
                }
            }
        }
    }
    round_slice(dst, round);
}

/// Per-thread work buffers of [`item`], reused across (sequence, head) pairs and calls (no
/// allocation or page faults per call). Contents are unspecified between uses: every element
/// is written before it is read.
pub(super) struct Work<T> {
    /// Whole-sequence `[L, K]` / `[L, V]` / `[L, Kg]` inputs in the compute type.
    pub(super) q: Vec<T>,
    pub(super) k: Vec<T>,
    pub(super) v: Vec<T>,
    pub(super) g: Vec<T>,
    /// Per-chunk `[C, V]` do and `[C, K]` decays and factors.
    pub(super) do_: Vec<T>,
    pub(super) e0: Vec<T>,
    pub(super) el: Vec<T>,
    pub(super) qe: Vec<T>,
    pub(super) ke: Vec<T>,
    /// Chunk states `H_p`, `[NT, K, V]` (backward).
    pub(super) states: Vec<T>,
    /// The state gradient of the current chunk, `[K, V]`.
    pub(super) dstates: Vec<T>,
    /// `[K, V]` scratch.
    pub(super) u: Vec<T>,
    pub(super) hs: Vec<T>,
    pub(super) hbuf: Vec<T>,
    pub(super) dhbuf: Vec<T>,
    /// Per-chunk results and scratch.
    pub(super) oc: Vec<T>,
    pub(super) dq: Vec<T>,
    pub(super) dk: Vec<T>,
    pub(super) dv: Vec<T>,
    pub(super) dg: Vec<T>,
    pub(super) dgr: Vec<T>,
    pub(super) dki: Vec<T>,
    pub(super) da: Vec<T>,
    pub(super) acc: Vec<T>,
    pub(super) ksum: Vec<T>,
    pub(super) cum: Cum<T>,
    pub(super) intra: Option<((usize, usize, usize), Intra<T>)>,
}

impl<T: Real> Work<T> {
    pub(super) fn new() -> Self {
        Work {
            q: Vec::new(),
            k: Vec::new(),
            v: Vec::new(),
            g: Vec::new(),
            do_: Vec::new(),
            e0: Vec::new(),
            el: Vec::new(),
            qe: Vec::new(),
            ke: Vec::new(),
            states: Vec::new(),
            dstates: Vec::new(),
            u: Vec::new(),
            hs: Vec::new(),
            hbuf: Vec::new(),
            dhbuf: Vec::new(),
            oc: Vec::new(),
            dq: Vec::new(),
            dk: Vec::new(),
            dv: Vec::new(),
            dg: Vec::new(),
            dgr: Vec::new(),
            dki: Vec::new(),
            da: Vec::new(),
            acc: Vec::new(),
            ksum: Vec::new(),
            cum: Cum::empty(),
            intra: None,
        }
    }

    /// Bytes held.
    pub(super) fn bytes(&self) -> usize {
        let v = [
            &self.q,
            &self.k,
            &self.v,
            &self.g,
            &self.do_,
            &self.e0,
            &self.el,
            &self.qe,
            &self.ke,
            &self.states,
            &self.dstates,
        ];
        v.iter().map(|x| x.capacity()).sum::<usize>() * std::mem::size_of::<T>()
    }
}

/// `v` resized to `n` elements (contents unspecified) as a slice.
#[inline]
pub(super) fn sized<T: Real>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n {
        v.resize(n, T::zero());
    }
    &mut v[..n]
}

thread_local! {
    /// This thread's [`Work`] (one per compute type), kept between calls up to [`WORK_KEEP`] bytes.
    static WORK: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest workspace kept between calls (bytes).
pub(super) const WORK_KEEP: usize = 128 << 20;

pub(super) fn take_work<T: Real>() -> Box<Work<T>> {
    WORK.with(|w| {
        let mut w = w.borrow_mut();
        let i = w.iter().position(|b| b.is::<Work<T>>());
        i.and_then(|i| w.swap_remove(i).downcast::<Work<T>>().ok())
    })
    .unwrap_or_else(|| Box::new(Work::new()))
}

pub(super) fn give_work<T: Real>(w: Box<Work<T>>) {
    if w.bytes() <= WORK_KEEP {
        WORK.with(|p| p.borrow_mut().push(w));
    }
}
