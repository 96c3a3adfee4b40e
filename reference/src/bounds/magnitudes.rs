//! Magnitude tensors M_x (docs/math.md §8.1): the recurrence run in f64 on absolute values with
//! the exact decays.
//!
//! This is the f64 computation of the magnitudes, used by every comparison and by the oracle's
//! convergence floor. The same tensors in MPFR, platform-independent to the last bit, are
//! `gla_oracle::exact_magnitudes`, which the golden files store; the two agree to about 1e-15
//! relative.

use super::DgForm;
use crate::error::Result;
use crate::problem::Problem;
use crate::recurrent::{run, run_set, Opts, Raw};
use crate::solution::Solution;
use ndarray::Array4;

/// The componentwise condition magnitudes of every output (docs/math.md §8), in f64.
///
/// `|x| <= M_x` holds for every element (up to f64 rounding of M itself), and a relative input
/// perturbation `eps` moves `x` by `O(eps * M_x)`. The backward magnitudes are present only when
/// the problem has `do`.
///
/// - `o`: `M_o_t[e] = |scale| sum_d |q_t[d]| Sabs_t[d,e]`, with
///   `Sabs_t = Diag(alpha_t) Sabs_{t-1} + outer(|k_t|, |v_t|)`, `Sabs_0 = |h0|`;
/// - `ht`: `Sabs_T`;
/// - `dq`: `|scale| Sabs_t @ |do_t|`; `dk`: `dSabs_t @ |v_t|`; `dv`: `dSabs_t^T @ |k_t|`;
///   `dh0`: `Diag(alpha_1) dSabs_1`, with `dSabs_t = Diag(alpha_{t+1}) dSabs_{t+1} +
///   |scale| outer(|q_t|, |do_t|)`, `dSabs_T` seeded with `|dhT|`;
/// - `dg`: magnitude of the reverse-cumsum algorithm,
///   `sum_{s>=t} (|q_s| M_dq_s + |k_s| M_dk_s) + rowsum(Sabs_T * |dhT|)`;
/// - `dg_local`: the componentwise condition magnitude of dg,
///   `alpha_t * rowsum(Sabs_{t-1} * dSabs_t)` (10x to 1e14x smaller than `dg`).
///
/// For scalar gates `dg` and `dg_local` are channel sums, shape `[B, T, H, 1]`.
///
/// ```
/// use gla_reference::bounds::magnitudes;
/// use gla_reference::{recurrent, Gates, Problem};
/// use ndarray::Array4;
/// let q = Array4::from_shape_fn((1, 4, 1, 2), |(_, t, _, d)| if (t + d) % 2 == 0 { 1.0 } else { -1.0 });
/// let p = Problem::builder(q.clone(), q.clone(), Array4::from_elem((1, 4, 1, 2), 1.0),
///                          Gates::PerChannel(Array4::from_elem((1, 4, 1, 2), -0.25)))
///     .do_(Array4::from_elem((1, 4, 1, 2), 1.0)).build()?;
/// let m = magnitudes(&p);
/// let x = recurrent::backward::<f64>(&p)?;
/// assert!(x.o.iter().zip(m.o.iter()).all(|(x, m)| x.abs() <= *m));
/// assert!(m.dg.is_some() && m.dg_local.is_some());
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Magnitudes {
    /// M_o `[B, T, H, V]`.
    pub o: Array4<f64>,
    /// M_hT `[N, H, K, V]`.
    pub ht: Array4<f64>,
    /// M_dq `[B, T, H, K]`.
    pub dq: Option<Array4<f64>>,
    /// M_dk `[B, T, H, K]`.
    pub dk: Option<Array4<f64>>,
    /// M_dv `[B, T, H, V]`.
    pub dv: Option<Array4<f64>>,
    /// M_dh0 `[N, H, K, V]`.
    pub dh0: Option<Array4<f64>>,
    /// M_dg of the reverse-cumsum algorithm `[B, T, H, Kg]`.
    pub dg: Option<Array4<f64>>,
    /// M_dg_local, the local form's (condition) magnitude `[B, T, H, Kg]`.
    pub dg_local: Option<Array4<f64>>,
}

impl Magnitudes {
    /// The forward magnitudes only (`o`, `ht`; every gradient magnitude `None`), even when `p`
    /// has `do`: bitwise the `o` and `ht` of [`magnitudes`], at the cost of a forward pass.
    ///
    /// ```
    /// use gla_reference::bounds::{magnitudes, Magnitudes};
    /// use gla_reference::{Gates, Problem};
    /// use ndarray::Array4;
    /// let x = Array4::from_shape_fn((1, 3, 1, 2), |(_, t, _, d)| t as f64 - d as f64);
    /// let p = Problem::builder(x.clone(), x.clone(), x.clone(),
    ///                          Gates::PerChannel(Array4::from_elem((1, 3, 1, 2), -0.5)))
    ///     .do_(x).build()?;
    /// let (fwd, all) = (Magnitudes::forward(&p), magnitudes(&p));
    /// assert_eq!((&fwd.o, &fwd.ht), (&all.o, &all.ht));
    /// assert!(fwd.dq.is_none() && all.dq.is_some());
    /// # Ok::<(), gla_reference::GlaError>(())
    /// ```
    pub fn forward(p: &Problem) -> Magnitudes {
        compute(p, false)
    }

    /// The magnitude of an output by its file name (`o`, `ht`, `dq`, `dk`, `dv`, `dh0`, `dg`,
    /// `dg_local`).
    pub fn tensor(&self, name: &str) -> Option<&Array4<f64>> {
        match name {
            "o" => Some(&self.o),
            "ht" => Some(&self.ht),
            "dq" => self.dq.as_ref(),
            "dk" => self.dk.as_ref(),
            "dv" => self.dv.as_ref(),
            "dh0" => self.dh0.as_ref(),
            "dg" => self.dg.as_ref(),
            "dg_local" => self.dg_local.as_ref(),
            _ => None,
        }
    }
}

/// Compute the magnitude tensors of a problem in f64 (backward ones only when `do` is present).
///
/// Cost: one f64 forward and backward recurrence (plus a checkpointed recomputation for
/// `dg_local`), parallel over (sequence, head).
pub fn magnitudes(p: &Problem) -> Magnitudes {
    compute(p, p.has_backward())
}

/// The f64 recurrence's solution of `p` and the magnitudes `magnitudes(p)`, in one parallel
/// pass over the (sequence, head) pairs: bitwise the results of `recurrent::backward_with::<f64>(p,
/// form)` (with `backward`; `recurrent::forward::<f64>(p)` without) and of [`magnitudes`] (which
/// has the gradient magnitudes whenever `p` has `do`), at the cost of one pass instead of two
/// (each (sequence, head) runs both recurrences in turn, and writes its results in place).
/// This is what the certified f64 truth needs (`gla_judge::Truth::f64`).
///
/// ```
/// use gla_reference::bounds::{magnitudes, solve_with_magnitudes, DgForm};
/// use gla_reference::{recurrent, Gates, Problem};
/// use ndarray::Array4;
/// let x = Array4::from_shape_fn((2, 5, 2, 3), |(b, t, h, d)| (b + 2 * t + h) as f64 * 0.1 - d as f64 * 0.3);
/// let p = Problem::builder(x.clone(), x.clone(), x.clone(),
///                          Gates::PerChannel(Array4::from_elem((2, 5, 2, 3), -0.5)))
///     .do_(x).build()?;
/// let (s, m) = solve_with_magnitudes(&p, true, DgForm::Local)?;
/// assert_eq!(s, recurrent::backward_with::<f64>(&p, DgForm::Local)?);
/// assert_eq!(m, magnitudes(&p));
/// let (s, m) = solve_with_magnitudes(&p, false, DgForm::Local)?;
/// assert_eq!((s, m), (recurrent::forward::<f64>(&p)?, magnitudes(&p)));
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn solve_with_magnitudes(
    p: &Problem,
    backward: bool,
    form: DgForm,
) -> Result<(Solution, Magnitudes)> {
    if backward {
        p.require_backward()?;
    }
    let solve = Opts {
        grads: backward,
        dg_rc: backward && form == DgForm::ReverseCumsum,
        dg_local: backward && form == DgForm::Local,
        abs: false,
    };
    let mut raws = run_set::<f64>(p, &[solve, magnitude_opts(p.has_backward())]);
    let m = raws.pop().expect("two results");
    let s = raws.pop().expect("two results");
    Ok((s.into_solution(form), from_raw(m)))
}

/// The kernel options of the magnitudes, the gradient ones only when `grads`.
fn magnitude_opts(grads: bool) -> Opts {
    Opts {
        grads,
        dg_rc: true,
        dg_local: true,
        abs: true,
    }
}

/// The magnitudes, the gradient ones only when `grads` (which needs `do`).
fn compute(p: &Problem, grads: bool) -> Magnitudes {
    from_raw(run::<f64>(p, magnitude_opts(grads)))
}

fn from_raw(raw: Raw) -> Magnitudes {
    Magnitudes {
        o: raw.o,
        ht: raw.ht,
        dq: raw.dq,
        dk: raw.dk,
        dv: raw.dv,
        dh0: raw.dh0,
        dg: raw.dg_rc,
        dg_local: raw.dg_local,
    }
}
