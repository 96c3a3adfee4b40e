//! # gla-gpu
//!
//! Chunked Gated Linear Attention (GLA) on NVIDIA GPUs: CUDA kernels in `gpu/kernels/*.cu` (with
//! the shared prelude `gpu/kernels/gla_common.cuh`), embedded in the binary and compiled at run
//! time by NVRTC for the device's architecture (once per process), driven through cudarc with
//! dynamic loading (the crate builds and its non-GPU parts run on machines without CUDA).
//!
//! [`forward`] and [`backward`] (dq, dk, dv, dg, dh0 from `do` and optional `dht`, docs/math.md
//! §4, with the rounding plan [`backward_rounding_plan`]) return the same
//! [`gla_reference::Solution`] as the CPU references. The forward pass follows the chunked
//! algorithm with secondary chunking of docs/math.md §3 (chunk 64, sub-chunk 16), per-channel and
//! scalar gates, `h0` / `hT` in f32, packed variable-length sequences, any T, K and V in
//! {64, 128, 256}. bf16 / f16 inputs use tensor cores (`mma.sync.m16n8k16`, f32 accumulation);
//! f32 inputs use true f32 arithmetic unless [`Precision::Tf32`] is chosen. Every exponent
//! reaching `exp2` is `<= 0` and `-inf` gates (alpha = 0) are exact (reset-aware chunk-local
//! cumsums).
//!
//! The backward pass ([`backward`], [`DeviceBwdProblem`]) follows docs/math.md §4: chunk states
//! stored by the forward, state gradients swept in reverse, then dq, dk, dv and the gate gradient dg
//! (per-channel and scalar gates, in the form [`GpuOptions::dg_form`] selects) and dh0,
//! deterministic (no atomics), with the rounding points declared by [`backward_rounding_plan`].
//!
//! Modules, each one concept: `options` (what the kernels support and how they round),
//! [`kernels`] (the CUDA sources and their NVRTC compilation), `ptx_cache` (the optional on-disk
//! PTX cache, `GLA_PTX_CACHE`), `device` (the process-wide
//! context and stream), `module` (compiled modules loaded once), `buffers` (device buffers and
//! host copies), `launch` (one launch: arguments, grid, shared memory), `forward` and `backward`
//! (device problems and their launches), [`bench`](mod@bench) (timings).
//!
//! ```no_run
//! match gla_gpu::available() {
//!     Ok(info) => println!("{} ({})", info.name, info.arch),
//!     Err(why) => println!("no GPU: {why}"),
//! }
//! ```
#![warn(missing_docs)]

mod backward;
pub mod bench;
mod buffers;
mod device;
mod error;
mod forward;
pub mod kernels;
mod launch;
mod module;
mod options;
mod ptx_cache;

pub use backward::{backward, DeviceBwdOutputs, DeviceBwdProblem};
pub use buffers::DBuf;
pub use device::DeviceInfo;
pub use error::GpuError;
pub use forward::{forward, DeviceOutputs, DeviceProblem, STATE_LAYOUTS};
pub use kernels::BWD_KERNELS;
pub use options::{
    backward_rounding_plan, check_supported, rounding_plan, GpuOptions, Precision, SUPPORTED_DIMS,
};

/// The device the kernels would run on, or the reason there is none (no driver library, no
/// device, compute capability below 8.0, or a forward kernel that NVRTC rejected). Never panics.
pub fn available() -> Result<DeviceInfo, String> {
    let g = device::gpu().map_err(|e| e.to_string())?;
    module::forward().map_err(|e| e.to_string())?;
    Ok(g.info.clone())
}

/// Per-kernel resource usage on the current device (registers per thread, local-memory bytes
/// per thread, static shared bytes): `(kernel, description)`, forward then backward kernels
/// (compiling the backward module if needed). Empty without a GPU.
pub fn kernel_report() -> Vec<(String, String)> {
    [module::forward(), module::backward()]
        .into_iter()
        .flat_map(|m| m.map(|m| m.report()).unwrap_or_default())
        .collect()
}
