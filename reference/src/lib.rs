//! # gla-reference
//!
//! Gated Linear Attention (GLA; Yang et al., arXiv 2312.06635) on the CPU, generic over f32 and
//! f64: the problem type and its validation, the recurrent form (and, in their modules, the
//! log-space parallel and two-level chunked forms), and the componentwise error-bound machinery
//! of glacheck's spec (section 8.1).
//!
//! Layouts follow flash-linear-attention: q, k, g `[B, T, H, K]`, v `[B, T, H, V]`, scalar gates
//! `[B, T, H]`, states `[N, H, K, V]`. Gates are natural-log decays in `[-inf, 0]`; `-inf` is a
//! valid input (alpha = 0, a state reset) and gives exact results in every form.
//!
//! ```
//! use gla_reference::{recurrent, Gates, Problem};
//! use ndarray::Array4;
//! let (b, t, h, k, v) = (1, 8, 1, 4, 4);
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| ((t + d) % 3) as f64 - 1.0);
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| ((t * d) % 5) as f64 * 0.25);
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| (t as f64 - e as f64) * 0.5);
//! let mut g = Array4::from_elem((b, t, h, k), -0.125);
//! g[[0, 3, 0, 1]] = f64::NEG_INFINITY; // alpha = 0: channel 1 forgets everything before t = 3
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).build()?;
//! let out = recurrent::forward::<f64>(&p)?;
//! assert!(out.o.iter().all(|x| x.is_finite()));
//! # Ok::<(), gla_reference::GlaError>(())
//! ```
#![warn(missing_docs)]

pub mod bounds;
pub mod chunked;
pub(crate) mod cumgate;
pub mod dtype;
pub mod error;
pub mod parallel;
pub mod problem;
pub mod real;
pub mod recurrent;
pub mod rounding;
pub mod solution;
// Not public API: hooks for this crate's integration tests (module docs; no semver promise).
#[doc(hidden)]
pub mod test_support;

pub use bounds::{
    compare, magnitudes, Algorithm, BoundSpec, DgForm, Magnitudes, Report, TensorReport,
};
pub use chunked::ChunkOptions;
pub use dtype::Dtype;
pub use error::{GlaError, Result};
pub use problem::{default_scale, Dims, GateKind, Gates, Problem, ProblemBuilder, SeqSpan};
pub use real::Real;
pub use rounding::RoundingPlan;
pub use solution::{Gradients, Solution, OUTPUT_NAMES};

/// The README's Rust examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
