//! Target `builder`: `Problem::builder` with arbitrary shapes and values.
//!
//! The input is a recipe, read byte by byte (missing bytes read as 0): a flags byte (scalar
//! gates, which optional inputs are present, how `cu_seqlens` is made), the sizes B, T, H, K, V
//! (small, zero included), then for each tensor one byte that may change one of its dimensions
//! and one byte per value (special values such as NaN, +-inf, -0, subnormals and f16/f32
//! overflows, small multiples of 1/32, or the next 8 bytes as raw f64 bits).
//!
//! The verdict of `build()` must agree with [`valid`], an independent statement of the
//! documented rules; an accepted problem must keep every guarantee of a validated problem and
//! go through the checks of the `problem_file` target (write/read round trip, rounded copies);
//! a refusal must be a one-line message.

use crate::check;
use crate::targets::problem_file;
use gla_reference::{Gates, Problem};
use ndarray::{Array3, Array4};

/// Reads a recipe byte by byte; past its end every byte is 0.
struct Recipe<'a> {
    data: &'a [u8],
    pos: usize,
}

const SPECIAL: [f64; 16] = [
    0.0,
    -0.0,
    f64::NAN,
    f64::INFINITY,
    f64::NEG_INFINITY,
    f64::MAX,
    f64::MIN,
    f64::MIN_POSITIVE,
    -f64::MIN_POSITIVE,
    5e-324,
    -5e-324,
    65504.0,
    -65520.0,
    7e38,
    1.0,
    -1.0,
];

impl Recipe<'_> {
    fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn value(&mut self) -> f64 {
        match self.byte() {
            s @ 0..=15 => SPECIAL[s as usize],
            s @ 16..=239 => (s as f64 - 128.0) / 32.0,
            s => {
                let mut bits = [0u8; 8];
                bits.iter_mut().for_each(|b| *b = self.byte());
                let x = f64::from_le_bytes(bits);
                // s = 0xF0..=0xFF: keep the sign bit, or force it (a log gate's sign).
                if s & 1 == 1 {
                    -x.abs()
                } else {
                    x
                }
            }
        }
    }

    /// A shape: usually `base`, sometimes with one dimension changed.
    fn shape<const N: usize>(&mut self, base: [usize; N]) -> [usize; N] {
        let mut s = base;
        let p = self.byte();
        if p >= 224 {
            s[p as usize % N] = self.byte() as usize % 6;
        }
        s
    }

    fn array4(&mut self, base: [usize; 4]) -> Array4<f64> {
        let s = self.shape(base);
        Array4::from_shape_fn((s[0], s[1], s[2], s[3]), |_| self.value())
    }

    fn array3(&mut self, base: [usize; 3]) -> Array3<f64> {
        let s = self.shape(base);
        Array3::from_shape_fn((s[0], s[1], s[2]), |_| self.value())
    }

    fn cu_seqlens(&mut self, t: usize, well_formed: bool) -> Vec<i64> {
        let len = self.byte() as usize % 7;
        let mut cu = Vec::with_capacity(len);
        for i in 0..len {
            let b = self.byte();
            cu.push(if well_formed {
                // Starts at 0, grows by 0..=3, and (mostly) ends at T.
                match i {
                    0 => 0,
                    _ if i == len - 1 && b < 192 => t as i64,
                    _ => cu[i - 1] + (b % 4) as i64,
                }
            } else {
                match b {
                    0x7F => i64::MAX,
                    0x80 => i64::MIN,
                    _ => b as i8 as i64,
                }
            });
        }
        cu
    }
}

/// The inputs of one `Problem::builder` call.
#[derive(Debug)]
pub struct Inputs {
    /// Queries.
    pub q: Array4<f64>,
    /// Keys.
    pub k: Array4<f64>,
    /// Values.
    pub v: Array4<f64>,
    /// Gates.
    pub g: Gates,
    /// Initial state.
    pub h0: Option<Array4<f64>>,
    /// Output gradient.
    pub do_: Option<Array4<f64>>,
    /// Final-state gradient.
    pub dht: Option<Array4<f64>>,
    /// Scale.
    pub scale: Option<f64>,
    /// Packed varlen boundaries.
    pub cu: Option<Vec<i64>>,
}

/// Decode a recipe (see the module documentation).
pub fn inputs(data: &[u8]) -> Inputs {
    let mut r = Recipe { data, pos: 0 };
    let flags = r.byte();
    let (b, t, h) = (
        r.byte() as usize % 4,
        r.byte() as usize % 10,
        r.byte() as usize % 4,
    );
    let (k, v) = (r.byte() as usize % 5, r.byte() as usize % 5);
    let q = r.array4([b, t, h, k]);
    let kk = r.array4([b, t, h, k]);
    let vv = r.array4([b, t, h, v]);
    let g = if flags & 1 == 1 {
        Gates::Scalar(r.array3([b, t, h]))
    } else {
        Gates::PerChannel(r.array4([b, t, h, k]))
    };
    let cu = (flags & 32 != 0).then(|| r.cu_seqlens(t, flags & 64 != 0));
    let n = match &cu {
        Some(cu) if flags & 64 != 0 => cu.len().saturating_sub(1),
        _ => b,
    };
    let h0 = (flags & 2 != 0).then(|| r.array4([n, h, k, v]));
    let do_ = (flags & 4 != 0).then(|| r.array4([b, t, h, v]));
    let dht = (flags & 8 != 0).then(|| r.array4([n, h, k, v]));
    let scale = (flags & 16 != 0).then(|| r.value());
    Inputs {
        q,
        k: kk,
        v: vv,
        g,
        h0,
        do_,
        dht,
        scale,
        cu,
    }
}

/// The validation rules of `Problem::builder`, stated independently: H, K, V >= 1; k, v, g, do,
/// h0, dht shaped after q (and N); q, k, v, h0, do, dht finite; gates not NaN and <= 0 (-inf
/// allowed); `cu_seqlens` only with B = 1, at least 2 entries, starting at 0, non-decreasing,
/// ending at T; a finite scale.
pub fn valid(i: &Inputs) -> bool {
    let [b, t, h, k] = <[usize; 4]>::try_from(i.q.shape()).expect("rank 4");
    let v = i.v.shape()[3];
    let finite = |a: &Array4<f64>| a.iter().all(|x| x.is_finite());
    let gates_ok = match &i.g {
        Gates::PerChannel(g) => g.shape() == [b, t, h, k] && g.iter().all(|&x| x <= 0.0),
        Gates::Scalar(g) => g.shape() == [b, t, h] && g.iter().all(|&x| x <= 0.0),
    };
    let n = match &i.cu {
        None => Some(b),
        Some(cu) => {
            let ok = b == 1
                && cu.len() >= 2
                && cu[0] == 0
                && cu.windows(2).all(|w| w[0] <= w[1])
                && cu.last() == Some(&(t as i64));
            ok.then(|| cu.len() - 1)
        }
    };
    let Some(n) = n else { return false };
    let state_ok = |a: &Option<Array4<f64>>| {
        a.as_ref()
            .is_none_or(|a| a.shape() == [n, h, k, v] && finite(a))
    };
    h >= 1
        && k >= 1
        && v >= 1
        && i.k.shape() == [b, t, h, k]
        && i.v.shape()[..3] == [b, t, h]
        && gates_ok
        && finite(&i.q)
        && finite(&i.k)
        && finite(&i.v)
        && state_ok(&i.h0)
        && state_ok(&i.dht)
        && i.do_
            .as_ref()
            .is_none_or(|a| a.shape() == [b, t, h, v] && finite(a))
        && i.scale.is_none_or(f64::is_finite)
}

/// Run the target on one input.
pub fn run(data: &[u8]) {
    check::within_budget(data.len(), || {
        let i = inputs(data);
        let expected = valid(&i);
        let built = Problem::builder(i.q.clone(), i.k.clone(), i.v.clone(), i.g.clone())
            .h0_opt(i.h0.clone())
            .do_opt(i.do_.clone())
            .dht_opt(i.dht.clone())
            .scale_opt(i.scale)
            .cu_seqlens_opt(i.cu.clone())
            .build();
        match built {
            Ok(p) => {
                assert!(expected, "accepted invalid inputs {i:?}");
                problem_file::accepted(&p);
            }
            Err(e) => {
                assert!(!expected, "refused valid inputs ({e}): {i:?}");
                check::one_line(&e);
            }
        }
    });
}
