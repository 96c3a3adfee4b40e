//! Backward pass: device buffers, launches and the host-array entry point (kernels in
//! gpu/kernels/gla_bwd.cu, compiled by NVRTC on first use).
//!
//! The backward reuses the forward's intermediates (decayed queries `qg`, transposed decayed keys
//! `kgT`, the rounded intra-chunk matrix `A`, the chunk decays `gamma`), so a backward launch
//! follows a forward launch on the same [`DeviceOutputs`], as fla's `chunk_gla` backward uses the
//! tensors its forward saved. Then, per spec section 4:
//! 1. `gla_bwd_state_*`: per (value block, head, sequence), the chunk start states `H_p`
//!    (recomputed, stored rounded to the input dtype) and, sweeping the chunks in reverse from
//!    `dhT`, the state gradients `dH_p` (stored rounded), and `dh0` (f32);
//! 2. `gla_bwd_dqk_*`: per (chunk, head, 64 key channels), `dq`, `dk` and `dg` (chunk reverse
//!    sums plus the state term);
//! 3. `gla_bwd_dv_*`: per (chunk, head, 64 value columns), `dv = A^T do + kg dH_p`;
//! 4. scalar gates only: `gla_bwd_dg_reduce_*` sums the per-channel gate gradients.

use crate::device::{gpu, Gpu};
use crate::error::GpuError;
use crate::forward::{
    check_smem, check_supported, rounding_plan, DBuf, DeviceOutputs, DeviceProblem, GpuOptions,
    Precision,
};
use crate::kernels;
use cudarc::driver::{
    sys, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use gla_reference::bounds::DgForm;
use gla_reference::rounding::RoundingPlan;
use gla_reference::{Dims, Dtype, GateKind, Gradients, Problem, Solution};
use ndarray::Array4;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The rounding plan the forward + backward kernels follow for `opts`: the CPU twin
/// `gla_reference::chunked::backward::<f32>` with this plan rounds at the same points.
///
/// bf16 / f16: the forward's points ([`rounding_plan`]: `q*exp(Gl)`, `k*exp(Gl_last - Gl)`, the
/// state snapshot for `o`, `A`, `o`, and the final dq, dk, dv, dg), plus the recomputed chunk
/// states `H_p` (`bwd_state`) and the state gradients `dH_p` (`dstate`), which are stored in the
/// input dtype and are tensor-core operands. `dA`, the intra-chunk factors, `dh0` and `hT` stay
/// f32. f32: nothing is rounded. f32 + TF32: the forward's TF32 points plus `do`, `H_p` and
/// `dH_p` (every product operand); the gradients stay f32.
///
/// ```
/// use gla_gpu::{backward_rounding_plan, GpuOptions};
/// use gla_reference::Dtype;
/// let p = backward_rounding_plan(&GpuOptions::new(Dtype::Bf16));
/// assert_eq!((p.bwd_state, p.dstate, p.da), (Some(Dtype::Bf16), Some(Dtype::Bf16), None));
/// assert!(backward_rounding_plan(&GpuOptions::new(Dtype::F32)).is_none());
/// ```
pub fn backward_rounding_plan(opts: &GpuOptions) -> RoundingPlan {
    let base = rounding_plan(opts);
    match (opts.dtype, opts.precision) {
        (Dtype::F32, Precision::Tf32) => {
            let t = Some(Dtype::Tf32);
            base.do_(t).bwd_state(t).dstate(t)
        }
        (Dtype::F32, _) => base,
        (d, _) => base.bwd_state(Some(d)).dstate(Some(d)),
    }
}

/// Kernel entry points defined by gla_bwd.cu.
pub const BWD_KERNELS: &[&str] = &[
    "gla_bwd_state_bf16_k64",
    "gla_bwd_state_bf16_k128",
    "gla_bwd_state_bf16_k256",
    "gla_bwd_state_f16_k64",
    "gla_bwd_state_f16_k128",
    "gla_bwd_state_f16_k256",
    "gla_bwd_state_f32_k64",
    "gla_bwd_state_f32_k128",
    "gla_bwd_state_f32_k256",
    "gla_bwd_dqk_bf16",
    "gla_bwd_dqk_f16",
    "gla_bwd_dqk_f32",
    "gla_bwd_dqk_local_bf16",
    "gla_bwd_dqk_local_f16",
    "gla_bwd_dqk_local_f32",
    "gla_bwd_dv_bf16",
    "gla_bwd_dv_f16",
    "gla_bwd_dv_f32",
    "gla_bwd_dg_reduce_bf16",
    "gla_bwd_dg_reduce_f16",
    "gla_bwd_dg_reduce_f32",
];

struct BwdModule {
    _module: Arc<CudaModule>,
    funcs: HashMap<&'static str, CudaFunction>,
}

static BWD: OnceLock<Result<BwdModule, GpuError>> = OnceLock::new();

fn module() -> Result<&'static BwdModule, GpuError> {
    BWD.get_or_init(|| {
        let g = gpu()?;
        let ptx = kernels::compile("gla_bwd.cu", kernels::GLA_BWD_SRC, &g.info.arch)?;
        let module = g
            .ctx
            .load_module(ptx)
            .map_err(|e| GpuError::cuda("loading the backward module", e))?;
        let mut funcs = HashMap::new();
        for &k in BWD_KERNELS {
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
        Ok(BwdModule {
            _module: module,
            funcs,
        })
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// Resource usage of the backward kernels (see [`crate::kernel_report`]); empty without a GPU.
pub(crate) fn kernel_report() -> Vec<(String, String)> {
    let Ok(m) = module() else {
        return Vec::new();
    };
    let mut v: Vec<(String, String)> = m
        .funcs
        .iter()
        .map(|(n, f)| (n.to_string(), crate::device::func_report(f)))
        .collect();
    v.sort();
    v
}

fn func(name: &str) -> Result<&'static CudaFunction, GpuError> {
    module()?
        .funcs
        .get(name)
        .ok_or_else(|| GpuError::Compile(format!("kernel {name} not found")))
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

fn upload_f64(g: &Gpu, dtype: Dtype, v: &[f64]) -> Result<DBuf, GpuError> {
    let v = if v.is_empty() { &[0.0][..] } else { v };
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
        Dtype::F32 => DBuf::F32(f32_buf(g, n, poison)?),
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

fn ptr(b: &DBuf, s: &CudaStream) -> u64 {
    match b {
        DBuf::U16(x) => x.device_ptr(s).0,
        DBuf::F32(x) => x.device_ptr(s).0,
    }
}

fn fptr(b: &CudaSlice<f32>, s: &CudaStream) -> u64 {
    b.device_ptr(s).0
}

fn download_dbuf(g: &Gpu, dtype: Dtype, b: &DBuf, n: usize) -> Result<Vec<f64>, GpuError> {
    let v: Vec<f64> = match b {
        DBuf::F32(s) => g
            .stream
            .clone_dtoh(s)
            .map_err(|e| GpuError::cuda("download", e))?
            .into_iter()
            .map(|x| x as f64)
            .collect(),
        DBuf::U16(s) => g
            .stream
            .clone_dtoh(s)
            .map_err(|e| GpuError::cuda("download", e))?
            .into_iter()
            .map(|x| from_bits(dtype, x))
            .collect(),
    };
    Ok(v[..n].to_vec())
}

fn arr4(v: Vec<f64>, s: (usize, usize, usize, usize)) -> Result<Array4<f64>, GpuError> {
    Array4::from_shape_vec(s, v).map_err(|e| GpuError::cuda("reshape", e))
}

/// A problem with backward seeds uploaded once (for repeated launches, e.g. benchmarking).
pub struct DeviceBwdProblem {
    /// The forward part (inputs q, k, v, g, h0 and the chunk tables).
    pub fwd: DeviceProblem,
    do_: DBuf,
    dht: Option<CudaSlice<f32>>,
}

/// Device outputs of a forward + backward launch.
pub struct DeviceBwdOutputs {
    /// Forward outputs and intermediates (o, hT, qg, kgT, A, gamma).
    pub fwd: DeviceOutputs,
    hs: DBuf,
    dhs: DBuf,
    /// dq `[B, T, H, K]` in the input dtype.
    pub dq: DBuf,
    /// dk `[B, T, H, K]` in the input dtype.
    pub dk: DBuf,
    /// dv `[B, T, H, V]` in the input dtype.
    pub dv: DBuf,
    /// dg `[B, T, H, Kg]` in the input dtype (Kg = K, or 1 for scalar gates).
    pub dg: DBuf,
    dgp: CudaSlice<f32>,
    /// dh0 `[N, H, K, V]` f32.
    pub dh0: CudaSlice<f32>,
}

impl DeviceBwdProblem {
    /// Upload `p` (inputs and `do` rounded to `opts.dtype`; gates, h0 and dhT to f32). Needs `do`.
    pub fn upload(p: &Problem, opts: &GpuOptions) -> Result<DeviceBwdProblem, GpuError> {
        check_supported(p, opts)?;
        p.require_backward()?;
        let fwd = DeviceProblem::upload(p, opts)?;
        let g = gpu()?;
        let do_: Vec<f64> = p
            .do_()
            .ok_or_else(|| GpuError::Unsupported("backward needs do".into()))?
            .iter()
            .copied()
            .collect();
        let dht = match p.dht() {
            Some(a) => Some(
                g.stream
                    .clone_htod(&a.iter().map(|&x| x as f32).collect::<Vec<_>>())
                    .map_err(|e| GpuError::cuda("upload dht", e))?,
            ),
            None => None,
        };
        Ok(DeviceBwdProblem {
            fwd,
            do_: upload_f64(g, opts.dtype, &do_)?,
            dht,
        })
    }

    /// Upload raw f32 data (see [`DeviceProblem::from_raw`]) plus `do` (`[B, T, H, V]`) and an
    /// optional `dht` (`[B, H, K, V]`).
    #[allow(clippy::too_many_arguments)]
    pub fn from_raw(
        dims: Dims,
        gate_kind: GateKind,
        opts: &GpuOptions,
        q: &[f32],
        k: &[f32],
        v: &[f32],
        g: &[f32],
        h0: Option<&[f32]>,
        scale: f64,
        do_: &[f32],
        dht: Option<&[f32]>,
    ) -> Result<DeviceBwdProblem, GpuError> {
        let fwd = DeviceProblem::from_raw(dims, gate_kind, opts, q, k, v, g, h0, scale)?;
        if do_.len() != dims.b * dims.t * dims.h * dims.v
            || dht.is_some_and(|x| x.len() != dims.n * dims.h * dims.k * dims.v)
        {
            return Err(GpuError::Unsupported(
                "raw do / dht sizes do not match the dims".into(),
            ));
        }
        let gp = gpu()?;
        let dov: Vec<f64> = do_.iter().map(|&x| x as f64).collect();
        let dht = match dht {
            Some(x) => Some(
                gp.stream
                    .clone_htod(x)
                    .map_err(|e| GpuError::cuda("upload dht", e))?,
            ),
            None => None,
        };
        Ok(DeviceBwdProblem {
            fwd,
            do_: upload_f64(gp, opts.dtype, &dov)?,
            dht,
        })
    }

    fn kg(&self) -> usize {
        if self.fwd.gate_cols == 1 {
            1
        } else {
            self.fwd.dims.k
        }
    }

    /// Allocate the outputs and intermediates; `poison` fills them with NaN first.
    pub fn alloc_outputs(&self, poison: bool) -> Result<DeviceBwdOutputs, GpuError> {
        let g = gpu()?;
        let d = self.fwd.dims;
        let dt = self.fwd.opts.dtype;
        let nc = self.fwd.num_chunks;
        let rows = d.b * d.t * d.h;
        let scalar = self.fwd.gate_cols == 1;
        Ok(DeviceBwdOutputs {
            fwd: self.fwd.alloc_outputs(poison)?,
            hs: alloc_buf(g, dt, nc * d.h * d.k * d.v, poison)?,
            dhs: alloc_buf(g, dt, nc * d.h * d.k * d.v, poison)?,
            dq: alloc_buf(g, dt, rows * d.k, poison)?,
            dk: alloc_buf(g, dt, rows * d.k, poison)?,
            dv: alloc_buf(g, dt, rows * d.v, poison)?,
            dg: alloc_buf(g, dt, rows * self.kg(), poison)?,
            dgp: f32_buf(g, if scalar { rows * d.k } else { 1 }, poison)?,
            dh0: f32_buf(g, d.n * d.h * d.k * d.v, poison)?,
        })
    }

    /// Launch the forward kernels (o, hT and the intermediates the backward reads).
    pub fn launch_forward(&self, out: &mut DeviceBwdOutputs) -> Result<(), GpuError> {
        self.fwd.launch(&mut out.fwd)
    }

    /// Launch forward and backward.
    pub fn launch(&self, out: &mut DeviceBwdOutputs) -> Result<(), GpuError> {
        self.launch_forward(out)?;
        self.launch_backward(out)
    }

    /// Launch the backward kernels (asynchronous); needs [`Self::launch_forward`] on `out` first.
    pub fn launch_backward(&self, out: &mut DeviceBwdOutputs) -> Result<(), GpuError> {
        let g = gpu()?;
        let s = &g.stream;
        let p = &self.fwd;
        let d = p.dims;
        let dt = p.opts.dtype;
        let (es, suffix) = match dt {
            Dtype::Bf16 => (2usize, "bf16"),
            Dtype::F16 => (2, "f16"),
            _ => (4, "f32"),
        };
        let tf32: i32 = (p.opts.precision == Precision::Tf32) as i32;
        let (tlen, h, k, v) = (d.t as i32, d.h as i32, d.k as i32, d.v as i32);
        let pad = 16 / es;
        let null: u64 = 0;
        let (pq, pk, pv) = (ptr(&p.q, s), ptr(&p.k, s), ptr(&p.v, s));
        let pdo = ptr(&self.do_, s);
        let pg = fptr(&p.g, s);
        let ph0 = p.h0.as_ref().map_or(null, |x| fptr(x, s));
        let pdht = self.dht.as_ref().map_or(null, |x| fptr(x, s));
        let pchunks = p.chunks.device_ptr(s).0;
        let pseqs = p.seqs.device_ptr(s).0;
        let (pqg, pkgt, pa) = (
            ptr(&out.fwd.qg, s),
            ptr(&out.fwd.kgt, s),
            ptr(&out.fwd.a, s),
        );
        let pgam = fptr(&out.fwd.gamma, s);
        let (phs, pdhs) = (ptr(&out.hs, s), ptr(&out.dhs, s));
        let (pdq, pdk, pdv, pdg) = (
            ptr(&out.dq, s),
            ptr(&out.dk, s),
            ptr(&out.dv, s),
            ptr(&out.dg, s),
        );
        let (pdgp, pdh0) = (fptr(&out.dgp, s), fptr(&out.dh0, s));
        let launch_err = |name: &str, e| GpuError::cuda(format!("launch {name}"), e);

        // 1. states and state gradients
        if d.n > 0 && d.h > 0 {
            let name = format!("gla_bwd_state_{suffix}_k{}", d.k);
            let f = func(&name)?;
            let (ldk, ldv, ldq) = (64 + pad, 32 + pad, d.k + pad);
            let r0 = (d.k * ldk).max(64 * ldq);
            let smem = (r0 + 64 * ldv) * es + d.k * 4;
            check_smem(g, smem)?;
            let cfg = LaunchConfig {
                grid_dim: ((d.v / 32) as u32, d.h as u32, d.n as u32),
                block_dim: (128, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            let mut b = s.launch_builder(f);
            b.arg(&pv)
                .arg(&pdo)
                .arg(&ph0)
                .arg(&pdht)
                .arg(&pseqs)
                .arg(&tlen)
                .arg(&h)
                .arg(&v)
                .arg(&p.scale)
                .arg(&pqg)
                .arg(&pkgt)
                .arg(&pgam)
                .arg(&phs)
                .arg(&pdhs)
                .arg(&pdh0)
                .arg(&tf32);
            unsafe { b.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
        }
        if p.num_chunks == 0 || d.h == 0 {
            return Ok(());
        }
        let ld = 64 + pad;
        // 2. dq, dk, dg
        {
            let local = p.opts.dg_form == DgForm::Local;
            let name = if local {
                format!("gla_bwd_dqk_local_{suffix}")
            } else {
                format!("gla_bwd_dqk_{suffix}")
            };
            let f = func(&name)?;
            // cumsums, q, k, dA, partial sums, reset counts, staging (+ the local form's block
            // sums and snapshots, 11 x 64 f32)
            let smem = (3 * 64 * 64 + 64 * 65 + 256 + 64 + 64) * 4
                + 64 * 64
                + 4 * 64 * ld * es
                + if local { 11 * 64 * 4 } else { 0 };
            check_smem(g, smem)?;
            let cfg = LaunchConfig {
                grid_dim: (p.num_chunks as u32, d.h as u32, (d.k / 64) as u32),
                block_dim: (256, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            let mut b = s.launch_builder(f);
            b.arg(&pq)
                .arg(&pk)
                .arg(&pv)
                .arg(&pdo)
                .arg(&pg)
                .arg(&p.gate_cols)
                .arg(&pchunks)
                .arg(&tlen)
                .arg(&h)
                .arg(&k)
                .arg(&v)
                .arg(&p.scale)
                .arg(&phs)
                .arg(&pdhs)
                .arg(&pgam)
                .arg(&pdq)
                .arg(&pdk)
                .arg(&pdg)
                .arg(&pdgp)
                .arg(&tf32);
            unsafe { b.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
        }
        // 3. dv
        {
            let name = format!("gla_bwd_dv_{suffix}");
            let f = func(&name)?;
            let smem = 4 * 64 * ld * es;
            check_smem(g, smem)?;
            let cfg = LaunchConfig {
                grid_dim: (p.num_chunks as u32, d.h as u32, (d.v / 64) as u32),
                block_dim: (128, 1, 1),
                shared_mem_bytes: smem as u32,
            };
            let mut b = s.launch_builder(f);
            b.arg(&pdo)
                .arg(&pchunks)
                .arg(&tlen)
                .arg(&h)
                .arg(&k)
                .arg(&v)
                .arg(&pa)
                .arg(&pkgt)
                .arg(&pdhs)
                .arg(&pdv)
                .arg(&tf32);
            unsafe { b.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
        }
        // 4. scalar gates: sum the per-channel partials
        if p.gate_cols == 1 {
            let name = format!("gla_bwd_dg_reduce_{suffix}");
            let f = func(&name)?;
            let rows = (d.b * d.t * d.h) as i32;
            let cfg = LaunchConfig {
                grid_dim: ((rows as u32).div_ceil(128), 1, 1),
                block_dim: (128, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut b = s.launch_builder(f);
            b.arg(&pdgp).arg(&rows).arg(&k).arg(&pdg);
            unsafe { b.launch(cfg) }.map_err(|e| launch_err(&name, e))?;
        }
        Ok(())
    }

    /// Copy o, hT and the gradients back as a [`Solution`] (synchronises the stream; execution
    /// errors surface here).
    pub fn download(&self, out: &DeviceBwdOutputs) -> Result<Solution, GpuError> {
        let mut sol = self.fwd.download(&out.fwd)?;
        let g = gpu()?;
        let d = self.fwd.dims;
        let dt = self.fwd.opts.dtype;
        let rows = d.b * d.t * d.h;
        let kg = self.kg();
        let dh0: Vec<f64> = g
            .stream
            .clone_dtoh(&out.dh0)
            .map_err(|e| GpuError::cuda("download dh0", e))?
            .into_iter()
            .map(|x| x as f64)
            .collect();
        let nh = d.n * d.h * d.k * d.v;
        sol.grads = Some(Gradients {
            dq: arr4(
                download_dbuf(g, dt, &out.dq, rows * d.k)?,
                (d.b, d.t, d.h, d.k),
            )?,
            dk: arr4(
                download_dbuf(g, dt, &out.dk, rows * d.k)?,
                (d.b, d.t, d.h, d.k),
            )?,
            dv: arr4(
                download_dbuf(g, dt, &out.dv, rows * d.v)?,
                (d.b, d.t, d.h, d.v),
            )?,
            dg: arr4(
                download_dbuf(g, dt, &out.dg, rows * kg)?,
                (d.b, d.t, d.h, kg),
            )?,
            dh0: arr4(dh0[..nh].to_vec(), (d.n, d.h, d.k, d.v))?,
        });
        Ok(sol)
    }

    /// Bytes the backward must move at minimum (gpu-performance.md 4.2): q, k, v, g, do read
    /// once, dq, dk, dv, dg written once.
    pub fn min_bytes(&self) -> f64 {
        let d = self.fwd.dims;
        let es = if self.fwd.opts.dtype == Dtype::F32 {
            4.0
        } else {
            2.0
        };
        let rows = (d.b * d.t * d.h) as f64;
        let kg = self.kg() as f64;
        rows * (es * (3 * d.k + 2 * d.v) as f64 + es * kg + 4.0 * self.fwd.gate_cols as f64)
    }

    /// Floating-point operations of the chunked backward with recomputed states
    /// (gpu-performance.md 4.2: 10KV + 2CV + 2(C - c)K per token and head).
    pub fn flops(&self) -> f64 {
        let d = self.fwd.dims;
        let rows = (d.b * d.t * d.h) as f64;
        rows * (10 * d.k * d.v + 128 * d.v + 96 * d.k) as f64
    }
}

/// The chunked GLA forward and backward on the GPU: host arrays in, o, hT and the gradients
/// (dq, dk, dv, dg, dh0) out, in the same [`Solution`] as the CPU references.
///
/// Needs `do` (`dhT` optional). Inputs are rounded to `opts.dtype` on upload (gates, h0, dhT to
/// f32); pre-round with `Problem::rounded_to(dtype)` to compare with an oracle. Every output is
/// pre-filled with NaN on the device. dq, dk, dv, dg come back in `opts.dtype`, dh0 and hT in
/// f32. The gate gradient uses the chunk reverse-sum form (spec section 4), judged with `M_dg`.
///
/// ```no_run
/// use gla_gpu::{backward, GpuOptions};
/// use gla_reference::{Dtype, Gates, Problem};
/// use ndarray::Array4;
/// let (b, t, h, k, v) = (1, 100, 2, 64, 64);
/// let q = Array4::from_elem((b, t, h, k), 0.1);
/// let p = Problem::builder(q.clone(), q, Array4::from_elem((b, t, h, v), 1.0),
///                          Gates::PerChannel(Array4::from_elem((b, t, h, k), -0.05)))
///     .do_(Array4::from_elem((b, t, h, v), 0.5)).build()?
///     .rounded_to(Dtype::Bf16)?;
/// match gla_gpu::available() {
///     Ok(_) => {
///         let s = backward(&p, &GpuOptions::new(Dtype::Bf16))?;
///         assert!(s.grads.unwrap().dg.iter().all(|x| x.is_finite()));
///     }
///     Err(why) => eprintln!("no GPU: {why}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn backward(p: &Problem, opts: &GpuOptions) -> Result<Solution, GpuError> {
    let dp = DeviceBwdProblem::upload(p, opts)?;
    let mut out = dp.alloc_outputs(true)?;
    dp.launch(&mut out)?;
    dp.download(&out)
}
