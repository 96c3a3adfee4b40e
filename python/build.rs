//! Embeds the committed golden files (`fixtures/golden/*.safetensors` of the repository) in the
//! extension, so that `glacheck.case(name)` returns the stored oracle truth wherever the wheel is
//! installed. A source tree without them builds an extension whose cases carry inputs only.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let dir = manifest.join("..").join("fixtures").join("golden");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let stem = name.strip_suffix(".safetensors")?.to_string();
                    Some((stem, e.path()))
                })
                .collect()
        })
        .unwrap_or_default();
    if files.is_empty() {
        println!(
            "cargo:warning=no golden files in {}: glacheck.case() will carry inputs only",
            dir.display()
        );
    }
    files.sort();
    let mut src = String::from(
        "/// `(case name, bytes of its golden file)`, sorted by name.\n\
         pub static GOLDENS: &[(&str, &[u8])] = &[\n",
    );
    for (stem, path) in &files {
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            src,
            "    ({stem:?}, include_bytes!({:?})),",
            path.display().to_string()
        );
    }
    src.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("goldens.rs");
    std::fs::write(out, src).expect("write goldens.rs");
}
