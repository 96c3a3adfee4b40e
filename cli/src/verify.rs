//! `glacheck verify`: judge a candidate's outputs against the exact truth (`gla_judge::verify`).

use crate::common::{choice, out, read_file, read_problem, Status};
use crate::eval::DG_NAMES;
use anyhow::Result;
use clap::Args;
use gla_judge::baseline::DeclaredPlan;
use gla_judge::verify::{take_candidate, verify_owned, Empirical, Labels, VerifyOptions};
use gla_judge::{Truth, TruthMode};
use gla_reference::bounds::DgForm;
use gla_reference::Dtype;
use std::path::PathBuf;

/// `--precision` names.
pub const PRECISION_NAMES: &[&str] = &["f64", "f32", "tf32", "tf32-rz", "bf16", "f16"];

/// `--baseline` names.
pub const BASELINE_NAMES: &[&str] = &["enforce", "advisory"];

/// `--plan` names.
pub const PLAN_NAMES: &[&str] = &["fla", "tensor-core"];

/// Arguments of `glacheck verify`.
#[derive(Debug, Args)]
#[command(after_help = "\
INPUT holds the inputs exactly as the kernel consumed them (after any cast): q, k, v, g, optional h0, \
do, dht, cu_seqlens, metadata `scale`. If INPUT is a golden fixture (it also holds the oracle's o, ht \
[dq, dk, dv, dg, dh0] and the magnitudes m_*), those are used; otherwise the MPFR oracle runs on INPUT.
CANDIDATE holds any of o, ht, dq, dk, dv, dg, dh0 (fla layout, any float dtype); every tensor present \
is judged.
Error model (docs/math.md §8.1): |x - x*| <= (sum u_s + c u_acc (n_acc + lambda)) M_x + eta, with the \
chunked algorithm of chunk C (n_acc = K + V + C + ceil(T_seq/C), lambda = largest chunk-local sum of \
|g|) and its calibrated constants c, accumulation in f32 (f64 for --precision f64). For tf32, bf16 and \
f16 the rounding stages are those of the declared plan (--plan): fla's kernel plan \
(RoundingPlan::kernel_default): q*exp(Gl), k*exp(Gl_last-Gl), the chunk states, A before A@V and o \
(5 stages for o, ht), plus the final gradients (6 stages for dq, dk, dv, dg, dh0); --plan tensor-core \
adds the factors of A's off-diagonal sub-blocks (7 stages for o, ht) and dA (9 for the gradients), \
what a kernel rounds that runs those products on tensor cores (glacheck's GPU kernels). tf32 (operands \
rounded to nearest) and tf32-rz (truncated, u = 2^-10: Triton's tl.dot on fp32, e.g. fla in fp32) \
round every product operand (q and k factors, v, the states, A, A's off-diagonal factors, do, the \
backward states and state gradients, dA: 7 stages for o, ht, 11 for the gradients), whichever plan; \
f32 and f64 have none. A candidate stored in a dtype \
coarser than --precision gets one more stage. The ratio printed is max |x - x*| / ((sum u_s + u_acc) \
M_x + eta) and passes when <= bound = (sum u_s + c u_acc (n_acc + lambda)) / (sum u_s + u_acc). A \
non-finite value where the oracle is finite fails whatever the ratio.
Truth (--truth): the MPFR oracle for small problems; for training shapes the certified f64 truth (the f64 recurrence with its own bound 3 u_f64 (n_acc + lambda) M charged to every element, so a pass is a pass against the oracle; docs/math.md §8.4). The report names the truth it used.
Empirical verdicts (docs/math.md §8.2, \"Verifier power\"): the baseline rule (max and RMS error at most \
2x those of glacheck's honest implementations of the declared arithmetic on the same inputs, plus a \
floor of one accumulation rounding at the magnitude scale; honest = the chunked form with the declared \
plan and chunk, and for f32/f64 also the recurrence) and the bias test (the error's projection on the \
exact result: fails when both its t statistic and its relative bias are large). A tensor fails on the \
bound, the baseline rule or the bias test; --baseline advisory turns the last two into warnings.
Exit status: 0 every tensor passes, 1 a tensor fails, 2 bad input or usage.")]
pub struct VerifyArgs {
    /// The inputs the kernel consumed (or a golden fixture).
    pub input: PathBuf,
    /// The kernel's outputs.
    pub candidate: PathBuf,
    /// The arithmetic the candidate claims (sets u).
    #[arg(long, value_parser = choice::<Dtype>(PRECISION_NAMES), default_value = "f32")]
    pub precision: Dtype,
    /// The chunk length C the candidate's algorithm uses (sets n_acc and lambda).
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    /// Which dg algorithm the candidate runs (selects the judged dg magnitude; both ratios print).
    #[arg(long, value_parser = choice::<DgForm>(DG_NAMES), default_value = "reverse-cumsum")]
    pub dg: DgForm,
    /// Whether the empirical verdicts (honest baseline rule and bias test) fail a tensor
    /// (enforce) or only warn (advisory).
    #[arg(long, value_parser = choice::<Empirical>(BASELINE_NAMES), default_value = "enforce")]
    pub baseline: Empirical,
    /// Which intermediates a tf32 / bf16 / f16 candidate rounds: fla's kernel plan (`fla`), or
    /// also the tensor-core operands A's off-diagonal factors and dA (`tensor-core`). Sets the
    /// bound's stages and the honest baseline's plan.
    #[arg(long, value_parser = choice::<DeclaredPlan>(PLAN_NAMES), default_value = "fla")]
    pub plan: DeclaredPlan,
    /// The truth: `auto` (the one stored in INPUT if it is a golden fixture; else the MPFR oracle
    /// up to 2^24 state updates B*T*H*K*V, the certified f64 truth above), `oracle`, `f64` (the
    /// f64 recurrence, each element charged its own derived bound: sound, seconds at training
    /// shapes), `stored` (INPUT's, an error if it holds none), or a golden FILE whose stored truth
    /// answers INPUT's inputs.
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|oracle|f64|stored|FILE"
    )]
    pub truth: String,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Run `glacheck verify`.
pub fn run(a: VerifyArgs) -> Result<Status> {
    if a.chunk == 0 {
        anyhow::bail!("--chunk must be at least 1");
    }
    let (p, input_file) = read_problem(&a.input)?;
    let mut cand_file = read_file(&a.candidate)?;
    let labels = Labels {
        input: a.input.display().to_string(),
        candidate: a.candidate.display().to_string(),
    };
    let cand = take_candidate(&mut cand_file, &p, &labels)?;
    drop(cand_file); // training shapes: the file's copies are gigabytes
    let backward = cand.has_gradients();
    let label = a.input.display().to_string();
    let truth = match TruthMode::parse(&a.truth) {
        Some(mode) => {
            let stored = input_file.contains("o");
            if !a.json && (!stored || !matches!(mode, TruthMode::Auto | TruthMode::Stored)) {
                eprintln!(
                    "glacheck verify: computing the truth ({}) on INPUT ...",
                    a.truth
                );
            }
            Truth::choose(mode, &input_file, &p, backward, &label)?
        }
        None => {
            let f = read_file(std::path::Path::new(&a.truth))?;
            Truth::stored_for(&f, &p, backward, &a.truth)?
        }
    };
    drop(input_file);
    let opts = VerifyOptions {
        precision: a.precision,
        chunk: a.chunk,
        dg: a.dg,
        empirical: a.baseline,
        plan: a.plan,
    };
    let report = verify_owned(&p, cand, truth, &opts, labels)?;
    if a.json {
        crate::outln!("{}", serde_json::to_string_pretty(&report.to_json())?);
    } else {
        out(&report.render());
    }
    Ok(if report.pass() {
        Status::Ok
    } else {
        Status::Fail
    })
}
