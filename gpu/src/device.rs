//! The process-wide CUDA context and stream, created once on first use, and what the device is.

use crate::error::GpuError;
use crate::kernels;
use cudarc::driver::{sys, CudaContext, CudaStream};
use std::sync::{Arc, OnceLock};

/// What [`crate::available`] reports about the device the kernels run on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Device name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability (major, minor).
    pub compute_capability: (i32, i32),
    /// The NVRTC target the kernels were compiled for, e.g. "sm_90".
    pub arch: String,
    /// Number of streaming multiprocessors.
    pub sm_count: i32,
    /// Total device memory in bytes.
    pub total_mem: usize,
}

/// The device (ordinal 0), its context and the one stream every launch and copy uses, in order.
pub(crate) struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    pub info: DeviceInfo,
    /// Dynamic shared memory a block may opt into, in bytes.
    pub max_smem_optin: i32,
}

static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();

/// The process-wide GPU, initialised once; the error says why there is none.
pub(crate) fn gpu() -> Result<&'static Gpu, GpuError> {
    GPU.get_or_init(|| match std::panic::catch_unwind(init) {
        Ok(r) => r,
        Err(_) => Err(GpuError::NoDevice(
            "CUDA initialisation panicked (driver library missing?)".into(),
        )),
    })
    .as_ref()
    .map_err(|e| e.clone())
}

fn init() -> Result<Gpu, GpuError> {
    if !unsafe { sys::is_culib_present() } {
        return Err(GpuError::NoDevice(
            "libcuda (the NVIDIA driver library) is not installed".into(),
        ));
    }
    let n = CudaContext::device_count()
        .map_err(|e| GpuError::NoDevice(format!("cuInit/cuDeviceGetCount failed: {e:?}")))?;
    if n < 1 {
        return Err(GpuError::NoDevice(
            "the driver reports 0 CUDA devices".into(),
        ));
    }
    let ctx = CudaContext::new(0)
        .map_err(|e| GpuError::NoDevice(format!("cannot create a context on device 0: {e:?}")))?;
    // One stream, used in order: cudarc's per-buffer event tracking is not needed.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.default_stream();
    let cc = ctx
        .compute_capability()
        .map_err(|e| GpuError::cuda("compute capability", e))?;
    if cc.0 < 8 {
        return Err(GpuError::NoDevice(format!(
            "compute capability {}.{} < 8.0 (the kernels need mma.sync bf16)",
            cc.0, cc.1
        )));
    }
    let name = ctx.name().map_err(|e| GpuError::cuda("device name", e))?;
    let sm_count = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
        .map_err(|e| GpuError::cuda("SM count", e))?;
    let max_smem_optin = ctx
        .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN)
        .map_err(|e| GpuError::cuda("shared memory limit", e))?;
    let total_mem = ctx
        .total_mem()
        .map_err(|e| GpuError::cuda("total memory", e))?;
    Ok(Gpu {
        ctx,
        stream,
        info: DeviceInfo {
            name,
            compute_capability: cc,
            arch: kernels::arch_name(cc.0, cc.1),
            sm_count,
            total_mem,
        },
        max_smem_optin,
    })
}
