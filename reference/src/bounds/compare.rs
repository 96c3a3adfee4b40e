//! Judging a candidate solution against the exact one (docs/math.md §8.1).

use super::{BoundSpec, DgForm, Magnitudes};
use crate::error::{GlaError, Result};
use crate::problem::Problem;
use crate::solution::{Solution, OUTPUT_NAMES};
use ndarray::Array4;
use rayon::prelude::*;
use std::fmt;

/// Both ratios of the gate gradient: against the reverse-cumsum magnitude `M_dg` and against the
/// local (condition) magnitude `M_dg_local`. The judged one is docs/math.md's [`DgForm`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DgRatios {
    /// Ratio with `M_dg` (reverse-cumsum algorithm's magnitude).
    pub reverse_cumsum: f64,
    /// Ratio with `M_dg_local`.
    pub local: f64,
}

/// The verdict on one output tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorReport {
    /// Output name (`o`, `ht`, `dq`, `dk`, `dv`, `dg`, `dh0`).
    pub name: String,
    /// `max |x_hat - x*| / ((sum u_s + u_acc) M_x + eta)` over elements where both values are
    /// finite (0 for an empty tensor; `inf` if an element with `M_x = 0` and `eta = 0` is not
    /// exactly right).
    pub ratio: f64,
    /// `(sum u_s + c u_acc (n_acc + lambda)) / (sum u_s + u_acc)`.
    pub bound: f64,
    /// Index of the element attaining `ratio` (`[b, t, h, channel]` or `[n, h, k, v]`).
    pub worst_index: Option<[usize; 4]>,
    /// Candidate value at the worst element.
    pub worst_candidate: f64,
    /// Exact value at the worst element.
    pub worst_exact: f64,
    /// Magnitude at the worst element.
    pub worst_magnitude: f64,
    /// `max |x_hat - x*|` over finite pairs.
    pub max_abs_err: f64,
    /// `max |x*|` over finite exact values.
    pub max_abs_exact: f64,
    /// `max |x_hat - x*| / max |x*|` (0 when both are 0, inf when only the error is nonzero).
    pub rel_err: f64,
    /// Non-finite candidate elements whose exact value is finite (each one fails the tensor).
    pub candidate_nonfinite: usize,
    /// Non-finite exact (oracle) elements; these elements are not judged.
    pub exact_nonfinite: usize,
    /// First candidate element counted in `candidate_nonfinite`.
    pub first_nonfinite: Option<[usize; 4]>,
    /// Elements with `M_x = 0` and an error above `eta`.
    pub zero_magnitude_violations: usize,
    /// For dg: both ratios.
    pub dg: Option<DgRatios>,
    /// `c` used.
    pub c: f64,
    /// `n_acc` used.
    pub n_acc: f64,
    /// `lambda` used.
    pub lambda: f64,
    /// `sum u_s`.
    pub u_stages: f64,
    /// `u_acc`.
    pub u_acc: f64,
    /// Underflow floor.
    pub eta: f64,
    /// The part of `ratio` at the worst element charged for an approximate truth's own error
    /// ([`compare_approximate`]; 0 against an exact truth).
    pub truth_charge: f64,
    /// Verdict: `ratio <= bound` and no non-finite candidate element where the exact one is finite.
    pub pass: bool,
}

/// The result of [`compare`]: one [`TensorReport`] per output tensor of the candidate.
///
/// `Display` prints an aligned table (one row per tensor).
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// Per-tensor verdicts in `OUTPUT_NAMES` order.
    pub tensors: Vec<TensorReport>,
}

impl Report {
    /// True when every tensor passes.
    pub fn pass(&self) -> bool {
        self.tensors.iter().all(|t| t.pass)
    }
    /// The report of one tensor by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorReport> {
        self.tensors.iter().find(|t| t.name == name)
    }
    /// The largest `ratio / bound` over tensors (< 1 passes on ratios alone).
    pub fn worst_fraction_of_bound(&self) -> f64 {
        self.tensors
            .iter()
            .map(|t| t.ratio / t.bound)
            .fold(0.0, f64::max)
    }
}

fn fmt_idx(i: Option<[usize; 4]>) -> String {
    match i {
        Some(i) => format!("[{},{},{},{}]", i[0], i[1], i[2], i[3]),
        None => "-".into(),
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<6} {:>10} {:>10} {:<6} {:<18} {:>11} {:>9}  dg ratios (rc / local)",
            "tensor", "ratio", "bound", "result", "worst", "err/max|x|", "nonfin"
        )?;
        for t in &self.tensors {
            let dg = match t.dg {
                Some(d) => format!("{:.3e} / {:.3e}", d.reverse_cumsum, d.local),
                None => String::new(),
            };
            writeln!(
                f,
                "{:<6} {:>10.3e} {:>10.3e} {:<6} {:<18} {:>11.3e} {:>9}  {}",
                t.name,
                t.ratio,
                t.bound,
                if t.pass { "PASS" } else { "FAIL" },
                fmt_idx(t.worst_index),
                t.rel_err,
                format!("{}/{}", t.candidate_nonfinite, t.exact_nonfinite),
                dg
            )?;
        }
        Ok(())
    }
}

/// Elementwise statistics of one candidate tensor against one magnitude.
struct Stats {
    ratio: f64,
    worst: Option<[usize; 4]>,
    max_err: f64,
    max_exact: f64,
    cand_nonfinite: usize,
    exact_nonfinite: usize,
    first_nonfinite: Option<[usize; 4]>,
    zero_mag: usize,
    charge: f64,
}

/// The error budget of an approximate truth for one tensor: `coef * m + eta` per element.
#[derive(Clone, Copy)]
struct Slack<'a> {
    m: &'a Array4<f64>,
    coef: f64,
    eta: f64,
}

fn stats(
    exact: &Array4<f64>,
    cand: &Array4<f64>,
    mag: &Array4<f64>,
    unit: f64,
    eta: f64,
    slack: Option<Slack<'_>>,
) -> Stats {
    let mut s = Stats {
        ratio: 0.0,
        worst: None,
        max_err: 0.0,
        max_exact: 0.0,
        cand_nonfinite: 0,
        exact_nonfinite: 0,
        first_nonfinite: None,
        zero_mag: 0,
        charge: 0.0,
    };
    let mut worst_r = -1.0f64;
    // Contiguous tensors (all of them, in practice): one pass over flat slices, the index
    // formed only where it is recorded; the same elements in the same order as the general
    // path below, so the same result bit for bit.
    let same = |a: &Array4<f64>| a.shape() == exact.shape();
    let slack_m = match slack {
        None => Some(None),
        Some(sl) if same(sl.m) => sl.m.as_slice().map(Some),
        Some(_) => None,
    };
    if let (Some(xs), Some(ys), Some(ms), Some(sm)) =
        (exact.as_slice(), cand.as_slice(), mag.as_slice(), slack_m)
    {
        if same(cand) && same(mag) {
            let (ys, ms) = (&ys[..xs.len()], &ms[..xs.len()]);
            let dims = exact.dim();
            let unravel = |i: usize| {
                let (d3, r) = (i % dims.3, i / dims.3);
                let (d2, r) = (r % dims.2, r / dims.2);
                [r / dims.1, r % dims.1, d2, d3]
            };
            for i in 0..xs.len() {
                let (x, y, m) = (xs[i], ys[i], ms[i]);
                let charge = match (slack, sm) {
                    (Some(sl), Some(sm)) => sl.coef * sm[i] + sl.eta,
                    _ => 0.0,
                };
                element(&mut s, &mut worst_r, x, y, m, charge, unit, eta, || {
                    unravel(i)
                });
            }
            s.ratio = worst_r.max(0.0);
            return s;
        }
    }
    for ((idx, &x), (&y, &m)) in exact.indexed_iter().zip(cand.iter().zip(mag.iter())) {
        let idx = [idx.0, idx.1, idx.2, idx.3];
        let charge = slack.map_or(0.0, |sl| sl.coef * sl.m[idx] + sl.eta);
        element(&mut s, &mut worst_r, x, y, m, charge, unit, eta, || idx);
    }
    s.ratio = worst_r.max(0.0);
    s
}

/// One element of [`stats`]: exact `x`, candidate `y`, magnitude `m`, the truth's charge there;
/// `idx` gives its index where it is recorded.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn element(
    s: &mut Stats,
    worst_r: &mut f64,
    x: f64,
    y: f64,
    m: f64,
    charge: f64,
    unit: f64,
    eta: f64,
    idx: impl Fn() -> [usize; 4],
) {
    {
        if !x.is_finite() {
            s.exact_nonfinite += 1;
            return;
        }
        s.max_exact = s.max_exact.max(x.abs());
        if !y.is_finite() {
            s.cand_nonfinite += 1;
            if s.first_nonfinite.is_none() {
                s.first_nonfinite = Some(idx());
            }
            return;
        }
        let raw = (y - x).abs();
        s.max_err = s.max_err.max(raw);
        let err = raw + charge;
        let den = unit * m + eta;
        let r = if err == 0.0 {
            0.0
        } else if den > 0.0 {
            err / den
        } else {
            f64::INFINITY
        };
        if m == 0.0 && err > eta {
            s.zero_mag += 1;
        }
        if r > *worst_r {
            *worst_r = r;
            s.worst = Some(idx());
            s.charge = if charge == 0.0 { 0.0 } else { charge / den };
        }
    }
}

fn shape_err(what: &str, name: &str, got: &[usize], want: &[usize]) -> GlaError {
    GlaError::Shape {
        tensor: format!("{what} {name}"),
        got: got.to_vec(),
        expected: format!("{want:?} (the exact solution's shape)"),
    }
}

/// Judge `cand` against `exact` (the oracle's solution of the same, already-rounded problem `p`)
/// with the magnitudes `mags = magnitudes(p)` and the error model `spec` (docs/math.md §8.1).
///
/// Every output tensor present in the candidate is judged (o and hT always; the gradients when
/// the candidate has them). Errors (typed, never a panic): the candidate has gradients but the
/// exact solution or the magnitudes do not; a shape differs between candidate, exact and
/// magnitude; docs/math.md is invalid (chunk size 0).
///
/// ```
/// use gla_reference::bounds::{compare, magnitudes, Algorithm, BoundSpec};
/// use gla_reference::{recurrent, Dtype, Gates, Problem};
/// use ndarray::Array4;
/// let p = Problem::builder(Array4::from_elem((1, 4, 1, 2), 0.5), Array4::from_elem((1, 4, 1, 2), -0.5),
///     Array4::from_elem((1, 4, 1, 3), 1.0), Gates::PerChannel(Array4::from_elem((1, 4, 1, 2), -1.0)))
///     .build()?;
/// let exact = recurrent::forward::<f64>(&p)?;
/// let mut bad = recurrent::forward::<f32>(&p)?;
/// bad.o[[0, 2, 0, 1]] = f64::NAN;
/// let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F32);
/// let r = compare(&p, &exact, &magnitudes(&p), &bad, &spec)?;
/// assert!(!r.pass());
/// assert_eq!(r.tensor("o").unwrap().first_nonfinite, Some([0, 2, 0, 1]));
/// assert!(r.tensor("ht").unwrap().pass);
/// // A shape mismatch is a typed error.
/// bad.o = Array4::zeros((1, 4, 1, 2));
/// assert!(compare(&p, &exact, &magnitudes(&p), &bad, &spec).is_err());
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn compare(
    p: &Problem,
    exact: &Solution,
    mags: &Magnitudes,
    cand: &Solution,
    spec: &BoundSpec,
) -> Result<Report> {
    compare_impl(p, exact, mags, &|n| cand.tensor(n), spec, None)
}

/// [`compare`] against an approximate truth `truth` whose own error is bounded by `truth_spec`
/// (the error model of the algorithm that computed it, e.g. the f64 recurrence: docs/math.md
/// §8.4, "Certified f64 truth"). Every element is charged its error against `truth` plus the
/// truth's budget there, `(sum u_s + c u_acc (n_acc + lambda)) M + eta` of `truth_spec` with the
/// magnitude of the truth's own algorithm (`M_dg_local` for a local-form dg). Sound: wherever
/// the truth is within its bound, `|x - x*| <= |x - t| + budget`, so each reported ratio is at
/// least the ratio against the exact solution and a pass here is a pass against the exact
/// solution. `TensorReport::truth_charge` is the budget's share of the worst element's ratio.
///
/// ```
/// use gla_reference::bounds::{compare, compare_approximate, magnitudes, Algorithm, BoundSpec, DgForm};
/// use gla_reference::{recurrent, Dtype, Gates, Problem};
/// use ndarray::Array4;
/// let p = Problem::builder(Array4::from_elem((1, 9, 1, 2), 0.5), Array4::from_elem((1, 9, 1, 2), -0.25),
///     Array4::from_elem((1, 9, 1, 3), 1.0), Gates::PerChannel(Array4::from_elem((1, 9, 1, 2), -0.1)))
///     .build()?;
/// let m = magnitudes(&p);
/// let t = recurrent::forward::<f64>(&p)?;                 // the certified truth
/// let x = recurrent::forward::<f32>(&p)?;                 // a candidate
/// let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F32);
/// let mut tspec = BoundSpec::new(Algorithm::Recurrent, Dtype::F64);
/// tspec.dg_form = DgForm::Local;
/// let r = compare_approximate(&p, &t, &m, &x, &spec, &tspec)?;
/// let exact = compare(&p, &t, &m, &x, &spec)?;            // the same truth, taken as exact
/// assert!(r.pass());
/// for (a, b) in r.tensors.iter().zip(&exact.tensors) {
///     assert!(a.ratio >= b.ratio && a.truth_charge > 0.0 && b.truth_charge == 0.0);
/// }
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn compare_approximate(
    p: &Problem,
    truth: &Solution,
    mags: &Magnitudes,
    cand: &Solution,
    spec: &BoundSpec,
    truth_spec: &BoundSpec,
) -> Result<Report> {
    truth_spec.validate()?;
    compare_impl(p, truth, mags, &|n| cand.tensor(n), spec, Some(truth_spec))
}

/// [`compare`] (`truth_spec` `None`) or [`compare_approximate`] of a candidate given tensor by
/// tensor: `cand(name)` is the candidate's tensor `name` (one of [`OUTPUT_NAMES`]), `None` for
/// one it does not have (not judged). Judges the candidate where it lies, e.g. tensors read from
/// a file, without assembling a [`Solution`] (at training shapes a copy of gigabytes). The
/// report lists the tensors judged, in [`OUTPUT_NAMES`] order.
///
/// ```
/// use gla_reference::bounds::{compare, compare_with, magnitudes, Algorithm, BoundSpec};
/// use gla_reference::{recurrent, Dtype, Gates, Problem};
/// use ndarray::Array4;
/// let p = Problem::builder(Array4::from_elem((1, 4, 1, 2), 0.5), Array4::from_elem((1, 4, 1, 2), -0.5),
///     Array4::from_elem((1, 4, 1, 3), 1.0), Gates::PerChannel(Array4::from_elem((1, 4, 1, 2), -1.0)))
///     .build()?;
/// let (exact, m) = (recurrent::forward::<f64>(&p)?, magnitudes(&p));
/// let cand = recurrent::forward::<f32>(&p)?;
/// let spec = BoundSpec::new(Algorithm::Recurrent, Dtype::F32);
/// let only_o = compare_with(&p, &exact, &m, |n| (n == "o").then_some(&cand.o), &spec, None)?;
/// assert_eq!(only_o.tensors.len(), 1);
/// assert_eq!(only_o.tensors[0], compare(&p, &exact, &m, &cand, &spec)?.tensors[0]);
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn compare_with<'c>(
    p: &Problem,
    exact: &Solution,
    mags: &Magnitudes,
    cand: impl Fn(&str) -> Option<&'c Array4<f64>> + Sync,
    spec: &BoundSpec,
    truth_spec: Option<&BoundSpec>,
) -> Result<Report> {
    if let Some(ts) = truth_spec {
        ts.validate()?;
    }
    compare_impl(p, exact, mags, &cand, spec, truth_spec)
}

fn compare_impl<'c>(
    p: &Problem,
    exact: &Solution,
    mags: &Magnitudes,
    cand: &(dyn Fn(&str) -> Option<&'c Array4<f64>> + Sync),
    spec: &BoundSpec,
    truth_spec: Option<&BoundSpec>,
) -> Result<Report> {
    spec.validate()?;
    let n_acc = spec.n_acc(p);
    let lambda = spec.lambda(p);
    // Passes over every input, taken once for all tensors.
    let maxima = super::InputMaxima::of(p);
    let truth_terms = truth_spec.map(|ts| ts.n_acc(p) + ts.lambda(p));
    let (us, ua) = (spec.u_stages(), spec.u_acc());
    let unit = us + ua;
    // One tensor per task: each is a pass over up to gigabytes at training shapes.
    let one = |name: &'static str| -> Result<Option<TensorReport>> {
        let Some(c_t) = cand(name) else {
            return Ok(None);
        };
        let x_t = exact.tensor(name).ok_or_else(|| {
            GlaError::Options(format!(
                "the candidate has `{name}` but the exact solution does not (run the oracle's backward)"
            ))
        })?;
        if c_t.shape() != x_t.shape() {
            return Err(shape_err("candidate", name, c_t.shape(), x_t.shape()));
        }
        let mag_name = if name == "dg" && spec.dg_form == DgForm::Local {
            "dg_local"
        } else {
            name
        };
        let missing = || {
            GlaError::Options(format!(
                "no magnitude for `{name}`: compute the magnitudes of a problem that has `do`"
            ))
        };
        let m_t = mags.tensor(mag_name).ok_or_else(missing)?;
        if m_t.shape() != x_t.shape() {
            return Err(shape_err("magnitude", mag_name, m_t.shape(), x_t.shape()));
        }
        let c = spec.c_for(name).unwrap_or(super::C_UNCALIBRATED);
        let eta = spec.eta_given(p, mag_name, &maxima).unwrap_or(0.0);
        let slack = match truth_spec {
            None => None,
            Some(ts) => {
                let tm_name = if name == "dg" && ts.dg_form == DgForm::Local {
                    "dg_local"
                } else {
                    name
                };
                let tm = mags.tensor(tm_name).ok_or_else(missing)?;
                let tc = ts.c_for(name).unwrap_or(super::C_UNCALIBRATED);
                Some(Slack {
                    m: tm,
                    coef: ts.u_stages() + tc * ts.u_acc() * truth_terms.expect("a truth spec"),
                    eta: ts.eta_given(p, tm_name, &maxima).unwrap_or(0.0),
                })
            }
        };
        let st = stats(x_t, c_t, m_t, unit, eta, slack);
        let dg = if name == "dg" {
            let other_name = if mag_name == "dg" { "dg_local" } else { "dg" };
            let other = mags.tensor(other_name).ok_or_else(missing)?;
            if other.shape() != x_t.shape() {
                return Err(shape_err(
                    "magnitude",
                    other_name,
                    other.shape(),
                    x_t.shape(),
                ));
            }
            let eta_o = spec.eta_given(p, other_name, &maxima).unwrap_or(0.0);
            let r_other = stats(x_t, c_t, other, unit, eta_o, slack).ratio;
            Some(match spec.dg_form {
                DgForm::ReverseCumsum => DgRatios {
                    reverse_cumsum: st.ratio,
                    local: r_other,
                },
                DgForm::Local => DgRatios {
                    reverse_cumsum: r_other,
                    local: st.ratio,
                },
            })
        } else {
            None
        };
        let bound = (us + c * ua * (n_acc + lambda)) / unit;
        let (worst_candidate, worst_exact, worst_magnitude) = match st.worst {
            Some(i) => (c_t[i], x_t[i], m_t[i]),
            None => (0.0, 0.0, 0.0),
        };
        let rel_err = if st.max_err == 0.0 {
            0.0
        } else if st.max_exact > 0.0 {
            st.max_err / st.max_exact
        } else {
            f64::INFINITY
        };
        let pass = st.ratio <= bound && st.cand_nonfinite == 0;
        Ok(Some(TensorReport {
            name: name.to_string(),
            ratio: st.ratio,
            bound,
            worst_index: st.worst,
            worst_candidate,
            worst_exact,
            worst_magnitude,
            max_abs_err: st.max_err,
            max_abs_exact: st.max_exact,
            rel_err,
            candidate_nonfinite: st.cand_nonfinite,
            exact_nonfinite: st.exact_nonfinite,
            first_nonfinite: st.first_nonfinite,
            zero_magnitude_violations: st.zero_mag,
            dg,
            c,
            n_acc,
            lambda,
            u_stages: us,
            u_acc: ua,
            eta,
            truth_charge: st.charge,
            pass,
        }))
    };
    let tensors = OUTPUT_NAMES
        .par_iter()
        .map(|&n| one(n))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    Ok(Report { tensors })
}
