//! The process-wide CUDA context, stream and compiled module (created once, on first use).

use crate::error::GpuError;
use crate::kernels;
use cudarc::driver::{sys, CudaContext, CudaFunction, CudaModule, CudaStream};
use std::collections::HashMap;
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

/// The device, its stream and every kernel function.
/// Registers per thread, local-memory bytes per thread and static shared bytes of a kernel.
pub(crate) fn func_report(f: &CudaFunction) -> String {
    use sys::CUfunction_attribute_enum as A;
    let regs = f.get_attribute(A::CU_FUNC_ATTRIBUTE_NUM_REGS).unwrap_or(-1);
    let local = f
        .get_attribute(A::CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES)
        .unwrap_or(-1);
    let shared = f
        .get_attribute(A::CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES)
        .unwrap_or(-1);
    format!("{regs} regs, {local} B local, {shared} B static shared")
}

pub(crate) struct Gpu {
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    _module: Arc<CudaModule>,
    funcs: HashMap<&'static str, CudaFunction>,
    pub info: DeviceInfo,
    pub max_smem_optin: i32,
}

impl Gpu {
    pub fn kernel_report(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .funcs
            .iter()
            .map(|(n, f)| (n.to_string(), func_report(f)))
            .collect();
        v.sort();
        v
    }

    pub fn func(&self, name: &str) -> Result<&CudaFunction, GpuError> {
        self.funcs
            .get(name)
            .ok_or_else(|| GpuError::Compile(format!("kernel {name} not found")))
    }
}

static GPU: OnceLock<Result<Gpu, GpuError>> = OnceLock::new();

/// The process-wide GPU, initialised (context + NVRTC compile for the device's arch) once.
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
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
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
    let arch = kernels::arch_name(cc.0, cc.1);
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
    let ptx = kernels::compile("gla_fwd.cu", kernels::GLA_FWD_SRC, &arch)?;
    let module = ctx
        .load_module(ptx)
        .map_err(|e| GpuError::cuda(format!("loading the {arch} module"), e))?;
    let mut funcs = HashMap::new();
    for &k in kernels::FWD_KERNELS {
        let f = module
            .load_function(k)
            .map_err(|e| GpuError::cuda(format!("loading {k}"), e))?;
        f.set_attribute(
            sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            max_smem_optin,
        )
        .map_err(|e| GpuError::cuda(format!("shared-memory attribute of {k}"), e))?;
        funcs.insert(k, f);
    }
    Ok(Gpu {
        ctx,
        stream,
        _module: module,
        funcs,
        info: DeviceInfo {
            name,
            compute_capability: cc,
            arch,
            sm_count,
            total_mem,
        },
        max_smem_optin,
    })
}
