//! Verifier power (docs/math.md §8.2, "Verifier power"): the mutant benchmark's gate (glacheck
//! catches every mutant an anchor judge catches and raises no false alarm), the honest direction
//! (the CPU implementations judged as outside candidates pass the bound, the baseline rule and
//! the bias test on drawn problems), the required 1.005 scaling failure, and the calibration
//! sweep of the empirical constants (ignored; prints the evidence quoted beside the constants).

mod common;
use common::*;
use gla_judge::baseline::BASELINE_FACTOR;
use gla_judge::bias::{B_MIN, T_BIAS};
use gla_judge::mutants::bench::{catalog_cases, run, Options};
use gla_judge::verify::{verify, Candidate, Labels, VerifyOptions};
use gla_reference::{recurrent, Dtype};
use std::collections::BTreeMap;

/// How many drawn problems a test takes: the environment variable `var`, else `default`.
fn seeds(var: &str, default: u64) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn golden_dir() -> std::path::PathBuf {
    gla_fixtures::golden::default_dir()
}

/// The benchmark on every catalog case: glacheck catches every mutant an anchor catches, raises
/// no false alarm on the honest implementations, and catches at least three mutants that every
/// anchor misses on every case (the state read-backs through bf16 tiles and the bf16 state
/// carry: errors of one bf16 rounding, below fla's RMS rule, inside FlashAttention's 2x of a
/// bf16 reference and cuDNN's 2e-2, but twice the honest kernel's). The table also lists the
/// (mutant, case) pairs an anchor catches and glacheck misses (near-threshold catches, e.g.
/// cuDNN failing a mutant at 1.4x the honest error).
#[test]
fn mutant_benchmark_gate_holds() {
    let cases = catalog_cases(&golden_dir(), None).expect("catalog");
    let b = run(&cases, &Options::default()).expect("benchmark");
    let table = b.render();
    println!("{table}");
    assert!(b.mutants.len() >= 15, "{table}");
    assert!(b.glacheck_misses().is_empty(), "{table}");
    assert!(b.glacheck_false_alarms().is_empty(), "{table}");
    assert!(b.gate_ok());
    assert!(b.only_glacheck().len() >= 3, "{table}");
}

/// The reverse-cumsum identity the dg mutants post-process: `dg_t = sum_{s >= t} (q_s dq_s -
/// k_s dk_s) + rowsum(hT * dhT)`, checked on the f64 recurrence.
#[test]
fn reverse_cumsum_identity_of_the_dg_mutants() {
    let p = gla_fixtures::catalog::case("varlen")
        .unwrap()
        .problem()
        .unwrap();
    let s = recurrent::backward::<f64>(&p).unwrap();
    let g = s.grads.as_ref().unwrap();
    let dht = p.dht().unwrap();
    let d = p.dims();
    let mut worst = 0.0f64;
    for sq in p.sequences() {
        for h in 0..d.h {
            for a in 0..d.k {
                let mut acc: f64 = (0..d.v)
                    .map(|e| s.ht[[sq.state, h, a, e]] * dht[[sq.state, h, a, e]])
                    .sum();
                for t in (sq.start..sq.start + sq.len).rev() {
                    acc += p.q()[[0, t, h, a]] * g.dq[[0, t, h, a]]
                        - p.k()[[0, t, h, a]] * g.dk[[0, t, h, a]];
                    worst = worst.max((acc - g.dg[[0, t, h, a]]).abs());
                }
            }
        }
    }
    assert!(worst < 1e-10, "{worst}");
}

/// Required by the issue: the bf16 chunked twin's o scaled by 1.005 fails `verify` at bf16 on
/// the mild golden, naming o and the rule.
#[test]
fn twin_scaled_by_1_005_fails_at_bf16_naming_o_and_the_rule() {
    let cases = catalog_cases(&golden_dir(), Some(&["mild".to_string()])).unwrap();
    let case = &cases[0];
    let twin = gla_judge::mutants::chunked_f32(
        &case.problem,
        gla_reference::RoundingPlan::kernel_default(Dtype::Bf16),
    )
    .unwrap();
    let mut c = Candidate::from_solution(&twin, Dtype::Bf16);
    c.tensors.retain(|t| matches!(t.0, "o" | "ht"));
    let opts = VerifyOptions {
        precision: Dtype::Bf16,
        ..VerifyOptions::default()
    };
    let honest = verify(&case.problem, &c, &case.truth, &opts, Labels::default()).unwrap();
    assert!(honest.pass(), "{}", honest.render());
    for (n, x, _) in c.tensors.iter_mut() {
        if *n == "o" {
            x.mapv_inplace(|v| Dtype::Bf16.round(v * 1.005));
        }
    }
    let r = verify(&case.problem, &c, &case.truth, &opts, Labels::default()).unwrap();
    let text = r.render();
    println!("{text}");
    assert!(!r.pass(), "{text}");
    assert!(r.pass_bound(), "the bound alone does not see it:\n{text}");
    assert!(
        !r.failed_rules("o").is_empty() && r.failed_rules("ht").is_empty(),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("FAIL o: ") && l.contains("rule")),
        "{text}"
    );
}

/// The honest direction: every honest implementation of the benchmark (the CPU registry at its
/// declared arithmetic, the GPU kernels' CPU twins, the textbook forward, the rounded exact
/// result, fla's fused recurrence in bf16, the f32 tensor-core kernels with TF32 operands rounded and
/// truncated) passes all three rules on drawn problems covering the
/// property suite's gate and value regimes.
#[test]
fn honest_implementations_pass_all_three_rules_on_drawn_problems() {
    let n = seeds("POWER_SEEDS", 24);
    let mut bad = Vec::new();
    for seed in 0..n {
        let case = drawn_case(seed);
        for r in honest_records(&case) {
            if !r.rules.is_empty() {
                bad.push(format!(
                    "{} {} {}: {:?} (max x{:.2}, rms x{:.2}, t {:.1}, beta/u {:.3})",
                    r.imp, r.case, r.tensor, r.rules, r.max_ratio, r.rms_ratio, r.t, r.beta_u
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

/// Calibration sweep of `T_BIAS`, `B_MIN` and `BASELINE_FACTOR` (docs/math.md §8.2): every honest
/// implementation on the catalog and on `CAL_SEEDS` drawn problems (default 300); prints the
/// largest statistics per implementation and the extreme records.
#[test]
#[ignore = "calibration sweep of the empirical constants (300 drawn problems); run with --ignored --nocapture"]
fn calibrate_empirical_rules() {
    let n = seeds("CAL_SEEDS", 300);
    let mut recs = Vec::new();
    for case in catalog_cases(&golden_dir(), None).unwrap() {
        recs.extend(honest_records(&case));
    }
    let ncat = recs.len();
    for seed in 0..n {
        recs.extend(honest_records(&drawn_case(seed)));
    }
    println!(
        "{} records ({} catalog); T_BIAS = {T_BIAS}, B_MIN = {B_MIN}, factor = {BASELINE_FACTOR}",
        recs.len(),
        ncat
    );
    let mut by: BTreeMap<String, (usize, f64, f64, f64, f64, f64)> = BTreeMap::new();
    for r in &recs {
        let e = by.entry(r.imp.clone()).or_default();
        e.0 += 1;
        e.1 = e.1.max(r.t.abs());
        e.2 = e.2.max(r.beta_u.abs());
        e.3 = e.3.max(r.max_ratio);
        e.4 = e.4.max(r.rms_ratio);
        e.5 = e.5.max(r.bound_frac);
    }
    println!("implementation: records, max|t|, max|beta/u|, max max-ratio, max rms-ratio, max bound fraction");
    for (k, v) in &by {
        println!(
            "  {k}: {} {:.2} {:.4} {:.3} {:.3} {:.3}",
            v.0, v.1, v.2, v.3, v.4, v.5
        );
    }
    let show = |title: &str, mut v: Vec<&Record>, key: &dyn Fn(&Record) -> f64| {
        v.sort_by(|a, b| key(b).total_cmp(&key(a)));
        println!("{title}");
        for r in v.iter().take(12) {
            println!(
                "  {:.3}  {} {} {}: t {:.2} beta/u {:.4} max x{:.3} rms x{:.3} rules {:?}",
                key(r),
                r.imp,
                r.tensor,
                r.case,
                r.t,
                r.beta_u,
                r.max_ratio,
                r.rms_ratio,
                r.rules
            );
        }
    };
    let all: Vec<&Record> = recs.iter().collect();
    show("largest |t|:", all.clone(), &|r| r.t.abs());
    show("largest |beta/u|:", all.clone(), &|r| r.beta_u.abs());
    for tt in [3.0, 4.0, 5.0, 6.0, 8.0] {
        let m = recs
            .iter()
            .filter(|r| r.t.abs() > tt)
            .map(|r| r.beta_u.abs())
            .fold(0.0, f64::max);
        println!("largest |beta/u| among |t| > {tt}: {m:.4}");
    }
    show("largest |beta/u| - 2 |honest beta/u|:", all.clone(), &|r| {
        r.beta_u.abs() - 2.0 * r.honest_beta_u
    });
    show("largest max-ratio:", all.clone(), &|r| r.max_ratio);
    show("largest rms-ratio:", all.clone(), &|r| r.rms_ratio);
    let fails: Vec<&Record> = recs.iter().filter(|r| !r.rules.is_empty()).collect();
    println!("records failing a rule: {}", fails.len());
    for r in fails.iter().take(40) {
        println!("  {} {} {}: {:?}", r.imp, r.tensor, r.case, r.rules);
    }
}

/// The declared rounding mode of TF32 operands matters. A Triton-style f32 kernel (every product
/// operand truncated to TF32, as tensor cores do with unconverted f32 registers: fla's fp32
/// chunk_gla) passes `--precision tf32-rz` on every catalog case and fails `--precision tf32`
/// (round to nearest) on most of them through the empirical rules alone: twice the honest error
/// and a bias toward zero, while staying far inside the derived bound (measured 2026-12-07: 25
/// of 25 cases fail at tf32, bound ratios <= 0.22; on an H100 fla 0.6.0's fp32 chunk_gla failed
/// the tf32 verdict on 17 of 19 catalog cases at bound ratios 0.06-0.3, BENCHMARKS.md V3).
#[test]
fn tf32_truncation_is_told_apart_from_round_to_nearest() {
    use gla_judge::mutants::bench::honest_candidates;
    // the benchmark's truncating f32 tensor-core kernel, judged as it declares (tf32-rz) and as tf32
    let h = honest_candidates()
        .into_iter()
        .find(|h| h.precision == Dtype::Tf32Rz)
        .expect("a tf32-rz honest candidate");
    let mut fail_rn = Vec::new();
    let mut n = 0;
    for case in catalog_cases(&golden_dir(), None).unwrap() {
        let p = &case.problem;
        if !p.has_backward() {
            continue;
        }
        n += 1;
        let c = h.candidate(&case).unwrap().expect("applies to every case");
        let judge = |precision| {
            let o = VerifyOptions {
                precision,
                ..VerifyOptions::default()
            };
            verify(p, &c, &case.truth, &o, Labels::default()).unwrap()
        };
        let rz = judge(Dtype::Tf32Rz);
        assert!(
            rz.pass(),
            "{}: false alarm at tf32-rz\n{}",
            case.name,
            rz.render()
        );
        let rn = judge(Dtype::Tf32);
        assert!(rn.pass_bound(), "{}\n{}", case.name, rn.render());
        if !rn.pass() {
            fail_rn.push(case.name.clone());
        }
    }
    println!(
        "truncated TF32 fails --precision tf32 on {} of {n} cases",
        fail_rn.len()
    );
    assert!(n >= 20 && fail_rn.len() * 4 >= n * 3, "{fail_rn:?} of {n}");
}

/// The total-minus-prefix dg (F12) and its origin, the honest bf16 twin, on one problem: both
/// judged by glacheck at bf16 and by the anchors on dg.
struct F12 {
    honest: gla_judge::verify::VerifyReport,
    replay: gla_judge::verify::VerifyReport,
    /// The anchors' verdicts on dg ([fla, FlashAttention, cuDNN], true = pass): twin, replay.
    anchors: ([bool; 3], [bool; 3]),
}

impl F12 {
    fn judge(p: &gla_reference::Problem, truth: &gla_judge::Truth) -> F12 {
        use gla_judge::mutants::{bench::AnchorRefs, dg_chunk_total_minus_prefix};
        use gla_judge::mutants::{origin_candidate, Origin};
        let opts = VerifyOptions {
            precision: Dtype::Bf16,
            ..VerifyOptions::default()
        };
        let honest = origin_candidate(Origin::Twin, Dtype::Bf16, p).unwrap();
        let replay = dg_chunk_total_minus_prefix(p).unwrap();
        let refs = AnchorRefs::new(p, Dtype::Bf16).unwrap();
        let dg =
            |c: &Candidate| refs.passes("dg", &c.tensors.iter().find(|t| t.0 == "dg").unwrap().1);
        F12 {
            honest: verify(p, &honest, truth, &opts, Labels::default()).unwrap(),
            replay: verify(p, &replay, truth, &opts, Labels::default()).unwrap(),
            anchors: (dg(&honest), dg(&replay)),
        }
    }

    /// Who catches the replay: [glacheck, fla, FlashAttention, cuDNN] (fails the replay's dg,
    /// passes the twin's).
    fn caught(&self) -> [bool; 4] {
        let g = |r: &gla_judge::verify::VerifyReport| r.failed_rules("dg").is_empty();
        let (h, b) = self.anchors;
        [
            g(&self.honest) && !g(&self.replay),
            h[0] && !b[0],
            h[1] && !b[1],
            h[2] && !b[2],
        ]
    }
}

/// A defect found on a GPU: fla 0.6.0's `chunk_gla` (bf16) failed the Hypothesis recipe of
/// examples/test_fla_gla.py on dg, 15.9-69.8x the bound, and Hypothesis shrank it to the problem
/// stored in fixtures/regressions (T = 15, g = 0, K = V = 64, values from 1e-3 to 3e3; BENCHMARKS.md
/// V4). The cause is fla's in-chunk reverse cumsum `x - cumsum(x) + sum(x)`
/// ([`gla_judge::mutants::dg_chunk_total_minus_prefix`]): replayed on the CPU twin's f32
/// gradients it fails the bound on dg alone, at the element fla failed ([0, 14, 0, 14]: 6.6x the
/// bound here, 54.5x in fla's run, whose reduction orders differ), where the twin, which sums from
/// the end, passes every rule. fla's RMS rule and FlashAttention's 2x rule pass the defect (the
/// damage sits on rows whose dg is small next to the rest); cuDNN's tolerance fails the honest
/// twin as well, so it catches nothing here.
#[test]
fn fla_chunk_total_minus_prefix_dg_is_caught() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/regressions/fla_chunk_gla_dg_total_minus_prefix.safetensors");
    let p = gla_fixtures::io::read_problem(&path).unwrap();
    let truth = gla_judge::Truth::oracle(&p, true).unwrap();
    let f = F12::judge(&p, &truth);
    assert!(f.honest.pass(), "{}", f.honest.render());
    let text = f.replay.render();
    println!("{text}");
    assert!(!f.replay.pass_bound(), "{text}");
    for t in &f.replay.tensors {
        assert_eq!(
            f.replay.failed_rules(&t.name).is_empty(),
            t.name != "dg",
            "{}\n{text}",
            t.name
        );
    }
    println!(
        "anchors on dg (fla, FlashAttention, cuDNN; true = pass): twin {:?}, replay {:?}",
        f.anchors.0, f.anchors.1
    );
    assert_eq!(
        f.caught(),
        [true, false, false, false],
        "an anchor now catches it: update the doc comment"
    );
    assert!(
        !f.anchors.0[2],
        "cuDNN now passes the twin: update the doc comment"
    );
}

/// How often each judge catches the total-minus-prefix dg (F12) on drawn problems (the property
/// suite's gate and value regimes, `F12_SEEDS` of them, default 300). Prints the counts and the
/// problems an anchor catches it on and glacheck does not (BENCHMARKS.md V4), and checks that
/// glacheck catches it on at least as many problems as each anchor. (Per problem that does not
/// hold: where the replay's extra error stays inside the bound and within the baseline rule's 2x
/// plus its floor, fla's RMS rule, which compares with RMS(dg) rather than with `M_dg`, or
/// cuDNN's elementwise tolerance can still flip.)
#[test]
fn total_minus_prefix_dg_on_drawn_problems() {
    let n = seeds("F12_SEEDS", 300);
    let (mut caught, mut only_anchor) = ([0usize; 4], Vec::new());
    for seed in 0..n {
        let case = drawn_case(seed);
        let f = F12::judge(&case.problem, &case.truth);
        let c = f.caught();
        for j in 0..4 {
            caught[j] += c[j] as usize;
        }
        if !c[0] && c[1..].iter().any(|&b| b) {
            let (t, e) = f
                .replay
                .tensors
                .iter()
                .zip(&f.replay.empirical)
                .find(|(t, _)| t.name == "dg")
                .unwrap();
            only_anchor.push(format!(
                "{} [anchors catching: {:?}; glacheck on the replay's dg: ratio/bound {:.3}, max x{:.2}, RMS x{:.2} the baseline]",
                case.name,
                &c[1..],
                t.ratio / t.bound,
                e.baseline.max_ratio().unwrap_or(0.0),
                e.baseline.rms_ratio().unwrap_or(0.0)
            ));
        }
    }
    println!(
        "total-minus-prefix dg on {n} drawn problems: caught by glacheck {}, fla {}, \
         FlashAttention {}, cuDNN {}",
        caught[0], caught[1], caught[2], caught[3]
    );
    println!(
        "caught by an anchor, not by glacheck ({}):\n{}",
        only_anchor.len(),
        only_anchor.join("\n")
    );
    assert!(caught[1..].iter().all(|&c| caught[0] >= c), "{caught:?}");
    assert!(caught[0] > 0);
}
