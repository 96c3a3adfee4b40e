//! Componentwise error bounds (docs/math.md §8.1, normative).
//!
//! For an implementation that rounds operands at S stages (unit roundoffs `u_1..u_S`) and
//! accumulates in a format with unit roundoff `u_acc`:
//!
//! `|x_hat - x*| <= (sum_s u_s + c * u_acc * (n_acc + lambda)) * M_x + eta`   (elementwise)
//!
//! - `M_x`: [`Magnitudes`] (f64, exact decays);
//! - `n_acc`: longest accumulation chain of the [`Algorithm`]: recurrence `K + V + T_seq`,
//!   parallel `K + T_seq`, chunked `K + V + C + ceil(T_seq / C)` (`T_seq` = longest sequence);
//! - `lambda`: 0 for the recurrence; chunked: the largest chunk-local sum of `|g|` (chunks restart at
//!   each sequence start; `-inf` counts 0); parallel: the largest sum of `|g|` over a sequence;
//! - `c`: calibrated per family and output ([`Constants`]);
//! - `eta`: the underflow floor, `(#terms) * (smallest normal of the accumulation format) *
//!   (largest |product|)`, per output tensor (see [`BoundSpec::eta`]).
//!
//! [`compare`] reports, per output tensor, `ratio = max |x_hat - x*| / ((sum u_s + u_acc) M_x + eta)`
//! next to `bound = (sum u_s + c u_acc (n_acc + lambda)) / (sum u_s + u_acc)`.
//!
//! ```
//! use gla_reference::bounds::{compare, magnitudes, Algorithm, BoundSpec};
//! use gla_reference::{recurrent, Dtype, Gates, Problem};
//! use ndarray::Array4;
//! let (b, t, h, k, v) = (1, 32, 2, 8, 8);
//! let f = |i: usize| ((i * 7919) % 1000) as f64 / 500.0 - 1.0; // deterministic, signed
//! let q = Array4::from_shape_fn((b, t, h, k), |(_, t, h, d)| f(t * 31 + h * 7 + d));
//! let kk = Array4::from_shape_fn((b, t, h, k), |(_, t, h, d)| f(t * 17 + h * 5 + d + 3));
//! let vv = Array4::from_shape_fn((b, t, h, v), |(_, t, h, e)| f(t * 13 + h * 3 + e + 9));
//! let g = Array4::from_shape_fn((b, t, h, k), |(_, t, _, d)| -f(t + d).abs() * 0.5);
//! let do_ = Array4::from_shape_fn((b, t, h, v), |(_, t, _, e)| f(t * 3 + e + 1));
//! // Round inputs to f32 first: candidate and truth consume the same values.
//! let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(do_).build()?.rounded_to(Dtype::F32)?;
//! let exact = recurrent::backward::<f64>(&p)?;   // stand-in for the oracle
//! let cand = recurrent::backward::<f32>(&p)?;
//! let report = compare(&p, &exact, &magnitudes(&p), &cand,
//!                      &BoundSpec::new(Algorithm::Recurrent, Dtype::F32))?;
//! assert!(report.pass(), "{report}");
//! assert_eq!(report.tensors.len(), 7);
//! println!("{report}");
//! # Ok::<(), gla_reference::GlaError>(())
//! ```

mod compare;
mod constants;
mod magnitudes;

pub use compare::{compare, compare_approximate, compare_with, DgRatios, Report, TensorReport};
pub use constants::*;
pub use magnitudes::{magnitudes, solve_with_magnitudes, Magnitudes};

use crate::dtype::Dtype;
use crate::error::{GlaError, Result};
use crate::problem::{GateKind, Problem};
use crate::rounding::RoundingPlan;

/// Which algorithm computes the gate gradient dg (docs/math.md §4).
///
/// Both are exact in exact arithmetic; they differ in rounding behaviour, so an implementation is
/// judged with the magnitude of the algorithm it runs (`M_dg` or `M_dg_local`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DgForm {
    /// `dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s) + rowsum(hT * dhT)` (the paper's trick, what fla's
    /// kernels run). Its error scales with `M_dg`, which can exceed `|dg|` by orders of magnitude.
    #[default]
    ReverseCumsum,
    /// `dg_t = alpha_t * rowsum(S_{t-1} * dS_t)`; error scales with the condition magnitude
    /// `M_dg_local`.
    Local,
}

impl DgForm {
    /// The name used on command lines and in reports: `reverse-cumsum` or `local`.
    pub fn name(self) -> &'static str {
        match self {
            DgForm::ReverseCumsum => "reverse-cumsum",
            DgForm::Local => "local",
        }
    }
}

impl std::fmt::Display for DgForm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DgForm {
    type Err = GlaError;
    /// Parse `reverse-cumsum` or `local` (as printed by [`DgForm::name`]).
    ///
    /// ```
    /// use gla_reference::bounds::DgForm;
    /// assert_eq!("local".parse::<DgForm>()?, DgForm::Local);
    /// assert!("cumsum".parse::<DgForm>().is_err());
    /// # Ok::<(), gla_reference::GlaError>(())
    /// ```
    fn from_str(s: &str) -> Result<DgForm> {
        match s {
            "reverse-cumsum" => Ok(DgForm::ReverseCumsum),
            "local" => Ok(DgForm::Local),
            _ => Err(GlaError::Options(format!(
                "unknown dg form `{s}` (expected reverse-cumsum or local)"
            ))),
        }
    }
}

/// Which outputs a [`BoundSpec`] judges, and therefore which rounding points of a
/// [`RoundingPlan`] count as stages ([`BoundSpec::from_plan`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pass {
    /// `o` and `ht` of a forward run: the plan's forward rounding points
    /// ([`RoundingPlan::forward_stages`]).
    Forward,
    /// Everything a backward run produces (the gradients, and `o`, `ht` recomputed): every
    /// rounding point, since the backward recomputes the forward factors
    /// ([`RoundingPlan::backward_stages`]).
    Backward,
}

/// An implementation family, which fixes `n_acc` and `lambda`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// The recurrence: `n_acc = K + V + T_seq`, `lambda = 0`.
    Recurrent,
    /// Global-cumsum log-space parallel form: `n_acc = K + T_seq`, `lambda` = largest sum of `|g|`
    /// over a sequence.
    Parallel,
    /// Chunked form with chunk size `chunk`: `n_acc = K + V + C + ceil(T_seq / C)`, `lambda` =
    /// largest chunk-local sum of `|g|`.
    Chunked {
        /// Chunk size C (>= 1).
        chunk: usize,
    },
}

/// The error model of one implementation: algorithm, rounding stages, accumulation format, dg
/// algorithm and calibrated constants.
///
/// ```
/// use gla_reference::bounds::{Algorithm, BoundSpec, DgForm, RECURRENT};
/// use gla_reference::Dtype;
/// let s = BoundSpec::new(Algorithm::Chunked { chunk: 64 }, Dtype::F32)
///     .with_stages(&[Dtype::Bf16, Dtype::Bf16])
///     .with_dg_form(DgForm::ReverseCumsum);
/// assert_eq!(s.u_stages(), 2.0 * 2f64.powi(-8));
/// assert_eq!(s.u_acc(), 2f64.powi(-24));
/// let r = BoundSpec::new(Algorithm::Recurrent, Dtype::F32);
/// assert_eq!(r.c, RECURRENT);
/// assert!(r.stages.is_empty());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct BoundSpec {
    /// The algorithm family (fixes `n_acc` and `lambda`).
    pub algorithm: Algorithm,
    /// Rounding stages (each contributes its unit roundoff once).
    pub stages: Vec<Dtype>,
    /// Accumulation format.
    pub acc: Dtype,
    /// Which dg algorithm the implementation runs (selects the judged magnitude).
    pub dg_form: DgForm,
    /// Calibrated constants.
    pub c: Constants,
}

impl BoundSpec {
    /// A spec with no rounding stages, reverse-cumsum dg, and the family's calibrated constants.
    pub fn new(algorithm: Algorithm, acc: Dtype) -> BoundSpec {
        BoundSpec {
            algorithm,
            stages: Vec::new(),
            acc,
            dg_form: DgForm::ReverseCumsum,
            c: Constants::for_algorithm(algorithm),
        }
    }
    /// The error model of an implementation of `algorithm` that accumulates in `acc` and rounds
    /// as `plan` says: the one mapping from a rounding plan to bound stages, used by every
    /// judge (the candidate registry, `glacheck verify`, the GPU tests). Each active rounding
    /// point coarser than f32 of the `pass` becomes one stage; the family's calibrated constants.
    ///
    /// ```
    /// use gla_reference::bounds::{Algorithm, BoundSpec, Pass};
    /// use gla_reference::{rounding::RoundingPlan, Dtype};
    /// let plan = RoundingPlan::kernel_default(Dtype::Bf16);
    /// let alg = Algorithm::Chunked { chunk: 64 };
    /// let fwd = BoundSpec::from_plan(alg, Dtype::F32, &plan, Pass::Forward);
    /// let bwd = BoundSpec::from_plan(alg, Dtype::F32, &plan, Pass::Backward);
    /// assert_eq!((fwd.stages.len(), bwd.stages.len()), (5, 6));
    /// assert!(BoundSpec::from_plan(alg, Dtype::F32, &RoundingPlan::none(), Pass::Backward)
    ///     .stages.is_empty());
    /// ```
    pub fn from_plan(
        algorithm: Algorithm,
        acc: Dtype,
        plan: &RoundingPlan,
        pass: Pass,
    ) -> BoundSpec {
        let stages = match pass {
            Pass::Forward => plan.forward_stages(),
            Pass::Backward => plan.backward_stages(),
        };
        BoundSpec::new(algorithm, acc).with_stages(&stages)
    }
    /// Replace the rounding stages.
    pub fn with_stages(mut self, stages: &[Dtype]) -> BoundSpec {
        self.stages = stages.to_vec();
        self
    }
    /// Choose the dg algorithm.
    pub fn with_dg_form(mut self, form: DgForm) -> BoundSpec {
        self.dg_form = form;
        self
    }
    /// Replace the constants.
    pub fn with_constants(mut self, c: Constants) -> BoundSpec {
        self.c = c;
        self
    }
    /// `sum_s u_s` over the rounding stages.
    pub fn u_stages(&self) -> f64 {
        self.stages.iter().map(|d| d.unit_roundoff()).sum()
    }
    /// `u_acc`.
    pub fn u_acc(&self) -> f64 {
        self.acc.unit_roundoff()
    }
    /// Error unless docs/math.md is usable (chunk size >= 1).
    pub fn validate(&self) -> Result<()> {
        if let Algorithm::Chunked { chunk: 0 } = self.algorithm {
            return Err(GlaError::Options("chunk size must be at least 1".into()));
        }
        Ok(())
    }
    /// `n_acc` for this problem (one value per problem: `T_seq` = the longest sequence).
    ///
    /// ```
    /// use gla_reference::bounds::{Algorithm, BoundSpec};
    /// use gla_reference::{Dtype, Gates, Problem};
    /// use ndarray::Array4;
    /// let p = Problem::builder(Array4::zeros((1, 100, 1, 8)), Array4::zeros((1, 100, 1, 8)),
    ///     Array4::zeros((1, 100, 1, 4)), Gates::PerChannel(Array4::zeros((1, 100, 1, 8))))
    ///     .cu_seqlens(&[0, 30, 30, 100]).build()?;
    /// assert_eq!(BoundSpec::new(Algorithm::Recurrent, Dtype::F32).n_acc(&p), 8.0 + 4.0 + 70.0);
    /// assert_eq!(BoundSpec::new(Algorithm::Parallel, Dtype::F32).n_acc(&p), 8.0 + 70.0);
    /// assert_eq!(BoundSpec::new(Algorithm::Chunked { chunk: 64 }, Dtype::F32).n_acc(&p),
    ///            8.0 + 4.0 + 64.0 + 2.0);
    /// # Ok::<(), gla_reference::GlaError>(())
    /// ```
    pub fn n_acc(&self, p: &Problem) -> f64 {
        let d = p.dims();
        let ts = p.max_seq_len();
        (match self.algorithm {
            Algorithm::Recurrent => d.k + d.v + ts,
            Algorithm::Parallel => d.k + ts,
            Algorithm::Chunked { chunk } => {
                let c = chunk.max(1);
                d.k + d.v + c + ts.div_ceil(c)
            }
        }) as f64
    }
    /// `lambda` for this problem (see [`Algorithm`]).
    pub fn lambda(&self, p: &Problem) -> f64 {
        match self.algorithm {
            Algorithm::Recurrent => 0.0,
            Algorithm::Parallel => lambda_chunked(p, usize::MAX),
            Algorithm::Chunked { chunk } => lambda_chunked(p, chunk.max(1)),
        }
    }
    /// The constant `c` judging output `name` (for `dg`, the one of [`BoundSpec::dg_form`]).
    pub fn c_for(&self, name: &str) -> Option<f64> {
        match (name, self.dg_form) {
            ("dg", DgForm::Local) => Some(self.c.dg_local),
            _ => self.c.get(name),
        }
    }
    /// The bound on the ratio for output `name`:
    /// `(sum u_s + c u_acc (n_acc + lambda)) / (sum u_s + u_acc)`.
    pub fn bound(&self, p: &Problem, name: &str) -> Option<f64> {
        let c = self.c_for(name)?;
        let (us, ua) = (self.u_stages(), self.u_acc());
        Some((us + c * ua * (self.n_acc(p) + self.lambda(p))) / (us + ua))
    }
    /// The underflow floor `eta` for output `name` (`o`, `ht`, `dq`, `dk`, `dv`, `dh0`, `dg`,
    /// `dg_local`): `(#terms) * unit * (largest |product|)`, where `unit` is the largest
    /// [`Dtype::underflow_unit`] of the accumulation format and the rounding stages (the smallest
    /// normal of f32/f64/bf16/tf32; 2^-24 when a stage stores fp16, divided by the product
    /// of every nonzero maximum below 1 among scale, |q|, |k|, |v|, |h0|, |do|, |dhT|, since a stored operand's floor is absolute),
    /// plus that stage unit once more for the final store of the output in the stage format.
    ///
    /// With `P_S = max(max|k| max|v|, max|h0|)` (a state term), `P_W = max(|scale| max|q| max|do|,
    /// max|dhT|)` (a state-gradient term) and `T1 = T_seq + 1`:
    /// o: `K T1` terms of `|scale| max|q| P_S`; hT: `T1` of `P_S`; dq: `V T1` of
    /// `|scale| max|do| P_S`; dk: `V T1` of `P_W max|v|`; dv: `K T1` of `P_W max|k|`; dh0: `T1`
    /// of `P_W`; dg: `2 V T1 T_seq + V` of the largest of those products times `max|q|`,
    /// `max|k|` or `max|dhT|`; dg_local: `V T1^2` of `P_S P_W`; the scalar-gate dg sums `K` times
    /// as many terms.
    pub fn eta(&self, p: &Problem, name: &str) -> Option<f64> {
        self.eta_given(p, name, &InputMaxima::of(p))
    }

    /// [`BoundSpec::eta`] with the inputs' maxima already taken (a pass over every input, which
    /// a comparison of several tensors takes once).
    pub(crate) fn eta_given(&self, p: &Problem, name: &str, m: &InputMaxima) -> Option<f64> {
        let (mq, mk, mv) = (m.q, m.k, m.v);
        let (mh0, mdo, mdht) = (m.h0, m.do_, m.dht);
        let sc = p.scale().abs();
        let d = p.dims();
        let (kf, vf) = (d.k as f64, d.v as f64);
        let ts = p.max_seq_len() as f64;
        let t1 = ts + 1.0;
        let ps = (mk * mv).max(mh0);
        let pw = (sc * mq * mdo).max(mdht);
        let gk = if p.gate_kind() == GateKind::Scalar {
            kf
        } else {
            1.0
        };
        let (terms, prod) = match name {
            "o" => (kf * t1, sc * mq * ps),
            "ht" => (t1, ps),
            "dq" => (vf * t1, sc * mdo * ps),
            "dk" => (vf * t1, pw * mv),
            "dv" => (kf * t1, pw * mk),
            "dh0" => (t1, pw),
            "dg" => (
                gk * (2.0 * vf * t1 * ts + vf),
                (mq * sc * mdo * ps).max(mk * pw * mv).max(ps * mdht),
            ),
            "dg_local" => (gk * vf * t1 * t1, ps * pw),
            _ => return None,
        };
        // The floor's unit: the accumulation format's smallest normal, or a coarser underflow
        // unit of a rounding stage (fp16 stores flush below 2^-24; see Dtype::underflow_unit).
        // A stage's floor is absolute on the STORED operand (e.g. q*exp(Gl), far below |q|
        // after a strong decay), so its partner in the product is `prod` without the input
        // factors it multiplies in (see below), which keeps the floor conservative for small inputs.
        let acc_unit = self.acc.underflow_unit();
        let stage_unit = self
            .stages
            .iter()
            .map(|s| s.underflow_unit())
            .fold(0.0, f64::max);
        let unit = if stage_unit > acc_unit {
            // A stored intermediate (e.g. A = scale q.k, or do) may be a product of several small
            // factors: its partner is `prod` divided by that product, which is at most `prod`
            // divided by every factor maximum below 1 (scale, q, k, v, h0, do, dhT); a factor
            // whose max is 0 contributes no terms.
            let below_one: f64 = [sc, mq, mk, mv, mh0, mdo, mdht]
                .into_iter()
                .filter(|&m| m > 0.0 && m < 1.0)
                .product();
            stage_unit / below_one
        } else {
            acc_unit
        };
        // Plus the final store of the output itself in a stage format (e.g. o cast to fp16):
        // an absolute error of half its subnormal spacing, whatever the output's size.
        Some(terms * unit * prod + stage_unit)
    }
}

/// The largest `|x|` of each input of a problem (0 for an absent one): what
/// [`BoundSpec::eta`] scales with.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InputMaxima {
    q: f64,
    k: f64,
    v: f64,
    h0: f64,
    do_: f64,
    dht: f64,
}

impl InputMaxima {
    /// One pass over each input (the inputs in parallel).
    pub(crate) fn of(p: &Problem) -> InputMaxima {
        use rayon::prelude::*;
        let amax = |a: &Option<&ndarray::Array4<f64>>| {
            a.map_or(0.0, |a| a.iter().fold(0.0f64, |m, x| m.max(x.abs())))
        };
        let m: Vec<f64> = [
            Some(p.q()),
            Some(p.k()),
            Some(p.v()),
            p.h0(),
            p.do_(),
            p.dht(),
        ]
        .par_iter()
        .map(amax)
        .collect();
        InputMaxima {
            q: m[0],
            k: m[1],
            v: m[2],
            h0: m[3],
            do_: m[4],
            dht: m[5],
        }
    }
}

/// Largest chunk-local sum of `|g|` over (sequence, head, channel, chunk), chunks of `chunk` rows
/// starting at each sequence start (`usize::MAX`: the whole sequence). `-inf` gates count 0.
///
/// ```
/// use gla_reference::bounds::lambda_chunked;
/// use gla_reference::{Gates, Problem};
/// use ndarray::{Array3, Array4};
/// let mut g = Array3::from_elem((1, 10, 1), -1.0);
/// g[[0, 2, 0]] = f64::NEG_INFINITY;
/// let p = Problem::builder(Array4::zeros((1, 10, 1, 2)), Array4::zeros((1, 10, 1, 2)),
///     Array4::zeros((1, 10, 1, 2)), Gates::Scalar(g)).cu_seqlens(&[0, 3, 10]).build()?;
/// assert_eq!(lambda_chunked(&p, 4), 4.0);          // second sequence, rows 3..7
/// assert_eq!(lambda_chunked(&p, usize::MAX), 7.0); // whole second sequence
/// # Ok::<(), gla_reference::GlaError>(())
/// ```
pub fn lambda_chunked(p: &Problem, chunk: usize) -> f64 {
    let chunk = chunk.max(1);
    let g = p.g();
    // One running sum per (head, channel), the gates read in memory order (a time step's heads
    // and channels at a time): each sum sees its terms in time order, as one (head, channel) at
    // a time would, and the largest value is the same whatever the order it is taken in.
    let mut acc = vec![0.0f64; g.shape()[2] * g.shape()[3]];
    let mut best = 0.0f64;
    for s in p.sequences() {
        let gb = g.index_axis(ndarray::Axis(0), s.batch);
        for i in 0..s.len {
            let reset = i % chunk == 0;
            let row = gb.index_axis(ndarray::Axis(0), s.start + i);
            for (a, &x) in acc.iter_mut().zip(row.iter()) {
                if reset {
                    *a = 0.0;
                }
                if x.is_finite() {
                    *a += x.abs();
                }
                best = best.max(*a);
            }
        }
    }
    best
}
