//! Shared machinery of the log-space forms (parallel and chunked): per-(sequence, head) work
//! items, the fast exp, and assembling the results. The reset-aware cumulative gates both forms
//! use are in `crate::cumgate`.

use crate::problem::{GateKind, Problem, SeqSpan};
use crate::real::Real;
use crate::solution::{Gradients, Solution};
use ndarray::{s, Array2, Array4, ArrayView2, ShapeBuilder};
use rayon::prelude::*;

/// The inputs of one (sequence, head) pair in the compute type.
pub(crate) struct Item<T> {
    /// `[L, K]`
    pub q: Array2<T>,
    /// `[L, K]`
    pub k: Array2<T>,
    /// `[L, V]`
    pub v: Array2<T>,
    /// `[L, Kg]`
    pub g: Array2<T>,
    /// `[K, V]` (zeros when absent)
    pub h0: Array2<T>,
    /// `[L, V]` when the backward pass runs.
    pub do_: Option<Array2<T>>,
    /// `[K, V]` (zeros when absent)
    pub dht: Array2<T>,
}

/// The results of one (sequence, head) pair.
pub(crate) struct ItemOut<T> {
    pub o: Array2<T>,
    pub ht: Array2<T>,
    pub grads: Option<ItemGrads<T>>,
}

/// Gradients of one (sequence, head) pair.
pub(crate) struct ItemGrads<T> {
    pub dq: Array2<T>,
    pub dk: Array2<T>,
    pub dv: Array2<T>,
    /// `[L, Kg]`
    pub dg: Array2<T>,
    pub dh0: Array2<T>,
}

/// `a` in the compute type, in a buffer from this thread's pool.
fn conv<T: Real>(a: ArrayView2<f64>) -> Array2<T> {
    let mut v = take_buf_dirty::<T>(a.len());
    let c = a.ncols().max(1);
    for (dr, ar) in v.chunks_mut(c).zip(a.rows()) {
        match ar.as_slice() {
            Some(xs) => {
                for (d, &x) in dr.iter_mut().zip(xs) {
                    *d = T::of(x);
                }
            }
            None => {
                for (d, &x) in dr.iter_mut().zip(ar.iter()) {
                    *d = T::of(x);
                }
            }
        }
    }
    Array2::from_shape_vec(a.raw_dim(), v).expect("shape matches length")
}

thread_local! {
    /// Per-thread pool of work buffers (inputs and results of the per-(sequence, head) items),
    /// reused across items and calls so that a call does not allocate and page-fault fresh
    /// memory for every item. At most [`BUF_KEEP`] buffers of [`BUF_MIN`] to [`BUF_MAX`] bytes are kept.
    static BUFS: std::cell::RefCell<Vec<Box<dyn std::any::Any>>> = const { std::cell::RefCell::new(Vec::new()) };
}
const BUF_KEEP: usize = 16;
const BUF_MAX: usize = 16 << 20;
const BUF_MIN: usize = 256 << 10;

/// A buffer of `n` elements from this thread's pool whose contents are unspecified (stale
/// values of earlier use): only for buffers the caller overwrites completely.
pub(crate) fn take_buf_dirty<T: Real>(n: usize) -> Vec<T> {
    // Best fit: the smallest pooled buffer that holds n elements, else the largest one.
    let mut v = BUFS
        .with(|b| {
            let mut b = b.borrow_mut();
            let cap = |x: &Box<dyn std::any::Any>| x.downcast_ref::<Vec<T>>().map(|v| v.capacity());
            let mut best: Option<(usize, usize)> = None;
            for (i, c) in b
                .iter()
                .enumerate()
                .filter_map(|(i, x)| cap(x).map(|c| (i, c)))
            {
                let better = match best {
                    None => true,
                    Some((_, bc)) => (c >= n && (bc < n || c < bc)) || (bc < n && c > bc),
                };
                if better {
                    best = Some((i, c));
                }
            }
            b.swap_remove(best?.0).downcast::<Vec<T>>().ok()
        })
        .map(|b| *b)
        .unwrap_or_default();
    v.truncate(n);
    v.resize(n, T::zero());
    v
}

/// Give a buffer back to this thread's pool.
pub(crate) fn give_buf<T: Real>(v: Vec<T>) {
    // Small buffers are cheap to allocate (and would crowd the large ones out of the pool).
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if !(BUF_MIN..=BUF_MAX).contains(&bytes) {
        return;
    }
    BUFS.with(|b| {
        let mut b = b.borrow_mut();
        if b.len() < BUF_KEEP {
            b.push(Box::new(v));
        }
    });
}

fn give_arr<T: Real>(a: Array2<T>) {
    give_buf(a.into_raw_vec_and_offset().0);
}

/// A 4-d f64 result tensor shared by the parallel tasks, each writing its own disjoint region.
pub(crate) struct Shared4 {
    ptr: *mut f64,
    dim: [usize; 4],
    strides: [usize; 4],
}

// SAFETY: tasks only write disjoint regions (see `rows` and `state`); the tensor outlives them.
unsafe impl Send for Shared4 {}
unsafe impl Sync for Shared4 {}

impl Shared4 {
    pub(crate) fn new(a: &mut Array4<f64>) -> Self {
        assert!(a.is_standard_layout());
        let st = a.strides();
        let strides = [
            st[0] as usize,
            st[1] as usize,
            st[2] as usize,
            st[3] as usize,
        ];
        let d = a.dim();
        Shared4 {
            ptr: a.as_mut_ptr(),
            dim: [d.0, d.1, d.2, d.3],
            strides,
        }
    }

    /// Write `src` (`[len, C]`) to rows `start..start+len` of batch `b`, head `h` (`[B,T,H,C]`).
    ///
    /// SAFETY: no two concurrent calls may write overlapping (b, rows, h) regions.
    unsafe fn rows<T: Real>(&self, b: usize, start: usize, h: usize, src: &Array2<T>) {
        let (len, c) = src.dim();
        if len == 0 || c == 0 {
            return;
        }
        assert!(
            b < self.dim[0] && start + len <= self.dim[1] && h < self.dim[2] && c == self.dim[3]
        );
        let off = b * self.strides[0] + start * self.strides[1] + h * self.strides[2];
        let dst = ndarray::ArrayViewMut2::from_shape_ptr(
            (len, c).strides((self.strides[1], self.strides[3])),
            self.ptr.add(off),
        );
        put(dst, src);
    }

    /// Write `src` (`[len, C]` row-major, `len = src.len() / C`) widened to f64 to rows
    /// `start..start+len` of batch `b`, head `h` (`[B,T,H,C]`).
    ///
    /// SAFETY: no two concurrent calls may write overlapping (b, rows, h) regions.
    /// (Inlined: compiled with the caller's vector extensions.)
    #[inline(always)]
    pub(crate) unsafe fn put_rows<T: Real>(&self, b: usize, start: usize, h: usize, src: &[T]) {
        let c = self.dim[3];
        if c == 0 || src.is_empty() {
            return;
        }
        let len = src.len() / c;
        assert!(
            src.len() == len * c
                && b < self.dim[0]
                && start + len <= self.dim[1]
                && h < self.dim[2]
        );
        // Standard layout (asserted in `new`): each row's C elements are contiguous.
        let base = b * self.strides[0] + start * self.strides[1] + h * self.strides[2];
        for (r, sr) in src.chunks_exact(c).enumerate() {
            // SAFETY: the row lies inside the tensor (asserted above); the caller guarantees
            // that no other task writes it concurrently.
            let dst = std::slice::from_raw_parts_mut(self.ptr.add(base + r * self.strides[1]), c);
            for (d, &s) in dst.iter_mut().zip(sr) {
                *d = s.f64();
            }
        }
    }

    /// Write `src` (`[K, V]`) to state `n`, head `h` (`[N, H, K, V]`).
    ///
    /// SAFETY: no two concurrent calls may write the same (n, h).
    pub(crate) unsafe fn state<T: Real>(&self, n: usize, h: usize, src: &Array2<T>) {
        let (kk, vv) = src.dim();
        if kk == 0 || vv == 0 {
            return;
        }
        assert!(n < self.dim[0] && h < self.dim[1] && kk == self.dim[2] && vv == self.dim[3]);
        let off = n * self.strides[0] + h * self.strides[1];
        let dst = ndarray::ArrayViewMut2::from_shape_ptr(
            (kk, vv).strides((self.strides[2], self.strides[3])),
            self.ptr.add(off),
        );
        put(dst, src);
    }
}

/// Widen exactly to f64 into a result view.
fn put<T: Real>(mut dst: ndarray::ArrayViewMut2<f64>, src: &Array2<T>) {
    for (mut dr, sr) in dst.rows_mut().into_iter().zip(src.rows()) {
        match (dr.as_slice_mut(), sr.as_slice()) {
            (Some(d), Some(s)) => {
                for (d, &s) in d.iter_mut().zip(s) {
                    *d = s.f64();
                }
            }
            _ => ndarray::Zip::from(&mut dr)
                .and(&sr)
                .for_each(|d, &s| *d = s.f64()),
        }
    }
}

/// Run `f` on every (sequence, head) pair in parallel and assemble the solution: each task
/// converts its inputs into pooled buffers, runs `f` and writes its results straight into the
/// (disjoint) rows of the result tensors.
pub(crate) fn run<T: Real>(
    p: &Problem,
    backward: bool,
    f: impl Fn(&Item<T>) -> ItemOut<T> + Sync,
) -> Solution {
    let dims = p.dims();
    let (k, v) = (dims.k, dims.v);
    let spans = p.sequences();
    let tasks: Vec<(SeqSpan, usize)> = spans
        .iter()
        .flat_map(|&s| (0..dims.h).map(move |h| (s, h)))
        .collect();
    let kg = match p.gate_kind() {
        GateKind::PerChannel => k,
        GateKind::Scalar => 1,
    };
    let mut o = zeros4((dims.b, dims.t, dims.h, v));
    let mut ht = zeros4((dims.n, dims.h, k, v));
    let mut grads = if backward {
        Some(Gradients {
            dq: zeros4((dims.b, dims.t, dims.h, k)),
            dk: zeros4((dims.b, dims.t, dims.h, k)),
            dv: zeros4((dims.b, dims.t, dims.h, v)),
            dg: zeros4((dims.b, dims.t, dims.h, kg)),
            dh0: zeros4((dims.n, dims.h, k, v)),
        })
    } else {
        None
    };
    let (so, sht) = (Shared4::new(&mut o), Shared4::new(&mut ht));
    let sg = grads.as_mut().map(|g| {
        [
            Shared4::new(&mut g.dq),
            Shared4::new(&mut g.dk),
            Shared4::new(&mut g.dv),
            Shared4::new(&mut g.dg),
            Shared4::new(&mut g.dh0),
        ]
    });
    tasks.par_iter().for_each(|&(span, h)| {
        let rows = span.start..span.start + span.len;
        let b = span.batch;
        let item = Item {
            q: conv(p.q().slice(s![b, rows.clone(), h, ..])),
            k: conv(p.k().slice(s![b, rows.clone(), h, ..])),
            v: conv(p.v().slice(s![b, rows.clone(), h, ..])),
            g: conv(p.g().slice(s![b, rows.clone(), h, ..])),
            h0: p
                .h0()
                .map(|a| conv(a.slice(s![span.state, h, .., ..])))
                .unwrap_or_else(|| Array2::zeros((k, v))),
            do_: if backward {
                p.do_().map(|a| conv(a.slice(s![b, rows.clone(), h, ..])))
            } else {
                None
            },
            dht: p
                .dht()
                .map(|a| conv(a.slice(s![span.state, h, .., ..])))
                .unwrap_or_else(|| Array2::zeros((k, v))),
        };
        let out = f(&item);
        // SAFETY: every task has its own (sequence, head): sequences are disjoint row ranges
        // (validated by `Problem`) with distinct state indices, so no two tasks write the same
        // element; the tensors outlive the parallel loop.
        unsafe {
            so.rows(b, span.start, h, &out.o);
            sht.state(span.state, h, &out.ht);
            if let (Some(sg), Some(og)) = (sg.as_ref(), out.grads.as_ref()) {
                sg[0].rows(b, span.start, h, &og.dq);
                sg[1].rows(b, span.start, h, &og.dk);
                sg[2].rows(b, span.start, h, &og.dv);
                sg[3].rows(b, span.start, h, &og.dg);
                sg[4].state(span.state, h, &og.dh0);
            }
        }
        let Item {
            q,
            k,
            v,
            g,
            h0,
            do_,
            dht,
        } = item;
        for a in [q, k, v, g, h0, dht].into_iter().chain(do_) {
            give_arr(a);
        }
        let ItemOut { o, ht, grads } = out;
        for a in [o, ht].into_iter().chain(
            grads
                .into_iter()
                .flat_map(|g| [g.dq, g.dk, g.dv, g.dg, g.dh0]),
        ) {
            give_arr(a);
        }
    });
    // The raw views end here; the tensors are handed out below.
    let _ = (so, sht, sg);
    Solution { o, ht, grads }
}

/// A zero f64 tensor for the results. Large ones are fresh zero pages from the OS whose first
/// write faults them in; on Linux they are marked `MADV_HUGEPAGE` first (where transparent huge
/// pages are in `madvise` mode this turns ~500 page faults per MB into one per 2 MB; a pure
/// hint: the contents and the semantics are unchanged, and a failure is ignored).
pub(crate) fn zeros4(shape: (usize, usize, usize, usize)) -> Array4<f64> {
    let n = shape.0 * shape.1 * shape.2 * shape.3;
    let data = vec![0.0f64; n];
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let bytes = n * std::mem::size_of::<f64>();
        if bytes >= 2 * HUGE {
            extern "C" {
                fn madvise(addr: *mut std::ffi::c_void, len: usize, advice: i32) -> i32;
            }
            const MADV_HUGEPAGE: i32 = 14;
            let start = data.as_ptr() as usize;
            let lo = start.next_multiple_of(4096);
            let hi = (start + bytes) / 4096 * 4096;
            if hi > lo {
                // SAFETY: [lo, hi) lies inside `data`'s allocation, page aligned; MADV_HUGEPAGE
                // only changes how the kernel backs the pages, never their contents.
                unsafe {
                    madvise(lo as *mut std::ffi::c_void, hi - lo, MADV_HUGEPAGE);
                }
            }
        }
    }
    Array4::from_shape_vec(shape, data).expect("shape matches length")
}

/// `exp` of every element, in place. f32 uses a branch-free, vectorizable Cody-Waite/Cephes
/// `expf` (relative error <= 2 ulp on normal results, the accuracy class of CUDA's `exp2f`,
/// docs/math.md §8.1 "add ~2 per exp"); results below the smallest normal (x < -87.33) are flushed to 0,
/// as Triton's `ex2.approx.ftz` does on NVIDIA GPUs (absolute error < 2^-126 per factor, inside
/// the error model's eta floor; it also avoids the x86 subnormal penalty); `-inf` gives exactly 0.
/// f64 uses libm's `exp` (no flush).
#[inline(always)]
pub(crate) fn vexp<T: Real>(x: &mut [T]) {
    if std::any::TypeId::of::<T>() == std::any::TypeId::of::<f32>() {
        // SAFETY: T is f32 (checked above), so the slice has the layout of [f32].
        let xf: &mut [f32] = unsafe { &mut *(x as *mut [T] as *mut [f32]) };
        for v in xf.iter_mut() {
            *v = expf_fast(*v);
        }
    } else {
        for v in x.iter_mut() {
            *v = v.exp();
        }
    }
}

/// Branch-free f32 exp: Cody-Waite reduction `x = n ln2 + r`, Cephes' degree-6 polynomial on
/// |r| <= ln2/2, exact scaling by 2^n; flush to 0 below -87.33 (see [`vexp`]).
#[inline(always)]
pub(crate) fn expf_fast(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4; // ln2 high part (exact in few bits)
    const C2: f32 = -2.121_944_4e-4; // ln2 - C1
    const SHIFT: f32 = 12_582_912.0; // 1.5 * 2^23: round to nearest integer by addition
    const LO: f32 = -87.33; // exp(LO) = 1.1838e-38 > 2^-126: every result computed is normal
    let xc = x.clamp(LO, 88.0);
    let t = xc * LOG2E + SHIFT;
    let n = t - SHIFT;
    let r = (xc - n * C1) - n * C2;
    let mut p = 1.987_569_2e-4f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5; // Cephes 5.0000001201e-1, which is 0.5 in f32
    let y = p * r * r + r + 1.0;
    // n is an integer in [-126, 127]; read it from the shifted sum's mantissa bits (pure integer
    // arithmetic, vectorizable; equals `n as i32`).
    let ni = (t.to_bits() as i32) - (SHIFT.to_bits() as i32);
    let s = f32::from_bits(((ni + 127) as u32) << 23);
    if x < LO {
        0.0
    } else {
        y * s
    }
}

/// Sum of `a[d] * b[d] * c[d]` with eight independent accumulators (vectorizable; a fixed,
/// deterministic summation order).
#[inline(always)]
pub(crate) fn dot3<T: Real>(a: &[T], b: &[T], c: &[T]) -> T {
    let n = a.len().min(b.len()).min(c.len());
    let (a, b, c) = (&a[..n], &b[..n], &c[..n]);
    let mut acc = [T::zero(); 8];
    let (ac, bc, cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
    let (ar, br, cr) = (ac.remainder(), bc.remainder(), cc.remainder());
    for ((x, y), z) in ac.zip(bc).zip(cc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l] * z[l];
        }
    }
    let mut tail = T::zero();
    for ((&x, &y), &z) in ar.iter().zip(br).zip(cr) {
        tail += x * y * z;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Sum per-channel gate gradients `[L, K]` down to `[L, kg]` (kg = 1: scalar gates).
pub(crate) fn reduce_dg<T: Real>(dg: Array2<T>, kg: usize) -> Array2<T> {
    if kg == 1 && dg.ncols() != 1 {
        let l = dg.nrows();
        let mut out = Array2::<T>::zeros((l, 1));
        for i in 0..l {
            let mut acc = T::zero();
            for &x in dg.row(i) {
                acc += x;
            }
            out[[i, 0]] = acc;
        }
        out
    } else {
        dg
    }
}

/// Whether the CPU supports the AVX-512 builds of the per-item kernels (runtime detection;
/// bitwise identical results, like the AVX2 builds).
#[inline]
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        has_avx2() && std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU supports the AVX2 + FMA builds of the per-item kernels (runtime detection).
/// The AVX2 builds are the same source compiled with 8-wide vectors: results are bitwise
/// identical (Rust never contracts `a * b + c` into an FMA on its own).
#[inline]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
