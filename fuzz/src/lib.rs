//! # gla-fuzz
//!
//! Fuzz targets for what glacheck reads from outside: each target is a plain function
//! `fn(&[u8])` that feeds arbitrary bytes to a reader or to problem validation and panics when
//! something is wrong: a panic or overflow inside the library, a broken invariant of an accepted
//! input, a multi-line error message, or memory out of proportion to the input (see [`alloc`]).
//!
//! | target | input bytes | what it drives |
//! |---|---|---|
//! | [`safetensors`](targets::safetensors::run) | a whole file | `gla_fixtures::io::parse_tensors`, then writes the result and reads it back |
//! | [`problem_file`](targets::problem_file::run) | a whole file | the reader, then `TensorFile::problem` (dtypes, ranks, shapes, `cu_seqlens`, `scale`, g > 0, NaN), then the problem's own API and a write/read round trip |
//! | [`metadata`](targets::metadata::run) | a header's JSON (optionally `0xFF` and the data section) | the header and `__metadata__` parsing, the `scale` and `cu_seqlens` accessors |
//! | [`builder`](targets::builder::run) | a recipe for shapes and values | `Problem::builder` with arbitrary shapes and values, checked against an independent statement of the validation rules |
//!
//! The same functions serve two drivers: the corpus replay test (`cargo test -p gla-fuzz`),
//! which runs every committed input of `fuzz/corpus/<target>/` (and the golden fixtures for the
//! file targets), and the coverage-guided engine in `fuzz/libfuzzer/` (see `fuzz/README.md`).
//!
//! ```
//! // Every target accepts any bytes without panicking; a hostile header is an error, not a crash.
//! let mut file = (1u64 << 40).to_le_bytes().to_vec(); // a header length of 1 TiB
//! file.extend_from_slice(b"{}");
//! for t in gla_fuzz::TARGETS {
//!     (t.run)(&file);
//!     (t.run)(b"");
//! }
//! ```
#![warn(missing_docs)]

pub mod alloc;
pub mod check;
pub mod targets;

/// One fuzz target: a name (the folder of its corpus and the engine's binary) and its function.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Name of the target, of its corpus folder `fuzz/corpus/<name>/` and of its engine binary.
    pub name: &'static str,
    /// The target: any bytes in, a panic for a finding.
    pub run: fn(&[u8]),
    /// Whether the golden fixtures (`fixtures/golden/*.safetensors`) are inputs of this target
    /// too (the replay runs them; the engine takes them as a second seed folder).
    pub goldens: bool,
}

/// Every fuzz target, in the order the replay test runs them.
pub const TARGETS: [Target; 5] = [
    Target {
        name: "safetensors",
        run: targets::safetensors::run,
        goldens: true,
    },
    Target {
        name: "problem_file",
        run: targets::problem_file::run,
        goldens: true,
    },
    Target {
        name: "metadata",
        run: targets::metadata::run,
        goldens: false,
    },
    Target {
        name: "builder",
        run: targets::builder::run,
        goldens: false,
    },
    Target {
        name: "candidate",
        run: targets::candidate::run,
        goldens: true,
    },
];

/// The target of this name.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.into_iter().find(|t| t.name == name)
}
