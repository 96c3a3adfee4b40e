//! Judging candidates against the exact truth: per candidate and problem, a [`Verdict`].
//!
//! [`check_against_oracle`] prepares the problem for each candidate (input rounding, see
//! [`Implementation::prepare`]), evaluates the MPFR oracle once per distinct prepared problem,
//! runs every candidate forward and forward + backward, and judges each output elementwise with
//! the error model of docs/math.md §8.1 (`gla_reference::bounds::compare`): forward outputs with the
//! forward rounding stages ([`bound_spec_forward`]), everything from the backward run with all
//! stages ([`bound_spec`]). Backward-run outputs o and ht are reported as `o.bwd` / `ht.bwd`.
//!
//! Every judged comparison is recorded in the process-wide [`Summary`](crate::Summary) (per
//! implementation and output: cases, largest ratio, the bound at the case closest to its bound,
//! failures).

use crate::implementation::{bound_spec, bound_spec_forward, solve, Implementation};
use crate::summary::{record, record_error};
use crate::truth::oracle;
use gla_reference::bounds::{
    compare, magnitudes, BoundSpec, DgForm, Magnitudes, Report, TensorReport,
};
use gla_reference::{GlaError, Problem, Result, Solution, OUTPUT_NAMES};
use std::fmt::Write as _;

/// The outcome of judging one candidate on one problem.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// Judged: forward o/ht, then (when the problem has `do`) every output of the backward run.
    Judged(Report),
    /// The candidate does not apply (an input overflows its input format, e.g. f16).
    NotApplicable(String),
    /// The candidate returned an error on a valid problem: a failure.
    Error(GlaError),
}

impl Verdict {
    /// True unless the candidate failed (not-applicable counts as passing).
    pub fn pass(&self) -> bool {
        match self {
            Verdict::Judged(r) => r.pass(),
            Verdict::NotApplicable(_) => true,
            Verdict::Error(_) => false,
        }
    }
    /// The report, when judged.
    pub fn report(&self) -> Option<&Report> {
        match self {
            Verdict::Judged(r) => Some(r),
            _ => None,
        }
    }
}

/// Judge a candidate's forward solution and (optionally) its backward solution against `exact`.
///
/// `p` must be the prepared problem (the one both the candidate and the oracle consumed).
pub fn judge(
    imp: &Implementation,
    p: &Problem,
    mags: &Magnitudes,
    exact: &Solution,
    fwd: &Solution,
    bwd: Option<&Solution>,
) -> Result<Report> {
    let fwd_only = Solution {
        o: fwd.o.clone(),
        ht: fwd.ht.clone(),
        grads: None,
    };
    let sf = bound_spec_forward(imp, p);
    let mut r = compare(p, exact, mags, &fwd_only, &sf)?;
    if let Some(b) = bwd.filter(|b| b.grads.is_some()) {
        let sb = bound_spec(imp, p);
        let rb = compare(p, exact, mags, b, &sb)?;
        for mut t in rb.tensors {
            if t.name == "o" || t.name == "ht" {
                t.name = format!("{}.bwd", t.name);
            }
            r.tensors.push(t);
        }
    }
    Ok(r)
}

/// The "2x the emulation" rule of docs/math.md §8.1 for a GPU candidate with a rounding plan: per output
/// tensor, `max |gpu - x*| <= 2 max |twin - x*| + floor`, where the twin is the CPU chunked form
/// with the same rounding plan on the same inputs and `floor = c u_f32 (n_acc + lambda) max M_x`
/// (the f32 accumulation part of the bound, normwise). Reported as tensors named `o~2x`, `ht~2x`
/// with `ratio = max|gpu - x*| / (2 max|twin - x*| + floor)` and bound 1.
pub fn twice_the_emulation(
    imp: &Implementation,
    p: &Problem,
    mags: &Magnitudes,
    exact: &Solution,
    cand: &Solution,
    twin: &Solution,
) -> Vec<TensorReport> {
    let spec = bound_spec_forward(imp, p);
    let mut out = Vec::new();
    for name in ["o", "ht"] {
        let (Some(x), Some(c), Some(t), Some(m)) = (
            exact.tensor(name),
            cand.tensor(name),
            twin.tensor(name),
            mags.tensor(name),
        ) else {
            continue;
        };
        let maxerr = |a: &ndarray::Array4<f64>| {
            a.iter()
                .zip(x.iter())
                .filter(|(_, e)| e.is_finite())
                .fold(0.0f64, |m, (a, e)| {
                    if a.is_finite() {
                        m.max((a - e).abs())
                    } else {
                        f64::INFINITY
                    }
                })
        };
        let (eg, et) = (maxerr(c), maxerr(t));
        let mmax = m.iter().fold(0.0f64, |a, b| a.max(*b));
        let cc = spec
            .c_for(name)
            .unwrap_or(gla_reference::bounds::C_UNCALIBRATED);
        let floor = cc * spec.u_acc() * (spec.n_acc(p) + spec.lambda(p)) * mmax;
        let den = 2.0 * et + floor;
        let ratio = if eg == 0.0 {
            0.0
        } else if den > 0.0 {
            eg / den
        } else {
            f64::INFINITY
        };
        out.push(TensorReport {
            name: format!("{name}~2x"),
            ratio,
            bound: 1.0,
            worst_index: None,
            worst_candidate: eg,
            worst_exact: et,
            worst_magnitude: mmax,
            max_abs_err: eg,
            max_abs_exact: 0.0,
            rel_err: 0.0,
            candidate_nonfinite: usize::from(!eg.is_finite()),
            exact_nonfinite: 0,
            first_nonfinite: None,
            zero_magnitude_violations: 0,
            dg: None,
            c: cc,
            n_acc: spec.n_acc(p),
            lambda: spec.lambda(p),
            u_stages: spec.u_stages(),
            u_acc: spec.u_acc(),
            eta: floor,
            truth_charge: 0.0,
            pass: ratio <= 1.0 && eg.is_finite(),
        });
    }
    out
}

/// Run every candidate on `p` (forward, and forward + backward when `p` has `do`) and judge it
/// against the oracle of the same prepared inputs. Results are recorded in the global summary
/// under `property`.
pub fn check_against_oracle_as(
    property: &str,
    p: &Problem,
    impls: &[Implementation],
) -> Result<Vec<(Implementation, Verdict)>> {
    let backward = p.has_backward() && impls.iter().any(|i| i.supports_backward());
    // One oracle per distinct prepared problem.
    let mut cache: Vec<(Problem, Solution, Magnitudes)> = Vec::new();
    let mut out = Vec::new();
    for imp in impls {
        let prepared = match imp.prepare(p) {
            Ok(pp) => pp.into_owned(),
            Err(e) => {
                out.push((*imp, Verdict::NotApplicable(e.to_string())));
                continue;
            }
        };
        let idx = match cache.iter().position(|(q, _, _)| *q == prepared) {
            Some(i) => i,
            None => {
                let exact = oracle(&prepared, backward)?;
                let mags = magnitudes(&prepared);
                cache.push((prepared, exact, mags));
                cache.len() - 1
            }
        };
        let (pp, exact, mags) = &cache[idx];
        let verdict = (|| -> Result<Report> {
            let f = solve(imp, pp, false)?;
            let b = if backward && imp.supports_backward() {
                Some(solve(imp, pp, true)?)
            } else {
                None
            };
            let mut r = judge(imp, pp, mags, exact, &f, b.as_ref())?;
            if let (Some(twin), true) = (
                imp.cpu_twin(),
                matches!(
                    imp,
                    Implementation::Gpu {
                        dtype: gla_reference::Dtype::Bf16 | gla_reference::Dtype::F16,
                        ..
                    }
                ),
            ) {
                let tw = solve(&twin, pp, false)?;
                r.tensors
                    .extend(twice_the_emulation(imp, pp, mags, exact, &f, &tw));
            }
            Ok(r)
        })();
        let verdict = match verdict {
            Ok(r) => {
                record(property, imp, &r);
                Verdict::Judged(r)
            }
            Err(e) => {
                record_error(property, imp);
                Verdict::Error(e)
            }
        };
        out.push((*imp, verdict));
    }
    Ok(out)
}

/// [`check_against_oracle_as`] recorded under the property name `oracle`.
///
/// ```no_run
/// use gla_judge::{check_against_oracle, Implementation};
/// # let p: gla_reference::Problem = unimplemented!();
/// for (imp, verdict) in check_against_oracle(&p, &Implementation::all_cpu())? {
///     assert!(verdict.pass(), "{imp}: {verdict:?}");
/// }
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn check_against_oracle(
    p: &Problem,
    impls: &[Implementation],
) -> Result<Vec<(Implementation, Verdict)>> {
    check_against_oracle_as("oracle", p, impls)
}

/// A readable failure message for a set of verdicts (empty when all pass).
pub fn failures(verdicts: &[(Implementation, Verdict)]) -> String {
    let mut s = String::new();
    for (imp, v) in verdicts {
        match v {
            Verdict::Judged(r) if !r.pass() => {
                let _ = writeln!(s, "{imp} FAILS:\n{}", failing_rows(r));
            }
            Verdict::Error(e) => {
                let _ = writeln!(s, "{imp} returned an error on a valid problem: {e}");
            }
            _ => {}
        }
    }
    s
}

/// The failing rows of a report, one line each (tensor, ratio, bound, worst element, values,
/// non-finite count).
pub fn failing_rows(r: &Report) -> String {
    let mut s = String::new();
    for t in r.tensors.iter().filter(|t| !t.pass) {
        let _ = writeln!(
            s,
            "  {:<7} ratio {:.3e} {} bound {:.3e} (c={} n_acc={} lambda={:.3}) worst {:?}: cand {:e} exact {:e} M {:e}; non-finite where exact is finite: {} (first {:?})",
            t.name, t.ratio, if t.ratio > t.bound { ">" } else { "<=" }, t.bound, t.c, t.n_acc, t.lambda, t.worst_index, t.worst_candidate,
            t.worst_exact, t.worst_magnitude, t.candidate_nonfinite, t.first_nonfinite
        );
    }
    s
}

/// Compare two candidates with each other, without an oracle: by the triangle inequality
/// `|a - b| <= bound_a + bound_b` elementwise, where each bound is docs/math.md §8.1's
/// `(sum u_s + c u_acc (n_acc + lambda)) M_x + eta` with that candidate's own spec (and its own
/// dg magnitude). Every element of both must be finite (the exact answer of a valid problem is
/// finite). The report's `ratio` is `max |a - b| / (bound_a + bound_b)` and `bound` is 1.
///
/// `pa` / `pb` are the problems whose n_acc and lambda each candidate's bound uses (normally the
/// same problem); `mags` are the magnitudes of the problem both solutions answer.
pub fn compare_pair(
    pa: &Problem,
    pb: &Problem,
    mags: &Magnitudes,
    a: &Solution,
    spec_a: &BoundSpec,
    b: &Solution,
    spec_b: &BoundSpec,
) -> Result<Report> {
    let mut tensors = Vec::new();
    for name in OUTPUT_NAMES {
        let (Some(ta), Some(tb)) = (a.tensor(name), b.tensor(name)) else {
            continue;
        };
        if ta.shape() != tb.shape() {
            return Err(GlaError::Shape {
                tensor: name.into(),
                got: tb.shape().to_vec(),
                expected: format!("{:?} (the other candidate's)", ta.shape()),
            });
        }
        let tol = |spec: &BoundSpec, p: &Problem| -> Result<(f64, f64, &ndarray::Array4<f64>)> {
            let mname = if name == "dg" && spec.dg_form == DgForm::Local {
                "dg_local"
            } else {
                name
            };
            let m = mags.tensor(mname).ok_or_else(|| {
                GlaError::Options(format!(
                    "no magnitude for `{mname}` (problem without `do`?)"
                ))
            })?;
            let c = spec
                .c_for(name)
                .unwrap_or(gla_reference::bounds::C_UNCALIBRATED);
            let coef = spec.u_stages() + c * spec.u_acc() * (spec.n_acc(p) + spec.lambda(p));
            Ok((coef, spec.eta(p, mname).unwrap_or(0.0), m))
        };
        let (ca, ea, ma) = tol(spec_a, pa)?;
        let (cb, eb, mb) = tol(spec_b, pb)?;
        let mut st = PairStats::default();
        for (idx, &x) in ta.indexed_iter() {
            let y = tb[idx];
            let i = [idx.0, idx.1, idx.2, idx.3];
            if !x.is_finite() || !y.is_finite() {
                st.nonfinite += 1;
                st.first_nonfinite.get_or_insert(i);
                continue;
            }
            let err = (x - y).abs();
            let t = ca * ma[idx] + ea + cb * mb[idx] + eb;
            let r = if err == 0.0 {
                0.0
            } else if t > 0.0 {
                err / t
            } else {
                f64::INFINITY
            };
            if r > st.ratio || st.worst.is_none() {
                st.ratio = st.ratio.max(r);
                st.worst = Some((i, x, y, ma[idx]));
            }
            st.max_err = st.max_err.max(err);
            st.max_abs = st.max_abs.max(x.abs());
        }
        let (wi, wc, we, wm) = match st.worst {
            Some((i, x, y, m)) => (Some(i), y, x, m),
            None => (None, 0.0, 0.0, 0.0),
        };
        tensors.push(TensorReport {
            name: name.to_string(),
            ratio: st.ratio,
            bound: 1.0,
            worst_index: wi,
            worst_candidate: wc,
            worst_exact: we,
            worst_magnitude: wm,
            max_abs_err: st.max_err,
            max_abs_exact: st.max_abs,
            rel_err: if st.max_abs > 0.0 {
                st.max_err / st.max_abs
            } else {
                st.max_err
            },
            candidate_nonfinite: st.nonfinite,
            exact_nonfinite: 0,
            first_nonfinite: st.first_nonfinite,
            zero_magnitude_violations: 0,
            dg: None,
            c: f64::NAN,
            n_acc: spec_b.n_acc(pb),
            lambda: spec_b.lambda(pb),
            u_stages: spec_b.u_stages(),
            u_acc: spec_b.u_acc(),
            eta: ea + eb,
            truth_charge: 0.0,
            pass: st.ratio <= 1.0 && st.nonfinite == 0,
        });
    }
    Ok(Report { tensors })
}

#[derive(Default)]
struct PairStats {
    ratio: f64,
    worst: Option<([usize; 4], f64, f64, f64)>,
    max_err: f64,
    max_abs: f64,
    nonfinite: usize,
    first_nonfinite: Option<[usize; 4]>,
}

/// Bit-identity of two solutions (every output both have), up to the sign of zero; NaN equals
/// NaN. Returns a description of the first difference.
pub fn identical(a: &Solution, b: &Solution) -> std::result::Result<(), String> {
    for name in OUTPUT_NAMES {
        let (Some(ta), Some(tb)) = (a.tensor(name), b.tensor(name)) else {
            continue;
        };
        if ta.shape() != tb.shape() {
            return Err(format!(
                "{name}: shapes {:?} vs {:?}",
                ta.shape(),
                tb.shape()
            ));
        }
        for (idx, &x) in ta.indexed_iter() {
            let y = tb[idx];
            let same =
                x.to_bits() == y.to_bits() || (x == 0.0 && y == 0.0) || (x.is_nan() && y.is_nan());
            if !same {
                return Err(format!(
                    "{name}{:?}: {x:e} vs {y:e}",
                    [idx.0, idx.1, idx.2, idx.3]
                ));
            }
        }
    }
    Ok(())
}
