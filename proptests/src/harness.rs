//! The oracle cross-check harness and the LAPACK-style summary table.
//!
//! [`check_against_oracle`] prepares the problem for each candidate (input rounding, see
//! [`Implementation::prepare`]), evaluates the MPFR oracle once per distinct prepared problem,
//! runs every candidate forward and forward + backward, and judges each output elementwise with
//! the error model of spec 8.1 (`gla_reference::bounds::compare`): forward outputs with the
//! forward rounding stages ([`bound_spec_forward`]), everything from the backward run with all
//! stages ([`bound_spec`]). Backward-run outputs o and ht are reported as `o.bwd` / `ht.bwd`.
//!
//! Every judged comparison is recorded in a process-wide [`Summary`] (per implementation and
//! output: cases, largest ratio, the bound at the case closest to its bound, failures), printed
//! by [`Summary::table`].

use crate::implementation::{bound_spec, bound_spec_forward, solve, Implementation};
use gla_reference::bounds::{
    compare, magnitudes, BoundSpec, DgForm, Magnitudes, Report, TensorReport,
};
use gla_reference::{GlaError, Problem, Result, Solution, OUTPUT_NAMES};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// The exact solution of a problem: the MPFR oracle (`gla_oracle::evaluate`), converged to agree
/// well past f64 and rounded once to f64. `backward` adds every gradient (dg in the oracle's
/// local form, which is exact whatever algorithm a candidate runs).
pub fn oracle(p: &Problem, backward: bool) -> Result<Solution> {
    Ok(oracle_full(p, backward)?.solution)
}

/// The full oracle result (with the reverse-cumsum dg cross-check and the bits agreed).
pub fn oracle_full(p: &Problem, backward: bool) -> Result<gla_oracle::OracleResult> {
    gla_oracle::evaluate(
        p,
        &gla_oracle::OracleOptions {
            backward,
            ..Default::default()
        },
    )
}

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

/// The "2x the emulation" rule of spec 8.1 for a GPU candidate with a rounding plan: per output
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
/// use gla_proptests::{check_against_oracle, Implementation};
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
/// `|a - b| <= bound_a + bound_b` elementwise, where each bound is spec 8.1's
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

// ------------------------------------------------------------------------------------------------
// Summary
// ------------------------------------------------------------------------------------------------

/// One row of the summary: one implementation and output over every recorded case.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    /// Cases judged (proptest shrinking steps included).
    pub cases: u64,
    /// Largest ratio seen.
    pub max_ratio: f64,
    /// Bound of the case whose ratio / bound was largest.
    pub bound_at_worst: f64,
    /// Largest ratio / bound seen (< 1: every case within its bound).
    pub max_fraction: f64,
    /// Smallest and largest bound seen.
    pub bound_range: (f64, f64),
    /// Cases that failed (ratio above bound, non-finite, or an error).
    pub failures: u64,
    /// The property that produced `max_fraction`.
    pub worst_property: String,
}

impl Default for SummaryRow {
    fn default() -> Self {
        SummaryRow {
            cases: 0,
            max_ratio: 0.0,
            bound_at_worst: f64::NAN,
            max_fraction: 0.0,
            bound_range: (f64::INFINITY, 0.0),
            failures: 0,
            worst_property: String::new(),
        }
    }
}

/// Per (implementation, output) rows, in a stable order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Rows keyed by (implementation name, output name).
    pub rows: BTreeMap<(String, String), SummaryRow>,
    /// Pairwise (oracle-free) checks keyed by (property, output): `max_ratio` is the largest
    /// `|a - b| / (bound_a + bound_b)`, bound 1.
    pub pairs: BTreeMap<(String, String), SummaryRow>,
    /// Property runs: (name, cases run, passed, message).
    pub properties: Vec<(String, u64, bool, String)>,
}

static SUMMARY: Mutex<Option<Summary>> = Mutex::new(None);

fn with_summary<R>(f: impl FnOnce(&mut Summary) -> R) -> R {
    let mut g = SUMMARY.lock().unwrap_or_else(|e| e.into_inner());
    f(g.get_or_insert_with(Summary::default))
}

fn output_order(name: &str) -> usize {
    const ORDER: [&str; 11] = [
        "o", "ht", "o.bwd", "ht.bwd", "dq", "dk", "dv", "dg", "dh0", "o~2x", "ht~2x",
    ];
    ORDER.iter().position(|n| *n == name).unwrap_or(ORDER.len())
}

/// Record one judged report in the global summary.
pub fn record(property: &str, imp: &Implementation, r: &Report) {
    with_summary(|s| {
        for t in &r.tensors {
            let row = s.rows.entry((imp.name(), t.name.clone())).or_default();
            row.cases += 1;
            row.max_ratio = row.max_ratio.max(t.ratio);
            let frac = if t.candidate_nonfinite > 0 {
                f64::INFINITY
            } else {
                t.ratio / t.bound
            };
            if frac > row.max_fraction || row.bound_at_worst.is_nan() {
                row.max_fraction = row.max_fraction.max(frac);
                row.bound_at_worst = t.bound;
                row.worst_property = property.to_string();
            }
            row.bound_range = (
                row.bound_range.0.min(t.bound),
                row.bound_range.1.max(t.bound),
            );
            if !t.pass {
                row.failures += 1;
            }
        }
    })
}

/// Record one pairwise report (from [`compare_pair`]) under `property`.
pub fn record_pair(property: &str, label: &str, r: &Report) {
    with_summary(|s| {
        for t in &r.tensors {
            let row = s
                .pairs
                .entry((property.to_string(), t.name.clone()))
                .or_default();
            row.cases += 1;
            row.max_ratio = row.max_ratio.max(t.ratio);
            let frac = if t.candidate_nonfinite > 0 {
                f64::INFINITY
            } else {
                t.ratio
            };
            if frac > row.max_fraction || row.bound_at_worst.is_nan() {
                row.max_fraction = row.max_fraction.max(frac);
                row.bound_at_worst = 1.0;
                row.worst_property = label.to_string();
            }
            row.bound_range = (1.0, 1.0);
            if !t.pass {
                row.failures += 1;
            }
        }
    })
}

/// Record a candidate error (counted as a failure of every output).
pub fn record_error(property: &str, imp: &Implementation) {
    with_summary(|s| {
        let row = s.rows.entry((imp.name(), "(error)".into())).or_default();
        row.cases += 1;
        row.failures += 1;
        row.worst_property = property.to_string();
    })
}

/// Record the outcome of one property run.
pub fn record_property(name: &str, cases: u64, passed: bool, message: &str) {
    with_summary(|s| {
        s.properties
            .push((name.to_string(), cases, passed, message.to_string()))
    })
}

/// A copy of the global summary.
pub fn summary() -> Summary {
    with_summary(|s| s.clone())
}

/// Clear the global summary.
pub fn reset_summary() {
    with_summary(|s| *s = Summary::default())
}

impl Summary {
    /// LAPACK-style table: per implementation and output, cases judged, largest ratio, the bound of
    /// the case closest to its bound, the largest ratio / bound, the range of bounds, failures.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{:<26} {:<7} {:>6} {:>10} {:>10} {:>9} {:>21} {:>5}  worst in",
            "implementation",
            "output",
            "cases",
            "max ratio",
            "bound",
            "ratio/bd",
            "bound range",
            "fails"
        );
        let mut keys: Vec<&(String, String)> = self.rows.keys().collect();
        keys.sort_by_key(|(i, o)| (impl_order(i), i.clone(), output_order(o)));
        for k in keys {
            let r = &self.rows[k];
            let _ = writeln!(
                s,
                "{:<26} {:<7} {:>6} {:>10.3e} {:>10.3e} {:>9.3} {:>10.3e}..{:<9.3e} {:>5}  {}",
                k.0,
                k.1,
                r.cases,
                r.max_ratio,
                r.bound_at_worst,
                r.max_fraction,
                r.bound_range.0,
                r.bound_range.1,
                r.failures,
                r.worst_property
            );
        }
        if !self.pairs.is_empty() {
            let _ = writeln!(
                s,
                "\npairwise checks without the oracle: |a - b| / (bound_a + bound_b), elementwise max (bound 1)\n{:<26} {:<7} {:>6} {:>10} {:>5}  worst pair",
                "property", "output", "cases", "max", "fails"
            );
            let mut keys: Vec<&(String, String)> = self.pairs.keys().collect();
            keys.sort_by_key(|(p, o)| (p.clone(), output_order(o)));
            for k in keys {
                let r = &self.pairs[k];
                let _ = writeln!(
                    s,
                    "{:<26} {:<7} {:>6} {:>10.3e} {:>5}  {}",
                    k.0, k.1, r.cases, r.max_ratio, r.failures, r.worst_property
                );
            }
        }
        if !self.properties.is_empty() {
            let _ = writeln!(s, "\n{:<34} {:>6}  result", "property", "cases");
            for (n, c, ok, msg) in &self.properties {
                let _ = writeln!(
                    s,
                    "{:<34} {:>6}  {}{}",
                    n,
                    c,
                    if *ok { "PASS" } else { "FAIL" },
                    if msg.is_empty() {
                        String::new()
                    } else {
                        format!("  {}", msg.lines().next().unwrap_or(""))
                    }
                );
            }
        }
        s
    }

    /// True when no property failed and no recorded case failed.
    pub fn pass(&self) -> bool {
        self.properties.iter().all(|p| p.2)
            && self.rows.values().all(|r| r.failures == 0)
            && self.pairs.values().all(|r| r.failures == 0)
    }
}

fn impl_order(name: &str) -> usize {
    Implementation::all_cpu()
        .into_iter()
        .chain(crate::gpu::candidates())
        .position(|i| i.name() == name)
        .unwrap_or(usize::MAX)
}
