//! GPU forward kernels against the f64 recurrence / the MPFR oracle (docs/math.md §8.1 bound) and against
//! the CPU twin with the same roundings (2x rule), plus poisoning, determinism, the named failure
//! modes (docs/math.md §7), varlen and unsupported shapes. All in one binary: the kernels are
//! compiled once per process.
//!
//! Without a GPU every test prints "SKIP: no CUDA device: <reason>" and passes; with
//! GLA_REQUIRE_GPU=1 a missing GPU fails.

mod common;
use common::*;
use gla_gpu::GpuError;
use gla_reference::Dtype;

const DTYPES: [Dtype; 3] = [Dtype::Bf16, Dtype::F16, Dtype::F32];

#[test]
fn random_shapes_all_dtypes_within_bound_and_2x_twin() {
    if gpu_or_skip().is_none() {
        return;
    }
    let shapes = [
        (2, 100, 2, 64, 64),
        (1, 130, 2, 128, 128),
        (1, 70, 1, 128, 256),
        (1, 65, 1, 256, 64),
        (1, 64, 2, 64, 128),
    ];
    for (i, &(b, t, h, k, v)) in shapes.iter().enumerate() {
        for &dt in &DTYPES {
            let p = Spec::new(b, t, h, k, v).seed(10 + i as u64).h0().build();
            check(
                &format!("rand b{b} t{t} h{h} k{k} v{v}"),
                &p,
                &opts(dt),
                true,
            );
        }
        let p = Spec::new(b, t, h, k, v).seed(20 + i as u64).build();
        check(
            &format!("rand tf32 b{b} t{t} h{h} k{k} v{v}"),
            &p,
            &opts_tf32(),
            true,
        );
    }
}

#[test]
fn gate_strengths_and_scalar_gates() {
    if gpu_or_skip().is_none() {
        return;
    }
    for (j, tau) in [64.0, 16.0, 1.0, 0.1].into_iter().enumerate() {
        for &dt in &DTYPES {
            let p = Spec::new(1, 200, 2, 64, 64)
                .gates(GateGen::LogSigmoid(tau))
                .seed(30 + j as u64)
                .build();
            // f16 with strong decay: decayed keys underflow f16's range; BoundSpec::eta counts it
            // (unit 2^-24 for an fp16 stage, docs/math.md §8).
            let bound = true;
            check(&format!("logsigmoid/{tau}"), &p, &opts(dt), bound);
            let p = Spec::new(1, 200, 2, 64, 64)
                .gates(GateGen::LogSigmoid(tau))
                .scalar()
                .h0()
                .seed(40 + j as u64)
                .build();
            check(&format!("scalar logsigmoid/{tau}"), &p, &opts(dt), bound);
        }
    }
    // g == 0: plain linear attention
    for &dt in &DTYPES {
        let p = Spec::new(1, 150, 1, 64, 64)
            .gates(GateGen::Const(0.0))
            .build();
        check("g == 0", &p, &opts(dt), true);
    }
}

#[test]
fn partial_chunks_any_t() {
    if gpu_or_skip().is_none() {
        return;
    }
    for t in [1usize, 15, 16, 17, 63, 64, 65, 100, 129, 1000] {
        for &dt in &DTYPES {
            let p = Spec::new(1, t, 2, 64, 64).seed(t as u64).h0().build();
            check(&format!("T = {t}"), &p, &opts(dt), true);
        }
    }
}

#[test]
fn oracle_agrees() {
    if gpu_or_skip().is_none() {
        return;
    }
    // The MPFR oracle as the truth (two sizes; the f64 recurrence elsewhere).
    for &dt in &DTYPES {
        let p = Spec::new(1, 77, 1, 64, 64)
            .h0()
            .seed(5)
            .gates(GateGen::LogSigmoid(1.0))
            .build()
            .rounded_to(dt)
            .unwrap();
        let oracle =
            gla_oracle::evaluate(&p, &gla_oracle::OracleOptions::default()).expect("oracle");
        let (_, _, v) = judge(&p, &opts(dt), Some(oracle.solution));
        eprintln!(
            "oracle {dt:?}: o ratio {:.3} (bound {:.1})",
            v.report.tensor("o").unwrap().ratio,
            v.report.tensor("o").unwrap().bound
        );
        assert!(v.report.pass(), "{}", v.report);
        assert!(
            v.two_x_ok(),
            "{:?} {:?} {:?}",
            v.gpu_err,
            v.twin_err,
            v.floor
        );
    }
}

#[test]
fn f1_tiny_alpha_1e_minus_12() {
    if gpu_or_skip().is_none() {
        return;
    }
    for t in [64usize, 100] {
        for &dt in &DTYPES {
            let p = Spec::new(1, t, 1, 64, 64)
                .gates(GateGen::Const((1e-12f64).ln()))
                .build();
            check(&format!("F1 alpha=1e-12 T={t}"), &p, &opts(dt), true);
        }
    }
}

#[test]
fn log_gate_minus_300() {
    if gpu_or_skip().is_none() {
        return;
    }
    for &dt in &DTYPES {
        let p = Spec::new(1, 100, 1, 64, 64)
            .gates(GateGen::Const(-300.0))
            .h0()
            .build();
        check("g == -300", &p, &opts(dt), true);
        let spec = Spec::new(1, 100, 1, 64, 64);
        let mut g = spec.gate_array();
        set_gates(&mut g, &[3, 16, 40, 64, 99], &[0], 1, -300.0);
        check(
            "g = -300 at rows 3,16,40,64,99",
            &spec.build_with(g),
            &opts(dt),
            true,
        );
    }
}

#[test]
fn f2_minus_inf_gates_mid_chunk_start_end() {
    if gpu_or_skip().is_none() {
        return;
    }
    let spec = Spec::new(1, 150, 2, 64, 64).h0();
    for (label, rows) in F2_ROWS {
        for &dt in &DTYPES {
            let mut g = spec.gate_array();
            set_gates(&mut g, rows, &[0, 1], 1, f64::NEG_INFINITY);
            check(label, &spec.build_with(g), &opts(dt), true);
            // only some channels reset
            let mut g2 = spec.gate_array();
            set_gates(&mut g2, rows, &[1], 3, f64::NEG_INFINITY);
            check(
                &format!("{label} (every 3rd channel)"),
                &spec.build_with(g2),
                &opts(dt),
                true,
            );
        }
    }
    // scalar gates with -inf
    for &dt in &DTYPES {
        let s = Spec::new(1, 130, 1, 64, 64).scalar().h0();
        let mut g = s.gate_array();
        g[[0, 20, 0, 0]] = f64::NEG_INFINITY;
        g[[0, 64, 0, 0]] = f64::NEG_INFINITY;
        check(
            "F2 scalar -inf at 20, 64",
            &s.build_with(g),
            &opts(dt),
            true,
        );
    }
    // all gates -inf: memoryless
    for &dt in &DTYPES {
        let p = Spec::new(1, 80, 1, 64, 64)
            .gates(GateGen::Const(f64::NEG_INFINITY))
            .h0()
            .build();
        check("F2 all -inf", &p, &opts(dt), true);
    }
}

#[test]
fn f5_f6_strong_gates_partial_chunks() {
    if gpu_or_skip().is_none() {
        return;
    }
    // g == -6: a 16-row sub-chunk sums to -96 (< -88.7); T = 63, 100 leave padded rows.
    for t in [63usize, 100] {
        for &dt in &DTYPES {
            let p = Spec::new(1, t, 2, 64, 64)
                .gates(GateGen::Const(-6.0))
                .h0()
                .build();
            check(&format!("F5/F6 g=-6 T={t}"), &p, &opts(dt), true);
            let p = Spec::new(1, t, 2, 128, 64)
                .gates(GateGen::Const(-6.0))
                .scalar()
                .build();
            check(&format!("F5/F6 scalar g=-6 T={t}"), &p, &opts(dt), true);
        }
    }
}

#[test]
fn diagonal_factorization_threshold() {
    if gpu_or_skip().is_none() {
        return;
    }
    // A 16-row sub-chunk's decay of 15 * 2.6 = 39 (< 40: factored diagonal, factors up to e^39)
    // and 15 * 2.7 = 40.5 (> 40: elementwise diagonal); K = 256 covers the largest tiles.
    for c in [-2.6, -2.7] {
        for &dt in &DTYPES {
            let p = Spec::new(1, 100, 1, 256, 64)
                .gates(GateGen::Const(c))
                .h0()
                .build();
            check(&format!("diag threshold g={c}"), &p, &opts(dt), true);
            let p = Spec::new(1, 100, 1, 64, 256)
                .gates(GateGen::Const(c))
                .scalar()
                .build();
            check(&format!("diag threshold scalar g={c}"), &p, &opts(dt), true);
        }
    }
}

#[test]
fn f7_large_gate_on_sub_chunk_first_row() {
    if gpu_or_skip().is_none() {
        return;
    }
    let spec = Spec::new(1, 100, 1, 64, 64);
    for &dt in &DTYPES {
        let mut g = spec.gate_array();
        set_gates(&mut g, &[16, 32, 48, 64, 80], &[0], 1, -100.0);
        check(
            "F7 g=-100 on sub-chunk first rows",
            &spec.build_with(g),
            &opts(dt),
            true,
        );
    }
}

#[test]
fn varlen_with_empty_sequences() {
    if gpu_or_skip().is_none() {
        return;
    }
    let cu = [0i64, 0, 37, 37, 101, 102, 230];
    for &dt in &DTYPES {
        let p = Spec::new(1, 230, 2, 64, 64).cu(&cu).h0().seed(77).build();
        let gpu = check("varlen [0,0,37,37,101,102,230]", &p, &opts(dt), true);
        // empty sequences: hT = h0 exactly (f32)
        let pr = p.rounded_to(dt).unwrap();
        let h0 = pr.h0().unwrap();
        for n in [0usize, 2] {
            for hh in 0..2 {
                for d in 0..64 {
                    for e in 0..64 {
                        let want = h0[[n, hh, d, e]] as f32 as f64;
                        assert_eq!(gpu.ht[[n, hh, d, e]], want, "empty sequence {n}: hT != h0");
                    }
                }
            }
        }
        // packed == per-sequence runs (same kernels, so bit-identical)
        let single = Spec::new(1, 64, 2, 64, 64)
            .seed(78)
            .h0()
            .build()
            .rounded_to(dt)
            .unwrap();
        let a = gla_gpu::forward(&single, &opts(dt)).unwrap();
        assert!(a.o.iter().all(|x| x.is_finite()));
    }
    // varlen without h0, scalar gates, strong decay
    for &dt in &DTYPES {
        let p = Spec::new(1, 230, 1, 128, 128)
            .cu(&cu)
            .scalar()
            .gates(GateGen::LogSigmoid(0.1))
            .build();
        check("varlen scalar strong", &p, &opts(dt), true);
    }
}

#[test]
fn reruns_are_bit_identical_and_every_output_written() {
    if gpu_or_skip().is_none() {
        return;
    }
    for &dt in &DTYPES {
        let p = Spec::new(2, 300, 3, 128, 128)
            .h0()
            .build()
            .rounded_to(dt)
            .unwrap();
        let a = gla_gpu::forward(&p, &opts(dt)).unwrap();
        let b = gla_gpu::forward(&p, &opts(dt)).unwrap();
        // outputs start as NaN on the device: finite everywhere means every element was written
        assert!(
            a.o.iter().chain(a.ht.iter()).all(|x| x.is_finite()),
            "{dt:?}: unwritten output"
        );
        let same =
            a.o.iter()
                .zip(b.o.iter())
                .all(|(x, y)| x.to_bits() == y.to_bits())
                && a.ht
                    .iter()
                    .zip(b.ht.iter())
                    .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{dt:?}: reruns differ");
    }
}

#[test]
fn state_kernel_layouts_are_bit_identical() {
    if gpu_or_skip().is_none() {
        return;
    }
    // The bf16/f16 state kernel's layouts (value-block width BV, warps per block; the list is
    // gla_gpu::STATE_LAYOUTS) only change which block or warp computes an element, never its
    // operations or their order: o and hT must be bit-identical for every layout. The other tests
    // run the default layout, so this covers every layout on the same gates.
    let cases = [
        (2, 150, 2, 64, 128),
        (1, 100, 1, 128, 64),
        (1, 70, 1, 256, 64),
        (1, 129, 3, 64, 64),
        (2, 200, 2, 128, 256),
    ];
    for (i, &(b, t, h, k, v)) in cases.iter().enumerate() {
        for &dt in &[Dtype::Bf16, Dtype::F16] {
            let mut g = Spec::new(b, t, h, k, v).seed(70 + i as u64).gate_array();
            // resets mid-chunk, strong decays at a chunk start on some channels
            for c in (0..k).step_by(3) {
                g[[0, t / 2, 0, c]] = f64::NEG_INFINITY;
                g[[0, 64.min(t - 1), 0, c]] = -300.0;
            }
            let p = Spec::new(b, t, h, k, v)
                .seed(70 + i as u64)
                .h0()
                .build_with(g)
                .rounded_to(dt)
                .unwrap();
            let layouts: Vec<(usize, usize)> = gla_gpu::STATE_LAYOUTS
                .iter()
                .filter(|l| l.0 == k && v % l.1 == 0)
                .map(|l| (l.1, l.2))
                .collect();
            assert!(layouts.len() >= 2, "K = {k}, V = {v}: {layouts:?}");
            let mut first: Option<gla_reference::Solution> = None;
            for &(bv, warps) in &layouts {
                let mut dp = gla_gpu::DeviceProblem::upload(&p, &opts(dt)).unwrap();
                dp.set_state_layout(bv, warps).unwrap();
                let mut out = dp.alloc_outputs(true).unwrap();
                dp.launch(&mut out).unwrap();
                let s = dp.download(&out).unwrap();
                assert!(
                    s.o.iter().chain(s.ht.iter()).all(|x| x.is_finite()),
                    "{dt:?} BV {bv} warps {warps}: unwritten or non-finite output"
                );
                match &first {
                    None => first = Some(s),
                    Some(f) => {
                        let same =
                            f.o.iter()
                                .zip(s.o.iter())
                                .all(|(x, y)| x.to_bits() == y.to_bits())
                                && f.ht
                                    .iter()
                                    .zip(s.ht.iter())
                                    .all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(
                            same,
                            "{dt:?} b{b} t{t} h{h} k{k} v{v}: layout {:?} differs from {:?}",
                            (bv, warps),
                            layouts[0]
                        );
                    }
                }
            }
            eprintln!("state layouts {layouts:?} bit-identical: {dt:?} b{b} t{t} h{h} k{k} v{v}");
        }
    }
    // layouts the kernels do not have are typed errors
    let p = Spec::new(1, 10, 1, 64, 64)
        .build()
        .rounded_to(Dtype::Bf16)
        .unwrap();
    let mut dp = gla_gpu::DeviceProblem::upload(&p, &opts(Dtype::Bf16)).unwrap();
    assert!(matches!(
        dp.set_state_layout(16, 4),
        Err(GpuError::Unsupported(_))
    ));
    assert!(matches!(
        dp.set_state_layout(32, 8),
        Err(GpuError::Unsupported(_))
    ));
    let p = Spec::new(1, 10, 1, 128, 64)
        .build()
        .rounded_to(Dtype::Bf16)
        .unwrap();
    let mut dp = gla_gpu::DeviceProblem::upload(&p, &opts(Dtype::Bf16)).unwrap();
    assert!(matches!(
        dp.set_state_layout(64, 4),
        Err(GpuError::Unsupported(_))
    ));
    assert!(matches!(
        dp.set_state_layout(128, 8), // V = 64
        Err(GpuError::Unsupported(_))
    ));
}

#[test]
fn large_problem_wide_value_block_path() {
    if gpu_or_skip().is_none() {
        return;
    }
    // enough (value block, head, sequence) programs to select a wide value block (BV = 128,
    // 8 warps) on a 132-SM H100: the default layout of the benchmark shapes, here against the twin
    for &dt in &[Dtype::Bf16, Dtype::F16] {
        let p = Spec::new(4, 200, 40, 128, 128).h0().seed(99).build();
        let pr = p.rounded_to(dt).unwrap();
        let dp = gla_gpu::DeviceProblem::upload(&pr, &opts(dt)).unwrap();
        eprintln!(
            "value block {}, {} warps",
            dp.value_block(),
            dp.state_warps()
        );
        check("B4 T200 H40 K128 V128", &p, &opts(dt), true);
    }
}

#[test]
fn unsupported_shapes_and_options_are_typed_errors() {
    // These need no GPU: options and shapes are checked first.
    let p = Spec::new(1, 10, 1, 96, 64).build();
    match gla_gpu::check_supported(&p, &opts(Dtype::Bf16)) {
        Err(GpuError::Unsupported(m)) => assert!(m.contains("K = 96"), "{m}"),
        r => panic!("expected Unsupported, got {r:?}"),
    }
    let p = Spec::new(1, 10, 1, 64, 64).build();
    let mut o = opts(Dtype::Bf16);
    o.chunk = 32;
    assert!(matches!(
        gla_gpu::check_supported(&p, &o),
        Err(GpuError::Unsupported(_))
    ));
    let o = gla_gpu::GpuOptions {
        dtype: Dtype::Bf16,
        precision: gla_gpu::Precision::Tf32,
        ..Default::default()
    };
    assert!(matches!(
        gla_gpu::check_supported(&p, &o),
        Err(GpuError::Unsupported(_))
    ));
    assert!(matches!(
        gla_gpu::check_supported(&p, &opts(Dtype::F64)),
        Err(GpuError::Unsupported(_))
    ));
    // forward() reports the same error (with or without a GPU)
    let p = Spec::new(1, 10, 1, 96, 64).build();
    assert!(gla_gpu::forward(&p, &opts(Dtype::F32)).is_err());
}
