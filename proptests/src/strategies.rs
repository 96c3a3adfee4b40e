//! Proptest strategies for whole GLA problems (issue 4, item 1).
//!
//! A generated case is a [`ProblemSpec`]: sizes, layout flags, a [`GateRegime`], a
//! [`ValueRegime`] and a seed. [`ProblemSpec::build`] (gla-fixtures' generator, the property
//! stream) turns it into a validated `Problem` deterministically (ChaCha8 seeded from `seed`);
//! the strategies here only draw docs/math.md's fields. Proptest shrinks docs/math.md, not
//! the tensors: failing cases shrink toward fewer batches and heads, shorter sequences, smaller
//! K and V, simpler regimes (the first variant of each enum is the simplest) and fewer optional
//! inputs, which is what a reader of a failure wants; the seed shrinks too (different data).
//!
//! Every input value is generated in f64 and then rounded to docs/math.md's `grid` dtype (f32 or
//! bf16), so f32 and f64 candidates consume exactly the same values as the oracle (docs/math.md §8); on a
//! bf16 grid the bf16/f16 rounding plans consume the same values as well and one oracle run
//! serves every candidate.
//!
//! ```
//! use gla_proptests::strategies::{problem_spec, SizeProfile};
//! use proptest::strategy::{Strategy, ValueTree};
//! use proptest::test_runner::TestRunner;
//! let mut runner = TestRunner::deterministic();
//! let spec = problem_spec(SizeProfile::default()).new_tree(&mut runner).unwrap().current();
//! let p = spec.build().unwrap();
//! assert_eq!(p.dims().k, spec.k);
//! ```

use gla_reference::{Dtype, GateKind};
use proptest::prelude::*;

/// The problem description, the regimes and the builder are gla-fixtures' one generator; this
/// module only draws docs/math.md's fields.
pub use gla_fixtures::gen::{logsigmoid, normal, GateRegime, ProblemSpec, ValueRegime};

/// The sub-chunk size c and chunk size C the default chunked candidates use (fla: 16, 64); the
/// length strategy is biased toward c-1, c, c+1, C-1, C, C+1 of these and of the small
/// candidate (4, 16).
pub const BIASED_LENGTHS: &[usize] = &[
    1, 0, 2, 3, 4, 5, 7, 13, 15, 16, 17, 31, 33, 37, 63, 64, 65, 79,
];

/// Long lengths, used with tiny K and V (the oracle's cost is the limit).
pub const LONG_LENGTHS: &[usize] = &[100, 127, 128, 129, 193, 257];

/// Key / value widths, non-powers of two included.
pub const WIDTHS: &[usize] = &[1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 24, 64, 128];

/// Size limits of generated problems. `deep()` is what `GLA_DEEP=1` selects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeProfile {
    /// Smallest K and V (64 for the GPU kernels, which take K, V in {64, 128, 256}).
    pub min_width: usize,
    /// Largest B.
    pub max_b: usize,
    /// Largest H.
    pub max_h: usize,
    /// Largest K and V for ordinary lengths.
    pub max_width: usize,
    /// Whether long sequences (with K, V <= `long_width`) are drawn (about 1 case in 8).
    pub long: bool,
    /// Largest K and V for long sequences.
    pub long_width: usize,
    /// Largest number of packed sequences.
    pub max_seqs: usize,
    /// Largest packed varlen length.
    pub max_packed: usize,
}

impl Default for SizeProfile {
    fn default() -> Self {
        SizeProfile {
            min_width: 1,
            max_b: 2,
            max_h: 2,
            max_width: 24,
            long: true,
            long_width: 4,
            max_seqs: 5,
            max_packed: 128,
        }
    }
}

impl SizeProfile {
    /// Larger sizes for nightly runs.
    pub fn deep() -> Self {
        SizeProfile {
            min_width: 1,
            max_b: 3,
            max_h: 3,
            max_width: 24,
            long: true,
            long_width: 8,
            max_seqs: 8,
            max_packed: 300,
        }
    }
    /// Sizes the GPU kernels take (K, V in {64, 128}), kept small for the oracle.
    pub fn gpu() -> Self {
        SizeProfile {
            min_width: 64,
            max_b: 2,
            max_h: 2,
            max_width: 128,
            long: true,
            long_width: 64,
            max_seqs: 4,
            max_packed: 160,
        }
    }
    /// `deep()` when `GLA_DEEP=1`, else the default.
    pub fn from_env() -> Self {
        if crate::deep() {
            Self::deep()
        } else {
            Self::default()
        }
    }
}

/// Biased sequence length: mostly the boundary lengths, sometimes uniform.
pub fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => proptest::sample::select(BIASED_LENGTHS),
        1 => 0usize..=80,
    ]
}

/// A width (K or V) in `min..=max` (the nearest listed width to `min` when none is in range).
pub fn width(min: usize, max: usize) -> impl Strategy<Value = usize> {
    let mut ws: Vec<usize> = WIDTHS
        .iter()
        .copied()
        .filter(|&w| w >= min && w <= max)
        .collect();
    if ws.is_empty() {
        ws.push(WIDTHS.iter().copied().find(|&w| w >= min).unwrap_or(min));
    }
    proptest::sample::select(ws)
}

/// Any gate regime (simplest first, so shrinking moves toward `Zero`).
pub fn gate_regime() -> impl Strategy<Value = GateRegime> {
    proptest::sample::select(GateRegime::ALL.to_vec())
}

/// Any value regime.
pub fn value_regime() -> impl Strategy<Value = ValueRegime> {
    proptest::sample::select(ValueRegime::ALL.to_vec())
}

/// Varlen layout: 1..=max_seqs sequences whose lengths include 0 and 1 often.
pub fn seq_lens(profile: SizeProfile) -> impl Strategy<Value = Vec<usize>> {
    let one = prop_oneof![
        2 => Just(0usize),
        2 => Just(1usize),
        4 => proptest::sample::select(BIASED_LENGTHS),
    ];
    proptest::collection::vec(one, 1..=profile.max_seqs).prop_map(move |mut v| {
        // Keep the packed length within the profile by trimming the longest sequences.
        while v.iter().sum::<usize>() > profile.max_packed {
            let i = (0..v.len()).max_by_key(|&i| v[i]).unwrap();
            v[i] /= 2;
        }
        v
    })
}

#[derive(Debug, Clone)]
enum Layout {
    Dense {
        b: usize,
        t: usize,
        k: usize,
        v: usize,
    },
    Varlen {
        lens: Vec<usize>,
        k: usize,
        v: usize,
    },
}

fn layout(profile: SizeProfile) -> impl Strategy<Value = Layout> {
    let (lo, hi) = (profile.min_width, profile.max_width);
    let dense = (1..=profile.max_b, length(), width(lo, hi), width(lo, hi))
        .prop_map(|(b, t, k, v)| Layout::Dense { b, t, k, v });
    let long = (
        1..=1usize,
        proptest::sample::select(LONG_LENGTHS),
        width(lo, profile.long_width),
        width(lo, profile.long_width),
    )
        .prop_map(|(b, t, k, v)| Layout::Dense { b, t, k, v });
    let vw = if lo > 8 { lo } else { hi.min(8) };
    let varlen = (seq_lens(profile), width(lo, vw), width(lo, vw))
        .prop_map(|(lens, k, v)| Layout::Varlen { lens, k, v });
    let long_w = if profile.long { 1 } else { 0 };
    prop_oneof![
        8 => dense,
        2 => varlen,
        long_w => long,
    ]
}

/// Whole GLA problems with every regime, layout and optional input.
pub fn problem_spec(profile: SizeProfile) -> impl Strategy<Value = ProblemSpec> {
    problem_spec_with(profile, gate_regime(), value_regime())
}

/// Like [`problem_spec`] but with the gate and value regimes drawn from the given strategies.
pub fn problem_spec_with(
    profile: SizeProfile,
    gates: impl Strategy<Value = GateRegime>,
    values: impl Strategy<Value = ValueRegime>,
) -> impl Strategy<Value = ProblemSpec> {
    (
        layout(profile),
        1..=profile.max_h,
        prop_oneof![3 => Just(GateKind::PerChannel), 1 => Just(GateKind::Scalar)],
        gates,
        values,
        any::<bool>(),
        any::<bool>(),
        prop_oneof![6 => Just(None), 1 => Just(Some(1.0)), 1 => Just(Some(0.3125))],
        prop_oneof![1 => Just(Dtype::F32), 1 => Just(Dtype::Bf16)],
        any::<u64>(),
    )
        .prop_map(
            |(layout, h, gate_kind, gates, values, h0, dht, scale, grid, seed)| {
                let (b, t, k, v, seq_lens) = match layout {
                    Layout::Dense { b, t, k, v } => (b, t, k, v, None),
                    Layout::Varlen { lens, k, v } => (1, lens.iter().sum(), k, v, Some(lens)),
                };
                ProblemSpec {
                    b,
                    t,
                    h,
                    k,
                    v,
                    gate_kind,
                    gates,
                    values,
                    h0,
                    dht,
                    seq_lens,
                    scale,
                    grid,
                    seed,
                }
            },
        )
}

/// Dense (no varlen) problems with at least `min_t` steps.
pub fn dense_problem_spec(
    profile: SizeProfile,
    min_t: usize,
) -> impl Strategy<Value = ProblemSpec> {
    problem_spec(profile).prop_filter_map("dense problem with enough steps", move |mut s| {
        if let Some(lens) = s.seq_lens.take() {
            // Turn a varlen layout into a dense one of its packed length.
            s.t = lens.iter().sum();
            s.b = 1;
        }
        (s.t >= min_t).then_some(s)
    })
}

/// Varlen problems with at least two sequences.
pub fn varlen_problem_spec(profile: SizeProfile) -> impl Strategy<Value = ProblemSpec> {
    (
        proptest::collection::vec(
            prop_oneof![1 => Just(0usize), 1 => Just(1usize), 4 => proptest::sample::select(BIASED_LENGTHS)],
            2..=profile.max_seqs.max(2),
        ),
        problem_spec(profile),
    )
        .prop_map(move |(mut lens, mut s)| {
            while lens.iter().sum::<usize>() > profile.max_packed {
                let i = (0..lens.len()).max_by_key(|&i| lens[i]).unwrap();
                lens[i] /= 2;
            }
            s.b = 1;
            s.t = lens.iter().sum();
            if profile.min_width <= 8 {
                s.k = s.k.min(8);
                s.v = s.v.min(8);
            }
            s.seq_lens = Some(lens);
            s
        })
}
