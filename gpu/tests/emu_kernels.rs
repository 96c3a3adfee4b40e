//! The kernels' logic on the CPU, without a GPU: gpu/emu/ compiles the CUDA sources as C++ against
//! an emulation of CUDA's threads, warp-wide operations and PTX primitives (gpu/emu/emu_ptx.h),
//! and kernels_check.cpp runs the forward (intra kernel, every state layout) and backward (every
//! state-gradient layout, dq / dk / dg in both forms, dv, the scalar gates' dg sum) for bf16, f16,
//! f32 and TF32 on small problems (partial chunks, -inf and -300 log gates, scalar gates, h0, dhT). It checks that every
//! layout gives the same results bit for bit, and that they are near an f64 recurrence and its
//! exact gradients (a gross-error screen; the GPU tests apply the derived bounds on a GPU).
//!
//! Needs a C++17 compiler (`$CXX`, else `c++`): without one the test skips with a reason, unless
//! GLA_REQUIRE_EMU=1 (set by .ci/run), where a missing compiler fails. `GLA_EMU_KERNELS=DIR` takes
//! the kernel sources from DIR instead of gpu/kernels (gpu/emu/check.sh compares revisions so).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

#[test]
fn kernels_in_the_cpu_emulation() {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    if let Err(why) = Command::new(&cxx).arg("--version").output() {
        if std::env::var("GLA_REQUIRE_EMU").as_deref() == Ok("1") {
            panic!("GLA_REQUIRE_EMU=1 but the C++ compiler {cxx:?} cannot run: {why}");
        }
        eprintln!("SKIP: no C++ compiler ({cxx:?}: {why}); set CXX to run the kernels' emulation");
        return;
    }
    let gpu = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kernels = std::env::var_os("GLA_EMU_KERNELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| gpu.join("kernels"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("emu");
    std::fs::create_dir_all(&dir).expect("a folder for the emulation's objects");
    let flags = |c: &mut Command| {
        c.args(["-std=c++17", "-O1", "-DGLA_EMU", "-Wno-unknown-pragmas"])
            .arg(format!("-I{}", gpu.join("emu").display()))
            .arg(format!("-I{}", kernels.display()));
    };
    // the two kernel sources (each its own unit, as NVRTC compiles them) and the harness, at once
    let units = [
        (kernels.join("gla_fwd.cu"), "fwd.o", true),
        (kernels.join("gla_bwd.cu"), "bwd.o", true),
        (gpu.join("emu/kernels_check.cpp"), "check.o", false),
    ];
    let jobs: Vec<_> = units
        .iter()
        .map(|(src, obj, cuda)| {
            let mut c = Command::new(&cxx);
            flags(&mut c);
            if *cuda {
                c.args(["-x", "c++"]);
            }
            c.arg("-c").arg(src).arg("-o").arg(dir.join(obj));
            c.stdout(Stdio::piped()).stderr(Stdio::piped());
            (src, c.spawn().expect("the C++ compiler ran once already"))
        })
        .collect();
    for (src, job) in jobs {
        let out = job.wait_with_output().expect("the compiler's output");
        assert!(
            out.status.success(),
            "compiling {} for the emulation failed:\n{}",
            src.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let exe = dir.join("kernels_check");
    let linked = Command::new(&cxx)
        .arg("-o")
        .arg(&exe)
        .args(units.iter().map(|u| dir.join(u.1)))
        .output()
        .expect("link");
    assert!(
        linked.status.success(),
        "linking the emulation failed:\n{}",
        String::from_utf8_lossy(&linked.stderr)
    );
    let run = Command::new(&exe).output().expect("run the emulation");
    let out = String::from_utf8_lossy(&run.stdout);
    eprintln!("{out}{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        run.status.success() && out.contains("all checks hold"),
        "the kernels' emulation failed (output above)"
    );
}
