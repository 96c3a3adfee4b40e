//! Problems from tensors held in memory: a [`TensorFile`] that a front end filled itself (the
//! Python bindings fill one from numpy arrays) becomes a [`Problem`] through the same checks, in
//! the same order and with the same messages, as a file read from disk
//! ([`TensorFile::problem`]), but the input values are moved out of the file instead of copied,
//! so a caller's arrays are copied once (into the file's f64 values) and never again.
//!
//! ```
//! use gla_fixtures::io::{FileDtype, StoredTensor, TensorFile};
//! use gla_judge::inputs::take_problem;
//! use ndarray::ArrayD;
//! let file = |gate: f64| {
//!     let mut f = TensorFile::default();
//!     let mut put = |name: &str, shape: &[usize], x: f64| {
//!         let values = ArrayD::from_elem(shape, x);
//!         f.tensors.insert(name.into(), StoredTensor { dtype: FileDtype::F32, values });
//!     };
//!     put("q", &[1, 4, 1, 2], 0.5);
//!     put("k", &[1, 4, 1, 2], 0.25);
//!     put("v", &[1, 4, 1, 3], 1.0);
//!     put("g", &[1, 4, 1], gate);
//!     f
//! };
//! // A positive (invalid) scalar gate: the same error as the file reader's.
//! let mut bad = file(0.5);
//! let expected = bad.problem().unwrap_err().to_string();
//! assert_eq!(take_problem(&mut bad).unwrap_err().to_string(), expected);
//! // A valid file: the same problem, with the inputs moved out.
//! let mut f = file(-0.5);
//! let p = f.problem()?;
//! assert_eq!(take_problem(&mut f)?, p);
//! assert!(!f.contains("q"));
//! # Ok::<(), gla_fixtures::io::FileError>(())
//! ```

use gla_fixtures::io::{FileError, TensorFile};
use gla_reference::Problem;

/// Names of the float input tensors, in the order [`TensorFile::problem`] checks them.
const FLOAT_INPUTS: [&str; 7] = ["q", "k", "v", "g", "h0", "do", "dht"];

/// Build the problem held by `f` exactly as [`TensorFile::problem`] does (same checks, same
/// order, same errors), moving the input tensors (q, k, v, g, h0, do, dht) out of `f` instead
/// of copying them. `f` keeps everything else (results, magnitudes, `cu_seqlens`, metadata).
/// When the file's form is wrong (a missing tensor, a dtype, `cu_seqlens`' rank or dtype, the
/// `scale` entry) `f` is unchanged; when the tensors do not form a valid problem (shapes, NaN,
/// positive gates, ...) the inputs have been moved out and dropped.
pub fn take_problem(f: &mut TensorFile) -> Result<Problem, FileError> {
    // The checks TensorFile::problem makes before it builds the problem, in its order.
    for name in &FLOAT_INPUTS[..4] {
        f.float(name)?;
    }
    for name in &FLOAT_INPUTS[4..] {
        f.float_opt(name)?;
    }
    let cu = f.cu_seqlens()?;
    let scale = f.scale()?;
    let mut take = |name: &str| f.tensors.remove(name).map(|t| t.values);
    let (q, k, v, g) = (take("q"), take("k"), take("v"), take("g"));
    let (h0, do_, dht) = (take("h0"), take("do"), take("dht"));
    let (Some(q), Some(k), Some(v), Some(g)) = (q, k, v, g) else {
        unreachable!("q, k, v and g were checked to be present")
    };
    Ok(Problem::from_dyn(q, k, v, g, h0, do_, dht, cu, scale)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gla_fixtures::io::{FileDtype, StoredTensor};
    use ndarray::ArrayD;

    fn put(f: &mut TensorFile, name: &str, dtype: FileDtype, shape: &[usize], x: f64) {
        let values = ArrayD::from_elem(shape, x);
        f.tensors
            .insert(name.into(), StoredTensor { dtype, values });
    }

    fn valid() -> TensorFile {
        let mut f = TensorFile::default();
        put(&mut f, "q", FileDtype::F32, &[1, 5, 2, 3], 0.5);
        put(&mut f, "k", FileDtype::F32, &[1, 5, 2, 3], -0.25);
        put(&mut f, "v", FileDtype::F32, &[1, 5, 2, 4], 1.0);
        put(&mut f, "g", FileDtype::F32, &[1, 5, 2, 3], -0.125);
        put(&mut f, "h0", FileDtype::F64, &[2, 2, 3, 4], 0.75);
        put(&mut f, "do", FileDtype::Bf16, &[1, 5, 2, 4], 2.0);
        put(&mut f, "cu_seqlens", FileDtype::I64, &[3], 0.0);
        f.tensors.get_mut("cu_seqlens").unwrap().values =
            ArrayD::from_shape_vec(vec![3], vec![0.0, 2.0, 5.0]).unwrap();
        f.metadata.insert("scale".into(), "0.5".into());
        f
    }

    #[test]
    fn same_problem_as_a_file() {
        let mut f = valid();
        let p = f.problem().unwrap();
        let q = take_problem(&mut f).unwrap();
        assert_eq!(p, q);
        assert!(f.contains("cu_seqlens") && !f.contains("do"));
    }

    /// Every kind of bad input gives the message a file gives, and leaves the file unchanged.
    #[test]
    fn same_errors_as_a_file() {
        type Edit = fn(&mut TensorFile);
        let edits: Vec<(&str, Edit)> = vec![
            ("missing v", |f| {
                f.tensors.remove("v");
            }),
            ("missing q and bad k", |f| {
                f.tensors.remove("q");
                f.tensors.get_mut("k").unwrap().dtype = FileDtype::I32;
            }),
            ("integer g", |f| {
                f.tensors.get_mut("g").unwrap().dtype = FileDtype::I64
            }),
            ("u8 h0", |f| {
                f.tensors.remove("h0");
                f.other.insert("h0".into(), ("U8".into(), vec![2, 2, 3, 4]));
            }),
            ("float cu_seqlens", |f| {
                f.tensors.get_mut("cu_seqlens").unwrap().dtype = FileDtype::F32
            }),
            ("bad scale", |f| {
                f.metadata.insert("scale".into(), "inf".into());
            }),
            ("positive gate", |f| {
                f.tensors.get_mut("g").unwrap().values[[0, 3, 1, 2]] = 0.5
            }),
            ("NaN in v", |f| {
                f.tensors.get_mut("v").unwrap().values[[0, 1, 0, 0]] = f64::NAN
            }),
            ("rank of q", |f| {
                let q = &mut f.tensors.get_mut("q").unwrap().values;
                *q = ArrayD::zeros(vec![5, 2, 3]);
            }),
            ("cu_seqlens beyond T", |f| {
                f.tensors.get_mut("cu_seqlens").unwrap().values[[2]] = 9.0
            }),
        ];
        for (what, edit) in edits {
            let mut f = valid();
            edit(&mut f);
            let before = f.clone();
            let want = f.problem().unwrap_err().to_string();
            let got = take_problem(&mut f).unwrap_err().to_string();
            assert_eq!(got, want, "{what}");
            let problem_error = ["positive", "NaN", "rank", "beyond"]
                .iter()
                .any(|w| what.contains(w));
            if !problem_error {
                assert_eq!(f, before, "{what}: the file must be unchanged");
            }
        }
    }
}
