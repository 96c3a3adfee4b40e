//! Target `candidate`: the candidate reader of `glacheck verify`
//! (`gla_judge::verify::read_candidate`), the first code an outside kernel's outputs meet.
//!
//! The input is a whole file. When it holds a valid problem (q, k, v, g, ...), the candidate is
//! judged against that problem, so a golden fixture (inputs and the oracle's results in one
//! file) reads as a candidate that matches its own problem; otherwise against a fixed problem
//! with gradients (the catalog case `mild`), so that the engine's mutations of any output
//! tensor meet the shape checks.
//!
//! Checks: a refused file gives a one-line error; an accepted candidate holds only output names,
//! each once, in the order of `OUTPUT_NAMES`, with the shape the problem implies (scalar-gate dg
//! widened to `[B, T, H, 1]`), values copied bit for bit from the file, and gradients only for a
//! problem with `do`.

use crate::check;
use gla_fixtures::io::parse_tensors;
use gla_judge::verify::{read_candidate, Labels};
use gla_reference::{Problem, OUTPUT_NAMES};
use std::path::Path;
use std::sync::OnceLock;

/// The fixed problem of inputs that hold none.
fn fallback() -> &'static Problem {
    static P: OnceLock<Problem> = OnceLock::new();
    P.get_or_init(|| {
        gla_fixtures::catalog::case("mild")
            .and_then(|c| c.problem())
            .expect("the catalog case `mild` is a valid problem")
    })
}

/// Run the target on one input.
pub fn run(data: &[u8]) {
    check::within_budget(data.len(), || {
        let file = match parse_tensors(data, Path::new(check::INPUT)) {
            Ok(f) => f,
            Err(e) => return check::one_line(&e),
        };
        let own = file.problem().ok();
        let p = own.as_ref().unwrap_or_else(|| fallback());
        let c = match read_candidate(&file, p, &Labels::default()) {
            Ok(c) => c,
            Err(e) => return check::one_line(&e),
        };
        let names: Vec<&str> = c.tensors.iter().map(|t| t.0).collect();
        let order: Vec<&str> = OUTPUT_NAMES
            .iter()
            .copied()
            .filter(|n| names.contains(n))
            .collect();
        assert_eq!(names, order, "candidate tensors out of order or repeated");
        assert!(
            !names.is_empty(),
            "a candidate without outputs was accepted"
        );
        let d = p.dims();
        for (name, x, _) in &c.tensors {
            let want: [usize; 4] = match *name {
                "o" | "dv" => [d.b, d.t, d.h, d.v],
                "ht" | "dh0" => [d.n, d.h, d.k, d.v],
                "dg" if x.shape()[3] == 1 && p.gate_kind() == gla_reference::GateKind::Scalar => {
                    [d.b, d.t, d.h, 1]
                }
                _ => [d.b, d.t, d.h, d.k],
            };
            assert_eq!(x.shape(), want, "`{name}` accepted with a wrong shape");
            let stored = file.float(name).expect("an accepted tensor is readable");
            for (a, b) in x.iter().zip(stored.values.iter()) {
                assert!(check::same_value(*a, *b), "`{name}` changed on reading");
            }
            if matches!(*name, "dq" | "dk" | "dv" | "dg" | "dh0") {
                assert!(
                    p.has_backward(),
                    "gradients accepted for a problem without `do`"
                );
            }
        }
    });
}
