//! The kernels' logic on the CPU, without a GPU: gpu/emu/ compiles the CUDA sources as C++ against
//! an emulation of CUDA's threads, warp-wide operations and PTX primitives (gpu/emu/emu_ptx.h),
//! and fwd_check.cpp runs the bf16 forward's intra kernel and every state-kernel layout on small
//! problems (partial chunks, -inf and -300 log gates, scalar gates, h0). It checks that every
//! layout gives the same o, hT and chunk states bit for bit, and that o and hT are near an f64
//! recurrence (a gross-error screen; the GPU tests apply the derived bounds on a GPU).
//!
//! Needs a C++17 compiler (`$CXX`, else `c++`): without one the test skips with a reason, unless
//! GLA_REQUIRE_EMU=1 (set by .ci/run), where a missing compiler fails.

use std::path::Path;
use std::process::Command;

#[test]
fn forward_kernels_in_the_cpu_emulation() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    if let Err(why) = Command::new(&cxx).arg("--version").output() {
        if std::env::var("GLA_REQUIRE_EMU").as_deref() == Ok("1") {
            panic!("GLA_REQUIRE_EMU=1 but the C++ compiler {cxx:?} cannot run: {why}");
        }
        eprintln!("SKIP: no C++ compiler ({cxx:?}: {why}); set CXX to run the kernels' emulation");
        return;
    }
    let gpu = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = Path::new(env!("CARGO_TARGET_TMPDIR")).join("emu_fwd_check");
    let kernel = gpu.join("kernels/gla_fwd.cu");
    let built = Command::new(&cxx)
        .args(["-std=c++17", "-O1", "-DGLA_EMU", "-Wno-unknown-pragmas"])
        .arg(format!("-DGLA_FWD_CU=\"{}\"", kernel.display()))
        .arg(format!("-I{}", gpu.join("emu").display()))
        .arg(format!("-I{}", gpu.join("kernels").display()))
        .arg("-o")
        .arg(&exe)
        .arg(gpu.join("emu/fwd_check.cpp"))
        .output()
        .expect("the C++ compiler ran once already");
    assert!(
        built.status.success(),
        "compiling gpu/emu/fwd_check.cpp failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let run = Command::new(&exe).output().expect("run the emulation");
    let out = String::from_utf8_lossy(&run.stdout);
    eprintln!("{out}{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        run.status.success() && out.contains("all checks hold"),
        "the forward kernels' emulation failed (output above)"
    );
}
