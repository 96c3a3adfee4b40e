//! The typed error every public function of glacheck returns for bad input.

/// Everything that can be wrong with a GLA problem or its options.
///
/// Messages name the tensor, the offending index and the value, so that a user can find the bad
/// element without a debugger.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum GlaError {
    /// A tensor has the wrong rank or shape.
    #[error("tensor `{tensor}` has shape {got:?}, expected {expected}")]
    Shape {
        /// Tensor name as in the file layout (`q`, `k`, `v`, `g`, `h0`, `do`, `dht`, ...).
        tensor: String,
        /// The shape that was supplied.
        got: Vec<usize>,
        /// Human-readable description of the expected shape.
        expected: String,
    },
    /// A dimension that must be positive is zero (K, V or H).
    #[error("tensor `{tensor}` has a zero-sized {what} dimension; K, V and H must be at least 1")]
    ZeroDim {
        /// Tensor name.
        tensor: String,
        /// Which dimension (`K`, `V`, `H`).
        what: String,
    },
    /// A log gate is positive (outside the domain [-inf, 0]).
    #[error("gate `g` at index {index:?} is {value:e} > 0: log gates must lie in [-inf, 0] (alpha = exp(g) in [0, 1]); pass log(alpha), not alpha")]
    PositiveGate {
        /// Index into `g` (`[b, t, h, d]` or `[b, t, h]`).
        index: Vec<usize>,
        /// The value found.
        value: f64,
    },
    /// A tensor holds NaN.
    #[error("tensor `{tensor}` holds NaN at index {index:?}")]
    NaN {
        /// Tensor name.
        tensor: String,
        /// Index of the first NaN in row-major order.
        index: Vec<usize>,
    },
    /// A tensor other than the gates holds +-inf (or a gate holds +inf).
    #[error("tensor `{tensor}` holds {value} at index {index:?}; only the gates may be infinite (g = -inf means alpha = 0)")]
    NonFinite {
        /// Tensor name.
        tensor: String,
        /// Index of the first non-finite element.
        index: Vec<usize>,
        /// The value found.
        value: f64,
    },
    /// The problem implies a tensor too large to allocate (more than `isize::MAX` bytes): e.g. a
    /// problem with no time steps whose B, K or V are enormous.
    #[error("{what} would have shape [N, H, K, V] = {shape:?}: more than isize::MAX bytes, too large to allocate")]
    TooLarge {
        /// The tensors concerned.
        what: String,
        /// Their shape.
        shape: Vec<usize>,
    },
    /// `cu_seqlens` is malformed or inconsistent with the inputs.
    #[error("bad cu_seqlens: {0}")]
    CuSeqlens(String),
    /// `scale` is not finite.
    #[error("scale must be a finite number, got {0}")]
    Scale(f64),
    /// An option (chunk size, precision, rounding plan, dtype, ...) is invalid.
    #[error("invalid option: {0}")]
    Options(String),
    /// A requested feature is not supported by this implementation.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

/// Shorthand for results carrying a [`GlaError`].
pub type Result<T, E = GlaError> = std::result::Result<T, E>;
