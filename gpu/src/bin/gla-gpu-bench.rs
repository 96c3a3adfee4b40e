//! Stand-alone benchmark (same code as `glacheck bench --impl gpu`):
//! `gla-gpu-bench [--dtype bf16|f16|f32] [--mode fwd|bwd|fwdbwd ...] [--dg-form local] [--iters N]
//! [B,T,H,K,V ...]`. `--mode` may be repeated: every mode then runs on every shape, in the order
//! given, in one process (the kernels are compiled once).

use gla_gpu::bench::{bench, format_row, header, BenchConfig, BenchMode};
use gla_gpu::GpuOptions;
use gla_reference::bounds::DgForm;
use gla_reference::Dtype;

fn main() {
    let mut shapes = Vec::new();
    let mut dtype = Dtype::Bf16;
    let mut cfg = BenchConfig::default();
    let mut modes = Vec::new();
    let mut dg_form = DgForm::ReverseCumsum;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dtype" => {
                dtype = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(Dtype::Bf16)
            }
            "--mode" => match args.next().map(|s| s.parse::<BenchMode>()) {
                Some(Ok(m)) => modes.push(m),
                _ => {
                    eprintln!("--mode takes fwd, bwd or fwdbwd");
                    std::process::exit(2);
                }
            },
            "--dg-form" => match args.next().as_deref() {
                Some("local") => dg_form = DgForm::Local,
                Some("reverse-cumsum") => dg_form = DgForm::ReverseCumsum,
                _ => {
                    eprintln!("--dg-form takes reverse-cumsum or local");
                    std::process::exit(2);
                }
            },
            "--iters" => cfg.iters = args.next().and_then(|s| s.parse().ok()).unwrap_or(30),
            s => {
                let v: Vec<usize> = s.split(',').filter_map(|x| x.trim().parse().ok()).collect();
                if v.len() == 5 {
                    shapes.push((v[0], v[1], v[2], v[3], v[4]));
                } else {
                    eprintln!("bad shape {s:?} (want B,T,H,K,V)");
                    std::process::exit(2);
                }
            }
        }
    }
    if shapes.is_empty() {
        shapes = vec![
            (8, 4096, 16, 128, 128),
            (8, 4096, 16, 128, 256),
            (8, 2048, 16, 128, 128),
            (2, 16384, 16, 128, 128),
        ];
    }
    match gla_gpu::available() {
        Ok(i) => println!("device: {} ({}, {} SMs)", i.name, i.arch, i.sm_count),
        Err(e) => {
            eprintln!("no GPU: {e}");
            std::process::exit(1);
        }
    }
    for (n, r) in gla_gpu::kernel_report() {
        println!("  {n}: {r}");
    }
    if modes.is_empty() {
        modes.push(BenchMode::Fwd);
    }
    let o = GpuOptions {
        dg_form,
        ..GpuOptions::new(dtype)
    };
    println!("{}", header());
    for &mode in &modes {
        for &s in &shapes {
            match bench(mode, s, &o, &cfg) {
                Ok(r) => println!("{}", format_row(&r)),
                Err(e) => println!("{s:?}: error: {e}"),
            }
        }
    }
}
