//! Invariants the targets assert: memory within budget, one-line error messages, and what a
//! file or problem that was *accepted* guarantees to every consumer.

use gla_fixtures::io::{encode_tensors, parse_tensors, OutTensor, TensorFile};
use gla_reference::{GateKind, Problem};
use ndarray::ArrayD;
use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;

/// Name given to the fuzz input in error messages.
pub const INPUT: &str = "fuzz-input";

/// Bytes a target may hold at once beyond the input: 64 bytes per input byte (a bf16 value
/// decodes to an 8-byte f64, and the targets keep a few copies) plus 32 MiB.
pub fn budget(input_len: usize) -> usize {
    input_len.saturating_mul(64).saturating_add(32 << 20)
}

/// Run a target's body and panic if it held more than [`budget`] bytes at once.
pub fn within_budget(input_len: usize, body: impl FnOnce()) {
    let ((), peak) = crate::alloc::measure(body);
    assert!(
        peak <= budget(input_len),
        "an input of {input_len} bytes made the target hold {peak} bytes at once (budget {})",
        budget(input_len)
    );
}

/// An error message is one non-empty line (the readers promise it; the CLI prints it as is).
pub fn one_line(e: &dyn Display) {
    let s = e.to_string();
    assert!(!s.trim().is_empty(), "empty error message");
    assert!(!s.contains('\n'), "error message spans lines: {s:?}");
}

/// Bitwise equality of values, any NaN equal to any NaN.
pub fn same_value(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Two arrays of the same shape holding the same values (see [`same_value`]).
pub fn same_array(a: &ArrayD<f64>, b: &ArrayD<f64>) -> bool {
    a.shape() == b.shape() && a.iter().zip(b.iter()).all(|(&x, &y)| same_value(x, y))
}

/// What an accepted file guarantees: every decoded tensor holds as many values as its shape
/// says, and the decoded bytes fit in the file.
pub fn tensor_file(f: &TensorFile, file_len: usize) {
    let mut bytes = 0usize;
    for (name, t) in &f.tensors {
        let n: usize = t.shape().iter().product();
        assert_eq!(t.values.len(), n, "tensor `{name}`: values vs shape");
        bytes += n * t.dtype.size();
    }
    assert!(
        bytes <= file_len,
        "decoded {bytes} bytes of tensors from a file of {file_len} bytes"
    );
}

/// The tensors and metadata of `f` that the writer can write (tensors of readable dtypes with a
/// non-empty name).
pub fn writable(f: &TensorFile) -> Vec<OutTensor> {
    f.tensors
        .iter()
        .filter(|(name, _)| !name.is_empty())
        .map(|(name, t)| OutTensor::new(name.clone(), t.dtype, t.values.clone()))
        .collect()
}

/// Write `tensors` and `metadata`, read the bytes back, and check that the same tensors and
/// metadata come back; then that writing what was read gives the same bytes again.
pub fn write_read_round_trip(tensors: &[OutTensor], metadata: &BTreeMap<String, String>) {
    let bytes = encode_tensors(tensors, metadata)
        .unwrap_or_else(|e| panic!("the writer refused tensors the reader produced: {e}"));
    let back = parse_tensors(&bytes, Path::new(INPUT))
        .unwrap_or_else(|e| panic!("the reader refused what the writer wrote: {e}"));
    assert_eq!(&back.metadata, metadata, "metadata changed in a round trip");
    assert!(back.other.is_empty());
    assert_eq!(back.tensors.len(), tensors.len(), "tensor count changed");
    for t in tensors {
        let b = &back.tensors[&t.name];
        assert_eq!(b.dtype, t.dtype, "tensor `{}`: dtype changed", t.name);
        assert!(
            same_array(&b.values, &t.values),
            "tensor `{}`: values changed in a round trip",
            t.name
        );
    }
    let again = encode_tensors(&writable(&back), &back.metadata).expect("written once already");
    assert!(again == bytes, "writing what was read gave other bytes");
}

/// Whether an f64 array of this shape can be created (ndarray requires the product of the
/// nonzero lengths, the allocator the bytes, to be at most `isize::MAX`).
pub fn allocatable(shape: &[usize]) -> bool {
    shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(8usize, |a, &d| a.checked_mul(d))
        .is_some_and(|bytes| bytes <= isize::MAX as usize)
}

/// What a validated [`Problem`] guarantees to every solver and reader of its fields
/// (the checks `build()` documents).
pub fn problem(p: &Problem) {
    let d = p.dims();
    assert!(
        d.h >= 1 && d.k >= 1 && d.v >= 1,
        "zero H, K or V accepted: {d:?}"
    );
    assert_eq!(p.q().shape(), [d.b, d.t, d.h, d.k]);
    assert_eq!(p.k().shape(), [d.b, d.t, d.h, d.k]);
    assert_eq!(p.v().shape(), [d.b, d.t, d.h, d.v]);
    let kg = match p.gate_kind() {
        GateKind::PerChannel => d.k,
        GateKind::Scalar => 1,
    };
    assert_eq!(p.g().shape(), [d.b, d.t, d.h, kg]);
    for (name, a) in [("q", p.q()), ("k", p.k()), ("v", p.v())] {
        assert!(
            a.iter().all(|x| x.is_finite()),
            "non-finite `{name}` accepted"
        );
    }
    assert!(
        p.g().iter().all(|&x| x <= 0.0),
        "a NaN or positive gate accepted"
    );
    assert!(p.scale().is_finite(), "non-finite scale accepted");
    let state = [d.n, d.h, d.k, d.v];
    if let Some(h0) = p.h0() {
        assert_eq!(h0.shape(), state);
        assert!(h0.iter().all(|x| x.is_finite()), "non-finite `h0` accepted");
    }
    if let Some(x) = p.dht() {
        assert_eq!(x.shape(), state);
        assert!(x.iter().all(|x| x.is_finite()), "non-finite `dht` accepted");
    }
    if let Some(x) = p.do_() {
        assert_eq!(x.shape(), [d.b, d.t, d.h, d.v]);
        assert!(x.iter().all(|x| x.is_finite()), "non-finite `do` accepted");
    }
    match p.cu_seqlens() {
        None => assert_eq!(d.n, d.b),
        Some(cu) => {
            assert_eq!(d.b, 1, "cu_seqlens with B != 1 accepted");
            assert_eq!(cu.len(), d.n + 1);
            assert_eq!(cu[0], 0);
            assert_eq!(*cu.last().expect("N + 1 >= 2 entries"), d.t);
            assert!(cu.windows(2).all(|w| w[0] <= w[1]), "decreasing cu_seqlens");
        }
    }
    // Every tensor a solver allocates for this problem (o, dq, dk, dg like the inputs; ht, dh0
    // and the running state [N, H, K, V]) must be allocatable.
    for shape in [[d.b, d.t, d.h, d.k], [d.b, d.t, d.h, d.v], state] {
        assert!(
            allocatable(&shape),
            "accepted a problem whose tensors of shape {shape:?} cannot be allocated"
        );
    }
    // One span per sequence. N is bounded by the input (B <= the elements of q when T >= 1, N + 1
    // entries of cu_seqlens), except without time steps, where any B is valid: there only
    // moderate N are expanded.
    if d.t == 0 && p.cu_seqlens().is_none() && d.n > 1 << 16 {
        return;
    }
    let spans = p.sequences();
    assert_eq!(spans.len(), d.n);
    for (i, s) in spans.iter().enumerate() {
        assert_eq!(s.state, i);
        assert!(
            s.batch < d.b.max(1) && s.start + s.len <= d.t,
            "{s:?} outside {d:?}"
        );
    }
    if p.cu_seqlens().is_some() {
        assert_eq!(spans.iter().map(|s| s.len).sum::<usize>(), d.t);
    }
    assert!(p.max_seq_len() <= d.t);
}
