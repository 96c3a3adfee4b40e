//! `glacheck verify`: judge a candidate's outputs against the oracle.

use crate::backend::{self, TensorFile, TensorReport};
use crate::common::{fmt_ratio, json_f64, print_table, Status};
use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use gla_reference::bounds::{DgForm, Magnitudes};
use gla_reference::{Dtype, GateKind, Problem, Solution, OUTPUT_NAMES};
use ndarray::{Array4, ArrayD, Axis};
use std::path::PathBuf;

/// Arithmetic the candidate claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Precision {
    /// f64 everywhere.
    F64,
    /// f32 everywhere.
    F32,
    /// TF32 matrix-product operands, f32 accumulation.
    Tf32,
    /// bf16 operands, f32 accumulation.
    Bf16,
    /// fp16 operands, f32 accumulation.
    F16,
}

impl Precision {
    fn dtype(self) -> Dtype {
        match self {
            Precision::F64 => Dtype::F64,
            Precision::F32 => Dtype::F32,
            Precision::Tf32 => Dtype::Tf32,
            Precision::Bf16 => Dtype::Bf16,
            Precision::F16 => Dtype::F16,
        }
    }
}

/// Which dg algorithm the candidate runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DgArg {
    /// dg_t = sum_{s>=t} (q_s dq_s - k_s dk_s) + rowsum(hT*dhT) (fla's kernels).
    ReverseCumsum,
    /// dg_t = alpha_t rowsum(S_{t-1} dS_t).
    Local,
}

impl DgArg {
    /// The bounds crate's enum.
    pub fn form(self) -> DgForm {
        match self {
            DgArg::ReverseCumsum => DgForm::ReverseCumsum,
            DgArg::Local => DgForm::Local,
        }
    }
}

/// Arguments of `glacheck verify`.
#[derive(Debug, Args)]
#[command(after_help = "\
INPUT holds the inputs exactly as the kernel consumed them (after any cast): q, k, v, g, optional h0, \
do, dht, cu_seqlens, metadata `scale`. If INPUT is a golden fixture (it also holds the oracle's o, ht \
[dq, dk, dv, dg, dh0] and the magnitudes m_*), those are used; otherwise the MPFR oracle runs on INPUT.
CANDIDATE holds any of o, ht, dq, dk, dv, dg, dh0 (fla layout, any float dtype); every tensor present \
is judged.
Error model (spec 8.1): |x - x*| <= (sum u_s + c u_acc (n_acc + lambda)) M_x + eta, with the chunked \
algorithm of chunk C (n_acc = K + V + C + ceil(T_seq/C), lambda = largest chunk-local sum of |g|) and \
its calibrated constants c, accumulation in f32 (f64 for --precision f64). For tf32, bf16 and f16 the \
rounding stages are those of fla's kernel plan (RoundingPlan::kernel_default): q*exp(Gl), \
k*exp(Gl_last-Gl), the chunk states, A before A@V and o (5 stages for o, ht), plus the final \
gradients (6 stages for dq, dk, dv, dg, dh0); f32 and f64 have none. A candidate stored in a dtype \
coarser than --precision gets one more stage. The ratio printed is max |x - x*| / ((sum u_s + u_acc) \
M_x + eta) and passes when <= bound = (sum u_s + c u_acc (n_acc + lambda)) / (sum u_s + u_acc). A \
non-finite value where the oracle is finite fails whatever the ratio.
Exit status: 0 every tensor passes, 1 a tensor fails, 2 bad input or usage.")]
pub struct VerifyArgs {
    /// The inputs the kernel consumed (or a golden fixture).
    pub input: PathBuf,
    /// The kernel's outputs.
    pub candidate: PathBuf,
    /// The arithmetic the candidate claims (sets u).
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: Precision,
    /// The chunk length C the candidate's algorithm uses (sets n_acc and lambda).
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    /// Which dg algorithm the candidate runs (selects the judged dg magnitude; both ratios print).
    #[arg(long, value_enum, default_value = "reverse-cumsum")]
    pub dg: DgArg,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Expected shape of an output, and its shape description.
fn expected_shape(p: &Problem, name: &str) -> (Vec<usize>, String) {
    let d = p.dims();
    match name {
        "o" | "dv" => (
            vec![d.b, d.t, d.h, d.v],
            format!("[B, T, H, V] = {:?}", [d.b, d.t, d.h, d.v]),
        ),
        "ht" | "dh0" => (
            vec![d.n, d.h, d.k, d.v],
            format!("[N, H, K, V] = {:?}", [d.n, d.h, d.k, d.v]),
        ),
        "dg" if p.gate_kind() == GateKind::Scalar => (
            vec![d.b, d.t, d.h],
            format!("[B, T, H] = {:?} (scalar gates)", [d.b, d.t, d.h]),
        ),
        _ => (
            vec![d.b, d.t, d.h, d.k],
            format!("[B, T, H, K] = {:?}", [d.b, d.t, d.h, d.k]),
        ),
    }
}

/// Take output `name` from a file as `[.., .., .., ..]`, checking dtype and shape.
fn take(
    f: &TensorFile,
    which: &str,
    p: &Problem,
    name: &str,
) -> Result<Option<(Array4<f64>, Dtype)>> {
    if !f.contains(name) {
        return Ok(None);
    }
    let t = f.float(name).map_err(|e| anyhow!("{which}: {e}"))?;
    let (want, desc) = expected_shape(p, name);
    let got = t.shape().to_vec();
    let ok =
        got == want || (name == "dg" && want.len() == 3 && got == [want[0], want[1], want[2], 1]);
    if !ok {
        bail!("{which}: tensor `{name}` has shape {got:?}, expected {desc}");
    }
    let a: ArrayD<f64> = t.values.clone();
    let a4: Array4<f64> = if a.ndim() == 3 {
        a.insert_axis(Axis(3))
            .into_dimensionality()
            .expect("rank 4")
    } else {
        a.into_dimensionality().expect("rank 4")
    };
    Ok(Some((a4, t.dtype.dtype().unwrap_or(Dtype::F64))))
}

/// The oracle's solution and magnitudes loaded from a golden fixture, if INPUT is one.
fn from_golden(
    f: &TensorFile,
    p: &Problem,
    backward: bool,
) -> Result<Option<(Solution, Magnitudes)>> {
    let t = gla_fixtures::golden::stored_truth(f, p, backward)
        .map_err(|e| anyhow!("INPUT (golden): {e}"))?;
    // a forward-only golden cannot judge gradients: fall back to the oracle
    Ok(t.filter(|(s, _)| !backward || s.grads.is_some()))
}

/// Where an element sits, in words.
fn locate(p: &Problem, name: &str, i: [usize; 4]) -> String {
    match name {
        "ht" | "dh0" => format!("(sequence {}, head {}, k {}, v {})", i[0], i[1], i[2], i[3]),
        _ => {
            let ch = match name {
                "o" | "dv" => "v channel",
                "dg" if p.gate_kind() == GateKind::Scalar => "scalar gate",
                _ => "k channel",
            };
            let seq = match p.cu_seqlens() {
                Some(cu) => {
                    let n = cu
                        .windows(2)
                        .position(|w| i[1] >= w[0] && i[1] < w[1])
                        .unwrap_or(0);
                    format!(" = sequence {n} step {}", i[1] - cu[n])
                }
                None => String::new(),
            };
            if ch == "scalar gate" {
                format!("(batch {}, time {}{seq}, head {})", i[0], i[1], i[2])
            } else {
                format!(
                    "(batch {}, time {}{seq}, head {}, {ch} {})",
                    i[0], i[1], i[2], i[3]
                )
            }
        }
    }
}

fn index_json(name: &str, p: &Problem, i: [usize; 4]) -> serde_json::Value {
    match name {
        "ht" | "dh0" => serde_json::json!({"sequence": i[0], "head": i[1], "k": i[2], "v": i[3]}),
        "dg" if p.gate_kind() == GateKind::Scalar => {
            serde_json::json!({"batch": i[0], "time": i[1], "head": i[2]})
        }
        _ => serde_json::json!({"batch": i[0], "time": i[1], "head": i[2], "channel": i[3]}),
    }
}

/// Run `glacheck verify`.
pub fn run(a: VerifyArgs) -> Result<Status> {
    if a.chunk == 0 {
        bail!("--chunk must be at least 1");
    }
    let (p, input_file) = backend::read_problem(&a.input)?;
    let cand_file = backend::read_file(&a.candidate)?;
    let which = format!("CANDIDATE {}", a.candidate.display());

    // The candidate's tensors.
    let mut present: Vec<(&str, Array4<f64>, Dtype)> = Vec::new();
    for name in OUTPUT_NAMES {
        if let Some((arr, dt)) = take(&cand_file, &which, &p, name)? {
            present.push((name, arr, dt));
        }
    }
    if present.is_empty() {
        let found: Vec<&String> = cand_file
            .tensors
            .keys()
            .chain(cand_file.other.keys())
            .collect();
        bail!("{which}: holds none of o, ht, dq, dk, dv, dg, dh0 (found: {found:?})");
    }
    let backward = present.iter().any(|(n, _, _)| !matches!(*n, "o" | "ht"));
    if backward && !p.has_backward() {
        let g: Vec<&str> = present
            .iter()
            .map(|x| x.0)
            .filter(|n| !matches!(*n, "o" | "ht"))
            .collect();
        bail!(
            "{which}: holds gradients {g:?} but INPUT {} has no `do`: save the output gradient (and dht, \
             if used) the kernel's backward consumed",
            a.input.display()
        );
    }

    // The truth.
    let (exact, mags, source) = match from_golden(&input_file, &p, backward)? {
        Some((s, m)) => {
            let bits = input_file
                .metadata
                .iter()
                .filter(|(k, _)| k.contains("oracle") || k.contains("bits"))
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            (s, m, format!("golden fixture ({bits})"))
        }
        None => {
            if !a.json {
                eprintln!("glacheck verify: running the MPFR oracle on INPUT ...");
            }
            let r = backend::oracle(&p, backward)?;
            let m = backend::mags(&p);
            let src = format!(
                "MPFR oracle ({} bits, {} agreed)",
                r.precision, r.bits_agreed
            );
            (r.solution, m, src)
        }
    };

    // The candidate as a solution; outputs it lacks are taken from the truth and not reported.
    let mut cand = exact.clone();
    if backward && cand.grads.is_none() {
        bail!("internal: the oracle returned no gradients");
    }
    for (name, arr, _) in &present {
        match *name {
            "o" => cand.o = arr.clone(),
            "ht" => cand.ht = arr.clone(),
            n => {
                let g = cand.grads.as_mut().expect("checked above");
                match n {
                    "dq" => g.dq = arr.clone(),
                    "dk" => g.dk = arr.clone(),
                    "dv" => g.dv = arr.clone(),
                    "dg" => g.dg = arr.clone(),
                    _ => g.dh0 = arr.clone(),
                }
            }
        }
    }
    if !backward {
        cand.grads = None;
    }

    // The model.
    let precision = a.precision.dtype();
    let dg_form = match a.dg {
        DgArg::ReverseCumsum => DgForm::ReverseCumsum,
        DgArg::Local => DgForm::Local,
    };
    let coarsest = present
        .iter()
        .map(|x| x.2)
        .max_by(|x, y| x.unit_roundoff().total_cmp(&y.unit_roundoff()));
    let mut notes = Vec::new();
    let mut extra = Vec::new();
    if let Some(st) = coarsest {
        if st.unit_roundoff() > precision.unit_roundoff() {
            extra.push(st);
            notes.push(format!(
                "the candidate stores results as {st}, coarser than --precision {precision}: one {st} rounding stage added"
            ));
        }
    }
    let (spec_fwd, spec_bwd) = backend::verify_specs(precision, a.chunk, dg_form, &extra);
    let fwd_only = Solution {
        o: cand.o.clone(),
        ht: cand.ht.clone(),
        grads: None,
    };
    let mut reports = backend::judge(&p, &exact, &mags, &fwd_only, &spec_fwd)?;
    if backward {
        reports.extend(
            backend::judge(&p, &exact, &mags, &cand, &spec_bwd)?
                .into_iter()
                .filter(|t| !matches!(t.name.as_str(), "o" | "ht")),
        );
    }
    let reports: Vec<TensorReport> = reports
        .into_iter()
        .filter(|t| present.iter().any(|x| x.0 == t.name))
        .collect();
    let pass = reports.iter().all(|t| t.pass);
    let stored = |n: &str| {
        present
            .iter()
            .find(|x| x.0 == n)
            .map(|x| x.2.to_string())
            .unwrap_or_default()
    };

    if a.json {
        let tensors: Vec<serde_json::Value> = reports
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "stored_dtype": stored(&t.name),
                    "ratio": json_f64(t.ratio),
                    "bound": json_f64(t.bound),
                    "pass": t.pass,
                    "worst": t.worst_index.map(|i| serde_json::json!({
                        "index": i,
                        "at": index_json(&t.name, &p, i),
                        "candidate": json_f64(t.worst_candidate),
                        "exact": json_f64(t.worst_exact),
                        "magnitude": json_f64(t.worst_magnitude),
                    })),
                    "max_abs_err": json_f64(t.max_abs_err),
                    "max_abs_exact": json_f64(t.max_abs_exact),
                    "rel_err": json_f64(t.rel_err),
                    "nonfinite_where_oracle_finite": t.candidate_nonfinite,
                    "first_nonfinite": t.first_nonfinite.map(|i| index_json(&t.name, &p, i)),
                    "oracle_nonfinite": t.exact_nonfinite,
                    "dg_ratios": t.dg.map(|d| serde_json::json!({
                        "reverse_cumsum": json_f64(d.reverse_cumsum), "local": json_f64(d.local)})),
                    "model": {"c": t.c, "n_acc": t.n_acc, "lambda": json_f64(t.lambda),
                              "u_stages": t.u_stages + 0.0, "u_acc": t.u_acc, "eta": t.eta},
                })
            })
            .collect();
        let v = serde_json::json!({
            "input": a.input.display().to_string(),
            "candidate": a.candidate.display().to_string(),
            "precision": precision.to_string(),
            "chunk": a.chunk,
            "dg_form": match dg_form { DgForm::Local => "local", _ => "reverse-cumsum" },
            "oracle": source,
            "notes": notes,
            "pass": pass,
            "tensors": tensors,
        });
        crate::outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(if pass { Status::Ok } else { Status::Fail });
    }

    let d = p.dims();
    crate::outln!(
        "glacheck verify {} against {}",
        a.candidate.display(),
        a.input.display()
    );
    crate::outln!(
        "problem: B={} T={} H={} K={} V={} N={}{}{}, scale={}",
        d.b,
        d.t,
        d.h,
        d.k,
        d.v,
        d.n,
        if p.gate_kind() == GateKind::Scalar {
            ", scalar gates"
        } else {
            ""
        },
        if p.cu_seqlens().is_some() {
            ", varlen"
        } else {
            ""
        },
        p.scale()
    );
    crate::outln!("truth: {source}");
    let fwd_t = reports.iter().find(|t| t.name == "o" || t.name == "ht");
    let bwd_t = reports
        .iter()
        .find(|t| !matches!(t.name.as_str(), "o" | "ht"));
    if let Some(t) = fwd_t.or(bwd_t) {
        crate::outln!(
            "model: chunked C={}, precision {precision}: u_acc = {:.3e}, n_acc = {}, lambda = {:.4}, dg judged as {}",
            a.chunk,
            t.u_acc,
            t.n_acc,
            t.lambda,
            match dg_form { DgForm::Local => "local", _ => "reverse-cumsum" }
        );
        let stages = |spec: &gla_reference::bounds::BoundSpec| -> String {
            if spec.stages.is_empty() {
                "none".into()
            } else {
                format!(
                    "{} (sum u_s = {:.3e})",
                    spec.stages
                        .iter()
                        .map(|d| d.to_string())
                        .collect::<Vec<_>>()
                        .join("+"),
                    spec.u_stages()
                )
            }
        };
        crate::outln!(
            "       rounding stages: o, ht: {}; gradients: {}",
            stages(&spec_fwd),
            stages(&spec_bwd)
        );
    }
    for n in &notes {
        crate::outln!("note: {n}");
    }
    crate::outln!();
    let header: Vec<String> = [
        "tensor",
        "stored",
        "ratio",
        "bound",
        "result",
        "worst element",
        "candidate",
        "exact",
        "nonfinite",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                stored(&t.name),
                fmt_ratio(Some(t.ratio)),
                fmt_ratio(Some(t.bound)),
                if t.pass { "PASS".into() } else { "FAIL".into() },
                t.worst_index
                    .map(|i| format!("{i:?}"))
                    .unwrap_or_else(|| "-".into()),
                t.worst_index
                    .map(|_| format!("{:.6e}", t.worst_candidate))
                    .unwrap_or_else(|| "-".into()),
                t.worst_index
                    .map(|_| format!("{:.6e}", t.worst_exact))
                    .unwrap_or_else(|| "-".into()),
                format!("{}", t.candidate_nonfinite),
            ]
        })
        .collect();
    print_table(&header, &rows);
    if let Some(t) = reports.iter().find(|t| t.name == "dg") {
        if let Some(r) = t.dg {
            crate::outln!(
                "dg ratios: reverse-cumsum magnitude {}, local magnitude {} (judged: {})",
                fmt_ratio(Some(r.reverse_cumsum)),
                fmt_ratio(Some(r.local)),
                match dg_form {
                    DgForm::Local => "local",
                    _ => "reverse-cumsum",
                }
            );
        }
    }
    crate::outln!();
    for t in reports.iter().filter(|t| !t.pass) {
        if t.candidate_nonfinite > 0 {
            let i = t.first_nonfinite.unwrap_or_default();
            crate::outln!(
                "FAIL {}: {} non-finite value(s) where the oracle is finite; first at {} {:?}",
                t.name,
                t.candidate_nonfinite,
                locate(&p, &t.name, i),
                i
            );
        }
        if t.ratio > t.bound {
            if let Some(i) = t.worst_index {
                crate::outln!(
                    "FAIL {}: worst element {} {:?}: candidate {:e}, oracle {:e}, |err| {:.3e} = {} x (sum u_s + u_acc) M + eta, bound {}",
                    t.name,
                    locate(&p, &t.name, i),
                    i,
                    t.worst_candidate,
                    t.worst_exact,
                    (t.worst_candidate - t.worst_exact).abs(),
                    fmt_ratio(Some(t.ratio)),
                    fmt_ratio(Some(t.bound))
                );
            }
        }
    }
    let nfail = reports.iter().filter(|t| !t.pass).count();
    if pass {
        crate::outln!(
            "PASS: {} tensor(s) within the {precision} bound",
            reports.len()
        );
    } else {
        crate::outln!("FAIL: {nfail} of {} tensor(s)", reports.len());
    }
    Ok(if pass { Status::Ok } else { Status::Fail })
}
