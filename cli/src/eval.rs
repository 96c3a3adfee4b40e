//! `glacheck eval`: solve one problem from a file and write the results.

use crate::common::{choice, read_problem, write_solution, Status, VERSION};
use anyhow::{bail, Context, Result};
use clap::Args;
use gla_judge::implementation::{Config, Form};
use gla_judge::Compute;
use gla_reference::bounds::DgForm;
use gla_reference::Dtype;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Which solver (`eval --impl`): the oracle or one of the library's forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImplArg {
    /// MPFR recurrence (gla-oracle), converged past f64.
    Oracle,
    /// A float implementation.
    Form(Form),
}

impl ImplArg {
    /// Lower-case name as on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ImplArg::Oracle => "oracle",
            ImplArg::Form(f) => f.name(),
        }
    }
}

impl std::str::FromStr for ImplArg {
    type Err = gla_reference::GlaError;
    fn from_str(s: &str) -> Result<ImplArg, Self::Err> {
        if s == "oracle" {
            Ok(ImplArg::Oracle)
        } else {
            s.parse().map(ImplArg::Form)
        }
    }
}

/// `--impl` names of `eval`.
pub const IMPL_NAMES: &[&str] = &["oracle", "recurrent", "parallel", "chunked", "gpu"];
/// `--compute` names.
pub const COMPUTE_NAMES: &[&str] = &["f32", "f64"];
/// `--round` names.
pub const ROUND_NAMES: &[&str] = &["none", "bf16", "f16"];
/// `--dg-form` names.
pub const DG_NAMES: &[&str] = &["reverse-cumsum", "local"];

/// `--round` as a dtype: `none` or a kernel plan's dtype.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundArg(pub Option<Dtype>);

impl std::str::FromStr for RoundArg {
    type Err = gla_reference::GlaError;
    fn from_str(s: &str) -> Result<RoundArg, Self::Err> {
        if s == "none" {
            Ok(RoundArg(None))
        } else {
            s.parse().map(|d| RoundArg(Some(d)))
        }
    }
}

/// Arguments of `glacheck eval`.
#[derive(Debug, Args)]
#[command(after_help = "\
Input: a safetensors file in fla's layout: q, k, g [B,T,H,K] (scalar gates g [B,T,H]), v [B,T,H,V], \
optional h0 and dht [N,H,K,V], do [B,T,H,V], cu_seqlens int32/int64 [N+1], metadata `scale` (default \
K^-0.5). Any of f16, bf16, f32, f64; values are used exactly as stored.
Output: o, ht and, with --backward, dq, dk, dv, dg, dh0; f64 for the oracle, the compute type \
otherwise; metadata records what produced them. Nothing is written when the input is bad.
Exit status: 0 ok, 2 bad input or usage.")]
pub struct EvalArgs {
    /// Implementation.
    #[arg(long = "impl", value_parser = choice::<ImplArg>(IMPL_NAMES))]
    pub imp: ImplArg,
    /// Compute type of a float implementation (ignored by the oracle).
    #[arg(long, value_parser = choice::<Compute>(COMPUTE_NAMES), default_value = "f32")]
    pub compute: Compute,
    /// Chunked: fla's kernel rounding plan in this dtype (inputs rounded to it first); gpu: the
    /// kernels' input dtype (none = f32 inputs).
    #[arg(long, value_parser = choice::<RoundArg>(ROUND_NAMES), default_value = "none")]
    pub round: RoundArg,
    /// Chunk length C (chunked and gpu only).
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    /// Sub-chunk length c; C must be a multiple of c (chunked and gpu only).
    #[arg(long = "sub-chunk", default_value_t = 16)]
    pub sub_chunk: usize,
    /// Also compute dq, dk, dv, dg, dh0 (the input must hold `do`; `dht` is optional).
    #[arg(long)]
    pub backward: bool,
    /// Gate-gradient algorithm with --backward (recurrent, chunked, gpu): the reverse cumsum
    /// (fla's kernels; judged against M_dg) or the local form alpha_t rowsum(S_{t-1} dS_t)
    /// (accurate relative to M_dg_local, also for tiny alpha).
    #[arg(long = "dg-form", value_parser = choice::<DgForm>(DG_NAMES), default_value = "reverse-cumsum")]
    pub dg_form: DgForm,
    /// Input file.
    pub input: PathBuf,
    /// Output file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Options that the chosen implementation does not use are a usage error, not silently ignored.
pub fn check_options(a: &EvalArgs) -> Result<()> {
    let chunky = matches!(a.imp, ImplArg::Form(Form::Chunked | Form::Gpu));
    if !chunky && a.round.0.is_some() {
        bail!(
            "--round applies to --impl chunked or gpu, not {}",
            a.imp.name()
        );
    }
    if !chunky && (a.chunk != 64 || a.sub_chunk != 16) {
        bail!(
            "--chunk/--sub-chunk apply to --impl chunked or gpu, not {}",
            a.imp.name()
        );
    }
    if chunky {
        if a.chunk == 0 || a.sub_chunk == 0 || a.chunk % a.sub_chunk != 0 {
            bail!(
                "--chunk {} must be a positive multiple of --sub-chunk {}",
                a.chunk,
                a.sub_chunk
            );
        }
        if a.imp == ImplArg::Form(Form::Gpu) && (a.chunk, a.sub_chunk) != (64, 16) {
            bail!("the GPU kernels use --chunk 64 --sub-chunk 16");
        }
        if a.imp == ImplArg::Form(Form::Gpu) && a.compute != Compute::F32 {
            bail!("the GPU kernels compute in f32: use --compute f32 (and --round for bf16/f16 inputs)");
        }
        if a.round.0.is_some() && a.compute != Compute::F32 {
            bail!(
                "--round {} emulates f32-accumulating kernels: use --compute f32",
                a.round.0.map_or("none".into(), |d| d.to_string())
            );
        }
    }
    if a.dg_form == DgForm::Local {
        if !a.backward {
            bail!("--dg-form applies with --backward");
        }
        if matches!(a.imp, ImplArg::Oracle | ImplArg::Form(Form::Parallel)) {
            bail!(
                "--dg-form local applies to --impl recurrent, chunked or gpu, not {}",
                a.imp.name()
            );
        }
    }
    Ok(())
}

/// Run `glacheck eval`.
pub fn run(a: EvalArgs) -> Result<Status> {
    check_options(&a)?;
    let (p, _) = read_problem(&a.input)?;
    if a.backward && !p.has_backward() {
        bail!(
            "`{}`: --backward needs the output gradient `do` [B,T,H,V] in the input file",
            a.input.display()
        );
    }
    let mut meta = BTreeMap::new();
    meta.insert("producer".to_string(), "glacheck eval".to_string());
    meta.insert("glacheck_version".to_string(), VERSION.to_string());
    meta.insert("impl".to_string(), a.imp.name().to_string());
    meta.insert("backward".to_string(), a.backward.to_string());
    meta.insert("scale".to_string(), gla_fixtures::io::format_f64(p.scale()));
    if let Some(name) = a.input.file_name() {
        meta.insert("input".to_string(), name.to_string_lossy().into_owned());
    }
    let (solution, dtype) = match a.imp {
        ImplArg::Oracle => {
            let r = gla_judge::truth::oracle_full(&p, a.backward).context("oracle")?;
            meta.insert("compute".to_string(), "mpfr".to_string());
            meta.insert("oracle_precision_bits".to_string(), r.precision.to_string());
            meta.insert("oracle_bits_agreed".to_string(), r.bits_agreed.to_string());
            (r.solution, Dtype::F64)
        }
        ImplArg::Form(form) => {
            let cfg = Config {
                form,
                compute: a.compute,
                round: a.round.0,
                chunk: a.chunk,
                sub_chunk: a.sub_chunk,
                dg: a.dg_form,
            };
            meta.insert("compute".to_string(), cfg.compute.dtype().to_string());
            meta.insert(
                "round".to_string(),
                cfg.round.map_or("none".to_string(), |d| d.to_string()),
            );
            if matches!(a.imp, ImplArg::Form(Form::Chunked | Form::Gpu)) {
                meta.insert("chunk".to_string(), a.chunk.to_string());
                meta.insert("sub_chunk".to_string(), a.sub_chunk.to_string());
            }
            let imp = cfg.implementation()?;
            meta.insert("implementation".to_string(), imp.name());
            meta.insert("input_dtype".to_string(), imp.input_dtype().to_string());
            if let std::borrow::Cow::Owned(_) = imp.prepare(&p)? {
                // The file's values are not all representable in the implementation's input format.
                eprintln!(
                    "glacheck eval: note: inputs rounded to {} (the format {} consumes)",
                    imp.input_dtype(),
                    imp.name()
                );
                meta.insert(
                    "inputs_rounded_to".to_string(),
                    imp.input_dtype().to_string(),
                );
            }
            if imp.is_gpu() && !gla_judge::gpu::available() {
                bail!(
                    "{}: no usable GPU ({})",
                    imp.name(),
                    gla_judge::gpu::unavailable_reason()
                        .unwrap_or_else(|| "disabled by GLA_NO_GPU".into())
                );
            }
            let s = gla_judge::solve(&imp, &p, a.backward)?;
            (
                s,
                if imp.is_gpu() {
                    Dtype::F32
                } else {
                    cfg.compute.dtype()
                },
            )
        }
    };
    let names = write_solution(&a.output, &p, &solution, dtype, &meta)?;
    eprintln!(
        "glacheck eval: wrote {} ({dtype}) to `{}`",
        names.join(", "),
        a.output.display()
    );
    Ok(Status::Ok)
}
