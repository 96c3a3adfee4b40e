//! Reset-aware cumulative gates, shared by both log-space forms (the parallel form over a whole
//! sequence, the chunked form per chunk).
//!
//! For a run of rows (a whole sequence for the parallel form, one
//! chunk for the chunked form) and channel d, let `z_i` be the row of the last `-inf` gate at or
//! before row i (or -1) and `Gr_i = sum_{r = z_i+1 .. i} g_r` the cumulative gate restarted after
//! it (`Gr_i = 0` on the reset row itself). Then, for `j <= i` (j = -1 meaning "before row 0"):
//!
//!   decay(j -> i) = prod_{r=j+1..i} alpha_r = 0                     if z_i > j (a reset in (j, i]),
//!                                           = exp(Gr_i - Gr_j)       otherwise (then z_j = z_i),
//!
//! with `Gr_{-1} = 0`. Without resets `Gr` is the ordinary inclusive cumsum (the chunk-local `Gl`
//! of fla, or the global `G`), so the rounding behaviour (lambda of the error model) is unchanged;
//! `-inf - (-inf)` never arises and every exponent reaching `exp` is `<= 0` (floating-point
//! addition of non-positive numbers is monotone, so `Gr_i <= Gr_j` holds exactly).

use crate::chunked::seg::vexp;
use crate::real::Real;
use ndarray::{Array2, ArrayView2};

/// Reset-aware cumulative gates of a run of rows (see the module docs).
pub(crate) struct Cum<T> {
    /// Row of the last reset at or before each row (-1: none), `[L, Kg]`.
    pub z: Array2<i32>,
    /// Cumulative gate restarted after the last reset, `[L, Kg]`.
    pub gr: Array2<T>,
    /// Number of gate channels (K, or 1 for scalar gates).
    pub kg: usize,
}

impl<T: Real> Cum<T> {
    /// Build from gates `[L, Kg]` (in the compute type).
    #[inline(always)]
    pub fn new(g: ArrayView2<T>) -> Self {
        let (l, kg) = g.dim();
        let gstd = g.as_standard_layout();
        let mut c = Self::empty();
        c.refill(gstd.as_slice().expect("standard layout"), l, kg);
        c
    }

    /// An empty one, to be filled by [`Self::refill`].
    pub fn empty() -> Self {
        Cum {
            z: Array2::from_elem((0, 0), -1),
            gr: Array2::zeros((0, 0)),
            kg: 1,
        }
    }

    /// Rebuild in place from gates `gsl` (`[l, kg]` row-major, in the compute type), reusing
    /// the buffers when the shape is unchanged.
    #[inline(always)]
    pub fn refill(&mut self, gsl: &[T], l: usize, kg: usize) {
        assert_eq!(gsl.len(), l * kg, "gates [l, kg]");
        if self.z.dim() != (l, kg) {
            self.z = Array2::from_elem((l, kg), -1);
            self.gr = Array2::zeros((l, kg));
        }
        self.kg = kg;
        let zs = self.z.as_slice_mut().expect("standard layout");
        let gs = self.gr.as_slice_mut().expect("standard layout");
        // Row by row (vectorizable across channels); per channel the same sequential sums,
        // starting from "no reset" (-1) and 0 before row 0.
        let ninf = T::neg_infinity();
        for ((zr, gw), gi) in zs
            .chunks_exact_mut(kg)
            .zip(gs.chunks_exact_mut(kg))
            .zip(gsl.chunks_exact(kg))
            .take(1)
        {
            for ((zo, go), &x) in zr.iter_mut().zip(gw.iter_mut()).zip(gi) {
                let reset = x == ninf;
                *zo = if reset { 0 } else { -1 };
                *go = if reset { T::zero() } else { T::zero() + x };
            }
        }
        for i in 1..l {
            let (zprev, zcur) = zs[(i - 1) * kg..(i + 1) * kg].split_at_mut(kg);
            let (gprev, gcur) = gs[(i - 1) * kg..(i + 1) * kg].split_at_mut(kg);
            let gi = &gsl[i * kg..(i + 1) * kg];
            let ii = i as i32;
            for ((((zo, go), &zp), &gp), &x) in zcur
                .iter_mut()
                .zip(gcur.iter_mut())
                .zip(zprev.iter())
                .zip(gprev.iter())
                .zip(gi)
            {
                let reset = x == ninf;
                *zo = if reset { ii } else { zp };
                *go = if reset { T::zero() } else { gp + x };
            }
        }
    }

    /// Decay from row `j` to row `i` (`j <= i`; `j = -1`: from before row 0) in gate channel `c`
    /// (`c < kg`). Exactly 0 across a reset; otherwise `exp` of a non-positive exponent.
    #[inline(always)]
    pub fn dec(&self, i: usize, j: isize, c: usize) -> T {
        if self.z[[i, c]] as isize > j {
            T::zero()
        } else {
            let base = if j < 0 {
                T::zero()
            } else {
                self.gr[[j as usize, c]]
            };
            let e = self.gr[[i, c]] - base;
            debug_assert!(
                e <= T::zero(),
                "positive (or NaN) exponent {e:?} reached exp()"
            );
            let mut a = [e];
            vexp(&mut a);
            a[0]
        }
    }

    #[inline(always)]
    fn zrow(&self, i: usize) -> &[i32] {
        &self.z.as_slice().expect("standard layout")[i * self.kg..(i + 1) * self.kg]
    }

    #[inline(always)]
    fn grow(&self, i: usize) -> &[T] {
        &self.gr.as_slice().expect("standard layout")[i * self.kg..(i + 1) * self.kg]
    }

    /// Fill `out` (length K) with `decay(j -> i)` per key channel (broadcast for scalar gates).
    /// The exponent is selected to `-inf` across a reset BEFORE `exp` (never a multiplied mask),
    /// and is otherwise `Gr_i - Gr_j <= 0`.
    #[inline(always)]
    pub fn dec_row(&self, i: usize, j: isize, out: &mut [T]) {
        if self.kg == 1 {
            let e = self.dec(i, j, 0);
            out.fill(e);
            return;
        }
        let (zi, gi) = (self.zrow(i), self.grow(i));
        let jj = j as i32;
        let ninf = T::neg_infinity();
        if j < 0 {
            for ((o, &z), &g) in out.iter_mut().zip(zi).zip(gi) {
                *o = if z > jj { ninf } else { g };
            }
        } else {
            let gj = self.grow(j as usize);
            for (((o, &z), &g), &h) in out.iter_mut().zip(zi).zip(gi).zip(gj) {
                *o = if z > jj { ninf } else { g - h };
            }
        }
        debug_assert!(
            out.iter().all(|x| *x <= T::zero()),
            "positive (or NaN) exponent reached exp()"
        );
        vexp(out);
    }

    /// `round(mul * x[r, d] * decay(j(r) -> i(r))[d])` for the rows `r` of `x` (the factor builder of
    /// every log-space product). `map(r) = (i, j)` gives the decay's end and start rows.
    #[inline(always)]
    pub fn factor(
        &self,
        x: ArrayView2<T>,
        map: impl Fn(usize) -> (usize, isize),
        mul: T,
        round: Option<crate::Dtype>,
    ) -> Array2<T> {
        let (rows, kk) = x.dim();
        let mut out = Array2::<T>::zeros((rows, kk));
        for (r, mut orow) in out.rows_mut().into_iter().enumerate() {
            let (i, j) = map(r);
            let o = orow.as_slice_mut().expect("standard layout");
            self.dec_row(i, j, o);
            for (o, &xv) in o.iter_mut().zip(x.row(r).iter()) {
                *o = mul * xv * *o;
            }
            if round.is_some() {
                for o in o.iter_mut() {
                    *o = crate::rounding::round1(*o, round);
                }
            }
        }
        out
    }

    /// The decay matrix `decay(j(r) -> i(r))[d]`, `[rows, k]`.
    #[inline(always)]
    pub fn decays(
        &self,
        rows: usize,
        k: usize,
        map: impl Fn(usize) -> (usize, isize),
    ) -> Array2<T> {
        let mut out = Array2::<T>::zeros((rows, k));
        for (r, mut orow) in out.rows_mut().into_iter().enumerate() {
            let (i, j) = map(r);
            self.dec_row(i, j, orow.as_slice_mut().expect("standard layout"));
        }
        out
    }

    /// Per-channel decay vector `decay(j -> i)` expanded to K channels.
    pub fn dec_vec(&self, i: usize, j: isize, k: usize) -> Vec<T> {
        (0..k)
            .map(|d| self.dec(i, j, if self.kg == 1 { 0 } else { d }))
            .collect()
    }
}
