//! Target `safetensors`: the bytes of a whole file through the safetensors reader.
//!
//! An accepted file must decode to tensors that match their shapes and fit in the file, and
//! writing what was read then reading it back must give the same tensors and metadata, and
//! writing that again the same bytes. A refused file must give a one-line `Truncated` or
//! `Corrupt` error.

use crate::check;
use gla_fixtures::io::{parse_tensors, FileError};
use std::path::Path;

/// Run the target on one input.
pub fn run(data: &[u8]) {
    check::within_budget(data.len(), || {
        match parse_tensors(data, Path::new(check::INPUT)) {
            Err(e) => {
                check::one_line(&e);
                assert!(
                    matches!(e, FileError::Truncated { .. } | FileError::Corrupt { .. }),
                    "the reader reported {e:?}"
                );
            }
            Ok(f) => {
                check::tensor_file(&f, data.len());
                check::write_read_round_trip(&check::writable(&f), &f.metadata);
            }
        }
    });
}
