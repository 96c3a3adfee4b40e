//! Write the NVRTC output (PTX) of every kernel source for every architecture it targets, one
//! file per (source, arch), e.g. `gla_fwd.cu.sm_90.ptx`, so that a change to the CUDA sources or
//! to the way they are compiled can be checked for identical generated code with `diff -r`.
//! Needs only the NVRTC library (no GPU).
//!
//! ```text
//! cargo run -p gla-gpu --example dump_ptx -- OUT_DIR
//! ```

use gla_gpu::kernels;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: dump_ptx OUT_DIR");
        std::process::exit(2);
    };
    if let Err(why) = kernels::nvrtc_available() {
        eprintln!("NVRTC not available: {why}");
        std::process::exit(1);
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {dir}: {e}");
        std::process::exit(1);
    }
    for (name, src, archs) in kernels::sources() {
        for arch in archs {
            let ptx = kernels::compile(name, src, arch).unwrap_or_else(|e| {
                eprintln!("{e}");
                std::process::exit(1)
            });
            let path = std::path::Path::new(&dir).join(format!("{name}.{arch}.ptx"));
            if let Err(e) = std::fs::write(&path, ptx.to_src()) {
                eprintln!("cannot write {}: {e}", path.display());
                std::process::exit(1);
            }
            println!("{}", path.display());
        }
    }
}
