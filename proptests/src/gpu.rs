//! The GPU candidates (`gla-gpu`): chunk 64 / sub-chunk 16 kernels with bf16, f16 or f32 inputs,
//! K and V in {64, 128, 256}, forward and backward (`gla_gpu::forward` / `gla_gpu::backward`).
//!
//! On a machine without a usable GPU ([`available`] false) the candidates are left out of
//! [`Implementation::all_available`] and the GPU properties are skipped.

use crate::implementation::{unsupported, Implementation};
use gla_gpu::GpuOptions;
use gla_reference::bounds::DgForm;
use gla_reference::rounding::RoundingPlan;
use gla_reference::{Dtype, Problem, Result, Solution};
use std::sync::OnceLock;

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

/// The GPU candidates: one per input dtype the kernels take (reverse-sum dg), and bf16 with the
/// local-form dg.
pub fn candidates() -> Vec<Implementation> {
    vec![
        Implementation::gpu(Dtype::Bf16),
        Implementation::gpu(Dtype::F16),
        Implementation::gpu(Dtype::F32),
        Implementation::gpu(Dtype::Bf16).with_local_dg(),
    ]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::implementation::{Compute, Round};

    #[test]
    fn twins_follow_the_gpu_plans() {
        // pure data: needs no GPU
        for d in [Dtype::Bf16, Dtype::F16, Dtype::F32] {
            let gpu = Implementation::gpu(d);
            let twin = gpu.cpu_twin().expect("twin");
            assert_eq!(twin.plan(), gpu.plan(), "{d:?}");
            assert!(matches!(
                twin,
                Implementation::Chunked {
                    compute: Compute::F32,
                    ..
                }
            ));
            // the forward points of the backward plan are the forward kernels' plan, and the
            // bf16 / f16 training plans add exactly the backward's stored states and state
            // gradients to the forward twin's plan
            let fwd = gla_gpu::rounding_plan(&GpuOptions::new(d));
            assert_eq!(plan(d).points()[..9], fwd.points()[..9], "{d:?}");
        }
        for (train, fwd, d) in [
            (Round::Bf16Train, Round::Bf16, Dtype::Bf16),
            (Round::F16Train, Round::F16, Dtype::F16),
        ] {
            assert_eq!(train.plan(), fwd.plan().bwd_state(Some(d)).dstate(Some(d)));
            assert_eq!(train.dtype(), Some(d));
        }
    }
}
