//! The CUDA kernel sources (embedded at build time), the entry points each defines, and their
//! compilation to PTX by NVRTC.
//!
//! Two translation units, `gpu/kernels/gla_fwd.cu` and `gpu/kernels/gla_bwd.cu`, both include the
//! shared prelude `gpu/kernels/gla_common.cuh` ([`HEADERS`]), which [`compile`] hands to NVRTC as a
//! named header; no CUDA header and no file system is needed at run time.

use crate::error::GpuError;
use cudarc::nvrtc::{result, sys};
use std::ffi::{c_char, CStr, CString};

/// The forward kernels' source (gpu/kernels/gla_fwd.cu), embedded so that a copied binary finds it.
pub const GLA_FWD_SRC: &str = include_str!("../kernels/gla_fwd.cu");

/// The backward kernels' source (gpu/kernels/gla_bwd.cu), embedded likewise.
pub const GLA_BWD_SRC: &str = include_str!("../kernels/gla_bwd.cu");

/// The prelude both kernel sources include (gpu/kernels/gla_common.cuh): element types and
/// conversions, `exp_nonpos` / `decay`, `cp.async` copies, the `mma.sync` wrappers.
pub const GLA_COMMON_SRC: &str = include_str!("../kernels/gla_common.cuh");

/// The headers every kernel source may `#include "..."`: `(include name, contents)`.
pub const HEADERS: &[(&str, &str)] = &[("gla_common.cuh", GLA_COMMON_SRC)];

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
        "gla_bwd.cu" => BWD_KERNELS,
        _ => &[],
    }
}
/// Kernel entry points defined by gla_fwd.cu.
pub const FWD_KERNELS: &[&str] = &[
    "gla_fwd_intra_f32",
    "gla_fwd_intra_fast_f32",
    "gla_fwd_intra_tc_bf16",
    "gla_fwd_intra_tc_f16",
    "gla_fwd_state_bf16_k64_v32",
    "gla_fwd_state_bf16_k64_v64",
    "gla_fwd_state_bf16_k128_v32",
    "gla_fwd_state_bf16_k128_v32_w8",
    "gla_fwd_state_bf16_k128_v64_w8",
    "gla_fwd_state_bf16_k128_v128_w8",
    "gla_fwd_state_bf16_k256_v32",
    "gla_fwd_state_bf16_k256_v32_w8",
    "gla_fwd_state_bf16_k256_v64_w8",
    "gla_fwd_state_f16_k64_v32",
    "gla_fwd_state_f16_k64_v64",
    "gla_fwd_state_f16_k128_v32",
    "gla_fwd_state_f16_k128_v32_w8",
    "gla_fwd_state_f16_k128_v64_w8",
    "gla_fwd_state_f16_k128_v128_w8",
    "gla_fwd_state_f16_k256_v32",
    "gla_fwd_state_f16_k256_v32_w8",
    "gla_fwd_state_f16_k256_v64_w8",
    "gla_fwd_state_f32_k64",
    "gla_fwd_state_f32_k128",
    "gla_fwd_state_f32_k256",
];

/// Kernel entry points defined by gla_bwd.cu.
pub const BWD_KERNELS: &[&str] = &[
    "gla_bwd_state_bf16_k64",
    "gla_bwd_state_bf16_k128",
    "gla_bwd_state_bf16_k256",
    "gla_bwd_state_f16_k64",
    "gla_bwd_state_f16_k128",
    "gla_bwd_state_f16_k256",
    "gla_bwd_state_f32_k64",
    "gla_bwd_state_f32_k128",
    "gla_bwd_state_f32_k256",
    "gla_bwd_dqk_bf16",
    "gla_bwd_dqk_f16",
    "gla_bwd_dqk_f32",
    "gla_bwd_dqk_local_bf16",
    "gla_bwd_dqk_local_f16",
    "gla_bwd_dqk_local_f32",
    "gla_bwd_dv_bf16",
    "gla_bwd_dv_f16",
    "gla_bwd_dv_f32",
    "gla_bwd_dg_reduce_bf16",
    "gla_bwd_dg_reduce_f16",
    "gla_bwd_dg_reduce_f32",
];

/// Whether the NVRTC library can be loaded (cudarc looks for `libnvrtc.so.13` etc. on the
/// dynamic loader's path, e.g. `LD_LIBRARY_PATH`). Never panics.
pub fn nvrtc_available() -> Result<(), String> {
    let ok = std::panic::catch_unwind(|| unsafe { sys::is_culib_present() });
    match ok {
        Ok(true) => Ok(()),
        Ok(false) => Err(
            "libnvrtc not found on the loader path (set LD_LIBRARY_PATH; see .ci/install-nvrtc.sh)"
                .into(),
        ),
        Err(_) => Err("loading libnvrtc panicked".into()),
    }
}

/// The NVRTC options of every kernel: IEEE f32 (no fast math, no flush-to-zero, precise division
/// and square root; FMA contraction allowed), C++17, the target `arch`, and an include folder
/// only if one is configured (`GLA_NVRTC_INCLUDE`, as exported by .ci/install-nvrtc.sh, or
/// `$CUDA_PATH/include`): the kernels include no CUDA header, but one that starts including
/// `cuda_bf16.h` keeps compiling.
fn compile_options(arch: &str) -> Vec<String> {
    let include_paths = [
        std::env::var("GLA_NVRTC_INCLUDE").ok(),
        std::env::var("CUDA_PATH")
            .ok()
            .map(|p| format!("{p}/include")),
    ]
    .into_iter()
    .flatten()
    .filter(|p| std::path::Path::new(p).is_dir());
    let mut opts: Vec<String> = vec![
        "--ftz=false".into(),
        "--prec-sqrt=true".into(),
        "--prec-div=true".into(),
        "--fmad=true".into(),
    ];
    opts.extend(include_paths.map(|p| format!("--include-path={p}")));
    opts.push(format!("--gpu-architecture={arch}"));
    opts.push("--std=c++17".into());
    opts
}

/// Compile one source for one architecture (`"sm_90"`), returning the PTX text. The source may
/// include every header in [`HEADERS`] by its name.
///
/// Fails (never panics) if NVRTC cannot be loaded or rejects the source; the NVRTC log is in the
/// error. Warnings are not errors. With `GLA_PTX_CACHE=DIR` the PTX is read from (and written to)
/// an on-disk cache keyed by everything it depends on (see `ptx_cache.rs`).
pub fn compile(name: &str, src: &str, arch: &str) -> Result<cudarc::nvrtc::Ptx, GpuError> {
    nvrtc_available().map_err(GpuError::Compile)?;
    let options = compile_options(arch);
    let cache = crate::ptx_cache::Entry::from_env(name, src, HEADERS, &options, nvrtc_version());
    if let Some(ptx) = cache.as_ref().and_then(|c| c.load()) {
        return Ok(cudarc::nvrtc::Ptx::from_src(ptx));
    }
    match std::panic::catch_unwind(|| nvrtc_compile(name, src, &options)) {
        Ok(Ok(ptx)) => {
            if let Some(c) = &cache {
                c.store(&ptx);
            }
            Ok(cudarc::nvrtc::Ptx::from_src(ptx))
        }
        Ok(Err(why)) => Err(GpuError::Compile(format!("{name} for {arch}{why}"))),
        Err(_) => Err(GpuError::Compile(format!(
            "{name} for {arch}: NVRTC panicked"
        ))),
    }
}

/// NVRTC's (major, minor) version, (0, 0) if it cannot be read (NVRTC must be loadable).
fn nvrtc_version() -> (i32, i32) {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: nvrtcVersion writes two ints through valid pointers.
    match unsafe { sys::nvrtcVersion(&mut major, &mut minor) }.result() {
        Ok(()) => (major, minor),
        Err(_) => (0, 0),
    }
}

/// An NVRTC program, destroyed on drop.
struct Program(sys::nvrtcProgram);

impl Drop for Program {
    fn drop(&mut self) {
        // SAFETY: self.0 was created by nvrtcCreateProgram and is destroyed once, here.
        let _ = unsafe { result::destroy_program(self.0) };
    }
}

/// nvrtcCreateProgram with [`HEADERS`], nvrtcCompileProgram with `options`, nvrtcGetPTX. The
/// error text continues "`name` for `arch`" (the options and NVRTC's log on a rejected source).
fn nvrtc_compile(name: &str, src: &str, options: &[String]) -> Result<String, String> {
    let cstr = |s: &str| CString::new(s).map_err(|_| ": the text contains a NUL byte".to_string());
    let (src_c, name_c) = (cstr(src)?, cstr(name)?);
    let header_src: Vec<CString> = HEADERS
        .iter()
        .map(|h| cstr(h.1))
        .collect::<Result<_, _>>()?;
    let header_name: Vec<CString> = HEADERS
        .iter()
        .map(|h| cstr(h.0))
        .collect::<Result<_, _>>()?;
    let header_src_p: Vec<*const c_char> = header_src.iter().map(|s| s.as_ptr()).collect();
    let header_name_p: Vec<*const c_char> = header_name.iter().map(|s| s.as_ptr()).collect();
    let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
    // SAFETY: every pointer refers to a NUL-terminated string alive until the program is
    // destroyed (end of this function); the two header arrays have HEADERS.len() entries.
    unsafe {
        sys::nvrtcCreateProgram(
            &mut prog,
            src_c.as_ptr(),
            name_c.as_ptr(),
            HEADERS.len() as std::ffi::c_int,
            header_src_p.as_ptr(),
            header_name_p.as_ptr(),
        )
    }
    .result()
    .map_err(|e| format!(": nvrtcCreateProgram failed: {e:?}"))?;
    let prog = Program(prog);
    // SAFETY: prog.0 is a live program (created above, destroyed when `prog` drops).
    if let Err(e) = unsafe { result::compile_program(prog.0, options) } {
        let log = unsafe { result::get_program_log(prog.0) }
            .map(|l| {
                unsafe { CStr::from_ptr(l.as_ptr()) }
                    .to_string_lossy()
                    .into_owned()
            })
            .unwrap_or_else(|e2| format!("(no log: {e2:?})"));
        return Err(format!(" (options {options:?}): {e:?}\n{log}"));
    }
    let ptx =
        unsafe { result::get_ptx(prog.0) }.map_err(|e| format!(": nvrtcGetPTX failed: {e:?}"))?;
    // SAFETY: nvrtcGetPTX writes a NUL-terminated string.
    Ok(unsafe { CStr::from_ptr(ptx.as_ptr()) }
        .to_string_lossy()
        .into_owned())
}

/// The `sm_XY` name of a compute capability.
pub fn arch_name(major: i32, minor: i32) -> String {
    format!("sm_{major}{minor}")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Definitions of the shared prelude: each must be in gla_common.cuh and in no kernel source.
    const PRELUDE: &[&str] = &[
        "struct bf16_t",
        "float to_f(f16_t v)",
        "float tf32r(float x)",
        "float exp_nonpos(float x)",
        "float decay(float fx",
        "void cp_async16(",
        "struct Mma<bf16_t>",
    ];

    #[test]
    fn every_source_includes_the_one_copy_of_the_prelude() {
        for def in PRELUDE {
            assert!(GLA_COMMON_SRC.contains(def), "gla_common.cuh lacks {def:?}");
        }
        for (name, src, _) in sources() {
            assert!(
                src.contains("#include \"gla_common.cuh\""),
                "{name} does not include gla_common.cuh"
            );
            for def in PRELUDE {
                assert!(!src.contains(def), "{name} defines {def:?} again");
            }
            for (header, _) in HEADERS {
                assert!(!header.contains('/'), "{header}: a bare include name");
            }
        }
    }
}
