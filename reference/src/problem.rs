//! The GLA problem: inputs, options and their validation (docs/math.md §0, 5, 6).
//!
//! Layouts are fla's (time-major): q, k, g `[B, T, H, K]`, v `[B, T, H, V]`, scalar gates
//! `[B, T, H]`, states h0 / hT / dh0 / dhT `[N, H, K, V]` with N = B, or N = number of sequences
//! under `cu_seqlens` (then B = 1). All values are held as f64: every f32, bf16 and f16 input is
//! exactly representable, so every implementation consumes exactly the values it was given.

use crate::dtype::Dtype;
use crate::error::{GlaError, Result};
use ndarray::{Array3, Array4, ArrayD, ArrayView4, Axis};

/// Whether gates are per channel (`[B,T,H,K]`, GLA) or one per head and step (`[B,T,H]`, SimpleGLA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GateKind {
    /// One log gate per key channel: g `[B, T, H, K]`.
    PerChannel,
    /// One log gate per (batch, time, head): g `[B, T, H]`.
    Scalar,
}

/// Log-space gates as supplied by the user.
#[derive(Debug, Clone, PartialEq)]
pub enum Gates {
    /// Per-channel gates `[B, T, H, K]`.
    PerChannel(Array4<f64>),
    /// Scalar gates `[B, T, H]`.
    Scalar(Array3<f64>),
}

/// One independent sequence of the problem: rows `start..start+len` of batch `batch`, whose
/// initial and final states live at index `state` of h0 / hT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqSpan {
    /// Batch index into q, k, v, g (always 0 under `cu_seqlens`).
    pub batch: usize,
    /// First time step.
    pub start: usize,
    /// Number of time steps (may be 0).
    pub len: usize,
    /// Index into the state tensors (`N` axis).
    pub state: usize,
}

/// Sizes of a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dims {
    /// Batch size (1 under `cu_seqlens`).
    pub b: usize,
    /// Time steps per batch row (packed length under `cu_seqlens`).
    pub t: usize,
    /// Heads.
    pub h: usize,
    /// Key dimension.
    pub k: usize,
    /// Value dimension.
    pub v: usize,
    /// Number of sequences (= number of states).
    pub n: usize,
}

/// A validated GLA problem: inputs, options and (optionally) the backward seeds.
///
/// Build one with [`Problem::builder`]. Every field is checked on `build()`: shapes, NaN and
/// infinities (only gates may be `-inf`), gates `<= 0`, `cu_seqlens`, a finite scale, and states
/// `[N, H, K, V]` small enough to allocate.
///
/// ```
/// use gla_reference::{Gates, Problem};
/// use ndarray::{Array3, Array4};
/// let (b, t, h, k, v) = (1, 5, 2, 4, 3);
/// let q = Array4::from_elem((b, t, h, k), 0.5);
/// let kk = Array4::from_elem((b, t, h, k), 0.25);
/// let vv = Array4::from_elem((b, t, h, v), 1.0);
/// let g = Gates::Scalar(Array3::from_elem((b, t, h), -0.1));
/// let p = Problem::builder(q, kk, vv, g).build().unwrap();
/// assert_eq!(p.dims().n, 1);
/// assert_eq!(p.scale(), 0.5); // K^-0.5
///
/// // A positive gate is rejected with a typed error naming the element.
/// let bad = Gates::Scalar(Array3::from_elem((b, t, h), 0.1));
/// let err = Problem::builder(Array4::zeros((b, t, h, k)), Array4::zeros((b, t, h, k)),
///                            Array4::zeros((b, t, h, v)), bad).build().unwrap_err();
/// assert!(err.to_string().contains("> 0"));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    q: Array4<f64>,
    k: Array4<f64>,
    v: Array4<f64>,
    /// `[B, T, H, K]` for per-channel gates, `[B, T, H, 1]` for scalar gates.
    g: Array4<f64>,
    gate_kind: GateKind,
    h0: Option<Array4<f64>>,
    scale: f64,
    cu_seqlens: Option<Vec<usize>>,
    do_: Option<Array4<f64>>,
    dht: Option<Array4<f64>>,
    dims: Dims,
}

/// Builder for [`Problem`]; see there.
#[derive(Debug, Clone)]
pub struct ProblemBuilder {
    q: Array4<f64>,
    k: Array4<f64>,
    v: Array4<f64>,
    g: Gates,
    h0: Option<Array4<f64>>,
    scale: Option<f64>,
    cu_seqlens: Option<Vec<i64>>,
    do_: Option<Array4<f64>>,
    dht: Option<Array4<f64>>,
}

impl ProblemBuilder {
    /// Initial state h0 `[N, H, K, V]` (zeros when absent).
    pub fn h0(mut self, h0: Array4<f64>) -> Self {
        self.h0 = Some(h0);
        self
    }
    /// Optional initial state.
    pub fn h0_opt(mut self, h0: Option<Array4<f64>>) -> Self {
        self.h0 = h0;
        self
    }
    /// Scale applied to q (default K^-0.5 rounded once to f64).
    pub fn scale(mut self, scale: f64) -> Self {
        self.scale = Some(scale);
        self
    }
    /// Optional scale.
    pub fn scale_opt(mut self, scale: Option<f64>) -> Self {
        self.scale = scale;
        self
    }
    /// Packed varlen boundaries `[N+1]` (requires B = 1).
    pub fn cu_seqlens(mut self, cu: &[i64]) -> Self {
        self.cu_seqlens = Some(cu.to_vec());
        self
    }
    /// Optional packed varlen boundaries.
    pub fn cu_seqlens_opt(mut self, cu: Option<Vec<i64>>) -> Self {
        self.cu_seqlens = cu;
        self
    }
    /// Output gradient do `[B, T, H, V]` (needed for the backward pass).
    pub fn do_(mut self, d: Array4<f64>) -> Self {
        self.do_ = Some(d);
        self
    }
    /// Optional output gradient.
    pub fn do_opt(mut self, d: Option<Array4<f64>>) -> Self {
        self.do_ = d;
        self
    }
    /// Gradient of the final state dhT `[N, H, K, V]` (zeros when absent).
    pub fn dht(mut self, d: Array4<f64>) -> Self {
        self.dht = Some(d);
        self
    }
    /// Optional final-state gradient.
    pub fn dht_opt(mut self, d: Option<Array4<f64>>) -> Self {
        self.dht = d;
        self
    }

    /// Validate everything and produce the problem.
    pub fn build(self) -> Result<Problem> {
        let qs = self.q.shape().to_vec();
        let (b, t, h, k) = (qs[0], qs[1], qs[2], qs[3]);
        if h == 0 {
            return Err(GlaError::ZeroDim {
                tensor: "q".into(),
                what: "H".into(),
            });
        }
        if k == 0 {
            return Err(GlaError::ZeroDim {
                tensor: "q".into(),
                what: "K".into(),
            });
        }
        let want_qk = format!("[B, T, H, K] = {:?} (the shape of q)", [b, t, h, k]);
        check_shape("k", self.k.shape(), &[b, t, h, k], &want_qk)?;
        let vs = self.v.shape().to_vec();
        let v = vs[3];
        check_shape(
            "v",
            &vs[..3],
            &[b, t, h],
            &format!("[B, T, H, V] with [B, T, H] = {:?}", [b, t, h]),
        )?;
        if v == 0 {
            return Err(GlaError::ZeroDim {
                tensor: "v".into(),
                what: "V".into(),
            });
        }
        let (g, gate_kind) = match self.g {
            Gates::PerChannel(g) => {
                check_shape("g", g.shape(), &[b, t, h, k], &want_qk)?;
                (g, GateKind::PerChannel)
            }
            Gates::Scalar(g) => {
                check_shape(
                    "g",
                    g.shape(),
                    &[b, t, h],
                    &format!("[B, T, H] = {:?} for scalar gates", [b, t, h]),
                )?;
                (g.insert_axis(Axis(3)), GateKind::Scalar)
            }
        };
        check_finite("q", self.q.view())?;
        check_finite("k", self.k.view())?;
        check_finite("v", self.v.view())?;
        check_gates(g.view(), gate_kind)?;

        // Sequences.
        let (cu, n) = match self.cu_seqlens {
            None => (None, b),
            Some(cu) => {
                if b != 1 {
                    return Err(GlaError::CuSeqlens(format!(
                        "packed varlen inputs need batch size B = 1, got B = {b}"
                    )));
                }
                if cu.is_empty() {
                    return Err(GlaError::CuSeqlens(
                        "cu_seqlens is empty; it needs N+1 >= 2 entries starting at 0".into(),
                    ));
                }
                if cu.len() < 2 {
                    return Err(GlaError::CuSeqlens(
                        "cu_seqlens has 1 entry; it needs N+1 >= 2 entries (at least one sequence)"
                            .into(),
                    ));
                }
                if cu[0] != 0 {
                    return Err(GlaError::CuSeqlens(format!(
                        "cu_seqlens[0] = {}, must be 0",
                        cu[0]
                    )));
                }
                for i in 1..cu.len() {
                    if cu[i] < cu[i - 1] {
                        return Err(GlaError::CuSeqlens(format!(
                            "cu_seqlens decreases at index {i}: {} < {}",
                            cu[i],
                            cu[i - 1]
                        )));
                    }
                }
                let last = *cu.last().unwrap();
                if last != t as i64 {
                    return Err(GlaError::CuSeqlens(format!(
                        "cu_seqlens[{}] = {last}, must equal the packed length T = {t}",
                        cu.len() - 1
                    )));
                }
                let n = cu.len() - 1;
                (Some(cu.iter().map(|&x| x as usize).collect::<Vec<_>>()), n)
            }
        };
        let want_state = format!("[N, H, K, V] = {:?}", [n, h, k, v]);
        // Every solver allocates states of this shape (hT, dh0, the running state); with no time
        // steps the inputs hold no element and do not bound N, K or V.
        if !allocatable(&[n, h, k, v]) {
            return Err(GlaError::TooLarge {
                what: "the states h0, hT, dh0, dhT".into(),
                shape: vec![n, h, k, v],
            });
        }
        if let Some(h0) = &self.h0 {
            check_shape("h0", h0.shape(), &[n, h, k, v], &want_state)?;
            check_finite("h0", h0.view())?;
        }
        if let Some(d) = &self.do_ {
            check_shape(
                "do",
                d.shape(),
                &[b, t, h, v],
                &format!("[B, T, H, V] = {:?}", [b, t, h, v]),
            )?;
            check_finite("do", d.view())?;
        }
        if let Some(d) = &self.dht {
            check_shape("dht", d.shape(), &[n, h, k, v], &want_state)?;
            check_finite("dht", d.view())?;
        }
        let scale = self.scale.unwrap_or_else(|| default_scale(k));
        if !scale.is_finite() {
            return Err(GlaError::Scale(scale));
        }
        Ok(Problem {
            q: self.q,
            k: self.k,
            v: self.v,
            g,
            gate_kind,
            h0: self.h0,
            scale,
            cu_seqlens: cu,
            do_: self.do_,
            dht: self.dht,
            dims: Dims { b, t, h, k, v, n },
        })
    }
}

/// Default scale K^-0.5, computed once in f64 (what every implementation and the oracle use).
pub fn default_scale(k: usize) -> f64 {
    (k as f64).powf(-0.5)
}

/// Whether an f64 array of this shape can exist: ndarray requires the product of the nonzero
/// lengths, and the allocator the number of bytes, to be at most `isize::MAX`.
fn allocatable(shape: &[usize]) -> bool {
    shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(std::mem::size_of::<f64>(), |a, &d| a.checked_mul(d))
        .is_some_and(|bytes| bytes <= isize::MAX as usize)
}

fn check_shape(name: &str, got: &[usize], want: &[usize], expected: &str) -> Result<()> {
    if got != want {
        return Err(GlaError::Shape {
            tensor: name.into(),
            got: got.to_vec(),
            expected: expected.into(),
        });
    }
    Ok(())
}

/// True when `ok` holds for every element of `a` (in parallel over a contiguous array: the
/// checks run on every input of every problem, gigabytes at training shapes).
fn all_elements(a: &ArrayView4<f64>, ok: impl Fn(f64) -> bool + Sync) -> bool {
    use rayon::prelude::*;
    match a.as_slice() {
        Some(xs) => xs.par_chunks(1 << 16).all(|c| c.iter().all(|&x| ok(x))),
        None => a.iter().all(|&x| ok(x)),
    }
}

fn check_finite(name: &str, a: ArrayView4<f64>) -> Result<()> {
    if all_elements(&a, f64::is_finite) {
        return Ok(());
    }
    // The first offending element, in index order.
    for (idx, &x) in a.indexed_iter() {
        if x.is_nan() {
            return Err(GlaError::NaN {
                tensor: name.into(),
                index: vec![idx.0, idx.1, idx.2, idx.3],
            });
        }
        if x.is_infinite() {
            return Err(GlaError::NonFinite {
                tensor: name.into(),
                index: vec![idx.0, idx.1, idx.2, idx.3],
                value: x,
            });
        }
    }
    Ok(())
}

fn check_gates(g: ArrayView4<f64>, kind: GateKind) -> Result<()> {
    // Valid gates are `<= 0` (`-inf` included); NaN, `+inf` and positive values are not.
    if all_elements(&g, |x| x <= 0.0) {
        return Ok(());
    }
    // The first offending element, in index order.
    for (idx, &x) in g.indexed_iter() {
        let index = || match kind {
            GateKind::PerChannel => vec![idx.0, idx.1, idx.2, idx.3],
            GateKind::Scalar => vec![idx.0, idx.1, idx.2],
        };
        if x.is_nan() {
            return Err(GlaError::NaN {
                tensor: "g".into(),
                index: index(),
            });
        }
        if x > 0.0 {
            if x.is_infinite() {
                return Err(GlaError::NonFinite {
                    tensor: "g".into(),
                    index: index(),
                    value: x,
                });
            }
            return Err(GlaError::PositiveGate {
                index: index(),
                value: x,
            });
        }
    }
    Ok(())
}

impl Problem {
    /// Start building a problem from q, k, v and the gates.
    pub fn builder(q: Array4<f64>, k: Array4<f64>, v: Array4<f64>, g: Gates) -> ProblemBuilder {
        ProblemBuilder {
            q,
            k,
            v,
            g,
            h0: None,
            scale: None,
            cu_seqlens: None,
            do_: None,
            dht: None,
        }
    }

    /// Build from dynamically-shaped arrays (as read from files), checking ranks.
    ///
    /// Gates of rank 3 are scalar gates, rank 4 per-channel.
    #[allow(clippy::too_many_arguments)]
    pub fn from_dyn(
        q: ArrayD<f64>,
        k: ArrayD<f64>,
        v: ArrayD<f64>,
        g: ArrayD<f64>,
        h0: Option<ArrayD<f64>>,
        do_: Option<ArrayD<f64>>,
        dht: Option<ArrayD<f64>>,
        cu_seqlens: Option<Vec<i64>>,
        scale: Option<f64>,
    ) -> Result<Problem> {
        let q = to4("q", q, "[B, T, H, K]")?;
        let k = to4("k", k, "[B, T, H, K]")?;
        let v = to4("v", v, "[B, T, H, V]")?;
        let g = match g.ndim() {
            3 => Gates::Scalar(g.into_dimensionality().expect("rank checked")),
            4 => Gates::PerChannel(g.into_dimensionality().expect("rank checked")),
            _ => {
                return Err(GlaError::Shape {
                    tensor: "g".into(),
                    got: g.shape().to_vec(),
                    expected: "[B, T, H, K] (per-channel) or [B, T, H] (scalar)".into(),
                })
            }
        };
        let h0 = h0.map(|a| to4("h0", a, "[N, H, K, V]")).transpose()?;
        let do_ = do_.map(|a| to4("do", a, "[B, T, H, V]")).transpose()?;
        let dht = dht.map(|a| to4("dht", a, "[N, H, K, V]")).transpose()?;
        Problem::builder(q, k, v, g)
            .h0_opt(h0)
            .do_opt(do_)
            .dht_opt(dht)
            .cu_seqlens_opt(cu_seqlens)
            .scale_opt(scale)
            .build()
    }

    /// Sizes.
    pub fn dims(&self) -> Dims {
        self.dims
    }
    /// Queries `[B, T, H, K]`.
    pub fn q(&self) -> &Array4<f64> {
        &self.q
    }
    /// Keys `[B, T, H, K]`.
    pub fn k(&self) -> &Array4<f64> {
        &self.k
    }
    /// Values `[B, T, H, V]`.
    pub fn v(&self) -> &Array4<f64> {
        &self.v
    }
    /// Log gates as `[B, T, H, Kg]` with Kg = K (per-channel) or 1 (scalar).
    pub fn g(&self) -> &Array4<f64> {
        &self.g
    }
    /// Log gates in the user's layout (`[B,T,H,K]` or `[B,T,H]`).
    pub fn gates(&self) -> Gates {
        match self.gate_kind {
            GateKind::PerChannel => Gates::PerChannel(self.g.clone()),
            GateKind::Scalar => Gates::Scalar(self.g.index_axis(Axis(3), 0).to_owned()),
        }
    }
    /// Per-channel or scalar gates.
    pub fn gate_kind(&self) -> GateKind {
        self.gate_kind
    }
    /// Log gate acting on key channel `d` at (b, t, h).
    #[inline]
    pub fn g_at(&self, b: usize, t: usize, h: usize, d: usize) -> f64 {
        match self.gate_kind {
            GateKind::PerChannel => self.g[[b, t, h, d]],
            GateKind::Scalar => self.g[[b, t, h, 0]],
        }
    }
    /// Initial state, if given.
    pub fn h0(&self) -> Option<&Array4<f64>> {
        self.h0.as_ref()
    }
    /// Scale applied to q.
    pub fn scale(&self) -> f64 {
        self.scale
    }
    /// Packed-sequence boundaries, if given.
    pub fn cu_seqlens(&self) -> Option<&[usize]> {
        self.cu_seqlens.as_deref()
    }
    /// Output gradient, if given.
    pub fn do_(&self) -> Option<&Array4<f64>> {
        self.do_.as_ref()
    }
    /// Final-state gradient, if given.
    pub fn dht(&self) -> Option<&Array4<f64>> {
        self.dht.as_ref()
    }
    /// True when `do` is present (the backward pass can run).
    pub fn has_backward(&self) -> bool {
        self.do_.is_some()
    }
    /// Error unless the backward seeds are present.
    pub fn require_backward(&self) -> Result<&Array4<f64>> {
        self.do_.as_ref().ok_or_else(|| {
            GlaError::Options("the backward pass needs the output gradient `do`".into())
        })
    }

    /// The independent sequences, in state order.
    pub fn sequences(&self) -> Vec<SeqSpan> {
        match &self.cu_seqlens {
            None => (0..self.dims.b)
                .map(|b| SeqSpan {
                    batch: b,
                    start: 0,
                    len: self.dims.t,
                    state: b,
                })
                .collect(),
            Some(cu) => (0..cu.len() - 1)
                .map(|n| SeqSpan {
                    batch: 0,
                    start: cu[n],
                    len: cu[n + 1] - cu[n],
                    state: n,
                })
                .collect(),
        }
    }

    /// Longest sequence length (for error-model accumulation lengths).
    pub fn max_seq_len(&self) -> usize {
        self.sequences().iter().map(|s| s.len).max().unwrap_or(0)
    }

    /// A copy with every input (q, k, v, g, h0, do, dht) rounded to `dtype`, so that a candidate
    /// computing in that dtype and the oracle consume the same values (docs/math.md §8).
    ///
    /// Fails if a value overflows the format (e.g. |x| > 65504 in f16), since the rounded input
    /// would no longer be a valid problem. Gates rounded to `dtype` stay `<= 0`.
    pub fn rounded_to(&self, dtype: Dtype) -> Result<Problem> {
        let r = |a: &Array4<f64>| a.mapv(|x| dtype.round(x));
        let g = r(&self.g);
        let gates = match self.gate_kind {
            GateKind::PerChannel => Gates::PerChannel(g),
            GateKind::Scalar => Gates::Scalar(g.index_axis(Axis(3), 0).to_owned()),
        };
        let mut b = Problem::builder(r(&self.q), r(&self.k), r(&self.v), gates)
            .h0_opt(self.h0.as_ref().map(r))
            .do_opt(self.do_.as_ref().map(r))
            .dht_opt(self.dht.as_ref().map(r))
            .scale(self.scale);
        if let Some(cu) = &self.cu_seqlens {
            b = b.cu_seqlens(&cu.iter().map(|&x| x as i64).collect::<Vec<_>>());
        }
        b.build()
    }

    /// A copy with the backward seeds replaced.
    pub fn with_seeds(
        &self,
        do_: Option<Array4<f64>>,
        dht: Option<Array4<f64>>,
    ) -> Result<Problem> {
        let mut b = Problem::builder(self.q.clone(), self.k.clone(), self.v.clone(), self.gates())
            .h0_opt(self.h0.clone())
            .do_opt(do_)
            .dht_opt(dht)
            .scale(self.scale);
        if let Some(cu) = &self.cu_seqlens {
            b = b.cu_seqlens(&cu.iter().map(|&x| x as i64).collect::<Vec<_>>());
        }
        b.build()
    }
}

fn to4(name: &str, a: ArrayD<f64>, expected: &str) -> Result<Array4<f64>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality().map_err(|_| GlaError::Shape {
        tensor: name.into(),
        got: shape,
        expected: expected.into(),
    })
}
