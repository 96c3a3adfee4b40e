//! Rounding plans: where a chunked GLA kernel rounds matrix-product operands to a lower-precision
//! format (bf16, fp16, tf32) while accumulating in f32 (docs/math.md §3, "Roundings"; section 8.1).
//!
//! A [`RoundingPlan`] is a plain struct of `Option<Dtype>` fields, one per rounding point of the
//! chunked algorithm ([`crate::chunked`]). `None` means "kept in the compute type" (f32 or f64);
//! `Some(dtype)` means "the value is stored in / fed to the product as `dtype`", which the CPU twin
//! emulates by rounding to nearest (ties to even) and widening back, exactly as a cast in a kernel
//! would. Accumulation always stays in the compute type.
//!
//! The notation follows docs/math.md: chunk p, chunk-local inclusive cumulative log gate `Gl`, `Gl_last`
//! its value at the chunk's last valid row, chunk state `H_p` (state before chunk p), its gradient
//! `dH_p` (gradient w.r.t. the state after chunk p), intra-chunk attention `A`, sub-chunk anchors.
//!
//! A GPU kernel declares the plan it follows with this type, so that its CPU twin rounds at the
//! same places and the error model counts the same stages ([`RoundingPlan::stages`]).
//!
//! ```
//! use gla_reference::{rounding::RoundingPlan, Dtype};
//! // fla's bf16 chunk forward (docs/math.md §3), plus tensor-core rounded off-diagonal sub-blocks:
//! let plan = RoundingPlan::kernel_default(Dtype::Bf16)
//!     .offdiag_q(Some(Dtype::Bf16))
//!     .offdiag_k(Some(Dtype::Bf16));
//! assert_eq!(plan.q_decay, Some(Dtype::Bf16));
//! assert!(plan.stages().len() >= 5);
//! assert!(RoundingPlan::none().is_none());
//! ```

use crate::dtype::Dtype;

/// Rounding points of the chunked GLA algorithm; each field is `None` (kept in the compute type)
/// or `Some(dtype)` (rounded to `dtype` at that point, f32/f64 accumulation elsewhere).
///
/// Forward-pass points (also reused by the backward pass, which recomputes the same factors):
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct RoundingPlan {
    /// `q_i * exp(Gl_i)`: the decayed query, operand of the inter-chunk product `@ H_p` in the
    /// forward (`o_inter`) and of the state-gradient product `(q*exp(Gl))^T @ do` in the backward.
    pub q_decay: Option<Dtype>,
    /// `k_j * exp(Gl_last - Gl_j)`: the decayed key, operand of the state GEMM
    /// `H_{p+1} = Diag(exp(Gl_last)) H_p + (k*exp(Gl_last-Gl))^T @ V` and of `dv_inter`.
    pub k_decay: Option<Dtype>,
    /// `v` as an operand of `A @ V`, of the state GEMM, and of `dA = do @ v^T`.
    /// (Inputs are normally pre-rounded to the kernel dtype, making this a no-op.)
    pub v: Option<Dtype>,
    /// The stored chunk states `H_p` (forward snapshots), operand of `(q*exp(Gl)) @ H_p`.
    /// The running state accumulator itself stays in the compute type, as in fla's `chunk_fwd_h`.
    pub state: Option<Dtype>,
    /// The intra-chunk matrix `A` (computed in the compute type), rounded before `A @ V` and
    /// before `A^T @ do` (dv) in the backward.
    pub a: Option<Dtype>,
    /// The final output `o`.
    pub o: Option<Dtype>,
    /// Off-diagonal sub-block query factor `scale * Q_I * exp(Gl_I - a)` (anchor `a` = `Gl` at the
    /// first row of query sub-chunk I; factor <= 1 in magnitude times `|q|`), rounded before the
    /// sub-block product. In the backward the dq factor `K_J * exp(a - Gl_J)` reuses
    /// [`offdiag_k`](Self::offdiag_k) and the dk factor `Q_I * exp(Gl_I - b)` (anchor `b` = last
    /// valid row of key sub-chunk J) reuses this field.
    pub offdiag_q: Option<Dtype>,
    /// Off-diagonal sub-block key factor `K_J * exp(a - Gl_J)` (<= 1 times `|k|`), rounded before
    /// the sub-block product.
    pub offdiag_k: Option<Dtype>,
    /// Diagonal sub-blocks evaluated through a low-precision product: the query-side factor
    /// `q_i * exp(Gl_i - Gl_j)` (exponent <= 0) of entry (i, j), j <= i, is rounded before its dot
    /// product with `k_j`; the backward rounds the matching factors `k_j * exp(Gl_i - Gl_j)` (dq)
    /// and `q_i * exp(Gl_i - Gl_j)` (dk). A factorization through a reference row inside the
    /// sub-chunk (`q*exp(Gl_i - b)` times `k*exp(b - Gl_j)` with `j > b`) needs `exp` of a positive
    /// exponent (spec P2) and is deliberately not expressible.
    pub diag: Option<Dtype>,
    /// Backward: the output gradient `do` as a GEMM operand (no-op for pre-rounded inputs).
    pub do_: Option<Dtype>,
    /// Backward: the recomputed chunk states `H_p` used by dq_inter and the dg state term
    /// (fla recomputes them in f32: `None`).
    pub bwd_state: Option<Dtype>,
    /// Backward: the stored state-gradient snapshots `dH_p`, operands of dv_inter, dk_inter and
    /// the dg state term.
    pub dstate: Option<Dtype>,
    /// Backward: `dA = scale * do @ v^T` (masked to j <= i) before its products with the
    /// decayed keys (dq) and queries (dk).
    pub da: Option<Dtype>,
    /// Backward: the final gradients dq, dk, dv, dg (cast to the input dtype on return).
    /// dh0 and ht stay in the compute type (fla keeps states in f32).
    pub grads: Option<Dtype>,
}

macro_rules! setter {
    ($name:ident) => {
        #[doc = concat!("Builder-style setter for [`", stringify!($name), "`](Self::", stringify!($name), ").")]
        #[must_use]
        pub fn $name(mut self, dtype: Option<Dtype>) -> Self {
            self.$name = dtype;
            self
        }
    };
}

impl RoundingPlan {
    /// No rounding anywhere: the plain compute-type algorithm.
    pub fn none() -> Self {
        Self::default()
    }

    /// The spec's default plan for a kernel whose inputs are `dtype` (section 3 "Roundings" and
    /// 8.1): `q*exp(Gl)`, `k*exp(Gl_last - Gl)`, the stored states `H_p`, `A` before `A@V`, the final
    /// output `o`, and (backward) the final gradients dq, dk, dv, dg. Everything else (off-diagonal
    /// factors, diagonal blocks, dA, state gradients) stays f32, as in fla with
    /// `TRITON_F32_DEFAULT='ieee'`.
    ///
    /// ```
    /// use gla_reference::{rounding::RoundingPlan, Dtype};
    /// let p = RoundingPlan::kernel_default(Dtype::Bf16);
    /// assert_eq!((p.state, p.a, p.o), (Some(Dtype::Bf16), Some(Dtype::Bf16), Some(Dtype::Bf16)));
    /// assert_eq!(p.offdiag_q, None);
    /// ```
    pub fn kernel_default(dtype: Dtype) -> Self {
        let d = Some(dtype);
        Self {
            q_decay: d,
            k_decay: d,
            state: d,
            a: d,
            o: d,
            grads: d,
            ..Self::none()
        }
    }

    /// True when nothing is rounded.
    pub fn is_none(&self) -> bool {
        *self == Self::none()
    }

    setter!(q_decay);
    setter!(k_decay);
    setter!(v);
    setter!(state);
    setter!(a);
    setter!(o);
    setter!(offdiag_q);
    setter!(offdiag_k);
    setter!(diag);
    setter!(do_);
    setter!(bwd_state);
    setter!(dstate);
    setter!(da);
    setter!(grads);

    /// Every rounding point as `(name, dtype)`, in declaration order.
    pub fn points(&self) -> [(&'static str, Option<Dtype>); 14] {
        [
            ("q_decay", self.q_decay),
            ("k_decay", self.k_decay),
            ("v", self.v),
            ("state", self.state),
            ("a", self.a),
            ("o", self.o),
            ("offdiag_q", self.offdiag_q),
            ("offdiag_k", self.offdiag_k),
            ("diag", self.diag),
            ("do", self.do_),
            ("bwd_state", self.bwd_state),
            ("dstate", self.dstate),
            ("da", self.da),
            ("grads", self.grads),
        ]
    }

    /// The rounding points that are active (`Some`), as `(name, dtype)`.
    pub fn stages(&self) -> Vec<(&'static str, Dtype)> {
        self.points()
            .into_iter()
            .filter_map(|(n, d)| d.map(|d| (n, d)))
            .collect()
    }

    /// The rounding stages that judge the forward outputs (o, ht), as dtypes for
    /// `bounds::BoundSpec::with_stages`: every active forward point (all but `do_`, `bwd_state`,
    /// `dstate`, `da`, `grads`) whose dtype is coarser than f32.
    ///
    /// ```
    /// use gla_reference::{rounding::RoundingPlan, Dtype};
    /// let p = RoundingPlan::kernel_default(Dtype::Bf16);
    /// assert_eq!(p.forward_stages(), vec![Dtype::Bf16; 5]);
    /// assert_eq!(p.backward_stages().len(), 6);
    /// assert!(RoundingPlan::none().q_decay(Some(Dtype::F32)).forward_stages().is_empty());
    /// ```
    pub fn forward_stages(&self) -> Vec<Dtype> {
        self.points()[..9]
            .iter()
            .filter_map(|(_, d)| d.filter(|d| low_u(*d) > 0.0))
            .collect()
    }

    /// The rounding stages that judge the backward outputs (every active point coarser than f32).
    pub fn backward_stages(&self) -> Vec<Dtype> {
        self.points()
            .iter()
            .filter_map(|(_, d)| d.filter(|d| low_u(*d) > 0.0))
            .collect()
    }

    /// Sum of the unit roundoffs of the active forward rounding points (docs/math.md §8.1 `sum_s u_s`, the
    /// forward outputs o and ht): every field except the backward-only ones.
    /// Points at f32/f64 count 0 (they do not round below the accumulation format).
    ///
    /// ```
    /// use gla_reference::{rounding::RoundingPlan, Dtype};
    /// let p = RoundingPlan::kernel_default(Dtype::Bf16);
    /// assert_eq!(p.forward_u_sum(), 5.0 * 2f64.powi(-8));
    /// ```
    pub fn forward_u_sum(&self) -> f64 {
        self.points()[..9]
            .iter()
            .map(|(_, d)| d.map_or(0.0, low_u))
            .sum()
    }

    /// Sum of the unit roundoffs of every active rounding point (the backward pass recomputes the
    /// forward factors, so its gradients pass through all of them).
    pub fn backward_u_sum(&self) -> f64 {
        self.points()
            .iter()
            .map(|(_, d)| d.map_or(0.0, low_u))
            .sum()
    }
}

/// Unit roundoff of a rounding stage; f32/f64 count 0 (they do not round below the f32
/// accumulation the model already charges with `u_acc`).
fn low_u(d: Dtype) -> f64 {
    match d {
        Dtype::F64 | Dtype::F32 => 0.0,
        other => other.unit_roundoff(),
    }
}

/// Round one scalar (no-op for `None`).
#[inline(always)]
pub(crate) fn round1<T: crate::Real>(x: T, dtype: Option<Dtype>) -> T {
    match dtype {
        None => x,
        Some(dt) => x.round_to(dt),
    }
}
