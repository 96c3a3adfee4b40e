//! The package's exceptions and the one place where Rust errors and panics become Python
//! exceptions.
//!
//! * `glacheck.InputError` (a `ValueError`): unusable input; the message is the one the command
//!   line prints for the same input in a file (with `<inputs>` / `<outputs>` in place of a path
//!   for arrays held in memory).
//! * `glacheck.InternalError` (a `RuntimeError`): a panic inside glacheck, i.e. a bug; no panic
//!   crosses into Python as anything else.

use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

pyo3::create_exception!(
    glacheck,
    InputError,
    PyValueError,
    "Unusable input (wrong rank or shape, NaN, a positive log gate, bad cu_seqlens, an unreadable \
     dtype, a candidate that does not match the problem, ...). The message is the one the \
     `glacheck` command line prints for the same input stored in a file."
);

pyo3::create_exception!(
    glacheck,
    InternalError,
    PyRuntimeError,
    "A bug in glacheck (a Rust panic, caught at the boundary). Please report it with the input \
     that caused it."
);

/// An `InputError` with this message.
pub fn input_error(msg: impl Into<String>) -> PyErr {
    InputError::new_err(msg.into())
}

/// The message of a panic payload.
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".into()
    }
}

/// The `InternalError` of a caught panic.
pub fn internal_error(payload: &(dyn Any + Send)) -> PyErr {
    InternalError::new_err(format!(
        "internal error in glacheck (please report it): {}",
        panic_message(payload)
    ))
}

/// Run `f`, turning a panic into `InternalError` (the last line of defence at every entry point).
pub fn guarded<R>(f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(internal_error(payload.as_ref())),
    }
}
