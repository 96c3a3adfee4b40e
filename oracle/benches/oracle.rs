//! Oracle forward + backward, B=1, H=1, T=1024, K=V=64, converged to agree past f64
//! (`min_agree_bits = 80`). Target (issue 2): <= 3 s on the 2-core development machine.

use criterion::{criterion_group, criterion_main, Criterion};
use gla_oracle::{evaluate, OracleOptions};
use gla_reference::{Gates, Problem};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::time::Duration;

fn problem(t: usize, k: usize, v: usize) -> Problem {
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    let mut randn = |shape: (usize, usize, usize, usize)| {
        Array4::from_shape_simple_fn(shape, || {
            // Box-Muller normal, rounded to f32 like a kernel's inputs.
            let (u1, u2): (f64, f64) = (rng.gen_range(1e-12..1.0), rng.gen());
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32 as f64
        })
    };
    let q = randn((1, t, 1, k));
    let kk = randn((1, t, 1, k));
    let vv = randn((1, t, 1, v));
    let x = randn((1, t, 1, k));
    // fla's GLA gates: logsigmoid(x) / 16.
    let g = x.mapv(|x| ((-(1.0 + (-x).exp()).ln()) / 16.0) as f32 as f64);
    let do_ = randn((1, t, 1, v));
    let h0 = randn((1, 1, k, v));
    let dht = randn((1, 1, k, v));
    Problem::builder(q, kk, vv, Gates::PerChannel(g))
        .h0(h0)
        .do_(do_)
        .dht(dht)
        .build()
        .expect("valid problem")
}

fn bench(c: &mut Criterion) {
    let p = problem(1024, 64, 64);
    let opts = OracleOptions {
        backward: true,
        ..OracleOptions::default()
    };
    let r = evaluate(&p, &opts).expect("oracle converges");
    println!(
        "oracle T=1024 K=V=64: precision {} bits, bits_agreed {}, threads {}",
        r.precision,
        r.bits_agreed,
        rayon::current_num_threads()
    );
    let mut group = c.benchmark_group("oracle");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(20));
    group.bench_function("fwd_bwd_T1024_K64_V64_converged", |b| {
        b.iter(|| evaluate(&p, &opts).expect("oracle converges"))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
