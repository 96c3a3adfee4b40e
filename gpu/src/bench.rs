//! Timing of the GPU kernels: CUDA events, warm-up, median of many runs, inputs rotated over
//! several buffer sets so that the L2 cache (50 MB on H100) cannot hold a previous run's data.

use crate::backward::DeviceBwdProblem;
use crate::device::gpu;
use crate::error::GpuError;
use crate::forward::{DeviceOutputs, DeviceProblem};
use crate::options::GpuOptions;
use cudarc::driver::CudaEvent;
use gla_reference::{Dims, Dtype, GateKind};
use rayon::prelude::*;

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchMode {
    /// Forward only.
    Fwd,
    /// Backward only (the forward that produces its inputs runs untimed before each timed run).
    Bwd,
    /// Forward + backward.
    FwdBwd,
}

impl std::str::FromStr for BenchMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fwd" => Ok(BenchMode::Fwd),
            "bwd" => Ok(BenchMode::Bwd),
            "fwdbwd" => Ok(BenchMode::FwdBwd),
            _ => Err(format!("unknown mode {s:?} (fwd, bwd, fwdbwd)")),
        }
    }
}

/// Benchmark settings.
#[derive(Debug, Clone, Copy)]
pub struct BenchConfig {
    /// Untimed runs first.
    pub warmup: usize,
    /// Timed runs (the median is reported).
    pub iters: usize,
    /// Input buffer sets rotated between runs.
    pub buffers: usize,
    /// Memory bandwidth (bytes/s) used for the floor.
    pub peak_bw: f64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            warmup: 5,
            iters: 30,
            buffers: 3,
            peak_bw: 3.0e12,
        }
    }
}

/// One timed configuration.
#[derive(Debug, Clone)]
pub struct BenchResult {
    /// B, T, H, K, V.
    pub shape: (usize, usize, usize, usize, usize),
    /// Input dtype.
    pub dtype: Dtype,
    /// Median time in ms.
    pub median_ms: f64,
    /// Fastest run in ms.
    pub min_ms: f64,
    /// Slowest run in ms.
    pub max_ms: f64,
    /// Minimal bytes (q, k, v, g read once; o written once).
    pub min_bytes: f64,
    /// FLOPs of the algorithm.
    pub flops: f64,
    /// Floor in ms: min_bytes / peak bandwidth.
    pub floor_ms: f64,
    /// Value-block width of the state kernel.
    pub value_block: usize,
    /// Median time of the first kernel (intra-chunk) in ms.
    pub intra_ms: f64,
    /// Median time of the second kernel (states + output) in ms.
    pub state_ms: f64,
    /// What was timed.
    pub mode: BenchMode,
    /// Backward modes: median time of the forward part (`FwdBwd`) in ms, 0 otherwise.
    pub fwd_ms: f64,
    /// Backward modes: median time of the backward part in ms, 0 otherwise.
    pub bwd_ms: f64,
    /// Median time of every kernel launch in ms, in launch order (`fwd intra`, `fwd state`,
    /// `bwd state`, `bwd dqk`, `bwd dv`, ...), each from the CUDA events recorded around it.
    pub kernels: Vec<(String, f64)>,
}

impl BenchResult {
    /// Effective bandwidth (minimal bytes / median time), GB/s.
    pub fn gbps(&self) -> f64 {
        self.min_bytes / (self.median_ms * 1e-3) / 1e9
    }
    /// TFLOP/s at the median.
    pub fn tflops(&self) -> f64 {
        self.flops / (self.median_ms * 1e-3) / 1e12
    }
    /// Median time over the memory floor.
    pub fn ratio_to_floor(&self) -> f64 {
        self.median_ms / self.floor_ms
    }
}

struct Rng(u64);
impl Rng {
    fn next_f32(&mut self) -> f32 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545F4914F6CDD1D);
        ((x >> 40) as f32) / ((1u64 << 24) as f32)
    }
}

/// `n` values `f(u)`, u the generator's uniform stream from `seed`. The stream is cut into blocks
/// whose start states come from a serial walk of the state alone (a few shifts per value); the
/// blocks are then filled in parallel, so the values are those of one serial pass, and a
/// benchmark's inputs stay the same from run to run and from machine to machine.
fn rand_vec(n: usize, seed: u64, f: impl Fn(f32) -> f32 + Sync) -> Vec<f32> {
    const BLOCK: usize = 1 << 18;
    let mut r = Rng(seed.wrapping_mul(0x9E3779B97F4A7C15) | 1);
    let mut starts = Vec::with_capacity(n.div_ceil(BLOCK));
    for i in (0..n).step_by(BLOCK) {
        starts.push(r.0);
        for _ in i..(i + BLOCK).min(n) {
            r.next_f32();
        }
    }
    let mut out = vec![0.0f32; n];
    out.par_chunks_mut(BLOCK)
        .zip(starts.par_iter())
        .for_each(|(block, &s)| {
            let mut r = Rng(s);
            for x in block {
                *x = f(r.next_f32());
            }
        });
    out
}

/// One input set of the benchmarks: q, k, v uniform in [-1, 1), per-channel gates
/// g = logsigmoid(x)/16 with x uniform in [-4, 4), from `seed`.
fn bench_inputs(
    (b, t, h, k, v): (usize, usize, usize, usize, usize),
    seed: u64,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let q = rand_vec(b * t * h * k, seed, |x| 2.0 * x - 1.0);
    let kk = rand_vec(b * t * h * k, seed + 7, |x| 2.0 * x - 1.0);
    let vv = rand_vec(b * t * h * v, seed + 13, |x| 2.0 * x - 1.0);
    let gg = rand_vec(b * t * h * k, seed + 17, |x| {
        let z = 8.0 * x - 4.0;
        -((1.0 + (-z).exp()).ln()) / 16.0
    });
    (q, kk, vv, gg)
}

/// Time the forward at one shape. Inputs: q, k, v uniform in [-1, 1), per-channel gates
/// g = logsigmoid(x)/16 with x uniform in [-4, 4) (fla's GLA normalizer), no h0.
pub fn bench_forward(
    shape: (usize, usize, usize, usize, usize),
    opts: &GpuOptions,
    cfg: &BenchConfig,
) -> Result<BenchResult, GpuError> {
    let (b, t, h, k, v) = shape;
    let g = gpu()?;
    let dims = Dims {
        b,
        t,
        h,
        k,
        v,
        n: b,
    };
    let mut sets = Vec::new();
    for s in 0..cfg.buffers.max(1) {
        let seed = 1000 + s as u64;
        let (q, kk, vv, gg) = bench_inputs(shape, seed);
        sets.push(DeviceProblem::from_raw(
            dims,
            GateKind::PerChannel,
            opts,
            &q,
            &kk,
            &vv,
            &gg,
            None,
            (k as f64).powf(-0.5),
        )?);
    }
    let mut out: DeviceOutputs = sets[0].alloc_outputs(false)?;
    for i in 0..cfg.warmup {
        sets[i % sets.len()].launch(&mut out)?;
    }
    g.stream
        .synchronize()
        .map_err(|e| GpuError::cuda("warm-up", e))?;
    let (mut times, mut t_intra, mut t_state) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..cfg.iters.max(1) {
        let (e0, em, e1) = (event()?, event()?, event()?);
        let p = &sets[i % sets.len()];
        record(&e0)?;
        p.launch_intra(&mut out)?;
        record(&em)?;
        p.launch_state(&mut out)?;
        record(&e1)?;
        times.push(elapsed_ms(&e0, &e1)?);
        t_intra.push(elapsed_ms(&e0, &em)?);
        t_state.push(elapsed_ms(&em, &e1)?);
    }
    let intra_ms = median(&mut t_intra);
    let state_ms = median(&mut t_state);
    let kernels = vec![
        ("fwd intra".to_string(), intra_ms),
        ("fwd state".to_string(), state_ms),
    ];
    let median_ms = median(&mut times);
    let p = &sets[0];
    Ok(BenchResult {
        shape,
        dtype: opts.dtype,
        median_ms,
        min_ms: times[0],
        max_ms: *times.last().unwrap_or(&median_ms),
        min_bytes: p.min_bytes(),
        flops: p.flops(),
        floor_ms: p.min_bytes() / cfg.peak_bw * 1e3,
        value_block: p.value_block(),
        intra_ms,
        state_ms,
        mode: BenchMode::Fwd,
        fwd_ms: 0.0,
        bwd_ms: 0.0,
        kernels,
    })
}

/// Sorts `v` (ascending) and returns its median.
fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

/// A new timing event.
fn event() -> Result<CudaEvent, GpuError> {
    let flags = Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT);
    gpu()?
        .ctx
        .new_event(flags)
        .map_err(|e| GpuError::cuda("event", e))
}

/// Record `e` on the process stream.
fn record(e: &CudaEvent) -> Result<(), GpuError> {
    e.record(&gpu()?.stream)
        .map_err(|e| GpuError::cuda("event record", e))
}

/// Milliseconds from `a` to `b` (waits for `b`; execution errors surface here).
fn elapsed_ms(a: &CudaEvent, b: &CudaEvent) -> Result<f64, GpuError> {
    a.elapsed_ms(b)
        .map(|x| x as f64)
        .map_err(|e| GpuError::cuda("kernel execution", e))
}

/// Time the backward (`Bwd`) or forward + backward (`FwdBwd`) at one shape: inputs as in
/// [`bench_forward`] plus `do` uniform in [-1, 1), no dhT. `Bwd` runs the forward (which produces
/// the intermediates the backward reads) untimed before each timed backward.
pub fn bench_backward(
    mode: BenchMode,
    shape: (usize, usize, usize, usize, usize),
    opts: &GpuOptions,
    cfg: &BenchConfig,
) -> Result<BenchResult, GpuError> {
    let (b, t, h, k, v) = shape;
    let g = gpu()?;
    let dims = Dims {
        b,
        t,
        h,
        k,
        v,
        n: b,
    };
    let mut sets = Vec::new();
    for s in 0..cfg.buffers.max(1) {
        let seed = 1000 + s as u64;
        let (q, kk, vv, gg) = bench_inputs(shape, seed);
        let dd = rand_vec(b * t * h * v, seed + 23, |x| 2.0 * x - 1.0);
        sets.push(DeviceBwdProblem::from_raw(
            dims,
            GateKind::PerChannel,
            opts,
            &q,
            &kk,
            &vv,
            &gg,
            None,
            (k as f64).powf(-0.5),
            &dd,
            None,
        )?);
    }
    let mut out = sets[0].alloc_outputs(false)?;
    for i in 0..cfg.warmup {
        sets[i % sets.len()].launch(&mut out)?;
    }
    g.stream
        .synchronize()
        .map_err(|e| GpuError::cuda("warm-up", e))?;
    let (mut times, mut tf, mut tb) = (Vec::new(), Vec::new(), Vec::new());
    // per kernel: name and its times (events recorded between consecutive launches)
    let mut per: Vec<(String, Vec<f64>)> = Vec::new();
    for i in 0..cfg.iters.max(1) {
        let p = &sets[i % sets.len()];
        let (e0, e1) = (event()?, event()?);
        if mode == BenchMode::Bwd {
            p.launch_forward(&mut out)?;
        }
        record(&e0)?;
        let mut marks: Vec<(&'static str, CudaEvent)> = Vec::new();
        if mode == BenchMode::FwdBwd {
            // the forward as a backward needs it (its state kernel also stores the states)
            p.launch_forward_marked(&mut out, |name| {
                let e = event()?;
                record(&e)?;
                marks.push((name, e));
                Ok(())
            })?;
        }
        let fwd_marks = marks.len();
        p.launch_backward_marked(&mut out, |name| {
            let e = event()?;
            record(&e)?;
            marks.push((name, e));
            Ok(())
        })?;
        record(&e1)?;
        times.push(elapsed_ms(&e0, &e1)?);
        let em = if fwd_marks > 0 {
            &marks[fwd_marks - 1].1
        } else {
            &e0
        };
        tf.push(elapsed_ms(&e0, em)?);
        tb.push(elapsed_ms(em, &e1)?);
        let mut prev = &e0;
        for (j, (name, e)) in marks.iter().enumerate() {
            let label = if j < fwd_marks {
                format!("fwd {name}")
            } else {
                format!("bwd {name}")
            };
            if per.len() <= j {
                per.push((label, Vec::new()));
            }
            per[j].1.push(elapsed_ms(prev, e)?);
            prev = e;
        }
    }
    let (fwd_ms, bwd_ms) = (median(&mut tf), median(&mut tb));
    let kernels = per
        .into_iter()
        .map(|(n, mut t)| (n, median(&mut t)))
        .collect();
    let median_ms = median(&mut times);
    let p = &sets[0];
    let (mut min_bytes, mut flops) = (p.min_bytes(), p.flops());
    if mode == BenchMode::FwdBwd {
        min_bytes += p.fwd.min_bytes();
        flops += p.fwd.flops();
    }
    Ok(BenchResult {
        shape,
        dtype: opts.dtype,
        median_ms,
        min_ms: times[0],
        max_ms: *times.last().unwrap_or(&median_ms),
        min_bytes,
        flops,
        floor_ms: min_bytes / cfg.peak_bw * 1e3,
        value_block: p.fwd.value_block(),
        intra_ms: 0.0,
        state_ms: 0.0,
        mode,
        fwd_ms,
        bwd_ms,
        kernels,
    })
}

/// Run [`bench_forward`] (`Fwd`) or [`bench_backward`] (`Bwd`, `FwdBwd`).
pub fn bench(
    mode: BenchMode,
    shape: (usize, usize, usize, usize, usize),
    opts: &GpuOptions,
    cfg: &BenchConfig,
) -> Result<BenchResult, GpuError> {
    match mode {
        BenchMode::Fwd => bench_forward(shape, opts, cfg),
        m => bench_backward(m, shape, opts, cfg),
    }
}

/// One table row, e.g. for the CLI.
pub fn format_row(r: &BenchResult) -> String {
    let (b, t, h, k, v) = r.shape;
    let parts = match r.mode {
        BenchMode::Fwd => format!(
            "BV={} (intra {:.3} + state {:.3} ms)",
            r.value_block, r.intra_ms, r.state_ms
        ),
        BenchMode::Bwd => format!("bwd (forward untimed) {:.3} ms", r.bwd_ms),
        BenchMode::FwdBwd => format!("fwd {:.3} + bwd {:.3} ms", r.fwd_ms, r.bwd_ms),
    };
    let parts = if r.mode == BenchMode::Fwd {
        parts
    } else {
        let ks: Vec<String> = r
            .kernels
            .iter()
            .map(|(n, t)| format!("{n} {t:.3}"))
            .collect();
        format!("{parts} [{}]", ks.join(", "))
    };
    format!(
        "{:>18} {:>5} {:>9.3} {:>9.3} {:>9.3} {:>8.0} {:>8.1} {:>8.3} {:>6.2}x  {}",
        format!("{b},{t},{h},{k},{v}"),
        format!("{:?}", r.dtype).to_lowercase(),
        r.median_ms,
        r.min_ms,
        r.max_ms,
        r.gbps(),
        r.tflops(),
        r.floor_ms,
        r.ratio_to_floor(),
        parts
    )
}

/// Header matching [`format_row`].
pub fn header() -> String {
    format!(
        "{:>18} {:>5} {:>9} {:>9} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "B,T,H,K,V",
        "dtype",
        "median_ms",
        "min_ms",
        "max_ms",
        "GB/s",
        "TFLOP/s",
        "floor_ms",
        "/floor"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blocked, parallel fill gives the serial stream's values, also across a partial last
    /// block (a benchmark's inputs must not depend on how they were generated).
    #[test]
    fn rand_vec_is_the_serial_stream() {
        let f = |x: f32| 2.0 * x - 1.0;
        let n = 3 * (1 << 18) + 5;
        let mut r = Rng(42u64.wrapping_mul(0x9E3779B97F4A7C15) | 1);
        let serial: Vec<f32> = (0..n).map(|_| f(r.next_f32())).collect();
        let par = rand_vec(n, 42, f);
        assert_eq!(par.len(), n);
        assert!(serial
            .iter()
            .zip(&par)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        assert!(rand_vec(0, 42, f).is_empty());
    }
}
