//! The GPU candidates (`gla-gpu`): chunk 64 / sub-chunk 16 kernels with bf16, f16 or f32 inputs,
//! K and V in {64, 128, 256}, forward and backward (`gla_gpu::forward` / `gla_gpu::backward`).
//!
//! On a machine without a usable GPU ([`available`] false) the candidates are left out of
//! [`Implementation::all_available`](crate::Implementation::all_available) and the GPU
//! properties are skipped. The list of GPU candidates is
//! [`Implementation::gpu_candidates`](crate::Implementation::gpu_candidates).

use gla_gpu::GpuOptions;
use gla_reference::bounds::DgForm;
use gla_reference::rounding::RoundingPlan;
use gla_reference::{Dtype, Problem, Result, Solution};
use std::sync::OnceLock;

/// A GPU error as the crate's error type: the candidate cannot run here.
fn unsupported(msg: impl std::fmt::Display) -> gla_reference::GlaError {
    gla_reference::GlaError::Unsupported(msg.to_string())
}

/// True when the GPU candidates can run on this machine (cached; `GLA_NO_GPU=1` forces false).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var("GLA_NO_GPU").is_ok_and(|v| !v.is_empty() && v != "0") {
            return false;
        }
        gla_gpu::available().is_ok()
    })
}

/// Why there is no GPU (None when there is one).
pub fn unavailable_reason() -> Option<String> {
    gla_gpu::available().err()
}

/// The rounding plan the GPU kernels declare for inputs in `dtype`: the backward's
/// (`gla_gpu::backward_rounding_plan`), whose forward points are the forward kernels' plan
/// (`gla_gpu::rounding_plan`).
pub fn plan(dtype: Dtype) -> RoundingPlan {
    gla_gpu::backward_rounding_plan(&GpuOptions::new(dtype))
}

/// Error unless the kernels support this (already rounded) problem (K, V, sizes).
pub fn check_supported(dtype: Dtype, p: &Problem) -> Result<()> {
    gla_gpu::check_supported(p, &GpuOptions::new(dtype)).map_err(unsupported)
}

/// Run the GPU kernels: the forward, or the forward and the backward (`backward = true`; the
/// problem must hold `do`).
pub fn solve(dtype: Dtype, dg_form: DgForm, p: &Problem, backward: bool) -> Result<Solution> {
    let o = GpuOptions {
        dg_form,
        ..GpuOptions::new(dtype)
    };
    if backward {
        gla_gpu::backward(p, &o).map_err(unsupported)
    } else {
        gla_gpu::forward(p, &o).map_err(unsupported)
    }
}
