//! Causality, bit for bit: the GPU forward's output at token t must not depend on any input at
//! tokens after t. Each case runs the forward on a problem and on a copy whose q, k, v and gates
//! are changed at every row t >= P (P inside and at the edges of 16-row sub-chunks and 64-row
//! chunks), then requires o[b, t < P] to be identical bit for bit.
//!
//! The cases drive both diagonal paths of the intra kernel (see DIAG_SAFE in
//! gpu/kernels/gla_fwd.cu) on both sides of P:
//! - mild gates (factored product on every row) whose future becomes -inf / -300 / -50 gates
//!   (which made the whole sub-chunk take the elementwise path before the per-row fix,
//!   proptests/FINDINGS.md section 4);
//! - constant gates of -2.7 and -6 (rows past the DIAG_SAFE threshold inside a sub-chunk take the
//!   elementwise path, earlier rows the factored one) and -inf resets before P;
//! - per-channel and scalar gates, bf16, f16, f32 and f32 + TF32.
//!
//! Without a GPU every test prints "SKIP: no CUDA device: <reason>" and passes; with
//! GLA_REQUIRE_GPU=1 a missing GPU fails.

mod common;
use common::*;
use gla_gpu::GpuOptions;
use gla_reference::{Dtype, Gates, Problem};
use ndarray::{Array3, Array4};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// What the changed copy puts at rows t >= P (gates; q, k, v are redrawn at those rows too).
#[derive(Clone, Copy, Debug)]
enum Future {
    /// -inf gates (a reset at every later row).
    NegInf,
    /// Log gates of -300.
    Minus300,
    /// Log gates of -50 (past DIAG_SAFE in one step, no reset).
    Minus50,
    /// Fresh mild gates (logsigmoid(N(0,1)) / 16) and fresh q, k, v only.
    Mild,
}

/// The problem with q, k, v and gates replaced at rows t >= p (every batch row and head).
fn changed_after(p: &Problem, scalar: bool, at: usize, fut: Future, seed: u64) -> Problem {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    let (mut q, mut k, mut v) = (p.q().to_owned(), p.k().to_owned(), p.v().to_owned());
    let mut g = p.g().to_owned();
    let (b, t, h, kk) = q.dim();
    let vd = v.dim().3;
    for bb in 0..b {
        for tt in at..t {
            for hh in 0..h {
                for d in 0..kk {
                    q[[bb, tt, hh, d]] = 4.0 * normal(&mut r);
                    k[[bb, tt, hh, d]] = 4.0 * normal(&mut r);
                }
                for e in 0..vd {
                    v[[bb, tt, hh, e]] = 4.0 * normal(&mut r);
                }
                let gv = match fut {
                    Future::NegInf => f64::NEG_INFINITY,
                    Future::Minus300 => -300.0,
                    Future::Minus50 => -50.0,
                    Future::Mild => logsigmoid(normal(&mut r)) / 16.0,
                };
                for d in 0..g.dim().3 {
                    g[[bb, tt, hh, d]] = gv;
                }
            }
        }
    }
    let gates = if scalar {
        Gates::Scalar(Array3::from_shape_fn((b, t, h), |(bb, tt, hh)| {
            g[[bb, tt, hh, 0]]
        }))
    } else {
        Gates::PerChannel(g)
    };
    let mut builder = Problem::builder(q, k, v, gates);
    if let Some(h0) = p.h0() {
        builder = builder.h0(h0.to_owned());
    }
    builder.build().expect("valid changed problem")
}

/// Runs both problems (rounded to the options' dtype) and compares o at rows t < at, bit for bit.
/// Returns the number of compared elements.
fn assert_prefix_identical(
    name: &str,
    a: &Problem,
    b: &Problem,
    at: usize,
    o: &GpuOptions,
) -> usize {
    let dt = o.dtype;
    let (ra, rb) = (a.rounded_to(dt).unwrap(), b.rounded_to(dt).unwrap());
    let sa = gla_gpu::forward(&ra, o).unwrap_or_else(|e| panic!("{name}: gpu forward: {e}"));
    let sb = gla_gpu::forward(&rb, o).unwrap_or_else(|e| panic!("{name}: gpu forward: {e}"));
    let (bn, _, h, v) = sa.o.dim();
    let mut n = 0;
    for bb in 0..bn {
        for t in 0..at {
            for hh in 0..h {
                for e in 0..v {
                    let (x, y) = (sa.o[[bb, t, hh, e]], sb.o[[bb, t, hh, e]]);
                    assert!(
                        x.to_bits() == y.to_bits(),
                        "{name} {dt:?} {:?}: o[{bb},{t},{hh},{e}] = {x:e} vs {y:e} after changing rows >= {at}",
                        o.precision
                    );
                    n += 1;
                }
            }
        }
    }
    n
}

fn all_opts() -> Vec<GpuOptions> {
    vec![
        opts(Dtype::Bf16),
        opts(Dtype::F16),
        opts(Dtype::F32),
        opts_tf32(),
    ]
}

/// Cut points: inside the first sub-chunk, at and inside later sub-chunks, past a chunk edge.
const CUTS: [usize; 7] = [1, 5, 11, 16, 37, 64, 73];

#[test]
fn mild_past_any_future_prefix_identical() {
    if gpu_or_skip().is_none() {
        return;
    }
    let mut total = 0;
    for (si, &scalar) in [false, true].iter().enumerate() {
        let mut spec = Spec::new(1, 100, 2, 64, 64).seed(500 + si as u64).h0();
        if scalar {
            spec = spec.scalar();
        }
        let base = spec.build();
        for (ci, &at) in CUTS.iter().enumerate() {
            for (fi, &fut) in [
                Future::NegInf,
                Future::Minus300,
                Future::Minus50,
                Future::Mild,
            ]
            .iter()
            .enumerate()
            {
                let changed = changed_after(&base, scalar, at, fut, 1000 + (ci * 10 + fi) as u64);
                for o in all_opts() {
                    let name = format!("mild scalar={scalar} P={at} future={fut:?}");
                    total += assert_prefix_identical(&name, &base, &changed, at, &o);
                }
            }
        }
    }
    eprintln!("mild past: {total} output elements identical");
}

#[test]
fn strong_and_reset_past_prefix_identical() {
    if gpu_or_skip().is_none() {
        return;
    }
    // Past gates that put some rows of a sub-chunk on the elementwise path and others on the
    // factored one: constant -2.7 (a sub-chunk's rows 15 past its anchor exceed DIAG_SAFE = 40),
    // constant -6 (rows 7 and later), and mild gates with -inf resets at rows 3, 20 and 40 on every
    // other channel (per-channel) or on all of them (scalar).
    let mut total = 0;
    for (pi, past) in ["const -2.7", "const -6", "mild + resets"]
        .iter()
        .enumerate()
    {
        for (si, &scalar) in [false, true].iter().enumerate() {
            let k = if pi == 0 { 128 } else { 64 };
            let mut spec = Spec::new(2, 90, 1, k, 64).seed(600 + (pi * 2 + si) as u64);
            spec = match pi {
                0 => spec.gates(GateGen::Const(-2.7)),
                1 => spec.gates(GateGen::Const(-6.0)),
                _ => spec.h0(),
            };
            if scalar {
                spec = spec.scalar();
            }
            let mut g = spec.gate_array();
            if pi == 2 {
                for bb in 0..2 {
                    for t in [3usize, 20, 40] {
                        for d in (0..g.dim().3).step_by(2) {
                            g[[bb, t, 0, d]] = f64::NEG_INFINITY;
                        }
                    }
                }
            }
            let base = spec.build_with(g);
            for (ci, &at) in [9usize, 15, 16, 26, 45, 70].iter().enumerate() {
                for (fi, &fut) in [Future::NegInf, Future::Mild, Future::Minus50]
                    .iter()
                    .enumerate()
                {
                    let changed = changed_after(
                        &base,
                        scalar,
                        at,
                        fut,
                        2000 + (pi * 100 + ci * 10 + fi) as u64,
                    );
                    for o in all_opts() {
                        let name = format!("{past} scalar={scalar} P={at} future={fut:?}");
                        total += assert_prefix_identical(&name, &base, &changed, at, &o);
                    }
                }
            }
        }
    }
    eprintln!("strong/reset past: {total} output elements identical");
}

/// The regression of proptests/FINDINGS.md section 4 in its own words: with the old per-block
/// choice, a -inf gate at row 11 of the first sub-chunk moved o at rows < 11 by one ulp.
#[test]
fn findings_section_4_regression() {
    if gpu_or_skip().is_none() {
        return;
    }
    for (si, &scalar) in [false, true].iter().enumerate() {
        let mut spec = Spec::new(2, 16, 2, 64, 128).seed(700 + si as u64);
        if scalar {
            spec = spec.scalar();
        }
        let base = spec.build();
        let mut g: Array4<f64> = base.g().to_owned();
        for bb in 0..2 {
            for hh in 0..2 {
                for d in 0..g.dim().3 {
                    g[[bb, 11, hh, d]] = f64::NEG_INFINITY;
                }
            }
        }
        // only the gate at row 11 changes (q, k, v stay)
        let gates = if scalar {
            Gates::Scalar(Array3::from_shape_fn((2, 16, 2), |(bb, tt, hh)| {
                g[[bb, tt, hh, 0]]
            }))
        } else {
            Gates::PerChannel(g)
        };
        let changed = Problem::builder(
            base.q().to_owned(),
            base.k().to_owned(),
            base.v().to_owned(),
            gates,
        )
        .build()
        .unwrap();
        for o in all_opts() {
            assert_prefix_identical(
                &format!("FINDINGS 4 scalar={scalar}"),
                &base,
                &changed,
                11,
                &o,
            );
        }
    }
}
