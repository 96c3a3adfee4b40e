//! Long computations off the interpreter: the work runs in its own thread without the GIL while
//! the calling thread waits in short slices, taking the GIL back between them to let Python
//! handle signals. Ctrl-C therefore raises `KeyboardInterrupt` within a tenth of a second; the
//! abandoned computation finishes in its thread and its result is dropped (the solvers have no
//! cancellation points). A panic in the work becomes `InternalError`.

use crate::errors::{input_error, internal_error, InternalError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::Duration;

/// How long the caller waits without the GIL before it checks for signals.
const SLICE: Duration = Duration::from_millis(50);

/// Run `work` in a new thread, without the GIL, interruptibly; its `Err(message)` becomes
/// `InputError(message)`.
pub fn run<R, F>(py: Python<'_>, what: &str, work: F) -> PyResult<R>
where
    R: Send + 'static,
    F: FnOnce() -> Result<R, String> + Send + 'static,
{
    let (tx, rx) = channel();
    std::thread::Builder::new()
        .name(format!("glacheck-{what}"))
        .spawn(move || {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(work)));
        })
        .map_err(|e| InternalError::new_err(format!("cannot start a worker thread: {e}")))?;
    let mut rx: Receiver<_> = rx;
    loop {
        let (got, back) = py.detach(move || {
            let got = rx.recv_timeout(SLICE);
            (got, rx)
        });
        rx = back;
        match got {
            Ok(Ok(Ok(r))) => return Ok(r),
            Ok(Ok(Err(msg))) => return Err(input_error(msg)),
            Ok(Err(payload)) => return Err(internal_error(payload.as_ref())),
            Err(RecvTimeoutError::Timeout) => py.check_signals()?,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(InternalError::new_err(
                    "internal error in glacheck: the worker thread ended without a result",
                ))
            }
        }
    }
}
