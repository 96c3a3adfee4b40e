//! `glacheck eval`: solve one problem from a file and write the results.

use crate::backend::{self, ImplKind, SolverConfig};
use crate::common::{Status, VERSION};
use crate::verify::DgArg;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use gla_reference::Dtype;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Compute type of a float implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compute {
    /// IEEE single precision.
    F32,
    /// IEEE double precision.
    F64,
}

impl Compute {
    /// As a dtype.
    pub fn dtype(self) -> Dtype {
        match self {
            Compute::F32 => Dtype::F32,
            Compute::F64 => Dtype::F64,
        }
    }
}

/// Operand rounding of the chunked form's matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Round {
    /// No rounding (everything in the compute type).
    None,
    /// bf16 operands, f32 accumulation (fla's bf16 kernel plan).
    Bf16,
    /// fp16 operands, f32 accumulation.
    F16,
}

impl Round {
    /// As a dtype (None: no rounding).
    pub fn dtype(self) -> Option<Dtype> {
        match self {
            Round::None => None,
            Round::Bf16 => Some(Dtype::Bf16),
            Round::F16 => Some(Dtype::F16),
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
    #[arg(long = "impl", value_enum)]
    pub imp: ImplKind,
    /// Compute type of a float implementation (ignored by the oracle).
    #[arg(long, value_enum, default_value = "f32")]
    pub compute: Compute,
    /// Chunked: fla's kernel rounding plan in this dtype (inputs rounded to it first); gpu: the
    /// kernels' input dtype (none = f32 inputs).
    #[arg(long, value_enum, default_value = "none")]
    pub round: Round,
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
    #[arg(long = "dg-form", value_enum, default_value = "reverse-cumsum")]
    pub dg_form: DgArg,
    /// Input file.
    pub input: PathBuf,
    /// Output file (written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
}

/// Options that the chosen implementation does not use are a usage error, not silently ignored.
pub fn check_options(a: &EvalArgs) -> Result<()> {
    let chunky = matches!(a.imp, ImplKind::Chunked | ImplKind::Gpu);
    if !chunky && a.round != Round::None {
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
        if a.imp == ImplKind::Gpu && (a.chunk, a.sub_chunk) != (64, 16) {
            bail!("the GPU kernels use --chunk 64 --sub-chunk 16");
        }
        if a.imp == ImplKind::Gpu && a.compute != Compute::F32 {
            bail!("the GPU kernels compute in f32: use --compute f32 (and --round for bf16/f16 inputs)");
        }
        if a.round != Round::None && a.compute != Compute::F32 {
            bail!(
                "--round {:?} emulates f32-accumulating kernels: use --compute f32",
                a.round
            );
        }
    }
    if a.dg_form == DgArg::Local {
        if !a.backward {
            bail!("--dg-form applies with --backward");
        }
        if matches!(a.imp, ImplKind::Oracle | ImplKind::Parallel) {
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
    let (p, _) = backend::read_problem(&a.input)?;
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
    meta.insert("scale".to_string(), backend::format_f64(p.scale()));
    if let Some(name) = a.input.file_name() {
        meta.insert("input".to_string(), name.to_string_lossy().into_owned());
    }
    let (solution, dtype) = if a.imp == ImplKind::Oracle {
        let r = backend::oracle(&p, a.backward).context("oracle")?;
        meta.insert("compute".to_string(), "mpfr".to_string());
        meta.insert("oracle_precision_bits".to_string(), r.precision.to_string());
        meta.insert("oracle_bits_agreed".to_string(), r.bits_agreed.to_string());
        (r.solution, Dtype::F64)
    } else {
        let cfg = SolverConfig {
            kind: a.imp,
            compute: a.compute.dtype(),
            round: a.round.dtype(),
            chunk: a.chunk,
            sub_chunk: a.sub_chunk,
            dg: a.dg_form.form(),
        };
        meta.insert("compute".to_string(), cfg.compute.to_string());
        meta.insert(
            "round".to_string(),
            cfg.round.map_or("none".to_string(), |d| d.to_string()),
        );
        if matches!(a.imp, ImplKind::Chunked | ImplKind::Gpu) {
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
        let s = backend::solve(&imp, &p, a.backward)?;
        (
            s,
            if imp.is_gpu() {
                Dtype::F32
            } else {
                cfg.compute
            },
        )
    };
    let names = backend::write_solution(&a.output, &p, &solution, dtype, &meta)?;
    eprintln!(
        "glacheck eval: wrote {} ({dtype}) to `{}`",
        names.join(", "),
        a.output.display()
    );
    Ok(Status::Ok)
}
