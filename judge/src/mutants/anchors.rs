//! The test rules of the anchor projects, as judges of one output tensor, for the mutant
//! benchmark's comparison with glacheck's verdict (docs/math.md §8, "How fla judges its kernels",
//! "How FlashAttention judges its kernels").
//!
//! * **fla** (`fla/utils/_testing.py`, `assert_close`): pass when `max |ref - x| <= 1e-6`;
//!   otherwise fail on NaN; otherwise pass when `RMS(ref - x) / (RMS(ref) + 1e-8) < 0.005`. The
//!   reference is an fp32 recurrence: `gla_reference::recurrent` in f32 with the local-form dg
//!   (what autograd of the naive recurrence computes).
//! * **FlashAttention** (FA2 `tests/test_flash_attn.py`): `max |x - ref| <= 2 max |pt - ref|`
//!   with `ref` an upcast reference and `pt` a same-dtype PyTorch reference. Emulated with, for
//!   a low-precision declaration (bf16, f16, tf32), `ref` = the f32 recurrence and `pt` = the
//!   recurrence with every tensor operation rounded to the dtype ([`super::same_dtype`], what a
//!   naive PyTorch reference in bf16 computes); for f32 and f64, `ref` = the f64 recurrence and
//!   `pt` = the f32 recurrence. A NaN fails. (With glacheck's chunked twin as `pt`, this rule is
//!   the max half of glacheck's baseline rule.)
//! * **cuDNN frontend**: elementwise `|x - ref| <= 2e-2 + 2e-2 |ref|` (rtol = atol = 2e-2), `ref`
//!   as FlashAttention's. A NaN fails.
//!
//! ```
//! use gla_judge::mutants::anchors::{cudnn_pass, fa_pass, fla_pass};
//! use ndarray::Array4;
//! let r = Array4::from_shape_fn((1, 8, 1, 4), |(_, t, _, e)| (t as f64 - e as f64) / 3.0);
//! let close = r.mapv(|x| x * 1.001);
//! let far = r.mapv(|x| x * 1.05);
//! assert!(fla_pass(&close, &r) && !fla_pass(&far, &r));
//! assert!(cudnn_pass(&close, &r) && !cudnn_pass(&far, &r));
//! let pt = r.mapv(|x| x * 1.01);
//! assert!(fa_pass(&close, &r, &pt) && !fa_pass(&far, &r, &pt));
//! let mut nan = r.clone();
//! nan[[0, 0, 0, 0]] = f64::NAN;
//! assert!(!fla_pass(&nan, &r) && !fa_pass(&nan, &r, &pt) && !cudnn_pass(&nan, &r));
//! ```

use ndarray::Array4;

/// fla's absolute shortcut (`err_atol`).
pub const FLA_ATOL: f64 = 1e-6;
/// fla's relative RMS threshold for o, ht and the gradients.
pub const FLA_RATIO: f64 = 0.005;
/// FlashAttention's factor on the same-dtype reference's error.
pub const FA_FACTOR: f64 = 2.0;
/// cuDNN frontend's rtol and atol.
pub const CUDNN_TOL: f64 = 2e-2;

/// `max |a - b|`, NaN when any difference is NaN (like `torch.max`).
fn max_abs_diff(a: &Array4<f64>, b: &Array4<f64>) -> f64 {
    let mut m = 0.0f64;
    for (&x, &y) in a.iter().zip(b.iter()) {
        let d = (x - y).abs();
        if d.is_nan() {
            return f64::NAN;
        }
        m = m.max(d);
    }
    m
}

fn rms(it: impl Iterator<Item = f64>) -> f64 {
    let (mut s, mut n) = (0.0, 0usize);
    for x in it {
        s += x * x;
        n += 1;
    }
    if n == 0 {
        0.0
    } else {
        (s / n as f64).sqrt()
    }
}

/// fla's `assert_close(ref, x, 0.005)`.
pub fn fla_pass(x: &Array4<f64>, reference: &Array4<f64>) -> bool {
    let abs = max_abs_diff(reference, x);
    if abs <= FLA_ATOL {
        return true;
    }
    if abs.is_nan() {
        return false;
    }
    let num = rms(reference.iter().zip(x.iter()).map(|(r, x)| r - x));
    let den = rms(reference.iter().copied()) + 1e-8;
    num / den < FLA_RATIO
}

/// FlashAttention's `max |x - ref| <= 2 max |pt - ref|`.
pub fn fa_pass(x: &Array4<f64>, reference: &Array4<f64>, pt: &Array4<f64>) -> bool {
    let a = max_abs_diff(x, reference);
    let b = max_abs_diff(pt, reference);
    a <= FA_FACTOR * b
}

/// cuDNN frontend's elementwise `|x - ref| <= atol + rtol |ref|`.
pub fn cudnn_pass(x: &Array4<f64>, reference: &Array4<f64>) -> bool {
    x.iter()
        .zip(reference.iter())
        .all(|(&x, &r)| (x - r).abs() <= CUDNN_TOL + CUDNN_TOL * r.abs())
}
