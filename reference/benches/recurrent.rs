//! Recurrent reference, f32 forward + backward (reverse-cumsum dg), B=1, H=8, T=4096, K=V=128
//! (issue 2's second benchmark). Run: `cargo bench -p gla-reference --bench recurrent`.

use criterion::{criterion_group, criterion_main, Criterion};
use gla_reference::{recurrent, Gates, Problem};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn problem(b: usize, h: usize, t: usize, k: usize, v: usize) -> Problem {
    let mut r = ChaCha8Rng::seed_from_u64(42);
    let mut u = |lo: f64, hi: f64| (lo + (hi - lo) * r.gen::<f64>()) as f32 as f64;
    let q = Array4::from_shape_fn((b, t, h, k), |_| u(-1.0, 1.0));
    let kk = Array4::from_shape_fn((b, t, h, k), |_| u(-1.0, 1.0));
    let vv = Array4::from_shape_fn((b, t, h, v), |_| u(-1.0, 1.0));
    // logsigmoid-like mild decay (/16)
    let g = Array4::from_shape_fn((b, t, h, k), |_| -u(0.0, 1.0) / 16.0);
    let do_ = Array4::from_shape_fn((b, t, h, v), |_| u(-1.0, 1.0));
    Problem::builder(q, kk, vv, Gates::PerChannel(g))
        .do_(do_)
        .build()
        .expect("valid problem")
}

fn bench(c: &mut Criterion) {
    let p = problem(1, 8, 4096, 128, 128);
    let mut g = c.benchmark_group("recurrent_f32");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(20));
    g.bench_function("fwd_bwd_B1_H8_T4096_K128_V128", |bch| {
        bch.iter(|| recurrent::backward::<f32>(std::hint::black_box(&p)).expect("backward"))
    });
    g.bench_function("fwd_B1_H8_T4096_K128_V128", |bch| {
        bch.iter(|| recurrent::forward::<f32>(std::hint::black_box(&p)).expect("forward"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
