//! CUDA sources (embedded at build time) and their NVRTC compilation, once per process and arch.

use crate::error::GpuError;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// The forward kernels' source (gpu/kernels/gla_fwd.cu), embedded so that a copied binary finds it.
pub const GLA_FWD_SRC: &str = include_str!("../kernels/gla_fwd.cu");

/// The backward kernels' source (gpu/kernels/gla_bwd.cu), embedded likewise.
pub const GLA_BWD_SRC: &str = include_str!("../kernels/gla_bwd.cu");

/// Every kernel source with the architectures it targets and the entry points it must define.
///
/// The kernels use `mma.sync` (bf16/f16), `cvt.rn.bf16.f32` and `cvt.rna.tf32.f32`, all sm_80+;
/// no Hopper-only instruction, so they are built for sm_80 and sm_90.
pub fn sources() -> Vec<(&'static str, &'static str, &'static [&'static str])> {
    vec![
        ("gla_fwd.cu", GLA_FWD_SRC, &["sm_80", "sm_90"]),
        ("gla_bwd.cu", GLA_BWD_SRC, &["sm_80", "sm_90"]),
    ]
}

/// The kernel entry points a source (by its name in [`sources`]) must define.
///
/// ```
/// assert!(gla_gpu::kernels::entry_points("gla_bwd.cu").contains(&"gla_bwd_dqk_bf16"));
/// assert!(gla_gpu::kernels::entry_points("nope.cu").is_empty());
/// ```
pub fn entry_points(source: &str) -> &'static [&'static str] {
    match source {
        "gla_fwd.cu" => FWD_KERNELS,
        "gla_bwd.cu" => crate::backward::BWD_KERNELS,
        _ => &[],
    }
}

/// Kernel entry points defined by gla_fwd.cu.
pub const FWD_KERNELS: &[&str] = &[
    "gla_fwd_intra_f32",
    "gla_fwd_intra_bf16",
    "gla_fwd_intra_f16",
    "gla_fwd_intra_fast_f32",
    "gla_fwd_intra_fast_bf16",
    "gla_fwd_intra_fast_f16",
    "gla_fwd_state_bf16_k64_v32",
    "gla_fwd_state_bf16_k64_v64",
    "gla_fwd_state_bf16_k128_v32",
    "gla_fwd_state_bf16_k128_v32_w8",
    "gla_fwd_state_bf16_k256_v32",
    "gla_fwd_state_bf16_k256_v32_w8",
    "gla_fwd_state_f16_k64_v32",
    "gla_fwd_state_f16_k64_v64",
    "gla_fwd_state_f16_k128_v32",
    "gla_fwd_state_f16_k128_v32_w8",
    "gla_fwd_state_f16_k256_v32",
    "gla_fwd_state_f16_k256_v32_w8",
    "gla_fwd_state_f32_k64",
    "gla_fwd_state_f32_k128",
    "gla_fwd_state_f32_k256",
];

/// Whether the NVRTC library can be loaded (cudarc looks for `libnvrtc.so.13` etc. on the
/// dynamic loader's path, e.g. `LD_LIBRARY_PATH`). Never panics.
pub fn nvrtc_available() -> Result<(), String> {
    let ok = std::panic::catch_unwind(|| unsafe { cudarc::nvrtc::sys::is_culib_present() });
    match ok {
        Ok(true) => Ok(()),
        Ok(false) => Err(
            "libnvrtc not found on the loader path (set LD_LIBRARY_PATH; see .ci/install-nvrtc.sh)"
                .into(),
        ),
        Err(_) => Err("loading libnvrtc panicked".into()),
    }
}

fn leak_arch(arch: &str) -> &'static str {
    static NAMES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut m = NAMES
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(s) = m.get(arch) {
        return s;
    }
    let s: &'static str = Box::leak(arch.to_string().into_boxed_str());
    m.insert(arch.to_string(), s);
    s
}

/// Compile one source for one architecture (`"sm_90"`), returning the PTX text.
///
/// Fails (never panics) if NVRTC cannot be loaded or rejects the source; the NVRTC log is in the
/// error. Warnings are not errors.
pub fn compile(name: &str, src: &str, arch: &str) -> Result<cudarc::nvrtc::Ptx, GpuError> {
    nvrtc_available().map_err(GpuError::Compile)?;
    // The kernels include no CUDA header; an include folder is passed only if one is configured
    // (GLA_NVRTC_INCLUDE, as exported by .ci/install-nvrtc.sh, or $CUDA_PATH/include), so that a
    // kernel that starts including cuda_bf16.h keeps compiling.
    let include_paths: Vec<String> = [
        std::env::var("GLA_NVRTC_INCLUDE").ok(),
        std::env::var("CUDA_PATH")
            .ok()
            .map(|p| format!("{p}/include")),
    ]
    .into_iter()
    .flatten()
    .filter(|p| std::path::Path::new(p).is_dir())
    .collect();
    let opts = cudarc::nvrtc::CompileOptions {
        include_paths,
        arch: Some(leak_arch(arch)),
        // IEEE f32: no fast-math, no flush-to-zero, precise division; FMA contraction allowed.
        ftz: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        fmad: Some(true),
        options: vec!["--std=c++17".into()],
        name: Some(name.to_string()),
        ..Default::default()
    };
    let src = src.to_string();
    let r = std::panic::catch_unwind(move || cudarc::nvrtc::compile_ptx_with_opts(src, opts));
    match r {
        Ok(Ok(ptx)) => Ok(ptx),
        Ok(Err(cudarc::nvrtc::CompileError::CompileError { log, options, .. })) => {
            Err(GpuError::Compile(format!(
                "{name} for {arch} (options {options:?}):\n{}",
                log.to_string_lossy()
            )))
        }
        Ok(Err(e)) => Err(GpuError::Compile(format!("{name} for {arch}: {e:?}"))),
        Err(_) => Err(GpuError::Compile(format!(
            "{name} for {arch}: NVRTC panicked"
        ))),
    }
}

/// The `sm_XY` name of a compute capability.
pub fn arch_name(major: i32, minor: i32) -> String {
    format!("sm_{major}{minor}")
}
