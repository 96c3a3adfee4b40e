//! The exact answer a candidate is judged against.
//!
//! Two sources: the MPFR oracle (`gla_oracle::evaluate`: the recurrence and its exact gradients,
//! precision raised until two precisions agree well past f64, rounded once to f64), or a stored
//! oracle result (a golden fixture, which also holds the magnitudes), so repeated checks do not
//! recompute it. [`Truth`] carries the solution, the magnitudes it is judged with and a
//! description of its source for reports.

use crate::JudgeError;
use gla_fixtures::io::TensorFile;
use gla_reference::bounds::{magnitudes, Magnitudes};
use gla_reference::{GlaError, Problem, Result, Solution};

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
