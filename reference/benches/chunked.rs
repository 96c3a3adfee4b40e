//! Benchmarks of the chunked and parallel forms (issue 3).
//!
//! - chunked f32 forward + backward (`chunked::backward`, and `backward_with` with the local-form
//!   dg), B=1, H=8, T=4096, K=V=128, against the recurrent f32 reference on the same input
//!   (target: >= 5x faster);
//! - the machine's f32 matrix-product rate (ndarray `dot`, 512x512x512) measured here, and the
//!   chunked form's GFLOP/s as a fraction of it;
//! - the parallel form at T=1024 (criterion) and T=4096 (one timed run: it is O(T^2 K)).
//!
//! `cargo bench -p gla-reference --bench chunked` (criterion, sample_size 10). After criterion's
//! output a summary table is printed (median of a few manual runs). `GLA_BENCH_QUICK=N` skips
//! criterion and prints wall, CPU time and page faults of N runs each (GEMM rate probe, chunked,
//! recurrent) and the chunked form's GFLOP/CPU-s against the GEMM's; `GLA_BENCH_PROFILE=chunked`
//! (optionally `GLA_BENCH_PROFILE_RUNS=N`, default 8) just runs one workload, for a profiler.

use criterion::{criterion_group, Criterion, Throughput};
use gla_reference::chunked::{self, ChunkOptions};
use gla_reference::{parallel, recurrent, DgForm, Dtype, Gates, Problem};
use ndarray::{Array2, Array4};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn problem(t: usize, h: usize, k: usize, v: usize) -> Problem {
    let mut r = ChaCha8Rng::seed_from_u64(7);
    let mut n = || r.gen::<f64>() * 2.0 - 1.0;
    let q = Array4::from_shape_simple_fn((1, t, h, k), &mut n);
    let kk = Array4::from_shape_simple_fn((1, t, h, k), &mut n);
    let vv = Array4::from_shape_simple_fn((1, t, h, v), &mut n);
    let do_ = Array4::from_shape_simple_fn((1, t, h, v), &mut n);
    let g = Array4::from_shape_simple_fn((1, t, h, k), || -(1.0 + (-n() * 3.0).exp()).ln() / 16.0);
    Problem::builder(q, kk, vv, Gates::PerChannel(g))
        .do_(do_)
        .build()
        .unwrap()
        .rounded_to(Dtype::F32)
        .unwrap()
}

/// Useful FLOPs of `chunked::backward` (forward + backward) per (sequence, head) with chunk C,
/// sub-chunk c: forward 4CKV (o_inter, state) + 2C^2V (A@V) + K C (C - c) (off-diagonal A)
/// plus K C (c + 1) (diagonal A, 2 flops per term); backward 8CKV (dH, dv_inter, dq_inter,
/// dk_inter) + 4C^2V (dA, A^T do) + 2 K C^2 (intra dq, dk).
fn chunked_flops(t: usize, h: usize, k: usize, v: usize, c: usize, sc: usize) -> f64 {
    let (k, v, cc, sc) = (k as f64, v as f64, c as f64, sc as f64);
    let per_chunk_fwd =
        4.0 * cc * k * v + 2.0 * cc * cc * v + k * cc * (cc - sc) + k * cc * (sc + 1.0);
    let per_chunk_bwd = 8.0 * cc * k * v + 4.0 * cc * cc * v + 2.0 * k * cc * cc;
    (t as f64 / cc) * h as f64 * (per_chunk_fwd + per_chunk_bwd)
}

fn median_time(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut ts: Vec<Duration> = (0..runs)
        .map(|_| {
            let s = Instant::now();
            f();
            s.elapsed()
        })
        .collect();
    ts.sort();
    ts[runs / 2]
}

/// CPU seconds (user + system) this process has used so far (Linux `/proc/self/stat`; 0 elsewhere).
/// On a shared, loaded machine CPU time is a steadier measure than wall time.
fn cpu_seconds() -> f64 {
    let Ok(st) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = st.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // fields after the command: state is f[0]; utime = field 14 -> f[11], stime = field 15 -> f[12]
    let ticks = |i: usize| f.get(i).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

/// Minor page faults of this process so far (Linux `/proc/self/stat` field 10; 0 elsewhere).
fn minor_faults() -> f64 {
    let Ok(st) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    let Some(rest) = st.rsplit(')').next() else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(7).and_then(|x| x.parse::<f64>().ok()).unwrap_or(0.0)
}

/// Total CPU seconds of `runs` runs of `f`, divided by `runs`.
fn cpu_per_run(runs: usize, mut f: impl FnMut()) -> f64 {
    let c0 = cpu_seconds();
    for _ in 0..runs {
        f();
    }
    (cpu_seconds() - c0) / runs as f64
}

fn gemm() -> (Array2<f32>, Array2<f32>) {
    let mut r = ChaCha8Rng::seed_from_u64(1);
    let a = Array2::from_shape_simple_fn((512, 512), || r.gen::<f32>());
    let b = Array2::from_shape_simple_fn((512, 512), || r.gen::<f32>());
    (a, b)
}

fn benches(c: &mut Criterion) {
    let (a, b) = gemm();
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10)
        .throughput(Throughput::Elements(2 * 512 * 512 * 512));
    g.bench_function("f32 512x512x512 (elements = flops)", |bch| {
        bch.iter(|| black_box(a.dot(&b)))
    });
    g.finish();

    let (t, h, k, v) = (4096, 8, 128, 128);
    let p = problem(t, h, k, v);
    let opts = ChunkOptions::default();
    let mut g = c.benchmark_group("T4096_H8_K128_V128");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(
        chunked_flops(t, h, k, v, 64, 16) as u64
    ));
    g.bench_function("chunked f32 fwd+bwd (elements = flops)", |bch| {
        bch.iter(|| black_box(chunked::backward::<f32>(&p, &opts).unwrap()))
    });
    g.bench_function("chunked f32 fwd+bwd, local dg", |bch| {
        bch.iter(|| black_box(chunked::backward_with::<f32>(&p, &opts, DgForm::Local).unwrap()))
    });
    g.bench_function("chunked f32 fwd", |bch| {
        bch.iter(|| black_box(chunked::forward::<f32>(&p, &opts).unwrap()))
    });
    g.bench_function("recurrent f32 fwd+bwd", |bch| {
        bch.iter(|| black_box(recurrent::backward::<f32>(&p).unwrap()))
    });
    g.finish();

    let p1 = problem(1024, h, k, v);
    let mut g = c.benchmark_group("parallel_T1024_H8_K128_V128");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("parallel f32 fwd", |bch| {
        bch.iter(|| black_box(parallel::forward::<f32>(&p1).unwrap()))
    });
    g.finish();
}

/// Quick mode (`GLA_BENCH_QUICK=N`): N runs each of the GEMM, chunked fwd+bwd, chunked fwd and
/// recurrent fwd+bwd at T=4096, printing median wall and mean CPU time (no criterion, no parallel).
fn quick(n: usize) {
    let (a, b) = gemm();
    let gflop = 2.0 * 512f64.powi(3) / 1e9;
    let tg = median_time(15, || {
        black_box(a.dot(&b));
    });
    let cg = cpu_per_run(100, || {
        black_box(a.dot(&b));
    });
    let (t, h, k, v) = (4096, 8, 128, 128);
    let p = problem(t, h, k, v);
    let opts = ChunkOptions::default();
    let flops = chunked_flops(t, h, k, v, 64, 16) / 1e9;
    let row = |name: &str, f: &mut dyn FnMut()| {
        f();
        let (c0, f0) = (cpu_seconds(), minor_faults());
        let w = median_time(n, &mut *f);
        let c = (cpu_seconds() - c0) / n as f64;
        let pf = (minor_faults() - f0) / n as f64;
        println!("{name:<28}: {:>8.1} ms wall (median of {n})  {:>8.1} ms CPU/run  {pf:>7.0} page faults/run", w.as_secs_f64() * 1e3, c * 1e3);
        (w.as_secs_f64(), c)
    };
    println!(
        "f32 GEMM 512^3 (1 thread)   : {:>8.2} ms wall {:>6.1} GFLOP/s; {:>6.1} GFLOP/CPU-s",
        tg.as_secs_f64() * 1e3,
        gflop / tg.as_secs_f64(),
        gflop / cg
    );
    let (wc, cc) = row("chunked f32 fwd+bwd", &mut || {
        drop(black_box(chunked::backward::<f32>(&p, &opts).unwrap()))
    });
    let (wl, cl) = row("chunked f32 fwd+bwd, local dg", &mut || {
        drop(black_box(
            chunked::backward_with::<f32>(&p, &opts, DgForm::Local).unwrap(),
        ))
    });
    row("chunked f32 fwd", &mut || {
        drop(black_box(chunked::forward::<f32>(&p, &opts).unwrap()))
    });
    let (wr, cr) = row("recurrent f32 fwd+bwd", &mut || {
        drop(black_box(recurrent::backward::<f32>(&p).unwrap()))
    });
    let (wf, cf) = row("interface floor (no math)", &mut || {
        drop(black_box(
            chunked::interface_floor::<f32>(&p, &opts).unwrap(),
        ))
    });
    println!("chunked fwd+bwd: {flops:.2} GFLOP, {:.1} GFLOP/s wall, {:.1} GFLOP/CPU-s ({:.0}% of the GEMM's GFLOP/CPU-s)", flops / wc, flops / cc, 100.0 * (flops / cc) / (gflop / cg));
    println!(
        "local-form dg costs {:+.1}% wall, {:+.1}% CPU over the reverse cumsum",
        100.0 * (wl / wc - 1.0),
        100.0 * (cl / cc - 1.0)
    );
    println!(
        "speed-up vs recurrent: {:.2}x wall, {:.2}x CPU",
        wr / wc,
        cr / cc
    );
    // Floor of any f64-in/f64-out chunked form: the data movement above plus the useful FLOPs
    // at the GEMM's rate (per CPU-second, spread over the cores the chunked run used).
    let cores = cc / wc;
    let floor_c = cf + flops / (gflop / cg);
    println!(
        "floor: data movement {:.1} ms CPU + FLOPs at the GEMM rate {:.1} ms CPU = {:.1} ms CPU, ~{:.1} ms wall at the chunked run's {cores:.2} cores: best possible speed-up vs recurrent ~{:.2}x wall, {:.2}x CPU",
        cf * 1e3,
        flops / (gflop / cg) * 1e3,
        floor_c * 1e3,
        floor_c / cores * 1e3,
        wr / (floor_c / cores),
        cr / floor_c
    );
    let _ = wf;
}

fn summary() {
    if let Some(n) = std::env::var("GLA_BENCH_QUICK")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
    {
        quick(n.max(1));
        return;
    }
    if let Ok(only) = std::env::var("GLA_BENCH_PROFILE") {
        // Profiling aid: run one workload a few times and exit.
        let p = problem(if only.contains("1024") { 1024 } else { 4096 }, 8, 128, 128);
        let runs = std::env::var("GLA_BENCH_PROFILE_RUNS")
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(8);
        for _ in 0..runs {
            match only.as_str() {
                "chunked" => drop(black_box(
                    chunked::backward::<f32>(&p, &ChunkOptions::default()).unwrap(),
                )),
                "chunked_local" => drop(black_box(
                    chunked::backward_with::<f32>(&p, &ChunkOptions::default(), DgForm::Local)
                        .unwrap(),
                )),
                "chunked_fwd" => drop(black_box(
                    chunked::forward::<f32>(&p, &ChunkOptions::default()).unwrap(),
                )),
                "recurrent" => drop(black_box(recurrent::backward::<f32>(&p).unwrap())),
                _ => drop(black_box(parallel::forward::<f32>(&p).unwrap())),
            }
        }
        return;
    }
    let (a, b) = gemm();
    let tg = median_time(9, || {
        black_box(a.dot(&b));
    });
    let gemm_rate = 2.0 * 512f64.powi(3) / tg.as_secs_f64() / 1e9;
    let (t, h, k, v) = (4096, 8, 128, 128);
    let p = problem(t, h, k, v);
    let opts = ChunkOptions::default();
    let tc = median_time(3, || {
        black_box(chunked::backward::<f32>(&p, &opts).unwrap());
    });
    let tcf = median_time(3, || {
        black_box(chunked::forward::<f32>(&p, &opts).unwrap());
    });
    let tr = median_time(3, || {
        black_box(recurrent::backward::<f32>(&p).unwrap());
    });
    let flops = chunked_flops(t, h, k, v, 64, 16);
    let rate = flops / tc.as_secs_f64() / 1e9;
    let p1 = problem(1024, h, k, v);
    let tp1 = median_time(3, || {
        black_box(parallel::forward::<f32>(&p1).unwrap());
    });
    let tp1b = median_time(1, || {
        black_box(parallel::backward::<f32>(&p1).unwrap());
    });
    let tp4 = median_time(1, || {
        black_box(parallel::forward::<f32>(&p).unwrap());
    });
    println!(
        "\n=== summary (B=1, H=8, K=V=128, f32; {} rayon threads) ===",
        rayon::current_num_threads()
    );
    println!(
        "f32 GEMM 512^3 (ndarray dot, 1 thread)  : {:>8.2} ms  {:>7.2} GFLOP/s",
        tg.as_secs_f64() * 1e3,
        gemm_rate
    );
    println!("chunked fwd+bwd T=4096 (C=64, c=16)     : {:>8.1} ms  {:>7.2} GFLOP/s ({:.2} GFLOP) = {:.0}% of {} x GEMM rate",
        tc.as_secs_f64() * 1e3, rate, flops / 1e9, 100.0 * rate / (gemm_rate * rayon::current_num_threads() as f64), rayon::current_num_threads());
    println!(
        "chunked fwd     T=4096                  : {:>8.1} ms",
        tcf.as_secs_f64() * 1e3
    );
    println!(
        "recurrent fwd+bwd T=4096                : {:>8.1} ms  -> chunked is {:.1}x faster",
        tr.as_secs_f64() * 1e3,
        tr.as_secs_f64() / tc.as_secs_f64()
    );
    let tfl = median_time(3, || {
        black_box(chunked::interface_floor::<f32>(&p, &opts).unwrap());
    });
    println!(
        "data-movement floor T=4096 (no math)    : {:>8.1} ms  -> with the FLOPs at {} x GEMM rate, at most {:.1}x faster than recurrent",
        tfl.as_secs_f64() * 1e3,
        rayon::current_num_threads(),
        tr.as_secs_f64()
            / (tfl.as_secs_f64() + flops / 1e9 / (gemm_rate * rayon::current_num_threads() as f64))
    );
    println!(
        "parallel fwd T=1024                     : {:>8.1} ms",
        tp1.as_secs_f64() * 1e3
    );
    println!(
        "parallel fwd+bwd T=1024                 : {:>8.1} ms",
        tp1b.as_secs_f64() * 1e3
    );
    println!(
        "parallel fwd T=4096                     : {:>8.1} ms",
        tp4.as_secs_f64() * 1e3
    );
    // CPU-time view (steadier under load): GFLOP per CPU-second.
    let cg = cpu_per_run(200, || {
        black_box(a.dot(&b));
    });
    let cc = cpu_per_run(3, || {
        black_box(chunked::backward::<f32>(&p, &opts).unwrap());
    });
    let cr = cpu_per_run(3, || {
        black_box(recurrent::backward::<f32>(&p).unwrap());
    });
    println!("--- CPU time (user+sys, all threads) ---");
    println!(
        "f32 GEMM 512^3                          : {:>8.2} ms CPU  {:>7.2} GFLOP/CPU-s",
        cg * 1e3,
        2.0 * 512f64.powi(3) / cg / 1e9
    );
    println!("chunked fwd+bwd T=4096                  : {:>8.1} ms CPU  {:>7.2} GFLOP/CPU-s = {:.0}% of GEMM", cc * 1e3, flops / cc / 1e9, 100.0 * (flops / cc) / (2.0 * 512f64.powi(3) / cg));
    println!(
        "recurrent fwd+bwd T=4096                : {:>8.1} ms CPU  -> chunked uses {:.2}x less CPU",
        cr * 1e3,
        cr / cc
    );
}

criterion_group!(group, benches);

fn main() {
    // Quick mode and the profiling aid skip criterion.
    let quick_or_profile =
        std::env::var("GLA_BENCH_QUICK").is_ok() || std::env::var("GLA_BENCH_PROFILE").is_ok();
    if std::env::var("GLA_BENCH_SUMMARY_ONLY").is_err() && !quick_or_profile {
        group();
        Criterion::default().configure_from_args().final_summary();
    }
    summary();
}
