//! Results of a forward (and optionally backward) pass, in f64 whatever the compute type.

use ndarray::Array4;

/// Gradients of the loss with respect to every input.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradients {
    /// dL/dq `[B, T, H, K]`.
    pub dq: Array4<f64>,
    /// dL/dk `[B, T, H, K]`.
    pub dk: Array4<f64>,
    /// dL/dv `[B, T, H, V]`.
    pub dv: Array4<f64>,
    /// dL/dg w.r.t. the natural-log gates, `[B, T, H, Kg]` (Kg = K per-channel, 1 scalar: the
    /// scalar gradient is the sum over channels).
    pub dg: Array4<f64>,
    /// dL/dh0 `[N, H, K, V]` (computed even when h0 was absent, i.e. zero).
    pub dh0: Array4<f64>,
}

/// Output of a solver. Values are stored as f64; a solver computing in f32 (or rounding to bf16)
/// stores its results exactly, so comparisons see the solver's own numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// Output `[B, T, H, V]`.
    pub o: Array4<f64>,
    /// Final states `[N, H, K, V]`.
    pub ht: Array4<f64>,
    /// Gradients, when the backward pass ran.
    pub grads: Option<Gradients>,
}

/// Names of the output tensors in file and report order.
pub const OUTPUT_NAMES: [&str; 7] = ["o", "ht", "dq", "dk", "dv", "dg", "dh0"];

impl Solution {
    /// Look up an output tensor by its file name (`o`, `ht`, `dq`, `dk`, `dv`, `dg`, `dh0`).
    pub fn tensor(&self, name: &str) -> Option<&Array4<f64>> {
        match name {
            "o" => Some(&self.o),
            "ht" => Some(&self.ht),
            _ => {
                let g = self.grads.as_ref()?;
                match name {
                    "dq" => Some(&g.dq),
                    "dk" => Some(&g.dk),
                    "dv" => Some(&g.dv),
                    "dg" => Some(&g.dg),
                    "dh0" => Some(&g.dh0),
                    _ => None,
                }
            }
        }
    }
}
