//! The device-module loader: a kernel source compiled by NVRTC for the device's architecture,
//! loaded into the context with every entry point resolved, once per process and source.
//!
//! The forward module is loaded by [`crate::available`] (so that a kernel NVRTC rejects shows as
//! "no GPU" with the reason), the backward module on the first backward launch.

use crate::device::gpu;
use crate::error::GpuError;
use crate::kernels;
use cudarc::driver::{sys, CudaFunction, CudaModule};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// A loaded module and its entry points by name.
pub(crate) struct KernelModule {
    _module: Arc<CudaModule>,
    funcs: HashMap<&'static str, CudaFunction>,
}

impl KernelModule {
    /// Compile `src` (file name `name`) for the device, load it, and resolve `entry_points`, each
    /// allowed the device's whole opt-in dynamic shared memory.
    fn load(
        name: &str,
        src: &str,
        entry_points: &'static [&'static str],
    ) -> Result<KernelModule, GpuError> {
        let g = gpu()?;
        let arch = &g.info.arch;
        let ptx = kernels::compile(name, src, arch)?;
        let module = g
            .ctx
            .load_module(ptx)
            .map_err(|e| GpuError::cuda(format!("loading the {arch} module of {name}"), e))?;
        let mut funcs = HashMap::new();
        for &k in entry_points {
            let f = module
                .load_function(k)
                .map_err(|e| GpuError::cuda(format!("loading {k}"), e))?;
            f.set_attribute(
                sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                g.max_smem_optin,
            )
            .map_err(|e| GpuError::cuda(format!("shared-memory attribute of {k}"), e))?;
            funcs.insert(k, f);
        }
        Ok(KernelModule {
            _module: module,
            funcs,
        })
    }

    /// The entry point `name`.
    pub fn func(&self, name: &str) -> Result<&CudaFunction, GpuError> {
        self.funcs
            .get(name)
            .ok_or_else(|| GpuError::Compile(format!("kernel {name} not found")))
    }

    /// `(kernel, registers per thread, local-memory and static shared bytes)`, sorted by name.
    pub fn report(&self) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = self
            .funcs
            .iter()
            .map(|(n, f)| (n.to_string(), func_report(f)))
            .collect();
        v.sort();
        v
    }
}

/// Registers per thread, local-memory bytes per thread and static shared bytes of a kernel.
fn func_report(f: &CudaFunction) -> String {
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

fn cached(
    cell: &'static OnceLock<Result<KernelModule, GpuError>>,
    name: &str,
    src: &str,
    entry_points: &'static [&'static str],
) -> Result<&'static KernelModule, GpuError> {
    cell.get_or_init(|| KernelModule::load(name, src, entry_points))
        .as_ref()
        .map_err(|e| e.clone())
}

/// The forward kernels (gla_fwd.cu), loaded on first use.
pub(crate) fn forward() -> Result<&'static KernelModule, GpuError> {
    static FWD: OnceLock<Result<KernelModule, GpuError>> = OnceLock::new();
    cached(
        &FWD,
        "gla_fwd.cu",
        kernels::GLA_FWD_SRC,
        kernels::FWD_KERNELS,
    )
}

/// The backward kernels (gla_bwd.cu), loaded on first use.
pub(crate) fn backward() -> Result<&'static KernelModule, GpuError> {
    static BWD: OnceLock<Result<KernelModule, GpuError>> = OnceLock::new();
    cached(
        &BWD,
        "gla_bwd.cu",
        kernels::GLA_BWD_SRC,
        kernels::BWD_KERNELS,
    )
}
