use gla_reference::{Gates, Problem};
use ndarray::Array4;
use rand::{Rng, SeedableRng};
use std::time::Instant;
fn main() {
    let (t, k, v) = (1024, 64, 64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut r = |s| Array4::from_shape_simple_fn(s, || rng.gen_range(-1.0..1.0f64) as f32 as f64);
    let q = r((1, t, 1, k)); let kk = r((1, t, 1, k)); let vv = r((1, t, 1, v));
    let g = r((1, t, 1, k)).mapv(|x| -(x.abs()) / 16.0); let do_ = r((1, t, 1, v));
    let p = Problem::builder(q, kk, vv, Gates::PerChannel(g)).do_(do_).build().unwrap();
    let args: Vec<String> = std::env::args().collect();
    let t0 = Instant::now();
    if args[1] == "eval" {
        let r = gla_oracle::evaluate(&p, &gla_oracle::OracleOptions { backward: true, ..Default::default() }).unwrap();
        println!("evaluate: {:?} prec {} bits {}", t0.elapsed(), r.precision, r.bits_agreed);
        return;
    }
    if args[1] == "fwd" {
        let prec: u32 = args[2].parse().unwrap();
        let s2 = gla_oracle::recurrent::forward(&p, prec).unwrap();
        println!("prec {prec}: fwd {:?} {}", t0.elapsed(), s2.o[[0,1,0,1]].to_f64());
        return;
    }
    let prec: u32 = args[1].parse().unwrap();
    let s2 = gla_oracle::recurrent::backward(&p, prec).unwrap();
    println!("prec {prec}: fwd+bwd {:?} {}", t0.elapsed(), s2.o[[0,1,0,1]].to_f64());
}
