//! Target `metadata`: the JSON header of a safetensors file, with its `__metadata__`, and the
//! accessors that interpret it (`scale`, `cu_seqlens`, the float tensors).
//!
//! The input is the header's text; a byte `0xFF` (never part of UTF-8 text) ends it, and what
//! follows is the data section. The target prefixes the right header length, so every input is
//! a file whose framing is correct and the engine spends its time on the JSON.
//!
//! Checks: an accepted header's `scale` is either absent, a one-line `BadMetadata` error naming
//! `scale`, or the finite number the text spells; `cu_seqlens` is absent, a one-line error, or
//! the integers stored; the metadata survive a write/read round trip.

use crate::check;
use gla_fixtures::io::{parse_tensors, FileError, INPUT_NAMES};
use std::path::Path;

/// The file an input stands for: header length, header (the input up to its first `0xFF`),
/// data (the rest).
pub fn file_of(input: &[u8]) -> Vec<u8> {
    let (header, data) = match input.iter().position(|&b| b == 0xFF) {
        Some(i) => (&input[..i], &input[i + 1..]),
        None => (input, &[][..]),
    };
    let mut file = Vec::with_capacity(8 + input.len());
    file.extend_from_slice(&(header.len() as u64).to_le_bytes());
    file.extend_from_slice(header);
    file.extend_from_slice(data);
    file
}

/// Run the target on one input.
pub fn run(input: &[u8]) {
    check::within_budget(input.len(), || {
        let bytes = file_of(input);
        let f = match parse_tensors(&bytes, Path::new(check::INPUT)) {
            Ok(f) => f,
            Err(e) => {
                check::one_line(&e);
                assert!(
                    matches!(e, FileError::Truncated { .. } | FileError::Corrupt { .. }),
                    "the reader reported {e:?}"
                );
                return;
            }
        };
        check::tensor_file(&f, bytes.len());
        match (f.metadata.get("scale"), f.scale()) {
            (None, Ok(None)) => {}
            (Some(text), Ok(Some(x))) => {
                assert!(x.is_finite(), "scale {text:?} read as {x}");
                assert_eq!(text.trim().parse::<f64>().ok(), Some(x));
            }
            (Some(text), Err(e)) => {
                check::one_line(&e);
                assert!(
                    matches!(&e, FileError::BadMetadata { key, value, .. } if key == "scale" && value == text),
                    "scale {text:?}: {e:?}"
                );
            }
            (text, r) => panic!("scale metadata {text:?} read as {r:?}"),
        }
        match f.cu_seqlens() {
            Ok(Some(cu)) => {
                let t = &f.tensors["cu_seqlens"];
                assert!(!t.dtype.is_float() && t.values.ndim() == 1);
                assert!(cu.iter().zip(t.values.iter()).all(|(&c, &x)| c as f64 == x));
            }
            Ok(None) => assert!(!f.contains("cu_seqlens")),
            Err(e) => check::one_line(&e),
        }
        for name in INPUT_NAMES {
            if let Err(e) = f.float_opt(name) {
                check::one_line(&e);
            }
        }
        check::write_read_round_trip(&check::writable(&f), &f.metadata);
    });
}
