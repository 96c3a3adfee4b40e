//! Proptest strategies for whole GLA problems (issue 4, item 1).
//!
//! A generated case is a [`ProblemSpec`]: sizes, layout flags, a [`GateRegime`], a
//! [`ValueRegime`] and a seed. [`ProblemSpec::build`] turns it into a validated
//! [`Problem`] deterministically (ChaCha8 seeded from `seed`). Proptest shrinks the spec, not
//! the tensors: failing cases shrink toward fewer batches and heads, shorter sequences, smaller
//! K and V, simpler regimes (the first variant of each enum is the simplest) and fewer optional
//! inputs, which is what a reader of a failure wants; the seed shrinks too (different data).
//!
//! Every input value is generated in f64 and then rounded to the spec's `grid` dtype (f32 or
//! bf16), so f32 and f64 candidates consume exactly the same values as the oracle (spec 8); on a
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

use gla_reference::{Dtype, GateKind, Gates, Problem, Result};
use ndarray::{Array3, Array4};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::fmt;

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

/// How the log gates are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateRegime {
    /// g = 0 (alpha = 1): plain linear attention.
    Zero,
    /// fla's layer: g = logsigmoid(N(0,1)) / 16.
    Mild,
    /// g = logsigmoid(N(0,1)) (temperature 1).
    Moderate,
    /// g = max(logsigmoid(N(0,1)) / 0.1, -30): strong decay, down to about -30.
    Strong,
    /// alpha ~ 1e-12 (g ~ -27.6, jittered by a factor in [0.5, 2] on alpha): memoryless.
    TinyDecay,
    /// Mild gates with a few g = -inf (alpha = 0, a reset) at chunk starts, chunk ends, sub-chunk
    /// boundaries and random places, in all channels or one.
    IsolatedNegInf,
    /// Mild gates with a few g = -300.
    IsolatedMinus300,
    /// Each element drawn from {0, mild, -1, -30, -300, tiny, -inf}: extremes mixed within a chunk.
    MixedExtremes,
    /// g ~ -U(1.6, 5): the sum over a 64-row chunk crosses f32's exp limit (88.72), the sum over
    /// a 16-row sub-chunk does not.
    CrossF32ExpLimitChunk,
    /// g ~ -U(6, 12): the sum over a 16-row sub-chunk crosses f32's exp limit (F5's recipe).
    CrossF32ExpLimitSubChunk,
}

impl GateRegime {
    /// Every regime, simplest first.
    pub const ALL: [GateRegime; 10] = [
        GateRegime::Zero,
        GateRegime::Mild,
        GateRegime::Moderate,
        GateRegime::Strong,
        GateRegime::TinyDecay,
        GateRegime::IsolatedNegInf,
        GateRegime::IsolatedMinus300,
        GateRegime::MixedExtremes,
        GateRegime::CrossF32ExpLimitChunk,
        GateRegime::CrossF32ExpLimitSubChunk,
    ];

    /// True when no intermediate of a float implementation can leave the normal range for
    /// ordinary values (used by the exact power-of-two scaling property).
    /// (`Zero` and `Mild`: |G| stays below ~60 over the longest generated sequence.)
    pub fn is_benign(self) -> bool {
        matches!(self, GateRegime::Zero | GateRegime::Mild)
    }
}

/// How q, k, v, do (and h0, dhT) are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueRegime {
    /// N(0, 1).
    SignedNormal,
    /// U(0, 1) (what fla's tests use: no cancellation).
    PositiveOnly,
    /// sign * 2^U(-12, 12): wide dynamic range (stays inside f16's range after products? no:
    /// only the inputs are kept below 2^12 so that f16 rounding of the inputs never overflows).
    WideRange,
    /// N(0, 1) with about a third of the time rows of q, k, v, do set entirely to zero.
    ZeroVectors,
    /// Prescribed cancellation: rows come in pairs with k_{2i+1} = k_{2i} and
    /// v_{2i+1} = -v_{2i} + 2^-10 N(0,1) (do likewise), so outputs are tiny next to their
    /// condition magnitudes.
    Cancellation,
}

impl ValueRegime {
    /// Every regime, simplest first.
    pub const ALL: [ValueRegime; 5] = [
        ValueRegime::SignedNormal,
        ValueRegime::PositiveOnly,
        ValueRegime::WideRange,
        ValueRegime::ZeroVectors,
        ValueRegime::Cancellation,
    ];
}

/// Everything needed to build one problem, deterministically.
#[derive(Clone, PartialEq)]
pub struct ProblemSpec {
    /// Batch size (1 when `seq_lens` is set).
    pub b: usize,
    /// Time steps (the packed length when `seq_lens` is set).
    pub t: usize,
    /// Heads.
    pub h: usize,
    /// Key width.
    pub k: usize,
    /// Value width.
    pub v: usize,
    /// Per-channel or scalar gates.
    pub gate_kind: GateKind,
    /// Gate regime.
    pub gates: GateRegime,
    /// Value regime.
    pub values: ValueRegime,
    /// Whether h0 is given.
    pub h0: bool,
    /// Whether dhT is given (do is always given so that the backward pass can run).
    pub dht: bool,
    /// Packed varlen sequence lengths (empty and length-1 sequences included); `None`: dense.
    pub seq_lens: Option<Vec<usize>>,
    /// Explicit scale (`None`: the default K^-0.5).
    pub scale: Option<f64>,
    /// Every input is rounded to this dtype (F32 or Bf16).
    pub grid: Dtype,
    /// Seed of the ChaCha8 generator that draws the values.
    pub seed: u64,
}

impl fmt::Debug for ProblemSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ProblemSpec {{ B={} T={} H={} K={} V={} {:?} gates={:?} values={:?} h0={} dht={} seq_lens={:?} scale={:?} grid={} seed={:#x} }}",
            self.b, self.t, self.h, self.k, self.v, self.gate_kind, self.gates, self.values,
            self.h0, self.dht, self.seq_lens, self.scale, self.grid, self.seed
        )
    }
}

/// Standard normal by Box-Muller (rand 0.8 has no normal distribution without rand_distr).
pub fn normal(rng: &mut impl Rng) -> f64 {
    let u1: f64 = 1.0 - rng.gen::<f64>(); // (0, 1]
    let u2: f64 = rng.gen::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// log(sigmoid(x)) computed stably.
pub fn logsigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        -(-x).exp().ln_1p()
    } else {
        x - x.exp().ln_1p()
    }
}

fn gate_value(regime: GateRegime, rng: &mut impl Rng) -> f64 {
    let v = match regime {
        GateRegime::Zero => 0.0,
        GateRegime::Mild | GateRegime::IsolatedNegInf | GateRegime::IsolatedMinus300 => {
            logsigmoid(normal(rng)) / 16.0
        }
        GateRegime::Moderate => logsigmoid(normal(rng)),
        GateRegime::Strong => (logsigmoid(normal(rng)) / 0.1).max(-30.0),
        GateRegime::TinyDecay => (1e-12 * rng.gen_range(0.5..2.0f64)).ln(),
        GateRegime::MixedExtremes => match rng.gen_range(0..7) {
            0 => 0.0,
            1 => logsigmoid(normal(rng)) / 16.0,
            2 => -1.0,
            3 => -30.0,
            4 => -300.0,
            5 => (1e-12f64).ln(),
            _ => f64::NEG_INFINITY,
        },
        GateRegime::CrossF32ExpLimitChunk => -rng.gen_range(1.6..5.0),
        GateRegime::CrossF32ExpLimitSubChunk => -rng.gen_range(6.0..12.0),
    };
    // -0.0 is a valid gate but keep the data tidy.
    if v == 0.0 {
        0.0
    } else {
        v
    }
}

fn value(regime: ValueRegime, rng: &mut impl Rng) -> f64 {
    match regime {
        ValueRegime::SignedNormal | ValueRegime::ZeroVectors | ValueRegime::Cancellation => {
            normal(rng)
        }
        ValueRegime::PositiveOnly => rng.gen::<f64>(),
        ValueRegime::WideRange => {
            let s = if rng.gen::<bool>() { 1.0 } else { -1.0 };
            s * 2f64.powf(rng.gen_range(-12.0..12.0))
        }
    }
}

/// Fill a `[B, T, H, W]` tensor in a value regime. `pair_with_sign` applies the cancellation
/// pairing (odd rows = sign * even rows + small noise) when the regime is `Cancellation`.
fn fill_btw(
    shape: (usize, usize, usize, usize),
    regime: ValueRegime,
    pair_sign: Option<f64>,
    rng: &mut impl Rng,
) -> Array4<f64> {
    let (b, t, h, w) = shape;
    let mut a = Array4::from_shape_fn(shape, |_| value(regime, rng));
    match regime {
        ValueRegime::ZeroVectors => {
            for bb in 0..b {
                for tt in 0..t {
                    for hh in 0..h {
                        if rng.gen_range(0..3) == 0 {
                            for x in 0..w {
                                a[[bb, tt, hh, x]] = 0.0;
                            }
                        }
                    }
                }
            }
        }
        ValueRegime::Cancellation => {
            if let Some(sign) = pair_sign {
                for bb in 0..b {
                    for tt in (1..t).step_by(2) {
                        for hh in 0..h {
                            for x in 0..w {
                                let noise = if sign < 0.0 {
                                    2f64.powi(-10) * normal(rng)
                                } else {
                                    0.0
                                };
                                a[[bb, tt, hh, x]] = sign * a[[bb, tt - 1, hh, x]] + noise;
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
    a
}

impl ProblemSpec {
    /// Number of sequences (N).
    pub fn n(&self) -> usize {
        self.seq_lens.as_ref().map_or(self.b, |s| s.len())
    }

    /// Build the problem (deterministic in the spec). Fails only if the spec itself is invalid
    /// (e.g. hand-edited sizes that disagree with `seq_lens`).
    pub fn build(&self) -> Result<Problem> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let (b, t, h, k, v) = (self.b, self.t, self.h, self.k, self.v);
        let n = self.n();
        let q = fill_btw((b, t, h, k), self.values, None, &mut rng);
        // k: equal within pairs, v and do: opposite within pairs (cancellation regime).
        let kk = fill_btw((b, t, h, k), self.values, Some(1.0), &mut rng);
        let vv = fill_btw((b, t, h, v), self.values, Some(-1.0), &mut rng);
        let d_o = fill_btw((b, t, h, v), self.values, Some(-1.0), &mut rng);
        let kg = match self.gate_kind {
            GateKind::PerChannel => k,
            GateKind::Scalar => 1,
        };
        let mut g = Array4::from_shape_fn((b, t, h, kg), |_| gate_value(self.gates, &mut rng));
        if matches!(
            self.gates,
            GateRegime::IsolatedNegInf | GateRegime::IsolatedMinus300
        ) && t > 0
        {
            let special = if self.gates == GateRegime::IsolatedNegInf {
                f64::NEG_INFINITY
            } else {
                -300.0
            };
            // Interesting rows: chunk / sub-chunk starts and ends of both default chunkings, and
            // one random row.
            let candidates = [0usize, 3, 4, 15, 16, 17, 63, 64, rng.gen_range(0..t)];
            let count = rng.gen_range(1..=3);
            for _ in 0..count {
                let row = candidates[rng.gen_range(0..candidates.len())].min(t - 1);
                let all = rng.gen::<bool>();
                let ch = rng.gen_range(0..kg);
                for bb in 0..b {
                    for hh in 0..h {
                        for d in 0..kg {
                            if all || d == ch {
                                g[[bb, row, hh, d]] = special;
                            }
                        }
                    }
                }
            }
        }
        let state_regime = match self.values {
            ValueRegime::Cancellation | ValueRegime::ZeroVectors => ValueRegime::SignedNormal,
            r => r,
        };
        let h0 = self
            .h0
            .then(|| Array4::from_shape_fn((n, h, k, v), |_| value(state_regime, &mut rng)));
        let dht = self
            .dht
            .then(|| Array4::from_shape_fn((n, h, k, v), |_| value(state_regime, &mut rng)));
        let round = |a: Array4<f64>| a.mapv(|x| self.grid.round(x));
        let gates = match self.gate_kind {
            GateKind::PerChannel => Gates::PerChannel(round(g)),
            GateKind::Scalar => {
                let g3: Array3<f64> = round(g).index_axis_move(ndarray::Axis(3), 0);
                Gates::Scalar(g3)
            }
        };
        let mut builder = Problem::builder(round(q), round(kk), round(vv), gates)
            .h0_opt(h0.map(round))
            .dht_opt(dht.map(round))
            .do_(round(d_o))
            .scale_opt(self.scale);
        if let Some(lens) = &self.seq_lens {
            let mut cu = vec![0i64];
            for &l in lens {
                cu.push(cu.last().unwrap() + l as i64);
            }
            builder = builder.cu_seqlens(&cu);
        }
        builder.build()
    }
}

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
