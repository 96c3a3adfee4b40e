//! Every CUDA kernel compiles through NVRTC for every architecture it targets. Needs only the
//! NVRTC library (no GPU): without it the test skips with a reason, unless GLA_REQUIRE_NVRTC=1
//! (set by .ci/run after .ci/install-nvrtc.sh), where a missing library fails.

use gla_gpu::kernels;

#[test]
fn every_kernel_compiles_for_every_target_arch() {
    if let Err(why) = kernels::nvrtc_available() {
        if std::env::var("GLA_REQUIRE_NVRTC").as_deref() == Ok("1") {
            panic!("GLA_REQUIRE_NVRTC=1 but NVRTC cannot be loaded: {why}");
        }
        eprintln!("SKIP: NVRTC not available: {why}");
        return;
    }
    for (name, src, archs) in kernels::sources() {
        for arch in archs {
            let ptx = kernels::compile(name, src, arch).unwrap_or_else(|e| panic!("{e}"));
            let text = ptx.to_src();
            for k in kernels::entry_points(name) {
                assert!(
                    text.contains(&format!(".entry {k}(")),
                    "{name} for {arch}: entry {k} missing from the PTX"
                );
            }
            assert!(
                text.contains(&format!(".target {arch}")),
                "{name}: PTX not built for {arch}"
            );
            // tensor-core path present, no TF32 tensor-core MMA sneaking into the f32 path
            assert!(text.contains("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32"));
            assert!(
                !text.contains(".tf32.tf32"),
                "{name} for {arch}: TF32 MMA found"
            );
            eprintln!("compiled {name} for {arch}: {} bytes of PTX", text.len());
        }
    }
}

#[test]
fn a_broken_kernel_is_an_error_not_a_panic() {
    if kernels::nvrtc_available().is_err() {
        eprintln!("SKIP: NVRTC not available");
        return;
    }
    let err = kernels::compile(
        "broken.cu",
        "extern \"C\" __global__ void k() { this is not C++; }",
        "sm_90",
    )
    .expect_err("NVRTC must reject this");
    assert!(err.to_string().contains("broken.cu"), "{err}");
}
