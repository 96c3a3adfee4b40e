//! Backward pass: a problem with its seeds uploaded to the device ([`DeviceBwdProblem`]), its
//! outputs ([`DeviceBwdOutputs`]), the launches of the backward kernels, and the host-array entry
//! point [`backward`] (kernels in gpu/kernels/gla_bwd.cu, compiled by NVRTC on first use).
//!
//! The backward reuses the forward's intermediates (decayed queries `qg`, transposed decayed keys
//! `kgT`, the rounded intra-chunk matrix `A`, the chunk decays `gamma`), so a backward launch
//! follows a forward launch on the same [`DeviceOutputs`], as fla's `chunk_gla` backward uses the
//! tensors its forward saved. Then, per docs/math.md §4:
//! 0. the forward's state kernel, launched by [`DeviceBwdProblem::launch_forward`], also stores
//!    the chunk start states `H_p` (rounded to the input dtype, the values its output product
//!    uses);
//! 1. `gla_bwd_state_*`: per (value block, head, sequence), sweeping the chunks in reverse from
//!    `dhT`, the state gradients `dH_p` (stored rounded), and `dh0` (f32);
//! 2. `gla_bwd_dqk_*`: per (chunk, head, 64 key channels), `dq`, `dk` and `dg` (chunk reverse
//!    sums plus the state term);
//! 3. `gla_bwd_dv_*`: per (chunk, head, 64 value columns), `dv = A^T do + kg dH_p`;
//! 4. scalar gates only: `gla_bwd_dg_reduce_*` sums the per-channel gate gradients.

use crate::buffers::{self, array4, DBuf};
use crate::device::gpu;
use crate::error::GpuError;
use crate::forward::{suffix, DeviceOutputs, DeviceProblem};
use crate::launch::{launch, Arg, Shape};
use crate::module;
use crate::options::{check_supported, GpuOptions, Precision};
use cudarc::driver::{CudaSlice, CudaStream};
use gla_reference::bounds::DgForm;
use gla_reference::{Dims, Dtype, GateKind, Gradients, Problem, Solution};

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
    /// Set by [`DeviceBwdProblem::launch_forward`]: `hs` holds the chunk start states.
    states_stored: bool,
}

impl DeviceBwdProblem {
    /// Upload `p` (inputs and `do` rounded to `opts.dtype`; gates, h0 and dhT to f32). Needs `do`.
    pub fn upload(p: &Problem, opts: &GpuOptions) -> Result<DeviceBwdProblem, GpuError> {
        check_supported(p, opts)?;
        p.require_backward()?;
        let fwd = DeviceProblem::upload(p, opts)?;
        let s = &gpu()?.stream;
        let do_: Vec<f64> = p
            .do_()
            .ok_or_else(|| GpuError::Unsupported("backward needs do".into()))?
            .iter()
            .copied()
            .collect();
        let dht: Option<Vec<f32>> = p.dht().map(|a| a.iter().map(|&x| x as f32).collect());
        Ok(DeviceBwdProblem {
            fwd,
            do_: DBuf::upload(s, opts.dtype, &do_, "do")?,
            dht: dht.map(|x| buffers::upload_f32(s, &x, "dht")).transpose()?,
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
        let s = &gpu()?.stream;
        // do is rounded from its f64 value, as in `upload`
        let dov: Vec<f64> = do_.iter().map(|&x| x as f64).collect();
        Ok(DeviceBwdProblem {
            fwd,
            do_: DBuf::upload(s, opts.dtype, &dov, "do")?,
            dht: dht.map(|x| buffers::upload_f32(s, x, "dht")).transpose()?,
        })
    }

    /// Columns of the gate tensor: K, or 1 for scalar gates.
    fn kg(&self) -> usize {
        if self.fwd.gate_cols == 1 {
            1
        } else {
            self.fwd.dims.k
        }
    }

    /// Allocate the outputs and intermediates; `poison` fills them with NaN first.
    pub fn alloc_outputs(&self, poison: bool) -> Result<DeviceBwdOutputs, GpuError> {
        let s = &gpu()?.stream;
        let d = self.fwd.dims;
        let dt = self.fwd.opts.dtype;
        let nc = self.fwd.num_chunks;
        let rows = d.b * d.t * d.h;
        let scalar = self.fwd.gate_cols == 1;
        Ok(DeviceBwdOutputs {
            fwd: self.fwd.alloc_outputs(poison)?,
            hs: DBuf::alloc(s, dt, nc * d.h * d.k * d.v, poison)?,
            dhs: DBuf::alloc(s, dt, nc * d.h * d.k * d.v, poison)?,
            dq: DBuf::alloc(s, dt, rows * d.k, poison)?,
            dk: DBuf::alloc(s, dt, rows * d.k, poison)?,
            dv: DBuf::alloc(s, dt, rows * d.v, poison)?,
            dg: DBuf::alloc(s, dt, rows * self.kg(), poison)?,
            dgp: buffers::alloc_f32(s, if scalar { rows * d.k } else { 1 }, poison)?,
            dh0: buffers::alloc_f32(s, d.n * d.h * d.k * d.v, poison)?,
            states_stored: false,
        })
    }

    /// Launch the forward kernels (o, hT and the intermediates the backward reads, the chunk
    /// start states included).
    pub fn launch_forward(&self, out: &mut DeviceBwdOutputs) -> Result<(), GpuError> {
        self.launch_forward_marked(out, |_| Ok(()))
    }

    /// [`Self::launch_forward`], calling `after(kernel)` once each kernel is queued (`"intra"`,
    /// `"state"`).
    pub fn launch_forward_marked(
        &self,
        out: &mut DeviceBwdOutputs,
        mut after: impl FnMut(&'static str) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        self.fwd.launch_intra(&mut out.fwd)?;
        after("intra")?;
        self.fwd.launch_state_saving(&mut out.fwd, Some(&out.hs))?;
        out.states_stored = true;
        after("state")
    }

    /// Launch forward and backward.
    pub fn launch(&self, out: &mut DeviceBwdOutputs) -> Result<(), GpuError> {
        self.launch_forward(out)?;
        self.launch_backward(out)
    }

    /// Launch the backward kernels (asynchronous); needs [`Self::launch_forward`] on `out` first.
    pub fn launch_backward(&self, out: &mut DeviceBwdOutputs) -> Result<(), GpuError> {
        self.launch_backward_marked(out, |_| Ok(()))
    }

    /// [`Self::launch_backward`], calling `after(kernel)` once each kernel is queued (`"state"`,
    /// `"dqk"`, `"dv"`, `"dg_reduce"`), e.g. to record a CUDA event for per-kernel timings.
    pub fn launch_backward_marked(
        &self,
        out: &mut DeviceBwdOutputs,
        mut after: impl FnMut(&'static str) -> Result<(), GpuError>,
    ) -> Result<(), GpuError> {
        if !out.states_stored {
            return Err(GpuError::Unsupported(
                "the backward needs DeviceBwdProblem::launch_forward on these outputs first \
                 (its state kernel stores the chunk states the backward reads)"
                    .into(),
            ));
        }
        let s = &gpu()?.stream;
        let o = &out.fwd;
        self.fwd.check_dtype(&[
            &self.do_, &o.qg, &o.kgt, &o.a, &out.hs, &out.dhs, &out.dq, &out.dk, &out.dv, &out.dg,
        ])?;
        let d = self.fwd.dims;
        if d.n > 0 && d.h > 0 {
            self.launch_state(s, out)?;
            after("state")?;
        }
        if self.fwd.num_chunks == 0 || d.h == 0 {
            return Ok(());
        }
        self.launch_dqk(s, out)?;
        after("dqk")?;
        self.launch_dv(s, out)?;
        after("dv")?;
        if self.fwd.gate_cols == 1 {
            self.launch_dg_reduce(s, out)?;
            after("dg_reduce")?;
        }
        Ok(())
    }

    /// Element size in bytes and the padding (elements) of a 16-byte shared-memory row pad.
    fn elem(&self) -> (usize, usize) {
        let es = if self.fwd.opts.dtype == Dtype::F32 {
            4
        } else {
            2
        };
        (es, 16 / es)
    }

    /// `tf32` kernel argument: 1 rounds every product operand to TF32 (f32 inputs only).
    fn tf32(&self) -> Arg {
        Arg::I32((self.fwd.opts.precision == Precision::Tf32) as i32)
    }

    /// Kernel 1: the state gradients `dH_p` (stored) and `dh0`, sweeping the chunks in reverse
    /// (the states `H_p` come from the forward).
    fn launch_state(&self, s: &CudaStream, out: &DeviceBwdOutputs) -> Result<(), GpuError> {
        let p = &self.fwd;
        let d = p.dims;
        let (es, pad) = self.elem();
        let name = format!("gla_bwd_state_{}_k{}", suffix(p.opts.dtype), d.k);
        // two stages (double buffer), each qg [64][K + pad], do [64][32 + pad], gamma [K] f32
        let (ldv, ldq) = (32 + pad, d.k + pad);
        let shape = Shape {
            grid: (d.v / 32, d.h, d.n),
            threads: 128,
            smem: 2 * ((64 * ldq + 64 * ldv) * es + d.k * 4),
        };
        let args = [
            Arg::buf(&self.do_, s),
            Arg::opt(self.dht.as_ref(), s),
            Arg::slice(&p.seqs, s),
            Arg::int(d.t),
            Arg::int(d.h),
            Arg::int(d.v),
            Arg::F32(p.scale),
            Arg::buf(&out.fwd.qg, s),
            Arg::slice(&out.fwd.gamma, s),
            Arg::buf(&out.dhs, s),
            Arg::slice(&out.dh0, s),
            self.tf32(),
        ];
        launch(module::backward()?, &name, shape, &args)
    }

    /// 2. dq, dk and dg (per-channel, or the scalar gates' per-channel partials).
    fn launch_dqk(&self, s: &CudaStream, out: &DeviceBwdOutputs) -> Result<(), GpuError> {
        let p = &self.fwd;
        let d = p.dims;
        let (es, pad) = self.elem();
        let ld = 64 + pad;
        let local = p.opts.dg_form == DgForm::Local;
        let form = if local { "local_" } else { "" };
        let name = format!("gla_bwd_dqk_{form}{}", suffix(p.opts.dtype));
        // local form (bwd_dqk_local): cumsums, q, k, f32 dA, partial sums, reset counts,
        // staging, the block sums and snapshots (11 x 64 f32). Default (bwd_dqk_tc): cumsums, q, k, dA's
        // leading term [64][ld] in the input dtype, the diagonal blocks' f32 dA (4 x 16 x 16),
        // partial sums (256 + 4 x 64 f32), reset counts, staging (reused for the off-diagonal
        // factors with dA's second term, then for the f32 dq / dk tiles, which fit in it).
        let smem = if local {
            (3 * 64 * 64 + 64 * 65 + 256 + 64) * 4 + 64 * 64 + 4 * 64 * ld * es + 11 * 64 * 4
        } else {
            // (sF, sQ, sK and sZ at row stride 68: bank-conflict padding)
            (3 * 64 * 68 + 4 * 256 + 256 + 4 * 64) * 4 + 64 * ld * es + 64 * 68 + 4 * 64 * ld * es
        };
        let shape = Shape {
            grid: (p.num_chunks, d.h, d.k / 64),
            threads: 256,
            smem,
        };
        let args = [
            Arg::buf(&p.q, s),
            Arg::buf(&p.k, s),
            Arg::buf(&p.v, s),
            Arg::buf(&self.do_, s),
            Arg::slice(&p.g, s),
            Arg::I32(p.gate_cols),
            Arg::slice(&p.chunks, s),
            Arg::int(d.t),
            Arg::int(d.h),
            Arg::int(d.k),
            Arg::int(d.v),
            Arg::F32(p.scale),
            Arg::buf(&out.hs, s),
            Arg::buf(&out.dhs, s),
            Arg::slice(&out.fwd.gamma, s),
            Arg::buf(&out.dq, s),
            Arg::buf(&out.dk, s),
            Arg::buf(&out.dg, s),
            Arg::slice(&out.dgp, s),
            self.tf32(),
        ];
        launch(module::backward()?, &name, shape, &args)
    }

    /// 3. dv.
    fn launch_dv(&self, s: &CudaStream, out: &DeviceBwdOutputs) -> Result<(), GpuError> {
        let p = &self.fwd;
        let d = p.dims;
        let (es, pad) = self.elem();
        let name = format!("gla_bwd_dv_{}", suffix(p.opts.dtype));
        let shape = Shape {
            grid: (p.num_chunks, d.h, d.v / 64),
            threads: 128,
            smem: 4 * 64 * (64 + pad) * es,
        };
        let args = [
            Arg::buf(&self.do_, s),
            Arg::slice(&p.chunks, s),
            Arg::int(d.t),
            Arg::int(d.h),
            Arg::int(d.k),
            Arg::int(d.v),
            Arg::buf(&out.fwd.a, s),
            Arg::buf(&out.fwd.kgt, s),
            Arg::buf(&out.dhs, s),
            Arg::buf(&out.dv, s),
            self.tf32(),
        ];
        launch(module::backward()?, &name, shape, &args)
    }

    /// 4. Scalar gates: dg = the sum of the per-channel partials.
    fn launch_dg_reduce(&self, s: &CudaStream, out: &DeviceBwdOutputs) -> Result<(), GpuError> {
        let p = &self.fwd;
        let d = p.dims;
        let name = format!("gla_bwd_dg_reduce_{}", suffix(p.opts.dtype));
        let rows = d.b * d.t * d.h;
        let shape = Shape {
            grid: (rows.div_ceil(128), 1, 1),
            threads: 128,
            smem: 0,
        };
        let args = [
            Arg::slice(&out.dgp, s),
            Arg::int(rows),
            Arg::int(d.k),
            Arg::buf(&out.dg, s),
        ];
        launch(module::backward()?, &name, shape, &args)
    }

    /// Copy o, hT and the gradients back as a [`Solution`] (synchronises the stream; execution
    /// errors surface here).
    pub fn download(&self, out: &DeviceBwdOutputs) -> Result<Solution, GpuError> {
        let mut sol = self.fwd.download(&out.fwd)?;
        let s = &gpu()?.stream;
        let d = self.fwd.dims;
        let dt = self.fwd.opts.dtype;
        let rows = d.b * d.t * d.h;
        let kg = self.kg();
        let get = |b: &DBuf, cols: usize, what: &str| {
            array4(
                b.download(s, dt, rows * cols, what)?,
                (d.b, d.t, d.h, cols),
                what,
            )
        };
        let dh0 = buffers::download_f32(s, &out.dh0, d.n * d.h * d.k * d.v, "dh0")?;
        sol.grads = Some(Gradients {
            dq: get(&out.dq, d.k, "dq")?,
            dk: get(&out.dk, d.k, "dk")?,
            dv: get(&out.dv, d.v, "dv")?,
            dg: get(&out.dg, kg, "dg")?,
            dh0: array4(dh0, (d.n, d.h, d.k, d.v), "dh0")?,
        });
        Ok(sol)
    }

    /// Bytes the backward must move at minimum: q, k, v, g, do read once, dq, dk, dv, dg written
    /// once.
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

    /// Floating-point operations of the chunked backward (the states come from the forward),
    /// counting only the causal half of the intra-chunk products: 8KV + 2CV + 2(C - c)K per
    /// token and head (C = 64, c = 16): dH, the inter-chunk parts of dq and dk, and dv's two
    /// products.
    pub fn flops(&self) -> f64 {
        let d = self.fwd.dims;
        let rows = (d.b * d.t * d.h) as f64;
        rows * (8 * d.k * d.v + 128 * d.v + 96 * d.k) as f64
    }
}
/// The chunked GLA forward and backward on the GPU: host arrays in, o, hT and the gradients
/// (dq, dk, dv, dg, dh0) out, in the same [`Solution`] as the CPU references.
///
/// Needs `do` (`dhT` optional). Inputs are rounded to `opts.dtype` on upload (gates, h0, dhT to
/// f32); pre-round with `Problem::rounded_to(dtype)` to compare with an oracle. Every output is
/// pre-filled with NaN on the device. dq, dk, dv, dg come back in `opts.dtype`, dh0 and hT in
/// f32. The gate gradient uses the form `opts.dg_form` selects: the chunk reverse-sum form by
/// default (docs/math.md §4, judged with `M_dg`), or the local form (judged with `M_dg_local`).
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
