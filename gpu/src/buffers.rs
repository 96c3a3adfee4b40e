//! Device buffers and the host <-> device copies of gla-gpu: inputs rounded to the kernels' dtype
//! on upload, outputs allocated (optionally poisoned with NaN) and read back as f64.
//!
//! bf16 and f16 tensors live on the device as their 16-bit patterns ([`DBuf::U16`]), f32 tensors
//! as f32 ([`DBuf::F32`]); gates, states and state gradients are always f32 (`CudaSlice<f32>`).
//! cudarc cannot allocate 0 bytes, so an empty tensor gets a 1-element buffer.

use crate::error::GpuError;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use gla_reference::Dtype;
use ndarray::Array4;
use rayon::prelude::*;
use std::sync::Arc;

/// A device buffer of the input dtype (16-bit types are stored as their bit patterns).
pub enum DBuf {
    /// bf16 or f16 bits.
    U16(CudaSlice<u16>),
    /// f32 values.
    F32(CudaSlice<f32>),
}

/// The bit pattern of a 16-bit NaN (valid for bf16 and f16) that poisoned buffers hold.
const NAN_U16: u16 = 0x7fc1;

/// A host value that can be stored in a [`DBuf`]: rounded once, to nearest even, to the dtype.
pub(crate) trait HostValue: Copy + Send + Sync {
    /// The value rounded to f32.
    fn to_f32(self) -> f32;
    /// The bit pattern of the value rounded to bf16 (`dtype = Bf16`) or f16 (otherwise).
    fn to_bits(self, dtype: Dtype) -> u16;
}

impl HostValue for f64 {
    fn to_f32(self) -> f32 {
        self as f32
    }
    fn to_bits(self, dtype: Dtype) -> u16 {
        match dtype {
            Dtype::Bf16 => half::bf16::from_f64(self).to_bits(),
            _ => half::f16::from_f64(self).to_bits(),
        }
    }
}

impl HostValue for f32 {
    fn to_f32(self) -> f32 {
        self
    }
    fn to_bits(self, dtype: Dtype) -> u16 {
        match dtype {
            Dtype::Bf16 => half::bf16::from_f32(self).to_bits(),
            _ => half::f16::from_f32(self).to_bits(),
        }
    }
}

fn bits_to_f64(dtype: Dtype, x: u16) -> f64 {
    match dtype {
        Dtype::Bf16 => half::bf16::from_bits(x).to_f64(),
        _ => half::f16::from_bits(x).to_f64(),
    }
}

/// Copy `v` to the device (a 1-element zero buffer if `v` is empty).
fn htod<T: cudarc::driver::DeviceRepr + Default + Copy>(
    s: &Arc<CudaStream>,
    v: &[T],
    what: &str,
) -> Result<CudaSlice<T>, GpuError> {
    let v = if v.is_empty() { &[T::default()][..] } else { v };
    s.clone_htod(v)
        .map_err(|e| GpuError::cuda(format!("upload {what}"), e))
}

impl DBuf {
    /// Upload `v` rounded to `dtype` (`F32`, or bf16 / f16 bits for `Bf16` / `F16`).
    pub(crate) fn upload<X: HostValue>(
        s: &Arc<CudaStream>,
        dtype: Dtype,
        v: &[X],
        what: &str,
    ) -> Result<DBuf, GpuError> {
        Ok(match dtype {
            Dtype::F32 => DBuf::F32(htod(
                s,
                &v.par_iter().map(|&x| x.to_f32()).collect::<Vec<_>>(),
                what,
            )?),
            d => DBuf::U16(htod(
                s,
                &v.par_iter().map(|&x| x.to_bits(d)).collect::<Vec<_>>(),
                what,
            )?),
        })
    }

    /// `n` elements of `dtype` (at least 1): NaN if `poison`, else zeros.
    pub(crate) fn alloc(
        s: &Arc<CudaStream>,
        dtype: Dtype,
        n: usize,
        poison: bool,
    ) -> Result<DBuf, GpuError> {
        let n = n.max(1);
        Ok(match dtype {
            Dtype::F32 => DBuf::F32(alloc_f32(s, n, poison)?),
            _ => DBuf::U16(if poison {
                s.clone_htod(&vec![NAN_U16; n])
                    .map_err(|e| GpuError::cuda("alloc", e))?
            } else {
                s.alloc_zeros::<u16>(n)
                    .map_err(|e| GpuError::cuda("alloc", e))?
            }),
        })
    }

    /// Number of elements.
    pub(crate) fn len(&self) -> usize {
        match self {
            DBuf::U16(s) => s.len(),
            DBuf::F32(s) => s.len(),
        }
    }

    /// Whether the buffer holds `dtype` (bf16 / f16 bits, or f32).
    pub(crate) fn holds(&self, dtype: Dtype) -> bool {
        matches!(
            (self, dtype),
            (DBuf::F32(_), Dtype::F32) | (DBuf::U16(_), Dtype::Bf16 | Dtype::F16)
        )
    }

    /// The device address (a kernel argument).
    pub(crate) fn device_ptr(&self, s: &CudaStream) -> u64 {
        match self {
            DBuf::U16(x) => x.device_ptr(s).0,
            DBuf::F32(x) => x.device_ptr(s).0,
        }
    }

    /// The first `n` elements as f64 (bits read as `dtype`); synchronises with the stream.
    pub(crate) fn download(
        &self,
        s: &Arc<CudaStream>,
        dtype: Dtype,
        n: usize,
        what: &str,
    ) -> Result<Vec<f64>, GpuError> {
        let err = |e| GpuError::cuda(format!("download {what}"), e);
        let mut v: Vec<f64> = match self {
            DBuf::F32(x) => s
                .clone_dtoh(x)
                .map_err(err)?
                .into_iter()
                .map(|x| x as f64)
                .collect(),
            DBuf::U16(x) => s
                .clone_dtoh(x)
                .map_err(err)?
                .into_iter()
                .map(|x| bits_to_f64(dtype, x))
                .collect(),
        };
        v.truncate(n);
        Ok(v)
    }
}

/// Upload f32 values as they are (a 1-element zero buffer if `v` is empty).
pub(crate) fn upload_f32(
    s: &Arc<CudaStream>,
    v: &[f32],
    what: &str,
) -> Result<CudaSlice<f32>, GpuError> {
    htod(s, v, what)
}

/// Upload `n` i32 values (chunk and sequence tables).
pub(crate) fn upload_i32(
    s: &Arc<CudaStream>,
    v: &[i32],
    what: &str,
) -> Result<CudaSlice<i32>, GpuError> {
    htod(s, v, what)
}

/// `n` f32 elements (at least 1): NaN if `poison`, else zeros.
pub(crate) fn alloc_f32(
    s: &Arc<CudaStream>,
    n: usize,
    poison: bool,
) -> Result<CudaSlice<f32>, GpuError> {
    let n = n.max(1);
    if poison {
        s.clone_htod(&vec![f32::NAN; n])
            .map_err(|e| GpuError::cuda("alloc", e))
    } else {
        s.alloc_zeros::<f32>(n)
            .map_err(|e| GpuError::cuda("alloc", e))
    }
}

/// The first `n` elements of an f32 buffer as f64; synchronises with the stream.
pub(crate) fn download_f32(
    s: &Arc<CudaStream>,
    x: &CudaSlice<f32>,
    n: usize,
    what: &str,
) -> Result<Vec<f64>, GpuError> {
    let mut v: Vec<f64> = s
        .clone_dtoh(x)
        .map_err(|e| GpuError::cuda(format!("download {what}"), e))?
        .into_iter()
        .map(|x| x as f64)
        .collect();
    v.truncate(n);
    Ok(v)
}

/// Host data as a 4-D array of `shape` (row-major).
pub(crate) fn array4(
    v: Vec<f64>,
    shape: (usize, usize, usize, usize),
    what: &str,
) -> Result<Array4<f64>, GpuError> {
    Array4::from_shape_vec(shape, v).map_err(|e| GpuError::cuda(format!("reshape {what}"), e))
}
