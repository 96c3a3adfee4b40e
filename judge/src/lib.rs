//! # gla-judge
//!
//! Everything between "here is a GLA implementation" and "here is its verdict", as a library that
//! the command line (`glacheck`), the property suite (`gla-proptests`) and the Python bindings
//! call, so that every front end reports the same numbers:
//!
//! - [`implementation`]: the registry of candidate implementations ([`Implementation`]: the
//!   recurrent, parallel and chunked reference forms at each precision and rounding plan, and the
//!   GPU kernels), how each one runs ([`solve`]) and the error model that judges it
//!   ([`bound_spec`], [`bound_spec_forward`]);
//! - [`truth`]: the exact answer, from the MPFR oracle or stored in a golden fixture ([`Truth`]);
//! - [`inputs`]: problems from tensors a front end holds in memory, checked like files;
//! - [`check`]: judging candidates against the truth ([`check_against_oracle`], [`Verdict`]), the
//!   "2x the emulation" rule for the GPU kernels, oracle-free pairwise checks;
//! - [`verify`]: the judge of outside kernels' outputs (what `glacheck verify` prints, as text and
//!   JSON), with its empirical verdicts: the honest [`baseline`] rule and the [`bias`] test;
//! - [`mutants`]: realistic bugs of a GLA kernel and the benchmark that shows which judge
//!   (glacheck's verdict, fla's, FlashAttention's and cuDNN's test rules) catches which;
//! - [`summary`](mod@summary): the LAPACK-style table over many judged cases;
//! - [`format`](mod@format): the table and number formatting every front end shares.
//!
//! The error model is docs/math.md §8.1 of the repository.
//!
//! ```
//! use gla_judge::{check_against_oracle, Implementation};
//! use gla_reference::{Gates, Problem};
//! use ndarray::Array4;
//! let f = |i: usize| ((i * 7919) % 1000) as f64 / 500.0 - 1.0; // deterministic, signed
//! let (b, t, h, k, v) = (1, 17, 1, 3, 2);
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| f(t * 31 + d));
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| f(t * 17 + d + 3));
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| f(t * 13 + e + 9));
//! // a reset (alpha = 0) at t = 5
//! let g = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| {
//!     if t == 5 { f64::NEG_INFINITY } else { -f(t + d).abs() }
//! });
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).build()?;
//! let verdicts = check_against_oracle(&p, &[Implementation::RECURRENT_F32])?;
//! assert!(verdicts.iter().all(|(_, v)| v.pass()));
//! # Ok::<(), gla_reference::GlaError>(())
//! ```
#![warn(missing_docs)]

pub mod alloc;
pub mod baseline;
pub mod bias;
pub mod check;
pub mod format;
pub mod gpu;
pub mod implementation;
pub mod inputs;
pub mod mutants;
pub mod summary;
pub mod truth;
pub mod verify;

pub use check::{check_against_oracle, check_against_oracle_as, Verdict};
pub use implementation::{
    bound_spec, bound_spec_forward, solve, Compute, DgFormKey, Implementation, Round,
};
pub use summary::{summary, Summary, SummaryRow};
pub use truth::{Truth, TruthMode};

/// Why a judgement could not be made: the input or candidate is unusable (wrong shapes, missing
/// tensors, a file that is not what it claims), or a solver's typed error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JudgeError {
    /// A file or argument is unusable; the message names it.
    #[error("{0}")]
    Input(String),
    /// A typed error of the problem or a solver.
    #[error(transparent)]
    Gla(#[from] gla_reference::GlaError),
    /// A file could not be read.
    #[error(transparent)]
    File(#[from] gla_fixtures::io::FileError),
}
