#!/bin/bash
# One device call comparing two builds of the kernels, A (baseline) and B (candidate), and
# optionally running the fla pytest recipe at the same time as B's correctness checks.
#   1. B's GPU tests (GLA_REQUIRE_GPU=1) and compute-sanitizer memcheck + racecheck
#      (`sanitizer_coverage`, every kernel), in parallel; with FLA=1 also examples/test_fla_gla.py
#      in four processes (chunk_gla / fused_recurrent_gla x bf16 / fp32), fla keeping its first
#      admissible config per kernel (gpu/benches/fla_first_config), one JSON line per judged run
#      (fla-<kernel>-<dtype>.jsonl).
#   2. On a quiet GPU: `gla-gpu-bench` fwdbwd for A, B and each pack in $EXTRA (bench only, e.g.
#      an intermediate commit), $ROUNDS (default 2) times in turn, then fwd for A and B
#      (per-kernel CUDA-event times).
#   3. With FLA_TIME=1, fla's chunk_gla timed at the same shapes (fwd and fwd+bwd), its Triton
#      autotune results carried in .fla-cache (gpu/device-run-fla-tune.sh makes them).
#   4. ncu on B's kernels (speed of light, occupancy, shared-memory bank conflicts), if time is left.
# BENCH_ORDER="P1 P2 ..." replaces the packs of step 2 and their order, FWD_ORDER those of the
# forward-alone runs (default A and B); NCU=0 skips step 4. CHECKS=0 skips step 1's
# tests and sanitizers (B validated by an earlier call). With PROPS=1, B's property suite
# (gla-proptests__test__properties in B's bin/) runs its gpu_ properties during step 1; with
# SWEEP=1, B's glacheck regenerates the bf16 accuracy sweep of docs/sweep/gpu-h100/ (both dg forms,
# K=V=64, T=64..2048) into logs/sweep during step 1; with HUGE=1, B's gpu_huge tests (>2^31
# elements, HUGE_FILTER selects one) run during step 1. (Per-instruction profiles:
# gpu/device-run-ncu.sh.)
# Packs (git-ignored folders, or .gpu-*.tgz unpacked first): $PACK_A, $PACK_B (default .gpu-b,
# .gpu-c), each with bin/ holding
# the release builds gla-gpu__test__gpu_{forward,causality,backward}, gla-gpu-bench and glacheck
# (built as gpu/device-run.sh describes); whl/ in $PACK_A with fla-core and
# flash-linear-attention 0.6.0 and the glacheck wheel (for FLA=1).
# Usage: PACK_A=.gpu-b PACK_B=.gpu-c FLA=1 bash gpu/device-run-ab.sh  (LIMIT = seconds of work,
# default 540). Logs -> $OUT/logs.tgz.
set -u
t0=$(date +%s); el() { echo $(( $(date +%s) - t0 )); }
left() { echo $(( ${LIMIT:-540} - ($(date +%s) - t0) )); }
R=$PWD; B=$R/${PACK_B:-.gpu-c}/bin; L=/tmp/logs; mkdir -p $L
. gpu/device-checks.sh
unpack_packs
export GLA_REQUIRE_GPU=1
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
PIDS=""
if [ "${FLA:-0}" = 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $R/${PACK_A:-.gpu-b}/whl/*.whl > $L/pip.log 2>&1
  for k in chunk_gla fused_recurrent_gla; do for d in bf16 fp32; do
    (PYTHONPATH=/tmp/site:$R/gpu/benches/fla_first_config GLA_FLA_NO_AUTOTUNE=1 \
       GLACHECK_REPORT=$L/fla-$k-$d.jsonl PYTHONUNBUFFERED=1 timeout ${PYT:-330} \
       python3 -m pytest -q -p no:cacheprovider -rfE --tb=line -k "$k and $d" examples/test_fla_gla.py \
       > $L/pytest-$k-$d.log 2>&1; echo "rc=$?" >> $L/pytest-$k-$d.log) &
    PIDS="$PIDS $!"
  done; done
fi
CHECK_PIDS=""
[ "${CHECKS:-1}" = 1 ] && start_checks $B $L
[ "${PROPS:-0}" = 1 ] && start_props $B $L
[ "${SWEEP:-0}" = 1 ] && start_sweep $B $L
[ "${HUGE:-0}" = 1 ] && start_huge $B $L
wait $CHECK_PIDS
echo "=== step 1 done after $(el) s"
[ "${CHECKS:-1}" = 1 ] && report_checks $L
report_extras $L
grep -hE "worst" $L/gpu_forward.log $L/gpu_backward.log | head -40 | cut -c1-300
[ -n "$PIDS" ] && { wait $PIDS; echo "=== fla pytest done after $(el) s"; }
for f in $L/pytest-*.log; do [ -f $f ] && echo "--- $(basename $f): $(grep -E 'passed|failed|^rc=' $f | tail -2 | tr '\n' ' ')"; done
for f in $L/fla-*.jsonl; do [ -f $f ] && python3 - "$f" <<'EOF'
import json, sys, collections
rows = [json.loads(l) for l in open(sys.argv[1])]
name = sys.argv[1].rsplit('/', 1)[1]
cat = [r for r in rows if r['case'] != 'hypothesis']; hyp = [r for r in rows if r['case'] == 'hypothesis']
print(f"{name}: catalog {sum(r['pass'] for r in cat)}/{len(cat)} pass, hypothesis {sum(r['pass'] for r in hyp)}/{len(hyp)} pass")
for r in cat:
    if not r['pass']:
        why = r.get('error') or ' '.join(f"{t}:{v[0]:.3g}/{v[1]:.3g}" for t, v in r['tensors'].items() if not v[2])
        print(f"   FAIL {r['case']}: {why[:300]}")
EOF
done
SH=${SHAPES:-8,4096,16,128,128 8,4096,16,128,256 8,4096,16,64,64 2,16384,16,128,128}
for round in $(seq ${ROUNDS:-2}); do for P in ${BENCH_ORDER:-${PACK_A:-.gpu-b} ${PACK_B:-.gpu-c} ${EXTRA:-}}; do
  echo "=== bench $P round $round (after $(el) s)"
  timeout 100 $R/$P/bin/gla-gpu-bench --mode fwdbwd --iters 20 $SH 2>&1 | grep -vE "^\s*$" | tee -a $L/bench-${P#.}.log
done; done
for P in ${FWD_ORDER:-${PACK_A:-.gpu-b} ${PACK_B:-.gpu-c}}; do
  echo "=== bench $P forward alone (after $(el) s)"
  timeout ${FWD_T:-30} $R/$P/bin/gla-gpu-bench --mode fwd --iters 20 $SH 2>&1 | grep -vE "^\s*$" | tee -a $L/bench-${P#.}.log
done
if [ "${FLA_TIME:-0}" = 1 ]; then
  # fla chunk_gla timed at the same shapes, its autotune results seeded from .fla-cache
  # (gpu/device-run-fla-tune.sh); shapes without a carried result are tuned here (~200 s each)
  [ -d /tmp/site/fla ] || python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site $R/${PACK_A:-.gpu-b}/whl/*.whl > $L/pip.log 2>&1
  mkdir -p /tmp/triton-cache; [ -d $R/.fla-cache ] && cp -r $R/.fla-cache/. /tmp/triton-cache/
  echo "=== fla chunk_gla, fresh process (after $(el) s)"
  PYTHONPATH=/tmp/site TRITON_CACHE_DIR=/tmp/triton-cache PYTHONUNBUFFERED=1 timeout $(( $(left) - 10 )) \
    python3 gpu/benches/fla_baseline.py --mode both $SH 2>&1 | grep -v Warning | tee $L/fla.log
fi
if [ "${NCU:-1}" = 1 ] && [ $(left) -gt 50 ]; then
  echo "=== ncu B (after $(el) s)"
  timeout $(( $(left) - 10 )) ncu --kernel-name regex:"gla_fwd_intra_tc|gla_bwd_dqk|gla_bwd_state|gla_fwd_state" --launch-skip 5 --launch-count 4 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section MemoryWorkloadAnalysis_Tables \
    --section WarpStateStats --section SchedulerStats \
    $B/gla-gpu-bench --mode fwdbwd --iters 1 8,4096,16,128,128 > $L/ncu.log 2>&1; echo "ncu rc=$?"
  grep -E "gla_|Duration|Memory Throughput|Compute \(SM\) Throughput|Achieved Occupancy|Registers Per|Block Limit|Bank|bank|Stall|stalled|Warp Cycles Per Issued|Issued Warp" $L/ncu.log | head -90 | cut -c1-250
fi
tar czf $OUT/logs.tgz -C /tmp logs
echo "=== total $(el) s"
