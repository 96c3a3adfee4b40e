//! Small dense matrix products of the chunked form, without packing.
//!
//! The chunked form's products are small (`[64, 128] @ [128, 128]` and smaller, a few per chunk),
//! where a general GEMM spends about a third of its time packing both operands. Here, for a
//! B with unit column stride, register tiles read A by broadcasting its elements (any strides:
//! a transposed A costs nothing) and B by rows, without packing (~10-15% faster than
//! matrixmultiply on `[64, 128] @ [128, 128]` here). Each element is accumulated in a fixed
//! order, `acc = fma(a[i, p], b[p, j], acc)` for `p = 0, 1, ..., k-1` from 0, then
//! `c = alpha * acc (+ beta * c)`: the same results whatever the build (baseline, AVX2 + FMA,
//! AVX-512) and tile shape (in the baseline build `mul_add` is a correctly rounded software
//! FMA: slow, but only CPUs without AVX2 + FMA run it). A transposed B goes to matrixmultiply
//! (its packing copies it faster than a plain transpose); it picks its kernel at run time,
//! independently of our builds, so these products too are the same in every build.

use crate::real::Real;
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewMut2, ShapeBuilder};

/// `c = alpha * A @ B + beta * c`: `a` is `[m, k]` with strides `sa` (row, column), `b` is
/// `[k, n]` with strides `sb`, `c` is `[m, n]` row-major with row stride `ldc`. With `beta = 0`
/// the old contents of `c` are never read (they may be anything, NaN included).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub(crate) fn gemm<T: Real>(
    (m, k, n): (usize, usize, usize),
    alpha: T,
    a: &[T],
    sa: (usize, usize),
    b: &[T],
    sb: (usize, usize),
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k > 0 {
        assert!(
            a.len() > (m - 1) * sa.0 + (k - 1) * sa.1,
            "gemm: A fits its slice"
        );
        assert!(
            b.len() > (k - 1) * sb.0 + (n - 1) * sb.1,
            "gemm: B fits its slice"
        );
    }
    assert!(c.len() >= (m - 1) * ldc + n, "gemm: C fits its slice");
    if sb.1 == 1 || k == 0 {
        gemm_rows(m, k, n, alpha, a, sa, b, sb.0, beta, c, ldc);
    } else {
        // B with non-unit column stride (a transposed matrix): matrixmultiply, whose packing
        // copies it faster than a plain transpose here.
        let av = ArrayView2::from_shape((m, k).strides(sa), a).expect("gemm: A fits its slice");
        let bv = ArrayView2::from_shape((k, n).strides(sb), b).expect("gemm: B fits its slice");
        let mut cv =
            ArrayViewMut2::from_shape((m, n).strides((ldc, 1)), c).expect("gemm: C fits its slice");
        general_mat_mul(alpha, &av, &bv, beta, &mut cv);
    }
}

/// [`gemm`] with a row-major B of row stride `ldb`: column blocks of 32, 16 and 1, each over
/// row blocks of `MR` rows (8 for f32, 4 for f64: the accumulators stay in registers) and 1.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn gemm_rows<T: Real>(
    m: usize,
    k: usize,
    n: usize,
    alpha: T,
    a: &[T],
    sa: (usize, usize),
    b: &[T],
    ldb: usize,
    beta: T,
    c: &mut [T],
    ldc: usize,
) {
    let g = Geo {
        k,
        alpha,
        beta,
        sa,
        ldb,
        ldc,
    };
    let mut j0 = 0;
    while j0 + 32 <= n {
        cols::<T, 32>(&g, m, j0, a, b, c);
        j0 += 32;
    }
    if j0 + 16 <= n {
        cols::<T, 16>(&g, m, j0, a, b, c);
        j0 += 16;
    }
    while j0 < n {
        cols::<T, 1>(&g, m, j0, a, b, c);
        j0 += 1;
    }
}

/// The sizes and scalars shared by the tiles of one product.
struct Geo<T> {
    k: usize,
    alpha: T,
    beta: T,
    sa: (usize, usize),
    ldb: usize,
    ldc: usize,
}

/// Columns `j0..j0 + NR` of C, all rows.
#[inline(always)]
fn cols<T: Real, const NR: usize>(g: &Geo<T>, m: usize, j0: usize, a: &[T], b: &[T], c: &mut [T]) {
    let mut i0 = 0;
    if std::mem::size_of::<T>() == 4 {
        while i0 + 8 <= m {
            tile::<T, 8, NR>(g, i0, j0, a, b, c);
            i0 += 8;
        }
    } else {
        while i0 + 4 <= m {
            tile::<T, 4, NR>(g, i0, j0, a, b, c);
            i0 += 4;
        }
    }
    while i0 < m {
        tile::<T, 1, NR>(g, i0, j0, a, b, c);
        i0 += 1;
    }
}

/// One `MR x NR` register tile of C at (`i0`, `j0`).
#[inline(always)]
fn tile<T: Real, const MR: usize, const NR: usize>(
    g: &Geo<T>,
    i0: usize,
    j0: usize,
    a: &[T],
    b: &[T],
    c: &mut [T],
) {
    let mut acc = [[T::zero(); NR]; MR];
    let (sa0, sa1) = g.sa;
    for p in 0..g.k {
        let brow: &[T; NR] = b[p * g.ldb + j0..p * g.ldb + j0 + NR]
            .try_into()
            .expect("NR elements");
        for (r, accr) in acc.iter_mut().enumerate() {
            let av = a[(i0 + r) * sa0 + p * sa1];
            for (x, &bv) in accr.iter_mut().zip(brow) {
                *x = av.mul_add(bv, *x);
            }
        }
    }
    for (r, accr) in acc.iter().enumerate() {
        let at = (i0 + r) * g.ldc + j0;
        let crow: &mut [T; NR] = (&mut c[at..at + NR]).try_into().expect("NR elements");
        if g.beta == T::zero() {
            for (cv, &x) in crow.iter_mut().zip(accr) {
                *cv = g.alpha * x;
            }
        } else {
            for (cv, &x) in crow.iter_mut().zip(accr) {
                *cv = g.alpha * x + g.beta * *cv;
            }
        }
    }
}
