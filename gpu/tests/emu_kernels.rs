//! The kernels' logic on the CPU, without a GPU: gpu/emu/ compiles the CUDA sources as C++ against
//! an emulation of CUDA's threads, warp-wide operations and PTX primitives (gpu/emu/emu_ptx.h),
//! and kernels_check.cpp runs the forward (intra kernel, every state layout) and backward (every
//! state-gradient layout, dq / dk / dg in both forms, dv, the scalar gates' dg sum) for bf16, f16,
//! f32 and TF32 on small problems (partial chunks, -inf and -300 log gates, scalar gates, h0, dhT).
//! It checks that every layout gives the same results bit for bit, and that they are near an f64
//! recurrence and its exact gradients (a gross-error screen; the GPU tests apply the derived bounds
//! on a GPU).
//!
//! `kernels_race_free_in_the_cpu_emulation` (ignored by default: about a minute; .ci/run runs it)
//! builds the same with ThreadSanitizer, where the emulation is a race detector for the kernels'
//! shared- and global-memory accesses within a block (__syncthreads the only ordering, cp.async
//! copies landing at their thread's wait), and runs the bf16 and f32 kernels on two problems.
//!
//! Both need a C++17 compiler (`$CXX`, else `c++`; the race test also ThreadSanitizer's runtime):
//! without one they skip with a reason, unless GLA_REQUIRE_EMU=1 (set by .ci/run), where they
//! fail. `GLA_EMU_KERNELS=DIR` takes the kernel sources from DIR instead of gpu/kernels
//! (gpu/emu/check.sh compares revisions so).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The C++ compiler, or `None` (the test skips) where there is none and GLA_REQUIRE_EMU is not 1.
fn compiler() -> Option<String> {
    let cxx = std::env::var("CXX").unwrap_or_else(|_| "c++".to_string());
    match Command::new(&cxx).arg("--version").output() {
        Ok(_) => Some(cxx),
        Err(why) => {
            if std::env::var("GLA_REQUIRE_EMU").as_deref() == Ok("1") {
                panic!("GLA_REQUIRE_EMU=1 but the C++ compiler {cxx:?} cannot run: {why}");
            }
            eprintln!(
                "SKIP: no C++ compiler ({cxx:?}: {why}); set CXX to run the kernels' emulation"
            );
            None
        }
    }
}

/// Build gpu/emu/kernels_check.cpp with the two kernel sources (each its own unit, as NVRTC
/// compiles them; all three at once) and `extra` flags into `name` under the test's temporary
/// folder; returns the executable.
fn build(cxx: &str, name: &str, extra: &[&str]) -> PathBuf {
    let gpu = Path::new(env!("CARGO_MANIFEST_DIR"));
    let kernels = std::env::var_os("GLA_EMU_KERNELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| gpu.join("kernels"));
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).expect("a folder for the emulation's objects");
    let units = [
        (kernels.join("gla_fwd.cu"), "fwd.o", true),
        (kernels.join("gla_bwd.cu"), "bwd.o", true),
        (gpu.join("emu/kernels_check.cpp"), "check.o", false),
    ];
    let jobs: Vec<_> = units
        .iter()
        .map(|(src, obj, cuda)| {
            let mut c = Command::new(cxx);
            c.args(["-std=c++17", "-O1", "-DGLA_EMU", "-Wno-unknown-pragmas"])
                .args(extra)
                .arg(format!("-I{}", gpu.join("emu").display()))
                .arg(format!("-I{}", kernels.display()));
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
    let linked = Command::new(cxx)
        .args(extra)
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
    exe
}

/// Run the emulation, print its output, and require its checks to hold.
fn run(exe: &Path, args: &[&str]) -> Output {
    let run = Command::new(exe)
        .args(args)
        .output()
        .expect("run the emulation");
    let out = String::from_utf8_lossy(&run.stdout);
    eprintln!("{out}{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        run.status.success() && out.contains("all checks hold"),
        "the kernels' emulation failed (output above)"
    );
    run
}

#[test]
fn kernels_in_the_cpu_emulation() {
    let Some(cxx) = compiler() else { return };
    let exe = build(&cxx, "emu", &[]);
    run(&exe, &[]);
}

#[test]
#[ignore = "about a minute; .ci/run runs it"]
fn kernels_race_free_in_the_cpu_emulation() {
    let Some(cxx) = compiler() else { return };
    // ThreadSanitizer's runtime must start here (a kernel with more address-space randomisation
    // than the runtime knows stops it before main: then it needs `setarch -R`)
    let exe = build(&cxx, "emu-tsan", &["-g", "-fsanitize=thread"]);
    let out = run(&exe, &["quick"]);
    let err = String::from_utf8_lossy(&out.stderr);
    let races = err.matches("WARNING: ThreadSanitizer").count();
    assert_eq!(
        races, 0,
        "ThreadSanitizer found {races} race(s) in the kernels (output above)"
    );
}
