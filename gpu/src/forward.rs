//! Forward pass: a problem uploaded to the device ([`DeviceProblem`]), its outputs and
//! intermediates ([`DeviceOutputs`]), the launches of the two forward kernels, and the host-array
//! entry point [`forward`].
//!
//! The kernels (gpu/kernels/gla_fwd.cu; the chunked form with secondary chunking of docs/math.md
//! §3, chunk 64, sub-chunk 16):
//! 1. `gla_fwd_intra_tc_*` (bf16, f16) or `gla_fwd_intra_*` (f32), one block per (chunk, head):
//!    the reset-aware chunk-local cumsum of the gates, the decayed queries `qg` and transposed
//!    decayed keys `kgT`, the intra-chunk matrix `A` (bf16 / f16: its off-diagonal sub-blocks on
//!    tensor cores) and the chunk decays `gamma` (the intermediates the backward reads too);
//! 2. `gla_fwd_state_*`, one block per (value block, head, sequence): the chunk states in
//!    order (f32, from `h0`), `o` and the final states `hT`.
//!
//! Kernel variants with bit-identical or equally bounded results are selected here:
//! the state kernel's layout, value-block width and warps per block ([`STATE_LAYOUTS`],
//! [`DeviceProblem::set_state_layout`], environment `GLA_STATE_BV` / `GLA_STATE_WARPS`) and the
//! exponential of the f32 intra kernel (environment `GLA_INTRA_ACCURATE=1`).

use crate::buffers::{self, array4, DBuf};
use crate::device::gpu;
use crate::error::GpuError;
use crate::launch::{launch, Arg, Shape};
use crate::module;
use crate::options::{check_dims, check_supported, GpuOptions, Precision};
use cudarc::driver::CudaSlice;
use gla_reference::{Dims, Dtype, GateKind, Problem, SeqSpan, Solution};
use ndarray::Array4;

/// A problem uploaded to the device once (for repeated launches, e.g. benchmarking).
pub struct DeviceProblem {
    /// Options the buffers were prepared for.
    pub opts: GpuOptions,
    /// Batch, time, heads, key and value sizes, number of sequences.
    pub dims: Dims,
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

/// The kernels' chunk and sequence tables of `sequences`: per chunk 4 ints (batch, first row,
/// length in 1..=64, unused), per sequence 6 ints (batch, first row, length, first chunk, number
/// of chunks, unused), and the number of chunks.
fn chunk_tables(sequences: &[SeqSpan]) -> (Vec<i32>, Vec<i32>, usize) {
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
    (chunks, seqs, num_chunks)
}

/// The elements of `a` in row-major order.
fn host_vec(a: &Array4<f64>) -> Vec<f64> {
    a.iter().copied().collect()
}

impl DeviceProblem {
    /// Upload `p` (its inputs rounded to `opts.dtype`; gates to f32).
    pub fn upload(p: &Problem, opts: &GpuOptions) -> Result<DeviceProblem, GpuError> {
        check_supported(p, opts)?;
        let s = &gpu()?.stream;
        let dtype = opts.dtype;
        let gv: Vec<f32> = p.g().iter().map(|&x| x as f32).collect();
        let h0: Option<Vec<f32>> = p.h0().map(|h| h.iter().map(|&x| x as f32).collect());
        Self::assemble(
            p.dims(),
            p.gate_kind(),
            opts,
            [
                DBuf::upload(s, dtype, &host_vec(p.q()), "q")?,
                DBuf::upload(s, dtype, &host_vec(p.k()), "k")?,
                DBuf::upload(s, dtype, &host_vec(p.v()), "v")?,
            ],
            &gv,
            h0.as_deref(),
            &p.sequences(),
            p.scale(),
        )
    }

    /// Upload raw f32 data (row-major, fla layouts; `g` per channel `[B,T,H,K]` or scalar
    /// `[B,T,H]`), one sequence per batch row. Values are rounded to `opts.dtype`.
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
    ) -> Result<DeviceProblem, GpuError> {
        opts.validate()?;
        let d = dims;
        check_dims(&d)?;
        let rows = d.b * d.t * d.h;
        let kg = match gate_kind {
            GateKind::Scalar => 1,
            GateKind::PerChannel => d.k,
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
        let s = &gpu()?.stream;
        let seqs: Vec<SeqSpan> = (0..d.b)
            .map(|b| SeqSpan {
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
            [
                DBuf::upload(s, opts.dtype, q, "q")?,
                DBuf::upload(s, opts.dtype, k, "k")?,
                DBuf::upload(s, opts.dtype, v, "v")?,
            ],
            g,
            h0,
            &seqs,
            scale,
        )
    }

    /// The problem from its uploaded q, k, v: gates, h0 and the chunk tables uploaded, the
    /// default state-kernel layout chosen.
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        d: Dims,
        gate_kind: GateKind,
        opts: &GpuOptions,
        [q, k, v]: [DBuf; 3],
        gv: &[f32],
        h0: Option<&[f32]>,
        sequences: &[SeqSpan],
        scale: f64,
    ) -> Result<DeviceProblem, GpuError> {
        let gp = gpu()?;
        let s = &gp.stream;
        let gate_cols = match gate_kind {
            GateKind::PerChannel => d.k,
            GateKind::Scalar => 1,
        };
        let (chunks, seqs, num_chunks) = chunk_tables(sequences);
        let layout = state_layout_from_env(
            opts,
            &d,
            default_state_layout(
                opts,
                &d,
                gp.info.sm_count as usize,
                gp.max_smem_optin as usize,
            ),
        );
        Ok(DeviceProblem {
            opts: *opts,
            dims: d,
            gate_cols: gate_cols as i32,
            scale: scale as f32,
            q,
            k,
            v,
            g: buffers::upload_f32(s, gv, "g")?,
            h0: h0.map(|h| buffers::upload_f32(s, h, "h0")).transpose()?,
            chunks: buffers::upload_i32(s, &chunks, "chunks")?,
            seqs: buffers::upload_i32(s, &seqs, "seqs")?,
            num_chunks,
            bv: layout.0,
            warps: layout.1,
        })
    }

    /// Allocate outputs and intermediates; `poison` fills them with NaN first (tests prove every
    /// element is written).
    pub fn alloc_outputs(&self, poison: bool) -> Result<DeviceOutputs, GpuError> {
        let s = &gpu()?.stream;
        let d = self.dims;
        let dt = self.opts.dtype;
        let nc = self.num_chunks;
        Ok(DeviceOutputs {
            qg: DBuf::alloc(s, dt, nc * d.h * 64 * d.k, poison)?,
            kgt: DBuf::alloc(s, dt, nc * d.h * 64 * d.k, poison)?,
            a: DBuf::alloc(s, dt, nc * d.h * 64 * 64, poison)?,
            gamma: buffers::alloc_f32(s, nc * d.h * d.k, poison)?,
            o: DBuf::alloc(s, dt, d.b * d.t * d.h * d.v, poison)?,
            ht: buffers::alloc_f32(s, d.n * d.h * d.k * d.v, poison)?,
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

    /// Floating-point operations of the chunked forward, counting only the causal half of the
    /// intra-chunk products: 4KV + (C - c)K + CV per token and head (C = 64, c = 16).
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

    /// Fails unless every buffer holds the problem's dtype (outputs allocated for another problem).
    pub(crate) fn check_dtype(&self, bufs: &[&DBuf]) -> Result<(), GpuError> {
        if bufs.iter().all(|b| b.holds(self.opts.dtype)) {
            Ok(())
        } else {
            Err(GpuError::Unsupported("buffer dtype mismatch".into()))
        }
    }

    /// The first kernel alone (chunk-local cumsum, decayed q / k, A, gamma).
    pub fn launch_intra(&self, out: &mut DeviceOutputs) -> Result<(), GpuError> {
        let s = &gpu()?.stream;
        if self.num_chunks == 0 {
            return Ok(());
        }
        self.check_dtype(&[&self.q, &self.k, &out.qg, &out.kgt, &out.a])?;
        let d = self.dims;
        let dt = self.opts.dtype;
        let (name, smem) = if dt == Dtype::F32 {
            // sF [64][K] f32, 9 slice arrays [16][68] f32, sZ [64][K] u8, sZt [16][68] u8,
            // sRowSafe [64] u16
            let smem = (64 * d.k + 9 * 16 * 68) * 4 + 64 * d.k + 16 * 68 + 64 * 2;
            if intra_fast() {
                ("gla_fwd_intra_fast_f32".to_string(), smem)
            } else {
                ("gla_fwd_intra_f32".to_string(), smem)
            }
        } else {
            // per 32-channel slice: F, q*D, k/D [32][65] f32; q, k [32][66] and the off-diagonal
            // factors [48 + 96][40] in the input dtype; reset counts and flags [32][68] u8 x 2;
            // the kgT stage [32][66] in the input dtype
            let smem =
                3 * 32 * 65 * 4 + 2 * 32 * 66 * 2 + (48 + 96) * 40 * 2 + 2 * 32 * 68 + 32 * 66 * 2;
            (format!("gla_fwd_intra_tc_{}", suffix(dt)), smem)
        };
        let shape = Shape {
            grid: (self.num_chunks, d.h, 1),
            threads: 256,
            smem,
        };
        let args = [
            Arg::buf(&self.q, s),
            Arg::buf(&self.k, s),
            Arg::slice(&self.g, s),
            Arg::I32(self.gate_cols),
            Arg::slice(&self.chunks, s),
            Arg::int(d.t),
            Arg::int(d.h),
            Arg::int(d.k),
            Arg::F32(self.scale),
            Arg::buf(&out.qg, s),
            Arg::buf(&out.kgt, s),
            Arg::buf(&out.a, s),
            Arg::slice(&out.gamma, s),
        ];
        launch(module::forward()?, &name, shape, &args)
    }

    /// The second kernel alone (states and output); needs `launch_intra` first.
    pub fn launch_state(&self, out: &mut DeviceOutputs) -> Result<(), GpuError> {
        self.launch_state_saving(out, None)
    }

    /// [`Self::launch_state`], also writing the chunk start states `Hs[p] = rnd(S)`
    /// (`[chunk][head][K][V]`, the input dtype) to `hs` when given: the backward reads them
    /// instead of recomputing them (the same rounded values the output product uses).
    pub(crate) fn launch_state_saving(
        &self,
        out: &mut DeviceOutputs,
        hs: Option<&DBuf>,
    ) -> Result<(), GpuError> {
        let s = &gpu()?.stream;
        self.check_dtype(&[&self.v, &out.qg, &out.kgt, &out.a, &out.o])?;
        if let Some(b) = hs {
            self.check_dtype(&[b])?;
        }
        let d = self.dims;
        let dt = self.opts.dtype;
        let mut args = vec![
            Arg::buf(&self.v, s),
            Arg::opt(self.h0.as_ref(), s),
            Arg::slice(&self.seqs, s),
            Arg::int(d.t),
            Arg::int(d.h),
            Arg::int(d.v),
            Arg::F32(self.scale),
            Arg::buf(&out.qg, s),
            Arg::buf(&out.kgt, s),
            Arg::buf(&out.a, s),
            Arg::slice(&out.gamma, s),
            Arg::buf(&out.o, s),
            Arg::slice(&out.ht, s),
            hs.map_or(Arg::Ptr(0), |b| Arg::buf(b, s)),
        ];
        let (name, shape) = if dt == Dtype::F32 {
            args.push(Arg::I32((self.opts.precision == Precision::Tf32) as i32));
            // qg, kg^T [64][K] each, A [64][64], v [64][32], S [K][32], gamma [K], all f32
            let smem = (64 * d.k * 2 + 64 * 64 + 64 * 32 + d.k * 32 + d.k) * 4;
            let grid = (d.v / 32, d.h, d.n);
            let shape = Shape {
                grid,
                threads: 128,
                smem,
            };
            (format!("gla_fwd_state_f32_k{}", d.k), shape)
        } else {
            let bv = self.bv;
            let w8 = if self.warps == 8 { "_w8" } else { "" };
            let shape = Shape {
                grid: (d.v / bv, d.h, d.n),
                threads: 32 * self.warps,
                smem: state_smem(d.k, bv),
            };
            (
                format!("gla_fwd_state_{}_k{}_v{bv}{w8}", suffix(dt), d.k),
                shape,
            )
        };
        launch(module::forward()?, &name, shape, &args)
    }

    /// Copy the outputs back as a [`Solution`] (synchronises the stream; execution errors surface here).
    pub fn download(&self, out: &DeviceOutputs) -> Result<Solution, GpuError> {
        let s = &gpu()?.stream;
        let d = self.dims;
        s.synchronize()
            .map_err(|e| GpuError::cuda("kernel execution", e))?;
        let o = out
            .o
            .download(s, self.opts.dtype, d.b * d.t * d.h * d.v, "o")?;
        let ht = buffers::download_f32(s, &out.ht, d.n * d.h * d.k * d.v, "ht")?;
        Ok(Solution {
            o: array4(o, (d.b, d.t, d.h, d.v), "o")?,
            ht: array4(ht, (d.n, d.h, d.k, d.v), "ht")?,
            grads: None,
        })
    }

    /// Number of chunks over all sequences.
    pub fn num_chunks(&self) -> usize {
        self.num_chunks
    }

    /// Value-block width chosen for the state kernel.
    pub fn value_block(&self) -> usize {
        self.bv
    }

    /// Warps per block of the state kernel (see [`STATE_LAYOUTS`]).
    pub fn state_warps(&self) -> usize {
        self.warps
    }

    /// Force the state kernel's layout: `bv` value columns per block and `warps` warps per block,
    /// one of [`STATE_LAYOUTS`] for bf16 / f16 (f32: (32, 4) only), with `bv` dividing V.
    /// The layout changes which block or warp computes an element of o and hT, never its
    /// operations or their order: every value column is an independent sequence of the same
    /// operations, so results are bit-identical for every layout (tested in
    /// gpu/tests/gpu_forward.rs).
    pub fn set_state_layout(&mut self, bv: usize, warps: usize) -> Result<(), GpuError> {
        if !state_layout_ok(&self.opts, &self.dims, (bv, warps)) {
            return Err(GpuError::Unsupported(format!(
                "state kernel layout BV = {bv}, {warps} warps for dtype {:?}, K = {}, V = {}: \
                 f32 takes (32, 4); bf16 / f16 take one of {:?} (K, BV, warps), with BV dividing V",
                self.opts.dtype,
                self.dims.k,
                self.dims.v,
                STATE_LAYOUTS
                    .iter()
                    .filter(|l| l.0 == self.dims.k)
                    .collect::<Vec<_>>()
            )));
        }
        self.bv = bv;
        self.warps = warps;
        Ok(())
    }

    /// Size in elements of o.
    pub fn o_len(out: &DeviceOutputs) -> usize {
        out.o.len()
    }
}

/// The kernel-name suffix of a dtype.
pub(crate) fn suffix(dt: Dtype) -> &'static str {
    match dt {
        Dtype::Bf16 => "bf16",
        Dtype::F16 => "f16",
        _ => "f32",
    }
}

/// Layouts (K, BV, warps) of the bf16 / f16 state kernel (`gla_fwd_state_<T>_k<K>_v<BV>[_w8]`
/// in gpu/kernels/gla_fwd.cu). Every layout gives bit-identical results; they differ in how many
/// blocks share the work (V / BV per head and sequence) and in how often the V / BV blocks of one
/// head re-read the same qg, kgT and A tiles (from L2).
pub const STATE_LAYOUTS: &[(usize, usize, usize)] = &[
    (64, 32, 4),
    (64, 64, 4),
    (128, 32, 4),
    (128, 32, 8),
    (128, 64, 8),
    (128, 128, 8),
    (256, 32, 4),
    (256, 32, 8),
    (256, 64, 8),
];

/// Whether the state kernel has layout `l` = (BV, warps) for `opts` and `d`: f32 only (32, 4),
/// bf16 / f16 one of [`STATE_LAYOUTS`]; BV must divide V.
fn state_layout_ok(opts: &GpuOptions, d: &Dims, l: (usize, usize)) -> bool {
    let listed = if opts.dtype == Dtype::F32 {
        l == (32, 4)
    } else {
        STATE_LAYOUTS.contains(&(d.k, l.0, l.1))
    };
    listed && d.v % l.0 == 0
}

/// Dynamic shared memory in bytes of the bf16 / f16 forward state kernel at (K, BV)
/// (`StateSmem<K, BV>` in gla_fwd.cu): two stages of (qg, kg^T, A, v, gamma) and rnd(S)^T.
fn state_smem(k: usize, bv: usize) -> usize {
    let (kp, cp, vp) = (k + 8, 64 + 8, bv + 8);
    let stage = 64 * kp + k * cp + 64 * cp + 64 * vp + 2 * k;
    2 * (2 * stage + bv * kp)
}

/// Default state-kernel layout (BV, warps). f32: (32, 4). bf16 / f16:
/// - K = 128: the widest of BV = 128, 64 (8 warps, one block per SM: 157 / 124 KB of shared
///   memory) that still gives at least 0.9 blocks per SM and fits the device's shared memory
///   (`max_smem`, bytes per block), else BV = 32 with 4 warps (two blocks per SM on an H100).
///   A wide block reads each chunk's qg, kgT and A once for V / BV columns instead of V / 32
///   times, which pays while the blocks still fill the GPU and costs far more than it saves when
///   they leave most SMs idle (B = 2, T = 16384, H = 16: 32 blocks at BV = 128); the timings are
///   BENCHMARKS.md G10.
/// - K = 64: BV = 64 when there are at least two (block, head, sequence) programs per SM, else 32.
/// - K = 256: BV = 32 (the (64, 8) layout is kept for A/B timing).
///
/// (`GLA_STATE_BV` and `GLA_STATE_WARPS` override the choice for A/B timing: see
/// [`state_layout_from_env`].)
fn default_state_layout(
    opts: &GpuOptions,
    d: &Dims,
    sm_count: usize,
    max_smem: usize,
) -> (usize, usize) {
    if opts.dtype == Dtype::F32 {
        return (32, 4);
    }
    let programs = |bv: usize| (d.v / bv) * d.h * d.n;
    match d.k {
        128 => [128, 64]
            .into_iter()
            .find(|&bv| {
                d.v % bv == 0
                    && 10 * programs(bv) >= 9 * sm_count
                    && state_smem(d.k, bv) <= max_smem
            })
            .map_or((32, 4), |bv| (bv, 8)),
        64 if d.v % 64 == 0 && programs(64) >= 2 * sm_count => (64, 4),
        _ => (32, 4),
    }
}

/// `GLA_STATE_BV` / `GLA_STATE_WARPS` in place of `l`'s parts (A/B timing), where they name a
/// layout the kernels have ([`state_layout_ok`]); otherwise `l`.
fn state_layout_from_env(opts: &GpuOptions, d: &Dims, l: (usize, usize)) -> (usize, usize) {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|x| x.parse::<usize>().ok())
    };
    let want = (
        env("GLA_STATE_BV").unwrap_or(l.0),
        env("GLA_STATE_WARPS").unwrap_or(l.1),
    );
    if state_layout_ok(opts, d, want) {
        want
    } else {
        l
    }
}

/// f32 intra-kernel variant. Default: the kernel built with `ex2.approx.ftz` / `rcp.approx.ftz`
/// (`gla_fwd_intra_fast_f32`, see `exp_nonpos` in gpu/kernels/gla_common.cuh; same tests and
/// bounds). `GLA_INTRA_ACCURATE=1` selects the `exp2f` / `__frcp_rn` kernel
/// (`gla_fwd_intra_f32`), kept for A/B timing. (The bf16 / f16 kernels use `ex2.approx.ftz`.)
fn intra_fast() -> bool {
    std::env::var("GLA_INTRA_ACCURATE").as_deref() != Ok("1")
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

#[cfg(test)]
mod tests {
    use super::*;

    fn dims(b: usize, t: usize, h: usize, k: usize, v: usize) -> Dims {
        Dims {
            b,
            t,
            h,
            k,
            v,
            n: b,
        }
    }

    #[test]
    fn default_state_layout_fills_the_gpu_and_fits_its_shared_memory() {
        // the rule, without a GPU: an H100 has 132 SMs and 227 KB of opt-in shared memory
        let bf16 = GpuOptions::new(Dtype::Bf16);
        let h100 = |d: &Dims| default_state_layout(&bf16, d, 132, 232_448);
        // 128 head-sequences: BV = 128 (128 blocks >= 0.9 x 132)
        assert_eq!(h100(&dims(8, 4096, 16, 128, 128)), (128, 8));
        assert_eq!(h100(&dims(8, 4096, 16, 128, 256)), (128, 8));
        // 32 head-sequences: 32 blocks at BV = 128, 64 at 64, both too few: BV = 32
        assert_eq!(h100(&dims(2, 16384, 16, 128, 128)), (32, 4));
        // 64 head-sequences, V = 256: BV = 128 gives 128 blocks
        assert_eq!(h100(&dims(4, 4096, 16, 128, 256)), (128, 8));
        // 96 head-sequences: BV = 64 (192 blocks), not 128 (96 blocks)
        assert_eq!(h100(&dims(6, 4096, 16, 128, 128)), (64, 8));
        // a card with 100 KB per block fits neither wide layout
        assert_eq!(
            default_state_layout(&bf16, &dims(8, 4096, 16, 128, 128), 132, 101_376),
            (32, 4)
        );
        // K = 64 and K = 256 keep their rules; f32 takes (32, 4)
        assert_eq!(h100(&dims(8, 4096, 16, 64, 64)), (32, 4));
        assert_eq!(h100(&dims(40, 4096, 16, 64, 64)), (64, 4));
        assert_eq!(h100(&dims(8, 4096, 16, 256, 256)), (32, 4));
        let f32o = GpuOptions::new(Dtype::F32);
        assert_eq!(
            default_state_layout(&f32o, &dims(8, 4096, 16, 128, 128), 132, 232_448),
            (32, 4)
        );
        // every default is a layout the kernels have
        for &(b, t, h, k, v) in &[
            (8, 4096, 16, 128, 128),
            (6, 4096, 16, 128, 128),
            (2, 16384, 16, 128, 128),
            (40, 4096, 16, 64, 64),
            (8, 4096, 16, 256, 256),
        ] {
            let d = dims(b, t, h, k, v);
            assert!(state_layout_ok(&bf16, &d, h100(&d)), "{d:?}");
        }
        // the shared memory of each wide layout is as documented (157 / 124 KB)
        assert_eq!(state_smem(128, 128), 160_768);
        assert_eq!(state_smem(128, 64), 126_976);
    }
}
