//! Arrays in and out.
//!
//! In: the Python layer hands every tensor as `(name, tag, array)`, where `tag` is the
//! safetensors spelling of its storage dtype (`F64`, `F32`, `F16`, `BF16` as the raw `uint16`
//! bits, `I32`, `I64`) and `array` a numpy array of that dtype with any strides (negative ones
//! included); a tag glacheck does not read (`U8`, `BOOL`, ...) comes with any object that has a
//! `shape`. The tensors fill a [`TensorFile`] exactly as if read from a file: each array is
//! copied once, element by element and exactly, into row-major f64 values, and everything
//! downstream (validation, messages, the judge) is the file path's.
//!
//! Out: results become numpy arrays that take over the Rust buffers (no copy); gate-shaped
//! tensors of scalar-gate problems in the user layout `[B, T, H]`.

use crate::errors::input_error;
use gla_fixtures::io::{FileDtype, StoredTensor, TensorFile};
use gla_reference::bounds::Magnitudes;
use gla_reference::{GateKind, Solution};
use ndarray::{Array4, ArrayD, Axis, IxDyn};
use numpy::{Element, PyArray, PyArrayDyn, PyArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use std::collections::BTreeMap;

/// One tensor as the Python layer passes it: name, storage tag, array.
pub type TensorArg<'py> = (String, String, Bound<'py, PyAny>);

/// The tensors and metadata of an in-memory "file", checked and named like a file's.
pub fn tensor_file(
    tensors: Vec<TensorArg<'_>>,
    metadata: BTreeMap<String, String>,
    label: &str,
) -> PyResult<TensorFile> {
    let mut f = TensorFile {
        metadata,
        ..TensorFile::default()
    };
    for (name, tag, array) in tensors {
        if f.contains(&name) {
            return Err(input_error(format!(
                "{label}: tensor `{name}` is given twice"
            )));
        }
        match FileDtype::from_safetensors_name(&tag) {
            Some(dtype) => {
                let values = read(&name, dtype, &array, label)?;
                f.tensors.insert(name, StoredTensor { dtype, values });
            }
            None => {
                let shape: Vec<usize> = array
                    .getattr("shape")
                    .and_then(|s| s.extract())
                    .unwrap_or_default();
                f.other.insert(name, (tag, shape));
            }
        }
    }
    Ok(f)
}

/// Copy a numpy array of the tagged dtype into row-major f64 values (exactly).
fn read(name: &str, dtype: FileDtype, a: &Bound<'_, PyAny>, label: &str) -> PyResult<ArrayD<f64>> {
    match dtype {
        FileDtype::F64 => copy::<f64>(name, a, label, |x| x),
        FileDtype::F32 => copy::<f32>(name, a, label, f64::from),
        FileDtype::F16 => copy::<half::f16>(name, a, label, |x| x.to_f64()),
        FileDtype::Bf16 => copy::<u16>(name, a, label, |x| half::bf16::from_bits(x).to_f64()),
        FileDtype::I32 => copy::<i32>(name, a, label, f64::from),
        FileDtype::I64 => {
            let v = copy::<i64>(name, a, label, |x| x as f64)?;
            // The file reader's limit: integers beyond 2^53 are not exact in f64.
            if let Some(x) = v.iter().find(|x| x.abs() > 9_007_199_254_740_992.0) {
                return Err(input_error(format!(
                    "{label}: tensor `{name}`: integer {x} is too large (|x| > 2^53)"
                )));
            }
            Ok(v)
        }
    }
}

fn copy<T: Element + Copy>(
    name: &str,
    a: &Bound<'_, PyAny>,
    label: &str,
    f: impl Fn(T) -> f64,
) -> PyResult<ArrayD<f64>> {
    let arr = a.cast::<PyArrayDyn<T>>().map_err(|_| {
        input_error(format!(
            "{label}: tensor `{name}` is not a numpy array of the dtype it was tagged with"
        ))
    })?;
    let ro = arr
        .try_readonly()
        .map_err(|e| input_error(format!("{label}: tensor `{name}`: {e}")))?;
    let view = ro.as_array();
    let data: Vec<f64> = match view.as_slice() {
        Some(s) => s.iter().map(|&x| f(x)).collect(),
        None => view.iter().map(|&x| f(x)).collect(),
    };
    Ok(ArrayD::from_shape_vec(IxDyn(view.shape()), data).expect("the view's own shape"))
}

/// A result tensor as a numpy array (takes over the buffer).
pub fn array<'py>(py: Python<'py>, a: Array4<f64>) -> Bound<'py, PyAny> {
    PyArray::from_owned_array(py, a).into_any()
}

/// A gate-shaped result (`dg`, its magnitudes) in the user's layout: `[B, T, H]` for scalar
/// gates.
pub fn gate_array<'py>(py: Python<'py>, a: Array4<f64>, kind: GateKind) -> Bound<'py, PyAny> {
    if kind == GateKind::Scalar && a.shape()[3] == 1 {
        PyArray::from_owned_array(py, a.remove_axis(Axis(3))).into_any()
    } else {
        array(py, a)
    }
}

/// Put o, ht and the gradients of a solution into `d`.
pub fn put_solution(d: &Bound<'_, PyDict>, s: Solution, kind: GateKind) -> PyResult<()> {
    let py = d.py();
    d.set_item("o", array(py, s.o))?;
    d.set_item("ht", array(py, s.ht))?;
    if let Some(g) = s.grads {
        d.set_item("dq", array(py, g.dq))?;
        d.set_item("dk", array(py, g.dk))?;
        d.set_item("dv", array(py, g.dv))?;
        d.set_item("dg", gate_array(py, g.dg, kind))?;
        d.set_item("dh0", array(py, g.dh0))?;
    }
    Ok(())
}

/// Put the magnitudes `M_o`, `M_ht`, ... `M_dg`, `M_dg_local` (those present) into `d`.
pub fn put_magnitudes(d: &Bound<'_, PyDict>, m: Magnitudes, kind: GateKind) -> PyResult<()> {
    let py = d.py();
    d.set_item("M_o", array(py, m.o))?;
    d.set_item("M_ht", array(py, m.ht))?;
    for (name, a) in [
        ("M_dq", m.dq),
        ("M_dk", m.dk),
        ("M_dv", m.dv),
        ("M_dh0", m.dh0),
    ] {
        if let Some(a) = a {
            d.set_item(name, array(py, a))?;
        }
    }
    for (name, a) in [("M_dg", m.dg), ("M_dg_local", m.dg_local)] {
        if let Some(a) = a {
            d.set_item(name, gate_array(py, a, kind))?;
        }
    }
    Ok(())
}

/// A stored tensor of a file as a numpy array in its stored dtype: f64, f32 (also for f16 and
/// bf16 values, which f32 holds exactly), int64 for integers.
pub fn stored<'py>(py: Python<'py>, t: &StoredTensor) -> Bound<'py, PyAny> {
    match t.dtype {
        FileDtype::F64 => PyArray::from_array(py, &t.values).into_any(),
        FileDtype::F32 | FileDtype::F16 | FileDtype::Bf16 => {
            PyArray::from_owned_array(py, t.values.mapv(|x| x as f32)).into_any()
        }
        FileDtype::I32 | FileDtype::I64 => {
            PyArray::from_owned_array(py, t.values.mapv(|x| x as i64)).into_any()
        }
    }
}
