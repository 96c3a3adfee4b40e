//! Forward pass: options, device buffers, launches and the host-array entry point.

use crate::device::{gpu, Gpu};
use crate::error::GpuError;
use cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use gla_reference::bounds::DgForm;
use gla_reference::rounding::RoundingPlan;
use gla_reference::{Dtype, GateKind, Problem, Solution};
use ndarray::Array4;

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
    /// Gate-gradient algorithm of the backward (default [`DgForm::ReverseCumsum`], spec section
    /// 4, judged against `M_dg`). [`DgForm::Local`] evaluates `alpha_t * rowsum(S_{t-1} * dS_t)`
    /// chunkwise as plain sums of terms that all carry `alpha_t`: accurate relative to
    /// `M_dg_local` also where `alpha` is tiny and the reverse sum cancels. dq, dk, dv, dh0 are
    /// bitwise the same either way. The forward ignores it.
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
/// `(q*exp(Gl)) @ H_p`), `A` before `A @ V`, and `o` are rounded to the dtype (fla's plan; the
/// off-diagonal sub-blocks and the diagonal blocks of `A` are f32). f32: nothing is rounded.
/// f32 + TF32: every product operand (those five and `v`) is rounded to TF32; `o` stays f32.
///
/// ```
/// use gla_gpu::{rounding_plan, GpuOptions};
/// use gla_reference::{rounding::RoundingPlan, Dtype};
/// assert_eq!(rounding_plan(&GpuOptions::new(Dtype::Bf16)), RoundingPlan::kernel_default(Dtype::Bf16));
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
        (d, _) => RoundingPlan::kernel_default(d),
    }
}

/// Supported key / value head sizes.
pub const SUPPORTED_DIMS: [usize; 3] = [64, 128, 256];

/// A device buffer of the input dtype (16-bit types are stored as their bit patterns).
pub enum DBuf {
    /// bf16 or f16 bits.
    U16(CudaSlice<u16>),
    /// f32 values.
    F32(CudaSlice<f32>),
}

impl DBuf {
    fn len(&self) -> usize {
        match self {
            DBuf::U16(s) => s.len(),
            DBuf::F32(s) => s.len(),
        }
    }
}

fn to_bits(dtype: Dtype, x: f64) -> u16 {
    match dtype {
        Dtype::Bf16 => half::bf16::from_f64(x).to_bits(),
        _ => half::f16::from_f64(x).to_bits(),
    }
}

fn from_bits(dtype: Dtype, x: u16) -> f64 {
    match dtype {
        Dtype::Bf16 => half::bf16::from_bits(x).to_f64(),
        _ => half::f16::from_bits(x).to_f64(),
    }
}

fn upload(g: &Gpu, dtype: Dtype, a: &Array4<f64>) -> Result<DBuf, GpuError> {
    let v: Vec<f64> = a.iter().copied().collect();
    upload_vec(g, dtype, &v)
}

fn upload_vec(g: &Gpu, dtype: Dtype, v: &[f64]) -> Result<DBuf, GpuError> {
    if v.is_empty() {
        // cudarc cannot allocate 0 bytes; keep a 1-element buffer
        return upload_vec(g, dtype, &[0.0]);
    }
    Ok(match dtype {
        Dtype::F32 => DBuf::F32(
            g.stream
                .clone_htod(&v.iter().map(|&x| x as f32).collect::<Vec<_>>())
                .map_err(|e| GpuError::cuda("upload", e))?,
        ),
        d => DBuf::U16(
            g.stream
                .clone_htod(&v.iter().map(|&x| to_bits(d, x)).collect::<Vec<_>>())
                .map_err(|e| GpuError::cuda("upload", e))?,
        ),
    })
}

fn alloc_buf(g: &Gpu, dtype: Dtype, n: usize, poison: bool) -> Result<DBuf, GpuError> {
    let n = n.max(1);
    Ok(match dtype {
        Dtype::F32 => DBuf::F32(if poison {
            g.stream
                .clone_htod(&vec![f32::NAN; n])
                .map_err(|e| GpuError::cuda("alloc", e))?
        } else {
            g.stream
                .alloc_zeros::<f32>(n)
                .map_err(|e| GpuError::cuda("alloc", e))?
        }),
        _ => DBuf::U16(if poison {
            g.stream
                .clone_htod(&vec![0x7fc1u16; n])
                .map_err(|e| GpuError::cuda("alloc", e))?
        } else {
            g.stream
                .alloc_zeros::<u16>(n)
                .map_err(|e| GpuError::cuda("alloc", e))?
        }),
    })
}

fn f32_buf(g: &Gpu, n: usize, poison: bool) -> Result<CudaSlice<f32>, GpuError> {
    let n = n.max(1);
    if poison {
        g.stream
            .clone_htod(&vec![f32::NAN; n])
            .map_err(|e| GpuError::cuda("alloc", e))
    } else {
        g.stream
            .alloc_zeros::<f32>(n)
            .map_err(|e| GpuError::cuda("alloc", e))
    }
}

/// A problem uploaded to the device once (for repeated launches, e.g. benchmarking).
pub struct DeviceProblem {
    /// Options the buffers were prepared for.
    pub opts: GpuOptions,
    /// Batch, time, heads, key and value sizes, number of sequences.
    pub dims: gla_reference::Dims,
    pub(crate) gate_cols: i32,
    pub(crate) scale: f32,
    pub(crate) q: DBuf,
    pub(crate) k: DBuf,
    pub(crate) v: DBuf,
    pub(crate) g: CudaSlice<f32>,
    pub(crate) h0: Option<CudaSlice<f32>>,
    pub(crate) chunks: CudaSlice<i32>,
    pub(crate) seqs: CudaSlice<i32>,
    pub(crate) num_chunks: usize,
    pub(crate) bv: usize,
    pub(crate) warps: usize,
}

/// Device outputs and intermediates of one forward launch.
pub struct DeviceOutputs {
    pub(crate) qg: DBuf,
    pub(crate) kgt: DBuf,
    pub(crate) a: DBuf,
    pub(crate) gamma: CudaSlice<f32>,
    /// Output o `[B, T, H, V]` in the input dtype.
    pub o: DBuf,
    /// Final states `[N, H, K, V]` f32.
    pub ht: CudaSlice<f32>,
}

/// Check that `p` is within what the kernels support under `opts`.
pub fn check_supported(p: &Problem, opts: &GpuOptions) -> Result<(), GpuError> {
    opts.validate()?;
    let d = p.dims();
    if !SUPPORTED_DIMS.contains(&d.k) || !SUPPORTED_DIMS.contains(&d.v) {
        return Err(GpuError::Unsupported(format!(
            "K = {}, V = {}: the kernels support K and V in {:?}",
            d.k, d.v, SUPPORTED_DIMS
        )));
    }
    if d.b * d.t * d.h >= (1usize << 31) / d.k.max(d.v) {
        return Err(GpuError::Unsupported(
            "problem too large for 32-bit row indices".into(),
        ));
    }
    Ok(())
}

impl DeviceProblem {
    /// Upload `p` (its inputs rounded to `opts.dtype`; gates to f32).
    pub fn upload(p: &Problem, opts: &GpuOptions) -> Result<DeviceProblem, GpuError> {
        check_supported(p, opts)?;
        let g = gpu()?;
        let dtype = opts.dtype;
        let gv: Vec<f32> = p.g().iter().map(|&x| x as f32).collect();
        let h0: Option<Vec<f32>> = p.h0().map(|h| h.iter().map(|&x| x as f32).collect());
        Self::assemble(
            p.dims(),
            p.gate_kind(),
            opts,
            upload(g, dtype, p.q())?,
            upload(g, dtype, p.k())?,
            upload(g, dtype, p.v())?,
            &gv,
            h0.as_deref(),
            p.sequences(),
            p.scale(),
        )
    }

    /// Upload raw f32 data (row-major, fla layouts; `g` per channel `[B,T,H,K]` or scalar
    /// `[B,T,H]`), one sequence per batch row. Values are rounded to `opts.dtype`.
    #[allow(clippy::too_many_arguments)]
    pub fn from_raw(
        dims: gla_reference::Dims,
        gate_kind: GateKind,
        opts: &GpuOptions,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        g: &[f32],
        h0: Option<&[f32]>,
        scale: f64,
    ) -> Result<DeviceProblem, GpuError> {
        opts.validate()?;
        let d = dims;
        if !SUPPORTED_DIMS.contains(&d.k) || !SUPPORTED_DIMS.contains(&d.v) {
            return Err(GpuError::Unsupported(format!(
                "K = {}, V = {}: supported {:?}",
                d.k, d.v, SUPPORTED_DIMS
            )));
        }
        let rows = d.b * d.t * d.h;
        let kg = if gate_kind == GateKind::Scalar {
            1
        } else {
            d.k
        };
        if q.len() != rows * d.k
            || k.len() != rows * d.k
            || v.len() != rows * d.v
            || g.len() != rows * kg
        {
            return Err(GpuError::Unsupported(
                "raw buffer sizes do not match the dims".into(),
            ));
        }
        let gp = gpu()?;
        let conv = |x: &[f32]| -> Result<DBuf, GpuError> {
            Ok(match opts.dtype {
                Dtype::F32 => DBuf::F32(
                    gp.stream
                        .clone_htod(x)
                        .map_err(|e| GpuError::cuda("upload", e))?,
                ),
                Dtype::Bf16 => DBuf::U16(
                    gp.stream
                        .clone_htod(
                            &x.iter()
                                .map(|&y| half::bf16::from_f32(y).to_bits())
                                .collect::<Vec<_>>(),
                        )
                        .map_err(|e| GpuError::cuda("upload", e))?,
                ),
                _ => DBuf::U16(
                    gp.stream
                        .clone_htod(
                            &x.iter()
                                .map(|&y| half::f16::from_f32(y).to_bits())
                                .collect::<Vec<_>>(),
                        )
                        .map_err(|e| GpuError::cuda("upload", e))?,
                ),
            })
        };
        let seqs = (0..d.b)
            .map(|b| gla_reference::SeqSpan {
                batch: b,
                start: 0,
                len: d.t,
                state: b,
            })
            .collect();
        Self::assemble(
            dims,
            gate_kind,
            opts,
            conv(q)?,
            conv(k)?,
            conv(v)?,
            g,
            h0,
            seqs,
            scale,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn assemble(
        d: gla_reference::Dims,
        gate_kind: GateKind,
        opts: &GpuOptions,
        q: DBuf,
        k: DBuf,
        v: DBuf,
        gv: &[f32],
        h0: Option<&[f32]>,
        sequences: Vec<gla_reference::SeqSpan>,
        scale: f64,
    ) -> Result<DeviceProblem, GpuError> {
        let g = gpu()?;
        let gate_cols = match gate_kind {
            GateKind::PerChannel => d.k,
            GateKind::Scalar => 1,
        };
        let gbuf = g
            .stream
            .clone_htod(if gv.is_empty() { &[0f32][..] } else { gv })
            .map_err(|e| GpuError::cuda("upload g", e))?;
        let h0 = match h0 {
            Some(h) => Some(
                g.stream
                    .clone_htod(h)
                    .map_err(|e| GpuError::cuda("upload h0", e))?,
            ),
            None => None,
        };
        let mut chunks = Vec::new();
        let mut seqs = Vec::new();
        for s in sequences {
            let c0 = chunks.len() / 4;
            let nch = s.len.div_ceil(64);
            for ci in 0..nch {
                chunks.extend_from_slice(&[
                    s.batch as i32,
                    (s.start + ci * 64) as i32,
                    (s.len - ci * 64).min(64) as i32,
                    0,
                ]);
            }
            seqs.extend_from_slice(&[
                s.batch as i32,
                s.start as i32,
                s.len as i32,
                c0 as i32,
                nch as i32,
                0,
            ]);
        }
        let num_chunks = chunks.len() / 4;
        if chunks.is_empty() {
            chunks.extend_from_slice(&[0; 4]);
        }
        let bv = default_value_block(opts, &d, g.info.sm_count as usize);
        Ok(DeviceProblem {
            opts: *opts,
            dims: d,
            gate_cols: gate_cols as i32,
            scale: scale as f32,
            q,
            k,
            v,
            g: gbuf,
            h0,
            chunks: g
                .stream
                .clone_htod(&chunks)
                .map_err(|e| GpuError::cuda("upload chunks", e))?,
            seqs: g
                .stream
                .clone_htod(&seqs)
                .map_err(|e| GpuError::cuda("upload seqs", e))?,
            num_chunks,
            bv,
            warps: default_state_warps(opts, &d),
        })
    }

    /// Allocate outputs and intermediates; `poison` fills them with NaN first (tests prove every
    /// element is written).
    pub fn alloc_outputs(&self, poison: bool) -> Result<DeviceOutputs, GpuError> {
        let g = gpu()?;
        let d = self.dims;
        let dt = self.opts.dtype;
        let nc = self.num_chunks;
        Ok(DeviceOutputs {
            qg: alloc_buf(g, dt, nc * d.h * 64 * d.k, poison)?,
            kgt: alloc_buf(g, dt, nc * d.h * 64 * d.k, poison)?,
            a: alloc_buf(g, dt, nc * d.h * 64 * 64, poison)?,
            gamma: f32_buf(g, nc * d.h * d.k, poison)?,
            o: alloc_buf(g, dt, d.b * d.t * d.h * d.v, poison)?,
            ht: f32_buf(g, d.n * d.h * d.k * d.v, poison)?,
        })
    }

    /// Bytes the forward must move at minimum: q, k, v, g (as stored) read once, o written once.
    pub fn min_bytes(&self) -> f64 {
        let d = self.dims;
        let es = if self.opts.dtype == Dtype::F32 {
            4.0
        } else {
            2.0
        };
        let rows = (d.b * d.t * d.h) as f64;
        rows * (es * (2 * d.k + 2 * d.v) as f64 + 4.0 * self.gate_cols as f64)
    }

    /// Floating-point operations of the chunked forward (causal-aware count of gpu-performance.md
    /// section 4.1: 4KV + (C - c)K + CV per token and head).
    pub fn flops(&self) -> f64 {
        let d = self.dims;
        let rows = (d.b * d.t * d.h) as f64;
        rows * (4 * d.k * d.v + 48 * d.k + 64 * d.v) as f64
    }

    /// Launch the forward kernels on the process stream (asynchronous; errors of the launch itself
    /// are returned, errors during execution surface at the next synchronisation).
    pub fn launch(&self, out: &mut DeviceOutputs) -> Result<(), GpuError> {
        self.launch_intra(out)?;
        self.launch_state(out)
    }

    /// The first kernel alone (chunk-local cumsum, decayed q / k, A, gamma).
    pub fn launch_intra(&self, out: &mut DeviceOutputs) -> Result<(), GpuError> {
        self.launch_part(out, true, false)
    }

    /// The second kernel alone (states and output); needs `launch_intra` first.
    pub fn launch_state(&self, out: &mut DeviceOutputs) -> Result<(), GpuError> {
        self.launch_part(out, false, true)
    }

    fn launch_part(
        &self,
        out: &mut DeviceOutputs,
        intra: bool,
        state: bool,
    ) -> Result<(), GpuError> {
        let g = gpu()?;
        let d = self.dims;
        let dt = self.opts.dtype;
        let (tlen, h, k, v) = (d.t as i32, d.h as i32, d.k as i32, d.v as i32);
        let suffix = match dt {
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
            _ => "f32",
        };
        if intra && self.num_chunks > 0 {
            let name = if intra_fast() {
                format!("gla_fwd_intra_fast_{suffix}")
            } else {
                format!("gla_fwd_intra_{suffix}")
            };
            let f = g.func(&name)?;
            // gla_fwd_intra: sF [64][K] f32, 9 slice arrays [16][68] f32, sZ [64][K] u8, sZt [16][68] u8,
            // sRowSafe [64] u16
            // (+ raw q, k rows [64][K] each for 16-bit inputs)
            let raw = if dt == Dtype::F32 {
                0
            } else {
                2 * 64 * d.k * 2
            };
            let smem = raw + (64 * d.k + 9 * 16 * 68) * 4 + 64 * d.k + 16 * 68 + 64 * 2;
            check_smem(g, smem)?;
            let cfg = LaunchConfig {
                grid_dim: (self.num_chunks as u32, d.h as u32, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            let mut b = g.stream.launch_builder(f);
            match (&self.q, &self.k, &mut out.qg, &mut out.kgt, &mut out.a) {
                (DBuf::U16(q), DBuf::U16(kk), DBuf::U16(qg), DBuf::U16(kg), DBuf::U16(a)) => {
                    b.arg(q)
                        .arg(kk)
                        .arg(&self.g)
                        .arg(&self.gate_cols)
                        .arg(&self.chunks)
                        .arg(&tlen)
                        .arg(&h)
                        .arg(&k)
                        .arg(&self.scale);
                    b.arg(qg).arg(kg).arg(a).arg(&mut out.gamma);
                    unsafe { b.launch(cfg) }
                        .map_err(|e| GpuError::cuda(format!("launch {name}"), e))?;
                }
                (DBuf::F32(q), DBuf::F32(kk), DBuf::F32(qg), DBuf::F32(kg), DBuf::F32(a)) => {
                    b.arg(q)
                        .arg(kk)
                        .arg(&self.g)
                        .arg(&self.gate_cols)
                        .arg(&self.chunks)
                        .arg(&tlen)
                        .arg(&h)
                        .arg(&k)
                        .arg(&self.scale);
                    b.arg(qg).arg(kg).arg(a).arg(&mut out.gamma);
                    unsafe { b.launch(cfg) }
                        .map_err(|e| GpuError::cuda(format!("launch {name}"), e))?;
                }
                _ => return Err(GpuError::Unsupported("buffer dtype mismatch".into())),
            }
        }
        if !state {
            return Ok(());
        }
        let null: u64 = 0;
        if dt == Dtype::F32 {
            let name = format!("gla_fwd_state_f32_k{}", d.k);
            let f = g.func(&name)?;
            let smem = (64 * d.k * 2 + 64 * 64 + 64 * 32 + d.k * 32 + d.k) * 4;
            check_smem(g, smem)?;
            let cfg = LaunchConfig {
                grid_dim: ((d.v / 32) as u32, d.h as u32, d.n as u32),
                block_dim: (128, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            let tf32: i32 = (self.opts.precision == Precision::Tf32) as i32;
            match (&self.v, &out.qg, &out.kgt, &out.a, &mut out.o) {
                (DBuf::F32(vv), DBuf::F32(qg), DBuf::F32(kg), DBuf::F32(a), DBuf::F32(o)) => {
                    let mut b = g.stream.launch_builder(f);
                    b.arg(vv);
                    match &self.h0 {
                        Some(h0) => b.arg(h0),
                        None => b.arg(&null),
                    };
                    b.arg(&self.seqs)
                        .arg(&tlen)
                        .arg(&h)
                        .arg(&v)
                        .arg(&self.scale)
                        .arg(qg)
                        .arg(kg)
                        .arg(a)
                        .arg(&out.gamma)
                        .arg(o)
                        .arg(&mut out.ht)
                        .arg(&tf32);
                    unsafe { b.launch(cfg) }
                        .map_err(|e| GpuError::cuda(format!("launch {name}"), e))?;
                }
                _ => return Err(GpuError::Unsupported("buffer dtype mismatch".into())),
            }
        } else {
            let bv = self.bv;
            let w8 = if self.warps == 8 { "_w8" } else { "" };
            let name = format!("gla_fwd_state_{suffix}_k{}_v{}{w8}", d.k, bv);
            let f = g.func(&name)?;
            // StateSmem<K, BV> in gla_fwd.cu: two stages of (qg, kg^T, A, v, gamma) + rnd(S)^T
            let (kp, cp, vp) = (d.k + 8, 64 + 8, bv + 8);
            let stage = 64 * kp + d.k * cp + 64 * cp + 64 * vp + 2 * d.k;
            let smem = 2 * (2 * stage + bv * kp);
            check_smem(g, smem)?;
            let cfg = LaunchConfig {
                grid_dim: ((d.v / bv) as u32, d.h as u32, d.n as u32),
                block_dim: (32 * self.warps as u32, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            match (&self.v, &out.qg, &out.kgt, &out.a, &mut out.o) {
                (DBuf::U16(vv), DBuf::U16(qg), DBuf::U16(kg), DBuf::U16(a), DBuf::U16(o)) => {
                    let mut b = g.stream.launch_builder(f);
                    b.arg(vv);
                    match &self.h0 {
                        Some(h0) => b.arg(h0),
                        None => b.arg(&null),
                    };
                    b.arg(&self.seqs)
                        .arg(&tlen)
                        .arg(&h)
                        .arg(&v)
                        .arg(&self.scale)
                        .arg(qg)
                        .arg(kg)
                        .arg(a)
                        .arg(&out.gamma)
                        .arg(o)
                        .arg(&mut out.ht);
                    unsafe { b.launch(cfg) }
                        .map_err(|e| GpuError::cuda(format!("launch {name}"), e))?;
                }
                _ => return Err(GpuError::Unsupported("buffer dtype mismatch".into())),
            }
        }
        Ok(())
    }

    /// Copy the outputs back as a [`Solution`] (synchronises the stream; execution errors surface here).
    pub fn download(&self, out: &DeviceOutputs) -> Result<Solution, GpuError> {
        let g = gpu()?;
        let d = self.dims;
        g.stream
            .synchronize()
            .map_err(|e| GpuError::cuda("kernel execution", e))?;
        let no = d.b * d.t * d.h * d.v;
        let o: Vec<f64> = match &out.o {
            DBuf::F32(s) => g
                .stream
                .clone_dtoh(s)
                .map_err(|e| GpuError::cuda("download o", e))?
                .into_iter()
                .map(|x| x as f64)
                .collect(),
            DBuf::U16(s) => g
                .stream
                .clone_dtoh(s)
                .map_err(|e| GpuError::cuda("download o", e))?
                .into_iter()
                .map(|x| from_bits(self.opts.dtype, x))
                .collect(),
        };
        let ht: Vec<f64> = g
            .stream
            .clone_dtoh(&out.ht)
            .map_err(|e| GpuError::cuda("download ht", e))?
            .into_iter()
            .map(|x| x as f64)
            .collect();
        let o = Array4::from_shape_vec((d.b, d.t, d.h, d.v), o[..no].to_vec())
            .map_err(|e| GpuError::cuda("reshape o", e))?;
        let nh = d.n * d.h * d.k * d.v;
        let ht = Array4::from_shape_vec((d.n, d.h, d.k, d.v), ht[..nh].to_vec())
            .map_err(|e| GpuError::cuda("reshape ht", e))?;
        Ok(Solution { o, ht, grads: None })
    }

    /// Number of chunks over all sequences.
    pub fn num_chunks(&self) -> usize {
        self.num_chunks
    }

    /// Value-block width chosen for the state kernel.
    pub fn value_block(&self) -> usize {
        self.bv
    }

    /// Warps per block of the bf16 / f16 state kernel (4, or 8 when K >= 128).
    pub fn state_warps(&self) -> usize {
        self.warps
    }

    /// Force the bf16 / f16 state kernel's warps per block: 4, or 8 when K >= 128 (f32: 4 only).
    /// Like the value-block width, this changes which warp computes an element, never its
    /// operations or their order: results are bit-identical.
    pub fn set_state_warps(&mut self, warps: usize) -> Result<(), GpuError> {
        let ok = warps == 4 || (warps == 8 && self.dims.k >= 128 && self.opts.dtype != Dtype::F32);
        if !ok {
            return Err(GpuError::Unsupported(format!(
                "state kernel with {warps} warps for dtype {:?}, K = {}: 4, or 8 for bf16/f16 with K >= 128",
                self.opts.dtype, self.dims.k
            )));
        }
        self.warps = warps;
        Ok(())
    }

    /// Force the state kernel's value-block width (bf16 / f16: 32, or 64 when K = 64; f32: 32). The width changes which block computes a column of o and hT, never the
    /// arithmetic: every value column is an independent sequence of the same operations, so
    /// results are bit-identical for every width (tested in gpu/tests/gpu_forward.rs).
    pub fn set_value_block(&mut self, bv: usize) -> Result<(), GpuError> {
        let ok = if self.opts.dtype == Dtype::F32 {
            bv == 32
        } else {
            bv == 32 || (bv == 64 && self.dims.k == 64)
        };
        if !ok || self.dims.v % bv != 0 {
            return Err(GpuError::Unsupported(format!(
                "value block {bv} for dtype {:?}, K = {}, V = {}: bf16/f16 take 32 (64 if K = 64), f32 takes 32, and BV must divide V",
                self.opts.dtype, self.dims.k, self.dims.v
            )));
        }
        self.bv = bv;
        Ok(())
    }

    /// Size in elements of o.
    pub fn o_len(out: &DeviceOutputs) -> usize {
        out.o.len()
    }
}

/// Value-block width of the state kernel: 32 (more programs in flight; the V/32 programs of one
/// head read the same qg / kg / A tiles, mostly from L2), 64 only for K = 64 when there are enough
/// (block, head, sequence) programs to fill the GPU twice. (A 16-wide variant for shapes with
/// fewer programs than SMs was measured slower: gpu/NOTES.md.)
fn default_value_block(opts: &GpuOptions, d: &gla_reference::Dims, sm_count: usize) -> usize {
    if opts.dtype != Dtype::F32
        && d.k == 64
        && d.v % 64 == 0
        && (d.v / 64) * d.h * d.n >= 2 * sm_count
    {
        64
    } else {
        32
    }
}

/// Warps per block of the bf16 / f16 state kernel: 4. The 8-warp kernels (K >= 128; shorter
/// dependent chains of tensor-core instructions per warp) were measured slower on an H100
/// (state kernel 0.462 vs 0.388 ms at B=8, T=4096, H=16, K=V=128: gpu/NOTES.md) and are kept
/// for A/B timing: `GLA_STATE_WARPS=8` selects them (bit-identical results).
fn default_state_warps(opts: &GpuOptions, d: &gla_reference::Dims) -> usize {
    if opts.dtype != Dtype::F32
        && d.k >= 128
        && std::env::var("GLA_STATE_WARPS").as_deref() == Ok("8")
    {
        8
    } else {
        4
    }
}

/// Intra-kernel variant. Default: the kernels built with `ex2.approx.ftz` / `rcp.approx.ftz`
/// (`gla_fwd_intra_fast_*`, see `exp_nonpos` in gpu/kernels/gla_fwd.cu; 15% faster, same tests and
/// bounds, gpu/NOTES.md v6). `GLA_INTRA_ACCURATE=1` selects the `exp2f` / `__frcp_rn` kernels
/// (`gla_fwd_intra_*`), kept for A/B timing.
fn intra_fast() -> bool {
    std::env::var("GLA_INTRA_ACCURATE").as_deref() != Ok("1")
}

pub(crate) fn check_smem(g: &Gpu, bytes: usize) -> Result<(), GpuError> {
    if bytes > g.max_smem_optin as usize {
        return Err(GpuError::Unsupported(format!(
            "needs {bytes} B of shared memory per block, the device allows {}",
            g.max_smem_optin
        )));
    }
    Ok(())
}

/// The chunked GLA forward on the GPU: host arrays in, host arrays out.
///
/// The problem's inputs are rounded to `opts.dtype` on upload (gates to f32); for comparisons with
/// an oracle, pre-round the problem with `Problem::rounded_to(dtype)` so both see the same values.
/// Outputs are pre-filled with NaN on the device, so an element the kernels did not write shows.
/// `o` is in `opts.dtype` (returned as f64), `ht` in f32.
///
/// ```no_run
/// use gla_gpu::{forward, GpuOptions};
/// use gla_reference::{Dtype, Gates, Problem};
/// use ndarray::Array4;
/// let (b, t, h, k, v) = (1, 100, 2, 64, 64);
/// let q = Array4::from_elem((b, t, h, k), 0.1);
/// let p = Problem::builder(q.clone(), q, Array4::from_elem((b, t, h, v), 1.0),
///                          Gates::PerChannel(Array4::from_elem((b, t, h, k), -0.05))).build()?
///     .rounded_to(Dtype::Bf16)?;
/// match gla_gpu::available() {
///     Ok(_) => { let s = forward(&p, &GpuOptions::new(Dtype::Bf16))?; assert!(s.o.iter().all(|x| x.is_finite())); }
///     Err(why) => eprintln!("no GPU: {why}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn forward(p: &Problem, opts: &GpuOptions) -> Result<Solution, GpuError> {
    let dp = DeviceProblem::upload(p, opts)?;
    let mut out = dp.alloc_outputs(true)?;
    dp.launch(&mut out)?;
    dp.download(&out)
}
