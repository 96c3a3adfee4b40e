//! The properties of the suite. Each is a function of a [`Ctx`] that runs a
//! proptest [`TestRunner`] (shrinking, failure persistence under `proptests/proptest-regressions/`)
//! and returns a [`PropOutcome`]; [`crate::suite::trials`] runs them all and [`crate::suite::finish`] prints the summary.
//!
//! | property | what it checks | oracle |
//! |---|---|---|
//! | `oracle_agreement` | every candidate, forward and backward, within the bound of docs/math.md §8.1 elementwise; non-finite where the oracle is finite fails | yes |
//! | `finiteness_extremes` | extreme gates, longer sequences: every output of every candidate finite | no (the exact answer of a valid problem is finite) |
//! | `causality` | changing q, k, v, g, do at t >= P leaves o and dq before P bit-identical | no |
//! | `chunk_invariance` | chunked (C1, c1) vs (C2, c2) vs the recurrence, by `|a-b| <= bound_a + bound_b` | no |
//! | `split_invariance` | prefill of rows < P, continuation from its hT (backward: prefix seeded with the continuation's dh0) == one run, within bound | yes |
//! | `varlen_invariance` | packed == sequences one by one (bit-identical); perturbing one sequence leaves every other bit-identical | no |
//! | `zero_gate_is_linear_attention` | g = 0 equals plain linear attention computed independently (double-double) | no |
//! | `neg_inf_gate_resets` | a -inf gate in every channel at t0: result == prefix run ⊕ fresh run from t0 (oracle on both parts), within bound; the recurrence bit-identical to the fresh run | yes (parts) |
//! | `pow2_scaling_exact` | v, h0 times 2^k: o, hT, dq, dk, dg times 2^k and dv, dh0 unchanged, bit-identical | no |
//! | `head_permutation_exact` | permuting heads permutes every output bit-identically | no |
//! | `dg_local_equals_reverse_cumsum` | the oracle's two dg forms agree to f64 accuracy; the reference's local and reverse-cumsum dg agree within the sum of their bounds | yes |

use crate::strategies::{self, GateRegime, ProblemSpec, SizeProfile, ValueRegime};
use crate::transform;
use gla_judge::check::{self as harness, compare_pair, identical};
use gla_judge::summary::{self, record_pair};
use gla_judge::truth;
use gla_judge::{bound_spec, solve, Compute, Implementation, Round};
use gla_reference::bounds::{compare, magnitudes, Report};
use gla_reference::{Dtype, Problem, Solution};
use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, FileFailurePersistence, RngSeed, TestCaseError, TestCaseResult,
    TestError, TestRunner,
};
use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// What the properties run over.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Candidates.
    pub impls: Vec<Implementation>,
    /// Size limits of generated problems.
    pub profile: SizeProfile,
    /// Multiplier of every property's default case count (`GLA_DEEP=1`: 8).
    pub case_factor: u32,
    /// Persist failing seeds under `proptests/proptest-regressions/<property>.txt`.
    pub persist: bool,
    /// `GLA_SHARD=i/n`: this run is shard `i` (0-based) of `n`; each shard draws its cases from
    /// its own seed stream ([`case_seed`]), so `n` shards run `n` times the cases, disjoint.
    pub shard: Option<(u32, u32)>,
}

/// Parse `GLA_SHARD` (`i/n` with `0 <= i < n`); `None` when unset or empty.
///
/// ```
/// assert_eq!(gla_proptests::properties::parse_shard("2/4"), Ok(Some((2, 4))));
/// assert!(gla_proptests::properties::parse_shard("4/4").is_err());
/// ```
pub fn parse_shard(s: &str) -> Result<Option<(u32, u32)>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let bad = || format!("GLA_SHARD={s}: expected i/n with 0 <= i < n");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n): (u32, u32) = (
        i.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok(Some((i, n)))
}

/// The seed of a property's case stream: a hash of the property name, the base seed
/// (`PROPTEST_RNG_SEED`, or a fresh random one) and the shard index, so every (property, shard)
/// pair draws from its own stream.
pub fn case_seed(name: &str, base: u64, shard: Option<(u32, u32)>) -> u64 {
    // FNV-1a over the name, then splitmix64 with the base and the shard
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let shard = shard.map_or(0, |(i, n)| (u64::from(n) << 32) | u64::from(i));
    splitmix(splitmix(h ^ base) ^ shard)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Ctx {
    /// Every available candidate, sizes and case counts from the environment (`GLA_DEEP`).
    /// `GLA_IMPLS=name,name` (names as printed in the table) restricts the candidates.
    pub fn from_env() -> Ctx {
        let mut impls = Implementation::all_available();
        if let Ok(sel) = std::env::var("GLA_IMPLS") {
            let names: Vec<&str> = sel
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            if !names.is_empty() {
                impls.retain(|i| names.contains(&i.name().as_str()));
            }
        }
        Ctx {
            impls,
            profile: SizeProfile::from_env(),
            case_factor: if crate::deep() { 8 } else { 1 },
            persist: true,
            shard: parse_shard(&std::env::var("GLA_SHARD").unwrap_or_default())
                .unwrap_or_else(|e| panic!("{e}")),
        }
    }
}

/// The outcome of one property run.
#[derive(Debug, Clone)]
pub struct PropOutcome {
    /// Property name.
    pub name: &'static str,
    /// Test cases run (including shrinking steps).
    pub cases: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// `Err(message with the minimal failing input)` on failure.
    pub result: Result<(), String>,
}

/// A property: its name, default case count and body.
#[derive(Clone, Copy)]
pub struct Property {
    /// Name (also the regression file's name).
    pub name: &'static str,
    /// Cases at the default size (before `case_factor`, overridden by `PROPTEST_CASES`).
    pub default_cases: u32,
    /// The body.
    pub run: fn(&Ctx, &'static str, u32) -> PropOutcome,
}

/// Every property, in run order.
pub fn all() -> Vec<Property> {
    vec![
        Property {
            name: "oracle_agreement",
            default_cases: 512,
            run: oracle_agreement,
        },
        Property {
            name: "finiteness_extremes",
            default_cases: 256,
            run: finiteness_extremes,
        },
        Property {
            name: "causality",
            default_cases: 256,
            run: causality,
        },
        Property {
            name: "chunk_invariance",
            default_cases: 384,
            run: chunk_invariance,
        },
        Property {
            name: "split_invariance",
            default_cases: 256,
            run: split_invariance,
        },
        Property {
            name: "varlen_invariance",
            default_cases: 256,
            run: varlen_invariance,
        },
        Property {
            name: "zero_gate_is_linear_attention",
            default_cases: 256,
            run: zero_gate_is_linear_attention,
        },
        Property {
            name: "neg_inf_gate_resets",
            default_cases: 256,
            run: neg_inf_gate_resets,
        },
        Property {
            name: "pow2_scaling_exact",
            default_cases: 256,
            run: pow2_scaling_exact,
        },
        Property {
            name: "head_permutation_exact",
            default_cases: 256,
            run: head_permutation_exact,
        },
        Property {
            name: "dg_local_equals_reverse_cumsum",
            default_cases: 256,
            run: dg_local_equals_reverse_cumsum,
        },
        Property {
            name: "honest_pass_verify",
            default_cases: 24,
            run: honest_pass_verify,
        },
        Property {
            name: "f64_truth_is_sound",
            default_cases: 48,
            run: f64_truth_is_sound,
        },
    ]
}

/// Properties the suite also runs for the GPU candidates (with `SizeProfile::gpu()`, named
/// `gpu_<property>`); the others need gradients or only concern the CPU forms.
pub const GPU_PROPERTIES: &[&str] = &[
    "oracle_agreement",
    "finiteness_extremes",
    "causality",
    "split_invariance",
    "varlen_invariance",
    "zero_gate_is_linear_attention",
    "neg_inf_gate_resets",
    "pow2_scaling_exact",
    "head_permutation_exact",
];

/// The proptest configuration of a property: `PROPTEST_CASES` if set, else
/// `default_cases * case_factor`; failures persisted to
/// `proptests/proptest-regressions/<name>.txt`; shrinking bounded (the oracle is expensive).
pub fn config(ctx: &Ctx, name: &str, default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .unwrap_or(default_cases * ctx.case_factor.max(1));
    let persistence: Option<Box<dyn proptest::test_runner::FailurePersistence>> = if ctx.persist {
        let path: &'static str = Box::leak(
            format!(
                "{}/proptest-regressions/{name}.txt",
                env!("CARGO_MANIFEST_DIR")
            )
            .into_boxed_str(),
        );
        Some(Box::new(FileFailurePersistence::Direct(path)))
    } else {
        None
    };
    let base = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    // Unsharded: proptest's own seeding (PROPTEST_RNG_SEED as given, else random), as a plain
    // proptest test would do. Sharded: one derived stream per (property, shard).
    let rng_seed = match ctx.shard {
        None => base.map_or(RngSeed::Random, RngSeed::Fixed),
        Some(_) => RngSeed::Fixed(case_seed(
            name,
            base.unwrap_or_else(rand::random),
            ctx.shard,
        )),
    };
    ProptestConfig {
        cases,
        rng_seed,
        failure_persistence: persistence,
        max_shrink_iters: if ctx.case_factor > 1 { 512 } else { 128 },
        max_shrink_time: 300_000,
        ..ProptestConfig::default()
    }
}

fn run_prop<S>(
    ctx: &Ctx,
    name: &'static str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> TestCaseResult,
) -> PropOutcome
where
    S: Strategy,
    S::Value: Debug,
{
    let start = Instant::now();
    let count = AtomicU64::new(0);
    let cfg = config(ctx, name, cases);
    // Persisted regression cases are replayed first; they are not part of this run's stream.
    let replays = cfg
        .failure_persistence
        .as_ref()
        .map_or(0, |f| f.load_persisted_failures2(None).len() as u64);
    let hashes = std::sync::Mutex::new(Vec::new());
    let mut runner = TestRunner::new(cfg);
    let res = runner.run(&strategy, |v| {
        if count.fetch_add(1, Ordering::Relaxed) >= replays {
            hashes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(case_hash(&v));
        }
        test(v)
    });
    summary::record_cases(
        name,
        &hashes.into_inner().unwrap_or_else(|e| e.into_inner()),
    );
    let result = match res {
        Ok(()) => Ok(()),
        Err(TestError::Fail(reason, value)) => {
            Err(format!("{reason}\nminimal failing input: {value:?}"))
        }
        Err(TestError::Abort(reason)) => Err(format!("aborted: {reason}")),
    };
    let out = PropOutcome {
        name,
        cases: count.load(Ordering::Relaxed),
        seconds: start.elapsed().as_secs_f64(),
        result,
    };
    summary::record_property(
        name,
        out.cases,
        out.result.is_ok(),
        out.result.as_ref().err().map_or("", |s| s.as_str()),
    );
    out
}

/// A 64-bit fingerprint of a generated case (FNV-1a of its `Debug` form).
fn case_hash(v: &impl Debug) -> u64 {
    format!("{v:?}")
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
}

fn fail(msg: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(msg.into())
}

fn build(spec: &ProblemSpec) -> Result<Problem, TestCaseError> {
    spec.build()
        .map_err(|e| fail(format!("spec did not build: {e}")))
}

fn gla<T>(r: gla_reference::Result<T>, what: &str) -> Result<T, TestCaseError> {
    r.map_err(|e| fail(format!("{what}: {e}")))
}

/// Candidate and its prepared problem, or `None` if the candidate does not apply (input overflow).
fn prepared<'a>(imp: &Implementation, p: &'a Problem) -> Option<Cow<'a, Problem>> {
    imp.prepare(p).ok()
}

// ------------------------------------------------------------------------------------------------

/// Every candidate, forward and backward, against the oracle within the bound.
pub fn oracle_agreement(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    run_prop(
        ctx,
        name,
        cases,
        strategies::problem_spec(ctx.profile),
        |spec| {
            let p = build(&spec)?;
            let v = gla(
                harness::check_against_oracle_as(name, &p, &ctx.impls),
                "oracle",
            )?;
            let msg = harness::failures(&v);
            if msg.is_empty() {
                Ok(())
            } else {
                Err(fail(msg))
            }
        },
    )
}

/// Extreme gate regimes at larger sizes: every output of every candidate finite (the exact answer
/// of a valid problem is always finite; the magnitudes, an upper bound on it, are checked finite).
pub fn finiteness_extremes(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let extremes = proptest::sample::select(vec![
        GateRegime::TinyDecay,
        GateRegime::IsolatedNegInf,
        GateRegime::IsolatedMinus300,
        GateRegime::MixedExtremes,
        GateRegime::CrossF32ExpLimitChunk,
        GateRegime::CrossF32ExpLimitSubChunk,
        GateRegime::Strong,
    ]);
    let profile = SizeProfile {
        max_width: ctx.profile.max_width.max(24),
        long_width: ctx.profile.long_width.max(8),
        max_packed: ctx.profile.max_packed * 2,
        ..ctx.profile
    };
    run_prop(
        ctx,
        name,
        cases,
        strategies::problem_spec_with(profile, extremes, strategies::value_regime()),
        |spec| {
            let p = build(&spec)?;
            let m = magnitudes(&p);
            for n in gla_reference::OUTPUT_NAMES {
                if let Some(t) = m.tensor(n) {
                    if !t.iter().all(|x| x.is_finite()) {
                        return Ok(()); // magnitude overflow: the exact answer may not be finite
                    }
                }
            }
            for imp in &ctx.impls {
                let Some(pp) = prepared(imp, &p) else {
                    continue;
                };
                let s = gla(solve(imp, &pp, imp.supports_backward()), &imp.name())?;
                for n in gla_reference::OUTPUT_NAMES {
                    let Some(t) = s.tensor(n) else { continue }; // forward-only candidates
                    if let Some((idx, x)) = t.indexed_iter().find(|(_, x)| !x.is_finite()) {
                        return Err(fail(format!(
                            "{imp}: {n}{idx:?} = {x} (exact answer is finite)"
                        )));
                    }
                }
            }
            Ok(())
        },
    )
}

/// Changing inputs at t >= P leaves o and dq before P bit-identical (forward and backward runs).
pub fn causality(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let strat = (
        strategies::dense_problem_spec(ctx.profile, 2),
        any::<proptest::sample::Index>(),
        any::<u64>(),
    );
    run_prop(ctx, name, cases, strat, |(spec, at, seed)| {
        let p = build(&spec)?;
        let t = p.dims().t;
        let cut = 1 + at.index(t - 1); // 1..T-1
        let p2 = gla(transform::perturb_from(&p, cut, seed), "perturb")?;
        for imp in &ctx.impls {
            if prepared(imp, &p).is_none() || prepared(imp, &p2).is_none() {
                continue;
            }
            for backward in [false, imp.supports_backward()] {
                let a = gla(solve(imp, &p, backward), &imp.name())?;
                let b = gla(solve(imp, &p2, backward), &imp.name())?;
                if let Err(e) = identical(
                    &transform::prefix_outputs(&a, cut),
                    &transform::prefix_outputs(&b, cut),
                ) {
                    // Diagnose: is the candidate even deterministic on the unchanged input?
                    let again = gla(solve(imp, &p, backward), &imp.name())?;
                    let det = match identical(&a, &again) {
                        Ok(()) => "it is deterministic on the unchanged input".to_string(),
                        Err(d) => format!(
                            "it is NOT deterministic: two runs on the same input differ at {d}"
                        ),
                    };
                    return Err(fail(format!(
                        "{imp} (backward={backward}): inputs changed from t={cut} on changed an output before it: {e}; {det}"
                    )));
                }
            }
        }
        Ok(())
    })
}

/// Chunkings the chunk-invariance property draws from (C, c).
pub const CHUNKINGS: &[(usize, usize)] = &[
    (64, 16),
    (32, 8),
    (16, 4),
    (16, 16),
    (8, 2),
    (8, 8),
    (4, 1),
    (4, 4),
    (2, 1),
    (1, 1),
    (48, 16),
    (128, 32),
];

/// Chunked (C1, c1) vs (C2, c2) vs the recurrence, f32 and f64, within the sum of their bounds.
pub fn chunk_invariance(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let strat = (
        strategies::problem_spec(ctx.profile),
        proptest::sample::select(CHUNKINGS),
        proptest::sample::select(CHUNKINGS),
    );
    run_prop(ctx, name, cases, strat, |(spec, c1, c2)| {
        let p = build(&spec)?;
        let p = gla(p.rounded_to(Dtype::F32), "round")?;
        let m = magnitudes(&p);
        for compute in [Compute::F32, Compute::F64] {
            let a = Implementation::chunked(compute, c1.0, c1.1);
            let b = Implementation::chunked(compute, c2.0, c2.1);
            let r = Implementation::Recurrent {
                compute,
                dg: gla_judge::DgFormKey::ReverseCumsum,
            };
            let sa = gla(solve(&a, &p, true), &a.name())?;
            let sb = gla(solve(&b, &p, true), &b.name())?;
            let sr = gla(solve(&r, &p, true), &r.name())?;
            for (x, sx, y, sy) in [(&a, &sa, &b, &sb), (&a, &sa, &r, &sr)] {
                let rep = gla(
                    compare_pair(&p, &p, &m, sx, &bound_spec(x, &p), sy, &bound_spec(y, &p)),
                    "compare",
                )?;
                record_pair(name, &format!("{x} vs {y}"), &rep);
                if !rep.pass() {
                    return Err(fail(format!(
                        "{x} vs {y} disagree beyond bound_a + bound_b:\n{}",
                        harness::failing_rows(&rep)
                    )));
                }
            }
        }
        Ok(())
    })
}

/// Loosen a report judged with the full problem's lambda / n_acc to the lambda and chain length
/// a split run actually had (`lambda`, `n_acc`), recomputing `bound` and `pass`.
fn rebound(mut r: Report, n_acc: f64, lambda: f64) -> Report {
    for t in &mut r.tensors {
        if n_acc > t.n_acc || lambda > t.lambda {
            t.n_acc = t.n_acc.max(n_acc);
            t.lambda = t.lambda.max(lambda);
            t.bound = (t.u_stages + t.c * t.u_acc * (t.n_acc + t.lambda)) / (t.u_stages + t.u_acc);
            t.pass = t.ratio <= t.bound && t.candidate_nonfinite == 0;
        }
    }
    r
}

/// Run a candidate as prefill (rows < cut) + continuation from the prefill's hT; the backward
/// pass seeds the prefix with the continuation's dh0. Returns the stitched solution and the two
/// part problems.
fn split_run(
    imp: &Implementation,
    pp: &Problem,
    cut: usize,
) -> gla_reference::Result<(Solution, Problem, Problem)> {
    let t = pp.dims().t;
    let pre = transform::slice_time(pp, 0, cut)?;
    let pre = transform::with_states(&pre, pp.h0().cloned(), None)?;
    let sa = solve(imp, &pre, false)?;
    let suf = transform::slice_time(pp, cut, t)?;
    let suf = transform::with_states(&suf, Some(sa.ht.clone()), pp.dht().cloned())?;
    let sb = solve(imp, &suf, imp.supports_backward())?;
    let Some(g2) = sb.grads.as_ref() else {
        // Forward-only candidate: o and hT of the two parts.
        let mut s = transform::concat_time(&sa, &sb);
        s.grads = None;
        return Ok((s, pre, suf));
    };
    let pre2 = transform::with_states(&pre, pp.h0().cloned(), Some(g2.dh0.clone()))?;
    let sa2 = solve(imp, &pre2, true)?;
    Ok((transform::concat_time(&sa2, &sb), pre2, suf))
}

/// One run == prefill then continuation, within the bound (judged against the oracle of the
/// whole problem). The bound uses the larger of the whole run's and the parts' lambda and one more
/// accumulation step (the continuation adds the carried state once); candidates with a rounding
/// plan get one more rounding stage of their input dtype (the carried hT / dh0 is an input of the
/// next part and is rounded like every input).
pub fn split_invariance(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let strat = (
        strategies::dense_problem_spec(ctx.profile, 1),
        any::<proptest::sample::Index>(),
    );
    run_prop(ctx, name, cases, strat, |(spec, at)| {
        let p = build(&spec)?;
        let t = p.dims().t;
        let cut = at.index(t + 1); // 0..=T: empty parts included
        let mut cache: Vec<(Problem, Solution, gla_reference::bounds::Magnitudes)> = Vec::new();
        for imp in &ctx.impls {
            let Some(pp) = prepared(imp, &p) else {
                continue;
            };
            let pp = pp.into_owned();
            let i = match cache.iter().position(|c| c.0 == pp) {
                Some(i) => i,
                None => {
                    let ex = gla(truth::oracle(&pp, true), "oracle")?;
                    let m = magnitudes(&pp);
                    cache.push((pp.clone(), ex, m));
                    cache.len() - 1
                }
            };
            let (pp, exact, m) = (&cache[i].0, &cache[i].1, &cache[i].2);
            let (stitched, pre, suf) = gla(split_run(imp, pp, cut), &imp.name())?;
            let mut spec_b = bound_spec(imp, pp);
            if imp.input_dtype() != Dtype::F32 && imp.input_dtype() != Dtype::F64 {
                spec_b.stages.push(imp.input_dtype());
            }
            let rep = gla(compare(pp, exact, m, &stitched, &spec_b), "compare")?;
            let lambda = spec_b.lambda(&pre).max(spec_b.lambda(&suf));
            let n_acc = spec_b.n_acc(pp) + 1.0;
            let rep = rebound(rep, n_acc, lambda);
            summary::record(name, imp, &rep);
            if !rep.pass() {
                return Err(fail(format!(
                    "{imp}: prefill of {cut} rows + continuation differs from one run beyond the bound:\n{}",
                    harness::failing_rows(&rep)
                )));
            }
        }
        Ok(())
    })
}

/// Packed varlen == every sequence run alone (bit-identical), and perturbing one sequence (its rows,
/// h0 and dhT) leaves every other sequence's outputs bit-identical.
pub fn varlen_invariance(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let strat = (
        strategies::varlen_problem_spec(ctx.profile),
        any::<proptest::sample::Index>(),
        any::<u64>(),
    );
    run_prop(ctx, name, cases, strat, |(spec, which, seed)| {
        let p = build(&spec)?;
        let n = p.dims().n;
        let victim = which.index(n);
        let p2 = gla(transform::perturb_sequence(&p, victim, seed), "perturb")?;
        let seqs = gla(transform::split_sequences(&p), "split")?;
        for imp in &ctx.impls {
            if prepared(imp, &p).is_none() || prepared(imp, &p2).is_none() {
                continue;
            }
            let packed = gla(solve(imp, &p, imp.supports_backward()), &imp.name())?;
            let mut alone = Vec::new();
            for sq in &seqs {
                alone.push(gla(solve(imp, sq, imp.supports_backward()), &imp.name())?);
            }
            let stitched = transform::pack_solutions(&p, &alone);
            identical(&packed, &stitched).map_err(|e| {
                fail(format!(
                    "{imp}: packed varlen differs from the sequences run one by one: {e}"
                ))
            })?;
            let other = gla(solve(imp, &p2, imp.supports_backward()), &imp.name())?;
            let a = transform::unpack_solution(&p, &packed);
            let b = transform::unpack_solution(&p2, &other);
            for (j, (x, y)) in a.iter().zip(&b).enumerate() {
                if j != victim {
                    identical(x, y).map_err(|e| {
                        fail(format!(
                            "{imp}: changing sequence {victim} changed sequence {j}: {e}"
                        ))
                    })?;
                }
            }
        }
        Ok(())
    })
}

/// g = 0 equals plain linear attention computed independently ([`crate::linear`], double-double),
/// within each candidate's bound.
pub fn zero_gate_is_linear_attention(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let strat = strategies::problem_spec_with(
        ctx.profile,
        Just(GateRegime::Zero),
        strategies::value_regime(),
    );
    run_prop(ctx, name, cases, strat, |spec| {
        let p = build(&spec)?;
        for imp in &ctx.impls {
            let Some(pp) = prepared(imp, &p) else {
                continue;
            };
            let exact = crate::linear::solve(&pp);
            let m = magnitudes(&pp);
            let f = gla(solve(imp, &pp, false), &imp.name())?;
            let b = gla(solve(imp, &pp, imp.supports_backward()), &imp.name())?;
            let rep = gla(
                harness::judge(imp, &pp, &m, &exact, &f, Some(&b)),
                "compare",
            )?;
            summary::record(name, imp, &rep);
            if !rep.pass() {
                return Err(fail(format!(
                    "{imp}: g = 0 differs from plain linear attention:\n{}",
                    harness::failing_rows(&rep)
                )));
            }
        }
        Ok(())
    })
}

/// A -inf gate in every channel at t0 resets the state: the candidate's result on the whole problem
/// is judged against the oracle of the prefix (rows < t0, no dhT) stitched with the oracle of a
/// fresh run from t0 (h0 = 0), with the whole problem's bound; the recurrence must moreover be
/// bit-identical to its own fresh run from t0 (o, hT, dq, dk, dv, dg at rows >= t0).
pub fn neg_inf_gate_resets(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let strat = (
        strategies::dense_problem_spec(ctx.profile, 1),
        any::<proptest::sample::Index>(),
    );
    run_prop(ctx, name, cases, strat, |(spec, at)| {
        let p = build(&spec)?;
        let t = p.dims().t;
        let t0 = at.index(t);
        let p = gla(transform::reset_at(&p, t0), "reset")?;
        let mut cache: Vec<(Problem, Solution)> = Vec::new();
        for imp in &ctx.impls {
            let Some(pp) = prepared(imp, &p) else {
                continue;
            };
            let pp = pp.into_owned();
            let i = match cache.iter().position(|c| c.0 == pp) {
                Some(i) => i,
                None => {
                    let pre = gla(transform::slice_time(&pp, 0, t0), "slice")?;
                    let pre = gla(
                        transform::with_states(&pre, pp.h0().cloned(), None),
                        "states",
                    )?;
                    let suf = gla(transform::slice_time(&pp, t0, t), "slice")?;
                    let suf = gla(
                        transform::with_states(&suf, None, pp.dht().cloned()),
                        "states",
                    )?;
                    let ea = gla(truth::oracle(&pre, true), "oracle")?;
                    let eb = gla(truth::oracle(&suf, true), "oracle")?;
                    cache.push((pp.clone(), transform::concat_time(&ea, &eb)));
                    cache.len() - 1
                }
            };
            let (pp, exact) = (&cache[i].0, &cache[i].1);
            let m = magnitudes(pp);
            let f = gla(solve(imp, pp, false), &imp.name())?;
            let b = gla(solve(imp, pp, imp.supports_backward()), &imp.name())?;
            let rep = gla(harness::judge(imp, pp, &m, exact, &f, Some(&b)), "compare")?;
            summary::record(name, imp, &rep);
            if !rep.pass() {
                return Err(fail(format!(
                    "{imp}: a -inf gate at t0 = {t0} does not reset the state:\n{}",
                    harness::failing_rows(&rep)
                )));
            }
            if matches!(imp, Implementation::Recurrent { .. }) {
                let suf = gla(transform::slice_time(pp, t0, t), "slice")?;
                let suf = gla(
                    transform::with_states(&suf, None, pp.dht().cloned()),
                    "states",
                )?;
                let fresh = gla(solve(imp, &suf, imp.supports_backward()), &imp.name())?;
                let tail = transform::time_rows(&b, t0, t);
                identical(&tail, &transform::time_rows(&fresh, 0, t - t0)).map_err(|e| {
                    fail(format!("{imp}: after a -inf gate at t0 = {t0} the recurrence is not bit-identical to a fresh run: {e}"))
                })?;
            }
        }
        Ok(())
    })
}

/// v and h0 scaled by 2^k: o, hT, dq, dk, dg scale by 2^k and dv, dh0 stay, bit-identically.
/// Restricted to benign gates (no intermediate leaves the normal range) and to candidates whose
/// rounding formats have f32's exponent range (f16's normal range is too narrow for exactness).
pub fn pow2_scaling_exact(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let gates = proptest::sample::select(vec![GateRegime::Zero, GateRegime::Mild]);
    let values = proptest::sample::select(vec![
        ValueRegime::SignedNormal,
        ValueRegime::PositiveOnly,
        ValueRegime::Cancellation,
    ]);
    let strat = (
        strategies::problem_spec_with(ctx.profile, gates, values),
        -12i32..=12,
    );
    run_prop(ctx, name, cases, strat, |(spec, k)| {
        let p = build(&spec)?;
        let f = 2f64.powi(k);
        let p2 = gla(transform::scale_v_h0(&p, f), "scale")?;
        for imp in &ctx.impls {
            if matches!(
                imp,
                Implementation::Chunked {
                    round: Round::F16 | Round::F16Train,
                    ..
                }
            ) || matches!(
                imp,
                Implementation::Gpu {
                    dtype: Dtype::F16,
                    ..
                }
            ) {
                continue;
            }
            let a = gla(solve(imp, &p, imp.supports_backward()), &imp.name())?;
            let b = gla(solve(imp, &p2, imp.supports_backward()), &imp.name())?;
            let scaled = Solution {
                o: a.o.mapv(|x| x * f),
                ht: a.ht.mapv(|x| x * f),
                grads: a.grads.as_ref().map(|ga| gla_reference::Gradients {
                    dq: ga.dq.mapv(|x| x * f),
                    dk: ga.dk.mapv(|x| x * f),
                    dv: ga.dv.clone(),
                    dg: ga.dg.mapv(|x| x * f),
                    dh0: ga.dh0.clone(),
                }),
            };
            identical(&scaled, &b).map_err(|e| {
                fail(format!(
                    "{imp}: scaling v and h0 by 2^{k} is not exact: {e}"
                ))
            })?;
        }
        Ok(())
    })
}

/// Permuting heads permutes every output bit-identically.
pub fn head_permutation_exact(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    let profile = SizeProfile {
        max_h: ctx.profile.max_h.max(3),
        ..ctx.profile
    };
    let strat = (
        strategies::problem_spec(profile).prop_filter("at least 2 heads", |s| s.h >= 2),
        any::<u64>(),
    );
    run_prop(ctx, name, cases, strat, |(spec, seed)| {
        let p = build(&spec)?;
        let h = p.dims().h;
        // A deterministic non-identity permutation from the seed.
        let mut perm: Vec<usize> = (0..h).collect();
        let r = 1 + (seed as usize) % (h - 1);
        perm.rotate_left(r);
        if seed & 1 == 1 {
            perm.swap(0, h - 1);
        }
        let p2 = gla(transform::permute_heads(&p, &perm), "permute")?;
        for imp in &ctx.impls {
            if prepared(imp, &p).is_none() {
                continue;
            }
            let a = gla(solve(imp, &p, imp.supports_backward()), &imp.name())?;
            let b = gla(solve(imp, &p2, imp.supports_backward()), &imp.name())?;
            identical(&transform::permute_heads_solution(&a, &perm), &b).map_err(|e| {
                fail(format!(
                    "{imp}: permuting heads by {perm:?} did not permute the outputs: {e}"
                ))
            })?;
        }
        Ok(())
    })
}

/// dg from the local form equals dg from the reverse cumsum: the oracle's two forms to f64
/// accuracy (`|a - b| <= 2^-52 (|a| + |b|) + 2^-70 M_dg`: both are converged to 80 bits, relative to
/// max(|x|, 2^-32 M)); the reference's two forms (recurrent f32 and f64, and the chunked f32 reverse
/// sums against the recurrent f32 local form) within the sum of their bounds.
pub fn dg_local_equals_reverse_cumsum(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    run_prop(
        ctx,
        name,
        cases,
        strategies::problem_spec(ctx.profile),
        |spec| {
            let p = build(&spec)?;
            let p = gla(p.rounded_to(Dtype::F32), "round")?;
            let m = magnitudes(&p);
            let r = gla(truth::oracle_full(&p, true), "oracle")?;
            let local = &r.solution.grads.as_ref().expect("backward").dg;
            let rc = r
                .dg_reverse_cumsum
                .as_ref()
                .ok_or_else(|| fail("oracle gave no reverse-cumsum dg"))?;
            let mdg = m.dg.as_ref().expect("magnitudes with do");
            for (idx, &a) in local.indexed_iter() {
                let b = rc[idx];
                let tol = 2f64.powi(-52) * (a.abs() + b.abs()) + 2f64.powi(-70) * mdg[idx];
                if (a - b).abs() > tol || (a - b).is_nan() {
                    return Err(fail(format!(
                        "oracle: local dg {a:e} vs reverse-cumsum dg {b:e} at {idx:?} (M_dg {:e})",
                        mdg[idx]
                    )));
                }
            }
            use gla_judge::DgFormKey::*;
            let pairs = [
                (
                    Implementation::Recurrent {
                        compute: Compute::F32,
                        dg: Local,
                    },
                    Implementation::RECURRENT_F32,
                ),
                (
                    Implementation::Recurrent {
                        compute: Compute::F64,
                        dg: Local,
                    },
                    Implementation::RECURRENT_F64,
                ),
                (
                    Implementation::Recurrent {
                        compute: Compute::F32,
                        dg: Local,
                    },
                    Implementation::chunked(Compute::F32, 64, 16),
                ),
                (
                    Implementation::Recurrent {
                        compute: Compute::F32,
                        dg: Local,
                    },
                    Implementation::chunked(Compute::F32, 16, 4),
                ),
            ];
            for (x, y) in pairs {
                let sx = gla(solve(&x, &p, true), &x.name())?;
                let sy = gla(solve(&y, &p, true), &y.name())?;
                let only_dg = |s: &Solution| Solution {
                    o: ndarray::Array4::zeros((0, 0, 0, 0)),
                    ht: ndarray::Array4::zeros((0, 0, 0, 0)),
                    grads: s.grads.clone().map(|g| gla_reference::Gradients {
                        dq: ndarray::Array4::zeros((0, 0, 0, 0)),
                        dk: ndarray::Array4::zeros((0, 0, 0, 0)),
                        dv: ndarray::Array4::zeros((0, 0, 0, 0)),
                        dh0: ndarray::Array4::zeros((0, 0, 0, 0)),
                        dg: g.dg,
                    }),
                };
                let rep = gla(
                    compare_pair(
                        &p,
                        &p,
                        &m,
                        &only_dg(&sx),
                        &bound_spec(&x, &p),
                        &only_dg(&sy),
                        &bound_spec(&y, &p),
                    ),
                    "compare",
                )?;
                let rep = Report {
                    tensors: rep.tensors.into_iter().filter(|t| t.name == "dg").collect(),
                };
                record_pair(name, &format!("{x} vs {y}"), &rep);
                if !rep.pass() {
                    return Err(fail(format!(
                        "{x} (local dg) vs {y} (reverse-cumsum dg):\n{}",
                        harness::failing_rows(&rep)
                    )));
                }
            }
            // Each form against the oracle, with the magnitude of its own algorithm.
            for x in [pairs[0].0, pairs[0].1] {
                let sx = gla(solve(&x, &p, true), &x.name())?;
                let rep = gla(
                    compare(&p, &r.solution, &m, &sx, &bound_spec(&x, &p)),
                    "compare",
                )?;
                summary::record(name, &x, &rep);
                if !rep.pass() {
                    return Err(fail(format!("{x}:\n{}", harness::failing_rows(&rep))));
                }
            }
            Ok(())
        },
    )
}

/// The honest direction of `glacheck verify` (docs/math.md §8.2, "Verifier power"): every honest
/// implementation of the mutant benchmark (`gla_judge::mutants::bench::honest_candidates`: the
/// CPU forms at their declared arithmetic, the GPU kernels' CPU twins with their training plans,
/// the textbook forward, the exact result rounded to bf16, fla's fused recurrence emulated in
/// bf16) passes all three rules (the derived bound, the baseline rule and the bias test) on a
/// drawn problem. The inputs are first rounded to bf16 (and to values exact in f16 too where they
/// fit, else the f16 candidates are skipped), so that every candidate and the oracle consume the
/// same numbers. A change that makes the empirical rules raise a false alarm fails here.
pub fn honest_pass_verify(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    use gla_judge::mutants::bench::{honest_candidates, Case};
    use gla_judge::truth::Truth;
    run_prop(
        ctx,
        name,
        cases,
        strategies::problem_spec(ctx.profile),
        |spec| {
            let (problem, f16_ok) = common_grid(&build(&spec)?)?;
            let truth = gla(Truth::oracle(&problem, true), "oracle")?;
            let case = Case {
                name: "drawn".into(),
                problem,
                truth,
            };
            let mut bad = Vec::new();
            for h in honest_candidates() {
                if h.precision == Dtype::F16 && !f16_ok {
                    continue;
                }
                let rep = match h.judge(&case) {
                    Ok(Some(r)) => r,
                    Ok(None) => continue,
                    Err(e) => return Err(fail(format!("{}: {e}", h.name))),
                };
                if !rep.pass() {
                    bad.push(format!("{}:\n{}", h.name, rep.render()));
                }
            }
            if bad.is_empty() {
                Ok(())
            } else {
                Err(fail(bad.join("\n")))
            }
        },
    )
}

/// `p` with every input rounded to values exact in bf16 and, where they fit, in f16 too (then
/// `true`), so that every honest candidate and the oracle consume the same numbers.
fn common_grid(p: &Problem) -> Result<(Problem, bool), TestCaseError> {
    let both = p
        .rounded_to(Dtype::F16)
        .and_then(|x| x.rounded_to(Dtype::Bf16))
        .ok()
        .filter(|x| x.rounded_to(Dtype::F16).ok().as_ref() == Some(x));
    Ok(match both {
        Some(x) => (x, true),
        None => (gla(p.rounded_to(Dtype::Bf16), "round to bf16")?, false),
    })
}

/// The certified f64 truth is sound (docs/math.md §8.4): on drawn problems, (1) the f64
/// recurrence is within the budget it charges, element by element, against the oracle; (2) for
/// every honest implementation of the benchmark, each tensor's bound ratio against the f64 truth
/// is at least its ratio against the oracle, so a pass against the f64 truth is a pass against
/// the oracle; (3) for candidates of f32 or coarser arithmetic the charge is negligible (at
/// most 1% of the bound), so the f64 truth does not blunt the verdict where it is meant to be
/// used.
pub fn f64_truth_is_sound(ctx: &Ctx, name: &'static str, cases: u32) -> PropOutcome {
    use gla_judge::mutants::bench::{honest_candidates, Case};
    use gla_judge::truth::Truth;
    run_prop(
        ctx,
        name,
        cases,
        strategies::problem_spec(ctx.profile),
        |spec| {
            let (problem, f16_ok) = common_grid(&build(&spec)?)?;
            let oracle = gla(Truth::oracle(&problem, true), "oracle")?;
            let certified = gla(Truth::f64(&problem, true), "f64 truth")?;
            // (1) the truth within its budget: judged as a candidate against the oracle, with
            // the budget's own spec, every tensor passes.
            let own = gla(
                compare(
                    &problem,
                    &oracle.solution,
                    &oracle.magnitudes,
                    &certified.solution,
                    &Truth::budget_spec(),
                ),
                "compare",
            )?;
            if !own.pass() {
                return Err(fail(format!(
                    "the f64 truth exceeds its own budget:\n{}",
                    harness::failing_rows(&own)
                )));
            }
            let cases = [("oracle", oracle), ("f64", certified)].map(|(n, truth)| Case {
                name: n.into(),
                problem: problem.clone(),
                truth,
            });
            for h in honest_candidates() {
                if h.precision == Dtype::F16 && !f16_ok {
                    continue;
                }
                let c = match h.candidate(&cases[0]) {
                    Ok(Some(c)) => c,
                    Ok(None) => continue,
                    Err(e) => return Err(fail(format!("{}: {e}", h.name))),
                };
                let reps: Vec<_> = cases
                    .iter()
                    .map(|case| {
                        h.judge_candidate(case, &c)
                            .map_err(|e| fail(format!("{}: verify: {e}", h.name)))
                    })
                    .collect::<Result<_, _>>()?;
                for (a, b) in reps[0].tensors.iter().zip(&reps[1].tensors) {
                    // (2) soundness, with a relative slack for the f64 arithmetic of the ratios
                    if b.ratio < a.ratio * (1.0 - 1e-9) || (b.pass && !a.pass) {
                        return Err(fail(format!(
                            "{} {}: ratio {:.6e} against the f64 truth < {:.6e} against the oracle",
                            h.name, a.name, b.ratio, a.ratio
                        )));
                    }
                    // (3) the charge is negligible for f32 and coarser candidates
                    if h.precision != Dtype::F64 && b.truth_charge > 0.01 * b.bound {
                        return Err(fail(format!(
                            "{} {}: the f64 truth charges {:.3e} of a bound {:.3e}",
                            h.name, b.name, b.truth_charge, b.bound
                        )));
                    }
                }
            }
            Ok(())
        },
    )
}
