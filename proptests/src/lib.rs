//! # gla-proptests
//!
//! glacheck's correctness gate: proptest strategies for whole GLA problems ([`strategies`]) and
//! the properties themselves ([`properties`]), which the crate's test binary runs through
//! [`suite::trials`] (one libtest trial per property). The candidates, the oracle cross-check and the summary table are
//! `gla-judge`'s.
//!
//! Sizes are small by default (the MPFR oracle is the cost); `GLA_DEEP=1` multiplies case counts
//! and sizes; `PROPTEST_CASES` overrides every property's case count.
//!
//! ```
//! use gla_judge::{check_against_oracle, Implementation};
//! use gla_proptests::strategies::{GateRegime, ProblemSpec, ValueRegime};
//! use gla_reference::{Dtype, GateKind};
//! let spec = ProblemSpec { b: 1, t: 17, h: 1, k: 3, v: 2, gate_kind: GateKind::PerChannel,
//!     gates: GateRegime::IsolatedNegInf, values: ValueRegime::SignedNormal, h0: true, dht: true,
//!     seq_lens: None, scale: None, grid: Dtype::Bf16, seed: 1 };
//! let p = spec.build()?;
//! let verdicts = check_against_oracle(&p, &[Implementation::RECURRENT_F32])?;
//! assert!(verdicts.iter().all(|(_, v)| v.pass()));
//! # Ok::<(), gla_reference::GlaError>(())
//! ```
#![warn(missing_docs)]

pub mod linear;
pub mod properties;
pub mod strategies;
pub mod suite;
pub mod transform;

/// True when `GLA_DEEP=1` (or any value other than empty / `0`) is set: more cases, larger sizes.
pub fn deep() -> bool {
    std::env::var("GLA_DEEP")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}
