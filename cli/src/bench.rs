//! `glacheck bench`: time the GPU kernels (CUDA events, warm-up, median of many runs, input sets
//! rotated so the L2 cache cannot hold a previous run's data). The timing logic lives in
//! `gla_gpu::bench`; this module parses arguments and prints the table.

use crate::common::{choice, Status};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use gla_gpu::bench::{bench, format_row, header, BenchConfig, BenchMode};
use gla_gpu::GpuOptions;
use gla_reference::Dtype;

/// Implementation to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchImpl {
    /// glacheck's CUDA kernels (gla-gpu).
    Gpu,
}

/// What to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Forward pass.
    Fwd,
    /// Backward pass alone (the forward it needs runs untimed before each timed backward).
    Bwd,
    /// Forward + backward.
    Fwdbwd,
}

/// `--dtype` names: the kernels' input dtypes (bf16 and f16 on tensor cores; f32 in FFMA, no
/// TF32).
const DTYPE_NAMES: &[&str] = &["bf16", "f16", "f32"];

/// Arguments of `glacheck bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Implementation to time.
    #[arg(long = "impl", value_enum, default_value = "gpu")]
    pub implementation: BenchImpl,
    /// Pass to time.
    #[arg(long, value_enum, default_value = "fwd")]
    pub mode: Mode,
    /// Shape B,T,H,K,V (repeatable). Default: the shapes (8,4096,16,128,128;
    /// 8,4096,16,128,256; 8,2048,16,128,128; 8,16384,16,128,128; 2,16384,16,128,128).
    #[arg(long = "shape")]
    pub shapes: Vec<String>,
    /// Input dtype.
    #[arg(long, value_parser = choice::<Dtype>(DTYPE_NAMES), default_value = "bf16")]
    pub dtype: Dtype,
    /// Timed runs per shape (median reported).
    #[arg(long, default_value_t = 30)]
    pub iters: usize,
    /// Untimed warm-up runs.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Input buffer sets rotated between runs.
    #[arg(long, default_value_t = 3)]
    pub buffers: usize,
    /// Memory bandwidth in GB/s for the floor (H100 device-to-device copy: about 3000).
    #[arg(long, default_value_t = 3000.0)]
    pub peak_gbps: f64,
}

fn parse_shape(s: &str) -> Result<(usize, usize, usize, usize, usize)> {
    let v: Vec<usize> = s
        .split(',')
        .map(|x| x.trim().parse::<usize>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("bad shape {s:?}: want B,T,H,K,V"))?;
    if v.len() != 5 || v.contains(&0) {
        bail!("bad shape {s:?}: want five positive integers B,T,H,K,V");
    }
    Ok((v[0], v[1], v[2], v[3], v[4]))
}

/// Run `glacheck bench`.
pub fn run(a: BenchArgs) -> Result<Status> {
    let BenchImpl::Gpu = a.implementation;
    let shapes = if a.shapes.is_empty() {
        vec![
            (8, 4096, 16, 128, 128),
            (8, 4096, 16, 128, 256),
            (8, 2048, 16, 128, 128),
            (8, 16384, 16, 128, 128),
            (2, 16384, 16, 128, 128),
        ]
    } else {
        a.shapes
            .iter()
            .map(|s| parse_shape(s))
            .collect::<Result<Vec<_>>>()?
    };
    let mode = match a.mode {
        Mode::Fwd => BenchMode::Fwd,
        Mode::Bwd => BenchMode::Bwd,
        Mode::Fwdbwd => BenchMode::FwdBwd,
    };
    let dtype = a.dtype;
    let info = match gla_gpu::available() {
        Ok(i) => i,
        Err(why) => bail!("no GPU: {why}"),
    };
    println!(
        "device: {} ({}, {} SMs); mode {:?}; {} warm-up, median of {} runs, {} input sets rotated",
        info.name, info.arch, info.sm_count, a.mode, a.warmup, a.iters, a.buffers
    );
    println!("floor = (q, k, v, g read once + o written once) / {:.0} GB/s; GB/s = those bytes / median time", a.peak_gbps);
    println!("{}", header());
    let cfg = BenchConfig {
        warmup: a.warmup,
        iters: a.iters.max(1),
        buffers: a.buffers.max(1),
        peak_bw: a.peak_gbps * 1e9,
    };
    let mut status = Status::Ok;
    for s in shapes {
        match bench(mode, s, &GpuOptions::new(dtype), &cfg) {
            Ok(r) => println!("{}", format_row(&r)),
            Err(e) => {
                println!("{s:?}: {e}");
                status = Status::Fail;
            }
        }
    }
    Ok(status)
}
