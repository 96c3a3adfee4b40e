//! The exact answer a candidate is judged against.
//!
//! Three sources: the MPFR oracle (`gla_oracle::evaluate`: the recurrence and its exact gradients,
//! precision raised until two precisions agree well past f64, rounded once to f64); a stored
//! oracle result (a golden fixture, which also holds the magnitudes), so repeated checks do not
//! recompute it; or the **certified f64 truth** for production shapes, where the oracle is too
//! slow ([`Truth::f64`]: the f64 recurrence, local-form dg, with its own derived bound as a
//! budget that every judged element is charged; docs/math.md §8.4). [`Truth`] carries the
//! solution, the magnitudes it is judged with, the budget (none for the oracle) and a description
//! of its source for reports. [`TruthMode`] and [`Truth::choose`] are the one rule the command
//! line and the Python package share for picking a truth.

use crate::JudgeError;
use gla_fixtures::io::TensorFile;
use gla_reference::bounds::{
    magnitudes, solve_with_magnitudes, Algorithm, BoundSpec, DgForm, Magnitudes,
};
use gla_reference::{Dtype, GlaError, Problem, Result, Solution};

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

/// The truth for one problem: exact results, the magnitudes that judge them, and where they came
/// from.
#[derive(Debug, Clone)]
pub struct Truth {
    /// The exact results rounded once to f64 (gradients when computed with `backward`).
    pub solution: Solution,
    /// The magnitude tensors `M_x` (docs/math.md §8).
    pub magnitudes: Magnitudes,
    /// Where the truth came from, in words (e.g. `MPFR oracle (192 bits, 160 agreed)`).
    pub source: String,
    /// The truth's own error model when it is approximate ([`Truth::f64`]): each judged element
    /// is charged this bound on top of its error (`gla_reference::bounds::compare_approximate`).
    /// `None` for the oracle and stored oracle results.
    pub budget: Option<BoundSpec>,
}

/// Which truth judges a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TruthMode {
    /// The truth stored in the input file when it holds one; else the oracle for problems of at
    /// most [`ORACLE_AUTO_LIMIT`] state updates, the certified f64 truth above.
    Auto,
    /// The MPFR oracle, always.
    Oracle,
    /// The certified f64 truth ([`Truth::f64`]).
    F64,
    /// The truth stored in the input file; an error when it holds none.
    Stored,
}

/// The largest problem, in state updates `B T H K V` (`N T_seq H K V` for varlen), for which
/// [`TruthMode::Auto`] runs the oracle: 2^24, e.g. B=1, T=1024, H=4, K=V=64, about 9 s of MPFR
/// forward + backward on 2 cores (BENCHMARKS.md). Larger problems get the certified f64 truth.
pub const ORACLE_AUTO_LIMIT: u64 = 1 << 24;

/// `B T H K V` of a problem (the packed length for varlen): the number of state-element updates.
pub fn state_updates(p: &Problem) -> u64 {
    let d = p.dims();
    (d.b * d.t * d.h * d.k * d.v) as u64
}

impl TruthMode {
    /// The mode's name on the command line and in Python (`auto`, `oracle`, `f64`, `stored`).
    pub fn parse(s: &str) -> Option<TruthMode> {
        Some(match s {
            "auto" => TruthMode::Auto,
            "oracle" => TruthMode::Oracle,
            "f64" => TruthMode::F64,
            "stored" => TruthMode::Stored,
            _ => return None,
        })
    }
}

impl Truth {
    /// Run the MPFR oracle on `p` (forward, and every gradient when `backward`) and compute the
    /// f64 magnitudes.
    pub fn oracle(p: &Problem, backward: bool) -> Result<Truth> {
        let r = oracle_full(p, backward)?;
        Ok(Truth {
            source: format!(
                "MPFR oracle ({} bits, {} agreed)",
                r.precision, r.bits_agreed
            ),
            solution: r.solution,
            magnitudes: magnitudes(p),
            budget: None,
        })
    }

    /// The certified f64 truth: the f64 recurrence (forward, and with `backward` every gradient,
    /// dg by the local form) and the f64 magnitudes, with the recurrence's own error model as the
    /// budget ([`Truth::budget_spec`]: `3 u_f64 (K + V + T_seq) M + eta`, the recurrent family's
    /// constants, calibrated against the oracle in f32 and f64; docs/math.md §8.1). Judged with
    /// it, a candidate passes only if its error plus that budget is within its own bound, so a
    /// pass implies a pass against the oracle (property `f64_truth_is_sound` in
    /// gla-proptests). Costs one f64 recurrence and the magnitudes: seconds where the oracle
    /// takes hours.
    ///
    /// ```
    /// use gla_judge::Truth;
    /// let p = gla_fixtures::catalog::case("mild").unwrap().problem().unwrap();
    /// let t = Truth::f64(&p, true)?;
    /// assert!(t.budget.is_some() && t.source.starts_with("certified f64"));
    /// let o = Truth::oracle(&p, true)?;
    /// let d = (&t.solution.o - &o.solution.o).mapv(f64::abs).fold(0.0, |a: f64, &b| a.max(b));
    /// assert!(d < 1e-12);
    /// # Ok::<(), gla_reference::GlaError>(())
    /// ```
    pub fn f64(p: &Problem, backward: bool) -> Result<Truth> {
        // One pass over (sequence, head) for both: bitwise `recurrent::backward_with::<f64>(p,
        // DgForm::Local)` (`recurrent::forward::<f64>(p)` without `backward`) and `magnitudes(p)`.
        let (solution, magnitudes) = solve_with_magnitudes(p, backward, DgForm::Local)?;
        Ok(Truth {
            source: "certified f64 truth (f64 recurrence, local-form dg; each element charged its \
                     own bound c u_f64 (n_acc + lambda) M)"
                .into(),
            solution,
            magnitudes,
            budget: Some(Truth::budget_spec()),
        })
    }

    /// The error model of the f64 truth: the recurrent family in f64, no rounding stages,
    /// local-form dg.
    pub fn budget_spec() -> BoundSpec {
        let mut s = BoundSpec::new(Algorithm::Recurrent, Dtype::F64);
        s.dg_form = DgForm::Local;
        s
    }

    /// The truth for `mode`: `input` is the file the problem `p` was read from (for a stored
    /// truth), `label` names it in messages.
    pub fn choose(
        mode: TruthMode,
        input: &TensorFile,
        p: &Problem,
        backward: bool,
        label: &str,
    ) -> std::result::Result<Truth, JudgeError> {
        Ok(match mode {
            TruthMode::Oracle => Truth::oracle(p, backward)?,
            TruthMode::F64 => Truth::f64(p, backward)?,
            TruthMode::Stored => Truth::stored(input, p, backward)?.ok_or_else(|| {
                JudgeError::Input(format!(
                    "INPUT {label}: holds no stored truth{} (o, ht{} and their magnitudes m_*)",
                    if backward { " with gradients" } else { "" },
                    if backward {
                        ", dq, dk, dv, dg, dh0, m_dg_local"
                    } else {
                        ""
                    }
                ))
            })?,
            TruthMode::Auto => match Truth::stored(input, p, backward)? {
                Some(t) => t,
                None if state_updates(p) <= ORACLE_AUTO_LIMIT => Truth::oracle(p, backward)?,
                None => Truth::f64(p, backward)?,
            },
        })
    }

    /// The oracle's results and magnitudes stored in a golden file `f` whose inputs are `p`
    /// (`None` when `f` holds no stored truth, or only a forward truth and `backward` asks for
    /// gradients).
    pub fn stored(f: &TensorFile, p: &Problem, backward: bool) -> Result<Option<Truth>> {
        let t = gla_fixtures::golden::stored_truth(f, p, backward)
            .map_err(|e| GlaError::Options(format!("stored truth: {e}")))?;
        let Some((solution, magnitudes)) = t.filter(|(s, _)| !backward || s.grads.is_some()) else {
            return Ok(None);
        };
        let meta = f
            .metadata
            .iter()
            .filter(|(k, _)| k.contains("oracle") || k.contains("bits"))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ");
        Ok(Some(Truth {
            solution,
            magnitudes,
            source: format!("golden fixture ({meta})"),
            budget: None,
        }))
    }

    /// The truth stored in a golden file `f` for inputs `p` given separately (e.g. a kernel's
    /// inputs, with the golden's truth reused instead of recomputed): `f`'s own inputs must be
    /// `p`'s (q, k, v, g, h0, cu_seqlens and scale; with `backward` also do and dht), value for
    /// value, and `f` must hold the truth (o, ht and their magnitudes; with `backward` every
    /// gradient and its magnitude). `label` names `f` in messages.
    ///
    /// ```
    /// use gla_judge::Truth;
    /// # let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden");
    /// let golden = gla_fixtures::io::read_tensors(dir.join("mild.safetensors"))?;
    /// let p = golden.problem()?;
    /// let t = Truth::stored_for(&golden, &p, true, "mild")?;
    /// assert!(t.solution.grads.is_some());
    /// let other = gla_fixtures::io::read_tensors(dir.join("weak.safetensors"))?.problem()?;
    /// let e = Truth::stored_for(&golden, &other, false, "mild").unwrap_err();
    /// assert!(e.to_string().contains("other inputs"), "{e}");
    /// # Ok::<(), gla_judge::JudgeError>(())
    /// ```
    pub fn stored_for(
        f: &TensorFile,
        p: &Problem,
        backward: bool,
        label: &str,
    ) -> std::result::Result<Truth, JudgeError> {
        let own = f
            .problem()
            .map_err(|e| JudgeError::Input(format!("TRUTH {label}: {e}")))?;
        if let Some(name) = first_difference(&own, p, backward) {
            return Err(JudgeError::Input(format!(
                "TRUTH {label}: the stored truth answers other inputs (`{name}` differs from the \
                 inputs being judged)"
            )));
        }
        Truth::stored(f, p, backward)?.ok_or_else(|| {
            JudgeError::Input(format!(
                "TRUTH {label}: holds no stored truth{} (a golden file holds o, ht{} and their \
                 magnitudes m_*)",
                if backward { " with gradients" } else { "" },
                if backward {
                    ", dq, dk, dv, dg, dh0, m_dg_local"
                } else {
                    ""
                }
            ))
        })
    }
}

/// The first input (in file order) in which two problems differ: q, k, v, g (values or gate
/// kind), h0, cu_seqlens, scale and, with `backward`, do and dht.
fn first_difference(a: &Problem, b: &Problem, backward: bool) -> Option<&'static str> {
    let checks: [(&'static str, bool); 9] = [
        ("q", a.q() == b.q()),
        ("k", a.k() == b.k()),
        ("v", a.v() == b.v()),
        ("g", a.g() == b.g() && a.gate_kind() == b.gate_kind()),
        ("h0", a.h0() == b.h0()),
        ("cu_seqlens", a.cu_seqlens() == b.cu_seqlens()),
        ("scale", a.scale() == b.scale()),
        ("do", !backward || a.do_() == b.do_()),
        ("dht", !backward || a.dht() == b.dht()),
    ];
    checks.iter().find(|(_, same)| !same).map(|(n, _)| *n)
}
