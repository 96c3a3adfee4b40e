//! What the kernels support and how they round: [`GpuOptions`] (dtype, precision, chunk sizes,
//! gate-gradient form), the shapes they accept ([`check_supported`]), and the rounding plans their
//! CPU twins follow ([`rounding_plan`], [`backward_rounding_plan`]).

use crate::error::GpuError;
use gla_reference::bounds::DgForm;
use gla_reference::rounding::RoundingPlan;
use gla_reference::{Dims, Dtype, Problem};

/// Arithmetic of the f32 path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// The dtype's own arithmetic: bf16/f16 operands on tensor cores with f32 accumulation; f32
    /// inputs in true IEEE f32 (FFMA, no TF32).
    #[default]
    Native,
    /// f32 inputs with every matrix-product operand rounded to TF32 (explicit opt-in only).
    Tf32,
}

/// Options of the GPU kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuOptions {
    /// Input / compute type of q, k, v, o: `Bf16`, `F16` or `F32`.
    pub dtype: Dtype,
    /// `Native` or `Tf32` (only with `dtype = F32`).
    pub precision: Precision,
    /// Chunk size C (only 64 is supported).
    pub chunk: usize,
    /// Sub-chunk size c (only 16 is supported).
    pub sub_chunk: usize,
    /// Gate-gradient algorithm of the backward (default [`DgForm::ReverseCumsum`], docs/math.md
    /// §4, judged against `M_dg`). [`DgForm::Local`] evaluates `alpha_t * rowsum(S_{t-1} * dS_t)`
    /// chunkwise as plain sums of terms that all carry `alpha_t`: accurate relative to
    /// `M_dg_local` also where `alpha` is tiny and the reverse sum cancels. dv and dh0 are bitwise
    /// the same either way; dq and dk are not: the default kernels run their intra-chunk products
    /// on tensor cores, the local-form kernels in f32 FFMA (same rounding points, see
    /// [`backward_rounding_plan`]). The forward ignores it.
    pub dg_form: DgForm,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            dtype: Dtype::Bf16,
            precision: Precision::Native,
            chunk: 64,
            sub_chunk: 16,
            dg_form: DgForm::ReverseCumsum,
        }
    }
}

impl GpuOptions {
    /// Options for `dtype` with the defaults otherwise.
    pub fn new(dtype: Dtype) -> Self {
        GpuOptions {
            dtype,
            ..Default::default()
        }
    }

    /// Check the options (dtype, precision, chunk sizes).
    pub fn validate(&self) -> Result<(), GpuError> {
        match self.dtype {
            Dtype::Bf16 | Dtype::F16 | Dtype::F32 => {}
            d => {
                return Err(GpuError::Unsupported(format!(
                    "dtype {d:?}: the kernels take Bf16, F16 or F32"
                )))
            }
        }
        if self.precision == Precision::Tf32 && self.dtype != Dtype::F32 {
            return Err(GpuError::Unsupported(
                "Precision::Tf32 applies to dtype F32 only".into(),
            ));
        }
        if self.chunk != 64 || self.sub_chunk != 16 {
            return Err(GpuError::Unsupported(format!(
                "chunk {} / sub-chunk {}: the kernels are built for chunk 64, sub-chunk 16",
                self.chunk, self.sub_chunk
            )));
        }
        Ok(())
    }
}

/// The rounding plan the kernels follow for `opts` (the CPU twin
/// `gla_reference::chunked::forward::<f32>` with this plan rounds at the same points).
///
/// bf16 / f16: `q*exp(Gl)`, `k*exp(Gl_last - Gl)`, the state snapshot `H_p` (operand of
/// `(q*exp(Gl)) @ H_p`), `A` before `A @ V`, and `o` are rounded to the dtype (fla's plan), and
/// so are the factors of `A`'s off-diagonal sub-blocks, `scale * q * exp(Gl - a)` and
/// `k * exp(a - Gl)` (`offdiag_q`, `offdiag_k`: tensor-core operands); the diagonal blocks of `A`
/// are f32. f32: nothing is rounded. f32 + TF32: every product operand of the state and output
/// kernel (those five and `v`) is rounded to TF32; `A` (f32 FFMA) and `o` stay f32.
///
/// ```
/// use gla_gpu::{rounding_plan, GpuOptions};
/// use gla_reference::{rounding::RoundingPlan, Dtype};
/// let bf16 = Some(Dtype::Bf16);
/// assert_eq!(
///     rounding_plan(&GpuOptions::new(Dtype::Bf16)),
///     RoundingPlan::kernel_default(Dtype::Bf16).offdiag_q(bf16).offdiag_k(bf16)
/// );
/// assert!(rounding_plan(&GpuOptions::new(Dtype::F32)).is_none());
/// ```
pub fn rounding_plan(opts: &GpuOptions) -> RoundingPlan {
    match (opts.dtype, opts.precision) {
        (Dtype::F32, Precision::Tf32) => {
            let t = Some(Dtype::Tf32);
            RoundingPlan::none()
                .q_decay(t)
                .k_decay(t)
                .v(t)
                .state(t)
                .a(t)
        }
        (Dtype::F32, _) => RoundingPlan::none(),
        (d, _) => RoundingPlan::kernel_default(d)
            .offdiag_q(Some(d))
            .offdiag_k(Some(d)),
    }
}

/// Supported key / value head sizes.
pub const SUPPORTED_DIMS: [usize; 3] = [64, 128, 256];

/// Check that `p` is within what the kernels support under `opts`.
pub fn check_supported(p: &Problem, opts: &GpuOptions) -> Result<(), GpuError> {
    opts.validate()?;
    check_dims(&p.dims())
}

/// Check the head sizes (K and V in [`SUPPORTED_DIMS`]) and that every row index fits in 32 bits.
pub(crate) fn check_dims(d: &Dims) -> Result<(), GpuError> {
    if !SUPPORTED_DIMS.contains(&d.k) || !SUPPORTED_DIMS.contains(&d.v) {
        return Err(GpuError::Unsupported(format!(
            "K = {}, V = {}: the kernels support K and V in {:?}",
            d.k, d.v, SUPPORTED_DIMS
        )));
    }
    // Element offsets are 64-bit in every kernel (test `gpu_huge`: tensors past 2^31 elements
    // match their pieces bit for bit); rows, (row, head) pairs, time steps and chunk indices are
    // 32-bit ints (the chunk and sequence tables, the grid).
    if d.b * d.t * d.h > i32::MAX as usize {
        return Err(GpuError::Unsupported(format!(
            "B * T * H = {} (row, head) pairs: the kernels index them with 32-bit integers (at most {})",
            d.b * d.t * d.h,
            i32::MAX
        )));
    }
    Ok(())
}

/// The rounding plan the forward + backward kernels follow for `opts`: the CPU twin
/// `gla_reference::chunked::backward::<f32>` with this plan rounds at the same points.
///
/// bf16 / f16: the forward's points ([`rounding_plan`]: `q*exp(Gl)`, `k*exp(Gl_last - Gl)`, the
/// state snapshot for `o`, `A` and its off-diagonal factors, `o`, and the final dq, dk, dv, dg),
/// plus the chunk states `H_p` (`bwd_state`: the forward's state kernel stores the snapshot its
/// output product uses) and the state gradients `dH_p`
/// (`dstate`), which are stored in the input dtype and are tensor-core operands, for both
/// gate-gradient forms. `dA` (`da`) is not a rounding point: the intra-chunk products of dq and
/// dk take it as two 16-bit tensor-core terms `hi + lo` (`|dA - hi - lo| <= 2^-16 |dA|` in bf16,
/// below f32 accumulation noise at the bound's scale) on the off-diagonal sub-blocks and in f32
/// on the diagonal ones (their off-diagonal factors are the forward's rounded ones). `dh0` and
/// `hT` stay f32. f32: nothing is rounded. f32 + TF32: the forward's TF32 points plus `do`,
/// `H_p`, `dH_p` and `dA`; the gradients stay f32.
///
/// ```
/// use gla_gpu::{backward_rounding_plan, GpuOptions};
/// use gla_reference::{bounds::DgForm, Dtype};
/// let p = backward_rounding_plan(&GpuOptions::new(Dtype::Bf16));
/// assert_eq!((p.bwd_state, p.dstate, p.da), (Some(Dtype::Bf16), Some(Dtype::Bf16), None));
/// assert_eq!((p.offdiag_q, p.offdiag_k), (Some(Dtype::Bf16), Some(Dtype::Bf16)));
/// let local = GpuOptions { dg_form: DgForm::Local, ..GpuOptions::new(Dtype::Bf16) };
/// assert_eq!(backward_rounding_plan(&local), p);
/// assert!(backward_rounding_plan(&GpuOptions::new(Dtype::F32)).is_none());
/// ```
pub fn backward_rounding_plan(opts: &GpuOptions) -> RoundingPlan {
    let base = rounding_plan(opts);
    match (opts.dtype, opts.precision) {
        (Dtype::F32, Precision::Tf32) => {
            let t = Some(Dtype::Tf32);
            base.do_(t).bwd_state(t).dstate(t).da(t)
        }
        (Dtype::F32, _) => base,
        (d, _) => base.bwd_state(Some(d)).dstate(Some(d)),
    }
}
