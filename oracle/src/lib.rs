//! # gla-oracle
//!
//! The ground truth of glacheck: the Gated Linear Attention recurrence and its exact gradients in
//! arbitrary precision (MPFR through `rug`), self-checked by raising the precision until two
//! successive evaluations agree.
//!
//! * [`recurrent::forward`] / [`recurrent::backward`] evaluate the recurrence at one working
//!   precision and keep the results as MPFR numbers ([`ExactSolution`]).
//! * [`evaluate`] raises the precision (127, 191, 319, ... bits by default) until two successive
//!   precisions agree to [`OracleOptions::min_agree_bits`] bits in every element, and returns the
//!   higher-precision result rounded ONCE to f64 ([`OracleResult::solution`]), the reverse-cumsum
//!   dg cross-check, and the MPFR values themselves (for a one-step rounding to bf16, f16, f32:
//!   [`OracleResult::round_to`]).
//! * [`exact_magnitudes`] computes the magnitude tensors `M_x` of the error model in MPFR (what
//!   the golden files store; the f64 computation is `gla_reference::bounds::magnitudes`).
//!
//! Inputs are taken exactly (every value of a [`Problem`] is an f64, which MPFR represents
//! exactly). `g = -inf` is `alpha = 0` exactly (a state reset). The gate gradient is the local
//! form `dg_t = alpha_t rowsum(S_{t-1} * dS_t)` (docs/math.md §4).
//!
//! ## Agreement (the convergence test)
//!
//! For an element `x` computed at precisions `p1 < p2` (values `x1`, `x2`), with magnitude
//! `M` (the componentwise condition magnitude of docs/math.md §8.1, in f64 from
//! `gla_reference::bounds::magnitudes`), the number of agreeing bits is
//!
//! ```text
//! bits(x) = floor( log2( scale / |x2 - x1| ) ),   scale = max(|x2|, 2^-F * M, 2^-1074)
//! ```
//!
//! capped at `p1` (identical values count as `p1` bits), where `F` =
//! [`OracleOptions::magnitude_floor_bits`] (default 32). So an element agrees to `b` bits when
//! its two values differ by at most `2^-b` relative to its own size, but never less than
//! `2^-(b+F)` relative to its magnitude: exact zeros and elements cancelled below `2^-F M` (where
//! relative accuracy is not attainable at any fixed precision, and no float implementation can be
//! judged anyway since every bound is at least `2^-53 M`) still converge, and values below the
//! smallest f64 subnormal round to 0 or `2^-1074` whatever their relative accuracy.
//! `bits_agreed` is the minimum over every element of every output (o, hT, dq, dk, dv, dg, dh0
//! and the reverse-cumsum dg, each with its own magnitude). The difference `x2 - x1` estimates
//! the error of `x1`; the returned `x2` carries about 64 more bits (the default schedule's gap),
//! so `bits_agreed` is a conservative estimate (the usual precision-doubling argument, not a
//! proof) of the accuracy of the returned values. With the default 80 bits, every element with
//! `|x| >= 2^-32 M` is then correct to about 80 bits relative (its f64 rounding is the correctly
//! rounded value unless it lies within 2^-80 of a rounding boundary), and every element to
//! `2^-112 M` absolute. The tests check this against 1000-bit evaluations.
//!
//! ## Cost
//!
//! Every evaluation costs about 16 MPFR operations per `(t, d, e)` for forward + backward
//! (19 for units too long to keep every state, see [`recurrent`]; 5 for forward only); the work
//! runs in parallel over (sequence, head, block of value columns), and the first two precisions
//! run concurrently.
//!
//! ```
//! use gla_oracle::{evaluate, OracleOptions};
//! use gla_reference::{Gates, Problem};
//! use ndarray::Array4;
//! let (b, t, h, k, v) = (1, 6, 1, 3, 2);
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| (t as f64 - d as f64) * 0.25);
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| ((t * d) % 3) as f64 - 1.0);
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| 0.5 + (t + e) as f64);
//! let mut g = Array4::from_elem((b, t, h, k), -0.25);
//! g[[0, 3, 0, 1]] = f64::NEG_INFINITY; // reset channel 1 at t = 3
//! let do_ = Array4::from_elem((b, t, h, v), 1.0);
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(do_).build()?;
//! let r = evaluate(&p, &OracleOptions { backward: true, ..OracleOptions::default() })?;
//! assert!(r.bits_agreed >= 80);
//! let grads = r.solution.grads.as_ref().unwrap();
//! assert_eq!(grads.dg[[0, 3, 0, 1]], 0.0); // alpha = 0: the gate gradient is exactly 0
//! // The reverse-cumsum form agrees with the local form.
//! let rc = r.dg_reverse_cumsum.as_ref().unwrap();
//! assert!((rc[[0, 2, 0, 0]] - grads.dg[[0, 2, 0, 0]]).abs() <= 1e-12);
//! # Ok::<(), gla_reference::GlaError>(())
//! ```
#![warn(missing_docs)]

pub mod magnitude;
pub mod recurrent;
pub mod round;

pub use magnitude::{exact_magnitudes, MAGNITUDE_PRECISION};
pub use recurrent::{ExactGradients, ExactSolution, MAX_PRECISION, MIN_PRECISION};
/// The MPFR binding whose `Float` holds the exact values (re-exported for convenience).
pub use rug;

use gla_reference::bounds::{magnitudes, Magnitudes};
use gla_reference::{Dtype, GlaError, Problem, Result, Solution};
use ndarray::Array4;
use rayon::prelude::*;
use rug::Float;

/// Options of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OracleOptions {
    /// Run the backward pass too (needs `do` in the problem). Default: false.
    pub backward: bool,
    /// Bits two successive precisions must agree to in every element (see the crate docs).
    /// Default 80 (f64 has 53).
    pub min_agree_bits: u32,
    /// First working precision in bits. Default 127 (see [`next_precision`]).
    pub start_precision: u32,
    /// Largest working precision tried before giving up. Default 4096.
    pub max_precision: u32,
    /// `F` in the agreement floor `2^-F * M` (see the crate docs). Default 32.
    pub magnitude_floor_bits: u32,
}

impl Default for OracleOptions {
    fn default() -> Self {
        OracleOptions {
            backward: false,
            min_agree_bits: 80,
            start_precision: 127,
            max_precision: 4096,
            magnitude_floor_bits: 32,
        }
    }
}

impl OracleOptions {
    /// Check the options; errors are [`GlaError::Options`].
    pub fn validate(&self) -> Result<()> {
        recurrent::check_precision(self.start_precision)?;
        recurrent::check_precision(self.max_precision)?;
        if self.start_precision >= self.max_precision {
            return Err(GlaError::Options(format!(
                "oracle start_precision ({}) must be below max_precision ({}): convergence needs two precisions",
                self.start_precision, self.max_precision
            )));
        }
        if self.min_agree_bits == 0 || self.min_agree_bits >= self.max_precision {
            return Err(GlaError::Options(format!(
                "oracle min_agree_bits = {} must be in [1, max_precision = {})",
                self.min_agree_bits, self.max_precision
            )));
        }
        if self.magnitude_floor_bits > 1024 {
            return Err(GlaError::Options(format!(
                "oracle magnitude_floor_bits = {} must be at most 1024",
                self.magnitude_floor_bits
            )));
        }
        Ok(())
    }
}

/// The precision schedule of [`evaluate`]: from `p`, add `max(64, p / 2)` bits, round up to a
/// whole number of 64-bit limbs and take one bit less (127, 191, 319, 511, 767, ...), capped
/// at `max`.
///
/// One bit below a limb boundary is where MPFR's fast paths for + and * apply (they need
/// `64 (n-1) < p < 64 n` for n <= 3); 127 and 191 bits cost about 15 % less than 128 and 192.
pub fn next_precision(p: u32, max: u32) -> u32 {
    let want = p.saturating_add((p / 2).max(64));
    let aligned = want
        .div_ceil(64)
        .saturating_mul(64)
        .saturating_sub(1)
        .max(p + 1);
    aligned.min(max)
}

/// The element that limited [`OracleResult::bits_agreed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limiting {
    /// Output tensor name (`o`, `ht`, `dq`, `dk`, `dv`, `dg`, `dh0`, `dg_reverse_cumsum`).
    pub tensor: &'static str,
    /// Index of the element.
    pub index: [usize; 4],
    /// Bits it agreed to.
    pub bits: u32,
}

/// Result of [`evaluate`].
#[derive(Debug, Clone, PartialEq)]
pub struct OracleResult {
    /// The converged result, each value rounded once from MPFR to f64.
    pub solution: Solution,
    /// Working precision (bits) of the returned values.
    pub precision: u32,
    /// Bits on which this precision and the previous one agree in every element (see the crate
    /// docs for the definition); at least the requested `min_agree_bits`.
    pub bits_agreed: u32,
    /// The reverse-cumsum dg (cross-check of the local-form `solution.grads.dg`), rounded once
    /// to f64, when the backward pass ran.
    pub dg_reverse_cumsum: Option<Array4<f64>>,
    /// The element with the fewest agreeing bits (None when every element was identical).
    pub limiting: Option<Limiting>,
    /// The MPFR values at `precision`, for rounding once to another format.
    pub exact: ExactSolution,
}

impl OracleResult {
    /// The converged result rounded once, directly from MPFR, to `dtype` (no double rounding
    /// through f64); values are returned as f64.
    pub fn round_to(&self, dtype: Dtype) -> Solution {
        self.exact.round_to(dtype)
    }
}

/// Evaluate the recurrence (and, with `opts.backward`, its gradients) at increasing precision
/// until two successive precisions agree to `opts.min_agree_bits` in every element.
///
/// Errors ([`GlaError::Options`]): invalid options, `backward` without `do`, or no agreement by
/// `max_precision` (the message names the limiting element).
pub fn evaluate(p: &Problem, opts: &OracleOptions) -> Result<OracleResult> {
    opts.validate()?;
    if opts.backward {
        p.require_backward()?;
    }
    let mut prec = opts.start_precision;
    // The first two precisions (always both evaluated) and the magnitudes run concurrently, so
    // the serial phases of one evaluation overlap the parallel work of the other.
    let mut next = next_precision(prec, opts.max_precision);
    let ((mags, mut prev), second) = rayon::join(
        || {
            rayon::join(
                || {
                    if opts.backward {
                        magnitudes(p)
                    } else {
                        Magnitudes::forward(p)
                    }
                },
                || recurrent::solve(p, prec, opts.backward),
            )
        },
        || recurrent::solve(p, next, opts.backward),
    );
    let mut first_cur = Some(second);
    loop {
        let cur = match first_cur.take() {
            Some(c) => c,
            None => recurrent::solve(p, next, opts.backward),
        };
        let (bits, limiting) = agreement(&prev, &cur, &mags, opts.magnitude_floor_bits);
        if bits >= opts.min_agree_bits {
            return Ok(OracleResult {
                solution: cur.to_solution(),
                precision: next,
                bits_agreed: bits,
                dg_reverse_cumsum: cur.dg_reverse_cumsum(Dtype::F64),
                limiting,
                exact: cur,
            });
        }
        if next >= opts.max_precision {
            let at = limiting
                .map(|l| {
                    format!(
                        "; worst element {}{:?} agreed to {} bits",
                        l.tensor, l.index, l.bits
                    )
                })
                .unwrap_or_default();
            return Err(GlaError::Options(format!(
                "oracle did not converge: precisions {prec} and {next} agree to {bits} bits, fewer than \
                 min_agree_bits = {}{at}; raise max_precision",
                opts.min_agree_bits
            )));
        }
        prev = cur;
        prec = next;
        next = next_precision(prec, opts.max_precision);
    }
}

/// Agreeing bits of two evaluations (the minimum over all elements) and the limiting element.
pub(crate) fn agreement(
    lo: &ExactSolution,
    hi: &ExactSolution,
    m: &Magnitudes,
    floor_bits: u32,
) -> (u32, Option<Limiting>) {
    let cap = lo.precision.min(hi.precision);
    let mut best = (cap, None);
    type Entry<'a> = (
        &'static str,
        &'a Array4<Float>,
        &'a Array4<Float>,
        &'a Array4<f64>,
    );
    let mut tensors: Vec<Entry<'_>> =
        vec![("o", &lo.o, &hi.o, &m.o), ("ht", &lo.ht, &hi.ht, &m.ht)];
    if let (Some(a), Some(b)) = (&lo.grads, &hi.grads) {
        // The oracle's dg is the local form (magnitude M_dg_local); its reverse-cumsum
        // cross-check is judged with M_dg, the magnitude of that algorithm.
        let mag = |name| {
            m.tensor(name)
                .expect("gradient magnitudes are computed whenever the oracle runs backward")
        };
        tensors.extend([
            ("dq", &a.dq, &b.dq, mag("dq")),
            ("dk", &a.dk, &b.dk, mag("dk")),
            ("dv", &a.dv, &b.dv, mag("dv")),
            ("dg", &a.dg, &b.dg, mag("dg_local")),
            ("dh0", &a.dh0, &b.dh0, mag("dh0")),
            (
                "dg_reverse_cumsum",
                &a.dg_reverse_cumsum,
                &b.dg_reverse_cumsum,
                mag("dg"),
            ),
        ]);
    }
    for (name, a, b, mm) in tensors {
        let (bits, at) = tensor_agreement(a, b, mm, floor_bits, cap);
        if bits < best.0 {
            best = (
                bits,
                at.map(|index| Limiting {
                    tensor: name,
                    index,
                    bits,
                }),
            );
        }
    }
    best
}

/// Minimum agreeing bits over one tensor (in parallel) and where it occurs.
fn tensor_agreement(
    a: &Array4<Float>,
    b: &Array4<Float>,
    m: &Array4<f64>,
    floor_bits: u32,
    cap: u32,
) -> (u32, Option<[usize; 4]>) {
    let shape = a.shape().to_vec();
    let unravel = |mut i: usize| {
        let mut idx = [0usize; 4];
        for ax in (0..4).rev() {
            idx[ax] = i % shape[ax];
            i /= shape[ax];
        }
        idx
    };
    match (a.as_slice(), b.as_slice(), m.as_slice()) {
        (Some(a), Some(b), Some(m)) => {
            const CHUNK: usize = 4096;
            let (bits, at) = a
                .par_chunks(CHUNK)
                .zip(b.par_chunks(CHUNK))
                .zip(m.par_chunks(CHUNK))
                .enumerate()
                .map(|(c, ((a, b), m))| {
                    let mut diff = Float::new(64);
                    let mut best = (cap, None);
                    for (i, ((x1, x2), &mag)) in a.iter().zip(b).zip(m).enumerate() {
                        let bits = element_bits(x1, x2, mag, floor_bits, cap, &mut diff);
                        if bits < best.0 {
                            best = (bits, Some(c * CHUNK + i));
                        }
                    }
                    best
                })
                .reduce(|| (cap, None), |x, y| if y.0 < x.0 { y } else { x });
            (bits, at.map(unravel))
        }
        _ => {
            let mut diff = Float::new(64);
            let mut best = (cap, None);
            for (((idx, x1), x2), &mag) in a.indexed_iter().zip(b.iter()).zip(m.iter()) {
                let bits = element_bits(x1, x2, mag, floor_bits, cap, &mut diff);
                if bits < best.0 {
                    best = (bits, Some([idx.0, idx.1, idx.2, idx.3]));
                }
            }
            best
        }
    }
}

/// log2 of a positive finite MPFR value (to f64 accuracy), from its mantissa and exponent.
fn log2_abs(x: &Float) -> f64 {
    let (m, e) = x.to_f64_exp();
    m.abs().log2() + e as f64
}

/// Agreeing bits of one element (see the crate docs), capped at `cap`.
fn element_bits(
    x1: &Float,
    x2: &Float,
    mag: f64,
    floor_bits: u32,
    cap: u32,
    diff: &mut Float,
) -> u32 {
    if x1 == x2 {
        return cap;
    }
    if !x1.is_finite() || !x2.is_finite() {
        return 0;
    }
    rug::Assign::assign(diff, x2 - x1);
    if diff.is_zero() {
        return cap;
    }
    let mut lscale = -1074.0f64;
    if !x2.is_zero() {
        lscale = lscale.max(log2_abs(x2));
    }
    if mag.is_finite() && mag > 0.0 {
        lscale = lscale.max(mag.log2() - floor_bits as f64);
    }
    let bits = (lscale - log2_abs(diff)).floor();
    if bits <= 0.0 {
        0
    } else if bits >= cap as f64 {
        cap
    } else {
        bits as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_bits_definition() {
        let mut d = Float::new(64);
        let one = Float::with_val(200, 1);
        let x = Float::with_val(200, 1) + Float::with_val(200, Float::i_exp(1, -90));
        assert_eq!(element_bits(&one, &x, 1.0, 32, 128, &mut d), 90); // |diff| = 2^-90, scale = 1 + 2^-90
        assert_eq!(element_bits(&one, &one, 1.0, 32, 128, &mut d), 128);
        // An exact zero against a tiny value: the floor 2^-32 * M decides.
        let z = Float::new(200);
        let tiny = Float::with_val(200, Float::i_exp(1, -150));
        assert_eq!(element_bits(&tiny, &z, 1.0, 32, 128, &mut d), 118);
        assert_eq!(element_bits(&tiny, &z, 0.0, 32, 128, &mut d), 0); // M = 0: only the 2^-1074 floor
        assert_eq!(
            element_bits(&tiny, &z, 2f64.powi(-100), 32, 128, &mut d),
            18
        );
    }

    #[test]
    fn precision_schedule() {
        let mut p = 128;
        let mut seen = vec![p];
        while p < 4096 {
            p = next_precision(p, 4096);
            seen.push(p);
        }
        assert_eq!(&seen[..4], &[128, 191, 319, 511]);
        assert_eq!(next_precision(127, 4096), 191);
        assert_eq!(next_precision(64, 4096), 127);
        assert_eq!(next_precision(4000, 4096), 4096);
        assert_eq!(*seen.last().unwrap(), 4096);
    }
}
