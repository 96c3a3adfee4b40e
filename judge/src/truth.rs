//! The exact answer a candidate is judged against.
//!
//! Two sources: the MPFR oracle (`gla_oracle::evaluate`: the recurrence and its exact gradients,
//! precision raised until two precisions agree well past f64, rounded once to f64), or a stored
//! oracle result (a golden fixture, which also holds the magnitudes), so repeated checks do not
//! recompute it. [`Truth`] carries the solution, the magnitudes it is judged with and a
//! description of its source for reports.

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
}
