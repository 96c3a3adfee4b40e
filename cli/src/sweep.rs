//! `glacheck sweep`: error growth against sequence length and gate strength, as SVG plots
//! (plotters) and a CSV.

use crate::common::{choice, progress, write_atomically, Status};
use crate::eval::DG_NAMES;
use anyhow::{bail, Context, Result};
use clap::builder::TypedValueParser as _;
use clap::Args;
use gla_fixtures::gen::{GateRegime, ProblemSpec, ValueRegime};
use gla_judge::implementation::{Config, Form};
use gla_judge::{Compute, Implementation};
use gla_reference::bounds::{DgForm, TensorReport};
use gla_reference::{Dtype, GateKind};
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The `--regime` values: every shared gate regime, by its short name (`zero`, `mild`, ...).
fn regime_parser() -> impl clap::builder::TypedValueParser<Value = GateRegime> {
    clap::builder::PossibleValuesParser::new(
        GateRegime::ALL.map(|r| clap::builder::PossibleValue::new(r.name()).help(r.label())),
    )
    .map(|s| s.parse::<GateRegime>().expect("a listed regime"))
}

/// `--impl` names of `sweep`.
const FORM_NAMES: &[&str] = &["recurrent", "parallel", "chunked", "gpu"];
/// `--precision` names of `sweep`: f32 / f64 compute, or f32 compute with fla's bf16 / fp16
/// kernel rounding plan (chunked, gpu).
const SWEEP_PRECISIONS: &[&str] = &["f32", "f64", "bf16", "f16"];

/// Arguments of `glacheck sweep`.
#[derive(Debug, Args)]
#[command(after_help = "\
For every sequence length T (powers of two from --t-min to --t-max) and gate regime, one problem \
(B=1, signed normal q, k, v, do, inputs exact in bf16) is solved by the MPFR oracle and by every \
implementation x precision; the worst elementwise ratio |x - x*| / ((sum u_s + u_acc) M_x + eta) of o \
(and dg with --backward) is written to DIR/sweep.csv and plotted against T on log-log axes in \
DIR/<implementation>-<output>.svg, one line per regime, dashed lines = the bound of docs/math.md §8.1.
Exit status: 0 every point within its bound, 1 some point above it, 2 bad usage.")]
pub struct SweepArgs {
    /// Implementations (repeatable).
    #[arg(long = "impl", value_parser = choice::<Form>(FORM_NAMES), default_values = ["recurrent", "chunked"])]
    pub imp: Vec<Form>,
    /// Precisions (repeatable): f32, f64, or f32 compute with the bf16/f16 kernel plan (chunked
    /// and gpu only).
    #[arg(long, value_parser = choice::<Dtype>(SWEEP_PRECISIONS), default_values = ["f32"])]
    pub precision: Vec<Dtype>,
    /// Gate regimes (repeatable).
    #[arg(long, value_parser = regime_parser(), default_values = ["zero", "mild", "moderate", "strong", "tiny"])]
    pub regime: Vec<GateRegime>,
    /// Smallest T (rounded up to a power of two).
    #[arg(long, default_value_t = 16)]
    pub t_min: usize,
    /// Largest T.
    #[arg(long, default_value_t = 4096)]
    pub t_max: usize,
    /// Heads.
    #[arg(long, default_value_t = 1)]
    pub heads: usize,
    /// Key dimension K.
    #[arg(long, default_value_t = 32)]
    pub k: usize,
    /// Value dimension V.
    #[arg(long, default_value_t = 32)]
    pub v: usize,
    /// Chunk length C of the chunked form.
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    /// Sub-chunk length c of the chunked form.
    #[arg(long = "sub-chunk", default_value_t = 16)]
    pub sub_chunk: usize,
    /// Also run the backward pass and plot dg (against the magnitude of the algorithm each
    /// candidate runs, and, in `<impl>-dg_vs_M_dg_local.svg`, against the local magnitude).
    #[arg(long)]
    pub backward: bool,
    /// Gate-gradient algorithms with --backward (repeatable): each of recurrent, chunked, gpu
    /// runs once per form (the parallel form only has the reverse cumsum).
    #[arg(long = "dg-form", value_parser = choice::<DgForm>(DG_NAMES), default_values = ["reverse-cumsum"])]
    pub dg_form: Vec<DgForm>,
    /// Seed of the problem generator.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (created if needed).
    #[arg(long)]
    pub out: PathBuf,
}

struct Point {
    imp: String,
    regime: GateRegime,
    t: usize,
    report: TensorReport,
    /// Informational (not judged): dg's ratio against M_dg_local for every dg algorithm.
    info: bool,
}

/// The informational output: dg's error against the local magnitude M_dg_local (the judged
/// magnitude of the local form; the reverse cumsum is judged against M_dg instead).
const DG_VS_LOCAL: &str = "dg_vs_M_dg_local";

/// Ratios below this are drawn at it (log axes cannot show 0).
const PLOT_FLOOR: f64 = 1e-3;

fn implementations(a: &SweepArgs) -> Result<Vec<Implementation>> {
    let mut out: Vec<Implementation> = Vec::new();
    for &kind in &a.imp {
        for &prec in &a.precision {
            let (compute, round) = match prec {
                Dtype::F64 => (Compute::F64, None),
                Dtype::F32 => (Compute::F32, None),
                d => (Compute::F32, Some(d)),
            };
            if round.is_some() && !matches!(kind, Form::Chunked | Form::Gpu) {
                eprintln!("glacheck sweep: skipping {} with {prec}: rounding plans apply to chunked and gpu", kind.name());
                continue;
            }
            if kind == Form::Gpu && compute == Compute::F64 {
                eprintln!("glacheck sweep: skipping gpu f64: the kernels compute in f32");
                continue;
            }
            for &dg in &a.dg_form {
                if dg == DgForm::Local && kind == Form::Parallel {
                    eprintln!("glacheck sweep: skipping parallel with --dg-form local: it has only the reverse cumsum");
                    continue;
                }
                let cfg = Config {
                    form: kind,
                    compute,
                    round,
                    chunk: a.chunk,
                    sub_chunk: a.sub_chunk,
                    dg,
                };
                let imp = cfg.implementation()?;
                if !out.contains(&imp) {
                    out.push(imp);
                }
            }
        }
    }
    if out.is_empty() {
        bail!("no implementation left to sweep");
    }
    Ok(out)
}

fn lengths(a: &SweepArgs) -> Result<Vec<usize>> {
    if a.t_min == 0 || a.t_min > a.t_max {
        bail!(
            "need 1 <= --t-min <= --t-max (got {} and {})",
            a.t_min,
            a.t_max
        );
    }
    let mut t = a.t_min.next_power_of_two();
    let mut v = Vec::new();
    while t <= a.t_max {
        v.push(t);
        t *= 2;
    }
    if v.is_empty() {
        v.push(a.t_max);
    }
    Ok(v)
}

/// Run `glacheck sweep`.
///
/// Length (about 200 lines): one pass over the sweep grid that computes, prints progress and
/// collects the CSV rows and plot series together; the pieces that stand alone (grid, plots,
/// CSV) are separate functions.
pub fn run(a: SweepArgs) -> Result<Status> {
    if a.chunk == 0 || a.sub_chunk == 0 || a.chunk % a.sub_chunk != 0 {
        bail!(
            "--chunk {} must be a positive multiple of --sub-chunk {}",
            a.chunk,
            a.sub_chunk
        );
    }
    if a.k == 0 || a.v == 0 || a.heads == 0 {
        bail!("--k, --v and --heads must be at least 1");
    }
    let impls = implementations(&a)?;
    let ts = lengths(&a)?;
    let mut regimes = a.regime.clone();
    regimes.sort();
    regimes.dedup();
    std::fs::create_dir_all(&a.out)
        .with_context(|| format!("cannot create `{}`", a.out.display()))?;
    for imp in &impls {
        if imp.is_gpu() {
            if let Err(why) = crate::check::gpu_available() {
                bail!("{}: no usable GPU ({why})", imp.name());
            }
        }
    }

    let outputs: Vec<&str> = if a.backward {
        vec!["o", "dg", DG_VS_LOCAL]
    } else {
        vec!["o"]
    };
    let pb = progress(
        (ts.len() * regimes.len() * (impls.len() + 1)) as u64,
        "sweep",
    );
    let mut points: Vec<Point> = Vec::new();
    for &regime in &regimes {
        for &t in &ts {
            pb.set_message(format!("{} T={t} (oracle)", regime.name()));
            let spec = ProblemSpec {
                b: 1,
                t,
                h: a.heads,
                k: a.k,
                v: a.v,
                gate_kind: GateKind::PerChannel,
                gates: regime,
                values: ValueRegime::SignedNormal,
                h0: false,
                dht: false,
                seq_lens: None,
                scale: None,
                grid: Dtype::Bf16,
                seed: a.seed ^ ((regime as u64) << 32) ^ t as u64,
            };
            let p = spec.build()?;
            let exact = gla_judge::truth::oracle(&p, a.backward)
                .with_context(|| format!("oracle, regime {}, T = {t}", regime.name()))?;
            let m = gla_reference::bounds::magnitudes(&p);
            pb.inc(1);
            for imp in &impls {
                pb.set_message(format!("{} T={t} {}", regime.name(), imp.name()));
                // Inputs are on the bf16 grid: every implementation consumes them unchanged.
                let pp = imp
                    .prepare(&p)
                    .with_context(|| format!("{} does not apply", imp.name()))?;
                if *pp != p {
                    bail!(
                        "internal: sweep inputs are not exact in {}",
                        imp.input_dtype()
                    );
                }
                let fwd = gla_judge::solve(imp, &p, false)?;
                let bwd = if a.backward {
                    Some(gla_judge::solve(imp, &p, true)?)
                } else {
                    None
                };
                let rep = gla_judge::check::judge(imp, &p, &m, &exact, &fwd, bwd.as_ref())?;
                for t_rep in rep.tensors {
                    if let (true, Some(dg)) = (t_rep.name == "dg", t_rep.dg) {
                        let mut r = t_rep.clone();
                        r.name = DG_VS_LOCAL.to_string();
                        r.ratio = dg.local;
                        r.pass = true;
                        points.push(Point {
                            imp: imp.name(),
                            regime,
                            t,
                            report: r,
                            info: true,
                        });
                    }
                    points.push(Point {
                        imp: imp.name(),
                        regime,
                        t,
                        report: t_rep,
                        info: false,
                    });
                }
                pb.inc(1);
            }
        }
    }
    pb.finish_and_clear();

    // CSV.
    let mut csv = String::from(
        "implementation,regime,T,output,ratio,bound,pass,n_acc,lambda,u_stages,u_acc,max_abs_err,rel_err,candidate_nonfinite\n",
    );
    for pt in &points {
        let r = &pt.report;
        let _ = writeln!(
            csv,
            "{},{},{},{},{:e},{:e},{},{},{},{:e},{:e},{:e},{:e},{}",
            pt.imp,
            pt.regime.name(),
            pt.t,
            r.name,
            r.ratio,
            r.bound,
            if pt.info {
                "info".to_string()
            } else {
                r.pass.to_string()
            },
            r.n_acc,
            r.lambda,
            r.u_stages + 0.0,
            r.u_acc,
            r.max_abs_err,
            r.rel_err,
            r.candidate_nonfinite
        );
    }
    let csv_path = a.out.join("sweep.csv");
    write_atomically(&csv_path, csv.as_bytes())?;

    // Plots.
    let mut files = vec![csv_path.display().to_string()];
    for imp in &impls {
        for &out in &outputs {
            if !points
                .iter()
                .any(|p| p.imp == imp.name() && p.report.name == out)
            {
                continue; // e.g. dg of an implementation without a backward pass
            }
            let path = a.out.join(format!("{}-{out}.svg", imp.name()));
            plot(&path, &imp.name(), out, &a, &points)
                .with_context(|| format!("cannot draw `{}`", path.display()))?;
            files.push(path.display().to_string());
        }
    }

    // Summary on stdout.
    let failing: Vec<&Point> = points
        .iter()
        .filter(|p| !p.info && !p.report.pass)
        .collect();
    crate::outln!("glacheck sweep: {} points, wrote:", points.len());
    for f in &files {
        crate::outln!("  {f}");
    }
    let mut worst: BTreeMap<(String, String), (f64, f64)> = BTreeMap::new();
    for p in points.iter().filter(|p| !p.info) {
        let e = worst
            .entry((p.imp.clone(), p.report.name.clone()))
            .or_insert((0.0, 0.0));
        if p.report.ratio / p.report.bound >= e.0 / e.1.max(f64::MIN_POSITIVE) {
            *e = (p.report.ratio, p.report.bound);
        }
    }
    crate::outln!(
        "{:<28} {:<7} {:>12} {:>12}",
        "implementation",
        "output",
        "worst ratio",
        "its bound"
    );
    for ((i, o), (r, b)) in &worst {
        crate::outln!("{i:<28} {o:<7} {r:>12.3e} {b:>12.3e}");
    }
    if failing.is_empty() {
        crate::outln!("PASS: every point within its bound");
        Ok(Status::Ok)
    } else {
        crate::outln!("FAIL: {} point(s) above their bound:", failing.len());
        for p in failing.iter().take(20) {
            crate::outln!(
                "  {} {} T={} {}: ratio {:.3e} > bound {:.3e} (non-finite: {})",
                p.imp,
                p.regime.name(),
                p.t,
                p.report.name,
                p.report.ratio,
                p.report.bound,
                p.report.candidate_nonfinite
            );
        }
        Ok(Status::Fail)
    }
}

const COLORS: [RGBColor; 5] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
];

fn plot(path: &Path, imp: &str, output: &str, a: &SweepArgs, points: &[Point]) -> Result<()> {
    let mine: Vec<&Point> = points
        .iter()
        .filter(|p| p.imp == imp && p.report.name == output)
        .collect();
    if mine.is_empty() {
        bail!("no data for {imp} {output}");
    }
    // The x axis is log2(T) on a linear scale, labelled with T itself: exact powers of two.
    let lt = |t: usize| (t as f64).log2();
    let tmin = mine.iter().map(|p| lt(p.t)).fold(f64::INFINITY, f64::min);
    let tmax = mine
        .iter()
        .map(|p| lt(p.t))
        .fold(f64::NEG_INFINITY, f64::max);
    let (tmin, tmax) = (tmin - 0.25, tmax + 0.25);
    let nx = mine
        .iter()
        .map(|p| p.t)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let ymax = mine
        .iter()
        .flat_map(|p| [p.report.ratio, p.report.bound])
        .filter(|x| x.is_finite())
        .fold(1.0f64, f64::max)
        * 3.0;
    let ymin = PLOT_FLOOR;

    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let title = format!(
        "{imp}: worst {output} error vs sequence length (H={}, K={}, V={})",
        a.heads, a.k, a.v
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(tmin..tmax, (ymin..ymax).log_scale())
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    chart
        .configure_mesh()
        .x_desc("sequence length T [time steps, log scale]")
        .y_desc(format!(
            "worst ratio of {output}: max |err| / ((sum u_s + u_acc) M + eta) [log]"
        ))
        .x_labels(nx + 2)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", 2f64.powf(x.round()) as u64)
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{y:.0e}"))
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;

    let mut regimes: Vec<GateRegime> = mine.iter().map(|p| p.regime).collect();
    regimes.sort();
    regimes.dedup();
    for (i, r) in regimes.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let mut pts: Vec<(f64, f64)> = mine
            .iter()
            .filter(|p| p.regime == *r)
            .map(|p| {
                let y = if p.report.ratio.is_finite() {
                    p.report.ratio.max(ymin)
                } else {
                    ymax
                };
                (lt(p.t), y)
            })
            .collect();
        pts.sort_by(|x, y| x.0.total_cmp(&y.0));
        let mut bnd: Vec<(f64, f64)> = mine
            .iter()
            .filter(|p| p.regime == *r)
            .map(|p| (lt(p.t), p.report.bound.max(ymin)))
            .collect();
        bnd.sort_by(|x, y| x.0.total_cmp(&y.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?
            .label(r.label())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(
                pts.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
            )
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        chart
            .draw_series(DashedLineSeries::new(bnd, 6, 4, color.stroke_width(1)))
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            Vec::<(f64, f64)>::new(),
            BLACK,
        )))
        .map_err(|e| anyhow::anyhow!("{e:?}"))?
        .label(format!(
            "dashed: bound (docs/math.md §8.1); ratios < {PLOT_FLOOR:.0e} drawn at {PLOT_FLOOR:.0e}"
        ))
        .legend(|(x, y)| {
            PathElement::new(vec![(x, y), (x + 6, y), (x + 10, y), (x + 16, y)], BLACK)
        });
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    root.present().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    Ok(())
}
