//! Target `problem_file`: the bytes of a whole file through the reader and
//! `TensorFile::problem` (tensor dtypes and ranks, shapes, `cu_seqlens`, the `scale` metadata,
//! g <= 0, NaN and infinities, h0 / do / dht shapes).
//!
//! A refused file must give a one-line error. An accepted problem must keep every guarantee of
//! a validated problem ([`check::problem`]), write and read back to the same problem, and its
//! rounded copies must be valid problems or one-line errors.

use crate::check;
use gla_fixtures::io::{encode_tensors, format_f64, parse_tensors, problem_tensors, FileDtype};
use gla_reference::{Dtype, Problem};
use std::collections::BTreeMap;
use std::path::Path;

/// Run the target on one input.
pub fn run(data: &[u8]) {
    check::within_budget(data.len(), || {
        let file = match parse_tensors(data, Path::new(check::INPUT)) {
            Ok(f) => f,
            Err(e) => return check::one_line(&e),
        };
        match file.problem() {
            Ok(p) => accepted(&p),
            Err(e) => check::one_line(&e),
        }
    });
}

/// The checks on a problem read from a file.
pub fn accepted(p: &Problem) {
    check::problem(p);
    // Write it as f64 (exact) with its scale, read it back: the same problem.
    let meta = BTreeMap::from([("scale".to_string(), format_f64(p.scale()))]);
    let bytes = encode_tensors(&problem_tensors(p, FileDtype::F64), &meta)
        .unwrap_or_else(|e| panic!("a valid problem could not be written: {e}"));
    let back = parse_tensors(&bytes, Path::new(check::INPUT))
        .and_then(|f| f.problem())
        .unwrap_or_else(|e| panic!("a written problem could not be read back: {e}"));
    assert!(back == *p, "a problem changed in a write/read round trip");
    for dtype in [Dtype::F32, Dtype::Bf16, Dtype::F16] {
        match p.rounded_to(dtype) {
            Ok(r) => check::problem(&r),
            Err(e) => check::one_line(&e),
        }
    }
}
