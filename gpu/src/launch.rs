//! One kernel launch: the argument list (device addresses and scalars, in the kernel's parameter
//! order), the grid, the block, the dynamic shared memory (checked against the device's limit),
//! and errors named after the kernel. Forward and backward launch every kernel through [`launch`].

use crate::buffers::DBuf;
use crate::device::gpu;
use crate::error::GpuError;
use crate::module::KernelModule;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg};

/// One kernel parameter, passed by value.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg {
    /// A device address (`const T*`, `T*`; 0 for a null pointer).
    Ptr(u64),
    /// An `int`.
    I32(i32),
    /// A `float`.
    F32(f32),
}

impl Arg {
    /// The address of a dtype buffer.
    pub fn buf(b: &DBuf, s: &CudaStream) -> Arg {
        Arg::Ptr(b.device_ptr(s))
    }

    /// The address of a typed buffer (f32 tensors, i32 tables).
    pub fn slice<T>(b: &CudaSlice<T>, s: &CudaStream) -> Arg {
        Arg::Ptr(b.device_ptr(s).0)
    }

    /// The address of an optional f32 buffer, or a null pointer.
    pub fn opt(b: Option<&CudaSlice<f32>>, s: &CudaStream) -> Arg {
        b.map_or(Arg::Ptr(0), |b| Arg::slice(b, s))
    }

    /// A size or count as an `int`.
    pub fn int(x: usize) -> Arg {
        Arg::I32(x as i32)
    }
}

/// Grid, block and dynamic shared memory of one launch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// Blocks in x, y, z.
    pub grid: (usize, usize, usize),
    /// Threads per block (one dimension).
    pub threads: usize,
    /// Dynamic shared memory per block, in bytes.
    pub smem: usize,
}

/// Launch kernel `name` of `module` on the process stream (asynchronous: errors of the launch
/// itself are returned, errors during execution surface at the next synchronisation).
///
/// Fails with [`GpuError::Unsupported`] if `shape.smem` exceeds the device's opt-in limit.
pub(crate) fn launch(
    module: &KernelModule,
    name: &str,
    shape: Shape,
    args: &[Arg],
) -> Result<(), GpuError> {
    let g = gpu()?;
    if shape.smem > g.max_smem_optin as usize {
        return Err(GpuError::Unsupported(format!(
            "needs {} B of shared memory per block, the device allows {}",
            shape.smem, g.max_smem_optin
        )));
    }
    let f = module.func(name)?;
    let cfg = LaunchConfig {
        grid_dim: (
            shape.grid.0 as u32,
            shape.grid.1 as u32,
            shape.grid.2 as u32,
        ),
        block_dim: (shape.threads as u32, 1, 1),
        shared_mem_bytes: shape.smem as u32,
    };
    let mut b = g.stream.launch_builder(f);
    for a in args {
        match a {
            Arg::Ptr(p) => b.arg(p),
            Arg::I32(x) => b.arg(x),
            Arg::F32(x) => b.arg(x),
        };
    }
    // SAFETY: `args` lists the kernel's parameters in order and with their C types (u64 for
    // pointers, int, float); the buffers behind the addresses outlive the launch (they belong to
    // the caller's problem and outputs, which are only dropped after a synchronisation).
    unsafe { b.launch(cfg) }.map_err(|e| GpuError::cuda(format!("launch {name}"), e))?;
    Ok(())
}
