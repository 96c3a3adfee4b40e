//! The error type of every fallible gla-gpu function.

/// What can go wrong on the GPU path. Every variant carries a human-readable reason; nothing in
/// this crate panics on user input or on a missing GPU.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// No usable CUDA device or driver (the reason says which).
    #[error("no CUDA device: {0}")]
    NoDevice(String),
    /// NVRTC is missing or rejected a kernel (the log is included).
    #[error("kernel compilation failed: {0}")]
    Compile(String),
    /// A shape or option these kernels do not support (e.g. K = 96).
    #[error("unsupported by the GPU kernels: {0}")]
    Unsupported(String),
    /// The problem itself is invalid.
    #[error(transparent)]
    Problem(#[from] gla_reference::GlaError),
    /// A CUDA driver call or kernel launch failed.
    #[error("CUDA error during {what}: {err}")]
    Cuda {
        /// The operation (e.g. "launch gla_fwd_intra_bf16").
        what: String,
        /// The driver's message.
        err: String,
    },
}

impl GpuError {
    pub(crate) fn cuda(what: impl Into<String>, err: impl std::fmt::Debug) -> GpuError {
        GpuError::Cuda {
            what: what.into(),
            err: format!("{err:?}"),
        }
    }
}
